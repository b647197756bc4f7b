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
