//! ESP header and trailer (RFC 4303 section 2).
//!
//! ```text
//!  0                   1                   2                   3
//! +-------------------------------------------------------------+
//! |               Security Parameters Index (SPI)               |
//! |                      Sequence Number                        |
//! |   IV (8 bytes for AES-GCM) + encrypted payload ...          |
//! |   ... Padding (0-255) | Pad Length | Next Header | ICV      |
//! +-------------------------------------------------------------+
//! ```

use crate::{Layer, Result, WireError, be32, need, put32};

/// Length of the ESP header (SPI and sequence number).
pub const HEADER_LEN: usize = 8;
/// Length of the fixed trailer (pad length and next header).
pub const TRAILER_LEN: usize = 2;
/// Encrypted-payload alignment ESP requires (RFC 4303 2.4).
pub const ALIGN: usize = 4;

/// A view of an ESP packet (from the SPI to the end of the ICV).
#[derive(Debug, Clone)]
pub struct EspPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps a buffer after checking it holds the header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        need(Layer::Esp, buffer.as_ref(), HEADER_LEN)?;
        Ok(EspPacket { buffer })
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }

    /// Low 32 bits of the sequence number (all of it without ESN).
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// Everything after the header: IV, ciphertext, ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// The values of an ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspRepr {
    /// Security Parameters Index (0 is reserved and refused).
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq: u32,
}

impl EspRepr {
    /// Reads a checked packet; SPI 0 is reserved (RFC 4303 2.1) and refused,
    /// SPIs 1..=255 are reserved by IANA and refused too.
    pub fn parse<T: AsRef<[u8]>>(p: &EspPacket<T>) -> Result<Self> {
        if p.spi() < 256 {
            return Err(WireError::Malformed {
                layer: Layer::Esp,
                what: "reserved SPI (0..=255)",
            });
        }
        Ok(EspRepr {
            spi: p.spi(),
            seq: p.seq(),
        })
    }

    /// Writes the header into the first 8 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        need(Layer::Esp, buf, HEADER_LEN)?;
        put32(buf, 0, self.spi);
        put32(buf, 4, self.seq);
        Ok(())
    }
}

/// The ESP trailer: padding, its length and the next header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspTrailer {
    /// Number of padding bytes before the pad-length byte.
    pub pad_len: u8,
    /// Protocol of the protected payload (4: IPv4, 41: IPv6 in tunnel mode).
    pub next_header: u8,
}

impl EspTrailer {
    /// The trailer for a payload of `payload_len` bytes: the fewest padding
    /// bytes that align payload and trailer to `align` (a power of two from
    /// [`ALIGN`] to 128; others are taken as [`ALIGN`]).
    pub fn for_payload(payload_len: usize, next_header: u8, align: usize) -> Self {
        let align = if align.is_power_of_two() && (ALIGN..=128).contains(&align) {
            align
        } else {
            ALIGN
        };
        let pad = (align - (payload_len + TRAILER_LEN) % align) % align;
        EspTrailer {
            pad_len: pad as u8,
            next_header,
        }
    }

    /// Bytes the trailer takes: padding plus the two fixed bytes.
    pub fn len(&self) -> usize {
        usize::from(self.pad_len) + TRAILER_LEN
    }

    /// Always false: a trailer has at least its two fixed bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reads the trailer at the end of a decrypted payload and checks the
    /// padding holds 1, 2, 3, ... (RFC 4303 2.4 default padding). Returns the
    /// trailer and the length of what precedes it.
    pub fn parse(plaintext: &[u8]) -> Result<(Self, usize)> {
        need(Layer::Esp, plaintext, TRAILER_LEN)?;
        let n = plaintext.len();
        let t = EspTrailer {
            pad_len: plaintext[n - 2],
            next_header: plaintext[n - 1],
        };
        let body = n.checked_sub(t.len()).ok_or(WireError::Malformed {
            layer: Layer::Esp,
            what: "pad length exceeds the payload",
        })?;
        let pad = &plaintext[body..n - TRAILER_LEN];
        if pad
            .iter()
            .enumerate()
            .any(|(i, &b)| usize::from(b) != i + 1)
        {
            return Err(WireError::Malformed {
                layer: Layer::Esp,
                what: "padding bytes are not 1, 2, 3, ...",
            });
        }
        Ok((t, body))
    }

    /// Writes padding, pad length and next header into `buf`, which must be
    /// exactly [`len`](Self::len) bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() != self.len() {
            return Err(WireError::Malformed {
                layer: Layer::Esp,
                what: "trailer buffer size differs from the trailer length",
            });
        }
        let n = buf.len();
        for (i, b) in buf[..n - TRAILER_LEN].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        buf[n - 2] = self.pad_len;
        buf[n - 1] = self.next_header;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let r = EspRepr {
            spi: 0x1000,
            seq: 7,
        };
        let mut buf = [0u8; 8];
        r.emit(&mut buf).unwrap();
        assert_eq!(
            EspRepr::parse(&EspPacket::new_checked(&buf[..]).unwrap()),
            Ok(r)
        );
        assert!(EspPacket::new_checked(&buf[..7]).is_err());
    }

    #[test]
    fn reserved_spi_refused() {
        let buf = [0, 0, 0, 255, 0, 0, 0, 1];
        assert!(EspRepr::parse(&EspPacket::new_checked(&buf[..]).unwrap()).is_err());
    }

    #[test]
    fn bad_padding_refused() {
        assert!(EspTrailer::parse(&[9, 1, 3, 2, 4]).is_err());
        assert!(EspTrailer::parse(&[9, 5, 4]).is_err());
        assert_eq!(
            EspTrailer::parse(&[9, 1, 2, 2, 4]),
            Ok((
                EspTrailer {
                    pad_len: 2,
                    next_header: 4
                },
                1
            ))
        );
    }

    proptest! {
        #[test]
        fn trailer_round_trip(len in 0usize..2000, nh: u8, align in prop_oneof![Just(4usize), Just(16), Just(7)]) {
            let t = EspTrailer::for_payload(len, nh, align);
            prop_assert_eq!((len + t.len()) % if align == 7 { ALIGN } else { align }, 0);
            prop_assert!(t.len() < TRAILER_LEN + align.max(ALIGN));
            let mut buf = vec![0xaau8; len + t.len()];
            t.emit(&mut buf[len..]).unwrap();
            prop_assert_eq!(EspTrailer::parse(&buf), Ok((t, len)));
        }

        #[test]
        fn trailer_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = EspTrailer::parse(&data);
        }
    }
}
