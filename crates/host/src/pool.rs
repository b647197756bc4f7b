//! [`Pool`]: warm containers, built ahead in the background, checked out by
//! many threads.
//!
//! A pool keeps `size` containers. [`Pool::new`] returns at once and builds
//! them in parallel on background threads; [`Pool::checkout`] waits for an
//! idle one. A checked-out container goes back on drop and is reset: the
//! dropping thread only sends init the reset ([`Container::begin_reset`]),
//! and whoever checks the container out next takes init's answer first, so
//! neither waits for the other. One that broke (its init died, a reset
//! failed) is destroyed instead and a replacement is built in the
//! background, so users of the pool never see it. A caller that needs more
//! containers at once than the pool keeps ([`Pool::checkout_many`]) gets the
//! difference built for it, destroyed again when it gives them back.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use hutch_protocol::ExecResult;

use crate::builder::{BuildError, ContainerBuilder};
use crate::container::{Container, ContainerError, Killer};
use crate::exec::ExecSpec;

/// Why a pool could not hand out a container or run a program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Containers cannot be built at all: the last attempt's error.
    #[error("the pool cannot build containers")]
    Build(#[source] Arc<BuildError>),
    /// No container became idle in time.
    #[error("no container became idle within {0:?}")]
    Timeout(Duration),
    /// The run failed: its request was refused before it was sent (an
    /// invalid spec; the container stays idle, ready for the next run), or
    /// the container broke (it is destroyed, and the pool builds another).
    /// [`ContainerError`] tells which.
    #[error("the pooled run failed")]
    Container(#[source] ContainerError),
    /// The pool was shut down.
    #[error("the pool was shut down")]
    Closed,
    /// More containers asked for at once than a pool hands out.
    #[error("{asked} containers asked for at once, more than the {most} a pool hands out")]
    TooMany {
        /// How many were asked for.
        asked: usize,
        /// The most one caller may take at once ([`MAX_CHECKOUT`]).
        most: usize,
    },
}

/// The most containers [`Pool::checkout_many`] hands one caller at once;
/// for more than the pool keeps, it builds the difference.
pub const MAX_CHECKOUT: usize = 1024;

/// A set of warm containers shared by threads.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use hutch_host::{ContainerBuilder, ExecSpec, Pool};
///
/// let pool = Pool::new(ContainerBuilder::new(), 4);
/// let null = std::fs::File::open("/dev/null")?;
/// let spec = ExecSpec::new(["true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
/// let result = pool.run(&spec)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    builder: ContainerBuilder,
    size: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Container>,
    /// Builds under way.
    building: usize,
    /// Containers checked out.
    busy: usize,
    /// The error of the last build, cleared by a success.
    last_error: Option<Arc<BuildError>>,
    /// The pool is being dropped: builders stop.
    closed: bool,
    /// Threads waiting on `changed`: a change wakes them only when there
    /// are any, which saves a system call on every give-back.
    waiting: usize,
    /// For each caller waiting for more containers at once than the pool
    /// keeps, how many more: the pool builds up to its size plus the
    /// largest, and destroys what comes back above its size once none
    /// waits.
    extra_wanted: Vec<usize>,
    /// Build threads, joined when the pool goes so that no container they
    /// make outlives it.
    builders: Vec<std::thread::JoinHandle<()>>,
    /// A kill handle of every container of the pool, by init's pid, made
    /// once when it is built.
    killers: std::collections::HashMap<i32, Killer>,
    /// The containers checked out, by init's pid.
    out: std::collections::HashSet<i32>,
}

