//! The command line: what `hutch run` and `hutch bench` accept, parsed and
//! checked by clap.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hutch_host::SeccompPolicy;
use hutch_host::protocol::{BpfInstruction, MAX_TIME_NS};

use crate::units::{parse_count, parse_duration, parse_size};

/// A memory limit: a size of at least the protocol's minimum.
fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    let min = hutch_host::protocol::MIN_MEMORY_BYTES;
    if bytes < min {
        return Err(format!(
            "a memory limit must be at least {} KiB",
            min / 1024
        ));
    }
    Ok(bytes)
}

/// A default memory limit of `hutch serve`: a memory limit no larger than
/// a request may ask for.
fn parse_default_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_memory(text)?;
    if bytes > hutch_server::MAX_MEMORY_BYTES {
        return Err("a memory limit must be at most 1024T (1 PiB), as a request's is".into());
    }
    Ok(bytes)
}

/// A bearer token: not empty, which would turn authentication off (an
/// unset variable in `--auth-token "$TOKEN"`, say).
fn parse_token(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(
            "an empty --auth-token (or HUTCH_AUTH_TOKEN) would turn authentication \
             off: give a token, or leave both out"
                .into(),
        );
    }
    Ok(text.to_owned())
}

/// A process limit: a count the kernel can hold.
fn parse_processes(text: &str) -> Result<u32, String> {
    let count = parse_count(text)?;
    let max = hutch_host::protocol::MAX_PROCESSES;
    u32::try_from(count)
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("a process limit must be at most {max}"))
}

/// A tmpfs size: at least one page.
fn parse_tmpfs_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < 4096 {
        return Err("a tmpfs needs at least 4K".into());
    }
    Ok(bytes)
}

/// Run untrusted programs in a Linux sandbox.
#[derive(Debug, Parser)]
#[command(name = "hutch", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run one program in a fresh container and report how it went.
    #[command(after_long_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Measure what running a program in a container costs, next to
    /// starting it directly.
    #[command(after_long_help = crate::bench::BENCH_AFTER_HELP)]
    Bench(crate::bench::BenchArgs),
    /// Serve go-judge's REST API over HTTP (and its gRPC API, with
    /// --grpc-listen), running each command in a pooled container.
    #[command(after_long_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),
}

const SERVE_AFTER_HELP: &str = "\
Endpoints (go-judge's): POST /run, GET/POST /file, GET/DELETE /file/{id},
GET /version, GET /config, GET /metrics (Prometheus), and the WebSockets
/stream (programs fed and read while they run) and /ws (many /run requests
over one connection). With --auth-token, every request but /version and
/config needs `Authorization: Bearer TOKEN`.

With --grpc-listen, go-judge's gRPC service pb.Executor too (Exec,
ExecStream, FileList, FileGet, FileAdd, FileDelete), for clients such as
JOJ3; with --auth-token, every call needs the metadata
`authorization: Bearer TOKEN`.

A limit a request leaves at 0 gets the server's default: the CPU limit as
the wall-clock limit (--default-clock-limit when neither is given), the
--default-memory-limit and the --default-proc-limit. Every program may
write files up to --output-limit and open --open-files files, and runs
under the --seccomp policy.

SIGTERM, SIGINT or SIGHUP (unless started ignored, as under nohup) stops
the server: it stops accepting, lets running commands finish for
--shutdown-grace (a second such signal ends it at once), kills what is
left, and removes every container and cgroup. At start it removes the
cgroups and the temporary file stores that killed earlier hutch processes
left.

Examples:
  hutch serve
  hutch serve --listen 0.0.0.0:5050 --auth-token \"$TOKEN\" --parallelism 4
  hutch serve --grpc-listen 127.0.0.1:5051
  hutch serve --src-prefix /srv/testdata --file-store /var/lib/hutch/files
  hutch serve --bind /opt/jdk-21 --bind /srv/pypy3:/usr/local/pypy3";

