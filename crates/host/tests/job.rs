//! Jobs: files copied in from bytes, host paths and the store; files copied
//! out, never through a symbolic link; collectors; pipes between commands,
//! relayed or not; interactive pairs; and the job's own errors.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[path = "../../../tests/support/scratch.rs"]
mod scratch;

use hutch_host::protocol::Status;
use hutch_host::{
    Collector, Command, ContainerBuilder, CopyIn, CopyOut, ExecSpec, FileErrorKind, FileStore, Job,
    JobError, PipeEnd, Pool, Proxy, Source, Stream, Verdict,
};

fn builder() -> ContainerBuilder {
    if rustix::process::geteuid().is_root() {
        ContainerBuilder::new()
    } else {
        ContainerBuilder::new().allow_rusage()
    }
}

/// A pool for one test: dropped with it, so its containers and their
/// cgroups go when the test ends (a pool in a static never would).
fn pool() -> Pool {
    Pool::new(builder(), 2)
}

fn collect_by_pipe(name: &str, max: u64) -> Stream {
    Stream::Collect(Collector {
        name: name.into(),
        max,
        pipe: true,
        store: false,
    })
}

fn bytes(text: &str) -> Source {
    Source::Bytes(Arc::from(text.as_bytes()))
}

/// A command with no input and its stdout and stderr collected.
fn command(argv: &[&str]) -> Command {
    Command::new(ExecSpec::new(argv.iter().copied()).wall_time(Duration::from_secs(20)))
        .stream(Stream::Null)
        .stream(Stream::collect("stdout", 1 << 20))
        .stream(Stream::collect("stderr", 1 << 20))
}

fn sh(script: &str) -> Command {
    command(&["sh", "-c", script])
}

fn run_one(command: Command) -> hutch_host::CommandResult {
    let mut job = Job::new();
    job.command(command);
    job.run(&pool()).unwrap().remove(0)
}

fn text(result: &hutch_host::CommandResult, name: &str) -> String {
    String::from_utf8_lossy(
        result
            .files
            .get(name)
            .unwrap_or_else(|| panic!("no file {name:?} in {result:#?}")),
    )
    .into_owned()
}

/// `tests/programs/pingpong.c`, compiled once.
fn pingpong() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let source =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs/pingpong.c");
            let dir = scratch::process_dir("job", 0o755);
            let binary = dir.join("pingpong");
            let output = std::process::Command::new("cc")
                .args(["-O2", "-Wall", "-Wextra", "-o"])
                .arg(&binary)
                .arg(&source)
                .stderr(Stdio::piped())
                .output()
                .expect("cc runs");
            assert!(
                output.status.success(),
                "cc failed on {}:\n{}",
                source.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            binary
        })
        .clone()
}

#[test]
fn one_command_collects_its_output() {
    let result = run_one(sh("echo out; echo err >&2"));
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    assert_eq!(text(&result, "stdout"), "out\n");
    assert_eq!(text(&result, "stderr"), "err\n");
    assert!(result.file_errors.is_empty());
    assert_eq!(result.exit_status(), 0);
}

#[test]
fn input_comes_from_bytes_and_host_files() {
    let result = run_one(
        Command::new(ExecSpec::new(["cat"]))
            .stream(Stream::Input(bytes("from bytes\n")))
            .stream(Stream::collect("stdout", 1024)),
    );
    assert_eq!(text(&result, "stdout"), "from bytes\n");

    let dir = tempdir("input");
    let path = dir.join("in.txt");
    std::fs::write(&path, "from a host file\n").unwrap();
    let result = run_one(
        Command::new(ExecSpec::new(["cat"]))
            .stream(Stream::Input(Source::Path(path)))
            .stream(Stream::collect("stdout", 1024)),
    );
    assert_eq!(text(&result, "stdout"), "from a host file\n");
}

/// A file of the caller's is the program's input from its start, whatever
/// the caller's offset, as often as it is given, and the caller's offset
/// stays where it was.
#[test]
fn a_callers_file_is_read_from_its_start_and_its_offset_left_alone() {
    use std::io::{Seek, Write};
    let dir = tempdir("caller-file");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("in.txt"))
        .unwrap();
    file.write_all(b"hello\n").unwrap();
    let file = Arc::new(file);
    for _ in 0..2 {
        let result = run_one(
            Command::new(ExecSpec::new(["cat"]))
                .stream(Stream::Input(Source::File(Arc::clone(&file))))
                .stream(Stream::collect("stdout", 1024)),
        );
        assert_eq!(text(&result, "stdout"), "hello\n", "{result:#?}");
    }
    assert_eq!((&*file).stream_position().unwrap(), 6);
}

