//! Checks that turn decoded messages into [`Validated`] ones.
//!
//! Decoding proves a frame is a well-formed encoding; validation proves the
//! value makes sense: what a handler may assume without checking again.
//! Both sides run it: the host before it encodes (so a caller's mistake is
//! reported before anything is sent), the receiver after it decodes.

use alloc::string::String;
use core::ops::Deref;

use crate::{
    Batch, Configure, ExecRequest, ExecResult, ItemOutcome, Limits, MAX_FDS_PER_FRAME, Mount,
    OpenItem, PROTOCOL_VERSION, Reply, Request, Status, SymlinkItem, Termination,
};

/// Longest path, in bytes (`PATH_MAX` less the NUL).
pub const MAX_PATH_LEN: usize = 4095;
/// Longest host or domain name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most arguments of one exec.
pub const MAX_ARGS: usize = 4096;
/// Most environment entries of one exec.
pub const MAX_ENV: usize = 4096;
/// Most mounts, symbolic links or masked paths in one configuration.
pub const MAX_MOUNTS: usize = 256;
/// Most items in one symlink batch (an open batch is capped at
/// [`MAX_FDS_PER_FRAME`](crate::MAX_FDS_PER_FRAME), one descriptor per item).
pub const MAX_BATCH: usize = 1024;
/// Most seccomp instructions (the kernel's `BPF_MAXINSNS`).
pub const MAX_BPF_INSTRUCTIONS: usize = 4096;
/// Largest CPU or wall-clock limit: one day.
pub const MAX_TIME_NS: u64 = 86_400 * 1_000_000_000;
/// Smallest memory limit: 1 MiB.
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
/// Largest process limit (the kernel's largest `pid_max`).
pub const MAX_PROCESSES: u32 = 1 << 22;
/// Most resource limits in one exec (one per resource).
const MAX_RLIMITS: usize = 16;
/// Largest `errno` value Linux returns.
const MAX_ERRNO: i32 = 4095;
/// Highest real-time signal number.
const MAX_SIGNAL: i32 = 64;

/// A message that passed validation. Only [`Request::validate`] and
/// [`Reply::validate`] make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated<T>(T);

