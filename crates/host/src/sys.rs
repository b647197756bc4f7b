//! The host's unsafe code: starting a container's init with `clone3` and
//! the raw system calls its child makes before `execveat`, anonymous
//! mappings (frame buffers, the child's stack), and the byte locks of
//! [`ids`](crate::ids).
//!
//! # What the child may do
//!
//! The host may be multi-threaded. On x86_64 the child of `clone3` shares
//! the host's memory until it execs (`CLONE_VM`, on a stack of its own):
//! copying the host's page tables, and the copy-on-write faults the host
//! then takes on every page it writes, made a fork cost in proportion to
//! the host's size (a tenth of a small host's cold build). Elsewhere it is
//! a copy of the calling thread alone. Either way another thread may hold
//! the allocator's lock or stdio's, and with `CLONE_VM` the child's writes
//! land in the host's memory: [`init_child`] makes raw system calls (which
//! touch neither `errno` nor any thread-local state) on data prepared
//! before the clone, writes only to its own stack, and does nothing else:
//! no allocation, no locks, no panics. Signal handlers are reset in the
//! child (`CLONE_CLEAR_SIGHAND`), so no handler of the host runs on its
//! stack. Each failure is written to the error pipe as `(step, errno)`
//! before `exit_group`. The host keeps the stack and the prepared data
//! alive until the child has exec'd, exited, or been killed and reaped.

use std::ffi::{c_char, c_int, c_long};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Zeroed memory in an anonymous mapping of its own, whose pages the
/// kernel supplies on first touch. A container's frame buffer is one:
/// allocated through the C library instead, 256 KiB come from the heap
/// once an earlier buffer was freed (glibc then raises its mapping
/// threshold), and `calloc` clears every byte, a tenth of a cold
/// container's build. So is the stack of init's child before it execs.
pub(crate) struct Mapping {
    start: std::ptr::NonNull<u8>,
    len: usize,
}

/// The frame buffer of [`channel`](crate::channel).
pub(crate) use Mapping as FrameBuffer;

// SAFETY: the mapping is owned outright, like a `Box<[u8]>`.
unsafe impl Send for Mapping {}
// SAFETY: shared references give only `&[u8]`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` zero bytes. Aborts like any allocation when memory is out.
    pub(crate) fn new(len: usize) -> Self {
        // SAFETY: a new private anonymous mapping aliases nothing.
        let mapped = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        };
        match mapped.ok().and_then(|at| std::ptr::NonNull::new(at.cast())) {
            Some(start) => Self { start, len },
            None => std::alloc::handle_alloc_error(
                std::alloc::Layout::array::<u8>(len).expect("frame length fits"),
            ),
        }
    }
}

impl std::ops::Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes, zeroed or written, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Mapping {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, referenced by nothing else.
        let _ = unsafe { rustix::mm::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({} bytes)", self.len)
    }
}

/// Steps of the child, reported through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum ChildStep {
    /// Waiting for the host to write the id maps.
    Release = 0,
    /// Becoming root of the new user namespace.
    Identity = 1,
    /// Placing the socket at fd 3 and `/dev/null` at 0, 1, 2.
    Descriptors = 2,
    /// Executing init.
    Exec = 3,
}

impl ChildStep {
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        [Self::Release, Self::Identity, Self::Descriptors, Self::Exec]
            .into_iter()
            .find(|step| *step as u32 == raw)
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Release => "waiting for the id maps",
            Self::Identity => "becoming root of the user namespace",
            Self::Descriptors => "setting up descriptors",
            Self::Exec => "executing init",
        }
    }
}

/// Everything the child needs, prepared before the clone.
pub(crate) struct InitChild<'a> {
    /// The container's end of the socket pair.
    pub socket: RawFd,
    /// The init executable (read-only, for `execveat`).
    pub init: RawFd,
    /// Read end of the release pipe.
    pub release: RawFd,
    /// Write end of the release pipe: the host's, closed in the child
    /// before it waits, so that the host's death is the pipe's end.
    pub release_write: RawFd,
    /// Write end of the error pipe.
    pub errors: RawFd,
    /// Become uid/gid 0 after release (a new user namespace was made).
    pub become_root: bool,
    /// NULL-terminated argv.
    pub argv: &'a [*const c_char],
    /// NULL-terminated envp.
    pub envp: &'a [*const c_char],
}

