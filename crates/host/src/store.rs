//! [`FileStore`]: files kept between runs under short random ids, so that a
//! compiler's output can be copied out once and copied into many later
//! runs.
//!
//! A store is a directory of the host's. Each file is named by its id,
//! sixteen characters of `A`–`Z` and `2`–`7` drawn from the kernel's random
//! pool, and written under a temporary name first, so that an id names a
//! whole file or nothing. The names callers gave their files live in
//! memory; a file found in the directory when the store is opened is named
//! by its id.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// Length of a file id.
pub const FILE_ID_LEN: usize = 16;

/// The characters of an id: RFC 4648's base32 alphabet.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Prefix of the directories of temporary stores, followed by an id.
const TEMPORARY_PREFIX: &str = "hutch-files-";

/// Prefix of the temporary names files are written under.
const PART_PREFIX: &str = ".part-";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's directory cannot be created or opened.
    #[error("cannot use {} as a file store", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No file has this id (or the id is not one the store makes).
    #[error("no stored file has the id {id:?}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// A file of the store cannot be created, written, opened or removed.
    #[error("cannot {what} the stored file {name:?}")]
    File {
        /// What failed: `create`, `write`, `open`, `remove`, `list`.
        what: &'static str,
        /// Its id or name.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's random pool cannot give an id.
    #[error("cannot draw a random file id")]
    Random(#[source] std::io::Error),
}

/// A directory of files kept by id; cheap to clone (clones share it).
///
/// ```no_run
/// let store = hutch_host::FileStore::temporary()?;
/// let id = store.add("a.txt", &mut &b"hello"[..])?;
/// let (name, mut file) = store.get(&id)?;
/// assert_eq!(name, "a.txt");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    dir_fd: OwnedFd,
    names: Mutex<HashMap<String, String>>,
    /// Made by [`FileStore::temporary`]: removed with the last clone.
    temporary: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl FileStore {
    /// A store in `dir`, made (mode `0o700`) if it does not exist. Files
    /// already there whose names are ids are part of the store.
    pub fn in_directory(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        let error = |source: std::io::Error| StoreError::Directory {
            path: dir.clone(),
            source,
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => set_private(&dir).map_err(error)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(error(e)),
        }
        Self::at(dir, false)
    }

    /// A store in a new private directory (mode `0o700`),
    /// `hutch-files-<id>` under the system's temporary directory, removed
    /// with everything in it when the last clone of the store is dropped.
    ///
    /// The store holds an exclusive `flock` on its directory for as long as
    /// it lives, so that a process killed before it could remove its store
    /// leaves one that [`FileStore::remove_abandoned`] can tell from a live
    /// one (the lock goes with the process). The directory is made and
    /// locked under another name, then renamed, so that no one sees it
    /// unlocked.
    pub fn temporary() -> Result<Self, StoreError> {
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let id = random_id()?;
            let dir = base.join(format!("{TEMPORARY_PREFIX}{id}"));
            let making = base.join(format!("{TEMPORARY_PREFIX}{id}.making"));
            match std::fs::create_dir(&making) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(StoreError::Directory {
                        path: making,
                        source,
                    });
                }
            }
            let locked = lock_private(&making).map_err(|source| StoreError::Directory {
                path: making.clone(),
                source,
            });
            let renamed = locked.and_then(|fd| {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &making,
                    rustix::fs::CWD,
                    &dir,
                    RenameFlags::NOREPLACE,
                )
                .map_err(|e| StoreError::Directory {
                    path: dir.clone(),
                    source: e.into(),
                })?;
                Ok(fd)
            });
            return match renamed {
                Ok(dir_fd) => Ok(Self::with_fd(dir, dir_fd, true)),
                // Taken for an abandoned one by another process's
                // `remove_abandoned` before it was locked: another id.
                Err(StoreError::Directory { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                Err(error) => {
                    let _ = std::fs::remove_dir(&making);
                    Err(error)
                }
            };
        }
        Err(StoreError::Directory {
            path: base,
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        })
    }

    /// Removes the temporary stores ([`FileStore::temporary`]) under the
    /// system's temporary directory that no live store holds: those of
    /// processes killed before they could remove their own, including one
    /// killed while it made its store (`hutch-files-<id>.making`). Returns
    /// the directories removed. A store that is in use is never touched, in
    /// whichever process or PID namespace it lives.
    pub fn remove_abandoned() -> std::io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_prefix(TEMPORARY_PREFIX)) else {
                continue;
            };
            let id = id.strip_suffix(".making").unwrap_or(id);
            if !is_file_id(id) {
                continue;
            }
            let path = entry.path();
            // Not a symbolic link to somewhere else: O_NOFOLLOW.
            let Ok(fd) = rustix::fs::open(
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            // Held: a live store's. Free: its owner is gone, and this
            // descriptor keeps anyone from taking it meanwhile.
            if rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
                && std::fs::remove_dir_all(&path).is_ok()
            {
                removed.push(path);
            }
        }
        Ok(removed)
    }

    fn at(dir: PathBuf, temporary: bool) -> Result<Self, StoreError> {
        let dir_fd = open_dir(&dir).map_err(|source| StoreError::Directory {
            path: dir.clone(),
            source,
        })?;
        Ok(Self::with_fd(dir, dir_fd, temporary))
    }

    fn with_fd(dir: PathBuf, dir_fd: OwnedFd, temporary: bool) -> Self {
        // Pieces a killed earlier user of the directory left.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(PART_PREFIX) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Self {
            inner: Arc::new(Inner {
                dir,
                dir_fd,
                names: Mutex::new(HashMap::new()),
                temporary,
            }),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stores everything `content` yields under the name `name`; returns
    /// the new file's id.
    pub fn add(&self, name: &str, content: &mut impl Read) -> Result<String, StoreError> {
        let mut writer = self.writer(name)?;
        std::io::copy(content, writer.file()).map_err(|source| StoreError::File {
            what: "write",
            name: name.into(),
            source,
        })?;
        writer.commit()
    }

    /// A new file to write, which gets its id when
    /// [committed](StoreWriter::commit); dropped uncommitted, it is removed.
    pub fn writer(&self, name: &str) -> Result<StoreWriter, StoreError> {
        let part = format!("{PART_PREFIX}{}", random_id()?);
        let file = rustix::fs::openat(
            &self.inner.dir_fd,
            part.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| StoreError::File {
            what: "create",
            name: name.into(),
            source: e.into(),
        })?;
        Ok(StoreWriter {
            store: self.clone(),
            name: name.into(),
            part: Some(part),
            file: File::from(file),
        })
    }

    /// The name and a read-only descriptor of the file `id`.
    pub fn get(&self, id: &str) -> Result<(String, File), StoreError> {
        if !is_file_id(id) {
            return Err(StoreError::NotFound { id: id.into() });
        }
        let file = rustix::fs::openat(
            &self.inner.dir_fd,
            id,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT => StoreError::NotFound { id: id.into() },
            e => StoreError::File {
                what: "open",
                name: id.into(),
                source: e.into(),
            },
        })?;
        Ok((self.name_of(id), File::from(file)))
    }

    /// Whether a file has the id `id`.
    pub fn contains(&self, id: &str) -> bool {
        is_file_id(id)
            && rustix::fs::accessat(
                &self.inner.dir_fd,
                id,
                rustix::fs::Access::EXISTS,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .is_ok()
    }

    /// Removes the file `id`; says whether there was one.
    pub fn remove(&self, id: &str) -> Result<bool, StoreError> {
        if !is_file_id(id) {
            return Ok(false);
        }
        let mut names = self.names();
        match rustix::fs::unlinkat(&self.inner.dir_fd, id, rustix::fs::AtFlags::empty()) {
            Ok(()) => {
                names.remove(id);
                Ok(true)
            }
            Err(Errno::NOENT) => {
                names.remove(id);
                Ok(false)
            }
            Err(e) => Err(StoreError::File {
                what: "remove",
                name: id.into(),
                source: e.into(),
            }),
        }
    }

    /// Every stored file as `(id, name)`, ordered by id.
    pub fn list(&self) -> Result<Vec<(String, String)>, StoreError> {
        let entries = std::fs::read_dir(&self.inner.dir).map_err(|source| StoreError::File {
            what: "list",
            name: self.inner.dir.display().to_string(),
            source,
        })?;
        let names = self.names();
        let mut files: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|id| is_file_id(id))
            .map(|id| {
                let name = names.get(&id).cloned().unwrap_or_else(|| id.clone());
                (id, name)
            })
            .collect();
        files.sort();
        Ok(files)
    }

    fn name_of(&self, id: &str) -> String {
        self.names().get(id).cloned().unwrap_or_else(|| id.into())
    }

    fn names(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A file being written into a [`FileStore`]; see [`FileStore::writer`].
#[derive(Debug)]
pub struct StoreWriter {
    store: FileStore,
    name: String,
    /// The temporary name, until committed.
    part: Option<String>,
    file: File,
}

impl StoreWriter {
    /// The file to write.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Gives the file its id and makes it part of the store.
    pub fn commit(mut self) -> Result<String, StoreError> {
        self.file.flush().map_err(|source| StoreError::File {
            what: "write",
            name: self.name.clone(),
            source,
        })?;
        let part = self.part.take().expect("committed once");
        let dir = self.store.inner.dir_fd.as_fd();
        loop {
            let id = random_id()?;
            // Holding the names while the file appears, so that a listing
            // never shows it without its name.
            let mut names = self.store.names();
            match rustix::fs::renameat_with(
                dir,
                part.as_str(),
                dir,
                id.as_str(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    names.insert(id.clone(), std::mem::take(&mut self.name));
                    return Ok(id);
                }
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    drop(names);
                    let _ = rustix::fs::unlinkat(dir, part.as_str(), rustix::fs::AtFlags::empty());
                    return Err(StoreError::File {
                        what: "create",
                        name: std::mem::take(&mut self.name),
                        source: e.into(),
                    });
                }
            }
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if let Some(part) = &self.part {
            let _ = rustix::fs::unlinkat(
                &self.store.inner.dir_fd,
                part.as_str(),
                rustix::fs::AtFlags::empty(),
            );
        }
    }
}

/// Whether `id` is one a store makes: [`FILE_ID_LEN`] characters of the
/// base32 alphabet. Nothing else names a stored file, so no id can reach
/// outside the store's directory.
pub fn is_file_id(id: &str) -> bool {
    id.len() == FILE_ID_LEN && id.bytes().all(|b| ALPHABET.contains(&b))
}

fn random_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; FILE_ID_LEN];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(StoreError::Random(e.into())),
        }
    }
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect())
}

