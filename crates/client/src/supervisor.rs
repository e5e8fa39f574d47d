//! The client's tasks: a supervisor that serves one link after another (reconnecting with
//! back-off when the network fails), the readers of the control and delivery streams, and
//! the writer of the client's own signals.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use signalbox_proto::codec::{self, Payload};
use signalbox_proto::{
    CloseCode, ConnectionId, ConnectionInfo, DeliveryHeader, IncomingBytes, LeftReason, RefuseCode,
    RelayMessage, Welcome,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Inner, State, lock};
use crate::events::{Capacity, Event, EventTx, Events, ReceivedSignal};
use crate::link::{self, DeliveryFrames, Dialed, Frames};

/// Events that may wait in the queue before the client stops reading: 32 for each peer
/// sending to this client, at least 256 and at most 2 048. The application may hold as many
/// again, taken from the queue and not yet returned, so at most about 4 096 wait in all.
const EVENT_QUEUE: Capacity = Capacity {
    per_sender: 32,
    min: 256,
    max: 2048,
};
/// The most signals handed over in one batch.
const EVENT_BATCH: usize = 64;
/// The most bytes of signals in one write of the send stream.
const MAX_BATCH: usize = 64 * 1024;
/// Frames at least this large are handed to the stream as they are (one write of several
/// chunks); smaller ones are merged into one buffer first. Merging costs a copy but saves
/// quinn a chunk to track per frame; for a large frame the copy is the cost: copying 8 KiB
/// signals into the merged buffer was 6 % of the benchmark's load generator's time
/// (`bench/results/2026-12-07-client-writes.md`).
const COPY_BELOW: usize = 4096;
/// Back-off between reconnect attempts: from this…
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// …doubling up to this.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Starts the supervisor and the writer; returns the client's events.
pub(crate) fn start(inner: Arc<Inner>, frames: Frames, owner: Arc<crate::client::Owner>) -> Events {
    let (events_tx, events) = crate::events::channel(EVENT_QUEUE, Some(owner));
    let stopped = inner.stopped.clone();
    tokio::spawn(
        stopped
            .clone()
            .run_until_cancelled_owned(writer(inner.clone())),
    );
    tokio::spawn(supervise(inner, frames, events_tx));
    events
}

/// Serves links until the client closes, is removed, or cannot reconnect in time.
async fn supervise(inner: Arc<Inner>, mut frames: Frames, events: EventTx) {
    loop {
        let (reason, message) = serve_link(&inner, frames, &events).await;
        let retry = inner.options.reconnect
            && !inner.closing.load(Ordering::Acquire)
            && matches!(
                reason,
                LeftReason::NetworkDisconnected | LeftReason::RelayShutdown
            );
        if !retry {
            return finish(&inner, &events, reason, message).await;
        }
        inner.set_state(State::Reconnecting);
        if !inner.options.retry_after_reconnect {
            // Nothing waits for the link to come back: what was not accepted fails now.
            lock(&inner.send_state).abandon();
        }
        events
            .send([Event::Reconnecting {
                reason,
                message: message.clone(),
            }])
            .await;
        match reconnect(&inner).await {
            Ok((link, next, welcome)) => {
                frames = next;
                let resumed = welcome.me.id == inner.me.load().id;
                let mut out = Vec::new();
                install(&inner, link, welcome, resumed, &mut out);
                out.push(Event::Reconnected {
                    resumed,
                    me: ConnectionInfo::clone(&inner.me.load()),
                });
                events.send(out).await;
            }
            Err(message) => {
                return finish(&inner, &events, LeftReason::NetworkDisconnected, message).await;
            }
        }
    }
}

/// The end: no more links.
async fn finish(inner: &Inner, events: &EventTx, reason: LeftReason, message: String) {
    inner.set_state(State::Closed);
    lock(&inner.send_state).abandon();
    events.send([Event::Disconnected { reason, message }]).await;
}

