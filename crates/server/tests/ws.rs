//! go-judge's `/ws` WebSocket over a real connection: requests at once on
//! one connection, answered as each is done; cancelling one that runs and
//! one that waits; a client that leaves; every kind of bad message; and
//! the close at shutdown.

use std::time::{Duration, Instant};

use hutch_server::client::Client;
use hutch_server::{Config, Server};
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

mod common;
use common::{Socket, config, gauge, wait_until};

fn connect(server: &Server) -> Socket {
    common::websocket(server, "/ws")
}

/// A request of one shell command, its stdout collected.
fn request(id: &str, script: &str) -> Value {
    json!({"requestId": id, "cmd": [{
        "args": ["sh", "-c", script],
        "env": ["PATH=/usr/bin:/bin"],
        "files": [{"content": ""}, {"name": "stdout", "max": 1000}, {"name": "stderr", "max": 1000}],
        "cpuLimit": 10_000_000_000u64,
        "clockLimit": 60_000_000_000u64,
    }]})
}

fn send(socket: &mut Socket, message: &Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .unwrap();
}

/// The next answer.
fn answer(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("an answer") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("not a text message: {other:?}"),
        }
    }
}

#[test]
fn messages_are_read_as_go_reads_them() {
    let server = Server::start(config()).expect("the server starts");
    let mut socket = connect(&server);
    // Broken UTF-8 and a lone surrogate escape are U+FFFD; what follows
    // the value is not read.
    let mut odd = request("odd", "printf %s \"$1\"");
    odd["cmd"][0]["args"] = json!(["sh", "-c", "printf %s \"$1\"", "sh", "ARG"]);
    let mut message = odd.to_string().into_bytes();
    let at = message.windows(3).position(|w| w == b"ARG").unwrap();
    message.splice(at..at + 3, b"\xff\\ud800".iter().copied());
    message.extend_from_slice(b" and more");
    socket.send(Message::Binary(message.into())).unwrap();
    let answer = answer(&mut socket);
    assert_eq!(answer["requestId"], "odd", "{answer}");
    assert_eq!(answer["results"][0]["status"], "Accepted", "{answer}");
    assert_eq!(
        answer["results"][0]["files"]["stdout"], "\u{FFFD}\u{FFFD}",
        "{answer}"
    );
}

#[test]
fn requests_run_side_by_side_and_each_is_answered_when_done() {
    let server = Server::start(config()).expect("the server starts");
    let mut socket = connect(&server);
    send(&mut socket, &request("slow", "sleep 2; echo slow"));
    send(&mut socket, &request("quick", "echo quick"));
    send(&mut socket, &request("next", "echo next"));
    let mut order = Vec::new();
    for _ in 0..3 {
        let answer = answer(&mut socket);
        let id = answer["requestId"].as_str().unwrap().to_owned();
        assert_eq!(answer["results"][0]["status"], "Accepted", "{answer}");
        assert_eq!(answer["results"][0]["files"]["stdout"], format!("{id}\n"));
        assert!(answer.get("error").is_none(), "{answer}");
        order.push(id);
    }
    // Two containers: the quick ones go through the second while the
    // slow one runs in the first.
    assert_eq!(order, ["quick", "next", "slow"]);
    // Counted before they are sent; the slow one in the histogram's
    // bucket of at most 2.5 s no more.
    let mut client = Client::new(server.addr());
    assert_eq!(
        gauge(&mut client, "hutch_ws_requests_total{result=\"ok\"}"),
        3
    );
    assert_eq!(gauge(&mut client, "hutch_run_duration_seconds_count"), 3);
    assert_eq!(
        gauge(&mut client, "hutch_run_duration_seconds_bucket{le=\"1\"}"),
        2
    );
}