impl Pool {
    /// A pool of `size` containers like `builder`'s (at least one), built in
    /// parallel in the background.
    pub fn new(builder: ContainerBuilder, size: usize) -> Pool {
        let shared = Arc::new(Shared {
            builder,
            size: size.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let pool = Pool { shared };
        for _ in 0..pool.shared.size {
            pool.shared.start_build(&mut pool.shared.lock());
        }
        pool
    }

    /// The number of containers the pool keeps.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// Containers idle right now.
    pub fn idle(&self) -> usize {
        self.shared.lock().idle.len()
    }

    /// Waits until every container is built and idle, or a build fails.
    pub fn wait_ready(&self) -> Result<(), PoolError> {
        let mut state = self.shared.lock();
        loop {
            if state.idle.len() + state.busy >= self.shared.size {
                return Ok(());
            }
            if state.building == 0 {
                if let Some(error) = &state.last_error {
                    return Err(PoolError::Build(Arc::clone(error)));
                }
            }
            state = self.shared.wait(state);
        }
    }

    /// Takes an idle container, waiting for one as long as it takes.
    pub fn checkout(&self) -> Result<Pooled, PoolError> {
        self.checkout_within(None)
    }

    /// Takes an idle container, waiting at most `timeout`.
    pub fn checkout_timeout(&self, timeout: Duration) -> Result<Pooled, PoolError> {
        self.checkout_within(Some(timeout))
    }

    fn checkout_within(&self, timeout: Option<Duration>) -> Result<Pooled, PoolError> {
        let mut taken = self.take(1, timeout)?;
        Ok(taken.pop().expect("one container taken"))
    }

    /// Takes `count` idle containers at once, waiting as long as it takes:
    /// a caller that needs several (the commands of one
    /// [`Job`](crate::Job)) never holds some while it waits for the rest, so
    /// two such callers cannot starve each other. For more than the pool's
    /// size, the pool builds the difference for this caller and destroys as
    /// many when they come back: a pool of one runs an interactive pair.
    /// At most [`MAX_CHECKOUT`].
    pub fn checkout_many(&self, count: usize) -> Result<Vec<Pooled>, PoolError> {
        if count > MAX_CHECKOUT {
            return Err(PoolError::TooMany {
                asked: count,
                most: MAX_CHECKOUT,
            });
        }
        let extra = count.saturating_sub(self.shared.size);
        if extra == 0 {
            return self.take(count, None);
        }
        self.shared.lock().extra_wanted.push(extra);
        let taken = self.take(count, None);
        let mut state = self.shared.lock();
        if let Some(at) = state.extra_wanted.iter().position(|&e| e == extra) {
            state.extra_wanted.swap_remove(at);
        }
        taken
    }

    /// Waits (at most `timeout`) until `count` containers are idle and
    /// takes them, each with its reset finished; builds replacements for
    /// containers missing from the pool meanwhile.
    fn take(&self, count: usize, timeout: Option<Duration>) -> Result<Vec<Pooled>, PoolError> {
        // A timeout too long for the clock to reach waits for ever.
        let deadline = timeout.and_then(crate::container::deadline_after);
        let mut state = self.shared.lock();
        loop {
            if state.closed {
                return Err(PoolError::Closed);
            }
            if state.idle.len() >= count {
                state.busy += count;
                let taken = choose(&mut state.idle, count);
                state.out.extend(taken.iter().map(Container::init_pid));
                drop(state);
                let ready: Vec<Pooled> = taken
                    .into_iter()
                    .filter_map(|container| self.shared.ready(container))
                    .map(|container| Pooled {
                        container: Some(container),
                        shared: Arc::clone(&self.shared),
                    })
                    .collect();
                if ready.len() == count {
                    return Ok(ready);
                }
                // One failed its reset and is being replaced: the others go
                // back, and the wait starts again.
                drop(ready);
                state = self.shared.lock();
                continue;
            }
            if state.building == 0 {
                // Nothing idle and nothing coming: every build failed.
                match &state.last_error {
                    Some(error) if state.busy == 0 => {
                        return Err(PoolError::Build(Arc::clone(error)));
                    }
                    _ => {}
                }
            }
            if state.building == 0 || count > self.shared.size {
                while state.idle.len() + state.busy + state.building < self.shared.keep(&state) {
                    // No thread for it: the next wake-up tries again.
                    if !self.shared.start_build(&mut state) {
                        break;
                    }
                }
            }
            state = match deadline {
                None => self.shared.wait(state),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(PoolError::Timeout(timeout.unwrap_or_default()));
                    }
                    self.shared.wait_timeout(state, left)
                }
            };
        }
    }

    /// Destroys every idle container, waits for those checked out to come
    /// back and for builds under way to end, and destroys those too; the
    /// pool builds nothing more. When this returns, every container of the
    /// pool and its cgroup is gone.
    pub fn shutdown(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        // Waiters for a container give up.
        self.shared.notify(&state);
        loop {
            let idle = std::mem::take(&mut state.idle);
            if !idle.is_empty() {
                // Destroyed without the lock: each takes a kill and a reap.
                drop(state);
                drop(idle);
                state = self.shared.lock();
                continue;
            }
            if state.busy == 0 && state.building == 0 {
                return;
            }
            state = self.shared.wait(state);
        }
    }

    /// Kills the program running in every container checked out right now
    /// (their `exec` returns the run, killed by `SIGKILL`); returns how many
    /// containers were told. A container checked out but between runs, or
    /// whose program has not started yet, is not stopped by it: its next
    /// run goes ahead. To stop a whole job wherever it is, run it under a
    /// [`Cancel`](crate::Cancel) ([`Job::run_in_cancellable`](crate::Job::run_in_cancellable)),
    /// as `hutch serve` does at shutdown.
    pub fn kill_running(&self) -> usize {
        let state = self.shared.lock();
        state
            .out
            .iter()
            .filter_map(|pid| state.killers.get(pid))
            .filter(|killer| killer.kill().is_ok())
            .count()
    }

