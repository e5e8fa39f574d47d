//! Token buckets: a member's allowance of signals and of bytes × receivers.

use std::time::Instant;

/// `rate` tokens per second on average, up to `burst` at once. Time is passed in, so the
/// logic is testable without a clock.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `rate == 0` means unlimited.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether one more signal may pass at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(now, 1.0)
    }

    /// Whether `n` tokens may be taken at `now` (taken if so). More than the burst is taken
    /// as the whole burst: it passes from a full bucket. A `now` earlier than one seen before
    /// (a signal stamped with when its chunk arrived, judged after a later one) refills
    /// nothing and leaves the bucket's clock where it is, so no time is counted twice.
    pub(crate) fn try_take_n(&mut self, now: Instant, n: f64) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let n = n.min(self.burst);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full again at `now` (nothing to remember about it).
    pub(crate) fn is_full_at(&self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// Whether the bucket limits at all.
    pub(crate) fn is_unlimited(&self) -> bool {
        self.rate == 0.0
    }
}

/// What a member may send: signals, and bytes × the receivers they reach.
#[derive(Debug, Clone)]
pub(crate) struct Allowance {
    pub(crate) signals: TokenBucket,
    pub(crate) bytes: TokenBucket,
}

impl Allowance {
    /// Whether both buckets would be full at `now` (nothing to remember).
    pub(crate) fn is_full_at(&self, now: Instant) -> bool {
        self.signals.is_full_at(now) && self.bytes.is_full_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0), "burst spent");
        assert!(!b.try_take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            b.try_take(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
        assert!(!b.is_full_at(later));
        assert!(!b.is_full_at(later + Duration::from_millis(400)));
        assert!(b.is_full_at(later + Duration::from_millis(500)));
    }

    #[test]
    fn a_take_larger_than_the_burst_needs_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 1000, t0);
        assert!(b.try_take_n(t0, 5000.0), "a full bucket lets it pass");
        assert!(!b.try_take_n(t0 + Duration::from_millis(500), 5000.0));
        assert!(b.try_take_n(t0 + Duration::from_millis(1000), 5000.0));
        assert!(!b.try_take_n(t0 + Duration::from_millis(1000), 1.0));
    }

    #[test]
    fn an_earlier_time_refills_nothing_and_counts_no_time_twice() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 1, t0);
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(t1));
        // Stamped before the last one: no refill, and the clock stays at t1.
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        // 99 ms after t1 is not yet a token; had the clock gone back to 50 ms, it would be.
        assert!(!b.try_take(t1 + Duration::from_millis(99)));
        assert!(b.try_take(t1 + Duration::from_millis(100)));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 1, t0);
        assert!(b.is_unlimited());
        assert!((0..10_000).all(|_| b.try_take(t0)));
    }
}