#[test]
fn copy_in_makes_directories_links_and_absolute_paths() {
    let result = run_one(
        sh("cat a.txt sub/dir/b.txt /tmp/c.txt link.txt; stat -c '%a %U' sub/dir/b.txt")
            .copy_in(CopyIn::file("a.txt", bytes("a\n")))
            .copy_in(CopyIn {
                mode: 0o640,
                ..CopyIn::file("sub/dir/b.txt", bytes("b\n"))
            })
            .copy_in(CopyIn::file("/tmp/c.txt", bytes("c\n")))
            .copy_in(CopyIn::symlink("link.txt", "a.txt")),
    );
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    let out = text(&result, "stdout");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("a"));
    assert_eq!(lines.next(), Some("b"));
    assert_eq!(lines.next(), Some("c"));
    assert_eq!(lines.next(), Some("a"));
    let owner_line = lines.next().unwrap();
    assert!(owner_line.starts_with("640 "), "{owner_line}");
}

#[test]
fn a_missing_source_or_a_read_only_destination_is_a_file_error() {
    let result =
        run_one(sh("echo ran").copy_in(CopyIn::file("x", Source::Path("/nonexistent/x".into()))));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert!(result.exec.is_none(), "the program must not run");
    assert_eq!(result.file_errors[0].kind, FileErrorKind::CopyInOpenFile);
    assert_eq!(result.file_errors[0].name, "x");

    let result = run_one(sh("echo ran").copy_in(CopyIn::file("/usr/x", bytes("x"))));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert_eq!(result.file_errors[0].kind, FileErrorKind::CopyInCreateFile);
    assert!(
        result.file_errors[0]
            .message
            .contains("Read-only file system"),
        "{result:#?}"
    );
}

#[test]
fn a_host_path_that_is_no_regular_file_is_refused_without_waiting_for_it() {
    // A FIFO no one writes: opening it for reading would wait for ever,
    // before any limit of the run counts.
    let dir = tempdir("fifo");
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let result = run_one(sh("echo ran").copy_in(CopyIn::file("x", Source::Path(fifo.clone()))));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert!(result.exec.is_none(), "the program must not run");
    assert_eq!(result.file_errors[0].kind, FileErrorKind::CopyInOpenFile);
    assert!(
        result.file_errors[0].message.contains("not a regular file"),
        "{result:#?}"
    );
    let result = run_one(
        Command::new(ExecSpec::new(["cat"]))
            .stream(Stream::Input(Source::Path(fifo)))
            .stream(Stream::collect("stdout", 1024)),
    );
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert!(
        result.exec.is_none(),
        "the program must not run: {result:#?}"
    );
    assert!(
        result.file_errors[0].message.contains("not a regular file"),
        "{result:#?}"
    );
}

#[test]
fn a_request_refused_before_it_reaches_the_container_is_the_commands_error() {
    let mut c = hutch_host::ContainerBuilder::new()
        .build()
        .expect("container starts");
    let mut run_in = |command: Command| {
        let mut job = Job::new();
        job.command(command);
        job.run_in(&mut [&mut c]).unwrap().remove(0)
    };
    let result = run_in(Command::new(ExecSpec::new(Vec::<String>::new())).stream(Stream::Null));
    assert_eq!(result.verdict, Verdict::RunnerError, "{result:#?}");
    assert!(result.exec.is_none(), "the program must not run");
    assert!(result.error.is_some(), "{result:#?}");
    // A copy-in path no request may carry is that file's error alone: the
    // others of the batch are copied in, and the program does not run.
    for (what, bad) in [
        ("a NUL in a copy-in path", "a\0b"),
        ("a copy-in path out of the work directory", "../../etc/x"),
    ] {
        let result = run_in(
            sh("echo ran")
                .copy_in(CopyIn::file("good", bytes("x")))
                .copy_in(CopyIn::file(bad, bytes("x"))),
        );
        assert_eq!(result.verdict, Verdict::FileError, "{what}: {result:#?}");
        assert!(result.exec.is_none(), "{what}: the program must not run");
        assert_eq!(result.file_errors.len(), 1, "{what}: {result:#?}");
        assert_eq!(result.file_errors[0].name, bad, "{what}");
        assert_eq!(
            result.file_errors[0].kind,
            FileErrorKind::CopyInCreateFile,
            "{what}"
        );
    }
    let result = run_in(sh("echo ran"));
    assert_eq!(
        text(&result, "stdout"),
        "ran\n",
        "the container still serves"
    );
}

