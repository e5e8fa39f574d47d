//! Fan-out: getting one sender's signals onto each receiver's delivery stream for that sender.
//!
//! A [`Fanout`] belongs to one sender (a connection, or the relay itself for REST signals)
//! and is used only by that sender's task, so it needs no lock. For each receiver it has a
//! *route*: a bounded queue and a task that owns the QUIC stream toward that receiver.
//!
//! - The signal is encoded once; every route gets a clone of the same `Bytes`.
//! - A route's task takes everything already queued and writes it as one chunk: quinn keeps
//!   one buffer segment per write and scans them when it builds packets, so merging small
//!   frames is the biggest single saving on the write path.
//! - The stream opens lazily, on the first signal, and is finished after `stream_idle` without
//!   signals. A new stream for the same pair opens only after the old one is fully
//!   acknowledged, so order holds across streams, and a receiver holds streams only for
//!   senders that are active — never one per member of a large session.
//! - What waits for a receiver is bounded, in bytes across all its senders and in signals per
//!   sender; past either bound, or when its stream takes nothing for `write_timeout`, the
//!   receiver is disconnected as a slow consumer. The sender never waits for a receiver.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use signalbox_proto::{CloseCode, ConnectionId, DeliveryHeader, Target, codec};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::registry::{Member, Roster};

/// What each queued signal costs beyond its bytes, for the byte bound.
const ENTRY_OVERHEAD: usize = 64;
/// The most bytes merged into one write.
const MAX_BATCH: usize = 64 * 1024;

/// Bounds and timings of delivery, from the relay's configuration.
#[derive(Debug, Clone)]
pub(crate) struct DeliverySettings {
    pub(crate) queue_bytes: usize,
    pub(crate) queue_signals: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) stream_idle: Duration,
}

struct Route {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<()>,
}

/// One sender's routes to its receivers.
pub(crate) struct Fanout {
    header: Bytes,
    routes: HashMap<ConnectionId, Route>,
    settings: Arc<DeliverySettings>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Fanout {
    /// Routes for the sender `from` (`None`: the relay itself).
    pub(crate) fn new(
        from: Option<ConnectionId>,
        settings: Arc<DeliverySettings>,
        tracker: TaskTracker,
    ) -> Self {
        let header = codec::frame(&DeliveryHeader { from }, 64)
            .map(BytesMut::freeze)
            .unwrap_or_default();
        Self {
            header,
            routes: HashMap::new(),
            settings,
            tracker,
        }
    }

    /// Queues an encoded signal frame for `to`. Never waits: a receiver that cannot keep up
    /// is disconnected instead.
    pub(crate) fn deliver(&mut self, to: &Arc<Member>, frame: &Bytes) {
        if to.is_closing() {
            return;
        }
        let cost = frame.len() + ENTRY_OVERHEAD;
        let queued = to.queued_bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        if queued > self.settings.queue_bytes {
            to.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            tracing::warn!(conn = %to.id(), queued, "receiver queue over its byte bound; disconnecting slow consumer");
            to.close(
                CloseCode::SlowConsumer,
                "slow consumer: too much data waiting",
            );
            return;
        }
        let mut frame = frame.clone();
        let mut prev = None;
        for attempt in 0..2 {
            let route = match self.routes.entry(to.id()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let (tx, rx) = mpsc::channel(self.settings.queue_signals);
                    let task = self.tracker.spawn(run_route(
                        to.clone(),
                        self.header.clone(),
                        rx,
                        prev.take(),
                        self.settings.clone(),
                    ));
                    e.insert(Route { tx, task })
                }
            };
            match route.tx.try_send(frame) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {
                    to.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
                    tracing::warn!(conn = %to.id(), "receiver queue full; disconnecting slow consumer");
                    to.close(
                        CloseCode::SlowConsumer,
                        "slow consumer: too many signals waiting",
                    );
                    return;
                }
                Err(TrySendError::Closed(f)) => {
                    // The route finished its idle stream (or the receiver is gone). Start a
                    // new one that waits until the old stream is fully acknowledged.
                    let old = self.routes.remove(&to.id());
                    if to.is_closing() || attempt > 0 {
                        break;
                    }
                    prev = old.map(|r| r.task);
                    frame = f;
                }
            }
        }
        to.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
    }

    /// Forgets routes whose task has ended (receiver gone, or stream finished when idle).
    pub(crate) fn prune(&mut self) {
        self.routes.retain(|_, r| !r.task.is_finished());
    }
}

