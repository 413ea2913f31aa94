//! `espgate run --config NODE.yaml`: a node on real ports until SIGINT or
//! SIGTERM (or `--duration`), then its final counters. The pair's events
//! (peer alive or dead, takeover, hand-back) go to stdout as `event` lines
//! as they happen. A node holds its lock (`node_lock`) from before it opens
//! a port until it ends, so a second process of the same node never starts.
//! Its state (its SAs' high-water marks and its last mirror epoch) lives in
//! `<state dir>/<name>/` unless `--no-state` turns it off.

use espgate_io::link::{Carrier, LinkProbe};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use espgate_dataplane::mirror_task::DrainRefused;
use espgate_dataplane::punt::{self, PuntDevice};
use espgate_dataplane::state_dir::{FILE_NAME, StateDir, StateError};
use espgate_dataplane::{
    NodeConfig, NodeError, NodeEvent, NodeEventKind, NodeQueues, Order, PortBackend, Role,
    RunningNode,
};
use espgate_esp::Backend;
use espgate_io::pcap_port::PcapQueue;
use espgate_io::{Mempool, PortInfo, PortQueue, af_packet, offload, tun};
use espgate_wire::ethernet::MacAddr;
use serde_json::Value;

use espgate_control::answer::{Done, Drained, Event, Events, Status, carried_out, refusal};
use espgate_control::request::Request;

use crate::control_socket;
use crate::node_lock::{self, NodeLock};
use crate::{metrics, requests, views};

/// Smallest MTU the mirror port is opened with (a standard Ethernet
/// payload; more when `mirror.max_frame` asks for it).
const MIRROR_MTU: usize = 1500;

/// The DPDK EAL, started once when a port needs it.
#[cfg(feature = "dpdk")]
type Dpdk = Option<espgate_io::dpdk::Eal>;
/// Without the `dpdk` feature there is no EAL.
#[cfg(not(feature = "dpdk"))]
type Dpdk = ();

/// A port to open: what the configuration says of it.
struct Opening<'a> {
    name: &'a str,
    backend: &'a PortBackend,
    mac: Option<MacAddr>,
    mtu: usize,
    queues: usize,
}

#[cfg(feature = "dpdk")]
fn dpdk_port(
    eal: &mut Dpdk,
    cfg: &NodeConfig,
    p: &Opening,
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
        .port(device, p.queues, p.name, p.mac, p.mtu)
        .with_context(|| format!("port {}", p.name))?
        .into_iter()
        .map(|q| Box::new(q) as Box<dyn PortQueue>)
        .collect())
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_port(
    _: &mut Dpdk,
    _: &NodeConfig,
    p: &Opening,
    _: &str,
) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
    bail!(
        "port {}: this espgate was built without the dpdk feature (cargo build --features dpdk)",
        p.name
    )
}

