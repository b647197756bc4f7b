//! Building the container's file system and identity, once, in straight
//! line: each step either succeeds or returns the [`Failure`] that names it.
//!
//! 1. Make every inherited mount private, so nothing propagates to the host.
//! 2. Take detached copies (`open_tree`) of every bind source while the
//!    host's tree is still visible.
//! 3. Mount a tmpfs as the new root at [`STAGING`] and build the container
//!    under it: binds moved in place, tmpfs mounts, `proc` (which must be
//!    mounted before the old root goes, or the kernel refuses it inside a
//!    user namespace).
//! 4. `pivot_root(".", ".")` and detach the old root, which leaves no
//!    directory behind to remove.
//! 5. Symbolic links, masked paths, `/` read-only and `nosuid`, host and
//!    domain names, the work directory.

use alloc::borrow::ToOwned;
use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hutch_protocol::{Configure, ErrorReply, FileSystem, Mount, MountFlags, Stage};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{CWD, Mode, StatVfsMountFlags};
use rustix::mount::{
    MountFlags as Ms, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};

use crate::{os, sys};

/// Where the new root is assembled before `pivot_root`. Bind sources are
/// opened before anything is mounted here, so none is hidden by it.
const STAGING: &str = "/tmp";

/// A failed step, sent to the host as an [`ErrorReply`].
#[derive(Debug)]
pub struct Failure(pub ErrorReply);

fn fail(stage: Stage, err: impl Into<os::Error>, path: &str, what: &str) -> Failure {
    let err = err.into();
    Failure(ErrorReply {
        stage,
        errno: err.raw_os_error().unwrap_or(0),
        path: Some(path.to_owned()),
        message: format!("{what} {path:?}: {err}"),
    })
}

/// The container's writable tmpfs mounts, emptied by a reset.
pub struct Scratch {
    /// Target paths inside the container.
    pub paths: Vec<String>,
    /// Their permission bits.
    pub modes: Vec<u32>,
    /// Their owners (uid, gid).
    pub owners: Vec<(u32, u32)>,
    /// Their root directories, opened once the file system is complete, so
    /// that the checks of every run and reset look up no path.
    pub roots: Vec<OwnedFd>,
}

impl Scratch {
    fn none() -> Self {
        Scratch {
            paths: Vec::new(),
            modes: Vec::new(),
            owners: Vec::new(),
            roots: Vec::new(),
        }
    }
}

