//! Scale-out: several relay nodes share sessions through a NATS server.
//!
//! Each node serves its own clients as a lone relay does, and tells the other nodes through
//! NATS (`async-nats`) what they need: the signals its clients send to sessions that have
//! members elsewhere, who joined and left, and, twice a second, a heartbeat with its whole
//! roster. There is no cluster protocol of our own beyond these messages; NATS carries them.
//!
//! Subjects:
//!
//! - `signalbox.s.<session>` — signals, relay (REST) signals and presence of one session
//!   (`.` in a session id is written `%`). A node subscribes while it has members in the
//!   session, so it receives traffic only for those sessions.
//! - `signalbox.hb` — heartbeats: every node's members, by session. They keep every node's
//!   view of the others current (a new node learns the cluster from them), and a node whose
//!   heartbeats stop for [`NODE_TIMEOUT`] has died: its members are reported
//!   `Left networkDisconnected`.
//! - `signalbox.n.<node>` — requests for one node (remove a connection).
//!
//! Order: a sender lives on one node, which publishes its signals in order over one NATS
//! connection; NATS keeps one publisher's order, and the receiving node feeds them to one
//! route per (sender, receiver), as for local senders. Every message also carries its node's
//! running number, so a receiver never applies a heartbeat older than a presence change it
//! has already seen.
//!
//! A signal is encoded once: the delivery frame made for local receivers travels as is and is
//! queued unchanged to receivers on other nodes. Publishing never waits: messages go through
//! a bounded queue to one publisher task; if NATS is away long enough to fill it, further
//! cluster messages are dropped and counted, while local delivery carries on. async-nats
//! reconnects by itself; heartbeats then restore each node's view of the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, RelayMessage, SessionId, Target};
use tokio::sync::mpsc;

use crate::delivery::{self, Fanout};
use crate::registry::lock;
use crate::server::Shared;

/// How often a node sends its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);
/// A node whose heartbeats stop this long has died.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_secs(3);
/// Cluster messages waiting for NATS; past this (NATS away) they are dropped and counted.
const OUTBOX: usize = 65_536;

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the cluster at {url}: {message}")]
pub struct ClusterError {
    url: String,
    message: String,
}

/// A node's view of its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Whether the node reaches the NATS server (false: degraded, serving its own members).
    pub connected: bool,
    /// The other nodes alive (their names).
    pub nodes: Vec<String>,
}

