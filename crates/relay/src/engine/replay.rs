//! Replay rings: what a route keeps of the frames it wrote, so a resume loses nothing.
//!
//! A client's stream receive window bounds what it can have been sent but not read; a route
//! keeps at least that much of what it wrote most recently (`REPLAY_BYTES`), and less when it
//! knows the client has read more: a client on the native QUIC link grants a delivery stream
//! credit as it reads, so the stream's limit minus that window is read, and the frames below
//! it go ([`RouteReplay::read_through`]). On loopback a client reads within a few hundred
//! microseconds, and a route then holds tens of KiB instead of half a megabyte: its frames are
//! freed while their memory is still in the processor's caches, and the relay's memory no
//! longer grows with senders × receivers × the bound. When a client resumes it says the last
//! seq it has from each sender, and the route replays the kept frames after it.
//!
//! A frame pushed out of a ring (by its own bound, because the session's or the relay's
//! replay budget is spent, or because its client read it) is remembered by its seq, so a
//! resume that needs it is told what it lost (`Missed`) instead of seeing a silent gap: a
//! client that read it never needs it, and one that broke the window's rule is told. Past
//! [`EVICTED_KEPT`] seqs the oldest are remembered as one range, counted whole.
//!
//! A broadcast goes to every route of its sender, and each route keeping its own entry for it
//! cost as many entries as receivers (100 routes on a 10→10 session). So a sender's
//! broadcasts are kept once, in its [`Broadcasts`], and a route ([`RouteReplay`]) keeps only
//! which of them it took — a range of seqs — besides its own ring for the rest (targeted
//! frames, and broadcasts the shared ring no longer had when the route took them). The shared
//! ring keeps a frame until every route that takes from it has written `REPLAY_BYTES` of
//! broadcasts after it or knows its client has read it, so a slow route holds what it will
//! need (within the budgets). A route
//! whose connection is lost copies what it took out of the shared ring into its own and lets
//! go, so a receiver that is away holds no more than its own bound, as before.
//!
//! A route's own ring keeps small frames as copies, one after another in buffers of its own
//! ([`Ring::push_copied`]), charged for the whole buffers they pin.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::ENTRY_OVERHEAD;

/// Bytes of recently written frames each route keeps for a resume. Must exceed the
/// clients' stream receive window (`signalbox_proto::CLIENT_STREAM_WINDOW`).
pub(crate) const REPLAY_BYTES: usize = 2 * signalbox_proto::CLIENT_STREAM_WINDOW as usize;

/// Seqs of pushed-out frames a ring remembers.
const EVICTED_KEPT: usize = 4096;

/// A route keeps a copy of each frame below this size in buffers of its own
/// ([`Ring::push_copied`]) instead of the frame the sender encoded.
const COPY_BELOW: usize = 1024;
/// The size of those buffers: an eighth of what the ring keeps, within these bounds.
const CHUNK_MIN: usize = 4096;
const CHUNK_MAX: usize = 32 * 1024;

/// A buffer a ring copies frames into: written once, front to back, never shared.
#[derive(Debug)]
struct Chunk {
    /// Its number: a ring numbers its buffers in the order it starts them.
    id: u64,
    /// Its copies, one after another (its capacity is what it was given, and stays).
    buf: Vec<u8>,
    /// Its frames the ring still keeps.
    kept: usize,
}

/// A frame a ring keeps.
#[derive(Debug)]
struct Entry {
    seq: u64,
    kept: Kept,
}

/// How a ring keeps a frame.
#[derive(Debug)]
enum Kept {
    /// As it was handed over.
    Frame(Bytes),
    /// As a copy: `len` bytes at `at` in the ring's buffer numbered `chunk`.
    Copy { chunk: u64, at: u32, len: u32 },
}

impl Entry {
    /// A frame kept as it was handed over.
    fn whole((seq, frame): Frame) -> Self {
        Self {
            seq,
            kept: Kept::Frame(frame),
        }
    }

