//! The client: one joined session, over a link that is replaced when the network fails
//! (see `supervisor`). Sending records every signal until the relay accepts it, so a
//! reconnect can send again what may have been lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use signalbox_proto::codec::{self, MAX_CONTROL_FRAME};
use signalbox_proto::{
    ClientMessage, CloseCode, ConnectionId, ConnectionInfo, Limits, Outgoing, ResumeTicket, Role,
    SessionId, SignalError, Target, signal,
};
use tokio::sync::{oneshot, watch};

use crate::error::{ConnectError, RequestError, SendError};
use crate::events::{Events, Signal};
use crate::link::{self, Dialed, Link};
use crate::options::ConnectOptions;
use crate::supervisor;

/// What a sender waits for: the relay's acceptance, or its rejection.
pub(crate) type Waiter = oneshot::Sender<Result<(), SignalError>>;

/// Where the client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    Connected = 0,
    Reconnecting = 1,
    Closed = 2,
}

#[derive(Debug, Default)]
pub(crate) struct SendState {
    pub(crate) next_seq: u64,
    /// Receipts waiting for `Accepted`/`Rejected`, by seq.
    pub(crate) waiting: BTreeMap<u64, Waiter>,
    /// Every signal not yet accepted or rejected, in the order sent (seqs rise): sent again
    /// after a reconnect. A queue, not a map: a send appends, an `Accepted` takes from the
    /// front, and only a rejection (rare) looks one up.
    ///
    /// It is also the writer's queue: the writer copies small frames out of it into its
    /// writes (and takes a reference to large ones), so a send makes no second reference to
    /// its frame and hands nothing through a channel.
    pub(crate) unacked: VecDeque<(u64, Bytes)>,
    pub(crate) accepted_up_to: u64,
    /// The writer found nothing to write and waits for `Inner::queued`: the next send wakes
    /// it (and only that one, not every send while the writer is busy).
    pub(crate) writer_idle: bool,
}

impl SendState {
    /// The relay took everything up to `up_to` (rejections came before).
    pub(crate) fn accepted(&mut self, up_to: u64) {
        self.accepted_up_to = self.accepted_up_to.max(up_to);
        while self.unacked.front().is_some_and(|(seq, _)| *seq <= up_to) {
            self.unacked.pop_front();
        }
        let later = self.waiting.split_off(&(up_to + 1));
        for (_, w) in std::mem::replace(&mut self.waiting, later) {
            let _ = w.send(Ok(()));
        }
    }

    /// The relay refused `seq`: it is not sent again. `Some` with its receipt's waiter, if
    /// anyone waits; `None` if the client does not hold `seq` (accepted, or refused before:
    /// after a resume the relay tells its recent rejections again), which is nothing new.
    pub(crate) fn rejected(&mut self, seq: u64) -> Option<Option<Waiter>> {
        let at = self.unacked.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        self.unacked.remove(at);
        Some(self.waiting.remove(&seq))
    }

