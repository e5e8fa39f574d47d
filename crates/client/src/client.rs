//! The connection to a relay: join, then tasks that read the control stream and the
//! delivery streams, and a writer that sends this client's signals in order.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use signalbox_proto::codec::{self, MAX_CONTROL_FRAME};
use signalbox_proto::{
    ClientMessage, CloseCode, ConnectionId, ConnectionInfo, DeliveryHeader, Hello, Incoming,
    LeftReason, Limits, Outgoing, PROTOCOL_VERSION, RelayMessage, Role, SessionId, SignalError,
    Target, signal,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::error::{ConnectError, RequestError, SendError};
use crate::events::{Event, EventTx, Events, ReceivedSignal, Signal};
use crate::options::ConnectOptions;
use crate::tls;

/// Batches of events that may wait for the application before the client stops reading
/// (each batch holds at most [`EVENT_BATCH`] events).
const EVENT_QUEUE: usize = 64;
/// The most signals handed over in one batch.
const EVENT_BATCH: usize = 64;
/// Encoded signals that may wait for the send stream before `send` waits.
const SEND_QUEUE: usize = 1024;
/// The most bytes merged into one write of the send stream.
const MAX_BATCH: usize = 64 * 1024;

type Frames = FramedRead<quinn::RecvStream, LengthDelimitedCodec>;

/// What a sender waits for: the relay's acceptance, or its rejection.
type Waiter = oneshot::Sender<Result<(), SignalError>>;

#[derive(Debug, Default)]
struct SendState {
    next_seq: u64,
    /// Receipts waiting for `Accepted`/`Rejected`, by seq.
    waiting: BTreeMap<u64, Waiter>,
    accepted_up_to: u64,
}

#[derive(Debug)]
struct Inner {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    me: ConnectionInfo,
    limits: Limits,
    session: SessionId,
    peers: Mutex<HashMap<ConnectionId, ConnectionInfo>>,
    send_state: Mutex<SendState>,
    send_tx: mpsc::Sender<Bytes>,
    control: tokio::sync::Mutex<quinn::SendStream>,
    signals_in: AtomicU64,
    signals_out: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection to a session on a relay. Cheap to clone; every clone is the same
/// connection. Events come separately, from the [`Events`] that `connect` returns.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
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
        let address = options.address();
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, connect_inner(options, None)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                address,
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Like [`Client::connect`], over an existing endpoint (many clients, one UDP socket).
    pub async fn connect_with(
        endpoint: quinn::Endpoint,
        options: ConnectOptions,
    ) -> Result<(Client, Events), ConnectError> {
        let address = options.address();
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, connect_inner(options, Some(endpoint))).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                address,
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// This connection, as the session sees it.
    pub fn me(&self) -> &ConnectionInfo {
        &self.inner.me
    }

    /// The session joined.
    pub fn session(&self) -> &SessionId {
        &self.inner.session
    }

    /// The limits the relay enforces.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Everyone else in the session now.
    pub fn peers(&self) -> Vec<ConnectionInfo> {
        let mut peers: Vec<_> = lock(&self.inner.peers).values().cloned().collect();
        peers.sort_by_key(|p| p.joined_at);
        peers
    }

    /// A peer (or this connection) by id.
    pub fn peer(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        if id == self.inner.me.id {
            return Some(self.inner.me.clone());
        }
        lock(&self.inner.peers).get(&id).cloned()
    }

    /// The QUIC connection's current round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.inner.conn.rtt()
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.conn.close_reason().is_none()
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
        signal::role_may_send(self.inner.me.role).map_err(SendError::Invalid)?;
        signal::validate_signal(&signal.r#type, &signal.data, &signal.to, &self.inner.limits)
            .map_err(SendError::Invalid)?;
        let known =
            |id: &ConnectionId| *id == self.inner.me.id || lock(&self.inner.peers).contains_key(id);
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
    /// Signals from one client are delivered in the order of their `send` calls.
    pub async fn send(&self, signal: Signal) -> Result<Receipt, SendError> {
        let (tx, rx) = oneshot::channel();
        let seq = self.enqueue(&signal, Some(tx)).await?;
        Ok(Receipt { seq, rx })
    }

    /// Sends a signal without a receipt (returns its `seq`); a rejection arrives as
    /// [`Event::Rejected`]. For high rates.
    pub async fn send_unconfirmed(&self, signal: Signal) -> Result<u64, SendError> {
        self.enqueue(&signal, None).await
    }

    async fn enqueue(&self, signal: &Signal, waiter: Option<Waiter>) -> Result<u64, SendError> {
        if !self.is_connected() {
            return Err(SendError::NotConnected);
        }
        self.check(signal)?;
        let permit = self
            .inner
            .send_tx
            .reserve()
            .await
            .map_err(|_| SendError::NotConnected)?;
        let mut state = lock(&self.inner.send_state);
        state.next_seq += 1;
        let seq = state.next_seq;
        let msg = Outgoing {
            seq,
            to: signal.to.clone(),
            r#type: signal.r#type.as_str().into(),
            data: signal.data.as_str().into(),
        };
        let frame = codec::frame(&msg, usize::MAX)
            .map_err(|_| SendError::Invalid(SignalError::EmptyTargetList))?;
        if let Some(w) = waiter {
            state.waiting.insert(seq, w);
        }
        permit.send(frame.freeze());
        self.inner.signals_out.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Removes a connection from the session (moderators only). The relay confirms by the
    /// `Left` event (`forceDisconnected`), or refuses with [`Event::Denied`].
    pub async fn kick(&self, connection: ConnectionId) -> Result<(), RequestError> {
        if self.inner.me.role != Role::Moderator {
            return Err(RequestError::NotModerator);
        }
        self.control(&ClientMessage::Kick { connection }).await
    }

    async fn control(&self, msg: &ClientMessage) -> Result<(), RequestError> {
        let frame = codec::frame(msg, MAX_CONTROL_FRAME).map_err(|_| RequestError::NotConnected)?;
        let mut control = self.inner.control.lock().await;
        control
            .write_chunk(frame.freeze())
            .await
            .map_err(|_| RequestError::NotConnected)
    }

    /// Leaves the session: says goodbye, waits (briefly) for the relay to close the
    /// connection, so that everything sent before arrives first.
    pub async fn leave(&self) {
        if self.control(&ClientMessage::Leave).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.conn.closed()).await;
        }
        self.close();
    }

    /// Closes the connection at once.
    pub fn close(&self) {
        self.inner
            .conn
            .close(CloseCode::Normal.as_u32().into(), b"client closed");
    }

    /// Waits until the connection's UDP socket has sent its last packets (call before exit).
    pub async fn wait_idle(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
    let mut addrs =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_owned(),
                message: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| ConnectError::Resolve {
        host: host.to_owned(),
        message: "no addresses".into(),
    })
}

/// The QUIC transport settings of a client connection.
fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(0u32.into());
    // One stream per active sender, and a session holds 3000 at most.
    t.max_concurrent_uni_streams(4096u32.into());
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_idle_timeout(Duration::from_secs(30).try_into().ok());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(signalbox_proto::PATH_MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(signalbox_proto::ACK_ELICITING_THRESHOLD.into())
        .max_ack_delay(Some(signalbox_proto::MAX_ACK_DELAY));
    t.ack_frequency_config(Some(ack));
    t
}

/// The quinn client configuration Signalbox clients use: TLS 1.3 with ALPN `signalbox/1`,
/// pinned to `fingerprint` when given, and the client's transport settings. For tools that
/// speak the protocol directly (benchmarks, tests, other clients).
pub fn client_config(
    fingerprint: Option<signalbox_proto::Fingerprint>,
) -> Result<quinn::ClientConfig, crate::TlsSetupError> {
    client_config_seen(fingerprint, tls::Seen::default())
}

fn client_config_seen(
    fingerprint: Option<signalbox_proto::Fingerprint>,
    seen: tls::Seen,
) -> Result<quinn::ClientConfig, crate::TlsSetupError> {
    let crypto = tls::client_crypto(fingerprint, seen)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

async fn connect_inner(
    options: ConnectOptions,
    endpoint: Option<quinn::Endpoint>,
) -> Result<(Client, Events), ConnectError> {
    let address = options.address();
    let remote = resolve(&options.host, options.port).await?;
    let seen = tls::Seen::default();
    let config = client_config_seen(options.fingerprint, seen.clone())?;
    let endpoint = match endpoint {
        Some(e) => e,
        None => {
            let bind: SocketAddr = if remote.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            quinn::Endpoint::client(bind).map_err(ConnectError::Socket)?
        }
    };
    let server_name =
        if options.host.parse::<std::net::IpAddr>().is_ok() || options.fingerprint.is_none() {
            options.host.clone()
        } else {
            // Pinned: the name is not checked, but must be a valid DNS name for TLS.
            "signalbox.local".to_owned()
        };
    let connecting = endpoint
        .connect_with(config, remote, &server_name)
        .map_err(|e| ConnectError::Unreachable {
            address: address.clone(),
            message: e.to_string(),
        })?;
    let conn = match connecting.await {
        Ok(c) => c,
        Err(e) => {
            let actual = lock(&seen).take();
            if let (Some(expected), Some(actual)) = (options.fingerprint, actual)
                && expected != actual
            {
                return Err(ConnectError::FingerprintMismatch {
                    address,
                    expected,
                    actual,
                });
            }
            return Err(ConnectError::Unreachable {
                address,
                message: e.to_string(),
            });
        }
    };
    let (mut control, recv) = conn
        .open_bi()
        .await
        .map_err(|e| ConnectError::Unreachable {
            address: address.clone(),
            message: e.to_string(),
        })?;
    let hello = ClientMessage::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        session: options.session.clone(),
        token: options.token.clone(),
        name: options.name.clone(),
        resume: None,
        receive_broadcasts: options.receive_broadcasts,
    });
    let frame = codec::frame(&hello, MAX_CONTROL_FRAME)
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    control
        .write_chunk(frame.freeze())
        .await
        .map_err(|e| ConnectError::Unreachable {
            address: address.clone(),
            message: e.to_string(),
        })?;
    let mut frames = FramedRead::new(recv, codec::codec(MAX_CONTROL_FRAME));
    let first = match frames.next().await {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(ConnectError::Protocol(format!("control stream: {e}"))),
        None => {
            return Err(match conn.close_reason() {
                Some(e) => ConnectError::Unreachable {
                    address,
                    message: e.to_string(),
                },
                None => ConnectError::Protocol("the relay closed the control stream".into()),
            });
        }
    };
    let welcome = match codec::decode::<RelayMessage>(&first) {
        Ok(RelayMessage::Welcome(w)) => w,
        Ok(RelayMessage::Refused(r)) => {
            conn.close(CloseCode::Normal.as_u32().into(), b"refused");
            return Err(ConnectError::Refused {
                code: r.code,
                message: r.message,
            });
        }
        Ok(other) => {
            return Err(ConnectError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )));
        }
        Err(e) => return Err(ConnectError::Protocol(e.to_string())),
    };

    let (send_tx, send_rx) = mpsc::channel(SEND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let peers = welcome.peers.into_iter().map(|p| (p.id, p)).collect();
    let inner = Arc::new(Inner {
        conn: conn.clone(),
        endpoint,
        me: welcome.me,
        limits: welcome.limits,
        session: options.session,
        peers: Mutex::new(peers),
        send_state: Mutex::new(SendState {
            accepted_up_to: welcome.accepted_up_to,
            next_seq: welcome.accepted_up_to,
            ..SendState::default()
        }),
        send_tx,
        control: tokio::sync::Mutex::new(control),
        signals_in: AtomicU64::new(0),
        signals_out: AtomicU64::new(0),
    });
    tokio::spawn(send_writer(conn.clone(), send_rx));
    tokio::spawn(run(inner.clone(), frames, events_tx));
    Ok((Client { inner }, Events::new(events_rx)))
}

