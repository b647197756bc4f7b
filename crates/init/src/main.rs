//! The init process of a hutch container.
//!
//! PID 1 of the container's PID namespace, started by the host with the
//! host's end of a `SOCK_SEQPACKET` socket at fd 3. It serves one request at
//! a time until the socket closes, then exits, and the kernel kills whatever
//! is left in the namespace with it.
//!
//! Lifecycle: `Hello` → `Configure` → any number of `Open`, `Delete`,
//! `Symlink`, `CopyIn`, `CopyOut`, `Exec`, `Reset`, `Ping`. A request that
//! fails validation or comes out of order gets an error reply and init
//! carries on; a frame that cannot be decoded gets an error reply and init
//! exits, since it can no longer trust its view of the conversation.

#![cfg_attr(hutch_nolibc, no_std)]
#![cfg_attr(hutch_nolibc, no_main)]

extern crate alloc;

#[macro_use]
mod raw_syscall;
mod cgroup;
mod channel;
mod configure;
mod exec;
mod files;
mod ipc;
mod os;
#[cfg(hutch_nolibc)]
mod rt;
mod sys;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use rustix::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use hutch_protocol::{
    Batch, ErrorReply, ExecRequest, HelloReply, ItemOutcome, PROTOCOL_VERSION, Reply, Request,
    Stage,
};

use channel::{Channel, ChannelError};

/// The error type of [`channel`]'s OS failures.
type OsError = os::Error;

/// The descriptor the host leaves the socket at.
const SOCKET_FD: i32 = 3;

fn main() {
    sys::ignore_signals();
    sys::harden();
    let reaper = sys::init_reaper();
    if sys::set_cloexec(SOCKET_FD).is_err() {
        // No socket: nobody to report to.
        sys::exit(2);
    }
    // SAFETY: fd 3 is the socket the host placed there for this process,
    // and nothing else in init owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    // Set up once for every run to come; a failure is the answer to the
    // host's hello.
    let setup_error = sys::harden_credentials()
        .err()
        .map(|err| ErrorReply {
            stage: Stage::Credentials,
            errno: err.raw_os_error().unwrap_or(0),
            path: None,
            message: format!(
                "cannot drop init's capability bounding set and lock its securebits: {err}"
            ),
        })
        .or_else(|| {
            reaper.err().map(|message| ErrorReply {
                stage: Stage::Spawn,
                errno: 0,
                path: None,
                message,
            })
        });
    let mut init = Init {
        channel: Channel::new(socket),
        state: State::Fresh,
        stack: vec![0; sys::CHILD_STACK_LEN],
        buffers: exec::RunBuffers::default(),
        exec: ExecRequest::default(),
        levels: Vec::new(),
        // Without a mount namespace of its own init cannot mount the
        // message queue file system it sweeps through; each run then gets
        // a fresh IPC namespace instead.
        ipc: ipc::Ipc::new().ok(),
        // Nothing swept it yet: the configured init command may leave
        // objects in it. The first run or reset sweeps.
        ipc_dirty: true,
        setup_error,
    };
    let code = match init.serve() {
        Ok(()) => 0,
        Err(_) => 1,
    };
    exec::end_everything();
    sys::exit(code);
}

enum State {
    /// Waiting for the host's hello.
    Fresh,
    /// Handshake done, waiting for the configuration.
    Greeted,
    /// Configured: programs may run.
    Ready(Box<Ready>),
}

struct Ready {
    cgroup: Option<cgroup::Cgroup>,
    workdir: String,
    uid: u32,
    gid: u32,
    scratch: configure::Scratch,
}

