//! A fake init that lies to the host.
//!
//! Each test builds a [`Container`] over one end of a `SOCK_SEQPACKET` pair.
//! A real process (`sleep 1000`) stands in for init, so the host has a
//! pidfd to kill and reap; a thread on the other end of the socket plays
//! init and writes whatever bytes and descriptors the case calls for. Each
//! test checks the exact error the host returns, whether it gave the
//! container up (marked broken, stand-in killed and reaped, later calls
//! `Destroyed`), and that no descriptor the fake sent survives in this
//! process.
//!
//! Descriptors are recognised by identity (device and inode, as `stat` of
//! `/proc/self/fd/N` shows them), not by counting: the tests of this binary
//! run in parallel and open descriptors of their own, but none of them can
//! hold a copy of a memfd, socket or pidfd that another test created.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};

use hutch_protocol::{
    Accounting, Batch, DecodeError, ErrorReply, ExecResult, HelloReply, ItemError, ItemOutcome,
    MAX_FDS_PER_FRAME, MAX_FRAME_LEN, OpenItem, PROTOCOL_VERSION, Reply, Request, Stage, Status,
    SymlinkItem, Termination, ValidationError,
};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Signal, WaitId, WaitIdOptions};

use crate::channel::{Channel, ChannelError};
use crate::container::{Container, ContainerError};
use crate::exec::ExecSpec;

/// The helpers of the integration tests, which use no path of this crate.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{
    FileId, GUARD_MS, SCM_MAX_FD, borrow, copies, is_reaped, pidfd, read_item, readable_within,
    recv_frame, send_frame, with_header,
};

/// What `InitGone` says when init was alive and the host had to kill it.
const KILLED_BY_HOST: &str = "killed by the host after: killed by signal 9";

/// `count` copies of a memfd of this test's own, and its identity: the
/// memfd itself is closed, so whatever copy of it is open later came from
/// the fake init.
fn bait(count: usize) -> (Vec<OwnedFd>, FileId) {
    let fd = rustix::fs::memfd_create("hutch-fault-bait", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create");
    (copies(&fd, count), FileId::of(fd.as_fd()))
}

/// The real process that stands in for init: the host kills and reaps it
/// through its pidfd as it would init. Dropping this kills and reaps it if
/// the host has not, through a pidfd, so no other process can be hit.
struct StandIn {
    pidfd: OwnedFd,
    pid: i32,
}

impl StandIn {
    fn spawn() -> Self {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // Nothing reaps the child before this (std's `Child` neither waits
        // nor kills when dropped, and no code here waits for any child),
        // so the pid still names it.
        let pidfd = pidfd(pid);
        drop(child);
        Self { pidfd, pid }
    }

    fn has_exited(&self) -> bool {
        readable_within(self.pidfd.as_fd(), 0)
    }

    /// Whether someone already collected its exit status.
    fn is_reaped(&self) -> bool {
        is_reaped(self.pidfd.as_fd())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, Signal::KILL);
        // Reaped now, or by the host before (`ECHILD`); retried only when
        // a signal interrupts the wait.
        while let Err(Errno::INTR) =
            rustix::process::waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED)
        {
        }
    }
}

/// The lying init: the other end of the host's socket.
struct Fake {
    socket: Option<OwnedFd>,
    /// A copy of the stand-in's pidfd, to play an init that dies.
    standin: OwnedFd,
}

impl Fake {
    fn socket(&self) -> BorrowedFd<'_> {
        self.socket
            .as_ref()
            .expect("the fake's socket is open")
            .as_fd()
    }

    /// Receives the host's next request, checks its kind, and closes the
    /// descriptors that came with it.
    fn expect(&mut self, kind: &str) -> Request {
        let (frame, fds) = recv_frame(self.socket(), &format!("the host sent no {kind} request"));
        drop(fds);
        let request = hutch_protocol::decode_request(&frame).expect("the host's request decodes");
        assert_eq!(request.kind(), kind, "{request:?}");
        request
    }

    /// Sends `frame` as one datagram with `fds` attached.
    fn send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) {
        send_frame(self.socket(), frame, fds);
    }

    fn reply(&self, reply: &Reply, fds: &[BorrowedFd<'_>]) {
        self.send(&frame(reply), fds);
    }

    fn close(&mut self) {
        self.socket = None;
    }
}

fn frame(reply: &Reply) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = hutch_protocol::encode_reply(reply, &mut buf).expect("encode");
    buf.truncate(len);
    buf
}

