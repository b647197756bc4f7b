//! [`ContainerBuilder`]: what a container looks like, and starting one.
//!
//! Starting a container, in order (each step has its own [`BuildError`]):
//!
//! 1. Get the init executable (embedded memfd, or `HUTCH_INIT`).
//! 2. Make the socket pair, the release pipe and the error pipe.
//! 3. `clone3` into the new namespaces; the child waits on the release pipe.
//! 4. Write the child's uid and gid maps, then release it.
//! 5. Read the error pipe: end of file means init is running.
//! 6. Handshake (protocol version), then send the configuration.

use std::ffi::{CString, c_char};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hutch_protocol::{
    CgroupFiles, Configure, FileSystem, Hello, Mount, MountFlags, PROTOCOL_VERSION, Reply, Request,
    SymlinkItem, features,
};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::cgroup::{CgroupError, CgroupFs, CgroupLayout, ContainerCgroup, KernelCgroupFs};
use crate::channel::Channel;
use crate::container::{Container, ContainerError};
use crate::init_binary::{InitBinaryError, init_executable};
use crate::sys::{self, ChildStep, InitChild};

/// The environment variable that names the parent of container cgroups
/// when [`ContainerBuilder::cgroup_parent`] was not called. On cgroup v2 a
/// group that holds processes cannot hand controllers to children, so the
/// parent must be a group without processes of its own: for an unprivileged
/// user, a delegated subtree whose user runs in a leaf below it.
pub const CGROUP_PARENT_VAR: &str = "HUTCH_CGROUP_PARENT";

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid; nothing was started.
    #[error("invalid container configuration")]
    InvalidConfig(#[source] hutch_protocol::ValidationError),

    /// The init executable is not available.
    #[error(transparent)]
    InitBinary(#[from] InitBinaryError),
    /// A socket or pipe could not be made.
    #[error("cannot create the {what}")]
    Plumbing {
        /// Which.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `clone3` refused to create the container's process.
    #[error("cannot create the container process (clone3): {hint}")]
    Clone {
        /// What to check.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No block of host ids was free for the container (built as root
    /// with the default id map; see [`ContainerBuilder::id_map`]).
    #[error("cannot give the container host ids of its own")]
    IdBlock(#[source] crate::ids::IdsError),
    /// The uid or gid map could not be written.
    #[error("cannot write {file} of the container (map {map:?})")]
    IdMap {
        /// The file.
        file: String,
        /// The map written.
        map: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The container's process failed before init ran.
    #[error("the container process failed while {step}")]
    Child {
        /// The step.
        step: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Init did not complete the handshake.
    #[error("handshake with the container's init failed")]
    Handshake(#[source] Box<ContainerError>),
    /// Init speaks another protocol version.
    #[error(
        "the container's init speaks protocol version {found}, this host speaks {PROTOCOL_VERSION}"
    )]
    Version {
        /// Init's version.
        found: u16,
    },
    /// Init could not set the container up.
    #[error("configuring the container failed")]
    Configure(#[source] Box<ContainerError>),
    /// No cgroup could be made, and rusage accounting was not accepted.
    #[error("cannot give the container a cgroup")]
    Cgroup(#[source] CgroupError),
    /// Init did not make the network namespace the host asked it for (an
    /// older init); `build` then makes it with the clone instead.
    #[error("the container's init does not make network namespaces")]
    NoNetByInit,
    /// The programs' uid or gid ([`ContainerBuilder::user`]) is outside the
    /// id map, so no host id stands for it.
    #[error("container {what} {id} is outside the id map (container ids 0 to {last})")]
    UnmappedUser {
        /// `uid` or `gid`.
        what: &'static str,
        /// The id.
        id: u32,
        /// The last container id mapped.
        last: u32,
    },
    /// A mount of the caller's ([`ContainerBuilder::bind`],
    /// [`ContainerBuilder::mount`]) would hide a mount the container makes
    /// itself, or lies inside one where nothing may be mounted; nothing was
    /// started.
    #[error("cannot mount onto {target}")]
    MountTarget {
        /// The mount's target, as given.
        target: String,
        /// What it collides with.
        #[source]
        clash: MountClash,
    },
    /// The work directory ([`ContainerBuilder::workdir`]) would hide a
    /// mount the container makes itself, or lies inside one; nothing was
    /// started.
    #[error("cannot make the work directory at {workdir}")]
    Workdir {
        /// The work directory, as given.
        workdir: String,
        /// What it collides with.
        #[source]
        clash: MountClash,
    },
    /// The work directory is not an absolute path.
    #[error("the work directory {workdir:?} is not an absolute path")]
    WorkdirNotAbsolute {
        /// The work directory, as given.
        workdir: String,
    },
}

/// How a path of the caller's (a mount's target, the work directory)
/// collides with a mount the container makes itself: its root, the work
/// directory, `/tmp`, `/dev/shm`, `/proc`, the devices and their directory,
/// the symbolic links of `/dev`, and, for the work directory only, the
/// default read-only binds (`/usr`, `/lib`, …), which a mount of the
/// caller's may replace or cover. Where the container mounts nothing (no
/// mount namespace), nothing collides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountClash {
    /// The path is one of the container's own mounts, or a directory
    /// holding one, which a mount there would hide.
    #[error("it would hide the container's {what} at {at}")]
    Hides {
        /// What the container has there: `root`, `work directory`, `proc`,
        /// `device`, ….
        what: &'static str,
        /// Where.
        at: String,
    },
    /// The path lies inside one of the container's own mounts where
    /// nothing may be mounted (`/proc`, the devices' directory, the work
    /// directory), or, for the work directory, inside one mounted after it
    /// (`/tmp`), which would hide it.
    #[error("it lies inside the container's {what} at {at}")]
    Inside {
        /// What the container has there.
        what: &'static str,
        /// Where.
        at: String,
    },
}

/// The tmpfs mounts every container has besides its work directory,
/// emptied after each run with it.
const SCRATCH: [&str; 2] = ["/tmp", "/dev/shm"];

/// A mount the container makes itself, for [`MountClash`].
#[derive(Debug, Clone, Copy)]
struct OwnMount<'a> {
    /// What it is, for messages.
    what: &'static str,
    /// Where.
    at: &'a str,
    /// Whether a mount of the caller's may go inside it (a read-only bind
    /// of the host's, such as `/usr`).
    open: bool,
}

/// The components of an absolute path: `/a//b/./c/` is `a`, `b`, `c`.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect()
}

/// Where `mount` goes.
fn mount_target(mount: &Mount) -> &str {
    match mount {
        Mount::Bind { target, .. }
        | Mount::Tmpfs { target, .. }
        | Mount::Proc { target, .. }
        | Mount::Device { target, .. } => target,
    }
}

/// How `path` collides with one of `own`, the first that it does.
fn clash(path: &str, own: &[OwnMount<'_>]) -> Option<MountClash> {
    let path = components(path);
    if path.is_empty() {
        return Some(MountClash::Hides {
            what: "root",
            at: "/".into(),
        });
    }
    own.iter().find_map(|mount| {
        let at = components(mount.at);
        let (what, shown) = (mount.what, mount.at.to_owned());
        if at.starts_with(&path) {
            Some(MountClash::Hides { what, at: shown })
        } else if path.starts_with(&at) && !mount.open {
            Some(MountClash::Inside { what, at: shown })
        } else {
            None
        }
    })
}

/// Which namespaces a container gets. All are on by default; each can be
/// turned off, with these consequences:
///
/// - **mount** off: programs see the host's file system as it is; no mount
///   is made (the builder's mounts, symbolic links and masks are dropped) and
///   the work directory must be an existing host directory
///   ([`ContainerBuilder::workdir`]).
/// - **PID** off: programs see the host's processes; init, no longer PID 1,
///   becomes a child subreaper and ends each run by killing its children
///   until none is left. No `/proc` is mounted (a user namespace may not
///   mount the host's PID namespace's `proc`).
/// - **user** off: init runs as the caller (root is then needed), without id
///   mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    /// User namespace (`CLONE_NEWUSER`). Needed when not root.
    pub user: bool,
    /// Mount namespace (`CLONE_NEWNS`). Needed for the container's file
    /// system.
    pub mount: bool,
    /// PID namespace (`CLONE_NEWPID`).
    pub pid: bool,
    /// UTS namespace: host and domain name (`CLONE_NEWUTS`).
    pub uts: bool,
    /// IPC namespace (`CLONE_NEWIPC`). Init makes this one itself, at its
    /// start, and empties it after every run; where it cannot (no mount
    /// namespace to mount the message queue file system in), every run gets
    /// a fresh one. Programs therefore never share the host's IPC objects,
    /// and turning this off changes nothing.
    pub ipc: bool,
    /// Network namespace: no interface but a down loopback (`CLONE_NEWNET`).
    pub net: bool,
    /// Cgroup namespace (`CLONE_NEWCGROUP`).
    pub cgroup: bool,
}

impl Default for Namespaces {
    fn default() -> Self {
        Self {
            user: true,
            mount: true,
            pid: true,
            uts: true,
            ipc: true,
            net: true,
            cgroup: true,
        }
    }
}

impl Namespaces {
    fn clone_flags(self) -> u64 {
        [
            (self.user, libc::CLONE_NEWUSER),
            (self.mount, libc::CLONE_NEWNS),
            (self.pid, libc::CLONE_NEWPID),
            (self.uts, libc::CLONE_NEWUTS),
            (self.net, libc::CLONE_NEWNET),
            (self.cgroup, libc::CLONE_NEWCGROUP),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0u64, |flags, (_, flag)| flags | flag as u64)
    }
}

/// How container ids map to host ids: container ids `0..count` are host ids
/// `host_uid..host_uid + count` (and likewise for groups).
///
/// Built as root, the container's user namespace is owned by `host_uid`
/// (unless it is 0), so that the per-user quotas its programs take are
/// not root's (`docs/architecture.md`, "Ids"). A process of the host's own
/// user namespace running as `host_uid` holds every capability inside the
/// container's namespaces: map to ids no host account uses, as the
/// default does.
///
/// Without [`ContainerBuilder::id_map`], a container built as root with
/// its own PID namespace (the default) gets a map of its own: [`ID_BLOCK_LEN`](crate::ID_BLOCK_LEN) ids from a block
/// no other live container holds ([`ID_BLOCKS_FIRST`](crate::ID_BLOCKS_FIRST)
/// on), so that per-user quotas (pipe buffers, epoll watches, descriptors in
/// flight, pending signals) are not shared between containers. A map given
/// explicitly is used as it is, by every container the builder makes; so is
/// [`IdMap::ROOT_DEFAULT`] by containers without a PID namespace, whose
/// programs may outlive them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// Host uid of container uid 0.
    pub host_uid: u32,
    /// Host gid of container gid 0.
    pub host_gid: u32,
    /// How many ids are mapped.
    pub count: u32,
}

impl IdMap {
    /// 65536 ids from host id 100000, none of them privileged on the host:
    /// the default as root before each container got a block of its own.
    /// Given to [`ContainerBuilder::id_map`], every container of the
    /// builder shares it, and with it its per-user quotas.
    pub const ROOT_DEFAULT: IdMap = IdMap {
        host_uid: 100_000,
        host_gid: 100_000,
        count: 65_536,
    };

    /// A block of host ids' map: [`ID_BLOCK_LEN`](crate::ID_BLOCK_LEN) ids
    /// from host id `first`, for users and groups alike.
    const fn block_from(first: u32) -> IdMap {
        IdMap {
            host_uid: first,
            host_gid: first,
            count: crate::ids::ID_BLOCK_LEN,
        }
    }

    /// The only map an unprivileged caller may write: container root is the
    /// caller.
    pub fn current_user() -> IdMap {
        IdMap {
            host_uid: rustix::process::geteuid().as_raw(),
            host_gid: rustix::process::getegid().as_raw(),
            count: 1,
        }
    }
}

/// Size of the work directory tmpfs by default: 64 MiB.
pub const DEFAULT_WORKDIR_BYTES: u64 = 64 << 20;
/// Size of `/tmp` by default: 64 MiB.
pub const DEFAULT_TMP_BYTES: u64 = 64 << 20;
/// Inodes of each default tmpfs.
pub const DEFAULT_TMPFS_INODES: u64 = 4096;

/// Read-only binds of the host's system directories, where they exist:
/// programs and libraries, then the configuration some compilers and
/// runtimes read outside `/usr` (Free Pascal, Mono, GHC's package
/// database), as go-judge binds them. Java's (`/etc/java-*`) is found by
/// [`java_config_dirs`].
const SYSTEM_BINDS: [&str; 10] = [
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/fpc.cfg",
    "/etc/mono",
    "/var/lib/ghc",
];

/// The Java configuration directories of `/etc`: `/etc/java` (Fedora's)
/// and every `/etc/java-*` (Debian's and Ubuntu's `java-17-openjdk`, …),
/// which OpenJDK reads at start (its `java.security`) through links from
/// its home in `/usr/lib/jvm`; without them `java` and `javac` fail.
fn java_config_dirs() -> Vec<String> {
    java_config_dirs_in(Path::new("/etc"))
}

/// [`java_config_dirs`] of the directory `etc`.
fn java_config_dirs_in(etc: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(etc) else {
        return Vec::new();
    };
    let mut dirs: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let java = name == "java" || name.starts_with("java-");
            // A directory itself, not a link to one elsewhere.
            let dir = entry.file_type().ok()?.is_dir();
            (java && dir).then(|| format!("{}/{name}", etc.display()))
        })
        .collect();
    dirs.sort();
    dirs
}
const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];
const MASKED: [&str; 12] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/sched_debug",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/latency_stats",
    "/proc/sysrq-trigger",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/proc/bus",
    "/sys/firmware",
];

