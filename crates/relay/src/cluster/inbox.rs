//! What one session's subscription takes from the other nodes, without I/O.
//!
//! A payload on a session's subject passes, in this order: the cluster key's tag for this
//! subject ([`Key::open`]), the replay guard (each node's numbers rise, envelopes are
//! recent), then the message's own rules. A client's signal must come from a member of the
//! publishing node in this session, with a seq above the last one taken from that sender,
//! and a frame that decodes and obeys this node's limits; it then goes on as this node
//! encodes it. A relay signal must come from a known node and be a valid signal; presence
//! must be about this session. Whatever fails is refused with its reason, and nothing
//! refused reaches a member.
//!
//! The NATS task ([`super::session_inbox`]) feeds every payload through
//! [`SessionInbox::receive`] and only acts on what comes out: these bytes to these members,
//! this change to that node's roster.

use std::collections::HashMap;

use bytes::Bytes;
use signalbox_proto::{ConnectionId, Limits, SessionId, Target, signal};

use super::wire::{self, Envelope, Key, Refused, Replay, Wire};
use crate::engine::roster::{Change, Presence};

/// Why a message was refused: the reason, the node it claimed to come from (`?` when it
/// could not be opened), and what it was.
pub(crate) type Refusal = (Refused, String, &'static str);

/// Opens a payload received on `subject`: authenticated, new, from another node. `Ok(None)`
/// for this node's own messages (`me`), which NATS echoes back.
pub(crate) fn open(
    key: &Key,
    me: &str,
    subject: &str,
    payload: &[u8],
    replay: &mut Replay,
    now_ms: u64,
) -> Result<Option<Envelope>, Refusal> {
    let env = key
        .open(subject, payload)
        .map_err(|why| (why, "?".to_owned(), "envelope"))?;
    if env.node == me {
        return Ok(None);
    }
    replay
        .check(&env, now_ms)
        .map_err(|why| (why, env.node.clone(), "envelope"))?;
    Ok(Some(env))
}

/// What this node knows of the others, as a session inbox asks it.
pub(crate) trait Nodes {
    /// Whether `node` is known (it has sent a heartbeat or presence and not died since).
    fn knows(&self, node: &str) -> bool;
    /// Whether `id` is `node`'s member in this session. Asked for each remote signal: a
    /// node whose members' signals arrive is alive.
    fn has(&mut self, node: &str, id: ConnectionId) -> bool;
}

/// What a session's subscription took, for its task to act on.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A remote client's signal: deliver `frame` (this node's encoding) to `to`.
    Signal {
        from: ConnectionId,
        seq: u64,
        to: Target,
        frame: Bytes,
    },
    /// A signal from the relay itself (REST), to deliver as this node's own.
    RelaySignal {
        to: Target,
        r#type: String,
        data: String,
    },
    /// A presence change of the publishing node, for its roster.
    Presence(Change),
}

/// One session's subscription: its replay guard and the last seq taken from each remote
/// sender.
#[derive(Debug)]
pub(crate) struct SessionInbox {
    session: SessionId,
    subject: String,
    me: String,
    replay: Replay,
    seqs: HashMap<ConnectionId, u64>,
}

impl SessionInbox {
    pub(crate) fn new(session: SessionId, subject: String, me: String) -> Self {
        Self {
            session,
            subject,
            me,
            replay: Replay::default(),
            seqs: HashMap::new(),
        }
    }

