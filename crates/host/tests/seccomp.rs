//! Seccomp policies in real containers: the default policy kills the
//! calls it lists (verdict `disallowed-syscall`), custom rules do what they
//! say, and ordinary programs in C, C++, Python, Java and Rust still run
//! under the default policy.
//!
//! The C, C++, Rust and Java programs are compiled on the host when the
//! tests run (gcc, g++, rustc and javac must be installed) and bound into
//! the container read-only at `/t`.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{memfd, read_back};

use hutch_host::protocol::{ExecResult, Status, Termination};
use hutch_host::{Container, ContainerBuilder, ExecSpec, SeccompPolicy};

const PROBE_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Prints what a call returned and exits 0: reaching this means the call
   was not killed. */
static int report(const char *what, long ret) {
    printf("%s returned %ld errno %d\n", what, ret, ret < 0 ? errno : 0);
    return 0;
}

static long i386_getpid(void) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    return ret;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(mode, "ptrace"))
        return report(mode, ptrace(PTRACE_TRACEME, 0, 0, 0));
    if (!strcmp(mode, "ptrace-eperm")) {
        long ret = ptrace(PTRACE_TRACEME, 0, 0, 0);
        if (ret == -1 && errno == EPERM) {
            printf("ptrace failed with EPERM\n");
            return 0;
        }
        printf("ptrace returned %ld errno %d\n", ret, errno);
        return 3;
    }
    if (!strcmp(mode, "unshare-user"))
        return report(mode, unshare(CLONE_NEWUSER));
    if (!strcmp(mode, "clone-newns") || !strcmp(mode, "clone-plain")) {
        long flags = SIGCHLD | (!strcmp(mode, "clone-newns") ? CLONE_NEWNS : 0);
        long pid = syscall(SYS_clone, flags, 0L, 0L, 0L, 0L);
        if (pid == 0)
            _exit(0);
        if (pid > 0) {
            int status;
            waitpid(pid, &status, 0);
        }
        return report(mode, pid > 0 ? 0 : pid);
    }
    if (!strcmp(mode, "clone3")) {
        char args[88] = {0};
        long ret = syscall(SYS_clone3, args, sizeof args);
        if (ret == 0)
            _exit(0);
        return report(mode, ret);
    }
    if (!strcmp(mode, "mount"))
        return report(mode, mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(mode, "bpf"))
        return report(mode, syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(mode, "keyctl"))
        return report(mode, syscall(SYS_keyctl, 0L, 0L, 0L, 0L, 0L));
    if (!strcmp(mode, "io_uring_setup")) {
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        return report(mode, syscall(SYS_io_uring_setup, 1, &params));
    }
    if (!strcmp(mode, "perf_event_open")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_CPU_CLOCK;
        return report(mode, syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    }
    if (!strcmp(mode, "userfaultfd"))
        return report(mode, syscall(SYS_userfaultfd, 0));
    if (!strcmp(mode, "x32-getpid"))
        return report(mode, syscall(0x40000000 | SYS_getpid));
    if (!strcmp(mode, "int80-getpid"))
        return report(mode, i386_getpid());
    if (!strcmp(mode, "getpid"))
        return report(mode, getpid());
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
"#;

const ORDINARY_C: &str = r#"#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *work(void *arg) {
    long *sum = arg;
    for (long i = 1; i <= 1000; i++)
        *sum += i;
    return NULL;
}

int main(void) {
    long *sums = malloc(4 * sizeof *sums);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        sums[i] = 0;
        if (pthread_create(&threads[i], NULL, work, &sums[i]))
            return 3;
    }
    long total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        total += sums[i];
    }
    FILE *status = fopen("/proc/self/status", "r");
    if (!status)
        return 4;
    char line[256];
    while (fgets(line, sizeof line, status))
        if (!strncmp(line, "Seccomp:", 8))
            fputs(line, stdout);
    fclose(status);
    printf("c threads %ld\n", total);
    free(sums);
    return 0;
}
"#;

const ORDINARY_CPP: &str = r#"#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

int main() {
    std::vector<long> sums(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; i++)
        threads.emplace_back([&sums, i] {
            for (long n = 1; n <= 1000; n++) sums[i] += n;
        });
    for (auto &t : threads) t.join();
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Seccomp:", 0) == 0) std::cout << line << "\n";
    std::cout << "c++ threads " << std::accumulate(sums.begin(), sums.end(), 0L) << std::endl;
}
"#;

