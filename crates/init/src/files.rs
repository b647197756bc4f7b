//! Opening, deleting and linking files inside the container for the host.
//!
//! Init's root is the container's root, so absolute paths, `..` and
//! symbolic links all resolve inside the container. On top of that, opens
//! refuse magic links (`/proc/*/fd/*`, `/proc/*/root`) and a symbolic link
//! in the last component, and hand back regular files only.

use std::os::fd::OwnedFd;
use std::path::Path;

use hutch_protocol::{Access, ItemError, OpenItem, SymlinkItem};
use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

fn item_error(errno: Errno, what: &str, path: &str) -> ItemError {
    ItemError {
        errno: errno.raw_os_error(),
        message: format!("{what} {path:?}: {}", std::io::Error::from(errno)),
    }
}

/// Opens one file as `item` asks.
pub fn open(item: &OpenItem) -> Result<OwnedFd, ItemError> {
    if item.make_parents {
        if let Some(parent) = Path::new(&item.path).parent() {
            std::fs::create_dir_all(parent).map_err(|e| ItemError {
                errno: e.raw_os_error().unwrap_or(0),
                message: format!("cannot create the parent of {:?}: {e}", item.path),
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
    let mut status = oflags & OFlags::APPEND;
    status.remove(OFlags::NONBLOCK);
    rustix::fs::fcntl_setfl(&fd, status)
        .map_err(|e| item_error(e, "cannot set flags of", &item.path))?;
    Ok(fd)
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
