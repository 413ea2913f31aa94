//! What a node is made of, as the control layer hands it over: ports with
//! roles and addresses, workers, SAs with their owners, SPD rules and
//! static neighbours.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use espgate_esp::SaConfig;
use espgate_wire::ethernet::MacAddr;
use zeroize::Zeroizing;

use crate::prefix::Prefix;
use crate::spd::SpdRule;

/// Which side of the gateway a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The plaintext network this node protects.
    Protected,
    /// The network ESP travels over.
    Unprotected,
}

impl Role {
    /// Both sides, protected first.
    pub const BOTH: [Role; 2] = [Role::Protected, Role::Unprotected];
}

/// One `T` for each side of the gateway, indexed by [`Role`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerSide<T> {
    /// The protected side's.
    pub protected: T,
    /// The unprotected side's.
    pub unprotected: T,
}

impl<T> PerSide<T> {
    /// Each side's, made by `f`.
    pub fn from_fn(mut f: impl FnMut(Role) -> T) -> Self {
        PerSide {
            protected: f(Role::Protected),
            unprotected: f(Role::Unprotected),
        }
    }

    /// Both sides' with their roles, protected first.
    pub fn iter(&self) -> impl Iterator<Item = (Role, &T)> {
        [
            (Role::Protected, &self.protected),
            (Role::Unprotected, &self.unprotected),
        ]
        .into_iter()
    }

    /// Both sides' with their roles, protected first, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Role, &mut T)> {
        [
            (Role::Protected, &mut self.protected),
            (Role::Unprotected, &mut self.unprotected),
        ]
        .into_iter()
    }
}

impl<T> std::ops::Index<Role> for PerSide<T> {
    type Output = T;

    fn index(&self, role: Role) -> &T {
        match role {
            Role::Protected => &self.protected,
            Role::Unprotected => &self.unprotected,
        }
    }
}

impl<T> std::ops::IndexMut<Role> for PerSide<T> {
    fn index_mut(&mut self, role: Role) -> &mut T {
        match role {
            Role::Protected => &mut self.protected,
            Role::Unprotected => &mut self.unprotected,
        }
    }
}

/// How a port reaches the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortBackend {
    /// In-process rings (tests, benchmarks, the demo): the caller wires them.
    Mem,
    /// Linux AF_PACKET on a network interface.
    AfPacket {
        /// Interface name.
        interface: String,
    },
    /// A DPDK ethdev (feature `dpdk`): a NIC or a vdev the EAL arguments make.
    Dpdk {
        /// Its DPDK name: `net_af_packet0`, `0000:01:00.0`, ...
        device: String,
    },
    /// Frames read from and written to pcap files.
    Pcap {
        /// Capture to receive from.
        rx: Option<PathBuf>,
        /// Capture to write sent frames to.
        tx: Option<PathBuf>,
        /// Loop the input forever.
        repeat: bool,
    },
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Name, for logs and counters.
    pub name: String,
    /// Protected or unprotected side.
    pub role: Role,
    /// The backend.
    pub backend: PortBackend,
    /// MAC address; AF_PACKET ports default to the interface's.
    pub mac: Option<MacAddr>,
    /// The node's address on this link and the link's prefix.
    pub address: IpAddr,
    /// The link's prefix (on-link destinations).
    pub subnet: Prefix,
    /// Next hop for destinations off the link.
    pub gateway: Option<IpAddr>,
    /// Neighbours on the link the node's packet flow depends on (its next
    /// hops): in a pair, one that stops answering ARP fails the flow, as
    /// a link that goes down does (see `flow`).
    pub track: Vec<IpAddr>,
    /// Largest IP packet the link carries.
    pub mtu: usize,
}

/// Worker threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkersConfig {
    /// How many.
    pub count: usize,
    /// CPU core of each worker, if pinned.
    pub cores: Vec<usize>,
    /// Frames per receive burst.
    pub burst: usize,
    /// Upper bound of the idle back-off sleep, in microseconds (0: busy-poll).
    pub idle_sleep_us: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            count: 1,
            cores: Vec::new(),
            burst: 32,
            idle_sleep_us: 0,
        }
    }
}

/// An SA, the worker that owns it, and the node of the pair it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaEntry {
    /// The SA.
    pub sa: SaConfig,
    /// Owning worker; by default the SPI modulo the worker count.
    pub worker: Option<usize>,
    /// With mirroring: the node id the SA runs on while both live (`None`:
    /// this node). The other node keeps it parked.
    pub home: Option<u32>,
    /// With mirroring: this SA's own interval or quantity.
    pub mirror: espgate_mirror::SaOverrides,
}

/// When a node takes over its peer's SAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// As soon as the peer is declared dead.
    Auto,
    /// Only when told (the host processor, or an operator).
    Manual,
}

/// When a node hands the peer's SAs back after the peer returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// This long after the returning peer is heard (its bulk sync done).
    Auto {
        /// Delay in milliseconds.
        delay_ms: u64,
    },
    /// Only when told.
    Manual,
}

