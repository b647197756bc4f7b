//! init's run-time without a C library (x86_64): the process entry point,
//! the heap, the memory functions the compiler calls, and the panic
//! handler. They replace glibc's static start-up, which cost each
//! container about half a millisecond of CPU on a virtual machine (glibc
//! sizes the CPU caches with some 70 `CPUID` instructions, each one a trap
//! to the hypervisor) and made init's executable 1.3 MB instead of 168 KB.
//!
//! Built only with `--cfg hutch_nolibc` (see `crates/host/build.rs`), as a
//! static, position-dependent executable started at `_start` with no C
//! start files: nothing needs relocating, no thread-local storage exists,
//! and init has one thread. Every `unsafe` block of init's start-up, heap
//! and memory functions is here.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::ptr::{self, null_mut};

use crate::sys::exit;

core::arch::global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    // The outermost frame: no return address, no frame pointer. The
    // kernel leaves argc at rsp; align the stack for the call.
    "xor ebp, ebp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym start,
);

/// Runs init's `main`, which ends the process itself.
extern "C" fn start() -> ! {
    crate::main();
    exit(0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Nothing of init panics on input; a panic is a bug. Say where on
    // standard error (the host's, or /dev/null) and end init: the host sees
    // its socket close.
    let mut text = [0u8; 512];
    let mut out = Cursor {
        buf: &mut text,
        len: 0,
    };
    let _ = core::fmt::write(&mut out, format_args!("hutch-init: {info}\n"));
    let len = out.len;
    raw!(libc::SYS_write, 2, text.as_ptr(), len);
    exit(101)
}

/// Formats into a fixed buffer, dropping what does not fit.
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Block sizes of the small-allocation classes: 16 bytes to 4 KiB.
const CLASSES: usize = 9;
const SMALLEST: usize = 16;
const LARGEST: usize = SMALLEST << (CLASSES - 1);
/// Small blocks are carved from chunks of this size.
const CHUNK: usize = 64 * 1024;
const PAGE: usize = 4096;

/// A heap of power-of-two size classes with a free list each; blocks
/// larger than [`LARGEST`] are mappings of their own. A class takes new
/// blocks from the unused end of a chunk it mapped, so only blocks ever
/// handed out are touched (and become resident). A block of class size `s`
/// is aligned to `s` (chunks are page-aligned and `s` divides the page), so
/// any layout whose alignment is at most its size fits.
struct Heap {
    classes: UnsafeCell<[Class; CLASSES]>,
}

#[derive(Clone, Copy)]
struct Class {
    /// Blocks given back.
    free: *mut Free,
    /// The untouched rest of the class's current chunk.
    next: usize,
    end: usize,
}

struct Free {
    next: *mut Free,
}

// SAFETY: init has a single thread, and the child processes that share its
// memory (`CLONE_VM`) never allocate; the heap is never used concurrently.
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap = Heap {
    classes: UnsafeCell::new(
        [Class {
            free: null_mut(),
            next: 0,
            end: 0,
        }; CLASSES],
    ),
};

/// The class of `layout`, or `None` for a mapping of its own.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(SMALLEST);
    if size > LARGEST {
        return None;
    }
    Some(size.next_power_of_two().trailing_zeros() as usize - SMALLEST.trailing_zeros() as usize)
}

/// Fresh zeroed pages, or null.
fn map(len: usize) -> *mut u8 {
    let ret = raw!(
        libc::SYS_mmap,
        0usize,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1isize,
        0usize
    );
    if ret < 0 { null_mut() } else { ret as *mut u8 }
}

