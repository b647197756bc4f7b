//! The outcome of a run: the JSON report and the summary line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use hutch_host::protocol::{ExecResult, Status, Termination};
use serde::Serialize;

use crate::copy_out::CopiedOut;
use crate::error::CliError;

/// The JSON report, one object.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The verdict: `ok`, `nonzero-exit`, …, `runner-error`.
    pub status: &'static str,
    /// The program's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, when one did.
    pub signal: Option<i32>,
    /// User plus system CPU time.
    pub cpu_time_ns: u64,
    /// User CPU time.
    pub user_time_ns: u64,
    /// System CPU time.
    pub sys_time_ns: u64,
    /// Wall-clock time.
    pub wall_time_ns: u64,
    /// Peak memory.
    pub memory_bytes: u64,
    /// The most processes and threads alive at once; `null` where the
    /// kernel cannot tell (no cgroup, or Linux before 6.1).
    pub processes_peak: Option<u32>,
    /// What measured CPU time and memory; `null` when nothing ran.
    pub accounting: Option<&'static str>,
    /// Why the program did not run, or why hutch failed.
    pub error: Option<String>,
    /// The `--copy-out` files, in the order given.
    pub copy_out: Vec<CopyOutReport>,
}

/// One `--copy-out` file in the report.
#[derive(Debug, Serialize)]
pub struct CopyOutReport {
    /// The path in the container, relative to the work directory.
    pub path: String,
    /// The host path.
    pub destination: String,
    /// The bytes copied; `null` when it was not copied.
    pub bytes: Option<u64>,
    /// Why it was not copied.
    pub error: Option<String>,
}

impl Report {
    /// The report of a finished run and its copy-out.
    pub fn of_result(result: &ExecResult, copied: &[CopiedOut]) -> Self {
        let (exit_code, signal) = match result.termination {
            Termination::Exited(code) => (Some(code), None),
            Termination::Signalled(signal) => (None, Some(signal)),
            Termination::NotStarted => (None, None),
        };
        Self {
            status: result.status.as_str(),
            exit_code,
            signal,
            cpu_time_ns: result.cpu_time_ns(),
            user_time_ns: result.user_time_ns,
            sys_time_ns: result.system_time_ns,
            wall_time_ns: result.wall_time_ns,
            memory_bytes: result.memory_bytes,
            processes_peak: result.processes_peak,
            accounting: Some(result.accounting.as_str()),
            error: result.error.as_ref().map(|e| e.message.clone()),
            copy_out: copied
                .iter()
                .map(|copied| CopyOutReport {
                    path: copied.path.clone(),
                    destination: copied.destination.display().to_string(),
                    bytes: copied.outcome.as_ref().ok().copied(),
                    error: copied
                        .outcome
                        .as_ref()
                        .err()
                        .map(|e| hutch_host::error_chain(e)),
                })
                .collect(),
        }
    }

    /// The report of a run that hutch could not set up.
    pub fn of_failure(error: &CliError) -> Self {
        Self {
            status: Status::RunnerError.as_str(),
            exit_code: None,
            signal: None,
            cpu_time_ns: 0,
            user_time_ns: 0,
            sys_time_ns: 0,
            wall_time_ns: 0,
            memory_bytes: 0,
            processes_peak: None,
            accounting: None,
            error: Some(error.chain()),
            copy_out: Vec::new(),
        }
    }
}

/// Where the report goes, opened before the run so that a bad path fails
/// early.
#[derive(Debug)]
pub struct ReportSink {
    path: PathBuf,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// hutch's own standard output, written at its current position.
    Stdout,
    /// hutch's own standard error.
    Stderr,
    /// Anything else.
    File(File),
}

impl ReportSink {
    /// Opens `path` for the report. `/dev/stdout` and `/dev/stderr` are
    /// hutch's own descriptors: reopening them would start at offset 0 of a
    /// redirected file and overwrite the program's output. A regular file is
    /// truncated; anything else (a pipe, a terminal) is written as it is.
    pub fn open(path: &Path) -> Result<Self, CliError> {
        let target = if path == Path::new("/dev/stdout") {
            Target::Stdout
        } else if path == Path::new("/dev/stderr") {
            Target::Stderr
        } else {
            let error = |source| CliError::ReportOpen {
                path: path.into(),
                source,
            };
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(error)?;
            if file.metadata().map_err(error)?.is_file() {
                file.set_len(0).map_err(error)?;
            }
            Target::File(file)
        };
        Ok(Self {
            path: path.into(),
            target,
        })
    }

