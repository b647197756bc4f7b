//! [`Job`]: several commands run together, each in a container of its own,
//! with files copied in and out, outputs collected, and descriptors of
//! different commands joined by pipes.
//!
//! See [`Job`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hutch_protocol::{ExecResult, ItemError, MAX_FDS_PER_FRAME, Status, SymlinkItem, Termination};
use rustix::io::Errno;

use crate::container::{Container, ContainerError, CopyInError, CopyInFile, Killer, PeerWatch};
use crate::exec::ExecSpec;
use crate::input::SealedInput;
use crate::pool::{Pool, PoolError};
use crate::store::FileStore;

/// The largest file a copy-out reads by default: 64 MiB.
pub const DEFAULT_COPY_OUT_LIMIT: u64 = 64 << 20;

/// The most descriptors a program of a job gets (fds `0..MAX_JOB_FDS`).
pub const MAX_JOB_FDS: usize = MAX_FDS_PER_FRAME - 1;

/// Where a file's content comes from, for a copy-in or a program's input.
#[derive(Debug, Clone)]
pub enum Source {
    /// These bytes.
    Bytes(Arc<[u8]>),
    /// The host file at this path, opened when the command runs; a
    /// regular file (a FIFO or device is an error).
    Path(PathBuf),
    /// The file of this id in the job's [`FileStore`].
    Stored(String),
    /// This open file of the caller's, read from offset 0 whatever the
    /// caller's offset (a regular file is opened again for reading, so
    /// runs leave the caller's offset where it was); a pipe or socket is
    /// read from where it is.
    File(Arc<File>),
}

impl From<Vec<u8>> for Source {
    fn from(bytes: Vec<u8>) -> Self {
        Source::Bytes(bytes.into())
    }
}

impl From<&[u8]> for Source {
    fn from(bytes: &[u8]) -> Self {
        Source::Bytes(bytes.into())
    }
}

impl From<String> for Source {
    /// The string's bytes.
    fn from(text: String) -> Self {
        Source::Bytes(text.into_bytes().into())
    }
}

impl From<&str> for Source {
    /// The string's bytes.
    fn from(text: &str) -> Self {
        Source::Bytes(text.as_bytes().into())
    }
}

impl Source {
    /// What names the source in a file error.
    fn describe(&self) -> String {
        match self {
            Source::Bytes(bytes) => format!("{} bytes of content", bytes.len()),
            Source::Path(path) => path.display().to_string(),
            Source::Stored(id) => format!("stored file {id}"),
            Source::File(_) => "a file of the caller's".into(),
        }
    }
}

/// What one of a program's descriptors is.
#[derive(Debug, Clone)]
pub enum Stream {
    /// `/dev/null`.
    Null,
    /// An input the program reads.
    Input(Source),
    /// Output collected under a name.
    Collect(Collector),
    /// An end of a pipe of the job ([`Job::pipe`]): a placeholder the pipe
    /// fills.
    Piped,
    /// A descriptor of the caller's, passed as it is.
    Fd(Arc<OwnedFd>),
}

impl Stream {
    /// Output collected in memory under `name`, up to `max` bytes (an
    /// in-memory file, neither a pipe nor the file store; see
    /// [`Collector`]).
    pub fn collect(name: impl Into<String>, max: u64) -> Self {
        Stream::Collect(Collector {
            name: name.into(),
            max,
            pipe: false,
            store: false,
        })
    }
}

/// Collects what a program writes to a descriptor, up to `max` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    /// The name the output goes under in [`CommandResult::files`] (or
    /// [`CommandResult::stored`]). Descriptors with one name share one
    /// collector.
    pub name: String,
    /// The most bytes kept; more is an output-limit verdict.
    pub max: u64,
    /// Through a pipe the host reads while the program runs, which stops the
    /// run as soon as it writes more than `max`, instead of an in-memory
    /// file read after the run. A pipe is what a program that checks what
    /// its output is (`isatty`, `fstat`) sees of a judge's pipe.
    ///
    /// What a program writes into an in-memory file is memory charged to
    /// its run, and counts towards its memory limit and peak; a pipe's is
    /// not. The host looks at an in-memory file's size while the program
    /// runs and stops the run soon after it passes `max`, so an endless
    /// writer is stopped for its output, not its memory.
    pub pipe: bool,
    /// Into the job's [`FileStore`] instead of memory.
    pub store: bool,
}

/// What a copied-in file is.
#[derive(Debug, Clone)]
pub enum CopyInContent {
    /// A file with this content.
    File(Source),
    /// A symbolic link to this target.
    Symlink(String),
}

/// A file to put into a command's container before it runs.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// Where: relative to the work directory, or absolute (inside the
    /// container: only its writable mounts take files). Missing parent
    /// directories are made.
    pub path: String,
    /// What it is.
    pub content: CopyInContent,
    /// Permission bits of a file (a link has none).
    pub mode: u32,
}

impl CopyIn {
    /// A file at `path` with the content of `source`, mode `0o755` (a
    /// compiled program copied in runs as it is).
    pub fn file(path: impl Into<String>, source: Source) -> Self {
        Self {
            path: path.into(),
            content: CopyInContent::File(source),
            mode: 0o755,
        }
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            content: CopyInContent::Symlink(target.into()),
            mode: 0o777,
        }
    }
}

/// A file to read out of a command's container after it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// Which: relative to the work directory, or absolute. It is also the
    /// name the content goes under in the result.
    pub path: String,
    /// A missing file is no error.
    pub optional: bool,
    /// Into the job's [`FileStore`] instead of memory.
    pub store: bool,
}

impl CopyOut {
    /// The file at `path`, into memory.
    pub fn file(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            optional: false,
            store: false,
        }
    }
}

/// One command of a [`Job`].
#[derive(Debug, Clone)]
pub struct Command {
    spec: ExecSpec<'static>,
    streams: Vec<Stream>,
    copy_in: Vec<CopyIn>,
    copy_out: Vec<CopyOut>,
    copy_out_limit: u64,
    copy_out_truncate: bool,
}

impl Command {
    /// A command running `spec` (its arguments, environment and limits;
    /// any descriptors it has are replaced by the command's streams), with
    /// no descriptors yet.
    pub fn new(spec: ExecSpec<'static>) -> Self {
        Self {
            spec,
            streams: Vec::new(),
            copy_in: Vec::new(),
            copy_out: Vec::new(),
            copy_out_limit: DEFAULT_COPY_OUT_LIMIT,
            copy_out_truncate: false,
        }
    }

    /// Gives the program `stream` as its next descriptor: the first call
    /// sets fd 0, the next fd 1, and so on.
    pub fn stream(mut self, stream: Stream) -> Self {
        self.streams.push(stream);
        self
    }

    /// Copies a file in before the program runs.
    pub fn copy_in(mut self, file: CopyIn) -> Self {
        self.copy_in.push(file);
        self
    }

    /// Copies a file out after the program ran.
    pub fn copy_out(mut self, file: CopyOut) -> Self {
        self.copy_out.push(file);
        self
    }

    /// Sets the largest file a copy-out reads ([`DEFAULT_COPY_OUT_LIMIT`]
    /// by default). A larger file is a
    /// [`FileErrorKind::CopyOutSizeExceeded`]; with `truncate`, its first
    /// `limit` bytes are kept as well.
    pub fn copy_out_limit(mut self, limit: u64, truncate: bool) -> Self {
        self.copy_out_limit = limit;
        self.copy_out_truncate = truncate;
        self
    }

    /// The program, its limits and environment.
    pub fn spec(&self) -> &ExecSpec<'static> {
        &self.spec
    }
}

/// One end of a pipe: a descriptor of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipeEnd {
    /// The command's index in the job.
    pub command: usize,
    /// The program's descriptor.
    pub fd: usize,
}

/// A pipe from one command's descriptor to another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipe {
    /// The descriptor written to.
    pub writer: PipeEnd,
    /// The descriptor read from.
    pub reader: PipeEnd,
    /// Relay through the host, recording what passes.
    pub proxy: Option<Proxy>,
}

