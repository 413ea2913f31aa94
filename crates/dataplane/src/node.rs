//! Starting and stopping a node: SAs sharded over the workers, the shared
//! tables, one thread per worker (pinned when cores are given).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use espgate_esp::{Backend, Direction, InboundSa, OutboundSa, SaCounters, SaError, Sad, SadError};
use espgate_io::link::LinkProbe;
use espgate_io::{BufPool, Mempool, PortQueue};
use espgate_mirror::frame::ShortKey;
use espgate_mirror::{Mirror, MirrorConfigError, MirrorKey};
use espgate_wire::ethernet::MacAddr;
use rustc_hash::FxHashMap;

use crate::command::SaCommand;
use crate::config::{NodeConfig, PerSide, PortBackend, Role, SaEntry};
use crate::counters::WorkerCounters;
use crate::flow::NextHop;
use crate::keeper::{Keeper, KeeperTask};
use crate::marks::{Ledger, key_digest, next_epoch};
use crate::mirror_port::MirrorPort;
use crate::mirror_task::{
    EventLog, MirrorReport, MirrorTask, NodeEvent, Order, PairStatus, Unheard,
};
use crate::neigh::Neighbours;
use crate::progress::{PROGRESS_DEPTH, Reporting};
use crate::punt::PuntDevice;
use crate::spd::{Action, Spd};
use crate::state_dir::StateDir;
use crate::tables::{TableCell, Tables};
use crate::worker::{PortState, Shared, Worker, WorkerGuard, WorkerReport};
use std::path::Path;

/// Depth of each worker-to-worker hand-off ring.
pub const HANDOFF_DEPTH: usize = 1024;
/// The most workers a node runs (a node file allows as many). A frame's
/// verdict names the worker it is handed to in a byte, so never more than
/// 256; and each worker has a hand-off ring of [`HANDOFF_DEPTH`] from
/// every worker, so the rings grow with the square of the count.
pub const MAX_WORKERS: usize = 64;
const _: () = assert!(MAX_WORKERS <= 1 << u8::BITS);
/// Depth of each worker's command ring.
pub const COMMAND_DEPTH: usize = 4096;
/// Depth of each worker's ring of SA events (each SA tells each kind
/// once).
pub const SA_EVENT_DEPTH: usize = 1024;

/// Why a node cannot start, or an SA change cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// More workers than [`MAX_WORKERS`].
    #[error("{0} workers: a node runs at most {MAX_WORKERS}")]
    TooManyWorkers(usize),
    /// The configuration lacks the protected or unprotected port.
    #[error("no {0:?} port")]
    MissingPort(Role),
    /// Each worker needs one queue of each port.
    #[error("{role:?} port: {got} queues for {want} workers")]
    Queues {
        /// Which port.
        role: Role,
        /// Queues given.
        got: usize,
        /// Workers.
        want: usize,
    },
    /// An SA could not be built.
    #[error("sa {spi:#x}: {why}")]
    Sa {
        /// The SPI.
        spi: u32,
        /// What went wrong.
        why: SaProblem,
    },
    /// An SA names a worker that does not exist.
    #[error("sa {spi:#x}: worker {worker} does not exist ({count} workers)")]
    Worker {
        /// The SPI.
        spi: u32,
        /// The worker named.
        worker: usize,
        /// How many there are.
        count: usize,
    },
    /// A policy names an SA that is not configured in that direction.
    #[error("spd rule {rule}: sa {spi:#x} is not a configured {direction} SA")]
    UnknownSa {
        /// Rule index.
        rule: usize,
        /// The SPI.
        spi: u32,
        /// The direction it needs.
        direction: Direction,
    },
    /// A worker thread could not be started.
    #[error("cannot start worker {0}: {1}")]
    Spawn(usize, std::io::Error),
    /// No SA with this SPI in this direction.
    #[error("no {direction} SA {spi:#x}")]
    UnknownSpi {
        /// The SPI.
        spi: u32,
        /// Its direction.
        direction: Direction,
    },
    /// A change the node cannot make now.
    #[error("{0}")]
    Refused(Refusal),
    /// The workers or the mirror task did not take a change in time.
    #[error("{0} did not answer in time")]
    Busy(&'static str),
    /// The mirror settings cannot work.
    #[error("mirror: {0}")]
    Mirror(MirrorProblem),
    /// Mirroring is configured but no mirror port queue was given.
    #[error("mirror: no queue for the mirror port")]
    MissingMirrorPort,
    /// A punt port is configured but no punt device was given.
    #[error("punt: no device for the punt port")]
    MissingPunt,
    /// A peer address lies on none of this node's links.
    #[error("mirror: peer address {0} is on neither the protected nor the unprotected subnet")]
    PeerAddress(std::net::IpAddr),
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] crate::state_dir::StateError),
    /// An SA has key material another SA of this node has, or (added at
    /// run time) one of its earlier SAs had: that key's sequence numbers
    /// would start again.
    #[error(
        "{direction} sa {spi:#x}: its key material is that of {by_direction} sa {by:#x}, which this node {when}; the key's sequence numbers would start again: give the SA a new key"
    )]
    KeyUsed {
        /// The SA refused.
        spi: u32,
        /// Its direction.
        direction: Direction,
        /// The SA that has the key.
        by: u32,
        /// Its direction.
        by_direction: Direction,
        /// "runs" or "ran" (its state directory remembers it).
        when: &'static str,
    },
    /// The wall clock reads before 1970 and there is no state directory
    /// to carry the mirror's epoch on.
    #[error("mirror: the clock reads before 1970: set it, or give the node a state directory")]
    Clock,
}

