//! Why packets are dropped, and the counters kept per SA and per SAD.

use core::fmt;

/// Why a packet was not processed. Every drop is counted under one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// A header (outer IP, UDP, ESP) is shorter than it must be.
    Truncated,
    /// An outer header is invalid (bad version, checksum, length fields).
    Malformed,
    /// The outer packet is a fragment; espgate does not reassemble.
    Fragment,
    /// Not ESP: another protocol, or UDP on a port that carries no ESP.
    NotEsp,
    /// No inbound SA has this SPI.
    UnknownSpi,
    /// ESP arrived plain for a UDP-encapsulated SA, or the other way round.
    EncapMismatch,
    /// The ESP packet carries no payload at all.
    ZeroLength,
    /// The encrypted payload is not a multiple of 4 bytes, or too short for
    /// IV, trailer and ICV.
    BadLength,
    /// The sequence number was already received.
    Replayed,
    /// The sequence number is below the replay window.
    TooOld,
    /// The ICV does not verify.
    AuthFailed,
    /// The padding bytes are not 1, 2, 3, ... or overrun the payload.
    BadPadding,
    /// The next header is neither IPv4 (4) nor IPv6 (41).
    BadNextHeader,
    /// A dummy packet (next header 59, RFC 4303 2.6): dropped by design.
    Dummy,
    /// The packet to protect, or the decrypted one, is not a valid IP packet.
    BadInner,
    /// The SA reached a hard lifetime limit.
    HardExpired,
    /// The sequence number would wrap: the SA must be rekeyed.
    SeqExhausted,
    /// The next sequence number is at the mirror's lease limit: the peer
    /// has not acknowledged a lease covering it yet.
    LeaseStall,
    /// The buffer lacks headroom or tailroom for the ESP headers.
    NoRoom,
    /// The encapsulated packet would exceed the IP length limit.
    Oversize,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 20] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::NotEsp,
        DropReason::UnknownSpi,
        DropReason::EncapMismatch,
        DropReason::ZeroLength,
        DropReason::BadLength,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::AuthFailed,
        DropReason::BadPadding,
        DropReason::BadNextHeader,
        DropReason::Dummy,
        DropReason::BadInner,
        DropReason::HardExpired,
        DropReason::SeqExhausted,
        DropReason::LeaseStall,
        DropReason::NoRoom,
        DropReason::Oversize,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::Fragment => "fragment",
            DropReason::NotEsp => "not_esp",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::EncapMismatch => "encap_mismatch",
            DropReason::ZeroLength => "zero_length",
            DropReason::BadLength => "bad_length",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::AuthFailed => "auth_failed",
            DropReason::BadPadding => "bad_padding",
            DropReason::BadNextHeader => "bad_next_header",
            DropReason::Dummy => "dummy",
            DropReason::BadInner => "bad_inner",
            DropReason::HardExpired => "hard_expired",
            DropReason::SeqExhausted => "seq_exhausted",
            DropReason::LeaseStall => "lease_stall",
            DropReason::NoRoom => "no_room",
            DropReason::Oversize => "oversize",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Drop counters, one per [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The non-zero counters.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n != 0)
    }
}

/// Traffic counters of one SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaCounters {
    /// Packets processed (sealed, or opened and accepted).
    pub packets: u64,
    /// Bytes of inner packets processed.
    pub bytes: u64,
    /// Drops by reason.
    pub drops: DropCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_dense() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
