//! `hutch run --copy-out`: files the program left, copied to the host after
//! the run.
//!
//! The container's init opens each file itself, within the container's view
//! and without following a symbolic link anywhere in its path, and hands
//! hutch the descriptor of a regular file only
//! ([`Container::open_for_copy_out`]). A link the program planted towards a
//! host file is refused, never followed.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hutch_host::{Container, ContainerError};

use crate::args::CopyOut;
use crate::error::InContainer;

/// Why one `--copy-out` file was not copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyOutError {
    /// The container could not be asked for the file (it died, or a stop
    /// signal killed it).
    #[error("cannot ask the container for {path}")]
    Request {
        path: String,
        #[source]
        source: std::sync::Arc<ContainerError>,
    },
    /// The file is missing, a symbolic link, a FIFO, a directory, …
    #[error("cannot copy out {path}")]
    Open {
        path: String,
        #[source]
        source: InContainer,
    },
    /// The file is larger than `--copy-out-limit`.
    #[error("cannot copy out {path}: it is {size} bytes, more than --copy-out-limit ({limit})")]
    TooLarge { path: String, size: u64, limit: u64 },
    /// The file could not be read.
    #[error("cannot read {path} in the container")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The host file could not be written.
    #[error("cannot write {path} to {}", .destination.display())]
    Write {
        path: String,
        destination: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CopyOutError {
    /// Whether hutch failed (exit status 2), rather than the program not
    /// leaving what was asked for (1).
    pub fn is_hutchs(&self) -> bool {
        matches!(
            self,
            CopyOutError::Request { .. } | CopyOutError::Read { .. } | CopyOutError::Write { .. }
        )
    }
}

/// One `--copy-out` done, or not.
#[derive(Debug)]
pub struct CopiedOut {
    /// The path in the container, relative to the work directory.
    pub path: String,
    /// The host path.
    pub destination: PathBuf,
    /// The bytes copied, or why none were.
    pub outcome: Result<u64, CopyOutError>,
}

/// Copies every `files` out of `container`, each at most `limit` bytes.
/// One failure does not stop the others.
pub fn copy_out(container: &mut Container, files: &[CopyOut], limit: u64) -> Vec<CopiedOut> {
    if files.is_empty() {
        return Vec::new();
    }
    let paths: Vec<&str> = files.iter().map(|file| file.source.as_str()).collect();
    let opened: Vec<Result<File, CopyOutError>> = match container.open_for_copy_out(&paths) {
        Ok(opened) => opened
            .into_iter()
            .zip(files)
            .map(|(opened, file)| {
                opened.map(File::from).map_err(|error| CopyOutError::Open {
                    path: file.source.clone(),
                    source: InContainer(error.message),
                })
            })
            .collect(),
        Err(error) => {
            let error = std::sync::Arc::new(error);
            files
                .iter()
                .map(|file| {
                    Err(CopyOutError::Request {
                        path: file.source.clone(),
                        source: std::sync::Arc::clone(&error),
                    })
                })
                .collect()
        }
    };
    files
        .iter()
        .zip(opened)
        .map(|(file, opened)| CopiedOut {
            path: file.source.clone(),
            destination: file.destination.clone(),
            outcome: opened.and_then(|source| write_out(source, file, limit)),
        })
        .collect()
}

/// Writes `source`, a regular file of the container, to the host file
/// `file.destination` (created, or truncated), with its permission bits;
/// a destination left half written is removed.
fn write_out(source: File, file: &CopyOut, limit: u64) -> Result<u64, CopyOutError> {
    let read_error = |source| CopyOutError::Read {
        path: file.source.clone(),
        source,
    };
    let metadata = source.metadata().map_err(read_error)?;
    if metadata.size() > limit {
        return Err(CopyOutError::TooLarge {
            path: file.source.clone(),
            size: metadata.size(),
            limit,
        });
    }
    let write_error = |source| CopyOutError::Write {
        path: file.source.clone(),
        destination: file.destination.clone(),
        source,
    };
    let mut destination = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(metadata.mode() & 0o777)
        .open(&file.destination)
        .map_err(write_error)?;
    // Every process of the run is gone: the file no longer grows. The
    // limit holds all the same.
    let copied = std::io::copy(&mut source.take(limit), &mut destination);
    copied.map_err(|error| {
        let _ = std::fs::remove_file(&file.destination);
        write_error(error)
    })
}

/// Checks before the run that each destination's directory exists, so
/// that a mistake costs no container.
pub fn check_destinations(files: &[CopyOut]) -> Result<(), (PathBuf, std::io::Error)> {
    for file in files {
        let parent = match file.destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        match std::fs::metadata(parent) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err((
                    file.destination.clone(),
                    std::io::Error::from(std::io::ErrorKind::NotADirectory),
                ));
            }
            Err(error) => return Err((file.destination.clone(), error)),
        }
    }
    Ok(())
}
