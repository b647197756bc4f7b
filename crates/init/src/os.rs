//! What init needs of an operating-system library, on `core`, `alloc` and
//! rustix alone (init links no C library): OS errors with their usual
//! text, a monotonic clock, and the few path and directory operations its
//! requests use.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// An OS error, or bad data read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An `errno`.
    Os(Errno),
    /// A file held what it should not.
    Data(String),
}

/// A result with an [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The error of `errno`.
    pub fn from_raw_os_error(errno: i32) -> Self {
        Self::Os(Errno::from_raw_os_error(errno))
    }

    /// Its `errno`, if it is an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Os(errno) => Some(errno.raw_os_error()),
            Self::Data(_) => None,
        }
    }
}

impl From<Errno> for Error {
    fn from(errno: Errno) -> Self {
        Self::Os(errno)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os(errno) => {
                let code = errno.raw_os_error();
                match describe(code) {
                    Some(text) => write!(f, "{text} (os error {code})"),
                    None => write!(f, "Unknown error {code} (os error {code})"),
                }
            }
            Self::Data(text) => f.write_str(text),
        }
    }
}

impl core::error::Error for Error {}

/// The C library's text for an `errno` of Linux on x86_64 and arm64.
fn describe(errno: i32) -> Option<&'static str> {
    Some(match errno {
        1 => "Operation not permitted",
        2 => "No such file or directory",
        3 => "No such process",
        4 => "Interrupted system call",
        5 => "Input/output error",
        6 => "No such device or address",
        7 => "Argument list too long",
        8 => "Exec format error",
        9 => "Bad file descriptor",
        10 => "No child processes",
        11 => "Resource temporarily unavailable",
        12 => "Cannot allocate memory",
        13 => "Permission denied",
        14 => "Bad address",
        15 => "Block device required",
        16 => "Device or resource busy",
        17 => "File exists",
        18 => "Invalid cross-device link",
        19 => "No such device",
        20 => "Not a directory",
        21 => "Is a directory",
        22 => "Invalid argument",
        23 => "Too many open files in system",
        24 => "Too many open files",
        25 => "Inappropriate ioctl for device",
        26 => "Text file busy",
        27 => "File too large",
        28 => "No space left on device",
        29 => "Illegal seek",
        30 => "Read-only file system",
        31 => "Too many links",
        32 => "Broken pipe",
        33 => "Numerical argument out of domain",
        34 => "Numerical result out of range",
        35 => "Resource deadlock avoided",
        36 => "File name too long",
        37 => "No locks available",
        38 => "Function not implemented",
        39 => "Directory not empty",
        40 => "Too many levels of symbolic links",
        61 => "No data available",
        62 => "Timer expired",
        71 => "Protocol error",
        75 => "Value too large for defined data type",
        84 => "Invalid or incomplete multibyte or wide character",
        88 => "Socket operation on non-socket",
        90 => "Message too long",
        95 => "Operation not supported",
        104 => "Connection reset by peer",
        110 => "Connection timed out",
        122 => "Disk quota exceeded",
        125 => "Operation canceled",
        _ => return None,
    })
}

/// A point on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(Duration);

impl Instant {
    /// Now.
    pub fn now() -> Self {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        Self(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }

    /// Time since `self`.
    pub fn elapsed(self) -> Duration {
        Self::now().saturating_duration_since(self)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, later: Duration) -> Instant {
        Instant(self.0.saturating_add(later))
    }
}

/// The directory part of `path`, as `std::path::Path::parent` gives it:
/// `None` for `/` and the empty path, `""` for a bare name.
pub fn parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    Some(match trimmed.rfind('/') {
        Some(at) => match trimmed[..at].trim_end_matches('/') {
            "" => "/",
            head => head,
        },
        None => "",
    })
}

