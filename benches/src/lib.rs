//! Shared fixtures of the hutch benchmarks.
//!
//! Every message kind of `hutch-protocol` has one representative value here,
//! shaped like what a host and an init exchange in practice: a default
//! container configuration, a compiler-like exec with a seccomp allow-list, a
//! finished run. Benchmarks take them from [`requests`] and [`replies`], or
//! build one directly with the function of that message.
//!
//! Every fixture passes validation with the descriptor count its
//! [`Fixture`] states.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use hutch_protocol::{
    Access, Accounting, Batch, BpfInstruction, Configure, Delete, ErrorReply, ExecRequest,
    ExecResult, FileSystem, Hello, HelloReply, ItemError, ItemOutcome, Limits, MAX_FRAME_LEN,
    Mount, MountFlags, OpenFlags, OpenItem, PROTOCOL_VERSION, Reply, Request, Resource, Rlimit,
    Stage, Status, SymlinkItem, Termination, encode_reply, encode_request, features,
};

/// One message to benchmark, with what travels beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture<T> {
    /// Benchmark name of the message kind: lowercase, words joined by `-`,
    /// reply kinds ending in `-reply` where a request has the same name.
    pub name: &'static str,
    /// The message.
    pub message: T,
    /// How many descriptors travel with it as `SCM_RIGHTS`; the count its
    /// validation expects.
    pub fds: usize,
}

/// One fixture per [`Request`] variant, in wire-tag order.
pub fn requests() -> Vec<Fixture<Request>> {
    vec![
        fixture("hello", hello(), 0),
        fixture("ping", Request::Ping, 0),
        fixture("configure", configure(), 0),
        fixture("open", open(), 0),
        fixture("delete", delete(), 0),
        fixture("symlink", symlink(), 0),
        fixture("reset", Request::Reset, 0),
        fixture("exec", exec(), EXEC_FDS),
        fixture("proceed", Request::Proceed, 0),
        fixture("kill", Request::Kill, 0),
    ]
}

/// One fixture per [`Reply`] variant, in wire-tag order.
pub fn replies() -> Vec<Fixture<Reply>> {
    vec![
        fixture("hello-reply", hello_reply(), 0),
        fixture("pong", Reply::Pong, 0),
        fixture("ack", Reply::Ack, 0),
        fixture("error", error(), 0),
        fixture("opened", opened(), OPENED_FDS),
        fixture("linked", linked(), 0),
        fixture("started", started(), 0),
        fixture("finished", finished(), 0),
    ]
}

fn fixture<T>(name: &'static str, message: T, fds: usize) -> Fixture<T> {
    Fixture { name, message, fds }
}

/// The frame of `request`, as [`hutch_protocol::encode_request`] writes it.
///
/// # Panics
///
/// When the request does not encode, which no fixture does.
pub fn request_frame(request: &Request) -> Vec<u8> {
    let mut buf = vec![0; MAX_FRAME_LEN];
    let len = encode_request(request, &mut buf).expect("fixture request encodes");
    buf.truncate(len);
    buf
}

/// The frame of `reply`, as [`hutch_protocol::encode_reply`] writes it.
///
/// # Panics
///
/// When the reply does not encode, which no fixture does.
pub fn reply_frame(reply: &Reply) -> Vec<u8> {
    let mut buf = vec![0; MAX_FRAME_LEN];
    let len = encode_reply(reply, &mut buf).expect("fixture reply encodes");
    buf.truncate(len);
    buf
}

/// The host's handshake: this crate's version, every known feature bit.
pub fn hello() -> Request {
    Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        features: features::HOST_KNOWN,
    })
}

/// Descriptors attached to the [`exec`] request: the program's stdin,
/// stdout and stderr.
pub const EXEC_FDS: usize = 3;

/// A default container configuration.
///
/// The host's `/usr`, `/lib`, `/lib64` and `/bin` bound read-only, a small
/// tmpfs `/dev` holding binds of five device nodes, a writable work tmpfs `/w`
/// and a `/tmp`, a read-only `proc`; the usual `/dev` symbolic links; the
/// `proc` and `sys` entries a sandbox hides.
pub fn configure() -> Request {
    const MIB: u64 = 1 << 20;
    let locked = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: false,
    };
    let bind = |path: &str, flags| Mount::Bind {
        source: path.into(),
        target: path.into(),
        writable: false,
        flags,
    };
    let tmpfs = |target: &str, size_bytes, max_inodes, mode| Mount::Tmpfs {
        target: target.into(),
        size_bytes,
        max_inodes,
        mode,
        read_only: false,
    };
    let mut mounts = vec![
        bind("/usr", locked),
        bind("/lib", locked),
        bind("/lib64", locked),
        bind("/bin", locked),
        tmpfs("/dev", 64 * 1024, 64, 0o755),
        tmpfs("/w", 256 * MIB, 16_384, 0o777),
        tmpfs("/tmp", 64 * MIB, 4_096, 0o1777),
        Mount::Proc {
            target: "/proc".into(),
            read_only: true,
        },
    ];
    mounts.extend(
        ["null", "zero", "full", "random", "urandom"].map(|name| Mount::Device {
            source: format!("/dev/{name}"),
            target: format!("/dev/{name}"),
        }),
    );
    let symlinks = [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ]
    .map(|(link, target)| SymlinkItem {
        link: link.into(),
        target: target.into(),
    })
    .to_vec();
    let masked_paths = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    ]
    .map(String::from)
    .to_vec();
    Request::Configure(Configure {
        mounts,
        symlinks,
        masked_paths,
        hostname: "hutch".into(),
        domainname: "sandbox.invalid".into(),
        workdir: "/w".into(),
        uid: 1000,
        gid: 1000,
        init_command: Vec::new(),
        filesystem: FileSystem::Container,
    })
}

