//! A node's configuration file.
//!
//! ```yaml
//! node: { name: a }
//! workers: { count: 1, cores: [0], burst: 32, idle_sleep_us: 100 }
//! ports:
//!   - name: lan
//!     role: protected            # protected (plaintext) | unprotected (ESP)
//!     backend: af_packet         # af_packet | pcap | mem | dpdk
//!     interface: a-lan           # af_packet: the interface
//!     mac: 02:00:00:00:01:01     # optional for af_packet (the interface's)
//!     address: 10.1.0.254/24     # the node's address on the link, and its prefix
//!     gateway: 10.1.0.1          # optional: next hop off the link
//!     track: [10.1.0.1]          # optional, a pair: next hops whose silence to ARP fails the flow
//!     mtu: 1500
//!   - name: wan
//!     role: unprotected
//!     backend: pcap
//!     rx_pcap: in.pcap           # pcap: frames to receive (optional)
//!     tx_pcap: out.pcap          # pcap: where sent frames go (optional)
//!     repeat: false              # pcap: loop the input
//!     mac: 02:00:00:00:01:02
//!     address: 172.16.0.1/24
//!   # a DPDK port: { name: wan, role: unprotected, backend: dpdk, device: net_af_packet1, address: ... }
//! # dpdk: { eal_args: [--no-huge, -m, "512", --no-pci, --vdev, "net_af_packet1,iface=eth2"] }   # with dpdk ports
//! sas:                           # as in an SA file, with direction required
//!   - { spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: 0x..., tunnel: { src: 172.16.0.1, dst: 172.16.0.2 }, worker: 0 }
//! spd:                           # first match wins; no match: discard
//!   - { direction: out, src: 10.1.0.0/24, dst: 10.2.0.0/24, protocol: any, sport: any, dport: 1-1024, action: protect, sa: 0x1000 }
//! neighbours:
//!   - { ip: 172.16.0.2, mac: 02:00:00:00:02:02 }
//! # mirror: { node: 1, peer: 2, key: 0x..., port: {...}, ... }   # a pair: see mirror_section
//! # state: { ahead: 1048576 }     # how far ahead marks are persisted (the directory: espgate run --state-dir)
//! # punt: { interface: espgate0 } # a TUN device: packets for the node that it does not handle go to the kernel
//! # an SA of a pair names its home node: { spi: ..., home: 2 }   # default: this node
//! # and may change the mirror defaults:  { spi: ..., mirror: { interval: 64, quantity: 256 } }
//! ```

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use espgate_dataplane::config::{
    MirrorSettings, Neighbour, PortBackend, PortConfig, PuntSettings, Role, SaEntry, StateSettings,
    WorkersConfig,
};
use espgate_dataplane::marks;
use espgate_dataplane::mirror_port::MAX_MIRROR_FRAME;
use espgate_dataplane::prefix::Prefix;
use espgate_dataplane::spd::{Action, SpdRule};
use espgate_dataplane::{MAX_WORKERS, NodeConfig};
use espgate_esp::Direction;
use espgate_wire::ethernet::MacAddr;
use espgate_wire::ip::protocol;
use serde::Deserialize;