/// What nodes tell each other. Messages about one session travel on its subject, which
/// names the session, so they do not repeat it.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    /// A client's signal.
    Signal {
        from: ConnectionId,
        seq: u64,
        to: Target,
        /// The delivery frame, as local receivers get it.
        frame: Vec<u8>,
    },
    /// A signal from the relay itself (REST); each node delivers it as its own.
    RelaySignal {
        to: Target,
        r#type: String,
        data: String,
    },
    Joined {
        info: ConnectionInfo,
    },
    Left {
        id: ConnectionId,
        reason: LeftReason,
    },
    Heartbeat {
        name: String,
        sessions: Vec<(SessionId, Vec<ConnectionInfo>)>,
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
struct Envelope {
    node: String,
    /// The node's running number of messages (in publish order).
    n: u64,
    msg: Wire,
}

/// What this node knows of another.
#[derive(Debug)]
struct NodeView {
    name: String,
    last_seen: Instant,
    /// The newest message number applied to the roster.
    applied: u64,
    sessions: HashMap<SessionId, HashMap<ConnectionId, ConnectionInfo>>,
}

impl NodeView {
    fn new() -> Self {
        Self {
            name: String::new(),
            last_seen: Instant::now(),
            applied: 0,
            sessions: HashMap::new(),
        }
    }
}

/// This node's part in a cluster.
pub(crate) struct Cluster {
    /// This node's id (new on every start).
    pub(crate) node: String,
    /// Its name, for people.
    pub(crate) name: String,
    url: String,
    client: async_nats::Client,
    outbox: Mutex<(u64, mpsc::Sender<(String, Bytes)>)>,
    outbox_rx: Mutex<Option<mpsc::Receiver<(String, Bytes)>>>,
    /// Stops the publisher once the relay's own tasks have ended (their last words, such as
    /// members leaving with `relayShutdown`, still go out).
    pub(crate) stop: tokio_util::sync::CancellationToken,
    publisher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    connected: Arc<AtomicBool>,
    nodes: Mutex<HashMap<String, NodeView>>,
    /// Sessions subscribed to, with their subscription task.
    watched: Mutex<HashMap<SessionId, tokio::task::AbortHandle>>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn session_subject(session: &SessionId) -> String {
    // Session ids never contain `%`, so this is one-to-one; `.` separates NATS tokens.
    format!("signalbox.s.{}", session.as_str().replace('.', "%"))
}

const HEARTBEAT_SUBJECT: &str = "signalbox.hb";

fn node_subject(node: &str) -> String {
    format!("signalbox.n.{node}")
}

impl Cluster {
    /// Connects to NATS at `url` (in the background: a relay starts while NATS is away, and
    /// serves its own members until it comes).
    pub(crate) async fn connect(url: &str, name: String) -> Result<Self, ClusterError> {
        let node = ConnectionId::random().to_string();
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let url_for_log = url.to_owned();
        let client = async_nats::ConnectOptions::new()
            .name(format!("signalbox relay {name}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let flag = flag.clone();
                let url = url_for_log.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            flag.store(true, Ordering::Release);
                            tracing::info!(%url, "cluster: connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            flag.store(false, Ordering::Release);
                            tracing::warn!(%url, "cluster: NATS is away; serving local members only until it returns");
                        }
                        other => tracing::debug!(%other, "cluster: NATS event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| ClusterError {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel(OUTBOX);
        Ok(Self {
            node,
            name,
            url: url.to_owned(),
            client,
            outbox: Mutex::new((0, tx)),
            outbox_rx: Mutex::new(Some(rx)),
            stop: tokio_util::sync::CancellationToken::new(),
            publisher: Mutex::new(None),
            connected,
            nodes: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        })
    }

    /// Starts the node's tasks: the publisher, heartbeats and the watch for dead nodes, and
    /// the subscriber for heartbeats and requests.
    pub(crate) fn start(shared: &Arc<Shared>) {
        let Some(cluster) = shared.cluster.clone() else {
            return;
        };
        if let Some(rx) = lock(&cluster.outbox_rx).take() {
            let client = cluster.client.clone();
            *lock(&cluster.publisher) =
                Some(tokio::spawn(publisher(client, rx, cluster.stop.clone())));
        }
        shared.tracker.spawn(heartbeats(shared.clone()));
        shared.tracker.spawn(inbox(shared.clone()));
    }

    /// Sends what is still queued, then stops (the relay is shutting down).
    pub(crate) async fn close(&self) {
        self.stop.cancel();
        let task = lock(&self.publisher).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// Whether NATS is connected.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The other nodes alive, by name.
    pub(crate) fn peers(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.nodes).values().map(|n| n.name.clone()).collect();
        names.sort();
        names
    }

    /// Cluster messages dropped because NATS was away too long.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, subject: String, msg: Wire) {
        let mut outbox = lock(&self.outbox);
        outbox.0 += 1;
        let envelope = Envelope {
            node: self.node.clone(),
            n: outbox.0,
            msg,
        };
        let payload = match postcard::to_allocvec(&envelope) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(error = %e, "cluster: cannot encode a message");
                return;
            }
        };
        if outbox.1.try_send((subject, payload)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Members of `session` on other nodes.
    pub(crate) fn remote_members(&self, session: &SessionId) -> Vec<ConnectionInfo> {
        lock(&self.nodes)
            .values()
            .filter_map(|n| n.sessions.get(session))
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// How many members `session` has on other nodes.
    pub(crate) fn remote_count(&self, session: &SessionId) -> usize {
        lock(&self.nodes)
            .values()
            .filter_map(|n| n.sessions.get(session))
            .map(HashMap::len)
            .sum()
    }

    /// The node serving `id` in `session`, when it is another node.
    pub(crate) fn node_of(&self, session: &SessionId, id: ConnectionId) -> Option<String> {
        lock(&self.nodes)
            .iter()
            .find(|(_, n)| n.sessions.get(session).is_some_and(|m| m.contains_key(&id)))
            .map(|(node, _)| node.clone())
    }

    /// Sessions with members on other nodes, and how many.
    pub(crate) fn remote_sessions(&self) -> HashMap<SessionId, usize> {
        let mut out: HashMap<SessionId, usize> = HashMap::new();
        for n in lock(&self.nodes).values() {
            for (s, m) in &n.sessions {
                *out.entry(s.clone()).or_default() += m.len();
            }
        }
        out
    }

    /// Whether a signal to `to` in `session` reaches anyone on another node.
    fn reaches_remote(&self, session: &SessionId, to: &Target) -> bool {
        let nodes = lock(&self.nodes);
        let mut members = nodes.values().filter_map(|n| n.sessions.get(session));
        match to {
            Target::All => members.any(|m| !m.is_empty()),
            Target::One(id) => members.any(|m| m.contains_key(id)),
            Target::List(ids) => members.any(|m| ids.iter().any(|id| m.contains_key(id))),
        }
    }

    /// A local client's signal, already delivered locally: on to the other nodes.
    pub(crate) fn signal(
        &self,
        session: &SessionId,
        from: ConnectionId,
        seq: u64,
        to: &Target,
        frame: &Bytes,
    ) {
        if self.reaches_remote(session, to) {
            self.send(
                session_subject(session),
                Wire::Signal {
                    from,
                    seq,
                    to: to.clone(),
                    frame: frame.to_vec(),
                },
            );
        }
    }

    /// A relay (REST) signal: each other node with members in `session` delivers it.
    pub(crate) fn relay_signal(&self, session: &SessionId, to: &Target, ty: &str, data: &str) {
        if self.reaches_remote(session, to) {
            self.send(
                session_subject(session),
                Wire::RelaySignal {
                    to: to.clone(),
                    r#type: ty.to_owned(),
                    data: data.to_owned(),
                },
            );
        }
    }

    /// A local member joined `session`.
    pub(crate) fn joined(&self, session: &SessionId, info: &ConnectionInfo) {
        self.send(
            session_subject(session),
            Wire::Joined { info: info.clone() },
        );
    }

    /// A local member left `session`.
    pub(crate) fn left(&self, session: &SessionId, id: ConnectionId, reason: LeftReason) {
        self.send(session_subject(session), Wire::Left { id, reason });
    }

    /// Asks the node serving `id` to remove it.
    pub(crate) fn kick(&self, node: &str, session: &SessionId, id: ConnectionId, reason: &str) {
        self.send(
            node_subject(node),
            Wire::Kick {
                session: session.clone(),
                id,
                reason: reason.to_owned(),
            },
        );
    }

    /// Subscribes to `session` (its first local member joined).
    pub(crate) fn watch(shared: &Arc<Shared>, session: &SessionId) {
        let Some(cluster) = &shared.cluster else {
            return;
        };
        let mut watched = lock(&cluster.watched);
        if watched.contains_key(session) {
            return;
        }
        let task = shared
            .tracker
            .spawn(session_inbox(shared.clone(), session.clone()));
        watched.insert(session.clone(), task.abort_handle());
    }

    /// Unsubscribes from `session` if it has no local member (its last one left). Checked
    /// under the same lock `watch` takes, so a member joining meanwhile keeps the subscription.
    pub(crate) fn unwatch(&self, shared: &Shared, session: &SessionId) {
        let mut watched = lock(&self.watched);
        if shared.registry.get(session).is_none()
            && let Some(task) = watched.remove(session)
        {
            task.abort();
        }
    }
}

/// Sends queued messages to NATS, in order.
async fn publisher(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<(String, Bytes)>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let (subject, payload) = tokio::select! {
            biased;
            next = rx.recv() => match next {
                Some(m) => m,
                None => break,
            },
            _ = cancel.cancelled() => break,
        };
        if let Err(e) = client.publish(subject, payload).await {
            tracing::debug!(error = %e, "cluster: publish failed");
        }
    }
    // Shutting down: what is queued still goes, if NATS takes it promptly.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok((subject, payload)) = rx.try_recv() {
            if client.publish(subject, payload).await.is_err() {
                break;
            }
        }
        let _ = client.flush().await;
    })
    .await;
}

/// Tells the local members of `session` something (presence).
fn tell_local(shared: &Shared, session: &SessionId, msg: &RelayMessage) {
    let Some(s) = shared.registry.get(session) else {
        return;
    };
    if let Some(frame) = crate::frames::control(msg) {
        for m in s.roster().members.values() {
            m.send_control(frame.clone());
        }
    }
}

/// Sends heartbeats and reports nodes whose heartbeats stopped.
async fn heartbeats(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let sessions = shared
            .registry
            .sessions()
            .into_iter()
            .map(|s| {
                let infos = s
                    .roster()
                    .members
                    .values()
                    .map(|m| m.info.clone())
                    .collect();
                (s.id.clone(), infos)
            })
            .collect();
        cluster.send(
            HEARTBEAT_SUBJECT.to_owned(),
            Wire::Heartbeat {
                name: cluster.name.clone(),
                sessions,
            },
        );
        // Nodes gone quiet: their members have left.
        let dead: Vec<NodeView> = {
            let mut nodes = lock(&cluster.nodes);
            let gone: Vec<String> = nodes
                .iter()
                .filter(|(_, n)| n.last_seen.elapsed() > NODE_TIMEOUT)
                .map(|(id, _)| id.clone())
                .collect();
            gone.iter().filter_map(|id| nodes.remove(id)).collect()
        };
        for node in dead {
            tracing::warn!(node = %node.name, "cluster: node stopped answering; its members have left");
            for (session, members) in node.sessions {
                for id in members.keys() {
                    tell_local(
                        &shared,
                        &session,
                        &RelayMessage::Left {
                            connection: *id,
                            reason: LeftReason::NetworkDisconnected,
                        },
                    );
                }
            }
        }
    }
}

