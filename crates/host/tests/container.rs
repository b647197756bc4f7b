//! End-to-end tests of `hutch-host`: real containers, real namespaces.
//!
//! As root, `rootless_suite` runs this whole file again as uid 65534 so the
//! unprivileged (rootless) path is exercised by the same assertions.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hutch_host::protocol::{OpenFlags, OpenItem, Stage, Status, SymlinkItem, Termination};
mod common;
use common::scratch::TempDir;
use common::{memfd, read_back, read_item, run_isolated};

use hutch_host::{BuildError, Container, ContainerBuilder, ContainerError, ExecSpec, Namespaces};

#[derive(Debug)]
struct Output {
    result: hutch_host::protocol::ExecResult,
    stdout: String,
    stderr: String,
}

fn run_spec(container: &mut Container, spec: ExecSpec<'_>) -> Output {
    let stdin = File::open("/dev/null").unwrap();
    let stdout = memfd("stdout");
    let stderr = memfd("stderr");
    let spec = spec.stdio(stdin.as_fd(), stdout.as_fd(), stderr.as_fd());
    let result = container.exec(&spec).expect("exec request");
    Output {
        result,
        stdout: read_back(&stdout),
        stderr: read_back(&stderr),
    }
}

fn run(container: &mut Container, argv: &[&str]) -> Output {
    run_spec(container, ExecSpec::new(argv.iter().copied()))
}

/// The default container; unprivileged, where no cgroup can be made, with
/// rusage accounting accepted explicitly.
fn builder() -> ContainerBuilder {
    if rootless() {
        ContainerBuilder::new().allow_rusage()
    } else {
        ContainerBuilder::new()
    }
}

fn container() -> Container {
    builder().build().expect("container starts")
}

fn rootless() -> bool {
    !rustix::process::geteuid().is_root()
}

/// Pids of the direct children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn write_item(path: &str) -> OpenItem {
    OpenItem {
        path: path.into(),
        flags: OpenFlags::write_truncating(),
        mode: 0o644,
        make_parents: true,
    }
}

#[test]
fn echo_succeeds_with_output_and_accounting() {
    let mut c = container();
    c.ping().unwrap();
    let out = run(&mut c, &["echo", "hello", "world"]);
    assert_eq!(out.result.status, Status::Ok, "{:?}", out.result);
    assert_eq!(out.result.termination, Termination::Exited(0));
    assert_eq!(out.stdout, "hello world\n");
    assert_eq!(out.stderr, "");
    assert!(out.result.wall_time_ns > 0);
    assert!(out.result.memory_bytes > 0, "peak memory is reported");
}

#[test]
fn nonzero_exit_and_signals_are_reported() {
    let mut c = container();
    let out = run(&mut c, &["sh", "-c", "exit 7"]);
    assert_eq!(out.result.status, Status::NonzeroExit);
    assert_eq!(out.result.termination, Termination::Exited(7));
    let out = run(&mut c, &["sh", "-c", "kill -SEGV $$"]);
    assert_eq!(out.result.status, Status::Signalled);
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGSEGV)
    );
}

#[test]
fn missing_program_is_a_runner_error_and_the_container_stays_usable() {
    let mut c = container();
    let out = run(&mut c, &["no-such-program-anywhere"]);
    assert_eq!(out.result.status, Status::RunnerError);
    assert_eq!(out.result.termination, Termination::NotStarted);
    let error = out.result.error.expect("runner error carries its error");
    assert_eq!(error.stage, Stage::Execve);
    assert_eq!(error.errno, libc::ENOENT);
    assert!(
        error.message.contains("no-such-program-anywhere"),
        "{}",
        error.message
    );
    c.ping().expect("ping after a failed exec");
    assert_eq!(run(&mut c, &["true"]).result.status, Status::Ok);
    let out = run(&mut c, &["/no/such/path"]);
    assert_eq!(out.result.error.unwrap().errno, libc::ENOENT);
}

#[test]
fn non_executable_file_and_bad_cwd_are_runner_errors() {
    let mut c = container();
    let mut results = c.open(&[write_item("/w/data")]).unwrap();
    let mut file = File::from(results.remove(0).unwrap());
    file.write_all(b"not a program\n").unwrap();
    drop(file);
    let out = run(&mut c, &["/w/data"]);
    assert_eq!(out.result.status, Status::RunnerError);
    let error = out.result.error.unwrap();
    assert_eq!((error.stage, error.errno), (Stage::Execve, libc::EACCES));

    let out = run_spec(&mut c, ExecSpec::new(["true"]).cwd("/no/such/dir"));
    assert_eq!(out.result.status, Status::RunnerError);
    let error = out.result.error.unwrap();
    assert_eq!((error.stage, error.errno), (Stage::Chdir, libc::ENOENT));
    assert_eq!(run(&mut c, &["true"]).result.status, Status::Ok);
}

/// Each of `OpenFlags`' named constructors opens as its name says, through
/// init: `>`, `>>`, a file that must be new, and reading.
#[test]
fn files_open_as_their_flags_are_named() {
    let mut c = container();
    let item = |flags| OpenItem {
        path: "/w/log".into(),
        flags,
        mode: 0o644,
        make_parents: false,
    };
    let write = |c: &mut Container, flags, text: &str| {
        let mut opened = c.open(&[item(flags)]).unwrap();
        let fd = opened
            .remove(0)
            .unwrap_or_else(|e| panic!("{flags:?}: {e:?}"));
        File::from(fd).write_all(text.as_bytes()).unwrap();
    };
    write(&mut c, OpenFlags::create_new(), "first\n");
    write(&mut c, OpenFlags::write_truncating(), "second\n");
    write(&mut c, OpenFlags::append(), "third\n");
    let refused = c.open(&[item(OpenFlags::create_new())]).unwrap().remove(0);
    assert!(
        refused.is_err(),
        "a second create_new of one path opened it"
    );
    let mut opened = c.open(&[item(OpenFlags::read_only())]).unwrap();
    let mut text = String::new();
    File::from(opened.remove(0).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "second\nthird\n");
}

/// `uid:gid` of the programs' user, as `stat -c %u:%g` shows it.
fn programs_owner() -> &'static str {
    if rootless() { "0:0" } else { "1000:1000" }
}

/// What `stat -c FORMAT PATHS...` prints inside the container, one line per
/// path.
fn stat_in(c: &mut Container, format: &str, paths: &[&str]) -> String {
    let mut argv = vec!["stat", "-c", format];
    argv.extend_from_slice(paths);
    let out = run(c, &argv);
    assert_eq!(out.result.status, Status::Ok, "{out:?}");
    out.stdout
}

fn open_item(path: &str, flags: OpenFlags, mode: u32) -> OpenItem {
    OpenItem {
        path: path.into(),
        flags,
        mode,
        make_parents: false,
    }
}