use crate::error::{ConfigError, from_yaml, read_config};
use crate::hexkey::parse_u32;
use crate::mirror_section::{MirrorSpec, resolve_mirror};
use crate::sa_file::{SaSpec, resolve_sa};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    node: IdentitySpec,
    #[serde(default)]
    workers: Option<WorkersSpec>,
    ports: Vec<PortSpec>,
    #[serde(default)]
    sas: Vec<SaSpec>,
    #[serde(default)]
    spd: Vec<RuleSpec>,
    #[serde(default)]
    neighbours: Vec<NeighbourSpec>,
    dpdk: Option<DpdkSpec>,
    mirror: Option<MirrorSpec>,
    state: Option<StateSpec>,
    punt: Option<PuntSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PuntSpec {
    interface: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateSpec {
    #[serde(default = "default_ahead")]
    ahead: u64,
}

fn default_ahead() -> u64 {
    marks::DEFAULT_AHEAD
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DpdkSpec {
    eal_args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySpec {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkersSpec {
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    cores: Vec<usize>,
    #[serde(default = "default_burst")]
    burst: usize,
    #[serde(default)]
    idle_sleep_us: u64,
}

fn one() -> usize {
    1
}

fn default_burst() -> usize {
    32
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RoleSpec {
    Protected,
    Unprotected,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum BackendSpec {
    AfPacket,
    Dpdk,
    Pcap,
    Mem,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSpec {
    name: String,
    role: RoleSpec,
    backend: BackendSpec,
    interface: Option<String>,
    device: Option<String>,
    rx_pcap: Option<PathBuf>,
    tx_pcap: Option<PathBuf>,
    #[serde(default)]
    repeat: bool,
    mac: Option<String>,
    address: String,
    gateway: Option<IpAddr>,
    #[serde(default)]
    track: Vec<IpAddr>,
    #[serde(default = "default_mtu")]
    mtu: usize,
}

fn default_mtu() -> usize {
    1500
}

/// A rule's direction as node files spell it: `out` or `in`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DirSpec {
    Out,
    In,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ActionSpec {
    Protect,
    Bypass,
    Discard,
    Trap,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    direction: DirSpec,
    #[serde(default)]
    src: Option<String>,
    #[serde(default)]
    dst: Option<String>,
    #[serde(default)]
    protocol: Option<serde_norway::Value>,
    #[serde(default)]
    sport: Option<serde_norway::Value>,
    #[serde(default)]
    dport: Option<serde_norway::Value>,
    action: ActionSpec,
    #[serde(default)]
    sa: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighbourSpec {
    ip: IpAddr,
    mac: String,
}

/// Reads and validates a node configuration file. Paths inside it (pcap
/// files, key files) are relative to the file's folder.
pub fn load_node_file(path: &Path) -> Result<NodeConfig, ConfigError> {
    let c = read_config(path)?;
    parse_node(&c.text, &c.file, c.base)
}

/// Parses and validates node YAML text; every error names its line.
pub fn parse_node(text: &str, file: &str, base: &Path) -> Result<NodeConfig, ConfigError> {
    let spec: NodeSpec = from_yaml(text, file)?;
    resolve_node(spec, file, base).map_err(|e| e.placed_in(text, file))
}

/// Checks a parsed node file and turns it into the node's configuration.
fn resolve_node(spec: NodeSpec, file: &str, base: &Path) -> Result<NodeConfig, ConfigError> {
    let err = |path: String, msg: String| ConfigError::invalid(file, &path, msg);
    if spec.node.name.trim().is_empty() {
        return Err(err("node.name".into(), "must not be empty".into()));
    }
    let workers = match spec.workers {
        None => WorkersConfig::default(),
        Some(w) => WorkersConfig {
            count: w.count,
            cores: w.cores,
            burst: w.burst,
            idle_sleep_us: w.idle_sleep_us,
        },
    };
    if workers.count == 0 || workers.count > MAX_WORKERS {
        return Err(err(
            "workers.count".into(),
            format!("{} is outside 1..={MAX_WORKERS}", workers.count),
        ));
    }
    if !workers.cores.is_empty() && workers.cores.len() != workers.count {
        return Err(err(
            "workers.cores".into(),
            format!(
                "{} cores for {} workers",
                workers.cores.len(),
                workers.count
            ),
        ));
    }
    if workers.burst == 0 || workers.burst > 1024 {
        return Err(err(
            "workers.burst".into(),
            format!("{} is outside 1..=1024", workers.burst),
        ));
    }

    let mut ports = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let at = |k: &str| format!("ports[{i}].{k}");
        if !names.insert(p.name.clone()) {
            return Err(err(at("name"), format!("duplicate port name {:?}", p.name)));
        }
        let backend = match p.backend {
            BackendSpec::AfPacket => PortBackend::AfPacket {
                interface: p.interface.clone().ok_or_else(|| {
                    err(
                        at("interface"),
                        "missing: an af_packet port needs its interface".into(),
                    )
                })?,
            },
            BackendSpec::Pcap => PortBackend::Pcap {
                rx: p.rx_pcap.as_ref().map(|f| base.join(f)),
                tx: p.tx_pcap.as_ref().map(|f| base.join(f)),
                repeat: p.repeat,
            },
            BackendSpec::Dpdk => PortBackend::Dpdk {
                device: p.device.clone().ok_or_else(|| {
                    err(
                        at("device"),
                        "missing: a dpdk port needs its DPDK device name (e.g. net_af_packet0)"
                            .into(),
                    )
                })?,
            },
            BackendSpec::Mem => PortBackend::Mem,
        };
        if p.backend != BackendSpec::Dpdk && p.device.is_some() {
            return Err(err(at("device"), "only dpdk ports have a device".into()));
        }
        if p.backend == BackendSpec::Dpdk && spec.dpdk.is_none() {
            return Err(err(
                at("backend"),
                "a dpdk port needs the top-level dpdk: { eal_args: [...] } section".into(),
            ));
        }
        if p.backend != BackendSpec::AfPacket && p.interface.is_some() {
            return Err(err(
                at("interface"),
                "only af_packet ports have an interface".into(),
            ));
        }
        if p.backend != BackendSpec::Pcap && (p.rx_pcap.is_some() || p.tx_pcap.is_some()) {
            return Err(err(
                at("rx_pcap"),
                "only pcap ports read or write pcap files".into(),
            ));
        }
        let mac = match &p.mac {
            Some(m) => Some(
                m.parse::<MacAddr>()
                    .map_err(|e| err(at("mac"), e.to_string()))?,
            ),
            None if matches!(p.backend, BackendSpec::AfPacket | BackendSpec::Dpdk) => None,
            None => {
                return Err(err(
                    at("mac"),
                    "missing: only af_packet and dpdk ports can take the device's MAC".into(),
                ));
            }
        };
        let (addr, len) = p.address.split_once('/').ok_or_else(|| {
            err(
                at("address"),
                format!("{:?} needs a prefix length (ADDRESS/LENGTH)", p.address),
            )
        })?;
        let address: IpAddr = addr
            .parse()
            .map_err(|_| err(at("address"), format!("{addr:?} is not an IP address")))?;
        let subnet: Prefix = format!("{address}/{len}")
            .parse()
            .map_err(|e: String| err(at("address"), e))?;
        if let Some(g) = p.gateway
            && (!subnet.contains(&g))
        {
            return Err(err(
                at("gateway"),
                format!("{g} is not on the link {subnet}"),
            ));
        }
        if let Some(t) = p.track.iter().find(|t| !t.is_ipv4() || !subnet.contains(t)) {
            let why = if t.is_ipv4() {
                format!("{t} is not on the link {subnet}")
            } else {
                format!("{t}: only IPv4 next hops are tracked (by ARP)")
            };
            return Err(err(at("track"), why));
        }
        if !(576..=9216).contains(&p.mtu) {
            return Err(err(at("mtu"), format!("{} is outside 576..=9216", p.mtu)));
        }
        ports.push(PortConfig {
            name: p.name.clone(),
            role: match p.role {
                RoleSpec::Protected => Role::Protected,
                RoleSpec::Unprotected => Role::Unprotected,
            },
            backend,
            mac,
            address,
            subnet,
            gateway: p.gateway,
            track: p.track.clone(),
            mtu: p.mtu,
        });
    }
    for role in [Role::Protected, Role::Unprotected] {
        let n = ports.iter().filter(|p| p.role == role).count();
        if n != 1 {
            let name = if role == Role::Protected {
                "protected"
            } else {
                "unprotected"
            };
            return Err(err(
                "ports".into(),
                format!("need exactly one {name} port, found {n}"),
            ));
        }
    }

    let mirror = spec
        .mirror
        .as_ref()
        .map(|m| resolve_mirror(m, file, base))
        .transpose()?;
    if let Some(m) = &mirror
        && m.port_backend == PortBackend::Mem
        && ports.iter().any(|p| p.backend != PortBackend::Mem)
    {
        return Err(err(
            "mirror.port.backend".into(),
            "a mem mirror port needs mem ports throughout (the demo's in-memory pair)".into(),
        ));
    }
    if let Some(m) = &mirror {
        check_mirror_port(m, &ports).map_err(|(key, m)| err(key, m))?;
    }
    if let Some(m) = &mirror
        && m.worker_stall_ms > 0
        && m.worker_stall_ms.saturating_mul(100) < workers.idle_sleep_us
    {
        return Err(err(
            "mirror.worker_stall_ms".into(),
            format!(
                "{} ms is less than ten of the workers' longest idle sleeps (workers.idle_sleep_us: {}): an idle worker would look stalled",
                m.worker_stall_ms, workers.idle_sleep_us
            ),
        ));
    }
    if let Some(i) = ports.iter().position(|p| !p.track.is_empty())
        && mirror.as_ref().is_none_or(|m| m.link_watch.down_ms == 0)
    {
        return Err(err(
            format!("ports[{i}].track"),
            "a tracked next hop's silence hands the SAs to the peer: only a node with a mirror: section and link_down_ms above 0 tracks one".into(),
        ));
    }
    let sas = resolve_sas(&spec.sas, file, base, workers.count, mirror.as_ref(), &[])?;
    let spd = resolve_rules(&spec.spd, file, &sas, &[])?;

    let mut neighbours = Vec::new();
    for (i, n) in spec.neighbours.iter().enumerate() {
        let mac = n
            .mac
            .parse::<MacAddr>()
            .map_err(|e| err(format!("neighbours[{i}].mac"), e.to_string()))?;
        neighbours.push(Neighbour { ip: n.ip, mac });
    }
    let ahead = spec.state.map_or(marks::DEFAULT_AHEAD, |s| s.ahead);
    if !(marks::MIN_AHEAD..=marks::MAX_AHEAD).contains(&ahead) {
        return Err(err(
            "state.ahead".into(),
            format!(
                "{ahead}: from {} to 2^28 ({}): a restart skips up to this many numbers of each SA, which receivers must follow",
                marks::MIN_AHEAD,
                marks::MAX_AHEAD
            ),
        ));
    }
    let punt = spec
        .punt
        .map(|p| resolve_punt(p, &ports, mirror.as_ref()))
        .transpose()
        .map_err(|m| err("punt.interface".into(), m))?;
    Ok(NodeConfig {
        name: spec.node.name,
        ports,
        workers,
        sas,
        spd,
        neighbours,
        dpdk_eal_args: spec.dpdk.map(|d| d.eal_args),
        mirror,
        // The directory is the command line's (`espgate run --state-dir`).
        state: StateSettings { dir: None, ahead },
        punt,
    })
}

/// The mirror port is a link of its own: not the interface (nor the
/// DPDK device) of a data port. On a data port its frames would go out
/// onto that link (broadcast, without `peer_mac`), and the peer would
/// never hear them. Fails with the key and what is wrong.
fn check_mirror_port(m: &MirrorSettings, ports: &[PortConfig]) -> Result<(), (String, String)> {
    let (key, what, name) = match &m.port_backend {
        PortBackend::AfPacket { interface } => ("interface", "interface", interface),
        PortBackend::Dpdk { device } => ("device", "DPDK device", device),
        PortBackend::Mem | PortBackend::Pcap { .. } => return Ok(()),
    };
    let same = ports.iter().enumerate().find(|(_, p)| match &p.backend {
        PortBackend::AfPacket { interface } => key == "interface" && interface == name,
        PortBackend::Dpdk { device } => key == "device" && device == name,
        PortBackend::Mem | PortBackend::Pcap { .. } => false,
    });
    match same {
        Some((i, p)) => Err((
            format!("mirror.port.{key}"),
            format!(
                "{name} is the {what} of port {} (ports[{i}].{key}): the mirror link needs one of its own, or its frames go out on that link and the peer never hears them",
                p.name
            ),
        )),
        None => Ok(()),
    }
}

/// The punt section: a name the kernel takes for a new interface, and
/// none of the af_packet ports' interfaces, the mirror port's included
/// (those are not TUN devices).
fn resolve_punt(
    p: PuntSpec,
    ports: &[PortConfig],
    mirror: Option<&MirrorSettings>,
) -> Result<PuntSettings, String> {
    let name = p.interface;
    let max = espgate_dataplane::punt::MAX_NAME_LEN;
    if name.is_empty()
        || name.len() > max
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '%' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not an interface name (1 to {max} bytes, none of / % : or blanks)"
        ));
    }
    if let Some(port) = ports.iter().find(
        |port| matches!(&port.backend, PortBackend::AfPacket { interface } if *interface == name),
    ) {
        return Err(format!(
            "{name} is the interface of port {}: the punt device is a TUN device of its own",
            port.name
        ));
    }
    if let Some(m) = mirror
        && matches!(&m.port_backend, PortBackend::AfPacket { interface } if *interface == name)
    {
        return Err(format!(
            "{name} is the interface of the mirror port: the punt device is a TUN device of its own"
        ));
    }
    Ok(PuntSettings { interface: name })
}

/// SAs and rules to add to a running node (the control socket's
/// `sa_add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaUpdate {
    /// New SAs.
    pub sas: Vec<SaEntry>,
    /// New rules.
    pub spd: Vec<SpdRule>,
}

impl SaUpdate {
    /// Gives each SA without a `home` (absent, or null) the node of
    /// `node`'s pair that holds its local tunnel address (its source
    /// outbound, its destination inbound): `node` itself if it is its
    /// unprotected port's address, its peer if it is one of
    /// `peer_addresses`. A pair's host sends an IKE daemon's SAs so: both
    /// nodes must agree on each SA's home, or both would run it. An SA
    /// whose local address is neither is refused, naming it; a node on its
    /// own runs every SA and changes nothing.
    pub fn home_by_address(&mut self, node: &NodeConfig) -> Result<(), String> {
        let Some(mirror) = &node.mirror else {
            return Ok(());
        };
        let own = node.port(Role::Unprotected).map(|p| p.address);
        for e in self.sas.iter_mut().filter(|e| e.home.is_none()) {
            let local = match e.sa.direction {
                Direction::Outbound => e.sa.tunnel.src,
                Direction::Inbound => e.sa.tunnel.dst,
            };
            e.home = Some(if own == Some(local) {
                mirror.protocol.node
            } else if mirror.peer_addresses.contains(&local) {
                mirror.protocol.peer
            } else {
                return Err(format!(
                    "{} SA {:#x}: its local tunnel address {local} is neither this node's ({}) nor one of its peer's ({:?}): no node of the pair is its home",
                    e.sa.direction,
                    e.sa.spi,
                    own.map_or_else(|| "none".to_string(), |a| a.to_string()),
                    mirror.peer_addresses
                ));
            });
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSpec {
    #[serde(default)]
    sas: Vec<SaSpec>,
    #[serde(default)]
    spd: Vec<RuleSpec>,
}

/// Parses an SA update for running node `node`: YAML with the node file's
/// `sas` and `spd` keys, checked as they would be in `node`'s file (new
/// SPIs, existing workers, homes of its pair; rules name its SAs or the
/// new ones).
pub fn parse_sa_update(
    text: &str,
    file: &str,
    base: &Path,
    node: &NodeConfig,
) -> Result<SaUpdate, ConfigError> {
    let spec: UpdateSpec = from_yaml(text, file)?;
    let resolve = || {
        let sas = resolve_sas(
            &spec.sas,
            file,
            base,
            node.workers.count,
            node.mirror.as_ref(),
            &node.sas,
        )?;
        let spd = resolve_rules(&spec.spd, file, &sas, &node.sas)?;
        Ok(SaUpdate { sas, spd })
    };
    resolve().map_err(|e: ConfigError| e.placed_in(text, file))
}

/// Resolves the `sas` entries of a node file (or of an SA update for a
/// running node, whose SAs are `known`): keys, owners, homes, mirror
/// settings; SPIs must be new in their direction.
fn resolve_sas(
    specs: &[SaSpec],
    file: &str,
    base: &Path,
    workers: usize,
    mirror: Option<&MirrorSettings>,
    known: &[SaEntry],
) -> Result<Vec<SaEntry>, ConfigError> {
    let err = |path: String, msg: String| ConfigError::invalid(file, &path, msg);
    let mut sas = Vec::new();
    let mut spis: HashSet<(u32, Direction)> =
        known.iter().map(|e| (e.sa.spi, e.sa.direction)).collect();
    // Among the file's own SAs (the node refuses a run-time add whose key
    // an SA of it runs or ran, naming which).
    let mut keys: HashMap<Vec<u8>, (u32, Direction)> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        let at = format!("sas[{i}].");
        let (sa, direction) = resolve_sa(s, file, &at, base)?;
        let Some(direction) = direction else {
            return Err(err(
                format!("{at}direction"),
                "missing: outbound or inbound".into(),
            ));
        };
        let mut sa = sa;
        sa.direction = direction;
        if !spis.insert((sa.spi, direction)) {
            return Err(err(
                format!("{at}spi"),
                format!("duplicate {direction} spi {:#x}", sa.spi),
            ));
        }
        if let Some((by, by_direction)) = keys.get(&sa.key[..]) {
            return Err(err(
                format!("{at}key"),
                format!(
                    "the key material of {by_direction} sa {by:#x}: two SAs with one key seal \
                     with the same nonces (the sequence numbers); give each SA its own key"
                ),
            ));
        }
        keys.insert(sa.key.to_vec(), (sa.spi, direction));
        if let Some(w) = s.worker
            && w >= workers
        {
            return Err(err(
                format!("{at}worker"),
                format!("worker {w} does not exist ({workers} workers)"),
            ));
        }
        if s.home.is_some() && mirror.is_none() {
            return Err(err(
                format!("{at}home"),
                "only a node with a mirror: section has a pair to name a home node in".into(),
            ));
        }
        if let (Some(h), Some(m)) = (s.home, mirror.map(|m| m.protocol))
            && h != m.node
            && h != m.peer
        {
            return Err(err(
                format!("{at}home"),
                format!(
                    "node {h} is neither this node ({}) nor its peer ({})",
                    m.node, m.peer
                ),
            ));
        }
        let overrides = match (&s.mirror, mirror) {
            (None, _) => espgate_mirror::SaOverrides::default(),
            (Some(_), None) => {
                return Err(err(
                    format!("{at}mirror"),
                    "only a node with a mirror: section mirrors SAs".into(),
                ));
            }
            (Some(m), Some(_)) => {
                if m.interval == Some(0) {
                    return Err(err(
                        format!("{at}mirror.interval"),
                        "must be at least 1".into(),
                    ));
                }
                if m.quantity.is_some() && direction == Direction::Inbound {
                    return Err(err(
                        format!("{at}mirror.quantity"),
                        "only outbound SAs have a quantity (a lease)".into(),
                    ));
                }
                espgate_mirror::SaOverrides {
                    interval: m.interval,
                    quantity: m.quantity,
                }
            }
        };
        let need = espgate_dataplane::progress::inbound_frame_len(sa.replay_window);
        if let Some(m) = mirror
            && direction == Direction::Inbound
            && need > m.protocol.max_frame
        {
            let remedy = if need > MAX_MIRROR_FRAME {
                format!("shrink the window (mirror.max_frame goes up to {MAX_MIRROR_FRAME})")
            } else {
                "raise it (and the mirror link's MTU) or shrink the window".into()
            };
            return Err(err(
                format!("{at}replay_window"),
                format!(
                    "{} packets need {need}-byte mirror frames, above mirror.max_frame {}: {remedy}",
                    sa.replay_window, m.protocol.max_frame
                ),
            ));
        }
        sas.push(SaEntry {
            sa,
            worker: s.worker,
            home: s.home,
            mirror: overrides,
        });
    }
    Ok(sas)
}

/// Resolves `spd` rules; a protect rule must name one of `sas` or `known`.
fn resolve_rules(
    specs: &[RuleSpec],
    file: &str,
    sas: &[SaEntry],
    known: &[SaEntry],
) -> Result<Vec<SpdRule>, ConfigError> {
    let err = |path: String, msg: String| ConfigError::invalid(file, &path, msg);
    let spis: HashSet<(u32, Direction)> = sas
        .iter()
        .chain(known)
        .map(|e| (e.sa.spi, e.sa.direction))
        .collect();
    let mut spd = Vec::new();
    for (i, r) in specs.iter().enumerate() {
        let at = |k: &str| format!("spd[{i}].{k}");
        let prefix = |v: &Option<String>, k: &str| -> Result<Option<Prefix>, ConfigError> {
            match v.as_deref() {
                None | Some("any") => Ok(None),
                Some(t) => t.parse::<Prefix>().map(Some).map_err(|e| err(at(k), e)),
            }
        };
        let (src, dst) = (prefix(&r.src, "src")?, prefix(&r.dst, "dst")?);
        let v6 = match (src, dst) {
            (Some(a), Some(b)) if a.addr.is_ipv4() != b.addr.is_ipv4() => {
                return Err(err(
                    at("dst"),
                    "src and dst are of different IP versions".into(),
                ));
            }
            (Some(a), _) | (_, Some(a)) => a.addr.is_ipv6(),
            (None, None) => false,
        };
        let proto = parse_protocol(r.protocol.as_ref()).map_err(|m| err(at("protocol"), m))?;
        let sport = parse_ports(r.sport.as_ref()).map_err(|m| err(at("sport"), m))?;
        let dport = parse_ports(r.dport.as_ref()).map_err(|m| err(at("dport"), m))?;
        let direction = match r.direction {
            DirSpec::Out => Direction::Outbound,
            DirSpec::In => Direction::Inbound,
        };
        let action = match (r.action, &r.sa) {
            (ActionSpec::Protect, Some(v)) => {
                let spi = parse_spi(v).map_err(|m| err(at("sa"), m))?;
                if !spis.contains(&(spi, direction)) {
                    return Err(err(at("sa"), format!("no {direction} SA has spi {spi:#x}")));
                }
                Action::Protect(spi)
            }
            (ActionSpec::Protect, None) => {
                return Err(err(at("sa"), "missing: protect needs the SA's spi".into()));
            }
            (_, Some(_)) => return Err(err(at("sa"), "only protect rules name an SA".into())),
            (ActionSpec::Bypass, None) => Action::Bypass,
            (ActionSpec::Discard, None) => Action::Discard,
            (ActionSpec::Trap, None) if direction == Direction::Outbound => Action::Trap,
            (ActionSpec::Trap, None) => {
                return Err(err(
                    at("action"),
                    "trap is for outbound rules (a packet leaving asks for an SA)".into(),
                ));
            }
        };
        spd.push(SpdRule {
            direction,
            src: src.unwrap_or(Prefix::any(v6)),
            dst: dst.unwrap_or(Prefix::any(v6)),
            protocol: proto,
            sport,
            dport,
            action,
        });
    }
    Ok(spd)
}

fn parse_spi(v: &serde_norway::Value) -> Result<u32, String> {
    match v {
        serde_norway::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{n} is not a 32-bit SPI")),
        serde_norway::Value::String(s) => {
            parse_u32(s).ok_or_else(|| format!("{s:?} is not an SPI"))
        }
        other => Err(format!("{other:?} is not an SPI")),
    }
}

fn parse_protocol(v: Option<&serde_norway::Value>) -> Result<Option<u8>, String> {
    let Some(v) = v else { return Ok(None) };
    match v {
        serde_norway::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{n} is not a protocol number (0..=255)")),
        serde_norway::Value::String(s) => match s.as_str() {
            "any" => Ok(None),
            "icmp" => Ok(Some(protocol::ICMP)),
            "tcp" => Ok(Some(protocol::TCP)),
            "udp" => Ok(Some(protocol::UDP)),
            "icmpv6" => Ok(Some(protocol::ICMPV6)),
            other => Err(format!(
                "unknown protocol {other:?} (any, icmp, tcp, udp, icmpv6 or a number)"
            )),
        },
        other => Err(format!("{other:?} is not a protocol")),
    }
}

fn parse_ports(v: Option<&serde_norway::Value>) -> Result<(u16, u16), String> {
    let bad = |s: &dyn std::fmt::Debug| {
        format!("{s:?} is not a port or range (e.g. 53, 1024-65535, any)")
    };
    match v {
        None => Ok((0, u16::MAX)),
        Some(serde_norway::Value::Number(n)) => {
            let p = n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| bad(n))?;
            Ok((p, p))
        }
        Some(serde_norway::Value::String(s)) if s == "any" => Ok((0, u16::MAX)),
        Some(serde_norway::Value::String(s)) => {
            let (a, b) = s.split_once('-').ok_or_else(|| bad(s))?;
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad(s))?,
                b.trim().parse().map_err(|_| bad(s))?,
            );
            if a > b {
                return Err(format!("range {s:?} runs backwards"));
            }
            Ok((a, b))
        }
        Some(other) => Err(bad(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_uses_every_key_and_parses() {
        let path = format!(
            "{}/../../conf/node-example.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let cfg = load_node_file(Path::new(&path)).unwrap();
        assert_eq!(
            (cfg.workers.count, cfg.workers.cores.clone()),
            (2, vec![0, 1])
        );
        assert_eq!(cfg.ports[1].gateway, Some("172.16.0.254".parse().unwrap()));
        assert_eq!(cfg.sas[0].worker, Some(0));
        assert!(cfg.sas[0].sa.esn && cfg.sas[1].sa.replay_window == 4096);
        assert_eq!(cfg.spd.len(), 4);
        assert_eq!(cfg.spd[2].dport, (53, 53));
        assert_eq!(cfg.spd[2].protocol, Some(17));
        assert_eq!(cfg.neighbours.len(), 1);
        assert!(cfg.mirror.is_some());
        assert_eq!((cfg.sas[0].home, cfg.sas[1].home), (Some(1), Some(1)));
        assert_eq!(cfg.punt.map(|p| p.interface), Some("espgate0".into()));
    }

    /// The checks after reading name the line of the value at fault as
    /// the YAML reader's errors do (the file's name alone before); a
    /// missing key, the line of the entry that lacks it.
    #[test]
    fn a_check_after_reading_names_the_line() {
        let good = "\
node: { name: a }
workers: { count: 1 }
ports:
  - name: lan
    role: protected
    backend: pcap
    mac: 02:00:00:00:01:01
    address: 10.1.0.254/24
  - name: wan
    role: unprotected
    backend: pcap
    mac: 02:00:00:00:01:02
    address: 172.16.0.1/24
sas:
  - spi: 0x1000
    direction: outbound
    aead: aes-128-gcm
    key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68
    tunnel: { src: 172.16.0.1, dst: 172.16.0.2 }
spd:
  - { direction: out, src: 10.1.0.0/24, dst: 10.2.0.0/24, action: protect, sa: 0x1000 }
";
        parse_node(good, "t.yaml", Path::new(".")).unwrap();
        for (from, to, at) in [
            ("count: 1", "count: 0", "t.yaml:2:19: workers.count: "),
            (
                "address: 172.16.0.1/24",
                "address: 172.16.0.1",
                "t.yaml:13:14: ports[1].address: ",
            ),
            ("sa: 0x1000 }", "sa: 0x2000 }", "t.yaml:21:80: spd[0].sa: "),
            (
                "role: unprotected",
                "role: protected",
                "t.yaml:4:3: ports: ",
            ),
            (
                "    direction: outbound\n",
                "",
                "t.yaml:15:5: sas[0].direction: missing",
            ),
            (
                "key: 0x4c80",
                "key: 0xzz80",
                "t.yaml:18:10: sas[0].key: not hex",
            ),
        ] {
            let text = good.replacen(from, to, 1);
            assert_ne!(text, good, "{from}");
            let e = parse_node(&text, "t.yaml", Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(at), "{from} -> {to}: {e}");
        }
        // Which SA: its place in the list, its line and its SPI.
        let e = parse_node(
            &good.replacen("key: 0x4c80", "key: 0xzz80", 1),
            "t.yaml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.ends_with(" (SA 0x1000)"), "{e}");
    }

    #[test]
    fn the_punt_device_needs_a_name_of_its_own() {
        let node = |punt: &str| {
            let text = format!(
                "node: {{ name: a }}
ports:
  - {{ name: lan, role: protected, backend: af_packet, interface: eth1, address: 10.0.0.1/24 }}
  - {{ name: wan, role: unprotected, backend: af_packet, interface: eth2, address: 10.9.0.1/24 }}
{punt}"
            );
            parse_node(&text, "t.yaml", Path::new("."))
        };
        assert_eq!(node("").unwrap().punt, None);
        let cfg = node("punt: { interface: espgate0 }").unwrap();
        assert_eq!(cfg.punt.unwrap().interface, "espgate0");
        for bad in [
            "\"\"",
            "eth2",
            "a-name-far-too-long",
            "\"ike 0\"",
            "ike/0",
            "espgate%d",
            "..",
        ] {
            let e = node(&format!("punt: {{ interface: {bad} }}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("t.yaml:5:20: punt.interface: "), "{bad}: {e}");
        }
        let e = node("punt: { interface: eth2 }").unwrap_err().to_string();
        assert!(e.contains("the interface of port wan"), "{e}");
    }

    #[test]
    fn a_worker_stall_is_longer_than_ten_idle_sleeps() {
        let node = |idle_us: u64, stall: &str| {
            let text = format!(
                "node: {{ name: a }}
workers: {{ count: 1, idle_sleep_us: {idle_us} }}
ports:
  - {{ name: lan, role: protected, backend: af_packet, interface: eth1, address: 10.0.0.1/24 }}
  - {{ name: wan, role: unprotected, backend: af_packet, interface: eth2, address: 10.9.0.1/24 }}
mirror: {{ node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: {{ name: m, backend: af_packet, interface: eth3 }}{stall} }}"
            );
            parse_node(&text, "t.yaml", Path::new("."))
        };
        assert_eq!(node(100, "").unwrap().mirror.unwrap().worker_stall_ms, 500);
        assert!(node(50_000, "").is_ok());
        let e = node(60_000, "").unwrap_err().to_string();
        assert!(
            e.contains("mirror.worker_stall_ms: 500 ms is less than ten of the workers' longest idle sleeps (workers.idle_sleep_us: 60000)"),
            "{e}"
        );
        assert_eq!(
            node(60_000, ", worker_stall_ms: 0")
                .unwrap()
                .mirror
                .unwrap()
                .worker_stall_ms,
            0,
            "not watched"
        );
    }

    #[test]
    fn tracked_next_hops_lie_on_their_link_and_need_a_pair_that_watches_links() {
        let node = |track: &str, mirror: &str| {
            let text = format!(
                "node: {{ name: a }}
ports:
  - {{ name: lan, role: protected, backend: af_packet, interface: eth1, address: 10.0.0.1/24 }}
  - {{ name: wan, role: unprotected, backend: af_packet, interface: eth2, address: 10.9.0.1/24, {track} }}
{mirror}"
            );
            parse_node(&text, "t.yaml", Path::new("."))
        };
        let pair = "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: eth3 } }";
        let cfg = node("track: [10.9.0.254, 10.9.0.2]", pair).unwrap();
        assert_eq!(
            cfg.ports[1].track,
            ["10.9.0.254", "10.9.0.2"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert!(cfg.ports[0].track.is_empty());
        let e = node("track: [10.8.0.254]", pair).unwrap_err().to_string();
        assert!(
            e.contains("ports[1].track: 10.8.0.254 is not on the link 10.9.0.0/24"),
            "{e}"
        );
        let e = node("track: [\"fe80::1\"]", pair).unwrap_err().to_string();
        assert!(
            e.contains("ports[1].track: fe80::1: only IPv4 next hops are tracked"),
            "{e}"
        );
        let e = node("track: [10.9.0.254]", "").unwrap_err().to_string();
        assert!(
            e.contains("ports[1].track: a tracked next hop's silence hands the SAs to the peer: only a node with a mirror: section"),
            "{e}"
        );
        let unwatched = pair.replace("eth3 } }", "eth3 }, link_down_ms: 0 }");
        let e = node("track: [10.9.0.254]", &unwatched)
            .unwrap_err()
            .to_string();
        assert!(e.contains("link_down_ms above 0"), "{e}");
    }

    #[test]
    fn the_mirror_port_is_none_of_the_data_ports() {
        let node = |lan: &str, wan: &str, mirror_port: &str, punt: &str| {
            let text = format!(
                "node: {{ name: a }}
dpdk: {{ eal_args: [--no-pci] }}
ports:
  - {{ name: lan, role: protected, {lan}, address: 10.0.0.1/24 }}
  - {{ name: wan, role: unprotected, {wan}, address: 10.9.0.1/24 }}
mirror: {{ node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: {{ name: m, {mirror_port} }} }}
{punt}"
            );
            parse_node(&text, "t.yaml", Path::new("."))
        };
        let eth = |i: &str| format!("backend: af_packet, interface: {i}");
        let dpdk = |d: &str| format!("backend: dpdk, device: {d}");
        assert!(node(&eth("eth1"), &eth("eth2"), &eth("eth3"), "").is_ok());
        let e = node(&eth("eth1"), &eth("eth2"), &eth("eth1"), "")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.yaml:6:118: mirror.port.interface: eth1 is the interface of port lan (ports[0].interface): the mirror link needs one of its own, or its frames go out on that link and the peer never hears them"
        );
        let e = node(&eth("eth1"), &eth("eth2"), &eth("eth2"), "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "mirror.port.interface: eth2 is the interface of port wan (ports[1].interface)"
            ),
            "{e}"
        );
        let e = node(&dpdk("net_tap0"), &dpdk("net_tap1"), &dpdk("net_tap1"), "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.yaml:6:110: mirror.port.device: net_tap1 is the DPDK device of port wan (ports[1].device)"),
            "{e}"
        );
        // A DPDK device and an interface of the same name are not the same port.
        assert!(node(&dpdk("eth1"), &dpdk("net_tap1"), &eth("eth1"), "").is_ok());
        assert!(node(&dpdk("net_tap0"), &dpdk("net_tap1"), &dpdk("net_tap2"), "").is_ok());
        let e = node(
            &eth("eth1"),
            &eth("eth2"),
            &eth("eth3"),
            "punt: { interface: eth3 }",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("punt.interface: eth3 is the interface of the mirror port"),
            "{e}"
        );
    }

    #[test]
    fn mirror_frames_must_fit_the_mirror_port_buffers() {
        let path = format!("{}/../../conf/demo/a.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let with = |max_frame: usize| {
            let t = text.replace(
                "  refresh_ms: 50\n",
                &format!("  refresh_ms: 50\n  max_frame: {max_frame}\n"),
            );
            assert_ne!(t, text);
            parse_node(&t, "a.yaml", Path::new("."))
        };
        assert_eq!(with(2034).unwrap().mirror.unwrap().protocol.max_frame, 2034);
        let e = with(2035).unwrap_err().to_string();
        assert!(e.contains("mirror.max_frame"), "{e}");
        assert!(e.contains("2035") && e.contains("2034"), "{e}");
    }

    #[test]
    fn demo_configs_parse() {
        for (f, id) in [("a", Some(1)), ("b", Some(2)), ("r", None)] {
            let path = format!("{}/../../conf/demo/{f}.yaml", env!("CARGO_MANIFEST_DIR"));
            let cfg = load_node_file(Path::new(&path)).unwrap();
            assert_eq!(cfg.ports.len(), 2);
            assert_eq!(cfg.sas.len(), 4);
            assert_eq!(cfg.spd.len(), 4);
            assert_eq!(cfg.mirror.as_ref().map(|m| m.protocol.node), id);
            if let Some(m) = &cfg.mirror {
                let homes = cfg.sas.iter().filter(|e| cfg.is_home(e)).count();
                assert_eq!(homes, 2, "{f} runs two of the four SAs");
                assert_eq!(m.peer_addresses.len(), 2);
                assert_eq!(m.protocol.interval, 256);
            }
        }
    }
}
