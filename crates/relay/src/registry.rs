//! Sessions and their members.
//!
//! The registry maps a session id to its [`Session`]; a session maps connection ids to
//! [`Member`]s. Joins and leaves take short locks (registry, then session — always in that
//! order) and publish a new immutable [`Roster`] snapshot; the hot path (fan-out of every
//! signal) only loads the current snapshot, without a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use signalbox_proto::{
    CloseCode, ConnectionId, ConnectionInfo, LeftReason, RefuseCode, Refused, RelayMessage,
    SessionId,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budgets, Held};
use crate::engine::presence::{Due, Presence};
use crate::engine::ratelimit::Allowance;
use crate::engine::resume::{Lost, Resume};
use crate::engine::sequence::Sequencer;
use crate::frames;
use crate::transport::delivery::{Fanout, Stalls};
use crate::transport::link::Link;
use crate::transport::queue::{self, TrySendError};

/// One connection in a session, as the rest of the relay sees it: who it is, its connection
/// (which a resume replaces), and its two halves — as a [`Sender`] and as a [`Receiver`]. It
/// outlives a network failure of its QUIC connection: for the grace period it is *away*
/// (peers see nothing), and a client that resumes is attached to it again.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) info: ConnectionInfo,
    /// The secret of the resume ticket.
    pub(crate) secret: [u8; 16],
    /// The SHA-256 of the token it joined with (none in open mode): counted per token, and
    /// banned for a while when the member is removed.
    pub(crate) token_key: Option<TokenKey>,
    /// The current connection (replaced when the client resumes).
    conn: ArcSwap<Link>,
    /// Bumped on every attach; routes to an away member wait for it to change. (Not a tokio
    /// `watch`: that keeps eight wake-up lists per member, 350 bytes of every idle connection.)
    attached: AtomicU64,
    /// Wakes the routes waiting for an attach.
    reattached: Notify,
    /// Whether the connection is lost and the member waits for its client to resume.
    away: AtomicBool,
    /// Makes "resume" and "grace period over" exclusive.
    transition: Mutex<()>,
    /// Set once, by whoever closes the member first: why it is going, and the close code of
    /// its connection (none when its grace period ended).
    closing: OnceLock<(LeftReason, Option<CloseCode>)>,
    /// Cancelled when the member is closing; its delivery tasks stop.
    pub(crate) gone: CancellationToken,
    /// As a sender: its rate bucket, its routes and its seqs, kept across resumes (so order
    /// holds and a resume refills nothing). Locked once per signal, by its signal reader.
    pub(crate) sender: Mutex<Sender>,
    /// As a receiver: what waits for it, its control frames, what it missed.
    pub(crate) receiver: Receiver,
}

/// A member as a receiver. Touched by every sender's routes toward it, so lock-free where
/// the hot path reads it.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// Whether signals to everyone reach it.
    pub(crate) broadcasts: bool,
    /// Bytes waiting in delivery queues toward it, across all senders.
    pub(crate) queued_bytes: AtomicUsize,
    /// How many batches its routes have taken from its queues: whether it is reading, for a
    /// sender that waits for the session's budget (`delivery::Stalls`).
    drains: AtomicU64,
    /// Encoded control frames for its control stream (bounded). The relay's own queue, not a
    /// tokio channel: that keeps a block of 32 slots and two cache-padded halves for the
    /// member's life, about 1.5 KiB of an idle connection's cost; this is a `VecDeque`.
    control: queue::Sender<Bytes>,
    /// Their receiving end, taken by whichever connection serves the member now.
    pub(crate) control_rx: tokio::sync::Mutex<queue::Receiver<Bytes>>,
    /// The session's presence epoch when it joined: it is told only news after that (the
    /// rest was in its `Welcome`).
    presence_epoch: AtomicU64,
    /// What its client has and what it missed while away.
    resume: Mutex<Resume>,
}

impl Receiver {
    /// One of its routes took frames from its queue to write them: it is reading.
    pub(crate) fn drained(&self) {
        self.drains.fetch_add(1, Ordering::Relaxed);
    }

