//! What ESP needs to know about the inner packet of a tunnel-mode SA.

use espgate_wire::PacketBuf;
use espgate_wire::ip::{self, protocol};
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::Ipv6Packet;

use crate::counters::DropReason;
use crate::error::EspError;

/// The fields of an inner IP packet that shape its outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inner {
    /// ESP next header: 4 (IPv4) or 41 (IPv6).
    pub next_header: u8,
    /// Length of the packet itself, without link padding.
    pub len: usize,
    /// DSCP and ECN (IPv4) or traffic class (IPv6), copied outward.
    pub tos: u8,
    /// IPv4 don't-fragment flag, copied outward (false for IPv6).
    pub dont_frag: bool,
}

/// A truncated inner packet is a bad inner packet, not a bad header of ours.
fn bad_inner(e: espgate_wire::WireError) -> EspError {
    EspError {
        reason: DropReason::BadInner,
        wire: Some(e),
    }
}

/// Reads an inner IPv4 or IPv6 packet at the start of `bytes`; bytes past
/// its length (Ethernet minimum-size padding, TFC padding) are not part of it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Inner, EspError> {
    match ip::version_of(bytes) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(bytes).map_err(bad_inner)?;
            Ok(Inner {
                next_header: protocol::IPV4,
                len: usize::from(p.total_len()),
                tos: p.dscp_ecn(),
                dont_frag: p.dont_frag(),
            })
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(bytes).map_err(bad_inner)?;
            Ok(Inner {
                next_header: protocol::IPV6,
                len: espgate_wire::ipv6::HEADER_LEN + usize::from(p.payload_len()),
                tos: p.traffic_class(),
                dont_frag: false,
            })
        }
        _ => Err(EspError::new(DropReason::BadInner)),
    }
}

/// Reads the inner packet of `pkt` and trims anything after it.
pub(crate) fn parse_and_trim<B: PacketBuf>(pkt: &mut B) -> Result<Inner, EspError> {
    let inner = parse(pkt.data()).map_err(|e| {
        // A truncated inner packet is a bad inner packet, not a bad header of ours.
        EspError {
            reason: DropReason::BadInner,
            ..e
        }
    })?;
    let extra = pkt.len() - inner.len;
    if extra > 0 {
        pkt.trim(extra).expect("trimming within the packet");
    }
    Ok(inner)
}
