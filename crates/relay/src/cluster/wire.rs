//! What nodes send each other, sealed: every envelope carries an HMAC-SHA256 over its subject
//! and body with the cluster key, so a NATS user without the key can read the traffic and
//! refuse to carry it, but not inject, forge, replay or redirect a message.
//!
//! The key derives from the relay's secret (`token-secret` in the data directory), which the
//! nodes of a cluster already share for their tokens to be good on every node.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use signalbox_proto::{ConnectionId, Incoming, Limits, SessionId, Target, codec, signal};

use crate::engine::roster::{Change, Delta, Page};

/// What nodes tell each other. Messages about one session travel on its subject, which
/// names the session, so they do not repeat it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Wire {
    /// A client's signal.
    Signal {
        from: ConnectionId,
        seq: u64,
        to: Target,
        /// The delivery frame, as local receivers get it (taken whole, not byte by byte).
        frame: Bytes,
    },
    /// A signal from the relay itself (REST); each node delivers it as its own.
    RelaySignal {
        to: Target,
        r#type: String,
        data: String,
    },
    /// A member of the sending node joined or left (on the session's subject).
    Presence(Change),
    /// The node is alive; its presence changes since its previous heartbeat.
    Heartbeat { name: String, delta: Delta },
    /// Asks the receiving node for its whole roster (sent to `signalbox.n.<node>`).
    SnapshotRequest,
    /// One page of the sending node's roster at `version` (to the node that asked).
    Snapshot {
        version: u64,
        page: u32,
        pages: u32,
        members: Page,
    },
    /// Remove a connection this node serves.
    Kick {
        session: SessionId,
        id: ConnectionId,
        reason: String,
    },
}

/// A message and where it comes from.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The sending node's id (new on every start).
    pub(crate) node: String,
    /// The node's running number of messages (in publish order): a receiver takes each
    /// number once, so a replayed envelope is dropped.
    pub(crate) n: u64,
    /// When it was sent, in milliseconds since the Unix epoch: an envelope older than
    /// [`MAX_AGE`] is dropped, so a replay cannot outlive the receiver's memory of numbers.
    pub(crate) sent_ms: u64,
    pub(crate) msg: Wire,
}

/// The HMAC's length, at the end of every payload.
const TAG: usize = 32;
/// How far a sender's clock and age may put an envelope from now, either way.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(60);

/// The cluster key, derived from the relay's secret.
pub(crate) struct Key(ring::hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    pub(crate) fn derive(secret: &[u8]) -> Self {
        let outer = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&outer, b"signalbox cluster envelope key");
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, tag.as_ref()))
    }

    fn context(&self, subject: &str, body: &[u8]) -> ring::hmac::Context {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        ctx.update(subject.as_bytes());
        ctx.update(&[0]);
        ctx.update(body);
        ctx
    }

    /// The payload for `envelope` on `subject`: its encoding and the tag.
    pub(crate) fn seal(
        &self,
        subject: &str,
        envelope: &Envelope,
    ) -> Result<Bytes, postcard::Error> {
        let mut body = postcard::to_allocvec(envelope)?;
        let tag = self.context(subject, &body).sign();
        body.extend_from_slice(tag.as_ref());
        Ok(Bytes::from(body))
    }

    /// The envelope in `payload` received on `subject`, if its tag is right and it decodes.
    pub(crate) fn open(&self, subject: &str, payload: &[u8]) -> Result<Envelope, Refused> {
        if payload.len() < TAG {
            return Err(Refused::Unauthenticated);
        }
        let (body, tag) = payload.split_at(payload.len() - TAG);
        let expected = self.context(subject, body).sign();
        // Compared in constant time.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_ref(), tag)) {
            return Err(Refused::Unauthenticated);
        }
        codec::decode::<Envelope>(body).map_err(|_| Refused::Malformed)
    }
}

/// Why a cluster message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No tag, or a wrong one: not from a node with the cluster key.
    Unauthenticated,
    /// Tagged right but not a message (a bug, or another version).
    Malformed,
    /// Already taken, or too old: a replay.
    Replayed,
    /// From a node this one does not know, or not about its own members.
    Foreign,
    /// Breaks the rules a local client's input obeys.
    Invalid,
}

impl Refused {
    /// For logs and the metrics' label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refused::Unauthenticated => "unauthenticated",
            Refused::Malformed => "malformed",
            Refused::Replayed => "replayed",
            Refused::Foreign => "foreign",
            Refused::Invalid => "invalid",
        }
    }
}

