//! IP addresses and protocol numbers shared by IPv4 and IPv6.

pub use core::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address (a copy of `core::net::IpAddr` with the helper
/// the pseudo-header checksum needs).
pub type IpAddr = core::net::IpAddr;

/// Helpers on [`IpAddr`].
pub trait IpAddrExt {
    /// The 16 octets of the address, IPv4 mapped into IPv6 form.
    fn to_v6_octets(&self) -> [u8; 16];
}

impl IpAddrExt for IpAddr {
    fn to_v6_octets(&self) -> [u8; 16] {
        match self {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        }
    }
}

/// IP protocol numbers (IPv4 protocol, IPv6 next header) used here.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated (tunnel mode next header).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated (tunnel mode next header).
    pub const IPV6: u8 = 41;
    /// IPv6 fragment header.
    pub const IPV6_FRAGMENT: u8 = 44;
    /// ESP.
    pub const ESP: u8 = 50;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// No next header; in ESP, a dummy (TFC) packet to be dropped (RFC 4303 2.6).
    pub const NO_NEXT_HEADER: u8 = 59;
}

/// The IP version of a packet from its first nibble, if it is 4 or 6.
pub fn version_of(packet: &[u8]) -> Option<u8> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Some(4),
        Some(6) => Some(6),
        _ => None,
    }
}