fn pages(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

// SAFETY: `alloc` hands out each block once until `dealloc` takes it back
// (free lists and fresh chunk space never overlap), sized and aligned for
// its layout; mappings are page-aligned and at least the layout's size.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > PAGE {
            return null_mut();
        }
        let Some(index) = class(layout) else {
            return map(pages(layout.size()));
        };
        // SAFETY: single-threaded (see `Sync` above), and no reference to
        // the classes outlives this call.
        let class = unsafe { &mut (*self.classes.get())[index] };
        if !class.free.is_null() {
            let block = class.free;
            // SAFETY: a non-null list head is a block given back, on which
            // `dealloc` wrote a `Free`.
            class.free = unsafe { (*block).next };
            return block.cast();
        }
        let size = SMALLEST << index;
        if class.next == class.end {
            let chunk = map(CHUNK);
            if chunk.is_null() {
                return null_mut();
            }
            class.next = chunk as usize;
            class.end = chunk as usize + CHUNK;
        }
        let block = class.next;
        class.next += size;
        block as *mut u8
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`.
        let block = unsafe { self.alloc(layout) };
        // A mapping of its own is fresh zeroed pages: leaving them
        // untouched keeps them out of the resident set until used.
        if !block.is_null() && class(layout).is_some() {
            // SAFETY: the block holds at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            None => {
                raw!(libc::SYS_munmap, block, pages(layout.size()));
            }
            Some(index) => {
                // SAFETY: as in `alloc`.
                let class = unsafe { &mut (*self.classes.get())[index] };
                let block = block.cast::<Free>();
                // SAFETY: the caller gives back a block of this class that
                // nothing uses any more, aligned for a `Free` and large
                // enough to hold one.
                unsafe { block.write(Free { next: class.free }) };
                class.free = block;
            }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()`
        // is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if let (Some(old), Some(new)) = (class(layout), class(new_layout))
            && old == new
        {
            return block;
        }
        // SAFETY: `new_layout` is valid (above) and not zero-sized.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the bytes copied, and a
            // new block never overlaps a live one.
            unsafe { ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
            // SAFETY: the caller's block, now copied and no longer used.
            unsafe { self.dealloc(block, layout) };
        }
        moved
    }
}

// The memory functions the compiler emits calls to. `rep movsb` and `rep
// stosb` are what glibc itself picks for most sizes on current CPUs.

/// Copies `n` bytes; the regions do not overlap.
///
/// # Safety
///
/// `dst` and `src` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; the direction flag is clear, as the
    // ABI guarantees at every call.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// Copies `n` bytes; the regions may overlap.
///
/// # Safety
///
/// `dst` and `src` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // `dst` is below `src` or past its end: a forward copy is safe.
        // SAFETY: the caller's contract.
        return unsafe { memcpy(dst, src, n) };
    }
    let last_dst = dst.wrapping_add(n).wrapping_sub(1);
    let last_src = src.wrapping_add(n).wrapping_sub(1);
    // SAFETY: the caller's contract; copying backwards from the last byte
    // reads every source byte before it is overwritten. The direction flag
    // is restored before returning.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") last_dst => _,
            inout("rsi") last_src => _,
            options(nostack),
        );
    }
    dst
}

/// Fills `n` bytes with `value`.
///
/// # Safety
///
/// `dst` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, value: c_int, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") value as u8,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// Compares `n` bytes.
///
/// # Safety
///
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    for i in 0..n {
        // Volatile reads keep the compiler from turning this loop into a
        // call of itself.
        // SAFETY: `i < n`, within both regions.
        let x = unsafe { ptr::read_volatile(a.wrapping_add(i)) };
        // SAFETY: as above.
        let y = unsafe { ptr::read_volatile(b.wrapping_add(i)) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
    }
    0
}

/// Whether `n` bytes differ (0 when equal).
///
/// # Safety
///
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { memcmp(a, b, n) }
}

/// The length of a NUL-terminated string.
///
/// # Safety
///
/// `s` points to a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller's contract; every byte read is at or before the
    // terminating NUL.
    while unsafe { ptr::read_volatile(s.wrapping_add(n)) } != 0 {
        n += 1;
    }
    n
}

// The precompiled `core` and `alloc` carry unwinding landing pads, which
// name these two symbols. init never unwinds (its panics end the process in
// the handler above), so neither is ever called.

/// Never called: init does not unwind.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {
    exit(134)
}

/// Never called: init does not unwind.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    exit(134)
}
