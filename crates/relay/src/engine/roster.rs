//! Who is on which node: presence as versioned changes, without I/O.
//!
//! Each node numbers its own presence changes (a member joined, a member left) 1, 2, 3, …
//! and keeps its roster as [`Local`]. It tells the others in three ways, and a receiving node
//! folds all three into one [`NodeRoster`] per remote node:
//!
//! - **each change at once**, on the session's subject (only nodes with members in that
//!   session hear it) — [`NodeRoster::apply`];
//! - **every change since the previous heartbeat**, in the heartbeat (every node hears it) —
//!   [`NodeRoster::apply_delta`]; a heartbeat whose changes do not fit one message carries
//!   none, and a node that missed one asks for a snapshot;
//! - **a snapshot** of the whole roster at a version, in pages of bounded size, when asked —
//!   [`NodeRoster::apply_snapshot`].
//!
//! The rule that makes the three agree: `NodeRoster::version` is the version up to which
//! *every* change has been applied. A change at or below it is old news. A change above it
//! (heard early, on a session subject) is applied and its version remembered for that
//! member, so an older change for the same member arriving later (in a delta) cannot undo
//! it — last writer wins, by version. Whatever the order, members are told about a join or
//! a leave once, when the roster actually changes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, RelayMessage, SessionId, token};

/// One presence change of a node, numbered by that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Change {
    /// The node's number for it (1, 2, 3, … in the order the node made them).
    pub(crate) v: u64,
    pub(crate) session: SessionId,
    pub(crate) id: ConnectionId,
    pub(crate) presence: Presence,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Presence {
    Joined(ConnectionInfo),
    Left(LeftReason),
}

/// What a node's roster may hold, at most: a remote node is trusted only as far as these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Members in one session.
    pub(crate) per_session: usize,
    /// Members in all.
    pub(crate) members: usize,
    /// Sessions.
    pub(crate) sessions: usize,
}

/// What to tell this node's members of `session`.
pub(crate) type Told = (SessionId, RelayMessage);

/// Why a remote node's presence could not be applied as it came.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gap {
    /// Changes are missing: ask the node for a snapshot.
    NeedSnapshot,
}

/// Checks a remote member's description as a join's would be: a name and data a local
/// client could have, a `joined_at` that is a time.
pub(crate) fn valid_info(info: &ConnectionInfo) -> bool {
    token::validate_name(&info.name).is_ok()
        && !info.name.is_empty()
        && token::validate_connection_data(&info.data).is_ok()
}

/// This node's own roster and the changes not yet sent in a heartbeat.
#[derive(Debug, Default)]
pub(crate) struct Local {
    version: u64,
    /// The version the last heartbeat went out at.
    sent: u64,
    unsent: Vec<Change>,
    sessions: HashMap<SessionId, HashMap<ConnectionId, ConnectionInfo>>,
}

/// The changes since the previous heartbeat: `None` when there are more than a heartbeat may
/// carry (receivers then ask for a snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Delta {
    pub(crate) since: u64,
    pub(crate) version: u64,
    pub(crate) changes: Option<Vec<Change>>,
}

impl Local {
    /// Records a local presence change; returns it, numbered, for the session's subject.
    pub(crate) fn change(
        &mut self,
        session: &SessionId,
        id: ConnectionId,
        presence: Presence,
    ) -> Change {
        self.version += 1;
        match &presence {
            Presence::Joined(info) => {
                self.sessions
                    .entry(session.clone())
                    .or_default()
                    .insert(id, info.clone());
            }
            Presence::Left(_) => {
                if let Some(members) = self.sessions.get_mut(session) {
                    members.remove(&id);
                    if members.is_empty() {
                        self.sessions.remove(session);
                    }
                }
            }
        }
        let change = Change {
            v: self.version,
            session: session.clone(),
            id,
            presence,
        };
        if self.unsent.len() < MAX_DELTA_CHANGES {
            self.unsent.push(change.clone());
        }
        change
    }

    /// The heartbeat's delta: every change since the last one (or none, when they do not
    /// fit, or some were not kept).
    pub(crate) fn delta(&mut self, max_bytes: usize) -> Delta {
        let complete = self.unsent.len() as u64 == self.version - self.sent;
        let changes = std::mem::take(&mut self.unsent);
        let size: usize = changes.iter().map(change_size).sum();
        let delta = Delta {
            since: self.sent,
            version: self.version,
            changes: (complete && size <= max_bytes).then_some(changes),
        };
        self.sent = self.version;
        delta
    }

