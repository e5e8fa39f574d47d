//! Fan-out: getting one sender's signals onto each receiver's delivery stream for that sender.
//!
//! A [`Fanout`] belongs to one sender (a connection, or the relay itself for REST signals)
//! and is used only by that sender's task, so it needs no lock. For each receiver it has a
//! *route*: a bounded queue and a task that owns the QUIC stream toward that receiver.
//!
//! - The signal is encoded once; every route gets a clone of the same `Bytes`. A client's
//!   broadcasts from one chunk of its stream go to each route together ([`fan_out_held`]),
//!   as one shared run ([`Queued::Run`]): one backlog update, route lookup, queue entry and
//!   reference count per receiver for the run, not per signal. The run's small frames are
//!   merged once into one buffer ([`Run`]) that every route's stream writes and holds until
//!   its client acknowledges it: one copy for the run, not one per receiver.
//! - A route's task takes everything already queued and writes it as one chunk: quinn keeps
//!   one buffer segment per write and scans them when it builds packets, so merging small
//!   frames is the biggest single saving on the write path. The merged buffer is made for
//!   the write ([`Chunker`]), so what quinn holds pins those bytes and no more.
//! - The stream opens lazily, on the first signal, and is finished after `stream_idle` without
//!   signals. A new stream for the same pair opens only after the old one is fully
//!   acknowledged, so order holds across streams, and a receiver holds streams only for
//!   senders that are active — never one per member of a large session.
//! - What waits for a receiver is bounded, in bytes across all its senders and in signals per
//!   sender; past either bound, or when its stream takes nothing for `write_timeout`, the
//!   receiver is disconnected as a slow consumer. The sender never waits for a receiver —
//!   only, when its session's memory budget is spent, for the budget ([`wait_for_room`]).
//! - Each route keeps the frames it wrote that its client may not have read yet: up to twice
//!   a client's stream window of the newest, fewer once the stream's flow-control credit says
//!   the client read them ([`ReadMarks`]). A sender's broadcasts are kept once for
//!   all its routes, each route knowing which it took ([`crate::engine::replay`]). When the
//!   receiver's connection is lost, the route keeps its queue and waits; when the client
//!   resumes, it replays the kept frames newer than what the client says it has, then goes on.
//!   While the receiver is away, what does not fit its queue is counted and reported to it
//!   (`Missed`) when it comes back — never dropped silently.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use signalbox_proto::{CloseCode, ConnectionId, DeliveryHeader, Target, codec};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::budget::{Budgets, ENTRY_OVERHEAD};
use crate::engine::replay::{Broadcasts, Frame, ReadMarks, RouteReplay, cost};
use crate::engine::stalls::{Observed, SCAN, StallWatch};
use crate::registry::{Member, Roster, Session, lock};
use crate::transport::link::{LinkError, LinkSend};
use crate::transport::queue::{self, TrySendError, Weighted};

/// The most bytes handed to one write.
const MAX_BATCH: usize = 64 * 1024;
/// Frames at least this large go to the stream as they are (a write of several chunks); the
/// smaller ones queued together are merged into one buffer first, which costs a copy but
/// saves quinn one chunk each. At 8 KiB the copy was about 5 % of the relay's time.
const COPY_BELOW: usize = 1024;

/// Bounds and timings of delivery, from the relay's configuration.
#[derive(Debug, Clone)]
pub(crate) struct DeliverySettings {
    pub(crate) queue_bytes: usize,
    pub(crate) queue_signals: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) stream_idle: Duration,
}

/// A sender's broadcasts, shared by the sender (which adds them) and its routes (which take
/// from them, and copy what they took when their receiver is away).
struct SharedBroadcasts {
    log: std::sync::Mutex<Broadcasts<Budgets>>,
    /// The seq of the newest broadcast added (0: none yet). It is set before the broadcast is
    /// queued to any route, so a route that took only later seqs knows without the lock that
    /// none of them is a broadcast: a sender that only targets never shares that lock among
    /// its routes.
    newest: std::sync::atomic::AtomicU64,
}

struct Route {
    tx: queue::Sender<Queued>,
    task: JoinHandle<()>,
}

/// What waits in a route's queue.
#[derive(Debug)]
pub(crate) enum Queued {
    /// One frame, the route's own.
    One(Frame),
    /// A run of broadcasts, shared by every route it went to ([`Fanout::flush`]).
    Run(Arc<Run>),
}

/// A run of broadcasts queued to several routes at once.
#[derive(Debug)]
pub(crate) struct Run {
    frames: Box<[Frame]>,
    /// The run as the chunks of a write (see [`Chunker`]), made once for all its routes when
    /// it goes to more than one: its small frames are copied into one buffer that every
    /// route's stream then holds, instead of one copy per route. Empty for a run to a single
    /// route, which copies them itself as it does its own frames.
    chunks: Box<[Bytes]>,
}

impl Run {
    /// `frames` as a run for `routes` routes.
    fn new(frames: Box<[Frame]>, routes: usize) -> Self {
        let mut chunks = Vec::new();
        if routes > 1 {
            let small = small_bytes(frames.iter());
            let mut buf = BytesMut::new();
            let mut chunker = Chunker::new(&mut buf, &mut chunks, small);
            // Exactly the run's bytes: its buffer is not shared with later writes.
            chunker.least = 0;
            for (_, frame) in frames.iter() {
                chunker.push_shared(frame);
            }
            chunker.finish();
        }
        Self {
            frames,
            chunks: chunks.into_boxed_slice(),
        }
    }
}

impl Queued {
    fn frames(&self) -> &[Frame] {
        match self {
            Queued::One(frame) => std::slice::from_ref(frame),
            Queued::Run(run) => &run.frames,
        }
    }

    /// The chunks made for it already, if it is a run merged for several routes.
    fn merged(&self) -> Option<&[Bytes]> {
        match self {
            Queued::Run(run) if !run.chunks.is_empty() => Some(&run.chunks),
            _ => None,
        }
    }
}

/// The bytes of the frames a [`Chunker`] may copy: those under [`COPY_BELOW`].
fn small_bytes<'a>(frames: impl Iterator<Item = &'a Frame>) -> usize {
    frames.map(|f| f.1.len()).filter(|&n| n < COPY_BELOW).sum()
}

