//! SA progress from the workers to the mirror task (and the keeper of the
//! node's marks): each worker pushes the
//! absolute state of an SA into its own lock-free ring when the SA crosses
//! a multiple of the mirror's interval (or, at its lease, how far it got or
//! how far the far end went), and never
//! waits: when the ring is full the record is dropped and counted, and the
//! next crossing or stall reports again. Records are absolute, so a lost
//! one costs only freshness, and the lease keeps that safe.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// Depth of each worker's progress ring.
pub const PROGRESS_DEPTH: usize = 4096;

/// The state of one SA at a reporting point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// An outbound SA.
    Outbound {
        /// SPI.
        spi: u32,
        /// Last sequence number used.
        seq: u64,
        /// Inner bytes sealed.
        bytes: u64,
        /// Packets sealed.
        packets: u64,
    },
    /// An inbound SA.
    Inbound {
        /// SPI.
        spi: u32,
        /// Replay window top.
        top: u64,
        /// The window below the top, in the mirror's layout.
        bitmap: Vec<u64>,
        /// Inner bytes accepted.
        bytes: u64,
        /// Packets accepted.
        packets: u64,
    },
    /// An SA parked for an exact hand-over, as its worker left it.
    Stopped {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: espgate_esp::Direction,
        /// The last sequence number used (outbound), or the window top
        /// (inbound).
        last: u64,
        /// The stop's stamp ([`SaCommand::Stop`](crate::command::SaCommand::Stop)).
        stamp: u64,
    },
    /// An inbound SA refusing authentic packets at its limit.
    InboundStall {
        /// SPI.
        spi: u32,
        /// The highest sequence number it refused.
        seq: u64,
    },
}

/// How far an SA went, for its marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// SPI.
    pub spi: u32,
    /// Which SA of that SPI.
    pub direction: espgate_esp::Direction,
    /// The highest sequence number used (outbound), the window top
    /// (inbound), or the highest authentic number an inbound SA refused at
    /// its limit (its mark must move past it for the SA to go on).
    pub pos: u64,
    /// An inbound SA's count of packets accepted, where the report has it:
    /// its rate is counted in packets, not in how far its top moved (the
    /// top leaps over whatever the far end sent elsewhere).
    pub packets: Option<u64>,
}

impl Progress {
    /// The SA it is about and how far it went or wants to go.
    pub fn reached(&self) -> Reached {
        use espgate_esp::Direction::{Inbound, Outbound};
        let (spi, direction, pos, packets) = match self {
            Progress::Outbound { spi, seq, .. } => (*spi, Outbound, *seq, None),
            Progress::Inbound {
                spi, top, packets, ..
            } => (*spi, Inbound, *top, Some(*packets)),
            Progress::InboundStall { spi, seq } => (*spi, Inbound, *seq, None),
            Progress::Stopped {
                spi,
                direction,
                last,
                ..
            } => (*spi, *direction, *last, None),
        };
        Reached {
            spi,
            direction,
            pos,
            packets,
        }
    }
}

/// What a worker needs to report progress (each SA knows its own
/// interval: `set_report_every`).
#[derive(Debug, Clone)]
pub struct Reporting {
    /// Its ring to the mirror task.
    pub ring: Arc<ArrayQueue<Progress>>,
}

/// Report a stalled SA on its first stalled packet (the first refused
/// since its limit last moved: each stall has one) and then every this
/// many, so its lease or mark can be extended once the mirror or the
/// keeper knows how far it got.
pub const STALL_REPORT_EVERY: u64 = 64;

/// The mirror frame (header to MAC) that carries one inbound SA's state
/// with a replay window of `window` packets, as a part of a bulk sync (its
/// bulk record beside it): the whole window travels as a bitmap, so a
/// large window needs a large `max_frame` (and a mirror link MTU to
/// match).
pub fn inbound_frame_len(window: u32) -> usize {
    espgate_mirror::state_frame_len((window as usize).div_ceil(64))
}

#[cfg(test)]
mod tests {
    use espgate_mirror::{Mirror, MirrorConfig, MirrorKey};
    use espgate_wire::Direction;

    use super::inbound_frame_len;

    /// The largest window a `max_frame` allows by `inbound_frame_len` goes
    /// through a bulk sync in frames no larger than it: the copy of an
    /// inbound SA with that window, in a part of its own.
    #[test]
    fn the_largest_window_a_frame_allows_fits_its_bulk_part() {
        let window = 15296;
        let max_frame = inbound_frame_len(window);
        assert!(max_frame <= 2034, "{max_frame}");
        let node = |me: u32, epoch: u64| {
            let cfg = MirrorConfig {
                node: me,
                peer: 3 - me,
                max_frame,
                ..MirrorConfig::default()
            };
            let key = MirrorKey::new(b"mirror test key, 32 bytes long!!").unwrap();
            let mut m = Mirror::new(cfg, key, epoch, 0);
            m.add_sa(0x10, Direction::Inbound, false, 1);
            m
        };
        let (mut a, mut b) = (node(1, 1), node(2, 2));
        let words = (window as usize).div_ceil(64);
        let mut biggest = 0;
        let mut run = |a: &mut Mirror, b: &mut Mirror, t: u64| {
            for _ in 0..10 {
                while let Some(f) = a.poll_transmit(t) {
                    biggest = biggest.max(f.len());
                    b.handle_frame(t, &f).unwrap();
                }
                while let Some(f) = b.poll_transmit(t) {
                    biggest = biggest.max(f.len());
                    a.handle_frame(t, &f).unwrap();
                }
            }
        };
        for t in [100, 200, 300] {
            run(&mut a, &mut b, t);
        }
        assert!(a.synced());
        let top = a.inbound_limit(0x10).unwrap() - 1;
        a.inbound_progress(0x10, top, &vec![u64::MAX; words], top, top);
        run(&mut a, &mut b, 400);
        assert_eq!(
            b.standby()
                .get(0x10, Direction::Inbound)
                .unwrap()
                .bitmap
                .len(),
            words
        );
        let mut a2 = node(1, 5);
        for t in [500, 600, 700] {
            run(&mut a2, &mut b, t);
        }
        assert!(a2.synced());
        assert!(
            biggest <= max_frame,
            "a {biggest}-byte frame, max_frame {max_frame}"
        );
    }
}