/// Applies `config`; on success the calling process's root and working
/// directory are the container's.
fn build_root(config: &Configure) -> Result<Scratch, Failure> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| fail(Stage::Mount, e, "/", "cannot make mounts private at"))?;

    let mut trees: Vec<Option<OwnedFd>> = Vec::with_capacity(config.mounts.len());
    for mount in &config.mounts {
        let tree = match mount {
            Mount::Bind { source, .. } => Some(open_tree(source, true)?),
            Mount::Device { source, .. } => Some(open_tree(source, false)?),
            Mount::Tmpfs { .. } | Mount::Proc { .. } => None,
        };
        trees.push(tree);
    }

    mount_fs(
        "tmpfs",
        STAGING,
        Ms::NOSUID | Ms::NODEV,
        "size=1m,nr_inodes=4096,mode=0755",
    )
    .map_err(|e| fail(Stage::Mount, e, STAGING, "cannot mount the root tmpfs at"))?;
    rustix::process::chdir(STAGING).map_err(|e| fail(Stage::Mount, e, STAGING, "cannot enter"))?;

    let mut scratch = Scratch::none();
    for (mount, tree) in config.mounts.iter().zip(trees) {
        match (mount, tree) {
            (
                Mount::Bind {
                    target,
                    writable,
                    flags,
                    ..
                },
                Some(tree),
            ) => {
                place_tree(tree, target)?;
                restrict(target, !writable, *flags)?;
            }
            (Mount::Device { target, .. }, Some(tree)) => {
                place_tree(tree, target)?;
                restrict(
                    target,
                    false,
                    MountFlags {
                        nosuid: true,
                        nodev: false,
                        noexec: true,
                    },
                )?;
            }
            (
                Mount::Tmpfs {
                    target,
                    size_bytes,
                    max_inodes,
                    mode,
                    read_only,
                },
                _,
            ) => {
                let at = staged(target);
                make_dir(&at, target)?;
                let data = format!("size={size_bytes},nr_inodes={max_inodes},mode={mode:o}");
                mount_fs("tmpfs", &at, Ms::NOSUID | Ms::NODEV, &data)
                    .map_err(|e| fail(Stage::Mount, e, target, "cannot mount tmpfs at"))?;
                if *read_only {
                    remount_read_only(&at, target, Ms::NOSUID | Ms::NODEV)?;
                } else {
                    if *target == config.workdir {
                        // The work directory belongs to the programs' user.
                        rustix::fs::chown(&at, Some(uid(config.uid)), Some(gid(config.gid)))
                            .map_err(|e| fail(Stage::Mount, e, target, "cannot hand over"))?;
                    }
                    scratch.paths.push(target.clone());
                    scratch.modes.push(*mode);
                    scratch.owners.push(if *target == config.workdir {
                        (config.uid, config.gid)
                    } else {
                        (0, 0)
                    });
                }
            }
            (Mount::Proc { target, read_only }, _) => {
                let at = staged(target);
                make_dir(&at, target)?;
                let flags = Ms::NOSUID | Ms::NODEV | Ms::NOEXEC;
                mount_fs("proc", &at, flags, "")
                    .map_err(|e| fail(Stage::Proc, e, target, "cannot mount proc at"))?;
                if *read_only {
                    remount_read_only(&at, target, flags)?;
                }
            }
            (Mount::Bind { target, .. } | Mount::Device { target, .. }, None) => {
                return Err(fail(
                    Stage::Mount,
                    rustix::io::Errno::NOENT,
                    target,
                    "no source tree for",
                ));
            }
        }
    }

    // The new root is the current directory: stack it on the old one and
    // drop the old one from under it.
    rustix::process::pivot_root(".", ".")
        .map_err(|e| fail(Stage::PivotRoot, e, STAGING, "cannot pivot_root into"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| fail(Stage::PivotRoot, e, "/", "cannot detach the old root at"))?;
    rustix::process::chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/", "cannot enter"))?;

    for link in &config.symlinks {
        if let Some(parent) = os::parent(&link.link) {
            os::create_dir_all(parent)
                .map_err(|e| fail(Stage::Symlink, e, &link.link, "cannot create the parent of"))?;
        }
        rustix::fs::symlink(link.target.as_str(), link.link.as_str())
            .map_err(|e| fail(Stage::Symlink, e, &link.link, "cannot create symbolic link"))?;
    }

    for masked in &config.masked_paths {
        mask(masked)?;
    }

    rustix::mount::mount_remount("/", Ms::BIND | Ms::RDONLY | Ms::NOSUID | Ms::NODEV, "")
        .map_err(|e| fail(Stage::RemountRoot, e, "/", "cannot remount read-only"))?;
    for path in &scratch.paths {
        let root = os::open_dir(rustix::fs::CWD, path.as_str())
            .map_err(|e| fail(Stage::Mount, e, path, "cannot open the tmpfs at"))?;
        scratch.roots.push(root);
    }
    Ok(scratch)
}

pub fn apply(config: &Configure) -> Result<Scratch, Failure> {
    let scratch = match config.filesystem {
        FileSystem::Container => build_root(config)?,
        // The host's mount namespace: nothing may be mounted in it.
        FileSystem::Host => Scratch::none(),
    };
    // Empty names are left as they are (the host sends them when the
    // container shares the host's UTS namespace).
    if !config.hostname.is_empty() {
        rustix::system::sethostname(config.hostname.as_bytes())
            .map_err(|e| fail(Stage::Hostname, e, &config.hostname, "cannot set host name"))?;
    }
    if !config.domainname.is_empty() {
        rustix::system::setdomainname(config.domainname.as_bytes()).map_err(|e| {
            fail(
                Stage::Hostname,
                e,
                &config.domainname,
                "cannot set domain name",
            )
        })?;
    }

    rustix::process::chdir(config.workdir.as_str()).map_err(|e| {
        fail(
            Stage::Workdir,
            e,
            &config.workdir,
            "cannot enter the work directory",
        )
    })?;
    reached_without_links(&config.workdir)?;
    if !config.init_command.is_empty() {
        run_init_command(&config.init_command, &config.workdir)?;
    }
    Ok(scratch)
}

/// Fails unless the work directory `workdir` is reached without a symbolic
/// link: the host's file operations name paths in it and follow none, so
/// one on the way would fail every one of them.
fn reached_without_links(workdir: &str) -> Result<(), Failure> {
    match crate::files::open_dir(workdir) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::LOOP) => Err(Failure(ErrorReply {
            stage: Stage::Workdir,
            errno: rustix::io::Errno::LOOP.raw_os_error(),
            path: Some(workdir.to_owned()),
            message: format!(
                "the work directory {workdir:?} is or passes through a symbolic link, which no \
                 file operation follows: name the directory itself"
            ),
        })),
        Err(e) => Err(fail(
            Stage::Workdir,
            e,
            workdir,
            "cannot open the work directory",
        )),
    }
}

