//! Sample messages shared by the integration tests and by the
//! `golden_corpus` example, which writes their frames out as fuzz seeds.
//!
//! Every sample is a valid message: it passes `validate` with the number of
//! descriptors [`request_fds`] / [`reply_fds`] give for it. The golden tests
//! pin the exact frame of each sample by name, so renaming or changing a
//! sample means updating its golden bytes there.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use hutch_protocol::{
    Access, Accounting, Batch, BpfInstruction, CgroupFile, CgroupFiles, CgroupVersion, Configure,
    CopyInFailure, CopyInItem, CopyInOutcome, CopyInStep, Delete, ErrorReply, ExecRequest,
    ExecResult, FileSystem, Hello, HelloReply, ItemError, ItemOutcome, Limits, MAX_FRAME_LEN,
    Mount, MountFlags, OpenFlags, OpenItem, PROTOCOL_VERSION, Reply, Request, Resource, Rlimit,
    Stage, Status, SymlinkItem, Termination, encode_reply, encode_request,
};

/// Every stage, in wire-tag order, with the name its sample carries.
pub(crate) const STAGES: [(&str, Stage); 26] = [
    ("protocol", Stage::Protocol),
    ("validate", Stage::Validate),
    ("handshake", Stage::Handshake),
    ("state", Stage::State),
    ("mount", Stage::Mount),
    ("proc", Stage::Proc),
    ("pivot-root", Stage::PivotRoot),
    ("symlink", Stage::Symlink),
    ("mask", Stage::Mask),
    ("remount-root", Stage::RemountRoot),
    ("hostname", Stage::Hostname),
    ("workdir", Stage::Workdir),
    ("init-command", Stage::InitCommand),
    ("open", Stage::Open),
    ("delete", Stage::Delete),
    ("reset", Stage::Reset),
    ("spawn", Stage::Spawn),
    ("fds", Stage::Fds),
    ("cgroup", Stage::Cgroup),
    ("rlimit", Stage::Rlimit),
    ("chdir", Stage::Chdir),
    ("credentials", Stage::Credentials),
    ("capabilities", Stage::Capabilities),
    ("seccomp", Stage::Seccomp),
    ("execve", Stage::Execve),
    ("wait", Stage::Wait),
];