/// A file an open creates gets the item's mode exactly (no umask, set-id
/// bits kept after the change of owner) and belongs to the programs' user;
/// opened again with another mode, it keeps its own.
#[test]
fn open_creates_a_file_with_exactly_the_mode_asked() {
    let mut c = container();
    let opened = c
        .open(&[
            open_item("/w/shared", OpenFlags::write_truncating(), 0o666),
            open_item("/w/tool", OpenFlags::append(), 0o4755),
            open_item("/w/new", OpenFlags::create_new(), 0o640),
        ])
        .unwrap();
    for outcome in opened {
        outcome.expect("created");
    }
    let owner = programs_owner();
    assert_eq!(
        stat_in(&mut c, "%a %u:%g", &["/w/shared", "/w/tool", "/w/new"]),
        format!("666 {owner}\n4755 {owner}\n640 {owner}\n")
    );
    let mut opened = c
        .open(&[open_item("/w/shared", OpenFlags::append(), 0o600)])
        .unwrap();
    File::from(opened.remove(0).unwrap())
        .write_all(b"more\n")
        .unwrap();
    assert_eq!(
        stat_in(&mut c, "%a %u:%g", &["/w/shared"]),
        format!("666 {owner}\n")
    );
}

/// A file a program run as another user made keeps its owner and mode
/// through a creating open (`>` and `>>`): the open did not create it.
#[test]
fn a_creating_open_leaves_an_existing_file_its_owner() {
    if rootless() {
        // One id only: no other user to make a file.
        return;
    }
    let mut c = container();
    let out = run_spec(
        &mut c,
        ExecSpec::new(["sh", "-c", "umask 077; echo secret > /tmp/theirs"]).user(2000, 2000),
    );
    assert_eq!(out.result.status, Status::Ok, "{out:?}");
    for flags in [OpenFlags::append(), OpenFlags::write_truncating()] {
        let mut opened = c.open(&[open_item("/tmp/theirs", flags, 0o644)]).unwrap();
        let fd = opened
            .remove(0)
            .unwrap_or_else(|e| panic!("{flags:?}: {e:?}"));
        File::from(fd).write_all(b"host\n").unwrap();
        assert_eq!(
            stat_in(&mut c, "%a %u:%g", &["/tmp/theirs"]),
            "600 2000:2000\n",
            "{flags:?} handed over a file it did not create"
        );
    }
    // Still private to its user.
    let out = run(&mut c, &["cat", "/tmp/theirs"]);
    assert_eq!(out.result.status, Status::NonzeroExit, "{out:?}");
}

/// Makes the symbolic link `link` to `target` through init.
fn make_link(c: &mut Container, link: &str, target: &str) {
    let links = c
        .symlink(&[SymlinkItem {
            link: link.into(),
            target: target.into(),
        }])
        .unwrap();
    for link in links {
        link.expect("linked");
    }
}

/// A symbolic link belongs to the programs' user, who can remove it from
/// the sticky `/tmp`.
#[test]
fn symlinks_belong_to_the_programs_user() {
    let mut c = container();
    make_link(&mut c, "/tmp/link", "/w/anything");
    assert_eq!(
        stat_in(&mut c, "%F %u:%g", &["/tmp/link"]),
        format!("symbolic link {}\n", programs_owner())
    );
    let out = run(&mut c, &["rm", "/tmp/link"]);
    assert_eq!(out.result.status, Status::Ok, "{out:?}");
    assert_eq!(run(&mut c, &["ls", "-A", "/tmp"]).stdout, "");
}

/// A symbolic link's missing parent directories are made, owned by the
/// programs' user.
#[test]
fn symlinks_are_made_with_their_missing_parents() {
    let mut c = container();
    make_link(&mut c, "/tmp/a/b/link", "../../elsewhere");
    let owner = programs_owner();
    assert_eq!(
        stat_in(&mut c, "%F %a %u:%g", &["/tmp/a", "/tmp/a/b"]),
        format!("directory 755 {owner}\ndirectory 755 {owner}\n")
    );
    assert_eq!(
        run(&mut c, &["readlink", "/tmp/a/b/link"]).stdout,
        "../../elsewhere\n"
    );
    let out = run(&mut c, &["rm", "-r", "/tmp/a"]);
    assert_eq!(out.result.status, Status::Ok, "{out:?}");
}

/// An item no request may carry is its own error, errno 0, and the other
/// items of the call are done; more items than a frame takes go in several.
#[test]
fn a_refused_item_is_its_own_error_and_batches_are_split() {
    let mut c = container();
    let link = |link: &str| SymlinkItem {
        link: link.into(),
        target: "/etc".into(),
    };
    let linked = c
        .symlink(&[link("/tmp/good"), link("relative"), link("/tmp/also")])
        .unwrap();
    assert!(linked[0].is_ok() && linked[2].is_ok(), "{linked:?}");
    assert_eq!(linked[1].as_ref().map_err(|e| e.errno), Err(0));
    assert_eq!(
        run(&mut c, &["readlink", "/tmp/good", "/tmp/also"]).stdout,
        "/etc\n/etc\n"
    );
    let item = |path: String| OpenItem {
        path,
        flags: OpenFlags::write_truncating(),
        mode: 0o644,
        make_parents: false,
    };
    let mut items: Vec<OpenItem> = (0..70).map(|i| item(format!("/w/f{i}"))).collect();
    items[5] = item("/w/../etc/x".into());
    let opened = c.open(&items).unwrap();
    assert_eq!(opened.len(), 70);
    for (i, result) in opened.iter().enumerate() {
        match (i, result) {
            (5, Err(error)) => assert_eq!(error.errno, 0, "{error:?}"),
            (5, Ok(_)) => panic!("a path with .. was opened"),
            (_, result) => assert!(result.is_ok(), "{i}: {result:?}"),
        }
    }
}

/// Item errors repeat their paths, escaped, and a batch of long odd paths
/// once made an answer larger than a frame, which ended init: messages are
/// cut to fit, and the container lives on.
#[test]
fn a_batch_of_long_failing_paths_is_answered_and_leaves_init_alive() {
    let mut c = container();
    let path = format!("/w/{}", "\u{1}".repeat(1000));
    let paths: Vec<&str> = std::iter::repeat_n(path.as_str(), 64).collect();
    let results = c.open_for_copy_out(&paths).expect("answered");
    assert_eq!(results.len(), 64);
    for result in results {
        let error = result.expect_err("a name longer than any file's");
        assert_eq!(error.errno, libc::ENAMETOOLONG, "{error:?}");
        assert!(error.message.len() <= 1024, "{}", error.message.len());
        assert!(error.message.ends_with('…'), "{}", error.message);
    }
    c.ping().expect("init is alive");
}

/// A directory a run cannot start in is named, in the message and as the
/// error's path.
#[test]
fn a_directory_a_run_cannot_enter_is_named() {
    let mut c = container();
    let out = run_spec(&mut c, ExecSpec::new(["true"]).cwd("/no/such/dir"));
    let error = out.result.error.unwrap();
    assert_eq!((error.stage, error.errno), (Stage::Chdir, libc::ENOENT));
    assert_eq!(error.path.as_deref(), Some("/no/such/dir"));
    assert!(
        error
            .message
            .starts_with("program setup failed at Chdir: cannot enter \"/no/such/dir\": "),
        "{}",
        error.message
    );
}

