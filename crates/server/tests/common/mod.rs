//! What the server's test files share: a configuration for a loopback
//! server with two containers, and waiting on its metrics.

#![allow(dead_code)] // Each test file uses its own part.

#[path = "../../../../tests/support/scratch.rs"]
pub mod scratch;

use std::time::{Duration, Instant};

use hutch_server::Config;
use hutch_server::client::Client;

/// A server on a free loopback port with two containers; rusage
/// accounting where this process cannot make cgroups.
pub fn config() -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        parallelism: 2,
        ..Config::default()
    };
    if !rustix::process::geteuid().is_root() {
        config.builder = config.builder.allow_rusage();
    }
    config
}

/// A door a test opens: a command running [`Gate::ARGS`] in a container of
/// a server configured through [`Gate::in_containers`] runs until the test
/// calls [`Gate::open`], however long the test takes to get there. It is a
/// host directory bound read-only at `/gate` in the containers, in which
/// the command waits for a file to appear.
pub struct Gate(scratch::TempDir);

impl Gate {
    /// The command that waits at the gate.
    pub const ARGS: [&str; 3] = ["sh", "-c", "until [ -e /gate/open ]; do sleep 0.01; done"];

    pub fn new() -> Self {
        Gate(scratch::TempDir::new("server-gate", 0o755))
    }

    /// `config` with the gate's directory in its containers.
    pub fn in_containers(&self, mut config: Config) -> Config {
        config.builder = config.builder.bind(self.0.text(), "/gate", false);
        config
    }

    pub fn open(&self) {
        std::fs::write(self.0.join("open"), "").unwrap();
    }

    /// A guard that opens the gate when dropped: a test that fails while
    /// commands wait at it lets them go at once rather than after their
    /// time limits, when its threads are joined.
    pub fn opens_on_drop(&self) -> OpensOnDrop<'_> {
        OpensOnDrop(self)
    }
}

/// See [`Gate::opens_on_drop`].
pub struct OpensOnDrop<'a>(&'a Gate);

impl Drop for OpensOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.0.join("open"), "");
    }
}

/// The value of the gauge `name` in `/metrics`.
pub fn gauge(client: &mut Client, name: &str) -> u64 {
    let text = client.get("/metrics").unwrap().text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits until `condition` holds, checking every few milliseconds, for at
/// most 20 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A WebSocket of the test's.
pub type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens the WebSocket `path` (`/stream`, `/ws`) of `server`; the handshake
/// must be answered `101`.
pub fn websocket(server: &hutch_server::Server, path: &str) -> Socket {
    let (socket, response) =
        tungstenite::connect(format!("ws://{}{path}", server.addr())).expect("the handshake");
    assert_eq!(response.status(), 101);
    socket
}