/// Every `setrlimit` resource, in wire-tag order.
pub(crate) const RESOURCES: [Resource; 16] = [
    Resource::Cpu,
    Resource::Fsize,
    Resource::Data,
    Resource::Stack,
    Resource::Core,
    Resource::Rss,
    Resource::Nproc,
    Resource::Nofile,
    Resource::Memlock,
    Resource::As,
    Resource::Locks,
    Resource::Sigpending,
    Resource::Msgqueue,
    Resource::Nice,
    Resource::Rtprio,
    Resource::Rttime,
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A realistic exec: a Python program with stdin, stdout and stderr
/// attached as three descriptors, limits, rlimits, a small seccomp filter,
/// synchronised start, explicit credentials.
pub(crate) fn exec_request() -> ExecRequest {
    ExecRequest {
        argv: strings(&["/usr/bin/python3", "main.py"]),
        env: strings(&["PATH=/usr/bin:/bin", "HOME=/box"]),
        fd_map: vec![0, 1, 2],
        exec_fd: None,
        cwd: Some("/box".to_owned()),
        rlimits: vec![
            Rlimit {
                resource: Resource::Stack,
                soft: 8 << 20,
                hard: 8 << 20,
            },
            Rlimit {
                resource: Resource::Nofile,
                soft: 64,
                hard: 64,
            },
            Rlimit {
                resource: Resource::Core,
                soft: 0,
                hard: 0,
            },
        ],
        seccomp: vec![
            // ld [4] (arch); jeq AUDIT_ARCH_X86_64; ret ALLOW; ret KILL_PROCESS
            BpfInstruction {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            BpfInstruction {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: 0xc000_003e,
            },
            BpfInstruction {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            },
            BpfInstruction {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x8000_0000,
            },
        ],
        limits: Limits {
            cpu_time_ns: Some(2_000_000_000),
            wall_time_ns: Some(5_000_000_000),
            output_bytes: Some(1 << 20),
            memory_bytes: Some(256 << 20),
            processes: Some(16),
        },
        sync: true,
        uid: Some(1000),
        gid: Some(1000),
    }
}

/// The smallest valid exec: one argument, everything else empty or `None`.
pub(crate) fn minimal_exec() -> ExecRequest {
    ExecRequest {
        argv: strings(&["true"]),
        ..ExecRequest::default()
    }
}

/// A realistic finished reply: a program that could not be executed.
pub(crate) fn runner_error_result() -> ExecResult {
    ExecResult {
        status: Status::RunnerError,
        termination: Termination::NotStarted,
        user_time_ns: 0,
        system_time_ns: 0,
        memory_bytes: 0,
        wall_time_ns: 1_500_000,
        accounting: Accounting::CgroupV2,
        error: Some(ErrorReply {
            stage: Stage::Execve,
            errno: 2,
            path: Some("/usr/bin/python4".to_owned()),
            message: "no such file or directory".to_owned(),
        }),
        processes_peak: None,
    }
}

/// A realistic finished reply of a program that ran and exited with `code`.
fn exited(status: Status, code: i32, accounting: Accounting) -> ExecResult {
    ExecResult {
        status,
        termination: Termination::Exited(code),
        user_time_ns: 1_234_567,
        system_time_ns: 345_678,
        memory_bytes: 9_437_184,
        wall_time_ns: 2_000_001,
        accounting,
        error: None,
        processes_peak: Some(1),
    }
}

/// A realistic finished reply of a program a signal ended.
fn signalled(status: Status, signal: i32, accounting: Accounting) -> ExecResult {
    ExecResult {
        status,
        termination: Termination::Signalled(signal),
        user_time_ns: 2_000_000_123,
        system_time_ns: 7_000_000,
        memory_bytes: 268_435_456,
        wall_time_ns: 2_100_000_000,
        accounting,
        error: None,
        processes_peak: Some(300),
    }
}

/// One finished reply per status, each consistent with its termination.
pub(crate) fn finished_results() -> Vec<(&'static str, ExecResult)> {
    vec![
        ("ok", exited(Status::Ok, 0, Accounting::CgroupV2)),
        (
            "nonzero-exit",
            exited(Status::NonzeroExit, 1, Accounting::CgroupV1),
        ),
        (
            "signalled",
            signalled(Status::Signalled, 11, Accounting::Rusage),
        ),
        (
            "time-limit",
            signalled(Status::TimeLimit, 9, Accounting::CgroupV2),
        ),
        (
            "wall-time-limit",
            signalled(Status::WallTimeLimit, 9, Accounting::CgroupV2),
        ),
        (
            "memory-limit",
            signalled(Status::MemoryLimit, 9, Accounting::CgroupV1),
        ),
        (
            "output-limit",
            signalled(Status::OutputLimit, 25, Accounting::Rusage),
        ),
        (
            "disallowed-syscall",
            signalled(Status::DisallowedSyscall, 31, Accounting::CgroupV2),
        ),
        ("runner-error", runner_error_result()),
    ]
}

/// Sample requests, each named; valid with [`request_fds`] descriptors.
pub(crate) fn request_samples() -> Vec<(&'static str, Request)> {
    vec![
        (
            "hello",
            Request::Hello(Hello {
                version: PROTOCOL_VERSION,
                features: 0,
            }),
        ),
        (
            "hello-all-features",
            Request::Hello(Hello {
                version: PROTOCOL_VERSION,
                features: u64::MAX,
            }),
        ),
        ("ping", Request::Ping),
        (
            "configure",
            Request::Configure(Configure {
                mounts: vec![
                    Mount::Bind {
                        source: "/usr".to_owned(),
                        target: "/usr".to_owned(),
                        writable: false,
                        flags: MountFlags {
                            nosuid: true,
                            nodev: true,
                            noexec: false,
                        },
                    },
                    Mount::Bind {
                        source: "/srv/box".to_owned(),
                        target: "/box".to_owned(),
                        writable: true,
                        flags: MountFlags {
                            nosuid: true,
                            nodev: true,
                            noexec: true,
                        },
                    },
                    Mount::Tmpfs {
                        target: "/tmp".to_owned(),
                        size_bytes: 64 << 20,
                        max_inodes: 4096,
                        mode: 0o1777,
                        read_only: false,
                    },
                    Mount::Proc {
                        target: "/proc".to_owned(),
                        read_only: true,
                    },
                    Mount::Device {
                        source: "/dev/null".to_owned(),
                        target: "/dev/null".to_owned(),
                    },
                ],
                symlinks: vec![SymlinkItem {
                    link: "/dev/fd".to_owned(),
                    target: "/proc/self/fd".to_owned(),
                }],
                masked_paths: strings(&["/proc/kcore"]),
                hostname: "hutch".to_owned(),
                domainname: String::new(),
                workdir: "/box".to_owned(),
                uid: 1000,
                gid: 1000,
                init_command: Vec::new(),
                filesystem: FileSystem::Container,
            }),
        ),
        (
            "configure-minimal",
            Request::Configure(Configure {
                mounts: Vec::new(),
                symlinks: Vec::new(),
                masked_paths: Vec::new(),
                hostname: String::new(),
                domainname: "local".to_owned(),
                workdir: "/".to_owned(),
                uid: 0,
                gid: 0,
                init_command: strings(&["/bin/true"]),
                filesystem: FileSystem::Host,
            }),
        ),
        (
            "open",
            Request::Open(vec![
                OpenItem {
                    path: "/box/in.txt".to_owned(),
                    flags: OpenFlags {
                        access: Access::Read,
                        create: false,
                        exclusive: false,
                        truncate: false,
                        append: false,
                    },
                    mode: 0,
                    make_parents: false,
                },
                OpenItem {
                    path: "/box/out/result.txt".to_owned(),
                    flags: OpenFlags {
                        access: Access::Write,
                        create: true,
                        exclusive: false,
                        truncate: true,
                        append: false,
                    },
                    mode: 0o644,
                    make_parents: true,
                },
                OpenItem {
                    path: "/box/log".to_owned(),
                    flags: OpenFlags {
                        access: Access::ReadWrite,
                        create: true,
                        exclusive: true,
                        truncate: false,
                        append: true,
                    },
                    mode: 0o600,
                    make_parents: false,
                },
            ]),
        ),
        (
            "delete",
            Request::Delete(Delete {
                path: "/box/out/result.txt".to_owned(),
            }),
        ),
        (
            "symlink",
            Request::Symlink(vec![
                SymlinkItem {
                    link: "/box/python".to_owned(),
                    target: "/usr/bin/python3".to_owned(),
                },
                SymlinkItem {
                    link: "/box/data".to_owned(),
                    target: "../srv/data".to_owned(),
                },
            ]),
        ),
        ("reset", Request::Reset),
        ("exec", Request::Exec(exec_request())),
        ("exec-minimal", Request::Exec(minimal_exec())),
        (
            "exec-fd",
            Request::Exec(ExecRequest {
                argv: strings(&["prog", "-v"]),
                fd_map: vec![1, 2, 2],
                exec_fd: Some(0),
                ..minimal_exec()
            }),
        ),
        (
            "exec-rlimits",
            Request::Exec(ExecRequest {
                rlimits: RESOURCES
                    .iter()
                    .zip(0u64..)
                    .map(|(&resource, n)| Rlimit {
                        resource,
                        soft: n,
                        hard: if n == 15 { u64::MAX } else { n },
                    })
                    .collect(),
                ..minimal_exec()
            }),
        ),
        ("proceed", Request::Proceed),
        ("kill", Request::Kill),
        (
            "cgroup-v1",
            Request::Cgroup(CgroupFiles {
                version: CgroupVersion::V1,
                files: vec![
                    CgroupFile::Procs,
                    CgroupFile::Procs,
                    CgroupFile::Procs,
                    CgroupFile::CpuUser,
                    CgroupFile::CpuSystem,
                    CgroupFile::CpuUsage,
                    CgroupFile::MemoryPeak,
                    CgroupFile::OomEvents,
                    CgroupFile::MemoryLimit,
                    CgroupFile::SwapLimit,
                    CgroupFile::ForceEmpty,
                    CgroupFile::PidsLimit,
                    CgroupFile::MemoryUsage,
                ],
            }),
        ),
        (
            "cgroup-v1-memory-stat",
            Request::Cgroup(CgroupFiles {
                version: CgroupVersion::V1,
                files: vec![CgroupFile::Procs, CgroupFile::MemoryStat],
            }),
        ),
        (
            "cgroup-v2",
            Request::Cgroup(CgroupFiles {
                version: CgroupVersion::V2,
                files: vec![
                    CgroupFile::Procs,
                    CgroupFile::CpuStat,
                    CgroupFile::MemoryPeak,
                    CgroupFile::OomEvents,
                    CgroupFile::MemoryLimit,
                    CgroupFile::SwapLimit,
                    CgroupFile::PidsLimit,
                    CgroupFile::MemoryUsage,
                ],
            }),
        ),
        (
            // What a host sends to an init with `INIT_V2_RECLAIM` on a
            // kernel with `memory.reclaim` (Linux 5.19 and later).
            "cgroup-v2-reclaim",
            Request::Cgroup(CgroupFiles {
                version: CgroupVersion::V2,
                files: vec![
                    CgroupFile::Procs,
                    CgroupFile::CpuStat,
                    CgroupFile::MemoryPeak,
                    CgroupFile::OomEvents,
                    CgroupFile::MemoryLimit,
                    CgroupFile::SwapLimit,
                    CgroupFile::PidsLimit,
                    CgroupFile::MemoryUsage,
                    CgroupFile::MemoryStat,
                    CgroupFile::Reclaim,
                ],
            }),
        ),
        (
            // After a run with more than one process, on v1: the memory
            // and cpuacct groups stay, the pids group is fresh.
            "regroup-v1",
            Request::Regroup(CgroupFiles {
                version: CgroupVersion::V1,
                files: vec![
                    CgroupFile::Procs,
                    CgroupFile::Procs,
                    CgroupFile::Procs,
                    CgroupFile::PidsPeak,
                ],
            }),
        ),
        (
            // What a host sends to an init with `INIT_CGROUP_DIR` on a
            // kernel with `memory.reclaim` and `pids.peak`: the run group's
            // directory, where init starts programs, in place of its
            // cgroup.procs.
            "cgroup-v2-dir",
            Request::Cgroup(CgroupFiles {
                version: CgroupVersion::V2,
                files: vec![
                    CgroupFile::Dir,
                    CgroupFile::CpuStat,
                    CgroupFile::MemoryPeak,
                    CgroupFile::OomEvents,
                    CgroupFile::MemoryLimit,
                    CgroupFile::SwapLimit,
                    CgroupFile::PidsLimit,
                    CgroupFile::MemoryUsage,
                    CgroupFile::MemoryStat,
                    CgroupFile::Reclaim,
                    CgroupFile::PidsPeak,
                ],
            }),
        ),
        (
            "regroup-v2-dir",
            Request::Regroup(CgroupFiles {
                version: CgroupVersion::V2,
                files: vec![CgroupFile::Dir, CgroupFile::PidsPeak],
            }),
        ),
        (
            // On a kernel without pids.peak.
            "regroup-v2",
            Request::Regroup(CgroupFiles {
                version: CgroupVersion::V2,
                files: vec![CgroupFile::Procs],
            }),
        ),
        (
            "copy-in",
            Request::CopyIn(vec![
                CopyInItem {
                    path: "/box/main.py".to_owned(),
                    mode: 0o644,
                },
                CopyInItem {
                    path: "/box/bin/run".to_owned(),
                    mode: 0o755,
                },
                CopyInItem {
                    path: "/box/all".to_owned(),
                    mode: 0o7777,
                },
            ]),
        ),
        (
            "copy-in-minimal",
            Request::CopyIn(vec![CopyInItem {
                path: "/a".to_owned(),
                mode: 0,
            }]),
        ),
        (
            "copy-out",
            Request::CopyOut(strings(&["/box/out.txt", "/box/result/answer", "/tmp/log"])),
        ),
    ]
}

/// Sample replies, each named; valid with [`reply_fds`] descriptors.
pub(crate) fn reply_samples() -> Vec<(&'static str, Reply)> {
    let mut samples = vec![
        (
            "hello",
            Reply::Hello(HelloReply {
                version: PROTOCOL_VERSION,
                features: 0,
            }),
        ),
        ("pong", Reply::Pong),
        ("ack", Reply::Ack),
        (
            "error",
            Reply::Error(ErrorReply {
                stage: Stage::Open,
                errno: 13,
                path: Some("/box/in.txt".to_owned()),
                message: "permission denied".to_owned(),
            }),
        ),
        (
            "opened",
            Reply::Opened(Batch {
                results: vec![
                    ItemOutcome::Done,
                    ItemOutcome::Failed(ItemError {
                        errno: 2,
                        message: "no such file".to_owned(),
                    }),
                    ItemOutcome::Done,
                ],
                fds_attached: 2,
            }),
        ),
        (
            "opened-empty",
            Reply::Opened(Batch {
                results: Vec::new(),
                fds_attached: 0,
            }),
        ),
        (
            "linked",
            Reply::Linked(Batch {
                results: vec![
                    ItemOutcome::Done,
                    ItemOutcome::Failed(ItemError {
                        errno: 17,
                        message: "file exists".to_owned(),
                    }),
                ],
                fds_attached: 0,
            }),
        ),
        ("started", Reply::Started { pid: 2 }),
        ("started-large-pid", Reply::Started { pid: 4_194_303 }),
        (
            "copied-in",
            Reply::CopiedIn(vec![
                CopyInOutcome::Done,
                CopyInOutcome::Failed(CopyInFailure {
                    step: CopyInStep::Create,
                    errno: 21,
                    message: "is a directory".to_owned(),
                }),
                CopyInOutcome::Failed(CopyInFailure {
                    step: CopyInStep::Fill,
                    errno: 28,
                    message: "no space left on device".to_owned(),
                }),
            ]),
        ),
        ("copied-in-done", Reply::CopiedIn(vec![CopyInOutcome::Done])),
    ];
    for (name, result) in finished_results() {
        samples.push((finished_name(name), Reply::Finished(result)));
    }
    for (name, stage) in STAGES {
        samples.push((
            error_stage_name(name),
            Reply::Error(ErrorReply {
                stage,
                errno: 0,
                path: None,
                message: String::new(),
            }),
        ));
    }
    samples
}

/// `finished-<status>`, as a `'static` name.
fn finished_name(status: &str) -> &'static str {
    Box::leak(format!("finished-{status}").into_boxed_str())
}

/// `error-stage-<stage>`, as a `'static` name.
fn error_stage_name(stage: &str) -> &'static str {
    Box::leak(format!("error-stage-{stage}").into_boxed_str())
}

