//! The app's state, apart from drawing: changed only by backend [`Event`]s (through
//! [`AppState::apply`]) and by the user's actions in the views.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use signalbox_client::discovery::{Discovery, NearbyRelay};
use signalbox_client::{ConnectOptions, ReceivedSignal};
use signalbox_proto::discovery::Trust;
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, Limits, Role, SessionId, Target};

use crate::backend::{CHAT_TYPE, Command, Event, HostInfo, READ_RECEIPT_TYPE};
use crate::log::{Delivery, Direction, Row, SignalLog};
use crate::settings::Settings;

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConnState {
    /// Not connected (and why, after a connection ended or failed).
    #[default]
    Idle,
    /// Joining.
    Connecting {
        /// `host:port`.
        address: String,
    },
    /// In a session.
    Connected {
        /// `host:port`.
        address: String,
    },
    /// The network failed; reconnecting by itself (signals sent meanwhile wait).
    Reconnecting {
        /// `host:port`.
        address: String,
        /// What happened.
        message: String,
    },
    /// The last connection ended.
    Disconnected {
        /// Why.
        reason: Option<LeftReason>,
        /// The explanation.
        message: String,
    },
}

/// The join form.
#[derive(Debug, Clone, Default)]
pub struct JoinForm {
    /// A pasted invite.
    pub invite: String,
    /// Relay address `host[:port]`, when joining by parts.
    pub address: String,
    /// Session, when joining by parts.
    pub session: String,
    /// Token, when joining by parts.
    pub token: String,
    /// Fingerprint, when joining by parts.
    pub fingerprint: String,
    /// What went wrong with the last attempt.
    pub error: Option<String>,
    /// Open the relay's details once (they were just filled in from a nearby relay).
    pub reveal: bool,
}

impl JoinForm {
    /// The session to join on a relay found nearby: the one it publishes, else the one typed
    /// in the form, else `lobby`.
    pub fn session_for(&self, published: Option<&str>) -> SessionId {
        published
            .and_then(|s| SessionId::new(s).ok())
            .or_else(|| SessionId::new(self.session.trim()).ok())
            .unwrap_or_else(|| SessionId::new("lobby").expect("a valid session id"))
    }

    /// The connect options from the invite, or from the parts when no invite is given.
    pub fn options(&self, name: &str) -> Result<ConnectOptions, String> {
        let mut options = if !self.invite.trim().is_empty() {
            self.invite
                .trim()
                .parse::<ConnectOptions>()
                .map_err(|e| e.to_string())?
        } else {
            let (host, port) = ConnectOptions::split_address(&self.address).ok_or_else(|| {
                "enter the relay's address (host or host:port), or paste an invite".to_owned()
            })?;
            let session = SessionId::new(self.session.trim()).map_err(|e| e.to_string())?;
            let mut o = ConnectOptions::new(host, port, session);
            if !self.token.trim().is_empty() {
                o.token = Some(self.token.trim().to_owned());
            }
            if !self.fingerprint.trim().is_empty() {
                o.fingerprint = Some(self.fingerprint.trim().parse().map_err(
                    |e: signalbox_proto::fingerprint::InvalidFingerprint| e.to_string(),
                )?);
            }
            o
        };
        if !name.trim().is_empty() {
            options.name = Some(name.trim().to_owned());
        }
        Ok(options)
    }
}

/// Who a composed signal goes to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TargetChoice {
    /// Everyone.
    #[default]
    Everyone,
    /// One participant.
    One(Option<ConnectionId>),
    /// Several participants.
    Several(BTreeSet<ConnectionId>),
}

/// The composer.
#[derive(Debug, Clone, Default)]
pub struct Composer {
    /// Who to.
    pub target: TargetChoice,
    /// The type.
    pub r#type: String,
    /// The data.
    pub data: String,
    /// The last problem (local check or relay rejection).
    pub error: Option<String>,
    /// A quiet note (e.g. the chosen recipient left, so it goes to everyone).
    pub note: Option<String>,
    /// The path typed into "Attach file".
    pub attach_path: String,
    /// Whether the attach field is open.
    pub attaching: bool,
}

/// Why a file cannot be the data of a signal, if it cannot.
pub fn read_attachment(path: &std::path::Path, limit: u32) -> Result<String, String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{name} is not a file"));
    }
    // The size is checked before reading: a large file is never loaded.
    if meta.len() > u64::from(limit) {
        return Err(format!(
            "{name} is {} bytes; the limit is {limit}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{name} is not text (UTF-8); data must be text"))
}

/// A chat message, sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Local time.
    pub time: String,
    /// Who wrote it.
    pub from: String,
    /// Whether this app sent it.
    pub mine: bool,
    /// Who it went to, when not everyone.
    pub to: Option<String>,
    /// The text.
    pub text: String,
    /// For sent messages: whether the relay accepted it.
    pub delivery: Option<Delivery>,
    /// For sent messages: who has read it.
    pub read_by: BTreeSet<ConnectionId>,
    /// For sent messages: their seq (to match read receipts).
    pub seq: Option<u64>,
    /// For sent messages: who it went to (`None`: everyone); only they can have read it.
    pub sent_to: Option<Vec<ConnectionId>>,
}

