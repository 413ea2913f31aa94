//! Breadth-first exploration of the mirror protocol: two real [`Mirror`]
//! nodes, a model of their workers, the mirror link between them and the
//! far ends of their SAs, driven through every interleaving of a chosen
//! alphabet of actions up to a depth. States are told apart by a
//! fingerprint ([`Mirror::fingerprint`] and the rest of the world), so
//! each is expanded once. After every step four properties are checked:
//!
//! 1. no outbound (SPI, sequence number) is used twice, across both nodes
//!    and all their lives;
//! 2. no inbound packet is accepted twice across the pair and its lives
//!    (an attacker replays every packet the far end ever sent, to either
//!    node);
//! 3. with both nodes alive and the link whole, once the pair is left
//!    alone long enough, no SA configured on both has two owners: both
//!    views name the same one, and at most one worker runs it;
//! 4. and none is left with no owner: the one the views name owns it, its
//!    worker runs it and may use (or accept) a fresh number.
//!
//! A violation comes with the shortest trace that leads to it (the search
//! is breadth-first), replayed step by step with the frames and the state
//! of both nodes.
//!
//! **The world.** Node A (id 1) and B (id 2), each a `Mirror` and its
//! workers' SAs as the node drives them, or dead. Every mirrored SA is
//! built at limit 0 (running if at home, else parked), as `build_sa` does;
//! then, as the node's mirror task does, `LimitRaised` sets a limit,
//! `Activate` restarts an SA at its start (never backwards: an outbound
//! SA's next number, an inbound SA's window top) and sets the limit
//! `Mirror::limit_of` gives, `Deactivate` parks it. An outbound worker
//! uses numbers below its limit and reports at interval crossings and when
//! it reaches the limit; an inbound worker accepts a packet its replay
//! window lets through if it is below the limit, reports the first packet
//! refused at the limit (and every 64th), and reports at crossings of half
//! the interval. Progress reaches the mirror at once (the ring is not
//! modelled). The frames in flight each way (at most [`Caps::DEFAULT`],
//! more are lost); the newest frames each node sent, in any of its lives,
//! for replay; the clock; every outbound number used and inbound packet
//! accepted. The SAs: `outA` (home A), `outB` (home B), `inA` (inbound,
//! home A), and `newA` (home A), which only the host adds at run time,
//! alone or as the rekey of `outA`. Periods and amounts are tiny (interval
//! 2, quantity 4, jump 8, heartbeat 1 ms, death after 1 missed, refresh
//! 2 ms) so a few steps reach deaths, refreshes, stalls and jumps.
//!
//! **The roots.** A warm pair: both synchronised over a perfect link,
//! every home SA free to send, the bulk sync's frames in the archive. A
//! busy pair: the warm one after three rounds of traffic on every home SA,
//! acknowledged, so that their numbers lie past what a restart's jumps
//! alone skip. A pair halfway through a rekey: `newA` added to A and
//! running, not yet to B. A node reacts to every input as its mirror task does: events to the
//! workers, then every frame due goes out. A node may be killed only while
//! its peer lives; killing one whose peer has not synchronised loses the
//! pair's memory of the SAs (they would need new keys, which the model
//! does not do), and nothing restarts after that. A fence is the host's:
//! only once the peer is powered off (dead here) does it call
//! `force_unleased`, which may refuse (the peer still heard, or the node
//! not synchronised) and then changes nothing.
//!
//! **Why not `stateright`:** its `Model` wants states with `Eq` and
//! `Debug` (a `Mirror` has neither, and its equality would have to be the
//! fingerprint's anyway), its checker runs threads on a machine whose two
//! cores are shared, and the properties here are effects of transitions (a
//! number used again) that the world records itself. A BFS of a hundred
//! lines keeps only the frontier in memory (and rebuilds states from their
//! traces past [`KEEP`]), goes on past violations (each check's shortest
//! is the first found), and prints its trace with the frames it carried.
//!
//! Every test prints the states it explored and the depth it reached
//! (`--nocapture`), and for each property broken the depth and the states
//! explored when its shortest violation was found. The bounds of the tests
//! keep the file near 70 s of CPU in a debug build. `EXPLORE_DEPTH` and
//! `EXPLORE_STATES` replace the depth and the state cap of every test; a
//! release build runs some 15 times faster: `EXPLORE_DEPTH=7
//! EXPLORE_STATES=3000000 cargo test --release -p espgate-mirror --test
//! explore -- --nocapture --include-ignored --test-threads 2`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use espgate_esp::replay::ReplayWindow;
use espgate_mirror::{FenceRefused, InboundTakeover, Mirror, MirrorConfig, MirrorEvent, MirrorKey};
use espgate_wire::Direction;
use espgate_wire::mirror::{MirrorRecord, OwnershipKind, parse_records};

/// Node ids; node `i` of the world has id `i + 1`.
const IDS: [u32; 2] = [1, 2];
/// Node names in traces.
const NAMES: [&str; 2] = ["A", "B"];
/// Outbound state is due at multiples of this; inbound too.
const INTERVAL: u64 = 2;
/// An inbound worker reports at multiples of this (half the interval, as
/// `build_sa` sets it).
const INBOUND_EVERY: u64 = if INTERVAL / 2 > 0 { INTERVAL / 2 } else { 1 };
/// Lease = sequence number + this.
const QUANTITY: u64 = 4;
/// Takeover jump (ESN and 32-bit SAs alike).
const JUMP: u64 = 8;
/// Refresh period, in ticks.
const REFRESH: u64 = 2;
/// Replay window of the workers' inbound SAs.
const WINDOW: u32 = 32;
/// Numbers an outbound worker sends in a long burst at most (an unleased
/// SA has no limit).
const LONG_BURST: u64 = 2 * JUMP;
/// Packets a far end sends in a long burst: past two reporting multiples.
const FAR_BURST: u64 = 2 * INTERVAL + 1;
/// A worker reports a stalled inbound SA at its first refused packet and
/// then every this many (as `espgate_dataplane`'s worker does).
const STALL_REPORT_EVERY: u64 = 64;
/// Ticks the ownership check leaves the pair alone before it looks:
/// three refreshes, the longest chain a whole link needs (an SA added
/// again asks and takes in the peer's view; the split-brain loser's final
/// goes again at a refresh; the winner's `past` lets the loser
/// acknowledge again).
const SETTLE_TICKS: u64 = 3 * REFRESH + 1;

/// The mirror configuration of node `i`: every period and amount tiny, so
/// that deaths, refreshes, leases and jumps happen within a few steps.
fn config(i: usize) -> MirrorConfig {
    MirrorConfig {
        node: IDS[i],
        peer: IDS[1 - i],
        interval: INTERVAL,
        quantity: QUANTITY,
        lease: true,
        takeover_jump: JUMP,
        takeover_jump_32: JUMP,
        inbound_interval: INTERVAL,
        inbound_takeover: InboundTakeover::Strict,
        heartbeat_ms: 1,
        dead_after: 1,
        refresh_ms: REFRESH,
        max_frame: 1400,
    }
}

fn key() -> MirrorKey {
    MirrorKey::new(b"explore the mirror, 32 bytes....").expect("long enough")
}

/// An SA the host may configure on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sa {
    name: &'static str,
    spi: u32,
    dir: Direction,
    /// Index of its home node.
    home: usize,
}

