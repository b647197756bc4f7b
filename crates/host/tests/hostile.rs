//! The hostile-program suite: programs that attack the sandbox, each run
//! in a real container with the settings a judge would use, and checked
//! for containment and for the container's health afterwards.
//!
//! The programs live in `tests/hostile/` at the root of the repository,
//! one attack per file, each with a header comment saying what it tries
//! and what it must get. C programs are compiled with `cc` when the tests
//! run; C, shell and Python programs alike are put in a fresh directory
//! bound read-only into the container at `/t`.
//!
//! Every run uses the judge's defaults: `ContainerBuilder::new()`, the
//! default seccomp policy, 2 s of CPU, 5 s of wall-clock time, 256 MiB of
//! memory, 32 processes and 1 MiB of output. After the attack, every test
//! checks that the container is healthy: init has no child left, the
//! container's cgroup holds no process, the next run (`echo ok`) is fine,
//! and this process has as many descriptors open as before the attack.
//!
//! The tests need root (the judge's limits need the container's cgroup,
//! made under this process's own) and run one at a time, so that CPU and
//! wall-clock verdicts are not disturbed and the descriptor count is this
//! test's alone.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod common;
use common::{memfd, read_item};

use hutch_host::protocol::{ExecResult, OpenFlags, OpenItem, Status, SymlinkItem, Termination};
use hutch_host::{
    Container, ContainerBuilder, ContainerError, CopyInError, CopyInFile, ExecSpec, Namespaces,
    SeccompPolicy,
};

/// Where the hostile programs' sources are.
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/hostile");

const MIB: u64 = 1 << 20;

/// The judge's limits.
const CPU_LIMIT: Duration = Duration::from_secs(2);
const WALL_LIMIT: Duration = Duration::from_secs(5);
const MEMORY_LIMIT: u64 = 256 * MIB;
const PROCESS_LIMIT: u32 = 32;
const OUTPUT_LIMIT: u64 = MIB;

/// The default container's tmpfs mounts: the work directory `/w`, and
/// `/tmp` and `/dev/shm`.
const WORKDIR_BYTES: u64 = hutch_host::DEFAULT_WORKDIR_BYTES;
const TMP_BYTES: u64 = hutch_host::DEFAULT_TMP_BYTES;
const TMPFS_INODES: u64 = hutch_host::DEFAULT_TMPFS_INODES;

/// How far past the CPU limit a run may go before these tests call it
/// wrong: generous, since on a loaded machine init's check can wake late
/// while every CPU spins for the program (the `precision` example
/// measures the real figure).
const CPU_SLACK: Duration = Duration::from_millis(250);

/// One test at a time: CPU and wall-clock verdicts hold only while no
/// other test spins on the same CPUs, and the descriptor count checked
/// after each attack must be the test's own.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the hostile suite needs root: the judge's memory, process and CPU limits need the \
         container's cgroup, made under this process's own"
    );
}

/// The hostile programs a test needs, compiled or copied into a fresh
/// directory that the container's user can read; removed on drop.
struct Programs {
    dir: PathBuf,
}

impl Programs {
    /// `files` are names in [`SOURCES`]: `x.c` is compiled to `x`, any
    /// other file is copied as it is; all are made executable.
    fn prepare(files: &[&str]) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hutch-hostile-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let programs = Programs { dir };
        let mut compilers = Vec::new();
        for file in files {
            let source = Path::new(SOURCES).join(file);
            assert!(source.is_file(), "no hostile program {}", source.display());
            if let Some(name) = file.strip_suffix(".c") {
                let child = Command::new("cc")
                    .args(["-O1", "-Wall", "-Wextra", "-pthread", "-o"])
                    .arg(programs.dir.join(name))
                    .arg(&source)
                    .arg("-lrt")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run cc to build {file}: {e}"));
                compilers.push((file, child));
            } else {
                std::fs::copy(&source, programs.dir.join(file)).unwrap();
            }
        }
        for (file, child) in compilers {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "cc failed on {file}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for entry in std::fs::read_dir(&programs.dir).unwrap() {
            std::fs::set_permissions(
                entry.unwrap().path(),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        programs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Output {
    result: ExecResult,
    stdout: String,
    stderr: String,
    /// Bytes written to stdout (the text above is lossy).
    stdout_len: u64,
    stderr_len: u64,
}

impl Output {
    fn cpu(&self) -> Duration {
        Duration::from_nanos(self.result.user_time_ns + self.result.system_time_ns)
    }

    fn wall(&self) -> Duration {
        Duration::from_nanos(self.result.wall_time_ns)
    }

    /// Everything about the run, for assertion messages.
    fn describe(&self) -> String {
        let clip = |text: &str| -> String {
            if text.len() > 600 {
                let start: String = text.chars().take(600).collect();
                format!("{start}… ({} bytes)", text.len())
            } else {
                text.to_owned()
            }
        };
        format!(
            "{:?}\ncpu {:.3} ms, wall {:.3} ms, memory {} KiB\nstdout: {}\nstderr: {}",
            self.result,
            self.cpu().as_secs_f64() * 1e3,
            self.wall().as_secs_f64() * 1e3,
            self.result.memory_bytes / 1024,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }

    /// The program's stdout as a set of lines.
    fn lines(&self) -> BTreeSet<&str> {
        self.stdout.lines().collect()
    }
}

fn read_back(mut file: &File) -> (String, u64) {
    let mut bytes = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        bytes.len() as u64,
    )
}

/// A run with the judge's settings.
fn judge_spec(argv: &[&str]) -> ExecSpec<'static> {
    ExecSpec::new(argv.iter().copied())
        .seccomp(
            SeccompPolicy::default_policy()
                .compile()
                .expect("the default policy compiles"),
        )
        .cpu_time(CPU_LIMIT)
        .wall_time(WALL_LIMIT)
        .memory_limit(MEMORY_LIMIT)
        .process_limit(PROCESS_LIMIT)
        .output_limit(OUTPUT_LIMIT)
}

/// Pids of the direct children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_else(|e| panic!("cannot read the children of {pid}: {e}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A container with the judge's settings, its programs at `/t`, and what
/// its health is checked against.
struct Judge {
    container: Container,
    programs: Programs,
    /// This process's descriptors once the container was up.
    fds: usize,
}

impl Judge {
    fn new(files: &[&str]) -> Self {
        Self::with(files, |_| {})
    }

    /// Like `new`, with `setup` run on the programs' directory before the
    /// container starts.
    fn with(files: &[&str], setup: impl FnOnce(&Programs)) -> Self {
        require_root();
        Self::build(files, setup, ContainerBuilder::new())
    }

    fn build(files: &[&str], setup: impl FnOnce(&Programs), builder: ContainerBuilder) -> Self {
        let programs = Programs::prepare(files);
        setup(&programs);
        let container = builder
            .bind(programs.dir.to_str().unwrap(), "/t", false)
            .build()
            .expect("container starts");
        let fds = open_fd_count();
        Judge {
            container,
            programs,
            fds,
        }
    }

    fn run(&mut self, argv: &[&str]) -> Output {
        self.run_spec(judge_spec(argv), None)
    }

    /// Runs `spec` with stdout and stderr in memory and stdin from
    /// `stdin`, or `/dev/null`.
    fn run_spec(&mut self, spec: ExecSpec<'_>, stdin: Option<BorrowedFd<'_>>) -> Output {
        let null = File::open("/dev/null").unwrap();
        let stdout = memfd("stdout");
        let stderr = memfd("stderr");
        let stdin = stdin.unwrap_or(null.as_fd());
        let spec = spec.stdio(stdin, stdout.as_fd(), stderr.as_fd());
        let result = self.container.exec(&spec).expect("exec request");
        let (stdout, stdout_len) = read_back(&stdout);
        let (stderr, stderr_len) = read_back(&stderr);
        Output {
            result,
            stdout,
            stderr,
            stdout_len,
            stderr_len,
        }
    }

    /// Nothing of the run is left, the next run works, and no descriptor
    /// leaked into this process.
    fn assert_healthy(&mut self) {
        let init = self.container.init_pid();
        assert_eq!(children(init), Vec::<i32>::new(), "init has a child left");
        for dir in self.container.cgroup_dirs() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
            assert_eq!(procs, "", "processes left in {}", dir.display());
        }
        self.container.ping().expect("init answers");
        let out = self.run(&["echo", "ok"]);
        assert_eq!(
            out.result.status,
            Status::Ok,
            "the next run: {}",
            out.describe()
        );
        assert_eq!(out.stdout, "ok\n", "the next run: {}", out.describe());
        assert_eq!(children(init), Vec::<i32>::new(), "init has a child left");
        assert_eq!(
            open_fd_count(),
            self.fds,
            "this process's descriptor count changed"
        );
    }

    /// Asserts that a run sees no process but init and itself.
    fn assert_no_process_left(&mut self) {
        let out = self.run(&["ls", "/proc"]);
        let pids: Vec<&str> = out
            .stdout
            .lines()
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        assert_eq!(
            pids.len(),
            2,
            "the run sees processes besides init and itself: {}",
            out.describe()
        );
    }

    /// Opens `path` inside the container for reading, through init.
    fn open_read(&mut self, path: &str) -> Result<String, i32> {
        self.open_item(read_item(path)).map(|fd| {
            let mut text = String::new();
            File::from(fd).read_to_string(&mut text).unwrap();
            text
        })
    }

    /// Opens `path` inside the container for writing, created if missing,
    /// through init.
    fn open_write(&mut self, path: &str) -> Result<OwnedFd, i32> {
        self.open_item(OpenItem {
            path: path.into(),
            flags: OpenFlags::write_truncating(),
            mode: 0o644,
            make_parents: true,
        })
    }

    /// Runs the shell script `script` as uid and gid `id`.
    fn run_script_as(&mut self, id: u32, script: &str) -> Output {
        self.run_spec(judge_spec(&["sh", "-c", script]).user(id, id), None)
    }

    /// Copies `text` in to `path` with mode `mode`, through init.
    fn copy_in_text(&mut self, path: &str, mode: u32, text: &str) -> Vec<Result<(), CopyInError>> {
        let mut source = memfd("copied");
        source.write_all(text.as_bytes()).unwrap();
        self.container
            .copy_in(&[CopyInFile {
                path,
                mode,
                source: source.as_fd(),
            }])
            .expect("copy-in request")
    }

    fn open_item(&mut self, item: OpenItem) -> Result<OwnedFd, i32> {
        let mut results = self.container.open(&[item]).expect("open request");
        results.remove(0).map_err(|e| e.errno)
    }
}

fn assert_status(out: &Output, status: Status, what: &str) {
    assert_eq!(out.result.status, status, "{what}: {}", out.describe());
}

/// Asserts the run was stopped by the CPU limit, close to it.
fn assert_time_limit(out: &Output, what: &str) {
    assert_status(out, Status::TimeLimit, what);
    assert!(
        out.cpu() >= CPU_LIMIT,
        "{what}: stopped before the CPU limit: {}",
        out.describe()
    );
    assert!(
        out.cpu() <= CPU_LIMIT + CPU_SLACK,
        "{what}: overshot the CPU limit by more than {CPU_SLACK:?}: {}",
        out.describe()
    );
}

/// Asserts the seccomp filter killed the program at the call, after it
/// printed `calling <call>` and before it printed anything else.
fn assert_disallowed(out: &Output, call: &str) {
    assert_status(out, Status::DisallowedSyscall, call);
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGSYS),
        "{call}: {}",
        out.describe()
    );
    assert_eq!(
        out.stdout,
        format!("calling {call}\n"),
        "{call} went on after the call: {}",
        out.describe()
    );
}