/// Ids a run cannot take are named.
#[test]
fn ids_a_run_cannot_take_are_named() {
    let mut c = container();
    let out = run_spec(&mut c, ExecSpec::new(["true"]).user(100_000, 100_000));
    let error = out.result.error.unwrap();
    assert_eq!(
        (error.stage, error.errno),
        (Stage::Credentials, libc::EINVAL)
    );
    assert!(
        error.message.starts_with(
            "program setup failed at Credentials: cannot become uid 100000 gid 100000: "
        ),
        "{}",
        error.message
    );
    assert_eq!(run(&mut c, &["true"]).result.status, Status::Ok);
}

/// A resource limit above the hard limit init has is named in the error,
/// for each of those the generic name used to stand for.
#[test]
fn every_resource_limit_above_the_hard_one_is_named() {
    use hutch_host::protocol::Resource;
    use rustix::process::Resource as Host;
    let mut c = container();
    let named = [
        (Resource::Core, Host::Core, "RLIMIT_CORE"),
        (Resource::Rss, Host::Rss, "RLIMIT_RSS"),
        (Resource::Locks, Host::Locks, "RLIMIT_LOCKS"),
        (Resource::Sigpending, Host::Sigpending, "RLIMIT_SIGPENDING"),
        (Resource::Msgqueue, Host::Msgqueue, "RLIMIT_MSGQUEUE"),
        (Resource::Nice, Host::Nice, "RLIMIT_NICE"),
        (Resource::Rtprio, Host::Rtprio, "RLIMIT_RTPRIO"),
        (Resource::Rttime, Host::Rttime, "RLIMIT_RTTIME"),
    ];
    let mut checked = 0;
    for (resource, host, name) in named {
        // Init has this process's hard limits and cannot raise them: one
        // above is refused. An unlimited one cannot be exceeded.
        let Some(hard) = rustix::process::getrlimit(host).maximum else {
            continue;
        };
        let above = hard + 1;
        let out = run_spec(
            &mut c,
            ExecSpec::new(["true"]).rlimit(resource, above, above),
        );
        let error = out
            .result
            .error
            .unwrap_or_else(|| panic!("{name}: {:?}", out.result.status));
        assert_eq!(error.stage, Stage::Rlimit, "{name}: {error:?}");
        assert!(
            error.message.contains(&format!(": {name} (")),
            "{name}: {}",
            error.message
        );
        checked += 1;
    }
    assert!(checked > 0, "every one of these limits is unlimited here");
}

#[test]
fn many_execs_in_one_container() {
    let mut c = container();
    for i in 0..200 {
        let out = run(&mut c, &["sh", "-c", &format!("echo {i}")]);
        assert_eq!(out.result.status, Status::Ok);
        assert_eq!(out.stdout, format!("{i}\n"));
    }
}

const ISOLATED_VAR: &str = "HUTCH_TEST_ISOLATED";

#[test]
fn no_host_fd_growth_over_1000_execs() {
    run_isolated("isolated_no_host_fd_growth_over_1000_execs", ISOLATED_VAR);
}

#[test]
#[ignore = "measures the whole process: run alone by no_host_fd_growth_over_1000_execs"]
fn isolated_no_host_fd_growth_over_1000_execs() {
    assert!(
        std::env::var_os(ISOLATED_VAR).is_some(),
        "run through run_isolated"
    );
    let mut c = container();
    let stdin = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["/bin/true"]).stdio(stdin.as_fd(), stdin.as_fd(), stdin.as_fd());
    for _ in 0..10 {
        c.exec(&spec).unwrap();
    }
    let before = open_fd_count();
    for _ in 0..1000 {
        assert_eq!(c.exec(&spec).unwrap().status, Status::Ok);
    }
    assert_eq!(open_fd_count(), before);
}

#[test]
fn nothing_is_left_running_after_an_exec() {
    let mut c = container();
    let init = c.init_pid();
    let out = run(
        &mut c,
        &[
            "sh",
            "-c",
            "sleep 100 & sleep 100 & (setsid sleep 100 &); exit 0",
        ],
    );
    assert_eq!(out.result.status, Status::Ok);
    assert_eq!(children(init), Vec::<i32>::new(), "init has no child left");
    // No zombie either: the next run sees a process table of init and itself.
    let out = run(&mut c, &["ls", "/proc"]);
    let pids: Vec<&str> = out
        .stdout
        .lines()
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(pids.len(), 2, "only init and ls: {pids:?}");
}

#[test]
fn destroy_and_drop_leave_nothing() {
    let c = container();
    let init = c.init_pid();
    assert!(std::path::Path::new(&format!("/proc/{init}")).exists());
    c.destroy();
    assert!(
        !std::path::Path::new(&format!("/proc/{init}")).exists(),
        "init reaped"
    );

    let c = container();
    let init = c.init_pid();
    drop(c);
    assert!(
        !std::path::Path::new(&format!("/proc/{init}")).exists(),
        "init reaped"
    );
}

#[test]
fn kill_from_another_thread_ends_the_run() {
    let mut c = container();
    let init = c.init_pid();
    let killer = c.killer().unwrap();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || {
        // Wait until the program exists, then kill it.
        while children(init).is_empty() {
            std::thread::yield_now();
        }
        killer.kill().unwrap();
    });
    let out = run(&mut c, &["sleep", "100"]);
    waiter.join().unwrap();
    assert_eq!(out.result.status, Status::Signalled);
    assert_eq!(
        out.result.termination,
        Termination::Signalled(libc::SIGKILL)
    );
    assert!(start.elapsed() < Duration::from_secs(50));
    assert_eq!(run(&mut c, &["true"]).result.status, Status::Ok);
}

#[test]
fn wall_time_limit_kills_a_sleeper() {
    let mut c = container();
    let spec = ExecSpec::new(["sleep", "10"]).wall_time(Duration::from_millis(300));
    let out = run_spec(&mut c, spec);
    assert_eq!(out.result.status, Status::WallTimeLimit);
    assert!(
        out.result.wall_time_ns >= 300_000_000,
        "{}",
        out.result.wall_time_ns
    );
    assert!(
        out.result.wall_time_ns < 5_000_000_000,
        "{}",
        out.result.wall_time_ns
    );
    assert_eq!(children(c.init_pid()), Vec::<i32>::new());
}

#[test]
fn init_killed_from_outside_gives_a_clear_error() {
    let mut c = container();
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(c.init_pid()).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).unwrap();
    let start = Instant::now();
    let err = c.ping().expect_err("init is dead");
    assert!(matches!(err, ContainerError::InitGone { .. }), "{err:?}");
    assert!(err.to_string().contains("init is gone"), "{err}");
    assert!(err.to_string().contains("signal 9"), "{err}");
    assert!(matches!(c.ping(), Err(ContainerError::Destroyed)));
    let stdin = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(["true"]).stdio(stdin.as_fd(), stdin.as_fd(), stdin.as_fd());
    assert!(matches!(c.exec(&spec), Err(ContainerError::Destroyed)));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "errors come promptly"
    );
}