/// The mirror link of a pair and how the pair behaves (docs/design.md, "The
/// pair, by layer and module").
/// Its `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// Protocol settings: node ids, interval, quantity, lease, jumps,
    /// inbound mode, heartbeat, refresh.
    pub protocol: espgate_mirror::MirrorConfig,
    /// The frame MAC key (at least 16 bytes), wiped when dropped.
    pub key: Zeroizing<Vec<u8>>,
    /// The mirror port's name, for logs and counters.
    pub port_name: String,
    /// How the mirror port reaches the wire.
    pub port_backend: PortBackend,
    /// The mirror port's MAC (AF_PACKET: the interface's by default).
    pub port_mac: Option<MacAddr>,
    /// Where frames go; broadcast when unset (the link is point to point).
    pub peer_mac: Option<MacAddr>,
    /// The peer's addresses on this node's links: answered for and
    /// announced (gratuitous ARP) while this node holds the peer's SAs.
    pub peer_addresses: Vec<IpAddr>,
    /// When to take over.
    pub takeover: Takeover,
    /// When to hand back.
    pub failback: Failback,
    /// When a data port's link fails the node's packet flow (its SAs go
    /// to the peer) and restores it.
    pub link_watch: crate::flow::LinkWatch,
    /// A worker whose loop makes no turn this long (ms) has stalled: the
    /// node's packet flow fails until it turns again (0: not watched).
    pub worker_stall_ms: u64,
}

impl fmt::Debug for MirrorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorSettings")
            .field("protocol", &self.protocol)
            .field("key", &"<secret>")
            .field("port_name", &self.port_name)
            .field("port_backend", &self.port_backend)
            .field("port_mac", &self.port_mac)
            .field("peer_mac", &self.peer_mac)
            .field("peer_addresses", &self.peer_addresses)
            .field("takeover", &self.takeover)
            .field("failback", &self.failback)
            .field("link_watch", &self.link_watch)
            .field("worker_stall_ms", &self.worker_stall_ms)
            .finish()
    }
}

/// The node's own memory of its numbers (see `marks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// The node's state directory; `None`: nothing persisted, and a
    /// restart may reuse sequence numbers unless the peer holds the SAs.
    pub dir: Option<PathBuf>,
    /// How far ahead of each SA its mark is written: what a restart skips
    /// at most.
    pub ahead: u64,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: None,
            ahead: crate::marks::DEFAULT_AHEAD,
        }
    }
}

/// The punt port (see [`crate::punt`]): the TUN device through which the
/// node hands the kernel the packets for its own addresses that it does
/// not handle itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuntSettings {
    /// The device's name: made, or attached to if it exists.
    pub interface: String,
}

/// A static neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Its address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// Everything a node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// The protected port and the unprotected port.
    pub ports: Vec<PortConfig>,
    /// Workers.
    pub workers: WorkersConfig,
    /// SAs, both directions.
    pub sas: Vec<SaEntry>,
    /// Policy rules in order.
    pub spd: Vec<SpdRule>,
    /// Static neighbours (IPv6 next hops need one: there is no NDP yet).
    pub neighbours: Vec<Neighbour>,
    /// EAL arguments, when a port uses DPDK.
    pub dpdk_eal_args: Option<Vec<String>>,
    /// The pair's mirror link; `None` for a node on its own.
    pub mirror: Option<MirrorSettings>,
    /// Where and how far ahead the node persists its marks.
    pub state: StateSettings,
    /// The punt port; `None`: packets for the node that it does not
    /// handle are dropped (`ike`, `local`).
    pub punt: Option<PuntSettings>,
}

impl NodeConfig {
    /// The port with `role`.
    pub fn port(&self, role: Role) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.role == role)
    }

    /// The worker that owns SA `entry`.
    pub fn owner(&self, entry: &SaEntry) -> usize {
        entry
            .worker
            .unwrap_or(entry.sa.spi as usize % self.workers.count.max(1))
    }

    /// Whether SA `entry` runs here while both nodes of the pair live.
    pub fn is_home(&self, entry: &SaEntry) -> bool {
        match (&self.mirror, entry.home) {
            (Some(m), Some(home)) => home == m.protocol.node,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mirror settings with a key of 0xab bytes.
    fn settings() -> MirrorSettings {
        MirrorSettings {
            protocol: espgate_mirror::MirrorConfig::default(),
            key: vec![0xab; 32].into(),
            port_name: "mirror".into(),
            port_backend: PortBackend::Mem,
            port_mac: None,
            peer_mac: None,
            peer_addresses: Vec::new(),
            takeover: Takeover::Auto,
            failback: Failback::Manual,
            link_watch: crate::flow::LinkWatch::default(),
            worker_stall_ms: 500,
        }
    }

    #[test]
    fn debug_hides_the_mirror_key() {
        let m = settings();
        let text = format!("{m:?}");
        assert!(!text.contains("171"), "{text}");
        assert!(text.contains("key: \"<secret>\""), "{text}");
        assert!(text.contains("port_name: \"mirror\""), "{text}");
    }

    #[test]
    fn the_mirror_key_is_wiped_when_dropped() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let m = settings();
        wiped_on_drop(&m.key);
        assert_eq!(&m.key[..], &[0xab; 32][..]);
    }
}
