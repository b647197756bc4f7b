//! What to run: [`ExecSpec`], turned into one exec request.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use hutch_protocol::{
    BpfInstruction, DEFAULT_PATH, ExecRequest, Limits, Request, Resource, Rlimit,
};

/// Why an [`ExecSpec`] cannot run. A builder method given what it cannot
/// use records it, and the exec of the spec returns it as
/// [`ContainerError::InvalidSpec`](crate::ContainerError::InvalidSpec)
/// before anything is sent to init.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecSpecError {
    /// An environment key that is empty.
    #[error("environment key \"\" is empty")]
    EmptyEnvKey,
    /// An environment key holding `=`: the program would see the key end
    /// there, and the rest in its value.
    #[error("environment key {key:?} contains '='")]
    EnvKeyWithEquals {
        /// The key.
        key: String,
    },
    /// An environment key or value holding a NUL byte, which no
    /// environment can.
    #[error("environment variable {key:?} holds a NUL byte in its {part}")]
    EnvNul {
        /// The key.
        key: String,
        /// `key` or `value`.
        part: &'static str,
    },
    /// [`ExecSpec::cpus`] was given no CPU to run on.
    #[error("the set of CPUs the program may run on is empty")]
    EmptyCpuSet,
}

/// One program to run in a container, with its descriptors and limits.
///
/// A builder method given input it cannot use (an environment key with a
/// `=`, say) does not panic: it records the first such mistake
/// ([`check`](ExecSpec::check) tells it), and an exec of the spec returns
/// it without sending anything.
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
    /// The request as it goes on the wire: built once, encoded by reference
    /// on every exec, so running a spec allocates nothing.
    request: Request,
    /// The program's descriptors, then the one to execute, if any: the
    /// descriptors attached to the request, in order.
    fds: Vec<BorrowedFd<'fd>>,
    /// How many of `fds` are the program's.
    program_fds: usize,
    exec_fd: Option<BorrowedFd<'fd>>,
    /// The CPUs the program may run on; the container's when `None`.
    affinity: Option<rustix::thread::CpuSet>,
    /// The first input a builder method could not use.
    invalid: Option<ExecSpecError>,
}