/// A pipe relayed by the host: two pipes and a thread that copies from one
/// to the other, keeping the first `max` bytes under `name` in the writer's
/// result. When the reader is gone, the rest of what the writer writes is
/// read and dropped, so the writer never blocks on a dead reader.
///
/// The name is one file of the writer's results: a collector of the writer
/// or another proxy of it may not have it too ([`JobError::NameTaken`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The name the recorded bytes go under in the writer's
    /// [`CommandResult::files`] (or [`CommandResult::stored`]); `None`
    /// records nothing.
    pub name: Option<String>,
    /// The most bytes recorded (the relay goes on past it).
    pub max: u64,
    /// Into the job's [`FileStore`] instead of memory.
    pub store: bool,
}

/// Several commands run together, each in a container of its own.
///
/// A job is what a judge asks for: compile a program and keep the binary
/// ([`CopyOut::store`]), run it on a test with its output collected
/// ([`Stream::Collect`]), or run a solution and an interactor with each one's
/// output feeding the other's input ([`Job::pipe`]). For each command, in
/// order:
///
/// 1. **Copy in.** Every [`CopyIn`] file is created by the container's init,
///    which fills it from a descriptor of the host's
///    ([`Container::copy_in`]); then the symbolic links are made. A failure
///    is a [`Verdict::FileError`] and the command does not run.
/// 2. **Descriptors.** Each of the program's descriptors gets its
///    [`Stream`]: an input (sealed where the program could otherwise reopen
///    the file for writing), a collector (an in-memory file, or a pipe the
///    host reads), an end of one of the job's pipes, or one of the caller's.
/// 3. **Run.** The program is started; the host closes its own copies of
///    the pipe ends at once, so that when one command ends, the command at
///    the other end of each of its pipes sees end of file or `EPIPE`. Every
///    command runs under its own limits; the wall-clock limit of each ends
///    it whatever the others do.
/// 4. **Collect and copy out.** Collected output is read back (more than a
///    collector's `max` is an [`Verdict::OutputLimit`] when the program
///    exited with 0 or was stopped by the host for it; a collector over a
///    pipe kills the run the moment it passes `max`, and one in memory
///    soon after: see [`Run::wait_capping`](crate::Run::wait_capping); a
///    program that ended otherwise on its own keeps its verdict, the
///    collector's file error beside it), and every
///    [`CopyOut`] file is opened by init, never through a symbolic link,
///    and read, up to [`Command::copy_out_limit`].
///
/// All commands of a job start together, on a thread each; a job of one
/// command runs on the caller's thread.
///
/// ```no_run
/// use hutch_host::{Command, ContainerBuilder, ExecSpec, Job, Pool, PipeEnd, Stream};
///
/// let pool = Pool::new(ContainerBuilder::new(), 2);
/// let mut job = Job::new();
/// let producer = job.command(Command::new(ExecSpec::new(["seq", "1000"]))
///     .stream(Stream::Null).stream(Stream::Piped));
/// let consumer = job.command(Command::new(ExecSpec::new(["wc", "-l"]))
///     .stream(Stream::Piped).stream(Stream::collect("stdout", 1 << 20)));
/// job.pipe(PipeEnd { command: producer, fd: 1 }, PipeEnd { command: consumer, fd: 0 });
/// let results = job.run(&pool)?;
/// assert_eq!(results[1].files["stdout"], b"1000\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Job {
    commands: Vec<Command>,
    pipes: Vec<Pipe>,
    store: Option<FileStore>,
}

/// Why a job could not run at all. Everything that goes wrong with one
/// command (a file, its container) is in that command's
/// [`CommandResult`] instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A job needs a command.
    #[error("the job has no command")]
    Empty,
    /// A pipe names a command the job does not have.
    #[error("pipe {pipe} names command {command}, but the job has {commands}")]
    PipeCommand {
        /// The pipe's index.
        pipe: usize,
        /// The command it names.
        command: usize,
        /// How many commands the job has.
        commands: usize,
    },
    /// A pipe uses a descriptor that is not free for it: given another
    /// stream, or used by another pipe.
    #[error("pipe {pipe} uses fd {fd} of command {command}, which already has a stream")]
    FdTaken {
        /// The pipe's index.
        pipe: usize,
        /// The command.
        command: usize,
        /// The descriptor.
        fd: usize,
    },
    /// A descriptor above the most a program gets.
    #[error("command {command} uses fd {fd}; a program gets at most {MAX_JOB_FDS} descriptors")]
    FdTooHigh {
        /// The command.
        command: usize,
        /// The descriptor.
        fd: usize,
    },
    /// A descriptor below the highest one used has no stream, or a
    /// [`Stream::Piped`] placeholder no pipe fills.
    #[error("fd {fd} of command {command} is given no stream and no pipe")]
    Unfilled {
        /// The command.
        command: usize,
        /// The descriptor.
        fd: usize,
    },
    /// A stored file is read or written, but the job has no store.
    #[error("command {command} uses stored files, but the job has no file store")]
    NoStore {
        /// The command.
        command: usize,
    },
    /// A proxy records under a name its writer's results already give: a
    /// collector's of the writer, or an earlier proxy's of the same
    /// writer.
    #[error("pipe {pipe} records under {name:?}, which command {command} already gives {taken_by}")]
    NameTaken {
        /// The proxied pipe's index.
        pipe: usize,
        /// Its writer.
        command: usize,
        /// The name.
        name: String,
        /// What has the name: `a collector`, or `pipe N`.
        taken_by: String,
    },
    /// A copy-out's path is a name the command's results already have in
    /// the same place (its files, or the store): a collector's, a proxy's
    /// of its pipes, or an earlier copy-out's.
    #[error("command {command} copies out {name:?}, a name its {taken_by} already has")]
    CopyOutNameTaken {
        /// The command.
        command: usize,
        /// The name.
        name: String,
        /// What has it: `collector`, `pipe N`'s record, or `copy-out`.
        taken_by: String,
    },
    /// Two descriptors of a command share a collector's name with
    /// different settings (`max`, `pipe`, `store`), so which to keep is
    /// unclear.
    #[error("command {command} has two collectors named {name:?} with different settings")]
    CollectorMismatch {
        /// The command.
        command: usize,
        /// The name.
        name: String,
    },
    /// [`Job::run_in`] was given another number of containers than the job
    /// has commands.
    #[error("the job has {commands} commands but was given {containers} containers")]
    Containers {
        /// How many commands.
        commands: usize,
        /// How many containers.
        containers: usize,
    },
    /// The job's pipes could not be made.
    #[error("cannot create the job's pipes")]
    Pipe(#[source] std::io::Error),
    /// No containers could be had from the pool.
    #[error("cannot get containers for the job")]
    Pool(#[source] PoolError),
}

/// The verdict of one command of a job: a program's verdict, or what kept
/// it from running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Exited with code 0 within every limit.
    Ok,
    /// Exited with a non-zero code.
    NonzeroExit,
    /// Killed by a signal no limit explains.
    Signalled,
    /// Used more CPU time than allowed.
    TimeLimit,
    /// Ran longer than the wall-clock limit.
    WallTimeLimit,
    /// Used more memory than allowed.
    MemoryLimit,
    /// Wrote a file larger than allowed, or more than a collector's `max`
    /// (then exited with 0, or was stopped for it).
    OutputLimit,
    /// Made a system call the seccomp policy forbids.
    DisallowedSyscall,
    /// Could not be started (not found, not executable), or its exec
    /// request was refused before it reached the container (an empty
    /// command line, limits that contradict each other, more than a frame
    /// holds); see [`CommandResult::error`]. The container stays usable. A
    /// copy-in no request may carry (a path with a NUL or a `..`) is a
    /// [`FileError`](Verdict::FileError) of its own instead.
    RunnerError,
    /// A file could not be copied in (the program did not run), or, after a
    /// run that was otherwise `Ok`, a file could not be copied out; see
    /// [`CommandResult::file_errors`].
    FileError,
    /// The container failed (its init died or did not answer); see
    /// [`CommandResult::error`].
    ContainerFailed,
    /// The job was cancelled ([`Cancel`]) before the command started.
    Cancelled,
}

