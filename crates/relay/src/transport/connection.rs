//! One task per connection: the join handshake, then a `select!` loop over cancellation,
//! the control stream (both ways), the client's send stream, and the connection's end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use signalbox_proto::codec;
use signalbox_proto::{
    ClientMessage, CloseCode, ConnectionId, ConnectionInfo, Hello, Incoming, LeftReason, Outgoing,
    PROTOCOL_VERSION, RefuseCode, Refused, RelayMessage, ResumeTicket, Role, SessionId,
    SignalError, Welcome, token,
};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::admission::{Joined, Pending};
use crate::engine::admit::{self, Rules};
use crate::engine::ratelimit::{Allowance, TokenBucket};
use crate::engine::sequence::Seq;
use crate::frames;
use crate::registry::{BucketKey, CLOSING_WAIT, Member, Roster, Session, lock};
use crate::server::Shared;
use crate::transport::delivery::{self, Fanout};
use crate::transport::link::{Link, LinkRecv, LinkSend};

/// Encoded control frames that may wait for one connection.
const CONTROL_QUEUE: usize = 8192;
/// The largest `Hello` frame a client may send: room for a resume's `seen` list of a full
/// session (3000 senders × at most 21 bytes), a token and a name.
pub(crate) const MAX_HELLO_FRAME: usize = 64 * 1024;
/// The largest control frame a client may send after `Hello` (`Kick` and `Leave` are under
/// 20 bytes).
pub(crate) const MAX_CLIENT_CONTROL_FRAME: usize = 1024;
/// Signals handled before the reader lets the connection's other work run…
const YIELD_EVERY: u32 = 1024;
/// …or bytes of signals, whichever comes first: a turn of large signals takes no longer than
/// 128 of the largest did before (a turn of small ones is where the count matters: the
/// longer a turn, the more signals each route takes per write, and the fewer datagrams).
const YIELD_BYTES: usize = 1 << 20;
/// Signals handled between two prunings of the sender's routes.
const PRUNE_EVERY: u32 = 8192;
/// The least time between two `Accepted` notices to one sender: a sender at full speed gets
/// a few hundred notices a second, not one per read batch.
const ACCEPT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(2);

/// A client's stream (control or send), read in the chunks the transport hands over. Nothing
/// is kept between frames but the rest of a chunk: a member holds two of these for its life,
/// and a `FramedRead`'s buffer was 512 bytes of every idle connection (as large as a resume's
/// `Hello` after one).
struct Frames {
    recv: LinkRecv,
    deframer: codec::Deframer,
    /// What is left of the last chunk (usually nothing).
    chunk: Bytes,
    /// When the last chunk was read (see [`Frames::arrived`]).
    arrived: Instant,
}

impl Frames {
    fn new(recv: LinkRecv, max_frame_bytes: usize) -> Self {
        Self {
            recv,
            deframer: codec::Deframer::new(max_frame_bytes),
            chunk: Bytes::new(),
            arrived: Instant::now(),
        }
    }

    /// When the chunk the last frame came in was read. A sender's rate is judged by when its
    /// signals arrived, so the clock is read once per chunk rather than once per signal: a
    /// chunk of small signals holds dozens, and a clock read (about 45 ns on a virtual
    /// machine) was 5 % of the relay's time on a 1→1 row of small signals.
    fn arrived(&self) -> Instant {
        self.arrived
    }

    /// The next frame if the chunk in hand completes it (no wait); `None` when it is used
    /// up.
    fn next_in_hand(&mut self) -> Result<Option<Bytes>, String> {
        if self.chunk.is_empty() {
            return Ok(None);
        }
        let frame = self
            .deframer
            .next_frame(&mut self.chunk)
            .map_err(|e| e.to_string())?;
        if self.chunk.is_empty() {
            // An empty slice would still hold the chunk's allocation.
            self.chunk = Bytes::new();
        }
        Ok(frame)
    }

    /// The next frame (a slice of the chunk it came in); `None` at the stream's end.
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(frame) = self.next_in_hand()? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk().await {
                Ok(Some(chunk)) => {
                    self.chunk = chunk;
                    self.arrived = Instant::now();
                }
                Ok(None) if self.deframer.is_mid_frame() => {
                    return Err("it ended inside a frame".into());
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.0),
            }
        }
    }
}

/// Why the connection's loop ended early.
enum End {
    /// Close with this code and reason.
    Close(CloseCode, String),
    /// The connection is already gone.
    Lost,
}

fn protocol(msg: impl Into<String>) -> End {
    End::Close(CloseCode::ProtocolError, msg.into())
}

/// Serves one incoming connection until it ends. It holds a pending slot until it joins.
///
/// What a task holds for its whole life is the largest state of its future, and an
/// `async fn` keeps room for its arguments beside its later states. So every phase before the
/// member runs is boxed, and started here rather than inside the future: the task keeps only
/// what serving a member needs, which is what an idle connection costs.
pub(crate) fn handle(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    pending: Pending,
) -> impl Future<Output = ()> {
    let remote = incoming.remote_address();
    let span = tracing::info_span!("conn", %remote, id = tracing::field::Empty);
    let handshake = Box::pin(handshake(incoming, shared.clone()));
    async move {
        let Some(link) = handshake.await else {
            return;
        };
        serve_link(link, shared, pending).await;
    }
    .instrument(span)
}

