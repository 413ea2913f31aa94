//! The chaos model: links that lose, duplicate, delay and replay frames,
//! the nodes' workers, and a receiver with an attacker replaying every
//! inbound packet.

use super::*;

/// What the link does with one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Delay,
}

pub(crate) fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![6 => Just(Fate::Deliver), 2 => Just(Fate::Drop), 1 => Just(Fate::Duplicate), 1 => Just(Fate::Delay)]
}

/// Every frame either node sent, in every life, as an attacker on the
/// mirror link records them (the newest `WIRE_KEPT`).
pub(crate) const WIRE_KEPT: usize = 3000;

/// The mirror link: frames held back to arrive late, per direction, and
/// every frame ever sent.
#[derive(Default)]
pub(crate) struct Link {
    pub(crate) held: [Vec<Vec<u8>>; 2],
    pub(crate) wire: Vec<Vec<u8>>,
}

impl Link {
    /// Keeps `f`, a frame sent, which must fit the nodes' `max_frame`
    /// (the mirror port drops a larger one: what it carries never arrives).
    pub(crate) fn record(&mut self, f: Vec<u8>) {
        let max = cfg(A, B, 1000).max_frame;
        assert!(f.len() <= max, "a {}-byte frame; max_frame {max}", f.len());
        if self.wire.len() == WIRE_KEPT {
            self.wire.remove(0);
        }
        self.wire.push(f);
    }
}

/// Moves what `from` has to send to `to` as `fate` says, recording every
/// frame; delayed frames (of direction `way`) arrive later, after newer ones, when `release`.
pub(crate) fn carry(
    from: &mut Mirror,
    to: &mut Mirror,
    fate: Fate,
    link: &mut Link,
    way: usize,
    now: u64,
    release: bool,
) {
    while let Some(f) = from.poll_transmit(now) {
        match fate {
            Fate::Deliver => {
                let _ = to.handle_frame(now, &f);
            }
            Fate::Drop => {}
            Fate::Duplicate => {
                let _ = to.handle_frame(now, &f);
                let _ = to.handle_frame(now, &f);
            }
            Fate::Delay => link.held[way].push(f.clone()),
        }
        link.record(f);
    }
    if release {
        for f in link.held[way].drain(..) {
            let _ = to.handle_frame(now, &f);
        }
    }
}

/// The pair's SAs: SPI, direction, ESN, home. The first six are in both
/// nodes' files; the last two (`EXTRA`) are added, removed and added
/// again at run time by the host.
pub(crate) const SAS: [(u32, Direction, bool, u32); 8] = [
    (0x1000, Direction::Outbound, false, A),
    (0x1001, Direction::Outbound, true, A),
    (0x2000, Direction::Outbound, false, B),
    (0x2001, Direction::Outbound, true, B),
    (0x1100, Direction::Inbound, false, A),
    (0x2100, Direction::Inbound, true, B),
    (0x3000, Direction::Outbound, false, A),
    (0x3100, Direction::Inbound, false, B),
];
pub(crate) const CONFIGURED: usize = 6;
pub(crate) const EXTRA: [usize; 2] = [6, 7];

/// The width of a receiver's replay window in the model. The node's is at
/// least this wide, so the model's window refuses as too old only what the
/// node's could also refuse; what the model accepts twice, the node would.
pub(crate) const WINDOW: u64 = 64;

/// A node and what its workers hold: the next sequence number of each
/// outbound SA it runs, and the replay window (top, bitmap: bit k is
/// `top - k` seen) of each inbound SA it runs.
pub(crate) struct Sim {
    pub(crate) node: u32,
    pub(crate) m: Mirror,
    pub(crate) next: BTreeMap<u32, u64>,
    pub(crate) window: BTreeMap<u32, (u64, u64)>,
    pub(crate) alive: bool,
    pub(crate) epoch: u64,
}

