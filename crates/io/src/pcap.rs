//! Classic pcap files (the libpcap format, not pcapng) with Ethernet link
//! type: a reader that accepts both byte orders and both time resolutions,
//! and a writer (microsecond, native little-endian). Corrupt files give a
//! [`PcapError`] naming the record, never a panic.

use std::io::{self, BufReader, BufWriter, Read, Write};

/// Link type of Ethernet frames (LINKTYPE_ETHERNET).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record the reader accepts (jumbo frames and then some).
pub const MAX_RECORD: u32 = 256 * 1024;

const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const MAGIC_NSEC: u32 = 0xa1b2_3c4d;

/// Why a pcap file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// An I/O error.
    #[error("pcap: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with a pcap magic number.
    #[error("pcap: not a classic pcap file (magic {0:#010x}; pcapng is not supported)")]
    BadMagic(u32),
    /// The file's link type is not Ethernet.
    #[error("pcap: link type {0} is not Ethernet (1)")]
    LinkType(u32),
    /// The file ends inside a header or record.
    #[error("pcap: record {record}: file ends inside the {what}")]
    Truncated {
        /// Record number (0-based).
        record: u64,
        /// Header or data.
        what: &'static str,
    },
    /// A record claims an implausible length.
    #[error("pcap: record {record}: captured length {len} exceeds {MAX_RECORD}")]
    Oversize {
        /// Record number (0-based).
        record: u64,
        /// Claimed length.
        len: u32,
    },
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_nanos: u64,
    /// The captured bytes.
    pub data: Vec<u8>,
    /// The frame's length on the wire (≥ captured length).
    pub orig_len: u32,
}

/// Reads records from a pcap stream.
pub struct PcapReader<R: Read> {
    inner: BufReader<R>,
    swapped: bool,
    nanos: bool,
    record: u64,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> PcapReader<R> {
    /// Reads the global header; refuses anything but Ethernet.
    pub fn new(reader: R) -> Result<Self, PcapError> {
        let mut inner = BufReader::new(reader);
        let mut h = [0u8; 24];
        if read_full(&mut inner, &mut h)? < 24 {
            return Err(PcapError::Truncated {
                record: 0,
                what: "global header",
            });
        }
        let magic = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let (swapped, nanos) = match magic {
            MAGIC_USEC => (false, false),
            MAGIC_NSEC => (false, true),
            m if m.swap_bytes() == MAGIC_USEC => (true, false),
            m if m.swap_bytes() == MAGIC_NSEC => (true, true),
            m => return Err(PcapError::BadMagic(m)),
        };
        let r = PcapReader {
            inner,
            swapped,
            nanos,
            record: 0,
        };
        let link = r.u32(&h[20..24]);
        if link != LINKTYPE_ETHERNET {
            return Err(PcapError::LinkType(link));
        }
        Ok(r)
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let v = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        if self.swapped { v.swap_bytes() } else { v }
    }

    /// The next record, `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        let mut h = [0u8; 16];
        match read_full(&mut self.inner, &mut h)? {
            0 => return Ok(None),
            16 => {}
            _ => {
                return Err(PcapError::Truncated {
                    record: self.record,
                    what: "record header",
                });
            }
        }
        let sec = u64::from(self.u32(&h[0..4]));
        let frac = u64::from(self.u32(&h[4..8]));
        let incl = self.u32(&h[8..12]);
        let orig_len = self.u32(&h[12..16]);
        if incl > MAX_RECORD {
            return Err(PcapError::Oversize {
                record: self.record,
                len: incl,
            });
        }
        let mut data = vec![0u8; incl as usize];
        if read_full(&mut self.inner, &mut data)? < data.len() {
            return Err(PcapError::Truncated {
                record: self.record,
                what: "record data",
            });
        }
        self.record += 1;
        let ts_nanos = sec * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Ok(Some(Record {
            ts_nanos,
            data,
            orig_len: orig_len.max(incl),
        }))
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<Record, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Writes Ethernet frames to a pcap stream (microsecond timestamps).
pub struct PcapWriter<W: Write> {
    inner: BufWriter<W>,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(writer: W) -> Result<Self, PcapError> {
        let mut inner = BufWriter::new(writer);
        let mut h = Vec::with_capacity(24);
        h.extend(MAGIC_USEC.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend(0i32.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h.extend(MAX_RECORD.to_le_bytes());
        h.extend(LINKTYPE_ETHERNET.to_le_bytes());
        inner.write_all(&h)?;
        Ok(PcapWriter { inner })
    }

    /// Writes one frame captured at `ts_nanos`.
    pub fn write(&mut self, ts_nanos: u64, frame: &[u8]) -> Result<(), PcapError> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or(PcapError::Oversize {
                record: 0,
                len: u32::MAX,
            })?;
        let sec = (ts_nanos / 1_000_000_000) as u32;
        let usec = ((ts_nanos % 1_000_000_000) / 1000) as u32;
        for v in [sec, usec, len, len] {
            self.inner.write_all(&v.to_le_bytes())?;
        }
        self.inner.write_all(frame)?;
        Ok(())
    }

    /// Flushes buffered records.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.inner.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        let mut w = PcapWriter::new(&mut out).unwrap();
        w.write(1_700_000_000_123_456_000, b"frame one").unwrap();
        w.write(5, b"").unwrap();
        w.flush().unwrap();
        drop(w);
        let recs: Vec<_> = PcapReader::new(&out[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, b"frame one");
        assert_eq!(recs[0].ts_nanos, 1_700_000_000_123_456_000);
        assert_eq!(recs[1].data, b"");
    }

    #[test]
    fn big_endian_nanosecond_file() {
        let mut f = Vec::new();
        f.extend(MAGIC_NSEC.to_be_bytes());
        f.extend(2u16.to_be_bytes());
        f.extend(4u16.to_be_bytes());
        f.extend([0u8; 8]);
        f.extend(65535u32.to_be_bytes());
        f.extend(1u32.to_be_bytes());
        for v in [3u32, 7, 2, 60] {
            f.extend(v.to_be_bytes());
        }
        f.extend([0xaa, 0xbb]);
        let r: Vec<_> = PcapReader::new(&f[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(r[0].ts_nanos, 3_000_000_007);
        assert_eq!(
            (r[0].data.as_slice(), r[0].orig_len),
            (&[0xaa, 0xbb][..], 60)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            PcapReader::new(&[0u8; 10][..]),
            Err(PcapError::Truncated { .. })
        ));
        assert!(matches!(
            PcapReader::new(
                &[
                    0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0
                ][..]
            ),
            Err(PcapError::BadMagic(_))
        ));
        let mut out = Vec::new();
        let mut w = PcapWriter::new(&mut out).unwrap();
        w.write(0, b"abcdef").unwrap();
        drop(w);
        let cut = &out[..out.len() - 2];
        let e = PcapReader::new(cut).unwrap().next().unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                PcapError::Truncated {
                    record: 0,
                    what: "record data"
                }
            ),
            "{e}"
        );
        let mut raw = out.clone();
        raw[20] = 101;
        assert!(matches!(
            PcapReader::new(&raw[..]),
            Err(PcapError::LinkType(101))
        ));
    }

    proptest! {
        #[test]
        fn reader_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut f = Vec::new();
            PcapWriter::new(&mut f).unwrap().flush().unwrap();
            f.extend(tail);
            if let Ok(r) = PcapReader::new(&f[..]) {
                for rec in r {
                    if rec.is_err() { break; }
                }
            }
        }
    }
}
