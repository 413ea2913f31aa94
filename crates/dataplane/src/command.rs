//! Commands to a worker, through a lock-free ring per worker (a worker
//! polls its ring every loop and never blocks on it): the mirror raises
//! lease limits and moves SAs between nodes with them, the keeper of the
//! node's state raises marks, the control socket
//! installs and removes SAs and asks for counters with them.

use std::sync::mpsc::Sender;

use espgate_esp::{Direction, InboundSa, OutboundSa};

use crate::snapshot::WorkerSnapshot;

/// A change to one SA, carried out by the worker that owns it, or a
/// question to a worker.
#[derive(Debug)]
pub enum SaCommand {
    /// The SA may use (outbound) or accept (inbound) sequence numbers
    /// below `limit` only.
    Limit {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
        /// First sequence number it must not use (`u64::MAX`: none).
        limit: u64,
    },
    /// The node's persisted high-water mark of the SA rose: it may use
    /// (outbound) or accept (inbound) sequence numbers below `mark` as
    /// far as its state directory is concerned (its lease limit still
    /// holds).
    Mark {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
        /// First sequence number the mark does not cover.
        mark: u64,
    },
    /// Run the SA here: outbound, the next packet gets sequence number
    /// `start`; inbound, the replay window becomes top `start` with
    /// `bitmap` below it (bit `i` of word `w` is `start - 64 w - i`).
    Activate {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
        /// Next sequence number, or window top.
        start: u64,
        /// Inbound replay bitmap.
        bitmap: Vec<u64>,
        /// Packets the SA carried before (mirrored), for its lifetime.
        packets: u64,
        /// Inner bytes it carried before.
        bytes: u64,
    },
    /// Park the SA (the mirror deactivated it here): its packets are
    /// dropped until it is activated again.
    Park {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
    },
    /// Park the SA and report its final state (a
    /// [`Progress::Stopped`](crate::progress::Progress::Stopped) carrying
    /// `stamp`): the mirror hands it over exactly.
    Stop {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
        /// Tells this stop's report from an earlier one's.
        stamp: u64,
    },
    /// Take a new outbound SA (built off the packet path); `parked`:
    /// parked until activated.
    InstallOutbound {
        /// The SA.
        sa: Box<OutboundSa>,
        /// Whether it starts parked.
        parked: bool,
    },
    /// Take a new inbound SA; `parked`: parked until activated.
    InstallInbound {
        /// The SA.
        sa: Box<InboundSa>,
        /// Whether it starts parked.
        parked: bool,
    },
    /// Forget an SA (the tables no longer send it here).
    Remove {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
    },
    /// A time limit of the SA passed (the node keeps the time, see
    /// [`crate::aging`]): soft, its lifetime event is raised; hard, also
    /// it stops.
    Expire {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
        /// The hard limit (else the soft one).
        hard: bool,
    },
    /// Send the worker's counters and SAs as they are now.
    Snapshot(Sender<WorkerSnapshot>),
}

impl SaCommand {
    /// The SA the command is about, if it is about one.
    pub fn sa(&self) -> Option<(u32, Direction)> {
        match self {
            SaCommand::Limit { spi, direction, .. }
            | SaCommand::Mark { spi, direction, .. }
            | SaCommand::Activate { spi, direction, .. }
            | SaCommand::Park { spi, direction }
            | SaCommand::Stop { spi, direction, .. }
            | SaCommand::Expire { spi, direction, .. }
            | SaCommand::Remove { spi, direction } => Some((*spi, *direction)),
            SaCommand::InstallOutbound { sa, .. } => Some((sa.spi(), Direction::Outbound)),
            SaCommand::InstallInbound { sa, .. } => Some((sa.spi(), Direction::Inbound)),
            SaCommand::Snapshot(_) => None,
        }
    }
}
