//! init's unsafe code for processes: creating a program's process and the
//! raw system calls it makes before `execve`, init's own system calls that
//! rustix does not offer, and (for tests) an allocation counter. The rest
//! of init's unsafe code is its run-time without a C library (`rt.rs`) and
//! the raw system call itself (`raw_syscall.rs`).
//!
//! # What the child may do
//!
//! The child of [`spawn_vfork`] shares init's memory until it execs (init is
//! suspended meanwhile); the child of [`spawn`] (a synchronised exec, whose
//! child waits for the host) has a copy of it. Either way it runs
//! [`child_main`] and nothing else: raw system calls on data that
//! [`Plan`] prepared before the clone, no allocation, no locks, no standard
//! I/O, no writes to memory but its own stack, no panics (every failure is
//! reported through the error pipe as `(stage, errno)` and ends the
//! process).

use alloc::format;
use core::ffi::{CStr, c_char, c_int, c_long, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use rustix::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::os;

use hutch_protocol::Stage;

/// A frame buffer: init's heap maps a block this large afresh, so its
/// pages stay out of the resident set until a frame fills them.
pub struct FrameBuffer(alloc::boxed::Box<[u8]>);

impl FrameBuffer {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        Self(alloc::vec![0u8; len].into_boxed_slice())
    }
}

impl core::ops::Deref for FrameBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::ops::DerefMut for FrameBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Most rlimits a plan holds.
pub const MAX_RLIMITS: usize = 16;

/// Everything the child needs, prepared by init before the clone.
pub struct Plan<'a> {
    /// `cgroup.procs` descriptors to join before anything else.
    pub cgroup_procs: &'a [RawFd],
    /// The directory of the v2 group to create the child in
    /// (`CLONE_INTO_CGROUP`), or -1.
    pub cgroup_dir: RawFd,
    /// Descriptors that become the program's fds `0..fds.len()`.
    pub fds: &'a [RawFd],
    /// A descriptor to execute with `execveat`, or -1.
    pub exec_fd: RawFd,
    /// The resolved program path (ignored with `exec_fd`).
    pub path: &'a CStr,
    /// NULL-terminated argument vector.
    pub argv: &'a [*const c_char],
    /// NULL-terminated environment.
    pub envp: &'a [*const c_char],
    /// Directory to start in.
    pub cwd: &'a CStr,
    /// `(resource, soft, hard)` triples.
    pub rlimits: &'a [(c_int, u64, u64)],
    /// Whether the program gets an IPC namespace of its own (when init
    /// cannot sweep its own between runs).
    pub new_ipc: bool,
    /// User and group to run as.
    pub uid: u32,
    /// Group to run as.
    pub gid: u32,
    /// The seccomp program; empty for none.
    pub seccomp: &'a [libc::sock_filter],
    /// Write end of the error pipe (close-on-exec).
    pub err_pipe: RawFd,
    /// Read end of the go-ahead pipe for a synchronised exec, or -1.
    pub sync_pipe: RawFd,
}

/// A freshly created program process.
pub struct Child {
    /// Its pid in the container.
    pub pid: i32,
    /// Its pidfd.
    pub pidfd: OwnedFd,
}