/// Writes this client's signals to its send stream, merging what is queued.
async fn send_writer(conn: quinn::Connection, mut rx: mpsc::Receiver<Bytes>) {
    let mut stream: Option<quinn::SendStream> = None;
    let mut buf = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let chunk = match rx.try_recv() {
            Err(_) => first,
            Ok(second) => {
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second);
                while buf.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(f) => buf.extend_from_slice(&f),
                        Err(_) => break,
                    }
                }
                buf.split().freeze()
            }
        };
        let s = match &mut stream {
            Some(s) => s,
            None => match conn.open_uni().await {
                Ok(s) => stream.insert(s),
                Err(_) => return,
            },
        };
        if s.write_chunk(chunk).await.is_err() {
            return;
        }
    }
}

/// Reads the control stream and the delivery streams until the connection ends, then
/// reports the end as the last event.
async fn run(inner: Arc<Inner>, mut control: Frames, events: EventTx) {
    let mut readers = JoinSet::new();
    let mut headers = FuturesOrdered::new();
    // For each sender, the previous delivery stream's "done" (with its last seq): a new
    // stream from the same sender is read only after the previous one, so order holds.
    let mut chains: HashMap<Option<ConnectionId>, oneshot::Receiver<u64>> = HashMap::new();
    let max_frame = inner.limits.max_frame_bytes();
    let control_done = control_reader(&inner, &mut control, &events);
    tokio::pin!(control_done);
    loop {
        tokio::select! {
            stream = inner.conn.accept_uni() => match stream {
                Ok(recv) => headers.push_back(read_header(recv, max_frame)),
                Err(_) => break,
            },
            Some(header) = headers.next() => {
                let Some((from, frames)) = header else { continue };
                if chains.len() > 1024 {
                    chains.retain(|_, rx| rx.is_empty() && !rx.is_terminated());
                }
                let prev = chains.remove(&from);
                let (done_tx, done_rx) = oneshot::channel();
                chains.insert(from, done_rx);
                readers.spawn(read_deliveries(inner.clone(), from, frames, prev, done_tx, events.clone()));
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {},
            _ = &mut control_done => break,
        }
    }
    // Let the readers hand over what they already have.
    while readers.join_next().await.is_some() {}
    lock(&inner.send_state).waiting.clear();
    let (reason, message) = describe_close(inner.conn.closed().await);
    let _ = events
        .send(vec![Event::Disconnected { reason, message }])
        .await;
}

/// Why the connection ended, as a presence reason and a sentence.
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
) -> Option<(Option<ConnectionId>, Frames)> {
    let mut frames = FramedRead::new(recv, codec::codec(max_frame));
    let frame = frames.next().await?.ok()?;
    let header: DeliveryHeader = codec::decode(&frame).ok()?;
    Some((header.from, frames))
}

