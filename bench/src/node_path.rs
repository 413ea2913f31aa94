//! The node's real loop under load, on one core per worker: frames come
//! from memory (as DPDK's net_pcap with `infinite_rx`) into the worker's
//! receive burst, go through classification, SPD/SAD, ESP and the transmit
//! burst, and end in a counting sink (as net_null). Encrypt: plaintext on
//! the protected port; decrypt: fresh ESP on the unprotected port (every
//! sequence number once, so nothing is refused as a replay), sealed live by
//! a feeder on the other core or preloaded. Optionally with mirroring to a
//! second, idle node over an in-memory mirror link.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use espgate_dataplane::{NodeEventKind, NodeQueues, NodeReport, RunningNode};
use espgate_esp::{AeadAlgorithm, Backend, DropReason, OutboundSa};
use espgate_io::mem;
use espgate_io::synthetic::SyntheticQueue;
use espgate_io::{Mempool, PortInfo, PortQueue};
use espgate_wire::ethernet::{EtherType, EthernetRepr, MacAddr};
use espgate_wire::{HeapBuf, PacketBuf};

use crate::feeder::Feeder;
use crate::inner_between;

/// Which way traffic crosses the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Plaintext in, ESP out.
    Encrypt,
    /// ESP in, plaintext out.
    Decrypt,
}

/// Mirroring during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mirroring {
    /// Outbound `interval` (and inbound `inbound_interval`).
    pub interval: u64,
    /// Leases on or off.
    pub lease: bool,
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Run {
    /// Way through the node.
    pub way: Way,
    /// Inner packet sizes, cycled (one size, or an IMIX).
    pub sizes: Vec<usize>,
    /// The AEAD.
    pub algorithm: AeadAlgorithm,
    /// Worker threads (each with its own SA and its own source queue).
    pub workers: usize,
    /// Mirroring, or none.
    pub mirror: Option<Mirroring>,
    /// The node's state directory (its marks persisted), or none.
    pub state: Option<std::path::PathBuf>,
    /// How long to measure.
    pub seconds: f64,
    /// Decrypt: frames sealed live by a feeder thread on the other core
    /// ([`crate::feeder`]; for one worker, whose node leaves that core
    /// free) instead of preloaded, every one of them, before the run.
    pub fed: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Packets per second through the node.
    pub pps: f64,
    /// Inner bits per second.
    pub gbps: f64,
    /// Median processing time of a received burst, ns.
    pub burst_p50_ns: u64,
    /// 99th percentile of it.
    pub burst_p99_ns: u64,
    /// Mirror frames sent per second (both nodes).
    pub mirror_frames_per_s: f64,
    /// Mirror bytes sent per second.
    pub mirror_bytes_per_s: f64,
    /// Packets refused at a lease limit (or a mark).
    pub lease_stalls: u64,
    /// Durable writes of the node's marks per second.
    pub state_writes_per_s: f64,
}

const KEY: &str = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223";
const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const WAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);

fn host_mac(w: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0x10, w as u8 + 1])
}

/// SA `spi`'s key material for `a`: each SA its own (a node refuses two
/// SAs with one key), the same on both nodes.
fn key_hex(a: AeadAlgorithm, spi: u32) -> String {
    format!("0x{spi:08x}{}", &KEY[10..2 + 2 * (a.key_len() + 4)])
}

