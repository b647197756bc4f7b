//! Endurance: thousands of runs in one container without the host or init
//! growing, many containers and one shared pool driven from many threads at
//! once without cross-talk, and a host killed by `SIGKILL` taking its
//! container down at once.
//!
//! The measurements of the whole process (descriptors, resident memory) run
//! in a child process of this test binary each (`common::run_isolated`), so
//! no other test disturbs them; the tests of this file take turns
//! (`serial`), so the timings of one are not the load of another. The
//! figures go to stderr: `cargo test --test endurance -- --nocapture` shows
//! them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod common;
use common::{children, ignored_test, memfd, open_fd_count, read_back, run_isolated, vm_rss_kib};

use hutch_host::protocol::{Status, Termination};
use hutch_host::{Container, ContainerBuilder, ExecSpec, Pool};

/// Set in the child processes that run the ignored `isolated_*` tests.
const ISOLATED_VAR: &str = "HUTCH_TEST_ENDURANCE_ISOLATED";

/// Set in the child process that holds a container until it is killed.
const HOLD_VAR: &str = "HUTCH_TEST_ENDURANCE_HOLD";

/// One test of this file at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The default container; unprivileged, with rusage accounting accepted
/// where no cgroup can be made.
fn builder() -> ContainerBuilder {
    if rustix::process::geteuid().is_root() {
        ContainerBuilder::new()
    } else {
        ContainerBuilder::new().allow_rusage()
    }
}

fn require_isolated() {
    assert!(
        std::env::var_os(ISOLATED_VAR).is_some(),
        "measures the whole process: run through common::run_isolated"
    );
}

/// Asserts that a run exited normally with code 0.
fn assert_exited_0(result: &hutch_host::protocol::ExecResult, what: &str) {
    assert_eq!(
        (result.status, result.termination),
        (Status::Ok, Termination::Exited(0)),
        "{what}: {result:?}"
    );
}

/// The host's and init's footprint at one moment.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    host_fds: usize,
    host_rss_kib: u64,
    init_fds: usize,
    init_rss_kib: u64,
}

impl Footprint {
    /// Measured between requests. Init closes its copies of a request's
    /// descriptors just after its reply: the ping's answer comes after that,
    /// when init waits for the next request.
    fn of(container: &mut Container) -> Self {
        container.ping().expect("init answers");
        let init = container.init_pid().to_string();
        Footprint {
            host_fds: open_fd_count(),
            host_rss_kib: vm_rss_kib("self"),
            init_fds: std::fs::read_dir(format!("/proc/{init}/fd"))
                .expect("init's descriptors")
                .count(),
            init_rss_kib: vm_rss_kib(&init),
        }
    }
}

/// A leak this large per run fails the memory checks: 50 bytes a run is
/// about 460 KiB over 9,500 runs and about 48 KiB over 1,000. The growth
/// measured on a healthy build is nil: the bounds leave several pages of
/// room above it.
const LEAK_BYTES_PER_RUN: u64 = 50;

/// Compares two footprints `runs` runs apart: the same descriptors in the
/// host and in init, and resident memory of each grown by less than
/// [`LEAK_BYTES_PER_RUN`] a run. Prints both.
fn assert_flat(what: &str, runs: usize, before: Footprint, after: Footprint) {
    let bound_kib = (runs as u64 * LEAK_BYTES_PER_RUN / 1024) as i64;
    let host_growth = after.host_rss_kib as i64 - before.host_rss_kib as i64;
    let init_growth = after.init_rss_kib as i64 - before.init_rss_kib as i64;
    eprintln!(
        "{what}: host fds {} -> {}, VmRSS {} -> {} KiB ({host_growth:+}); \
         init fds {} -> {}, VmRSS {} -> {} KiB ({init_growth:+}); bound {bound_kib} KiB",
        before.host_fds,
        after.host_fds,
        before.host_rss_kib,
        after.host_rss_kib,
        before.init_fds,
        after.init_fds,
        before.init_rss_kib,
        after.init_rss_kib,
    );
    assert_eq!(after.host_fds, before.host_fds, "{what}: host descriptors");
    assert_eq!(
        after.init_fds, before.init_fds,
        "{what}: init's descriptors"
    );
    assert!(
        host_growth < bound_kib,
        "{what}: the host's resident memory grew by {host_growth} KiB"
    );
    assert!(
        init_growth < bound_kib,
        "{what}: init's resident memory grew by {init_growth} KiB"
    );
}