/// Queues an encoded signal for its targets in `roster`; returns how many it reached.
/// Targets must already be checked (every one present).
pub(crate) fn fan_out(fanout: &mut Fanout, roster: &Roster, to: &Target, frame: &Bytes) -> usize {
    match to {
        Target::All => {
            for m in &roster.broadcast {
                fanout.deliver(m, frame);
            }
            roster.broadcast.len()
        }
        Target::One(id) => match roster.members.get(id) {
            Some(m) => {
                fanout.deliver(m, frame);
                1
            }
            None => 0,
        },
        Target::List(ids) => {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            let mut n = 0;
            for id in &ids {
                if let Some(m) = roster.members.get(id) {
                    fanout.deliver(m, frame);
                    n += 1;
                }
            }
            n
        }
    }
}

/// Takes `first` and whatever else is queued (up to [`MAX_BATCH`]) as one chunk, with the
/// bytes it accounted for.
fn batch(first: Bytes, rx: &mut mpsc::Receiver<Bytes>, buf: &mut BytesMut) -> (Bytes, usize) {
    let mut cost = first.len() + ENTRY_OVERHEAD;
    let Ok(second) = rx.try_recv() else {
        return (first, cost);
    };
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    cost += second.len() + ENTRY_OVERHEAD;
    while buf.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(f) => {
                cost += f.len() + ENTRY_OVERHEAD;
                buf.extend_from_slice(&f);
            }
            Err(_) => break,
        }
    }
    (buf.split().freeze(), cost)
}

/// A route's task: owns the delivery stream from one sender to one receiver.
async fn run_route(
    to: Arc<Member>,
    header: Bytes,
    mut rx: mpsc::Receiver<Bytes>,
    prev: Option<JoinHandle<()>>,
    settings: Arc<DeliverySettings>,
) {
    if let Some(prev) = prev {
        // The previous stream of this pair is finished and acknowledged (or abandoned)
        // before this one opens: order holds across streams.
        let _ = prev.await;
    }
    let mut stream: Option<quinn::SendStream> = None;
    let mut buf = BytesMut::new();
    // Made once, not per batch: registering a waiter or a timer on every batch costs more
    // than the write itself when signals are small.
    let gone = to.gone.cancelled();
    tokio::pin!(gone);
    let mut idle = tokio::time::interval(settings.stream_idle);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    idle.tick().await;
    let mut active = true;
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut gone => return,
            next = rx.recv() => match next {
                Some(frame) => frame,
                // The sender is gone: finish the stream after what was written.
                None => break,
            },
            _ = idle.tick() => {
                if std::mem::take(&mut active) {
                    continue;
                }
                // A whole idle period without signals: refuse new ones (the sender then
                // starts a new route), then write what raced in before the refusal.
                rx.close();
                while let Ok(frame) = rx.try_recv() {
                    let cost = frame.len() + ENTRY_OVERHEAD;
                    if write(&to, &header, &mut stream, frame, &settings).await.is_err() {
                        return;
                    }
                    to.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
                }
                break;
            }
        };
        active = true;
        let (chunk, cost) = batch(first, &mut rx, &mut buf);
        if write(&to, &header, &mut stream, chunk, &settings)
            .await
            .is_err()
        {
            return;
        }
        to.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
    }
    if let Some(mut stream) = stream {
        let _ = stream.finish();
        match tokio::time::timeout(settings.write_timeout, stream.stopped()).await {
            Ok(_) => {}
            Err(_) => {
                if !to.gone.is_cancelled() {
                    to.close(
                        CloseCode::SlowConsumer,
                        "slow consumer: delivery stream not acknowledged",
                    );
                }
            }
        }
    }
}

/// Writes one chunk, opening the stream (and sending its header) first if needed.
async fn write(
    to: &Member,
    header: &Bytes,
    stream: &mut Option<quinn::SendStream>,
    chunk: Bytes,
    settings: &DeliverySettings,
) -> Result<(), ()> {
    let result = tokio::time::timeout(settings.write_timeout, async {
        let s = match stream {
            Some(s) => s,
            None => {
                let mut s = to.conn.open_uni().await?;
                s.write_chunk(header.clone()).await?;
                stream.insert(s)
            }
        };
        s.write_chunk(chunk).await?;
        Ok::<(), WriteFailed>(())
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(conn = %to.id(), error = %e.0, "delivery stream failed");
            Err(())
        }
        Err(_) => {
            tracing::warn!(conn = %to.id(), "delivery made no progress; disconnecting slow consumer");
            to.close(CloseCode::SlowConsumer, "slow consumer: no progress");
            Err(())
        }
    }
}

/// Either way a delivery write can fail; both mean the receiver's connection is going.
struct WriteFailed(String);

impl From<quinn::ConnectionError> for WriteFailed {
    fn from(e: quinn::ConnectionError) -> Self {
        Self(e.to_string())
    }
}

impl From<quinn::WriteError> for WriteFailed {
    fn from(e: quinn::WriteError) -> Self {
        Self(e.to_string())
    }
}
