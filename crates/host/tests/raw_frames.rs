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
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use hutch_host::protocol::{
    CgroupFile, CgroupFiles, CgroupVersion, DecodeError, Delete, ErrorReply, ExecRequest,
    ExecResult, Hello, MAX_FDS_PER_FRAME, MAX_FRAME_LEN, PROTOCOL_VERSION, Reply, Request, Stage,
    Status, Termination, encode_request,
};
use hutch_host::{ChannelError, Container, ContainerBuilder, ContainerError, ExecSpec};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};

mod common;
use common::{children, read_item};

/// How long init may take before a test calls it hung. Only a guard
/// against blocking forever; nothing waits for it in a passing run.
const GUARD_MS: i64 = 30_000;

/// The most descriptors one `SCM_RIGHTS` message may carry (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

fn readable_within(fd: BorrowedFd<'_>, timeout_ms: i64) -> bool {
    let timeout = rustix::time::Timespec {
        tv_sec: timeout_ms / 1000,
        tv_nsec: (timeout_ms % 1000) * 1_000_000,
    };
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(n) => return n > 0,
            Err(Errno::INTR) => continue,
            Err(err) => panic!("poll: {err}"),
        }
    }
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(fd: BorrowedFd<'_>) -> Self {
        let stat = rustix::fs::fstat(fd).expect("fstat");
        FileId(stat.st_dev, stat.st_ino)
    }
}

/// The pids of every process in the PID namespace `ns`.
fn processes_in(ns: FileId) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // A process that ended meanwhile fails to stat.
            std::fs::metadata(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|meta| FileId(meta.dev(), meta.ino()) == ns)
        })
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
        let init = rustix::process::pidfd_open(
            Pid::from_raw(pid).expect("a positive pid"),
            PidfdFlags::empty(),
        )
        .expect("pidfd_open");
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
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        let sent = rustix::net::sendmsg(
            self.c.socket(),
            &[IoSlice::new(frame)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .expect("sendmsg");
        assert_eq!(sent, frame.len());
    }

    fn send_request(&self, request: &Request, fds: &[BorrowedFd<'_>]) {
        self.send(&encode(request), fds);
    }

    /// The next datagram from init: `None` at end of file.
    fn recv(&self) -> Option<Received> {
        let socket = self.c.socket();
        assert!(readable_within(socket, GUARD_MS), "init did not answer");
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if msg.bytes == 0 {
            assert!(fds.is_empty());
            return None;
        }
        let reply = hutch_host::protocol::decode_reply(&buf[..msg.bytes]).expect("init's reply");
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
        assert!(
            matches!(
                rustix::process::waitid(
                    WaitId::PidFd(self.init.as_fd()),
                    WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
                ),
                Err(Errno::CHILD)
            ),
            "init was reaped"
        );
        assert_eq!(processes_in(ns), Vec::<i32>::new(), "processes left");
    }
}

fn encode(request: &Request) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = encode_request(request, &mut buf).expect("encode");
    buf.truncate(len);
    buf
}

/// A header of this protocol version followed by `body`.
fn with_header(body: &[u8]) -> Vec<u8> {
    let mut frame = hutch_host::protocol::MAGIC.to_vec();
    frame.extend(PROTOCOL_VERSION.to_le_bytes());
    frame.extend(body);
    frame
}

/// `count` descriptors of /dev/null.
fn nulls(count: usize) -> Vec<OwnedFd> {
    let null = OwnedFd::from(File::open("/dev/null").unwrap());
    (0..count).map(|_| null.try_clone().unwrap()).collect()
}

fn borrow(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|fd| fd.as_fd()).collect()
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

#[test]
fn raw_wrong_protocol_version() {
    let mut s = Subject::new();
    s.send(b"HT\x02\x00\x01", &[]);
    s.assert_gave_up_with(
        &DecodeError::VersionMismatch {
            found: 2,
            expected: 1,
        }
        .to_string(),
    );
    s.finish();
}

#[test]
fn raw_bad_magic() {
    let mut s = Subject::new();
    s.send(b"XT\x01\x00\x01", &[]);
    s.assert_gave_up_with("bad frame magic");
    s.finish();
}

