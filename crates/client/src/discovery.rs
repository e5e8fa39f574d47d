//! Finding relays on the LAN: a browser for the `_signalbox._udp.local.` mDNS / DNS-SD
//! service that relays announce (`signalbox relay --announce`, the app's host panel).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use signalbox_client::discovery::{Browser, BrowseOptions, Discovery};
//!
//! let mut browser = Browser::start(&BrowseOptions::default())?;
//! while let Some(found) = browser.next().await {
//!     if let Discovery::Found(relay) = found {
//!         println!("{} at {} ({})", relay.announcement.name, relay.address(), relay.announcement.fingerprint.short());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What a browser reports is only what the LAN claims: anyone can announce any name. The
//! fingerprint it carries is pinned when joining (so the relay must hold that certificate),
//! and [`signalbox_proto::discovery::KnownRelays`] tells whether a name shows up with the
//! fingerprint seen the first time.

use std::net::{IpAddr, SocketAddr};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
use signalbox_proto::SessionId;
use signalbox_proto::discovery::{Announcement, SERVICE_TYPE};

use crate::ConnectOptions;

/// How to browse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowseOptions {
    /// The UDP port of mDNS (5353; relays announcing on another port are found on that one).
    pub mdns_port: u16,
    /// Browse on loopback only (relays announced by this machine's loopback-bound relays;
    /// tests), instead of on every interface.
    pub loopback_only: bool,
}

impl Default for BrowseOptions {
    fn default() -> Self {
        Self {
            mdns_port: 5353,
            loopback_only: false,
        }
    }
}

/// A relay found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyRelay {
    /// Its DNS-SD instance name (stable while it runs; the key of [`Discovery::Gone`]).
    pub instance: String,
    /// What it says about itself.
    pub announcement: Announcement,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// Its UDP port.
    pub port: u16,
}

impl NearbyRelay {
    /// The address to dial: the first announced one (IPv4 before IPv6).
    pub fn address(&self) -> SocketAddr {
        let ip = self
            .addresses
            .first()
            .copied()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, self.port)
    }

    /// Options to join `session` on it, with its announced fingerprint pinned.
    pub fn connect_options(&self, session: SessionId) -> ConnectOptions {
        let address = self.address();
        let mut options = ConnectOptions::new(address.ip().to_string(), address.port(), session);
        options.fingerprint = Some(self.announcement.fingerprint);
        options
    }
}

/// What a browser sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// A relay announced itself (or changed what it announces).
    Found(NearbyRelay),
    /// A relay withdrew its announcement (or its records expired).
    Gone {
        /// Its instance name.
        instance: String,
    },
}

/// Why browsing could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot browse the LAN for relays: {0}")]
pub struct DiscoveryError(String);

/// A running browse for relays; stops when dropped.
pub struct Browser {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts browsing.
    pub fn start(options: &BrowseOptions) -> Result<Self, DiscoveryError> {
        let err = |e: mdns_sd::Error| DiscoveryError(e.to_string());
        let daemon = ServiceDaemon::new_with_port(options.mdns_port).map_err(err)?;
        if options.loopback_only {
            daemon.disable_interface(IfKind::All).map_err(err)?;
            daemon.enable_interface(IfKind::LoopbackV4).map_err(err)?;
        }
        let events = daemon.browse(SERVICE_TYPE).map_err(err)?;
        Ok(Self { daemon, events })
    }

    /// The next relay found or gone; `None` once browsing has stopped. Announcements that do
    /// not parse (another program using the service type, a newer relay's odd record) are
    /// skipped with a log line.
    pub async fn next(&mut self) -> Option<Discovery> {
        loop {
            match self.events.recv_async().await.ok()? {
                ServiceEvent::ServiceResolved(service) => {
                    let txt = service
                        .txt_properties
                        .iter()
                        .map(|p| (p.key(), p.val_str()));
                    let announcement = match Announcement::from_txt(txt) {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::debug!(instance = %service.fullname, error = %e, "skipping an announcement");
                            continue;
                        }
                    };
                    let mut addresses: Vec<IpAddr> =
                        service.addresses.iter().map(|a| a.to_ip_addr()).collect();
                    addresses.sort_by_key(|a| (a.is_ipv6(), a.is_loopback(), *a));
                    return Some(Discovery::Found(NearbyRelay {
                        instance: service.fullname.clone(),
                        announcement,
                        addresses,
                        port: service.port,
                    }));
                }
                ServiceEvent::ServiceRemoved(_, instance) => {
                    return Some(Discovery::Gone { instance });
                }
                _ => {}
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        let _ = self.daemon.shutdown();
    }
}