/// A started init.
pub(crate) struct Spawned {
    /// Its pid in the host's PID namespace.
    pub pid: i32,
    /// Its pidfd.
    pub pidfd: OwnedFd,
}

const CLOSE_RANGE_CLOEXEC: c_long = 1 << 2;
/// Descriptors are lifted at or above this before being placed.
const LIFT: c_long = 10;

/// Bytes of the stack init's child runs on until it execs; it makes a few
/// system calls from frames of a few hundred bytes.
pub(crate) const CHILD_STACK_LEN: usize = 64 * 1024;

/// `CLONE_CLEAR_SIGHAND` (Linux 5.5): the child starts with every handled
/// signal back at its default action.
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// `CLONE_INTO_CGROUP` (Linux 5.7): the child starts in the cgroup whose
/// directory `clone_args.cgroup` names. Above 32 bits, like
/// [`CLONE_CLEAR_SIGHAND`].
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `SECBIT_NO_SETUID_FIXUP` (linux/securebits.h): a change of uid leaves
/// the capability sets as they are.
const SECBIT_NO_SETUID_FIXUP: c_long = 1 << 2;

/// `clone3` with `flags | CLONE_PIDFD`; the child runs [`init_child`], on
/// `stack` and sharing this process's memory where that is supported (see
/// the module doc). The caller keeps `child`, what it points to and `stack`
/// alive until the child has exec'd or exited (its error pipe's end of
/// file) or has been killed and reaped.
///
/// With `owner`, this thread (root) makes the clone with that effective
/// uid, so that the user namespace `flags` make is owned by `owner`, not
/// by root (see [`as_owner`]). With `cgroup`, the directory of a v2 group,
/// the child starts in that group.
pub(crate) fn spawn_init(
    flags: u64,
    child: &InitChild<'_>,
    stack: &mut Mapping,
    owner: Option<u32>,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
) -> std::io::Result<Spawned> {
    let mut pidfd: c_int = -1;
    // SAFETY: clone_args is plain data; zero is valid for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    if let Some(group) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = group.as_raw_fd() as u64;
    }
    let ret = match owner {
        Some(owner) => as_owner(owner, || clone_init(&mut args, child, stack)),
        None => clone_init(&mut args, child, stack),
    };
    if ret < 0 {
        return Err(std::io::Error::from_raw_os_error(-ret as i32));
    }
    Ok(Spawned {
        pid: ret as i32,
        // SAFETY: CLONE_PIDFD stored a fresh descriptor owned by no one.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
    })
}

/// Runs `clone` with this thread's effective uid `owner`, then back to
/// root: a user namespace made meanwhile is owned by `owner`. What its
/// processes take of per-user kernel quotas (inotify instances, POSIX
/// message queue bytes, pending signals) is also counted against its
/// owner in the namespace above, so owned by root they would use up root's
/// on the host. The switch is this thread's alone (a raw `setresuid`;
/// glibc's would change every thread), and keeps the capability sets
/// (`SECBIT_NO_SETUID_FIXUP` for the while), so that the namespace is made
/// by a process that still holds `CAP_SYS_ADMIN`, as hosts that restrict
/// unprivileged user namespaces want. Real and saved uid stay 0, which
/// lets the thread take its effective uid back.
fn as_owner(owner: u32, clone: impl FnOnce() -> c_long) -> c_long {
    let bits = raw!(libc::SYS_prctl, libc::PR_GET_SECUREBITS);
    // Without the bit (no CAP_SETPCAP, or it is locked off) the effective
    // set is emptied for the while and refilled from the permitted set on
    // the way back.
    let kept = bits >= 0
        && raw!(
            libc::SYS_prctl,
            libc::PR_SET_SECUREBITS,
            bits | SECBIT_NO_SETUID_FIXUP
        ) == 0;
    let switched = raw!(libc::SYS_setresuid, -1i32, owner, -1i32);
    if switched < 0 {
        restore_securebits(kept, bits);
        return switched;
    }
    let ret = clone();
    if raw!(libc::SYS_setresuid, -1i32, 0, -1i32) < 0 {
        // Cannot happen (the saved uid is 0); a host thread left without
        // root must not go on.
        std::process::abort();
    }
    restore_securebits(kept, bits);
    ret
}

fn restore_securebits(kept: bool, bits: c_long) {
    if kept && raw!(libc::SYS_prctl, libc::PR_SET_SECUREBITS, bits) < 0 {
        // The bit was set with CAP_SETPCAP, which the thread still holds.
        std::process::abort();
    }
}