impl Verdict {
    /// The kebab-case name: `ok`, `file-error`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::FileError => "file-error",
            Verdict::ContainerFailed => "container-failed",
            Verdict::Cancelled => "cancelled",
            other => match other.status() {
                Some(status) => status.as_str(),
                None => "unknown",
            },
        }
    }

    /// The program's verdict this is, if it is one.
    pub const fn status(self) -> Option<Status> {
        Some(match self {
            Verdict::Ok => Status::Ok,
            Verdict::NonzeroExit => Status::NonzeroExit,
            Verdict::Signalled => Status::Signalled,
            Verdict::TimeLimit => Status::TimeLimit,
            Verdict::WallTimeLimit => Status::WallTimeLimit,
            Verdict::MemoryLimit => Status::MemoryLimit,
            Verdict::OutputLimit => Status::OutputLimit,
            Verdict::DisallowedSyscall => Status::DisallowedSyscall,
            Verdict::RunnerError => Status::RunnerError,
            Verdict::FileError | Verdict::ContainerFailed | Verdict::Cancelled => return None,
        })
    }
}

impl From<Status> for Verdict {
    fn from(status: Status) -> Self {
        match status {
            Status::Ok => Verdict::Ok,
            Status::NonzeroExit => Verdict::NonzeroExit,
            Status::Signalled => Verdict::Signalled,
            Status::TimeLimit => Verdict::TimeLimit,
            Status::WallTimeLimit => Verdict::WallTimeLimit,
            Status::MemoryLimit => Verdict::MemoryLimit,
            Status::OutputLimit => Verdict::OutputLimit,
            Status::DisallowedSyscall => Verdict::DisallowedSyscall,
            Status::RunnerError => Verdict::RunnerError,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which step of a file's way in or out failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileErrorKind {
    /// The source of a copy-in or an input could not be opened.
    CopyInOpenFile,
    /// A copied-in file or its directory could not be created.
    CopyInCreateFile,
    /// A copied-in file could not be filled (a full file system).
    CopyInCopyContent,
    /// A copy-out file could not be opened: missing, say.
    CopyOutOpen,
    /// A copy-out path is a symbolic link (or passes through one), a FIFO,
    /// a device, a socket or a directory.
    CopyOutNotRegularFile,
    /// A copy-out file is larger than the copy-out limit.
    CopyOutSizeExceeded,
    /// The file store could not take a copied-out file.
    CopyOutCreateFile,
    /// A copy-out file could not be read.
    CopyOutCopyContent,
    /// A collector got more than its `max`.
    CollectSizeExceeded,
    /// A symbolic link could not be made.
    Symlink,
}

impl FileErrorKind {
    /// The name, as go-judge spells it (`CopyInOpenFile`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            FileErrorKind::CopyInOpenFile => "CopyInOpenFile",
            FileErrorKind::CopyInCreateFile => "CopyInCreateFile",
            FileErrorKind::CopyInCopyContent => "CopyInCopyContent",
            FileErrorKind::CopyOutOpen => "CopyOutOpen",
            FileErrorKind::CopyOutNotRegularFile => "CopyOutNotRegularFile",
            FileErrorKind::CopyOutSizeExceeded => "CopyOutSizeExceeded",
            FileErrorKind::CopyOutCreateFile => "CopyOutCreateFile",
            FileErrorKind::CopyOutCopyContent => "CopyOutCopyContent",
            FileErrorKind::CollectSizeExceeded => "CollectSizeExceeded",
            FileErrorKind::Symlink => "Symlink",
        }
    }
}

/// A file that could not go in or come out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file: its path, or a collector's name.
    pub name: String,
    /// Which step failed.
    pub kind: FileErrorKind,
    /// What went wrong.
    pub message: String,
}

/// What came of one command of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The verdict.
    pub verdict: Verdict,
    /// The run's own result (times, memory, how it ended); `None` when the
    /// program never ran.
    pub exec: Option<ExecResult>,
    /// Collected output and copied-out files, by name.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Output and files put into the job's store: name → file id.
    pub stored: BTreeMap<String, String>,
    /// Files that could not go in or come out.
    pub file_errors: Vec<FileError>,
    /// Why the command did not run or failed, in words.
    pub error: Option<String>,
}

impl CommandResult {
    fn not_run(verdict: Verdict, error: String) -> Self {
        Self {
            verdict,
            exec: None,
            files: BTreeMap::new(),
            stored: BTreeMap::new(),
            file_errors: Vec::new(),
            error: Some(error),
        }
    }

    /// CPU time of the run, user plus system, in ns (0 when it never ran).
    pub fn cpu_time_ns(&self) -> u64 {
        self.exec.as_ref().map_or(0, ExecResult::cpu_time_ns)
    }

    /// Wall-clock time of the run in ns.
    pub fn wall_time_ns(&self) -> u64 {
        self.exec.as_ref().map_or(0, |exec| exec.wall_time_ns)
    }

    /// Peak memory of the run in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.exec.as_ref().map_or(0, |exec| exec.memory_bytes)
    }

    /// The most processes and threads of the run alive at once; `None`
    /// where it is not known (see [`ExecResult::processes_peak`]).
    pub fn processes_peak(&self) -> Option<u32> {
        self.exec.as_ref().and_then(|exec| exec.processes_peak)
    }

    /// The exit code, or the number of the signal that ended the program;
    /// 0 when it never ran.
    pub fn exit_status(&self) -> i32 {
        match self.exec.as_ref().map(|exec| exec.termination) {
            Some(Termination::Exited(code)) | Some(Termination::Signalled(code)) => code,
            _ => 0,
        }
    }
}

impl Job {
    /// An empty job.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a command; returns its index.
    pub fn command(&mut self, command: Command) -> usize {
        self.commands.push(command);
        self.commands.len() - 1
    }

    /// Joins `writer` to `reader` with a pipe.
    pub fn pipe(&mut self, writer: PipeEnd, reader: PipeEnd) {
        self.pipes.push(Pipe {
            writer,
            reader,
            proxy: None,
        });
    }

    /// Joins `writer` to `reader` through a relay of the host's; see
    /// [`Proxy`].
    pub fn proxied_pipe(&mut self, writer: PipeEnd, reader: PipeEnd, proxy: Proxy) {
        self.pipes.push(Pipe {
            writer,
            reader,
            proxy: Some(proxy),
        });
    }

