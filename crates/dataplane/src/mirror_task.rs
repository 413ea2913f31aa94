//! The mirror task: one thread per node (not a slot in a worker's loop, so
//! a worker's burst time never includes the mirror and a busy worker never
//! delays a heartbeat). It drains the workers' progress rings into the
//! sans-IO [`Mirror`], moves frames between it and the mirror port, keeps
//! its clock, and turns its events into worker commands: lease limits,
//! activations and parkings of SAs, and the addresses this node holds.
//! Workers never wait for it: the only lock both take is the read side
//! of the published tables' `RwLock` (see `TableCell`), and readers do
//! not wait for one another.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use espgate_esp::{Direction, SaEvent};
use espgate_io::QueueStats;
use espgate_mirror::{
    FenceRefused, LeaveRefused, Mirror, MirrorEvent, MirrorStats, PairSaView, Reject,
    RejectCounters, SaOverrides,
};
use espgate_wire::ethernet::MacAddr;

use crate::command::SaCommand;
use crate::config::{Failback, Takeover};
use crate::flow::{FlowChange, FlowWatch, WorkerWatch};
use crate::keeper::Keeper;
use crate::mirror_port::MirrorPort;
use crate::progress::Progress;
use crate::worker::Shared;

/// Events kept for readers (the control socket, tests); older ones go.
pub const EVENT_LOG_DEPTH: usize = 1024;

/// Something the pair did, for the event log and the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEventKind {
    /// The peer is heard, in this epoch.
    PeerAlive {
        /// Its epoch.
        epoch: u64,
    },
    /// The peer missed its heartbeats.
    PeerDead,
    /// The peer's bulk sync completed.
    Synced {
        /// SA states it carried.
        records: u64,
    },
    /// This node took over the peer's SAs.
    TookOver {
        /// How many.
        sas: usize,
    },
    /// This node handed the peer's SAs back.
    HandedBack {
        /// How many.
        sas: usize,
    },
    /// This node handed every SA it ran to its peer, exactly, and the
    /// peer heard its goodbye: it may stop.
    Drained {
        /// How many SAs it handed over.
        sas: usize,
    },
    /// The peer handed every SA it ran to this node and said goodbye:
    /// this node runs them with no lease waiting on the peer.
    PeerLeft,
    /// This node's packet flow failed (`port`'s link is down, or its
    /// tracked `next_hop` answers no ARP probe): it hands every SA it runs
    /// to the peer, and is given none, until it works.
    FlowFailed {
        /// The port whose link is down, or where the silent next hop is.
        port: String,
        /// The silent next hop (none: the port's own link is down).
        next_hop: Option<std::net::IpAddr>,
    },
    /// This node's packet flow works again: the peer may fail back.
    FlowWorks,
    /// The peer's packet flow failed (`failed`), or works again.
    PeerFlow {
        /// Failed, or works again.
        failed: bool,
    },
    /// An SA started here.
    Activated {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
        /// First sequence number, or window top.
        start: u64,
    },
    /// An SA stopped here (the mirror deactivated it; its worker parks
    /// it).
    Deactivated {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
    },
    /// This node answers for the peer's addresses (and announced them).
    AddressesAdopted,
    /// This node no longer answers for the peer's addresses.
    AddressesReleased,
    /// Told the peer is fenced: SAs run without leases.
    Fenced,
    /// Told the peer is fenced, and refused.
    FenceRefused {
        /// Why.
        why: FenceRefused,
    },
    /// Ordered to hand the peer's SAs back, and refused.
    HandBackRefused {
        /// Why.
        why: HandBackRefused,
    },
    /// A worker's thread ended in a panic: the node sends nothing more on
    /// the mirror link, so the peer declares it dead and takes its SAs
    /// over instead of leaving them black-holed.
    WorkersLost,
    /// These workers' loops have stood still for `worker_stall_ms`: the
    /// node's packet flow has failed, and every SA it runs goes to the
    /// peer (a stalled worker's past the highest limit it was given, as
    /// it cannot report a final state; the others exactly).
    WorkersStalled {
        /// The stalled workers.
        workers: Vec<usize>,
    },
    /// Every worker turns again: the flow works (if the links do), and
    /// the peer may fail back.
    WorkersTurn,
    /// An SA running here waited at its limit for a second or more.
    SaStalled {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
    },
    /// A stalled SA goes on, or no longer runs here.
    SaUnstalled {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
    },
    /// The peer has been dead for a second or more and `sas` of its SAs
    /// run nowhere: a takeover must be ordered.
    Orphaned {
        /// How many.
        sas: usize,
    },
    /// An outbound ESN SA would have started too far past the last number
    /// sent on it for its far end to follow: it is held (sends nothing)
    /// until it is rekeyed.
    BeyondReach {
        /// SPI.
        spi: u32,
        /// Where it would have started.
        start: u64,
        /// The first number past those known sent.
        sent_to: u64,
    },
    /// A packet matched a trap rule: the IKE daemon is asked for an SA
    /// for its traffic.
    Acquire {
        /// The packet's source address.
        src: std::net::IpAddr,
        /// Its destination address.
        dst: std::net::IpAddr,
        /// Its protocol.
        protocol: u8,
        /// Its source port (TCP, UDP; else 0).
        sport: u16,
        /// Its destination port.
        dport: u16,
    },
    /// An SA running here told its worker of a lifetime crossed or its
    /// sequence space running low or out (a rekey is due).
    Sa {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
        /// What it told.
        event: SaEvent,
    },
}

/// An event with its wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// What happened.
    pub kind: NodeEventKind,
}

impl std::fmt::Display for NodeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event t={} ", self.unix_ms)?;
        match &self.kind {
            NodeEventKind::PeerAlive { epoch } => write!(f, "peer_alive epoch={epoch}"),
            NodeEventKind::PeerDead => write!(f, "peer_dead"),
            NodeEventKind::Synced { records } => write!(f, "synced records={records}"),
            NodeEventKind::TookOver { sas } => write!(f, "took_over sas={sas}"),
            NodeEventKind::HandedBack { sas } => write!(f, "handed_back sas={sas}"),
            NodeEventKind::Drained { sas } => write!(f, "drained sas={sas}"),
            NodeEventKind::PeerLeft => write!(f, "peer_left"),
            NodeEventKind::FlowFailed {
                port,
                next_hop: None,
            } => write!(f, "flow_failed port={port}"),
            NodeEventKind::FlowFailed {
                port,
                next_hop: Some(ip),
            } => write!(f, "flow_failed port={port} next_hop={ip}"),
            NodeEventKind::FlowWorks => write!(f, "flow_works"),
            NodeEventKind::PeerFlow { failed } => write!(f, "peer_flow failed={failed}"),
            NodeEventKind::Activated {
                spi,
                direction,
                start,
            } => write!(f, "activated spi={spi:#x} dir={direction} start={start}"),
            NodeEventKind::Deactivated { spi, direction } => {
                write!(f, "deactivated spi={spi:#x} dir={direction}")
            }
            NodeEventKind::AddressesAdopted => write!(f, "addresses_adopted"),
            NodeEventKind::AddressesReleased => write!(f, "addresses_released"),
            NodeEventKind::Fenced => write!(f, "fenced"),
            NodeEventKind::FenceRefused { why } => write!(f, "fence_refused why=\"{why}\""),
            NodeEventKind::HandBackRefused { why } => {
                write!(f, "hand_back_refused why=\"{why}\"")
            }
            NodeEventKind::WorkersLost => write!(f, "workers_lost"),
            NodeEventKind::WorkersStalled { workers } => {
                let list: Vec<String> = workers.iter().map(|w| w.to_string()).collect();
                write!(f, "workers_stalled workers={}", list.join(","))
            }
            NodeEventKind::WorkersTurn => write!(f, "workers_turn"),
            NodeEventKind::SaStalled { spi, direction } => {
                write!(f, "sa_stalled spi={spi:#x} dir={direction}")
            }
            NodeEventKind::SaUnstalled { spi, direction } => {
                write!(f, "sa_unstalled spi={spi:#x} dir={direction}")
            }
            NodeEventKind::Orphaned { sas } => write!(f, "orphaned sas={sas}"),
            NodeEventKind::BeyondReach {
                spi,
                start,
                sent_to,
            } => write!(
                f,
                "beyond_reach spi={spi:#x} start={start} sent_to={sent_to}"
            ),
            NodeEventKind::Sa {
                spi,
                direction,
                event,
            } => write!(f, "sa_event spi={spi:#x} dir={direction} event={event}"),
            NodeEventKind::Acquire {
                src,
                dst,
                protocol,
                sport,
                dport,
            } => write!(
                f,
                "acquire src={src} dst={dst} protocol={protocol} sport={sport} dport={dport}"
            ),
        }
    }
}

/// The node's event log: bounded, newest kept.
#[derive(Debug, Default)]
pub struct EventLog(Mutex<VecDeque<NodeEvent>>);

impl EventLog {
    fn push(&self, kind: NodeEventKind) {
        let e = NodeEvent {
            unix_ms: unix_ms(),
            kind,
        };
        tracing::debug!("{e}");
        if let Ok(mut q) = self.0.lock() {
            if q.len() == EVENT_LOG_DEPTH {
                q.pop_front();
            }
            q.push_back(e);
        }
    }

    /// Takes the events logged so far.
    pub fn drain(&self) -> Vec<NodeEvent> {
        self.0
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why an order to hand the peer's SAs back was refused: the peer could
/// run nothing handed to it, and this node would no longer run the SAs
/// either (an SA handed to a dead peer waits for it to confirm before it
/// may be taken over again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandBackRefused {
    /// The peer is not heard.
    #[error("the peer is not heard: it could run nothing handed back to it")]
    PeerNotHeard,
    /// The peer is heard but has not synchronised since it started (or is
    /// a life this node fenced, which must restart first).
    #[error(
        "the peer has not synchronised since it started (or is the life this node fenced): it could run nothing handed back to it"
    )]
    PeerNotSynced,
    /// The peer's packet flow has failed (a data port's link is down).
    #[error(
        "the peer's packet flow has failed (a data port's link is down): it could carry nothing"
    )]
    PeerFlowFailed,
}

/// Why this node could not hand everything over and leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainRefused {
    /// The peer is not heard.
    #[error("the peer is not heard: nobody would take the SAs")]
    PeerNotHeard,
    /// The peer has not synchronised since it started.
    #[error("the peer has not synchronised since it started: it could run nothing handed to it")]
    PeerNotSynced,
    /// The peer's packet flow has failed.
    #[error(
        "the peer's packet flow has failed (a data port's link is down): it could carry nothing"
    )]
    PeerFlowFailed,
    /// This node has not synchronised since it started: where its SAs
    /// stand is unknown here, so nothing can be handed over exactly.
    #[error("this node has not synchronised since it started: it has no exact state to hand over")]
    NotSynced,
    /// A drain is under way already.
    #[error("a drain is under way already")]
    Busy,
    /// The goodbye did not go: the peer went silent, or this node took
    /// SAs over meanwhile. The node runs on.
    #[error(
        "the peer went silent, or SAs came back here, before the goodbye went: this node runs on"
    )]
    Abandoned,
    /// Not done in time (SAs not handed over, or the goodbye refused):
    /// the node runs what it still has.
    #[error("not done in {ms} ms ({waiting}): this node runs what it still has")]
    TimedOut {
        /// The drain's time limit.
        ms: u64,
        /// What the drain waited for last.
        waiting: String,
    },
    /// The goodbye went out and no answer came: this node runs nothing
    /// more (the peer may have taken the goodbye in) and must stop.
    #[error("the goodbye went out and the peer's answer did not come: this node runs nothing more")]
    Unanswered,
}

