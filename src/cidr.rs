//! Networks written as `10.0.0.0/8`, `::1/128` or a bare address, and whether an address
//! is inside one: the allowlists of the listeners and the SDP callbacks.

use std::net::IpAddr;

/// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// Whether `ip` is inside one of `nets`.
pub fn allowed(nets: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    nets.iter().any(|&(net, bits)| match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let nets = [
            parse_cidr("10.1.0.0/16").unwrap(),
            parse_cidr("::1").unwrap(),
        ];
        assert!(allowed(&nets, "10.1.2.3".parse().unwrap()));
        assert!(!allowed(&nets, "10.2.0.1".parse().unwrap()));
        assert!(allowed(&nets, "::1".parse().unwrap()));
        assert!(allowed(&nets, "::ffff:10.1.0.9".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("not a network").is_none());
    }
}