/// Describes a container and starts it.
///
/// [`ContainerBuilder::new`] gives the defaults: read-only binds of `/usr`,
/// `/lib`, `/lib64`, `/bin`, `/sbin`, `/etc/alternatives`,
/// `/etc/ld.so.cache`, and the configuration of compilers that keep it
/// outside `/usr` (`/etc/java` and `/etc/java-*`, `/etc/fpc.cfg`,
/// `/etc/mono`, `/var/lib/ghc`), those that exist; `/dev/null`, `zero`, `full`,
/// `random`, `urandom`; a read-only `/proc` with the usual paths masked;
/// tmpfs at `/w` (the work directory), `/tmp` and `/dev/shm`, 64 MiB and 4096 inodes
/// each; host and domain name `hutch`; programs run as uid and gid 1000 (0 when the
/// caller is not root: an unprivileged user namespace maps one id only).
#[derive(Debug, Clone)]
pub struct ContainerBuilder {
    namespaces: Namespaces,
    mounts: Vec<Mount>,
    extra_mounts: Vec<Mount>,
    symlinks: Vec<SymlinkItem>,
    masked_paths: Vec<String>,
    hostname: String,
    domainname: String,
    workdir: String,
    workdir_bytes: u64,
    tmp_bytes: u64,
    tmpfs_inodes: u64,
    user: Option<(u32, u32)>,
    id_map: Option<IdMap>,
    accounting: AccountingChoice,
    cgroup_layout: Option<CgroupLayout>,
    cgroup_parent: Option<PathBuf>,
    cgroup_fs: Arc<dyn CgroupFs>,
    reply_timeout: Option<std::time::Duration>,
    /// The layout detected at this builder's (or a clone's) first build
    /// that needed it: reading `/proc/self/mountinfo` every build cost as
    /// much as a tenth of a cold build.
    detected_layout: Arc<OnceLock<CgroupLayout>>,
}

