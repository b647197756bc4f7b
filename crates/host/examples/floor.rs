//! What the kernel alone charges for a container's namespaces, next to the
//! bare-process baseline of `hutch bench`, in one run: the floor under any
//! cold container and any one-shot run, hutch's or another tool's.
//!
//! ```sh
//! cargo run --release -p hutch-host --example floor -- [COUNT] [--program PATH]
//! ```
//!
//! Each row is timed COUNT times (default 500) after a warm-up; the table
//! gives medians, 90th percentiles and each median over the baseline's:
//!
//! - `baseline`: PROGRAM (default `/bin/true`) started with
//!   `std::process::Command` and waited for, as `hutch bench` does it;
//! - `namespaces`: `clone3` into new user, mount, PID, UTS, IPC, network and
//!   cgroup namespaces, the child exiting at once, waited for: what the
//!   kernel takes to make and end those namespaces, with no id map, mount,
//!   init, cgroup or message;
//! - `namespaces-exec-init`: the same child execs hutch's init, which finds
//!   no socket at descriptor 3 and exits with 2: the least a cold container
//!   takes, before any id map, mount, cgroup or message;
//! - `namespaces-exec`: the child execs PROGRAM instead: the least any
//!   sandbox with these namespaces takes to run PROGRAM from a process
//!   already running;
//! - `one-shot-floor`: this executable (a dynamically linked Rust program,
//!   as `hutch` is) started as a child that does `namespaces-exec` once and
//!   exits: the least a one-shot sandbox written this way takes;
//! - `namespaces-no-net`, `one-shot-floor-no-net`: the same without the
//!   network namespace, to show its share.

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

fn main() -> Outcome {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [launch, flags, program] = args.as_slice() {
        if launch == LAUNCH {
            let status = sys::run_in_namespaces(flags.parse()?, &CString::new(program.as_str())?)?;
            std::process::exit(if status == 0 { 0 } else { 1 });
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
            _ => Err(format!("{what} ended with wait status {status:#x}").into()),
        }
    };
    let baseline = || -> Outcome {
        let status = Command::new(&program)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
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
            status => Err(format!("init ended with wait status {status:#x}, not exit 2").into()),
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
                .stderr(Stdio::null())
                .status()?;
            match status.success() {
                true => Ok(()),
                false => Err(format!("the one-shot child: {status}").into()),
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
    println!("floor: {program}, {count} runs each\n");
    println!("{:<24}{:>11}{:>11}{:>9}", "row", "median", "p90", "ratio");
    let mut base = None;
    for (name, run) in &rows {
        for _ in 0..WARM_UP {
            run()?;
        }
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            run()?;
            times.push(start.elapsed());
        }
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
            return Err(io::Error::last_os_error());
        }
        let mut status = 0;
        // SAFETY: waitpid on the child just started, writing its status to
        // a local.
        let waited = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if waited < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(status)
    }
}
