//! Memory of idle containers: init's resident and private memory, and what
//! each idle container costs the host process.
//!
//! `cargo run --release -p hutch-host --example footprint [COUNT]`

use hutch_host::ContainerBuilder;

/// A field of `/proc/<pid>/smaps_rollup` or `status`, in KiB.
fn kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).map_or(Ok(50), |n| n.parse())?;
    let builder = ContainerBuilder::new();
    // One container first, so one-time costs (the init memfd, the policy
    // caches) are not counted per container.
    let first = builder.build()?;
    let rollup = format!("/proc/{}/smaps_rollup", first.init_pid());
    let rss = kib(&rollup, "Rss:");
    let private = kib(&rollup, "Private_Clean:") + kib(&rollup, "Private_Dirty:");
    let anonymous = kib(&rollup, "Anonymous:");
    println!("init: Rss {rss} KiB, private {private} KiB, anonymous {anonymous} KiB");

    let before = kib("/proc/self/status", "VmRSS:");
    let containers: Vec<_> = (0..count)
        .map(|_| builder.build())
        .collect::<Result<_, _>>()?;
    let after = kib("/proc/self/status", "VmRSS:");
    println!(
        "host: {count} idle containers add {} KiB of RSS, {:.1} KiB each; {} descriptors each",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / count as f64,
        std::fs::read_dir("/proc/self/fd")?.count() / (count + 1),
    );
    let rss = kib(&rollup, "Rss:");
    let private = kib(&rollup, "Private_Clean:") + kib(&rollup, "Private_Dirty:");
    let shared = kib(&rollup, "Shared_Clean:") + kib(&rollup, "Shared_Dirty:");
    println!(
        "init beside {count} others: Rss {rss} KiB, private {private} KiB, shared {shared} KiB"
    );
    drop(containers);
    drop(first);
    Ok(())
}
