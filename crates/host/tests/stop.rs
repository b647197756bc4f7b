//! `StopSignals`: a stop signal sent to the process ends the armed run at
//! once and leaves a container that drops without a trace.
//!
//! The handlers and what they record are the process's, so this file holds
//! a single test, in its own test binary.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hutch_host::{ContainerBuilder, ContainerError, ExecSpec, StopSignals};

/// Starts `sh` in `container` writing `ready` to a pipe, then sleeping far
/// longer than the test; returns the run once `ready` has been read.
fn start_sleeper<'c>(
    container: &'c mut hutch_host::Container,
    stdout: &std::fs::File,
) -> hutch_host::Run<'c> {
    let null = std::fs::File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["/bin/sh", "-c", "echo ready; exec sleep 1000"])
        .env("PATH", "/usr/bin:/bin")
        .stdio(null.as_fd(), stdout.as_fd(), null.as_fd())
        // A guard: were the signal to do nothing, the run would end here
        // as a wall-time verdict, and the test fail on it.
        .wall_time(Duration::from_secs(30));
    container.start(&spec).expect("start")
}

#[test]
fn a_stop_signal_kills_the_armed_run_and_the_container_leaves_no_cgroup() {
    let stop = StopSignals::catch().expect("catch the stop signals");
    assert_eq!(stop.received(), None);

    // A signal during a run ends it at once.
    let mut container = ContainerBuilder::new().build().expect("build");
    let groups = container.all_cgroup_dirs();
    assert!(!groups.is_empty(), "the container has cgroups");
    assert!(groups.iter().all(|group| group.exists()), "{groups:?}");
    let armed = stop.arm(&container).expect("arm");
    let (reader, writer) = std::io::pipe().unwrap();
    let writer = std::fs::File::from(std::os::fd::OwnedFd::from(writer));
    let mut lines = BufReader::new(reader);
    let run = start_sleeper(&mut container, &writer);
    drop(writer);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let sent = Instant::now();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
        .unwrap();
    let outcome = run.wait();
    let waited = sent.elapsed();
    assert!(
        matches!(outcome, Err(ContainerError::InitGone { .. })),
        "the run ended by the kill of init, not {outcome:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the run ended {waited:?} after the signal"
    );
    assert_eq!(stop.received(), Some(libc::SIGTERM));
    // The program is gone with init: its end of the pipe is closed.
    line.clear();
    assert_eq!(lines.read_line(&mut line).unwrap(), 0, "{line}");
    drop(armed);
    drop(container);
    for group in &groups {
        assert!(!group.exists(), "{} is left", group.display());
    }

    // Armed after a signal came: killed at once, nothing runs in it.
    let mut container = ContainerBuilder::new().build().expect("build");
    let groups = container.all_cgroup_dirs();
    let armed = stop.arm(&container).expect("arm");
    assert!(
        stop.arm(&container).is_err(),
        "a second container cannot be armed while one is"
    );
    let null = std::fs::File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["/bin/true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    let outcome = container.exec(&spec);
    assert!(
        matches!(outcome, Err(ContainerError::InitGone { .. })),
        "{outcome:?}"
    );
    // Later signals keep the first one.
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    assert_eq!(stop.received(), Some(libc::SIGTERM));
    drop(armed);
    drop(container);
    for group in &groups {
        assert!(!group.exists(), "{} is left", group.display());
    }
}