// The typed causes below are fields, not `source`s: their words are in
// the message already (the control socket sends only the message), and a
// chain printed whole would say them twice.

/// Why an SA cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SaProblem {
    /// Its definition is unusable.
    #[error(transparent)]
    Definition(#[from] SaError),
    /// The SAD refused it.
    #[error(transparent)]
    Sad(#[from] SadError),
    /// Another SA of its direction has its SPI.
    #[error("duplicate {0} SPI")]
    Duplicate(Direction),
}

/// Why the mirror settings cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MirrorProblem {
    /// A protocol setting is out of range.
    #[error(transparent)]
    Config(#[from] MirrorConfigError),
    /// `max_frame` is above what a mirror port buffer holds (the error of
    /// [`check_max_frame`](crate::mirror_port::check_max_frame), which the
    /// node file's check shares; in the message, not a source, so a chain
    /// printed whole says it once).
    #[error("mirror.max_frame {0}")]
    MaxFrame(crate::mirror_port::FrameTooLarge),
    /// The key is too short.
    #[error(transparent)]
    Key(#[from] ShortKey),
    /// An inbound SA's replay window does not fit a mirror frame.
    #[error(
        "sa {spi:#x}: a replay window of {window} does not fit mirror frames of {max_frame} bytes"
    )]
    Window {
        /// The SPI.
        spi: u32,
        /// Its replay window, in packets.
        window: u32,
        /// The mirror frames' size limit.
        max_frame: usize,
    },
}

/// A change to the SAs that the node refuses.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A rekey's successor is of the other direction.
    #[error("sa {old:#x} is {direction}; its successor {new:#x} is {new_direction}")]
    Successor {
        /// The SA rekeyed.
        old: u32,
        /// Its direction.
        direction: Direction,
        /// The successor.
        new: u32,
        /// The successor's direction.
        new_direction: Direction,
    },
    /// The SA is being replaced by an earlier rekey.
    #[error("{direction} sa {spi:#x} is being replaced already")]
    Replacing {
        /// The SA.
        spi: u32,
        /// Its direction.
        direction: Direction,
    },
    /// A command for a worker the node does not have.
    #[error("worker {0} does not exist")]
    NoWorker(usize),
    /// No free inbound SPI was found.
    #[error(
        "no inbound SPI free: 65536 are handed out and not yet taken by an SA (each is kept 165 s), or the range is full"
    )]
    NoSpi,
    /// An SPI to reserve that an inbound SA has or was handed out.
    #[error("inbound SPI {0:#x} is in use or handed out already")]
    SpiTaken(u32),
    /// A rule to delete that the SPD does not have.
    #[error("the SPD has no {direction} rule {src} -> {dst} with those protocol and ports")]
    NoRule {
        /// Its direction.
        direction: Direction,
        /// Its source prefix.
        src: crate::prefix::Prefix,
        /// Its destination prefix.
        dst: crate::prefix::Prefix,
    },
}