/// Drops replays on one subscription: each node's numbers must rise (NATS keeps one
/// publisher's order on a subject), and an envelope must be recent.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    last: HashMap<String, (u64, u64)>,
}

/// Nodes a replay guard remembers at most (beyond: those heard from longest ago go).
const REPLAY_NODES: usize = 1024;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Replay {
    /// Whether `env` is new (and remembers it), at `now_ms`.
    pub(crate) fn check(&mut self, env: &Envelope, now_ms: u64) -> Result<(), Refused> {
        let max = MAX_AGE.as_millis() as u64;
        if env.sent_ms.abs_diff(now_ms) > max {
            return Err(Refused::Replayed);
        }
        if let Some(&(n, _)) = self.last.get(&env.node)
            && env.n <= n
        {
            return Err(Refused::Replayed);
        }
        if self.last.len() >= REPLAY_NODES && !self.last.contains_key(&env.node) {
            // Numbers of nodes not heard from for MAX_AGE can go: their old envelopes are
            // refused by age now.
            self.last
                .retain(|_, (_, at)| now_ms.saturating_sub(*at) <= max);
            if self.last.len() >= REPLAY_NODES {
                return Err(Refused::Foreign);
            }
        }
        self.last.insert(env.node.clone(), (env.n, now_ms));
        Ok(())
    }
}

