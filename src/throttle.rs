//! A token bucket that slows a client down rather than refusing it: each frame or
//! call takes a token; when none is left the caller waits until one has refilled.
//! A person never notices (the burst covers a reconnect's few frames); a script
//! sending as fast as it can is held to the refill rate before any database work.

use std::time::Duration;

use tokio::time::Instant;

pub struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    /// Full at the start: `capacity` at once, then `per_second`.
    pub fn new(capacity: u32, per_second: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity.max(1)),
            capacity: f64::from(capacity.max(1)),
            per_second: f64::from(per_second.max(1)),
            last: now,
        }
    }

    /// Takes a token unless the wait for it would be longer than `longest`: then
    /// nothing is taken (a refused caller does not push the others back) and `None`.
    pub fn take_within(&mut self, now: Instant, longest: Duration) -> Option<Duration> {
        let wait = self.take(now);
        if wait > longest {
            self.tokens += 1.0;
            return None;
        }
        Some(wait)
    }

    /// Takes a token; returns how long the caller must wait before going on (zero
    /// when a token was there).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

/// Buckets by key (a client address), made on first use and forgotten once full
/// again, so the map holds only the clients that are busy right now.
pub struct Buckets {
    buckets: std::sync::Mutex<Keyed>,
    capacity: u32,
    per_second: u32,
}

#[derive(Default)]
struct Keyed {
    by_key: std::collections::HashMap<String, Bucket>,
    /// Pruned again when the map grows past this: twice what was left last time, so
    /// many busy clients do not make every call scan them all.
    prune_above: usize,
}

/// Past this many keys, full buckets are dropped (a full one is the same as none).
const PRUNE_ABOVE: usize = 10_000;

impl Buckets {
    pub fn new(capacity: u32, per_second: u32) -> Buckets {
        Buckets {
            buckets: std::sync::Mutex::default(),
            capacity,
            per_second,
        }
    }

    /// Takes a token for `key` unless the wait would be over `longest`
    /// ([`Bucket::take_within`]).
    pub fn take_within(&self, key: &str, now: Instant, longest: Duration) -> Option<Duration> {
        let mut keyed = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if keyed.by_key.len() > keyed.prune_above.max(PRUNE_ABOVE) {
            keyed.by_key.retain(|_, bucket| bucket.refilled(now) < bucket.capacity);
            keyed.prune_above = keyed.by_key.len() * 2;
        }
        keyed
            .by_key
            .entry(key.to_string())
            .or_insert_with(|| Bucket::new(self.capacity, self.per_second, now))
            .take_within(now, longest)
    }
}

impl Bucket {
    /// The tokens the bucket would hold at `now`.
    fn refilled(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.per_second).min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_free_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = Bucket::new(3, 2, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Duration::ZERO);
        }
        // The fourth at once waits half a second (2 a second); the fifth a second.
        assert_eq!(bucket.take(start), Duration::from_millis(500));
        assert_eq!(bucket.take(start), Duration::from_millis(1000));
        // After a long pause the bucket is full again, never fuller.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Duration::ZERO);
        }
        assert!(bucket.take(later) > Duration::ZERO);
    }

    #[test]
    fn a_refused_take_costs_nothing() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1, 1, start);
        assert_eq!(bucket.take_within(start, Duration::from_secs(5)), Some(Duration::ZERO));
        for _ in 0..1000 {
            assert_eq!(bucket.take_within(start, Duration::from_millis(500)), None);
        }
        // The flood did not push the next caller back: one second, as before it.
        assert_eq!(bucket.take_within(start, Duration::from_secs(5)), Some(Duration::from_secs(1)));
    }
}