/// Asserts the run printed exactly these lines, in any order.
fn assert_lines(out: &Output, expected: &[&str], what: &str) {
    assert_status(out, Status::Ok, what);
    assert_eq!(
        out.lines(),
        expected.iter().copied().collect::<BTreeSet<_>>(),
        "{what}: {}",
        out.describe()
    );
}

// ---------------------------------------------------------------------------
// Processes, threads, CPU and time

#[test]
fn fork_bomb_ends_at_the_time_limit_and_leaves_nothing() {
    let _serial = serial();
    let mut judge = Judge::new(&["fork_bomb.c"]);
    let out = judge.run(&["/t/fork_bomb"]);
    assert_time_limit(&out, "fork bomb");
    judge.assert_healthy();
}

#[test]
fn thread_bomb_ends_at_the_time_limit_and_leaves_nothing() {
    let _serial = serial();
    let mut judge = Judge::new(&["thread_bomb.c"]);
    let out = judge.run(&["/t/thread_bomb"]);
    assert_time_limit(&out, "thread bomb");
    judge.assert_healthy();
}

#[test]
fn cpu_spin_ends_at_the_time_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["cpu_spin.c"]);
    let out = judge.run(&["/t/cpu_spin"]);
    assert_time_limit(&out, "CPU spin");
    assert!(out.wall() < WALL_LIMIT, "{}", out.describe());
    judge.assert_healthy();
}

#[test]
fn spinning_in_many_threads_ends_at_the_summed_time_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["spin_threads.c"]);
    let out = judge.run(&["/t/spin_threads"]);
    // The CPU time of all 16 threads together stops the run at the limit:
    // not 16 times the limit, and not the wall-clock limit.
    assert_time_limit(&out, "16 spinning threads");
    assert!(out.wall() < WALL_LIMIT, "{}", out.describe());
    judge.assert_healthy();
}

#[test]
fn sleeping_past_the_limit_is_a_wall_time_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["sleep_forever.sh"]);
    let out = judge.run(&["/t/sleep_forever.sh"]);
    assert_status(&out, Status::WallTimeLimit, "sleep");
    assert!(
        out.wall() >= WALL_LIMIT && out.wall() < WALL_LIMIT + Duration::from_secs(1),
        "{}",
        out.describe()
    );
    assert_eq!(out.stdout, "", "{}", out.describe());
    judge.assert_healthy();
}

#[test]
fn catching_sigxcpu_is_still_a_time_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["catch_sigxcpu.c"]);
    let out = judge.run(&["/t/catch_sigxcpu"]);
    assert!(
        out.stdout.contains("SIGXCPU caught"),
        "the handler did not run, so the test proves nothing: {}",
        out.describe()
    );
    assert_time_limit(&out, "SIGXCPU caught");
    judge.assert_healthy();
}

// ---------------------------------------------------------------------------
// Memory

#[test]
fn memory_bomb_in_c_is_a_memory_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["memory_bomb.c"]);
    let out = judge.run(&["/t/memory_bomb"]);
    assert_status(&out, Status::MemoryLimit, "C memory bomb");
    assert!(
        out.result.memory_bytes <= MEMORY_LIMIT,
        "{}",
        out.describe()
    );
    judge.assert_healthy();
}

#[test]
fn memory_bomb_in_python_is_a_memory_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["memory_bomb.py"]);
    let out = judge.run(&["python3", "/t/memory_bomb.py"]);
    assert_status(&out, Status::MemoryLimit, "Python memory bomb");
    assert!(
        out.result.memory_bytes <= MEMORY_LIMIT,
        "{}",
        out.describe()
    );
    judge.assert_healthy();
}

#[test]
fn memory_bomb_in_kernel_buffers_is_a_memory_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["socket_buffer_bomb.c"]);
    let out = judge.run(&["/t/socket_buffer_bomb"]);
    assert_status(&out, Status::MemoryLimit, "socket and pipe buffers");
    judge.assert_healthy();
}

#[test]
fn huge_pages_stay_within_the_memory_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["hugetlb_bomb.c"]);
    let out = judge.run(&["/t/hugetlb_bomb"]);
    if out.result.status != Status::MemoryLimit {
        assert_status(&out, Status::Ok, "huge pages");
        let pages: u64 = out
            .stdout
            .strip_prefix("huge pages ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", out.describe()));
        assert!(
            pages * 2 * MIB <= MEMORY_LIMIT,
            "the run held {pages} huge pages of the host's pool, more than its memory limit: {}",
            out.describe()
        );
    }
    judge.assert_healthy();
}

// ---------------------------------------------------------------------------
// Output, disk, inodes, descriptors

#[test]
fn output_flood_is_an_output_limit_cut_at_the_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["output_flood.c"]);
    let out = judge.run(&["/t/output_flood"]);
    assert_status(&out, Status::OutputLimit, "output flood");
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGXFSZ)
    );
    // RLIMIT_FSIZE sits one byte above the limit, so that a write past it
    // leaves evidence even when SIGXFSZ is ignored.
    assert_eq!(
        out.stdout_len,
        OUTPUT_LIMIT + 1,
        "stdout is cut just past the limit"
    );
    judge.assert_healthy();
}

#[test]
fn output_flood_ignoring_sigxfsz_is_still_cut_at_the_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["output_flood_ignoring_sigxfsz.c"]);
    let out = judge.run(&["/t/output_flood_ignoring_sigxfsz"]);
    assert_eq!(
        out.result.termination,
        Termination::Exited(0),
        "the program saw something else than EPERM and EFBIG (exit codes in its header): {}",
        out.describe()
    );
    // RLIMIT_FSIZE sits one byte above the limit, so that a write past it
    // leaves evidence even when SIGXFSZ is ignored.
    assert_eq!(
        out.stdout_len,
        OUTPUT_LIMIT + 1,
        "stdout is cut just past the limit"
    );
    assert_eq!(
        out.stderr_len,
        OUTPUT_LIMIT + 1,
        "stderr is cut just past the limit"
    );
    judge.assert_healthy();
}

