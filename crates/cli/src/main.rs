//! The `hutch` command: run untrusted programs in a Linux sandbox.

#![forbid(unsafe_code)]

/// `eprintln!` that never panics: a standard error nobody reads any more
/// (a closed pipe, `2>&1 | head -1`) is no reason for hutch to fail, and
/// its exit status still tells how the run went.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod args;
mod bench;
mod copy_out;
mod error;
mod report;
mod run;
mod serve;
mod units;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    // clap exits with status 2 on a usage error, 0 for --help and --version.
    let cli = Cli::parse();
    match &cli.command {
        Command::Run(args) => run::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Serve(args) => serve::main(args),
    }
}
