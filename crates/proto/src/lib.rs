//! # signalbox-proto — the Signalbox wire protocol, without I/O
//!
//! Signalbox clients join a *session* on a *relay* and send *signals* — a short `type` and a
//! string of `data` — to one connection, a list of them, or everyone. This crate is
//! everything about that exchange that can be decided without a socket or a clock: the
//! messages and their encoding, the limits and the validation rules, invite URLs, certificate
//! fingerprints and the claims of join tokens. The relay, the client, the CLI and the desktop
//! app all build on it, so they agree on every rule by construction.
//!
//! The model: a connection is QUIC, with one bidirectional *control* stream (join, presence,
//! acceptance notices), one unidirectional *send* stream per client carrying its signals in
//! `seq` order, and, toward each receiver, one unidirectional *delivery* stream per sender.
//! QUIC orders bytes within a stream and never across streams, so each sender's signals
//! arrive in order while no sender's lost packet ever delays another's. Every stream is a
//! sequence of length-delimited frames ([`codec`]) whose payload is one
//! [postcard](https://docs.rs/postcard)-encoded message ([`messages`]). `crates/proto/README.md`
//! documents the bytes for implementers in other languages.
//!
//! ```
//! use signalbox_proto::{codec, messages::Outgoing, signal::{self, Limits, Target}};
//!
//! let limits = Limits::default();
//! signal::validate_signal("chat", "hello", &Target::All, &limits)?;
//! let msg = Outgoing { seq: 1, to: Target::All, r#type: "chat".into(), data: "hello".into() };
//! let frame = codec::frame(&msg, limits.max_frame_bytes())?;
//! let decoded: Outgoing<'_> = codec::decode(&frame[4..])?;
//! assert_eq!(decoded, msg);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
pub mod crypto;
pub mod discovery;
pub mod fingerprint;
pub mod ids;
pub mod invite;
pub mod messages;
pub mod path;
pub mod signal;
pub mod token;

pub use fingerprint::Fingerprint;
pub use ids::{ConnectionId, SessionId};
pub use invite::Invite;
pub use messages::{
    ACK_ELICITING_THRESHOLD, ALPN, CLIENT_STREAM_WINDOW, ClientMessage, CloseCode, ConnectionInfo,
    DeliveryHeader, Hello, Incoming, IncomingBytes, LeftReason, MAX_ACK_DELAY, Outgoing,
    PROTOCOL_VERSION, RefuseCode, Refused, RelayMessage, ResumeTicket, Role, Seen, Welcome,
};
pub use signal::{Limits, SignalError, Target};
