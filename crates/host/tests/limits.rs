//! Resource limits in real containers: CPU time (single- and
//! multi-threaded, with `SIGXCPU` caught), wall-clock time, memory
//! measurement and the memory limit, the process limit against fork and
//! thread bombs, the output limit, a clean slate between runs (IPC objects,
//! locks, processes, counters) and the choice of accounting.
//!
//! The test programs are C, compiled with `cc` when the tests run and bound
//! read-only into the container at `/t`; `python3` must be installed too.
//! The tests need root (the container's cgroup is made under this
//! process's own cgroup on v1, and on v2 there too or, when that group
//! holds processes, under `hutch` at the hierarchy's root) or a delegated
//! v2 subtree named by `HUTCH_CGROUP_PARENT`. They run one at a time, so that CPU
//! measurements and wall-clock bounds are not disturbed by each other.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

mod common;
use common::{memfd, read_back};

use hutch_host::protocol::{Access, Accounting, ExecResult, OpenFlags, OpenItem, Resource, Status};
use hutch_host::{AccountingChoice, BuildError, Container, ContainerBuilder, ExecSpec};

const MIB: u64 = 1 << 20;
const MS: u64 = 1_000_000;

/// How far below what a run touched its measured peak may be: the kernel
/// charges memory to a group in per-CPU batches of 64 pages, and a batch
/// charged before the run counts in the baseline taken off the run's peak,
/// yet serves the run's first pages without raising the group's usage.
const CHARGE_BATCH: u64 = 64 * 4096;
const SECOND: u64 = 1_000_000_000;

/// How far past a CPU limit a run may go before these tests call it wrong.
/// Generous for loaded machines; the `precision` example measures the
/// real figure.
const CPU_SLACK: u64 = 50 * MS;

/// Spins on `argv[1]` threads (1 by default) until killed.
const SPIN_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>

static void *spin(void *arg) {
    (void)arg;
    for (;;) {
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    for (int i = 1; i < threads; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, spin, NULL) != 0)
            return 2;
    }
    spin(NULL);
    return 0;
}
"#;

/// Allocates and writes `argv[1]` MiB, then spins until the process has
/// used `argv[2]` ms of CPU (0 by default), then exits 0.
const TOUCH_C: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    size_t size = (size_t)strtoul(argc > 1 ? argv[1] : "64", NULL, 10) << 20;
    long spin_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    char *block = malloc(size);
    if (block == NULL)
        return 2;
    memset(block, 1, size);
    /* The writes must happen: the compiler may not see through this. */
    __asm__ volatile("" : : "r"(block) : "memory");
    for (;;) {
        struct timespec used;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used);
        if (used.tv_sec * 1000 + used.tv_nsec / 1000000 >= spin_ms)
            break;
    }
    return 0;
}
"#;

/// Catches `SIGXCPU` (saying so on stdout) and spins on regardless.
const SIGXCPU_C: &str = r#"
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void caught(int sig) {
    static const char message[] = "SIGXCPU caught\n";
    ssize_t written = write(1, message, sizeof message - 1);
    (void)sig;
    (void)written;
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = caught;
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGXCPU, &action, NULL) != 0)
        return 2;
    for (;;) {
    }
    return 0;
}
"#;

const FORK_BOMB_C: &str = r#"
#include <unistd.h>

int main(void) {
    for (;;)
        fork();
    return 0;
}
"#;

/// Starts threads that sleep forever, as many as it can, for ever.
const THREAD_BOMB_C: &str = r#"
#include <pthread.h>
#include <unistd.h>

static void *sleeper(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(void) {
    for (;;) {
        pthread_t thread;
        pthread_create(&thread, NULL, sleeper, NULL);
    }
    return 0;
}
"#;

const HELLO_C: &str = r#"
#include <stdio.h>

int main(void) {
    puts("hi");
    return 0;
}
"#;

/// `ipc make`: creates SysV shared memory (private and keyed), a semaphore
/// set, a message queue, a POSIX message queue, files in /dev/shm, /tmp and
/// /w, takes an flock and a POSIX lock on /tmp/lockfile, reports what it
/// sees, and leaves a background process holding the flock.
///
/// `ipc check`: reports what it sees, and any process but init and itself.
const IPC_C: &str = r#"
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY 0x4875
#define QUEUE "/hutch-limits-queue"
#define LOCKFILE "/tmp/lockfile"

static void fail(const char *what) {
    perror(what);
    exit(3);
}

/* Objects listed in a /proc/sysvipc file (every line but the header). */
static int listed(const char *path) {
    FILE *file = fopen(path, "r");
    if (file == NULL)
        fail(path);
    int lines = 0;
    for (int c; (c = fgetc(file)) != EOF;)
        lines += c == '\n';
    fclose(file);
    return lines - 1;
}

/* Run in a child: a lock held by its parent is visible only from another
   process. */
static void report_locks(void) {
    pid_t child = fork();
    if (child < 0)
        fail("fork");
    if (child == 0) {
        int fd = open(LOCKFILE, O_RDWR);
        if (fd < 0)
            fail("open " LOCKFILE);
        int flocked = flock(fd, LOCK_EX | LOCK_NB) != 0;
        struct flock query = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_GETLK, &query) != 0)
            fail("F_GETLK");
        printf("flock %s\n", flocked ? "held" : "free");
        printf("posix-lock %s\n", query.l_type == F_UNLCK ? "free" : "held");
        _exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) != child || status != 0)
        exit(4);
}

