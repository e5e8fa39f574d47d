//! Every message of the wire protocol, by the stream that carries it.
//!
//! | stream | direction | messages |
//! |---|---|---|
//! | control (bidirectional, first) | client → relay | [`ClientMessage`]: `Hello`, then `Kick`, `Leave` |
//! | control | relay → client | [`RelayMessage`]: `Welcome` or `Refused`, then presence and notices |
//! | send stream (unidirectional, one) | client → relay | [`Outgoing`], in `seq` order |
//! | delivery stream (unidirectional, one per sender) | relay → client | [`DeliveryHeader`], then [`Incoming`] |

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{ConnectionId, SessionId};
use crate::signal::{Limits, SignalError, Target};

/// The protocol version this crate speaks (`Hello::protocol`).
pub const PROTOCOL_VERSION: u16 = 1;
/// The TLS ALPN of the protocol.
pub const ALPN: &[u8] = b"signalbox/1";
/// The stream receive window clients give the relay's delivery streams (bytes): how much a
/// client may have received but not yet read on one stream. The relay keeps at least this
/// much of each stream for replay after a resume.
pub const CLIENT_STREAM_WINDOW: u32 = 256 * 1024;
/// Both sides ask their peer (QUIC ACK frequency extension) to acknowledge after this many
/// packets rather than every second one: a stream of small signals otherwise costs the
/// receiver an encrypted ACK for every other packet it gets.
pub const ACK_ELICITING_THRESHOLD: u32 = 10;
/// ... or after this long, whichever comes first.
pub const MAX_ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends, receives, and may remove others.
    Moderator,
    /// Sends and receives (the default).
    #[default]
    Publisher,
    /// Receives only.
    Subscriber,
    /// A server: uses the REST API for any session.
    Server,
}

impl Role {
    /// The role's name as written in tokens and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
            Role::Server => "server",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}' (expected moderator, publisher, subscriber or server)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "moderator" => Ok(Role::Moderator),
            "publisher" => Ok(Role::Publisher),
            "subscriber" => Ok(Role::Subscriber),
            "server" => Ok(Role::Server),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// Who a connection is, as everyone in the session sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Assigned by the relay.
    pub id: ConnectionId,
    /// Display name (from the token, else from `Hello`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Connection data from the token (≤ 1000 characters), fixed for the connection.
    pub data: String,
    /// When it joined, in milliseconds since the Unix epoch.
    pub joined_at: u64,
}

/// Lets a client that lost its connection come back as the same connection (within the
/// relay's grace window). Opaque to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTicket {
    /// The connection to resume.
    pub connection: ConnectionId,
    /// A secret only the relay and that client know.
    pub secret: [u8; 16],
}

/// The first message of a connection, on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u16,
    /// The session to join (created on first join).
    pub session: SessionId,
    /// A token (JWT) from the relay's operator; none for relays in open mode.
    pub token: Option<String>,
    /// A display name, when the token has none.
    pub name: Option<String>,
    /// Resume an earlier connection.
    pub resume: Option<ResumeTicket>,
    /// Whether signals to everyone reach this connection (true, as in Vonage). A connection
    /// that only sends — a script, a sensor — turns it off; signals addressed to it, and
    /// presence, still reach it.
    pub receive_broadcasts: bool,
    /// On resume: the last `seq` received from each sender, so the relay sends only what
    /// is newer. Empty on a first join.
    pub seen: Vec<Seen>,
}

/// The last signal a resuming client received from one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The sender (`None`: the relay).
    pub from: Option<ConnectionId>,
    /// Its last `seq` received.
    pub seq: u64,
}

