//! The peer's lives: what each is known to store, what a lost one may
//! have done unheard, and the fence that ends one.

use super::*;

/// How many steps (takeover jumps, inbound graces) past this node's
/// high-water mark a peer life that ended unheard may have run an SA: a
/// run-time add while it held this node's SAs starts two steps past what
/// it knew and runs one more (see `Mirror::peer_lost`).
pub(super) const LOST_LIFE_STEPS: u64 = 3;

/// Whether the peer is heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Liveness {
    /// Not heard since this node started.
    Unknown,
    /// Heard, last at this time (ms).
    Alive(u64),
    /// Silent for `dead_after` heartbeats.
    Dead,
    /// Said by the operator or the host to be isolated, and not heard
    /// since: this node's SAs run without leases.
    Fenced,
}

/// What this node knows of the peer: whether it is heard, and what its
/// current life did, was told and asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Peer {
    pub(super) liveness: Liveness,
    /// The life heard last may have run SAs: it said it had synchronised,
    /// or this node sent it every part of a bulk.
    pub(super) ran: bool,
    /// The life heard last said it had synchronised.
    pub(super) synced: bool,
    /// The peer's last frame said its packet flow has failed: nothing is
    /// handed to it.
    pub(super) flow_failed: bool,
    /// The life this node fenced (its epoch), if any: it must restart
    /// before it gets anything back.
    pub(super) fenced_life: Option<u64>,
    /// The life that said goodbye (its epoch), if any: its frames heard
    /// since do not make it alive again.
    pub(super) left_life: Option<u64>,
    /// The life whose goodbye this node refused (its epoch), if any: it
    /// refuses every goodbye of that life.
    pub(super) refused_goodbye: Option<u64>,
    /// This node took the peer's SAs over while the peer was silent and
    /// has not handed them back since (the host orders a takeover once per
    /// failure, and the hand-back ends it; a peer that is heard for a
    /// moment, crash-looping or by a late frame, does not): a peer's SA
    /// added while the peer is silent runs here too.
    pub(super) taken_over: bool,
    /// The highest value of each SA the current life is known to store
    /// (its states, acknowledgements, ownership bounds and history
    /// answers). The standby table also holds what only this node knows
    /// (its own final states); what a start counts as acknowledged is
    /// bounded by this ([`acknowledged`](Mirror::acknowledged)), so that a
    /// life of this node that dies unheard stays within what the peer can
    /// bound.
    pub(super) told: BTreeMap<SaKey, u64>,
    /// The values of the first bulk sync sent to the current life (copies
    /// and histories), taken into [`told`](Self::told) once its last part
    /// is sent (see [`bulk_sent`](Mirror::bulk_sent)); each later bulk only
    /// repeats or raises these. Empty once taken in, `None` before any
    /// bulk went to this life.
    pub(super) bulk_told: Option<BTreeMap<SaKey, u64>>,
    /// SAs the current life asked about: it may run them from their first
    /// number once answered, unheard, so a loss of that life (its restart,
    /// or a fence) counts them as used from 0
    /// ([`peer_lost`](Mirror::peer_lost)). Not a stored value: a question
    /// is no use, and a later answer (to the same life asking again, or to
    /// this node's own add) must not read it as one.
    pub(super) marks: BTreeSet<SaKey>,
}

impl Peer {
    pub(super) fn new() -> Self {
        Peer {
            liveness: Liveness::Unknown,
            ran: false,
            synced: false,
            flow_failed: false,
            fenced_life: None,
            left_life: None,
            refused_goodbye: None,
            taken_over: false,
            told: BTreeMap::new(),
            bulk_told: None,
            marks: BTreeSet::new(),
        }
    }

    /// Whether the peer is heard.
    pub(super) fn alive(&self) -> bool {
        matches!(self.liveness, Liveness::Alive(_))
    }

    /// Whether the peer is fenced and not heard since.
    pub(super) fn fenced(&self) -> bool {
        self.liveness == Liveness::Fenced
    }

    /// A new life of the peer is heard: nothing is known of what it ran
    /// or was sent.
    pub(super) fn new_life(&mut self) {
        self.ran = false;
        self.synced = false;
        self.bulk_told = None;
    }

    /// The peer's current life stores `v` (or more) of SA `key`.
    pub(super) fn tell(&mut self, key: SaKey, v: u64) {
        let e = self.told.entry(key).or_insert(0);
        *e = (*e).max(v);
    }
}