#[test]
fn a_cancel_kills_a_running_request_and_keeps_a_waiting_one_from_running() {
    let server = Server::start(config()).expect("the server starts");
    let mut client = Client::new(server.addr());
    let mut socket = connect(&server);
    send(&mut socket, &request("a", "exec sleep 50"));
    send(&mut socket, &request("b", "exec sleep 50"));
    wait_until("both to run", || {
        gauge(&mut client, "hutch_running_requests") == 2
    });
    // No container is free: this one waits.
    send(&mut socket, &request("waiting", "echo never"));
    wait_until("it to wait", || {
        gauge(&mut client, "hutch_queue_depth") == 1
    });
    // Cancelled while it waits: answered at once, its place given back,
    // while both containers are still busy.
    let cancelled = Instant::now();
    send(&mut socket, &json!({"cancelRequestId": "waiting"}));
    let first = answer(&mut socket);
    assert_eq!(first["requestId"], "waiting", "{first}");
    assert_eq!(gauge(&mut client, "hutch_queue_depth"), 0);
    assert_eq!(gauge(&mut client, "hutch_running_requests"), 2);
    for id in ["a", "b"] {
        send(&mut socket, &json!({"cancelRequestId": id}));
    }
    let mut answers: Vec<Value> = (0..2).map(|_| answer(&mut socket)).collect();
    answers.push(first);
    answers.sort_by_key(|answer| answer["requestId"].as_str().unwrap_or_default().to_owned());
    assert!(
        cancelled.elapsed() < Duration::from_secs(20),
        "{:?}",
        cancelled.elapsed()
    );
    for answer in &answers[..2] {
        assert_eq!(answer["results"][0]["status"], "Signalled", "{answer}");
        assert_eq!(answer["results"][0]["exitStatus"], 9, "{answer}");
    }
    assert_eq!(answers[2]["requestId"], "waiting");
    assert_eq!(
        answers[2]["error"], "request cancelled before execute",
        "{}",
        answers[2]
    );
    assert_eq!(answers[2]["results"], json!([]));
    // A cancel of what is not running is no mistake, and is not answered.
    send(&mut socket, &json!({"cancelRequestId": "a"}));
    send(&mut socket, &request("after", "echo after"));
    assert_eq!(answer(&mut socket)["requestId"], "after");
}

#[test]
fn a_client_that_leaves_cancels_its_requests() {
    let server = Server::start(config()).expect("the server starts");
    let mut client = Client::new(server.addr());
    let mut socket = connect(&server);
    send(&mut socket, &request("a", "exec sleep 50"));
    wait_until("it to run", || {
        gauge(&mut client, "hutch_running_requests") == 1
    });
    drop(socket);
    // Within the 20 s of `wait_until`, well before the run's 50 s.
    wait_until("the run to end", || {
        gauge(&mut client, "hutch_running_requests") == 0
    });
}

#[test]
fn bad_messages_are_answered_with_an_error_and_the_connection_goes_on() {
    let server = Server::start(config()).expect("the server starts");
    let mut socket = connect(&server);
    let cases = [
        ("{".to_owned(), "", "the message is not valid JSON"),
        (request("", "true").to_string(), "", "requestId is required"),
        (
            json!({"requestId": "r1", "cmd": [{"args": []}]}).to_string(),
            "r1",
            "cmd[0].args is empty",
        ),
        (
            json!({"RequestID": "r2", "cmd": "x"}).to_string(),
            "r2",
            "cmd must be an array",
        ),
    ];
    for (message, id, expected) in cases {
        socket.send(Message::Text(message.into())).unwrap();
        let answer = answer(&mut socket);
        assert_eq!(answer["requestId"], id, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(expected),
            "{answer} should say {expected:?}"
        );
        assert_eq!(answer["results"], json!([]));
    }
    // An id already running on this connection.
    send(&mut socket, &request("dup", "sleep 1; echo first"));
    send(&mut socket, &request("dup", "echo second"));
    let refused = answer(&mut socket);
    assert_eq!(refused["requestId"], "dup");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{refused}"
    );
    let first = answer(&mut socket);
    assert_eq!(first["results"][0]["files"]["stdout"], "first\n", "{first}");
    // Binary messages are read the same way.
    socket
        .send(Message::Binary(
            request("bin", "echo bin").to_string().into_bytes().into(),
        ))
        .unwrap();
    assert_eq!(
        answer(&mut socket)["results"][0]["files"]["stdout"],
        "bin\n"
    );
    // The four bad messages and the duplicate id; the first run and the
    // binary one.
    let mut client = Client::new(server.addr());
    assert_eq!(
        gauge(&mut client, "hutch_ws_requests_total{result=\"error\"}"),
        5
    );
    assert_eq!(
        gauge(&mut client, "hutch_ws_requests_total{result=\"ok\"}"),
        2
    );
}

