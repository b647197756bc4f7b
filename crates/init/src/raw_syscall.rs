//! `raw!`: a system call that returns `-errno` instead of touching `errno`,
//! for code between `clone` and `execve` and for init, which has no C
//! library on x86_64. Init and the host both compile this file.

/// Issues a raw system call; returns its result, or `-errno` on failure.
/// Every argument is passed as a machine word (`as usize`).
macro_rules! raw {
    ($nr:expr $(, $arg:expr)* $(,)?) => {{
        let args: &[usize] = &[$($arg as usize),*];
        // SAFETY: call sites pass integers, or pointers to data that stays
        // valid and unchanged for the call (prepared before a clone, for
        // the code that runs between clone and exec).
        unsafe { $crate::raw_syscall::syscall($nr as core::ffi::c_long, args) }
    }};
}

/// System call `nr` with up to six arguments (missing ones are 0): its
/// return value, `-errno` on failure.
///
/// # Safety
///
/// The arguments must be valid for the call: pointers the kernel reads or
/// writes must point to live memory of the size the call expects.
#[cfg(target_arch = "x86_64")]
pub unsafe fn syscall(nr: core::ffi::c_long, args: &[usize]) -> core::ffi::c_long {
    let mut a = [0usize; 6];
    a[..args.len()].copy_from_slice(args);
    let ret: isize;
    // SAFETY: the caller vouches for the arguments. The `syscall`
    // instruction clobbers rcx and r11 and returns in rax; the kernel
    // preserves every other register and never touches this stack.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret as core::ffi::c_long
}

/// System call `nr` through the C library, elsewhere.
///
/// # Safety
///
/// As the x86_64 version.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn syscall(nr: core::ffi::c_long, args: &[usize]) -> core::ffi::c_long {
    let mut a = [0usize; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: the caller vouches for the arguments.
    let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if ret == -1 {
        // SAFETY: __errno_location returns this thread's errno slot.
        -core::ffi::c_long::from(unsafe { *libc::__errno_location() })
    } else {
        ret
    }
}

/// `clone` or `clone3` (`nr`, with up to five arguments) giving the child a
/// stack of its own, on which it calls `entry(arg)` at once; `entry` must
/// never return. Returns the child's pid to the parent, or `-errno`.
///
/// # Safety
///
/// The arguments must set up a stack for the child (`clone`'s stack
/// argument, or `clone3`'s `stack` and `stack_size`): 16-byte aligned
/// memory that stays alive and unused by anyone else until the child execs
/// or exits, as must whatever `arg` points to. `entry` is an
/// `extern "C" fn(usize) -> !` in effect.
#[cfg(target_arch = "x86_64")]
pub unsafe fn clone_entering(
    nr: core::ffi::c_long,
    args: [usize; 5],
    entry: usize,
    arg: usize,
) -> core::ffi::c_long {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments. In the child (rax 0)
    // the kernel has switched to the new stack, 16-byte aligned, so `call`
    // leaves it as the ABI wants at `entry`; rbp is cleared to end
    // backtraces there, and nothing of the parent's frame is touched.
    // `entry` never returns, and `ud2` guards against it. The parent gets
    // rax and finds every other register but rcx and r11 as it was; r12 and
    // r13 carry `arg` and `entry` across the call.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r12") arg,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret as core::ffi::c_long
}
