//! Commands to the worker that owns an SA, through a lock-free ring per
//! worker (a worker polls its ring every loop and never blocks on it): the
//! mirror raises lease limits and moves SAs between nodes with them, the
//! control socket will manage SAs with them.

use espgate_esp::Direction;

/// A change to one SA, carried out by the worker that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaCommand {
    /// The outbound SA may use sequence numbers below `limit` only.
    Limit {
        /// SPI.
        spi: u32,
        /// First sequence number it must not use (`u64::MAX`: none).
        limit: u64,
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
    /// Stop running the SA here: its packets are dropped as `standby` until
    /// it is activated again.
    Deactivate {
        /// SPI.
        spi: u32,
        /// Which SA of that SPI.
        direction: Direction,
    },
}

impl SaCommand {
    /// The SA the command is about.
    pub fn sa(&self) -> (u32, Direction) {
        match self {
            SaCommand::Limit { spi, .. } => (*spi, Direction::Outbound),
            SaCommand::Activate { spi, direction, .. }
            | SaCommand::Deactivate { spi, direction } => (*spi, *direction),
        }
    }
}
