//! Hostile frames from the host's side: raw bytes and descriptors written
//! straight to the socket of a real container's init, past the host's own
//! encoding and checks.
//!
//! What init must do (`crates/init/src/main.rs`, `docs/architecture.md`):
//! a frame that decodes but fails validation, or comes when init cannot
//! act on it, gets a structured error reply and init carries on; a frame
//! that cannot be received or decoded gets an error reply (stage
//! `Protocol`) and init exits with code 1; an empty datagram reads as the
//! host closing, and init exits with code 0 without a word. Every test ends
//! by destroying the container and checking that init was reaped and that
//! no process is left in its PID namespace.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use hutch_host::protocol::{
    CgroupFile, CgroupFiles, CgroupVersion, DecodeError, Delete, ErrorReply, ExecRequest,
    ExecResult, Hello, MAX_FDS_PER_FRAME, MAX_FRAME_LEN, PROTOCOL_VERSION, Reply, Request, Stage,
    Status, Termination, encode_request,
};
use hutch_host::{ChannelError, Container, ContainerBuilder, ContainerError, ExecSpec};

mod common;
use common::{
    FileId, GUARD_MS, SCM_MAX_FD, borrow, children, copies, is_reaped, pidfd, read_item,
    readable_within, recv_frame, send_frame, with_header,
};

/// The pids of every process in the PID namespace `ns`.
fn processes_in(ns: FileId) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        // A process that ended meanwhile fails to stat.
        .filter(|pid| FileId::at(format!("/proc/{pid}/ns/pid")) == Some(ns))
        .collect()
}

/// A real container, with this test's own handles on its init.
struct Subject {
    c: Container,
    /// Init's pid in this PID namespace.
    pid: i32,
    /// A pidfd of init, to see it exit without reaping it.
    init: OwnedFd,
    /// Init's PID namespace, held open so no later namespace can take its
    /// inode number while the test looks for processes in it.
    pid_ns: File,
}

/// One reply as it came: the decoded frame and its descriptors.
struct Received {
    reply: Reply,
    fds: Vec<OwnedFd>,
}

impl Subject {
    fn new() -> Self {
        let c = ContainerBuilder::new().build().expect("container starts");
        let pid = c.init_pid();
        // Init is this process's child and nobody reaps it but the
        // container, so the pid names it.
        let init = pidfd(pid);
        let pid_ns = File::open(format!("/proc/{pid}/ns/pid")).expect("init's PID namespace");
        Self {
            c,
            pid,
            init,
            pid_ns,
        }
    }