#[test]
fn program_sees_only_the_fds_it_was_given() {
    let mut c = container();
    // A host descriptor without close-on-exec must not leak in either.
    let leaky = File::open("/dev/null").unwrap();
    rustix::io::fcntl_setfd(&leaky, rustix::io::FdFlags::empty()).unwrap();
    let out = run(&mut c, &["ls", "/proc/self/fd"]);
    let fds: BTreeSet<&str> = out.stdout.lines().collect();
    // 0, 1, 2 given; 3 is the directory ls itself is reading.
    assert_eq!(fds, BTreeSet::from(["0", "1", "2", "3"]), "{}", out.stdout);
    drop(leaky);
    let out = run(
        &mut c,
        &["sh", "-c", "ls -l /proc/self/fd/ | grep -c socket"],
    );
    assert_eq!(out.stdout.trim(), "0", "no socket reaches the program");
}

#[test]
fn standard_descriptors_not_given_are_dev_null_not_closed() {
    let mut c = container();
    // Only fd 0 given (the output, for the check to write to): 1 and 2 are
    // not closed, where the first file the program opened would take them.
    let out = memfd("out");
    let spec = ExecSpec::new([
        "sh",
        "-c",
        // The shell's own 1 and 2, looked at from a subshell whose output
        // alone goes to fd 0.
        "p=$$; (stat -L -c %F:%t:%T /proc/$p/fd/1 /proc/$p/fd/2 >&0); echo out; echo err >&2",
    ])
    .fd(out.as_fd());
    let result = c.exec(&spec).expect("exec request");
    assert_eq!(result.status, Status::Ok, "{result:?}: {}", read_back(&out));
    // The null device, 1:3.
    let null = "character special file:1:3\n";
    assert_eq!(read_back(&out), null.repeat(2));
}

#[test]
fn writes_outside_workdir_and_tmp_fail() {
    let mut c = container();
    for path in ["/x", "/usr/x", "/etc/x", "/dev/x", "/proc/x", "/bin/x"] {
        let out = run(&mut c, &["touch", path]);
        assert_eq!(
            out.result.status,
            Status::NonzeroExit,
            "touch {path} must fail"
        );
    }
    for path in ["/w/x", "/tmp/x"] {
        let out = run(&mut c, &["touch", path]);
        assert_eq!(
            out.result.status,
            Status::Ok,
            "touch {path}: {}",
            out.stderr
        );
    }
}

#[test]
fn environment_is_exactly_what_is_given_plus_path() {
    let mut c = container();
    let out = run_spec(
        &mut c,
        ExecSpec::new(["env"]).env("A", "1").env("B", "two words"),
    );
    let vars: BTreeSet<&str> = out.stdout.lines().collect();
    assert_eq!(
        vars,
        BTreeSet::from(["A=1", "B=two words", "PATH=/usr/local/bin:/usr/bin:/bin"])
    );
    let out = run_spec(&mut c, ExecSpec::new(["env"]).env("PATH", "/bin"));
    assert_eq!(out.stdout, "PATH=/bin\n");
}

#[test]
fn program_runs_unprivileged_in_its_own_session() {
    let mut c = container();
    let out = run(&mut c, &["cat", "/proc/self/status", "/proc/self/stat"]);
    let status = &out.stdout;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_owned()
    };
    let expected_id = if rootless() { "0" } else { "1000" };
    assert!(
        field("Uid:").split_whitespace().all(|id| id == expected_id),
        "{}",
        field("Uid:")
    );
    assert!(
        field("Gid:").split_whitespace().all(|id| id == expected_id),
        "{}",
        field("Gid:")
    );
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("NoNewPrivs:"), "1");
    // /proc/self/stat: pid (comm) state ppid pgrp session tty_nr ...
    let stat = status.lines().last().unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let pid = stat.split_whitespace().next().unwrap();
    assert_eq!(fields[3], pid, "the program leads its own session");
    assert_eq!(fields[4], "0", "no controlling terminal");
    let out = run(&mut c, &["hostname"]);
    assert_eq!(out.stdout, "hutch\n");
}

/// A program that sends itself a job-control stop (`SIGTSTP`, `SIGTTIN`,
/// `SIGTTOU`) goes on: it leads a session of its own, so its process
/// group is orphaned, and there the kernel drops those stops, as it does
/// for any program started away from a shell's job control.
#[test]
fn job_control_stops_do_not_stop_a_program() {
    let mut c = container();
    let out = run_spec(
        &mut c,
        ExecSpec::new([
            "sh",
            "-c",
            "kill -TSTP $$; kill -TTIN $$; kill -TTOU $$; echo went on",
        ])
        .wall_time(Duration::from_secs(10)),
    );
    assert_eq!(out.result.status, Status::Ok, "{:?}", out.result);
    assert_eq!(out.stdout, "went on\n");
}

#[test]
fn open_delete_symlink_and_reset() {
    let mut c = container();
    let mut results = c
        .open(&[
            write_item("/w/dir/a.txt"),
            read_item("/w/missing"),
            read_item("/w"),
            write_item("/usr/nope"),
        ])
        .unwrap();
    assert_eq!(results.len(), 4);
    let mut file = File::from(results.remove(0).expect("created with parents"));
    file.write_all(b"content\n").unwrap();
    drop(file);
    assert_eq!(results[0].as_ref().unwrap_err().errno, libc::ENOENT);
    assert_eq!(
        results[1].as_ref().unwrap_err().errno,
        libc::EINVAL,
        "a directory is refused"
    );
    assert_eq!(results[2].as_ref().unwrap_err().errno, libc::EROFS);

    let links = c
        .symlink(&[
            SymlinkItem {
                link: "/w/link".into(),
                target: "dir/a.txt".into(),
            },
            SymlinkItem {
                link: "/w/link".into(),
                target: "elsewhere".into(),
            },
        ])
        .unwrap();
    assert!(links[0].is_ok());
    assert_eq!(links[1].as_ref().unwrap_err().errno, libc::EEXIST);
    assert_eq!(run(&mut c, &["cat", "/w/link"]).stdout, "content\n");

    // The host never follows a symbolic link in the last component.
    let mut results = c.open(&[read_item("/w/link")]).unwrap();
    assert_eq!(results.remove(0).unwrap_err().errno, libc::ELOOP);

    let mut read = c.open(&[read_item("/w/dir/a.txt")]).unwrap();
    let mut text = String::new();
    File::from(read.remove(0).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "content\n");

    c.delete("/w/link").unwrap();
    let err = c.delete("/w/link").unwrap_err();
    assert!(
        matches!(
            err,
            ContainerError::Failed {
                errno: libc::ENOENT,
                stage: Stage::Delete,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(
        run(
            &mut c,
            &["sh", "-c", "touch /tmp/t; mkdir -p /w/d/e; chmod 000 /w/d"]
        )
        .result
        .status,
        Status::Ok
    );
    c.reset().unwrap();
    let out = run(&mut c, &["ls", "-A", "/w", "/tmp"]);
    assert_eq!(
        out.stdout, "/tmp:\n\n/w:\n",
        "reset empties the work directory and /tmp"
    );
    let out = run(&mut c, &["touch", "/w/after-reset"]);
    assert_eq!(
        out.result.status,
        Status::Ok,
        "the work directory stays writable"
    );
}

#[test]
fn a_reset_begun_is_finished_before_the_next_request() {
    let mut c = container();
    let out = run(
        &mut c,
        &["sh", "-c", "touch /w/left /tmp/left; chmod 700 /w"],
    );
    assert_eq!(out.result.status, Status::Ok, "{out:?}");
    c.begin_reset().unwrap();
    // The exec's request takes the reset's answer first: the run sees the
    // mounts emptied and the work directory's mode restored.
    let out = run(&mut c, &["sh", "-c", "ls -A /w /tmp; stat -c %a /w"]);
    assert_eq!(out.stdout, "/tmp:\n\n/w:\n755\n", "{out:?}");
    c.begin_reset().unwrap();
    c.finish_reset().unwrap();
    c.finish_reset().unwrap();
    c.ping().unwrap();
}

#[test]
fn open_refuses_fifos_and_devices() {
    let mut c = container();
    assert_eq!(
        run(&mut c, &["mkfifo", "/w/fifo"]).result.status,
        Status::Ok
    );
    let results = c
        .open(&[read_item("/w/fifo"), read_item("/dev/null")])
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.errno == libc::EINVAL))
    );
}