/// How many descriptors travel with a sample request: one per index an exec
/// refers to, one per cgroup file, one per copy-in item, none otherwise.
pub(crate) fn request_fds(request: &Request) -> usize {
    match request {
        Request::Exec(exec) => exec
            .fd_map
            .iter()
            .chain(exec.exec_fd.iter())
            .map(|&index| index as usize + 1)
            .max()
            .unwrap_or(0),
        Request::Cgroup(cgroup) | Request::Regroup(cgroup) => cgroup.files.len(),
        Request::CopyIn(items) => items.len(),
        _ => 0,
    }
}

/// How many descriptors travel with a sample reply: those an opened reply
/// announces, none otherwise.
pub(crate) fn reply_fds(reply: &Reply) -> usize {
    match reply {
        Reply::Opened(batch) => batch.fds_attached as usize,
        _ => 0,
    }
}

/// `request` encoded as one frame.
pub(crate) fn request_frame(request: &Request) -> Vec<u8> {
    let mut buf = vec![0; MAX_FRAME_LEN];
    let len = encode_request(request, &mut buf).expect("sample request encodes");
    buf.truncate(len);
    buf
}

/// `reply` encoded as one frame.
pub(crate) fn reply_frame(reply: &Reply) -> Vec<u8> {
    let mut buf = vec![0; MAX_FRAME_LEN];
    let len = encode_reply(reply, &mut buf).expect("sample reply encodes");
    buf.truncate(len);
    buf
}