    /// Sends `frame` as one datagram with `fds` attached.
    fn send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) {
        send_frame(self.c.socket(), frame, fds);
    }

    fn send_request(&self, request: &Request, fds: &[BorrowedFd<'_>]) {
        self.send(&encode(request), fds);
    }

    /// Sends `request` with the three descriptors of /dev/null it names.
    fn send_exec(&self, request: ExecRequest) {
        self.send_request(&Request::Exec(request), &borrow(&nulls(3)));
    }

    /// The next datagram from init: `None` at end of file.
    fn recv(&self) -> Option<Received> {
        let (frame, fds) = recv_frame(self.c.socket(), "init did not answer");
        if frame.is_empty() {
            assert!(fds.is_empty());
            return None;
        }
        let reply = hutch_host::protocol::decode_reply(&frame).expect("init's reply");
        reply.check(fds.len()).expect("init's reply is a valid one");
        Some(Received { reply, fds })
    }

    fn recv_reply(&self) -> Reply {
        self.recv().expect("a reply, not end of file").reply
    }

    /// The next reply is an error of `stage`; returns it.
    fn expect_error(&self, stage: Stage) -> ErrorReply {
        match self.recv_reply() {
            Reply::Error(error) => {
                assert_eq!(error.stage, stage, "{error:?}");
                assert_eq!(error.errno, 0, "{error:?}");
                assert_eq!(error.path, None, "{error:?}");
                error
            }
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    /// Init answered a broken frame with a protocol error saying `what`,
    /// then exited with code 1 without another word.
    fn assert_gave_up_with(&mut self, what: &str) {
        let error = self.expect_error(Stage::Protocol);
        assert!(error.message.contains(what), "{error:?}");
        self.assert_exits_with(1);
    }

    /// Init exits with `code`, sends nothing more, and the host reports
    /// how it ended.
    fn assert_exits_with(&mut self, code: i32) {
        assert!(
            readable_within(self.init.as_fd(), GUARD_MS),
            "init did not exit"
        );
        assert!(self.recv().is_none(), "init said more before it exited");
        let err = self.c.ping().expect_err("init is gone");
        match err {
            ContainerError::InitGone {
                status,
                cause: ChannelError::Closed,
            } => assert_eq!(status, format!("exit code {code}")),
            other => panic!("expected InitGone, got {other:?}"),
        }
        assert!(self.c.is_broken());
    }

    /// Init still serves requests: a ping, and a program that runs.
    fn assert_carries_on(&mut self) {
        self.c.ping().expect("init answers a ping");
        let null = File::open("/dev/null").unwrap();
        let spec = ExecSpec::new(["true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
        let result = self.c.exec(&spec).expect("exec");
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(children(self.pid).is_empty(), "the run left a process");
    }

    /// Destroys the container: init is reaped, and no process is left in
    /// its PID namespace.
    fn finish(self) {
        let ns = FileId::of(self.pid_ns.as_fd());
        if !self.c.is_broken() {
            assert_eq!(
                processes_in(ns),
                vec![self.pid],
                "init alone lives in its namespace"
            );
        }
        self.c.destroy();
        assert!(readable_within(self.init.as_fd(), 0), "init has exited");
        assert!(is_reaped(self.init.as_fd()), "init was reaped");
        assert_eq!(processes_in(ns), Vec::<i32>::new(), "processes left");
    }
}

fn encode(request: &Request) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = encode_request(request, &mut buf).expect("encode");
    buf.truncate(len);
    buf
}

/// `count` descriptors of /dev/null.
fn nulls(count: usize) -> Vec<OwnedFd> {
    copies(&OwnedFd::from(File::open("/dev/null").unwrap()), count)
}

/// An exec request for `argv` with stdin, stdout and stderr mapped from
/// three attached descriptors.
fn exec_request(argv: &[&str]) -> ExecRequest {
    let null = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(argv.iter().copied()).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    spec.request().clone()
}

/// The error text init must send for `request` with `fds` attached: the
/// protocol's own validation error.
fn validation_text(request: &Request, fds: usize) -> String {
    request
        .check(fds)
        .expect_err("the request is invalid")
        .to_string()
}

/// Sends `request` with `fds` descriptors; init must refuse it with the
/// validation error and carry on.
fn refused_by_validation(request: Request, fds: usize) {
    let mut s = Subject::new();
    let attached = nulls(fds);
    s.send_request(&request, &borrow(&attached));
    let error = s.expect_error(Stage::Validate);
    assert_eq!(error.message, validation_text(&request, fds));
    s.assert_carries_on();
    s.finish();
}

// ---------------------------------------------------------------------------
// Frames that cannot be decoded: an error reply, then init exits with 1

/// Sends `frame` with `fds` descriptors of /dev/null to a fresh init,
/// which must answer with a protocol error saying `what` and exit with
/// code 1.
fn gives_up_on(frame: &[u8], fds: usize, what: &str) {
    let mut s = Subject::new();
    s.send(frame, &borrow(&nulls(fds)));
    s.assert_gave_up_with(what);
    s.finish();
}

#[test]
fn raw_wrong_protocol_version() {
    // A frame of version 1, which predates the process peak.
    let what = DecodeError::VersionMismatch {
        found: 1,
        expected: 2,
    };
    gives_up_on(b"HT\x01\x00\x01", 0, &what.to_string());
}

#[test]
fn raw_bad_magic() {
    gives_up_on(b"XT\x02\x00\x01", 0, "bad frame magic");
}

#[test]
fn raw_frame_shorter_than_the_header() {
    let what = DecodeError::ShortHeader { len: 3 };
    gives_up_on(b"HT\x01", 0, &what.to_string());
}

#[test]
fn raw_truncated_exec() {
    let whole = encode(&Request::Exec(exec_request(&["true"])));
    gives_up_on(&whole[..whole.len() / 2], 3, "malformed request body");
}

#[test]
fn raw_trailing_bytes_after_a_valid_request() {
    let mut frame = encode(&Request::Ping);
    frame.push(0);
    let what = DecodeError::TrailingBytes {
        message: "request",
        end: 5,
        trailing: 1,
    };
    gives_up_on(&frame, 0, &what.to_string());
}

#[test]
fn raw_unknown_request_tag() {
    // Tag 13 is `Regroup`, the last request; 14 is none.
    gives_up_on(&with_header(&[14]), 0, "malformed request body");
}

#[test]
fn raw_huge_string_length_inside_a_request() {
    // A delete whose path claims 2^32 - 1 bytes.
    let frame = with_header(&[4, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    gives_up_on(&frame, 0, "malformed request body");
}

#[test]
fn raw_huge_item_count_inside_a_request() {
    // An open claiming 2^32 - 1 items.
    let frame = with_header(&[3, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    gives_up_on(&frame, 0, "malformed request body");
}

#[test]
fn raw_frame_longer_than_max_frame_len() {
    let mut s = Subject::new();
    // The default send buffer cannot hold a datagram this long.
    rustix::net::sockopt::set_socket_send_buffer_size(s.c.socket(), 2 * MAX_FRAME_LEN)
        .expect("SO_SNDBUF");
    let mut frame = encode(&Request::Ping);
    frame.resize(MAX_FRAME_LEN + 1, 0);
    s.send(&frame, &[]);
    s.assert_gave_up_with(&ChannelError::Truncated.to_string());
    s.finish();
}

#[test]
fn raw_more_fds_than_max_fds_per_frame() {
    let what = ChannelError::TooManyFds.to_string();
    gives_up_on(&encode(&Request::Ping), MAX_FDS_PER_FRAME + 1, &what);
}

#[test]
fn raw_scm_max_fd_descriptors() {
    let what = ChannelError::TooManyFds.to_string();
    gives_up_on(&encode(&Request::Ping), SCM_MAX_FD, &what);
}

#[test]
fn raw_empty_datagram_reads_as_the_host_closing() {
    let mut s = Subject::new();
    s.send(&[], &[]);
    // No reply: init takes it for the end of the conversation.
    s.assert_exits_with(0);
    s.finish();
}

#[test]
fn raw_broken_frame_during_a_run_ends_the_run_and_init() {
    let mut s = Subject::new();
    s.send_exec(exec_request(&["sleep", "1000"]));
    // A request while the program runs is answered, so the program runs.
    s.send_request(&Request::Ping, &[]);
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "ping request while a program runs");
    s.send(b"HT\x02\x00\xff\xff\xff\xff\x1f", &[]);
    // During a run init gives no error reply: it kills the run and exits.
    s.assert_exits_with(1);
    s.finish();
}

// ---------------------------------------------------------------------------
// Frames that decode but fail validation: an error reply, and init carries on

#[test]
fn raw_open_with_a_descriptor_it_does_not_need() {
    refused_by_validation(Request::Open(vec![read_item("/etc/ld.so.cache")]), 1);
}

#[test]
fn raw_ping_with_max_fds_per_frame_descriptors() {
    refused_by_validation(Request::Ping, MAX_FDS_PER_FRAME);
}

#[test]
fn raw_exec_naming_descriptors_that_were_not_sent() {
    refused_by_validation(Request::Exec(exec_request(&["true"])), 0);
}

#[test]
fn raw_exec_with_fewer_descriptors_than_it_names() {
    refused_by_validation(Request::Exec(exec_request(&["true"])), 2);
}

#[test]
fn raw_exec_with_more_descriptors_than_it_names() {
    refused_by_validation(Request::Exec(exec_request(&["true"])), 4);
}

#[test]
fn raw_exec_fd_beyond_the_attached_descriptors() {
    let mut request = exec_request(&["true"]);
    request.exec_fd = Some(3);
    refused_by_validation(Request::Exec(request), 3);
}

#[test]
fn raw_cgroup_with_fewer_descriptors_than_files() {
    let files = CgroupFiles {
        version: CgroupVersion::V1,
        files: vec![CgroupFile::Procs, CgroupFile::MemoryPeak],
    };
    refused_by_validation(Request::Cgroup(files), 1);
}

#[test]
fn raw_delete_of_the_root() {
    refused_by_validation(Request::Delete(Delete { path: "/".into() }), 0);
}

// ---------------------------------------------------------------------------
// Requests init cannot act on in its state

/// A handshake of this protocol version.
fn hello() -> Request {
    Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        features: 0,
    })
}

/// Sends `request` to a fresh init, which must refuse it with a state
/// error saying `message` and carry on.
fn refused_in_this_state(request: Request, message: &str) {
    let mut s = Subject::new();
    s.send_request(&request, &[]);
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, message);
    s.assert_carries_on();
    s.finish();
}

#[test]
fn raw_proceed_when_no_run_waits() {
    refused_in_this_state(Request::Proceed, "unexpected proceed request in this state");
}

#[test]
fn raw_regroup_without_a_cgroup() {
    let mut s = Subject::new();
    let fds = nulls(2);
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let files = CgroupFiles {
        version: CgroupVersion::V2,
        files: vec![CgroupFile::Procs, CgroupFile::PidsPeak],
    };
    s.send_request(&Request::Regroup(files), &borrowed);
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "unexpected regroup request in this state");
    s.assert_carries_on();
    s.finish();
}

#[test]
fn raw_second_handshake() {
    refused_in_this_state(hello(), "unexpected hello request in this state");
}

#[test]
fn raw_kill_when_nothing_runs_gets_no_reply() {
    let mut s = Subject::new();
    s.send_request(&Request::Kill, &[]);
    s.send_request(&Request::Ping, &[]);
    // The pong is the first thing init sends.
    assert_eq!(s.recv_reply(), Reply::Pong);
    s.assert_carries_on();
    s.finish();
}

// ---------------------------------------------------------------------------
// Order

#[test]
fn raw_requests_back_to_back_are_answered_in_order() {
    let mut s = Subject::new();
    s.send_request(&Request::Ping, &[]);
    s.send_request(&Request::Open(vec![read_item("/etc/ld.so.cache")]), &[]);
    s.send_request(&hello(), &[]);
    let mut no_argv = exec_request(&["true"]);
    no_argv.argv.clear();
    s.send_exec(no_argv);
    s.send_request(&Request::Ping, &[]);
    assert_eq!(s.recv_reply(), Reply::Pong);
    let opened = s.recv().expect("an opened reply");
    assert!(
        matches!(opened.reply, Reply::Opened(_)),
        "{:?}",
        opened.reply
    );
    assert_eq!(opened.fds.len(), 1);
    s.expect_error(Stage::State);
    s.expect_error(Stage::Validate);
    assert_eq!(s.recv_reply(), Reply::Pong);
    s.assert_carries_on();
    s.finish();
}

/// Reads a `Finished` reply.
fn finished(s: &Subject) -> ExecResult {
    match s.recv_reply() {
        Reply::Finished(result) => result,
        other => panic!("expected finished, got {other:?}"),
    }
}

#[test]
fn raw_requests_while_a_program_runs_are_refused_and_the_run_goes_on() {
    let mut s = Subject::new();
    s.send_exec(exec_request(&["sleep", "1000"]));
    s.send_request(&Request::Reset, &[]);
    s.send_exec(exec_request(&["true"]));
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "reset request while a program runs");
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "exec request while a program runs");
    assert_eq!(children(s.pid).len(), 1, "the program still runs");
    s.send_request(&Request::Kill, &[]);
    let result = finished(&s);
    assert_eq!(result.status, Status::Signalled);
    assert_eq!(result.termination, Termination::Signalled(libc::SIGKILL));
    assert!(children(s.pid).is_empty());
    s.assert_carries_on();
    s.finish();
}

