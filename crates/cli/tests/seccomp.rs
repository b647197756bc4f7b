//! `hutch run --seccomp`: the real binary, real containers. The test
//! program is compiled with `cc` when the tests run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

const HUTCH: &str = env!("CARGO_BIN_EXE_hutch");
/// SIGSYS on x86_64, what a seccomp kill delivers.
const SIGSYS: i64 = 31;

/// Calls ptrace(PTRACE_TRACEME) and says how it went; with `eperm`, exits
/// 0 only if the call failed with EPERM.
const PTRACE_C: &str = r#"#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>

int main(int argc, char **argv) {
    long ret = ptrace(PTRACE_TRACEME, 0, 0, 0);
    int error = ret < 0 ? errno : 0;
    printf("ptrace returned %ld errno %d\n", ret, error);
    if (argc > 1 && !strcmp(argv[1], "eperm"))
        return ret == -1 && error == EPERM ? 0 : 3;
    return 0;
}
"#;

/// A directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hutch-cli-seccomp-test-{}-{}-{name}",
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

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The compiled ptrace program, built once per test process.
fn ptrace_program() -> &'static [u8] {
    static PROGRAM: OnceLock<Vec<u8>> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let dir = TempDir::new("build");
        let source = dir.file("ptrace.c", PTRACE_C);
        let binary = dir.path().join("ptrace");
        let output = Command::new("cc")
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .output()
            .expect("cannot run cc to build the test program");
        assert!(
            output.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        fs::read(&binary).unwrap()
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `hutch run --quiet --report /dev/stdout EXTRA --copy-in ptrace --
/// ./ptrace ARGS...`.
fn run_ptrace(extra: &[&str], args: &[&str]) -> Run {
    let dir = TempDir::new("program");
    let binary = dir.path().join("ptrace");
    fs::write(&binary, ptrace_program()).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(HUTCH);
    command
        .args([
            "run",
            "--quiet",
            "--report",
            "/dev/stdout",
            "--wall-time",
            "30s",
        ])
        .args(extra)
        .arg("--copy-in")
        .arg(&binary)
        .args(["--", "./ptrace"])
        .args(args)
        .stdin(Stdio::null());
    let output = command.output().unwrap();
    let code = output.status.code().unwrap_or_else(|| {
        panic!("hutch died of signal {:?}", output.status.signal());
    });
    Run {
        code,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Run {
    /// The program's output, and the report on the last line.
    fn split(&self) -> (&str, Value) {
        let text = self.stdout.trim_end_matches('\n');
        let (program, report) = text.rsplit_once('\n').unwrap_or(("", text));
        let report = serde_json::from_str(report).unwrap_or_else(|e| {
            panic!(
                "no report ({e}); stdout: {}\nstderr: {}",
                self.stdout, self.stderr
            )
        });
        (program, report)
    }
}

#[test]
fn ptrace_is_a_disallowed_syscall_by_default() {
    for extra in [&[][..], &["--seccomp", "default"]] {
        let run = run_ptrace(extra, &[]);
        let (output, report) = run.split();
        assert_eq!(run.code, 1, "{extra:?}: {}", run.stderr);
        assert_eq!(
            report["status"], "disallowed-syscall",
            "{extra:?}: {report}"
        );
        assert_eq!(report["signal"], SIGSYS, "{report}");
        assert_eq!(output, "", "the program went on after ptrace: {output}");
    }
}

#[test]
fn seccomp_none_lets_ptrace_run() {
    let run = run_ptrace(&["--seccomp", "none"], &[]);
    let (output, report) = run.split();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report["status"], "ok", "{report}");
    assert!(output.starts_with("ptrace returned "), "{output}");
}

#[test]
fn a_policy_file_sets_an_errno() {
    let dir = TempDir::new("policy");
    let policy = dir.file(
        "eperm.json",
        r#"{
  "default_action": "allow",
  "rules": [{ "syscall": "ptrace", "action": "errno", "errno": 1 }]
}"#,
    );
    let run = run_ptrace(&["--seccomp", &policy], &["eperm"]);
    let (output, report) = run.split();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(output, "ptrace returned -1 errno 1");

    // Everything but write fails with ENOSYS, execve included: the program
    // cannot start, and the exec's failure is reported.
    let policy = dir.file(
        "enosys.json",
        r#"{"default_action": {"errno": 38}, "rules": [{"syscall": "write", "action": "allow"}]}"#,
    );
    let run = run_ptrace(&["--seccomp", &policy], &[]);
    let (_, report) = run.split();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(report["status"], "runner-error", "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot execute") && error.contains("os error 38"),
        "{report}"
    );
}

/// A bad `--seccomp` is a usage error: exit 2, a message naming the file,
/// and no container.
#[test]
fn bad_policy_files_are_usage_errors_naming_the_file() {
    let dir = TempDir::new("bad");
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    let not_json = dir.file("not-json.json", "{\"default_action\": \"allow\",");
    let unknown = dir.file(
        "unknown.json",
        r#"{"default_action": "allow", "rules": [{"syscall": "ptraec", "action": "kill"}]}"#,
    );
    let bad_action = dir.file("action.json", r#"{"default_action": "deny"}"#);
    let cases = [
        (missing, "cannot read the seccomp policy file".to_owned()),
        (
            not_json.as_str(),
            format!("the seccomp policy file {not_json} is not a valid policy: EOF while parsing"),
        ),
        (
            unknown.as_str(),
            format!(
                "unknown system call \"ptraec\" in rules[0] of the seccomp policy file {unknown}"
            ),
        ),
        (
            bad_action.as_str(),
            format!(
                "default_action of the seccomp policy file {bad_action}: unknown action \"deny\""
            ),
        ),
    ];
    for (path, expected) in cases {
        let run = run_ptrace(&["--seccomp", path], &[]);
        assert_eq!(run.code, 2, "{path}: {}", run.stderr);
        assert!(run.stderr.contains(path), "{path}: {}", run.stderr);
        assert!(
            run.stderr.contains(&expected),
            "{path}: expected {expected:?} in {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{path}: nothing ran");
    }
}
