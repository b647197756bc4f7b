//! Running one program: prepare, spawn, supervise, reap, judge.

use alloc::borrow::ToOwned;
use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int};
use core::time::Duration;

use rustix::fd::OwnedFd;

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
    pub scratch: &'a [String],
    /// The stack a child runs on until it execs.
    pub stack: &'a mut [u8],
}

/// Runs `request` with the descriptors `fds` that came with it; talks to the
/// host through `channel` for a synchronised exec and for kills.
pub fn run(
    request: &ExecRequest,
    fds: &[OwnedFd],
    defaults: &mut Defaults<'_>,
    channel: &mut Channel,
) -> Result<ExecResult, ExecFailure> {
    let env_path = request
        .env
        .iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(hutch_protocol::DEFAULT_PATH);
    let program = if request.exec_fd.is_some() {
        String::new()
    } else {
        lookup(&request.argv[0], env_path).ok_or_else(|| {
            runner(
                Stage::Execve,
                libc::ENOENT,
                Some(&request.argv[0]),
                format!(
                    "program {:?} not found in PATH {env_path:?}",
                    request.argv[0]
                ),
            )
        })?
    };
    let cstr = |s: &str| CString::new(s).expect("validated strings hold no NUL");
    let path = cstr(&program);
    let argv: Vec<CString> = request.argv.iter().map(|a| cstr(a)).collect();
    let envp: Vec<CString> = request.env.iter().map(|e| cstr(e)).collect();
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    let cwd = cstr(request.cwd.as_deref().unwrap_or(defaults.workdir));
    let rlimits = rlimits(request, defaults.cgroup.is_some());
    let seccomp: Vec<libc::sock_filter> = request
        .seccomp
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let raw_fds: Vec<c_int> = request
        .fd_map
        .iter()
        .map(|&index| sys::raw(&fds[index as usize]))
        .collect();
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
    let plan = Plan {
        cgroup_procs: &cgroup_procs,
        fds: &raw_fds,
        exec_fd: request.exec_fd.map_or(-1, |i| sys::raw(&fds[i as usize])),
        path: &path,
        argv: &argv_ptrs,
        envp: &envp_ptrs,
        cwd: &cwd,
        rlimits: &rlimits,
        new_ipc: !defaults.ipc_swept,
        uid: request.uid.unwrap_or(defaults.uid),
        gid: request.gid.unwrap_or(defaults.gid),
        seccomp: &seccomp,
        err_pipe: sys::raw(&err_write),
        sync_pipe: sync.as_ref().map_or(-1, |(r, _)| sys::raw(r)),
    };
    let big_before = match request.limits.output_bytes {
        Some(limit) => files_over_limit(fds, defaults.scratch, limit),
        None => Vec::new(),
    };
    let child = if request.sync {
        sys::spawn(&plan)
    } else {
        sys::spawn_vfork(&plan, defaults.stack)
    }
    .map_err(|e| os(Stage::Spawn, e, "clone"))?;
    drop(err_write);
    let mut start = Instant::now();

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
                sys::kill(child.pid);
                reap_all(child.pid);
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
    let mut record = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        if !wait_readable(&err_read, deadline) {
            let wall = start.elapsed();
            let (status, usage) = reap_all(child.pid);
            return Ok(judge(
                Ending::WallTime,
                status,
                &usage,
                wall,
                &request.limits,
                false,
            ));
        }
        match rustix::io::read(&err_read, &mut record[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(os(Stage::Spawn, e.into(), "error pipe")),
        }
    }
    if got == 8 {
        let (stage, errno) = decode_failure(&record);
        reap_all(child.pid);
        let stage = stage_from(stage);
        let what = match stage {
            Stage::Execve => format!("cannot execute {:?}", request.argv[0]),
            other => format!("program setup failed at {other:?}"),
        };
        let message = format!("{what}: {}", os::Error::from_raw_os_error(errno));
        return Ok(not_started(stage, errno, message));
    }

    let meter = match (defaults.cgroup.as_deref(), &baseline) {
        (Some(cgroup), Some(base)) => Some((cgroup, base)),
        _ => None,
    };
    let ending = supervise(&child, request.limits, start, meter, channel)?;
    let wall = start.elapsed();
    let (status, mut usage) = reap_all(child.pid);
    let mut accounting = Accounting::Rusage;
    let mut oom_killed = false;
    if let Some((cgroup, base)) = meter {
        let measured = cgroup
            .measure(base)
            .map_err(|e| os(Stage::Cgroup, e, "cannot read the cgroup's usage"))?;
        usage.user_ns = measured.user_ns;
        usage.system_ns = measured.system_ns;
        usage.max_rss_bytes = measured.peak_bytes;
        oom_killed = measured.oom_killed;
        accounting = match cgroup.version() {
            CgroupVersion::V1 => Accounting::CgroupV1,
            CgroupVersion::V2 => Accounting::CgroupV2,
        };
    }
    if let Some(limit) = request.limits.output_bytes {
        // `RLIMIT_FSIZE` is one byte above the limit: a file the run wrote
        // past the limit shows it, even when the writer ignored SIGXFSZ or a
        // shell reaped it.
        if !usage.file_size_signal
            && files_over_limit(fds, defaults.scratch, limit)
                .iter()
                .any(|file| !big_before.contains(file))
        {
            usage.file_size_signal = true;
        }
    }
    let mut result = judge(ending, status, &usage, wall, &request.limits, oom_killed);
    result.accounting = accounting;
    Ok(result)
}