/// What the host or an operator tells the mirror task.
#[derive(Debug)]
pub enum Order {
    /// Take the peer's SAs over now.
    TakeOver,
    /// Hand the peer's SAs back now, if the peer can run them; the answer
    /// says how many, or why not.
    HandBack(Sender<Result<usize, HandBackRefused>>),
    /// The peer is fenced (powered off, isolated): run without leases;
    /// the answer says whether the mirror took it or why not.
    Fence(Sender<Result<(), FenceRefused>>),
    /// Hand every SA to the peer exactly and say goodbye; the answer
    /// comes once the peer heard it (how many SAs went), or says why not.
    Drain(Sender<Result<usize, DrainRefused>>),
    /// An SA was added to the pair (its worker has it already): mirror
    /// it, and if it runs here give it its lease limit; then say so on
    /// `done`.
    AddSa {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
        /// Extended sequence numbers.
        esn: bool,
        /// The node it runs on while both live.
        home: u32,
        /// Its own interval or quantity.
        overrides: SaOverrides,
        /// Told once the SA's limit is on its way to the worker.
        done: Sender<()>,
    },
    /// Send every SA of the pair as the mirror sees it.
    View(Sender<Vec<PairSaView>>),
    /// An SA was deleted from the pair: forget it.
    RemoveSa {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
    },
}

/// The pair as the mirror task sees it now (for the control socket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairStatus {
    /// This node's mirror epoch: its life, new and larger at every start.
    pub epoch: u64,
    /// The peer is heard.
    pub peer_alive: bool,
    /// The peer's bulk sync completed.
    pub synced: bool,
    /// SAs whose home is the peer that this node runs.
    pub holding: usize,
    /// Peer SAs in the standby table.
    pub standby: usize,
    /// Mirror frames sent.
    pub frames_sent: u64,
    /// Mirror frames accepted.
    pub frames_received: u64,
    /// Mirror frames refused.
    pub rejected: u64,
    /// The protocol's counters.
    pub stats: MirrorStats,
    /// Frames refused, by reason.
    pub rejects: RejectCounters,
    /// Items waiting to be sent on the mirror link.
    pub queued: usize,
    /// This node's packet flow has failed (a link or tracked next hop
    /// down, a worker stalled): its SAs go to the peer.
    pub flow_failed: bool,
    /// The peer's last frame said its packet flow has failed.
    pub peer_flow_failed: bool,
    /// Workers whose loop stands still.
    pub workers_stalled: usize,
}

/// What the mirror task did, gathered when the node stops.
#[derive(Debug, Clone)]
pub struct MirrorReport {
    /// Protocol counters.
    pub stats: MirrorStats,
    /// Frames refused, by reason.
    pub rejected: RejectCounters,
    /// Peer SAs in the standby table.
    pub standby: usize,
    /// Progress records taken from the workers.
    pub progress: u64,
    /// Frames on the mirror port that were not mirror frames.
    pub not_mirror: u64,
    /// Transmit bursts the mirror port did not take whole (the rest went
    /// later), and frames too large for a buffer (dropped).
    pub tx_full: u64,
    /// The mirror port's counters.
    pub queue: QueueStats,
}

/// How the task is set up.
pub struct MirrorTask {
    /// The protocol state.
    pub mirror: Mirror,
    /// The mirror port, with the peer's MAC.
    pub port: MirrorPort,
    /// The workers' tables and rings.
    pub shared: Arc<Shared>,
    /// One progress ring per worker.
    pub rings: Vec<Arc<ArrayQueue<Progress>>>,
    /// The node's marks (with a state directory): told every progress
    /// and activation, so it writes marks ahead of them.
    pub keeper: Option<Arc<Keeper>>,
    /// When to take over.
    pub takeover: Takeover,
    /// When to hand back.
    pub failback: Failback,
    /// The workers' loops: while one stands still, the node is silent.
    pub workers: WorkerWatch,
    /// The data ports' links: a node whose flow failed hands its SAs to
    /// the peer.
    pub flow: FlowWatch,
    /// Orders from outside.
    pub orders: Arc<ArrayQueue<Order>>,
    /// The event log.
    pub events: Arc<EventLog>,
    /// Where the task publishes the pair's state.
    pub status: Arc<Mutex<PairStatus>>,
    /// What to say when the peer stays unheard.
    pub unheard: Unheard,
}

/// When a silent peer is told in the log, and what the line names to
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unheard {
    /// How long the peer may go unheard (since the start, or since it was
    /// lost) before the line is logged: [`Unheard::after_ms`].
    pub after_ms: u64,
    /// The mirror port as configured: its name and how it reaches the
    /// wire (`mirror (af_packet on a-mir)`).
    pub port: String,
    /// `mirror.peer_mac`; `None`: frames go to broadcast.
    pub peer_mac: Option<MacAddr>,
    /// The peer's node id.
    pub peer: u32,
}

impl Unheard {
    /// How long a peer with heartbeats every `heartbeat_ms` may go
    /// unheard before it is told: ten heartbeats, and at least 3 s (a
    /// peer starting a second later is no news).
    pub fn after_ms(heartbeat_ms: u64) -> u64 {
        heartbeat_ms.saturating_mul(10).max(3000)
    }
}

/// What a refused mirror frame means, for the log.
fn refused_because(why: Reject) -> &'static str {
    match why {
        Reject::Malformed => "too short, or authentic but unparseable (a peer of another version?)",
        Reject::Forged => {
            "its MAC does not verify: the two nodes' mirror.key differ, or something on the link alters frames"
        }
        Reject::WrongNode => {
            "sent by this node itself (the mirror link loops back) or by a node other than mirror.peer"
        }
        Reject::Stale => {
            "from an older life of the peer (a frame held up on the link, or two processes of the peer)"
        }
        Reject::Replayed => {
            "a frame counter already accepted (a duplicate or a replay on the link)"
        }
    }
}

/// How long to sleep when there was nothing to do.
const IDLE: Duration = Duration::from_micros(200);
/// How long an SA added at run time may wait for the peer's answer before
/// the add is answered all the same (the SA then runs when the answer
/// comes).
const ASK_WAIT_MS: u64 = 500;

/// How long one turn of the loop waits for workers to take a parking; no
/// frame goes out until they have (if that lasts, the peer declares this
/// node dead and takes its SAs over).
const PARK_WAIT: Duration = Duration::from_millis(100);

struct Running {
    task: MirrorTask,
    start: Instant,
    pending: VecDeque<SaCommand>,
    failback_at: Option<u64>,
    /// Run-time adds waiting for the peer's answer before theirs.
    asked: Vec<(u32, Direction, u64, Sender<()>)>,
    progress: u64,
    /// SAs whose home is the peer run here: counted again only when an
    /// SA moved (the count walks every SA of the pair).
    holding: usize,
    /// An SA was parked: no frame goes out (the hand-over that follows
    /// must not reach the peer while a worker still uses the SA) until
    /// every worker has taken its commands.
    parking: bool,
    /// Workers are lost: nothing goes out any more.
    silent: bool,
    /// SAs stopped for an exact hand-over.
    stops: BTreeMap<(u32, Direction), Stop>,
    /// The last stop's stamp.
    stamp: u64,
    /// The final states workers reported for stopped SAs.
    finals: BTreeMap<(u32, Direction), u64>,
    /// The highest limit ever sent to a worker for each SA: a stalled
    /// worker, which cannot report a final state, used nothing at or past
    /// it.
    limits_sent: BTreeMap<(u32, Direction), u64>,
    /// An operator's drain under way.
    draining: Option<Draining>,
    /// Since when the peer has not been heard (ms; 0: the start), while
    /// it is not.
    unheard_since: Option<u64>,
    /// This silence was told.
    unheard_told: bool,
    /// The peer life whose refused frames are being told (`None`: none
    /// heard yet), the counts when it began and the reasons told in it.
    refusals_life: Option<u64>,
    refusals_base: RejectCounters,
    refusals_told: [bool; Reject::COUNT],
}

/// A drain under way: who waits for its answer, until when, and how far
/// it got.
struct Draining {
    reply: Sender<Result<usize, DrainRefused>>,
    deadline: u64,
    sas: usize,
    goodbye: bool,
    /// What the drain waits for, as last seen.
    waiting: String,
}

/// An SA stopped for an exact hand-over.
struct Stop {
    /// The stamp of its stop.
    stamp: u64,
    /// When it was ordered (ms).
    since: u64,
    /// Which run of the SA the keeper follows under its SPI (an SA
    /// deleted and added again meanwhile is another).
    serial: Option<u64>,
}

/// How long a stopped SA waits for its worker's final state before it
/// runs here again (its hand-over given up).
const STOP_WAIT_MS: u64 = 1000;
/// How long a drain may take, hand-overs and goodbye.
const DRAIN_WAIT_MS: u64 = 3000;

impl MirrorTask {
    /// Runs until `stop` is set.
    pub fn run(self, stop: &AtomicBool) -> MirrorReport {
        let mut r = Running::new(self);
        while !stop.load(Ordering::Relaxed) {
            if r.turn(stop) == 0 {
                std::thread::sleep(IDLE);
            }
        }
        let t = r.task;
        MirrorReport {
            stats: t.mirror.stats(),
            rejected: *t.mirror.rejected(),
            standby: t.mirror.standby().len(),
            progress: r.progress,
            not_mirror: t.port.not_mirror(),
            tx_full: t.port.tx_full(),
            queue: t.port.stats(),
        }
    }
}

impl Running {
    fn publish(&self) {
        let m = &self.task.mirror;
        let s = PairStatus {
            epoch: m.epoch(),
            peer_alive: m.peer_alive(),
            synced: m.synced(),
            holding: self.holding,
            standby: m.standby().len(),
            frames_sent: m.stats().frames_sent,
            frames_received: m.stats().frames_received,
            rejected: m.rejected().total(),
            stats: m.stats(),
            rejects: *m.rejected(),
            queued: m.queued(),
            flow_failed: m.flow_failed(),
            peer_flow_failed: m.peer_flow_failed(),
            workers_stalled: self.task.workers.stalled().len(),
        };
        if let Ok(mut p) = self.task.status.lock() {
            *p = s;
        }
    }

    fn new(task: MirrorTask) -> Self {
        Running {
            task,
            start: Instant::now(),
            pending: VecDeque::new(),
            failback_at: None,
            asked: Vec::new(),
            progress: 0,
            holding: 0,
            parking: false,
            silent: false,
            stops: BTreeMap::new(),
            stamp: 0,
            finals: BTreeMap::new(),
            limits_sent: BTreeMap::new(),
            draining: None,
            unheard_since: Some(0),
            unheard_told: false,
            refusals_life: None,
            refusals_base: RejectCounters::default(),
            refusals_told: [false; Reject::COUNT],
        }
    }