impl<T> Validated<T> {
    /// The validated message.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Validated<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What is wrong with a decoded message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An exec without arguments.
    #[error("exec argv is empty")]
    EmptyArgv,
    /// A string field that must not be empty is.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A path that must be absolute is not.
    #[error("{field} is not an absolute path: {path:?}")]
    RelativePath {
        /// The field.
        field: &'static str,
        /// The path.
        path: String,
    },
    /// A path has a `..` component.
    #[error("{field} has a `..` component: {path:?}")]
    ParentComponent {
        /// The field.
        field: &'static str,
        /// The path.
        path: String,
    },
    /// A string holds a NUL byte, which no system call can take.
    #[error("{field} contains a NUL byte")]
    Nul {
        /// The field.
        field: &'static str,
    },
    /// A string is too long.
    #[error("{field} is {len} bytes long, more than the maximum of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A list has too many entries.
    #[error("{field} has {count} entries, more than the maximum of {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Its length.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// An environment entry is not `KEY=VALUE` with a non-empty key.
    #[error("environment entry {index} is not KEY=VALUE: {entry:?}")]
    BadEnv {
        /// Its index.
        index: usize,
        /// The entry.
        entry: String,
    },
    /// A host or domain name holds a character other than letters, digits,
    /// `-` and `.`.
    #[error("{field} {name:?} holds a character other than letters, digits, '-' and '.'")]
    BadName {
        /// The field.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// A number is outside the range the field accepts.
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value (wide enough for every signed and unsigned field).
        value: i128,
        /// Smallest accepted.
        min: i128,
        /// Largest accepted.
        max: i128,
    },
    /// A cgroup file that does not exist in the named cgroup version.
    #[error("cgroup file {file:?} does not exist in cgroup {version:?}")]
    CgroupFile {
        /// The file.
        file: crate::CgroupFile,
        /// The version.
        version: crate::CgroupVersion,
    },
    /// A cgroup file given without the one it serves (a v2 `MemoryStat`
    /// without `Reclaim`).
    #[error("cgroup file {file:?} is given without {serves:?}, the only file it serves")]
    CgroupFileAlone {
        /// The file.
        file: crate::CgroupFile,
        /// The file it comes with.
        serves: crate::CgroupFile,
    },
    /// Two cgroup files that exclude each other (a `Dir` and a `Procs`:
    /// programs start in one v2 group, or join groups, not both).
    #[error("cgroup file {file:?} cannot be given with {with:?}")]
    CgroupFilesExclusive {
        /// The file.
        file: crate::CgroupFile,
        /// The file it excludes.
        with: crate::CgroupFile,
    },
    /// A `Regroup` names a cgroup file other than `Procs`, `Dir` and
    /// `PidsPeak`.
    #[error("cgroup file {file:?} cannot be replaced by a regroup")]
    NotRegroupFile {
        /// The file.
        file: crate::CgroupFile,
    },
    /// A cgroup file (other than `Procs`) given twice.
    #[error("cgroup file {file:?} is given twice")]
    DuplicateCgroupFile {
        /// The file.
        file: crate::CgroupFile,
    },
    /// One resource has two rlimits.
    #[error("rlimit {resource:?} is given twice")]
    DuplicateRlimit {
        /// The resource.
        resource: crate::Resource,
    },
    /// An open asks to truncate or append to a file opened read-only.
    #[error("open of {path:?} asks to truncate or append without write access")]
    ModifyReadOnly {
        /// The path.
        path: String,
    },
    /// An rlimit's soft limit exceeds its hard limit.
    #[error("rlimit {resource:?}: soft limit {soft} exceeds hard limit {hard}")]
    SoftAboveHard {
        /// The resource.
        resource: crate::Resource,
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
    },
    /// An open asks for `exclusive` without `create`.
    #[error("open of {path:?} asks for exclusive without create")]
    ExclusiveWithoutCreate {
        /// The path.
        path: String,
    },
    /// A descriptor index names no attached descriptor.
    #[error("{field} names attached descriptor {index}, but {attached} are attached")]
    FdOutOfRange {
        /// `fd_map` or `exec_fd`.
        field: &'static str,
        /// The index.
        index: u32,
        /// How many came with the frame.
        attached: usize,
    },
    /// An attached descriptor is used by nothing in the message.
    #[error("attached descriptor {index} is used by neither fd_map nor exec_fd")]
    FdUnused {
        /// Its index among the attached descriptors.
        index: usize,
    },
    /// The number of attached descriptors is not what the message says.
    #[error("{message} came with {attached} descriptors, expected {expected}")]
    FdCount {
        /// The message kind.
        message: &'static str,
        /// How many came.
        attached: usize,
        /// How many the message accounts for.
        expected: usize,
    },
    /// A handshake names another protocol version than its frame header.
    #[error("hello names protocol version {found}, the frame header version {expected}")]
    HelloVersion {
        /// The version in the hello.
        found: u16,
        /// [`PROTOCOL_VERSION`].
        expected: u16,
    },
    /// An exec result whose parts contradict each other.
    #[error("exec result with status {status} cannot have {detail}")]
    InconsistentResult {
        /// The status.
        status: Status,
        /// What contradicts it.
        detail: &'static str,
    },
}

type Result<T = ()> = core::result::Result<T, ValidationError>;