impl Sim {
    /// Starts a life of node `me`, with its file's SAs and the run-time
    /// SAs `extra` says its file (or the host, at once) gives it.
    pub(crate) fn new(me: u32, epoch: u64, now: u64, extra: [bool; 2]) -> Sim {
        let m = Mirror::new(
            cfg(me, if me == A { B } else { A }, 1000),
            key(),
            epoch,
            now,
        );
        let mut s = Sim {
            node: me,
            m,
            next: BTreeMap::new(),
            window: BTreeMap::new(),
            alive: true,
            epoch,
        };
        for k in 0..CONFIGURED {
            s.add(k);
        }
        for (i, &k) in EXTRA.iter().enumerate() {
            if extra[i] {
                s.add(k);
            }
        }
        s
    }

    /// Registers `SAS[k]` as the node's file or the host's `sa_add` does;
    /// a home SA gets its worker state at once (the mirror holds it at
    /// limit 0 until it may run).
    pub(crate) fn add(&mut self, k: usize) {
        let (spi, dir, esn, home) = SAS[k];
        self.m.add_sa(spi, dir, esn, home);
        if home == self.node {
            match dir {
                Direction::Outbound => self.next.insert(spi, 1).is_some(),
                Direction::Inbound => self.window.insert(spi, (0, 0)).is_some(),
            };
        }
    }

    /// `sa_del`: the workers drop the SA, the mirror keeps its history.
    pub(crate) fn remove(&mut self, k: usize) {
        let (spi, dir, ..) = SAS[k];
        self.m.remove_sa(spi, dir);
        self.next.remove(&spi);
        self.window.remove(&spi);
    }

    pub(crate) fn has(&self, k: usize) -> bool {
        let (spi, dir, ..) = SAS[k];
        self.m.views().iter().any(|v| v.spi == spi && v.dir == dir)
    }
}

/// Everything that was sent or accepted on the SAs, over every life of
/// both nodes: the far end's inbound senders and the receiver's record.
#[derive(Default)]
pub(crate) struct World {
    /// (SPI, sequence number) the pair sent outbound.
    pub(crate) used: BTreeSet<(u32, u64)>,
    /// (SPI, sequence number) the pair accepted inbound.
    pub(crate) accepted: BTreeSet<(u32, u64)>,
    /// The far end's next sequence number per inbound SA: it has sent
    /// everything below, and an attacker replays all of it to both nodes.
    pub(crate) far: BTreeMap<u32, u64>,
}

/// Whether a window (top, bitmap) refuses `seq`: seen, or too old.
pub(crate) fn refuses((top, bits): (u64, u64), seq: u64) -> bool {
    seq + WINDOW <= top || (seq <= top && bits >> (top - seq) & 1 == 1)
}

pub(crate) fn accept((top, bits): (u64, u64), seq: u64) -> (u64, u64) {
    if seq > top {
        let shift = seq - top;
        (seq, if shift >= 64 { 0 } else { bits << shift } | 1)
    } else {
        (top, bits | 1 << (top - seq))
    }
}