/// Opens the queues of one port.
fn open_port(
    cfg: &NodeConfig,
    p: &Opening,
    group: u16,
    eal: &mut Dpdk,
) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
    Ok(match p.backend {
        PortBackend::AfPacket { interface } => {
            receive_as_on_the_wire(p.name, interface)?;
            af_packet::open(interface, p.queues, group, p.name, p.mac, p.mtu)
                .with_context(|| format!("port {}: af_packet on {interface}", p.name))?
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn PortQueue>)
                .collect()
        }
        PortBackend::Pcap { rx, tx, repeat } => {
            if p.queues != 1 {
                bail!("port {}: a pcap port has one queue; use one worker", p.name);
            }
            let info = PortInfo {
                name: p.name.to_string(),
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

/// Switches off the receive offloads of `interface` (port `port`) that
/// would hand its AF_PACKET socket frames other than those on the wire,
/// saying what it changed; refuses, with the `ethtool` command to run,
/// when one that merges frames stays on.
fn receive_as_on_the_wire(port: &str, interface: &str) -> anyhow::Result<()> {
    let done = offload::switch_off_receive_offloads(interface)
        .with_context(|| format!("port {port}: af_packet on {interface}"))?;
    let what = |fs: &[offload::Feature]| fs.iter().map(|f| f.what).collect::<Vec<_>>().join(", ");
    if !done.switched_off.is_empty() {
        tracing::info!(
            port,
            interface,
            "switched off {} (an AF_PACKET port must see frames as they are on the wire; `{}` did the same)",
            what(&done.switched_off),
            offload::command(interface, &done.switched_off)
        );
    }
    if !done.left_on.is_empty() {
        tracing::warn!(
            port,
            interface,
            "{} stays on (the driver keeps it): TCP and UDP checksums the kernel left for the device to fill in are completed by the port",
            what(&done.left_on)
        );
    }
    Ok(())
}

/// Opens the queues of the protected or unprotected port, one per worker.
fn open_role(
    cfg: &NodeConfig,
    role: Role,
    group: u16,
    eal: &mut Dpdk,
) -> anyhow::Result<Vec<Box<dyn PortQueue>>> {
    let p = cfg.port(role).context("port missing")?;
    let opening = Opening {
        name: &p.name,
        backend: &p.backend,
        mac: p.mac,
        mtu: p.mtu,
        queues: cfg.workers.count,
    };
    open_port(cfg, &opening, group, eal)
}

/// The data ports' links, watched by a pair's node (its flow fails when
/// one goes down): an AF_PACKET port's interface carrier, a DPDK port's
/// link status; in-memory and pcap ports have none.
fn data_links(cfg: &NodeConfig, eal: &Dpdk) -> anyhow::Result<Vec<Box<dyn LinkProbe>>> {
    let mut links: Vec<Box<dyn LinkProbe>> = Vec::new();
    for role in Role::BOTH {
        let p = cfg.port(role).context("port missing")?;
        match &p.backend {
            PortBackend::AfPacket { interface } => {
                links.push(Box::new(Carrier::of(&p.name, interface)));
            }
            #[cfg(feature = "dpdk")]
            PortBackend::Dpdk { device } => {
                if let Some(eal) = eal {
                    links.push(Box::new(eal.link(device, &p.name)?));
                }
            }
            _ => {}
        }
    }
    #[cfg(not(feature = "dpdk"))]
    let () = eal;
    Ok(links)
}

/// Opens the punt device of `cfg`, when it has a punt port: made (or
/// attached to) in this process's network namespace, given the unprotected
/// port's MTU (at most [`punt::MAX_MTU`]) and set up. Its addresses and
/// routes are the operator's.
fn open_punt(cfg: &NodeConfig) -> anyhow::Result<Option<Arc<dyn PuntDevice>>> {
    let Some(p) = &cfg.punt else {
        return Ok(None);
    };
    let mtu = cfg
        .port(Role::Unprotected)
        .context("port missing")?
        .mtu
        .min(punt::MAX_MTU);
    let device = tun::open(&p.interface).with_context(|| format!("punt: {}", p.interface))?;
    device
        .set_up(mtu)
        .with_context(|| format!("punt: {}", p.interface))?;
    tracing::info!(
        interface = device.name(),
        mtu,
        "punt device up: packets for the node that it does not handle go to the kernel through it (give it the node's addresses)"
    );
    Ok(Some(Arc::new(device)))
}

/// Where node state directories go unless `--state-dir` (or
/// `$ESPGATE_STATE_DIR`) says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/espgate";

/// Where a node keeps its state, and what to do with a corrupt one.
#[derive(Debug, Clone, Copy)]
pub struct StateOptions<'a> {
    /// The directory that holds one directory per node.
    pub dir: &'a Path,
    /// Set a corrupt state file aside and start without it.
    pub discard: bool,
}

/// A node running in this process, and the lock that keeps it the only
/// process running that node.
struct Live {
    node: RunningNode,
    _lock: NodeLock,
}

/// Opens the ports of `cfg` and starts the node, whose `lock` is held,
/// with its state in `state` (or none, with a warning).
fn start(
    cfg: &NodeConfig,
    backend: Backend,
    lock: NodeLock,
    state: Option<StateOptions>,
) -> anyhow::Result<Live> {
    let mut cfg = cfg.clone();
    match state {
        Some(s) => {
            let dir = s.dir.join(node_lock::file_name_of(&cfg.name));
            if s.discard {
                discard_corrupt(&dir)?;
            }
            cfg.state.dir = Some(dir);
        }
        None => tracing::warn!(
            node = %cfg.name,
            "no state directory (--no-state): a restart may reuse sequence numbers unless the peer holds the SAs"
        ),
    }
    Ok(Live {
        node: start_node(&cfg, backend)?,
        _lock: lock,
    })
}

/// Sets the state file in `dir` aside if it does not read back (the
/// operator's `--discard-state`): the node then starts without its SAs'
/// history.
fn discard_corrupt(dir: &Path) -> anyhow::Result<()> {
    if let Err(StateError::Corrupt { path, why }) = StateDir::open(dir) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = path.with_file_name(format!("{FILE_NAME}.discarded-{secs}"));
        std::fs::rename(&path, &aside)
            .with_context(|| format!("setting {} aside", path.display()))?;
        tracing::warn!(
            "state file {} was corrupt ({why}): set aside as {}; the node starts without its SAs' history: rekey them",
            path.display(),
            aside.display()
        );
    }
    Ok(())
}

/// Opens the ports of `cfg` and starts the node.
fn start_node(cfg: &NodeConfig, backend: Backend) -> anyhow::Result<RunningNode> {
    tracing::info!(node = %cfg.name, workers = cfg.workers.count, sas = cfg.sas.len(), %backend, "starting");
    let group = (std::process::id() & 0xffff) as u16;
    #[cfg_attr(not(feature = "dpdk"), allow(clippy::let_unit_value))]
    let mut eal: Dpdk = Default::default();
    let mirror = match &cfg.mirror {
        Some(m) => {
            let opening = Opening {
                name: &m.port_name,
                backend: &m.port_backend,
                mac: m.port_mac,
                mtu: MIRROR_MTU.max(m.protocol.max_frame + 14),
                queues: 1,
            };
            let mut q = open_port(cfg, &opening, group.wrapping_add(2), &mut eal)?;
            Some(q.pop().context("the mirror port opened no queue")?)
        }
        None => None,
    };
    let queues = NodeQueues {
        protected: open_role(cfg, Role::Protected, group, &mut eal)?,
        unprotected: open_role(cfg, Role::Unprotected, group.wrapping_add(1), &mut eal)?,
        mirror,
        punt: open_punt(cfg)?,
        links: data_links(cfg, &eal)?,
    };
    let pool = Mempool::new(16 * 1024, 4096);
    let node = espgate_dataplane::start(cfg, queues, backend, pool).map_err(|e| match e {
        NodeError::State(e @ StateError::Corrupt { .. }) => anyhow::anyhow!(
            "{e}; the node does not start on it (espgate run --discard-state sets it aside and starts without the SAs' history)"
        ),
        e => e.into(),
    })?;
    tracing::info!(node = %cfg.name, "running; SIGINT or SIGTERM stops it");
    Ok(node)
}

/// A node event as a `watch` line.
fn watched(e: &NodeEvent, line: &str) -> Value {
    let event = match &e.kind {
        NodeEventKind::Sa {
            spi,
            direction,
            event,
        } => Event::Sa {
            t: e.unix_ms,
            spi: *spi,
            direction: (*direction).into(),
            kind: event.name().to_string(),
        },
        NodeEventKind::Acquire {
            src,
            dst,
            protocol,
            sport,
            dport,
        } => Event::Acquire {
            t: e.unix_ms,
            src: *src,
            dst: *dst,
            protocol: *protocol,
            sport: *sport,
            dport: *dport,
        },
        _ => Event::Node {
            t: e.unix_ms,
            line: line.to_string(),
        },
    };
    serde_json::to_value(event).unwrap_or_else(refusal)
}

/// What a node waiting for its configuration answers to every request but
/// `status` and `configure`.
pub const NOT_CONFIGURED: &str = "not configured yet";

/// Event lines kept for the control socket's `events`.
const EVENT_HISTORY: usize = 1024;

/// Answers one control request.
fn answer(
    req: Request,
    live: &mut Option<Live>,
    events: &mut VecDeque<String>,
    backend: Backend,
    lock_dir: &Path,
    state: Option<StateOptions>,
    started: Instant,
) -> Value {
    match (req, live.as_mut().map(|l| &mut l.node)) {
        (Request::Status {}, None) => carried_out(&Status::WaitingConfig),
        (Request::Status {}, Some(n)) => carried_out(&views::status(n, started.elapsed())),
        (Request::Configure { .. }, Some(n)) => {
            refusal(format!("node {} is running already", n.name()))
        }
        (Request::Configure { yaml }, None) => {
            match espgate_control::parse_node(&yaml, "<control socket>", Path::new("."))
                .map_err(anyhow::Error::from)
                .and_then(|cfg| {
                    start(
                        &cfg,
                        backend,
                        NodeLock::acquire(lock_dir, &cfg.name)?,
                        state,
                    )
                }) {
                Ok(l) => {
                    *live = Some(l);
                    carried_out(&Done {})
                }
                Err(e) => refusal(format!("{e:#}")),
            }
        }
        (Request::TakeOver {} | Request::HandBack {} | Request::Fence {}, None) => {
            refusal(NOT_CONFIGURED)
        }
        (Request::TakeOver {}, Some(n)) => {
            if !n.order(Order::TakeOver) {
                return refusal("this node has no mirror, or too many orders wait");
            }
            carried_out(&Done {})
        }
        (Request::HandBack {}, Some(n)) => {
            let (tx, answer) = std::sync::mpsc::channel();
            if !n.order(Order::HandBack(tx)) {
                return refusal("this node has no mirror, or too many orders wait");
            }
            match answer.recv_timeout(Duration::from_secs(2)) {
                Ok(Ok(_)) => carried_out(&Done {}),
                Ok(Err(why)) => refusal(format!("hand_back refused: {why}")),
                Err(_) => refusal("the mirror did not answer the hand-back in 2 s"),
            }
        }
        (Request::Fence {}, Some(n)) => {
            let (tx, answer) = std::sync::mpsc::channel();
            if !n.order(Order::Fence(tx)) {
                return refusal("this node has no mirror, or too many orders wait");
            }
            match answer.recv_timeout(Duration::from_secs(2)) {
                Ok(Ok(())) => carried_out(&Done {}),
                Ok(Err(why)) => refusal(format!("fence refused: {why}")),
                Err(_) => refusal("the mirror did not answer the fence in 2 s"),
            }
        }
        (Request::Events {}, _) => carried_out(&Events {
            events: events.drain(..).collect(),
        }),
        (_, None) => refusal(NOT_CONFIGURED),
        (r, Some(n)) => requests::answer(r, n),
    }
}

/// Hands every SA the node runs to its peer with its exact state and
/// says goodbye (see `espgate_mirror`'s `leave`); returns how many SAs
/// went (the node runs nothing afterwards), or why not and whether the
/// node must stop all the same (its goodbye went out unanswered: it runs
/// nothing more).
fn drain(node: &RunningNode) -> Result<usize, (bool, String)> {
    if !node.mirrored() {
        return Err((false, "this node has no peer to hand its SAs to".into()));
    }
    let (tx, answer) = std::sync::mpsc::channel();
    if !node.order(Order::Drain(tx)) {
        return Err((false, "too many orders wait".into()));
    }
    match answer.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(sas)) => Ok(sas),
        Ok(Err(why)) => Err((why == DrainRefused::Unanswered, why.to_string())),
        Err(_) => Err((false, "the mirror did not answer in 5 s".into())),
    }
}

