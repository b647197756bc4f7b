//! A running container: the host's end of the conversation with its init.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use hutch_protocol::{
    CopyInItem, CopyInOutcome, CopyInStep, Delete, ErrorReply, ExecResult, ItemError, ItemOutcome,
    MAX_FDS_PER_FRAME, OpenItem, Reply, Request, SymlinkItem, ValidationError, features,
};

use crate::channel::{Channel, ChannelError};
use crate::exec::{ExecSpec, ExecSpecError};
use crate::sys;

/// Why a request to a container failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// Init is gone: killed from outside, or it gave up after a broken frame.
    #[error("the container's init is gone ({status})")]
    InitGone {
        /// How init ended.
        status: String,
        /// What the host saw first.
        #[source]
        cause: ChannelError,
    },
    /// An earlier failure left the container unusable; it was destroyed.
    #[error("the container was destroyed after an earlier failure")]
    Destroyed,
    /// The request is invalid; nothing was sent.
    #[error("invalid {kind} request")]
    InvalidRequest {
        /// The request kind.
        kind: &'static str,
        /// What is wrong with it.
        #[source]
        source: ValidationError,
    },
    /// The exec's spec holds input its builder methods could not use (see
    /// [`ExecSpec::check`]); nothing was sent, and the container is as it
    /// was.
    #[error("invalid exec spec")]
    InvalidSpec(#[source] ExecSpecError),
    /// The request is too large to send: its encoding does not fit a
    /// frame, or the socket refuses a datagram that long. Nothing was
    /// sent; the container is still usable.
    #[error("the {kind} request is too large to send to init")]
    TooLarge {
        /// The request kind.
        kind: &'static str,
        /// What refused it.
        #[source]
        cause: ChannelError,
    },
    /// Init answered something that does not validate; the container was
    /// destroyed.
    #[error("init sent an invalid {kind}")]
    InvalidReply {
        /// The reply kind.
        kind: &'static str,
        /// What is wrong with it.
        #[source]
        source: ValidationError,
    },
    /// Init answered with a reply that does not fit the request; the
    /// container was destroyed.
    #[error("init answered a {request} request with a {reply}")]
    UnexpectedReply {
        /// The request kind.
        request: &'static str,
        /// The reply kind.
        reply: &'static str,
    },
    /// A kill handle could not be made.
    #[error("cannot duplicate the container's socket for a kill handle")]
    Killer {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Init did not answer in time; the container was destroyed.
    #[error(
        "init did not answer the {request} request within {waited:?}; the container was destroyed"
    )]
    NoReply {
        /// The request kind.
        request: &'static str,
        /// How long the host waited, from sending the request to giving
        /// up (for an exec: its wall-clock limit and the reply timeout).
        waited: Duration,
    },
    /// This container's init does not serve the request (an older init
    /// given with `HUTCH_INIT`); nothing was sent.
    #[error("the container's init does not serve {request} requests")]
    Unsupported {
        /// The request kind.
        request: &'static str,
    },
    /// The next programs could not be given a fresh run group (see
    /// [`Container::run_groups`]): the container's cgroup failed (its group
    /// removed from outside, say). The container was destroyed, as after
    /// a run its cgroup failed: its later runs would join the group of an
    /// earlier run with more tasks, and their own process peaks would go
    /// untold.
    #[error(
        "cannot give the container's next programs a fresh run group; the container was destroyed"
    )]
    Regroup {
        /// What failed.
        #[source]
        source: crate::cgroup::CgroupError,
    },
    /// The program's CPUs could not be set.
    #[error("cannot set the CPUs the program may run on")]
    Affinity(#[source] std::io::Error),
    /// [`ExecSpec::cpus`] named no CPU the container may use (CPUs this
    /// machine does not have, or outside the host's own set). Nothing was
    /// sent; the container is as it was.
    #[error("none of the CPUs the program was given is one the container may use")]
    NoUsableCpu,
    /// The request failed inside the container; the container is still
    /// usable, but for a regroup init refused (see
    /// [`Container::begin_reset`]).
    #[error("{message} (stage {stage:?}, errno {errno})")]
    Failed {
        /// The step that failed.
        stage: hutch_protocol::Stage,
        /// The OS error number, or 0.
        errno: i32,
        /// The path involved, if any.
        path: Option<String>,
        /// What init said.
        message: String,
    },
}

impl From<ErrorReply> for ContainerError {
    fn from(reply: ErrorReply) -> Self {
        ContainerError::Failed {
            stage: reply.stage,
            errno: reply.errno,
            path: reply.path,
            message: reply.message,
        }
    }
}

/// A pre-forked container, ready to run programs one after another.
///
/// Dropping it (or calling [`destroy`](Container::destroy)) kills init
/// through its pidfd, which takes down everything in the container, and
/// reaps it.
pub struct Container {
    channel: Channel,
    pidfd: OwnedFd,
    pid: i32,
    /// The kill handle [`killer`](Container::killer) hands out, made on
    /// its first call.
    killer: std::sync::OnceLock<Killer>,
    broken: bool,
    received: Vec<OwnedFd>,
    /// Removed when the container is dropped, after init is reaped.
    cgroup: Option<crate::cgroup::ContainerCgroup>,
    /// A cgroup made while the container was built that measures no run
    /// (not yet, or not ever where its files could not be made and rusage
    /// accounting is allowed), kept because init may live in it: removed
    /// likewise.
    held_cgroup: Option<crate::cgroup::ContainerCgroup>,
    /// The block of host ids the container was given, given back when it
    /// is dropped, after init is reaped.
    ids: Option<crate::ids::IdBlock>,
    /// What init announced in its hello.
    init_features: u64,
    /// Where programs start, inside the container.
    workdir: String,
    /// How long init may take to answer a request other than an exec, and
    /// an exec beyond its wall-clock limit.
    reply_timeout: Option<Duration>,
    /// Init's CPUs before a run narrowed them, to restore for the next run.
    saved_affinity: Option<rustix::thread::CpuSet>,
    /// A reset was sent and its answer not yet read.
    reset_pending: bool,
    /// A regroup was sent just before that reset, its answer not yet read.
    regroup_pending: bool,
    /// A poll found the socket readable and nothing was received since:
    /// the next receive need not poll again.
    readable: bool,
    /// The last run had more than one task at once (or its peak went
    /// untold): the next run needs a fresh run group for its own peak.
    regroup_due: bool,
    /// The container shares the host's PID namespace: what init started
    /// outlives init, unless init ends it.
    shares_pid_namespace: bool,
}

