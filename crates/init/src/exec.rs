//! Running one program: prepare, spawn, supervise, reap, judge.

use alloc::borrow::ToOwned;
use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;
use core::ffi::{c_char, c_int};
use core::time::Duration;

use rustix::fd::{AsFd, OwnedFd};

use hutch_protocol::{
    Accounting, CgroupVersion, ErrorReply, ExecRequest, ExecResult, Limits, Request, Resource,
    Stage, Status, Termination,
};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;

use crate::cgroup::{Baseline, Cgroup};
use crate::channel::{Channel, ChannelError};
use crate::os::{self, Instant};

/// The shortest sleep between two reads of the run's CPU time near its
/// limit: a run overshoots by at most this times the number of CPUs.
const MIN_CPU_CHECK: Duration = Duration::from_micros(500);
use crate::sys::{self, Plan};

/// What the supervisor saw end the run.
enum Ending {
    /// The program exited by itself.
    Exited,
    /// The wall-clock limit passed.
    WallTime,
    /// The run's CPU time, measured by the cgroup, passed its limit.
    CpuTime,
    /// The host asked for a kill.
    Killed,
}

/// Why an exec could not be carried out at all.
pub enum ExecFailure {
    /// The program could not be started; the container stays usable.
    Runner(ErrorReply),
    /// The connection to the host broke: init must exit.
    Channel(ChannelError),
}

fn runner(stage: Stage, errno: i32, path: Option<&str>, message: String) -> ExecFailure {
    ExecFailure::Runner(ErrorReply {
        stage,
        errno,
        path: path.map(str::to_owned),
        message,
    })
}

/// Container-wide defaults an exec falls back on.
pub struct Defaults<'a> {
    /// The container's cgroup, when the host set one up.
    pub cgroup: Option<&'a mut Cgroup>,
    /// init sweeps its IPC namespace after each run; otherwise every run
    /// gets an IPC namespace of its own.
    pub ipc_swept: bool,
    /// Work directory.
    pub workdir: &'a str,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The writable tmpfs mounts, where an output-limited file may lie.
    pub scratch: &'a [OwnedFd],
    /// The stack a child runs on until it execs.
    pub stack: &'a mut [u8],
    /// What a run's preparation fills, kept from run to run.
    pub buffers: &'a mut RunBuffers,
}

/// The program's path, arguments, environment, directory, limits, filter
/// and descriptors as its child needs them, in buffers reused from run to
/// run: once they have grown to a run's size, preparing another run of
/// that size allocates nothing.
#[derive(Default)]
pub struct RunBuffers {
    /// The resolved program path, NUL-terminated (just the NUL with
    /// `exec_fd`).
    path: Vec<u8>,
    /// The arguments, the environment and the directory, each
    /// NUL-terminated, end to end.
    strings: Vec<u8>,
    /// Pointers into `strings`: the arguments, null, the environment, null.
    pointers: Vec<*const c_char>,
    /// Where the environment's pointers start in `pointers`.
    envp_at: usize,
    /// Where the directory starts in `strings`.
    cwd_at: usize,
    rlimits: Vec<(c_int, u64, u64)>,
    seccomp: Vec<libc::sock_filter>,
    fds: Vec<c_int>,
    /// Files over the output limit before the run: (device, inode, size).
    big: Vec<(u64, u64, u64)>,
    /// Directories still to walk when looking for them.
    dirs: Vec<OwnedFd>,
}

