//! `hutch run`: check the host side, start a container, copy files in, run
//! the program, report.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hutch_host::protocol::{ExecResult, Resource, Status};
use hutch_host::{ContainerBuilder, CopyInError, CopyInFile, ExecSpec, SealedInput};
use rustix::io::Errno;

use crate::args::RunArgs;
use crate::copy_out::{CopiedOut, copy_out};
use crate::error::{CliError, InContainer};
use crate::report::{Report, ReportSink, summary};

/// `--processes` when not given: Podman's default, far above what programs
/// need and far below what hosts have (`kernel.pid_max` is 32768 by default
/// on small machines, up to about four million on large ones), so that a
/// fork bomb stays inside.
const DEFAULT_PROCESS_LIMIT: u32 = 2048;

/// Exit status for a run whose verdict is `ok`.
const EXIT_OK: u8 = 0;
/// Exit status for any other verdict of the program.
const EXIT_VERDICT: u8 = 1;
/// Exit status when hutch failed or the program could not be started.
const EXIT_FAILURE: u8 = 2;

/// Runs `hutch run` and returns its exit status.
pub fn main(args: &RunArgs) -> ExitCode {
    let sink = match args.report.as_deref().map(ReportSink::open).transpose() {
        Ok(sink) => sink,
        Err(error) => return fail(&error),
    };
    let stop = match hutch_host::StopSignals::catch() {
        Ok(stop) => stop,
        Err(error) => return fail(&CliError::StopSignals(error)),
    };
    let outcome = execute(args, &stop);
    let code = match (outcome, stop.received()) {
        // Stopped before the verdict: the run was killed, and `execute`
        // dropped its container.
        (Err(_), Some(signal)) => {
            let error = CliError::Stopped {
                signal: signal_name(signal),
            };
            say!("hutch: {error}");
            if let Some(sink) = sink {
                let _ = sink.write(&Report::of_failure(&error));
            }
            ExitCode::from(EXIT_FAILURE)
        }
        (Ok((result, copied)), _) => {
            if !args.quiet {
                say!("{}", summary(&result));
            } else if result.status == Status::RunnerError {
                // --quiet drops the summary, not hutch's errors: the
                // program could not start, which exit status 2 tells.
                say!(
                    "hutch: error: {}",
                    result
                        .error
                        .as_ref()
                        .map_or("the program could not be started", |error| error
                            .message
                            .as_str())
                );
            }
            // A file the program did not leave as asked is a failure of
            // the program's (1), one hutch could not copy its own (2).
            let mut code = match result.status {
                Status::Ok => EXIT_OK,
                Status::RunnerError => EXIT_FAILURE,
                _ => EXIT_VERDICT,
            };
            for error in copied.iter().filter_map(|c| c.outcome.as_ref().err()) {
                say!("hutch: error: {}", hutch_host::error_chain(error));
                code = code.max(if error.is_hutchs() {
                    EXIT_FAILURE
                } else {
                    EXIT_VERDICT
                });
            }
            match sink.map(|sink| sink.write(&Report::of_result(&result, &copied))) {
                Some(Err(error)) => fail(&error),
                _ => ExitCode::from(code),
            }
        }
        (Err(error), None) => {
            let code = fail(&error);
            match sink.map(|sink| sink.write(&Report::of_failure(&error))) {
                Some(Err(error)) => fail(&error),
                _ => code,
            }
        }
    };
    // Asked to stop (also after the verdict): ended as the signal would
    // have ended hutch, once everything is cleaned up and reported.
    if let Some(signal) = stop.received() {
        stop.end_process(signal);
    }
    code
}

/// The name of a stop signal, for messages.
fn signal_name(signal: i32) -> &'static str {
    match rustix::process::Signal::from_named_raw(signal) {
        Some(rustix::process::Signal::INT) => "SIGINT",
        Some(rustix::process::Signal::TERM) => "SIGTERM",
        Some(rustix::process::Signal::HUP) => "SIGHUP",
        _ => "a signal",
    }
}