    /// One turn of the loop: progress, frames, orders, timers, events to
    /// the workers, frames out. Returns how much work it found.
    fn turn(&mut self, stop: &AtomicBool) -> usize {
        let now = self.now();
        let mut work = self.drain_progress();
        work += self.task.port.receive(&mut self.task.mirror, now);
        for line in self.new_refusals() {
            tracing::warn!("{line}");
        }
        work += self.take_orders();
        self.task.mirror.handle_timeout(now);
        if let Some(change) = self.task.flow.poll(now) {
            self.flow_changed(change);
        }
        if self.failback_at.is_some_and(|t| now >= t) {
            self.failback_at = None;
            if self.task.mirror.peer_flow_failed() {
                // Its flow failed: the failback waits for it to work
                // again (`PeerFlow`).
            } else if self.task.mirror.peer_synced() {
                self.hand_back();
            } else if let Failback::Auto { delay_ms } = self.task.failback
                && self.task.mirror.peer_alive()
            {
                // Back, not yet synchronised: it could run nothing handed
                // to it, and a false death of it (a lossy link) would take
                // the SAs over again, each time one jump further on.
                self.failback_at = Some(now + delay_ms);
            }
        }
        self.handle_events(now);
        if let Some(line) = self.unheard(now) {
            tracing::warn!("{line}");
        }
        self.push_pending();
        if self.parking {
            self.parking = !self.wait_for_workers(stop);
        }
        let lost = self.task.shared.workers_lost.load(Ordering::Acquire) > 0;
        if lost && !self.silent {
            tracing::error!(
                "a worker's thread panicked: this node says nothing more on the mirror link, so its peer takes every SA over"
            );
            self.silent = true;
            self.task.events.push(NodeEventKind::WorkersLost);
        }
        self.watch_workers(now);
        if !self.parking {
            self.finish_hand_overs(now);
            self.drain_on(now);
            self.flow_on();
        }
        if !self.parking && !self.silent {
            work += self.task.port.send(&mut self.task.mirror, now);
        }
        self.answer_asked(now);
        self.publish();
        work
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Tells when workers stall and when they all turn again. A stalled
    /// worker fails the node's flow as a down link does: every SA goes to
    /// the peer, those of the stalled worker past the highest limit it was
    /// given ([`finish_hand_overs`](Self::finish_hand_overs)).
    fn watch_workers(&mut self, now: u64) {
        let turns = self
            .task
            .shared
            .turns
            .iter()
            .map(|t| t.load(Ordering::Relaxed));
        if !self.task.workers.poll(now, turns) {
            return;
        }
        let stalled = self.task.workers.stalled().to_vec();
        if stalled.is_empty() {
            tracing::warn!("every worker turns again");
            self.task.events.push(NodeEventKind::WorkersTurn);
        } else {
            tracing::error!(
                ?stalled,
                "worker loop stalled: packet flow failed: every SA goes to the peer (the stalled worker's past the limits it was given)"
            );
            self.task
                .events
                .push(NodeEventKind::WorkersStalled { workers: stalled });
        }
        self.flow_state();
    }

    /// The flow has failed while a link (or next hop) is down or a worker
    /// stalled; the mirror's frames say so.
    fn flow_state(&mut self) {
        let failed = self.task.flow.failed().is_some() || !self.task.workers.stalled().is_empty();
        self.task.mirror.set_flow_failed(failed);
    }

    /// The bound a stalled worker's SA is handed over with: the highest
    /// limit ever sent it; none if one was `u64::MAX` (its peer fenced: no
    /// limit bounds what the worker did then, for the rest of this life).
    fn stalled_bound(&self, spi: u32, direction: Direction) -> Option<u64> {
        self.limits_sent
            .get(&(spi, direction))
            .copied()
            .filter(|l| *l != u64::MAX)
    }

    /// Whether the worker that runs an SA has stalled.
    fn on_stalled_worker(&self, spi: u32, direction: Direction) -> bool {
        let stalled = self.task.workers.stalled();
        !stalled.is_empty()
            && self.task.shared.tables.with(|t| {
                t.owners(direction)
                    .get(&spi)
                    .is_some_and(|w| stalled.contains(w))
            })
    }

    /// The line that tells a silence of the peer, once per silence: due
    /// when the peer has not been heard for `unheard.after_ms` since the
    /// start, or since it was lost. It names what to check and what the
    /// mirror port received so far.
    fn unheard(&mut self, now: u64) -> Option<String> {
        let since = self.unheard_since?;
        let u = &self.task.unheard;
        if self.unheard_told
            || now.saturating_sub(since) < u.after_ms
            || self.task.mirror.peer_alive()
        {
            return None;
        }
        self.unheard_told = true;
        let when = if since == 0 {
            "since this node started"
        } else {
            "since it was lost"
        };
        let mac = match u.peer_mac {
            Some(m) => format!("mirror.peer_mac ({m}) must be the MAC of the peer's mirror port"),
            None => "mirror.peer_mac is unset: frames go to broadcast".to_string(),
        };
        let m = &self.task.mirror;
        let refused: Vec<String> = Reject::ALL
            .iter()
            .filter(|w| m.rejected().get(**w) > 0)
            .map(|w| format!("{w} {}", m.rejected().get(*w)))
            .collect();
        Some(format!(
            "the peer (node {}) has not been heard in the {:.1} s {when}; check: mirror.port {} must be the link to the peer's mirror port (cabled or bridged to it, not a data port); {mac}; mirror.key must be the same on both nodes. On the mirror port so far: {} frames received, {} accepted, {} not mirror frames, refused: {}",
            u.peer,
            now.saturating_sub(since) as f64 / 1000.0,
            u.port,
            self.task.port.stats().rx_packets,
            m.stats().frames_received,
            self.task.port.not_mirror(),
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused.join(", ")
            }
        ))
    }

    /// A line for each reason of refusal first seen in this peer life
    /// (or before any was heard): each reason is told once per life, its
    /// count is `espgate peer`'s.
    fn new_refusals(&mut self) -> Vec<String> {
        let now = *self.task.mirror.rejected();
        let mut lines = Vec::new();
        for (i, why) in Reject::ALL.iter().enumerate() {
            if self.refusals_told[i] || now.get(*why) <= self.refusals_base.get(*why) {
                continue;
            }
            self.refusals_told[i] = true;
            lines.push(format!(
                "a mirror frame was refused as {why}: {}; this reason is logged once per life of the peer, and counted (espgate peer: rejected)",
                refused_because(*why)
            ));
        }
        lines
    }

    fn drain_progress(&mut self) -> usize {
        let mut n = 0;
        let mut reached = Vec::new();
        for ring in &self.task.rings {
            while let Some(p) = ring.pop() {
                n += 1;
                if self.task.keeper.is_some() {
                    reached.push(p.reached());
                }
                match p {
                    Progress::Outbound {
                        spi,
                        seq,
                        bytes,
                        packets,
                    } => self.task.mirror.outbound_progress(spi, seq, bytes, packets),
                    Progress::Inbound {
                        spi,
                        top,
                        bitmap,
                        bytes,
                        packets,
                    } => self
                        .task
                        .mirror
                        .inbound_progress(spi, top, &bitmap, bytes, packets),
                    Progress::InboundStall { spi, seq } => {
                        self.task.mirror.inbound_stalled(spi, seq)
                    }
                    Progress::Stopped {
                        spi,
                        direction,
                        last,
                        stamp,
                    } => {
                        let key = (spi, direction);
                        if self.stops.get(&key).is_some_and(|s| stamp >= s.stamp) {
                            self.finals.insert(key, last);
                        }
                    }
                }
            }
        }
        if let Some(k) = &self.task.keeper {
            k.progress(&reached);
        }
        self.progress += n as u64;
        n
    }

    fn take_orders(&mut self) -> usize {
        let mut n = 0;
        while let Some(order) = self.task.orders.pop() {
            n += 1;
            match order {
                Order::TakeOver => self.take_over(),
                Order::HandBack(reply) => {
                    let r = self.ordered_hand_back();
                    if let Err(why) = r {
                        self.task
                            .events
                            .push(NodeEventKind::HandBackRefused { why });
                    }
                    let _ = reply.send(r);
                }
                Order::Drain(reply) => self.drain(reply),
                Order::Fence(reply) => {
                    let r = self.task.mirror.force_unleased();
                    self.task.events.push(match r {
                        Ok(()) => NodeEventKind::Fenced,
                        Err(why) => NodeEventKind::FenceRefused { why },
                    });
                    let _ = reply.send(r);
                }
                Order::AddSa {
                    spi,
                    direction,
                    esn,
                    home,
                    overrides,
                    done,
                } => {
                    let mirror = &mut self.task.mirror;
                    mirror.add_sa_with(spi, direction, esn, home, overrides);
                    if let Some(limit) = mirror.limit_of(spi, direction) {
                        self.pending.push_back(SaCommand::Limit {
                            spi,
                            direction,
                            limit,
                        });
                    }
                    // An SA of a dead peer whose SAs run here is activated
                    // at once: its command goes before the answer.
                    let now = self.now();
                    self.handle_events(now);
                    self.push_pending();
                    if self.task.mirror.asking(spi, direction) {
                        // A home SA added at run time runs once the peer
                        // says what it knows of it: the answer waits for
                        // that (or ASK_WAIT), so a rekey moves its rules
                        // to an SA that can send.
                        self.asked.push((spi, direction, now + ASK_WAIT_MS, done));
                    } else {
                        let _ = done.send(());
                    }
                }
                Order::View(reply) => {
                    let _ = reply.send(self.task.mirror.views());
                }
                Order::RemoveSa { spi, direction } => {
                    self.task.mirror.remove_sa(spi, direction);
                    self.limits_sent.remove(&(spi, direction));
                    self.holding = self.task.mirror.holding();
                }
            }
        }
        n
    }

    /// Answers the run-time adds whose SA now runs (its commands are on
    /// their way to the worker) or that waited long enough.
    fn answer_asked(&mut self, now: u64) {
        let mirror = &self.task.mirror;
        let pending = &self.pending;
        self.asked.retain(|(spi, d, deadline, done)| {
            let ready = !mirror.asking(*spi, *d) && pending.is_empty();
            if ready || now >= *deadline {
                let _ = done.send(());
                return false;
            }
            true
        });
    }

    fn take_over(&mut self) {
        let sas = self.task.mirror.take_over();
        self.task.events.push(NodeEventKind::TookOver { sas });
    }

    /// This node's packet flow failed, or works again: the peer learns it
    /// from the next frame (it hands nothing to a node whose flow failed,
    /// and fails back once it works), and a failed node hands every SA it
    /// runs over ([`flow_on`](Self::flow_on)).
    fn flow_changed(&mut self, change: FlowChange) {
        match change {
            FlowChange::Failed { port, next_hop } => {
                let why = match next_hop {
                    None => format!("{port}'s link is down"),
                    Some(ip) => format!("{port}'s next hop {ip} answers no ARP probe"),
                };
                tracing::warn!(
                    port,
                    sas = self.task.mirror.drain_sas().len(),
                    "packet flow failed: {why}: every SA goes to the peer with its exact state"
                );
                self.flow_state();
                self.task
                    .events
                    .push(NodeEventKind::FlowFailed { port, next_hop });
            }
            FlowChange::Works => {
                if self.task.workers.stalled().is_empty() {
                    tracing::info!(
                        "packet flow works again: every link is up and every tracked next hop answers; the peer may fail back"
                    );
                } else {
                    tracing::info!(
                        "every link is up and every tracked next hop answers, but a worker still stands still: the flow stays failed"
                    );
                }
                self.flow_state();
                self.task.events.push(NodeEventKind::FlowWorks);
            }
        }
    }

