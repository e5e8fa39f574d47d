//! The backend thread: owns the tokio runtime, the client connection and the hosted relay.
//! The UI sends it [`Command`]s and drains the [`Event`]s it sends back; every event is
//! followed by `request_repaint`, so the UI wakes up even when the user does nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use signalbox_client::discovery::{BrowseOptions, Browser, Discovery};
use signalbox_client::{
    Client, ConnectOptions, Event as ClientEvent, Events, ReceivedSignal, Signal,
};
use signalbox_proto::{
    ConnectionId, ConnectionInfo, Fingerprint, Invite, LeftReason, Limits, Role, SessionId,
};
use signalbox_relay::{Relay, RelayConfig, RelayHandle, TokenRequest};
use tokio::sync::mpsc;

/// The type of the small signal a receiving app sends back for a chat message it showed
/// (its data is the chat signal's `seq`).
pub const READ_RECEIPT_TYPE: &str = "chat-read";
/// The type of chat messages.
pub const CHAT_TYPE: &str = "chat";
/// Events that may wait for the UI; past this the backend waits (and the relay, in time,
/// treats this app as a slow consumer rather than letting memory grow).
const EVENT_QUEUE: usize = 16_384;

/// What the UI asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Join a session.
    Connect(ConnectOptions),
    /// Give up a join in progress.
    CancelConnect,
    /// Leave the session.
    Disconnect,
    /// Send a signal; `local` is the UI's number for it.
    Send {
        /// The UI's number for the signal.
        local: u64,
        /// The signal.
        signal: Signal,
    },
    /// Remove a participant (moderators).
    Kick(ConnectionId),
    /// Start a relay in this process.
    StartHost {
        /// UDP port (0: any).
        port: u16,
        /// Accept joins without a token.
        open: bool,
        /// The session its invite is for.
        session: SessionId,
        /// Bind to loopback only (tests), else every interface.
        loopback_only: bool,
        /// The relay's data directory; the default one when `None`.
        data_dir: Option<std::path::PathBuf>,
        /// Announce it on the LAN (publishing `session`).
        announce: bool,
        /// The mDNS port of the announcement (`None`: the standard 5353).
        mdns_port: Option<u16>,
    },
    /// Look for relays on the LAN (reported as [`Event::Nearby`]) until the app closes.
    Discover(BrowseOptions),
    /// Stop the hosted relay (everyone is told `relayShutdown`).
    StopHost,
    /// Start a relay process that outlives the window (and, with `autostart`, starts at
    /// login).
    StartBackground {
        /// How.
        options: crate::background::StartOptions,
        /// Write (or remove) the XDG autostart entry.
        autostart: bool,
    },
    /// Look for a relay running from this data directory in another process; keep showing
    /// it (its people are read every two seconds).
    FindBackground {
        /// The data directory (`None`: the default one).
        data_dir: Option<std::path::PathBuf>,
        /// The session its invites are for.
        session: String,
    },
    /// Remove someone from the background relay's session.
    KickBackground(ConnectionId),
    /// Stop the background relay (everyone is told `relayShutdown`).
    StopBackground,
    /// The window is closing and the user keeps hosting: stop the relay in this app and
    /// start the same one in the background (same port, data directory and session).
    MoveToBackground(crate::background::StartOptions),
}