    /// The whole roster at the current version, in pages of at most about `max_bytes`.
    pub(crate) fn snapshot(&self, max_bytes: usize) -> (u64, Vec<Page>) {
        let mut pages = vec![Page::default()];
        let mut size = 0;
        for (session, members) in &self.sessions {
            for info in members.values() {
                let cost = info_size(session, info);
                if size + cost > max_bytes && size > 0 {
                    pages.push(Page::default());
                    size = 0;
                }
                size += cost;
                let page = pages.last_mut().expect("one page at least");
                match page.last_mut() {
                    Some((s, infos)) if s == session => infos.push(info.clone()),
                    _ => page.push((session.clone(), vec![info.clone()])),
                }
            }
        }
        (self.version, pages)
    }
}

/// One page of a snapshot: members by session.
pub(crate) type Page = Vec<(SessionId, Vec<ConnectionInfo>)>;

/// Changes a heartbeat carries at most (more: receivers ask for a snapshot).
const MAX_DELTA_CHANGES: usize = 4096;

/// A change's encoded size, about (an upper bound for postcard).
fn change_size(c: &Change) -> usize {
    match &c.presence {
        Presence::Joined(info) => info_size(&c.session, info) + 16,
        Presence::Left(_) => c.session.as_str().len() + 40,
    }
}

/// A member's encoded size in a page or change, about (an upper bound for postcard).
fn info_size(session: &SessionId, info: &ConnectionInfo) -> usize {
    session.as_str().len() + info.name.len() + info.data.len() + 48
}

/// What this node knows of another node's members.
#[derive(Debug, Default)]
pub(crate) struct NodeRoster {
    /// Every change of that node up to this version is applied.
    version: u64,
    sessions: HashMap<SessionId, HashMap<ConnectionId, ConnectionInfo>>,
    members: usize,
    /// Members changed by a change above `version` (heard early), with its version.
    ahead: HashMap<(SessionId, ConnectionId), u64>,
}

impl NodeRoster {
    /// The version up to which every change is applied.
    #[cfg(test)]
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Members of `session` on that node.
    pub(crate) fn session(
        &self,
        session: &SessionId,
    ) -> Option<&HashMap<ConnectionId, ConnectionInfo>> {
        self.sessions.get(session)
    }

    /// Every session with members there.
    pub(crate) fn sessions(
        &self,
    ) -> impl Iterator<Item = (&SessionId, &HashMap<ConnectionId, ConnectionInfo>)> {
        self.sessions.iter()
    }

    /// Whether `id` is a member of `session` there.
    pub(crate) fn has(&self, session: &SessionId, id: ConnectionId) -> bool {
        self.sessions
            .get(session)
            .is_some_and(|m| m.contains_key(&id))
    }