/// Every frame of `items`, in order.
fn frames_of(items: &[Queued]) -> impl DoubleEndedIterator<Item = &Frame> {
    items.iter().flat_map(Queued::frames)
}

impl Weighted for Queued {
    /// A run counts as its signals towards the queue's bound.
    fn weight(&self) -> usize {
        self.frames().len()
    }
}

/// One sender's routes to its receivers.
pub(crate) struct Fanout {
    from: Option<ConnectionId>,
    header: Bytes,
    /// By receiver: looked up for every delivery (ids are the relay's own, random: a fast
    /// hash is safe).
    routes: rustc_hash::FxHashMap<ConnectionId, Route>,
    settings: Arc<DeliverySettings>,
    tracker: TaskTracker,
    budgets: Budgets,
    /// Its broadcasts, kept once for all its routes' replay.
    broadcasts: Arc<SharedBroadcasts>,
    /// Whether its sender waits while the budgets are spent ([`wait_for_room`]) rather than
    /// have a receiver refused.
    waits: bool,
    /// Broadcasts taken and charged but not queued yet ([`fan_out_held`]), their bytes, and
    /// the roster they were taken in.
    run: Vec<Frame>,
    run_bytes: usize,
    run_roster: Option<Arc<Roster>>,
}

/// The most broadcasts held for one [`Fanout::flush`]; it also flushes once they hold
/// [`MAX_BATCH`] bytes, so a route's write takes a run whole.
const MAX_RUN: usize = 128;

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Fanout {
    /// Routes for the sender `from` (`None`: the relay itself) in a session whose frames are
    /// charged to `budgets`.
    pub(crate) fn new(
        from: Option<ConnectionId>,
        settings: Arc<DeliverySettings>,
        tracker: TaskTracker,
        budgets: Budgets,
    ) -> Self {
        let header = codec::frame(&DeliveryHeader { from }, 64)
            .map(BytesMut::freeze)
            .unwrap_or_default();
        Self {
            from,
            header,
            routes: rustc_hash::FxHashMap::default(),
            settings,
            tracker,
            broadcasts: Arc::new(SharedBroadcasts {
                log: std::sync::Mutex::new(Broadcasts::new(budgets.clone())),
                newest: std::sync::atomic::AtomicU64::new(0),
            }),
            budgets,
            waits: false,
            run: Vec::new(),
            run_bytes: 0,
            run_roster: None,
        }
    }

    /// For a sender that stops reading while the budgets are spent ([`wait_for_room`]): its
    /// signals are then charged past them instead of refusing the receivers behind.
    pub(crate) fn waiting(mut self) -> Self {
        self.waits = true;
        self
    }

    /// Queues an encoded signal frame (with its seq) for `to`. Never waits: a receiver that
    /// cannot keep up is disconnected instead — or, while it is away, told later what it
    /// missed. `charge`: how the frame meets the budgets (see [`fan_out`]). Returns whether
    /// the frame's charge is settled: it was queued, or given back with its receiver's whole
    /// queue (see [`Fanout::take_back`]); if not, a frame charged with its signal is the
    /// caller's to give back.
    fn deliver(&mut self, to: &Arc<Member>, seq: u64, frame: Bytes, charge: Charge) -> bool {
        let cost = frame.len() + ENTRY_OVERHEAD;
        let Some(backlog) = add_backlog(to, cost) else {
            return false;
        };
        if backlog + cost > self.settings.queue_bytes {
            if self.take_back(to, cost, charge, false) {
                return true;
            }
            overflow(to, self.from, seq, "slow consumer: too much data waiting");
            return false;
        }
        match charge {
            Charge::Each { behind } if !self.budgets.queue(cost, backlog, behind) => {
                if !self.take_back(to, cost, charge, false) {
                    overflow(to, self.from, seq, OVER_BUDGET);
                    release(to, &self.budgets);
                }
                return false;
            }
            Charge::Past => self.budgets.charge(cost),
            Charge::Each { .. } | Charge::Done => {}
        }
        // From here on the frame is charged to the budgets (by the caller, or just above).
        let mut item = Queued::One((seq, frame));
        let mut prev = None;
        for attempt in 0..2 {
            let route = match self.routes.entry(to.id()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let (tx, rx) = queue::queue(self.settings.queue_signals);
                    let task = self.tracker.spawn(run_route(
                        to.clone(),
                        self.from,
                        self.header.clone(),
                        rx,
                        prev.take(),
                        self.settings.clone(),
                        self.budgets.clone(),
                        self.broadcasts.clone(),
                    ));
                    e.insert(Route { tx, task })
                }
            };
            match route.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Full(_)) => {
                    if self.take_back(to, cost, charge, true) {
                        return true;
                    }
                    overflow(
                        to,
                        self.from,
                        seq,
                        "slow consumer: too many signals waiting",
                    );
                    return false;
                }
                Err(TrySendError::Closed(f)) => {
                    // The route finished its idle stream (or the receiver is gone). Start a
                    // new one that waits until the old stream is fully acknowledged.
                    let old = self.routes.remove(&to.id());
                    if to.is_closing() || attempt > 0 {
                        break;
                    }
                    prev = old.map(|r| r.task);
                    item = f;
                }
            }
        }
        self.take_back(to, cost, charge, true)
    }

    /// A frame taken for `to` is not queued after all: off its backlog again. `charged`:
    /// whether it was charged to the budgets by then (by [`Fanout::deliver`], or with its
    /// signal). If the receiver's queue left the budgets meanwhile ([`release`], whose
    /// snapshot counted this frame too), they got its cost back already: a frame not charged
    /// yet is charged now to even that out, and the charge is settled (true). Otherwise a
    /// frame charged here is given back here, and one charged with its signal (`Done`) is
    /// left to the caller (false).
    fn take_back(&self, to: &Member, cost: usize, charge: Charge, charged: bool) -> bool {
        let done = matches!(charge, Charge::Done);
        if to.receiver.queued_bytes.fetch_sub(cost, Ordering::Relaxed) & RELEASED != 0 {
            if !charged && !done {
                self.budgets.charge(cost);
            }
            return true;
        }
        if charged && !done {
            self.budgets.unqueue(cost);
        }
        false
    }

    /// Queues the broadcasts held by [`fan_out_held`] to their receivers: each receiver's
    /// backlog, route lookup and queue lock once for them all, not once per signal.
    pub(crate) fn flush(&mut self) {
        let Some(roster) = self.run_roster.take() else {
            return;
        };
        self.run_bytes = 0;
        let Some(&(newest, _)) = self.run.last() else {
            return;
        };
        {
            let mut log = lock(&self.broadcasts.log);
            for frame in &self.run {
                log.push(frame.clone());
            }
        }
        self.broadcasts.newest.store(newest, Ordering::Relaxed);
        let run_cost: usize = self.run.iter().map(cost).sum();
        // Made once for the run and shared by every route (the held `Vec` keeps its room).
        let run = Arc::new(Run::new(
            self.run.drain(..).collect(),
            roster.broadcast.len(),
        ));
        let mut refund = 0;
        for m in &roster.broadcast {
            refund += self.deliver_run(m, &run, run_cost);
        }
        if refund > 0 {
            self.budgets.unqueue(refund);
        }
    }

    /// Queues a run of broadcasts (charged with their signals) for `to`; returns the bytes
    /// of those not delivered, for the caller to give back. Whole or frame by frame: where
    /// the run does not fit at once (a backlog or queue near its bound, a route to start),
    /// each frame goes through [`Fanout::deliver`], with its rules.
    fn deliver_run(&mut self, to: &Arc<Member>, run: &Arc<Run>, run_cost: usize) -> usize {
        let Some(backlog) = add_backlog(to, run_cost) else {
            return run_cost; // not delivered: the caller gives it back
        };
        if backlog + run_cost <= self.settings.queue_bytes
            && let Some(route) = self.routes.get(&to.id())
            && route.tx.try_send(Queued::Run(run.clone())).is_ok()
        {
            return 0;
        }
        if self.take_back(to, run_cost, Charge::Done, true) {
            return 0; // its queue left the budgets meanwhile, this run's cost with it
        }
        let mut refund = 0;
        for frame in run.frames.iter() {
            if !self.deliver(to, frame.0, frame.1.clone(), Charge::Done) {
                refund += cost(frame);
            }
        }
        refund
    }

    /// Lets every route end once it has written what it holds (its queue closes); returns
    /// their tasks.
    pub(crate) fn close(mut self) -> Vec<JoinHandle<()>> {
        self.flush();
        self.routes.into_values().map(|r| r.task).collect()
    }

    /// Forgets routes whose task has ended (receiver gone, or stream finished when idle).
    pub(crate) fn prune(&mut self) {
        self.routes.retain(|_, r| !r.task.is_finished());
    }
}