    /// Takes one payload received at `now_ms`: what to do with it and the node it came from,
    /// nothing (this node's own), or why it was refused.
    pub(crate) fn receive(
        &mut self,
        key: &Key,
        payload: &[u8],
        now_ms: u64,
        nodes: &mut dyn Nodes,
        limits: &Limits,
    ) -> Result<Option<(String, Taken)>, Refusal> {
        let Some(env) = open(
            key,
            &self.me,
            &self.subject,
            payload,
            &mut self.replay,
            now_ms,
        )?
        else {
            return Ok(None);
        };
        let node = env.node;
        let refuse = |why, what| Err((why, node.clone(), what));
        let taken = match env.msg {
            Wire::Signal {
                from,
                seq,
                to,
                frame,
            } => {
                if !nodes.has(&node, from) {
                    return refuse(Refused::Foreign, "signal from a member it does not have");
                }
                if self.seqs.get(&from).is_some_and(|&last| seq <= last) {
                    return refuse(Refused::Replayed, "signal seq did not rise");
                }
                let frame = match wire::check_frame(&frame, seq, &to, limits) {
                    Ok(f) => f,
                    Err(why) => return refuse(why, "signal frame"),
                };
                self.seqs.insert(from, seq);
                Taken::Signal {
                    from,
                    seq,
                    to,
                    frame,
                }
            }
            Wire::RelaySignal { to, r#type, data } => {
                if !nodes.knows(&node) {
                    return refuse(Refused::Foreign, "relay signal");
                }
                if signal::validate_signal(&r#type, &data, &to, limits).is_err() {
                    return refuse(Refused::Invalid, "relay signal");
                }
                Taken::RelaySignal { to, r#type, data }
            }
            Wire::Presence(change) => {
                if change.session != self.session {
                    return refuse(Refused::Invalid, "presence for another session");
                }
                if matches!(change.presence, Presence::Left(_)) {
                    // A later signal from that id would have to rise above nothing: its
                    // node has said it left, and its own presence change ends it.
                    self.seqs.remove(&change.id);
                }
                Taken::Presence(change)
            }
            _ => return refuse(Refused::Invalid, "a message on the wrong subject"),
        };
        Ok(Some((node, taken)))
    }

    /// Forgets the senders `keep` says are gone (the seqs of departed members).
    pub(crate) fn retain(&mut self, keep: impl Fn(ConnectionId) -> bool) {
        self.seqs.retain(|id, _| keep(*id));
    }

    /// Remote senders with a seq taken.
    pub(crate) fn senders(&self) -> usize {
        self.seqs.len()
    }
}

#[cfg(test)]
mod tests {
    //! Random interleavings of what arrives on a session's subject — joins and leaves of
    //! the publishing node's members, their signals in and out of order, frames that break
    //! the rules, envelopes sealed with another key, tampered with, moved from another
    //! subject, unsealed, stale, and replayed — against the rules stated by hand: a signal
    //! is delivered exactly when it is sealed right, new, from a present member, above that
    //! sender's last seq, with a good frame.

    use super::*;
    use crate::engine::roster::{Bounds, NodeRoster};
    use proptest::prelude::*;
    use signalbox_proto::{ConnectionInfo, LeftReason, Role};
    use wire::forge;

    const NOW: u64 = 1_800_000_000_000;
    const SECRET: &[u8] = b"the cluster's shared secret, 32+";
    const BOUNDS: Bounds = Bounds {
        per_session: 100,
        members: 1000,
        sessions: 10,
    };

    #[derive(Debug, Clone, Copy)]
    enum Seq {
        Next,
        Skip,
        Again,
        Back,
        Zero,
    }

    #[derive(Debug, Clone, Copy)]
    enum Frame {
        Good,
        BadType,
        SeqMismatch,
        Truncated,
        TooBig,
        WrongAudience,
    }

    #[derive(Debug, Clone, Copy)]
    enum Seal {
        Right,
        WrongKey,
        Flipped,
        OtherSubject,
        Bare,
        Stale,
        Own,
    }

