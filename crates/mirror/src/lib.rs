//! Sans-IO mirroring of SA state between the two nodes of a pair: frames
//! authenticated with a key from the configuration, a receive filter that
//! drops forged, replayed and stale frames (each counted), and the standby
//! table that merges the peer's absolute values by maximum. No clocks, no
//! sockets: the node feeds frames in and takes frames out.

pub mod frame;
pub mod policy;
pub mod protocol;
pub mod receive;
pub mod standby;

pub use frame::{MirrorKey, seal};
pub use policy::{InboundPolicy, OutboundPolicy, OwnedInbound, OwnedOutbound};
pub use protocol::{
    ALARM_AFTER_MS, ESN_REACH, FenceRefused, HandOverRefused, InboundTakeover, LeaveRefused,
    MAX_TAKEOVER_JUMP, Mirror, MirrorConfig, MirrorConfigError, MirrorEvent, MirrorStats,
    PairSaView, SaOverrides, state_frame_len,
};
pub use receive::{PeerFilter, Reject, RejectCounters};
pub use standby::{Standby, StandbyTable};