/// The frame header of this protocol version: `HT`, then version 1 as a
/// little-endian u16.
pub(crate) const HEADER: [u8; 4] = [0x48, 0x54, 0x02, 0x00];

/// `HEADER` followed by `body`.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = HEADER.to_vec();
    frame.extend_from_slice(body);
    frame
}

/// `value` as a postcard varint (LEB128), written out independently of the
/// crate under test.
pub(crate) fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Whether a frame is a request or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Reply,
}

/// Bodies up to (not including) one length prefix, for each vector or
/// string field the messages hold, and whether the frame is a request or a
/// reply. The exec prefixes follow the minimal exec's fields in order.
fn length_prefixes() -> Vec<(&'static str, Kind, Vec<u8>)> {
    vec![
        ("exec-argv", Kind::Request, vec![0x07]),
        ("exec-argv0", Kind::Request, vec![0x07, 0x01]),
        ("exec-env", Kind::Request, vec![0x07, 0x01, 0x01, b'x']),
        (
            "exec-fd-map",
            Kind::Request,
            vec![0x07, 0x01, 0x01, b'x', 0x00],
        ),
        (
            "exec-cwd",
            Kind::Request,
            vec![0x07, 0x01, 0x01, b'x', 0x00, 0x00, 0x00, 0x01],
        ),
        (
            "exec-rlimits",
            Kind::Request,
            vec![0x07, 0x01, 0x01, b'x', 0x00, 0x00, 0x00, 0x00],
        ),
        (
            "exec-seccomp",
            Kind::Request,
            vec![0x07, 0x01, 0x01, b'x', 0x00, 0x00, 0x00, 0x00, 0x00],
        ),
        ("configure-mounts", Kind::Request, vec![0x02]),
        ("configure-symlinks", Kind::Request, vec![0x02, 0x00]),
        ("configure-masked", Kind::Request, vec![0x02, 0x00, 0x00]),
        (
            "configure-hostname",
            Kind::Request,
            vec![0x02, 0x00, 0x00, 0x00],
        ),
        (
            "configure-init-command",
            Kind::Request,
            vec![0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, b'/', 0x00, 0x00],
        ),
        ("open-items", Kind::Request, vec![0x03]),
        ("delete-path", Kind::Request, vec![0x04]),
        ("symlink-items", Kind::Request, vec![0x05]),
        ("copy-in-items", Kind::Request, vec![0x0b]),
        ("copy-in-path", Kind::Request, vec![0x0b, 0x01]),
        ("copy-out-paths", Kind::Request, vec![0x0c]),
        ("copy-out-path", Kind::Request, vec![0x0c, 0x01]),
        ("error-path", Kind::Reply, vec![0x03, 0x00, 0x00, 0x01]),
        ("error-message", Kind::Reply, vec![0x03, 0x00, 0x00, 0x00]),
        ("opened-results", Kind::Reply, vec![0x04]),
        ("linked-results", Kind::Reply, vec![0x05]),
        (
            "opened-item-message",
            Kind::Reply,
            vec![0x04, 0x01, 0x01, 0x00],
        ),
        ("copied-in-results", Kind::Reply, vec![0x08]),
        (
            "copied-in-item-message",
            Kind::Reply,
            vec![0x08, 0x01, 0x01, 0x01, 0x00],
        ),
    ]
}

