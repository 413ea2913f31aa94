//! Where owned SAs start and stop: restart points and windows, the
//! limits the workers obey, recovery from a stored value, release.

use super::*;

impl Mirror {
    /// The floor of an SA's restart points (0 without one).
    pub(super) fn floor(&self, spi: u32, dir: Direction) -> u64 {
        self.floors.get(&(spi, dir)).copied().unwrap_or(0)
    }

    /// The takeover jump of an outbound SA.
    pub(super) fn jump(&self, spi: u32) -> u64 {
        let esn = self
            .pair
            .get(&(spi, Direction::Outbound))
            .is_some_and(|p| p.esn);
        if esn {
            self.cfg.takeover_jump
        } else {
            self.cfg.takeover_jump_32
        }
    }

    /// Where an SA whose stored state is `value` may start again without
    /// reusing anything an earlier owner (or an earlier life of this node)
    /// could have used: outbound owners stay below their acknowledged
    /// lease plus `jump - quantity`, inbound ones at or below their
    /// acknowledged bound, and every acknowledged lease or bound is
    /// stored. Strict and lenient inbound SAs both start at the stored
    /// bound; they differ in the window below it (`restart_window`).
    pub(super) fn restart_point(&self, spi: u32, dir: Direction, value: u64) -> u64 {
        let point = match dir {
            Direction::Outbound => value.saturating_add(self.jump(spi)).max(1),
            Direction::Inbound => value,
        };
        point.max(self.floor(spi, dir))
    }

    /// One step past `value` of what a life the peer lost unheard may
    /// have done (see `peer_lost`): a takeover jump outbound; inbound
    /// `inbound_grace`, the most it accepted past what it knew unheard
    /// (strict; lenient does not step: its restarts keep within that
    /// mode's documented bound).
    pub(super) fn step_past(&self, spi: u32, dir: Direction, value: u64) -> u64 {
        let point = match dir {
            Direction::Outbound => value.saturating_add(self.jump(spi)).max(1),
            Direction::Inbound => match self.cfg.inbound_takeover {
                InboundTakeover::Strict => value.saturating_add(self.cfg.inbound_grace),
                InboundTakeover::Lenient => value,
            },
        };
        point.max(self.floor(spi, dir))
    }

    /// How far an SA started at `start` by a takeover may run before the
    /// peer acknowledges anything of it (its ownership record carries it,
    /// so a peer that hears of the takeover stores it), as far as
    /// [`acknowledged`](Self::acknowledged) allows. Outbound its start (the
    /// lease's slack lets it run on). Inbound `inbound_grace` past it when
    /// the peer cannot acknowledge its bounds (silent, or it declined the
    /// SA: it lacks it); with the peer heard and holding the SA, the start
    /// itself: the peer acknowledges the bounds it reports, as for any
    /// owner, and should this node die, the peer's own takeover starts
    /// where this one's reports got to, not a grace past it.
    pub(super) fn taken_reach(&self, spi: u32, dir: Direction, start: u64) -> u64 {
        let acknowledging =
            self.peer.alive() && !self.pair.get(&(spi, dir)).is_some_and(|p| p.declined);
        match dir {
            Direction::Outbound => start,
            Direction::Inbound if acknowledging => start,
            Direction::Inbound => start.saturating_add(self.cfg.inbound_grace),
        }
    }

    /// The replay window an inbound SA restarts with at `start` from its
    /// stored state: for the worker, and as kept for records. Strict: all
    /// seen at and below the new top (the worker's copy as long as the
    /// largest window). Lenient: the stored window [`raised`] to the top
    /// (what lies between the stored top and the start is seen: a holder
    /// may have accepted it, and its report may be on its way), unless the
    /// top is the SA's floor or the stored value came with no window (a
    /// history, an ownership record's bound, a forgotten use an
    /// acknowledgement reveals): then all seen there too, since nothing
    /// tells which of the numbers below it were accepted.
    pub(super) fn restart_window(
        &self,
        (spi, dir): SaKey,
        stored: &Standby,
        start: u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let lenient = self.cfg.inbound_takeover == InboundTakeover::Lenient
            && start > self.floor(spi, dir)
            && !stored.bitmap.is_empty();
        match dir {
            Direction::Outbound => (Vec::new(), Vec::new()),
            Direction::Inbound if lenient => {
                let b = raised(&stored.bitmap, start.saturating_sub(stored.value));
                (b.clone(), b)
            }
            Direction::Inbound => (
                vec![u64::MAX; mirror::MAX_BITMAP_WORDS],
                vec![u64::MAX; stored.bitmap.len()],
            ),
        }
    }

    /// Stores `value` for an SA in the standby table (merged by maximum).
    pub(super) fn store(&mut self, spi: u32, dir: Direction, value: u64) {
        self.standby.merge(&SaState {
            spi,
            dir,
            value,
            bytes: 0,
            packets: 0,
            sent_to: 0,
            bitmap: Vec::new(),
            copy: false,
        });
    }

    /// The send policy of outbound SA `spi`.
    pub(super) fn policy(&self, spi: u32) -> OutboundPolicy {
        let c = self.cfg;
        let (interval, quantity) = self
            .pair
            .get(&(spi, Direction::Outbound))
            .map_or((c.interval, c.quantity), |p| (p.interval, p.quantity));
        OutboundPolicy::new(interval, quantity, self.lease(), self.jump(spi))
    }

