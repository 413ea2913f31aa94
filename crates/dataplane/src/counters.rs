//! Counters of a worker: frames in and out, hand-offs between workers,
//! drops that are the node's (ESP drops are counted per SA and per SAD),
//! and its SAs' events.

use espgate_esp::{SaEvent, SaEventCounters};

espgate_counters::counter_table! {
    /// Why the node (not ESP) dropped a frame.
    pub enum NodeDrop;
    /// Node drops, one counter per [`NodeDrop`].
    pub struct NodeDrops;
    {
        /// Not a valid Ethernet frame.
        BadFrame => "bad_frame",
        /// Addressed to another station's MAC.
        NotForUs => "not_for_us",
        /// An EtherType the node does not handle.
        UnsupportedEthertype => "unsupported_ethertype",
        /// An IP packet that does not parse.
        BadIp => "bad_ip",
        /// For the node itself, which has no punt device to hand it to the
        /// kernel through (or neighbour discovery, which the node keeps).
        Local => "local",
        /// The SPD said discard, or no rule matched.
        Policy => "policy",
        /// It matched a trap rule: no SA yet (the IKE daemon was asked for
        /// one).
        Trap => "trap",
        /// A decrypted packet that no inbound rule for its SA matches.
        PolicyMismatch => "policy_mismatch",
        /// TTL or hop limit ran out.
        TtlExceeded => "ttl_exceeded",
        /// Too big for the unprotected link once encapsulated (an ICMP error
        /// went back).
        TooBig => "too_big",
        /// No on-link destination and no gateway.
        NoRoute => "no_route",
        /// The next hop's MAC stayed unknown while the packet waited for
        /// ARP's answer (or too many packets waited already).
        ArpMiss => "arp_miss",
        /// The ring to the owning worker was full.
        HandoffFull => "handoff_full",
        /// The port could not take the frame.
        TxFull => "tx_full",
        /// IKE or a NAT keepalive to the node, which has no punt device
        /// to hand it to an IKE daemon through.
        Ike => "ike",
        /// ESP processing dropped it (counted per SA or SAD by reason).
        Esp => "esp",
        /// Its SA is parked on this node (the peer runs it); printed
        /// `standby`, the name metrics, scripts and tests know.
        Parked => "standby",
        /// For the node itself, but the punt device's queue was full.
        PuntFull => "punt_full",
        /// For the node itself, but the punt device refused it otherwise
        /// (it is down, as after a move to another network namespace until
        /// it is set up there).
        PuntDown => "punt_down",
        /// Sent by the kernel through the punt device from an address that
        /// is not the node's.
        PuntForeign => "punt_foreign",
        /// Read from the punt device but not a whole IPv4 or IPv6 packet.
        PuntBad => "punt_bad",
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
    /// Frames for an SA parked here sent on, unchanged but for their
    /// Ethernet addresses, to the peer's MAC on the port they came from
    /// (the peer runs the SA; the sender has not followed its
    /// announcement yet).
    pub redirected: u64,
    /// Frames the peer sent on for an SA parked here, held until the SA
    /// starts here (the hand-over record was on its way); those that
    /// waited in vain are dropped as `standby`.
    pub held: u64,
    /// Packets for the node itself handed to the kernel through the punt
    /// device.
    pub punted: u64,
    /// Packets the kernel sent through the punt device that went out of a
    /// port.
    pub punt_sent: u64,
    drops: NodeDrops,
    sa_events: SaEventCounters,
}

impl WorkerCounters {
    /// Counts a drop.
    #[inline]
    pub fn drop(&mut self, why: NodeDrop) {
        self.drops.count(why);
    }

    /// Drops counted for `why`.
    pub fn drops(&self, why: NodeDrop) -> u64 {
        self.drops.get(why)
    }

    /// Counts an SA's event.
    pub fn sa_event(&mut self, event: SaEvent) {
        self.sa_events.count(event);
    }

    /// SA events counted of kind `event`.
    pub fn sa_events(&self, event: SaEvent) -> u64 {
        self.sa_events.get(event)
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
        self.redirected += o.redirected;
        self.held += o.held;
        self.punted += o.punted;
        self.punt_sent += o.punt_sent;
        self.drops.add(&o.drops);
        self.sa_events.add(&o.sa_events);
    }

    /// The non-zero drop counters.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (NodeDrop, u64)> + '_ {
        self.drops.nonzero()
    }
}
