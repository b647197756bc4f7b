//! The host's unsafe code: starting a container's init with `clone3` and
//! the raw system calls its child makes before `execveat`.
//!
//! # What the child may do
//!
//! The host may be multi-threaded. The child of `clone3` is a copy of the
//! calling thread alone: another thread may have held the allocator's lock
//! or stdio's at the moment of the copy. So [`init_child`] makes raw
//! `libc::syscall` calls on data prepared before the clone and nothing else:
//! no allocation, no locks, no panics. Each failure is written to the error
//! pipe as `(step, errno)` before `_exit`.

use std::ffi::{c_char, c_int, c_long};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A container's frame buffer: an anonymous mapping of its own, whose
/// pages the kernel supplies zeroed on first touch. Allocated through the
/// C library instead, 256 KiB come from the heap once an earlier buffer
/// was freed (glibc then raises its mapping threshold), and `calloc`
/// clears every byte: a tenth of a cold container's build went there.
pub(crate) struct FrameBuffer {
    start: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its mapping outright, like a `Box<[u8]>`.
unsafe impl Send for FrameBuffer {}
// SAFETY: shared references give only `&[u8]`.
unsafe impl Sync for FrameBuffer {}

impl FrameBuffer {
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

impl std::ops::Deref for FrameBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes, zeroed or written, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for FrameBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for FrameBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, referenced by nothing else.
        let _ = unsafe { rustix::mm::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for FrameBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameBuffer({} bytes)", self.len)
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

/// `clone3` with `flags | CLONE_PIDFD`; the child runs [`init_child`].
pub(crate) fn spawn_init(flags: u64, child: &InitChild<'_>) -> std::io::Result<Spawned> {
    let mut pidfd: c_int = -1;
    // SAFETY: clone_args is plain data; zero is valid for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: without CLONE_VM the child gets a private copy of the memory
    // `child` points into and runs only init_child, which makes raw system
    // calls and never returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        -1 => Err(std::io::Error::last_os_error()),
        0 => init_child(child),
        pid => Ok(Spawned {
            pid: pid as i32,
            // SAFETY: CLONE_PIDFD stored a fresh descriptor owned by no one.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
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

/// The raw number of an owned descriptor.
pub(crate) fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}
