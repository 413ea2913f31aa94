//! espgate's mirror frames (EtherType 0x88B5, IEEE local experimental):
//! a header, typed records, and a MAC over both.
//!
//! ```text
//! header (36 bytes, big-endian):
//!   version u8 | flags u8 | record count u16 | length u16 | reserved u16 |
//!   sender node u32 | epoch u64 | frame counter u64 | receiver's epoch u64
//! records, each:  type u8 | body length u16 | body
//! MAC (16 bytes): over header and records (computed by the mirror crate)
//! ```
//!
//! `length` counts the header and the records: the MAC follows them, and
//! whatever comes after it is link padding (Ethernet pads frames shorter
//! than 60 bytes; a receiver must not take the padding for the MAC). The
//! receiver's epoch is the life of the receiving node the sender last
//! heard (0 before it heard any): records that change the receiver's state
//! count only in the life they were sent to, so frames recorded from an
//! earlier life and replayed change nothing.
//!
//! Records carry absolute values, never increments, so frames may be lost,
//! repeated or reordered and merging by maximum still converges. Unknown
//! record types are reported as such, so a newer peer can add some.

use crate::{Direction, Layer, Result, WireError, be16, be32, need};

/// Frame format version.
pub const VERSION: u8 = 5;

/// Where the fields of a frame's header lie (bytes 6..8 are reserved,
/// sent as zero).
mod field {
    use core::ops::Range;

    pub const VERSION: usize = 0;
    pub const FLAGS: usize = 1;
    pub const RECORDS: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NODE: Range<usize> = 8..12;
    pub const EPOCH: Range<usize> = 12..20;
    pub const COUNTER: Range<usize> = 20..28;
    pub const PEER_EPOCH: Range<usize> = 28..36;
}

/// Where the fields of an SA state record's body lie (bytes 6..8 and
/// 42..44 are padding, sent as zero).
mod sa_field {
    use core::ops::Range;

    pub const SPI: Range<usize> = 0..4;
    pub const DIR: usize = 4;
    /// Bit 0: the record is a copy.
    pub const FLAGS: usize = 5;
    pub const VALUE: Range<usize> = 8..16;
    pub const BYTES: Range<usize> = 16..24;
    pub const PACKETS: Range<usize> = 24..32;
    pub const SENT_TO: Range<usize> = 32..40;
    /// How many bitmap words follow.
    pub const WORDS: Range<usize> = 40..42;
    /// The bitmap words, 8 bytes each, from here to the end.
    pub const BITMAP: usize = 44;
}

/// Header length.
pub const HEADER_LEN: usize = field::PEER_EPOCH.end;
/// Length of an SA state record's body before its bitmap words (8 bytes
/// each).
pub const SA_STATE_BODY_LEN: usize = sa_field::BITMAP;
/// Length of the MAC at the end of a frame.
pub const MAC_LEN: usize = 16;
/// Bytes before each record body (type and length).
pub const RECORD_HEADER_LEN: usize = 3;
/// Bit of a bulk part record's `parts` field: the part is the last of its
/// sending (the whole bulk's last, or the last of the parts a resend
/// request listed). The bits below it count the bulk's parts.
pub const PART_LAST: u32 = 1 << 31;
/// Most part numbers a bulk resend request carries (its body within a
/// 9000-byte frame; a node lists what fits its own `max_frame`, a few
/// hundred).
pub const MAX_RESEND_PARTS: usize = 2048;
/// Header flag: the sender has finished a bulk sync in this life, so it
/// may run SAs (and may have taken some over).
pub const FLAG_SYNCED: u8 = 0x01;
/// Header flag: the sender's packet flow has failed (a data port lost its
/// link): it hands the SAs it runs to its peer and is given none.
pub const FLAG_FLOW_FAILED: u8 = 0x02;

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn malformed(what: &'static str) -> WireError {
    WireError::Malformed {
        layer: Layer::Mirror,
        what,
    }
}

/// Fails unless a record's body is `len` bytes, as its type wants.
fn exact(body: &[u8], len: usize) -> Result<()> {
    if body.len() == len {
        Ok(())
    } else {
        Err(malformed("record body length does not fit its type"))
    }
}