/// Creates the program's process, which runs `plan` and execs.
pub fn spawn(plan: &Plan<'_>) -> os::Result<Child> {
    let mut pidfd: c_int = -1;
    // SAFETY: clone_args is plain data; zero is a valid value of every field.
    let mut args: libc::clone_args = unsafe { core::mem::zeroed() };
    args.flags = libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    into_cgroup(&mut args, plan);
    // clone3 without CLONE_VM gives the child a copy of this single-threaded
    // process; the child runs only child_main, which makes raw system calls
    // on the plan (valid in the copy) and never returns.
    let ret = raw!(
        libc::SYS_clone3,
        &mut args as *mut libc::clone_args,
        core::mem::size_of::<libc::clone_args>()
    );
    match ret {
        ..0 => Err(os::Error::from_raw_os_error(-ret as i32)),
        0 => child_main(plan),
        pid => Ok(Child {
            pid: pid as i32,
            // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Bytes of the stack a `vfork`-style child runs on.
pub const CHILD_STACK_LEN: usize = 64 * 1024;

/// `clone3`'s flag to create the child in the cgroup `clone_args.cgroup`
/// names (Linux 5.7). Above 32 bits, where `libc`'s `c_int` constant
/// cannot hold it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Starts the child in the plan's v2 group, if it names one: created
/// there, it never moves, and so never waits for the kernel's thread-group
/// lock as a move does after a quiet spell.
fn into_cgroup(args: &mut libc::clone_args, plan: &Plan<'_>) {
    if plan.cgroup_dir >= 0 {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = plan.cgroup_dir as u64;
    }
}

/// Creates the program's process like [`spawn`], but sharing init's memory
/// until it execs (`CLONE_VM | CLONE_VFORK`): no page tables are copied, and
/// init is suspended until the program has exec'd or failed. The child runs
/// on `stack`. Not for a synchronised exec, whose child waits for init.
pub fn spawn_vfork(plan: &Plan<'_>, stack: &mut [u8]) -> os::Result<Child> {
    extern "C" fn entry(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `&Plan` passed below; the parent is suspended
        // (CLONE_VFORK) until this child execs or exits, so the plan and
        // everything it points to stay alive and unchanged.
        let plan = unsafe { &*(arg as *const Plan<'_>) };
        child_main(plan)
    }
    #[cfg(not(target_arch = "x86_64"))]
    if plan.cgroup_dir >= 0 {
        // The C library's clone cannot start a child in a cgroup.
        return spawn(plan);
    }
    let mut pidfd: c_int = -1;
    // The stack grows down from its end, kept 16-byte aligned.
    let base = stack.as_mut_ptr() as usize;
    let top = (base + stack.len()) & !15;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD;
    // SAFETY: clone_args is plain data; zero is a valid value of every field.
    let mut args: libc::clone_args = unsafe { core::mem::zeroed() };
    args.flags = flags as u64;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    args.stack = base as u64;
    args.stack_size = (top - base) as u64;
    into_cgroup(&mut args, plan);
    let ret = clone_on_stack(
        &mut args,
        flags | libc::SIGCHLD,
        top,
        &mut pidfd,
        entry,
        plan as *const Plan<'_> as *mut c_void,
    );
    if ret < 0 {
        return Err(os::Error::from_raw_os_error(-ret as i32));
    }
    Ok(Child {
        pid: ret as i32,
        // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
    })
}

/// Starts the child on its own stack, calling `entry(arg)` there: on x86_64
/// `clone3(args)` made raw (init has no C library there), whose `stack` and
/// `stack_size` give the stack; elsewhere the C library's `clone(flags)`
/// with the stack's `top`, storing the pidfd at `pidfd` (the parent-tid
/// argument). Returns the child's pid, or `-errno`.
fn clone_on_stack(
    args: &mut libc::clone_args,
    flags: c_int,
    top: usize,
    pidfd: &mut c_int,
    entry: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
) -> c_long {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = (flags, top, pidfd);
        let call = [
            args as *mut libc::clone_args as usize,
            core::mem::size_of::<libc::clone_args>(),
            0,
            0,
            0,
        ];
        // SAFETY: clone3(args, size) with `args.stack` and `stack_size`
        // naming the stack the caller owns; the child runs `entry`, which
        // never returns, and shares this memory writing only to its own
        // stack (see the module doc); `arg` is the plan, alive until the
        // child execs or exits (CLONE_VFORK keeps init waiting).
        unsafe {
            crate::raw_syscall::clone_entering(libc::SYS_clone3, call, entry as usize, arg as usize)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = args;
        // SAFETY: as for x86_64: the child runs `entry` on its own stack
        // and never returns from it.
        let ret =
            unsafe { libc::clone(entry, top as *mut c_void, flags, arg, pidfd as *mut c_int) };
        if ret == -1 {
            // SAFETY: __errno_location returns this thread's errno slot.
            -c_long::from(unsafe { *libc::__errno_location() })
        } else {
            c_long::from(ret)
        }
    }
}

/// Reports `(stage, errno)` through the error pipe and exits.
fn fail(plan: &Plan<'_>, stage: Stage, errno: c_long) -> ! {
    let record: [u32; 2] = [stage as u32, errno as u32];
    raw!(libc::SYS_write, plan.err_pipe, record.as_ptr(), 8usize);
    unreachable_exit()
}

/// Ends the child. `exit_group` can only fail when a caller-supplied seccomp
/// filter refuses it; then an invalid instruction ends the process with
/// `SIGILL`, whose default action (restored above) no filter can stop.
fn unreachable_exit() -> ! {
    exit(127)
}

/// Ends this process with `code`, at once (no handlers to run: init has
/// none).
pub fn exit(code: c_int) -> ! {
    raw!(libc::SYS_exit_group, code);
    // SAFETY: `ud2` raises SIGILL; it touches no memory and never returns.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}

fn check(plan: &Plan<'_>, stage: Stage, ret: c_long) -> c_long {
    if ret < 0 {
        fail(plan, stage, -ret)
    }
    ret
}

/// Capability-related constants (linux/securebits.h, linux/capability.h).
const SECBIT_NOROOT: c_long = 1 << 0;
const SECBIT_NOROOT_LOCKED: c_long = 1 << 1;
const SECBIT_KEEP_CAPS_LOCKED: c_long = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: c_long = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: c_long = 1 << 7;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const SECCOMP_SET_MODE_FILTER: c_long = 1;
const CLOSE_RANGE_CLOEXEC: c_long = 1 << 2;

fn child_main(plan: &Plan<'_>) -> ! {
    // Dispositions init ignores would survive exec: restore the defaults
    // where it ignores any, and unblock every signal.
    if SIGNALS_IGNORED.load(Ordering::Relaxed) {
        // SAFETY: sigaction is plain data; zero means SIG_DFL, no flags.
        let dfl = KernelSigaction::with_handler(libc::SIG_DFL);
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // Numbers the kernel refuses (none here) are harmless to
                // skip.
                raw!(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    0usize,
                    8usize
                );
            }
        }
    }
    let empty: u64 = 0;
    check(
        plan,
        Stage::Spawn,
        raw!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            0usize,
            8usize
        ),
    );
    // A new session: no controlling terminal, so no TIOCSTI into anyone's.
    // Its own session also makes its process group an orphaned one, in
    // which the job-control stops (SIGTSTP, SIGTTIN, SIGTTOU) do nothing,
    // and gives the run a scheduler autogroup of its own, whose niceness
    // it may change and which ends with it.
    check(plan, Stage::Spawn, raw!(libc::SYS_setsid));

    if plan.sync_pipe >= 0 {
        let mut go = 0u8;
        let n = raw!(libc::SYS_read, plan.sync_pipe, &mut go as *mut u8, 1usize);
        if n != 1 {
            // The host killed the run before it started.
            unreachable_exit();
        }
    }

    // Join the run's cgroup before the program can run one instruction.
    for &procs in plan.cgroup_procs {
        let ret = raw!(libc::SYS_write, procs, c"0".as_ptr(), 1usize);
        if ret != 1 {
            fail(
                plan,
                Stage::Cgroup,
                if ret < 0 { -ret } else { libc::EIO.into() },
            );
        }
    }

    // Map the descriptors onto 0..n: first lift every source above n so no
    // dup3 overwrites a source still to be read, then place them.
    let n = plan.fds.len();
    let mut lifted = [-1 as c_int; hutch_protocol::MAX_FDS_PER_FRAME];
    for (i, &fd) in plan.fds.iter().enumerate() {
        lifted[i] = check(
            plan,
            Stage::Fds,
            raw!(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, n),
        ) as c_int;
    }
    let exec_fd = if plan.exec_fd >= 0 {
        check(
            plan,
            Stage::Fds,
            raw!(libc::SYS_fcntl, plan.exec_fd, libc::F_DUPFD_CLOEXEC, n),
        ) as c_int
    } else {
        -1
    };
    for (i, &fd) in lifted[..n].iter().enumerate() {
        check(plan, Stage::Fds, raw!(libc::SYS_dup3, fd, i, 0));
    }
    // Nothing at or above n may reach the program, but for fds 0, 1 and 2
    // the request leaves out: they stay init's own, `/dev/null` (opened
    // for reading and writing before init started), so that the first
    // file the program opens is never taken for its input or output.
    check(
        plan,
        Stage::Fds,
        raw!(
            libc::SYS_close_range,
            n.max(3),
            c_int::MAX,
            CLOSE_RANGE_CLOEXEC
        ),
    );

    // A cgroup namespace rooted where the run now is: /proc/self/cgroup
    // shows "/", nothing of the host's cgroup tree. IPC objects do not
    // outlive a run either: init sweeps its IPC namespace after each one,
    // or, where it cannot, the run gets an IPC namespace of its own, which
    // goes with its last process.
    let ipc = if plan.new_ipc { libc::CLONE_NEWIPC } else { 0 };
    check(
        plan,
        Stage::Spawn,
        raw!(libc::SYS_unshare, libc::CLONE_NEWCGROUP | ipc),
    );

    check(plan, Stage::Chdir, raw!(libc::SYS_chdir, plan.cwd.as_ptr()));

    for &(resource, soft, hard) in plan.rlimits {
        let limit = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        check(
            plan,
            Stage::Rlimit,
            raw!(
                libc::SYS_prlimit64,
                0,
                resource,
                &limit as *const libc::rlimit64,
                0usize
            ),
        );
    }

    // Securebits, the bounding and the ambient sets were fixed once in
    // init (`harden_credentials`) and are inherited; changing identity
    // below clears the rest.
    // setgroups is refused where the user namespace was made with
    // setgroups=deny (unprivileged hosts); the groups are then the caller's.
    let ret = raw!(libc::SYS_setgroups, 0, 0usize);
    if ret < 0 && ret != -c_long::from(libc::EPERM) {
        fail(plan, Stage::Credentials, -ret);
    }
    check(
        plan,
        Stage::Credentials,
        raw!(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid),
    );
    check(
        plan,
        Stage::Credentials,
        raw!(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid),
    );
    let header = [LINUX_CAPABILITY_VERSION_3, 0u32];
    let data = [0u32; 6];
    check(
        plan,
        Stage::Capabilities,
        raw!(libc::SYS_capset, header.as_ptr(), data.as_ptr()),
    );
    check(
        plan,
        Stage::Capabilities,
        raw!(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
    );

    if !plan.seccomp.is_empty() {
        let prog = libc::sock_fprog {
            len: plan.seccomp.len() as u16,
            filter: plan.seccomp.as_ptr() as *mut libc::sock_filter,
        };
        check(
            plan,
            Stage::Seccomp,
            raw!(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog
            ),
        );
    }

    let ret = if exec_fd >= 0 {
        raw!(
            libc::SYS_execveat,
            exec_fd,
            c"".as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
            libc::AT_EMPTY_PATH
        )
    } else {
        raw!(
            libc::SYS_execve,
            plan.path.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr()
        )
    };
    fail(plan, Stage::Execve, -ret)
}

/// The kernel's `struct sigaction` (not the C library's, which is laid out
/// differently): handler, flags, restorer, mask.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

impl KernelSigaction {
    /// `SIG_DFL` or `SIG_IGN`: no handler code, so no restorer either.
    fn with_handler(handler: usize) -> Self {
        Self {
            handler,
            flags: 0,
            restorer: 0,
            mask: 0,
        }
    }
}

/// Creates a pipe whose ends are both close-on-exec.
pub fn pipe() -> os::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, w))
}

/// Marks `fd` close-on-exec.
pub fn set_cloexec(fd: RawFd) -> os::Result<()> {
    raw_result(raw!(libc::SYS_fcntl, fd, libc::F_SETFD, libc::FD_CLOEXEC)).map(drop)
}

/// The hard limit on stack size init started with (`u64::MAX`: none),
/// which its programs cannot raise.
static STACK_HARD_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// The hard limit on stack size the programs inherit (`u64::MAX`: none).
pub fn stack_hard_limit() -> u64 {
    STACK_HARD_LIMIT.load(Ordering::Relaxed)
}

/// Init's hard limit on `resource` (an `RLIMIT_*`), `u64::MAX` for none;
/// `None` when it cannot be read.
pub fn hard_limit(resource: c_int) -> Option<u64> {
    let mut limit = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let read = raw!(
        libc::SYS_prlimit64,
        0,
        resource,
        0usize,
        &mut limit as *mut libc::rlimit64
    );
    (read == 0).then_some(limit.rlim_max)
}

/// Makes init hard to tamper with from inside: not dumpable (so no program
/// can ptrace it or open its `/proc` files, even one sharing its uid), and
/// with its descriptor limit raised to the hard limit, which emptying
/// deeply nested directories at a reset may need. Notes its hard limit on
/// stack size.
pub fn harden() {
    raw!(libc::SYS_prctl, libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    if let Some(stack) = hard_limit(libc::RLIMIT_STACK as c_int) {
        STACK_HARD_LIMIT.store(stack, Ordering::Relaxed);
    }
    if let Ok(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .ok_or(())
    {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            },
        );
    }
}

/// Whether [`ignore_signals`] set signals to be ignored, which each
/// program's process must then restore before `execve`.
static SIGNALS_IGNORED: AtomicBool = AtomicBool::new(false);

/// Ignores every signal that can be ignored, except `SIGCHLD` (set to its
/// default, which keeps children waitable), unless init is PID 1 of its PID
/// namespace: then sets every signal to its default instead (the host may
/// have ignored some, `SIGPIPE` as every Rust program does, and exec keeps
/// what is ignored), so that programs inherit the defaults and their
/// processes need not restore them. As PID 1 the kernel already drops
/// every signal init has no handler for, whoever sends it: from inside the
/// namespace, from the host (but `SIGKILL` and `SIGSTOP`), and those init's
/// own calls raise (`SIGPIPE`, `SIGXFSZ`); a fault's signal kills it either
/// way. Restoring the defaults in every program's process cost 62
/// `rt_sigaction` calls per run (17–21 µs measured); as PID 1 init makes
/// them once.
pub fn ignore_signals() {
    let pid_1 = rustix::process::getpid().is_init();
    SIGNALS_IGNORED.store(!pid_1, Ordering::Relaxed);
    let default = KernelSigaction::with_handler(libc::SIG_DFL);
    let ignore = KernelSigaction::with_handler(libc::SIG_IGN);
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // `SIGCHLD` at its default in any case, whatever the host left:
        // ignored, the kernel would reap init's children before init could.
        let action = if pid_1 || sig == libc::SIGCHLD {
            &default
        } else {
            &ignore
        };
        // No handler code is installed; a number the kernel refuses is
        // skipped.
        raw!(
            libc::SYS_rt_sigaction,
            sig,
            action as *const KernelSigaction,
            0usize,
            8usize
        );
    }
}

/// Resource usage and status of a reaped process.
pub struct Reaped {
    /// Its pid.
    pub pid: i32,
    /// The raw wait status.
    pub status: c_int,
    /// Its usage, and that of every descendant it reaped.
    pub usage: libc::rusage,
}

/// `wait4(pid, 0)`: waits for `pid` (or any child with -1); with `nohang`,
/// only takes one that has already ended. `Ok(None)` when there is no
/// child left, or with `nohang` none has ended.
pub fn wait4(pid: i32, nohang: bool) -> os::Result<Option<Reaped>> {
    let mut status: c_int = 0;
    // SAFETY: rusage is plain data.
    let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        let ret = raw!(
            libc::SYS_wait4,
            pid,
            &mut status as *mut c_int,
            flags | libc::__WALL,
            &mut usage as *mut libc::rusage
        );
        match ret {
            0 => return Ok(None),
            1.. => {
                return Ok(Some(Reaped {
                    pid: ret as i32,
                    status,
                    usage,
                }));
            }
            _ if ret == -c_long::from(libc::EINTR) => continue,
            _ if ret == -c_long::from(libc::ECHILD) => return Ok(None),
            _ => return Err(os::Error::from_raw_os_error(-ret as i32)),
        }
    }
}

