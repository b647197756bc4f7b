//! Validation: every `ValidationError` variant, from inputs that produce
//! exactly it, and valid messages that pass.

mod common;

use hutch_protocol::{
    Access, Accounting, Batch, Configure, CopyInFailure, CopyInItem, CopyInOutcome, CopyInStep,
    Delete, ErrorReply, ExecRequest, ExecResult, Hello, HelloReply, ItemError, ItemOutcome, Limits,
    MAX_ARGS, MAX_BATCH, MAX_BPF_INSTRUCTIONS, MAX_ENV, MAX_FDS_PER_FRAME, MAX_MOUNTS,
    MAX_NAME_LEN, MAX_PATH_LEN, MAX_PROCESSES, MAX_TIME_NS, MIN_MEMORY_BYTES, Mount, MountFlags,
    OpenFlags, OpenItem, PROTOCOL_VERSION, Reply, Request, Resource, Rlimit, Stage, Status,
    SymlinkItem, Termination, ValidationError,
};

use ValidationError as E;

fn exec() -> ExecRequest {
    common::exec_request()
}

/// The error validating `exec` with `fds` descriptors gives.
#[track_caller]
fn exec_error(exec: ExecRequest, fds: usize) -> ValidationError {
    Request::Exec(exec)
        .validate(fds)
        .expect_err("exec is invalid")
}

#[track_caller]
fn request_error(request: Request) -> ValidationError {
    request.validate(0).expect_err("request is invalid")
}

#[track_caller]
fn reply_error(reply: Reply, fds: usize) -> ValidationError {
    reply.validate(fds).expect_err("reply is invalid")
}

fn configure() -> Configure {
    match common::request_samples()
        .into_iter()
        .find(|(name, _)| *name == "configure")
    {
        Some((_, Request::Configure(configure))) => configure,
        _ => unreachable!("the configure sample is a configure request"),
    }
}

#[track_caller]
fn configure_error(configure: Configure) -> ValidationError {
    request_error(Request::Configure(configure))
}

fn open_item(path: &str) -> OpenItem {
    OpenItem {
        path: path.to_owned(),
        flags: OpenFlags {
            access: Access::Write,
            create: true,
            exclusive: false,
            truncate: true,
            append: false,
        },
        mode: 0o644,
        make_parents: false,
    }
}

fn symlink(link: &str, target: &str) -> SymlinkItem {
    SymlinkItem {
        link: link.to_owned(),
        target: target.to_owned(),
    }
}

fn strings(n: usize, s: &str) -> Vec<String> {
    vec![s.to_owned(); n]
}

fn error_reply(errno: i32) -> ErrorReply {
    ErrorReply {
        stage: Stage::Execve,
        errno,
        path: None,
        message: "no such file or directory".to_owned(),
    }
}

fn result(status: Status, termination: Termination, error: Option<ErrorReply>) -> ExecResult {
    ExecResult {
        status,
        termination,
        user_time_ns: 1_000,
        system_time_ns: 2_000,
        memory_bytes: 4 << 20,
        wall_time_ns: 10_000,
        accounting: Accounting::CgroupV2,
        error,
        processes_peak: Some(1),
    }
}

#[track_caller]
fn result_error(result: ExecResult) -> ValidationError {
    reply_error(Reply::Finished(result), 0)
}

fn out_of_range(
    field: &'static str,
    value: impl Into<i128>,
    min: impl Into<i128>,
    max: impl Into<i128>,
) -> ValidationError {
    E::OutOfRange {
        field,
        value: value.into(),
        min: min.into(),
        max: max.into(),
    }
}

fn fd_count(message: &'static str, attached: usize, expected: usize) -> ValidationError {
    E::FdCount {
        message,
        attached,
        expected,
    }
}

fn batch(results: Vec<ItemOutcome>, fds_attached: u32) -> Batch {
    Batch {
        results,
        fds_attached,
    }
}

fn failed(errno: i32) -> ItemOutcome {
    ItemOutcome::Failed(ItemError {
        errno,
        message: "permission denied".to_owned(),
    })
}

fn copy_item(path: &str, mode: u32) -> CopyInItem {
    CopyInItem {
        path: path.to_owned(),
        mode,
    }
}

/// A copy-in of `items`, validated with one descriptor per item.
#[track_caller]
fn copy_in_error(items: Vec<CopyInItem>) -> ValidationError {
    let fds = items.len();
    Request::CopyIn(items)
        .validate(fds)
        .expect_err("copy-in is invalid")
}

fn copy_out(paths: &[&str]) -> Request {
    Request::CopyOut(paths.iter().map(|p| (*p).to_owned()).collect())
}

