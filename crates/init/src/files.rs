//! Opening, deleting, linking and copying files inside the container for
//! the host.
//!
//! Init's root is the container's root, so absolute paths, `..` and
//! symbolic links all resolve inside the container. On top of that, opens
//! refuse magic links (`/proc/*/fd/*`, `/proc/*/root`) and a symbolic link
//! in the last component, and hand back regular files only. Copy-out opens
//! go further and refuse a symbolic link anywhere in the path: what the host
//! reads back is a file a run made, never what a link a program planted
//! points to.

use alloc::format;
use alloc::vec::Vec;

use rustix::fd::OwnedFd;

use hutch_protocol::{
    Access, CopyInFailure, CopyInItem, CopyInOutcome, CopyInStep, ItemError, OpenItem, SymlinkItem,
};
use rustix::fs::{CWD, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

fn item_error(errno: Errno, what: &str, path: &str) -> ItemError {
    ItemError {
        errno: errno.raw_os_error(),
        message: format!("{what} {path:?}: {}", crate::os::Error::from(errno)),
    }
}

/// Opens one file as `item` asks. Files and directories it creates belong
/// to `owner`, the programs' user, so that programs may use them.
pub fn open(item: &OpenItem, owner: (u32, u32)) -> Result<OwnedFd, ItemError> {
    let (uid, gid) = (Uid::from_raw(owner.0), Gid::from_raw(owner.1));
    if item.make_parents {
        if let Some(parent) = crate::os::parent(&item.path) {
            make_parents(parent, uid, gid).map_err(|e| ItemError {
                errno: e.raw_os_error(),
                message: format!(
                    "cannot create the parent of {:?}: {}",
                    item.path,
                    crate::os::Error::from(e)
                ),
            })?;
        }
    }
    let flags = item.flags;
    let mut oflags = match flags.access {
        Access::Read => OFlags::RDONLY,
        Access::Write => OFlags::WRONLY,
        Access::ReadWrite => OFlags::RDWR,
    };
    // Non-blocking so that a FIFO planted at the path cannot stall init
    // before it is refused below.
    oflags |= OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    for (wanted, flag) in [
        (flags.create, OFlags::CREATE),
        (flags.exclusive, OFlags::EXCL),
        (flags.truncate, OFlags::TRUNC),
        (flags.append, OFlags::APPEND),
    ] {
        if wanted {
            oflags |= flag;
        }
    }
    // The mode matters only to a file made now; openat2 refuses any other
    // mode than 0 without O_CREAT.
    let mode = if flags.create { item.mode } else { 0 };
    let fd = rustix::fs::openat2(
        CWD,
        item.path.as_str(),
        oflags,
        Mode::from_raw_mode(mode),
        ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| item_error(e, "cannot open", &item.path))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| item_error(e, "cannot inspect", &item.path))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(ItemError {
            errno: Errno::INVAL.raw_os_error(),
            message: format!("{:?} is not a regular file", item.path),
        });
    }
    if flags.create {
        rustix::fs::fchown(&fd, Some(uid), Some(gid))
            .map_err(|e| item_error(e, "cannot hand over", &item.path))?;
    }
    let mut status = oflags & OFlags::APPEND;
    status.remove(OFlags::NONBLOCK);
    rustix::fs::fcntl_setfl(&fd, status)
        .map_err(|e| item_error(e, "cannot set flags of", &item.path))?;
    Ok(fd)
}

/// Creates the file of `item` (and its missing parents) as the programs'
/// user and fills it with the whole of `source`, a regular file, from
/// offset 0 to its end.
///
/// Init writes the file itself: no writable descriptor of it ever leaves
/// init, which closes it before it answers, so a program executing the file
/// later can never meet `ETXTBSY` because some other process still holds it
/// open for writing.
pub fn copy_in(item: &CopyInItem, source: &OwnedFd, owner: (u32, u32)) -> CopyInOutcome {
    let path = item.path.as_str();
    let create =
        |errno: Errno, what: &str| failed(CopyInStep::Create, item_error(errno, what, path));
    let source_type = match rustix::fs::fstat(source) {
        Ok(stat) => FileType::from_raw_mode(stat.st_mode),
        Err(e) => return create(e, "cannot inspect the source of"),
    };
    if source_type != FileType::RegularFile {
        return failed(
            CopyInStep::Create,
            ItemError {
                errno: Errno::INVAL.raw_os_error(),
                message: format!("the source of {path:?} is not a regular file"),
            },
        );
    }
    let (uid, gid) = (Uid::from_raw(owner.0), Gid::from_raw(owner.1));
    if let Some(parent) = crate::os::parent(path) {
        if let Err(e) = make_parents(parent, uid, gid) {
            return failed(
                CopyInStep::Create,
                ItemError {
                    errno: e.raw_os_error(),
                    message: format!(
                        "cannot create the parent of {path:?}: {}",
                        crate::os::Error::from(e)
                    ),
                },
            );
        }
    }
    // Non-blocking so that a FIFO planted at the path cannot stall init
    // before it is refused below.
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::TRUNC
        | OFlags::CLOEXEC
        | OFlags::NOCTTY
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK;
    let mode = Mode::from_raw_mode(item.mode);
    let file = match rustix::fs::openat2(CWD, path, flags, mode, ResolveFlags::NO_MAGICLINKS) {
        Ok(file) => file,
        Err(e) => return create(e, "cannot create"),
    };
    match rustix::fs::fstat(&file) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {}
        Ok(_) => {
            return failed(
                CopyInStep::Create,
                ItemError {
                    errno: Errno::INVAL.raw_os_error(),
                    message: format!("{path:?} is not a regular file"),
                },
            );
        }
        Err(e) => return create(e, "cannot inspect"),
    }
    // The creation mode went through init's umask, and an existing file kept
    // its own: set both owner and mode exactly.
    if let Err(e) = rustix::fs::fchown(&file, Some(uid), Some(gid))
        .and_then(|()| rustix::fs::fchmod(&file, mode))
    {
        return create(e, "cannot hand over");
    }
    match fill(&file, source) {
        Ok(()) => CopyInOutcome::Done,
        Err(e) => {
            // Half a file is worse than none: leave it empty.
            let _ = rustix::fs::ftruncate(&file, 0);
            failed(CopyInStep::Fill, item_error(e, "cannot fill", path))
        }
    }
}