    /// How many batches its routes have taken from its queues.
    pub(crate) fn drains(&self) -> u64 {
        self.drains.load(Ordering::Relaxed)
    }

    /// What its client has from `from`, as it said when it resumed.
    pub(crate) fn seen_from(&self, from: Option<ConnectionId>) -> u64 {
        lock(&self.resume).seen_from(from)
    }
}

/// A member as a sender.
#[derive(Debug)]
pub(crate) struct Sender {
    /// Its rate buckets. A member that leaves parks them in the registry under its
    /// [`BucketKey`], and the next member with that key starts from them: reconnecting does
    /// not refill them either.
    pub(crate) allowance: Allowance,
    /// Its routes to receivers (made on its first signal).
    pub(crate) fanout: Option<Fanout>,
    /// Its seqs: which are new, which are resends (kept across resumes, so duplicates of
    /// signals taken before a reconnect are dropped).
    pub(crate) sequence: Sequencer,
    /// Whose rate bucket it spends: its token's, or (in open mode) its address's.
    pub(crate) bucket_key: BucketKey,
}

/// Whose rate bucket a member spends: the token it joined with, or in open mode the address
/// it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BucketKey {
    Token(TokenKey),
    Source(std::net::IpAddr),
}

/// Parked buckets kept at most; past this, those that are fullest soonest go first.
const MAX_PARKED_BUCKETS: usize = 65_536;

/// A token as the relay remembers it: its SHA-256.
pub(crate) type TokenKey = [u8; 32];

/// The key of `token`.
pub(crate) fn token_key(token: &str) -> TokenKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// How tokens are used: connections per token, and tokens banned from a session after a
/// removal (until the instant).
#[derive(Debug, Default)]
struct TokenUse {
    connections: HashMap<TokenKey, u32>,
    banned: HashMap<(SessionId, TokenKey), std::time::Instant>,
}

