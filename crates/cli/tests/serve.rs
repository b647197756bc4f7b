//! `hutch serve` as a process: it starts, answers, stops cleanly on
//! SIGTERM (a running command is killed at the end of the grace period,
//! every container and cgroup goes), removes at start the cgroups and the
//! temporary file store a killed earlier server left, serves gRPC where asked, and refuses bad flags with
//! status 2.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hutch_server::client::Client;

#[path = "../../../tests/support/scratch.rs"]
mod scratch;
#[path = "../../../tests/support/ulimit.rs"]
mod ulimit;
use ulimit::hutch_under_ulimit;

const HUTCH: &str = env!("CARGO_BIN_EXE_hutch");

/// A `hutch serve` child on a free loopback port, and the lines of its
/// standard error as they come.
struct Served {
    child: Child,
    addr: SocketAddr,
    /// What it logged until it was ready.
    startup: Vec<String>,
    log: mpsc::Receiver<String>,
}

fn serve(extra: &[&str]) -> Served {
    serve_from(Command::new(HUTCH), extra)
}

/// `hutch serve` started by `command`, which runs hutch with the arguments
/// it is given.
fn serve_from(mut command: Command, extra: &[&str]) -> Served {
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "1s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !rustix::process::geteuid().is_root() {
        command.arg("--allow-rusage");
    }
    let mut child = command.spawn().expect("hutch starts");
    let (tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut startup = Vec::new();
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("hutch serve is not ready; it said:\n{}", startup.join("\n"))
            });
        startup.push(line.clone());
        if let Some(addr) = ready_at(&line) {
            break addr;
        }
    };
    Served {
        child,
        addr,
        startup,
        log,
    }
}

/// The address in the log line that says the server is ready, if `line`
/// is that one.
fn ready_at(line: &str) -> Option<SocketAddr> {
    let at = line.find("addr=").filter(|_| line.contains("ready"))?;
    Some(line[at + 5..].split_whitespace().next()?.parse().unwrap())
}

impl Served {
    fn terminate(&mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
    }

    /// Waits for the process to exit; its exit code.
    fn wait(&mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }

    /// Every line logged until now, and until the process closed its
    /// standard error if it has exited.
    fn drain_log(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Every line not taken yet, once the process has exited: up to the end
    /// of its standard error, since its last lines may still be on their
    /// way to this test (at most 10 s, should something else hold it open).
    fn log_after_exit(&self) -> String {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(10)) {
            lines.push(line);
        }
        lines.join("\n")
    }
}

impl Drop for Served {
    /// Stops a server the test left running as an operator would, so that
    /// it removes what it made (its temporary file store among them); kills
    /// it if it has not stopped within 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cgroup directories, in every hierarchy hutch uses, that the process
/// `pid` made.
fn groups_of(pid: u32) -> Vec<PathBuf> {
    let parents = match hutch_host::CgroupLayout::detect().expect("a cgroup layout") {
        hutch_host::CgroupLayout::V1 {
            memory,
            cpuacct,
            pids,
        } => vec![memory, cpuacct, pids],
        hutch_host::CgroupLayout::V2 { parent } => vec![parent],
    };
    let prefix = format!("hutch-{pid}-");
    parents
        .iter()
        .flat_map(|parent| std::fs::read_dir(parent).unwrap())
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect()
}

/// One server test at a time: every server removes, at start, the cgroups
/// any dead hutch process left, the killed server of another test's
/// included.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn require_root(what: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{what} needs root: the server's containers need cgroups made under this process's own"
    );
}

fn echo_request() -> Vec<u8> {
    serde_json::json!({"cmd": [{"args": ["echo", "hi"], "files": [{"content": ""},
        {"name": "stdout", "max": 100}], "cpuLimit": 1_000_000_000u64}]})
    .to_string()
    .into_bytes()
}