/// Whether init has any child, living or not yet reaped: `waitid` of any
/// child without reaping it and without waiting, which fails with `ECHILD`
/// only when there is none.
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    loop {
        let ret = raw!(
            libc::SYS_waitid,
            libc::P_ALL,
            0usize,
            &mut info as *mut libc::siginfo_t,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
            0usize
        );
        if ret == -c_long::from(libc::EINTR) {
            continue;
        }
        // Any other failure: assume there are, so they are swept.
        return ret != -c_long::from(libc::ECHILD);
    }
}

/// How init finds the processes to kill when it is not PID 1 (the
/// container shares the host's PID namespace): its own children, read from
/// `/proc/self/task/<pid>/children` through a descriptor opened at start,
/// while the host's `/proc` was still visible.
/// The descriptor, or -1 (PID 1, or the file could not be opened). Set
/// once at start; init has one thread.
static CHILDREN: AtomicI32 = AtomicI32::new(-1);

/// Prepares [`kill_all`]. As PID 1 it only notes that it is; otherwise init
/// becomes a child subreaper, so that everything its programs leave behind
/// is reparented to it, and keeps a way to list its children. Fails, naming
/// the file, when init is not PID 1 and cannot list its children: it could
/// then not find what a run leaves, and `kill(-1)` from a process that is
/// not PID 1 would reach every process of its user.
pub fn init_reaper() -> Result<(), alloc::string::String> {
    if rustix::process::getpid().is_init() {
        PID1.store(true, Ordering::Relaxed);
        return Ok(());
    }
    raw!(libc::SYS_prctl, libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    let pid = rustix::process::getpid().as_raw_nonzero();
    let path = format!("/proc/self/task/{pid}/children");
    let fd = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|err| {
        format!("cannot open {path}, which lists what init must kill after each run: {err}")
    })?;
    // Kept open for init's lifetime.
    CHILDREN.store(rustix::fd::IntoRawFd::into_raw_fd(fd), Ordering::Relaxed);
    Ok(())
}

