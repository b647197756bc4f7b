//! The container's cgroup: found, created and removed by the host, handed
//! to init as open descriptors.
//!
//! One cgroup per container, created under this process's own cgroup (or a
//! parent the caller names), in each v1 hierarchy hutch uses (`memory`,
//! `cpuacct`, `pids`) or once in the unified v2 hierarchy. The host opens
//! the control files and sends them to init with one `Cgroup` request; init
//! resets the counters before each run and reads them after.
//!
//! On v1 each program moves itself into the groups before it runs
//! (writing `tasks`), and init stays in the host's groups. On v2 the
//! container's group holds two: `init`, where the host starts init, and
//! `programs`, which carries the limits and counters and where init starts
//! each program (`clone3` with `CLONE_INTO_CGROUP`), so that no program
//! ever moves: a v2 move waits for an RCU grace period after a quiet spell
//! (milliseconds; `docs/performance.md`). Either way a run's memory and CPU
//! are the run's alone.
//!
//! The file system calls that only a real cgroup file system answers —
//! making and removing a group, which creates and deletes its control files
//! — go through [`CgroupFs`], so tests can stand a fake tree in.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hutch_protocol::{CgroupFile, CgroupFiles, CgroupVersion};

/// Why the container's cgroup could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// No usable cgroup hierarchy was found.
    #[error("no usable cgroup hierarchy: {why}; {}", fix())]
    Unavailable {
        /// What is missing.
        why: String,
    },
    /// Reading `/proc/self/cgroup` or `/proc/self/mountinfo` failed.
    #[error("cannot read {path}; {}", fix())]
    Proc {
        /// The file.
        path: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The container's cgroup could not be created.
    #[error("cannot create the cgroup {}; {}", path.display(), fix())]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The parent the container's cgroup goes in does not exist.
    #[error(
        "the cgroup parent {} does not exist: create it (delegated to the user hutch runs as, \
         when not root) or name another with --cgroup-parent, ContainerBuilder::cgroup_parent \
         or HUTCH_CGROUP_PARENT",
        path.display()
    )]
    NoParent {
        /// The directory.
        path: PathBuf,
    },
    /// A cgroup parent named with a `..` component, which could climb out
    /// of the hierarchy (a v1 parent is relative to this process's own
    /// group).
    #[error(
        "the cgroup parent {} has a `..` component: name it without one",
        path.display()
    )]
    ParentClimbs {
        /// The parent as named.
        path: PathBuf,
    },
    /// A v2 parent (or, for the shared parent not yet made, the directory
    /// it goes in) that is no directory of a cgroup v2 file system: a plain
    /// directory, say. Nothing was written or made in it.
    #[error("the cgroup parent {} is not a directory of a cgroup v2 file system; {}", path.display(), fix())]
    NotCgroup2 {
        /// The directory.
        path: PathBuf,
        /// Why its file system could not be told, when it could not.
        #[source]
        source: Option<std::io::Error>,
    },
    /// v2 controllers could not be enabled for the container's cgroup.
    #[error("cannot enable the memory and pids controllers in {}; {hint}", path.display())]
    Controllers {
        /// The parent's `cgroup.subtree_control`.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A control file could not be opened or written.
    #[error("cannot use the cgroup file {}; {}", path.display(), fix())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How to fix a cgroup failure, in every message that needs it: for a
/// user, the ways to a cgroup; for root, which has one unless told
/// otherwise, a look at the parent it was told.
fn fix() -> &'static str {
    if rustix::process::geteuid().is_root() {
        "check the cgroup parent (--cgroup-parent, ContainerBuilder::cgroup_parent or \
         HUTCH_CGROUP_PARENT names a directory of a mounted cgroup hierarchy), or accept \
         rusage accounting (--allow-rusage, ContainerBuilder::allow_rusage)"
    } else {
        "run as root, or delegate a cgroup subtree to this user and name it with \
         --cgroup-parent, ContainerBuilder::cgroup_parent or HUTCH_CGROUP_PARENT, or accept \
         rusage accounting (--allow-rusage, ContainerBuilder::allow_rusage)"
    }
}

/// The operations a real cgroup file system does differently from a plain
/// directory tree.
pub trait CgroupFs: Send + Sync + std::fmt::Debug {
    /// Makes a group; the kernel creates its control files.
    fn make_group(&self, dir: &Path) -> std::io::Result<()>;
    /// Removes an empty group.
    fn remove_group(&self, dir: &Path) -> std::io::Result<()>;
    /// Removes an empty group without waiting: fails while the kernel is
    /// still releasing a task of it.
    fn try_remove_group(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(dir)
    }
    /// Whether the existing directory `dir` is on a cgroup v2 file system,
    /// where a v2 parent must be before anything is written or made in it.
    /// By default the kernel tells (`statfs`); a fake tree of plain
    /// directories answers for itself.
    fn is_cgroup2(&self, dir: &Path) -> std::io::Result<bool> {
        on_cgroup2(dir)
    }
}

/// The `f_type` of a cgroup v2 file system (`CGROUP2_SUPER_MAGIC`), wide
/// enough for `statfs`'s field on every target.
const CGROUP2_SUPER_MAGIC: i128 = 0x6367_7270;

/// Whether `dir` is on a cgroup v2 file system.
fn on_cgroup2(dir: &Path) -> std::io::Result<bool> {
    let stat = rustix::fs::statfs(dir)?;
    Ok(i128::from(stat.f_type) == CGROUP2_SUPER_MAGIC)
}

/// The kernel's cgroup file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelCgroupFs;

impl CgroupFs for KernelCgroupFs {
    fn make_group(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn remove_group(&self, dir: &Path) -> std::io::Result<()> {
        // A group whose last tasks are still being torn down reports EBUSY
        // for a moment after they were reaped.
        let mut tries = 0;
        loop {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }
}

/// Where a container's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1: the parent directory in each hierarchy.
    V1 {
        /// In the `memory` hierarchy.
        memory: PathBuf,
        /// In the `cpuacct` hierarchy.
        cpuacct: PathBuf,
        /// In the `pids` hierarchy.
        pids: PathBuf,
    },
    /// v2: the parent directory in the unified hierarchy.
    V2 {
        /// The parent.
        parent: PathBuf,
    },
}

impl CgroupLayout {
    /// Finds this process's own cgroups: v2 when the unified hierarchy
    /// offers the memory and pids controllers, else v1 when the memory,
    /// cpuacct and pids hierarchies are mounted.
    pub fn detect() -> Result<Self, CgroupError> {
        let read = |path: &'static str| {
            std::fs::read_to_string(path).map_err(|source| CgroupError::Proc { path, source })
        };
        let cgroups = read("/proc/self/cgroup")?;
        let mountinfo = read("/proc/self/mountinfo")?;
        Self::from_proc(&cgroups, &mountinfo)
    }

    /// [`detect`](Self::detect) on given contents of `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`.
    pub fn from_proc(cgroups: &str, mountinfo: &str) -> Result<Self, CgroupError> {
        let mounts = parse_mounts(mountinfo);
        let own = |controller: Option<&str>| -> Option<PathBuf> {
            let path = cgroups.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                let wanted = match controller {
                    None => names.is_empty(),
                    Some(name) => names.split(',').any(|n| n == name),
                };
                wanted.then_some(path)
            })?;
            let mount = mounts.iter().find(|m| match controller {
                None => m.fstype == "cgroup2",
                Some(name) => m.fstype == "cgroup" && m.options.split(',').any(|o| o == name),
            })?;
            let relative = path.strip_prefix(&mount.root).unwrap_or(path);
            Some(mount.point.join(relative.trim_start_matches('/')))
        };
        if let Some(dir) = own(None) {
            let controllers =
                std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let has = |name| controllers.split_whitespace().any(|c| c == name);
            if has("memory") && has("pids") {
                return Ok(CgroupLayout::V2 {
                    parent: v2_parent(dir, &mounts),
                });
            }
        }
        match (own(Some("memory")), own(Some("cpuacct")), own(Some("pids"))) {
            (Some(memory), Some(cpuacct), Some(pids)) => Ok(CgroupLayout::V1 {
                memory,
                cpuacct,
                pids,
            }),
            _ => Err(CgroupError::Unavailable {
                why: "neither a cgroup v2 hierarchy with the memory and pids controllers nor \
                      v1 memory, cpuacct and pids hierarchies are mounted"
                    .into(),
            }),
        }
    }

    /// The same layout under another parent directory (v2), or another
    /// parent in every v1 hierarchy (a path relative to each hierarchy's
    /// current parent).
    pub fn with_parent(&self, parent: &Path) -> Self {
        match self {
            CgroupLayout::V2 { .. } => CgroupLayout::V2 {
                parent: parent.to_owned(),
            },
            CgroupLayout::V1 {
                memory,
                cpuacct,
                pids,
            } => {
                let relative = parent.strip_prefix("/").unwrap_or(parent);
                CgroupLayout::V1 {
                    memory: memory.join(relative),
                    cpuacct: cpuacct.join(relative),
                    pids: pids.join(relative),
                }
            }
        }
    }
}

/// The name of the group at the root of a v2 hierarchy that root's
/// container groups share when its own group cannot be their parent.
const SHARED_PARENT: &str = "hutch";

