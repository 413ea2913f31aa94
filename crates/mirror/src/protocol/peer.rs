//! The peer's lives: what each is known to store, what a lost one may
//! have done unheard, and the fence that ends one.

use super::*;

/// How many steps (takeover jumps, inbound intervals) past this node's
/// high-water mark a peer life that ended unheard may have run an SA: a
/// run-time add while it held this node's SAs starts two steps past what
/// it knew and runs one more (see `Mirror::peer_lost`).
pub(super) const LOST_LIFE_STEPS: u64 = 3;

impl Mirror {
    /// The peer's current life stores `v` (or more) of SA `key`.
    pub(super) fn tell(&mut self, key: SaKey, v: u64) {
        let e = self.told.entry(key).or_insert(0);
        *e = (*e).max(v);
    }

    /// How much of `value` a start may count as acknowledged: at most
    /// [`LOST_LIFE_STEPS`] less one steps (jumps, intervals) past what the
    /// peer is known to store ([`told`](Self::told)), so that, with the
    /// step it may run past that, a life of this node that dies unheard
    /// stays within the peer's bound for it (see `peer_lost`), whatever
    /// this node alone knew (its own stalled numbers, say).
    pub(super) fn acknowledged(&self, spi: u32, dir: SaDir, value: u64) -> u64 {
        if !self.peer_ran {
            // The peer's life has not run and was sent no whole bulk: should
            // this node die, neither has a memory of the SAs to bound
            // anything by (the pair's documented limit), and holding the
            // start back would only wait on a life that may never sync.
            return value;
        }
        let told = self.told.get(&(spi, dir)).copied().unwrap_or(0);
        let step = match dir {
            SaDir::Outbound => self.jump(spi),
            SaDir::Inbound => self.interval_of(spi, dir),
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
        self.told.clear();
        self.finals.clear();
        self.due.retain(|d| !matches!(d, Due::Record(s) if s.copy));
        self.bulk_out = None;
        if self.peer_ran && !self.fenced {
            self.peer_lost();
        }
        self.marks.clear();
    }

    /// The peer's life is over without this node hearing all of it (it
    /// restarted, or the host fenced it): in that life it may have run SAs
    /// this node owns, unheard. Whatever it did started from values this
    /// node told it: it took one over from one of them plus a step (a jump
    /// outbound, an interval inbound) and ran it a step further, or — the
    /// SA added at run time while it held this node's SAs — started two
    /// steps past and ran one more. So it stayed below this node's
    /// high-water mark plus [`LOST_LIFE_STEPS`] steps: every owned SA moves
    /// past that, and the stored value of every other SA (the peer's, or
    /// one this node lacks) carries the mark plus one step fewer, so
    /// whoever runs it next (a restart, a takeover) starts past it too.
    pub(super) fn peer_lost(&mut self) {
        // An SA the lost life asked about may have run from its first
        // number: it counts as used from 0, and moves below as any other.
        for (spi, dir) in std::mem::take(&mut self.marks) {
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
        let largest_interval = self.largest_interval;
        for ((spi, dir), mark) in retired {
            let steps = LOST_LIFE_STEPS - 1;
            let step = match dir {
                SaDir::Outbound => largest_jump,
                SaDir::Inbound => {
                    // Counted from the first move's history unless news
                    // since went past what the moves stored.
                    let e = self.lost_steps.entry((spi, dir)).or_insert((mark, 0));
                    if mark > e.0.saturating_add(e.1.saturating_mul(largest_interval)) {
                        *e = (mark, 0);
                    }
                    e.1 += steps;
                    largest_interval
                }
            };
            let past = mark.saturating_add(step.saturating_mul(steps));
            self.store(spi, dir, past);
        }
        let keys: Vec<(u32, SaDir)> = self.pair.keys().copied().collect();
        for (spi, dir) in keys {
            match dir {
                SaDir::Outbound => {
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
                SaDir::Inbound => {
                    let Some(i) = self.inbound.get(&spi) else {
                        let mark = self.standby.get(spi, dir).map_or(0, |e| e.value);
                        let past = self.restarted_past(spi, dir, mark, LOST_LIFE_STEPS - 1);
                        self.store(spi, dir, past);
                        continue;
                    };
                    let known = self.standby.get(spi, dir).map_or(0, |e| e.value);
                    let mark = i.value().max(i.sent_top()).max(known);
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
    pub(super) fn restarted_past(&self, spi: u32, dir: SaDir, value: u64, steps: u64) -> u64 {
        (0..steps).fold(value, |v, _| self.restart_point(spi, dir, v))
    }

    /// Switches the lease rule of every owned SA, and tells the workers
    /// their new limits.
    pub(super) fn set_lease(&mut self, on: bool) {
        self.cfg.lease = on;
        for (spi, dir) in self.owned_keys() {
            match dir {
                SaDir::Outbound => {
                    let p = self.policy(spi);
                    if let Some(s) = self.outbound.get_mut(&spi) {
                        s.set_policy(p);
                    }
                }
                SaDir::Inbound => {
                    if let Some(s) = self.inbound.get_mut(&spi) {
                        s.set_lease(on);
                    }
                }
            }
            self.limit_changed(spi, dir);
        }
    }

    /// How long the peer may stay silent before it is declared dead.
    pub(super) fn death_ms(&self) -> u64 {
        self.cfg
            .heartbeat_ms
            .saturating_mul(u64::from(self.cfg.dead_after))
    }
}