/// Heartbeats from every node and requests for this one.
async fn inbox(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    let subscribe = |subject: String| {
        let client = cluster.client.clone();
        async move { client.subscribe(subject).await }
    };
    let (Ok(beats), Ok(requests)) = (
        subscribe(HEARTBEAT_SUBJECT.to_owned()).await,
        subscribe(node_subject(&cluster.node)).await,
    ) else {
        tracing::error!("cluster: cannot subscribe to heartbeats");
        return;
    };
    let mut messages = futures_util::stream::select(beats, requests);
    loop {
        let msg = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            m = messages.next() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let Ok(env) = postcard::from_bytes::<Envelope>(&msg.payload) else {
            tracing::debug!("cluster: undecodable message");
            continue;
        };
        if env.node == cluster.node {
            continue;
        }
        match env.msg {
            Wire::Heartbeat { name, sessions } => {
                heartbeat(&shared, &cluster, &env.node, env.n, name, sessions)
            }
            Wire::Kick {
                session,
                id,
                reason,
            } => {
                if let Some((_, member)) = shared.registry.member(&session, id) {
                    member.close(signalbox_proto::CloseCode::Kicked, &reason);
                }
            }
            _ => {}
        }
    }
}

/// Applies a heartbeat: the node's roster, as of message `n`. Differences from what was
/// known are presence changes this node missed (it was not watching, or NATS dropped them).
fn heartbeat(
    shared: &Shared,
    cluster: &Cluster,
    node: &str,
    n: u64,
    name: String,
    sessions: Vec<(SessionId, Vec<ConnectionInfo>)>,
) {
    let fresh: HashMap<SessionId, HashMap<ConnectionId, ConnectionInfo>> = sessions
        .into_iter()
        .map(|(s, infos)| (s, infos.into_iter().map(|i| (i.id, i)).collect()))
        .collect();
    let mut tell = Vec::new();
    {
        let mut nodes = lock(&cluster.nodes);
        let view = nodes.entry(node.to_owned()).or_insert_with(|| {
            tracing::info!(node = %name, "cluster: node joined");
            NodeView::new()
        });
        view.last_seen = Instant::now();
        view.name = name;
        if n <= view.applied {
            return;
        }
        view.applied = n;
        for (s, members) in &fresh {
            let known = view.sessions.get(s);
            for (id, info) in members {
                if known.is_none_or(|k| !k.contains_key(id)) {
                    tell.push((s.clone(), RelayMessage::Joined(info.clone())));
                }
            }
        }
        for (s, members) in &view.sessions {
            let now = fresh.get(s);
            for id in members.keys() {
                if now.is_none_or(|m| !m.contains_key(id)) {
                    tell.push((
                        s.clone(),
                        RelayMessage::Left {
                            connection: *id,
                            reason: LeftReason::NetworkDisconnected,
                        },
                    ));
                }
            }
        }
        view.sessions = fresh;
    }
    for (s, msg) in tell {
        tell_local(shared, &s, &msg);
    }
}

