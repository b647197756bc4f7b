//! Requests, sent by the host to a container's init.
//!
//! The host always speaks first; init answers every request with exactly one
//! [`Reply`](crate::Reply), except [`Request::Kill`], which is never answered
//! by itself, and a synchronised [`Request::Exec`], which is answered by
//! [`Reply::Started`](crate::Reply::Started) and, after the host's
//! [`Request::Proceed`] (or [`Request::Kill`]), by
//! [`Reply::Finished`](crate::Reply::Finished).
//!
//! The order of fields and variants is the wire format: do not reorder.

use alloc::{string::String, vec::Vec};

use serde::{Deserialize, Serialize};

/// A message from the host to init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// First message on a new connection. Answered by
    /// [`Reply::Hello`](crate::Reply::Hello). Wire tag 0.
    Hello(Hello),
    /// Liveness check. Answered by [`Reply::Pong`](crate::Reply::Pong). Tag 1.
    Ping,
    /// Set up the container's file system and identity, once. Answered by
    /// [`Reply::Ack`](crate::Reply::Ack). Tag 2.
    Configure(Configure),
    /// Open files inside the container and send them back. Answered by
    /// [`Reply::Opened`](crate::Reply::Opened). Tag 3.
    Open(Vec<OpenItem>),
    /// Remove a file or an empty directory. Answered by
    /// [`Reply::Ack`](crate::Reply::Ack). Tag 4.
    Delete(Delete),
    /// Create symbolic links. Answered by
    /// [`Reply::Linked`](crate::Reply::Linked). Tag 5.
    Symlink(Vec<SymlinkItem>),
    /// Empty every writable tmpfs and drop what a run left behind. Answered by
    /// [`Reply::Ack`](crate::Reply::Ack). Tag 6.
    Reset,
    /// Run one program. Carries the program's file descriptors as
    /// `SCM_RIGHTS`. Tag 7.
    Exec(ExecRequest),
    /// Let a synchronised exec go ahead (its program is in its cgroup).
    /// Tag 8.
    Proceed,
    /// Kill the running program and everything it started. Never answered
    /// by itself: the pending exec finishes with its
    /// [`Reply::Finished`](crate::Reply::Finished), and with nothing running
    /// init ignores it (so a kill racing with the end of a run cannot leave
    /// a stray reply behind). Tag 9.
    Kill,
    /// Hand init the container's cgroup files (attached as `SCM_RIGHTS`, in
    /// the order of [`CgroupFiles::files`]), opened by the host. From then
    /// on every program joins the cgroup before its first instruction, and
    /// init measures and limits each run through these files. Answered by
    /// [`Reply::Ack`](crate::Reply::Ack). Tag 10.
    Cgroup(CgroupFiles),
    /// Create files inside the container and fill each with the whole of
    /// one attached descriptor (a regular file, read from offset 0 to its
    /// end), in item order, one descriptor per item. Init does the writing
    /// itself, so no writable descriptor of a file a program may execute
    /// ever exists outside the container. Answered by
    /// [`Reply::CopiedIn`](crate::Reply::CopiedIn). Tag 11. Sent only to an
    /// init announcing [`features::INIT_COPY`](crate::features::INIT_COPY).
    CopyIn(Vec<CopyInItem>),
    /// Open files for the host to read what a run left: read-only, never
    /// through a symbolic link anywhere in the path, regular files only.
    /// Answered by [`Reply::Opened`](crate::Reply::Opened). Tag 12. Sent
    /// only to an init announcing
    /// [`features::INIT_COPY`](crate::features::INIT_COPY).
    CopyOut(Vec<String>),
    /// Move later programs to fresh groups: the attached descriptors (in
    /// the order of [`CgroupFiles::files`]) are join files (see
    /// [`CgroupFile::Procs`]), one per hierarchy, or the directory of a v2
    /// group ([`CgroupFile::Dir`]), which replace every [`CgroupFile::Procs`]
    /// and [`CgroupFile::Dir`] init holds,
    /// and at most one [`CgroupFile::PidsPeak`] of the group they join,
    /// which replaces init's (none when absent). The host sends it between
    /// runs, after one whose process peak a later run could not tell from
    /// its own: a `pids.peak` cannot be reset. `version` must be that of
    /// the container's [`Request::Cgroup`]. Answered by
    /// [`Reply::Ack`](crate::Reply::Ack). Tag 13.
    Regroup(CgroupFiles),
}