#[test]
fn a_copy_out_path_no_request_may_carry_is_its_own_error_only() {
    let result = run_one(
        sh("echo good > a; echo also > b")
            .copy_out(CopyOut::file("a"))
            .copy_out(CopyOut::file("../x"))
            .copy_out(CopyOut::file("b")),
    );
    assert_eq!(text(&result, "a"), "good\n", "{result:#?}");
    assert_eq!(text(&result, "b"), "also\n", "{result:#?}");
    assert_eq!(result.file_errors.len(), 1, "{result:#?}");
    assert_eq!(result.file_errors[0].name, "../x");
    assert!(
        result.file_errors[0].message.contains("..")
            && !result.file_errors[0].message.contains("\"a\""),
        "{result:#?}"
    );
}

#[test]
fn a_file_too_large_for_the_work_directory_is_a_copy_error() {
    let big: Vec<u8> = vec![b'x'; 80 << 20];
    let result = run_one(sh("echo ran").copy_in(CopyIn::file("big", Source::Bytes(big.into()))));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert_eq!(result.file_errors[0].kind, FileErrorKind::CopyInCopyContent);
}

#[test]
fn copy_out_reads_files_and_stores_them() {
    let store = FileStore::temporary().unwrap();
    let mut job = Job::new().with_store(store.clone());
    job.command(
        sh("printf one > one; mkdir d; printf two > d/two")
            .copy_out(CopyOut::file("one"))
            .copy_out(CopyOut {
                store: true,
                ..CopyOut::file("d/two")
            }),
    );
    let result = job.run(&pool()).unwrap().remove(0);
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    assert_eq!(result.files["one"], b"one");
    let id = &result.stored["d/two"];
    let (name, mut file) = store.get(id).unwrap();
    assert_eq!(name, "d/two");
    let mut content = String::new();
    std::io::Read::read_to_string(&mut file, &mut content).unwrap();
    assert_eq!(content, "two");

    // The stored file goes into a later run, as a copy-in and as stdin.
    let mut job = Job::new().with_store(store);
    job.command(
        Command::new(ExecSpec::new(["cat", "again", "-"]))
            .stream(Stream::Input(Source::Stored(id.clone())))
            .stream(Stream::collect("stdout", 1024))
            .copy_in(CopyIn::file("again", Source::Stored(id.clone()))),
    );
    let result = job.run(&pool()).unwrap().remove(0);
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    assert_eq!(text(&result, "stdout"), "twotwo");
}