#[test]
fn ten_thousand_sequential_execs_keep_host_memory_and_fds_flat() {
    let _serial = serial();
    run_isolated("isolated_ten_thousand_sequential_execs", ISOLATED_VAR);
}

#[test]
#[ignore = "measures the whole process: run alone by ten_thousand_sequential_execs_keep_host_memory_and_fds_flat"]
fn isolated_ten_thousand_sequential_execs() {
    require_isolated();
    const WARM_UP: usize = 500;
    const RUNS: usize = 10_000;
    let mut container = builder().build().expect("container starts");
    let init = container.init_pid();
    let null = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["/bin/true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    let run = |container: &mut Container, n: usize| {
        let result = container.exec(&spec).expect("exec request");
        assert_exited_0(&result, &format!("run {n}"));
    };
    let started = Instant::now();
    for n in 0..WARM_UP {
        run(&mut container, n);
    }
    let before = Footprint::of(&mut container);
    for n in WARM_UP..RUNS {
        run(&mut container, n);
    }
    let after = Footprint::of(&mut container);
    eprintln!("{RUNS} runs of /bin/true in {:?}", started.elapsed());
    assert_eq!(children(init), Vec::<i32>::new(), "init has a child left");
    assert_flat(
        &format!("/bin/true runs {WARM_UP}..{RUNS}"),
        RUNS - WARM_UP,
        before,
        after,
    );
}

#[test]
fn exec_then_reset_rounds_keep_host_memory_and_fds_flat() {
    let _serial = serial();
    run_isolated("isolated_exec_then_reset_rounds", ISOLATED_VAR);
}

#[test]
#[ignore = "measures the whole process: run alone by exec_then_reset_rounds_keep_host_memory_and_fds_flat"]
fn isolated_exec_then_reset_rounds() {
    require_isolated();
    const WARM_UP: usize = 100;
    const ROUNDS: usize = 1_000;
    let mut container = builder().build().expect("container starts");
    let init = container.init_pid();
    let null = File::open("/dev/null").unwrap();
    // `mkdir` fails on a directory that exists: every exit 0 also says the
    // reset before it emptied the work directory and /tmp.
    let spec = ExecSpec::new(["/bin/mkdir", "/w/d", "/tmp/d"]).stdio(
        null.as_fd(),
        null.as_fd(),
        null.as_fd(),
    );
    let (mut in_exec, mut in_reset) = (Duration::ZERO, Duration::ZERO);
    let mut round = |container: &mut Container, n: usize| {
        let started = Instant::now();
        let result = container.exec(&spec).expect("exec request");
        let execed = Instant::now();
        assert_exited_0(&result, &format!("round {n}"));
        container.reset().expect("reset");
        in_exec += execed - started;
        in_reset += execed.elapsed();
    };
    for n in 0..WARM_UP {
        round(&mut container, n);
    }
    let before = Footprint::of(&mut container);
    for n in WARM_UP..WARM_UP + ROUNDS {
        round(&mut container, n);
    }
    let after = Footprint::of(&mut container);
    eprintln!(
        "{} rounds of exec and reset: {in_exec:?} in exec, {in_reset:?} in reset",
        WARM_UP + ROUNDS
    );
    assert_eq!(children(init), Vec::<i32>::new(), "init has a child left");
    assert_flat(
        &format!("exec+reset rounds {WARM_UP}..{}", WARM_UP + ROUNDS),
        ROUNDS,
        before,
        after,
    );
}

/// Threads, each with its own container or sharing the pool, and runs per
/// thread.
const THREADS: usize = 8;
const RUNS_PER_THREAD: usize = 200;

/// Runs `echo <line>` with stdout in a fresh memfd and checks the run
/// printed exactly that line: another run's output in it would be
/// cross-talk.
fn echo_exactly(container: &mut Container, line: &str) {
    let null = File::open("/dev/null").unwrap();
    let out = memfd("stdout");
    let spec = ExecSpec::new(["/bin/echo", line]).stdio(null.as_fd(), out.as_fd(), null.as_fd());
    let result = container.exec(&spec).expect("exec request");
    assert_exited_0(&result, line);
    assert_eq!(read_back(&out), format!("{line}\n"), "the output of {line}");
}

