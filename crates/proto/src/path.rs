//! How large a datagram QUIC may try on the path to a peer.
//!
//! QUIC starts every path at 1 200-byte datagrams and raises its path MTU by probing (path-MTU
//! discovery) up to an upper bound; quinn's default bound, 1 452 bytes, is what Ethernet
//! carries. But the loopback interface carries 64 KiB and a jumbo-frame LAN 9 000 bytes, and
//! each datagram costs its own encryption, headers, acknowledgement and system-call share: an
//! 8 KiB signal in six datagrams costs about twice what it costs in two. So both sides of a
//! Signalbox connection probe up to what the interface toward the peer allows
//! ([`mtu_upper_bound`]), capped at [`MAX_UDP_PAYLOAD`]. A bound the real path does not
//! carry costs only a few lost probes: discovery settles below it, and its black-hole
//! detection falls back if the path shrinks later.
//!
//! [`link_mtus`] is the one function here that asks the system (the interfaces' MTUs, from
//! `/sys/class/net` on Linux; nothing elsewhere, which keeps the Ethernet bound). The rule
//! itself is pure.

use std::net::IpAddr;

/// The largest UDP payload Signalbox endpoints accept, and the highest path MTU they probe
/// for. quinn hands the kernel a batch of datagrams in one segmentation-offload send, which
/// the kernel takes only up to 64 KiB (Signalbox's quinn makes a batch of fewer datagrams
/// when they are large, see `vendor/quinn/VENDORED.md`): at this size a batch is two. On
/// loopback, 32 000 bytes against 6 500 took the relay's CPU per delivery down 7–30 % on
/// the 8 KiB rows and about 15 % on 50→50 targeted 1 KiB; 65 000 gave no more
/// (`bench/results/2026-12-07-datagrams.md`).
pub const MAX_UDP_PAYLOAD: u16 = 32_000;

// A datagram at the cap, with one UDP and one IPv4 header, fits one IP packet's length.
const _: () = assert!(MAX_UDP_PAYLOAD as u32 + 8 + 20 <= 65_535);

/// The bound on paths whose interface is unknown: Ethernet's 1 500 bytes less the IPv6 and
/// UDP headers (quinn's own default).
pub const ETHERNET_UDP_PAYLOAD: u16 = 1_452;

/// The smallest datagram QUIC allows.
const QUIC_MIN: u16 = 1_200;

/// IPv6's header and UDP's: the larger of the two IP headers, so one bound fits both.
const HEADERS: u32 = 40 + 8;

/// One network interface's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkMtu {
    /// Whether it is the loopback interface.
    pub loopback: bool,
    /// Its MTU in bytes (the IP packet, headers included).
    pub mtu: u32,
}

/// The upper bound of path-MTU discovery toward `peer`, given this machine's interfaces: the
/// loopback interface's MTU for a loopback peer (64 KiB if unknown), else the largest MTU of
/// the other interfaces (Ethernet's if none is known), less the headers, within
/// [`ETHERNET_UDP_PAYLOAD`]'s floor of QUIC's 1 200 and [`MAX_UDP_PAYLOAD`].
pub fn mtu_upper_bound(peer: IpAddr, links: &[LinkMtu]) -> u16 {
    interface_upper_bound(peer.to_canonical().is_loopback(), links)
}

/// [`mtu_upper_bound`] for a peer behind the loopback interface, or behind another.
pub fn interface_upper_bound(loopback: bool, links: &[LinkMtu]) -> u16 {
    let largest = links
        .iter()
        .filter(|l| l.loopback == loopback)
        .map(|l| l.mtu)
        .max();
    let payload = match largest {
        Some(mtu) => mtu.saturating_sub(HEADERS),
        None if loopback => u32::from(u16::MAX),
        None => u32::from(ETHERNET_UDP_PAYLOAD),
    };
    u16::try_from(payload)
        .unwrap_or(u16::MAX)
        .clamp(QUIC_MIN, MAX_UDP_PAYLOAD)
}

/// The smallest change path-MTU discovery probes for below `upper_bound` (its binary search
/// stops when the next step is smaller, then probes the bound itself): a tenth of the range
/// above QUIC's 1 200 bytes, at least 20 (quinn's default). Toward a 32 000-byte bound that
/// is four probes (16 600, 24 300, 28 150, then 32 000) instead of a dozen with quinn's
/// default, each a padded datagram of that size: in a join storm of 3 000 clients the
/// default's probes cost the relay about a third of its CPU. Toward Ethernet's bound the
/// search still ends on 1 452.
pub fn mtu_probe_step(upper_bound: u16) -> u16 {
    (upper_bound.saturating_sub(QUIC_MIN) / 10).max(20)
}

/// This machine's interfaces and their MTUs (Linux; empty elsewhere, or if they cannot be
/// read).
pub fn link_mtus() -> Vec<LinkMtu> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let mtu = std::fs::read_to_string(path.join("mtu")).ok()?;
            let kind = std::fs::read_to_string(path.join("type")).unwrap_or_default();
            Some(LinkMtu {
                // ARPHRD_LOOPBACK
                loopback: kind.trim() == "772",
                mtu: mtu.trim().parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: LinkMtu = LinkMtu {
        loopback: true,
        mtu: 65_536,
    };

    fn eth(mtu: u32) -> LinkMtu {
        LinkMtu {
            loopback: false,
            mtu,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_peers_probe_up_to_the_cap() {
        for peer in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(mtu_upper_bound(ip(peer), &[LO, eth(1500)]), MAX_UDP_PAYLOAD);
            // Unknown interfaces: loopback is large everywhere.
            assert_eq!(mtu_upper_bound(ip(peer), &[]), MAX_UDP_PAYLOAD);
        }
        // A loopback interface smaller than the cap bounds it.
        let small = LinkMtu {
            loopback: true,
            mtu: 4_000,
        };
        assert_eq!(mtu_upper_bound(ip("127.0.0.1"), &[small]), 3_952);
    }

    #[test]
    fn other_peers_probe_up_to_the_largest_interface() {
        let peer = ip("192.168.1.20");
        assert_eq!(mtu_upper_bound(peer, &[LO, eth(1500)]), 1_452);
        // A jumbo-frame LAN.
        assert_eq!(mtu_upper_bound(peer, &[LO, eth(1500), eth(9000)]), 8_952);
        assert_eq!(mtu_upper_bound(peer, &[LO, eth(3000)]), 2_952);
        // Unknown: Ethernet's.
        assert_eq!(mtu_upper_bound(peer, &[LO]), ETHERNET_UDP_PAYLOAD);
        assert_eq!(
            mtu_upper_bound(ip("2001:db8::1"), &[]),
            ETHERNET_UDP_PAYLOAD
        );
        // A tunnel smaller than QUIC's minimum still gets QUIC's minimum.
        assert_eq!(mtu_upper_bound(peer, &[eth(1280)]), 1_232);
        assert_eq!(mtu_upper_bound(peer, &[eth(576)]), 1_200);
    }

    #[test]
    fn the_probe_step_is_a_tenth_of_the_range() {
        assert_eq!(mtu_probe_step(MAX_UDP_PAYLOAD), 3_080);
        assert_eq!(mtu_probe_step(ETHERNET_UDP_PAYLOAD), 25);
        assert_eq!(mtu_probe_step(QUIC_MIN), 20);
    }

    #[test]
    fn this_machines_interfaces_are_read() {
        if std::path::Path::new("/sys/class/net/lo").exists() {
            let links = link_mtus();
            assert!(
                links.iter().any(|l| l.loopback && l.mtu >= 1_500),
                "{links:?}"
            );
        }
    }
}