#[test]
fn raw_frame_shorter_than_the_header() {
    let mut s = Subject::new();
    s.send(b"HT\x01", &[]);
    s.assert_gave_up_with(&DecodeError::ShortHeader { len: 3 }.to_string());
    s.finish();
}

#[test]
fn raw_truncated_exec() {
    let mut s = Subject::new();
    let whole = encode(&Request::Exec(exec_request(&["true"])));
    let fds = nulls(3);
    s.send(&whole[..whole.len() / 2], &borrow(&fds));
    s.assert_gave_up_with("malformed request body");
    s.finish();
}

#[test]
fn raw_trailing_bytes_after_a_valid_request() {
    let mut s = Subject::new();
    let mut frame = encode(&Request::Ping);
    frame.push(0);
    s.send(&frame, &[]);
    s.assert_gave_up_with(
        &DecodeError::TrailingBytes {
            message: "request",
            end: 5,
            trailing: 1,
        }
        .to_string(),
    );
    s.finish();
}

#[test]
fn raw_unknown_request_tag() {
    let mut s = Subject::new();
    // Tag 10 is `Cgroup`, the last request; 11 is none.
    s.send(&with_header(&[11]), &[]);
    s.assert_gave_up_with("malformed request body");
    s.finish();
}

#[test]
fn raw_huge_string_length_inside_a_request() {
    let mut s = Subject::new();
    // A delete whose path claims 2^32 - 1 bytes.
    s.send(&with_header(&[4, 0xff, 0xff, 0xff, 0xff, 0x0f]), &[]);
    s.assert_gave_up_with("malformed request body");
    s.finish();
}

#[test]
fn raw_huge_item_count_inside_a_request() {
    let mut s = Subject::new();
    // An open claiming 2^32 - 1 items.
    s.send(&with_header(&[3, 0xff, 0xff, 0xff, 0xff, 0x0f]), &[]);
    s.assert_gave_up_with("malformed request body");
    s.finish();
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
    let mut s = Subject::new();
    let fds = nulls(MAX_FDS_PER_FRAME + 1);
    s.send_request(&Request::Ping, &borrow(&fds));
    s.assert_gave_up_with(&ChannelError::TooManyFds.to_string());
    s.finish();
}

#[test]
fn raw_scm_max_fd_descriptors() {
    let mut s = Subject::new();
    let fds = nulls(SCM_MAX_FD);
    s.send_request(&Request::Ping, &borrow(&fds));
    s.assert_gave_up_with(&ChannelError::TooManyFds.to_string());
    s.finish();
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
    let fds = nulls(3);
    s.send_request(
        &Request::Exec(exec_request(&["sleep", "1000"])),
        &borrow(&fds),
    );
    // A request while the program runs is answered, so the program runs.
    s.send_request(&Request::Ping, &[]);
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "ping request while a program runs");
    s.send(b"HT\x01\x00\xff\xff\xff\xff\x1f", &[]);
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

#[test]
fn raw_proceed_when_no_run_waits() {
    let mut s = Subject::new();
    s.send_request(&Request::Proceed, &[]);
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "unexpected proceed request in this state");
    s.assert_carries_on();
    s.finish();
}

#[test]
fn raw_second_handshake() {
    let mut s = Subject::new();
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        features: 0,
    });
    s.send_request(&hello, &[]);
    let error = s.expect_error(Stage::State);
    assert_eq!(error.message, "unexpected hello request in this state");
    s.assert_carries_on();
    s.finish();
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
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        features: 0,
    });
    s.send_request(&Request::Ping, &[]);
    s.send_request(&Request::Open(vec![read_item("/etc/ld.so.cache")]), &[]);
    s.send_request(&hello, &[]);
    let mut no_argv = exec_request(&["true"]);
    no_argv.argv.clear();
    let fds = nulls(3);
    s.send_request(&Request::Exec(no_argv), &borrow(&fds));
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
    let fds = nulls(3);
    s.send_request(
        &Request::Exec(exec_request(&["sleep", "1000"])),
        &borrow(&fds),
    );
    s.send_request(&Request::Reset, &[]);
    s.send_request(&Request::Exec(exec_request(&["true"])), &borrow(&fds));
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
    let fds = nulls(3);
    s.send_request(&Request::Exec(request), &borrow(&fds));
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
