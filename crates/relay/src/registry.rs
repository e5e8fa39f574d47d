//! Sessions and their members.
//!
//! The registry maps a session id to its [`Session`]; a session maps connection ids to
//! [`Member`]s. Joins and leaves take short locks (registry, then session — always in that
//! order) and publish a new immutable [`Roster`] snapshot; the hot path (fan-out of every
//! signal) only loads the current snapshot, without a lock.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use signalbox_proto::{
    CloseCode, ConnectionId, ConnectionInfo, LeftReason, RefuseCode, Refused, RelayMessage,
    SessionId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::Fanout;
use crate::frames;

/// One connection in a session, as the rest of the relay sees it.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) info: ConnectionInfo,
    pub(crate) conn: quinn::Connection,
    /// Encoded control frames for this connection's control stream (bounded).
    control: mpsc::Sender<Bytes>,
    /// Bytes waiting in delivery queues toward this member, across all senders.
    pub(crate) queued_bytes: AtomicUsize,
    /// Set once, by whoever closes the connection first: why it is going.
    closing: OnceLock<LeftReason>,
    /// Cancelled when the member is closing; its delivery tasks stop.
    pub(crate) gone: CancellationToken,
    /// Whether signals to everyone reach it.
    pub(crate) receives_broadcasts: bool,
}

impl Member {
    pub(crate) fn new(
        info: ConnectionInfo,
        conn: quinn::Connection,
        control: mpsc::Sender<Bytes>,
        gone: CancellationToken,
        receives_broadcasts: bool,
    ) -> Self {
        Self {
            info,
            conn,
            control,
            queued_bytes: AtomicUsize::new(0),
            closing: OnceLock::new(),
            gone,
            receives_broadcasts,
        }
    }

    pub(crate) fn id(&self) -> ConnectionId {
        self.info.id
    }

    /// Closes the connection with `code`; the first close wins and sets the reason that
    /// everyone else is told.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        if self.closing.set(code.left_reason()).is_ok() {
            self.conn.close(code.as_u32().into(), reason.as_bytes());
            self.gone.cancel();
        }
    }

    /// Whether the member is closing (a lock-free check for the hot path).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get().is_some()
    }

    /// Why the member is going, if someone closed it.
    pub(crate) fn closing_reason(&self) -> Option<LeftReason> {
        self.closing.get().copied()
    }

    /// Queues an encoded control frame; a member whose control queue is full is not reading
    /// and is disconnected as a slow consumer.
    pub(crate) fn send_control(&self, frame: Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.control.try_send(frame) {
            tracing::warn!(conn = %self.id(), "control queue full; disconnecting slow consumer");
            self.close(CloseCode::SlowConsumer, "slow consumer: control queue full");
        }
    }
}

/// An immutable snapshot of a session's members.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    pub(crate) members: HashMap<ConnectionId, Arc<Member>>,
    /// The members that signals to everyone reach.
    pub(crate) broadcast: Vec<Arc<Member>>,
}

/// A session: its members and their published roster.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    members: Mutex<HashMap<ConnectionId, Arc<Member>>>,
    roster: ArcSwap<Roster>,
    /// The relay's own sender in this session (REST signals): its routes and its seq.
    pub(crate) relay_sender: Mutex<Option<(Fanout, u64)>>,
}

impl Session {
    fn new(id: SessionId) -> Self {
        Self {
            id,
            members: Mutex::new(HashMap::new()),
            roster: ArcSwap::from_pointee(Roster::default()),
            relay_sender: Mutex::new(None),
        }
    }

    /// The current members, without locking.
    pub(crate) fn roster(&self) -> arc_swap::Guard<Arc<Roster>> {
        self.roster.load()
    }

    fn publish(&self, members: &HashMap<ConnectionId, Arc<Member>>) {
        self.roster.store(Arc::new(Roster {
            members: members.clone(),
            broadcast: members
                .values()
                .filter(|m| m.receives_broadcasts)
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
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps half-changed (each change is
    // one insert or remove), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SessionRegistry {
    pub(crate) fn new(max_sessions: usize, max_per_session: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
            max_per_session,
        }
    }

    /// Adds `member` to `session` (made on first join), tells the others, and returns the
    /// session and a snapshot of who else is there.
    pub(crate) fn join(
        &self,
        session: &SessionId,
        member: Arc<Member>,
    ) -> Result<(Arc<Session>, Vec<ConnectionInfo>), Refused> {
        let mut sessions = lock(&self.sessions);
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
                let s = Arc::new(Session::new(session.clone()));
                sessions.insert(session.clone(), s.clone());
                s
            }
        };
        let mut members = lock(&sess.members);
        if members.len() >= self.max_per_session {
            return Err(Refused {
                code: RefuseCode::SessionFull,
                message: format!(
                    "session '{session}' is full: it holds {} connections, its limit",
                    members.len()
                ),
            });
        }
        let peers: Vec<ConnectionInfo> = members.values().map(|m| m.info.clone()).collect();
        if let Some(frame) = frames::control(&RelayMessage::Joined(member.info.clone())) {
            for other in members.values() {
                other.send_control(frame.clone());
            }
        }
        members.insert(member.id(), member);
        sess.publish(&members);
        Ok((sess.clone(), peers))
    }

    /// Removes a member and tells the others why it left; forgets the session when empty.
    pub(crate) fn leave(&self, session: &Session, id: ConnectionId, reason: LeftReason) {
        let mut sessions = lock(&self.sessions);
        let mut members = lock(&session.members);
        if members.remove(&id).is_none() {
            return;
        }
        session.publish(&members);
        if let Some(frame) = frames::control(&RelayMessage::Left {
            connection: id,
            reason,
        }) {
            for other in members.values() {
                other.send_control(frame.clone());
            }
        }
        if members.is_empty() {
            sessions.remove(&session.id);
        }
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
}