    /// Every pending receipt fails (the client will not send them).
    pub(crate) fn abandon(&mut self) {
        self.unacked.clear();
        self.waiting.clear();
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) options: ConnectOptions,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) session: SessionId,
    pub(crate) link: ArcSwap<Link>,
    /// Bumped whenever a new link is in place (the writer then sends again what is unacked).
    pub(crate) link_generation: watch::Sender<u64>,
    pub(crate) state: AtomicU8,
    /// `leave`/`close` was called: never reconnect.
    pub(crate) closing: AtomicBool,
    pub(crate) me: ArcSwap<ConnectionInfo>,
    pub(crate) limits: Mutex<Limits>,
    pub(crate) ticket: Mutex<Option<ResumeTicket>>,
    pub(crate) peers: Mutex<HashMap<ConnectionId, ConnectionInfo>>,
    pub(crate) send_state: Mutex<SendState>,
    /// Woken when signals leave the unaccepted set or the state changes: a `send` waiting
    /// for room (`max_unaccepted` reached while connected) looks again.
    pub(crate) room: tokio::sync::Notify,
    /// Woken by a send when the writer waits for signals (`SendState::writer_idle`).
    pub(crate) queued: tokio::sync::Notify,
    /// The last seq received from each sender (for dropping duplicates and resuming).
    pub(crate) seen: Mutex<HashMap<Option<ConnectionId>, u64>>,
    pub(crate) signals_in: AtomicU64,
    pub(crate) signals_out: AtomicU64,
    /// Cancelled when the client has closed for good: its tasks end.
    pub(crate) stopped: tokio_util::sync::CancellationToken,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    pub(crate) fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Connected,
            1 => State::Reconnecting,
            _ => State::Closed,
        }
    }

    pub(crate) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
        if s == State::Closed {
            self.stopped.cancel();
        }
        self.room.notify_waiters();
    }

    /// Waits (briefly) until the relay has taken every signal sent, says `Leave` on the
    /// current link and waits (briefly) for the relay to close the connection; then closes.
    pub(crate) async fn leave(&self) {
        // The relay stops reading the send stream at `Leave`: first let it take what was sent
        // (every signal accepted or rejected), for a bounded time.
        let deadline = tokio::time::Instant::now() + LEAVE_WAIT;
        while self.state() == State::Connected
            && !lock(&self.send_state).unacked.is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.closing.store(true, Ordering::Release);
        if self.control(&ClientMessage::Leave).await.is_ok() {
            let conn = self.link.load().conn.clone();
            let _ = tokio::time::timeout(LEAVE_WAIT, conn.closed()).await;
        }
        self.close();
    }

    /// Closes the current link with code 0 (a leave) and never reconnects.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.link
            .load()
            .conn
            .close(CloseCode::Normal.as_u32().into(), b"client closed");
    }

    async fn control(&self, msg: &ClientMessage) -> Result<(), RequestError> {
        if self.state() != State::Connected {
            return Err(RequestError::NotConnected);
        }
        let frame = codec::frame(msg, MAX_CONTROL_FRAME).map_err(|_| RequestError::NotConnected)?;
        let link = self.link.load_full();
        let mut control = link.control.lock().await;
        control
            .write_chunk(frame.freeze())
            .await
            .map_err(|_| RequestError::NotConnected)
    }
}

/// How long `leave` waits for the relay to close the connection after `Leave`.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// Held by every [`Client`] clone and by the [`Events`]: when the last of them is dropped,
/// the client leaves the session (in the background, on the current Tokio runtime; closing
/// the connection at once where there is none) and its tasks end.
#[derive(Debug)]
pub(crate) struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if self.inner.closing.load(Ordering::Acquire) || self.inner.stopped.is_cancelled() {
            // Left or closed already.
            return;
        }
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { inner.leave().await });
            }
            Err(_) => inner.close(),
        }
    }
}

/// A connection to a session on a relay. Cheap to clone; every clone is the same
/// connection. Events come separately, from the [`Events`] that `connect` returns.
///
/// When the network fails, the client reconnects by itself (see
/// [`ConnectOptions::reconnect`]): it resumes as the same connection when the relay still
/// holds it, sends again every signal the relay has not accepted, and tells about it with
/// [`Event::Reconnecting`](crate::Event::Reconnecting) and
/// [`Event::Reconnected`](crate::Event::Reconnected).
///
/// Dropping: the client stays in the session while any clone of it or its [`Events`] is
/// alive. When the last of them is dropped it leaves — sends `Leave` and closes the
/// connection, so peers see `clientDisconnected` at once — and its tasks end. Call
/// [`Client::leave`] to leave at a time of your choosing and wait for it.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

/// The relay's answer to a sent signal: await [`Receipt::accepted`].
#[derive(Debug)]
pub struct Receipt {
    seq: u64,
    rx: oneshot::Receiver<Result<(), SignalError>>,
}

impl Receipt {
    /// The signal's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits until the relay accepted the signal (its `seq`) or rejected it.
    pub async fn accepted(self) -> Result<u64, SendError> {
        match self.rx.await {
            Ok(Ok(())) => Ok(self.seq),
            Ok(Err(e)) => Err(SendError::Rejected(e)),
            Err(_) => Err(SendError::NotConnected),
        }
    }
}