/// The child's side of [`spawn_init`] on its own stack.
extern "C" fn init_entry(child: *const InitChild<'_>) -> ! {
    // SAFETY: the `&InitChild` passed to `clone_init`, which the parent
    // keeps alive and unchanged until this child execs or exits.
    init_child(unsafe { &*child })
}

/// `clone3(args)` with `CLONE_VM | CLONE_CLEAR_SIGHAND` on `stack`, the
/// child entering [`init_entry`]: the pid, or `-errno`.
#[cfg(target_arch = "x86_64")]
fn clone_init(args: &mut libc::clone_args, child: &InitChild<'_>, stack: &mut Mapping) -> c_long {
    args.flags |= libc::CLONE_VM as u64 | CLONE_CLEAR_SIGHAND;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = stack.len() as u64;
    let entry: extern "C" fn(*const InitChild<'_>) -> ! = init_entry;
    let call = [
        args as *mut libc::clone_args as usize,
        std::mem::size_of::<libc::clone_args>(),
        0,
        0,
        0,
    ];
    // SAFETY: clone3 with the stack `stack`, page-aligned and alive until
    // the child execs or exits (the caller's contract, as is `child`'s);
    // the child runs `init_entry`, which never returns. What the child may
    // touch is in the module doc.
    unsafe {
        crate::raw_syscall::clone_entering(
            libc::SYS_clone3,
            call,
            entry as usize,
            child as *const InitChild<'_> as usize,
        )
    }
}

/// `clone3(args)`, the child a copy of this thread entering
/// [`init_entry`] on the same stack: the pid, or `-errno`.
#[cfg(not(target_arch = "x86_64"))]
fn clone_init(args: &mut libc::clone_args, child: &InitChild<'_>, _stack: &mut Mapping) -> c_long {
    let ret = raw!(
        libc::SYS_clone3,
        args as *mut libc::clone_args,
        std::mem::size_of::<libc::clone_args>()
    );
    if ret == 0 {
        init_entry(child);
    }
    ret
}

fn child_fail(errors: RawFd, step: ChildStep, errno: c_long) -> ! {
    let record: [u32; 2] = [step as u32, errno as u32];
    raw!(libc::SYS_write, errors, record.as_ptr(), 8usize);
    loop {
        raw!(libc::SYS_exit_group, 127);
    }
}

fn check(errors: RawFd, step: ChildStep, ret: c_long) -> c_long {
    if ret < 0 {
        child_fail(errors, step, -ret);
    }
    ret
}

fn init_child(child: &InitChild<'_>) -> ! {
    let errors = child.errors;
    // Without `CLONE_FILES` the child has its own copy of every descriptor
    // of the host, this end of the pipe among them: kept, a host that died
    // now would leave the read below waiting forever, holding the host's
    // listening sockets and files.
    raw!(libc::SYS_close, child.release_write);
    let mut go = 0u8;
    if raw!(libc::SYS_read, child.release, &mut go as *mut u8, 1usize) != 1 {
        // The host gave up (or died) before releasing us.
        loop {
            raw!(libc::SYS_exit_group, 126);
        }
    }
    if child.become_root {
        // Capabilities in the new namespace are only kept across execve by
        // its root; the maps written by the host make uid 0 valid now.
        check(
            errors,
            ChildStep::Identity,
            raw!(libc::SYS_setresgid, 0, 0, 0),
        );
        check(
            errors,
            ChildStep::Identity,
            raw!(libc::SYS_setresuid, 0, 0, 0),
        );
    }
    let socket = check(
        errors,
        ChildStep::Descriptors,
        raw!(libc::SYS_fcntl, child.socket, libc::F_DUPFD_CLOEXEC, LIFT),
    );
    let init = check(
        errors,
        ChildStep::Descriptors,
        raw!(libc::SYS_fcntl, child.init, libc::F_DUPFD_CLOEXEC, LIFT),
    );
    let errors = check(
        errors,
        ChildStep::Descriptors,
        raw!(libc::SYS_fcntl, child.errors, libc::F_DUPFD_CLOEXEC, LIFT),
    ) as RawFd;
    check(
        errors,
        ChildStep::Descriptors,
        raw!(libc::SYS_dup3, socket, 3, 0),
    );
    let null = check(
        errors,
        ChildStep::Descriptors,
        raw!(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/dev/null".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC
        ),
    );
    for fd in 0..3 {
        check(
            errors,
            ChildStep::Descriptors,
            raw!(libc::SYS_dup3, null, fd, 0),
        );
    }
    check(
        errors,
        ChildStep::Descriptors,
        raw!(libc::SYS_close_range, 4, c_int::MAX, CLOSE_RANGE_CLOEXEC),
    );
    let ret = raw!(
        libc::SYS_execveat,
        init,
        c"".as_ptr(),
        child.argv.as_ptr(),
        child.envp.as_ptr(),
        libc::AT_EMPTY_PATH
    );
    child_fail(errors, ChildStep::Exec, -ret)
}

/// Takes (`take`) or gives back a write lock on byte `index` of `file`,
/// held by its open file description (`F_OFD_SETLK`, which never waits):
/// `Ok(false)` when another open file description holds that byte.
pub(crate) fn lock_byte(
    file: std::os::fd::BorrowedFd<'_>,
    index: u32,
    take: bool,
) -> std::io::Result<bool> {
    // SAFETY: flock is plain data; zero is valid for every field, and an
    // open file description lock wants `l_pid` 0.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = if take { libc::F_WRLCK } else { libc::F_UNLCK } as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = libc::off_t::from(index);
    lock.l_len = 1;
    // SAFETY: `file` is an open descriptor for the call, and F_OFD_SETLK
    // only reads the flock, which lives on this frame throughout.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) if take => Ok(false),
        _ => Err(err),
    }
}