impl RunBuffers {
    /// Prepares `request`'s run (a bare program name looked up in its
    /// starting directory, then through its `PATH`).
    fn fill(
        &mut self,
        request: &ExecRequest,
        fds: &[OwnedFd],
        workdir: &str,
        cgroup_watches_cpu: bool,
    ) -> Result<(), ExecFailure> {
        self.path.clear();
        if request.exec_fd.is_none() {
            let env_path = request
                .env
                .iter()
                .find_map(|entry| entry.strip_prefix("PATH="))
                .unwrap_or(hutch_protocol::DEFAULT_PATH);
            let cwd = request.cwd.as_deref().unwrap_or(workdir);
            if !lookup_into(&request.argv[0], cwd, env_path, &mut self.path) {
                return Err(runner(
                    Stage::Execve,
                    libc::ENOENT,
                    Some(&request.argv[0]),
                    format!(
                        "program {:?} not found in {cwd:?} or PATH {env_path:?}",
                        request.argv[0]
                    ),
                ));
            }
        } else {
            self.path.push(0);
        }
        // Validation guarantees no string holds a NUL.
        self.strings.clear();
        for text in request.argv.iter().chain(&request.env) {
            self.strings.extend_from_slice(text.as_bytes());
            self.strings.push(0);
        }
        self.cwd_at = self.strings.len();
        let cwd = request.cwd.as_deref().unwrap_or(workdir);
        self.strings.extend_from_slice(cwd.as_bytes());
        self.strings.push(0);
        // The arguments' pointers, a null one, the environment's, a null one.
        self.pointers.clear();
        let mut starts = self
            .strings
            .split_inclusive(|&b| b == 0)
            .map(|text| text.as_ptr().cast::<c_char>());
        self.pointers
            .extend(starts.by_ref().take(request.argv.len()));
        self.pointers.push(core::ptr::null());
        self.envp_at = self.pointers.len();
        self.pointers.extend(starts.take(request.env.len()));
        self.pointers.push(core::ptr::null());
        rlimits(request, cgroup_watches_cpu, &mut self.rlimits);
        self.seccomp.clear();
        self.seccomp
            .extend(request.seccomp.iter().map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            }));
        self.fds.clear();
        self.fds.extend(
            request
                .fd_map
                .iter()
                .map(|&index| sys::raw(&fds[index as usize])),
        );
        Ok(())
    }

    fn path(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.path).expect("the path ends in its only NUL")
    }

    fn argv(&self) -> &[*const c_char] {
        &self.pointers[..self.envp_at]
    }

    fn envp(&self) -> &[*const c_char] {
        &self.pointers[self.envp_at..]
    }

    fn cwd(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.strings[self.cwd_at..])
            .expect("the directory ends in its only NUL")
    }
}

