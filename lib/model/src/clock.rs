//! The wall clock the commit stage and readers agree on: when a commit was made, when a
//! rolled-out chunk may be removed (its grace has passed) and when a snapshot has expired.
//! A seam so tests can move time forward instead of sleeping through a grace period.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Tells the time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> i64;
}

/// The system's wall clock (what every stage uses).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        roller_proto::time::now()
    }
}

/// A clock that only moves when told to (tests, simulations); clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `now` (seconds since the epoch).
    pub fn at(now: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::at(100);
        let shared = clock.clone();
        assert_eq!(clock.now(), 100);
        shared.advance(5);
        assert_eq!(clock.now(), 105);
    }
}