impl Request {
    /// Checks this request, which came with `fds_attached` descriptors.
    pub fn check(&self, fds_attached: usize) -> Result {
        match self {
            Request::Exec(exec) => return exec.check(fds_attached),
            Request::Hello(hello) => {
                if hello.version != PROTOCOL_VERSION {
                    return Err(ValidationError::HelloVersion {
                        found: hello.version,
                        expected: PROTOCOL_VERSION,
                    });
                }
            }
            Request::Configure(configure) => configure.check()?,
            Request::Open(items) => {
                // Every opened file travels back as one descriptor.
                count("open items", items.len(), 1, MAX_FDS_PER_FRAME)?;
                items.iter().try_for_each(OpenItem::check)?;
            }
            Request::Delete(delete) => {
                path("delete path", &delete.path)?;
                if delete.path.split('/').all(|c| c.is_empty() || c == ".") {
                    return Err(ValidationError::Empty {
                        field: "delete path below the root",
                    });
                }
            }
            Request::Symlink(items) => {
                count("symlink items", items.len(), 1, MAX_BATCH)?;
                items.iter().try_for_each(SymlinkItem::check)?;
            }
            Request::Cgroup(cgroup) => return cgroup.check(fds_attached),
            Request::Regroup(cgroup) => return cgroup.check_regroup(fds_attached),
            Request::CopyIn(items) => {
                // One source descriptor per item.
                count("copy-in items", items.len(), 1, MAX_FDS_PER_FRAME)?;
                for item in items {
                    path("copy-in path", &item.path)?;
                    if item.path.split('/').all(|c| c.is_empty() || c == ".") {
                        return Err(ValidationError::Empty {
                            field: "copy-in path below the root",
                        });
                    }
                    range("copy-in mode", i128::from(item.mode), 0, 0o7777)?;
                }
                if fds_attached != items.len() {
                    return Err(ValidationError::FdCount {
                        message: "copy-in",
                        attached: fds_attached,
                        expected: items.len(),
                    });
                }
                return Ok(());
            }
            Request::CopyOut(paths) => {
                // Every opened file travels back as one descriptor.
                count("copy-out paths", paths.len(), 1, MAX_FDS_PER_FRAME)?;
                for copied in paths {
                    path("copy-out path", copied)?;
                }
            }
            Request::Ping | Request::Reset | Request::Proceed | Request::Kill => {}
        }
        no_fds(self.kind(), fds_attached)
    }

    /// Checks this request, which came with `fds_attached` descriptors, and
    /// marks it fit to act on.
    pub fn validate(self, fds_attached: usize) -> Result<Validated<Request>> {
        self.check(fds_attached)?;
        Ok(Validated(self))
    }

    /// A short lowercase name of the request kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Hello(_) => "hello",
            Request::Ping => "ping",
            Request::Configure(_) => "configure",
            Request::Open(_) => "open",
            Request::Delete(_) => "delete",
            Request::Symlink(_) => "symlink",
            Request::Reset => "reset",
            Request::Exec(_) => "exec",
            Request::Proceed => "proceed",
            Request::Kill => "kill",
            Request::Cgroup(_) => "cgroup",
            Request::CopyIn(_) => "copy-in",
            Request::CopyOut(_) => "copy-out",
            Request::Regroup(_) => "regroup",
        }
    }
}

impl Reply {
    /// Checks this reply, which came with `fds_attached` descriptors.
    pub fn check(&self, fds_attached: usize) -> Result {
        match self {
            Reply::Opened(batch) => {
                batch.check()?;
                count(
                    "opened reply descriptors",
                    batch.fds_attached as usize,
                    0,
                    MAX_FDS_PER_FRAME,
                )?;
                let done = batch
                    .results
                    .iter()
                    .filter(|r| matches!(r, ItemOutcome::Done))
                    .count();
                if batch.fds_attached as usize != done {
                    return Err(ValidationError::FdCount {
                        message: "opened reply header",
                        attached: batch.fds_attached as usize,
                        expected: done,
                    });
                }
                if fds_attached != done {
                    return Err(ValidationError::FdCount {
                        message: "opened reply",
                        attached: fds_attached,
                        expected: done,
                    });
                }
                return Ok(());
            }
            Reply::Linked(batch) => {
                batch.check()?;
                if batch.fds_attached != 0 {
                    return Err(ValidationError::FdCount {
                        message: "linked reply header",
                        attached: batch.fds_attached as usize,
                        expected: 0,
                    });
                }
            }
            Reply::Error(error) => error.check()?,
            Reply::Started { pid } => {
                range("started pid", i128::from(*pid), 2, i128::from(i32::MAX))?
            }
            Reply::Finished(result) => result.check()?,
            Reply::CopiedIn(outcomes) => {
                count("copied-in results", outcomes.len(), 0, MAX_FDS_PER_FRAME)?;
                for outcome in outcomes {
                    if let crate::CopyInOutcome::Failed(failure) = outcome {
                        errno("copy-in errno", failure.errno)?;
                    }
                }
            }
            Reply::Hello(hello) => {
                if hello.version != PROTOCOL_VERSION {
                    return Err(ValidationError::HelloVersion {
                        found: hello.version,
                        expected: PROTOCOL_VERSION,
                    });
                }
            }
            Reply::Pong | Reply::Ack => {}
        }
        no_fds(self.kind(), fds_attached)
    }