#[test]
fn copy_out_never_follows_a_link_nor_reads_a_fifo() {
    let result = run_one(
        sh("ln -s /etc/passwd passwd; mkfifo fifo; mkdir dir; ln -s /w linkdir; echo x > f")
            .copy_out(CopyOut::file("passwd"))
            .copy_out(CopyOut::file("fifo"))
            .copy_out(CopyOut::file("dir"))
            .copy_out(CopyOut::file("linkdir/f")),
    );
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    for name in ["passwd", "fifo", "dir", "linkdir/f"] {
        assert!(
            !result.files.contains_key(name),
            "{name} was read: {result:#?}"
        );
        let error = result
            .file_errors
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no error for {name}: {result:#?}"));
        assert_eq!(
            error.kind,
            FileErrorKind::CopyOutNotRegularFile,
            "{error:?}"
        );
    }
}

#[test]
fn an_optional_copy_out_may_be_missing() {
    let result = run_one(
        sh("printf here > here")
            .copy_out(CopyOut {
                optional: true,
                ..CopyOut::file("missing")
            })
            .copy_out(CopyOut {
                optional: true,
                ..CopyOut::file("here")
            }),
    );
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    assert_eq!(result.files["here"], b"here");
    assert!(!result.files.contains_key("missing"));

    let result = run_one(sh("true").copy_out(CopyOut::file("missing")));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert_eq!(result.file_errors[0].kind, FileErrorKind::CopyOutOpen);
}

#[test]
fn copy_out_limit_refuses_or_truncates() {
    let big = || sh("head -c 1000 /dev/zero | tr '\\0' x > big").copy_out(CopyOut::file("big"));
    let result = run_one(big().copy_out_limit(100, false));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert_eq!(
        result.file_errors[0].kind,
        FileErrorKind::CopyOutSizeExceeded
    );
    assert!(!result.files.contains_key("big"));

    let result = run_one(big().copy_out_limit(100, true));
    assert_eq!(result.files["big"], vec![b'x'; 100]);
    assert_eq!(
        result.file_errors[0].kind,
        FileErrorKind::CopyOutSizeExceeded
    );
}

/// A link no request may carry is a file error of its own, naming it; the
/// command does not run.
#[test]
fn a_link_no_request_may_carry_is_a_file_error_of_its_own() {
    let result = run_one(
        sh("echo ran")
            .copy_in(CopyIn::symlink("ok", "/etc"))
            .copy_in(CopyIn::symlink("../escape", "/etc")),
    );
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert_eq!(result.file_errors.len(), 1, "{result:#?}");
    assert_eq!(result.file_errors[0].name, "../escape");
    assert_eq!(result.file_errors[0].kind, FileErrorKind::Symlink);
    assert!(result.exec.is_none(), "the program must not run");
}

/// An empty copy-in path is refused as one, not as the work directory.
#[test]
fn an_empty_copy_in_path_is_refused_as_empty() {
    let result = run_one(sh("echo ran").copy_in(CopyIn::file("", bytes("x"))));
    assert_eq!(result.verdict, Verdict::FileError, "{result:#?}");
    assert!(
        result.file_errors[0]
            .message
            .ends_with("copy-in path is empty"),
        "{result:#?}"
    );
}

/// A file that tells no size (made as it is read, as in `/proc`) is copied
/// out whole, within the limit, not as an empty file.
#[test]
fn a_file_that_tells_no_size_is_copied_out_by_reading_it() {
    let cmdline = || sh("true").copy_out(CopyOut::file("/proc/1/cmdline"));
    let result = run_one(cmdline());
    assert!(result.file_errors.is_empty(), "{result:#?}");
    assert_eq!(result.files["/proc/1/cmdline"], b"hutch-init\0");
    let result = run_one(cmdline().copy_out_limit(3, true));
    assert_eq!(result.files["/proc/1/cmdline"], b"hut");
    assert_eq!(
        result.file_errors[0].kind,
        FileErrorKind::CopyOutSizeExceeded
    );
    let empty = run_one(sh(": > empty").copy_out(CopyOut::file("empty")));
    assert_eq!(empty.files["empty"], b"");
}

/// An output-limit verdict for the collector `name`, which kept `max` bytes.
fn assert_collector_overflowed(result: &hutch_host::CommandResult, name: &str, max: usize) {
    assert_eq!(result.verdict, Verdict::OutputLimit, "{result:#?}");
    assert_eq!(result.files[name].len(), max);
    assert_eq!(
        result.file_errors[0].kind,
        FileErrorKind::CollectSizeExceeded
    );
}

#[test]
fn output_past_a_collector_is_an_output_limit() {
    let result = run_one(
        Command::new(ExecSpec::new(["sh", "-c", "head -c 5000 /dev/zero"]))
            .stream(Stream::Null)
            .stream(Stream::collect("stdout", 1000)),
    );
    assert_collector_overflowed(&result, "stdout", 1000);
}

/// What a program writes into an in-memory collector is memory charged to
/// its run: a collector past its `max` has to stop the run, or an endless
/// writer would run into its memory limit and be judged for memory. Also
/// when the flood starts after a quiet spell, over which the host looks at
/// the collector less and less often.
#[test]
fn an_in_memory_collector_stops_an_endless_writer_before_its_memory_limit() {
    let memory = 64 << 20;
    for argv in [&["yes"][..], &["sh", "-c", "sleep 0.3; exec yes"]] {
        let result = run_one(
            Command::new(
                ExecSpec::new(argv.iter().copied())
                    .memory_limit(memory)
                    .wall_time(Duration::from_secs(30)),
            )
            .stream(Stream::Null)
            .stream(Stream::collect("stdout", 4096)),
        );
        assert_collector_overflowed(&result, "stdout", 4096);
        let exec = result.exec.as_ref().unwrap();
        assert_eq!(
            exec.status,
            Status::Signalled,
            "{argv:?} killed by the host: {exec:?}"
        );
        assert!(
            exec.memory_bytes < memory,
            "{argv:?} stopped before it filled its memory: {exec:?}"
        );
    }
}

/// The sizes are looked at while the program writes, over many checks; a
/// collector filled to exactly its `max` is not over it.
#[test]
fn an_in_memory_collector_filled_to_its_max_over_time_is_kept_whole() {
    let script = "for i in 1 2 3 4 5; do echo $i; sleep 0.01; done";
    let result = run_one(
        Command::new(ExecSpec::new(["sh", "-c", script]).wall_time(Duration::from_secs(20)))
            .stream(Stream::Null)
            .stream(Stream::collect("stdout", 10)),
    );
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    assert_eq!(text(&result, "stdout"), "1\n2\n3\n4\n5\n");
    assert!(result.file_errors.is_empty(), "{result:#?}");
}

#[test]
fn a_pipe_collector_stops_an_endless_writer_at_once() {
    let result = run_one(
        Command::new(ExecSpec::new(["yes"]).wall_time(Duration::from_secs(30)))
            .stream(Stream::Null)
            .stream(collect_by_pipe("stdout", 4096)),
    );
    assert_collector_overflowed(&result, "stdout", 4096);
    let exec = result.exec.as_ref().unwrap();
    assert_eq!(
        exec.status,
        Status::Signalled,
        "killed by the host: {exec:?}"
    );
    assert!(
        exec.wall_time_ns < 10_000_000_000,
        "stopped long before its wall limit: {exec:?}"
    );
}

#[test]
fn a_megabyte_goes_through_a_pipe_intact() {
    for proxy in [
        None,
        Some(Proxy {
            name: Some("relayed".into()),
            max: 100,
            store: false,
        }),
    ] {
        let mut job = Job::new();
        let producer = job.command(
            Command::new(ExecSpec::new([
                "sh",
                "-c",
                "head -c 1048576 /dev/urandom | tee /dev/stderr",
            ]))
            .stream(Stream::Null)
            .stream(Stream::Piped)
            .stream(Stream::collect("sent", 2 << 20)),
        );
        let consumer = job.command(
            Command::new(ExecSpec::new(["cat"]))
                .stream(Stream::Piped)
                .stream(Stream::collect("received", 2 << 20)),
        );
        let writer = PipeEnd {
            command: producer,
            fd: 1,
        };
        let reader = PipeEnd {
            command: consumer,
            fd: 0,
        };
        match &proxy {
            None => job.pipe(writer, reader),
            Some(proxy) => job.proxied_pipe(writer, reader, proxy.clone()),
        }
        let results = job.run(&pool()).unwrap();
        assert_eq!(results[0].verdict, Verdict::Ok, "{:#?}", results[0]);
        assert_eq!(results[1].verdict, Verdict::Ok, "{:#?}", results[1]);
        let sent = &results[0].files["sent"];
        assert_eq!(sent.len(), 1 << 20);
        assert_eq!(&results[1].files["received"], sent, "proxy {proxy:?}");
        if proxy.is_some() {
            assert_eq!(results[0].files["relayed"], sent[..100]);
        }
    }
}

#[test]
fn an_interactive_pair_talks_both_ways() {
    let binary = pingpong();
    let mut job = Job::new();
    let ping = job.command(
        Command::new(
            ExecSpec::new(["./pingpong", "ping", "2000"]).wall_time(Duration::from_secs(30)),
        )
        .stream(Stream::Piped)
        .stream(Stream::Piped)
        .stream(Stream::collect("stderr", 1024))
        .copy_in(CopyIn::file("pingpong", Source::Path(binary.clone()))),
    );
    let pong = job.command(
        Command::new(ExecSpec::new(["pingpong", "pong"]).wall_time(Duration::from_secs(30)))
            .stream(Stream::Piped)
            .stream(Stream::Piped)
            .copy_in(CopyIn::file("pingpong", Source::Path(binary))),
    );
    job.pipe(
        PipeEnd {
            command: ping,
            fd: 1,
        },
        PipeEnd {
            command: pong,
            fd: 0,
        },
    );
    job.pipe(
        PipeEnd {
            command: pong,
            fd: 1,
        },
        PipeEnd {
            command: ping,
            fd: 0,
        },
    );
    let results = job.run(&pool()).unwrap();
    assert_eq!(results[0].verdict, Verdict::Ok, "{:#?}", results[0]);
    assert_eq!(text(&results[0], "stderr"), "2000 rounds\n");
    assert_eq!(results[1].verdict, Verdict::Ok, "{:#?}", results[1]);
}

#[test]
fn when_one_side_ends_the_other_is_not_left_waiting() {
    // The reader of a pipe whose writer exits at once sees end of file;
    // the writer to a reader that exited at once sees EPIPE.
    let mut job = Job::new();
    let quitter = job.command(
        Command::new(ExecSpec::new(["true"]))
            .stream(Stream::Null)
            .stream(Stream::Piped),
    );
    let waiter = job.command(
        Command::new(
            ExecSpec::new(["sh", "-c", "cat; echo eof"]).wall_time(Duration::from_secs(30)),
        )
        .stream(Stream::Piped)
        .stream(Stream::collect("stdout", 1024)),
    );
    job.pipe(
        PipeEnd {
            command: quitter,
            fd: 1,
        },
        PipeEnd {
            command: waiter,
            fd: 0,
        },
    );
    let results = job.run(&pool()).unwrap();
    assert_eq!(results[1].verdict, Verdict::Ok, "{:#?}", results[1]);
    assert_eq!(text(&results[1], "stdout"), "eof\n");
    assert!(results[1].wall_time_ns() < 10_000_000_000);

    let mut job = Job::new();
    let writer = job.command(
        Command::new(ExecSpec::new(["yes"]).wall_time(Duration::from_secs(30)))
            .stream(Stream::Null)
            .stream(Stream::Piped),
    );
    let reader = job.command(Command::new(ExecSpec::new(["true"])).stream(Stream::Piped));
    job.pipe(
        PipeEnd {
            command: writer,
            fd: 1,
        },
        PipeEnd {
            command: reader,
            fd: 0,
        },
    );
    let results = job.run(&pool()).unwrap();
    let exec = results[0].exec.as_ref().unwrap();
    assert_eq!(results[0].verdict, Verdict::Signalled, "SIGPIPE: {exec:?}");
    assert!(exec.wall_time_ns < 10_000_000_000);
}

#[test]
fn a_pipe_may_join_descriptors_above_two() {
    let mut job = Job::new();
    let writer = job.command(sh("echo through fd 3 >&3"));
    let reader = job.command(sh("cat <&4"));
    job.pipe(
        PipeEnd {
            command: writer,
            fd: 3,
        },
        PipeEnd {
            command: reader,
            fd: 4,
        },
    );
    // fd 3 of the reader has no stream: the plan is refused.
    assert!(matches!(
        job.check(),
        Err(JobError::Unfilled { command: 1, fd: 3 })
    ));
    let mut job = Job::new();
    let writer = job.command(sh("echo through fd 3 >&3"));
    let reader = job.command(sh("cat <&3"));
    job.pipe(
        PipeEnd {
            command: writer,
            fd: 3,
        },
        PipeEnd {
            command: reader,
            fd: 3,
        },
    );
    let results = job.run(&pool()).unwrap();
    assert_eq!(
        text(&results[1], "stdout"),
        "through fd 3\n",
        "{results:#?}"
    );
}

#[test]
fn bad_plans_are_refused_before_anything_runs() {
    let mut job = Job::new();
    assert!(matches!(job.check(), Err(JobError::Empty)));
    job.command(sh("true"));
    job.pipe(PipeEnd { command: 0, fd: 1 }, PipeEnd { command: 5, fd: 0 });
    assert!(matches!(
        job.check(),
        Err(JobError::PipeCommand {
            pipe: 0,
            command: 5,
            commands: 1
        })
    ));
    let mut job = Job::new();
    job.command(sh("true"));
    job.command(sh("true"));
    // fd 1 of command 0 collects stdout already.
    job.pipe(PipeEnd { command: 0, fd: 1 }, PipeEnd { command: 1, fd: 5 });
    assert!(matches!(
        job.check(),
        Err(JobError::FdTaken {
            pipe: 0,
            command: 0,
            fd: 1
        })
    ));
    let mut job = Job::new();
    job.command(Command::new(ExecSpec::new(["true"])).stream(Stream::Piped));
    assert!(matches!(
        job.check(),
        Err(JobError::Unfilled { command: 0, fd: 0 })
    ));
    let mut job = Job::new();
    job.command(sh("true").copy_in(CopyIn::file("x", Source::Stored("AAAAAAAAAAAAAAAA".into()))));
    assert!(matches!(job.check(), Err(JobError::NoStore { command: 0 })));
    let mut job = Job::new();
    job.command(sh("true"));
    job.pipe(
        PipeEnd {
            command: 0,
            fd: 100,
        },
        PipeEnd { command: 0, fd: 0 },
    );
    assert!(matches!(job.check(), Err(JobError::FdTooHigh { .. })));
}

#[test]
fn a_program_copied_in_runs_by_its_bare_name() {
    let result = run_one(
        command(&["hello"]).copy_in(CopyIn::file("hello", bytes("#!/bin/sh\necho hi from $0\n"))),
    );
    assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
    assert_eq!(
        text(&result, "stdout"),
        "hi from hello\n",
        "run by its name, as given"
    );
}

fn tempdir(what: &str) -> scratch::TempDir {
    scratch::TempDir::new(&format!("job-{what}"), 0o755)
}

#[test]
fn a_run_may_be_pinned_to_cpus_and_the_next_one_is_not() {
    let all = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| {
            line.strip_prefix("Cpus_allowed_list:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap();
    let pool = Pool::new(builder(), 1);
    let cpus = |spec: ExecSpec<'static>| {
        let mut job = Job::new();
        job.command(
            Command::new(spec)
                .stream(Stream::Null)
                .stream(Stream::collect("stdout", 1024)),
        );
        let result = job.run(&pool).unwrap().remove(0);
        assert_eq!(result.verdict, Verdict::Ok, "{result:#?}");
        text(&result, "stdout").trim().to_owned()
    };
    let status = || {
        ExecSpec::new([
            "sh",
            "-c",
            "grep Cpus_allowed_list /proc/self/status | cut -f2",
        ])
    };
    let mut first = rustix::thread::CpuSet::new();
    first.set(0);
    assert_eq!(cpus(status().cpus(first)), "0");
    assert_eq!(cpus(status()), all, "the pinning does not outlive its run");
    let mut beyond = rustix::thread::CpuSet::new();
    beyond.set(rustix::thread::CpuSet::MAX_CPU - 1);
    let mut job = Job::new();
    job.command(Command::new(status().cpus(beyond)).stream(Stream::Null));
    let result = job.run(&pool).unwrap().remove(0);
    assert_eq!(result.verdict, Verdict::RunnerError, "{result:#?}");
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("none of the CPUs the program was given is one the container may use"),
        "{error}"
    );
    assert_eq!(cpus(status()), all, "a set refused pins nothing");
}

/// Runs `job` on a thread of its own in the pool's containers, cancellable
/// through `cancel`; its results come through the handle.
fn run_cancellable<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    pool: &Pool,
    job: Job,
    cancel: &hutch_host::Cancel,
) -> std::thread::ScopedJoinHandle<'scope, Vec<hutch_host::CommandResult>> {
    let mut pooled = pool.checkout_many(job.commands().len()).unwrap();
    let cancel = cancel.clone();
    std::thread::Builder::new()
        .spawn_scoped(scope, move || {
            let mut containers: Vec<&mut hutch_host::Container> =
                pooled.iter_mut().map(|c| &mut **c).collect();
            job.run_in_cancellable(&mut containers, Some(&cancel))
                .unwrap()
        })
        .unwrap()
}