/// Adds `cost` to `to`'s backlog and returns the backlog before it; `None` (nothing added)
/// when `to` is closing, or its queue was just closed for the budget.
fn add_backlog(to: &Member, cost: usize) -> Option<usize> {
    if to.is_closing() {
        return None;
    }
    let backlog = to.receiver.queued_bytes.fetch_add(cost, Ordering::Relaxed);
    if backlog & RELEASED != 0 {
        to.receiver.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
        return None;
    }
    Some(backlog)
}

/// A receiver's queue is full: a slow consumer is disconnected; one that is away (its
/// connection lost, waiting to resume) has the signal counted as missed instead.
fn overflow(to: &Member, from: Option<ConnectionId>, seq: u64, why: &str) {
    if to.is_away() {
        to.add_missed(from, seq, seq, 1);
    } else {
        tracing::warn!(conn = %to.id(), "{why}; disconnecting");
        to.close(CloseCode::SlowConsumer, why);
    }
}

/// Why a receiver is closed when the budgets are spent.
const OVER_BUDGET: &str =
    "slow consumer: the relay's memory budget is spent and this receiver is behind";

/// A receiver closed for the budgets: its queue leaves them now, not when its routes have
/// wound down (otherwise the receivers that keep up would be refused meanwhile).
fn release(to: &Member, budgets: &Budgets) {
    if to.is_closing() {
        let queued = to
            .receiver
            .queued_bytes
            .fetch_or(RELEASED, Ordering::Relaxed);
        if queued & RELEASED == 0 {
            budgets.unqueue(queued);
        }
    }
}

/// How a frame meets the memory budgets.
#[derive(Debug, Clone, Copy)]
enum Charge {
    /// Already charged, with the signal's other deliveries (there was room for all).
    Done,
    /// Charged one by one: the budgets may be spent, and a receiver at least as far behind
    /// as the average of the `behind` receivers with a backlog is refused. For senders that
    /// cannot wait (REST, other nodes).
    Each { behind: usize },
    /// Charged one by one past the session's spent budget: the sender waits after this
    /// signal ([`wait_for_room`]), so it overshoots by one signal at most.
    Past,
}

/// While its session's queue budget is spent, a client's sender stops reading its send stream
/// here (QUIC flow control then slows the client) until there is room; the signal that found
/// the budget spent was charged past it ([`Charge::Past`]), so it overshoots by one signal's
/// deliveries per sender at most. A receiver that reads is not closed because a sender
/// outruns it. Meanwhile, see [`Stalls`]: a receiver that has taken nothing for two seconds
/// is closed, and if the budget stays spent for `patience` (the relay's `write_timeout`)
/// the receivers furthest behind are closed even if they trickle, so slow readers cannot
/// hold the session's senders back for good.
///
/// Only the session's budget is waited for. When the relay's budget in all is what is spent,
/// the sender does not wait (another session's receivers are what hold it): its deliveries
/// are charged one by one and refuse the receivers furthest behind ([`Charge::Each`]).
pub(crate) async fn wait_for_room(session: &Session, patience: Duration) {
    let held = &session.budgets.session;
    loop {
        let room = held.room();
        tokio::pin!(room);
        room.as_mut().enable();
        if held.has_room(0) {
            return;
        }
        tokio::select! {
            _ = room => {}
            _ = tokio::time::sleep(SCAN) => session.stalls.scan(session, patience),
        }
    }
}

/// What a session's waiting senders have seen of its receivers' progress while its budget is
/// spent ([`StallWatch`]). One waiting sender scans at a time, every [`SCAN`].
#[derive(Debug, Default)]
pub(crate) struct Stalls(std::sync::Mutex<StallWatch>);