    /// While this node's flow has failed, every SA it runs goes to the
    /// peer exactly (those that come to it too: a takeover, a hand-over
    /// that crossed the failure), as long as the peer can run them.
    fn flow_on(&mut self) {
        let mirror = &self.task.mirror;
        if !mirror.flow_failed()
            || self.draining.is_some()
            || !mirror.peer_synced()
            || mirror.peer_flow_failed()
        {
            return;
        }
        let again = self.running_unstopped();
        if !again.is_empty() {
            self.stop_for_hand_over(again);
        }
    }

    /// The SAs this node runs that are not stopped for a hand-over (a
    /// drain's or a failed flow's still to stop: some came back, a
    /// hand-over refused, or came here since), but those of a stalled
    /// worker with no bound, which would only come back each time.
    fn running_unstopped(&self) -> Vec<(u32, Direction)> {
        self.task
            .mirror
            .drain_sas()
            .into_iter()
            .filter(|k| !self.stops.contains_key(k))
            .filter(|&(spi, d)| {
                !self.on_stalled_worker(spi, d) || self.stalled_bound(spi, d).is_some()
            })
            .collect()
    }

    /// Fails back exactly: every SA held for the peer stops on its
    /// worker and goes home with the worker's final state.
    fn hand_back(&mut self) -> usize {
        let sas = self.stop_for_hand_over(self.task.mirror.failback_sas());
        self.task.events.push(NodeEventKind::HandedBack { sas });
        sas
    }

    /// Stops SAs for an exact hand-over: the mirror parks them (limit 0),
    /// and each worker is asked for its final state. Returns how many.
    fn stop_for_hand_over(&mut self, keys: Vec<(u32, Direction)>) -> usize {
        let now = self.now();
        let mut stopped = Vec::new();
        for (spi, direction) in keys {
            if self.task.mirror.stop(spi, direction).is_err() {
                continue;
            }
            self.stamp += 1;
            let serial = self
                .task
                .keeper
                .as_ref()
                .and_then(|k| k.serial(spi, direction));
            self.stops.insert(
                (spi, direction),
                Stop {
                    stamp: self.stamp,
                    since: now,
                    serial,
                },
            );
            self.finals.remove(&(spi, direction));
            stopped.push((spi, direction, self.stamp));
        }
        if stopped.is_empty() {
            return 0;
        }
        // The parks first (and `parking` set), then the reports (of these
        // SAs only: those stopped before asked already).
        self.handle_events(now);
        for &(spi, direction, stamp) in &stopped {
            self.pending.push_back(SaCommand::Stop {
                spi,
                direction,
                stamp,
            });
        }
        self.push_pending();
        stopped.len()
    }

    /// Hands over each stopped SA whose worker reported its final state
    /// (once every worker took its commands); one refused (the peer went
    /// silent meanwhile), or whose report never came, runs here again.
    fn finish_hand_overs(&mut self, now: u64) {
        if self.stops.is_empty() {
            return;
        }
        let stopped: BTreeSet<(u32, Direction)> = self.task.mirror.stopped().into_iter().collect();
        // A stalled worker reports no final state: its SAs go over past
        // the highest limit it was given (none went out unlimited: those
        // wait, and run here again).
        for &(spi, direction) in self.stops.keys() {
            if !self.finals.contains_key(&(spi, direction))
                && self.on_stalled_worker(spi, direction)
                && let Some(limit) = self.stalled_bound(spi, direction)
            {
                self.finals
                    .insert((spi, direction), limit.saturating_sub(1));
            }
        }
        let mirror = &mut self.task.mirror;
        let keeper = &self.task.keeper;
        let finals = &mut self.finals;
        let mut moved = false;
        self.stops.retain(|&(spi, direction), stop| {
            if !stopped.contains(&(spi, direction)) {
                finals.remove(&(spi, direction));
                return false;
            }
            let last = match finals.remove(&(spi, direction)) {
                Some(last) => last,
                None if now >= stop.since + STOP_WAIT_MS => {
                    tracing::warn!(
                        spi = format!("{spi:#x}"),
                        %direction,
                        "no final state from the worker: the SA runs here again"
                    );
                    mirror.resume(spi, direction, 0);
                    moved = true;
                    return false;
                }
                None => return true,
            };
            match mirror.hand_over_exact(spi, direction, last) {
                Ok(()) => {
                    if let (Some(k), Some(serial)) = (keeper, stop.serial) {
                        k.left(spi, direction, serial, last);
                    }
                }
                Err(why) => {
                    tracing::info!(spi = format!("{spi:#x}"), %direction, %why, "hand-over refused: the SA runs here again");
                    mirror.resume(spi, direction, last);
                }
            }
            moved = true;
            false
        });
        if moved {
            // The handed SAs park (`parking`: nothing goes out before the
            // workers took it).
            self.handle_events(now);
            self.push_pending();
        }
    }

    /// An operator's drain: every SA this node runs stops and goes to
    /// the peer exactly; then the goodbye.
    fn drain(&mut self, reply: Sender<Result<usize, DrainRefused>>) {
        let mirror = &self.task.mirror;
        let refused = if self.draining.is_some() {
            Some(DrainRefused::Busy)
        } else if !mirror.synced() {
            Some(DrainRefused::NotSynced)
        } else if !mirror.peer_alive() {
            Some(DrainRefused::PeerNotHeard)
        } else if !mirror.peer_synced() {
            Some(DrainRefused::PeerNotSynced)
        } else if mirror.peer_flow_failed() {
            Some(DrainRefused::PeerFlowFailed)
        } else {
            None
        };
        if let Some(why) = refused {
            let _ = reply.send(Err(why));
            return;
        }
        let sas = self.stop_for_hand_over(self.task.mirror.drain_sas());
        tracing::info!(
            sas,
            "draining: every SA goes to the peer with its exact state"
        );
        self.draining = Some(Draining {
            reply,
            deadline: self.now() + DRAIN_WAIT_MS,
            sas,
            goodbye: false,
            waiting: "its SAs' hand-overs".to_string(),
        });
    }

    /// A drain goes on: once nothing runs here and the peer confirmed
    /// every hand-over, the goodbye; an SA that came back (a hand-over
    /// refused) is stopped again; past its deadline it ends, refused.
    fn drain_on(&mut self, now: u64) {
        let Some(d) = &mut self.draining else { return };
        if now >= d.deadline {
            let d = self.draining.take().expect("draining");
            let why = if self.task.mirror.gone() {
                DrainRefused::Unanswered
            } else {
                DrainRefused::TimedOut {
                    ms: DRAIN_WAIT_MS,
                    waiting: d.waiting,
                }
            };
            let _ = d.reply.send(Err(why));
            return;
        }
        if d.goodbye {
            return;
        }
        let again = self.running_unstopped();
        let waiting = if !again.is_empty() {
            let waiting = format!("{} SAs run here again", again.len());
            if self.task.mirror.peer_synced() {
                self.stop_for_hand_over(again);
            }
            waiting
        } else if !self.stops.is_empty() {
            format!("{} SAs stopped for their hand-over", self.stops.len())
        } else {
            match self.task.mirror.leave() {
                Ok(()) => String::new(),
                Err(e @ LeaveRefused::UnheardRuns(_)) => {
                    let spis: Vec<String> = self
                        .task
                        .mirror
                        .unheard_runs()
                        .map(|(spi, dir)| format!("{dir} {spi:#010x}"))
                        .collect();
                    format!("the goodbye: {e}: {}", spis.join(", "))
                }
                Err(e) => format!("the goodbye: {e}"),
            }
        };
        if let Some(d) = &mut self.draining {
            d.goodbye = waiting.is_empty();
            d.waiting = waiting;
        }
    }

    /// The drain's end: the peer heard the goodbye, or it went silent
    /// before it went out.
    fn drain_ended(&mut self, result: Result<(), DrainRefused>) {
        let Some(d) = self.draining.take() else {
            return;
        };
        if result.is_ok() {
            self.task.events.push(NodeEventKind::Drained { sas: d.sas });
        }
        let _ = d.reply.send(result.map(|()| d.sas));
    }

    /// A hand-back the host or an operator ordered: carried out only to a
    /// peer that is heard and synchronised, as an automatic failback is.
    fn ordered_hand_back(&mut self) -> Result<usize, HandBackRefused> {
        let mirror = &self.task.mirror;
        if !mirror.peer_alive() {
            return Err(HandBackRefused::PeerNotHeard);
        }
        if !mirror.peer_synced() {
            return Err(HandBackRefused::PeerNotSynced);
        }
        if mirror.peer_flow_failed() {
            return Err(HandBackRefused::PeerFlowFailed);
        }
        Ok(self.hand_back())
    }