/// A pidfd of `pid`, which must be alive and not reaped: a container held
/// by the caller.
fn pidfd(pid: i32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap()
}

/// Whether the process behind `pidfd` has exited and been reaped: its
/// pidfd's `fdinfo` then names no pid (`Pid: -1`). Unlike `/proc/<pid>`,
/// this cannot be fooled by the pid's reuse.
fn reaped(pidfd: &OwnedFd) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).unwrap();
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .unwrap_or_else(|| panic!("no Pid in a pidfd's fdinfo:\n{info}"));
    pid.trim() == "-1"
}

/// Builds a container and drops it, so that what a process keeps for every
/// later container (the init executable's memfd) is open before a
/// descriptor count.
fn open_the_init_executable() {
    drop(builder().build().expect("container starts"));
}

#[test]
fn many_containers_from_many_threads_at_once() {
    let _serial = serial();
    run_isolated("isolated_many_containers_from_many_threads", ISOLATED_VAR);
}

#[test]
#[ignore = "measures the whole process: run alone by many_containers_from_many_threads_at_once"]
fn isolated_many_containers_from_many_threads() {
    require_isolated();
    open_the_init_executable();
    let fds_before = open_fd_count();
    let start = Barrier::new(THREADS);
    let all_built = Barrier::new(THREADS);
    let started = Instant::now();
    let inits: Vec<(i32, OwnedFd)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (start, all_built) = (&start, &all_built);
                scope.spawn(move || {
                    // Every thread builds at the same moment, and every
                    // container is up before the first run.
                    // A failed build panics only past the barrier, so the
                    // other threads are not left waiting for it.
                    start.wait();
                    let built = builder().build();
                    all_built.wait();
                    let mut container = built.expect("container starts");
                    let init = container.init_pid();
                    let init_fd = pidfd(init);
                    for i in 0..RUNS_PER_THREAD {
                        echo_exactly(&mut container, &format!("container {t} run {i}"));
                    }
                    assert_eq!(children(init), Vec::<i32>::new(), "init has a child left");
                    drop(container);
                    (init, init_fd)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    eprintln!(
        "{THREADS} threads, each with its own container, {RUNS_PER_THREAD} runs each, in {:?}",
        started.elapsed()
    );
    let distinct: std::collections::BTreeSet<i32> = inits.iter().map(|(pid, _)| *pid).collect();
    assert_eq!(
        distinct.len(),
        THREADS,
        "one init per container: {distinct:?}"
    );
    for (pid, init_fd) in &inits {
        assert!(
            reaped(init_fd),
            "init {pid} is gone once its container is dropped"
        );
    }
    drop(inits);
    let fds_after = open_fd_count();
    eprintln!("host fds {fds_before} -> {fds_after}");
    assert_eq!(fds_after, fds_before, "host descriptors");
}

/// The pool's size: fewer containers than threads, so checkouts wait for
/// each other.
const POOL_SIZE: usize = 4;

#[test]
fn one_pool_shared_by_many_threads_at_once() {
    let _serial = serial();
    run_isolated("isolated_one_pool_shared_by_many_threads", ISOLATED_VAR);
}

#[test]
#[ignore = "measures the whole process: run alone by one_pool_shared_by_many_threads_at_once"]
fn isolated_one_pool_shared_by_many_threads() {
    require_isolated();
    open_the_init_executable();
    let fds_before = open_fd_count();
    let pool = Pool::new(builder(), POOL_SIZE);
    pool.wait_ready().expect("the pool's containers start");
    // A pidfd of every init seen, opened while its container is checked out.
    let inits: Mutex<BTreeMap<i32, OwnedFd>> = Mutex::new(BTreeMap::new());
    let start = Barrier::new(THREADS);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (pool, inits, start) = (&pool, &inits, &start);
            scope.spawn(move || {
                start.wait();
                for i in 0..RUNS_PER_THREAD {
                    let mut container = pool.checkout().expect("checkout");
                    let init = container.init_pid();
                    inits
                        .lock()
                        .unwrap()
                        .entry(init)
                        .or_insert_with(|| pidfd(init));
                    echo_exactly(&mut container, &format!("pool user {t} run {i}"));
                }
            });
        }
    });
    eprintln!(
        "{THREADS} threads sharing a pool of {POOL_SIZE}, {RUNS_PER_THREAD} runs each, in {:?}",
        started.elapsed()
    );
    assert_eq!(pool.idle(), POOL_SIZE, "every container came back");
    let inits = inits.into_inner().unwrap();
    assert_eq!(
        inits.len(),
        POOL_SIZE,
        "no container broke and was replaced: inits {:?}",
        inits.keys()
    );
    drop(pool);
    for (pid, init_fd) in &inits {
        assert!(
            reaped(init_fd),
            "init {pid} is gone once the pool is dropped"
        );
    }
    drop(inits);
    let fds_after = open_fd_count();
    eprintln!("host fds {fds_before} -> {fds_after}");
    assert_eq!(fds_after, fds_before, "host descriptors");
}