impl Client {
    /// Connects to the relay, joins the session, and starts the client's tasks.
    pub async fn connect(options: ConnectOptions) -> Result<(Client, Events), ConnectError> {
        Self::connect_on(None, options).await
    }

    /// Like [`Client::connect`], over an existing endpoint (many clients, one UDP socket).
    pub async fn connect_with(
        endpoint: quinn::Endpoint,
        options: ConnectOptions,
    ) -> Result<(Client, Events), ConnectError> {
        Self::connect_on(Some(endpoint), options).await
    }

    async fn connect_on(
        endpoint: Option<quinn::Endpoint>,
        options: ConnectOptions,
    ) -> Result<(Client, Events), ConnectError> {
        let address = options.address();
        let timeout = options.connect_timeout;
        let attempt = async {
            let endpoint = match endpoint {
                Some(e) => e,
                None => link::endpoint_for(&options).await?,
            };
            match link::dial(&endpoint, &options, None, Vec::new()).await? {
                Dialed::Joined(joined) => {
                    let (link, frames, welcome) = *joined;
                    Ok((endpoint, link, frames, welcome))
                }
                Dialed::Refused(r) => Err(ConnectError::Refused {
                    code: r.code,
                    message: r.message,
                }),
            }
        };
        let (endpoint, link, frames, welcome) = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ConnectError::Timeout {
                    address,
                    seconds: timeout.as_secs(),
                });
            }
        };
        let peers = welcome.peers.into_iter().map(|p| (p.id, p)).collect();
        let inner = Arc::new(Inner {
            session: options.session.clone(),
            options,
            endpoint,
            link: ArcSwap::from_pointee(link),
            link_generation: watch::Sender::new(0),
            state: AtomicU8::new(State::Connected as u8),
            closing: AtomicBool::new(false),
            me: ArcSwap::from_pointee(welcome.me),
            limits: Mutex::new(welcome.limits),
            ticket: Mutex::new(Some(welcome.resume)),
            peers: Mutex::new(peers),
            send_state: Mutex::new(SendState::default()),
            room: tokio::sync::Notify::new(),
            queued: tokio::sync::Notify::new(),
            seen: Mutex::new(HashMap::new()),
            signals_in: AtomicU64::new(0),
            signals_out: AtomicU64::new(0),
            stopped: tokio_util::sync::CancellationToken::new(),
        });
        let owner = Arc::new(Owner {
            inner: inner.clone(),
        });
        let events = supervisor::start(inner.clone(), frames, owner.clone());
        Ok((
            Client {
                inner,
                _owner: owner,
            },
            events,
        ))
    }

    /// This connection, as the session sees it (a new one after a rejoin).
    pub fn me(&self) -> ConnectionInfo {
        ConnectionInfo::clone(&self.inner.me.load())
    }

    /// The session joined.
    pub fn session(&self) -> &SessionId {
        &self.inner.session
    }

    /// The limits the relay enforces.
    pub fn limits(&self) -> Limits {
        *lock(&self.inner.limits)
    }

    /// Everyone else in the session now.
    pub fn peers(&self) -> Vec<ConnectionInfo> {
        let mut peers: Vec<_> = lock(&self.inner.peers).values().cloned().collect();
        peers.sort_by_key(|p| p.joined_at);
        peers
    }

    /// A peer (or this connection) by id.
    pub fn peer(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        let me = self.me();
        if id == me.id {
            return Some(me);
        }
        lock(&self.inner.peers).get(&id).cloned()
    }

    /// The relay's address on the current connection.
    pub fn session_address(&self) -> Option<std::net::SocketAddr> {
        Some(self.inner.link.load().conn.remote_address())
    }

    /// The QUIC connection's current round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.inner.link.load().conn.rtt()
    }

    /// Whether the client is joined now (not reconnecting, not closed).
    pub fn is_connected(&self) -> bool {
        self.inner.state() == State::Connected
    }

    /// Whether the client is reconnecting after a network failure.
    pub fn is_reconnecting(&self) -> bool {
        self.inner.state() == State::Reconnecting
    }

    /// Signals received and sent so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.signals_in.load(Ordering::Relaxed),
            self.inner.signals_out.load(Ordering::Relaxed),
        )
    }

    /// The highest `seq` the relay has accepted.
    pub fn accepted_up_to(&self) -> u64 {
        lock(&self.inner.send_state).accepted_up_to
    }

    /// Checks a signal as the relay will: role, type, data, target shape, and that targets
    /// are in the session (as far as this client knows).
    pub fn check(&self, signal: &Signal) -> Result<(), SendError> {
        // Looked at where it is, not copied: `me()` copies the name and connection data,
        // two allocations for every signal sent.
        let me = self.inner.me.load();
        signal::role_may_send(me.role).map_err(SendError::Invalid)?;
        signal::validate_signal(&signal.r#type, &signal.data, &signal.to, &self.limits())
            .map_err(SendError::Invalid)?;
        let known = |id: &ConnectionId| *id == me.id || lock(&self.inner.peers).contains_key(id);
        let missing = match &signal.to {
            Target::All => None,
            Target::One(id) => (!known(id)).then_some(*id),
            Target::List(ids) => ids.iter().find(|id| !known(id)).copied(),
        };
        match missing {
            Some(connection) => Err(SendError::Invalid(SignalError::TargetNotFound {
                connection,
            })),
            None => Ok(()),
        }
    }

    /// Sends a signal; the [`Receipt`] tells when the relay accepted or rejected it.
    /// Signals from one client are delivered in the order of their `send` calls. While the
    /// client is reconnecting they wait (and are sent once it is back) unless
    /// `retry_after_reconnect` is off. With `max_unaccepted` signals not yet accepted, `send`
    /// waits while connected until the relay takes some (a sender faster than the relay is
    /// slowed, never dropped), and fails with [`SendError::QueueFull`] while reconnecting.
    /// Cancel-safe: a `send` dropped before it returns (a timeout around it, say) sent nothing.
    pub async fn send(&self, signal: Signal) -> Result<Receipt, SendError> {
        let (tx, rx) = oneshot::channel();
        let seq = self.enqueue(&signal, Some(tx)).await?;
        Ok(Receipt { seq, rx })
    }

    /// Sends a signal without a receipt (returns its `seq`); a rejection arrives as
    /// [`Event::Rejected`](crate::Event::Rejected). For high rates.
    pub async fn send_unconfirmed(&self, signal: Signal) -> Result<u64, SendError> {
        self.enqueue(&signal, None).await
    }

    async fn enqueue(&self, signal: &Signal, waiter: Option<Waiter>) -> Result<u64, SendError> {
        match self.inner.state() {
            State::Closed => return Err(SendError::NotConnected),
            State::Reconnecting if !self.inner.options.retry_after_reconnect => {
                return Err(SendError::NotConnected);
            }
            _ => {}
        }
        self.check(signal)?;
        // A send that finds room does not wait, so a task sending in a loop would never give
        // its thread back before `max_unaccepted`: it takes a unit of the runtime's budget,
        // as a send into a channel does, and yields when that is spent. One unit per signal,
        // not fewer: with longer turns a sender outran the receivers on its own thread
        // (`bench/results/2026-12-08-send-budget.md`).
        tokio::task::coop::consume_budget().await;
        // At `max_unaccepted`: while connected, wait for the relay to take some (the
        // sender is faster than the relay; back-pressure, nothing dropped); while
        // reconnecting, fail (the queue of a link that may never return stays bounded).
        let limit = self.inner.options.max_unaccepted;
        let mut state = loop {
            {
                let state = lock(&self.inner.send_state);
                if state.unacked.len() < limit {
                    break state;
                }
            }
            // Full: registered for a wake-up before looking again, so none is missed. (Only
            // here: registering on every send took the `Notify`'s lock twice per signal.)
            let room = self.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if lock(&self.inner.send_state).unacked.len() < limit {
                continue;
            }
            match self.inner.state() {
                State::Connected => {}
                State::Reconnecting if self.inner.options.retry_after_reconnect => {
                    return Err(SendError::QueueFull(limit));
                }
                State::Reconnecting | State::Closed => return Err(SendError::NotConnected),
            }
            room.await;
        };
        state.next_seq += 1;
        let seq = state.next_seq;
        let msg = Outgoing {
            seq,
            to: signal.to.clone(),
            r#type: signal.r#type.as_str().into(),
            data: signal.data.as_str().into(),
        };
        // Measured first and written once into a buffer of its size (a buffer grown as it
        // is written reallocates and copies: five times for a 1 KiB signal).
        let frame = codec::exact_frame(&msg, usize::MAX)
            .map_err(|_| SendError::Invalid(SignalError::EmptyTargetList))?;
        state.unacked.push_back((seq, frame));
        if let Some(w) = waiter {
            state.waiting.insert(seq, w);
        }
        let wake = std::mem::take(&mut state.writer_idle);
        drop(state);
        if wake {
            self.inner.queued.notify_one();
        }
        self.inner.signals_out.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Removes a connection from the session (moderators only). The relay confirms by the
    /// `Left` event (`forceDisconnected`), or refuses with [`Event::Denied`](crate::Event::Denied).
    pub async fn kick(&self, connection: ConnectionId) -> Result<(), RequestError> {
        if self.me().role != Role::Moderator {
            return Err(RequestError::NotModerator);
        }
        self.control(&ClientMessage::Kick { connection }).await
    }

    async fn control(&self, msg: &ClientMessage) -> Result<(), RequestError> {
        self.inner.control(msg).await
    }

    /// Leaves the session: waits (at most a second) until the relay has taken every signal
    /// sent, says goodbye, and waits (at most a second) for the relay to close the
    /// connection. Peers see `clientDisconnected`.
    pub async fn leave(&self) {
        self.inner.leave().await;
    }

    /// Closes the connection at once with code 0 (peers see `clientDisconnected`; signals
    /// not yet written may be lost) and never reconnects.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Waits until the connection's UDP socket has sent its last packets (call before exit).
    pub async fn wait_idle(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seqs: std::ops::RangeInclusive<u64>) -> SendState {
        let mut s = SendState::default();
        for seq in seqs {
            s.next_seq = seq;
            s.unacked.push_back((seq, Bytes::from(seq.to_string())));
        }
        s
    }

    fn seqs(s: &SendState) -> Vec<u64> {
        s.unacked.iter().map(|(seq, _)| *seq).collect()
    }

    /// `Accepted` takes everything up to its seq, however many at once, and nothing later;
    /// an older `Accepted` after a newer one takes nothing back.
    #[test]
    fn accepted_takes_the_front_up_to_its_seq() {
        let mut s = state(1..=6);
        s.accepted(3);
        assert_eq!(seqs(&s), [4, 5, 6]);
        s.accepted(2);
        assert_eq!(seqs(&s), [4, 5, 6]);
        assert_eq!(s.accepted_up_to, 3);
        s.accepted(9);
        assert!(s.unacked.is_empty());
    }

    /// A rejection removes exactly its signal, wherever it is, and gives back its receipt;
    /// a seq not held (already accepted or refused, or unknown) changes nothing.
    #[test]
    fn a_rejection_removes_only_its_signal() {
        let mut s = state(1..=5);
        let (tx, _rx) = tokio::sync::oneshot::channel();
        s.waiting.insert(3, tx);
        assert!(
            matches!(s.rejected(3), Some(Some(_))),
            "its receipt's waiter"
        );
        assert_eq!(seqs(&s), [1, 2, 4, 5]);
        // Held but nobody waits: reported, as an event.
        assert!(matches!(s.rejected(2), Some(None)));
        assert_eq!(seqs(&s), [1, 4, 5]);
        // Told again (after a resume), unknown, or accepted already: nothing new.
        assert!(s.rejected(3).is_none());
        assert!(s.rejected(7).is_none());
        assert_eq!(seqs(&s), [1, 4, 5]);
        s.accepted(4);
        assert!(s.rejected(1).is_none());
        assert_eq!(seqs(&s), [5]);
        assert_eq!(&s.unacked[0].1[..], b"5");
    }
}
