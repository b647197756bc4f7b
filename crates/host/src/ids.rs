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
//! default map takes a block of [`ID_BLOCK_LEN`] host ids of its own
//! instead, for as long as it lives.
//!
//! Blocks are handed out within a process under a lock, and between
//! processes (two `hutch run`, a server and a `hutch run`) through a write
//! lock on byte *k* of the file [`ID_BLOCKS_LOCK`] for block *k*. The lock
//! belongs to the process's open file description of that file
//! (`F_OFD_SETLK`), so a process that dies gives its blocks back with it.

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
/// containers has block *k*.
pub const ID_BLOCKS_LOCK: &str = "/run/hutch/id-blocks";

/// Why no block of host ids could be taken.
#[derive(Debug, thiserror::Error)]
pub enum IdsError {
    /// The lock file could not be made, opened or locked.
    #[error("cannot use the id-block lock file {path}")]
    LockFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Every block is held by a live container.
    #[error("all {blocks} blocks of host ids are held by other containers")]
    Exhausted {
        /// How many blocks there are.
        blocks: u32,
    },
}

/// Blocks handed out from one lock file.
pub(crate) struct Blocks {
    /// The lock file, when not [`ID_BLOCKS_LOCK`].
    path: Option<PathBuf>,
    first: u32,
    count: u32,
    state: Mutex<State>,
}

struct State {
    /// The lock file, opened on the first take.
    file: Option<OwnedFd>,
    /// Blocks this process holds, one bit each.
    held: Vec<u64>,
    /// Where the next search starts; `None` before the first.
    next: Option<u32>,
}

/// The blocks every container built as root takes from.
pub(crate) static HOST: Blocks = Blocks::new_static(ID_BLOCKS_FIRST, ID_BLOCKS);

/// A block this process holds; given back when dropped.
#[derive(Debug)]
pub(crate) struct IdBlock {
    blocks: &'static Blocks,
    index: u32,
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

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(ID_BLOCKS_LOCK))
    }

    /// Takes a block no live container of any process holds.
    pub(crate) fn take(&'static self) -> Result<IdBlock, IdsError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lock_error = |source| IdsError::LockFile {
            path: self.path().to_path_buf(),
            source,
        };
        if state.file.is_none() {
            state.file = Some(open_lock_file(self.path()).map_err(lock_error)?);
        }
        if state.held.is_empty() {
            state.held = vec![0; self.count.div_ceil(64) as usize];
        }
        // Processes start their searches at different blocks, so that each
        // mostly finds its first try free.
        let start = state
            .next
            .unwrap_or_else(|| std::process::id().wrapping_mul(2_654_435_761) % self.count);
        for step in 0..self.count {
            let index = (start + step) % self.count;
            let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
            if state.held[word] & bit != 0 {
                continue;
            }
            let file = state.file.as_ref().expect("opened above").as_fd();
            if crate::sys::lock_byte(file, index, true).map_err(lock_error)? {
                state.held[word] |= bit;
                state.next = Some((index + 1) % self.count);
                return Ok(IdBlock {
                    blocks: self,
                    index,
                });
            }
        }
        Err(IdsError::Exhausted { blocks: self.count })
    }
}

impl IdBlock {
    /// Host id of container id 0 in this block.
    pub(crate) fn first_host_id(&self) -> u32 {
        self.blocks.first + self.index * ID_BLOCK_LEN
    }
}

impl Drop for IdBlock {
    fn drop(&mut self) {
        let mut state = self
            .blocks
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = &state.file {
            // An unlock of a byte this description locked cannot fail; if it
            // did, the block would stay taken until the process ends.
            let _ = crate::sys::lock_byte(file.as_fd(), self.index, false);
        }
        let (word, bit) = ((self.index / 64) as usize, 1u64 << (self.index % 64));
        if let Some(held) = state.held.get_mut(word) {
            *held &= !bit;
        }
    }
}

/// Opens (making it and its directory if needed) the lock file, readable
/// and writable by root alone.
fn open_lock_file(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    Ok(file.into())
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
            "all 3 blocks of host ids are held by other containers"
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
            Err(IdsError::Exhausted { blocks: 2 })
        ));
        assert!(matches!(one.take(), Err(IdsError::Exhausted { blocks: 2 })));
        let freed = first.first_host_id();
        drop(first);
        assert_eq!(other.take().expect("given back").first_host_id(), freed);
    }

    #[test]
    fn a_lock_file_that_cannot_be_made_is_named() {
        let dir = lock_dir("named");
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").expect("write");
        let blocks = leaked(&not_a_dir.join("ids"), 2);
        let err = blocks.take().expect_err("a file is in the way");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use the id-block lock file {}/ids",
                not_a_dir.display()
            )
        );
    }
}