fn copy_failed(step: CopyInStep, errno: i32) -> CopyInOutcome {
    CopyInOutcome::Failed(CopyInFailure {
        step,
        errno,
        message: "no space left on device".to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Valid messages.

#[test]
fn realistic_exec_with_three_descriptors_validates() {
    let request = Request::Exec(exec());
    let validated = request.clone().validate(3).expect("valid exec");
    assert_eq!(*validated, request);
    assert_eq!(validated.into_inner(), request);
}

#[test]
fn every_sample_validates_with_its_descriptors() {
    for (name, request) in common::request_samples() {
        let fds = common::request_fds(&request);
        if let Err(error) = request.validate(fds) {
            panic!("request sample {name:?} with {fds} descriptors: {error}");
        }
    }
    for (name, reply) in common::reply_samples() {
        let fds = common::reply_fds(&reply);
        if let Err(error) = reply.validate(fds) {
            panic!("reply sample {name:?} with {fds} descriptors: {error}");
        }
    }
}

#[test]
fn limits_at_the_edges_of_their_ranges_validate() {
    let mut exec = exec();
    exec.limits = Limits {
        cpu_time_ns: Some(1),
        wall_time_ns: Some(MAX_TIME_NS),
        output_bytes: Some(u64::MAX),
        memory_bytes: Some(MIN_MEMORY_BYTES),
        processes: Some(MAX_PROCESSES),
    };
    exec.uid = Some(u32::MAX - 1);
    exec.gid = Some(0);
    exec.rlimits = vec![Rlimit {
        resource: Resource::Nofile,
        soft: u64::MAX,
        hard: u64::MAX,
    }];
    assert!(Request::Exec(exec.clone()).validate(3).is_ok());
    exec.limits = Limits {
        cpu_time_ns: Some(MAX_TIME_NS),
        wall_time_ns: Some(1),
        output_bytes: Some(1),
        memory_bytes: Some(u64::MAX),
        processes: Some(1),
    };
    assert!(Request::Exec(exec).validate(3).is_ok());
}

#[test]
fn strings_at_their_maximum_length_validate() {
    let path = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert!(Request::Open(vec![open_item(&path)]).validate(0).is_ok());
    let mut configure = configure();
    configure.hostname = "h".repeat(MAX_NAME_LEN);
    configure.domainname = "example.org".to_owned();
    assert!(Request::Configure(configure).validate(0).is_ok());
    let target = "t".repeat(MAX_PATH_LEN);
    assert!(
        Request::Symlink(vec![symlink("/l", &target)])
            .validate(0)
            .is_ok()
    );
}

#[test]
fn lists_at_their_maximum_length_validate() {
    let mut exec = exec();
    exec.argv = strings(MAX_ARGS, "a");
    exec.env = strings(MAX_ENV, "K=v");
    exec.fd_map = (0..MAX_FDS_PER_FRAME as u32).collect();
    assert!(Request::Exec(exec).validate(MAX_FDS_PER_FRAME).is_ok());
    assert!(
        Request::Open(vec![open_item("/a"); MAX_FDS_PER_FRAME])
            .validate(0)
            .is_ok()
    );
}

#[test]
fn paths_with_dots_that_are_not_parent_components_validate() {
    for path in ["/box/...", "/box/..a", "/box/a..", "/.hidden", "/box/./x"] {
        assert!(
            Request::Open(vec![open_item(path)]).validate(0).is_ok(),
            "{path}"
        );
    }
}

#[test]
fn consistent_exec_results_validate() {
    let error = Some(error_reply(2));
    for result in [
        result(Status::Ok, Termination::Exited(0), None),
        result(Status::NonzeroExit, Termination::Exited(255), None),
        result(Status::Signalled, Termination::Signalled(64), None),
        result(Status::TimeLimit, Termination::Signalled(9), None),
        result(Status::TimeLimit, Termination::Exited(0), None),
        result(Status::MemoryLimit, Termination::Exited(137), None),
        result(Status::RunnerError, Termination::NotStarted, error.clone()),
        result(Status::RunnerError, Termination::Exited(127), error),
    ] {
        assert!(
            Reply::Finished(result.clone()).validate(0).is_ok(),
            "{result:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Exec requests.

#[test]
fn exec_with_empty_argv_is_empty_argv() {
    let mut exec = exec();
    exec.argv.clear();
    assert_eq!(exec_error(exec, 3), E::EmptyArgv);
}

#[test]
fn exec_with_empty_program_name_is_empty() {
    let mut exec = exec();
    exec.argv[0].clear();
    assert_eq!(
        exec_error(exec, 3),
        E::Empty {
            field: "exec argv[0]"
        }
    );
}

#[test]
fn exec_with_relative_or_parent_cwd_is_rejected() {
    let mut relative = exec();
    relative.cwd = Some("box".to_owned());
    assert_eq!(
        exec_error(relative, 3),
        E::RelativePath {
            field: "exec cwd",
            path: "box".to_owned()
        }
    );
    let mut parent = exec();
    parent.cwd = Some("/box/../etc".to_owned());
    assert_eq!(
        exec_error(parent, 3),
        E::ParentComponent {
            field: "exec cwd",
            path: "/box/../etc".to_owned()
        }
    );
}

#[test]
fn exec_strings_with_nul_are_nul() {
    let mut argument = exec();
    argument.argv[1] = "main\0.py".to_owned();
    assert_eq!(
        exec_error(argument, 3),
        E::Nul {
            field: "exec argument"
        }
    );
    let mut env = exec();
    env.env[1] = "HOME=/b\0x".to_owned();
    assert_eq!(
        exec_error(env, 3),
        E::Nul {
            field: "environment entry"
        }
    );
    let mut cwd = exec();
    cwd.cwd = Some("/box\0".to_owned());
    assert_eq!(exec_error(cwd, 3), E::Nul { field: "exec cwd" });
}

#[test]
fn exec_with_too_many_entries_is_too_many() {
    let mut argv = exec();
    argv.argv = strings(MAX_ARGS + 1, "a");
    assert_eq!(
        exec_error(argv, 3),
        E::TooMany {
            field: "exec argv",
            count: MAX_ARGS + 1,
            max: MAX_ARGS
        }
    );
    let mut env = exec();
    env.env = strings(MAX_ENV + 1, "K=v");
    assert_eq!(
        exec_error(env, 3),
        E::TooMany {
            field: "exec env",
            count: MAX_ENV + 1,
            max: MAX_ENV
        }
    );
    let mut rlimits = exec();
    rlimits.rlimits = common::RESOURCES
        .iter()
        .chain(&[Resource::Cpu])
        .map(|&resource| Rlimit {
            resource,
            soft: 1,
            hard: 1,
        })
        .collect();
    assert_eq!(
        exec_error(rlimits, 3),
        E::TooMany {
            field: "exec rlimits",
            count: 17,
            max: 16
        }
    );
    let mut seccomp = exec();
    seccomp.seccomp = vec![seccomp.seccomp[0]; MAX_BPF_INSTRUCTIONS + 1];
    assert_eq!(
        exec_error(seccomp, 3),
        E::TooMany {
            field: "exec seccomp",
            count: MAX_BPF_INSTRUCTIONS + 1,
            max: MAX_BPF_INSTRUCTIONS
        }
    );
}

#[test]
fn exec_with_more_descriptors_than_a_frame_carries_is_too_many() {
    let mut exec = exec();
    exec.fd_map = (0..=MAX_FDS_PER_FRAME as u32).collect();
    assert_eq!(
        exec_error(exec.clone(), MAX_FDS_PER_FRAME + 1),
        E::TooMany {
            field: "exec descriptors",
            count: MAX_FDS_PER_FRAME + 1,
            max: MAX_FDS_PER_FRAME
        }
    );
    assert_eq!(
        exec_error(exec, MAX_FDS_PER_FRAME),
        E::TooMany {
            field: "exec fd_map",
            count: MAX_FDS_PER_FRAME + 1,
            max: MAX_FDS_PER_FRAME
        }
    );
}

#[test]
fn malformed_environment_entries_are_bad_env() {
    for (index, entry) in [(0, "PATH"), (1, "=value"), (1, ""), (0, "=")] {
        let mut exec = exec();
        exec.env[index] = entry.to_owned();
        assert_eq!(
            exec_error(exec, 3),
            E::BadEnv {
                index,
                entry: entry.to_owned()
            },
            "{entry:?}"
        );
    }
    // A value may be empty or hold '='.
    let mut exec = exec();
    exec.env = vec!["A=".to_owned(), "B==c=d".to_owned()];
    assert!(Request::Exec(exec).validate(3).is_ok());
}

#[test]
fn exec_limits_out_of_range_are_out_of_range() {
    let cases: [(Limits, ValidationError); 8] = [
        (
            Limits {
                cpu_time_ns: Some(0),
                ..Limits::default()
            },
            out_of_range("cpu time limit (ns)", 0, 1, MAX_TIME_NS),
        ),
        (
            Limits {
                cpu_time_ns: Some(MAX_TIME_NS + 1),
                ..Limits::default()
            },
            out_of_range("cpu time limit (ns)", MAX_TIME_NS + 1, 1, MAX_TIME_NS),
        ),
        (
            Limits {
                wall_time_ns: Some(0),
                ..Limits::default()
            },
            out_of_range("wall time limit (ns)", 0, 1, MAX_TIME_NS),
        ),
        (
            Limits {
                output_bytes: Some(0),
                ..Limits::default()
            },
            out_of_range("output limit (bytes)", 0, 1, u64::MAX),
        ),
        (
            Limits {
                memory_bytes: Some(MIN_MEMORY_BYTES - 1),
                ..Limits::default()
            },
            out_of_range(
                "memory limit (bytes)",
                MIN_MEMORY_BYTES - 1,
                MIN_MEMORY_BYTES,
                u64::MAX,
            ),
        ),
        (
            Limits {
                memory_bytes: Some(0),
                ..Limits::default()
            },
            out_of_range("memory limit (bytes)", 0, MIN_MEMORY_BYTES, u64::MAX),
        ),
        (
            Limits {
                processes: Some(0),
                ..Limits::default()
            },
            out_of_range("process limit", 0, 1, u64::from(MAX_PROCESSES)),
        ),
        (
            Limits {
                processes: Some(MAX_PROCESSES + 1),
                ..Limits::default()
            },
            out_of_range(
                "process limit",
                u64::from(MAX_PROCESSES) + 1,
                1,
                u64::from(MAX_PROCESSES),
            ),
        ),
    ];
    for (limits, expected) in cases {
        let mut exec = exec();
        exec.limits = limits;
        assert_eq!(exec_error(exec, 3), expected, "{limits:?}");
    }
}

#[test]
fn exec_ids_of_minus_one_are_out_of_range() {
    let mut uid = exec();
    uid.uid = Some(u32::MAX);
    assert_eq!(
        exec_error(uid, 3),
        out_of_range("exec uid", u64::from(u32::MAX), 0, u64::from(u32::MAX - 1))
    );
    let mut gid = exec();
    gid.gid = Some(u32::MAX);
    assert_eq!(
        exec_error(gid, 3),
        out_of_range("exec gid", u64::from(u32::MAX), 0, u64::from(u32::MAX - 1))
    );
}

#[test]
fn rlimit_with_soft_above_hard_is_soft_above_hard() {
    let mut exec = exec();
    exec.rlimits[1] = Rlimit {
        resource: Resource::Nofile,
        soft: 65,
        hard: 64,
    };
    assert_eq!(
        exec_error(exec.clone(), 3),
        E::SoftAboveHard {
            resource: Resource::Nofile,
            soft: 65,
            hard: 64
        }
    );
    // RLIM_INFINITY soft under a finite hard limit.
    exec.rlimits[1].soft = u64::MAX;
    assert_eq!(
        exec_error(exec, 3),
        E::SoftAboveHard {
            resource: Resource::Nofile,
            soft: u64::MAX,
            hard: 64
        }
    );
}

#[test]
fn descriptor_index_beyond_the_attached_ones_is_fd_out_of_range() {
    let mut map = exec();
    map.fd_map = vec![0, 1, 3];
    assert_eq!(
        exec_error(map, 3),
        E::FdOutOfRange {
            field: "exec fd_map",
            index: 3,
            attached: 3
        }
    );
    let mut exec_fd = exec();
    exec_fd.exec_fd = Some(3);
    assert_eq!(
        exec_error(exec_fd, 3),
        E::FdOutOfRange {
            field: "exec exec_fd",
            index: 3,
            attached: 3
        }
    );
    // Indices beyond any frame's descriptors, with none attached.
    for index in [0, MAX_FDS_PER_FRAME as u32, u32::MAX] {
        let mut exec = exec();
        exec.fd_map = vec![index];
        assert_eq!(
            exec_error(exec, 0),
            E::FdOutOfRange {
                field: "exec fd_map",
                index,
                attached: 0
            }
        );
    }
}

#[test]
fn attached_descriptor_nothing_uses_is_fd_unused() {
    let mut gap = exec();
    gap.fd_map = vec![0, 2, 2];
    assert_eq!(exec_error(gap, 3), E::FdUnused { index: 1 });
    let mut extra = exec();
    extra.fd_map = Vec::new();
    assert_eq!(exec_error(extra, 1), E::FdUnused { index: 0 });
    // One more descriptor than the realistic exec maps.
    assert_eq!(exec_error(exec(), 4), E::FdUnused { index: 3 });
    // exec_fd counts as a use.
    let mut exec_fd = exec();
    exec_fd.exec_fd = Some(3);
    assert!(Request::Exec(exec_fd).validate(4).is_ok());
}

// ---------------------------------------------------------------------------
// Other requests.

#[test]
fn hello_naming_another_version_is_hello_version() {
    for version in [0, PROTOCOL_VERSION + 1, u16::MAX] {
        assert_eq!(
            request_error(Request::Hello(Hello {
                version,
                features: 0
            })),
            E::HelloVersion {
                found: version,
                expected: PROTOCOL_VERSION
            }
        );
    }
}

#[test]
fn empty_batches_are_empty() {
    assert_eq!(
        request_error(Request::Open(Vec::new())),
        E::Empty {
            field: "open items"
        }
    );
    assert_eq!(
        request_error(Request::Symlink(Vec::new())),
        E::Empty {
            field: "symlink items"
        }
    );
}

#[test]
fn oversized_batches_are_too_many() {
    assert_eq!(
        request_error(Request::Open(vec![open_item("/a"); MAX_FDS_PER_FRAME + 1])),
        E::TooMany {
            field: "open items",
            count: MAX_FDS_PER_FRAME + 1,
            max: MAX_FDS_PER_FRAME
        }
    );
    assert_eq!(
        request_error(Request::Symlink(vec![symlink("/a", "b"); MAX_BATCH + 1])),
        E::TooMany {
            field: "symlink items",
            count: MAX_BATCH + 1,
            max: MAX_BATCH
        }
    );
}

#[test]
fn open_path_problems_are_reported_for_the_open_path() {
    let cases = [
        (
            "box/in.txt",
            E::RelativePath {
                field: "open path",
                path: "box/in.txt".to_owned(),
            },
        ),
        ("", E::Empty { field: "open path" }),
        (
            "/box/../etc/shadow",
            E::ParentComponent {
                field: "open path",
                path: "/box/../etc/shadow".to_owned(),
            },
        ),
        (
            "/box/..",
            E::ParentComponent {
                field: "open path",
                path: "/box/..".to_owned(),
            },
        ),
        (
            "/..",
            E::ParentComponent {
                field: "open path",
                path: "/..".to_owned(),
            },
        ),
        ("/box/in\0.txt", E::Nul { field: "open path" }),
    ];
    for (path, expected) in cases {
        assert_eq!(
            request_error(Request::Open(vec![open_item(path)])),
            expected,
            "{path:?}"
        );
    }
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(
        request_error(Request::Open(vec![open_item(&long)])),
        E::TooLong {
            field: "open path",
            len: MAX_PATH_LEN + 1,
            max: MAX_PATH_LEN
        }
    );
}

#[test]
fn open_of_exclusive_without_create_is_rejected() {
    let mut item = open_item("/box/out");
    item.flags.create = false;
    item.flags.exclusive = true;
    assert_eq!(
        request_error(Request::Open(vec![open_item("/box/a"), item])),
        E::ExclusiveWithoutCreate {
            path: "/box/out".to_owned()
        }
    );
}

#[test]
fn open_mode_beyond_permission_bits_is_out_of_range() {
    let mut item = open_item("/box/out");
    item.mode = 0o10000;
    assert_eq!(
        request_error(Request::Open(vec![item])),
        out_of_range("open mode", 0o10000, 0, 0o7777)
    );
}

#[test]
fn delete_of_the_root_or_a_relative_path_is_rejected() {
    for path in ["/", "//", "///", "/.", "/./", "/./."] {
        assert_eq!(
            request_error(Request::Delete(Delete {
                path: path.to_owned()
            })),
            E::Empty {
                field: "delete path below the root"
            },
            "{path}"
        );
    }
    assert_eq!(
        request_error(Request::Delete(Delete {
            path: "tmp/x".to_owned()
        })),
        E::RelativePath {
            field: "delete path",
            path: "tmp/x".to_owned()
        }
    );
}

#[test]
fn symlink_problems_are_reported_for_their_field() {
    let cases = [
        (
            symlink("box/link", "/target"),
            E::RelativePath {
                field: "symlink path",
                path: "box/link".to_owned(),
            },
        ),
        (
            symlink("/box/link", ""),
            E::Empty {
                field: "symlink target",
            },
        ),
        (
            symlink("/box/link", "tar\0get"),
            E::Nul {
                field: "symlink target",
            },
        ),
        (
            symlink("/box/link", &"t".repeat(MAX_PATH_LEN + 1)),
            E::TooLong {
                field: "symlink target",
                len: MAX_PATH_LEN + 1,
                max: MAX_PATH_LEN,
            },
        ),
    ];
    for (item, expected) in cases {
        assert_eq!(request_error(Request::Symlink(vec![item])), expected);
    }
    // A relative target with `..` is what symbolic links are for.
    assert!(
        Request::Symlink(vec![symlink("/box/l", "../../x")])
            .validate(0)
            .is_ok()
    );
}

#[test]
fn configure_names_with_bad_characters_are_bad_name() {
    for name in ["my_host", "a b", "hôte", "host/", "x\0"] {
        let mut configure = configure();
        configure.hostname = name.to_owned();
        assert_eq!(
            configure_error(configure),
            E::BadName {
                field: "hostname",
                name: name.to_owned()
            },
            "{name:?}"
        );
    }
    let mut configure = configure();
    configure.domainname = "example.org!".to_owned();
    assert_eq!(
        configure_error(configure),
        E::BadName {
            field: "domain name",
            name: "example.org!".to_owned()
        }
    );
}

#[test]
fn configure_names_too_long_are_too_long() {
    let mut configure = configure();
    configure.hostname = "h".repeat(MAX_NAME_LEN + 1);
    assert_eq!(
        configure_error(configure),
        E::TooLong {
            field: "hostname",
            len: MAX_NAME_LEN + 1,
            max: MAX_NAME_LEN
        }
    );
}

#[test]
fn configure_path_problems_are_reported_for_their_field() {
    let mut workdir = configure();
    workdir.workdir = "box".to_owned();
    assert_eq!(
        configure_error(workdir),
        E::RelativePath {
            field: "work directory",
            path: "box".to_owned()
        }
    );
    let mut masked = configure();
    masked.masked_paths.push("/proc/../sys".to_owned());
    assert_eq!(
        configure_error(masked),
        E::ParentComponent {
            field: "masked path",
            path: "/proc/../sys".to_owned()
        }
    );
    let mut link = configure();
    link.symlinks[0].link = "dev/fd".to_owned();
    assert_eq!(
        configure_error(link),
        E::RelativePath {
            field: "symlink path",
            path: "dev/fd".to_owned()
        }
    );
    let mut command = configure();
    command.init_command = vec!["/bin/sh".to_owned(), "-c\0".to_owned()];
    assert_eq!(
        configure_error(command),
        E::Nul {
            field: "init command argument"
        }
    );
}

#[test]
fn configure_mount_problems_are_reported_for_their_field() {
    let cases = [
        (
            Mount::Bind {
                source: "usr".to_owned(),
                target: "/usr".to_owned(),
                writable: false,
                flags: MountFlags::default(),
            },
            E::RelativePath {
                field: "bind mount source",
                path: "usr".to_owned(),
            },
        ),
        (
            Mount::Bind {
                source: "/usr".to_owned(),
                target: "/usr/..".to_owned(),
                writable: false,
                flags: MountFlags::default(),
            },
            E::ParentComponent {
                field: "bind mount target",
                path: "/usr/..".to_owned(),
            },
        ),
        (
            Mount::Tmpfs {
                target: "/tmp".to_owned(),
                size_bytes: 4095,
                max_inodes: 1,
                mode: 0o1777,
                read_only: false,
            },
            out_of_range("tmpfs size_bytes", 4095, 4096, u64::MAX),
        ),
        (
            Mount::Tmpfs {
                target: "/tmp".to_owned(),
                size_bytes: 4096,
                max_inodes: 0,
                mode: 0o1777,
                read_only: false,
            },
            out_of_range("tmpfs max_inodes", 0, 1, u64::MAX),
        ),
        (
            Mount::Tmpfs {
                target: "/tmp".to_owned(),
                size_bytes: 4096,
                max_inodes: 1,
                mode: 0o10000,
                read_only: false,
            },
            out_of_range("tmpfs mode", 0o10000, 0, 0o7777),
        ),
        (
            Mount::Tmpfs {
                target: "tmp".to_owned(),
                size_bytes: 4096,
                max_inodes: 1,
                mode: 0,
                read_only: false,
            },
            E::RelativePath {
                field: "tmpfs target",
                path: "tmp".to_owned(),
            },
        ),
        (
            Mount::Proc {
                target: "/pr\0c".to_owned(),
                read_only: true,
            },
            E::Nul {
                field: "proc target",
            },
        ),
        (
            Mount::Device {
                source: "/dev/null".to_owned(),
                target: "null".to_owned(),
            },
            E::RelativePath {
                field: "device target",
                path: "null".to_owned(),
            },
        ),
    ];
    for (mount, expected) in cases {
        let mut configure = configure();
        configure.mounts.push(mount.clone());
        assert_eq!(configure_error(configure), expected, "{mount:?}");
    }
}

#[test]
fn configure_lists_beyond_their_maximum_are_too_many() {
    let mut mounts = configure();
    mounts.mounts = vec![mounts.mounts[3].clone(); MAX_MOUNTS + 1];
    assert_eq!(
        configure_error(mounts),
        E::TooMany {
            field: "configure mounts",
            count: MAX_MOUNTS + 1,
            max: MAX_MOUNTS
        }
    );
    let mut masked = configure();
    masked.masked_paths = strings(MAX_MOUNTS + 1, "/proc/kcore");
    assert_eq!(
        configure_error(masked),
        E::TooMany {
            field: "configure masked paths",
            count: MAX_MOUNTS + 1,
            max: MAX_MOUNTS
        }
    );
    let mut command = configure();
    command.init_command = strings(MAX_ARGS + 1, "x");
    assert_eq!(
        configure_error(command),
        E::TooMany {
            field: "init command",
            count: MAX_ARGS + 1,
            max: MAX_ARGS
        }
    );
}

#[test]
fn configure_ids_of_minus_one_are_out_of_range() {
    let mut configure = configure();
    configure.gid = u32::MAX;
    assert_eq!(
        configure_error(configure),
        out_of_range(
            "configure gid",
            u64::from(u32::MAX),
            0,
            u64::from(u32::MAX - 1)
        )
    );
}

// ---------------------------------------------------------------------------
// Copy-in and copy-out.

#[test]
fn copy_in_of_one_to_64_items_with_one_descriptor_each_validates() {
    for count in [1, 2, MAX_FDS_PER_FRAME] {
        let items = vec![copy_item("/box/a", 0o644); count];
        assert!(
            Request::CopyIn(items).validate(count).is_ok(),
            "{count} items"
        );
    }
}

#[test]
fn copy_in_modes_from_0_to_0o7777_validate() {
    for mode in [0, 0o644, 0o755, 0o4755, 0o7777] {
        assert!(
            Request::CopyIn(vec![copy_item("/box/a", mode)])
                .validate(1)
                .is_ok(),
            "{mode:o}"
        );
    }
}

#[test]
fn copy_in_and_copy_out_paths_at_their_maximum_length_validate() {
    let path = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert!(
        Request::CopyIn(vec![copy_item(&path, 0o644)])
            .validate(1)
            .is_ok()
    );
    assert!(copy_out(&[&path]).validate(0).is_ok());
}

#[test]
fn copy_in_without_items_is_empty() {
    assert_eq!(
        Request::CopyIn(Vec::new()).validate(0),
        Err(E::Empty {
            field: "copy-in items"
        })
    );
}

#[test]
fn copy_in_of_more_items_than_a_frame_carries_descriptors_is_too_many() {
    let count = MAX_FDS_PER_FRAME + 1;
    assert_eq!(
        copy_in_error(vec![copy_item("/box/a", 0o644); count]),
        E::TooMany {
            field: "copy-in items",
            count,
            max: MAX_FDS_PER_FRAME
        }
    );
}

#[test]
fn copy_in_path_problems_are_reported_for_the_copy_in_path() {
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    let cases = [
        (
            "box/main.py",
            E::RelativePath {
                field: "copy-in path",
                path: "box/main.py".to_owned(),
            },
        ),
        (
            "",
            E::Empty {
                field: "copy-in path",
            },
        ),
        (
            "/box/../etc/passwd",
            E::ParentComponent {
                field: "copy-in path",
                path: "/box/../etc/passwd".to_owned(),
            },
        ),
        (
            "/box/ma\0in.py",
            E::Nul {
                field: "copy-in path",
            },
        ),
        (
            long.as_str(),
            E::TooLong {
                field: "copy-in path",
                len: MAX_PATH_LEN + 1,
                max: MAX_PATH_LEN,
            },
        ),
    ];
    for (path, expected) in cases {
        // The bad item comes after a good one: every item is checked.
        let items = vec![copy_item("/box/ok", 0o644), copy_item(path, 0o644)];
        assert_eq!(copy_in_error(items), expected, "{path:?}");
    }
}

#[test]
fn copy_in_of_the_root_is_empty_below_the_root() {
    for path in ["/", "//", "///", "/.", "/./", "/./.", "/.//./"] {
        // The bad item comes after a good one: every item is checked.
        let items = vec![copy_item("/box/ok", 0o644), copy_item(path, 0o644)];
        assert_eq!(
            copy_in_error(items),
            E::Empty {
                field: "copy-in path below the root"
            },
            "{path:?}"
        );
    }
    // Names that merely start with a dot, or a file below a `.`, are below
    // the root.
    for path in ["/.a", "/..a", "/./a", "/a/.", "/a/"] {
        assert!(
            Request::CopyIn(vec![copy_item(path, 0o644)])
                .validate(1)
                .is_ok(),
            "{path:?}"
        );
    }
}

#[test]
fn copy_in_of_the_root_is_rejected_before_its_mode_and_the_descriptor_count() {
    assert_eq!(
        Request::CopyIn(vec![copy_item("/", 0o10000)]).validate(0),
        Err(E::Empty {
            field: "copy-in path below the root"
        })
    );
    // A path problem comes first.
    assert_eq!(
        copy_in_error(vec![copy_item("/./../", 0o644)]),
        E::ParentComponent {
            field: "copy-in path",
            path: "/./../".to_owned()
        }
    );
}

#[test]
fn copy_in_mode_beyond_permission_bits_is_out_of_range() {
    for mode in [0o10000, 0o100644, u32::MAX] {
        let items = vec![copy_item("/box/a", 0o644), copy_item("/box/b", mode)];
        assert_eq!(
            copy_in_error(items),
            out_of_range("copy-in mode", mode, 0, 0o7777),
            "{mode:o}"
        );
    }
}

#[test]
fn copy_in_with_other_descriptors_than_items_is_fd_count() {
    let items = vec![copy_item("/box/a", 0o644); 3];
    assert!(Request::CopyIn(items.clone()).validate(3).is_ok());
    for fds in [0, 1, 2, 4, MAX_FDS_PER_FRAME] {
        assert_eq!(
            Request::CopyIn(items.clone()).validate(fds),
            Err(fd_count("copy-in", fds, 3)),
            "{fds} descriptors"
        );
    }
}

#[test]
fn copy_in_items_are_checked_before_the_descriptor_count() {
    let items = vec![copy_item("box/a", 0o644)];
    assert_eq!(
        Request::CopyIn(items).validate(0),
        Err(E::RelativePath {
            field: "copy-in path",
            path: "box/a".to_owned()
        })
    );
}

#[test]
fn copy_out_of_one_to_64_paths_validates() {
    for count in [1, 2, MAX_FDS_PER_FRAME] {
        assert!(
            copy_out(&vec!["/box/out.txt"; count]).validate(0).is_ok(),
            "{count} paths"
        );
    }
}

#[test]
fn copy_out_without_paths_is_empty() {
    assert_eq!(
        request_error(Request::CopyOut(Vec::new())),
        E::Empty {
            field: "copy-out paths"
        }
    );
}

#[test]
fn copy_out_of_more_paths_than_a_frame_carries_descriptors_is_too_many() {
    let count = MAX_FDS_PER_FRAME + 1;
    assert_eq!(
        request_error(copy_out(&vec!["/box/out.txt"; count])),
        E::TooMany {
            field: "copy-out paths",
            count,
            max: MAX_FDS_PER_FRAME
        }
    );
}

#[test]
fn copy_out_path_problems_are_reported_for_the_copy_out_path() {
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    let cases = [
        (
            "out.txt",
            E::RelativePath {
                field: "copy-out path",
                path: "out.txt".to_owned(),
            },
        ),
        (
            "/box/..",
            E::ParentComponent {
                field: "copy-out path",
                path: "/box/..".to_owned(),
            },
        ),
        (
            "/box/out\0",
            E::Nul {
                field: "copy-out path",
            },
        ),
        (
            long.as_str(),
            E::TooLong {
                field: "copy-out path",
                len: MAX_PATH_LEN + 1,
                max: MAX_PATH_LEN,
            },
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(
            request_error(copy_out(&["/box/ok", path])),
            expected,
            "{path:?}"
        );
    }
}

#[test]
fn copied_in_reply_of_up_to_64_outcomes_validates() {
    let failures = [
        copy_failed(CopyInStep::Create, 0),
        copy_failed(CopyInStep::Create, 4095),
        copy_failed(CopyInStep::Fill, 0),
        copy_failed(CopyInStep::Fill, 4095),
    ];
    for outcomes in [
        Vec::new(),
        failures.to_vec(),
        vec![CopyInOutcome::Done; MAX_FDS_PER_FRAME],
    ] {
        let count = outcomes.len();
        assert!(
            Reply::CopiedIn(outcomes).validate(0).is_ok(),
            "{count} outcomes"
        );
    }
}

#[test]
fn copied_in_reply_of_more_outcomes_than_a_copy_in_has_items_is_too_many() {
    let count = MAX_FDS_PER_FRAME + 1;
    assert_eq!(
        reply_error(Reply::CopiedIn(vec![CopyInOutcome::Done; count]), 0),
        E::TooMany {
            field: "copied-in results",
            count,
            max: MAX_FDS_PER_FRAME
        }
    );
}

#[test]
fn copied_in_reply_with_an_errno_beyond_linux_is_out_of_range() {
    for errno in [-1, 4096, i32::MIN, i32::MAX] {
        for step in [CopyInStep::Create, CopyInStep::Fill] {
            let outcomes = vec![CopyInOutcome::Done, copy_failed(step, errno)];
            assert_eq!(
                reply_error(Reply::CopiedIn(outcomes), 0),
                out_of_range("copy-in errno", errno, 0, 4095),
                "{step:?} errno {errno}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Descriptor counts.

/// The kind name each sample's message reports in `FdCount`, for every
/// message that must come without descriptors.
const NO_FD_REQUESTS: [(&str, &str); 12] = [
    ("hello", "hello"),
    ("hello-all-features", "hello"),
    ("ping", "ping"),
    ("configure", "configure"),
    ("configure-minimal", "configure"),
    ("open", "open"),
    ("delete", "delete"),
    ("symlink", "symlink"),
    ("reset", "reset"),
    ("proceed", "proceed"),
    ("kill", "kill"),
    ("copy-out", "copy-out"),
];

const NO_FD_REPLIES: [(&str, &str); 10] = [
    ("hello", "hello reply"),
    ("pong", "pong"),
    ("ack", "ack"),
    ("error", "error reply"),
    ("linked", "linked reply"),
    ("started", "started reply"),
    ("finished-ok", "finished reply"),
    ("finished-runner-error", "finished reply"),
    ("copied-in", "copied-in reply"),
    ("copied-in-done", "copied-in reply"),
];

#[test]
fn ping_with_one_descriptor_is_fd_count() {
    assert_eq!(Request::Ping.validate(1), Err(fd_count("ping", 1, 0)));
}

#[test]
fn every_request_but_exec_with_descriptors_is_fd_count() {
    let samples = common::request_samples();
    for (name, kind) in NO_FD_REQUESTS {
        let (_, request) = samples.iter().find(|(n, _)| *n == name).unwrap();
        assert!(request.clone().validate(0).is_ok(), "{name}");
        for fds in [1, 3, MAX_FDS_PER_FRAME + 1] {
            assert_eq!(
                request.clone().validate(fds),
                Err(fd_count(kind, fds, 0)),
                "{name} with {fds}"
            );
        }
    }
    // Every request kind but exec, cgroup and copy-in (which carry
    // descriptors) is listed.
    let mut listed: Vec<_> = NO_FD_REQUESTS.iter().map(|(_, kind)| *kind).collect();
    listed.dedup();
    assert_eq!(listed.len(), 10);
}

#[test]
fn every_reply_but_opened_with_descriptors_is_fd_count() {
    let samples = common::reply_samples();
    for (name, kind) in NO_FD_REPLIES {
        let (_, reply) = samples.iter().find(|(n, _)| *n == name).unwrap();
        assert!(reply.clone().validate(0).is_ok(), "{name}");
        for fds in [1, 2] {
            assert_eq!(
                reply.clone().validate(fds),
                Err(fd_count(kind, fds, 0)),
                "{name} with {fds}"
            );
        }
    }
}

#[test]
fn opened_reply_whose_header_miscounts_its_items_is_fd_count() {
    // Two items done, the header says one (and one arrived).
    let reply = Reply::Opened(batch(
        vec![ItemOutcome::Done, failed(13), ItemOutcome::Done],
        1,
    ));
    assert_eq!(reply_error(reply, 1), fd_count("opened reply header", 1, 2));
    // Nothing done, the header says one.
    let reply = Reply::Opened(batch(vec![failed(2)], 1));
    assert_eq!(reply_error(reply, 1), fd_count("opened reply header", 1, 0));
}

#[test]
fn opened_reply_with_other_descriptors_than_it_announces_is_fd_count() {
    let reply = Reply::Opened(batch(
        vec![ItemOutcome::Done, failed(13), ItemOutcome::Done],
        2,
    ));
    assert!(reply.clone().validate(2).is_ok());
    for fds in [0, 1, 3] {
        assert_eq!(
            reply_error(reply.clone(), fds),
            fd_count("opened reply", fds, 2)
        );
    }
}

#[test]
fn linked_reply_announcing_descriptors_is_fd_count() {
    let reply = Reply::Linked(batch(vec![ItemOutcome::Done], 1));
    assert_eq!(reply_error(reply, 0), fd_count("linked reply header", 1, 0));
}

// ---------------------------------------------------------------------------
// Other replies.

#[test]
fn batches_with_bad_errno_or_too_many_results_are_rejected() {
    for errno in [-1, 4096, i32::MAX] {
        let reply = Reply::Linked(batch(vec![failed(errno)], 0));
        match reply_error(reply, 0) {
            E::OutOfRange {
                field: "item errno",
                min: 0,
                max: 4095,
                ..
            } => {}
            other => panic!("errno {errno}: {other:?}"),
        }
    }
    let reply = Reply::Linked(batch(vec![ItemOutcome::Done; MAX_BATCH + 1], 0));
    assert_eq!(
        reply_error(reply, 0),
        E::TooMany {
            field: "batch results",
            count: MAX_BATCH + 1,
            max: MAX_BATCH
        }
    );
}

#[test]
fn error_reply_with_errno_beyond_linux_is_out_of_range() {
    assert_eq!(
        reply_error(Reply::Error(error_reply(4096)), 0),
        out_of_range("error errno", 4096, 0, 4095)
    );
}

#[test]
fn started_reply_with_pid_0_1_or_beyond_i32_is_out_of_range() {
    for pid in [0, 1, i32::MAX as u32 + 1, u32::MAX] {
        assert_eq!(
            reply_error(Reply::Started { pid }, 0),
            out_of_range("started pid", u64::from(pid), 2, i32::MAX as u64)
        );
    }
    assert!(
        Reply::Started {
            pid: i32::MAX as u32
        }
        .validate(0)
        .is_ok()
    );
}

#[test]
fn ok_with_a_non_zero_exit_code_is_inconsistent() {
    assert_eq!(
        result_error(result(Status::Ok, Termination::Exited(3), None)),
        E::InconsistentResult {
            status: Status::Ok,
            detail: "anything but exit code 0"
        }
    );
    assert_eq!(
        result_error(result(Status::Ok, Termination::Signalled(9), None)),
        E::InconsistentResult {
            status: Status::Ok,
            detail: "anything but exit code 0"
        }
    );
}

#[test]
fn nonzero_exit_with_exit_code_0_is_inconsistent() {
    for termination in [Termination::Exited(0), Termination::Signalled(15)] {
        assert_eq!(
            result_error(result(Status::NonzeroExit, termination, None)),
            E::InconsistentResult {
                status: Status::NonzeroExit,
                detail: "anything but a non-zero exit code"
            }
        );
    }
}

#[test]
fn signalled_without_a_signal_is_inconsistent() {
    assert_eq!(
        result_error(result(Status::Signalled, Termination::Exited(1), None)),
        E::InconsistentResult {
            status: Status::Signalled,
            detail: "anything but a signal"
        }
    );
}

#[test]
fn runner_error_without_an_error_is_inconsistent() {
    assert_eq!(
        result_error(result(Status::RunnerError, Termination::NotStarted, None)),
        E::InconsistentResult {
            status: Status::RunnerError,
            detail: "no error"
        }
    );
}

#[test]
fn an_error_with_any_status_but_runner_error_is_inconsistent() {
    for (status, termination) in [
        (Status::Ok, Termination::Exited(0)),
        (Status::TimeLimit, Termination::Signalled(9)),
    ] {
        assert_eq!(
            result_error(result(status, termination, Some(error_reply(2)))),
            E::InconsistentResult {
                status,
                detail: "an error"
            }
        );
    }
}

#[test]
fn a_limit_verdict_for_a_program_that_never_started_is_inconsistent() {
    for status in [
        Status::TimeLimit,
        Status::WallTimeLimit,
        Status::MemoryLimit,
        Status::OutputLimit,
        Status::DisallowedSyscall,
    ] {
        assert_eq!(
            result_error(result(status, Termination::NotStarted, None)),
            E::InconsistentResult {
                status,
                detail: "a program that never started"
            }
        );
    }
}

#[test]
fn exit_code_beyond_255_is_out_of_range() {
    assert_eq!(
        result_error(result(Status::NonzeroExit, Termination::Exited(300), None)),
        out_of_range("exit code", 300, 0, 255)
    );
    match result_error(result(Status::NonzeroExit, Termination::Exited(-1), None)) {
        E::OutOfRange {
            field: "exit code",
            min: 0,
            max: 255,
            ..
        } => {}
        other => panic!("exit code -1: {other:?}"),
    }
}

#[test]
fn signal_0_or_beyond_64_is_out_of_range() {
    for signal in [0, 65] {
        assert_eq!(
            result_error(result(
                Status::Signalled,
                Termination::Signalled(signal),
                None
            )),
            out_of_range("signal", signal as u64, 1, 64)
        );
    }
}

#[test]
fn runner_error_whose_error_has_a_bad_errno_is_out_of_range() {
    assert_eq!(
        result_error(result(
            Status::RunnerError,
            Termination::NotStarted,
            Some(error_reply(5000))
        )),
        out_of_range("error errno", 5000, 0, 4095)
    );
}

// ---------------------------------------------------------------------------
// Messages.

#[test]
fn messages_are_lowercase_and_name_their_field() {
    let cases: Vec<(ValidationError, &[&str])> = vec![
        (E::EmptyArgv, &["argv"]),
        (
            E::Empty {
                field: "open items",
            },
            &["open items"],
        ),
        (
            E::RelativePath {
                field: "exec cwd",
                path: "box".to_owned(),
            },
            &["exec cwd", "\"box\""],
        ),
        (
            E::ParentComponent {
                field: "open path",
                path: "/a/..".to_owned(),
            },
            &["open path", "\"/a/..\""],
        ),
        (
            E::Nul {
                field: "exec argument",
            },
            &["exec argument"],
        ),
        (
            E::TooLong {
                field: "hostname",
                len: 65,
                max: 64,
            },
            &["hostname", "65", "64"],
        ),
        (
            E::TooMany {
                field: "exec argv",
                count: 4097,
                max: 4096,
            },
            &["exec argv", "4097", "4096"],
        ),
        (
            E::BadEnv {
                index: 3,
                entry: "PATH".to_owned(),
            },
            &["environment entry 3", "\"PATH\""],
        ),
        (
            E::BadName {
                field: "hostname",
                name: "a_b".to_owned(),
            },
            &["hostname", "\"a_b\""],
        ),
        (
            out_of_range("cpu time limit (ns)", 0, 1, MAX_TIME_NS),
            &["cpu time limit (ns)", "0", "1..=86400000000000"],
        ),
        (
            E::SoftAboveHard {
                resource: Resource::Nofile,
                soft: 65,
                hard: 64,
            },
            &["rlimit", "Nofile", "65", "64"],
        ),
        (
            E::ExclusiveWithoutCreate {
                path: "/box/out".to_owned(),
            },
            &["\"/box/out\"", "exclusive", "create"],
        ),
        (
            E::FdOutOfRange {
                field: "exec fd_map",
                index: 3,
                attached: 2,
            },
            &["exec fd_map", "3", "2"],
        ),
        (E::FdUnused { index: 1 }, &["descriptor 1"]),
        (fd_count("ping", 1, 0), &["ping", "1", "0"]),
        (fd_count("copy-in", 1, 2), &["copy-in", "1", "2"]),
        (
            E::HelloVersion {
                found: 2,
                expected: 1,
            },
            &["hello", "version 2", "version 1"],
        ),
        (
            E::InconsistentResult {
                status: Status::NonzeroExit,
                detail: "anything but a non-zero exit code",
            },
            &["nonzero-exit", "anything but a non-zero exit code"],
        ),
    ];
    for (error, needles) in cases {
        let message = error.to_string();
        let first = message.chars().next().expect("non-empty message");
        assert!(first.is_lowercase(), "{message:?} starts lowercase");
        assert!(!message.ends_with('.'), "{message:?} has no final period");
        for needle in needles {
            assert!(message.contains(needle), "{message:?} names {needle:?}");
        }
    }
}

#[test]
fn messages_of_errors_from_real_inputs_name_their_field() {
    let mut exec = exec();
    exec.limits.memory_bytes = Some(1);
    let message = exec_error(exec, 3).to_string();
    assert!(
        message.starts_with("memory limit (bytes) is 1, outside 1048576..="),
        "{message}"
    );
    let message = request_error(Request::Open(vec![open_item("in.txt")])).to_string();
    assert_eq!(message, "open path is not an absolute path: \"in.txt\"");
}

// ---------------------------------------------------------------------------
// Checks that are missing from the protocol's validation.

#[test]
fn opened_reply_with_more_descriptors_than_a_frame_carries_is_rejected() {
    // 65 files opened, 65 descriptors announced and attached: more than the
    // MAX_FDS_PER_FRAME (64) one frame may carry, which exec requests are
    // held to.
    let count = MAX_FDS_PER_FRAME + 1;
    let reply = Reply::Opened(batch(vec![ItemOutcome::Done; count], count as u32));
    assert!(
        reply.validate(count).is_err(),
        "an opened reply with {count} descriptors validates"
    );
}

#[test]
fn hello_reply_naming_another_version_is_hello_version() {
    let reply = Reply::Hello(HelloReply {
        version: PROTOCOL_VERSION + 1,
        features: 0,
    });
    assert_eq!(
        reply.validate(0),
        Err(E::HelloVersion {
            found: PROTOCOL_VERSION + 1,
            expected: PROTOCOL_VERSION
        })
    );
}

#[test]
fn duplicate_rlimits_are_rejected() {
    let mut exec = exec();
    let limit = hutch_protocol::Rlimit {
        resource: hutch_protocol::Resource::Nofile,
        soft: 10,
        hard: 10,
    };
    exec.fd_map.clear();
    exec.rlimits = vec![limit, limit];
    assert_eq!(
        request_error(Request::Exec(exec)),
        E::DuplicateRlimit {
            resource: hutch_protocol::Resource::Nofile
        }
    );
}

#[test]
fn truncate_or_append_without_write_access_is_rejected() {
    for (truncate, append) in [(true, false), (false, true)] {
        let mut item = open_item("/w/a");
        item.flags.access = hutch_protocol::Access::Read;
        item.flags.create = false;
        item.flags.truncate = truncate;
        item.flags.append = append;
        assert_eq!(
            request_error(Request::Open(vec![item])),
            E::ModifyReadOnly {
                path: "/w/a".into()
            }
        );
    }
}

#[test]
fn negative_numbers_are_reported_with_their_sign() {
    let message =
        result_error(result(Status::NonzeroExit, Termination::Exited(-1), None)).to_string();
    assert_eq!(message, "exit code is -1, outside 0..=255");
}

fn cgroup(
    version: hutch_protocol::CgroupVersion,
    files: Vec<hutch_protocol::CgroupFile>,
) -> Request {
    Request::Cgroup(hutch_protocol::CgroupFiles { version, files })
}

#[test]
fn cgroup_files_must_match_the_descriptors_and_the_version() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    let v2 = vec![F::Procs, F::CpuStat, F::MemoryPeak];
    assert!(cgroup(V::V2, v2.clone()).validate(3).is_ok());
    assert_eq!(
        cgroup(V::V2, v2.clone()).validate(2).unwrap_err(),
        fd_count("cgroup", 2, 3)
    );
    assert_eq!(
        cgroup(V::V2, vec![F::Procs, F::CpuUsage])
            .validate(2)
            .unwrap_err(),
        E::CgroupFile {
            file: F::CpuUsage,
            version: V::V2
        }
    );
    assert_eq!(
        cgroup(V::V2, vec![F::Procs, F::MemoryStat])
            .validate(2)
            .unwrap_err(),
        E::CgroupFileAlone {
            file: F::MemoryStat,
            serves: F::Reclaim
        }
    );
    assert!(
        cgroup(V::V1, vec![F::Procs, F::MemoryStat])
            .validate(2)
            .is_ok()
    );
    assert_eq!(
        cgroup(V::V1, vec![F::Procs, F::CpuStat])
            .validate(2)
            .unwrap_err(),
        E::CgroupFile {
            file: F::CpuStat,
            version: V::V1
        }
    );
    assert_eq!(
        cgroup(V::V1, vec![F::Procs, F::MemoryPeak, F::MemoryPeak])
            .validate(3)
            .unwrap_err(),
        E::DuplicateCgroupFile {
            file: F::MemoryPeak
        }
    );
    assert_eq!(
        cgroup(V::V1, vec![F::MemoryPeak]).validate(1).unwrap_err(),
        E::Empty {
            field: "cgroup procs files"
        }
    );
    assert!(
        cgroup(V::V1, vec![F::Procs, F::Procs, F::Procs])
            .validate(3)
            .is_ok(),
        "one procs file per v1 hierarchy"
    );
}

#[test]
fn v2_memory_stat_is_valid_only_beside_reclaim() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    // What a host sends on Linux 5.19 and later.
    let full = vec![
        F::Procs,
        F::CpuStat,
        F::MemoryPeak,
        F::OomEvents,
        F::MemoryLimit,
        F::SwapLimit,
        F::PidsLimit,
        F::MemoryUsage,
        F::MemoryStat,
        F::Reclaim,
    ];
    assert_eq!(cgroup(V::V2, full.clone()).check(10), Ok(()));
    // The rule looks at the whole list: Reclaim may come after or before.
    assert_eq!(
        cgroup(V::V2, vec![F::Procs, F::MemoryStat, F::Reclaim]).check(3),
        Ok(())
    );
    assert_eq!(
        cgroup(V::V2, vec![F::Procs, F::Reclaim, F::MemoryStat]).check(3),
        Ok(())
    );
    // Reclaim without MemoryStat is valid (a reset then has no amount to
    // reclaim, and reclaims nothing).
    assert_eq!(cgroup(V::V2, vec![F::Procs, F::Reclaim]).check(2), Ok(()));
    // MemoryStat on v2 without Reclaim: what an older host never sent and
    // an older init rejects.
    let without: Vec<_> = full.iter().copied().filter(|f| *f != F::Reclaim).collect();
    let error = cgroup(V::V2, without).validate(9).unwrap_err();
    assert_eq!(
        error,
        E::CgroupFileAlone {
            file: F::MemoryStat,
            serves: F::Reclaim
        }
    );
    assert_eq!(
        error.to_string(),
        "cgroup file MemoryStat is given without Reclaim, the only file it serves"
    );
    // The descriptor count is still checked first.
    assert_eq!(
        cgroup(V::V2, full).validate(9).unwrap_err(),
        fd_count("cgroup", 9, 10)
    );
}

#[test]
fn reclaim_exists_only_in_v2() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    let error = cgroup(V::V1, vec![F::Procs, F::Reclaim])
        .validate(2)
        .unwrap_err();
    assert_eq!(
        error,
        E::CgroupFile {
            file: F::Reclaim,
            version: V::V1
        }
    );
    assert_eq!(
        error.to_string(),
        "cgroup file Reclaim does not exist in cgroup V1"
    );
    // v1 reclaims through ForceEmpty: a Reclaim beside it, or beside a v1
    // MemoryStat, is refused all the same.
    assert_eq!(
        cgroup(
            V::V1,
            vec![F::Procs, F::ForceEmpty, F::MemoryStat, F::Reclaim]
        )
        .validate(4)
        .unwrap_err(),
        E::CgroupFile {
            file: F::Reclaim,
            version: V::V1
        }
    );
    // And ForceEmpty stays v1's.
    assert_eq!(
        cgroup(V::V2, vec![F::Procs, F::ForceEmpty, F::Reclaim])
            .validate(3)
            .unwrap_err(),
        E::CgroupFile {
            file: F::ForceEmpty,
            version: V::V2
        }
    );
}

#[test]
fn reclaim_and_a_v2_memory_stat_may_not_come_twice() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    assert_eq!(
        cgroup(V::V2, vec![F::Procs, F::Reclaim, F::MemoryStat, F::Reclaim])
            .validate(4)
            .unwrap_err(),
        E::DuplicateCgroupFile { file: F::Reclaim }
    );
    assert_eq!(
        cgroup(
            V::V2,
            vec![F::Procs, F::MemoryStat, F::Reclaim, F::MemoryStat]
        )
        .validate(4)
        .unwrap_err(),
        E::DuplicateCgroupFile {
            file: F::MemoryStat
        }
    );
    assert_eq!(
        E::DuplicateCgroupFile { file: F::Reclaim }.to_string(),
        "cgroup file Reclaim is given twice"
    );
}

#[test]
fn pids_peak_exists_in_both_versions_once() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    for version in [V::V1, V::V2] {
        assert_eq!(
            cgroup(version, vec![F::Procs, F::PidsLimit, F::PidsPeak]).check(3),
            Ok(())
        );
        assert_eq!(
            cgroup(version, vec![F::Procs, F::PidsPeak, F::PidsPeak]).check(3),
            Err(E::DuplicateCgroupFile { file: F::PidsPeak })
        );
    }
}

fn regroup(
    version: hutch_protocol::CgroupVersion,
    files: Vec<hutch_protocol::CgroupFile>,
) -> Request {
    Request::Regroup(hutch_protocol::CgroupFiles { version, files })
}

#[test]
fn a_regroup_names_procs_files_and_at_most_one_pids_peak() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    // What a host sends on v1 (three hierarchies) and on v2.
    let v1 = vec![F::Procs, F::Procs, F::Procs, F::PidsPeak];
    assert!(regroup(V::V1, v1.clone()).validate(4).is_ok());
    assert!(
        regroup(V::V2, vec![F::Procs, F::PidsPeak])
            .validate(2)
            .is_ok()
    );
    assert!(
        regroup(V::V2, vec![F::Procs]).validate(1).is_ok(),
        "a kernel without pids.peak"
    );
    assert_eq!(
        regroup(V::V1, v1).validate(3).unwrap_err(),
        fd_count("regroup", 3, 4)
    );
    assert_eq!(
        regroup(V::V2, vec![F::PidsPeak]).validate(1).unwrap_err(),
        E::Empty {
            field: "cgroup procs files"
        }
    );
    assert_eq!(
        regroup(V::V2, vec![]).validate(0).unwrap_err(),
        E::Empty {
            field: "cgroup files"
        }
    );
    assert_eq!(
        regroup(V::V2, vec![F::Procs, F::PidsPeak, F::PidsPeak])
            .validate(3)
            .unwrap_err(),
        E::DuplicateCgroupFile { file: F::PidsPeak }
    );
    let error = regroup(V::V2, vec![F::Procs, F::MemoryPeak])
        .validate(2)
        .unwrap_err();
    assert_eq!(
        error,
        E::NotRegroupFile {
            file: F::MemoryPeak
        }
    );
    assert_eq!(
        error.to_string(),
        "cgroup file MemoryPeak cannot be replaced by a regroup"
    );
}

#[test]
fn a_v2_group_programs_start_in_is_one_dir_and_no_procs() {
    use hutch_protocol::{CgroupFile as F, CgroupVersion as V};
    // What a host sends on v2: the run group's directory instead of its
    // cgroup.procs, in a Cgroup and in a Regroup.
    assert!(
        cgroup(V::V2, vec![F::Dir, F::CpuStat, F::MemoryPeak])
            .validate(3)
            .is_ok()
    );
    assert!(
        regroup(V::V2, vec![F::Dir, F::PidsPeak])
            .validate(2)
            .is_ok()
    );
    for request in [
        cgroup(V::V1, vec![F::Dir, F::CpuUsage]),
        regroup(V::V1, vec![F::Dir, F::PidsPeak]),
    ] {
        assert_eq!(
            request.validate(2).unwrap_err(),
            E::CgroupFile {
                file: F::Dir,
                version: V::V1
            }
        );
    }
    for request in [
        cgroup(V::V2, vec![F::Dir, F::Dir]),
        regroup(V::V2, vec![F::Dir, F::Dir]),
    ] {
        assert_eq!(
            request.validate(2).unwrap_err(),
            E::DuplicateCgroupFile { file: F::Dir }
        );
    }
    for request in [
        cgroup(V::V2, vec![F::Procs, F::Dir]),
        regroup(V::V2, vec![F::Dir, F::Procs]),
    ] {
        let error = request.validate(2).unwrap_err();
        assert_eq!(
            error,
            E::CgroupFilesExclusive {
                file: F::Dir,
                with: F::Procs
            }
        );
        assert_eq!(
            error.to_string(),
            "cgroup file Dir cannot be given with Procs"
        );
    }
}