/// A command whose stdout is the write end of a pipe the test reads, so
/// that the test knows when it has started; a second, collected, stdout
/// would be its result.
fn signalling(script: &str) -> (Command, std::fs::File) {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let command =
        Command::new(ExecSpec::new(["sh", "-c", script]).wall_time(Duration::from_secs(20)))
            .stream(Stream::Null)
            .stream(Stream::Fd(Arc::new(write)))
            .stream(Stream::collect("stderr", 1 << 20));
    (command, std::fs::File::from(read))
}

/// Reads one line from `from`.
fn read_line(from: &mut std::fs::File) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0];
    while from.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[test]
fn a_cancel_kills_what_runs_and_keeps_the_rest_from_starting() {
    let pool = pool();
    // Under way: killed at once, not at its 20 s wall-clock limit.
    let (running, mut ready) = signalling("echo ready; exec sleep 30");
    let mut job = Job::new();
    job.command(running);
    let cancel = hutch_host::Cancel::new();
    let started = std::time::Instant::now();
    let results = std::thread::scope(|scope| {
        let handle = run_cancellable(scope, &pool, job, &cancel);
        assert_eq!(read_line(&mut ready), "ready");
        cancel.cancel();
        handle.join().unwrap()
    });
    assert_eq!(results[0].verdict, Verdict::Signalled, "{:#?}", results[0]);
    assert_eq!(results[0].exit_status(), 9, "SIGKILL");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Cancelled before it runs: nothing starts.
    let mut job = Job::new();
    job.command(sh("echo never"));
    job.command(sh("echo never"));
    let cancel = hutch_host::Cancel::new();
    cancel.cancel();
    let results =
        std::thread::scope(|scope| run_cancellable(scope, &pool, job, &cancel).join()).unwrap();
    for result in &results {
        assert_eq!(result.verdict, Verdict::Cancelled, "{result:#?}");
        assert!(
            result.exec.is_none() && result.files.is_empty(),
            "{result:#?}"
        );
    }
}