    fn len(&self) -> usize {
        match &self.kept {
            Kept::Frame(f) => f.len(),
            Kept::Copy { len, .. } => *len as usize,
        }
    }
}

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
    frames: VecDeque<Entry>,
    /// Bytes of the frames kept.
    bytes: usize,
    /// What they cost the budgets (with the overhead per frame).
    held: usize,
    /// What is reserved on the budgets (at least `held` after `settle`).
    reserved: usize,
    /// Seqs of frames pushed out (bounded), to count what a resume cannot replay.
    evicted: VecDeque<u64>,
    /// The frames pushed out of `evicted` in turn: their lowest and highest seq and how many.
    /// A resume that needs any of them is told all of them (a count that may be too high,
    /// never a gap).
    forgotten: Option<Lost>,
    /// The buffers its copied frames are in, oldest first (the one it fills last).
    chunks: VecDeque<Chunk>,
    /// Whether the last of `chunks` is the one it copies the next small frame into.
    filling: bool,
    /// The number of the next buffer it starts.
    next_chunk: u64,
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
            forgotten: None,
            chunks: VecDeque::new(),
            filling: false,
            next_chunk: 0,
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
        self.frames.push_back(Entry::whole(frame));
    }

    /// Keeps one frame (covered by `settle`), a small one as a copy in a buffer of the
    /// ring's own.
    ///
    /// Why: a targeted frame is a buffer of its own (the sender encodes each signal once, in
    /// a buffer of exactly its size), and a route keeps half a megabyte of them, so by the
    /// time a ring lets go of a frame its buffer has long left the processor's caches;
    /// dropping it (a reference count) and the allocator reusing it both waited on memory
    /// (on 10→10 targeted 64 B, a quarter of the relay's time). Copied frames are written
    /// one after another into buffers of the ring's own, and the sender's frame is freed as
    /// soon as it is written, while its memory is still cached. A copy is kept as where it
    /// lies in its buffer, not as a slice with a reference count: making that slice and
    /// dropping it were a tenth of the relay's time on the same row (the count's atomic
    /// increment waited for the copy's stores to reach memory). Nothing but the ring holds
    /// a buffer; a resume's replay copies out of it.
    ///
    /// A buffer is the ring's until its last frame goes, and the ring is charged for exactly
    /// that: every buffer's whole size while any frame in it is kept (or it is the one being
    /// filled), besides `ENTRY_OVERHEAD` per frame.
    ///
    /// The frame is only looked at (and cloned when kept whole): the caller still has it to
    /// write, so a small frame's buffer is made, shared and freed without a reference count.
    pub(crate) fn push_copied(&mut self, (seq, bytes): &Frame) {
        let (seq, len) = (*seq, bytes.len());
        if len == 0 || len >= COPY_BELOW {
            return self.push((seq, bytes.clone()));
        }
        let room = self.filling
            && self
                .chunks
                .back()
                .is_some_and(|c| c.buf.capacity() - c.buf.len() >= len);
        if !room {
            // None yet, or the one being filled is full: that one goes when its frames
            // have gone.
            self.filling = false;
            self.release_empty();
            let cap = (self.bytes / 8)
                .next_power_of_two()
                .clamp(CHUNK_MIN, CHUNK_MAX);
            let buf = Vec::with_capacity(cap);
            self.held += buf.capacity();
            self.chunks.push_back(Chunk {
                id: self.next_chunk,
                buf,
                kept: 0,
            });
            self.next_chunk += 1;
            self.filling = true;
        }
        let Some(chunk) = self.chunks.back_mut() else {
            unreachable!("a buffer is being filled");
        };
        let at = chunk.buf.len();
        chunk.buf.extend_from_slice(bytes);
        chunk.kept += 1;
        self.frames.push_back(Entry {
            seq,
            kept: Kept::Copy {
                chunk: chunk.id,
                // Within a buffer of at most CHUNK_MAX bytes.
                at: at as u32,
                len: len as u32,
            },
        });
        self.bytes += len;
        // Its bytes are in the buffer's charge already.
        self.held += ENTRY_OVERHEAD;
    }

    /// The bytes of a kept frame.
    fn bytes_of<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        match &entry.kept {
            Kept::Frame(f) => f,
            Kept::Copy { chunk, at, len } => {
                let first = self.chunks.front().map_or(0, |c| c.id);
                let c = &self.chunks[(chunk - first) as usize];
                &c.buf[*at as usize..(*at + *len) as usize]
            }
        }
    }

    /// A kept frame as a frame of its own (a copy is copied out of its buffer).
    fn frame_of(&self, entry: &Entry) -> Frame {
        match &entry.kept {
            Kept::Frame(f) => (entry.seq, f.clone()),
            Kept::Copy { .. } => (entry.seq, Bytes::copy_from_slice(self.bytes_of(entry))),
        }
    }

    /// Gives back the buffers no kept frame is in, but the one being filled.
    fn release_empty(&mut self) {
        let filling = usize::from(self.filling);
        while self.chunks.len() > filling && self.chunks.front().is_some_and(|c| c.kept == 0) {
            if let Some(c) = self.chunks.pop_front() {
                self.held -= c.buf.capacity();
            }
        }
    }

    /// Drops the oldest frame — or, with no frame left, the buffer it copies frames into;
    /// false when there is neither.
    fn evict(&mut self) -> bool {
        let Some(entry) = self.frames.pop_front() else {
            if !std::mem::take(&mut self.filling) {
                return false;
            }
            self.release_empty();
            return true;
        };
        self.bytes -= entry.len();
        match entry.kept {
            Kept::Frame(f) => self.held -= f.len() + ENTRY_OVERHEAD,
            Kept::Copy { chunk, .. } => {
                // Its bytes stay charged with its buffer, given back with the buffer. Copies
                // leave in the order they came, so this one is in the oldest buffer.
                self.held -= ENTRY_OVERHEAD;
                if let Some(c) = self.chunks.front_mut() {
                    debug_assert_eq!(c.id, chunk);
                    c.kept -= 1;
                }
                self.release_empty();
            }
        }
        if self.evicted.len() == EVICTED_KEPT
            && let Some(seq) = self.evicted.pop_front()
        {
            self.forget(seq);
        }
        self.evicted.push_back(entry.seq);
        true
    }

    /// Counts a lost frame's seq in `forgotten`.
    fn forget(&mut self, seq: u64) {
        self.forgotten = merge(self.forgotten, Some((seq, seq, 1)));
    }

    /// The client has read every frame up to `seq`: they go, counted as pushed out, so that a
    /// resume that asks for one after all (a client whose window broke the protocol's bound)
    /// is told it is lost instead of shown a gap.
    pub(crate) fn forget_through(&mut self, seq: u64) {
        while self.frames.front().is_some_and(|e| e.seq <= seq) {
            self.evict();
        }
        self.settle();
    }

    /// The seq of the newest frame kept.
    pub(crate) fn newest(&self) -> Option<u64> {
        self.frames.back().map(|e| e.seq)
    }

    /// After a batch of pushes: keeps the ring within its own bound, then within what it can
    /// reserve on the budgets (dropping its oldest frames when they are spent), and gives
    /// back a reservation it no longer needs.
    pub(crate) fn settle(&mut self) {
        self.settle_with(|_, kept| kept > REPLAY_BYTES);
    }

    /// [`Ring::settle`], with the ring's own bound decided by `spare(oldest frame's length,
    /// bytes kept)`: whether the oldest frame may go.
    fn settle_with(&mut self, mut spare: impl FnMut(usize, usize) -> bool) {
        while let Some(oldest) = self.frames.front() {
            if !spare(oldest.len(), self.bytes) || !self.evict() {
                break;
            }
        }
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
        self.forgotten = None;
        self.chunks.clear();
        self.filling = false;
        self.bytes = 0;
        self.held = 0;
        self.budgets.unkeep(std::mem::take(&mut self.reserved));
    }

    /// Frames kept.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Takes in frames and lost seqs from elsewhere (a shared ring), and a range of lost ones
    /// it no longer knows one by one: everything stays in seq order, a seq it now keeps is not
    /// counted lost, and its bounds apply at once.
    pub(crate) fn absorb(&mut self, frames: Vec<Frame>, lost: Vec<u64>, forgotten: Option<Lost>) {
        self.forgotten = merge(self.forgotten, forgotten);
        if frames.is_empty() && lost.is_empty() {
            return;
        }
        let mine = std::mem::take(&mut self.frames);
        let mut merged = VecDeque::with_capacity(mine.len() + frames.len());
        let (mut a, mut b) = (mine.into_iter().peekable(), frames.into_iter().peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.seq <= y.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_a {
                merged.extend(a.next());
            } else if let Some(frame) = b.next() {
                if merged.back().is_some_and(|e: &Entry| e.seq == frame.0) {
                    continue; // kept already
                }
                self.bytes += frame.1.len();
                self.held += cost(&frame);
                merged.push_back(Entry::whole(frame));
            }
        }
        self.frames = merged;
        let kept = |seq: &u64| self.frames.binary_search_by_key(seq, |e| e.seq).is_ok();
        let mut evicted: Vec<u64> = self.evicted.drain(..).collect();
        evicted.extend(lost.into_iter().filter(|s| !kept(s)));
        evicted.sort_unstable();
        evicted.dedup();
        let from = evicted.len().saturating_sub(EVICTED_KEPT);
        for seq in evicted.drain(..from) {
            self.forget(seq);
        }
        self.evicted = evicted.into();
        self.settle();
    }

    /// The kept frames newer than `seen`, as one chunk, and the newer ones that were pushed
    /// out (lost): their lowest and highest seq and how many. The count is exact unless more
    /// than [`EVICTED_KEPT`] frames were pushed out and `seen` falls among the oldest of them:
    /// then it counts them all (too many, never too few).
    pub(crate) fn after(&self, seen: u64) -> (Bytes, Option<Lost>) {
        let mut buf = BytesMut::new();
        for e in &self.frames {
            if e.seq > seen {
                buf.extend_from_slice(self.bytes_of(e));
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
        let forgotten = self
            .forgotten
            .filter(|&(_, hi, _)| hi > seen)
            .map(|(lo, hi, n)| (lo.max(seen + 1), hi, n));
        (buf.freeze(), merge(lost, forgotten))
    }
}

/// Two counts of lost frames as one.
fn merge(a: Option<Lost>, b: Option<Lost>) -> Option<Lost> {
    match (a, b) {
        (Some((lo, hi, n)), Some((lo2, hi2, n2))) => Some((lo.min(lo2), hi.max(hi2), n + n2)),
        (x, None) | (None, x) => x,
    }
}

impl<K: Keep> Drop for Ring<K> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One sender's broadcasts, kept once for all its routes (see the module's introduction).
pub(crate) struct Broadcasts<K: Keep> {
    ring: Ring<K>,
    /// Where each kept frame ends in the sender's broadcast bytes (as `ring`, oldest first).
    ends: VecDeque<u64>,
    /// Frames pushed out of `ring` so far: a frame's absolute position is this plus its index.
    gone: u64,
    /// Bytes of broadcasts pushed in all.
    pushed: u64,
    /// The routes that take from it, by key: where the last frame each took ends.
    cursors: Vec<Option<u64>>,
    /// By key too: where the last frame each route's client has read ends (0: none known).
    reads: Vec<u64>,
    free: Vec<usize>,
}