/// Makes `dir` private and opens it holding an exclusive `flock`.
fn lock_private(dir: &Path) -> std::io::Result<OwnedFd> {
    set_private(dir)?;
    let fd = open_dir(dir)?;
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(fd)
}

fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Into::into)
}

fn set_private(dir: &Path) -> std::io::Result<()> {
    rustix::fs::chmod(dir, Mode::from_raw_mode(0o700)).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockable(dir: &Path) -> bool {
        let fd = open_dir(dir).unwrap();
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
    }

    #[test]
    fn a_temporary_store_is_locked_while_it_lives_and_removed_with_its_last_clone() {
        let store = FileStore::temporary().unwrap();
        let dir = store.dir().to_path_buf();
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(
            is_file_id(name.strip_prefix(TEMPORARY_PREFIX).unwrap()),
            "{name}"
        );
        assert!(!lockable(&dir), "a live store holds its lock");
        let clone = store.clone();
        drop(store);
        assert!(dir.is_dir(), "a clone keeps it");
        drop(clone);
        assert!(!dir.exists(), "gone with the last clone");
    }

    #[test]
    fn abandoned_stores_go_and_live_ones_and_look_alikes_stay() {
        let base = std::env::temp_dir();
        let live = FileStore::temporary().unwrap();
        let id = live.add("kept.txt", &mut &b"kept"[..]).unwrap();
        // As a killed process leaves its store: nobody holds it.
        let abandoned = base.join(format!("{TEMPORARY_PREFIX}{}", random_id().unwrap()));
        std::fs::create_dir(&abandoned).unwrap();
        std::fs::write(abandoned.join("AAAAAAAAAAAAAAAA"), "left").unwrap();
        // As a process killed while it made its store leaves it.
        let half_made = base.join(format!("{TEMPORARY_PREFIX}{}.making", random_id().unwrap()));
        std::fs::create_dir(&half_made).unwrap();
        let other_suffix = base.join(format!("{TEMPORARY_PREFIX}{}.kept", random_id().unwrap()));
        std::fs::create_dir(&other_suffix).unwrap();
        // A name that is no store's, and a symbolic link by a store's name
        // to a directory of someone else's.
        let other = base.join(format!("hutch-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("theirs"), "theirs").unwrap();
        let not_an_id = base.join(format!(
            "{TEMPORARY_PREFIX}not-an-id-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&not_an_id).unwrap();
        let link = base.join(format!("{TEMPORARY_PREFIX}{}", random_id().unwrap()));
        std::os::unix::fs::symlink(&other, &link).unwrap();

        let removed = FileStore::remove_abandoned().unwrap();
        assert!(removed.contains(&abandoned), "{removed:?}");
        assert!(!abandoned.exists());
        assert!(removed.contains(&half_made), "{removed:?}");
        assert!(!half_made.exists());
        assert!(other_suffix.is_dir(), "not a store's name");
        assert!(!removed.contains(&live.dir().to_path_buf()), "{removed:?}");
        let (name, _) = live.get(&id).unwrap();
        assert_eq!(name, "kept.txt");
        assert!(not_an_id.is_dir());
        assert_eq!(
            std::fs::read_to_string(other.join("theirs")).unwrap(),
            "theirs"
        );
        assert!(link.symlink_metadata().is_ok(), "the link itself stays too");

        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
        std::fs::remove_dir_all(&not_an_id).unwrap();
        std::fs::remove_dir(&other_suffix).unwrap();
    }
}