/// The node's configuration: per worker an outbound SA 0x1000+w for host
/// 10.1.0.(w+1) and an inbound SA 0x2000+w for the way back.
pub(crate) fn node_yaml(name: &str, run: &Run, mirror: Option<(u32, u32)>) -> String {
    let alg = run.algorithm.to_string();
    let mut y = format!(
        "node: {{ name: {name} }}\nworkers: {{ count: {w}, burst: 32, idle_sleep_us: {idle}{pin} }}\nports:\n  - {{ name: lan, role: protected, backend: mem, mac: {LAN_MAC}, address: 10.1.0.254/24 }}\n  - {{ name: wan, role: unprotected, backend: mem, mac: {WAN_MAC}, address: 172.16.1.5/16, mtu: 9000 }}\n",
        w = run.workers,
        idle = if name == "peer" { 200 } else { 0 },
        // A fed run: the worker on core 1, the feeder on core 0.
        pin = if run.fed && run.workers == 1 && name == "a" {
            ", cores: [1]"
        } else {
            ""
        },
    );
    if let (Some((me, peer)), Some(m)) = (mirror, run.mirror) {
        let lease = if m.lease { "on" } else { "off" };
        y += &format!(
            "mirror: {{ node: {me}, peer: {peer}, key: 0x000102030405060708090a0b0c0d0e0f, port: {{ name: mirror, backend: mem, mac: 02:00:00:00:0{me}:03 }}, interval: {i}, inbound_interval: {i}, quantity: {q}, lease: {lease} }}\n",
            i = m.interval,
            q = (4 * m.interval).max(4096),
        );
    }
    y += "sas:\n";
    for w in 0..run.workers {
        let home = if mirror.is_some() { ", home: 1" } else { "" };
        y += &format!(
            "  - {{ spi: {o:#x}, direction: outbound, aead: {alg}, key: {ko}, tunnel: {{ src: 172.16.1.5, dst: 172.16.2.5 }}, esn: true, replay_window: 1024, worker: {w}{home} }}\n  - {{ spi: {i:#x}, direction: inbound, aead: {alg}, key: {ki}, tunnel: {{ src: 172.16.2.5, dst: 172.16.1.5 }}, esn: true, replay_window: 1024, worker: {w}{home} }}\n",
            o = 0x1000 + w,
            i = 0x2000 + w,
            ko = key_hex(run.algorithm, 0x1000 + w as u32),
            ki = key_hex(run.algorithm, 0x2000 + w as u32),
        );
    }
    y += "spd:\n";
    for w in 0..run.workers {
        y += &format!(
            "  - {{ direction: out, src: 10.1.0.{h}/32, dst: 10.2.0.0/24, action: protect, sa: {o:#x} }}\n  - {{ direction: in, src: 10.2.0.0/24, dst: 10.1.0.{h}/32, action: protect, sa: {i:#x} }}\n",
            h = w + 1,
            o = 0x1000 + w,
            i = 0x2000 + w,
        );
    }
    y += &format!("neighbours:\n  - {{ ip: 172.16.2.5, mac: {PEER_MAC} }}\n");
    for w in 0..run.workers {
        y += &format!("  - {{ ip: 10.1.0.{}, mac: {} }}\n", w + 1, host_mac(w));
    }
    y
}

fn frame(dst: MacAddr, src: MacAddr, ip: &[u8]) -> Vec<u8> {
    let eth = EthernetRepr {
        dst,
        src,
        vlan: None,
        ethertype: EtherType::IPV4,
    };
    let mut f = vec![0u8; eth.header_len() + ip.len()];
    eth.emit(&mut f).expect("room");
    f[eth.header_len()..].copy_from_slice(ip);
    f
}

/// The frames worker `w`'s source hands out.
pub(crate) fn frames(run: &Run, w: usize, budget: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let host = format!("10.1.0.{}", w + 1);
    match run.way {
        Way::Encrypt => Ok(run
            .sizes
            .iter()
            .map(|&s| frame(LAN_MAC, host_mac(w), &inner_between(s, &host, "10.2.0.1")))
            .collect()),
        Way::Decrypt => {
            // Fresh numbers for as many frames as the memory budget allows.
            let (mut out, inners) = far_end(run, w)?;
            let avg = run.sizes.iter().sum::<usize>() / run.sizes.len() + 80;
            let n = (budget / avg).clamp(20_000, 2_000_000);
            let mut all = Vec::with_capacity(n);
            for k in 0..n {
                let mut b = HeapBuf::from_packet(&inners[k % inners.len()]);
                out.encapsulate(&mut b)?;
                all.push(frame(WAN_MAC, PEER_MAC, b.data()));
            }
            Ok(all)
        }
    }
}

/// The far end's outbound SA towards worker `w`'s inbound SA, and the
/// inner packets it seals.
fn far_end(run: &Run, w: usize) -> anyhow::Result<(OutboundSa, Vec<Vec<u8>>)> {
    let host = format!("10.1.0.{}", w + 1);
    let y = node_yaml("x", run, None);
    let cfg = espgate_control::parse_node(&y, "bench", std::path::Path::new("."))?;
    let spi = 0x2000 + w as u32;
    let mut sa = cfg
        .sas
        .iter()
        .find(|e| e.sa.spi == spi)
        .map(|e| e.sa.clone())
        .expect("configured");
    sa.direction = espgate_esp::Direction::Outbound;
    let out = OutboundSa::new(&sa, Backend::preferred())?;
    let inners = run
        .sizes
        .iter()
        .map(|&s| inner_between(s, "10.2.0.1", &host))
        .collect();
    Ok((out, inners))
}

