//! Replay rings: what a route keeps of the frames it wrote, so a resume loses nothing.
//!
//! A client's stream receive window bounds what it can have been sent but not read; a route
//! keeps at least that much of what it wrote most recently (`REPLAY_BYTES`). When a client
//! resumes it says the last seq it has from each sender, and the route replays the kept frames
//! after it. A frame pushed out of a ring (by its own bound, or because the session's or the
//! relay's replay budget is spent) is remembered by its seq, so a resume that needs it is told
//! exactly what it lost (`Missed`) instead of seeing a silent gap.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::ENTRY_OVERHEAD;

/// Bytes of recently written frames each route keeps for a resume. Must exceed the
/// clients' stream receive window (`signalbox_proto::CLIENT_STREAM_WINDOW`).
pub(crate) const REPLAY_BYTES: usize = 2 * signalbox_proto::CLIENT_STREAM_WINDOW as usize;

/// Seqs of pushed-out frames a ring remembers.
const EVICTED_KEPT: usize = 4096;

/// A signal frame with its sender's seq.
pub(crate) type Frame = (u64, Bytes);

/// What a frame costs the bounds it is charged to.
pub(crate) fn cost(frame: &Frame) -> usize {
    frame.1.len() + ENTRY_OVERHEAD
}

/// Replay budget shared by rings (the session's and the relay's).
pub(crate) trait Keep {
    /// Reserves `bytes`; false (nothing reserved) when the budget is spent.
    fn reserve(&self, bytes: usize) -> bool;
    /// Gives back `bytes` reserved.
    fn unkeep(&self, bytes: usize);
}

/// Lost frames newer than what a client has: their lowest and highest seq and how many.
pub(crate) type Lost = (u64, u64, u64);

/// Replay budget a ring reserves at a time: it touches the shared budgets only when what it
/// keeps crosses a reservation, not for every frame.
const RESERVE: usize = 16 * 1024;

/// The frames a route wrote most recently, for replay after a resume: at most
/// [`REPLAY_BYTES`], and less when the session's or the relay's replay budget is spent (the
/// oldest go first). What it keeps is covered by a reservation on the budgets, made and
/// given back [`RESERVE`] bytes at a time; the budgets count reservations, so what is kept
/// never exceeds them.
pub(crate) struct Ring<K: Keep> {
    frames: VecDeque<Frame>,
    /// Bytes of the frames kept.
    bytes: usize,
    /// What they cost the budgets (with the overhead per frame).
    held: usize,
    /// What is reserved on the budgets (at least `held` after `settle`).
    reserved: usize,
    /// Seqs of frames pushed out (bounded), to count what a resume cannot replay.
    evicted: VecDeque<u64>,
    budgets: K,
}

impl<K: Keep> Ring<K> {
    pub(crate) fn new(budgets: K) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            held: 0,
            reserved: 0,
            evicted: VecDeque::new(),
            budgets,
        }
    }

    /// The budgets it reserves on.
    pub(crate) fn budgets(&self) -> &K {
        &self.budgets
    }

    /// Bytes of the frames kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps one frame (covered by `settle`).
    pub(crate) fn push(&mut self, frame: Frame) {
        self.bytes += frame.1.len();
        self.held += cost(&frame);
        self.frames.push_back(frame);
    }

    /// Drops the oldest frame; false when there is none.
    fn evict(&mut self) -> bool {
        let Some(frame) = self.frames.pop_front() else {
            return false;
        };
        self.bytes -= frame.1.len();
        self.held -= cost(&frame);
        if self.evicted.len() == EVICTED_KEPT {
            self.evicted.pop_front();
        }
        self.evicted.push_back(frame.0);
        true
    }

    /// After a batch of pushes: keeps the ring within its own bound, then within what it can
    /// reserve on the budgets (dropping its oldest frames when they are spent), and gives
    /// back a reservation it no longer needs.
    pub(crate) fn settle(&mut self) {
        while self.bytes > REPLAY_BYTES && self.evict() {}
        while self.held > self.reserved {
            let want = (self.held - self.reserved).next_multiple_of(RESERVE);
            if self.budgets.reserve(want) {
                self.reserved += want;
            } else if !self.evict() {
                break;
            }
        }
        if self.reserved > self.held + 2 * RESERVE {
            let spare = self.reserved - self.held - RESERVE;
            self.budgets.unkeep(spare);
            self.reserved -= spare;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.evicted.clear();
        self.bytes = 0;
        self.held = 0;
        self.budgets.unkeep(std::mem::take(&mut self.reserved));
    }

    /// The kept frames newer than `seen`, as one chunk, and the newer ones that were pushed
    /// out (lost): their lowest and highest seq and how many.
    pub(crate) fn after(&self, seen: u64) -> (Bytes, Option<Lost>) {
        let mut buf = BytesMut::new();
        for (seq, f) in &self.frames {
            if *seq > seen {
                buf.extend_from_slice(f);
            }
        }
        let lost = self
            .evicted
            .iter()
            .filter(|&&s| s > seen)
            .fold(None, |acc, &s| {
                Some(match acc {
                    None => (s, s, 1),
                    Some((lo, hi, n)) => (u64::min(lo, s), u64::max(hi, s), n + 1),
                })
            });
        (buf.freeze(), lost)
    }
}

