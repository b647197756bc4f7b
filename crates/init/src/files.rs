//! Opening, deleting and linking files inside the container for the host.
//!
//! Init's root is the container's root, so absolute paths, `..` and
//! symbolic links all resolve inside the container. On top of that, opens
//! refuse magic links (`/proc/*/fd/*`, `/proc/*/root`) and a symbolic link
//! in the last component, and hand back regular files only.

use alloc::format;
use alloc::vec::Vec;

use rustix::fd::OwnedFd;

use hutch_protocol::{Access, ItemError, OpenItem, SymlinkItem};
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
    let fd = rustix::fs::openat2(
        CWD,
        item.path.as_str(),
        oflags,
        Mode::from_raw_mode(item.mode),
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