/// Runs `request` with the descriptors `fds` that came with it; talks to the
/// host through `channel` for a synchronised exec and for kills.
pub fn run(
    request: &ExecRequest,
    fds: &[OwnedFd],
    defaults: &mut Defaults<'_>,
    channel: &mut Channel,
) -> Result<ExecResult, ExecFailure> {
    let buffers = &mut *defaults.buffers;
    buffers.fill(request, fds, defaults.workdir, defaults.cgroup.is_some())?;
    let (err_read, err_write) = sys::pipe().map_err(|e| os(Stage::Spawn, e, "error pipe"))?;
    let sync = if request.sync {
        Some(sys::pipe().map_err(|e| os(Stage::Spawn, e, "sync pipe"))?)
    } else {
        None
    };
    let baseline = match defaults.cgroup.as_deref_mut() {
        Some(cgroup) => Some(
            cgroup
                .prepare(&request.limits)
                .map_err(|e| os(Stage::Cgroup, e, "cannot prepare the cgroup"))?,
        ),
        None => None,
    };
    let cgroup_procs = defaults
        .cgroup
        .as_deref()
        .map(Cgroup::procs)
        .unwrap_or_default();
    if let Some(limit) = request.limits.output_bytes {
        let buffers = &mut *defaults.buffers;
        buffers.big.clear();
        let big = &mut buffers.big;
        files_over_limit(fds, defaults.scratch, limit, &mut buffers.dirs, |file| {
            big.push(file)
        });
    }
    let cgroup_dir = defaults.cgroup.as_deref().map_or(-1, Cgroup::dir);
    let buffers = &*defaults.buffers;
    let plan = Plan {
        cgroup_procs,
        cgroup_dir,
        fds: &buffers.fds,
        exec_fd: request.exec_fd.map_or(-1, |i| sys::raw(&fds[i as usize])),
        path: buffers.path(),
        argv: buffers.argv(),
        envp: buffers.envp(),
        cwd: buffers.cwd(),
        rlimits: &buffers.rlimits,
        new_ipc: !defaults.ipc_swept,
        uid: request.uid.unwrap_or(defaults.uid),
        gid: request.gid.unwrap_or(defaults.gid),
        seccomp: &buffers.seccomp,
        err_pipe: sys::raw(&err_write),
        sync_pipe: sync.as_ref().map_or(-1, |(r, _)| sys::raw(r)),
    };
    // Wall-clock time runs from before the program's process exists: with
    // CLONE_VFORK init only resumes once the child has exec'd, and may
    // then wait for a CPU while the program runs, so a clock started after
    // the clone would miss part (for a short program, nearly all) of it.
    let mut start = Instant::now();
    let child = if request.sync {
        sys::spawn(&plan)
    } else {
        sys::spawn_vfork(&plan, defaults.stack)
    }
    .map_err(|e| {
        // A group that refuses a program created inside it (removed from
        // outside, say) refuses every later one: a cgroup failure, which
        // ends the container. Running out of processes or memory is the
        // run's own failure, as without a group.
        let refused_by_group = cgroup_dir >= 0
            && matches!(
                e.raw_os_error(),
                Some(
                    libc::ENOENT
                        | libc::ENODEV
                        | libc::EBUSY
                        | libc::EOPNOTSUPP
                        | libc::EACCES
                        | libc::EPERM
                        | libc::EBADF
                )
            );
        if refused_by_group {
            os(Stage::Cgroup, e, "clone into the run's cgroup")
        } else {
            os(Stage::Spawn, e, "clone")
        }
    })?;
    drop(err_write);

    if let Some((sync_read, sync_write)) = sync {
        drop(sync_read);
        channel
            .send_reply(
                &hutch_protocol::Reply::Started {
                    pid: child.pid as u32,
                },
                &[],
            )
            .map_err(ExecFailure::Channel)?;
        let mut extra = Vec::new();
        match channel
            .recv_request(&mut extra)
            .map_err(ExecFailure::Channel)?
        {
            Request::Proceed => {
                start = Instant::now();
                rustix::io::write(&sync_write, &[1])
                    .map_err(|e| os(Stage::Spawn, e.into(), "sync pipe"))?;
            }
            // Kill, or anything else: the run does not start.
            _ => {
                drop(sync_write);
                reap_all(&child);
                return Ok(not_started(
                    Stage::Spawn,
                    0,
                    "the host cancelled the run before it started".into(),
                ));
            }
        }
    }

    // The error pipe closes at exec; 8 bytes mean the child failed first.
    // The wall-clock limit already runs: a child stuck before exec is
    // killed at it like any other.
    let deadline = request
        .limits
        .wall_time_ns
        .map(|ns| start + Duration::from_nanos(ns));
    match await_start(&err_read, deadline).map_err(|e| os(Stage::Spawn, e, "error pipe"))? {
        Start::Execd => {}
        Start::TimedOut => {
            let wall = start.elapsed();
            let (status, usage) = reap_all(&child);
            return Ok(judge(
                Ending::WallTime,
                status,
                &usage,
                wall,
                &request.limits,
                false,
            ));
        }
        Start::Failed { stage, errno } => {
            reap_all(&child);
            let stage = stage_from(stage);
            let cwd = request.cwd.as_deref().unwrap_or(defaults.workdir);
            let what = match stage {
                Stage::Execve => format!("cannot execute {:?}", request.argv[0]),
                Stage::Rlimit => match above_hard_limit(&defaults.buffers.rlimits) {
                    Some((resource, wanted, hard)) => format!(
                        "program setup failed at Rlimit: {} of {wanted} is above the \
                         hard limit of {hard} the host process has, which no \
                         container can raise",
                        rlimit_name(resource)
                    ),
                    None => "program setup failed at Rlimit".into(),
                },
                Stage::Chdir => format!("program setup failed at Chdir: cannot enter {cwd:?}"),
                Stage::Credentials => format!(
                    "program setup failed at Credentials: cannot become uid {} gid {}",
                    plan.uid, plan.gid
                ),
                other => format!("program setup failed at {other:?}"),
            };
            let message = format!("{what}: {}", os::Error::from_raw_os_error(errno));
            return Ok(not_started_with(ErrorReply {
                stage,
                errno,
                path: (stage == Stage::Chdir).then(|| cwd.to_owned()),
                message,
            }));
        }
    }

    let meter = match (defaults.cgroup.as_deref(), &baseline) {
        (Some(cgroup), Some(base)) => Some((cgroup, base)),
        _ => None,
    };
    let ending = supervise(&child, request.limits, start, meter, channel)?;
    let wall = start.elapsed();
    let (status, mut usage) = reap_all(&child);
    let mut accounting = Accounting::Rusage;
    let mut oom_killed = false;
    let mut processes_peak = None;
    if let Some((cgroup, base)) = meter {
        let measured = cgroup
            .measure(base)
            .map_err(|e| os(Stage::Cgroup, e, "cannot read the cgroup's usage"))?;
        usage.user_ns = measured.user_ns;
        usage.system_ns = measured.system_ns;
        // Otherwise the largest peak of the run's processes, from rusage.
        if let Some(peak) = measured.peak_bytes {
            usage.max_rss_bytes = peak;
        }
        oom_killed = measured.oom_killed;
        processes_peak = measured.processes_peak;
        accounting = match cgroup.version() {
            CgroupVersion::V1 => Accounting::CgroupV1,
            CgroupVersion::V2 => Accounting::CgroupV2,
        };
    }
    if let Some(limit) = request.limits.output_bytes {
        // `RLIMIT_FSIZE` is one byte above the limit: a file the run wrote
        // past the limit shows it, even when the writer ignored SIGXFSZ or a
        // shell reaped it.
        if !usage.file_size_signal {
            let buffers = &mut *defaults.buffers;
            let before = &buffers.big;
            files_over_limit(fds, defaults.scratch, limit, &mut buffers.dirs, |file| {
                usage.file_size_signal |= !before.contains(&file);
            });
        }
    }
    let mut result = judge(ending, status, &usage, wall, &request.limits, oom_killed);
    result.accounting = accounting;
    result.processes_peak = processes_peak;
    Ok(result)
}

