//! go-judge's gRPC API (`pb.Executor`) over real HTTP/2 on a loopback port,
//! called through tonic's client: commands, files in and out, pipes, the
//! store shared with the REST API, authentication, bad input, and a
//! shutdown during a call.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hutch_server::client::Client;
use hutch_server::pb::request::file::File as Kind;
use hutch_server::pb::request::pipe_map::PipeIndex;
use hutch_server::pb::request::{
    CachedFile, CmdCopyOutFile, CmdType, File, MemoryFile, PipeCollector, PipeMap,
};
use hutch_server::pb::response::file_error::ErrorType;
use hutch_server::pb::response::result::StatusType;
use hutch_server::pb::{self, FileContent, FileId, FileListType, Request, Response};
use hutch_server::{Config, Server};
use tonic::{Code, Status};

mod common;

fn config() -> Config {
    Config {
        grpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..common::config()
    }
}

/// A blocking gRPC client of `pb.Executor`.
struct Grpc {
    runtime: tokio::runtime::Runtime,
    inner: tonic::client::Grpc<tonic::transport::Channel>,
    token: Option<String>,
}

impl Grpc {
    fn connect(server: &Server) -> Self {
        let addr = server.listening().grpc.expect("the server serves gRPC");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = runtime.block_on(async {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connects")
        });
        Self {
            runtime,
            inner: tonic::client::Grpc::new(channel),
            token: None,
        }
    }

    fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    fn call<Req, Resp>(&mut self, method: &'static str, message: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let path = http::uri::PathAndQuery::from_static(method);
        let inner = &mut self.inner;
        self.runtime.block_on(async move {
            inner
                .ready()
                .await
                .map_err(|e| Status::unknown(e.to_string()))?;
            inner
                .unary(request, path, tonic_prost::ProstCodec::default())
                .await
                .map(tonic::Response::into_inner)
        })
    }

    fn exec(&mut self, request: Request) -> Result<Response, Status> {
        self.call("/pb.Executor/Exec", request)
    }

    /// An `Exec` the client gives up on after `after`, as a call past its
    /// deadline is given up: the server sees its stream reset.
    fn exec_given_up(&mut self, request: Request, after: Duration) {
        let path = http::uri::PathAndQuery::from_static("/pb.Executor/Exec");
        let inner = &mut self.inner;
        self.runtime.block_on(async move {
            inner.ready().await.unwrap();
            let call = inner.unary::<_, Response, _>(
                tonic::Request::new(request),
                path,
                tonic_prost::ProstCodec::default(),
            );
            assert!(
                tokio::time::timeout(after, call).await.is_err(),
                "answered before the client gave up"
            );
        });
    }

    /// Runs one command; it must be answered with one result.
    fn run(&mut self, command: CmdType) -> pb::response::Result {
        let mut response = self
            .exec(Request {
                cmd: vec![command],
                ..Request::default()
            })
            .expect("Exec answers");
        assert_eq!(response.results.len(), 1, "{response:?}");
        response.results.remove(0)
    }

    /// An `Exec` that must be refused: its status.
    fn refused(&mut self, request: Request) -> Status {
        match self.exec(request) {
            Ok(response) => panic!("accepted: {response:?}"),
            Err(status) => status,
        }
    }
}

/// A runtime for a test's async client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn file(kind: Kind) -> File {
    File { file: Some(kind) }
}

fn memory(content: &[u8]) -> File {
    file(Kind::Memory(MemoryFile {
        content: content.to_vec(),
    }))
}

fn collector(name: &str, max: i64) -> File {
    file(Kind::Pipe(PipeCollector {
        name: name.into(),
        max,
        pipe: false,
    }))
}

/// A command with an empty stdin and stdout and stderr collected.
fn cmd(args: &[&str]) -> CmdType {
    CmdType {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        env: vec!["PATH=/usr/bin:/bin".into()],
        files: vec![
            memory(b""),
            collector("stdout", 10240),
            collector("stderr", 10240),
        ],
        cpu_time_limit: 5_000_000_000,
        memory_limit: 256 << 20,
        proc_limit: 50,
        ..CmdType::default()
    }
}

/// A command that waits at the test's [`common::Gate`] (within a minute).
fn gated() -> CmdType {
    CmdType {
        clock_time_limit: 60_000_000_000,
        ..cmd(&common::Gate::ARGS)
    }
}

fn status(result: &pb::response::Result) -> StatusType {
    StatusType::try_from(result.status).expect("a known status")
}

fn stdout(result: &pb::response::Result) -> &[u8] {
    result.files.get("stdout").map_or(&[], Vec::as_slice)
}

fn assert_still_serving(grpc: &mut Grpc) {
    let result = grpc.run(cmd(&["echo", "still here"]));
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
    assert_eq!(stdout(&result), b"still here\n");
}