/// The workers of `s` take their SAs' changes from the mirror, then send
/// `burst` packets on each outbound SA they run, below its limit, and
/// take in what the far end and the attacker send on each inbound SA they
/// run: every packet ever sent on it that the window would take, below
/// its limit, fresh ones up to `burst`. A sequence number sent twice or a
/// packet accepted twice (by any life of either node) fails.
pub(crate) fn work(s: &mut Sim, burst: u64, w: &mut World) -> Result<(), TestCaseError> {
    while let Some(e) = s.m.poll_event() {
        match e {
            MirrorEvent::Activate {
                spi,
                dir: Direction::Outbound,
                start,
                ..
            } => {
                let n = s.next.entry(spi).or_insert(start);
                *n = (*n).max(start);
            }
            MirrorEvent::Activate {
                spi,
                dir: Direction::Inbound,
                start,
                bitmap,
            } => {
                s.window
                    .insert(spi, (start, bitmap.first().copied().unwrap_or(0)));
            }
            MirrorEvent::Deactivate { spi, dir } => {
                match dir {
                    Direction::Outbound => s.next.remove(&spi).is_some(),
                    Direction::Inbound => s.window.remove(&spi).is_some(),
                };
            }
            _ => {}
        }
    }
    for (&spi, next) in s.next.iter_mut() {
        let Some(limit) = s.m.limit(spi) else {
            continue;
        };
        let end = (*next + burst).min(limit);
        for seq in *next..end {
            prop_assert!(
                w.used.insert((spi, seq)),
                "sequence number {seq} of SA {spi:#x} used twice"
            );
        }
        if end > *next {
            *next = end;
            s.m.outbound_progress(spi, end - 1, 0, end - 1);
        }
    }
    for (&spi, win) in s.window.iter_mut() {
        let Some(limit) = s.m.inbound_limit(spi) else {
            continue;
        };
        let sent = *w.far.get(&spi).unwrap_or(&1);
        let below = win.0.saturating_sub(WINDOW - 1).max(1);
        let fresh = (win.0 + burst).min(sent - 1).min(limit.saturating_sub(1));
        let before = *win;
        for seq in below..=fresh.max(win.0) {
            if seq >= limit || seq >= sent || refuses(*win, seq) {
                continue;
            }
            prop_assert!(
                w.accepted.insert((spi, seq)),
                "packet {seq} of inbound SA {spi:#x} accepted twice (window {before:?}, limit {limit})"
            );
            *win = accept(*win, seq);
        }
        if *win != before {
            s.m.inbound_progress(spi, win.0, &[win.1], 0, win.0);
        }
        if sent > limit {
            // Authentic packets at or past the limit were refused
            // (lease_stall): the worker reports the highest.
            s.m.inbound_stalled(spi, sent - 1);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Chaos {
    Run(Fate, Fate),
    Cut,
    Heal,
    Kill(bool),
    /// Restart a dead node; with `true` its file has the run-time SAs the
    /// host added (else the host adds them later, at the next `Add`).
    Restart(bool, bool),
    TakeOver(bool),
    HandBack(bool),
    /// The host or an operator orders a fence.
    Fence(bool),
    /// The host adds a run-time SA to every node it reaches (a rekey's
    /// new SA; again after a delete: the same SPI and key).
    Add(usize),
    /// The host deletes a run-time SA from every node.
    Remove(usize),
    /// An attacker replays recorded mirror frames (from every life of
    /// both nodes) into a node: from the `usize`-th on, up to 60.
    ReplayFrames(bool, usize),
    /// A node killed and restarted `u8` times, each life killed after
    /// `u8` exchanges (before or right after its bulk sync).
    CrashLoop(bool, u8, u8),
}

pub(crate) fn chaos() -> impl Strategy<Value = Chaos> {
    prop_oneof![
        20 => (fate(), fate()).prop_map(|(x, y)| Chaos::Run(x, y)),
        1 => Just(Chaos::Cut),
        2 => Just(Chaos::Heal),
        1 => any::<bool>().prop_map(Chaos::Kill),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(i, e)| Chaos::Restart(i, e)),
        2 => any::<bool>().prop_map(Chaos::TakeOver),
        1 => any::<bool>().prop_map(Chaos::HandBack),
        1 => any::<bool>().prop_map(Chaos::Fence),
        1 => (0..EXTRA.len()).prop_map(Chaos::Add),
        1 => (0..EXTRA.len()).prop_map(Chaos::Remove),
        1 => (any::<bool>(), 0..WIRE_KEPT).prop_map(|(i, k)| Chaos::ReplayFrames(i, k)),
        1 => (any::<bool>(), 2u8..5, 0u8..4).prop_map(|(i, n, k)| Chaos::CrashLoop(i, n, k)),
    ]
}

/// Whether both nodes live, hear each other and have synchronised.
pub(crate) fn whole(nodes: &[Sim; 2]) -> bool {
    nodes
        .iter()
        .all(|n| n.alive && n.m.peer_alive() && n.m.synced())
}

/// Whether no live node runs SAs of its peer.
pub(crate) fn holding_nothing(nodes: &[Sim; 2]) -> bool {
    nodes.iter().all(|n| !n.alive || n.m.holding() == 0)
}

/// Whether both nodes run the same SA at once (a split brain).
pub(crate) fn split_brain(nodes: &[Sim; 2]) -> bool {
    nodes.iter().all(|n| n.alive)
        && SAS
            .iter()
            .any(|&(spi, dir, ..)| nodes[0].m.owns(spi, dir) && nodes[1].m.owns(spi, dir))
}
