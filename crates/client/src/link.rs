//! Dialling the relay: the QUIC connection, the control stream, `Hello`, and the relay's
//! first answer. Used for the first join and for every reconnect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use signalbox_proto::codec::{self, Deframer, MAX_CONTROL_FRAME, Payload};
use signalbox_proto::{
    ClientMessage, CloseCode, ConnectionId, Fingerprint, Hello, PROTOCOL_VERSION, Refused,
    RelayMessage, ResumeTicket, Seen, Welcome,
};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::error::ConnectError;
use crate::options::ConnectOptions;
use crate::tls;

pub(crate) type Frames = FramedRead<quinn::RecvStream, LengthDelimitedCodec>;

/// A delivery stream, read as QUIC hands over what it received and split into frames. A frame
/// that lies whole in the chunk it arrived in is read in place (one that spans chunks is
/// gathered once into a buffer of its own); the reader copies out what it keeps, so an
/// application holding a signal's text never keeps the received datagrams alive.
/// (Through a read buffer, as for the control stream, large frames were copied once into it
/// and again each time it had to grow.)
pub(crate) struct DeliveryFrames {
    recv: quinn::RecvStream,
    deframer: Deframer,
    /// What is left of the last chunk read.
    chunk: Bytes,
    /// An error was returned: nothing more is read (the bytes after it are not frames).
    failed: bool,
}

impl DeliveryFrames {
    pub(crate) fn new(recv: quinn::RecvStream, max_frame: usize) -> Self {
        Self {
            recv,
            deframer: Deframer::new(max_frame),
            chunk: Bytes::new(),
            failed: false,
        }
    }

    /// The next frame's payload, in a buffer of its own (copied out when it was read in
    /// place): `None` when the stream ends between frames; an
    /// error when it fails, ends inside a frame, or a frame is over the limit — and `None`
    /// ever after.
    pub(crate) async fn next(&mut self) -> Option<Result<Bytes, ()>> {
        if self.failed {
            return None;
        }
        loop {
            match self.next_received(|p| p.into_bytes()) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => {}
                Err(()) => return Some(Err(())),
            }
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(()) => return Some(Err(())),
            }
        }
    }

    /// The next frame among what was already received, handed to `f` (read in place when
    /// it lies whole in one chunk, else gathered into a buffer of its own): `Ok(None)` when no
    /// further frame is whole yet (then [`receive`](Self::receive)); an error when a frame is
    /// over the limit, and ever after.
    pub(crate) fn next_received<R>(
        &mut self,
        f: impl FnOnce(Payload<'_>) -> R,
    ) -> Result<Option<R>, ()> {
        if self.failed {
            return Err(());
        }
        if self.chunk.is_empty() {
            return Ok(None);
        }
        // `Ok(None)`: the chunk is used up, inside a frame that the next one continues.
        self.deframer
            .next_payload(&mut self.chunk, f)
            .map_err(|_| self.failed = true)
    }

    /// Waits for what QUIC receives next (at once if some of the last chunk is left):
    /// `false` when the stream ended between frames; an error when it failed or ended
    /// inside a frame. Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn receive(&mut self) -> Result<bool, ()> {
        if self.failed {
            return Err(());
        }
        if !self.chunk.is_empty() {
            return Ok(true);
        }
        // An emptied `Bytes` still holds its buffer (the datagrams received with it):
        // let it go before waiting, however long the sender stays quiet.
        self.chunk = Bytes::new();
        match self.recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => {
                self.chunk = chunk.bytes;
                Ok(true)
            }
            Ok(None) if !self.deframer.is_mid_frame() => Ok(false),
            _ => {
                self.failed = true;
                Err(())
            }
        }
    }
}

/// One QUIC connection to the relay, joined.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) conn: quinn::Connection,
    /// The client's side of the control stream (kick, leave).
    pub(crate) control: tokio::sync::Mutex<quinn::SendStream>,
}

/// How a dial ended.
pub(crate) enum Dialed {
    /// Joined (or resumed): the link, the rest of the control stream, and the welcome.
    Joined(Box<(Link, Frames, Welcome)>),
    /// The relay said no.
    Refused(Refused),
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
    let mut addrs =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_owned(),
                message: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| ConnectError::Resolve {
        host: host.to_owned(),
        message: "no addresses".into(),
    })
}

