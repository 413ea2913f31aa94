//! The `stats` answer: per-worker counters and their totals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ByReason;

/// `stats`: per-worker counters, their totals, and the commands still
/// waiting in the workers' rings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Each worker, by index.
    pub workers: Vec<WorkerStats>,
    /// The sums.
    pub total: Totals,
}

/// One worker's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Frames received from ports.
    pub rx: u64,
    /// Frames sent to ports.
    pub tx: u64,
    /// Frames encrypted.
    pub encrypted: u64,
    /// Frames decrypted.
    pub decrypted: u64,
    /// Frames passed on as plaintext by a bypass rule.
    pub bypassed: u64,
    /// Frames taken from other workers.
    pub handoff_in: u64,
    /// Frames handed to the worker owning their SA.
    pub handoff_out: u64,
    /// ARP answers sent.
    pub arp_replies: u64,
    /// ARP requests sent.
    pub arp_requests: u64,
    /// ICMP errors sent.
    pub icmp_errors: u64,
    /// SA commands carried out.
    pub commands: u64,
    /// SA progress records handed to the mirror task.
    pub progress: u64,
    /// Progress records dropped because the mirror's ring was full.
    pub progress_full: u64,
    /// Packets for the node itself handed to the kernel through the punt
    /// device.
    pub punted: u64,
    /// Packets the kernel sent through the punt device that went out of a
    /// port.
    pub punt_sent: u64,
    /// Frames for an SA parked here sent on to the peer's MAC on the port
    /// they came from.
    pub redirected: u64,
    /// Frames the peer sent on, held until their SA started here.
    pub held: u64,
    /// The node's drops by reason, every reason named.
    pub drops: ByReason,
    /// ESP drops that reached no SA, by reason, every reason named.
    pub esp_drops_no_sa: ByReason,
    /// Its queues' counters, by port name.
    pub queues: BTreeMap<String, QueueCounts>,
    /// How long its bursts took.
    pub burst_ns: BurstNs,
}

/// One queue's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Transmit bursts the queue did not take whole.
    pub tx_full: u64,
    /// Frames received too long for a buffer (merged by the kernel),
    /// dropped.
    pub rx_too_long: u64,
    /// Frames whose TCP or UDP checksum the kernel left unfilled,
    /// completed by the port.
    pub rx_csum_completed: u64,
}

/// A worker's burst times, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstNs {
    /// Bursts recorded.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// The longest.
    pub max: u64,
    /// Quantiles.
    pub quantiles: BurstQuantiles,
}

/// The burst-time quantiles, keyed by quantile as the answer writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurstQuantiles {
    /// The median.
    #[serde(rename = "0.5")]
    pub p50: u64,
    /// The 90th percentile.
    #[serde(rename = "0.9")]
    pub p90: u64,
    /// The 99th percentile.
    #[serde(rename = "0.99")]
    pub p99: u64,
    /// The 99.9th percentile.
    #[serde(rename = "0.999")]
    pub p999: u64,
}

impl BurstQuantiles {
    /// The quantiles, in the order of the fields.
    pub const AT: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
}

/// The workers' counters summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Frames received from ports.
    pub rx: u64,
    /// Frames sent to ports.
    pub tx: u64,
    /// Frames encrypted.
    pub encrypted: u64,
    /// Frames decrypted.
    pub decrypted: u64,
    /// Frames passed on as plaintext by a bypass rule.
    pub bypassed: u64,
    /// Packets for the node itself handed to the kernel through the punt
    /// device.
    pub punted: u64,
    /// Packets the kernel sent through the punt device that went out of a
    /// port.
    pub punt_sent: u64,
    /// Frames for an SA parked here sent on to the peer's MAC on the port
    /// they came from.
    pub redirected: u64,
    /// Frames the peer sent on, held until their SA started here.
    pub held: u64,
    /// The node's drops by reason, every reason named.
    pub drops: ByReason,
    /// Packets the SAs dropped waiting for a lease.
    pub lease_stalls: u64,
    /// Lifetimes crossed and sequence spaces running low or out, by kind,
    /// every kind named (each SA tells each once).
    pub sa_events: ByReason,
    /// SA commands still waiting in the workers' rings.
    pub commands_pending: usize,
}