#[test]
fn sigterm_kills_what_still_runs_after_the_grace_period_and_leaves_nothing() {
    require_root("this test");
    let _serial = serial();
    let mut served = serve(&["--parallelism", "2"]);
    let pid = served.child.id();
    let mut client = Client::new(served.addr);
    let answer = client.post_json("/run", &echo_request()).unwrap();
    assert_eq!(
        answer.json()[0]["files"]["stdout"],
        "hi\n",
        "{}",
        answer.text()
    );
    assert!(
        !groups_of(pid).is_empty(),
        "the server's containers have cgroups"
    );
    assert!(
        client
            .get("/metrics")
            .unwrap()
            .text()
            .contains("hutch_running_requests 0"),
        "the first request is over"
    );

    // A command that would run for 30 s.
    let addr = served.addr;
    let long = std::thread::spawn(move || {
        let body = serde_json::json!({"cmd": [{"args": ["sleep", "30"],
            "cpuLimit": 40_000_000_000u64, "clockLimit": 40_000_000_000u64}]})
        .to_string();
        Client::new(addr)
            .post_json("/run", body.as_bytes())
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client
        .get("/metrics")
        .unwrap()
        .text()
        .contains("hutch_running_requests 1")
    {
        assert!(Instant::now() < deadline, "the long command never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopping = Instant::now();
    served.terminate();
    let answer = long.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()[0]["status"], "Signalled", "{}", answer.text());
    assert_eq!(served.wait(), Some(0), "{}", served.drain_log());
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "stopped after the 1 s grace period, not the command's 30 s: {took:?}"
    );
    let log = served.log_after_exit();
    assert!(log.contains("running commands were killed"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        groups_of(pid).is_empty(),
        "cgroups left: {:?}",
        groups_of(pid)
    );
    assert!(
        Client::new(addr).get("/version").is_err(),
        "nothing listens any more"
    );
}

#[test]
fn cgroups_and_the_store_a_killed_server_left_are_removed_by_the_next() {
    require_root("this test");
    let _serial = serial();
    // A server that stays up meanwhile: the next one leaves its store be.
    let mut live = serve(&["--parallelism", "1"]);
    let live_store = store_of(&live);
    let mut killed = serve(&["--parallelism", "2"]);
    let pid = killed.child.id();
    let killed_store = store_of(&killed);
    let mut client = Client::new(killed.addr);
    assert_eq!(
        client.post_json("/run", &echo_request()).unwrap().status,
        200
    );
    let upload = client
        .post_file("/file", "file", "a.out", b"compiled")
        .unwrap();
    assert_eq!(upload.status, 200, "{}", upload.text());
    killed.child.kill().unwrap();
    assert_eq!(killed.wait(), None, "killed by a signal");
    let left = groups_of(pid);
    assert!(!left.is_empty(), "a killed server leaves its cgroups");
    assert!(
        killed_store.is_dir(),
        "a killed server leaves its store: {}",
        killed_store.display()
    );

    let mut next = serve(&["--parallelism", "1"]);
    assert!(
        groups_of(pid).is_empty(),
        "still there: {:?}",
        groups_of(pid)
    );
    assert!(
        !killed_store.exists(),
        "still there: {}",
        killed_store.display()
    );
    let log = next.startup.join("\n");
    assert!(log.contains("removed cgroups"), "{log}");
    assert!(log.contains("removed temporary file stores"), "{log}");
    assert!(
        !groups_of(next.child.id()).is_empty(),
        "the new server's own stay"
    );
    assert!(live_store.is_dir(), "a live server's store stays");
    assert!(store_of(&next).is_dir());
    for server in [&mut next, &mut live] {
        server.terminate();
        assert_eq!(server.wait(), Some(0));
    }
    assert!(
        !live_store.exists(),
        "a server that stops removes its store"
    );
}

/// The file store a server said it uses as it started.
fn store_of(served: &Served) -> PathBuf {
    let line = served
        .startup
        .iter()
        .find(|line| line.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line in {:?}", served.startup));
    let at = line.find("store=").expect("the store is logged") + "store=".len();
    PathBuf::from(line[at..].split_whitespace().next().unwrap())
}

#[test]
fn bad_flags_and_an_unusable_setup_exit_with_status_2() {
    let _serial = serial();
    let run = |args: &[&str]| {
        let output = Command::new(HUTCH)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--parallelism", "0"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--parallelism"), "{stderr}");
    let (code, stderr) = run(&["--listen", "nowhere"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--listen"), "{stderr}");
    let (code, stderr) = run(&["--grpc-listen", "nowhere"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--grpc-listen"), "{stderr}");
    let (code, stderr) = run(&["--listen", "127.0.0.1:0", "--src-prefix", "/no/such/prefix"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot open the source prefix /no/such/prefix"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--listen", "127.0.0.1:0", "--bind", "/no/such/tool"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot use the --bind source /no/such/tool"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--bind", "/tmp:/cache:rw"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--bind") && stderr.contains("read-only only"),
        "{stderr}"
    );
    // Onto the containers' own mounts, or inside a tmpfs every reset
    // empties.
    let tool = scratch::TempDir::new("serve-onto", 0o755);
    let onto = |target: &str| format!("{}:{target}", tool.display());
    for (bind, said) in [
        (onto("/w"), "hide the container's work directory at /w"),
        (onto("/w/x"), "inside the container's work directory at /w"),
        (onto("/proc"), "hide the container's proc at /proc"),
        (
            onto("/dev/x"),
            "inside the container's device directory at /dev",
        ),
        ("/etc:/".into(), "hide the container's root at /"),
        (
            onto("/tmp/tool"),
            "lies inside /tmp, which is emptied after every run",
        ),
    ] {
        let (code, stderr) = run(&["--listen", "127.0.0.1:0", "--bind", &bind]);
        assert_eq!(code, Some(2), "{bind}: {stderr}");
        assert!(
            stderr.starts_with(&format!("hutch: error: cannot use --bind {bind}: "))
                && stderr.contains(said),
            "{bind}: {stderr}"
        );
    }
    // An empty token (an unset variable in --auth-token "$TOKEN") would
    // turn authentication off.
    let (code, stderr) = run(&["--listen", "127.0.0.1:0", "--auth-token", ""]);
    assert_eq!(code, Some(2));
    assert!(
        stderr
            .contains("an empty --auth-token (or HUTCH_AUTH_TOKEN) would turn authentication off"),
        "{stderr}"
    );
    let output = Command::new(HUTCH)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HUTCH_AUTH_TOKEN", "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    // A default no request may ask for.
    let (code, stderr) = run(&["--listen", "127.0.0.1:0", "--default-memory-limit", "2000T"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--default-memory-limit") && stderr.contains("at most 1024T"),
        "{stderr}"
    );
    // Both APIs on one port: the flags are named before anything listens.
    for (http, grpc) in [
        ("127.0.0.1:5059", "127.0.0.1:5059"),
        ("0.0.0.0:5059", "127.0.0.1:5059"),
    ] {
        let (code, stderr) = run(&["--listen", http, "--grpc-listen", grpc]);
        assert_eq!(code, Some(2));
        assert!(
            stderr.contains(&format!(
                "--listen {http} and --grpc-listen {grpc} take the same port"
            )),
            "{stderr}"
        );
    }
    // Every command would fail to set its limit on open files.
    let (output, stderr) =
        hutch_under_ulimit(HUTCH, "-n 60", &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--open-files 256 is above the hard limit on open files hutch was started with (60)"
        ),
        "{stderr}"
    );
    // The port of a server that runs.
    let served = serve(&[]);
    let (code, stderr) = run(&["--listen", &served.addr.to_string()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    let (code, stderr) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--grpc-listen",
        &served.addr.to_string(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("cannot listen on {}", served.addr)),
        "{stderr}"
    );
}

#[test]
fn binds_reach_every_run_read_only() {
    let _serial = serial();
    let tool = scratch::TempDir::new("serve-bind", 0o755);
    std::fs::write(tool.join("version.txt"), "tool 1.0\n").unwrap();
    let bind = format!("{}:/opt/tool", tool.display());
    let mut served = serve(&["--parallelism", "2", "--bind", &bind]);
    let mut client = Client::new(served.addr);
    let run = |client: &mut Client, script: &str| {
        let body = serde_json::json!({"cmd": [{"args": ["sh", "-c", script],
            "files": [{"content": ""}, {"name": "stdout", "max": 100},
                {"name": "stderr", "max": 1000}],
            "cpuLimit": 1_000_000_000u64}]});
        let answer = client
            .post_json("/run", body.to_string().as_bytes())
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()[0].clone()
    };
    // Both containers see it.
    for _ in 0..4 {
        let result = run(&mut client, "cat /opt/tool/version.txt");
        assert_eq!(result["status"], "Accepted", "{result}");
        assert_eq!(result["files"]["stdout"], "tool 1.0\n");
    }
    let result = run(&mut client, "echo x > /opt/tool/new");
    assert_eq!(result["status"], "Nonzero Exit Status", "{result}");
    assert!(
        result["files"]["stderr"]
            .as_str()
            .unwrap()
            .contains("Read-only file system"),
        "{result}"
    );
    assert!(!tool.join("new").exists());
    served.terminate();
    assert_eq!(served.wait(), Some(0));
}

#[test]
fn with_grpc_listen_it_says_where_grpc_is_served_and_stops_cleanly() {
    let _serial = serial();
    let mut served = serve(&["--grpc-listen", "127.0.0.1:0"]);
    let ready = served.startup.last().unwrap().clone();
    let grpc: SocketAddr = ready
        .split_whitespace()
        .find_map(|field| field.strip_prefix("grpc="))
        .unwrap_or_else(|| panic!("no grpc= in {ready:?}"))
        .parse()
        .unwrap();
    assert_ne!(grpc.port(), served.addr.port());
    std::net::TcpStream::connect(grpc).expect("something listens there");
    served.terminate();
    assert_eq!(served.wait(), Some(0), "{}", served.drain_log());
    assert!(
        std::net::TcpStream::connect(grpc).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn a_low_open_files_limit_is_raised_to_the_hard_limit() {
    let _serial = serial();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    assert!(
        hard.is_none_or(|hard| hard > 64),
        "this test needs a hard limit on open files above 64, not {hard:?}"
    );
    // A service manager's low soft limit, set by the shell that starts hutch.
    let mut shell = Command::new("sh");
    shell.args(["-c", "ulimit -Sn 64 && exec \"$0\" \"$@\"", HUTCH]);
    let mut served = serve_from(shell, &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", served.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft and hard: {line}");
    assert_ne!(fields[3], "64", "{line}");
    let log = served.startup.join("\n");
    assert!(log.contains("raised the open files limit from=64"), "{log}");
    assert_eq!(
        Client::new(served.addr)
            .post_json("/run", &echo_request())
            .unwrap()
            .status,
        200
    );
    served.terminate();
    assert_eq!(served.wait(), Some(0), "{}", served.drain_log());
}

/// Its log's reader gone (a log collector restarted, `hutch serve 2>&1 |
/// head`), the server goes on answering, and still stops cleanly: a log
/// line it cannot write is lost, not a panic of the thread that logged it.
#[test]
fn a_log_nobody_reads_any_more_does_not_stop_the_server() {
    let _serial = serial();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut command = Command::new(HUTCH);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    if !rustix::process::geteuid().is_root() {
        command.arg("--allow-rusage");
    }
    let child = command.spawn().expect("hutch starts");
    // The parent's copy of the writing end goes with the command.
    drop(command);
    let mut lines = BufReader::new(reader).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("hutch serve logs until it is ready")
            .unwrap();
        if let Some(addr) = ready_at(&line) {
            break addr;
        }
    };
    drop(lines);
    // Stopped when dropped, should an assertion below fail.
    let mut served = Served {
        child,
        addr,
        startup: Vec::new(),
        log: mpsc::channel().1,
    };
    let mut client = Client::new(addr);
    for _ in 0..3 {
        // Each run logs a line, which now meets a closed pipe.
        let answer = client.post_json("/run", &echo_request()).unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(
            answer.json()[0]["files"]["stdout"],
            "hi\n",
            "{}",
            answer.text()
        );
    }
    served.terminate();
    assert_eq!(served.wait(), Some(0));
}

/// Whether process `pid` catches (`SigCgt`) and ignores (`SigIgn`) signal
/// `signal`, from `/proc/<pid>/status`.
fn disposition(pid: u32, signal: rustix::process::Signal) -> (bool, bool) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |field: &str| {
        let hex = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in:\n{status}"))
            .trim();
        u64::from_str_radix(hex, 16).unwrap() & (1 << (signal.as_raw() - 1)) != 0
    };
    (mask("SigCgt:"), mask("SigIgn:"))
}

/// `SIGHUP` (its terminal closed) stops the server cleanly, as `SIGTERM`
/// does; started under `nohup` (`SIGHUP` ignored), it keeps ignoring it.
#[test]
fn sighup_stops_the_server_cleanly_unless_it_was_ignored() {
    let _serial = serial();
    // With SIGHUP at its default whatever this test inherited (it may run
    // under nohup itself); env execs hutch, which keeps env's pid.
    let mut env = Command::new("env");
    env.args(["--default-signal=HUP", HUTCH]);
    let mut served = serve_from(env, &[]);
    let pid = served.child.id();
    assert_eq!(
        disposition(pid, rustix::process::Signal::HUP),
        (true, false)
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&served.child),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    assert_eq!(served.wait(), Some(0), "{}", served.drain_log());
    let log = served.log_after_exit();
    assert!(log.contains("SIGHUP: shutting down"), "{log}");
    assert!(groups_of(pid).is_empty(), "{:?}", groups_of(pid));

    let mut shell = Command::new("sh");
    shell.args(["-c", "trap '' HUP && exec \"$0\" \"$@\"", HUTCH]);
    let mut served = serve_from(shell, &[]);
    assert_eq!(
        disposition(served.child.id(), rustix::process::Signal::HUP),
        (false, true)
    );
    served.terminate();
    assert_eq!(served.wait(), Some(0), "{}", served.drain_log());
}