#[test]
fn the_token_guards_both_websockets() {
    let server = Server::start(hutch_server::Config {
        auth_token: Some("sekret".into()),
        ..config()
    })
    .expect("the server starts");
    for path in ["/ws", "/stream"] {
        let url = format!("ws://{}{path}", server.addr());
        match tungstenite::connect(&url) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{path}");
            }
            other => panic!("{path} without the token: {other:?}"),
        }
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(&url).unwrap();
        request
            .headers_mut()
            .insert("authorization", "Bearer sekret".parse().unwrap());
        let (_, response) = tungstenite::connect(request).expect("the handshake");
        assert_eq!(response.status(), 101, "{path}");
    }
}

/// Reads until the server's close frame, within 20 s: it must say the
/// server is going away (1001). Then the client's close frame answers it,
/// and the server closes the connection.
fn closed_going_away(socket: &mut Socket) {
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    loop {
        match socket.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
                break;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("not a close frame: {other:?}"),
        }
    }
    // Reading sends the client's close frame; the server then closes.
    loop {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("not a clean close: {error}"),
        }
    }
}

/// Shuts `server` down on a thread of its own: what it returns comes
/// through the receiver.
fn shut_down(server: Server) -> std::sync::mpsc::Receiver<Result<(), hutch_server::ServerError>> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(server.shutdown()));
    done_rx
}

/// The shutdown `done` tells of ended cleanly, well within the 60 s
/// grace period of these tests, counted from `stopping`.
fn shut_down_before_the_grace_period(
    done: &std::sync::mpsc::Receiver<Result<(), hutch_server::ServerError>>,
    stopping: Instant,
) {
    done.recv_timeout(Duration::from_secs(20))
        .expect("shut down within 20 s")
        .expect("a clean shutdown");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "not held for the 60 s grace period: {:?}",
        stopping.elapsed()
    );
}

#[test]
fn at_shutdown_an_idle_connection_is_closed_at_once_going_away() {
    let server = Server::start(Config {
        shutdown_grace: Duration::from_secs(60),
        ..config()
    })
    .expect("the server starts");
    let mut socket = connect(&server);
    send(&mut socket, &request("a", "echo a"));
    assert_eq!(answer(&mut socket)["results"][0]["status"], "Accepted");
    let stopping = Instant::now();
    let done = shut_down(server);
    closed_going_away(&mut socket);
    shut_down_before_the_grace_period(&done, stopping);
}

#[test]
fn at_shutdown_a_connection_is_closed_once_its_requests_are_answered() {
    let server = Server::start(Config {
        shutdown_grace: Duration::from_secs(60),
        ..config()
    })
    .expect("the server starts");
    let addr = server.addr();
    let mut client = Client::new(addr);
    let mut socket = connect(&server);
    send(&mut socket, &request("slow", "sleep 2; echo slow"));
    wait_until("it to run", || {
        gauge(&mut client, "hutch_running_requests") == 1
    });
    let stopping = Instant::now();
    let done = shut_down(server);
    wait_until("the server to stop listening", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    // A request that comes now is refused; the one that runs goes on.
    send(&mut socket, &request("late", "echo late"));
    let late = answer(&mut socket);
    assert_eq!(late["requestId"], "late", "{late}");
    assert_eq!(late["error"], "the server is shutting down", "{late}");
    let slow = answer(&mut socket);
    assert_eq!(slow["requestId"], "slow", "{slow}");
    assert_eq!(slow["results"][0]["status"], "Accepted", "{slow}");
    assert_eq!(slow["results"][0]["files"]["stdout"], "slow\n", "{slow}");
    closed_going_away(&mut socket);
    shut_down_before_the_grace_period(&done, stopping);
}