/// `fork`, for a test that runs on the only thread of its process: `None`
/// in the child.
#[cfg(test)]
pub(crate) fn fork_alone() -> std::io::Result<Option<rustix::process::Pid>> {
    // SAFETY: the caller is its process's only thread, so no lock or
    // allocator state is left half-changed in the child.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(rustix::process::Pid::from_raw(pid)),
    }
}

/// Shuts both directions of a connected socket, so that its peer reads its
/// end; errors are ignored (the peer may be gone).
pub(crate) fn close_connection(socket: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
}

/// Sends `SIGKILL` through a pidfd. Errors (already dead) are ignored.
pub(crate) fn pidfd_kill(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
}

/// Waits for the process behind `pidfd` to exit and reaps it; returns its
/// wait status as text.
pub(crate) fn pidfd_reap(pidfd: &OwnedFd) -> String {
    use rustix::process::{WaitId, WaitIdOptions};
    loop {
        match rustix::process::waitid(
            WaitId::PidFd(rustix::fd::AsFd::as_fd(pidfd)),
            WaitIdOptions::EXITED,
        ) {
            Ok(Some(status)) => {
                return if let Some(code) = status.exit_status() {
                    format!("exit code {code}")
                } else if let Some(signal) = status.terminating_signal() {
                    format!("killed by signal {signal}")
                } else {
                    "ended".into()
                };
            }
            Ok(None) => return "ended".into(),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return format!("not waitable: {err}"),
        }
    }
}

/// Whether the process behind `pidfd` exits within `timeout_ms`, without
/// reaping it.
pub(crate) fn pidfd_exits_within(pidfd: &OwnedFd, timeout_ms: i64) -> bool {
    let timeout = rustix::time::Timespec {
        tv_sec: timeout_ms / 1000,
        tv_nsec: (timeout_ms % 1000) * 1_000_000,
    };
    loop {
        let mut fds = [rustix::event::PollFd::new(
            pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Whether `fd` becomes readable (or hangs up) before `deadline`.
pub(crate) fn readable_before(
    fd: std::os::fd::BorrowedFd<'_>,
    deadline: std::time::Instant,
) -> bool {
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            // Let the receive report what is wrong with the socket.
            Err(_) => return true,
        }
    }
}

/// What [`readable_or_peer_closed`] woke for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The descriptor is readable (or hung up).
    Readable,
    /// The deadline passed.
    TimedOut,
    /// The peer closed the connection, or it failed.
    PeerClosed,
    /// The peer closed its end after sending bytes not read yet.
    PeerSentMore,
}

/// Waits until `fd` becomes readable (or hangs up), `deadline` passes
/// (`None`: however long it takes), or the peer of the connected stream
/// socket `peer` closes its end (`POLLRDHUP`), or the connection fails.
/// Bytes arriving on `peer` do not end the wait; a close after bytes not
/// read yet is [`Woken::PeerSentMore`].
pub(crate) fn readable_or_peer_closed(
    fd: std::os::fd::BorrowedFd<'_>,
    peer: std::os::fd::BorrowedFd<'_>,
    deadline: Option<std::time::Instant>,
) -> Woken {
    use rustix::event::PollFlags;
    loop {
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let mut fds = [
            rustix::event::PollFd::new(&fd, PollFlags::IN),
            rustix::event::PollFd::new(&peer, PollFlags::RDHUP),
        ];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Woken::TimedOut,
            Ok(_) if !fds[0].revents().is_empty() => return Woken::Readable,
            Ok(_) if fds[1].revents().intersects(PollFlags::HUP | PollFlags::ERR) => {
                return Woken::PeerClosed;
            }
            // The end of what the peer sends: nothing after it, or more
            // bytes first.
            Ok(_) => {
                let mut byte = [0u8; 1];
                let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
                return match rustix::net::recv(peer, &mut byte, flags) {
                    Ok((0, _)) => Woken::PeerClosed,
                    Ok(_) => Woken::PeerSentMore,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => Woken::PeerClosed,
                };
            }
            Err(rustix::io::Errno::INTR) => continue,
            // Let the receive report what is wrong with the socket.
            Err(_) => return Woken::Readable,
        }
    }
}