/// Starts `argv` as a synchronised exec and returns the pid `Started`
/// names.
fn start_synchronised(s: &Subject, argv: &[&str]) -> u32 {
    let mut request = exec_request(argv);
    request.sync = true;
    s.send_exec(request);
    match s.recv_reply() {
        Reply::Started { pid } => pid,
        other => panic!("expected started, got {other:?}"),
    }
}

#[test]
fn raw_proceed_lets_a_synchronised_exec_run() {
    let mut s = Subject::new();
    start_synchronised(&s, &["true"]);
    s.send_request(&Request::Proceed, &[]);
    let result = finished(&s);
    assert_eq!(result.status, Status::Ok, "{result:?}");
    s.assert_carries_on();
    s.finish();
}

#[test]
fn raw_reset_instead_of_proceed_cancels_the_run() {
    let mut s = Subject::new();
    start_synchronised(&s, &["sleep", "1000"]);
    assert_eq!(children(s.pid).len(), 1, "the program waits to start");
    s.send_request(&Request::Reset, &[]);
    let result = finished(&s);
    assert_eq!(result.status, Status::RunnerError);
    assert_eq!(result.termination, Termination::NotStarted);
    let error = result.error.expect("why it did not start");
    assert_eq!(error.stage, Stage::Spawn);
    assert_eq!(
        error.message,
        "the host cancelled the run before it started"
    );
    assert!(children(s.pid).is_empty(), "the held program is gone");
    // The reset took the place of the proceed and got no reply of its own:
    // the next reply answers the next request.
    s.send_request(&Request::Ping, &[]);
    assert_eq!(s.recv_reply(), Reply::Pong);
    s.assert_carries_on();
    s.finish();
}