    /// Starts owning an SA at `start` (outbound: next sequence number, with
    /// `acked` the value the peer stores for it; inbound: window top).
    pub(super) fn own(
        &mut self,
        spi: u32,
        dir: Direction,
        start: u64,
        acked: u64,
        bitmap: Vec<u64>,
    ) {
        match dir {
            Direction::Outbound => {
                let policy = self.policy(spi);
                self.outbound
                    .insert(spi, OwnedOutbound::starting_at(policy, start, acked));
            }
            Direction::Inbound => {
                let policy = InboundPolicy {
                    interval: self.interval_of(spi, dir),
                    ahead_ms: self.cfg.inbound_ahead_ms,
                    lease: self.lease(),
                };
                self.inbound
                    .insert(spi, OwnedInbound::starting_at(policy, start, bitmap, acked));
            }
        }
        self.enqueue((spi, dir));
    }

    /// Tells the node an SA is to run from `start` here, and queues its
    /// state for the peer.
    pub(super) fn activated(&mut self, spi: u32, dir: Direction, start: u64, bitmap: Vec<u64>) {
        if dir == Direction::Outbound {
            self.run_started(spi);
        }
        self.events.push_back(MirrorEvent::Activate {
            spi,
            dir,
            start,
            bitmap,
        });
        self.enqueue((spi, dir));
    }

    /// Tells the node an owned SA's limit now.
    pub(super) fn limit_changed(&mut self, spi: u32, dir: Direction) {
        if let Some(limit) = self.limit_of(spi, dir) {
            self.events
                .push_back(MirrorEvent::LimitRaised { spi, dir, limit });
        }
    }

    /// Every SA this node owns now.
    pub(super) fn owned_keys(&self) -> Vec<SaKey> {
        self.outbound
            .keys()
            .map(|s| (*s, Direction::Outbound))
            .chain(self.inbound.keys().map(|s| (*s, Direction::Inbound)))
            .collect()
    }

    /// Stops owning an SA: records in the standby table how far this node
    /// could have gone, emits `Deactivate`, and returns that final state.
    pub(super) fn release(&mut self, spi: u32, dir: Direction) -> Option<SaState> {
        let fin = self.take_final(spi, dir)?;
        self.events.push_back(MirrorEvent::Deactivate { spi, dir });
        Some(fin)
    }

    /// Stops owning an SA without a word to the workers (it is released,
    /// or deleted): its final state, kept in the standby table.
    pub(super) fn take_final(&mut self, spi: u32, dir: Direction) -> Option<SaState> {
        self.final_state(spi, dir, None)
    }

    /// [`take_final`](Self::take_final), with the final value `exact`
    /// when the workers' own final state is known (an exact hand-over):
    /// else how far this node could have gone. An exact inbound state
    /// carries no window: everything at and below its top counts as seen.
    pub(super) fn final_state(
        &mut self,
        spi: u32,
        dir: Direction,
        exact: Option<u64>,
    ) -> Option<SaState> {
        self.adds.asking.remove(&(spi, dir));
        let fin = match dir {
            Direction::Outbound => {
                let s = self.outbound.remove(&spi)?;
                let (_, bytes, packets) = s.counters();
                SaState {
                    spi,
                    dir,
                    value: exact.unwrap_or_else(|| s.used_bound()),
                    bytes,
                    packets,
                    sent_to: s.sent_to(),
                    bitmap: Vec::new(),
                    copy: false,
                }
            }
            Direction::Inbound => {
                // What it reported, a stall past the window included:
                // the peer may have taken it over from there.
                let s = self.inbound.remove(&spi)?;
                let (bytes, packets) = s.counters();
                let value = exact.unwrap_or_else(|| s.value().max(s.sent_top()));
                SaState {
                    spi,
                    dir,
                    value,
                    bytes,
                    packets,
                    sent_to: 0,
                    bitmap: match exact {
                        Some(_) => Vec::new(),
                        // Up to its bound, the worker may have accepted.
                        None => raised(s.bitmap(), value - s.top()),
                    },
                    copy: false,
                }
            }
        };
        if self.outbox.queued.remove(&(spi, dir)) {
            self.outbox.due.retain(|d| *d != Due::Owned(spi, dir));
        }
        self.standby.merge(&fin);
        // No start of it in this life goes below where this run may have
        // reached: not even an exact hand-over back, whose giver may not
        // know of this run (one a fence let run while the giver, cut off,
        // held the SA too).
        let floor = self.floors.entry((spi, dir)).or_insert(0);
        *floor = (*floor).max(fin.value);
        Some(fin)
    }

    /// A copy of one of this node's SAs from the peer's standby table (bulk
    /// sync, hand-back): the SA restarts beyond anything used before.
    /// Returns whether it moved (and so was activated again).
    pub(super) fn recover(&mut self, spi: u32, dir: Direction, value: u64, bitmap: &[u64]) -> bool {
        let start = self.restart_point(spi, dir, value);
        let window = match dir {
            Direction::Outbound => {
                let moved = self
                    .outbound
                    .get_mut(&spi)
                    .is_some_and(|o| o.recover(start, value));
                moved.then(Vec::new)
            }
            Direction::Inbound => {
                // What this node's own window saw stays seen (a lenient
                // window keeps its bits; a stored one may know less). A
                // value with no window (`bitmap` empty) stays without one:
                // the restart takes everything at and below it as seen.
                let own = self.inbound.get(&spi).map(|i| (i.top(), i.bitmap()));
                let bitmap = match own {
                    Some((top, mine)) if value >= top && !bitmap.is_empty() => {
                        union(bitmap, &rebase(mine, value - top))
                    }
                    _ => bitmap.to_vec(),
                };
                let stored = Standby {
                    value,
                    bitmap,
                    ..Standby::default()
                };
                let (window, kept) = self.restart_window((spi, dir), &stored, start);
                let moved = self
                    .inbound
                    .get_mut(&spi)
                    .is_some_and(|i| i.recover(start, kept, value));
                moved.then_some(window)
            }
        };
        let Some(window) = window else {
            return false;
        };
        self.activated(spi, dir, start, window);
        true
    }
}
