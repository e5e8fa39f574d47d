//! Announcing the relay on the LAN over mDNS / DNS-SD (`_signalbox._udp.local.`), so that the
//! app's join screen and `signalbox discover` find it without anyone typing an address.
//!
//! What is announced is [`Announcement`]'s TXT record (name, fingerprint, protocol, mode,
//! published sessions) with the relay's UDP port and addresses. Which addresses follow the
//! relay's bind: one bound to `0.0.0.0` (or `::`) announces every non-loopback address of the
//! machine, on those interfaces; one bound to a single address announces that one; one bound
//! to loopback announces `127.0.0.1` on loopback only — nobody else could reach it, but
//! programs on the same machine (and tests) can still find it. The announcement is withdrawn
//! when the relay shuts down.

use std::net::{IpAddr, SocketAddr};

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use signalbox_proto::discovery::{Announcement, SERVICE_TYPE};
use signalbox_proto::{Fingerprint, SessionId};

use crate::config::RelayConfig;

/// Why the relay could not announce itself.
#[derive(Debug, thiserror::Error)]
#[error("cannot announce the relay on the LAN: {0}")]
pub struct AnnounceError(String);

/// A running announcement; withdrawn by [`Announcer::withdraw`] (or when dropped).
pub(crate) struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("fullname", &self.fullname)
            .finish()
    }
}

/// The relay's name: the configured one, or this machine's host name.
pub(crate) fn relay_name(config: &RelayConfig) -> String {
    config
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            gethostname::gethostname()
                .to_string_lossy()
                .trim()
                .to_owned()
        })
}

/// The addresses to announce for a relay bound to `listen`, and the interfaces to use.
fn addresses(listen: SocketAddr) -> (Vec<IpAddr>, Vec<IfKind>) {
    let ip = listen.ip();
    if ip.is_loopback() {
        let lo = if ip.is_ipv4() {
            IfKind::LoopbackV4
        } else {
            IfKind::LoopbackV6
        };
        return (vec![ip], vec![lo]);
    }
    if !ip.is_unspecified() {
        return (vec![ip], vec![IfKind::Addr(ip)]);
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| i.ip())
        // A relay on 0.0.0.0 takes IPv4 only; one on `::` takes both (dual-stack).
        .filter(|a| ip.is_ipv6() || a.is_ipv4())
        // Link-local IPv6 addresses need a scope that an announcement cannot carry.
        .filter(|a| match a {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    ips.sort();
    ips.dedup();
    let intfs = ips.iter().map(|a| IfKind::Addr(*a)).collect();
    (ips, intfs)
}

impl Announcer {
    /// Announces the relay listening on `quic_addr`. `Ok(None)` when there is no address to
    /// announce (a machine without a LAN address).
    pub(crate) fn start(
        config: &RelayConfig,
        quic_addr: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Result<Option<Self>, AnnounceError> {
        let mut announcement = Announcement::new(relay_name(config), fingerprint, config.open);
        announcement.sessions = config
            .announce_sessions
            .iter()
            .filter_map(|s| SessionId::new(s.as_str()).ok())
            .collect();
        let (ips, intfs) = addresses(quic_addr);
        if ips.is_empty() {
            tracing::warn!("no LAN address to announce the relay on");
            return Ok(None);
        }
        let err = |e: mdns_sd::Error| AnnounceError(e.to_string());
        let daemon = ServiceDaemon::new_with_port(config.mdns_port).map_err(err)?;
        // Only the interfaces whose addresses are announced.
        daemon.disable_interface(IfKind::All).map_err(err)?;
        daemon.enable_interface(intfs.clone()).map_err(err)?;
        // The instance name must be unique on the link: the name people chose plus a piece of
        // the fingerprint (the TXT record carries the name itself).
        let hex = fingerprint.to_string();
        let instance = format!("{} {}", announcement.name, &hex[..8]);
        let host = format!("signalbox-{}.local.", &hex[..12]);
        let txt = announcement.to_txt();
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            ips.as_slice(),
            quic_addr.port(),
            txt.as_slice(),
        )
        .map_err(err)?;
        info.set_interfaces(intfs);
        let fullname = info.get_fullname().to_owned();
        daemon.register(info).map_err(err)?;
        tracing::info!(name = %announcement.name, addresses = ?ips, "announcing the relay on the LAN");
        Ok(Some(Self { daemon, fullname }))
    }

    /// Withdraws the announcement (a goodbye packet, so browsers drop it at once) and stops
    /// the mDNS responder.
    pub(crate) async fn withdraw(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), done.recv_async()).await;
        }
        // Dropping `self` shuts the daemon down.
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}