/// Chat messages kept; older ones are dropped (with [`MAX_CHAT_BYTES`], whichever first).
pub const MAX_CHAT_MESSAGES: usize = 2_000;
/// Bytes of chat text kept.
pub const MAX_CHAT_BYTES: usize = 4 << 20;
/// Names of people who left, kept to label their signals that arrive late.
const MAX_DEPARTED: usize = 10_000;
/// How long a transient notice stays.
pub const NOTICE_TIME: std::time::Duration = std::time::Duration::from_secs(4);
/// Names that would pass for the app's own words.
const RESERVED_NAMES: [&str; 5] = ["relay", "you", "me", "everyone", "server"];

/// Which view the middle of the window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    /// The signal log.
    #[default]
    Log,
    /// The chat.
    Chat,
}

/// The host panel.
#[derive(Debug, Clone, Default)]
pub struct HostPanel {
    /// Whether the panel is shown.
    pub visible: bool,
    /// The running relay.
    pub running: Option<HostInfo>,
    /// Starting or stopping.
    pub busy: bool,
    /// What went wrong.
    pub error: Option<String>,
    /// Bind to loopback only (tests).
    pub loopback_only: bool,
    /// The relay's data directory (identity, token secret); the default data dir when `None`.
    pub data_dir: Option<std::path::PathBuf>,
    /// The mDNS port its announcement uses (tests); the standard 5353 when `None`.
    pub mdns_port: Option<u16>,
    /// A relay running from this machine's data directory in another process (started in
    /// the background by this app or another, by a systemd user unit, or at login).
    pub background: Option<crate::background::BackgroundView>,
    /// The `signalbox` executable a background relay runs (`None`: this one).
    pub exe: Option<std::path::PathBuf>,
    /// The window asked to close while hosting: the user is asked whether to keep hosting.
    pub asking_close: bool,
    /// The user chose: the window may close now (or once the relay moved).
    pub close_confirmed: bool,
    /// Close once the relay runs in the background.
    pub close_after_move: bool,
    /// The background relay's participant whose removal the user is asked to confirm.
    pub confirm_kick: Option<ConnectionId>,
}

impl HostPanel {
    /// How a background relay of these settings starts.
    pub fn start_options(
        &self,
        settings: &Settings,
        session: SessionId,
    ) -> Option<crate::background::StartOptions> {
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => signalbox_relay::paths::data_dir().ok()?,
        };
        Some(crate::background::StartOptions {
            exe: self.exe.clone().or_else(|| std::env::current_exe().ok())?,
            data_dir,
            port: settings.host_port,
            session,
            open: settings.host_open,
            announce: settings.host_announce,
            loopback_only: self.loopback_only,
            mdns_port: self.mdns_port,
        })
    }
}

/// A relay found on the LAN, and when its announcement was last reported (it leaves the list
/// when withdrawn, or when its records expire unrenewed).
#[derive(Debug, Clone)]
pub struct NearbyEntry {
    /// What it announced.
    pub relay: NearbyRelay,
    /// When its announcement was last reported.
    pub seen: std::time::Instant,
}

/// Connection figures for the status bar.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Round-trip time.
    pub rtt: Option<Duration>,
    /// Signals per second in, out.
    pub per_second: (f64, f64),
    last: Option<(u64, u64, std::time::Instant)>,
}

/// A pending local send: what to update when the relay answers.
#[derive(Debug, Clone, Copy, Default)]
struct Outgoing {
    row: Option<u64>,
    chat: Option<usize>,
}

/// Everything the app shows.
#[derive(Debug, Default)]
pub struct AppState {
    /// Persisted settings.
    pub settings: Settings,
    /// The join form.
    pub join: JoinForm,
    /// The connection.
    pub conn: ConnState,
    /// This connection, when joined.
    pub me: Option<ConnectionInfo>,
    /// The session, when joined.
    pub session: Option<SessionId>,
    /// The invite used to join.
    pub invite: Option<String>,
    /// Everyone else, by join time.
    pub peers: Vec<ConnectionInfo>,
    /// The relay's limits.
    pub limits: Limits,
    /// The signal log.
    pub log: SignalLog,
    /// Chat messages.
    pub chat: Vec<ChatMessage>,
    /// The chat input.
    pub chat_input: String,
    /// Who chat messages go to (`None`: everyone).
    pub chat_to: Option<ConnectionId>,
    /// The composer.
    pub composer: Composer,
    /// The middle view.
    pub tab: Tab,
    /// Whether the log follows new rows.
    pub auto_scroll: bool,
    /// The control pad is being edited.
    pub editing_pad: bool,
    /// The host panel.
    pub host: HostPanel,
    /// Status-bar figures.
    pub stats: Stats,
    /// A notice for the user (e.g. a denied request).
    pub notice: Option<String>,
    /// When a transient notice ("Invite copied.") goes away by itself.
    pub notice_until: Option<std::time::Instant>,
    /// The log row whose details are open.
    pub selected_row: Option<u64>,
    /// The participant whose removal the user is asked to confirm.
    pub confirm_remove: Option<ConnectionId>,
    /// Removals this app asked for, not yet seen done.
    removing: std::collections::HashSet<ConnectionId>,
    /// Relays announcing themselves on the LAN, by name.
    pub nearby: Vec<NearbyEntry>,
    /// Why LAN discovery is not running.
    pub discovery_error: Option<String>,
    /// The nearby relay (instance) whose changed fingerprint the user is asked to confirm.
    pub confirm_trust: Option<String>,
    next_local: u64,
    outgoing: HashMap<u64, Outgoing>,
    chat_by_seq: HashMap<u64, usize>,
    /// Bytes of text in `chat`.
    chat_bytes: usize,
    /// Names of people who left (oldest first), for signals of theirs that arrive late.
    departed: std::collections::VecDeque<(ConnectionId, String)>,
}

