//! `hutch bench`: what running a program in a container costs, next to
//! running it straight from this process, measured in one run.
//!
//! Every operation runs the same program (`/bin/true` by default) with its
//! standard descriptors on `/dev/null`, is warmed up, then timed with
//! [`Instant`] sample by sample. The table (or the JSON object) gives the
//! median and the 90th percentile of the samples (nearest rank) and the
//! ratio of each median to the median of `baseline`:
//!
//! - `baseline`: start the program from this process and wait for it, with
//!   [`std::process::Command`]. On Linux with glibc, `Command` spawns with
//!   `posix_spawn` when nothing forces a fork (no `pre_exec`, no uid, gid or
//!   process-group change), and glibc's `posix_spawn` is
//!   `clone3(CLONE_VM | CLONE_VFORK)` (`clone` before glibc 2.34) +
//!   `execve`: the vfork-like floor that any way of running a program pays.
//!   `strace -f -e trace=clone3,execve hutch bench` shows it.
//! - `warm-exec`: one [`Container::exec`] in a container built beforehand.
//! - `baseline-idle` and `warm-exec-idle`: the same, each after
//!   [`IDLE_PAUSE`] in which this process runs nothing, as a judge that gets
//!   a submission now and then. Back-to-back loops hide what a kernel does
//!   lazily after a quiet spell (an RCU grace period behind a cgroup move,
//!   say); these rows show it.
//! - `pool-throughput`: one worker thread per CPU, each running the program
//!   through one shared [`hutch_host::Pool`] of as many containers (check out,
//!   exec, reset, give back)
//!   over and over. Samples are rounds: every worker runs a batch, and the
//!   sample is the round's wall time divided by the execs of the round. The
//!   same rounds with a single worker give the throughput ratio of the pool
//!   to one container, shown under the table.
//! - `cold-container`: [`ContainerBuilder::build`] with the defaults, then
//!   [`Container::destroy`], from one builder made beforehand (as a server
//!   keeps one: it detects the cgroup layout once).
//! - `hutch-run`: `hutch run --quiet -- PROGRAM` as a child process, this
//!   very executable.
//! - `serve-run`: one `POST /run` of the program to a `hutch serve` started
//!   in this process (as many containers as CPUs, no seccomp filter, as
//!   `warm-exec` has none), from one client on a kept-alive connection, in
//!   the shape a judge sends: empty stdin, stdout and stderr collected.
//!   Answered, checked `Accepted`. `serve-2-clients` and `serve-4-clients`:
//!   as many clients, each on its own thread and connection, in rounds as
//!   for `pool-throughput`; the same rounds with one client give the
//!   throughput ratios shown under the table.
//! - What `/run` adds to a warm exec is also measured in pairs: as many
//!   rounds again of one warm exec and one `POST /run`, back to back, in
//!   alternating order, with a container and a client kept for it. The
//!   median of the pairs' differences is what the server adds; unlike the
//!   difference of the two medians, which were measured seconds apart, it
//!   does not move with the machine's load between the two loops.
//!
//! The program must succeed (exit 0) everywhere: a benchmark of a program
//! that cannot start would time the failure. Anything that goes wrong ends
//! the command with status 2 and a message on standard error.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

use clap::Args;
use hutch_host::protocol::Status;
use hutch_host::{
    BuildError, Container, ContainerBuilder, ContainerError, ExecSpec, Pool, PoolError,
};
use serde::Serialize;

use crate::units::parse_count;

/// Exit status when the benchmark could not run.
const EXIT_FAILURE: u8 = 2;
/// Iterations run, and thrown away, before measuring each operation.
const WARM_UP: usize = 20;
/// At most this many iterations of the operations that build a container.
const MAX_COLD_ITERATIONS: usize = 200;
/// `pool-throughput` aims at this many rounds (samples).
const POOL_ROUNDS: usize = 50;
/// The quiet spell before each sample of the `-idle` operations.
pub const IDLE_PAUSE: Duration = Duration::from_millis(100);
/// At most this many samples of each `-idle` operation.
const MAX_IDLE_ITERATIONS: usize = 50;