/// One file to create and fill from an attached descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CopyInItem {
    /// Absolute path inside the container. Missing parent directories are
    /// created (mode `0o755`); the file and the directories belong to the
    /// programs' user. An existing file is truncated; a symbolic link as the
    /// last component is refused.
    pub path: String,
    /// Permission bits of the file (at most `0o7777`).
    pub mode: u32,
}

/// The cgroup files of a container, one attached descriptor each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CgroupFiles {
    /// Which cgroup version the files belong to.
    pub version: CgroupVersion,
    /// What each attached descriptor is, in attachment order.
    pub files: Vec<CgroupFile>,
}

/// A cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies. Tag 0.
    V1,
    /// The unified hierarchy. Tag 1.
    V2,
}

/// What one attached cgroup descriptor is. Tags follow declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CgroupFile {
    /// The file a program writes `0` to, joining that cgroup: v1 `tasks`
    /// (one per hierarchy; the program writes it as the one thread of its
    /// process, so the process moves) or v2 `cgroup.procs`. Write-only.
    /// Tag 0.
    Procs,
    /// v1 `cpuacct.usage_user`: user CPU in ns; writing 0 to
    /// [`CgroupFile::CpuUsage`] resets it. Read-only. Tag 1.
    CpuUser,
    /// v1 `cpuacct.usage_sys`: system CPU in ns. Read-only. Tag 2.
    CpuSystem,
    /// v1 `cpuacct.usage`: total CPU in ns; writing 0 resets the three.
    /// Read-write. Tag 3.
    CpuUsage,
    /// v2 `cpu.stat` (`usage_usec`, `user_usec`, `system_usec`). Read-only.
    /// Tag 4.
    CpuStat,
    /// v1 `memory.max_usage_in_bytes` (write 0 to reset) or v2
    /// `memory.peak` (write `reset` to reset for this descriptor).
    /// Read-write. Tag 5.
    MemoryPeak,
    /// v1 `memory.oom_control` or v2 `memory.events`: the `oom_kill` count.
    /// Read-only. Tag 6.
    OomEvents,
    /// v1 `memory.limit_in_bytes` or v2 `memory.max`. Write-only. Tag 7.
    MemoryLimit,
    /// v1 `memory.memsw.limit_in_bytes` (memory plus swap) or v2
    /// `memory.swap.max` (swap alone, kept at 0). Write-only. Tag 8.
    SwapLimit,
    /// v1 `memory.force_empty`: drops what earlier runs left charged.
    /// Write-only. Tag 9.
    ForceEmpty,
    /// `pids.max`. Write-only. Tag 10.
    PidsLimit,
    /// v1 `memory.usage_in_bytes` or v2 `memory.current`: what is charged
    /// now, before a run starts (files an earlier run left in the tmpfs
    /// mounts, say), so that the run's limit and peak count only its own.
    /// Read-only. Tag 11.
    MemoryUsage,
    /// `memory.stat`: its `cache` line (v1) or its `file` and `shmem` lines
    /// (v2) tell a reset whether earlier runs left page cache charged, the
    /// only case in which it must reclaim. Read-only. Tag 12. Sent only to
    /// an init announcing
    /// [`features::INIT_MEMORY_STAT`](crate::features::INIT_MEMORY_STAT),
    /// and for v2 only with [`CgroupFile::Reclaim`].
    MemoryStat,
    /// v2 `memory.reclaim` (Linux 5.19 and later): a size written to it is
    /// reclaimed from the group, which a reset does for the page cache
    /// earlier runs left. Write-only. Tag 13. Sent only to an init
    /// announcing
    /// [`features::INIT_V2_RECLAIM`](crate::features::INIT_V2_RECLAIM).
    Reclaim,
    /// `pids.peak` (Linux 6.1 and later): the most tasks (processes and
    /// threads) the group has held at once since it was made; it cannot be
    /// reset. Read-only. Tag 14.
    PidsPeak,
    /// v2: the directory of the group programs start in, in place of its
    /// [`CgroupFile::Procs`]. Init creates each program inside it
    /// (`clone3` with `CLONE_INTO_CGROUP`), so no program moves between
    /// groups: a move waits for an RCU grace period after a quiet spell
    /// unless the hierarchy is mounted with `favordynmods`, a start in the
    /// group never does. At most one, never with a `Procs`. Tag 15. Sent
    /// only to an init announcing
    /// [`features::INIT_CGROUP_DIR`](crate::features::INIT_CGROUP_DIR).
    Dir,
}

/// The host's half of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// The protocol version the host speaks, equal to the frame header's.
    pub version: u16,
    /// Host feature bits, see [`features`](crate::features).
    pub features: u64,
}