struct Init {
    channel: Channel,
    state: State,
    /// The stack programs' processes run on between clone and exec.
    stack: Vec<u8>,
    /// What each run's preparation fills, reused.
    buffers: exec::RunBuffers,
    /// Every exec request is decoded into this one, reusing its buffers.
    exec: ExecRequest,
    /// The directories a reset is emptying, one per level, reused.
    levels: Vec<OwnedFd>,
    /// The IPC namespace programs run in, swept after every run; `None`
    /// when every run gets a fresh one instead.
    ipc: Option<ipc::Ipc>,
    /// A sweep failed: the next run may not start before one succeeds.
    ipc_dirty: bool,
    /// Why init cannot serve, told to the host's hello.
    setup_error: Option<ErrorReply>,
}

fn error(stage: Stage, errno: i32, message: String) -> Reply {
    Reply::Error(ErrorReply {
        stage,
        errno,
        path: None,
        message,
    })
}

impl Init {
    /// Serves requests until the host goes away (`Ok`) or the conversation
    /// breaks (`Err`).
    fn serve(&mut self) -> Result<(), ChannelError> {
        let mut fds: Vec<OwnedFd> = Vec::new();
        loop {
            // An exec is decoded into `self.exec`, reusing its buffers.
            let request = match self.channel.recv_request_reusing(&mut fds, &mut self.exec) {
                Ok(Some(request)) => request,
                Ok(None) => {
                    match self.exec.check(fds.len()) {
                        Ok(()) => self.handle_exec(&fds)?,
                        Err(err) => {
                            fds.clear();
                            self.channel
                                .send_reply(&error(Stage::Validate, 0, err.to_string()), &[])?;
                        }
                    }
                    fds.clear();
                    continue;
                }
                Err(ChannelError::Closed) => return Ok(()),
                Err(err) => {
                    let reply = error(Stage::Protocol, 0, report(&err));
                    // The conversation is lost either way.
                    let _ = self.channel.send_reply(&reply, &[]);
                    return Err(err);
                }
            };
            let request = match request.validate(fds.len()) {
                Ok(request) => request.into_inner(),
                Err(err) => {
                    fds.clear();
                    self.channel
                        .send_reply(&error(Stage::Validate, 0, err.to_string()), &[])?;
                    continue;
                }
            };
            self.handle(request, &mut fds)?;
            fds.clear();
        }
    }