impl Stalls {
    /// Shows the watch the session's receivers now, and closes those it names (see
    /// [`crate::engine::stalls`]).
    fn scan(&self, session: &Session, patience: Duration) {
        let Ok(mut watch) = self.0.try_lock() else {
            return; // another waiting sender is scanning
        };
        let now = Instant::now();
        if !watch.due(now) {
            return;
        }
        let roster = session.roster();
        let observed: Vec<Observed> = roster
            .members
            .values()
            .map(|m| {
                let q = m.receiver.queued_bytes.load(Ordering::Relaxed);
                let backlog = if q & RELEASED == 0 && !m.is_closing() {
                    q
                } else {
                    0
                };
                Observed {
                    id: m.id(),
                    backlog,
                    drains: m.receiver.drains(),
                    credit: if backlog > 0 {
                        m.conn().read_credit()
                    } else {
                        0
                    },
                    away: m.is_away(),
                }
            })
            .collect();
        for id in watch.scan(now, patience, &observed) {
            if let Some(m) = roster.members.get(&id) {
                tracing::warn!(conn = %id, "{OVER_BUDGET}; disconnecting");
                m.close(CloseCode::SlowConsumer, OVER_BUDGET);
                release(m, &session.budgets);
            }
        }
    }
}

/// Queues an encoded signal for its targets in `roster`; returns how many it reached.
/// Targets must already be checked (every one present).
///
/// The budgets are charged once for all its deliveries when they have room for all (the
/// usual case: one atomic add per budget per signal, not per receiver); otherwise one by
/// one, refusing receivers that are furthest behind.
pub(crate) fn fan_out(
    fanout: &mut Fanout,
    roster: &Roster,
    to: &Target,
    seq: u64,
    frame: Bytes,
) -> usize {
    // What was held before goes first: a sender's signals keep their order on every route.
    fanout.flush();
    let len = frame.len();
    let receivers: &[Arc<Member>] = match to {
        Target::All => &roster.broadcast,
        Target::One(id) => match roster.members.get(id) {
            Some(m) => std::slice::from_ref(m),
            None => return 0,
        },
        // Validated: a list names each connection once (`DuplicateTarget` otherwise).
        Target::List(ids) => {
            let mut n = 0;
            let charge = charge_for(fanout, roster, ids.len(), len);
            let mut refund = 0;
            for id in ids {
                if let Some(m) = roster.members.get(id) {
                    n += 1;
                    if !fanout.deliver(m, seq, frame.clone(), charge) {
                        refund += 1;
                    }
                }
            }
            settle(fanout, charge, ids.len() - n + refund, len);
            return n;
        }
    };
    if matches!(to, Target::All) && !receivers.is_empty() {
        lock(&fanout.broadcasts.log).push((seq, frame.clone()));
        fanout.broadcasts.newest.store(seq, Ordering::Relaxed);
    }
    let charge = charge_for(fanout, roster, receivers.len(), len);
    let mut refund = 0;
    // The last receiver gets the frame itself: a targeted signal's frame then has one owner
    // from its encoding to its write, and no reference count is ever made for it.
    if let Some((last, others)) = receivers.split_last() {
        for m in others {
            if !fanout.deliver(m, seq, frame.clone(), charge) {
                refund += 1;
            }
        }
        if !fanout.deliver(last, seq, frame, charge) {
            refund += 1;
        }
    }
    settle(fanout, charge, refund, len);
    receivers.len()
}

/// As [`fan_out`], but a broadcast that the budgets have room for is only charged here, and
/// held to be queued with the sender's next ones by [`Fanout::flush`] — which the caller
/// calls before it waits for anything (for a client's signals, at the end of the chunk they
/// came in), so holding adds no delay. Every other signal, and a broadcast taken in another
/// roster, flushes what is held first; so does a full run ([`MAX_RUN`], [`MAX_BATCH`]).
pub(crate) fn fan_out_held(
    fanout: &mut Fanout,
    roster: &Arc<Roster>,
    to: &Target,
    seq: u64,
    frame: Bytes,
) -> usize {
    let same = match &fanout.run_roster {
        Some(held) => Arc::ptr_eq(held, roster),
        None => true,
    };
    let n = roster.broadcast.len();
    if !matches!(to, Target::All) || !same || n == 0 {
        return fan_out(fanout, roster, to, seq, frame);
    }
    if fanout.run.len() >= MAX_RUN || fanout.run_bytes >= MAX_BATCH {
        fanout.flush();
    }
    if !charge_all(fanout, n, frame.len()) {
        return fan_out(fanout, roster, to, seq, frame);
    }
    if fanout.run_roster.is_none() {
        fanout.run_roster = Some(roster.clone());
    }
    fanout.run_bytes += frame.len();
    fanout.run.push((seq, frame));
    n
}

/// Charges the budgets for `n` deliveries of a frame of `len` bytes if they have room for all
/// of them; false (nothing charged) if not.
fn charge_all(fanout: &Fanout, n: usize, len: usize) -> bool {
    let total = n * (len + ENTRY_OVERHEAD);
    let room = fanout.budgets.has_room(total);
    if room {
        fanout.budgets.charge(total);
    }
    room
}

/// Charges the budgets for `n` deliveries of a frame of `len` bytes at once if they have room.
fn charge_for(fanout: &Fanout, roster: &Roster, n: usize, len: usize) -> Charge {
    if charge_all(fanout, n, len) {
        return Charge::Done;
    }
    let total = n * (len + ENTRY_OVERHEAD);
    if fanout.waits && fanout.budgets.global.has_room(total) {
        // Only the session's budget is spent: the sender waits after this signal.
        return Charge::Past;
    }
    // Rare: count who is behind, once for this signal.
    let behind = roster
        .members
        .values()
        .filter(|m| {
            let q = m.receiver.queued_bytes.load(Ordering::Relaxed);
            q > 0 && q & RELEASED == 0
        })
        .count();
    Charge::Each { behind }
}

/// Gives back what was charged at once for deliveries that did not happen.
fn settle(fanout: &Fanout, charge: Charge, undelivered: usize, len: usize) {
    if let Charge::Done = charge
        && undelivered > 0
    {
        fanout.budgets.unqueue(undelivered * (len + ENTRY_OVERHEAD));
    }
}

