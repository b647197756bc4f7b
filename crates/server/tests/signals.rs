//! `serve_until_signal` and the stop signals it takes, sent to this test
//! process: the first starts a graceful shutdown, a second hurries it to
//! the kill. One test alone in its process, as a signal reaches every
//! server of the process.

use std::time::{Duration, Instant};

use hutch_server::client::Client;
use hutch_server::{Config, serve_until_signal};
use serde_json::json;

mod common;
use common::{config, gauge, wait_until};

fn raise(signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::getpid(), signal).unwrap();
}

#[test]
fn a_second_stop_signal_kills_what_runs_without_waiting_for_the_grace_period() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let config = Config {
            shutdown_grace: Duration::from_secs(120),
            ..config()
        };
        let served = serve_until_signal(config, |listening| {
            let _ = ready_tx.send(listening.http);
        });
        let _ = done_tx.send(served);
    });
    let addr = ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server is ready");
    let mut client = Client::new(addr);
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let body = json!({"cmd": [{"args": ["sleep", "60"],
            "cpuLimit": 70_000_000_000u64, "clockLimit": 70_000_000_000u64}]});
        let _ = answer_tx.send(Client::new(addr).post_json("/run", body.to_string().as_bytes()));
    });
    wait_until("the command to run", || {
        gauge(&mut client, "hutch_running_requests") == 1
    });

    raise(rustix::process::Signal::TERM);
    wait_until("the server to stop listening", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    assert!(
        answer_rx.try_recv().is_err(),
        "the first signal lets the command run on"
    );

    // SIGTERM again: SIGINT would stay ignored where this test runs as a
    // shell's background job, as the server leaves a signal it was started
    // with ignored.
    let hurried = Instant::now();
    raise(rustix::process::Signal::TERM);
    let answer = answer_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("answered within 20 s, not after the grace period's 120")
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()[0]["status"], "Signalled", "{}", answer.text());
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("shut down within 20 s")
        .expect("a clean shutdown");
    assert!(
        hurried.elapsed() < Duration::from_secs(10),
        "{:?}",
        hurried.elapsed()
    );
}
