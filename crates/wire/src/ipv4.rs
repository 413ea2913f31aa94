//! IPv4 headers (RFC 791), with the header checksum.

use crate::checksum;
use crate::ip::Ipv4Addr;
use crate::{Layer, Result, WireError, be16, need, put16};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after checking version, header length and total length
    /// against the buffer. Bytes after the total length (link padding) are
    /// allowed and not part of the packet.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(Layer::Ipv4, b, HEADER_LEN)?;
        if b[0] >> 4 != 4 {
            return Err(WireError::Malformed {
                layer: Layer::Ipv4,
                what: "version is not 4",
            });
        }
        let hl = usize::from(b[0] & 0x0f) * 4;
        if hl < HEADER_LEN {
            return Err(WireError::Malformed {
                layer: Layer::Ipv4,
                what: "header length below 20",
            });
        }
        need(Layer::Ipv4, b, hl)?;
        let total = usize::from(be16(b, 2));
        if total < hl {
            return Err(WireError::Malformed {
                layer: Layer::Ipv4,
                what: "total length below header length",
            });
        }
        need(Layer::Ipv4, b, total)?;
        Ok(Ipv4Packet { buffer })
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    /// DSCP and ECN (the former type-of-service byte).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Total length field.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[6] & 0x40 != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[6] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), 6) & 0x1fff) * 8
    }

    /// Whether this is a fragment (offset non-zero or more fragments follow).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// Whether the header checksum verifies.
    pub fn checksum_valid(&self) -> bool {
        checksum::fold(checksum::accumulate(
            0,
            &self.buffer.as_ref()[..self.header_len()],
        )) == 0xffff
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[8] = ttl;
    }

    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        put16(b, 10, 0);
        let c = checksum::checksum(&b[..hl]);
        put16(b, 10, c);
    }

    /// The payload, mutable, up to the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..total]
    }
}

/// The values of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length (total length minus the header).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP and ECN.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads a checked packet, verifying the header checksum. Fragments and
    /// options are refused: espgate handles neither on its outer headers.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        if !p.checksum_valid() {
            return Err(WireError::Checksum { layer: Layer::Ipv4 });
        }
        if p.is_fragment() {
            return Err(WireError::Unsupported {
                layer: Layer::Ipv4,
                what: "fragment",
            });
        }
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Header length this repr emits (always 20).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, with its checksum, into the first 20 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        need(Layer::Ipv4, buf, HEADER_LEN)?;
        let total =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::Malformed {
                layer: Layer::Ipv4,
                what: "total length above 65535",
            })?;
        buf[0] = 0x45;
        buf[1] = self.dscp_ecn;
        put16(buf, 2, total);
        put16(buf, 4, self.ident);
        put16(buf, 6, if self.dont_frag { 0x4000 } else { 0 });
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        put16(buf, 10, 0);
        buf[12..16].copy_from_slice(&self.src.octets());
        buf[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(&buf[..HEADER_LEN]);
        put16(buf, 10, c);
        Ok(())
    }
}

/// An IPv4 header made once for packets that differ only in length,
/// identification, DSCP/ECN and the don't-fragment flag: a tunnel's outer
/// header (librte_ipsec keeps one per SA). Emitting copies 20 bytes and
/// completes a checksum summed in advance, instead of building the header
/// field by field and summing it each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Template {
    header: [u8; HEADER_LEN],
    /// The folded sum of `header`'s words.
    sum: u16,
}

