//! Which address is the visitor's: the socket peer, unless the peer is a proxy we trust.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::domain::TrustedProxies;

/// The client address of a request.
///
/// - A peer outside `trusted` is the client, whatever headers it sends.
/// - Behind a trusted peer, the rightmost X-Forwarded-For hop that is not itself a trusted
///   proxy is the client (hops to its left could have been written by the client); if every
///   hop is trusted, the leftmost one.
/// - A deciding hop that is not an address (`unknown`, garbage) gives the peer: the proxy
///   could not name the client, and nothing else in the request can be believed instead.
/// - X-Real-IP only when the request has no X-Forwarded-For at all (a proxy configured to set
///   X-Real-IP alone); failing that, the peer. A client can always add its own X-Real-IP, so
///   falling back to it whenever the chain is unreadable would let the client choose its
///   address, and with it its per-IP limit.
pub fn resolve(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    if let Some(chain) = forwarded_for {
        let mut leftmost = None;
        for hop in chain.rsplit(',') {
            match parse_hop(hop) {
                Some(ip) if trusted.contains(ip) => leftmost = Some(ip),
                Some(ip) => return ip,
                None if hop.trim().is_empty() => {}
                None => return peer,
            }
        }
        return leftmost.unwrap_or(peer);
    }
    real_ip.and_then(parse_hop).unwrap_or(peer)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]` or `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = IpAddr::from_str(hop)
        .ok()
        .or_else(|| SocketAddr::from_str(hop).ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| IpAddr::from_str(h).ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    // The vendor document's example: peer (remote-host) 10.10.10.6,
    // x-forwarded-for "10.10.10.3, 10.10.10.4", x-real-ip 10.10.10.5.
    const SEED_XFF: &str = "10.10.10.3, 10.10.10.4";
    const SEED_REAL: &str = "10.10.10.5";

    #[test]
    fn seed_headers_from_an_untrusted_peer_are_ignored() {
        let got = resolve(
            ip("10.10.10.6"),
            Some(SEED_XFF),
            Some(SEED_REAL),
            &trusted(""),
        );
        assert_eq!(got, ip("10.10.10.6"));
    }

    #[test]
    fn seed_headers_behind_one_trusted_proxy_give_the_rightmost_hop() {
        let got = resolve(
            ip("10.10.10.6"),
            Some(SEED_XFF),
            Some(SEED_REAL),
            &trusted("10.10.10.6"),
        );
        assert_eq!(got, ip("10.10.10.4"));
    }

    #[test]
    fn seed_headers_behind_two_trusted_proxies_give_the_first_untrusted_hop() {
        let proxies = trusted("10.10.10.6/32, 10.10.10.4/32");
        let got = resolve(ip("10.10.10.6"), Some(SEED_XFF), Some(SEED_REAL), &proxies);
        assert_eq!(got, ip("10.10.10.3"));
    }

    #[test]
    fn all_hops_trusted_gives_the_leftmost() {
        let got = resolve(
            ip("10.10.10.6"),
            Some(SEED_XFF),
            Some(SEED_REAL),
            &trusted("10.10.10.0/24"),
        );
        assert_eq!(got, ip("10.10.10.3"));
    }

    #[test]
    fn without_forwarded_for_the_real_ip_header_is_used() {
        let got = resolve(
            ip("10.10.10.6"),
            None,
            Some(SEED_REAL),
            &trusted("10.10.10.6"),
        );
        assert_eq!(got, ip("10.10.10.5"));
    }

    #[test]
    fn a_garbage_deciding_hop_gives_the_peer_never_the_real_ip_header() {
        let proxies = trusted("10.0.0.0/8");
        // The client writes X-Real-IP itself; the proxy could not name it ("unknown").
        for chain in [
            "unknown",
            "203.0.113.9, bogus",
            "<script>",
            "203.0.113.9, unknown, 10.0.0.2",
        ] {
            let got = resolve(ip("10.0.0.1"), Some(chain), Some("198.51.100.2"), &proxies);
            assert_eq!(got, ip("10.0.0.1"), "{chain}");
        }
        let got = resolve(
            ip("10.0.0.1"),
            Some("<script>"),
            Some("also bogus"),
            &proxies,
        );
        assert_eq!(got, ip("10.0.0.1"));
    }

    #[test]
    fn an_empty_forwarded_for_still_shuts_out_the_real_ip_header() {
        let proxies = trusted("10.0.0.0/8");
        for chain in ["", " ", " , "] {
            let got = resolve(ip("10.0.0.1"), Some(chain), Some("198.51.100.2"), &proxies);
            assert_eq!(got, ip("10.0.0.1"), "{chain:?}");
        }
    }

    #[test]
    fn an_untrusted_hop_right_of_garbage_still_decides() {
        let got = resolve(
            ip("10.0.0.1"),
            Some("unknown, 203.0.113.7"),
            Some("198.51.100.2"),
            &trusted("10.0.0.0/8"),
        );
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn a_spoofed_leftmost_hop_does_not_win() {
        // The client wrote "1.1.1.1"; the trusted proxy appended the real peer 203.0.113.7.
        let got = resolve(
            ip("10.0.0.1"),
            Some("1.1.1.1, 203.0.113.7"),
            None,
            &trusted("10.0.0.0/8"),
        );
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let proxies = trusted("::1, 127.0.0.1");
        assert_eq!(
            resolve(ip("::1"), Some("[2001:db8::5]:443"), None, &proxies),
            ip("2001:db8::5")
        );
        assert_eq!(
            resolve(ip("127.0.0.1"), Some("192.0.2.1:5555"), None, &proxies),
            ip("192.0.2.1")
        );
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), Some("192.0.2.1"), None, &proxies),
            ip("192.0.2.1")
        );
        assert_eq!(
            resolve(ip("::ffff:192.0.2.8"), None, None, &trusted("")),
            ip("192.0.2.8")
        );
    }
}