#[test]
fn exec_from_a_host_memfd() {
    let mut c = container();
    let mut binary = memfd("program");
    binary
        .write_all(&std::fs::read("/bin/echo").unwrap())
        .unwrap();
    let stdin = File::open("/dev/null").unwrap();
    let stdout = memfd("stdout");
    let spec = ExecSpec::new(["echo", "from memfd"])
        .stdio(stdin.as_fd(), stdout.as_fd(), stdin.as_fd())
        .exec_fd(binary.as_fd());
    let result = c.exec(&spec).unwrap();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(read_back(&stdout), "from memfd\n");
}

#[test]
fn more_program_fds_than_three() {
    let mut c = container();
    let stdin = File::open("/dev/null").unwrap();
    let stdout = memfd("stdout");
    let extra = memfd("extra");
    let spec = ExecSpec::new(["sh", "-c", "echo to-fd-4 >&4; echo out"])
        .stdio(stdin.as_fd(), stdout.as_fd(), stdin.as_fd())
        .fd(stdin.as_fd())
        .fd(extra.as_fd());
    assert_eq!(c.exec(&spec).unwrap().status, Status::Ok);
    assert_eq!(read_back(&stdout), "out\n");
    assert_eq!(read_back(&extra), "to-fd-4\n");
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let mut c = container();
    let err = c.exec(&ExecSpec::new(Vec::<String>::new())).unwrap_err();
    assert!(
        matches!(err, ContainerError::InvalidRequest { kind: "exec", .. }),
        "{err:?}"
    );
    // An open item no request may carry is refused unsent, as its own
    // error.
    let opened = c.open(&[read_item("relative")]).expect("answered per item");
    assert!(
        matches!(&opened[..], [Err(error)] if error.errno == 0 && error.message.contains("not an absolute path")),
        "{opened:?}"
    );
    c.ping().expect("nothing was sent, the container is fine");
}

#[test]
fn missing_bind_source_fails_the_build_with_its_path() {
    let err = builder()
        .bind("/no/such/source", "/data", false)
        .build()
        .unwrap_err();
    let BuildError::Configure(boxed) = &err else {
        panic!("unexpected error {err:?}");
    };
    let ContainerError::Failed {
        stage, errno, path, ..
    } = boxed.as_ref()
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((*stage, *errno), (Stage::Mount, libc::ENOENT));
    assert_eq!(path.as_deref(), Some("/no/such/source"));
}

#[test]
fn optional_namespaces_can_be_turned_off() {
    let all = Namespaces::default();
    for namespaces in [
        Namespaces { net: false, ..all },
        Namespaces {
            ipc: false,
            uts: false,
            ..all
        },
        Namespaces {
            cgroup: false,
            ..all
        },
    ] {
        let mut c = builder().namespaces(namespaces).build().unwrap();
        let out = run(&mut c, &["true"]);
        assert_eq!(out.result.status, Status::Ok, "{namespaces:?}");
    }
    // The network namespace holds only a loopback, down.
    let mut c = container();
    let out = run(&mut c, &["cat", "/proc/net/dev"]);
    let interfaces: Vec<&str> = out
        .stdout
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(interfaces, ["lo"]);
    // Without it, the host's interfaces show.
    let mut c = builder()
        .namespaces(Namespaces { net: false, ..all })
        .build()
        .unwrap();
    let out = run(&mut c, &["cat", "/proc/net/dev"]);
    assert!(out.stdout.lines().count() > 3, "{}", out.stdout);
}

#[test]
fn without_a_mount_namespace_programs_see_the_host_file_system() {
    let all = Namespaces::default();
    let scratch = tempdir();
    let dir = scratch.text();
    std::fs::write(format!("{dir}/host-file"), "on the host\n").unwrap();
    let mut c = builder()
        .namespaces(Namespaces {
            mount: false,
            ..all
        })
        .workdir(dir)
        .build()
        .unwrap();
    let out = run(&mut c, &["cat", "host-file"]);
    assert_eq!(out.stdout, "on the host\n", "{}", out.stderr);
    let out = run(&mut c, &["pwd"]);
    assert_eq!(out.stdout.trim(), dir);
    drop(c);
    // The default work directory does not exist on the host: a clear error.
    let err = builder()
        .namespaces(Namespaces {
            mount: false,
            ..all
        })
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("configuring"), "{err}");
    let BuildError::Configure(boxed) = &err else {
        panic!("unexpected error {err:?}");
    };
    let ContainerError::Failed { stage, path, .. } = boxed.as_ref() else {
        panic!("{err:?}");
    };
    assert_eq!((*stage, path.as_deref()), (Stage::Workdir, Some("/w")));
}

#[test]
fn a_work_directory_behind_a_symbolic_link_is_given_as_the_directory_itself() {
    // Without a mount namespace the work directory is a host path, which
    // may pass through a link (`/var/run`); init's file operations follow
    // none, so the builder resolves it, and programs and file operations
    // both work in the directory itself.
    let scratch = tempdir();
    let dir = scratch.text();
    std::fs::create_dir_all(format!("{dir}/real/sub")).unwrap();
    std::os::unix::fs::symlink("real", format!("{dir}/link")).unwrap();
    std::fs::write(format!("{dir}/real/sub/file"), "here\n").unwrap();
    let mut c = builder()
        .namespaces(Namespaces {
            mount: false,
            ..Namespaces::default()
        })
        .workdir(&format!("{dir}/link/sub"))
        .build()
        .unwrap();
    let out = run(&mut c, &["sh", "-c", "pwd && cat file"]);
    assert_eq!(
        out.stdout,
        format!("{dir}/real/sub\nhere\n"),
        "{}",
        out.stderr
    );
    let read = |path: String| OpenItem {
        path,
        flags: OpenFlags::read_only(),
        mode: 0,
        make_parents: false,
    };
    let opened = c.open(&[read(format!("{dir}/real/sub/file"))]).unwrap();
    let mut text = String::new();
    File::from(opened.into_iter().next().unwrap().unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "here\n");
    // Through the link, as every path of a file operation, it is refused.
    let through = c.open(&[read(format!("{dir}/link/sub/file"))]).unwrap();
    assert_eq!(
        through[0].as_ref().map(drop).unwrap_err().errno,
        libc::ELOOP,
        "{:?}",
        through[0]
    );
}