/// Runs the configured command once, as the container's root (with no
/// capabilities), with the default search path and `/dev/null` for its
/// standard streams; whatever it leaves running is killed before init goes
/// on.
fn run_init_command(argv: &[String], workdir: &str) -> Result<(), Failure> {
    let cannot = |e: os::Error| {
        fail(
            Stage::InitCommand,
            e,
            &argv[0],
            "cannot run the init command",
        )
    };
    let mut program = Vec::new();
    if !crate::exec::lookup_into(
        &argv[0],
        workdir,
        hutch_protocol::DEFAULT_PATH,
        &mut program,
    ) {
        return Err(cannot(rustix::io::Errno::NOENT.into()));
    }
    let cstr = |s: &str| CString::new(s).map_err(|_| cannot(rustix::io::Errno::INVAL.into()));
    let path = core::ffi::CStr::from_bytes_with_nul(&program)
        .map_err(|_| cannot(rustix::io::Errno::INVAL.into()))?;
    let args = argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = [cstr(&format!("PATH={}", hutch_protocol::DEFAULT_PATH))?];
    let arg_ptrs = crate::exec::null_terminated(&args);
    let env_ptrs = crate::exec::null_terminated(&env);
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| cannot(e.into()))?;
    let (err_read, err_write) = sys::pipe().map_err(cannot)?;
    let null_raw = sys::raw(&null);
    let plan = sys::Plan {
        cgroup_procs: &[],
        cgroup_dir: -1,
        fds: &[null_raw, null_raw, null_raw],
        exec_fd: -1,
        path,
        argv: &arg_ptrs,
        envp: &env_ptrs,
        cwd: c".",
        rlimits: &[],
        new_ipc: false,
        uid: 0,
        gid: 0,
        seccomp: &[],
        err_pipe: sys::raw(&err_write),
        sync_pipe: -1,
    };
    let child = sys::spawn(&plan).map_err(cannot)?;
    drop(err_write);
    let started = crate::exec::await_start(&err_read, None);
    let reaped = sys::wait4(child.pid, false);
    crate::exec::end_everything();
    match started.map_err(cannot)? {
        crate::exec::Start::Failed { errno, .. } => {
            return Err(cannot(os::Error::from_raw_os_error(errno)));
        }
        crate::exec::Start::Execd | crate::exec::Start::TimedOut => {}
    }
    match reaped {
        Ok(Some(reaped)) if reaped.status == 0 => Ok(()),
        Ok(Some(reaped)) => Err(Failure(ErrorReply {
            stage: Stage::InitCommand,
            errno: 0,
            path: Some(argv[0].clone()),
            message: format!(
                "init command {:?} failed: {}",
                argv[0],
                crate::exec::describe_status(reaped.status)
            ),
        })),
        Ok(None) => Err(cannot(rustix::io::Errno::CHILD.into())),
        Err(e) => Err(cannot(e)),
    }
}

/// `mount(fstype, target, fstype, flags, data)` for a new file system.
fn mount_fs(fstype: &str, target: &str, flags: Ms, data: &str) -> rustix::io::Result<()> {
    let data = CString::new(data).map_err(|_| rustix::io::Errno::INVAL)?;
    rustix::mount::mount(fstype, target, fstype, flags, data.as_c_str())
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}

/// The staging path of a container path.
fn staged(target: &str) -> String {
    format!("{STAGING}{target}")
}

fn open_tree(source: &str, recursive: bool) -> Result<OwnedFd, Failure> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(CWD, source, flags)
        .map_err(|e| fail(Stage::Mount, e, source, "cannot open the mount source"))
}

fn make_dir(at: &str, target: &str) -> Result<(), Failure> {
    os::create_dir_all(at).map_err(|e| fail(Stage::Mount, e, target, "cannot create mount point"))
}

/// Moves a detached tree to `target`, creating a mount point of its kind.
fn place_tree(tree: OwnedFd, target: &str) -> Result<(), Failure> {
    let at = staged(target);
    let is_dir = rustix::fs::fstat(&tree)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
        .map_err(|e| fail(Stage::Mount, e, target, "cannot inspect the source of"))?;
    if is_dir {
        make_dir(&at, target)?;
    } else {
        if let Some(parent) = os::parent(&at) {
            os::create_dir_all(parent)
                .map_err(|e| fail(Stage::Mount, e, target, "cannot create the parent of"))?;
        }
        rustix::fs::open(
            at.as_str(),
            rustix::fs::OFlags::WRONLY
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NOCTTY,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| fail(Stage::Mount, e, target, "cannot create mount point"))?;
    }
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        CWD,
        at.as_str(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail(Stage::Mount, e, target, "cannot bind"))
}

/// Remounts a bind with the wanted restrictions, keeping the ones the
/// kernel locked on it (flags inherited from a more privileged namespace
/// must be repeated or the remount is refused).
fn restrict(target: &str, read_only: bool, flags: MountFlags) -> Result<(), Failure> {
    let at = staged(target);
    let mut ms = Ms::BIND | locked_flags(&at, target)?;
    if read_only {
        ms |= Ms::RDONLY;
    }
    if flags.nosuid {
        ms |= Ms::NOSUID;
    }
    if flags.nodev {
        ms |= Ms::NODEV;
    }
    if flags.noexec {
        ms |= Ms::NOEXEC;
    }
    rustix::mount::mount_remount(at.as_str(), ms, "")
        .map_err(|e| fail(Stage::Mount, e, target, "cannot restrict the bind at"))
}

