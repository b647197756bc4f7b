//! One operation in a loop, for profilers (`perf record -a -g`, `strace -c
//! -f`): warm execs of a program in one container, or container builds.
//!
//! ```sh
//! cargo run --release -p hutch-host --example exec_loop -- exec 20000
//! cargo run --release -p hutch-host --example exec_loop -- exec 20000 --rusage
//! cargo run --release -p hutch-host --example exec_loop -- build 2000 --no-net
//! cargo run --release -p hutch-host --example exec_loop -- pool 4000
//! cargo run --release -p hutch-host --example exec_loop -- job 20000
//! ```
//!
//! Prints the median and 90th percentile per operation. `pool` runs COUNT
//! execs through a [`Pool`](hutch_host::Pool) (check out, exec, reset, give
//! back) from one thread, then from one thread per CPU, and the same with
//! bare `posix_spawn` + wait, and prints how much each gains from the second
//! thread. `job` runs a one-command [`Job`](hutch_host::Job) in one
//! container, stdin `/dev/null` and stdout and stderr collected (what a
//! server's `/run` does), and resets the container after each, timed on its
//! own (a reset after a run with more than one task also makes a fresh run
//! group). `--rusage` skips the cgroup (rusage accounting), `--no-net` the
//! network namespace; `--program PATH` runs another program (default
//! `/bin/true`), `--shell SCRIPT` runs `sh -c SCRIPT` instead.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hutch_host::{
    AccountingChoice, Command, ContainerBuilder, ExecSpec, Job, Namespaces, Pool, Stream, Verdict,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: exec_loop exec|build|pool|job COUNT [--rusage] [--no-net] [--limits] \
                 [--program PATH | --shell SCRIPT]";
    let (operation, count) = match args.as_slice() {
        [operation, count, ..] => (operation.as_str(), count.parse::<usize>()?),
        _ => return Err(usage.into()),
    };
    let mut builder = ContainerBuilder::new();
    let mut program = "/bin/true".to_owned();
    let mut script = None;
    let mut limits = false;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--rusage" => builder = builder.accounting(AccountingChoice::Rusage),
            "--no-net" => {
                builder = builder.namespaces(Namespaces {
                    net: false,
                    ..Namespaces::default()
                })
            }
            "--program" => program = rest.next().ok_or(usage)?.clone(),
            "--shell" => script = Some(rest.next().ok_or(usage)?.clone()),
            "--limits" => limits = true,
            _ => return Err(usage.into()),
        }
    }
    let mut times = Vec::with_capacity(count);
    match operation {
        "exec" => {
            let mut container = builder.build()?;
            let null = std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            let spec =
                ExecSpec::new([program.as_str()]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
            let spec = if limits { with_limits(spec) } else { spec };
            for _ in 0..count {
                let start = Instant::now();
                let result = container.exec(&spec)?;
                times.push(start.elapsed());
                if result.status != hutch_host::protocol::Status::Ok {
                    return Err(format!("{program} did not exit with 0: {result:?}").into());
                }
            }
        }
        "build" => {
            for _ in 0..count {
                let start = Instant::now();
                builder.build()?.destroy();
                times.push(start.elapsed());
            }
        }
        "pool" => return pool(builder, &program, count),
        "job" => {
            let mut container = builder.build()?;
            let collect = |name: &str| Stream::collect(name, 10240);
            let mut spec = match &script {
                Some(script) => ExecSpec::new(["sh".to_owned(), "-c".to_owned(), script.clone()]),
                None => ExecSpec::new([program.clone()]),
            };
            if limits {
                spec = with_limits(spec);
            }
            let mut job = Job::new();
            job.command(
                Command::new(spec)
                    .stream(Stream::Null)
                    .stream(collect("stdout"))
                    .stream(collect("stderr")),
            );
            let mut resets = Vec::with_capacity(count);
            for _ in 0..count {
                let start = Instant::now();
                let results = job.run_in(&mut [&mut container])?;
                times.push(start.elapsed());
                if results[0].verdict != Verdict::Ok {
                    return Err(format!("{program} did not run to Ok: {:?}", results[0]).into());
                }
                let start = Instant::now();
                container.reset()?;
                resets.push(start.elapsed());
            }
            resets.sort();
            println!(
                "reset x{count}: median {:?}, p90 {:?}",
                resets[count / 2],
                resets[(count - 1) * 9 / 10]
            );
        }
        _ => return Err(usage.into()),
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{operation} x{count}: median {:?}, p90 {:?}, total {:?}",
        at(0.5),
        at(0.9),
        times.iter().sum::<Duration>()
    );
    Ok(())
}

/// `spec` with the limits `hutch serve` gives a command that asks for a
/// CPU and a memory limit: CPU and wall-clock time, memory, processes,
/// output, open files.
fn with_limits(spec: ExecSpec<'_>) -> ExecSpec<'_> {
    spec.cpu_time(Duration::from_secs(10))
        .wall_time(Duration::from_secs(10))
        .memory_limit(256 << 20)
        .process_limit(256)
        .output_limit(256 << 20)
        .rlimit(hutch_host::protocol::Resource::Nofile, 256, 256)
}

/// Per-exec wall time of `count` execs spread over `threads` threads.
fn spread(threads: usize, count: usize, one: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| (0..count / threads).for_each(|_| one()));
        }
    });
    start.elapsed() / (count / threads * threads) as u32
}

fn pool(
    builder: ContainerBuilder,
    program: &str,
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let cpus = std::thread::available_parallelism()?.get();
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let spec = ExecSpec::new([program]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    let pool = Pool::new(builder, cpus);
    pool.wait_ready()?;
    let run = || {
        let result = pool.run(&spec).expect("the pool runs the program");
        assert_eq!(
            result.status,
            hutch_host::protocol::Status::Ok,
            "{result:?}"
        );
    };
    let spawn = || {
        let status = std::process::Command::new(program)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("the program starts");
        assert!(status.success(), "{program}: {status}");
    };
    spread(1, count / 10, run);
    for (name, one) in [("pool", &run as &(dyn Fn() + Sync)), ("spawn", &spawn)] {
        let alone = spread(1, count, one);
        let shared = spread(cpus, count, one);
        println!(
            "{name} x{count}: {alone:?} per exec from 1 thread, {shared:?} from {cpus}: {:.2}x",
            alone.as_secs_f64() / shared.as_secs_f64()
        );
    }
    Ok(())
}