/// A container that shares the host's PID namespace: init is an ordinary
/// process there, not PID 1.
fn without_a_pid_namespace() -> Container {
    let all = Namespaces::default();
    builder()
        .namespaces(Namespaces { pid: false, ..all })
        .build()
        .unwrap()
}

#[test]
fn without_a_pid_namespace_a_run_still_leaves_nothing_behind() {
    let mut c = without_a_pid_namespace();
    let init = c.init_pid();
    // The program's pid is a host pid, not 2.
    let out = run(&mut c, &["sh", "-c", "echo $$"]);
    let pid: i32 = out.stdout.trim().parse().unwrap();
    assert_ne!(pid, 2);
    // Background processes, and one that detached with setsid, die with
    // the run even though init is not PID 1.
    let out = run(
        &mut c,
        &["sh", "-c", "sleep 100 & (setsid sleep 101 &); echo $!"],
    );
    assert_eq!(out.result.status, Status::Ok, "{}", out.stderr);
    let background: i32 = out.stdout.trim().parse().unwrap();
    assert_eq!(children(init), Vec::<i32>::new(), "init has no child left");
    assert!(
        !std::path::Path::new(&format!("/proc/{background}")).exists(),
        "the background sleep is gone"
    );
    let out = run(&mut c, &["true"]);
    assert_eq!(out.result.status, Status::Ok);
}

/// Without a PID namespace nothing ends with init, so what a run started
/// would outlive a killed init: a container dropped while a run goes on
/// (its `Run` never waited for) has init end the run before it exits.
#[test]
fn without_a_pid_namespace_a_container_dropped_during_a_run_leaves_nothing_running() {
    let mut c = without_a_pid_namespace();
    let null = File::open("/dev/null").unwrap();
    let stdout = memfd("stdout");
    let spec = ExecSpec::new(["sh", "-c", "sleep 1000 & echo $$ $!; sleep 1000"]).stdio(
        null.as_fd(),
        stdout.as_fd(),
        null.as_fd(),
    );
    let run = c.start(&spec).expect("the run starts");
    let start = Instant::now();
    let pids: Vec<i32> = loop {
        let text = read_back(&stdout);
        if text.ends_with('\n') {
            break text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the run printed no pids"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(pids.len(), 2, "{pids:?}");
    drop(run);
    drop(c);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the run outlived its container"
        );
    }
}