/// The queues a node runs on: for each port, one per worker.
pub struct NodeQueues {
    /// Protected side.
    pub protected: Vec<Box<dyn PortQueue>>,
    /// Unprotected side.
    pub unprotected: Vec<Box<dyn PortQueue>>,
    /// The mirror port (one queue, the mirror task's), when mirroring.
    pub mirror: Option<Box<dyn PortQueue>>,
    /// The punt device (shared by the workers), when the node has a punt
    /// port.
    pub punt: Option<Arc<dyn PuntDevice>>,
    /// The data ports' links, watched when mirroring (see `flow`).
    pub links: Vec<Box<dyn espgate_io::link::LinkProbe>>,
}

/// A running node.
pub struct RunningNode {
    name: String,
    /// The configuration as it is now (SAs and rules changed since start
    /// included).
    pub(crate) cfg: NodeConfig,
    pub(crate) backend: Backend,
    /// SAs replaced by a rekey, with when they go.
    pub(crate) retiring: Vec<(std::time::Instant, u32, Direction)>,
    /// The SAs' time limits.
    pub(crate) aging: crate::aging::Aging,
    /// Inbound SPIs handed out for SAs to come.
    pub(crate) spis: crate::spi_pool::SpiPool,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<WorkerReport>>,
    pub(crate) shared: Arc<Shared>,
    mirror: Option<JoinHandle<MirrorReport>>,
    /// The node's marks, with a state directory.
    pub(crate) keeper: Option<Arc<Keeper>>,
    keeper_thread: Option<JoinHandle<StateDir>>,
    pub(crate) orders: Arc<ArrayQueue<Order>>,
    events: Arc<EventLog>,
    status: Arc<std::sync::Mutex<PairStatus>>,
}

/// What a node did, gathered when it stops.
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// Per-worker reports.
    pub workers: Vec<WorkerReport>,
    /// The mirror task's report, when mirroring.
    pub mirror: Option<MirrorReport>,
}

impl NodeReport {
    /// The counters of all workers added up.
    pub fn totals(&self) -> WorkerCounters {
        let mut t = WorkerCounters::default();
        for w in &self.workers {
            t.add(&w.counters);
        }
        t
    }

    /// Outbound SA counters by SPI, with the last sequence number used.
    pub fn outbound(&self) -> HashMap<u32, (SaCounters, u64)> {
        self.workers
            .iter()
            .flat_map(|w| w.outbound.iter().map(|(s, c, q)| (*s, (*c, *q))))
            .collect()
    }

    /// Inbound SA counters by SPI, with the replay window top.
    pub fn inbound(&self) -> HashMap<u32, (SaCounters, u64)> {
        self.workers
            .iter()
            .flat_map(|w| w.inbound.iter().map(|(s, c, q)| (*s, (*c, *q))))
            .collect()
    }
}

/// An SA built for its worker.
pub(crate) enum BuiltSa {
    /// Outbound.
    Outbound(OutboundSa),
    /// Inbound.
    Inbound(InboundSa),
}

/// Where an SA stands from the node's state: the mark its worker may run
/// to, and where an earlier life left it (`None`: no earlier life used its
/// key, as far as the state knows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// The durable mark (`u64::MAX` without a state directory).
    pub(crate) mark: u64,
    /// Outbound: the next sequence number; inbound: the window top, with
    /// everything below seen.
    pub(crate) resume: Option<u64>,
}

impl Placement {
    /// A node without a state directory: no mark, nothing to resume.
    pub(crate) const NONE: Placement = Placement {
        mark: u64::MAX,
        resume: None,
    };
}