/// The QUIC handshake and, for a browser, WebTransport's; `None` if either fails in time.
async fn handshake(incoming: quinn::Incoming, shared: Arc<Shared>) -> Option<Link> {
    let config = shared
        .server_config
        .for_peer(incoming.remote_address().ip());
    let connecting = match incoming.accept_with(config) {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            return None;
        }
    };
    let conn = match tokio::time::timeout(shared.config.handshake_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "QUIC handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("QUIC handshake timed out");
            return None;
        }
    };
    if !crate::transport::webtransport::is_h3(&conn) {
        return Some(Link::Quic(conn));
    }
    // A browser: WebTransport's own handshake (HTTP/3 settings, then CONNECT) counts
    // toward the handshake's time.
    let accepted = tokio::time::timeout(
        shared.config.handshake_timeout,
        crate::transport::webtransport::accept(conn),
    );
    match accepted.await {
        Ok(Some(session)) => Some(Link::WebTransport(Box::new(session))),
        _ => None,
    }
}

/// Serves a client on `link` (whatever carries it): its `Hello`, then the member, until the
/// connection ends. It holds a pending slot until it joins. (Not an `async fn`: see `handle`.)
pub(crate) fn serve_link(
    link: Link,
    shared: Arc<Shared>,
    pending: Pending,
) -> impl Future<Output = ()> {
    let admit = Box::pin(admit_link(link, shared.clone(), pending));
    async move {
        let Some((_joined, admitted)) = admit.await else {
            return;
        };
        run_member(Box::new(admitted), shared).await;
    }
}

/// Reads the `Hello` and joins (or resumes) the member; refuses it otherwise.
async fn admit_link(
    link: Link,
    shared: Arc<Shared>,
    pending: Pending,
) -> Option<(Joined, Admitted)> {
    let hello = tokio::time::timeout(shared.config.hello_timeout, read_hello(&link, &shared));
    let (send, frames, hello) = match hello.await {
        Ok(Ok(x)) => x,
        Ok(Err(End::Close(code, reason))) => {
            tracing::debug!(%reason, "bad hello");
            link.close(code, &reason);
            return None;
        }
        Ok(Err(End::Lost)) => return None,
        Err(_) => {
            link.close(
                CloseCode::HandshakeTimeout,
                "no Hello within the hello timeout",
            );
            return None;
        }
    };
    join(link, send, frames, hello, &shared, pending).await
}

/// A member ready to be served on a connection.
struct Admitted {
    conn: Link,
    send: LinkSend,
    frames: Frames,
    session: Arc<Session>,
    member: Arc<Member>,
    /// Which of the member's connections this is (see `Member::attach`).
    generation: u64,
    /// The last of its signals the relay took (told again after a resume).
    accepted: u64,
    /// The first frame the client reads (`None` only if it could not be encoded, a bug).
    welcome: Option<Bytes>,
}