impl Member {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: ConnectionInfo,
        conn: Link,
        gone: CancellationToken,
        receives_broadcasts: bool,
        control_capacity: usize,
        token_key: Option<TokenKey>,
        bucket_key: BucketKey,
        allowance: Allowance,
    ) -> Self {
        let (control, control_rx) = queue::queue(control_capacity);
        let mut secret = [0u8; 16];
        secret.copy_from_slice(ConnectionId::random().as_bytes());
        Self {
            info,
            secret,
            token_key,
            conn: ArcSwap::from_pointee(conn),
            attached: AtomicU64::new(0),
            reattached: Notify::new(),
            away: AtomicBool::new(false),
            transition: Mutex::new(()),
            closing: OnceLock::new(),
            gone,
            sender: Mutex::new(Sender {
                allowance,
                fanout: None,
                sequence: Sequencer::default(),
                bucket_key,
            }),
            receiver: Receiver {
                broadcasts: receives_broadcasts,
                queued_bytes: AtomicUsize::new(0),
                drains: AtomicU64::new(0),
                control,
                control_rx: tokio::sync::Mutex::new(control_rx),
                presence_epoch: AtomicU64::new(0),
                resume: Mutex::new(Resume::default()),
            },
        }
    }

    pub(crate) fn id(&self) -> ConnectionId {
        self.info.id
    }

    /// The current connection.
    pub(crate) fn conn(&self) -> Arc<Link> {
        self.conn.load_full()
    }

    /// Which attachment is current (0 for the first connection).
    pub(crate) fn generation(&self) -> u64 {
        self.attached.load(Ordering::Acquire)
    }

    /// Waits until the member is attached to a connection after generation `seen`; returns
    /// the generation it is in then.
    pub(crate) async fn attached_after(&self, seen: u64) -> u64 {
        loop {
            let reattached = self.reattached.notified();
            tokio::pin!(reattached);
            // Registered before the check: an attach in between still wakes it.
            reattached.as_mut().enable();
            let now = self.generation();
            if now != seen {
                return now;
            }
            reattached.await;
        }
    }

    /// Whether the member waits for its client to resume.
    pub(crate) fn is_away(&self) -> bool {
        self.away.load(Ordering::Acquire)
    }

    /// The member's connection was lost to the network: it waits for a resume.
    pub(crate) fn set_away(&self) {
        self.away.store(true, Ordering::Release);
    }

    /// Attaches a resumed connection; fails if the member is already gone. Returns the new
    /// generation. The previous connection, if still open, is closed.
    pub(crate) fn attach(
        &self,
        conn: Link,
        seen: HashMap<Option<ConnectionId>, u64>,
    ) -> Option<u64> {
        let _t = lock(&self.transition);
        if self.is_closing() {
            return None;
        }
        lock(&self.receiver.resume).resumed(seen);
        let old = self.conn.swap(Arc::new(conn));
        // At once: the old connection's tasks stop taking the member's messages now.
        old.close(CloseCode::Normal, "resumed on another connection");
        self.away.store(false, Ordering::Release);
        let generation = self.attached.fetch_add(1, Ordering::AcqRel) + 1;
        self.reattached.notify_waiters();
        Some(generation)
    }

    /// Ends the grace period of generation `generation`: true if the member was still away
    /// in it (and is now closing), false if it resumed meanwhile.
    pub(crate) fn expire(&self, generation: u64) -> bool {
        let _t = lock(&self.transition);
        if self.generation() != generation || !self.is_away() {
            return false;
        }
        if self
            .closing
            .set((LeftReason::NetworkDisconnected, None))
            .is_ok()
        {
            self.gone.cancel();
        }
        true
    }

    /// Counts signals of `from` (seqs `first..=last`, `count` of them) as lost to this member.
    pub(crate) fn add_missed(&self, from: Option<ConnectionId>, first: u64, last: u64, count: u64) {
        if count == 0 {
            return;
        }
        if !self.is_away() {
            // Attached again (a route found its replay incomplete after the resume): tell now.
            if let Some(frame) = frames::control(&RelayMessage::Missed {
                from,
                first,
                last,
                count,
            }) {
                self.send_control(frame);
            }
            return;
        }
        lock(&self.receiver.resume).missed(from, first, last, count);
    }

    /// What was lost while away, by sender; forgotten once taken.
    pub(crate) fn take_missed(&self) -> Vec<(Option<ConnectionId>, Lost)> {
        lock(&self.receiver.resume).take_missed()
    }

    /// Closes the connection with `code`; the first close wins and sets the reason that
    /// everyone else is told.
    ///
    /// A browser over WebTransport is told why with a `Closing` message, queued last on its
    /// control stream (unless it left): its connection task writes it, gives the page a moment
    /// to close the session, and then closes the connection (see `Link::tells_close`). Should
    /// that task not be there to do it, the connection is closed [`CLOSING_WAIT`] later
    /// regardless.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        if self.closing.set((code.left_reason(), Some(code))).is_ok() {
            let conn = self.conn();
            if conn.tells_close(code) {
                let closing = RelayMessage::Closing {
                    code: code.as_u32(),
                    reason: reason.to_owned(),
                };
                if let Some(frame) = frames::control(&closing) {
                    // A full queue is a client that reads nothing: it learns nothing either.
                    let _ = self.receiver.control.try_send(frame);
                }
                let reason = reason.to_owned();
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => drop(runtime.spawn(async move {
                        tokio::time::sleep(CLOSING_WAIT).await;
                        conn.close(code, &reason);
                    })),
                    Err(_) => conn.close(code, &reason),
                }
            } else {
                conn.close(code, reason);
            }
            // After the `Closing` is queued: a control writer that finds the member gone and
            // its queue empty has written it.
            self.gone.cancel();
        }
    }

    /// Whether the member is closing (a lock-free check for the hot path).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get().is_some()
    }

    /// Why the member is going, if someone closed it.
    pub(crate) fn closing_reason(&self) -> Option<LeftReason> {
        self.closing.get().map(|(reason, _)| *reason)
    }

    /// The close code of its connection, if someone closed it.
    pub(crate) fn closing_code(&self) -> Option<CloseCode> {
        self.closing.get().and_then(|(_, code)| *code)
    }

    /// Queues an encoded control frame; a member whose control queue is full is not reading
    /// and is disconnected as a slow consumer.
    pub(crate) fn send_control(&self, frame: Bytes) {
        if let Err(TrySendError::Full(_)) = self.receiver.control.try_send(frame) {
            tracing::warn!(conn = %self.id(), "control queue full; disconnecting slow consumer");
            self.close(CloseCode::SlowConsumer, "slow consumer: control queue full");
        }
    }
}