/// A drained node stays up until no frame has needed sending on to its
/// peer for this long: hosts and far ends that have not followed the
/// peer's announcement yet still reach it.
const LINGER_QUIET: Duration = Duration::from_millis(100);

/// ... and at most this long.
const LINGER_MOST: Duration = Duration::from_secs(2);

/// Keeps a drained node up while frames for its SAs, which run on the
/// peer now, still reach it: its workers send each on to the peer
/// (counted as `redirected`). Returns how many went on meanwhile.
fn linger(node: &RunningNode) -> u64 {
    // A snapshot a busy worker does not answer in time reads as no change.
    let redirected = || {
        node.snapshot()
            .ok()
            .map(|ws| ws.iter().map(|w| w.counters.redirected).sum::<u64>())
    };
    let start = Instant::now();
    let first = redirected().unwrap_or(0);
    let (mut last, mut moved) = (first, start);
    while moved.elapsed() < LINGER_QUIET && start.elapsed() < LINGER_MOST {
        std::thread::sleep(Duration::from_millis(10));
        if let Some(now) = redirected().filter(|n| *n != last) {
            (last, moved) = (now, Instant::now());
        }
    }
    last.saturating_sub(first)
}

/// Where a node is run from and watched.
pub struct RunOptions<'a> {
    /// The node configuration; without it the host pushes one.
    pub config: Option<&'a Path>,
    /// The control socket.
    pub control: Option<&'a Path>,
    /// Where the node's lock file goes.
    pub lock_dir: &'a Path,
    /// Where the node keeps its state; `None`: nowhere.
    pub state: Option<StateOptions<'a>>,
    /// Where to serve Prometheus metrics.
    pub metrics: Option<std::net::SocketAddr>,
    /// AES-GCM implementation.
    pub backend: Backend,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// On SIGINT or SIGTERM, hand every SA to the peer exactly before
    /// stopping (as the `drain` request does), if the peer can take them.
    pub drain_on_stop: bool,
}