/// A batch of three opens: an input to read, an output to create and
/// truncate, a log to append to under a directory that may not exist yet.
pub fn open() -> Request {
    let flags = |access, create, truncate, append| OpenFlags {
        access,
        create,
        exclusive: false,
        truncate,
        append,
    };
    Request::Open(vec![
        OpenItem {
            path: "/w/input.txt".into(),
            flags: flags(Access::Read, false, false, false),
            mode: 0,
            make_parents: false,
        },
        OpenItem {
            path: "/w/output.txt".into(),
            flags: flags(Access::Write, true, true, false),
            mode: 0o644,
            make_parents: false,
        },
        OpenItem {
            path: "/w/logs/run.log".into(),
            flags: flags(Access::Write, true, false, true),
            mode: 0o640,
            make_parents: true,
        },
    ])
}

/// Removal of a file the previous run wrote.
pub fn delete() -> Request {
    Request::Delete(Delete {
        path: "/w/output.txt".into(),
    })
}

/// A batch of three symbolic links into the work directory.
pub fn symlink() -> Request {
    Request::Symlink(
        [
            ("/w/main.c", "/w/src/solution.c"),
            ("/w/input.txt", "tests/01.in"),
            ("/tmp/cc", "/usr/bin/gcc"),
        ]
        .map(|(link, target)| SymlinkItem {
            link: link.into(),
            target: target.into(),
        })
        .to_vec(),
    )
}

/// A typical synchronised exec: a compiler run with ten arguments, twenty
/// environment variables, stdin, stdout and stderr mapped from the
/// [`EXEC_FDS`] attached descriptors, four rlimits, the
/// [`seccomp_allow_list`] filter and every limit set.
pub fn exec() -> Request {
    let argv = [
        "/usr/bin/gcc",
        "-O2",
        "-std=c17",
        "-Wall",
        "-Wextra",
        "-pipe",
        "-static",
        "-o",
        "/w/main",
        "/w/main.c",
    ];
    let env = [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/w",
        "USER=runner",
        "LOGNAME=runner",
        "SHELL=/bin/sh",
        "LANG=C.UTF-8",
        "LC_ALL=C.UTF-8",
        "TERM=dumb",
        "TMPDIR=/tmp",
        "PWD=/w",
        "TZ=UTC",
        "SOURCE_DATE_EPOCH=0",
        "CC=gcc",
        "CFLAGS=-O2",
        "ONLINE_JUDGE=1",
        "OMP_NUM_THREADS=1",
        "MALLOC_ARENA_MAX=2",
        "PYTHONHASHSEED=0",
        "PYTHONDONTWRITEBYTECODE=1",
        "HUTCH_RUN=42",
    ];
    Request::Exec(ExecRequest {
        argv: argv.map(String::from).to_vec(),
        env: env.map(String::from).to_vec(),
        fd_map: vec![0, 1, 2],
        exec_fd: None,
        cwd: Some("/w".into()),
        rlimits: vec![
            Rlimit {
                resource: Resource::Stack,
                soft: 256 << 20,
                hard: 256 << 20,
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
            Rlimit {
                resource: Resource::Fsize,
                soft: 64 << 20,
                hard: 64 << 20,
            },
        ],
        seccomp: seccomp_allow_list(),
        limits: Limits {
            cpu_time_ns: Some(2_000_000_000),
            wall_time_ns: Some(5_000_000_000),
            output_bytes: Some(64 << 20),
            memory_bytes: Some(256 << 20),
            processes: Some(16),
        },
        sync: true,
        uid: Some(1000),
        gid: Some(1000),
    })
}

/// A 50-instruction classic BPF seccomp filter for x86-64: check the
/// architecture (kill the process on any other), load the system call
/// number, compare it against an allow-list of 44 calls, return `EPERM` for
/// everything else.
pub fn seccomp_allow_list() -> Vec<BpfInstruction> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const OFFSET_NR: u32 = 0; // offsetof(struct seccomp_data, nr)
    const OFFSET_ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ERRNO_EPERM: u32 = 0x0005_0000 | 1;
    const RET_ALLOW: u32 = 0x7fff_0000;
    // read, write, open, close, stat, fstat, lstat, poll, lseek, mmap,
    // mprotect, munmap, brk, rt_sigaction, rt_sigprocmask, rt_sigreturn,
    // ioctl, pread64, pwrite64, readv, writev, access, pipe, sched_yield,
    // mremap, madvise, dup, dup2, nanosleep, getpid, clone, execve, exit,
    // wait4, uname, fcntl, getcwd, readlink, arch_prctl, gettid, futex,
    // exit_group, openat, newfstatat.
    const ALLOWED: [u32; 44] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 24, 25,
        28, 32, 33, 35, 39, 56, 59, 60, 61, 63, 72, 79, 89, 158, 186, 202, 231, 257, 262,
    ];
    let insn = |code, jt, jf, k| BpfInstruction { code, jt, jf, k };
    let mut program = vec![
        insn(LD_W_ABS, 0, 0, OFFSET_ARCH),
        insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(RET_K, 0, 0, RET_KILL_PROCESS),
        insn(LD_W_ABS, 0, 0, OFFSET_NR),
    ];
    for (i, nr) in ALLOWED.into_iter().enumerate() {
        // Jump over the remaining comparisons and the EPERM return.
        let to_allow = u8::try_from(ALLOWED.len() - i).expect("short allow-list");
        program.push(insn(JEQ_K, to_allow, 0, nr));
    }
    program.push(insn(RET_K, 0, 0, RET_ERRNO_EPERM));
    program.push(insn(RET_K, 0, 0, RET_ALLOW));
    program
}