    #[derive(Debug, Clone)]
    enum Step {
        Join(usize),
        Leave(usize),
        Signal {
            from: usize,
            seq: Seq,
            frame: Frame,
            seal: Seal,
        },
        /// Sends the payload of an earlier step again.
        Replay(usize),
        /// A relay signal, from the node or from one nobody knows.
        RelaySignal {
            known: bool,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        let seq = prop_oneof![
            4 => Just(Seq::Next),
            1 => Just(Seq::Skip),
            1 => Just(Seq::Again),
            1 => Just(Seq::Back),
            1 => Just(Seq::Zero),
        ];
        let frame = prop_oneof![
            6 => Just(Frame::Good),
            1 => Just(Frame::BadType),
            1 => Just(Frame::SeqMismatch),
            1 => Just(Frame::Truncated),
            1 => Just(Frame::TooBig),
            1 => Just(Frame::WrongAudience),
        ];
        let seal = prop_oneof![
            8 => Just(Seal::Right),
            1 => Just(Seal::WrongKey),
            1 => Just(Seal::Flipped),
            1 => Just(Seal::OtherSubject),
            1 => Just(Seal::Bare),
            1 => Just(Seal::Stale),
            1 => Just(Seal::Own),
        ];
        prop_oneof![
            2 => (0usize..5).prop_map(Step::Join),
            1 => (0usize..5).prop_map(Step::Leave),
            8 => (0usize..6, seq, frame, seal).prop_map(|(from, seq, frame, seal)| Step::Signal {
                from,
                seq,
                frame,
                seal
            }),
            2 => any::<usize>().prop_map(Step::Replay),
            1 => any::<bool>().prop_map(|known| Step::RelaySignal { known }),
        ]
    }

    /// The publishing node "b", as this node ("me") knows it: its roster, folded from the
    /// presence this inbox took.
    struct World {
        roster: NodeRoster,
    }

    impl Nodes for World {
        fn knows(&self, node: &str) -> bool {
            node == "b"
        }
        fn has(&mut self, node: &str, id: ConnectionId) -> bool {
            node == "b" && self.roster.has(&session(), id)
        }
    }

    fn session() -> SessionId {
        "room".parse().unwrap()
    }

    fn info(id: ConnectionId) -> ConnectionInfo {
        ConnectionInfo {
            id,
            name: format!("m-{}", id.short()),
            role: Role::Publisher,
            data: String::new(),
            joined_at: 1,
        }
    }