    /// Reads [`Source::Stored`] files from, and stores outputs into, `store`.
    pub fn with_store(mut self, store: FileStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The commands.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// Checks that the job can run: every pipe names existing commands and
    /// free descriptors, every descriptor has a stream, stored files have a
    /// store.
    pub fn check(&self) -> Result<(), JobError> {
        self.fd_plan().map(drop)
    }

    /// For each command, its descriptors: `Some(stream)` or `None` for one
    /// a pipe fills.
    fn fd_plan(&self) -> Result<Vec<Vec<Option<&Stream>>>, JobError> {
        if self.commands.is_empty() {
            return Err(JobError::Empty);
        }
        let mut plan: Vec<Vec<Option<&Stream>>> = Vec::with_capacity(self.commands.len());
        let mut filled: Vec<Vec<bool>> = Vec::with_capacity(self.commands.len());
        for (index, command) in self.commands.iter().enumerate() {
            if command.streams.len() > MAX_JOB_FDS {
                return Err(JobError::FdTooHigh {
                    command: index,
                    fd: command.streams.len() - 1,
                });
            }
            let uses_store = command.streams.iter().any(|stream| match stream {
                Stream::Input(Source::Stored(_)) => true,
                Stream::Collect(collector) => collector.store,
                _ => false,
            }) || command
                .copy_in
                .iter()
                .any(|file| matches!(file.content, CopyInContent::File(Source::Stored(_))))
                || command.copy_out.iter().any(|file| file.store);
            if uses_store && self.store.is_none() {
                return Err(JobError::NoStore { command: index });
            }
            plan.push(
                command
                    .streams
                    .iter()
                    .map(|stream| match stream {
                        Stream::Piped => None,
                        stream => Some(stream),
                    })
                    .collect(),
            );
            filled.push(
                command
                    .streams
                    .iter()
                    .map(|stream| !matches!(stream, Stream::Piped))
                    .collect(),
            );
        }
        let commands = self.commands.len();
        for (index, pipe) in self.pipes.iter().enumerate() {
            for end in [pipe.writer, pipe.reader] {
                if end.command >= commands {
                    return Err(JobError::PipeCommand {
                        pipe: index,
                        command: end.command,
                        commands,
                    });
                }
            }
        }
        for (index, pipe) in self.pipes.iter().enumerate() {
            for end in [pipe.writer, pipe.reader] {
                if end.fd >= MAX_JOB_FDS {
                    return Err(JobError::FdTooHigh {
                        command: end.command,
                        fd: end.fd,
                    });
                }
                let slots = &mut filled[end.command];
                if slots.len() <= end.fd {
                    slots.resize(end.fd + 1, false);
                    plan[end.command].resize(end.fd + 1, None);
                }
                if slots[end.fd] {
                    return Err(JobError::FdTaken {
                        pipe: index,
                        command: end.command,
                        fd: end.fd,
                    });
                }
                slots[end.fd] = true;
            }
        }
        for (command, slots) in filled.iter().enumerate() {
            if let Some(fd) = slots.iter().position(|filled| !filled) {
                return Err(JobError::Unfilled { command, fd });
            }
        }
        self.check_proxies()?;
        self.check_names()?;
        Ok(plan)
    }

    /// Checks that the collectors of one name agree, and that each
    /// copy-out's name is one no other file of its command's results has.
    fn check_names(&self) -> Result<(), JobError> {
        for (index, command) in self.commands.iter().enumerate() {
            let collectors: Vec<&Collector> = command
                .streams
                .iter()
                .filter_map(|stream| match stream {
                    Stream::Collect(collector) => Some(collector),
                    _ => None,
                })
                .collect();
            for (at, collector) in collectors.iter().enumerate() {
                if collectors[..at]
                    .iter()
                    .any(|earlier| earlier.name == collector.name && earlier != collector)
                {
                    return Err(JobError::CollectorMismatch {
                        command: index,
                        name: collector.name.clone(),
                    });
                }
            }
            // A name is taken where it lands in the same place: the
            // results' files, or the store.
            for (at, copy_out) in command.copy_out.iter().enumerate() {
                let (name, store) = (copy_out.path.as_str(), copy_out.store);
                let recorded = self.pipes.iter().position(|pipe| {
                    pipe.writer.command == index
                        && pipe.proxy.as_ref().is_some_and(|proxy| {
                            proxy.name.as_deref() == Some(name) && proxy.store == store
                        })
                });
                let taken_by = if collectors
                    .iter()
                    .any(|c| c.name == name && c.store == store)
                {
                    "collector".to_owned()
                } else if let Some(pipe) = recorded {
                    format!("pipe {pipe}'s record")
                } else if command.copy_out[..at]
                    .iter()
                    .any(|c| c.path == name && c.store == store)
                {
                    "copy-out".to_owned()
                } else {
                    continue;
                };
                return Err(JobError::CopyOutNameTaken {
                    command: index,
                    name: name.to_owned(),
                    taken_by,
                });
            }
        }
        Ok(())
    }

    /// Checks that each proxy's record has a name of its own among its
    /// writer's results, and a store if it goes there.
    fn check_proxies(&self) -> Result<(), JobError> {
        fn named(pipe: &Pipe) -> Option<(&str, bool)> {
            let proxy = pipe.proxy.as_ref()?;
            Some((proxy.name.as_deref()?, proxy.store))
        }
        for (index, pipe) in self.pipes.iter().enumerate() {
            let Some((name, store)) = named(pipe) else {
                continue;
            };
            let command = pipe.writer.command;
            if store && self.store.is_none() {
                return Err(JobError::NoStore { command });
            }
            let collected = self.commands[command].streams.iter().any(
                |stream| matches!(stream, Stream::Collect(collector) if collector.name == name),
            );
            let earlier = self.pipes[..index].iter().position(|other| {
                other.writer.command == command && named(other).is_some_and(|(n, _)| n == name)
            });
            let taken_by = match earlier {
                _ if collected => "a collector".to_owned(),
                Some(earlier) => format!("pipe {earlier}"),
                None => continue,
            };
            return Err(JobError::NameTaken {
                pipe: index,
                command,
                name: name.to_owned(),
                taken_by,
            });
        }
        Ok(())
    }

    /// Runs the job in containers of `pool`, all taken at once, and gives
    /// them back (reset) before it returns.
    pub fn run(&self, pool: &Pool) -> Result<Vec<CommandResult>, JobError> {
        let plan = self.fd_plan()?;
        let mut pooled = pool
            .checkout_many(self.commands.len())
            .map_err(JobError::Pool)?;
        let mut containers: Vec<&mut Container> = pooled.iter_mut().map(|c| &mut **c).collect();
        self.run_planned(&plan, &mut containers, None)
    }

    /// Runs the job in these containers, one per command, in order. They
    /// are left as the runs left them: reset each before its next use.
    pub fn run_in(
        &self,
        containers: &mut [&mut Container],
    ) -> Result<Vec<CommandResult>, JobError> {
        self.run_in_cancellable(containers, None)
    }

    /// [`run_in`](Self::run_in), stopped early by `cancel` if it is
    /// cancelled: its commands under way are killed, and those not yet
    /// started never start ([`Verdict::Cancelled`]).
    pub fn run_in_cancellable(
        &self,
        containers: &mut [&mut Container],
        cancel: Option<&Cancel>,
    ) -> Result<Vec<CommandResult>, JobError> {
        let plan = self.fd_plan()?;
        if containers.len() != self.commands.len() {
            return Err(JobError::Containers {
                commands: self.commands.len(),
                containers: containers.len(),
            });
        }
        let results = self.run_planned(&plan, containers, cancel);
        if let Some(cancel) = cancel {
            // The containers go on to other runs: a late cancel must not
            // reach them.
            cancel.release();
        }
        results
    }

    fn run_planned(
        &self,
        plan: &[Vec<Option<&Stream>>],
        containers: &mut [&mut Container],
        cancel: Option<&Cancel>,
    ) -> Result<Vec<CommandResult>, JobError> {
        // The pipes' ends, by command and descriptor; relays for proxies.
        let mut ends: Vec<BTreeMap<usize, OwnedFd>> =
            (0..self.commands.len()).map(|_| BTreeMap::new()).collect();
        let mut relays = Vec::new();
        for pipe in &self.pipes {
            let (read, write) = new_pipe().map_err(JobError::Pipe)?;
            match &pipe.proxy {
                None => {
                    ends[pipe.writer.command].insert(pipe.writer.fd, write);
                    ends[pipe.reader.command].insert(pipe.reader.fd, read);
                }
                Some(proxy) => {
                    let (relay_read, relay_write) = new_pipe().map_err(JobError::Pipe)?;
                    ends[pipe.writer.command].insert(pipe.writer.fd, write);
                    ends[pipe.reader.command].insert(pipe.reader.fd, relay_read);
                    relays.push(Relay {
                        writer: pipe.writer.command,
                        from: read,
                        to: relay_write,
                        proxy: proxy.clone(),
                    });
                }
            }
        }
        let store = self.store.as_ref();
        let results = std::thread::scope(|scope| {
            let relays: Vec<_> = relays
                .into_iter()
                .map(|relay| {
                    let writer = relay.writer;
                    let handle = std::thread::Builder::new()
                        .name("hutch-relay".into())
                        .spawn_scoped(scope, move || relay.run());
                    (writer, handle)
                })
                .collect();
            let mut work = containers
                .iter_mut()
                .zip(&self.commands)
                .zip(plan)
                .zip(ends)
                .map(|(((container, command), streams), ends)| {
                    move || run_command(container, command, streams, ends, store, cancel)
                });
            let first = work.next().expect("a job has a command");
            let others: Vec<_> = work
                .map(|run| {
                    std::thread::Builder::new()
                        .name("hutch-job".into())
                        .spawn_scoped(scope, run)
                })
                .collect();
            let mut results = vec![first()];
            results.extend(others.into_iter().map(|handle| match handle {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    CommandResult::not_run(
                        Verdict::ContainerFailed,
                        "the command's thread panicked".into(),
                    )
                }),
                Err(error) => CommandResult::not_run(
                    Verdict::ContainerFailed,
                    format!("cannot start a thread for the command: {error}"),
                ),
            }));
            for (writer, handle) in relays {
                let recorded = match handle {
                    Ok(handle) => handle.join().ok().flatten(),
                    Err(_) => None,
                };
                if let Some((name, to_store, bytes)) = recorded {
                    let result = &mut results[writer];
                    keep(result, store, &name, to_store, bytes);
                    settle_file_errors(result);
                }
            }
            results
        });
        Ok(results)
    }
}