/// Options of `hutch serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5050")]
    pub listen: std::net::SocketAddr,

    /// Address to serve go-judge's gRPC API on too (go-judge's is
    /// 127.0.0.1:5051) [default: no gRPC].
    #[arg(long = "grpc-listen", value_name = "ADDR")]
    pub grpc_listen: Option<std::net::SocketAddr>,

    /// Commands run at once, each in a container kept ready; a request with
    /// more runs alone, in containers built for it too [default: the number
    /// of CPUs, at least 2].
    #[arg(long, value_name = "N", value_parser = parse_parallelism)]
    pub parallelism: Option<usize>,

    /// Bearer token every request but /version and /config must bring; not
    /// empty [default: none; also read from HUTCH_AUTH_TOKEN].
    #[arg(
        long = "auth-token",
        value_name = "TOKEN",
        env = "HUTCH_AUTH_TOKEN",
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub auth_token: Option<String>,

    /// Directory of the file store [default: a private temporary directory,
    /// removed at shutdown].
    #[arg(long = "file-store", value_name = "DIR")]
    pub file_store: Option<PathBuf>,

    /// A host directory `src` files of requests may come from; repeatable,
    /// or comma-separated. Without one, every `src` is refused.
    #[arg(long = "src-prefix", value_name = "DIR", value_delimiter = ',')]
    pub src_prefix: Vec<PathBuf>,

    /// Bind a host path into every container, read-only (a compiler or
    /// runtime installed outside /usr, say; go-judge's mount.yaml). DST is
    /// absolute and defaults to SRC; it may not hide the container's own
    /// mounts (/, /w, /tmp, /dev, /proc, …; a system bind such as /usr may
    /// be replaced) nor lie inside /w, /tmp, /dev/shm, /dev or /proc. Repeatable. Never read-write: every run
    /// would see what earlier runs wrote there.
    #[arg(long, value_name = "SRC[:DST]", value_parser = parse_read_only_bind)]
    pub bind: Vec<Bind>,

    /// Largest file a copy-out reads when a command gives no copyOutMax.
    #[arg(long = "copy-out-limit", value_name = "SIZE", default_value = "64M",
          value_parser = parse_size)]
    pub copy_out_limit: u64,

    /// Largest file a program may write, and the most a collector keeps.
    #[arg(long = "output-limit", value_name = "SIZE", default_value = "256M",
          value_parser = parse_size)]
    pub output_limit: u64,

    /// Open-file limit of every program.
    #[arg(long = "open-files", value_name = "N", default_value = "256",
          value_parser = parse_count)]
    pub open_files: u64,

    /// Wall-clock limit of a command that gives neither a CPU nor a clock
    /// limit.
    #[arg(long = "default-clock-limit", value_name = "DUR", default_value = "60s",
          value_parser = parse_time_limit)]
    pub default_clock_limit: Duration,

    /// Memory limit of a command that gives none: at least 1M, at most 1P,
    /// as requests' limits.
    #[arg(long = "default-memory-limit", value_name = "SIZE", default_value = "1G",
          value_parser = parse_default_memory)]
    pub default_memory_limit: u64,

    /// Process limit of a command that gives none.
    #[arg(long = "default-proc-limit", value_name = "N", default_value = "256",
          value_parser = parse_processes)]
    pub default_proc_limit: u32,

    /// Requests that may wait for containers; one more is answered 503.
    #[arg(long = "max-queue", value_name = "N", default_value = "512",
          value_parser = parse_count)]
    pub max_queue: u64,

    /// Largest request body; a larger one is answered 413.
    #[arg(long = "max-body", value_name = "SIZE", default_value = "64M",
          value_parser = parse_size)]
    pub max_body: u64,

    /// How long shutdown lets running commands finish before it kills them
    /// (a second stop signal kills them at once).
    #[arg(long = "shutdown-grace", value_name = "DUR", default_value = "10s",
          value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a connection may stay idle before it is closed: waiting for
    /// a request over HTTP/1.1, with no call open over gRPC. A request body
    /// or a call's message with no part coming for as long fails (408,
    /// DEADLINE_EXCEEDED), and a connection whose client takes none of its
    /// answer for as long is closed.
    #[arg(long = "idle-timeout", value_name = "DUR", default_value = "30s",
          value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How the containers are made.
    #[command(flatten)]
    pub containers: ContainerArgs,

    /// The seccomp policy of every program: default, none, or a policy
    /// file (as for `hutch run`).
    #[arg(long, value_name = "POLICY", default_value = "default", value_parser = parse_seccomp)]
    pub seccomp: Seccomp,

    /// Log level: error, warn, info, debug or trace. hutch's own events are
    /// all at info and above; debug and trace add those of the HTTP
    /// libraries, in debug builds only (release builds leave them out).
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info")]
    pub log_level: tracing::Level,
}