/// How a container measures and limits its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountingChoice {
    /// A cgroup, or the build fails saying why (the default).
    #[default]
    Cgroup,
    /// A cgroup where one can be made; otherwise `wait4` rusage and
    /// rlimits: CPU of reaped processes, memory as the largest process's
    /// peak, no memory or process limit. Every result says which measured it.
    CgroupOrRusage,
    /// Rusage and rlimits only, even where cgroups work.
    Rusage,
}

impl Default for ContainerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ContainerBuilder {
    /// The default container.
    pub fn new() -> Self {
        let mut mounts: Vec<Mount> = SYSTEM_BINDS
            .iter()
            .map(|path| (*path).to_owned())
            .filter(|path| Path::new(path).exists())
            .chain(java_config_dirs())
            .map(|path| Mount::Bind {
                source: path.clone(),
                target: path,
                writable: false,
                flags: MountFlags {
                    nosuid: true,
                    nodev: true,
                    noexec: false,
                },
            })
            .collect();
        mounts.extend(DEVICES.iter().map(|path| Mount::Device {
            source: (*path).into(),
            target: (*path).into(),
        }));
        mounts.push(Mount::Proc {
            target: "/proc".into(),
            read_only: true,
        });
        let symlinks = [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ]
        .into_iter()
        .map(|(link, target)| SymlinkItem {
            link: link.into(),
            target: target.into(),
        })
        .collect();
        Self {
            namespaces: Namespaces::default(),
            mounts,
            extra_mounts: Vec::new(),
            symlinks,
            masked_paths: MASKED.iter().map(|p| (*p).into()).collect(),
            hostname: "hutch".into(),
            domainname: "hutch".into(),
            workdir: "/w".into(),
            workdir_bytes: DEFAULT_WORKDIR_BYTES,
            tmp_bytes: DEFAULT_TMP_BYTES,
            tmpfs_inodes: DEFAULT_TMPFS_INODES,
            user: None,
            id_map: None,
            accounting: AccountingChoice::default(),
            cgroup_layout: None,
            cgroup_parent: None,
            cgroup_fs: Arc::new(KernelCgroupFs),
            reply_timeout: Some(crate::container::DEFAULT_REPLY_TIMEOUT),
            detected_layout: Arc::new(OnceLock::new()),
        }
    }

    /// Chooses the namespaces.
    pub fn namespaces(mut self, namespaces: Namespaces) -> Self {
        self.namespaces = namespaces;
        self
    }

    /// Binds a host path into the container, read-only unless `writable`,
    /// never honouring set-user-id bits or device nodes. The target may
    /// replace or cover a default bind of the host's (another `/usr`), but
    /// not hide another mount the container makes itself, nor lie inside the work
    /// directory, `/proc` or the devices' directory: [`build`](Self::build)
    /// refuses it ([`BuildError::MountTarget`]). A target inside `/tmp` or
    /// `/dev/shm` is taken, but a [`Container::reset`] cannot empty a
    /// directory that holds a mount: a pooled container with one is
    /// replaced after every run.
    pub fn bind(mut self, source: &str, target: &str, writable: bool) -> Self {
        self.extra_mounts.push(Mount::Bind {
            source: source.into(),
            target: target.into(),
            writable,
            flags: MountFlags {
                nosuid: true,
                nodev: true,
                noexec: false,
            },
        });
        self
    }

