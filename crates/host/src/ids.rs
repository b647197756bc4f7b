//! Blocks of host ids, one per container built as root, so that no two
//! containers' programs run as the same host user.
//!
//! The kernel counts several quotas per host user, whatever namespace a
//! process is in: pipe buffers (`fs.pipe-user-pages-soft`), epoll watches
//! (`fs.epoll.max_user_watches`), descriptors in flight over Unix sockets,
//! and, against the owner of each user namespace, pending signals, POSIX
//! message queue bytes and inotify instances. With one id map for every
//! container, what one container's programs hold of such a quota is
//! missing for all the others. Each container built as root with the
//! default map and its own PID namespace takes a block of
//! [`ID_BLOCK_LEN`] host ids of its own instead, for as long as it lives.
//! (Without a PID namespace, its programs may outlive init, and with it
//! the block's release; such containers share one map.)
//!
//! Blocks are handed out within a process under a lock, and between
//! processes (two `hutch run`, a server and a `hutch run`) through a write
//! lock on byte *k* of the lock file ([`ID_BLOCKS_LOCK`], or the file
//! [`ID_BLOCKS_LOCK_VAR`] names) for block *k*. The lock belongs to the
//! process's open file description of that file (`F_OFD_SETLK`), so a
//! process that dies gives its blocks back with it, and a child forked
//! from a process opens the file again rather than share its parent's
//! locks. The file and its directory must be this user's and writable by
//! no one else, or nobody could trust what their locks say; a file that
//! was replaced (its directory removed and made again) is opened again,
//! with the blocks this process holds locked again in it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Host id of container id 0 in block 0: the start of the range between
/// systemd's container ranges (which end at 1879048191) and its foreign
/// range (which starts at 2147352576), which systemd leaves unused.
pub const ID_BLOCKS_FIRST: u32 = 0x7000_0000;
/// Ids in each block: container ids `0..65536`.
pub const ID_BLOCK_LEN: u32 = 65_536;
/// How many blocks there are: as many as fit below systemd's foreign range.
pub const ID_BLOCKS: u32 = 4094;
/// The file whose byte *k* a process holds a write lock on while one of its
/// containers has block *k*, unless [`ID_BLOCKS_LOCK_VAR`] names another.
/// Every hutch process of a host must see the same file.
pub const ID_BLOCKS_LOCK: &str = "/run/hutch/id-blocks";
/// The environment variable naming another lock file than
/// [`ID_BLOCKS_LOCK`] (where `/run` is read-only, say).
pub const ID_BLOCKS_LOCK_VAR: &str = "HUTCH_ID_BLOCKS_LOCK";

/// Why no block of host ids could be taken.
#[derive(Debug, thiserror::Error)]
pub enum IdsError {
    /// The lock file or its directory could not be made, opened or locked.
    #[error(
        "cannot use the id-block lock file {path} (name another with {ID_BLOCKS_LOCK_VAR}, \
         or give the builder an id map)"
    )]
    LockFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The lock file or its directory is not one only this user controls.
    #[error("the id-block lock file {path} cannot be trusted: {why}")]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it or its directory.
        why: &'static str,
    },
    /// Every block is held by a live container.
    #[error(
        "all {blocks} blocks of host ids are taken: live containers hold their bytes of {path}"
    )]
    Exhausted {
        /// How many blocks there are.
        blocks: u32,
        /// The lock file.
        path: PathBuf,
    },
}

/// Blocks handed out from one lock file.
pub(crate) struct Blocks {
    /// The lock file, when not the default one.
    path: Option<PathBuf>,
    first: u32,
    count: u32,
    state: Mutex<State>,
}

struct State {
    /// The lock file as this process opened it, on the first take.
    file: Option<LockFile>,
    /// Blocks this process holds, one bit each.
    held: Vec<u64>,
    /// Where the next search starts; `None` before the first.
    next: Option<u32>,
}

/// An open lock file, and what it was when opened.
struct LockFile {
    fd: OwnedFd,
    /// The process that opened it: a child forked since shares its open
    /// file description, and with it its locks, so it opens its own.
    pid: rustix::process::Pid,
    dev: u64,
    ino: u64,
}

/// The blocks every container built as root takes from.
pub(crate) static HOST: Blocks = Blocks::new_static(ID_BLOCKS_FIRST, ID_BLOCKS);