fn parse_parallelism(text: &str) -> Result<usize, String> {
    match parse_count(text)? {
        0 => Err("the parallelism must be at least 1".into()),
        n if n > 4096 => Err("the parallelism must be at most 4096".into()),
        n => Ok(n as usize),
    }
}

const RUN_AFTER_HELP: &str = "\
The program sees a read-only system (/usr, /lib, /bin, ...), an empty
writable work directory and /tmp, no network and no host processes.

Durations: 2s, 500ms, 250us, 1.5 (seconds), 2m, 1h.
Sizes: 4096 (bytes), 64K, 16M, 1G (powers of 1024).

Exit status: 0 when the program exited with 0 within every limit, 1 for any
other verdict of the program (non-zero exit, signal, a limit exceeded) or a
--copy-out file it did not leave, 2 when hutch itself failed or the program
could not be started.

Examples:
  hutch run -- echo hello
  hutch run --time 1s --output 16M --copy-in sol.py -- python3 sol.py
  hutch run --copy-in main.c --copy-out a.out -- cc -O2 main.c
  hutch run --report /dev/stdout --quiet -- sh -c 'exit 3'
  hutch run --seccomp policy.json -- ./prog";

/// Options of `hutch run` and `hutch serve` about the containers they make.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// Size of the work directory's tmpfs [default: 64M].
    #[arg(long = "workdir-size", value_name = "SIZE", value_parser = parse_tmpfs_size,
          allow_hyphen_values = true)]
    pub workdir_size: Option<u64>,

    /// Where no cgroup can be made (an unprivileged user without a delegated
    /// cgroup), measure with rusage instead of failing: CPU of reaped
    /// processes, memory as the largest process's peak, and no memory or
    /// process limit. Every result's `accounting` says which was used.
    #[arg(long = "allow-rusage")]
    pub allow_rusage: bool,

    /// The cgroup to make the containers' groups under, which must exist: a
    /// cgroup v2 directory holding no process (for an unprivileged user,
    /// one delegated to them), or for v1 a path relative to this process's
    /// cgroup in each hierarchy [default: HUTCH_CGROUP_PARENT, else this
    /// process's own cgroup, except as root on v2 outside the hierarchy's
    /// root group: `hutch` at that root, made when first needed].
    #[arg(long = "cgroup-parent", value_name = "DIR")]
    pub cgroup_parent: Option<PathBuf>,
}

impl ContainerArgs {
    /// `builder` with these options applied.
    pub fn apply(&self, mut builder: hutch_host::ContainerBuilder) -> hutch_host::ContainerBuilder {
        if let Some(bytes) = self.workdir_size {
            builder = builder.workdir_size(bytes);
        }
        if self.allow_rusage {
            builder = builder.allow_rusage();
        }
        if let Some(parent) = &self.cgroup_parent {
            builder = builder.cgroup_parent(parent);
        }
        builder
    }
}