/// Regular files longer than `limit` (device, inode, size) among the
/// descriptors the program may write and under the writable tmpfs mounts.
/// Taken before and after a run: a file that is new in the list, or grew,
/// was written past the limit by the run (`RLIMIT_FSIZE`, one byte above
/// the limit, stops it there), even if the writer ignored `SIGXFSZ`.
fn files_over_limit(
    fds: &[OwnedFd],
    scratch: &[OwnedFd],
    limit: u64,
    dirs: &mut Vec<OwnedFd>,
    mut found: impl FnMut((u64, u64, u64)),
) {
    let mut note = |st: &rustix::fs::Stat| {
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
            && st.st_size as u64 > limit
        {
            found((st.st_dev, st.st_ino, st.st_size as u64));
        }
    };
    for fd in fds {
        let writable = rustix::fs::fcntl_getfl(fd)
            .is_ok_and(|flags| flags & OFlags::ACCMODE != OFlags::RDONLY);
        if let (true, Ok(st)) = (writable, rustix::fs::fstat(fd)) {
            note(&st);
        }
    }
    // The tmpfs mounts hold a bounded number of inodes; walk those that
    // hold any.
    for root in scratch
        .iter()
        .filter(|root| !os::holds_nothing(root.as_fd()))
    {
        os::each_file_under(root.as_fd(), dirs, &mut note);
    }
}

fn os(stage: Stage, err: os::Error, what: &str) -> ExecFailure {
    runner(
        stage,
        err.raw_os_error().unwrap_or(0),
        None,
        format!("{what}: {err}"),
    )
}

/// The result of a run that never started.
pub fn not_started_with(error: ErrorReply) -> ExecResult {
    ExecResult {
        status: Status::RunnerError,
        termination: Termination::NotStarted,
        user_time_ns: 0,
        system_time_ns: 0,
        memory_bytes: 0,
        wall_time_ns: 0,
        accounting: Accounting::Rusage,
        error: Some(error),
        processes_peak: None,
    }
}

fn not_started(stage: Stage, errno: i32, message: String) -> ExecResult {
    not_started_with(ErrorReply {
        stage,
        errno,
        path: None,
        message,
    })
}

fn stage_from(raw: u32) -> Stage {
    const STAGES: [Stage; 10] = [
        Stage::Spawn,
        Stage::Fds,
        Stage::Cgroup,
        Stage::Rlimit,
        Stage::Chdir,
        Stage::Credentials,
        Stage::Capabilities,
        Stage::Seccomp,
        Stage::Execve,
        Stage::Wait,
    ];
    STAGES
        .into_iter()
        .find(|s| *s as u32 == raw)
        .unwrap_or(Stage::Spawn)
}

/// Waits until `fd` is readable (`true`) or `deadline` passes (`false`).
fn wait_readable(fd: &impl rustix::fd::AsFd, deadline: Option<Instant>) -> bool {
    loop {
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                Some(rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
            None => None,
        };
        let mut polls = [PollFd::new(fd, PollFlags::IN)];
        match rustix::event::poll(&mut polls, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            // Let the read report it.
            Err(_) => return true,
        }
    }
}