#[test]
fn exec_runs_a_command_and_answers_go_judge_fields() {
    let server = Server::start(config()).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    let response = grpc
        .exec(Request {
            request_id: "r-1".into(),
            cmd: vec![cmd(&["echo", "hello"])],
            pipe_mapping: Vec::new(),
        })
        .unwrap();
    assert_eq!(response.request_id, "r-1");
    assert!(response.error.is_empty(), "{response:?}");
    let result = &response.results[0];
    assert_eq!(status(result), StatusType::Accepted, "{result:?}");
    assert_eq!(result.exit_status, 0);
    assert_eq!(
        result.files,
        BTreeMap::from([
            ("stdout".to_owned(), b"hello\n".to_vec()),
            ("stderr".to_owned(), Vec::new())
        ])
    );
    assert!(result.run_time > 0 && result.time > 0, "{result:?}");
    assert!(result.file_ids.is_empty() && result.file_error.is_empty());

    // Bytes go in and come out as they are, not as text.
    let every_byte: Vec<u8> = (0..=255).collect();
    let mut cat = cmd(&["cat"]);
    cat.files[0] = memory(&every_byte);
    let result = grpc.run(cat);
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
    assert_eq!(stdout(&result), every_byte.as_slice());

    let metrics = Client::new(server.addr()).get("/metrics").unwrap().text();
    assert!(
        metrics.contains("hutch_exec_calls_total{code=\"Ok\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hutch_runs_total{status=\"Accepted\"} 2\n"),
        "{metrics}"
    );
}

#[test]
fn compile_then_run_through_the_store_then_delete() {
    let server = Server::start(config()).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    let mut compile = cmd(&["/usr/bin/gcc", "a.c", "-o", "a"]);
    compile.cpu_time_limit = 20_000_000_000;
    compile.clock_time_limit = 60_000_000_000;
    compile.memory_limit = 1 << 30;
    compile.copy_in.insert(
        "a.c".into(),
        memory(
            b"#include <stdio.h>\nint main(void) { int a, b; scanf(\"%d %d\", &a, &b); \
              printf(\"%d\\n\", a + b); return 0; }\n",
        ),
    );
    compile.copy_out_cached.push(CmdCopyOutFile {
        name: "a".into(),
        optional: false,
    });
    compile.copy_out.push(CmdCopyOutFile {
        name: "core".into(),
        optional: true,
    });
    let result = grpc.run(compile);
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
    let binary = result.file_ids["a"].clone();

    let mut execute = cmd(&["./a"]);
    execute.files[0] = memory(b"40 2");
    execute.copy_in.insert(
        "a".into(),
        file(Kind::Cached(CachedFile {
            file_id: binary.clone(),
        })),
    );
    let result = grpc.run(execute);
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
    assert_eq!(stdout(&result), b"42\n");

    let stored: FileContent = grpc
        .call(
            "/pb.Executor/FileGet",
            FileId {
                file_id: binary.clone(),
            },
        )
        .unwrap();
    assert_eq!(stored.name, "a");
    assert!(stored.content.starts_with(b"\x7fELF"));
    grpc.call::<_, ()>(
        "/pb.Executor/FileDelete",
        FileId {
            file_id: binary.clone(),
        },
    )
    .unwrap();
    let again = grpc
        .call::<_, ()>("/pb.Executor/FileDelete", FileId { file_id: binary })
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
}

#[test]
fn limits_give_go_judge_status_numbers() {
    let server = Server::start(config()).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    let mut spin = cmd(&["sh", "-c", "while :; do :; done"]);
    spin.cpu_time_limit = 200_000_000;
    // Without a clock limit, the CPU limit is the wall-clock limit too.
    spin.clock_time_limit = 5_000_000_000;
    let tle = grpc.run(spin);
    assert_eq!(status(&tle), StatusType::TimeLimitExceeded, "{tle:?}");
    assert!((200_000_000..400_000_000).contains(&tle.time), "{tle:?}");

    let mut flood = cmd(&["sh", "-c", "head -c 100000 /dev/zero"]);
    flood.files[1] = collector("stdout", 1000);
    let ole = grpc.run(flood);
    assert_eq!(status(&ole), StatusType::OutputLimitExceeded, "{ole:?}");
    assert_eq!(
        ole.file_error[0].r#type,
        ErrorType::CollectSizeExceeded as i32
    );
    assert_eq!(stdout(&ole).len(), 1000);

    let mut hog = cmd(&["python3", "-c", "a = bytearray(200 << 20)"]);
    hog.memory_limit = 64 << 20;
    let mle = grpc.run(hog);
    if rustix::process::geteuid().is_root() {
        assert_eq!(status(&mle), StatusType::MemoryLimitExceeded, "{mle:?}");
    }

    let crash = grpc.run(cmd(&["sh", "-c", "kill -SEGV $$"]));
    assert_eq!(status(&crash), StatusType::Signalled, "{crash:?}");
    assert_eq!(crash.exit_status, 11);

    let nonzero = grpc.run(cmd(&["sh", "-c", "exit 3"]));
    assert_eq!(
        status(&nonzero),
        StatusType::NonZeroExitStatus,
        "{nonzero:?}"
    );
    assert_eq!(nonzero.exit_status, 3);

    let missing = grpc.run(cmd(&["/no/such/program"]));
    assert_eq!(status(&missing), StatusType::InternalError, "{missing:?}");
    assert!(missing.error.contains("/no/such/program"), "{missing:?}");
}