/// What the backend reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A join started.
    Connecting {
        /// `host:port`.
        address: String,
    },
    /// Joined.
    Connected {
        /// This connection.
        me: ConnectionInfo,
        /// Who else is there.
        peers: Vec<ConnectionInfo>,
        /// The relay's limits.
        limits: Limits,
        /// The session.
        session: SessionId,
        /// `host:port`.
        address: String,
        /// The invite that was used.
        invite: String,
    },
    /// The join failed (or was cancelled).
    ConnectFailed(String),
    /// A signal arrived.
    Signal(ReceivedSignal),
    /// Someone joined.
    Joined(ConnectionInfo),
    /// Someone left.
    Left {
        /// Who.
        peer: ConnectionInfo,
        /// Why.
        reason: LeftReason,
    },
    /// A signal was handed to the client with this seq.
    Queued {
        /// The UI's number.
        local: u64,
        /// The seq.
        seq: u64,
    },
    /// The relay accepted a signal.
    Accepted {
        /// The UI's number.
        local: u64,
    },
    /// A signal was not sent.
    SendFailed {
        /// The UI's number.
        local: u64,
        /// The error's code.
        code: u16,
        /// What went wrong.
        message: String,
    },
    /// A request was refused by the relay.
    Denied(String),
    /// The connection was lost; the client is reconnecting by itself.
    Reconnecting {
        /// Why it was lost.
        reason: LeftReason,
        /// The explanation.
        message: String,
    },
    /// Back: as the same connection (`resumed`), or as a new one (`me`).
    Reconnected {
        /// Whether it is the same connection.
        resumed: bool,
        /// This connection now.
        me: ConnectionInfo,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: LeftReason,
        /// The explanation.
        message: String,
    },
    /// Once a second while connected.
    Stats {
        /// QUIC round-trip time.
        rtt: Duration,
        /// Signals received so far.
        received: u64,
        /// Signals sent so far.
        sent: u64,
    },
    /// The hosted relay is running.
    HostStarted(Box<HostInfo>),
    /// The hosted relay stopped.
    HostStopped,
    /// A relay running from this data directory in another process, or none.
    Background(Option<Box<crate::background::BackgroundView>>),
    /// Starting, managing or stopping the background relay failed.
    BackgroundFailed(String),
    /// The hosted relay now runs in the background: the window may close.
    MovedToBackground,
    /// The hosted relay could not start.
    HostFailed(String),
    /// A relay on the LAN announced itself or went away.
    Nearby(Discovery),
    /// LAN discovery could not start.
    DiscoveryFailed(String),
}

/// A relay hosted by this app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Where it listens.
    pub quic_addr: SocketAddr,
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// This machine's LAN addresses.
    pub lan: Vec<IpAddr>,
    /// Whether it accepts joins without a token.
    pub open: bool,
    /// A participant's (publisher's) invite to its session, with a LAN address: the one to
    /// hand out.
    pub invite: Invite,
    /// A moderator's invite (it can remove anyone): the host's own.
    pub moderator_invite: Invite,
    /// The moderator's invite over loopback, for joining from this machine.
    pub local_invite: Invite,
    /// The name it announces on the LAN, when it does.
    pub announced_as: Option<String>,
    /// A link that opens the session in a browser (the relay's web client), with the
    /// participants' token.
    pub web_link: Option<String>,
}

/// The UI's handle on the backend thread.
#[derive(Debug)]
pub struct Backend {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<Event>,
    repaint: Arc<OnceLock<egui::Context>>,
    /// Says when the backend thread has finished (left the session, stopped the relay).
    done: std::sync::mpsc::Receiver<()>,
}

/// How long closing the window waits for the backend to leave the session and stop the
/// hosted relay.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

impl Drop for Backend {
    /// The window is closing: the backend leaves the session (peers see
    /// `clientDisconnected` at once) and stops the hosted relay, and this waits for it
    /// (bounded), so the process does not end halfway.
    fn drop(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.commands, closed));
        let _ = self.done.recv_timeout(CLOSE_WAIT);
    }
}

impl Backend {
    /// Starts the backend thread.
    pub fn spawn() -> Self {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let repaint: Arc<OnceLock<egui::Context>> = Arc::default();
        let out = Outbox {
            tx: events_tx,
            repaint: repaint.clone(),
        };
        let (done_tx, done) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("signalbox-backend".into())
            .spawn(move || {
                let _done = DoneOnDrop(done_tx);
                let runtime = match signalbox_relay::runtime::builder()
                    .worker_threads(2)
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the backend runtime");
                        return;
                    }
                };
                runtime.block_on(run(commands_rx, out));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the backend thread");
        }
        Self {
            commands,
            events,
            repaint,
            done,
        }
    }

    /// Gives the backend the context to wake when events arrive (the first frame does this).
    pub fn set_context(&self, ctx: &egui::Context) {
        let _ = self.repaint.set(ctx.clone());
    }

    /// Asks the backend for something. Never blocks.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// The next waiting event, if any. Never blocks.
    pub fn try_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

/// Tells the UI thread that the backend thread ended, however it ends.
struct DoneOnDrop(std::sync::mpsc::Sender<()>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The backend's side of the event channel.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Event>,
    repaint: Arc<OnceLock<egui::Context>>,
}

impl Outbox {
    async fn send(&self, event: Event) {
        let _ = self.tx.send(event).await;
        if let Some(ctx) = self.repaint.get() {
            ctx.request_repaint();
        }
    }
}

type Joining = tokio::task::JoinHandle<Result<(Client, Events), String>>;