    /// Checks this reply, which came with `fds_attached` descriptors, and
    /// marks it fit to act on.
    pub fn validate(self, fds_attached: usize) -> Result<Validated<Reply>> {
        self.check(fds_attached)?;
        Ok(Validated(self))
    }

    /// A short lowercase name of the reply kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Hello(_) => "hello reply",
            Reply::Pong => "pong",
            Reply::Ack => "ack",
            Reply::Error(_) => "error reply",
            Reply::Opened(_) => "opened reply",
            Reply::Linked(_) => "linked reply",
            Reply::Started { .. } => "started reply",
            Reply::Finished(_) => "finished reply",
            Reply::CopiedIn(_) => "copied-in reply",
        }
    }
}

impl crate::CgroupFiles {
    /// The checks a `Cgroup` and a `Regroup` share: as many descriptors as
    /// files; at least one `Procs`, or one v2 `Dir` and no `Procs`.
    fn check_count(&self, message: &'static str, fds_attached: usize) -> Result {
        use crate::{CgroupFile as F, CgroupVersion as V};
        count("cgroup files", self.files.len(), 1, MAX_FDS_PER_FRAME)?;
        if fds_attached != self.files.len() {
            return Err(ValidationError::FdCount {
                message,
                attached: fds_attached,
                expected: self.files.len(),
            });
        }
        let dirs = self.files.iter().filter(|&&file| file == F::Dir).count();
        if dirs > 0 && self.version != V::V2 {
            return Err(ValidationError::CgroupFile {
                file: F::Dir,
                version: self.version,
            });
        }
        if dirs > 1 {
            return Err(ValidationError::DuplicateCgroupFile { file: F::Dir });
        }
        match (dirs, self.files.contains(&F::Procs)) {
            (0, false) => Err(ValidationError::Empty {
                field: "cgroup procs files",
            }),
            (1, true) => Err(ValidationError::CgroupFilesExclusive {
                file: F::Dir,
                with: F::Procs,
            }),
            _ => Ok(()),
        }
    }

    /// A `Regroup` names the groups programs join (or the one they start
    /// in) and at most one `PidsPeak`, nothing else.
    fn check_regroup(&self, fds_attached: usize) -> Result {
        use crate::CgroupFile as F;
        self.check_count("regroup", fds_attached)?;
        for (index, file) in self.files.iter().enumerate() {
            if !matches!(file, F::Procs | F::Dir | F::PidsPeak) {
                return Err(ValidationError::NotRegroupFile { file: *file });
            }
            if *file == F::PidsPeak && self.files[..index].contains(file) {
                return Err(ValidationError::DuplicateCgroupFile { file: *file });
            }
        }
        Ok(())
    }