/// The fixed header of a mirror frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorHeader {
    /// Flags: [`FLAG_SYNCED`], [`FLAG_FLOW_FAILED`]; the others are sent as
    /// zero and ignored.
    pub flags: u8,
    /// Number of records.
    pub records: u16,
    /// The sending node.
    pub node: u32,
    /// The sender's epoch: new at every start, larger than any before.
    pub epoch: u64,
    /// Frame counter, strictly increasing within an epoch.
    pub counter: u64,
    /// The receiver's epoch as the sender last heard it (0: none heard).
    pub peer_epoch: u64,
}

impl MirrorHeader {
    /// Reads the header of `frame` (MAC not checked here).
    pub fn parse(frame: &[u8]) -> Result<Self> {
        need(Layer::Mirror, frame, HEADER_LEN + MAC_LEN)?;
        if frame[field::VERSION] != VERSION {
            return Err(WireError::Unsupported {
                layer: Layer::Mirror,
                what: "mirror frame version",
            });
        }
        Ok(MirrorHeader {
            flags: frame[field::FLAGS],
            records: be16(frame, field::RECORDS.start),
            node: be32(frame, field::NODE.start),
            epoch: be64(frame, field::EPOCH.start),
            counter: be64(frame, field::COUNTER.start),
            peer_epoch: be64(frame, field::PEER_EPOCH.start),
        })
    }

    /// How many bytes [`emit`](Self::emit) appends.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Appends the header to `out`, its length field 0 until
    /// [`set_length`] fills it in.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + self.buffer_len(), 0);
        let h = &mut out[at..];
        h[field::VERSION] = VERSION;
        h[field::FLAGS] = self.flags;
        h[field::RECORDS].copy_from_slice(&self.records.to_be_bytes());
        h[field::NODE].copy_from_slice(&self.node.to_be_bytes());
        h[field::EPOCH].copy_from_slice(&self.epoch.to_be_bytes());
        h[field::COUNTER].copy_from_slice(&self.counter.to_be_bytes());
        h[field::PEER_EPOCH].copy_from_slice(&self.peer_epoch.to_be_bytes());
    }
}

/// Writes the length field of an emitted frame whose header and records
/// are all of `frame` (the MAC not yet appended).
pub fn set_length(frame: &mut [u8]) {
    let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
    frame[field::LENGTH].copy_from_slice(&len.to_be_bytes());
}

/// The frame without its link padding: header, records and MAC, as the
/// length field gives them.
pub fn unpadded(frame: &[u8]) -> Result<&[u8]> {
    need(Layer::Mirror, frame, HEADER_LEN + MAC_LEN)?;
    let len = usize::from(be16(frame, field::LENGTH.start));
    if len < HEADER_LEN {
        return Err(malformed("length shorter than the header"));
    }
    need(Layer::Mirror, frame, len + MAC_LEN)?;
    Ok(&frame[..len + MAC_LEN])
}

/// The state of one SA, absolute values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SaState {
    /// SPI.
    pub spi: u32,
    /// Direction.
    pub dir: Direction,
    /// Outbound: the lease, the sequence number the owner promises never to
    /// reach (seq + quantity when sent). Inbound: the replay window top.
    pub value: u64,
    /// Bytes processed (for lifetimes).
    pub bytes: u64,
    /// Packets processed (for lifetimes).
    pub packets: u64,
    /// Outbound: the first sequence number past every one the sender knows
    /// went out on the SA, under any owner (1: none went out; 0: the
    /// sender does not know). The far end's ESN inference follows from
    /// there, not from the lease. Inbound: 0.
    pub sent_to: u64,
    /// Inbound: the replay bitmap below the top, bit `i` of word `w` for
    /// sequence number `top - (64 w + i)`; empty for outbound.
    pub bitmap: Vec<u64>,
    /// Not the sender's own SA but its standby copy of the receiver's (sent
    /// in a bulk sync, so a restarted receiver learns how far its SAs went).
    pub copy: bool,
}

impl SaState {
    /// The bitmap words sent (at most [`MAX_BITMAP_WORDS`]).
    fn words(&self) -> usize {
        self.bitmap.len().min(MAX_BITMAP_WORDS)
    }

    /// How many bytes its record's body takes.
    fn body_len(&self) -> usize {
        SA_STATE_BODY_LEN + 8 * self.words()
    }