/// Container configuration, applied once by init before any program runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Configure {
    /// Mounts, performed in order under the new tmpfs root.
    pub mounts: Vec<Mount>,
    /// Symbolic links created after the mounts (e.g. `/dev/fd` → `/proc/self/fd`).
    pub symlinks: Vec<SymlinkItem>,
    /// Paths hidden from programs: directories get an empty read-only tmpfs,
    /// files a bind of `/dev/null`. Missing paths are skipped.
    pub masked_paths: Vec<String>,
    /// UTS host name; empty leaves it as it is.
    pub hostname: String,
    /// UTS domain name; empty leaves it as it is.
    pub domainname: String,
    /// Directory programs start in, absolute.
    pub workdir: String,
    /// User id programs run as inside the container, unless an exec says
    /// otherwise.
    pub uid: u32,
    /// Group id programs run as inside the container, unless an exec says
    /// otherwise.
    pub gid: u32,
    /// A command run once inside the finished container, as root of the
    /// container, before the acknowledgement; empty for none.
    pub init_command: Vec<String>,
    /// Whether init builds the container's own file system.
    pub filesystem: FileSystem,
}

/// What file system a container's programs see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FileSystem {
    /// The container's own: a tmpfs root with the configured mounts,
    /// `pivot_root`, read-only. Tag 0.
    Container,
    /// The host's, as it is (the container has no mount namespace of its
    /// own): mounts, symbolic links and masks must be empty; only the work
    /// directory and the names apply. Tag 1.
    Host,
}

/// One mount of a container's file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Mount {
    /// Bind a host path (as init sees it before `pivot_root`) at `target`.
    /// Tag 0.
    Bind {
        /// Host path, absolute.
        source: String,
        /// Path inside the container, absolute.
        target: String,
        /// Read-write instead of read-only.
        writable: bool,
        /// Extra restrictions.
        flags: MountFlags,
    },
    /// A fresh tmpfs. Tag 1.
    Tmpfs {
        /// Path inside the container, absolute.
        target: String,
        /// Largest total size of its files, in bytes.
        size_bytes: u64,
        /// Most inodes it may hold.
        max_inodes: u64,
        /// Permission bits of its root directory (at most `0o7777`).
        mode: u32,
        /// Read-only instead of read-write.
        read_only: bool,
    },
    /// The container's `proc`, mounted before `pivot_root`. Tag 2.
    Proc {
        /// Path inside the container, absolute.
        target: String,
        /// Mount read-only.
        read_only: bool,
    },
    /// Bind one host device node (e.g. `/dev/null`) at `target`. Tag 3.
    Device {
        /// Host path of the device node, absolute.
        source: String,
        /// Path inside the container, absolute.
        target: String,
    },
}

/// Restrictions on a bind mount. All are set on the container's read-only
/// root regardless.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MountFlags {
    /// Ignore set-user-id and set-group-id bits (`MS_NOSUID`).
    pub nosuid: bool,
    /// Refuse access to device nodes (`MS_NODEV`).
    pub nodev: bool,
    /// Refuse to execute files (`MS_NOEXEC`).
    pub noexec: bool,
}

/// One file to open inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenItem {
    /// Absolute path inside the container.
    pub path: String,
    /// How to open it.
    pub flags: OpenFlags,
    /// Permission bits for a created file (at most `0o7777`), set exactly:
    /// no umask applies. A created file belongs to the programs' user; an
    /// existing one keeps its owner and mode.
    pub mode: u32,
    /// Create missing parent directories (mode `0o755`) first.
    pub make_parents: bool,
}

/// Open flags, typed. Only regular files are ever opened: init refuses
/// anything else, and never follows a symbolic link in the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenFlags {
    /// Read, write or both.
    pub access: Access,
    /// Create the file when it does not exist (`O_CREAT`).
    pub create: bool,
    /// Fail when it exists (`O_EXCL`, with `create`).
    pub exclusive: bool,
    /// Truncate it (`O_TRUNC`).
    pub truncate: bool,
    /// Append to it (`O_APPEND`).
    pub append: bool,
}

impl OpenFlags {
    /// Read an existing file (`O_RDONLY`).
    pub const fn read_only() -> Self {
        Self {
            access: Access::Read,
            create: false,
            exclusive: false,
            truncate: false,
            append: false,
        }
    }

