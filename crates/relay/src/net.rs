//! The machine's addresses, for invites and for the host panel.

use std::net::{IpAddr, SocketAddr};

/// This machine's non-loopback addresses, IPv4 first (link-local IPv6 left out).
pub fn lan_addresses() -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    addrs.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addrs.dedup();
    addrs
}

/// The host others should use to reach a relay bound to `bound`: its own address when bound
/// to one, else the first LAN address, else loopback.
pub fn reachable_host(bound: SocketAddr) -> String {
    let ip = bound.ip();
    if !ip.is_unspecified() {
        return ip.to_string();
    }
    lan_addresses()
        .into_iter()
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .map(|a| a.to_string())
        .unwrap_or_else(|| if ip.is_ipv4() { "127.0.0.1" } else { "::1" }.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_address_is_used_as_is() {
        assert_eq!(
            reachable_host("127.0.0.1:4433".parse().unwrap()),
            "127.0.0.1"
        );
        assert_eq!(reachable_host("10.1.2.3:4433".parse().unwrap()), "10.1.2.3");
    }

    #[test]
    fn wildcard_picks_a_non_loopback_address_or_loopback() {
        let host = reachable_host("0.0.0.0:4433".parse().unwrap());
        let ip: IpAddr = host.parse().unwrap();
        assert!(ip.is_ipv4());
        assert!(lan_addresses().iter().all(|a| !a.is_loopback()));
    }
}
