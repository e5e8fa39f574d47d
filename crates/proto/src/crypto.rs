//! The TLS crypto both ends use: ring's, with AES-128-GCM first.
//!
//! rustls lists its TLS 1.3 suites as AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305, and a
//! server follows the client's order, so a Signalbox client and relay used AES-256-GCM. Every
//! QUIC packet is sealed with the suite's cipher: on the relay's 8 KiB rows encryption was
//! about a fifth of its time, and AES-128 runs ten rounds where AES-256 runs fourteen. In
//! alternated benchmark pairs, AES-128-GCM took 3–6 % off the relay's CPU per delivery on most
//! 8 KiB rows. AES-128-GCM is the suite TLS 1.3 requires every implementation to have, the
//! one QUIC's Initial packets use, and the one Go and browsers put first on processors with
//! AES instructions. Nothing is dropped: a peer that prefers another suite still gets it.

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

/// ring's provider, its cipher suites reordered so AES-128-GCM comes first (TLS 1.3's, then
/// TLS 1.2's, each in ring's order otherwise).
pub fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    // A stable sort on (TLS 1.2?, not AES-128-GCM?): TLS 1.3's suites stay first, and the
    // others keep their order.
    provider.cipher_suites.sort_by_key(|s| {
        let aes_128_gcm = matches!(
            s.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (s.version() != &rustls::version::TLS13, !aes_128_gcm)
    });
    provider
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_gcm_comes_first_and_no_suite_is_dropped() {
        let ours: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours[0], CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut theirs: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(theirs[0], CipherSuite::TLS13_AES_256_GCM_SHA384);
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        theirs.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, theirs);
        // TLS 1.3's suites still come before TLS 1.2's.
        let v13 = provider()
            .cipher_suites
            .iter()
            .take_while(|s| s.version() == &rustls::version::TLS13)
            .count();
        assert_eq!(v13, 3);
    }
}