impl Ipv4Template {
    /// The header of packets from `src` to `dst` carrying `protocol`, with
    /// time to live `ttl`.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ttl: u8) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[0] = 0x45;
        header[8] = ttl;
        header[9] = protocol;
        header[12..16].copy_from_slice(&src.octets());
        header[16..20].copy_from_slice(&dst.octets());
        let sum = checksum::fold(checksum::accumulate(0, &header));
        Ipv4Template { header, sum }
    }

    /// Writes the header for a payload of `payload_len` bytes into the
    /// first 20 bytes of `buf`; the same bytes as [`Ipv4Repr::emit`] with
    /// this template's addresses, protocol and TTL.
    #[inline]
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        ident: u16,
        dscp_ecn: u8,
        dont_frag: bool,
    ) -> Result<()> {
        need(Layer::Ipv4, buf, HEADER_LEN)?;
        let total = u16::try_from(HEADER_LEN + payload_len).map_err(|_| WireError::Malformed {
            layer: Layer::Ipv4,
            what: "total length above 65535",
        })?;
        let flags: u16 = if dont_frag { 0x4000 } else { 0 };
        let h = &mut buf[..HEADER_LEN];
        h.copy_from_slice(&self.header);
        h[1] = dscp_ecn;
        put16(h, 2, total);
        put16(h, 4, ident);
        put16(h, 6, flags);
        let sum = u64::from(self.sum)
            + u64::from(dscp_ecn)
            + u64::from(total)
            + u64::from(ident)
            + u64::from(flags);
        put16(h, 10, !checksum::fold(sum));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 1, 2),
            dst: Ipv4Addr::new(192, 168, 1, 1),
            protocol: 17,
            payload_len: 8,
            ttl: 64,
            dscp_ecn: 0xb8,
            ident: 0x1234,
            dont_frag: true,
        }
    }

    #[test]
    fn round_trip_with_checksum() {
        let mut buf = [0u8; 28];
        sample().emit(&mut buf).unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.checksum_valid());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), sample());
    }

    #[test]
    fn known_checksum() {
        // The IPv4 header of draft-mcgrew-gcm-test-01's first test packet.
        let hdr = hex_bytes("45000048699a000080114db7c0a80102c0a80101");
        let mut buf = hdr.clone();
        buf.resize(0x48, 0);
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        assert!(p.checksum_valid());
        p.fill_checksum();
        assert_eq!(&buf[..20], &hdr[..]);
    }

    #[test]
    fn corrupted_checksum_is_refused() {
        let mut buf = [0u8; 28];
        sample().emit(&mut buf).unwrap();
        buf[8] ^= 1;
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Ipv4Repr::parse(&p),
            Err(WireError::Checksum { layer: Layer::Ipv4 })
        );
    }

    #[test]
    fn total_length_beyond_buffer() {
        let mut buf = [0u8; 28];
        sample().emit(&mut buf).unwrap();
        assert!(matches!(
            Ipv4Packet::new_checked(&buf[..27]),
            Err(WireError::Truncated { need: 28, .. })
        ));
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    proptest! {
        #[test]
        fn template_emits_what_the_repr_emits(
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            protocol in any::<u8>(),
            ttl in any::<u8>(),
            payload_len in 0usize..65_600,
            ident in any::<u16>(),
            dscp_ecn in any::<u8>(),
            dont_frag in any::<bool>(),
        ) {
            let repr = Ipv4Repr {
                src: Ipv4Addr::from(src),
                dst: Ipv4Addr::from(dst),
                protocol,
                payload_len,
                ttl,
                dscp_ecn,
                ident,
                dont_frag,
            };
            let t = Ipv4Template::new(repr.src, repr.dst, protocol, ttl);
            let (mut a, mut b) = ([0u8; 20], [0xffu8; 20]);
            let ra = repr.emit(&mut a);
            let rb = t.emit(&mut b, payload_len, ident, dscp_ecn, dont_frag);
            prop_assert_eq!(ra.is_ok(), rb.is_ok());
            if ra.is_ok() {
                prop_assert_eq!(a, b);
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Ipv4Packet::new_checked(&data[..]) {
                let _ = Ipv4Repr::parse(&p);
                let _ = p.payload();
            }
        }

        #[test]
        fn emit_parse(payload_len in 0usize..1500, ttl: u8, ident: u16, df: bool, tos: u8) {
            let r = Ipv4Repr { payload_len, ttl, ident, dont_frag: df, dscp_ecn: tos, ..sample() };
            let mut buf = vec![0u8; 20 + payload_len];
            r.emit(&mut buf).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