impl<'fd> ExecSpec<'fd> {
    /// A program with these arguments. The environment starts empty, and
    /// gets `PATH=/usr/local/bin:/usr/bin:/bin` if no `PATH` is set.
    ///
    /// Unless [`exec_fd`](Self::exec_fd) is set, `argv[0]` names the
    /// program, found inside the container: one that holds a `/` is
    /// executed as it is; a bare name is looked up first in the directory
    /// the program starts in ([`cwd`](Self::cwd), else the work directory),
    /// then through `PATH`, and the first executable regular file of that
    /// name wins. So a file of that name in the work directory, one an
    /// earlier program left there included, comes before the system's:
    /// give a program you mean to be the system's by its absolute path
    /// (`/bin/echo`, not `echo`).
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            request: Request::Exec(ExecRequest {
                argv: argv.into_iter().map(Into::into).collect(),
                env: vec![format!("PATH={DEFAULT_PATH}")],
                ..ExecRequest::default()
            }),
            fds: Vec::new(),
            program_fds: 0,
            exec_fd: None,
            affinity: None,
            invalid: None,
        }
    }

    fn exec_mut(&mut self) -> &mut ExecRequest {
        match &mut self.request {
            Request::Exec(exec) => exec,
            _ => unreachable!("an ExecSpec always holds an exec request"),
        }
    }

    fn exec(&self) -> &ExecRequest {
        match &self.request {
            Request::Exec(exec) => exec,
            _ => unreachable!("an ExecSpec always holds an exec request"),
        }
    }

    /// Sets `KEY=VALUE` in the environment, replacing an earlier value of
    /// the key (the default `PATH` among them). A key that is empty or
    /// holds a `=`, or a key or value holding a NUL byte, is not added: the
    /// spec records it as its mistake ([`check`](ExecSpec::check)).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        if let Err(error) = check_env(key, value) {
            self.invalid.get_or_insert(error);
            return self;
        }
        let entry = format!("{key}={value}");
        // Two entries of one key would leave the choice to the program: the
        // C library's `getenv` takes the first, a shell the last.
        self.exec_mut().env.retain(|e| {
            e.strip_prefix(key)
                .is_none_or(|rest| !rest.starts_with('='))
        });
        self.exec_mut().env.push(entry);
        self
    }

    /// Sets the program's fds 0, 1 and 2. Without it (or fewer than three
    /// [`fd`](Self::fd)s) the ones not given are `/dev/null`.
    ///
    /// The program can open each of these files anew through
    /// `/proc/self/fd/N`, with whatever access the file's permissions give
    /// its uid: pass input as a [`SealedInput`](crate::SealedInput), or as a
    /// file the program's uid cannot write.
    pub fn stdio(
        mut self,
        stdin: BorrowedFd<'fd>,
        stdout: BorrowedFd<'fd>,
        stderr: BorrowedFd<'fd>,
    ) -> Self {
        self.fds.truncate(0);
        self.fds.extend([stdin, stdout, stderr]);
        self.program_fds = 3;
        self.sync_fds();
        self
    }

    /// Gives the program `fd` as its next descriptor (after any already
    /// given): the first call sets fd 0, the next fd 1, and so on.
    pub fn fd(mut self, fd: BorrowedFd<'fd>) -> Self {
        self.fds.truncate(self.program_fds);
        self.fds.push(fd);
        self.program_fds += 1;
        self.sync_fds();
        self
    }

    /// The same spec without the program's descriptors (an `exec_fd`
    /// stays).
    pub(crate) fn without_fds(mut self) -> Self {
        self.program_fds = 0;
        self.sync_fds();
        self
    }

    /// Executes this descriptor (a memfd of a compiled program, say) instead
    /// of looking up `argv[0]`.
    pub fn exec_fd(mut self, fd: BorrowedFd<'fd>) -> Self {
        self.exec_fd = Some(fd);
        self.sync_fds();
        self
    }

    /// Keeps the request's fd indices in step with the attached descriptors:
    /// the program's first, then the one to execute.
    fn sync_fds(&mut self) {
        self.fds.truncate(self.program_fds);
        self.fds.extend(self.exec_fd);
        let count = self.program_fds as u32;
        let exec_fd = self.exec_fd.map(|_| count);
        let exec = self.exec_mut();
        exec.fd_map = (0..count).collect();
        exec.exec_fd = exec_fd;
    }

    /// Starts in this directory instead of the container's work directory.
    pub fn cwd(mut self, dir: &str) -> Self {
        self.exec_mut().cwd = Some(dir.into());
        self
    }

    /// Sets a resource limit; `u64::MAX` is unlimited. A second call for
    /// the same resource replaces the first.
    pub fn rlimit(mut self, resource: Resource, soft: u64, hard: u64) -> Self {
        let rlimits = &mut self.exec_mut().rlimits;
        rlimits.retain(|r| r.resource != resource);
        rlimits.push(Rlimit {
            resource,
            soft,
            hard,
        });
        self
    }

    /// Installs this seccomp program last before exec.
    pub fn seccomp(mut self, program: Vec<BpfInstruction>) -> Self {
        self.exec_mut().seccomp = program;
        self
    }

    /// Limits CPU time, user plus system, of every process of the run.
    pub fn cpu_time(mut self, limit: Duration) -> Self {
        self.exec_mut().limits.cpu_time_ns = Some(nanos(limit));
        self
    }

    /// Limits wall-clock time.
    pub fn wall_time(mut self, limit: Duration) -> Self {
        self.exec_mut().limits.wall_time_ns = Some(nanos(limit));
        self
    }

    /// Limits the size of any file the program writes.
    pub fn output_limit(mut self, bytes: u64) -> Self {
        self.exec_mut().limits.output_bytes = Some(bytes);
        self
    }

    /// Limits the run's memory.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.exec_mut().limits.memory_bytes = Some(bytes);
        self
    }

    /// Limits the processes and threads alive at once.
    pub fn process_limit(mut self, count: u32) -> Self {
        self.exec_mut().limits.processes = Some(count);
        self
    }

    /// Runs the program on these CPUs only (`sched_setaffinity` of init
    /// before the program is created, undone for the next run that sets
    /// none). The program may widen its own affinity again within the
    /// CPUs the container may use; its CPU time limit holds either way.
    /// An empty set is a mistake ([`ExecSpecError::EmptyCpuSet`]) that an
    /// exec of the spec refuses before anything is sent.
    pub fn cpus(mut self, set: rustix::thread::CpuSet) -> Self {
        self.affinity = Some(set);
        self
    }

    /// The CPUs the program is limited to, if any.
    pub fn affinity(&self) -> Option<&rustix::thread::CpuSet> {
        self.affinity.as_ref()
    }

    /// Runs as this user and group of the container instead of its default.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        let exec = self.exec_mut();
        exec.uid = Some(uid);
        exec.gid = Some(gid);
        self
    }

    /// Whether the spec can run: the first input a builder method could not
    /// use, if any. An exec of the spec returns it as
    /// [`ContainerError::InvalidSpec`](crate::ContainerError::InvalidSpec)
    /// before anything is sent to init.
    pub fn check(&self) -> Result<(), ExecSpecError> {
        if let Some(error) = &self.invalid {
            return Err(error.clone());
        }
        if self.affinity.as_ref().is_some_and(|set| set.count() == 0) {
            return Err(ExecSpecError::EmptyCpuSet);
        }
        Ok(())
    }

    /// The limits set so far.
    pub fn limits(&self) -> &Limits {
        &self.exec().limits
    }

    /// The request as it will be sent.
    pub fn request(&self) -> &ExecRequest {
        self.exec()
    }

    /// The request and the descriptors to attach to it, in order.
    pub(crate) fn wire(&self) -> (&Request, &[BorrowedFd<'fd>]) {
        (&self.request, &self.fds)
    }
}

