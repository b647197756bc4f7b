//! The `hutch` command: run untrusted programs in a Linux sandbox.

#![forbid(unsafe_code)]

mod args;
mod bench;
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
