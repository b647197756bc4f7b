//! An exec of a prepared `ExecSpec` in a warm container allocates nothing
//! in the host.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs::File;
use std::os::fd::AsFd;

use hutch_host::protocol::Status;
use hutch_host::{ContainerBuilder, ExecSpec};

/// Counts allocations made by the thread that enabled counting.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-local storage may be gone while a thread exits.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; counting touches only thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `realloc`'s contract, passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_warm_exec_allocates_nothing_in_the_host() {
    let builder = if rustix::process::geteuid().is_root() {
        ContainerBuilder::new()
    } else {
        ContainerBuilder::new().allow_rusage()
    };
    let mut container = builder.build().unwrap();
    let null = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["/bin/true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    // Warm up: buffers reach their working size.
    for _ in 0..3 {
        assert_eq!(container.exec(&spec).unwrap().status, Status::Ok);
    }
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let mut statuses = [Status::RunnerError; 100];
    for status in &mut statuses {
        *status = container.exec(&spec).unwrap().status;
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.with(Cell::get);
    assert!(statuses.iter().all(|s| *s == Status::Ok));
    assert_eq!(
        allocations, 0,
        "100 warm execs allocated {allocations} times"
    );
}