const ORDINARY_RS: &str = r#"use std::thread;

fn main() {
    let handles: Vec<_> = (0..4)
        .map(|_| thread::spawn(|| (1..=1000u64).sum::<u64>()))
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for line in status.lines().filter(|l| l.starts_with("Seccomp:")) {
        println!("{line}");
    }
    println!("rust threads {total}");
}
"#;

const ORDINARY_JAVA: &str = r#"import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;

public class Ordinary {
    public static void main(String[] args) throws Exception {
        AtomicLong total = new AtomicLong();
        Thread[] threads = new Thread[4];
        for (int i = 0; i < threads.length; i++) {
            threads[i] = new Thread(() -> {
                long sum = 0;
                for (long n = 1; n <= 1000; n++) sum += n;
                total.addAndGet(sum);
            });
            threads[i].start();
        }
        for (Thread t : threads) t.join();
        for (String line : Files.readAllLines(Path.of("/proc/self/status")))
            if (line.startsWith("Seccomp:")) System.out.println(line);
        System.out.println("java threads " + total.get());
    }
}
"#;

/// A directory under the system temporary directory, removed on drop;
/// mode 0755 so that the container's user can read what is inside.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hutch-seccomp-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles `source` (saved as `file`) with `command` and returns the bytes
/// of `output`; panics with the compiler's messages when it fails.
fn build(file: &str, source: &str, command: &[&str], output: &str) -> Vec<u8> {
    let dir = TempDir::new("build");
    std::fs::write(dir.path().join(file), source).unwrap();
    let result = Command::new(command[0])
        .args(&command[1..])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} to build the test program: {e}", command[0]));
    assert!(
        result.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(dir.path().join(output)).unwrap()
}

fn probe() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        build(
            "probe.c",
            PROBE_C,
            &["cc", "-O1", "-Wall", "-o", "probe", "probe.c"],
            "probe",
        )
    })
}

/// One program file to put into the container at `/t/<name>`.
struct Program {
    name: &'static str,
    bytes: &'static [u8],
}

/// A container with the programs bound read-only at `/t`.
struct Sandbox {
    container: Container,
    _dir: TempDir,
}

impl Sandbox {
    fn new(programs: &[Program]) -> Self {
        Self::with(programs, |builder| builder)
    }

    fn with(
        programs: &[Program],
        configure: impl FnOnce(ContainerBuilder) -> ContainerBuilder,
    ) -> Self {
        let dir = TempDir::new("bind");
        for program in programs {
            let path = dir.path().join(program.name);
            std::fs::write(&path, program.bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let builder = configure(ContainerBuilder::new().bind(dir.str(), "/t", false));
        let container = builder.build().expect("container starts");
        Sandbox {
            container,
            _dir: dir,
        }
    }

    fn probe() -> Self {
        Self::new(&[Program {
            name: "probe",
            bytes: probe(),
        }])
    }

    fn run(&mut self, argv: &[&str], policy: &SeccompPolicy) -> Output {
        let program = policy.compile().expect("the policy compiles");
        let spec = ExecSpec::new(argv.iter().copied()).seccomp(program);
        run_spec(&mut self.container, spec)
    }
}

struct Output {
    result: ExecResult,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {:?}\nstdout: {}\nstderr: {}",
            self.result.status, self.result.termination, self.stdout, self.stderr
        )
    }
}

fn run_spec(container: &mut Container, spec: ExecSpec<'_>) -> Output {
    let stdin = File::open("/dev/null").unwrap();
    let stdout = memfd("stdout");
    let stderr = memfd("stderr");
    let spec = spec
        .stdio(stdin.as_fd(), stdout.as_fd(), stderr.as_fd())
        .wall_time(Duration::from_secs(60));
    let result = container.exec(&spec).expect("exec request");
    Output {
        result,
        stdout: read_back(&stdout),
        stderr: read_back(&stderr),
    }
}

fn default_policy() -> SeccompPolicy {
    SeccompPolicy::default_policy()
}

/// Asserts that the run was killed by the filter: SIGSYS, verdict
/// `disallowed-syscall`, and nothing printed after the call.
fn assert_killed(out: &Output, what: &str) {
    assert_eq!(
        out.result.status,
        Status::DisallowedSyscall,
        "{what} was not killed: {out:?}"
    );
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGSYS),
        "{what}: {out:?}"
    );
    assert_eq!(out.stdout, "", "{what} went on after the call: {out:?}");
}

