//! # signalbox-relay — the Signalbox relay, as a library
//!
//! A relay holds *sessions*. Clients connect over QUIC, join a session with a token (or
//! without one, when the relay is open), and send *signals* that the relay stamps with the
//! sender's connection id and forwards to everyone, to one connection, or to a list. The
//! daemon (`signalbox relay`), the desktop app's "host a relay" button and the tests all run
//! the relay the same way: [`Relay::spawn`] returns a [`RelayHandle`], and every task the
//! relay starts ends with that handle.
//!
//! The model, in brief:
//!
//! - **Rules apart from I/O.** The `engine` module holds the decisions — whether a signal may
//!   go, which seqs are new, what a route keeps for a resume, whom a spent budget closes,
//!   when presence news goes out, who is on other nodes — as plain state with time passed
//!   in, tested on its own. `transport` (QUIC, WebTransport, WebSockets: connection tasks
//!   and delivery routes), `http` (REST, the Vonage surface, the browser SDK) and `cluster`
//!   (NATS) move bytes and timers around it.
//! - **One task per connection** runs the join handshake and then a `select!` loop over the
//!   control stream (presence, acceptance notices, kicks), the client's one send stream, and
//!   cancellation.
//! - **Fan-out without waiting.** A signal is validated, encoded once, and queued to each
//!   receiver's *route* for that sender: a bounded queue and a task that owns one QUIC stream
//!   from that sender to that receiver, writing everything queued as one chunk. Streams open
//!   on a sender's first signal and close when idle. QUIC keeps bytes ordered within a stream
//!   and independent across streams, so each sender's signals stay in order and no sender's
//!   lost packet delays another's.
//! - **Bounded everything.** Connections (a semaphore), sessions, members per session, bytes
//!   and signals waiting per receiver, control frames per connection, and the signal bytes
//!   held for delivery per session and in all (`budget`). A sender spends from two buckets —
//!   signals, and bytes × receivers — that stay with its token across reconnects. A receiver
//!   that cannot keep up is disconnected as `slowConsumer`; the sender and everyone else
//!   carry on.
//! - **Browsers** are clients too: the HTTP listener serves a JavaScript SDK with OpenTok's
//!   signaling API and a web client, and a browser connects by WebTransport on the QUIC port
//!   (ALPN `h3`, a short-lived certificate it accepts by hash) or by a WebSocket on the HTTP
//!   listener. Either way the connection task sees a *link* carrying the same
//!   streams and frames, so the rules are the same.
//! - **Trust** comes from a self-signed certificate made on first start (clients pin its
//!   SHA-256 fingerprint) and HS256 tokens signed with a secret in the data directory.
//! - **Several nodes, one session** when `cluster` names a NATS server: each node serves its
//!   own clients and exchanges signals, presence and heartbeats with the others over NATS,
//!   every message sealed with a key the nodes share and checked like a client's input (the
//!   `cluster` module's notes give the subjects and what is promised). The rest of the relay
//!   asks one `Others` about members elsewhere, and a lone relay's answer is "nobody": no
//!   connection task or REST handler asks whether there is a cluster.
//! - **Found on the LAN** when `announce` is on: an mDNS / DNS-SD record
//!   (`_signalbox._udp.local.`) carries its name, fingerprint, mode and published sessions,
//!   and is withdrawn on shutdown.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use signalbox_relay::{Relay, RelayConfig};
//!
//! let dir = std::env::temp_dir().join("signalbox-example");
//! let relay = Relay::spawn(RelayConfig { open: true, ..RelayConfig::local(&dir) }).await?;
//! println!("QUIC on {}, fingerprint {}", relay.quic_addr(), relay.fingerprint());
//! let invite = relay.invite("lobby".parse()?, None);
//! println!("invite: {invite}");
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

mod admission;
#[cfg(feature = "mimalloc")]
pub mod allocator;
mod announce;
mod budget;
mod cluster;
mod config;
mod engine;
mod files;
mod frames;
mod http;
mod metrics;
pub mod net;
pub mod paths;
mod registry;
pub mod runtime;
mod server;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod tokens;
mod transport;

pub use announce::AnnounceError;
#[doc(hidden)]
pub use cluster::wire::forge as cluster_forge;
pub use cluster::{ClusterError, ClusterStatus};
pub use config::{ConfigError, Congestion, RelayConfig};
pub use files::FileError;
pub use http::vonage;
pub use server::{Relay, RelayError, RelayHandle};
pub use tokens::{TokenKeys, TokenRequest};
pub use transport::identity::{Identity, IdentityError};
pub use transport::webtransport::WebCertError;
pub use transport::{ServerConfigs, TransportError, endpoint_config, server_config, udp_socket};