static void report(void) {
    printf("shm %d\n", listed("/proc/sysvipc/shm"));
    printf("sem %d\n", listed("/proc/sysvipc/sem"));
    printf("msg %d\n", listed("/proc/sysvipc/msg"));
    printf("keyed-shm %s\n", shmget(KEY, 0, 0) >= 0 ? "present" : "absent");
    mqd_t queue = mq_open(QUEUE, O_RDONLY);
    printf("mq %s\n", queue != (mqd_t)-1 ? "present" : "absent");
    if (queue != (mqd_t)-1)
        mq_close(queue);
    report_locks();
}

static void make(void) {
    if (shmget(IPC_PRIVATE, 1 << 16, IPC_CREAT | 0600) < 0)
        fail("shmget private");
    if (shmget(KEY, 1 << 16, IPC_CREAT | 0600) < 0)
        fail("shmget keyed");
    if (semget(KEY, 1, IPC_CREAT | 0600) < 0)
        fail("semget");
    int queue = msgget(KEY, IPC_CREAT | 0600);
    if (queue < 0)
        fail("msgget");
    struct {
        long type;
        char text[8];
    } message = {1, "left"};
    if (msgsnd(queue, &message, sizeof message.text, 0) != 0)
        fail("msgsnd");
    mqd_t posix = mq_open(QUEUE, O_CREAT | O_RDWR, 0600, NULL);
    if (posix == (mqd_t)-1)
        fail("mq_open");
    if (mq_send(posix, "left", 4, 0) != 0)
        fail("mq_send");
    const char *files[] = {"/dev/shm/left", "/w/left"};
    for (int i = 0; i < 2; i++) {
        int fd = open(files[i], O_CREAT | O_WRONLY, 0600);
        if (fd < 0 || write(fd, "left\n", 5) != 5)
            fail(files[i]);
        close(fd);
    }
    int lock = open(LOCKFILE, O_CREAT | O_RDWR, 0666);
    if (lock < 0)
        fail("open " LOCKFILE);
    if (flock(lock, LOCK_EX) != 0)
        fail("flock");
    struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(lock, F_SETLK, &whole) != 0)
        fail("F_SETLK");
    report();
    /* The background process shares the flock through the inherited open
       file; it leaves this run's session and sleeps. */
    pid_t background = fork();
    if (background < 0)
        fail("fork");
    if (background == 0) {
        setsid();
        for (;;)
            pause();
    }
}

static void others(void) {
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        fail("/proc");
    int count = 0;
    for (struct dirent *entry; (entry = readdir(proc)) != NULL;) {
        if (!isdigit((unsigned char)entry->d_name[0]))
            continue;
        long pid = strtol(entry->d_name, NULL, 10);
        if (pid != 1 && pid != getpid()) {
            printf("other-process %ld\n", pid);
            count++;
        }
    }
    closedir(proc);
    if (count == 0)
        printf("other-processes none\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && !strcmp(argv[1], "make")) {
        make();
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "check")) {
        report();
        others();
        return 0;
    }
    return 2;
}
"#;

/// Runs the tests of this file one at a time: the CPU-time and wall-clock
/// bounds hold only while no other test spins on the same CPUs.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// These tests measure through a cgroup: one root makes where hutch puts
/// container groups by default, or one in the delegated subtree that
/// `HUTCH_CGROUP_PARENT` names.
fn require_cgroup() {
    assert!(
        rustix::process::geteuid().is_root()
            || std::env::var_os(hutch_host::CGROUP_PARENT_VAR).is_some(),
        "the limits tests need root (to make the container's cgroup where hutch puts them by \
         default) or a delegated cgroup subtree named by {}",
        hutch_host::CGROUP_PARENT_VAR
    );
}

/// This test runs itself again as another user, which only root can.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: it runs a helper as uid 65534"
    );
}

/// A directory of compiled test programs, removed on drop.
struct Programs {
    dir: PathBuf,
}