/// Cancels a job from another thread ([`Job::run_in_cancellable`]): the
/// job's commands under way are killed (their verdicts are those of a
/// program killed by `SIGKILL`) and those not yet started never start
/// ([`Verdict::Cancelled`]). Clones cancel the same job. A cancel after
/// the job has returned does nothing; a cancelled `Cancel` keeps any later
/// job it is given from starting, so make one per job.
///
/// A command of a cancelled job that was starting as the cancel came (its
/// files being copied in) starts, and is killed at once.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<std::sync::Mutex<CancelState>>,
    /// A connection whose close by its peer cancels the job.
    peer: Option<Arc<OwnedFd>>,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    /// One per command started or about to start.
    killers: Vec<Killer>,
}

impl Cancel {
    /// A handle that has not cancelled anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also cancels the job when the peer of `socket`, a connected stream
    /// socket (a server's client, say), closes the connection, or it
    /// fails, while a command of the job waits for its program (one that
    /// came before is seen as the wait begins): each command's wait polls
    /// the socket beside its container's, no system call more. A close of
    /// the peer's sending side alone counts, as Go's HTTP server counts
    /// it. Bytes the peer sends do not; nor does a close after bytes not
    /// read yet (a client's next request, sent ahead), after which the
    /// socket is no longer watched.
    pub fn on_peer_close(mut self, socket: Arc<OwnedFd>) -> Self {
        self.peer = Some(socket);
        self
    }

    /// Cancels the job; a second call does nothing more.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        for killer in &state.killers {
            let _ = killer.kill();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Adds the killer of a command about to start; false when the job is
    /// already cancelled, and the command must not start.
    fn register(&self, killer: Killer) -> bool {
        let mut state = self.lock();
        if state.cancelled {
            return false;
        }
        state.killers.push(killer);
        true
    }

    /// Forgets the killers once the job's runs are over.
    fn release(&self) {
        self.lock().killers.clear();
    }

    /// Kills every registered command's run again.
    fn kill_registered(&self) {
        for killer in &self.lock().killers {
            let _ = killer.kill();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A proxy's relay: from the writer's pipe to the reader's.
struct Relay {
    writer: usize,
    from: OwnedFd,
    to: OwnedFd,
    proxy: Proxy,
}

impl Relay {
    /// Copies until the writer's end closes; returns what it recorded:
    /// its name, whether it goes to the store, and the bytes.
    fn run(self) -> Option<(String, bool, Vec<u8>)> {
        let Relay {
            from, to, proxy, ..
        } = self;
        let mut to = Some(to);
        let mut recorded = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rustix::io::read(&from, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            };
            if proxy.name.is_some() {
                let room = (proxy.max as usize).saturating_sub(recorded.len());
                recorded.extend_from_slice(&buf[..n.min(room)]);
            }
            if let Some(fd) = &to {
                if write_all(fd, &buf[..n]).is_err() {
                    // The reader is gone: drop the rest, so the writer
                    // never blocks on it.
                    to = None;
                }
            }
        }
        drop(to);
        proxy.name.map(|name| (name, proxy.store, recorded))
    }
}

/// A pipe, both ends close-on-exec.
fn new_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Into::into)
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `/dev/null`, opened once for the process.
fn dev_null() -> Result<BorrowedFd<'static>, std::io::Error> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(NULL.get_or_init(|| fd).as_fd())
}

/// A descriptor a program gets: one the job made, or one borrowed.
enum Held<'a> {
    Owned(OwnedFd),
    Borrowed(BorrowedFd<'a>),
    /// The descriptor of the collector at this index of the command's.
    Collector(usize),
}

/// One collector of a command, while it runs.
enum Collecting {
    /// An in-memory file, read after the run.
    File { collector: Collector, file: OwnedFd },
    /// A pipe; its reader thread gives the bytes and whether it overflowed.
    Pipe {
        collector: Collector,
        write: Option<OwnedFd>,
        read: Option<OwnedFd>,
    },
}

impl Collecting {
    fn collector(&self) -> &Collector {
        match self {
            Collecting::File { collector, .. } | Collecting::Pipe { collector, .. } => collector,
        }
    }

    /// The descriptor the program writes to.
    fn program_end(&self) -> BorrowedFd<'_> {
        match self {
            Collecting::File { file, .. } => file.as_fd(),
            Collecting::Pipe { write, .. } => {
                write.as_ref().expect("open until the run starts").as_fd()
            }
        }
    }
}