#[test]
fn output_flood_ignoring_sigxfsz_is_an_output_limit() {
    let _serial = serial();
    let mut judge = Judge::new(&["output_flood_ignoring_sigxfsz.c"]);
    let out = judge.run(&["/t/output_flood_ignoring_sigxfsz"]);
    assert_status(&out, Status::OutputLimit, "output flood ignoring SIGXFSZ");
    judge.assert_healthy();
}

/// Floods `dir`, a tmpfs of `size` bytes, with data; checks the flood
/// ended in ENOSPC inside, then that a reset gives the directory back.
fn assert_disk_flood_contained(dir: &str, size: u64) {
    let _serial = serial();
    let mut judge = Judge::new(&["disk_flood.c"]);
    let out = judge.run(&["/t/disk_flood", dir]);
    assert_status(&out, Status::Ok, dir);
    let written: u64 = out
        .stdout
        .strip_prefix("ENOSPC after ")
        .and_then(|rest| rest.strip_suffix(" bytes\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{dir}: no ENOSPC: {}", out.describe()));
    assert!(
        (size - 4 * MIB..=size).contains(&written),
        "{dir}: {written} bytes written before ENOSPC, the tmpfs holds {size}"
    );
    judge.assert_healthy();
    judge.container.reset().expect("reset");
    let check = format!("ls -A {dir}; head -c 1000000 /dev/zero > {dir}/after && echo written");
    let out = judge.run(&["sh", "-c", &check]);
    assert_status(&out, Status::Ok, dir);
    assert_eq!(
        out.stdout,
        "written\n",
        "{dir} after a reset: {}",
        out.describe()
    );
    judge.assert_healthy();
}

#[test]
fn disk_flood_in_the_work_directory_fails_inside_with_enospc() {
    assert_disk_flood_contained("/w", WORKDIR_BYTES);
}

#[test]
fn disk_flood_in_tmp_fails_inside_with_enospc() {
    assert_disk_flood_contained("/tmp", TMP_BYTES);
}

#[test]
fn disk_flood_in_dev_shm_fails_inside_with_enospc() {
    assert_disk_flood_contained("/dev/shm", TMP_BYTES);
}

#[test]
fn inode_flood_fails_inside_with_enospc() {
    let _serial = serial();
    let mut judge = Judge::new(&["inode_flood.c"]);
    for dir in ["/w", "/tmp"] {
        let out = judge.run(&["/t/inode_flood", dir]);
        assert_status(&out, Status::Ok, dir);
        let files: u64 = out
            .stdout
            .strip_prefix("ENOSPC after ")
            .and_then(|rest| rest.strip_suffix(" files\n"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{dir}: no ENOSPC: {}", out.describe()));
        assert!(
            files < TMPFS_INODES && files > TMPFS_INODES - 16,
            "{dir}: {files} files before ENOSPC, the tmpfs has {TMPFS_INODES} inodes"
        );
        judge.assert_healthy();
    }
    judge.container.reset().expect("reset");
    let out = judge.run(&[
        "sh",
        "-c",
        "ls -A /w /tmp; touch /w/a /tmp/a && echo created",
    ]);
    assert_eq!(out.stdout, "/tmp:\n\n/w:\ncreated\n", "{}", out.describe());
    judge.assert_healthy();
}

#[test]
fn deep_directories_are_emptied_by_a_reset() {
    let _serial = serial();
    // Init inherits this process's descriptor limit: build the container
    // with the soft limit most hosts run with.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let usual = rustix::process::Rlimit {
        current: Some(1024),
        maximum: limit.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, usual).unwrap();
    let judge = std::panic::catch_unwind(|| Judge::new(&["deep_directories.c"]));
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    let mut judge = judge.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let out = judge.run(&["/t/deep_directories"]);
    assert_status(&out, Status::Ok, "deep directories");
    let depth: u64 = out
        .stdout
        .strip_prefix("depth ")
        .and_then(|rest| rest.strip_suffix(" stopped by ENOSPC\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the nesting did not end at the inode limit: {}",
                out.describe()
            )
        });
    assert!(depth > TMPFS_INODES - 16, "{}", out.describe());
    judge.assert_healthy();
    judge
        .container
        .reset()
        .expect("reset empties deeply nested directories");
    let out = judge.run(&["sh", "-c", "ls -A /w; mkdir /w/d && echo created"]);
    assert_eq!(out.stdout, "created\n", "{}", out.describe());
    judge.assert_healthy();
}

#[test]
fn descriptor_exhaustion_ends_with_emfile_and_the_container_is_fine() {
    let _serial = serial();
    let mut judge = Judge::new(&["fd_exhaustion.c"]);
    let out = judge.run(&["/t/fd_exhaustion"]);
    assert_status(&out, Status::Ok, "descriptor exhaustion");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.len() == 3 && lines[0].starts_with("EMFILE after "),
        "{}",
        out.describe()
    );
    assert_eq!(
        lines[1..],
        ["raise EPERM", "dup2 EBADF"],
        "{}",
        out.describe()
    );
    judge.assert_healthy();
}

// ---------------------------------------------------------------------------
// System calls the default policy refuses

#[test]
fn ptrace_of_itself_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["ptrace_self.c"]);
    let out = judge.run(&["/t/ptrace_self"]);
    assert_disallowed(&out, "ptrace");
    judge.assert_healthy();
}

#[test]
fn ptrace_of_a_child_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["ptrace_child.c"]);
    let out = judge.run(&["/t/ptrace_child"]);
    assert_disallowed(&out, "ptrace");
    judge.assert_healthy();
}

#[test]
fn ptrace_of_init_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["ptrace_init.c"]);
    let out = judge.run(&["/t/ptrace_init"]);
    assert_disallowed(&out, "ptrace");
    judge.assert_healthy();
}

#[test]
fn mount_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["mount.c"]);
    let out = judge.run(&["/t/mount"]);
    assert_disallowed(&out, "mount");
    judge.assert_healthy();
}

#[test]
fn new_user_mount_and_network_namespaces_are_disallowed_syscalls() {
    let _serial = serial();
    let mut judge = Judge::new(&["new_namespace.c"]);
    for mode in [
        "unshare-user",
        "unshare-mount",
        "unshare-net",
        "clone-user",
        "clone-mount",
        "clone-net",
    ] {
        let out = judge.run(&["/t/new_namespace", mode]);
        assert_disallowed(&out, mode);
        judge.assert_healthy();
    }
}

#[test]
fn bpf_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["bpf.c"]);
    let out = judge.run(&["/t/bpf"]);
    assert_disallowed(&out, "bpf");
    judge.assert_healthy();
}

#[test]
fn io_uring_setup_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["io_uring_setup.c"]);
    let out = judge.run(&["/t/io_uring_setup"]);
    assert_disallowed(&out, "io_uring_setup");
    judge.assert_healthy();
}

#[test]
fn keyctl_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["keyctl.c"]);
    let out = judge.run(&["/t/keyctl"]);
    assert_disallowed(&out, "keyctl");
    judge.assert_healthy();
}

#[test]
fn perf_event_open_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["perf_event_open.c"]);
    let out = judge.run(&["/t/perf_event_open"]);
    assert_disallowed(&out, "perf_event_open");
    judge.assert_healthy();
}

#[test]
fn userfaultfd_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["userfaultfd.c"]);
    let out = judge.run(&["/t/userfaultfd"]);
    assert_disallowed(&out, "userfaultfd");
    judge.assert_healthy();
}

#[test]
fn open_by_handle_at_is_a_disallowed_syscall() {
    let _serial = serial();
    let mut judge = Judge::new(&["open_by_handle_at.c"]);
    let out = judge.run(&["/t/open_by_handle_at"]);
    assert_disallowed(&out, "open_by_handle_at");
    judge.assert_healthy();
}

// ---------------------------------------------------------------------------
// Privileges

#[test]
fn setuid_and_setgid_to_root_fail_with_eperm() {
    let _serial = serial();
    let mut judge = Judge::new(&["setuid_root.c"]);
    let out = judge.run(&["/t/setuid_root"]);
    assert_lines(
        &out,
        &[
            "setuid(0) EPERM",
            "setgid(0) EPERM",
            "setresuid(0,0,0) EPERM",
            "setresgid(0,0,0) EPERM",
            "setreuid(0,0) EPERM",
            "setgroups([0]) EPERM",
            "uids 1000 1000 1000 gids 1000 1000 1000",
        ],
        "becoming root",
    );
    judge.assert_healthy();
}

