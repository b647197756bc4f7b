//! Replies, sent by init to the host.
//!
//! The order of fields and variants is the wire format: do not reorder.

use alloc::{string::String, vec::Vec};

use serde::{Deserialize, Serialize};

/// A message from init to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    /// Init's half of the handshake. Tag 0.
    Hello(HelloReply),
    /// Answer to [`Request::Ping`](crate::Request::Ping). Tag 1.
    Pong,
    /// The request succeeded and has nothing to report. Tag 2.
    Ack,
    /// The request failed as a whole. Tag 3.
    Error(ErrorReply),
    /// Per-item outcome of an [`Request::Open`](crate::Request::Open), with
    /// one descriptor attached as `SCM_RIGHTS` per successful item, in item
    /// order. Tag 4.
    Opened(Batch),
    /// Per-item outcome of a [`Request::Symlink`](crate::Request::Symlink);
    /// no descriptors attached. Tag 5.
    Linked(Batch),
    /// A synchronised exec's program exists and waits for
    /// [`Request::Proceed`](crate::Request::Proceed). Tag 6.
    Started {
        /// Its pid in the container's PID namespace (never 0 or 1).
        pid: u32,
    },
    /// The program ended. Tag 7.
    Finished(ExecResult),
    /// Per-item outcome of a [`Request::CopyIn`](crate::Request::CopyIn),
    /// in item order; no descriptors attached. Tag 8.
    CopiedIn(Vec<CopyInOutcome>),
}

/// Outcome of one item of a copy-in. Tags follow declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CopyInOutcome {
    /// The file holds the whole source. Tag 0.
    Done,
    /// The item failed. Tag 1.
    Failed(CopyInFailure),
}

/// Why one item of a copy-in failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CopyInFailure {
    /// The step that failed.
    pub step: CopyInStep,
    /// The `errno`; 0 when no system call failed.
    pub errno: i32,
    /// A lowercase description.
    pub message: String,
}

/// The steps of one copy-in item. Tags follow declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CopyInStep {
    /// Creating the file (or a missing parent directory), or finding the
    /// source not a regular file: nothing was written to it (an existing
    /// file may have been truncated already). Tag 0.
    Create,
    /// Filling the created file (a full file system, say); it is left
    /// empty. Tag 1.
    Fill,
}

/// Init's half of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HelloReply {
    /// The protocol version init speaks.
    pub version: u16,
    /// Init feature bits, see [`features`](crate::features).
    pub features: u64,
}

/// A failure, as a value: where it happened, the OS error, the path involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ErrorReply {
    /// The step that failed.
    pub stage: Stage,
    /// The `errno` it failed with; 0 when no system call failed.
    pub errno: i32,
    /// The path the step worked on, if any.
    pub path: Option<String>,
    /// A lowercase human-readable description.
    pub message: String,
}

/// Steps that can fail, for [`ErrorReply::stage`]. Tags follow declaration
/// order from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Stage {
    /// A frame could not be received or decoded. Tag 0.
    Protocol,
    /// A request failed validation. Tag 1.
    Validate,
    /// Handshake: version or feature mismatch. Tag 2.
    Handshake,
    /// A request arrived in a state that does not allow it. Tag 3.
    State,
    /// Mounting the root tmpfs or a configured mount. Tag 4.
    Mount,
    /// Mounting `proc`. Tag 5.
    Proc,
    /// `pivot_root` and detaching the old root. Tag 6.
    PivotRoot,
    /// Creating a symbolic link. Tag 7.
    Symlink,
    /// Masking a path. Tag 8.
    Mask,
    /// Remounting `/` read-only. Tag 9.
    RemountRoot,
    /// Setting host or domain name. Tag 10.
    Hostname,
    /// Creating or entering the work directory. Tag 11.
    Workdir,
    /// Running the configured init command. Tag 12.
    InitCommand,
    /// Opening a file. Tag 13.
    Open,
    /// Deleting a path. Tag 14.
    Delete,
    /// Resetting the container. Tag 15.
    Reset,
    /// Creating the program's process. Tag 16.
    Spawn,
    /// Mapping descriptors onto the program's fds. Tag 17.
    Fds,
    /// Joining the cgroup. Tag 18.
    Cgroup,
    /// Setting resource limits. Tag 19.
    Rlimit,
    /// Changing directory. Tag 20.
    Chdir,
    /// Changing user and group. Tag 21.
    Credentials,
    /// Dropping capabilities or setting `no_new_privs`. Tag 22.
    Capabilities,
    /// Installing the seccomp filter. Tag 23.
    Seccomp,
    /// Finding or executing the program. Tag 24.
    Execve,
    /// Waiting for the program or enforcing its limits. Tag 25.
    Wait,
}