    /// Adds a mount after the defaults; its target is checked as a
    /// [`bind`](Self::bind)'s.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.extra_mounts.push(mount);
        self
    }

    /// Drops the default mounts (system binds, devices, proc); the work
    /// directory, `/tmp` and `/dev/shm` tmpfs mounts stay.
    pub fn without_default_mounts(mut self) -> Self {
        self.mounts.clear();
        self.masked_paths.clear();
        self.symlinks.clear();
        self
    }

    /// Sets the host name.
    pub fn hostname(mut self, name: &str) -> Self {
        self.hostname = name.into();
        self
    }

    /// Sets the domain name.
    pub fn domainname(mut self, name: &str) -> Self {
        self.domainname = name.into();
        self
    }

    /// Sets the work directory (a tmpfs at this path), `/w` by default. It
    /// may be `/tmp` or `/dev/shm`, whose place it then takes, but not hide
    /// another mount the container makes nor lie inside one (a read-only
    /// bind, or a mount of the caller's, which would hide it):
    /// [`build`](Self::build) refuses it ([`BuildError::Workdir`]). Without
    /// a mount namespace it is a host directory, which must exist; symbolic
    /// links on the way to it are resolved, as the container's file
    /// operations follow none.
    pub fn workdir(mut self, path: &str) -> Self {
        self.workdir = path.into();
        self
    }

    /// Sets the size of the work directory's tmpfs.
    pub fn workdir_size(mut self, bytes: u64) -> Self {
        self.workdir_bytes = bytes;
        self
    }

    /// Sets the size of `/tmp` and of `/dev/shm`.
    pub fn tmp_size(mut self, bytes: u64) -> Self {
        self.tmp_bytes = bytes;
        self
    }

    /// Sets the inode limit of the work directory, `/tmp` and `/dev/shm`.
    pub fn tmpfs_inodes(mut self, inodes: u64) -> Self {
        self.tmpfs_inodes = inodes;
        self
    }

    /// Runs programs as this container uid and gid by default.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Sets the id map of the user namespace, the same for every container
    /// built. Without it a container built as root takes a block of host
    /// ids of its own (see [`IdMap`]), and one built by another user maps
    /// container root to that user ([`IdMap::current_user`]).
    pub fn id_map(mut self, map: IdMap) -> Self {
        self.id_map = Some(map);
        self
    }

    /// Chooses how runs are measured and limited; see [`AccountingChoice`].
    pub fn accounting(mut self, choice: AccountingChoice) -> Self {
        self.accounting = choice;
        self
    }

    /// Opts into rusage accounting where no cgroup can be made
    /// ([`AccountingChoice::CgroupOrRusage`]).
    pub fn allow_rusage(self) -> Self {
        self.accounting(AccountingChoice::CgroupOrRusage)
    }

    /// Creates container cgroups under this parent instead of under this
    /// process's own cgroup: a v2 directory, or for v1 a path relative to
    /// this process's cgroup in each hierarchy. Without it,
    /// [`CGROUP_PARENT_VAR`] names the parent when it is set.
    pub fn cgroup_parent(mut self, parent: impl Into<PathBuf>) -> Self {
        self.cgroup_parent = Some(parent.into());
        self
    }

    /// Uses this cgroup layout instead of detecting one.
    pub fn cgroup_layout(mut self, layout: CgroupLayout) -> Self {
        self.cgroup_layout = Some(layout);
        self
    }

    /// Sets how long init may take to answer a request, and an exec beyond
    /// its wall-clock limit, before the container is destroyed
    /// ([`Container::set_reply_timeout`]); `None` waits for ever. The
    /// default is [`DEFAULT_REPLY_TIMEOUT`](crate::DEFAULT_REPLY_TIMEOUT).
    pub fn reply_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Makes and removes groups through `fs` (a test's fake tree).
    pub fn cgroup_fs(mut self, fs: Arc<dyn CgroupFs>) -> Self {
        self.cgroup_fs = fs;
        self
    }

    /// Begins the container's cgroup, before init exists (see
    /// [`ContainerCgroup::begin`]): the group, where it goes, and on v2
    /// the directory of the group to start init in. `None` without a
    /// cgroup; an error explains why none can be made.
    fn begin_cgroup(&self, owner: Option<u32>) -> Result<Option<BegunCgroup>, BuildError> {
        if self.accounting == AccountingChoice::Rusage {
            return Ok(None);
        }
        let begun = self.cgroup_placement().and_then(|layout| {
            ContainerCgroup::begin(&layout, Arc::clone(&self.cgroup_fs), owner)
                .map(|(cgroup, init_group)| (cgroup, layout, init_group))
        });
        self.cgroup_or_rusage(begun)
    }

    /// Finishes the cgroup begun, which `container` holds, while init
    /// starts (see [`ContainerCgroup::finish`]): the files for init.
    fn finish_cgroup(
        &self,
        container: &mut Container,
        layout: Option<CgroupLayout>,
    ) -> Result<Option<(CgroupFiles, Vec<OwnedFd>)>, BuildError> {
        let (Some(layout), Some(cgroup)) = (layout, container.held_cgroup()) else {
            return Ok(None);
        };
        self.cgroup_or_rusage(cgroup.finish(&layout))
    }

    /// A cgroup step's outcome: a failure is the build's error, or no
    /// cgroup where rusage accounting is allowed.
    fn cgroup_or_rusage<T>(
        &self,
        outcome: Result<T, CgroupError>,
    ) -> Result<Option<T>, BuildError> {
        match outcome {
            Ok(made) => Ok(Some(made)),
            Err(_) if self.accounting == AccountingChoice::CgroupOrRusage => Ok(None),
            Err(err) => Err(BuildError::Cgroup(err)),
        }
    }

    /// Where this builder's containers get their cgroups: the layout given
    /// ([`cgroup_layout`](Self::cgroup_layout)) or detected (once per
    /// builder and its clones), under the parent named, if any
    /// ([`cgroup_parent`](Self::cgroup_parent), [`CGROUP_PARENT_VAR`]).
    pub fn cgroup_placement(&self) -> Result<CgroupLayout, CgroupError> {
        let layout = match &self.cgroup_layout {
            Some(layout) => layout.clone(),
            None => match self.detected_layout.get() {
                Some(layout) => layout.clone(),
                None => {
                    let layout = CgroupLayout::detect()?;
                    let _ = self.detected_layout.set(layout.clone());
                    layout
                }
            },
        };
        Ok(match self.checked_cgroup_parent()? {
            Some(parent) => layout.with_parent(&parent),
            None => layout,
        })
    }

    /// Removes the cgroups that hutch processes which are gone (killed
    /// before they could clean up) left where this builder puts its
    /// containers' ([`cgroup_placement`](Self::cgroup_placement)); returns
    /// how many. A server calls this at start, so that the groups of a
    /// killed earlier instance do not pile up. Groups of live processes are
    /// left alone; a process that has ended but is not yet reaped by its
    /// parent (a zombie) is gone.
    pub fn remove_stale_cgroups(&self) -> Result<usize, CgroupError> {
        let layout = self.cgroup_placement()?;
        layout
            .remove_stale(self.cgroup_fs.as_ref())
            .map_err(|source| CgroupError::File {
                path: layout.parents()[0].to_owned(),
                source,
            })
    }

    /// [`resolved_cgroup_parent`](Self::resolved_cgroup_parent), refused
    /// when it has a `..` component, which could climb out of the hierarchy.
    fn checked_cgroup_parent(&self) -> Result<Option<PathBuf>, CgroupError> {
        match self.resolved_cgroup_parent() {
            Some(parent)
                if parent
                    .components()
                    .any(|c| c == std::path::Component::ParentDir) =>
            {
                Err(CgroupError::ParentClimbs { path: parent })
            }
            parent => Ok(parent),
        }
    }

    /// The parent named by [`cgroup_parent`](Self::cgroup_parent), else by
    /// [`CGROUP_PARENT_VAR`] when it is set and not empty.
    fn resolved_cgroup_parent(&self) -> Option<PathBuf> {
        self.cgroup_parent.clone().or_else(|| {
            std::env::var_os(CGROUP_PARENT_VAR)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        })
    }

    /// The id map's shape: its host ids are a block's only once
    /// [`ids_for_build`](Self::ids_for_build) took one.
    fn resolved_id_map(&self) -> IdMap {
        self.id_map.unwrap_or_else(|| {
            if !rustix::process::geteuid().is_root() {
                IdMap::current_user()
            } else if !self.namespaces.pid {
                IdMap::ROOT_DEFAULT
            } else {
                IdMap::block_from(crate::ids::ID_BLOCKS_FIRST)
            }
        })
    }

    /// The id map of one build, and the block of host ids it holds: as
    /// root without an explicit map and with a PID namespace, a block no
    /// other live container has.
    fn ids_for_build(&self) -> Result<(IdMap, Option<crate::ids::IdBlock>), BuildError> {
        // Without a PID namespace programs can outlive init, and the block
        // would be given back while they still run as its users.
        let own_block = self.id_map.is_none()
            && self.namespaces.user
            && self.namespaces.pid
            && rustix::process::geteuid().is_root();
        if !own_block {
            return Ok((self.resolved_id_map(), None));
        }
        let block = crate::ids::HOST.take().map_err(BuildError::IdBlock)?;
        Ok((IdMap::block_from(block.first_host_id()), Some(block)))
    }

    /// Checks what [`build`](Self::build) would refuse before it starts
    /// anything: a programs' user outside the id map, a relative work
    /// directory, a cgroup parent with a `..` component, a configuration
    /// that does not validate, and a mount's target or the work directory
    /// that collides with a mount the container makes itself
    /// ([`MountClash`]).
    pub fn check(&self) -> Result<(), BuildError> {
        self.check_user()?;
        self.check_workdir()?;
        self.checked_cgroup_parent().map_err(BuildError::Cgroup)?;
        Request::Configure(self.configuration())
            .check(0)
            .map_err(BuildError::InvalidConfig)?;
        self.check_paths()
    }

    /// The programs' user is one the id map holds.
    fn check_user(&self) -> Result<(), BuildError> {
        let map = self.resolved_id_map();
        if let (true, Some((uid, gid))) = (self.namespaces.user, self.user) {
            let last = map.count.saturating_sub(1);
            for (what, id) in [("uid", uid), ("gid", gid)] {
                if id > last {
                    return Err(BuildError::UnmappedUser { what, id, last });
                }
            }
        }
        Ok(())
    }

    /// The work directory is absolute: init would refuse it as a mount
    /// target, in words about tmpfs.
    fn check_workdir(&self) -> Result<(), BuildError> {
        if self.workdir.starts_with('/') {
            return Ok(());
        }
        Err(BuildError::WorkdirNotAbsolute {
            workdir: self.workdir.clone(),
        })
    }

    /// The caller's mounts and the work directory against the container's
    /// own mounts.
    fn check_paths(&self) -> Result<(), BuildError> {
        if !self.namespaces.mount {
            return Ok(());
        }
        let workdir = self.workdir.as_str();
        let own = self.own_mounts();
        // The tmpfs mounts of /tmp and /dev/shm, but the one the work
        // directory replaces: `open` when the caller's mounts may go inside.
        let scratch = |open| {
            SCRATCH
                .into_iter()
                .filter(move |at| *at != workdir)
                .map(move |at| OwnMount {
                    what: "tmpfs",
                    at,
                    open,
                })
        };
        // /tmp and /dev/shm are mounted after the work directory: inside
        // them, it would be hidden; and so inside a mount of the caller's,
        // which comes last. Inside a read-only bind its mount point cannot
        // be made.
        if !SCRATCH.contains(&workdir) {
            let around: Vec<OwnMount<'_>> = own
                .iter()
                .map(|mount| OwnMount {
                    open: false,
                    ..*mount
                })
                .chain(scratch(false))
                .collect();
            if let Some(clash) = clash(workdir, &around) {
                return Err(BuildError::Workdir {
                    workdir: workdir.into(),
                    clash,
                });
            }
            let inner = components(workdir);
            for mount in &self.extra_mounts {
                let at = mount_target(mount);
                let outer = components(at);
                // A mount onto the root, or one the work directory holds,
                // is refused below as the mount's own mistake.
                if !outer.is_empty() && inner.len() > outer.len() && inner.starts_with(&outer) {
                    return Err(BuildError::Workdir {
                        workdir: workdir.into(),
                        clash: MountClash::Inside {
                            what: "mount",
                            at: at.into(),
                        },
                    });
                }
            }
        }
        // The caller's mounts come last. They may go inside /tmp and
        // /dev/shm (though a container reset after its run cannot empty a
        // directory that holds a mount), never inside the work directory.
        let work = OwnMount {
            what: "work directory",
            at: workdir,
            open: false,
        };
        // A read-only bind of the host's (`/usr`, …) is no part of how the
        // container works: a mount of the caller's may go inside it,
        // replace it (another `/usr`), or cover it (`/etc` over
        // `/etc/alternatives`), as the caller chose.
        let around: Vec<OwnMount<'_>> = own
            .iter()
            .copied()
            .filter(|mount| !mount.open)
            .chain(scratch(true))
            .chain([work])
            .collect();
        for mount in &self.extra_mounts {
            let target = mount_target(mount);
            if let Some(clash) = clash(target, &around) {
                return Err(BuildError::MountTarget {
                    target: target.into(),
                    clash,
                });
            }
        }
        Ok(())
    }

    /// The mounts the container makes before the work directory: the
    /// devices' directory (a mount there hides them all), the default
    /// mounts, and the symbolic links.
    fn own_mounts(&self) -> Vec<OwnMount<'_>> {
        let mut own: Vec<OwnMount<'_>> = Vec::new();
        for mount in &self.mounts {
            if let Mount::Device { target, .. } = mount {
                let dir = parent_dir(target);
                if dir != "/" && !own.iter().any(|o| o.at == dir) {
                    own.push(OwnMount {
                        what: "device directory",
                        at: dir,
                        open: false,
                    });
                }
            }
        }
        for mount in &self.mounts {
            let (what, at, open) = match mount {
                Mount::Bind { target, .. } => ("read-only bind", target, true),
                Mount::Device { target, .. } => ("device", target, false),
                Mount::Proc { target, .. } if self.namespaces.pid => ("proc", target, false),
                Mount::Proc { .. } => continue,
                Mount::Tmpfs { target, .. } => ("tmpfs", target, false),
            };
            own.push(OwnMount {
                what,
                at: at.as_str(),
                open,
            });
        }
        own.extend(self.symlinks.iter().map(|link| OwnMount {
            what: "symbolic link",
            at: link.link.as_str(),
            open: false,
        }));
        own
    }

    /// The configuration init receives.
    pub fn configuration(&self) -> Configure {
        let map = self.resolved_id_map();
        // Programs run as 1000 where the map holds it, else as the only id.
        let (uid, gid) = self.user.unwrap_or(if map.count > 1000 {
            (1000, 1000)
        } else {
            (0, 0)
        });
        // Without its own UTS namespace the container must not rename the host.
        let (hostname, domainname) = if self.namespaces.uts {
            (self.hostname.clone(), self.domainname.clone())
        } else {
            (String::new(), String::new())
        };
        if !self.namespaces.mount {
            // The work directory is a host path then, which may pass
            // through links (`/var/run`); init's file operations follow
            // none, so it gets the directory itself. One that cannot be
            // resolved goes as it is, for init to name in its error.
            let workdir = std::fs::canonicalize(&self.workdir)
                .ok()
                .and_then(|dir| dir.into_os_string().into_string().ok())
                .unwrap_or_else(|| self.workdir.clone());
            return Configure {
                mounts: Vec::new(),
                symlinks: Vec::new(),
                masked_paths: Vec::new(),
                hostname,
                domainname,
                workdir,
                uid,
                gid,
                init_command: Vec::new(),
                filesystem: FileSystem::Host,
            };
        }
        let mut mounts = self.mounts.clone();
        if !self.namespaces.pid {
            mounts.retain(|m| !matches!(m, Mount::Proc { .. }));
        }
        mounts.push(Mount::Tmpfs {
            target: self.workdir.clone(),
            size_bytes: self.workdir_bytes,
            max_inodes: self.tmpfs_inodes,
            mode: 0o755,
            read_only: false,
        });
        for scratch in SCRATCH {
            if self.workdir != scratch {
                mounts.push(Mount::Tmpfs {
                    target: scratch.into(),
                    size_bytes: self.tmp_bytes,
                    max_inodes: self.tmpfs_inodes,
                    mode: 0o1777,
                    read_only: false,
                });
            }
        }
        mounts.extend(self.extra_mounts.iter().cloned());
        Configure {
            mounts,
            symlinks: self.symlinks.clone(),
            masked_paths: self.masked_paths.clone(),
            hostname,
            domainname,
            workdir: self.workdir.clone(),
            uid,
            gid,
            init_command: Vec::new(),
            filesystem: FileSystem::Container,
        }
    }

    /// Starts the container: init runs, answered the handshake and set the
    /// container up.
    pub fn build(&self) -> Result<Container, BuildError> {
        match self.build_with(self.namespaces.net) {
            // An init that does not make network namespaces (an older one
            // named by HUTCH_INIT): the clone makes it instead.
            Err(BuildError::NoNetByInit) => self.build_with(false),
            built => built,
        }
    }

    /// [`build`](Self::build), with the network namespace made by init
    /// after the clone, while this thread makes the cgroup, when
    /// `net_by_init`.
    fn build_with(&self, net_by_init: bool) -> Result<Container, BuildError> {
        self.check_user()?;
        self.check_workdir()?;
        let config = self.configuration();
        let workdir = config.workdir.clone();
        let configure = Request::Configure(config);
        configure.check(0).map_err(BuildError::InvalidConfig)?;
        self.check_paths()?;
        let init = init_executable()?;
        let (map, ids) = self.ids_for_build()?;
        let (host_end, container_end) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| plumbing("socket pair", e))?;
        // A datagram longer than the send buffer is refused: the default
        // (`net.core.wmem_default`, 208 KiB here) is below the largest
        // frame. The kernel doubles what is asked, up to `wmem_max`.
        for end in [&host_end, &container_end] {
            rustix::net::sockopt::set_socket_send_buffer_size(end, hutch_protocol::MAX_FRAME_LEN)
                .map_err(|e| plumbing("socket send buffer", e))?;
        }
        let (release_read, release_write) = sys_pipe().map_err(|e| plumbing("release pipe", e))?;
        let (errors_read, errors_write) = sys_pipe().map_err(|e| plumbing("error pipe", e))?;
        let arg0 = CString::from(c"hutch-init");
        let argv: [*const c_char; 2] = [arg0.as_ptr(), std::ptr::null()];
        let envp: [*const c_char; 1] = [std::ptr::null()];
        let user_ns = self.namespaces.user;
        let child = InitChild {
            socket: sys::raw(&container_end),
            init: sys::raw(&init),
            release: sys::raw(&release_read),
            release_write: sys::raw(&release_write),
            errors: sys::raw(&errors_write),
            become_root: user_ns,
            argv: &argv,
            envp: &envp,
        };
        let mut flags = self.namespaces.clone_flags();
        if net_by_init {
            flags &= !(libc::CLONE_NEWNET as u64);
        }
        // The child runs on this stack, reading `child`, until it execs:
        // both are declared before `guard`, which is dropped first.
        let mut stack = sys::Mapping::new(sys::CHILD_STACK_LEN);
        // As root, the user namespace is owned by the host uid of its root,
        // not by root (see `sys::spawn_init`).
        let owner = (user_ns && rustix::process::geteuid().is_root())
            .then_some(map.host_uid)
            .filter(|&uid| uid != 0);
        // Declared before `guard` too: its groups go once init is gone.
        let mut begun = self.begin_cgroup(owner)?;
        let init_group = begun.as_ref().and_then(|(_, _, group)| group.as_ref());
        // Init starts programs in their group, which the kernel allows only
        // where init sees both its own group and theirs: it then stays in
        // this process's cgroup namespace. Every program still gets one of
        // its own, rooted at its group.
        let into_group = flags & !(libc::CLONE_NEWCGROUP as u64);
        let spawned = match init_group {
            Some(group) => {
                match sys::spawn_init(into_group, &child, &mut stack, owner, Some(group.as_fd())) {
                    // The kernel checks the start in a group against this
                    // thread's credentials, which as the namespace's owner
                    // may have lost the capabilities that let root write
                    // any group's `cgroup.procs` (no `CAP_SETPCAP` to keep
                    // them): init starts outside, and programs move in.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                        if let Some((cgroup, _, _)) = begun.as_mut() {
                            cgroup.leave_init_out();
                        }
                        sys::spawn_init(flags, &child, &mut stack, owner, None)
                    }
                    spawned => spawned,
                }
            }
            None => sys::spawn_init(flags, &child, &mut stack, owner, None),
        }
        .map_err(|source| BuildError::Clone {
            hint: clone_hint(&source, user_ns),
            source,
        })?;
        drop((container_end, release_read, errors_write, init));
        // From here on, dropping `guard` kills and reaps the child, and
        // then removes the groups it holds.
        let mut guard = Container::new(Channel::new(host_end), spawned.pidfd, spawned.pid);
        let layout = begun.map(|(cgroup, layout, _)| {
            guard.hold_cgroup(cgroup);
            layout
        });
        guard.set_reply_timeout(self.reply_timeout);
        if !self.namespaces.pid {
            guard.set_shares_pid_namespace();
        }
        if let Some(ids) = ids {
            guard.set_ids(ids);
        }
        if user_ns {
            write_id_maps(spawned.pid, map)?;
        }
        rustix::io::write(&release_write, &[1]).map_err(|e| BuildError::Child {
            step: ChildStep::Release.describe(),
            source: e.into(),
        })?;
        drop(release_write);
        // The hello and the configuration go out at once: init answers them
        // in order (making the network namespace, then the mounts) while
        // this thread makes the cgroup.
        let mut container = guard;
        let hello = Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            features: if net_by_init {
                features::HOST_NET_BY_INIT
            } else {
                0
            },
        });
        let sent = container
            .send(&hello, &[])
            .and_then(|()| container.send(&configure, &[]));
        let cgroup = self.finish_cgroup(&mut container, layout);
        let mut record = Vec::with_capacity(8);
        std::fs::File::from(errors_read)
            .read_to_end(&mut record)
            .map_err(|source| plumbing_io("error pipe", source))?;
        if record.len() == 8 {
            let step = u32::from_ne_bytes(record[..4].try_into().expect("4 bytes"));
            let errno = u32::from_ne_bytes(record[4..].try_into().expect("4 bytes"));
            return Err(BuildError::Child {
                step: ChildStep::from_raw(step).map_or("starting", ChildStep::describe),
                source: std::io::Error::from_raw_os_error(errno as i32),
            });
        }
        sent.map_err(|err| BuildError::Handshake(Box::new(err)))?;
        let deadline = container.reply_deadline();
        let init_features = match container.receive("hello", deadline) {
            Ok(Reply::Hello(hello)) if hello.version == PROTOCOL_VERSION => hello.features,
            Ok(Reply::Hello(hello)) => {
                return Err(BuildError::Version {
                    found: hello.version,
                });
            }
            Ok(other) => {
                return Err(BuildError::Handshake(Box::new(
                    ContainerError::UnexpectedReply {
                        request: "hello",
                        reply: other.kind(),
                    },
                )));
            }
            Err(err) => return Err(BuildError::Handshake(Box::new(err))),
        };
        if net_by_init && init_features & features::INIT_NET == 0 {
            return Err(BuildError::NoNetByInit);
        }
        container.set_init(init_features, &workdir);
        match container.receive("configure", deadline) {
            Ok(Reply::Ack) => {}
            Ok(other) => {
                return Err(BuildError::Configure(Box::new(
                    ContainerError::UnexpectedReply {
                        request: "configure",
                        reply: other.kind(),
                    },
                )));
            }
            Err(err) => return Err(BuildError::Configure(Box::new(err))),
        }
        if let Some((mut files, mut fds)) = cgroup? {
            if let Some(cgroup) = container.held_cgroup() {
                cgroup
                    .fit_to_init(&mut files, &mut fds, init_features)
                    .map_err(BuildError::Cgroup)?;
            }
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
            match container.call(&Request::Cgroup(files), &borrowed) {
                Ok(Reply::Ack) => container.measure_by_held_cgroup(),
                Ok(other) => {
                    return Err(BuildError::Configure(Box::new(
                        ContainerError::UnexpectedReply {
                            request: "cgroup",
                            reply: other.kind(),
                        },
                    )));
                }
                Err(err) => return Err(BuildError::Configure(Box::new(err))),
            }
        }
        Ok(container)
    }
}