/// `security.capability` (revision 2) granting `cap_setuid` and
/// `cap_sys_admin`, permitted and effective.
fn file_capabilities() -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 1;
    const CAP_SETUID: u32 = 7;
    const CAP_SYS_ADMIN: u32 = 21;
    let permitted: u32 = (1 << CAP_SETUID) | (1 << CAP_SYS_ADMIN);
    [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        permitted,
        0,
        0,
        0,
    ]
    .iter()
    .flat_map(|word| word.to_le_bytes())
    .collect()
}

/// Runs `probe` on the host as uid 65534 and returns what it printed: the
/// control that shows the probe would detect a privilege it was given.
fn probe_on_the_host(probe: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let output = Command::new(probe)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} on the host: {e}", probe.display()));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn setuid_root_and_file_capability_executables_grant_nothing() {
    let _serial = serial();
    let mut judge = Judge::with(&["setuid_probe.c"], |programs| {
        let probe = programs.path("setuid_probe");
        let setuid = programs.path("setuid_root_probe");
        std::fs::copy(&probe, &setuid).unwrap();
        std::os::unix::fs::chown(&setuid, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let capable = programs.path("capable_probe");
        std::fs::copy(&probe, &capable).unwrap();
        rustix::fs::setxattr(
            &capable,
            "security.capability",
            &file_capabilities(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot give {} file capabilities ({e}): the temporary directory's file \
                 system must support security.capability",
                capable.display()
            )
        });
    });
    // The controls: on the host, the same files do grant what they say.
    let host = probe_on_the_host(&judge.programs.path("setuid_root_probe"));
    assert!(
        host.starts_with("uids 65534 0 0\n") && host.contains("setuid(0) succeeded"),
        "the setuid-root probe gives no root even on the host ({}), so this test proves \
         nothing: is the temporary directory on a nosuid mount?\n{host}",
        std::env::temp_dir().display()
    );
    let host = probe_on_the_host(&judge.programs.path("capable_probe"));
    assert!(
        host.contains("setuid(0) succeeded"),
        "the file capabilities give nothing even on the host, so this test proves nothing:\n{host}"
    );
    for probe in ["/t/setuid_root_probe", "/t/capable_probe"] {
        let out = judge.run(&[probe]);
        assert_lines(
            &out,
            &[
                "uids 1000 1000 1000",
                "CapPrm:\t0000000000000000",
                "CapEff:\t0000000000000000",
                "setuid(0) EPERM",
            ],
            probe,
        );
        judge.assert_healthy();
    }
}

/// The mount of the container's `/proc/self/mountinfo` whose mount point
/// is the longest prefix of `path`: (mount point, per-mount options).
fn mount_of<'a>(mountinfo: &'a str, path: &str) -> Option<(&'a str, &'a str)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() > 5).then(|| (fields[4], fields[5]))
        })
        .filter(|(point, _)| {
            *point == "/"
                || path == *point
                || path
                    .strip_prefix(point)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(point, _)| point.len())
}

#[test]
fn host_setuid_binaries_run_without_privileges() {
    let _serial = serial();
    use std::os::unix::fs::MetadataExt;
    let binaries: Vec<&str> = ["/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount"]
        .into_iter()
        .filter(|path| {
            std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0)
        })
        .collect();
    assert!(
        !binaries.is_empty(),
        "none of /usr/bin/su, /usr/bin/passwd, /usr/bin/mount is a setuid-root binary on this \
         host: install one (util-linux's su or mount, or passwd) for this test to mean anything"
    );
    // The control: on the host, run by uid 65534, each exec is privileged
    // (AT_SECURE), so the loader ignores LD_SHOW_AUXV and prints nothing.
    for binary in &binaries {
        use std::os::unix::process::CommandExt;
        let output = Command::new(binary)
            .arg("--version")
            .env("LD_SHOW_AUXV", "1")
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {binary} on the host: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.contains("AT_SECURE"),
            "{binary} does not raise privileges even on the host (is {} mounted nosuid, or \
             this glibc's loader different?), so this test proves nothing:\n{stdout}",
            Path::new(binary).parent().unwrap().display()
        );
    }
    let mut judge = Judge::new(&["setuid_binaries.sh"]);
    let mut argv = vec!["/t/setuid_binaries.sh"];
    argv.extend(&binaries);
    let out = judge.run(&argv);
    assert_status(&out, Status::Ok, "setuid binaries");
    assert!(!out.stdout.contains("uid=0"), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2 * binaries.len() + 2, "{}", out.describe());
    assert_eq!(lines[0], "before 1000 1000", "{}", out.describe());
    assert_eq!(
        lines[lines.len() - 1],
        "after 1000 1000",
        "{}",
        out.describe()
    );
    for (binary, pair) in binaries.iter().zip(lines[1..].chunks(2)) {
        assert_eq!(
            pair[0],
            format!("{binary} auxv: AT_EUID: 1000 AT_SECURE: 0 "),
            "{binary} ran privileged: {}",
            out.describe()
        );
        let prefix = format!("{binary} status ");
        let status = pair[1]
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("no status for {binary}: {}", out.describe()));
        assert_ne!(status, "0", "{binary} succeeded: {}", out.describe());
    }
    // The mounts they come from honour no setuid bit.
    let out = judge.run(&["cat", "/proc/self/mountinfo"]);
    for binary in &binaries {
        let (point, options) = mount_of(&out.stdout, binary)
            .unwrap_or_else(|| panic!("no mount holds {binary}:\n{}", out.stdout));
        assert!(
            options.split(',').any(|o| o == "nosuid"),
            "{point}, which holds {binary}, is not nosuid: {options}"
        );
    }
    judge.assert_healthy();
}

#[test]
fn real_time_and_raised_priorities_are_refused() {
    let _serial = serial();
    let mut judge = Judge::new(&["realtime_priority.c"]);
    let out = judge.run(&["/t/realtime_priority"]);
    assert_lines(
        &out,
        &[
            "SCHED_FIFO EPERM",
            "SCHED_RR EPERM",
            "SCHED_DEADLINE EPERM",
            "nice -20 EACCES",
            "ioprio RT EPERM",
        ],
        &format!(
            "priorities (this process's RLIMIT_RTPRIO {:?} and RLIMIT_NICE {:?}, which init \
             passes on)",
            rustix::process::getrlimit(rustix::process::Resource::Rtprio),
            rustix::process::getrlimit(rustix::process::Resource::Nice)
        ),
    );
    judge.assert_healthy();
}

#[test]
fn capabilities_cannot_be_regained() {
    let _serial = serial();
    let mut judge = Judge::new(&["capset.c"]);
    let out = judge.run(&["/t/capset"]);
    assert_lines(
        &out,
        &[
            "capset(all) EPERM",
            "ambient raise CAP_SYS_ADMIN EPERM",
            "securebits 0 EPERM",
            "no_new_privs 0 EINVAL",
            "CapInh:\t0000000000000000",
            "CapPrm:\t0000000000000000",
            "CapEff:\t0000000000000000",
            "CapBnd:\t0000000000000000",
            "CapAmb:\t0000000000000000",
            "NoNewPrivs:\t1",
        ],
        "capabilities",
    );
    judge.assert_healthy();
}

#[test]
fn a_crash_dumps_no_core() {
    let _serial = serial();
    // Whatever kernel.core_pattern is: at a core limit of exactly 1 the
    // kernel starts no pipe helper (which would run as root on the host for
    // every crash), and writes no core file.
    let mut judge = Judge::new(&["crash_dump.c"]);
    let out = judge.run(&["/t/crash_dump"]);
    assert_status(&out, Status::Signalled, "crash");
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGSEGV),
        "{}",
        out.describe()
    );
    assert_eq!(
        out.stdout,
        "core limit 1 1\n".repeat(3),
        "the core limit is 1 and stays 1: {}",
        out.describe()
    );
    let out = judge.run(&["ls", "-A", "/w"]);
    assert_eq!(
        out.stdout,
        "",
        "a core file was written: {}",
        out.describe()
    );
    judge.assert_healthy();
}

// ---------------------------------------------------------------------------
// Host secrets, init, the network, the file system