/// Whether init is PID 1 of its PID namespace ([`init_reaper`]).
static PID1: AtomicBool = AtomicBool::new(false);

/// Whether [`kill_all`] reaches every process of the container at once
/// (`kill(-1)` as PID 1), rather than init's children only.
pub fn kills_all_at_once() -> bool {
    PID1.load(Ordering::Relaxed)
}

/// Sends `SIGKILL` to every process of the container but init: as PID 1,
/// everything in its PID namespace; otherwise every child of init (call it
/// again once some have ended: a killed process's children are then
/// init's), or nobody when init could not list them ([`init_reaper`]
/// failed, and the container with it).
pub fn kill_all() {
    if kills_all_at_once() {
        // ESRCH (nobody left) is fine.
        raw!(libc::SYS_kill, -1i32, libc::SIGKILL);
        return;
    }
    let children = CHILDREN.load(Ordering::Relaxed);
    if children < 0 {
        return;
    }
    // SAFETY: the descriptor opened by `init_reaper`, never closed.
    let children = unsafe { rustix::fd::BorrowedFd::borrow_raw(children) };
    let mut buf = [0u8; 4096];
    let Ok(n) = rustix::io::pread(children, &mut buf, 0) else {
        return;
    };
    for pid in core::str::from_utf8(&buf[..n])
        .unwrap_or("")
        .split_whitespace()
    {
        if let Ok(pid) = pid.parse::<i32>() {
            kill(pid);
        }
    }
}