/// The directory `path` is in: `/dev` of `/dev/null`, `/` of `/usr`.
fn parent_dir(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// A cgroup begun before init exists: the group, where it goes, and the
/// directory of the group to start init in, if any.
type BegunCgroup = (ContainerCgroup, CgroupLayout, Option<OwnedFd>);

fn sys_pipe() -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
}

fn plumbing(what: &'static str, errno: rustix::io::Errno) -> BuildError {
    plumbing_io(what, errno.into())
}

fn plumbing_io(what: &'static str, source: std::io::Error) -> BuildError {
    BuildError::Plumbing { what, source }
}

fn clone_hint(err: &std::io::Error, user_ns: bool) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) if user_ns => {
            "user namespaces are not allowed here: check /proc/sys/user/max_user_namespaces, \
             kernel.unprivileged_userns_clone, or an AppArmor/SELinux policy restricting them"
        }
        Some(libc::EPERM) => "creating namespaces needs root, or leave the user namespace on",
        Some(libc::ENOSPC) => "a namespace limit in /proc/sys/user/ is exhausted",
        Some(libc::EUSERS) => "too many nested user namespaces",
        Some(libc::ENOSYS) => "this kernel has no clone3 (Linux 5.3 or later is needed)",
        Some(libc::EINVAL) => "this kernel does not support a requested namespace",
        Some(libc::ENOMEM) | Some(libc::EAGAIN) => "out of memory or processes",
        _ => "unexpected error",
    }
}