/// How long a browser over WebTransport has to be told why its connection closes before it
/// is closed regardless (see [`Member::close`]).
pub(crate) const CLOSING_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A session's members by id. Ids are made by the relay (random), so a fast hash needs no
/// protection against chosen keys; a lookup happens for every targeted signal.
pub(crate) type Members = rustc_hash::FxHashMap<ConnectionId, Arc<Member>>;

/// An immutable snapshot of a session's members.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    pub(crate) members: Members,
    /// The members that signals to everyone reach.
    pub(crate) broadcast: Vec<Arc<Member>>,
}

/// A session: its members and their published roster.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    members: Mutex<Members>,
    roster: ArcSwap<Roster>,
    /// The relay's own sender in this session (REST signals): its routes and its seq.
    pub(crate) relay_sender: Mutex<Option<(Fanout, u64)>>,
    /// What its frames are charged to: its own budget and the relay's.
    pub(crate) budgets: Budgets,
    /// Its receivers' progress, watched while its budget is spent.
    pub(crate) stalls: Stalls,
    /// Presence news on its way to the members (guarded after `members`).
    presence: Mutex<Presence>,
    /// Itself, for the task that sends a held presence batch.
    me: std::sync::Weak<Session>,
    /// Whether presence news is held (a lock-free check for every signal).
    presence_held: AtomicBool,
}

impl Session {
    fn new(id: SessionId, budgets: Budgets) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            id,
            budgets,
            stalls: Stalls::default(),
            members: Mutex::new(Members::default()),
            roster: ArcSwap::from_pointee(Roster::default()),
            relay_sender: Mutex::new(None),
            presence: Mutex::new(Presence::default()),
            me: me.clone(),
            presence_held: AtomicBool::new(false),
        })
    }

    /// Called before a member's signal is fanned out: sends the presence news held, so that
    /// a receiver hears of the sender's join before its signals.
    pub(crate) fn before_signal(&self) {
        if self.presence_held.load(Ordering::Relaxed) {
            self.send_held_presence();
        }
    }

    /// Sends the presence news held now (its timer is due, or a signal goes first).
    fn send_held_presence(&self) {
        let members = lock(&self.members);
        let mut presence = lock(&self.presence);
        self.send_presence(&members, &mut presence);
    }

    /// Tells every member (of `members`, the locked map) `msg`, paced with other presence
    /// news (see [`crate::engine::presence`]); returns the news' epoch.
    fn tell_presence(&self, members: &Members, msg: &RelayMessage) -> u64 {
        let mut presence = lock(&self.presence);
        let Some(frame) = frames::control(msg) else {
            return presence.epoch();
        };
        let (epoch, due) = presence.tell(&frame, std::time::Instant::now());
        match (due, tokio::runtime::Handle::try_current()) {
            (Due::Held, _) => {}
            (Due::At(at), Ok(runtime)) => {
                self.presence_held.store(true, Ordering::Relaxed);
                let me = self.me.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    if let Some(session) = me.upgrade() {
                        session.send_held_presence();
                    }
                });
            }
            _ => self.send_presence(members, &mut presence),
        }
        epoch
    }

    /// Sends the batch to every member that joined before some news in it: each gets the part
    /// after its own join (a slice of one shared buffer).
    fn send_presence(&self, members: &Members, presence: &mut Presence) {
        self.presence_held.store(false, Ordering::Relaxed);
        let Some(news) = presence.take(std::time::Instant::now(), members.len()) else {
            return;
        };
        for m in members.values() {
            if let Some(part) = news.after(m.receiver.presence_epoch.load(Ordering::Relaxed)) {
                m.send_control(part);
            }
        }
    }

    /// Tells the members presence news that is not a join here: a leave (once the leaver's
    /// routes are written) or news from another node of a cluster, paced like joins.
    pub(crate) fn tell_news(&self, msg: &RelayMessage) {
        let members = lock(&self.members);
        self.tell_presence(&members, msg);
    }

    /// The current members, without locking.
    pub(crate) fn roster(&self) -> arc_swap::Guard<Arc<Roster>> {
        self.roster.load()
    }

    fn publish(&self, members: &Members) {
        self.roster.store(Arc::new(Roster {
            members: members.clone(),
            broadcast: members
                .values()
                .filter(|m| m.receiver.broadcasts)
                .cloned()
                .collect(),
        }));
    }
}