const OUT_A: Sa = Sa {
    name: "outA",
    spi: 0x100,
    dir: Direction::Outbound,
    home: 0,
};
const OUT_B: Sa = Sa {
    name: "outB",
    spi: 0x200,
    dir: Direction::Outbound,
    home: 1,
};
const IN_A: Sa = Sa {
    name: "inA",
    spi: 0x300,
    dir: Direction::Inbound,
    home: 0,
};
/// The SA a rekey of `OUT_A` brings (added at run time only).
const NEW_A: Sa = Sa {
    name: "newA",
    spi: 0x101,
    dir: Direction::Outbound,
    home: 0,
};
/// What a node is configured with when it starts.
const BOOT: [Sa; 3] = [OUT_A, OUT_B, IN_A];
/// Every SA the host may add or remove.
const CATALOGUE: [Sa; 4] = [OUT_A, OUT_B, IN_A, NEW_A];

impl fmt::Display for Sa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn sa_named(spi: u32, dir: Direction) -> String {
    CATALOGUE
        .iter()
        .find(|s| s.spi == spi && s.dir == dir)
        .map_or_else(|| format!("{spi:#x}"), |s| s.name.to_string())
}

/// A family of actions, switched on or off as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    /// A frame in flight arrives (any of them: reordering).
    Deliver,
    /// A frame in flight is lost.
    Drop,
    /// A frame in flight is duplicated.
    Duplicate,
    /// An attacker sends an archived frame (of any life) to its receiver
    /// again (not to its sender: a node refuses its own frames before
    /// anything else).
    Replay,
    /// One millisecond passes: timeouts, heartbeats, refreshes.
    Tick,
    /// The mirror link is cut or heals (with both nodes alive: a split
    /// brain once each declares the other dead).
    Partition,
    /// A node dies.
    Kill,
    /// A dead node starts again with its memory lost.
    Restart,
    /// A node takes over the SAs its peer owns.
    TakeOver,
    /// A node hands its peer's SAs back.
    HandBack,
    /// The host fences a node whose peer is powered off.
    Fence,
    /// The host adds an SA to one node.
    AddSa,
    /// The host removes an SA from one node.
    RemoveSa,
    /// The host replaces `OUT_A` by `NEW_A` on one node.
    Rekey,
    /// A worker sends on an outbound SA it runs, up to its limit.
    Send,
    /// The far end of an inbound SA sends fresh packets to a node.
    FarEnd,
    /// An attacker replays to a node every packet the far end ever sent.
    Attack,
}

impl Family {
    const ALL: [Family; 17] = [
        Family::Deliver,
        Family::Drop,
        Family::Duplicate,
        Family::Replay,
        Family::Tick,
        Family::Partition,
        Family::Kill,
        Family::Restart,
        Family::TakeOver,
        Family::HandBack,
        Family::Fence,
        Family::AddSa,
        Family::RemoveSa,
        Family::Rekey,
        Family::Send,
        Family::FarEnd,
        Family::Attack,
    ];
}

/// A set of action families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Alphabet(u32);

impl Alphabet {
    fn of(families: &[Family]) -> Self {
        Alphabet(families.iter().fold(0, |m, f| m | 1 << *f as u32))
    }

    fn has(self, f: Family) -> bool {
        self.0 & 1 << f as u32 != 0
    }
}

/// How many numbers or packets a burst sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    /// One.
    One,
    /// Up to the limit ([`LONG_BURST`] at most), or [`FAR_BURST`] packets.
    Long,
}

/// One step of the world. Nodes are indices: 0 is A, 1 is B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Deliver { from: usize, index: usize },
    Drop { from: usize, index: usize },
    Duplicate { from: usize, index: usize },
    Replay { from: usize, index: usize },
    Tick,
    Cut,
    Heal,
    Kill(usize),
    Restart(usize),
    TakeOver(usize),
    HandBack(usize),
    Fence(usize),
    AddSa(usize, Sa),
    RemoveSa(usize, Sa),
    Rekey(usize),
    Send(usize, Sa, Burst),
    FarSend(usize, Sa, Burst),
    Attack(usize),
}

impl Action {
    fn family(self) -> Family {
        match self {
            Action::Deliver { .. } => Family::Deliver,
            Action::Drop { .. } => Family::Drop,
            Action::Duplicate { .. } => Family::Duplicate,
            Action::Replay { .. } => Family::Replay,
            Action::Tick => Family::Tick,
            Action::Cut | Action::Heal => Family::Partition,
            Action::Kill(_) => Family::Kill,
            Action::Restart(_) => Family::Restart,
            Action::TakeOver(_) => Family::TakeOver,
            Action::HandBack(_) => Family::HandBack,
            Action::Fence(_) => Family::Fence,
            Action::AddSa(..) => Family::AddSa,
            Action::RemoveSa(..) => Family::RemoveSa,
            Action::Rekey(_) => Family::Rekey,
            Action::Send(..) => Family::Send,
            Action::FarSend(..) => Family::FarEnd,
            Action::Attack(_) => Family::Attack,
        }
    }

    /// The in-flight or archived frame the action carries, if any.
    fn frame(self, w: &World) -> Option<&[u8]> {
        match self {
            Action::Deliver { from, index }
            | Action::Drop { from, index }
            | Action::Duplicate { from, index } => Some(&w.link[from][index].bytes),
            Action::Replay { from, index } => Some(&w.archive[from][index].bytes),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = |from: usize| format!("{}→{}", NAMES[from], NAMES[1 - from]);
        match *self {
            Action::Deliver { from, index } => write!(f, "deliver {} #{index}", way(from)),
            Action::Drop { from, index } => write!(f, "drop {} #{index}", way(from)),
            Action::Duplicate { from, index } => write!(f, "duplicate {} #{index}", way(from)),
            Action::Replay { from, index } => write!(f, "replay archived {} #{index}", way(from)),
            Action::Tick => f.write_str("tick"),
            Action::Cut => f.write_str("cut the link"),
            Action::Heal => f.write_str("heal the link"),
            Action::Kill(i) => write!(f, "kill {}", NAMES[i]),
            Action::Restart(i) => write!(f, "restart {}", NAMES[i]),
            Action::TakeOver(i) => write!(f, "{} take_over", NAMES[i]),
            Action::HandBack(i) => write!(f, "{} hand_back", NAMES[i]),
            Action::Fence(i) => write!(f, "{} force_unleased", NAMES[i]),
            Action::AddSa(i, sa) => write!(f, "{} add_sa {sa}", NAMES[i]),
            Action::RemoveSa(i, sa) => write!(f, "{} remove_sa {sa}", NAMES[i]),
            Action::Rekey(i) => write!(f, "{} rekey {OUT_A} → {NEW_A}", NAMES[i]),
            Action::Send(i, sa, b) => write!(f, "{} sends on {sa} ({b:?})", NAMES[i]),
            Action::FarSend(i, sa, b) => write!(f, "far end of {sa} sends to {} ({b:?})", NAMES[i]),
            Action::Attack(i) => write!(f, "attacker replays every inbound packet to {}", NAMES[i]),
        }
    }
}

/// A worker's outbound SA, as `espgate_esp::OutboundSa` and the node keep
/// it.
#[derive(Debug, Clone, Hash)]
struct OutWorker {
    /// The next sequence number; a restart only moves it forward.
    next: u64,
    /// The first number it must not use.
    limit: u64,
    /// Running here (not parked).
    active: bool,
    /// The last number reported at an interval crossing.
    reported: u64,
}

/// A worker's inbound SA, as `espgate_esp::InboundSa` and the node keep
/// it.
#[derive(Debug, Clone)]
struct InWorker {
    window: ReplayWindow,
    /// The first number it must not accept.
    limit: u64,
    active: bool,
    /// The window top last reported.
    reported: u64,
    /// The highest authentic number refused at the limit (0: none).
    wanted: u64,
    /// Packets refused at the limit since it last moved.
    stalls: u64,
}

impl InWorker {
    /// A limit that moves starts a new stall (its first refused packet is
    /// reported), as in the ESP core.
    fn set_limit(&mut self, limit: u64) {
        if limit != self.limit {
            self.stalls = 0;
        }
        self.limit = limit;
    }
}

impl Hash for InWorker {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.window.top(), self.window.export()).hash(state);
        (self.limit, self.active, self.reported).hash(state);
        (self.wanted, self.stalls).hash(state);
    }
}