impl Programs {
    /// Compiles each `(name, source, extra cc arguments)` into a fresh
    /// directory that the container's user can read and execute.
    fn compile(programs: &[(&str, &str, &[&str])]) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hutch-limits-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let programs_dir = Programs { dir };
        for (name, source, extra) in programs {
            let source_path = programs_dir.dir.join(format!("{name}.c"));
            std::fs::write(&source_path, source).unwrap();
            let output = Command::new("cc")
                .args(["-O1", "-Wall", "-o"])
                .arg(programs_dir.dir.join(name))
                .arg(&source_path)
                .args(*extra)
                .output()
                .unwrap_or_else(|e| panic!("cannot run cc to build {name}: {e}"));
            assert!(
                output.status.success(),
                "cc failed on {name}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::fs::set_permissions(
                programs_dir.dir.join(name),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        programs_dir
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("temporary paths are UTF-8")
    }

    /// A container (the default cgroup accounting) with these programs at
    /// `/t`.
    fn container(&self) -> Container {
        ContainerBuilder::new()
            .bind(self.path(), "/t", false)
            .build()
            .expect("container starts")
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Output {
    result: ExecResult,
    stdout: String,
    stderr: String,
}

impl Output {
    fn cpu_ns(&self) -> u64 {
        self.result.user_time_ns + self.result.system_time_ns
    }

    /// Everything about the run, for assertion messages.
    fn describe(&self) -> String {
        format!(
            "{:?}\ncpu {:.3} ms, wall {:.3} ms, memory {} KiB\nstdout: {}\nstderr: {}",
            self.result,
            self.cpu_ns() as f64 / MS as f64,
            self.result.wall_time_ns as f64 / MS as f64,
            self.result.memory_bytes / 1024,
            self.stdout,
            self.stderr
        )
    }
}

fn run_spec(container: &mut Container, spec: ExecSpec<'_>) -> Output {
    let stdin = File::open("/dev/null").unwrap();
    let stdout = memfd("stdout");
    let stderr = memfd("stderr");
    let spec = spec.stdio(stdin.as_fd(), stdout.as_fd(), stderr.as_fd());
    let result = container.exec(&spec).expect("exec request");
    Output {
        result,
        stdout: read_back(&stdout),
        stderr: read_back(&stderr),
    }
}

fn run(container: &mut Container, argv: &[&str]) -> Output {
    run_spec(container, ExecSpec::new(argv.iter().copied()))
}

/// Pids of the direct children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_else(|e| panic!("cannot read the children of {pid}: {e}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Asserts a CPU-limited run ended with `TimeLimit` having used at least
/// `limit` and at most `limit` plus [`CPU_SLACK`] of CPU.
fn assert_stopped_at_cpu_limit(out: &Output, limit: u64) {
    assert_eq!(out.result.status, Status::TimeLimit, "{}", out.describe());
    assert!(
        out.cpu_ns() >= limit,
        "stopped before the limit: {}",
        out.describe()
    );
    assert!(
        out.cpu_ns() <= limit + CPU_SLACK,
        "overshot the limit by more than {} ms: {}",
        CPU_SLACK / MS,
        out.describe()
    );
}

fn spin_programs() -> Programs {
    Programs::compile(&[("spin", SPIN_C, &["-pthread"])])
}

#[test]
fn cpu_spin_is_stopped_at_the_cpu_limit() {
    require_cgroup();
    let programs = spin_programs();
    let _serial = serial();
    let mut c = programs.container();
    let spec = ExecSpec::new(["/t/spin", "1"])
        .cpu_time(Duration::from_secs(1))
        .wall_time(Duration::from_secs(3));
    let out = run_spec(&mut c, spec);
    assert_stopped_at_cpu_limit(&out, SECOND);
}

#[test]
fn four_thread_spin_is_stopped_at_the_cpu_limit_within_a_second_of_wall_time() {
    require_cgroup();
    let programs = spin_programs();
    let _serial = serial();
    let mut c = programs.container();
    assert!(
        std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2),
        "this test needs at least 2 CPUs"
    );
    // Several CPUs spend the budget together, so the run ends before a
    // second of wall time has passed (a per-process CPU rlimit would let
    // each thread have its own second). Other load on the machine can take
    // the CPUs away for a while: the CPU bound must hold on every try, the
    // wall-time bound on one of three.
    let mut walls = Vec::new();
    for _ in 0..3 {
        let spec = ExecSpec::new(["/t/spin", "4"])
            .cpu_time(Duration::from_secs(1))
            .wall_time(Duration::from_secs(3));
        let out = run_spec(&mut c, spec);
        assert_stopped_at_cpu_limit(&out, SECOND);
        if out.result.wall_time_ns < SECOND {
            return;
        }
        walls.push(out.result.wall_time_ns / MS);
    }
    panic!("the threads' CPU time was not summed: wall times {walls:?} ms for 1 s of CPU");
}

#[test]
fn catching_sigxcpu_does_not_escape_the_cpu_limit() {
    require_cgroup();
    let programs = Programs::compile(&[("sigxcpu", SIGXCPU_C, &[])]);
    let _serial = serial();
    let mut c = programs.container();
    let out = run_spec(
        &mut c,
        ExecSpec::new(["/t/sigxcpu"])
            .cpu_time(Duration::from_secs(1))
            .wall_time(Duration::from_secs(3)),
    );
    assert_stopped_at_cpu_limit(&out, SECOND);

    // With its own CPU rlimit below the run's limit, the program does get
    // SIGXCPU, catches it and spins on: the run still ends at the limit.
    let out = run_spec(
        &mut c,
        ExecSpec::new(["/t/sigxcpu"])
            .rlimit(Resource::Cpu, 1, 3)
            .cpu_time(Duration::from_millis(1500))
            .wall_time(Duration::from_secs(4)),
    );
    assert!(
        out.stdout.contains("SIGXCPU caught"),
        "the handler ran: {}",
        out.describe()
    );
    assert_stopped_at_cpu_limit(&out, 1500 * MS);
}

#[test]
fn sleeper_hits_the_wall_time_limit_not_the_cpu_limit() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    let out = run_spec(
        &mut c,
        ExecSpec::new(["sleep", "10"])
            .cpu_time(Duration::from_secs(1))
            .wall_time(Duration::from_secs(2)),
    );
    assert_eq!(
        out.result.status,
        Status::WallTimeLimit,
        "{}",
        out.describe()
    );
    assert!(
        (2 * SECOND..3 * SECOND).contains(&out.result.wall_time_ns),
        "{}",
        out.describe()
    );
}

#[test]
fn memory_of_a_64_mib_toucher_is_measured_closely() {
    require_cgroup();
    let programs = Programs::compile(&[("touch", TOUCH_C, &[])]);
    let _serial = serial();
    let mut c = programs.container();
    let out = run(&mut c, &["/t/touch", "64"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert!(
        out.result.memory_bytes >= 64 * MIB - CHARGE_BATCH,
        "less than was touched, by more than one charge batch: {}",
        out.describe()
    );
    assert!(
        out.result.memory_bytes <= 67 * MIB,
        "more than 3 MiB above what was touched: {}",
        out.describe()
    );
}

#[test]
fn touching_300_mib_under_a_256_mib_limit_is_a_memory_limit_in_c_and_python() {
    require_cgroup();
    let programs = Programs::compile(&[("touch", TOUCH_C, &[])]);
    let _serial = serial();
    let mut c = programs.container();
    let limited = |argv: &[&str]| {
        ExecSpec::new(argv.iter().copied())
            .memory_limit(256 * MIB)
            .wall_time(Duration::from_secs(10))
    };
    let out = run_spec(&mut c, limited(&["/t/touch", "300"]));
    assert_eq!(out.result.status, Status::MemoryLimit, "{}", out.describe());
    let out = run_spec(
        &mut c,
        limited(&[
            "/usr/bin/python3",
            "-c",
            "a = [0] * (300 * 1024 * 1024 // 8)",
        ]),
    );
    assert_eq!(out.result.status, Status::MemoryLimit, "{}", out.describe());
    let out = run_spec(
        &mut c,
        limited(&["/usr/bin/python3", "-c", "a = b'x' * (300 * 1024 * 1024)"]),
    );
    assert_eq!(out.result.status, Status::MemoryLimit, "{}", out.describe());
    // Under the limit, the same container runs the same program fine.
    let out = run_spec(&mut c, limited(&["/t/touch", "64"]));
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
}

#[test]
fn a_4_mib_memory_limit_still_starts_a_static_program() {
    require_cgroup();
    let programs = Programs::compile(&[("hello", HELLO_C, &["-static"])]);
    let _serial = serial();
    let mut c = programs.container();
    let out = run_spec(
        &mut c,
        ExecSpec::new(["/t/hello"])
            .memory_limit(4 * MIB)
            .wall_time(Duration::from_secs(5)),
    );
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert_eq!(out.stdout, "hi\n");
}

/// Runs a bomb under a process limit and checks it was contained, left
/// nothing behind and left the container usable.
fn assert_bomb_contained(programs: &Programs, name: &str) {
    let mut c = programs.container();
    let out = run_spec(
        &mut c,
        ExecSpec::new([format!("/t/{name}")])
            .process_limit(32)
            .cpu_time(Duration::from_secs(1))
            .wall_time(Duration::from_secs(3)),
    );
    assert!(
        matches!(out.result.status, Status::TimeLimit | Status::WallTimeLimit),
        "{name} was not contained: {}",
        out.describe()
    );
    let init = c.init_pid();
    assert_eq!(children(init), Vec::<i32>::new(), "init has no child left");
    let out = run(&mut c, &["echo", "ok"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert_eq!(out.stdout, "ok\n");
    assert_eq!(children(init), Vec::<i32>::new(), "init has no child left");
}

#[test]
fn fork_bomb_is_contained_by_the_process_limit() {
    require_cgroup();
    let programs = Programs::compile(&[("forkbomb", FORK_BOMB_C, &[])]);
    let _serial = serial();
    assert_bomb_contained(&programs, "forkbomb");
}

#[test]
fn thread_bomb_is_contained_by_the_process_limit() {
    require_cgroup();
    let programs = Programs::compile(&[("threadbomb", THREAD_BOMB_C, &["-pthread"])]);
    let _serial = serial();
    assert_bomb_contained(&programs, "threadbomb");
}

fn flood(command: &str) -> Output {
    let mut c = ContainerBuilder::new().build().expect("container starts");
    run_spec(
        &mut c,
        ExecSpec::new(["sh", "-c", command])
            .output_limit(MIB)
            .wall_time(Duration::from_secs(5)),
    )
}

#[test]
fn output_flood_by_the_program_itself_is_an_output_limit() {
    require_cgroup();
    let _serial = serial();
    // `exec`: head replaces the shell, so the writer is the run's program.
    let out = flood("exec head -c 2000000 /dev/zero > /w/out");
    assert_eq!(out.result.status, Status::OutputLimit, "{}", out.describe());
}

#[test]
fn output_flood_through_a_shell_is_an_output_limit() {
    require_cgroup();
    let _serial = serial();
    // The shell forks head and reaps it itself: head dies of SIGXFSZ, the
    // shell exits 128 + SIGXFSZ, and init never sees the signal.
    let out = flood("head -c 2000000 /dev/zero > /w/out");
    assert_eq!(out.result.status, Status::OutputLimit, "{}", out.describe());
}

/// Exit status 153 is how a shell reports a child killed by `SIGXFSZ`; a
/// program may also just exit with it. It is an output limit only when the
/// run filled a file up to the limit, not when a large file merely exists.
#[test]
fn exit_153_with_large_input_files_is_not_an_output_limit() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    let input = std::env::temp_dir().join(format!("hutch-limits-input-{}", std::process::id()));
    std::fs::write(&input, vec![b'x'; 2 * MIB as usize]).unwrap();
    let stdin = File::open(&input).unwrap();
    std::fs::remove_file(&input).unwrap();
    let stdout = memfd("stdout");
    let spec = ExecSpec::new(["sh", "-c", "exit 153"])
        .stdio(stdin.as_fd(), stdout.as_fd(), stdout.as_fd())
        .output_limit(MIB);
    let with_stdin = c.exec(&spec).expect("exec request");

    // Test data the host copies into the work directory before the run.
    let mut opened = c
        .open(&[OpenItem {
            path: "/w/input".into(),
            flags: OpenFlags {
                access: Access::Write,
                create: true,
                exclusive: false,
                truncate: true,
                append: false,
            },
            mode: 0o644,
            make_parents: false,
        }])
        .expect("open request");
    let mut data = File::from(opened.remove(0).expect("/w/input created"));
    data.write_all(&vec![b'x'; 2 * MIB as usize]).unwrap();
    drop(data);
    let out = run_spec(
        &mut c,
        ExecSpec::new(["sh", "-c", "exit 153"]).output_limit(MIB),
    );
    assert_eq!(
        (with_stdin.status, out.result.status),
        (Status::NonzeroExit, Status::NonzeroExit),
        "with a read-only 2 MiB stdin: {with_stdin:?}\nwith a 2 MiB input file in /w: {}",
        out.describe()
    );
}

#[test]
fn next_run_sees_no_ipc_objects_locks_or_processes_and_reset_empties_scratch() {
    require_cgroup();
    let programs = Programs::compile(&[("ipc", IPC_C, &["-lrt"])]);
    let _serial = serial();
    let mut c = programs.container();
    let out = run(&mut c, &["/t/ipc", "make"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert_eq!(
        out.stdout,
        "shm 2\nsem 1\nmsg 1\nkeyed-shm present\nmq present\nflock held\nposix-lock held\n",
        "the first run sees what it made: {}",
        out.describe()
    );
    let out = run(&mut c, &["/t/ipc", "check"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert_eq!(
        out.stdout,
        "shm 0\nsem 0\nmsg 0\nkeyed-shm absent\nmq absent\nflock free\nposix-lock free\n\
         other-processes none\n",
        "the second run starts clean: {}",
        out.describe()
    );
    // Files stay until a reset, which empties every scratch mount.
    let out = run(&mut c, &["ls", "-A", "/w", "/tmp", "/dev/shm"]);
    assert_eq!(
        out.stdout,
        "/dev/shm:\nleft\n\n/tmp:\nlockfile\n\n/w:\nleft\n",
        "{}",
        out.describe()
    );
    c.reset().expect("reset");
    let out = run(&mut c, &["ls", "-A", "/w", "/tmp", "/dev/shm"]);
    assert_eq!(
        out.stdout,
        "/dev/shm:\n\n/tmp:\n\n/w:\n",
        "{}",
        out.describe()
    );
}

#[test]
fn accounting_restarts_from_zero_for_each_run() {
    require_cgroup();
    let programs = Programs::compile(&[("touch", TOUCH_C, &[])]);
    let _serial = serial();
    let mut c = programs.container();
    // What `/bin/true` costs on this machine, measured in this container
    // before anything else ran in it: well under a millisecond natively,
    // but 150 ms and more under an emulator (QEMU's TCG, tests/vm). The
    // bound is derived from it, and the earlier run is made long enough
    // that its CPU, counted again, could not hide below the bound.
    let baseline = (0..3)
        .map(|_| {
            let out = run(&mut c, &["/bin/true"]);
            assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
            out.cpu_ns()
        })
        .max()
        .unwrap();
    let bound = (3 * baseline).max(50 * MS);
    let spin_ms = (2 * bound / MS).max(500);
    let out = run(&mut c, &["/t/touch", "64", &spin_ms.to_string()]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert!(out.cpu_ns() >= spin_ms * MS, "{}", out.describe());
    assert!(
        out.result.memory_bytes >= 64 * MIB - CHARGE_BATCH,
        "{}",
        out.describe()
    );
    let out = run(&mut c, &["/bin/true"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert!(
        out.cpu_ns() < bound,
        "CPU of the earlier run ({spin_ms} ms) counted again: more than {} ms (3 times the \
         most /bin/true took in the 3 runs before it, {:.3} ms, and at least 50 ms): {}",
        bound / MS,
        baseline as f64 / MS as f64,
        out.describe()
    );
    assert!(
        out.result.memory_bytes < 8 * MIB,
        "memory of the earlier run counted again: {}",
        out.describe()
    );
}

#[test]
fn a_run_the_cgroup_saw_no_charge_of_reports_its_resident_peak_not_zero() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    // The kernel charges a group in per-CPU batches: a small run served by
    // what its group still holds of an earlier run's batch moves no
    // counter. Runs of `/bin/true` in one container do so often. Where
    // the counter does move, it can move by less than the run took (a
    // batch left on a CPU is given back when another group charges
    // there), so any figure of at least a page is the counter's.
    for _ in 0..40 {
        let out = run(&mut c, &["/bin/true"]);
        assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
        assert!(
            out.result.memory_bytes >= 4096,
            "a run of /bin/true measured less than a page: {}",
            out.describe()
        );
        c.reset().expect("reset");
    }
}

#[test]
fn files_left_by_an_earlier_run_are_not_charged_to_the_next() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    let out = run(
        &mut c,
        &["sh", "-c", "head -c 50331648 /dev/zero > /w/left"],
    );
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    let out = run_spec(&mut c, ExecSpec::new(["/bin/true"]).memory_limit(32 * MIB));
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert!(
        out.result.memory_bytes < 8 * MIB,
        "the earlier run's files counted as this run's memory: {}",
        out.describe()
    );
}

/// The page cache charged to the container's group, from its
/// `memory.stat`: `cache` on v1, `file` less `shmem` (files in tmpfs) on v2.
fn page_cache(c: &Container) -> u64 {
    let stat = c
        .cgroup_dirs()
        .iter()
        .find_map(|dir| std::fs::read_to_string(dir.join("memory.stat")).ok())
        .expect("the container's group has a memory.stat");
    let key = |name: &str| {
        stat.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<u64>().unwrap())
        })
    };
    match key("file") {
        Some(file) => file.saturating_sub(key("shmem").unwrap_or(0)),
        None => key("cache").expect("a v1 memory.stat has a cache line"),
    }
}

/// `/t/touch 48` under a memory limit of 32 MiB is a memory-limit verdict:
/// `left` (what an earlier run left charged) did not loosen the limit.
fn assert_48_mib_exceed_a_limit_of_32(c: &mut Container, left: &str) {
    let out = run_spec(c, ExecSpec::new(["/t/touch", "48"]).memory_limit(32 * MIB));
    assert_eq!(
        out.result.status,
        Status::MemoryLimit,
        "{left} loosened the limit: {}",
        out.describe()
    );
}

#[test]
fn page_cache_an_earlier_run_left_is_reclaimed_at_reset_and_loosens_no_limit() {
    require_cgroup();
    let programs = Programs::compile(&[("touch", TOUCH_C, &[])]);
    // A file none of whose pages is cached: the container's read of it
    // charges them to the container's group.
    let big = programs.dir.join("big");
    let file = File::create(&big).unwrap();
    let chunk = vec![7u8; MIB as usize];
    for _ in 0..64 {
        (&file).write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _serial = serial();
    let mut c = programs.container();
    // Twice: the second reset must reclaim as the first did, which it does
    // only if the first recorded what it left, not what was there before.
    for round in 1..=2 {
        let out = run(&mut c, &["sh", "-c", "cat /t/big > /dev/null"]);
        assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
        let cached = page_cache(&c);
        assert!(
            cached >= 48 * MIB,
            "round {round}: the read was not charged as page cache to the container \
             ({} KiB), so this test cannot check the reclaim (is {} on a tmpfs?): {}",
            cached / 1024,
            programs.path(),
            out.describe()
        );
        if round == 1 {
            // Later, a peak that cannot be reset (Linux before 6.12, v2)
            // reads no higher than this run's.
            assert!(
                out.result.memory_bytes >= 48 * MIB,
                "the read's cache is not in its peak: {}",
                out.describe()
            );
        }
        c.reset().expect("reset");
        let left = page_cache(&c);
        assert!(
            left < 4 * MIB,
            "round {round}: the reset left {} KiB of the {} KiB of cache charged",
            left / 1024,
            cached / 1024
        );
        // Left charged, the 64 MiB of cache would raise this run's limit by
        // as much, and 48 MiB would fit under 32.
        assert_48_mib_exceed_a_limit_of_32(
            &mut c,
            &format!("round {round}: the cache of the run before the reset"),
        );
    }
    let out = run(&mut c, &["/t/touch", "16"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert!(
        (16 * MIB..24 * MIB).contains(&out.result.memory_bytes),
        "the peak is not the run's own: {}",
        out.describe()
    );
}

/// Looks up `argv[1]` names that do not exist in `/t` (a disk's file
/// system, where the kernel keeps what it learns: not a tmpfs, nor the
/// virtio-9p share of the cgroup v2 rig, which keep no negative entry),
/// each long and different (and, with `argv[2]`, different from every
/// earlier run's): the kernel keeps a negative dentry for each, charged
/// to the caller's memory group, and keeps it after the caller is gone.
const NEGATIVE_DENTRIES_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
    long count = strtol(argc > 1 ? argv[1] : "1000", NULL, 10);
    const char *tag = argc > 2 ? argv[2] : "";
    char path[256];
    struct stat st;
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof path, "/t/absent-%s-%ld-%0150d", tag, i, 0);
        if (stat(path, &st) == 0)
            return 2;
    }
    return 0;
}
"#;

/// What is charged to the container's memory group now: `memory.current`
/// (v2) or `memory.usage_in_bytes` (v1).
fn memory_charged(c: &Container) -> u64 {
    c.cgroup_dirs()
        .iter()
        .find_map(|dir| {
            ["memory.current", "memory.usage_in_bytes"]
                .iter()
                .find_map(|name| std::fs::read_to_string(dir.join(name)).ok())
        })
        .expect("the container's group has a memory counter")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn kernel_memory_an_earlier_run_left_is_reclaimed_at_reset_and_loosens_no_limit() {
    require_cgroup();
    let programs = Programs::compile(&[
        ("touch", TOUCH_C, &[]),
        ("negative_dentries", NEGATIVE_DENTRIES_C, &[]),
    ]);
    let _serial = serial();
    let mut c = programs.container();
    c.reset().expect("reset");
    let before = memory_charged(&c);
    // Names no earlier run of this test looked up: their dentries would
    // be there already, charged to a group gone since.
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let out = run_spec(
        &mut c,
        ExecSpec::new(["/t/negative_dentries", "150000", tag.as_str()]).memory_limit(256 * MIB),
    );
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    let left = memory_charged(&c).saturating_sub(before);
    assert!(
        left >= 24 * MIB,
        "the lookups left only {} KiB charged to the group, so this test cannot \
         check the reclaim (is {} on a file system that keeps no negative \
         dentries?): {}",
        left / 1024,
        programs.path(),
        out.describe()
    );
    c.reset().expect("reset");
    let after = memory_charged(&c).saturating_sub(before);
    assert!(
        after < 4 * MIB,
        "the reset left {} KiB of the {} KiB the run left charged",
        after / 1024,
        left / 1024
    );
    // Left charged, the dentries would raise this run's limit by as much,
    // and 48 MiB would fit under 32.
    assert_48_mib_exceed_a_limit_of_32(&mut c, "the kernel memory of the run before the reset");
}

#[test]
fn root_builds_measure_with_a_cgroup_unless_told_otherwise() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    assert!(!c.cgroup_dirs().is_empty(), "the container has a cgroup");
    let out = run(&mut c, &["true"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert!(
        matches!(
            out.result.accounting,
            Accounting::CgroupV1 | Accounting::CgroupV2
        ),
        "{}",
        out.describe()
    );
    let mut c = ContainerBuilder::new()
        .accounting(AccountingChoice::Rusage)
        .build()
        .expect("container starts");
    assert!(c.cgroup_dirs().is_empty(), "no cgroup was asked for");
    let out = run(&mut c, &["true"]);
    assert_eq!(out.result.accounting, Accounting::Rusage);
}

const UNPRIVILEGED_VAR: &str = "HUTCH_LIMITS_UNPRIVILEGED";
const UNPRIVILEGED_HELPER: &str = "unprivileged_cgroup_failure_and_rusage_opt_in";

/// The error and its sources, joined.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Run by `unprivileged_build_without_a_cgroup_fails_unless_rusage_is_allowed`
/// as uid 65534; started by hand, it does what that test does.
#[test]
#[ignore = "helper: run as uid 65534 by unprivileged_build_without_a_cgroup_fails_unless_rusage_is_allowed"]
fn unprivileged_cgroup_failure_and_rusage_opt_in() {
    if std::env::var_os(UNPRIVILEGED_VAR).is_none() {
        unprivileged_build_without_a_cgroup_fails_unless_rusage_is_allowed();
        return;
    }
    assert!(
        !rustix::process::geteuid().is_root(),
        "the helper must run unprivileged"
    );
    let err = ContainerBuilder::new()
        .build()
        .expect_err("no cgroup can be made unprivileged, and rusage was not allowed");
    let text = chain(&err);
    assert!(matches!(err, BuildError::Cgroup(_)), "{err:?}");
    assert!(
        text.contains("allow-rusage") || text.contains("allow_rusage"),
        "the error names the way out: {text}"
    );
    let mut c = ContainerBuilder::new()
        .allow_rusage()
        .build()
        .expect("with rusage allowed the container starts");
    let out = run(&mut c, &["true"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
    assert_eq!(out.result.accounting, Accounting::Rusage);
    println!("UNPRIVILEGED OK: {text}");
}

#[test]
fn unprivileged_build_without_a_cgroup_fails_unless_rusage_is_allowed() {
    require_root();
    let output = common::this_binary_as_nobody()
        .args([
            "--exact",
            UNPRIVILEGED_HELPER,
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(UNPRIVILEGED_VAR, "1")
        .output()
        .expect("run this test binary as uid 65534");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success()
            && stdout.contains("test result: ok. 1 passed")
            && stdout.contains("UNPRIVILEGED OK"),
        "the unprivileged run failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A shell script that has exactly `tasks` tasks alive at once: the shell
/// and `tasks - 1` sleeping children, all forked before it kills them.
fn tasks_at_once(tasks: usize) -> String {
    let mut script = String::new();
    for child in 1..tasks {
        script.push_str(&format!("sleep 100 & p{child}=$!; "));
    }
    if tasks > 1 {
        let pids: Vec<String> = (1..tasks).map(|child| format!("$p{child}")).collect();
        script.push_str(&format!("kill {}; wait; ", pids.join(" ")));
    }
    script.push_str("exit 0");
    script
}

#[test]
fn each_run_is_told_its_own_process_peak() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    let has_peak = c
        .cgroup_dirs()
        .iter()
        .any(|dir| dir.join("pids.peak").exists());
    if !has_peak {
        let out = run(&mut c, &["sh", "-c", &tasks_at_once(3)]);
        assert_eq!(out.result.processes_peak, None, "{}", out.describe());
        eprintln!(
            "this kernel has no pids.peak (Linux 6.1 and later): checked only that no process \
             peak is told"
        );
        return;
    }
    // A peak below an earlier run's, with and without a reset between.
    for (tasks, reset) in [
        (3, true),
        (1, true),
        (2, false),
        (1, false),
        (4, true),
        (2, true),
        (1, true),
    ] {
        let out = run(&mut c, &["sh", "-c", &tasks_at_once(tasks)]);
        assert_eq!(out.result.status, Status::Ok, "{}", out.describe());
        assert_eq!(
            out.result.processes_peak,
            Some(tasks as u32),
            "{tasks} tasks at once: {}",
            out.describe()
        );
        if reset {
            c.reset().expect("reset");
        }
    }
    // Programs in a run group still see their cgroup as the root.
    let out = run(&mut c, &["cat", "/proc/self/cgroup"]);
    for line in out.stdout.lines() {
        assert_eq!(line.splitn(3, ':').nth(2), Some("/"), "{}", out.describe());
    }
    // Each fresh run group removes the earlier ones (one the kernel was
    // still releasing a task of may wait for the next).
    let groups = c.run_groups().to_vec();
    assert!(
        !groups.is_empty() && groups.len() <= 2,
        "run groups left: {groups:?}"
    );
    let dirs = c.all_cgroup_dirs();
    drop(c);
    for dir in groups.iter().chain(&dirs) {
        assert!(!dir.exists(), "{} outlived its container", dir.display());
    }
}

/// On cgroup v2, init lives in a group of the container's and starts each
/// program straight in the programs' group beside it, so no program moves
/// between groups (a move waits for the kernel after a quiet spell); init
/// stays in this process's cgroup namespace, which that needs, and each
/// program gets a namespace of its own.
#[test]
fn on_cgroup_v2_programs_start_in_their_group_beside_init_s() {
    require_cgroup();
    let _serial = serial();
    let mut c = ContainerBuilder::new().build().expect("container starts");
    let measured = c.cgroup_dirs().to_vec();
    if !measured[0].join("cgroup.controllers").exists() {
        eprintln!(
            "this machine gives containers cgroup v1 groups ({}): nothing of v2's layout to \
             check here (tests/vm/run.sh runs this test on a v2 kernel)",
            measured[0].display()
        );
        return;
    }
    let [programs, init_group, top] = &c.all_cgroup_dirs()[..] else {
        panic!("three groups: {:?}", c.all_cgroup_dirs())
    };
    assert_eq!(&measured, std::slice::from_ref(programs));
    assert_eq!(programs.parent(), Some(top.as_path()));
    assert_eq!(init_group.parent(), Some(top.as_path()));
    let procs = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse::<i32>().unwrap())
            .collect::<Vec<_>>()
    };
    let init = c.init_pid();
    assert_eq!(procs(init_group), [init], "init is in its group, alone");
    assert_eq!(procs(top), Vec::<i32>::new());
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).unwrap();
    assert_eq!(
        namespace(&init.to_string()),
        namespace("self"),
        "init shares this process's cgroup namespace"
    );

    // A program that says it runs, then waits for its input to end: while
    // it runs it is the programs' group's one process, in a cgroup
    // namespace of its own.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let (said, say) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let null = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["/bin/sh", "-c", "echo ready; exec cat >/dev/null"]).stdio(
        read.as_fd(),
        say.as_fd(),
        null.as_fd(),
    );
    let run = c.start(&spec).expect("start");
    drop((read, say));
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut File::from(said), &mut ready).expect("the program says so");
    assert_eq!(&ready, b"ready\n");
    let program = children(init);
    assert_eq!(program.len(), 1, "init's one child is the program");
    assert_eq!(procs(programs), program);
    assert_ne!(namespace(&program[0].to_string()), namespace("self"));
    drop(write);
    let result = run.wait().expect("the run");
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(result.accounting, Accounting::CgroupV2, "{result:?}");

    let dirs = c.all_cgroup_dirs();
    drop(c);
    for dir in &dirs {
        assert!(!dir.exists(), "{} outlived its container", dir.display());
    }
}
