//! `raw!`: a system call that returns `-errno` instead of touching `errno`
//! for the caller, for code between `clone` and `execve`. Init and the host
//! both compile this file.

/// Issues a raw system call; returns its result, or `-errno` on failure.
macro_rules! raw {
    ($nr:expr $(, $arg:expr)* $(,)?) => {{
        // SAFETY: call sites pass integers, or pointers to data prepared
        // before the clone that stays valid and unchanged until the child
        // execs or exits.
        let ret = unsafe { libc::syscall($nr $(, $arg)*) };
        if ret == -1 {
            // SAFETY: __errno_location returns this thread's errno slot.
            -std::ffi::c_long::from(unsafe { *libc::__errno_location() })
        } else {
            ret
        }
    }};
}
