//! Inputs a program can read but never change: sealed in-memory files.
//!
//! A descriptor the host passes to a program is not only a descriptor: the
//! program can open the file again through `/proc/self/fd/N`, and that open
//! checks nothing but the file's own permissions against the program's
//! user. A read-only descriptor of a file the program's user may write (a
//! memfd, whose mode is 0777, or, in a rootless container, any file of the
//! caller's) therefore hands the program a writable file. [`SealedInput`]
//! holds a copy of the input in a memfd that no one can write any more:
//! mode 0444 and the write, grow, shrink and seal seals.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};

/// Why a sealed input could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// `memfd_create` failed.
    #[error("cannot create an in-memory file for the input")]
    Create(#[source] std::io::Error),
    /// The input file could not be opened.
    #[error("cannot open the input {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the input or writing its copy failed.
    #[error("cannot copy the input into memory")]
    Copy(#[source] std::io::Error),
    /// Reading the input file at a path, or writing its copy, failed.
    #[error("cannot copy the input {} into memory", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Making the copy read-only or sealing it failed.
    #[error("cannot seal the input's copy")]
    Seal(#[source] std::io::Error),
    /// A reader of the copy could not be opened.
    #[error("cannot open a reader of the sealed input")]
    Reopen(#[source] std::io::Error),
}

/// A program's input held in a sealed memfd: readable, and unchangeable by
/// anyone, the program included, whatever it opens.
///
/// Pass [`as_fd`](AsFd::as_fd) as a program's stdin (or any input
/// descriptor). Its file offset is shared by everyone holding the
/// descriptor: to give the same input to several runs, pass each one a
/// [`reader`](SealedInput::reader) of its own.
#[derive(Debug)]
pub struct SealedInput {
    file: File,
    len: u64,
}

impl SealedInput {
    /// A sealed copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InputError> {
        let mut file = new_memfd()?;
        file.write_all(bytes).map_err(InputError::Copy)?;
        seal(file, bytes.len() as u64)
    }

    /// A sealed copy of everything `reader` yields, from where it stands to
    /// its end.
    pub fn from_reader(reader: &mut impl Read) -> Result<Self, InputError> {
        let mut file = new_memfd()?;
        let len = std::io::copy(reader, &mut file).map_err(InputError::Copy)?;
        seal(file, len)
    }

    /// A sealed copy of the regular file at `path` (a FIFO, device or
    /// directory is refused without being read).
    pub fn from_path(path: &Path) -> Result<Self, InputError> {
        let mut source = open_regular(path).map_err(|source| InputError::Open {
            path: path.into(),
            source,
        })?;
        Self::from_reader(&mut source).map_err(|error| match error {
            InputError::Copy(source) => InputError::Read {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// The input's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new read-only descriptor of the input, with an offset of its own
    /// that starts at 0.
    pub fn reader(&self) -> Result<OwnedFd, InputError> {
        let path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.file)
        );
        rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| InputError::Reopen(errno.into()))
    }
}

impl AsFd for SealedInput {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl From<SealedInput> for OwnedFd {
    fn from(input: SealedInput) -> Self {
        input.file.into()
    }
}

fn new_memfd() -> Result<File, InputError> {
    rustix::fs::memfd_create(
        "hutch-input",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map(File::from)
    .map_err(|errno| InputError::Create(errno.into()))
}

fn seal(mut file: File, len: u64) -> Result<SealedInput, InputError> {
    // Mode 0444 keeps a reopen for writing from passing the permission
    // check; the seals keep the content fixed even for whoever passes it.
    rustix::fs::fchmod(&file, Mode::from_raw_mode(0o444))
        .map_err(|errno| InputError::Seal(errno.into()))?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(|errno| InputError::Seal(errno.into()))?;
    file.rewind().map_err(InputError::Copy)?;
    Ok(SealedInput { file, len })
}

/// Opens the host file `path` for reading, refusing anything but a
/// regular file: opening a FIFO would wait for a writer (before any limit
/// of a run counts), and a device may never end.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(fd: BorrowedFd<'_>) -> Vec<u8> {
        let mut file = File::from(fd.try_clone_to_owned().unwrap());
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    /// A FIFO would wait for a writer and a device may never end: neither
    /// is read, and the error names the path.
    #[test]
    fn only_a_regular_file_is_copied_from_a_path() {
        let dir = std::env::temp_dir().join(format!("hutch-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|status| status.success()), "mkfifo {fifo:?}");
        let file = dir.join("file");
        std::fs::write(&file, b"fine\n").unwrap();
        for path in [fifo.as_path(), Path::new("/dev/zero"), dir.as_path()] {
            let error = SealedInput::from_path(path).expect_err("not a regular file");
            assert_eq!(
                crate::error_chain(&error),
                format!(
                    "cannot open the input {}: not a regular file",
                    path.display()
                )
            );
        }
        let input = SealedInput::from_path(&file).unwrap();
        assert_eq!(read_all(input.as_fd()), b"fine\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sealed_input_reads_back_what_it_was_given() {
        let input = SealedInput::from_bytes(b"1 2 3\n").unwrap();
        assert_eq!(input.len(), 6);
        assert_eq!(read_all(input.as_fd()), b"1 2 3\n");
    }

    #[test]
    fn each_reader_starts_at_the_beginning() {
        let input = SealedInput::from_reader(&mut &b"abc"[..]).unwrap();
        assert_eq!(read_all(input.as_fd()), b"abc");
        let reader = input.reader().unwrap();
        assert_eq!(read_all(reader.as_fd()), b"abc");
        assert_eq!(read_all(input.reader().unwrap().as_fd()), b"abc");
    }

    #[test]
    fn a_sealed_input_cannot_be_written_even_by_reopening_it() {
        let input = SealedInput::from_bytes(b"original").unwrap();
        let path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&input.file)
        );
        // Root passes the permission check, so the open may succeed here;
        // the seals must still refuse every change.
        if let Ok(fd) = rustix::fs::open(&path, OFlags::RDWR, Mode::empty()) {
            assert_eq!(
                rustix::io::pwrite(&fd, b"TAMPERED", 0),
                Err(rustix::io::Errno::PERM)
            );
            assert_eq!(rustix::fs::ftruncate(&fd, 0), Err(rustix::io::Errno::PERM));
        }
        let seals = rustix::fs::fcntl_get_seals(&input).unwrap();
        assert!(seals.contains(SealFlags::WRITE | SealFlags::SEAL));
        let stat = rustix::fs::fstat(&input).unwrap();
        assert_eq!(stat.st_mode & 0o777, 0o444);
        assert_eq!(read_all(input.reader().unwrap().as_fd()), b"original");
    }

    #[test]
    fn a_missing_input_file_names_the_path() {
        let error = SealedInput::from_path(Path::new("/nonexistent/input.txt")).unwrap_err();
        assert!(matches!(error, InputError::Open { .. }));
        assert_eq!(
            error.to_string(),
            "cannot open the input /nonexistent/input.txt"
        );
    }
}
