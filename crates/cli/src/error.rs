//! What can go wrong in hutch itself, as opposed to in the program it runs.

use std::path::PathBuf;

use hutch_host::{BuildError, ContainerError};

/// A failure of hutch: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--stdin` cannot be opened.
    #[error("cannot open the --stdin file {}", .path.display())]
    Stdin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The input file could not be copied into a sealed in-memory file.
    #[error("cannot copy the input {path} into a sealed in-memory file")]
    StdinCopy {
        path: String,
        #[source]
        source: hutch_host::InputError,
    },
    /// `--stdout` or `--stderr` cannot be created.
    #[error("cannot create the {flag} file {}", .path.display())]
    Output {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One of hutch's own standard descriptors cannot be handed on.
    #[error("cannot pass hutch's standard {which} to the program")]
    OwnStdio {
        which: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A `--copy-in` source cannot be read.
    #[error("cannot read the --copy-in source {}", .path.display())]
    CopyInSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `--copy-in` source is a directory or something else unusual.
    #[error("the --copy-in source {} is not a regular file", .path.display())]
    CopyInNotFile { path: PathBuf },
    /// Two `--copy-in` have the same destination.
    #[error("two --copy-in files go to {destination}")]
    CopyInTwice { destination: String },
    /// Two `--copy-out` have the same destination.
    #[error("two --copy-out files go to {}", .destination.display())]
    CopyOutTwice { destination: PathBuf },
    /// A `--copy-out` destination's directory is missing.
    #[error("cannot write the --copy-out destination {}", .path.display())]
    CopyOutDestination {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `--bind` source does not exist or cannot be resolved.
    #[error("cannot use the --bind source {}", .path.display())]
    BindSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A path is not valid UTF-8, which the container protocol needs.
    #[error("the {what} path {} is not valid UTF-8", .path.display())]
    NotUtf8 { what: &'static str, path: PathBuf },
    /// The report file cannot be opened.
    #[error("cannot open the --report file {}", .path.display())]
    ReportOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The report cannot be written.
    #[error("cannot write the report to {}", .path.display())]
    ReportWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The container did not start.
    #[error("cannot start the container")]
    Start(#[source] Box<BuildError>),
    /// A flag the container cannot be made with: a `--bind` or `--workdir`
    /// that collides with the container's own mounts.
    #[error("cannot use {flag} {value}")]
    Refused {
        flag: &'static str,
        value: String,
        #[source]
        source: Box<BuildError>,
    },
    /// A `hutch serve --bind` whose target lies inside a tmpfs that is
    /// emptied after every run, which a mount in it keeps from happening.
    #[error(
        "cannot use --bind {bind}: its target {target} lies inside {scratch}, which is emptied \
         after every run and cannot be while a mount is in it; give it a target outside \
         ({host}:/opt/NAME, say)"
    )]
    BindInScratch {
        bind: String,
        target: String,
        scratch: &'static str,
        host: String,
    },
    /// `hutch serve --listen` and `--grpc-listen` take the same port.
    #[error(
        "--listen {http} and --grpc-listen {grpc} take the same port: give gRPC a port of its \
         own (go-judge's is 5051)"
    )]
    SameAddress {
        http: std::net::SocketAddr,
        grpc: std::net::SocketAddr,
    },
    /// The container failed while files were copied in.
    #[error("cannot copy files into the container")]
    CopyInRequest(#[source] Box<ContainerError>),
    /// A `--copy-in` destination cannot be created.
    #[error("cannot create {destination} in the container for --copy-in {}", .source_path.display())]
    CopyInCreate {
        source_path: PathBuf,
        destination: String,
        #[source]
        source: InContainer,
    },
    /// A `--copy-in` file cannot be filled (a full work directory, say).
    #[error("cannot copy {} to {destination} in the container", .source_path.display())]
    CopyInWrite {
        source_path: PathBuf,
        destination: String,
        #[source]
        source: InContainer,
    },
    /// The container failed while running the program.
    #[error("cannot run the program")]
    Exec(#[source] Box<ContainerError>),
    /// `hutch serve --open-files` above the hard limit hutch has.
    #[error(
        "--open-files {asked} is above the hard limit on open files hutch was started with \
         ({hard}), which no container can raise: lower --open-files, or raise the hard \
         limit (ulimit -Hn; LimitNOFILE= under systemd)"
    )]
    OpenFilesAboveHardLimit { asked: u64, hard: u64 },
    /// A limit only a cgroup enforces, for a run that has none.
    #[error(
        "{flag} needs a cgroup, and this run has none (it is measured with rusage, as \
         --allow-rusage allows): run as root, or name a cgroup delegated to you with \
         --cgroup-parent or HUTCH_CGROUP_PARENT, or leave out {flag}"
    )]
    LimitNeedsCgroup { flag: &'static str },
    /// The stop signals cannot be caught.
    #[error("cannot prepare for stop signals")]
    StopSignals(#[source] hutch_host::StopError),
    /// hutch was asked to stop (Ctrl-C, `kill`, `timeout`) before the run
    /// was over.
    #[error("stopped by {signal}: the run was killed and its container removed")]
    Stopped { signal: &'static str },
}

/// An error reported by the container's init, as its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InContainer(pub String);

impl CliError {
    /// The message followed by every cause: `a: b: c`.
    pub fn chain(&self) -> String {
        hutch_host::error_chain(self)
    }
}