/// A route's place in a sender's [`Broadcasts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Taken {
    key: usize,
    /// It took every kept frame with a seq in `(after, upto]`.
    after: u64,
    upto: u64,
    /// Where its last frame was (absolute position), to find the next one at once.
    at: u64,
}

impl<K: Keep> Broadcasts<K> {
    pub(crate) fn new(budgets: K) -> Self {
        Self {
            ring: Ring::new(budgets),
            ends: VecDeque::new(),
            gone: 0,
            pushed: 0,
            cursors: Vec::new(),
            reads: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Keeps a broadcast its sender is about to hand to its routes, and lets go of what no
    /// route needs any more: frames that every route taking from it either wrote
    /// `REPLAY_BYTES` before its last, or knows its client has read — or whatever the budgets
    /// cannot cover, oldest first.
    pub(crate) fn push(&mut self, frame: Frame) {
        self.pushed += frame.1.len() as u64;
        self.ends.push_back(self.pushed);
        self.ring.push(frame);
        self.settle();
    }

    /// Lets go of the frames no route needs any more (see [`Broadcasts::push`]): after a
    /// push, and whenever a route moves on or stops taking from it — a slow route catching up
    /// frees what it held even if the sender broadcasts nothing more.
    pub(crate) fn settle(&mut self) {
        // A frame may go when it ends at or before every route's floor: `REPLAY_BYTES` behind
        // the route's last frame, or where its client has read, whichever is further.
        let behind = |end: u64| end.saturating_sub(REPLAY_BYTES as u64);
        let floor = self
            .cursors
            .iter()
            .zip(&self.reads)
            .filter_map(|(c, &read)| c.map(|c| behind(c).max(read)))
            .min()
            .unwrap_or(behind(self.pushed));
        let pushed = self.pushed;
        self.ring.settle_with(|oldest, kept| {
            let end = pushed - kept as u64 + oldest as u64;
            end <= floor
        });
        self.trim();
    }

    /// The client of the route `key`, which took the kept frames with seqs in
    /// `(after, upto]`, has read every frame up to `seq` (taken into account at the next
    /// [`Broadcasts::settle`]).
    fn read_through(&mut self, key: usize, after: u64, upto: u64, seq: u64) {
        let seq = seq.min(upto);
        let i = self.ring.frames.partition_point(|e| e.seq <= seq);
        let Some(last) = i.checked_sub(1) else {
            return;
        };
        if self.ring.frames[last].seq <= after {
            return;
        }
        let end = self.ends[last];
        self.reads[key] = self.reads[key].max(end);
    }

    /// Forgets the ends of frames the ring pushed out.
    fn trim(&mut self) {
        while self.ends.len() > self.ring.len() {
            self.ends.pop_front();
            self.gone += 1;
        }
    }

    /// The index of the kept frame `seq`, trying `hint` (an absolute position) first.
    fn find(&self, seq: u64, hint: Option<u64>) -> Option<usize> {
        if let Some(i) = hint
            .and_then(|at| at.checked_sub(self.gone))
            .and_then(|i| usize::try_from(i).ok())
            && self.ring.frames.get(i).is_some_and(|e| e.seq == seq)
        {
            return Some(i);
        }
        self.ring.frames.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    fn register(&mut self, end: u64) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.cursors[key] = Some(end);
                self.reads[key] = 0;
                key
            }
            None => {
                self.cursors.push(Some(end));
                self.reads.push(0);
                self.cursors.len() - 1
            }
        }
    }