/// Programs start with every signal at its default and none blocked,
/// whatever the host ignores (this test process, as every Rust program,
/// ignores `SIGPIPE`, and exec keeps what is ignored): `yes | head` must
/// end by `SIGPIPE`, as anywhere else.
#[test]
fn programs_start_with_default_signal_dispositions() {
    let mut c = container();
    for _ in 0..2 {
        let out = run(
            &mut c,
            &["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
        );
        assert_eq!(out.result.status, Status::Ok, "{}", out.stderr);
        assert_eq!(
            out.stdout, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "blocked and ignored signals of a program"
        );
    }
    // With SIGPIPE ignored, yes would complain of a broken pipe.
    let out = run(&mut c, &["sh", "-c", "yes | head -n 1"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.stderr);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("y\n", ""));
}

/// OpenJDK reads its configuration from `/etc/java-*` at start: the
/// default container binds every such directory of the host, and Java
/// runs in it where the host has it.
#[test]
fn javas_configuration_is_there_and_java_runs() {
    let mut c = container();
    let dirs: Vec<String> = std::fs::read_dir("/etc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name == "java" || name.starts_with("java-"))
        .map(|name| format!("/etc/{name}"))
        .collect();
    for dir in &dirs {
        let out = run(&mut c, &["ls", "-A", dir]);
        assert_eq!(out.result.status, Status::Ok, "{dir}: {}", out.stderr);
        let mut host: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        host.sort();
        let mut inside: Vec<&str> = out.stdout.lines().collect();
        inside.sort();
        assert_eq!(inside, host, "{dir}");
    }
    if Path::new("/usr/bin/java").exists() {
        let out = run(&mut c, &["java", "-Xmx64m", "-version"]);
        assert_eq!(out.result.status, Status::Ok, "{}", out.stderr);
        assert!(out.stderr.contains("version"), "{}", out.stderr);
    } else {
        eprintln!(
            "no /usr/bin/java on this host: checked only that the {} Java configuration \
             directories of /etc are there",
            dirs.len()
        );
    }
}

#[test]
fn bind_mounts_read_only_and_writable() {
    let scratch = tempdir();
    let dir = scratch.text();
    std::fs::write(format!("{dir}/in.txt"), "host data\n").unwrap();
    let mut c = builder()
        .bind(dir, "/data", false)
        .bind(dir, "/rw", true)
        .build()
        .unwrap();
    assert_eq!(run(&mut c, &["cat", "/data/in.txt"]).stdout, "host data\n");
    assert_eq!(
        run(&mut c, &["touch", "/data/new"]).result.status,
        Status::NonzeroExit
    );
    let out = run(&mut c, &["sh", "-c", "echo written > /rw/out.txt"]);
    assert_eq!(out.result.status, Status::Ok, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/out.txt")).unwrap(),
        "written\n"
    );
}

/// A fresh directory every user can write to (the rootless suite's
/// programs run as another host uid), removed when dropped.
fn tempdir() -> TempDir {
    TempDir::new("test", 0o777)
}

const HOLD_VAR: &str = "HUTCH_TEST_HOLD_CONTAINER";

/// Run by `host_killed_takes_the_container_down` in a child process: holds a
/// container with a running program until killed.
#[test]
#[ignore = "helper: run by host_killed_takes_the_container_down in a child process"]
fn hold_container_until_killed() {
    if std::env::var_os(HOLD_VAR).is_none() {
        return;
    }
    let mut c = container();
    println!("INIT {}", c.init_pid());
    std::io::stdout().flush().unwrap();
    run(&mut c, &["sleep", "1000"]);
    panic!("the parent kills this process before the sleep ends");
}

#[test]
fn host_killed_takes_the_container_down() {
    let mut child = common::ignored_test(
        Command::new(std::env::current_exe().unwrap()),
        "hold_container_until_killed",
        HOLD_VAR,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // libtest prints "test NAME ... " on the same line before ours.
    let mut line = Vec::new();
    let mut byte = [0u8];
    let init: i32 = loop {
        assert_eq!(
            stdout.read(&mut byte).unwrap(),
            1,
            "the child ended before naming init"
        );
        if byte[0] != b'\n' {
            line.push(byte[0]);
            continue;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        if let Some((_, pid)) = text.split_once("INIT ") {
            break pid.trim().parse().unwrap();
        }
        line.clear();
    };
    while children(init).is_empty() {
        std::thread::yield_now();
    }
    let program = children(init)[0];
    let init_fd: OwnedFd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    let start = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut polls = [rustix::event::PollFd::new(
        &init_fd,
        rustix::event::PollFlags::IN,
    )];
    let ready = rustix::event::poll(
        &mut polls,
        Some(&rustix::time::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        }),
    )
    .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(ready, 1, "init must exit once its host is gone");
    println!("container gone {elapsed:?} after the host was killed");
    assert!(
        !std::path::Path::new(&format!("/proc/{program}")).exists()
            || std::fs::read_to_string(format!("/proc/{program}/stat")).is_err(),
        "the program died with its container"
    );
}

const ROOTLESS_VAR: &str = "HUTCH_TEST_ROOTLESS";

#[test]
fn rootless_suite() {
    if rootless() {
        // Already unprivileged: this run is the rootless suite.
        return;
    }
    if std::env::var_os(ROOTLESS_VAR).is_some() {
        panic!("rootless suite started as root");
    }
    let output = common::this_binary_as_nobody()
        .args(["--skip", "rootless_suite", "--test-threads=2"])
        .env(ROOTLESS_VAR, "1")
        .output()
        .expect("run this test binary as uid 65534");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "rootless run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        passed >= 20,
        "the rootless run ran {passed} tests:\n{stdout}"
    );
    println!("rootless suite: {passed} tests passed as uid 65534");
}

#[test]
fn disk_and_inode_floods_fail_inside_and_the_next_run_is_fine() {
    let mut c = builder()
        .workdir_size(1 << 20)
        .tmp_size(1 << 20)
        .tmpfs_inodes(64)
        .build()
        .unwrap();
    let out = run(&mut c, &["sh", "-c", "head -c 2000000 /dev/zero > /w/big"]);
    assert_eq!(out.result.status, Status::NonzeroExit);
    assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    let out = run(
        &mut c,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo x > /tmp/f$i || exit 9; i=$((i+1)); done",
        ],
    );
    assert_eq!(
        out.result.termination,
        Termination::Exited(9),
        "the inode limit stops it"
    );
    c.reset().unwrap();
    let out = run(&mut c, &["sh", "-c", "echo fine > /w/x && cat /w/x"]);
    assert_eq!(out.stdout, "fine\n");
}

/// Sends raw bytes as one frame on the container's socket, bypassing the
/// host's own encoding and checks.
fn send_raw(c: &Container, frame: &[u8]) {
    let sent = rustix::net::send(c.socket(), frame, rustix::net::SendFlags::NOSIGNAL).unwrap();
    assert_eq!(sent, frame.len());
}

fn recv_raw_reply(c: &Container) -> hutch_host::protocol::Reply {
    let mut buf = vec![0u8; hutch_host::protocol::MAX_FRAME_LEN];
    let (n, _) = rustix::net::recv(c.socket(), &mut buf, rustix::net::RecvFlags::empty()).unwrap();
    hutch_host::protocol::decode_reply(&buf[..n]).unwrap()
}

#[test]
fn init_answers_an_invalid_request_with_a_structured_error_and_carries_on() {
    use hutch_host::protocol::{ExecRequest, Reply, Request, encode_request};
    let mut c = container();
    // A well-formed frame whose content fails validation: an empty argv.
    let request = Request::Exec(ExecRequest::default());
    let mut frame = vec![0u8; 1024];
    let len = encode_request(&request, &mut frame).unwrap();
    send_raw(&c, &frame[..len]);
    match recv_raw_reply(&c) {
        Reply::Error(error) => {
            assert_eq!(error.stage, Stage::Validate);
            assert!(error.message.contains("argv is empty"), "{}", error.message);
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    c.ping().expect("init carries on after an invalid request");
    assert_eq!(run(&mut c, &["true"]).result.status, Status::Ok);
}

#[test]
fn init_answers_a_broken_frame_and_exits() {
    use hutch_host::protocol::Reply;
    let mut c = container();
    send_raw(&c, b"HT\x02\x00\xff\xff\xff\xff\xff\xff");
    match recv_raw_reply(&c) {
        Reply::Error(error) => assert_eq!(error.stage, Stage::Protocol, "{error:?}"),
        other => panic!("expected an error reply, got {other:?}"),
    }
    let err = c.ping().expect_err("init is gone");
    assert!(matches!(err, ContainerError::InitGone { .. }), "{err:?}");
    assert!(
        err.to_string().contains("exit code 1"),
        "init exited cleanly: {err}"
    );
}

#[test]
fn the_embedded_init_is_a_static_executable() {
    let init = hutch_host::embedded_init();
    assert_eq!(&init[..4], b"\x7fELF");
    // Program headers: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    let u16_at = |at: usize| u16::from_le_bytes([init[at], init[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(init[0x20..0x28].try_into().unwrap()) as usize;
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    let types: Vec<u32> = (0..count)
        .map(|i| {
            let at = phoff + i * entsize;
            u32::from_le_bytes(init[at..at + 4].try_into().unwrap())
        })
        .collect();
    const PT_INTERP: u32 = 3;
    const PT_DYNAMIC: u32 = 2;
    const DT_NULL: u64 = 0;
    const DT_NEEDED: u64 = 1;
    assert!(!types.contains(&PT_INTERP), "no dynamic loader: {types:?}");
    // A static PIE keeps a PT_DYNAMIC for its own relocations, but it names
    // no shared library (no DT_NEEDED entry).
    for (i, kind) in types.iter().enumerate() {
        if *kind != PT_DYNAMIC {
            continue;
        }
        let header = phoff + i * entsize;
        let offset = u64::from_le_bytes(init[header + 8..header + 16].try_into().unwrap()) as usize;
        let size = u64::from_le_bytes(init[header + 32..header + 40].try_into().unwrap()) as usize;
        for entry in init[offset..offset + size].chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().unwrap());
            assert_ne!(tag, DT_NEEDED, "init needs a shared library");
            if tag == DT_NULL {
                break;
            }
        }
    }
}

const INIT_OVERRIDE_CHILD: &str = "HUTCH_TEST_INIT_OVERRIDE";

/// Fails a helper test run directly: its parent sets `var` (and the
/// environment the helper needs).
fn only_through_the_parent(var: &str) {
    assert!(
        std::env::var_os(var).is_some(),
        "run through its parent test"
    );
}

#[test]
#[ignore = "helper: run by hutch_init_names_another_init_binary with HUTCH_INIT set"]
fn isolated_hutch_init_override() {
    only_through_the_parent(INIT_OVERRIDE_CHILD);
    let err = builder().build().unwrap_err();
    assert!(matches!(err, BuildError::InitBinary(_)), "{err:?}");
    assert!(err.to_string().contains("/no/such/hutch-init"), "{err}");
}

#[test]
fn hutch_init_names_another_init_binary() {
    // The variable is read by every build in the process: set it only in a
    // child process.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "isolated_hutch_init_override",
            "--ignored",
            "--test-threads=1",
        ])
        .env(INIT_OVERRIDE_CHILD, "1")
        .env(hutch_host::INIT_OVERRIDE_VAR, "/no/such/hutch-init")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}"
    );
}