pub(crate) fn info(name: &str, mac: MacAddr) -> PortInfo {
    PortInfo {
        name: name.into(),
        mac,
        mtu: 9000,
    }
}

/// Queues of a node: sources and sinks, and the counters of the sinks.
pub(crate) fn queues(
    run: &Run,
    frames: Vec<Vec<Vec<u8>>>,
    mirror: Option<mem::MemQueue>,
    gate: &Arc<AtomicBool>,
    pool: &Arc<Mempool>,
) -> anyhow::Result<(NodeQueues, Vec<Arc<AtomicU64>>, Vec<Feeder>)> {
    let mut lan: Vec<Box<dyn PortQueue>> = Vec::new();
    let mut wan: Vec<Box<dyn PortQueue>> = Vec::new();
    let mut sinks = Vec::new();
    let mut feeders = Vec::new();
    if run.way == Way::Decrypt && run.fed {
        for w in 0..run.workers {
            let (sa, inners) = far_end(run, w)?;
            let (feeder, src) = Feeder::start(
                sa,
                inners,
                (PEER_MAC, WAN_MAC),
                info("wan", WAN_MAC),
                pool.clone(),
                gate.clone(),
            );
            let sink = SyntheticQueue::new(info("lan", LAN_MAC), Vec::new(), false);
            sinks.push(sink.sent_counter());
            wan.push(Box::new(src));
            lan.push(Box::new(sink));
            feeders.push(feeder);
        }
    }
    for f in frames {
        let (src, sink) = match run.way {
            Way::Encrypt => (
                SyntheticQueue::new(info("lan", LAN_MAC), f, true),
                SyntheticQueue::new(info("wan", WAN_MAC), Vec::new(), false),
            ),
            Way::Decrypt => (
                SyntheticQueue::new(info("wan", WAN_MAC), f, false),
                SyntheticQueue::new(info("lan", LAN_MAC), Vec::new(), false),
            ),
        };
        sinks.push(sink.sent_counter());
        let src = src.gated(gate.clone());
        match run.way {
            Way::Encrypt => {
                lan.push(Box::new(src));
                wan.push(Box::new(sink));
            }
            Way::Decrypt => {
                wan.push(Box::new(src));
                lan.push(Box::new(sink));
            }
        }
    }
    Ok((
        NodeQueues {
            protected: lan,
            unprotected: wan,
            mirror: mirror.map(|q| Box::new(q) as Box<dyn PortQueue>),
            punt: None,
            links: Vec::new(),
        },
        sinks,
        feeders,
    ))
}

fn wait_synced(node: &RunningNode) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if node
            .events()
            .iter()
            .any(|e| matches!(e.kind, NodeEventKind::Synced { .. }))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    anyhow::bail!("the mirror did not synchronise")
}