#[test]
fn host_secrets_are_absent_or_refused() {
    let _serial = serial();
    let mut judge = Judge::new(&["host_secrets.c"]);
    let out = judge.run(&["/t/host_secrets"]);
    assert_status(&out, Status::Ok, "host secrets");
    let lines = out.lines();
    for expected in [
        "/etc/shadow ENOENT",
        "/etc/passwd ENOENT",
        "/etc/hostname ENOENT",
        "/root ENOENT",
        "/home ENOENT",
        "/run ENOENT",
        "/var ENOENT",
        "/proc/1/mem EACCES",
        "/proc/1/maps EACCES",
        "/proc/1/fd EACCES",
        "/proc/1/root EACCES",
        "/proc/1/exe EACCES",
    ] {
        assert!(
            lines.contains(expected),
            "missing {expected:?}: {}",
            out.describe()
        );
    }
    assert!(
        lines.contains("/proc/1/environ EACCES") || lines.contains("/proc/1/environ empty"),
        "init's environment is readable: {}",
        out.describe()
    );
    assert_eq!(lines.len(), 13, "{}", out.describe());
    judge.assert_healthy();
}

#[test]
fn init_socket_cannot_be_stolen() {
    let _serial = serial();
    let mut judge = Judge::new(&["steal_init_socket.c"]);
    let out = judge.run(&["/t/steal_init_socket"]);
    assert_lines(
        &out,
        &["pidfd_getfd EPERM", "open /proc/1/fd/3 EACCES"],
        "stealing init's socket",
    );
    judge.assert_healthy();
}

/// A program traced by its own child ends its run when it exits, although
/// its exit goes to the tracer first, which never collects it; so does one
/// whose child is traced that way by its grandchild. Init kills the
/// tracers before it waits for what they trace, with a PID namespace and
/// without one (where a round of its sweep reaches only init's children,
/// and the grandchild becomes one only as the child dies). Only a policy
/// that allows `ptrace` lets this happen; these runs have no filter.
#[test]
fn runs_whose_tracers_never_collect_what_they_trace_end_when_the_program_exits() {
    let _serial = serial();
    let all = Namespaces::default();
    for pid in [true, false] {
        let builder = ContainerBuilder::new().namespaces(Namespaces { pid, ..all });
        let mut judge = Judge::build(&["traced_exit.c"], |_| {}, builder);
        for (argv, says) in [
            (&["/t/traced_exit"][..], "traced by its child\n"),
            (
                &["/t/traced_exit", "child"][..],
                "child traced by its child\n",
            ),
        ] {
            // Should init wait for good, the host gives up on the exec's
            // answer (a `NoReply` error) some seconds after the wall limit.
            let out = judge.run_spec(judge_spec(argv).seccomp(Vec::new()), None);
            let what = format!("{argv:?}, PID namespace {pid}");
            assert_status(&out, Status::Ok, &what);
            assert_eq!(out.stdout, says, "{what}: {}", out.describe());
            judge.assert_healthy();
        }
    }
}

#[test]
fn signals_to_init_fail_and_the_container_stays_healthy() {
    let _serial = serial();
    let mut judge = Judge::new(&["kill_init.c"]);
    let out = judge.run(&["/t/kill_init"]);
    let mut expected: Vec<String> = [
        "KILL", "TERM", "STOP", "INT", "HUP", "QUIT", "SEGV", "USR1", "PIPE", "ALRM", "CHLD",
        "CONT", "TSTP", "SYS",
    ]
    .iter()
    .map(|name| format!("kill(1, SIG{name}) EPERM"))
    .collect();
    expected.extend(
        [
            "kill(-1, SIGKILL) ESRCH",
            "tgkill(1, 1, SIGKILL) EPERM",
            "sigqueue(1, SIGTERM) EPERM",
            "pidfd_send_signal(SIGKILL) EPERM",
            "init state S",
        ]
        .map(String::from),
    );
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&out, &expected, "signals to init");
    judge.assert_healthy();
}

#[test]
fn network_is_unreachable_and_dns_fails() {
    let _serial = serial();
    use std::os::linux::net::SocketAddrExt;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let name = format!("hutch-hostile-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let unix = std::os::unix::net::UnixListener::bind_addr(&address).unwrap();
    let mut judge = Judge::new(&["network.c"]);
    let out = judge.run(&["/t/network", &port, &name]);
    assert_status(&out, Status::Ok, "network");
    let lines = out.lines();
    for connect in [
        "tcp 127.0.0.1 host port",
        "tcp 127.0.0.1:22",
        "tcp 127.0.0.1:80",
        "tcp 1.1.1.1:443",
        "tcp 10.0.2.2:22",
        "tcp [::1] host port",
    ] {
        assert!(
            ["ENETUNREACH", "ECONNREFUSED", "EADDRNOTAVAIL"]
                .iter()
                .any(|errno| lines.contains(format!("{connect} {errno}").as_str())),
            "{connect} did not fail at once: {}",
            out.describe()
        );
    }
    for expected in [
        "udp 8.8.8.8:53 ENETUNREACH",
        "raw socket EPERM",
        "packet socket EAFNOSUPPORT",
        "netlink socket EAFNOSUPPORT",
        "vsock socket EAFNOSUPPORT",
        "lo is down",
        "lo up EPERM",
        "abstract unix ECONNREFUSED",
    ] {
        assert!(
            lines.contains(expected),
            "missing {expected:?}: {}",
            out.describe()
        );
    }
    for host in ["example.com", "localhost"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("dns {host} dns failed"))),
            "{host} resolved: {}",
            out.describe()
        );
    }
    assert_eq!(lines.len(), 16, "{}", out.describe());
    // Nothing reached the host's listeners.
    tcp.set_nonblocking(true).unwrap();
    unix.set_nonblocking(true).unwrap();
    assert!(
        tcp.accept()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
    );
    assert!(
        unix.accept()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
    );
    judge.assert_healthy();
}

#[test]
fn writes_to_the_read_only_root_fail() {
    let _serial = serial();
    let mut judge = Judge::new(&["read_only_root.c"]);
    let out = judge.run(&["/t/read_only_root"]);
    assert_status(&out, Status::Ok, "read-only root");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6 * 2 + 4 + 1, "{}", out.describe());
    for line in &lines {
        let ok = if line.starts_with("write ") {
            line.ends_with(" EROFS") || line.ends_with(" EACCES")
        } else {
            line.ends_with(" EROFS")
        };
        assert!(ok, "{line}: {}", out.describe());
    }
    for dir in ["/", "/usr/", "/etc/", "/bin/", "/lib/", "/dev/"] {
        for name in ["hutch-hostile-evil", "hutch-hostile-evil-dir"] {
            let path = format!("{dir}{name}");
            assert!(!Path::new(&path).exists(), "{path} exists on the host");
        }
    }
    judge.assert_healthy();
}

/// The mount points the default container has, with `/t`.
fn expected_mount_points() -> BTreeSet<String> {
    let mut points: BTreeSet<String> = [
        "/",
        "/proc",
        "/w",
        "/tmp",
        "/dev/shm",
        "/t",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
    ]
    .map(String::from)
    .into();
    for bind in [
        "/usr",
        "/lib",
        "/lib64",
        "/bin",
        "/sbin",
        "/etc/alternatives",
        "/etc/ld.so.cache",
        "/etc/fpc.cfg",
        "/etc/mono",
        "/var/lib/ghc",
    ] {
        if Path::new(bind).exists() {
            points.insert(bind.into());
        }
    }
    // OpenJDK's configuration directories.
    for entry in std::fs::read_dir("/etc").unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap_or_default();
        if (name == "java" || name.starts_with("java-"))
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            points.insert(format!("/etc/{name}"));
        }
    }
    points
}

#[test]
fn proc_and_sys_leak_nothing_of_the_host() {
    let _serial = serial();
    let mut judge = Judge::new(&["proc_leaks.c"]);
    let out = judge.run(&["/t/proc_leaks"]);
    assert_status(&out, Status::Ok, "/proc and /sys");
    let (report, mountinfo) = out
        .stdout
        .split_once("mountinfo:\n")
        .unwrap_or_else(|| panic!("no mount table: {}", out.describe()));
    let report: BTreeSet<&str> = report.lines().collect();
    assert!(
        report.contains("/proc/sched_debug ENOENT") || report.contains("/proc/sched_debug empty"),
        "{}",
        out.describe()
    );
    for expected in [
        "/proc/timer_list empty",
        "/proc/keys empty",
        "/proc/kmsg EACCES",
        "/sys ENOENT",
        "nodename hutch",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?}: {}",
            out.describe()
        );
    }
    assert!(
        report.contains("/proc/kallsyms addresses hidden"),
        "kernel addresses are visible in /proc/kallsyms (on this host, kernel.kptr_restrict \
         and kernel.perf_event_paranoid let every user see them; /proc/kallsyms is not masked): {}",
        out.describe()
    );
    // The mount table: only the container's mount points, every one
    // nosuid, and no host path but the sources of the container's binds.
    let expected = expected_mount_points();
    let mut allowed_roots: BTreeSet<String> = ["/".to_owned()].into();
    for source in expected.iter().filter(|p| *p != "/") {
        if let Ok(canonical) = std::fs::canonicalize(source) {
            allowed_roots.insert(canonical.to_string_lossy().into_owned());
        }
    }
    let programs = std::fs::canonicalize(&judge.programs.dir).unwrap();
    allowed_roots.insert(programs.to_string_lossy().into_owned());
    for device in ["null", "zero", "full", "random", "urandom"] {
        // Device binds show their path inside the host's devtmpfs.
        allowed_roots.insert(format!("/{device}"));
    }
    let mut seen = BTreeSet::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() > 6, "{line}");
        let (root, point, options) = (fields[3], fields[4], fields[5]);
        assert!(
            options.split(',').any(|o| o == "nosuid"),
            "{point} is not nosuid: {line}"
        );
        assert!(
            allowed_roots.contains(root),
            "{point} shows host path {root}: {line}"
        );
        // Masked /proc entries are mounts too.
        if !point.starts_with("/proc/") {
            assert!(expected.contains(point), "unexpected mount {point}: {line}");
        }
        seen.insert(point.to_owned());
    }
    for point in &expected {
        assert!(seen.contains(point), "{point} is not mounted:\n{mountinfo}");
    }
    judge.assert_healthy();
}

