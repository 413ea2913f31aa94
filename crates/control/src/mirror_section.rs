//! The `mirror:` section of a node configuration: the pair's link, its
//! protocol settings and how the node takes over and hands back.
//!
//! ```yaml
//! mirror:
//!   node: 1                      # this node's id in the pair
//!   peer: 2                      # the peer's id
//!   key: 0x...                   # frame MAC key, >= 16 bytes (or key_file)
//!   port: { name: mirror, backend: af_packet, interface: a-mir }   # af_packet | dpdk | mem
//!   peer_mac: 02:00:00:00:02:03  # optional: frames go to broadcast otherwise
//!   peer_addresses: [10.1.0.2, 192.0.2.2]   # held while running the peer's SAs
//!   interval: 1024               # outbound state due every crossing of a multiple
//!   quantity: 4096               # the lease: seq + quantity
//!   lease: on                    # on | off (off: the bare claim, for comparison)
//!   takeover_jump: 33554432      # ESN SAs; at most 2^28
//!   takeover_jump_32: 16777216   # 32-bit SAs
//!   inbound_interval: 1024       # an inbound lease reaches at most this far past the top
//!   inbound_ahead_ms: 10         # ... and as far as the SA's traffic of this long
//!   inbound_grace: 1024          # accepted unacknowledged; default inbound_interval
//!   inbound_takeover: strict     # strict | lenient
//!   heartbeat_ms: 10
//!   dead_after: 3
//!   refresh_ms: 100
//!   max_frame: 1400              # 128..=2034: with its Ethernet header, one buffer
//!   takeover: auto               # auto | manual
//!   failback: auto               # auto | manual
//!   failback_delay_ms: 1000
//!   link_down_ms: 300            # a data port's link down this long: SAs go to the peer (0: not watched)
//!   link_up_ms: 3000             # every link up this long: the peer fails back
//!   worker_stall_ms: 500         # a worker's loop still this long fails the flow (0: not watched)
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use espgate_dataplane::config::{Failback, MirrorSettings, PortBackend, Takeover};
use espgate_dataplane::flow::LinkWatch;
use espgate_dataplane::mirror_port::check_max_frame;
use espgate_mirror::{InboundTakeover, MirrorConfig};
use espgate_wire::ethernet::MacAddr;
use serde::Deserialize;