    /// Runs `spec` in any idle container and returns it to the pool.
    pub fn run(&self, spec: &ExecSpec<'_>) -> Result<ExecResult, PoolError> {
        let mut container = self.checkout()?;
        container.exec(spec).map_err(PoolError::Container)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.closed = true;
        // A build under way finds the pool gone and destroys its container;
        // waiting for it means none outlives the pool, nor its cgroup.
        // (This may run on a build thread, which cannot wait for itself.)
        let me = std::thread::current().id();
        for builder in std::mem::take(&mut state.builders) {
            if builder.thread().id() != me {
                let _ = builder.join();
            }
        }
        // Idle containers are destroyed with the vector.
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.waiting += 1;
        let mut state = self
            .changed
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.waiting -= 1;
        state
    }

    /// [`wait`](Self::wait), for at most `timeout`.
    fn wait_timeout<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, State> {
        state.waiting += 1;
        let mut state = self
            .changed
            .wait_timeout(state, timeout)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        state.waiting -= 1;
        state
    }

    /// How many containers the pool keeps now: its size, and more while a
    /// caller waits for more at once.
    fn keep(&self, state: &State) -> usize {
        self.size + state.extra_wanted.iter().copied().max().unwrap_or(0)
    }

    /// Wakes the threads waiting for a change of `state`, which the caller
    /// holds locked.
    fn notify(&self, state: &State) {
        if state.waiting > 0 {
            self.changed.notify_all();
        }
    }

    /// Builds one container on a background thread. The thread holds only a
    /// weak reference, so a dropped pool is not kept alive by its builders.
    /// Whether the thread started.
    fn start_build(self: &Arc<Self>, state: &mut State) -> bool {
        state.building += 1;
        let weak = Arc::downgrade(self);
        let builder = self.builder.clone();
        let spawned = std::thread::Builder::new()
            .name("hutch-pool-build".into())
            .spawn(move || {
                let built = builder.build();
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let mut state = shared.lock();
                state.building -= 1;
                match built {
                    Ok(container) if !state.closed => {
                        state.last_error = None;
                        if let Ok(killer) = container.killer() {
                            state.killers.insert(container.init_pid(), killer);
                        }
                        state.idle.push(container);
                    }
                    Ok(_) => {}
                    Err(error) => state.last_error = Some(Arc::new(error)),
                }
                shared.notify(&state);
            });
        state.builders.retain(|builder| !builder.is_finished());
        match spawned {
            Ok(builder) => {
                state.builders.push(builder);
                true
            }
            Err(error) => {
                state.building -= 1;
                state.last_error = Some(Arc::new(BuildError::Plumbing {
                    what: "pool build thread",
                    source: error,
                }));
                false
            }
        }
    }

    /// A container just taken from the idle ones, its reset finished; `None`
    /// when its init has exited or the reset failed, after which it is
    /// destroyed and a replacement is being built.
    fn ready(self: &Arc<Self>, mut container: Container) -> Option<Container> {
        // An init killed while the container was idle may have answered its
        // reset before it died.
        if !container.init_exited() && container.finish_reset().is_ok() {
            return Some(container);
        }
        let mut state = self.lock();
        state.busy -= 1;
        state.out.remove(&container.init_pid());
        self.retire(&mut state, container);
        self.notify(&state);
        None
    }

    /// Takes a container back: reset and idle, or replaced.
    fn give_back(self: &Arc<Self>, mut container: Container) {
        // Init resets while the container waits in the pool; whoever takes
        // it next takes init's answer first (`ready`).
        let healthy = !container.is_broken() && container.begin_reset().is_ok();
        let mut state = self.lock();
        state.busy -= 1;
        state.out.remove(&container.init_pid());
        let surplus = state.idle.len() + state.busy + state.building >= self.keep(&state);
        if surplus {
            // Built for a caller that wanted more at once than the pool
            // keeps, and no longer needed.
            state.killers.remove(&container.init_pid());
            drop(container);
        } else if healthy && !state.closed {
            state.idle.push(container);
        } else {
            self.retire(&mut state, container);
        }
        self.notify(&state);
    }

    /// Destroys a container that failed, or came back to a closed pool, and
    /// builds its replacement unless the pool is closed. Called with the
    /// lock held, so that `shutdown` never returns before it is gone.
    fn retire(self: &Arc<Self>, state: &mut State, container: Container) {
        state.killers.remove(&container.init_pid());
        drop(container);
        if !state.closed && state.idle.len() + state.busy + state.building < self.keep(state) {
            self.start_build(state);
        }
    }
}

/// How many containers beyond those wanted [`choose`] looks at for a
/// finished reset before it takes the longest idle.
const NEWEST_LOOKED_AT: usize = 4;