/// Set in a receiver's `queued_bytes` once its whole queue has left the budgets at once (it
/// was closed for the budget): its frames then come off its backlog only. One atomic word, so
/// every frame leaves the budgets exactly once — with the queue, or on its own before.
const RELEASED: usize = 1 << (usize::BITS - 1);

/// Frames of `cost` bytes (with their overhead) left a receiver's queue: off its backlog and
/// off the budgets (unless its queue left them already).
fn unqueue(to: &Member, budgets: &Budgets, cost: usize) {
    if to.receiver.queued_bytes.fetch_sub(cost, Ordering::Relaxed) & RELEASED == 0 {
        budgets.unqueue(cost);
    }
}

/// Takes `first` and whatever else is queued (up to [`MAX_BATCH`] bytes) into `chunks` (see
/// [`Chunker`]). The frames leave the queue's charge (at once) and are kept for replay (see
/// [`RouteStream::keep`]) before they are handed to the write: a targeted frame, held by
/// this route alone, then goes to the write as it is, with no reference count made.
fn batch(
    first: Queued,
    rx: &mut queue::Receiver<Queued>,
    buf: &mut BytesMut,
    route: &mut RouteStream<'_>,
    chunks: &mut Vec<Bytes>,
) -> u64 {
    let (mut taken, mut bytes, mut small) = (0, 0, 0);
    let mut next = Some(first);
    route.taking.clear();
    while let Some(item) = next.take() {
        for frame in item.frames() {
            taken += cost(frame);
            bytes += frame.1.len();
        }
        if item.merged().is_none() {
            small += small_bytes(item.frames().iter());
        }
        route.taking.push(item);
        if bytes < MAX_BATCH {
            next = rx.try_recv();
        }
    }
    route.to.receiver.drained();
    unqueue(route.to, route.replay.budgets(), taken);
    route.keep();
    let newest = frames_of(&route.taking).next_back().map_or(0, |f| f.0);
    let mut chunker = Chunker::new(buf, chunks, small);
    for item in route.taking.drain(..) {
        if let Some(chunks) = item.merged() {
            chunker.push_chunks(chunks);
            continue;
        }
        match item {
            Queued::One((_, frame)) => chunker.push(frame),
            Queued::Run(run) => {
                for (_, frame) in run.frames.iter() {
                    chunker.push_shared(frame);
                }
            }
        }
    }
    chunker.finish();
    newest
}

/// Gives back to the bounds what `item` was charged, as it leaves a route that ends.
fn unqueue_item(to: &Member, budgets: &Budgets, item: &Queued) {
    unqueue(to, budgets, item.frames().iter().map(cost).sum());
}

/// The least a [`Chunker`] allocates for merging: a route that writes two or three small
/// signals at a time then makes one buffer for many writes, not one each (an allocation and
/// a shared header per write were 3 % of the relay's time on 50→50 targeted 64 B), and pins
/// no more than this per route in the chunks its client has not acknowledged.
const MERGE_MIN: usize = 4096;

/// Turns frames into the chunks of one write: a run of small frames merged into one buffer
/// (a lone one as it is), frames of [`COPY_BELOW`] bytes or more as they are.
///
/// The merged runs of a write are cut from one buffer made for that write's small frames: quinn
/// holds a chunk until its client acknowledges it, and a chunk pins its whole buffer. A buffer
/// grown by `BytesMut::reserve` is as large as the largest write the route ever made (up to
/// [`MAX_BATCH`]), so every route with a few small signals in flight kept 64 KiB.
struct Chunker<'a> {
    buf: &'a mut BytesMut,
    chunks: &'a mut Vec<Bytes>,
    /// The first small frame of a run, copied only if another follows.
    lone: Option<Bytes>,
    /// The bytes of the write's small frames not pushed yet.
    small: usize,
    /// The least it allocates ([`MERGE_MIN`] for a route's writes).
    least: usize,
}

impl<'a> Chunker<'a> {
    /// `small`: the bytes of the frames under [`COPY_BELOW`] that will be pushed one by one,
    /// the most it copies. What is left of `buf` from the route's last write is used if there
    /// is room in it; otherwise the first copy makes a buffer for them all.
    fn new(buf: &'a mut BytesMut, chunks: &'a mut Vec<Bytes>, small: usize) -> Self {
        chunks.clear();
        Self {
            buf,
            chunks,
            lone: None,
            small,
            least: MERGE_MIN,
        }
    }

    /// Chunks made already (a run's, shared by its routes): they go to the write as they are.
    fn push_chunks(&mut self, chunks: &[Bytes]) {
        self.end_run();
        self.chunks.extend_from_slice(chunks);
    }

    /// A frame the route holds alone.
    fn push(&mut self, frame: Bytes) {
        if self.copies(&frame) {
            self.copy(&frame);
        } else {
            self.keep(frame);
        }
    }

    /// A frame held elsewhere too (a run's, as [`Run::new`] merges it): referenced again only
    /// if it goes to the write as it is.
    fn push_shared(&mut self, frame: &Bytes) {
        if self.copies(frame) {
            self.copy(frame);
        } else {
            self.keep(frame.clone());
        }
    }

    /// Whether `frame` is copied into the run of small frames being merged.
    fn copies(&self, frame: &Bytes) -> bool {
        frame.len() < COPY_BELOW && (self.lone.is_some() || !self.buf.is_empty())
    }

    fn copy(&mut self, frame: &[u8]) {
        self.small = self.small.saturating_sub(frame.len());
        let first = self.lone.take();
        let need = first.as_ref().map_or(0, Bytes::len) + frame.len();
        // A merged run starts (the buffer is empty): room for it and every small frame still
        // to come, so that no copy later in the write has to grow it; at least `least`,
        // which a route's next few writes share.
        if self.buf.is_empty() && self.buf.capacity() < need + self.small {
            *self.buf = BytesMut::with_capacity((need + self.small).max(self.least));
        }
        if let Some(first) = first {
            self.buf.extend_from_slice(&first);
        }
        self.buf.extend_from_slice(frame);
    }

    /// A large frame, or the first small one of a run, goes as it is (for now).
    fn keep(&mut self, frame: Bytes) {
        if frame.len() >= COPY_BELOW {
            self.end_run();
            self.chunks.push(frame);
        } else {
            self.small = self.small.saturating_sub(frame.len());
            self.lone = Some(frame);
        }
    }

