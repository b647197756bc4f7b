//! Ending a run cleanly when the process running it is asked to stop.
//!
//! A process killed by `SIGTERM` or Ctrl-C in the middle of a run would
//! leave the container's cgroups behind (init and the program die with
//! their host, the groups do not). [`StopSignals`] turns those signals into
//! a kill of the container's init, so that the run ends at once and the
//! caller removes the container as usual before ending by the signal.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;

use crate::Container;
use crate::sys::{STOP_HANDLERS_RUNNING, STOP_RECEIVED, STOP_TARGET};

/// The signals that ask a process to stop, which [`StopSignals`] catches:
/// `SIGINT` (Ctrl-C), `SIGTERM` (`kill`, `timeout`, service managers) and
/// `SIGHUP` (the terminal went away).
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Whether this process has `signal` ignored, as `nohup` leaves `SIGHUP`
/// and a shell leaves `SIGINT` for a background job: a process that would
/// handle a stop signal keeps such a one ignored (as [`StopSignals`] does),
/// so that it goes on running as whoever started it meant.
pub fn signal_ignored(signal: i32) -> bool {
    crate::sys::signal_ignored(signal)
}

/// Why the stop signals cannot be caught, or a container armed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// `sigaction` refused.
    #[error("cannot catch signal {signal}")]
    Catch {
        /// The signal's number.
        signal: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The container's pidfd cannot be duplicated.
    #[error("cannot keep a descriptor of the container's init")]
    Pidfd(#[source] std::io::Error),
    /// Another container is armed.
    #[error("a container is armed already; only one can be at a time")]
    AlreadyArmed,
}

/// The stop signals ([`STOP_SIGNALS`]), caught for the whole process.
///
/// Once caught, such a signal no longer ends the process: it is recorded
/// ([`received`](Self::received)) and kills the init of the container
/// [armed](Self::arm) at that moment (or, when none is, the next one armed),
/// which ends everything in that container. The run under way then fails
/// with [`ContainerError::InitGone`](crate::ContainerError::InitGone); the
/// caller drops the container, which removes its cgroups, and ends with
/// [`end_process`](Self::end_process), by the signal it got.
///
/// A signal the process inherited as ignored stays ignored: under `nohup`,
/// `SIGHUP`; in a shell's background job, `SIGINT`.
///
/// ```no_run
/// use hutch_host::{ContainerBuilder, ExecSpec, StopSignals};
///
/// let stop = StopSignals::catch()?;
/// let mut container = ContainerBuilder::new().build()?;
/// let armed = stop.arm(&container)?;
/// let outcome = container.exec(&ExecSpec::new(["/bin/sleep", "100"]));
/// drop(armed);
/// drop(container);
/// if let Some(signal) = stop.received() {
///     stop.end_process(signal);
/// }
/// println!("{:?}", outcome?.status);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StopSignals {
    _caught: (),
}

impl StopSignals {
    /// Catches the stop signals from now on, in every thread of the
    /// process. Calling it again changes nothing.
    pub fn catch() -> Result<StopSignals, StopError> {
        for signal in STOP_SIGNALS {
            crate::sys::catch_stop_signal(signal)
                .map_err(|source| StopError::Catch { signal, source })?;
        }
        Ok(StopSignals { _caught: () })
    }

    /// Makes a stop signal kill `container`'s init until the returned guard
    /// is dropped. A stop signal that came before kills it at once.
    pub fn arm(&self, container: &Container) -> Result<Armed, StopError> {
        let pidfd = container
            .init_pidfd()
            .try_clone_to_owned()
            .map_err(StopError::Pidfd)?;
        STOP_TARGET
            .compare_exchange(-1, pidfd.as_raw_fd(), SeqCst, SeqCst)
            .map_err(|_| StopError::AlreadyArmed)?;
        let armed = Armed { pidfd };
        if STOP_RECEIVED.load(SeqCst) != 0 {
            crate::sys::pidfd_kill(&armed.pidfd);
        }
        Ok(armed)
    }

    /// The first stop signal the process got since [`catch`](Self::catch),
    /// if any.
    pub fn received(&self) -> Option<i32> {
        match STOP_RECEIVED.load(SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// Ends the process by `signal`, as if it had not been caught: its
    /// parent sees it killed by that signal (a shell stops its loop on
    /// Ctrl-C, `timeout` reports its own kill). Drop everything that must
    /// be cleaned up first: no destructor runs.
    pub fn end_process(&self, signal: i32) -> ! {
        crate::sys::die_of(signal)
    }
}

/// A container armed by [`StopSignals::arm`]; disarms it when dropped.
#[derive(Debug)]
pub struct Armed {
    /// A duplicate of init's pidfd, so that the number the handler uses
    /// names no other file while armed.
    pidfd: OwnedFd,
}

impl Drop for Armed {
    fn drop(&mut self) {
        STOP_TARGET.store(-1, SeqCst);
        // A handler on another thread may have read the number just before:
        // the descriptor stays open until it is done. (One on this thread
        // finished before this line could run.)
        while STOP_HANDLERS_RUNNING.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
}