struct Harness {
    container: Container,
    fake: Option<Fake>,
    standin: StandIn,
    host_socket: FileId,
}

impl Harness {
    fn new() -> Self {
        let (host, fake) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair");
        let host_socket = FileId::of(host.as_fd());
        let standin = StandIn::spawn();
        let container = Container::new(
            Channel::new(host),
            standin.pidfd.try_clone().expect("dup"),
            standin.pid,
        );
        let fake = Fake {
            socket: Some(fake),
            standin: standin.pidfd.try_clone().expect("dup"),
        };
        Self {
            container,
            fake: Some(fake),
            standin,
            host_socket,
        }
    }

    fn fake(&mut self) -> &mut Fake {
        self.fake.as_mut().expect("the fake init")
    }

    /// Runs `init` on a thread of its own as the fake init while `host`
    /// calls the container on this one. A panic of the fake closes its
    /// socket, which unblocks the host, and is then raised here.
    fn converse<T>(
        &mut self,
        init: impl FnOnce(&mut Fake) + Send,
        host: impl FnOnce(&mut Container) -> T,
    ) -> T {
        let mut fake = self.fake.take().expect("the fake init");
        let container = &mut self.container;
        let (out, fake) = std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                init(&mut fake);
                fake
            });
            let out = host(container);
            match thread.join() {
                Ok(fake) => (out, fake),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        self.fake = Some(fake);
        out
    }

    /// The fake answers the host's `kind` request, which `host` makes,
    /// with `frame` and `fds`; returns the error the host makes of it.
    fn answered<T: std::fmt::Debug>(
        &mut self,
        kind: &'static str,
        host: impl FnOnce(&mut Container) -> Result<T, ContainerError>,
        frame: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> ContainerError {
        self.converse(
            move |fake| {
                fake.expect(kind);
                fake.send(&frame, &borrow(&fds));
            },
            |c| host(c).expect_err("the host refuses the reply"),
        )
    }

    /// The fake answers a ping with `frame` and `fds`; returns the error
    /// the host makes of it.
    fn ping_answered(&mut self, frame: Vec<u8>, fds: Vec<OwnedFd>) -> ContainerError {
        self.answered("ping", Container::ping, frame, fds)
    }

    /// The fake receives an exec of `true` and answers by `init`; returns
    /// the error the host makes of it.
    fn exec_answered(&mut self, init: impl FnOnce(&mut Fake) + Send) -> ContainerError {
        self.converse(
            move |fake| {
                fake.expect("exec");
                init(fake);
            },
            |c| {
                c.exec(&ExecSpec::new(["true"]))
                    .expect_err("the host refuses the reply")
            },
        )
    }

    /// The host gave the container up: marked broken, init killed and
    /// reaped, and every later call fails at once without a word to init.
    fn assert_given_up(&mut self) {
        assert!(self.container.is_broken(), "the container is marked broken");
        assert!(self.standin.has_exited(), "the host killed init");
        assert!(self.standin.is_reaped(), "the host reaped init");
        let later = self.container.ping().expect_err("a broken container");
        assert!(matches!(later, ContainerError::Destroyed), "{later:?}");
        if let Some(socket) = self.fake().socket.as_ref() {
            assert!(
                !readable_within(socket.as_fd(), 0),
                "a destroyed container sends nothing"
            );
        }
    }

    /// The container still serves requests: init was left alone.
    fn assert_usable(&mut self) {
        assert!(!self.container.is_broken());
        assert!(!self.standin.has_exited(), "the host left init alone");
        self.converse(
            |fake| {
                fake.expect("ping");
                fake.reply(&Reply::Pong, &[]);
            },
            |c| c.ping().expect("the container answers"),
        );
    }

    /// Drops the container and checks that it closed its socket and its
    /// pidfd and did not leave the stand-in unreaped.
    fn finish(self) {
        let Harness {
            container,
            fake,
            standin,
            host_socket,
        } = self;
        drop(container);
        assert_eq!(host_socket.copies_open(), 0, "the host's socket is closed");
        drop(fake);
        assert_eq!(
            FileId::of(standin.pidfd.as_fd()).copies_open(),
            1,
            "no pidfd of init is left but this test's own"
        );
        assert!(standin.has_exited() && standin.is_reaped());
    }
}

