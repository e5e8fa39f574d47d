//! Scale-out: several relay nodes share sessions through a NATS server.
//!
//! Each node serves its own clients as a lone relay does, and tells the other nodes through
//! NATS (`async-nats`) what they need: the signals its clients send to sessions that have
//! members elsewhere, who joined and left, and, twice a second, a heartbeat. There is no
//! cluster protocol of our own beyond these messages; NATS carries them.
//!
//! Subjects:
//!
//! - `signalbox.s.<session>` — signals, relay (REST) signals and presence of one session
//!   (`.` in a session id is written `%`). A node subscribes while it has members in the
//!   session, so it receives traffic only for those sessions.
//! - `signalbox.hb` — heartbeats: that a node is alive, and its presence changes since its
//!   previous heartbeat ([`crate::engine::roster`]: deltas, and snapshots in pages when a
//!   node missed some). A node from which neither heartbeats nor signals of its members arrive
//!   for [`NODE_TIMEOUT`] has died: its members are reported `Left networkDisconnected`.
//!   (Under load a node's heartbeats can wait seconds behind its signals in its one NATS
//!   connection; its signals still show it is alive.) No message is ever larger than NATS's
//!   `max_payload` allows.
//! - `signalbox.n.<node>` — requests for one node: remove a connection, send a snapshot,
//!   and the snapshot's pages.
//!
//! **Remote input is input.** Every envelope is sealed with an HMAC under the cluster key
//! ([`wire`]): a NATS user without it can refuse to carry messages, and read them, but not
//! inject, forge, replay or move one to another subject. Then a message is checked as a local
//! client's would be ([`inbox`](mod@inbox), without I/O, with property tests over random
//! interleavings): a remote signal's sender must be a member of the publishing node in that
//! session, its seq must rise, its frame must decode and obey this node's limits; a node's
//! roster may not claim ids that are members elsewhere, and is bounded like a session. Refused messages are counted (`signalbox_cluster_refused_messages`).
//!
//! Order: a sender lives on one node, which publishes its signals in order over one NATS
//! connection; NATS keeps one publisher's order, and the receiving node feeds them to one
//! route per (sender, receiver), as for local senders.
//!
//! A signal is encoded once: the delivery frame made for local receivers travels as is, and
//! is re-encoded by the receiving node after its checks. Publishing never waits: messages go
//! through a bounded queue to one publisher task; if NATS is away long enough to fill it,
//! further cluster messages are dropped and counted, while local delivery carries on.
//! async-nats reconnects by itself; heartbeats (and snapshots) then restore each node's view
//! of the others.

mod inbox;
mod others;
pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use signalbox_proto::{
    ConnectionId, ConnectionInfo, LeftReason, RelayMessage, SessionId, Target, token,
};
use tokio::sync::mpsc;

use crate::engine::roster::{Bounds, Gap, Local, NodeRoster, Page, Presence, Told};
use crate::registry::lock;
use crate::server::Shared;
use crate::transport::connection::tell_after_routes;
use crate::transport::delivery::{self, Fanout};
use wire::{Envelope, Key, Refused, Replay, Wire};

pub(crate) use others::{Health, Others};

/// How often a node sends its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);
/// A node whose heartbeats stop this long has died.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after it begins to watch a session a node sends that session's broadcasts to the
/// cluster even if it knows no member elsewhere (two heartbeats and a margin).
const SETTLE: Duration = Duration::from_millis(1200);
/// Cluster messages waiting for NATS; past this (NATS away) they are dropped and counted.
const OUTBOX: usize = 65_536;
/// Other nodes a node keeps track of, at most.
pub(crate) const MAX_NODES: usize = 64;
/// The largest message a node sends when NATS has not said its `max_payload` (NATS's
/// default is 1 MiB); pages and heartbeats use half of what NATS allows.
const DEFAULT_PAYLOAD: usize = 1 << 20;
/// Pages a snapshot may have (with half of 1 MiB each: far more than any roster needs).
const MAX_PAGES: u32 = 4096;
/// How long a node waits for a snapshot it asked for before asking again.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(2);

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

