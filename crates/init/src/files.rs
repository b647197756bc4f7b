//! Opening, deleting, linking and copying files inside the container for
//! the host.
//!
//! Init's root is the container's root, so absolute paths and `..` resolve
//! inside the container. No operation here follows a symbolic link
//! anywhere in its path, nor a magic link (`/proc/*/fd/*`, `/proc/*/root`):
//! a link met is `ELOOP`. Links in the writable places are programs' work,
//! and followed as root they would lead the host's reads, writes and
//! deletions into files of another program user that the link's maker
//! could not reach itself (a private directory of another uid's, when one
//! container runs programs as several users between resets). Opens hand
//! back regular files only.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use rustix::fd::OwnedFd;

use hutch_protocol::{
    Access, CopyInFailure, CopyInItem, CopyInOutcome, CopyInStep, ItemError, OpenItem, SymlinkItem,
};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

/// Cuts `message`, one failed item's of a batch of `items`, so that the
/// batch's answer fits one frame whatever paths were asked for (a message
/// repeats its path, escaped: up to four bytes for one byte of it). A cut
/// message ends in `…`, at a character boundary.
pub fn fit_to_batch(message: &mut String, items: usize) {
    let room = (hutch_protocol::MAX_FRAME_LEN / 2 / items.max(1)).clamp(64, 1024);
    if message.len() > room {
        let mut end = room - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
}

/// How every path here is resolved: no symbolic link followed anywhere in
/// it, nor any magic link.
const NO_LINKS: ResolveFlags = ResolveFlags::NO_SYMLINKS.union(ResolveFlags::NO_MAGICLINKS);

/// What failed with `errno` for `path`, as one item's error: `what`, the
/// path, and why (a link met says that no file operation follows links).
pub fn item_error(errno: Errno, what: &str, path: &str) -> ItemError {
    let why = match errno {
        Errno::LOOP => {
            String::from("it is or passes through a symbolic link, which no file operation follows")
        }
        errno => format!("{}", crate::os::Error::from(errno)),
    };
    ItemError {
        errno: errno.raw_os_error(),
        message: format!("{what} {path:?}: {why}"),
    }
}

/// Opens one file as `item` asks. A file it creates belongs to `owner`,
/// the programs' user, with exactly `item.mode` (no umask), so that
/// programs may use it; a file that was there keeps its owner and mode.
/// Missing parents it makes (`make_parents`) belong to `owner` too.
pub fn open(item: &OpenItem, owner: (u32, u32)) -> Result<OwnedFd, ItemError> {
    let (uid, gid) = (Uid::from_raw(owner.0), Gid::from_raw(owner.1));
    if item.make_parents {
        make_parents_of(&item.path, uid, gid)?;
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
        (flags.truncate, OFlags::TRUNC),
        (flags.append, OFlags::APPEND),
    ] {
        if wanted {
            oflags |= flag;
        }
    }
    let (fd, created) = open_or_create(item, oflags)?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| item_error(e, "cannot inspect", &item.path))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(ItemError {
            errno: Errno::INVAL.raw_os_error(),
            message: format!("{:?} is not a regular file", item.path),
        });
    }
    if created {
        // The creation mode went through init's umask, and the change of
        // owner clears set-id bits: set the mode after the owner, exactly.
        rustix::fs::fchown(&fd, Some(uid), Some(gid))
            .and_then(|()| rustix::fs::fchmod(&fd, Mode::from_raw_mode(item.mode)))
            .map_err(|e| item_error(e, "cannot hand over", &item.path))?;
    }
    let mut status = oflags & OFlags::APPEND;
    status.remove(OFlags::NONBLOCK);
    rustix::fs::fcntl_setfl(&fd, status)
        .map_err(|e| item_error(e, "cannot set flags of", &item.path))?;
    Ok(fd)
}

