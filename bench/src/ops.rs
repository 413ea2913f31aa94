//! SA operations on a running node under load: one worker encrypts 64-byte
//! packets from memory as fast as it can while the control side rekeys its
//! SA again and again (make-before-break, as the control socket does), then
//! adds SAs in bulk and takes a snapshot of all of them. What it costs the
//! data path, and how long each operation takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use espgate_dataplane::{NodeDrop, RunningNode, SaEntry};
use espgate_esp::{AeadAlgorithm, Backend, Direction};
use espgate_io::Mempool;

use crate::node_path::{Run, Way, frames, node_yaml, queues, sent};

/// What the scenario measured.
#[derive(Debug, Clone, Default)]
pub struct OpsOutcome {
    /// Packets per second with no operation running.
    pub steady_pps: f64,
    /// Packets per second while the SA is rekeyed every `every`.
    pub rekeying_pps: f64,
    /// Rekeys done.
    pub rekeys: usize,
    /// Time of one rekey (install, tables, old SA scheduled), ms: median.
    pub rekey_ms_p50: f64,
    /// The slowest rekey, ms.
    pub rekey_ms_max: f64,
    /// Packets the node dropped while rekeying (policy, ESP, hand-off).
    pub dropped: u64,
    /// Seconds to add this many SAs in one request.
    pub added: (usize, f64),
    /// Milliseconds to snapshot every SA of the node.
    pub snapshot_ms: f64,
}

fn drops(node: &RunningNode) -> u64 {
    node.snapshot()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    [NodeDrop::Policy, NodeDrop::Esp, NodeDrop::HandoffFull]
                        .iter()
                        .map(|d| w.counters.drops(*d))
                        .sum::<u64>()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the scenario: `seconds` steady, `seconds` rekeying every `every`,
/// then `add` SAs added at once.
pub fn measure(
    backend: Backend,
    seconds: f64,
    every: Duration,
    add: usize,
) -> anyhow::Result<OpsOutcome> {
    let run = Run {
        way: Way::Encrypt,
        sizes: vec![64],
        algorithm: AeadAlgorithm::Aes128Gcm,
        workers: 1,
        mirror: None,
        state: None,
        seconds,
        fed: false,
    };
    let cfg = espgate_control::parse_node(
        &node_yaml("a", &run, None),
        "bench",
        std::path::Path::new("."),
    )?;
    let pool = Mempool::new(64 * 1024, 8192);
    let gate = Arc::new(AtomicBool::new(false));
    let (q, sinks, _) = queues(&run, vec![frames(&run, 0, 0)?], None, &gate, &pool)?;
    let mut node = espgate_dataplane::start(&cfg, q, backend, pool)?;
    gate.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(seconds / 10.0));
    let rate =
        |from: (Instant, u64)| (sent(&sinks) - from.1) as f64 / from.0.elapsed().as_secs_f64();
    let t = (Instant::now(), sent(&sinks));
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let steady_pps = rate(t);

    let before = drops(&node);
    let mut times = Vec::new();
    let mut spi = 0x1000u32;
    let t = (Instant::now(), sent(&sinks));
    while t.0.elapsed().as_secs_f64() < seconds {
        let mut sa = cfg.sas[0].sa.clone();
        sa.spi = 0x10_0000 + times.len() as u32;
        let t0 = Instant::now();
        node.rekey(spi, Direction::Outbound, sa.clone(), every / 2)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        spi = sa.spi;
        std::thread::sleep(every);
        node.retire_due(Instant::now());
    }
    let rekeying_pps = rate(t);
    let dropped = drops(&node) - before;

    let entries: Vec<SaEntry> = (0..add)
        .map(|k| {
            let mut sa = cfg.sas[0].sa.clone();
            sa.spi = 0x20_0000 + k as u32;
            SaEntry {
                sa,
                worker: None,
                home: None,
                mirror: Default::default(),
            }
        })
        .collect();
    let t0 = Instant::now();
    node.add_sas(entries, Vec::new(), None)?;
    let added = (add, t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let n: usize = node.snapshot()?.iter().map(|w| w.sas.len()).sum();
    let snapshot_ms = t0.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(n >= add, "the snapshot holds {n} SAs, {add} were added");
    node.stop();
    times.sort_by(f64::total_cmp);
    Ok(OpsOutcome {
        steady_pps,
        rekeying_pps,
        rekeys: times.len(),
        rekey_ms_p50: times.get(times.len() / 2).copied().unwrap_or(0.0),
        rekey_ms_max: times.last().copied().unwrap_or(0.0),
        dropped,
        added,
        snapshot_ms,
    })
}
