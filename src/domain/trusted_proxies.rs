//! The proxies whose forwarding headers are believed (`LEAVEMSG_TRUSTED_PROXIES`).

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The networks whose forwarding headers are believed (`LEAVEMSG_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs or single addresses; blank means none.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = IpNet::from_str(item)
                .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                .map_err(|_| {
                    format!("{item:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address")
                })?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_and_reject() {
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let list = TrustedProxies::parse(" 10.0.0.0/8 , 192.168.1.1 ,").unwrap();
        assert!(list.contains("192.168.1.1".parse().unwrap()));
        assert!(list.contains("10.2.3.4".parse().unwrap()));
        assert!(!list.contains("192.168.1.2".parse().unwrap()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.example").is_err());
    }
}