/// Builds SA `entry` of `cfg` for its worker, with its reporting interval
/// and placed as its state says; an SA that runs here under a mirror uses
/// or accepts no sequence number until the mirror task gives it a limit.
pub(crate) fn build_sa(
    cfg: &NodeConfig,
    entry: &SaEntry,
    backend: Backend,
    place: Placement,
) -> Result<BuiltSa, NodeError> {
    let spi = entry.sa.spi;
    let sa_err = |e: SaError| NodeError::Sa { spi, why: e.into() };
    // Reported to the mirror at each multiple of the interval; an inbound
    // window at each half (its lease is one interval past the top the peer
    // acknowledged, so the acknowledgement must come before that). With a
    // state directory, at least every eighth of the SA's shortest reach
    // (`ahead` outbound, `MIN_INBOUND_REACH` inbound), so the keeper renews a mark
    // well before the SA reaches it.
    let state_every = cfg.state.dir.as_ref().map(|_| match entry.sa.direction {
        Direction::Outbound => (cfg.state.ahead / 8).max(1),
        // An inbound SA's reach can be as short as MIN_INBOUND_REACH.
        Direction::Inbound => crate::marks::MIN_INBOUND_REACH / 8,
    });
    let mirror_every = cfg.mirror.as_ref().map(|m| {
        let default = match entry.sa.direction {
            Direction::Outbound => m.protocol.interval,
            Direction::Inbound => m.protocol.inbound_interval,
        };
        let interval = entry.mirror.interval.unwrap_or(default).max(1);
        match entry.sa.direction {
            Direction::Outbound => interval,
            Direction::Inbound => (interval / 2).max(1),
        }
    });
    let every = mirror_every
        .into_iter()
        .chain(state_every)
        .min()
        .unwrap_or(0);
    // A mirrored SA uses or accepts no sequence number until the mirror
    // gives it a limit.
    let limit = if cfg.mirror.is_some() { 0 } else { u64::MAX };
    Ok(match entry.sa.direction {
        Direction::Outbound => {
            let mut sa = OutboundSa::new(&entry.sa, backend).map_err(sa_err)?;
            sa.set_limit(limit);
            sa.set_mark(place.mark);
            if let Some(next) = place.resume {
                sa.restart_at(next);
            }
            sa.set_report_every(every);
            BuiltSa::Outbound(sa)
        }
        Direction::Inbound => {
            let mut sa = InboundSa::new(&entry.sa, backend).map_err(sa_err)?;
            sa.set_limit(limit);
            sa.set_mark(place.mark);
            if let Some(top) = place.resume {
                sa.restore_window(top, &[u64::MAX; espgate_wire::mirror::MAX_BITMAP_WORDS]);
            }
            sa.set_report_every(every);
            BuiltSa::Inbound(sa)
        }
    })
}

/// Checks the SAs and rules of `cfg` against each other, the workers and
/// the mirror: owners exist, SPIs are unique in each direction, replay
/// windows fit mirror frames, protect rules name configured SAs, no two
/// SAs share key material (the nonce is the sequence number: two SAs with
/// one key would seal their packets with the same nonces).
pub(crate) fn check_sas(cfg: &NodeConfig) -> Result<(), NodeError> {
    let n = cfg.workers.count.max(1);
    let mut seen = std::collections::HashSet::new();
    let mut keys: HashMap<&[u8], (u32, Direction)> = HashMap::new();
    for entry in &cfg.sas {
        if let Some(&(by, by_direction)) = keys.get(&entry.sa.key[..]) {
            return Err(NodeError::KeyUsed {
                spi: entry.sa.spi,
                direction: entry.sa.direction,
                by,
                by_direction,
                when: "runs",
            });
        }
        keys.insert(&entry.sa.key[..], (entry.sa.spi, entry.sa.direction));
        let spi = entry.sa.spi;
        let owner = cfg.owner(entry);
        if owner >= n {
            return Err(NodeError::Worker {
                spi,
                worker: owner,
                count: n,
            });
        }
        if let Some(m) = &cfg.mirror
            && entry.sa.direction == Direction::Inbound
            && crate::progress::inbound_frame_len(entry.sa.replay_window) > m.protocol.max_frame
        {
            return Err(NodeError::Mirror(MirrorProblem::Window {
                spi,
                window: entry.sa.replay_window,
                max_frame: m.protocol.max_frame,
            }));
        }
        if !seen.insert((spi, entry.sa.direction)) {
            return Err(NodeError::Sa {
                spi,
                why: SaProblem::Duplicate(entry.sa.direction),
            });
        }
    }
    for (rule, r) in cfg.spd.iter().enumerate() {
        if let Action::Protect(spi) = r.action {
            let direction = r.direction;
            if !seen.contains(&(spi, direction)) {
                return Err(NodeError::UnknownSa {
                    rule,
                    spi,
                    direction,
                });
            }
        }
    }
    Ok(())
}

/// A node's state, read and placed, its first batch written.
struct Restored {
    keeper: Arc<Keeper>,
    dir: StateDir,
    /// Each SA of the configuration, by (SPI, direction).
    places: HashMap<(u32, Direction), Placement>,
    /// The mirror's epoch for this life, written already.
    epoch: u64,
}

