//! The other nodes, as the rest of the relay sees them.
//!
//! A lone relay has no other nodes, and a node of a cluster has some: [`Others`] answers every
//! question the connection tasks, the REST API and the metrics ask about members elsewhere
//! (how many are in this session, who, on which node, how to reach them) the same way in both
//! cases — a lone relay's answer is "nobody", and what it would tell them goes nowhere. So the
//! drivers never ask whether there is a cluster: remote members are one more source of
//! members, and the NATS machinery stays in this module.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, SessionId, Target};

use super::{Cluster, ClusterStatus};
use crate::metrics::Metrics;
use crate::server::Shared;

/// The other nodes of this relay's cluster: none without `--cluster`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Others(Option<Arc<Cluster>>);

/// What a node says of its cluster in `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// Not in a cluster.
    Alone,
    /// NATS reached; this many other nodes alive.
    Connected(usize),
    /// NATS away: the node serves its own members only.
    Degraded,
}

impl Others {
    pub(crate) fn new(cluster: Option<Cluster>) -> Self {
        Self(cluster.map(Arc::new))
    }

    /// The cluster, for its own tasks.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.0.as_ref()
    }

    /// Members of `session` on other nodes.
    pub(crate) fn count(&self, session: &SessionId) -> usize {
        self.0.as_ref().map_or(0, |c| c.remote_count(session))
    }

    /// Who they are.
    pub(crate) fn members(&self, session: &SessionId) -> Vec<ConnectionInfo> {
        self.0
            .as_ref()
            .map(|c| c.remote_members(session))
            .unwrap_or_default()
    }

    /// Whether `id` is a member of `session` on another node.
    pub(crate) fn has(&self, session: &SessionId, id: ConnectionId) -> bool {
        self.0
            .as_ref()
            .is_some_and(|c| c.node_of(session, id).is_some())
    }

    /// Sessions with members on other nodes, and how many.
    pub(crate) fn sessions(&self) -> HashMap<SessionId, usize> {
        self.0
            .as_ref()
            .map(|c| c.remote_sessions())
            .unwrap_or_default()
    }

    /// A member joined `session` here: the others are told, and this node hears the
    /// session's traffic from them.
    pub(crate) fn joined(&self, shared: &Arc<Shared>, session: &SessionId, info: &ConnectionInfo) {
        if let Some(c) = &self.0 {
            c.joined(session, info);
            Cluster::watch(shared, session);
        }
    }

    /// A member left `session` here.
    pub(crate) fn left(
        &self,
        shared: &Shared,
        session: &SessionId,
        id: ConnectionId,
        reason: LeftReason,
    ) {
        if let Some(c) = &self.0 {
            c.left(session, id, reason);
            c.unwatch(shared, session);
        }
    }

    /// A member's signal (its delivery frame), for the members elsewhere it reaches.
    pub(crate) fn signal(
        &self,
        session: &SessionId,
        from: ConnectionId,
        seq: u64,
        to: &Target,
        frame: &Bytes,
    ) {
        if let Some(c) = &self.0 {
            c.signal(session, from, seq, to, frame);
        }
    }

    /// A signal from the relay itself (checked), for the members elsewhere.
    pub(crate) fn relay_signal(&self, session: &SessionId, to: &Target, ty: &str, data: &str) {
        if let Some(c) = &self.0 {
            c.relay_signal(session, to, ty, data);
        }
    }

    /// Removes `id` from `session` on the node that serves it; false if no other node does.
    pub(crate) fn kick(&self, session: &SessionId, id: ConnectionId, reason: &str) -> bool {
        let Some(c) = &self.0 else {
            return false;
        };
        match c.node_of(session, id) {
            Some(node) => {
                c.kick(&node, session, id, reason);
                true
            }
            None => false,
        }
    }

    /// The cluster as this node sees it (`None` when alone).
    pub(crate) fn status(&self) -> Option<ClusterStatus> {
        self.0.as_ref().map(|c| ClusterStatus {
            connected: c.is_connected(),
            nodes: c.peers(),
        })
    }

    /// What `/healthz` says of the cluster.
    pub(crate) fn health(&self) -> Health {
        match &self.0 {
            None => Health::Alone,
            Some(c) if c.is_connected() => Health::Connected(c.peers().len()),
            Some(_) => Health::Degraded,
        }
    }

    /// Brings the cluster's counters up to date in `metrics`.
    pub(crate) fn count_into(&self, metrics: &Metrics) {
        if let Some(c) = &self.0 {
            metrics.cluster(c.is_connected(), c.peers().len(), c.dropped(), c.refused());
        }
    }

    /// Stops at once (the relay is dropped).
    pub(crate) fn stop(&self) {
        if let Some(c) = &self.0 {
            c.stop.cancel();
        }
    }

    /// Sends what is still queued, then stops (the relay is shutting down).
    pub(crate) async fn close(&self) {
        if let Some(c) = &self.0 {
            c.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_relay_has_nobody_elsewhere() {
        let alone = Others::default();
        let session: SessionId = "room".parse().unwrap();
        let id = ConnectionId::random();
        assert_eq!(alone.count(&session), 0);
        assert!(alone.members(&session).is_empty());
        assert!(!alone.has(&session, id));
        assert!(alone.sessions().is_empty());
        assert!(!alone.kick(&session, id, "no"), "nobody to kick elsewhere");
        assert_eq!(alone.status(), None);
        assert_eq!(alone.health(), Health::Alone);
        assert!(alone.cluster().is_none());
    }
}
