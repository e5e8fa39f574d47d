//! The relay's transports: QUIC (and WebTransport on the same port), and WebSockets from the
//! HTTP listener, each presented to the connection task as a [`link::Link`].
//!
//! - this module: the QUIC endpoint's TLS and transport settings and its UDP socket;
//! - [`identity`]: the self-signed certificate clients pin;
//! - [`webtransport`] and [`ws`]: browsers' two ways in;
//! - [`link`]: one connection's streams, whatever carries them;
//! - [`connection`]: a connection's task — the join handshake, then its control stream and
//!   its signals, each signal checked and sequenced by the engine;
//! - [`delivery`]: the routes that carry one sender's signals to each receiver's stream,
//!   each fed by a [`queue`].

pub(crate) mod connection;
pub(crate) mod delivery;
pub(crate) mod identity;
pub(crate) mod link;
pub(crate) mod queue;
pub(crate) mod webtransport;
pub(crate) mod ws;

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use signalbox_proto::ALPN;

use crate::config::{Congestion, RelayConfig};
use crate::transport::identity::Identity;
use crate::transport::webtransport::{CertChooser, WebCert};

/// The TLS or QUIC settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The certificate or key is not usable by TLS.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS settings are not usable by QUIC.
    #[error("QUIC TLS: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A timeout is out of QUIC's range.
    #[error("idle timeout out of range: {0}")]
    Idle(#[from] quinn::VarIntBoundsExceeded),
}

/// The relay's quinn server configurations (TLS 1.3 with ALPN `signalbox/1`, the relay's
/// transport limits). Public for tools that stand a bare QUIC server beside the relay with
/// the same settings (the benchmark's floor).
pub fn server_config(
    identity: &Identity,
    config: &RelayConfig,
) -> Result<ServerConfigs, TransportError> {
    let provider = Arc::new(signalbox_proto::crypto::provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
    quic(tls, vec![ALPN.to_vec()], config, 1, 1)
}

/// The relay's own configuration: [`server_config`]'s, and WebTransport for browsers (ALPN
/// `h3` with the short-lived certificate `web`).
pub(crate) fn relay_server_config(
    identity: &Identity,
    config: &RelayConfig,
    web: Arc<ArcSwap<WebCert>>,
) -> Result<ServerConfigs, TransportError> {
    let provider = Arc::new(signalbox_proto::crypto::provider());
    let key = provider
        .key_provider
        .load_private_key(identity.key.clone_key())?;
    let chooser = CertChooser {
        identity: Arc::new(CertifiedKey::new(identity.certs.clone(), key)),
        web,
    };
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(chooser));
    // A browser's HTTP/3 layer takes a bidirectional stream (the CONNECT) and three
    // unidirectional ones (control, QPACK) besides the protocol's two; a native client that
    // opens more than its two is closed by the connection task.
    quic(tls, vec![ALPN.to_vec(), b"h3".to_vec()], config, 2, 4)
}

fn quic(
    mut tls: rustls::ServerConfig,
    alpn: Vec<Vec<u8>>,
    config: &RelayConfig,
    bidi: u32,
    uni: u32,
) -> Result<ServerConfigs, TransportError> {
    tls.alpn_protocols = alpn;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    // One configuration cloned, so both share its keys (address-validation tokens).
    let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let links = signalbox_proto::path::link_mtus();
    let for_path = |loopback: bool| -> Result<Arc<quinn::ServerConfig>, TransportError> {
        let mut t = quinn::TransportConfig::default();
        // A client opens exactly one control stream and one send stream.
        t.max_concurrent_bidi_streams(bidi.into());
        t.max_concurrent_uni_streams(uni.into());
        t.max_idle_timeout(Some(config.idle_timeout.try_into()?));
        t.keep_alive_interval(Some(config.keep_alive));
        // What the relay may have in flight toward one client, across all its delivery streams.
        t.send_window(4 << 20);
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(signalbox_proto::ACK_ELICITING_THRESHOLD.into())
            .max_ack_delay(Some(signalbox_proto::MAX_ACK_DELAY));
        t.ack_frequency_config(Some(ack));
        t.congestion_controller_factory(match config.congestion {
            Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
            Congestion::NewReno => Arc::new(quinn::congestion::NewRenoConfig::default()),
            Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
        });
        let bound = signalbox_proto::path::interface_upper_bound(loopback, &links);
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(bound)
            .minimum_change(signalbox_proto::path::mtu_probe_step(bound));
        t.mtu_discovery_config(Some(mtu));
        let mut server = server.clone();
        server.transport_config(Arc::new(t));
        Ok(Arc::new(server))
    };
    Ok(ServerConfigs {
        loopback: for_path(true)?,
        network: for_path(false)?,
    })
}