    fn handle(&mut self, request: Request, fds: &mut Vec<OwnedFd>) -> Result<(), ChannelError> {
        if let (State::Fresh, Request::Hello(_), Some(error)) =
            (&self.state, &request, &self.setup_error)
        {
            return self.channel.send_reply(&Reply::Error(error.clone()), &[]);
        }
        let reply = match (&mut self.state, request) {
            (_, Request::Ping) => Reply::Pong,
            (State::Fresh, Request::Hello(hello)) => {
                // Validation already matched the version to ours.
                debug_assert_eq!(hello.version, PROTOCOL_VERSION);
                if hello.features & hutch_protocol::features::HOST_NET_BY_INIT != 0
                    && let Err(err) = sys::unshare_net()
                {
                    return self.channel.send_reply(
                        &Reply::Error(ErrorReply {
                            stage: Stage::Handshake,
                            errno: err.raw_os_error().unwrap_or(0),
                            path: None,
                            message: format!("cannot make the network namespace: {err}"),
                        }),
                        &[],
                    );
                }
                self.state = State::Greeted;
                Reply::Hello(HelloReply {
                    version: PROTOCOL_VERSION,
                    features: hutch_protocol::features::INIT_KNOWN,
                })
            }
            (State::Greeted, Request::Configure(config)) => match configure::apply(&config) {
                Ok(scratch) => {
                    self.state = State::Ready(Box::new(Ready {
                        cgroup: None,
                        workdir: config.workdir,
                        uid: config.uid,
                        gid: config.gid,
                        scratch,
                    }));
                    Reply::Ack
                }
                Err(failure) => Reply::Error(failure.0),
            },
            (State::Ready(ready), Request::Open(items)) => {
                let owner = (ready.uid, ready.gid);
                return send_opened(&mut self.channel, &items, |item| files::open(item, owner));
            }
            (State::Ready(ready), Request::CopyIn(items)) => Reply::CopiedIn(
                items
                    .iter()
                    .zip(fds.iter())
                    .map(|(item, source)| {
                        let mut outcome = files::copy_in(item, source, (ready.uid, ready.gid));
                        if let hutch_protocol::CopyInOutcome::Failed(failure) = &mut outcome {
                            files::fit_to_batch(&mut failure.message, items.len());
                        }
                        outcome
                    })
                    .collect(),
            ),
            (State::Ready(_), Request::CopyOut(paths)) => {
                return send_opened(&mut self.channel, &paths, |path| {
                    files::open_for_copy_out(path)
                });
            }
            (State::Ready(_), Request::Delete(delete)) => match files::delete(&delete.path) {
                Ok(()) => Reply::Ack,
                Err(errno) => Reply::Error(ErrorReply {
                    stage: Stage::Delete,
                    errno: errno.raw_os_error(),
                    path: Some(delete.path.clone()),
                    message: files::item_error(errno, "cannot delete", &delete.path).message,
                }),
            },
            (State::Ready(ready), Request::Symlink(items)) => Reply::Linked(Batch {
                results: items
                    .iter()
                    .map(|item| match files::symlink(item, (ready.uid, ready.gid)) {
                        Ok(()) => ItemOutcome::Done,
                        Err(err) => fitted(err, items.len()),
                    })
                    .collect(),
                fds_attached: 0,
            }),
            // Every run's end swept the IPC namespace already; a sweep that
            // failed then (or the configured init command's leftovers) is
            // retried here.
            (State::Ready(ready), Request::Reset) => {
                match sweep_if_dirty(self.ipc.as_ref(), &mut self.ipc_dirty) {
                    Ok(()) => reset(ready, &mut self.levels),
                    Err(message) => error(Stage::Reset, 0, message),
                }
            }
            (State::Ready(ready), Request::Cgroup(files)) if ready.cgroup.is_none() => {
                ready.cgroup = Some(cgroup::Cgroup::new(&files, core::mem::take(fds)));
                Reply::Ack
            }
            (State::Ready(ready), Request::Regroup(files))
                if ready
                    .cgroup
                    .as_ref()
                    .is_some_and(|cgroup| cgroup.version() == files.version) =>
            {
                if let Some(cgroup) = ready.cgroup.as_mut() {
                    cgroup.regroup(&files, core::mem::take(fds));
                }
                Reply::Ack
            }
            // Nothing runs between requests: a kill that raced with the end
            // of a run has nothing to do, and gets no reply.
            (_, Request::Kill) => return Ok(()),
            (_, request) => error(
                Stage::State,
                0,
                format!("unexpected {} request in this state", request.kind()),
            ),
        };
        self.channel.send_reply(&reply, &[])
    }

    /// Runs the validated exec request in `self.exec`, which came with
    /// `fds`, and replies. Allocates nothing once the buffers have grown to
    /// the size of the runs.
    fn handle_exec(&mut self, fds: &[OwnedFd]) -> Result<(), ChannelError> {
        let State::Ready(ready) = &mut self.state else {
            let reply = error(
                Stage::State,
                0,
                "unexpected exec request in this state".into(),
            );
            return self.channel.send_reply(&reply, &[]);
        };
        // The sweep after the last run failed: no run starts before a retry
        // succeeds.
        if let Err(reason) = sweep_if_dirty(self.ipc.as_ref(), &mut self.ipc_dirty) {
            let result = exec::not_started_with(ErrorReply {
                stage: Stage::Spawn,
                errno: 0,
                path: None,
                message: format!("the IPC objects an earlier run left cannot be removed: {reason}"),
            });
            return self.channel.send_reply(&Reply::Finished(result), &[]);
        }
        let mut defaults = exec::Defaults {
            cgroup: ready.cgroup.as_mut(),
            ipc_swept: self.ipc.is_some(),
            workdir: &ready.workdir,
            uid: ready.uid,
            gid: ready.gid,
            scratch: &ready.scratch.roots,
            stack: &mut self.stack,
            buffers: &mut self.buffers,
        };
        let outcome = exec::run(&self.exec, fds, &mut defaults, &mut self.channel);
        // Nothing of the run may reach the next one; a failed sweep is
        // retried before the next run, which waits for it.
        self.ipc_dirty = sweep_ipc(self.ipc.as_ref()).is_err();
        let reply = match outcome {
            Ok(result) => Reply::Finished(result),
            // It never started: a verdict, and the container stays usable.
            Err(exec::ExecFailure::Runner(error)) => Reply::Finished(exec::not_started_with(error)),
            Err(exec::ExecFailure::Channel(err)) => return Err(err),
        };
        self.channel.send_reply(&reply, &[])
    }
}