/// Options of `hutch bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The program to run: a path, or a name looked up through PATH (the
    /// host's for `baseline`, the container's otherwise). It gets no
    /// arguments and must exit with status 0.
    #[arg(long, value_name = "PATH", default_value = "/bin/true")]
    pub program: String,

    /// Measured iterations of each operation; the operations that build a
    /// container run at most 200.
    #[arg(long, value_name = "N", default_value = "1000", value_parser = parse_iterations)]
    pub iterations: usize,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) const BENCH_AFTER_HELP: &str = "\
Operations (each runs PROGRAM with its standard descriptors on /dev/null):
  baseline         start PROGRAM from hutch and wait for it (posix_spawn)
  warm-exec        run PROGRAM once in a container built beforehand
  baseline-idle    baseline, then warm-exec, each after 100 ms of doing
  warm-exec-idle   nothing (as a judge that gets a submission now and then)
  pool-throughput  one container per CPU, each on its own thread, running
                   PROGRAM in a loop; time per exec is wall time / execs
  cold-container   build a default container, then destroy it
  hutch-run        `hutch run --quiet -- PROGRAM` as a child process
  serve-run        one POST /run of PROGRAM (stdout and stderr collected)
                   to `hutch serve` in this process, from one client
  serve-N-clients  N clients on their own connections; time per request
                   is wall time / requests

Each operation is warmed up first. The ratio column divides each median by
the median of baseline, measured in the same run.

Exit status: 0 when every operation ran, 2 otherwise.

Examples:
  hutch bench
  hutch bench --iterations 200 --json
  hutch bench --program /usr/bin/python3";