/// Waits for the program's exit, the wall-clock limit or a kill from the
/// host, whichever comes first.
///
/// With a cgroup and a CPU limit, it also watches the run's CPU time without
/// a fixed tick: it sleeps for as long as the remaining budget would last
/// if every CPU spent it, so it never wakes after the budget is gone, and
/// wakes ever more often as the budget runs out.
fn supervise(
    child: &sys::Child,
    limits: Limits,
    start: Instant,
    meter: Option<(&Cgroup, &Baseline)>,
    channel: &mut Channel,
) -> Result<Ending, ExecFailure> {
    let deadline = limits
        .wall_time_ns
        .map(|ns| start + Duration::from_nanos(ns));
    let cpu_limit = limits.cpu_time_ns.filter(|_| meter.is_some());
    let cpus = u64::from(sys::cpu_count());
    loop {
        let mut sleep: Option<Duration> = None;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Ending::WallTime);
            }
            sleep = Some(left);
        }
        if let (Some(limit), Some((cgroup, base))) = (cpu_limit, meter) {
            let used = cgroup
                .cpu_total(base)
                .map_err(|e| os(Stage::Wait, e, "cannot read the cgroup's CPU time"))?;
            if used >= limit {
                return Ok(Ending::CpuTime);
            }
            let budget = Duration::from_nanos((limit - used) / cpus).max(MIN_CPU_CHECK);
            sleep = Some(sleep.map_or(budget, |s| s.min(budget)));
        }
        let timeout = sleep.map(|left| rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        });
        let socket = channel.socket();
        let mut polls = [
            PollFd::new(&child.pidfd, PollFlags::IN),
            PollFd::new(&socket, PollFlags::IN),
        ];
        match rustix::event::poll(&mut polls, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(os(Stage::Wait, e.into(), "poll")),
        }
        if !polls[0].revents().is_empty() {
            return Ok(Ending::Exited);
        }
        if !polls[1].revents().is_empty() {
            let mut extra = Vec::new();
            match channel.recv_request(&mut extra) {
                Ok(Request::Kill) => return Ok(Ending::Killed),
                Ok(other) => {
                    // One request at a time: anything else is a host bug.
                    let reply = hutch_protocol::Reply::Error(ErrorReply {
                        stage: Stage::State,
                        errno: 0,
                        path: None,
                        message: format!("{} request while a program runs", other.kind()),
                    });
                    channel
                        .send_reply(&reply, &[])
                        .map_err(ExecFailure::Channel)?;
                }
                Err(e) => {
                    reap_all(child);
                    return Err(ExecFailure::Channel(e));
                }
            }
        }
    }
}

/// Kills everything left in the container, reaps every child, and returns
/// the program's wait status and the summed usage of every reaped process.
fn reap_all(child: &sys::Child) -> (c_int, Usage) {
    let program = child.pid;
    let mut usage = Usage::default();
    let mut status = None;
    if !sys::has_ended(&child.pidfd) {
        // Still running (a limit, a kill, a failure): it goes with the rest
        // of its run at once, so that none of it works on after it. SIGKILL
        // ends it whatever it does (a stop by a tracer included); once it
        // has, what it started, a tracer among them, is init's.
        sys::kill(program);
        sys::kill_all();
        wait_readable(&child.pidfd, None);
    }
    // The program first, so its status is not lost among the others.
    if let Ok(Some(reaped)) = sys::wait4(program, true) {
        status = Some(reaped.status);
        usage.add(&reaped.usage);
        // Everything the run started descends from init: a process whose
        // parent dies is reparented to init (PID 1 of the namespace, or a
        // child subreaper). With no child of init left, nothing of the run
        // is, and the sweep is skipped: as PID 1 it is `kill(-1)`, which
        // walks every task of the machine.
        if !sys::has_children() {
            return (status.unwrap_or(0), usage);
        }
    }
    // Something of the run is left: what the program started, or the
    // program itself, not reaped because a process of its run traces it (a
    // policy that allows ptrace): its tracer is told of its end first and
    // may never collect it, and init cannot reap it while the tracer lives.
    // The sweep kills the rest, the tracer too, and reaps the program among
    // them.
    sweep(|reaped| {
        if status.is_none() && reaped.pid == program {
            status = Some(reaped.status);
        }
        usage.add(&reaped.usage);
        if libc::WIFSIGNALED(reaped.status) {
            match libc::WTERMSIG(reaped.status) {
                libc::SIGXCPU => usage.cpu_limit_signal = true,
                libc::SIGXFSZ => usage.file_size_signal = true,
                _ => {}
            }
        }
    });
    (status.unwrap_or(0), usage)
}

/// How long a sweep without a PID namespace waits for what it killed
/// before it looks again: 1 ms.
const SWEEP_PAUSE_NS: u64 = 1_000_000;