/// The raw number of an owned descriptor.
pub(crate) fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// The first stop signal [`on_stop_signal`] took (0 while none came).
pub(crate) static STOP_RECEIVED: std::sync::atomic::AtomicI32 =
    std::sync::atomic::AtomicI32::new(0);
/// The pidfd of the init a stop signal kills (-1: none is armed).
pub(crate) static STOP_TARGET: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// Handlers running right now, which disarming waits out before the pidfd
/// they may be using is closed.
pub(crate) static STOP_HANDLERS_RUNNING: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(0);

/// The handler of the stop signals: records the first one and kills the
/// armed init. Touches atomics and makes one raw system call, which is all
/// a signal handler may safely do.
extern "C" fn on_stop_signal(signal: c_int) {
    use std::sync::atomic::Ordering::SeqCst;
    STOP_HANDLERS_RUNNING.fetch_add(1, SeqCst);
    let _ = STOP_RECEIVED.compare_exchange(0, signal, SeqCst, SeqCst);
    let target = STOP_TARGET.load(SeqCst);
    if target >= 0 {
        // Where `raw!` goes through the C library (not x86_64) it sets
        // errno, which the interrupted code may be about to read.
        // SAFETY: no precondition; it returns this thread's errno slot,
        // valid as long as the thread lives.
        let errno_slot = unsafe { libc::__errno_location() };
        // SAFETY: the slot is valid (above) and this thread's alone.
        let errno = unsafe { errno_slot.read() };
        // Fails harmlessly (ESRCH) when init has already ended.
        raw!(
            libc::SYS_pidfd_send_signal,
            target,
            libc::SIGKILL,
            0usize,
            0usize
        );
        // SAFETY: as above.
        unsafe { errno_slot.write(errno) };
    }
    STOP_HANDLERS_RUNNING.fetch_sub(1, SeqCst);
}

/// Whether `signal` is ignored in this process (`SIG_IGN`); false when that
/// cannot be read.
pub(crate) fn signal_ignored(signal: c_int) -> bool {
    // SAFETY: `sigaction` is plain data, for which all zeroes is valid.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `action`.
    let read = unsafe { libc::sigaction(signal, std::ptr::null(), &mut action) };
    read == 0 && action.sa_sigaction == libc::SIG_IGN
}