/// Options of `hutch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// CPU time limit: user plus system time of every process of the run.
    #[arg(long, value_name = "DUR", value_parser = parse_time_limit, allow_hyphen_values = true)]
    pub time: Option<Duration>,

    /// Wall-clock limit [default: 2 × --time + 1s when --time is given,
    /// otherwise none].
    #[arg(long = "wall-time", value_name = "DUR", value_parser = parse_time_limit,
          allow_hyphen_values = true)]
    pub wall_time: Option<Duration>,

    /// Largest file the program may write.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub output: Option<u64>,

    /// Stack size limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub stack: Option<u64>,

    /// Limit on open file descriptors.
    #[arg(long = "open-files", value_name = "N", value_parser = parse_count,
          allow_hyphen_values = true)]
    pub open_files: Option<u64>,

    /// Memory limit of the run (all its processes; swap off). At least 1M.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,

    /// Limit on processes and threads alive at once [default: 2048, as
    /// Podman's, so that a fork bomb cannot take every process the host
    /// has; none when the run is measured by rusage].
    #[arg(long, value_name = "N", value_parser = parse_processes, allow_hyphen_values = true)]
    pub processes: Option<u32>,

    /// How the container is made.
    #[command(flatten)]
    pub container: ContainerArgs,

    /// Host file the program reads as its standard input [default: hutch's].
    #[arg(long, value_name = "PATH")]
    pub stdin: Option<PathBuf>,

    /// Host file (created or truncated) for the program's standard output
    /// [default: hutch's].
    #[arg(long, value_name = "PATH")]
    pub stdout: Option<PathBuf>,

    /// Host file (created or truncated) for the program's standard error
    /// [default: hutch's].
    #[arg(long, value_name = "PATH")]
    pub stderr: Option<PathBuf>,

    /// Copy a host file into the container, keeping its mode. DST is
    /// relative to the work directory and defaults to SRC's file name; a DST
    /// ending in / is a directory to put it in. Repeatable.
    #[arg(long = "copy-in", value_name = "SRC[:DST]", value_parser = parse_copy_in)]
    pub copy_in: Vec<CopyIn>,

    /// After the run, whatever its verdict, copy a file the program left
    /// out of the container, keeping its permission bits. PATH is relative
    /// to the work directory; DEST is a host path and defaults to PATH's
    /// file name in the current directory; a DEST ending in / is a
    /// directory to put it in. Only a regular file is copied, and never
    /// through a symbolic link. Repeatable.
    #[arg(long = "copy-out", value_name = "PATH[:DEST]", value_parser = parse_copy_out)]
    pub copy_out: Vec<CopyOut>,

    /// The largest file --copy-out takes; a larger one is not copied.
    #[arg(long = "copy-out-limit", value_name = "SIZE", default_value = "64M",
          value_parser = parse_size)]
    pub copy_out_limit: u64,

    /// Bind a host path into the container, read-only unless :rw is added.
    /// DST is absolute and defaults to SRC; it may not hide the container's
    /// own mounts (/, the work directory, /tmp, /dev, /proc, …; a system
    /// bind such as /usr may be replaced) nor lie inside the work
    /// directory, /dev or /proc. Repeatable.
    #[arg(long, value_name = "SRC[:DST][:rw]", value_parser = parse_bind)]
    pub bind: Vec<Bind>,

    /// Set an environment variable. The program gets only these, plus PATH
    /// when they do not set it. Repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<EnvVar>,

    /// The work directory inside the container (an empty tmpfs), where the
    /// program starts. It may be /tmp or /dev/shm, taking its place, but
    /// not hide the container's other mounts (/dev, /proc, /usr, …) nor lie
    /// inside one.
    #[arg(long, value_name = "DIR", default_value = "/w", value_parser = parse_workdir)]
    pub workdir: String,

    /// Write a JSON report of the run to PATH (/dev/stdout works).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Print no summary line on standard error.
    #[arg(long)]
    pub quiet: bool,

    /// The seccomp policy: `default` (a program that calls ptrace, mount,
    /// unshare, bpf, io_uring and the like is killed, verdict
    /// disallowed-syscall), `none`, or the path of a JSON policy file (see
    /// docs/seccomp.md; write ./default for a file of that name).
    #[arg(long, value_name = "POLICY", default_value = "default", value_parser = parse_seccomp)]
    pub seccomp: Seccomp,

    /// The program: a path inside the container, or a bare name: a program
    /// of that name copied into the work directory, else one found through
    /// PATH there.
    #[arg(value_name = "PROGRAM")]
    pub program: String,

    /// Its arguments.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

impl RunArgs {
    /// The program and its arguments.
    pub fn argv(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(&self.program).chain(&self.args).cloned()
    }

    /// The wall-clock limit in force: the one given, or twice the CPU
    /// limit plus a second.
    pub fn effective_wall_time(&self) -> Option<Duration> {
        self.wall_time.or_else(|| {
            self.time.map(|cpu| {
                cpu.saturating_mul(2)
                    .saturating_add(Duration::from_secs(1))
                    .min(Duration::from_nanos(MAX_TIME_NS))
            })
        })
    }
}

/// One `--copy-in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyIn {
    /// The host file.
    pub source: PathBuf,
    /// Where it goes, relative to the work directory, normalised.
    pub destination: String,
}