/// Whether the process of `pidfd` has ended, without waiting; `false`
/// when its pidfd cannot be polled.
pub fn has_ended(pidfd: &OwnedFd) -> bool {
    let mut polls = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let now = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut polls, Some(&now)), Ok(1..))
}

/// Sleeps for `ns` nanoseconds (less if a signal comes).
pub fn pause_ns(ns: u64) {
    let time = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    raw!(libc::SYS_nanosleep, &time as *const libc::timespec, 0usize);
}

/// Sends `SIGKILL` to one process.
pub fn kill(pid: i32) {
    // The pid is init's unreaped child, so it cannot have been recycled.
    raw!(libc::SYS_kill, pid, libc::SIGKILL);
}

/// Raw descriptor of an owned fd, for the plan.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// How many CPUs this process may run on.
pub fn cpu_count() -> u32 {
    rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count().max(1))
}

/// One kind of System V IPC object, with the `*ctl` system call and the
/// commands that list and remove its objects.
#[derive(Debug, Clone, Copy)]
pub struct IpcKind {
    /// `SYS_shmctl`, `SYS_semctl` or `SYS_msgctl`.
    syscall: c_long,
    /// `SHM_INFO` (14), `SEM_INFO` (19), `MSG_INFO` (12): returns the
    /// highest index in use.
    info: c_int,
    /// `SHM_STAT_ANY` (15), `SEM_STAT_ANY` (20), `MSG_STAT_ANY` (13): the id
    /// of the object at an index, whatever its permissions.
    stat_any: c_int,
    /// The `int` of the info structure that counts the objects in use:
    /// `shm_info.used_ids`, `seminfo.semusz`, `msginfo.msgpool`.
    in_use_field: usize,
    /// Its name, for messages.
    pub name: &'static str,
}