/// A running node: its mirror, and its workers' SAs (one for each SA
/// configured on the node, running or parked).
#[derive(Clone)]
struct Life {
    mirror: Mirror,
    out: BTreeMap<u32, OutWorker>,
    inb: BTreeMap<u32, InWorker>,
}

impl Life {
    /// Node `i` started at `now` in `epoch` with the boot configuration.
    fn boot(i: usize, epoch: u64, now: u64) -> Life {
        let mut life = Life {
            mirror: Mirror::new(config(i), key(), epoch, now),
            out: BTreeMap::new(),
            inb: BTreeMap::new(),
        };
        for sa in BOOT {
            life.install(i, sa);
        }
        life
    }

    fn configured(&self, sa: Sa) -> bool {
        match sa.dir {
            Direction::Outbound => self.out.contains_key(&sa.spi),
            Direction::Inbound => self.inb.contains_key(&sa.spi),
        }
    }

    /// The host adds `sa` to node `i`: its worker gets it at limit 0
    /// (running if at home, else parked), the mirror registers it, and the
    /// worker gets the limit the mirror gives it.
    fn install(&mut self, i: usize, sa: Sa) {
        let active = sa.home == i;
        match sa.dir {
            Direction::Outbound => {
                let w = OutWorker {
                    next: 1,
                    limit: 0,
                    active,
                    reported: 0,
                };
                self.out.insert(sa.spi, w);
            }
            Direction::Inbound => {
                let w = InWorker {
                    window: ReplayWindow::new(WINDOW, 0),
                    limit: 0,
                    active,
                    reported: 0,
                    wanted: 0,
                    stalls: 0,
                };
                self.inb.insert(sa.spi, w);
            }
        }
        self.mirror.add_sa(sa.spi, sa.dir, false, IDS[sa.home]);
        if let Some(limit) = self.mirror.limit_of(sa.spi, sa.dir) {
            self.set_limit(sa.spi, sa.dir, limit);
        }
    }

    /// The host deletes `sa` from the node.
    fn uninstall(&mut self, sa: Sa) {
        self.mirror.remove_sa(sa.spi, sa.dir);
        match sa.dir {
            Direction::Outbound => drop(self.out.remove(&sa.spi)),
            Direction::Inbound => drop(self.inb.remove(&sa.spi)),
        }
    }

    fn set_limit(&mut self, spi: u32, dir: Direction, limit: u64) {
        match dir {
            Direction::Outbound => {
                if let Some(w) = self.out.get_mut(&spi) {
                    w.limit = limit;
                }
            }
            Direction::Inbound => {
                if let Some(w) = self.inb.get_mut(&spi) {
                    w.set_limit(limit);
                }
            }
        }
    }

    /// Carries the mirror's events to the workers, as the node's mirror
    /// task does.
    fn take_events(&mut self) {
        while let Some(e) = self.mirror.poll_event() {
            match e {
                MirrorEvent::Activate {
                    spi,
                    dir,
                    start,
                    bitmap,
                } => self.activate(spi, dir, start, &bitmap),
                MirrorEvent::Deactivate { spi, dir } => self.deactivate(spi, dir),
                MirrorEvent::LimitRaised { spi, dir, limit } => self.set_limit(spi, dir, limit),
                MirrorEvent::PeerAlive { .. }
                | MirrorEvent::PeerDead
                | MirrorEvent::Synced { .. } => {}
            }
        }
    }

    /// An `Activate`: the SA runs from `start` (never backwards), with the
    /// limit the mirror has for it now.
    fn activate(&mut self, spi: u32, dir: Direction, start: u64, bitmap: &[u64]) {
        let limit = self.mirror.limit_of(spi, dir).unwrap_or(0);
        match dir {
            Direction::Outbound => {
                if let Some(w) = self.out.get_mut(&spi) {
                    w.next = w.next.max(start);
                    w.reported = w.next - 1;
                    w.active = true;
                    w.limit = limit;
                }
            }
            Direction::Inbound => {
                if let Some(w) = self.inb.get_mut(&spi) {
                    if start >= w.window.top() {
                        w.window = ReplayWindow::restore(WINDOW, start, bitmap);
                        w.reported = start;
                    }
                    w.active = true;
                    w.set_limit(limit);
                }
            }
        }
    }

    fn deactivate(&mut self, spi: u32, dir: Direction) {
        let active = match dir {
            Direction::Outbound => self.out.get_mut(&spi).map(|w| &mut w.active),
            Direction::Inbound => self.inb.get_mut(&spi).map(|w| &mut w.active),
        };
        if let Some(a) = active {
            *a = false;
        }
    }

    /// Whether the worker runs `sa` now.
    fn runs(&self, sa: Sa) -> bool {
        match sa.dir {
            Direction::Outbound => self.out.get(&sa.spi).is_some_and(|w| w.active),
            Direction::Inbound => self.inb.get(&sa.spi).is_some_and(|w| w.active),
        }
    }

    /// Whether the worker runs `sa` and may use (or accept) a fresh number.
    fn may_go_on(&self, sa: Sa) -> bool {
        match sa.dir {
            Direction::Outbound => self
                .out
                .get(&sa.spi)
                .is_some_and(|w| w.active && w.next < w.limit),
            Direction::Inbound => self
                .inb
                .get(&sa.spi)
                .is_some_and(|w| w.active && w.window.top() + 1 < w.limit),
        }
    }

    /// The numbers an outbound burst would use: `next..end`.
    fn burst_end(&self, sa: Sa, burst: Burst) -> Option<(u64, u64)> {
        let w = self.out.get(&sa.spi).filter(|w| w.active)?;
        let want = match burst {
            Burst::One => 1,
            Burst::Long => LONG_BURST,
        };
        let end = w.next.saturating_add(want).min(w.limit);
        (end > w.next).then_some((w.next, end))
    }

    fn hash_into(&self, h: &mut DefaultHasher) {
        self.mirror.fingerprint().hash(h);
        (&self.out, &self.inb).hash(h);
    }
}

/// A node: its epoch (of its current or last life) and its life, if it
/// runs.
#[derive(Clone)]
struct Node {
    epoch: u64,
    life: Option<Life>,
}

/// Sequence numbers used, as disjoint half-open ranges in order.
#[derive(Debug, Clone, Default, Hash)]
struct Used(Vec<(u64, u64)>);

impl Used {
    /// Records `lo..hi` as used; returns the first of them used before.
    fn take(&mut self, lo: u64, hi: u64) -> Option<u64> {
        let again = self
            .0
            .iter()
            .find(|(a, b)| *a < hi && lo < *b)
            .map(|(a, _)| (*a).max(lo));
        self.0.push((lo, hi));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
        again
    }
}

/// Which property a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    /// An outbound (SPI, sequence number) used twice.
    OutboundReuse,
    /// An inbound packet accepted twice.
    InboundReplay,
    /// A pair left alone does not agree on one owner per SA, or two
    /// workers run it.
    Ownership,
    /// A pair left alone leaves an SA with no owner that runs it.
    Liveness,
}

/// A broken property and what broke it.
#[derive(Debug, Clone)]
struct Violation {
    check: Check,
    what: String,
}

impl Violation {
    fn new(check: Check, what: String) -> Self {
        Violation { check, what }
    }
}

/// Bounds of the link model.
#[derive(Debug, Clone, Copy)]
struct Caps {
    /// Frames in flight each way; more are lost (tail drop).
    link: usize,
    /// Frames kept each way for replay (the newest).
    archive: usize,
}

