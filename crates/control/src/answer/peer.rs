//! The `peer` answer: the pair and its mirror link.

use serde::{Deserialize, Serialize};

use super::{ByReason, required};

/// `peer`: the pair, `null` for a node without a mirror link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The pair and its link.
    #[serde(deserialize_with = "required")]
    pub mirror: Option<PairView>,
}

/// A pair node's view of its peer and of the mirror link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairView {
    /// This node's id in the pair.
    #[serde(deserialize_with = "required")]
    pub node: Option<u32>,
    /// The peer's id.
    #[serde(deserialize_with = "required")]
    pub peer: Option<u32>,
    /// The peer is heard.
    pub peer_alive: bool,
    /// The peer's bulk sync completed.
    pub synced: bool,
    /// SAs whose home is the peer that this node runs.
    pub holding: usize,
    /// Peer SAs in the standby table.
    pub standby: usize,
    /// Items waiting to be sent on the mirror link.
    pub queued: usize,
    /// Mirror frames built for sending.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// SA state records sent.
    pub states_sent: u64,
    /// Lease acknowledgements sent.
    pub acks_sent: u64,
    /// Mirror frames accepted.
    pub frames_received: u64,
    /// Records about SAs this node does not know, or of unknown types.
    pub records_ignored: u64,
    /// SAs taken over.
    pub taken_over: u64,
    /// SAs handed back.
    pub handed_back: u64,
    /// Bulk syncs received with frames lost on the way, and so asked for
    /// again.
    pub bulks_incomplete: u64,
    /// SAs told to have waited at their limit for a second (`sa_stalled`).
    pub stall_alarms: u64,
    /// Times the dead peer's SAs were told to be run by nobody for a
    /// second (`orphaned`).
    pub orphan_alarms: u64,
    /// ESN SAs held for starting beyond their far end's reach
    /// (`beyond_reach`).
    pub reach_alarms: u64,
    /// Mirror frames refused, by reason (every reason named).
    pub rejected: ByReason,
    /// This node's packet flow has failed (a link or tracked next hop
    /// down, a worker stalled): its SAs go to the peer.
    pub flow_failed: bool,
    /// The peer's packet flow has failed: nothing is handed to it.
    pub peer_flow_failed: bool,
    /// Workers whose loop stands still.
    pub workers_stalled: usize,
}
