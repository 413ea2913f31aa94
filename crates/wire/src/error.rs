//! The error type shared by every parser in this crate.

use core::fmt;

/// The protocol layer an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header, with or without an 802.1Q tag.
    Ethernet,
    /// ARP for IPv4 over Ethernet.
    Arp,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// UDP header.
    Udp,
    /// ESP header or trailer.
    Esp,
    /// espgate mirror frame.
    Mirror,
    /// A packet buffer (headroom, tailroom).
    Buffer,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Udp => "udp",
            Layer::Esp => "esp",
            Layer::Mirror => "mirror",
            Layer::Buffer => "buffer",
        })
    }
}

/// Why bytes could not be read or written as a protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header (or its length field) needs.
    #[error("{layer}: truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Where.
        layer: Layer,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A field holds a value the protocol forbids.
    #[error("{layer}: malformed: {what}")]
    Malformed {
        /// Where.
        layer: Layer,
        /// What is wrong.
        what: &'static str,
    },
    /// A checksum does not verify.
    #[error("{layer}: bad checksum")]
    Checksum {
        /// Where.
        layer: Layer,
    },
    /// Valid on the wire but not handled here (say, an unknown hardware type).
    #[error("{layer}: unsupported: {what}")]
    Unsupported {
        /// Where.
        layer: Layer,
        /// What is not supported.
        what: &'static str,
    },
}