/// Prints `hutch: error: …` and returns the failure status.
pub fn fail(error: &CliError) -> ExitCode {
    say!("hutch: error: {}", error.chain());
    ExitCode::from(EXIT_FAILURE)
}

/// One file to copy in, checked and opened on the host.
struct Upload {
    source_path: PathBuf,
    file: File,
    mode: u32,
    /// Absolute path inside the container.
    destination: String,
}

fn execute(
    args: &RunArgs,
    stop: &hutch_host::StopSignals,
) -> Result<(ExecResult, Vec<CopiedOut>), CliError> {
    // Everything on the host side first, so that a mistake costs no
    // container.
    let stdio = Stdio::open(args)?;
    if let Some(destination) = first_repeated(args.copy_out.iter().map(|c| &c.destination)) {
        return Err(CliError::CopyOutTwice {
            destination: destination.clone(),
        });
    }
    crate::copy_out::check_destinations(&args.copy_out)
        .map_err(|(path, source)| CliError::CopyOutDestination { path, source })?;
    if let Some(destination) = first_repeated(args.copy_in.iter().map(|c| &c.destination)) {
        return Err(CliError::CopyInTwice {
            destination: destination.clone(),
        });
    }
    let uploads = args
        .copy_in
        .iter()
        .map(|copy| {
            let error = |source| CliError::CopyInSource {
                path: copy.source.clone(),
                source,
            };
            let file = File::open(&copy.source).map_err(error)?;
            let metadata = file.metadata().map_err(error)?;
            if !metadata.is_file() {
                return Err(CliError::CopyInNotFile {
                    path: copy.source.clone(),
                });
            }
            Ok(Upload {
                source_path: copy.source.clone(),
                file,
                mode: metadata.mode() & 0o7777,
                destination: format!("{}/{}", args.workdir, copy.destination),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut builder = args
        .container
        .apply(ContainerBuilder::new().workdir(&args.workdir));
    let mut targets = Vec::with_capacity(args.bind.len());
    for bind in &args.bind {
        let (source, target) = bind_paths(bind)?;
        builder = builder.bind(&source, &target, bind.writable);
        targets.push((bind, target));
    }
    check_builder(&builder, &targets, &args.workdir)?;
    let mut container = builder.build().map_err(|e| CliError::Start(Box::new(e)))?;
    // From here a stop signal kills init, which ends the run under way
    // (or, come during the build, the container at once), and the
    // container is dropped with its cgroups on the way out.
    let armed = stop.arm(&container).map_err(CliError::StopSignals)?;
    // Only a cgroup enforces these: a run measured by rusage (no cgroup
    // could be made, and --allow-rusage accepted that) would ignore them.
    let has_cgroup = container.cgroup_version().is_some();
    if !has_cgroup {
        let asked = [
            ("--memory", args.memory.is_some()),
            ("--processes", args.processes.is_some()),
        ];
        if let Some((flag, _)) = asked.into_iter().find(|(_, given)| *given) {
            return Err(CliError::LimitNeedsCgroup { flag });
        }
    }
    if !uploads.is_empty() {
        copy_in(&mut container, &uploads)?;
    }

    let mut spec = ExecSpec::new(args.argv()).stdio(
        stdio.stdin.as_fd(),
        stdio.stdout.as_fd(),
        stdio.stderr.as_fd(),
    );
    for var in &args.env {
        spec = spec.env(&var.key, &var.value);
    }
    if let Some(time) = args.time {
        spec = spec.cpu_time(time);
    }
    if let Some(wall) = args.effective_wall_time() {
        spec = spec.wall_time(wall);
    }
    if let Some(bytes) = args.output {
        spec = spec.output_limit(bytes);
    }
    if let Some(bytes) = args.memory {
        spec = spec.memory_limit(bytes);
    }
    // The default only where a cgroup enforces it (checked above for one
    // given).
    let processes = args
        .processes
        .or(has_cgroup.then_some(DEFAULT_PROCESS_LIMIT));
    if let Some(count) = processes {
        spec = spec.process_limit(count);
    }
    if let Some(bytes) = args.stack {
        spec = spec.rlimit(Resource::Stack, bytes, bytes);
    }
    if let Some(count) = args.open_files {
        spec = spec.rlimit(Resource::Nofile, count, count);
    }
    spec = spec.seccomp(args.seccomp.program.clone());
    let run = container
        .start(&spec)
        .map_err(|e| CliError::Exec(Box::new(e)))?;
    // While the program runs: remove the cgroups of earlier hutch processes
    // killed by SIGKILL (a caller's timeout, say), which nothing else
    // would. Best effort: a failure here is no failure of this run.
    let _ = builder.remove_stale_cgroups();
    let result = run.wait().map_err(|e| CliError::Exec(Box::new(e)))?;
    let copied = copy_out(&mut container, &args.copy_out, args.copy_out_limit);
    drop(armed);
    // hutch exits right after: the kernel finishes tearing the container
    // down while it reports.
    container.destroy_without_waiting();
    Ok((result, copied))
}

/// The first item that comes again.
fn first_repeated<'a, T: std::hash::Hash + Eq + 'a>(
    items: impl Iterator<Item = &'a T>,
) -> Option<&'a T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().find(|item| !seen.insert(*item))
}

/// A `--bind`'s host path, resolved (symbolic links and all), and its path
/// in the container: the one given, else the host path as resolved.
pub(crate) fn bind_paths(bind: &crate::args::Bind) -> Result<(String, String), CliError> {
    let source = std::fs::canonicalize(&bind.source).map_err(|source| CliError::BindSource {
        path: bind.source.clone(),
        source,
    })?;
    let source = utf8("--bind source", &source)?.to_owned();
    let target = bind.target.clone().unwrap_or_else(|| source.clone());
    Ok((source, target))
}

/// What `builder` would refuse before it starts anything, told by the flag
/// that asked for it: a `--bind` (of `binds`, each with its target) or the
/// `--workdir` that collides with the container's own mounts.
pub(crate) fn check_builder(
    builder: &ContainerBuilder,
    binds: &[(&crate::args::Bind, String)],
    workdir: &str,
) -> Result<(), CliError> {
    builder.check().map_err(|error| match &error {
        hutch_host::BuildError::MountTarget { target, .. } => CliError::Refused {
            flag: "--bind",
            value: binds
                .iter()
                .find(|(_, t)| t == target)
                .map_or_else(|| target.clone(), |(bind, _)| bind.to_string()),
            source: Box::new(error),
        },
        hutch_host::BuildError::Workdir { .. } => CliError::Refused {
            flag: "--workdir",
            value: workdir.to_owned(),
            source: Box::new(error),
        },
        _ => CliError::Start(Box::new(error)),
    })
}

fn utf8<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, CliError> {
    path.to_str().ok_or_else(|| CliError::NotUtf8 {
        what,
        path: path.into(),
    })
}

/// Copies every upload in, in as few requests as the frame allows: init
/// creates each destination (and its missing directories) as the user
/// programs run as, with the source's permission bits, and fills it from
/// the host file's descriptor itself.
fn copy_in(container: &mut hutch_host::Container, uploads: &[Upload]) -> Result<(), CliError> {
    let files: Vec<CopyInFile<'_, '_>> = uploads
        .iter()
        .map(|upload| CopyInFile {
            path: &upload.destination,
            mode: upload.mode,
            source: upload.file.as_fd(),
        })
        .collect();
    let results = container
        .copy_in(&files)
        .map_err(|e| CliError::CopyInRequest(Box::new(e)))?;
    for (upload, result) in uploads.iter().zip(results) {
        result.map_err(|error| match error {
            CopyInError::Create(error) => CliError::CopyInCreate {
                source_path: upload.source_path.clone(),
                destination: upload.destination.clone(),
                source: InContainer(error.message),
            },
            CopyInError::Fill(error) => CliError::CopyInWrite {
                source_path: upload.source_path.clone(),
                destination: upload.destination.clone(),
                source: InContainer(error.message),
            },
        })?;
    }
    Ok(())
}

/// The program's descriptors 0, 1 and 2.
struct Stdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl Stdio {
    fn open(args: &RunArgs) -> Result<Self, CliError> {
        let stdin = match &args.stdin {
            Some(path) => match own_stream(path) {
                Some(fd) => fd?,
                None => File::open(path)
                    .map(OwnedFd::from)
                    .map_err(|source| CliError::Stdin {
                        path: path.clone(),
                        source,
                    })?,
            },
            None => own(std::io::stdin().as_fd(), "input", false)?,
        };
        let stdin = sealed_if_file(stdin, args.stdin.as_deref())?;
        let stdout = match &args.stdout {
            Some(path) => create("--stdout", path)?,
            None => own(std::io::stdout().as_fd(), "output", true)?,
        };
        let stderr = match &args.stderr {
            // One file for both: one open file description, so that the
            // two streams interleave instead of overwriting each other.
            Some(path) if args.stdout.as_ref() == Some(path) => {
                stdout.try_clone().map_err(|source| CliError::Output {
                    flag: "--stderr",
                    path: path.clone(),
                    source,
                })?
            }
            Some(path) => create("--stderr", path)?,
            None => own(std::io::stderr().as_fd(), "error", true)?,
        };
        Ok(Self {
            stdin,
            stdout,
            stderr,
        })
    }
}

/// The input as a sealed in-memory copy when it is a regular file; any
/// other kind (a pipe, a terminal, `/dev/null`) as it is.
///
/// The program could otherwise open the file itself through
/// `/proc/self/fd/0` and rewrite it whenever its user may write the file: a
/// rootless program runs as the caller, who usually owns the input.
fn sealed_if_file(stdin: OwnedFd, path: Option<&Path>) -> Result<OwnedFd, CliError> {
    let is_file = rustix::fs::fstat(&stdin)
        .map(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file())
        .unwrap_or(false);
    if !is_file {
        return Ok(stdin);
    }
    SealedInput::from_reader(&mut File::from(stdin))
        .map(OwnedFd::from)
        .map_err(|source| CliError::StdinCopy {
            path: path.map_or_else(
                || "standard input".into(),
                |path| path.display().to_string(),
            ),
            source,
        })
}

fn create(flag: &'static str, path: &Path) -> Result<OwnedFd, CliError> {
    if let Some(fd) = own_stream(path) {
        return fd;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| CliError::Output {
            flag,
            path: path.into(),
            source,
        })
}

/// hutch's own descriptor for `/dev/stdin`, `/dev/stdout` and
/// `/dev/stderr`. Opening those names anew would give a separate open file
/// description, starting at offset 0 of a redirected file (and truncating
/// it), so that the program's output and hutch's own would overwrite each
/// other.
fn own_stream(path: &Path) -> Option<Result<OwnedFd, CliError>> {
    if path == Path::new("/dev/stdin") {
        Some(own(std::io::stdin().as_fd(), "input", false))
    } else if path == Path::new("/dev/stdout") {
        Some(own(std::io::stdout().as_fd(), "output", true))
    } else if path == Path::new("/dev/stderr") {
        Some(own(std::io::stderr().as_fd(), "error", true))
    } else {
        None
    }
}

/// A copy of one of hutch's own standard descriptors; `/dev/null` when
/// hutch was started with it closed.
fn own(fd: BorrowedFd<'_>, which: &'static str, write: bool) -> Result<OwnedFd, CliError> {
    match fd.try_clone_to_owned() {
        Ok(fd) => Ok(fd),
        Err(error) if error.raw_os_error() == Some(Errno::BADF.raw_os_error()) => {
            OpenOptions::new()
                .read(!write)
                .write(write)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|source| CliError::OwnStdio { which, source })
        }
        Err(source) => Err(CliError::OwnStdio { which, source }),
    }
}