/// The relay's answer to an accepted `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// This connection.
    pub me: ConnectionInfo,
    /// Everyone else in the session at the moment of joining.
    pub peers: Vec<ConnectionInfo>,
    /// The limits the relay enforces.
    pub limits: Limits,
    /// For coming back after a network failure.
    pub resume: ResumeTicket,
    /// The highest `seq` of this sender the relay has taken (non-zero only on resume).
    pub accepted_up_to: u64,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseCode {
    /// The `Hello` is malformed (e.g. a bad name). 400
    BadRequest,
    /// No token, a token with a bad signature, or one that does not parse. 401
    InvalidToken,
    /// The token has expired. 401
    TokenExpired,
    /// The token is for another session. 403
    WrongSession,
    /// The session holds as many connections as it may. 1027 (Vonage's code)
    SessionFull,
    /// The relay holds as many sessions or connections as it may. 503
    RelayFull,
    /// The client speaks a protocol version the relay does not. 426
    UnsupportedProtocol,
    /// The connection to resume is gone (the grace period ended, or the relay restarted);
    /// join afresh. 410
    ResumeFailed,
}

impl RefuseCode {
    /// The numeric code.
    pub fn code(&self) -> u16 {
        match self {
            RefuseCode::BadRequest => 400,
            RefuseCode::InvalidToken | RefuseCode::TokenExpired => 401,
            RefuseCode::WrongSession => 403,
            RefuseCode::SessionFull => 1027,
            RefuseCode::RelayFull => 503,
            RefuseCode::UnsupportedProtocol => 426,
            RefuseCode::ResumeFailed => 410,
        }
    }
}

/// The relay's answer to a refused `Hello`; the relay closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// What kind of refusal.
    pub code: RefuseCode,
    /// What happened, for people.
    pub message: String,
}

/// Why a connection left a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LeftReason {
    /// It said goodbye (`Leave`, or closed its connection).
    ClientDisconnected,
    /// A moderator or the REST API removed it.
    ForceDisconnected,
    /// Its network went away (timeout, transport error).
    NetworkDisconnected,
    /// It did not read its signals fast enough; its queue overflowed.
    SlowConsumer,
    /// The relay shut down.
    RelayShutdown,
}

impl LeftReason {
    /// The reason's name, as in JSON (`clientDisconnected`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftReason::ClientDisconnected => "clientDisconnected",
            LeftReason::ForceDisconnected => "forceDisconnected",
            LeftReason::NetworkDisconnected => "networkDisconnected",
            LeftReason::SlowConsumer => "slowConsumer",
            LeftReason::RelayShutdown => "relayShutdown",
        }
    }
}

impl fmt::Display for LeftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Client → relay, on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Join a session. The first message, and only once.
    Hello(Hello),
    /// Remove a connection from the session (moderators only).
    Kick {
        /// Who to remove.
        connection: ConnectionId,
    },
    /// Leave the session; the relay closes the connection.
    Leave,
}

/// Relay → client, on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayMessage {
    /// The join succeeded.
    Welcome(Welcome),
    /// The join failed.
    Refused(Refused),
    /// Someone joined the session.
    Joined(ConnectionInfo),
    /// Someone left the session.
    Left {
        /// Who.
        connection: ConnectionId,
        /// Why.
        reason: LeftReason,
    },
    /// The relay has taken every signal of this connection up to and including `up_to`,
    /// except those it sent `Rejected` for (always sent before the `Accepted` that covers them).
    Accepted {
        /// The highest accepted `seq`.
        up_to: u64,
    },
    /// A signal was not sent.
    Rejected {
        /// The signal's `seq`.
        seq: u64,
        /// Why.
        error: SignalError,
    },
    /// A request on the control stream failed (e.g. a `Kick` by a non-moderator).
    Denied {
        /// What happened.
        message: String,
    },
    /// Signals of one sender addressed to this connection were lost while it was away (they
    /// did not fit what the relay keeps for an away member). Sent on the control stream right
    /// after the `Welcome` of a resume, one per sender that lost any.
    Missed {
        /// Whose signals: a connection, or `None` for the relay's own (REST) signals.
        from: Option<ConnectionId>,
        /// The lowest lost `seq` of that sender.
        first: u64,
        /// The highest lost `seq` of that sender.
        last: u64,
        /// How many were lost (at most `last − first + 1`: a sender's signals to others
        /// are not counted).
        count: u64,
    },
    /// The relay is closing this connection, and why: the last message on the control
    /// stream, sent over WebTransport only. Browsers do not report the close code of a
    /// WebTransport session reliably (Chromium reports "Connection lost" for a QUIC-level
    /// close, and can hang a page that reads a stream when the session's own close arrives),
    /// so the relay says it here and then closes the connection at the QUIC level. Native
    /// clients get the code with the QUIC close, and WebSocket clients with the close frame.
    Closing {
        /// A [`CloseCode`]'s number (a code this version does not know is still told).
        code: u32,
        /// The reason text, as the close would carry it.
        reason: String,
    },
}