fn parse_iterations(text: &str) -> Result<usize, String> {
    let count = parse_count(text)?;
    usize::try_from(count).map_err(|_| "the number is too large".into())
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The program cannot be started on the host.
    #[error("cannot run --program {program} on the host")]
    HostSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran on the host but did not succeed.
    #[error(
        "--program {program} failed on the host ({status}); the benchmark needs a program \
         that succeeds"
    )]
    HostFailed { program: String, status: ExitStatus },
    /// `/dev/null` cannot be opened.
    #[error("cannot open /dev/null")]
    DevNull(#[source] std::io::Error),
    /// A container did not start.
    #[error("cannot start a container")]
    Build(#[source] Box<BuildError>),
    /// The container failed while running the program.
    #[error("the container failed while running --program {program}")]
    Exec {
        program: String,
        #[source]
        source: Box<ContainerError>,
    },
    /// The pool could not run the program.
    #[error("the pool failed while running --program {program}")]
    Pool {
        program: String,
        #[source]
        source: Box<PoolError>,
    },
    /// The program could not be started inside the container.
    #[error(
        "--program {program} cannot be started in the container: {message} (the container \
         sees the host's /usr, /lib, /lib64, /bin and /sbin, and nothing else of its files)"
    )]
    NotStarted { program: String, message: String },
    /// The program ran in the container but did not succeed.
    #[error(
        "--program {program} failed in the container ({status}); the benchmark needs a \
         program that succeeds"
    )]
    ContainerFailed { program: String, status: Status },
    /// This executable cannot be found or started again for `hutch-run`.
    #[error("cannot start `hutch run` ({})", .path.display())]
    RunSpawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `hutch run` failed.
    #[error("`hutch run --quiet -- {program}` failed ({status}){}", stderr_suffix(.stderr))]
    RunFailed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A worker thread could not be started.
    #[error("cannot start a worker thread")]
    Thread(#[source] std::io::Error),
    /// The server did not start.
    #[error("cannot start hutch serve")]
    Serve(#[source] hutch_server::ServerError),
    /// A `/run` request failed.
    #[error("POST /run of --program {program} failed: {reason}")]
    Request { program: String, reason: String },
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl BenchError {
    /// The message followed by every cause: `a: b: c`.
    fn chain(&self) -> String {
        hutch_host::error_chain(self)
    }
}

/// Runs `hutch bench` and returns its exit status.
pub fn main(args: &BenchArgs) -> ExitCode {
    match measure(args) {
        Ok(results) => {
            let text = if args.json {
                let mut text = serde_json::to_string_pretty(&results.to_json())
                    .expect("the results always serialise");
                text.push('\n');
                text
            } else {
                results.table()
            };
            let mut stdout = std::io::stdout().lock();
            match std::io::Write::write_all(&mut stdout, text.as_bytes())
                .and_then(|()| std::io::Write::flush(&mut stdout))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    say!("hutch: error: cannot write the results: {error}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        Err(error) => {
            say!("hutch: error: {}", error.chain());
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Median and 90th percentile of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    median_ns: u64,
    p90_ns: u64,
}

impl Summary {
    /// Summarises samples in nanoseconds; there is at least one.
    fn of(mut samples: Vec<u64>) -> Self {
        assert!(!samples.is_empty(), "an operation ran at least once");
        samples.sort_unstable();
        Self {
            median_ns: nearest_rank(&samples, 50),
            p90_ns: nearest_rank(&samples, 90),
        }
    }
}

/// The `percent`th percentile of sorted samples by the nearest-rank method:
/// the smallest sample that at least `percent`% of the samples do not
/// exceed.
fn nearest_rank<T: Copy>(sorted: &[T], percent: usize) -> T {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// One measured operation.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    summary: Summary,
    /// How many times the operation ran while measured (for
    /// `pool-throughput`, execs over all workers).
    iterations: usize,
}

/// Everything one `hutch bench` measured.
#[derive(Debug)]
struct Results {
    program: String,
    cpus: usize,
    operations: Vec<Measured>,
    /// Time per exec of one container run in the pool's rounds.
    single_container: Summary,
    /// Time per request of one client in the serve rounds.
    single_client: Summary,
    /// Median of the paired differences `POST /run` less warm exec.
    serve_paired_added_ns: i64,
    serve_pairs: usize,
}

#[derive(Debug, Serialize)]
struct JsonResults<'a> {
    program: &'a str,
    cpus: usize,
    operations: Vec<JsonOperation>,
    /// Median of `warm-exec-idle` less the median of `baseline-idle`.
    idle_added_ns: i64,
    pool: JsonPool,
    serve: JsonServe,
}

#[derive(Debug, Serialize)]
struct JsonServe {
    /// Median of `serve-run` less the median of `warm-exec`.
    added_ns: i64,
    /// Median of the differences of `POST /run` and a warm exec timed
    /// back to back, pair by pair.
    paired_added_ns: i64,
    /// How many pairs.
    pairs: usize,
    /// Median time per request of one client in the serve rounds.
    single_client_ns: u64,
    /// Requests per second at 2 clients over those of one.
    throughput_ratio_2: f64,
    /// Requests per second at 4 clients over those of one.
    throughput_ratio_4: f64,
}

#[derive(Debug, Serialize)]
struct JsonOperation {
    name: &'static str,
    median_ns: u64,
    p90_ns: u64,
    /// Median over the median of `baseline`.
    ratio: f64,
    iterations: usize,
}

#[derive(Debug, Serialize)]
struct JsonPool {
    /// Worker threads, one container each.
    workers: usize,
    /// Median time per exec of one container in the same rounds.
    single_container_ns: u64,
    /// Execs per second of the pool over those of one container.
    throughput_ratio: f64,
}

impl Results {
    fn baseline(&self) -> Summary {
        self.operations[0].summary
    }

    fn ratio(&self, summary: Summary) -> f64 {
        summary.median_ns as f64 / self.baseline().median_ns as f64
    }

    fn pool(&self) -> Summary {
        self.operations
            .iter()
            .find(|op| op.name == "pool-throughput")
            .expect("pool-throughput is measured")
            .summary
    }

    fn throughput_ratio(&self) -> f64 {
        self.single_container.median_ns as f64 / self.pool().median_ns as f64
    }

    fn median(&self, name: &str) -> u64 {
        self.operations
            .iter()
            .find(|op| op.name == name)
            .map_or(0, |op| op.summary.median_ns)
    }

    /// What a warm exec adds to the baseline after a quiet spell, in the
    /// median.
    fn idle_added_ns(&self) -> i64 {
        self.median("warm-exec-idle") as i64 - self.median("baseline-idle") as i64
    }

    /// What `/run` adds to a warm exec, in the median.
    fn serve_added_ns(&self) -> i64 {
        self.median("serve-run") as i64 - self.median("warm-exec") as i64
    }

    /// Requests per second of `clients` clients over one client's.
    fn serve_throughput_ratio(&self, clients: usize) -> f64 {
        let name = match clients {
            2 => "serve-2-clients",
            _ => "serve-4-clients",
        };
        self.single_client.median_ns as f64 / self.median(name) as f64
    }

    fn to_json(&self) -> JsonResults<'_> {
        JsonResults {
            program: &self.program,
            cpus: self.cpus,
            operations: self
                .operations
                .iter()
                .map(|op| JsonOperation {
                    name: op.name,
                    median_ns: op.summary.median_ns,
                    p90_ns: op.summary.p90_ns,
                    ratio: self.ratio(op.summary),
                    iterations: op.iterations,
                })
                .collect(),
            idle_added_ns: self.idle_added_ns(),
            pool: JsonPool {
                workers: self.cpus,
                single_container_ns: self.single_container.median_ns,
                throughput_ratio: self.throughput_ratio(),
            },
            serve: JsonServe {
                added_ns: self.serve_added_ns(),
                paired_added_ns: self.serve_paired_added_ns,
                pairs: self.serve_pairs,
                single_client_ns: self.single_client.median_ns,
                throughput_ratio_2: self.serve_throughput_ratio(2),
                throughput_ratio_4: self.serve_throughput_ratio(4),
            },
        }
    }

    fn table(&self) -> String {
        let mut text = format!(
            "hutch bench: {}, {} CPU{}\n\n",
            self.program,
            self.cpus,
            if self.cpus == 1 { "" } else { "s" }
        );
        text.push_str(&format!(
            "{:<16} {:>10} {:>10} {:>9} {:>11}\n",
            "operation", "median", "p90", "ratio", "iterations"
        ));
        for op in &self.operations {
            text.push_str(&format!(
                "{:<16} {:>10} {:>10} {:>8.2}x {:>11}\n",
                op.name,
                human(op.summary.median_ns),
                human(op.summary.p90_ns),
                self.ratio(op.summary),
                op.iterations
            ));
        }
        text.push_str(&format!(
            "\nratio: median / median of baseline.\n\
             pool-throughput: {} worker{} sharing a pool run {:.2}x the execs\n\
             per second of one container ({} per exec alone, {} in the pool).\n",
            self.cpus,
            if self.cpus == 1 { "" } else { "s" },
            self.throughput_ratio(),
            human(self.single_container.median_ns),
            human(self.pool().median_ns),
        ));
        let idle = self.idle_added_ns();
        text.push_str(&format!(
            "-idle: after {} ms of doing nothing, a warm exec takes {}{}\n\
             than the baseline.\n",
            IDLE_PAUSE.as_millis(),
            human(idle.unsigned_abs()),
            if idle < 0 { " less" } else { " more" },
        ));
        let added = self.serve_added_ns();
        let paired = self.serve_paired_added_ns;
        text.push_str(&format!(
            "serve-run: POST /run takes {}{} than a warm exec timed next to it\n\
             (median of {} pairs; the medians differ by {}{}); 2 clients get\n\
             {:.2}x and 4 clients {:.2}x the requests per second of one ({} per\n\
             request alone).\n",
            human(paired.unsigned_abs()),
            if paired < 0 { " less" } else { " more" },
            self.serve_pairs,
            if added < 0 { "-" } else { "+" },
            human(added.unsigned_abs()),
            self.serve_throughput_ratio(2),
            self.serve_throughput_ratio(4),
            human(self.single_client.median_ns),
        ));
        text
    }
}

/// A duration in nanoseconds, in a unit that keeps three or four digits.
fn human(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn measure(args: &BenchArgs) -> Result<Results, BenchError> {
    let program = args.program.as_str();
    let iterations = args.iterations;
    let cold_iterations = iterations.min(MAX_COLD_ITERATIONS);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut operations = Vec::new();

    let baseline = timed(iterations, || spawn_on_host(program))?;
    operations.push(measured("baseline", baseline));

    let mut single = container_executor(program)?;
    let warm = timed(iterations, &mut single)?;
    operations.push(measured("warm-exec", warm));

    let idle_iterations = iterations.min(MAX_IDLE_ITERATIONS);
    let baseline_idle = timed_after_idle(idle_iterations, || spawn_on_host(program))?;
    operations.push(measured("baseline-idle", baseline_idle));
    let warm_idle = timed_after_idle(idle_iterations, &mut single)?;
    operations.push(measured("warm-exec-idle", warm_idle));

    // Every worker runs about `iterations` execs in `rounds` rounds.
    let batch = (iterations / POOL_ROUNDS).max(1);
    let rounds = (iterations / batch).max(1);
    let mut workers = pool_executors(program, cpus)?;
    rounds_per_exec(&mut workers, 1, WARM_UP)?;
    let pool = rounds_per_exec(&mut workers, rounds, batch)?;
    drop(workers);
    operations.push(Measured {
        name: "pool-throughput",
        summary: Summary::of(pool),
        iterations: rounds * batch * cpus,
    });
    let single_container = Summary::of(rounds_per_exec(
        std::slice::from_mut(&mut single),
        rounds,
        batch,
    )?);

    let serve = serve_measurements(program, iterations, cpus, &mut single)?;
    drop(single);
    operations.extend(serve.operations);
    let single_client = serve.single_client;

    // One builder, as a server keeps: it detects the cgroup layout once.
    let builder = ContainerBuilder::new();
    let cold = timed(cold_iterations, || {
        let container = builder
            .build()
            .map_err(|e| BenchError::Build(Box::new(e)))?;
        container.destroy();
        Ok(())
    })?;
    operations.push(measured("cold-container", cold));

    let exe = std::env::current_exe().map_err(|source| BenchError::RunSpawn {
        path: "/proc/self/exe".into(),
        source,
    })?;
    check_hutch_run(&exe, program)?;
    let run = timed(cold_iterations, || hutch_run(&exe, program))?;
    operations.push(measured("hutch-run", run));

    Ok(Results {
        program: program.into(),
        cpus,
        operations,
        single_container,
        single_client,
        serve_paired_added_ns: serve.paired_added_ns,
        serve_pairs: serve.pairs,
    })
}

/// What the serve operations measured.
struct ServeMeasured {
    operations: Vec<Measured>,
    single_client: Summary,
    /// Median of the paired differences, `POST /run` less warm exec.
    paired_added_ns: i64,
    pairs: usize,
}

/// `serve-run`, `serve-2-clients` and `serve-4-clients`, against a server
/// of this process that lives as long as the measurements; then `/run`
/// paired with `warm`, a warm exec.
fn serve_measurements(
    program: &str,
    iterations: usize,
    cpus: usize,
    warm: &mut Executor,
) -> Result<ServeMeasured, BenchError> {
    let mut config = hutch_server::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        parallelism: cpus,
        ..hutch_server::Config::default()
    };
    // As warm-exec: no seccomp filter.
    config.defaults.seccomp = Vec::new();
    let server = hutch_server::Server::start(config).map_err(BenchError::Serve)?;
    let body = serde_json::json!({"cmd": [{
        "args": [program],
        "files": [{"content": ""}, {"name": "stdout", "max": 1024}, {"name": "stderr", "max": 1024}],
        "cpuLimit": 10_000_000_000u64,
        "memoryLimit": 256u64 << 20,
    }]})
    .to_string();
    let client = |addr| -> Executor {
        let mut client = hutch_server::client::Client::new(addr);
        let body = body.clone();
        let program = program.to_owned();
        Box::new(move || {
            let answer =
                client
                    .post_json("/run", body.as_bytes())
                    .map_err(|e| BenchError::Request {
                        program: program.clone(),
                        reason: e.to_string(),
                    })?;
            if answer.status != 200 || answer.json()[0]["status"] != "Accepted" {
                return Err(BenchError::Request {
                    program: program.clone(),
                    reason: format!("answered {}: {}", answer.status, answer.text()),
                });
            }
            Ok(())
        })
    };
    let addr = server.addr();
    let mut one = client(addr);
    let latency = timed(iterations, &mut one)?;
    let mut operations = vec![measured("serve-run", latency)];
    let batch = (iterations / POOL_ROUNDS).max(1);
    let rounds = (iterations / batch).max(1);
    let single_client = Summary::of(rounds_per_exec(
        std::slice::from_mut(&mut one),
        rounds,
        batch,
    )?);
    for (name, clients) in [("serve-2-clients", 2), ("serve-4-clients", 4)] {
        let mut executors: Vec<Executor> = (0..clients).map(|_| client(addr)).collect();
        rounds_per_exec(&mut executors, 1, WARM_UP)?;
        let samples = rounds_per_exec(&mut executors, rounds, batch)?;
        operations.push(Measured {
            name,
            summary: Summary::of(samples),
            iterations: rounds * batch * clients,
        });
    }
    let differences = paired_differences(iterations, &mut one, warm)?;
    server.shutdown().map_err(BenchError::Serve)?;
    Ok(ServeMeasured {
        operations,
        single_client,
        pairs: differences.len(),
        paired_added_ns: median_difference(differences),
    })
}

/// Times `pairs` pairs of one run of `first` and one of `second`, back to
/// back, the order swapped every pair so that neither always runs right
/// after the other's work; returns each pair's time of `first` less that
/// of `second`, in nanoseconds.
fn paired_differences(
    pairs: usize,
    first: &mut Executor,
    second: &mut Executor,
) -> Result<Vec<i64>, BenchError> {
    fn timed_run(op: &mut Executor) -> Result<i64, BenchError> {
        let start = Instant::now();
        op()?;
        Ok(i64::try_from(nanos(start.elapsed())).unwrap_or(i64::MAX))
    }
    for _ in 0..WARM_UP {
        first()?;
        second()?;
    }
    let mut differences = Vec::with_capacity(pairs.min(1 << 16));
    for pair in 0..pairs {
        let (a, b) = if pair % 2 == 0 {
            let a = timed_run(first)?;
            (a, timed_run(second)?)
        } else {
            let b = timed_run(second)?;
            (timed_run(first)?, b)
        };
        differences.push(a.saturating_sub(b));
    }
    Ok(differences)
}

/// The median of differences (nearest rank); there is at least one.
fn median_difference(mut differences: Vec<i64>) -> i64 {
    assert!(!differences.is_empty(), "at least one pair ran");
    differences.sort_unstable();
    nearest_rank(&differences, 50)
}

fn measured(name: &'static str, samples: Vec<u64>) -> Measured {
    Measured {
        name,
        iterations: samples.len(),
        summary: Summary::of(samples),
    }
}

/// Runs `op` [`WARM_UP`] times, then `iterations` times timing each run;
/// returns the times in nanoseconds.
fn timed(
    iterations: usize,
    mut op: impl FnMut() -> Result<(), BenchError>,
) -> Result<Vec<u64>, BenchError> {
    for _ in 0..WARM_UP {
        op()?;
    }
    let mut samples = Vec::with_capacity(iterations.min(1 << 16));
    for _ in 0..iterations {
        let start = Instant::now();
        op()?;
        samples.push(nanos(start.elapsed()));
    }
    Ok(samples)
}

/// As [`timed`], but sleeps [`IDLE_PAUSE`] before each timed run.
fn timed_after_idle(
    iterations: usize,
    mut op: impl FnMut() -> Result<(), BenchError>,
) -> Result<Vec<u64>, BenchError> {
    op()?;
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        std::thread::sleep(IDLE_PAUSE);
        let start = Instant::now();
        op()?;
        samples.push(nanos(start.elapsed()));
    }
    Ok(samples)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn dev_null() -> Result<File, BenchError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(BenchError::DevNull)
}

/// `baseline`: the program started from this process, waited for.
fn spawn_on_host(program: &str) -> Result<(), BenchError> {
    let status = Command::new(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| BenchError::HostSpawn {
            program: program.into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::HostFailed {
            program: program.into(),
            status,
        })
    }
}

fn build() -> Result<Container, BenchError> {
    ContainerBuilder::new()
        .build()
        .map_err(|e| BenchError::Build(Box::new(e)))
}

/// Runs the program once, each time it is called, somewhere that stays
/// ready between calls.
type Executor = Box<dyn FnMut() -> Result<(), BenchError> + Send>;

/// An executor with a container of its own, built now.
fn container_executor(program: &str) -> Result<Executor, BenchError> {
    let mut container = build()?;
    let null = dev_null()?;
    let program = program.to_owned();
    Ok(Box::new(move || {
        let spec =
            ExecSpec::new([program.as_str()]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
        let result = container.exec(&spec).map_err(|source| BenchError::Exec {
            program: program.clone(),
            source: Box::new(source),
        })?;
        check_result(&program, result)
    }))
}

/// An executor that runs the program through a shared [`Pool`]: each run
/// checks a container out, execs, and returns it with a reset.
fn pool_executor(pool: &Pool, program: &str) -> Result<Executor, BenchError> {
    let pool = pool.clone();
    let null = dev_null()?;
    let program = program.to_owned();
    Ok(Box::new(move || {
        let spec =
            ExecSpec::new([program.as_str()]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
        let result = pool.run(&spec).map_err(|source| BenchError::Pool {
            program: program.clone(),
            source: Box::new(source),
        })?;
        check_result(&program, result)
    }))
}

/// Turns a run's result into the executor's outcome.
fn check_result(program: &str, result: hutch_host::protocol::ExecResult) -> Result<(), BenchError> {
    match result.status {
        Status::Ok => Ok(()),
        Status::RunnerError => Err(BenchError::NotStarted {
            program: program.to_owned(),
            message: result
                .error
                .map_or_else(|| "no reason given".into(), |error| error.message),
        }),
        status => Err(BenchError::ContainerFailed {
            program: program.to_owned(),
            status,
        }),
    }
}

/// The executors of `pool-throughput`, one per worker thread.
///
/// A [`Pool`] with one container per worker; every worker runs the program
/// through the pool (check out, exec, reset, give back), as a server would.
fn pool_executors(program: &str, workers: usize) -> Result<Vec<Executor>, BenchError> {
    let pool = Pool::new(ContainerBuilder::new(), workers);
    pool.wait_ready().map_err(|source| BenchError::Pool {
        program: program.to_owned(),
        source: Box::new(source),
    })?;
    (0..workers)
        .map(|_| pool_executor(&pool, program))
        .collect()
}

/// Runs `rounds` rounds, each executor on its own thread running `batch`
/// execs per round, and returns each round's wall time divided by its
/// execs, in nanoseconds.
///
/// The rounds are fenced by a barrier that this thread takes part in: it
/// starts the clock when the round starts and stops it when the last worker
/// is done. A worker that fails skips the work of the remaining rounds but
/// still meets the barrier, so that nobody waits forever; workers wait for
/// a go before their first round, which never comes if one of them cannot
/// be started.
fn rounds_per_exec(
    executors: &mut [Executor],
    rounds: usize,
    batch: usize,
) -> Result<Vec<u64>, BenchError> {
    let execs = (executors.len() * batch) as u64;
    let barrier = Barrier::new(executors.len() + 1);
    std::thread::scope(|scope| {
        let mut workers = Vec::with_capacity(executors.len());
        for executor in executors.iter_mut() {
            let barrier = &barrier;
            let (go, wait_for_go) = mpsc::channel::<()>();
            let worker = std::thread::Builder::new()
                .name("hutch-bench".into())
                .spawn_scoped(scope, move || {
                    if wait_for_go.recv().is_err() {
                        return Ok(());
                    }
                    let mut outcome = Ok(());
                    for _ in 0..rounds {
                        barrier.wait();
                        for _ in 0..batch {
                            if outcome.is_ok() {
                                outcome = executor();
                            }
                        }
                        barrier.wait();
                    }
                    outcome
                })
                // Dropping `workers` drops every `go`: the workers started
                // so far return at once.
                .map_err(BenchError::Thread)?;
            workers.push((worker, go));
        }
        for (_, go) in &workers {
            go.send(()).expect("a worker waits for its go");
        }
        let mut samples = Vec::with_capacity(rounds.min(1 << 16));
        for _ in 0..rounds {
            barrier.wait();
            let start = Instant::now();
            barrier.wait();
            samples.push(nanos(start.elapsed()) / execs);
        }
        for (worker, _) in workers {
            worker.join().expect("a worker never panics")?;
        }
        Ok(samples)
    })
}

/// `hutch run` of the program, once with its standard error captured so
/// that a failure says why.
fn check_hutch_run(exe: &std::path::Path, program: &str) -> Result<(), BenchError> {
    let output = hutch_run_command(exe, program)
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| BenchError::RunSpawn {
            path: exe.into(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BenchError::RunFailed {
            program: program.into(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// `hutch-run`: this executable's `hutch run`, as a user would type it.
fn hutch_run(exe: &std::path::Path, program: &str) -> Result<(), BenchError> {
    let status = hutch_run_command(exe, program)
        .stderr(Stdio::null())
        .status()
        .map_err(|source| BenchError::RunSpawn {
            path: exe.into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::RunFailed {
            program: program.into(),
            status,
            stderr: String::new(),
        })
    }
}

fn hutch_run_command(exe: &std::path::Path, program: &str) -> Command {
    let mut command = Command::new(exe);
    command
        .args(["run", "--quiet", "--", program])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&samples, 50), 5);
        assert_eq!(nearest_rank(&samples, 90), 9);
        assert_eq!(nearest_rank(&[7], 50), 7);
        assert_eq!(nearest_rank(&[7], 90), 7);
        assert_eq!(nearest_rank(&[1, 2], 90), 2);
        let summary = Summary::of(vec![30, 10, 20, 50, 40]);
        assert_eq!(
            summary,
            Summary {
                median_ns: 30,
                p90_ns: 50
            }
        );
    }

    #[test]
    fn median_of_differences_by_nearest_rank() {
        assert_eq!(median_difference(vec![5, -3, 40, 7, -10]), 5);
        assert_eq!(median_difference(vec![-2, 9]), -2);
        assert_eq!(median_difference(vec![-7]), -7);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(999), "999 ns");
        assert_eq!(human(452_345), "452.3 µs");
        assert_eq!(human(1_310_000), "1.31 ms");
        assert_eq!(human(2_500_000_000), "2.50 s");
    }

    fn results() -> Results {
        let op = |name, median_ns, p90_ns| Measured {
            name,
            summary: Summary { median_ns, p90_ns },
            iterations: 10,
        };
        Results {
            program: "/bin/true".into(),
            cpus: 2,
            operations: vec![
                op("baseline", 400, 500),
                op("warm-exec", 1000, 1200),
                op("baseline-idle", 800, 900),
                op("warm-exec-idle", 2000, 2400),
                op("pool-throughput", 600, 700),
                op("serve-run", 1200, 1400),
                op("serve-2-clients", 800, 900),
                op("serve-4-clients", 600, 700),
                op("cold-container", 4000, 5000),
                op("hutch-run", 6000, 7000),
            ],
            single_container: Summary {
                median_ns: 900,
                p90_ns: 1000,
            },
            single_client: Summary {
                median_ns: 1200,
                p90_ns: 1400,
            },
            serve_paired_added_ns: 150,
            serve_pairs: 10,
        }
    }

    #[test]
    fn json_ratios() {
        let json = serde_json::to_value(results().to_json()).unwrap();
        let ratios: Vec<f64> = json["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["ratio"].as_f64().unwrap())
            .collect();
        assert_eq!(ratios, [1.0, 2.5, 2.0, 5.0, 1.5, 3.0, 2.0, 1.5, 10.0, 15.0]);
        assert_eq!(json["idle_added_ns"], 1200);
        assert_eq!(json["pool"]["workers"], 2);
        assert_eq!(json["pool"]["throughput_ratio"], 1.5);
        assert_eq!(json["serve"]["added_ns"], 200);
        assert_eq!(json["serve"]["paired_added_ns"], 150);
        assert_eq!(json["serve"]["pairs"], 10);
        assert_eq!(json["serve"]["throughput_ratio_2"], 1.5);
        assert_eq!(json["serve"]["throughput_ratio_4"], 2.0);
    }

    #[test]
    fn table_rows() {
        let table = results().table();
        let row = table
            .lines()
            .find(|line| line.starts_with("warm-exec"))
            .unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["warm-exec", "1.0", "µs", "1.2", "µs", "2.50x", "10"]
        );
        let header = table
            .lines()
            .find(|line| line.starts_with("operation"))
            .unwrap();
        assert_eq!(header.len(), row.chars().count(), "columns line up");
        assert!(table.contains("run 1.50x the execs\nper second of one container"));
        assert!(table.contains(
            "-idle: after 100 ms of doing nothing, a warm exec takes 1.2 µs more\nthan the baseline."
        ));
        assert!(table.contains(
            "POST /run takes 150 ns more than a warm exec timed next to it\n\
             (median of 10 pairs; the medians differ by +200 ns); 2 clients get\n1.50x"
        ));
    }
}