struct State {
    client: Option<(Client, Events)>,
    joining: Option<(Joining, String)>,
    relay: Option<RelayHandle>,
    browser: Option<Browser>,
    /// The background relay shown: where it runs, its data directory and session.
    background: Option<(
        signalbox_relay::tokens::RunningRelay,
        std::path::PathBuf,
        String,
    )>,
}

async fn run(mut commands: mpsc::UnboundedReceiver<Command>, out: Outbox) {
    let mut st = State {
        client: None,
        joining: None,
        relay: None,
        browser: None,
        background: None,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(c) => handle(c, &mut st, &out).await,
                None => break,
            },
            joined = wait_join(&mut st.joining), if st.joining.is_some() => {
                let Some((joined, invite)) = joined else { continue };
                match joined {
                    Ok(Ok((client, events))) => {
                        out.send(Event::Connected {
                            me: client.me().clone(),
                            peers: client.peers(),
                            limits: client.limits(),
                            session: client.session().clone(),
                            address: address_of(&invite),
                            invite,
                        }).await;
                        st.client = Some((client, events));
                    }
                    Ok(Err(message)) => out.send(Event::ConnectFailed(message)).await,
                    Err(_) => {}
                }
            },
            event = next_event(&mut st.client), if st.client.is_some() => {
                match event {
                    Some(e) => forward(e, &mut st, &out).await,
                    None => st.client = None,
                }
            },
            found = next_nearby(&mut st.browser), if st.browser.is_some() => match found {
                Some(found) => out.send(Event::Nearby(found)).await,
                None => st.browser = None,
            },
            _ = tick.tick(), if st.client.is_some() || st.background.is_some() => {
                if let Some((client, _)) = &st.client {
                    let (received, sent) = client.counts();
                    out.send(Event::Stats { rtt: client.rtt(), received, sent }).await;
                }
                refresh_background(&mut st, out.clone()).await;
            },
        }
    }
    if let Some((client, _)) = st.client.take() {
        client.leave().await;
    }
    if let Some(relay) = st.relay.take() {
        relay.shutdown().await;
    }
}

/// Waits for the join in progress; takes it when done.
async fn wait_join(
    joining: &mut Option<(Joining, String)>,
) -> Option<(
    Result<Result<(Client, Events), String>, tokio::task::JoinError>,
    String,
)> {
    let (task, _) = joining.as_mut()?;
    let result = task.await;
    let (_, invite) = joining.take()?;
    Some((result, invite))
}

/// The next relay found or gone on the LAN.
async fn next_nearby(browser: &mut Option<Browser>) -> Option<Discovery> {
    browser.as_mut()?.next().await
}

/// The next event of the connected client.
async fn next_event(client: &mut Option<(Client, Events)>) -> Option<ClientEvent> {
    client.as_mut()?.1.next().await
}

fn address_of(invite: &str) -> String {
    invite
        .parse::<Invite>()
        .map(|i| i.address())
        .unwrap_or_default()
}