    fn end_run(&mut self) {
        if let Some(f) = self.lone.take() {
            self.chunks.push(f);
        } else if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
    }

    fn finish(mut self) {
        self.end_run();
    }
}

/// How a write ended.
enum Written {
    /// The bytes are with quinn.
    Done,
    /// The receiver's connection is gone; it may resume.
    Lost,
    /// The receiver is closing for good.
    Stop,
}

/// A route's task: owns the delivery stream from one sender to one receiver. However it
/// ends, what is still queued leaves the bounds it was charged to.
#[allow(clippy::too_many_arguments)]
async fn run_route(
    to: Arc<Member>,
    from: Option<ConnectionId>,
    header: Bytes,
    mut rx: queue::Receiver<Queued>,
    prev: Option<JoinHandle<()>>,
    settings: Arc<DeliverySettings>,
    budgets: Budgets,
    broadcasts: Arc<SharedBroadcasts>,
) {
    route(
        &to, from, header, &mut rx, prev, &settings, &budgets, broadcasts,
    )
    .await;
    rx.close();
    while let Some(item) = rx.try_recv() {
        unqueue_item(&to, &budgets, &item);
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    to: &Arc<Member>,
    from: Option<ConnectionId>,
    header: Bytes,
    rx: &mut queue::Receiver<Queued>,
    prev: Option<JoinHandle<()>>,
    settings: &DeliverySettings,
    budgets: &Budgets,
    broadcasts: Arc<SharedBroadcasts>,
) {
    if let Some(prev) = prev {
        // The previous stream of this pair is finished and acknowledged (or abandoned)
        // before this one opens: order holds across streams.
        let _ = prev.await;
    }
    let mut route = RouteStream {
        to,
        from,
        header,
        stream: None,
        generation: to.generation(),
        replay: RouteReplay::new(budgets.clone()),
        broadcasts,
        taking: Vec::new(),
        marks: ReadMarks::default(),
        settings,
    };
    let mut buf = BytesMut::new();
    let mut chunks = Vec::new();
    // Made once, not per batch: registering a waiter or a timer on every batch costs more
    // than the write itself when signals are small.
    let gone = to.gone.cancelled();
    tokio::pin!(gone);
    let mut seen = to.generation();
    let attached = to.attached_after(seen);
    tokio::pin!(attached);
    let mut idle = tokio::time::interval(settings.stream_idle);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    idle.tick().await;
    let rare = Arc::new(Rare::default());
    let rare_waker = std::task::Waker::from(rare.clone());
    let mut active = true;
    loop {
        let woke = std::future::poll_fn(|cx| {
            rare.task.register(cx.waker());
            // The rare wake-ups are polled only when one of them came (or at first, to
            // register): each poll takes a lock shared with the receiver's other routes, and
            // on targeted rows a route waits once per frame.
            let polls_rare = rare.woke.swap(false, Ordering::AcqRel);
            let mut rcx = std::task::Context::from_waker(&rare_waker);
            if polls_rare && gone.as_mut().poll(&mut rcx).is_ready() {
                return Poll::Ready(Woke::Gone);
            }
            let woke = match rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => Woke::Frame(frame),
                Poll::Ready(None) => Woke::End,
                Poll::Pending if !polls_rare => return Poll::Pending,
                Poll::Pending => match attached.as_mut().poll(&mut rcx) {
                    Poll::Ready(current) => Woke::Attached(current),
                    Poll::Pending if idle.poll_tick(&mut rcx).is_ready() => Woke::Idle,
                    Poll::Pending => return Poll::Pending,
                },
            };
            if polls_rare {
                // Not every rare one was polled: look at them all again next time.
                rare.woke.store(true, Ordering::Release);
            }
            Poll::Ready(woke)
        })
        .await;
        let first = match woke {
            Woke::Gone => return,
            Woke::Frame(frame) => frame,
            // The sender is gone: finish the stream after what was written.
            Woke::End => break,
            Woke::Attached(current) => {
                // The receiver resumed on a new connection. What this route wrote to the old
                // one may never have arrived: replay it now, not when the sender next speaks
                // or the idle stream is finished.
                seen = current;
                attached.set(to.attached_after(seen));
                if current == route.generation {
                    continue;
                }
                if route.stream.is_none() {
                    // Nothing was written on the old connection.
                    route.generation = current;
                } else if !route.resume().await {
                    return;
                }
                continue;
            }
            Woke::Idle => {
                if std::mem::take(&mut active) || to.is_away() {
                    continue;
                }
                // A whole idle period without signals: refuse new ones (the sender then
                // starts a new route), then write what raced in before the refusal.
                rx.close();
                while let Some(item) = rx.try_recv() {
                    let newest = batch(item, rx, &mut buf, &mut route, &mut chunks);
                    if !route.write_or_resume(&mut chunks, newest).await {
                        return;
                    }
                }
                break;
            }
        };
        active = true;
        let newest = batch(first, rx, &mut buf, &mut route, &mut chunks);
        if !route.write_or_resume(&mut chunks, newest).await {
            return;
        }
    }
    route.finish().await;
}

/// What a waiting route woke for.
enum Woke {
    /// Frames to write (and whatever else is queued behind them).
    Frame(Queued),
    /// The sender is gone and the queue is empty.
    End,
    /// The receiver is gone for good.
    Gone,
    /// The receiver is attached to a connection of this generation.
    Attached(u64),
    /// The idle timer ticked.
    Idle,
}

/// The waker a route hands to its rare wake-ups (its receiver gone or resumed, its idle
/// timer): it notes that one came before it wakes the route's task, so a route woken by its
/// queue — nearly always — does not poll them.
#[derive(Debug)]
struct Rare {
    woke: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl Default for Rare {
    fn default() -> Self {
        Self {
            // At first every one is polled, to register.
            woke: std::sync::atomic::AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        }
    }
}

impl std::task::Wake for Rare {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woke.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The stream side of a route: its current QUIC stream and the frames kept for replay.
struct RouteStream<'a> {
    to: &'a Member,
    from: Option<ConnectionId>,
    header: Bytes,
    stream: Option<LinkSend>,
    /// The receiver's attachment the stream belongs to.
    generation: u64,
    /// What it wrote, kept for a resume.
    replay: RouteReplay<Budgets>,
    broadcasts: Arc<SharedBroadcasts>,
    /// The frames of the batch being written, kept in `replay` before they are written.
    taking: Vec<Queued>,
    /// How far its client has read the current stream, in frames.
    marks: ReadMarks,
    settings: &'a DeliverySettings,
}

impl Drop for RouteStream<'_> {
    fn drop(&mut self) {
        self.replay.clear(&mut lock(&self.broadcasts.log));
    }
}

