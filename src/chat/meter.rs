//! The question budget as the page shows it (issue #14): what the server's last
//! `budget` frame said, moved on by the time that passed since. Plain data and
//! arithmetic, so it is unit-tested without a browser.

/// The meter: moved on by the client's ticks (elapsed milliseconds), never by
/// comparing the browser's clock with the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    pub remaining: u32,
    pub capacity: u32,
    pub refill_ms: u64,
    /// Until the next question comes back; 0 when full.
    pub next_refill_ms: u64,
}

impl Meter {
    /// `elapsed_ms` later: questions that came back in the meantime are added, one
    /// every `refill_ms`, up to the capacity.
    pub fn advance(&mut self, elapsed_ms: u64) {
        let mut left = elapsed_ms;
        while self.remaining < self.capacity && left >= self.next_refill_ms {
            left -= self.next_refill_ms;
            self.remaining += 1;
            self.next_refill_ms = if self.remaining < self.capacity { self.refill_ms.max(1) } else { 0 };
        }
        if self.remaining < self.capacity {
            self.next_refill_ms -= left;
        }
    }

    /// Whole seconds until the next question comes back (0 when full).
    pub fn next_in_seconds(&self) -> u64 {
        self.next_refill_ms.div_ceil(1000)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_counts_down_and_refills_one_per_refill_up_to_the_capacity() {
        let mut meter = Meter { remaining: 0, capacity: 3, refill_ms: 6_000, next_refill_ms: 2_500 };
        assert_eq!(meter.next_in_seconds(), 3);
        meter.advance(1_000);
        assert_eq!((meter.remaining, meter.next_refill_ms), (0, 1_500));
        // One back at 2.5 s; the next 6 s after it.
        meter.advance(2_000);
        assert_eq!((meter.remaining, meter.next_refill_ms), (1, 5_500));
        // Two refills in one long tick.
        meter.advance(11_500);
        assert_eq!((meter.remaining, meter.next_refill_ms), (3, 0));
        // Full stays full.
        meter.advance(60_000);
        assert_eq!((meter.remaining, meter.next_refill_ms, meter.next_in_seconds()), (3, 0, 0));
    }
}
