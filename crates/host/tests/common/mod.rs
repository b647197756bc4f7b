//! Helpers shared by the host's test files. Each test binary uses some of
//! them, so unused ones are not an error.
//!
//! The library's own unit tests (`src/fault_tests.rs`) include this file
//! too, so it names the protocol as `hutch_protocol`, a dependency of both,
//! and nothing of `hutch_host`.

#![allow(dead_code)]

#[path = "../../../../tests/support/scratch.rs"]
pub mod scratch;

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};

/// The uid and gid unprivileged runs use.
pub const NOBODY: u32 = 65534;

/// A command that runs this test binary again as uid and gid 65534.
///
/// The binary is copied into a fresh world-readable directory first: the
/// build directory may sit where that user cannot reach (a home directory
/// of mode 0700, say).
pub fn this_binary_as_nobody() -> Command {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    let exe = COPY.get_or_init(|| {
        let source = std::env::current_exe().expect("this test binary");
        let dir = scratch::process_dir("unprivileged", 0o755);
        let copy = dir.join(source.file_name().expect("a file name"));
        std::fs::copy(&source, &copy).expect("copy of this test binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    });
    let mut command = Command::new(exe);
    command.uid(NOBODY).gid(NOBODY).env("TMPDIR", "/tmp");
    command
}

/// An in-memory file for a program's output.
pub fn memfd(name: &str) -> std::fs::File {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
    std::fs::File::from(fd)
}

/// Everything written to `file`, from its start.
pub fn read_back(mut file: &std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

/// An open item that reads `path`.
pub fn read_item(path: &str) -> hutch_protocol::OpenItem {
    use hutch_protocol::{Access, OpenFlags, OpenItem};
    OpenItem {
        path: path.into(),
        flags: OpenFlags {
            access: Access::Read,
            create: false,
            exclusive: false,
            truncate: false,
            append: false,
        },
        mode: 0,
        make_parents: false,
    }
}

/// How many descriptors this process has open.
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Pids of the direct children of `pid`, from every one of its threads.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(list.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
    }
    pids
}

/// The resident set size of `pid` (`"self"` for this process) in KiB, as
/// `VmRSS` of `/proc/<pid>/status` says.
pub fn vm_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}

/// Runs the ignored test `name` alone in a child process of this test
/// binary, with `var` set in its environment (so it can tell it was started
/// this way), for measurements of the whole process that tests running in
/// parallel would disturb. Checks that it passed, copies what it printed
/// to stderr into this test's output, and returns that text.
pub fn run_isolated(name: &str, var: &str) -> String {
    run_ignored_test(Command::new(std::env::current_exe().unwrap()), name, var)
}

/// `binary`, a command that starts this test binary, made to run the
/// ignored test `name` alone, printing as it goes, with `var` set in its
/// environment.
pub fn ignored_test(mut binary: Command, name: &str, var: &str) -> Command {
    binary
        .args([
            "--exact",
            name,
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(var, "1");
    binary
}

/// Runs the ignored test `name` alone through `binary`, a command that
/// starts this test binary (as this user or as another), with `var` set in
/// its environment. Checks that it passed, copies what it printed to
/// stderr into this test's output, and returns that text.
pub fn run_ignored_test(binary: Command, name: &str, var: &str) -> String {
    let output = ignored_test(binary, name, var)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} in a child process: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed in a child process ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprint!("{stderr}");
    stderr
}

// ---------------------------------------------------------------------------
// Sockets, descriptors and processes, for the tests that talk to init (or
// play it) frame by frame

/// How long a peer may take before a test calls it hung. Only a guard
/// against a test blocking forever; nothing waits for it in a passing run.
pub const GUARD_MS: i64 = 30_000;

/// The most descriptors one `SCM_RIGHTS` message may carry (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// Whether `fd` becomes readable within `timeout_ms` milliseconds.
pub fn readable_within(fd: BorrowedFd<'_>, timeout_ms: i64) -> bool {
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
pub struct FileId(pub u64, pub u64);

impl FileId {
    pub fn of(fd: BorrowedFd<'_>) -> Self {
        let stat = rustix::fs::fstat(fd).expect("fstat");
        FileId(stat.st_dev, stat.st_ino)
    }

    /// The identity of the file at `path`, if it can be stat'ed.
    pub fn at(path: impl AsRef<Path>) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileId(meta.dev(), meta.ino()))
    }

    /// How many descriptors of this process refer to this file.
    pub fn copies_open(self) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .flatten()
            // A descriptor closed by another thread meanwhile fails to stat.
            .filter(|entry| FileId::at(entry.path()) == Some(self))
            .count()
    }
}

/// `count` copies of `fd` in one array.
pub fn copies(fd: &OwnedFd, count: usize) -> Vec<OwnedFd> {
    (0..count).map(|_| fd.try_clone().expect("dup")).collect()
}

/// `fds` borrowed, to attach to a frame.
pub fn borrow(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|fd| fd.as_fd()).collect()
}

/// A header of this protocol version followed by `body`.
pub fn with_header(body: &[u8]) -> Vec<u8> {
    let mut frame = hutch_protocol::MAGIC.to_vec();
    frame.extend(hutch_protocol::PROTOCOL_VERSION.to_le_bytes());
    frame.extend(body);
    frame
}

/// Sends `frame` on `socket` as one datagram with `fds` attached.
pub fn send_frame(socket: BorrowedFd<'_>, frame: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .expect("sendmsg");
    assert_eq!(sent, frame.len());
}

/// The next datagram on `socket` and the descriptors that came with it
/// (close-on-exec); panics with `silence` if nothing comes within
/// [`GUARD_MS`].
pub fn recv_frame(socket: BorrowedFd<'_>, silence: &str) -> (Vec<u8>, Vec<OwnedFd>) {
    assert!(readable_within(socket, GUARD_MS), "{silence}");
    let mut buf = vec![0u8; hutch_protocol::MAX_FRAME_LEN];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
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
    buf.truncate(msg.bytes);
    (buf, fds)
}

/// A pidfd of the process `pid`, which must not have been reaped yet.
pub fn pidfd(pid: i32) -> OwnedFd {
    rustix::process::pidfd_open(
        Pid::from_raw(pid).expect("a positive pid"),
        PidfdFlags::empty(),
    )
    .expect("pidfd_open")
}

/// Whether someone already collected the exit status of the child process
/// `pidfd` refers to.
pub fn is_reaped(pidfd: BorrowedFd<'_>) -> bool {
    matches!(
        rustix::process::waitid(
            WaitId::PidFd(pidfd),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ),
        Err(Errno::CHILD)
    )
}
