//! A worker: one thread in a run-to-completion loop over its queue of each
//! port. Receive a burst, classify each frame (ARP; ESP for us by SPI;
//! anything else for us to the punt device, if there is one; plaintext by
//! the SPD), run ESP with the SAs this worker owns, add the Ethernet header
//! for the next hop, send the bursts. A frame whose SA another worker owns
//! goes to that worker through a lock-free ring, so no SA is ever touched
//! by two threads: each SA object lives in exactly one worker.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use espgate_esp::{AtLimit, Direction, Inbound, Opened, OutboundSa, SaCounters, SaEvent, Sad};
use espgate_io::{BufPool, Packet, PortQueue, QueueStats};
use espgate_wire::PacketBuf;
use espgate_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use espgate_wire::ip;
use hdrhistogram::Histogram;

use crate::classify::{decrement_ttl, esp_spi};
use crate::command::SaCommand;
use crate::config::{PerSide, Role};
use crate::counters::{NodeDrop, WorkerCounters};
use crate::held::Held;
use crate::icmp;
use crate::mirror_task::NodeEventKind;
use crate::neigh::{ArpOutcome, Neighbours, announcement, handle_arp, probe, request, write_arp};
use crate::prefix::Prefix;
use crate::progress::{Progress, Reporting, STALL_REPORT_EVERY};
use crate::punt::{self, PuntDevice};
use crate::snapshot::{SaSnapshot, WorkerSnapshot};
use crate::spd::{Action, Selectors};
use crate::tables::{TableCell, Tables};

/// A frame on its way to the worker that owns its SA.
pub struct Handoff {
    /// The frame, Ethernet header included.
    pub buf: Packet,
    /// The side it arrived on.
    pub from: Role,
    /// Read in a turn after the worker that read it stood still (see
    /// `Worker::fresh`): not sent on to the peer.
    pub stale: bool,
}

/// What every worker shares.
pub struct Shared {
    /// Policy, SA owners and ESP-in-UDP ports, replaced whole on SA changes.
    pub tables: TableCell,
    /// Neighbours.
    pub neighbours: Neighbours,
    /// `handoff[from][to]`: the ring from one worker to another.
    pub handoff: Vec<Vec<Arc<ArrayQueue<Handoff>>>>,
    /// Each worker's command ring.
    pub commands: Vec<Arc<ArrayQueue<SaCommand>>>,
    /// Each worker's SA events ([`NodeEventKind::Sa`]), for the node's
    /// event log; one that finds its ring full is only counted.
    pub sa_events: Vec<Arc<ArrayQueue<NodeEventKind>>>,
    /// The peer's addresses on the protected (0) and unprotected (1) side:
    /// answered for, and ESP to them accepted, while `adopted` is set.
    pub peer_addresses: PerSide<Vec<IpAddr>>,
    /// Whether this node holds its peer's addresses (it runs its SAs).
    pub adopted: AtomicBool,
    /// Bumped when the addresses held change or SAs start here: workers
    /// reload their addresses, and worker 0 announces them.
    pub announce: AtomicU64,
    /// Workers whose thread ended in a panic (their SAs go nowhere).
    pub workers_lost: AtomicUsize,
    /// How many turns each worker's loop has made: one whose count stands
    /// still has stalled (see `flow::WorkerWatch`).
    pub turns: Vec<CachePadded<AtomicU64>>,
}