/// Frames whose length prefix (of a vector or a string) claims more
/// elements or bytes than the frame has bytes left, from one more to
/// `u64::MAX`. Every one of them is malformed: each element takes at least
/// one byte.
pub(crate) fn overlong_claim_frames() -> Vec<(String, Kind, Vec<u8>)> {
    let mut frames = Vec::new();
    let claims: [(&str, u64); 4] = [
        ("u32-max", u64::from(u32::MAX)),
        ("u64-max", u64::MAX),
        ("2^40", 1 << 40),
        ("2^20", 1 << 20),
    ];
    for (what, kind, prefix) in length_prefixes() {
        for (claim_name, claim) in claims {
            let mut body = prefix.clone();
            body.extend(varint(claim));
            body.extend_from_slice(&[0; 8]);
            frames.push((format!("{what}-claims-{claim_name}"), kind, frame(&body)));
        }
        // One more than the bytes left: the decoder gets no size hint and
        // must grow the vector as elements arrive. With 2^n + 1 one-byte
        // elements its capacity has just doubled to 2^(n + 1) when the
        // bytes run out.
        for left in [1025u64, 4097] {
            let mut body = prefix.clone();
            body.extend(varint(left + 1));
            body.resize(body.len() + left as usize, 0);
            frames.push((
                format!("{what}-claims-{}-of-{left}-left", left + 1),
                kind,
                frame(&body),
            ));
        }
    }
    // A 10-byte varint holding more than u64::MAX does not fit.
    frames.push((
        "exec-argv-claims-2^70".to_owned(),
        Kind::Request,
        frame(&[
            0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ]),
    ));
    frames
}

/// Frames whose length prefix claims exactly as many elements as the frame
/// has bytes left, all zero: the largest claim a decoder may trust enough
/// to preallocate for. Where the field is the last of its message and an
/// all-zero element is valid, the frame is a valid message; otherwise it is
/// malformed.
pub(crate) fn exact_claim_frames() -> Vec<(String, Kind, Vec<u8>)> {
    let mut frames = Vec::new();
    for (what, kind, prefix) in length_prefixes() {
        for left in [1024u64, 4096, 65536] {
            let mut body = prefix.clone();
            body.extend(varint(left));
            body.resize(body.len() + left as usize, 0);
            frames.push((
                format!("{what}-claims-{left}-of-{left}-left"),
                kind,
                frame(&body),
            ));
        }
    }
    frames
}