    fn data(from: usize, seq: u64) -> String {
        format!("{from}:{seq}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn only_sealed_new_in_order_signals_of_present_members_are_delivered(
            steps in proptest::collection::vec(step(), 1..150),
        ) {
            let key = Key::derive(SECRET);
            let limits = Limits::default();
            let subject = "signalbox.s.room".to_owned();
            let mut inbox = SessionInbox::new(session(), subject.clone(), "me".into());
            let mut world = World { roster: NodeRoster::default() };
            // Ids 0..5 can be members of "b"; id 5 never is.
            let ids: Vec<ConnectionId> = (0..6).map(|_| ConnectionId::random()).collect();
            // What the rules say, kept by hand.
            let mut present = [false; 6];
            let mut last: [Option<u64>; 6] = [None; 6];
            let mut sent = [0u64; 6];
            let mut version = 0u64;
            let mut n = 0u64;
            let mut payloads: Vec<Bytes> = Vec::new();
            let mut delivered: Vec<(usize, u32, u64)> = Vec::new();
            let mut epoch = [0u32; 6];

            let seal = |n: u64, msg: Wire, how: Seal| -> Bytes {
                let env = |node: &str, sent_ms| Envelope { node: node.into(), n, sent_ms, msg };
                match how {
                    Seal::Right => key.seal(&subject, &env("b", NOW)).unwrap(),
                    Seal::WrongKey => Key::derive(b"another secret of 32 bytes, at least")
                        .seal(&subject, &env("b", NOW))
                        .unwrap(),
                    Seal::Flipped => {
                        let mut p = key.seal(&subject, &env("b", NOW)).unwrap().to_vec();
                        let i = p.len() / 2;
                        p[i] ^= 0x40;
                        Bytes::from(p)
                    }
                    Seal::OtherSubject => key.seal("signalbox.s.other", &env("b", NOW)).unwrap(),
                    Seal::Bare => Bytes::from(postcard::to_allocvec(&env("b", NOW)).unwrap()),
                    Seal::Stale => key
                        .seal(&subject, &env("b", NOW - wire::MAX_AGE.as_millis() as u64 - 1))
                        .unwrap(),
                    Seal::Own => key.seal(&subject, &env("me", NOW)).unwrap(),
                }
            };

            for step in steps {
                n += 1;
                // What this step sends, and whether the rules deliver it (for signals).
                let (payload, expect): (Bytes, Option<(usize, u64)>) = match step {
                    Step::Join(i) | Step::Leave(i) => {
                        version += 1;
                        let joined = matches!(step, Step::Join(_));
                        let presence = if joined {
                            Presence::Joined(info(ids[i]))
                        } else {
                            Presence::Left(LeftReason::ClientDisconnected)
                        };
                        let change = Change { v: version, session: session(), id: ids[i], presence };
                        present[i] = joined;
                        if !joined {
                            last[i] = None;
                            epoch[i] += 1;
                        }
                        (seal(n, Wire::Presence(change), Seal::Right), None)
                    }
                    Step::Signal { from, seq, frame, seal: how } => {
                        let prev = last[from].unwrap_or(0).max(sent[from]);
                        let seq = match seq {
                            Seq::Next => prev + 1,
                            Seq::Skip => prev + 5,
                            Seq::Again => prev,
                            Seq::Back => prev.saturating_sub(1),
                            Seq::Zero => 0,
                        };
                        sent[from] = sent[from].max(seq);
                        let d = data(from, seq);
                        let mut to = Target::All;
                        let bytes = match frame {
                            Frame::Good => forge::frame(seq, true, "chat", &d),
                            Frame::BadType => forge::frame(seq, true, "no spaces", &d),
                            Frame::SeqMismatch => forge::frame(seq + 1, true, "chat", &d),
                            Frame::Truncated => {
                                let f = forge::frame(seq, true, "chat", &d);
                                f[..f.len() - 1].to_vec()
                            }
                            Frame::TooBig => forge::frame(
                                seq,
                                true,
                                "chat",
                                &"x".repeat(limits.max_data_bytes as usize + 1),
                            ),
                            Frame::WrongAudience => {
                                to = Target::One(ids[0]);
                                forge::frame(seq, true, "chat", &d)
                            }
                        };
                        let deliver = matches!(how, Seal::Right)
                            && present[from]
                            && seq >= 1
                            && last[from].is_none_or(|l| seq > l)
                            && matches!(frame, Frame::Good);
                        if deliver {
                            last[from] = Some(seq);
                        }
                        let msg = Wire::Signal { from: ids[from], seq, to, frame: bytes.into() };
                        (seal(n, msg, how), deliver.then_some((from, seq)))
                    }
                    Step::Replay(k) => match payloads.len() {
                        0 => continue,
                        len => (payloads[k % len].clone(), None),
                    },
                    Step::RelaySignal { known } => {
                        let msg = Wire::RelaySignal {
                            to: Target::All,
                            r#type: "notice".into(),
                            data: "hi".into(),
                        };
                        let payload = if known {
                            seal(n, msg, Seal::Right)
                        } else {
                            let env = Envelope { node: "stranger".into(), n, sent_ms: NOW, msg };
                            key.seal(&subject, &env).unwrap()
                        };
                        (payload, None)
                    }
                };
                payloads.push(payload.clone());

                match inbox.receive(&key, &payload, NOW, &mut world, &limits) {
                    Ok(Some((node, Taken::Signal { from, seq, frame, .. }))) => {
                        prop_assert_eq!(node, "b");
                        let i = ids.iter().position(|id| *id == from).unwrap();
                        prop_assert_eq!(expect, Some((i, seq)), "delivered against the rules");
                        let good = forge::frame(seq, true, "chat", &data(i, seq));
                        prop_assert_eq!(frame.to_vec(), good);
                        delivered.push((i, epoch[i], seq));
                    }
                    Ok(Some((node, Taken::Presence(change)))) => {
                        prop_assert_eq!(node, "b");
                        world.roster.apply(change, &BOUNDS, &|_, _| false);
                    }
                    Ok(Some((node, Taken::RelaySignal { .. }))) => {
                        prop_assert_eq!(node, "b", "a relay signal from a node nobody knows");
                    }
                    Ok(None) | Err(_) => {
                        prop_assert_eq!(expect, None, "refused against the rules");
                    }
                }
                for (i, p) in present.iter().enumerate() {
                    prop_assert_eq!(world.roster.has(&session(), ids[i]), *p);
                }
            }
            // Per sender and membership, seqs rise: no duplicates, no reordering. (A member
            // that left and joined again starts over.)
            for (i, &epochs) in epoch.iter().enumerate() {
                for e in 0..=epochs {
                    let seqs: Vec<u64> = delivered
                        .iter()
                        .filter(|d| d.0 == i && d.1 == e)
                        .map(|d| d.2)
                        .collect();
                    prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{:?}", seqs);
                }
            }
            prop_assert!(inbox.senders() <= 5, "seqs kept only for members");
        }
    }