    /// How many bytes its record takes: type, length and body.
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body_len()
    }

    /// Appends the record's body to `out`.
    fn emit_body(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + self.body_len(), 0);
        let b = &mut out[at..];
        b[sa_field::SPI].copy_from_slice(&self.spi.to_be_bytes());
        b[sa_field::DIR] = self.dir.code();
        b[sa_field::FLAGS] = u8::from(self.copy);
        b[sa_field::VALUE].copy_from_slice(&self.value.to_be_bytes());
        b[sa_field::BYTES].copy_from_slice(&self.bytes.to_be_bytes());
        b[sa_field::PACKETS].copy_from_slice(&self.packets.to_be_bytes());
        b[sa_field::SENT_TO].copy_from_slice(&self.sent_to.to_be_bytes());
        b[sa_field::WORDS].copy_from_slice(&(self.words() as u16).to_be_bytes());
        for (to, w) in b[sa_field::BITMAP..].chunks_exact_mut(8).zip(&self.bitmap) {
            to.copy_from_slice(&w.to_be_bytes());
        }
    }

    /// Reads a record's body.
    fn parse_body(body: &[u8]) -> Result<Self> {
        if body.len() < SA_STATE_BODY_LEN {
            return Err(malformed("SA state record shorter than 44 bytes"));
        }
        let words = usize::from(be16(body, sa_field::WORDS.start));
        if words > MAX_BITMAP_WORDS {
            return Err(malformed("replay bitmap larger than 65536 bits"));
        }
        exact(body, SA_STATE_BODY_LEN + 8 * words)?;
        Ok(SaState {
            spi: be32(body, sa_field::SPI.start),
            dir: Direction::from_code(body[sa_field::DIR])?,
            value: be64(body, sa_field::VALUE.start),
            bytes: be64(body, sa_field::BYTES.start),
            packets: be64(body, sa_field::PACKETS.start),
            sent_to: be64(body, sa_field::SENT_TO.start),
            bitmap: (0..words)
                .map(|w| be64(body, sa_field::BITMAP + 8 * w))
                .collect(),
            copy: body[sa_field::FLAGS] & 1 != 0,
        })
    }
}

/// One record of a mirror frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MirrorRecord {
    /// The state of an SA the sender owns.
    SaState(SaState),
    /// The sender is alive; its view of ownership.
    Heartbeat {
        /// The sender's clock, milliseconds.
        now_ms: u64,
        /// How many SAs it owns.
        owned: u32,
        /// Whether it hears its peer.
        peer_alive: bool,
        /// Its ownership generation (bumped at every takeover or failback).
        generation: u64,
    },
    /// The receiver stored this lease for this SA.
    LeaseAck {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
        /// The lease stored.
        lease: u64,
    },
    /// Send me your whole table.
    BulkRequest,
    /// Send me again these parts of your bulk sync `bulk` (the ones that
    /// did not arrive): the parts, in the order they should go.
    BulkResend {
        /// The bulk's number.
        bulk: u64,
        /// Its parts asked for (at most [`MAX_RESEND_PARTS`] are sent).
        parts: Vec<u32>,
    },
    /// This frame is part `part` (from 0) of the sender's bulk sync
    /// `bulk`, which has `parts` frames: the records beside this one are
    /// that part. A bulk sent again, whole or only the parts asked for, has
    /// the same parts under the same number, so a receiver can gather one
    /// from several sendings.
    BulkPart {
        /// The bulk's number (one sender life numbers its bulks from 1).
        bulk: u64,
        /// This part.
        part: u32,
        /// How many parts the bulk has (below [`PART_LAST`]).
        parts: u32,
        /// The last part of its sending: a receiver still missing parts
        /// asks for them once it is in.
        last: bool,
    },
    /// An SA changes owner.
    Ownership {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
        /// The new owner.
        owner: u32,
        /// Ownership generation of the change.
        generation: u64,
        /// Outbound: the value the owner's use of the SA is bounded by (its
        /// start after a takeover, else its acknowledged lease); the
        /// receiver stores it before it may ever act on the SA again.
        bound: u64,
        /// What the record does.
        kind: OwnershipKind,
    },
    /// What do you know of this SA? (Asked by a node that added it at run
    /// time, before it uses it.)
    Query {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
    },
    /// What the sender knows of an SA: the highest value it stores or ran
    /// it to, or nothing at all (it never heard of the SA). The answer to
    /// a query, and in a bulk sync the history of SAs no longer configured.
    History {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
        /// The highest value known, if any.
        value: Option<u64>,
    },
    /// The sender runs the SA past `value`, a final state of it the
    /// receiver sent as a copy (the loser of a split brain): the receiver
    /// may stop sending that final again.
    Past {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
        /// The copy's value.
        value: u64,
    },
    /// A life's goodbye, or the answer to one.
    Goodbye {
        /// Which.
        kind: GoodbyeKind,
    },
    /// A record type this version does not know (skipped).
    Unknown(u8),
}