#[test]
fn a_cancel_racing_the_start_of_the_run_still_stops_it() {
    let pool = pool();
    let started = std::time::Instant::now();
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..300 {
        let mut job = Job::new();
        job.command(command(&["sleep", "30"]));
        let cancel = hutch_host::Cancel::new();
        let results = std::thread::scope(|scope| {
            let handle = run_cancellable(scope, &pool, job, &cancel);
            // The cancel comes 0 to 3 ms after the job's start, so that it
            // lands before the command starts, while it starts, and while
            // it runs.
            let delay = Duration::from_micros(10 * i);
            let from = std::time::Instant::now();
            while from.elapsed() < delay {
                std::hint::spin_loop();
            }
            cancel.cancel();
            handle.join().unwrap()
        });
        let verdict = results[0].verdict;
        assert!(
            matches!(verdict, Verdict::Cancelled | Verdict::Signalled),
            "{:#?}",
            results[0]
        );
        *outcomes.entry(verdict.as_str()).or_insert(0) += 1;
    }
    assert!(
        outcomes.contains_key("signalled"),
        "no run was under way: {outcomes:?}"
    );
    // Each would have taken its 20 s wall-clock limit had a cancel been
    // lost.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?} for 300 cancelled jobs: {outcomes:?}",
        started.elapsed()
    );
}

