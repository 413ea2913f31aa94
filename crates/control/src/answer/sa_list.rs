//! The `sa_list` answer: every SA of the node.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{ByReason, required};
use crate::request::DirectionArg;

/// `sa_list`: every SA of the node, by SPI then direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaList {
    /// The SAs.
    pub sas: Vec<SaView>,
}

/// One SA: where it runs, how far it went, what it carried, and (in a
/// pair) what the mirror holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaView {
    /// SPI.
    pub spi: u32,
    /// Direction.
    pub direction: DirectionArg,
    /// The worker that owns it.
    pub worker: usize,
    /// The node it runs on while both live (`null` when neither its
    /// configuration nor a pair names one).
    #[serde(deserialize_with = "required")]
    pub home: Option<u32>,
    /// The node running it now, as far as this node knows.
    #[serde(deserialize_with = "required")]
    pub owner: Option<u32>,
    /// What the mirror holds for it (`null` outside a pair).
    #[serde(deserialize_with = "required")]
    pub mirror: Option<SaMirror>,
    /// Running, on standby, or replaced by a rekey and going.
    pub state: SaState,
    /// A retiring SA: milliseconds until it goes.
    #[serde(deserialize_with = "required")]
    pub retire_in_ms: Option<u64>,
    /// Its AEAD transform (`null` for an SA missing from the
    /// configuration).
    #[serde(deserialize_with = "required")]
    pub aead: Option<String>,
    /// Its outer addresses (`null` as `aead`).
    #[serde(deserialize_with = "required")]
    pub tunnel: Option<TunnelAddrs>,
    /// Extended sequence numbers (`null` as `aead`).
    #[serde(deserialize_with = "required")]
    pub esn: Option<bool>,
    /// Outbound: the last sequence number used. Inbound: the replay
    /// window's top.
    pub seq: u64,
    /// The first sequence number the lease does not allow (`null`: no
    /// lease).
    #[serde(deserialize_with = "required")]
    pub lease_end: Option<u64>,
    /// Packets carried.
    pub packets: u64,
    /// Bytes carried.
    pub bytes: u64,
    /// Drops by reason, the reasons that counted any.
    pub drops: ByReason,
    /// What its hard lifetime limits and its sequence space leave.
    pub lifetime_left: LifetimeLeft,
}

/// What an SA's state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaState {
    /// Running here.
    Active,
    /// Kept, not running here.
    Standby,
    /// Replaced by a rekey; goes when its grace ends.
    Retiring,
}

impl std::fmt::Display for SaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            SaState::Active => "active",
            SaState::Standby => "standby",
            SaState::Retiring => "retiring",
        })
    }
}

/// What a pair's mirror holds for one SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaMirror {
    /// Ownership changes so far.
    pub generation: u64,
    /// What this node stores for it: the peer's last state or lease, or
    /// this node's own final state.
    #[serde(deserialize_with = "required")]
    pub stored: Option<u64>,
    /// An outbound SA running here: the lease the peer acknowledged.
    #[serde(deserialize_with = "required")]
    pub acked: Option<u64>,
}

/// An SA's outer addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelAddrs {
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
}

/// What an SA's hard lifetime limits and its sequence space leave
/// (`null`: no such limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeLeft {
    /// Packets left.
    #[serde(deserialize_with = "required")]
    pub packets: Option<u64>,
    /// Bytes left.
    #[serde(deserialize_with = "required")]
    pub bytes: Option<u64>,
    /// Outbound: sequence numbers left (takeovers use them up too).
    #[serde(deserialize_with = "required")]
    pub sequence: Option<u64>,
}