/// The QUIC transport settings of a client connection to `relay`.
fn transport(
    idle_timeout: Duration,
    keep_alive: Duration,
    relay: IpAddr,
) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(0u32.into());
    // One stream per active sender, and a session holds 3000 at most.
    t.max_concurrent_uni_streams(4096u32.into());
    // What may be received but not yet read on one delivery stream; the relay keeps at least
    // this much of each stream to replay after a resume.
    t.stream_receive_window(signalbox_proto::CLIENT_STREAM_WINDOW.into());
    t.keep_alive_interval(Some(keep_alive));
    t.max_idle_timeout(idle_timeout.try_into().ok());
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(signalbox_proto::ACK_ELICITING_THRESHOLD.into())
        .max_ack_delay(Some(signalbox_proto::MAX_ACK_DELAY));
    t.ack_frequency_config(Some(ack));
    // Datagrams as large as the interface toward the relay carries (see
    // `signalbox_proto::path`): on loopback or a jumbo-frame LAN, several times fewer.
    let bound = signalbox_proto::path::mtu_upper_bound(relay, &signalbox_proto::path::link_mtus());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(bound)
        .minimum_change(signalbox_proto::path::mtu_probe_step(bound));
    t.mtu_discovery_config(Some(mtu));
    t
}

/// The quinn client configuration Signalbox clients use: TLS 1.3 with ALPN `signalbox/1`,
/// pinned to `fingerprint` when given, and the client's transport settings toward the relay
/// at `relay`. For tools that speak the protocol directly (benchmarks, tests, other clients).
pub fn client_config(
    fingerprint: Option<signalbox_proto::Fingerprint>,
    relay: IpAddr,
) -> Result<quinn::ClientConfig, crate::TlsSetupError> {
    let defaults = ConnectOptions::new("", 0, "x".parse().expect("valid"));
    config(fingerprint, tls::Seen::default(), &defaults, relay)
}

fn config(
    fingerprint: Option<signalbox_proto::Fingerprint>,
    seen: tls::Seen,
    options: &ConnectOptions,
    relay: IpAddr,
) -> Result<quinn::ClientConfig, crate::TlsSetupError> {
    let crypto = tls::client_crypto(fingerprint, seen)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport(
        options.idle_timeout,
        options.keep_alive,
        relay,
    )));
    Ok(config)
}

/// A UDP endpoint for talking to `options`' relay (what [`Client::connect`](crate::Client::connect)
/// makes; a caller that makes it first and passes it to
/// [`Client::connect_with`](crate::Client::connect_with) can wait, after giving up on a
/// join, for the endpoint to tell the relay so). Resolving the relay's name is bounded by
/// `connect_timeout`, as a whole connect is.
pub async fn endpoint_for(options: &ConnectOptions) -> Result<quinn::Endpoint, ConnectError> {
    let timeout = options.connect_timeout;
    let remote = tokio::time::timeout(timeout, resolve(&options.host, options.port))
        .await
        .map_err(|_| ConnectError::Timeout {
            address: options.address(),
            seconds: timeout.as_secs(),
        })??;
    let bind: SocketAddr = if remote.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    client_endpoint(bind).map_err(ConnectError::Socket)
}

/// What a client asks of the kernel for its UDP socket's buffers: a client endpoint may
/// carry many connections (the benchmark's, a bridge's), and the default (about 208 KiB on
/// Linux) drops datagrams when they arrive faster than it reads them. The kernel grants at
/// most `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER: usize = 4 << 20;

/// A client QUIC endpoint bound to `bind`, with large UDP buffers, accepting datagrams up to
/// [`MAX_UDP_PAYLOAD`](signalbox_proto::path::MAX_UDP_PAYLOAD) (what
/// [`Client::connect`](crate::Client::connect) uses; pass it to
/// [`Client::connect_with`](crate::Client::connect_with) to share one socket among many
/// clients).
pub fn client_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let sock = socket2::SockRef::from(&socket);
    // A smaller buffer than asked for is still a working socket.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
    let mut endpoint = quinn::EndpointConfig::default();
    endpoint
        .max_udp_payload_size(signalbox_proto::path::MAX_UDP_PAYLOAD)
        .map_err(std::io::Error::other)?;
    quinn::Endpoint::new(endpoint, None, socket, runtime)
}

/// A connection being dialed. If the dial ends without handing it on — timed out by the
/// caller, stopped, or failed — it is closed with the code it was made with:
/// - a first join closes with code 0: the client gave up on purpose, and a relay that had
///   already admitted it says at once that it left (`clientDisconnected`), not after its
///   timeouts;
/// - a resume closes with [`CloseCode::Abandoned`]: code 0 would tell the relay that the
///   client left on purpose, and a relay that had just resumed the member on it would end the
///   member for good.
struct Abandon(Option<quinn::Connection>, CloseCode);

impl Abandon {
    fn keep(mut self) -> quinn::Connection {
        self.0.take().expect("kept once")
    }
}

impl std::ops::Deref for Abandon {
    type Target = quinn::Connection;
    fn deref(&self) -> &quinn::Connection {
        self.0.as_ref().expect("not yet kept")
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.close(self.1.as_u32().into(), b"dial abandoned");
        }
    }
}

