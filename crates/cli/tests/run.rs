//! `hutch run` end to end: the real binary, real containers.
//!
//! These tests need user namespaces (they are how hutch works, as root and
//! without); where they are not available the tests fail and say so.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../../tests/support/ulimit.rs"]
mod ulimit;
use ulimit::hutch_under_ulimit;

const HUTCH: &str = env!("CARGO_BIN_EXE_hutch");
const NOBODY: u32 = 65534;

const STATUSES: [&str; 9] = [
    "ok",
    "nonzero-exit",
    "signalled",
    "time-limit",
    "wall-time-limit",
    "memory-limit",
    "output-limit",
    "disallowed-syscall",
    "runner-error",
];

/// A directory under the system temporary directory, removed on drop;
/// mode 0755 so that an unprivileged hutch can reach what is inside.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hutch-cli-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file with `mode` and returns its path as a string.
    fn file(&self, name: &str, contents: &[u8], mode: u32) -> String {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn join(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// The report, when the run wrote it as the last line of stdout.
    fn report(&self) -> Value {
        let text = self.stdout();
        let line = text.lines().last().unwrap_or_else(|| {
            panic!("no report on stdout; stderr: {}", self.stderr);
        });
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("report {line:?} is not JSON: {e}; stderr: {}", self.stderr))
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        let code = output.status.code().unwrap_or_else(|| {
            panic!(
                "hutch died of signal {:?}; stderr: {}",
                output.status.signal(),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        Run {
            code,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn hutch_command(binary: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs hutch with `args`, standard input from /dev/null.
fn hutch(args: &[&str]) -> Run {
    hutch_command(HUTCH, args).output().unwrap().into()
}

/// Runs `hutch run --quiet --report /dev/stdout EXTRA -- PROGRAM...` and
/// returns the run with its report checked for shape.
fn reported(extra: &[&str], program: &[&str]) -> (Run, Value) {
    let mut args = vec!["run", "--quiet", "--report", "/dev/stdout"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(program);
    let run = hutch(&args);
    let report = run.report();
    check_report_shape(&report);
    (run, report)
}

fn check_report_shape(report: &Value) {
    let object = report.as_object().expect("the report is an object");
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "status",
        "exit_code",
        "signal",
        "cpu_time_ns",
        "user_time_ns",
        "sys_time_ns",
        "wall_time_ns",
        "memory_bytes",
        "processes_peak",
        "accounting",
        "error",
        "copy_out",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected, "report fields: {report}");
    assert!(report["copy_out"].is_array(), "{report}");
    let status = report["status"].as_str().expect("status is a string");
    assert!(STATUSES.contains(&status), "unknown status {status}");
    assert!(report["exit_code"].is_null() || report["exit_code"].is_i64());
    assert!(report["signal"].is_null() || report["signal"].is_i64());
    for field in [
        "cpu_time_ns",
        "user_time_ns",
        "sys_time_ns",
        "wall_time_ns",
        "memory_bytes",
    ] {
        assert!(report[field].is_u64(), "{field} is not a count: {report}");
    }
    assert_eq!(
        report["cpu_time_ns"].as_u64().unwrap(),
        report["user_time_ns"].as_u64().unwrap() + report["sys_time_ns"].as_u64().unwrap()
    );
    assert!(report["error"].is_null() || report["error"].is_string());
    assert!(
        report["processes_peak"].is_null() || report["processes_peak"].is_u64(),
        "{report}"
    );
    assert!(
        report["accounting"].is_null()
            || ["cgroup-v1", "cgroup-v2", "rusage"]
                .contains(&report["accounting"].as_str().unwrap()),
        "accounting: {report}"
    );
}

/// The binary as uid 65534 can run it: the build's own when that user can
/// reach it, otherwise a copy in the system temporary directory (replaced
/// atomically, so that concurrent test runs share one file).
fn unprivileged_binary() -> &'static str {
    static BINARY: OnceLock<String> = OnceLock::new();
    BINARY.get_or_init(|| {
        let runs = Command::new(HUTCH)
            .arg("--version")
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if runs {
            return HUTCH.to_owned();
        }
        let dir = std::env::temp_dir().join("hutch-cli-test-bin");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let partial = dir.join(format!("hutch.{}", std::process::id()));
        fs::copy(HUTCH, &partial).unwrap();
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("hutch");
        fs::rename(&partial, &path).unwrap();
        path.to_str().unwrap().to_owned()
    })
}

/// Runs hutch as uid and gid 65534 (std drops supplementary groups when a
/// root parent sets the uid).
/// Unprivileged, no cgroup can be made here: rusage accounting is accepted
/// explicitly with `--allow-rusage` (added after `run`).
fn hutch_as_nobody(args: &[&str]) -> Run {
    let mut args = args.to_vec();
    if args.first() == Some(&"run") {
        args.insert(1, "--allow-rusage");
    }
    assert!(
        running_as_root(),
        "the unprivileged tests start hutch as uid {NOBODY}, which needs the test to run as root"
    );
    let cwd = TempDir::new("cwd");
    let run: Run = hutch_command(unprivileged_binary(), &args)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir(cwd.path())
        .output()
        .unwrap()
        .into();
    if run.stderr.contains("cannot start the container") {
        panic!(
            "hutch could not start a container as uid {NOBODY}: unprivileged user namespaces \
             are needed (check /proc/sys/user/max_user_namespaces, \
             kernel.apparmor_restrict_unprivileged_userns and similar policies); stderr: {}",
            run.stderr
        );
    }
    run
}

fn running_as_root() -> bool {
    // /proc/self belongs to the effective uid of the process.
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid() == 0
}

// ---------------------------------------------------------------------------
// Output, exit status, report

#[test]
fn echo_passes_through_unchanged() {
    let run = hutch(&[
        "run",
        "--quiet",
        "--",
        "echo",
        "hello",
        "  two  spaces",
        "-n",
    ]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, b"hello   two  spaces -n\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn binary_output_passes_through_unchanged() {
    let run = hutch(&[
        "run",
        "--quiet",
        "--",
        "head",
        "-c",
        "300000",
        "/dev/urandom",
    ]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout.len(), 300_000);
}

#[test]
fn stderr_passes_through_before_the_summary() {
    let run = hutch(&["run", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout(), "out\n");
    let mut lines = run.stderr.lines();
    assert_eq!(lines.next(), Some("err"));
    let summary = lines.next().expect("a summary line");
    assert!(summary.starts_with("hutch: ok exit=0 cpu="), "{summary}");
    assert!(
        summary.contains(" wall=") && summary.contains(" memory="),
        "{summary}"
    );
    assert_eq!(lines.next(), None);
}

#[test]
fn a_closed_standard_error_leaves_the_exit_status_to_the_verdict() {
    // `hutch run … 2>&1 | head -1`, once `head` has gone: the summary line
    // cannot be written, and the status still says how the run went.
    for (program, code) in [("true", 0), ("false", 1)] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = hutch_command(HUTCH, &["run", "--", program])
            .stdout(Stdio::null())
            .stderr(writer)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code), "{program}: {status}");
    }
}

#[test]
fn quiet_suppresses_the_summary() {
    let loud = hutch(&["run", "true"]);
    assert!(
        loud.stderr.starts_with("hutch: ok exit=0"),
        "{}",
        loud.stderr
    );
    let quiet = hutch(&["run", "--quiet", "true"]);
    assert_eq!(quiet.code, 0);
    assert_eq!(quiet.stderr, "");
    let failed = hutch(&["run", "--quiet", "false"]);
    assert_eq!(failed.code, 1);
    assert_eq!(failed.stderr, "");
}

#[test]
fn quiet_still_tells_why_the_program_could_not_start() {
    for (args, said) in [
        (&["--env", "PATH=", "true"][..], "\"true\" not found"),
        (&["/no/such/program"][..], "/no/such/program"),
    ] {
        let mut argv = vec!["run", "--quiet"];
        argv.extend_from_slice(args);
        let run = hutch(&argv);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("hutch: error: ") && run.stderr.contains(said),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
}

#[test]
fn ok_report() {
    let (run, report) = reported(&[], &["sh", "-c", "echo hi"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout().lines().next(), Some("hi"));
    assert_eq!(report["status"], "ok");
    assert_eq!(report["exit_code"], 0);
    assert!(report["signal"].is_null());
    assert!(report["error"].is_null());
    assert!(report["accounting"].is_string());
    assert!(report["wall_time_ns"].as_u64().unwrap() > 0);
    assert!(report["memory_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn false_is_nonzero_exit_with_status_1() {
    let (run, report) = reported(&[], &["false"]);
    assert_eq!(run.code, 1);
    assert_eq!(report["status"], "nonzero-exit");
    assert_eq!(report["exit_code"], 1);
    assert!(report["signal"].is_null());

    let (run, report) = reported(&[], &["sh", "-c", "exit 42"]);
    assert_eq!(run.code, 1);
    assert_eq!(report["exit_code"], 42);

    let summary = hutch(&["run", "false"]);
    assert_eq!(summary.code, 1);
    assert!(
        summary.stderr.starts_with("hutch: nonzero-exit exit=1 "),
        "{}",
        summary.stderr
    );
}

#[test]
fn signals_are_reported() {
    let (run, report) = reported(&[], &["sh", "-c", "kill -SEGV $$"]);
    assert_eq!(run.code, 1);
    assert_eq!(report["status"], "signalled");
    assert_eq!(report["signal"], 11);
    assert!(report["exit_code"].is_null());
}

/// Every cgroup directory whose name says hutch process `pid` made it.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(entry.path());
            } else if depth > 0 {
                walk(&entry.path(), prefix, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        &format!("hutch-{pid}-"),
        6,
        &mut found,
    );
    found
}

/// A `hutch run` (with `extra` options, its standard error to `stderr`) of
/// a program that says `ready` and then sleeps far longer than any test,
/// returned once the program has said it, with the rest of its standard
/// output. The wall limit only guards a test against a hutch that lets the
/// run go on: it ends 30 s later.
struct Sleeper {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Sleeper {
    fn start(extra: &[&str], stderr: Stdio) -> Sleeper {
        let mut child = Command::new(HUTCH)
            .arg("run")
            .args(extra)
            .args(["--wall-time", "30s", "--", "/bin/sh", "-c"])
            .arg("echo ready; exec sleep 1000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line, "ready\n");
        Sleeper { child, stdout }
    }

    /// Sends hutch `signal`.
    fn signal(&self, signal: rustix::process::Signal) {
        let hutch = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(hutch, signal).unwrap();
    }
}

/// A stop signal (`timeout`'s, a service manager's, Ctrl-C's) in the
/// middle of a run: the program is killed, the container's cgroups are
/// removed, and hutch ends by that signal, as its caller expects.
#[test]
fn a_stop_signal_kills_the_run_and_leaves_no_cgroup() {
    let Sleeper { child, mut stdout } = Sleeper::start(&["--allow-rusage"], Stdio::piped());
    let pid = child.id();
    if running_as_root() {
        assert!(!cgroups_of(pid).is_empty(), "the run has cgroups to remove");
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let sent = Instant::now();
    let output = child.wait_with_output().unwrap();
    let waited = sent.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(rustix::process::Signal::TERM.as_raw()),
        "{stderr}"
    );
    assert!(
        stderr.contains("hutch: stopped by SIGTERM: the run was killed and its container removed"),
        "{stderr}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "hutch ended {waited:?} after the signal, not at once"
    );
    // The program went with its container: its end of the pipe is closed.
    let mut line = String::new();
    assert_eq!(
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap(),
        0
    );
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new());
}

/// Without `--processes`, a run still has a process limit (2048), so that
/// a fork bomb cannot take every pid of the host; `--processes` sets it.
#[test]
fn a_run_has_a_process_limit_by_default() {
    for (extra, want) in [(&[][..], "2048"), (&["--processes", "77"][..], "77")] {
        let mut sleeper = Sleeper::start(extra, Stdio::null());
        let limits: Vec<String> = cgroups_of(sleeper.child.id())
            .iter()
            .filter_map(|group| fs::read_to_string(group.join("pids.max")).ok())
            .collect();
        sleeper.signal(rustix::process::Signal::TERM);
        sleeper.child.wait().unwrap();
        assert_eq!(limits, [format!("{want}\n")], "{extra:?}");
    }
}

/// `SIGKILL` cannot be caught: the killed hutch's cgroups stay until a
/// later `hutch run` removes them.
#[test]
fn cgroups_a_killed_hutch_left_are_removed_by_the_next_run() {
    let Sleeper { mut child, .. } = Sleeper::start(&[], Stdio::null());
    let pid = child.id();
    // Looked for while hutch lives: once it is dead, any hutch run (those
    // of the tests running alongside too) may remove them.
    let left = cgroups_of(pid);
    assert!(!left.is_empty(), "the run has cgroups");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    let run = hutch(&["run", "--", "/bin/true"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        cgroups_of(pid),
        Vec::<PathBuf>::new(),
        "left before: {left:?}"
    );
}

/// hutch started with low hard limits, which nothing in a container can
/// raise: a limit asked above one fails the run naming it; the stack limit
/// hutch sets from the memory limit keeps within it, so runs still work.
#[test]
fn limits_above_the_hard_limits_hutch_started_with() {
    let (output, stderr) = hutch_under_ulimit(
        HUTCH,
        "-n 60",
        &["run", "--open-files", "100", "--", "true"],
    );
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "RLIMIT_NOFILE (open files) of 100 is above the hard limit of 60 the host process has"
        ),
        "{stderr}"
    );

    let (output, stderr) = hutch_under_ulimit(
        HUTCH,
        "-s 8192",
        &["run", "--memory", "64M", "--", "sh", "-c", "ulimit -s"],
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "8192\n",
        "{stderr}"
    );
}

#[test]
fn missing_program_is_a_runner_error_with_status_2() {
    let (run, report) = reported(&[], &["no-such-program-here"]);
    assert_eq!(run.code, 2);
    assert_eq!(report["status"], "runner-error");
    assert!(report["exit_code"].is_null());
    assert!(report["signal"].is_null());
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("no-such-program-here"), "{error}");

    let run = hutch(&["run", "/no/such/path"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("hutch: runner-error"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("/no/such/path"), "{}", run.stderr);
}

#[test]
fn report_to_a_file_and_after_the_output_in_a_redirected_stdout() {
    let dir = TempDir::new("report");
    let report_path = dir.join("report.json");
    fs::write(
        &report_path,
        "old contents that are longer than nothing at all",
    )
    .unwrap();
    let run = hutch(&[
        "run",
        "--quiet",
        "--report",
        &report_path,
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout(), "hi\n");
    let text = fs::read_to_string(&report_path).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    check_report_shape(&report);
    assert_eq!(report["status"], "ok");

    // Standard output redirected to a file: the report follows the program's
    // output instead of overwriting it.
    let out_path = dir.join("out");
    let out = fs::File::create(&out_path).unwrap();
    let status = hutch_command(
        HUTCH,
        &[
            "run",
            "--quiet",
            "--report",
            "/dev/stdout",
            "--",
            "echo",
            "first",
        ],
    )
    .stdout(out)
    .status()
    .unwrap();
    assert!(status.success());
    let text = fs::read_to_string(&out_path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("first"));
    let report: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(report["status"], "ok");
}

#[test]
fn setup_failure_still_writes_a_report() {
    let dir = TempDir::new("setup");
    let missing = dir.join("missing-input");
    let report_path = dir.join("report.json");
    let run = hutch(&[
        "run",
        "--report",
        &report_path,
        "--stdin",
        &missing,
        "--",
        "cat",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.starts_with("hutch: error: "), "{}", run.stderr);
    let report: Value = serde_json::from_str(&fs::read_to_string(&report_path).unwrap()).unwrap();
    check_report_shape(&report);
    assert_eq!(report["status"], "runner-error");
    assert!(report["error"].as_str().unwrap().contains(&missing));
}

// ---------------------------------------------------------------------------
// Usage errors

#[test]
fn bad_flag_is_usage_error_naming_it() {
    let run = hutch(&["run", "--bogus-flag", "true"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--bogus-flag"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn bad_values_are_usage_errors_naming_argument_and_value() {
    for (flag, value) in [
        ("--time", "0"),
        ("--time", "-1s"),
        ("--time", "fast"),
        ("--wall-time", "3parsecs"),
        ("--output", "0"),
        ("--output", "1KB"),
        ("--stack", "-4M"),
        ("--open-files", "1.5"),
        ("--env", "NOVALUE"),
        ("--copy-in", "x:../y"),
        ("--copy-in", "x:/abs"),
        ("--copy-out", "../x"),
        ("--copy-out", "/etc/passwd"),
        ("--copy-out-limit", "big"),
        ("--bind", "/tmp:relative"),
        ("--workdir", "relative"),
    ] {
        let run = hutch(&["run", flag, value, "--", "true"]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr.contains(flag) && run.stderr.contains(value),
            "{flag} {value}: {}",
            run.stderr
        );
    }
}

#[test]
fn binds_and_work_directories_onto_the_containers_own_mounts_are_refused() {
    let dir = TempDir::new("onto");
    let source = dir.path().to_str().unwrap();
    let onto = |target: &str| format!("{source}:{target}");
    for (flag, value, said) in [
        (
            "--workdir",
            "/dev".to_owned(),
            "hide the container's device directory at /dev",
        ),
        (
            "--workdir",
            "/proc".into(),
            "hide the container's proc at /proc",
        ),
        (
            "--workdir",
            "/usr".into(),
            "hide the container's read-only bind at /usr",
        ),
        (
            "--workdir",
            "/tmp/w".into(),
            "inside the container's tmpfs at /tmp",
        ),
        ("--bind", "/etc:/".into(), "hide the container's root at /"),
        (
            "--bind",
            onto("/w"),
            "hide the container's work directory at /w",
        ),
        (
            "--bind",
            onto("/w/data"),
            "inside the container's work directory at /w",
        ),
        (
            "--bind",
            onto("/proc/x"),
            "inside the container's proc at /proc",
        ),
        (
            "--bind",
            onto("/dev"),
            "hide the container's device directory at /dev",
        ),
        ("--bind", onto("/tmp"), "hide the container's tmpfs at /tmp"),
    ] {
        let run = hutch(&["run", flag, &value, "--", "true"]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("hutch: error: cannot use {flag} {value}: "))
                && run.stderr.contains(said),
            "{flag} {value}: {}",
            run.stderr
        );
    }
    // /w is free once the work directory is elsewhere.
    let run = hutch(&[
        "run",
        "--quiet",
        "--workdir",
        "/sandbox",
        "--bind",
        &onto("/w"),
        "--",
        "ls",
        "/w",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn missing_program_argument_is_a_usage_error() {
    let run = hutch(&["run", "--time", "1s"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("PROGRAM"), "{}", run.stderr);
}

#[test]
fn missing_host_files_are_named() {
    let dir = TempDir::new("missing");
    let missing = dir.join("nothing-here");
    for flag in ["--stdin", "--copy-in", "--bind"] {
        let run = hutch(&["run", flag, &missing, "--", "true"]);
        assert_eq!(run.code, 2, "{flag}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("hutch: error: ")
                && run.stderr.contains(flag)
                && run.stderr.contains(&missing),
            "{flag}: {}",
            run.stderr
        );
    }
    let run = hutch(&[
        "run",
        "--copy-in",
        dir.path().to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
}

#[test]
fn help_is_available() {
    let run = hutch(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout().contains("run"));
    let run = hutch(&["run", "--help"]);
    assert_eq!(run.code, 0);
    for flag in [
        "--time",
        "--wall-time",
        "--output",
        "--stack",
        "--open-files",
        "--stdin",
        "--stdout",
        "--stderr",
        "--copy-in",
        "--bind",
        "--env",
        "--workdir",
        "--report",
        "--quiet",
    ] {
        assert!(run.stdout().contains(flag), "{flag} missing from help");
    }
}

// ---------------------------------------------------------------------------
// Standard streams

#[test]
fn stdin_stdout_stderr_files() {
    let dir = TempDir::new("stdio");
    let input = dir.file("in", b"line one\nline two\n", 0o644);
    let out = dir.join("out");
    let err = dir.join("err");
    fs::write(&out, "previous contents, much longer than the new ones").unwrap();
    let run = hutch(&[
        "run",
        "--quiet",
        "--stdin",
        &input,
        "--stdout",
        &out,
        "--stderr",
        &err,
        "--",
        "sh",
        "-c",
        "cat; echo oops >&2",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert_eq!(run.stderr, "");
    assert_eq!(fs::read_to_string(&out).unwrap(), "line one\nline two\n");
    assert_eq!(fs::read_to_string(&err).unwrap(), "oops\n");
}

#[test]
fn stdout_and_stderr_to_one_file_interleave() {
    let dir = TempDir::new("both");
    let both = dir.join("both");
    let run = hutch(&[
        "run",
        "--quiet",
        "--stdout",
        &both,
        "--stderr",
        &both,
        "--",
        "sh",
        "-c",
        "echo 1; echo 2 >&2; echo 3",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::read_to_string(&both).unwrap(), "1\n2\n3\n");
}

#[test]
fn stdin_passes_through_by_default() {
    let mut child = Command::new(HUTCH)
        .args(["run", "--quiet", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout, b"SHOUT\n");
}

// ---------------------------------------------------------------------------
// Files

#[test]
fn copy_in_keeps_content_and_mode() {
    let dir = TempDir::new("copy");
    let script_text = b"#!/bin/sh\necho \"script says $1\"\n";
    let script = dir.file("prog.sh", script_text, 0o750);
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let blob = dir.file("blob.bin", &data, 0o604);
    let run = hutch(&[
        "run",
        "--quiet",
        "--copy-in",
        &script,
        "--copy-in",
        &format!("{blob}:nested/dir/data"),
        "--",
        "sh",
        "-c",
        "./prog.sh hi && stat -c '%a %s' prog.sh nested/dir/data && cat nested/dir/data \
         && test -O prog.sh && test -O nested/dir/data",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let header = format!("script says hi\n750 {}\n604 100000\n", script_text.len());
    assert_eq!(&run.stdout[..header.len()], header.as_bytes());
    assert_eq!(&run.stdout[header.len()..], &data[..]);
}

#[test]
fn copy_out_brings_back_what_the_run_left_with_its_mode() {
    let dir = TempDir::new("copy-out");
    let into = format!("{}/", dir.path().display());
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let blob = dir.file("blob.bin", &data, 0o644);
    // Whatever the verdict: a compiler that left its output and failed.
    let (run, report) = reported(
        &[
            "--copy-in",
            &format!("{blob}:in.bin"),
            "--copy-out",
            &format!("prog:{into}"),
            "--copy-out",
            &format!("out/data.bin:{}", dir.join("data.copy")),
        ],
        &[
            "sh",
            "-c",
            "printf '#!/bin/sh\\necho copied out\\n' > prog && chmod 750 prog \
             && mkdir out && cp in.bin out/data.bin && exit 3",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["status"], "nonzero-exit");
    let prog = dir.path().join("prog");
    let mode = fs::metadata(&prog).unwrap().permissions().mode() & 0o777;
    // The host's umask may take bits away, never add them.
    assert_eq!(mode & !0o750, 0, "mode {mode:o}");
    assert_eq!(mode & 0o700, 0o700, "mode {mode:o}");
    let ran = Command::new(&prog).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "copied out\n");
    assert_eq!(fs::read(dir.path().join("data.copy")).unwrap(), data);
    assert_eq!(
        report["copy_out"],
        serde_json::json!([
            {"path": "prog", "destination": dir.join("prog"), "bytes": "#!/bin/sh\necho copied out\n".len(), "error": null},
            {"path": "out/data.bin", "destination": dir.join("data.copy"), "bytes": 100_000,
             "error": null},
        ])
    );
    // By default, the file name in the current directory.
    let cwd = TempDir::new("copy-out-cwd");
    let run: Run = hutch_command(
        HUTCH,
        &[
            "run",
            "--quiet",
            "--copy-out",
            "a/b/c.txt",
            "--",
            "sh",
            "-c",
            "mkdir -p a/b && echo c > a/b/c.txt",
        ],
    )
    .current_dir(cwd.path())
    .output()
    .unwrap()
    .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::read_to_string(cwd.path().join("c.txt")).unwrap(), "c\n");
}

/// What the program leaves instead of the file asked for is refused, never
/// followed or read: a symbolic link to a host file, a FIFO, a directory,
/// nothing, or too much. The run's verdict stands and the exit status is 1.
#[test]
fn copy_out_refuses_links_special_files_missing_and_oversized_ones() {
    let dir = TempDir::new("copy-out-refused");
    let names = [
        "link",
        "through/passwd",
        "fifo",
        "dir",
        "missing",
        "big",
        "fine",
    ];
    let mut extra = vec!["--copy-out-limit".to_owned(), "1K".to_owned()];
    for name in names {
        extra.push("--copy-out".into());
        extra.push(format!("{name}:{}", dir.join(&name.replace('/', "-"))));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (run, report) = reported(
        &extra,
        &[
            "sh",
            "-c",
            "ln -s /etc/passwd link && ln -s /etc through && mkfifo fifo && mkdir dir \
             && head -c 1025 /dev/zero > big && echo fine > fine",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["status"], "ok");
    let expected = [
        (
            "link",
            "\"/w/link\" is a symbolic link, which copy-out never follows",
        ),
        ("through/passwd", "passes through a symbolic link"),
        ("fifo", "is a FIFO, not a regular file"),
        ("dir", "is a directory, not a regular file"),
        ("missing", "No such file or directory"),
        ("big", "it is 1025 bytes, more than --copy-out-limit (1024)"),
    ];
    for (i, (name, message)) in expected.iter().enumerate() {
        let entry = &report["copy_out"][i];
        assert_eq!(entry["path"], *name);
        assert!(entry["bytes"].is_null(), "{entry}");
        let error = entry["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{name}: {error:?}");
        assert!(run.stderr.contains(error), "{}", run.stderr);
        assert!(
            !dir.path().join(name.replace('/', "-")).exists(),
            "{name} was written"
        );
    }
    assert_eq!(report["copy_out"][6]["bytes"], 5);
    assert_eq!(
        fs::read_to_string(dir.path().join("fine")).unwrap(),
        "fine\n"
    );
}

#[test]
fn copy_out_mistakes_on_the_host_fail_before_the_run() {
    let dir = TempDir::new("copy-out-host");
    let missing_dir = format!("x:{}/", dir.join("no-such-dir"));
    let same = format!("x:{}", dir.join("same"));
    for (extra, expected) in [
        (
            vec!["--copy-out", &missing_dir],
            "cannot write the --copy-out destination",
        ),
        (
            vec!["--copy-out", &same, "--copy-out", &same],
            "two --copy-out files go to",
        ),
    ] {
        let mut args = vec!["run"];
        args.extend(extra);
        args.extend(["--", "sh", "-c", "echo ran"]);
        let run = hutch(&args);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        assert_eq!(run.stdout(), "", "the program did not run");
    }
}

#[test]
fn copied_script_runs_directly() {
    let dir = TempDir::new("script");
    let script = dir.file("run-me", b"#!/bin/sh\necho ran as $0\n", 0o750);
    let run = hutch(&["run", "--quiet", "--copy-in", &script, "--", "./run-me"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "ran as ./run-me\n");
}

#[test]
fn bind_is_read_only_by_default() {
    let dir = TempDir::new("bind-ro");
    dir.file("input.txt", b"bound\n", 0o644);
    let source = dir.path().to_str().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let (run, report) = reported(
        &["--bind", &format!("{source}:/data")],
        &["sh", "-c", "cat /data/input.txt && echo x > /data/new"],
    );
    assert_eq!(run.stdout().lines().next(), Some("bound"));
    assert_eq!(report["status"], "nonzero-exit");
    assert_eq!(run.code, 1);
    assert!(!dir.path().join("new").exists());

    // Without a target, the same path inside.
    let run = hutch(&[
        "run",
        "--quiet",
        "--bind",
        source,
        "--",
        "cat",
        &dir.join("input.txt"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "bound\n");
}

#[test]
fn bind_rw_writes_reach_the_host() {
    let dir = TempDir::new("bind-rw");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let source = dir.path().to_str().unwrap();
    let run = hutch(&[
        "run",
        "--quiet",
        "--bind",
        &format!("{source}:/out:rw"),
        "--",
        "sh",
        "-c",
        "echo from inside > /out/result",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        fs::read_to_string(dir.path().join("result")).unwrap(),
        "from inside\n"
    );
}

#[test]
fn bind_source_may_be_a_relative_symlink() {
    let dir = TempDir::new("bind-link");
    fs::create_dir(dir.path().join("real")).unwrap();
    fs::write(dir.path().join("real/f"), "through the link\n").unwrap();
    symlink("real", dir.path().join("link")).unwrap();
    let run: Run = hutch_command(
        HUTCH,
        &["run", "--quiet", "--bind", "link:/in", "--", "cat", "/in/f"],
    )
    .current_dir(dir.path())
    .output()
    .unwrap()
    .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "through the link\n");
}

#[test]
fn writes_outside_workdir_and_tmp_fail() {
    for path in ["/etc/x", "/x", "/usr/x", "/proc/x", "/dev/x"] {
        let run = hutch(&["run", "--quiet", "--", "touch", path]);
        assert_eq!(run.code, 1, "touch {path} succeeded");
    }
    let run = hutch(&[
        "run", "--quiet", "--", "touch", "/w/x", "/tmp/x", "relative",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn workdir_option() {
    let dir = TempDir::new("workdir");
    let file = dir.file("f", b"in the new workdir\n", 0o644);
    let run = hutch(&[
        "run",
        "--quiet",
        "--workdir",
        "/sandbox",
        "--copy-in",
        &file,
        "--",
        "sh",
        "-c",
        "pwd && cat /sandbox/f && touch new",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "/sandbox\nin the new workdir\n");
    let default = hutch(&["run", "--quiet", "pwd"]);
    assert_eq!(default.stdout(), "/w\n");
}

// ---------------------------------------------------------------------------
// Environment and descriptors

#[test]
fn env_is_only_what_was_given_plus_path() {
    let run = hutch(&[
        "run",
        "--quiet",
        "--env",
        "ALPHA=1",
        "--env",
        "BETA=two words=and an equals",
        "--env",
        "EMPTY=",
        "--",
        "env",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: BTreeSet<String> = run.stdout().lines().map(str::to_owned).collect();
    let expected: BTreeSet<String> = [
        "ALPHA=1",
        "BETA=two words=and an equals",
        "EMPTY=",
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(lines, expected);

    let run = hutch(&["run", "--quiet", "--env", "PATH=/bin", "--", "env"]);
    assert_eq!(run.stdout(), "PATH=/bin\n");
}

#[test]
fn program_sees_only_its_three_descriptors() {
    // Give hutch extra open descriptors (7 and 8) that it must not pass on.
    let script = "exec 7</dev/null 8>/dev/null; exec \"$0\" run --quiet -- ls /proc/self/fd";
    let output = Command::new("sh")
        .args(["-c", script, HUTCH])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run: Run = output.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fds: BTreeSet<String> = run.stdout().split_whitespace().map(str::to_owned).collect();
    // 3 is the directory ls itself reads.
    let expected: BTreeSet<String> = ["0", "1", "2", "3"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(fds, expected);
}

// ---------------------------------------------------------------------------
// Limits

#[test]
fn cpu_time_limit() {
    let start = Instant::now();
    let (run, report) = reported(&["--time", "500ms"], &["sh", "-c", "while :; do :; done"]);
    assert_eq!(run.code, 1);
    assert_eq!(report["status"], "time-limit");
    assert!(
        report["cpu_time_ns"].as_u64().unwrap() >= 400_000_000,
        "{report}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn wall_time_limit() {
    let start = Instant::now();
    let (run, report) = reported(&["--wall-time", "500ms"], &["sleep", "10"]);
    assert_eq!(run.code, 1);
    assert_eq!(report["status"], "wall-time-limit");
    let wall = report["wall_time_ns"].as_u64().unwrap();
    assert!((500_000_000..5_000_000_000).contains(&wall), "{report}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn time_limit_implies_a_wall_time_limit() {
    // 2 × 100ms + 1s of wall time for a program that sleeps.
    let start = Instant::now();
    let (run, report) = reported(&["--time", "100ms"], &["sleep", "10"]);
    assert_eq!(run.code, 1);
    assert_eq!(report["status"], "wall-time-limit");
    let wall = report["wall_time_ns"].as_u64().unwrap();
    assert!((1_200_000_000..5_000_000_000).contains(&wall), "{report}");
    assert!(start.elapsed() < Duration::from_secs(6));
}

#[test]
fn output_limit() {
    let (run, report) = reported(
        &["--output", "1K"],
        &["sh", "-c", "exec head -c 1000000 /dev/zero > /w/f"],
    );
    assert_eq!(run.code, 1);
    assert_eq!(report["status"], "output-limit");

    let (run, report) = reported(
        &["--output", "2M"],
        &["sh", "-c", "head -c 1000000 /dev/zero > /w/f"],
    );
    assert_eq!(run.code, 0);
    assert_eq!(report["status"], "ok");
}

#[test]
fn open_files_and_stack_limits() {
    let run = hutch(&[
        "run",
        "--quiet",
        "--open-files",
        "50",
        "--stack",
        "3M",
        "--",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -s",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "50\n50\n3072\n");
}

// ---------------------------------------------------------------------------
// Unprivileged

#[test]
fn unprivileged_echo() {
    let run = hutch_as_nobody(&["run", "--quiet", "--", "echo", "hello from nobody"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "hello from nobody\n");
    // Rootless: the container's only id is the caller's.
    let run = hutch_as_nobody(&["run", "--quiet", "--", "cat", "/proc/self/uid_map"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let map: Vec<&str> = run
        .stdout
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .map(|f| std::str::from_utf8(f).unwrap())
        .collect();
    assert_eq!(map, ["0", "65534", "1"]);
}

#[test]
fn unprivileged_report() {
    let run = hutch_as_nobody(&["run", "--quiet", "--report", "/dev/stdout", "--", "true"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    check_report_shape(&report);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["exit_code"], 0);
}

#[test]
fn unprivileged_false() {
    let run = hutch_as_nobody(&["run", "--report", "/dev/stdout", "--", "false"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.report()["status"], "nonzero-exit");
    assert!(
        run.stderr.starts_with("hutch: nonzero-exit exit=1 "),
        "{}",
        run.stderr
    );
}

#[test]
fn unprivileged_copy_in() {
    let dir = TempDir::new("nobody-copy");
    let script = dir.file("tool", b"#!/bin/sh\necho tool ok\n", 0o755);
    let run = hutch_as_nobody(&["run", "--quiet", "--copy-in", &script, "--", "./tool"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "tool ok\n");
}

#[test]
fn stdout_to_dev_stderr_shares_hutchs_descriptor() {
    let dir = TempDir::new("dev-stderr");
    let log_path = dir.join("log");
    let log = fs::File::create(&log_path).unwrap();
    let status = hutch_command(
        HUTCH,
        &["run", "--stdout", "/dev/stderr", "--", "echo", "moved"],
    )
    .stderr(log)
    .status()
    .unwrap();
    assert!(status.success());
    let text = fs::read_to_string(&log_path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("moved"));
    assert!(
        lines.next().unwrap().starts_with("hutch: ok exit=0"),
        "{text}"
    );
}

#[test]
fn copy_in_refuses_one_destination_twice() {
    let dir = TempDir::new("twice");
    let file = dir.file("f", b"x", 0o644);
    let run = hutch(&[
        "run",
        "--copy-in",
        &file,
        "--copy-in",
        &format!("{file}:./f"),
        "true",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--copy-in") && run.stderr.contains(" f"),
        "{}",
        run.stderr
    );
}

#[test]
fn memory_limit_gives_memory_limit_and_cgroup_accounting() {
    let (run, report) = reported(
        &["--memory", "64M", "--time", "5s"],
        &["python3", "-c", "a = bytearray(200 * 1024 * 1024)"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["status"], "memory-limit", "{report}");
    let accounting = report["accounting"].as_str().unwrap();
    assert!(accounting.starts_with("cgroup-"), "{report}");
    assert!(
        report["memory_bytes"].as_u64().unwrap() <= 65 << 20,
        "{report}"
    );
}

#[test]
fn fork_bomb_is_contained_by_processes() {
    let (run, report) = reported(
        &["--processes", "32", "--time", "1s", "--wall-time", "3s"],
        &["sh", "-c", "b() { b & b; }; b"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let status = report["status"].as_str().unwrap();
    assert!(
        ["time-limit", "wall-time-limit", "nonzero-exit"].contains(&status),
        "{report}"
    );
    let (run, _) = reported(&[], &["true"]);
    assert_eq!(run.code, 0, "the host is still fine: {}", run.stderr);
}

#[test]
fn workdir_size_bounds_the_work_directory() {
    let run = hutch(&[
        "run",
        "--quiet",
        "--workdir-size",
        "1M",
        "--",
        "sh",
        "-c",
        "head -c 2000000 /dev/zero > /w/big",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = hutch(&[
        "run",
        "--quiet",
        "--workdir-size",
        "4M",
        "--",
        "sh",
        "-c",
        "head -c 2000000 /dev/zero > /w/big",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn bad_limits_are_usage_errors() {
    for (flag, value, says) in [
        ("--memory", "100K", "at least"),
        ("--memory", "lots", "--memory"),
        ("--processes", "0", "--processes"),
        ("--processes", "99999999999", "at most"),
        ("--workdir-size", "1K", "at least 4K"),
    ] {
        let run = hutch(&["run", flag, value, "--", "true"]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{flag} {value}: {}", run.stderr);
    }
}

#[test]
fn unprivileged_without_a_cgroup_fails_unless_rusage_is_allowed() {
    assert!(running_as_root(), "this test starts hutch as uid {NOBODY}");
    let cwd = TempDir::new("cwd");
    let run: Run = hutch_command(unprivileged_binary(), &["run", "--", "true"])
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir(cwd.path())
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--allow-rusage"),
        "the error names the fix: {}",
        run.stderr
    );
    let run = hutch_as_nobody(&["run", "--report", "/dev/stdout", "--quiet", "--", "true"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report()["accounting"], "rusage");
    // Limits only a cgroup enforces are refused, not ignored.
    for flag in ["--memory", "--processes"] {
        let value = if flag == "--memory" { "16M" } else { "4" };
        let run = hutch_as_nobody(&["run", flag, value, "--", "true"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("{flag} needs a cgroup, and this run has none")),
            "{}",
            run.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// The input file stays as it was

/// A program that tries to rewrite its input through `/proc/self/fd/0`,
/// says whether it could, then prints the input as it reads it.
const REWRITE_STDIN: &str = "echo TAMPERED 1<>/proc/self/fd/0 || echo refused; cat";

/// `hutch run` of [`REWRITE_STDIN`] with `--stdin` naming `input`.
fn rewrite_stdin_args(input: &str) -> [&str; 8] {
    [
        "run",
        "--quiet",
        "--stdin",
        input,
        "--",
        "sh",
        "-c",
        REWRITE_STDIN,
    ]
}

/// A run of [`REWRITE_STDIN`] succeeded, the program was refused and read
/// "original", and the file `input` still holds `contents`.
fn assert_stdin_not_rewritten(run: &Run, input: &str, contents: &str) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::read_to_string(input).unwrap(), contents);
    assert_eq!(run.stdout(), "refused\noriginal\n", "{}", run.stderr);
}

#[test]
fn a_program_cannot_rewrite_the_stdin_file() {
    let dir = TempDir::new("stdin-file");
    // World-writable: the program's user could write the file itself.
    let input = dir.file("input", b"original\n", 0o666);
    let run = hutch(&rewrite_stdin_args(&input));
    assert_stdin_not_rewritten(&run, &input, "original\n");
}

#[test]
fn a_program_cannot_rewrite_a_file_redirected_to_hutchs_stdin() {
    let dir = TempDir::new("stdin-redirect");
    let input = dir.file("input", b"skipped\noriginal\n", 0o666);
    let mut file = fs::File::open(&input).unwrap();
    // The program gets the input from where hutch's own offset stands.
    std::io::Read::read_exact(&mut file, &mut [0; 8]).unwrap();
    let run: Run = hutch_command(HUTCH, &["run", "--quiet", "--", "sh", "-c", REWRITE_STDIN])
        .stdin(file)
        .output()
        .unwrap()
        .into();
    assert_stdin_not_rewritten(&run, &input, "skipped\noriginal\n");
}

#[test]
fn unprivileged_program_cannot_rewrite_its_callers_stdin_file() {
    // Rootless, the program runs as the caller, who owns the input.
    let dir = TempDir::new("nobody-stdin");
    let input = dir.file("input", b"original\n", 0o644);
    std::os::unix::fs::chown(&input, Some(NOBODY), Some(NOBODY)).unwrap();
    let run = hutch_as_nobody(&rewrite_stdin_args(&input));
    assert_stdin_not_rewritten(&run, &input, "original\n");
}
