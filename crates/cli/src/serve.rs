//! `hutch serve`: go-judge's REST API on top of a pool of containers.

use std::process::ExitCode;

use hutch_server::{Config, Defaults};

use crate::args::ServeArgs;
use crate::error::CliError;

/// Runs `hutch serve` until `SIGTERM`, `SIGINT` or `SIGHUP`; exit status 0 after a
/// clean shutdown, 2 when the server could not start or stop cleanly.
pub fn main(args: &ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A log line that cannot be written (the log's reader has gone) is
        // lost, not reported with `eprintln!`, which would panic the thread
        // serving the request that logged it.
        .log_internal_errors(false)
        .init();
    raise_open_files_limit();
    let config = match config(args) {
        Ok(config) => config,
        Err(error) => return crate::run::fail(&error),
    };
    match hutch_server::serve_until_signal(config, |listening| match listening.grpc {
        Some(grpc) => tracing::info!(addr = %listening.http, %grpc, "hutch serve is ready"),
        None => tracing::info!(addr = %listening.http, "hutch serve is ready"),
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("hutch: error: {}", hutch_host::error_chain(&error));
            ExitCode::from(2)
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, as Go
/// programs such as go-judge do at start: each connection, container and
/// collected output holds descriptors, and a service manager's usual soft
/// limit (1024) is less than the 1024 connections the server takes. Programs
/// are not affected: every command gets its own limit (`--open-files`).
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return;
    };
    if current >= maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(from = current, to = maximum, "raised the open files limit"),
        Err(error) => tracing::warn!(%error, current, "cannot raise the open files limit"),
    }
}

/// The server's configuration from the command line; an error when a
/// `--bind` source cannot be resolved or its target collides with the
/// containers' own mounts, `--open-files` is above the hard limit this
/// process has, or `--listen` and `--grpc-listen` take one port.
fn config(args: &ServeArgs) -> Result<Config, CliError> {
    let parallelism = args
        .parallelism
        .unwrap_or_else(hutch_server::default_parallelism);
    // Every command gets this limit, and no container can raise a hard
    // limit above hutch's own: refused here, not in every run.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    if let Some(hard) = hard.filter(|&hard| args.open_files > hard) {
        return Err(CliError::OpenFilesAboveHardLimit {
            asked: args.open_files,
            hard,
        });
    }
    if let Some(grpc) = args
        .grpc_listen
        .filter(|grpc| same_port(args.listen, *grpc))
    {
        return Err(CliError::SameAddress {
            http: args.listen,
            grpc,
        });
    }
    let mut builder = args.containers.apply(hutch_host::ContainerBuilder::new());
    let mut targets = Vec::with_capacity(args.bind.len());
    for bind in &args.bind {
        let (source, target) = crate::run::bind_paths(bind)?;
        builder = builder.bind(&source, &target, false);
        targets.push((bind, target));
    }
    crate::run::check_builder(&builder, &targets, "/w")?;
    // The containers are reset after every run, which empties /tmp and
    // /dev/shm: a mount inside one would fail every reset.
    for (bind, target) in &targets {
        let inside = |dir: &str| {
            std::path::Path::new(target).starts_with(dir) && std::path::Path::new(target) != dir
        };
        if let Some(scratch) = ["/tmp", "/dev/shm"].into_iter().find(|dir| inside(dir)) {
            return Err(CliError::BindInScratch {
                bind: bind.to_string(),
                target: target.clone(),
                scratch,
                host: bind.source.display().to_string(),
            });
        }
    }
    Ok(Config {
        listen: args.listen,
        grpc_listen: args.grpc_listen,
        parallelism,
        auth_token: args.auth_token.clone(),
        file_store: args.file_store.clone(),
        src_prefixes: args.src_prefix.clone(),
        max_queue: args.max_queue as usize,
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        shutdown_grace: args.shutdown_grace,
        idle_timeout: args.idle_timeout,
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
    })
}

/// Whether two listening addresses take one port: the same port (not 0,
/// which picks a free one), on the same address or on all of them.
fn same_port(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `hutch serve` without flags configures what [`Config::default`]
    /// describes: the flags' defaults and the library's are one set.
    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let cli = crate::args::Cli::try_parse_from(["hutch", "serve"]).unwrap();
        let crate::args::Command::Serve(args) = cli.command else {
            panic!("not serve: {cli:?}");
        };
        // Every field, those added later too, the container builder and
        // the seccomp program included; a failure shows the first line
        // that differs.
        let flags = format!("{:#?}", config(&args).unwrap());
        let library = format!("{:#?}", Config::default());
        let first_difference = flags.lines().zip(library.lines()).find(|(f, l)| f != l);
        assert_eq!(
            first_difference, None,
            "the first line that differs, as (flags, library)"
        );
        assert_eq!(flags.lines().count(), library.lines().count());
    }
}