/// Creates `path` and its missing ancestors (mode 0777 less the umask).
pub fn create_dir_all(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    match rustix::fs::mkdir(path, Mode::from_raw_mode(0o777)) {
        Ok(()) => return Ok(()),
        Err(Errno::EXIST) if is_dir(path) => return Ok(()),
        Err(Errno::NOENT) => {}
        Err(errno) => return Err(errno.into()),
    }
    if let Some(up) = parent(path) {
        create_dir_all(up)?;
    }
    match rustix::fs::mkdir(path, Mode::from_raw_mode(0o777)) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) if is_dir(path) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

fn is_dir(path: &str) -> bool {
    rustix::fs::stat(path).is_ok_and(|st| FileType::from_raw_mode(st.st_mode).is_dir())
}

/// The type of `path` itself (a symbolic link is not followed).
pub fn file_type(path: &str) -> Result<FileType> {
    Ok(FileType::from_raw_mode(rustix::fs::lstat(path)?.st_mode))
}

/// Whether `path` is a regular file someone may execute.
pub fn is_executable<P: rustix::path::Arg>(path: P) -> bool {
    rustix::fs::stat(path).is_ok_and(|st| {
        FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_mode & 0o111 != 0
    })
}

/// Opens a directory for listing, without following a final symbolic link.
pub fn open_dir<P: rustix::path::Arg>(at: impl AsFd, path: P) -> Result<OwnedFd> {
    Ok(rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Calls `f` with the status of every regular file under the directory
/// open as `root`, however deep, never through a symbolic link; what cannot be
/// opened or inspected is skipped. Reads directories into a buffer on the
/// stack and keeps the descriptors still to visit in `pending` (emptied
/// when done): with its capacity grown, a walk allocates nothing.
pub fn each_file_under(
    root: BorrowedFd<'_>,
    pending: &mut Vec<OwnedFd>,
    mut f: impl FnMut(&rustix::fs::Stat),
) {
    pending.clear();
    // A descriptor of its own: the walk reads it from its start.
    let Ok(fd) = open_dir(root, c".") else {
        return;
    };
    pending.push(fd);
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
    while let Some(dir) = pending.pop() {
        let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
        while let Some(Ok(entry)) = entries.next() {
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => FileType::from_raw_mode(st.st_mode),
                        Err(_) => continue,
                    }
                }
                kind => kind,
            };
            match kind {
                FileType::Directory => {
                    if let Ok(sub) = open_dir(&dir, name) {
                        pending.push(sub);
                    }
                }
                FileType::RegularFile => {
                    if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                        f(&st);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Removes the extended attributes of the directory open as `dir` that a
/// program can set on a directory it owns: `user.*`, and its ACLs
/// (`system.posix_acl_access`, `system.posix_acl_default`, which would
/// decide the mode of every file made in it). Those only a privileged
/// process sets (`security.*`, a security module's label; `trusted.*`)
/// stay. Lists them through a buffer on the stack, or for a longer list
/// (at most 64 KiB) one on the heap.
pub fn remove_program_xattrs(dir: BorrowedFd<'_>) -> Result<()> {
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let names: &[u8] = match rustix::fs::flistxattr(dir, &mut stack[..]) {
        Ok(len) => &stack[..len],
        Err(Errno::RANGE) => {
            // Nothing runs during a reset: the list does not grow between
            // asking its size and reading it.
            heap.resize(rustix::fs::flistxattr_query(dir)?, 0);
            let len = rustix::fs::flistxattr(dir, &mut heap[..])?;
            &heap[..len]
        }
        Err(errno) => return Err(errno.into()),
    };
    for name in names.split(|&byte| byte == 0) {
        if !(name.starts_with(b"user.") || name.starts_with(b"system.posix_acl_")) {
            continue;
        }
        match rustix::fs::fremovexattr(dir, name) {
            Ok(()) | Err(Errno::NODATA) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// Whether the file system whose root is open as `root` holds nothing but
/// that directory, told by its count of inodes in use (one `fstatfs`
/// instead of a walk). `false` when it cannot tell: a file system without
/// an inode limit reports none.
pub fn holds_nothing(root: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(root).is_ok_and(|fs| {
        let (files, free) = (fs.f_files, fs.f_ffree);
        files > 0 && files.saturating_sub(free) <= 1
    })
}

/// Removes everything inside the directory open as `root`, however deep,
/// keeping the directory. Works down one directory descriptor per level (kept in
/// `levels`, emptied when done), never through a symbolic link, reading
/// directories through a buffer on the stack: with `levels` grown, it
/// allocates nothing.
pub fn remove_contents(root: BorrowedFd<'_>, levels: &mut Vec<OwnedFd>) -> Result<()> {
    levels.clear();
    levels.push(open_dir(root, c".")?);
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
    while let Some(dir) = levels.last() {
        // Each pass reads the directory from its start; one that finds
        // nothing to remove leaves it empty.
        rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
        let mut removed = false;
        let mut deeper = None;
        let mut entries = rustix::fs::RawDir::new(dir, &mut buf);
        while let Some(entry) = entries.next() {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => FileType::from_raw_mode(
                    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                ),
                kind => kind,
            };
            removed = true;
            if kind != FileType::Directory {
                rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
                continue;
            }
            match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) => {}
                Err(Errno::NOTEMPTY) => {
                    deeper = Some(open_dir(dir, name)?);
                    break;
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        match deeper {
            // Empty it, then come back here to remove it.
            Some(fd) => levels.push(fd),
            None if !removed => {
                levels.pop();
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_those_of_std_paths() {
        for path in ["/a/b", "/a/b/", "/a", "/", "a", "a/b", "", "/a//b", "//a"] {
            let want = std::path::Path::new(path)
                .parent()
                .map(|p| p.to_str().unwrap().to_owned());
            assert_eq!(parent(path).map(str::to_owned), want, "{path:?}");
        }
    }

    #[test]
    fn os_errors_read_as_std_ones() {
        for errno in [1, 2, 13, 22, 38, 39, 95, 122, 200] {
            assert_eq!(
                Error::from_raw_os_error(errno).to_string(),
                std::io::Error::from_raw_os_error(errno).to_string(),
                "errno {errno}"
            );
        }
    }

    #[test]
    fn contents_go_however_deep_and_the_directory_stays() {
        let root = std::env::temp_dir().join(format!("hutch-init-os-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut deep = root.clone();
        for level in 0..50 {
            deep = deep.join(format!("d{level}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), "x").unwrap();
        std::fs::write(root.join("top"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let text = root.to_str().unwrap();
        let dir = open_dir(rustix::fs::CWD, text).unwrap();
        let mut levels = Vec::new();
        remove_contents(dir.as_fd(), &mut levels).unwrap();
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert!(std::path::Path::new("/etc/passwd").exists());
        // Again, as deep: the grown `levels` is all it needs.
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), "x").unwrap();
        let (removed, allocations) =
            crate::sys::counting::allocations(|| remove_contents(dir.as_fd(), &mut levels));
        removed.unwrap();
        assert_eq!(allocations, 0);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert!(std::path::Path::new("/etc/passwd").exists());
        create_dir_all(&format!("{text}/x/y/z")).unwrap();
        assert!(root.join("x/y/z").is_dir());
        std::fs::write(root.join("x/y/z/deep"), "12345").unwrap();
        std::fs::write(root.join("top"), "1").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("x/link")).unwrap();
        let mut pending = Vec::new();
        let mut sizes = Vec::new();
        each_file_under(dir.as_fd(), &mut pending, |st| sizes.push(st.st_size));
        sizes.sort();
        assert_eq!(sizes, [1, 5], "two regular files, the link not followed");
        // A second walk with the grown buffers allocates nothing.
        let (_, allocations) = crate::sys::counting::allocations(|| {
            let mut count = 0;
            each_file_under(dir.as_fd(), &mut pending, |_| count += 1);
            assert_eq!(count, 2);
        });
        assert_eq!(allocations, 0);
        std::fs::remove_dir_all(root).unwrap();
    }
}