/// Shared memory segments.
pub const SHM: IpcKind = IpcKind {
    syscall: libc::SYS_shmctl,
    info: 14,
    stat_any: 15,
    in_use_field: 0,
    name: "shared memory segment",
};
/// Semaphore sets.
pub const SEM: IpcKind = IpcKind {
    syscall: libc::SYS_semctl,
    info: 19,
    stat_any: 20,
    in_use_field: 7,
    name: "semaphore set",
};
/// Message queues.
pub const MSG: IpcKind = IpcKind {
    syscall: libc::SYS_msgctl,
    info: 12,
    stat_any: 13,
    in_use_field: 0,
    name: "message queue",
};

/// Room for any of the `*_ds` and `*info` structures the commands fill.
#[repr(C, align(8))]
struct IpcBuffer([u8; 512]);

impl IpcKind {
    /// The `*ctl` call: its result, `-errno` on failure. Every command
    /// used here either ignores the buffer (`IPC_RMID`, given null) or
    /// writes at most one kernel structure of well under 512 bytes to it.
    fn ctl(&self, id: c_int, cmd: c_int, buf: *mut IpcBuffer) -> c_long {
        if self.syscall == libc::SYS_semctl {
            // semctl(id, semnum, cmd, arg).
            raw!(self.syscall, id, 0, cmd, buf)
        } else {
            // shmctl/msgctl(id, cmd, buf).
            raw!(self.syscall, id, cmd, buf)
        }
    }