/// Run by `host_killed_by_sigkill_takes_the_container_down_within_100ms` in
/// a child process: starts `sleep 1000` in a container, prints init's and
/// the program's host pids and the container's cgroup directories, and
/// blocks until killed.
#[test]
#[ignore = "helper: run by host_killed_by_sigkill_takes_the_container_down_within_100ms"]
fn hold_a_running_program_until_killed() {
    if std::env::var_os(HOLD_VAR).is_none() {
        return;
    }
    let mut container = builder().build().expect("container starts");
    let init = container.init_pid();
    let cgroups = container.all_cgroup_dirs();
    let (ready_read, ready_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    // The exec blocks until the program ends: it runs on its own thread.
    let runner = std::thread::spawn(move || {
        let null = File::open("/dev/null").unwrap();
        let spec = ExecSpec::new(["/bin/sh", "-c", "echo ready; exec sleep 1000"]).stdio(
            null.as_fd(),
            ready_write.as_fd(),
            null.as_fd(),
        );
        let result = container.exec(&spec);
        panic!("the run ended before this process was killed: {result:?}");
    });
    let mut ready = [0u8; 6];
    File::from(ready_read).read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    let program = children(init);
    assert_eq!(
        program.len(),
        1,
        "init's one child is the program: {program:?}"
    );
    let mut stdout = std::io::stdout().lock();
    // libtest may have printed "test NAME ... " on this line already.
    writeln!(stdout, "\nPIDS {init} {}", program[0]).unwrap();
    for dir in &cgroups {
        writeln!(stdout, "CGROUP {}", dir.display()).unwrap();
    }
    writeln!(stdout, "END").unwrap();
    stdout.flush().unwrap();
    drop(stdout);
    let _ = runner.join();
    panic!("the runner thread ended before this process was killed");
}

/// How long a killed host's container may take to go, at most, before the
/// test gives up on it.
const GONE_GUARD: Duration = Duration::from_secs(5);

/// Waits until every pidfd in `pidfds` is readable (its process exited),
/// or `deadline`. Returns whether they all were.
fn wait_all_exited(pidfds: &[&OwnedFd], deadline: Instant) -> bool {
    let mut pending: Vec<&OwnedFd> = pidfds.to_vec();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut polls: Vec<_> = pending
            .iter()
            .map(|fd| rustix::event::PollFd::new(*fd, rustix::event::PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut polls, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
        let exited: Vec<bool> = polls.iter().map(|p| !p.revents().is_empty()).collect();
        let mut exited = exited.into_iter();
        pending.retain(|_| !exited.next().unwrap());
    }
    true
}

/// The child process playing the host; killed and reaped if the test
/// fails half-way.
struct Host(std::process::Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a host holding a container with a running program, kills the
/// host with `SIGKILL` and measures how long until init and the program
/// have exited. Returns that time and the cgroup directories the dead host
/// left behind.
fn kill_a_host_and_time_its_container() -> (Duration, Vec<PathBuf>) {
    let mut host = Host(
        ignored_test(
            Command::new(std::env::current_exe().unwrap()),
            "hold_a_running_program_until_killed",
            HOLD_VAR,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut lines = BufReader::new(host.0.stdout.take().unwrap()).lines();
    let mut pids = None;
    let mut cgroups = Vec::new();
    loop {
        let Some(line) = lines.next() else {
            let status = host.0.wait().unwrap();
            let mut stderr = String::new();
            let _ = host.0.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("the host ended ({status}) before naming its container's processes:\n{stderr}");
        };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("PIDS ") {
            let (init, program) = rest.split_once(' ').unwrap();
            pids = Some((
                init.parse::<i32>().unwrap(),
                program.parse::<i32>().unwrap(),
            ));
        } else if let Some(dir) = line.strip_prefix("CGROUP ") {
            cgroups.push(PathBuf::from(dir));
        } else if line == "END" {
            break;
        }
    }
    let (init, program) = pids.expect("the host named its container's processes");
    // Both are alive (the host blocks, the program sleeps): the pids are
    // theirs.
    let init_fd = pidfd(init);
    let program_fd = pidfd(program);
    let killed = Instant::now();
    host.0.kill().unwrap();
    let gone = wait_all_exited(&[&init_fd, &program_fd], killed + GONE_GUARD);
    let elapsed = killed.elapsed();
    host.0.wait().unwrap();
    assert!(
        gone,
        "init {init} and the program {program} still ran {GONE_GUARD:?} after their host was killed"
    );
    // Nothing of the container is left in its cgroup either.
    let mut left = Vec::new();
    for dir in cgroups {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            assert_eq!(procs, "", "processes left in {}", dir.display());
            left.push(dir);
        }
    }
    (elapsed, left)
}

/// Removes cgroup directories a killed host left behind. A group whose last
/// task was just torn down may report `EBUSY` for a moment.
fn remove_cgroups(dirs: &[PathBuf]) {
    for dir in dirs {
        let deadline = Instant::now() + GONE_GUARD;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
                        && Instant::now() < deadline =>
                {
                    std::thread::yield_now();
                }
                Err(e) => panic!("cannot remove {}: {e}", dir.display()),
            }
        }
    }
}

#[test]
fn host_killed_by_sigkill_takes_the_container_down_within_100ms() {
    let _serial = serial();
    let mut times = Vec::new();
    let mut leftovers = 0;
    for _ in 0..5 {
        let (elapsed, left) = kill_a_host_and_time_its_container();
        times.push(elapsed);
        leftovers += left.len();
        remove_cgroups(&left);
    }
    eprintln!("init and the program gone after the host's SIGKILL: {times:?}");
    eprintln!(
        "cgroup directories left behind by the 5 killed hosts (removed by this test): {leftovers}"
    );
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median <= Duration::from_millis(100),
        "median {median:?} of {times:?}"
    );
}

#[test]
fn init_killed_mid_exec_ends_the_run_with_a_clear_error_and_leaves_nothing() {
    let _serial = serial();
    let mut container = builder().build().unwrap();
    let init = container.init_pid();
    let null = File::open("/dev/null").unwrap();
    let (ready_read, ready_write) = rustix::pipe::pipe().unwrap();
    let spec = ExecSpec::new(["sh", "-c", "echo ready; exec sleep 1000"]).stdio(
        null.as_fd(),
        ready_write.as_fd(),
        null.as_fd(),
    );
    std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let outcome = container.exec(&spec);
            (outcome, container)
        });
        // The program has started once it says so.
        let mut ready = BufReader::new(File::from(ready_read));
        let mut line = String::new();
        ready.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        let program = children(init);
        assert_eq!(program.len(), 1, "init's children: {program:?}");
        let program_fd = pidfd(program[0]);
        rustix::process::pidfd_send_signal(pidfd(init), rustix::process::Signal::KILL).unwrap();
        let (outcome, mut container) = running.join().unwrap();
        let err = outcome.expect_err("init died mid-exec");
        assert!(
            matches!(err, hutch_host::ContainerError::InitGone { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("signal 9"), "{err}");
        // The program went with its PID namespace.
        assert!(
            wait_all_exited(&[&program_fd], Instant::now() + GONE_GUARD),
            "the program outlived init"
        );
        assert!(container.is_broken());
        assert!(matches!(
            container.ping(),
            Err(hutch_host::ContainerError::Destroyed)
        ));
    });
}