impl RouteStream<'_> {
    /// Keeps the frames in `taking` for replay (they stay in `taking`, to be written): under
    /// one lock of the sender's broadcasts, which hold the broadcasts among them.
    fn keep(&mut self) {
        let read = self.marks.take_read();
        // Broadcasts are added (and `newest` set) before they are queued, and the queue's
        // lock orders that before this route took them.
        let newest = self.broadcasts.newest.load(Ordering::Relaxed);
        if frames_of(&self.taking).all(|f| f.0 > newest)
            && (read.is_none() || !self.replay.takes_shared())
        {
            if let Some(seq) = read {
                self.replay.read_through_own(seq);
            }
            for frame in frames_of(&self.taking) {
                self.replay.keep_own(frame);
            }
            self.replay.settle();
            return;
        }
        let mut shared = lock(&self.broadcasts.log);
        if let Some(seq) = read {
            self.replay.read_through(seq, &mut shared);
        }
        for frame in frames_of(&self.taking) {
            self.replay.keep(frame, &mut shared);
        }
        // This route moved on: what only it still held can go.
        shared.settle();
        drop(shared);
        self.replay.settle();
    }

    /// Writes `chunks` (already in the ring); if the receiver's connection is lost, waits
    /// for it to resume and replays what it has not seen. False when the route should end.
    async fn write_or_resume(&mut self, chunks: &mut [Bytes], newest: u64) -> bool {
        match self.write(chunks, newest).await {
            Written::Done => true,
            Written::Stop => false,
            Written::Lost => self.resume().await,
        }
    }

    /// Waits for the receiver to come back, then replays the ring on a new stream.
    async fn resume(&mut self) -> bool {
        // What it took from the sender's shared broadcasts is now its own to keep: while the
        // receiver is away it holds no more than its own ring's bound.
        self.replay.detach(&mut lock(&self.broadcasts.log));
        loop {
            self.stream = None;
            loop {
                let current = self.to.generation();
                if current != self.generation && !self.to.is_away() {
                    self.generation = current;
                    break;
                }
                tokio::select! {
                    _ = self.to.gone.cancelled() => return false,
                    _ = self.to.attached_after(current) => {}
                }
            }
            let (replay, lost) = self.replay.after(self.to.receiver.seen_from(self.from));
            if let Some((first, last, count)) = lost {
                self.to.add_missed(self.from, first, last, count);
            }
            if replay.is_empty() {
                return true;
            }
            let newest = self.replay.newest().unwrap_or(0);
            match self.write(&mut [replay], newest).await {
                Written::Done => return true,
                Written::Stop => return false,
                Written::Lost => continue,
            }
        }
    }

    /// Writes `chunks` (frames up to `newest`), opening the stream (and sending its header)
    /// first if needed.
    async fn write(&mut self, chunks: &mut [Bytes], newest: u64) -> Written {
        if self.stream.is_none() {
            self.marks.restart(self.header.len());
        }
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        let to = self.to;
        let conn = to.conn();
        let result = {
            let stream = &mut self.stream;
            let header = &self.header;
            let write = async {
                let s = match stream {
                    Some(s) => s,
                    None => {
                        let mut s = conn.open_uni().await?;
                        s.write_chunk(header.clone()).await?;
                        stream.insert(s)
                    }
                };
                s.write_chunks(chunks).await?;
                Ok::<(), LinkError>(())
            };
            tokio::pin!(write);
            // A write may wait long while the receiver reads its other senders' streams (QUIC
            // shares the connection among them): that is a busy receiver, not a slow one. It is a
            // slow consumer only when it read nothing at all — granted no new flow-control credit
            // on any stream — for a whole `write_timeout`. Most writes finish at once (the stream
            // has credit): those arm no timer and read no statistics. One that waits is polled
            // once per wake-up, as it would be alone.
            let patience = self.settings.write_timeout;
            let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
            let mut credit = 0;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = write.as_mut().poll(cx) {
                    return Poll::Ready(Ok(done));
                }
                if timer.is_none() {
                    credit = conn.read_credit();
                    timer.set(Some(tokio::time::sleep(patience)));
                }
                let Some(mut timer) = timer.as_mut().as_pin_mut() else {
                    unreachable!("set above");
                };
                while timer.as_mut().poll(cx).is_ready() {
                    let now = conn.read_credit();
                    if now == credit {
                        return Poll::Ready(Err(()));
                    }
                    credit = now;
                    timer.as_mut().reset(tokio::time::Instant::now() + patience);
                }
                Poll::Pending
            })
            .await
        };
        match result {
            Ok(Ok(())) => {
                let read = self.stream.as_ref().and_then(LinkSend::read_at_least);
                self.marks.wrote(bytes, newest, read);
                Written::Done
            }
            Ok(Err(e)) => {
                tracing::debug!(conn = %to.id(), error = %e.0, "delivery stream failed");
                if to.is_closing() {
                    Written::Stop
                } else {
                    Written::Lost
                }
            }
            Err(_) => {
                if to.is_away() {
                    return Written::Lost;
                }
                tracing::warn!(conn = %to.id(), "delivery made no progress; disconnecting slow consumer");
                to.close(CloseCode::SlowConsumer, "slow consumer: no progress");
                Written::Stop
            }
        }
    }

    /// Finishes the stream once everything written is acknowledged; the kept frames are then
    /// no longer needed. A connection lost meanwhile is resumed and finished again.
    async fn finish(&mut self) {
        loop {
            let Some(mut stream) = self.stream.take() else {
                return;
            };
            stream.finish();
            match tokio::time::timeout(self.settings.write_timeout, stream.stopped()).await {
                Ok(Ok(_)) => {
                    self.replay.clear(&mut lock(&self.broadcasts.log));
                    return;
                }
                Ok(Err(_)) => {
                    if self.to.is_closing() || !self.resume().await {
                        return;
                    }
                }
                Err(_) => {
                    if !self.to.is_closing() && !self.to.is_away() {
                        self.to.close(
                            CloseCode::SlowConsumer,
                            "slow consumer: delivery stream not acknowledged",
                        );
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_frames_go_as_they_are_and_small_runs_are_merged() {
        use bytes::{Bytes, BytesMut};
        let frame = |n: usize, b: u8| Bytes::from(vec![b; n]);
        // Frames a route holds alone, and frames of a run it shares: the same chunks.
        let chunked = |frames: &[Bytes], shared: bool| {
            let (mut buf, mut chunks) = (BytesMut::new(), Vec::new());
            let small: usize = frames
                .iter()
                .map(Bytes::len)
                .filter(|&n| n < super::COPY_BELOW)
                .sum();
            let mut chunker = super::Chunker::new(&mut buf, &mut chunks, small);
            for f in frames {
                if shared {
                    chunker.push_shared(f);
                } else {
                    chunker.push(f.clone());
                }
            }
            chunker.finish();
            // The merged runs were cut from a buffer made for them: what is left of it is at
            // most the room of the small frames that went as they are.
            let copied: usize = chunks
                .iter()
                .filter(|c| !frames.iter().any(|f| f.as_ptr() == c.as_ptr()))
                .map(Bytes::len)
                .sum();
            assert!(buf.capacity() + copied <= small.max(super::MERGE_MIN));
            chunks
        };
        let sizes_of = |frames: &[Bytes]| {
            let chunks = chunked(frames, false);
            let shared = chunked(frames, true);
            assert_eq!(chunks, shared);
            // A run made for several routes holds the same chunks, once for them all; one for
            // a single route leaves the copying to the route.
            let run_of = |routes| {
                let frames = frames.iter().cloned().enumerate();
                super::Run::new(frames.map(|(i, f)| (i as u64 + 1, f)).collect(), routes)
            };
            assert_eq!(&*run_of(2).chunks, &chunks[..]);
            assert!(run_of(1).chunks.is_empty());
            // Nothing lost, nothing reordered.
            let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            let want: Vec<u8> = frames.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(all, want);
            // A large frame is sent from its own memory.
            for f in frames.iter().filter(|f| f.len() >= super::COPY_BELOW) {
                assert!(
                    chunks.iter().any(|c| c.as_ptr() == f.as_ptr()),
                    "a large frame was copied"
                );
            }
            chunks.iter().map(Bytes::len).collect::<Vec<_>>()
        };
        let small = |b| frame(64, b);
        let large = |b| frame(8192, b);
        assert_eq!(sizes_of(&[small(1)]), [64]);
        assert_eq!(sizes_of(&[large(1)]), [8192]);
        assert_eq!(sizes_of(&[small(1), small(2), small(3)]), [192]);
        assert_eq!(sizes_of(&[large(1), large(2)]), [8192, 8192]);
        assert_eq!(
            sizes_of(&[
                small(1),
                small(2),
                large(3),
                small(4),
                large(5),
                small(6),
                small(7)
            ]),
            [128, 8192, 64, 8192, 128]
        );
        // A lone small frame is not copied either.
        let lone = small(9);
        let (mut buf, mut chunks) = (BytesMut::new(), Vec::new());
        let mut chunker = super::Chunker::new(&mut buf, &mut chunks, 64);
        chunker.push(lone.clone());
        chunker.finish();
        assert_eq!(chunks[0].as_ptr(), lone.as_ptr());
    }

    /// A route's write of its own frames around a run made for several routes: the run's
    /// chunks go as they are, the route's own small frames are merged on either side.
    #[test]
    fn a_shared_run_is_written_from_the_runs_own_chunks() {
        use bytes::{Bytes, BytesMut};
        let small = |b| Bytes::from(vec![b; 64]);
        let run = super::Run::new([(3, small(3)), (4, small(4)), (5, small(5))].into(), 10);
        assert_eq!(run.chunks.len(), 1);
        // A run's buffer is exactly its frames' bytes (not a route's least, `MERGE_MIN`): one
        // is made per run and held until every route's client acknowledges it.
        let other = super::Run::new([(1, small(1)), (2, small(2))].into(), 2);
        let merged = other.chunks.into_vec().pop().unwrap();
        let merged = merged
            .try_into_mut()
            .expect("the run's chunk owns its buffer");
        assert_eq!(merged.capacity(), 128);
        let (mut buf, mut chunks) = (BytesMut::new(), Vec::new());
        let mut chunker = super::Chunker::new(&mut buf, &mut chunks, 3 * 64);
        chunker.push(small(1));
        chunker.push(small(2));
        chunker.push_chunks(&run.chunks);
        chunker.push(small(6));
        chunker.finish();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [128, 192, 64]);
        assert_eq!(
            chunks[1].as_ptr(),
            run.chunks[0].as_ptr(),
            "the run was copied"
        );
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let want: Vec<u8> = (1..=6).flat_map(|b| [b; 64]).collect();
        assert_eq!(all, want);
    }

    /// A route's writes one after another: each merged run is cut from a buffer no larger than
    /// its write needs, however large the route's earlier writes were.
    #[test]
    fn a_small_write_after_a_large_one_pins_only_its_own_bytes() {
        use bytes::{Bytes, BytesMut};
        let (mut buf, mut chunks) = (BytesMut::new(), Vec::new());
        let mut write = |frames: usize| {
            let mut chunker = super::Chunker::new(&mut buf, &mut chunks, frames * 64);
            for i in 0..frames {
                chunker.push(Bytes::from(vec![i as u8; 64]));
            }
            chunker.finish();
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].len(), frames * 64);
        };
        write(900);
        write(2);
        // Nothing of the first write's buffer was left to reuse: the second got its own, of
        // the least size, and left the rest of it for the next writes.
        assert_eq!(buf.capacity(), super::MERGE_MIN - 128);
        let second = chunks[0].clone();
        drop(chunks);
        drop(buf);
        // The chunk is the sole owner of its buffer now: turning it back into a `BytesMut`
        // does not copy, and shows that buffer's size.
        let owned = second.try_into_mut().expect("the chunk owns its buffer");
        assert_eq!(owned.capacity(), super::MERGE_MIN);
    }
}
