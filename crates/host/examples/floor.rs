//! What the kernel alone charges for a container's namespaces, next to the
//! bare-process baseline of `hutch bench`, in one run: the floor under a
//! cold container and a one-shot run, hutch's or another tool's
//! (`docs/performance.md`, "What is left, and why the targets are not
//! met").
//!
//! ```sh
//! cargo run --release -p hutch-host --example floor -- [COUNT] [--program PATH]
//! ```
//!
//! Each row is warmed up, then timed COUNT times (default 500), the rows
//! taking turns so that a drift of the machine's speed reaches them all
//! alike; the table gives medians, 90th percentiles and each median over
//! the baseline's:
//!
//! - `baseline`: PROGRAM (default `/bin/true`) started with
//!   `std::process::Command` and waited for, as `hutch bench` does it;
//! - `namespaces`: `clone3` into new user, mount, PID, UTS, IPC, network and
//!   cgroup namespaces, the child exiting at once, waited for: what the
//!   kernel takes to make those namespaces and to end the child, with no id
//!   map, mount, init, cgroup or message (the network and user namespaces
//!   are freed after the wait, by a kernel worker, which the next row's
//!   time may include);
//! - `namespaces-exec-init`: the same child execs hutch's init, which finds
//!   no socket at descriptor 3 and exits with 2: the least a cold container
//!   takes whose namespaces are made one after another, before any id map,
//!   mount, cgroup or message. hutch's are: `clone3` makes all but the
//!   network namespace, and init makes that one before its mounts, while
//!   only the host's cgroup work runs beside it;
//! - `namespaces-exec`: the child execs PROGRAM instead: the least any
//!   sandbox with these namespaces takes to run PROGRAM from a process
//!   already running;
//! - `one-shot-floor`: this executable (a dynamically linked Rust program,
//!   as `hutch` is) started as a child that does `namespaces-exec` once and
//!   exits: the least a one-shot sandbox written this way, making its
//!   namespaces one after another, takes;
//! - `namespaces-no-net`, `one-shot-floor-no-net`: the same without the
//!   network namespace, to show its share: the floor of a design that
//!   makes that namespace beside the rest of its set-up.

use std::ffi::CString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WARM_UP: usize = 20;

type Outcome = Result<(), Box<dyn std::error::Error>>;
/// One row's operation.
type Row<'a> = Box<dyn Fn() -> Outcome + 'a>;

/// The flags of every row but the `-no-net` ones.
const ALL: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;
const NO_NET: u64 = ALL & !(libc::CLONE_NEWNET as u64);

/// The argument that makes this executable the one-shot child: `--launch
/// FLAGS PROGRAM`.
const LAUNCH: &str = "--launch";

fn main() {
    if let Err(error) = run() {
        eprintln!("floor: {error}");
        std::process::exit(1);
    }
}