/// Per-item outcomes of a batch request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Batch {
    /// One outcome per requested item, in request order.
    pub results: Vec<ItemOutcome>,
    /// How many descriptors travel with this frame: the number of
    /// [`ItemOutcome::Done`] items for [`Reply::Opened`], 0 for
    /// [`Reply::Linked`].
    pub fds_attached: u32,
}

/// Outcome of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ItemOutcome {
    /// Done; for an open, the next attached descriptor is this item's. Tag 0.
    Done,
    /// Failed. Tag 1.
    Failed(ItemError),
}

/// Why one item of a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ItemError {
    /// The `errno`; 0 when no system call failed.
    pub errno: i32,
    /// A lowercase description.
    pub message: String,
}

/// The outcome of one program run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExecResult {
    /// The verdict.
    pub status: Status,
    /// How the program's process ended.
    pub termination: Termination,
    /// User CPU time of every process and thread of the run.
    pub user_time_ns: u64,
    /// System CPU time of every process and thread of the run.
    pub system_time_ns: u64,
    /// Peak memory of the run.
    pub memory_bytes: u64,
    /// Wall-clock time from exec to exit.
    pub wall_time_ns: u64,
    /// What measured CPU time and memory.
    pub accounting: Accounting,
    /// Why the program could not run, for [`Status::RunnerError`].
    pub error: Option<ErrorReply>,
    /// The most processes and threads of the run alive at once, from the
    /// cgroup's `pids.peak`; `None` where it cannot tell (no cgroup, a
    /// kernel before 6.1, or a group an earlier run filled further that
    /// could not be replaced).
    pub processes_peak: Option<u32>,
}

/// The verdict of a run. Tags follow declaration order from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Status {
    /// Exited with code 0 within every limit. Tag 0.
    Ok,
    /// Exited with a non-zero code. Tag 1.
    NonzeroExit,
    /// Killed by a signal that no limit explains. Tag 2.
    Signalled,
    /// Used more CPU time than allowed. Tag 3.
    TimeLimit,
    /// Ran longer than the wall-clock limit. Tag 4.
    WallTimeLimit,
    /// Used more memory than allowed. Tag 5.
    MemoryLimit,
    /// Wrote a file larger than allowed. Tag 6.
    OutputLimit,
    /// Made a system call the seccomp policy forbids. Tag 7.
    DisallowedSyscall,
    /// Could not be run at all; see [`ExecResult::error`]. Tag 8.
    RunnerError,
}

impl Status {
    /// Every status, in wire-tag order.
    pub const ALL: [Status; 9] = [
        Status::Ok,
        Status::NonzeroExit,
        Status::Signalled,
        Status::TimeLimit,
        Status::WallTimeLimit,
        Status::MemoryLimit,
        Status::OutputLimit,
        Status::DisallowedSyscall,
        Status::RunnerError,
    ];

    /// The kebab-case name used in reports: `ok`, `nonzero-exit`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NonzeroExit => "nonzero-exit",
            Status::Signalled => "signalled",
            Status::TimeLimit => "time-limit",
            Status::WallTimeLimit => "wall-time-limit",
            Status::MemoryLimit => "memory-limit",
            Status::OutputLimit => "output-limit",
            Status::DisallowedSyscall => "disallowed-syscall",
            Status::RunnerError => "runner-error",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the program's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Termination {
    /// It exited with this code (0..=255). Tag 0.
    Exited(i32),
    /// A signal (1..=64) ended it. Tag 1.
    Signalled(i32),
    /// It never started. Tag 2.
    NotStarted,
}

/// What measured a run's CPU time and memory. Tags follow declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Accounting {
    /// A cgroup v1 hierarchy (`cpuacct`, `memory`). Tag 0.
    CgroupV1,
    /// The unified cgroup v2 hierarchy (`cpu.stat`, `memory.peak`). Tag 1.
    CgroupV2,
    /// `getrusage`/`wait4` of reaped processes: CPU of every reaped process,
    /// memory as the largest single-process RSS. Tag 2.
    Rusage,
}

impl Accounting {
    /// The name used in reports: `cgroup-v1`, `cgroup-v2` or `rusage`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Accounting::CgroupV1 => "cgroup-v1",
            Accounting::CgroupV2 => "cgroup-v2",
            Accounting::Rusage => "rusage",
        }
    }
}

impl ExecResult {
    /// Total CPU time, user plus system, saturating.
    pub const fn cpu_time_ns(&self) -> u64 {
        self.user_time_ns.saturating_add(self.system_time_ns)
    }
}