/// Takes `count` of the `idle` containers (oldest first in it): the most
/// recently given back whose resets are done, newest first, then the
/// longest idle, whose resets are the likeliest to be done. The container
/// that ran last is the warmest: measured on a 2-CPU VM, an exec took
/// 12-29 µs and a one-command job 30-45 µs less in it than in one that sat
/// idle meanwhile, and a reset whose answer is in costs nothing to take.
/// Each look is a `poll` made with the pool's lock held, so at most
/// [`NEWEST_LOOKED_AT`] more than `count` are looked at.
fn choose(idle: &mut Vec<Container>, count: usize) -> Vec<Container> {
    let mut taken = Vec::with_capacity(count);
    let mut at = idle.len();
    let oldest_looked_at = idle.len().saturating_sub(count + NEWEST_LOOKED_AT);
    let now = std::time::Instant::now();
    while at > oldest_looked_at && taken.len() < count {
        at -= 1;
        if idle[at].reset_answered_by(now) {
            taken.push(idle.remove(at));
        }
    }
    let rest = count - taken.len();
    taken.extend(idle.drain(..rest));
    taken
}

/// A container checked out of a [`Pool`]; it goes back on drop.
#[derive(Debug)]
pub struct Pooled {
    container: Option<Container>,
    shared: Arc<Shared>,
}

impl Deref for Pooled {
    type Target = Container;
    fn deref(&self) -> &Container {
        self.container.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Container {
        self.container.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            self.shared.give_back(container);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_protocol::Status;
    use std::os::fd::AsFd;
    use std::time::Instant;

    fn builder() -> ContainerBuilder {
        if rustix::process::geteuid().is_root() {
            ContainerBuilder::new()
        } else {
            ContainerBuilder::new().allow_rusage()
        }
    }

    /// The idle container of `pool` whose init is `pid` has its reset
    /// answered within 30 s.
    fn reset_answered(pool: &Pool, pid: i32) -> bool {
        let mut state = pool.shared.lock();
        let container = state
            .idle
            .iter_mut()
            .find(|c| c.init_pid() == pid)
            .expect("the container is idle");
        container.reset_answered_by(Instant::now() + Duration::from_secs(30))
    }

    #[test]
    fn a_container_whose_init_died_while_idle_is_not_handed_out() {
        let pool = Pool::new(builder(), 1);
        pool.wait_ready().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let spec = crate::ExecSpec::new(["true"]).stdio(null.as_fd(), null.as_fd(), null.as_fd());
        // Never used (no reset due), then used and given back with its
        // reset answered before init dies.
        for used in [false, true] {
            pool.wait_ready().unwrap();
            let init = pool.shared.lock().idle[0].init_pid();
            if used {
                let mut container = pool.checkout().unwrap();
                assert_eq!(container.exec(&spec).unwrap().status, Status::Ok);
                drop(container);
                assert!(reset_answered(&pool, init));
            }
            let pidfd = rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(init).unwrap(),
                rustix::process::PidfdFlags::empty(),
            )
            .unwrap();
            rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).unwrap();
            let mut fds = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            rustix::event::poll(&mut fds, None).unwrap();
            let mut container = pool.checkout().unwrap();
            assert_ne!(container.init_pid(), init, "used: {used}");
            assert_eq!(
                container.exec(&spec).unwrap().status,
                Status::Ok,
                "used: {used}"
            );
        }
    }

    #[test]
    fn the_container_back_last_goes_out_first_once_reset() {
        let pool = Pool::new(builder(), 2);
        pool.wait_ready().unwrap();
        for _ in 0..3 {
            // Both are idle; the one back last is taken while the other
            // has been idle longer.
            let pid = pool.checkout().unwrap().init_pid();
            assert!(reset_answered(&pool, pid));
            let again = pool.checkout().unwrap();
            assert_eq!(again.init_pid(), pid, "the warmest container");
        }
    }

    #[test]
    fn several_at_once_take_the_ready_ones_newest_first_then_the_oldest() {
        let pool = Pool::new(builder(), 3);
        pool.wait_ready().unwrap();
        let pids: Vec<i32> = {
            let all = pool.checkout_many(3).unwrap();
            all.iter().map(|c| c.init_pid()).collect()
        };
        // All three came back (in order), each reset answered: the two
        // taken are the two back last.
        for &pid in &pids {
            assert!(reset_answered(&pool, pid));
        }
        let two = pool.checkout_many(2).unwrap();
        let mut taken: Vec<i32> = two.iter().map(|c| c.init_pid()).collect();
        taken.sort_unstable();
        let mut newest = pids[1..].to_vec();
        newest.sort_unstable();
        assert_eq!(taken, newest);
    }
}