/// Kills every process of the container but init and reaps each, calling
/// `reaped` for each one. As PID 1 one kill reaches them all, and waiting
/// for them cannot outlast them. Otherwise each round kills the children
/// init has then, and a process whose parent ends becomes init's child
/// only then: a round must not wait for good, since the only children left
/// may be ones init cannot reap (traced by a process the round did not
/// reach). So it reaps what has ended and looks again after a pause.
fn sweep(mut reaped: impl FnMut(&sys::Reaped)) {
    if sys::kills_all_at_once() {
        loop {
            sys::kill_all();
            let Ok(Some(one)) = sys::wait4(-1, false) else {
                return;
            };
            reaped(&one);
        }
    }
    loop {
        sys::kill_all();
        while let Ok(Some(one)) = sys::wait4(-1, true) {
            reaped(&one);
        }
        if !sys::has_children() {
            return;
        }
        sys::pause_ns(SWEEP_PAUSE_NS);
    }
}

/// Kills and reaps everything in the container, for init's exit.
pub fn end_everything() {
    sweep(|_| {});
}

#[derive(Default)]
struct Usage {
    user_ns: u64,
    system_ns: u64,
    max_rss_bytes: u64,
    /// Some process of the run died of `SIGXCPU`.
    cpu_limit_signal: bool,
    /// Some process of the run died of `SIGXFSZ`.
    file_size_signal: bool,
}

impl Usage {
    fn add(&mut self, ru: &libc::rusage) {
        let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
        self.user_ns += ns(ru.ru_utime);
        self.system_ns += ns(ru.ru_stime);
        self.max_rss_bytes = self.max_rss_bytes.max(ru.ru_maxrss as u64 * 1024);
    }
}

fn judge(
    ending: Ending,
    status: c_int,
    usage: &Usage,
    wall: Duration,
    limits: &Limits,
    oom_killed: bool,
) -> ExecResult {
    let termination = if libc::WIFEXITED(status) {
        Termination::Exited(libc::WEXITSTATUS(status))
    } else {
        Termination::Signalled(libc::WTERMSIG(status))
    };
    let cpu = usage.user_ns + usage.system_ns;
    let over_cpu = limits.cpu_time_ns.is_some_and(|limit| cpu > limit);
    let verdict = match (ending, termination) {
        (Ending::WallTime, _) => Status::WallTimeLimit,
        (Ending::CpuTime, _) => Status::TimeLimit,
        _ if oom_killed => Status::MemoryLimit,
        (_, Termination::Signalled(libc::SIGXCPU)) => Status::TimeLimit,
        _ if usage.cpu_limit_signal && limits.cpu_time_ns.is_some() => Status::TimeLimit,
        _ if over_cpu => Status::TimeLimit,
        (_, Termination::Signalled(libc::SIGXFSZ)) if limits.output_bytes.is_some() => {
            Status::OutputLimit
        }
        _ if usage.file_size_signal && limits.output_bytes.is_some() => Status::OutputLimit,
        (_, Termination::Signalled(libc::SIGSYS)) => Status::DisallowedSyscall,
        (_, Termination::Exited(0)) => Status::Ok,
        (_, Termination::Exited(_)) => Status::NonzeroExit,
        (_, _) => Status::Signalled,
    };
    ExecResult {
        status: verdict,
        termination,
        user_time_ns: usage.user_ns,
        system_time_ns: usage.system_ns,
        memory_bytes: usage.max_rss_bytes,
        wall_time_ns: wall.as_nanos().min(u128::from(u64::MAX)) as u64,
        accounting: Accounting::Rusage,
        error: None,
        processes_peak: None,
    }
}

/// Resource limits for the child: the request's, plus the ones its limits
/// imply (CPU seconds as a backstop, file size for the output limit) and
/// core dumps off.
fn rlimits(request: &ExecRequest, cgroup_watches_cpu: bool, out: &mut Vec<(c_int, u64, u64)>) {
    out.clear();
    // One byte: no core file fits, and at exactly 1 the kernel starts no
    // `kernel.core_pattern` pipe helper either (a limit of 0 does not stop
    // a pipe), which would run as root on the host, outside every limit,
    // for each crash. The default seccomp policy keeps programs from
    // lowering it to 0.
    out.push((libc::RLIMIT_CORE as c_int, 1, 1));
    // The stack may grow as far as the memory limit allows, and the hard
    // limit the host gave init: no process of the container can raise
    // that, and this limit is hutch's choice, not the caller's.
    if let Some(memory) = request.limits.memory_bytes {
        let stack = memory.min(sys::stack_hard_limit());
        out.push((libc::RLIMIT_STACK as c_int, stack, stack));
    }
    if let Some(cpu) = request.limits.cpu_time_ns {
        // Per process and in whole seconds: exact only without a cgroup.
        // With one, init stops the run at the limit, and this stays a
        // backstop a second later, so SIGXCPU never decides the verdict.
        let secs = cpu.div_ceil(1_000_000_000) + u64::from(cgroup_watches_cpu);
        out.push((libc::RLIMIT_CPU as c_int, secs, secs + 1));
    }
    if let Some(output) = request.limits.output_bytes {
        // One byte more than allowed, so that a write past the limit leaves
        // evidence even when the writer ignores SIGXFSZ.
        let fsize = output.saturating_add(1);
        out.push((libc::RLIMIT_FSIZE as c_int, fsize, fsize));
    }
    for limit in &request.rlimits {
        let resource = resource(limit.resource);
        out.retain(|(r, _, _)| *r != resource);
        out.push((resource, limit.soft, limit.hard));
    }
    out.truncate(sys::MAX_RLIMITS);
}

