//! `Relay::spawn` and the handle that owns every task the relay starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use signalbox_proto::{
    CloseCode, ConnectionId, ConnectionInfo, Fingerprint, Incoming, Invite, Limits, SessionId,
    SignalError, Target, signal,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Decision};
use crate::config::{ConfigError, RelayConfig};
use crate::metrics::Metrics;
use crate::registry::{Session, SessionRegistry, lock};
use crate::tokens::TokenKeys;
use crate::transport::connection;
use crate::transport::delivery::{self, DeliverySettings, Fanout};
use crate::transport::identity::{Identity, IdentityError};
use crate::{files, net, paths, transport};

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No data directory could be found.
    #[error(transparent)]
    NoHome(#[from] paths::NoHome),
    /// The TLS identity could not be loaded or made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The token secret could not be loaded or made.
    #[error(transparent)]
    Secret(#[from] files::FileError),
    /// The QUIC or TLS settings are unusable.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// The short-lived certificate for browsers could not be made.
    #[error(transparent)]
    WebCert(#[from] crate::transport::webtransport::WebCertError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `cluster` is set and its NATS URL is unusable.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// `announce` is on and the mDNS responder could not start.
    #[error(transparent)]
    Announce(#[from] crate::announce::AnnounceError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// State every task of one relay shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RelayConfig,
    pub(crate) limits: Limits,
    pub(crate) registry: SessionRegistry,
    pub(crate) tokens: TokenKeys,
    /// The Vonage-compatible API key and secret.
    pub(crate) vonage: crate::http::vonage::Credentials,
    pub(crate) delivery: Arc<DeliverySettings>,
    pub(crate) metrics: Metrics,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// The other nodes of this node's cluster (`--cluster`); none for a lone relay.
    pub(crate) others: crate::cluster::Others,
    /// Pending and joined connection budgets, for every kind of link.
    pub(crate) admission: Arc<Admission>,
    /// The short-lived certificate browsers' WebTransport accepts by its hash.
    pub(crate) web_cert: Arc<ArcSwap<crate::transport::webtransport::WebCert>>,
    /// The QUIC settings a connection is accepted with, by the kind of path it came on.
    pub(crate) server_config: crate::transport::ServerConfigs,
    /// The UDP port of the QUIC endpoint (native clients and WebTransport).
    pub(crate) quic_port: u16,
}

impl Shared {
    /// The counters in Prometheus text format.
    pub(crate) fn metrics_text(&self) -> String {
        self.others.count_into(&self.metrics);
        self.metrics.held(self.registry.held.bytes());
        self.metrics.render(
            self.registry.connection_count(),
            self.registry.away_count(),
            self.registry.sessions().len(),
        )
    }

    /// Whether `id` is in `session`, here or (in a cluster) on another node.
    pub(crate) fn is_member(&self, session: &SessionId, id: ConnectionId) -> bool {
        self.registry
            .get(session)
            .is_some_and(|s| s.roster().members.contains_key(&id))
            || self.others.has(session, id)
    }

    /// Everyone in `session`, here and on other nodes.
    pub(crate) fn members_of(&self, session: &SessionId) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> = self
            .registry
            .get(session)
            .map(|s| {
                s.roster()
                    .members
                    .values()
                    .map(|m| m.info.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.extend(self.others.members(session));
        out.sort_by_key(|c| c.joined_at);
        out
    }

    /// Every session with members, here or on other nodes, and how many.
    pub(crate) fn session_counts(&self) -> Vec<(SessionId, usize)> {
        let mut counts = self.others.sessions();
        for s in self.registry.sessions() {
            *counts.entry(s.id.clone()).or_default() += s.roster().members.len();
        }
        let mut out: Vec<(SessionId, usize)> = counts.into_iter().collect();
        out.sort();
        out
    }

    /// Removes `id` from `session` (`forceDisconnected` with `reason`), on whichever node
    /// serves it. False when it is not there.
    pub(crate) fn remove(&self, session: &SessionId, id: ConnectionId, reason: &str) -> bool {
        if let Some((_, member)) = self.registry.member(session, id) {
            member.close(CloseCode::Kicked, reason);
            return true;
        }
        self.others.kick(session, id, reason)
    }

    /// Whether `session` has members, here or on another node.
    pub(crate) fn session_exists(&self, session: &SessionId) -> bool {
        self.registry.get(session).is_some() || self.others.count(session) > 0
    }

    /// Sends a signal from the relay itself (`from: null`) into `session`, with the same
    /// rules as a client's: to this node's members, and through the cluster to the others'.
    /// The relay's signals in one session are ordered among themselves.
    pub(crate) fn relay_signal(
        &self,
        session: &SessionId,
        to: Target,
        ty: &str,
        data: &str,
    ) -> Result<(), SignalError> {
        signal::validate_signal(ty, data, &to, &self.limits)?;
        let missing = crate::engine::admit::missing_target(&to, |id| self.is_member(session, *id));
        if let Some(connection) = missing {
            return Err(SignalError::TargetNotFound { connection });
        }
        if let Some(s) = self.registry.get(session) {
            self.deliver_relay_signal(&s, &to, ty, data)?;
        }
        self.others.relay_signal(session, &to, ty, data);
        Ok(())
    }

    /// Delivers a relay signal (already checked) to this node's members of `session`.
    pub(crate) fn deliver_relay_signal(
        &self,
        session: &Session,
        to: &Target,
        ty: &str,
        data: &str,
    ) -> Result<(), SignalError> {
        let roster = session.roster();
        let mut sender = lock(&session.relay_sender);
        let (fanout, seq) = sender.get_or_insert_with(|| {
            (
                Fanout::new(
                    None,
                    self.delivery.clone(),
                    self.tracker.clone(),
                    session.budgets.clone(),
                ),
                0,
            )
        });
        *seq += 1;
        let incoming = Incoming {
            seq: *seq,
            to_all: to.is_all(),
            r#type: ty.into(),
            data: data.into(),
        };
        let frame = crate::frames::signal(&incoming).map_err(|_| SignalError::EmptyTargetList)?;
        let len = frame.len();
        let delivered = delivery::fan_out(fanout, &roster, to, *seq, frame);
        self.metrics.signal(len, delivered);
        Ok(())
    }
}

/// The relay, as a library: start it with [`Relay::spawn`].
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Loads (or makes) the identity and token secret, binds the QUIC endpoint, and starts
    /// accepting connections. Everything it starts ends with the returned handle.
    pub async fn spawn(config: RelayConfig) -> Result<RelayHandle, RelayError> {
        config.validate()?;
        let data_dir = match &config.data_dir {
            Some(d) => d.clone(),
            None => paths::data_dir()?,
        };
        let identity = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
            _ => Identity::load_or_create(&data_dir)?,
        };
        let secret = crate::tokens::secret(&data_dir)?;
        // Tokens are for this relay: their audience is the certificate it presents — or, for
        // a cluster node, the cluster (its nodes share the secret) — recorded for the command
        // line's tokens and invites on this machine.
        let audience = match &config.cluster {
            Some(_) => crate::tokens::cluster_audience(&secret),
            None => identity.fingerprint.to_string(),
        };
        let tokens = TokenKeys::from_secret(&secret).for_audience(audience.clone());
        crate::tokens::record_identity(&data_dir, &identity.fingerprint, &audience)?;
        let vonage = match (&config.vonage_api_key, &config.vonage_api_secret) {
            (Some(api_key), Some(api_secret)) => crate::http::vonage::Credentials {
                api_key: api_key.clone(),
                api_secret: api_secret.clone(),
            },
            // validate() refused a key without a secret and the other way round.
            _ => crate::http::vonage::Credentials::load_or_create(&data_dir)?,
        };
        let web_cert = Arc::new(ArcSwap::from_pointee(
            crate::transport::webtransport::WebCert::generate()?,
        ));
        let server_config = transport::relay_server_config(&identity, &config, web_cert.clone())?;
        // A stateless-reset key derived from the relay's secret: after a restart with the same
        // data directory, the relay can tell clients at once that their connection is gone
        // (instead of leaving them to time out), and they reconnect right away.
        let reset = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
                b"signalbox stateless reset",
            )
            .as_ref(),
        );
        let bind = |source| RelayError::Bind {
            addr: config.listen,
            source,
        };
        let socket = crate::transport::udp_socket(config.listen).map_err(bind)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind(std::io::Error::other("no async runtime")))?;
        let endpoint = quinn::Endpoint::new(
            crate::transport::endpoint_config(Some(Arc::new(reset))),
            Some(server_config.endpoint_default()),
            socket,
            runtime,
        )
        .map_err(bind)?;
        let quic_addr = endpoint.local_addr().map_err(|source| RelayError::Bind {
            addr: config.listen,
            source,
        })?;

        let cluster = match &config.cluster {
            Some(url) => {
                let name = config
                    .node_name
                    .clone()
                    .unwrap_or_else(|| crate::announce::relay_name(&config));
                let auth = crate::cluster::NatsAuth {
                    creds: config.cluster_creds.clone(),
                    ca: config.cluster_ca.clone(),
                };
                let bounds = crate::engine::roster::Bounds {
                    per_session: config.max_connections_per_session as usize,
                    members: config.max_connections as usize,
                    sessions: config.max_sessions as usize,
                };
                Some(crate::cluster::Cluster::connect(url, name, &secret, &auth, bounds).await?)
            }
            None => None,
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let shared = Arc::new(Shared {
            limits: config.limits(),
            registry: SessionRegistry::new(
                config.max_sessions as usize,
                config.max_connections_per_session as usize,
                config.max_connections_per_token,
                config.kick_ban,
                Arc::new(crate::budget::Held::new(config.held_bytes)),
                config.session_held_bytes,
            ),
            tokens,
            vonage,
            delivery: Arc::new(DeliverySettings {
                queue_bytes: config.receiver_queue_bytes,
                queue_signals: config.receiver_queue_signals,
                write_timeout: config.write_timeout,
                stream_idle: config.stream_idle,
            }),
            metrics: Metrics::new(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            others: crate::cluster::Others::new(cluster),
            admission: Admission::new(
                config.max_pending,
                config.max_connections,
                config.max_pending_per_source,
                config.max_connections_per_source,
            ),
            web_cert: web_cert.clone(),
            server_config,
            quic_port: quic_addr.port(),
            config,
        });
        tracker.spawn(crate::transport::webtransport::rotate(
            web_cert,
            crate::transport::webtransport::ROTATE,
            cancel.clone(),
        ));
        crate::cluster::Cluster::start(&shared);
        tracker.spawn(accept_loop(endpoint.clone(), shared.clone()));
        let http_addr = match shared.config.http {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| RelayError::HttpBind { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| RelayError::HttpBind { addr, source })?;
                let router = crate::http::rest::router(shared.clone());
                let tls = match shared.config.http_tls {
                    true => Some(
                        crate::http::tls_acceptor(&identity)
                            .map_err(transport::TransportError::Tls)?,
                    ),
                    false => None,
                };
                tracker.spawn(crate::http::serve(
                    listener,
                    router,
                    tls,
                    cancel.clone(),
                    tracker.clone(),
                ));
                tracing::info!(%bound, "REST API listening");
                Some(bound)
            }
            None => None,
        };
        let announcer = if shared.config.announce {
            crate::announce::Announcer::start(&shared.config, quic_addr, identity.fingerprint)?
        } else {
            None
        };
        crate::tokens::RunningRelay {
            pid: std::process::id(),
            quic: quic_addr,
            http: http_addr,
            open: shared.config.open,
        }
        .write(&data_dir)?;
        tracing::info!(%quic_addr, fingerprint = %identity.fingerprint, open = shared.config.open, "relay started");
        Ok(RelayHandle {
            quic_addr,
            http_addr,
            fingerprint: identity.fingerprint,
            data_dir,
            endpoint,
            shared,
            announcer,
        })
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let admission = &shared.admission;
    loop {
        let incoming = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
        };
        let remote = incoming.remote_address();
        match admission.incoming(remote.ip(), incoming.remote_address_validated()) {
            Decision::Accept(pending) => {
                shared
                    .tracker
                    .spawn(connection::handle(incoming, shared.clone(), pending));
            }
            Decision::Retry => {
                if let Err(e) = incoming.retry() {
                    // Already retried once (cannot be asked twice): no slot for it now.
                    e.into_incoming().ignore();
                }
            }
            Decision::Ignore => {
                tracing::debug!(%remote, "too many handshakes from this address; ignoring");
                incoming.ignore();
            }
            Decision::Refuse => {
                tracing::warn!(%remote, pending = admission.pending(), "too many connections joining; refusing");
                incoming.refuse();
            }
        }
    }
}

/// A running relay. Dropping it stops the relay; [`RelayHandle::shutdown`] stops it
/// gracefully, telling every client `relayShutdown`.
#[derive(Debug)]
pub struct RelayHandle {
    quic_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    fingerprint: Fingerprint,
    data_dir: PathBuf,
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    announcer: Option<crate::announce::Announcer>,
}

impl RelayHandle {
    /// The UDP address the relay listens on.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The REST API's address, when it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The name the relay announces (or would): its configured name or the host name.
    pub fn name(&self) -> String {
        crate::announce::relay_name(&self.shared.config)
    }

    /// Bytes of signals the relay holds for delivery now: queued for receivers, and kept for
    /// resumes (each counted with a fixed overhead; see `held_bytes`).
    pub fn held_bytes(&self) -> (usize, usize) {
        self.shared.registry.held.bytes()
    }

    /// Everyone in `session`: this relay's members and, in a cluster, the other nodes'.
    pub fn members(&self, session: &SessionId) -> Vec<ConnectionInfo> {
        self.shared.members_of(session)
    }

    /// The cluster as this node sees it (`None` without `--cluster`).
    pub fn cluster_status(&self) -> Option<crate::cluster::ClusterStatus> {
        self.shared.others.status()
    }

    /// Whether the relay is announcing itself on the LAN.
    pub fn is_announced(&self) -> bool {
        self.announcer.is_some()
    }

    /// The SHA-256 fingerprint of the relay's certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The relay's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Whether joins without a token are accepted.
    pub fn is_open(&self) -> bool {
        self.shared.config.open
    }

    /// The limits clients are told.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// The relay's token keys, to mint tokens for it.
    pub fn tokens(&self) -> &TokenKeys {
        &self.shared.tokens
    }

    /// The relay's counters in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }

    /// How many connections are in sessions now.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.connection_count()
    }

    /// An invite to `session` with `token`, naming this relay by an address others can
    /// reach and pinning its certificate.
    pub fn invite(&self, session: SessionId, token: Option<String>) -> Invite {
        Invite {
            host: net::reachable_host(self.quic_addr),
            port: self.quic_addr.port(),
            session,
            fingerprint: Some(self.fingerprint),
            token,
        }
    }

    /// A link that opens the web client on `session` in a browser (with `token`, when the
    /// relay needs one), at an address others on the LAN can reach; none without the HTTP
    /// listener.
    pub fn web_link(&self, session: &SessionId, token: Option<&str>) -> Option<String> {
        let http = self.http_addr?;
        let scheme = if self.shared.config.http_tls {
            "https"
        } else {
            "http"
        };
        let host = net::reachable_host(http);
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => host,
        };
        let mut link = format!("{scheme}://{host}:{}/join?session={session}", http.port());
        if let Some(token) = token {
            // Tokens are base64url and dots: nothing to escape in a query.
            link.push_str("&token=");
            link.push_str(token);
        }
        Some(link)
    }

    /// Closes every connection with `relayShutdown`, then waits (briefly) for every task.
    pub async fn shutdown(mut self) {
        // Stopping: no longer to be found by tools on this machine.
        crate::tokens::RunningRelay::remove(&self.data_dir);
        if let Some(announcer) = self.announcer.take() {
            announcer.withdraw().await;
        }
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("relay tasks still running after 5 s; closing anyway");
        }
        self.endpoint.close(
            CloseCode::RelayShutdown.as_u32().into(),
            b"relay shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.shared.others.close().await;
        tracing::info!("relay stopped");
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.shared.others.stop();
        self.endpoint.close(
            CloseCode::RelayShutdown.as_u32().into(),
            b"relay shutting down",
        );
    }
}
