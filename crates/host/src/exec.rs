//! What to run: [`ExecSpec`], turned into one exec request.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use hutch_protocol::{
    BpfInstruction, DEFAULT_PATH, ExecRequest, Limits, Request, Resource, Rlimit,
};

/// One program to run in a container, with its descriptors and limits.
///
/// ```no_run
/// # use hutch_host::{ContainerBuilder, ExecSpec};
/// # use std::os::fd::AsFd;
/// # use std::time::Duration;
/// let mut container = ContainerBuilder::new().build()?;
/// let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
/// let spec = ExecSpec::new(["echo", "hello"])
///     .stdio(stdin.as_fd(), stdout.as_fd(), stderr.as_fd())
///     .cpu_time(Duration::from_secs(1));
/// let result = container.exec(&spec)?;
/// println!("{}", result.status);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExecSpec<'fd> {
    argv: Vec<String>,
    env: Vec<String>,
    fds: Vec<BorrowedFd<'fd>>,
    exec_fd: Option<BorrowedFd<'fd>>,
    cwd: Option<String>,
    rlimits: Vec<Rlimit>,
    seccomp: Vec<BpfInstruction>,
    limits: Limits,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl<'fd> ExecSpec<'fd> {
    /// A program with these arguments; `argv[0]` is looked up through
    /// `PATH` inside the container unless it holds a `/`. The environment
    /// starts empty, and gets `PATH=/usr/local/bin:/usr/bin:/bin` if no
    /// `PATH` is set.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            fds: Vec::new(),
            exec_fd: None,
            cwd: None,
            rlimits: Vec::new(),
            seccomp: Vec::new(),
            limits: Limits::default(),
            uid: None,
            gid: None,
        }
    }

    /// Adds `KEY=VALUE` to the environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets the program's fds 0, 1 and 2.
    pub fn stdio(
        mut self,
        stdin: BorrowedFd<'fd>,
        stdout: BorrowedFd<'fd>,
        stderr: BorrowedFd<'fd>,
    ) -> Self {
        self.fds = vec![stdin, stdout, stderr];
        self
    }

    /// Gives the program `fd` as its next descriptor (after any already
    /// given): the first call sets fd 0, the next fd 1, and so on.
    pub fn fd(mut self, fd: BorrowedFd<'fd>) -> Self {
        self.fds.push(fd);
        self
    }

    /// Executes this descriptor (a memfd of a compiled program, say) instead
    /// of looking up `argv[0]`.
    pub fn exec_fd(mut self, fd: BorrowedFd<'fd>) -> Self {
        self.exec_fd = Some(fd);
        self
    }

    /// Starts in this directory instead of the container's work directory.
    pub fn cwd(mut self, dir: &str) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets a resource limit; `u64::MAX` is unlimited.
    pub fn rlimit(mut self, resource: Resource, soft: u64, hard: u64) -> Self {
        self.rlimits.push(Rlimit {
            resource,
            soft,
            hard,
        });
        self
    }

    /// Installs this seccomp program last before exec.
    pub fn seccomp(mut self, program: Vec<BpfInstruction>) -> Self {
        self.seccomp = program;
        self
    }

    /// Limits CPU time, user plus system, of every process of the run.
    pub fn cpu_time(mut self, limit: Duration) -> Self {
        self.limits.cpu_time_ns = Some(nanos(limit));
        self
    }

    /// Limits wall-clock time.
    pub fn wall_time(mut self, limit: Duration) -> Self {
        self.limits.wall_time_ns = Some(nanos(limit));
        self
    }

    /// Limits the size of any file the program writes.
    pub fn output_limit(mut self, bytes: u64) -> Self {
        self.limits.output_bytes = Some(bytes);
        self
    }

    /// Limits the run's memory.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory_bytes = Some(bytes);
        self
    }

    /// Limits the processes and threads alive at once.
    pub fn process_limit(mut self, count: u32) -> Self {
        self.limits.processes = Some(count);
        self
    }

    /// Runs as this user and group of the container instead of its default.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }

    /// The limits set so far.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The request and the descriptors to attach to it.
    pub(crate) fn to_request(&self) -> (Request, Vec<BorrowedFd<'fd>>) {
        let mut env = self.env.clone();
        if !env.iter().any(|entry| entry.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let mut fds = self.fds.clone();
        let exec_fd = self.exec_fd.map(|fd| {
            fds.push(fd);
            (fds.len() - 1) as u32
        });
        let request = ExecRequest {
            argv: self.argv.clone(),
            env,
            fd_map: (0..self.fds.len() as u32).collect(),
            exec_fd,
            cwd: self.cwd.clone(),
            rlimits: self.rlimits.clone(),
            seccomp: self.seccomp.clone(),
            limits: self.limits,
            sync: false,
            uid: self.uid,
            gid: self.gid,
        };
        (Request::Exec(request), fds)
    }
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos().min(u128::from(u64::MAX)) as u64
}