    fn unregister(&mut self, key: usize) {
        self.cursors[key] = None;
        self.free.push(key);
        if self.free.len() == self.cursors.len() {
            // No route takes from it: what it keeps is nobody's to replay.
            self.ring.clear();
            self.trim();
        } else {
            self.settle();
        }
    }

    /// Bytes of the frames kept.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.ring.bytes()
    }

    /// The kept frames with a seq in `(after, upto]`, the seqs in it pushed out, and those
    /// pushed out it no longer knows one by one (see [`Ring::after`]).
    fn range(&self, after: u64, upto: u64) -> (Vec<Frame>, Vec<u64>, Option<Lost>) {
        let within = |s: u64| s > after && s <= upto;
        let frames = self
            .ring
            .frames
            .iter()
            .filter(|e| within(e.seq))
            .map(|e| self.ring.frame_of(e))
            .collect();
        let lost = self
            .ring
            .evicted
            .iter()
            .copied()
            .filter(|&s| within(s))
            .collect();
        let forgotten = self
            .ring
            .forgotten
            .filter(|&(lo, hi, _)| lo <= upto && hi > after)
            .map(|(lo, hi, n)| (lo.max(after + 1), hi.min(upto), n));
        (frames, lost, forgotten)
    }
}

/// What one route keeps for a resume: its own [`Ring`], and the range of its sender's
/// [`Broadcasts`] it took. The `Broadcasts` are passed in to every call (the driver holds them
/// behind a lock shared with the sender and its other routes).
pub(crate) struct RouteReplay<K: Keep> {
    own: Ring<K>,
    taken: Option<Taken>,
}

impl<K: Keep> RouteReplay<K> {
    pub(crate) fn new(budgets: K) -> Self {
        Self {
            own: Ring::new(budgets),
            taken: None,
        }
    }

    /// The budgets it reserves on.
    pub(crate) fn budgets(&self) -> &K {
        self.own.budgets()
    }

    /// Keeps a frame the route took to write (covered by [`RouteReplay::settle`]); the
    /// frame stays the caller's (see [`Ring::push_copied`]).
    pub(crate) fn keep(&mut self, frame: &Frame, log: &mut Broadcasts<K>) {
        let hint = self.taken.map(|t| t.at + 1);
        let Some(i) = log.find(frame.0, hint) else {
            // A targeted frame, or a broadcast the shared ring no longer has.
            self.own.push_copied(frame);
            return;
        };
        let at = log.gone + i as u64;
        if let Some(t) = &mut self.taken
            && at == t.at + 1
        {
            // The next kept frame after the last one it took: the range grows.
            t.upto = frame.0;
            t.at = at;
            log.cursors[t.key] = Some(log.ends[i]);
            return;
        }
        // The first, or one after a gap (kept frames it did not take between): what it took
        // before goes to its own ring, and a new range begins — if the shared ring, which
        // lets go of everything when no route takes from it, still has this one.
        self.detach(log);
        match log.find(frame.0, None) {
            Some(i) => {
                let key = log.register(log.ends[i]);
                self.taken = Some(Taken {
                    key,
                    after: frame.0.saturating_sub(1),
                    upto: frame.0,
                    at: log.gone + i as u64,
                });
            }
            None => self.own.push_copied(frame),
        }
    }

    /// Keeps a frame that is not among the shared broadcasts (a targeted one), which the
    /// driver knows without looking at them.
    pub(crate) fn keep_own(&mut self, frame: &Frame) {
        self.own.push_copied(frame);
    }

