//! Where the question budget reads the time: the system's clock, or (in tests) a
//! manual one that moves only when told. A token bucket's refill is about time, so a
//! test of "one question back every 6 s" either sleeps and measures — slow and flaky
//! on a busy machine — or sets the clock; this makes the second possible. Instances
//! that share a manual clock (tests of two instances on one database) see one time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A cheap handle; clones share the same manual time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system's clock.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that reads `start_ms` (Unix milliseconds) until [`Clock::advance`]d.
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(at) => at.load(Ordering::SeqCst),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }

    /// Moves a manual clock forward; the system's clock moves on its own, so there it
    /// does nothing.
    pub fn advance(&self, ms: i64) {
        if let Some(at) = &self.manual {
            at.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_it() {
        let clock = Clock::manual(1_000);
        let other = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        other.advance(6_000);
        assert_eq!(clock.now_ms(), 7_000);
        let system = Clock::system();
        system.advance(1_000_000);
        assert!(system.now_ms() > 1_700_000_000_000, "the system's time, not a manual one");
    }
}