/// Connects, sends `Hello` (resuming `resume` when given) and reads the relay's answer.
pub(crate) async fn dial(
    endpoint: &quinn::Endpoint,
    options: &ConnectOptions,
    resume: Option<ResumeTicket>,
    seen: Vec<(Option<ConnectionId>, u64)>,
) -> Result<Dialed, ConnectError> {
    let address = options.address();
    let unreachable = |e: &dyn std::fmt::Display| ConnectError::Unreachable {
        address: address.clone(),
        message: e.to_string(),
    };
    let remote = resolve(&options.host, options.port).await?;
    let pinned = tls::Seen::default();
    let config = config(options.fingerprint, pinned.clone(), options, remote.ip())?;
    let server_name =
        if options.host.parse::<std::net::IpAddr>().is_ok() || options.fingerprint.is_none() {
            options.host.clone()
        } else {
            // Pinned: the name is not checked, but must be a valid DNS name for TLS.
            "signalbox.local".to_owned()
        };
    // A handshake whose packets were lost is dialed anew (see `handshake_attempt`); the
    // caller's `connect_timeout` bounds the attempts.
    let handshake = async {
        loop {
            let connecting = endpoint
                .connect_with(config.clone(), remote, &server_name)
                .map_err(|e| unreachable(&e))?;
            // Not below 100 ms: a zero would dial in a tight loop.
            let attempt = options.handshake_attempt.max(Duration::from_millis(100));
            match tokio::time::timeout(attempt, connecting).await {
                Ok(done) => return Ok::<_, ConnectError>(done),
                Err(_) => {
                    tracing::debug!(%address, "QUIC handshake not done in time; dialing anew")
                }
            }
        }
    };
    let conn = match handshake.await? {
        Ok(c) => Abandon(
            Some(c),
            if resume.is_some() {
                CloseCode::Abandoned
            } else {
                CloseCode::Normal
            },
        ),
        Err(e) => {
            let actual = pinned.lock().ok().and_then(|mut s| s.take());
            if let (Some(expected), Some(actual)) = (options.fingerprint, actual)
                && expected != actual
            {
                return Err(ConnectError::FingerprintMismatch {
                    address,
                    expected,
                    actual,
                });
            }
            return Err(unreachable(&e));
        }
    };
    // A token made for one relay is shown to no other: a look-alike relay on the LAN (its
    // own certificate) never sees it.
    if let Some(audience) = options
        .token
        .as_deref()
        .and_then(signalbox_proto::token::Claims::peek)
        .and_then(|c| c.aud)
        .and_then(|aud| aud.parse::<Fingerprint>().ok())
    {
        let actual = conn
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|certs| certs.first().map(|c| Fingerprint::of_der(c)));
        if actual != Some(audience) {
            conn.close(
                CloseCode::Normal.as_u32().into(),
                b"token for another relay",
            );
            let _ = conn.keep();
            return Err(match actual {
                Some(actual) => ConnectError::WrongRelay {
                    address,
                    audience,
                    actual,
                },
                None => ConnectError::Protocol("the relay presented no certificate".into()),
            });
        }
    }
    let (mut control, recv) = conn.open_bi().await.map_err(|e| unreachable(&e))?;
    let hello = ClientMessage::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        session: options.session.clone(),
        token: options.token.clone(),
        name: options.name.clone(),
        resume,
        receive_broadcasts: options.receive_broadcasts,
        seen: seen
            .into_iter()
            .map(|(from, seq)| Seen { from, seq })
            .collect(),
    });
    let frame = codec::frame(&hello, MAX_CONTROL_FRAME)
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    control
        .write_chunk(frame.freeze())
        .await
        .map_err(|e| unreachable(&e))?;
    let mut frames = FramedRead::new(recv, codec::codec(MAX_CONTROL_FRAME));
    let first = match frames.next().await {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(ConnectError::Protocol(format!("control stream: {e}"))),
        None => {
            return Err(match conn.close_reason() {
                Some(e) => unreachable(&e),
                None => ConnectError::Protocol("the relay closed the control stream".into()),
            });
        }
    };
    match codec::decode::<RelayMessage>(&first) {
        Ok(RelayMessage::Welcome(w)) => Ok(Dialed::Joined(Box::new((
            Link {
                conn: conn.keep(),
                control: tokio::sync::Mutex::new(control),
            },
            frames,
            w,
        )))),
        Ok(RelayMessage::Refused(r)) => {
            conn.close(CloseCode::Normal.as_u32().into(), b"refused");
            Ok(Dialed::Refused(r))
        }
        Ok(other) => Err(ConnectError::Protocol(format!(
            "expected Welcome, got {other:?}"
        ))),
        Err(e) => Err(ConnectError::Protocol(e.to_string())),
    }
}
