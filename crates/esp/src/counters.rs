//! Why packets are dropped (one table: [`espgate_counters::counter_table!`]),
//! and the counters kept per SA and per SAD.

espgate_counters::counter_table! {
    /// Why a packet was not processed. Every drop is counted under one reason.
    pub enum DropReason;
    /// Drop counters, one per [`DropReason`].
    pub struct DropCounters;
    {
        /// A header (outer IP, UDP, ESP) is shorter than it must be.
        Truncated => "truncated",
        /// An outer header is invalid (bad version, checksum, length fields).
        Malformed => "malformed",
        /// The outer packet is a fragment; espgate does not reassemble.
        Fragment => "fragment",
        /// Not ESP: another protocol, or UDP on a port that carries no ESP.
        NotEsp => "not_esp",
        /// No inbound SA has this SPI.
        UnknownSpi => "unknown_spi",
        /// ESP arrived plain for a UDP-encapsulated SA, or the other way round.
        EncapMismatch => "encap_mismatch",
        /// The ESP packet carries no payload at all.
        ZeroLength => "zero_length",
        /// The encrypted payload is not a multiple of 4 bytes, or too short for
        /// IV, trailer and ICV.
        BadLength => "bad_length",
        /// The sequence number was already received.
        Replayed => "replayed",
        /// The sequence number is below the replay window.
        TooOld => "too_old",
        /// The ICV does not verify.
        AuthFailed => "auth_failed",
        /// The padding bytes are not 1, 2, 3, ... or overrun the payload.
        BadPadding => "bad_padding",
        /// The next header is neither IPv4 (4) nor IPv6 (41).
        BadNextHeader => "bad_next_header",
        /// A dummy packet (next header 59, RFC 4303 2.6): dropped by design.
        Dummy => "dummy",
        /// The packet to protect, or the decrypted one, is not a valid IP packet.
        BadInner => "bad_inner",
        /// The SA reached a hard lifetime limit.
        HardExpired => "hard_expired",
        /// The sequence number would wrap: the SA must be rekeyed.
        SeqExhausted => "seq_exhausted",
        /// The next sequence number is at the mirror's lease limit: the peer
        /// has not acknowledged a lease covering it yet.
        LeaseStall => "lease_stall",
        /// The buffer lacks headroom or tailroom for the ESP headers.
        NoRoom => "no_room",
        /// The encapsulated packet would exceed the IP length limit.
        Oversize => "oversize",
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
