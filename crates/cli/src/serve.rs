//! `hutch serve`: go-judge's REST API on top of a pool of containers.

use std::process::ExitCode;

use hutch_server::{Config, Defaults};

use crate::args::ServeArgs;

/// Runs `hutch serve` until `SIGTERM` or `SIGINT`; exit status 0 after a
/// clean shutdown, 2 when the server could not start or stop cleanly.
pub fn main(args: &ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let parallelism = args
        .parallelism
        .unwrap_or_else(hutch_server::default_parallelism);
    let builder = args.containers.apply(hutch_host::ContainerBuilder::new());
    let config = Config {
        listen: args.listen,
        parallelism,
        auth_token: args.auth_token.clone().filter(|token| !token.is_empty()),
        file_store: args.file_store.clone(),
        src_prefixes: args.src_prefix.clone(),
        max_queue: args.max_queue as usize,
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        shutdown_grace: args.shutdown_grace,
        defaults: Defaults {
            clock_limit: args.default_clock_limit,
            memory_limit: args.default_memory_limit,
            proc_limit: args.default_proc_limit,
            output_limit: args.output_limit,
            open_files: args.open_files,
            copy_out_limit: args.copy_out_limit,
            seccomp: args.seccomp.program.clone(),
        },
        builder,
    };
    match hutch_server::serve_until_signal(config, |addr| {
        tracing::info!(%addr, "hutch serve is ready");
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hutch: error: {}", hutch_host::error_chain(&error));
            ExitCode::from(2)
        }
    }
}