/// Asserts that the run got past the call and exited 0.
fn assert_survived(out: &Output, what: &str) {
    assert_eq!(out.result.status, Status::Ok, "{what}: {out:?}");
    assert!(
        out.stdout.starts_with(&format!("{what} returned ")),
        "{what}: {out:?}"
    );
}

#[test]
fn default_policy_kills_ptrace() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "ptrace"], &default_policy());
    assert_killed(&out, "ptrace(PTRACE_TRACEME)");
}

#[test]
fn default_policy_kills_unshare_of_a_user_namespace() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "unshare-user"], &default_policy());
    assert_killed(&out, "unshare(CLONE_NEWUSER)");
}

#[test]
fn default_policy_kills_clone_with_a_namespace_flag_and_allows_a_plain_one() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "clone-newns"], &default_policy());
    assert_killed(&out, "clone(CLONE_NEWNS | SIGCHLD)");
    let out = sandbox.run(&["/t/probe", "clone-plain"], &default_policy());
    assert_survived(&out, "clone-plain");
    assert_eq!(out.stdout, "clone-plain returned 0 errno 0\n");
}

#[test]
fn default_policy_makes_clone3_fail_with_enosys() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "clone3"], &default_policy());
    assert_survived(&out, "clone3");
    assert_eq!(
        out.stdout,
        format!("clone3 returned -1 errno {}\n", libc::ENOSYS)
    );
}

#[test]
fn default_policy_kills_mount() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "mount"], &default_policy());
    assert_killed(&out, "mount");
}

#[test]
fn default_policy_kills_kernel_interfaces() {
    let mut sandbox = Sandbox::probe();
    for call in [
        "bpf",
        "keyctl",
        "io_uring_setup",
        "perf_event_open",
        "userfaultfd",
    ] {
        let out = sandbox.run(&["/t/probe", call], &default_policy());
        assert_killed(&out, call);
        // Without a filter the same call returns (whatever it returns).
        let out = sandbox.run(&["/t/probe", call], &SeccompPolicy::none());
        assert_survived(&out, call);
    }
}

#[test]
fn default_policy_kills_x32_system_calls() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "x32-getpid"], &default_policy());
    assert_killed(&out, "syscall(0x40000000 | SYS_getpid)");
    let out = sandbox.run(&["/t/probe", "getpid"], &default_policy());
    assert_survived(&out, "getpid");
}

#[test]
fn default_policy_kills_i386_system_calls() {
    let mut sandbox = Sandbox::probe();
    let unfiltered = sandbox.run(&["/t/probe", "int80-getpid"], &SeccompPolicy::none());
    let out = sandbox.run(&["/t/probe", "int80-getpid"], &default_policy());
    if unfiltered.result.termination == Termination::Signalled(libc::SIGSEGV) {
        // A kernel without IA-32 emulation faults on int 0x80 before any
        // filter runs; the call is refused either way.
        println!("this kernel has no IA-32 emulation: int 0x80 faults (SIGSEGV) before seccomp");
        assert_eq!(
            out.result.termination,
            Termination::Signalled(libc::SIGSEGV)
        );
        assert_eq!(out.stdout, "");
        return;
    }
    assert_survived(&unfiltered, "int80-getpid");
    assert_killed(&out, "int 0x80 getpid");
}

#[test]
fn custom_errno_rule_makes_ptrace_fail() {
    let mut sandbox = Sandbox::probe();
    for text in [
        r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": "errno", "errno": 1}]}"#,
        r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": {"errno": 1}}]}"#,
    ] {
        let policy: SeccompPolicy = text.parse().unwrap();
        let out = sandbox.run(&["/t/probe", "ptrace-eperm"], &policy);
        assert_eq!(out.result.status, Status::Ok, "{text}: {out:?}");
        assert_eq!(out.stdout, "ptrace failed with EPERM\n", "{text}");
    }
}

#[test]
fn custom_kill_rule_and_kill_default() {
    let mut sandbox = Sandbox::probe();
    let deny: SeccompPolicy =
        r#"{"default_action": "allow", "rules": [{"syscall": "getpid", "action": "kill"}]}"#
            .parse()
            .unwrap();
    let out = sandbox.run(&["/t/probe", "getpid"], &deny);
    assert_killed(&out, "getpid under a custom kill rule");
    let out = sandbox.run(&["/t/probe", "ptrace"], &deny);
    assert_survived(&out, "ptrace");

    // Kill by default: not even execve is allowed, so the program dies
    // at the exec itself.
    let nothing: SeccompPolicy = r#"{"default_action": "kill"}"#.parse().unwrap();
    let out = sandbox.run(&["/t/probe", "getpid"], &nothing);
    assert_killed(&out, "execve under an empty allow list");
}