/// Opens `item`'s path with `oflags` (which hold neither `O_CREAT` nor
/// `O_EXCL`) as its flags ask, and says whether this open made the file.
///
/// Only a file made now is handed over to the programs' user: an existing
/// one (made by a program run as another user, say) keeps its owner. So a
/// creating open that may meet an existing file first tries `O_EXCL` and,
/// when the file is there, opens it without `O_CREAT`, with mode 0 as
/// openat2 demands.
fn open_or_create(item: &OpenItem, oflags: OFlags) -> Result<(OwnedFd, bool), ItemError> {
    let path = item.path.as_str();
    let open = |oflags: OFlags, mode: u32| {
        rustix::fs::openat2(CWD, path, oflags, Mode::from_raw_mode(mode), NO_LINKS)
    };
    let cannot_open = |e: Errno| item_error(e, "cannot open", path);
    if !item.flags.create {
        return open(oflags, 0).map(|fd| (fd, false)).map_err(cannot_open);
    }
    let creating = oflags | OFlags::CREATE | OFlags::EXCL;
    if item.flags.exclusive {
        return open(creating, item.mode)
            .map(|fd| (fd, true))
            .map_err(cannot_open);
    }
    // A file removed between the two opens is made on the second round; one
    // that comes and goes again is given up on.
    for _ in 0..2 {
        match open(creating, item.mode) {
            Ok(fd) => return Ok((fd, true)),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(cannot_open(e)),
        }
        match open(oflags, 0) {
            Ok(fd) => return Ok((fd, false)),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(cannot_open(e)),
        }
    }
    Err(ItemError {
        errno: Errno::AGAIN.raw_os_error(),
        message: format!("{path:?} kept disappearing and coming back while it was opened"),
    })
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
    if let Err(error) = make_parents_of(path, uid, gid) {
        return failed(CopyInStep::Create, error);
    }
    let (parent, name) = match parent_and_name(path) {
        Ok(found) => found,
        Err(e) => return create(e, "cannot create"),
    };
    // What is there already is replaced, never written through: it may be
    // another name, a hard link a program made, of a file of another
    // user's, which truncating it and handing it over would take from
    // them. A symbolic link there goes the same way; a directory stays.
    match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return create(e, "cannot replace"),
    }
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::CLOEXEC
        | OFlags::NOCTTY
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK;
    let mode = Mode::from_raw_mode(item.mode);
    let file = match rustix::fs::openat(&parent, name, flags, mode) {
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
    // The creation mode went through init's umask: set owner and mode
    // exactly.
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
    let open = |flags: OFlags| {
        rustix::fs::openat2(
            CWD,
            path,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            NO_LINKS,
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

/// [`make_parents`] of the directory `path` is in, if any; its error names
/// `path`.
fn make_parents_of(path: &str, uid: Uid, gid: Gid) -> Result<(), ItemError> {
    match crate::os::parent(path) {
        Some(parent) => make_parents(parent, uid, gid)
            .map_err(|e| item_error(e, "cannot create the parent of", path)),
        None => Ok(()),
    }
}

/// Creates `dir` and its missing ancestors (mode 0755) owned by the
/// programs' user.
fn make_parents(dir: &str, uid: Uid, gid: Gid) -> Result<(), Errno> {
    let mut missing = Vec::new();
    let mut ancestor = Some(dir);
    while let Some(at) = ancestor.filter(|at| !at.is_empty()) {
        match open_dir(at) {
            Ok(_) => break,
            Err(Errno::NOENT) => missing.push(at),
            Err(e) => return Err(e),
        }
        ancestor = crate::os::parent(at);
    }
    for created in missing.into_iter().rev() {
        let (parent, name) = parent_and_name(created)?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => rustix::fs::chownat(
                &parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )?,
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The directory `dir`, reached without following a link, as a path
/// descriptor.
pub(crate) fn open_dir(dir: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        NO_LINKS,
    )
}

/// The directory `path` is in ([`open_dir`]) and its last component, for
/// an operation on the entry itself. A path ending in `/` names a
/// directory: [`delete`] alone takes one (`ENOTDIR` otherwise).
fn parent_and_name(path: &str) -> Result<(OwnedFd, &str), Errno> {
    if path.len() > 1 && path.ends_with('/') {
        return Err(Errno::NOTDIR);
    }
    let trimmed = path.trim_end_matches('/');
    let name = match trimmed.rfind('/') {
        Some(at) => &trimmed[at + 1..],
        None => trimmed,
    };
    let parent = match crate::os::parent(path) {
        Some("") | None => ".",
        Some(parent) => parent,
    };
    if name.is_empty() {
        return Err(Errno::INVAL);
    }
    Ok((open_dir(parent)?, name))
}

/// Removes a file, or an empty directory; a symbolic link is removed
/// itself.
pub fn delete(path: &str) -> Result<(), Errno> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.len() < path.len() && !trimmed.is_empty() {
        // Named as a directory: an empty directory only.
        let (parent, name) = parent_and_name(trimmed)?;
        return rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR);
    }
    let (parent, name) = parent_and_name(path)?;
    match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR),
        other => other,
    }
}

/// Creates one symbolic link, and its missing parent directories, owned by
/// `owner`, the programs' user, so that programs may remove it (from a
/// sticky directory such as `/tmp`, too).
pub fn symlink(item: &SymlinkItem, owner: (u32, u32)) -> Result<(), ItemError> {
    let link = item.link.as_str();
    let (uid, gid) = (Uid::from_raw(owner.0), Gid::from_raw(owner.1));
    make_parents_of(link, uid, gid)?;
    let cannot_create = |e| item_error(e, "cannot create symbolic link", link);
    let (parent, name) = parent_and_name(link).map_err(cannot_create)?;
    rustix::fs::symlinkat(item.target.as_str(), &parent, name).map_err(cannot_create)?;
    // The link itself, never what it points to.
    rustix::fs::chownat(
        &parent,
        name,
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| {
        // A link the programs cannot remove is worse than none.
        let _ = rustix::fs::unlinkat(&parent, name, AtFlags::empty());
        item_error(e, "cannot hand over symbolic link", link)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_to_fit_their_batch_at_a_character_boundary() {
        let mut short = String::from("cannot open \"/w/x\"");
        fit_to_batch(&mut short, 64);
        assert_eq!(short, "cannot open \"/w/x\"");
        let mut long = "é".repeat(1000);
        fit_to_batch(&mut long, 64);
        assert!(long.len() <= 1024 && long.ends_with('…'), "{}", long.len());
        assert!(long.trim_end_matches('…').chars().all(|c| c == 'é'));
        // 1024 items (the most a batch may hold) leave 128 bytes each.
        let mut many = "x".repeat(1000);
        fit_to_batch(&mut many, 1024);
        assert_eq!(many.len(), 128);
    }
}