#[test]
fn links_copy_in_and_out_as_go_judge_defines_them() {
    let server = Server::start(config()).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    // A link the program plants to a host file is never followed out.
    let mut plant = cmd(&["ln", "-s", "/etc/passwd", "passwd"]);
    plant.copy_out.push(CmdCopyOutFile {
        name: "passwd".into(),
        optional: false,
    });
    let result = grpc.run(plant);
    assert_eq!(status(&result), StatusType::FileError, "{result:?}");
    assert_eq!(result.file_error[0].name, "passwd");
    assert_eq!(
        result.file_error[0].r#type,
        ErrorType::CopyOutNotRegularFile as i32
    );
    assert!(!result.files.contains_key("passwd"), "{result:?}");

    // `symlinks` makes links beside the copied-in files.
    let mut read = cmd(&["cat", "link"]);
    read.copy_in
        .insert("target".into(), memory(b"through the link"));
    read.symlinks.insert("link".into(), "target".into());
    let result = grpc.run(read);
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
    assert_eq!(stdout(&result), b"through the link");
}

#[test]
fn a_pipe_joins_two_commands() {
    let server = Server::start(config()).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    let mut producer = cmd(&["sh", "-c", "seq 1 10000"]);
    producer.files[1] = File::default();
    let mut consumer = cmd(&["wc", "-l"]);
    consumer.files[0] = File::default();
    let response = grpc
        .exec(Request {
            request_id: String::new(),
            cmd: vec![producer, consumer],
            pipe_mapping: vec![PipeMap {
                r#in: Some(PipeIndex { index: 0, fd: 1 }),
                out: Some(PipeIndex { index: 1, fd: 0 }),
                ..PipeMap::default()
            }],
        })
        .unwrap();
    for result in &response.results {
        assert_eq!(status(result), StatusType::Accepted, "{response:?}");
    }
    assert_eq!(stdout(&response.results[1]), b"10000\n");
}

#[test]
fn the_store_is_the_rest_apis_store() {
    let server = Server::start(config()).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    let mut rest = Client::new(server.addr());
    let id = grpc
        .call::<_, FileId>(
            "/pb.Executor/FileAdd",
            FileContent {
                name: "data.bin".into(),
                content: b"\x00binary\xff".to_vec(),
            },
        )
        .unwrap()
        .file_id;
    let downloaded = rest.get(&format!("/file/{id}")).unwrap();
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.body, b"\x00binary\xff");

    let uploaded = rest
        .post_file("/file", "file", "up.txt", b"from rest")
        .unwrap()
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let listed: FileListType = grpc.call("/pb.Executor/FileList", ()).unwrap();
    assert_eq!(
        listed.file_ids,
        BTreeMap::from([
            (id.clone(), "data.bin".to_owned()),
            (uploaded.clone(), "up.txt".to_owned())
        ])
    );
    let got: FileContent = grpc
        .call("/pb.Executor/FileGet", FileId { file_id: uploaded })
        .unwrap();
    assert_eq!(
        (got.name.as_str(), got.content.as_slice()),
        ("up.txt", &b"from rest"[..])
    );
    let missing = grpc
        .call::<_, FileContent>(
            "/pb.Executor/FileGet",
            FileId {
                file_id: "NOSUCHFILE".into(),
            },
        )
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
}

#[test]
fn a_token_guards_every_call() {
    let mut config = config();
    config.auth_token = Some("sekrit".into());
    config.max_body = 64 << 10;
    let server = Server::start(config).expect("the server starts");
    let mut anonymous = Grpc::connect(&server);
    let denied = anonymous.exec(Request::default()).unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");
    // The token is checked before the message is read: one too large to
    // take is refused for the token, not its size.
    let mut big = cmd(&["true"]);
    big.files[0] = memory(&vec![b'x'; 100 << 10]);
    let denied = anonymous
        .exec(Request {
            cmd: vec![big],
            ..Request::default()
        })
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");
    let denied = anonymous
        .call::<_, FileListType>("/pb.Executor/FileList", ())
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");
    let mut wrong = Grpc::connect(&server).with_token("guess");
    let denied = wrong.exec(Request::default()).unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");

    let mut allowed = Grpc::connect(&server).with_token("sekrit");
    assert_still_serving(&mut allowed);
    // go-judge reads the scheme in any case.
    let mut lower = Grpc::connect(&server);
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", "bearer sekrit".parse().unwrap());
    let listed = lower.runtime.block_on(async {
        lower.inner.ready().await.unwrap();
        lower
            .inner
            .unary::<_, FileListType, _>(
                request,
                http::uri::PathAndQuery::from_static("/pb.Executor/FileList"),
                tonic_prost::ProstCodec::default(),
            )
            .await
    });
    assert!(listed.is_ok(), "{listed:?}");
}