    fn check(&self, fds_attached: usize) -> Result {
        use crate::{CgroupFile as F, CgroupVersion as V};
        self.check_count("cgroup", fds_attached)?;
        for (index, file) in self.files.iter().enumerate() {
            if *file == F::MemoryStat && self.version == V::V2 && !self.files.contains(&F::Reclaim)
            {
                // On v2 it serves the reclaim only.
                return Err(ValidationError::CgroupFileAlone {
                    file: *file,
                    serves: F::Reclaim,
                });
            }
            let fits = match file {
                F::Procs | F::MemoryStat => true,
                F::CpuUser | F::CpuSystem | F::CpuUsage | F::ForceEmpty => self.version == V::V1,
                F::CpuStat | F::Reclaim | F::Dir => self.version == V::V2,
                F::MemoryPeak
                | F::OomEvents
                | F::MemoryLimit
                | F::SwapLimit
                | F::PidsLimit
                | F::PidsPeak
                | F::MemoryUsage => true,
            };
            if !fits {
                return Err(ValidationError::CgroupFile {
                    file: *file,
                    version: self.version,
                });
            }
            if *file != F::Procs && self.files[..index].contains(file) {
                return Err(ValidationError::DuplicateCgroupFile { file: *file });
            }
        }
        Ok(())
    }
}

impl Configure {
    fn check(&self) -> Result {
        if self.filesystem == crate::FileSystem::Host {
            // Nothing to mount in a mount namespace that is the host's.
            count("host file system mounts", self.mounts.len(), 0, 0)?;
            count("host file system symlinks", self.symlinks.len(), 0, 0)?;
            count(
                "host file system masked paths",
                self.masked_paths.len(),
                0,
                0,
            )?;
        }
        count("configure mounts", self.mounts.len(), 0, MAX_MOUNTS)?;
        self.mounts.iter().try_for_each(Mount::check)?;
        count("configure symlinks", self.symlinks.len(), 0, MAX_MOUNTS)?;
        self.symlinks.iter().try_for_each(SymlinkItem::check)?;
        count(
            "configure masked paths",
            self.masked_paths.len(),
            0,
            MAX_MOUNTS,
        )?;
        for masked in &self.masked_paths {
            path("masked path", masked)?;
        }
        name("hostname", &self.hostname)?;
        name("domain name", &self.domainname)?;
        path("work directory", &self.workdir)?;
        id("configure uid", self.uid)?;
        id("configure gid", self.gid)?;
        count("init command", self.init_command.len(), 0, MAX_ARGS)?;
        if let Some(program) = self.init_command.first() {
            non_empty("init command program", program)?;
        }
        for arg in &self.init_command {
            no_nul("init command argument", arg)?;
        }
        Ok(())
    }
}

impl Mount {
    fn check(&self) -> Result {
        match self {
            Mount::Bind { source, target, .. } => {
                path("bind mount source", source)?;
                path("bind mount target", target)
            }
            Mount::Tmpfs {
                target,
                size_bytes,
                max_inodes,
                mode,
                ..
            } => {
                path("tmpfs target", target)?;
                range(
                    "tmpfs size_bytes",
                    i128::from(*size_bytes),
                    4096,
                    i128::from(u64::MAX),
                )?;
                range(
                    "tmpfs max_inodes",
                    i128::from(*max_inodes),
                    1,
                    i128::from(u64::MAX),
                )?;
                range("tmpfs mode", i128::from(*mode), 0, 0o7777)
            }
            Mount::Proc { target, .. } => path("proc target", target),
            Mount::Device { source, target } => {
                path("device source", source)?;
                path("device target", target)
            }
        }
    }
}

impl OpenItem {
    fn check(&self) -> Result {
        path("open path", &self.path)?;
        range("open mode", i128::from(self.mode), 0, 0o7777)?;
        if (self.flags.truncate || self.flags.append) && self.flags.access == crate::Access::Read {
            return Err(ValidationError::ModifyReadOnly {
                path: self.path.clone(),
            });
        }
        if self.flags.exclusive && !self.flags.create {
            return Err(ValidationError::ExclusiveWithoutCreate {
                path: self.path.clone(),
            });
        }
        Ok(())
    }
}

impl SymlinkItem {
    fn check(&self) -> Result {
        path("symlink path", &self.link)?;
        non_empty("symlink target", &self.target)?;
        no_nul("symlink target", &self.target)?;
        length("symlink target", self.target.len(), MAX_PATH_LEN)
    }
}