/// Held by a worker's thread for its life: a panic that ends the thread
/// is counted in [`Shared::workers_lost`].
pub struct WorkerGuard(pub Arc<Shared>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.workers_lost.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Shared {
    /// Sends a command to the worker that owns its SA; gives it back if
    /// the SA is unknown or that worker's ring is full (never blocks).
    pub fn command(&self, cmd: SaCommand) -> Result<(), SaCommand> {
        let Some((spi, direction)) = cmd.sa() else {
            return Err(cmd);
        };
        let owner = self.tables.with(|t| t.owners(direction).get(&spi).copied());
        match owner {
            Some(w) => self.commands[w].push(cmd),
            None => Err(cmd),
        }
    }

    /// Sends a command to worker `worker`; gives it back if there is no
    /// such worker or its ring is full.
    pub fn command_to(&self, worker: usize, cmd: SaCommand) -> Result<(), SaCommand> {
        match self.commands.get(worker) {
            Some(ring) => ring.push(cmd),
            None => Err(cmd),
        }
    }

    /// Commands not yet taken by their workers.
    pub fn commands_pending(&self) -> usize {
        self.commands_pending_except(&[])
    }

    /// Commands sent but not yet taken, but those of workers `skipped`.
    pub fn commands_pending_except(&self, skipped: &[usize]) -> usize {
        self.commands
            .iter()
            .enumerate()
            .filter(|(w, _)| !skipped.contains(w))
            .map(|(_, q)| q.len())
            .sum()
    }
}

/// A port as one worker sees it.
pub struct PortState {
    /// Which side.
    pub role: Role,
    /// Our MAC on it.
    pub mac: MacAddr,
    /// Our address on it.
    pub address: IpAddr,
    /// The on-link prefix.
    pub subnet: Prefix,
    /// The next hop off the link.
    pub gateway: Option<IpAddr>,
    /// Largest IP packet on the link.
    pub mtu: usize,
    /// This worker's queue.
    pub queue: Box<dyn PortQueue>,
    /// Frames waiting for the next transmit burst.
    pub tx: Vec<Packet>,
}

/// What a worker hands back when it stops.
pub struct WorkerReport {
    /// Worker index.
    pub id: usize,
    /// Its counters.
    pub counters: WorkerCounters,
    /// Outbound SAs it owned, with their counters and last sequence number.
    pub outbound: Vec<(u32, SaCounters, u64)>,
    /// Inbound SAs it owned, with their counters and window top.
    pub inbound: Vec<(u32, SaCounters, u64)>,
    /// Drops of its SAD that reached no SA.
    pub sad_drops: espgate_esp::DropCounters,
    /// Its queues' counters, by port name.
    pub queues: Vec<(String, QueueStats)>,
    /// Processing time of one received burst in every
    /// [`TIMED_EVERY`], in nanoseconds (timing each would cost two clock
    /// reads a burst).
    pub burst_ns: Histogram<u64>,
}

impl From<WorkerSnapshot> for WorkerReport {
    fn from(s: WorkerSnapshot) -> Self {
        let sas = |d: Direction| {
            s.sas
                .iter()
                .filter(|sa| sa.direction == d)
                .map(|sa| (sa.spi, sa.counters, sa.seq))
                .collect()
        };
        WorkerReport {
            id: s.id,
            counters: s.counters,
            outbound: sas(Direction::Outbound),
            inbound: sas(Direction::Inbound),
            sad_drops: s.sad_drops,
            queues: s.queues,
            burst_ns: s.burst_ns,
        }
    }
}

/// One worker.
pub struct Worker {
    /// Index.
    id: usize,
    /// Shared tables.
    shared: Arc<Shared>,
    /// The version of the shared tables this worker uses, and its number.
    tables: Arc<Tables>,
    tables_generation: u64,
    /// Its queue of each port, and what it knows of the port.
    ports: PerSide<PortState>,
    /// Outbound SAs this worker owns.
    outbound: FxHashMap<u32, OutboundSa>,
    /// Inbound SAs this worker owns.
    sad: Sad,
    /// Buffers.
    pool: BufPool,
    /// Frames per burst.
    burst: usize,
    /// Upper bound of the idle sleep (0: busy-poll).
    idle_sleep: Duration,
    counters: WorkerCounters,
    burst_ns: Histogram<u64>,
    arp_asked: HashMap<IpAddr, Instant>,
    /// When this worker last told of a packet matching each trap rule
    /// (by its selectors: its index moves as rules come and go).
    acquired: HashMap<RuleSelectors, Instant>,
    /// This worker's copy of the neighbours it uses, and the table's
    /// generation it was taken at.
    neigh_cache: FxHashMap<IpAddr, MacAddr>,
    neigh_generation: u64,
    /// The last next hop resolved (a run of packets mostly goes one way).
    last_hop: Option<(IpAddr, MacAddr)>,
    /// The last outbound SA used, with its tunnel's far end and the room
    /// it leaves for an inner packet (a run of packets mostly uses one):
    /// forgotten at every SA command.
    last_sa: Option<(u32, IpAddr, usize)>,
    /// SAs this worker holds but must not use (parked): the peer runs
    /// them, or they were handed back.
    parked: FxHashSet<(u32, Direction)>,
    /// Frames the peer sent on for an SA parked here, until it starts.
    held: Held<Packet>,
    /// Packets at their SA's limit, held until it rises: plaintext with its
    /// Ethernet header (outbound), or authentic and decrypted (inbound).
    limited: Held<(Limited, Packet)>,
    /// While the held packets are tried again: when the one being tried
    /// was first held (it keeps that time if it is held again).
    limited_since: Option<Instant>,
    /// An SA started here, or a limit rose, since the held frames and
    /// packets were last tried.
    moved: bool,
    /// When this turn of the loop began, and whether the turn before it
    /// began less than [`STALE_AFTER`] earlier: after a longer gap (the
    /// worker stood still) the frames it reads waited that long.
    turned: Instant,
    fresh: bool,
    /// IP packets (no Ethernet header yet) waiting for their next hop's
    /// MAC, with that next hop; while any waits for a next hop, every
    /// packet routed to it waits behind it, so that none overtakes
    /// another. Packets to other next hops go their way.
    unresolved: Held<Waiting>,
    /// How many packets wait for each next hop.
    waiting: FxHashMap<IpAddr, usize>,
    report: Option<Reporting>,
    /// Addresses this worker answers for on each side: the port's own,
    /// then the peer's while adopted.
    addresses: PerSide<Vec<IpAddr>>,
    announced: u64,
    /// The punt device, when the node has one: every worker punts through
    /// it; the [`PUNT_READER`] also sends on what the kernel sends.
    punt: Option<Arc<dyn PuntDevice>>,
    /// Busy rounds since the [`PUNT_READER`] last looked at the device.
    punt_skipped: u32,
    /// The [`ANNOUNCER`]'s ARP probes of the tracked next hops (none: not
    /// probing).
    probing: Option<Probing>,
}

const ARP_RETRY: Duration = Duration::from_millis(200);

/// How long a frame the peer sent on waits for its SA to start here: many
/// times what a hand-over takes from the giver's stop to the taker's start
/// (a mirror frame and a command, well under 5 ms).
const START_WAIT: Duration = Duration::from_millis(20);

/// How long a packet waits for its next hop's MAC: many times an ARP round
/// trip on a link, and less than [`ARP_RETRY`] (a lost request is not
/// waited for twice).
const NEIGHBOUR_WAIT: Duration = Duration::from_millis(100);

/// How long a packet at its SA's limit waits for the limit to rise: many
/// times a mirror round trip (a lease's acknowledgement) and a mark's write
/// to the state directory.
const LIMIT_WAIT: Duration = Duration::from_millis(20);

/// Frames each of a worker's waits holds at most (their buffers come from
/// the pool): some 10 000 packets a second through one SA or next hop.
const HELD_MAX: usize = 128;

/// Packets that wait for one next hop's MAC at most (the kernel's
/// neighbour queue is about a hundred): one that does not answer takes no
/// more of [`HELD_MAX`] than this.
const WAITING_PER_HOP: usize = 32;

/// A worker whose turn began this long after the one before stood still
/// (stopped, or starved of the CPU): what it reads then is not sent on to
/// the peer, whose window has moved past it since.
const STALE_AFTER: Duration = Duration::from_millis(50);

/// The ARP probes of the tracked next hops.
struct Probing {
    /// Each next hop, and the port it is on.
    targets: Vec<(Role, Ipv4Addr)>,
    every: Duration,
    next: Instant,
}

/// How often a worker tells of packets matching one trap rule.
pub const ACQUIRE_EVERY: Duration = Duration::from_secs(1);

/// Trap rules a worker remembers telling of before it forgets those told
/// of more than [`ACQUIRE_EVERY`] ago.
const MAX_ACQUIRING: usize = 1024;

/// What tells one rule from another: its selectors.
type RuleSelectors = (
    crate::prefix::Prefix,
    crate::prefix::Prefix,
    Option<u8>,
    (u16, u16),
    (u16, u16),
);

/// The worker that announces the addresses this node holds (gratuitous
/// ARP, unsolicited neighbour advertisements): one, so each address goes
/// out once per change, and worker 0, which every node has. Every worker
/// answers for them; the ports' queues all send on the same wire.
const ANNOUNCER: usize = 0;

/// The worker that reads what the kernel sends through the punt device:
/// one, as the device is one queue; worker 0, which every node has.
const PUNT_READER: usize = 0;

/// A busy [`PUNT_READER`] looks at the punt device once in this many
/// rounds of its loop (an idle one at every round): the kernel sends a
/// few packets a second, and the look is a system call.
const PUNT_EVERY: u32 = 8;

/// One received burst in this many is timed for `burst_ns`.
pub const TIMED_EVERY: u64 = 8;

/// What becomes of a frame once the worker has read it (and changed it in
/// place): the frame moves once, at the end, instead of down every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Onto the transmit burst of a port.
    Send(Role),
    /// Dropped and counted.
    Drop(NodeDrop),
    /// To the worker that owns its SA (worker index, below
    /// [`MAX_WORKERS`](crate::node::MAX_WORKERS), which `start` checks,
    /// and the port it came from). Kept small: a verdict is written and
    /// read back at once, whole.
    HandOff(u8, Role),
    /// Nothing more to do with it (back to the pool, not a drop).
    Done,
    /// Held until its SA starts here (it came from the port of this role).
    Hold(Role),
    /// An IP packet for the port of this role, waiting for its next hop's
    /// MAC (ARP was asked).
    Wait(Role),
}

/// A packet waiting for its next hop's MAC.
struct Waiting {
    hop: IpAddr,
    buf: Packet,
    /// The kernel sent it through the punt device (`punt_sent` once out).
    punted: bool,
}

/// Whom an ARP request says it comes from.
#[derive(Clone, Copy)]
enum Asking {
    /// The port's address (the target learns it, as hosts do).
    FromThePort,
    /// 0.0.0.0 (an RFC 5227 probe): nobody learns the port's address from
    /// it, which the peer may hold.
    Anonymously,
}

/// What a packet held at its SA's limit waits to become.
enum Limited {
    /// Sealed by this outbound SA.
    Outbound(u32),
    /// Accepted by its inbound SA.
    Inbound(AtLimit),
}