/// An error as a person reads it: a one-line headline (what happened, what to do), and the
/// technical text for the details, folded below it.
pub fn explain(error: &str) -> (String, Option<String>) {
    let has = |needle: &str| error.contains(needle);
    let headline = if has("UnknownIssuer") || has("invalid peer certificate") {
        "The relay answered, but its certificate cannot be checked: this invite has no \
         fingerprint. Ask for the full invite (it has fp=…)."
    } else if has("but the invite pins") || has("does not match the pinned") {
        "This is not the relay you were invited to: it presented another certificate. Ask \
         the host for a new invite."
    } else if has("the token is for the relay with certificate fingerprint") {
        "This invite's token is for another relay; it was not sent. Ask for an invite to \
         this one."
    } else if has("relative URL without a base")
        || has("not an invite")
        || has("invalid invite")
        || has("scheme")
    {
        "That is not an invite. An invite starts with signalbox:// — paste all of it."
    } else if has("has expired") {
        "The invite has expired. Ask for a new one."
    } else if has("refused to join") {
        return (
            format!(
                "The relay refused: {}",
                error
                    .split_once("refused to join: ")
                    .map_or(error, |(_, why)| why)
            ),
            None,
        );
    } else if has("cannot reach") || has("no answer from the relay") || has("cannot resolve") {
        "Cannot reach the relay. Is it running, and are the address and port right?"
    } else if error == "cancelled" {
        return ("Cancelled.".into(), None);
    } else {
        return (error.lines().next().unwrap_or(error).to_owned(), None);
    };
    (headline.to_owned(), Some(error.to_owned()))
}

/// The time of day in the system's time zone, `HH:MM:SS.mmm` (the log's "Local time"
/// column, and the chat's times).
pub fn clock() -> String {
    jiff::ZonedDateTime::now()
        .strftime("%H:%M:%S%.3f")
        .to_string()
}