fn finished_ok() -> Reply {
    Reply::Finished(ExecResult {
        status: Status::Ok,
        termination: Termination::Exited(0),
        user_time_ns: 0,
        system_time_ns: 0,
        memory_bytes: 0,
        wall_time_ns: 0,
        accounting: Accounting::Rusage,
        error: None,
        processes_peak: None,
    })
}

fn opened(results: Vec<ItemOutcome>, fds_attached: u32) -> Reply {
    Reply::Opened(Batch {
        results,
        fds_attached,
    })
}

/// The cause of an `InitGone` in which the host killed the still running
/// init.
fn killed_over(error: ContainerError) -> ChannelError {
    match error {
        ContainerError::InitGone { status, cause } => {
            assert_eq!(status, KILLED_BY_HOST, "{cause:?}");
            cause
        }
        other => panic!("expected InitGone, got {other:?}"),
    }
}

/// `error` is an `InitGone` in which the host killed the still running
/// init over a cause `is_cause` accepts.
fn assert_killed_over(error: ContainerError, is_cause: impl FnOnce(&ChannelError) -> bool) {
    let cause = killed_over(error);
    assert!(is_cause(&cause), "{cause:?}");
}

/// The host gave up with `InitGone`, killing the still running init, over
/// a frame that did not decode; returns the decode error.
fn decode_error(error: ContainerError) -> DecodeError {
    match killed_over(error) {
        ChannelError::Decode(decode) => decode,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// The host gave up as [`decode_error`] says, over a reply body that did
/// not decode; returns the postcard error, by name.
fn body_reason(error: ContainerError) -> String {
    match decode_error(error) {
        DecodeError::Body {
            message: "reply",
            reason,
        } => format!("{reason:?}"),
        other => panic!("not a reply body error: {other:?}"),
    }
}

/// In a fresh harness, runs `exchange` with `baits` copies of a bait for
/// the fake to send, and checks that the host gave the container up over
/// it: every copy of the bait is closed at once, not held until the
/// container is dropped; then [`Harness::assert_given_up`] and
/// [`Harness::finish`]. Returns the error the exchange ended in.
fn given_up_over(
    baits: usize,
    exchange: impl FnOnce(&mut Harness, Vec<OwnedFd>) -> ContainerError,
) -> ContainerError {
    let mut h = Harness::new();
    let (fds, id) = bait(baits);
    let err = exchange(&mut h, fds);
    assert_eq!(id.copies_open(), 0, "a descriptor the fake sent is open");
    h.assert_given_up();
    h.finish();
    err
}

/// The fake answers a ping with `frame` and `baits` copies of a bait, and
/// the host gives the container up ([`given_up_over`]); returns the error.
fn ping_refused(frame: Vec<u8>, baits: usize) -> ContainerError {
    given_up_over(baits, |h, fds| h.ping_answered(frame, fds))
}

/// The fake answers an exec by `init`, and the host gives the container
/// up ([`given_up_over`]); returns the error.
fn exec_refused(init: impl FnOnce(&mut Fake) + Send) -> ContainerError {
    given_up_over(0, |h, _| h.exec_answered(init))
}

/// The fake answers an open of `items` with `frame` and `baits` copies of
/// a bait, and the host gives the container up ([`given_up_over`]);
/// returns the error.
fn open_refused(items: &[OpenItem], frame: Vec<u8>, baits: usize) -> ContainerError {
    given_up_over(baits, |h, fds| {
        h.answered("open", |c| c.open(items), frame, fds)
    })
}

// ---------------------------------------------------------------------------
// Frames that do not decode

#[test]
fn fault_wrong_version_in_the_header() {
    // An init of version 1, which predates the process peak.
    let err = ping_refused(b"HT\x01\x00\x01".to_vec(), 0);
    assert_eq!(
        decode_error(err),
        DecodeError::VersionMismatch {
            found: 1,
            expected: 2
        }
    );
}

#[test]
fn fault_bad_magic() {
    let err = ping_refused(b"XT\x01\x00\x01".to_vec(), 0);
    assert_eq!(
        decode_error(err),
        DecodeError::BadMagic {
            found: [b'X', b'T']
        }
    );
}

#[test]
fn fault_datagram_shorter_than_the_header() {
    let err = ping_refused(b"HT".to_vec(), 0);
    assert_eq!(decode_error(err), DecodeError::ShortHeader { len: 2 });
}

#[test]
fn fault_garbage_after_a_valid_header() {
    // A tag varint above u32::MAX.
    let err = ping_refused(with_header(&[0xff, 0xff, 0xff, 0xff, 0x1f]), 0);
    assert_eq!(body_reason(err), "DeserializeBadVarint");
}

#[test]
fn fault_unknown_reply_tag() {
    let err = ping_refused(with_header(&[9]), 0);
    assert_eq!(body_reason(err), "SerdeDeCustom");
}

#[test]
fn fault_trailing_bytes_after_a_valid_reply() {
    let mut frame = frame(&Reply::Pong);
    frame.push(0);
    assert_eq!(
        decode_error(ping_refused(frame, 0)),
        DecodeError::TrailingBytes {
            message: "reply",
            end: 5,
            trailing: 1
        }
    );
}

#[test]
fn fault_truncated_reply() {
    let err = exec_refused(|fake| {
        let whole = frame(&finished_ok());
        fake.send(&whole[..whole.len() - 1], &[]);
    });
    assert_eq!(body_reason(err), "DeserializeUnexpectedEnd");
}

#[test]
fn fault_huge_length_inside_a_message() {
    // An error reply (stage 0, errno 0, no path) whose message claims
    // 2^32 - 1 bytes.
    let body = [3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = ping_refused(with_header(&body), 0);
    assert_eq!(body_reason(err), "DeserializeUnexpectedEnd");
}

#[test]
fn fault_opened_claiming_four_billion_items() {
    let body = [4, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = open_refused(&[read_item("/a")], with_header(&body), 0);
    assert_eq!(body_reason(err), "DeserializeUnexpectedEnd");
}

#[test]
fn fault_undecodable_frame_with_descriptors_closes_them() {
    // `given_up_over` checks that they are closed at once.
    let err = ping_refused(with_header(&[9]), 3);
    assert_eq!(body_reason(err), "SerdeDeCustom");
}

#[test]
fn fault_empty_datagram_reads_as_the_peer_closing() {
    let err = ping_refused(Vec::new(), 0);
    assert_killed_over(err, |cause| matches!(cause, ChannelError::Closed));
}

#[test]
fn fault_frame_longer_than_max_frame_len_is_detected() {
    let err = given_up_over(1, |h, fds| {
        // A valid header and a body of zeros, one byte over the limit; the
        // default send buffer cannot hold a datagram that long.
        let mut frame = with_header(&[]);
        frame.resize(MAX_FRAME_LEN + 1, 0);
        rustix::net::sockopt::set_socket_send_buffer_size(h.fake().socket(), 2 * MAX_FRAME_LEN)
            .expect("SO_SNDBUF");
        h.ping_answered(frame, fds)
    });
    assert_killed_over(err, |cause| matches!(cause, ChannelError::Truncated));
}

// ---------------------------------------------------------------------------
// Descriptor counts

/// The host refused a `kind` reply whose `message` came with `attached`
/// descriptors where it accounts for `expected`.
fn assert_fd_count(
    err: &ContainerError,
    kind: &str,
    message: &'static str,
    attached: usize,
    expected: usize,
) {
    assert_invalid(err, kind, |e| {
        *e == ValidationError::FdCount {
            message,
            attached,
            expected,
        }
    });
}

#[test]
fn fault_opened_with_fewer_fds_than_done_items() {
    let reply = opened(vec![ItemOutcome::Done, ItemOutcome::Done], 2);
    let err = open_refused(&[read_item("/a"), read_item("/b")], frame(&reply), 1);
    assert_fd_count(&err, "opened reply", "opened reply", 1, 2);
}

#[test]
fn fault_opened_with_more_fds_than_done_items() {
    let reply = opened(vec![ItemOutcome::Done], 1);
    let err = open_refused(&[read_item("/a")], frame(&reply), 2);
    assert_fd_count(&err, "opened reply", "opened reply", 2, 1);
}

#[test]
fn fault_opened_whose_fd_count_disagrees_with_its_items() {
    let reply = opened(
        vec![
            ItemOutcome::Done,
            ItemOutcome::Failed(ItemError {
                errno: 2,
                message: "no".into(),
            }),
        ],
        2,
    );
    let err = open_refused(&[read_item("/a"), read_item("/b")], frame(&reply), 2);
    assert_fd_count(&err, "opened reply", "opened reply header", 2, 1);
}

#[test]
fn fault_descriptors_on_a_reply_that_carries_none() {
    // As many as the host accepts in one frame; `given_up_over` checks
    // that they are closed at once.
    let err = ping_refused(frame(&Reply::Pong), MAX_FDS_PER_FRAME);
    assert_fd_count(&err, "pong", "pong", MAX_FDS_PER_FRAME, 0);
}

fn more_fds_than_a_frame_may_carry(count: usize) {
    let err = ping_refused(frame(&Reply::Pong), count);
    assert_killed_over(err, |cause| matches!(cause, ChannelError::TooManyFds));
}

#[test]
fn fault_one_more_fd_than_max_fds_per_frame() {
    more_fds_than_a_frame_may_carry(MAX_FDS_PER_FRAME + 1);
}

#[test]
fn fault_scm_max_fd_descriptors() {
    more_fds_than_a_frame_may_carry(SCM_MAX_FD);
}

// ---------------------------------------------------------------------------
// Replies that decode and validate but do not fit the request

fn assert_unexpected(err: &ContainerError, request: &str, reply: &str) {
    match err {
        ContainerError::UnexpectedReply {
            request: r,
            reply: k,
        } => assert_eq!((*r, *k), (request, reply)),
        other => panic!("expected UnexpectedReply, got {other:?}"),
    }
}

#[test]
fn fault_pong_to_an_exec() {
    let err = exec_refused(|fake| fake.reply(&Reply::Pong, &[]));
    assert_unexpected(&err, "exec", "pong");
}

#[test]
fn fault_started_for_an_exec_that_is_not_synchronised() {
    let err = given_up_over(0, |h, _| {
        h.converse(
            |fake| {
                let Request::Exec(exec) = fake.expect("exec") else {
                    unreachable!()
                };
                assert!(!exec.sync);
                fake.reply(&Reply::Started { pid: 2 }, &[]);
                fake.reply(&finished_ok(), &[]);
            },
            |c| c.exec(&ExecSpec::new(["true"])).expect_err("a started"),
        )
    });
    assert_unexpected(&err, "exec", "started reply");
}

#[test]
fn fault_opened_with_a_descriptor_to_a_ping() {
    let err = ping_refused(frame(&opened(vec![ItemOutcome::Done], 1)), 1);
    assert_unexpected(&err, "ping", "opened reply");
}

#[test]
fn fault_opened_with_another_number_of_items() {
    let reply = opened(vec![ItemOutcome::Done, ItemOutcome::Done], 2);
    let err = open_refused(&[read_item("/a")], frame(&reply), 2);
    assert_unexpected(&err, "open", "opened reply");
}

#[test]
fn fault_linked_with_another_number_of_items() {
    let item = SymlinkItem {
        link: "/a".into(),
        target: "b".into(),
    };
    let reply = Reply::Linked(Batch {
        results: Vec::new(),
        fds_attached: 0,
    });
    let err = given_up_over(0, |h, _| {
        h.answered("symlink", |c| c.symlink(&[item]), frame(&reply), Vec::new())
    });
    assert_unexpected(&err, "symlink", "linked reply");
}

#[test]
fn fault_finished_to_a_reset() {
    let err = given_up_over(0, |h, _| {
        h.answered("reset", Container::reset, frame(&finished_ok()), Vec::new())
    });
    assert_unexpected(&err, "reset", "finished reply");
}

#[test]
fn fault_handshake_reply_to_a_ping() {
    let hello = Reply::Hello(HelloReply {
        version: PROTOCOL_VERSION,
        features: 0,
    });
    let err = ping_refused(frame(&hello), 0);
    assert_unexpected(&err, "ping", "hello reply");
}

#[test]
fn fault_unsolicited_reply_before_the_real_one() {
    let err = exec_refused(|fake| {
        fake.reply(&Reply::Pong, &[]);
        fake.reply(&finished_ok(), &[]);
    });
    assert_unexpected(&err, "exec", "pong");
}

#[test]
fn fault_extra_reply_is_caught_by_the_next_request() {
    let err = given_up_over(0, |h, _| {
        // Two acks to one reset: the host takes the first, and the second
        // is what it reads for the exec that follows.
        h.converse(
            |fake| {
                fake.expect("reset");
                fake.reply(&Reply::Ack, &[]);
                fake.reply(&Reply::Ack, &[]);
            },
            |c| c.reset().expect("the first ack answers the reset"),
        );
        h.exec_answered(|fake| fake.reply(&finished_ok(), &[]))
    });
    assert_unexpected(&err, "exec", "ack");
}

// ---------------------------------------------------------------------------
// Replies that fail validation

fn assert_invalid(err: &ContainerError, kind: &str, check: impl Fn(&ValidationError) -> bool) {
    match err {
        ContainerError::InvalidReply { kind: k, source } => {
            assert_eq!(*k, kind);
            assert!(check(source), "{source:?}");
        }
        other => panic!("expected InvalidReply, got {other:?}"),
    }
}

#[test]
fn fault_hello_naming_another_version() {
    let hello = Reply::Hello(HelloReply {
        version: 3,
        features: 0,
    });
    let err = ping_refused(frame(&hello), 0);
    assert_invalid(&err, "hello reply", |e| {
        *e == ValidationError::HelloVersion {
            found: 3,
            expected: 2,
        }
    });
}

#[test]
fn fault_error_reply_with_a_negative_errno() {
    let reply = Reply::Error(ErrorReply {
        stage: Stage::Open,
        errno: -1,
        path: None,
        message: "lie".into(),
    });
    let err = ping_refused(frame(&reply), 0);
    assert_invalid(&err, "error reply", |e| {
        matches!(e, ValidationError::OutOfRange { value: -1, .. })
    });
}

#[test]
fn fault_started_naming_init_itself() {
    let err = exec_refused(|fake| fake.reply(&Reply::Started { pid: 1 }, &[]));
    assert_invalid(&err, "started reply", |e| {
        matches!(
            e,
            ValidationError::OutOfRange {
                field: "started pid",
                value: 1,
                ..
            }
        )
    });
}

#[test]
fn fault_finished_that_contradicts_itself() {
    let err = exec_refused(|fake| {
        let Reply::Finished(mut result) = finished_ok() else {
            unreachable!()
        };
        result.termination = Termination::Exited(1);
        fake.reply(&Reply::Finished(result), &[]);
    });
    assert_invalid(&err, "finished reply", |e| {
        matches!(
            e,
            ValidationError::InconsistentResult {
                status: Status::Ok,
                ..
            }
        )
    });
}

// ---------------------------------------------------------------------------
// The peer going away

#[test]
fn fault_peer_closes_the_socket_mid_exec() {
    let err = exec_refused(Fake::close);
    assert_killed_over(err, |cause| matches!(cause, ChannelError::Closed));
}

#[test]
fn fault_init_dies_mid_exec() {
    let err = exec_refused(|fake| {
        // Init ends first, and its socket closes with it.
        rustix::process::pidfd_send_signal(&fake.standin, Signal::TERM).expect("SIGTERM");
        assert!(readable_within(fake.standin.as_fd(), GUARD_MS));
        fake.close();
    });
    match err {
        // The host reports how init ended, without killing it itself.
        ContainerError::InitGone {
            status,
            cause: ChannelError::Closed,
        } => assert_eq!(status, "killed by signal 15"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fault_peer_closed_before_the_request() {
    let err = given_up_over(0, |h, _| {
        h.fake().close();
        h.container.ping().expect_err("nobody to send to")
    });
    assert_killed_over(err, |cause| matches!(cause, ChannelError::Closed));
}

// ---------------------------------------------------------------------------
// Replies the host must accept

#[test]
fn fault_valid_error_reply_leaves_the_container_usable() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("delete");
            let reply = Reply::Error(ErrorReply {
                stage: Stage::Delete,
                errno: 2,
                path: Some("/w/a".into()),
                message: "cannot delete".into(),
            });
            fake.reply(&reply, &[]);
        },
        |c| c.delete("/w/a").expect_err("init said no"),
    );
    match err {
        ContainerError::Failed {
            stage: Stage::Delete,
            errno: 2,
            path: Some(path),
            message,
        } => assert_eq!((path.as_str(), message.as_str()), ("/w/a", "cannot delete")),
        other => panic!("{other:?}"),
    }
    h.assert_usable();
    h.finish();
}

#[test]
fn fault_harness_control_a_truthful_open_hands_over_the_descriptor() {
    let mut h = Harness::new();
    let (fds, id) = bait(1);
    let results = h.converse(
        move |fake| {
            fake.expect("open");
            let reply = opened(
                vec![
                    ItemOutcome::Failed(ItemError {
                        errno: 2,
                        message: "no".into(),
                    }),
                    ItemOutcome::Done,
                ],
                1,
            );
            fake.reply(&reply, &borrow(&fds));
        },
        |c| c.open(&[read_item("/a"), read_item("/b")]).expect("opened"),
    );
    assert_eq!(results.len(), 2);
    assert!(matches!(&results[0], Err(ItemError { errno: 2, .. })));
    let received = results[1].as_ref().expect("the second item");
    assert_eq!(FileId::of(received.as_fd()), id);
    drop(results);
    assert_eq!(id.copies_open(), 0);
    h.assert_usable();
    h.finish();
}

#[test]
fn fault_an_init_that_never_answers_is_given_up_at_the_reply_timeout() {
    let mut h = Harness::new();
    h.container
        .set_reply_timeout(Some(std::time::Duration::from_millis(100)));
    let started = std::time::Instant::now();
    let error = h.converse(
        |fake| {
            fake.expect("ping");
        },
        |c| c.ping().expect_err("no answer"),
    );
    let waited = started.elapsed();
    match error {
        ContainerError::NoReply { request, waited } => {
            assert_eq!(request, "ping");
            assert!(
                waited >= std::time::Duration::from_millis(100),
                "{waited:?}"
            );
        }
        other => panic!("expected NoReply, got {other:?}"),
    }
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_an_exec_may_take_its_wall_limit_and_the_reply_timeout_then_no_more() {
    let mut h = Harness::new();
    h.container
        .set_reply_timeout(Some(std::time::Duration::from_millis(100)));
    let started = std::time::Instant::now();
    let error = h.converse(
        |fake| {
            fake.expect("exec");
        },
        |c| {
            c.exec(&ExecSpec::new(["true"]).wall_time(std::time::Duration::from_millis(200)))
                .expect_err("no answer")
        },
    );
    assert!(
        matches!(
            error,
            ContainerError::NoReply {
                request: "exec",
                ..
            }
        ),
        "{error:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "the run's wall limit and the timeout: {waited:?}"
    );
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_an_exec_given_up_while_its_files_are_watched_tells_the_whole_wait() {
    let mut h = Harness::new();
    h.container
        .set_reply_timeout(Some(std::time::Duration::from_millis(100)));
    let output = rustix::fs::memfd_create("output", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let error = h.converse(
        |fake| {
            fake.expect("exec");
        },
        |c| {
            c.start(&ExecSpec::new(["true"]).wall_time(std::time::Duration::from_millis(200)))
                .expect("started")
                .wait_capping(&[(output.as_fd(), 1000)])
                .expect_err("no answer")
        },
    );
    // From the request to giving up: the run's wall limit and the reply
    // timeout, not the last slice between two looks at the files.
    match error {
        ContainerError::NoReply {
            request: "exec",
            waited,
        } => assert!(
            waited >= std::time::Duration::from_millis(300),
            "{waited:?}"
        ),
        other => panic!("expected NoReply, got {other:?}"),
    }
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_copy_requests_are_not_sent_to_an_init_that_does_not_announce_them() {
    let mut h = Harness::new();
    let source = rustix::fs::memfd_create("src", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let error = h
        .container
        .copy_in(&[crate::container::CopyInFile {
            path: "a",
            mode: 0o644,
            source: source.as_fd(),
        }])
        .expect_err("unsupported");
    assert!(
        matches!(error, ContainerError::Unsupported { request: "copy-in" }),
        "{error:?}"
    );
    let error = h
        .container
        .open_for_copy_out(&["a"])
        .expect_err("unsupported");
    assert!(
        matches!(
            error,
            ContainerError::Unsupported {
                request: "copy-out"
            }
        ),
        "{error:?}"
    );
    h.assert_usable();
    h.finish();
}

// ---------------------------------------------------------------------------
// Specs the host refuses before it sends anything

/// The host refuses `spec` without a word to init (the fake expects only
/// the ping that follows, and would see the exec first), and the container
/// stays usable; returns the error, in full.
fn refused_before_sending(spec: &ExecSpec<'_>) -> String {
    let mut h = Harness::new();
    let error = h.converse(
        |fake| {
            fake.expect("ping");
            fake.reply(&Reply::Pong, &[]);
        },
        |c| {
            let error = c.exec(spec).expect_err("an invalid spec");
            c.ping().expect("the container answers");
            error
        },
    );
    assert!(error.refused_unsent(), "{error:?}");
    h.assert_usable();
    h.finish();
    crate::error_chain(&error)
}

#[test]
fn fault_env_keys_no_environment_can_hold_are_refused_naming_the_key() {
    for (key, value, named) in [
        ("A=B", "c", "\"A=B\""),
        ("", "c", "empty"),
        ("A\0B", "c", "\"A\\0B\""),
        ("NUL_IN_VALUE", "c\0d", "\"NUL_IN_VALUE\""),
    ] {
        let error = refused_before_sending(&ExecSpec::new(["true"]).env(key, value));
        assert!(error.contains(named), "{key:?}={value:?}: {error}");
    }
    // A later good entry does not hide an earlier bad one.
    let error = refused_before_sending(&ExecSpec::new(["true"]).env("A=B", "c").env("D", "e"));
    assert!(error.contains("\"A=B\""), "{error}");
}

#[test]
fn fault_an_empty_cpu_set_is_refused_saying_so() {
    let spec = ExecSpec::new(["true"]).cpus(rustix::thread::CpuSet::new());
    let error = refused_before_sending(&spec);
    assert!(error.contains("empty"), "{error}");
}

// ---------------------------------------------------------------------------
// Run groups

/// A harness whose container has a v2 cgroup in a fake tree that counts
/// processes, and has just run a program that had two tasks at once: its
/// next run needs a fresh run group. Returns the tree's root (to remove)
/// and the container's group.
fn regroup_due(name: &str) -> (Harness, std::path::PathBuf, std::path::PathBuf) {
    use crate::cgroup::fake_tree::{FakeFs, v2_tree};
    let (root, layout) = v2_tree(name);
    let fs = std::sync::Arc::new(FakeFs::counting());
    let (cgroup, _, _) = crate::cgroup::ContainerCgroup::create(&layout, fs).unwrap();
    let group = cgroup.dirs()[0].clone();
    let mut h = Harness::new();
    h.container.set_cgroup(cgroup);
    h.converse(
        |fake| {
            fake.expect("exec");
            let Reply::Finished(mut result) = finished_ok() else {
                unreachable!()
            };
            result.processes_peak = Some(2);
            fake.reply(&Reply::Finished(result), &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect("the run"),
    );
    (h, root, group)
}

#[test]
fn fault_a_run_group_that_cannot_be_made_is_the_reset_s_error_and_ends_the_container() {
    let (mut h, root, group) = regroup_due("regroup-fails-at-reset");
    // Removed from outside: no run group can be made in it.
    std::fs::remove_dir_all(&group).unwrap();
    let error = h.container.begin_reset().expect_err("no run group");
    assert_regroup_failed(h, &error, &group, root);
}

/// `error` says the run group in `group` could not be made, and the
/// container was given up; removes the fake tree at `root`.
fn assert_regroup_failed(
    mut h: Harness,
    error: &ContainerError,
    group: &std::path::Path,
    root: std::path::PathBuf,
) {
    assert!(matches!(error, ContainerError::Regroup { .. }), "{error:?}");
    let text = crate::error_chain(error);
    assert!(
        text.contains("run group") && text.contains(&group.display().to_string()),
        "{text}"
    );
    h.assert_given_up();
    h.finish();
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn fault_a_run_group_that_cannot_be_made_is_the_next_exec_s_error_and_ends_the_container() {
    let (mut h, root, group) = regroup_due("regroup-fails-at-exec");
    std::fs::remove_dir_all(&group).unwrap();
    let error = h
        .container
        .start(&ExecSpec::new(["true"]))
        .map(drop)
        .expect_err("no run group");
    assert_regroup_failed(h, &error, &group, root);
}

#[test]
fn fault_a_regroup_init_refuses_ends_the_container_and_leaves_no_answer_behind() {
    let (mut h, root, _) = regroup_due("regroup-refused");
    let error = h.converse(
        |fake| {
            fake.expect("regroup");
            let refusal = Reply::Error(ErrorReply {
                stage: Stage::State,
                errno: 0,
                path: None,
                message: "unexpected regroup request in this state".into(),
            });
            fake.reply(&refusal, &[]);
            fake.expect("reset");
            fake.reply(&Reply::Ack, &[]);
        },
        |c| c.reset().expect_err("init refused the run group"),
    );
    assert!(
        matches!(
            error,
            ContainerError::Failed {
                stage: Stage::State,
                ..
            }
        ),
        "{error:?}"
    );
    let text = crate::error_chain(&error);
    assert!(text.contains("regroup"), "{text}");
    h.assert_given_up();
    h.finish();
    std::fs::remove_dir_all(root).unwrap();
}