impl ExecRequest {
    /// Checks this exec request, which came with `fds_attached` descriptors.
    pub fn check(&self, fds_attached: usize) -> Result {
        if self.argv.is_empty() {
            return Err(ValidationError::EmptyArgv);
        }
        count("exec argv", self.argv.len(), 1, MAX_ARGS)?;
        for arg in &self.argv {
            no_nul("exec argument", arg)?;
        }
        non_empty("exec argv[0]", &self.argv[0])?;
        count("exec env", self.env.len(), 0, MAX_ENV)?;
        for (index, entry) in self.env.iter().enumerate() {
            no_nul("environment entry", entry)?;
            match entry.split_once('=') {
                Some((key, _)) if !key.is_empty() => {}
                _ => {
                    return Err(ValidationError::BadEnv {
                        index,
                        entry: entry.clone(),
                    });
                }
            }
        }
        self.check_fds(fds_attached)?;
        if let Some(cwd) = &self.cwd {
            path("exec cwd", cwd)?;
        }
        count("exec rlimits", self.rlimits.len(), 0, MAX_RLIMITS)?;
        for (index, rlimit) in self.rlimits.iter().enumerate() {
            if self.rlimits[..index]
                .iter()
                .any(|earlier| earlier.resource == rlimit.resource)
            {
                return Err(ValidationError::DuplicateRlimit {
                    resource: rlimit.resource,
                });
            }
            if rlimit.soft > rlimit.hard {
                return Err(ValidationError::SoftAboveHard {
                    resource: rlimit.resource,
                    soft: rlimit.soft,
                    hard: rlimit.hard,
                });
            }
        }
        count("exec seccomp", self.seccomp.len(), 0, MAX_BPF_INSTRUCTIONS)?;
        self.limits.check()?;
        if let Some(uid) = self.uid {
            id("exec uid", uid)?;
        }
        if let Some(gid) = self.gid {
            id("exec gid", gid)?;
        }
        Ok(())
    }

    fn check_fds(&self, attached: usize) -> Result {
        count("exec descriptors", attached, 0, MAX_FDS_PER_FRAME)?;
        count("exec fd_map", self.fd_map.len(), 0, MAX_FDS_PER_FRAME)?;
        let mut used = [false; MAX_FDS_PER_FRAME];
        let refs = self
            .fd_map
            .iter()
            .map(|&index| ("exec fd_map", index))
            .chain(self.exec_fd.map(|index| ("exec exec_fd", index)));
        for (field, index) in refs {
            match used.get_mut(index as usize) {
                Some(slot) if (index as usize) < attached => *slot = true,
                _ => {
                    return Err(ValidationError::FdOutOfRange {
                        field,
                        index,
                        attached,
                    });
                }
            }
        }
        match used[..attached].iter().position(|&u| !u) {
            Some(index) => Err(ValidationError::FdUnused { index }),
            None => Ok(()),
        }
    }
}

impl Limits {
    fn check(&self) -> Result {
        if let Some(cpu) = self.cpu_time_ns {
            range(
                "cpu time limit (ns)",
                i128::from(cpu),
                1,
                i128::from(MAX_TIME_NS),
            )?;
        }
        if let Some(wall) = self.wall_time_ns {
            range(
                "wall time limit (ns)",
                i128::from(wall),
                1,
                i128::from(MAX_TIME_NS),
            )?;
        }
        if let Some(output) = self.output_bytes {
            range(
                "output limit (bytes)",
                i128::from(output),
                1,
                i128::from(u64::MAX),
            )?;
        }
        if let Some(memory) = self.memory_bytes {
            range(
                "memory limit (bytes)",
                i128::from(memory),
                i128::from(MIN_MEMORY_BYTES),
                i128::from(u64::MAX),
            )?;
        }
        if let Some(processes) = self.processes {
            range(
                "process limit",
                i128::from(processes),
                1,
                i128::from(MAX_PROCESSES),
            )?;
        }
        Ok(())
    }
}