impl<K: Keep> Drop for Ring<K> {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    /// A replay budget of `limit` bytes.
    struct Limit {
        used: Cell<usize>,
        limit: usize,
    }

    impl Limit {
        fn new(limit: usize) -> Self {
            Self {
                used: Cell::new(0),
                limit,
            }
        }
    }

    impl Keep for &Limit {
        fn reserve(&self, bytes: usize) -> bool {
            if self.used.get() + bytes > self.limit {
                return false;
            }
            self.used.set(self.used.get() + bytes);
            true
        }
        fn unkeep(&self, bytes: usize) {
            self.used.set(self.used.get() - bytes);
        }
    }

    /// A frame whose bytes start with its seq, `len` long in all.
    fn frame(seq: u64, len: usize) -> Frame {
        let mut b = vec![b'x'; len.max(12)];
        b[..8].copy_from_slice(&seq.to_be_bytes());
        let n = b.len() as u32;
        b[8..12].copy_from_slice(&n.to_be_bytes());
        (seq, Bytes::from(b))
    }

    /// The seqs in a replay chunk made of [`frame`]s.
    fn seqs(mut chunk: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let seq = u64::from_be_bytes(chunk[..8].try_into().unwrap());
            let len = u32::from_be_bytes(chunk[8..12].try_into().unwrap()) as usize;
            out.push(seq);
            chunk = &chunk[len..];
        }
        out
    }

    #[test]
    fn a_ring_keeps_its_own_bound_and_the_replay_budget_and_frees_what_it_held() {
        let budget = Limit::new(100_000);
        let mut ring = Ring::new(&budget);
        // 100 000 bytes of replay budget: about eleven 8 KiB frames.
        for seq in 1..=50 {
            ring.push(frame(seq, 8192));
            ring.settle();
            assert!(budget.used.get() <= 100_000);
        }
        let kept = ring.frames.len() as u64;
        assert!((10..=12).contains(&kept), "{kept}");
        // What a client that has seq 20 would get: the kept ones, and the count of the rest.
        let (replay, lost) = ring.after(20);
        assert_eq!(seqs(&replay), ((51 - kept)..=50).collect::<Vec<_>>());
        assert_eq!(lost, Some((21, 50 - kept, 30 - kept)));
        // Its own bound: REPLAY_BYTES, whatever the budget.
        let roomy = Limit::new(1 << 30);
        let mut big = Ring::new(&roomy);
        for seq in 1..=1000 {
            big.push(frame(seq, 8192));
            big.settle();
        }
        assert!(big.bytes() <= REPLAY_BYTES);
        drop(ring);
        drop(big);
        assert_eq!(budget.used.get(), 0);
        assert_eq!(roomy.used.get(), 0);
    }

    proptest! {
        /// A route writes frames (seqs rising with gaps: not every signal is for this
        /// receiver) in batches, under a replay budget; a client that has any seq resumes.
        /// What it gets replayed and what it is told it lost are, together, exactly the frames
        /// after what it has — in order, none twice — and the budget is never exceeded.
        #[test]
        fn a_resume_gets_every_later_frame_or_is_told_it_was_lost(
            frames in proptest::collection::vec((1u64..4, 1usize..20_000), 1..300),
            batch in 1usize..16,
            limit in 0usize..400_000,
            seen_at in 0usize..300,
        ) {
            let budget = Limit::new(limit);
            let mut ring = Ring::new(&budget);
            let mut seq = 0;
            let mut written = Vec::new();
            for (k, (gap, len)) in frames.iter().enumerate() {
                seq += gap;
                written.push(seq);
                ring.push(frame(seq, *len));
                if k % batch == batch - 1 {
                    ring.settle();
                    prop_assert!(budget.used.get() <= limit);
                    prop_assert!(ring.bytes() <= REPLAY_BYTES);
                }
            }
            ring.settle();
            prop_assert!(budget.used.get() <= limit);
            // The client has everything up to `seen`.
            let seen = if seen_at == 0 { 0 } else { written[(seen_at - 1) % written.len()] };
            let (replay, lost) = ring.after(seen);
            let replayed = seqs(&replay);
            let after: Vec<u64> = written.iter().copied().filter(|&s| s > seen).collect();
            // The replay is the newest of them, in order; the lost ones are the older rest.
            prop_assert!(after.ends_with(&replayed));
            let missing = &after[..after.len() - replayed.len()];
            match lost {
                None => prop_assert!(missing.is_empty()),
                Some((first, last, count)) => {
                    prop_assert_eq!(count as usize, missing.len());
                    prop_assert_eq!(Some(&first), missing.first());
                    prop_assert_eq!(Some(&last), missing.last());
                }
            }
            drop(ring);
            prop_assert_eq!(budget.used.get(), 0);
        }
    }
}
