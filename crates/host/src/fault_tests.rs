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

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use hutch_protocol::{
    Accounting, Batch, DecodeError, ErrorReply, ExecResult, HelloReply, ItemError, ItemOutcome,
    MAX_FDS_PER_FRAME, MAX_FRAME_LEN, OpenItem, PROTOCOL_VERSION, Reply, Request, Stage, Status,
    SymlinkItem, Termination, ValidationError,
};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::channel::{Channel, ChannelError};
use crate::container::{Container, ContainerError};
use crate::exec::ExecSpec;

/// How long a peer may take before a test calls it hung. Only a guard
/// against a test blocking forever; nothing waits for it in a passing run.
const GUARD_MS: i64 = 30_000;

/// The most descriptors one `SCM_RIGHTS` message may carry (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

/// What `InitGone` says when init was alive and the host had to kill it.
const KILLED_BY_HOST: &str = "killed by the host after: killed by signal 9";

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(fd: BorrowedFd<'_>) -> Self {
        let stat = rustix::fs::fstat(fd).expect("fstat");
        FileId(stat.st_dev, stat.st_ino)
    }

    /// How many descriptors of this process refer to this file.
    fn copies_open(self) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .flatten()
            // A descriptor closed by another thread meanwhile fails to stat.
            .filter_map(|entry| std::fs::metadata(entry.path()).ok())
            .filter(|meta| FileId(meta.dev(), meta.ino()) == self)
            .count()
    }
}