async fn read_hello(link: &Link, shared: &Shared) -> Result<(LinkSend, Frames, Hello), End> {
    let (send, recv) = link.accept_bi().await.map_err(|_| End::Lost)?;
    let mut frames = Frames::new(recv, MAX_HELLO_FRAME);
    let frame = match frames.next().await {
        Ok(Some(f)) => f,
        Err(e) => return Err(protocol(format!("control stream: {e}"))),
        Ok(None) => return Err(protocol("control stream ended before Hello")),
    };
    // After Hello a client sends only Kick and Leave: small frames.
    frames
        .deframer
        .set_max_frame_bytes(MAX_CLIENT_CONTROL_FRAME);
    match codec::decode::<ClientMessage>(&frame) {
        Ok(ClientMessage::Hello(hello)) => {
            // A resume names at most one entry per sender a session can hold (and the relay).
            let most = shared.config.max_connections_per_session as usize + 1;
            if hello.seen.len() > most {
                return Err(protocol(format!(
                    "Hello.seen lists {} senders; a session holds at most {most}",
                    hello.seen.len()
                )));
            }
            Ok((send, frames, hello))
        }
        Ok(_) => Err(protocol("the first message must be Hello")),
        Err(e) => Err(protocol(format!("malformed Hello: {e}"))),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Decides who the connection is from its `Hello`: role, name, data.
fn authorize(hello: &Hello, shared: &Shared, id: ConnectionId) -> Result<ConnectionInfo, Refused> {
    check_protocol(hello)?;
    let (role, token_name, data) = match &hello.token {
        Some(t) => match shared.tokens.verify(t, hello.session.as_str()) {
            Ok(claims) => (claims.role, claims.name, claims.data.unwrap_or_default()),
            // Not one of ours: perhaps a token an OpenTok server SDK made with this relay's
            // Vonage-compatible API secret.
            Err(ours) => {
                match crate::http::vonage::verify_client_token(
                    &shared.vonage,
                    t,
                    hello.session.as_str(),
                ) {
                    Ok(grant) => (grant.role, None, grant.data),
                    // Report the more telling refusal: a legacy token's own, or (for a JWT) the
                    // Vonage check's when it got further than "not signed by us".
                    Err(theirs) => {
                        let vonage_shaped = t.starts_with("T1==")
                            || (ours.code == RefuseCode::InvalidToken
                                && theirs.code != RefuseCode::InvalidToken);
                        return Err(if vonage_shaped { theirs } else { ours });
                    }
                }
            }
        },
        None if shared.config.open => (Role::Publisher, None, String::new()),
        None => {
            return Err(Refused {
                code: RefuseCode::InvalidToken,
                message: "this relay needs a token to join; ask its operator for an invite".into(),
            });
        }
    };
    let name = token_name
        .or_else(|| hello.name.clone())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("guest-{}", &id.short()[..4]));
    token::validate_name(&name).map_err(|e| Refused {
        code: RefuseCode::BadRequest,
        message: e.to_string(),
    })?;
    Ok(ConnectionInfo {
        id,
        name,
        role,
        data,
        joined_at: now_ms(),
    })
}

/// A join or a resume in another protocol version is refused.
fn check_protocol(hello: &Hello) -> Result<(), Refused> {
    if hello.protocol == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(Refused {
        code: RefuseCode::UnsupportedProtocol,
        message: format!(
            "this relay speaks protocol {PROTOCOL_VERSION}; the client speaks {}",
            hello.protocol
        ),
    })
}

/// Refuses the join: the `Refused` message, acknowledged, then the close.
async fn refuse(conn: &Link, mut send: LinkSend, refused: Refused, shared: &Shared) {
    tracing::info!(code = refused.code.code(), reason = %refused.message, "join refused");
    if let Some(frame) = frames::control(&RelayMessage::Refused(refused.clone())) {
        let _ = send.write_chunk(frame).await;
        send.finish();
        // Long enough for the client to read why; a refused connection holds its slot no
        // longer than a joining one may wait for its Hello.
        let _ = tokio::time::timeout(shared.config.hello_timeout, send.stopped()).await;
    }
    conn.close(CloseCode::Refused, &refused.message);
}

/// The `Rejected` frame for a signal (`None` only if it could not be encoded, a bug).
fn rejection(seq: u64, error: signalbox_proto::SignalError) -> Option<Bytes> {
    frames::control(&RelayMessage::Rejected { seq, error })
}

/// Acceptance level shared by the signal reader (which raises it) and the control writer
/// (which reports it).
struct Acceptance {
    up_to: AtomicU64,
    notify: Notify,
}

/// Joins a new member, or resumes one (the `Hello` has a ticket).
async fn join(
    conn: Link,
    send: LinkSend,
    frames: Frames,
    hello: Hello,
    shared: &Arc<Shared>,
    pending: Pending,
) -> Option<(Joined, Admitted)> {
    // From here on the connection holds a joined slot (until it ends), not a pending one.
    let joined: Joined = match pending.join() {
        Ok(joined) => joined,
        Err(why) => {
            let refused = Refused {
                code: RefuseCode::RelayFull,
                message: why.into(),
            };
            refuse(&conn, send, refused, shared).await;
            return None;
        }
    };
    if let Some(ticket) = &hello.resume {
        let admitted = resume(conn, send, frames, &hello, ticket, shared).await?;
        return Some((joined, admitted));
    }
    let id = ConnectionId::random();
    tracing::Span::current().record("id", tracing::field::display(id));
    let info = match authorize(&hello, shared, id) {
        Ok(info) => info,
        Err(refused) => {
            refuse(&conn, send, refused, shared).await;
            return None;
        }
    };
    let token_key = hello.token.as_deref().map(crate::registry::token_key);
    let bucket_key = match token_key {
        Some(key) => BucketKey::Token(key),
        None => BucketKey::Source(conn.remote_ip()),
    };
    let now = Instant::now();
    let fanout_rate = shared.config.fanout_bytes_per_second;
    let fresh = Allowance {
        signals: TokenBucket::new(
            shared.limits.signals_per_second,
            shared.limits.signal_burst,
            now,
        ),
        bytes: TokenBucket::new(fanout_rate, fanout_rate, now),
    };
    let member = Arc::new(Member::new(
        info.clone(),
        conn.clone(),
        shared.cancel.child_token(),
        hello.receive_broadcasts,
        CONTROL_QUEUE,
        token_key,
        bucket_key,
        shared.registry.allowance(bucket_key, fresh),
    ));
    let elsewhere = shared.others.count(&hello.session);
    let (session, mut peers) = match shared
        .registry
        .join(&hello.session, member.clone(), elsewhere)
    {
        Ok(x) => x,
        Err(refused) => {
            refuse(&conn, send, refused, shared).await;
            return None;
        }
    };
    shared.others.joined(shared, &hello.session, &info);
    peers.extend(shared.others.members(&hello.session));
    tracing::info!(session = %hello.session, name = %info.name, role = %info.role, via = conn.kind(), "joined");
    shared.metrics.joined();
    let welcome = Welcome {
        me: info,
        peers,
        limits: shared.limits,
        resume: ResumeTicket {
            connection: id,
            secret: member.secret,
        },
        accepted_up_to: 0,
    };
    Some((
        joined,
        Admitted {
            conn,
            send,
            frames,
            session,
            member,
            generation: 0,
            accepted: 0,
            welcome: frames::control(&RelayMessage::Welcome(welcome)),
        },
    ))
}

/// A client comes back within the grace period: the same member, a new connection.
async fn resume(
    conn: Link,
    send: LinkSend,
    frames: Frames,
    hello: &Hello,
    ticket: &ResumeTicket,
    shared: &Shared,
) -> Option<Admitted> {
    tracing::Span::current().record("id", tracing::field::display(ticket.connection));
    if let Err(refused) = check_protocol(hello) {
        refuse(&conn, send, refused, shared).await;
        return None;
    }
    let gone = || Refused {
        code: RefuseCode::ResumeFailed,
        message: format!(
            "connection {} is no longer in session '{}' (its grace period ended, or the relay restarted); join again",
            ticket.connection, hello.session
        ),
    };
    let Some((session, member)) = shared.registry.member(&hello.session, ticket.connection) else {
        refuse(&conn, send, gone(), shared).await;
        return None;
    };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &member.secret[..],
        &ticket.secret[..],
    )) {
        let refused = Refused {
            code: RefuseCode::ResumeFailed,
            message: format!(
                "the resume ticket does not match connection {}",
                ticket.connection
            ),
        };
        refuse(&conn, send, refused, shared).await;
        return None;
    }
    let seen = hello.seen.iter().map(|s| (s.from, s.seq)).collect();
    let Some(generation) = member.attach(conn.clone(), seen) else {
        refuse(&conn, send, gone(), shared).await;
        return None;
    };
    tracing::info!(session = %hello.session, "resumed");
    // The connection left behind is closed, and its control writer ends with it (taking
    // nothing more: see `control_writer`). Whatever it took from the member's control queue
    // before that — news, answers — is in what follows: the peers and the acceptance level
    // read below, and the rejections told again after the `Welcome`.
    drop(member.receiver.control_rx.lock().await);
    let mut peers: Vec<ConnectionInfo> = session
        .roster()
        .members
        .values()
        .filter(|m| m.id() != member.id())
        .map(|m| m.info.clone())
        .collect();
    peers.extend(shared.others.members(&hello.session));
    let accepted = lock(&member.sender).sequence.last();
    let welcome = Welcome {
        me: member.info.clone(),
        peers,
        limits: shared.limits,
        resume: ticket.clone(),
        accepted_up_to: accepted,
    };
    Some(Admitted {
        conn,
        send,
        frames,
        session,
        member,
        generation,
        accepted,
        welcome: frames::control(&RelayMessage::Welcome(welcome)),
    })
}