/// Runs a node: from its configuration file at once, or (with only a
/// control socket) once the host pushes its configuration.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        config: config_path,
        control,
        lock_dir,
        state,
        metrics: metrics_addr,
        backend,
        duration,
        drain_on_stop,
    } = opts;
    let config = match config_path {
        Some(p) => Some(espgate_control::load_node_file(p)?),
        None if control.is_some() => None,
        None => bail!("give --config, or --control to wait for the host's configuration"),
    };
    let lock = config
        .as_ref()
        .map(|cfg| NodeLock::acquire(lock_dir, &cfg.name))
        .transpose()?;
    let (calls_tx, calls) = std::sync::mpsc::channel();
    let _socket = control
        .map(|path| control_socket::listen(path, calls_tx.clone()))
        .transpose()?;
    let mut live = config
        .zip(lock)
        .map(|(cfg, lock)| start(&cfg, backend, lock, state))
        .transpose()?;
    if let Some(addr) = metrics_addr {
        metrics::serve(addr, calls_tx.clone())?;
    }
    drop(calls_tx);
    if live.is_none()
        && let Some(c) = control
    {
        tracing::info!(socket = %c.display(), "waiting for the configuration on the control socket");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let started = Instant::now();
    let mut out = std::io::stdout();
    let mut history: VecDeque<String> = VecDeque::new();
    // `watch` connections: each event goes to every one still open.
    let mut watchers: Vec<std::sync::mpsc::Sender<Value>> = Vec::new();
    // A drain was carried out: the node runs nothing and stops.
    let mut drained = false;
    while !stop.load(Ordering::Relaxed)
        && !drained
        && duration.is_none_or(|d| started.elapsed() < d)
    {
        // A request is answered as it comes (an IKE daemon sends several
        // for each CHILD_SA); without one the loop goes round every 5 ms.
        let first = match calls.recv_timeout(Duration::from_millis(5)) {
            Ok(call) => Some(call),
            Err(RecvTimeoutError::Timeout) => None,
            // No control socket nor metrics listener: nobody asks.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(5));
                None
            }
        };
        for (req, back) in first
            .into_iter()
            .chain(std::iter::from_fn(|| calls.try_recv().ok()))
        {
            if let Request::Watch {} = req {
                if back.send(carried_out(&Done {})).is_ok() {
                    watchers.push(back);
                }
                continue;
            }
            if let Request::Drain {} = req {
                let answer = match live.as_ref().map(|l| drain(&l.node)) {
                    None => refusal(NOT_CONFIGURED),
                    Some(Ok(sas)) => {
                        drained = true;
                        carried_out(&Drained { sas })
                    }
                    Some(Err((stops, why))) => {
                        drained = stops;
                        refusal(format!("drain refused: {why}"))
                    }
                };
                let _ = back.send(answer);
                continue;
            }
            let _ = back.send(answer(
                req,
                &mut live,
                &mut history,
                backend,
                lock_dir,
                state,
                started,
            ));
        }
        for (spi, d) in live
            .iter_mut()
            .flat_map(|l| l.node.retire_due(Instant::now()))
        {
            tracing::info!(spi = format!("{spi:#x}"), direction = %d, "rekeyed SA retired");
        }
        for (spi, d, hard) in live
            .iter_mut()
            .flat_map(|l| l.node.expire_due(Instant::now()))
        {
            let limit = if hard { "hard" } else { "soft" };
            tracing::info!(spi = format!("{spi:#x}"), direction = %d, "{limit} time limit passed");
        }
        for e in live.iter().flat_map(|l| l.node.events()) {
            let line = e.to_string();
            let event = watched(&e, &line);
            watchers.retain(|w| w.send(event.clone()).is_ok());
            writeln!(out, "{line}")?;
            out.flush()?;
            if history.len() == EVENT_HISTORY {
                history.pop_front();
            }
            history.push_back(line);
        }
    }
    if let Some(l) = live
        .as_ref()
        .filter(|l| drain_on_stop && !drained && stop.load(Ordering::Relaxed) && l.node.mirrored())
    {
        match drain(&l.node) {
            Ok(sas) => {
                tracing::info!(sas, "drained: every SA runs on the peer");
                drained = true;
            }
            Err((_, why)) => tracing::warn!(%why, "stopping without a drain"),
        }
    }
    if let Some(l) = live.as_ref().filter(|_| drained) {
        let frames = linger(&l.node);
        tracing::info!(
            frames,
            "frames that still reached this node sent on to the peer"
        );
    }
    if let Some(live) = live {
        let report = live.node.stop();
        crate::report::print(&report)?;
    }
    Ok(())
}