/// Runs one command in `container`; never fails as a whole: what goes
/// wrong is in the result.
fn run_command(
    container: &mut Container,
    command: &Command,
    streams: &[Option<&Stream>],
    mut ends: BTreeMap<usize, OwnedFd>,
    store: Option<&FileStore>,
    cancel: Option<&Cancel>,
) -> CommandResult {
    if let Some(cancel) = cancel {
        // From here on a cancel kills this command's run, or keeps it from
        // starting.
        let killer = match container.killer() {
            Ok(killer) => killer,
            Err(error) => return failed_container(error),
        };
        if !cancel.register(killer) {
            return CommandResult::not_run(
                Verdict::Cancelled,
                "the job was cancelled before this command started".into(),
            );
        }
    }
    let mut file_errors = Vec::new();
    if let Err(failed) = copy_in(container, command, store, &mut file_errors) {
        return *failed;
    }
    // The program's descriptors, in order.
    let mut held: Vec<Held<'_>> = Vec::with_capacity(streams.len());
    let mut collecting: Vec<Collecting> = Vec::new();
    for (fd, stream) in streams.iter().enumerate() {
        let entry = match stream {
            None => Held::Owned(ends.remove(&fd).expect("the plan has a pipe end here")),
            Some(Stream::Null) => match dev_null() {
                Ok(null) => Held::Borrowed(null),
                Err(error) => {
                    return CommandResult::not_run(
                        Verdict::ContainerFailed,
                        format!("cannot open /dev/null: {error}"),
                    );
                }
            },
            Some(Stream::Fd(fd)) => Held::Borrowed(fd.as_fd()),
            Some(Stream::Piped) => unreachable!("the plan maps placeholders to None"),
            Some(Stream::Input(source)) => match input(source, store) {
                Ok(input) => input,
                Err(error) => return file_failure(vec![error]),
            },
            Some(Stream::Collect(collector)) => {
                match collecting
                    .iter()
                    .position(|c| c.collector().name == collector.name)
                {
                    Some(index) => Held::Collector(index),
                    None => match Collecting::new(collector) {
                        Ok(new) => {
                            collecting.push(new);
                            Held::Collector(collecting.len() - 1)
                        }
                        Err(error) => {
                            return CommandResult::not_run(
                                Verdict::ContainerFailed,
                                format!("cannot make the collector {:?}: {error}", collector.name),
                            );
                        }
                    },
                }
            }
        };
        held.push(entry);
    }
    let killer = if collecting
        .iter()
        .any(|c| matches!(c, Collecting::Pipe { .. }))
    {
        match container.killer() {
            Ok(killer) => Some(killer),
            Err(error) => return failed_container(error),
        }
    } else {
        None
    };
    let outcome = std::thread::scope(|scope| {
        // Readers of the pipe collectors, started before the program.
        let readers: Vec<_> = collecting
            .iter_mut()
            .map(|c| match c {
                Collecting::Pipe {
                    collector, read, ..
                } => {
                    let read = read.take().expect("read end present before the run");
                    let max = collector.max;
                    let killer = killer.as_ref();
                    Some(scope.spawn(move || drain(read, max, killer)))
                }
                Collecting::File { .. } => None,
            })
            .collect();
        let started = {
            let mut spec: ExecSpec<'_> = command.spec.clone().without_fds();
            for entry in &held {
                spec = spec.fd(match entry {
                    Held::Owned(fd) => fd.as_fd(),
                    Held::Borrowed(fd) => *fd,
                    Held::Collector(index) => collecting[*index].program_end(),
                });
            }
            let started = container.start(&spec);
            // A cancel whose kill reached init before the program's exec
            // did nothing there; it is seen here, and killed again.
            if let (Ok(_), Some(cancel)) = (&started, cancel)
                && cancel.is_cancelled()
            {
                cancel.kill_registered();
            }
            started
        };
        // Init holds its own copies now: closing the host's lets each pipe's
        // other end see this one close when the program's run ends.
        drop(held);
        for c in &mut collecting {
            if let Collecting::Pipe { write, .. } = c {
                write.take();
            }
        }
        // An in-memory collector past its `max` stops the run, as a pipe
        // collector's reader does.
        let caps: Vec<(BorrowedFd<'_>, u64)> = collecting
            .iter()
            .filter_map(|c| match c {
                Collecting::File { collector, file } => Some((file.as_fd(), collector.max)),
                Collecting::Pipe { .. } => None,
            })
            .collect();
        // The peer's close cancels the whole job, this command's run
        // among them.
        let cancel_all = || {
            if let Some(cancel) = cancel.filter(|cancel| !cancel.is_cancelled()) {
                cancel.cancel();
            }
        };
        let peer = cancel
            .and_then(|cancel| cancel.peer.as_deref())
            .map(|socket| PeerWatch {
                socket: socket.as_fd(),
                closed: &cancel_all,
            });
        let exec = started.and_then(|run| run.wait_capped(&caps, peer));
        let drained: Vec<Option<(Vec<u8>, bool, bool)>> = readers
            .into_iter()
            .map(|reader| reader.map(|handle| handle.join().unwrap_or_default()))
            .collect();
        (exec, drained)
    });
    let (exec, drained) = outcome;
    // Whether the host stopped the run for a collector's output.
    let (exec, mut stopped) = match exec {
        Ok(exec) => exec,
        Err(error) => return failed_container(error),
    };
    let mut result = CommandResult {
        verdict: Verdict::from(exec.status),
        exec: None,
        files: BTreeMap::new(),
        stored: BTreeMap::new(),
        file_errors,
        error: exec.error.as_ref().map(|error| error.message.clone()),
    };
    let mut over = false;
    for (c, drained) in collecting.into_iter().zip(drained) {
        let (collector, bytes, overflowed) = match (c, drained) {
            (Collecting::Pipe { collector, .. }, Some((bytes, overflowed, killed))) => {
                stopped |= killed;
                (collector, bytes, overflowed)
            }
            (Collecting::File { collector, file }, _) => match read_capped(&file, collector.max) {
                Ok((bytes, size)) => {
                    let over = size > collector.max;
                    (collector, bytes, over)
                }
                Err(error) => {
                    result.file_errors.push(FileError {
                        name: collector.name.clone(),
                        kind: FileErrorKind::CopyOutCopyContent,
                        message: format!("cannot read the output {:?}: {error}", collector.name),
                    });
                    continue;
                }
            },
            (Collecting::Pipe { collector, .. }, None) => (collector, Vec::new(), false),
        };
        if overflowed {
            over = true;
            result.file_errors.push(FileError {
                name: collector.name.clone(),
                kind: FileErrorKind::CollectSizeExceeded,
                message: format!(
                    "the output {:?} is larger than its limit of {} bytes",
                    collector.name, collector.max
                ),
            });
        }
        keep(&mut result, store, &collector.name, collector.store, bytes);
    }
    copy_out(container, command, store, &mut result);
    if over && output_is_the_verdict(result.verdict, exec.termination, stopped) {
        result.verdict = Verdict::OutputLimit;
    }
    settle_file_errors(&mut result);
    result.exec = Some(exec);
    result
}

/// A run otherwise `Ok` whose files did not all come out is a
/// [`Verdict::FileError`], told by the first of them.
fn settle_file_errors(result: &mut CommandResult) {
    if result.verdict == Verdict::Ok && !result.file_errors.is_empty() {
        result.verdict = Verdict::FileError;
    }
    if result.error.is_none() && result.verdict == Verdict::FileError {
        result.error = result.file_errors.first().map(|e| e.message.clone());
    }
}

/// Whether output past a collector's `max` is the verdict of a run that
/// ended with `verdict` and `termination`, `stopped` telling whether the
/// host killed it for that output: when the program ended well, or when it
/// was the host's kill that ended it. A program that ended otherwise on
/// its own (a non-zero exit, a signal, a limit) keeps its verdict, the
/// collector's file error beside it, as go-judge judges it.
fn output_is_the_verdict(verdict: Verdict, termination: Termination, stopped: bool) -> bool {
    match verdict {
        Verdict::Ok => true,
        Verdict::Signalled => stopped && termination == Termination::Signalled(libc::SIGKILL),
        _ => false,
    }
}

impl Collecting {
    fn new(collector: &Collector) -> std::io::Result<Self> {
        Ok(if collector.pipe {
            let (read, write) = new_pipe()?;
            Collecting::Pipe {
                collector: collector.clone(),
                write: Some(write),
                read: Some(read),
            }
        } else {
            let file = rustix::fs::memfd_create("hutch-output", rustix::fs::MemfdFlags::CLOEXEC)?;
            Collecting::File {
                collector: collector.clone(),
                file,
            }
        })
    }
}

/// Reads a collector's pipe to its end, keeping `max` bytes; past them,
/// stops the run once and drops the rest. Returns the bytes, whether there
/// were more, and whether the kill was sent.
fn drain(read: OwnedFd, max: u64, killer: Option<&Killer>) -> (Vec<u8>, bool, bool) {
    let mut bytes = Vec::new();
    let mut overflowed = false;
    let mut killed = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rustix::io::read(&read, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(_) => break,
        };
        let room = (max as usize).saturating_sub(bytes.len());
        bytes.extend_from_slice(&buf[..n.min(room)]);
        if n > room && !overflowed {
            overflowed = true;
            if let Some(killer) = killer {
                // The run ends with an output-limit verdict; a kill that
                // arrives after it ended does nothing.
                killed = killer.kill().is_ok();
            }
        }
    }
    (bytes, overflowed, killed)
}

/// The first `max` bytes of `file` and its whole size.
fn read_capped(file: &OwnedFd, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let size = rustix::fs::fstat(file)?.st_size as u64;
    Ok((read_prefix(file, size.min(max))?, size))
}

/// The first `len` bytes of `file`, or fewer if it is shorter.
fn read_prefix(file: impl AsFd, len: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len as usize];
    let mut at = 0usize;
    while at < bytes.len() {
        match rustix::io::pread(&file, &mut bytes[at..], at as u64) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    bytes.truncate(at);
    Ok(bytes)
}

/// Puts `bytes` under `name`: into memory, or into the store.
fn keep(
    result: &mut CommandResult,
    store: Option<&FileStore>,
    name: &str,
    to_store: bool,
    bytes: Vec<u8>,
) {
    match (to_store, store) {
        (true, Some(store)) => match store.add(name, &mut bytes.as_slice()) {
            Ok(id) => {
                result.stored.insert(name.into(), id);
            }
            Err(error) => result.file_errors.push(FileError {
                name: name.into(),
                kind: FileErrorKind::CopyOutCreateFile,
                message: format!("cannot store {name:?}: {error}"),
            }),
        },
        _ => {
            result.files.insert(name.into(), bytes);
        }
    }
}

/// A program's input: sealed where the program could otherwise open the
/// file again for writing through `/proc/self/fd`.
fn input<'a>(source: &'a Source, store: Option<&FileStore>) -> Result<Held<'a>, FileError> {
    let open_error = |message: String| FileError {
        name: source.describe(),
        kind: FileErrorKind::CopyInOpenFile,
        message,
    };
    let seal_error = |error: crate::input::InputError| {
        open_error(format!(
            "cannot seal the input {}: {error}",
            source.describe()
        ))
    };
    let file = match source {
        Source::Bytes(bytes) if bytes.is_empty() => {
            return dev_null()
                .map(Held::Borrowed)
                .map_err(|e| open_error(format!("cannot open /dev/null: {e}")));
        }
        Source::Bytes(bytes) => {
            return SealedInput::from_bytes(bytes)
                .map(|input| Held::Owned(input.into()))
                .map_err(seal_error);
        }
        Source::Path(path) => crate::input::open_regular(path)
            .map_err(|e| open_error(format!("cannot open the input {}: {e}", path.display())))?,
        Source::Stored(id) => {
            let store = store.expect("checked: a job with stored files has a store");
            store.get(id).map_err(|e| open_error(e.to_string()))?.1
        }
        Source::File(file) => {
            open_again(file).map_err(|e| open_error(format!("cannot use the input file: {e}")))?
        }
    };
    if program_could_rewrite(&file) {
        let mut file = file;
        return std::io::Seek::rewind(&mut file)
            .map_err(|e| open_error(format!("cannot read the input: {e}")))
            .and_then(|()| SealedInput::from_reader(&mut file).map_err(seal_error))
            .map(|input| Held::Owned(input.into()));
    }
    Ok(Held::Owned(file.into()))
}

