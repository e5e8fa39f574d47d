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
//! - **Replay** over budget: a ring reserves budget in 16 KiB steps as it grows; when a
//!   reservation is refused, it drops its own oldest frames instead. A client that resumes is
//!   told what it can no longer get (`Missed`), as for any frame pushed out of a ring. The
//!   budget counts reservations, so kept bytes never exceed it.
//! - **Queues** over the session's budget, for a client's signals: its sender stops reading
//!   its send stream until there is room (`delivery::wait_for_room`), so QUIC's flow control
//!   slows the client, and the signal that found the budget spent is the only one charged
//!   past it. A receiver that reads is not closed because a sender outruns it. One that has
//!   read nothing for two seconds, and is at least as far behind as the average of the
//!   receivers with a backlog, is the one that cannot keep up: it is closed as
//!   `slowConsumer`, its queue freed. If the budget stays spent for `write_timeout`, one that
//!   is also twice as far behind as the median receiver is closed even if it trickles.
//! - **Queues** over the relay's budget in all, or for signals whose sender cannot wait (REST,
//!   other nodes): a receiver whose backlog is at least that average is closed at once. One
//!   further ahead still gets the frame, and the worst one always goes first.

use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use crate::engine::ENTRY_OVERHEAD;
use crate::engine::replay::Keep;

/// Bytes held for delivery against a budget.
#[derive(Debug)]
pub(crate) struct Held {
    queued: AtomicUsize,
    replay: AtomicUsize,
    /// Half of the budget, for each kind.
    half: usize,
    /// Woken when the queued bytes fall back within their half.
    room: tokio::sync::Notify,
}

impl Held {
    /// A budget of `bytes` in all (half for queues, half for replay).
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            replay: AtomicUsize::new(0),
            half: bytes / 2,
            room: tokio::sync::Notify::new(),
        }
    }

    /// Bytes queued and bytes kept for replay.
    pub(crate) fn bytes(&self) -> (usize, usize) {
        (
            self.queued.load(Ordering::Relaxed),
            self.replay.load(Ordering::Relaxed),
        )
    }

    /// Whether `extra` more queued bytes fit.
    pub(crate) fn has_room(&self, extra: usize) -> bool {
        self.queued.load(Ordering::Relaxed) + extra <= self.half
    }

    /// Charges `cost` to the queues for a receiver that already has `backlog` queued, when
    /// `behind` receivers have a backlog; false (nothing charged) when the budget is spent
    /// and that receiver is at least as far behind as their average.
    fn queue(&self, cost: usize, backlog: usize, behind: usize) -> bool {
        let now = self.queued.fetch_add(cost, Ordering::Relaxed) + cost;
        if now <= self.half {
            return true;
        }
        let average = (now - cost) / behind.max(1);
        if backlog < average {
            return true;
        }
        // Through `unqueue`: this may bring the bytes back within bounds, and a sender may be
        // waiting for that.
        self.unqueue(cost);
        false
    }

    fn unqueue(&self, cost: usize) {
        let before = self.queued.fetch_sub(cost, Ordering::Relaxed);
        if before > self.half && before - cost <= self.half {
            self.room.notify_waiters();
        }
    }

    /// Resolves when the queued bytes fall back within their half (after it was spent); enable
    /// it, then check [`Held::has_room`], then await it.
    pub(crate) fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    /// Reserves `bytes` of replay budget; false (nothing reserved) when it is spent.
    fn reserve(&self, bytes: usize) -> bool {
        if self.replay.fetch_add(bytes, Ordering::Relaxed) + bytes <= self.half {
            return true;
        }
        self.replay.fetch_sub(bytes, Ordering::Relaxed);
        false
    }

    fn unkeep(&self, cost: usize) {
        self.replay.fetch_sub(cost, Ordering::Relaxed);
    }
}

/// The budgets a frame for one session is charged to: the session's and the relay's. The
/// hot path charges them once per signal (not per receiver) and once per written batch.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    pub(crate) session: std::sync::Arc<Held>,
    pub(crate) global: std::sync::Arc<Held>,
}

impl Budgets {
    /// Whether `extra` more queued bytes fit both budgets (nothing is charged).
    pub(crate) fn has_room(&self, extra: usize) -> bool {
        self.session.has_room(extra) && self.global.has_room(extra)
    }

    /// Charges `cost` to the queues without a check (the caller found room).
    pub(crate) fn charge(&self, cost: usize) {
        self.session.queued.fetch_add(cost, Ordering::Relaxed);
        self.global.queued.fetch_add(cost, Ordering::Relaxed);
    }

    /// Charges a queued frame when the budgets may be spent (see [`Held`]); false when the
    /// receiver must go.
    pub(crate) fn queue(&self, cost: usize, backlog: usize, behind: usize) -> bool {
        if !self.session.queue(cost, backlog, behind) {
            return false;
        }
        if !self.global.queue(cost, backlog, behind) {
            self.session.unqueue(cost);
            return false;
        }
        true
    }

    /// Queued bytes left their queues.
    pub(crate) fn unqueue(&self, cost: usize) {
        self.session.unqueue(cost);
        self.global.unqueue(cost);
    }

    /// Reserves `bytes` of replay budget on both; false (nothing reserved) when either is
    /// spent.
    pub(crate) fn reserve(&self, bytes: usize) -> bool {
        if !self.session.reserve(bytes) {
            return false;
        }
        if !self.global.reserve(bytes) {
            self.session.unkeep(bytes);
            return false;
        }
        true
    }

    /// Gives back `bytes` of replay reservation.
    pub(crate) fn unkeep(&self, bytes: usize) {
        self.session.unkeep(bytes);
        self.global.unkeep(bytes);
    }
}

impl Keep for Budgets {
    fn reserve(&self, bytes: usize) -> bool {
        Budgets::reserve(self, bytes)
    }

    fn unkeep(&self, bytes: usize) {
        Budgets::unkeep(self, bytes)
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
        assert!(b.has_room(1000));
        b.charge(1000);
        assert!(!b.has_room(1));
        assert!(
            !b.queue(100, 800, 2),
            "over, and this one is behind the average"
        );
        assert!(
            b.queue(100, 200, 2),
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
        assert!(tight.queue(100, 0, 1));
        assert!(!tight.queue(100, 100, 1));
        assert_eq!(tight.session.bytes().0, 100);
    }
}