/// Dials again until it works or `reconnect_timeout` passes: resuming the same connection
/// while the relay holds it, else joining afresh.
async fn reconnect(inner: &Inner) -> Result<(link::Link, Frames, Welcome), String> {
    let options = &inner.options;
    let deadline = Instant::now() + options.reconnect_timeout;
    let mut delay = FIRST_RETRY;
    loop {
        if inner.closing.load(Ordering::Acquire) {
            return Err("closed while reconnecting".into());
        }
        let ticket = lock(&inner.ticket).clone();
        let seen: Vec<(Option<ConnectionId>, u64)> = if ticket.is_some() {
            lock(&inner.seen).iter().map(|(k, v)| (*k, *v)).collect()
        } else {
            Vec::new()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(
            options
                .connect_timeout
                .min(left.max(Duration::from_millis(200))),
            link::dial(&inner.endpoint, options, ticket, seen),
        )
        .await;
        let last_error = match attempt {
            Ok(Ok(Dialed::Joined(joined))) => return Ok(*joined),
            Ok(Ok(Dialed::Refused(r))) if r.code == RefuseCode::ResumeFailed => {
                // The relay no longer holds us: join again as a new connection, now.
                tracing::info!(reason = %r.message, "cannot resume; joining again");
                *lock(&inner.ticket) = None;
                continue;
            }
            Ok(Ok(Dialed::Refused(r))) => {
                return Err(format!(
                    "the relay refused to rejoin: {} (code {})",
                    r.message,
                    r.code.code()
                ));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer from the relay".into(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "could not reconnect within {} s: {last_error}",
                options.reconnect_timeout.as_secs()
            ));
        }
        // Jittered exponential back-off (the jitter spreads many clients of one relay).
        let jitter = Duration::from_nanos(
            u64::from(std::process::id() ^ (delay.subsec_nanos())) % 50_000_000,
        );
        tokio::time::sleep(
            (delay + jitter).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// Puts a new link in place, updates who is here (reporting differences as presence
/// events), and wakes the writer to send what the relay has not accepted.
fn install(inner: &Inner, link: link::Link, welcome: Welcome, resumed: bool, out: &mut Vec<Event>) {
    if !resumed {
        // A new connection: the relay's senders are new too.
        lock(&inner.seen).clear();
    }
    inner.me.store(Arc::new(welcome.me));
    *lock(&inner.limits) = welcome.limits;
    *lock(&inner.ticket) = Some(welcome.resume);
    {
        let mut peers = lock(&inner.peers);
        let now: HashMap<ConnectionId, ConnectionInfo> =
            welcome.peers.into_iter().map(|p| (p.id, p)).collect();
        for (id, p) in peers.iter() {
            if !now.contains_key(id) {
                out.push(Event::Left {
                    peer: p.clone(),
                    reason: LeftReason::NetworkDisconnected,
                });
            }
        }
        for (id, p) in &now {
            if !peers.contains_key(id) {
                out.push(Event::Joined(p.clone()));
            }
        }
        *peers = now;
    }
    inner.link.store(Arc::new(link));
    inner.set_state(State::Connected);
    inner.link_generation.send_modify(|g| *g += 1);
}

/// Writes this client's signals to its send stream, merging what is queued. The queue is
/// the unaccepted set itself (`SendState::unacked`): each write takes the signals after the
/// newest one written on this stream. A new stream (on a new link) starts from the oldest
/// signal the relay has not accepted, in order (the relay drops duplicates by seq), so a
/// reconnect loses nothing.
async fn writer(inner: Arc<Inner>) {
    let mut generation = inner.link_generation.subscribe();
    let mut stream: Option<quinn::SendStream> = None;
    // The highest seq written on the current stream.
    let mut written_up_to = 0u64;
    let mut buf = BytesMut::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        if stream.is_none() {
            match open_send(&inner, &mut generation).await {
                Some(s) => stream = Some(s),
                None => return,
            }
            written_up_to = 0;
        }
        // Registered before looking, so a send in between wakes it.
        let queued = inner.queued.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        let last_seq = {
            let mut state = lock(&inner.send_state);
            let unacked = &state.unacked;
            let from = unacked.partition_point(|(seq, _)| *seq <= written_up_to);
            let last_seq = take_write(unacked.range(from..), written_up_to, &mut buf, &mut chunks);
            state.writer_idle = chunks.is_empty();
            last_seq
        };
        if chunks.is_empty() {
            // A new link is taken at once, not when the next signal is sent: what was
            // written on the lost one and not accepted must be written again now, or a
            // client that sends nothing more would wait for its acceptance forever.
            tokio::select! {
                biased;
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    stream = None;
                }
                () = queued => {}
            }
            continue;
        }
        if generation.has_changed().unwrap_or(true) {
            // A new link: these signals (still unaccepted) go with the resend there.
            chunks.clear();
            stream = None;
            continue;
        }
        let Some(s) = stream.as_mut() else {
            chunks.clear();
            continue;
        };
        let written = s.write_all_chunks(&mut chunks).await;
        chunks.clear();
        if written.is_ok() {
            written_up_to = last_seq;
        } else {
            // The link is gone; what was in the write is unaccepted and will be resent.
            stream = None;
        }
    }
}

/// The frames of one write of the send stream, taken from `queued` in order and leaving out
/// what this stream already wrote (seq up to `written_up_to`): frames under [`COPY_BELOW`]
/// copied into `buf` and merged, larger ones as they are (a reference, not a copy), until
/// [`MAX_BATCH`] bytes are taken (the rest waits for the next write). They go into
/// `chunks`; returns the newest seq taken (0: none).
fn take_write<'a>(
    queued: impl Iterator<Item = &'a (u64, Bytes)> + Clone,
    written_up_to: u64,
    buf: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
) -> u64 {
    let mut last_seq = 0;
    let mut bytes = 0;
    let mut queued = queued.filter(|(seq, _)| *seq > written_up_to);
    while bytes < MAX_BATCH
        && let Some((seq, frame)) = queued.next()
    {
        if frame.len() < COPY_BELOW {
            if buf.capacity() - buf.len() < frame.len() {
                // Room for every copy the write makes, at once. Grown a frame at a time, the
                // buffer was reallocated and copied at every doubling (on 50→50 targeted
                // 1 KiB, about 3 % of the load generator's time).
                let rest = bytes + frame.len();
                buf.reserve(frame.len() + copied(queued.clone(), rest));
            }
            buf.extend_from_slice(frame);
        } else {
            if !buf.is_empty() {
                chunks.push(buf.split().freeze());
            }
            chunks.push(frame.clone());
        }
        bytes += frame.len();
        last_seq = *seq;
    }
    if !buf.is_empty() {
        chunks.push(buf.split().freeze());
    }
    last_seq
}