/// Serves a member on one connection (its `generation`) until the connection ends; then the
/// member leaves, or — if the network took the connection — waits a grace period for its
/// client to resume.
async fn run_member(admitted: Box<Admitted>, shared: Arc<Shared>) {
    let Admitted {
        conn,
        mut send,
        mut frames,
        session,
        member,
        generation,
        accepted,
        welcome,
    } = *admitted;
    let welcomed = match welcome {
        Some(frame) => send.write_chunk(frame).await.is_ok(),
        None => false,
    };
    for (from, lost) in member.take_missed() {
        if let Some(frame) = frames::control(&RelayMessage::Missed {
            from,
            first: lost.first,
            last: lost.last,
            count: lost.count,
        }) {
            member.send_control(frame);
        }
    }
    let acceptance = Acceptance {
        up_to: AtomicU64::new(accepted),
        notify: Notify::new(),
    };
    if accepted > 0 {
        // After a resume, tell again the recent rejections and how far the relay got, in that
        // order: the client may have lost the last notices with its connection, and a lost
        // `Rejected` under a repeated `Accepted` would read as a success. (A client ignores a
        // `Rejected` for a seq it no longer holds.)
        let told: Vec<Bytes> = lock(&member.sender)
            .sequence
            .rejections()
            .filter_map(|(seq, error)| rejection(*seq, error.clone()))
            .collect();
        for frame in told {
            member.send_control(frame);
        }
        acceptance.notify.notify_one();
    }
    if welcomed {
        let writer = control_writer(send, &member, generation, &acceptance);
        let reader = control_reader(&mut frames, &member, &conn, &session, &shared);
        let send_stream = Notify::new();
        let signals = signal_reader(&conn, &member, &session, &shared, &acceptance, &send_stream);
        let extra = extra_streams(&conn, &send_stream);
        tokio::pin!(writer, reader, signals, extra);
        let mut writer_ended = false;
        let end = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => End::Close(CloseCode::RelayShutdown, "relay shutting down".into()),
            _ = member.gone.cancelled() => End::Lost,
            // Before the writer: a connection closed because its client resumed on another
            // stops here, without the writer taking what the new one is owed.
            _ = conn.closed() => End::Lost,
            end = &mut reader => end,
            end = &mut signals => end,
            _ = &mut writer => {
                writer_ended = true;
                End::Lost
            }
            end = &mut extra => end,
        };
        if let End::Close(code, reason) = &end {
            if *code == CloseCode::ProtocolError {
                tracing::warn!(%reason, "closing connection: protocol error");
            }
            member.close(*code, reason);
        }
        if !writer_ended
            && member.generation() == generation
            && let Some(code) = member.closing_code()
            && conn.tells_close(code)
        {
            // A browser over WebTransport is told why before its connection closes: the
            // writer writes what is queued, the `Closing` last (see `Member::close`), and the
            // page closes the connection once it has read it. Closed here first, the
            // connection would take with it what the page had not read yet.
            let told = async {
                (&mut writer).await;
                conn.closed().await;
            };
            let _ = tokio::time::timeout(CLOSING_WAIT, told).await;
            conn.close(code, "closing");
        }
    }
    if member.generation() != generation {
        // The client resumed on another connection: that one serves the member now.
        return;
    }
    let reason = member
        .closing_reason()
        .unwrap_or_else(|| conn.left_reason());
    let grace = shared.config.resume_grace;
    if member.closing_reason().is_none()
        && reason == LeftReason::NetworkDisconnected
        && !grace.is_zero()
    {
        member.set_away();
        tracing::info!(grace = ?grace, "connection lost; waiting for the client to resume");
        let shared2 = shared.clone();
        shared.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = shared2.cancel.cancelled() => {}
            }
            if member.expire(generation) {
                tracing::info!(conn = %member.id(), "grace period over");
                leave(&shared2, &session, &member, LeftReason::NetworkDisconnected);
            }
        });
        return;
    }
    leave(&shared, &session, &member, reason);
}