/// Whether `KEY=VALUE` is an environment entry that says what it means.
fn check_env(key: &str, value: &str) -> Result<(), ExecSpecError> {
    let nul = |part| ExecSpecError::EnvNul {
        key: key.into(),
        part,
    };
    if key.is_empty() {
        Err(ExecSpecError::EmptyEnvKey)
    } else if key.contains('\0') {
        Err(nul("key"))
    } else if key.contains('=') {
        Err(ExecSpecError::EnvKeyWithEquals { key: key.into() })
    } else if value.contains('\0') {
        Err(nul("value"))
    } else {
        Ok(())
    }
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_again_replaces_its_value() {
        let spec = ExecSpec::new(["env"])
            .env("A", "1")
            .env("AB", "x")
            .env("A", "2")
            .env("PATH", "/bin");
        assert_eq!(spec.request().env, ["AB=x", "A=2", "PATH=/bin"]);
    }

    #[test]
    fn an_env_entry_no_environment_can_hold_is_recorded_not_added() {
        let spec = ExecSpec::new(["env"])
            .env("A=B", "c")
            .env("", "c")
            .env("D", "e");
        assert_eq!(
            spec.check(),
            Err(ExecSpecError::EnvKeyWithEquals { key: "A=B".into() }),
            "the first mistake is the one told"
        );
        assert_eq!(
            spec.request().env,
            ["PATH=/usr/local/bin:/usr/bin:/bin", "D=e"],
            "neither bad entry was added"
        );
        for (key, value, error) in [
            ("", "c", ExecSpecError::EmptyEnvKey),
            (
                "A\0B",
                "c",
                ExecSpecError::EnvNul {
                    key: "A\0B".into(),
                    part: "key",
                },
            ),
            (
                "A",
                "c\0d",
                ExecSpecError::EnvNul {
                    key: "A".into(),
                    part: "value",
                },
            ),
        ] {
            assert_eq!(
                ExecSpec::new(["env"]).env(key, value).check(),
                Err(error),
                "{key:?}={value:?}"
            );
        }
        assert_eq!(ExecSpec::new(["env"]).env("A", "b=c").check(), Ok(()));
    }

    #[test]
    fn an_empty_cpu_set_is_a_mistake_until_a_set_with_a_cpu_replaces_it() {
        let empty = rustix::thread::CpuSet::new();
        let spec = ExecSpec::new(["true"]).cpus(empty);
        assert_eq!(spec.check(), Err(ExecSpecError::EmptyCpuSet));
        let mut one = rustix::thread::CpuSet::new();
        one.set(0);
        assert_eq!(spec.cpus(one).check(), Ok(()));
    }
}