#[test]
fn cgroup_paths_reveal_nothing_of_the_host() {
    let _serial = serial();
    let mut judge = Judge::new(&[]);
    let out = judge.run(&["cat", "/proc/self/cgroup"]);
    assert_status(&out, Status::Ok, "/proc/self/cgroup");
    for line in out.stdout.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        assert_eq!(path, "/", "{}", out.describe());
    }
    judge.assert_healthy();
}

#[test]
fn symbolic_links_planted_for_the_host_are_never_followed() {
    let _serial = serial();
    let mut judge = Judge::new(&["plant_symlinks.sh"]);
    let out = judge.run(&["/t/plant_symlinks.sh"]);
    assert_status(&out, Status::Ok, "planting links");
    assert_eq!(out.stdout, "planted\n", "{}", out.describe());
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for (path, errno) in [
        // A symbolic link as the last component.
        ("/w/evil", libc::ELOOP),
        // Links on the way, to the container's root, climbing, through
        // another link.
        ("/w/dir/etc/hostname", libc::ELOOP),
        ("/w/dir/etc/passwd", libc::ELOOP),
        ("/w/dir/etc/shadow", libc::ELOOP),
        ("/w/up/etc/hostname", libc::ELOOP),
        ("/w/sub/etc/passwd", libc::ELOOP),
        // Magic links on the way.
        ("/w/initroot/etc/passwd", libc::ELOOP),
        ("/w/selfroot/etc/passwd", libc::ELOOP),
        ("/w/dir/proc/1/root/etc/passwd", libc::ELOOP),
        ("/w/dir/proc/self/cwd/evil", libc::ELOOP),
    ] {
        match judge.open_read(path) {
            Ok(text) => {
                assert_ne!(text, host_passwd, "{path} is the host's /etc/passwd");
                assert_ne!(text, host_hostname, "{path} is the host's /etc/hostname");
                panic!("{path} opened: {text:?}");
            }
            Err(got) => assert_eq!(
                got,
                errno,
                "{path}: {}",
                std::io::Error::from_raw_os_error(got)
            ),
        }
    }
    // Writing through them is refused as well, and touches nothing.
    for (path, errno) in [
        ("/w/evil", libc::ELOOP),
        ("/w/dir/etc/passwd", libc::ELOOP),
        ("/w/sub/etc/hostname", libc::ELOOP),
        ("/w/initroot/tmp/x", libc::ELOOP),
    ] {
        match judge.open_write(path) {
            Ok(_) => panic!("{path} opened for writing"),
            Err(got) => assert_eq!(
                got,
                errno,
                "{path}: {}",
                std::io::Error::from_raw_os_error(got)
            ),
        }
    }
    // A path that climbs with `..` is refused before it reaches init.
    let refused = judge
        .container
        .open(&[read_item("/w/dir/../../../etc/passwd")]);
    assert!(
        matches!(&refused, Ok(items) if matches!(&items[..], [Err(error)] if error.errno == 0)),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
    judge.assert_healthy();
    // A reset removes the links without following them.
    judge.container.reset().expect("reset");
    let out = judge.run(&["ls", "-A", "/w"]);
    assert_eq!(out.stdout, "", "{}", out.describe());
    judge.assert_healthy();
}

/// One container runs programs as two users with no reset between: a link
/// one of them plants leads none of the host's file operations into the
/// other's private directory, which the link's maker cannot enter itself.
#[test]
fn a_link_one_program_user_plants_leads_the_host_into_no_file_of_another() {
    let _serial = serial();
    let mut judge = Judge::new(&[]);
    let out = judge.run_script_as(
        2000,
        "umask 077 && mkdir /tmp/theirs && echo secret > /tmp/theirs/key",
    );
    assert_status(&out, Status::Ok, "the other user's private file");
    let out = judge.run(&["sh", "-c", "ln -s /tmp/theirs /w/peek && ! cat /w/peek/key"]);
    assert_status(&out, Status::Ok, "a link to it the planter cannot follow");

    assert_eq!(judge.open_read("/w/peek/key"), Err(libc::ELOOP), "read");
    assert_eq!(
        judge.open_write("/w/peek/key").map(drop),
        Err(libc::ELOOP),
        "write"
    );
    assert_eq!(
        judge.open_write("/w/peek/new/file").map(drop),
        Err(libc::ELOOP),
        "create with parents"
    );
    let copied = judge.copy_in_text("/w/peek/key", 0o644, "host\n");
    match &copied[..] {
        [Err(CopyInError::Create(error))] => {
            assert_eq!(error.errno, libc::ELOOP, "copy-in: {error:?}");
            assert!(error.message.contains("symbolic link"), "{}", error.message);
        }
        other => panic!("copy-in: {other:?}"),
    }
    let linked = judge
        .container
        .symlink(&[SymlinkItem {
            link: "/w/peek/link".into(),
            target: "/etc/passwd".into(),
        }])
        .expect("symlink request");
    assert!(
        matches!(&linked[..], [Err(error)] if error.errno == libc::ELOOP),
        "symlink: {linked:?}"
    );
    let deleted = judge.container.delete("/w/peek/key");
    assert!(
        matches!(&deleted, Err(ContainerError::Failed { errno, message, .. })
            if *errno == libc::ELOOP && message.contains("no file operation follows")),
        "delete: {deleted:?}"
    );

    // The other user's directory is as it was.
    let out = judge.run_script_as(2000, "ls -A /tmp/theirs && cat /tmp/theirs/key");
    assert_status(&out, Status::Ok, "the other user's directory");
    assert_eq!(out.stdout, "key\nsecret\n", "{}", out.describe());
    judge.assert_healthy();
}

/// A copy-in onto a name that is a hard link a program made replaces the
/// name: the linked file, another user's, is neither overwritten nor handed
/// over to the programs' user.
#[test]
fn a_copy_in_replaces_a_hard_link_rather_than_taking_over_its_file() {
    let _serial = serial();
    let mut judge = Judge::new(&[]);
    // Writable by all, so that the kernel lets another user link it
    // (fs.protected_hardlinks).
    let out = judge.run_script_as(2000, "echo theirs > /tmp/shared && chmod 666 /tmp/shared");
    assert_status(&out, Status::Ok, "the other user's file");
    let out = judge.run(&["ln", "/tmp/shared", "/tmp/result"]);
    assert_status(&out, Status::Ok, "a hard link to it");
    let copied = judge.copy_in_text("/tmp/result", 0o600, "host\n");
    assert!(matches!(&copied[..], [Ok(())]), "{copied:?}");
    let out = judge.run(&[
        "sh",
        "-c",
        "stat -c '%u %a %h' /tmp/shared /tmp/result && cat /tmp/shared /tmp/result",
    ]);
    assert_status(&out, Status::Ok, "both files");
    assert_eq!(
        out.stdout,
        "2000 666 1\n1000 600 1\ntheirs\nhost\n",
        "{}",
        out.describe()
    );
    // A name ending in `/` is a directory's.
    let deleted = judge.container.delete("/tmp/result/");
    assert!(
        matches!(&deleted, Err(ContainerError::Failed { errno, .. }) if *errno == libc::ENOTDIR),
        "{deleted:?}"
    );
    judge.assert_healthy();
}

const PRLIMIT_LINES: [&str; 4] = [
    "prlimit(1, RLIMIT_NOFILE, 4) EPERM",
    "prlimit(1, RLIMIT_CPU, 1) EPERM",
    "prlimit(1, RLIMIT_AS, 1 MiB) EPERM",
    "setpriority(1, 19) EPERM",
];

#[test]
fn init_limits_cannot_be_changed_by_a_program() {
    let _serial = serial();
    let mut judge = Judge::new(&["prlimit_init.c"]);
    let out = judge.run(&["/t/prlimit_init"]);
    assert_lines(&out, &PRLIMIT_LINES, "init's limits");
    judge.assert_healthy();
}

/// Set in the environment of this test binary when it runs a helper test
/// as uid 65534.
const ROOTLESS_VAR: &str = "HUTCH_HOSTILE_ROOTLESS";

/// Runs the ignored test `name` of this binary as uid and gid 65534 and
/// checks that it passed.
fn run_as_nobody(name: &str) {
    common::run_ignored_test(common::this_binary_as_nobody(), name, ROOTLESS_VAR);
}

#[test]
fn init_limits_cannot_be_changed_by_a_program_in_a_rootless_container() {
    let _serial = serial();
    require_root();
    run_as_nobody("rootless_init_limits");
}

#[test]
#[ignore = "helper: run as uid 65534 by \
            init_limits_cannot_be_changed_by_a_program_in_a_rootless_container"]
fn rootless_init_limits() {
    if std::env::var_os(ROOTLESS_VAR).is_none() {
        // Started by hand: nothing to do; its parent test runs it.
        return;
    }
    assert!(
        !rustix::process::geteuid().is_root(),
        "run as uid 65534 by its parent test"
    );
    // Unprivileged, no cgroup can be made: the judge's memory and process
    // limits are not enforced, the rest is the same.
    let mut judge = Judge::build(
        &["prlimit_init.c"],
        |_| {},
        ContainerBuilder::new().allow_rusage(),
    );
    let out = judge.run(&["/t/prlimit_init"]);
    assert_lines(&out, &PRLIMIT_LINES, "init's limits");
    judge.assert_healthy();
}

// ---------------------------------------------------------------------------
// Terminals and descriptors

/// A pseudo-terminal: (master, slave).
fn pseudo_terminal() -> (OwnedFd, OwnedFd) {
    use std::os::unix::fs::OpenOptionsExt;
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")
        .expect("/dev/ptmx");
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which points
    // at a live local.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    assert_eq!(
        ret,
        0,
        "unlock the pseudo-terminal: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new
    // descriptor, or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    assert!(
        slave >= 0,
        "open the pseudo-terminal's slave: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `slave` is a descriptor the kernel just opened for us,
    // owned by nothing else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    (master.into(), slave)
}

/// Bytes waiting in a terminal's input queue.
fn pending_input(terminal: &OwnedFd) -> libc::c_int {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at
    // a live local.
    let ret = unsafe { libc::ioctl(terminal.as_raw_fd(), libc::FIONREAD, &mut count) };
    assert_eq!(ret, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    count
}

/// The session and controlling terminal of `pid` (fields 6 and 7 of its
/// stat).
fn session_and_tty(pid: u32) -> (i64, i64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return (0, 0);
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    (
        fields.get(3).and_then(|f| f.parse().ok()).unwrap_or(0),
        fields.get(4).and_then(|f| f.parse().ok()).unwrap_or(0),
    )
}

#[test]
fn tiocsti_into_a_terminal_of_the_host_fails() {
    let _serial = serial();
    require_root();
    // The terminal a careless host might pass as stdin: the controlling
    // terminal of a session on the host, where a shell would read what is
    // injected.
    let (master, slave) = pseudo_terminal();
    let mut owner = Command::new("setsid")
        .args(["--ctty", "sleep", "60"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("setsid (util-linux) starts a session that owns the terminal");
    let start = Instant::now();
    while session_and_tty(owner.id()) == (0, 0) || session_and_tty(owner.id()).1 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "setsid --ctty did not make the terminal its controlling terminal"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut judge = Judge::new(&["tiocsti.c"]);
    let out = judge.run_spec(judge_spec(&["/t/tiocsti"]), Some(slave.as_fd()));
    let injected = pending_input(&slave);
    owner.kill().unwrap();
    owner.wait().unwrap();
    let lines = out.lines();
    assert_status(&out, Status::Ok, "TIOCSTI");
    assert_eq!(
        injected,
        0,
        "input was injected into the terminal: {}",
        out.describe()
    );
    for expected in [
        "session leader yes",
        "process group leader yes",
        "controlling terminal none",
        "TIOCSCTTY EPERM",
        "TIOCSCTTY steal EPERM",
        "open /dev/tty ENOENT",
    ] {
        assert!(
            lines.contains(expected),
            "missing {expected:?}: {}",
            out.describe()
        );
    }
    for attempt in ["TIOCSTI", "TIOCSTI again"] {
        assert!(
            lines.contains(format!("{attempt} EPERM").as_str())
                || lines.contains(format!("{attempt} EIO").as_str()),
            "{attempt} did not fail: {}",
            out.describe()
        );
    }
    assert_eq!(lines.len(), 8, "{}", out.describe());
    judge.assert_healthy();
    drop(master);
}

const INPUT: &[u8] = b"original input\n";

/// Runs `reopen_stdin` with `stdin` and checks that the input is intact.
fn assert_input_not_rewritten(what: &str, stdin: &File) {
    let mut judge = Judge::new(&["reopen_stdin.c"]);
    let out = judge.run_spec(judge_spec(&["/t/reopen_stdin"]), Some(stdin.as_fd()));
    let (text, _) = read_back(stdin);
    assert_eq!(
        text.as_bytes(),
        INPUT,
        "the host's {what} was rewritten: {}",
        out.describe()
    );
    assert_lines(
        &out,
        &[
            "reopen EACCES",
            "write skipped",
            "stdin says original input",
        ],
        what,
    );
    judge.assert_healthy();
}

#[test]
fn the_hosts_input_file_cannot_be_rewritten_through_proc_self_fd() {
    let _serial = serial();
    // A test's input as a file of the host's (mode 0644), passed read-only.
    let dir = Programs::prepare(&[]);
    let path = dir.path("input");
    std::fs::write(&path, INPUT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = File::open(&path).unwrap();
    assert_input_not_rewritten("input file", &file);
}

#[test]
fn a_sealed_input_cannot_be_rewritten_through_proc_self_fd() {
    let _serial = serial();
    // A test's input held in memory. A plain memfd (mode 0777) would be
    // open to the program's reopen; a sealed input is not, to anyone.
    let input = hutch_host::SealedInput::from_bytes(INPUT).unwrap();
    let reader = File::from(input.reader().unwrap());
    assert_input_not_rewritten("sealed input", &reader);
    let mut now = Vec::new();
    File::from(input.reader().unwrap())
        .read_to_end(&mut now)
        .unwrap();
    assert_eq!(now, INPUT);
}

#[test]
fn a_program_cannot_rewrite_its_own_executable() {
    let _serial = serial();
    // The compiled program as a host memfd, executed through exec_fd.
    let programs = Programs::prepare(&["rewrite_own_binary.c"]);
    let binary = std::fs::read(programs.path("rewrite_own_binary")).unwrap();
    let mut memory = memfd("program");
    memory.write_all(&binary).unwrap();
    let mut judge = Judge::new(&["rewrite_own_binary.c"]);
    // From the read-only bind.
    let out = judge.run(&["/t/rewrite_own_binary"]);
    assert_status(&out, Status::Ok, "from /t");
    assert!(
        ["reopen EROFS\n", "reopen EACCES\n", "reopen ETXTBSY\n"].contains(&out.stdout.as_str()),
        "from /t: {}",
        out.describe()
    );
    assert_eq!(
        std::fs::read(judge.programs.path("rewrite_own_binary")).unwrap(),
        binary
    );
    judge.assert_healthy();
    // From the host's memfd.
    let spec = judge_spec(&["rewrite_own_binary"]).exec_fd(memory.as_fd());
    let out = judge.run_spec(spec, None);
    assert_status(&out, Status::Ok, "from a memfd");
    let mut now = Vec::new();
    memory.rewind().unwrap();
    memory.read_to_end(&mut now).unwrap();
    assert!(
        now == binary,
        "the host's memfd was rewritten: {}",
        out.describe()
    );
    assert!(
        ["reopen ETXTBSY\n", "reopen EACCES\n"].contains(&out.stdout.as_str()),
        "from a memfd: {}",
        out.describe()
    );
    judge.assert_healthy();
    drop(programs);
}

#[test]
fn no_descriptor_is_inherited_by_mistake() {
    let _serial = serial();
    // A host descriptor without close-on-exec, as a careless host might
    // leave one.
    let leaky = File::open("/etc/passwd").unwrap();
    rustix::io::fcntl_setfd(&leaky, rustix::io::FdFlags::empty()).unwrap();
    let mut judge = Judge::new(&["inherited_fds.c"]);
    let out = judge.run(&["/t/inherited_fds"]);
    assert_status(&out, Status::Ok, "inherited descriptors");
    assert_eq!(out.stdout, "found 0\n", "{}", out.describe());
    judge.assert_healthy();
    drop(leaky);
}

// ---------------------------------------------------------------------------
// What a run leaves for the next

/// Checks from the next run that the grandchild whose pid is in
/// `/w/grandchild.pid` is gone, and that nothing else is left either.
fn assert_grandchild_gone(judge: &mut Judge, what: &str) {
    let out = judge.run(&["/t/detached_grandchild", "check"]);
    assert_status(&out, Status::Ok, "check");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("grandchild ") && lines[0].ends_with(" gone"),
        "{what} outlived the run: {}",
        out.describe()
    );
    judge.assert_healthy();
}

#[test]
fn detached_grandchild_is_killed_before_the_reply() {
    let _serial = serial();
    let mut judge = Judge::new(&["detached_grandchild.c"]);
    let out = judge.run(&["/t/detached_grandchild"]);
    assert_status(&out, Status::Ok, "detaching");
    assert_eq!(out.stdout, "detached\n", "{}", out.describe());
    judge.assert_healthy();
    assert_grandchild_gone(&mut judge, "the grandchild");
}

#[test]
fn respawning_grandchild_is_killed_before_the_reply() {
    let _serial = serial();
    let mut judge = Judge::new(&["detached_grandchild.c"]);
    let out = judge.run(&["/t/detached_grandchild", "respawn"]);
    assert_status(&out, Status::Ok, "detaching");
    assert_eq!(out.stdout, "detached\n", "{}", out.describe());
    judge.assert_healthy();
    assert_grandchild_gone(&mut judge, "a respawned grandchild");
}

#[test]
fn zombies_are_reaped_before_the_reply() {
    let _serial = serial();
    let mut judge = Judge::new(&["zombies.c"]);
    let out = judge.run(&["/t/zombies"]);
    assert_status(&out, Status::Ok, "zombies");
    assert_eq!(out.stdout, "left zombies\n", "{}", out.describe());
    judge.assert_healthy();
    judge.assert_no_process_left();
    judge.assert_healthy();
}

#[test]
fn inotify_instances_a_program_holds_are_not_host_roots() {
    let _serial = serial();
    let mut judge = Judge::new(&["inotify_hog.c"]);
    // Room for more descriptors than the per-user quota, so that it is the
    // quota that refuses the program.
    let quota = host_sysctl("fs/inotify/max_user_instances");
    let files = quota + 64;
    // The default policy answers inotify_init with ENOSYS: this is for
    // hosts that run programs without it.
    let spec = judge_spec(&["/t/inotify_hog"]).seccomp(Vec::new()).rlimit(
        hutch_host::protocol::Resource::Nofile,
        files,
        files,
    );
    // The program holds every instance it could make.
    let (line, host) = while_holding(&mut judge.container, spec, || {
        rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::CLOEXEC)
    });
    let made: u64 = line
        .strip_prefix("refused after ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the program said {line:?}"));
    assert!(
        made > 0 && made + 16 < files,
        "the program's descriptors, not the quota, ended it: {line}"
    );
    assert!(
        host.is_ok(),
        "root on the host cannot make an inotify instance while the program \
         holds {made}: {host:?}"
    );
    drop(host);
    judge.assert_healthy();
}

#[test]
fn pipe_pages_one_container_holds_leave_another_its_full_pipes() {
    let _serial = serial();
    let mut judge = Judge::new(&["pipe_hog.c"]);
    let soft = host_sysctl("fs/pipe-user-pages-soft");
    assert!(
        soft > 0,
        "fs.pipe-user-pages-soft is 0 here: no per-user pipe quota to share"
    );
    // A second container, as another submission of the same judge gets.
    let mut other = ContainerBuilder::new()
        .bind(judge.programs.dir.to_str().unwrap(), "/t", false)
        .build()
        .expect("second container starts");
    let spec = judge_spec(&["/t/pipe_hog", "hold"]).rlimit(
        hutch_host::protocol::Resource::Nofile,
        1024,
        1024,
    );
    let (held, probe) = while_holding(&mut judge.container, spec, || {
        let null = File::open("/dev/null").unwrap();
        let out = memfd("stdout");
        let err = memfd("stderr");
        let probe = other
            .exec(&judge_spec(&["/t/pipe_hog", "probe"]).stdio(
                null.as_fd(),
                out.as_fd(),
                err.as_fd(),
            ))
            .expect("exec request");
        assert_eq!(probe.status, Status::Ok, "{probe:?}: {}", read_back(&err).0);
        read_back(&out).0
    });
    assert!(
        held.trim_end().ends_with("a new one gets 8192 bytes"),
        "the holder did not use up its user's pipe quota: {held:?}"
    );
    assert_eq!(
        probe.trim(),
        "65536",
        "another container's new pipe, while the first holds its pipes ({})",
        held.trim_end()
    );
    drop(other);
    judge.assert_healthy();
}

/// A number in the host's `/proc/sys`, such as `fs/pipe-user-pages-soft`.
fn host_sysctl(name: &str) -> u64 {
    let path = format!("/proc/sys/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} holds {text:?}: {e}"))
}

/// Starts `spec` in `container` with its stdin and stdout pipes of this
/// test's, reads the first line it writes, and calls `meanwhile` while the
/// program holds what it made (until its stdin ends); then ends its stdin
/// and checks the run ended `Ok`. Returns the line and what `meanwhile`
/// returned.
fn while_holding<T>(
    container: &mut Container,
    spec: ExecSpec<'_>,
    meanwhile: impl FnOnce() -> T,
) -> (String, T) {
    let (stdin_read, stdin_write) = rustix::pipe::pipe().unwrap();
    let (stdout_read, stdout_write) = rustix::pipe::pipe().unwrap();
    let stderr = memfd("stderr");
    let spec = spec.stdio(stdin_read.as_fd(), stdout_write.as_fd(), stderr.as_fd());
    std::thread::scope(|scope| {
        let run = scope.spawn(move || container.exec(&spec).expect("exec request"));
        let mut line = String::new();
        let mut stdout = File::from(stdout_read);
        let mut byte = [0u8; 1];
        while !line.ends_with('\n') && stdout.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0] as char);
        }
        let answer = meanwhile();
        drop(stdin_write);
        let result = run.join().unwrap();
        let errors = read_back(&stderr).0;
        assert_eq!(result.status, Status::Ok, "{result:?}: {line} {errors}");
        (line, answer)
    })
}