/// A memfd of this test's own: whatever copy of it is open later came from
/// the fake init.
fn bait() -> (OwnedFd, FileId) {
    let fd = rustix::fs::memfd_create("hutch-fault-bait", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create");
    let id = FileId::of(fd.as_fd());
    (fd, id)
}

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
        let pidfd = rustix::process::pidfd_open(
            Pid::from_raw(pid).expect("a positive pid"),
            PidfdFlags::empty(),
        )
        .expect("pidfd_open");
        drop(child);
        Self { pidfd, pid }
    }

    fn has_exited(&self) -> bool {
        readable_within(self.pidfd.as_fd(), 0)
    }

    /// Whether someone already collected its exit status.
    fn is_reaped(&self) -> bool {
        matches!(
            rustix::process::waitid(
                WaitId::PidFd(self.pidfd.as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            ),
            Err(Errno::CHILD)
        )
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
        let socket = self.socket();
        assert!(
            readable_within(socket, GUARD_MS),
            "the host sent no {kind} request"
        );
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                fds.for_each(drop);
            }
        }
        let request =
            hutch_protocol::decode_request(&buf[..msg.bytes]).expect("the host's request decodes");
        assert_eq!(request.kind(), kind, "{request:?}");
        request
    }

    /// Sends `frame` as one datagram with `fds` attached.
    fn send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        let sent = rustix::net::sendmsg(
            self.socket(),
            &[IoSlice::new(frame)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .expect("sendmsg");
        assert_eq!(sent, frame.len());
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

/// A header of this protocol version followed by `body`.
fn with_header(body: &[u8]) -> Vec<u8> {
    let mut frame = hutch_protocol::MAGIC.to_vec();
    frame.extend(PROTOCOL_VERSION.to_le_bytes());
    frame.extend(body);
    frame
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

    /// The fake answers a ping with `frame` and `fds`; returns the error
    /// the host makes of it.
    fn ping_answered(&mut self, frame: Vec<u8>, fds: Vec<OwnedFd>) -> ContainerError {
        self.converse(
            move |fake| {
                fake.expect("ping");
                let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
                fake.send(&frame, &borrowed);
            },
            |c| c.ping().expect_err("the host refuses the reply"),
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
    })
}

fn read_item(path: &str) -> OpenItem {
    OpenItem {
        path: path.into(),
        flags: hutch_protocol::OpenFlags {
            access: hutch_protocol::Access::Read,
            create: false,
            exclusive: false,
            truncate: false,
            append: false,
        },
        mode: 0,
        make_parents: false,
    }
}

fn opened(results: Vec<ItemOutcome>, fds_attached: u32) -> Reply {
    Reply::Opened(Batch {
        results,
        fds_attached,
    })
}

/// `count` copies of `fd` in one array.
fn copies(fd: &OwnedFd, count: usize) -> Vec<OwnedFd> {
    (0..count).map(|_| fd.try_clone().expect("dup")).collect()
}

/// The postcard error inside a `Body` decode error, by name.
fn body_reason(error: &DecodeError) -> String {
    match error {
        DecodeError::Body {
            message: "reply",
            reason,
        } => format!("{reason:?}"),
        other => panic!("not a reply body error: {other:?}"),
    }
}

/// The host gave up with `InitGone`, killing the still running init, over
/// a frame that did not decode; returns the decode error.
fn decode_error(error: ContainerError) -> DecodeError {
    match error {
        ContainerError::InitGone {
            status,
            cause: ChannelError::Decode(decode),
        } => {
            assert_eq!(status, KILLED_BY_HOST);
            decode
        }
        other => panic!("expected InitGone with a decode error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Frames that do not decode

#[test]
fn fault_wrong_version_in_the_header() {
    let mut h = Harness::new();
    let err = h.ping_answered(b"HT\x02\x00\x01".to_vec(), Vec::new());
    assert_eq!(
        decode_error(err),
        DecodeError::VersionMismatch {
            found: 2,
            expected: 1
        }
    );
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_bad_magic() {
    let mut h = Harness::new();
    let err = h.ping_answered(b"XT\x01\x00\x01".to_vec(), Vec::new());
    assert_eq!(
        decode_error(err),
        DecodeError::BadMagic {
            found: [b'X', b'T']
        }
    );
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_datagram_shorter_than_the_header() {
    let mut h = Harness::new();
    let err = h.ping_answered(b"HT".to_vec(), Vec::new());
    assert_eq!(decode_error(err), DecodeError::ShortHeader { len: 2 });
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_garbage_after_a_valid_header() {
    let mut h = Harness::new();
    // A tag varint above u32::MAX.
    let err = h.ping_answered(with_header(&[0xff, 0xff, 0xff, 0xff, 0x1f]), Vec::new());
    assert_eq!(body_reason(&decode_error(err)), "DeserializeBadVarint");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_unknown_reply_tag() {
    let mut h = Harness::new();
    let err = h.ping_answered(with_header(&[8]), Vec::new());
    assert_eq!(body_reason(&decode_error(err)), "SerdeDeCustom");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_trailing_bytes_after_a_valid_reply() {
    let mut h = Harness::new();
    let mut frame = frame(&Reply::Pong);
    frame.push(0);
    let err = h.ping_answered(frame, Vec::new());
    assert_eq!(
        decode_error(err),
        DecodeError::TrailingBytes {
            message: "reply",
            end: 5,
            trailing: 1
        }
    );
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_truncated_reply() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            let whole = frame(&finished_ok());
            fake.send(&whole[..whole.len() - 1], &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("a cut reply"),
    );
    assert_eq!(body_reason(&decode_error(err)), "DeserializeUnexpectedEnd");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_huge_length_inside_a_message() {
    let mut h = Harness::new();
    // An error reply (stage 0, errno 0, no path) whose message claims
    // 2^32 - 1 bytes.
    let body = [3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = h.ping_answered(with_header(&body), Vec::new());
    assert_eq!(body_reason(&decode_error(err)), "DeserializeUnexpectedEnd");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_opened_claiming_four_billion_items() {
    let mut h = Harness::new();
    let body = [4, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = h.converse(
        move |fake| {
            fake.expect("open");
            fake.send(&with_header(&body), &[]);
        },
        |c| c.open(&[read_item("/a")]).expect_err("a lying count"),
    );
    assert_eq!(body_reason(&decode_error(err)), "DeserializeUnexpectedEnd");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_undecodable_frame_with_descriptors_closes_them() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let err = h.ping_answered(with_header(&[8]), copies(&fd, 3));
    drop(fd);
    assert_eq!(body_reason(&decode_error(err)), "SerdeDeCustom");
    // Closed at once, not held until the container is dropped.
    assert_eq!(id.copies_open(), 0);
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_empty_datagram_reads_as_the_peer_closing() {
    let mut h = Harness::new();
    let err = h.ping_answered(Vec::new(), Vec::new());
    match err {
        ContainerError::InitGone {
            status,
            cause: ChannelError::Closed,
        } => assert_eq!(status, KILLED_BY_HOST),
        other => panic!("{other:?}"),
    }
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_frame_longer_than_max_frame_len_is_detected() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    // A valid header and a body of zeros, one byte over the limit; the
    // default send buffer cannot hold a datagram that long.
    let mut frame = with_header(&[]);
    frame.resize(MAX_FRAME_LEN + 1, 0);
    rustix::net::sockopt::set_socket_send_buffer_size(h.fake().socket(), 2 * MAX_FRAME_LEN)
        .expect("SO_SNDBUF");
    let err = h.ping_answered(frame, copies(&fd, 1));
    drop(fd);
    match err {
        ContainerError::InitGone {
            status,
            cause: ChannelError::Truncated,
        } => assert_eq!(status, KILLED_BY_HOST),
        other => panic!("{other:?}"),
    }
    assert_eq!(id.copies_open(), 0, "the oversized frame's descriptor");
    h.assert_given_up();
    h.finish();
}

// ---------------------------------------------------------------------------
// Descriptor counts

#[test]
fn fault_opened_with_fewer_fds_than_done_items() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let fds = copies(&fd, 1);
    drop(fd);
    let err = h.converse(
        move |fake| {
            fake.expect("open");
            let reply = opened(vec![ItemOutcome::Done, ItemOutcome::Done], 2);
            fake.reply(&reply, &[fds[0].as_fd()]);
        },
        |c| {
            c.open(&[read_item("/a"), read_item("/b")])
                .expect_err("a missing descriptor")
        },
    );
    assert!(
        matches!(
            err,
            ContainerError::InvalidReply {
                kind: "opened reply",
                source: ValidationError::FdCount {
                    message: "opened reply",
                    attached: 1,
                    expected: 2
                }
            }
        ),
        "{err:?}"
    );
    assert_eq!(id.copies_open(), 0, "the one descriptor that came");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_opened_with_more_fds_than_done_items() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let fds = copies(&fd, 2);
    drop(fd);
    let err = h.converse(
        move |fake| {
            fake.expect("open");
            let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
            fake.reply(&opened(vec![ItemOutcome::Done], 1), &borrowed);
        },
        |c| c.open(&[read_item("/a")]).expect_err("an extra descriptor"),
    );
    assert!(
        matches!(
            err,
            ContainerError::InvalidReply {
                kind: "opened reply",
                source: ValidationError::FdCount {
                    message: "opened reply",
                    attached: 2,
                    expected: 1
                }
            }
        ),
        "{err:?}"
    );
    assert_eq!(id.copies_open(), 0, "both descriptors that came");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_opened_whose_fd_count_disagrees_with_its_items() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let fds = copies(&fd, 2);
    drop(fd);
    let err = h.converse(
        move |fake| {
            fake.expect("open");
            let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
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
            fake.reply(&reply, &borrowed);
        },
        |c| {
            c.open(&[read_item("/a"), read_item("/b")])
                .expect_err("a lying header")
        },
    );
    assert!(
        matches!(
            err,
            ContainerError::InvalidReply {
                kind: "opened reply",
                source: ValidationError::FdCount {
                    message: "opened reply header",
                    attached: 2,
                    expected: 1
                }
            }
        ),
        "{err:?}"
    );
    assert_eq!(id.copies_open(), 0);
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_descriptors_on_a_reply_that_carries_none() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    // As many as the host accepts in one frame.
    let err = h.ping_answered(frame(&Reply::Pong), copies(&fd, MAX_FDS_PER_FRAME));
    drop(fd);
    assert!(
        matches!(
            err,
            ContainerError::InvalidReply {
                kind: "pong",
                source: ValidationError::FdCount {
                    message: "pong",
                    attached: MAX_FDS_PER_FRAME,
                    expected: 0
                }
            }
        ),
        "{err:?}"
    );
    // Closed at once, not held until the container is dropped.
    assert_eq!(id.copies_open(), 0);
    h.assert_given_up();
    h.finish();
}

fn more_fds_than_a_frame_may_carry(count: usize) {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let err = h.ping_answered(frame(&Reply::Pong), copies(&fd, count));
    drop(fd);
    match err {
        ContainerError::InitGone {
            status,
            cause: ChannelError::TooManyFds,
        } => assert_eq!(status, KILLED_BY_HOST),
        other => panic!("{other:?}"),
    }
    assert_eq!(id.copies_open(), 0, "every descriptor that came");
    h.assert_given_up();
    h.finish();
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
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            fake.reply(&Reply::Pong, &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("a pong"),
    );
    assert_unexpected(&err, "exec", "pong");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_started_for_an_exec_that_is_not_synchronised() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            let Request::Exec(exec) = fake.expect("exec") else {
                unreachable!()
            };
            assert!(!exec.sync);
            fake.reply(&Reply::Started { pid: 2 }, &[]);
            fake.reply(&finished_ok(), &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("a started"),
    );
    assert_unexpected(&err, "exec", "started reply");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_opened_with_a_descriptor_to_a_ping() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let err = h.ping_answered(frame(&opened(vec![ItemOutcome::Done], 1)), copies(&fd, 1));
    drop(fd);
    assert_unexpected(&err, "ping", "opened reply");
    assert_eq!(id.copies_open(), 0);
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_opened_with_another_number_of_items() {
    let mut h = Harness::new();
    let (fd, id) = bait();
    let fds = copies(&fd, 2);
    drop(fd);
    let err = h.converse(
        move |fake| {
            fake.expect("open");
            let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
            fake.reply(
                &opened(vec![ItemOutcome::Done, ItemOutcome::Done], 2),
                &borrowed,
            );
        },
        |c| c.open(&[read_item("/a")]).expect_err("two results for one"),
    );
    assert_unexpected(&err, "open", "opened reply");
    assert_eq!(id.copies_open(), 0);
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_linked_with_another_number_of_items() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("symlink");
            let reply = Reply::Linked(Batch {
                results: Vec::new(),
                fds_attached: 0,
            });
            fake.reply(&reply, &[]);
        },
        |c| {
            let item = SymlinkItem {
                link: "/a".into(),
                target: "b".into(),
            };
            c.symlink(&[item]).expect_err("no result for one")
        },
    );
    assert_unexpected(&err, "symlink", "linked reply");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_finished_to_a_reset() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("reset");
            fake.reply(&finished_ok(), &[]);
        },
        |c| c.reset().expect_err("a finished"),
    );
    assert_unexpected(&err, "reset", "finished reply");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_handshake_reply_to_a_ping() {
    let mut h = Harness::new();
    let hello = Reply::Hello(HelloReply {
        version: PROTOCOL_VERSION,
        features: 0,
    });
    let err = h.ping_answered(frame(&hello), Vec::new());
    assert_unexpected(&err, "ping", "hello reply");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_unsolicited_reply_before_the_real_one() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            fake.reply(&Reply::Pong, &[]);
            fake.reply(&finished_ok(), &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("a pong first"),
    );
    assert_unexpected(&err, "exec", "pong");
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_extra_reply_is_caught_by_the_next_request() {
    let mut h = Harness::new();
    // Two acks to one reset: the host takes the first, and the second is
    // what it reads for the exec that follows.
    h.converse(
        |fake| {
            fake.expect("reset");
            fake.reply(&Reply::Ack, &[]);
            fake.reply(&Reply::Ack, &[]);
        },
        |c| c.reset().expect("the first ack answers the reset"),
    );
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            fake.reply(&finished_ok(), &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("the stale ack"),
    );
    assert_unexpected(&err, "exec", "ack");
    h.assert_given_up();
    h.finish();
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
    let mut h = Harness::new();
    let hello = Reply::Hello(HelloReply {
        version: 2,
        features: 0,
    });
    let err = h.ping_answered(frame(&hello), Vec::new());
    assert_invalid(&err, "hello reply", |e| {
        *e == ValidationError::HelloVersion {
            found: 2,
            expected: 1,
        }
    });
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_error_reply_with_a_negative_errno() {
    let mut h = Harness::new();
    let reply = Reply::Error(ErrorReply {
        stage: Stage::Open,
        errno: -1,
        path: None,
        message: "lie".into(),
    });
    let err = h.ping_answered(frame(&reply), Vec::new());
    assert_invalid(&err, "error reply", |e| {
        matches!(e, ValidationError::OutOfRange { value: -1, .. })
    });
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_started_naming_init_itself() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            fake.reply(&Reply::Started { pid: 1 }, &[]);
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("pid 1"),
    );
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
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_finished_that_contradicts_itself() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            let Reply::Finished(mut result) = finished_ok() else {
                unreachable!()
            };
            result.termination = Termination::Exited(1);
            fake.reply(&Reply::Finished(result), &[]);
        },
        |c| {
            c.exec(&ExecSpec::new(["true"]))
                .expect_err("ok with exit 1")
        },
    );
    assert_invalid(&err, "finished reply", |e| {
        matches!(
            e,
            ValidationError::InconsistentResult {
                status: Status::Ok,
                ..
            }
        )
    });
    h.assert_given_up();
    h.finish();
}

// ---------------------------------------------------------------------------
// The peer going away

#[test]
fn fault_peer_closes_the_socket_mid_exec() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            fake.close();
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("no reply"),
    );
    match err {
        ContainerError::InitGone {
            status,
            cause: ChannelError::Closed,
        } => assert_eq!(status, KILLED_BY_HOST),
        other => panic!("{other:?}"),
    }
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_init_dies_mid_exec() {
    let mut h = Harness::new();
    let err = h.converse(
        |fake| {
            fake.expect("exec");
            // Init ends first, and its socket closes with it.
            rustix::process::pidfd_send_signal(&fake.standin, Signal::TERM).expect("SIGTERM");
            assert!(readable_within(fake.standin.as_fd(), GUARD_MS));
            fake.close();
        },
        |c| c.exec(&ExecSpec::new(["true"])).expect_err("no reply"),
    );
    match err {
        // The host reports how init ended, without killing it itself.
        ContainerError::InitGone {
            status,
            cause: ChannelError::Closed,
        } => assert_eq!(status, "killed by signal 15"),
        other => panic!("{other:?}"),
    }
    h.assert_given_up();
    h.finish();
}

#[test]
fn fault_peer_closed_before_the_request() {
    let mut h = Harness::new();
    h.fake().close();
    let err = h.container.ping().expect_err("nobody to send to");
    match err {
        ContainerError::InitGone {
            status,
            cause: ChannelError::Closed,
        } => assert_eq!(status, KILLED_BY_HOST),
        other => panic!("{other:?}"),
    }
    h.assert_given_up();
    h.finish();
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
    let (fd, id) = bait();
    let fds = copies(&fd, 1);
    drop(fd);
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
            fake.reply(&reply, &[fds[0].as_fd()]);
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
