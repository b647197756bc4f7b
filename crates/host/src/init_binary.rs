//! The container init, embedded in this library and run from memory.
//!
//! The executable is written once per process into a sealed memfd; every
//! container execs it from there (`execveat` on a read-only reopening of the
//! memfd, since the kernel refuses to exec a descriptor open for writing).
//! `HUTCH_INIT` names another executable instead, for debugging init.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{MemfdFlags, OFlags, SealFlags};

/// The static init executable built by `build.rs`.
static INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hutch-init"));

/// The environment variable that names an init executable to use instead of
/// the embedded one.
pub const INIT_OVERRIDE_VAR: &str = "HUTCH_INIT";

/// Why the init executable is not available.
#[derive(Debug, thiserror::Error)]
pub enum InitBinaryError {
    /// The embedded init could not be placed in a memfd.
    #[error("cannot place the embedded init in memory: {step}")]
    Memfd {
        /// The step that failed.
        step: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The `HUTCH_INIT` executable could not be opened.
    #[error("cannot open the init named by {INIT_OVERRIDE_VAR}: {path}")]
    Override {
        /// The path given.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

static EMBEDDED: OnceLock<OwnedFd> = OnceLock::new();

/// A descriptor of the init executable, fit for `execveat`.
pub(crate) fn init_executable() -> Result<OwnedFd, InitBinaryError> {
    if let Some(path) = std::env::var_os(INIT_OVERRIDE_VAR) {
        return File::open(&path)
            .map(OwnedFd::from)
            .map_err(|source| InitBinaryError::Override {
                path: path.to_string_lossy().into_owned(),
                source,
            });
    }
    if let Some(fd) = EMBEDDED.get() {
        return dup(fd);
    }
    let fd = embed()?;
    // A racing thread may have won; either descriptor is equally good.
    let fd = EMBEDDED.get_or_init(|| fd);
    dup(fd)
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, InitBinaryError> {
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|source| InitBinaryError::Memfd {
            step: "dup",
            source,
        })
}

fn embed() -> Result<OwnedFd, InitBinaryError> {
    let err = |step| {
        move |source: rustix::io::Errno| InitBinaryError::Memfd {
            step,
            source: source.into(),
        }
    };
    // MFD_EXEC keeps the memfd executable where `vm.memfd_noexec` would
    // make it otherwise; kernels before 6.3 know no such flag (EINVAL) and
    // make every memfd executable.
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let memfd = match rustix::fs::memfd_create("hutch-init", flags | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("hutch-init", flags),
        made => made,
    }
    .map_err(err("memfd_create"))?;
    let mut file = File::from(memfd);
    file.write_all(INIT)
        .map_err(|source| InitBinaryError::Memfd {
            step: "write",
            source,
        })?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(err("seal"))?;
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let read_only = rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(err("reopen read-only"))?;
    Ok(read_only)
}

/// Size of the embedded init, for diagnostics.
pub fn embedded_init_len() -> usize {
    INIT.len()
}

/// The embedded init executable itself.
pub fn embedded_init() -> &'static [u8] {
    INIT
}
