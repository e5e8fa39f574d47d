//! The relay's counters, in Prometheus text format (`GET /metrics`), from `prometheus-client`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use signalbox_proto::{LeftReason, SignalError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every counter the relay keeps. Cheap to update from any task.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    connections: Gauge,
    away: Gauge,
    sessions: Gauge,
    joins: Counter,
    left: Family<ReasonLabel, Counter>,
    signals_in: Counter,
    signal_bytes_in: Counter,
    deliveries: Counter,
    rejected: Family<CodeLabel, Counter>,
    rest_requests: Family<StatusLabel, Counter>,
    remote_signals: Counter,
    cluster_connected: Gauge,
    cluster_nodes: Gauge,
    cluster_dropped: Gauge,
    cluster_refused: Gauge,
    held_queued: Gauge,
    held_replay: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("signalbox");
        let m = Self {
            connections: Gauge::default(),
            away: Gauge::default(),
            sessions: Gauge::default(),
            joins: Counter::default(),
            left: Family::default(),
            signals_in: Counter::default(),
            signal_bytes_in: Counter::default(),
            deliveries: Counter::default(),
            rejected: Family::default(),
            rest_requests: Family::default(),
            remote_signals: Counter::default(),
            cluster_connected: Gauge::default(),
            cluster_nodes: Gauge::default(),
            cluster_dropped: Gauge::default(),
            cluster_refused: Gauge::default(),
            held_queued: Gauge::default(),
            held_replay: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Connections in sessions",
            m.connections.clone(),
        );
        registry.register(
            "connections_away",
            "Connections in sessions whose network was lost, waiting for their client to resume",
            m.away.clone(),
        );
        registry.register(
            "sessions",
            "Sessions with at least one connection",
            m.sessions.clone(),
        );
        registry.register("joins", "Successful joins", m.joins.clone());
        registry.register("left", "Connections that left, by reason", m.left.clone());
        registry.register(
            "signals_in",
            "Signals received from clients and REST",
            m.signals_in.clone(),
        );
        registry.register(
            "signal_bytes_in",
            "Bytes of signal frames received",
            m.signal_bytes_in.clone(),
        );
        registry.register(
            "deliveries",
            "Signals queued to receivers",
            m.deliveries.clone(),
        );
        registry.register(
            "rejected",
            "Signals rejected, by error code",
            m.rejected.clone(),
        );
        registry.register(
            "rest_requests",
            "REST API answers, by status",
            m.rest_requests.clone(),
        );
        registry.register(
            "remote_signals",
            "Signals from other cluster nodes' clients",
            m.remote_signals.clone(),
        );
        registry.register(
            "cluster_connected",
            "1 while this node is connected to the cluster's NATS server (0 alone or degraded)",
            m.cluster_connected.clone(),
        );
        registry.register(
            "cluster_nodes",
            "Other cluster nodes alive",
            m.cluster_nodes.clone(),
        );
        registry.register(
            "cluster_dropped_messages",
            "Cluster messages dropped while NATS was away",
            m.cluster_dropped.clone(),
        );
        registry.register(
            "held_queued_bytes",
            "Signal bytes queued for receivers (each with 64 bytes of overhead)",
            m.held_queued.clone(),
        );
        registry.register(
            "held_replay_bytes",
            "Signal bytes kept for resumes (each with 64 bytes of overhead)",
            m.held_replay.clone(),
        );
        registry.register(
            "cluster_refused_messages",
            "Cluster messages refused: without the cluster key's tag, replayed, or breaking the rules local input obeys",
            m.cluster_refused.clone(),
        );
        Self { registry, ..m }
    }

    /// A signal from another node's client, queued to `deliveries` receivers here.
    pub(crate) fn remote_signal(&self, deliveries: usize) {
        self.remote_signals.inc();
        self.deliveries.inc_by(deliveries as u64);
    }

    /// The cluster's state, for the next rendering.
    pub(crate) fn cluster(&self, connected: bool, nodes: usize, dropped: u64, refused: u64) {
        self.cluster_connected.set(i64::from(connected));
        self.cluster_nodes.set(nodes as i64);
        self.cluster_dropped.set(dropped as i64);
        self.cluster_refused.set(refused as i64);
    }

    pub(crate) fn joined(&self) {
        self.joins.inc();
    }

    pub(crate) fn left(&self, reason: LeftReason) {
        self.left
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn signal(&self, frame_bytes: usize, deliveries: usize) {
        self.signals(1, frame_bytes as u64, deliveries as u64);
    }

    /// `signals` signals of `bytes` in all, delivered `deliveries` times.
    pub(crate) fn signals(&self, signals: u64, bytes: u64, deliveries: u64) {
        if signals > 0 {
            self.signals_in.inc_by(signals);
            self.signal_bytes_in.inc_by(bytes);
            self.deliveries.inc_by(deliveries);
        }
    }

    pub(crate) fn rest_request(&self, status: u16) {
        self.rest_requests
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    pub(crate) fn rejected(&self, error: &SignalError) {
        self.rejected
            .get_or_create(&CodeLabel { code: error.code() })
            .inc();
    }

    /// The text exposition, with the gauges set to the given current values.
    /// Bytes held for delivery (queued, kept for replay), for the next rendering.
    pub(crate) fn held(&self, (queued, replay): (usize, usize)) {
        self.held_queued.set(queued as i64);
        self.held_replay.set(replay as i64);
    }

    pub(crate) fn render(&self, connections: usize, away: usize, sessions: usize) -> String {
        self.connections.set(connections as i64);
        self.away.set(away as i64);
        self.sessions.set(sessions as i64);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.signal(100, 3);
        m.rejected(&SignalError::EmptyTargetList);
        m.left(LeftReason::SlowConsumer);
        let text = m.render(2, 1, 1);
        assert!(text.contains("signalbox_signals_in_total 1"), "{text}");
        assert!(text.contains("signalbox_deliveries_total 3"), "{text}");
        assert!(
            text.contains("signalbox_rejected_total{code=\"400\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("signalbox_left_total{reason=\"slowConsumer\"} 1"),
            "{text}"
        );
        assert!(text.contains("signalbox_connections 2"), "{text}");
        assert!(text.contains("signalbox_connections_away 1"), "{text}");
    }
}