impl Caps {
    /// Three frames in flight each way; six archived, enough for the warm
    /// pair's bulk sync to be there to replay after a restart.
    const DEFAULT: Caps = Caps {
        link: 3,
        archive: 6,
    };
}

/// Everything: both nodes, the link, the far ends and what was used.
#[derive(Clone)]
struct World {
    nodes: [Node; 2],
    now: u64,
    /// The mirror link is cut: frames sent are lost.
    cut: bool,
    /// Both nodes' memory of the SAs was lost at once (a node died while
    /// its peer had not synchronised): the SAs need new keys, which the
    /// model does not do, so nothing restarts any more. A node still
    /// running may act (a fence, say) and be checked.
    amnesia: bool,
    /// Frames in flight from node `i` to the other, oldest first.
    link: [Vec<Frame>; 2],
    /// The newest frames node `i` ever sent, in any life, for replay.
    archive: [VecDeque<Frame>; 2],
    /// Outbound numbers used, by SPI.
    used: BTreeMap<u32, Used>,
    /// The next sequence number each inbound SA's far end sends.
    far: BTreeMap<u32, u64>,
    /// Inbound packets accepted, by SPI.
    accepted: BTreeMap<u32, BTreeSet<u64>>,
    caps: Caps,
}

impl World {
    /// Both nodes started at time 0, epoch 1, nothing exchanged.
    fn cold() -> World {
        let mut w = World {
            nodes: [0, 1].map(|i| Node {
                epoch: 1,
                life: Some(Life::boot(i, 1, 0)),
            }),
            now: 0,
            cut: false,
            amnesia: false,
            link: [Vec::new(), Vec::new()],
            archive: [VecDeque::new(), VecDeque::new()],
            used: BTreeMap::new(),
            far: BTreeMap::new(),
            accepted: BTreeMap::new(),
            caps: Caps::DEFAULT,
        };
        w.react(0);
        w.react(1);
        w
    }

    /// A pair that has synchronised over a perfect link: both nodes know
    /// each other's SAs and every home SA may send. Its frames are in the
    /// archive.
    fn warm() -> World {
        let mut w = World::cold();
        for _ in 0..2 {
            w.exchange();
            w.tick();
        }
        w.exchange();
        for (i, sa) in [(0, OUT_A), (1, OUT_B), (0, IN_A)] {
            let life = w.life(i).expect("alive");
            assert!(life.mirror.synced(), "{} synced", NAMES[i]);
            assert!(life.may_go_on(sa), "{sa} may run");
        }
        w
    }

    /// The warm pair after a while of traffic over a perfect link: each
    /// home SA sent and had its lease acknowledged three times, so its
    /// numbers lie past what a restart's jumps alone would skip.
    fn busy() -> World {
        let mut w = World::warm();
        for _ in 0..3 {
            for a in [
                Action::Send(0, OUT_A, Burst::Long),
                Action::Send(1, OUT_B, Burst::Long),
                Action::FarSend(0, IN_A, Burst::Long),
            ] {
                w.apply(a).expect("a perfect link breaks nothing");
                w.exchange();
            }
            w.tick();
            w.exchange();
        }
        w
    }

    /// The warm pair in the middle of a rekey: the host added `newA` to A,
    /// which asked B what it knows of it and runs it; B has not got it
    /// yet.
    fn rekeying() -> World {
        let mut w = World::warm();
        w.apply(Action::AddSa(0, NEW_A)).expect("an add");
        w.exchange();
        let life = w.life(0).expect("alive");
        assert!(life.may_go_on(NEW_A), "{NEW_A} may run");
        w
    }

    fn life(&self, i: usize) -> Option<&Life> {
        self.nodes[i].life.as_ref()
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].life.is_some()
    }

    fn synced(&self, i: usize) -> bool {
        self.life(i).is_some_and(|l| l.mirror.synced())
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for n in &self.nodes {
            n.epoch.hash(&mut h);
            n.life.is_some().hash(&mut h);
            if let Some(l) = &n.life {
                l.hash_into(&mut h);
            }
        }
        (self.now, self.cut, self.amnesia, &self.link, &self.archive).hash(&mut h);
        (&self.used, &self.far, &self.accepted).hash(&mut h);
        h.finish()
    }

    /// A fingerprint of what decides properties 3 and 4: the nodes and
    /// their workers, the link and the time; not what was used or sent
    /// before (leaving the pair alone sends nothing on the SAs).
    fn settle_key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for l in self.nodes.iter().map(|n| n.life.as_ref()) {
            l.is_some().hash(&mut h);
            if let Some(l) = l {
                l.hash_into(&mut h);
            }
        }
        (self.now, self.cut, &self.link).hash(&mut h);
        h.finish()
    }
}

/// A frame on the link or in the archive: shared, not copied, by the
/// worlds it is in, and hashed once.
#[derive(Clone)]
struct Frame {
    bytes: Rc<[u8]>,
    digest: u64,
}

impl Frame {
    fn new(bytes: Vec<u8>) -> Self {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        Frame {
            bytes: bytes.into(),
            digest: h.finish(),
        }
    }
}