/// What a goodbye record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoodbyeKind {
    /// The sender's life ends here, having handed every SA it ran to the
    /// receiver exactly.
    Leaving,
    /// The receiver of the sender's goodbye took it in: the leaving node
    /// may stop.
    Heard,
    /// The receiver of the sender's goodbye did not take it (its view has
    /// the leaving node running an SA), and takes no other goodbye of
    /// that life: the leaving node runs on.
    Refused,
}

/// What an ownership record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnershipKind {
    /// A change of owner (a takeover, a bulk sync's view).
    Change,
    /// The sender stopped running the SA and hands it to the receiver:
    /// everything either node used lies below `start`, which the sender
    /// has stored.
    Handover,
    /// The sender's view now matches a record it received (it took the
    /// change in); the receiver stops re-sending that record.
    Confirm,
    /// The sender does not have the SA a record it received was about (a
    /// hand-over of an SA it was never given, or deleted): the receiver
    /// runs the SA again if the record handed it to the sender.
    Declined,
    /// A hand-over whose `bound` is exact: the sender's workers stopped
    /// using the SA before it read their state, and nothing at or past
    /// `bound` was used (outbound: the next sequence number) or accepted
    /// (inbound: the window top) by anyone. The receiver continues from
    /// exactly there.
    Exact,
}

impl OwnershipKind {
    fn code(self) -> u8 {
        match self {
            OwnershipKind::Change => 0,
            OwnershipKind::Handover => 1,
            OwnershipKind::Confirm => 2,
            OwnershipKind::Declined => 3,
            OwnershipKind::Exact => 4,
        }
    }

    fn from_code(c: u8) -> Result<Self> {
        match c {
            0 => Ok(OwnershipKind::Change),
            1 => Ok(OwnershipKind::Handover),
            2 => Ok(OwnershipKind::Confirm),
            3 => Ok(OwnershipKind::Declined),
            4 => Ok(OwnershipKind::Exact),
            _ => Err(malformed("unknown ownership kind")),
        }
    }
}

const SA_STATE: u8 = 1;
const HEARTBEAT: u8 = 2;
const LEASE_ACK: u8 = 3;
const BULK_REQUEST: u8 = 4;
const BULK_PART: u8 = 5;
const OWNERSHIP: u8 = 6;
const QUERY: u8 = 7;
const HISTORY: u8 = 8;
const PAST: u8 = 9;
const BULK_RESEND: u8 = 10;
const GOODBYE: u8 = 11;

/// Most bitmap words an SA state may carry (a 65536-packet window).
pub const MAX_BITMAP_WORDS: usize = 1024;