#[test]
fn bad_input_is_refused_naming_what_is_wrong() {
    let mut config = config();
    config.max_body = 64 << 10;
    let server = Server::start(config).expect("the server starts");
    let mut grpc = Grpc::connect(&server);
    let single = |command: CmdType| Request {
        cmd: vec![command],
        ..Request::default()
    };
    let with = |change: fn(&mut CmdType)| {
        let mut command = cmd(&["true"]);
        change(&mut command);
        single(command)
    };
    let cases: Vec<(Request, &str)> = vec![
        (Request::default(), "no cmd provided"),
        (single(CmdType::default()), "cmd[0].args is empty"),
        (
            with(|c| c.files[1] = collector("stdout", -1)),
            "cmd[0].files[1].pipe.max is -1, which is negative",
        ),
        (
            with(|c| c.files[0] = File::default()),
            "cmd[0].files[0] is null, and no pipeMapping fills it",
        ),
        (
            with(|c| c.files[0] = file(Kind::StreamIn(()))),
            "streamIn and streamOut are for the /stream WebSocket",
        ),
        (
            with(|c| c.tty = true),
            "cmd[0].tty: terminals are not supported",
        ),
        (
            with(|c| {
                c.copy_in.insert("x".into(), memory(b"a"));
                c.symlinks.insert("x".into(), "y".into());
            }),
            "cmd[0].symlinks[\"x\"]: copyIn already has a file at that path",
        ),
        (
            with(|c| {
                c.copy_in.insert("x".into(), File::default());
            }),
            "cmd[0].copyIn[\"x\"] is no file",
        ),
        (
            with(|c| {
                c.copy_in.insert(
                    "x".into(),
                    file(Kind::Cached(CachedFile {
                        file_id: "NOSUCHFILE".into(),
                    })),
                );
            }),
            "no stored file has the id \"NOSUCHFILE\"",
        ),
        (
            with(|c| {
                c.copy_out.push(CmdCopyOutFile {
                    name: "../escape".into(),
                    optional: false,
                })
            }),
            "cmd[0].copyOut[0]",
        ),
        (
            with(|c| c.cpu_set_limit = "x-y".into()),
            "cmd[0].cpuSetLimit \"x-y\" is not a CPU list",
        ),
        (
            with(|c| c.memory_limit = 1 << 60),
            "cmd[0].memoryLimit is 1152921504606846976 bytes, more than the largest limit",
        ),
        (
            Request {
                cmd: vec![cmd(&["true"])],
                pipe_mapping: vec![PipeMap {
                    r#in: Some(PipeIndex { index: -1, fd: 1 }),
                    out: Some(PipeIndex { index: 0, fd: 0 }),
                    ..PipeMap::default()
                }],
                ..Request::default()
            },
            "pipeMapping[0].in.index is -1, which is negative",
        ),
        (
            Request {
                cmd: vec![cmd(&["true"])],
                pipe_mapping: vec![PipeMap {
                    r#in: Some(PipeIndex { index: 0, fd: 1 }),
                    ..PipeMap::default()
                }],
                ..Request::default()
            },
            "pipeMapping[0].out is missing",
        ),
        (
            Request {
                cmd: vec![cmd(&["true"]); 17],
                ..Request::default()
            },
            "has 17 commands, more than the 16",
        ),
    ];
    for (request, expected) in cases {
        let status = grpc.refused(request);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(expected),
            "{:?} does not say {expected:?}",
            status.message()
        );
    }

    // A message larger than the largest request body is refused before it
    // is read (go-judge's Go server says RESOURCE_EXHAUSTED, tonic's
    // OUT_OF_RANGE).
    let mut big = cmd(&["true"]);
    big.files[0] = memory(&vec![b'x'; 100 << 10]);
    let status = grpc.refused(single(big));
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    // Bytes that are no `Request`: a `FileContent` whose content field
    // lands on `cmd` and does not decode as a command. go-judge's Go server
    // answers INTERNAL too ("error unmarshalling request").
    let garbage = grpc
        .call::<_, Response>(
            "/pb.Executor/Exec",
            FileContent {
                name: String::new(),
                content: vec![0xff, 0xff, 0xff],
            },
        )
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Internal, "{garbage:?}");
    assert!(garbage.message().contains("decode"), "{garbage:?}");

    for method in ["/pb.Executor/NoSuchMethod", "/grpc.health.v1.Health/Check"] {
        let status = grpc.call::<_, ()>(method, ()).unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{method}: {status:?}");
    }
    assert_still_serving(&mut grpc);
}

#[test]
fn shutdown_lets_a_running_exec_finish() {
    let gate = common::Gate::new();
    let server = Server::start(gate.in_containers(config())).expect("the server starts");
    let addr = server.addr();
    let mut rest = Client::new(addr);
    let mut grpc = Grpc::connect(&server);
    std::thread::scope(|scope| {
        let _open = gate.opens_on_drop();
        let call = scope.spawn(move || grpc.run(gated()));
        common::wait_until("the call running", || {
            common::gauge(&mut rest, "hutch_running_requests") == 1
        });
        // The run goes on until the shutdown is under way: the server no
        // longer takes connections.
        let gate = &gate;
        scope.spawn(move || {
            common::wait_until("the shutdown under way", || {
                std::net::TcpStream::connect(addr).is_err()
            });
            gate.open();
        });
        server.shutdown().expect("a clean shutdown");
        let result = call.join().unwrap();
        assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
    });
}

/// The head of an `Exec` call to `addr`, for calls made by hand.
fn exec_head(addr: std::net::SocketAddr) -> http::Request<()> {
    call_head(addr, "Exec")
}

/// The head of a call of `method` of `pb.Executor` at `addr`, for calls
/// made by hand.
fn call_head(addr: std::net::SocketAddr, method: &str) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/pb.Executor/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// A message as gRPC frames it: a flag byte (not compressed), its length,
/// its bytes.
fn grpc_frame(message: &impl prost::Message) -> bytes::Bytes {
    let message = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    frame.into()
}

/// One gRPC call made over `client` by hand (HTTP/2 frames, no gRPC
/// library), so that the test sees the connection itself: the answer's
/// message, once its trailers say `grpc-status: 0`.
async fn call_by_hand(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    request: Request,
) -> Response {
    let (answer, mut body) = client.send_request(exec_head(addr), false).unwrap();
    body.send_data(grpc_frame(&request), true).unwrap();
    let answer = answer.await.expect("an answer");
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    let mut read = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        read.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert!(read.len() >= 5, "{read:?}");
    prost::Message::decode(&read[5..]).expect("a Response")
}

