//! What the mirror tells the node: events to act on, refusals, counters
//! and views of the pair for operators.

use espgate_wire::Direction;

/// Why this node refused to run its SAs without leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefused {
    /// The peer's frames still arrive: it is not isolated, and two owners
    /// without leases would use the same numbers.
    #[error("the peer is heard: a fence must follow a verified isolation")]
    PeerHeard,
    /// No bulk sync since this node started: it does not know how far its
    /// SAs went in its earlier life, so it cannot place them past it.
    #[error("not synchronised since it started: its SAs cannot be placed past its earlier life")]
    NotSynced,
}

/// Something the node should act on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MirrorEvent {
    /// The peer is heard (again), in this epoch.
    PeerAlive {
        /// Its epoch.
        epoch: u64,
    },
    /// The peer missed `dead_after` heartbeats.
    PeerDead,
    /// The peer's life ended with a goodbye, having handed every SA it
    /// ran to this node exactly: this node holds them all, with no lease
    /// waiting on the peer, until the peer's next life is handed its own
    /// back.
    PeerLeft,
    /// The peer heard this node's goodbye: the node may stop.
    Left,
    /// This node does not leave after all: the peer went silent before
    /// its goodbye went out, or it runs SAs again (it took some over).
    LeaveAbandoned,
    /// The peer says its packet flow has failed (`failed`), or works again:
    /// nothing is handed to it meanwhile, and a failback may follow once
    /// it works.
    PeerFlow {
        /// Failed (true) or working again (false).
        failed: bool,
    },
    /// An owned SA's limit changed: outbound, it may use sequence numbers
    /// below `limit`; inbound, it may accept only packets below it.
    LimitRaised {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
        /// The new limit (`u64::MAX`: none).
        limit: u64,
    },
    /// The peer's bulk sync is complete: this node knows its SAs' history.
    Synced {
        /// SA states the peer sent.
        records: u64,
    },
    /// This node now owns an SA (taken over, handed back, or recovered):
    /// outbound, the next packet gets sequence number `start`; inbound,
    /// the window top is `start` with `bitmap` below it.
    Activate {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
        /// First sequence number (outbound) or window top (inbound).
        start: u64,
        /// Inbound replay bitmap below the top.
        bitmap: Vec<u64>,
    },
    /// This node no longer owns an SA: stop using it (the dataplane's
    /// workers park it).
    Deactivate {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
    },
    /// An SA this node runs has waited at its limit for
    /// [`ALARM_AFTER_MS`](super::ALARM_AFTER_MS) or more: its lease is not
    /// acknowledged (the mirror link is down or losing most frames, and no
    /// fence lifted the leases), or the bulk sync has not completed.
    Stalled {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
    },
    /// A stalled SA goes on (its limit moved past), or no longer runs here.
    Unstalled {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: Direction,
    },
    /// The peer has been dead for [`ALARM_AFTER_MS`](super::ALARM_AFTER_MS)
    /// or more and `sas` SAs are still its: nobody runs them until a
    /// takeover is ordered (`takeover: auto` is off, or this node has not
    /// synchronised since it started).
    Orphaned {
        /// How many.
        sas: usize,
    },
    /// An outbound ESN SA started [`ESN_REACH`](super::ESN_REACH) or more
    /// past `sent_to`, the first number after the last one known to have
    /// gone out: its far end would infer the wrong high half of every
    /// number from here. It is held (its limit is 0) until it is rekeyed.
    BeyondReach {
        /// SPI.
        spi: u32,
        /// Where it would have started.
        start: u64,
        /// The first number past those known sent.
        sent_to: u64,
    },
}

/// Counters of the mirror link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Frames built for sending.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// SA state records sent.
    pub states_sent: u64,
    /// Lease acknowledgements sent.
    pub acks_sent: u64,
    /// Frames accepted.
    pub frames_received: u64,
    /// Records about SAs this node does not know, or of unknown types.
    pub records_ignored: u64,
    /// Takeovers done (SAs).
    pub taken_over: u64,
    /// SAs handed back.
    pub handed_back: u64,
    /// Sendings of the peer's bulk (whole, or of the parts listed) that
    /// ended with parts missing, and so were asked for again (one sync may
    /// count several).
    pub bulks_incomplete: u64,
    /// Records that would change this node's state but were sent to another
    /// of its lives (recorded frames replayed, or frames in flight across a
    /// restart): ignored.
    pub records_other_life: u64,
    /// [`MirrorEvent::Stalled`] told.
    pub stall_alarms: u64,
    /// [`MirrorEvent::Orphaned`] told.
    pub orphan_alarms: u64,
    /// [`MirrorEvent::BeyondReach`] told (SAs held).
    pub reach_alarms: u64,
}

/// One SA of the pair as a node's mirror sees it (for operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSaView {
    /// SPI.
    pub spi: u32,
    /// Direction.
    pub dir: Direction,
    /// The node it runs on while both live.
    pub home: u32,
    /// The node running it now, as far as this node knows.
    pub owner: u32,
    /// Ownership changes so far.
    pub generation: u64,
    /// What this node stores for it: the peer's last state or lease (the
    /// standby copy), or this node's own final state.
    pub stored: Option<u64>,
    /// An outbound SA running here: the lease the peer acknowledged.
    pub acked: Option<u64>,
}