fn remount_read_only(at: &str, target: &str, base: Ms) -> Result<(), Failure> {
    let flags = Ms::BIND | Ms::RDONLY | base | locked_flags(at, target)?;
    rustix::mount::mount_remount(at, flags, "")
        .map_err(|e| fail(Stage::Mount, e, target, "cannot remount read-only"))
}

fn locked_flags(at: &str, target: &str) -> Result<Ms, Failure> {
    let st =
        rustix::fs::statvfs(at).map_err(|e| fail(Stage::Mount, e, target, "cannot inspect"))?;
    let mut ms = Ms::empty();
    for (vfs, flag) in [
        (StatVfsMountFlags::RDONLY, Ms::RDONLY),
        (StatVfsMountFlags::NOSUID, Ms::NOSUID),
        (StatVfsMountFlags::NODEV, Ms::NODEV),
        (StatVfsMountFlags::NOEXEC, Ms::NOEXEC),
        (StatVfsMountFlags::NOATIME, Ms::NOATIME),
        (StatVfsMountFlags::NODIRATIME, Ms::NODIRATIME),
        (StatVfsMountFlags::RELATIME, Ms::RELATIME),
    ] {
        if st.f_flag.contains(vfs) {
            ms |= flag;
        }
    }
    Ok(ms)
}

/// Hides `path`: a directory under an empty read-only tmpfs, anything else
/// under a bind of `/dev/null`. A path that does not exist is left alone.
fn mask(path: &str) -> Result<(), Failure> {
    let kind = match os::file_type(path) {
        Ok(kind) => kind,
        Err(os::Error::Os(rustix::io::Errno::NOENT)) => return Ok(()),
        Err(e) => return Err(fail(Stage::Mask, e, path, "cannot inspect")),
    };
    if kind.is_dir() {
        mount_fs(
            "tmpfs",
            path,
            Ms::RDONLY | Ms::NOSUID | Ms::NODEV | Ms::NOEXEC,
            "size=4k,nr_inodes=1",
        )
        .map_err(|e| fail(Stage::Mask, e, path, "cannot mask"))
    } else {
        rustix::mount::mount_bind("/dev/null", path)
            .map_err(|e| fail(Stage::Mask, e, path, "cannot mask"))
    }
}

/// Empties a writable tmpfs, whose root is open as `root`, and restores
/// that directory's owner, mode and extended attributes.
/// `levels` is reused from reset to reset (see [`os::remove_contents`]).
pub fn empty_dir(
    root: BorrowedFd<'_>,
    mode: u32,
    (uid_raw, gid_raw): (u32, u32),
    levels: &mut Vec<OwnedFd>,
) -> os::Result<()> {
    // Most runs leave the mounts empty: one statfs tells.
    if !os::holds_nothing(root) {
        os::remove_contents(root, levels)?;
    }
    // Its owner (the programs' uid) may set attributes on the mount's own
    // directory: a default ACL would take every permission from the files
    // later runs make there.
    os::remove_program_xattrs(root)?;
    // A run may have changed the mount's own owner or mode; restored only
    // then.
    let stat = rustix::fs::fstat(root)?;
    if (stat.st_uid, stat.st_gid) != (uid_raw, gid_raw) {
        rustix::fs::fchown(root, Some(uid(uid_raw)), Some(gid(gid_raw)))?;
    }
    if stat.st_mode & 0o7777 != mode & 0o7777 {
        rustix::fs::fchmod(root, Mode::from_raw_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_directory_behind_a_symbolic_link_is_refused_naming_it() {
        let root = std::env::temp_dir().join(format!("hutch-init-workdir-{}", std::process::id()));
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("real", root.join("link")).unwrap();
        let path = |rest: &str| format!("{}/{rest}", root.display());
        assert!(reached_without_links(&path("real/sub")).is_ok());
        for linked in [path("link"), path("link/sub")] {
            let Err(Failure(reply)) = reached_without_links(&linked) else {
                panic!("{linked} was let through");
            };
            assert_eq!(reply.stage, Stage::Workdir);
            assert_eq!(reply.errno, libc::ELOOP);
            assert_eq!(reply.path.as_deref(), Some(linked.as_str()));
            assert!(
                reply.message.contains("passes through a symbolic link"),
                "{}",
                reply.message
            );
        }
        let Err(Failure(missing)) = reached_without_links(&path("none")) else {
            panic!("a missing directory was let through");
        };
        assert_eq!(missing.errno, libc::ENOENT);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