impl Mirror {
    /// A frame of the peer's life `epoch` was accepted at `now_ms`
    /// (`new_life`: the first of that life). A peer heard again, or in a
    /// new life, is announced; a fence is over once the peer is heard:
    /// leases again, and the peer learns how far the SAs went from their
    /// states.
    pub(super) fn heard(&mut self, now_ms: u64, epoch: u64, new_life: bool) {
        if self.peer.left_life == Some(epoch) {
            return;
        }
        let was = std::mem::replace(&mut self.peer.liveness, Liveness::Alive(now_ms));
        if matches!(was, Liveness::Alive(_)) && !new_life {
            return;
        }
        self.events.push_back(MirrorEvent::PeerAlive { epoch });
        if was == Liveness::Fenced {
            self.lease_changed();
        }
    }

    /// The peer's life says it has synchronised: it holds a whole bulk,
    /// what the first one carried (or more), which every later one repeats
    /// or raises.
    pub(super) fn peer_says_synced(&mut self) {
        self.peer.ran = true;
        self.peer.synced = true;
        if self.bulk_out.take().is_some() {
            self.bulk_sent();
        }
    }

    /// How much of `value` a start may count as acknowledged: at most
    /// [`LOST_LIFE_STEPS`] less one steps (jumps, intervals) past what the
    /// peer is known to store ([`told`](Peer::told)), so that, with the
    /// step it may run past that, a life of this node that dies unheard
    /// stays within the peer's bound for it (see `peer_lost`), whatever
    /// this node alone knew (its own stalled numbers, say).
    pub(super) fn acknowledged(&self, spi: u32, dir: Direction, value: u64) -> u64 {
        if !self.peer.ran {
            // The peer's life has not run and was sent no whole bulk: should
            // this node die, neither has a memory of the SAs to bound
            // anything by (the pair's documented limit), and holding the
            // start back would only wait on a life that may never sync.
            return value;
        }
        let told = self.peer.told.get(&(spi, dir)).copied().unwrap_or(0);
        let step = match dir {
            Direction::Outbound => self.jump(spi),
            Direction::Inbound => self.cfg.inbound_grace,
        };
        value.min(told.saturating_add(step.saturating_mul(LOST_LIFE_STEPS - 1)))
    }

    /// The peer came back in a new epoch, its memory gone: what its lost
    /// life did is out of reach ([`peer_lost`](Self::peer_lost)), and the
    /// bulk built for it is dropped (what was sent went to the dead one):
    /// the new life asks for its own. A life runs nothing before its bulk
    /// sync, so one that never said it had synchronised and was never sent
    /// a whole bulk by
    /// this node used nothing (a crash-looping peer moves nothing). After
    /// a fence the SAs moved past the fenced life already, and no life
    /// since could use them: this node sends a bulk only to a life it
    /// hears, and the first frame heard is this one.
    pub(super) fn peer_restarted(&mut self) {
        // The new life stores nothing of what the lost one was told, and
        // learns this node's run of SAs it took over from the bulk.
        self.peer.told.clear();
        self.changes.finals.clear();
        self.leave.unheard_runs.clear();
        self.outbox
            .due
            .retain(|d| !matches!(d, Due::Record(s) if s.copy));
        self.bulk_out = None;
        if self.peer.ran && !self.peer.fenced() {
            self.peer_lost();
        } else if self.peer.fenced() {
            // After a fence each inbound SA ran to bounds only this node
            // knew. The new life runs nothing before it holds a bulk built
            // from now on, which carries them: they count as acknowledged,
            // so the lease that returns when it is heard does not hold the
            // SAs back until it has synchronised.
            for i in self.inbound.values_mut() {
                i.count_reported();
            }
        }
        for i in self.inbound.values_mut() {
            i.set_exact(false);
        }
        self.peer.marks.clear();
    }