    /// Write a file from its start, made when missing and emptied when
    /// not (`O_WRONLY | O_CREAT | O_TRUNC`), as a shell's `>` does.
    pub const fn write_truncating() -> Self {
        Self {
            access: Access::Write,
            create: true,
            exclusive: false,
            truncate: true,
            append: false,
        }
    }

    /// Write at the end of a file, made when missing (`O_WRONLY | O_CREAT
    /// | O_APPEND`), as a shell's `>>` does.
    pub const fn append() -> Self {
        Self {
            access: Access::Write,
            create: true,
            exclusive: false,
            truncate: false,
            append: true,
        }
    }

    /// Write a file that must not exist yet (`O_WRONLY | O_CREAT |
    /// O_EXCL`).
    pub const fn create_new() -> Self {
        Self {
            access: Access::Write,
            create: true,
            exclusive: true,
            truncate: false,
            append: false,
        }
    }
}

/// Access mode of an opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Access {
    /// `O_RDONLY`. Tag 0.
    Read,
    /// `O_WRONLY`. Tag 1.
    Write,
    /// `O_RDWR`. Tag 2.
    ReadWrite,
}

/// A path to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Delete {
    /// Absolute path inside the container.
    pub path: String,
}

/// One symbolic link to create, owned by the programs' user, with its
/// missing parent directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SymlinkItem {
    /// Absolute path of the link inside the container.
    pub link: String,
    /// What it points to, absolute or relative to the link's directory.
    pub target: String,
}

/// Everything init needs to run one program.
///
/// The default is the empty request: no arguments (so it fails
/// validation), no limits; a place to decode into
/// ([`decode_request_reusing`](crate::decode_request_reusing)) or to fill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExecRequest {
    /// Arguments. Unless `exec_fd` is set, `argv[0]` names the program: a
    /// name with a `/` is a path; a bare name is an executable file of that
    /// name in the directory the program starts in, if there is one, else
    /// is looked up through the environment's `PATH` inside the container.
    pub argv: Vec<String>,
    /// The program's whole environment, as `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// `fd_map[i]` is the index, among the descriptors attached to this
    /// frame, of the one that becomes the program's fd `i`. An attached
    /// descriptor may serve several program fds.
    pub fd_map: Vec<u32>,
    /// Index of an attached descriptor to execute instead of looking up
    /// `argv[0]` (`execveat(fd, "", AT_EMPTY_PATH)`).
    pub exec_fd: Option<u32>,
    /// Directory to start in; the container's work directory when `None`.
    pub cwd: Option<String>,
    /// Resource limits set with `setrlimit` before exec.
    pub rlimits: Vec<Rlimit>,
    /// Classic BPF seccomp program installed last before exec; empty for
    /// none.
    pub seccomp: Vec<BpfInstruction>,
    /// Limits init enforces and turns into verdicts.
    pub limits: Limits,
    /// Wait for [`Request::Proceed`] after reporting the program's pid, so
    /// the host can place it in a cgroup before its first instruction.
    pub sync: bool,
    /// User id to run as; the container's default when `None`.
    pub uid: Option<u32>,
    /// Group id to run as; the container's default when `None`.
    pub gid: Option<u32>,
}

/// One `setrlimit` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Rlimit {
    /// Which resource.
    pub resource: Resource,
    /// Soft limit; `u64::MAX` is `RLIM_INFINITY`.
    pub soft: u64,
    /// Hard limit, at least `soft`; `u64::MAX` is `RLIM_INFINITY`.
    pub hard: u64,
}

/// Resources of `setrlimit(2)`, with their wire tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)] // each variant is the RLIMIT_ resource of its name
pub enum Resource {
    Cpu,        // 0
    Fsize,      // 1
    Data,       // 2
    Stack,      // 3
    Core,       // 4
    Rss,        // 5
    Nproc,      // 6
    Nofile,     // 7
    Memlock,    // 8
    As,         // 9
    Locks,      // 10
    Sigpending, // 11
    Msgqueue,   // 12
    Nice,       // 13
    Rtprio,     // 14
    Rttime,     // 15
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BpfInstruction {
    /// Opcode.
    pub code: u16,
    /// Jump offset when true.
    pub jt: u8,
    /// Jump offset when false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// Limits init enforces and reports as verdicts; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Limits {
    /// CPU time, user plus system, of every process and thread of the run.
    pub cpu_time_ns: Option<u64>,
    /// Wall-clock time from exec to exit.
    pub wall_time_ns: Option<u64>,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub output_bytes: Option<u64>,
    /// Peak memory of the run.
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive at once.
    pub processes: Option<u32>,
}