/// Regular files longer than `limit` (device, inode, size) among the
/// descriptors the program may write and under the writable tmpfs mounts.
/// Taken before and after a run: a file that is new in the list, or grew,
/// was written past the limit by the run (`RLIMIT_FSIZE`, one byte above
/// the limit, stops it there), even if the writer ignored `SIGXFSZ`.
fn files_over_limit(fds: &[OwnedFd], scratch: &[String], limit: u64) -> Vec<(u64, u64, u64)> {
    let mut found = Vec::new();
    let mut note = |st: &rustix::fs::Stat| {
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
            && st.st_size as u64 > limit
        {
            found.push((st.st_dev, st.st_ino, st.st_size as u64));
        }
    };
    for fd in fds {
        let writable = rustix::fs::fcntl_getfl(fd)
            .is_ok_and(|flags| flags & OFlags::ACCMODE != OFlags::RDONLY);
        if let (true, Ok(st)) = (writable, rustix::fs::fstat(fd)) {
            note(&st);
        }
    }
    // The tmpfs mounts hold a bounded number of inodes; walk them.
    let mut pending: Vec<String> = scratch.to_vec();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = os::list_dir(&dir) else {
            continue;
        };
        for (name, kind) in entries {
            let path = os::join(&dir, &name);
            match kind {
                rustix::fs::FileType::Directory => pending.push(path),
                rustix::fs::FileType::RegularFile => {
                    if let Ok(st) = rustix::fs::lstat(path.as_str()) {
                        note(&st);
                    }
                }
                _ => {}
            }
        }
    }
    found
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
                    sys::kill_all();
                    reap_all(child.pid);
                    return Err(ExecFailure::Channel(e));
                }
            }
        }
    }
}

/// Kills everything left in the container, reaps every child, and returns
/// the program's wait status and the summed usage of every reaped process.
fn reap_all(program: i32) -> (c_int, Usage) {
    let mut usage = Usage::default();
    let mut status = 0;
    // The program first (it may still run after a wall-time or kill
    // ending), so its status is not lost among the others.
    sys::kill(program);
    if let Ok(Some(reaped)) = sys::wait4(program, false) {
        status = reaped.status;
        usage.add(&reaped.usage);
    }
    loop {
        sys::kill_all();
        let Ok(Some(reaped)) = sys::wait4(-1, false) else {
            break;
        };
        usage.add(&reaped.usage);
        if libc::WIFSIGNALED(reaped.status) {
            match libc::WTERMSIG(reaped.status) {
                libc::SIGXCPU => usage.cpu_limit_signal = true,
                libc::SIGXFSZ => usage.file_size_signal = true,
                _ => {}
            }
        }
    }
    (status, usage)
}

/// Kills and reaps everything in the container, for init's exit.
pub fn end_everything() {
    loop {
        sys::kill_all();
        if !matches!(sys::wait4(-1, false), Ok(Some(_))) {
            break;
        }
    }
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
    }
}

/// Resource limits for the child: the request's, plus the ones its limits
/// imply (CPU seconds as a backstop, file size for the output limit) and
/// core dumps off.
fn rlimits(request: &ExecRequest, cgroup_watches_cpu: bool) -> Vec<(c_int, u64, u64)> {
    let mut out: Vec<(c_int, u64, u64)> = vec![(libc::RLIMIT_CORE as c_int, 0, 0)];
    // The stack may grow as far as the memory limit allows.
    if let Some(memory) = request.limits.memory_bytes {
        out.push((libc::RLIMIT_STACK as c_int, memory, memory));
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
    out
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

/// Finds `name` through `path` as `execvp` would: names with a `/` are
/// taken as they are; otherwise the first executable regular file wins.
pub fn lookup(name: &str, path: &str) -> Option<String> {
    if name.contains('/') {
        return Some(name.to_owned());
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| os::join(dir, name))
        .find(|candidate| os::is_executable(candidate))
}

/// Pointers to `strings`, then a null pointer, for `execve`.
pub fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(core::iter::once(core::ptr::null()))
        .collect()
}

/// The `(stage, errno)` record a child writes to the error pipe.
fn decode_failure(record: &[u8; 8]) -> (u32, i32) {
    let [s0, s1, s2, s3, e0, e1, e2, e3] = *record;
    (
        u32::from_ne_bytes([s0, s1, s2, s3]),
        u32::from_ne_bytes([e0, e1, e2, e3]) as i32,
    )
}

/// Reads the error pipe of a child until it closes (the child exec'd) or
/// holds a failure record: `Some((stage, errno))` when the child failed.
pub fn read_failure(pipe: &OwnedFd) -> Option<(u32, i32)> {
    let mut record = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match rustix::io::read(pipe, &mut record[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    (got == 8).then(|| decode_failure(&record))
}

/// A wait status as words: `exit status: N` or `signal: N`.
pub fn describe_status(status: c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status: {}", libc::WEXITSTATUS(status))
    } else {
        format!("signal: {}", libc::WTERMSIG(status))
    }
}
