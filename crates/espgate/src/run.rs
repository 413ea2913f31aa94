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

/// The DPDK EAL, started once when a port needs it.
#[cfg(feature = "dpdk")]
type Dpdk = Option<espgate_io::dpdk::Eal>;
/// Without the `dpdk` feature there is no EAL.
#[cfg(not(feature = "dpdk"))]
type Dpdk = ();

#[cfg(feature = "dpdk")]
fn dpdk_port(
    eal: &mut Dpdk,
    cfg: &NodeConfig,
    p: &espgate_dataplane::PortConfig,
    device: &str,
) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
    if eal.is_none() {
        let args = cfg
            .dpdk_eal_args
            .as_deref()
            .context("dpdk ports need dpdk.eal_args")?;
        *eal = Some(espgate_io::dpdk::Eal::init(args).context("DPDK EAL")?);
    }
    let eal = eal.as_ref().expect("just set");
    Ok(eal
        .port(device, cfg.workers.count, &p.name, p.mac, p.mtu)
        .with_context(|| format!("port {}", p.name))?
        .into_iter()
        .map(|q| Box::new(q) as Box<dyn PortQueue>)
        .collect())
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_port(
    _: &mut Dpdk,
    _: &NodeConfig,
    p: &espgate_dataplane::PortConfig,
    _: &str,
) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
    bail!(
        "port {}: this espgate was built without the dpdk feature (cargo build --features dpdk)",
        p.name
    )
}

/// Opens the queues of one port, one per worker.
fn open_port(
    cfg: &NodeConfig,
    role: Role,
    group: u16,
    eal: &mut Dpdk,
) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
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
        PortBackend::Dpdk { device } => dpdk_port(eal, cfg, p, device)?,
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
    #[cfg_attr(not(feature = "dpdk"), allow(clippy::let_unit_value))]
    let mut eal: Dpdk = Default::default();
    let queues = NodeQueues {
        protected: open_port(&cfg, Role::Protected, group, &mut eal)?,
        unprotected: open_port(&cfg, Role::Unprotected, group.wrapping_add(1), &mut eal)?,
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