    /// Members in all.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.members
    }

    /// Applies one change heard on a session's subject. `taken`: whether an id is already a
    /// member elsewhere (here, or on another node) — such a join is refused.
    pub(crate) fn apply(
        &mut self,
        change: Change,
        bounds: &Bounds,
        taken: &dyn Fn(&SessionId, ConnectionId) -> bool,
    ) -> Option<Told> {
        if change.v <= self.version {
            return None;
        }
        let key = (change.session.clone(), change.id);
        if self.ahead.get(&key).is_some_and(|&v| v >= change.v) {
            return None;
        }
        if self.ahead.len() >= bounds.members.saturating_mul(2).max(1024)
            && !self.ahead.contains_key(&key)
        {
            // Too far ahead of what is complete: wait for the heartbeat or a snapshot.
            return None;
        }
        self.ahead.insert(key, change.v);
        self.set(change.session, change.id, change.presence, bounds, taken)
    }

    /// Applies a heartbeat's delta; `Err` when changes are missing (ask for a snapshot).
    pub(crate) fn apply_delta(
        &mut self,
        delta: Delta,
        bounds: &Bounds,
        taken: &dyn Fn(&SessionId, ConnectionId) -> bool,
    ) -> Result<Vec<Told>, Gap> {
        if delta.version <= self.version {
            return Ok(Vec::new());
        }
        let Some(changes) = delta.changes else {
            return Err(Gap::NeedSnapshot);
        };
        if delta.since > self.version {
            return Err(Gap::NeedSnapshot);
        }
        let mut told = Vec::new();
        for change in changes {
            if change.v <= self.version || change.v > delta.version {
                continue;
            }
            let key = (change.session.clone(), change.id);
            if self.ahead.get(&key).is_some_and(|&v| v >= change.v) {
                continue;
            }
            told.extend(self.set(change.session, change.id, change.presence, bounds, taken));
        }
        self.advance(delta.version);
        Ok(told)
    }

    /// Applies a whole snapshot at `version` (its pages put together); members changed by a
    /// newer change heard meanwhile keep that change.
    pub(crate) fn apply_snapshot(
        &mut self,
        version: u64,
        pages: Vec<Page>,
        bounds: &Bounds,
        taken: &dyn Fn(&SessionId, ConnectionId) -> bool,
    ) -> Vec<Told> {
        if version <= self.version {
            return Vec::new();
        }
        let mut fresh: HashMap<SessionId, HashMap<ConnectionId, ConnectionInfo>> = HashMap::new();
        let mut count = 0;
        for (session, infos) in pages.into_iter().flatten() {
            for info in infos {
                let newer = self
                    .ahead
                    .get(&(session.clone(), info.id))
                    .is_some_and(|&v| v > version);
                if newer
                    || count >= bounds.members
                    || !valid_info(&info)
                    || taken(&session, info.id)
                {
                    continue;
                }
                if !fresh.contains_key(&session) && fresh.len() >= bounds.sessions {
                    continue;
                }
                let members = fresh.entry(session.clone()).or_default();
                if members.len() < bounds.per_session && members.insert(info.id, info).is_none() {
                    count += 1;
                }
            }
        }
        // Changes newer than the snapshot stand.
        for ((session, id), &v) in &self.ahead {
            if v > version
                && let Some(info) = self.sessions.get(session).and_then(|m| m.get(id))
            {
                let members = fresh.entry(session.clone()).or_default();
                if members.insert(*id, info.clone()).is_none() {
                    count += 1;
                }
            }
        }
        let mut told = Vec::new();
        for (session, members) in &fresh {
            let known = self.sessions.get(session);
            for (id, info) in members {
                if known.is_none_or(|k| !k.contains_key(id)) {
                    told.push((session.clone(), RelayMessage::Joined(info.clone())));
                }
            }
        }
        for (session, members) in &self.sessions {
            let now = fresh.get(session);
            for id in members.keys() {
                if now.is_none_or(|m| !m.contains_key(id)) {
                    told.push((
                        session.clone(),
                        RelayMessage::Left {
                            connection: *id,
                            reason: LeftReason::NetworkDisconnected,
                        },
                    ));
                }
            }
        }
        self.sessions = fresh;
        self.members = count;
        self.advance(version);
        told
    }

    /// The node is gone: everyone it had has left.
    pub(crate) fn departed(self) -> Vec<Told> {
        self.sessions
            .into_iter()
            .flat_map(|(session, members)| {
                members.into_keys().map(move |id| {
                    (
                        session.clone(),
                        RelayMessage::Left {
                            connection: id,
                            reason: LeftReason::NetworkDisconnected,
                        },
                    )
                })
            })
            .collect()
    }

    fn advance(&mut self, version: u64) {
        self.version = version;
        self.ahead.retain(|_, v| *v > version);
    }

    fn set(
        &mut self,
        session: SessionId,
        id: ConnectionId,
        presence: Presence,
        bounds: &Bounds,
        taken: &dyn Fn(&SessionId, ConnectionId) -> bool,
    ) -> Option<Told> {
        match presence {
            Presence::Joined(info) => {
                if info.id != id
                    || !valid_info(&info)
                    || self.has(&session, id)
                    || taken(&session, id)
                {
                    return None;
                }
                if self.members >= bounds.members
                    || (!self.sessions.contains_key(&session)
                        && self.sessions.len() >= bounds.sessions)
                {
                    return None;
                }
                let members = self.sessions.entry(session.clone()).or_default();
                if members.len() >= bounds.per_session {
                    return None;
                }
                members.insert(id, info.clone());
                self.members += 1;
                Some((session, RelayMessage::Joined(info)))
            }
            Presence::Left(reason) => {
                let members = self.sessions.get_mut(&session)?;
                members.remove(&id)?;
                if members.is_empty() {
                    self.sessions.remove(&session);
                }
                self.members -= 1;
                Some((
                    session,
                    RelayMessage::Left {
                        connection: id,
                        reason,
                    },
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const BOUNDS: Bounds = Bounds {
        per_session: 100,
        members: 1000,
        sessions: 10,
    };

    fn nobody(_: &SessionId, _: ConnectionId) -> bool {
        false
    }

    fn info(id: ConnectionId) -> ConnectionInfo {
        ConnectionInfo {
            id,
            name: format!("m-{}", id.short()),
            role: signalbox_proto::Role::Publisher,
            data: String::new(),
            joined_at: 1,
        }
    }

    fn session(n: u8) -> SessionId {
        format!("s{n}").parse().unwrap()
    }

    /// Who a view says is present, as (session, id).
    fn present(r: &NodeRoster) -> BTreeSet<(String, ConnectionId)> {
        r.sessions()
            .flat_map(|(s, m)| m.keys().map(move |id| (s.as_str().to_owned(), *id)))
            .collect()
    }

    fn truth(l: &Local) -> BTreeSet<(String, ConnectionId)> {
        l.sessions
            .iter()
            .flat_map(|(s, m)| m.keys().map(move |id| (s.as_str().to_owned(), *id)))
            .collect()
    }

    #[test]
    fn a_left_heard_early_is_not_undone_by_an_older_join_in_a_delta() {
        let mut local = Local::default();
        let id = ConnectionId::random();
        let join = local.change(&session(1), id, Presence::Joined(info(id)));
        let leave = local.change(
            &session(1),
            id,
            Presence::Left(LeftReason::ClientDisconnected),
        );
        let mut view = NodeRoster::default();
        // The leave arrives on the session subject before anything else.
        assert_eq!(
            view.apply(leave, &BOUNDS, &nobody),
            None,
            "not known: nothing to tell"
        );
        // The join, late.
        assert_eq!(
            view.apply(join, &BOUNDS, &nobody),
            None,
            "older than the leave"
        );
        let told = view
            .apply_delta(local.delta(1 << 20), &BOUNDS, &nobody)
            .unwrap();
        assert!(told.is_empty(), "{told:?}");
        assert!(present(&view).is_empty());
        assert_eq!(view.version(), 2);
    }

    #[test]
    fn a_gap_asks_for_a_snapshot_and_the_snapshot_heals_it() {
        let mut local = Local::default();
        let ids: Vec<_> = (0..5).map(|_| ConnectionId::random()).collect();
        for id in &ids {
            local.change(&session(1), *id, Presence::Joined(info(*id)));
        }
        let lost = local.delta(1 << 20);
        local.change(
            &session(1),
            ids[0],
            Presence::Left(LeftReason::ClientDisconnected),
        );
        let mut view = NodeRoster::default();
        // The first heartbeat was lost: the second does not start where the view is.
        let second = local.delta(1 << 20);
        assert_eq!(
            view.apply_delta(second, &BOUNDS, &nobody),
            Err(Gap::NeedSnapshot)
        );
        let (v, pages) = local.snapshot(200);
        assert!(pages.len() > 1, "small pages: {}", pages.len());
        let told = view.apply_snapshot(v, pages, &BOUNDS, &nobody);
        assert_eq!(told.len(), 4, "the four still there joined");
        assert_eq!(present(&view), truth(&local));
        // The old heartbeat, replayed now, changes nothing.
        assert_eq!(view.apply_delta(lost, &BOUNDS, &nobody), Ok(vec![]));
    }

    #[test]
    fn a_delta_too_big_for_one_message_carries_nothing_and_asks_for_a_snapshot() {
        let mut local = Local::default();
        for _ in 0..50 {
            let id = ConnectionId::random();
            local.change(&session(1), id, Presence::Joined(info(id)));
        }
        let delta = local.delta(1000);
        assert_eq!(delta.changes, None);
        let mut view = NodeRoster::default();
        assert_eq!(
            view.apply_delta(delta, &BOUNDS, &nobody),
            Err(Gap::NeedSnapshot)
        );
    }

    #[test]
    fn remote_rosters_are_bounded_and_cannot_claim_taken_ids_or_bad_names() {
        let bounds = Bounds {
            per_session: 2,
            members: 3,
            sessions: 2,
        };
        let mut local = Local::default();
        let mut view = NodeRoster::default();
        let mine = ConnectionId::random();
        let taken = move |_: &SessionId, id: ConnectionId| id == mine;
        let mut changes = Vec::new();
        for s in 0..3 {
            for _ in 0..3 {
                let id = ConnectionId::random();
                changes.push(local.change(&session(s), id, Presence::Joined(info(id))));
            }
        }
        changes.push(local.change(&session(0), mine, Presence::Joined(info(mine))));
        let mut bad = info(ConnectionId::random());
        bad.name = "evil\u{202e}".into();
        changes.push(local.change(&session(1), bad.id, Presence::Joined(bad)));
        for c in changes {
            view.apply(c, &bounds, &taken);
        }
        assert_eq!(view.len(), 3);
        assert!(view.sessions().count() <= 2);
        assert!(view.sessions().all(|(_, m)| m.len() <= 2));
        assert!(
            !view.has(&session(0), mine),
            "a local member's id cannot be claimed"
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Join(u8),
        Leave(u8),
        Heartbeat { lost: bool },
        Snapshot,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..3).prop_map(Step::Join),
            3 => any::<u8>().prop_map(Step::Leave),
            2 => any::<bool>().prop_map(|lost| Step::Heartbeat { lost }),
            1 => Just(Step::Snapshot),
        ]
    }

    proptest! {
        /// Whatever is lost, reordered or heard twice on the session subjects, and whichever
        /// heartbeats are lost: a join or a leave is told at most once per real change, and
        /// after a heartbeat that arrives (with a snapshot when asked) the view is the truth.
        #[test]
        fn views_converge_and_tell_each_change_once(
            steps in proptest::collection::vec(step(), 1..120),
            deliveries in proptest::collection::vec((any::<bool>(), any::<bool>(), 0usize..4), 120),
        ) {
            let mut local = Local::default();
            let mut view = NodeRoster::default();
            let mut members: Vec<(SessionId, ConnectionId)> = Vec::new();
            let mut held: Vec<Change> = Vec::new();
            let mut joins_told = 0usize;
            let mut joins = 0usize;
            let mut need_snapshot = false;
            for (i, step) in steps.into_iter().enumerate() {
                let (deliver, twice, delay) = deliveries[i % deliveries.len()];
                let mut heard = Vec::new();
                match step {
                    Step::Join(s) => {
                        let id = ConnectionId::random();
                        members.push((session(s), id));
                        joins += 1;
                        heard.push(local.change(&session(s), id, Presence::Joined(info(id))));
                    }
                    Step::Leave(k) if !members.is_empty() => {
                        let (s, id) = members.remove(k as usize % members.len());
                        heard.push(local.change(&s, id, Presence::Left(LeftReason::ClientDisconnected)));
                    }
                    Step::Leave(_) => {}
                    Step::Heartbeat { lost } => {
                        let delta = local.delta(1 << 20);
                        if !lost {
                            match view.apply_delta(delta, &BOUNDS, &nobody) {
                                Ok(told) => joins_told += told.iter().filter(|t| matches!(t.1, RelayMessage::Joined(_))).count(),
                                Err(Gap::NeedSnapshot) => need_snapshot = true,
                            }
                            if !need_snapshot {
                                prop_assert_eq!(present(&view), truth(&local));
                            }
                        }
                    }
                    Step::Snapshot => {
                        let (v, pages) = local.snapshot(300);
                        let told = view.apply_snapshot(v, pages, &BOUNDS, &nobody);
                        joins_told += told.iter().filter(|t| matches!(t.1, RelayMessage::Joined(_))).count();
                        need_snapshot = false;
                        prop_assert_eq!(present(&view), truth(&local));
                    }
                }
                // Session-subject copies: delivered, dropped, duplicated, or held back.
                for c in heard {
                    if deliver {
                        held.insert(held.len().saturating_sub(delay), c.clone());
                        if twice {
                            held.push(c);
                        }
                    }
                }
                if held.len() > 3 || !deliver {
                    for c in held.drain(..) {
                        if let Some(t) = view.apply(c, &BOUNDS, &nobody) {
                            joins_told += usize::from(matches!(t.1, RelayMessage::Joined(_)));
                        }
                    }
                }
            }
            prop_assert!(joins_told <= joins, "told {} joins of {}", joins_told, joins);
        }
    }
}