/// A server whose idle timeout is `idle`, and its gRPC address.
fn start_with_idle_timeout(idle: Duration) -> (Server, std::net::SocketAddr) {
    let server = Server::start(Config {
        idle_timeout: idle,
        ..config()
    })
    .expect("the server starts");
    let addr = server.listening().grpc.unwrap();
    (server, addr)
}

#[test]
fn an_idle_connection_is_closed_but_not_one_with_a_call_open() {
    let idle = Duration::from_millis(500);
    let (_server, addr) = start_with_idle_timeout(idle);
    runtime().block_on(async {
        let within = Duration::from_secs(20);

        // No call at all.
        let connected = Instant::now();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_client, connection) = h2::client::handshake(tcp).await.unwrap();
        let _ = tokio::time::timeout(within, connection)
            .await
            .expect("closed by the server within 20 s");
        assert!(
            connected.elapsed() >= idle,
            "closed after {:?}",
            connected.elapsed()
        );

        // A call that runs for twice the idle time keeps its connection;
        // the idle time counts from its answer.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        let closed = tokio::spawn(async move {
            let _ = connection.await;
            Instant::now()
        });
        let mut client = client.ready().await.unwrap();
        let response = call_by_hand(
            &mut client,
            addr,
            Request {
                cmd: vec![cmd(&["sleep", "1"])],
                ..Request::default()
            },
        )
        .await;
        let answered = Instant::now();
        assert_eq!(
            status(&response.results[0]),
            StatusType::Accepted,
            "{response:?}"
        );
        let closed = tokio::time::timeout(within, closed)
            .await
            .expect("closed by the server within 20 s")
            .unwrap();
        assert!(
            closed.duration_since(answered) >= idle / 2,
            "closed {:?} after the answer",
            closed.duration_since(answered)
        );
        drop(client);
    });
}

#[test]
fn a_call_whose_message_stops_coming_fails_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    let (server, addr) = start_with_idle_timeout(idle);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let (answer, mut body) = client.send_request(exec_head(addr), false).unwrap();
        // A message announced as 100 bytes, of which 10 come.
        let mut frame = vec![0];
        frame.extend_from_slice(&100u32.to_be_bytes());
        frame.extend_from_slice(&[0; 10]);
        body.send_data(frame.into(), false).unwrap();
        let sent = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .expect("answered within 20 s")
            .expect("an answer");
        // An error before any message: the status may come in the head
        // (trailers only) or in trailers.
        let head = answer.headers().clone();
        let mut body = answer.into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        let field = |name: &str| {
            head.get(name)
                .or_else(|| trailers.get(name))
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {head:?} or {trailers:?}"))
        };
        assert_eq!(field("grpc-status"), "4", "DEADLINE_EXCEEDED");
        // Percent-encoded, as gRPC sends messages.
        let message = field("grpc-message").replace("%20", " ");
        assert!(
            message.contains("no part of the request body came for 0.5 s"),
            "{message}"
        );
        assert!(sent.elapsed() >= idle, "after {:?}", sent.elapsed());
    });
    // The call gave its slot back: the server goes on answering.
    let result = Grpc::connect(&server).run(cmd(&["true"]));
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
}

/// An HTTP/2 connection to `addr` made by hand, whose client lets the
/// server send no more than HTTP/2's initial windows (64 KiB for the
/// connection and for each call) beyond what the test takes: the client,
/// and the connection's end, once the server or the client closes it.
async fn connect_by_hand(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .initial_connection_window_size(65_535)
        .handshake(tcp)
        .await
        .unwrap();
    let closed = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client.ready().await.unwrap(), closed)
}

/// An `Exec` call on a connection of its own, made while `held` sessions
/// hold every place the server has for calls: checks that it is not
/// answered within half a second, and returns it, still waiting.
async fn waiting_call(
    addr: std::net::SocketAddr,
    held: usize,
) -> tokio::task::JoinHandle<Result<http::Response<h2::RecvStream>, h2::Error>> {
    let (mut client, closed) = connect_by_hand(addr).await;
    let mut call = tokio::spawn(async move {
        let _closed = closed;
        let (answer, mut body) = client.send_request(exec_head(addr), false).unwrap();
        body.send_data(grpc_frame(&Request::default()), true)
            .unwrap();
        answer.await
    });
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut call).await;
    assert!(
        waited.is_err(),
        "a call was answered while {held} sessions held every place"
    );
    call
}

/// Checks that `call`, made by [`waiting_call`], is answered (status 200)
/// within 20 s, `when` saying what let it through.
async fn answered(
    call: tokio::task::JoinHandle<Result<http::Response<h2::RecvStream>, h2::Error>>,
    when: &str,
) {
    let answer = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap_or_else(|_| panic!("not answered within 20 s {when}"))
        .unwrap()
        .expect("an answer");
    assert_eq!(answer.status(), 200);
}

/// An `Exec` whose answer is 256 KiB of stdout: four times the window the
/// client gives.
fn large_answer() -> Request {
    let mut command = cmd(&["head", "-c", "262144", "/dev/zero"]);
    command.files[1] = collector("stdout", 1 << 20);
    Request {
        cmd: vec![command],
        ..Request::default()
    }
}