/// A signal as its sender sends it, on its send stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing<'a> {
    /// The sender's sequence number: 1, 2, 3, … for the life of the client.
    pub seq: u64,
    /// Who it is for.
    pub to: Target,
    /// The type (may be empty).
    #[serde(borrow)]
    pub r#type: Cow<'a, str>,
    /// The data (may be empty).
    #[serde(borrow)]
    pub data: Cow<'a, str>,
}

/// The first frame of each delivery stream: whose signals follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryHeader {
    /// The sender; `None` for the relay itself (REST-sent signals).
    pub from: Option<ConnectionId>,
}

/// A signal as a receiver gets it, on the delivery stream of its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming<'a> {
    /// The sender's `seq`, for gap detection and duplicate removal.
    pub seq: u64,
    /// Whether it was sent to everyone (else to this connection alone or in a list).
    pub to_all: bool,
    /// The type.
    #[serde(borrow)]
    pub r#type: Cow<'a, str>,
    /// The data.
    #[serde(borrow)]
    pub data: Cow<'a, str>,
}

/// An [`Incoming`] as it lies in a frame, its type and data not yet checked as UTF-8 (on the
/// wire a string is its length and its bytes, as a byte string is): for readers that keep
/// the text as slices of the received buffer and check each once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IncomingBytes<'a> {
    /// The sender's `seq`.
    pub seq: u64,
    /// Whether it was sent to everyone.
    pub to_all: bool,
    /// The type's bytes.
    #[serde(borrow)]
    pub r#type: &'a [u8],
    /// The data's bytes.
    #[serde(borrow)]
    pub data: &'a [u8],
}

/// The application close codes of a connection, with the reason text the relay sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// The client left, or the client closed its connection.
    Normal = 0,
    /// A frame did not decode, was too large, or came on the wrong stream.
    ProtocolError = 1,
    /// The join was refused (a `Refused` message came first).
    Refused = 2,
    /// A moderator or the REST API removed the connection.
    Kicked = 3,
    /// The connection did not read its signals fast enough.
    SlowConsumer = 4,
    /// The relay is shutting down.
    RelayShutdown = 5,
    /// The client did not send `Hello` in time.
    HandshakeTimeout = 6,
    /// The client gave up on this connection while dialing (it timed out waiting for the
    /// answer): not a leave. A member it joined or resumed stays away for the grace period,
    /// as after a network failure, so that the client's next attempt can resume it.
    Abandoned = 7,
}

impl CloseCode {
    /// The code from its number.
    pub fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            0 => CloseCode::Normal,
            1 => CloseCode::ProtocolError,
            2 => CloseCode::Refused,
            3 => CloseCode::Kicked,
            4 => CloseCode::SlowConsumer,
            5 => CloseCode::RelayShutdown,
            6 => CloseCode::HandshakeTimeout,
            7 => CloseCode::Abandoned,
            _ => return None,
        })
    }

    /// The code as a QUIC application error code.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The presence reason that goes with a close by this code.
    pub fn left_reason(self) -> LeftReason {
        match self {
            CloseCode::Normal => LeftReason::ClientDisconnected,
            CloseCode::Kicked => LeftReason::ForceDisconnected,
            CloseCode::SlowConsumer => LeftReason::SlowConsumer,
            CloseCode::RelayShutdown => LeftReason::RelayShutdown,
            CloseCode::ProtocolError
            | CloseCode::Refused
            | CloseCode::HandshakeTimeout
            | CloseCode::Abandoned => LeftReason::NetworkDisconnected,
        }
    }
}