const BAD_INIT_CHILD: &str = "HUTCH_TEST_BAD_INIT";

#[test]
#[ignore = "helper: run by a_child_that_cannot_exec_init_fails_the_build_and_leaves_the_host_whole"]
fn isolated_bad_init() {
    only_through_the_parent(BAD_INIT_CHILD);
    // The child that becomes init shares this process's memory until it
    // execs; here every exec fails, so every child writes its failure and
    // exits from its own stack. Many times over, from several threads at
    // once, while this process keeps allocating.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..25 {
                    let noise: Vec<String> = (0..100).map(|i| i.to_string()).collect();
                    let err = builder().build().unwrap_err();
                    match &err {
                        BuildError::Child { step, source } => {
                            assert_eq!(*step, "executing init", "{err}");
                            assert_eq!(source.raw_os_error(), Some(libc::ENOEXEC), "{err}");
                        }
                        other => panic!("not a child error: {other:?}"),
                    }
                    assert_eq!(noise.len(), 100);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no builder thread panicked");
    }
    let pid = std::process::id();
    let children: String = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default()
        })
        .collect();
    assert_eq!(children.trim(), "", "children left behind");
}

#[test]
fn a_child_that_cannot_exec_init_fails_the_build_and_leaves_the_host_whole() {
    let dir = std::env::temp_dir().join(format!("hutch-bad-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("hutch-init");
    // Neither ELF nor a script: execveat fails with ENOEXEC.
    std::fs::write(&bad, "this is not a program\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut binary = Command::new(std::env::current_exe().unwrap());
    binary.env(hutch_host::INIT_OVERRIDE_VAR, &bad);
    common::run_ignored_test(binary, "isolated_bad_init", BAD_INIT_CHILD);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Makes one SysV object of each kind in a run and checks the next run of
/// `c` sees none of them.
fn assert_ipc_objects_do_not_reach_the_next_run(c: &mut Container) {
    for kind in ["-M 4096", "-S 2", "-Q"] {
        let out = run(c, &["sh", "-c", &format!("ipcmk {kind}")]);
        assert_eq!(
            out.result.status,
            Status::Ok,
            "ipcmk {kind}: {}",
            out.stderr
        );
        // Seen inside the run that made it...
        let out = run(
            c,
            &["sh", "-c", &format!("ipcmk {kind} >/dev/null && ipcs -a")],
        );
        assert!(
            out.stdout.lines().any(|line| line.starts_with("0x")),
            "ipcmk {kind} made nothing to see: {}",
            out.stdout
        );
        // ...and by no later one.
        let out = run(c, &["ipcs", "-a"]);
        assert!(
            !out.stdout.lines().any(|line| line.starts_with("0x")),
            "an object of ipcmk {kind} reached the next run: {}",
            out.stdout
        );
    }
}

#[test]
fn ipc_objects_do_not_reach_the_next_run() {
    let mut c = container();
    assert_ipc_objects_do_not_reach_the_next_run(&mut c);
}

#[test]
fn without_a_mount_namespace_ipc_objects_still_do_not_reach_the_next_run() {
    // init cannot mount the message queue file system it sweeps through
    // here: every run gets an IPC namespace of its own instead.
    let scratch = tempdir();
    let dir = scratch.text();
    let mut c = builder()
        .namespaces(Namespaces {
            mount: false,
            ..Namespaces::default()
        })
        .workdir(dir)
        .build()
        .unwrap();
    assert_ipc_objects_do_not_reach_the_next_run(&mut c);
}

#[test]
fn a_request_up_to_the_largest_frame_is_sent_and_a_larger_one_refused_unsent() {
    let mut c = container();
    // 72 arguments of 3,000 bytes: within the frame, beyond the default
    // socket send buffer of many hosts.
    let long = "x".repeat(3000);
    let mut argv = vec!["sh", "-c", "echo $#", "sh"];
    argv.extend(std::iter::repeat_n(long.as_str(), 72));
    let out = run(&mut c, &argv);
    assert_eq!(out.result.status, Status::Ok, "{out:?}");
    assert_eq!(out.stdout, "72\n");
    // More than a frame holds: refused before anything is sent, and the
    // container serves the next request.
    let mut argv = vec!["true"];
    argv.extend(std::iter::repeat_n(long.as_str(), 100));
    let null = File::open("/dev/null").unwrap();
    let spec = ExecSpec::new(argv).stdio(null.as_fd(), null.as_fd(), null.as_fd());
    match c.exec(&spec) {
        Err(error @ ContainerError::TooLarge { .. }) => {
            assert_eq!(
                error.to_string(),
                "the exec request is too large to send to init"
            );
        }
        other => panic!("not refused as too large: {other:?}"),
    }
    assert!(!c.is_broken());
    c.ping().expect("init answers");
    assert_eq!(run(&mut c, &["echo", "ok"]).stdout, "ok\n");
}

/// As root, each container with a PID namespace maps to host ids of its
/// own (a block of them, so that per-user quotas are not shared between
/// containers); one without (whose programs may outlive it) maps as every
/// container did before, and a rootless one maps root to its caller.
#[test]
fn each_container_maps_to_host_ids_of_its_own_as_root() {
    let host_base = |c: &mut Container| -> u32 {
        let map = std::fs::read_to_string(format!("/proc/{}/uid_map", c.init_pid())).unwrap();
        map.split_whitespace()
            .nth(1)
            .and_then(|base| base.parse().ok())
            .unwrap_or_else(|| panic!("uid_map {map:?}"))
    };
    let (mut one, mut two) = (container(), container());
    let bases = [host_base(&mut one), host_base(&mut two)];
    if rootless() {
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(bases, [me, me]);
        return;
    }
    assert_ne!(bases[0], bases[1], "two live containers share host ids");
    let (first, len) = (hutch_host::ID_BLOCKS_FIRST, hutch_host::ID_BLOCK_LEN);
    for base in bases {
        assert!(
            base >= first
                && (base - first) % len == 0
                && (base - first) / len < hutch_host::ID_BLOCKS,
            "{base} is no block's first id"
        );
    }
    let without_pid = Namespaces {
        pid: false,
        ..Namespaces::default()
    };
    let mut shared = builder()
        .namespaces(without_pid)
        .build()
        .expect("container starts");
    assert_eq!(
        host_base(&mut shared),
        hutch_host::IdMap::ROOT_DEFAULT.host_uid
    );
}

#[test]
fn a_programs_user_outside_the_id_map_is_refused_naming_it() {
    let map = if rootless() {
        hutch_host::IdMap::current_user()
    } else {
        hutch_host::IdMap::ROOT_DEFAULT
    };
    let last = map.count - 1;
    match builder().user(last + 1, 0).build() {
        Err(error @ BuildError::UnmappedUser { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "container uid {} is outside the id map (container ids 0 to {last})",
                last + 1
            )
        ),
        other => panic!("not refused: {other:?}"),
    }
    match builder().user(0, last + 1).build() {
        Err(BuildError::UnmappedUser { what: "gid", .. }) => {}
        other => panic!("not refused: {other:?}"),
    }
}