async fn handle(command: Command, st: &mut State, out: &Outbox) {
    match command {
        Command::Connect(options) => {
            if let Some((client, _)) = st.client.take() {
                client.leave().await;
            }
            if let Some((task, _)) = st.joining.take() {
                task.abort();
            }
            let address = options.address();
            let invite = options.to_invite().to_string();
            out.send(Event::Connecting { address }).await;
            let task =
                tokio::spawn(
                    async move { Client::connect(options).await.map_err(|e| e.to_string()) },
                );
            st.joining = Some((task, invite));
        }
        Command::CancelConnect => {
            if let Some((task, _)) = st.joining.take() {
                task.abort();
                out.send(Event::ConnectFailed("cancelled".into())).await;
            }
        }
        Command::Disconnect => {
            if let Some((client, mut events)) = st.client.take() {
                client.leave().await;
                // Report the end as the client saw it.
                let mut last = None;
                while let Ok(Some(e)) =
                    tokio::time::timeout(Duration::from_secs(2), events.next()).await
                {
                    if let ClientEvent::Disconnected { reason, message } = e {
                        last = Some(Event::Disconnected { reason, message });
                    }
                }
                out.send(last.unwrap_or(Event::Disconnected {
                    reason: LeftReason::ClientDisconnected,
                    message: "left the session".into(),
                }))
                .await;
            }
        }
        Command::Send { local, signal } => {
            let Some((client, _)) = &st.client else {
                out.send(Event::SendFailed {
                    local,
                    code: signalbox_client::NOT_CONNECTED,
                    message: "not connected".into(),
                })
                .await;
                return;
            };
            match client.send(signal).await {
                Ok(receipt) => {
                    out.send(Event::Queued {
                        local,
                        seq: receipt.seq(),
                    })
                    .await;
                    let out = out.clone();
                    tokio::spawn(async move {
                        let event = match receipt.accepted().await {
                            Ok(_) => Event::Accepted { local },
                            Err(e) => Event::SendFailed {
                                local,
                                code: e.code(),
                                message: e.to_string(),
                            },
                        };
                        out.send(event).await;
                    });
                }
                Err(e) => {
                    out.send(Event::SendFailed {
                        local,
                        code: e.code(),
                        message: e.to_string(),
                    })
                    .await;
                }
            }
        }
        Command::Kick(id) => {
            if let Some((client, _)) = &st.client
                && let Err(e) = client.kick(id).await
            {
                out.send(Event::Denied(e.to_string())).await;
            }
        }
        Command::StartHost {
            port,
            open,
            session,
            loopback_only,
            data_dir,
            announce,
            mdns_port,
        } => {
            if let Some(relay) = st.relay.take() {
                relay.shutdown().await;
            }
            let ip: IpAddr = if loopback_only {
                [127, 0, 0, 1].into()
            } else {
                [0, 0, 0, 0].into()
            };
            let config = RelayConfig {
                listen: SocketAddr::new(ip, port),
                // The web client for browsers (and the REST API): TCP, on the QUIC port's
                // number.
                http: Some(SocketAddr::new(ip, port)),
                open,
                data_dir,
                announce,
                announce_sessions: vec![session.to_string()],
                mdns_port: mdns_port.unwrap_or(RelayConfig::default().mdns_port),
                ..RelayConfig::default()
            };
            match start_host(config, session).await {
                Ok((relay, info)) => {
                    st.relay = Some(relay);
                    out.send(Event::HostStarted(Box::new(info))).await;
                }
                Err(e) => out.send(Event::HostFailed(e)).await,
            }
        }
        Command::Discover(options) => match Browser::start(&options) {
            Ok(browser) => st.browser = Some(browser),
            Err(e) => out.send(Event::DiscoveryFailed(e.to_string())).await,
        },
        Command::StartBackground { options, autostart } => {
            if let Err(e) = crate::background::set_autostart(&options, autostart) {
                out.send(Event::BackgroundFailed(format!(
                    "cannot write the autostart entry: {e}"
                )))
                .await;
            }
            match crate::background::start(&options).await {
                Ok(relay) => {
                    st.background =
                        Some((relay, options.data_dir.clone(), options.session.to_string()));
                    refresh_background(st, out.clone()).await;
                }
                Err(e) => out.send(Event::BackgroundFailed(e)).await,
            }
        }
        Command::FindBackground { data_dir, session } => {
            let dir = match data_dir.map_or_else(signalbox_relay::paths::data_dir, Ok) {
                Ok(d) => d,
                Err(_) => return,
            };
            match crate::background::find(&dir).await {
                Some(relay) => {
                    st.background = Some((relay, dir, session));
                    refresh_background(st, out.clone()).await;
                }
                None => out.send(Event::Background(None)).await,
            }
        }
        Command::KickBackground(id) => {
            if let Some((relay, dir, session)) = &st.background {
                let view = crate::background::view(relay, dir, session).await;
                let done = match view {
                    Ok(view) => crate::background::kick(&view, id).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    out.send(Event::BackgroundFailed(e)).await;
                }
                refresh_background(st, out.clone()).await;
            }
        }
        Command::StopBackground => {
            if let Some((relay, _, _)) = st.background.take() {
                if let Err(e) = crate::background::stop(&relay).await {
                    out.send(Event::BackgroundFailed(e)).await;
                }
                out.send(Event::Background(None)).await;
            }
        }
        Command::MoveToBackground(mut options) => {
            if let Some(relay) = st.relay.take() {
                // The same UDP port, so the invites handed out stay good (the data directory
                // keeps the certificate and the secret).
                options.port = relay.quic_addr().port();
                if let Some((client, _)) = st.client.take() {
                    client.leave().await;
                }
                relay.shutdown().await;
                out.send(Event::HostStopped).await;
            }
            match crate::background::start(&options).await {
                Ok(relay) => {
                    st.background =
                        Some((relay, options.data_dir.clone(), options.session.to_string()));
                    refresh_background(st, out.clone()).await;
                    out.send(Event::MovedToBackground).await;
                }
                Err(e) => out.send(Event::BackgroundFailed(e)).await,
            }
        }
        Command::StopHost => {
            if let Some(relay) = st.relay.take() {
                // Joined to the relay being stopped: leave it rather than reconnect to it.
                let own = st.client.as_ref().is_some_and(|(c, _)| {
                    c.session_address().is_some_and(|a| {
                        a.port() == relay.quic_addr().port() && a.ip().is_loopback()
                    })
                });
                if own && let Some((client, _)) = st.client.take() {
                    client.leave().await;
                    out.send(Event::Disconnected {
                        reason: LeftReason::ClientDisconnected,
                        message: "you stopped the relay you were joined to".into(),
                    })
                    .await;
                }
                relay.shutdown().await;
                out.send(Event::HostStopped).await;
            }
        }
    }
}