/// A block this process holds; given back when dropped.
#[derive(Debug)]
pub(crate) struct IdBlock {
    blocks: &'static Blocks,
    index: u32,
    /// The process holding it: a forked child's copy gives nothing back.
    pid: rustix::process::Pid,
}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocks")
            .field("path", &self.path)
            .field("first", &self.first)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Blocks {
    const fn new_static(first: u32, count: u32) -> Self {
        Self {
            path: None,
            first,
            count,
            state: Mutex::new(State {
                file: None,
                held: Vec::new(),
                next: None,
            }),
        }
    }

    /// Blocks of `count` from host id `first`, locked through `path`.
    #[cfg(test)]
    pub(crate) fn new(path: PathBuf, first: u32, count: u32) -> Self {
        Self {
            path: Some(path),
            ..Self::new_static(first, count)
        }
    }

    fn path(&self) -> PathBuf {
        match &self.path {
            Some(path) => path.clone(),
            None => std::env::var_os(ID_BLOCKS_LOCK_VAR)
                .filter(|value| !value.is_empty())
                .map_or_else(|| PathBuf::from(ID_BLOCKS_LOCK), PathBuf::from),
        }
    }

    /// Takes a block no live container of any process holds.
    pub(crate) fn take(&'static self) -> Result<IdBlock, IdsError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.path();
        let pid = rustix::process::getpid();
        if state.file.as_ref().is_some_and(|file| file.pid != pid) {
            // Forked: the parent's blocks are the parent's.
            state.file = None;
            state.held.clear();
        }
        if state.held.is_empty() {
            state.held = vec![0; self.count.div_ceil(64) as usize];
        }
        let current = match &state.file {
            Some(file) => names_file(&path, file),
            None => false,
        };
        if !current {
            let file = open_lock_file(&path, pid)?;
            // Blocks this process holds, locked again in a file that
            // replaced the one they were locked in. One another process
            // took meanwhile is shared from now on: nothing can undo that.
            for index in (0..self.count).filter(|&index| is_set(&state.held, index)) {
                let _ = crate::sys::lock_byte(file.fd.as_fd(), index, true);
            }
            state.file = Some(file);
        }
        let lock_error = |source| IdsError::LockFile {
            path: path.clone(),
            source,
        };
        // Processes start their searches at different blocks, so that each
        // mostly finds its first try free.
        let start = state.next.unwrap_or_else(|| {
            (pid.as_raw_nonzero().get() as u32).wrapping_mul(2_654_435_761) % self.count
        });
        for step in 0..self.count {
            let index = (start + step) % self.count;
            if is_set(&state.held, index) {
                continue;
            }
            let file = state.file.as_ref().expect("opened above").fd.as_fd();
            if crate::sys::lock_byte(file, index, true).map_err(lock_error)? {
                state.held[(index / 64) as usize] |= 1u64 << (index % 64);
                state.next = Some((index + 1) % self.count);
                return Ok(IdBlock {
                    blocks: self,
                    index,
                    pid,
                });
            }
        }
        Err(IdsError::Exhausted {
            blocks: self.count,
            path,
        })
    }
}

fn is_set(held: &[u64], index: u32) -> bool {
    held.get((index / 64) as usize)
        .is_some_and(|word| word & (1u64 << (index % 64)) != 0)
}

impl IdBlock {
    /// Host id of container id 0 in this block.
    pub(crate) fn first_host_id(&self) -> u32 {
        self.blocks.first + self.index * ID_BLOCK_LEN
    }
}

impl Drop for IdBlock {
    fn drop(&mut self) {
        if rustix::process::getpid() != self.pid {
            return;
        }
        let mut state = self
            .blocks
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = &state.file {
            // An unlock of a byte this description locked cannot fail; if it
            // did, the block would stay taken until the process ends.
            let _ = crate::sys::lock_byte(file.fd.as_fd(), self.index, false);
        }
        let (word, bit) = ((self.index / 64) as usize, 1u64 << (self.index % 64));
        if let Some(held) = state.held.get_mut(word) {
            *held &= !bit;
        }
    }
}

/// Whether `path` still names the file `file` is.
fn names_file(path: &Path, file: &LockFile) -> bool {
    rustix::fs::lstat(path).is_ok_and(|stat| stat.st_dev == file.dev && stat.st_ino == file.ino)
}