/// Where a process whose own v2 cgroup is `own` makes container groups.
///
/// v2 lets a group hand controllers to children only while it holds no
/// processes, and a process's own group holds at least the process. Only
/// the root of the hierarchy is exempt, so a process there makes the groups
/// in it. Elsewhere (a systemd unit's group, a login session's, the root of
/// a cgroup namespace, which is an ordinary group of the real hierarchy)
/// root makes them in [`SHARED_PARENT`] at the root of the mount,
/// shared by every hutch process and made at the first build that needs it
/// (at a namespace's root, after moving its processes into a leaf: see
/// `enable_controllers_at_root`);
/// an unprivileged process keeps its own group, whose build then fails
/// saying to delegate a group and name it.
fn v2_parent(own: PathBuf, mounts: &[MountEntry]) -> PathBuf {
    let Some(mount) = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2" && own.starts_with(&m.point))
        .map(|m| m.point.clone())
    else {
        return own;
    };
    if (own == mount && is_hierarchy_root(&own)) || !rustix::process::geteuid().is_root() {
        own
    } else {
        mount.join(SHARED_PARENT)
    }
}

/// Whether `dir` is the root of a v2 hierarchy, which alone has no
/// `cgroup.type` (the root of a cgroup namespace has one).
fn is_hierarchy_root(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists() && !dir.join("cgroup.type").exists()
}

/// Whether `dir` is the shared parent hutch makes (see [`v2_parent`]): at
/// the root of the hierarchy, or of the mount of a cgroup namespace's.
fn is_shared_parent(dir: &Path) -> bool {
    dir.file_name() == Some(std::ffi::OsStr::new(SHARED_PARENT))
        && dir
            .parent()
            .is_some_and(|root| is_hierarchy_root(root) || is_v2_mount_root(root))
}

/// Whether `dir` is a v2 group at the root of its mount: a group on
/// another device than the directory holding it.
fn is_v2_mount_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev());
    dir.join("cgroup.controllers").exists()
        && match (device(dir), dir.parent().map(device)) {
            (Ok(own), Some(Ok(above))) => own != above,
            _ => false,
        }
}

struct MountEntry {
    root: String,
    point: PathBuf,
    fstype: String,
    options: String,
}

fn parse_mounts(mountinfo: &str) -> Vec<MountEntry> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            Some(MountEntry {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: fstype.to_owned(),
                options: options.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A container's cgroup: the groups made for it, removed on drop.
///
/// `pids.peak` cannot be reset, so once a run has had more than one task a
/// later run's peak may hide below it. Then [`regroup`](Self::regroup)
/// makes a fresh *run group* inside the group that counts tasks (v1's pids
/// group, v2's only group), which later programs join instead; the limits
/// and every other counter stay on the container's groups, which count
/// their children's tasks, memory and CPU as their own.
#[derive(Debug)]
pub(crate) struct ContainerCgroup {
    fs: Arc<dyn CgroupFs>,
    /// The name of the container's group in each parent.
    name: String,
    /// The groups made, in order; removed in reverse.
    dirs: Vec<PathBuf>,
    version: CgroupVersion,
    /// The group that counts tasks, where run groups are made.
    pids_dir: PathBuf,
    /// The join files (`tasks`) of the groups a regroup keeps (v1's memory
    /// and cpuacct groups), in the order init got them, with their groups.
    kept_procs: Vec<(OwnedFd, PathBuf)>,
    /// Whether the kernel has `pids.peak` (Linux 6.1 and later).
    counts_processes: bool,
    /// Run groups made so far and not yet removed, oldest first; the last
    /// is the one programs join.
    run_groups: Vec<PathBuf>,
    /// How many run groups were made, for their names.
    run_groups_made: u64,
    /// v2: whom the `cgroup.procs` of the groups init starts programs in
    /// are given to (init's host uid), if not to this process's.
    owner: Option<u32>,
    /// v2: init starts programs in their group (`CgroupFile::Dir`) rather
    /// than have them move in (`Procs`).
    starts_in_dir: bool,
    /// v2: init lives in a group of the container's, which cannot be
    /// removed before init has exited.
    holds_init: bool,
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        for dir in self.run_groups.iter().rev().chain(self.dirs.iter().rev()) {
            let _ = self.fs.remove_group(dir);
        }
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A name part unique in this process and unguessable from inside: random
/// bits from the kernel, mixed with a counter in case they are unavailable.
fn opaque_id() -> u64 {
    let mut bytes = [0u8; 8];
    let random = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .map_or(0, |_| u64::from_ne_bytes(bytes));
    let count = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    random ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `hutch-<pid>-<start time>-`: the start of the name of every group this
/// process makes. The start time (clock ticks after boot, field 22 of
/// `/proc/<pid>/stat`) tells this process from a later one with its pid.
fn owner_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or(0);
        format!("hutch-{pid}-{start}-")
    })
}

/// When process `pid` started, in clock ticks after boot; `None` when there
/// is no such process.
fn start_time(pid: u32) -> Option<u64> {
    stat_of(pid).map(|stat| stat.start)
}

/// When process `pid` started, if it is alive: `None` when there is no such
/// process, or when it has ended and only waits to be reaped (a server
/// killed by `SIGKILL` whose parent has not waited for it yet).
fn live_start_time(pid: u32) -> Option<u64> {
    stat_of(pid)
        .filter(ProcessStat::alive)
        .map(|stat| stat.start)
}

/// What `/proc/<pid>/stat` tells of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessStat {
    /// The state (field 3): `R`, `S`, `Z`, ….
    state: char,
    /// Its threads (field 20).
    threads: u64,
    /// When it started, in clock ticks after boot (field 22).
    start: u64,
}

impl ProcessStat {
    /// Reads the line of `/proc/<pid>/stat`.
    fn parse(line: &str) -> Option<Self> {
        // The command name (field 2) may hold spaces and parentheses: count
        // from the last ')'.
        let mut fields = line[line.rfind(')')? + 1..].split_whitespace();
        let state = fields.next()?.chars().next()?;
        let threads = fields.nth(16)?.parse().ok()?;
        let start = fields.nth(1)?.parse().ok()?;
        Some(Self {
            state,
            threads,
            start,
        })
    }

    /// Whether the process still runs. A zombie (`Z`) or a dying task
    /// (`X`) is dead, unless it is a thread group's leader that ended alone
    /// (`pthread_exit`) while other threads of its process go on, which
    /// the thread count tells: a dead process's leader counts only itself.
    fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X') || self.threads > 1
    }
}