/// A regular file of the caller's, opened again for reading: a
/// description of its own, at offset 0, which neither the caller's reads
/// nor the program's move. Anything else (a pipe, a socket) has no offset
/// to start from and is shared as it is.
fn open_again(file: &File) -> std::io::Result<File> {
    let stat = rustix::fs::fstat(file)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return file.try_clone();
    }
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
    let again = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(File::from(again))
}

/// Whether a program given `file` might open it again for writing through
/// `/proc/self/fd`: always when the host is not root (programs then run as
/// the caller, who may own the file, or change its mode), and as root when
/// the file's mode lets its group or anyone write it.
fn program_could_rewrite(file: &File) -> bool {
    if !rustix::process::geteuid().is_root() {
        return true;
    }
    match rustix::fs::fstat(file) {
        Ok(stat) => {
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
                && stat.st_mode & 0o022 != 0
        }
        Err(_) => true,
    }
}

/// Copies the command's files in; `Err` holds the result of a command that
/// cannot run.
fn copy_in(
    container: &mut Container,
    command: &Command,
    store: Option<&FileStore>,
    errors: &mut Vec<FileError>,
) -> Result<(), Box<CommandResult>> {
    let mut sources: Vec<(&CopyIn, Held<'_>)> = Vec::new();
    let mut links = Vec::new();
    for file in &command.copy_in {
        match &file.content {
            CopyInContent::Symlink(target) => links.push(SymlinkItem {
                link: container.resolve(&file.path),
                target: target.clone(),
            }),
            CopyInContent::File(source) => match copy_source(source, store) {
                Ok(held) => sources.push((file, held)),
                Err(message) => errors.push(FileError {
                    name: file.path.clone(),
                    kind: FileErrorKind::CopyInOpenFile,
                    message,
                }),
            },
        }
    }
    if !errors.is_empty() {
        return Err(Box::new(file_failure(std::mem::take(errors))));
    }
    if !sources.is_empty() {
        let files: Vec<CopyInFile<'_, '_>> = sources
            .iter()
            .map(|(file, held)| CopyInFile {
                path: &file.path,
                mode: file.mode,
                source: match held {
                    Held::Owned(fd) => fd.as_fd(),
                    Held::Borrowed(fd) => *fd,
                    Held::Collector(_) => unreachable!("a copy-in source is no collector"),
                },
            })
            .collect();
        let outcomes = container
            .copy_in(&files)
            .map_err(|e| Box::new(failed_container(e)))?;
        for ((file, _), outcome) in sources.iter().zip(outcomes) {
            let (kind, error) = match outcome {
                Ok(()) => continue,
                Err(CopyInError::Create(error)) => (FileErrorKind::CopyInCreateFile, error),
                Err(CopyInError::Fill(error)) => (FileErrorKind::CopyInCopyContent, error),
            };
            errors.push(FileError {
                name: file.path.clone(),
                kind,
                message: error.message,
            });
        }
    }
    if !links.is_empty() {
        let outcomes = container
            .symlink(&links)
            .map_err(|e| Box::new(failed_container(e)))?;
        for (link, outcome) in command
            .copy_in
            .iter()
            .filter(|file| matches!(file.content, CopyInContent::Symlink(_)))
            .zip(outcomes)
        {
            if let Err(error) = outcome {
                errors.push(FileError {
                    name: link.path.clone(),
                    kind: FileErrorKind::Symlink,
                    message: error.message,
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Box::new(file_failure(std::mem::take(errors))))
    }
}

/// A descriptor of a copy-in's content, for init to read.
fn copy_source<'a>(source: &'a Source, store: Option<&FileStore>) -> Result<Held<'a>, String> {
    Ok(match source {
        Source::Bytes(bytes) => {
            let file = rustix::fs::memfd_create("hutch-copy-in", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| format!("cannot hold the content in memory: {e}"))?;
            write_all(&file, bytes)
                .map_err(|e| format!("cannot hold the content in memory: {e}"))?;
            Held::Owned(file)
        }
        Source::Path(path) => Held::Owned(
            crate::input::open_regular(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?
                .into(),
        ),
        Source::Stored(id) => Held::Owned(
            store
                .expect("checked: a job with stored files has a store")
                .get(id)
                .map_err(|e| e.to_string())?
                .1
                .into(),
        ),
        Source::File(file) => Held::Borrowed(file.as_fd()),
    })
}

/// Reads the command's copy-out files into the result.
fn copy_out(
    container: &mut Container,
    command: &Command,
    store: Option<&FileStore>,
    result: &mut CommandResult,
) {
    if command.copy_out.is_empty() {
        return;
    }
    let paths: Vec<&str> = command.copy_out.iter().map(|c| c.path.as_str()).collect();
    let opened = match container.open_for_copy_out(&paths) {
        Ok(opened) => opened,
        Err(error) => {
            for file in &command.copy_out {
                result.file_errors.push(FileError {
                    name: file.path.clone(),
                    kind: FileErrorKind::CopyOutOpen,
                    message: format!(
                        "cannot open {:?}: {}",
                        file.path,
                        crate::error_chain(&error)
                    ),
                });
            }
            return;
        }
    };
    let limit = command.copy_out_limit;
    for (file, opened) in command.copy_out.iter().zip(opened) {
        let name = file.path.clone();
        let fd = match opened {
            Ok(fd) => fd,
            Err(ItemError { errno, .. }) if errno == libc::ENOENT && file.optional => continue,
            Err(ItemError { errno, message }) => {
                let kind = if errno == libc::ELOOP || errno == libc::EINVAL {
                    FileErrorKind::CopyOutNotRegularFile
                } else {
                    FileErrorKind::CopyOutOpen
                };
                result.file_errors.push(FileError {
                    name,
                    kind,
                    message,
                });
                continue;
            }
        };
        let size = match rustix::fs::fstat(&fd) {
            Ok(stat) => stat.st_size as u64,
            Err(e) => {
                result.file_errors.push(FileError {
                    name,
                    kind: FileErrorKind::CopyOutCopyContent,
                    message: format!("cannot inspect {:?}: {e}", file.path),
                });
                continue;
            }
        };
        // No size told (0): a file of /proc or /sys, whose content is made
        // as it is read. Read to its end, one byte past the limit.
        let fd = File::from(fd);
        let (size, read) = if size == 0 {
            let mut bytes = Vec::new();
            match (&fd).take(limit.saturating_add(1)).read_to_end(&mut bytes) {
                Ok(_) => (bytes.len() as u64, Some(bytes)),
                Err(e) => {
                    result.file_errors.push(FileError {
                        name,
                        kind: FileErrorKind::CopyOutCopyContent,
                        message: format!("cannot read {:?}: {e}", file.path),
                    });
                    continue;
                }
            }
        } else {
            (size, None)
        };
        if size > limit {
            let told = if read.is_some() {
                "more than".to_owned()
            } else {
                format!("{size} bytes, more than")
            };
            result.file_errors.push(FileError {
                name: name.clone(),
                kind: FileErrorKind::CopyOutSizeExceeded,
                message: format!("{:?} is {told} the copy-out limit of {limit}", file.path),
            });
            if !command.copy_out_truncate {
                continue;
            }
        }
        let keep_bytes = size.min(limit);
        if let Some(mut bytes) = read {
            bytes.truncate(keep_bytes as usize);
            keep(result, store, &name, file.store, bytes);
            continue;
        }
        match (file.store, store) {
            (true, Some(store)) => match store_copy(store, &name, fd.into(), keep_bytes) {
                Ok(id) => {
                    result.stored.insert(name, id);
                }
                Err(error) => result.file_errors.push(error),
            },
            // The size is known: no second fstat.
            _ => match read_prefix(&fd, keep_bytes) {
                Ok(bytes) => {
                    result.files.insert(name, bytes);
                }
                Err(e) => result.file_errors.push(FileError {
                    name,
                    kind: FileErrorKind::CopyOutCopyContent,
                    message: format!("cannot read {:?}: {e}", file.path),
                }),
            },
        }
    }
}

/// Copies the first `len` bytes of `fd` into a new file of `store`.
fn store_copy(store: &FileStore, name: &str, fd: OwnedFd, len: u64) -> Result<String, FileError> {
    let error = |kind, message: String| FileError {
        name: name.into(),
        kind,
        message,
    };
    let mut writer = store
        .writer(name)
        .map_err(|e| error(FileErrorKind::CopyOutCreateFile, e.to_string()))?;
    let copied = std::io::copy(&mut File::from(fd).take(len), writer.file())
        .and_then(|copied| writer.file().flush().map(|()| copied))
        .map_err(|e| {
            error(
                FileErrorKind::CopyOutCopyContent,
                format!("cannot store {name:?}: {e}"),
            )
        })?;
    if copied != len {
        return Err(error(
            FileErrorKind::CopyOutCopyContent,
            format!("{name:?} shrank while it was read"),
        ));
    }
    writer
        .commit()
        .map_err(|e| error(FileErrorKind::CopyOutCreateFile, e.to_string()))
}

/// The result of a command that did not run because of `errors` (at least
/// one).
fn file_failure(errors: Vec<FileError>) -> CommandResult {
    let message = errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    let mut result = CommandResult::not_run(Verdict::FileError, message);
    result.file_errors = errors;
    result
}

/// The result of a command whose request to its container failed. One
/// refused before it was sent (invalid, or too large for a frame) is the
/// command's fault, and leaves the container as it was: `RunnerError`.
/// Anything else is the container's.
fn failed_container(error: ContainerError) -> CommandResult {
    let verdict = if error.refused_unsent() {
        Verdict::RunnerError
    } else {
        Verdict::ContainerFailed
    };
    CommandResult::not_run(verdict, crate::error_chain(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes_become_sources_of_those_bytes() {
        let bytes = |source: Source| match source {
            Source::Bytes(bytes) => bytes.to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(bytes("hi\n".into()), b"hi\n");
        assert_eq!(bytes(String::from("hi\n").into()), b"hi\n");
        assert_eq!(bytes(b"\x00\xff".as_slice().into()), [0, 255]);
        assert_eq!(bytes(vec![1u8, 2].into()), [1, 2]);
    }

    #[test]
    fn output_past_a_collector_is_the_verdict_only_of_a_run_that_ended_well_or_was_stopped_for_it()
    {
        let killed = Termination::Signalled(libc::SIGKILL);
        let crashed = Termination::Signalled(libc::SIGSEGV);
        // Ended well, whether or not the host had sent a kill by then.
        assert!(output_is_the_verdict(
            Verdict::Ok,
            Termination::Exited(0),
            false
        ));
        assert!(output_is_the_verdict(
            Verdict::Ok,
            Termination::Exited(0),
            true
        ));
        // Stopped by the host for its output.
        assert!(output_is_the_verdict(Verdict::Signalled, killed, true));
        // Ended otherwise on its own: its verdict stands.
        assert!(!output_is_the_verdict(
            Verdict::NonzeroExit,
            Termination::Exited(3),
            false
        ));
        assert!(!output_is_the_verdict(
            Verdict::NonzeroExit,
            Termination::Exited(3),
            true
        ));
        assert!(!output_is_the_verdict(Verdict::Signalled, crashed, false));
        assert!(!output_is_the_verdict(Verdict::Signalled, crashed, true));
        assert!(!output_is_the_verdict(Verdict::Signalled, killed, false));
        for limit in [
            Verdict::TimeLimit,
            Verdict::WallTimeLimit,
            Verdict::MemoryLimit,
            Verdict::OutputLimit,
            Verdict::DisallowedSyscall,
        ] {
            assert!(!output_is_the_verdict(limit, killed, true), "{limit}");
        }
    }

    #[test]
    fn a_proxy_may_not_record_under_a_name_its_writer_already_gives() {
        let collect = |name: &str| Stream::collect(name, 10);
        let proxy = |name: &str, store: bool| Proxy {
            name: Some(name.into()),
            max: 10,
            store,
        };
        let end = |command, fd| PipeEnd { command, fd };
        let pair = || {
            let mut job = Job::new();
            let writer = Command::new(ExecSpec::new(["true"]))
                .stream(Stream::Null)
                .stream(Stream::Piped)
                .stream(collect("err"));
            let reader = Command::new(ExecSpec::new(["true"]))
                .stream(Stream::Piped)
                .stream(collect("out"))
                .stream(collect("err"));
            job.command(writer);
            job.command(reader);
            job
        };

        let mut job = pair();
        job.proxied_pipe(end(0, 1), end(1, 0), proxy("err", false));
        let error = job.check().unwrap_err();
        assert!(
            matches!(&error, JobError::NameTaken { pipe: 0, command: 0, name, .. } if name == "err"),
            "{error:?}"
        );
        assert!(error.to_string().contains("a collector"), "{error}");

        let mut job = pair();
        job.proxied_pipe(end(0, 1), end(1, 0), proxy("p", false));
        job.proxied_pipe(end(0, 3), end(1, 3), proxy("p", false));
        let error = job.check().unwrap_err();
        assert!(
            matches!(&error, JobError::NameTaken { pipe: 1, command: 0, name, .. } if name == "p"),
            "{error:?}"
        );
        assert!(error.to_string().contains("pipe 0"), "{error}");

        // The reader's names are not the writer's; another writer's proxy
        // may have the name too.
        let mut job = pair();
        job.proxied_pipe(end(0, 1), end(1, 0), proxy("out", false));
        job.proxied_pipe(end(1, 3), end(0, 3), proxy("shared", false));
        job.proxied_pipe(end(0, 4), end(1, 4), proxy("shared", false));
        job.check().unwrap();

        // A record for the store needs one.
        let mut job = pair();
        job.proxied_pipe(end(0, 1), end(1, 0), proxy("p", true));
        assert!(matches!(job.check(), Err(JobError::NoStore { command: 0 })));
    }

    #[test]
    fn a_copy_out_may_not_take_a_name_its_command_already_gives() {
        let one = |command: Command| {
            let mut job = Job::new();
            job.command(command);
            job.check()
        };
        let echo = || {
            Command::new(ExecSpec::new(["true"]))
                .stream(Stream::Null)
                .stream(Stream::collect("out", 10))
        };
        let taken = |result: Result<(), JobError>, by: &str| match result {
            Err(error @ JobError::CopyOutNameTaken { command: 0, .. }) => {
                assert_eq!(
                    error.to_string(),
                    format!("command 0 copies out \"out\", a name its {by} already has")
                );
            }
            other => panic!("{other:?}"),
        };
        taken(one(echo().copy_out(CopyOut::file("out"))), "collector");
        taken(
            one(echo()
                .copy_out(CopyOut::file("x"))
                .copy_out(CopyOut::file("out"))),
            "collector",
        );
        let twice = Command::new(ExecSpec::new(["true"]))
            .copy_out(CopyOut::file("out"))
            .copy_out(CopyOut::file("out"));
        taken(one(twice), "copy-out");
        // Into the store, the same name is another file of the results.
        let stored = CopyOut {
            store: true,
            ..CopyOut::file("out")
        };
        let mut job = Job::new().with_store(FileStore::temporary().unwrap());
        job.command(echo().copy_out(stored));
        job.check().unwrap();
        // Two descriptors may share a collector, not with two settings.
        let shared = echo().stream(Stream::collect("out", 10));
        one(shared).unwrap();
        let mismatched = echo().stream(Stream::collect("out", 11));
        match one(mismatched) {
            Err(error @ JobError::CollectorMismatch { command: 0, .. }) => assert_eq!(
                error.to_string(),
                "command 0 has two collectors named \"out\" with different settings"
            ),
            other => panic!("{other:?}"),
        }
    }
}
