//! `espgate run --config NODE.yaml`: a node on real ports until SIGINT or
//! SIGTERM (or `--duration`), then its final counters.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use espgate_dataplane::{NodeConfig, NodeQueues, PortBackend, Role};
use espgate_esp::Backend;
use espgate_io::pcap_port::PcapQueue;
use espgate_io::{Mempool, PortInfo, PortQueue, af_packet};
use espgate_wire::ethernet::MacAddr;

/// Opens the queues of one port, one per worker.
fn open_port(cfg: &NodeConfig, role: Role, group: u16) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
    let p = cfg.port(role).context("port missing")?;
    let workers = cfg.workers.count;
    Ok(match &p.backend {
        PortBackend::AfPacket { interface } => {
            af_packet::open(interface, workers, group, &p.name, p.mac, p.mtu)
                .with_context(|| format!("port {}: af_packet on {interface}", p.name))?
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn PortQueue>)
                .collect()
        }
        PortBackend::Pcap { rx, tx, repeat } => {
            if workers != 1 {
                bail!("port {}: a pcap port has one queue; use one worker", p.name);
            }
            let info = PortInfo {
                name: p.name.clone(),
                mac: p.mac.unwrap_or(MacAddr([2, 0, 0, 0, 0, 1])),
                mtu: p.mtu,
            };
            vec![Box::new(
                PcapQueue::open(info, rx.as_deref(), tx.as_deref(), *repeat)
                    .with_context(|| format!("port {}", p.name))?,
            )]
        }
        PortBackend::Mem => bail!(
            "port {}: mem ports exist only inside one process (tests, the demo); use af_packet or pcap",
            p.name
        ),
    })
}

/// Runs the node of `config_path`.
pub fn run(config_path: &Path, backend: Backend, duration: Option<Duration>) -> anyhow::Result<()> {
    let cfg = espgate_control::load_node_file(config_path)?;
    tracing::info!(node = %cfg.name, workers = cfg.workers.count, sas = cfg.sas.len(), %backend, "starting");
    let group = (std::process::id() & 0xffff) as u16;
    let queues = NodeQueues {
        protected: open_port(&cfg, Role::Protected, group)?,
        unprotected: open_port(&cfg, Role::Unprotected, group.wrapping_add(1))?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let pool = Mempool::new(16 * 1024, 4096);
    let node = espgate_dataplane::start(&cfg, queues, backend, pool)?;
    tracing::info!(node = %cfg.name, "running; SIGINT or SIGTERM stops it");
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = node.stop();
    crate::report::print(&report);
    Ok(())
}
