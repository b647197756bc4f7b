//! The jobs under way, of every API, so that shutdown can cancel them all
//! once its grace period is over: a kill sent to a container whose program
//! has not started yet (its files still being copied in, or its job still
//! waiting for containers) finds nothing to kill, so each job is cancelled
//! through its [`Cancel`], which also kills a command that starts after it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use hutch_host::Cancel;

/// The jobs under way.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The next job's number.
    next: u64,
    /// The jobs under way, by number.
    live: HashMap<u64, Cancel>,
    /// Every job was cancelled: so is each that comes later.
    cancelled: bool,
}

/// A job's place among those under way, given back on drop.
#[derive(Debug)]
pub(crate) struct Entered<'a> {
    runs: &'a Runs,
    number: u64,
}

impl Runs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts the job `cancel` cancels among those under way until the
    /// returned place is dropped; after [`cancel_all`](Self::cancel_all),
    /// cancels it at once.
    pub(crate) fn enter(&self, cancel: &Cancel) -> Entered<'_> {
        let mut state = self.lock();
        if state.cancelled {
            cancel.cancel();
        }
        let number = state.next;
        state.next += 1;
        state.live.insert(number, cancel.clone());
        Entered { runs: self, number }
    }

    /// Cancels every job under way, and every one that comes later; how
    /// many were under way.
    pub(crate) fn cancel_all(&self) -> usize {
        let mut state = self.lock();
        state.cancelled = true;
        for cancel in state.live.values() {
            cancel.cancel();
        }
        state.live.len()
    }

    /// Whether [`cancel_all`](Self::cancel_all) was called.
    pub(crate) fn all_cancelled(&self) -> bool {
        self.lock().cancelled
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.runs.lock().live.remove(&self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelling_all_reaches_the_jobs_under_way_and_those_that_come_later() {
        let runs = Runs::default();
        let (over, under_way, later) = (Cancel::new(), Cancel::new(), Cancel::new());
        drop(runs.enter(&over));
        let entered = runs.enter(&under_way);
        assert!(!runs.all_cancelled());
        assert_eq!(runs.cancel_all(), 1);
        assert!(runs.all_cancelled());
        assert!(!over.is_cancelled(), "a job that is over is left alone");
        assert!(under_way.is_cancelled());
        drop(entered);
        let _entered = runs.enter(&later);
        assert!(later.is_cancelled(), "a job that comes later");
    }
}