/// How long init of a container that shares the host's PID namespace may
/// take to end its run and exit once its socket closes, before it is
/// killed: 1 s.
const SHARED_PID_NAMESPACE_EXIT_MS: i64 = 1000;

/// How long init may take to answer, by default: a request other than an
/// exec, or an exec past its wall-clock limit.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A file to create in a container and fill from a descriptor of the
/// host's; see [`Container::copy_in`].
#[derive(Debug, Clone, Copy)]
pub struct CopyInFile<'a, 'fd> {
    /// Where, inside the container: absolute, or relative to the work
    /// directory.
    pub path: &'a str,
    /// Its permission bits.
    pub mode: u32,
    /// What it holds: the whole of this regular file, from offset 0.
    pub source: BorrowedFd<'fd>,
}

/// Why one file of a [`Container::copy_in`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyInError {
    /// The file or a parent directory could not be created, or the source
    /// is not a regular file.
    #[error("{}", .0.message)]
    Create(ItemError),
    /// The file was created but could not be filled; it is left empty.
    #[error("{}", .0.message)]
    Fill(ItemError),
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("init_pid", &self.pid)
            .field("broken", &self.broken)
            .finish()
    }
}

impl ContainerError {
    /// Whether the request was refused before it was sent (invalid, from
    /// an invalid spec, too large for a frame, or giving the program no
    /// CPU it may use): init saw nothing of it,
    /// and the container is as it was.
    pub fn refused_unsent(&self) -> bool {
        matches!(
            self,
            Self::InvalidRequest { .. }
                | Self::InvalidSpec(_)
                | Self::TooLarge { .. }
                | Self::NoUsableCpu
        )
    }
}

/// The instant `wait` from now; none when the clock cannot reach it
/// (`Duration::MAX`, say), which waits for ever.
pub(crate) fn deadline_after(wait: Duration) -> Option<Instant> {
    Instant::now().checked_add(wait)
}

impl Container {
    pub(crate) fn new(channel: Channel, pidfd: OwnedFd, pid: i32) -> Self {
        Self {
            channel,
            pidfd,
            pid,
            killer: std::sync::OnceLock::new(),
            broken: false,
            received: Vec::new(),
            cgroup: None,
            held_cgroup: None,
            ids: None,
            init_features: 0,
            workdir: String::new(),
            reply_timeout: Some(DEFAULT_REPLY_TIMEOUT),
            saved_affinity: None,
            reset_pending: false,
            regroup_pending: false,
            readable: false,
            regroup_due: false,
            shares_pid_namespace: false,
        }
    }

    /// Notes that the container shares the host's PID namespace.
    pub(crate) fn set_shares_pid_namespace(&mut self) {
        self.shares_pid_namespace = true;
    }

    /// The deadline of a reply to a request sent now; none for a timeout
    /// too long for the clock to reach.
    pub(crate) fn reply_deadline(&self) -> Option<Instant> {
        self.reply_timeout.and_then(deadline_after)
    }

    pub(crate) fn set_init(&mut self, features: u64, workdir: &str) {
        self.init_features = features;
        self.workdir = workdir.into();
    }

    /// Sets how long init may take to answer a request other than an exec,
    /// and an exec beyond its wall-clock limit (an exec without one may
    /// take as long as it runs); `None` waits for ever. When the time
    /// passes, the container is destroyed and the call returns
    /// [`ContainerError::NoReply`]. The default is
    /// [`DEFAULT_REPLY_TIMEOUT`].
    pub fn set_reply_timeout(&mut self, timeout: Option<Duration>) {
        self.reply_timeout = timeout;
    }

    /// The directory programs start in, inside the container.
    pub fn workdir(&self) -> &str {
        &self.workdir
    }

