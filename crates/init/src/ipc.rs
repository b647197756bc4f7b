//! The IPC namespace programs share with init, swept clean after each run.
//!
//! At its start init moves into an IPC namespace of its own, and every
//! program runs in it. After a run (and at a reset) init removes every
//! System V shared memory segment, semaphore set and message queue and
//! every POSIX message queue in it, so nothing one run made reaches the
//! next. This replaces a new IPC namespace per run, whose creation alone
//! (the namespace's sysctl tables) cost about as much as the rest of init's
//! per-run work.
//!
//! POSIX message queues live in the namespace's internal `mqueue` file
//! system; init lists them through a mount of it that is attached nowhere
//! (`fsopen`/`fsmount`), so programs never see it.

use alloc::string::{String, ToString};

use rustix::fd::OwnedFd;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::sys;

/// Why the IPC namespace could not be set up or swept.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// `unshare(CLONE_NEWIPC)` failed.
    #[error("cannot create the IPC namespace")]
    Unshare(#[source] crate::os::Error),
    /// The detached `mqueue` mount could not be made.
    #[error("cannot mount the POSIX message queue file system")]
    Mqueue(#[source] crate::os::Error),
    /// Objects of one kind could not be listed.
    #[error("cannot list the {kind}s")]
    List {
        /// The kind.
        kind: &'static str,
        /// The OS error.
        #[source]
        source: crate::os::Error,
    },
    /// An object could not be removed.
    #[error("cannot remove {kind} {id}")]
    Remove {
        /// The kind.
        kind: &'static str,
        /// Its id or name.
        id: String,
        /// The OS error.
        #[source]
        source: crate::os::Error,
    },
    /// Objects were still there after a sweep.
    #[error("{count} {kind}s are left after removing them")]
    Left {
        /// The kind.
        kind: &'static str,
        /// How many.
        count: usize,
    },
}

/// init's IPC namespace and the means to empty it.
pub struct Ipc {
    mqueue: OwnedFd,
}

impl Ipc {
    /// Moves init into a new IPC namespace and mounts its message queue
    /// file system where only init can reach it.
    pub fn new() -> Result<Self, IpcError> {
        sys::unshare_ipc().map_err(IpcError::Unshare)?;
        let mqueue = mount_mqueue().map_err(|errno| IpcError::Mqueue(errno.into()))?;
        Ok(Self { mqueue })
    }

    /// Removes every IPC object in the namespace; returns how many there
    /// were.
    pub fn sweep(&self) -> Result<usize, IpcError> {
        let mut removed = 0;
        for kind in [sys::SHM, sys::SEM, sys::MSG] {
            removed += sweep_kind(kind)?;
        }
        removed += self.sweep_queues()?;
        Ok(removed)
    }

    fn sweep_queues(&self) -> Result<usize, IpcError> {
        let list = |errno: Errno| IpcError::List {
            kind: "POSIX message queue",
            source: errno.into(),
        };
        // The mount's descriptor is an `O_PATH` one of its root: open the
        // directory for reading, anew each sweep so the listing starts at
        // its beginning.
        let dir = rustix::fs::openat(
            &self.mqueue,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(list)?;
        let mut removed = 0;
        // Read through a buffer on the stack: a sweep allocates nothing.
        let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 1024];
        let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(list)?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            rustix::fs::unlinkat(&self.mqueue, name, AtFlags::empty()).map_err(|errno| {
                IpcError::Remove {
                    kind: "POSIX message queue",
                    id: name.to_string_lossy().into_owned(),
                    source: errno.into(),
                }
            })?;
            removed += 1;
        }
        Ok(removed)
    }
}

fn mount_mqueue() -> Result<OwnedFd, Errno> {
    let context = rustix::mount::fsopen("mqueue", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_create(&context)?;
    rustix::mount::fsmount(
        &context,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
}

/// Removes every object of `kind`; a census of zero (the usual case) costs
/// one system call.
fn sweep_kind(kind: sys::IpcKind) -> Result<usize, IpcError> {
    let census = |kind: sys::IpcKind| {
        kind.census().map_err(|source| IpcError::List {
            kind: kind.name,
            source,
        })
    };
    let (in_use, highest) = census(kind)?;
    if in_use == 0 {
        return Ok(0);
    }
    let mut removed = 0;
    for index in 0..=highest {
        if let Some(id) = kind.id_at(index) {
            match kind.remove(id) {
                Ok(()) => removed += 1,
                // Gone meanwhile: nothing runs now, but be exact.
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {}
                Err(source) => {
                    return Err(IpcError::Remove {
                        kind: kind.name,
                        id: id.to_string(),
                        source,
                    });
                }
            }
        }
    }
    let (left, _) = census(kind)?;
    if left != 0 {
        return Err(IpcError::Left {
            kind: kind.name,
            count: left,
        });
    }
    Ok(removed)
}