    /// The peer's life is over without this node hearing all of it (it
    /// restarted, or the host fenced it): in that life it may have run SAs
    /// this node owns, unheard. Whatever it did started from values this
    /// node told it: it took one over from one of them plus a step (a jump
    /// outbound, `inbound_grace` inbound) and ran it a step further, or — the
    /// SA added at run time while it held this node's SAs — started two
    /// steps past and ran one more. So it stayed below this node's
    /// high-water mark plus [`LOST_LIFE_STEPS`] steps: every owned SA moves
    /// past that, and the stored value of every other SA (the peer's, or
    /// one this node lacks) carries the mark plus one step fewer, so
    /// whoever runs it next (a restart, a takeover) starts past it too.
    pub(super) fn peer_lost(&mut self) {
        // An SA the lost life asked about may have run from its first
        // number: it counts as used from 0, and moves below as any other.
        for (spi, dir) in std::mem::take(&mut self.peer.marks) {
            self.store(spi, dir, 0);
        }
        // SAs this node does not have (deleted here, or known only from
        // the peer's records): the largest step an SA of theirs may have.
        let retired: Vec<(SaKey, u64)> = self
            .standby
            .iter()
            .filter(|(k, _)| !self.pair.contains_key(k))
            .map(|(k, e)| (k, e.value))
            .collect();
        let largest_jump = self.cfg.takeover_jump.max(self.cfg.takeover_jump_32);
        for ((spi, dir), mark) in retired {
            let steps = LOST_LIFE_STEPS - 1;
            let step = match dir {
                Direction::Outbound => largest_jump,
                Direction::Inbound => self.cfg.inbound_grace,
            };
            let past = mark.saturating_add(step.saturating_mul(steps));
            self.store(spi, dir, past);
        }
        let keys: Vec<(u32, Direction)> = self.pair.keys().copied().collect();
        for (spi, dir) in keys {
            match dir {
                Direction::Outbound => {
                    let jump = self.jump(spi);
                    let mut mark = self.standby.get(spi, dir).map_or(0, |e| e.value);
                    if let Some(o) = self.outbound.get(&spi) {
                        mark = mark.max(o.used_bound());
                    }
                    let past = mark.saturating_add(jump.saturating_mul(LOST_LIFE_STEPS - 1));
                    self.store(spi, dir, past);
                    if let Some(o) = self.outbound.get_mut(&spi) {
                        let start = o.peer_restarted(jump.saturating_mul(LOST_LIFE_STEPS), mark);
                        self.activated(spi, dir, start, Vec::new());
                    }
                }
                Direction::Inbound => {
                    let Some(i) = self.inbound.get(&spi) else {
                        let mark = self.standby.get(spi, dir).map_or(0, |e| e.value);
                        let past = self.restarted_past(spi, dir, mark, LOST_LIFE_STEPS - 1);
                        self.store(spi, dir, past);
                        continue;
                    };
                    let known = self.standby.get(spi, dir).map_or(0, |e| e.value);
                    // With no grace the lost life accepted nothing past what
                    // it stored of this node's run (a bound this node sent,
                    // everything at and below it seen there): only what it
                    // reported of its own runs moves the SA, not this node's
                    // own bound, whose numbers past the top the far end may
                    // still send (reader40's find 2).
                    let mark = if self.cfg.inbound_grace == 0 {
                        i.top().max(known)
                    } else {
                        i.value().max(i.sent_top()).max(known)
                    };
                    let start = self.restarted_past(spi, dir, mark, LOST_LIFE_STEPS);
                    // The window's bits count from its top, the mark may be
                    // a stalled number past it.
                    let stored = Standby {
                        value: mark,
                        bitmap: raised(i.bitmap(), mark - i.top()),
                        ..Standby::default()
                    };
                    let (window, kept) = self.restart_window((spi, dir), &stored, start);
                    if let Some(i) = self.inbound.get_mut(&spi)
                        && i.peer_lost(start, kept)
                    {
                        self.activated(spi, dir, start, window);
                    }
                }
            }
        }
    }

    /// The restart point of `value` taken `steps` times.
    pub(super) fn restarted_past(&self, spi: u32, dir: Direction, value: u64, steps: u64) -> u64 {
        (0..steps).fold(value, |v, _| self.step_past(spi, dir, v))
    }

    /// Whether owned SAs obey leases now: as configured, unless the peer
    /// is fenced.
    pub(super) fn lease(&self) -> bool {
        self.cfg.lease && !self.peer.fenced()
    }

    /// The lease rule changed (a fence began or ended): every owned SA
    /// takes it, and the workers learn their new limits.
    pub(super) fn lease_changed(&mut self) {
        let on = self.lease();
        for (spi, dir) in self.owned_keys() {
            match dir {
                Direction::Outbound => {
                    let p = self.policy(spi);
                    if let Some(s) = self.outbound.get_mut(&spi) {
                        s.set_policy(p);
                    }
                }
                Direction::Inbound => {
                    if let Some(s) = self.inbound.get_mut(&spi) {
                        s.set_lease(on);
                    }
                }
            }
            self.limit_changed(spi, dir);
        }
    }
}