/// Installs [`on_stop_signal`] for `signal`, unless the process inherited
/// it ignored; returns whether it was installed.
pub(crate) fn catch_stop_signal(signal: c_int) -> std::io::Result<bool> {
    if signal_ignored(signal) {
        return Ok(false);
    }
    // SAFETY: as above.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_stop_signal as extern "C" fn(c_int) as usize;
    // Interrupted reads and writes resume; the waits that cannot resume
    // (`poll`) are retried by their callers.
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: the handler is async-signal-safe (see `on_stop_signal`) and
    // lives as long as the program; the mask is empty (zeroed).
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Ends the process by `signal`, as it would have ended had the signal not
/// been caught: its default action restored, then raised.
pub(crate) fn die_of(signal: c_int) -> ! {
    // SAFETY: plain data, all zeroes valid; SIG_DFL (0) installs no code.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_DFL;
    // SAFETY: restores the default action, which runs no code of ours.
    unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
    // SAFETY: raising a signal whose action is the default runs no code.
    // To this thread: delivered before `raise` returns, unless the caller
    // blocked it here.
    unsafe { libc::raise(signal) };
    // Blocked, or a signal whose default is to go on (no stop signal is):
    // the shells' code for a death by that signal.
    std::process::exit(128_i32.saturating_add(signal))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;

    /// Set for the child process of
    /// [`a_host_that_dies_before_releasing_its_child_leaves_nothing_running`]:
    /// the file it writes its clone's pid to.
    const DYING_HOST: &str = "HUTCH_TEST_DYING_HOST";

    #[test]
    #[ignore = "helper: run by a_host_that_dies_before_releasing_its_child_leaves_nothing_running"]
    fn isolated_host_dies_before_release() {
        let pid_file = std::env::var_os(DYING_HOST).expect("run through its parent test");
        let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let (release_read, release_write) = pipe();
        let (_errors_read, errors_write) = pipe();
        let null = OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
        let arg0 = c"hutch-init";
        let argv: [*const c_char; 2] = [arg0.as_ptr(), std::ptr::null()];
        let envp: [*const c_char; 1] = [std::ptr::null()];
        let child = InitChild {
            socket: raw(&null),
            init: raw(&null),
            release: raw(&release_read),
            release_write: raw(&release_write),
            errors: raw(&errors_write),
            become_root: false,
            argv: &argv,
            envp: &envp,
        };
        let mut stack = Mapping::new(CHILD_STACK_LEN);
        let spawned = spawn_init(0, &child, &mut stack, None, None).expect("clone3");
        std::fs::write(pid_file, spawned.pid.to_string()).expect("the pid file");
        // The host dies here, its child never released.
        std::process::exit(0);
    }

    #[test]
    fn a_host_that_dies_before_releasing_its_child_leaves_nothing_running() {
        let pid_file =
            std::env::temp_dir().join(format!("hutch-dying-host-{}", std::process::id()));
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::tests::isolated_host_dies_before_release",
                "--ignored",
                "--test-threads=1",
            ])
            .env(DYING_HOST, &pid_file)
            // Copies of these would be the orphan's too.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the dying host: {status}");
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            panic!("no pid: {pid}");
        };
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            // Gone already.
            Err(rustix::io::Errno::SRCH) => return,
            Err(e) => panic!("pidfd_open({pid:?}): {e}"),
        };
        let mut polled = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        let within = rustix::event::Timespec::try_from(Duration::from_secs(10)).unwrap();
        let ended = rustix::event::poll(&mut polled, Some(&within)).unwrap() == 1;
        if !ended {
            let _ =
                rustix::process::pidfd_send_signal(pidfd.as_fd(), rustix::process::Signal::KILL);
        }
        assert!(
            ended,
            "the child of a host that died before releasing it still waits 10 s later, \
             holding copies of all the host's descriptors"
        );
    }

    #[test]
    fn a_peer_s_close_ends_the_wait_and_its_bytes_do_not() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let soon = || Some(std::time::Instant::now() + Duration::from_millis(20));
        let (mut init, reply) = UnixStream::pair().unwrap();
        let (client, mut peer) = UnixStream::pair().unwrap();
        let wait = |deadline| readable_or_peer_closed(reply.as_fd(), client.as_fd(), deadline);
        assert_eq!(wait(soon()), Woken::TimedOut);
        peer.write_all(b"GET /version").unwrap();
        assert_eq!(wait(soon()), Woken::TimedOut, "bytes are no close");
        init.write_all(b"reply").unwrap();
        assert_eq!(wait(None), Woken::Readable);
        let (_init, reply) = UnixStream::pair().unwrap();
        let wait = |deadline| readable_or_peer_closed(reply.as_fd(), client.as_fd(), deadline);
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(wait(None), Woken::PeerSentMore, "a close after bytes");
        let (client, peer) = UnixStream::pair().unwrap();
        let wait = |deadline| readable_or_peer_closed(reply.as_fd(), client.as_fd(), deadline);
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(wait(None), Woken::PeerClosed, "its sending side closed");
        let (client, peer) = UnixStream::pair().unwrap();
        drop(peer);
        let wait = |deadline| readable_or_peer_closed(reply.as_fd(), client.as_fd(), deadline);
        assert_eq!(wait(None), Woken::PeerClosed, "gone");
    }
}
