//! hutch started under lowered resource limits, as a shell's `ulimit` sets
//! them for what it starts; shared by the crates' tests, which include this
//! file by path.

use std::process::{Command, Output, Stdio};

/// Runs `hutch` with `args` from `sh` after `ulimit LIMIT` (`-n 60`: the
/// soft and hard limits on open files), standard input from `/dev/null`;
/// returns its output and its standard error as text.
pub fn hutch_under_ulimit(hutch: &str, limit: &str, args: &[&str]) -> (Output, String) {
    let output = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit {limit} && exec \"$0\" \"$@\""),
            hutch,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}