/// A client opens one control stream and one send stream. The endpoint lets a connection
/// open a few more (WebTransport's HTTP/3 layer needs them), so a native client that opens
/// another is closed rather than left holding a stream's buffers unread.
async fn extra_streams(conn: &Link, send_stream: &Notify) -> End {
    let bi = conn.accept_bi();
    let uni = async {
        send_stream.notified().await;
        conn.accept_uni().await.map(|_| ())
    };
    let opened = tokio::select! {
        r = bi => r.map(|_| ()),
        r = uni => r,
    };
    match opened {
        Ok(()) => protocol("a client opens one control stream and one send stream"),
        Err(_) => End::Lost,
    }
}

/// The member leaves the session for good. The others are told once its routes to them have
/// written what they hold (at most [`LEFT_AFTER_ROUTES`] later): a one-shot sender's last
/// signals come before its `Left`, as the client reads them.
fn leave(shared: &Shared, session: &Arc<Session>, member: &Member, reason: LeftReason) {
    member.gone.cancel();
    let routes = shared.registry.leave(session, member.id(), reason);
    let news = RelayMessage::Left {
        connection: member.id(),
        reason,
    };
    tell_after_routes(shared, session, news, routes);
    shared.others.left(shared, &session.id, member.id(), reason);
    shared.metrics.left(reason);
    tracing::info!(conn = %member.id(), %reason, "left");
}

/// Tells `session`'s members a leave once the leaver's `routes` (here, from a member of this
/// node or of another) have written what they hold and finished their streams, so its
/// signals come before its `Left`: at once without routes, at most [`LEFT_AFTER_ROUTES`]
/// later, and not at all once the relay is shutting down.
pub(crate) fn tell_after_routes(
    shared: &Shared,
    session: &Arc<Session>,
    news: RelayMessage,
    routes: Vec<tokio::task::JoinHandle<()>>,
) {
    if routes.is_empty() {
        session.tell_news(&news);
        return;
    }
    let (session, cancel) = (session.clone(), shared.cancel.clone());
    shared.tracker.spawn(async move {
        let written =
            tokio::time::timeout(LEFT_AFTER_ROUTES, futures_util::future::join_all(routes));
        tokio::select! {
            _ = written => session.tell_news(&news),
            // Shutting down: everyone is told `relayShutdown` instead.
            _ = cancel.cancelled() => {}
        }
    });
}

/// The longest a leave's news waits for the leaver's routes to write what they hold.
const LEFT_AFTER_ROUTES: Duration = Duration::from_secs(2);

/// Writes control frames, merging what is queued, and reports the acceptance level after
/// every frame queued before it (so a `Rejected` always precedes the `Accepted` covering it).
///
/// Nothing is kept between writes: a lone frame is written as it is, several are merged into
/// a buffer of their exact size. (A merge buffer kept for reuse would hold, for as long as
/// the member stays, the size of the largest burst it ever got — a join storm's news.)
async fn control_writer(
    mut send: LinkSend,
    member: &Member,
    generation: u64,
    acceptance: &Acceptance,
) {
    // The member's control queue: whichever connection serves the member now holds it. A
    // connection the member has left for another (a resume) takes nothing more from it.
    let mut rx = member.receiver.control_rx.lock().await;
    if member.generation() != generation {
        return;
    }
    // The level last reported on this connection: none yet, so a resumed connection tells
    // the level again (after the rejections queued for it).
    let mut reported = 0;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut next_notice = tokio::time::Instant::now();
    let mut notice_due = false;
    loop {
        if member.gone.is_cancelled() {
            // The member is going: what is queued is written, a `Closing` last (queued before
            // the member was marked gone), and then the writer is done.
            match rx.try_recv() {
                Some(f) => batch.push(f),
                None => return,
            }
        } else {
            tokio::select! {
                biased;
                frame = rx.recv() => match frame {
                    Some(f) => batch.push(f),
                    None => return,
                },
                _ = acceptance.notify.notified(), if !notice_due => notice_due = true,
                _ = tokio::time::sleep_until(next_notice), if notice_due => {}
            }
        }
        let now = tokio::time::Instant::now();
        if notice_due && now >= next_notice {
            // Read the level first, then take every frame queued before it: a `Rejected`
            // is always written before the `Accepted` that covers it.
            let up_to = acceptance.up_to.load(Ordering::Acquire);
            while let Some(f) = rx.try_recv() {
                batch.push(f);
            }
            if up_to > reported {
                let Some(f) = frames::control(&RelayMessage::Accepted { up_to }) else {
                    return;
                };
                batch.push(f);
                reported = up_to;
            }
            notice_due = false;
            next_notice = now + ACCEPT_INTERVAL;
        } else {
            while let Some(f) = rx.try_recv() {
                batch.push(f);
            }
        }
        let chunk = match batch.len() {
            0 => continue,
            1 => batch.pop().unwrap_or_default(),
            _ => {
                let mut merged = BytesMut::with_capacity(batch.iter().map(Bytes::len).sum());
                for f in batch.drain(..) {
                    merged.extend_from_slice(&f);
                }
                merged.freeze()
            }
        };
        if batch.capacity() > 64 {
            batch = Vec::new();
        }
        if send.write_chunk(chunk).await.is_err() {
            return;
        }
    }
}