#[test]
fn the_close_of_a_watched_connection_cancels_the_job_and_its_bytes_do_not() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let pool = pool();
    // Bytes, then the close of the peer's sending side after them (a
    // client's next request, sent ahead): the job runs on.
    let (client, mut peer) = UnixStream::pair().unwrap();
    let cancel = hutch_host::Cancel::new().on_peer_close(Arc::new(client.into()));
    let (stdin, mut input) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let (ready_read, ready) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut ready_read = std::fs::File::from(ready_read);
    let mut job = Job::new();
    job.command(
        Command::new(
            ExecSpec::new(["sh", "-c", "echo ready; read line; echo \"$line\" >&2"])
                .wall_time(Duration::from_secs(20)),
        )
        .stream(Stream::Fd(Arc::new(stdin)))
        .stream(Stream::Fd(Arc::new(ready)))
        .stream(Stream::collect("stderr", 100)),
    );
    let results = std::thread::scope(|scope| {
        let handle = run_cancellable(scope, &pool, job, &cancel);
        assert_eq!(read_line(&mut ready_read), "ready");
        peer.write_all(b"POST /run HTTP/1.1\r\n").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        rustix::io::write(&mut input, b"go\n").unwrap();
        handle.join().unwrap()
    });
    assert_eq!(results[0].verdict, Verdict::Ok, "{:#?}", results[0]);
    assert_eq!(text(&results[0], "stderr"), "go\n");
    assert!(!cancel.is_cancelled());

    // The peer gone: every command of the job is killed.
    let (client, peer) = UnixStream::pair().unwrap();
    let cancel = hutch_host::Cancel::new().on_peer_close(Arc::new(client.into()));
    let (first, mut ready) = signalling("echo ready; exec sleep 30");
    let mut job = Job::new();
    job.command(first);
    job.command(sh("exec sleep 30"));
    let started = std::time::Instant::now();
    let results = std::thread::scope(|scope| {
        let handle = run_cancellable(scope, &pool, job, &cancel);
        assert_eq!(read_line(&mut ready), "ready");
        drop(peer);
        handle.join().unwrap()
    });
    for result in &results {
        assert!(
            matches!(result.verdict, Verdict::Signalled | Verdict::Cancelled),
            "{result:#?}"
        );
    }
    assert_eq!(results[0].verdict, Verdict::Signalled, "{:#?}", results[0]);
    assert!(cancel.is_cancelled());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_cancel_after_the_job_reaches_no_later_run_of_its_containers() {
    let pool = Pool::new(builder(), 1);
    let cancel = hutch_host::Cancel::new();
    let mut job = Job::new();
    job.command(sh("echo first"));
    let first =
        std::thread::scope(|scope| run_cancellable(scope, &pool, job, &cancel).join()).unwrap();
    assert_eq!(first[0].verdict, Verdict::Ok, "{:#?}", first[0]);

    // The same container (the pool has one) runs the next job while the
    // first job's handle is cancelled.
    let (next, mut ready) = signalling("echo ready; sleep 0.2; echo done >&2");
    let mut job = Job::new();
    job.command(next);
    let unrelated = hutch_host::Cancel::new();
    let results = std::thread::scope(|scope| {
        let handle = run_cancellable(scope, &pool, job, &unrelated);
        assert_eq!(read_line(&mut ready), "ready");
        cancel.cancel();
        handle.join().unwrap()
    });
    assert_eq!(results[0].verdict, Verdict::Ok, "{:#?}", results[0]);
    assert_eq!(text(&results[0], "stderr"), "done\n");
}
