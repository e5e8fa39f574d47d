//! Memory budgets: the bytes the relay holds for delivery, bounded per session and in all.
//!
//! Two things hold signal bytes after a signal is taken: receivers' *queues* (waiting for
//! their delivery streams) and routes' *replay rings* (frames written recently, kept so a
//! resume loses nothing). Every held frame is an exact-size buffer of its own (never a slice
//! of a larger one), so the bytes counted are the bytes pinned; each is charged its length
//! plus a fixed overhead. A [`Held`] counts both kinds against half of its budget each; the
//! relay has one for everything and one per session, and a frame is charged to both.
//!
//! What happens at a bound:
//!
//! - **Replay** over budget: the ring that is adding a frame drops its own oldest frames until
//!   the budget holds again. A client that resumes is told what it can no longer get
//!   (`Missed`), as for any frame pushed out of a ring.
//! - **Queues** over budget: a receiver whose backlog is at least the average backlog of the
//!   receivers that have one is the one that cannot keep up — it is closed as `slowConsumer`,
//!   its queue freed. One further ahead still gets the frame: a reader that keeps up is not
//!   closed because another one stalled, and the worst one always goes first.

use std::sync::atomic::{AtomicUsize, Ordering};

/// What one queued or kept frame costs beyond its bytes.
pub(crate) const ENTRY_OVERHEAD: usize = 64;

/// Bytes held for delivery against a budget, and the members they are for.
#[derive(Debug)]
pub(crate) struct Held {
    queued: AtomicUsize,
    replay: AtomicUsize,
    /// Receivers with a backlog (something queued).
    behind: AtomicUsize,
    /// Half of the budget, for each kind.
    half: usize,
}

impl Held {
    /// A budget of `bytes` in all (half for queues, half for replay).
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            replay: AtomicUsize::new(0),
            behind: AtomicUsize::new(0),
            half: bytes / 2,
        }
    }

    /// Bytes queued and bytes kept for replay.
    pub(crate) fn bytes(&self) -> (usize, usize) {
        (
            self.queued.load(Ordering::Relaxed),
            self.replay.load(Ordering::Relaxed),
        )
    }

    /// A receiver's backlog started (`true`) or ended.
    fn behind(&self, started: bool) {
        if started {
            self.behind.fetch_add(1, Ordering::Relaxed);
        } else {
            self.behind.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Charges `cost` to the queues for a receiver that already has `backlog` queued; false
    /// (nothing charged) when the budget is spent and that receiver is at least as far
    /// behind as the average of those behind.
    fn queue(&self, cost: usize, backlog: usize) -> bool {
        let now = self.queued.fetch_add(cost, Ordering::Relaxed) + cost;
        if now <= self.half {
            return true;
        }
        let average = (now - cost) / self.behind.load(Ordering::Relaxed).max(1);
        if backlog < average {
            return true;
        }
        self.queued.fetch_sub(cost, Ordering::Relaxed);
        false
    }

    fn unqueue(&self, cost: usize) {
        self.queued.fetch_sub(cost, Ordering::Relaxed);
    }

    fn keep(&self, cost: usize) {
        self.replay.fetch_add(cost, Ordering::Relaxed);
    }

    fn unkeep(&self, cost: usize) {
        self.replay.fetch_sub(cost, Ordering::Relaxed);
    }

    fn replay_over(&self) -> bool {
        self.replay.load(Ordering::Relaxed) > self.half
    }
}

/// The budgets a frame for one session is charged to: the session's and the relay's.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    pub(crate) session: std::sync::Arc<Held>,
    pub(crate) global: std::sync::Arc<Held>,
}

impl Budgets {
    /// Charges a queued frame (see [`Held`]); false when the receiver must go.
    pub(crate) fn queue(&self, cost: usize, backlog: usize) -> bool {
        if !self.session.queue(cost, backlog) {
            return false;
        }
        if !self.global.queue(cost, backlog) {
            self.session.unqueue(cost);
            return false;
        }
        true
    }

    /// A receiver's backlog started (`true`) or ended.
    pub(crate) fn behind(&self, started: bool) {
        self.session.behind(started);
        self.global.behind(started);
    }

    /// A queued frame left its queue.
    pub(crate) fn unqueue(&self, cost: usize) {
        self.session.unqueue(cost);
        self.global.unqueue(cost);
    }

    /// A frame was added to a replay ring.
    pub(crate) fn keep(&self, cost: usize) {
        self.session.keep(cost);
        self.global.keep(cost);
    }

    /// A frame left a replay ring.
    pub(crate) fn unkeep(&self, cost: usize) {
        self.session.unkeep(cost);
        self.global.unkeep(cost);
    }

    /// Whether replay is over either budget.
    pub(crate) fn replay_over(&self) -> bool {
        self.session.replay_over() || self.global.replay_over()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn over_budget_the_receiver_furthest_behind_is_refused_one_ahead_passes() {
        let b = Budgets {
            session: Arc::new(Held::new(2000)),
            global: Arc::new(Held::new(1 << 20)),
        };
        // 1000 bytes of queue budget: one receiver 800 behind, another 200.
        b.behind(true);
        assert!(b.queue(800, 0));
        b.behind(true);
        assert!(b.queue(200, 0));
        assert_eq!(b.session.bytes().0, 1000);
        assert!(
            !b.queue(100, 800),
            "over, and this one is behind the average"
        );
        assert!(
            b.queue(100, 200),
            "over, but this one is ahead of the average"
        );
        assert_eq!(b.session.bytes().0, 1100);
        assert_eq!(b.global.bytes().0, 1100);
        b.unqueue(1100);
        assert_eq!(b.session.bytes(), (0, 0));
        // The global budget refuses too, and then nothing stays charged to the session.
        let tight = Budgets {
            session: Arc::new(Held::new(1 << 20)),
            global: Arc::new(Held::new(200)),
        };
        tight.behind(true);
        assert!(tight.queue(100, 0));
        assert!(!tight.queue(100, 100));
        assert_eq!(tight.session.bytes().0, 100);
    }
}