#[test]
fn an_answer_the_client_takes_none_of_closes_its_connection_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let (server, addr) = start_with_idle_timeout(idle);
    runtime().block_on(async {
        let within = Duration::from_secs(20);

        // A client that takes its answer slowly, a frame every eighth of
        // the idle time, over more than twice the idle time: all of it
        // comes.
        let (mut client, _closed) = connect_by_hand(addr).await;
        let (answer, mut body) = client.send_request(exec_head(addr), false).unwrap();
        body.send_data(grpc_frame(&large_answer()), true).unwrap();
        let answer = answer.await.expect("an answer");
        assert_eq!(answer.status(), 200);
        let started = Instant::now();
        let mut body = answer.into_body();
        let mut read = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("the answer comes whole");
            let _ = body.flow_control().release_capacity(chunk.len());
            read.extend_from_slice(&chunk);
            tokio::time::sleep(idle / 8).await;
        }
        let trailers = body.trailers().await.unwrap().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
        assert!(
            started.elapsed() > 2 * idle,
            "read in {:?}",
            started.elapsed()
        );
        let response: Response = prost::Message::decode(&read[5..]).expect("a Response");
        assert_eq!(stdout(&response.results[0]).len(), 262_144);

        // A client that takes none of it: once the window is full and no
        // more is taken for the idle time, the server closes the
        // connection, and the call ends without the rest of its answer.
        let (mut client, closed) = connect_by_hand(addr).await;
        let (answer, mut body) = client.send_request(exec_head(addr), false).unwrap();
        body.send_data(grpc_frame(&large_answer()), true).unwrap();
        let answer = answer.await.expect("an answer");
        assert_eq!(answer.status(), 200);
        let answered = Instant::now();
        tokio::time::timeout(within, closed)
            .await
            .expect("the server closes the connection within 20 s")
            .unwrap();
        assert!(
            answered.elapsed() >= idle,
            "closed {:?} after the answer began",
            answered.elapsed()
        );
        let mut body = answer.into_body();
        let mut read = 0;
        let ended = loop {
            match body.data().await {
                Some(Ok(chunk)) => read += chunk.len(),
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            }
        };
        assert!(ended.is_err(), "the call ended cleanly after {read} bytes");
        assert!(read <= 65_535, "{read} bytes came");
    });
    // The server goes on answering.
    let result = Grpc::connect(&server).run(cmd(&["true"]));
    assert_eq!(status(&result), StatusType::Accepted, "{result:?}");
}

#[test]
fn an_exec_stream_whose_output_the_client_takes_none_of_ends_as_if_the_client_left() {
    let idle = Duration::from_secs(1);
    let (server, addr) = start_with_idle_timeout(idle);
    let mut rest = Client::new(server.addr());
    runtime().block_on(async {
        // 4 MiB of output, far more than the windows let through, for a
        // client that sends its request and then nothing, and reads
        // nothing.
        let mut command = cmd(&["head", "-c", "4194304", "/dev/zero"]);
        command.files[1] = streamed(Kind::StreamOut(()));
        command.clock_time_limit = 60_000_000_000;
        let (mut client, closed) = connect_by_hand(addr).await;
        let (answer, mut requests) = client
            .send_request(call_head(addr, "ExecStream"), false)
            .unwrap();
        requests
            .send_data(grpc_frame(&exec_request(command)), false)
            .unwrap();
        let answer = answer.await.expect("an answer");
        assert_eq!(answer.status(), 200);
        tokio::time::timeout(Duration::from_secs(20), closed)
            .await
            .expect("the server closes the connection within 20 s")
            .unwrap();
        drop((answer, requests));
    });
    // The session ends as if the client had gone, its run cancelled.
    common::wait_until("the session to end", || {
        rest.get("/metrics")
            .unwrap()
            .text()
            .contains("hutch_stream_sessions_total{api=\"ExecStream\",end=\"client gone\"} 1\n")
    });
    common::wait_until("the run to end", || {
        common::gauge(&mut rest, "hutch_running_requests") == 0
    });
    assert_still_serving(&mut Grpc::connect(&server));
}

/// An `ExecStream` call on its own connection: the sender of its requests
/// and the stream of its responses. The first request is sent.
async fn exec_stream(
    server: &Server,
    first: pb::StreamRequest,
) -> (
    tokio::sync::mpsc::Sender<pb::StreamRequest>,
    tonic::Streaming<pb::StreamResponse>,
) {
    let addr = server.listening().grpc.expect("the server serves gRPC");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let (requests, outgoing) = tokio::sync::mpsc::channel(16);
    requests.send(first).await.unwrap();
    let responses = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing)),
            http::uri::PathAndQuery::from_static("/pb.Executor/ExecStream"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect("the call is answered")
        .into_inner();
    (requests, responses)
}

fn exec_request(command: CmdType) -> pb::StreamRequest {
    pb::StreamRequest {
        request: Some(pb::stream_request::Request::ExecRequest(Request {
            cmd: vec![command],
            ..Request::default()
        })),
    }
}

fn stream_input(index: u32, fd: u32, content: &[u8]) -> pb::StreamRequest {
    pb::StreamRequest {
        request: Some(pb::stream_request::Request::ExecInput(
            pb::stream_request::Input {
                index,
                fd,
                content: content.to_vec(),
            },
        )),
    }
}