/// The bytes [`take_write`] copies of `rest`, the frames after those it has taken (`bytes`
/// of them).
fn copied<'a>(rest: impl Iterator<Item = &'a (u64, Bytes)>, mut bytes: usize) -> usize {
    let mut copied = 0;
    for (_, frame) in rest {
        if bytes >= MAX_BATCH {
            break;
        }
        bytes += frame.len();
        if frame.len() < COPY_BELOW {
            copied += frame.len();
        }
    }
    copied
}

/// A send stream on the current link; waits for the supervisor's next link when there is
/// none (what is sent meanwhile waits in the unaccepted set). `None` when the client is
/// closed.
async fn open_send(
    inner: &Inner,
    generation: &mut tokio::sync::watch::Receiver<u64>,
) -> Option<quinn::SendStream> {
    loop {
        if inner.state() == State::Closed {
            return None;
        }
        generation.borrow_and_update();
        let conn = inner.link.load().conn.clone();
        if inner.state() == State::Connected
            && conn.close_reason().is_none()
            && let Ok(s) = conn.open_uni().await
        {
            return Some(s);
        }
        // Wait for the next link.
        generation.changed().await.ok()?;
    }
}

/// Reads one link's control stream and delivery streams until the connection ends; returns
/// why it ended.
async fn serve_link(
    inner: &Arc<Inner>,
    mut control: Frames,
    events: &EventTx,
) -> (LeftReason, String) {
    let conn = inner.link.load().conn.clone();
    let mut readers = JoinSet::new();
    let mut headers = FuturesOrdered::new();
    let streams = Streams::default();
    let max_frame = lock(&inner.limits).max_frame_bytes();
    let control_done = control_reader(inner, &mut control, events, &streams);
    tokio::pin!(control_done);
    loop {
        tokio::select! {
            // Streams first: when the control stream is read, every delivery stream that came
            // in before what it reads has been counted (see `Streams::heard_all_from`).
            biased;
            stream = conn.accept_uni() => match stream {
                Ok(recv) => {
                    streams.opened.fetch_add(1, Ordering::Relaxed);
                    headers.push_back(read_header(recv, max_frame));
                }
                Err(_) => break,
            },
            Some(header) = headers.next() => {
                start_reader(inner, &streams, &mut readers, header, events);
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {},
            _ = &mut control_done => break,
        }
    }
    // Let the readers hand over what they already have, and read the streams whose header
    // was on its way: the signals after a header may have come with it, and what this client
    // has taken from a stream the relay counts as read (the stream's flow-control credit
    // says so) and may no longer keep for the resume.
    while let Some(header) = headers.next().await {
        start_reader(inner, &streams, &mut readers, header, events);
    }
    while readers.join_next().await.is_some() {}
    describe_close(conn.closed().await)
}

/// Starts reading a delivery stream whose header was read (`None`: it failed).
fn start_reader(
    inner: &Arc<Inner>,
    streams: &Streams,
    readers: &mut JoinSet<()>,
    header: Option<(Option<ConnectionId>, DeliveryFrames)>,
    events: &EventTx,
) {
    streams.known.send_modify(|n| *n += 1);
    let Some((from, frames)) = header else {
        return;
    };
    // A new stream from the same sender is read only after the previous one, so order holds.
    let (done_tx, done_rx) = watch::channel(false);
    let prev = {
        let mut chains = lock(&streams.chains);
        if chains.len() > 1024 {
            chains.retain(|_, done| !*done.borrow() && done.has_changed().is_ok());
        }
        chains.insert(from, done_rx)
    };
    readers.spawn(read_deliveries(
        inner.clone(),
        from,
        frames,
        prev,
        done_tx,
        events.clone(),
    ));
}

/// One link's delivery streams, as the control stream's reader needs to know them.
///
/// A peer's `Left` comes on the control stream, its last signals on its own delivery stream,
/// and either may be read first. So a `Left` waits (and the control stream with it, which
/// keeps presence in order) until the delivery streams that had opened before it are known
/// and the leaver's own has been read to its end — the relay finishes a leaver's streams once
/// they have written what they held — and at most [`LEFT_HOLD`]: nobody sees a peer leave and
/// then hears from it.
#[derive(Default)]
struct Streams {
    /// Delivery streams accepted.
    opened: std::sync::atomic::AtomicU64,
    /// Delivery streams whose header has been read (or failed).
    known: watch::Sender<u64>,
    /// For each sender, whether its latest delivery stream has been read to its end.
    chains: std::sync::Mutex<HashMap<Option<ConnectionId>, watch::Receiver<bool>>>,
}

/// The longest a peer's `Left` waits for the end of its delivery stream.
const LEFT_HOLD: Duration = Duration::from_secs(2);

impl Streams {
    /// Returns once `peer`'s signals sent before now have been read (see [`Streams`]).
    async fn heard_all_from(&self, peer: ConnectionId) {
        let at = self.opened.load(Ordering::Relaxed);
        let mut known = self.known.subscribe();
        let read = async {
            let _ = known.wait_for(|n| *n >= at).await;
            let chain = lock(&self.chains).get(&Some(peer)).cloned();
            if let Some(mut done) = chain {
                let _ = done.wait_for(|d| *d).await;
            }
        };
        let _ = tokio::time::timeout(LEFT_HOLD, read).await;
    }
}

/// Why a connection ended, as a presence reason and a sentence.
fn describe_close(err: quinn::ConnectionError) -> (LeftReason, String) {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let text = String::from_utf8_lossy(&close.reason).into_owned();
            let code = CloseCode::from_u32(close.error_code.into_inner() as u32);
            let reason = code.map_or(LeftReason::NetworkDisconnected, CloseCode::left_reason);
            (reason, text)
        }
        quinn::ConnectionError::LocallyClosed => (
            LeftReason::ClientDisconnected,
            "closed by this client".into(),
        ),
        other => (LeftReason::NetworkDisconnected, other.to_string()),
    }
}