/// Opens the state directory `dir` of `cfg`, places every SA past what an
/// earlier life wrote, and writes the marks (and the new epoch) the node
/// starts with, before any worker or frame may use them.
fn restore(cfg: &NodeConfig, dir: &Path, wall: Option<u64>) -> Result<Restored, NodeError> {
    let (state, saved) = StateDir::open(dir)?;
    let existed = saved.is_some();
    let saved = saved.unwrap_or_default();
    let epoch = next_epoch(wall, saved.epoch);
    let mut ledger = Ledger::new(saved, cfg.state.ahead);
    ledger.set_epoch(epoch);
    let (mut resumed, mut fresh) = (0, 0);
    let mut places = HashMap::new();
    for e in &cfg.sas {
        let key = key_digest(&e.sa.key);
        let resume = ledger.mark_of(&key);
        match resume {
            Some(_) => resumed += 1,
            None if existed => fresh += 1,
            None => {}
        }
        let pos = resume.unwrap_or(0).max(e.sa.initial_seq);
        ledger.track(e.sa.spi, e.sa.direction, key, pos);
        places.insert((e.sa.spi, e.sa.direction), Placement { mark: 0, resume });
    }
    if let Some(next) = ledger.batch(0) {
        state.write(&next)?;
        ledger.written();
    }
    for ((spi, d), p) in places.iter_mut() {
        p.mark = ledger.limit(*spi, *d);
    }
    tracing::info!(
        file = %state.file().display(),
        resumed,
        fresh,
        "state: SAs resume past their marks; those never used by this node start at their first number"
    );
    Ok(Restored {
        keeper: Arc::new(Keeper::new(ledger)),
        dir: state,
        places,
        epoch,
    })
}

