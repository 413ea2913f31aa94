//! The world explored: two real mirror nodes, their workers, the far
//! ends' receivers, and the checks run after each step.

use super::*;

/// A worker's outbound SA, as `espgate_esp::OutboundSa` and the node keep
/// it.
#[derive(Debug, Clone, Hash)]
pub(crate) struct OutWorker {
    /// The next sequence number; a restart only moves it forward.
    pub(crate) next: u64,
    /// The first number it must not use.
    pub(crate) limit: u64,
    /// Running here (not parked).
    pub(crate) active: bool,
    /// The last number reported at an interval crossing.
    pub(crate) reported: u64,
}

/// A worker's inbound SA, as `espgate_esp::InboundSa` and the node keep
/// it.
#[derive(Debug, Clone)]
pub(crate) struct InWorker {
    pub(crate) window: ReplayWindow,
    /// The first number it must not accept.
    pub(crate) limit: u64,
    pub(crate) active: bool,
    /// The window top last reported.
    pub(crate) reported: u64,
    /// The highest authentic number refused at the limit (0: none).
    pub(crate) wanted: u64,
    /// Packets refused at the limit since it last moved.
    pub(crate) stalls: u64,
    /// The top at which it reports, half way to its limit.
    pub(crate) report_at: u64,
}

impl InWorker {
    /// A limit that moves starts a new stall (its first refused packet is
    /// reported), as in the ESP core.
    pub(crate) fn set_limit(&mut self, limit: u64) {
        if limit != self.limit {
            self.stalls = 0;
        }
        self.limit = limit;
        let top = self.window.top();
        let room = limit.saturating_sub(1).saturating_sub(top);
        self.report_at = top.saturating_add(room.div_ceil(2));
    }

    /// Whether a report is due: the top crossed a multiple of the step, or
    /// reached half way to the limit, since the last one.
    pub(crate) fn report_due(&self) -> bool {
        let top = self.window.top();
        top / INBOUND_EVERY > self.reported / INBOUND_EVERY
            || (top >= self.report_at && self.reported < self.report_at)
    }
}

impl Hash for InWorker {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.window.top(), self.window.export()).hash(state);
        (self.limit, self.active, self.reported).hash(state);
        (self.wanted, self.stalls, self.report_at).hash(state);
    }
}

/// A running node: its mirror, and its workers' SAs (one for each SA
/// configured on the node, running or parked).
#[derive(Clone)]
pub(crate) struct Life {
    pub(crate) mirror: Mirror,
    pub(crate) out: BTreeMap<u32, OutWorker>,
    pub(crate) inb: BTreeMap<u32, InWorker>,
    /// The host ordered this node to take over since it last heard its
    /// peer (`espgate host` orders it once per failure).
    pub(crate) ordered: bool,
    /// The worker stands still: it takes no command (the node's commands
    /// wait in `backlog`), and the node cannot read its final states. It
    /// may still send and accept with what it had, at any moment: a
    /// stalled worker that wakes does the rest of its turn before it takes
    /// its commands, and exploring it doing more covers that.
    pub(crate) stalled: bool,
    /// Commands sent to the worker while it stood still: each event with
    /// the limit sent with it.
    pub(crate) backlog: Vec<(MirrorEvent, u64)>,
    /// The highest limit the node ever sent the worker for each SA (its
    /// mirror task's `limits_sent`).
    pub(crate) limits_sent: BTreeMap<(u32, Direction), u64>,
}

impl Life {
    /// Node `i` started at `now` in `epoch` with the boot configuration.
    pub(crate) fn boot(i: usize, epoch: u64, now: u64) -> Life {
        let mut life = Life {
            mirror: Mirror::new(config(i), key(), epoch, now),
            out: BTreeMap::new(),
            inb: BTreeMap::new(),
            ordered: false,
            stalled: false,
            backlog: Vec::new(),
            limits_sent: BTreeMap::new(),
        };
        for sa in BOOT {
            life.install(i, sa);
        }
        life
    }

    pub(crate) fn configured(&self, sa: Sa) -> bool {
        match sa.dir {
            Direction::Outbound => self.out.contains_key(&sa.spi),
            Direction::Inbound => self.inb.contains_key(&sa.spi),
        }
    }