async fn read_deliveries(
    inner: Arc<Inner>,
    from: Option<ConnectionId>,
    mut frames: Frames,
    prev: Option<oneshot::Receiver<u64>>,
    done: oneshot::Sender<u64>,
    events: EventTx,
) {
    use futures_util::FutureExt;
    let mut last_seq = match prev {
        Some(prev) => prev.await.unwrap_or(0),
        None => 0,
    };
    let mut malformed = false;
    'stream: while let Some(Ok(first)) = frames.next().await {
        // This frame and every other one already read, as one batch.
        let mut batch = Vec::new();
        let mut frame = first;
        loop {
            match codec::decode::<Incoming<'_>>(&frame) {
                Ok(msg) if msg.seq > last_seq => {
                    last_seq = msg.seq;
                    batch.push(Event::Signal(ReceivedSignal {
                        from,
                        seq: msg.seq,
                        to_all: msg.to_all,
                        r#type: msg.r#type.into_owned(),
                        data: msg.data.into_owned(),
                    }));
                }
                Ok(_) => {} // a duplicate
                Err(_) => {
                    malformed = true;
                    break;
                }
            }
            if batch.len() >= EVENT_BATCH {
                break;
            }
            match frames.next().now_or_never() {
                Some(Some(Ok(f))) => frame = f,
                _ => break,
            }
        }
        inner
            .signals_in
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if (!batch.is_empty() && events.send(batch).await.is_err()) || malformed {
            break 'stream;
        }
    }
    if malformed {
        tracing::warn!("malformed signal from the relay; ignoring the rest of its stream");
    }
    let _ = done.send(last_seq);
}