/// Init's handshake: this crate's version, every known feature bit.
pub fn hello_reply() -> Reply {
    Reply::Hello(HelloReply {
        version: PROTOCOL_VERSION,
        features: features::INIT_KNOWN,
    })
}

/// A configuration that failed: a bind source missing on the host.
pub fn error() -> Reply {
    Reply::Error(ErrorReply {
        stage: Stage::Mount,
        errno: 2,
        path: Some("/lib64".into()),
        message: "cannot bind /lib64 at /lib64: no such file or directory".into(),
    })
}

/// Descriptors attached to the [`opened`] reply: one per item done.
pub const OPENED_FDS: usize = 2;

/// The answer to [`open`]: two files opened, the third refused.
pub fn opened() -> Reply {
    Reply::Opened(Batch {
        results: vec![
            ItemOutcome::Done,
            ItemOutcome::Done,
            ItemOutcome::Failed(ItemError {
                errno: 28,
                message: "cannot create /w/logs/run.log: no space left on device".into(),
            }),
        ],
        fds_attached: OPENED_FDS as u32,
    })
}

/// The answer to [`symlink`]: every link made.
pub fn linked() -> Reply {
    Reply::Linked(Batch {
        results: vec![ItemOutcome::Done; 3],
        fds_attached: 0,
    })
}

/// A synchronised exec's program, waiting to proceed.
pub fn started() -> Reply {
    Reply::Started { pid: 2 }
}

/// A successful run measured through cgroup v2.
pub fn finished() -> Reply {
    Reply::Finished(ExecResult {
        status: Status::Ok,
        termination: Termination::Exited(0),
        user_time_ns: 412_337_000,
        system_time_ns: 87_102_000,
        memory_bytes: 48_234_496,
        wall_time_ns: 533_871_204,
        accounting: Accounting::CgroupV2,
        error: None,
        processes_peak: Some(1),
    })
}

#[cfg(test)]
mod tests {
    use hutch_protocol::{decode_reply, decode_request};

    use super::*;

    #[test]
    fn every_request_round_trips_and_validates() {
        let fixtures = requests();
        assert_eq!(fixtures.len(), 10);
        for Fixture { name, message, fds } in fixtures {
            let frame = request_frame(&message);
            let decoded = decode_request(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(decoded, message, "{name}");
            decoded
                .validate(fds)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn every_reply_round_trips_and_validates() {
        let fixtures = replies();
        assert_eq!(fixtures.len(), 8);
        for Fixture { name, message, fds } in fixtures {
            let frame = reply_frame(&message);
            let decoded = decode_reply(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(decoded, message, "{name}");
            decoded
                .validate(fds)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn fixtures_have_the_stated_shape() {
        let Request::Configure(configure) = configure() else {
            unreachable!()
        };
        let devices = configure
            .mounts
            .iter()
            .filter(|m| matches!(m, Mount::Device { .. }))
            .count();
        assert_eq!(
            (configure.mounts.len() - devices, devices),
            (8, 5),
            "mounts, device binds"
        );
        assert_eq!(configure.symlinks.len(), 4);
        assert_eq!(configure.masked_paths.len(), 6);

        let Request::Exec(exec) = exec() else {
            unreachable!()
        };
        assert_eq!((exec.argv.len(), exec.env.len()), (10, 20));
        assert_eq!(exec.fd_map, [0, 1, 2]);
        assert_eq!(exec.seccomp.len(), 50);
    }

    #[test]
    fn seccomp_jumps_land_on_the_allow_return() {
        let program = seccomp_allow_list();
        let allow = program.len() - 1;
        for (pc, insn) in program.iter().enumerate().filter(|(pc, _)| *pc > 3) {
            if insn.code == 0x15 {
                assert_eq!(pc + 1 + usize::from(insn.jt), allow, "instruction {pc}");
            }
        }
        assert_eq!(program[allow].k, 0x7fff_0000);
    }
}