pub(crate) fn sent(sinks: &[Arc<AtomicU64>]) -> u64 {
    sinks.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Runs one measurement.
pub fn measure(run: &Run, backend: Backend) -> anyhow::Result<Outcome> {
    let budget = (600usize << 20) / run.workers;
    let fed = run.way == Way::Decrypt && run.fed;
    let per_worker: Vec<Vec<Vec<u8>>> = if fed {
        Vec::new()
    } else {
        (0..run.workers)
            .map(|w| frames(run, w, budget))
            .collect::<anyhow::Result<_>>()?
    };
    let total_frames: usize = per_worker.iter().map(|f| f.len()).sum();
    let pool = Mempool::new(64 * 1024, 8192);
    let (mirror_a, mirror_b) = match run.mirror {
        Some(_) => {
            let (a, b) = mem::link(
                info("mirror", MacAddr([2, 0, 0, 0, 1, 3])),
                1,
                info("mirror", MacAddr([2, 0, 0, 0, 2, 3])),
                1,
                4096,
            );
            (a.into_iter().next(), b.into_iter().next())
        }
        None => (None, None),
    };
    let peer = match (run.mirror, mirror_b) {
        (Some(_), Some(mq)) => {
            let y = node_yaml("peer", run, Some((2, 1)));
            let cfg = espgate_control::parse_node(&y, "bench-peer", std::path::Path::new("."))?;
            let idle = |n: &str, mac| {
                (0..run.workers)
                    .map(|_| {
                        Box::new(SyntheticQueue::new(info(n, mac), Vec::new(), false))
                            as Box<dyn PortQueue>
                    })
                    .collect::<Vec<_>>()
            };
            let q = NodeQueues {
                protected: idle("lan", LAN_MAC),
                unprotected: idle("wan", WAN_MAC),
                mirror: Some(Box::new(mq)),
                punt: None,
                links: Vec::new(),
            };
            Some(espgate_dataplane::start(&cfg, q, backend, pool.clone())?)
        }
        _ => None,
    };
    let mut cfg = espgate_control::parse_node(
        &node_yaml("a", run, run.mirror.map(|_| (1, 2))),
        "bench",
        std::path::Path::new("."),
    )?;
    if let Some(dir) = &run.state {
        // A new directory each run: no earlier life to resume.
        let _ = std::fs::remove_dir_all(dir);
        cfg.state.dir = Some(dir.clone());
    }
    let gate = Arc::new(AtomicBool::new(false));
    let (q, sinks, feeders) = queues(run, per_worker, mirror_a, &gate, &pool)?;
    let started = Instant::now();
    let node = espgate_dataplane::start(&cfg, q, backend, pool)?;
    if run.mirror.is_some() {
        wait_synced(&node)?;
    }
    // Traffic starts once the node may send (after the bulk sync).
    gate.store(true, Ordering::Relaxed);
    // Skip the start (warm caches): a tenth of the time when encrypting
    // (the source loops), the first 5 % of the frames when decrypting (each
    // is sent once, so the run ends when they are used up).
    let first = total_frames as u64 / 20;
    let last = total_frames as u64 - first;
    let preloaded = run.way == Way::Decrypt && !fed;
    match preloaded {
        false => std::thread::sleep(Duration::from_secs_f64(run.seconds / 10.0)),
        true => {
            let t = Instant::now();
            while sent(&sinks) < first && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    let (t0, c0) = (Instant::now(), sent(&sinks));
    let deadline = t0 + Duration::from_secs_f64(run.seconds);
    while Instant::now() < deadline && !(preloaded && sent(&sinks) >= last) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (t1, c1) = (Instant::now(), sent(&sinks));
    let lifetime = started.elapsed().as_secs_f64();
    for f in feeders {
        f.stop();
    }
    let writes = node.keeper().map_or(0, |k| k.writes());
    let report = node.stop();
    let peer_report = peer.map(RunningNode::stop);
    let secs = (t1 - t0).as_secs_f64();
    let pps = (c1 - c0) as f64 / secs;
    let avg_bits = run.sizes.iter().sum::<usize>() as f64 * 8.0 / run.sizes.len() as f64;
    Ok(Outcome {
        state_writes_per_s: writes as f64 / lifetime,
        ..outcome(&report, peer_report.as_ref(), pps, avg_bits, lifetime)
    })
}

fn outcome(
    report: &NodeReport,
    peer: Option<&NodeReport>,
    pps: f64,
    avg_bits: f64,
    lifetime: f64,
) -> Outcome {
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for w in &report.workers {
        let _ = hist.add(&w.burst_ns);
    }
    let (frames, bytes) = [Some(report), peer]
        .into_iter()
        .flatten()
        .filter_map(|r| r.mirror.as_ref())
        .fold((0, 0), |(f, b), m| {
            (f + m.stats.frames_sent, b + m.stats.bytes_sent)
        });
    Outcome {
        pps,
        gbps: pps * avg_bits / 1e9,
        burst_p50_ns: hist.value_at_quantile(0.5),
        burst_p99_ns: hist.value_at_quantile(0.99),
        mirror_frames_per_s: frames as f64 / lifetime,
        mirror_bytes_per_s: bytes as f64 / lifetime,
        lease_stalls: report
            .outbound()
            .values()
            .map(|(c, _)| c.drops.get(DropReason::LeaseStall))
            .sum(),
        state_writes_per_s: 0.0,
    }
}
