//! The address pool: an IPv4 CIDR cut into /30s, one per sandbox.

use std::net::Ipv4Addr;

use crate::NetError;

/// An IPv4 network, e.g. `10.203.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

/// The addresses of one slot (a /30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAddrs {
    /// The host end of the veth (the sandbox's gateway), `.1`.
    pub host: Ipv4Addr,
    /// The sandbox's address, `.2`.
    pub sandbox: Ipv4Addr,
}

impl Cidr {
    /// The default pool of a daemon's sandboxes, 10.203.0.0/16.
    pub const DAEMON_DEFAULT: Cidr = Cidr {
        base: 0x0acb_0000,
        prefix: 16,
    };
    /// The default pool of `corral run --net open`, 10.204.0.0/16.
    pub const RUN_DEFAULT: Cidr = Cidr {
        base: 0x0acc_0000,
        prefix: 16,
    };

    /// Parses `a.b.c.d/len`. The address must be the network's first one.
    pub fn parse(s: &str) -> Result<Cidr, NetError> {
        let bad = |why: &str| NetError::Config(format!("{s:?} is not a usable IPv4 CIDR: {why}"));
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/len"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("bad address"))?;
        let prefix: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        if prefix > 32 {
            return Err(bad("prefix length above 32"));
        }
        let base = u32::from(ip);
        if base & !mask(prefix) != 0 {
            return Err(bad("host bits are set; use the network's first address"));
        }
        Ok(Cidr { base, prefix })
    }

    /// Parses a pool CIDR: between /8 and /30 (at least one sandbox, at most 4194304).
    pub fn parse_pool(s: &str) -> Result<Cidr, NetError> {
        let c = Cidr::parse(s)?;
        if !(8..=30).contains(&c.prefix) {
            return Err(NetError::Config(format!(
                "the pool {s} must be between /8 and /30 (one /30 per sandbox)"
            )));
        }
        Ok(c)
    }

    /// How many /30 slots the network holds.
    pub fn slots(&self) -> u32 {
        1u32 << (30 - self.prefix.min(30))
    }

    /// The addresses of slot `n` (n < slots()).
    pub fn slot(&self, n: u32) -> SlotAddrs {
        let net = self.base + n * 4;
        SlotAddrs {
            host: Ipv4Addr::from(net + 1),
            sandbox: Ipv4Addr::from(net + 2),
        }
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_slash_30s() {
        let c = Cidr::parse_pool("10.203.0.0/16").unwrap();
        assert_eq!(c.slots(), 16384);
        assert_eq!(c.slot(0).host, Ipv4Addr::new(10, 203, 0, 1));
        assert_eq!(c.slot(0).sandbox, Ipv4Addr::new(10, 203, 0, 2));
        assert_eq!(c.slot(65).sandbox, Ipv4Addr::new(10, 203, 1, 6));
        assert_eq!(c.slot(16383).sandbox, Ipv4Addr::new(10, 203, 255, 254));
        assert!(c.contains(Ipv4Addr::new(10, 203, 9, 9)));
        assert!(!c.contains(Ipv4Addr::new(10, 204, 0, 1)));
        assert_eq!(c.to_string(), "10.203.0.0/16");
        assert_eq!(Cidr::DAEMON_DEFAULT, c);
        assert_eq!(Cidr::RUN_DEFAULT.to_string(), crate::DEFAULT_RUN_CIDR);
    }

    #[test]
    fn rejects_bad_pools() {
        for s in [
            "10.203.0.1/16",
            "10.0.0.0/31",
            "10.0.0.0/7",
            "10.0.0.0",
            "x/16",
            "1.2.3.4/33",
        ] {
            assert!(Cidr::parse_pool(s).is_err(), "{s}");
        }
        assert!(Cidr::parse("169.254.0.0/16").is_ok());
        assert!(Cidr::parse("0.0.0.0/0").is_ok());
    }
}