/// Frames are told apart by their digest (collisions aside).
impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Hash for Frame {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl World {
    /// Node `i` after an input, as its mirror task runs: events to the
    /// workers, then every frame due out on the link.
    fn react(&mut self, i: usize) {
        let World {
            nodes,
            link,
            archive,
            now,
            cut,
            caps,
            ..
        } = self;
        let Some(life) = &mut nodes[i].life else {
            return;
        };
        life.take_events();
        while let Some(f) = life.mirror.poll_transmit(*now) {
            if archive[i].len() == caps.archive {
                archive[i].pop_front();
            }
            let f = Frame::new(f);
            archive[i].push_back(f.clone());
            if !*cut && link[i].len() < caps.link {
                link[i].push(f);
            }
        }
        life.take_events();
    }

    fn receive(&mut self, to: usize, frame: &[u8]) {
        if let Some(life) = &mut self.nodes[to].life {
            // A refused frame changes nothing but counters.
            let _ = life.mirror.handle_frame(self.now, frame);
            self.react(to);
        }
    }

    fn tick(&mut self) {
        self.now += 1;
        for i in 0..2 {
            if let Some(life) = &mut self.nodes[i].life {
                life.mirror.handle_timeout(self.now);
                self.react(i);
            }
        }
    }

    /// Delivers every frame in flight, and what they make the nodes send,
    /// until the link is empty.
    fn exchange(&mut self) {
        while self.link.iter().any(|l| !l.is_empty()) {
            for from in 0..2 {
                for f in std::mem::take(&mut self.link[from]) {
                    self.receive(1 - from, &f.bytes);
                }
            }
        }
    }

    /// Node `i` dies; if its peer has not synchronised, the pair's memory
    /// of the SAs is gone.
    fn kill(&mut self, i: usize) {
        self.nodes[i].life = None;
        if !self.synced(1 - i) {
            self.amnesia = true;
        }
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.epoch += 1;
        n.life = Some(Life::boot(i, n.epoch, self.now));
        self.react(i);
    }

    /// What a fence of node `i` answers now (without fencing it).
    fn fence_answer(&self, i: usize) -> Option<Result<(), FenceRefused>> {
        self.life(i).map(|l| l.mirror.clone().force_unleased())
    }

    /// The host fences node `i` (its peer is powered off): a refusal
    /// changes nothing.
    fn fence(&mut self, i: usize) {
        self.on(i, |l| {
            let _ = l.mirror.force_unleased();
        });
    }

    /// Runs `f` on node `i`'s life, then lets the node react.
    fn on(&mut self, i: usize, f: impl FnOnce(&mut Life)) {
        if let Some(life) = &mut self.nodes[i].life {
            f(life);
            self.react(i);
        }
    }

    /// Node `i`'s worker sends a burst on outbound `sa`.
    fn send(&mut self, i: usize, sa: Sa, burst: Burst) -> Result<(), Violation> {
        let life = self.nodes[i].life.as_mut().expect("enabled: alive");
        let (next, end) = life.burst_end(sa, burst).expect("enabled: may send");
        let again = self.used.entry(sa.spi).or_default().take(next, end);
        let w = life.out.get_mut(&sa.spi).expect("enabled: configured");
        w.next = end;
        let seq = end - 1;
        let crossed = seq / INTERVAL > w.reported / INTERVAL;
        if crossed {
            w.reported = seq;
        }
        // The worker reports at an interval crossing and when it stalls.
        if crossed || end == w.limit {
            life.mirror.outbound_progress(sa.spi, seq, 0, seq);
        }
        self.react(i);
        match again {
            Some(n) => Err(Violation::new(
                Check::OutboundReuse,
                format!("{} used {sa} number {n} again", NAMES[i]),
            )),
            None => Ok(()),
        }
    }

    /// Packets `seqs` of inbound `sa` reach node `i`; its worker accepts
    /// what its window and limit let through (a parked SA nothing),
    /// reports a packet refused at the limit as the ESP core and the
    /// worker do, and a crossing of half the interval.
    fn accept(&mut self, i: usize, sa: Sa, seqs: std::ops::Range<u64>) -> Result<(), Violation> {
        let life = self.nodes[i].life.as_mut().expect("enabled: alive");
        let w = life.inb.get_mut(&sa.spi).expect("enabled: configured");
        let accepted = self.accepted.entry(sa.spi).or_default();
        let mut again = None;
        for seq in seqs.filter(|_| w.active) {
            if w.window.check(seq).is_err() {
                continue;
            }
            if seq >= w.limit {
                w.wanted = w.wanted.max(seq);
                w.stalls += 1;
                if w.stalls % STALL_REPORT_EVERY == 1 {
                    life.mirror.inbound_stalled(sa.spi, w.wanted);
                }
                continue;
            }
            w.window.check_and_update(seq).expect("checked");
            if !accepted.insert(seq) {
                again = again.or(Some(seq));
            }
        }
        let top = w.window.top();
        if top / INBOUND_EVERY > w.reported / INBOUND_EVERY {
            w.reported = top;
            let bitmap = w.window.export();
            life.mirror.inbound_progress(sa.spi, top, &bitmap, 0, top);
        }
        self.react(i);
        match again {
            Some(n) => Err(Violation::new(
                Check::InboundReplay,
                format!("{} accepted {sa} packet {n} again", NAMES[i]),
            )),
            None => Ok(()),
        }
    }

    fn far_send(&mut self, i: usize, sa: Sa, burst: Burst) -> Result<(), Violation> {
        let n = match burst {
            Burst::One => 1,
            Burst::Long => FAR_BURST,
        };
        let far = self.far.entry(sa.spi).or_insert(1);
        let from = *far;
        *far += n;
        self.accept(i, sa, from..from + n)
    }

    /// Every packet the far ends ever sent is replayed to node `i`.
    fn attack(&mut self, i: usize) -> Result<(), Violation> {
        let mut result = Ok(());
        for sa in self.attackable(i) {
            let end = self.far.get(&sa.spi).copied().unwrap_or(1);
            let r = self.accept(i, sa, 1..end);
            result = result.and(r);
        }
        result
    }

    /// Inbound SAs node `i` runs that packets were sent on.
    fn attackable(&self, i: usize) -> Vec<Sa> {
        CATALOGUE
            .into_iter()
            .filter(|sa| sa.dir == Direction::Inbound)
            .filter(|sa| self.life(i).is_some_and(|l| l.runs(*sa)))
            .filter(|sa| self.far.get(&sa.spi).is_some_and(|f| *f > 1))
            .collect()
    }

    /// Carries out `a`; a violation it causes is returned.
    fn apply(&mut self, a: Action) -> Result<(), Violation> {
        match a {
            Action::Deliver { from, index } => {
                let f = self.link[from].remove(index);
                self.receive(1 - from, &f.bytes);
            }
            Action::Drop { from, index } => drop(self.link[from].remove(index)),
            Action::Duplicate { from, index } => {
                let f = self.link[from][index].clone();
                self.link[from].insert(index, f);
            }
            Action::Replay { from, index } => {
                let f = self.archive[from][index].clone();
                self.receive(1 - from, &f.bytes);
            }
            Action::Tick => self.tick(),
            Action::Cut => self.cut = true,
            Action::Heal => self.cut = false,
            Action::Kill(i) => self.kill(i),
            Action::Restart(i) => self.restart(i),
            Action::TakeOver(i) => self.on(i, |l| {
                l.mirror.take_over();
            }),
            Action::HandBack(i) => self.on(i, |l| {
                l.mirror.hand_back();
            }),
            Action::Fence(i) => self.fence(i),
            Action::AddSa(i, sa) => self.on(i, |l| l.install(i, sa)),
            Action::RemoveSa(i, sa) => self.on(i, |l| l.uninstall(sa)),
            Action::Rekey(i) => self.on(i, |l| {
                // Make before break: the new SA, then the old one deleted.
                l.install(i, NEW_A);
                l.uninstall(OUT_A);
            }),
            Action::Send(i, sa, burst) => return self.send(i, sa, burst),
            Action::FarSend(i, sa, burst) => return self.far_send(i, sa, burst),
            Action::Attack(i) => return self.attack(i),
        }
        Ok(())
    }

    /// Every action of `alphabet` that can change something here.
    fn actions(&self, alphabet: Alphabet) -> Vec<Action> {
        let mut all = self.link_actions();
        all.extend(self.node_actions());
        all.extend(self.worker_actions());
        all.retain(|a| alphabet.has(a.family()));
        all
    }

    fn link_actions(&self) -> Vec<Action> {
        let mut all = Vec::new();
        for from in 0..2 {
            let to_alive = self.alive(1 - from);
            let frames = &self.link[from];
            for index in 0..frames.len() {
                // Copies side by side are one choice.
                if index > 0 && frames[index] == frames[index - 1] {
                    continue;
                }
                if to_alive {
                    all.push(Action::Deliver { from, index });
                }
                all.push(Action::Drop { from, index });
                if frames.len() < self.caps.link {
                    all.push(Action::Duplicate { from, index });
                }
            }
            if to_alive {
                all.extend(
                    (0..self.archive[from].len()).map(|index| Action::Replay { from, index }),
                );
            }
        }
        all.push(Action::Tick);
        all.push(if self.cut { Action::Heal } else { Action::Cut });
        all
    }

    fn node_actions(&self) -> Vec<Action> {
        let mut all = Vec::new();
        for i in 0..2 {
            let Some(life) = self.life(i) else {
                if !self.amnesia {
                    all.push(Action::Restart(i));
                }
                continue;
            };
            if self.alive(1 - i) {
                all.push(Action::Kill(i));
            } else {
                all.push(Action::Fence(i));
            }
            all.extend([Action::TakeOver(i), Action::HandBack(i)]);
            for sa in CATALOGUE {
                all.push(if life.configured(sa) {
                    Action::RemoveSa(i, sa)
                } else {
                    Action::AddSa(i, sa)
                });
            }
            if life.configured(OUT_A) && !life.configured(NEW_A) {
                all.push(Action::Rekey(i));
            }
        }
        all
    }

    fn worker_actions(&self) -> Vec<Action> {
        let mut all = Vec::new();
        for i in 0..2 {
            let Some(life) = self.life(i) else { continue };
            for sa in CATALOGUE {
                match sa.dir {
                    Direction::Outbound => {
                        let one = life.burst_end(sa, Burst::One);
                        let long = life.burst_end(sa, Burst::Long);
                        if one.is_some() {
                            all.push(Action::Send(i, sa, Burst::One));
                        }
                        if long != one {
                            all.push(Action::Send(i, sa, Burst::Long));
                        }
                    }
                    // A packet to a node that does not run the SA is
                    // dropped unseen: for the properties, a packet lost
                    // on the way, which the attacker may send later.
                    Direction::Inbound if life.runs(sa) => {
                        all.push(Action::FarSend(i, sa, Burst::One));
                        all.push(Action::FarSend(i, sa, Burst::Long));
                    }
                    Direction::Inbound => {}
                }
            }
            if !self.attackable(i).is_empty() {
                all.push(Action::Attack(i));
            }
        }
        all
    }

    /// Properties 3 and 4: with both nodes alive and the link whole, a
    /// copy of the world is left alone over a perfect link for a while;
    /// then every SA configured on both must have exactly one owner that
    /// runs it.
    fn check_settled(&self) -> Result<(), Violation> {
        if self.cut || !(self.alive(0) && self.alive(1)) {
            return Ok(());
        }
        let mut w = self.clone();
        w.caps.link = usize::MAX;
        w.exchange();
        for _ in 0..SETTLE_TICKS {
            w.tick();
            w.exchange();
        }
        w.one_owner_each()
    }

    fn one_owner_each(&self) -> Result<(), Violation> {
        let (Some(a), Some(b)) = (self.life(0), self.life(1)) else {
            return Ok(());
        };
        let both = CATALOGUE
            .into_iter()
            .filter(|sa| a.configured(*sa) && b.configured(*sa));
        for sa in both {
            let owner = |l: &Life| {
                l.mirror
                    .views()
                    .into_iter()
                    .find(|v| v.spi == sa.spi && v.dir == sa.dir)
                    .map(|v| v.owner)
            };
            let views = [owner(a), owner(b)];
            let owns = [a.mirror.owns(sa.spi, sa.dir), b.mirror.owns(sa.spi, sa.dir)];
            let runs = [a.runs(sa), b.runs(sa)];
            let state = format!(
                "{sa} left alone: owner in A's view {:?}, in B's {:?}; owns (A, B) {owns:?}; workers run it (A, B) {runs:?}",
                views[0], views[1]
            );
            let owner = IDS.iter().position(|id| views[0] == Some(*id));
            let Some(o) = owner.filter(|_| views[0] == views[1]) else {
                return Err(Violation::new(Check::Ownership, state));
            };
            if owns[1 - o] || runs[1 - o] {
                return Err(Violation::new(Check::Ownership, state));
            }
            if !(owns[o] && [a, b][o].may_go_on(sa)) {
                return Err(Violation::new(
                    Check::Liveness,
                    format!("{state}; its owner may not go on"),
                ));
            }
        }
        Ok(())
    }

    /// One line per node and one for the link, for traces.
    fn summary(&self) -> String {
        let nodes: Vec<String> = (0..2).map(|i| self.node_summary(i)).collect();
        format!(
            "t={} {}{}\n        {}\n        {}\n        link A→B {} B→A {}",
            self.now,
            if self.cut { "link cut " } else { "" },
            if self.amnesia { "amnesia" } else { "" },
            nodes[0],
            nodes[1],
            self.link[0].len(),
            self.link[1].len()
        )
    }

    fn node_summary(&self, i: usize) -> String {
        let Some(l) = self.life(i) else {
            return format!("{} dead (last epoch {})", NAMES[i], self.nodes[i].epoch);
        };
        let m = &l.mirror;
        let mut s = format!(
            "{} epoch {} {} peer {}:",
            NAMES[i],
            self.nodes[i].epoch,
            if m.synced() { "synced" } else { "unsynced" },
            if m.peer_alive() { "alive" } else { "dead" }
        );
        let limit = |l: u64| {
            if l == u64::MAX {
                "∞".to_string()
            } else {
                l.to_string()
            }
        };
        for v in m.views() {
            let name = sa_named(v.spi, v.dir);
            s += &format!(
                " {name}[owner {} g{}",
                NAMES[v.owner as usize - 1],
                v.generation
            );
            if m.asking(v.spi, v.dir) {
                s += " asking";
            }
            s += &match v.dir {
                Direction::Outbound => l.out.get(&v.spi).map_or(String::new(), |w| {
                    let run = if w.active { "runs" } else { "parked" };
                    format!(" {run} next {} limit {}", w.next, limit(w.limit))
                }),
                Direction::Inbound => l.inb.get(&v.spi).map_or(String::new(), |w| {
                    let run = if w.active { "runs" } else { "parked" };
                    format!(" {run} top {} limit {}", w.window.top(), limit(w.limit))
                }),
            };
            s += &v.stored.map_or(String::new(), |x| format!(" stored {x}"));
            s += "]";
        }
        s
    }
}

/// A frame's header and records, for traces.
fn describe(frame: &[u8]) -> String {
    let Ok((h, records)) = parse_records(frame) else {
        return "unparseable".into();
    };
    let records: Vec<String> = records.iter().map(describe_record).collect();
    format!(
        "{}{}#{} to {}{} [{}]",
        NAMES[h.node as usize - 1],
        h.epoch,
        h.counter,
        NAMES[2 - h.node as usize],
        h.peer_epoch,
        records.join(", ")
    )
}

fn describe_record(r: &MirrorRecord) -> String {
    match r {
        MirrorRecord::SaState(s) => format!(
            "{} {}={}",
            if s.copy { "copy" } else { "state" },
            sa_named(s.spi, s.dir),
            s.value
        ),
        MirrorRecord::Heartbeat { .. } => "hb".into(),
        MirrorRecord::LeaseAck { spi, dir, lease } => {
            format!("ack {}={lease}", sa_named(*spi, *dir))
        }
        MirrorRecord::BulkRequest => "bulk?".into(),
        MirrorRecord::BulkPart { bulk, part, parts } => format!("bulk {bulk} part {part}/{parts}"),
        MirrorRecord::Ownership {
            spi,
            dir,
            owner,
            generation,
            bound,
            kind,
        } => {
            let kind = match kind {
                OwnershipKind::Change => "change",
                OwnershipKind::Handover => "handover",
                OwnershipKind::Confirm => "confirm",
            };
            format!(
                "{kind} {}→{} g{generation} from {bound}",
                sa_named(*spi, *dir),
                NAMES[*owner as usize - 1]
            )
        }
        MirrorRecord::Query { spi, dir } => format!("query {}", sa_named(*spi, *dir)),
        MirrorRecord::History { spi, dir, value } => {
            format!("history {}={value:?}", sa_named(*spi, *dir))
        }
        MirrorRecord::Past { spi, dir, value } => {
            format!("past {}={value}", sa_named(*spi, *dir))
        }
        MirrorRecord::Unknown(t) => format!("unknown {t}"),
    }
}

/// Where an exploration starts.
#[derive(Debug, Clone, Copy)]
enum Root {
    /// [`World::warm`].
    Warm,
    /// [`World::busy`].
    Busy,
    /// [`World::rekeying`].
    Rekeying,
}

impl Root {
    fn world(self) -> World {
        match self {
            Root::Warm => World::warm(),
            Root::Busy => World::busy(),
            Root::Rekeying => World::rekeying(),
        }
    }
}

/// What to explore, from where and how far.
#[derive(Debug, Clone, Copy)]
struct Explore {
    root: Root,
    alphabet: Alphabet,
    depth: usize,
    max_states: usize,
}

impl Explore {
    /// `families` from the warm pair to `depth` (or `EXPLORE_DEPTH`), at
    /// most `max_states` (or `EXPLORE_STATES`) states.
    fn new(families: &[Family], depth: usize, max_states: usize) -> Self {
        Explore {
            root: Root::Warm,
            alphabet: Alphabet::of(families),
            depth: env_or("EXPLORE_DEPTH", depth),
            max_states: env_or("EXPLORE_STATES", max_states),
        }
    }
}

/// The environment's `name`, if set to a number, else `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A violation, the actions from the root that lead to it, and the
/// states explored when it was found.
#[derive(Debug, Clone)]
struct Found {
    violation: Violation,
    trace: Vec<Action>,
    after: usize,
}

/// What an exploration saw.
#[derive(Debug)]
struct Report {
    /// Distinct states reached (the root included).
    states: usize,
    /// Transitions tried.
    transitions: usize,
    /// The deepest level whose states were all expanded.
    depth: usize,
    /// Stopped at the state cap.
    capped: bool,
    /// Fences tried: allowed, refused as not synchronised, refused as the
    /// peer is heard.
    fences: [usize; 3],
    /// Violations, the shortest of each check first.
    found: Vec<Found>,
    elapsed: Duration,
}

impl Report {
    fn first(&self, check: Check) -> Option<&Found> {
        self.found.iter().find(|f| f.violation.check == check)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<Check> = self.found.iter().map(|x| x.violation.check).collect();
        kinds.dedup();
        write!(
            f,
            "{} states, {} transitions, depth {} fully explored{}, {} violations {kinds:?}, {:.1} s",
            self.states,
            self.transitions,
            self.depth,
            if self.capped {
                " (state cap reached)"
            } else {
                ""
            },
            self.found.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Breadth-first search from `root`.
fn explore(root: &World, ex: Explore) -> Report {
    let t0 = Instant::now();
    let mut seen = HashSet::from([root.fingerprint()]);
    // Properties 3 and 4's verdict by settle key: many states differ only
    // in what was used or sent before.
    let mut settled: HashMap<u64, Result<(), Violation>> = HashMap::new();
    // Every state reached: its parent, the action from it and its
    // fingerprint.
    let mut parents = vec![(usize::MAX, Action::Tick, root.fingerprint())];
    let mut frontier = vec![Pending {
        world: Some(Box::new(root.clone())),
        id: 0,
    }];
    let mut report = Report {
        states: 1,
        transitions: 0,
        depth: 0,
        capped: false,
        fences: [0; 3],
        found: Vec::new(),
        elapsed: Duration::ZERO,
    };
    'levels: while report.depth < ex.depth && !frontier.is_empty() {
        let mut next = Vec::new();
        // Each state is dropped once expanded: two levels never fill
        // memory at once.
        for Pending { world, id: at } in std::mem::take(&mut frontier) {
            let world = world.unwrap_or_else(|| Box::new(rebuild(root, &parents, at)));
            for a in world.actions(ex.alphabet) {
                report.transitions += 1;
                if let Action::Fence(i) = a {
                    let k = match world.fence_answer(i) {
                        Some(Ok(())) => 0,
                        Some(Err(FenceRefused::NotSynced)) => 1,
                        Some(Err(FenceRefused::PeerHeard)) | None => 2,
                    };
                    report.fences[k] += 1;
                }
                let mut w = world.clone();
                let mut verdict = w.apply(a);
                let fingerprint = w.fingerprint();
                let fresh = seen.insert(fingerprint);
                if verdict.is_ok() && !fresh {
                    continue;
                }
                if verdict.is_ok() {
                    verdict = settled
                        .entry(w.settle_key())
                        .or_insert_with(|| w.check_settled())
                        .clone();
                }
                parents.push((at, a, fingerprint));
                let id = parents.len() - 1;
                if let Err(violation) = verdict {
                    let trace = trace_to(&parents, id);
                    report.found.push(Found {
                        violation,
                        trace,
                        after: report.states,
                    });
                    continue;
                }
                report.states += 1;
                let world = (next.len() < KEEP).then_some(w);
                next.push(Pending { world, id });
                if report.states >= ex.max_states {
                    report.capped = true;
                    break 'levels;
                }
            }
        }
        frontier = next;
        report.depth += 1;
    }
    report
        .found
        .sort_by_key(|f| (f.violation.check, f.trace.len()));
    report.elapsed = t0.elapsed();
    report
}

/// Worlds of a level kept in memory (some 10 kB each); the others are
/// rebuilt from their traces when their turn comes.
const KEEP: usize = 40_000;

/// A state waiting to be expanded: its world, or only its place in the
/// tree of states reached.
struct Pending {
    world: Option<Box<World>>,
    id: usize,
}

/// The world of state `id`, replayed from the root (every step on the way
/// was free of violations).
fn rebuild(root: &World, parents: &[(usize, Action, u64)], id: usize) -> World {
    let mut w = root.clone();
    for a in trace_to(parents, id) {
        w.apply(a).expect("a step on the way to a state reached");
    }
    assert_eq!(
        w.fingerprint(),
        parents[id].2,
        "a trace replays to its state"
    );
    w
}

fn trace_to(parents: &[(usize, Action, u64)], mut id: usize) -> Vec<Action> {
    let mut trace = Vec::new();
    while id != 0 {
        let (parent, a, _) = parents[id];
        trace.push(a);
        id = parent;
    }
    trace.reverse();
    trace
}

/// The trace of `found`, replayed from `root`: each action, the frame it
/// carries or the fence's answer, and the world after it.
fn show(root: &World, found: &Found) -> String {
    let mut w = root.clone();
    let mut out = format!(
        "{:?}: {}\n    start: {}\n",
        found.violation.check,
        found.violation.what,
        w.summary()
    );
    for (k, a) in found.trace.iter().enumerate() {
        let note = match *a {
            Action::Fence(i) => format!("  {:?}", w.fence_answer(i)),
            _ => a
                .frame(&w)
                .map(|f| format!("  {}", describe(f)))
                .unwrap_or_default(),
        };
        let r = w.apply(*a);
        out += &format!("{:>4}. {a}{note}\n      {}\n", k + 1, w.summary());
        if let Err(v) = r {
            out += &format!("      VIOLATION {:?}: {}\n", v.check, v.what);
        }
    }
    out
}

/// A trace on one line.
fn line(trace: &[Action]) -> String {
    let steps: Vec<String> = trace.iter().map(Action::to_string).collect();
    steps.join("; ")
}

/// Explores from the warm pair; prints the report (states explored, depth
/// reached) and the shortest trace of each property violated.
fn run(name: &str, ex: Explore) -> Report {
    let root = ex.root.world();
    let report = explore(&root, ex);
    println!("{name}: {report}");
    for check in [
        Check::OutboundReuse,
        Check::InboundReplay,
        Check::Ownership,
        Check::Liveness,
    ] {
        if let Some(f) = report.first(check) {
            println!(
                "{name} shortest {check:?}, depth {}, found after {} states: {}",
                f.trace.len(),
                f.after,
                line(&f.trace)
            );
            println!("{}", show(&root, f));
        }
    }
    report
}

/// Explores as `ex` says and asserts that no property broke.
fn clean(name: &str, ex: Explore) -> Report {
    let report = run(name, ex);
    assert!(report.found.is_empty(), "{name}: {report}");
    report
}

#[test]
fn a_fingerprint_follows_the_state_and_not_the_counters() {
    let w = World::warm();
    let a = &w.life(0).unwrap().mirror;
    let mut b = a.clone();
    assert_eq!(a.fingerprint(), b.fingerprint(), "a clone");
    // A frame of A's own comes back: refused and counted, nothing else.
    let own = w.archive[0].back().unwrap().bytes.clone();
    assert!(b.handle_frame(w.now, &own).is_err());
    assert_eq!(b.rejected().total(), 1);
    assert_eq!(a.fingerprint(), b.fingerprint(), "a counter only");
    b.outbound_progress(OUT_A.spi, 3, 0, 3);
    assert_ne!(a.fingerprint(), b.fingerprint(), "progress");
    let mut w2 = w.clone();
    assert_eq!(w.fingerprint(), w2.fingerprint());
    w2.apply(Action::Tick).unwrap();
    assert_ne!(w.fingerprint(), w2.fingerprint());
}

use Family::*;

/// Frames delivered in any order, lost and duplicated, while the workers
/// send, time passes and the SAs change hands.
#[test]
fn link_faults_break_nothing() {
    clean(
        "link faults",
        Explore::new(
            &[Deliver, Drop, Duplicate, Tick, TakeOver, HandBack, Send],
            5,
            400_000,
        ),
    );
}

/// Any frame a node sent, in this life or an earlier one, replayed to its
/// peer, across kills and restarts.
#[test]
fn replayed_frames_break_nothing() {
    clean(
        "replayed frames",
        Explore::new(
            &[Replay, Deliver, Kill, Restart, TakeOver, Send],
            5,
            400_000,
        ),
    );
}

/// Deaths declared, the link cut and healed (split brain), takeovers and
/// hand-backs on outbound SAs.
#[test]
fn timeouts_and_split_brain_break_nothing_outbound() {
    clean(
        "timeouts and split brain",
        Explore::new(
            &[Tick, Partition, Deliver, TakeOver, HandBack, Send],
            5,
            400_000,
        ),
    );
}

/// Kills and restarts with memory lost, with the far end and the attacker
/// on the inbound SA.
#[test]
fn kills_and_restarts_break_nothing() {
    clean(
        "kills and restarts",
        Explore::new(
            &[Kill, Restart, Deliver, TakeOver, Send, FarEnd, Attack],
            5,
            400_000,
        ),
    );
}

/// Takeovers and hand-backs, frames lost on the way.
#[test]
fn takeovers_and_hand_backs_break_nothing() {
    clean(
        "takeovers and hand-backs",
        Explore::new(&[TakeOver, HandBack, Deliver, Drop, Tick, Send], 5, 400_000),
    );
}

/// Fences, refused and allowed, of a survivor that ran its own SAs only.
#[test]
fn fences_break_nothing() {
    let ex = Explore {
        root: Root::Busy,
        ..Explore::new(&[Fence, Kill, Restart, Tick, Deliver, Send], 6, 400_000)
    };
    let r = clean("fences", ex);
    assert!(
        r.fences.iter().all(|n| *n > 0),
        "fence answers {:?}",
        r.fences
    );
}

/// Fences after takeovers, in a split brain too: the fenced node never
/// heard its peer take its SAs over and use them before it died.
#[test]
fn fences_after_takeovers_break_nothing() {
    clean(
        "fences after takeovers",
        Explore::new(&[Fence, Kill, Tick, Deliver, TakeOver, Send], 5, 400_000),
    );
}

/// SAs removed and added again at run time, on one node or both.
#[test]
fn adds_and_removes_break_nothing() {
    clean(
        "adds and removes",
        Explore::new(
            &[AddSa, RemoveSa, Deliver, Tick, Send, FarEnd, Attack],
            5,
            400_000,
        ),
    );
}

/// SAs removed and added again while one node holds its peer's.
#[test]
fn adds_and_removes_during_takeovers_break_nothing() {
    clean(
        "adds and removes during takeovers",
        Explore::new(
            &[AddSa, RemoveSa, TakeOver, Deliver, Tick, Send],
            4,
            400_000,
        ),
    );
}

/// Rekeys on either node, across kills and restarts.
#[test]
fn rekeys_break_nothing() {
    clean(
        "rekeys",
        Explore::new(&[Rekey, Deliver, Tick, Kill, Restart, Send], 5, 400_000),
    );
}

/// Halfway through a rekey (`newA` runs on A, B has not got it yet): the
/// host adds it to B during a takeover, or to either node again.
#[test]
fn a_rekey_halfway_breaks_nothing() {
    let ex = Explore {
        root: Root::Rekeying,
        ..Explore::new(&[AddSa, Tick, Deliver, TakeOver, Send], 5, 400_000)
    };
    clean("rekey halfway", ex);
}

/// The inbound SA: the far end and the attacker against takeovers,
/// hand-backs, kills and restarts.
#[test]
fn inbound_replays_break_nothing() {
    clean(
        "inbound replays",
        Explore::new(
            &[
                FarEnd, Attack, Deliver, Drop, Kill, Restart, TakeOver, HandBack,
            ],
            6,
            400_000,
        ),
    );
}

/// The inbound SA in a split brain: both nodes declare each other dead and
/// one takes the other's SAs over, the attacker copying every packet to
/// both.
#[test]
fn split_brain_accepts_no_inbound_packet_twice() {
    clean(
        "split brain inbound",
        Explore::new(&[Partition, Tick, TakeOver, FarEnd, Attack], 5, 400_000),
    );
}

/// Every family but the host's deletes (a remove, or the delete that ends
/// a rekey): all of them but the ones find 1 needs.
#[test]
fn every_family_but_deletes_breaks_nothing() {
    let families: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| !matches!(f, RemoveSa | Rekey))
        .collect();
    clean(
        "every family but deletes",
        Explore::new(&families, 4, 200_000),
    );
}

/// Every family at once.
#[test]
fn the_full_alphabet_breaks_nothing() {
    clean("full alphabet", Explore::new(&Family::ALL, 4, 200_000));
}

/// Replays a trace the exploration printed, from the warm root, and
/// checks the pair left alone.
fn replay(trace: &[Action]) -> Result<(), Violation> {
    let mut w = World::warm();
    for a in trace {
        w.apply(*a)?;
    }
    w.check_settled()
}

/// Explore find 2 (depth 6, `adds and removes during takeovers`): A takes
/// B's SA over while each thinks the other dead; B hears it, deletes the
/// SA and adds it again. A's answer to the copy of B's old final (a `past`
/// record) was taken as the answer to B's new question: B ran the SA from
/// its own history while A ran it too, and neither asked again.
#[test]
fn explore_find_2_a_past_record_is_no_answer_to_a_question() {
    replay(&[
        Action::Tick,
        Action::Tick,
        Action::TakeOver(0),
        Action::Deliver { from: 0, index: 2 },
        Action::RemoveSa(1, OUT_B),
        Action::AddSa(1, OUT_B),
    ])
    .unwrap();
}

/// Explore find 3 (depth 5, `full alphabet`): the same cause through a
/// rekey: B takes A's SA over, A deletes it in a rekey and adds it again.
#[test]
fn explore_find_3_a_past_record_is_no_answer_to_a_question_after_a_rekey() {
    replay(&[
        Action::Tick,
        Action::TakeOver(1),
        Action::Deliver { from: 1, index: 1 },
        Action::Rekey(0),
        Action::AddSa(0, OUT_A),
    ])
    .unwrap();
}

/// Explore find 4 (depth 5, `full alphabet`): B takes A's SA over, deletes
/// it (A's final copy then finds no SA) and adds it again: it takes in A's
/// view and runs, waiting for A's acknowledgements until A's final has
/// gone again and B has answered it, a refresh more than the check used
/// to wait. Not a stall: the pair agrees within three refreshes.
#[test]
fn explore_find_4_an_sa_added_again_runs_within_three_refreshes() {
    replay(&[
        Action::TakeOver(1),
        Action::Replay { from: 1, index: 5 },
        Action::RemoveSa(1, OUT_A),
        Action::Deliver { from: 0, index: 0 },
        Action::AddSa(1, OUT_A),
    ])
    .unwrap();
}