/// What comes until the last message: outputs, by `(index, fd)`, and the
/// results.
async fn until_response(
    responses: &mut tonic::Streaming<pb::StreamResponse>,
) -> (BTreeMap<(u32, u32), Vec<u8>>, Response) {
    let mut outputs = BTreeMap::<(u32, u32), Vec<u8>>::new();
    loop {
        let message = responses
            .message()
            .await
            .expect("no error")
            .expect("a message");
        match message.response.expect("something in it") {
            pb::stream_response::Response::ExecOutput(output) => outputs
                .entry((output.index, output.fd))
                .or_default()
                .extend_from_slice(&output.content),
            pb::stream_response::Response::ExecResponse(response) => {
                assert!(
                    responses.message().await.unwrap().is_none(),
                    "nothing after it"
                );
                return (outputs, response);
            }
        }
    }
}

fn streamed(kind: Kind) -> File {
    file(kind)
}

#[test]
fn exec_stream_feeds_and_reads_a_running_program() {
    let server = Server::start(config()).expect("the server starts");
    runtime().block_on(async {
        let mut cat = cmd(&["cat"]);
        cat.files[0] = streamed(Kind::StreamIn(()));
        cat.files[1] = streamed(Kind::StreamOut(()));
        let (requests, mut responses) = exec_stream(&server, exec_request(cat)).await;
        for i in 0..50 {
            let line = format!("line {i}\n");
            requests
                .send(stream_input(0, 0, line.as_bytes()))
                .await
                .unwrap();
            let message = responses.message().await.unwrap().unwrap();
            let Some(pb::stream_response::Response::ExecOutput(output)) = message.response else {
                panic!("not an output: {message:?}");
            };
            assert_eq!((output.index, output.fd), (0, 1));
            assert_eq!(output.content, line.as_bytes());
        }
        requests.send(stream_input(0, 0, b"")).await.unwrap();
        let (outputs, response) = until_response(&mut responses).await;
        assert!(outputs.is_empty(), "{outputs:?}");
        assert_eq!(
            status(&response.results[0]),
            StatusType::Accepted,
            "{response:?}"
        );

        // A client that sends nothing after its request still gets what
        // the program writes, to the end.
        let mut two = cmd(&["sh", "-c", "echo a; echo b"]);
        two.files[1] = streamed(Kind::StreamOut(()));
        let (requests, mut responses) = exec_stream(&server, exec_request(two)).await;
        drop(requests);
        let (outputs, response) = until_response(&mut responses).await;
        assert_eq!(outputs[&(0, 1)], b"a\nb\n");
        assert_eq!(
            status(&response.results[0]),
            StatusType::Accepted,
            "{response:?}"
        );

        // Cancel.
        let mut sleeper = cmd(&["sh", "-c", "echo ready; exec sleep 50"]);
        sleeper.files[1] = streamed(Kind::StreamOut(()));
        let (requests, mut responses) = exec_stream(&server, exec_request(sleeper)).await;
        let ready = responses.message().await.unwrap().unwrap();
        assert!(matches!(
            ready.response,
            Some(pb::stream_response::Response::ExecOutput(_))
        ));
        requests
            .send(pb::StreamRequest {
                request: Some(pb::stream_request::Request::ExecCancel(())),
            })
            .await
            .unwrap();
        let (_, response) = until_response(&mut responses).await;
        assert_eq!(
            status(&response.results[0]),
            StatusType::Signalled,
            "{response:?}"
        );
    });
    // Three sessions, each counted before its last message.
    let mut client = Client::new(server.addr());
    assert_eq!(
        common::gauge(
            &mut client,
            "hutch_stream_sessions_total{api=\"ExecStream\",end=\"ran\"}"
        ),
        3
    );
}

#[test]
fn exec_stream_refuses_what_makes_no_sense() {
    let server = Server::start(config()).expect("the server starts");
    runtime().block_on(async {
        // A first message that is no request: the call fails.
        let (_requests, mut responses) = exec_stream(&server, stream_input(0, 0, b"x")).await;
        let status = responses.message().await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("must be an execRequest"),
            "{status:?}"
        );

        // /run's mistakes are the same here.
        let (_requests, mut responses) = exec_stream(&server, exec_request(cmd(&[]))).await;
        let status = responses.message().await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("args is empty"), "{status:?}");

        // Later mistakes cancel the run and come with its results.
        let mut cat = cmd(&["cat"]);
        cat.files[0] = streamed(Kind::StreamIn(()));
        for (mistake, expected) in [
            (
                stream_input(0, 7, b"x"),
                "input for cmd[0] fd 7, which is no streamIn",
            ),
            (
                pb::StreamRequest {
                    request: Some(pb::stream_request::Request::ExecResize(
                        pb::stream_request::Resize::default(),
                    )),
                },
                "needs a terminal",
            ),
            (pb::StreamRequest { request: None }, "nothing in it"),
        ] {
            let (requests, mut responses) = exec_stream(&server, exec_request(cat.clone())).await;
            requests.send(mistake).await.unwrap();
            let (_, response) = until_response(&mut responses).await;
            assert!(response.error.contains(expected), "{response:?}");
        }
    });
}