/// The first of `rlimits` whose hard limit is above init's own (which the
/// program's process inherits and, outside the host's user namespace,
/// cannot raise): its resource, that limit and init's.
fn above_hard_limit(rlimits: &[(c_int, u64, u64)]) -> Option<(c_int, u64, u64)> {
    rlimits.iter().find_map(|&(resource, _, hard)| {
        let have = sys::hard_limit(resource)?;
        (hard > have).then_some((resource, hard, have))
    })
}

/// The name of a limit in messages: what `ulimit` and `setrlimit` call it.
fn rlimit_name(resource: c_int) -> &'static str {
    match resource as u32 {
        libc::RLIMIT_CPU => "RLIMIT_CPU (CPU seconds)",
        libc::RLIMIT_FSIZE => "RLIMIT_FSIZE (file size)",
        libc::RLIMIT_DATA => "RLIMIT_DATA (data segment)",
        libc::RLIMIT_STACK => "RLIMIT_STACK (stack size)",
        libc::RLIMIT_NOFILE => "RLIMIT_NOFILE (open files)",
        libc::RLIMIT_AS => "RLIMIT_AS (address space)",
        libc::RLIMIT_NPROC => "RLIMIT_NPROC (processes)",
        libc::RLIMIT_MEMLOCK => "RLIMIT_MEMLOCK (locked memory)",
        libc::RLIMIT_CORE => "RLIMIT_CORE (core file size)",
        libc::RLIMIT_RSS => "RLIMIT_RSS (resident set size)",
        libc::RLIMIT_LOCKS => "RLIMIT_LOCKS (file locks)",
        libc::RLIMIT_SIGPENDING => "RLIMIT_SIGPENDING (pending signals)",
        libc::RLIMIT_MSGQUEUE => "RLIMIT_MSGQUEUE (message queue bytes)",
        libc::RLIMIT_NICE => "RLIMIT_NICE (nice priority)",
        libc::RLIMIT_RTPRIO => "RLIMIT_RTPRIO (real-time priority)",
        libc::RLIMIT_RTTIME => "RLIMIT_RTTIME (real-time CPU microseconds)",
        _ => "a resource limit",
    }
}

fn resource(resource: Resource) -> c_int {
    (match resource {
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Stack => libc::RLIMIT_STACK,
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Rss => libc::RLIMIT_RSS,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::As => libc::RLIMIT_AS,
        Resource::Locks => libc::RLIMIT_LOCKS,
        Resource::Sigpending => libc::RLIMIT_SIGPENDING,
        Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Resource::Nice => libc::RLIMIT_NICE,
        Resource::Rtprio => libc::RLIMIT_RTPRIO,
        Resource::Rttime => libc::RLIMIT_RTTIME,
    }) as c_int
}

/// Finds the program `name`: a name with a `/` is taken as it is; a bare
/// name is an executable regular file of that name in `cwd`, the directory
/// the program starts in, if there is one (a program copied into the work
/// directory runs by its name, as in go-sandbox's containers), else the
/// first one through `path`, as `execvp` would find it. Leaves it
/// NUL-terminated in `out` and says whether there was one.
pub fn lookup_into(name: &str, cwd: &str, path: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    if name.contains('/') {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        return true;
    }
    // Found in the starting directory, it runs by the name it was given:
    // the program's process enters that directory before it execs.
    out.extend_from_slice(cwd.as_bytes());
    if !cwd.ends_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    if CStr::from_bytes_with_nul(out).is_ok_and(os::is_executable) {
        out.clear();
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        return true;
    }
    for dir in path.split(':').filter(|dir| !dir.is_empty()) {
        out.clear();
        out.extend_from_slice(dir.as_bytes());
        if !dir.ends_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        if CStr::from_bytes_with_nul(out).is_ok_and(os::is_executable) {
            return true;
        }
    }
    out.clear();
    false
}