/// One `--copy-out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// The file in the container, relative to the work directory,
    /// normalised.
    pub source: String,
    /// The host path it goes to.
    pub destination: PathBuf,
}

/// One `--bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host path, as given.
    pub source: PathBuf,
    /// The path inside the container; `None` for the same as the source.
    pub target: Option<String>,
    /// Read-write.
    pub writable: bool,
}

impl std::fmt::Display for Bind {
    /// As it was given: `SRC[:DST][:rw]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.source.display())?;
        if let Some(target) = &self.target {
            write!(f, ":{target}")?;
        }
        if self.writable {
            f.write_str(":rw")?;
        }
        Ok(())
    }
}

/// The `--seccomp` policy, read, checked and compiled while the command
/// line is parsed, so that a bad policy file is a usage error (exit 2)
/// naming the file.
#[derive(Debug, Clone)]
pub struct Seccomp {
    /// The BPF program to install; empty for `none`.
    pub program: Vec<BpfInstruction>,
}

/// One `--env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The name.
    pub key: String,
    /// The value.
    pub value: String,
}

fn parse_time_limit(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration > Duration::from_nanos(MAX_TIME_NS) {
        return Err("time limits are at most 24h".into());
    }
    Ok(duration)
}

fn parse_copy_in(text: &str) -> Result<CopyIn, String> {
    let (source, destination) = match text.split_once(':') {
        Some((source, destination)) => (source, Some(destination)),
        None => (text, None),
    };
    if source.is_empty() {
        return Err("the source file is missing (expected SRC[:DST])".into());
    }
    let file_name = || {
        Path::new(source)
            .file_name()
            .and_then(|name| name.to_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{source:?} does not name a file"))
    };
    let destination = match destination {
        None => file_name()?,
        Some("") => return Err("the destination is empty (expected SRC[:DST])".into()),
        Some(dir) if dir.ends_with('/') => {
            let dir = relative_path("the destination", dir)?;
            let name = file_name()?;
            if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            }
        }
        Some(destination) => relative_path("the destination", destination)?,
    };
    if destination.is_empty() {
        return Err("the destination names no file".into());
    }
    Ok(CopyIn {
        source: source.into(),
        destination,
    })
}

fn parse_copy_out(text: &str) -> Result<CopyOut, String> {
    let (source, destination) = match text.split_once(':') {
        Some((source, destination)) => (source, Some(destination)),
        None => (text, None),
    };
    let source = relative_path("the path in the container", source)?;
    let Some(file_name) = source.rsplit('/').next().filter(|name| !name.is_empty()) else {
        return Err("the path in the container is missing (expected PATH[:DEST])".into());
    };
    let destination = match destination {
        None => PathBuf::from(file_name),
        Some("") => return Err("the destination is empty (expected PATH[:DEST])".into()),
        Some(dir) if dir.ends_with('/') => Path::new(dir).join(file_name),
        Some(destination) => PathBuf::from(destination),
    };
    Ok(CopyOut {
        source,
        destination,
    })
}

/// Normalises a path relative to the work directory: no leading `/`, no
/// `..`, `.` and repeated slashes dropped.
fn relative_path(what: &str, text: &str) -> Result<String, String> {
    let path = Path::new(text);
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(
                part.to_str()
                    .expect("components of a str are str")
                    .to_owned(),
            ),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "{what} {text:?} must stay inside the work directory (no ..)"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{what} {text:?} must be relative to the work directory"
                ));
            }
        }
    }
    Ok(parts.join("/"))
}

/// A `--bind` of `hutch serve`: as [`parse_bind`], but never read-write.
fn parse_read_only_bind(text: &str) -> Result<Bind, String> {
    let bind = parse_bind_as(text, "SRC[:DST]")?;
    if bind.writable {
        return Err(
            "hutch serve binds read-only only: every run would see what earlier runs \
             wrote in a read-write bind (copy files in per request instead)"
                .into(),
        );
    }
    Ok(bind)
}

fn parse_bind(text: &str) -> Result<Bind, String> {
    parse_bind_as(text, "SRC[:DST][:rw]")
}