fn failed(step: CopyInStep, error: ItemError) -> CopyInOutcome {
    CopyInOutcome::Failed(CopyInFailure {
        step,
        errno: error.errno,
        message: error.message,
    })
}

/// Copies the whole of `source` into `file`, in the kernel where it can.
fn fill(file: &OwnedFd, source: &OwnedFd) -> Result<(), Errno> {
    let mut offset: u64 = 0;
    loop {
        match rustix::fs::sendfile(file, source, Some(&mut offset), 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::INTR | Errno::AGAIN) => {}
            // A source whose file system cannot splice: copy through a
            // buffer, from where sendfile stopped.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return fill_by_reading(file, source, offset);
            }
            Err(e) => return Err(e),
        }
    }
}

fn fill_by_reading(file: &OwnedFd, source: &OwnedFd, mut offset: u64) -> Result<(), Errno> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let read = match rustix::io::pread(source, &mut buf, offset) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < read {
            match rustix::io::pwrite(file, &buf[written..read], offset + written as u64) {
                Ok(n) => written += n,
                Err(Errno::INTR | Errno::AGAIN) => {}
                Err(e) => return Err(e),
            }
        }
        offset += read as u64;
    }
}

/// Opens `path` read-only for the host to copy out: never through a
/// symbolic link anywhere in the path (`ELOOP`), never a magic link, and
/// only a regular file (a FIFO, device, socket or directory is refused
/// without being read from).
pub fn open_for_copy_out(path: &str) -> Result<OwnedFd, ItemError> {
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let open = |flags: OFlags| {
        rustix::fs::openat2(
            CWD,
            path,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| match e {
            Errno::LOOP => ItemError {
                errno: e.raw_os_error(),
                message: format!(
                    "{path:?} is or passes through a symbolic link, which copy-out never follows"
                ),
            },
            e => item_error(e, "cannot open", path),
        })
    };
    // Looked at through an O_PATH descriptor first, which opens nothing: a
    // device's or a FIFO's open is never called.
    let found = open(OFlags::PATH)?;
    let before = rustix::fs::fstat(&found).map_err(|e| item_error(e, "cannot inspect", path))?;
    // O_PATH with O_NOFOLLOW opens a link that ends the path as itself.
    if FileType::from_raw_mode(before.st_mode) == FileType::Symlink {
        return Err(ItemError {
            errno: Errno::LOOP.raw_os_error(),
            message: format!("{path:?} is a symbolic link, which copy-out never follows"),
        });
    }
    let kind = match FileType::from_raw_mode(before.st_mode) {
        FileType::RegularFile => None,
        FileType::Directory => Some("a directory"),
        FileType::Fifo => Some("a FIFO"),
        FileType::CharacterDevice | FileType::BlockDevice => Some("a device"),
        FileType::Socket => Some("a socket"),
        _ => Some("a special file"),
    };
    if let Some(kind) = kind {
        return Err(ItemError {
            errno: Errno::INVAL.raw_os_error(),
            message: format!("{path:?} is {kind}, not a regular file"),
        });
    }
    // Nothing runs in the container while the host copies out; should the
    // path name another file now, it is refused all the same.
    let fd = open(OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK)?;
    let after = rustix::fs::fstat(&fd).map_err(|e| item_error(e, "cannot inspect", path))?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(ItemError {
            errno: Errno::AGAIN.raw_os_error(),
            message: format!("{path:?} changed while it was opened"),
        });
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())
        .map_err(|e| item_error(e, "cannot set flags of", path))?;
    Ok(fd)
}

/// Creates `dir` and its missing ancestors (mode 0755) owned by the
/// programs' user.
fn make_parents(dir: &str, uid: Uid, gid: Gid) -> Result<(), Errno> {
    let mut missing = Vec::new();
    let mut ancestor = Some(dir);
    while let Some(at) = ancestor.filter(|at| !at.is_empty()) {
        match rustix::fs::stat(at) {
            Ok(_) => break,
            Err(Errno::NOENT) => missing.push(at),
            Err(e) => return Err(e),
        }
        ancestor = crate::os::parent(at);
    }
    for created in missing.into_iter().rev() {
        match rustix::fs::mkdir(created, Mode::from_raw_mode(0o755)) {
            Ok(()) => rustix::fs::chown(created, Some(uid), Some(gid))?,
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes a file, or an empty directory.
pub fn delete(path: &str) -> Result<(), Errno> {
    match rustix::fs::unlinkat(CWD, path, rustix::fs::AtFlags::empty()) {
        Err(Errno::ISDIR) => rustix::fs::unlinkat(CWD, path, rustix::fs::AtFlags::REMOVEDIR),
        other => other,
    }
}

/// Creates one symbolic link.
pub fn symlink(item: &SymlinkItem) -> Result<(), ItemError> {
    rustix::fs::symlink(item.target.as_str(), item.link.as_str())
        .map_err(|e| item_error(e, "cannot create symbolic link", &item.link))
}
