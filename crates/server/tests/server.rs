//! The server over real HTTP on a loopback port: go-judge's requests and
//! answers, files in and out, pipes, interactive pairs, the file store,
//! authentication, the queue, and every kind of bad input.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hutch_server::client::{Answer, Client};
use hutch_server::{Config, Server};
use serde_json::{Value, json};

mod common;
use common::{Gate, config, gauge, wait_until};

fn start(config: Config) -> (Server, Client) {
    let server = Server::start(config).expect("the server starts");
    let client = Client::new(server.addr());
    (server, client)
}

/// POSTs a request to /run; the answer must be 200 with one result per
/// command.
fn run(client: &mut Client, request: &Value) -> Vec<Value> {
    let answer = client
        .post_json("/run", request.to_string().as_bytes())
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    match answer.json() {
        Value::Array(results) => results,
        other => panic!("not an array of results: {other}"),
    }
}

/// A command with an empty stdin and stdout and stderr collected.
fn cmd(args: &[&str]) -> Value {
    json!({
        "args": args,
        "env": ["PATH=/usr/bin:/bin"],
        "files": [{"content": ""}, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}],
        "cpuLimit": 5_000_000_000u64,
        "memoryLimit": 256u64 << 20,
        "procLimit": 50,
    })
}

fn single(command: Value) -> Value {
    json!({"cmd": [command]})
}

/// The answer to a request that must be refused: its status and message.
fn refused(client: &mut Client, body: &[u8]) -> (u16, String) {
    let answer = client.post_json("/run", body).unwrap();
    assert_ne!(answer.status, 200, "accepted: {}", answer.text());
    let message = match answer.json() {
        Value::String(message) => message,
        _ => panic!("the error is not a JSON string: {}", answer.text()),
    };
    (answer.status, message)
}

fn assert_still_serving(client: &mut Client) {
    let results = run(client, &single(cmd(&["echo", "still here"])));
    assert_eq!(results[0]["status"], "Accepted", "{results:?}");
    assert_eq!(results[0]["files"]["stdout"], "still here\n");
}

/// `tests/programs/pingpong.c`, compiled once for this test binary.
fn pingpong() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let source =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs/pingpong.c");
            let dir = common::scratch::process_dir("server-programs", 0o755);
            let binary = dir.join("pingpong");
            let output = std::process::Command::new("cc")
                .args(["-O2", "-Wall", "-o"])
                .arg(&binary)
                .arg(&source)
                .output()
                .expect("cc runs");
            assert!(
                output.status.success(),
                "cc failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            binary
        })
        .clone()
}

/// An interactive pair of [`pingpong`] (stored as `id`): `ping` sends
/// `rounds` messages that `pong` answers, and says on its stderr how many
/// rounds it made.
fn pingpong_pair(id: &str, rounds: u32) -> Value {
    let side = |args: &[&str]| {
        json!({
            "args": args,
            "files": [null, null, {"name": "stderr", "max": 1024}],
            "cpuLimit": 30_000_000_000u64,
            "clockLimit": 60_000_000_000u64,
            "memoryLimit": 64u64 << 20,
            "copyIn": {"pingpong": {"fileId": id}},
        })
    };
    json!({"cmd": [side(&["pingpong", "ping", &rounds.to_string()]), side(&["pingpong", "pong"])],
           "pipeMapping": [
               {"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}},
               {"in": {"index": 1, "fd": 1}, "out": {"index": 0, "fd": 0}}]})
}

/// Uploads `content` to the store; returns its id.
/// Reads `stream` until the server closes it, waiting at most 20 s for each
/// read, into `read`; how many bytes came.
fn read_until_closed(
    stream: &mut std::net::TcpStream,
    read: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.read_to_end(read)
}

fn upload(client: &mut Client, name: &str, content: &[u8]) -> String {
    let answer = client.post_file("/file", "file", name, content).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer
        .json()
        .as_str()
        .expect("an id as a JSON string")
        .to_owned()
}

#[test]
fn echo_is_accepted_with_go_judge_fields() {
    let (_server, mut client) = start(config());
    let results = run(&mut client, &single(cmd(&["echo", "hello"])));
    let result = &results[0];
    assert_eq!(result["status"], "Accepted");
    assert_eq!(result["exitStatus"], 0);
    assert_eq!(result["files"], json!({"stdout": "hello\n", "stderr": ""}));
    for field in ["time", "memory", "runTime"] {
        assert!(result[field].as_u64().is_some(), "{field} in {result}");
    }
    assert!(result["runTime"].as_u64().unwrap() > 0);
    if kernel_has_pids_peak() {
        assert_eq!(result["procPeak"], 1, "{result}");
    } else {
        assert!(result.get("procPeak").is_none(), "{result}");
    }
    // Empty fields are left out, as go-judge leaves them out.
    for absent in ["error", "fileIds", "fileError"] {
        assert!(result.get(absent).is_none(), "{absent} in {result}");
    }
}

/// Whether the kernel has `pids.peak`, which came with Linux 6.1.
fn kernel_has_pids_peak() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap(), numbers.next().unwrap());
    (major, minor) >= (6, 1)
}

#[test]
fn proc_peak_is_each_runs_own() {
    let (_server, mut client) = start(config());
    if !kernel_has_pids_peak() {
        eprintln!("this kernel has no pids.peak (Linux 6.1 and later): procPeak is left out");
    }
    // The shell and its sleeping children, all alive when it kills them;
    // then fewer, then one: each run's peak is its own, not the most any
    // earlier run in the same container had.
    let three = "sleep 100 & a=$!; sleep 100 & b=$!; kill $a $b; wait; exit 0";
    let two = "sleep 100 & a=$!; kill $a; wait; exit 0";
    for (script, peak) in [
        (three, 3),
        (two, 2),
        ("exit 0", 1),
        (three, 3),
        ("exit 0", 1),
    ] {
        let results = run(&mut client, &single(cmd(&["sh", "-c", script])));
        assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
        if kernel_has_pids_peak() {
            assert_eq!(results[0]["procPeak"], peak, "{script}: {}", results[0]);
        } else {
            assert!(results[0].get("procPeak").is_none(), "{}", results[0]);
        }
    }
}

#[test]
fn keys_are_case_insensitive_and_unknown_keys_ignored() {
    let (_server, mut client) = start(config());
    let results = run(
        &mut client,
        &json!({"CMD": [{"ARGS": ["cat", "In.txt"], "Files": [{"CONTENT": ""}, {"NAME": "stdout", "MAX": 100}],
                 "cpulimit": 1_000_000_000u64, "COPYIN": {"In.txt": {"Content": "case"}},
                 "somethingNew": [1, 2]}],
                "pipemapping": [], "extra": true}),
    );
    assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
    // Keys of copyIn are paths, and keep their case.
    assert_eq!(results[0]["files"]["stdout"], "case");
}