#[test]
fn calls_given_up_while_queued_leave_no_place_taken_in_the_queue() {
    let gate = common::Gate::new();
    let server = Server::start(Config {
        max_queue: 2,
        ..gate.in_containers(config())
    })
    .expect("the server starts");
    let mut rest = Client::new(server.addr());
    let mut grpc = Grpc::connect(&server);
    std::thread::scope(|scope| {
        let _open = gate.opens_on_drop();
        // Both containers busy until the gate opens.
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let mut client = Grpc::connect(&server);
                scope.spawn(move || client.run(gated()))
            })
            .collect();
        common::wait_until("both to run", || {
            common::gauge(&mut rest, "hutch_running_requests") == 2
        });
        // Two calls take the queue's two places, and are given up.
        for _ in 0..2 {
            let request = Request {
                cmd: vec![cmd(&["true"])],
                ..Request::default()
            };
            grpc.exec_given_up(request, Duration::from_millis(200));
        }
        // The client's runtime runs on meanwhile, sending the resets.
        let addr = server.addr();
        let emptied = grpc.runtime.spawn_blocking(move || {
            let mut rest = Client::new(addr);
            common::wait_until("the queue to empty", || {
                common::gauge(&mut rest, "hutch_queue_depth") == 0
            });
        });
        grpc.runtime.block_on(emptied).expect("the wait");
        // Both places are free while the containers are still busy: two
        // more calls queue rather than being refused.
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let mut client = Grpc::connect(&server);
                scope.spawn(move || client.run(cmd(&["true"])))
            })
            .collect();
        common::wait_until("two calls queued", || {
            common::gauge(&mut rest, "hutch_queue_depth") == 2
        });
        assert_eq!(common::gauge(&mut rest, "hutch_running_requests"), 2);
        gate.open();
        for handle in busy.into_iter().chain(queued) {
            assert_eq!(status(&handle.join().unwrap()), StatusType::Accepted);
        }
    });
    assert_still_serving(&mut grpc);
}

#[test]
fn a_running_call_its_client_gives_up_is_cancelled() {
    let server = Server::start(config()).expect("the server starts");
    let mut rest = Client::new(server.addr());
    let mut grpc = Grpc::connect(&server);
    let request = Request {
        cmd: vec![CmdType {
            clock_time_limit: 60_000_000_000,
            ..cmd(&["sleep", "60"])
        }],
        ..Request::default()
    };
    // Given up once it runs (go-judge cancels such a call's run).
    let started = Instant::now();
    grpc.exec_given_up(request, Duration::from_millis(500));
    // The client's runtime runs on meanwhile, sending the reset.
    let waited = grpc.runtime.spawn_blocking(move || {
        common::wait_until("the run to end", || {
            common::gauge(&mut rest, "hutch_running_requests") == 0
        });
    });
    grpc.runtime.block_on(waited).expect("the wait");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run went on for its own limit"
    );
    assert_still_serving(&mut grpc);
}

#[test]
fn exec_stream_sessions_count_among_the_calls_the_server_takes_at_once() {
    // 64 connections of 16 sessions: the 1024 calls all connections may
    // have being read or run. Each session is answered at once and waits
    // for its first message, which never comes.
    const CONNECTIONS: usize = 64;
    const SESSIONS: usize = 16;
    let server = Server::start(config()).expect("the server starts");
    let addr = server.listening().grpc.unwrap();
    runtime().block_on(async {
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            let (mut client, closed) = connect_by_hand(addr).await;
            let mut sessions = Vec::new();
            for _ in 0..SESSIONS {
                client = client.ready().await.unwrap();
                let (answer, body) = client
                    .send_request(call_head(addr, "ExecStream"), false)
                    .unwrap();
                sessions.push((answer, body));
            }
            let mut started = Vec::new();
            for (answer, body) in sessions {
                let answer = tokio::time::timeout(Duration::from_secs(20), answer)
                    .await
                    .expect("a session is answered within 20 s")
                    .expect("an answer");
                assert_eq!(answer.status(), 200);
                started.push((answer, body));
            }
            held.push((client, closed, started));
        }
        // One call more waits for a place: its message is not read.
        let call = waiting_call(addr, CONNECTIONS * SESSIONS).await;
        // A session that ends on its own (its command run, its results
        // sent) gives its place back.
        let (answer, mut requests) = held[0].2.pop().unwrap();
        requests
            .send_data(grpc_frame(&exec_request(cmd(&["true"]))), true)
            .unwrap();
        let mut responses = answer.into_body();
        while let Some(chunk) = responses.data().await {
            let chunk = chunk.expect("the session's messages");
            let _ = responses.flow_control().release_capacity(chunk.len());
        }
        let trailers = responses.trailers().await.unwrap().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
        answered(call, "once a session ended").await;
        // Every place taken again: one session more.
        let (mut client, closed) = connect_by_hand(addr).await;
        let (answer, body) = client
            .send_request(call_head(addr, "ExecStream"), false)
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .expect("a session is answered within 20 s")
            .expect("an answer");
        assert_eq!(answer.status(), 200);
        held.push((client, closed, vec![(answer, body)]));
        let call = waiting_call(addr, CONNECTIONS * SESSIONS).await;
        // One connection closed ends its sessions, and frees their places.
        let (client, closed, started) = held.pop().unwrap();
        drop((client, started));
        closed.abort();
        answered(call, "once places are free").await;
    });
    assert_still_serving(&mut Grpc::connect(&server));
}