    #[test]
    fn each_refusal_says_why() {
        let key = Key::derive(SECRET);
        let limits = Limits::default();
        let subject = "signalbox.s.room".to_owned();
        let mut inbox = SessionInbox::new(session(), subject.clone(), "me".into());
        let mut world = World {
            roster: NodeRoster::default(),
        };
        let member = ConnectionId::random();
        let mut n = 0;
        let mut send = |inbox: &mut SessionInbox, world: &mut World, msg: Wire| {
            n += 1;
            let env = Envelope {
                node: "b".into(),
                n,
                sent_ms: NOW,
                msg,
            };
            let payload = key.seal(&subject, &env).unwrap();
            inbox
                .receive(&key, &payload, NOW, world, &limits)
                .map(|o| o.map(|(_, t)| t))
                .map_err(|(why, node, what)| (why, node, what.to_owned()))
        };
        let signal = |seq| Wire::Signal {
            from: member,
            seq,
            to: Target::All,
            frame: forge::frame(seq, true, "chat", "x").into(),
        };
        let why = |r: Result<Option<Taken>, (Refused, String, String)>| r.unwrap_err().0;
        assert_eq!(
            why(send(&mut inbox, &mut world, signal(1))),
            Refused::Foreign
        );
        let joined = Change {
            v: 1,
            session: session(),
            id: member,
            presence: Presence::Joined(info(member)),
        };
        let Ok(Some(Taken::Presence(change))) =
            send(&mut inbox, &mut world, Wire::Presence(joined))
        else {
            panic!("presence refused");
        };
        world.roster.apply(change, &BOUNDS, &|_, _| false);
        assert!(matches!(
            send(&mut inbox, &mut world, signal(2)),
            Ok(Some(Taken::Signal { seq: 2, .. }))
        ));
        assert_eq!(
            why(send(&mut inbox, &mut world, signal(2))),
            Refused::Replayed
        );
        let elsewhere = Change {
            v: 2,
            session: "another".parse().unwrap(),
            id: member,
            presence: Presence::Left(LeftReason::ClientDisconnected),
        };
        assert_eq!(
            why(send(&mut inbox, &mut world, Wire::Presence(elsewhere))),
            Refused::Invalid
        );
        assert_eq!(
            why(send(&mut inbox, &mut world, Wire::SnapshotRequest)),
            Refused::Invalid
        );
        let bad = Wire::Signal {
            from: member,
            seq: 3,
            to: Target::All,
            frame: forge::frame(4, true, "chat", "x").into(),
        };
        assert_eq!(why(send(&mut inbox, &mut world, bad)), Refused::Invalid);
        let garbage = b"not an envelope at all, and no tag either";
        let (why, node, _) = inbox
            .receive(&key, garbage, NOW, &mut world, &limits)
            .unwrap_err();
        assert_eq!((why, node.as_str()), (Refused::Unauthenticated, "?"));
    }
}