fn write_id_maps(pid: i32, map: IdMap) -> Result<(), BuildError> {
    let write = |file: String, contents: String| {
        std::fs::write(&file, contents.as_bytes()).map_err(|source| BuildError::IdMap {
            file,
            map: contents.trim_end().to_owned(),
            source,
        })
    };
    write(
        format!("/proc/{pid}/uid_map"),
        format!("0 {} {}\n", map.host_uid, map.count),
    )?;
    if !rustix::process::geteuid().is_root() {
        // Unprivileged: the kernel wants setgroups disabled before gid_map.
        write(format!("/proc/{pid}/setgroups"), "deny\n".into())?;
    }
    write(
        format!("/proc/{pid}/gid_map"),
        format!("0 {} {}\n", map.host_gid, map.count),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_configuration_directories_are_found_and_nothing_else() {
        let etc = std::env::temp_dir().join(format!("hutch-etc-{}", std::process::id()));
        for dir in ["java", "java-17-openjdk", "java-21-openjdk", "javac", "jvm"] {
            std::fs::create_dir_all(etc.join(dir)).unwrap();
        }
        std::fs::write(etc.join("java-file"), "").unwrap();
        std::os::unix::fs::symlink(etc.join("java-17-openjdk"), etc.join("java-link")).unwrap();
        let found = java_config_dirs_in(&etc);
        std::fs::remove_dir_all(&etc).unwrap();
        let expected: Vec<String> = ["java", "java-17-openjdk", "java-21-openjdk"]
            .iter()
            .map(|name| format!("{}/{name}", etc.display()))
            .collect();
        assert_eq!(found, expected);
        assert!(java_config_dirs_in(&etc).is_empty(), "no directory, none");
    }

    /// The clash of a path that would hide the container's `what` at `at`.
    fn hides(what: &'static str, at: &str) -> Option<MountClash> {
        Some(MountClash::Hides {
            what,
            at: at.into(),
        })
    }

    /// The clash of a path inside the container's `what` at `at`.
    fn inside(what: &'static str, at: &str) -> Option<MountClash> {
        Some(MountClash::Inside {
            what,
            at: at.into(),
        })
    }

    #[test]
    fn mounts_that_collide_with_the_containers_own_are_refused() {
        let onto = |builder: ContainerBuilder, target: &str| match builder
            .bind("/srv/x", target, false)
            .check()
        {
            Ok(()) => None,
            Err(BuildError::MountTarget { target: t, clash }) => {
                assert_eq!(t, target);
                Some(clash)
            }
            Err(other) => panic!("{target}: {other:?}"),
        };
        let new = ContainerBuilder::new;
        for (target, clash) in [
            ("/", hides("root", "/")),
            ("//", hides("root", "/")),
            ("/w", hides("work directory", "/w")),
            ("/w/", hides("work directory", "/w")),
            ("/w/data", inside("work directory", "/w")),
            ("/proc", hides("proc", "/proc")),
            ("/proc/x", inside("proc", "/proc")),
            ("/dev", hides("device directory", "/dev")),
            ("/dev/x", inside("device directory", "/dev")),
            ("/dev/shm", inside("device directory", "/dev")),
            ("/tmp", hides("tmpfs", "/tmp")),
            // Beside or inside what may take it, or over a bind of the
            // host's, which the caller may replace or cover.
            ("/usr", None),
            ("/etc", None),
            ("/data", None),
            ("/opt/tool", None),
            ("/usr/lib/jvm/x", None),
            ("/tmp/x", None),
            ("/work", None),
        ] {
            assert_eq!(onto(new(), target), clash, "{target}");
        }
        let error = new().bind("/srv/x", "/w", false).check().unwrap_err();
        assert_eq!(
            crate::error_chain(&error),
            "cannot mount onto /w: it would hide the container's work directory at /w"
        );
        // Another work directory frees /w and takes its own place; /tmp as
        // the work directory is no place for a mount either.
        assert_eq!(onto(new().workdir("/sandbox"), "/w"), None);
        assert_eq!(
            onto(new().workdir("/sandbox"), "/sandbox/x"),
            inside("work directory", "/sandbox")
        );
        assert_eq!(
            onto(new().workdir("/tmp"), "/tmp/x"),
            inside("work directory", "/tmp")
        );
        // Every kind of mount, not binds alone.
        let tmpfs = Mount::Tmpfs {
            target: "/proc".into(),
            size_bytes: 4096,
            max_inodes: 1,
            mode: 0o755,
            read_only: false,
        };
        assert!(matches!(
            new().mount(tmpfs).check(),
            Err(BuildError::MountTarget { .. })
        ));
        // Without the default mounts, only the tmpfs mounts are the
        // container's; without a mount namespace, none.
        assert_eq!(onto(new().without_default_mounts(), "/usr"), None);
        assert_eq!(onto(new().without_default_mounts(), "/dev/x"), None);
        assert_eq!(
            onto(new().without_default_mounts(), "/w"),
            hides("work directory", "/w")
        );
        let host = Namespaces {
            mount: false,
            ..Namespaces::default()
        };
        assert_eq!(onto(new().namespaces(host), "/"), None);
    }

    #[test]
    fn check_refuses_an_unmapped_user_and_a_climbing_cgroup_parent_as_build_does() {
        let beyond = ContainerBuilder::new().resolved_id_map().count;
        let unmapped = ContainerBuilder::new().user(beyond, 0);
        assert!(matches!(
            unmapped.check(),
            Err(BuildError::UnmappedUser { what: "uid", .. })
        ));
        let climbing = ContainerBuilder::new().cgroup_parent("jobs/../../..");
        let error = climbing.check().expect_err("a parent with ..");
        assert_eq!(
            crate::error_chain(&error),
            "cannot give the container a cgroup: the cgroup parent jobs/../../.. has a `..` \
             component: name it without one"
        );
        assert!(matches!(
            climbing.cgroup_placement(),
            Err(CgroupError::ParentClimbs { .. })
        ));
    }

    #[test]
    fn a_relative_work_directory_is_refused_naming_it() {
        for relative in ["w", "", "./w"] {
            let builder = ContainerBuilder::new().workdir(relative);
            for refused in [builder.check(), builder.build().map(drop)] {
                let err = refused.expect_err(relative);
                assert_eq!(
                    err.to_string(),
                    format!("the work directory {relative:?} is not an absolute path")
                );
            }
        }
    }

    #[test]
    fn work_directories_that_collide_with_the_containers_own_mounts_are_refused() {
        let at = |workdir: &str| match ContainerBuilder::new().workdir(workdir).check() {
            Ok(()) => None,
            Err(BuildError::Workdir { workdir: w, clash }) => {
                assert_eq!(w, workdir);
                Some(clash)
            }
            Err(other) => panic!("{workdir}: {other:?}"),
        };
        assert_eq!(at("/"), hides("root", "/"));
        assert_eq!(at("/dev"), hides("device directory", "/dev"));
        assert_eq!(at("/dev/w"), inside("device directory", "/dev"));
        assert_eq!(at("/proc"), hides("proc", "/proc"));
        assert_eq!(at("/proc/w"), inside("proc", "/proc"));
        assert_eq!(at("/usr"), hides("read-only bind", "/usr"));
        // Its mount point cannot be made in a read-only bind.
        assert_eq!(at("/usr/w"), inside("read-only bind", "/usr"));
        // /tmp is mounted after the work directory, and would hide it.
        assert_eq!(at("/tmp/w"), inside("tmpfs", "/tmp"));
        // The work directory may take the place of /tmp or /dev/shm.
        for fine in ["/w", "/sandbox", "/tmp", "/dev/shm"] {
            assert_eq!(at(fine), None, "{fine}");
        }
        // The caller's mounts come after it, and would hide it.
        let under_a_bind = ContainerBuilder::new()
            .bind("/srv", "/data", false)
            .workdir("/data/w")
            .check();
        assert!(
            matches!(
                &under_a_bind,
                Err(BuildError::Workdir { clash: MountClash::Inside { what: "mount", at }, .. })
                    if at == "/data"
            ),
            "{under_a_bind:?}"
        );
    }
}