/// Reads control messages after `Hello`: `Kick` and `Leave`.
async fn control_reader(
    frames: &mut Frames,
    member: &Arc<Member>,
    conn: &Link,
    session: &Session,
    shared: &Shared,
) -> End {
    loop {
        let frame = match frames.next().await {
            Ok(Some(f)) => f,
            Err(e) => {
                if conn.is_closed() {
                    return End::Lost;
                }
                return protocol(format!("control stream: {e}"));
            }
            // The client will send no more control messages; it stays connected.
            Ok(None) => return std::future::pending().await,
        };
        match codec::decode::<ClientMessage>(&frame) {
            Ok(ClientMessage::Leave) => {
                return End::Close(CloseCode::Normal, "left the session".into());
            }
            Ok(ClientMessage::Kick { connection }) => kick(member, session, connection, shared),
            Ok(ClientMessage::Hello(_)) => return protocol("Hello sent twice"),
            Err(e) => return protocol(format!("malformed control message: {e}")),
        }
    }
}

/// A moderator removes a member — here, or (in a cluster) on the node that serves it.
fn kick(member: &Member, session: &Session, target: ConnectionId, shared: &Shared) {
    let denied = if member.info.role != Role::Moderator {
        Some(format!(
            "only moderators may remove connections (you are a {})",
            member.info.role
        ))
    } else {
        let reason = format!("removed from the session by moderator {}", member.info.name);
        if shared.remove(&session.id, target, &reason) {
            tracing::info!(target = %target, "removed by moderator");
            None
        } else {
            Some(format!("connection {target} is not in this session"))
        }
    };
    if let Some(message) = denied
        && let Some(frame) = frames::control(&RelayMessage::Denied { message })
    {
        member.send_control(frame);
    }
}

/// Checks one signal against the sender's role, its rate, the rules and the session (here
/// and, in a cluster, on other nodes): [`crate::engine::admit`].
fn admit(
    out: &Outgoing<'_>,
    member: &Member,
    session: &SessionId,
    roster: &Roster,
    allowance: &mut Allowance,
    shared: &Shared,
    now: Instant,
) -> Result<(), SignalError> {
    let present =
        |id: &ConnectionId| roster.members.contains_key(id) || shared.others.has(session, *id);
    let rules = Rules {
        limits: &shared.limits,
        fanout_bytes_per_second: shared.config.fanout_bytes_per_second,
    };
    admit::admit(
        out,
        member.info.role,
        allowance,
        rules,
        now,
        present,
        roster.broadcast.len(),
    )
}

/// Whether a signal was new or a resend.
enum Taken {
    /// New: admitted and delivered, or rejected (told to the sender).
    New,
    /// A resend of one taken before a reconnect: dropped (a rejection told again).
    Resent,
}

/// What a chunk's signals add to the relay's counters, added once for them all.
#[derive(Default)]
struct Tally {
    signals: u64,
    bytes: u64,
    deliveries: u64,
}

/// Why [`take_chunk`] stopped.
enum Next {
    /// The chunk in hand is used up: read the next.
    Read,
    /// The session's budget is spent: wait for room ([`delivery::wait_for_room`]).
    Wait,
    /// A [`Turn`]'s signals taken: let the other tasks run.
    Yield,
    /// The stream cannot be read on (a frame too large, say).
    Broken(String),
}

/// Takes `first` and every signal after it that the chunk in hand holds whole: the session's
/// presence news sent, its roster loaded and the member's sender half locked once for them
/// all, their broadcasts queued together ([`delivery::fan_out_held`]), and the counters
/// added to once. Synchronous: nothing is held past it. The
/// chunk's signals are taken as of when the roster was loaded, after the chunk was read: a
/// member that joins meanwhile gets the signals sent after it joined, as ever.
fn take_chunk(
    first: Bytes,
    frames: &mut Frames,
    turn: &mut Turn,
    member: &Arc<Member>,
    session: &Session,
    shared: &Shared,
    acceptance: &Acceptance,
) -> Result<Next, End> {
    // Presence first (it takes the session's locks, which come before a member's).
    session.before_signal();
    let roster = session.roster();
    let mut sender = lock(&member.sender);
    let mut tally = Tally::default();
    // A signal taken, or a resend of one taken already: either is answered.
    let mut answered = false;
    let mut frame = first;
    let next = loop {
        // The frame and the signal in it end here: neither is kept across a wait, which
        // keeps the reader's task (an idle connection's cost) small.
        let new = {
            let out: Outgoing<'_> = match codec::decode(&frame) {
                Ok(o) => o,
                Err(e) => break Err(protocol(format!("malformed signal: {e}"))),
            };
            let t = take(
                &out,
                frame.len(),
                frames.arrived(),
                member,
                &mut sender,
                &roster,
                session,
                shared,
                &mut tally,
            );
            match t {
                Ok(Taken::New) => true,
                Ok(Taken::Resent) => {
                    answered = true;
                    false
                }
                Err(end) => break Err(end),
            }
        };
        if new {
            answered = true;
            // Counted before the budget check: a wait for room may find room at once and not
            // yield, so the signals that end on it count toward the next yield as others do.
            turn.took(frame.len());
            if !session.budgets.session.has_room(0) {
                break Ok(Next::Wait);
            }
            if turn.due() {
                break Ok(Next::Yield);
            }
        }
        frame = match frames.next_in_hand() {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(Next::Read),
            Err(e) => break Ok(Next::Broken(e)),
        };
    };
    // The broadcasts held for the chunk's next signals go out now: nothing is held past it.
    if let Some(f) = sender.fanout.as_mut() {
        f.flush();
    }
    // The newest seq taken, read under the sender's lock: every rejection up to it is queued
    // already, so it is told before the `Accepted` that covers it. A resend counts too: the
    // connection a client left may have taken it after the resume's `Welcome` was written,
    // and this connection must still say so.
    let up_to = answered.then(|| sender.sequence.last());
    drop(sender);
    shared
        .metrics
        .signals(tally.signals, tally.bytes, tally.deliveries);
    if let Some(seq) = up_to {
        acceptance.up_to.fetch_max(seq, Ordering::AcqRel);
        acceptance.notify.notify_one();
    }
    next
}