/// Opens (making it and its directory if needed) the lock file, which it
/// and its directory must show to be this user's alone.
fn open_lock_file(path: &Path, pid: rustix::process::Pid) -> Result<LockFile, IdsError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let untrusted = |why| IdsError::Untrusted {
        path: path.to_path_buf(),
        why,
    };
    let io_error = |source: rustix::io::Errno| IdsError::LockFile {
        path: path.to_path_buf(),
        source: source.into(),
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(untrusted("it names no file in a directory"));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(io_error(e)),
    }
    let me = rustix::process::geteuid().as_raw();
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
            untrusted("its directory is a symbolic link or no directory")
        }
        e => io_error(e),
    })?;
    let dir_stat = rustix::fs::fstat(&dir_fd).map_err(io_error)?;
    if dir_stat.st_uid != me || dir_stat.st_mode & 0o022 != 0 {
        return Err(untrusted(
            "its directory is another user's or writable by others",
        ));
    }
    let fd = rustix::fs::openat(
        &dir_fd,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => untrusted("it is a symbolic link"),
        e => io_error(e),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(io_error)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || stat.st_nlink != 1 {
        return Err(untrusted("it is no regular file of one name"));
    }
    if stat.st_uid != me || stat.st_mode & 0o077 != 0 {
        return Err(untrusted("it is another user's or open to others"));
    }
    Ok(LockFile {
        fd,
        pid,
        dev: stat.st_dev,
        ino: stat.st_ino,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(path: &Path, count: u32) -> &'static Blocks {
        Box::leak(Box::new(Blocks::new(path.to_path_buf(), 1_000_000, count)))
    }

    /// A directory of this test's own, removed when dropped.
    struct LockDir(PathBuf);

    impl LockDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for LockDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lock_dir(name: &str) -> LockDir {
        let dir = std::env::temp_dir().join(format!("hutch-ids-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("temporary directory");
        LockDir(dir)
    }

    #[test]
    fn blocks_held_by_one_process_are_never_handed_out_again_until_given_back() {
        let dir = lock_dir("one");
        let blocks = leaked(&dir.path().join("ids"), 3);
        let mut taken: Vec<IdBlock> = (0..3)
            .map(|_| blocks.take().expect("a free block"))
            .collect();
        let mut firsts: Vec<u32> = taken.iter().map(IdBlock::first_host_id).collect();
        firsts.sort_unstable();
        assert_eq!(
            firsts,
            [
                1_000_000,
                1_000_000 + ID_BLOCK_LEN,
                1_000_000 + 2 * ID_BLOCK_LEN
            ]
        );
        let err = blocks.take().expect_err("all three are held");
        assert_eq!(
            err.to_string(),
            format!(
                "all 3 blocks of host ids are taken: live containers hold their bytes of {}",
                dir.path().join("ids").display()
            )
        );
        let given_back = taken[1].first_host_id();
        drop(taken.remove(1));
        assert_eq!(
            blocks.take().expect("one given back").first_host_id(),
            given_back
        );
    }

    /// Two `Blocks` on one file stand for two processes: their open file
    /// descriptions are different, so their locks exclude each other as two
    /// processes' do.
    #[test]
    fn a_block_another_process_holds_is_skipped_and_taken_once_given_back() {
        let dir = lock_dir("two");
        let path = dir.path().join("ids");
        let (one, other) = (leaked(&path, 2), leaked(&path, 2));
        let first = one.take().expect("a free block");
        let second = other.take().expect("the other block");
        assert_ne!(first.first_host_id(), second.first_host_id());
        assert!(matches!(
            other.take(),
            Err(IdsError::Exhausted { blocks: 2, .. })
        ));
        assert!(matches!(
            one.take(),
            Err(IdsError::Exhausted { blocks: 2, .. })
        ));
        let freed = first.first_host_id();
        drop(first);
        assert_eq!(other.take().expect("given back").first_host_id(), freed);
    }

    #[test]
    fn a_lock_file_that_cannot_be_made_is_named() {
        let dir = lock_dir("named");
        let missing = dir.path().join("no").join("such").join("ids");
        let err = leaked(&missing, 2)
            .take()
            .expect_err("no parent to make it in");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use the id-block lock file {} (name another with HUTCH_ID_BLOCKS_LOCK, \
                 or give the builder an id map)",
                missing.display()
            )
        );
    }

    /// A lock file others could write, replace or lock for this process
    /// would let them share a block between two containers, or refuse
    /// every block: each such file is refused, saying why.
    #[test]
    fn a_lock_file_others_control_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = lock_dir("untrusted");
        let why = |path: &Path| match leaked(path, 2).take() {
            Err(IdsError::Untrusted { why, .. }) => why,
            other => panic!("{}: {other:?}", path.display()),
        };
        let open_dir = dir.path().join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            why(&open_dir.join("ids")),
            "its directory is another user's or writable by others"
        );
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(&open_dir, &linked_dir).unwrap();
        assert_eq!(
            why(&linked_dir.join("ids")),
            "its directory is a symbolic link or no directory"
        );
        let target = dir.path().join("target");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link")).unwrap();
        assert_eq!(why(&dir.path().join("link")), "it is a symbolic link");
        let readable = dir.path().join("readable");
        std::fs::write(&readable, b"").unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(why(&readable), "it is another user's or open to others");
        std::fs::hard_link(&target, dir.path().join("second-name")).unwrap();
        assert_eq!(why(&target), "it is no regular file of one name");
    }

    /// A lock file removed and made again (a service manager cleaning its
    /// runtime directory) is no longer the one other processes lock: the
    /// blocks held are locked again in the new one, and no block another
    /// process takes there is one of them.
    #[test]
    fn blocks_held_are_locked_again_in_a_lock_file_that_replaced_theirs() {
        let dir = lock_dir("replaced");
        let path = dir.path().join("ids");
        let one = leaked(&path, 2);
        let held = one.take().expect("a free block");
        std::fs::remove_file(&path).unwrap();
        let (other, free) = (leaked(&path, 2), one.take().expect("the other block"));
        drop(free);
        // `one` found its file gone and locked its block in the new file.
        let taken = other.take().expect("one block is free");
        assert_ne!(taken.first_host_id(), held.first_host_id());
        assert!(matches!(
            other.take(),
            Err(IdsError::Exhausted { blocks: 2, .. })
        ));
    }

    /// The environment variable that runs the forked-child test on the only
    /// thread of a process of its own.
    const FORK_TEST: &str = "HUTCH_IDS_FORK_TEST";

    /// A forked child shares its parent's open file description of the
    /// lock file, and with it every lock the parent takes: it must take its
    /// blocks through a description of its own, and give back none of its
    /// parent's.
    #[test]
    fn a_forked_child_takes_blocks_of_its_own_and_gives_back_none_of_its_parents() {
        let dir = lock_dir("fork");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ids::tests::isolated_fork",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(FORK_TEST, dir.path().join("ids"))
            .status()
            .unwrap();
        assert!(status.success(), "the forking process: {status}");
    }

    /// Run by the test above, alone in its process.
    #[test]
    #[ignore = "run by a_forked_child_takes_blocks_of_its_own_and_gives_back_none_of_its_parents"]
    fn isolated_fork() {
        use std::io::{Read, Write};
        let path = PathBuf::from(std::env::var_os(FORK_TEST).expect("run by its launcher"));
        let blocks = leaked(&path, 3);
        let before = blocks.take().expect("a free block");
        let (go_read, go_write) = rustix::pipe::pipe().unwrap();
        let (said_read, said_write) = rustix::pipe::pipe().unwrap();
        match crate::sys::fork_alone().expect("fork") {
            None => {
                // The child: waits until the parent took a block after the
                // fork, takes one, says which, and drops its copy of the
                // parent's earlier block.
                let mut byte = [0u8];
                let _ = std::fs::File::from(go_read).read(&mut byte);
                let id = blocks.take().map_or(0, |block| block.first_host_id());
                let _ = std::fs::File::from(said_write).write_all(&id.to_ne_bytes());
                drop(before);
                std::process::exit(0);
            }
            Some(child) => {
                drop((go_read, said_write));
                let after = blocks.take().expect("a free block");
                std::fs::File::from(go_write).write_all(b"1").unwrap();
                let mut id = [0u8; 4];
                std::fs::File::from(said_read).read_exact(&mut id).unwrap();
                let child_took = u32::from_ne_bytes(id);
                rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty())
                    .unwrap();
                assert_ne!(child_took, 0, "the child got no block");
                for held in [&before, &after] {
                    assert_ne!(
                        child_took,
                        held.first_host_id(),
                        "the child took its parent's"
                    );
                }
                // The child's block went with it; the parent's two are
                // still locked for every other process.
                let other = leaked(&path, 3);
                let first = other.take().expect("one free");
                assert_eq!(first.first_host_id(), child_took);
                let second = other.take();
                assert!(
                    matches!(second, Err(IdsError::Exhausted { .. })),
                    "{second:?}: before {} after {} child {child_took}",
                    before.first_host_id(),
                    after.first_host_id()
                );
            }
        }
    }
}
