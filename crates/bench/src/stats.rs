//! What subscribers record: deliveries per sender, order, latency.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// Shared by all subscribers of a run.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) base: Instant,
    /// Deliveries received in all.
    pub(crate) delivered: AtomicU64,
    /// `received[sub][pub]`: how many of `pub`'s messages `sub` has.
    received: Vec<Vec<AtomicU64>>,
    pub(crate) out_of_order: AtomicU64,
    pub(crate) progress: Notify,
    latency: Mutex<Option<Histogram<u64>>>,
}

impl Stats {
    pub(crate) fn new(subs: usize, pubs: usize, record_latency: bool) -> Self {
        Self {
            base: Instant::now(),
            delivered: AtomicU64::new(0),
            received: (0..subs)
                .map(|_| (0..pubs).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            out_of_order: AtomicU64::new(0),
            progress: Notify::new(),
            latency: Mutex::new(
                record_latency.then(|| {
                    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
                }),
            ),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The lowest count of `publisher`'s messages over `subs` (its receivers).
    pub(crate) fn min_received(&self, publisher: usize, subs: &[usize]) -> u64 {
        subs.iter()
            .map(|&s| self.received[s][publisher].load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Forgets latencies recorded so far (the warm-up).
    pub(crate) fn reset_latency(&self) {
        if let Ok(mut h) = self.latency.lock()
            && let Some(h) = h.as_mut()
        {
            h.reset();
        }
    }

    pub(crate) fn histogram(&self) -> Option<Histogram<u64>> {
        self.latency.lock().ok()?.clone()
    }
}

/// One subscriber's view: checks order per sender and records what it gets.
#[derive(Debug)]
pub(crate) struct SubRecorder {
    index: usize,
    /// The last seq seen from each sender (targeted runs skip seqs; order means increasing).
    last: Vec<u64>,
    latencies: Vec<u64>,
    last_flush: Instant,
    recording: bool,
}

impl SubRecorder {
    pub(crate) fn new(index: usize, pubs: usize, recording: bool) -> Self {
        Self {
            index,
            last: vec![0; pubs],
            latencies: Vec::new(),
            last_flush: Instant::now(),
            recording,
        }
    }

    /// Records one payload.
    pub(crate) fn record(&mut self, stats: &Stats, payload: &[u8]) {
        let Some((sender, seq, t)) = crate::payload::read(payload) else {
            stats.out_of_order.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let sender = sender as usize;
        let Some(last) = self.last.get_mut(sender) else {
            return;
        };
        if seq <= *last {
            stats.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        *last = seq;
        stats.received[self.index][sender].fetch_add(1, Ordering::Relaxed);
        let delivered = stats.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if self.recording {
            self.latencies.push(stats.now_ns().saturating_sub(t));
            if self.latencies.len() >= 256 || self.last_flush.elapsed().as_millis() >= 50 {
                self.flush(stats);
                self.last_flush = Instant::now();
            }
        }
        // Publishers that wait for room in their window look again every 32 deliveries in
        // all. Counted per subscriber, the wake-ups came together and seldom where each
        // subscriber gets a few of a window (1→100 targeted: 10 of 1 000 each), and a
        // publisher sat out its 5 ms timeout with nothing in flight.
        if delivered.is_multiple_of(32) {
            stats.progress.notify_waiters();
        }
    }

    /// Hands recorded latencies to the shared histogram and wakes publishers.
    pub(crate) fn flush(&mut self, stats: &Stats) {
        if !self.latencies.is_empty()
            && let Ok(mut h) = stats.latency.lock()
            && let Some(h) = h.as_mut()
        {
            for l in self.latencies.drain(..) {
                let _ = h.record(l.max(1));
            }
        }
        stats.progress.notify_waiters();
    }
}