/// Puts an Ethernet header (to `own`, from `sender`) back in front of an
/// IP packet whose header was taken off, to go through the worker again.
fn restore_ethernet(buf: &mut Packet, own: MacAddr, sender: MacAddr) -> Result<(), NodeDrop> {
    let ethertype = if ip::version_of(buf.data()) == Some(6) {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    let eth = EthernetRepr {
        dst: own,
        src: sender,
        vlan: None,
        ethertype,
    };
    let h = buf
        .prepend(eth.header_len())
        .map_err(|_| NodeDrop::BadFrame)?;
    eth.emit(h).map_err(|_| NodeDrop::BadFrame)
}

/// Where a frame's SA runs.
enum Claim {
    /// On this worker.
    Here,
    /// The frame goes to another worker (or is dropped).
    Elsewhere(Verdict),
    /// Parked on this node: the peer runs it, or nobody does yet.
    Parked,
}

impl Worker {
    /// A worker over these ports and SAs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        ports: PerSide<PortState>,
        outbound: FxHashMap<u32, OutboundSa>,
        sad: Sad,
        pool: BufPool,
        burst: usize,
        idle_sleep: Duration,
    ) -> Self {
        let addresses = PerSide::from_fn(|role| vec![ports[role].address]);
        Worker {
            id,
            tables: shared.tables.load(),
            tables_generation: shared.tables.generation(),
            shared,
            ports,
            outbound,
            sad,
            pool,
            burst: burst.max(1),
            idle_sleep,
            counters: WorkerCounters::default(),
            burst_ns: Histogram::new(3).expect("histogram"),
            arp_asked: HashMap::new(),
            acquired: HashMap::new(),
            neigh_cache: FxHashMap::default(),
            neigh_generation: 0,
            last_hop: None,
            last_sa: None,
            parked: FxHashSet::default(),
            held: Held::new(START_WAIT, HELD_MAX),
            limited: Held::new(LIMIT_WAIT, HELD_MAX),
            limited_since: None,
            moved: false,
            turned: Instant::now(),
            fresh: true,
            unresolved: Held::new(NEIGHBOUR_WAIT, HELD_MAX),
            waiting: FxHashMap::default(),
            report: None,
            addresses,
            announced: 0,
            punt: None,
            punt_skipped: 0,
            probing: None,
        }
    }

    /// Probes `targets`, tracked next hops each on its port, by ARP every
    /// `every`, if this worker is the [`ANNOUNCER`] (their answers tell the
    /// node's flow watch they are there; see `flow::NextHop`).
    pub fn with_probing(mut self, targets: Vec<(Role, Ipv4Addr)>, every: Duration) -> Self {
        if self.id == ANNOUNCER && !targets.is_empty() {
            self.probing = Some(Probing {
                targets,
                every,
                next: Instant::now(),
            });
        }
        self
    }

    /// Punts the packets for the node itself that it does not handle
    /// through `device` (see [`crate::punt`]).
    pub fn with_punt(mut self, device: Arc<dyn PuntDevice>) -> Self {
        self.punt = Some(device);
        self
    }

    /// Reports SA progress to the mirror task through `report`.
    pub fn with_reporting(mut self, report: Reporting) -> Self {
        self.report = Some(report);
        self
    }

    /// Parks an SA: its packets are dropped until an `Activate` command.
    pub fn park(&mut self, spi: u32, direction: Direction) {
        self.parked.insert((spi, direction));
    }

    /// Reloads the addresses held when they changed; the [`ANNOUNCER`]
    /// announces them: gratuitous ARP for IPv4, unsolicited neighbour
    /// advertisements for IPv6.
    fn poll_announce(&mut self) {
        let now = self.shared.announce.load(Ordering::Acquire);
        if now == self.announced {
            return;
        }
        self.announced = now;
        let adopted = self.shared.adopted.load(Ordering::Acquire);
        for (role, list) in self.addresses.iter_mut() {
            list.truncate(1);
            if adopted {
                list.extend(self.shared.peer_addresses[role].iter().copied());
            }
        }
        if self.id != ANNOUNCER {
            return;
        }
        for role in Role::BOTH {
            let mac = self.ports[role].mac;
            for ip in self.addresses[role].clone() {
                let mut buf = Packet::from(self.pool.get());
                self.counters.announcements += 1;
                match ip {
                    IpAddr::V4(v4) => {
                        write_arp(&mut buf, &announcement(v4, mac), mac);
                        self.ports[role].tx.push(buf);
                    }
                    IpAddr::V6(v6) => {
                        let na = icmp::unsolicited_na(v6, mac.0);
                        match buf.append(na.len()) {
                            Ok(room) => {
                                room.copy_from_slice(&na);
                                let v = self.send(role, MacAddr(icmp::ALL_NODES.1), &mut buf);
                                self.dispose(buf, v);
                            }
                            Err(_) => self.pool.recycle(buf),
                        }
                    }
                }
            }
        }
    }

    /// Sends an ARP probe to each tracked next hop when one is due: a
    /// broadcast (a next hop whose MAC moved still answers) from 0.0.0.0
    /// (nobody learns this node's address from it while its peer may hold
    /// it).
    fn poll_probe(&mut self) {
        let Some(p) = &mut self.probing else {
            return;
        };
        let now = Instant::now();
        if now < p.next {
            return;
        }
        p.next = now + p.every;
        for &(role, target) in &p.targets {
            let mac = self.ports[role].mac;
            let mut buf = Packet::from(self.pool.get());
            write_arp(&mut buf, &probe(mac, target), mac);
            self.counters.arp_requests += 1;
            self.ports[role].tx.push(buf);
        }
    }

    /// Runs until `stop` is set, then reports.
    pub fn run(mut self, stop: &AtomicBool) -> WorkerReport {
        let mut rx: Vec<Packet> = Vec::with_capacity(self.burst);
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(self.burst);
        let mut idle_rounds = 0u32;
        let mut bursts = 0u64;
        let mut turns = 0u64;
        self.learn_peer();
        loop {
            turns += 1;
            self.shared.turns[self.id].store(turns, Ordering::Relaxed);
            let now = Instant::now();
            self.fresh = now.duration_since(self.turned) < STALE_AFTER;
            self.turned = now;
            self.reload_tables();
            // Commands before the bursts: a worker that stalled takes the
            // parks its SAs had while it stood still once it has finished
            // the turn it stood still in.
            let mut work = self.poll_commands();
            // Frames held for an SA that has just started go before the
            // bursts that follow them on the wire.
            let moved = std::mem::take(&mut self.moved);
            work += self.poll_held(moved);
            work += self.poll_limited(moved);
            for role in [Role::Protected, Role::Unprotected] {
                let n = self.ports[role]
                    .queue
                    .rx_burst(&mut self.pool, &mut rx, self.burst);
                if n == 0 {
                    continue;
                }
                work += n;
                bursts += 1;
                let t0 = (bursts % TIMED_EVERY == 0).then(Instant::now);
                self.counters.rx += n as u64;
                // Every frame of the burst is read and changed where it
                // lies, then moved once: a frame moved right after it was
                // written stalls the CPU's store forwarding.
                verdicts.extend(rx.iter_mut().map(|buf| self.process(role, buf, true)));
                match verdicts[0] {
                    // The usual burst: all of it out of one port, moved in
                    // one copy.
                    Verdict::Send(out) if verdicts.iter().all(|v| *v == verdicts[0]) => {
                        self.ports[out].tx.append(&mut rx);
                        verdicts.clear();
                    }
                    _ => {
                        for (buf, v) in rx.drain(..).zip(verdicts.drain(..)) {
                            self.dispose(buf, v);
                        }
                    }
                }
                if let Some(t0) = t0 {
                    let _ = self.burst_ns.record(t0.elapsed().as_nanos() as u64);
                }
            }
            work += self.poll_handoffs();
            work += self.poll_unresolved();
            work += self.poll_punt(work > 0);
            self.poll_announce();
            self.poll_probe();
            self.flush_tx();
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if work == 0 {
                idle_rounds = idle_rounds.saturating_add(1);
                if self.idle_sleep.is_zero() {
                    std::hint::spin_loop();
                } else {
                    let us = u64::from(idle_rounds.min(1000));
                    std::thread::sleep(Duration::from_micros(us).min(self.idle_sleep));
                }
            } else {
                idle_rounds = 0;
            }
        }
        for (_, _, buf) in self.held.take() {
            self.drop_frame(buf, NodeDrop::Parked);
        }
        for (_, _, (what, frame)) in self.limited.take() {
            self.give_up_at_limit(what, frame);
        }
        for (_, _, w) in self.unresolved.take() {
            self.drop_frame(w.buf, NodeDrop::ArpMiss);
        }
        self.waiting.clear();
        self.flush_tx();
        for (_, p) in self.ports.iter_mut() {
            p.queue.flush();
        }
        WorkerReport::from(self.snapshot())
    }

    /// Takes the shared tables' new version, if there is one.
    #[inline]
    fn reload_tables(&mut self) {
        let generation = self.shared.tables.generation();
        if generation != self.tables_generation {
            self.tables = self.shared.tables.load();
            self.tables_generation = generation;
            self.last_sa = None;
        }
    }

    /// This worker's counters and SAs now.
    pub fn snapshot(&self) -> WorkerSnapshot {
        let active = |spi: u32, d: Direction| !self.parked.contains(&(spi, d));
        let outbound = self.outbound.values().map(|sa| SaSnapshot {
            spi: sa.spi(),
            direction: Direction::Outbound,
            worker: self.id,
            active: active(sa.spi(), Direction::Outbound),
            seq: sa.seq(),
            limit: Some(sa.limit()),
            counters: *sa.counters(),
            lifetime: sa.lifetime(),
            seq_left: Some(sa.seq_left()),
        });
        let inbound = self.sad.iter().map(|sa| SaSnapshot {
            spi: sa.spi(),
            direction: Direction::Inbound,
            worker: self.id,
            active: active(sa.spi(), Direction::Inbound),
            seq: sa.window().top(),
            limit: Some(sa.limit()),
            counters: *sa.counters(),
            lifetime: sa.lifetime(),
            seq_left: None,
        });
        WorkerSnapshot {
            id: self.id,
            counters: self.counters,
            queues: self
                .ports
                .iter()
                .map(|(_, p)| (p.queue.info().name.clone(), p.queue.stats()))
                .collect(),
            sad_drops: *self.sad.drops(),
            burst_ns: self.burst_ns.clone(),
            sas: outbound.chain(inbound).collect(),
        }
    }

    fn poll_handoffs(&mut self) -> usize {
        let mut n = 0;
        for from in 0..self.shared.handoff.len() {
            if from == self.id {
                continue;
            }
            let ring = self.shared.handoff[from][self.id].clone();
            for _ in 0..self.burst {
                let Some(h) = ring.pop() else { break };
                self.counters.handoff_in += 1;
                let fresh = self.fresh;
                self.fresh &= !h.stale;
                self.handle(h.from, h.buf, false);
                self.fresh = fresh;
                n += 1;
            }
        }
        n
    }

    /// Carries out the SA commands waiting in this worker's ring.
    fn poll_commands(&mut self) -> usize {
        let ring = self.shared.commands[self.id].clone();
        let mut n = 0;
        while let Some(cmd) = ring.pop() {
            n += 1;
            self.last_sa = None;
            self.counters.commands += 1;
            match cmd {
                SaCommand::Limit {
                    spi,
                    direction,
                    limit,
                } => {
                    match direction {
                        Direction::Outbound => {
                            if let Some(sa) = self.outbound.get_mut(&spi) {
                                sa.set_limit(limit);
                            }
                        }
                        Direction::Inbound => {
                            if let Some(sa) = self.sad.get_mut(spi) {
                                sa.set_limit(limit);
                            }
                        }
                    }
                    self.moved = true;
                }
                SaCommand::Mark {
                    spi,
                    direction,
                    mark,
                } => {
                    match direction {
                        Direction::Outbound => {
                            if let Some(sa) = self.outbound.get_mut(&spi) {
                                sa.set_mark(mark);
                            }
                        }
                        Direction::Inbound => {
                            if let Some(sa) = self.sad.get_mut(spi) {
                                sa.set_mark(mark);
                            }
                        }
                    }
                    self.moved = true;
                }
                SaCommand::Activate {
                    spi,
                    direction,
                    start,
                    bitmap,
                    packets,
                    bytes,
                } => {
                    match direction {
                        Direction::Outbound => {
                            if let Some(sa) = self.outbound.get_mut(&spi) {
                                sa.restart_at(start);
                                sa.resume_counts(packets, bytes);
                            }
                        }
                        Direction::Inbound => {
                            if let Some(sa) = self.sad.get_mut(spi) {
                                sa.restore_window(start, &bitmap);
                                sa.resume_counts(packets, bytes);
                            }
                        }
                    }
                    self.parked.remove(&(spi, direction));
                    self.moved = true;
                    self.learn_peer();
                }
                SaCommand::Park { spi, direction } => {
                    self.parked.insert((spi, direction));
                    self.learn_peer();
                }
                SaCommand::Stop {
                    spi,
                    direction,
                    stamp,
                } => {
                    self.parked.insert((spi, direction));
                    self.learn_peer();
                    self.report_stopped(spi, direction, stamp);
                }
                SaCommand::InstallOutbound { sa, parked } => {
                    let spi = sa.spi();
                    if parked {
                        self.parked.insert((spi, Direction::Outbound));
                    }
                    self.outbound.insert(spi, *sa);
                }
                SaCommand::InstallInbound { sa, parked } => {
                    let spi = sa.spi();
                    if parked {
                        self.parked.insert((spi, Direction::Inbound));
                    }
                    // The caller checked the SPI is free.
                    let _ = self.sad.add(*sa);
                }
                SaCommand::Remove { spi, direction } => {
                    match direction {
                        Direction::Outbound => drop(self.outbound.remove(&spi)),
                        Direction::Inbound => drop(self.sad.remove(spi)),
                    }
                    self.parked.remove(&(spi, direction));
                }
                SaCommand::Expire {
                    spi,
                    direction,
                    hard,
                } => self.expire(spi, direction, hard),
                SaCommand::Snapshot(reply) => {
                    let _ = reply.send(self.snapshot());
                }
            }
        }
        n
    }

    /// A time limit of SA (`spi`, `direction`) passed: raises its event.
    fn expire(&mut self, spi: u32, direction: Direction, hard: bool) {
        let (counters, shared, id) = (&mut self.counters, &self.shared, self.id);
        match direction {
            Direction::Outbound => {
                if let Some(sa) = self.outbound.get_mut(&spi) {
                    sa.expire(hard);
                    tell(counters, shared, id, direction, || {
                        sa.poll_event().map(|e| (spi, e))
                    });
                }
            }
            Direction::Inbound => {
                if self.sad.expire(spi, hard) {
                    tell(counters, shared, id, direction, || self.sad.poll_event());
                }
            }
        }
    }

    /// Sends on what the kernel sent through the punt device, up to
    /// [`punt::BURST`] packets (the [`PUNT_READER`] only; when `busy`,
    /// once in [`PUNT_EVERY`] rounds).
    fn poll_punt(&mut self, busy: bool) -> usize {
        if self.id != PUNT_READER {
            return 0;
        }
        let Some(device) = &self.punt else {
            return 0;
        };
        if busy {
            self.punt_skipped += 1;
            if self.punt_skipped < PUNT_EVERY {
                return 0;
            }
        }
        self.punt_skipped = 0;
        let device = device.clone();
        let mut n = 0;
        while n < punt::BURST {
            let mut buf = Packet::from(self.pool.get());
            let room = buf.tailroom();
            let space = buf.append(room).expect("the buffer's own tailroom");
            match device.recv(space) {
                Ok(Some(len)) => {
                    buf.trim(room - len.min(room))
                        .expect("no more than was appended");
                    n += 1;
                    match self.kernel_packet(&mut buf) {
                        Verdict::Wait(role) => self.wait(role, buf, true),
                        v => self.dispose(buf, v),
                    }
                }
                Ok(None) => {
                    self.pool.recycle(buf);
                    break;
                }
                Err(_) => {
                    self.drop_frame(buf, NodeDrop::PuntBad);
                    break;
                }
            }
        }
        n
    }

    /// A packet the kernel sent through the punt device: out of the port
    /// its source address belongs to, routed as the node routes (on-link,
    /// or through the port's gateway). Its TTL stays: it starts here.
    fn kernel_packet(&mut self, buf: &mut Packet) -> Verdict {
        let Some(len) = punt::ip_packet(buf.data()).map(<[u8]>::len) else {
            return Verdict::Drop(NodeDrop::PuntBad);
        };
        buf.trim(buf.len() - len)
            .expect("no longer than the packet");
        let Some(sel) = Selectors::of(buf.data()) else {
            return Verdict::Drop(NodeDrop::PuntBad);
        };
        let Some(role) = punt::port_of(sel.src, &self.addresses) else {
            return Verdict::Drop(NodeDrop::PuntForeign);
        };
        let v = self.route(role, sel.dst, buf);
        if let Verdict::Send(_) = v {
            self.counters.punt_sent += 1;
        }
        v
    }

    fn flush_tx(&mut self) {
        for (_, p) in self.ports.iter_mut() {
            if p.tx.is_empty() {
                continue;
            }
            let sent = p.queue.tx_burst(&mut p.tx, &mut self.pool);
            self.counters.tx += sent as u64;
            for b in p.tx.drain(..) {
                self.counters.drop(NodeDrop::TxFull);
                self.pool.recycle(b);
            }
        }
    }

    fn drop_frame(&mut self, buf: Packet, why: NodeDrop) {
        self.counters.drop(why);
        self.pool.recycle(buf);
    }

    /// Hands a frame to `owner`, or drops it if that ring is full.
    fn hand_off(&mut self, owner: usize, from: Role, buf: Packet) {
        match self.shared.handoff[self.id][owner].push(Handoff {
            buf,
            from,
            stale: !self.fresh,
        }) {
            Ok(()) => self.counters.handoff_out += 1,
            Err(h) => self.drop_frame(h.buf, NodeDrop::HandoffFull),
        }
    }

    /// Whether this worker runs SA `spi` now; otherwise the frame goes to
    /// the worker that owns the SA (a frame fresh from a port), or the SA
    /// is parked on this node.
    #[inline(always)]
    fn claim(&self, spi: u32, direction: Direction, from: Role, fresh: bool) -> Claim {
        // One worker owns everything: no lookup.
        if fresh && self.shared.handoff.len() > 1 {
            let owner = self
                .tables
                .owners(direction)
                .get(&spi)
                .copied()
                .unwrap_or(self.id);
            if owner != self.id {
                return Claim::Elsewhere(Verdict::HandOff(owner as u8, from));
            }
        }
        if !self.parked.is_empty() && self.parked.contains(&(spi, direction)) {
            return Claim::Parked;
        }
        Claim::Here
    }

    /// A frame (from `sender`, on `role`'s port, its Ethernet header still
    /// on) for an SA parked here. From anyone but the peer, it goes on to
    /// the peer's MAC on the same port: the peer runs the SA (or is about
    /// to: it holds the frame until then), and the sender has not followed
    /// its announcement yet. From the peer, it is held until the SA starts
    /// here: the peer gave it up and sent on what still reached it before
    /// its hand-over record started the SA here. Never back to the peer,
    /// so a frame crosses between the nodes at most once. Dropped as
    /// `standby` while the peer's MAC on the port is unknown (ARP is
    /// asked), in a turn after the worker stood still (the frame may have
    /// waited that long in its queue), and when it was sent to a broadcast
    /// or multicast MAC (the peer has its own copy).
    #[cold]
    fn on_parked(&mut self, role: Role, sender: MacAddr, buf: &mut Packet) -> Verdict {
        // A frame sent to everyone reached the peer too.
        let to_all = EthernetFrame::new_unchecked(buf.data())
            .dst()
            .is_multicast();
        if !self.fresh || to_all {
            return Verdict::Drop(NodeDrop::Parked);
        }
        let Some(peer) = self.peer_mac(role) else {
            return Verdict::Drop(NodeDrop::Parked);
        };
        if sender == peer {
            return Verdict::Hold(role);
        }
        let own = self.ports[role].mac;
        let mut f = EthernetFrame::new_unchecked(buf.data_mut());
        f.set_dst(peer);
        f.set_src(own);
        self.counters.redirected += 1;
        Verdict::Send(role)
    }

    /// The peer's MAC on `role`'s port: that of its address on the port's
    /// subnet (configured as `peer_addresses`), as ARP learned it. When it
    /// is not known yet, an ARP probe asks (rate-limited): from 0.0.0.0,
    /// as this node may ask while the peer holds its address, and a
    /// request from the address would move the hosts' ARP entries back
    /// to this node, which runs nothing for them.
    fn peer_mac(&mut self, role: Role) -> Option<MacAddr> {
        let port = &self.ports[role];
        let own = port.mac;
        let peer = self.shared.peer_addresses[role]
            .iter()
            .copied()
            .find(|a| port.subnet.contains(a))?;
        if let Some(mac) = self.shared.neighbours.lookup(&peer) {
            return Some(mac).filter(|m| *m != own);
        }
        self.ask_arp(role, peer, Asking::Anonymously);
        None
    }

    /// Holds a packet at its SA's limit (`buf` is taken, an empty buffer
    /// left in its place) until the limit rises, [`LIMIT_WAIT`] at most.
    fn hold_at_limit(&mut self, what: Limited, buf: &mut Packet) -> Verdict {
        let frame = std::mem::replace(buf, Packet::from(self.pool.get()));
        let since = self.limited_since.unwrap_or_else(Instant::now);
        if let Err((what, frame)) = self.limited.hold(since, Role::Protected, (what, frame)) {
            self.give_up_at_limit(what, frame);
        }
        Verdict::Done
    }

    /// Drops a packet held at its SA's limit, counted there (`lease_stall`).
    fn give_up_at_limit(&mut self, what: Limited, frame: Packet) {
        match what {
            Limited::Outbound(spi) => {
                if let Some(sa) = self.outbound.get_mut(&spi) {
                    sa.drop_at_limit();
                }
            }
            Limited::Inbound(held) => self.sad.drop_at_limit(held),
        }
        self.drop_frame(frame, NodeDrop::Esp);
    }

    /// Tries the packets held at their SA's limit again once a limit rose
    /// (in the order they came), and gives up those that waited
    /// [`LIMIT_WAIT`] in vain. Returns how many it tried.
    fn poll_limited(&mut self, moved: bool) -> usize {
        if self.limited.is_empty() {
            return 0;
        }
        let mut tried = 0;
        if moved {
            for (since, _, (what, mut frame)) in self.limited.take() {
                tried += 1;
                self.limited_since = Some(since);
                let v = match what {
                    Limited::Outbound(_) => self.process(Role::Protected, &mut frame, true),
                    // Parked here since (stopped for a hand-over, or
                    // parked): the peer runs it from where this worker
                    // left, which this packet is past.
                    Limited::Inbound(held)
                        if self.parked.contains(&(held.spi(), Direction::Inbound)) =>
                    {
                        Verdict::Drop(NodeDrop::Parked)
                    }
                    Limited::Inbound(held) => {
                        let spi = held.spi();
                        match self.sad.admit(held, &mut frame) {
                            Ok(Opened::Inbound(_)) => self.deliver(spi, &mut frame),
                            Ok(Opened::AtLimit(held)) => {
                                self.hold_at_limit(Limited::Inbound(held), &mut frame)
                            }
                            Err(_) => Verdict::Drop(NodeDrop::Esp),
                        }
                    }
                };
                self.dispose(frame, v);
            }
            self.limited_since = None;
        }
        for (what, frame) in self.limited.expire(Instant::now()) {
            self.give_up_at_limit(what, frame);
        }
        tried
    }

    /// Asks ARP for the peer's MAC on each port where it is not known yet,
    /// so that it is known when an SA moves: the redirect and the hold
    /// both need it at once.
    fn learn_peer(&mut self) {
        for role in [Role::Protected, Role::Unprotected] {
            self.peer_mac(role);
        }
    }

    /// Sends, in their order, the packets waiting for a next hop's MAC
    /// whose MAC is known now, and drops (as `arp_miss`) those that waited
    /// [`NEIGHBOUR_WAIT`] in vain. Returns how many went out.
    fn poll_unresolved(&mut self) -> usize {
        if self.unresolved.is_empty() {
            return 0;
        }
        let mut sent = 0;
        for (since, role, mut w) in self.unresolved.take() {
            match self.resolve(role, w.hop) {
                Some(mac) => {
                    sent += 1;
                    self.unwait(w.hop);
                    let v = self.send(role, mac, &mut w.buf);
                    if w.punted && matches!(v, Verdict::Send(_)) {
                        self.counters.punt_sent += 1;
                    }
                    self.dispose(w.buf, v);
                }
                None => {
                    if let Err(w) = self.unresolved.hold(since, role, w) {
                        self.unwait(w.hop);
                        self.drop_frame(w.buf, NodeDrop::ArpMiss);
                    }
                }
            }
        }
        for w in self.unresolved.expire(Instant::now()) {
            self.unwait(w.hop);
            self.drop_frame(w.buf, NodeDrop::ArpMiss);
        }
        sent
    }

    /// Holds an IP packet for `role`'s port until its next hop's MAC is
    /// known ([`NEIGHBOUR_WAIT`] at most); `punted`: the kernel sent it.
    fn wait(&mut self, role: Role, buf: Packet, punted: bool) {
        let hop = Selectors::of(buf.data()).and_then(|sel| self.next_hop(role, sel.dst));
        let Some(hop) = hop.filter(|h| self.waiting.get(h).copied() < Some(WAITING_PER_HOP)) else {
            return self.drop_frame(buf, NodeDrop::ArpMiss);
        };
        let waiting = Waiting { hop, buf, punted };
        match self.unresolved.hold(Instant::now(), role, waiting) {
            Ok(()) => *self.waiting.entry(hop).or_default() += 1,
            Err(w) => self.drop_frame(w.buf, NodeDrop::ArpMiss),
        }
    }

    /// One packet waits no more for `hop`.
    fn unwait(&mut self, hop: IpAddr) {
        if let Some(n) = self.waiting.get_mut(&hop) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&hop);
            }
        }
    }

    /// The next hop towards `dst` on `role`'s port: `dst` itself when
    /// on-link, else the port's gateway (none: no route).
    #[inline(always)]
    fn next_hop(&self, role: Role, dst: IpAddr) -> Option<IpAddr> {
        let port = &self.ports[role];
        if port.subnet.contains(&dst) {
            Some(dst)
        } else {
            port.gateway
        }
    }

    /// Tries the held frames again once an SA started here, and drops
    /// those that waited [`START_WAIT`] in vain. Returns how many it tried.
    fn poll_held(&mut self, moved: bool) -> usize {
        if self.held.is_empty() {
            return 0;
        }
        let mut tried = 0;
        if moved {
            for (since, role, mut buf) in self.held.take() {
                tried += 1;
                match self.process(role, &mut buf, true) {
                    Verdict::Hold(_) => {
                        if let Err(buf) = self.held.hold(since, role, buf) {
                            self.drop_frame(buf, NodeDrop::Parked);
                        }
                    }
                    v => self.dispose(buf, v),
                }
            }
        }
        for buf in self.held.expire(Instant::now()) {
            self.drop_frame(buf, NodeDrop::Parked);
        }
        tried
    }

    /// Does with a frame what its verdict says.
    #[inline(always)]
    fn dispose(&mut self, buf: Packet, verdict: Verdict) {
        match verdict {
            Verdict::Send(role) => self.ports[role].tx.push(buf),
            Verdict::Drop(why) => self.drop_frame(buf, why),
            Verdict::HandOff(owner, from) => self.hand_off(usize::from(owner), from, buf),
            Verdict::Done => self.pool.recycle(buf),
            Verdict::Hold(role) => match self.held.hold(Instant::now(), role, buf) {
                Ok(()) => self.counters.held += 1,
                Err(buf) => self.drop_frame(buf, NodeDrop::Parked),
            },
            Verdict::Wait(role) => self.wait(role, buf, false),
        }
    }

    /// One frame from `role`'s port (or from another worker, `fresh` false).
    /// The frame stays where it is while it is worked on; it moves once, to
    /// where its verdict sends it.
    fn handle(&mut self, role: Role, mut buf: Packet, fresh: bool) {
        let verdict = self.process(role, &mut buf, fresh);
        self.dispose(buf, verdict);
    }

    /// Reads the Ethernet header in place (the frame view, no copy of it)
    /// and goes on by EtherType.
    #[inline(always)]
    fn process(&mut self, role: Role, buf: &mut Packet, fresh: bool) -> Verdict {
        let port = &self.ports[role];
        let Ok(f) = EthernetFrame::new_checked(buf.data()) else {
            return Verdict::Drop(NodeDrop::BadFrame);
        };
        let ethertype = f.ethertype();
        // What EthernetRepr::parse refuses: a second tag, a length field.
        if ethertype == EtherType::VLAN || ethertype.0 < 0x0600 {
            return Verdict::Drop(NodeDrop::BadFrame);
        }
        let dst = f.dst();
        if dst != port.mac && !dst.is_multicast() {
            return Verdict::Drop(NodeDrop::NotForUs);
        }
        let (sender, hdr_len) = (f.src(), f.header_len());
        match ethertype {
            EtherType::ARP => self.arp(role, buf, hdr_len),
            EtherType::IPV4 | EtherType::IPV6 => match role {
                Role::Protected => self.on_protected(sender, hdr_len, buf, fresh),
                Role::Unprotected => self.on_unprotected(sender, hdr_len, buf, fresh),
            },
            _ => Verdict::Drop(NodeDrop::UnsupportedEthertype),
        }
    }

    fn arp(&mut self, role: Role, buf: &mut Packet, hdr_len: usize) -> Verdict {
        let port = &self.ports[role];
        if !port.address.is_ipv4() {
            return Verdict::Drop(NodeDrop::UnsupportedEthertype);
        }
        match handle_arp(
            &buf.data()[hdr_len..],
            &self.addresses[role],
            port.mac,
            &self.shared.neighbours,
        ) {
            Some(ArpOutcome::Reply(reply)) => {
                write_arp(buf, &reply, port.mac);
                self.counters.arp_replies += 1;
                Verdict::Send(role)
            }
            Some(ArpOutcome::Nothing) => Verdict::Done,
            None => Verdict::Drop(NodeDrop::BadFrame),
        }
    }

    #[inline(always)]
    fn on_protected(
        &mut self,
        sender: MacAddr,
        hdr_len: usize,
        buf: &mut Packet,
        fresh: bool,
    ) -> Verdict {
        let Some(sel) = Selectors::of(&buf.data()[hdr_len..]) else {
            return Verdict::Drop(NodeDrop::BadIp);
        };
        if self.addresses[Role::Protected].contains(&sel.dst) {
            return self.punt(&buf.data()[hdr_len..], NodeDrop::Local);
        }
        match self.tables.spd.lookup(Direction::Outbound, &sel) {
            Action::Protect(spi) => {
                match self.claim(spi, Direction::Outbound, Role::Protected, fresh) {
                    Claim::Here => {}
                    Claim::Elsewhere(v) => return v,
                    Claim::Parked => return self.on_parked(Role::Protected, sender, buf),
                }
                buf.adj(hdr_len).expect("header present");
                self.encrypt(spi, sender, buf)
            }
            Action::Bypass => {
                buf.adj(hdr_len).expect("header present");
                self.counters.bypassed += 1;
                self.forward(Role::Unprotected, sel.dst, buf)
            }
            Action::Discard => Verdict::Drop(NodeDrop::Policy),
            Action::Trap => {
                self.acquire(&sel);
                Verdict::Drop(NodeDrop::Trap)
            }
        }
    }

    /// A packet matched a trap rule: tells the node (and through it the
    /// IKE daemon) once per rule and [`ACQUIRE_EVERY`] from this worker.
    fn acquire(&mut self, sel: &Selectors) {
        let now = Instant::now();
        let Some(rule) = self
            .tables
            .spd
            .rule_for(Direction::Outbound, sel)
            .map(|r| (r.src, r.dst, r.protocol, r.sport, r.dport))
        else {
            return;
        };
        if let Some(at) = self.acquired.get(&rule)
            && now.duration_since(*at) < ACQUIRE_EVERY
        {
            return;
        }
        if self.acquired.len() >= MAX_ACQUIRING {
            self.acquired
                .retain(|_, at| now.duration_since(*at) < ACQUIRE_EVERY);
        }
        self.acquired.insert(rule, now);
        if let Some(ring) = self.shared.sa_events.get(self.id) {
            let _ = ring.push(NodeEventKind::Acquire {
                src: sel.src,
                dst: sel.dst,
                protocol: sel.protocol,
                sport: sel.sport,
                dport: sel.dport,
            });
        }
    }

    fn on_unprotected(
        &mut self,
        sender: MacAddr,
        hdr_len: usize,
        buf: &mut Packet,
        fresh: bool,
    ) -> Verdict {
        if let Some(spi) = esp_spi(
            &buf.data()[hdr_len..],
            &self.addresses[Role::Unprotected],
            &self.tables.encap_ports,
        ) {
            match self.claim(spi, Direction::Inbound, Role::Unprotected, fresh) {
                Claim::Here => {}
                Claim::Elsewhere(v) => return v,
                Claim::Parked => return self.on_parked(Role::Unprotected, sender, buf),
            }
            buf.adj(hdr_len).expect("header present");
            return self.decrypt(spi, buf);
        }
        let Some(sel) = Selectors::of(&buf.data()[hdr_len..]) else {
            return Verdict::Drop(NodeDrop::BadIp);
        };
        if self.addresses[Role::Unprotected].contains(&sel.dst) {
            // IKE (on 500, or on an ESP-in-UDP port behind the non-ESP
            // marker), NAT keepalives, ICMP echo and the rest.
            let why = if sel.protocol == ip::protocol::UDP {
                NodeDrop::Ike
            } else {
                NodeDrop::Local
            };
            return self.punt(&buf.data()[hdr_len..], why);
        }
        match self.tables.spd.lookup(Direction::Inbound, &sel) {
            Action::Bypass => {
                buf.adj(hdr_len).expect("header present");
                self.counters.bypassed += 1;
                self.forward(Role::Protected, sel.dst, buf)
            }
            _ => Verdict::Drop(NodeDrop::Policy),
        }
    }

    /// A packet for one of the node's own addresses that the node does not
    /// answer itself (`ip`: the frame from its IP header on, which the
    /// caller parsed): its IP packet goes to the kernel through the punt
    /// device. Dropped for `why` when the node has none, and when it is
    /// neighbour discovery, which stays with the node.
    fn punt(&mut self, ip: &[u8], why: NodeDrop) -> Verdict {
        let Some(device) = &self.punt else {
            return Verdict::Drop(why);
        };
        if punt::is_neighbour_discovery(ip) {
            return Verdict::Drop(why);
        }
        // Parsed already, so never cut short: only the padding goes.
        let ip = punt::ip_packet(ip).unwrap_or(ip);
        match device.send(ip) {
            Ok(()) => {
                self.counters.punted += 1;
                Verdict::Done
            }
            Err(e) => Verdict::Drop(punt::refusal(&e)),
        }
    }

    /// Encrypts an inner IP packet (Ethernet header stripped) with SA `spi`
    /// and sends it towards the tunnel's far end. `sender` is the MAC the
    /// packet came from, for an ICMP error and to put its Ethernet header
    /// back on when the SA is at its limit (the packet is then held,
    /// untouched, until the limit rises).
    #[inline(always)]
    fn encrypt(&mut self, spi: u32, sender: MacAddr, buf: &mut Packet) -> Verdict {
        let (dst, room) = match self.last_sa {
            Some((s, dst, room)) if s == spi => (dst, room),
            _ => {
                let Some(sa) = self.outbound.get(&spi) else {
                    return Verdict::Drop(NodeDrop::Policy);
                };
                let mtu = self.ports[Role::Unprotected].mtu;
                let room = mtu.saturating_sub(sa.header_len() + sa.max_trailer_len());
                self.last_sa = Some((spi, sa.tunnel().dst, room));
                (sa.tunnel().dst, room)
            }
        };
        if buf.len() > room {
            self.too_big(buf, sender, room);
            return Verdict::Drop(NodeDrop::TooBig);
        }
        // A packet with no route spends no sequence number; one whose next
        // hop's MAC is not known yet does, and waits for ARP's answer.
        let Some(hop) = self.next_hop(Role::Unprotected, dst) else {
            return Verdict::Drop(NodeDrop::NoRoute);
        };
        let mac = self.resolve(Role::Unprotected, hop);
        let Some(sa) = self.outbound.get_mut(&spi) else {
            return Verdict::Drop(NodeDrop::Policy);
        };
        if sa.at_limit() {
            // Reported at its first packet, so the limit moves as soon as
            // it can (see `report_outbound`).
            if sa.stalls() % STALL_REPORT_EVERY == 1 {
                self.report_outbound(spi, false);
            }
            let own = self.ports[Role::Protected].mac;
            return match restore_ethernet(buf, own, sender) {
                Ok(()) => self.hold_at_limit(Limited::Outbound(spi), buf),
                Err(why) => Verdict::Drop(why),
            };
        }
        if !decrement_ttl(buf.data_mut()) {
            return Verdict::Drop(NodeDrop::TtlExceeded);
        }
        let sealed = sa.encapsulate(buf);
        tell(
            &mut self.counters,
            &self.shared,
            self.id,
            Direction::Outbound,
            || sa.poll_event().map(|e| (spi, e)),
        );
        match sealed {
            Ok(_) => {
                if sa.report_due() {
                    self.report_outbound(spi, true);
                }
            }
            Err(_) => return Verdict::Drop(NodeDrop::Esp),
        }
        self.counters.encrypted += 1;
        self.send_to_hop(Role::Unprotected, hop, mac, buf)
    }

    /// Answers a packet too big for the tunnel with ICMP "packet too big"
    /// (or "fragmentation needed") to `sender`, advertising `room`.
    #[cold]
    fn too_big(&mut self, buf: &Packet, sender: MacAddr, room: usize) {
        let from = self.ports[Role::Protected].address;
        if let Some(err) = icmp::too_big(buf.data(), from, room & !3) {
            let mut reply = Packet::from(self.pool.get());
            if let Ok(dst) = reply.append(err.len()) {
                dst.copy_from_slice(&err);
                self.counters.icmp_errors += 1;
                let v = self.send(Role::Protected, sender, &mut reply);
                self.dispose(reply, v);
            } else {
                self.pool.recycle(reply);
            }
        }
    }

    /// Decrypts an outer IP packet (Ethernet header stripped) for SA `spi`
    /// and sends the inner packet into the protected network if the policy
    /// allows it.
    fn decrypt(&mut self, spi: u32, buf: &mut Packet) -> Verdict {
        let opened = self.sad.decapsulate_holding(buf);
        tell(
            &mut self.counters,
            &self.shared,
            self.id,
            Direction::Inbound,
            || self.sad.poll_event(),
        );
        match opened {
            Ok(Opened::Inbound(Inbound::Decapsulated { .. })) => self.deliver(spi, buf),
            // What `esp_spi` took for ESP but whose UDP length says IKE
            // or a keepalive: as in `on_unprotected`.
            Ok(Opened::Inbound(Inbound::Ike | Inbound::NatKeepalive)) => {
                self.punt(buf.data(), NodeDrop::Ike)
            }
            Ok(Opened::AtLimit(held)) => {
                self.report_inbound_stall(spi);
                self.hold_at_limit(Limited::Inbound(held), buf)
            }
            Err(_) => Verdict::Drop(NodeDrop::Esp),
        }
    }

    /// Sends on the inner packet an inbound SA accepted, if the policy
    /// allows it.
    fn deliver(&mut self, spi: u32, buf: &mut Packet) -> Verdict {
        self.report_inbound(spi);
        let sel = Selectors::of(buf.data()).filter(|sel| self.tables.admits(spi, sel));
        let Some(sel) = sel else {
            return Verdict::Drop(NodeDrop::PolicyMismatch);
        };
        self.counters.decrypted += 1;
        self.forward(Role::Protected, sel.dst, buf)
    }

    /// Pushes an outbound SA's state to the mirror task; `crossed`: at an
    /// interval crossing (marked reported once taken), else at a stall.
    fn report_outbound(&mut self, spi: u32, crossed: bool) {
        let (Some(r), Some(sa)) = (&self.report, self.outbound.get_mut(&spi)) else {
            return;
        };
        let c = sa.counters();
        let p = Progress::Outbound {
            spi,
            seq: sa.seq(),
            bytes: c.bytes,
            packets: c.packets,
        };
        if r.ring.push(p).is_ok() {
            if crossed {
                sa.mark_reported();
            }
            self.counters.progress += 1;
        } else {
            self.counters.progress_full += 1;
        }
    }

    /// Reports an inbound SA whose window top crossed the mirror's interval.
    fn report_inbound(&mut self, spi: u32) {
        let Some(r) = &self.report else { return };
        let Some(sa) = self.sad.get_mut(spi) else {
            return;
        };
        if !sa.report_due() {
            return;
        }
        let c = sa.counters();
        let p = Progress::Inbound {
            spi,
            top: sa.window().top(),
            bitmap: sa.window().export(),
            bytes: c.bytes,
            packets: c.packets,
        };
        if r.ring.push(p).is_ok() {
            sa.mark_reported();
            self.counters.progress += 1;
        } else {
            self.counters.progress_full += 1;
        }
    }

    /// Reports the final state of an SA parked for an exact hand-over:
    /// nothing is used or accepted on it here after this.
    fn report_stopped(&mut self, spi: u32, direction: Direction, stamp: u64) {
        let Some(r) = &self.report else { return };
        let last = match direction {
            Direction::Outbound => self.outbound.get(&spi).map(|sa| sa.seq()),
            Direction::Inbound => self.sad.get(spi).map(|sa| sa.window().top()),
        };
        let Some(last) = last else { return };
        let p = Progress::Stopped {
            spi,
            direction,
            last,
            stamp,
        };
        if r.ring.push(p).is_ok() {
            self.counters.progress += 1;
        } else {
            self.counters.progress_full += 1;
        }
    }

    /// Reports how far the far end of an inbound SA stalled at its lease
    /// or mark went, on the first packet refused since its limit last
    /// moved and then every `STALL_REPORT_EVERY`.
    fn report_inbound_stall(&mut self, spi: u32) {
        let (Some(r), Some(sa)) = (&self.report, self.sad.get(spi)) else {
            return;
        };
        if sa.stalls() % STALL_REPORT_EVERY != 1 {
            return;
        }
        let p = Progress::InboundStall {
            spi,
            seq: sa.wanted(),
        };
        if r.ring.push(p).is_ok() {
            self.counters.progress += 1;
        } else {
            self.counters.progress_full += 1;
        }
    }

    /// Forwards a plaintext IP packet to `dst` out of `role`'s port (the
    /// caller has parsed the packet already).
    fn forward(&mut self, role: Role, dst: IpAddr, buf: &mut Packet) -> Verdict {
        if !decrement_ttl(buf.data_mut()) {
            return Verdict::Drop(NodeDrop::TtlExceeded);
        }
        self.route(role, dst, buf)
    }

    /// Sends an IP packet to `dst` via `role`'s port: on-link or through
    /// the gateway, to the next hop's MAC.
    fn route(&mut self, role: Role, dst: IpAddr, buf: &mut Packet) -> Verdict {
        let Some(hop) = self.next_hop(role, dst) else {
            return Verdict::Drop(NodeDrop::NoRoute);
        };
        let mac = self.resolve(role, hop);
        self.send_to_hop(role, hop, mac, buf)
    }

    /// Sends an IP packet to next hop `hop` on `role`'s port, whose MAC
    /// [`resolve`](Self::resolve) found (or not: the packet waits for
    /// ARP's answer, as it does behind packets already waiting for `hop`).
    #[inline(always)]
    fn send_to_hop(
        &mut self,
        role: Role,
        hop: IpAddr,
        mac: Option<MacAddr>,
        buf: &mut Packet,
    ) -> Verdict {
        match mac {
            Some(_) if !self.waiting.is_empty() && self.waiting.contains_key(&hop) => {
                Verdict::Wait(role)
            }
            Some(mac) => self.send(role, mac, buf),
            // ARP is asked; no NDP is (IPv6 next hops are configured).
            None if hop.is_ipv4() => Verdict::Wait(role),
            None => Verdict::Drop(NodeDrop::ArpMiss),
        }
    }

    /// The MAC of next hop `next_hop` on `role`'s port (see
    /// [`next_hop`](Self::next_hop)). When unknown, asks ARP
    /// (rate-limited) and answers `None`.
    #[inline(always)]
    fn resolve(&mut self, role: Role, next_hop: IpAddr) -> Option<MacAddr> {
        let generation = self.shared.neighbours.generation();
        if generation != self.neigh_generation {
            self.neigh_cache.clear();
            self.last_hop = None;
            self.neigh_generation = generation;
        }
        if let Some((ip, mac)) = self.last_hop
            && ip == next_hop
        {
            return Some(mac);
        }
        if let Some(mac) = self.neigh_cache.get(&next_hop) {
            self.last_hop = Some((next_hop, *mac));
            return Some(*mac);
        }
        let mac = self.shared.neighbours.lookup(&next_hop);
        match mac {
            Some(m) => {
                self.neigh_cache.insert(next_hop, m);
                self.last_hop = Some((next_hop, m));
            }
            None => self.ask_arp(role, next_hop, Asking::FromThePort),
        }
        mac
    }

    /// Puts an Ethernet header on an IP packet for `role`'s port.
    #[inline(always)]
    fn send(&mut self, role: Role, dst: MacAddr, buf: &mut Packet) -> Verdict {
        let port = &self.ports[role];
        let ethertype = if ip::version_of(buf.data()) == Some(6) {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        };
        let eth = EthernetRepr {
            dst,
            src: port.mac,
            vlan: None,
            ethertype,
        };
        match buf.prepend(eth.header_len()) {
            Ok(h) => {
                eth.emit(h).expect("room for the header");
                Verdict::Send(role)
            }
            Err(_) => Verdict::Drop(NodeDrop::BadFrame),
        }
    }

    /// Asks ARP for `target`'s MAC on `role`'s port, once in
    /// [`ARP_RETRY`] per target.
    fn ask_arp(&mut self, role: Role, target: IpAddr, asking: Asking) {
        let now = Instant::now();
        if self
            .arp_asked
            .get(&target)
            .is_some_and(|t| now.duration_since(*t) < ARP_RETRY)
        {
            return;
        }
        let port = &self.ports[role];
        let (IpAddr::V4(own), IpAddr::V4(t)) = (port.address, target) else {
            return;
        };
        self.arp_asked.insert(target, now);
        let req = match asking {
            Asking::FromThePort => request(own, port.mac, t),
            Asking::Anonymously => probe(port.mac, t),
        };
        let mac = port.mac;
        let mut buf = Packet::from(self.pool.get());
        write_arp(&mut buf, &req, mac);
        self.counters.arp_requests += 1;
        self.ports[role].tx.push(buf);
    }
}

/// Counts each event `next` gives (an SA's SPI, of `direction`, and what
/// it told) and hands it to the node's event log through worker `id`'s
/// ring (a full ring loses the event, not the count). Inlined: on the hot
/// path `next` finds nothing.
#[inline]
fn tell(
    counters: &mut WorkerCounters,
    shared: &Shared,
    id: usize,
    direction: Direction,
    mut next: impl FnMut() -> Option<(u32, SaEvent)>,
) {
    while let Some((spi, event)) = next() {
        counters.sa_event(event);
        if let Some(ring) = shared.sa_events.get(id) {
            let _ = ring.push(NodeEventKind::Sa {
                spi,
                direction,
                event,
            });
        }
    }
}