use crate::error::{ConfigError, MAX_KEY_BYTES, read_bounded};
use crate::hexkey::parse_hex;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MirrorSpec {
    pub(crate) node: u32,
    pub(crate) peer: u32,
    key: Option<String>,
    key_file: Option<PathBuf>,
    port: MirrorPortSpec,
    peer_mac: Option<String>,
    #[serde(default)]
    peer_addresses: Vec<IpAddr>,
    interval: Option<u64>,
    quantity: Option<u64>,
    lease: Option<OnOff>,
    takeover_jump: Option<u64>,
    takeover_jump_32: Option<u64>,
    inbound_interval: Option<u64>,
    inbound_ahead_ms: Option<u64>,
    inbound_grace: Option<u64>,
    inbound_takeover: Option<InboundSpec>,
    heartbeat_ms: Option<u64>,
    dead_after: Option<u32>,
    refresh_ms: Option<u64>,
    max_frame: Option<usize>,
    takeover: Option<ModeSpec>,
    failback: Option<ModeSpec>,
    failback_delay_ms: Option<u64>,
    link_down_ms: Option<u64>,
    link_up_ms: Option<u64>,
    worker_stall_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorPortSpec {
    name: String,
    backend: PortKind,
    interface: Option<String>,
    device: Option<String>,
    mac: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PortKind {
    AfPacket,
    Dpdk,
    Mem,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum InboundSpec {
    Strict,
    Lenient,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ModeSpec {
    Auto,
    Manual,
}

/// Default delay before an automatic failback.
const FAILBACK_DELAY_MS: u64 = 1000;

/// How long a worker's loop may stand still before the node counts it
/// stalled (`worker_stall_ms`).
const WORKER_STALL_MS: u64 = 500;

/// Turns the parsed section into settings; errors name `mirror.<key>`.
pub(crate) fn resolve_mirror(
    spec: &MirrorSpec,
    file: &str,
    base: &Path,
) -> Result<MirrorSettings, ConfigError> {
    let err = |k: &str, m: String| ConfigError::invalid(file, &format!("mirror.{k}"), m);
    let key_text = match (&spec.key, &spec.key_file) {
        (Some(k), None) => k.clone(),
        (None, Some(p)) => read_bounded(&base.join(p), MAX_KEY_BYTES)
            .map_err(|e| err("key_file", format!("cannot read {}: {e}", p.display())))?,
        (Some(_), Some(_)) => return Err(err("key", "give key or key_file, not both".into())),
        (None, None) => return Err(err("key", "missing: give key or key_file".into())),
    };
    let key = parse_hex(&key_text).map_err(|m| err("key", m))?;
    if key.len() < 16 {
        return Err(err(
            "key",
            format!("{} bytes: the frame MAC key needs at least 16", key.len()),
        ));
    }
    let d = MirrorConfig::default();
    let inbound_interval = spec.inbound_interval.unwrap_or(d.inbound_interval);
    let protocol = MirrorConfig {
        node: spec.node,
        peer: spec.peer,
        interval: spec.interval.unwrap_or(d.interval),
        quantity: spec.quantity.unwrap_or(d.quantity),
        lease: spec.lease.map_or(d.lease, |l| matches!(l, OnOff::On)),
        takeover_jump: spec.takeover_jump.unwrap_or(d.takeover_jump),
        takeover_jump_32: spec.takeover_jump_32.unwrap_or(d.takeover_jump_32),
        inbound_interval,
        inbound_ahead_ms: spec.inbound_ahead_ms.unwrap_or(d.inbound_ahead_ms),
        inbound_grace: spec.inbound_grace.unwrap_or(inbound_interval),
        inbound_takeover: match spec.inbound_takeover {
            None => d.inbound_takeover,
            Some(InboundSpec::Strict) => InboundTakeover::Strict,
            Some(InboundSpec::Lenient) => InboundTakeover::Lenient,
        },
        heartbeat_ms: spec.heartbeat_ms.unwrap_or(d.heartbeat_ms),
        dead_after: spec.dead_after.unwrap_or(d.dead_after),
        refresh_ms: spec.refresh_ms.unwrap_or(d.refresh_ms),
        max_frame: spec.max_frame.unwrap_or(d.max_frame),
    };
    protocol.check().map_err(|e| err(e.key(), e.to_string()))?;
    check_max_frame(protocol.max_frame).map_err(|why| err("max_frame", why.to_string()))?;
    let p = &spec.port;
    let port_backend = match p.backend {
        PortKind::AfPacket => PortBackend::AfPacket {
            interface: p.interface.clone().ok_or_else(|| {
                err(
                    "port.interface",
                    "missing: an af_packet port needs its interface".into(),
                )
            })?,
        },
        PortKind::Dpdk => PortBackend::Dpdk {
            device: p.device.clone().ok_or_else(|| {
                err(
                    "port.device",
                    "missing: a dpdk port needs its DPDK device name".into(),
                )
            })?,
        },
        PortKind::Mem => PortBackend::Mem,
    };
    let mac = |k: &str, v: &Option<String>| -> Result<Option<MacAddr>, ConfigError> {
        v.as_deref()
            .map(|m| m.parse::<MacAddr>().map_err(|e| err(k, e.to_string())))
            .transpose()
    };
    let port_mac = mac("port.mac", &p.mac)?;
    if port_mac.is_none() && p.backend == PortKind::Mem {
        return Err(err(
            "port.mac",
            "missing: only af_packet and dpdk ports can take the device's MAC".into(),
        ));
    }
    let mode = |m: Option<ModeSpec>| matches!(m, None | Some(ModeSpec::Auto));
    Ok(MirrorSettings {
        protocol,
        key: key.into(),
        port_name: p.name.clone(),
        port_backend,
        port_mac,
        peer_mac: mac("peer_mac", &spec.peer_mac)?,
        peer_addresses: spec.peer_addresses.clone(),
        takeover: if mode(spec.takeover) {
            Takeover::Auto
        } else {
            Takeover::Manual
        },
        failback: if mode(spec.failback) {
            Failback::Auto {
                delay_ms: spec.failback_delay_ms.unwrap_or(FAILBACK_DELAY_MS),
            }
        } else {
            Failback::Manual
        },
        link_watch: {
            let d = LinkWatch::default();
            LinkWatch {
                down_ms: spec.link_down_ms.unwrap_or(d.down_ms),
                up_ms: spec.link_up_ms.unwrap_or(d.up_ms),
            }
        },
        worker_stall_ms: spec.worker_stall_ms.unwrap_or(WORKER_STALL_MS),
    })
}