    /// After a batch of frames kept: its own ring within its bounds.
    pub(crate) fn settle(&mut self) {
        self.own.settle();
    }

    /// Whether it holds a range of its sender's shared broadcasts (then
    /// [`RouteReplay::read_through`] needs them).
    pub(crate) fn takes_shared(&self) -> bool {
        self.taken.is_some()
    }

    /// Its client has read every frame up to `seq` that the route wrote: those need not be
    /// kept for a resume (see [`Ring::forget_through`]), here or in the shared broadcasts
    /// (which let go of them at their next [`Broadcasts::settle`]).
    pub(crate) fn read_through(&mut self, seq: u64, log: &mut Broadcasts<K>) {
        self.own.forget_through(seq);
        if let Some(t) = &self.taken {
            log.read_through(t.key, t.after, t.upto, seq);
        }
    }

    /// [`RouteReplay::read_through`] for a route that takes nothing from the shared
    /// broadcasts ([`RouteReplay::takes_shared`]).
    pub(crate) fn read_through_own(&mut self, seq: u64) {
        debug_assert!(self.taken.is_none());
        self.own.forget_through(seq);
    }

    /// The seq of the newest frame it keeps of its own (call [`RouteReplay::detach`] first to
    /// count the shared ones).
    pub(crate) fn newest(&self) -> Option<u64> {
        self.own.newest()
    }

    /// The route's connection is lost (or the route ends): what it took from the shared ring
    /// is copied into its own, and it takes from the shared ring no more until it writes again.
    pub(crate) fn detach(&mut self, log: &mut Broadcasts<K>) {
        if let Some(t) = self.taken.take() {
            let (frames, lost, forgotten) = log.range(t.after, t.upto);
            log.unregister(t.key);
            self.own.absorb(frames, lost, forgotten);
        }
    }

    /// Everything it wrote is acknowledged: it keeps nothing.
    pub(crate) fn clear(&mut self, log: &mut Broadcasts<K>) {
        if let Some(t) = self.taken.take() {
            log.unregister(t.key);
        }
        self.own.clear();
    }

    /// The frames newer than `seen` and what of them was lost, as [`Ring::after`]; call
    /// [`RouteReplay::detach`] first.
    pub(crate) fn after(&self, seen: u64) -> (Bytes, Option<Lost>) {
        debug_assert!(self.taken.is_none(), "detach before replaying");
        self.own.after(seen)
    }
}

/// Write marks a route keeps at most; past that the oldest go (frames are then let go a
/// little later, never sooner).
const MARKS: usize = 1024;
/// The stream bytes one mark stands for at most. A client grants credit every eighth of its
/// window (32 KiB), so finer marks would let nothing go sooner; a mark per write of small
/// targeted signals was hundreds per route, and 2 500 routes on a 50→50 session.
const MARK_SPAN: u64 = 4096;

/// How far a route's client has read its current stream, in frames: where the route's writes
/// ended (one mark for the writes of up to [`MARK_SPAN`] bytes) and the seq of the newest frame
/// written by then. Once the stream says the client has read to a mark, it has every frame of
/// the route up to that mark's seq ([`RouteReplay::read_through`]).
#[derive(Debug, Default)]
pub(crate) struct ReadMarks {
    /// Bytes written to the current stream (with its header).
    written: u64,
    marks: VecDeque<(u64, u64)>,
    /// Where the newest mark began: writes within [`MARK_SPAN`] of it move that mark instead
    /// of adding one.
    mark_from: u64,
    /// Every frame up to this seq has been read, and nobody has taken that news yet.
    read: Option<u64>,
}

impl ReadMarks {
    /// A new stream, which starts with a header of `header` bytes.
    pub(crate) fn restart(&mut self, header: usize) {
        self.written = header as u64;
        self.marks.clear();
        self.mark_from = 0;
    }

    /// A write of `bytes`, frames up to `newest`, after which the stream says its client has
    /// read at least `read` bytes of it (`None`: it does not say, and marks are of no use).
    pub(crate) fn wrote(&mut self, bytes: usize, newest: u64, read: Option<u64>) {
        self.written += bytes as u64;
        let Some(read) = read else {
            return;
        };
        match self.marks.back_mut() {
            // Moved later: its frames are let go when the client has read this far.
            Some(back) if self.written - self.mark_from < MARK_SPAN => {
                *back = (self.written, newest);
            }
            _ => {
                if self.marks.len() == MARKS {
                    self.marks.pop_front();
                }
                self.mark_from = self.written;
                self.marks.push_back((self.written, newest));
            }
        }
        while let Some(&(end, seq)) = self.marks.front()
            && end <= read
        {
            self.read = Some(seq);
            self.marks.pop_front();
        }
    }

