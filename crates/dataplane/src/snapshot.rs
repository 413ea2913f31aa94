//! A worker's counters and SAs at one moment, taken on request (a command
//! in its ring) so that nothing is copied while nobody asks: what the
//! control socket's `stats`, `sa_list` and the Prometheus exposition show.

use espgate_esp::{DropCounters, Lifetime, SaCounters};
use espgate_io::QueueStats;
use hdrhistogram::Histogram;

use crate::counters::WorkerCounters;

/// One SA as its worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSnapshot {
    /// SPI.
    pub spi: u32,
    /// Outbound or inbound.
    pub direction: espgate_esp::Direction,
    /// The worker that owns it.
    pub worker: usize,
    /// Running here (else parked: its home is the peer, or it was handed
    /// back).
    pub active: bool,
    /// Outbound: the last sequence number used. Inbound: the replay
    /// window's top.
    pub seq: u64,
    /// The first sequence number the lease does not allow the SA to use
    /// (outbound) or accept (inbound) (`u64::MAX`: no lease).
    pub limit: Option<u64>,
    /// Packets, bytes and drops by reason.
    pub counters: SaCounters,
    /// Its lifetime limits.
    pub lifetime: Lifetime,
    /// Outbound: sequence numbers left before it is exhausted.
    pub seq_left: Option<u64>,
}

impl SaSnapshot {
    /// Packets left before the hard packet limit, if it has one.
    pub fn packets_left(&self) -> Option<u64> {
        self.lifetime
            .hard_packets
            .map(|h| h.saturating_sub(self.counters.packets))
    }

    /// Bytes left before the hard byte limit, if it has one.
    pub fn bytes_left(&self) -> Option<u64> {
        self.lifetime
            .hard_bytes
            .map(|h| h.saturating_sub(self.counters.bytes))
    }
}

/// One worker at one moment.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// Worker index.
    pub id: usize,
    /// Its counters.
    pub counters: WorkerCounters,
    /// Its queues' counters, by port name.
    pub queues: Vec<(String, QueueStats)>,
    /// Drops of its SAD that reached no SA.
    pub sad_drops: DropCounters,
    /// Burst processing times so far (one burst in
    /// [`TIMED_EVERY`](crate::worker::TIMED_EVERY)), in nanoseconds.
    pub burst_ns: Histogram<u64>,
    /// Its SAs.
    pub sas: Vec<SaSnapshot>,
}