impl MirrorRecord {
    /// How many bytes [`emit`](Self::emit) appends: type, length and body.
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN
            + match self {
                MirrorRecord::SaState(s) => s.body_len(),
                MirrorRecord::Heartbeat { .. } => 24,
                MirrorRecord::Ownership { .. } => 32,
                MirrorRecord::BulkResend { parts, .. } => 8 + 4 * parts.len().min(MAX_RESEND_PARTS),
                MirrorRecord::LeaseAck { .. }
                | MirrorRecord::BulkPart { .. }
                | MirrorRecord::History { .. }
                | MirrorRecord::Past { .. } => 16,
                MirrorRecord::Query { .. } => 8,
                MirrorRecord::Goodbye { .. } => 4,
                MirrorRecord::BulkRequest | MirrorRecord::Unknown(_) => 0,
            }
    }

    /// Appends the record to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend([0u8; RECORD_HEADER_LEN]);
        let ty = match self {
            MirrorRecord::SaState(s) => {
                s.emit_body(out);
                SA_STATE
            }
            MirrorRecord::Heartbeat {
                now_ms,
                owned,
                peer_alive,
                generation,
            } => {
                out.extend(now_ms.to_be_bytes());
                out.extend(owned.to_be_bytes());
                out.extend(u32::from(*peer_alive).to_be_bytes());
                out.extend(generation.to_be_bytes());
                HEARTBEAT
            }
            MirrorRecord::LeaseAck { spi, dir, lease } => {
                out.extend(spi.to_be_bytes());
                out.push(dir.code());
                out.extend([0u8; 3]);
                out.extend(lease.to_be_bytes());
                LEASE_ACK
            }
            MirrorRecord::BulkRequest => BULK_REQUEST,
            MirrorRecord::BulkResend { bulk, parts } => {
                out.extend(bulk.to_be_bytes());
                for p in parts.iter().take(MAX_RESEND_PARTS) {
                    out.extend(p.to_be_bytes());
                }
                BULK_RESEND
            }
            MirrorRecord::BulkPart {
                bulk,
                part,
                parts,
                last,
            } => {
                out.extend(bulk.to_be_bytes());
                out.extend(part.to_be_bytes());
                let last = if *last { PART_LAST } else { 0 };
                out.extend((parts & !PART_LAST | last).to_be_bytes());
                BULK_PART
            }
            MirrorRecord::Ownership {
                spi,
                dir,
                owner,
                generation,
                bound,
                kind,
            } => {
                out.extend(spi.to_be_bytes());
                out.push(dir.code());
                out.push(kind.code());
                out.extend([0u8; 2]);
                out.extend(owner.to_be_bytes());
                out.extend([0u8; 4]);
                out.extend(generation.to_be_bytes());
                out.extend(bound.to_be_bytes());
                OWNERSHIP
            }
            MirrorRecord::Query { spi, dir } => {
                out.extend(spi.to_be_bytes());
                out.push(dir.code());
                out.extend([0u8; 3]);
                QUERY
            }
            MirrorRecord::History { spi, dir, value } => {
                out.extend(spi.to_be_bytes());
                out.push(dir.code());
                out.push(u8::from(value.is_some()));
                out.extend([0u8; 2]);
                out.extend(value.unwrap_or(0).to_be_bytes());
                HISTORY
            }
            MirrorRecord::Past { spi, dir, value } => {
                out.extend(spi.to_be_bytes());
                out.push(dir.code());
                out.extend([0u8; 3]);
                out.extend(value.to_be_bytes());
                PAST
            }
            MirrorRecord::Goodbye { kind } => {
                out.push(match kind {
                    GoodbyeKind::Leaving => 0,
                    GoodbyeKind::Heard => 1,
                    GoodbyeKind::Refused => 2,
                });
                out.extend([0u8; 3]);
                GOODBYE
            }
            MirrorRecord::Unknown(t) => *t,
        };
        let body = (out.len() - start - RECORD_HEADER_LEN) as u16;
        out[start] = ty;
        out[start + 1..start + 3].copy_from_slice(&body.to_be_bytes());
    }

    /// Reads one record from the front of `b`; returns it and its length.
    pub fn parse(b: &[u8]) -> Result<(Self, usize)> {
        need(Layer::Mirror, b, RECORD_HEADER_LEN)?;
        let ty = b[0];
        let len = usize::from(be16(b, 1));
        need(Layer::Mirror, b, RECORD_HEADER_LEN + len)?;
        let body = &b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
        let r = match ty {
            SA_STATE => MirrorRecord::SaState(SaState::parse_body(body)?),
            HEARTBEAT => {
                exact(body, 24)?;
                MirrorRecord::Heartbeat {
                    now_ms: be64(body, 0),
                    owned: be32(body, 8),
                    peer_alive: be32(body, 12) != 0,
                    generation: be64(body, 16),
                }
            }
            LEASE_ACK => {
                exact(body, 16)?;
                MirrorRecord::LeaseAck {
                    spi: be32(body, 0),
                    dir: Direction::from_code(body[4])?,
                    lease: be64(body, 8),
                }
            }
            BULK_REQUEST => {
                exact(body, 0)?;
                MirrorRecord::BulkRequest
            }
            BULK_RESEND => {
                if body.len() < 8 || (body.len() - 8) % 4 != 0 {
                    return Err(malformed("bulk resend list is not whole part numbers"));
                }
                if (body.len() - 8) / 4 > MAX_RESEND_PARTS {
                    return Err(malformed("bulk resend of more than 2048 parts"));
                }
                MirrorRecord::BulkResend {
                    bulk: be64(body, 0),
                    parts: body[8..]
                        .chunks_exact(4)
                        .map(|p| u32::from_be_bytes(p.try_into().expect("4 bytes")))
                        .collect(),
                }
            }
            BULK_PART => {
                exact(body, 16)?;
                let parts = be32(body, 12);
                MirrorRecord::BulkPart {
                    bulk: be64(body, 0),
                    part: be32(body, 8),
                    parts: parts & !PART_LAST,
                    last: parts & PART_LAST != 0,
                }
            }
            OWNERSHIP => {
                exact(body, 32)?;
                MirrorRecord::Ownership {
                    spi: be32(body, 0),
                    dir: Direction::from_code(body[4])?,
                    owner: be32(body, 8),
                    generation: be64(body, 16),
                    bound: be64(body, 24),
                    kind: OwnershipKind::from_code(body[5])?,
                }
            }
            QUERY => {
                exact(body, 8)?;
                MirrorRecord::Query {
                    spi: be32(body, 0),
                    dir: Direction::from_code(body[4])?,
                }
            }
            HISTORY => {
                exact(body, 16)?;
                MirrorRecord::History {
                    spi: be32(body, 0),
                    dir: Direction::from_code(body[4])?,
                    value: match body[5] {
                        0 => None,
                        1 => Some(be64(body, 8)),
                        _ => return Err(malformed("history flag is neither 0 nor 1")),
                    },
                }
            }
            PAST => {
                exact(body, 16)?;
                MirrorRecord::Past {
                    spi: be32(body, 0),
                    dir: Direction::from_code(body[4])?,
                    value: be64(body, 8),
                }
            }
            GOODBYE => {
                exact(body, 4)?;
                MirrorRecord::Goodbye {
                    kind: match body[0] {
                        0 => GoodbyeKind::Leaving,
                        1 => GoodbyeKind::Heard,
                        2 => GoodbyeKind::Refused,
                        _ => return Err(malformed("unknown goodbye kind")),
                    },
                }
            }
            other => MirrorRecord::Unknown(other),
        };
        Ok((r, RECORD_HEADER_LEN + len))
    }
}