/// Takes one signal: drops it if its seq was taken already (a resend after a reconnect; a
/// rejection is told again, in case that notice was lost with the connection); otherwise
/// admits it (or rejects it, told to the sender), and delivers it, here and to other nodes.
/// Synchronous, with the member's sender half locked by the caller ([`take_chunk`]).
#[allow(clippy::too_many_arguments)]
fn take(
    out: &Outgoing<'_>,
    wire_len: usize,
    arrived: Instant,
    member: &Arc<Member>,
    sender: &mut crate::registry::Sender,
    roster: &Arc<Roster>,
    session: &Session,
    shared: &Shared,
    tally: &mut Tally,
) -> Result<Taken, End> {
    // The rule (crates/proto/README.md, "seq"): seqs start at 1 and rise; one at or below
    // the last taken is a resend (after a reconnect); 0 is an error.
    match sender.sequence.check(out.seq) {
        Seq::New => {}
        Seq::Zero => return Err(protocol("signal seq must start at 1")),
        Seq::Resent(told) => {
            if let Some(f) = told.and_then(|error| rejection(out.seq, error)) {
                member.send_control(f);
            }
            return Ok(Taken::Resent);
        }
    }
    match admit(
        out,
        member,
        &session.id,
        roster,
        &mut sender.allowance,
        shared,
        arrived,
    ) {
        Err(error) => {
            shared.metrics.rejected(&error);
            sender.sequence.rejected(out.seq, error.clone());
            if let Some(f) = rejection(out.seq, error) {
                member.send_control(f);
            }
        }
        Ok(()) => {
            let incoming = Incoming {
                seq: out.seq,
                to_all: out.to.is_all(),
                r#type: out.r#type.as_ref().into(),
                data: out.data.as_ref().into(),
            };
            let bytes = match crate::frames::signal(&incoming) {
                Ok(b) => b,
                Err(e) => return Err(protocol(format!("cannot encode signal: {e}"))),
            };
            let fanout = sender.fanout.get_or_insert_with(|| {
                Fanout::new(
                    Some(member.id()),
                    shared.delivery.clone(),
                    shared.tracker.clone(),
                    session.budgets.clone(),
                )
                .waiting()
            });
            // Other nodes first: the frame then goes to this node's routes as it is.
            shared
                .others
                .signal(&session.id, member.id(), out.seq, &out.to, &bytes);
            // A broadcast may be held to go out with the chunk's next ones: queued before
            // [`take_chunk`] returns.
            let delivered = delivery::fan_out_held(fanout, roster, &out.to, out.seq, bytes);
            tally.signals += 1;
            tally.bytes += wire_len as u64;
            tally.deliveries += delivered as u64;
        }
    }
    Ok(Taken::New)
}

/// Reads the client's send stream: admits each signal, encodes it once, fans it out.
async fn signal_reader(
    conn: &Link,
    member: &Arc<Member>,
    session: &Session,
    shared: &Shared,
    acceptance: &Acceptance,
    send_stream: &Notify,
) -> End {
    let recv = match conn.accept_uni().await {
        Ok(r) => r,
        Err(_) => return End::Lost,
    };
    send_stream.notify_one();
    // Frames are cut from the chunks QUIC hands over, not copied into a read buffer first:
    // each signal is decoded where it arrived and re-encoded once for its receivers, so a
    // slice holds the chunk only while its signal is taken.
    let mut frames = Frames::new(recv, shared.limits.max_frame_bytes());
    let broken = |e: String| {
        if conn.is_closed() {
            End::Lost
        } else {
            protocol(format!("send stream: {e}"))
        }
    };
    let mut turn = Turn::within(&shared.delivery);
    loop {
        let frame = match frames.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return broken(e),
        };
        match take_chunk(
            frame,
            &mut frames,
            &mut turn,
            member,
            session,
            shared,
            acceptance,
        ) {
            Err(end) => return end,
            Ok(Next::Read) => {}
            Ok(Next::Broken(e)) => return broken(e),
            Ok(Next::Wait) => {
                // The session's budget is spent: read nothing more until it has room.
                // (Boxed: a rare wait, and inline it would enlarge every idle connection's
                // task.)
                Box::pin(delivery::wait_for_room(
                    session,
                    shared.delivery.write_timeout,
                ))
                .await;
                // A wait that found room at once did not yield: the yield this signal was
                // due comes now.
                if turn.due() {
                    pause(&mut turn, member).await;
                }
            }
            Ok(Next::Yield) => pause(&mut turn, member).await,
        }
    }
    // The client finished its send stream: it sends no more, but stays connected.
    std::future::pending().await
}

