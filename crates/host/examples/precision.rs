//! Measures how closely a container's limits and measurements hold on this
//! machine: CPU time at a 1 s limit (one thread and four), the overshoot
//! past the limit, the wall-clock limit, measured memory against memory
//! actually touched, the memory limit, and the cost of an exec.
//!
//! ```text
//! cargo run --release -p hutch-host --example precision [RUNS]
//! ```
//!
//! Needs `cc` to build its test programs, and root (or a delegated cgroup)
//! for cgroup accounting; without one it says so and measures by rusage.
//! RUNS (20 by default) is the number of runs of each CPU measurement. The
//! figures depend on the machine's load: run it on a quiet machine.

use std::error::Error;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hutch_host::protocol::{ExecResult, Status};
use hutch_host::{Container, ContainerBuilder, ExecSpec};

const MIB: u64 = 1 << 20;
const MS: f64 = 1e6;

const SPIN_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>

static void *spin(void *arg) {
    (void)arg;
    for (;;) {
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    for (int i = 1; i < threads; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, spin, NULL) != 0)
            return 2;
    }
    spin(NULL);
    return 0;
}
"#;

const TOUCH_C: &str = r#"
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t size = (size_t)strtoul(argc > 1 ? argv[1] : "64", NULL, 10) << 20;
    char *block = malloc(size);
    if (block == NULL)
        return 2;
    memset(block, 1, size);
    __asm__ volatile("" : : "r"(block) : "memory");
    return 0;
}
"#;

/// A directory of compiled programs, removed on drop.
struct Programs(PathBuf);