/// `/proc/<pid>/stat` of process `pid`; `None` when there is none.
fn stat_of(pid: u32) -> Option<ProcessStat> {
    ProcessStat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The owner of a group named by [`owner_prefix`], if the name is one.
fn owner_of(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix("hutch-")?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    (!random.is_empty() && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some((pid, start))
}

/// Whether the process that made the group `name` is gone: no process has
/// its pid, the one that has it started at another time, or it has ended
/// and waits to be reaped. `known` holds
/// the owners already looked up: on v1 every owner has a group under each
/// of three parents, and each look is a read of `/proc/<pid>/stat`.
fn left_by_a_dead_process(
    name: &str,
    known: &mut std::collections::HashMap<(u32, u64), bool>,
) -> bool {
    match owner_of(name) {
        Some((pid, start)) => *known
            .entry((pid, start))
            .or_insert_with(|| live_start_time(pid) != Some(start)),
        None => false,
    }
}

impl CgroupLayout {
    /// The parent directories groups are made in.
    pub(crate) fn parents(&self) -> Vec<&Path> {
        match self {
            CgroupLayout::V1 {
                memory,
                cpuacct,
                pids,
            } => vec![memory, cpuacct, pids],
            CgroupLayout::V2 { parent } => vec![parent],
        }
    }

    /// Removes the groups that processes which are gone (killed before they
    /// could clean up) left under this layout's parents; returns how many.
    /// Groups of live processes are left alone. A group that still holds
    /// processes has them killed first.
    pub fn remove_stale(&self, fs: &dyn CgroupFs) -> std::io::Result<usize> {
        let mut failed = None;
        let mut known = std::collections::HashMap::new();
        let mut stale = Vec::new();
        for parent in self.parents() {
            let entries = match std::fs::read_dir(parent) {
                // No parent yet (the shared one before the first build):
                // nothing can have been left in it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                entries => entries?,
            };
            // An entry that cannot be read leaves the others to look at.
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if entry.file_type().is_ok_and(|kind| kind.is_dir())
                    && left_by_a_dead_process(name, &mut known)
                {
                    stale.push(entry.path());
                }
            }
        }
        // On v2 an init may still live in a tree, tearing its container
        // down: every task of every tree is killed at once (`cgroup.kill`),
        // and the trees are given two seconds together to empty.
        let killed: Vec<&PathBuf> = stale
            .iter()
            .filter(|dir| std::fs::write(dir.join("cgroup.kill"), "1").is_ok())
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while killed.iter().any(|dir| is_populated(dir)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut removed = 0;
        for dir in &stale {
            // One tree that cannot go leaves the others to try.
            match remove_tree(fs, dir) {
                Ok(()) => removed += 1,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

/// Whether the v2 group `dir` or a group inside it holds a task, from its
/// `cgroup.events`; `false` when that cannot be read.
fn is_populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|line| line == "populated 1"))
}

/// Removes the group `dir` and the groups inside it (run groups), killing
/// what still runs in them.
fn remove_tree(fs: &dyn CgroupFs, dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(fs, &entry.path())?;
        }
    }
    if fs.remove_group(dir).is_err() {
        kill_members(dir);
        fs.remove_group(dir)?;
    }
    Ok(())
}

/// Kills every process of the group `dir`: with `cgroup.kill` where the
/// kernel has it (v2), else one by one from `cgroup.procs`.
fn kill_members(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Access modes of control files.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
    ReadWrite,
    /// A directory, for `CLONE_INTO_CGROUP`: a path descriptor, which
    /// reads and writes nothing.
    Path,
}

impl ContainerCgroup {
    /// Makes the container's group(s) and opens the files init needs:
    /// [`begin`](Self::begin) and [`finish`](Self::finish) at once.
    #[cfg(test)]
    pub(crate) fn create(
        layout: &CgroupLayout,
        fs: Arc<dyn CgroupFs>,
    ) -> Result<(Self, CgroupFiles, Vec<OwnedFd>), CgroupError> {
        let (mut cgroup, _) = Self::begin(layout, fs, None)?;
        let (files, fds) = cgroup.finish(layout)?;
        Ok((cgroup, files, fds))
    }

    /// What goes before init exists. On v2: the container's group, with
    /// the memory and pids controllers handed down, and inside it the
    /// group init lives in, whose directory is returned for the `clone3`
    /// that starts init there (`CLONE_INTO_CGROUP`; `None` in a fake
    /// tree). Programs later start in a sibling of it (see
    /// [`finish`](Self::finish)): the container's group is where init's
    /// and the programs' groups meet, so init may create processes in the
    /// programs' group once the container's `cgroup.procs` and theirs are
    /// `owner`'s, init's host uid (as root; `None` leaves them the
    /// caller's, which init then is). On v1 only the parents are checked.
    pub(crate) fn begin(
        layout: &CgroupLayout,
        fs: Arc<dyn CgroupFs>,
        owner: Option<u32>,
    ) -> Result<(Self, Option<OwnedFd>), CgroupError> {
        // Programs never see this name: each run has a cgroup namespace
        // rooted at its group, so /proc/self/cgroup reads "/". The owner's
        // pid and start time let a later process tell a group a killed one
        // left (remove_stale); the random part keeps names unguessable.
        let name = format!("{}{:016x}", owner_prefix(), opaque_id());
        let mut cgroup = ContainerCgroup {
            fs,
            name,
            dirs: Vec::new(),
            version: match layout {
                CgroupLayout::V1 { .. } => CgroupVersion::V1,
                CgroupLayout::V2 { .. } => CgroupVersion::V2,
            },
            pids_dir: PathBuf::new(),
            kept_procs: Vec::new(),
            counts_processes: false,
            run_groups: Vec::new(),
            run_groups_made: 0,
            owner,
            starts_in_dir: false,
            holds_init: false,
        };
        for parent in layout.parents() {
            if !parent.is_dir() && !is_shared_parent(parent) {
                return Err(CgroupError::NoParent {
                    path: parent.to_owned(),
                });
            }
        }
        let CgroupLayout::V2 { parent } = layout else {
            return Ok((cgroup, None));
        };
        // A v2 parent gets a `cgroup.subtree_control` written, and the
        // shared parent its directory made: in a plain directory either
        // would be a stray file left behind.
        let existing = match parent.parent() {
            Some(root) if !parent.is_dir() => root,
            _ => parent,
        };
        match cgroup.fs.is_cgroup2(existing) {
            Ok(true) => {}
            outcome => {
                return Err(CgroupError::NotCgroup2 {
                    path: existing.to_owned(),
                    source: outcome.err(),
                });
            }
        }
        // The shared parent at the root of the hierarchy (see `v2_parent`)
        // is made by the first build that needs it.
        if let Some(root) = parent.parent()
            && !parent.is_dir()
        {
            enable_controllers_at_root(root, cgroup.fs.as_ref())?;
            match cgroup.fs.make_group(parent) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(CgroupError::Create {
                        path: parent.clone(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        enable_controllers(parent)?;
        let name = cgroup.name.clone();
        let top = cgroup.make(parent, &name)?;
        // Before init is in it: handing controllers down to a populated
        // subtree moves its tasks, which waits for the kernel as a move
        // does.
        enable_controllers(&top)?;
        give_procs(&top, owner)?;
        let init = cgroup.make(&top, INIT_GROUP)?;
        // Only a group of the kernel's can take a process at its creation.
        if !on_cgroup2(&init).unwrap_or(false) {
            return Ok((cgroup, None));
        }
        let dir = open(&init, Access::Path)?;
        cgroup.holds_init = true;
        cgroup.starts_in_dir = true;
        Ok((cgroup, Some(dir)))
    }

    /// Makes the rest of the groups and opens the files init needs: on v1
    /// a group in each hierarchy; on v2 the programs' group beside init's,
    /// which carries the limits and counters, and whose directory init
    /// starts programs in (its `cgroup.procs` in a fake tree).
    pub(crate) fn finish(
        &mut self,
        layout: &CgroupLayout,
    ) -> Result<(CgroupFiles, Vec<OwnedFd>), CgroupError> {
        let cgroup = self;
        let name = cgroup.name.clone();
        let mut files = Vec::new();
        let mut fds = Vec::new();
        let mut add =
            |dir: &Path, file: &str, kind: CgroupFile, access: Access| -> Result<(), CgroupError> {
                fds.push(open(&dir.join(file), access)?);
                files.push(kind);
                Ok(())
            };
        // v2: the programs' group, as init gets it to start programs in.
        let mut detached = None;
        let version = match layout {
            CgroupLayout::V1 {
                memory,
                cpuacct,
                pids,
            } => {
                let memory = cgroup.make(memory, &name)?;
                let cpuacct = cgroup.make(cpuacct, &name)?;
                let pids = cgroup.make(pids, &name)?;
                for dir in [&memory, &cpuacct, &pids] {
                    add(dir, V1_JOIN_FILE, CgroupFile::Procs, Access::Write)?;
                }

                add(
                    &cpuacct,
                    "cpuacct.usage_user",
                    CgroupFile::CpuUser,
                    Access::Read,
                )?;
                add(
                    &cpuacct,
                    "cpuacct.usage_sys",
                    CgroupFile::CpuSystem,
                    Access::Read,
                )?;
                add(
                    &cpuacct,
                    "cpuacct.usage",
                    CgroupFile::CpuUsage,
                    Access::ReadWrite,
                )?;
                add(
                    &memory,
                    "memory.max_usage_in_bytes",
                    CgroupFile::MemoryPeak,
                    Access::ReadWrite,
                )?;
                add(
                    &memory,
                    "memory.oom_control",
                    CgroupFile::OomEvents,
                    Access::Read,
                )?;
                add(
                    &memory,
                    "memory.limit_in_bytes",
                    CgroupFile::MemoryLimit,
                    Access::Write,
                )?;
                if memory.join("memory.memsw.limit_in_bytes").exists() {
                    add(
                        &memory,
                        "memory.memsw.limit_in_bytes",
                        CgroupFile::SwapLimit,
                        Access::Write,
                    )?;
                } else {
                    // Without swap accounting, keep the group from swapping.
                    write(&memory.join("memory.swappiness"), "0")?;
                }
                add(
                    &memory,
                    "memory.force_empty",
                    CgroupFile::ForceEmpty,
                    Access::Write,
                )?;
                add(&memory, "memory.stat", CgroupFile::MemoryStat, Access::Read)?;
                add(&pids, "pids.max", CgroupFile::PidsLimit, Access::Write)?;
                add(
                    &memory,
                    "memory.usage_in_bytes",
                    CgroupFile::MemoryUsage,
                    Access::Read,
                )?;
                cgroup.pids_dir = pids;
                CgroupVersion::V1
            }
            CgroupLayout::V2 { .. } => {
                let top = cgroup.dirs[0].clone();
                let dir = cgroup.make(&top, PROGRAMS_GROUP)?;
                give_procs(&dir, cgroup.owner)?;
                detached = match cgroup.starts_in_dir {
                    true => detached_group(&dir)?,
                    false => None,
                };
                cgroup.starts_in_dir = detached.is_some();
                if detached.is_none() {
                    add(&dir, "cgroup.procs", CgroupFile::Procs, Access::Write)?;
                }
                add(&dir, "cpu.stat", CgroupFile::CpuStat, Access::Read)?;
                add(
                    &dir,
                    "memory.peak",
                    CgroupFile::MemoryPeak,
                    peak_access(&dir.join("memory.peak")),
                )?;
                add(&dir, "memory.events", CgroupFile::OomEvents, Access::Read)?;
                add(&dir, "memory.max", CgroupFile::MemoryLimit, Access::Write)?;
                add(
                    &dir,
                    "memory.swap.max",
                    CgroupFile::SwapLimit,
                    Access::Write,
                )?;
                add(&dir, "pids.max", CgroupFile::PidsLimit, Access::Write)?;
                add(
                    &dir,
                    "memory.current",
                    CgroupFile::MemoryUsage,
                    Access::Read,
                )?;
                // Linux 5.19 and later: a reset reclaims the page cache a run
                // left, as v1's force_empty does.
                if dir.join("memory.reclaim").exists() {
                    add(&dir, "memory.stat", CgroupFile::MemoryStat, Access::Read)?;
                    add(&dir, "memory.reclaim", CgroupFile::Reclaim, Access::Write)?;
                }
                cgroup.pids_dir = dir;
                CgroupVersion::V2
            }
        };
        if let Some(dir) = detached {
            // First, where the join file would be.
            fds.insert(0, dir);
            files.insert(0, CgroupFile::Dir);
        }
        if version == CgroupVersion::V1 {
            // A regroup replaces only the pids group's.
            for (fd, dir) in fds[..2].iter().zip(&cgroup.dirs) {
                let kept = duplicate(fd, dir)?;
                cgroup.kept_procs.push((kept, dir.clone()));
            }
        }
        if let Some(fd) = open_if_there(&cgroup.pids_dir.join("pids.peak"))? {
            fds.push(fd);
            files.push(CgroupFile::PidsPeak);
            cgroup.counts_processes = true;
        }
        Ok((CgroupFiles { version, files }, fds))
    }

    fn make(&mut self, parent: &Path, name: &str) -> Result<PathBuf, CgroupError> {
        let dir = make_group(self.fs.as_ref(), parent.join(name))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// The group directories, in the order they were made, for tests and
    /// diagnostics.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The groups that limit and measure runs: every v1 group, or the v2
    /// programs' group (the last made).
    pub(crate) fn measured_dirs(&self) -> &[PathBuf] {
        match self.version {
            CgroupVersion::V1 => &self.dirs,
            CgroupVersion::V2 => &self.dirs[self.dirs.len().saturating_sub(1)..],
        }
    }

    /// Whether init reads each run's process peak from `pids.peak`.
    pub(crate) fn counts_processes(&self) -> bool {
        self.counts_processes
    }

    /// The run groups not yet removed, the one programs join last.
    pub(crate) fn run_groups(&self) -> &[PathBuf] {
        &self.run_groups
    }

    /// Makes a fresh run group and opens what init needs to move later
    /// programs there: the `Regroup` files and their descriptors. Removes
    /// the earlier run groups, whose runs are over and which no program
    /// joins before init takes the fresh one (a group some task of which
    /// the kernel is still releasing stays for the next regroup, or the
    /// drop).
    pub(crate) fn regroup(&mut self) -> Result<(CgroupFiles, Vec<OwnedFd>), CgroupError> {
        if self.version == CgroupVersion::V2 && self.run_groups_made == 0 {
            // Tasks in a v2 child count in it only with the controller
            // handed down; the group holds no task between runs, which the
            // kernel requires.
            write(&self.pids_dir.join("cgroup.subtree_control"), "+pids")?;
        }
        self.run_groups_made += 1;
        let name = format!("run{}", self.run_groups_made);
        let dir = make_group(self.fs.as_ref(), self.pids_dir.join(name))?;
        if let Err(error) = give_procs(&dir, self.owner) {
            self.run_groups.push(dir);
            return Err(error);
        }
        let fs = &self.fs;
        self.run_groups
            .retain(|older| fs.try_remove_group(older).is_err());
        self.run_groups.push(dir.clone());
        let mut files = Vec::new();
        let mut fds = Vec::new();
        for (fd, dir) in &self.kept_procs {
            fds.push(duplicate(fd, dir)?);
            files.push(CgroupFile::Procs);
        }
        let detached = match self.starts_in_dir {
            true => detached_group(&dir)?,
            false => None,
        };
        if let Some(dir) = detached {
            fds.push(dir);
            files.push(CgroupFile::Dir);
        } else {
            fds.push(open(&dir.join(join_file(self.version)), Access::Write)?);
            files.push(CgroupFile::Procs);
        }
        if self.counts_processes {
            fds.push(open(&dir.join("pids.peak"), Access::Read)?);
            files.push(CgroupFile::PidsPeak);
        }
        let version = self.version;
        Ok((CgroupFiles { version, files }, fds))
    }

    /// Which hierarchy the groups are in.
    pub(crate) fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Records that init could not be started in its group: it lives
    /// outside, and so programs move into theirs (`Procs`).
    pub(crate) fn leave_init_out(&mut self) {
        self.holds_init = false;
        self.starts_in_dir = false;
    }

    /// Whether init lives in one of the groups, which therefore cannot be
    /// removed while init has not exited.
    pub(crate) fn holds_init(&self) -> bool {
        self.holds_init
    }

    /// Leaves out ([`keep_what_init_knows`]), or replaces, the files an
    /// init that did not announce them in its `Hello` would reject (an
    /// older one named by `HUTCH_INIT`). Such an init gets the programs'
    /// group's `cgroup.procs` in place of its directory, and every program
    /// then moves in; so do later regroups.
    pub(crate) fn fit_to_init(
        &mut self,
        files: &mut CgroupFiles,
        fds: &mut Vec<OwnedFd>,
        init_features: u64,
    ) -> Result<(), CgroupError> {
        keep_what_init_knows(files, fds, init_features);
        if init_features & hutch_protocol::features::INIT_CGROUP_DIR == 0 {
            self.starts_in_dir = false;
            if let Some(at) = files.files.iter().position(|f| *f == CgroupFile::Dir) {
                fds[at] = open(&self.pids_dir.join("cgroup.procs"), Access::Write)?;
                files.files[at] = CgroupFile::Procs;
            }
        }
        Ok(())
    }
}

/// The group `dir` as a detached mount of its own, for init to create
/// processes in (`CLONE_INTO_CGROUP` takes any descriptor of the group's
/// directory): `..` stops at the group, so init, which holds it, reaches
/// neither another group nor anything of the host's file tree through it,
/// as it could through a plain descriptor of the directory. `None` where
/// this process may not make mounts (an unprivileged user) or cannot make
/// this one: then init gets the group's `cgroup.procs`, and programs move
/// in.
fn detached_group(dir: &Path) -> Result<Option<OwnedFd>, CgroupError> {
    use rustix::mount::{OpenTreeFlags, open_tree};
    match open_tree(
        rustix::fs::CWD,
        dir,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    ) {
        Ok(fd) => Ok(Some(fd)),
        // Out of descriptors or memory: so would the next step be.
        Err(
            e @ (rustix::io::Errno::MFILE | rustix::io::Errno::NFILE | rustix::io::Errno::NOMEM),
        ) => Err(CgroupError::File {
            path: dir.to_owned(),
            source: e.into(),
        }),
        // Not allowed (an unprivileged user, a security module, a seccomp
        // filter) or not possible on this mount: programs move in instead.
        Err(_) => Ok(None),
    }
}

/// The group init lives in, inside a v2 container's group.
const INIT_GROUP: &str = "init";

/// The group programs run in, beside [`INIT_GROUP`]; it carries the
/// container's limits and counters.
const PROGRAMS_GROUP: &str = "programs";

/// Gives the group `dir`'s `cgroup.procs` to `owner`, if any: the kernel
/// lets a process create another in a group (`CLONE_INTO_CGROUP`) only if
/// it may write that file, and the one of the group where its own and the
/// new one's meet.
fn give_procs(dir: &Path, owner: Option<u32>) -> Result<(), CgroupError> {
    let Some(owner) = owner else {
        return Ok(());
    };
    let path = dir.join("cgroup.procs");
    std::os::unix::fs::chown(&path, Some(owner), None)
        .map_err(|source| CgroupError::File { path, source })
}

/// The file of a v1 group a program writes `0` to, joining it: `tasks`,
/// which moves the writing thread alone. A program writes it as the one
/// thread of its process, so the whole process moves, as through
/// `cgroup.procs`; but a thread moving itself spares the kernel its global
/// thread-group lock, whose write side waits for an RCU grace period
/// (1.1 ms after 20 ms without a move, up to 14 ms after a longer pause:
/// `docs/performance.md`) unless another move came just before. v2 has no
/// such file: there a thread moves only within a threaded subtree.
const V1_JOIN_FILE: &str = "tasks";

/// The file of a group of `version` a program writes `0` to, joining it.
fn join_file(version: CgroupVersion) -> &'static str {
    match version {
        CgroupVersion::V1 => V1_JOIN_FILE,
        CgroupVersion::V2 => "cgroup.procs",
    }
}

/// Makes the group `dir`.
fn make_group(fs: &dyn CgroupFs, dir: PathBuf) -> Result<PathBuf, CgroupError> {
    match fs.make_group(&dir) {
        Ok(()) => Ok(dir),
        Err(source) => Err(CgroupError::Create { path: dir, source }),
    }
}

/// A read-only control file the kernel may not have: `None` when it is
/// missing.
fn open_if_there(path: &Path) -> Result<Option<OwnedFd>, CgroupError> {
    match open(path, Access::Read) {
        Err(CgroupError::File { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// A second descriptor of `fd`, the join file of the v1 group `dir`.
fn duplicate(fd: &OwnedFd, dir: &Path) -> Result<OwnedFd, CgroupError> {
    fd.try_clone().map_err(|source| CgroupError::File {
        path: dir.join(V1_JOIN_FILE),
        source,
    })
}

fn open(path: &Path, access: Access) -> Result<OwnedFd, CgroupError> {
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Write => options.write(true),
        Access::ReadWrite => options.read(true).write(true),
        Access::Path => options.read(true),
    };
    let flags = match access {
        Access::Path => libc::O_PATH | libc::O_DIRECTORY,
        _ => 0,
    };
    options
        .custom_flags(libc::O_CLOEXEC | flags)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::File {
            path: path.to_owned(),
            source,
        })
}

/// How to open a v2 `memory.peak`: for reading and writing where a write
/// resets it (Linux 6.12 and later), else for reading only. Before 6.12 the
/// file has no write bits and the kernel refuses to open it for writing,
/// even to root.
fn peak_access(path: &Path) -> Access {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o222 == 0 => Access::Read,
        _ => Access::ReadWrite,
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::File {
        path: path.to_owned(),
        source,
    })
}

/// The leaf below the root of a cgroup namespace that root's hutch moves
/// the root's processes into (see [`enable_controllers_at_root`]).
const NAMESPACE_LEAF: &str = "leaf";

/// [`enable_controllers`] at the root of the mounted hierarchy, which holds
/// the shared parent. The hierarchy's real root is exempt from the "no
/// internal processes" rule; the root of a cgroup namespace (a container's
/// `/sys/fs/cgroup`) is an ordinary group, which holds the container's
/// processes, hutch's among them, and so cannot hand out controllers. As
/// go-judge does in a container, root's hutch then moves every process of
/// that group into [`NAMESPACE_LEAF`] below it and enables the controllers:
/// the processes stay inside the container's group and under its limits.
fn enable_controllers_at_root(root: &Path, fs: &dyn CgroupFs) -> Result<(), CgroupError> {
    // Right after a move the kernel may still count the moved processes in
    // the root for a moment (crun retries the same way), and a process may
    // have started meanwhile: move again and retry a few times, a
    // millisecond apart.
    let mut moves = 0;
    loop {
        match enable_controllers(root) {
            Err(CgroupError::Controllers { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY)
                    && moves <= 20
                    && root.join("cgroup.type").exists()
                    && rustix::process::geteuid().is_root() =>
            {
                if moves > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                move_processes_into_leaf(root, fs)?;
                moves += 1;
            }
            other => return other,
        }
    }
}

/// Moves every process of the group `root` into its child
/// [`NAMESPACE_LEAF`], made if missing, until none is left (processes may
/// start while it moves them).
fn move_processes_into_leaf(root: &Path, fs: &dyn CgroupFs) -> Result<(), CgroupError> {
    let leaf = root.join(NAMESPACE_LEAF);
    if let Err(source) = fs.make_group(&leaf)
        && source.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(CgroupError::Create { path: leaf, source });
    }
    let procs = root.join("cgroup.procs");
    let join = leaf.join("cgroup.procs");
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CgroupError::File { path, source }
    };
    // Each pass moves what the last one saw; a process that a moved one
    // started meanwhile is moved by the next.
    for _ in 0..100 {
        let pids = std::fs::read_to_string(&procs).map_err(file_error(&procs))?;
        if pids.trim().is_empty() {
            return Ok(());
        }
        for pid in pids.split_whitespace() {
            match std::fs::write(&join, pid) {
                // It ended in the meantime.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                other => other.map_err(file_error(&join))?,
            }
        }
    }
    Ok(())
}

/// Makes sure the v2 parent hands the memory and pids controllers to its
/// children.
fn enable_controllers(parent: &Path) -> Result<(), CgroupError> {
    let path = parent.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&path).unwrap_or_default();
    let has = |name| enabled.split_whitespace().any(|c| c == name);
    if has("memory") && has("pids") {
        return Ok(());
    }
    std::fs::write(&path, "+memory +pids").map_err(|source| CgroupError::Controllers {
        hint: if source.raw_os_error() == Some(libc::EBUSY) {
            "a cgroup v2 parent that hands out controllers must hold no processes of its own: \
             name an empty delegated parent with --cgroup-parent, ContainerBuilder::cgroup_parent \
             or HUTCH_CGROUP_PARENT, or accept rusage accounting (--allow-rusage, \
             ContainerBuilder::allow_rusage)"
        } else {
            fix()
        },
        path,
        source,
    })
}

/// Leaves out the files an init that did not announce them in its `Hello`
/// would reject (an older one named by `HUTCH_INIT`): without
/// `memory.stat`, its resets reclaim every time (v1) or never (v2).
pub(crate) fn keep_what_init_knows(
    files: &mut CgroupFiles,
    fds: &mut Vec<OwnedFd>,
    init_features: u64,
) {
    use hutch_protocol::features::{INIT_MEMORY_STAT, INIT_V2_RECLAIM};
    let v2 = files.version == CgroupVersion::V2;
    let unknown = |file: &CgroupFile| match file {
        CgroupFile::MemoryStat if v2 => init_features & INIT_V2_RECLAIM == 0,
        CgroupFile::MemoryStat => init_features & INIT_MEMORY_STAT == 0,
        CgroupFile::Reclaim => init_features & INIT_V2_RECLAIM == 0,
        _ => false,
    };
    while let Some(at) = files.files.iter().position(unknown) {
        files.files.remove(at);
        fds.remove(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_a_cgroup_error_names_fits_who_runs_hutch() {
        let error = CgroupError::Create {
            path: "/sys/fs/cgroup/memory/x".into(),
            source: std::io::Error::from_raw_os_error(libc::EEXIST),
        };
        let text = error.to_string();
        if rustix::process::geteuid().is_root() {
            assert!(
                text.contains("check the cgroup parent") && !text.contains("run as root"),
                "{text}"
            );
        } else {
            assert!(text.contains("run as root"), "{text}");
        }
    }

    #[test]
    fn the_kernel_tells_a_cgroup2_directory_from_a_plain_one() {
        let fs = KernelCgroupFs;
        assert!(!fs.is_cgroup2(&std::env::temp_dir()).unwrap());
        assert!(!fs.is_cgroup2(Path::new("/proc")).unwrap());
        assert!(fs.is_cgroup2(Path::new("/no/such/directory")).is_err());
        // Every cgroup2 mount this process sees (the machines CI runs on
        // have one, hybrid or not).
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for mount in parse_mounts(&mountinfo)
            .iter()
            .filter(|m| m.fstype == "cgroup2")
        {
            assert!(fs.is_cgroup2(&mount.point).unwrap(), "{:?}", mount.point);
        }
    }

    const V1_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/jobs/a1\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const V1_MOUNTS: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:34 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 30 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_layout_is_found_from_proc() {
        let layout = CgroupLayout::from_proc(V1_CGROUP, V1_MOUNTS).unwrap();
        assert_eq!(
            layout,
            CgroupLayout::V1 {
                memory: "/sys/fs/cgroup/memory/jobs/a1".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct".into(),
                pids: "/sys/fs/cgroup/pids".into(),
            }
        );
    }

    #[test]
    fn missing_hierarchies_are_reported() {
        let mounts = "34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let err = CgroupLayout::from_proc(V1_CGROUP, mounts).unwrap_err();
        assert!(
            err.to_string().contains("no usable cgroup hierarchy"),
            "{err}"
        );
        assert!(err.to_string().contains("allow-rusage"), "{err}");
    }

    #[test]
    fn mount_roots_and_escapes_are_honoured() {
        let cgroups = "0::/user.slice/job\n";
        let mounts = "40 30 0:36 /user.slice /mnt/cg\\0402 rw - cgroup2 cgroup2 rw\n";
        // The unified mount has no controllers file here, so v2 is not
        // usable, and no v1 hierarchy exists.
        assert!(CgroupLayout::from_proc(cgroups, mounts).is_err());
        let parsed = parse_mounts(mounts);
        assert_eq!(parsed[0].point, PathBuf::from("/mnt/cg 2"));
        assert_eq!(parsed[0].root, "/user.slice");
    }
}

#[cfg(test)]
pub(crate) mod fake_tree {
    //! The host's side of both versions against a fake cgroup tree: plain
    //! directories whose groups get the control files a kernel would make.

    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub(crate) struct FakeFs {
        made: Mutex<Vec<PathBuf>>,
        removed: Mutex<Vec<PathBuf>>,
        /// Groups get `memory.reclaim` too, as on Linux 5.19 and later.
        reclaim: bool,
        /// Groups get `pids.peak` too, as on Linux 6.1 and later.
        peaks: bool,
    }

    impl FakeFs {
        fn with_reclaim() -> Self {
            FakeFs {
                reclaim: true,
                ..FakeFs::default()
            }
        }

        /// Groups get `pids.peak`, so their runs' peaks are counted.
        pub(crate) fn counting() -> Self {
            FakeFs {
                peaks: true,
                ..FakeFs::default()
            }
        }
    }

    const FILES: [&str; 20] = [
        "memory.current",
        "memory.stat",
        "memory.usage_in_bytes",
        "cgroup.procs",
        "tasks",
        "cpu.stat",
        "memory.peak",
        "memory.events",
        "memory.max",
        "memory.swap.max",
        "pids.max",
        "cpuacct.usage_user",
        "cpuacct.usage_sys",
        "cpuacct.usage",
        "memory.max_usage_in_bytes",
        "memory.oom_control",
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.force_empty",
        "memory.swappiness",
    ];

    impl CgroupFs for FakeFs {
        fn make_group(&self, dir: &Path) -> std::io::Result<()> {
            std::fs::create_dir(dir)?;
            for file in FILES {
                std::fs::write(dir.join(file), "0\n")?;
            }
            if self.reclaim {
                std::fs::write(dir.join("memory.reclaim"), "")?;
            }
            if self.peaks {
                std::fs::write(dir.join("pids.peak"), "0\n")?;
            }
            self.made.lock().unwrap().push(dir.to_owned());
            Ok(())
        }

        fn remove_group(&self, dir: &Path) -> std::io::Result<()> {
            std::fs::remove_dir_all(dir)?;
            self.removed.lock().unwrap().push(dir.to_owned());
            Ok(())
        }

        fn try_remove_group(&self, dir: &Path) -> std::io::Result<()> {
            self.remove_group(dir)
        }

        /// A fake tree is plain directories standing in for cgroup v2.
        fn is_cgroup2(&self, _dir: &Path) -> std::io::Result<bool> {
            Ok(true)
        }
    }

    #[test]
    fn a_regroup_makes_run_groups_where_tasks_are_counted_and_removes_old_ones() {
        for version in [CgroupVersion::V1, CgroupVersion::V2] {
            let root = temp_tree(&format!("regroup-{version:?}"));
            std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
            let layout = match version {
                CgroupVersion::V1 => {
                    for hierarchy in ["memory", "cpuacct", "pids"] {
                        std::fs::create_dir(root.join(hierarchy)).unwrap();
                    }
                    CgroupLayout::V1 {
                        memory: root.join("memory"),
                        cpuacct: root.join("cpuacct"),
                        pids: root.join("pids"),
                    }
                }
                CgroupVersion::V2 => CgroupLayout::V2 {
                    parent: root.clone(),
                },
            };
            let fs = Arc::new(FakeFs {
                peaks: true,
                ..FakeFs::default()
            });
            let (mut cgroup, files, fds) = ContainerCgroup::create(&layout, fs.clone()).unwrap();
            assert_eq!(files.files.last(), Some(&CgroupFile::PidsPeak));
            assert_eq!(fds.len(), files.files.len());
            assert!(cgroup.counts_processes());
            assert!(cgroup.run_groups().is_empty(), "none before a regroup");
            let counting = cgroup.dirs().last().unwrap().clone();
            let procs = match version {
                CgroupVersion::V1 => 3,
                CgroupVersion::V2 => 1,
            };
            let (files, fds) = cgroup.regroup().unwrap();
            let mut expected = vec![CgroupFile::Procs; procs];
            expected.push(CgroupFile::PidsPeak);
            assert_eq!(files.files, expected, "{version:?}");
            hutch_protocol::Request::Regroup(files)
                .check(fds.len())
                .unwrap();
            let first = counting.join("run1");
            assert_eq!(cgroup.run_groups(), std::slice::from_ref(&first));
            // The last two descriptors are the run group's, the others the
            // container's memory and cpuacct groups' (v1): their join files,
            // `tasks` on v1.
            let join = join_file(version);
            assert_eq!(identity(&fds[procs - 1]), identity_of(&first.join(join)));
            assert_eq!(identity(&fds[procs]), identity_of(&first.join("pids.peak")));
            if version == CgroupVersion::V1 {
                assert_eq!(join, "tasks");
                for (fd, dir) in fds.iter().zip(cgroup.dirs()).take(2) {
                    assert_eq!(identity(fd), identity_of(&dir.join("tasks")));
                }
            }
            let control = std::fs::read_to_string(counting.join("cgroup.subtree_control"));
            match version {
                CgroupVersion::V1 => assert!(control.is_err(), "v1 has no subtree_control"),
                CgroupVersion::V2 => assert_eq!(control.unwrap(), "+pids"),
            }
            drop(fds);
            // The next regroup removes the first run group, not the second.
            cgroup.regroup().unwrap();
            let second = counting.join("run2");
            assert_eq!(cgroup.run_groups(), std::slice::from_ref(&second));
            assert!(!first.exists() && second.is_dir());
            let dirs = cgroup.dirs().to_vec();
            drop(cgroup);
            let removed = fs.removed.lock().unwrap().clone();
            let mut expected = vec![first, second];
            expected.extend(dirs.into_iter().rev());
            assert_eq!(removed, expected, "run groups go before their container's");
            std::fs::remove_dir_all(root).unwrap();
        }
    }

    #[test]
    fn without_pids_peak_nothing_is_counted() {
        let (root, layout) = v2_tree("no-peak");
        let fs = Arc::new(FakeFs::default());
        let (cgroup, files, _fds) = ContainerCgroup::create(&layout, fs).unwrap();
        assert!(!files.files.contains(&CgroupFile::PidsPeak));
        assert!(!cgroup.counts_processes());
        drop(cgroup);
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A fake v2 hierarchy root named `name`, and the layout that makes
    /// container groups in it.
    pub(crate) fn v2_tree(name: &str) -> (PathBuf, CgroupLayout) {
        let root = temp_tree(name);
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let layout = CgroupLayout::V2 {
            parent: root.clone(),
        };
        (root, layout)
    }

    fn temp_tree(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hutch-fake-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn groups_of_gone_processes_are_removed_and_live_ones_kept() {
        let root = temp_tree("stale");
        let fs = FakeFs::default();
        let layout = CgroupLayout::V2 {
            parent: root.clone(),
        };
        let me = std::process::id();
        let started = start_time(me).unwrap();
        let ours = format!("{}0123456789abcdef", owner_prefix());
        // A pid no process has (above the kernel's largest pid_max), and
        // this process's pid with another start time (a reused pid).
        let gone = "hutch-4194305-77-0123456789abcdef".to_owned();
        let reused = format!("hutch-{me}-{}-0123456789abcdef", started + 1);
        for name in [
            &ours,
            &gone,
            &reused,
            &"hutch-0123456789abcdef".to_owned(),
            &"other".into(),
        ] {
            fs.make_group(&root.join(name)).unwrap();
        }
        assert_eq!(layout.remove_stale(&fs).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![ours, "hutch-0123456789abcdef".into(), "other".into()];
        expected.sort();
        assert_eq!(left, expected, "only groups of gone processes go");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_process_that_ended_is_dead_though_not_yet_reaped() {
        let line = |state: &str, threads: u32| {
            format!(
                "4242 (a (b) c) {state} 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 {threads} 0 \
                 98765 1000 10 0"
            )
        };
        let stat = |state, threads| ProcessStat::parse(&line(state, threads)).unwrap();
        assert_eq!(
            stat("S", 1),
            ProcessStat {
                state: 'S',
                threads: 1,
                start: 98765
            }
        );
        for live in ["R", "S", "D", "T", "t", "I"] {
            assert!(stat(live, 1).alive(), "{live}");
        }
        assert!(!stat("Z", 1).alive());
        assert!(!stat("X", 1).alive());
        // A leader gone by pthread_exit while another thread runs.
        assert!(stat("Z", 2).alive());
        assert_eq!(ProcessStat::parse("4242 (a) S 1"), None);
        assert_eq!(ProcessStat::parse("no parenthesis"), None);

        // A real one: a child that exited, not yet waited for.
        let root = temp_tree("zombie");
        let fs = FakeFs::default();
        let layout = CgroupLayout::V2 {
            parent: root.clone(),
        };
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = start_time(pid).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat_of(pid).is_some_and(|stat| stat.alive()) {
            assert!(std::time::Instant::now() < deadline, "true did not exit");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(start_time(pid), Some(started), "not reaped yet");
        let name = format!("hutch-{pid}-{started}-0123456789abcdef");
        fs.make_group(&root.join(&name)).unwrap();
        assert_eq!(layout.remove_stale(&fs).unwrap(), 1);
        assert!(!root.join(&name).exists());
        child.wait().unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_group_name_carries_its_owner() {
        assert_eq!(owner_of("hutch-12-345-00ff"), Some((12, 345)));
        assert_eq!(owner_of(owner_prefix()), None, "no random part");
        assert_eq!(owner_of("hutch-0123456789abcdef"), None);
        assert_eq!(owner_of("hutch-x-1-00"), None);
        let (pid, start) = owner_of(&format!("{}00", owner_prefix())).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(Some(start), start_time(pid));
    }

    #[test]
    fn v2_group_gets_controllers_files_and_is_removed() {
        let (root, layout) = v2_tree("v2");
        let fs = Arc::new(FakeFs::default());
        let (cgroup, files, fds) = ContainerCgroup::create(&layout, fs.clone()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids",
            "the parent hands memory and pids to its children"
        );
        assert_eq!(files.version, CgroupVersion::V2);
        assert_eq!(
            files.files,
            [
                CgroupFile::Procs,
                CgroupFile::CpuStat,
                CgroupFile::MemoryPeak,
                CgroupFile::OomEvents,
                CgroupFile::MemoryLimit,
                CgroupFile::SwapLimit,
                CgroupFile::PidsLimit,
                CgroupFile::MemoryUsage,
            ]
        );
        assert_eq!(fds.len(), files.files.len());
        let files_sent = files.clone();
        hutch_protocol::Request::Cgroup(files)
            .check(fds.len())
            .unwrap();
        // The container's group, with init's and the programs' inside.
        let [top, init, programs] = cgroup.dirs() else {
            panic!("three groups: {:?}", cgroup.dirs())
        };
        let (top, init, programs) = (top.clone(), init.clone(), programs.clone());
        assert!(top.starts_with(&root) && top.is_dir());
        assert_eq!(init, top.join("init"));
        assert_eq!(programs, top.join("programs"));
        assert_eq!(
            std::fs::read_to_string(top.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids",
            "the container's group hands memory and pids to init's and the programs'"
        );
        assert_fds_match(&programs, &files_sent, &fds);
        drop(cgroup);
        assert_eq!(*fs.removed.lock().unwrap(), [programs, init, top.clone()]);
        assert!(!top.exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    /// The file each descriptor is open on, as (device, inode).
    fn identity(fd: &OwnedFd) -> (u64, u64) {
        let stat = rustix::fs::fstat(fd).unwrap();
        (stat.st_dev, stat.st_ino)
    }

    fn identity_of(path: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    /// The v2 control file of each kind.
    fn v2_file_name(file: CgroupFile) -> &'static str {
        match file {
            CgroupFile::Procs => "cgroup.procs",
            CgroupFile::CpuStat => "cpu.stat",
            CgroupFile::MemoryPeak => "memory.peak",
            CgroupFile::OomEvents => "memory.events",
            CgroupFile::MemoryLimit => "memory.max",
            CgroupFile::SwapLimit => "memory.swap.max",
            CgroupFile::PidsLimit => "pids.max",
            CgroupFile::MemoryUsage => "memory.current",
            CgroupFile::MemoryStat => "memory.stat",
            CgroupFile::Reclaim => "memory.reclaim",
            other => panic!("{other:?} is no v2 file"),
        }
    }

    /// Asserts that descriptor `i` is open on the file `files[i]` names in
    /// the group `dir`.
    fn assert_fds_match(dir: &Path, files: &CgroupFiles, fds: &[OwnedFd]) {
        assert_eq!(files.files.len(), fds.len());
        for (file, fd) in files.files.iter().zip(fds) {
            assert_eq!(
                identity(fd),
                identity_of(&dir.join(v2_file_name(*file))),
                "the descriptor given for {file:?}"
            );
        }
    }

    fn copies(fds: &[OwnedFd]) -> Vec<OwnedFd> {
        fds.iter().map(|fd| fd.try_clone().unwrap()).collect()
    }

    const V2_FILES: [CgroupFile; 8] = [
        CgroupFile::Procs,
        CgroupFile::CpuStat,
        CgroupFile::MemoryPeak,
        CgroupFile::OomEvents,
        CgroupFile::MemoryLimit,
        CgroupFile::SwapLimit,
        CgroupFile::PidsLimit,
        CgroupFile::MemoryUsage,
    ];

    #[test]
    fn v2_group_with_memory_reclaim_gets_memory_stat_and_reclaim_last() {
        let (root, layout) = v2_tree("v2-reclaim");
        let (cgroup, files, fds) =
            ContainerCgroup::create(&layout, Arc::new(FakeFs::with_reclaim())).unwrap();
        let mut expected = V2_FILES.to_vec();
        expected.extend([CgroupFile::MemoryStat, CgroupFile::Reclaim]);
        assert_eq!(files.files, expected);
        let dir = cgroup.pids_dir.clone();
        assert_fds_match(&dir, &files, &fds);
        // memory.stat is read, memory.reclaim written.
        let access =
            |fd: &OwnedFd| rustix::fs::fcntl_getfl(fd).unwrap() & rustix::fs::OFlags::RWMODE;
        assert_eq!(access(&fds[8]), rustix::fs::OFlags::RDONLY);
        assert_eq!(access(&fds[9]), rustix::fs::OFlags::WRONLY);
        hutch_protocol::Request::Cgroup(files)
            .check(fds.len())
            .unwrap();
        drop(cgroup);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn v2_group_without_memory_reclaim_gets_neither_memory_stat_nor_reclaim() {
        let (root, layout) = v2_tree("v2-no-reclaim");
        // FakeFs::default() makes memory.stat but no memory.reclaim, as
        // kernels before 5.19 do.
        let (cgroup, files, fds) =
            ContainerCgroup::create(&layout, Arc::new(FakeFs::default())).unwrap();
        assert!(cgroup.pids_dir.join("memory.stat").exists());
        assert_eq!(files.files, V2_FILES);
        assert_fds_match(&cgroup.pids_dir, &files, &fds);
        drop(cgroup);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_init_without_the_v2_reclaim_bit_gets_neither_memory_stat_nor_reclaim() {
        use hutch_protocol::features::{INIT_COPY, INIT_KNOWN, INIT_MEMORY_STAT, INIT_V2_RECLAIM};
        let (root, layout) = v2_tree("v2-reclaim-older-init");
        let (cgroup, files, fds) =
            ContainerCgroup::create(&layout, Arc::new(FakeFs::with_reclaim())).unwrap();
        let dir = cgroup.pids_dir.clone();
        // An init of before the bit (INIT_MEMORY_STAT alone says nothing
        // of a v2 memory.stat), and one that knows nothing.
        for features in [INIT_MEMORY_STAT | INIT_COPY, INIT_MEMORY_STAT, 0] {
            let mut older = files.clone();
            let mut older_fds = copies(&fds);
            keep_what_init_knows(&mut older, &mut older_fds, features);
            assert_eq!(older.files, V2_FILES, "features {features:#x}");
            assert_fds_match(&dir, &older, &older_fds);
            hutch_protocol::Request::Cgroup(older)
                .check(older_fds.len())
                .unwrap();
        }
        // An init with the bit, with or without the others, keeps both.
        for features in [INIT_KNOWN, INIT_V2_RECLAIM] {
            let mut current = files.clone();
            let mut current_fds = copies(&fds);
            keep_what_init_knows(&mut current, &mut current_fds, features);
            assert_eq!(current, files, "features {features:#x}");
            assert_fds_match(&dir, &current, &current_fds);
        }
        drop(cgroup);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn init_s_host_uid_gets_the_procs_files_of_the_groups_it_starts_programs_in() {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            println!("not root: no file can be given to another uid; this test says nothing");
            return;
        }
        let (root, layout) = v2_tree("v2-owner");
        let owner = 1_879_048_192;
        let (mut cgroup, init_group) =
            ContainerCgroup::begin(&layout, Arc::new(FakeFs::counting()), Some(owner)).unwrap();
        assert!(init_group.is_none(), "a fake tree cannot take init");
        cgroup.finish(&layout).unwrap();
        cgroup.regroup().unwrap();
        let uid = |dir: &Path| std::fs::metadata(dir.join("cgroup.procs")).unwrap().uid();
        let [top, init, programs] = cgroup.dirs() else {
            panic!("three groups: {:?}", cgroup.dirs())
        };
        let run = &cgroup.run_groups()[0];
        // Where init's group and the programs' meet, the programs' group
        // and its run groups: what the kernel checks when init creates a
        // process in them.
        for dir in [top, programs, run] {
            assert_eq!(uid(dir), owner, "{}", dir.display());
        }
        assert_eq!(uid(init), 0, "init's own group stays root's");
        drop(cgroup);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_init_without_the_dir_bit_gets_the_programs_group_s_procs_file_then_and_later() {
        use hutch_protocol::features::{INIT_CGROUP_DIR, INIT_KNOWN};
        if !rustix::process::geteuid().is_root() {
            println!("not root: no detached mount of a group can be made; this test says nothing");
            return;
        }
        for features in [INIT_KNOWN, INIT_KNOWN & !INIT_CGROUP_DIR] {
            let (root, layout) = v2_tree("v2-dir-older-init");
            let (mut cgroup, _) =
                ContainerCgroup::begin(&layout, Arc::new(FakeFs::counting()), None).unwrap();
            // As on a real cgroup2 file system.
            cgroup.starts_in_dir = true;
            let (mut files, mut fds) = cgroup.finish(&layout).unwrap();
            let programs = cgroup.pids_dir.clone();
            assert_eq!(files.files[0], CgroupFile::Dir);
            assert_eq!(identity(&fds[0]), identity_of(&programs));
            // A detached mount of the group alone: `..` stays in it, so
            // init reaches nothing above it.
            let above = rustix::fs::openat(
                &fds[0],
                "../..",
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            assert_eq!(identity(&above), identity_of(&programs));
            cgroup.fit_to_init(&mut files, &mut fds, features).unwrap();
            let (regroup, regroup_fds) = cgroup.regroup().unwrap();
            let run = cgroup.run_groups()[0].clone();
            if features & INIT_CGROUP_DIR != 0 {
                assert_eq!(files.files[0], CgroupFile::Dir);
                assert_eq!(regroup.files, [CgroupFile::Dir, CgroupFile::PidsPeak]);
                assert_eq!(identity(&regroup_fds[0]), identity_of(&run));
            } else {
                assert_eq!(files.files[0], CgroupFile::Procs);
                assert_eq!(
                    identity(&fds[0]),
                    identity_of(&programs.join("cgroup.procs"))
                );
                assert_eq!(regroup.files, [CgroupFile::Procs, CgroupFile::PidsPeak]);
                assert_eq!(
                    identity(&regroup_fds[0]),
                    identity_of(&run.join("cgroup.procs"))
                );
            }
            hutch_protocol::Request::Cgroup(files)
                .check(fds.len())
                .unwrap();
            hutch_protocol::Request::Regroup(regroup)
                .check(regroup_fds.len())
                .unwrap();
            drop(cgroup);
            std::fs::remove_dir_all(root).unwrap();
        }
    }

    /// A fake cgroup2 mount at `<tree>/cg`: its root and the group `own`
    /// below it (a relative path, "" for the root), with the memory and
    /// pids controllers offered and `procs` in `own`'s `cgroup.procs`.
    /// Returns the mount point and the mountinfo line of the mount.
    fn fake_cgroup2(tree: &Path, own: &str, procs: &str) -> (PathBuf, String) {
        let mount = tree.join("cg");
        let dir = mount.join(own);
        std::fs::create_dir_all(&dir).unwrap();
        for group in [&mount, &dir] {
            std::fs::write(group.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
            std::fs::write(group.join("cgroup.procs"), "").unwrap();
        }
        if dir != mount {
            // Every group but the hierarchy's root has a type.
            std::fs::write(dir.join("cgroup.type"), "domain\n").unwrap();
        }
        std::fs::write(dir.join("cgroup.procs"), procs).unwrap();
        let mountinfo = format!(
            "25 1 0:22 / / rw - ext4 /dev/vda1 rw\n\
             40 30 0:36 / {} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 \
             rw,nsdelegate,memory_recursiveprot\n",
            mount.display()
        );
        (mount, mountinfo)
    }

    #[test]
    fn a_process_at_the_root_of_the_hierarchy_makes_groups_there() {
        // The root group is exempt from the no-internal-processes rule, so
        // its processes do not keep it from handing controllers down.
        let tree = temp_tree("v2-parent-root");
        let (mount, mountinfo) = fake_cgroup2(&tree, "", "1\n2\n");
        assert_eq!(
            CgroupLayout::from_proc("0::/\n", &mountinfo).unwrap(),
            CgroupLayout::V2 { parent: mount }
        );
        std::fs::remove_dir_all(tree).unwrap();
    }

    #[test]
    fn a_group_with_processes_is_no_parent_so_root_uses_the_shared_hutch_group() {
        let tree = temp_tree("v2-parent-busy");
        let (mount, mountinfo) = fake_cgroup2(&tree, "user.slice/session-1.scope", "4242\n4243\n");
        let layout =
            CgroupLayout::from_proc("0::/user.slice/session-1.scope\n", &mountinfo).unwrap();
        if rustix::process::geteuid().is_root() {
            assert_eq!(
                layout,
                CgroupLayout::V2 {
                    parent: mount.join("hutch")
                },
                "root's groups go to <mount>/hutch"
            );
        } else {
            // Not root (CI runs these tests as root): the process keeps its
            // own group, whose build then fails with the EBUSY hint.
            assert_eq!(
                layout,
                CgroupLayout::V2 {
                    parent: mount.join("user.slice/session-1.scope")
                },
                "an unprivileged process keeps its own group"
            );
        }
        std::fs::remove_dir_all(tree).unwrap();
    }

    #[test]
    fn the_root_of_a_cgroup_namespace_is_no_hierarchy_root() {
        // Inside a cgroup namespace (a container's), the process's group is
        // the mount's root yet an ordinary group of the real hierarchy: it
        // has a type, and the no-internal-processes rule binds it.
        let tree = temp_tree("v2-parent-cgroupns");
        let (mount, mountinfo) = fake_cgroup2(&tree, "", "1\n");
        std::fs::write(mount.join("cgroup.type"), "domain\n").unwrap();
        let layout = CgroupLayout::from_proc("0::/\n", &mountinfo).unwrap();
        let expected = if rustix::process::geteuid().is_root() {
            mount.join("hutch")
        } else {
            // Not root (CI runs these tests as root): the process keeps its
            // own group, whose build then fails with the EBUSY hint.
            mount.clone()
        };
        assert_eq!(layout, CgroupLayout::V2 { parent: expected });
        std::fs::remove_dir_all(tree).unwrap();
    }

    #[test]
    fn a_missing_parent_is_named_and_not_made() {
        let tree = temp_tree("v2-missing-parent");
        let (mount, _) = fake_cgroup2(&tree, "", "1\n");
        // A misspelt --cgroup-parent, and the shared parent's name one
        // level too deep: neither is hutch's to make.
        for missing in [mount.join("jduge"), mount.join("judge/hutch")] {
            let layout = CgroupLayout::V2 {
                parent: missing.clone(),
            };
            let error = ContainerCgroup::create(&layout, Arc::new(FakeFs::default())).unwrap_err();
            assert!(
                matches!(&error, CgroupError::NoParent { path } if *path == missing),
                "{error:?}"
            );
            assert!(
                error.to_string().contains("does not exist")
                    && error.to_string().contains("--cgroup-parent"),
                "{error}"
            );
            assert!(!missing.exists(), "nothing was made");
        }
        // v1 as well, in each hierarchy.
        let v1 = CgroupLayout::V1 {
            memory: tree.join("memory/gone"),
            cpuacct: tree.join("cpuacct/gone"),
            pids: tree.join("pids/gone"),
        };
        let error = ContainerCgroup::create(&v1, Arc::new(FakeFs::default())).unwrap_err();
        assert!(
            matches!(&error, CgroupError::NoParent { path } if *path == tree.join("memory/gone")),
            "{error:?}"
        );
        std::fs::remove_dir_all(tree).unwrap();
    }

    #[test]
    fn the_shared_parent_is_made_at_the_first_build_with_controllers_enabled() {
        let tree = temp_tree("v2-shared-parent");
        let (mount, _) = fake_cgroup2(&tree, "", "1\n");
        std::fs::write(mount.join("cgroup.subtree_control"), "cpu\n").unwrap();
        let parent = mount.join("hutch");
        let layout = CgroupLayout::V2 {
            parent: parent.clone(),
        };
        let fs = Arc::new(FakeFs::default());
        let (first, _, _) = ContainerCgroup::create(&layout, fs.clone()).unwrap();
        assert_eq!(
            std::fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids",
            "the root hands memory and pids to the shared parent"
        );
        assert!(parent.is_dir());
        assert_eq!(
            std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids",
            "and the shared parent to the container groups"
        );
        assert_eq!(first.dirs()[0].parent(), Some(parent.as_path()));
        // A second build, of this process or another, uses it as it is.
        let (second, _, _) = ContainerCgroup::create(&layout, fs.clone()).unwrap();
        assert_eq!(second.dirs()[0].parent(), Some(parent.as_path()));
        assert_ne!(first.dirs(), second.dirs());
        drop((first, second));
        // The shared parent, made through the cgroup file system, outlives
        // the containers.
        assert!(fs.made.lock().unwrap().contains(&parent));
        assert!(parent.is_dir());
        let groups = std::fs::read_dir(&parent)
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().file_type().unwrap().is_dir())
            .count();
        assert_eq!(groups, 0, "no container group is left in it");
        std::fs::remove_dir_all(tree).unwrap();
    }

    #[test]
    fn v2_parent_with_controllers_enabled_is_left_alone() {
        let root = temp_tree("v2-enabled");
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        let layout = CgroupLayout::V2 {
            parent: root.clone(),
        };
        let made = ContainerCgroup::create(&layout, Arc::new(FakeFs::default())).unwrap();
        drop(made);
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "cpu memory pids\n"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn v1_groups_in_every_hierarchy() {
        let root = temp_tree("v1");
        let layout = CgroupLayout::V1 {
            memory: root.join("memory"),
            cpuacct: root.join("cpuacct"),
            pids: root.join("pids"),
        };
        for dir in ["memory", "cpuacct", "pids"] {
            std::fs::create_dir(root.join(dir)).unwrap();
        }
        let fs = Arc::new(FakeFs::default());
        let (cgroup, files, fds) = ContainerCgroup::create(&layout, fs.clone()).unwrap();
        assert_eq!(files.version, CgroupVersion::V1);
        // A program joins each group by writing to its `tasks`: as the one
        // thread of its process it moves the process, without the kernel's
        // global lock that `cgroup.procs` takes.
        let joins: Vec<&OwnedFd> = files
            .files
            .iter()
            .zip(&fds)
            .filter(|(file, _)| **file == CgroupFile::Procs)
            .map(|(_, fd)| fd)
            .collect();
        assert_eq!(joins.len(), 3);
        for (fd, dir) in joins.into_iter().zip(cgroup.dirs()) {
            assert_eq!(identity(fd), identity_of(&dir.join("tasks")), "{dir:?}");
        }
        assert!(
            files.files.contains(&CgroupFile::SwapLimit),
            "memsw exists in the fake tree"
        );
        assert!(
            files.files.contains(&CgroupFile::ForceEmpty)
                && files.files.contains(&CgroupFile::MemoryStat),
            "a reset reclaims, when memory.stat shows cache"
        );
        let mut older = files.clone();
        let mut older_fds: Vec<OwnedFd> = fds.iter().map(|fd| fd.try_clone().unwrap()).collect();
        keep_what_init_knows(&mut older, &mut older_fds, 0);
        assert!(!older.files.contains(&CgroupFile::MemoryStat));
        assert_eq!(older.files.len() + 1, files.files.len());
        hutch_protocol::Request::Cgroup(older)
            .check(older_fds.len())
            .unwrap();
        let mut current = files.clone();
        let mut current_fds: Vec<OwnedFd> = fds.iter().map(|fd| fd.try_clone().unwrap()).collect();
        keep_what_init_knows(
            &mut current,
            &mut current_fds,
            hutch_protocol::features::INIT_KNOWN,
        );
        assert_eq!(current, files);
        hutch_protocol::Request::Cgroup(files)
            .check(fds.len())
            .unwrap();
        assert_eq!(cgroup.dirs().len(), 3);
        drop(cgroup);
        assert_eq!(fs.removed.lock().unwrap().len(), 3);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_read_only_peak_is_opened_for_reading() {
        use std::os::unix::fs::PermissionsExt;
        let root = temp_tree("peak");
        let peak = root.join("memory.peak");
        std::fs::write(&peak, "0\n").unwrap();
        assert!(matches!(peak_access(&peak), Access::ReadWrite));
        // Linux before 6.12: no write bits, no reset.
        std::fs::set_permissions(&peak, std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(peak_access(&peak), Access::Read));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unwritable_parent_names_the_fix() {
        // A directory that is no cgroup: nothing in it can be written.
        let layout = CgroupLayout::V2 {
            parent: "/proc".into(),
        };
        let err = ContainerCgroup::create(&layout, Arc::new(KernelCgroupFs)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("allow_rusage") && text.contains("cgroup_parent"),
            "{text}"
        );
    }

    #[test]
    fn a_v2_parent_that_is_no_cgroup2_directory_is_refused_and_left_untouched() {
        let tree = temp_tree("v2-not-cgroup2");
        let plain = tree.join("plain");
        std::fs::create_dir(&plain).unwrap();
        // A plain directory named as the parent, and a plain directory that
        // looks like a hierarchy's root under the shared parent's name.
        let (mount, _) = fake_cgroup2(&tree, "", "1\n");
        let entries = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let before = entries(&mount);
        for (parent, named) in [(plain.clone(), &plain), (mount.join("hutch"), &mount)] {
            let layout = CgroupLayout::V2 { parent };
            let error = ContainerCgroup::create(&layout, Arc::new(KernelCgroupFs)).unwrap_err();
            assert!(
                matches!(&error, CgroupError::NotCgroup2 { path, source: None } if path == named),
                "{error:?}"
            );
            let text = error.to_string();
            assert!(
                text.contains(&format!("{} is not a", named.display()))
                    && text.contains("cgroup v2"),
                "{text}"
            );
        }
        assert!(entries(&plain).is_empty(), "nothing was made in it");
        assert_eq!(entries(&mount), before, "nothing was made in it");
        std::fs::remove_dir_all(tree).unwrap();
    }

    #[test]
    fn a_parent_is_joined_below_each_hierarchy() {
        let layout = CgroupLayout::V1 {
            memory: "/cg/memory/a".into(),
            cpuacct: "/cg/cpuacct".into(),
            pids: "/cg/pids".into(),
        };
        assert_eq!(
            layout.with_parent(Path::new("/judge")),
            CgroupLayout::V1 {
                memory: "/cg/memory/a/judge".into(),
                cpuacct: "/cg/cpuacct/judge".into(),
                pids: "/cg/pids/judge".into(),
            }
        );
        let v2 = CgroupLayout::V2 {
            parent: "/cg/x".into(),
        };
        assert_eq!(
            v2.with_parent(Path::new("/sys/fs/cgroup/judge")),
            CgroupLayout::V2 {
                parent: "/sys/fs/cgroup/judge".into()
            }
        );
    }
}