impl AppState {
    /// A fresh state with these settings.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            auto_scroll: true,
            ..Self::default()
        }
    }

    /// A notice that goes away by itself after a few seconds.
    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
        self.notice_until = Some(std::time::Instant::now() + NOTICE_TIME);
    }

    /// A notice that stays until dismissed.
    pub fn warn(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
        self.notice_until = None;
    }

    /// Forgets a transient notice whose time is up; returns how long the current one has
    /// left (to wake the UI then).
    pub fn expire_notice(&mut self, now: std::time::Instant) -> Option<std::time::Duration> {
        let until = self.notice_until?;
        if now >= until {
            self.notice = None;
            self.notice_until = None;
            return None;
        }
        Some(until - now)
    }

    /// Whether joined to a session (also while reconnecting: the session view stays).
    pub fn is_connected(&self) -> bool {
        matches!(
            self.conn,
            ConnState::Connected { .. } | ConnState::Reconnecting { .. }
        )
    }

    /// Whether this connection may remove others.
    pub fn is_moderator(&self) -> bool {
        self.me.as_ref().is_some_and(|m| m.role == Role::Moderator)
    }

    /// A display name for a connection id.
    ///
    /// A name that could pass for someone else's — another member's (ignoring case and
    /// surrounding space) or one of the app's own words ("relay", "you", …) — is shown with the
    /// short id beside it. People who left keep their names (their last signals may arrive
    /// after they left).
    pub fn name_of(&self, id: Option<ConnectionId>) -> String {
        let Some(id) = id else {
            return "relay".into();
        };
        let name = if let Some(me) = self.me.as_ref().filter(|m| m.id == id) {
            me.name.clone()
        } else if let Some(p) = self.peers.iter().find(|p| p.id == id) {
            p.name.clone()
        } else if let Some((_, n)) = self.departed.iter().rev().find(|(d, _)| *d == id) {
            n.clone()
        } else {
            return id.short();
        };
        if self.looks_like_another(id, &name) {
            format!("{name} ({})", id.short())
        } else {
            name
        }
    }

    /// Whether `name` (of `id`) looks like another member's name or like the app's words.
    pub fn looks_like_another(&self, id: ConnectionId, name: &str) -> bool {
        let norm = |n: &str| n.trim().to_lowercase();
        let name = norm(name);
        RESERVED_NAMES.contains(&name.as_str())
            || self
                .me
                .iter()
                .chain(self.peers.iter())
                .any(|p| p.id != id && norm(&p.name) == name)
    }

    /// The participant with this display name.
    pub fn peer_named(&self, name: &str) -> Option<&ConnectionInfo> {
        self.peers.iter().find(|p| p.name == name)
    }

    fn target_label(&self, target: &Target) -> String {
        match target {
            Target::All => "everyone".into(),
            Target::One(id) => self.name_of(Some(*id)),
            Target::List(ids) => ids
                .iter()
                .map(|id| self.name_of(Some(*id)))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Records a signal the user is sending and returns the command for the backend.
    pub fn send(&mut self, signal: signalbox_client::Signal) -> Command {
        self.next_local += 1;
        let local = self.next_local;
        let me = self.me.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let row = self.log.push(Row {
            number: 0,
            time: clock(),
            direction: Direction::Out { local },
            sender: me.clone(),
            target: self.target_label(&signal.to),
            r#type: signal.r#type.clone(),
            data: signal.data.clone(),
            delivery: Some(Delivery::Pending),
            seq: None,
        });
        let chat = (signal.r#type == CHAT_TYPE).then(|| {
            let sent_to = match &signal.to {
                Target::All => None,
                Target::One(id) => Some(vec![*id]),
                Target::List(ids) => Some(ids.clone()),
            };
            self.push_chat(ChatMessage {
                time: clock(),
                from: me,
                mine: true,
                to: (!signal.to.is_all()).then(|| self.target_label(&signal.to)),
                text: signal.data.clone(),
                delivery: Some(Delivery::Pending),
                read_by: BTreeSet::new(),
                seq: None,
                sent_to,
            })
        });
        self.outgoing.insert(
            local,
            Outgoing {
                row: Some(row),
                chat,
            },
        );
        Command::Send { local, signal }
    }

    /// A line in the log for a presence change of `id` (joins and leaves are filterable like
    /// signals: by the person's name, or by "joined"/"left" as text).
    fn presence_row(&mut self, id: ConnectionId, event: &'static str, what: String) {
        let sender = self.name_of(Some(id));
        self.log.push(Row {
            number: 0,
            time: clock(),
            direction: Direction::Presence { who: id, event },
            sender,
            target: String::new(),
            r#type: String::new(),
            data: what,
            delivery: None,
            seq: None,
        });
    }

    /// The user confirmed removing `id`: the command, and the log will say who removed it.
    pub fn remove(&mut self, id: ConnectionId) -> Command {
        self.removing.insert(id);
        self.confirm_remove = None;
        Command::Kick(id)
    }

    /// Adds a chat message, dropping the oldest beyond [`MAX_CHAT_MESSAGES`] or
    /// [`MAX_CHAT_BYTES`]; returns its index.
    fn push_chat(&mut self, msg: ChatMessage) -> usize {
        self.chat_bytes += msg.text.len();
        self.chat.push(msg);
        let mut drop = 0;
        let mut bytes = self.chat_bytes;
        while self.chat.len() - drop > MAX_CHAT_MESSAGES
            || (bytes > MAX_CHAT_BYTES && self.chat.len() - drop > 1)
        {
            bytes -= self.chat[drop].text.len();
            drop += 1;
        }
        if drop > 0 {
            self.chat.drain(..drop);
            self.chat_bytes = bytes;
            // Indices into the chat move down; those of dropped messages are gone.
            self.chat_by_seq.retain(|_, i| {
                let kept = *i >= drop;
                *i = i.wrapping_sub(drop);
                kept
            });
            for o in self.outgoing.values_mut() {
                o.chat = o.chat.and_then(|i| i.checked_sub(drop));
            }
        }
        self.chat.len() - 1
    }

    fn update_outgoing(&mut self, local: u64, f: impl Fn(&mut Option<Delivery>, &mut Option<u64>)) {
        let Some(o) = self.outgoing.get(&local).copied() else {
            return;
        };
        if let Some(row) = o.row.and_then(|n| self.log.get_mut(n)) {
            f(&mut row.delivery, &mut row.seq);
        }
        if let Some(msg) = o.chat.and_then(|i| self.chat.get_mut(i)) {
            f(&mut msg.delivery, &mut msg.seq);
        }
    }

    /// Applies one backend event.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Connecting { address } => {
                self.conn = ConnState::Connecting { address };
                self.join.error = None;
            }
            Event::Connected {
                me,
                peers,
                limits,
                session,
                address,
                invite,
            } => {
                self.settings
                    .remember(&invite, format!("{session} @ {address}"));
                self.conn = ConnState::Connected { address };
                self.me = Some(me);
                self.peers = peers;
                self.limits = limits;
                self.session = Some(session);
                self.invite = Some(invite);
                self.join.error = None;
                self.stats = Stats::default();
            }
            Event::ConnectFailed(message) => {
                self.conn = ConnState::Idle;
                self.join.error = Some(message);
            }
            Event::Signal(s) => self.received(s),
            Event::Joined(p) => {
                self.peers.retain(|x| x.id != p.id);
                let (id, line) = (p.id, format!("joined ({})", p.role));
                self.peers.push(p);
                self.presence_row(id, "joined", line);
            }
            Event::Left { peer, reason } => {
                let line =
                    if reason == LeftReason::ForceDisconnected && self.removing.remove(&peer.id) {
                        "was removed by you".to_owned()
                    } else {
                        format!("left ({reason})")
                    };
                self.presence_row(peer.id, "left", line);
                let chosen = matches!(self.composer.target, TargetChoice::One(Some(id)) if id == peer.id)
                    || self.chat_to == Some(peer.id);
                if chosen {
                    self.composer.note = Some(format!(
                        "{} left; signals go to everyone now",
                        self.name_of(Some(peer.id))
                    ));
                }
                self.peers.retain(|x| x.id != peer.id);
                if self.departed.len() == MAX_DEPARTED {
                    self.departed.pop_front();
                }
                self.departed.push_back((peer.id, peer.name.clone()));
                match &mut self.composer.target {
                    TargetChoice::One(Some(id)) if *id == peer.id => {
                        // Not a red "choose who to send to": back to everyone, said quietly.
                        self.composer.target = TargetChoice::Everyone;
                    }
                    TargetChoice::Several(ids) => {
                        ids.remove(&peer.id);
                    }
                    _ => {}
                }
                if self.chat_to == Some(peer.id) {
                    self.chat_to = None;
                }
            }
            Event::Queued { local, seq } => {
                self.update_outgoing(local, |_, s| *s = Some(seq));
                if let Some(i) = self.outgoing.get(&local).and_then(|o| o.chat) {
                    self.chat_by_seq.insert(seq, i);
                }
            }
            Event::Accepted { local } => {
                self.update_outgoing(local, |d, _| *d = Some(Delivery::Accepted));
                self.outgoing.remove(&local);
            }
            Event::SendFailed {
                local,
                code,
                message,
            } => {
                let failed = Delivery::Failed {
                    code,
                    message: message.clone(),
                };
                self.update_outgoing(local, |d, _| *d = Some(failed.clone()));
                self.outgoing.remove(&local);
                self.composer.error = Some(format!("error {code}: {message}"));
            }
            Event::Denied(message) => self.warn(message),
            Event::Reconnecting { reason, message } => {
                let address = match &self.conn {
                    ConnState::Connected { address } | ConnState::Reconnecting { address, .. } => {
                        address.clone()
                    }
                    _ => String::new(),
                };
                self.conn = ConnState::Reconnecting {
                    address,
                    message: format!("{reason}: {message}"),
                };
                self.stats.rtt = None;
            }
            Event::Reconnected { resumed, me } => {
                if let ConnState::Reconnecting { address, .. } = &self.conn {
                    self.conn = ConnState::Connected {
                        address: address.clone(),
                    };
                }
                if !resumed {
                    self.notice = Some(format!(
                        "Rejoined as a new connection ({}): the relay no longer held the old one.",
                        me.id.short()
                    ));
                }
                self.me = Some(me);
            }
            Event::Disconnected { reason, message } => {
                self.conn = ConnState::Disconnected {
                    reason: Some(reason),
                    message,
                };
                self.me = None;
                self.peers.clear();
                self.stats = Stats::default();
            }
            Event::Stats {
                rtt,
                received,
                sent,
            } => {
                let now = std::time::Instant::now();
                if let Some((r0, s0, t0)) = self.stats.last {
                    let dt = now.duration_since(t0).as_secs_f64().max(1e-3);
                    self.stats.per_second = (
                        received.saturating_sub(r0) as f64 / dt,
                        sent.saturating_sub(s0) as f64 / dt,
                    );
                }
                self.stats.last = Some((received, sent, now));
                self.stats.rtt = Some(rtt);
            }
            Event::HostStarted(info) => {
                self.host.running = Some(*info);
                self.host.busy = false;
                self.host.error = None;
            }
            Event::Background(view) => {
                self.host.background = view.map(|v| *v);
                self.host.busy = false;
            }
            Event::BackgroundFailed(e) => {
                self.host.busy = false;
                self.host.error = Some(e);
                self.host.close_after_move = false;
            }
            Event::MovedToBackground => {
                self.host.busy = false;
                if self.host.close_after_move {
                    self.host.close_confirmed = true;
                }
            }
            Event::HostStopped => {
                self.host.running = None;
                self.host.busy = false;
            }
            Event::HostFailed(message) => {
                self.host.busy = false;
                self.host.error = Some(message);
            }
            Event::Nearby(Discovery::Found(relay)) => {
                let seen = std::time::Instant::now();
                match self
                    .nearby
                    .iter_mut()
                    .find(|n| n.relay.instance == relay.instance)
                {
                    Some(n) => *n = NearbyEntry { relay, seen },
                    None => self.nearby.push(NearbyEntry { relay, seen }),
                }
                self.nearby.sort_by(|a, b| {
                    (&a.relay.announcement.name, &a.relay.instance)
                        .cmp(&(&b.relay.announcement.name, &b.relay.instance))
                });
            }
            Event::Nearby(Discovery::Gone { instance }) => {
                self.nearby.retain(|n| n.relay.instance != instance);
            }
            Event::DiscoveryFailed(message) => self.discovery_error = Some(message),
        }
    }

    /// What trust on first use says about a nearby relay.
    pub fn trust(&self, relay: &NearbyRelay) -> Trust {
        let a = &relay.announcement;
        self.settings.known_relays.check(&a.name, &a.fingerprint)
    }

    /// The options to join a nearby relay, and remembers its fingerprint when it is new.
    /// `None` while its fingerprint differs from the remembered one (the user must confirm
    /// first, [`AppState::trust_changed`]).
    pub fn use_nearby(&mut self, relay: &NearbyRelay) -> Option<ConnectOptions> {
        if matches!(self.trust(relay), Trust::Changed { .. }) {
            return None;
        }
        let a = &relay.announcement;
        self.settings.known_relays.remember(&a.name, a.fingerprint);
        let session = self
            .join
            .session_for(a.sessions.first().map(SessionId::as_str));
        let mut options = relay.connect_options(session);
        if !self.settings.name.trim().is_empty() {
            options.name = Some(self.settings.name.trim().to_owned());
        }
        Some(options)
    }

    /// Fills the join form with a nearby relay's address, fingerprint and session.
    pub fn fill_from_nearby(&mut self, relay: &NearbyRelay) {
        if let Some(options) = self.use_nearby(relay) {
            self.join.invite.clear();
            self.join.address = relay.address().to_string();
            self.join.session = options.session.to_string();
            self.join.fingerprint = relay.announcement.fingerprint.to_string();
            self.join.reveal = true;
            self.join.error = None;
        }
    }

    /// The user confirmed a relay whose fingerprint changed: trust the new one from now on.
    pub fn trust_changed(&mut self, relay: &NearbyRelay) {
        let a = &relay.announcement;
        self.settings.known_relays.replace(&a.name, a.fingerprint);
        self.confirm_trust = None;
    }

    fn received(&mut self, s: ReceivedSignal) {
        let me = self.me.as_ref().map(|m| m.id);
        if s.r#type == READ_RECEIPT_TYPE
            && let (Some(from), Ok(seq)) = (s.from, s.data.parse::<u64>())
            && let Some(&i) = self.chat_by_seq.get(&seq)
            && let Some(msg) = self.chat.get_mut(i)
            // Only someone the message went to can have read it (and not we ourselves).
            && Some(from) != me
            && msg.sent_to.as_ref().is_none_or(|to| to.contains(&from))
        {
            msg.read_by.insert(from);
        }
        if s.from.is_some() && s.from == me {
            // Our own broadcast coming back: the sent row already shows it.
            return;
        }
        let sender = self.name_of(s.from);
        if s.r#type == CHAT_TYPE {
            self.push_chat(ChatMessage {
                time: clock(),
                from: sender.clone(),
                mine: false,
                to: (!s.to_all).then(|| "you".to_owned()),
                text: s.data.to_string(),
                delivery: None,
                read_by: BTreeSet::new(),
                seq: Some(s.seq),
                sent_to: None,
            });
        }
        self.log.push(Row {
            number: 0,
            time: clock(),
            direction: Direction::In { from: s.from },
            sender,
            target: if s.to_all {
                "everyone".into()
            } else {
                "me".into()
            },
            // The log keeps its rows for long: copies, not the receive buffers.
            r#type: s.r#type.to_string(),
            data: s.data.to_string(),
            delivery: None,
            seq: Some(s.seq),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_client::Signal;

    fn info(name: &str) -> ConnectionInfo {
        ConnectionInfo {
            id: ConnectionId::random(),
            name: name.into(),
            role: Role::Publisher,
            data: String::new(),
            joined_at: 0,
        }
    }

    fn connected(me: &ConnectionInfo, peers: Vec<ConnectionInfo>) -> AppState {
        let mut st = AppState::new(Settings::default());
        st.apply(Event::Connected {
            me: me.clone(),
            peers,
            limits: Limits::default(),
            session: SessionId::new("s").unwrap(),
            address: "h:1".into(),
            invite: "signalbox://h:1/s".into(),
        });
        st
    }

    #[test]
    fn connecting_then_connected_remembers_the_relay() {
        let me = info("me");
        let st = connected(&me, vec![info("bob")]);
        assert!(st.is_connected());
        assert_eq!(st.peers.len(), 1);
        assert_eq!(st.settings.recent[0].label, "s @ h:1");
    }

    #[test]
    fn presence_changes_the_participant_list_and_targets() {
        let me = info("me");
        let bob = info("bob");
        let mut st = connected(&me, vec![bob.clone()]);
        let carol = info("carol");
        st.apply(Event::Joined(carol.clone()));
        assert_eq!(st.peers.len(), 2);
        st.composer.target = TargetChoice::One(Some(bob.id));
        st.chat_to = Some(bob.id);
        st.apply(Event::Left {
            peer: bob.clone(),
            reason: LeftReason::ClientDisconnected,
        });
        assert_eq!(st.peers, vec![carol]);
        assert_eq!(st.composer.target, TargetChoice::Everyone);
        assert!(st.composer.note.as_deref().unwrap().contains("bob left"));
        assert_eq!(st.chat_to, None);
    }

    fn chat_from(from: &ConnectionInfo, seq: u64, data: String) -> Event {
        Event::Signal(ReceivedSignal {
            from: Some(from.id),
            seq,
            to_all: true,
            r#type: CHAT_TYPE.into(),
            data: data.into(),
        })
    }

    #[test]
    fn the_chat_is_bounded_in_messages_and_bytes_and_receipts_still_match() {
        let me = info("me");
        let bob = info("bob");
        let mut st = connected(&me, vec![bob.clone()]);
        for i in 0..(MAX_CHAT_MESSAGES as u64 + 500) {
            st.apply(chat_from(&bob, i + 1, format!("m{i}")));
        }
        assert_eq!(st.chat.len(), MAX_CHAT_MESSAGES);
        assert_eq!(st.chat[0].text, "m500", "the oldest went first");
        // Big messages: bounded by bytes too.
        for i in 0..6 {
            st.apply(chat_from(&bob, 10_000 + i, "x".repeat(1 << 20)));
        }
        let bytes: usize = st.chat.iter().map(|m| m.text.len()).sum();
        assert!(bytes <= MAX_CHAT_BYTES, "{bytes}");
        // A message sent now still gets its receipt after more are dropped.
        let Command::Send { local, .. } = st.send(Signal::to_all(CHAT_TYPE, "mine")) else {
            panic!()
        };
        st.apply(Event::Queued { local, seq: 1 });
        for i in 0..3 {
            st.apply(chat_from(&bob, 20_000 + i, "y".repeat(1 << 20)));
        }
        st.apply(Event::Signal(ReceivedSignal {
            from: Some(bob.id),
            seq: 30_000,
            to_all: false,
            r#type: READ_RECEIPT_TYPE.into(),
            data: "1".into(),
        }));
        let mine = st.chat.iter().find(|m| m.mine).expect("still kept");
        assert_eq!(mine.read_by.len(), 1);
    }

    #[test]
    fn a_receipt_counts_only_from_someone_the_message_went_to() {
        let me = info("me");
        let (bob, carol) = (info("bob"), info("carol"));
        let mut st = connected(&me, vec![bob.clone(), carol.clone()]);
        let Command::Send { local, .. } = st.send(Signal::to_one(bob.id, CHAT_TYPE, "psst")) else {
            panic!()
        };
        st.apply(Event::Queued { local, seq: 4 });
        let receipt = |from: &ConnectionInfo| {
            Event::Signal(ReceivedSignal {
                from: Some(from.id),
                seq: 9,
                to_all: false,
                r#type: READ_RECEIPT_TYPE.into(),
                data: "4".into(),
            })
        };
        st.apply(receipt(&carol));
        assert!(st.chat[0].read_by.is_empty(), "carol was not sent it");
        st.apply(receipt(&me));
        assert!(st.chat[0].read_by.is_empty(), "nor were we");
        st.apply(receipt(&bob));
        assert_eq!(st.chat[0].read_by.len(), 1);
    }

    #[test]
    fn look_alike_names_show_their_id_and_departed_names_stay() {
        let me = info("ann");
        let (bob, bob2, relay) = (info("bob"), info(" Bob"), info("Relay"));
        let mut st = connected(&me, vec![bob.clone(), bob2.clone(), relay.clone()]);
        assert_eq!(
            st.name_of(Some(bob.id)),
            format!("bob ({})", bob.id.short())
        );
        assert_eq!(
            st.name_of(Some(bob2.id)),
            format!(" Bob ({})", bob2.id.short())
        );
        assert_eq!(
            st.name_of(Some(relay.id)),
            format!("Relay ({})", relay.id.short())
        );
        assert_eq!(st.name_of(Some(me.id)), "ann");
        assert_eq!(st.name_of(None), "relay");
        // A one-shot sender leaves before its signal arrives: the log still names it.
        let script = info("script");
        st.apply(Event::Joined(script.clone()));
        st.apply(Event::Left {
            peer: script.clone(),
            reason: LeftReason::ClientDisconnected,
        });
        st.apply(chat_from(&script, 1, "done".into()));
        let last = st.log.shown(st.log.shown_len() - 1).unwrap();
        assert_eq!(
            (last.sender.as_str(), last.data.as_str()),
            ("script", "done")
        );
        // Its join and leave are lines of the log, by name.
        assert_eq!(st.log.shown(0).unwrap().sender, "script");
        assert_eq!(st.log.shown(1).unwrap().data, "left (clientDisconnected)");
    }

    #[test]
    fn transient_notices_expire_and_warnings_stay() {
        let mut st = AppState::new(Settings::default());
        let now = std::time::Instant::now();
        st.notify("Invite copied.");
        assert!(st.expire_notice(now).is_some());
        assert_eq!(st.notice.as_deref(), Some("Invite copied."));
        assert_eq!(
            st.expire_notice(now + NOTICE_TIME + Duration::from_millis(1)),
            None
        );
        assert_eq!(st.notice, None);
        st.warn("denied");
        assert_eq!(st.expire_notice(now + Duration::from_secs(3600)), None);
        assert_eq!(st.notice.as_deref(), Some("denied"));
    }

    #[test]
    fn errors_have_a_headline_and_details() {
        let (h, d) = explain(
            "cannot reach the relay at 10.0.0.1:4433: invalid peer certificate: UnknownIssuer",
        );
        assert!(h.contains("certificate cannot be checked"), "{h}");
        assert!(d.unwrap().contains("UnknownIssuer"));
        let (h, _) = explain("relative URL without a base");
        assert!(h.starts_with("That is not an invite"), "{h}");
        let (h, d) = explain("the relay refused to join: session 'x' is full (code 1027)");
        assert_eq!(h, "The relay refused: session 'x' is full (code 1027)");
        assert_eq!(d, None);
        let (h, _) = explain("the relay refused to join: the token has expired (code 401)");
        assert_eq!(h, "The invite has expired. Ask for a new one.");
        let (h, _) = explain(
            "the relay at h:1 presented certificate fingerprint aa, but the invite pins bb; refusing",
        );
        assert!(
            h.starts_with("This is not the relay you were invited to"),
            "{h}"
        );
    }

    #[test]
    fn the_log_exports_as_json_lines_like_listen() {
        let me = info("me");
        let bob = info("bob");
        let mut st = connected(&me, vec![bob.clone()]);
        st.apply(chat_from(&bob, 3, "hi".into()));
        st.apply(Event::Left {
            peer: bob.clone(),
            reason: LeftReason::ClientDisconnected,
        });
        let text = st.log.to_json_lines();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with(r#"{"event":"signal","from":""#),
            "{}",
            lines[0]
        );
        let signal: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(signal["from_name"], "bob");
        assert_eq!(signal["seq"], 3);
        assert_eq!(signal["data"], "hi");
        let left: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(left["event"], "left");
        assert_eq!(left["connection"], bob.id.to_string());
    }

    #[test]
    fn sent_signals_track_their_delivery_in_log_and_chat() {
        let me = info("me");
        let bob = info("bob");
        let mut st = connected(&me, vec![bob.clone()]);
        let Command::Send { local, .. } = st.send(Signal::to_all(CHAT_TYPE, "hi")) else {
            panic!()
        };
        assert_eq!(st.log.shown(0).unwrap().delivery, Some(Delivery::Pending));
        st.apply(Event::Queued { local, seq: 7 });
        st.apply(Event::Accepted { local });
        assert_eq!(st.log.shown(0).unwrap().delivery, Some(Delivery::Accepted));
        assert_eq!(st.log.shown(0).unwrap().seq, Some(7));
        assert_eq!(st.chat[0].delivery, Some(Delivery::Accepted));
        // Bob's app answers with a read receipt for seq 7.
        st.apply(Event::Signal(ReceivedSignal {
            from: Some(bob.id),
            seq: 1,
            to_all: false,
            r#type: READ_RECEIPT_TYPE.into(),
            data: "7".into(),
        }));
        assert_eq!(st.chat[0].read_by.len(), 1);
        // Our own broadcast coming back is not logged twice.
        st.apply(Event::Signal(ReceivedSignal {
            from: Some(me.id),
            seq: 7,
            to_all: true,
            r#type: CHAT_TYPE.into(),
            data: "hi".into(),
        }));
        assert_eq!(st.chat.len(), 1);
        assert_eq!(st.log.len(), 2, "the sent row and bob's receipt");

        let Command::Send { local, .. } = st.send(Signal::to_one(bob.id, "t", "x")) else {
            panic!()
        };
        st.apply(Event::SendFailed {
            local,
            code: 404,
            message: "gone".into(),
        });
        assert!(matches!(
            st.log.shown(2).unwrap().delivery,
            Some(Delivery::Failed { code: 404, .. })
        ));
        assert_eq!(st.log.shown(2).unwrap().target, "bob");
        assert_eq!(st.composer.error.as_deref(), Some("error 404: gone"));
    }

    #[test]
    fn received_signals_go_to_log_and_chat() {
        let me = info("me");
        let bob = info("bob");
        let mut st = connected(&me, vec![bob.clone()]);
        st.apply(Event::Signal(ReceivedSignal {
            from: Some(bob.id),
            seq: 3,
            to_all: false,
            r#type: CHAT_TYPE.into(),
            data: "psst".into(),
        }));
        assert_eq!(st.chat[0].from, "bob");
        assert_eq!(st.chat[0].to.as_deref(), Some("you"));
        let row = st.log.shown(0).unwrap();
        assert_eq!((row.sender.as_str(), row.target.as_str()), ("bob", "me"));
    }

    #[test]
    fn disconnect_and_failures_are_shown() {
        let me = info("me");
        let mut st = connected(&me, vec![]);
        st.apply(Event::Disconnected {
            reason: LeftReason::ForceDisconnected,
            message: "removed by moderator".into(),
        });
        assert!(!st.is_connected());
        assert!(matches!(
            st.conn,
            ConnState::Disconnected {
                reason: Some(LeftReason::ForceDisconnected),
                ..
            }
        ));
        st.apply(Event::ConnectFailed("refused".into()));
        assert_eq!(st.join.error.as_deref(), Some("refused"));
    }

    #[test]
    fn reconnecting_keeps_the_session_and_a_rejoin_is_noticed() {
        let me = info("me");
        let mut st = connected(&me, vec![info("bob")]);
        st.apply(Event::Reconnecting {
            reason: LeftReason::NetworkDisconnected,
            message: "timed out".into(),
        });
        assert!(
            matches!(&st.conn, ConnState::Reconnecting { address, message } if address == "h:1" && message.contains("timed out"))
        );
        assert!(
            st.is_connected(),
            "the session view stays while reconnecting"
        );
        let again = info("me");
        st.apply(Event::Reconnected {
            resumed: false,
            me: again.clone(),
        });
        assert_eq!(
            st.conn,
            ConnState::Connected {
                address: "h:1".into()
            }
        );
        assert_eq!(st.me, Some(again));
        assert!(
            st.notice
                .as_deref()
                .unwrap_or("")
                .contains("new connection")
        );
    }

    #[test]
    fn join_form_builds_options() {
        let mut form = JoinForm {
            address: "10.0.0.2:5000".into(),
            session: "team".into(),
            ..JoinForm::default()
        };
        let o = form.options("ann").unwrap();
        assert_eq!(
            (o.address(), o.session.as_str(), o.name.as_deref()),
            ("10.0.0.2:5000".to_owned(), "team", Some("ann"))
        );
        form.session = "bad session".into();
        assert!(form.options("ann").is_err());
        form.invite = "not an invite".into();
        assert!(form.options("ann").unwrap_err().contains("invite"));
    }
}