async fn start_host(
    config: RelayConfig,
    session: SessionId,
) -> Result<(RelayHandle, HostInfo), String> {
    let open = config.open;
    let relay = Relay::spawn(config).await.map_err(|e| e.to_string())?;
    let mint = |role| {
        relay
            .tokens()
            .mint(&TokenRequest {
                session: session.to_string(),
                role,
                ..TokenRequest::default()
            })
            .map_err(|e| e.to_string())
    };
    let (publisher, moderator) = (mint(Role::Publisher)?, mint(Role::Moderator)?);
    let web_link = relay.web_link(&session, Some(&publisher));
    let invite = relay.invite(session.clone(), Some(publisher));
    let moderator_invite = relay.invite(session, Some(moderator));
    let local_invite = Invite {
        host: "127.0.0.1".into(),
        ..moderator_invite.clone()
    };
    let info = HostInfo {
        quic_addr: relay.quic_addr(),
        fingerprint: relay.fingerprint(),
        // The addresses it can be reached on: an IPv4 bind takes no IPv6.
        lan: signalbox_relay::net::lan_addresses()
            .into_iter()
            .filter(|ip| relay.quic_addr().is_ipv6() || ip.is_ipv4())
            .collect(),
        open,
        invite,
        moderator_invite,
        local_invite,
        announced_as: relay.is_announced().then(|| relay.name()),
        web_link,
    };
    Ok((relay, info))
}

/// Hands a client event to the UI, answering chat messages with a read receipt.
async fn forward(event: ClientEvent, st: &mut State, out: &Outbox) {
    let event = match event {
        ClientEvent::Signal(s) => {
            if let Some((client, _)) = &st.client
                && s.r#type == CHAT_TYPE
                && let Some(from) = s.from
                && from != client.me().id
            {
                let receipt = Signal::to_one(from, READ_RECEIPT_TYPE, s.seq.to_string());
                let _ = client.send_unconfirmed(receipt).await;
            }
            Event::Signal(s)
        }
        ClientEvent::Joined(p) => Event::Joined(p),
        ClientEvent::Left { peer, reason } => Event::Left { peer, reason },
        ClientEvent::Rejected { seq, error } => Event::Denied(format!("signal #{seq}: {error}")),
        ClientEvent::Denied { message } => Event::Denied(message),
        ClientEvent::Missed {
            from,
            first,
            last,
            count,
        } => {
            let who = match from {
                None => "the relay".to_owned(),
                Some(id) => st
                    .client
                    .as_ref()
                    .and_then(|(c, _)| c.peer(id))
                    .map_or_else(|| id.short(), |p| format!("{} ({})", p.name, id.short())),
            };
            Event::Denied(format!(
                "{count} signals from {who} were lost while away (#{first}–#{last})"
            ))
        }
        ClientEvent::Reconnecting { reason, message } => Event::Reconnecting { reason, message },
        ClientEvent::Reconnected { resumed, me } => Event::Reconnected { resumed, me },
        ClientEvent::Disconnected { reason, message } => {
            st.client = None;
            Event::Disconnected { reason, message }
        }
    };
    out.send(event).await;
}

/// Reads the background relay's people again and tells the UI (or that it is gone).
async fn refresh_background(st: &mut State, out: Outbox) {
    let Some((relay, dir, session)) = &st.background else {
        return;
    };
    match crate::background::view(relay, dir, session).await {
        Ok(view) => out.send(Event::Background(Some(Box::new(view)))).await,
        Err(_) => {
            // It stopped (or was stopped elsewhere).
            st.background = None;
            out.send(Event::Background(None)).await;
        }
    }
}