    /// `path` as an absolute path inside the container: relative paths are
    /// taken from the work directory. An empty path stays empty, for the
    /// request that carries it to be refused as one.
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') || path.is_empty() {
            path.into()
        } else {
            format!("{}/{path}", self.workdir.trim_end_matches('/'))
        }
    }

    /// The feature bits init announced
    /// ([`features`](hutch_protocol::features)).
    pub fn init_features(&self) -> u64 {
        self.init_features
    }

    #[cfg(test)]
    pub(crate) fn set_cgroup(&mut self, cgroup: crate::cgroup::ContainerCgroup) {
        self.cgroup = Some(cgroup);
    }

    /// Keeps `cgroup`, made while the container is built, to remove once
    /// init is gone (init may live in it), without measuring runs by it
    /// until [`measure_by_held_cgroup`](Self::measure_by_held_cgroup).
    pub(crate) fn hold_cgroup(&mut self, cgroup: crate::cgroup::ContainerCgroup) {
        self.held_cgroup = Some(cgroup);
    }

    /// The cgroup held by [`hold_cgroup`](Self::hold_cgroup), if any.
    pub(crate) fn held_cgroup(&mut self) -> Option<&mut crate::cgroup::ContainerCgroup> {
        self.held_cgroup.as_mut()
    }

    /// Measures and limits runs by the cgroup held, which init accepted.
    pub(crate) fn measure_by_held_cgroup(&mut self) {
        self.cgroup = self.held_cgroup.take();
    }

    pub(crate) fn set_ids(&mut self, ids: crate::ids::IdBlock) {
        self.ids = Some(ids);
    }

    /// The cgroup directories on the host that the container's programs
    /// run in and are limited and measured by: one per v1 hierarchy, or on
    /// v2 the programs' group inside the container's group. Empty when its
    /// runs are measured by rusage.
    pub fn cgroup_dirs(&self) -> &[std::path::PathBuf] {
        self.cgroup.as_ref().map_or(&[], |c| c.measured_dirs())
    }

    /// Every cgroup directory made for the container, innermost first, the
    /// order they are removed in: on v2 also the container's group and
    /// init's inside it. Run groups come on top (see
    /// [`run_groups`](Self::run_groups)).
    pub fn all_cgroup_dirs(&self) -> Vec<std::path::PathBuf> {
        self.cgroup
            .as_ref()
            .map_or_else(Vec::new, |c| c.dirs().iter().rev().cloned().collect())
    }

    /// The run groups inside the container's cgroup not yet removed, the
    /// one programs join last; empty until a run had more than one task at
    /// once (see [`ExecResult::processes_peak`]).
    pub fn run_groups(&self) -> &[std::path::PathBuf] {
        self.cgroup.as_ref().map_or(&[], |c| c.run_groups())
    }

    /// Which cgroup hierarchy measures and limits the container's runs;
    /// `None` when rusage does.
    pub fn cgroup_version(&self) -> Option<hutch_protocol::CgroupVersion> {
        self.cgroup.as_ref().map(|c| c.version())
    }

    /// Whether the container was destroyed after a failure and can serve no
    /// more requests.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether init has exited (killed from outside, say), told by its
    /// pidfd without waiting: such a container can serve nothing more.
    pub fn init_exited(&self) -> bool {
        sys::readable_before(std::os::fd::AsFd::as_fd(&self.pidfd), Instant::now())
    }

    /// Init's pid in the host's PID namespace.
    pub fn init_pid(&self) -> i32 {
        self.pid
    }

    /// Checks that init answers.
    pub fn ping(&mut self) -> Result<(), ContainerError> {
        match self.call(&Request::Ping, &[])? {
            Reply::Pong => Ok(()),
            other => self.unexpected("ping", &other),
        }
    }

    /// Opens files inside the container; one result per item, in order.
    /// Paths are absolute (a relative one is that item's error). Items go
    /// as many at a time as a frame takes; an item no request may carry
    /// (a relative path, a `..`) is its own error, errno 0.
    ///
    /// A file an item creates belongs to the programs' user and has the
    /// item's mode exactly; a file that was there keeps its owner and mode.
    pub fn open(
        &mut self,
        items: &[OpenItem],
    ) -> Result<Vec<Result<OwnedFd, ItemError>>, ContainerError> {
        self.in_batches(items, Self::open_batch, Err)
    }

    fn open_batch(
        &mut self,
        items: &[OpenItem],
    ) -> Result<Vec<Result<OwnedFd, ItemError>>, ContainerError> {
        let reply = self.call(&Request::Open(items.to_vec()), &[])?;
        self.opened("open", reply, items.len())
    }

    /// Removes a file or an empty directory inside the container, named
    /// by its absolute path.
    pub fn delete(&mut self, path: &str) -> Result<(), ContainerError> {
        let request = Request::Delete(Delete { path: path.into() });
        match self.call(&request, &[])? {
            Reply::Ack => Ok(()),
            other => self.unexpected("delete", &other),
        }
    }

    /// Creates symbolic links inside the container, with their missing
    /// parent directories, owned by the programs' user (who may then remove
    /// them); one result per item. Links are absolute paths; items go as
    /// many at a time as a frame takes, and an item no request may carry (a
    /// relative link, an empty target) is its own error, errno 0.
    pub fn symlink(
        &mut self,
        items: &[SymlinkItem],
    ) -> Result<Vec<Result<(), ItemError>>, ContainerError> {
        self.in_batches(items, Self::symlink_batch, Err)
    }

    fn symlink_batch(
        &mut self,
        items: &[SymlinkItem],
    ) -> Result<Vec<Result<(), ItemError>>, ContainerError> {
        match self.call(&Request::Symlink(items.to_vec()), &[])? {
            Reply::Linked(batch) if batch.results.len() == items.len() => Ok(batch
                .results
                .into_iter()
                .map(|outcome| match outcome {
                    ItemOutcome::Done => Ok(()),
                    ItemOutcome::Failed(error) => Err(error),
                })
                .collect()),
            other => self.unexpected("symlink", &other),
        }
    }

    /// Empties the container's writable tmpfs mounts (the work directory,
    /// `/tmp` and `/dev/shm` by default) for the next user.
    ///
    /// After a run that had more than one task at once, this also gives
    /// the next programs a fresh run group; one that cannot be made
    /// destroys the container and is this call's error
    /// ([`ContainerError::Regroup`]).
    pub fn reset(&mut self) -> Result<(), ContainerError> {
        self.begin_reset()?;
        self.finish_reset()
    }

    /// Asks init to reset ([`reset`](Container::reset)) and returns at once,
    /// while init does it. The next request (or
    /// [`finish_reset`](Container::finish_reset)) first takes init's answer,
    /// so the reset is never skipped: this only keeps the caller from
    /// waiting for it, as a pool does when a container comes back. A fresh
    /// run group that is due but cannot be made is this call's error, and
    /// destroys the container ([`ContainerError::Regroup`]); one that init
    /// refuses is the answer's.
    pub fn begin_reset(&mut self) -> Result<(), ContainerError> {
        if self.reset_pending {
            self.finish_reset()?;
        }
        // A fresh run group, when due, goes with the reset: its answer
        // comes first, and neither is waited for here.
        let regrouped = self.send_regroup()?;
        self.send(&Request::Reset, &[])?;
        self.reset_pending = true;
        self.regroup_pending = regrouped;
        Ok(())
    }

    /// Sends init a fresh run group if one is due; whether it did. A group
    /// that cannot be made destroys the container and is the error
    /// ([`ContainerError::Regroup`]): its next runs would join the group
    /// of an earlier run with more tasks, where their own peaks go untold.
    fn send_regroup(&mut self) -> Result<bool, ContainerError> {
        if !self.regroup_due || self.broken {
            return Ok(false);
        }
        let Some(cgroup) = self.cgroup.as_mut() else {
            return Ok(false);
        };
        let (files, fds) = match cgroup.regroup() {
            Ok(made) => made,
            Err(source) => {
                self.kill_and_reap();
                return Err(ContainerError::Regroup { source });
            }
        };
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(std::os::fd::AsFd::as_fd).collect();
        self.send(&Request::Regroup(files), &borrowed)?;
        self.regroup_due = false;
        Ok(true)
    }

    /// Moves later programs to a fresh run group now, if one is due (a run
    /// with more than one task, then no reset), waiting for init's answer.
    fn regroup_now(&mut self) -> Result<(), ContainerError> {
        if self.send_regroup()? {
            self.take_regroup_answer()?;
        }
        Ok(())
    }

    /// Takes init's answer to a regroup sent last. Init refuses one only
    /// in a state the host never sends it in, and the host has moved on to
    /// the fresh group meanwhile: a refusal destroys the container, whose
    /// reset's answer, due next, is then never taken for another request's.
    fn take_regroup_answer(&mut self) -> Result<(), ContainerError> {
        let deadline = self.reply_deadline();
        match self.receive("regroup", deadline) {
            Ok(Reply::Ack) => Ok(()),
            Ok(other) => self.unexpected("regroup", &other),
            Err(refused @ ContainerError::Failed { .. }) => {
                self.kill_and_reap();
                Err(refused)
            }
            Err(error) => Err(error),
        }
    }

    /// Notes what a finished run means for the next: a fresh run group is
    /// due after one that had more than one task at once, or whose peak
    /// went untold although it ran; no next run after a failure of the
    /// container's cgroup.
    fn after_run(&mut self, result: &ExecResult) {
        // A cgroup init cannot set up for a run (removed from outside, say)
        // fails every later run too: the container ends here, so that a
        // pool replaces it.
        if result
            .error
            .as_ref()
            .is_some_and(|error| error.stage == hutch_protocol::Stage::Cgroup)
        {
            self.kill_and_reap();
            return;
        }
        let counts = self
            .cgroup
            .as_ref()
            .is_some_and(crate::cgroup::ContainerCgroup::counts_processes);
        let ran = result.termination != hutch_protocol::Termination::NotStarted;
        self.regroup_due |= counts
            && match result.processes_peak {
                Some(peak) => peak > 1,
                None => ran,
            };
    }

    /// Whether a reset begun with [`begin_reset`](Container::begin_reset)
    /// is answered by `deadline` (true at once when no reset is due), so
    /// that taking the answer will not wait. Does not take the answer.
    pub(crate) fn reset_answered_by(&mut self, deadline: Instant) -> bool {
        !self.reset_pending || self.readable_before(deadline)
    }

    /// Whether init's next reply is there to take (or the socket is broken,
    /// which taking it will tell) before `deadline`; remembered, so that
    /// taking it does not ask again.
    fn readable_before(&mut self, deadline: Instant) -> bool {
        self.readable = self.readable || sys::readable_before(self.channel.socket(), deadline);
        self.readable
    }

    /// [`readable_before`](Self::readable_before) `deadline` (with none,
    /// true at once: the receive waits as long as it takes), watching
    /// `watch` meanwhile: its peer's close calls its action and ends the
    /// watch, as does data the peer sent before it closed (what that means
    /// is known only once it is read), and the wait goes on.
    fn readable_watching(
        &mut self,
        deadline: Option<Instant>,
        watch: &mut Option<PeerWatch<'_>>,
    ) -> bool {
        loop {
            if self.readable {
                return true;
            }
            let Some(peer) = watch.as_ref() else {
                return deadline.is_none_or(|deadline| self.readable_before(deadline));
            };
            match sys::readable_or_peer_closed(self.channel.socket(), peer.socket, deadline) {
                sys::Woken::Readable => self.readable = true,
                sys::Woken::TimedOut => return false,
                sys::Woken::PeerClosed => {
                    (peer.closed)();
                    *watch = None;
                }
                sys::Woken::PeerSentMore => *watch = None,
            }
        }
    }

    /// Waits for the answer to a [`begin_reset`](Container::begin_reset),
    /// if one is due; a reset that failed is this call's error.
    pub fn finish_reset(&mut self) -> Result<(), ContainerError> {
        if !std::mem::take(&mut self.reset_pending) {
            return Ok(());
        }
        if std::mem::take(&mut self.regroup_pending) {
            self.take_regroup_answer()?;
        }
        let deadline = self.reply_deadline();
        match self.receive("reset", deadline)? {
            Reply::Ack => Ok(()),
            other => self.unexpected("reset", &other),
        }
    }

    /// Runs one program and waits for its verdict.
    ///
    /// A program that cannot be started (not found, not executable, a bad
    /// descriptor) gives a result with [`Status::RunnerError`] and its
    /// error; the container stays usable. A spec with a mistake of its
    /// builder's ([`ExecSpec::check`]) is refused with
    /// [`ContainerError::InvalidSpec`] before anything is sent. A fresh
    /// run group that is due but cannot be made destroys the container, as
    /// [`start`](Container::start) says.
    ///
    /// [`Status::RunnerError`]: hutch_protocol::Status::RunnerError
    pub fn exec(&mut self, spec: &ExecSpec<'_>) -> Result<ExecResult, ContainerError> {
        self.start(spec)?.wait()
    }

    /// Starts one program and returns at once; [`Run::wait`] gives its
    /// verdict. A fresh run group due since the last run (one with more
    /// than one task at once, and no reset since) is made first; one that
    /// cannot be made destroys the container and is this call's error
    /// ([`ContainerError::Regroup`]). Once this returns, init holds its own copies of the spec's
    /// descriptors: the caller may close its own, which is what lets the
    /// programs of two containers joined by a pipe see its end when the
    /// other one exits.
    ///
    /// Dropping the [`Run`] without waiting kills the container.
    pub fn start(&mut self, spec: &ExecSpec<'_>) -> Result<Run<'_>, ContainerError> {
        spec.check().map_err(ContainerError::InvalidSpec)?;
        self.regroup_now()?;
        self.set_affinity(spec.affinity())?;
        let (request, fds) = spec.wire();
        self.send(request, fds)?;
        let sent = Instant::now();
        let timeout = self.reply_timeout;
        let deadline = match spec.limits().wall_time_ns {
            Some(wall) => timeout
                .and_then(|t| Duration::from_nanos(wall).checked_add(t))
                .and_then(deadline_after),
            None => None,
        };
        Ok(Run {
            container: Some(self),
            deadline,
            sent,
        })
    }

    /// Narrows init's CPUs (and so the next program's) to `set`, or
    /// restores what they were before an earlier run narrowed them.
    fn set_affinity(&mut self, set: Option<&rustix::thread::CpuSet>) -> Result<(), ContainerError> {
        let pid = rustix::process::Pid::from_raw(self.pid);
        let affinity = |e: rustix::io::Errno| match e {
            rustix::io::Errno::INVAL => ContainerError::NoUsableCpu,
            e => ContainerError::Affinity(e.into()),
        };
        match (set, &self.saved_affinity) {
            (Some(set), saved) => {
                if saved.is_none() {
                    self.saved_affinity =
                        Some(rustix::thread::sched_getaffinity(pid).map_err(affinity)?);
                }
                rustix::thread::sched_setaffinity(pid, set).map_err(affinity)
            }
            (None, Some(saved)) => {
                rustix::thread::sched_setaffinity(pid, saved).map_err(affinity)?;
                self.saved_affinity = None;
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    /// Creates files inside the container and fills each from a descriptor
    /// of the host's, in as few requests as the frame allows; one result
    /// per file, in order.
    ///
    /// Init writes the files itself: no writable descriptor of a file a
    /// program may later execute ever exists in the host, where a
    /// concurrent `fork` elsewhere in the process could hold it open and
    /// make that exec fail with `ETXTBSY`. Files and missing parent
    /// directories (mode `0o755`) belong to the programs' user. A path no
    /// request may carry (a `..`, a NUL, too long) is its own item's
    /// [`CopyInError::Create`] (errno 0), not the others'.
    pub fn copy_in(
        &mut self,
        files: &[CopyInFile<'_, '_>],
    ) -> Result<Vec<Result<(), CopyInError>>, ContainerError> {
        self.require(features::INIT_COPY, "copy-in")?;
        self.in_batches(files, Self::copy_in_batch, |error| {
            Err(CopyInError::Create(error))
        })
    }

    /// `items` sent `batch` by batch, as many as a frame takes, one result
    /// per item. A batch refused before it was sent (one item no request
    /// may carry) is sent again item by item, and an item refused alone is
    /// its own error, `refused` of an [`ItemError`] with errno 0.
    fn in_batches<I, T>(
        &mut self,
        items: &[I],
        batch: impl Fn(&mut Self, &[I]) -> Result<Vec<T>, ContainerError>,
        refused: impl Fn(ItemError) -> T,
    ) -> Result<Vec<T>, ContainerError> {
        let mut results = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_FDS_PER_FRAME) {
            match batch(self, chunk) {
                // One bad item refuses its whole batch: each alone, then.
                Err(error) if error.refused_unsent() => {
                    for item in chunk {
                        match batch(self, std::slice::from_ref(item)) {
                            Ok(one) => results.extend(one),
                            Err(error) if error.refused_unsent() => {
                                results.push(refused(ItemError {
                                    errno: 0,
                                    message: crate::error_chain(&error),
                                }))
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                done => results.extend(done?),
            }
        }
        Ok(results)
    }

    fn copy_in_batch(
        &mut self,
        batch: &[CopyInFile<'_, '_>],
    ) -> Result<Vec<Result<(), CopyInError>>, ContainerError> {
        let items = batch
            .iter()
            .map(|file| CopyInItem {
                path: self.resolve(file.path),
                mode: file.mode,
            })
            .collect();
        let fds: Vec<BorrowedFd<'_>> = batch.iter().map(|file| file.source).collect();
        match self.call(&Request::CopyIn(items), &fds)? {
            Reply::CopiedIn(outcomes) if outcomes.len() == batch.len() => Ok(outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    CopyInOutcome::Done => Ok(()),
                    CopyInOutcome::Failed(failure) => {
                        let error = ItemError {
                            errno: failure.errno,
                            message: failure.message,
                        };
                        Err(match failure.step {
                            CopyInStep::Create => CopyInError::Create(error),
                            CopyInStep::Fill => CopyInError::Fill(error),
                        })
                    }
                })
                .collect()),
            other => self.unexpected("copy-in", &other),
        }
    }

    /// Opens files a run left, for reading: absolute paths, or relative to
    /// the work directory. Unlike [`open`](Container::open), no symbolic
    /// link is followed anywhere in a path (`ELOOP`), and only regular
    /// files are opened: a FIFO, device, socket or directory is refused
    /// (`EINVAL`) without being read from. One result per path, in order.
    /// A path no request may carry (a `..`, a NUL, too long) is its own
    /// item's error (errno 0), not the others'.
    pub fn open_for_copy_out(
        &mut self,
        paths: &[&str],
    ) -> Result<Vec<Result<OwnedFd, ItemError>>, ContainerError> {
        self.require(features::INIT_COPY, "copy-out")?;
        self.in_batches(paths, Self::copy_out_batch, Err)
    }

    fn copy_out_batch(
        &mut self,
        batch: &[&str],
    ) -> Result<Vec<Result<OwnedFd, ItemError>>, ContainerError> {
        let request = Request::CopyOut(batch.iter().map(|path| self.resolve(path)).collect());
        let reply = self.call(&request, &[])?;
        self.opened("copy-out", reply, batch.len())
    }

    fn require(&self, feature: u64, request: &'static str) -> Result<(), ContainerError> {
        if self.broken {
            Err(ContainerError::Destroyed)
        } else if self.init_features & feature == 0 {
            Err(ContainerError::Unsupported { request })
        } else {
            Ok(())
        }
    }

    /// The per-item results of an `Opened` reply to a request of `count`
    /// items, with the descriptors that came with it.
    fn opened(
        &mut self,
        request: &'static str,
        reply: Reply,
        count: usize,
    ) -> Result<Vec<Result<OwnedFd, ItemError>>, ContainerError> {
        let batch = match reply {
            Reply::Opened(batch) if batch.results.len() == count => batch,
            other => return self.unexpected(request, &other),
        };
        let mut fds = std::mem::take(&mut self.received).into_iter();
        Ok(batch
            .results
            .into_iter()
            .map(|outcome| match outcome {
                // Validation matched the count of Done items to the fds.
                ItemOutcome::Done => Ok(fds.next().expect("one fd per opened item")),
                ItemOutcome::Failed(error) => Err(error),
            })
            .collect())
    }

    /// A handle that stops the current run from another thread. Made once
    /// per container: later calls hand out the same handle, so that a job
    /// that may be cancelled costs no system call per command for it.
    pub fn killer(&self) -> Result<Killer, ContainerError> {
        if let Some(killer) = self.killer.get() {
            return Ok(killer.clone());
        }
        let socket = self
            .channel
            .socket()
            .try_clone_to_owned()
            .map_err(|source| ContainerError::Killer { source })?;
        let killer = Killer {
            channel: std::sync::Arc::new(std::sync::Mutex::new(Channel::new(socket))),
        };
        Ok(self.killer.get_or_init(|| killer).clone())
    }

    /// Kills init and everything in the container, and reaps init.
    pub fn destroy(mut self) {
        self.kill_and_reap();
    }

    /// Kills init and everything in the container, removes the container's
    /// cgroup, and returns without waiting for init to be gone: the kernel
    /// tears the namespaces down (unmounting the container's file system
    /// takes most of a destroy) while the caller goes on, and whoever reaps
    /// this process's children (its parent, when it exits first) collects
    /// init. For a process about to exit, as `hutch run` is.
    ///
    /// On cgroup v2 init lives in a group of the container's, which can
    /// only be removed once init has exited: there this waits for that
    /// (a second at most), though still not to reap it.
    pub fn destroy_without_waiting(mut self) {
        if !self.broken {
            self.broken = true;
            sys::pidfd_kill(&self.pidfd);
            if self
                .cgroup
                .iter()
                .chain(&self.held_cgroup)
                .any(crate::cgroup::ContainerCgroup::holds_init)
            {
                sys::pidfd_exits_within(&self.pidfd, 1000);
            }
        }
    }

    /// Sends one request and receives its one reply within the reply
    /// timeout; an error reply becomes [`ContainerError::Failed`].
    pub(crate) fn call(
        &mut self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Reply, ContainerError> {
        self.send(request, fds)?;
        let deadline = self.reply_deadline();
        self.receive(request.kind(), deadline)
    }

    /// Checks and sends one request.
    pub(crate) fn send(
        &mut self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ContainerError> {
        if self.broken {
            return Err(ContainerError::Destroyed);
        }
        // Answers come in order: a reset's is due before this request's.
        self.finish_reset()?;
        request
            .check(fds.len())
            .map_err(|source| ContainerError::InvalidRequest {
                kind: request.kind(),
                source,
            })?;
        match self.channel.send_request(request, fds) {
            Ok(()) => Ok(()),
            // Refused whole (it does not encode into a frame, or the socket
            // takes no datagram that long): init saw nothing of it.
            Err(cause)
                if matches!(&cause, ChannelError::Encode { .. })
                    || matches!(&cause, ChannelError::Socket { errno, .. }
                        if errno.raw_os_error() == Some(libc::EMSGSIZE)) =>
            {
                Err(ContainerError::TooLarge {
                    kind: request.kind(),
                    cause,
                })
            }
            Err(cause) => Err(self.gone(cause)),
        }
    }

    /// Receives the reply to the request `kind` sent last, giving up (and
    /// destroying the container) at `deadline`.
    pub(crate) fn receive(
        &mut self,
        kind: &'static str,
        deadline: Option<Instant>,
    ) -> Result<Reply, ContainerError> {
        self.receive_since(kind, deadline, Instant::now())
    }

    /// [`receive`](Self::receive) of a reply waited for since `since`: a
    /// [`ContainerError::NoReply`] tells the whole wait, not only this
    /// call's part of it.
    fn receive_since(
        &mut self,
        kind: &'static str,
        deadline: Option<Instant>,
        since: Instant,
    ) -> Result<Reply, ContainerError> {
        let known = std::mem::take(&mut self.readable);
        if let Some(deadline) = deadline.filter(|_| !known) {
            if !sys::readable_before(self.channel.socket(), deadline) {
                self.kill_and_reap();
                return Err(ContainerError::NoReply {
                    request: kind,
                    waited: since.elapsed(),
                });
            }
        }
        let reply = match self.channel.recv_reply(&mut self.received) {
            Ok(reply) => reply,
            Err(cause) => {
                // A frame that does not decode may still have brought
                // descriptors: close them now, not when the broken container
                // is dropped.
                self.received.clear();
                return Err(self.gone(cause));
            }
        };
        if let Err(source) = reply.check(self.received.len()) {
            let kind = reply.kind();
            self.received.clear();
            self.kill_and_reap();
            return Err(ContainerError::InvalidReply { kind, source });
        }
        match reply {
            Reply::Error(error) => Err(error.into()),
            reply => Ok(reply),
        }
    }

    fn unexpected<T>(&mut self, request: &'static str, reply: &Reply) -> Result<T, ContainerError> {
        self.received.clear();
        self.kill_and_reap();
        Err(ContainerError::UnexpectedReply {
            request,
            reply: reply.kind(),
        })
    }

    /// The connection broke: make sure init is dead and say how it ended.
    fn gone(&mut self, cause: ChannelError) -> ContainerError {
        self.broken = true;
        // Init closes the socket only by exiting: give it a moment to
        // finish. A frame that does not decode came from an init still
        // running, which the host no longer trusts: no waiting for it.
        let closed = matches!(cause, ChannelError::Closed | ChannelError::Socket { .. });
        let status = if closed && sys::pidfd_exits_within(&self.pidfd, 200) {
            sys::pidfd_reap(&self.pidfd)
        } else {
            sys::pidfd_kill(&self.pidfd);
            format!("killed by the host after: {}", sys::pidfd_reap(&self.pidfd))
        };
        ContainerError::InitGone { status, cause }
    }

    fn kill_and_reap(&mut self) {
        if !self.broken {
            self.broken = true;
            if self.shares_pid_namespace {
                // No PID namespace ends with init here, so what a run
                // started would outlive a killed init. Closing the socket
                // makes init kill and reap everything of its run, and exit;
                // it is killed only if it has not within a second.
                sys::close_connection(self.channel.socket());
                sys::pidfd_exits_within(&self.pidfd, SHARED_PID_NAMESPACE_EXIT_MS);
            }
            sys::pidfd_kill(&self.pidfd);
            sys::pidfd_reap(&self.pidfd);
        }
    }

    /// Init's pidfd.
    pub(crate) fn init_pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.pidfd)
    }

    /// The socket, for tests that speak raw frames.
    #[doc(hidden)]
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.channel.socket()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// A program started by [`Container::start`]: wait for its verdict.
#[derive(Debug)]
#[must_use = "a run not waited for is killed with its container"]
pub struct Run<'c> {
    container: Option<&'c mut Container>,
    deadline: Option<Instant>,
    /// When the exec request went out: the wait for its answer began.
    sent: Instant,
}

impl Run<'_> {
    /// Waits for the program to end and returns its verdict; gives up, and
    /// destroys the container, when init has not answered by the reply
    /// timeout past the run's wall-clock limit.
    pub fn wait(mut self) -> Result<ExecResult, ContainerError> {
        let container = self.container.take().expect("present until waited for");
        match container.receive_since("exec", self.deadline, self.sent)? {
            Reply::Finished(result) => {
                container.after_run(&result);
                Ok(result)
            }
            other => container.unexpected("exec", &other),
        }
    }

    /// Waits like [`wait`](Self::wait), and meanwhile stops the run (as a
    /// [`Killer`] would) once one of `files`, regular files the program
    /// writes, is longer than the number of bytes given with it. An
    /// in-memory collector past its `max` then ends the run soon after, not
    /// at the output limit or the memory limit: what a program writes into
    /// a memory file is memory charged to its run.
    ///
    /// The sizes are looked at first when the nearest cap could be passed
    /// if every CPU wrote into memory files as fast as they can, then again
    /// on the same rule, and never more often than every millisecond: a run
    /// that ends sooner costs one `fstat` per file. While the files do not
    /// grow, the checks thin out, to one every 8 ms: a run that computes for
    /// seconds before it prints costs about 125 checks a second, not 1000.
    pub fn wait_capping(
        self,
        files: &[(BorrowedFd<'_>, u64)],
    ) -> Result<ExecResult, ContainerError> {
        self.wait_capped(files, None).map(|(result, _)| result)
    }

    /// [`wait_capping`](Self::wait_capping), telling also whether it sent
    /// the kill; meanwhile, until init answers, a close of `peer`'s socket
    /// by its peer calls its action, once.
    pub(crate) fn wait_capped(
        mut self,
        files: &[(BorrowedFd<'_>, u64)],
        mut peer: Option<PeerWatch<'_>>,
    ) -> Result<(ExecResult, bool), ContainerError> {
        let mut killed = false;
        let container = self.container.as_mut().expect("present until waited for");
        if !files.is_empty() {
            let mut quiet = MIN_CAP_CHECK;
            let mut written_before = None;
            loop {
                let Some(sizes) = room_under_caps(files) else {
                    // The program ends as killed; if the kill cannot be
                    // sent, the channel is broken and the wait says so.
                    killed = container.channel.send_request(&Request::Kill, &[]).is_ok();
                    break;
                };
                quiet = next_quiet_check(quiet, written_before == Some(sizes.written));
                written_before = Some(sizes.written);
                let check = Instant::now() + time_to_fill(sizes.room).max(quiet);
                if self.deadline.is_some_and(|deadline| deadline <= check)
                    || container.readable_watching(Some(check), &mut peer)
                {
                    break;
                }
            }
        }
        if peer.is_some() {
            container.readable_watching(self.deadline, &mut peer);
        }
        self.wait().map(|result| (result, killed))
    }
}

/// A connected stream socket watched while a run is waited for
/// ([`Run::wait_capped`]): when its peer closes the connection (or it
/// fails), `closed` is called.
pub(crate) struct PeerWatch<'a> {
    /// The socket.
    pub(crate) socket: BorrowedFd<'a>,
    /// What a close does.
    pub(crate) closed: &'a dyn Fn(),
}

/// The fastest a run is taken to fill memory files, per CPU. One `dd` into a
/// tmpfs file on the development machine wrote 2.6 GB/s.
const FILL_BYTES_PER_SECOND_PER_CPU: u64 = 4 << 30;
/// The most often [`Run::wait_capping`] looks at the sizes.
const MIN_CAP_CHECK: Duration = Duration::from_millis(1);
/// The least often [`Run::wait_capping`] looks at the sizes while they stay
/// the same. A flood that starts right after a quiet spell goes unseen for
/// at most this long: 21 MB at the 2.6 GB/s of one `dd` into a tmpfs file,
/// which the run's memory limit counts.
const MAX_QUIET_CAP_CHECK: Duration = Duration::from_millis(8);

/// The least time to the next look at the sizes: back to
/// [`MIN_CAP_CHECK`] once the files grew, else twice as long as the last,
/// up to [`MAX_QUIET_CAP_CHECK`].
fn next_quiet_check(last: Duration, unchanged: bool) -> Duration {
    if unchanged {
        last.saturating_mul(2).min(MAX_QUIET_CAP_CHECK)
    } else {
        MIN_CAP_CHECK
    }
}

/// What [`room_under_caps`] found.
#[derive(Debug, PartialEq, Eq)]
struct Sizes {
    /// How many more bytes the files can take before one is over its cap.
    room: u64,
    /// The bytes in all of them.
    written: u64,
}

/// The room under the caps and what the files hold; `None` when one is
/// over its cap already. A file that cannot be looked at is left out.
fn room_under_caps(files: &[(BorrowedFd<'_>, u64)]) -> Option<Sizes> {
    let mut sizes = Sizes {
        room: u64::MAX,
        written: 0,
    };
    for (file, cap) in files {
        let Ok(stat) = rustix::fs::fstat(file) else {
            continue;
        };
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > *cap {
            return None;
        }
        sizes.room = sizes.room.min((cap - size).saturating_add(1));
        sizes.written = sizes.written.saturating_add(size);
    }
    Some(sizes)
}

/// How long the fastest writer takes to write `room` bytes, at least
/// [`MIN_CAP_CHECK`].
fn time_to_fill(room: u64) -> Duration {
    static CPUS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let cpus =
        *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let per_second = u128::from(FILL_BYTES_PER_SECOND_PER_CPU) * u128::from(cpus);
    let nanos = u128::from(room) * 1_000_000_000 / per_second;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).max(MIN_CAP_CHECK)
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        // Its reply would be taken for the next request's.
        if let Some(container) = self.container.take() {
            container.kill_and_reap();
        }
    }
}

// One request at a time through `&mut self`, but movable between threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Container>();
};

/// Stops a container's current run from another thread: the blocked
/// [`Container::exec`] then returns the run's result, killed by `SIGKILL`.
/// With no run under way, a kill does nothing. Clones stop the same
/// container's runs.
#[derive(Clone)]
pub struct Killer {
    channel: std::sync::Arc<std::sync::Mutex<Channel>>,
}

impl std::fmt::Debug for Killer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Killer").finish_non_exhaustive()
    }
}

impl Killer {
    /// Kills the program running in the container, and everything it
    /// started.
    pub fn kill(&self) -> Result<(), ChannelError> {
        let mut channel = self
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channel.send_request(&Request::Kill, &[])
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn memory_file(len: u64) -> OwnedFd {
        let file = rustix::fs::memfd_create("cap-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&file, len).unwrap();
        file
    }

    fn sizes(room: u64, written: u64) -> Option<Sizes> {
        Some(Sizes { room, written })
    }

    #[test]
    fn the_room_is_what_the_fullest_file_can_take_before_it_is_over() {
        let (a, b) = (memory_file(10), memory_file(100));
        assert_eq!(
            room_under_caps(&[(a.as_fd(), 15), (b.as_fd(), 1000)]),
            sizes(6, 110)
        );
        assert_eq!(
            room_under_caps(&[(a.as_fd(), 10)]),
            sizes(1, 10),
            "at the cap"
        );
        assert_eq!(room_under_caps(&[(a.as_fd(), 9), (b.as_fd(), 1000)]), None);
        assert_eq!(
            room_under_caps(&[(a.as_fd(), u64::MAX)]),
            sizes(u64::MAX - 9, 10),
            "no overflow at the largest cap"
        );
        let empty = memory_file(0);
        assert_eq!(
            room_under_caps(&[(empty.as_fd(), u64::MAX)]),
            sizes(u64::MAX, 0),
            "an empty file under the largest cap"
        );
        assert_eq!(room_under_caps(&[]), sizes(u64::MAX, 0));
    }

    #[test]
    fn checks_thin_out_while_nothing_is_written_and_come_back_when_it_is() {
        let mut quiet = MIN_CAP_CHECK;
        let mut seen = Vec::new();
        for _ in 0..6 {
            quiet = next_quiet_check(quiet, true);
            seen.push(quiet.as_millis());
        }
        assert_eq!(seen, [2, 4, 8, 8, 8, 8]);
        assert_eq!(next_quiet_check(quiet, false), MIN_CAP_CHECK);
    }

    #[test]
    fn checks_come_when_the_room_could_fill_but_at_most_every_millisecond() {
        assert_eq!(time_to_fill(1), MIN_CAP_CHECK);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let second = FILL_BYTES_PER_SECOND_PER_CPU * cpus;
        assert_eq!(time_to_fill(second), Duration::from_secs(1));
        assert_eq!(time_to_fill(second / 8), Duration::from_millis(125));
        // The largest room gives a long wait, not an overflow.
        assert!(time_to_fill(u64::MAX) > Duration::from_secs(3600));
    }
}
