//! The espgate node. Worker threads in run-to-completion loops take bursts
//! of frames from their queue of each port, classify them (ARP; ESP for us,
//! by SPI; plaintext by the SPD), run ESP with the SAs they own and send the
//! results on. Each SA belongs to exactly one worker; a frame that arrives
//! at another worker is handed over through a lock-free ring. Neighbours
//! come from the configuration and from ARP; an encapsulated packet too big
//! for the unprotected link is answered with an ICMP error. Packets for the
//! node's own addresses that it does not handle (IKE, ICMP echo) go to the
//! kernel through the punt device when the node has one.

pub mod admin;
pub mod aging;
pub mod classify;
pub mod command;
pub mod config;
pub mod counters;
pub mod flow;
pub mod held;
pub mod icmp;
pub mod keeper;
pub mod marks;
pub mod mirror_port;
pub mod mirror_task;
pub mod neigh;
pub mod node;
pub mod prefix;
pub mod progress;
pub mod punt;
pub mod snapshot;
pub mod spd;
pub mod spi_pool;
pub mod state_dir;
pub mod tables;
pub mod testbed;
pub mod worker;

pub use command::SaCommand;
pub use config::{
    Failback, MirrorSettings, NodeConfig, PerSide, PortBackend, PortConfig, PuntSettings, Role,
    SaEntry, StateSettings, Takeover, WorkersConfig,
};
pub use counters::{NodeDrop, WorkerCounters};
pub use mirror_task::{MirrorReport, NodeEvent, NodeEventKind, Order, PairStatus};
pub use node::{
    MAX_WORKERS, MirrorProblem, NodeError, NodeQueues, NodeReport, Refusal, RunningNode, SaProblem,
    start,
};

/// Headroom of buffers the node fills itself (ARP, ICMP).
pub const HEADROOM: usize = espgate_io::pool::HEADROOM;
