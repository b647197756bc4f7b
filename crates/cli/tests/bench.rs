//! `hutch bench` end to end: the real binary, real containers, few
//! iterations. Nothing here checks how fast anything is (machines are
//! noisy); only that every operation is measured and reported consistently.
//!
//! Like `hutch run`, these tests need user namespaces; where they are not
//! available the tests fail and say so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const HUTCH: &str = env!("CARGO_BIN_EXE_hutch");

const OPERATIONS: [&str; 10] = [
    "baseline",
    "warm-exec",
    "baseline-idle",
    "warm-exec-idle",
    "pool-throughput",
    "serve-run",
    "serve-2-clients",
    "serve-4-clients",
    "cold-container",
    "hutch-run",
];

fn bench(args: &[&str]) -> Output {
    Command::new(HUTCH)
        .arg("bench")
        .args(args)
        .output()
        .expect("hutch starts")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A positive whole number of a JSON object.
fn positive(object: &Value, key: &str) -> u64 {
    let value = object[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a whole number in {object}"));
    assert!(value > 0, "{key} is not positive in {object}");
    value
}

#[test]
fn json_has_every_operation_with_consistent_ratios() {
    let output = bench(&["--iterations", "20", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    assert_eq!(json["program"], "/bin/true");
    let cpus = positive(&json, "cpus");

    let operations = json["operations"].as_array().expect("operations is a list");
    let names: Vec<&str> = operations
        .iter()
        .map(|op| op["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, OPERATIONS);
    let median = |name: &str| {
        let op = operations
            .iter()
            .find(|op| op["name"] == name)
            .expect("every operation is there");
        positive(op, "median_ns")
    };
    let baseline = positive(&operations[0], "median_ns");
    for op in operations {
        let median = positive(op, "median_ns");
        let p90 = positive(op, "p90_ns");
        assert!(p90 >= median, "p90 below the median in {op}");
        let ratio = op["ratio"].as_f64().expect("ratio is a number");
        let expected = median as f64 / baseline as f64;
        assert!(
            (ratio - expected).abs() <= expected * 1e-9,
            "ratio {ratio} is not {median} / {baseline} in {op}"
        );
        let iterations = positive(op, "iterations");
        let expected = match op["name"].as_str().unwrap() {
            "pool-throughput" => 20 * cpus,
            "serve-2-clients" => 40,
            "serve-4-clients" => 80,
            _ => 20,
        };
        assert_eq!(iterations, expected, "iterations of {op}");
    }
    assert_eq!(operations[0]["ratio"], 1.0);

    let pool = &json["pool"];
    assert_eq!(positive(pool, "workers"), cpus);
    let single = positive(pool, "single_container_ns");
    let throughput = pool["throughput_ratio"].as_f64().expect("a number");
    let expected = single as f64 / median("pool-throughput") as f64;
    assert!((throughput - expected).abs() <= expected * 1e-9, "{pool}");

    let serve = &json["serve"];
    let single = positive(serve, "single_client_ns");
    for (key, name) in [
        ("throughput_ratio_2", "serve-2-clients"),
        ("throughput_ratio_4", "serve-4-clients"),
    ] {
        let ratio = serve[key].as_f64().expect("a number");
        let expected = single as f64 / median(name) as f64;
        assert!(
            (ratio - expected).abs() <= expected * 1e-9,
            "{key} in {serve}"
        );
    }
    let added = serve["added_ns"].as_i64().expect("a number");
    assert_eq!(
        added,
        median("serve-run") as i64 - median("warm-exec") as i64,
        "{serve}"
    );
    assert_eq!(positive(serve, "pairs"), 20, "{serve}");
    let paired = serve["paired_added_ns"].as_i64().expect("a number");
    // A median of differences of two times of about a millisecond: far
    // under a second either way (the unit is the nanosecond).
    assert!(paired.abs() < 1_000_000_000, "{serve}");
    assert_eq!(
        json["idle_added_ns"].as_i64().expect("a number"),
        median("warm-exec-idle") as i64 - median("baseline-idle") as i64,
    );
}

#[test]
fn table_lists_every_operation() {
    let output = bench(&["--iterations", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    let header = table
        .lines()
        .find(|line| line.starts_with("operation"))
        .unwrap_or_else(|| panic!("no header in\n{table}"));
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["operation", "median", "p90", "ratio", "iterations"]
    );
    for name in OPERATIONS {
        let row = table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{table}"));
        let ratio = row.split_whitespace().nth(5).expect("a ratio column");
        assert!(ratio.ends_with('x'), "{row}");
    }
    assert!(table.contains("pool-throughput: "), "{table}");
    assert!(
        table.contains("-idle: after 100 ms of doing nothing"),
        "{table}"
    );
    assert!(table.contains("serve-run: POST /run takes "), "{table}");
    assert!(
        table.contains("(median of 3 pairs; the medians differ by "),
        "{table}"
    );
}

#[test]
fn missing_program_is_named_with_status_2() {
    let output = bench(&["--program", "/no/such", "--iterations", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let message = stderr(&output);
    assert!(message.starts_with("hutch: error: "), "{message}");
    assert!(message.contains("/no/such"), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
}

#[test]
fn failing_program_is_refused_with_status_2() {
    let output = bench(&["--program", "/bin/false", "--iterations", "5"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("/bin/false"), "{message}");
    assert!(message.contains("succeeds"), "{message}");
}

#[test]
fn program_only_on_the_host_is_named_with_status_2() {
    // The container sees the host's system directories, not its /tmp.
    let dir = std::env::temp_dir().join(format!("hutch-bench-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let script: PathBuf = dir.join("host-only");
    fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let output = bench(&["--program", script.to_str().unwrap(), "--iterations", "5"]);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains(script.to_str().unwrap()), "{message}");
    assert!(message.contains("in the container"), "{message}");
}

#[test]
fn zero_iterations_is_a_usage_error() {
    let output = bench(&["--iterations", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--iterations"),
        "{}",
        stderr(&output)
    );
}