impl Programs {
    fn compile(programs: &[(&str, &str, &[&str])]) -> Result<Self, Box<dyn Error>> {
        let dir = std::env::temp_dir().join(format!("hutch-precision-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let built = Programs(dir);
        for (name, source, flags) in programs {
            let source_path = built.0.join(format!("{name}.c"));
            std::fs::write(&source_path, source)?;
            let output = Command::new("cc")
                .args(["-O1", "-o"])
                .arg(built.0.join(name))
                .arg(&source_path)
                .args(*flags)
                .output()
                .map_err(|e| format!("cannot run cc: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "cc failed on {name}:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
            std::fs::set_permissions(built.0.join(name), std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(built)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `spec` with stdin, stdout and stderr on `/dev/null`.
fn exec(container: &mut Container, spec: ExecSpec<'_>) -> Result<ExecResult, Box<dyn Error>> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let spec = spec.stdio(null.as_fd(), null.as_fd(), null.as_fd());
    Ok(container.exec(&spec)?)
}

fn cpu(result: &ExecResult) -> u64 {
    result.user_time_ns + result.system_time_ns
}

/// Minimum, median and maximum.
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

fn spread(values: &[f64]) -> Spread {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Spread {
        min: sorted[0],
        median,
        max: sorted[n - 1],
    }
}

fn line(what: &str, values: &[f64], unit: &str) {
    let s = spread(values);
    println!(
        "  {what:<22} median {:>9.3} {unit}   max {:>9.3} {unit}   min {:>9.3} {unit}",
        s.median, s.max, s.min
    );
}

/// Statuses other than `expected`, counted, for the heading of a section.
fn verdicts(results: &[ExecResult], expected: Status) -> String {
    let unexpected: Vec<String> = results
        .iter()
        .filter(|r| r.status != expected)
        .map(|r| r.status.to_string())
        .collect();
    if unexpected.is_empty() {
        format!("all {expected}")
    } else {
        format!("UNEXPECTED: {}", unexpected.join(", "))
    }
}

fn cpu_section(container: &mut Container, threads: u32, runs: usize) -> Result<(), Box<dyn Error>> {
    let limit = Duration::from_secs(1);
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        let spec = ExecSpec::new(["/t/spin".to_owned(), threads.to_string()])
            .cpu_time(limit)
            .wall_time(Duration::from_secs(10));
        results.push(exec(container, spec)?);
    }
    let limit_ns = limit.as_nanos() as f64;
    let cpu_ms: Vec<f64> = results.iter().map(|r| cpu(r) as f64 / MS).collect();
    let over_ms: Vec<f64> = results
        .iter()
        .map(|r| (cpu(r) as f64 - limit_ns) / MS)
        .collect();
    let wall_ms: Vec<f64> = results.iter().map(|r| r.wall_time_ns as f64 / MS).collect();
    println!(
        "{threads}-thread spin, CPU limit 1000 ms, {runs} runs: {}",
        verdicts(&results, Status::TimeLimit)
    );
    line("CPU (user+sys)", &cpu_ms, "ms");
    line("overshoot past limit", &over_ms, "ms");
    line("wall", &wall_ms, "ms");
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("RUNS: not a number: {arg}"))?,
        None => 20,
    };
    if runs == 0 {
        return Err("RUNS must be at least 1".into());
    }
    let programs = Programs::compile(&[("spin", SPIN_C, &["-pthread"]), ("touch", TOUCH_C, &[])])?;
    let dir = programs.path().to_str().ok_or("temporary path not UTF-8")?;
    let mut container = ContainerBuilder::new()
        .bind(dir, "/t", false)
        .allow_rusage()
        .build()?;
    let probe = exec(&mut container, ExecSpec::new(["/bin/true"]))?;
    println!(
        "accounting: {}; {} CPUs; load average at start: {}",
        probe.accounting.as_str(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();

    cpu_section(&mut container, 1, runs)?;
    println!();
    cpu_section(&mut container, 4, runs)?;
    println!();

    let wall_runs = 10;
    let mut results = Vec::new();
    for _ in 0..wall_runs {
        let spec = ExecSpec::new(["sleep", "10"])
            .cpu_time(Duration::from_secs(1))
            .wall_time(Duration::from_millis(500));
        results.push(exec(&mut container, spec)?);
    }
    let over: Vec<f64> = results
        .iter()
        .map(|r| r.wall_time_ns as f64 / MS - 500.0)
        .collect();
    println!(
        "sleep 10, wall limit 500 ms, {wall_runs} runs: {}",
        verdicts(&results, Status::WallTimeLimit)
    );
    line("wall past limit", &over, "ms");
    println!();

    for mib in [0u64, 16, 64, 256] {
        let mut results = Vec::new();
        for _ in 0..10 {
            results.push(exec(
                &mut container,
                ExecSpec::new(["/t/touch".to_owned(), mib.to_string()]),
            )?);
        }
        let measured: Vec<f64> = results
            .iter()
            .map(|r| r.memory_bytes as f64 / MIB as f64)
            .collect();
        let excess: Vec<f64> = results
            .iter()
            .map(|r| (r.memory_bytes as f64 - (mib * MIB) as f64) / 1024.0)
            .collect();
        println!(
            "C program touching {mib} MiB, 10 runs: {}",
            verdicts(&results, Status::Ok)
        );
        line("memory_bytes", &measured, "MiB");
        line("above touched", &excess, "KiB");
    }
    println!();

    let mut results = Vec::new();
    for _ in 0..5 {
        let spec = ExecSpec::new(["/t/touch", "300"])
            .memory_limit(256 * MIB)
            .wall_time(Duration::from_secs(10));
        results.push(exec(&mut container, spec)?);
    }
    let peaks: Vec<f64> = results
        .iter()
        .map(|r| r.memory_bytes as f64 / MIB as f64)
        .collect();
    println!(
        "C program touching 300 MiB, memory limit 256 MiB, 5 runs: {}",
        verdicts(&results, Status::MemoryLimit)
    );
    line("memory_bytes", &peaks, "MiB");
    println!();

    let exec_runs = 200;
    let mut round_trips = Vec::new();
    let mut results = Vec::new();
    for _ in 0..exec_runs {
        let start = Instant::now();
        results.push(exec(&mut container, ExecSpec::new(["/bin/true"]))?);
        round_trips.push(start.elapsed().as_nanos() as f64 / MS);
    }
    let cpus: Vec<f64> = results.iter().map(|r| cpu(r) as f64 / MS).collect();
    let memory: Vec<f64> = results
        .iter()
        .map(|r| r.memory_bytes as f64 / 1024.0)
        .collect();
    println!(
        "/bin/true, {exec_runs} runs: {}",
        verdicts(&results, Status::Ok)
    );
    line("exec round trip", &round_trips, "ms");
    line("CPU (user+sys)", &cpus, "ms");
    line("memory_bytes", &memory, "KiB");
    println!();
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    Ok(())
}
