//! IP prefixes (`10.1.0.0/16`, `2001:db8::/32`).

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

/// An address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Prefix {
    /// The prefix of `len` bits containing `addr`; `None` if `len` is too long.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then(|| Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// Everything of one family: `0.0.0.0/0` or `::/0`.
    pub fn any(v6: bool) -> Self {
        let addr = if v6 {
            IpAddr::from([0u16; 8])
        } else {
            IpAddr::from([0u8; 4])
        };
        Prefix { addr, len: 0 }
    }

    /// Whether every address of `other` is inside (same family).
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(&other.addr)
    }

    /// Whether `ip` is inside.
    #[inline(always)]
    pub fn contains(&self, ip: &IpAddr) -> bool {
        // Masks compared as integers: this runs for every rule a packet
        // meets in the SPD.
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(*a) & m == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(*a) & m == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IP prefix (want ADDRESS/LENGTH, e.g. 10.1.0.0/16)");
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        Prefix::new(addr, len).ok_or_else(|| format!("{s:?}: prefix length {len} exceeds {max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_contains_its_own_network_and_not_its_neighbour() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        for len in 0..=32u8 {
            let p = Prefix::new(a, len).unwrap();
            assert!(p.contains(&a), "/{len}");
            if len > 0 {
                let flip = u32::from_be_bytes([10, 1, 2, 3]) ^ (1u32 << (32 - u32::from(len)));
                assert!(!p.contains(&IpAddr::from(flip.to_be_bytes())), "/{len}");
            }
        }
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for len in 0..=128u8 {
            let p = Prefix::new(b, len).unwrap();
            assert!(p.contains(&b), "/{len}");
            if len > 0 {
                let IpAddr::V6(v6) = b else { unreachable!() };
                let flip = u128::from(v6) ^ (1u128 << (128 - u32::from(len)));
                assert!(!p.contains(&IpAddr::from(flip.to_be_bytes())), "/{len}");
            }
        }
    }

    #[test]
    fn parse_and_contain() {
        let p: Prefix = "10.1.2.3/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.contains(&"10.1.200.1".parse().unwrap()));
        assert!(!p.contains(&"10.2.0.1".parse().unwrap()));
        assert!(!p.contains(&"::1".parse().unwrap()));
        let v6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(&"2001:db8:1::9".parse().unwrap()));
        assert!(Prefix::any(false).contains(&"1.2.3.4".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("10.0.0/8".parse::<Prefix>().is_err());
        assert_eq!("192.0.2.1".parse::<Prefix>().unwrap().len, 32);
    }
}
