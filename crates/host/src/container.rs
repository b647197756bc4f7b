//! A running container: the host's end of the conversation with its init.

use std::os::fd::{BorrowedFd, OwnedFd};

use hutch_protocol::{
    Delete, ErrorReply, ExecResult, ItemError, ItemOutcome, OpenItem, Reply, Request, SymlinkItem,
    ValidationError,
};

use crate::channel::{Channel, ChannelError};
use crate::exec::ExecSpec;
use crate::sys;

/// Why a request to a container failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// Init is gone: killed from outside, or it gave up after a broken frame.
    #[error("the container's init is gone ({status})")]
    InitGone {
        /// How init ended.
        status: String,
        /// What the host saw first.
        #[source]
        cause: ChannelError,
    },
    /// An earlier failure left the container unusable; it was destroyed.
    #[error("the container was destroyed after an earlier failure")]
    Destroyed,
    /// The request is invalid; nothing was sent.
    #[error("invalid {kind} request")]
    InvalidRequest {
        /// The request kind.
        kind: &'static str,
        /// What is wrong with it.
        #[source]
        source: ValidationError,
    },
    /// Init answered something that does not validate; the container was
    /// destroyed.
    #[error("init sent an invalid {kind}")]
    InvalidReply {
        /// The reply kind.
        kind: &'static str,
        /// What is wrong with it.
        #[source]
        source: ValidationError,
    },
    /// Init answered with a reply that does not fit the request; the
    /// container was destroyed.
    #[error("init answered a {request} request with a {reply}")]
    UnexpectedReply {
        /// The request kind.
        request: &'static str,
        /// The reply kind.
        reply: &'static str,
    },
    /// A kill handle could not be made.
    #[error("cannot duplicate the container's socket for a kill handle")]
    Killer {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The request failed inside the container; the container is still
    /// usable.
    #[error("{message} (stage {stage:?}, errno {errno})")]
    Failed {
        /// The step that failed.
        stage: hutch_protocol::Stage,
        /// The OS error number, or 0.
        errno: i32,
        /// The path involved, if any.
        path: Option<String>,
        /// What init said.
        message: String,
    },
}

impl From<ErrorReply> for ContainerError {
    fn from(reply: ErrorReply) -> Self {
        ContainerError::Failed {
            stage: reply.stage,
            errno: reply.errno,
            path: reply.path,
            message: reply.message,
        }
    }
}