/// A `--bind` whose errors name its accepted `form`.
fn parse_bind_as(text: &str, form: &str) -> Result<Bind, String> {
    let (rest, writable) = if let Some(rest) = text.strip_suffix(":rw") {
        (rest, true)
    } else if let Some(rest) = text.strip_suffix(":ro") {
        (rest, false)
    } else {
        (text, false)
    };
    let (source, target) = match rest.split_once(':') {
        Some((source, target)) => (source, Some(target)),
        None => (rest, None),
    };
    if source.is_empty() {
        return Err(format!("the source path is missing (expected {form})"));
    }
    if let Some(target) = target {
        if target.contains(':') {
            return Err(format!(
                "too many ':' in {text:?} (expected {form}; paths cannot hold ':')"
            ));
        }
        if !target.starts_with('/') {
            return Err(format!("the target {target:?} must be an absolute path"));
        }
        if Path::new(target)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(format!("the target {target:?} must not contain .."));
        }
    }
    Ok(Bind {
        source: source.into(),
        target: target.map(str::to_owned),
        writable,
    })
}

fn parse_seccomp(text: &str) -> Result<Seccomp, String> {
    let policy = match text {
        "default" => SeccompPolicy::default_policy(),
        "none" => SeccompPolicy::none(),
        "" => return Err("expected default, none or the path of a policy file".into()),
        path => SeccompPolicy::from_file(path).map_err(|error| hutch_host::error_chain(&error))?,
    };
    let program = policy
        .compile()
        .map_err(|error| hutch_host::error_chain(&error))?;
    Ok(Seccomp { program })
}

fn parse_env(text: &str) -> Result<EnvVar, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(EnvVar {
            key: key.into(),
            value: value.into(),
        }),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty KEY, not {text:?}"
        )),
    }
}