/// Pointers to `strings`, then a null pointer, for `execve`.
pub fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(core::iter::once(core::ptr::null()))
        .collect()
}

/// How a child's start ended, as its error pipe tells.
pub enum Start {
    /// The pipe closed: the child exec'd (or died before writing).
    Execd,
    /// The child wrote `(stage, errno)` and exited.
    Failed {
        /// The raw [`Stage`] it failed at.
        stage: u32,
        /// The error.
        errno: i32,
    },
    /// `deadline` passed first.
    TimedOut,
}

/// Reads a child's error pipe until it closes, holds the 8-byte failure
/// record, or `deadline` passes.
pub fn await_start(pipe: &OwnedFd, deadline: Option<Instant>) -> os::Result<Start> {
    let mut record = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        if !wait_readable(pipe, deadline) {
            return Ok(Start::TimedOut);
        }
        match rustix::io::read(pipe, &mut record[got..]) {
            Ok(0) => return Ok(Start::Execd),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let [s0, s1, s2, s3, e0, e1, e2, e3] = record;
    Ok(Start::Failed {
        stage: u32::from_ne_bytes([s0, s1, s2, s3]),
        errno: u32::from_ne_bytes([e0, e1, e2, e3]) as i32,
    })
}

/// A wait status as words: `exit status: N` or `signal: N`.
pub fn describe_status(status: c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status: {}", libc::WEXITSTATUS(status))
    } else {
        format!("signal: {}", libc::WTERMSIG(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_protocol::{BpfInstruction, Rlimit};

    fn exec_frame(argv0: &str) -> Vec<u8> {
        let request = Request::Exec(ExecRequest {
            argv: vec![argv0.into(), "-x".into(), "an argument".into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C".into()],
            fd_map: vec![0, 0, 1],
            rlimits: vec![Rlimit {
                resource: Resource::Nofile,
                soft: 64,
                hard: 64,
            }],
            seccomp: vec![
                BpfInstruction {
                    code: 6,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                };
                4
            ],
            limits: Limits {
                cpu_time_ns: Some(1_000_000_000),
                memory_bytes: Some(64 << 20),
                output_bytes: Some(1 << 20),
                ..Limits::default()
            },
            ..ExecRequest::default()
        });
        let mut buf = vec![0u8; hutch_protocol::MAX_FRAME_LEN];
        let len = hutch_protocol::encode_request(&request, &mut buf).unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn a_warm_exec_is_decoded_and_prepared_without_allocating() {
        let fds: Vec<OwnedFd> = (0..2)
            .map(|_| rustix::fs::memfd_create("fd", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
            .collect();
        // Looked up through PATH, and given with a path.
        for argv0 in ["true", "/bin/true"] {
            let frame = exec_frame(argv0);
            let mut exec = ExecRequest::default();
            let mut buffers = RunBuffers::default();
            let prepare = |exec: &mut ExecRequest, buffers: &mut RunBuffers| {
                assert!(
                    hutch_protocol::decode_request_reusing(&frame, exec)
                        .unwrap()
                        .is_none()
                );
                exec.check(fds.len()).unwrap();
                assert!(buffers.fill(exec, &fds, "/w", true).is_ok());
            };
            prepare(&mut exec, &mut buffers);
            let ((), allocations) =
                crate::sys::counting::allocations(|| prepare(&mut exec, &mut buffers));
            assert_eq!(allocations, 0, "{argv0}");
            // What the child gets.
            assert!(buffers.path().to_str().unwrap().ends_with("/true"));
            // Each pointer is the start of its string in the buffer.
            let text = [argv0, "-x", "an argument", "PATH=/usr/bin:/bin", "LANG=C"];
            let mut starts = Vec::new();
            let mut at = 0;
            for piece in text {
                starts.push(buffers.strings[at..].as_ptr().cast::<c_char>());
                at += piece.len() + 1;
            }
            let joined: Vec<u8> = text
                .iter()
                .chain(&["/w"])
                .flat_map(|piece| piece.bytes().chain([0]))
                .collect();
            assert_eq!(buffers.strings, joined);
            let null = core::ptr::null::<c_char>();
            assert_eq!(buffers.argv(), [starts[0], starts[1], starts[2], null]);
            assert_eq!(buffers.envp(), [starts[3], starts[4], null]);
            assert_eq!(buffers.cwd(), c"/w");
            assert_eq!(buffers.fds.len(), 3);
            assert_eq!(buffers.seccomp.len(), 4);
            assert!(
                buffers
                    .rlimits
                    .contains(&(libc::RLIMIT_NOFILE as c_int, 64, 64))
            );
        }
    }
}
