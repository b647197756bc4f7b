//! go-judge's `/stream` WebSocket over a real connection: programs fed and
//! read while they run, several commands, cancelling, a client that
//! leaves, a shutdown during a stream, and every kind of bad message.

use std::time::{Duration, Instant};

use hutch_server::client::Client;
use hutch_server::{Config, Server};
use serde_json::{Value, json};
use tungstenite::Message;

mod common;
use common::{Socket, config, gauge, wait_until};

/// What each `(index, fd)` streamed out, in the order they first spoke.
type Outputs = Vec<((u8, u8), Vec<u8>)>;

fn connect(server: &Server) -> Socket {
    common::websocket(server, "/stream")
}

/// A command; `files` are its descriptors.
fn cmd(args: &[&str], files: Value) -> Value {
    json!({
        "args": args,
        "env": ["PATH=/usr/bin:/bin"],
        "files": files,
        "cpuLimit": 10_000_000_000u64,
        "clockLimit": 60_000_000_000u64,
        "memoryLimit": 256u64 << 20,
        "procLimit": 50,
    })
}

fn send_request(socket: &mut Socket, body: &Value) {
    socket.send(request(body)).unwrap();
}

fn send_input(socket: &mut Socket, index: u8, fd: u8, content: &[u8]) {
    let mut message = vec![3, index << 4 | fd];
    message.extend_from_slice(content);
    socket.send(Message::Binary(message.into())).unwrap();
}

/// The next binary message.
fn recv(socket: &mut Socket) -> Vec<u8> {
    loop {
        match socket.read().expect("a message") {
            Message::Binary(bytes) => return bytes.to_vec(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("not a binary message: {other:?}"),
        }
    }
}

/// Output messages until the last one: what each `(index, fd)` gave, and
/// the last message's JSON. The server closes after it.
fn until_final(socket: &mut Socket) -> (Outputs, Value) {
    let mut outputs: Outputs = Vec::new();
    loop {
        let message = recv(socket);
        match message.split_first() {
            Some((2, [place, content @ ..])) => {
                let key = (place >> 4, place & 0x0f);
                match outputs.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, bytes)) => bytes.extend_from_slice(content),
                    None => outputs.push((key, content.to_vec())),
                }
            }
            Some((1, json)) => {
                let last: Value = serde_json::from_slice(json).expect("JSON");
                if let Ok(other @ (Message::Binary(_) | Message::Text(_))) = socket.read() {
                    panic!("a message after the last: {other:?}");
                }
                return (outputs, last);
            }
            _ => panic!("not an output nor the last message: {message:?}"),
        }
    }
}

/// The output of `(index, fd)` until it holds `line`.
fn read_until(socket: &mut Socket, index: u8, fd: u8, line: &str) -> String {
    let mut got = String::new();
    while !got.contains(line) {
        let message = recv(socket);
        assert_eq!(&message[..2], &[2, index << 4 | fd], "{message:?}");
        got.push_str(std::str::from_utf8(&message[2..]).unwrap());
    }
    got
}

#[test]
fn a_running_program_is_fed_and_read_line_by_line() {
    let server = Server::start(config()).expect("the server starts");
    let mut socket = connect(&server);
    send_request(
        &mut socket,
        &json!({"requestId": "s1", "cmd": [cmd(&["cat"], json!([
            {"streamIn": true}, {"streamOut": true}, {"name": "stderr", "max": 100}]))]}),
    );
    // Each line comes back before the next is sent: the program runs
    // while the client talks to it.
    for i in 0..100 {
        let line = format!("line {i}\n");
        send_input(&mut socket, 0, 0, line.as_bytes());
        assert_eq!(read_until(&mut socket, 0, 1, "\n"), line);
    }
    // No content: the end of its input, so cat ends.
    send_input(&mut socket, 0, 0, b"");
    let (outputs, last) = until_final(&mut socket);
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(last["requestId"], "s1", "{last}");
    let result = &last["results"][0];
    assert_eq!(result["status"], "Accepted", "{last}");
    assert_eq!(result["files"]["stderr"], "", "{last}");
    assert!(last.get("error").is_none(), "{last}");
    let mut client = Client::new(server.addr());
    assert_eq!(
        gauge(
            &mut client,
            "hutch_stream_sessions_total{api=\"/stream\",end=\"ran\"}"
        ),
        1
    );
}

