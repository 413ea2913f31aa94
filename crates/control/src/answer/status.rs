//! The `status` answer: whether the node runs, and its pair's health.

use serde::{Deserialize, Serialize};

use super::required;

/// `status`: a node waiting for its configuration, or running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Started with a control socket only: waits for `configure`.
    WaitingConfig,
    /// Running its configuration.
    Running {
        /// The node's name.
        node: String,
        /// Milliseconds since the process started.
        uptime_ms: u64,
        /// Its pair (`null` for a node on its own).
        #[serde(deserialize_with = "required")]
        pair: Option<PairHealth>,
    },
}

/// The pair as `status` tells it: enough for the host to tell the node's
/// life and whether it synchronised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairHealth {
    /// This node's mirror epoch: its life, new and larger at every start.
    pub epoch: u64,
    /// The peer is heard.
    pub peer_alive: bool,
    /// The peer's bulk sync completed.
    pub synced: bool,
    /// SAs whose home is the peer that this node runs.
    pub holding: usize,
    /// Peer SAs in the standby table.
    pub standby: usize,
    /// Mirror frames sent.
    pub frames_sent: u64,
    /// Mirror frames accepted.
    pub frames_received: u64,
    /// Mirror frames refused.
    pub rejected: u64,
    /// Its packet flow has failed (a link or tracked next hop down, a
    /// worker stalled): it handed its SAs to the peer, and takes none.
    pub flow_failed: bool,
}