    /// The host adds `sa` to node `i`: its worker gets it at limit 0
    /// (running if at home, else parked), the mirror registers it, and the
    /// worker gets the limit the mirror gives it.
    pub(crate) fn install(&mut self, i: usize, sa: Sa) {
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
                    report_at: 0,
                };
                self.inb.insert(sa.spi, w);
            }
        }
        self.mirror.add_sa(sa.spi, sa.dir, false, IDS[sa.home]);
        if let Some(limit) = self.mirror.limit_of(sa.spi, sa.dir) {
            self.send_command(
                MirrorEvent::LimitRaised {
                    spi: sa.spi,
                    dir: sa.dir,
                    limit,
                },
                limit,
            );
        }
    }

    /// The host deletes `sa` from the node.
    pub(crate) fn uninstall(&mut self, sa: Sa) {
        self.mirror.remove_sa(sa.spi, sa.dir);
        match sa.dir {
            Direction::Outbound => drop(self.out.remove(&sa.spi)),
            Direction::Inbound => drop(self.inb.remove(&sa.spi)),
        }
    }

    pub(crate) fn set_limit(&mut self, spi: u32, dir: Direction, limit: u64) {
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
    /// task does (a worker that runs again first takes what it was sent
    /// while it stood still).
    pub(crate) fn take_events(&mut self) {
        if !self.stalled {
            for (e, limit) in std::mem::take(&mut self.backlog) {
                self.command(e, limit);
            }
        }
        while let Some(e) = self.mirror.poll_event() {
            match e {
                MirrorEvent::Activate { spi, dir, .. } => {
                    // With the limit the mirror has for it now.
                    let limit = self.mirror.limit_of(spi, dir).unwrap_or(0);
                    self.send_command(e, limit);
                }
                MirrorEvent::LimitRaised { limit, .. } => self.send_command(e, limit),
                MirrorEvent::Deactivate { .. } => self.send_command(e, 0),
                MirrorEvent::PeerAlive { .. } => self.ordered = false,
                MirrorEvent::PeerDead
                | MirrorEvent::PeerLeft
                | MirrorEvent::Left
                | MirrorEvent::LeaveAbandoned
                | MirrorEvent::PeerFlow { .. }
                | MirrorEvent::Synced { .. }
                | MirrorEvent::Stalled { .. }
                | MirrorEvent::Unstalled { .. }
                | MirrorEvent::Orphaned { .. }
                | MirrorEvent::BeyondReach { .. } => {}
            }
        }
    }

    /// The node sends its worker a command: the limit it carries (an
    /// activation's, a raise's) is recorded; a stalled worker takes it
    /// when it runs again.
    pub(crate) fn send_command(&mut self, e: MirrorEvent, limit: u64) {
        if let MirrorEvent::Activate { spi, dir, .. } | MirrorEvent::LimitRaised { spi, dir, .. } =
            e
        {
            let l = self.limits_sent.entry((spi, dir)).or_insert(0);
            *l = (*l).max(limit);
        }
        if self.stalled {
            self.backlog.push((e, limit));
        } else {
            self.command(e, limit);
        }
    }

    /// The worker takes a command.
    fn command(&mut self, e: MirrorEvent, limit: u64) {
        match e {
            MirrorEvent::Activate {
                spi,
                dir,
                start,
                bitmap,
            } => self.activate(spi, dir, start, &bitmap, limit),
            MirrorEvent::Deactivate { spi, dir } => self.deactivate(spi, dir),
            MirrorEvent::LimitRaised { spi, dir, limit } => self.set_limit(spi, dir, limit),
            _ => {}
        }
    }

    /// An `Activate`: the SA runs from `start` (never backwards), with the
    /// limit sent with it.
    pub(crate) fn activate(
        &mut self,
        spi: u32,
        dir: Direction,
        start: u64,
        bitmap: &[u64],
        limit: u64,
    ) {
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

    pub(crate) fn deactivate(&mut self, spi: u32, dir: Direction) {
        let active = match dir {
            Direction::Outbound => self.out.get_mut(&spi).map(|w| &mut w.active),
            Direction::Inbound => self.inb.get_mut(&spi).map(|w| &mut w.active),
        };
        if let Some(a) = active {
            *a = false;
        }
    }

    /// Whether the worker runs `sa` now.
    /// The node hands over each SA stopped for it, reading its worker's
    /// final state once it has parked it (its events are taken first); a
    /// hand-over refused (the peer went silent meanwhile) runs the SA here
    /// again.
    pub(crate) fn hand_over_stopped(&mut self) {
        self.take_events();
        for (spi, dir) in self.mirror.stopped() {
            let last = self.last(spi, dir);
            if self.mirror.hand_over_exact(spi, dir, last).is_err() {
                self.mirror.resume(spi, dir, last);
            }
        }
    }

    /// The node hands each SA stopped for a hand-over on its stalled
    /// worker over with the highest limit it ever sent it as the bound (as
    /// the mirror task does); one it never sent a finite limit, or whose
    /// hand-over is refused, runs here again.
    pub(crate) fn hand_over_stalled(&mut self) {
        self.take_events();
        for (spi, dir) in self.mirror.stopped() {
            let bound = self
                .limits_sent
                .get(&(spi, dir))
                .copied()
                .filter(|l| *l != u64::MAX);
            match bound {
                Some(l) => {
                    if self.mirror.hand_over_exact(spi, dir, l - 1).is_err() {
                        self.mirror.resume(spi, dir, l - 1);
                    }
                }
                None => self.mirror.resume(spi, dir, 0),
            }
        }
    }

    /// A packet reaches each SA that runs here but waits at its limit (a
    /// resumed stalled worker's SA starts there), and the worker reports
    /// it refused, as the ESP core and the worker do at a stall's first
    /// packet: the report asks the peer for more.
    pub(crate) fn report_stalls(&mut self) {
        let out: Vec<(u32, u64)> = self
            .out
            .iter()
            .filter(|(_, w)| w.active && w.next >= w.limit)
            .map(|(spi, w)| (*spi, w.next - 1))
            .collect();
        for (spi, seq) in out {
            self.mirror.outbound_progress(spi, seq, 0, seq);
        }
        let inb: Vec<(u32, u64)> = self
            .inb
            .iter()
            .filter(|(_, w)| w.active && w.window.top() + 1 >= w.limit)
            .map(|(spi, w)| (*spi, w.window.top() + 1))
            .collect();
        for (spi, seq) in inb {
            self.mirror.inbound_stalled(spi, seq);
        }
    }

    /// The worker's final state of an SA it has stopped: the last number
    /// used (outbound), the window top (inbound).
    pub(crate) fn last(&self, spi: u32, dir: Direction) -> u64 {
        match dir {
            Direction::Outbound => self.out.get(&spi).map_or(0, |w| w.next - 1),
            Direction::Inbound => self.inb.get(&spi).map_or(0, |w| w.window.top()),
        }
    }

    pub(crate) fn runs(&self, sa: Sa) -> bool {
        match sa.dir {
            Direction::Outbound => self.out.get(&sa.spi).is_some_and(|w| w.active),
            Direction::Inbound => self.inb.get(&sa.spi).is_some_and(|w| w.active),
        }
    }

    /// Whether the worker runs `sa` and may use (or accept) a fresh number
    /// now. An inbound SA's lease may reach no further than its top (a
    /// slow SA): [`World::may_go_on`] also asks for its next number.
    pub(crate) fn may_go_on(&self, sa: Sa) -> bool {
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
    pub(crate) fn burst_end(&self, sa: Sa, burst: Burst) -> Option<(u64, u64)> {
        let w = self.out.get(&sa.spi).filter(|w| w.active)?;
        let want = match burst {
            Burst::One => 1,
            Burst::Long => LONG_BURST,
        };
        let end = w.next.saturating_add(want).min(w.limit);
        (end > w.next).then_some((w.next, end))
    }

    pub(crate) fn hash_into(&self, h: &mut DefaultHasher) {
        self.mirror.fingerprint().hash(h);
        (&self.out, &self.inb, self.ordered).hash(h);
        (self.stalled, &self.limits_sent).hash(h);
        for (e, limit) in &self.backlog {
            (format!("{e:?}"), limit).hash(h);
        }
    }
}

/// A node: its epoch (of its current or last life) and its life, if it
/// runs.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) epoch: u64,
    pub(crate) life: Option<Life>,
}

/// Sequence numbers used, as disjoint half-open ranges in order.
#[derive(Debug, Clone, Default, Hash)]
pub(crate) struct Used(Vec<(u64, u64)>);

impl Used {
    /// Records `lo..hi` as used; returns the first of them used before.
    pub(crate) fn take(&mut self, lo: u64, hi: u64) -> Option<u64> {
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
pub(crate) enum Check {
    /// An outbound (SPI, sequence number) used twice.
    OutboundReuse,
    /// An inbound packet accepted twice.
    InboundReplay,
    /// A pair left alone does not agree on one owner per SA, or two
    /// workers run it.
    Ownership,
    /// A pair left alone leaves an SA with no owner that runs it.
    Liveness,
    /// A node left alone, its peer dead, does not own every SA it has.
    Survivor,
    /// A node built a frame larger than its `max_frame` (the mirror port
    /// drops it: what it carries never arrives).
    FrameSize,
    /// A takeover of an inbound SA from a dead peer refuses more fresh
    /// packets than the exploration allows.
    Refusal,
}

/// A broken property and what broke it.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    pub(crate) check: Check,
    pub(crate) what: String,
}

impl Violation {
    pub(crate) fn new(check: Check, what: String) -> Self {
        Violation { check, what }
    }
}

/// Bounds of the link model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Frames in flight each way; more are lost (tail drop).
    pub(crate) link: usize,
    /// Frames kept each way for replay (the newest).
    pub(crate) archive: usize,
}

impl Caps {
    /// Three frames in flight each way; six archived, enough for the warm
    /// pair's bulk sync to be there to replay after a restart.
    pub(crate) const DEFAULT: Caps = Caps {
        link: 3,
        archive: 6,
    };
}

/// Everything: both nodes, the link, the far ends and what was used.
#[derive(Clone)]
pub(crate) struct World {
    pub(crate) nodes: [Node; 2],
    pub(crate) now: u64,
    /// The mirror link is cut for the frames each node sends: they are
    /// lost.
    pub(crate) cut: [bool; 2],
    /// Both nodes' memory of the SAs was lost at once (a node died while
    /// its peer had not synchronised): the SAs need new keys, which the
    /// model does not do, so nothing restarts any more. A node still
    /// running may act (a fence, say) and be checked.
    pub(crate) amnesia: bool,
    /// Frames in flight from node `i` to the other, oldest first.
    pub(crate) link: [Vec<Frame>; 2],
    /// The newest frames node `i` ever sent, in any life, for replay.
    pub(crate) archive: [VecDeque<Frame>; 2],
    /// Outbound numbers used, by SPI.
    pub(crate) used: BTreeMap<u32, Used>,
    /// The next sequence number each inbound SA's far end sends.
    pub(crate) far: BTreeMap<u32, u64>,
    /// Inbound packets accepted, by SPI.
    pub(crate) accepted: BTreeMap<u32, BTreeSet<u64>>,
    pub(crate) caps: Caps,
    /// A frame too large to send, built by the last action: (node, size).
    pub(crate) oversized: Option<(usize, usize)>,
    /// Property 7, where an exploration checks it: a takeover of an
    /// inbound SA from a dead peer starts at most this far past the far
    /// end's last packet (the fresh packets it refuses).
    pub(crate) refusal_cap: Option<u64>,
    /// Node `i` took `inA` over last from a peer it did not hear (a split
    /// brain's, or a death's): it may accept up to an interval past its
    /// start unacknowledged, which a takeover after its death must skip
    /// (property 7 allows it that).
    pub(crate) took_unheard: [bool; 2],
}

impl World {
    /// Both nodes started at time 0, epoch 1, nothing exchanged.
    pub(crate) fn cold() -> World {
        let mut w = World {
            nodes: [0, 1].map(|i| Node {
                epoch: 1,
                life: Some(Life::boot(i, 1, 0)),
            }),
            now: 0,
            cut: [false; 2],
            amnesia: false,
            link: [Vec::new(), Vec::new()],
            archive: [VecDeque::new(), VecDeque::new()],
            used: BTreeMap::new(),
            far: BTreeMap::new(),
            accepted: BTreeMap::new(),
            caps: Caps::DEFAULT,
            oversized: None,
            refusal_cap: None,
            took_unheard: [false; 2],
        };
        w.react(0);
        w.react(1);
        w
    }

    /// A pair that has synchronised over a perfect link: both nodes know
    /// each other's SAs and every home SA may send. Its frames are in the
    /// archive.
    pub(crate) fn warm() -> World {
        let mut w = World::cold();
        for _ in 0..2 {
            w.exchange();
            w.tick();
        }
        w.exchange();
        for (i, sa) in [(0, OUT_A), (1, OUT_B), (0, IN_A)] {
            let life = w.life(i).expect("alive");
            assert!(life.mirror.synced(), "{} synced", NAMES[i]);
            assert!(w.may_go_on(i, sa), "{sa} may run");
        }
        w
    }

    /// The warm pair after a while of traffic over a perfect link: each
    /// home SA sent and had its lease acknowledged three times, so its
    /// numbers lie past what a restart's jumps alone would skip.
    pub(crate) fn busy() -> World {
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
    pub(crate) fn rekeying() -> World {
        let mut w = World::warm();
        w.apply(Action::AddSa(0, NEW_A)).expect("an add");
        w.exchange();
        assert!(w.may_go_on(0, NEW_A), "{NEW_A} may run");
        w
    }

    /// The warm pair after B died and came back: A took B's SAs over and
    /// holds them, and B's next life has synchronised (it waits for its
    /// SAs to be handed back).
    pub(crate) fn holding() -> World {
        let mut w = World::warm();
        w.kill(1);
        for _ in 0..SETTLE_TICKS {
            w.tick();
        }
        w.apply(Action::TakeOver(0)).expect("a takeover");
        w.restart(1);
        for _ in 0..SETTLE_TICKS {
            w.exchange();
            w.tick();
        }
        w.exchange();
        assert!(w.synced(1), "B's next life synced");
        let a = w.life(0).expect("alive");
        assert!(a.mirror.owns(OUT_B.spi, OUT_B.dir), "A holds {OUT_B}");
        w
    }

    /// reader32: the busy pair after B drained: every SA it ran stopped
    /// and handed to A exactly, A's confirmations taken in, and B's leave
    /// called (its goodbye not sent yet).
    pub(crate) fn leaving() -> World {
        let mut w = World::busy();
        w.apply(Action::Stop(1, Handing::All)).expect("a stop");
        w.apply(Action::HandOverStopped(1)).expect("a hand-over");
        for _ in 0..SETTLE_TICKS {
            w.exchange();
            w.tick();
        }
        w.exchange();
        w.apply(Action::Leave(1)).expect("a leave");
        let b = w.life(1).expect("alive");
        assert!(b.mirror.drain_sas().is_empty(), "B runs nothing");
        assert!(!b.mirror.gone(), "its goodbye not sent yet");
        w
    }

    /// reader32: [`holding`](Self::holding) with A stopping B's SAs for
    /// an exact failback (not handed over yet) and B's next life leaving.
    pub(crate) fn failing_back() -> World {
        let mut w = World::holding();
        w.apply(Action::Stop(0, Handing::Home)).expect("a stop");
        w
    }

    /// reader32: the mirror of [`holding`](Self::holding): A died and
    /// came back; B took A's SAs over (the inbound one among them, with
    /// the far end sending to it) and holds them, A's next life
    /// synchronised.
    pub(crate) fn holding_inbound() -> World {
        let mut w = World::warm();
        w.apply(Action::FarSend(0, IN_A, Burst::Long))
            .expect("a perfect link breaks nothing");
        w.exchange();
        w.kill(0);
        for _ in 0..SETTLE_TICKS {
            w.tick();
        }
        w.apply(Action::TakeOver(1)).expect("a takeover");
        w.apply(Action::FarSend(1, IN_A, Burst::Long))
            .expect("a far end");
        w.restart(0);
        for _ in 0..SETTLE_TICKS {
            w.exchange();
            w.tick();
        }
        w.exchange();
        assert!(w.synced(0), "A's next life synced");
        let b = w.life(1).expect("alive");
        assert!(b.mirror.owns(IN_A.spi, IN_A.dir), "B holds {IN_A}");
        w
    }

    /// The warm pair with the far end of `inA` sending fast for a while
    /// over a perfect link: A's bound of it lies past its top (the packets
    /// of `inbound_ahead_ms` at that rate), and B acknowledged it. Each
    /// burst meets the limit, is reported and held, and is admitted once
    /// B's acknowledgement raised the limit (as the worker does with the
    /// packets it holds at a limit; the explored far end's packets are
    /// refused there instead).
    pub(crate) fn streaming() -> World {
        let mut w = World::warm();
        for _ in 0..4 {
            let from = w.far.get(&IN_A.spi).copied().unwrap_or(1);
            w.apply(Action::FarSend(0, IN_A, Burst::Long))
                .expect("a perfect link breaks nothing");
            w.exchange();
            w.accept(0, IN_A, from..from + FAR_BURST)
                .expect("held packets admitted once");
            w.exchange();
            w.tick();
            w.exchange();
        }
        let a = w.life(0).expect("alive");
        let top = a.inb[&IN_A.spi].window.top();
        let limit = a.mirror.limit_of(IN_A.spi, IN_A.dir).expect("A runs inA");
        assert!(
            limit > top + 1,
            "A's lease of {IN_A} lies past its top {top}: {limit}"
        );
        w
    }

    /// reader32: the busy pair with B's SAs stopped for a drain (their
    /// hand-over not made yet).
    pub(crate) fn stopped() -> World {
        let mut w = World::busy();
        w.apply(Action::Stop(1, Handing::All)).expect("a stop");
        assert!(!w.life(1).expect("alive").mirror.stopped().is_empty());
        w
    }

    /// reader32: the busy pair after a split brain: the link cut, each
    /// node declared the other dead and took its SAs over and ran them
    /// (the far end sending to both), and the link healed, no frame yet
    /// across.
    pub(crate) fn split() -> World {
        let mut w = World::busy();
        w.apply(Action::Cut).expect("a cut");
        for _ in 0..SETTLE_TICKS {
            w.tick();
        }
        w.apply(Action::TakeOver(0)).expect("a takeover");
        w.apply(Action::TakeOver(1)).expect("a takeover");
        for a in [
            Action::Send(0, OUT_A, Burst::Long),
            Action::Send(0, OUT_B, Burst::Long),
            Action::Send(1, OUT_A, Burst::Long),
            Action::Send(1, OUT_B, Burst::Long),
            Action::FarSend(0, IN_A, Burst::Long),
            Action::FarSend(1, IN_A, Burst::Long),
        ] {
            let _ = w.apply(a);
        }
        w.apply(Action::Heal).expect("a heal");
        w
    }

    /// reader41: B took A's SAs over behind a cut link and ran them (the
    /// far end sending to it); the link healed B's way first (B hears A,
    /// A does not hear B), B handed them back and its host deleted them
    /// there, all unheard by A; then the link healed, and B stopped its
    /// own SAs and handed them over for a drain. Its goodbye is next.
    pub(crate) fn half_healed() -> World {
        let mut w = World::busy();
        w.apply(Action::Cut).expect("a cut");
        for _ in 0..SETTLE_TICKS {
            w.tick();
        }
        w.apply(Action::TakeOver(1)).expect("a takeover");
        for a in [
            Action::Send(1, OUT_A, Burst::Long),
            Action::FarSend(1, IN_A, Burst::Long),
        ] {
            let _ = w.apply(a);
        }
        w.apply(Action::HealFrom(0)).expect("a heal one way");
        for _ in 0..SETTLE_TICKS {
            w.tick();
            w.exchange();
        }
        let b = &w.life(1).expect("alive").mirror;
        assert!(b.peer_alive() && b.peer_synced(), "B hears A");
        w.apply(Action::HandBack(1)).expect("a hand-back");
        w.apply(Action::RemoveSa(1, IN_A)).expect("a delete");
        w.apply(Action::RemoveSa(1, OUT_A)).expect("a delete");
        w.apply(Action::Heal).expect("a heal");
        for _ in 0..SETTLE_TICKS {
            w.tick();
            w.exchange();
        }
        w.apply(Action::Stop(1, Handing::All)).expect("a stop");
        w.apply(Action::HandOverStopped(1)).expect("a hand-over");
        w.exchange();
        w
    }

    pub(crate) fn life(&self, i: usize) -> Option<&Life> {
        self.nodes[i].life.as_ref()
    }

    /// Whether the link is cut either way.
    pub(crate) fn cut_any(&self) -> bool {
        self.cut.contains(&true)
    }

    pub(crate) fn alive(&self, i: usize) -> bool {
        self.nodes[i].life.is_some()
    }

    pub(crate) fn synced(&self, i: usize) -> bool {
        self.life(i).is_some_and(|l| l.mirror.synced())
    }

    /// Whether a frame in flight declines a hand-over.
    pub(crate) fn declining(&self) -> bool {
        self.link.iter().flatten().any(|f| {
            parse_records(&f.bytes).is_ok_and(|(_, records)| {
                records.iter().any(|r| {
                    matches!(
                        r,
                        MirrorRecord::Ownership {
                            kind: OwnershipKind::Declined,
                            ..
                        }
                    )
                })
            })
        })
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for n in &self.nodes {
            n.epoch.hash(&mut h);
            n.life.is_some().hash(&mut h);
            if let Some(l) = &n.life {
                l.hash_into(&mut h);
            }
        }
        (self.now, self.cut, self.amnesia, &self.link, &self.archive).hash(&mut h);
        self.took_unheard.hash(&mut h);
        (&self.used, &self.far, &self.accepted).hash(&mut h);
        h.finish()
    }

    /// A fingerprint of what decides properties 3 and 4: the nodes and
    /// their workers, the link and the time; not what was used or sent
    /// before (leaving the pair alone sends nothing on the SAs).
    pub(crate) fn settle_key(&self) -> u64 {
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
