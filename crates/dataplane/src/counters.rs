//! Counters of a worker: frames in and out, hand-offs between workers, and
//! drops that are the node's (ESP drops are counted per SA and per SAD).

use core::fmt;

/// Why the node (not ESP) dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum NodeDrop {
    /// Not a valid Ethernet frame.
    BadFrame,
    /// Addressed to another station's MAC.
    NotForUs,
    /// An EtherType the node does not handle.
    UnsupportedEthertype,
    /// An IP packet that does not parse.
    BadIp,
    /// For the node itself (it runs no services on its ports).
    Local,
    /// The SPD said discard, or no rule matched.
    Policy,
    /// A decrypted packet that no inbound rule for its SA matches.
    PolicyMismatch,
    /// TTL or hop limit ran out.
    TtlExceeded,
    /// Too big for the unprotected link once encapsulated (an ICMP error
    /// went back).
    TooBig,
    /// No on-link destination and no gateway.
    NoRoute,
    /// The next hop's MAC is unknown (an ARP request went out).
    ArpMiss,
    /// The ring to the owning worker was full.
    HandoffFull,
    /// The port could not take the frame.
    TxFull,
    /// IKE or a NAT keepalive: there is no IKE daemon behind this node.
    Ike,
    /// ESP processing dropped it (counted per SA or SAD by reason).
    Esp,
    /// Its SA is on standby on this node (owned by the peer).
    Standby,
}

impl NodeDrop {
    /// Every reason, in counter order.
    pub const ALL: [NodeDrop; 16] = [
        NodeDrop::BadFrame,
        NodeDrop::NotForUs,
        NodeDrop::UnsupportedEthertype,
        NodeDrop::BadIp,
        NodeDrop::Local,
        NodeDrop::Policy,
        NodeDrop::PolicyMismatch,
        NodeDrop::TtlExceeded,
        NodeDrop::TooBig,
        NodeDrop::NoRoute,
        NodeDrop::ArpMiss,
        NodeDrop::HandoffFull,
        NodeDrop::TxFull,
        NodeDrop::Ike,
        NodeDrop::Esp,
        NodeDrop::Standby,
    ];

    /// Name in counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            NodeDrop::BadFrame => "bad_frame",
            NodeDrop::NotForUs => "not_for_us",
            NodeDrop::UnsupportedEthertype => "unsupported_ethertype",
            NodeDrop::BadIp => "bad_ip",
            NodeDrop::Local => "local",
            NodeDrop::Policy => "policy",
            NodeDrop::PolicyMismatch => "policy_mismatch",
            NodeDrop::TtlExceeded => "ttl_exceeded",
            NodeDrop::TooBig => "too_big",
            NodeDrop::NoRoute => "no_route",
            NodeDrop::ArpMiss => "arp_miss",
            NodeDrop::HandoffFull => "handoff_full",
            NodeDrop::TxFull => "tx_full",
            NodeDrop::Ike => "ike",
            NodeDrop::Esp => "esp",
            NodeDrop::Standby => "standby",
        }
    }
}

impl fmt::Display for NodeDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounters {
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
    /// Frames handed to the worker owning their SA.
    pub handoff_out: u64,
    /// Frames taken from other workers.
    pub handoff_in: u64,
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
    /// Progress records dropped because the mirror's ring was full (a
    /// later crossing, or a stall, reports again).
    pub progress_full: u64,
    /// Gratuitous ARP announcements sent.
    pub announcements: u64,
    drops: [u64; NodeDrop::ALL.len()],
}

impl WorkerCounters {
    /// Counts a drop.
    #[inline]
    pub fn drop(&mut self, why: NodeDrop) {
        self.drops[why as usize] += 1;
    }

    /// Drops counted for `why`.
    pub fn drops(&self, why: NodeDrop) -> u64 {
        self.drops[why as usize]
    }

    /// Adds another worker's counters.
    pub fn add(&mut self, o: &WorkerCounters) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.encrypted += o.encrypted;
        self.decrypted += o.decrypted;
        self.bypassed += o.bypassed;
        self.handoff_out += o.handoff_out;
        self.handoff_in += o.handoff_in;
        self.arp_replies += o.arp_replies;
        self.arp_requests += o.arp_requests;
        self.icmp_errors += o.icmp_errors;
        self.commands += o.commands;
        self.progress += o.progress;
        self.progress_full += o.progress_full;
        self.announcements += o.announcements;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
    }

    /// The non-zero drop counters.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (NodeDrop, u64)> + '_ {
        NodeDrop::ALL
            .iter()
            .map(|&d| (d, self.drops(d)))
            .filter(|&(_, n)| n > 0)
    }
}