/// A pre-forked container, ready to run programs one after another.
///
/// Dropping it (or calling [`destroy`](Container::destroy)) kills init
/// through its pidfd, which takes down everything in the container, and
/// reaps it.
pub struct Container {
    channel: Channel,
    pidfd: OwnedFd,
    pid: i32,
    broken: bool,
    received: Vec<OwnedFd>,
    /// Removed when the container is dropped, after init is reaped.
    cgroup: Option<crate::cgroup::ContainerCgroup>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("init_pid", &self.pid)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Container {
    pub(crate) fn new(channel: Channel, pidfd: OwnedFd, pid: i32) -> Self {
        Self {
            channel,
            pidfd,
            pid,
            broken: false,
            received: Vec::new(),
            cgroup: None,
        }
    }

    pub(crate) fn set_cgroup(&mut self, cgroup: crate::cgroup::ContainerCgroup) {
        self.cgroup = Some(cgroup);
    }

    /// The container's cgroup directories on the host; empty when its runs
    /// are measured by rusage.
    pub fn cgroup_dirs(&self) -> &[std::path::PathBuf] {
        self.cgroup.as_ref().map_or(&[], |c| c.dirs())
    }

    /// Whether the container was destroyed after a failure and can serve no
    /// more requests.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Init's pid in the host's PID namespace.
    pub fn init_pid(&self) -> i32 {
        self.pid
    }

    /// Checks that init answers.
    pub fn ping(&mut self) -> Result<(), ContainerError> {
        match self.call(&Request::Ping, &[])? {
            Reply::Pong => Ok(()),
            other => self.unexpected("ping", &other),
        }
    }

    /// Opens files inside the container; one result per item, in order.
    pub fn open(
        &mut self,
        items: &[OpenItem],
    ) -> Result<Vec<Result<OwnedFd, ItemError>>, ContainerError> {
        let reply = self.call(&Request::Open(items.to_vec()), &[])?;
        let batch = match reply {
            Reply::Opened(batch) if batch.results.len() == items.len() => batch,
            other => return self.unexpected("open", &other),
        };
        let mut fds = std::mem::take(&mut self.received).into_iter();
        let results = batch
            .results
            .into_iter()
            .map(|outcome| match outcome {
                // Validation matched the count of Done items to the fds.
                ItemOutcome::Done => Ok(fds.next().expect("one fd per opened item")),
                ItemOutcome::Failed(error) => Err(error),
            })
            .collect();
        Ok(results)
    }

    /// Removes a file or an empty directory inside the container.
    pub fn delete(&mut self, path: &str) -> Result<(), ContainerError> {
        let request = Request::Delete(Delete { path: path.into() });
        match self.call(&request, &[])? {
            Reply::Ack => Ok(()),
            other => self.unexpected("delete", &other),
        }
    }

    /// Creates symbolic links inside the container; one result per item.
    pub fn symlink(
        &mut self,
        items: &[SymlinkItem],
    ) -> Result<Vec<Result<(), ItemError>>, ContainerError> {
        match self.call(&Request::Symlink(items.to_vec()), &[])? {
            Reply::Linked(batch) if batch.results.len() == items.len() => Ok(batch
                .results
                .into_iter()
                .map(|outcome| match outcome {
                    ItemOutcome::Done => Ok(()),
                    ItemOutcome::Failed(error) => Err(error),
                })
                .collect()),
            other => self.unexpected("symlink", &other),
        }
    }

    /// Empties the container's writable tmpfs mounts (the work directory
    /// and `/tmp` by default) for the next user.
    pub fn reset(&mut self) -> Result<(), ContainerError> {
        match self.call(&Request::Reset, &[])? {
            Reply::Ack => Ok(()),
            other => self.unexpected("reset", &other),
        }
    }

    /// Runs one program and waits for its verdict.
    ///
    /// A program that cannot be started (not found, not executable, a bad
    /// descriptor) gives a result with [`Status::RunnerError`] and its
    /// error; the container stays usable.
    ///
    /// [`Status::RunnerError`]: hutch_protocol::Status::RunnerError
    pub fn exec(&mut self, spec: &ExecSpec<'_>) -> Result<ExecResult, ContainerError> {
        let (request, fds) = spec.wire();
        match self.call(request, fds)? {
            Reply::Finished(result) => Ok(result),
            other => self.unexpected("exec", &other),
        }
    }

    /// A handle that stops the current run from another thread.
    pub fn killer(&self) -> Result<Killer, ContainerError> {
        let socket = self
            .channel
            .socket()
            .try_clone_to_owned()
            .map_err(|source| ContainerError::Killer { source })?;
        Ok(Killer {
            channel: std::sync::Mutex::new(Channel::new(socket)),
        })
    }

    /// Kills init and everything in the container, and reaps init.
    pub fn destroy(mut self) {
        self.kill_and_reap();
    }

    /// Sends one request and receives its one reply; an error reply becomes
    /// [`ContainerError::Failed`].
    pub(crate) fn call(
        &mut self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Reply, ContainerError> {
        if self.broken {
            return Err(ContainerError::Destroyed);
        }
        request
            .check(fds.len())
            .map_err(|source| ContainerError::InvalidRequest {
                kind: request.kind(),
                source,
            })?;
        if let Err(cause) = self.channel.send_request(request, fds) {
            return Err(self.gone(cause));
        }
        let reply = match self.channel.recv_reply(&mut self.received) {
            Ok(reply) => reply,
            Err(cause) => {
                // A frame that does not decode may still have brought
                // descriptors: close them now, not when the broken container
                // is dropped.
                self.received.clear();
                return Err(self.gone(cause));
            }
        };
        if let Err(source) = reply.check(self.received.len()) {
            let kind = reply.kind();
            self.received.clear();
            self.kill_and_reap();
            return Err(ContainerError::InvalidReply { kind, source });
        }
        match reply {
            Reply::Error(error) => Err(error.into()),
            reply => Ok(reply),
        }
    }

    fn unexpected<T>(&mut self, request: &'static str, reply: &Reply) -> Result<T, ContainerError> {
        self.received.clear();
        self.kill_and_reap();
        Err(ContainerError::UnexpectedReply {
            request,
            reply: reply.kind(),
        })
    }

    /// The connection broke: make sure init is dead and say how it ended.
    fn gone(&mut self, cause: ChannelError) -> ContainerError {
        self.broken = true;
        // Init closes the socket only by exiting: give it a moment to
        // finish. A frame that does not decode came from an init still
        // running, which the host no longer trusts: no waiting for it.
        let closed = matches!(cause, ChannelError::Closed | ChannelError::Socket { .. });
        let status = if closed && sys::pidfd_exits_within(&self.pidfd, 200) {
            sys::pidfd_reap(&self.pidfd)
        } else {
            sys::pidfd_kill(&self.pidfd);
            format!("killed by the host after: {}", sys::pidfd_reap(&self.pidfd))
        };
        ContainerError::InitGone { status, cause }
    }

    fn kill_and_reap(&mut self) {
        if !self.broken {
            self.broken = true;
            sys::pidfd_kill(&self.pidfd);
            sys::pidfd_reap(&self.pidfd);
        }
    }

    /// The socket, for tests that speak raw frames.
    #[doc(hidden)]
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.channel.socket()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

// One request at a time through `&mut self`, but movable between threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Container>();
};

/// Stops a container's current run from another thread: the blocked
/// [`Container::exec`] then returns the run's result, killed by `SIGKILL`.
/// With no run under way, a kill does nothing.
pub struct Killer {
    channel: std::sync::Mutex<Channel>,
}

impl std::fmt::Debug for Killer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Killer").finish_non_exhaustive()
    }
}

impl Killer {
    /// Kills the program running in the container, and everything it
    /// started.
    pub fn kill(&self) -> Result<(), ChannelError> {
        let mut channel = self
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channel.send_request(&Request::Kill, &[])
    }
}