/// Builds the workers and starts their threads.
pub fn start(
    cfg: &NodeConfig,
    queues: NodeQueues,
    backend: Backend,
    mempool: Arc<Mempool>,
) -> Result<RunningNode, NodeError> {
    let n = cfg.workers.count.max(1);
    if n > MAX_WORKERS {
        return Err(NodeError::TooManyWorkers(n));
    }
    let prot = cfg
        .port(Role::Protected)
        .ok_or(NodeError::MissingPort(Role::Protected))?;
    let unprot = cfg
        .port(Role::Unprotected)
        .ok_or(NodeError::MissingPort(Role::Unprotected))?;
    for (role, got) in [
        (Role::Protected, queues.protected.len()),
        (Role::Unprotected, queues.unprotected.len()),
    ] {
        if got != n {
            return Err(NodeError::Queues { role, got, want: n });
        }
    }
    if cfg.punt.is_some() && queues.punt.is_none() {
        return Err(NodeError::MissingPunt);
    }
    let key = match &cfg.mirror {
        Some(m) => {
            m.protocol
                .check()
                .map_err(|e| NodeError::Mirror(e.into()))?;
            crate::mirror_port::check_max_frame(m.protocol.max_frame)
                .map_err(|e| NodeError::Mirror(MirrorProblem::MaxFrame(e)))?;
            Some(MirrorKey::new(&m.key).map_err(|e| NodeError::Mirror(e.into()))?)
        }
        None => None,
    };
    check_sas(cfg)?;
    // Nanoseconds since 1970 (`None` for a clock before it).
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos() as u64);
    let restored = match &cfg.state.dir {
        Some(dir) => Some(restore(cfg, dir, wall)?),
        None => None,
    };
    let mut mirror = match (cfg.mirror.as_ref().zip(key), &restored) {
        (Some((m, key)), Some(r)) => Some(Mirror::new(m.protocol, key, r.epoch, 0)),
        (Some((m, key)), None) => {
            // Without a state directory the clock alone makes the epoch.
            Some(Mirror::new(
                m.protocol,
                key,
                wall.ok_or(NodeError::Clock)?,
                0,
            ))
        }
        (None, _) => None,
    };
    let mut parked: Vec<Vec<(u32, Direction)>> = vec![Vec::new(); n];
    let mut outbound: Vec<FxHashMap<u32, OutboundSa>> =
        (0..n).map(|_| FxHashMap::default()).collect();
    let mut sads: Vec<Sad> = (0..n).map(|_| Sad::new()).collect();
    let mut tables = Tables {
        spd: Spd::new(cfg.spd.clone()),
        ..Tables::default()
    };
    for entry in &cfg.sas {
        let spi = entry.sa.spi;
        let owner = cfg.owner(entry);
        let mut place = restored
            .as_ref()
            .and_then(|r| r.places.get(&(spi, entry.sa.direction)).copied())
            .unwrap_or(Placement::NONE);
        if let (Some(m), Some(s)) = (mirror.as_mut(), cfg.mirror.as_ref()) {
            let node = entry.home.unwrap_or(s.protocol.node);
            let dir = entry.sa.direction;
            m.add_sa_with(spi, dir, entry.sa.esn, node, entry.mirror);
            // The mirror places the SA: every restart point it gives is
            // past the floor, but an exact hand-over from the peer starts
            // where the peer's worker stopped, below a mark this node
            // wrote ahead (see `espgate_mirror`'s `leave`), which the
            // worker's own resume would jump past.
            if let Some(floor) = place.resume.take() {
                m.restore(spi, dir, floor);
            }
            if !cfg.is_home(entry) {
                parked[owner].push((spi, entry.sa.direction));
            }
        }
        tables.name(&entry.sa, owner);
        match build_sa(cfg, entry, backend, place)? {
            BuiltSa::Outbound(sa) => {
                outbound[owner].insert(spi, sa);
            }
            BuiltSa::Inbound(sa) => {
                sads[owner]
                    .add(sa)
                    .map_err(|e| NodeError::Sa { spi, why: e.into() })?;
            }
        }
    }
    let mut peer_addresses: PerSide<Vec<std::net::IpAddr>> = PerSide::default();
    for ip in cfg.mirror.iter().flat_map(|m| &m.peer_addresses) {
        let side = if prot.subnet.contains(ip) {
            Role::Protected
        } else if unprot.subnet.contains(ip) {
            Role::Unprotected
        } else {
            return Err(NodeError::PeerAddress(*ip));
        };
        peer_addresses[side].push(*ip);
    }
    // The next hops whose silence fails the flow: a pair's, while its
    // links are watched.
    let link_watch = cfg
        .mirror
        .as_ref()
        .map(|m| m.link_watch)
        .filter(|w| w.down_ms > 0);
    let tracked: Vec<(&crate::config::PortConfig, IpAddr)> = match link_watch {
        Some(_) => [prot, unprot]
            .into_iter()
            .flat_map(|p| p.track.iter().map(move |ip| (p, *ip)))
            .collect(),
        None => Vec::new(),
    };
    // Worker 0 probes them (the configuration takes IPv4 ones only).
    let probe_targets: Vec<(Role, std::net::Ipv4Addr)> = tracked
        .iter()
        .filter_map(|(p, ip)| match ip {
            IpAddr::V4(v4) => Some((p.role, *v4)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let shared = Arc::new(Shared {
        tables: TableCell::new(tables),
        neighbours: Neighbours::new(cfg.neighbours.iter().map(|nb| (nb.ip, nb.mac)))
            .tracking(tracked.iter().map(|(_, ip)| *ip)),
        handoff: (0..n)
            .map(|_| {
                (0..n)
                    .map(|_| Arc::new(ArrayQueue::new(HANDOFF_DEPTH)))
                    .collect()
            })
            .collect(),
        commands: (0..n)
            .map(|_| Arc::new(ArrayQueue::new(COMMAND_DEPTH)))
            .collect(),
        sa_events: (0..n)
            .map(|_| Arc::new(ArrayQueue::new(SA_EVENT_DEPTH)))
            .collect(),
        peer_addresses,
        adopted: AtomicBool::new(false),
        announce: AtomicU64::new(0),
        workers_lost: AtomicUsize::new(0),
        turns: (0..n).map(|_| Default::default()).collect(),
    });
    let rings: Vec<_> = (0..n)
        .map(|_| Arc::new(ArrayQueue::new(PROGRESS_DEPTH)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut pq = queues.protected.into_iter();
    let mut uq = queues.unprotected.into_iter();
    for (id, (out_sas, sad)) in outbound.into_iter().zip(sads).enumerate() {
        let state = |queue: Box<dyn PortQueue>, p: &crate::config::PortConfig| PortState {
            role: p.role,
            mac: queue.info().mac,
            address: p.address,
            subnet: p.subnet,
            gateway: p.gateway,
            mtu: p.mtu,
            queue,
            tx: Vec::with_capacity(cfg.workers.burst * 2),
        };
        let ports = PerSide {
            protected: state(pq.next().expect("counted"), prot),
            unprotected: state(uq.next().expect("counted"), unprot),
        };
        let mut worker = Worker::new(
            id,
            shared.clone(),
            ports,
            out_sas,
            sad,
            BufPool::new(mempool.clone(), 64),
            cfg.workers.burst,
            Duration::from_micros(cfg.workers.idle_sleep_us),
        );
        if cfg.mirror.is_some() || restored.is_some() {
            worker = worker.with_reporting(Reporting {
                ring: rings[id].clone(),
            });
        }
        if let Some(device) = &queues.punt {
            worker = worker.with_punt(device.clone());
        }
        if let Some(watch) = link_watch {
            worker = worker.with_probing(
                probe_targets.clone(),
                Duration::from_millis(watch.probe_ms()),
            );
        }
        for (spi, d) in &parked[id] {
            worker.park(*spi, *d);
        }
        let stop = stop.clone();
        let core = cfg.workers.cores.get(id).copied();
        let guard = WorkerGuard(shared.clone());
        let t = std::thread::Builder::new()
            .name(format!("{}-w{id}", cfg.name))
            .spawn(move || {
                let _guard = guard;
                if let Some(core) = core
                    && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
                {
                    tracing::warn!(core, "could not pin worker to core");
                }
                worker.run(&stop)
            })
            .map_err(|e| NodeError::Spawn(id, e))?;
        threads.push(t);
    }
    let orders = Arc::new(ArrayQueue::new(64));
    let events = Arc::new(EventLog::default());
    let status = Arc::new(std::sync::Mutex::new(PairStatus::default()));
    let keeper = restored.as_ref().map(|r| r.keeper.clone());
    let (rings, keeper_thread) = match restored {
        Some(r) => {
            // Without a mirror task the keeper drains the progress rings.
            let (mine, rings) = if mirror.is_some() {
                (Vec::new(), rings)
            } else {
                (rings, Vec::new())
            };
            let task = KeeperTask {
                keeper: r.keeper,
                dir: r.dir,
                shared: shared.clone(),
                rings: mine,
            };
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("{}-state", cfg.name))
                .spawn(move || task.run(&stop))
                .map_err(|e| NodeError::Spawn(n + 1, e))?;
            (rings, Some(t))
        }
        None => (rings, None),
    };
    let mirror = match (mirror, &cfg.mirror) {
        (Some(m), Some(s)) => {
            let queue = queues.mirror.ok_or(NodeError::MissingMirrorPort)?;
            let task = MirrorTask {
                mirror: m,
                port: MirrorPort::new(
                    queue,
                    BufPool::new(mempool.clone(), 64),
                    s.peer_mac.unwrap_or(MacAddr::BROADCAST),
                ),
                shared: shared.clone(),
                rings,
                keeper: keeper.clone(),
                takeover: s.takeover,
                failback: s.failback,
                workers: crate::flow::WorkerWatch::new(n, s.worker_stall_ms),
                flow: crate::flow::FlowWatch::new(
                    queues
                        .links
                        .into_iter()
                        .chain(tracked.iter().map(|(port, ip)| {
                            Box::new(NextHop::new(shared.clone(), &port.name, *ip, s.link_watch))
                                as Box<dyn LinkProbe>
                        }))
                        .collect(),
                    s.link_watch,
                ),
                orders: orders.clone(),
                events: events.clone(),
                status: status.clone(),
                unheard: Unheard {
                    after_ms: Unheard::after_ms(s.protocol.heartbeat_ms),
                    port: format!(
                        "{} ({})",
                        s.port_name,
                        match &s.port_backend {
                            PortBackend::AfPacket { interface } =>
                                format!("af_packet on {interface}"),
                            PortBackend::Dpdk { device } => format!("dpdk device {device}"),
                            PortBackend::Mem => "mem".to_string(),
                            PortBackend::Pcap { .. } => "pcap".to_string(),
                        }
                    ),
                    peer_mac: s.peer_mac,
                    peer: s.protocol.peer,
                },
            };
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("{}-mirror", cfg.name))
                .spawn(move || task.run(&stop))
                .map_err(|e| NodeError::Spawn(n, e))?;
            Some(t)
        }
        _ => None,
    };
    Ok(RunningNode {
        name: cfg.name.clone(),
        cfg: cfg.clone(),
        backend,
        retiring: Vec::new(),
        aging: {
            let mut aging = crate::aging::Aging::default();
            let now = std::time::Instant::now();
            for e in &cfg.sas {
                aging.add(e.sa.spi, e.sa.direction, &e.sa.lifetime, now);
            }
            aging
        },
        spis: Default::default(),
        stop,
        threads,
        shared,
        mirror,
        keeper,
        keeper_thread,
        orders,
        events,
        status,
    })
}

impl RunningNode {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a command to the worker that owns its SA; gives it back if
    /// the SA is unknown or that worker's ring is full (never blocks).
    pub fn command(&self, cmd: SaCommand) -> Result<(), SaCommand> {
        self.shared.command(cmd)
    }

    /// Commands not yet taken by their workers. A worker carries a command
    /// out as it takes it, before it touches another frame, so at 0 every
    /// command sent so far is in effect.
    pub fn commands_pending(&self) -> usize {
        self.shared.commands_pending()
    }

    /// Gives the mirror task an order; `false` if the node has no mirror
    /// or too many orders wait.
    pub fn order(&self, order: Order) -> bool {
        self.mirror.is_some() && self.orders.push(order).is_ok()
    }

    /// Whether the node mirrors its SAs to a peer.
    pub fn mirrored(&self) -> bool {
        self.mirror.is_some()
    }

    /// The configuration as it is now.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The pair's state now; `None` for a node without a mirror.
    pub fn pair_status(&self) -> Option<PairStatus> {
        self.mirror.as_ref()?;
        self.status.lock().ok().map(|s| *s)
    }

    /// The node's marks, when it has a state directory.
    pub fn keeper(&self) -> Option<&Keeper> {
        self.keeper.as_deref()
    }

    /// Takes the events logged since the last call: the pair's, then its
    /// SAs' (each logged as a warning: a rekey is due).
    pub fn events(&self) -> Vec<NodeEvent> {
        let mut out = self.events.drain();
        for ring in &self.shared.sa_events {
            while let Some(kind) = ring.pop() {
                let e = NodeEvent {
                    unix_ms: crate::mirror_task::unix_ms(),
                    kind,
                };
                tracing::warn!("{e}");
                out.push(e);
            }
        }
        out
    }

    /// Stops the workers and gathers their reports.
    pub fn stop(self) -> NodeReport {
        self.stop.store(true, Ordering::Relaxed);
        let workers = self
            .threads
            .into_iter()
            .map(|t| t.join().expect("worker thread panicked"))
            .collect();
        let mirror = self
            .mirror
            .map(|t| t.join().expect("mirror thread panicked"));
        if let (Some(t), Some(k)) = (self.keeper_thread, &self.keeper) {
            let dir = t.join().expect("state thread panicked");
            k.last_write(&dir);
        }
        NodeReport {
            name: self.name,
            workers,
            mirror,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StateSettings, WorkersConfig};

    /// A node of `count` workers and nothing else.
    fn workers(count: usize) -> NodeConfig {
        NodeConfig {
            name: "n".into(),
            ports: Vec::new(),
            workers: WorkersConfig {
                count,
                ..WorkersConfig::default()
            },
            sas: Vec::new(),
            spd: Vec::new(),
            neighbours: Vec::new(),
            dpdk_eal_args: None,
            mirror: None,
            state: StateSettings::default(),
            punt: None,
        }
    }

    fn start_with(count: usize) -> Result<RunningNode, NodeError> {
        let queues = NodeQueues {
            protected: Vec::new(),
            unprotected: Vec::new(),
            mirror: None,
            punt: None,
            links: Vec::new(),
        };
        start(
            &workers(count),
            queues,
            Backend::DEFAULT,
            Mempool::new(8, 0),
        )
    }

    #[test]
    fn more_workers_than_a_node_runs_are_refused() {
        let e = start_with(MAX_WORKERS + 1).err().expect("refused");
        assert!(matches!(e, NodeError::TooManyWorkers(65)), "{e:?}");
        assert_eq!(e.to_string(), "65 workers: a node runs at most 64");
        // The most workers pass the count and fail on what comes next.
        let e = start_with(MAX_WORKERS).err().expect("no ports");
        assert!(
            matches!(e, NodeError::MissingPort(Role::Protected)),
            "{e:?}"
        );
    }
}
