//! The security policy database: ordered rules whose selectors match an IP
//! packet's addresses, protocol and ports, and whose action protects it
//! with an SA, lets it pass, or discards it. First match wins; a packet no
//! rule matches is discarded.
//!
//! Outbound rules decide what to encrypt. Inbound rules check what came out
//! of an SA (RFC 4301 5.2): a decrypted packet must match an inbound rule
//! that names the SA it arrived on; plaintext arriving from the unprotected
//! side passes only if an inbound rule says bypass.

use std::net::IpAddr;

use espgate_wire::Direction;
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::Ipv6Packet;

use crate::prefix::Prefix;

/// What to do with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Outbound: encrypt with this SA. Inbound: accept only if it came
    /// through it.
    Protect(u32),
    /// Forward as plaintext.
    Bypass,
    /// Drop.
    Discard,
    /// Outbound: drop, and ask the IKE daemon for an SA (an acquire: the
    /// kernel's trap policy). At most one acquire per rule and second
    /// from each worker.
    Trap,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdRule {
    /// Which traffic the rule is for: outbound, plaintext from the
    /// protected side on its way out; inbound, traffic from the unprotected
    /// side, after decryption if it was ESP.
    pub direction: Direction,
    /// Source prefix.
    pub src: Prefix,
    /// Destination prefix.
    pub dst: Prefix,
    /// IP protocol, or any.
    pub protocol: Option<u8>,
    /// Source port range (inclusive), for TCP and UDP.
    pub sport: (u16, u16),
    /// Destination port range (inclusive), for TCP and UDP.
    pub dport: (u16, u16),
    /// The action.
    pub action: Action,
}

/// The fields of a packet rules match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selectors {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol (IPv4) or next header (IPv6).
    pub protocol: u8,
    /// Source port (0 when not TCP/UDP).
    pub sport: u16,
    /// Destination port (0 when not TCP/UDP).
    pub dport: u16,
}

impl Selectors {
    /// Reads the selectors of an IPv4 or IPv6 packet.
    #[inline(always)]
    pub fn of(packet: &[u8]) -> Option<Self> {
        let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match packet.first()? >> 4 {
            4 => {
                let p = Ipv4Packet::new_checked(packet).ok()?;
                let l4 = if p.frag_offset() == 0 {
                    &packet[p.header_len()..usize::from(p.total_len())]
                } else {
                    &[]
                };
                (p.src().into(), p.dst().into(), p.protocol(), l4)
            }
            6 => {
                let p = Ipv6Packet::new_checked(packet).ok()?;
                (
                    p.src().into(),
                    p.dst().into(),
                    p.next_header(),
                    &packet[40..40 + usize::from(p.payload_len())],
                )
            }
            _ => return None,
        };
        let (sport, dport) = match proto {
            protocol::TCP | protocol::UDP if l4.len() >= 4 => (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            ),
            _ => (0, 0),
        };
        Some(Selectors {
            src,
            dst,
            protocol: proto,
            sport,
            dport,
        })
    }
}

impl SpdRule {
    /// Whether `other` selects the same traffic the same way (its action
    /// aside): the rule `spd_put` replaces and `spd_del` removes.
    pub fn same_selectors(&self, other: &SpdRule) -> bool {
        self.direction == other.direction
            && self.src == other.src
            && self.dst == other.dst
            && self.protocol == other.protocol
            && self.sport == other.sport
            && self.dport == other.dport
    }

    /// Whether every packet `other` matches, this rule matches too (same
    /// direction).
    pub fn covers(&self, other: &SpdRule) -> bool {
        let within = |a: (u16, u16), b: (u16, u16)| a.0 <= b.0 && b.1 <= a.1;
        self.direction == other.direction
            && self.src.covers(&other.src)
            && self.dst.covers(&other.dst)
            && (self.protocol.is_none() || self.protocol == other.protocol)
            && within(self.sport, other.sport)
            && within(self.dport, other.dport)
    }

    /// Whether the rule matches.
    #[inline(always)]
    pub fn matches(&self, s: &Selectors) -> bool {
        self.src.contains(&s.src)
            && self.dst.contains(&s.dst)
            && self.protocol.is_none_or(|p| p == s.protocol)
            && (self.sport.0..=self.sport.1).contains(&s.sport)
            && (self.dport.0..=self.dport.1).contains(&s.dport)
    }
}

/// The rules, in order.
#[derive(Debug, Clone, Default)]
pub struct Spd {
    rules: Vec<SpdRule>,
}

impl Spd {
    /// An SPD of these rules (first match wins).
    pub fn new(rules: Vec<SpdRule>) -> Self {
        Spd { rules }
    }

    /// The action of the first `direction` rule matching `s`, or discard.
    #[inline(always)]
    pub fn lookup(&self, direction: Direction, s: &Selectors) -> Action {
        self.rule_for(direction, s)
            .map_or(Action::Discard, |r| r.action)
    }

    /// The first `direction` rule matching `s`, if any: a plain scan,
    /// inlined whole into the worker's path, so the selectors stay in
    /// registers.
    #[inline(always)]
    pub fn rule_for(&self, direction: Direction, s: &Selectors) -> Option<&SpdRule> {
        self.rules
            .iter()
            .find(|r| r.direction == direction && r.matches(s))
    }

    /// The rules.
    pub fn rules(&self) -> &[SpdRule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        dir: Direction,
        src: &str,
        dst: &str,
        proto: Option<u8>,
        dport: (u16, u16),
        action: Action,
    ) -> SpdRule {
        SpdRule {
            direction: dir,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: proto,
            sport: (0, u16::MAX),
            dport,
            action,
        }
    }

    fn sel(src: &str, dst: &str, proto: u8, dport: u16) -> Selectors {
        Selectors {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: proto,
            sport: 1000,
            dport,
        }
    }

    #[test]
    fn first_match_wins_and_default_is_discard() {
        use Direction::*;
        let spd = Spd::new(vec![
            rule(
                Outbound,
                "10.1.0.0/16",
                "10.2.0.9/32",
                Some(17),
                (9, 9),
                Action::Bypass,
            ),
            rule(
                Outbound,
                "10.1.0.0/16",
                "10.2.0.0/16",
                None,
                (0, u16::MAX),
                Action::Protect(0x1000),
            ),
            rule(
                Inbound,
                "10.2.0.0/16",
                "10.1.0.0/16",
                None,
                (0, u16::MAX),
                Action::Protect(0x2000),
            ),
        ]);
        assert_eq!(
            spd.lookup(Outbound, &sel("10.1.0.1", "10.2.0.9", 17, 9)),
            Action::Bypass
        );
        assert_eq!(
            spd.lookup(Outbound, &sel("10.1.0.1", "10.2.0.9", 17, 10)),
            Action::Protect(0x1000)
        );
        assert_eq!(
            spd.lookup(Outbound, &sel("10.1.0.1", "10.3.0.9", 17, 10)),
            Action::Discard
        );
        assert_eq!(
            spd.lookup(Inbound, &sel("10.2.0.1", "10.1.0.1", 1, 0)),
            Action::Protect(0x2000)
        );
        assert_eq!(
            spd.lookup(Outbound, &sel("10.2.0.1", "10.1.0.1", 1, 0)),
            Action::Discard
        );
    }
}