/// Runs `/t/<program> make` (which prints `made`), then `/t/<program>
/// check` twice: in the next run, which must print the lines `kept`, and
/// after a reset, which must print `after_reset`; the container is healthy
/// after each.
fn leftovers_until_a_reset(program: &str, kept: &[&str], after_reset: &[&str]) {
    let mut judge = Judge::new(&[&format!("{program}.c")]);
    let path = format!("/t/{program}");
    let out = judge.run(&[&path, "make"]);
    assert_status(&out, Status::Ok, "making leftovers");
    assert_eq!(out.stdout, "made\n", "{}", out.describe());
    judge.assert_healthy();
    let out = judge.run(&[&path, "check"]);
    assert_lines(&out, kept, "the next run");
    judge.assert_healthy();
    judge.container.reset().expect("reset");
    let out = judge.run(&[&path, "check"]);
    assert_lines(&out, after_reset, "the run after a reset");
    judge.assert_healthy();
}

#[test]
fn attributes_of_the_work_directory_do_not_outlive_a_reset() {
    let _serial = serial();
    // Without a reset they stay, as files in /w do: the check sees them,
    // so it can tell.
    leftovers_until_a_reset(
        "workdir_attributes",
        &[
            "attributes: 49",
            "default acl present",
            "new file 000",
            "reopen: Permission denied",
        ],
        &[
            "attributes: 0",
            "default acl absent",
            "new file 644",
            "read back ok",
        ],
    );
}

#[test]
fn ipc_objects_and_locks_do_not_reach_the_next_run() {
    let _serial = serial();
    leftovers_until_a_reset(
        "ipc_leftovers",
        &[
            "sysv shm absent",
            "sysv sem absent",
            "sysv msg absent",
            "posix mq absent",
            // Files stay until the host resets the container.
            "posix shm present",
            "posix sem present",
            "/w/left present",
            "flock free",
            "posix lock free",
        ],
        &[
            "sysv shm absent",
            "sysv sem absent",
            "sysv msg absent",
            "posix mq absent",
            "posix shm absent",
            "posix sem absent",
            "/w/left absent",
            "lock file absent",
        ],
    );
}
