//! The punt port, as VPP's linux-cp has it: packets for the node's own
//! addresses that the node does not handle itself (IKE on UDP 500, IKE on
//! 4500 behind the non-ESP marker, NAT keepalives, ICMP echo, anything
//! else to those addresses) go to the kernel's stack through an L3 device,
//! so that an IKE daemon and the kernel can answer them; what the kernel
//! sends back through it leaves by the port whose address it comes from.
//! The node stays the only ARP and NDP speaker for its addresses: an L3
//! device needs no neighbour resolution, and neighbour discovery to the
//! node stays with the node.

use std::io;
use std::net::IpAddr;

use espgate_io::tun::Tun;
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::{self, Ipv6Packet};

use crate::config::{PerSide, Role};
use crate::counters::NodeDrop;

/// The longest name the punt device may have.
pub use espgate_io::tun::MAX_NAME_LEN;

/// The largest MTU the punt device is given: a packet the kernel sends
/// through it must fit one buffer with its Ethernet header.
pub const MAX_MTU: usize = espgate_io::pool::MAX_FRAME - espgate_wire::ethernet::HEADER_LEN;

/// Where punted packets go and the kernel's answers come from: a TUN
/// device ([`Tun`]), or an in-memory one in tests. Every worker sends
/// through it; worker 0 alone receives.
pub trait PuntDevice: Send + Sync {
    /// Hands one IP packet to the kernel; fails when the device cannot
    /// take it now (see [`refusal`]).
    fn send(&self, packet: &[u8]) -> io::Result<()>;

    /// Takes the next IP packet the kernel sent into `buf`: its length,
    /// or `None` when none is waiting. Never waits.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
}

impl PuntDevice for Tun {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        Tun::send(self, packet)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Tun::recv(self, buf)
    }
}

/// Packets the worker that receives from the punt device takes from it in
/// one round of its loop, at most.
pub const BURST: usize = 32;

/// Why a packet the punt device refused is dropped: its queue is full
/// (`WouldBlock`), or it refused otherwise (a device that is down answers
/// `EIO`).
pub fn refusal(e: &io::Error) -> NodeDrop {
    if e.kind() == io::ErrorKind::WouldBlock {
        NodeDrop::PuntFull
    } else {
        NodeDrop::PuntDown
    }
}

/// Whether a packet for one of the node's own addresses is neighbour
/// discovery (ICMPv6 types 133 to 137: router and neighbour solicitations
/// and advertisements, redirects), which the node keeps rather than punts.
pub fn is_neighbour_discovery(ip: &[u8]) -> bool {
    ip.first().map(|b| b >> 4) == Some(6)
        && ip.get(6) == Some(&protocol::ICMPV6)
        && ip.get(40).is_some_and(|t| (133..=137).contains(t))
}

/// The IP packet at the start of `bytes`, cut to the length its header
/// gives (an Ethernet frame's padding left out); `None` when `bytes` is
/// not that long or holds no IPv4 or IPv6 header.
pub fn ip_packet(bytes: &[u8]) -> Option<&[u8]> {
    let len = match bytes.first()? >> 4 {
        4 => usize::from(Ipv4Packet::new_checked(bytes).ok()?.total_len()),
        6 => ipv6::HEADER_LEN + usize::from(Ipv6Packet::new_checked(bytes).ok()?.payload_len()),
        _ => return None,
    };
    bytes.get(..len)
}

/// The port a packet the kernel sent from `src` leaves by: the one whose
/// addresses (its own, and the peer's while this node holds them) include
/// `src`, the unprotected one first; `None` when `src` is no address of the
/// node, so that the punt device never lets anyone send through the
/// gateway under another's address.
pub fn port_of(src: IpAddr, addresses: &PerSide<Vec<IpAddr>>) -> Option<Role> {
    [Role::Unprotected, Role::Protected]
        .into_iter()
        .find(|role| addresses[*role].contains(&src))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv6(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next_header;
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn neighbour_discovery_is_icmpv6_types_133_to_137() {
        for t in 133..=137 {
            assert!(is_neighbour_discovery(&ipv6(
                protocol::ICMPV6,
                &[t, 0, 0, 0]
            )));
        }
        for t in [1, 128, 129, 132, 138, 143] {
            assert!(!is_neighbour_discovery(&ipv6(
                protocol::ICMPV6,
                &[t, 0, 0, 0]
            )));
        }
        // The same type byte in UDP, or in IPv4's ICMP, is not NDP.
        assert!(!is_neighbour_discovery(&ipv6(
            protocol::UDP,
            &[135, 0, 0, 0]
        )));
        let mut v4 = vec![0u8; 44];
        v4[0] = 0x45;
        v4[9] = protocol::ICMP;
        v4[6] = protocol::ICMPV6;
        v4[40] = 135;
        assert!(!is_neighbour_discovery(&v4));
        assert!(!is_neighbour_discovery(&ipv6(protocol::ICMPV6, &[])));
    }

    #[test]
    fn the_ip_packet_leaves_the_frame_padding_out() {
        let mut v4 = vec![0u8; 60];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert_eq!(ip_packet(&v4).map(<[u8]>::len), Some(29));
        let v6 = ipv6(protocol::UDP, &[0; 9]);
        let mut padded = v6.clone();
        padded.extend_from_slice(&[0xee; 7]);
        assert_eq!(ip_packet(&padded), Some(&v6[..]));
        // Cut short, or not IP at all.
        assert_eq!(ip_packet(&v6[..45]), None);
        assert_eq!(ip_packet(&v4[..20]), None);
        assert_eq!(ip_packet(&[0x00; 40]), None);
        assert_eq!(ip_packet(&[0x45]), None);
        assert_eq!(ip_packet(&[]), None);
    }

    #[test]
    fn the_kernel_sends_only_from_the_node_s_addresses() {
        let a = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut addresses = PerSide {
            protected: vec![a("10.1.0.254")],
            unprotected: vec![a("172.16.0.1")],
        };
        assert_eq!(
            port_of(a("172.16.0.1"), &addresses),
            Some(Role::Unprotected)
        );
        assert_eq!(port_of(a("10.1.0.254"), &addresses), Some(Role::Protected));
        assert_eq!(port_of(a("172.16.0.3"), &addresses), None);
        assert_eq!(port_of(a("10.1.0.1"), &addresses), None);
        // The peer's address once this node holds it.
        addresses.unprotected.push(a("172.16.0.3"));
        assert_eq!(
            port_of(a("172.16.0.3"), &addresses),
            Some(Role::Unprotected)
        );
        // One address on both sides leaves by the unprotected port.
        addresses.protected.push(a("172.16.0.1"));
        assert_eq!(
            port_of(a("172.16.0.1"), &addresses),
            Some(Role::Unprotected)
        );
    }

    #[test]
    fn a_full_queue_and_a_device_that_is_down_are_told_apart() {
        let full = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(refusal(&full), NodeDrop::PuntFull);
        let down = io::Error::from_raw_os_error(5); // EIO
        assert_eq!(refusal(&down), NodeDrop::PuntDown);
    }
}