/// A policy that refuses everything with an errno, exit included, still
/// lets the run end: `exit` and `exit_group` are always allowed.
#[test]
fn errno_policies_cannot_trap_the_exec() {
    let mut sandbox = Sandbox::probe();
    let everything: SeccompPolicy = r#"{"default_action": {"errno": 38}}"#.parse().unwrap();
    let out = sandbox.run(&["/t/probe", "getpid"], &everything);
    assert_ne!(out.result.status, Status::WallTimeLimit, "{out:?}");
    assert!(
        matches!(out.result.status, Status::NonzeroExit | Status::RunnerError),
        "{out:?}"
    );
    assert!(out.result.wall_time_ns < 5_000_000_000, "{out:?}");
    assert_eq!(out.stdout, "");

    // With write allowed, the exec's failure is reported as such.
    let all_but_write: SeccompPolicy =
        r#"{"default_action": {"errno": 38}, "rules": [{"syscall": "write", "action": "allow"}]}"#
            .parse()
            .unwrap();
    let out = sandbox.run(&["/t/probe", "getpid"], &all_but_write);
    assert_eq!(out.result.status, Status::RunnerError, "{out:?}");
    let error = out.result.error.as_ref().expect("a runner error says why");
    assert_eq!(error.errno, libc::ENOSYS, "{out:?}");
    assert_eq!(error.stage, hutch_host::protocol::Stage::Execve, "{out:?}");
}

#[test]
fn policy_none_lets_ptrace_through() {
    let mut sandbox = Sandbox::probe();
    let out = sandbox.run(&["/t/probe", "ptrace"], &SeccompPolicy::none());
    assert_survived(&out, "ptrace");
    assert_ne!(out.result.termination, Termination::Signalled(libc::SIGSYS));
}

/// The `Seccomp:` line of `/proc/self/status` that each ordinary program
/// prints: 2 is filter mode, so the filter was really installed.
const FILTERED: &str = "Seccomp:\t2\n";

fn assert_ordinary(out: &Output, language: &str, expected: &str) {
    assert_eq!(
        out.result.status,
        Status::Ok,
        "{language} does not run under the default policy: {out:?}"
    );
    assert_eq!(
        out.stdout,
        format!("{FILTERED}{expected}"),
        "{language}: {out:?}"
    );
}

#[test]
fn c_runs_under_the_default_policy() {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        build(
            "ordinary.c",
            ORDINARY_C,
            &["cc", "-O1", "-pthread", "-o", "ordinary", "ordinary.c"],
            "ordinary",
        )
    });
    let mut sandbox = Sandbox::new(&[Program {
        name: "ordinary",
        bytes,
    }]);
    let out = sandbox.run(&["/t/ordinary"], &default_policy());
    assert_ordinary(&out, "C", "c threads 2002000\n");
}

#[test]
fn cpp_runs_under_the_default_policy() {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        build(
            "ordinary.cpp",
            ORDINARY_CPP,
            &["c++", "-O1", "-pthread", "-o", "ordinary", "ordinary.cpp"],
            "ordinary",
        )
    });
    let mut sandbox = Sandbox::new(&[Program {
        name: "ordinary",
        bytes,
    }]);
    let out = sandbox.run(&["/t/ordinary"], &default_policy());
    assert_ordinary(&out, "C++", "c++ threads 2002000\n");
}

#[test]
fn rust_runs_under_the_default_policy() {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        build(
            "ordinary.rs",
            ORDINARY_RS,
            &["rustc", "-O", "-o", "ordinary", "ordinary.rs"],
            "ordinary",
        )
    });
    let mut sandbox = Sandbox::new(&[Program {
        name: "ordinary",
        bytes,
    }]);
    let out = sandbox.run(&["/t/ordinary"], &default_policy());
    assert_ordinary(&out, "Rust", "rust threads 2002000\n");
}

