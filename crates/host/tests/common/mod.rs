//! Helpers shared by the host's test files. Each test binary uses some of
//! them, so unused ones are not an error.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

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
        let dir = std::env::temp_dir().join(format!("hutch-unprivileged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the copy");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
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
pub fn read_item(path: &str) -> hutch_host::protocol::OpenItem {
    use hutch_host::protocol::{Access, OpenFlags, OpenItem};
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
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(var, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed in isolation ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprint!("{stderr}");
    stderr
}