/// Reads every record between the header and the MAC; the count must match
/// the header's. `frame` may carry link padding after the MAC.
pub fn parse_records(frame: &[u8]) -> Result<(MirrorHeader, Vec<MirrorRecord>)> {
    let frame = unpadded(frame)?;
    let h = MirrorHeader::parse(frame)?;
    let mut body = &frame[HEADER_LEN..frame.len() - MAC_LEN];
    let mut records = Vec::with_capacity(usize::from(h.records));
    while !body.is_empty() {
        let (r, n) = MirrorRecord::parse(body)?;
        records.push(r);
        body = &body[n..];
    }
    if records.len() != usize::from(h.records) {
        return Err(malformed("record count differs from the header's"));
    }
    Ok((h, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = MirrorRecord> {
        let dir = prop_oneof![Just(Direction::Outbound), Just(Direction::Inbound)];
        prop_oneof![
            (
                any::<u32>(),
                dir.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u64>(), 0..70),
                any::<bool>()
            )
                .prop_map(
                    |(spi, dir, value, bytes, packets, sent_to, bitmap, copy)| {
                        MirrorRecord::SaState(SaState {
                            spi,
                            dir,
                            value,
                            bytes,
                            packets,
                            sent_to,
                            bitmap,
                            copy,
                        })
                    }
                ),
            (any::<u64>(), any::<u32>(), any::<bool>(), any::<u64>()).prop_map(
                |(now_ms, owned, peer_alive, generation)| MirrorRecord::Heartbeat {
                    now_ms,
                    owned,
                    peer_alive,
                    generation
                }
            ),
            (any::<u32>(), dir.clone(), any::<u64>())
                .prop_map(|(spi, dir, lease)| MirrorRecord::LeaseAck { spi, dir, lease }),
            Just(MirrorRecord::BulkRequest),
            (any::<u64>(), proptest::collection::vec(any::<u32>(), 0..40))
                .prop_map(|(bulk, parts)| MirrorRecord::BulkResend { bulk, parts }),
            (any::<u64>(), any::<u32>(), 0..PART_LAST, any::<bool>()).prop_map(
                |(bulk, part, parts, last)| MirrorRecord::BulkPart {
                    bulk,
                    part,
                    parts,
                    last
                }
            ),
            (
                any::<u32>(),
                dir.clone(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                0u8..5
            )
                .prop_map(|(spi, dir, owner, generation, bound, k)| {
                    MirrorRecord::Ownership {
                        spi,
                        dir,
                        owner,
                        generation,
                        bound,
                        kind: OwnershipKind::from_code(k).expect("0..5"),
                    }
                }),
            (any::<u32>(), dir.clone()).prop_map(|(spi, dir)| MirrorRecord::Query { spi, dir }),
            (any::<u32>(), dir.clone(), any::<Option<u64>>())
                .prop_map(|(spi, dir, value)| MirrorRecord::History { spi, dir, value }),
            (any::<u32>(), dir, any::<u64>()).prop_map(|(spi, dir, value)| MirrorRecord::Past {
                spi,
                dir,
                value
            }),
            prop_oneof![
                Just(GoodbyeKind::Leaving),
                Just(GoodbyeKind::Heard),
                Just(GoodbyeKind::Refused)
            ]
            .prop_map(|kind| MirrorRecord::Goodbye { kind }),
        ]
    }

    fn frame(h: &MirrorHeader, records: &[MirrorRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        h.emit(&mut out);
        for r in records {
            r.emit(&mut out);
        }
        set_length(&mut out);
        out.extend([0u8; MAC_LEN]);
        out
    }

    /// The bytes of a header and an SA state record, field by field as the
    /// module's documentation and `field`/`sa_field` lay them out.
    #[test]
    fn header_and_sa_state_bytes_are_as_laid_out() {
        let h = MirrorHeader {
            flags: FLAG_SYNCED,
            records: 1,
            node: 0x0102_0304,
            epoch: 0x1112_1314_1516_1718,
            counter: 0x2122_2324_2526_2728,
            peer_epoch: 0x3132_3334_3536_3738,
        };
        let state = SaState {
            spi: 0xa1a2_a3a4,
            dir: Direction::Inbound,
            value: 0xb1b2_b3b4_b5b6_b7b8,
            bytes: 0xc1c2_c3c4_c5c6_c7c8,
            packets: 0xd1d2_d3d4_d5d6_d7d8,
            sent_to: 0xf1f2_f3f4_f5f6_f7f8,
            bitmap: vec![0xe1e2_e3e4_e5e6_e7e8],
            copy: true,
        };
        let mut f = Vec::new();
        h.emit(&mut f);
        MirrorRecord::SaState(state.clone()).emit(&mut f);
        set_length(&mut f);
        assert_eq!(f.len(), h.buffer_len() + state.buffer_len());
        let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            [
                "05",
                "01",
                "0001",
                "005b",
                "0000",
                "01020304",
                "1112131415161718",
                "2122232425262728",
                "3132333435363738", // header
                "01",
                "0034", // record type and body length
                "a1a2a3a4",
                "01",
                "01",
                "0000",
                "b1b2b3b4b5b6b7b8",
                "c1c2c3c4c5c6c7c8",
                "d1d2d3d4d5d6d7d8",
                "f1f2f3f4f5f6f7f8",
                "0001",
                "0000",
                "e1e2e3e4e5e6e7e8", // body
            ]
            .concat()
        );
    }

    proptest! {
        #[test]
        fn buffer_len_is_what_emit_appends(r in record()) {
            let mut out = Vec::new();
            r.emit(&mut out);
            prop_assert_eq!(r.buffer_len(), out.len());
        }

        #[test]
        fn header_buffer_len_is_what_emit_appends(flags: u8, records: u16, node: u32, epoch: u64) {
            let h = MirrorHeader { flags, records, node, epoch, counter: !epoch, peer_epoch: epoch ^ 1 };
            let mut out = vec![7u8];
            h.emit(&mut out);
            prop_assert_eq!(out.len(), 1 + h.buffer_len());
            prop_assert_eq!(MirrorHeader::parse(&[&out[1..], &[0; MAC_LEN]].concat()).unwrap(), h);
        }

        #[test]
        fn round_trip(node: u32, epoch: u64, counter: u64, records in proptest::collection::vec(record(), 0..8)) {
            let h = MirrorHeader { flags: 0, records: records.len() as u16, node, epoch, counter, peer_epoch: epoch ^ counter };
            let f = frame(&h, &records);
            prop_assert_eq!(parse_records(&f).unwrap(), (h, records));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_records(&data);
        }

        #[test]
        fn truncation_is_an_error(records in proptest::collection::vec(record(), 1..4), cut in 1usize..40) {
            let h = MirrorHeader { flags: 0, records: records.len() as u16, node: 1, epoch: 2, counter: 3, peer_epoch: 4 };
            let mut f = frame(&h, &records);
            let mac = f.split_off(f.len() - MAC_LEN);
            // At least one byte of the records goes; the header stays.
            let keep = f.len().saturating_sub(cut).max(HEADER_LEN);
            f.truncate(keep);
            f.extend(mac);
            prop_assert!(parse_records(&f).is_err());
        }
    }

    #[test]
    fn unknown_types_are_skipped_and_counts_checked() {
        let h = MirrorHeader {
            flags: 0,
            records: 2,
            node: 1,
            epoch: 1,
            counter: 1,
            peer_epoch: 0,
        };
        let f = frame(&h, &[MirrorRecord::Unknown(99), MirrorRecord::BulkRequest]);
        assert_eq!(
            parse_records(&f).unwrap().1,
            vec![MirrorRecord::Unknown(99), MirrorRecord::BulkRequest]
        );
        let bad = frame(
            &MirrorHeader { records: 3, ..h },
            &[MirrorRecord::BulkRequest],
        );
        assert!(parse_records(&bad).is_err());
    }

    /// A resend request's bytes: its bulk number, then each part number;
    /// a bulk part's: number, part, then parts with the top bit marking
    /// its sending's last.
    #[test]
    fn bulk_resend_and_part_bytes_are_as_laid_out() {
        let mut out = Vec::new();
        MirrorRecord::BulkResend {
            bulk: 0x0102_0304_0506_0708,
            parts: vec![7, 0x1122_3344],
        }
        .emit(&mut out);
        MirrorRecord::BulkPart {
            bulk: 9,
            part: 3,
            parts: 4,
            last: true,
        }
        .emit(&mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            [
                "0a0010",
                "0102030405060708",
                "00000007",
                "11223344", // resend
                "050010",
                "0000000000000009",
                "00000003",
                "80000004", // part
            ]
            .concat()
        );
    }

    proptest! {
        /// A resend body that is not a bulk number and whole part numbers
        /// (cut within a number, or shorter than the bulk number) is an
        /// error, never a panic nor a shorter list.
        #[test]
        fn a_cut_resend_list_is_an_error(parts in proptest::collection::vec(any::<u32>(), 0..20), cut in 1usize..4) {
            let mut out = Vec::new();
            MirrorRecord::BulkResend { bulk: 1, parts: parts.clone() }.emit(&mut out);
            let body = out.len() - RECORD_HEADER_LEN - cut;
            out.truncate(out.len() - cut);
            out[1..3].copy_from_slice(&(body as u16).to_be_bytes());
            prop_assert!(MirrorRecord::parse(&out).is_err());
        }
    }

    #[test]
    fn a_resend_of_too_many_parts_is_refused_and_never_sent() {
        let many = MirrorRecord::BulkResend {
            bulk: 1,
            parts: (0..MAX_RESEND_PARTS as u32 + 5).collect(),
        };
        let mut out = Vec::new();
        many.emit(&mut out);
        assert_eq!(out.len(), many.buffer_len());
        let (parsed, _) = MirrorRecord::parse(&out).unwrap();
        assert_eq!(
            parsed,
            MirrorRecord::BulkResend {
                bulk: 1,
                parts: (0..MAX_RESEND_PARTS as u32).collect(),
            },
            "the first MAX_RESEND_PARTS go"
        );
        // A body that claims one more part than that.
        let mut bad = out.clone();
        bad.extend([0u8; 4]);
        let len = (bad.len() - RECORD_HEADER_LEN) as u16;
        bad[1..3].copy_from_slice(&len.to_be_bytes());
        assert!(MirrorRecord::parse(&bad).is_err());
    }

    #[test]
    fn link_padding_after_the_mac_is_not_part_of_the_frame() {
        let h = MirrorHeader {
            flags: 0,
            records: 1,
            node: 1,
            epoch: 7,
            counter: 1,
            peer_epoch: 9,
        };
        let f = frame(&h, &[MirrorRecord::BulkRequest]);
        // Ethernet pads to 60 bytes (this frame is past that with its
        // header); a link or driver may add a trailer all the same.
        let mut padded = f.clone();
        padded.resize(f.len() + 12, 0);
        assert_eq!(unpadded(&padded).unwrap(), &f[..]);
        assert_eq!(
            parse_records(&padded).unwrap(),
            (h, vec![MirrorRecord::BulkRequest])
        );
        let mut short = f.clone();
        short[field::LENGTH].copy_from_slice(&(HEADER_LEN as u16 - 1).to_be_bytes());
        assert!(unpadded(&short).is_err(), "a length inside the header");
        short[field::LENGTH].copy_from_slice(&(f.len() as u16).to_be_bytes());
        assert!(unpadded(&short).is_err(), "a length past the end");
    }
}