async fn control_reader(inner: &Inner, frames: &mut Frames, events: &EventTx) {
    while let Some(Ok(frame)) = frames.next().await {
        let msg = match codec::decode::<RelayMessage>(&frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "malformed control message from the relay");
                continue;
            }
        };
        let event = match msg {
            RelayMessage::Joined(info) => {
                lock(&inner.peers).insert(info.id, info.clone());
                Some(Event::Joined(info))
            }
            RelayMessage::Left { connection, reason } => {
                let peer = lock(&inner.peers)
                    .remove(&connection)
                    .unwrap_or(ConnectionInfo {
                        id: connection,
                        name: String::new(),
                        role: Role::Publisher,
                        data: String::new(),
                        joined_at: 0,
                    });
                Some(Event::Left { peer, reason })
            }
            RelayMessage::Accepted { up_to } => {
                let mut state = lock(&inner.send_state);
                state.accepted_up_to = state.accepted_up_to.max(up_to);
                let later = state.waiting.split_off(&(up_to + 1));
                let done = std::mem::replace(&mut state.waiting, later);
                drop(state);
                for (_, w) in done {
                    let _ = w.send(Ok(()));
                }
                None
            }
            RelayMessage::Rejected { seq, error } => {
                let waiter = lock(&inner.send_state).waiting.remove(&seq);
                match waiter {
                    // Nobody awaits the receipt any more: report it as an event instead.
                    Some(w) => match w.send(Err(error)) {
                        Ok(()) => None,
                        Err(back) => back.err().map(|error| Event::Rejected { seq, error }),
                    },
                    None => Some(Event::Rejected { seq, error }),
                }
            }
            RelayMessage::Denied { message } => Some(Event::Denied { message }),
            RelayMessage::Missed { count } => Some(Event::Missed { count }),
            RelayMessage::Welcome(_) | RelayMessage::Refused(_) => None,
        };
        if let Some(event) = event
            && events.send(vec![event]).await.is_err()
        {
            return;
        }
    }
}