/// One session's traffic from the other nodes: their clients' signals, relay signals and
/// presence, delivered to this node's members.
async fn session_inbox(shared: Arc<Shared>, session: SessionId) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    let mut sub = match cluster.client.subscribe(session_subject(&session)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%session, error = %e, "cluster: cannot subscribe");
            return;
        }
    };
    // One route set per remote sender, as for local senders.
    let mut senders: HashMap<ConnectionId, Fanout> = HashMap::new();
    loop {
        let msg = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            m = sub.next() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let Ok(env) = postcard::from_bytes::<Envelope>(&msg.payload) else {
            continue;
        };
        if env.node == cluster.node {
            continue;
        }
        match env.msg {
            Wire::Signal {
                from,
                seq,
                to,
                frame,
            } => {
                let Some(s) = shared.registry.get(&session) else {
                    continue;
                };
                let fanout = senders.entry(from).or_insert_with(|| {
                    Fanout::new(Some(from), shared.delivery.clone(), shared.tracker.clone())
                });
                let frame = Bytes::from(frame);
                let delivered = delivery::fan_out(fanout, &s.roster(), &to, seq, &frame);
                shared.metrics.remote_signal(delivered);
            }
            Wire::RelaySignal { to, r#type, data } => {
                if let Some(s) = shared.registry.get(&session) {
                    let _ = shared.deliver_relay_signal(&s, &to, &r#type, &data);
                }
            }
            Wire::Joined { info } => {
                let new = {
                    let mut nodes = lock(&cluster.nodes);
                    let view = nodes.entry(env.node.clone()).or_insert_with(NodeView::new);
                    view.last_seen = Instant::now();
                    if env.n <= view.applied {
                        false
                    } else {
                        view.applied = env.n;
                        view.sessions
                            .entry(session.clone())
                            .or_default()
                            .insert(info.id, info.clone())
                            .is_none()
                    }
                };
                if new {
                    tell_local(&shared, &session, &RelayMessage::Joined(info));
                }
            }
            Wire::Left { id, reason } => {
                let known = {
                    let mut nodes = lock(&cluster.nodes);
                    match nodes.get_mut(&env.node) {
                        Some(view) if env.n > view.applied => {
                            view.applied = env.n;
                            view.last_seen = Instant::now();
                            view.sessions
                                .get_mut(&session)
                                .and_then(|m| m.remove(&id))
                                .is_some()
                        }
                        _ => false,
                    }
                };
                // Its routes end once they have written what they hold.
                senders.remove(&id);
                if known {
                    tell_local(
                        &shared,
                        &session,
                        &RelayMessage::Left {
                            connection: id,
                            reason,
                        },
                    );
                }
            }
            Wire::Heartbeat { .. } | Wire::Kick { .. } => {}
        }
        if senders.len() > 64 {
            let alive = cluster.remote_members(&session);
            senders.retain(|id, _| alive.iter().any(|m| m.id == *id));
        }
    }
}