/// How to reach and trust the NATS server, beyond its URL (`nats://user:pass@host:port` and
/// `tls://host:port` work as URLs).
#[derive(Debug, Clone, Default)]
pub(crate) struct NatsAuth {
    /// A NATS credentials file (JWT and NKey seed).
    pub(crate) creds: Option<std::path::PathBuf>,
    /// A CA certificate (PEM) the NATS server's TLS certificate is checked against.
    pub(crate) ca: Option<std::path::PathBuf>,
}

/// What this node knows of another.
#[derive(Debug)]
struct NodeView {
    name: String,
    last_seen: Instant,
    roster: NodeRoster,
    /// When a snapshot was asked for (none outstanding: `None`).
    asked: Option<Instant>,
    /// The snapshot being put together: its version and pages.
    assembling: Option<(u64, Vec<Option<Page>>)>,
}

impl NodeView {
    fn new() -> Self {
        Self {
            name: String::new(),
            last_seen: Instant::now(),
            roster: NodeRoster::default(),
            asked: None,
            assembling: None,
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
    key: Key,
    outbox: Mutex<(u64, mpsc::Sender<(String, Bytes)>)>,
    outbox_rx: Mutex<Option<mpsc::Receiver<(String, Bytes)>>>,
    /// Stops the publisher once the relay's own tasks have ended (their last words, such as
    /// members leaving with `relayShutdown`, still go out).
    pub(crate) stop: tokio_util::sync::CancellationToken,
    publisher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    connected: Arc<AtomicBool>,
    /// Other nodes, by id.
    nodes: Mutex<HashMap<String, NodeView>>,
    /// This node's own roster, numbered (taken before `outbox`).
    local: Mutex<Local>,
    /// What a remote node's roster may hold.
    bounds: Bounds,
    /// Sessions subscribed to, with their subscription task.
    watched: Mutex<HashMap<SessionId, (tokio::task::AbortHandle, Instant)>>,
    dropped: AtomicU64,
    refused: AtomicU64,
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
    /// serves its own members until it comes). `secret` is the relay's secret, from which
    /// the cluster key derives.
    pub(crate) async fn connect(
        url: &str,
        name: String,
        secret: &[u8],
        auth: &NatsAuth,
        bounds: Bounds,
    ) -> Result<Self, ClusterError> {
        // The URL without its credentials: for logs, errors and the connection itself (NATS
        // takes the user and password from the options, not from the URL).
        let addr: async_nats::ServerAddr = url.parse().map_err(|e| ClusterError {
            url: "(unparsable)".into(),
            message: format!("{e}"),
        })?;
        let host = match addr.host() {
            h if h.contains(':') => format!("[{h}]"),
            h => h.to_owned(),
        };
        let shown = format!("{}://{host}:{}", addr.scheme(), addr.port());
        let fail = |message: String| ClusterError {
            url: shown.clone(),
            message,
        };
        let node = ConnectionId::random().to_string();
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let url_for_log = shown.clone();
        let mut options = async_nats::ConnectOptions::new();
        if let Some(user) = addr.username() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            options =
                options.user_and_password(decode(user), decode(addr.password().unwrap_or("")));
        }
        if let Some(creds) = &auth.creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| fail(format!("credentials file {}: {e}", creds.display())))?;
        }
        if let Some(ca) = &auth.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = options
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
            .connect(shown.as_str())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (tx, rx) = mpsc::channel(OUTBOX);
        Ok(Self {
            node,
            name,
            url: shown,
            client,
            key: Key::derive(secret),
            outbox: Mutex::new((0, tx)),
            outbox_rx: Mutex::new(Some(rx)),
            stop: tokio_util::sync::CancellationToken::new(),
            publisher: Mutex::new(None),
            connected,
            nodes: Mutex::new(HashMap::new()),
            local: Mutex::new(Local::default()),
            bounds,
            watched: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Starts the node's tasks: the publisher, heartbeats and the watch for dead nodes, and
    /// the subscriber for heartbeats and requests.
    pub(crate) fn start(shared: &Arc<Shared>) {
        let Some(cluster) = shared.others.cluster().cloned() else {
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

    /// Cluster messages refused (unauthenticated, replayed or invalid).
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts and logs a refused message.
    fn refuse(&self, why: Refused, node: &str, what: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%node, why = why.as_str(), what, "cluster: message refused");
    }

    /// Half of what NATS takes in one message: the most a heartbeat's changes or a
    /// snapshot's page may hold.
    fn page_bytes(&self) -> usize {
        let max = match self.client.server_info().max_payload {
            0 => DEFAULT_PAYLOAD,
            n => n,
        };
        max / 2
    }

    fn send(&self, subject: String, msg: Wire) {
        let mut outbox = lock(&self.outbox);
        outbox.0 += 1;
        let envelope = Envelope {
            node: self.node.clone(),
            n: outbox.0,
            sent_ms: wire::now_ms(),
            msg,
        };
        let payload = match self.key.seal(&subject, &envelope) {
            Ok(p) => p,
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
            .filter_map(|n| n.roster.session(session))
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// How many members `session` has on other nodes.
    pub(crate) fn remote_count(&self, session: &SessionId) -> usize {
        lock(&self.nodes)
            .values()
            .filter_map(|n| n.roster.session(session))
            .map(HashMap::len)
            .sum()
    }

    /// The node serving `id` in `session`, when it is another node.
    pub(crate) fn node_of(&self, session: &SessionId, id: ConnectionId) -> Option<String> {
        lock(&self.nodes)
            .iter()
            .find(|(_, n)| n.roster.has(session, id))
            .map(|(node, _)| node.clone())
    }

    /// Sessions with members on other nodes, and how many.
    pub(crate) fn remote_sessions(&self) -> HashMap<SessionId, usize> {
        let mut out: HashMap<SessionId, usize> = HashMap::new();
        for n in lock(&self.nodes).values() {
            for (s, m) in n.roster.sessions() {
                *out.entry(s.clone()).or_default() += m.len();
            }
        }
        out
    }

    /// Whether a signal to `to` in `session` reaches anyone on another node.
    fn reaches_remote(&self, session: &SessionId, to: &Target) -> bool {
        let known = {
            let nodes = lock(&self.nodes);
            let mut members = nodes.values().filter_map(|n| n.roster.session(session));
            match to {
                Target::All => members.any(|m| !m.is_empty()),
                Target::One(id) => members.any(|m| m.contains_key(id)),
                Target::List(ids) => members.any(|m| ids.iter().any(|id| m.contains_key(id))),
            }
        };
        // A session this node began to watch a moment ago (or does not watch: the relay's own
        // signal to a session with no member here): what the other nodes' members did before
        // that reached it only through their heartbeats, so a member who joined elsewhere
        // just before may not be known yet. Its broadcasts go to the cluster until every
        // node's heartbeat since the watch has come.
        known
            || (matches!(to, Target::All)
                && lock(&self.watched)
                    .get(session)
                    .is_none_or(|(_, since)| since.elapsed() < SETTLE))
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
                    frame: frame.clone(),
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

    /// A local presence change: numbered, and sent on the session's subject (in the order of
    /// its number).
    fn presence(&self, session: &SessionId, id: ConnectionId, presence: Presence) {
        let mut local = lock(&self.local);
        let change = local.change(session, id, presence);
        self.send(session_subject(session), Wire::Presence(change));
    }

    /// A local member joined `session`.
    pub(crate) fn joined(&self, session: &SessionId, info: &ConnectionInfo) {
        self.presence(session, info.id, Presence::Joined(info.clone()));
    }

    /// A local member left `session`.
    pub(crate) fn left(&self, session: &SessionId, id: ConnectionId, reason: LeftReason) {
        self.presence(session, id, Presence::Left(reason));
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
        let Some(cluster) = shared.others.cluster() else {
            return;
        };
        let mut watched = lock(&cluster.watched);
        if watched.contains_key(session) {
            return;
        }
        let task = shared
            .tracker
            .spawn(session_inbox(shared.clone(), session.clone()));
        watched.insert(session.clone(), (task.abort_handle(), Instant::now()));
    }

    /// Unsubscribes from `session` if it has no local member (its last one left). Checked
    /// under the same lock `watch` takes, so a member joining meanwhile keeps the subscription.
    pub(crate) fn unwatch(&self, shared: &Shared, session: &SessionId) {
        let mut watched = lock(&self.watched);
        if shared.registry.get(session).is_none()
            && let Some((task, _)) = watched.remove(session)
        {
            task.abort();
        }
    }

    /// Opens an envelope received on `subject`: authenticated, new, from another node.
    /// `None` for this node's own messages and refused ones (counted).
    fn open(&self, subject: &str, payload: &[u8], replay: &mut Replay) -> Option<Envelope> {
        match inbox::open(
            &self.key,
            &self.node,
            subject,
            payload,
            replay,
            wire::now_ms(),
        ) {
            Ok(env) => env,
            Err((why, node, _)) => {
                self.refuse(why, &node, subject);
                None
            }
        }
    }

    /// Runs `f` on the view of `node` (made if new and there is room), with a test for ids
    /// that are members elsewhere: here, or on another node.
    fn with_view<T>(
        &self,
        shared: &Shared,
        node: &str,
        f: impl FnOnce(&mut NodeView, &Bounds, &dyn Fn(&SessionId, ConnectionId) -> bool) -> T,
    ) -> Option<T> {
        let mut nodes = lock(&self.nodes);
        let mut view = match nodes.remove(node) {
            Some(v) => v,
            None if nodes.len() < MAX_NODES => NodeView::new(),
            None => {
                drop(nodes);
                self.refuse(Refused::Foreign, node, "one node too many");
                return None;
            }
        };
        let taken = |session: &SessionId, id: ConnectionId| {
            shared.registry.member(session, id).is_some()
                || nodes.values().any(|n| n.roster.has(session, id))
        };
        let out = f(&mut view, &self.bounds, &taken);
        nodes.insert(node.to_owned(), view);
        Some(out)
    }

    /// Whether `node` is known (it has sent a heartbeat or presence and not died since).
    fn knows(&self, node: &str) -> bool {
        lock(&self.nodes).contains_key(node)
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
    s.tell_news(msg);
}

fn tell_all(shared: &Shared, told: Vec<Told>) {
    for (session, msg) in told {
        tell_local(shared, &session, &msg);
    }
}

/// Sends heartbeats and reports nodes whose heartbeats stopped.
async fn heartbeats(shared: Arc<Shared>) {
    let Some(cluster) = shared.others.cluster().cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        {
            let page = cluster.page_bytes();
            let mut local = lock(&cluster.local);
            let delta = local.delta(page);
            cluster.send(
                HEARTBEAT_SUBJECT.to_owned(),
                Wire::Heartbeat {
                    name: cluster.name.clone(),
                    delta,
                },
            );
        }
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
            tell_all(&shared, node.roster.departed());
        }
    }
}

/// Whether a node's name is one a person could read: what a member's name may be, and not
/// empty.
fn valid_node_name(name: &str) -> bool {
    !name.trim().is_empty() && token::validate_name(name).is_ok()
}

/// Heartbeats from every node and requests for this one.
async fn inbox(shared: Arc<Shared>) {
    let Some(cluster) = shared.others.cluster().cloned() else {
        return;
    };
    let subscribe = |subject: String| {
        let client = cluster.client.clone();
        async move { client.subscribe(subject).await }
    };
    let mine = node_subject(&cluster.node);
    let (Ok(beats), Ok(requests)) = (
        subscribe(HEARTBEAT_SUBJECT.to_owned()).await,
        subscribe(mine.clone()).await,
    ) else {
        tracing::error!("cluster: cannot subscribe to heartbeats");
        return;
    };
    let mut messages = futures_util::stream::select(beats, requests);
    // One guard per subject: NATS keeps a publisher's order within a subject only.
    let mut replay_beats = Replay::default();
    let mut replay_mine = Replay::default();
    // When each node last had a snapshot from this one.
    let mut served: HashMap<String, Instant> = HashMap::new();
    loop {
        let msg = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            m = messages.next() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let subject = msg.subject.as_str();
        let replay = if subject == HEARTBEAT_SUBJECT {
            &mut replay_beats
        } else {
            &mut replay_mine
        };
        let Some(env) = cluster.open(subject, &msg.payload, replay) else {
            continue;
        };
        let node = env.node;
        match (subject == HEARTBEAT_SUBJECT, env.msg) {
            (true, Wire::Heartbeat { name, delta }) => {
                if !valid_node_name(&name) {
                    cluster.refuse(Refused::Invalid, &node, "heartbeat: node name");
                    continue;
                }
                let ask = cluster.with_view(&shared, &node, |view, bounds, taken| {
                    if view.name.is_empty() {
                        tracing::info!(node = %name, "cluster: node joined");
                    }
                    view.last_seen = Instant::now();
                    view.name = name;
                    match view.roster.apply_delta(delta, bounds, taken) {
                        Ok(told) => (told, false),
                        Err(Gap::NeedSnapshot) => {
                            let due = view.asked.is_none_or(|at| at.elapsed() > SNAPSHOT_RETRY);
                            if due {
                                view.asked = Some(Instant::now());
                            }
                            (Vec::new(), due)
                        }
                    }
                });
                if let Some((told, ask)) = ask {
                    tell_all(&shared, told);
                    if ask {
                        cluster.send(node_subject(&node), Wire::SnapshotRequest);
                    }
                }
            }
            (false, Wire::SnapshotRequest) => {
                // At most one a second per node: asking is cheap, answering is not.
                if served
                    .get(&node)
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
                {
                    continue;
                }
                if served.len() >= MAX_NODES * 4 {
                    served.retain(|_, at| at.elapsed() < Duration::from_secs(1));
                }
                served.insert(node.clone(), Instant::now());
                let page = cluster.page_bytes();
                let (version, pages) = lock(&cluster.local).snapshot(page);
                let count = pages.len() as u32;
                for (i, members) in pages.into_iter().enumerate() {
                    cluster.send(
                        node_subject(&node),
                        Wire::Snapshot {
                            version,
                            page: i as u32,
                            pages: count,
                            members,
                        },
                    );
                }
            }
            (
                false,
                Wire::Snapshot {
                    version,
                    page,
                    pages,
                    members,
                },
            ) => {
                if pages == 0 || pages > MAX_PAGES || page >= pages {
                    cluster.refuse(Refused::Invalid, &node, "snapshot: page numbers");
                    continue;
                }
                let told = cluster.with_view(&shared, &node, |view, bounds, taken| {
                    // Not asked for: a snapshot only ever answers a request.
                    view.asked?;
                    let assembling = match &mut view.assembling {
                        Some((v, parts)) if *v == version && parts.len() == pages as usize => parts,
                        slot => &mut slot.insert((version, vec![None; pages as usize])).1,
                    };
                    assembling[page as usize] = Some(members);
                    if assembling.iter().any(Option::is_none) {
                        return Some(Vec::new());
                    }
                    let parts = view.assembling.take().map(|(_, p)| p).unwrap_or_default();
                    view.asked = None;
                    let pages: Vec<Page> = parts.into_iter().flatten().collect();
                    Some(view.roster.apply_snapshot(version, pages, bounds, taken))
                });
                match told.flatten() {
                    Some(told) => tell_all(&shared, told),
                    None => cluster.refuse(Refused::Foreign, &node, "snapshot not asked for"),
                }
            }
            (
                false,
                Wire::Kick {
                    session,
                    id,
                    reason,
                },
            ) => {
                if !cluster.knows(&node) || !wire::valid_reason(&reason) {
                    cluster.refuse(Refused::Foreign, &node, "kick");
                    continue;
                }
                if let Some((_, member)) = shared.registry.member(&session, id) {
                    member.close(signalbox_proto::CloseCode::Kicked, &reason);
                }
            }
            _ => cluster.refuse(Refused::Invalid, &node, "a message on the wrong subject"),
        }
    }
}

/// The session inbox's view of the other nodes: their rosters, under the cluster's lock
/// for each question.
struct Views<'a> {
    cluster: &'a Cluster,
    session: &'a SessionId,
}

impl inbox::Nodes for Views<'_> {
    fn knows(&self, node: &str) -> bool {
        self.cluster.knows(node)
    }

    fn has(&mut self, node: &str, id: ConnectionId) -> bool {
        // A node whose signals arrive is alive, even while its heartbeats wait behind them (a
        // busy node's NATS connection is one queue).
        lock(&self.cluster.nodes).get_mut(node).is_some_and(|v| {
            let theirs = v.roster.has(self.session, id);
            if theirs {
                v.last_seen = Instant::now();
            }
            theirs
        })
    }
}

/// One session's traffic from the other nodes: their clients' signals, relay signals and
/// presence, checked ([`inbox::SessionInbox`]), then delivered to this node's members.
async fn session_inbox(shared: Arc<Shared>, session: SessionId) {
    let Some(cluster) = shared.others.cluster().cloned() else {
        return;
    };
    let subject = session_subject(&session);
    let mut sub = match cluster.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%session, error = %e, "cluster: cannot subscribe");
            return;
        }
    };
    let mut inbox = inbox::SessionInbox::new(session.clone(), subject, cluster.node.clone());
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
        let mut views = Views {
            cluster: &cluster,
            session: &session,
        };
        let now = wire::now_ms();
        let (node, taken) =
            match inbox.receive(&cluster.key, &msg.payload, now, &mut views, &shared.limits) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err((why, node, what)) => {
                    cluster.refuse(why, &node, what);
                    continue;
                }
            };
        match taken {
            inbox::Taken::Signal {
                from,
                seq,
                to,
                frame,
            } => {
                let Some(s) = shared.registry.get(&session) else {
                    continue;
                };
                let fanout = senders.entry(from).or_insert_with(|| {
                    Fanout::new(
                        Some(from),
                        shared.delivery.clone(),
                        shared.tracker.clone(),
                        s.budgets.clone(),
                    )
                });
                s.before_signal();
                let delivered = delivery::fan_out(fanout, &s.roster(), &to, seq, frame);
                shared.metrics.remote_signal(delivered);
            }
            inbox::Taken::RelaySignal { to, r#type, data } => {
                if let Some(s) = shared.registry.get(&session) {
                    let _ = shared.deliver_relay_signal(&s, &to, &r#type, &data);
                }
            }
            inbox::Taken::Presence(change) => {
                let id = change.id;
                let left = matches!(change.presence, Presence::Left(_));
                let told = cluster.with_view(&shared, &node, |view, bounds, taken| {
                    view.last_seen = Instant::now();
                    view.roster.apply(change, bounds, taken)
                });
                // A leaver's routes end once they have written what they hold, and the
                // members here are told it left after that, as for a member of this node:
                // its signals come before its `Left`.
                let routes = match left.then(|| senders.remove(&id)).flatten() {
                    Some(fanout) => fanout.close(),
                    None => Vec::new(),
                };
                if let Some(Some((session, msg))) = told
                    && let Some(s) = shared.registry.get(&session)
                {
                    tell_after_routes(&shared, &s, msg, routes);
                }
            }
        }
        if senders.len() > 64 || inbox.senders() > 64 {
            let alive = cluster.remote_members(&session);
            let alive = |id: ConnectionId| alive.iter().any(|m| m.id == id);
            senders.retain(|id, _| alive(*id));
            inbox.retain(alive);
        }
    }
}
