//! # signalbox-client — join a Signalbox session from Rust
//!
//! A [`Client`] is one connection to a relay, joined to one session. Connect with an invite
//! (the one string a relay's operator hands out: address, session, certificate fingerprint,
//! token), then send [`Signal`]s to everyone, one connection or a list, and read
//! [`Event`]s: signals from others (each stamped with its sender by the relay), people
//! joining and leaving, rejections, and the end of the connection.
//!
//! How it maps onto the wire: the client opens one control stream (join, presence, the
//! relay's acceptance notices) and one send stream that carries its signals in order. The
//! relay opens one delivery stream per sender toward this client, so each sender's signals
//! arrive in order, and a slow or lossy sender never holds up another. The client checks
//! every signal against the relay's rules before sending (a bad type fails at once, with the
//! rule that it breaks), and [`Client::send`] returns a [`Receipt`] that resolves when the
//! relay has taken the signal — or tells why it did not.
//!
//! Reliability: when the network fails or the relay restarts, the client reconnects by
//! itself with back-off. Within the relay's grace period it *resumes* as the same
//! connection: peers notice nothing, signals sent to it meanwhile arrive (each sender's in
//! order, none twice), and signals it sent that the relay had not accepted are sent again
//! (the relay drops duplicates). Later, it joins again as a new connection and says so.
//!
//! Trust: with a fingerprint (`fp=` in the invite) the client accepts only the relay whose
//! certificate has that SHA-256 digest, and says so plainly when another answers; without
//! one it checks the certificate against the platform's root certificates.
//!
//! On a LAN nobody needs to type an address: [`discovery::Browser`] lists the relays that
//! announce themselves over mDNS, with the fingerprint to pin.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use signalbox_client::{Client, ConnectOptions, Event, Signal};
//!
//! let options: ConnectOptions = "signalbox://192.168.1.20:4433/lobby?fp=…&token=…".parse()?;
//! let (client, mut events) = Client::connect(options.with_name("robot-1")).await?;
//! client.send(Signal::to_all("chat", "hello")).await?.accepted().await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Signal(s) = event {
//!         println!("{:?} sent {}: {}", s.from, s.r#type, s.data);
//!     }
//! }
//! # Ok(()) }
//! ```

mod client;
pub mod discovery;
mod error;
mod events;
mod link;
mod options;
mod supervisor;
mod tls;

pub use bytestring::ByteString;
pub use client::{Client, Receipt};
pub use error::{ConnectError, NOT_CONNECTED, RequestError, SendError};
pub use events::{Event, Events, ReceivedSignal, Signal};
pub use link::{client_config, client_endpoint, endpoint_for};
pub use options::ConnectOptions;
pub use signalbox_proto as proto;
pub use tls::TlsSetupError;