    /// Writes `report` as one line of JSON.
    pub fn write(self, report: &Report) -> Result<(), CliError> {
        let mut text = serde_json::to_vec(report).expect("a report always serialises");
        text.push(b'\n');
        let written = match self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&text).and_then(|()| out.flush())
            }
            Target::Stderr => std::io::stderr().lock().write_all(&text),
            Target::File(mut file) => file.write_all(&text),
        };
        written.map_err(|source| CliError::ReportWrite {
            path: self.path,
            source,
        })
    }
}

/// The one-line summary: `hutch: ok exit=0 cpu=1.234ms wall=3.456ms
/// memory=2.1MiB`.
pub fn summary(result: &ExecResult) -> String {
    use std::fmt::Write as _;
    let mut line = format!("hutch: {}", result.status);
    // Writing to a String cannot fail.
    let _ = match result.termination {
        Termination::Exited(code) => write!(line, " exit={code}"),
        Termination::Signalled(signal) => match signal_name(signal) {
            Some(name) => write!(line, " signal={signal} ({name})"),
            None => write!(line, " signal={signal}"),
        },
        Termination::NotStarted => Ok(()),
    };
    let _ = write!(
        line,
        " cpu={} wall={} memory={}",
        nanos(result.cpu_time_ns()),
        nanos(result.wall_time_ns),
        bytes(result.memory_bytes)
    );
    if let Some(error) = &result.error {
        let _ = write!(line, " error: {}", error.message);
    }
    line
}

/// `1.234ms`, `2.000s`, `850ns`.
pub fn nanos(ns: u64) -> String {
    let ns_f = ns as f64;
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.3}us", ns_f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.3}ms", ns_f / 1e6),
        _ => format!("{:.3}s", ns_f / 1e9),
    }
}

/// `512B`, `4.0KiB`, `2.1MiB`, `1.5GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_host::protocol::{Accounting, ErrorReply, Stage};

    fn result(status: Status, termination: Termination) -> ExecResult {
        ExecResult {
            status,
            termination,
            user_time_ns: 1_000_000,
            system_time_ns: 234_000,
            memory_bytes: 2_202_009,
            wall_time_ns: 3_456_000,
            accounting: Accounting::Rusage,
            error: None,
            processes_peak: None,
        }
    }

    #[test]
    fn summary_lines() {
        assert_eq!(
            summary(&result(Status::Ok, Termination::Exited(0))),
            "hutch: ok exit=0 cpu=1.234ms wall=3.456ms memory=2.1MiB"
        );
        assert_eq!(
            summary(&result(Status::TimeLimit, Termination::Signalled(24))),
            "hutch: time-limit signal=24 (SIGXCPU) cpu=1.234ms wall=3.456ms memory=2.1MiB"
        );
        let mut failed = result(Status::RunnerError, Termination::NotStarted);
        failed.error = Some(ErrorReply {
            stage: Stage::Execve,
            errno: 2,
            path: None,
            message: "program \"x\" not found".into(),
        });
        assert!(summary(&failed).starts_with("hutch: runner-error cpu="));
        assert!(summary(&failed).ends_with(" error: program \"x\" not found"));
    }

    #[test]
    fn units() {
        assert_eq!(nanos(999), "999ns");
        assert_eq!(nanos(1_500), "1.500us");
        assert_eq!(nanos(2_000_000_000), "2.000s");
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(4096), "4.0KiB");
        assert_eq!(bytes(3 << 30), "3.0GiB");
    }

    #[test]
    fn report_fields() {
        let copied = [
            CopiedOut {
                path: "a.out".into(),
                destination: "bin/a.out".into(),
                outcome: Ok(16),
            },
            CopiedOut {
                path: "big".into(),
                destination: "big".into(),
                outcome: Err(crate::copy_out::CopyOutError::TooLarge {
                    path: "big".into(),
                    size: 9,
                    limit: 8,
                }),
            },
        ];
        let report = Report::of_result(
            &result(Status::NonzeroExit, Termination::Exited(3)),
            &copied,
        );
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["copy_out"],
            serde_json::json!([
                {"path": "a.out", "destination": "bin/a.out", "bytes": 16, "error": null},
                {"path": "big", "destination": "big", "bytes": null,
                 "error": "cannot copy out big: it is 9 bytes, more than --copy-out-limit (8)"},
            ])
        );
        assert_eq!(json["status"], "nonzero-exit");
        assert_eq!(json["exit_code"], 3);
        assert!(json["signal"].is_null());
        assert_eq!(json["cpu_time_ns"], 1_234_000);
        assert_eq!(json["sys_time_ns"], 234_000);
        assert_eq!(json["accounting"], "rusage");
        assert!(json["error"].is_null());
    }
}