/// The relay's QUIC server settings for each kind of path: the same TLS and transport
/// settings, with path-MTU discovery probing up to what the interface toward the client
/// carries (see [`signalbox_proto::path`]): loopback, or the machine's other interfaces.
#[derive(Clone)]
pub struct ServerConfigs {
    loopback: Arc<quinn::ServerConfig>,
    network: Arc<quinn::ServerConfig>,
}

impl std::fmt::Debug for ServerConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfigs").finish_non_exhaustive()
    }
}

impl ServerConfigs {
    /// The settings for a connection from `peer` (for [`quinn::Incoming::accept_with`]).
    pub fn for_peer(&self, peer: std::net::IpAddr) -> Arc<quinn::ServerConfig> {
        if peer.to_canonical().is_loopback() {
            self.loopback.clone()
        } else {
            self.network.clone()
        }
    }

    /// The endpoint's own settings, for what is not accepted through [`Self::for_peer`].
    pub fn endpoint_default(&self) -> quinn::ServerConfig {
        (*self.network).clone()
    }
}

/// The relay's endpoint settings: `reset`'s stateless-reset key (a random one if `None`),
/// datagrams accepted up to [`MAX_UDP_PAYLOAD`](signalbox_proto::path::MAX_UDP_PAYLOAD)
/// (quinn's default is Ethernet's 1 472 bytes, which would stop clients' path-MTU discovery
/// there), and connection IDs of eight random bytes (see `cid_generator`).
pub fn endpoint_config(reset: Option<Arc<dyn quinn::crypto::HmacKey>>) -> quinn::EndpointConfig {
    let mut endpoint =
        reset.map_or_else(quinn::EndpointConfig::default, quinn::EndpointConfig::new);
    endpoint
        .max_udp_payload_size(signalbox_proto::path::MAX_UDP_PAYLOAD)
        .expect("within QUIC's range");
    endpoint.cid_generator(cid_generator);
    endpoint
}

/// The relay's connection IDs: eight random bytes.
///
/// quinn's default generator draws three random bytes and fills the other five with a hash
/// of them (to drop stray packets cheaply), so it has 16.7 million IDs. A relay with 3 000
/// members holds about 20 000 of them (several per connection). The ID a QUIC Retry hands a
/// client is not checked against those in use, and quinn routes a packet by the IDs of
/// established connections first: about once per 3 000-client join storm, the client's
/// next Initial went to another member's connection, which dropped it, and the join waited
/// for the client to dial anew ten seconds later. With 64 random bits that chance is gone.
///
/// Random IDs also let a restarted relay tell a client at once that its old connection is
/// gone: the hash's key was drawn anew at each start, so the restarted relay judged the old
/// IDs invalid and dropped their packets unanswered, and the client waited out its idle
/// timeout. Now any unknown ID is answered with a stateless reset (quinn sends at most one
/// per 20 ms), whose key comes from the relay's secret.
pub(crate) fn cid_generator() -> Box<dyn quinn::ConnectionIdGenerator> {
    Box::new(quinn_proto::RandomConnectionIdGenerator::new(8))
}

/// What the relay asks of the kernel for its UDP socket's receive and send buffers. The
/// default (about 208 KiB on Linux) overflows when many connections' packets arrive while
/// the relay is busy: a join storm of 1 000 clients lost about one datagram in ten there,
/// and each loss cost its connection a retransmission timeout. The kernel grants at most
/// `net.core.rmem_max` / `wmem_max`.
pub(crate) const UDP_BUFFER: usize = 4 << 20;

/// Binds the relay's UDP socket with 4 MiB receive and send buffers (as large as the kernel
/// allows). Public, like [`server_config`], for a bare QUIC server beside the relay.
pub fn udp_socket(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    // A smaller buffer than asked for is still a working socket.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    tracing::debug!(
        recv = sock.recv_buffer_size().unwrap_or(0),
        send = sock.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_do_not_repeat_among_as_many_as_a_large_relay_holds() {
        // Ten times the IDs of a 3 000-member relay. Three random bytes (quinn's default)
        // repeat about 1 200 times in 200 000 draws; 64 bits, never in practice.
        let mut generator = cid_generator();
        assert_eq!(generator.cid_len(), 8);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200_000 {
            let cid = generator.generate_cid();
            assert!(seen.insert(cid), "connection ID {cid} drawn twice");
        }
    }
}