async fn read_header(
    recv: quinn::RecvStream,
    max_frame: usize,
) -> Option<(Option<ConnectionId>, DeliveryFrames)> {
    let mut frames = DeliveryFrames::new(recv, max_frame);
    let frame = frames.next().await?.ok()?;
    let header: DeliveryHeader = codec::decode(&frame).ok()?;
    Some((header.from, frames))
}

async fn read_deliveries(
    inner: Arc<Inner>,
    from: Option<ConnectionId>,
    mut frames: DeliveryFrames,
    prev: Option<watch::Receiver<bool>>,
    done: watch::Sender<bool>,
    events: EventTx,
) {
    if let Some(mut prev) = prev {
        // Ends when the previous reader is done, or is gone without saying so.
        let _ = prev.wait_for(|d| *d).await;
    }
    // What was already received from this sender, on any link: anything not newer is a
    // duplicate (a replay after a resume).
    let mut last_seq = lock(&inner.seen).get(&from).copied().unwrap_or(0);
    let mut malformed = false;
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    // Ends with the stream (or a framing error: the bytes after it are not frames).
    while let Ok(true) = frames.receive().await {
        // Every frame already received, as one batch (each read in place).
        let mut ended = false;
        while batch.len() < EVENT_BATCH {
            match frames.next_received(|frame| received(from, frame, last_seq)) {
                Ok(Some(Ok(Some(signal)))) => {
                    last_seq = signal.seq;
                    batch.push(Event::Signal(signal));
                }
                Ok(Some(Ok(None))) => {} // a duplicate
                Ok(Some(Err(()))) => {
                    malformed = true;
                    break;
                }
                // Used up: more may have arrived meanwhile.
                Ok(None) => match frames.receive().now_or_never() {
                    Some(Ok(true)) => {}
                    Some(_) => {
                        ended = true;
                        break;
                    }
                    None => break,
                },
                Err(()) => {
                    ended = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            lock(&inner.seen).insert(from, last_seq);
            inner
                .signals_in
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            // Without a listener the signals are dropped, but the stream is still read, so
            // the relay never sees this client as slow.
            events.send(batch.drain(..)).await;
        }
        if malformed {
            tracing::warn!("malformed signal from the relay; ignoring the rest of its stream");
            break;
        }
        if ended {
            break;
        }
    }
    done.send_replace(true);
}

/// The signal in a delivery frame; `None` when its seq is not newer than `last_seq` (a
/// duplicate). A frame read in place in the received datagrams has its type and data copied,
/// each into a buffer of its exact size: an application keeping the text would otherwise keep
/// those datagrams alive. (Two plain buffers also cost less than slices of one shared frame:
/// no reference count to create, bump and drop per signal, often on another thread.) A frame
/// that arrived in pieces was already gathered into a buffer of its own, which holds that
/// signal alone: its type and data are slices of it, not copies (8 KiB of data copied a second
/// time was a tenth of a receiving client's memory traffic).
fn received(
    from: Option<ConnectionId>,
    frame: Payload<'_>,
    last_seq: u64,
) -> Result<Option<ReceivedSignal>, ()> {
    let msg = codec::decode::<IncomingBytes<'_>>(&frame).map_err(drop)?;
    let text = |bytes: &[u8]| {
        let bytes = match &frame {
            Payload::InPlace(_) => Bytes::copy_from_slice(bytes),
            Payload::Gathered(whole) => whole.slice_ref(bytes),
        };
        ByteString::try_from(bytes).map_err(drop)
    };
    // Checked before the seq, so a malformed duplicate is malformed too.
    let (r#type, data) = (text(msg.r#type)?, text(msg.data)?);
    Ok((msg.seq > last_seq).then_some(ReceivedSignal {
        from,
        seq: msg.seq,
        to_all: msg.to_all,
        r#type,
        data,
    }))
}

/// Reads the control stream; a `Left` waits for the leaver's signals (see [`Streams`]).
async fn control_reader(inner: &Inner, frames: &mut Frames, events: &EventTx, streams: &Streams) {
    while let Some(Ok(frame)) = frames.next().await {
        let msg = match codec::decode::<RelayMessage>(&frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "malformed control message from the relay");
                continue;
            }
        };
        let event = match msg {
            // Presence is applied to the roster and reported only when it changes it (after
            // a resume, queued notices may repeat what the new welcome already said).
            RelayMessage::Joined(info) => {
                let new = lock(&inner.peers).insert(info.id, info.clone()).is_none();
                new.then_some(Event::Joined(info))
            }
            RelayMessage::Left { connection, reason } => lock(&inner.peers)
                .remove(&connection)
                .map(|peer| Event::Left { peer, reason }),
            RelayMessage::Accepted { up_to } => {
                lock(&inner.send_state).accepted(up_to);
                inner.room.notify_waiters();
                None
            }
            RelayMessage::Rejected { seq, error } => {
                let held = lock(&inner.send_state).rejected(seq);
                inner.room.notify_waiters();
                match held {
                    // Nobody awaits the receipt any more: report it as an event instead.
                    Some(Some(w)) => match w.send(Err(error)) {
                        Ok(()) => None,
                        Err(back) => back.err().map(|error| Event::Rejected { seq, error }),
                    },
                    Some(None) => Some(Event::Rejected { seq, error }),
                    // Told again after a resume: known already.
                    None => None,
                }
            }
            RelayMessage::Denied { message } => Some(Event::Denied { message }),
            RelayMessage::Missed {
                from,
                first,
                last,
                count,
            } => Some(Event::Missed {
                from,
                first,
                last,
                count,
            }),
            // Sent over WebTransport only: a native connection's close carries its code.
            RelayMessage::Welcome(_) | RelayMessage::Refused(_) | RelayMessage::Closing { .. } => {
                None
            }
        };
        if let Some(event) = event {
            if let Event::Left { peer, .. } = &event {
                streams.heard_all_from(peer.id).await;
            }
            // Nobody may be listening (the `Events` were dropped): keep reading anyway, for
            // the relay's notices still settle this client's receipts.
            events.send([event]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_proto::Incoming;

    fn frame(seq: u64, ty: &str, data: &str) -> Bytes {
        let msg = Incoming {
            seq,
            to_all: true,
            r#type: ty.into(),
            data: data.into(),
        };
        // The payload, without the length prefix (as the reader gets it).
        codec::frame(&msg, usize::MAX).unwrap().freeze().slice(4..)
    }

    fn in_place(f: &[u8]) -> Payload<'_> {
        Payload::InPlace(f)
    }

    /// A write takes small frames merged and large ones as they are (the same buffers, not
    /// copies), in order, without what a resend wrote, and stops at `MAX_BATCH` bytes.
    #[test]
    fn a_write_merges_small_frames_and_hands_on_large_ones() {
        let sized = |n: usize, b: u8| Bytes::from(vec![b; n]);
        let queued: Vec<(u64, Bytes)> = [10, 5000, 20, 30, 6000, 10]
            .into_iter()
            .zip(1..)
            .map(|(n, seq)| (seq, sized(n, b'a' + seq as u8)))
            .collect();
        let all: Vec<u8> = queued.iter().flat_map(|(_, f)| f.to_vec()).collect();
        let (mut buf, mut chunks) = (BytesMut::new(), Vec::new());
        assert_eq!(take_write(queued.iter(), 0, &mut buf, &mut chunks), 6);
        let lens: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(lens, [10, 5000, 50, 6000, 10]);
        assert_eq!(chunks.concat(), all);
        assert_eq!(chunks[1].as_ptr(), queued[1].1.as_ptr(), "not copied");
        assert_eq!(chunks[3].as_ptr(), queued[4].1.as_ptr(), "not copied");

        // After a resend that wrote up to seq 3.
        chunks.clear();
        assert_eq!(take_write(queued.iter(), 3, &mut buf, &mut chunks), 6);
        assert_eq!(chunks.concat(), all[10 + 5000 + 20..]);

        // Nothing new.
        chunks.clear();
        assert_eq!(take_write(queued.iter(), 6, &mut buf, &mut chunks), 0);
        assert!(chunks.is_empty());

        // A long queue: one write takes MAX_BATCH bytes' worth and leaves the rest.
        chunks.clear();
        let long: Vec<_> = (1..=40).map(|seq| (seq, sized(5000, 0))).collect();
        let last = take_write(long.iter(), 0, &mut buf, &mut chunks);
        assert_eq!(last, MAX_BATCH.div_ceil(5000) as u64);
        chunks.clear();
        let small: Vec<_> = (1..=10_000).map(|seq| (seq, sized(100, 0))).collect();
        let last = take_write(small.iter(), 0, &mut buf, &mut chunks);
        assert_eq!(chunks.len(), 1, "merged into one");
        assert_eq!(chunks[0].len(), last as usize * 100);
        assert!(chunks[0].len() >= MAX_BATCH && chunks[0].len() < MAX_BATCH + 100);
    }

    /// A write's copies go into one buffer made at the first of them for them all (a large
    /// frame between them included), not one grown as they come.
    #[test]
    fn a_writes_copies_take_one_buffer_of_their_size() {
        let (mut buf, mut chunks) = (BytesMut::new(), Vec::new());
        let queued: Vec<(u64, Bytes)> = (1..=30)
            .map(|seq| {
                (
                    seq,
                    Bytes::from(vec![seq as u8; if seq == 10 { 5000 } else { 1000 }]),
                )
            })
            .collect();
        assert_eq!(take_write(queued.iter(), 0, &mut buf, &mut chunks), 30);
        assert_eq!(
            chunks.len(),
            3,
            "the copies before the large frame, it, the copies after"
        );
        assert_eq!(
            chunks.concat(),
            queued
                .iter()
                .map(|(_, f)| &f[..])
                .collect::<Vec<_>>()
                .concat()
        );
        let (first, last) = (chunks[0].as_ptr_range(), chunks[2].as_ptr_range());
        assert_eq!(first.end, last.start, "one buffer");
        assert_eq!(buf.capacity(), 0, "made to their size: nothing left over");
    }

    #[test]
    fn a_signals_text_does_not_keep_the_received_buffer() {
        let f = frame(7, "chat", "hello");
        let s = received(None, in_place(&f), 6).unwrap().unwrap();
        assert_eq!((s.seq, &*s.r#type, &*s.data), (7, "chat", "hello"));
        let inside = |p: *const u8| f.as_ptr_range().contains(&p);
        assert!(!inside(s.data.as_ptr()) && !inside(s.r#type.as_ptr()));
        // The frame's buffer is not shared with the signal: it is the only owner.
        assert!(f.is_unique());
        // Not newer than what was read: a duplicate.
        assert_eq!(received(None, in_place(&f), 7), Ok(None));
    }

    /// A frame gathered from pieces is a buffer of its own: the signal's text is sliced out of
    /// it, not copied, and keeps nothing else alive.
    #[test]
    fn a_gathered_signals_text_is_a_slice_of_its_frame() {
        let data = "x".repeat(8192);
        let f = Bytes::copy_from_slice(&frame(3, "big", &data));
        let s = received(None, Payload::Gathered(f.clone()), 0)
            .unwrap()
            .unwrap();
        assert_eq!((s.seq, &*s.r#type, &*s.data), (3, "big", &*data));
        let inside = |p: *const u8| f.as_ptr_range().contains(&p);
        assert!(inside(s.data.as_ptr()) && inside(s.r#type.as_ptr()));
        // Checked as text all the same.
        let mut bad = f.to_vec();
        let at = bad.len() - 1;
        bad[at] = 0xff;
        assert_eq!(received(None, Payload::Gathered(bad.into()), 0), Err(()));
    }

    #[test]
    fn text_that_is_not_utf8_is_malformed() {
        let good = frame(1, "t", "ab");
        let mut bad = good.to_vec();
        let at = bad.len() - 1;
        bad[at] = 0xff;
        assert_eq!(received(None, in_place(&bad), 0), Err(()));
        assert_eq!(
            received(None, in_place(&good[..good.len() - 1]), 0),
            Err(())
        );
        // Malformed even when its seq says it is a duplicate.
        assert_eq!(received(None, in_place(&bad), 5), Err(()));
    }
}