fn parse_workdir(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "the work directory {text:?} must be an absolute path"
        ));
    }
    let path = Path::new(text);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("the work directory {text:?} must not contain .."));
    }
    let normal: Vec<&str> = text
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if normal.is_empty() {
        return Err("the work directory cannot be /".into());
    }
    Ok(format!("/{}", normal.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn copy_out_sources_and_destinations() {
        let c = parse_copy_out("a.out").unwrap();
        assert_eq!(
            (c.source.as_str(), c.destination),
            ("a.out", PathBuf::from("a.out"))
        );
        let c = parse_copy_out("./build//bin/prog:/tmp/x/").unwrap();
        assert_eq!(
            (c.source.as_str(), c.destination),
            ("build/bin/prog", PathBuf::from("/tmp/x/prog"))
        );
        let c = parse_copy_out("out.txt:result.txt").unwrap();
        assert_eq!(c.destination, PathBuf::from("result.txt"));
        for bad in ["", ":x", ".", "./", "../x", "/abs", "x:"] {
            assert!(parse_copy_out(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn copy_in_destinations() {
        let c = parse_copy_in("/tmp/a/prog.sh").unwrap();
        assert_eq!(c.source, PathBuf::from("/tmp/a/prog.sh"));
        assert_eq!(c.destination, "prog.sh");
        assert_eq!(parse_copy_in("x:y/z").unwrap().destination, "y/z");
        assert_eq!(parse_copy_in("x:./y//z").unwrap().destination, "y/z");
        assert_eq!(parse_copy_in("dir/x:sub/").unwrap().destination, "sub/x");
        assert_eq!(parse_copy_in("dir/x:./").unwrap().destination, "x");
        for bad in [
            "",
            ":x",
            "x:",
            "x:/abs",
            "x:../up",
            "x:a/../../b",
            "x:.",
            "/:",
        ] {
            assert!(parse_copy_in(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn serve_binds_are_read_only() {
        let b = parse_read_only_bind("/opt/jdk:/usr/lib/jvm/jdk").unwrap();
        assert_eq!(b.target.as_deref(), Some("/usr/lib/jvm/jdk"));
        assert!(!b.writable);
        assert!(!parse_read_only_bind("/opt/jdk:ro").unwrap().writable);
        let error = parse_read_only_bind("/cache:rw").unwrap_err();
        assert!(error.contains("read-only"), "{error}");
        assert!(parse_read_only_bind("/opt:relative").is_err());
        let error = parse_read_only_bind("").unwrap_err();
        assert!(error.ends_with("(expected SRC[:DST])"), "{error}");
    }

    #[test]
    fn binds() {
        let b = parse_bind("/data").unwrap();
        assert_eq!((b.target, b.writable), (None, false));
        let b = parse_bind("/data:/in").unwrap();
        assert_eq!((b.target.as_deref(), b.writable), (Some("/in"), false));
        let b = parse_bind("/data:/out:rw").unwrap();
        assert_eq!((b.target.as_deref(), b.writable), (Some("/out"), true));
        let b = parse_bind("/data:rw").unwrap();
        assert_eq!((b.target, b.writable), (None, true));
        let b = parse_bind("/data:/in:ro").unwrap();
        assert_eq!((b.target.as_deref(), b.writable), (Some("/in"), false));
        for bad in ["", ":rw", "/a:rel", "/a:/b:/c", "/a:/b/../c"] {
            assert!(parse_bind(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn env_vars() {
        let e = parse_env("A=b=c").unwrap();
        assert_eq!((e.key.as_str(), e.value.as_str()), ("A", "b=c"));
        assert_eq!(parse_env("EMPTY=").unwrap().value, "");
        assert!(parse_env("=x").is_err());
        assert!(parse_env("NOEQUALS").is_err());
    }

    #[test]
    fn workdirs() {
        assert_eq!(parse_workdir("/w").unwrap(), "/w");
        assert_eq!(parse_workdir("/a//b/./").unwrap(), "/a/b");
        for bad in ["w", "/", "//", "/a/../b", ""] {
            assert!(parse_workdir(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn seccomp_policies() {
        let run = |argv: &[&str]| match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Run(run),
            }) => Ok(run.seccomp.program),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(error) => Err(error.to_string()),
        };
        let default = run(&["hutch", "run", "true"]).unwrap();
        assert_eq!(default, SeccompPolicy::default_policy().compile().unwrap());
        assert!(!default.is_empty());
        assert_eq!(
            run(&["hutch", "run", "--seccomp", "default", "true"]).unwrap(),
            default
        );
        assert!(
            run(&["hutch", "run", "--seccomp", "none", "true"])
                .unwrap()
                .is_empty()
        );
        let error = run(&["hutch", "run", "--seccomp", "/nonexistent/p.json", "true"]).unwrap_err();
        assert!(
            error.contains("cannot read the seccomp policy file /nonexistent/p.json"),
            "{error}"
        );
        assert!(run(&["hutch", "run", "--seccomp", "", "true"]).is_err());
    }

    #[test]
    fn default_wall_time() {
        let args = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(run) => run,
            other => panic!("parsed as {other:?}"),
        };
        let run = args(&["hutch", "run", "--time", "1.5", "true"]);
        assert_eq!(run.effective_wall_time(), Some(Duration::from_secs(4)));
        let run = args(&[
            "hutch",
            "run",
            "--time",
            "1s",
            "--wall-time",
            "300ms",
            "true",
        ]);
        assert_eq!(run.effective_wall_time(), Some(Duration::from_millis(300)));
        let run = args(&["hutch", "run", "true"]);
        assert_eq!(run.effective_wall_time(), None);
        let run = args(&["hutch", "run", "--time", "20h", "true"]);
        assert_eq!(run.effective_wall_time(), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn program_arguments_keep_their_dashes() {
        let Command::Run(run) =
            Cli::try_parse_from(["hutch", "run", "--quiet", "sh", "-c", "--time"])
                .unwrap()
                .command
        else {
            panic!("not parsed as run");
        };
        assert!(run.quiet);
        assert_eq!(run.argv().collect::<Vec<_>>(), ["sh", "-c", "--time"]);
        assert_eq!(run.time, None);
        let Command::Run(run) = Cli::try_parse_from(["hutch", "run", "--", "-prog", "--quiet"])
            .unwrap()
            .command
        else {
            panic!("not parsed as run");
        };
        assert!(!run.quiet);
        assert_eq!(run.argv().collect::<Vec<_>>(), ["-prog", "--quiet"]);
        assert!(Cli::try_parse_from(["hutch", "run", "--bogus", "true"]).is_err());
        assert!(Cli::try_parse_from(["hutch", "run", "--time", "1s"]).is_err());
    }
}