    /// How many objects of this kind exist in init's IPC namespace, and the
    /// highest index in use.
    pub fn census(&self) -> os::Result<(usize, c_int)> {
        let mut buf = IpcBuffer([0; 512]);
        let highest = raw_result(self.ctl(0, self.info, &mut buf))?;
        let at = self.in_use_field * 4;
        let field = [buf.0[at], buf.0[at + 1], buf.0[at + 2], buf.0[at + 3]];
        let in_use = usize::try_from(c_int::from_ne_bytes(field)).unwrap_or(0);
        Ok((in_use, highest as c_int))
    }

    /// The id of the object at `index`, if there is one.
    pub fn id_at(&self, index: c_int) -> Option<c_int> {
        let mut buf = IpcBuffer([0; 512]);
        let id = self.ctl(index, self.stat_any, &mut buf);
        (id >= 0).then_some(id as c_int)
    }

    /// Removes the object `id`.
    pub fn remove(&self, id: c_int) -> os::Result<()> {
        raw_result(self.ctl(id, libc::IPC_RMID, core::ptr::null_mut())).map(drop)
    }
}

/// Locks root out of privilege for good for init and every process it
/// creates from now on: `SECBIT_NOROOT` and the other securebits, locked;
/// the bounding set emptied (no `execve` can grant a capability again); the
/// ambient set cleared. init's own capabilities stay: it still mounts,
/// changes identity in its children and removes IPC objects.
pub fn harden_credentials() -> os::Result<()> {
    let secure = raw!(
        libc::SYS_prctl,
        libc::PR_SET_SECUREBITS,
        SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
    );
    raw_result(secure)?;
    for cap in 0..64 {
        let ret = raw!(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap);
        if ret == -c_long::from(libc::EINVAL) {
            break; // past the last capability this kernel knows
        }
        raw_result(ret)?;
    }
    let ambient = raw!(
        libc::SYS_prctl,
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0
    );
    raw_result(ambient).map(drop)
}

/// Moves init into a new IPC namespace.
pub fn unshare_ipc() -> os::Result<()> {
    raw_result(raw!(libc::SYS_unshare, libc::CLONE_NEWIPC)).map(drop)
}

/// Moves init into a new network namespace: a loopback, down, and nothing
/// else.
pub fn unshare_net() -> os::Result<()> {
    raw_result(raw!(libc::SYS_unshare, libc::CLONE_NEWNET)).map(drop)
}

/// A `raw!` return value as a result: negative values are `-errno`.
fn raw_result(ret: c_long) -> os::Result<c_long> {
    if ret < 0 {
        return Err(os::Error::from_raw_os_error(-ret as i32));
    }
    Ok(ret)
}

/// Counts the allocations of the calling thread, for the tests that show
/// a run's work allocates nothing once warmed up.
#[cfg(test)]
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    std::thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    struct Counting;

    // SAFETY: every call is passed on to the system allocator unchanged;
    // the count is a thread-local cell that needs no allocation.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            COUNT.with(|count| count.set(count.get() + 1));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(block, layout) }
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            COUNT.with(|count| count.set(count.get() + 1));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(block, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// `f`'s result and how many allocations (and reallocations) it made.
    pub fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let before = COUNT.with(Cell::get);
        let result = f();
        (result, COUNT.with(Cell::get) - before)
    }
}