    /// Turns the mirror's events into commands; an SA parked sets
    /// `parking` (the workers must stop using it before the next frame).
    fn handle_events(&mut self, now: u64) {
        let mut parked = false;
        let mut activated = false;
        while let Some(ev) = self.task.mirror.poll_event() {
            match ev {
                MirrorEvent::PeerAlive { epoch } => {
                    self.task.events.push(NodeEventKind::PeerAlive { epoch });
                    self.unheard_since = None;
                    self.unheard_told = false;
                    if self.refusals_life != Some(epoch) {
                        self.refusals_life = Some(epoch);
                        self.refusals_base = *self.task.mirror.rejected();
                        self.refusals_told = [false; Reject::COUNT];
                    }
                    if let Failback::Auto { delay_ms } = self.task.failback
                        && self.holding > 0
                    {
                        self.failback_at = Some(now + delay_ms);
                    }
                }
                MirrorEvent::PeerLeft => {
                    tracing::info!("the peer handed every SA over and left: they run here");
                    self.task.events.push(NodeEventKind::PeerLeft);
                    self.failback_at = None;
                }
                MirrorEvent::PeerFlow { failed } => {
                    if failed {
                        tracing::warn!(
                            "the peer's packet flow failed: nothing is handed to it until it works"
                        );
                    } else {
                        tracing::info!("the peer's packet flow works again");
                        if let Failback::Auto { delay_ms } = self.task.failback
                            && !self.task.mirror.failback_sas().is_empty()
                        {
                            self.failback_at = Some(now + delay_ms);
                        }
                    }
                    self.task.events.push(NodeEventKind::PeerFlow { failed });
                }
                MirrorEvent::Left => self.drain_ended(Ok(())),
                MirrorEvent::LeaveAbandoned => self.drain_ended(Err(DrainRefused::Abandoned)),
                MirrorEvent::PeerDead => {
                    self.task.events.push(NodeEventKind::PeerDead);
                    self.unheard_since = Some(now);
                    self.failback_at = None;
                    if self.task.takeover == Takeover::Auto {
                        self.take_over();
                    }
                }
                MirrorEvent::Synced { records } => {
                    self.task.events.push(NodeEventKind::Synced { records });
                }
                MirrorEvent::LimitRaised { spi, dir, limit } => {
                    self.limit_sent(spi, dir, limit);
                    self.pending.push_back(SaCommand::Limit {
                        spi,
                        direction: dir,
                        limit,
                    });
                }
                MirrorEvent::Activate {
                    spi,
                    dir,
                    start,
                    bitmap,
                } => {
                    let (packets, bytes) = self
                        .task
                        .mirror
                        .standby()
                        .get(spi, dir)
                        .map_or((0, 0), |s| (s.packets, s.bytes));
                    if let Some(k) = &self.task.keeper {
                        // Its mark moves ahead of where it starts; until
                        // that is durable it waits at its old one.
                        k.moved(spi, dir, start, packets);
                    }
                    self.pending.push_back(SaCommand::Activate {
                        spi,
                        direction: dir,
                        start,
                        bitmap,
                        packets,
                        bytes,
                    });
                    let limit = self.task.mirror.limit_of(spi, dir).unwrap_or(0);
                    self.limit_sent(spi, dir, limit);
                    self.pending.push_back(SaCommand::Limit {
                        spi,
                        direction: dir,
                        limit,
                    });
                    self.task.events.push(NodeEventKind::Activated {
                        spi,
                        direction: dir,
                        start,
                    });
                    activated = true;
                }
                MirrorEvent::Stalled { spi, dir } => {
                    let e = NodeEventKind::SaStalled {
                        spi,
                        direction: dir,
                    };
                    tracing::warn!(
                        spi = format!("{spi:#x}"),
                        direction = %dir,
                        "SA waits at its limit for a second: its lease is not acknowledged \
                         (mirror link down or lossy) or the bulk sync has not completed"
                    );
                    self.task.events.push(e);
                }
                MirrorEvent::Unstalled { spi, dir } => {
                    self.task.events.push(NodeEventKind::SaUnstalled {
                        spi,
                        direction: dir,
                    });
                }
                MirrorEvent::Orphaned { sas } => {
                    tracing::warn!(
                        sas,
                        "the peer is dead and nobody runs its SAs: order a takeover \
                         (take_over on the control socket, or espgate host)"
                    );
                    self.task.events.push(NodeEventKind::Orphaned { sas });
                }
                MirrorEvent::BeyondReach {
                    spi,
                    start,
                    sent_to,
                } => {
                    tracing::warn!(
                        spi = format!("{spi:#x}"),
                        start,
                        sent_to,
                        "ESN SA held: it would start 2^31 or more past the last number sent, \
                         beyond what its far end can follow; it needs a rekey"
                    );
                    self.task.events.push(NodeEventKind::BeyondReach {
                        spi,
                        start,
                        sent_to,
                    });
                }
                MirrorEvent::Deactivate { spi, dir } => {
                    self.pending.push_back(SaCommand::Park {
                        spi,
                        direction: dir,
                    });
                    self.task.events.push(NodeEventKind::Deactivated {
                        spi,
                        direction: dir,
                    });
                    parked = true;
                }
            }
        }
        self.parking |= parked;
        if !(activated || parked) {
            return;
        }
        let before = self.holding > 0;
        self.holding = self.task.mirror.holding();
        let holding = self.holding > 0;
        if holding != before {
            self.task.shared.adopted.store(holding, Ordering::Release);
            self.task.events.push(if holding {
                NodeEventKind::AddressesAdopted
            } else {
                NodeEventKind::AddressesReleased
            });
            activated = true;
        }
        if activated {
            self.task.shared.announce.fetch_add(1, Ordering::Release);
        }
    }

    /// Sends the commands waiting; those a full ring refuses wait in order.
    fn push_pending(&mut self) {
        // The commands of a stalled worker whose ring is full wait, in
        // their order, behind the others: they must not hold back those
        // of the workers that turn.
        let mut waiting = VecDeque::new();
        let mut blocked = Vec::new();
        while let Some(cmd) = self.pending.pop_front() {
            let Some(worker) = self.worker_of(&cmd) else {
                continue;
            };
            if blocked.contains(&worker) {
                waiting.push_back(cmd);
                continue;
            }
            if let Err(cmd) = self.task.shared.command_to(worker, cmd) {
                if self.task.workers.stalled().contains(&worker) {
                    blocked.push(worker);
                    waiting.push_back(cmd);
                    continue;
                }
                self.pending.push_front(cmd);
                break;
            }
        }
        waiting.append(&mut self.pending);
        self.pending = waiting;
    }

    /// Records a limit sent to an SA's worker.
    fn limit_sent(&mut self, spi: u32, direction: Direction, limit: u64) {
        let l = self.limits_sent.entry((spi, direction)).or_insert(0);
        *l = (*l).max(limit);
    }

    /// The worker that runs an SA a command is about.
    fn worker_of(&self, cmd: &SaCommand) -> Option<usize> {
        let (spi, d) = cmd.sa()?;
        self.task
            .shared
            .tables
            .with(|t| t.owners(d).get(&spi).copied())
    }