#[test]
fn python_runs_under_the_default_policy() {
    let mut sandbox = Sandbox::new(&[]);
    // Threads, a file read, and a child process (posix_spawn tries clone3,
    // gets ENOSYS and falls back to clone).
    let script = "\
import json, subprocess, threading
sums = []
threads = [threading.Thread(target=lambda: sums.append(sum(range(1, 1001)))) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
for line in open('/proc/self/status'):
    if line.startswith('Seccomp:'): print(line, end='')
child = subprocess.run(['echo', 'child'], capture_output=True, text=True, check=True)
print(json.dumps({'python threads': sum(sums), 'child': child.stdout.strip()}))
";
    let out = sandbox.run(&["python3", "-c", script], &default_policy());
    assert_ordinary(
        &out,
        "Python",
        "{\"python threads\": 2002000, \"child\": \"child\"}\n",
    );
}

#[test]
fn java_runs_under_the_default_policy() {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        build(
            "Ordinary.java",
            ORDINARY_JAVA,
            &["javac", "-d", ".", "Ordinary.java"],
            "Ordinary.class",
        )
    });
    let mut sandbox = Sandbox::new(&[Program {
        name: "Ordinary.class",
        bytes,
    }]);
    let out = sandbox.run(&["java", "-cp", "/t", "Ordinary"], &default_policy());
    assert_ordinary(&out, "Java", "java threads 2002000\n");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Prints what the default policy costs: compiling it, and per exec.
/// Run with `cargo test -p hutch-host --release --test seccomp -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run it with --ignored --nocapture"]
fn measure_default_policy_costs() {
    let start = Instant::now();
    let program = hutch_host::DEFAULT_SECCOMP_POLICY
        .parse::<SeccompPolicy>()
        .unwrap()
        .compile()
        .unwrap();
    let compile = start.elapsed();
    let start = Instant::now();
    let first = default_policy().compile().unwrap();
    let first_cached = start.elapsed();
    let start = Instant::now();
    let cached = default_policy().compile().unwrap();
    let cached_time = start.elapsed();
    assert_eq!(program, first);
    assert_eq!(first, cached);
    println!(
        "default policy: {} instructions; parse + compile {compile:?}; first compile() {first_cached:?}; cached compile() {cached_time:?}",
        program.len()
    );

    const RUNS: usize = 1500;
    let mut container = ContainerBuilder::new().build().unwrap();
    let null = File::open("/dev/null").unwrap();
    let sink = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    // A filter that allows everything after the architecture checks: the
    // cost of having any filter at all.
    let minimal =
        r#"{"default_action": "allow"}"#.parse::<SeccompPolicy>().unwrap().compile().unwrap();
    let filters = [Vec::new(), minimal, program];
    let mut samples: [Vec<Duration>; 3] = Default::default();
    // Round robin, one exec of each at a time, so that drift in the
    // machine's load hits all three alike; the first round warms up.
    for round in 0..=RUNS {
        for (filter, samples) in filters.iter().zip(&mut samples) {
            let spec = ExecSpec::new(["/bin/true"])
                .stdio(null.as_fd(), sink.as_fd(), sink.as_fd())
                .seccomp(filter.clone());
            let start = Instant::now();
            let result = container.exec(&spec).unwrap();
            let elapsed = start.elapsed();
            assert_eq!(result.status, Status::Ok);
            if round > 0 {
                samples.push(elapsed);
            }
        }
    }
    let [without, least, with] = samples.map(median);
    println!(
        "/bin/true, {RUNS} execs each, round robin, medians: no filter {without:?}; \
         {}-instruction filter {least:?} (+{:?}); default policy, {} instructions, {with:?} (+{:?})",
        filters[1].len(),
        least.saturating_sub(without),
        filters[2].len(),
        with.saturating_sub(without)
    );
}

/// A hand-built filter that refuses everything, `exit_group` included,
/// with an errno: the program's process cannot even exit normally, yet the
/// run ends (the child falls back to an invalid instruction) instead of
/// spinning for ever.
#[test]
fn a_filter_that_refuses_exit_cannot_hang_the_run() {
    use hutch_host::protocol::BpfInstruction;
    // BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS.
    let refuse_all = vec![BpfInstruction {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x0005_0000 | 38,
    }];
    let mut c = ContainerBuilder::new().build().unwrap();
    let start = Instant::now();
    let out = run_spec(
        &mut c,
        ExecSpec::new(["/bin/true"])
            .seccomp(refuse_all)
            .wall_time(Duration::from_secs(20)),
    );
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGILL),
        "{:?}",
        out.result
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "it ended on its own"
    );
    assert_eq!(
        run_spec(&mut c, ExecSpec::new(["/bin/true"])).result.status,
        Status::Ok
    );
}