impl Batch {
    fn check(&self) -> Result {
        count("batch results", self.results.len(), 0, MAX_BATCH)?;
        for outcome in &self.results {
            if let ItemOutcome::Failed(error) = outcome {
                errno("item errno", error.errno)?;
            }
        }
        Ok(())
    }
}

impl crate::ErrorReply {
    fn check(&self) -> Result {
        errno("error errno", self.errno)
    }
}

impl ExecResult {
    fn check(&self) -> Result {
        let inconsistent = |detail| {
            Err(ValidationError::InconsistentResult {
                status: self.status,
                detail,
            })
        };
        match self.termination {
            Termination::Exited(code) => range("exit code", i128::from(code), 0, 255)?,
            Termination::Signalled(signal) => {
                range("signal", i128::from(signal), 1, i128::from(MAX_SIGNAL))?
            }
            Termination::NotStarted => {}
        }
        match (&self.error, self.status) {
            (Some(error), Status::RunnerError) => error.check()?,
            (None, Status::RunnerError) => return inconsistent("no error"),
            (Some(_), _) => return inconsistent("an error"),
            (None, _) => {}
        }
        match (self.status, self.termination) {
            (Status::Ok, Termination::Exited(0)) => Ok(()),
            (Status::Ok, _) => inconsistent("anything but exit code 0"),
            (Status::NonzeroExit, Termination::Exited(code)) if code != 0 => Ok(()),
            (Status::NonzeroExit, _) => inconsistent("anything but a non-zero exit code"),
            (Status::Signalled, Termination::Signalled(_)) => Ok(()),
            (Status::Signalled, _) => inconsistent("anything but a signal"),
            (Status::RunnerError, _) => Ok(()),
            (_, Termination::NotStarted) => inconsistent("a program that never started"),
            _ => Ok(()),
        }
    }
}

fn no_fds(message: &'static str, attached: usize) -> Result {
    if attached == 0 {
        Ok(())
    } else {
        Err(ValidationError::FdCount {
            message,
            attached,
            expected: 0,
        })
    }
}

fn count(field: &'static str, count: usize, min: usize, max: usize) -> Result {
    if count > max {
        Err(ValidationError::TooMany { field, count, max })
    } else if count < min {
        Err(ValidationError::Empty { field })
    } else {
        Ok(())
    }
}

fn range(field: &'static str, value: i128, min: i128, max: i128) -> Result {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn length(field: &'static str, len: usize, max: usize) -> Result {
    if len > max {
        Err(ValidationError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn non_empty(field: &'static str, value: &str) -> Result {
    if value.is_empty() {
        Err(ValidationError::Empty { field })
    } else {
        Ok(())
    }
}

fn no_nul(field: &'static str, value: &str) -> Result {
    if value.as_bytes().contains(&0) {
        Err(ValidationError::Nul { field })
    } else {
        Ok(())
    }
}

fn path(field: &'static str, value: &str) -> Result {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    no_nul(field, value)?;
    length(field, value.len(), MAX_PATH_LEN)?;
    if !value.starts_with('/') {
        return Err(ValidationError::RelativePath {
            field,
            path: value.into(),
        });
    }
    if value.split('/').any(|component| component == "..") {
        return Err(ValidationError::ParentComponent {
            field,
            path: value.into(),
        });
    }
    Ok(())
}

fn name(field: &'static str, value: &str) -> Result {
    length(field, value.len(), MAX_NAME_LEN)?;
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(())
    } else {
        Err(ValidationError::BadName {
            field,
            name: value.into(),
        })
    }
}

fn id(field: &'static str, value: u32) -> Result {
    // u32::MAX is (uid_t)-1, which the kernel reads as "leave unchanged".
    range(field, i128::from(value), 0, i128::from(u32::MAX - 1))
}

fn errno(field: &'static str, value: i32) -> Result {
    range(field, i128::from(value), 0, i128::from(MAX_ERRNO))
}