    /// Waits up to `PARK_WAIT` for the workers to take every command sent;
    /// returns whether they did (if not, the turn sends nothing,
    /// heartbeats included, and the next one waits again).
    fn wait_for_workers(&mut self, stop: &AtomicBool) -> bool {
        let t0 = Instant::now();
        loop {
            self.push_pending();
            // A stalled worker's commands wait (its SAs go over past the
            // limits it was given, whatever it did not take).
            let stalled = self.task.workers.stalled();
            if self
                .pending
                .iter()
                .all(|c| self.worker_of(c).is_some_and(|w| stalled.contains(&w)))
                && self.task.shared.commands_pending_except(stalled) == 0
            {
                return true;
            }
            if t0.elapsed() >= PARK_WAIT || stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neigh::Neighbours;
    use crate::tables::{TableCell, Tables};
    use crate::worker::WorkerGuard;
    use espgate_io::{BufPool, Mempool, Packet, PortInfo, PortQueue, mem};
    use espgate_mirror::{MirrorConfig, MirrorKey};
    use espgate_wire::ethernet::MacAddr;
    use std::sync::atomic::{AtomicU64, AtomicUsize};

    const HELD: u32 = 0x1000;
    /// Frames the mirror port takes a turn (`mirror_port::RX_BURST`).
    const RX_BURST_FOR_TEST: usize = 32;

    fn key() -> MirrorKey {
        MirrorKey::new(&[7; 32]).unwrap()
    }

    fn cfg(node: u32, peer: u32) -> MirrorConfig {
        MirrorConfig {
            node,
            peer,
            ..MirrorConfig::default()
        }
    }

    /// Node 1's mirror task, holding SA `HELD` (home node 2) after a
    /// takeover, with one worker whose command ring nobody drains (a
    /// stuck worker), and the peer's end of the mirror link.
    /// The worker's part: takes every command, and answers a stop with
    /// the SA's final state (its last number: none used).
    fn take_commands(r: &mut Running) -> Vec<SaCommand> {
        let taken: Vec<SaCommand> =
            std::iter::from_fn(|| r.task.shared.commands[0].pop()).collect();
        for c in &taken {
            if let SaCommand::Stop {
                spi,
                direction,
                stamp,
            } = *c
            {
                let report = Progress::Stopped {
                    spi,
                    direction,
                    last: 0,
                    stamp,
                };
                assert!(r.task.rings[0].push(report).is_ok());
            }
        }
        r.parking = false;
        taken
    }

    /// Node 1's mirror task running HELD (home node 1) with its one worker
    /// watched at 20 ms, node 2's mirror (which has HELD too), node 2's end
    /// of the link, and the time.
    struct StallRig {
        r: Running,
        peer: Mirror,
        peer_end: mem::MemQueue,
        t: u64,
    }

    impl StallRig {
        fn new() -> Self {
            let mut m = Mirror::new(cfg(1, 2), key(), 1, 0);
            let mut peer = Mirror::new(cfg(2, 1), key(), 2, 0);
            m.add_sa(HELD, Direction::Outbound, true, 1);
            peer.add_sa(HELD, Direction::Outbound, true, 1);
            exchange(&mut m, &mut peer);
            assert!(m.synced() && peer.synced() && m.owns(HELD, Direction::Outbound));
            while peer.poll_event().is_some() {}
            let (mut r, peer_end) = running(m);
            r.task.workers = WorkerWatch::new(1, 20);
            StallRig {
                r,
                peer,
                peer_end,
                t: 0,
            }
        }

        /// 5 ms on: node 2's frames reach node 1 (if `peer_heard`), the
        /// worker turns and takes its commands (if `worker_turns`), the task
        /// turns, and its frames reach node 2. Returns how many frames node
        /// 1 sent, and the limits the worker took for HELD.
        fn turn(&mut self, worker_turns: bool, peer_heard: bool) -> (usize, Vec<u64>) {
            self.t += 5;
            let t = self.t;
            let out: Vec<Vec<u8>> = std::iter::from_fn(|| self.peer.poll_transmit(t)).collect();
            if peer_heard {
                send_frames(&mut self.peer_end, out);
            }
            let mut limits = Vec::new();
            if worker_turns {
                self.r.task.shared.turns[0].fetch_add(1, Ordering::Relaxed);
                for c in take_commands(&mut self.r) {
                    if let SaCommand::Limit {
                        spi: HELD, limit, ..
                    } = c
                    {
                        limits.push(limit);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
            self.r.turn(&AtomicBool::new(false));
            let frames = frames_from(&mut self.peer_end);
            for f in &frames {
                let _ = self.peer.handle_frame(t, f);
            }
            (frames.len(), limits)
        }
    }

    fn holder() -> (Running, mem::MemQueue) {
        let (m, _) = holding_pair();
        running(m)
    }

    /// Node 1's mirror, synchronised with node 2's (returned too), holding
    /// SA `HELD` (home node 2) after a takeover, its events and frames
    /// drained.
    fn holding_pair() -> (Mirror, Mirror) {
        let (mut m, peer) = synced_pair(cfg(1, 2));
        assert_eq!(m.take_over(), 1);
        while m.poll_event().is_some() {}
        while m.poll_transmit(0).is_some() {}
        (m, peer)
    }

    /// Node 1's mirror on `c` and node 2's, with SA `HELD` (home node 2,
    /// ESN), synchronised.
    fn synced_pair(c: MirrorConfig) -> (Mirror, Mirror) {
        let mut m = Mirror::new(c, key(), 1, 0);
        let mut peer = Mirror::new(cfg(2, 1), key(), 2, 0);
        for x in [&mut m, &mut peer] {
            x.add_sa(HELD, Direction::Outbound, true, 2);
        }
        exchange(&mut m, &mut peer);
        assert!(m.synced() && peer.synced());
        (m, peer)
    }

    /// Ten rounds of every frame each side has, delivered.
    fn exchange(m: &mut Mirror, peer: &mut Mirror) {
        for _ in 0..10 {
            while let Some(f) = m.poll_transmit(0) {
                let _ = peer.handle_frame(0, &f);
            }
            while let Some(f) = peer.poll_transmit(0) {
                let _ = m.handle_frame(0, &f);
            }
        }
    }

    /// An ESN SA a takeover would start 2^31 or more past the last number
    /// sent on it (here in one jump) is held: the node tells it as a
    /// `beyond_reach` event, counts it, and its worker gets limit 0.
    #[test]
    fn an_esn_sa_started_beyond_its_far_ends_reach_is_told_and_held() {
        let far = MirrorConfig {
            takeover_jump: espgate_mirror::ESN_REACH,
            ..cfg(1, 2)
        };
        let (mut m, mut peer) = synced_pair(far);
        let sent = std::iter::from_fn(|| peer.poll_event())
            .find_map(|e| match e {
                MirrorEvent::Activate { spi, start, .. } if spi == HELD => Some(start),
                _ => None,
            })
            .expect("node 2 runs HELD");
        peer.outbound_progress(HELD, sent, 0, 1);
        exchange(&mut m, &mut peer);
        assert_eq!(m.take_over(), 1);
        let (mut r, _peer_end) = running(m);
        // Told on the watching timer.
        let (told, _) = told_within(&mut r, Duration::from_secs(5), |k| {
            matches!(k, NodeEventKind::BeyondReach { .. })
        });
        let [
            NodeEvent {
                kind: NodeEventKind::BeyondReach { spi, sent_to, .. },
                ..
            },
        ] = told[..]
        else {
            panic!("told {told:?}");
        };
        assert_eq!((spi, sent_to), (HELD, sent + 1));
        let line = told[0].to_string();
        assert!(
            line.contains(&format!("beyond_reach spi={HELD:#x} start=")),
            "{line}"
        );
        assert_eq!(r.task.mirror.stats().reach_alarms, 1);
        let limits: Vec<u64> = std::iter::from_fn(|| r.task.shared.commands[0].pop())
            .filter_map(|c| match c {
                SaCommand::Limit { spi, limit, .. } if spi == HELD => Some(limit),
                _ => None,
            })
            .collect();
        assert_eq!(limits, [0], "held: its worker may send nothing");
    }

    /// The mirror task of `m`, with one worker whose command ring nobody
    /// drains, and the peer's end of the mirror link.
    fn running(m: Mirror) -> (Running, mem::MemQueue) {
        let mut tables = Tables::default();
        tables.out_owner.insert(HELD, 0);
        let shared = Arc::new(Shared {
            tables: TableCell::new(tables),
            neighbours: Neighbours::new([]),
            handoff: vec![vec![Arc::new(ArrayQueue::new(4))]],
            commands: vec![Arc::new(ArrayQueue::new(64))],
            sa_events: vec![Arc::new(ArrayQueue::new(4))],
            peer_addresses: crate::config::PerSide::default(),
            adopted: AtomicBool::new(false),
            announce: AtomicU64::new(0),
            workers_lost: AtomicUsize::new(0),
            turns: vec![Default::default()],
        });
        let info = |mac: u8| PortInfo {
            name: "mirror".into(),
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            mtu: 1500,
        };
        let (mut ours, mut theirs) = mem::link(info(1), 1, info(2), 1, 4096);
        let task = MirrorTask {
            mirror: m,
            port: MirrorPort::new(
                Box::new(ours.remove(0)),
                BufPool::new(Mempool::new(256, 0), 16),
                MacAddr([2, 0, 0, 0, 0, 2]),
            ),
            shared,
            rings: vec![Arc::new(ArrayQueue::new(16))],
            keeper: None,
            takeover: Takeover::Manual,
            failback: Failback::Manual,
            workers: WorkerWatch::new(1, 0),
            flow: FlowWatch::new(Vec::new(), crate::flow::LinkWatch::default()),
            orders: Arc::new(ArrayQueue::new(8)),
            events: Arc::new(EventLog::default()),
            status: Arc::new(Mutex::new(PairStatus::default())),
            unheard: Unheard {
                after_ms: 3000,
                port: "mirror (mem)".into(),
                peer_mac: Some(MacAddr([2, 0, 0, 0, 0, 2])),
                peer: 2,
            },
        };
        (Running::new(task), theirs.remove(0))
    }

    fn frames_at(q: &mut mem::MemQueue) -> usize {
        let pool = Mempool::new(256, 0);
        let mut bufs = BufPool::new(pool, 16);
        let mut got = Vec::new();
        let n = q.rx_burst(&mut bufs, &mut got, 64);
        for b in got {
            bufs.recycle(b);
        }
        n
    }

    /// The hand-back parks the SA on its worker; an add ordered in the same
    /// batch used to take the "parked" result and drop it, so the
    /// hand-over went out while the worker still ran the SA. And workers
    /// that take nothing in time must not be sent past: the node goes
    /// silent instead.
    #[test]
    fn nothing_goes_out_while_a_worker_has_not_taken_its_parking() {
        let (mut r, mut peer_end) = holder();
        let stop = AtomicBool::new(false);
        let (done, _answer) = std::sync::mpsc::channel();
        let (handed, _handed) = std::sync::mpsc::channel();
        for order in [
            Order::HandBack(handed),
            Order::AddSa {
                spi: 0x3000,
                direction: Direction::Outbound,
                esn: true,
                home: 1,
                overrides: SaOverrides::default(),
                done,
            },
        ] {
            assert!(r.task.orders.push(order).is_ok());
        }
        r.turn(&stop);
        assert!(r.parking, "the parking of the handed-back SA is kept");
        assert_eq!(
            frames_at(&mut peer_end),
            0,
            "no frame while the worker may still send"
        );
        r.turn(&stop);
        assert_eq!(frames_at(&mut peer_end), 0, "still stuck: still silent");
        // The worker takes its commands: the hand-over goes out.
        while r.task.shared.commands[0].pop().is_some() {}
        r.turn(&stop);
        assert!(!r.parking);
        assert!(frames_at(&mut peer_end) > 0);
    }

    /// M3: a flood of forged frames on the mirror port costs a MAC check
    /// each, but the task takes one burst a turn and sends between bursts:
    /// the node's own heartbeats keep going out. (The peer's real frames
    /// may drown in the flood and the node then takes the peer's SAs
    /// over: the takeover is safe, see docs/mirror-protocol.md.)
    #[test]
    fn a_flood_of_forged_frames_does_not_stop_the_heartbeats() {
        use espgate_wire::PacketBuf;
        let (mut r, mut peer_end) = holder();
        let stop = AtomicBool::new(false);
        let mut pool = BufPool::new(Mempool::new(4096, 0), 64);
        let mut forged = Vec::new();
        for i in 0..2000u32 {
            let mut f = Packet::from(pool.get());
            let body = f.append(14 + 100).unwrap();
            body[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            body[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
            body[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            body[14] = 2;
            body[18..22].copy_from_slice(&i.to_be_bytes());
            forged.push(f);
        }
        let sent = peer_end.tx_burst(&mut forged, &mut pool);
        assert!(
            sent > 2 * RX_BURST_FOR_TEST,
            "the flood fills the port: {sent}"
        );
        std::thread::sleep(Duration::from_millis(20));
        r.turn(&stop);
        assert!(
            frames_at(&mut peer_end) > 0,
            "a heartbeat went out with the flood still queued"
        );
        assert!(r.task.mirror.rejected().total() > 0);
    }

    /// Sends mirror frames into the task's port as the peer's MAC would.
    fn send_frames(peer_end: &mut mem::MemQueue, frames: Vec<Vec<u8>>) {
        use espgate_wire::PacketBuf;
        let mut pool = BufPool::new(Mempool::new(256, 0), 16);
        let mut out = Vec::new();
        for m in frames {
            let mut f = Packet::from(pool.get());
            let body = f.append(14 + m.len()).unwrap();
            body[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            body[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
            body[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            body[14..].copy_from_slice(&m);
            out.push(f);
        }
        peer_end.tx_burst(&mut out, &mut pool);
    }

    /// The mirror frames the task sent, without their Ethernet header.
    fn frames_from(q: &mut mem::MemQueue) -> Vec<Vec<u8>> {
        use espgate_wire::PacketBuf;
        let mut bufs = BufPool::new(Mempool::new(256, 0), 16);
        let mut got = Vec::new();
        q.rx_burst(&mut bufs, &mut got, 64);
        let frames = got.iter().map(|b| b.data()[14..].to_vec()).collect();
        for b in got {
            bufs.recycle(b);
        }
        frames
    }

    /// Automatic failback waits until the peer's new life has synchronised:
    /// handed back to a life still waiting for its bulk, the SAs would run
    /// nowhere, and a false death of it (a lossy link) would take them over
    /// again, one jump further each time.
    #[test]
    fn failback_waits_for_the_peer_to_synchronise() {
        let (mut r, mut peer_end) = holder();
        r.task.failback = Failback::Auto { delay_ms: 0 };
        let stop = AtomicBool::new(false);
        // The peer's next life: heard, not synchronised.
        let mut peer = Mirror::new(cfg(2, 1), key(), 5, 0);
        peer.add_sa(HELD, Direction::Outbound, true, 2);
        let mut t = 0;
        let mut turn = |r: &mut Running, peer: &mut Mirror, deliver_to_peer: bool| {
            t += 20;
            let mut out = Vec::new();
            while let Some(f) = peer.poll_transmit(t) {
                out.push(f);
            }
            send_frames(&mut peer_end, out);
            std::thread::sleep(Duration::from_millis(2));
            r.failback_at = Some(0);
            r.turn(&stop);
            take_commands(r);
            // A stopped SA goes at the next turn, the peer heard meanwhile.
            let out: Vec<Vec<u8>> = std::iter::from_fn(|| peer.poll_transmit(t + 10)).collect();
            send_frames(&mut peer_end, out);
            std::thread::sleep(Duration::from_millis(2));
            r.turn(&stop);
            take_commands(r);
            let back = frames_from(&mut peer_end);
            if deliver_to_peer {
                for f in back {
                    let _ = peer.handle_frame(t, &f);
                }
            }
        };
        for _ in 0..3 {
            turn(&mut r, &mut peer, false);
        }
        assert!(r.task.mirror.peer_alive() && !r.task.mirror.peer_synced());
        assert!(
            r.task.mirror.owns(HELD, Direction::Outbound),
            "handed back to a life that has not synchronised"
        );
        for _ in 0..10 {
            turn(&mut r, &mut peer, true);
        }
        assert!(peer.synced());
        assert!(
            !r.task.mirror.owns(HELD, Direction::Outbound),
            "not handed back once the peer synchronised"
        );
    }

    /// An ordered hand-back (the host's, an operator's) goes only to a
    /// peer that can run what it gets: not to a dead one (the SAs would run
    /// nowhere, and this node could not take them back until the peer
    /// confirmed), nor to a life that has not synchronised; the SAs stay
    /// here and the refusal says why. Once the peer is back and
    /// synchronised, the same order goes through.
    #[test]
    fn an_ordered_hand_back_waits_for_a_peer_that_can_run_the_sas() {
        let (mut r, mut peer_end) = holder();
        let stop = AtomicBool::new(false);
        let order = |r: &mut Running| {
            let (tx, answer) = std::sync::mpsc::channel();
            assert!(r.task.orders.push(Order::HandBack(tx)).is_ok());
            r.turn(&stop);
            take_commands(r);
            answer.try_recv().expect("answered in the turn")
        };
        // The peer is silent: dead.
        r.task.mirror.handle_timeout(60_000);
        assert!(!r.task.mirror.peer_alive());
        assert_eq!(order(&mut r), Err(HandBackRefused::PeerNotHeard));
        assert!(r.task.mirror.owns(HELD, Direction::Outbound));
        // Its next life is heard, not synchronised yet.
        let mut peer = Mirror::new(cfg(2, 1), key(), 5, 0);
        peer.add_sa(HELD, Direction::Outbound, true, 2);
        let first: Vec<Vec<u8>> = std::iter::from_fn(|| peer.poll_transmit(0)).collect();
        send_frames(&mut peer_end, first);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(order(&mut r), Err(HandBackRefused::PeerNotSynced));
        assert!(r.task.mirror.owns(HELD, Direction::Outbound));
        let refused = r
            .task
            .events
            .drain()
            .iter()
            .filter(|e| matches!(e.kind, NodeEventKind::HandBackRefused { .. }))
            .count();
        assert_eq!(refused, 2, "each refusal is an event");
        // The link carries both ways until the peer has synchronised.
        for t in 1..20 {
            for f in frames_from(&mut peer_end) {
                let _ = peer.handle_frame(t, &f);
            }
            let out: Vec<Vec<u8>> = std::iter::from_fn(|| peer.poll_transmit(t)).collect();
            send_frames(&mut peer_end, out);
            std::thread::sleep(Duration::from_millis(2));
            r.turn(&stop);
            take_commands(&mut r);
        }
        assert!(peer.synced() && r.task.mirror.peer_synced());
        // The SA stops on its worker, which reports its final state; the
        // hand-over goes at the next turn (the peer heard meanwhile).
        assert_eq!(order(&mut r), Ok(1));
        assert!(r.task.mirror.owns(HELD, Direction::Outbound));
        assert_eq!(r.task.mirror.limit(HELD), Some(0), "stopped");
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| peer.poll_transmit(30)).collect();
        send_frames(&mut peer_end, out);
        std::thread::sleep(Duration::from_millis(2));
        r.turn(&stop);
        assert!(!r.task.mirror.owns(HELD, Direction::Outbound));
    }

    /// A worker that panicked leaves its SAs black-holed: the node goes
    /// silent on the mirror link so its peer takes them over.
    #[test]
    fn a_panicked_worker_silences_the_node() {
        let (mut r, mut peer_end) = holder();
        let stop = AtomicBool::new(false);
        std::thread::sleep(Duration::from_millis(20));
        r.turn(&stop);
        assert!(frames_at(&mut peer_end) > 0, "heartbeats while all is well");
        let shared = r.task.shared.clone();
        let worker = std::thread::spawn(move || {
            let _guard = WorkerGuard(shared);
            panic!("a worker's bug");
        });
        assert!(worker.join().is_err());
        r.turn(&stop);
        std::thread::sleep(Duration::from_millis(20));
        r.turn(&stop);
        assert_eq!(frames_at(&mut peer_end), 0);
        assert!(
            r.task
                .events
                .drain()
                .iter()
                .any(|e| e.kind == NodeEventKind::WorkersLost)
        );
    }

    /// A worker whose loop stands still for `worker_stall_ms` (20 here)
    /// cannot be stopped and asked its state: the node's flow fails, and
    /// its SA goes to the peer past the highest limit the worker was
    /// given, without waiting for the worker to take any command; the node
    /// keeps speaking. Once the worker turns again the flow works.
    #[test]
    fn a_stalled_workers_sa_goes_to_the_peer_past_the_highest_limit_it_was_given() {
        let mut rig = StallRig::new();
        for _ in 0..10 {
            rig.turn(true, true);
        }
        let r = &mut rig.r;
        let given = r.limits_sent[&(HELD, Direction::Outbound)];
        assert!(given > 0 && given != u64::MAX, "{given}");
        r.task.events.drain();
        // The worker stands still, and takes no command.
        let mut heard = 0;
        for _ in 0..40 {
            heard += rig.turn(false, true).0;
        }
        let r = &mut rig.r;
        let told: Vec<String> = r
            .task
            .events
            .drain()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            told.iter()
                .any(|e| e.ends_with(" workers_stalled workers=0")),
            "{told:?}"
        );
        assert!(r.task.mirror.flow_failed());
        assert!(heard > 0, "the node still speaks");
        assert!(
            !r.task.mirror.owns(HELD, Direction::Outbound),
            "handed over"
        );
        let start = std::iter::from_fn(|| rig.peer.poll_event()).find_map(|e| match e {
            MirrorEvent::Activate {
                spi: HELD, start, ..
            } => Some(start),
            _ => None,
        });
        assert_eq!(
            start,
            Some(given),
            "the peer starts at the highest limit the worker had"
        );
        // It turns again: the flow works, and the peer may fail back.
        rig.turn(true, true);
        rig.turn(true, true);
        let r = &mut rig.r;
        assert!(!r.task.mirror.flow_failed());
        assert!(
            r.task
                .events
                .drain()
                .iter()
                .any(|e| e.kind == NodeEventKind::WorkersTurn)
        );
    }

    /// Reader34's find: `limits_sent` keeps the highest limit ever sent:
    /// once a fence sent an SA `u64::MAX`, a stall of its worker later in
    /// the node's life, the peer heard again and the worker holding a
    /// finite limit, hands the SA nowhere, and the docs said only that an
    /// SA running without a limit stays. What the worker did while it ran
    /// unlimited is bounded by no limit, so the SA does stay (the docs now
    /// say so: for the rest of the life); but it was stopped, resumed a
    /// second later and stopped again, its commands piling up behind the
    /// stalled worker's full ring for as long as the stall lasted. It is
    /// stopped at most once now, and the commands stay few.
    #[test]
    fn reader34_a_stall_after_a_fence_keeps_the_unbounded_sa_without_churn() {
        let mut rig = StallRig::new();
        // The worker's last limit taken for HELD.
        let mut taken: Option<u64> = None;
        let mut turn = |rig: &mut StallRig, worker_turns: bool, peer_heard: bool| {
            if let Some(&l) = rig.turn(worker_turns, peer_heard).1.last() {
                taken = Some(l);
            }
            taken
        };
        for _ in 0..10 {
            turn(&mut rig, true, true);
        }
        // The peer goes unheard: dead to this node, which is fenced.
        for _ in 0..20 {
            turn(&mut rig, true, false);
        }
        assert!(!rig.r.task.mirror.peer_alive());
        let (reply, fenced) = std::sync::mpsc::channel();
        assert!(rig.r.task.orders.push(Order::Fence(reply)).is_ok());
        turn(&mut rig, true, false);
        assert_eq!(fenced.recv().unwrap(), Ok(()));
        assert_eq!(
            turn(&mut rig, true, false),
            Some(u64::MAX),
            "fenced: unlimited"
        );
        // The peer restarts (a fenced life is never synced again) and is
        // heard: the lease rule returns, and the worker takes its finite
        // limit; it turns a hundred times more.
        rig.peer = Mirror::new(cfg(2, 1), key(), 3, 0);
        rig.peer.add_sa(HELD, Direction::Outbound, true, 1);
        let mut held = None;
        for _ in 0..100 {
            held = turn(&mut rig, true, true);
        }
        let r = &mut rig.r;
        assert!(
            r.task.mirror.peer_alive() && r.task.mirror.peer_synced(),
            "alive {} synced {} rejected {:?}",
            r.task.mirror.peer_alive(),
            r.task.mirror.peer_synced(),
            r.task.mirror.rejected()
        );
        let held = held.expect("a limit");
        assert!(held != u64::MAX, "the worker holds a finite limit: {held}");
        assert_eq!(
            r.task.mirror.limit_of(HELD, Direction::Outbound),
            Some(held)
        );
        assert!(r.task.mirror.owns(HELD, Direction::Outbound));
        // Now it stalls, for three seconds and more.
        r.task.events.drain();
        let before = r.task.shared.commands[0].len() + r.pending.len();
        for _ in 0..300 {
            turn(&mut rig, false, true);
        }
        let r = &mut rig.r;
        assert!(r.task.mirror.flow_failed(), "the stall failed the flow");
        assert!(
            r.task.mirror.owns(HELD, Direction::Outbound),
            "no limit bounds what the worker did unlimited: HELD stays"
        );
        let stops = r.task.shared.commands[0].len() + r.pending.len() - before;
        assert!(
            stops <= 4,
            "{stops} commands piled up for the stalled worker in three seconds"
        );
    }

    /// HELD's worker reports it waiting at its limit; the task turns until
    /// an `sa_stalled` is told (or `within` went by): what was told, and
    /// when.
    fn stall_told(r: &mut Running, within: Duration) -> (Vec<NodeEvent>, Duration) {
        let limit = r.task.mirror.limit(HELD).expect("held");
        let report = crate::progress::Progress::Outbound {
            spi: HELD,
            seq: limit - 1,
            bytes: 0,
            packets: 1,
        };
        assert!(r.task.rings[0].push(report).is_ok());
        told_within(r, within, |k| matches!(k, NodeEventKind::SaStalled { .. }))
    }

    /// Turns the task until it tells an event `wanted` picks (or `within`
    /// passes): those events, and how long it took.
    fn told_within(
        r: &mut Running,
        within: Duration,
        wanted: fn(&NodeEventKind) -> bool,
    ) -> (Vec<NodeEvent>, Duration) {
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let mut told = Vec::new();
        while told.is_empty() && start.elapsed() < within {
            r.turn(&stop);
            told.extend(
                r.task
                    .events
                    .drain()
                    .into_iter()
                    .filter(|e| wanted(&e.kind)),
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        (told, start.elapsed())
    }

    /// Frames from another node's mirror on `key` (node `node`, life
    /// `epoch`): its first ones, a heartbeat among them.
    fn frames_of(node: u32, peer: u32, key: MirrorKey, epoch: u64) -> Vec<Vec<u8>> {
        let mut m = Mirror::new(cfg(node, peer), key, epoch, 0);
        std::iter::from_fn(|| m.poll_transmit(0)).collect()
    }

    /// A peer not heard in `after_ms` since the start is told once, with
    /// what to check (port, peer MAC, key) and what the port received,
    /// refusals by reason; not again in the same silence.
    #[test]
    fn a_peer_never_heard_is_told_once_naming_what_to_check() {
        let (mut r, mut peer_end) = running(Mirror::new(cfg(1, 2), key(), 1, 0));
        let stop = AtomicBool::new(false);
        let wrong_key = MirrorKey::new(&[9; 32]).unwrap();
        send_frames(&mut peer_end, frames_of(2, 1, wrong_key, 2));
        r.turn(&stop);
        assert!(r.unheard(2_999).is_none(), "told before its time");
        let line = r.unheard(3_000).expect("told at 3 s");
        for part in [
            "the peer (node 2) has not been heard in the 3.0 s since this node started",
            "mirror.port mirror (mem) must be the link to the peer's mirror port",
            "mirror.peer_mac (02:00:00:00:00:02) must be the MAC of the peer's mirror port",
            "mirror.key must be the same on both nodes",
            "frames received, 0 accepted, 0 not mirror frames, refused: forged ",
        ] {
            assert!(line.contains(part), "{part:?} not in {line}");
        }
        assert!(r.unheard(60_000).is_none(), "told twice in one silence");
    }

    /// A peer heard and then lost is told again after `after_ms`, as lost.
    #[test]
    fn a_peer_lost_is_told_again_after_the_silence() {
        let (mut r, _peer_end) = holder();
        assert!(r.unheard(60_000).is_none(), "the peer is heard");
        r.task.mirror.handle_timeout(60_000);
        r.handle_events(60_000);
        assert!(!r.task.mirror.peer_alive());
        assert!(r.unheard(62_999).is_none());
        let line = r.unheard(63_000).expect("told");
        assert!(
            line.contains("not been heard in the 3.0 s since it was lost"),
            "{line}"
        );
        assert!(r.unheard(90_000).is_none());
    }

    /// Each reason a mirror frame is refused for is told once, at its
    /// first frame, and again in the peer's next life.
    #[test]
    fn the_first_refused_frame_of_each_reason_is_told() {
        let (mut r, mut peer_end) = running(Mirror::new(cfg(1, 2), key(), 1, 0));
        let mut told = |r: &mut Running, frames: Vec<Vec<u8>>| {
            send_frames(&mut peer_end, frames);
            r.task.port.receive(&mut r.task.mirror, 0);
            let lines = r.new_refusals();
            r.handle_events(0);
            lines
        };
        let wrong_key = || MirrorKey::new(&[9; 32]).unwrap();
        let lines = told(&mut r, frames_of(2, 1, wrong_key(), 2));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("a mirror frame was refused as forged: its MAC does not verify: the two nodes' mirror.key differ"),
            "{}",
            lines[0]
        );
        assert!(told(&mut r, frames_of(2, 1, wrong_key(), 2)).is_empty());
        let lines = told(&mut r, frames_of(1, 2, key(), 7));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("refused as wrong_node: sent by this node itself"),
            "{}",
            lines[0]
        );
        // The peer's life 5 is heard: what it is refused is told anew.
        assert!(told(&mut r, frames_of(2, 1, key(), 5)).is_empty());
        assert!(r.task.mirror.peer_alive());
        let lines = told(&mut r, frames_of(2, 1, wrong_key(), 2));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(r.task.mirror.rejected().get(Reject::Forged) >= 3);
    }

    /// An SA this node runs that its worker says waits at its limit (the
    /// peer silent: nothing acknowledges its lease) is told as an
    /// `sa_stalled` event once it has waited a second.
    #[test]
    fn an_sa_waiting_at_its_limit_for_a_second_is_told() {
        let (mut r, _peer_end) = holder();
        let (told, took) = stall_told(&mut r, Duration::from_secs(5));
        assert!(took >= Duration::from_millis(espgate_mirror::ALARM_AFTER_MS));
        assert_eq!(
            told.into_iter().map(|e| e.kind).collect::<Vec<_>>(),
            [NodeEventKind::SaStalled {
                spi: HELD,
                direction: Direction::Outbound
            }]
        );
    }

    /// Reader16 find F1 (the fence contract, docs/mirror-protocol.md "What
    /// the protocol cannot cover on its own": "a fenced node must restart
    /// before it rejoins"; the host's `Unrestarted`: "gets nothing handed
    /// back"). Automatic failback (the default, and conf/pair/*.yaml, the
    /// node files conf/host.yaml pushes, say `failback: auto`) hands the
    /// SAs back to the very life this node fenced, as soon as that life is
    /// heard again: its frames carry FLAG_SYNCED (it synchronised before
    /// its freeze), so `peer_synced()` is true at once, and 182ba5b's wait
    /// does not hold it. The host meanwhile holds that node as
    /// `Unrestarted` (no `on_return`: its flows stay routed to this node,
    /// which no longer has its SAs) and every later failure of this node
    /// is `FailedAlone`.
    ///
    /// Steps: node 1 holds HELD (home 2) after a takeover; node 2 falls
    /// silent (frozen), node 1 declares it dead and is fenced (`Order::Fence`,
    /// ok: unleased); node 2 thaws in the same life (epoch 2) and its
    /// frames arrive; with `failback: auto` (delay 0) node 1 hands HELD
    /// back.
    ///
    /// The fix: the mirror remembers the peer life it fenced (the filter's
    /// epoch at `force_unleased`), and `peer_synced()`, which automatic
    /// failback waits for, does not count that life.
    #[test]
    fn reader16_automatic_failback_skips_a_life_this_node_fenced() {
        let (m, mut peer) = holding_pair();
        let (mut r, mut peer_end) = running(m);
        r.task.failback = Failback::Auto { delay_ms: 0 };
        let stop = AtomicBool::new(false);
        // Node 2 freezes: declared dead, then fenced.
        std::thread::sleep(Duration::from_millis(60));
        r.turn(&stop);
        assert!(!r.task.mirror.peer_alive());
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(r.task.orders.push(Order::Fence(tx)).is_ok());
        r.turn(&stop);
        assert_eq!(rx.recv().unwrap(), Ok(()), "fenced");
        while r.task.shared.commands[0].pop().is_some() {}
        r.parking = false;
        let _ = frames_from(&mut peer_end);
        // Node 2 thaws in the same life.
        for k in 0..5 {
            let t = 1000 + 20 * k;
            let mut out = Vec::new();
            while let Some(f) = peer.poll_transmit(t) {
                out.push(f);
            }
            send_frames(&mut peer_end, out);
            std::thread::sleep(Duration::from_millis(2));
            r.turn(&stop);
            while r.task.shared.commands[0].pop().is_some() {}
            r.parking = false;
            for f in frames_from(&mut peer_end) {
                let _ = peer.handle_frame(t, &f);
            }
        }
        assert!(r.task.mirror.peer_alive());
        assert!(
            r.task.mirror.owns(HELD, Direction::Outbound),
            "handed HELD back to the life this node fenced (peer epoch 2, synced {})",
            r.task.mirror.peer_synced()
        );
    }

    /// reader19, find 3. The refresh that checked the alarms is a sending
    /// timer, served only inside `poll_transmit`, and the mirror port
    /// calls that only while its backlog has room: a mirror link whose
    /// transmit queue does not drain (link down under DPDK, a wedged
    /// ring: here a depth-1 link the peer never reads) leaves the backlog
    /// full, so the refresh never fires and an SA waiting at its limit
    /// for want of an acknowledgement (the very case `sa_stalled` is for)
    /// was never told. The alarms are a watching timer now, served by
    /// `handle_timeout`.
    #[test]
    fn a_stall_over_a_wedged_mirror_link_is_told() {
        let (m, _) = holding_pair();
        let (mut r, _peer_end) = running(m);
        // The same task on a link of depth 1 that nobody reads.
        let info = |mac: u8| PortInfo {
            name: "mirror".into(),
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            mtu: 1500,
        };
        let (mut ours, _theirs) = mem::link(info(1), 1, info(2), 1, 1);
        r.task.port = MirrorPort::new(
            Box::new(ours.remove(0)),
            BufPool::new(Mempool::new(256, 0), 16),
            MacAddr([2, 0, 0, 0, 0, 2]),
        );
        let (told, _) = stall_told(&mut r, Duration::from_secs(4));
        assert_eq!(
            told.into_iter().map(|e| e.kind).collect::<Vec<_>>(),
            [NodeEventKind::SaStalled {
                spi: HELD,
                direction: Direction::Outbound
            }],
            "nothing told in 4 s over a wedged link"
        );
    }

    /// Reader33's find, fixed since (an SA the peer's life declined is
    /// not handed to that life again: `HandOverRefused::PeerLacks`): a
    /// node whose flow failed handed over, each turn, an SA its peer
    /// does not have (the peer's life declines it), took it back one
    /// takeover jump further, and handed it over again, for as long as
    /// the flow stayed failed.
    ///
    /// 1. Node 1 runs `HELD` (home 1, ESN); node 2's life has no such SA
    ///    (started from a file without it, or the host's add has not
    ///    reached it yet). Both synchronised, the peer's flow working.
    /// 2. Node 1's data link goes down: its `FlowWatch` fails the flow,
    ///    and `flow_on` stops every SA in `drain_sas`, `HELD` too (nothing
    ///    asks whether the peer has it), and hands it over exactly.
    /// 3. Node 2 declines it; node 1 takes it back (`declined`: `take`),
    ///    a takeover one jump (2^25 here) past what it stored: `HELD`
    ///    restarts far ahead.
    /// 4. Next turn, `flow_on` finds `HELD` running and not stopped:
    ///    stopped, handed over, declined, taken back, another jump...
    ///
    /// Each round is an outage of the SA and a jump (the failed flow's
    /// promise: "with its exact state: no jump"): here about 60 rounds of
    /// 2^25 in 200 turns (half a second); a 32-bit SA (2^24 a jump) has
    /// used its whole space after 256 rounds, a second or so of a failed
    /// link. An SA the peer cannot take should stay here, as everything
    /// does while the peer cannot take anything.
    #[test]
    fn reader33_a_failed_flow_hands_over_and_takes_back_a_declined_sa_in_a_loop() {
        use std::sync::atomic::Ordering as O;
        let mut m = Mirror::new(cfg(1, 2), key(), 1, 0);
        let mut peer = Mirror::new(cfg(2, 1), key(), 2, 0);
        m.add_sa(HELD, Direction::Outbound, true, 1);
        exchange(&mut m, &mut peer);
        assert!(m.synced() && peer.synced() && m.owns(HELD, Direction::Outbound));
        let (mut r, mut peer_end) = running(m);
        let (lan, lan_up) = espgate_io::link::Switch::new("lan");
        r.task.flow = FlowWatch::new(
            vec![Box::new(lan)],
            crate::flow::LinkWatch {
                down_ms: 1,
                up_ms: 60_000,
            },
        );
        let stop = AtomicBool::new(false);
        let mut t = 0;
        let mut turn = |r: &mut Running, peer: &mut Mirror| {
            t += 5;
            let out: Vec<Vec<u8>> = std::iter::from_fn(|| peer.poll_transmit(t)).collect();
            send_frames(&mut peer_end, out);
            std::thread::sleep(Duration::from_millis(2));
            r.turn(&stop);
            take_commands(r);
            for f in frames_from(&mut peer_end) {
                let _ = peer.handle_frame(t, &f);
            }
        };
        for _ in 0..5 {
            turn(&mut r, &mut peer);
        }
        r.task.events.drain();
        lan_up.store(false, O::Release);
        let mut starts = Vec::new();
        for _ in 0..200 {
            turn(&mut r, &mut peer);
            for e in r.task.events.drain() {
                if let NodeEventKind::Activated {
                    spi: HELD, start, ..
                } = e.kind
                {
                    starts.push(start);
                }
            }
        }
        assert!(r.task.mirror.flow_failed() && r.task.mirror.peer_alive());
        assert!(
            starts.len() <= 1,
            "HELD, which the peer declines, restarted {} times, a jump further each: {:?}",
            starts.len(),
            &starts[..starts.len().min(6)]
        );
    }
}