/// What a signal reader took since it last let the connection's other work run.
#[derive(Debug)]
struct Turn {
    signals: u32,
    bytes: usize,
    /// Signals since the sender's routes were last pruned.
    unpruned: u32,
    /// Where a turn ends: [`YIELD_EVERY`] and [`YIELD_BYTES`], or a quarter of a receiver's
    /// queue if that is less. A sender's routes write only once its reader yields, so a
    /// turn's burst to one receiver must fit that receiver's queue with room to spare, or a
    /// relay set up with small queues would close a healthy receiver as a slow consumer.
    max_signals: u32,
    max_bytes: usize,
}

impl Turn {
    /// A turn for a relay whose receivers' queues are as `settings` bound them.
    fn within(settings: &delivery::DeliverySettings) -> Self {
        let quarter = |n: usize| (n / 4).max(1);
        Self {
            signals: 0,
            bytes: 0,
            unpruned: 0,
            max_signals: YIELD_EVERY
                .min(u32::try_from(quarter(settings.queue_signals)).unwrap_or(u32::MAX)),
            max_bytes: YIELD_BYTES.min(quarter(settings.queue_bytes)),
        }
    }

    /// Counts a signal taken, of `len` bytes on the wire.
    fn took(&mut self, len: usize) {
        self.signals += 1;
        self.bytes += len;
        self.unpruned += 1;
    }

    /// Whether the reader should yield now ([`YIELD_EVERY`], [`YIELD_BYTES`]).
    fn due(&self) -> bool {
        self.signals >= self.max_signals || self.bytes >= self.max_bytes
    }
}

/// Lets the connection's other work run after a [`Turn`], and now and then has the sender's
/// routes let go of what they no longer need.
async fn pause(turn: &mut Turn, member: &Member) {
    turn.signals = 0;
    turn.bytes = 0;
    if turn.unpruned >= PRUNE_EVERY {
        turn.unpruned = 0;
        if let Some(f) = lock(&member.sender).fanout.as_mut() {
            f.prune();
        }
    }
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader's turn ends at whichever bound comes first: [`YIELD_EVERY`] small signals
    /// (not 128: the routes of a sender that targets a hundred receivers one by one then get
    /// several signals each per write), or [`YIELD_BYTES`] of large ones.
    fn settings(queue_signals: usize, queue_bytes: usize) -> delivery::DeliverySettings {
        delivery::DeliverySettings {
            queue_bytes,
            queue_signals,
            write_timeout: std::time::Duration::from_secs(10),
            stream_idle: std::time::Duration::from_secs(10),
        }
    }

    #[test]
    fn a_turn_ends_at_its_count_of_small_signals_or_its_bytes_of_large_ones() {
        let defaults = crate::RelayConfig::default();
        let within = || {
            Turn::within(&settings(
                defaults.receiver_queue_signals,
                defaults.receiver_queue_bytes,
            ))
        };
        let mut turn = within();
        for _ in 1..YIELD_EVERY {
            turn.took(80);
            assert!(!turn.due(), "due after {} small signals", turn.signals);
        }
        turn.took(80);
        assert!(turn.due());

        let mut turn = within();
        let large = 8 * 1024 + 40;
        let mut taken = 0;
        while !turn.due() {
            turn.took(large);
            taken += 1;
        }
        assert_eq!(taken, YIELD_BYTES.div_ceil(large));
        assert!(taken <= 128, "a turn of 8 KiB signals took {taken}");
    }

    /// With small receiver queues a turn is a quarter of one: its burst to one receiver fits
    /// that receiver's queue, which its route drains only after the turn.
    #[test]
    fn a_turn_fits_a_quarter_of_a_small_receiver_queue() {
        let mut turn = Turn::within(&settings(400, 8 << 20));
        for _ in 1..100 {
            turn.took(80);
        }
        assert!(!turn.due());
        turn.took(80);
        assert!(turn.due(), "100 signals is a quarter of a 400-signal queue");

        let mut turn = Turn::within(&settings(16_384, 64 * 1024));
        turn.took(16 * 1024 - 1);
        assert!(!turn.due());
        turn.took(1);
        assert!(turn.due(), "16 KiB is a quarter of a 64 KiB queue");

        // Never a turn of nothing.
        let mut turn = Turn::within(&settings(1, 1));
        turn.took(80);
        assert!(turn.due());
    }

    /// The size of the future `f` would return, without calling it.
    fn future_size<F: Future>(_: impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task keeps its future's largest state for as long as the member stays:
    /// the handshake, `Hello` and join (boxed while they run) must not be part of it. With
    /// them inline it was 6.6 KiB per idle connection; serving a member needs about 2.
    #[test]
    #[allow(unreachable_code, clippy::diverging_sub_expression)]
    fn an_idle_connections_task_holds_only_what_serving_needs() {
        let task = future_size(|| handle(unreachable!(), unreachable!(), unreachable!()));
        let serving = future_size(|| run_member(unreachable!(), unreachable!()));
        assert!(
            task <= serving + 512,
            "task {task} B, serving a member {serving} B"
        );
        // About 2.2 KiB since a browser link's futures are boxed (a WebSocket's accept and
        // write made each of those waits 300–500 bytes) and the signal reader keeps no frame
        // across its waits; 3.3 KiB before.
        assert!(task <= 2560, "task {task} B");
    }
}