/// Checks a remote client's delivery frame as the relay checks a local client's signal (seq,
/// target, type, data, limits) and returns the frame as this node encodes it.
pub(crate) fn check_frame(
    frame: &[u8],
    seq: u64,
    to: &Target,
    limits: &Limits,
) -> Result<Bytes, Refused> {
    let Some(payload) = frame.get(4..) else {
        return Err(Refused::Invalid);
    };
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if len != payload.len() || len > limits.max_frame_bytes() {
        return Err(Refused::Invalid);
    }
    let incoming: Incoming<'_> = codec::decode(payload).map_err(|_| Refused::Invalid)?;
    if incoming.seq != seq || seq == 0 || incoming.to_all != to.is_all() {
        return Err(Refused::Invalid);
    }
    signal::validate_signal(&incoming.r#type, &incoming.data, to, limits)
        .map_err(|_| Refused::Invalid)?;
    crate::frames::signal(&incoming).map_err(|_| Refused::Invalid)
}

/// Checks a remote kick's reason: what a REST caller may give.
pub(crate) fn valid_reason(reason: &str) -> bool {
    reason.len() <= 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(node: &str, n: u64, sent_ms: u64) -> Envelope {
        Envelope {
            node: node.into(),
            n,
            sent_ms,
            msg: Wire::SnapshotRequest,
        }
    }

    #[test]
    fn only_the_key_and_the_subject_it_was_sealed_for_open_an_envelope() {
        let key = Key::derive(b"0123456789abcdef0123456789abcdef");
        let other = Key::derive(b"another secret, 32 bytes or more");
        let sealed = key.seal("signalbox.s.a", &env("n1", 1, 5)).unwrap();
        assert!(key.open("signalbox.s.a", &sealed).is_ok());
        assert_eq!(
            key.open("signalbox.s.b", &sealed).unwrap_err(),
            Refused::Unauthenticated,
            "moved to another session's subject"
        );
        assert_eq!(
            other.open("signalbox.s.a", &sealed).unwrap_err(),
            Refused::Unauthenticated
        );
        let mut flipped = sealed.to_vec();
        flipped[3] ^= 1;
        assert_eq!(
            key.open("signalbox.s.a", &flipped).unwrap_err(),
            Refused::Unauthenticated
        );
        // Unsealed: what a node without the key would send.
        let bare = postcard::to_allocvec(&env("n1", 2, 5)).unwrap();
        assert_eq!(
            key.open("signalbox.s.a", &bare).unwrap_err(),
            Refused::Unauthenticated
        );
        assert_eq!(key.open("x", b"").unwrap_err(), Refused::Unauthenticated);
    }

    #[test]
    fn replays_and_stale_envelopes_are_dropped() {
        let mut r = Replay::default();
        let now = 1_000_000;
        assert!(r.check(&env("a", 1, now), now).is_ok());
        assert!(r.check(&env("a", 3, now), now).is_ok());
        assert_eq!(r.check(&env("a", 3, now), now), Err(Refused::Replayed));
        assert_eq!(r.check(&env("a", 2, now), now), Err(Refused::Replayed));
        assert!(
            r.check(&env("b", 1, now), now).is_ok(),
            "numbers are per node"
        );
        let old = now - MAX_AGE.as_millis() as u64 - 1;
        assert_eq!(r.check(&env("c", 1, old), now), Err(Refused::Replayed));
    }

    #[test]
    fn a_remote_frame_is_checked_like_a_local_signal() {
        let limits = Limits::default();
        let good = forge::frame;
        let frame = good(7, true, "chat", "hi");
        assert_eq!(
            check_frame(&frame, 7, &Target::All, &limits)
                .unwrap()
                .to_vec(),
            frame
        );
        // The seq or the audience do not match the envelope.
        assert!(check_frame(&frame, 8, &Target::All, &limits).is_err());
        let one = Target::One(ConnectionId::random());
        assert!(check_frame(&frame, 7, &one, &limits).is_err());
        // A bad type, data over the limit, a length that lies, trailing bytes.
        assert!(check_frame(&good(7, true, "no spaces", ""), 7, &Target::All, &limits).is_err());
        let big = "d".repeat(limits.max_data_bytes as usize + 1);
        assert!(check_frame(&good(7, true, "t", &big), 7, &Target::All, &limits).is_err());
        let mut lying = frame.clone();
        lying[3] += 1;
        assert!(check_frame(&lying, 7, &Target::All, &limits).is_err());
        let mut trailing = frame.clone();
        trailing[3] += 1;
        trailing.push(0);
        assert!(check_frame(&trailing, 7, &Target::All, &limits).is_err());
        assert!(check_frame(&[0, 0], 7, &Target::All, &limits).is_err());
        // A target list with a repeat.
        let id = ConnectionId::random();
        let twice = Target::List(vec![id, id]);
        assert!(check_frame(&good(7, false, "t", ""), 7, &twice, &limits).is_err());
    }
}

/// Envelopes as a hostile NATS user — or a node with the key gone wrong — would publish
/// them: for tests that prove such input is refused. Not part of the relay's API.
#[doc(hidden)]
pub mod forge {
    use super::*;
    use crate::engine::roster::{Change, Delta, Presence};
    use signalbox_proto::ConnectionInfo;

    /// What to forge.
    #[derive(Debug, Clone)]
    pub enum Forged {
        /// A client's signal with a delivery frame as given.
        Signal {
            from: ConnectionId,
            seq: u64,
            to: Target,
            frame: Vec<u8>,
        },
        /// A member of the forging node joined `session` (on the session's subject).
        Joined {
            v: u64,
            session: SessionId,
            info: ConnectionInfo,
        },
        /// A heartbeat whose delta adds `members` (all at once).
        Heartbeat {
            name: String,
            members: Vec<(SessionId, ConnectionInfo)>,
        },
        /// Remove a connection.
        Kick {
            session: SessionId,
            id: ConnectionId,
        },
    }

    /// A delivery frame as a node sends it, with these fields.
    pub fn frame(seq: u64, to_all: bool, ty: &str, data: &str) -> Vec<u8> {
        codec::frame(
            &Incoming {
                seq,
                to_all,
                r#type: ty.into(),
                data: data.into(),
            },
            usize::MAX,
        )
        .expect("encodable")
        .to_vec()
    }

    /// The payload for `forged` from node `node` (its `n`-th message, sent now) on `subject`,
    /// sealed with the key derived from `secret` — or unsealed (`None`).
    pub fn payload(
        secret: Option<&[u8]>,
        subject: &str,
        node: &str,
        n: u64,
        forged: Forged,
    ) -> Bytes {
        let msg = match forged {
            Forged::Signal {
                from,
                seq,
                to,
                frame,
            } => Wire::Signal {
                from,
                seq,
                to,
                frame: frame.into(),
            },
            Forged::Joined { v, session, info } => Wire::Presence(Change {
                v,
                session,
                id: info.id,
                presence: Presence::Joined(info),
            }),
            Forged::Heartbeat { name, members } => Wire::Heartbeat {
                name,
                delta: Delta {
                    since: 0,
                    version: members.len() as u64,
                    changes: Some(
                        members
                            .into_iter()
                            .enumerate()
                            .map(|(i, (session, info))| Change {
                                v: i as u64 + 1,
                                session,
                                id: info.id,
                                presence: Presence::Joined(info),
                            })
                            .collect(),
                    ),
                },
            },
            Forged::Kick { session, id } => Wire::Kick {
                session,
                id,
                reason: "forged".into(),
            },
        };
        let env = Envelope {
            node: node.into(),
            n,
            sent_ms: now_ms(),
            msg,
        };
        match secret {
            Some(secret) => Key::derive(secret).seal(subject, &env).expect("encodable"),
            None => Bytes::from(postcard::to_allocvec(&env).expect("encodable")),
        }
    }
}
