//! Run untrusted programs in pre-forked Linux containers.
//!
//! A [`Container`] is a process tree in its own user, mount, PID, UTS, IPC,
//! network and cgroup namespaces, whose PID 1 is a small static init that
//! this crate embeds. The host configures the container once, then runs
//! program after program in it, each one request and one reply over a
//! `SOCK_SEQPACKET` socket.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use hutch_host::{ContainerBuilder, ExecSpec};
//!
//! let mut container = ContainerBuilder::new().build()?;
//! let out = std::io::stdout();
//! let err = std::io::stderr();
//! let null = std::fs::File::open("/dev/null")?;
//! for _ in 0..3 {
//!     let spec = ExecSpec::new(["echo", "hello"]).stdio(null.as_fd(), out.as_fd(), err.as_fd());
//!     let result = container.exec(&spec)?;
//!     assert_eq!(result.status, hutch_host::protocol::Status::Ok);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Several commands at once, each in a container of a [`Pool`], with files
//! copied in and out, output collected and descriptors joined by pipes,
//! run as a [`Job`]; a [`FileStore`] keeps files between runs (a compiled
//! program, say). This is what `hutch serve` runs go-judge's requests
//! with.
//!
//! The architecture is described in `docs/architecture.md` of the
//! repository.

#![deny(missing_docs)]

extern crate alloc;

/// The error type of [`channel`]'s OS failures.
type OsError = std::io::Error;

/// An error followed by every error that caused it, joined by `: ` (`cannot
/// start the container: cannot write uid_map: Operation not permitted`), as
/// a message shows the whole story.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

mod builder;
mod cgroup;
#[path = "../../init/src/channel.rs"]
#[allow(dead_code, missing_docs)]
mod channel;
mod container;
mod exec;
#[cfg(test)]
mod fault_tests;
mod ids;
mod init_binary;
mod input;
mod job;
mod pool;
mod seccomp;
mod stop;
mod store;
#[path = "../../init/src/raw_syscall.rs"]
#[macro_use]
mod raw_syscall;
mod sys;

pub use builder::{
    AccountingChoice, BuildError, CGROUP_PARENT_VAR, ContainerBuilder, DEFAULT_TMP_BYTES,
    DEFAULT_TMPFS_INODES, DEFAULT_WORKDIR_BYTES, IdMap, MountClash, Namespaces,
};
pub use cgroup::{CgroupError, CgroupFs, CgroupLayout, KernelCgroupFs};
pub use channel::ChannelError;
pub use container::{
    Container, ContainerError, CopyInError, CopyInFile, DEFAULT_REPLY_TIMEOUT, Killer, Run,
};
pub use exec::{ExecSpec, ExecSpecError};
pub use hutch_protocol as protocol;
pub use ids::{
    ID_BLOCK_LEN, ID_BLOCKS, ID_BLOCKS_FIRST, ID_BLOCKS_LOCK, ID_BLOCKS_LOCK_VAR, IdsError,
};
pub use init_binary::{INIT_OVERRIDE_VAR, InitBinaryError, embedded_init, embedded_init_len};
pub use input::{InputError, SealedInput};
pub use job::{
    Cancel, Collector, Command, CommandResult, CopyIn, CopyInContent, CopyOut,
    DEFAULT_COPY_OUT_LIMIT, FileError, FileErrorKind, Job, JobError, MAX_JOB_FDS, Pipe, PipeEnd,
    Proxy, Source, Stream, Verdict,
};
pub use pool::{MAX_CHECKOUT, Pool, PoolError, Pooled};
/// The set of CPUs [`ExecSpec::cpus`] takes.
pub use rustix::thread::CpuSet;
pub use seccomp::{DEFAULT_SECCOMP_POLICY, SeccompError, SeccompPolicy, syscall_number};
pub use stop::{Armed, STOP_SIGNALS, StopError, StopSignals, signal_ignored};
pub use store::{FILE_ID_LEN, FileStore, StoreError, StoreWriter, is_file_id};
