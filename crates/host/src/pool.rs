//! [`Pool`]: warm containers, built ahead in the background, checked out by
//! many threads.
//!
//! A pool keeps `size` containers. [`Pool::new`] returns at once and builds
//! them in parallel on background threads; [`Pool::checkout`] waits for an
//! idle one. A checked-out container goes back on drop after a
//! [`Container::reset`]; one that broke (its init died, a reset failed) is
//! destroyed instead and a replacement is built in the background, so users
//! of the pool never see it.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use hutch_protocol::ExecResult;

use crate::builder::{BuildError, ContainerBuilder};
use crate::container::{Container, ContainerError};
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
    /// The run itself failed (the container was replaced).
    #[error("the pooled container failed")]
    Container(#[source] ContainerError),
}

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
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut state = self.shared.lock();
        loop {
            if let Some(container) = state.idle.pop() {
                state.busy += 1;
                return Ok(Pooled {
                    container: Some(container),
                    shared: Arc::clone(&self.shared),
                });
            }
            if state.building == 0 {
                // Nothing idle and nothing coming: every build failed.
                match &state.last_error {
                    Some(error) if state.busy == 0 => {
                        return Err(PoolError::Build(Arc::clone(error)));
                    }
                    _ => {}
                }
                if state.idle.len() + state.busy < self.shared.size {
                    self.shared.start_build(&mut state);
                }
            }
            state = match deadline {
                None => self.shared.wait(state),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(PoolError::Timeout(timeout.unwrap_or_default()));
                    }
                    self.shared
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
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
        // Idle containers are destroyed with the vector.
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Builds one container on a background thread. The thread holds only a
    /// weak reference, so a dropped pool is not kept alive by its builders.
    fn start_build(self: &Arc<Self>, state: &mut State) {
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
                        state.idle.push(container);
                    }
                    Ok(_) => {}
                    Err(error) => state.last_error = Some(Arc::new(error)),
                }
                shared.changed.notify_all();
            });
        if let Err(error) = spawned {
            state.building -= 1;
            state.last_error = Some(Arc::new(BuildError::Plumbing {
                what: "pool build thread",
                source: error,
            }));
        }
    }

    /// Takes a container back: reset and idle, or replaced.
    fn give_back(self: &Arc<Self>, mut container: Container) {
        let healthy = !container.is_broken() && container.reset().is_ok();
        let mut state = self.lock();
        state.busy -= 1;
        if healthy && !state.closed {
            state.idle.push(container);
        } else {
            drop(container);
            if !state.closed {
                self.start_build(&mut state);
            }
        }
        self.changed.notify_all();
    }
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