    /// The seq up to which the client has read everything, if that is news.
    pub(crate) fn take_read(&mut self) -> Option<u64> {
        self.read.take()
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

    /// What a ring's frames pin: each buffer a copy is in, whole and once, the frame's own
    /// bytes otherwise, and `ENTRY_OVERHEAD` for each. Also checks that the ring holds no
    /// buffer but those and the one it fills, that every copy lies within what its buffer
    /// holds, and, in a ring filled by [`Ring::push_copied`] (`copied`), that every small
    /// frame is a copy.
    fn pinned(ring: &Ring<&Limit>, copied: bool) -> usize {
        let mut pinned = 0;
        let mut counted = Vec::new();
        for e in &ring.frames {
            pinned += ENTRY_OVERHEAD;
            match &e.kept {
                Kept::Copy { chunk, at, len } => {
                    let c = ring
                        .chunks
                        .iter()
                        .find(|c| c.id == *chunk)
                        .expect("a copy's buffer is kept");
                    assert!((*at + *len) as usize <= c.buf.len());
                    if !counted.contains(chunk) {
                        counted.push(*chunk);
                        pinned += c.buf.capacity();
                    }
                }
                Kept::Frame(f) => {
                    assert!(
                        !copied || f.is_empty() || f.len() >= COPY_BELOW,
                        "a small frame kept as it was"
                    );
                    pinned += f.len();
                }
            }
        }
        // The buffer being filled, when no kept frame is in it yet.
        if ring.filling
            && let Some(last) = ring.chunks.back()
            && !counted.contains(&last.id)
        {
            counted.push(last.id);
            pinned += last.buf.capacity();
        }
        assert_eq!(counted.len(), ring.chunks.len(), "a buffer no frame is in");
        pinned
    }

    #[test]
    fn a_route_keeps_small_frames_as_copies_and_is_charged_the_buffers_they_share() {
        let budget = Limit::new(1 << 30);
        let mut ring = Ring::new(&budget);
        let frames: Vec<Frame> = (1..=2000).map(|seq| frame(seq, 100)).collect();
        for f in &frames {
            ring.push_copied(f);
            ring.settle();
        }
        // The sender's frames are not held: each could be freed as soon as it was written.
        assert!(frames.iter().all(|f| f.1.is_unique()));
        // A large frame is kept as it is, and so is an empty one (no address in a buffer).
        let large = frame(2001, 4096);
        ring.push_copied(&large);
        assert!(!large.1.is_unique());
        ring.push_copied(&(2002, Bytes::new()));
        assert_eq!(pinned(&ring, true), ring.held);
        // What a resume replays is byte for byte what was written.
        let (replay, lost) = ring.after(1500);
        assert_eq!(seqs(&replay).last(), Some(&2001));
        let mut expected = BytesMut::new();
        for f in frames[1500..].iter().chain([&large]) {
            expected.extend_from_slice(&f.1);
        }
        assert_eq!(replay, expected.freeze());
        assert_eq!(lost, None);
        // Charged what the copies pin (their buffers, whole), and all of it given back when
        // the ring ends.
        ring.settle();
        assert_eq!(pinned(&ring, true), ring.held);
        assert!(budget.used.get() >= ring.held);
        drop(ring);
        assert_eq!(budget.used.get(), 0);
        // A budget too small for the buffers' slack: nothing kept, nothing charged.
        let tight = Limit::new(CHUNK_MIN);
        let mut ring = Ring::new(&tight);
        ring.push_copied(&frame(1, 100));
        ring.settle();
        assert_eq!((ring.len(), ring.held, tight.used.get()), (0, 0, 0));
        assert_eq!(ring.after(0).1, Some((1, 1, 1)));
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
            frames in proptest::collection::vec(
                (1u64..4, prop_oneof![1usize..300, 1usize..20_000]),
                1..300,
            ),
            batch in 1usize..16,
            limit in 0usize..400_000,
            seen_at in 0usize..300,
            copied in any::<bool>(),
        ) {
            let budget = Limit::new(limit);
            let mut ring = Ring::new(&budget);
            let mut seq = 0;
            let mut written = Vec::new();
            for (k, (gap, len)) in frames.iter().enumerate() {
                seq += gap;
                written.push(seq);
                if copied {
                    ring.push_copied(&frame(seq, *len));
                } else {
                    ring.push(frame(seq, *len));
                }
                if k % batch == batch - 1 {
                    ring.settle();
                    prop_assert!(budget.used.get() <= limit);
                    prop_assert!(ring.bytes() <= REPLAY_BYTES);
                    prop_assert_eq!(pinned(&ring, copied), ring.held);
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

    #[test]
    fn a_slow_route_holds_the_shared_broadcasts_only_until_it_catches_up() {
        let budget = Limit::new(usize::MAX / 4);
        let mut log = Broadcasts::new(&budget);
        let (mut fast, mut slow) = (RouteReplay::new(&budget), RouteReplay::new(&budget));
        let frames: Vec<Frame> = (1..=300).map(|seq| frame(seq, 8192)).collect();
        // Both take the first; then the sender bursts 2.4 MB, which only the fast one takes.
        log.push(frames[0].clone());
        fast.keep(&frames[0], &mut log);
        slow.keep(&frames[0], &mut log);
        for f in &frames[1..] {
            log.push(f.clone());
            fast.keep(f, &mut log);
            log.settle();
        }
        // The slow one has written nothing since: everything after its frame is kept for it.
        assert_eq!(log.bytes(), 300 * 8192);
        // It catches up, and the sender sends no more broadcasts: the shared ring is back
        // within its bound without waiting for another push.
        for f in &frames[1..] {
            slow.keep(f, &mut log);
        }
        log.settle();
        assert!(log.bytes() <= REPLAY_BYTES, "{}", log.bytes());
        // What each route wrote last is still there for it.
        slow.detach(&mut log);
        let (replay, lost) = slow.after(290);
        assert_eq!(seqs(&replay), (291..=300).collect::<Vec<_>>());
        assert_eq!(lost, None);
        fast.clear(&mut log);
        slow.clear(&mut log);
        drop(log);
        assert_eq!(budget.used.get(), 0);
    }

    #[test]
    fn what_every_client_has_read_is_let_go_and_a_resume_before_it_is_told_it_was_lost() {
        let budget = Limit::new(usize::MAX / 4);
        let mut log = Broadcasts::new(&budget);
        let (mut a, mut b) = (RouteReplay::new(&budget), RouteReplay::new(&budget));
        // 100 broadcasts of 1 KiB to both routes, and 100 frames of 100 bytes to `a` alone:
        // all within `REPLAY_BYTES`, so nothing goes by the bound.
        for seq in 1..=200 {
            if seq % 2 == 1 {
                let f = frame(seq, 1024);
                log.push(f.clone());
                a.keep(&f, &mut log);
                b.keep(&f, &mut log);
            } else {
                a.keep_own(&frame(seq, 100));
            }
        }
        a.settle();
        b.settle();
        assert_eq!(log.bytes(), 100 * 1024);
        assert_eq!(a.own.len(), 100);
        // `a`'s client read up to 150: its own frames up to there go; the broadcasts stay,
        // `b` still needs them.
        a.read_through(150, &mut log);
        assert_eq!(a.own.len(), 25);
        assert_eq!(log.bytes(), 100 * 1024);
        // `b`'s client read up to 101: the broadcasts both have read (1..=101) go.
        b.read_through(101, &mut log);
        assert_eq!(log.bytes(), 100 * 1024, "until the next settle");
        log.settle();
        assert_eq!(log.bytes(), 49 * 1024);
        // A resume at what `a`'s client read loses nothing.
        a.detach(&mut log);
        let (replay, lost) = a.after(150);
        assert_eq!(seqs(&replay), (151..=200).collect::<Vec<_>>());
        assert_eq!(lost, None);
        // One from before it (a client that broke the window's bound) gets what is still
        // kept (the broadcasts, which `b` has not read) and is told what is gone (`a`'s own).
        let (replay, lost) = a.after(140);
        let kept: Vec<u64> = (141..150).step_by(2).chain(151..=200).collect();
        assert_eq!(seqs(&replay), kept);
        assert_eq!(lost, Some((142, 150, 5)));
        a.clear(&mut log);
        b.clear(&mut log);
        drop(log);
        assert_eq!(budget.used.get(), 0);
    }

    #[test]
    fn a_resume_from_before_more_frames_than_are_remembered_is_told_all_of_them() {
        let budget = Limit::new(usize::MAX / 4);
        let mut ring = Ring::new(&budget);
        let n = EVICTED_KEPT as u64 + 100;
        for seq in 1..=n + 10 {
            ring.push_copied(&frame(seq, 20));
        }
        ring.settle();
        // A client that said it had read them all (its window broke the rule).
        ring.forget_through(n);
        // From the start: every one, exactly.
        let (replay, lost) = ring.after(0);
        assert_eq!(seqs(&replay), (n + 1..=n + 10).collect::<Vec<_>>());
        assert_eq!(lost, Some((1, n, n)));
        // From among the oldest: all that are not remembered one by one counted (too many,
        // never too few), from just after what it has.
        let (_, lost) = ring.after(50);
        assert_eq!(lost, Some((51, n, n)));
        // From among those remembered: exact.
        let (_, lost) = ring.after(n - 10);
        assert_eq!(lost, Some((n - 9, n, 10)));
    }

    #[test]
    fn read_marks_claim_no_frame_past_what_was_read_and_stay_few() {
        let mut marks = ReadMarks::default();
        marks.restart(10);
        // 10 000 writes of 80 bytes (frame `seq` ends at 10 + 80 * seq), nothing read.
        let end = |seq: u64| 10 + 80 * seq;
        for seq in 1..=10_000 {
            marks.wrote(80, seq, Some(0));
        }
        assert_eq!(marks.take_read(), None);
        // One mark per `MARK_SPAN` bytes, not per write.
        assert!(
            marks.marks.len() <= (800_000 / MARK_SPAN + 1) as usize,
            "{}",
            marks.marks.len()
        );
        // The client has read 500 000 bytes: every frame it names ended by then, and it is at
        // most a mark's span short of the newest that did.
        marks.wrote(80, 10_001, Some(500_000));
        let seq = marks.take_read().expect("a read to take");
        assert!(end(seq) <= 500_000, "frame {seq} was not read");
        assert!(
            end(seq) + MARK_SPAN + 80 > 500_000,
            "frame {seq} is far behind the read"
        );
        assert_eq!(marks.take_read(), None, "taken once");
        // A new stream forgets the old one's marks.
        marks.restart(10);
        marks.wrote(80, 10_002, Some(50));
        assert_eq!(
            marks.take_read(),
            None,
            "its write ends at 90, not read yet"
        );
        // The next writes move that mark on (let go a little later, never sooner).
        marks.wrote(80, 10_003, Some(90));
        assert_eq!(marks.take_read(), None);
        marks.wrote(80, 10_004, Some(250));
        assert_eq!(marks.take_read(), Some(10_004));
        // A stream that does not say what was read keeps no marks.
        let mut silent = ReadMarks::default();
        silent.wrote(80, 1, None);
        assert!(silent.marks.is_empty());
    }

    /// What a model route does in [`routes_sharing_broadcasts`].
    #[derive(Debug, Clone)]
    enum Step {
        /// The sender broadcasts a frame of this many bytes.
        Broadcast(usize),
        /// The sender sends a frame of this many bytes to route `r` alone.
        To(usize, usize),
        /// Route `r` takes up to `n` frames from its queue and keeps them.
        Take(usize, usize),
        /// Route `r` drops the next frame in its queue unwritten (a gap).
        Skip(usize),
        /// Route `r`'s connection is lost: it detaches, and a client resumes from any seq.
        Lose(usize, usize),
        /// Route `r`'s stream is acknowledged whole: it keeps nothing.
        Clear(usize),
        /// Route `r`'s client has read everything it wrote up to one of the frames it wrote.
        Read(usize, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (1usize..60_000).prop_map(Step::Broadcast),
            2 => (0usize..3, prop_oneof![1usize..300, 1usize..20_000])
                .prop_map(|(r, n)| Step::To(r, n)),
            6 => (0usize..3, 1usize..40).prop_map(|(r, n)| Step::Take(r, n)),
            1 => (0usize..3).prop_map(Step::Skip),
            1 => (0usize..3, 0usize..10_000).prop_map(|(r, at)| Step::Lose(r, at)),
            1 => (0usize..3).prop_map(Step::Clear),
            2 => (0usize..3, 0usize..10_000).prop_map(|(r, at)| Step::Read(r, at)),
        ]
    }

    proptest! {
        /// Three routes of one sender take broadcasts (kept once, shared) and frames of their
        /// own, at their own pace, with gaps, losses, acknowledgements and their clients'
        /// reads between. Whenever a route's connection is lost, a client that has any seq it
        /// wrote (at least what it read) gets exactly the frames it wrote after that seq —
        /// replayed in order or counted lost, none it did not write, none twice — and with
        /// budget to spare, nothing within `REPLAY_BYTES` of the newest it wrote is lost. The
        /// budget is never exceeded and is all given back.
        #[test]
        fn routes_sharing_broadcasts_replay_what_each_wrote(
            steps in proptest::collection::vec(step(), 1..300),
            limit in prop_oneof![Just(usize::MAX / 4), 0usize..400_000],
        ) {
            let budget = Limit::new(limit);
            let mut log = Broadcasts::new(&budget);
            let mut routes: Vec<RouteReplay<&Limit>> =
                (0..3).map(|_| RouteReplay::new(&budget)).collect();
            let mut queues: Vec<VecDeque<Frame>> = vec![VecDeque::new(); 3];
            // What each route wrote since it last kept nothing: (seq, bytes).
            let mut written: Vec<Vec<(u64, usize)>> = vec![Vec::new(); 3];
            // What each route's client has read (every frame up to this seq).
            let mut read = [0u64; 3];
            let mut seq = 0;
            for step in steps {
                match step {
                    Step::Broadcast(len) => {
                        seq += 1;
                        let f = frame(seq, len);
                        log.push(f.clone());
                        for q in &mut queues {
                            q.push_back(f.clone());
                        }
                    }
                    Step::To(r, len) => {
                        seq += 1;
                        queues[r].push_back(frame(seq, len));
                    }
                    Step::Take(r, n) => {
                        for _ in 0..n {
                            let Some(f) = queues[r].pop_front() else { break };
                            written[r].push((f.0, f.1.len()));
                            routes[r].keep(&f, &mut log);
                        }
                        routes[r].settle();
                        prop_assert_eq!(pinned(&routes[r].own, false), routes[r].own.held);
                    }
                    Step::Skip(r) => {
                        queues[r].pop_front();
                    }
                    Step::Lose(r, at) => {
                        routes[r].detach(&mut log);
                        let w = &written[r];
                        let seen = if w.is_empty() { 0 } else { w[at % w.len()].0 };
                        // A client has at least what it read — unless it broke the window's
                        // rule (one resume in four here): then what it lacks and was let go
                        // must be counted lost.
                        let seen = if at % 4 == 0 { seen } else { seen.max(read[r]) };
                        let (replay, lost) = routes[r].after(seen);
                        let replayed = seqs(&replay);
                        let after: Vec<u64> =
                            w.iter().map(|x| x.0).filter(|&s| s > seen).collect();
                        // In order, none twice, only what it wrote after `seen`.
                        prop_assert!(replayed.windows(2).all(|p| p[0] < p[1]));
                        prop_assert!(replayed.iter().all(|s| after.contains(s)));
                        let missing: Vec<u64> =
                            after.iter().copied().filter(|s| !replayed.contains(s)).collect();
                        match lost {
                            None => prop_assert!(missing.is_empty(), "silently lost {missing:?}"),
                            Some((first, last, count))
                                if routes[r].own.forgotten.is_none() =>
                            {
                                prop_assert_eq!(count as usize, missing.len());
                                prop_assert_eq!(Some(&first), missing.first());
                                prop_assert_eq!(Some(&last), missing.last());
                            }
                            // Past the seqs it remembers one by one: too many, never too few.
                            Some((first, last, count)) => {
                                prop_assert!(count as usize >= missing.len());
                                prop_assert!(missing.iter().all(|&s| first <= s && s <= last));
                            }
                        }
                        if limit == usize::MAX / 4 {
                            // The newest REPLAY_BYTES it wrote are all there.
                            let mut bytes = 0;
                            for &(s, len) in w.iter().rev() {
                                bytes += len;
                                if bytes > REPLAY_BYTES || s <= seen.max(read[r]) {
                                    break;
                                }
                                prop_assert!(replayed.contains(&s), "{s} within the bound was lost");
                            }
                        }
                    }
                    Step::Clear(r) => {
                        routes[r].clear(&mut log);
                        written[r].clear();
                    }
                    Step::Read(r, at) => {
                        let w = &written[r];
                        if !w.is_empty() {
                            let s = w[at % w.len()].0;
                            read[r] = read[r].max(s);
                            routes[r].read_through(s, &mut log);
                            log.settle();
                            prop_assert_eq!(pinned(&routes[r].own, false), routes[r].own.held);
                        }
                    }
                }
                prop_assert!(budget.used.get() <= limit);
            }
            drop(routes);
            drop(log);
            prop_assert_eq!(budget.used.get(), 0);
        }
    }
}