fn run() -> Outcome {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [launch, flags, program] = args.as_slice() {
        if launch == LAUNCH {
            let flags = flags
                .parse()
                .map_err(|e| format!("{LAUNCH} {flags}: {e}"))?;
            let status = sys::run_in_namespaces(flags, &CString::new(program.as_str())?)?;
            if status != 0 {
                return Err(ended(status, program).into());
            }
            return Ok(());
        }
    }
    let usage = "usage: floor [COUNT] [--program PATH]";
    let mut count = 500;
    let mut program = "/bin/true".to_owned();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--program" => program = rest.next().ok_or(usage)?.clone(),
            n => count = n.parse().map_err(|_| usage)?,
        }
    }
    if count == 0 {
        return Err(usage.into());
    }
    let program_c = CString::new(program.as_str())?;
    let this = std::env::current_exe()?;
    let init = InitCopy::write()?;
    let init_c = CString::new(init.0.as_os_str().as_encoded_bytes())?;
    let exit_status = |status: i32, what: &str| -> Outcome {
        match status {
            0 => Ok(()),
            _ => Err(ended(status, what).into()),
        }
    };
    let baseline = || -> Outcome {
        let status = Command::new(&program)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("{program}: {status}").into()),
        }
    };
    let namespaces = |flags: u64| {
        move || -> Outcome {
            exit_status(sys::run_in_namespaces(flags, c"")?, "the namespaces' child")
        }
    };
    let namespaces_exec_init = || -> Outcome {
        match sys::run_in_namespaces(ALL, &init_c)? {
            NO_SOCKET_STATUS => Ok(()),
            status => Err(format!("{}, not exit 2", ended(status, "init")).into()),
        }
    };
    let namespaces_exec =
        || -> Outcome { exit_status(sys::run_in_namespaces(ALL, &program_c)?, &program) };
    let one_shot = |flags: u64| {
        let this = &this;
        let program = &program;
        move || -> Outcome {
            let status = Command::new(this)
                .args([LAUNCH, &flags.to_string(), program])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("cannot start {}: {e}", this.display()))?;
            match status.success() {
                true => Ok(()),
                false => Err(format!("the one-shot child (its error above): {status}").into()),
            }
        }
    };
    let rows: Vec<(&str, Row<'_>)> = vec![
        ("baseline", Box::new(baseline)),
        ("namespaces", Box::new(namespaces(ALL))),
        ("namespaces-no-net", Box::new(namespaces(NO_NET))),
        ("namespaces-exec-init", Box::new(namespaces_exec_init)),
        ("namespaces-exec", Box::new(namespaces_exec)),
        ("one-shot-floor", Box::new(one_shot(ALL))),
        ("one-shot-floor-no-net", Box::new(one_shot(NO_NET))),
    ];
    for (name, run) in &rows {
        for _ in 0..WARM_UP {
            run().map_err(|e| format!("{name}: {e}"))?;
        }
    }
    let mut times = vec![Vec::with_capacity(count); rows.len()];
    for _ in 0..count {
        for ((name, run), times) in rows.iter().zip(&mut times) {
            let start = Instant::now();
            run().map_err(|e| format!("{name}: {e}"))?;
            times.push(start.elapsed());
        }
    }
    println!("floor: {program}, {count} runs of each row, taking turns\n");
    println!("{:<24}{:>11}{:>11}{:>9}", "row", "median", "p90", "ratio");
    let mut base = None;
    for ((name, _), mut times) in rows.iter().zip(times) {
        times.sort();
        let median = times[times.len() / 2];
        let p90 = times[(times.len() - 1) * 9 / 10];
        let base = *base.get_or_insert(median);
        println!(
            "{name:<24}{:>11}{:>11}{:>8.2}x",
            micros(median),
            micros(p90),
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
    Ok(())
}

/// The wait status of init that exits with 2 for want of its socket.
const NO_SOCKET_STATUS: i32 = 2 << 8;

/// The embedded init written to a file of its own, removed when dropped.
struct InitCopy(std::path::PathBuf);

impl InitCopy {
    fn write() -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("hutch-floor-init-{}", std::process::id()));
        let copy = InitCopy(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&copy.0)?;
        file.write_all(hutch_host::embedded_init())?;
        Ok(copy)
    }
}

impl Drop for InitCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a child with wait status `status` ended, `what` naming it.
fn ended(status: i32, what: &str) -> String {
    match (status & 0x7f, (status >> 8) & 0xff) {
        (0, 127) => format!("{what}: exited with 127 (its exec failed)"),
        (0, code) => format!("{what}: exited with {code}"),
        (signal, _) => format!("{what}: killed by signal {signal}"),
    }
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

mod sys {
    //! The one `clone3` of this example. The process is single-threaded
    //! when it clones (the rows run one after another on the main thread),
    //! and the child makes only raw system calls before `execve` or
    //! `_exit`.

    use std::ffi::CStr;
    use std::io;

    /// `clone3(flags)` with `SIGCHLD` as the exit signal; the child execs
    /// `program` (an empty path: exits at once), this process waits for it.
    /// The wait status, 0 for an exit with 0.
    pub(super) fn run_in_namespaces(flags: u64, program: &CStr) -> io::Result<i32> {
        let argv = [program.as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        // SAFETY: an all-zero clone_args is the kernel's "nothing set" for
        // every field; the two set below are plain integers.
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = flags;
        args.exit_signal = libc::SIGCHLD as u64;
        // SAFETY: a fork-style clone3 (no CLONE_VM, no stack given): the
        // child gets a copy of this single-threaded process and, before it
        // execs or exits, only calls execve and _exit with `argv` and
        // `envp`, which live on this frame in its copy too.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut libc::clone_args,
                std::mem::size_of::<libc::clone_args>(),
            )
        };
        if pid == 0 {
            if !program.is_empty() {
                // SAFETY: argv and envp are null-terminated arrays of
                // pointers to NUL-terminated strings (see above).
                unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
                // SAFETY: _exit ends the child without running anything of
                // the parent's.
                unsafe { libc::_exit(127) };
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            let error = io::Error::last_os_error();
            return Err(io::Error::new(error.kind(), format!("clone3: {error}")));
        }
        let mut status = 0;
        // SAFETY: waitpid on the child just started, writing its status to
        // a local.
        let waited = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if waited < 0 {
            let error = io::Error::last_os_error();
            return Err(io::Error::new(error.kind(), format!("waitpid: {error}")));
        }
        Ok(status)
    }
}