#[test]
fn a_null_file_slot_without_a_pipe_is_refused() {
    let (_server, mut client) = start(config());
    let (status, message) = refused(
        &mut client,
        json!({"cmd": [{"args": ["true"], "files": [null]}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "cmd[0].files[0] is null, and no pipeMapping fills it"
    );
}

#[test]
fn compile_then_run_through_the_store() {
    let (_server, mut client) = start(config());
    let mut compile = cmd(&["/usr/bin/g++", "a.cc", "-o", "a"]);
    compile["cpuLimit"] = json!(20_000_000_000u64);
    compile["clockLimit"] = json!(60_000_000_000u64);
    compile["memoryLimit"] = json!(1u64 << 30);
    compile["copyIn"] = json!({"a.cc": {"content":
        "#include <iostream>\nint main() { int a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n"}});
    compile["copyOut"] = json!(["stdout", "stderr"]);
    compile["copyOutCached"] = json!(["a.cc", "a"]);
    let results = run(&mut client, &single(compile));
    assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
    let binary = results[0]["fileIds"]["a"]
        .as_str()
        .expect("a fileId for a")
        .to_owned();
    assert!(results[0]["fileIds"]["a.cc"].is_string());

    let mut execute = cmd(&["a"]);
    execute["files"][0] = json!({"content": "1 2"});
    execute["copyIn"] = json!({"a": {"fileId": binary}});
    let results = run(&mut client, &single(execute));
    assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
    assert_eq!(results[0]["files"]["stdout"], "3\n");

    // The binary is in the store under its name.
    let listed = client.get("/file").unwrap().json();
    assert_eq!(listed[&binary], "a");
    let downloaded = client.get(&format!("/file/{binary}")).unwrap();
    assert_eq!(downloaded.status, 200);
    assert!(downloaded.body.starts_with(b"\x7fELF"));
}

#[test]
fn limits_give_go_judge_statuses() {
    let (_server, mut client) = start(config());
    let mut spin = cmd(&["sh", "-c", "while :; do :; done"]);
    spin["cpuLimit"] = json!(200_000_000u64);
    spin["clockLimit"] = json!(5_000_000_000u64);
    let tle = &run(&mut client, &single(spin))[0];
    assert_eq!(tle["status"], "Time Limit Exceeded", "{tle}");
    assert_eq!(tle["exitStatus"], 9, "killed by SIGKILL: {tle}");
    let time = tle["time"].as_u64().unwrap();
    assert!((200_000_000..400_000_000).contains(&time), "{tle}");

    let mut sleeper = cmd(&["sleep", "5"]);
    sleeper["cpuLimit"] = json!(1_000_000_000u64);
    sleeper["clockLimit"] = json!(200_000_000u64);
    let wall = &run(&mut client, &single(sleeper))[0];
    assert_eq!(wall["status"], "Time Limit Exceeded", "{wall}");

    let mut hog = cmd(&["python3", "-c", "a = bytearray(200 << 20)"]);
    hog["memoryLimit"] = json!(64u64 << 20);
    let mle = &run(&mut client, &single(hog))[0];
    if rustix::process::geteuid().is_root() {
        assert_eq!(mle["status"], "Memory Limit Exceeded", "{mle}");
    }

    let mut flood = cmd(&["sh", "-c", "head -c 100000 /dev/zero"]);
    flood["files"][1] = json!({"name": "stdout", "max": 1000});
    let ole = &run(&mut client, &single(flood))[0];
    assert_eq!(ole["status"], "Output Limit Exceeded", "{ole}");
    assert_eq!(ole["error"], "Output Limit Exceeded", "{ole}");
    assert_eq!(ole["fileError"][0]["type"], "CollectSizeExceeded", "{ole}");
    assert_eq!(ole["files"]["stdout"].as_str().unwrap().len(), 1000);

    // An endless writer is stopped at its collector, not at its memory
    // limit, though what it writes there is memory of its run.
    let mut endless = cmd(&["yes"]);
    endless["files"][1] = json!({"name": "stdout", "max": 1000});
    endless["memoryLimit"] = json!(32u64 << 20);
    let ole = &run(&mut client, &single(endless))[0];
    assert_eq!(ole["status"], "Output Limit Exceeded", "{ole}");
    assert_eq!(ole["error"], "Output Limit Exceeded", "{ole}");
    assert_eq!(ole["files"]["stdout"].as_str().unwrap().len(), 1000);

    let crash = &run(&mut client, &single(cmd(&["sh", "-c", "kill -SEGV $$"])))[0];
    assert_eq!(crash["status"], "Signalled", "{crash}");
    assert_eq!(crash["exitStatus"], 11);

    let nonzero = &run(&mut client, &single(cmd(&["sh", "-c", "exit 3"])))[0];
    assert_eq!(nonzero["status"], "Nonzero Exit Status", "{nonzero}");
    assert_eq!(nonzero["exitStatus"], 3);

    let missing = &run(&mut client, &single(cmd(&["/no/such/program"])))[0];
    assert_eq!(missing["status"], "Internal Error", "{missing}");
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("/no/such/program"),
        "{missing}"
    );
}

#[test]
fn copy_out_of_a_symlink_is_a_file_error_never_its_target() {
    let (_server, mut client) = start(config());
    let mut plant = cmd(&["ln", "-s", "/etc/passwd", "passwd"]);
    plant["copyOut"] = json!(["passwd"]);
    let result = &run(&mut client, &single(plant))[0];
    assert_eq!(result["status"], "File Error", "{result}");
    assert_eq!(result["fileError"][0]["name"], "passwd");
    assert_eq!(result["fileError"][0]["type"], "CopyOutNotRegularFile");
    assert!(result["files"].get("passwd").is_none(), "{result}");
}

#[test]
fn an_optional_copy_out_may_be_missing() {
    let (_server, mut client) = start(config());
    let mut command = cmd(&["sh", "-c", "echo made > made.txt"]);
    command["copyOut"] = json!(["missing.txt?", "made.txt?", "stdout"]);
    let result = &run(&mut client, &single(command))[0];
    assert_eq!(result["status"], "Accepted", "{result}");
    assert_eq!(result["files"]["made.txt"], "made\n");
    assert!(result["files"].get("missing.txt").is_none());

    let mut command = cmd(&["true"]);
    command["copyOut"] = json!(["missing.txt"]);
    let result = &run(&mut client, &single(command))[0];
    assert_eq!(result["status"], "File Error", "{result}");
    assert_eq!(result["fileError"][0]["type"], "CopyOutOpen");
}

#[test]
fn copy_out_max_refuses_or_truncates() {
    let (_server, mut client) = start(config());
    let mut command = cmd(&["sh", "-c", "head -c 1000 /dev/zero | tr '\\0' y > big"]);
    command["copyOut"] = json!(["big"]);
    command["copyOutMax"] = json!(100);
    let result = &run(&mut client, &single(command.clone()))[0];
    assert_eq!(result["status"], "File Error", "{result}");
    assert_eq!(result["fileError"][0]["type"], "CopyOutSizeExceeded");
    assert!(result["files"].get("big").is_none());

    command["copyOutTruncate"] = json!(true);
    let result = &run(&mut client, &single(command))[0];
    assert_eq!(result["files"]["big"], "y".repeat(100), "{result}");
    assert_eq!(result["fileError"][0]["type"], "CopyOutSizeExceeded");
}

#[test]
fn a_megabyte_goes_from_producer_to_consumer() {
    let (_server, mut client) = start(config());
    for proxy in [false, true] {
        let mut producer = cmd(&["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' z"]);
        producer["files"][1] = Value::Null;
        let mut consumer = cmd(&["sh", "-c", "wc -c; tr -d z | wc -c"]);
        consumer["files"][0] = Value::Null;
        let results = run(
            &mut client,
            &json!({"cmd": [producer, consumer], "pipeMapping": [
                {"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0},
                 "proxy": proxy, "name": "relayed", "max": 64}]}),
        );
        assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
        assert_eq!(results[1]["status"], "Accepted", "{}", results[1]);
        assert_eq!(
            results[1]["files"]["stdout"], "1048576\n0\n",
            "proxy {proxy}"
        );
        if proxy {
            assert_eq!(results[0]["files"]["relayed"], "z".repeat(64));
        }
    }
}

#[test]
fn what_a_proxy_records_goes_to_the_store_when_copy_out_cached_names_it() {
    let (_server, mut client) = start(config());
    let mut writer = cmd(&["sh", "-c", "echo relayed; echo kept >&2"]);
    writer["files"][1] = Value::Null;
    writer["copyOutCached"] = json!(["p", "stderr"]);
    let mut reader = cmd(&["cat"]);
    reader["files"][0] = Value::Null;
    let results = run(
        &mut client,
        &json!({"cmd": [writer, reader], "pipeMapping": [
            {"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0},
             "proxy": true, "name": "p", "max": 64}]}),
    );
    assert_eq!(results[0]["status"], "Accepted", "{results:?}");
    assert_eq!(results[1]["files"]["stdout"], "relayed\n", "{results:?}");
    // As go-judge: every result file named in copyOutCached is stored,
    // the proxy's record as a collector's output.
    assert!(results[0]["files"].get("p").is_none(), "{results:?}");
    for (name, content) in [("p", "relayed\n"), ("stderr", "kept\n")] {
        let id = results[0]["fileIds"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no fileIds.{name}: {results:?}"));
        let file = client.get(&format!("/file/{id}")).unwrap();
        assert_eq!(file.status, 200);
        assert_eq!(file.text(), content);
    }
}

#[test]
fn a_proxy_whose_name_its_writer_already_gives_is_refused() {
    let (_server, mut client) = start(config());
    // Named like a collector of its writer.
    let mut writer = cmd(&["echo", "x"]);
    writer["files"][1] = Value::Null;
    let mut reader = cmd(&["cat"]);
    reader["files"][0] = Value::Null;
    let request = json!({"cmd": [writer.clone(), reader.clone()], "pipeMapping": [
        {"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0},
         "proxy": true, "name": "stderr", "max": 64}]});
    let (status, message) = refused(&mut client, request.to_string().as_bytes());
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("pipeMapping[0]") && message.contains("\"stderr\""),
        "{message}"
    );
    // Two proxies of one writer with one name.
    writer["files"] = json!([{"content": ""}, null, {"name": "stderr", "max": 64}, null]);
    reader["files"] =
        json!([null, {"name": "stdout", "max": 64}, {"name": "stderr", "max": 64}, null]);
    let pipe = |from: usize, to: usize| {
        json!({"in": {"index": 0, "fd": from}, "out": {"index": 1, "fd": to},
               "proxy": true, "name": "p", "max": 64})
    };
    let request = json!({"cmd": [writer, reader], "pipeMapping": [pipe(1, 0), pipe(3, 3)]});
    let (status, message) = refused(&mut client, request.to_string().as_bytes());
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("pipeMapping[1]")
            && message.contains("pipeMapping[0]")
            && message.contains("\"p\""),
        "{message}"
    );
    assert_still_serving(&mut client);
}

#[test]
fn an_interactive_pair_does_fifty_thousand_round_trips() {
    let (_server, mut client) = start(config());
    let program = std::fs::read(pingpong()).unwrap();
    let id = upload(&mut client, "pingpong", &program);
    let started = Instant::now();
    let results = run(&mut client, &pingpong_pair(&id, 50_000));
    eprintln!("50000 round trips in {:?}", started.elapsed());
    assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
    assert_eq!(results[0]["files"]["stderr"], "50000 rounds\n");
    assert_eq!(results[1]["status"], "Accepted", "{}", results[1]);
}

#[test]
fn ten_thousand_copy_in_then_exec_runs_from_four_clients_all_succeed() {
    let (server, mut client) = start(config());
    let program = std::fs::read(pingpong()).unwrap();
    let id = upload(&mut client, "pingpong", &program);
    let request = json!({"cmd": [{
        "args": ["./prog", "pong"],
        "files": [{"content": "12345678"}, {"name": "stdout", "max": 64}],
        "cpuLimit": 1_000_000_000u64,
        "copyIn": {"prog": {"fileId": id}},
    }]})
    .to_string();
    let addr = server.addr();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::new(addr);
                    let mut failures = Vec::new();
                    for _ in 0..2500 {
                        let answer = client.post_json("/run", request.as_bytes()).unwrap();
                        let result = &answer.json()[0];
                        if answer.status != 200
                            || result["status"] != "Accepted"
                            || result["files"]["stdout"] != "12345678"
                        {
                            failures.push(answer.text());
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of 10000 runs failed, first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn a_token_guards_everything_but_version_and_config() {
    let mut config = config();
    config.auth_token = Some("s3cret".into());
    let (server, mut anonymous) = start(config);
    for path in ["/version", "/config"] {
        assert_eq!(anonymous.get(path).unwrap().status, 200, "{path}");
    }
    for path in ["/file", "/metrics"] {
        assert_eq!(anonymous.get(path).unwrap().status, 401, "{path}");
    }
    let body = single(cmd(&["true"])).to_string();
    let answer = anonymous.post_json("/run", body.as_bytes()).unwrap();
    assert_eq!(answer.status, 401);
    assert!(answer.json().is_string(), "{}", answer.text());
    let mut wrong = Client::new(server.addr()).with_token("guess");
    assert_eq!(
        wrong.post_json("/run", body.as_bytes()).unwrap().status,
        401
    );
    let mut right = Client::new(server.addr()).with_token("s3cret");
    let results = run(&mut right, &single(cmd(&["true"])));
    assert_eq!(results[0]["status"], "Accepted");
}

/// An empty token would let in every request that says `Bearer `: a
/// server given one does not start.
#[test]
fn an_empty_token_is_refused_at_start() {
    let mut config = config();
    config.auth_token = Some(String::new());
    let Err(error) = Server::start(config) else {
        panic!("a server with an empty token started");
    };
    assert_eq!(
        error.to_string(),
        "invalid server configuration: the auth token is empty: any request with \
         `Authorization: Bearer ` would pass (give none to serve without one)"
    );
}

#[test]
fn the_file_store_creates_lists_reads_and_deletes() {
    let (_server, mut client) = start(config());
    let id = upload(&mut client, "notes.txt", b"some notes");
    assert_eq!(id.len(), 16);
    let listed = client.get("/file").unwrap().json();
    assert_eq!(listed[&id], "notes.txt", "{listed}");
    let file = client.get(&format!("/file/{id}")).unwrap();
    assert_eq!(file.status, 200);
    assert_eq!(file.body, b"some notes");
    assert_eq!(
        file.header("content-disposition"),
        Some("attachment; filename=\"notes.txt\"")
    );
    assert_eq!(client.delete(&format!("/file/{id}")).unwrap().status, 200);
    assert_eq!(client.get(&format!("/file/{id}")).unwrap().status, 404);
    assert_eq!(client.delete(&format!("/file/{id}")).unwrap().status, 404);
    assert!(client.get("/file").unwrap().json().get(&id).is_none());
    // Ids that are not ids reach nothing.
    assert_eq!(
        client.get("/file/..%2F..%2Fetc%2Fpasswd").unwrap().status,
        404
    );
    let form = client.post_file("/file", "other", "x", b"x").unwrap();
    assert_eq!(form.status, 400, "{}", form.text());
}

#[test]
fn uploads_are_read_as_go_judge_reads_them() {
    let (_server, mut client) = start(config());
    // Not a form: a JSON string says so.
    for content_type in [None, Some("application/json"), Some("multipart/form-data")] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|value| vec![("Content-Type", value)])
            .unwrap_or_default();
        let answer = client.request("POST", "/file", &headers, b"x").unwrap();
        assert_eq!(answer.status, 400, "{content_type:?}: {}", answer.text());
        let message = answer.json();
        assert!(
            message
                .as_str()
                .is_some_and(|m| m.starts_with("the upload must be a multipart/form-data form")),
            "{content_type:?}: {}",
            answer.text()
        );
    }
    // Only the base name of a file's name is kept.
    let id = upload(&mut client, "dir/sub/x.txt", b"x");
    assert_eq!(client.get("/file").unwrap().json()[&id], "x.txt");
    // A part without a filename, or with an empty one, is no file.
    let empty = client.post_file("/file", "file", "", b"x").unwrap();
    assert_eq!(empty.status, 400, "{}", empty.text());
    let boundary = "b0undary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let unnamed = client
        .request(
            "POST",
            "/file",
            &[("Content-Type", &content_type)],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(unnamed.status, 400, "{}", unnamed.text());
    assert_eq!(
        unnamed.json(),
        "the form has no file: a field named file with a filename"
    );
    assert_eq!(
        client
            .get("/file")
            .unwrap()
            .json()
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

/// A command that waits at the test's [`Gate`] (within a minute).
fn gated() -> Value {
    let mut command = cmd(&Gate::ARGS);
    command["clockLimit"] = json!(60_000_000_000u64);
    command
}

/// Sends `first`, waits until it runs, sends `second`, waits until that is
/// queued, calls `meanwhile`, checks `first` still runs, then opens `gate`,
/// which `first` waits at; the statuses of both answers, each of whose
/// commands must have been `Accepted` when it is 200.
fn one_running_one_queued(
    server: &Server,
    client: &mut Client,
    gate: &Gate,
    first: &str,
    second: &str,
    meanwhile: impl FnOnce(&mut Client),
) -> (u16, u16) {
    let addr = server.addr();
    std::thread::scope(|scope| {
        let _open = gate.opens_on_drop();
        let running = scope.spawn(|| {
            Client::new(addr)
                .post_json("/run", first.as_bytes())
                .unwrap()
        });
        wait_until("the first request running", || {
            gauge(client, "hutch_running_requests") == 1
        });
        let queued = scope.spawn(|| {
            Client::new(addr)
                .post_json("/run", second.as_bytes())
                .unwrap()
        });
        wait_until("the second request queued", || {
            gauge(client, "hutch_queue_depth") == 1
        });
        meanwhile(client);
        assert_eq!(
            gauge(client, "hutch_running_requests"),
            1,
            "the first request still runs"
        );
        gate.open();
        let answers = [running.join().unwrap(), queued.join().unwrap()];
        for answer in &answers {
            if answer.status == 200 {
                let results = answer.json();
                let results = results.as_array().unwrap();
                assert!(
                    results.iter().all(|r| r["status"] == "Accepted"),
                    "{results:?}"
                );
            }
        }
        (answers[0].status, answers[1].status)
    })
}

#[test]
fn a_request_with_more_commands_than_the_parallelism_runs_alone() {
    let gate = Gate::new();
    let mut config = gate.in_containers(config());
    config.parallelism = 1;
    let (server, mut client) = start(config);
    // A three-command pipeline, and an interactive pair, on a server that
    // keeps one container.
    let mut first = cmd(&["echo", "piped along"]);
    first["files"][1] = Value::Null;
    let mut middle = cmd(&["tr", "a-z", "A-Z"]);
    middle["files"][0] = Value::Null;
    middle["files"][1] = Value::Null;
    let mut last = cmd(&["cat"]);
    last["files"][0] = Value::Null;
    let results = run(
        &mut client,
        &json!({"cmd": [first, middle, last], "pipeMapping": [
            {"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}},
            {"in": {"index": 1, "fd": 1}, "out": {"index": 2, "fd": 0}}]}),
    );
    assert!(
        results.iter().all(|r| r["status"] == "Accepted"),
        "{results:?}"
    );
    assert_eq!(results[2]["files"]["stdout"], "PIPED ALONG\n");
    let program = std::fs::read(pingpong()).unwrap();
    let id = upload(&mut client, "pingpong", &program);
    let results = run(&mut client, &pingpong_pair(&id, 100));
    assert_eq!(results[0]["status"], "Accepted", "{}", results[0]);
    assert_eq!(results[0]["files"]["stderr"], "100 rounds\n");
    assert_eq!(results[1]["status"], "Accepted", "{}", results[1]);
    // While it runs, nothing else does: a one-command request waits.
    let slow = json!({"cmd": [gated(), gated()]}).to_string();
    let quick = single(cmd(&["true"])).to_string();
    let statuses = one_running_one_queued(&server, &mut client, &gate, &slow, &quick, |_| {});
    assert_eq!(statuses, (200, 200));
    // The container built for the pair is gone; the server keeps one.
    wait_until("one container idle", || {
        gauge(&mut client, "hutch_idle_containers") == 1
    });
    assert_eq!(gauge(&mut client, "hutch_containers"), 1);
    assert_still_serving(&mut client);
}

#[test]
fn a_request_whose_containers_are_free_takes_no_place_in_the_queue() {
    let gate = Gate::new();
    let mut config = gate.in_containers(config());
    config.max_queue = 0;
    let (server, mut client) = start(config);
    // No request may wait, yet one whose containers are free runs, as do
    // two at once on the two containers.
    assert_still_serving(&mut client);
    let pair = json!({"cmd": [cmd(&["true"]), cmd(&["true"])]});
    let results = run(&mut client, &pair);
    assert!(
        results.iter().all(|r| r["status"] == "Accepted"),
        "{results:?}"
    );
    let addr = server.addr();
    let quick = single(cmd(&["true"])).to_string();
    std::thread::scope(|scope| {
        let both: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    Client::new(addr)
                        .post_json("/run", quick.as_bytes())
                        .unwrap()
                        .status
                })
            })
            .collect();
        for one in both {
            assert_eq!(one.join().unwrap(), 200);
        }
    });
    // With both containers taken, the next one would wait: refused.
    let slow = json!({"cmd": [gated(), gated()]}).to_string();
    std::thread::scope(|scope| {
        let _open = gate.opens_on_drop();
        let running = scope.spawn(|| {
            Client::new(addr)
                .post_json("/run", slow.as_bytes())
                .unwrap()
        });
        wait_until("the pair running", || {
            gauge(&mut client, "hutch_running_requests") == 1
        });
        let (status, message) = refused(&mut client, quick.as_bytes());
        assert_eq!(status, 503);
        assert!(message.contains("queue is full"), "{message}");
        assert_eq!(
            gauge(&mut client, "hutch_running_requests"),
            1,
            "refused while the pair ran"
        );
        gate.open();
        let answer = running.join().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let results = answer.json();
        assert!(
            results
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "Accepted"),
            "{results}"
        );
    });
    assert_eq!(gauge(&mut client, "hutch_queue_depth"), 0);
}

#[test]
fn a_full_queue_is_answered_503_at_once() {
    let gate = Gate::new();
    let mut config = gate.in_containers(config());
    config.parallelism = 1;
    config.max_queue = 1;
    let (server, mut client) = start(config);
    let slow = single(gated()).to_string();
    let statuses = one_running_one_queued(&server, &mut client, &gate, &slow, &slow, |client| {
        let started = Instant::now();
        let (status, message) = refused(client, slow.as_bytes());
        assert_eq!(status, 503);
        assert!(message.contains("queue is full"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at once"
        );
    });
    assert_eq!(statuses, (200, 200));
    let metrics = client.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("hutch_run_requests_total{code=\"503\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hutch_runs_total{status=\"Accepted\"} 2"),
        "{metrics}"
    );
}

#[test]
fn bad_input_is_refused_naming_what_is_wrong() {
    let scratch = common::scratch::TempDir::new("server-prefix", 0o755);
    let prefix = scratch.to_path_buf();
    std::fs::write(prefix.join("ok.txt"), "fine").unwrap();
    let _ = std::fs::remove_file(prefix.join("escape"));
    std::os::unix::fs::symlink("/etc/passwd", prefix.join("escape")).unwrap();
    let mut config = config();
    config.src_prefixes = vec![prefix.clone()];
    config.max_body = 64 << 10;
    let (_server, mut client) = start(config);
    let with = |field: &str, value: Value| {
        let mut command = cmd(&["true"]);
        command[field] = value;
        single(command).to_string()
    };
    let ok_src = prefix.join("ok.txt").display().to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"cmd\": [".into(), 400, "the request is not valid JSON"),
        ("[]".into(), 400, "the request must be an object"),
        (json!({"cmd": []}).to_string(), 400, "no cmd provided"),
        (with("args", json!([])), 400, "cmd[0].args is empty"),
        (with("cpuLimit", json!(-1)), 400, "cmd[0].cpuLimit must be a non-negative integer, not -1"),
        (with("cpuLimit", json!(1e15 as u64)), 400, "cmd[0].cpuLimit is 1000000000000000 ns, more than"),
        (with("memoryLimit", json!(1u64 << 60)), 400, "cmd[0].memoryLimit is"),
        (with("memoryLimit", json!(1000)), 400, "less than the smallest limit"),
        (with("procLimit", json!(1u64 << 40)), 400, "cmd[0].procLimit is"),
        (with("cpuSetLimit", json!("0-x")), 400, "cmd[0].cpuSetLimit"),
        (with("env", json!(["NOEQUALS"])), 400, "cmd[0].env[0] is not KEY=VALUE"),
        (with("env", json!(["A=b\0c"])), 400, "cmd[0].env[0] holds a NUL byte"),
        (with("tty", json!(true)), 400, "terminals are not supported"),
        (with("copyIn", json!({"a": {"fileId": "AAAAAAAAAAAAAAAA"}})), 400,
         "cmd[0].copyIn[\"a\"].fileId: no stored file has the id"),
        (with("copyIn", json!({"a": {"src": "/etc/passwd"}})), 400, "is not under an allowed prefix"),
        (with("copyIn", json!({"a": {"src": prefix.join("escape").display().to_string()}})), 400,
         "leads out of"),
        (with("copyIn", json!({"a": {"src": format!("{}/../etc/passwd", prefix.display())}})), 400,
         "leads out of"),
        (with("copyIn", json!({"../x": {"content": "x"}})), 400, "has a `..` component"),
        (with("copyIn", json!({"a": {"symlink": ""}})), 400, "symlink must be a non-empty path"),
        (with("copyOut", json!(["../../etc/passwd"])), 400, "has a `..` component"),
        (with("copyOut", json!([""])), 400, "the path is empty"),
        (with("files", json!([{"streamIn": true}])), 400, "streamIn and streamOut"),
        (with("files", json!([{"max": 5}])), 400, "is no file"),
        (
            with("files", json!([{"content": ""}, {"name": "out", "max": 5}, {"name": "out", "max": 6}])),
            400,
            "command 0 has two collectors named \"out\" with different settings",
        ),
        (json!({"cmd": [cmd(&["true"])], "pipeMapping": [{"in": {"index": 5, "fd": 1}, "out": {"index": 0, "fd": 0}}]}).to_string(),
         400, "pipeMapping[0].in.index is 5, but the request has 1 commands"),
        (json!({"cmd": [cmd(&["true"]), cmd(&["true"])], "pipeMapping": [{"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}}]}).to_string(),
         400, "pipeMapping[0].in names fd 1 of cmd[0], which its files already fill"),
        (json!({"cmd": [cmd(&["true"])], "pipeMapping": [{"in": {"index": 0, "fd": 1000}, "out": {"index": 0, "fd": 0}}]}).to_string(),
         400, "pipeMapping[0].in.fd is 1000"),
        (json!({"cmd": vec![cmd(&["true"]); 17]}).to_string(), 400,
         "the request has 17 commands, more than the 16 this server takes in one request"),
        (with("copyIn", json!({"big": {"content": "x".repeat(100 << 10)}})), 413, "larger than this server takes"),
    ];
    for (body, status, expected) in &cases {
        let (got, message) = refused(&mut client, body.as_bytes());
        assert_eq!(got, *status, "{message}\nfor {body:.200}");
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
    }
    // A src under the prefix is fine.
    let mut command = cmd(&["cat", "copied"]);
    command["copyIn"] = json!({"copied": {"src": ok_src}});
    let result = &run(&mut client, &single(command))[0];
    assert_eq!(result["files"]["stdout"], "fine", "{result}");
    assert_still_serving(&mut client);
    wait_until("every container idle", || {
        gauge(&mut client, "hutch_idle_containers") == 2
    });
}

#[test]
fn src_is_taken_as_the_prefix_is_named_or_resolved_and_never_from_outside() {
    let scratch = common::scratch::TempDir::new("server-linked-prefix", 0o755);
    let real = scratch.join("real");
    let named = scratch.join("named");
    std::fs::create_dir_all(real.join("sub")).unwrap();
    std::os::unix::fs::symlink(&real, &named).unwrap();
    std::fs::write(real.join("ok.txt"), "fine").unwrap();
    std::fs::write(scratch.join("outside.txt"), "secret").unwrap();
    let link = |target: &std::path::Path, name: &str| {
        std::os::unix::fs::symlink(target, real.join(name)).unwrap();
    };
    link(&real.join("ok.txt"), "absolute");
    link(&named.join("ok.txt"), "through-named");
    link("ok.txt".as_ref(), "relative");
    link("../ok.txt".as_ref(), "sub/up");
    link("/etc/passwd".as_ref(), "out");
    link("../outside.txt".as_ref(), "out-relative");
    link("/nonexistent/hutch".as_ref(), "out-to-nothing");
    let mut config = config();
    config.src_prefixes = vec![named.clone()];
    let (_server, mut client) = start(config);

    let src =
        |base: &std::path::Path, name: &str| json!({"src": base.join(name).display().to_string()});
    let mut command = cmd(&["sh", "-c", "cat a b c d e f; echo"]);
    command["copyIn"] = json!({
        "a": src(&named, "ok.txt"), "b": src(&real, "ok.txt"), "c": src(&named, "absolute"),
        "d": src(&named, "relative"), "e": src(&real, "sub/up"), "f": src(&named, "through-named"),
    });
    let result = &run(&mut client, &single(command))[0];
    assert_eq!(result["status"], "Accepted", "{result}");
    assert_eq!(
        result["files"]["stdout"], "finefinefinefinefinefine\n",
        "{result}"
    );

    for (path, expected) in [
        (named.join("out"), "leads out of"),
        (real.join("out-relative"), "leads out of"),
        (named.join("out-to-nothing"), "leads out of"),
        (named.join("sub/../../outside.txt"), "leads out of"),
        (
            scratch.join("outside.txt"),
            "is not under an allowed prefix",
        ),
        (named.join("missing"), "cannot open"),
    ] {
        let mut command = cmd(&["true"]);
        command["copyIn"] = json!({"a": {"src": path.display().to_string()}});
        let (status, message) = refused(&mut client, single(command).to_string().as_bytes());
        assert_eq!(status, 400, "{message}");
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
        assert!(message.starts_with("cmd[0].copyIn[\"a\"].src"), "{message}");
        assert!(
            message.contains(&format!("{:?}", path.display().to_string())),
            "{message}"
        );
    }
}

#[test]
fn unknown_endpoints_answer_404_in_json() {
    let (_server, mut client) = start(config());
    let answer: Answer = client.get("/nothing").unwrap();
    assert_eq!(answer.status, 404);
    assert!(answer.json().is_string());
}

#[test]
fn bodies_are_read_as_go_judge_reads_them() {
    let (_server, mut client) = start(config());
    // A contestant's source with a broken character, as JavaScript's
    // JSON.stringify writes it, and bytes that are not UTF-8; a null
    // argument; and something after the request.
    let mut command = cmd(&["sh", "-c", "cat a.txt; printf '[%s]' \"$1\"", "sh"]);
    command["args"].as_array_mut().unwrap().push(Value::Null);
    command["copyIn"] = json!({"a.txt": {"content": "CONTENT"}});
    let mut body = single(command).to_string();
    body.push_str("\n{\"trailing\": ");
    let body = body.replace("CONTENT", "x\\ud800y").into_bytes();
    let at = body.windows(2).position(|w| w == b"y\"").unwrap() + 1;
    let body = [&body[..at], b"\xc3", &body[at..]].concat();
    let answer = client.post_json("/run", &body).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let result = &answer.json()[0];
    assert_eq!(result["status"], "Accepted", "{result}");
    assert_eq!(
        result["files"]["stdout"], "x\u{FFFD}y\u{FFFD}[]",
        "{result}"
    );
}

#[test]
fn json_answers_are_typed_as_go_judge_types_them() {
    let (_server, mut client) = start(config());
    let id = upload(&mut client, "a.txt", b"a");
    let answers = [
        (
            "/run",
            client.post_json("/run", single(cmd(&["true"])).to_string().as_bytes()),
        ),
        ("/run refused", client.post_json("/run", b"{")),
        ("/file", client.get("/file")),
        (
            "POST /file",
            client.post_file("/file", "file", "b.txt", b"b"),
        ),
        ("/file/{id} missing", client.get("/file/AAAAAAAAAAAAAAAA")),
        ("/version", client.get("/version")),
        ("/config", client.get("/config")),
        ("no endpoint", client.get("/nothing")),
    ];
    for (what, answer) in answers {
        let answer = answer.unwrap();
        assert_eq!(
            answer.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{what}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(!answer.json().is_null(), "{what}: {}", answer.text());
    }
    // A stored file keeps the type of its name.
    let file = client.get(&format!("/file/{id}")).unwrap();
    assert_eq!(
        file.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn answers_say_how_long_an_idle_connection_stays_open() {
    let (_server, mut client) = start(config());
    let hint = format!("timeout={}", hutch_server::DEFAULT_IDLE_TIMEOUT.as_secs());
    let version = client.get("/version").unwrap();
    assert_eq!(version.header("keep-alive"), Some(hint.as_str()));
    let answer = client
        .post_json("/run", single(cmd(&["true"])).to_string().as_bytes())
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("keep-alive"), Some(hint.as_str()));
    let refused = client.post_json("/run", b"{").unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("keep-alive"), Some(hint.as_str()));
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    use std::io::{Read, Write};
    let idle = Duration::from_millis(1500);
    let (server, _) = start(Config {
        idle_timeout: idle,
        ..config()
    });
    // Reads until the server closes the connection, for at most 20 s; the
    // bytes read.
    let read_to_close = |stream: &mut std::net::TcpStream| {
        let mut read = Vec::new();
        read_until_closed(stream, &mut read).expect("closed by the server within 20 s");
        read
    };

    // Nothing sent at all.
    let connected = Instant::now();
    let mut silent = std::net::TcpStream::connect(server.addr()).unwrap();
    assert!(read_to_close(&mut silent).is_empty());
    assert!(
        connected.elapsed() >= idle,
        "closed after {:?}",
        connected.elapsed()
    );

    // Kept alive after an answer, whose hint says how long it may wait
    // (in whole seconds, rounded down).
    let mut kept = std::net::TcpStream::connect(server.addr()).unwrap();
    kept.write_all(b"GET /version HTTP/1.1\r\nHost: hutch\r\n\r\n")
        .unwrap();
    let mut head = [0; 12];
    kept.read_exact(&mut head).unwrap();
    let answered = Instant::now();
    assert_eq!(&head, b"HTTP/1.1 200");
    let rest = String::from_utf8(read_to_close(&mut kept)).unwrap();
    assert!(
        answered.elapsed() >= idle.mul_f64(0.9),
        "closed {:?} after the answer",
        answered.elapsed()
    );
    assert!(
        rest.to_ascii_lowercase()
            .contains("keep-alive: timeout=1\r\n"),
        "{rest}"
    );
}

#[test]
fn a_client_that_stops_sending_holds_up_neither_its_answer_nor_shutdown() {
    use std::io::{Read, Write};
    let grace = Duration::from_millis(300);
    let (server, _) = start(Config {
        shutdown_grace: grace,
        ..config()
    });
    let addr = server.addr();
    // A body that stops a few bytes into its announced 100.
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    stalled
        .write_all(b"POST /run HTTP/1.1\r\nHost: hutch\r\nContent-Length: 100\r\n\r\n{\"cmd\"")
        .unwrap();
    // A body that breaks off: a 400 naming it. Connections are accepted in
    // order, so once this is answered the stalled one has its thread.
    let mut broken = std::net::TcpStream::connect(addr).unwrap();
    broken
        .write_all(b"POST /run HTTP/1.1\r\nHost: hutch\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = broken.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("cannot read the request body"), "{answer}");

    // Shutdown waits the grace period for the stalled request, then closes
    // its connection.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || done_tx.send(server.shutdown()));
    let stopped = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("shut down within 20 s");
    stopped.expect("a clean shutdown");
    assert!(started.elapsed() >= grace, "{:?}", started.elapsed());
    read_until_closed(&mut stalled, &mut Vec::new()).expect("closed");
}

#[test]
fn a_body_that_stops_coming_is_answered_408_after_the_idle_timeout() {
    use std::io::Write;
    let idle = Duration::from_secs(1);
    let (server, mut client) = start(Config {
        idle_timeout: idle,
        ..config()
    });
    let addr = server.addr();
    let stalls: [(&str, &[u8]); 2] = [
        (
            "/run",
            b"POST /run HTTP/1.1\r\nHost: hutch\r\nContent-Length: 100\r\n\r\n{\"cmd\"",
        ),
        (
            "/file",
            b"POST /file HTTP/1.1\r\nHost: hutch\r\n\
              Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 500\r\n\r\n\
              --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc",
        ),
    ];
    for (what, head) in stalls {
        let mut stalled = std::net::TcpStream::connect(addr).unwrap();
        stalled.write_all(head).unwrap();
        let sent = Instant::now();
        // Answered, and the connection closed (its body was never read
        // whole): within 20 s, or this fails.
        let mut answer = Vec::new();
        read_until_closed(&mut stalled, &mut answer)
            .unwrap_or_else(|e| panic!("{what}: not answered and closed: {e}"));
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
        assert!(
            answer.contains("no part of the request body came for 1 s (--idle-timeout)"),
            "{what}: {answer}"
        );
        assert!(sent.elapsed() >= idle, "{what}: after {:?}", sent.elapsed());
    }
    // A body that comes slowly, but never a second without a part, is
    // read whole.
    let body = single(cmd(&["echo", "slow"])).to_string();
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(
        format!(
            "POST /run HTTP/1.1\r\nHost: hutch\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    for part in body.as_bytes().chunks(body.len().div_ceil(6)) {
        std::thread::sleep(Duration::from_millis(250));
        slow.write_all(part).unwrap();
    }
    assert!(
        started.elapsed() > idle,
        "the body took longer than the idle time"
    );
    let mut answer = Vec::new();
    read_until_closed(&mut slow, &mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"stdout\":\"slow\\n\""), "{answer}");
    assert_still_serving(&mut client);
}

#[test]
fn a_client_that_stops_reading_its_answer_loses_the_connection() {
    use std::io::Write;
    let idle = Duration::from_secs(1);
    let (server, mut client) = start(Config {
        idle_timeout: idle,
        ..config()
    });
    // Far more than the sockets between them hold.
    let size = 48usize << 20;
    let id = upload(&mut client, "big", &vec![b'x'; size]);
    let mut reader = std::net::TcpStream::connect(server.addr()).unwrap();
    reader
        .write_all(format!("GET /file/{id} HTTP/1.1\r\nHost: hutch\r\n\r\n").as_bytes())
        .unwrap();
    // Three idle times of reading nothing: the server gives up on it.
    std::thread::sleep(3 * idle);
    let mut got = Vec::new();
    // What was already on its way, then the end (or a reset): within 20 s,
    // or this fails.
    match read_until_closed(&mut reader, &mut got) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        got.len() < size,
        "the whole answer came ({} bytes): the server waited",
        got.len()
    );
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert_still_serving(&mut client);
}

/// Shapes of request that HOJ's judge server sends (its `SandboxRun`):
/// a file-I/O test whose `files` is only a `stderr` collector, which so
/// becomes descriptor 0, with an optional copy-out; and an interactive test
/// whose two proxied pipes are both named `stdout`, each recorded for the
/// command that writes it.
#[test]
fn requests_shaped_as_hoj_sends_them_run() {
    let (_server, mut client) = start(config());
    let mut file_io = cmd(&["sh", "-c", "read a b < a.in; echo $((a + b)) > a.out"]);
    file_io["files"] = json!([{"name": "stderr", "max": 16 << 20}]);
    file_io["copyIn"] = json!({"a.in": {"content": "3 4\n"}});
    file_io["copyOut"] = json!(["stderr", "a.out?"]);
    file_io["stackLimit"] = json!(128u64 << 20);
    let results = run(&mut client, &single(file_io));
    assert_eq!(results[0]["status"], "Accepted", "{results:?}");
    assert_eq!(results[0]["files"]["a.out"], "7\n", "{results:?}");
    assert_eq!(results[0]["files"]["stderr"], "", "{results:?}");

    let mut user = cmd(&["sh", "-c", "while read x; do echo $((x * 2)); done"]);
    user["files"] = json!([null, null, {"name": "stderr", "max": 1 << 20}]);
    user["copyOut"] = json!([]);
    let mut interactor = cmd(&[
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; read y; [ \"$y\" = $((i * 2)) ] || exit 1; done; echo AC > verdict",
    ]);
    interactor["files"] = json!([null, null, {"name": "stderr", "max": 1 << 20}]);
    interactor["copyOut"] = json!(["verdict"]);
    let proxy = |from: usize, to: usize| {
        json!({"in": {"index": from, "fd": 1}, "out": {"index": to, "fd": 0},
            "max": 1 << 20, "proxy": true, "name": "stdout"})
    };
    let results = run(
        &mut client,
        &json!({"cmd": [user, interactor], "pipeMapping": [proxy(0, 1), proxy(1, 0)]}),
    );
    assert_eq!(results[0]["status"], "Accepted", "{results:?}");
    assert_eq!(results[1]["status"], "Accepted", "{results:?}");
    assert_eq!(results[0]["files"]["stdout"], "2\n4\n6\n", "{results:?}");
    assert_eq!(results[1]["files"]["stdout"], "1\n2\n3\n", "{results:?}");
    assert_eq!(results[1]["files"]["verdict"], "AC\n", "{results:?}");
}

#[test]
fn version_and_config_name_the_features_a_client_checks() {
    let (_server, mut client) = start(config());
    let version = client.get("/version").unwrap().json();
    let build = version["buildVersion"].as_str().unwrap_or_default();
    assert!(
        build.starts_with('v') && build[1..].split('.').count() == 3,
        "{version}"
    );
    let config = client.get("/config").unwrap().json();
    for answer in [&version, &config] {
        for (feature, on) in [
            ("copyOutOptional", true),
            ("fixSymlinkEscape", true),
            ("pipeProxy", true),
            ("symlink", true),
            ("addressSpaceLimit", true),
            ("procPeak", true),
            ("copyOutTruncate", true),
            ("stream", true),
        ] {
            assert_eq!(answer[feature], on, "{feature} in {answer}");
        }
    }
    let cgroup_type = config["runnerConfig"]["cgroupType"].as_u64();
    assert!(matches!(cgroup_type, Some(1 | 2)), "{config}");
}

/// A command whose program had not started when the grace period ended
/// (its job had its container, still being reset) is killed too: a kill
/// init takes between runs finds nothing to kill, so shutdown cancels the
/// job, and a program that starts after the cancel is killed at once.
#[test]
fn shutdown_kills_a_command_that_had_not_started_when_the_grace_period_ended() {
    let mut config = config();
    config.parallelism = 1;
    config.shutdown_grace = Duration::from_nanos(1);
    // Room for the files below, whose removal keeps the container's reset
    // busy for a while (600 ms here) after the run that made them.
    config.builder = config.builder.tmpfs_inodes(200_000);
    let (server, mut client) = start(config);
    let mut many = cmd(&["sh", "-c", "seq 100000 | xargs touch"]);
    many["memoryLimit"] = json!(1u64 << 30);
    let results = run(&mut client, &single(many));
    assert_eq!(results[0]["status"], "Accepted", "{results:?}");

    // The next request takes the container as soon as it is back, and
    // waits for its reset before its program starts.
    let mut long = cmd(&["sleep", "60"]);
    long["clockLimit"] = json!(120_000_000_000u64);
    let body = single(long).to_string();
    let addr = server.addr();
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = answer_tx.send(Client::new(addr).post_json("/run", body.as_bytes()));
    });
    wait_until("the next request under way", || {
        gauge(&mut client, "hutch_running_requests") == 1
    });
    let stopping = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(server.shutdown()));
    let answer = answer_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("answered within 20 s, not after the program's 60")
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let result = &answer.json()[0];
    assert_ne!(result["status"], "Accepted", "{result}");
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("shut down within 20 s")
        .expect("a clean shutdown");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the grace period and the second for the answers: {:?}",
        stopping.elapsed()
    );
}

/// A `/run` request as it goes on the wire, with more headers if any.
fn raw_run(body: &Value, headers: &str) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST /run HTTP/1.1\r\nHost: hutch\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A client that leaves while its request waits for a container gives its
/// place in the queue back at once, and its request never runs.
#[test]
fn a_request_whose_client_leaves_while_queued_gives_its_place_back() {
    use std::io::Write;
    let gate = Gate::new();
    let mut config = gate.in_containers(config());
    config.parallelism = 1;
    config.max_queue = 1;
    let (server, mut client) = start(config);
    let addr = server.addr();
    let post = |body: Value| Client::new(addr).post_json("/run", body.to_string().as_bytes());
    std::thread::scope(|scope| {
        let _open = gate.opens_on_drop();
        let running = scope.spawn(|| post(single(gated())).unwrap());
        wait_until("the first request running", || {
            gauge(&mut client, "hutch_running_requests") == 1
        });
        let mut leaving = std::net::TcpStream::connect(addr).unwrap();
        leaving
            .write_all(&raw_run(&single(cmd(&["true"])), ""))
            .unwrap();
        wait_until("the second request queued", || {
            gauge(&mut client, "hutch_queue_depth") == 1
        });
        drop(leaving);
        // While the first still runs: the gate is shut.
        wait_until("the place given back", || {
            gauge(&mut client, "hutch_queue_depth") == 0
        });
        let queued = scope.spawn(|| post(single(cmd(&["true"]))).unwrap().status);
        wait_until("another request queued in its place", || {
            gauge(&mut client, "hutch_queue_depth") == 1
        });
        gate.open();
        let running = running.join().unwrap();
        assert_eq!(running.status, 200);
        assert_eq!(
            running.json()[0]["status"],
            "Accepted",
            "{}",
            running.text()
        );
        assert_eq!(queued.join().unwrap(), 200);
    });
    // The request given up never ran, nor was answered.
    let metrics = client.get("/metrics").unwrap().text();
    for counted in [
        "hutch_run_requests_total{code=\"200\"} 2\n",
        "hutch_runs_total{status=\"Accepted\"} 2\n",
    ] {
        assert!(metrics.contains(counted), "{counted} in {metrics}");
    }
    assert_eq!(metrics.matches("hutch_runs_total{").count(), 1, "{metrics}");
}

/// A `/run` whose client leaves is cancelled, as go-judge cancels it: its
/// program is killed, and the container serves the next request.
#[test]
fn a_run_whose_client_leaves_is_cancelled() {
    use std::io::Write;
    let mut config = config();
    config.parallelism = 1;
    let (server, mut client) = start(config);
    let mut long = cmd(&["sleep", "60"]);
    long["clockLimit"] = json!(120_000_000_000u64);
    let mut leaving = std::net::TcpStream::connect(server.addr()).unwrap();
    leaving.write_all(&raw_run(&single(long), "")).unwrap();
    wait_until("the request under way", || {
        gauge(&mut client, "hutch_running_requests") == 1
    });
    drop(leaving);
    // Within 20 s, not the program's 60.
    wait_until("the run cancelled", || {
        gauge(&mut client, "hutch_running_requests") == 0
    });
    // Counted as no answer, not as a 200 no one got.
    wait_until("the request counted", || {
        client
            .get("/metrics")
            .unwrap()
            .text()
            .contains("hutch_run_requests_total{code=\"499\"} 1\n")
    });
    let metrics = client.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("hutch_runs_total{status=\"Signalled\"} 1\n"),
        "killed: {metrics}"
    );
    assert!(
        !metrics.contains("hutch_run_requests_total{code=\"200\"}"),
        "{metrics}"
    );
    assert_still_serving(&mut client);
}

/// A request sent ahead on the connection of one that runs (HTTP/1.1
/// pipelining) is no client leaving: both run, answered in order.
#[test]
fn a_request_sent_ahead_while_one_runs_leaves_it_running() {
    use std::io::Write;
    let (server, mut client) = start(config());
    let mut socket = std::net::TcpStream::connect(server.addr()).unwrap();
    let first = single(cmd(&["sh", "-c", "sleep 1; echo first"]));
    socket.write_all(&raw_run(&first, "")).unwrap();
    wait_until("the first request under way", || {
        gauge(&mut client, "hutch_running_requests") == 1
    });
    let second = single(cmd(&["echo", "second"]));
    socket
        .write_all(&raw_run(&second, "Connection: close\r\n"))
        .unwrap();
    let mut answers = Vec::new();
    read_until_closed(&mut socket, &mut answers).expect("both answers");
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
    assert_eq!(
        answers.matches("\"status\":\"Accepted\"").count(),
        2,
        "{answers}"
    );
    let (first, second) = (
        answers.find("first\\n").expect("the first's output"),
        answers.find("second\\n").expect("the second's output"),
    );
    assert!(first < second, "in order: {answers}");
}