/// An item's error, its message fitted to a batch of `items`.
fn fitted(mut err: hutch_protocol::ItemError, items: usize) -> ItemOutcome {
    files::fit_to_batch(&mut err.message, items);
    ItemOutcome::Failed(err)
}

/// Opens every item with `open` and answers with one outcome per item and
/// the descriptors of those that opened, in order.
fn send_opened<T>(
    channel: &mut Channel,
    items: &[T],
    open: impl Fn(&T) -> Result<OwnedFd, hutch_protocol::ItemError>,
) -> Result<(), ChannelError> {
    let mut opened = Vec::with_capacity(items.len());
    let results = items
        .iter()
        .map(|item| match open(item) {
            Ok(fd) => {
                opened.push(fd);
                ItemOutcome::Done
            }
            Err(err) => fitted(err, items.len()),
        })
        .collect();
    let reply = Reply::Opened(Batch {
        results,
        fds_attached: opened.len() as u32,
    });
    let borrowed: Vec<BorrowedFd<'_>> = opened.iter().map(|fd| fd.as_fd()).collect();
    channel.send_reply(&reply, &borrowed)
}

/// Sweeps the IPC namespace if the last sweep failed or none was made yet
/// (`dirty`), clearing `dirty` once one succeeds.
fn sweep_if_dirty(ipc: Option<&ipc::Ipc>, dirty: &mut bool) -> Result<(), String> {
    if *dirty {
        sweep_ipc(ipc)?;
        *dirty = false;
    }
    Ok(())
}

/// Empties the IPC namespace programs run in; with none (every run has a
/// namespace of its own) there is nothing to do.
fn sweep_ipc(ipc: Option<&ipc::Ipc>) -> Result<(), String> {
    match ipc {
        Some(ipc) => ipc.sweep().map(drop).map_err(|err| report(&err)),
        None => Ok(()),
    }
}

fn reset(ready: &mut Ready, levels: &mut Vec<OwnedFd>) -> Reply {
    let scratch = &ready.scratch;
    let mut first_error = None;
    // Every mount is emptied even when one fails; the first failure is
    // reported.
    for (((path, root), mode), (uid, gid)) in scratch
        .paths
        .iter()
        .zip(&scratch.roots)
        .zip(&scratch.modes)
        .zip(&scratch.owners)
    {
        if let Err(err) = configure::empty_dir(root.as_fd(), *mode, (*uid, *gid), levels) {
            first_error.get_or_insert(Reply::Error(ErrorReply {
                stage: Stage::Reset,
                errno: err.raw_os_error().unwrap_or(0),
                path: Some(path.clone()),
                message: format!("cannot empty {path:?}: {err}"),
            }));
        }
    }
    // After the files are gone: those left would count as page cache.
    if let Some(cgroup) = &mut ready.cgroup {
        cgroup.reclaim();
    }
    first_error.unwrap_or(Reply::Ack)
}

/// The error and its sources, joined, for an error reply.
fn report(err: &dyn core::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