#[test]
fn each_command_of_a_stream_has_its_own_streams_and_pipes_still_join_them() {
    let server = Server::start(config()).expect("the server starts");
    let mut socket = connect(&server);
    // cmd[0] upper-cases its input into a pipe to cmd[1], which numbers
    // the lines on its stdout and says how many on fd 2: both streamed.
    send_request(
        &mut socket,
        &json!({"cmd": [
            cmd(&["tr", "a-z", "A-Z"], json!([{"streamIn": true}, null, {"name": "stderr", "max": 100}])),
            cmd(&["sh", "-c", "n=0; while read l; do n=$((n+1)); echo \"$n $l\"; done; echo \"$n lines\" >&2"],
                json!([null, {"streamOut": true}, {"streamOut": true}])),
        ], "pipeMapping": [{"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}}]}),
    );
    send_input(&mut socket, 0, 0, b"one\ntwo\n");
    send_input(&mut socket, 0, 0, b"three\n");
    send_input(&mut socket, 0, 0, b"");
    let (outputs, last) = until_final(&mut socket);
    let output = |key| {
        outputs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    };
    assert_eq!(output((1, 1)), "1 ONE\n2 TWO\n3 THREE\n", "{outputs:?}");
    assert_eq!(output((1, 2)), "3 lines\n", "{outputs:?}");
    for result in last["results"].as_array().unwrap() {
        assert_eq!(result["status"], "Accepted", "{last}");
    }
}

#[test]
fn a_cancel_kills_the_runs_and_the_results_still_come() {
    let server = Server::start(config()).expect("the server starts");
    let mut socket = connect(&server);
    send_request(&mut socket, &json!({"cmd": [sleeper()]}));
    read_until(&mut socket, 0, 1, "ready\n");
    let cancelled = Instant::now();
    socket.send(Message::Binary(vec![4].into())).unwrap();
    let (_, last) = until_final(&mut socket);
    assert!(
        cancelled.elapsed() < Duration::from_secs(20),
        "{:?}",
        cancelled.elapsed()
    );
    let result = &last["results"][0];
    assert_eq!(result["status"], "Signalled", "{last}");
    assert_eq!(result["exitStatus"], 9, "{last}");
}

#[test]
fn a_client_that_leaves_cancels_its_runs() {
    let server = Server::start(config()).expect("the server starts");
    let mut client = Client::new(server.addr());
    let mut socket = connect(&server);
    send_request(&mut socket, &json!({"cmd": [sleeper()]}));
    read_until(&mut socket, 0, 1, "ready\n");
    assert_eq!(gauge(&mut client, "hutch_running_requests"), 1);
    drop(socket);
    // Within the 20 s of `wait_until`, well before the run's 50 s.
    wait_until("the run to end", || {
        gauge(&mut client, "hutch_running_requests") == 0
    });
    wait_until("every container idle", || {
        gauge(&mut client, "hutch_idle_containers") == 2
    });
    assert_eq!(
        gauge(
            &mut client,
            "hutch_stream_sessions_total{api=\"/stream\",end=\"client gone\"}"
        ),
        1
    );
}

#[test]
fn shutdown_ends_a_stream_after_the_grace_period() {
    let server = Server::start(Config {
        shutdown_grace: Duration::from_millis(300),
        ..config()
    })
    .expect("the server starts");
    let mut socket = connect(&server);
    send_request(&mut socket, &json!({"cmd": [sleeper()]}));
    read_until(&mut socket, 0, 1, "ready\n");
    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(server.shutdown()));
    let (_, last) = until_final(&mut socket);
    assert_eq!(last["results"][0]["status"], "Signalled", "{last}");
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("shut down within 20 s")
        .expect("a clean shutdown");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A command that says `ready` on its streamed stdout, then sleeps 50 s.
fn sleeper() -> Value {
    cmd(
        &["sh", "-c", "echo ready; exec sleep 50"],
        json!([{"content": ""}, {"streamOut": true}, {"name": "stderr", "max": 100}]),
    )
}

/// The request message of `request`.
fn request(request: &Value) -> Message {
    let mut message = vec![1];
    message.extend_from_slice(request.to_string().as_bytes());
    Message::Binary(message.into())
}

fn with(mut command: Value, field: &str, value: Value) -> Value {
    command[field] = value;
    command
}

#[test]
fn bad_streams_end_with_an_error_naming_the_mistake() {
    let server = Server::start(config()).expect("the server starts");
    let echo = || {
        cmd(
            &["cat"],
            json!([{"streamIn": true}, {"streamOut": true}, {"name": "stderr", "max": 100}]),
        )
    };
    // Mistakes in the first message: nothing runs.
    let first: Vec<(Message, &str)> = vec![
        (Message::Text("{}".into()), "stream messages are binary"),
        (
            Message::Binary(vec![3, 0].into()),
            "the first message must be the request (type 1), not type 3",
        ),
        (Message::Binary(vec![1, b'{'].into()), "not valid JSON"),
        (
            request(&json!({"cmd": [with(echo(), "tty", json!(true))]})),
            "terminals are not supported",
        ),
        (
            request(&json!({"cmd": [cmd(&["cat"], {
                // fds 0 to 15 read nothing; fd 16 would be streamed.
                let mut files = vec![json!({"content": ""}); 16];
                files.push(json!({"streamOut": true}));
                Value::Array(files)
            })]})),
            "must be at most 15",
        ),
        (
            request(&json!({"cmd": [with(echo(), "copyIn", json!({"x": {"streamIn": true}}))]})),
            "not copyIn",
        ),
    ];
    for (message, expected) in first {
        let mut socket = connect(&server);
        socket.send(message).unwrap();
        let (outputs, last) = until_final(&mut socket);
        assert!(outputs.is_empty(), "{outputs:?}");
        assert!(last["results"].as_array().unwrap().is_empty(), "{last}");
        let error = last["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
    }
    // Mistakes once the request is taken: the program is cancelled, its
    // result comes with the error.
    let during: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![3, 0x05, b'x'],
            "input for cmd[0] fd 5, which is no streamIn",
        ),
        (vec![2], "needs a terminal"),
        ([&[1][..], b"{}"].concat(), "a stream takes one request"),
        (vec![9], "message type 9"),
    ];
    for (message, expected) in during {
        let mut socket = connect(&server);
        send_request(&mut socket, &json!({"cmd": [echo()]}));
        socket.send(Message::Binary(message.into())).unwrap();
        let (_, last) = until_final(&mut socket);
        let error = last["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        // Killed, or cancelled before it started.
        let result = &last["results"][0];
        assert!(
            result["status"] == "Signalled"
                || result["error"] == "the job was cancelled before this command started",
            "{last}"
        );
    }
    // /run takes no streams.
    let mut client = Client::new(server.addr());
    let answer = client
        .post_json("/run", json!({"cmd": [echo()]}).to_string().as_bytes())
        .unwrap();
    assert_eq!(answer.status, 400);
    assert!(
        answer.text().contains("are for the /stream WebSocket"),
        "{}",
        answer.text()
    );
    // A plain GET is no WebSocket handshake.
    assert_ne!(client.get("/stream").unwrap().status, 101);
    // Still serving.
    let mut socket = connect(&server);
    send_request(&mut socket, &json!({"cmd": [echo()]}));
    send_input(&mut socket, 0, 0, b"fine\n");
    send_input(&mut socket, 0, 0, b"");
    let (outputs, last) = until_final(&mut socket);
    assert_eq!(outputs, vec![((0, 1), b"fine\n".to_vec())]);
    assert_eq!(last["results"][0]["status"], "Accepted", "{last}");
}

#[test]
fn a_stream_without_a_request_ends_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    let server = Server::start(Config {
        idle_timeout: idle,
        ..config()
    })
    .expect("the server starts");
    let connected = Instant::now();
    let mut socket = connect(&server);
    let (_, last) = until_final(&mut socket);
    assert!(connected.elapsed() >= idle, "{:?}", connected.elapsed());
    let error = last["error"].as_str().unwrap_or_default();
    assert!(error.contains("no request came within 0.5 s"), "{last}");
}

#[test]
fn a_client_that_stops_reading_holds_up_no_shutdown() {
    let server = Server::start(Config {
        shutdown_grace: Duration::from_millis(300),
        ..config()
    })
    .expect("the server starts");
    let mut socket = connect(&server);
    send_request(
        &mut socket,
        &json!({"cmd": [cmd(&["yes"], json!([
            {"content": ""}, {"streamOut": true}, {"name": "stderr", "max": 100}]))]}),
    );
    // Output flows; then the client reads no more, and the server's sends
    // fill the connection.
    assert_eq!(&recv(&mut socket)[..2], &[2, 0x01]);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(server.shutdown()));
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("shut down within 20 s")
        .expect("a clean shutdown");
    drop(socket);
}