/// Every session on the relay.
#[derive(Debug)]
pub(crate) struct SessionRegistry {
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    max_sessions: usize,
    max_per_session: usize,
    /// Guarded by `sessions` (taken after it).
    tokens: Mutex<TokenUse>,
    max_per_token: u32,
    kick_ban: std::time::Duration,
    /// Rate buckets of members that left, by whose they were (see [`Sender::allowance`]).
    parked: Mutex<HashMap<BucketKey, Allowance>>,
    /// Bytes held for delivery in all sessions, and each new session's budget.
    pub(crate) held: Arc<Held>,
    session_held: usize,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps half-changed (each change is
    // one insert or remove), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SessionRegistry {
    pub(crate) fn new(
        max_sessions: usize,
        max_per_session: usize,
        max_per_token: u32,
        kick_ban: std::time::Duration,
        held: Arc<Held>,
        session_held: usize,
    ) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
            max_per_session,
            tokens: Mutex::new(TokenUse::default()),
            max_per_token,
            kick_ban,
            parked: Mutex::new(HashMap::new()),
            held,
            session_held,
        }
    }

    /// The rate bucket a new member with `key` starts from: the one a member with the same key
    /// left with, while it has not refilled; otherwise `fresh`.
    pub(crate) fn allowance(&self, key: BucketKey, fresh: Allowance) -> Allowance {
        lock(&self.parked).remove(&key).unwrap_or(fresh)
    }

    /// Keeps a leaving member's bucket for the next member with its key, unless it has
    /// refilled already (then there is nothing to remember).
    fn park(&self, key: BucketKey, bucket: Allowance) {
        let now = std::time::Instant::now();
        if bucket.is_full_at(now) {
            return;
        }
        let mut parked = lock(&self.parked);
        if parked.len() >= MAX_PARKED_BUCKETS {
            parked.retain(|_, b| !b.is_full_at(now));
        }
        if parked.len() < MAX_PARKED_BUCKETS {
            parked.insert(key, bucket);
        }
    }

    /// Adds `member` to `session` (made on first join), tells the others, and returns the
    /// session and a snapshot of who else is here. `elsewhere` members of the session are on
    /// other nodes of a cluster (they count toward the session's limit).
    pub(crate) fn join(
        &self,
        session: &SessionId,
        member: Arc<Member>,
        elsewhere: usize,
    ) -> Result<(Arc<Session>, Vec<ConnectionInfo>), Refused> {
        let mut sessions = lock(&self.sessions);
        let mut tokens = lock(&self.tokens);
        if let Some(key) = &member.token_key {
            let now = std::time::Instant::now();
            if let Some(until) = tokens.banned.get(&(session.clone(), *key))
                && *until > now
            {
                let minutes = (*until - now).as_secs().div_ceil(60);
                return Err(Refused {
                    code: RefuseCode::InvalidToken,
                    message: format!(
                        "this token was removed from session '{session}'; it may join again in {minutes} min"
                    ),
                });
            }
            let used = tokens.connections.get(key).copied().unwrap_or(0);
            if used >= self.max_per_token {
                return Err(Refused {
                    code: RefuseCode::SessionFull,
                    message: format!(
                        "this token is in use by {used} connections, its limit; ask for an invite of your own"
                    ),
                });
            }
        }
        let sess = match sessions.get(session) {
            Some(s) => s.clone(),
            None => {
                if sessions.len() >= self.max_sessions {
                    return Err(Refused {
                        code: RefuseCode::RelayFull,
                        message: format!(
                            "the relay holds {} sessions, its limit; try again later",
                            sessions.len()
                        ),
                    });
                }
                let budgets = Budgets {
                    session: Arc::new(Held::new(self.session_held)),
                    global: self.held.clone(),
                };
                let s = Session::new(session.clone(), budgets);
                sessions.insert(session.clone(), s.clone());
                s
            }
        };
        let mut members = lock(&sess.members);
        if members.len() + elsewhere >= self.max_per_session {
            return Err(Refused {
                code: RefuseCode::SessionFull,
                message: format!(
                    "session '{session}' is full: it holds {} connections, its limit",
                    members.len() + elsewhere
                ),
            });
        }
        let peers: Vec<ConnectionInfo> = members.values().map(|m| m.info.clone()).collect();
        // Told before it is in: it hears only of what comes after.
        let epoch = sess.tell_presence(&members, &RelayMessage::Joined(member.info.clone()));
        member
            .receiver
            .presence_epoch
            .store(epoch, Ordering::Relaxed);
        if let Some(key) = member.token_key {
            *tokens.connections.entry(key).or_default() += 1;
        }
        members.insert(member.id(), member);
        sess.publish(&members);
        Ok((sess.clone(), peers))
    }

    /// Removes a member; forgets the session when empty. Returns its routes to others, which
    /// end once they have written what they hold: the others are told why it left (see
    /// [`Session::tell_news`]) after that, so nobody hears from a member it saw leave.
    pub(crate) fn leave(
        &self,
        session: &Session,
        id: ConnectionId,
        reason: LeftReason,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut sessions = lock(&self.sessions);
        let mut members = lock(&session.members);
        let Some(gone) = members.remove(&id) else {
            return Vec::new();
        };
        let routes = {
            let mut sender = lock(&gone.sender);
            self.park(sender.bucket_key, sender.allowance.clone());
            sender.fanout.take().map(Fanout::close).unwrap_or_default()
        };
        if let Some(key) = gone.token_key {
            let mut tokens = lock(&self.tokens);
            if let Some(n) = tokens.connections.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    tokens.connections.remove(&key);
                }
            }
            if reason == LeftReason::ForceDisconnected && !self.kick_ban.is_zero() {
                // Removed: the same token may not come straight back.
                let now = std::time::Instant::now();
                tokens.banned.retain(|_, until| *until > now);
                tokens
                    .banned
                    .insert((session.id.clone(), key), now + self.kick_ban);
            }
        }
        session.publish(&members);
        if members.is_empty() {
            sessions.remove(&session.id);
        }
        routes
    }

    /// A member of a session, if both exist.
    pub(crate) fn member(
        &self,
        session: &SessionId,
        id: ConnectionId,
    ) -> Option<(Arc<Session>, Arc<Member>)> {
        let s = self.get(session)?;
        let m = s.roster().members.get(&id).cloned()?;
        Some((s, m))
    }

    /// A session, if it exists.
    pub(crate) fn get(&self, session: &SessionId) -> Option<Arc<Session>> {
        lock(&self.sessions).get(session).cloned()
    }

    /// Every session, for listing.
    pub(crate) fn sessions(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// How many connections are in sessions.
    pub(crate) fn connection_count(&self) -> usize {
        lock(&self.sessions)
            .values()
            .map(|s| s.roster().members.len())
            .sum()
    }

    /// How many of those connections were lost to the network and wait for their client to
    /// resume.
    pub(crate) fn away_count(&self) -> usize {
        lock(&self.sessions)
            .values()
            .map(|s| s.roster().members.values().filter(|m| m.is_away()).count())
            .sum()
    }
}
