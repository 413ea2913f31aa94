//! Who runs each SA of the pair: the owner and its generation, changes
//! and hand-overs to and from the peer, and their confirmation.

use super::peer::LOST_LIFE_STEPS;
use super::*;

/// An ownership record on the wire, its record header included.
pub(super) const OWNERSHIP_LEN: usize = mirror::RECORD_HEADER_LEN + 32;
/// Unconfirmed ownership changes a refresh sends again, at most.
const RESEND_PER_REFRESH: usize = 4096;

/// One SA of the pair: its settings, its home and who runs it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct PairSa {
    /// Extended sequence numbers (the takeover jump of an ESN SA).
    pub(super) esn: bool,
    /// Reporting interval (outbound `interval`, inbound `inbound_interval`).
    pub(super) interval: u64,
    /// Outbound quantity.
    pub(super) quantity: u64,
    /// The node it runs on while both live.
    pub(super) home: u32,
    /// The node running it now, as far as this node knows.
    pub(super) owner: u32,
    /// Ownership changes so far: a higher one wins.
    pub(super) generation: u64,
    /// Handed to the peer by this node and not confirmed by it since: the
    /// peer may have taken it over meanwhile from anywhere this node knows
    /// nothing of, so it is not taken over again until the peer speaks;
    /// nor are the peer's states of it acknowledged until then.
    pub(super) blind: bool,
    /// The peer's life said it does not have it (it declined a record of
    /// it), and this node runs it for that: not the peer's to hand back,
    /// nor a reason to answer for its addresses, until the peer shows it
    /// has it now (it asks about it, or confirms a record of it), nor to
    /// hand over again (a drain, a failed flow) while that life runs.
    pub(super) declined: bool,
}

impl PairSa {
    /// Whether node `me` runs it for its peer `peer` (its home), to give
    /// back: taken over, and not declined by the peer.
    pub(super) fn held_for(&self, peer: u32, me: u32) -> bool {
        self.home == peer && self.owner == me && !self.declined
    }

    /// Whether this view is the one an ownership record carries.
    pub(super) fn holds(&self, r: &OwnerRecord) -> bool {
        self.owner == r.owner && self.generation == r.generation
    }
}

/// An ownership record to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct OwnerRecord {
    /// Who runs the SA.
    pub(super) owner: u32,
    /// The ownership generation of that.
    pub(super) generation: u64,
    /// What the receiver stores of the SA before it may act on it again
    /// (see [`bound`](Mirror::bound), and a hand-over's start).
    pub(super) bound: u64,
    /// Change, hand-over or confirmation.
    pub(super) kind: OwnershipKind,
}

impl OwnerRecord {
    /// The wire record of it, for SA `(spi, dir)`.
    pub(super) fn record(self, (spi, dir): SaKey) -> MirrorRecord {
        MirrorRecord::Ownership {
            spi,
            dir,
            owner: self.owner,
            generation: self.generation,
            bound: self.bound,
            kind: self.kind,
        }
    }
}

/// The ownership changes this node made that the peer has yet to take in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Changes {
    /// Changes sent and not yet confirmed by the peer: sent again at every
    /// refresh, so a lost record cannot leave an SA with no owner.
    pub(super) unconfirmed: BTreeMap<SaKey, OwnerRecord>,
    /// Where the next refresh goes on sending unconfirmed changes again.
    pub(super) resend_from: Option<SaKey>,
    /// Final states of SAs the peer took over while this node ran them (a
    /// split brain), sent as copies again at every refresh until the peer
    /// answers that it runs the SA past one (`Past`; its states and its
    /// history answers cannot say so: their value may be a stalled
    /// number). Until then this node's stored value holds its own run, and
    /// acknowledging it would lift the peer's limit over that run.
    pub(super) finals: BTreeMap<SaKey, SaState>,
    /// The highest ownership generation of the pair (for heartbeats,
    /// without a walk over every SA).
    pub(super) max_generation: u64,
}

impl Mirror {
    /// Starts running an SA here as a takeover does: past its stored value
    /// (0 if none) by the jump, under ownership `generation`. The peer's SA
    /// added here at run time and not spoken of since starts a step
    /// further: the peer may be alive behind a cut link and run it from its
    /// first number, as far as its slack allows, or (if this node ran it
    /// before it was deleted) have taken it over from a value this node
    /// reported and run it as far as its own lease.
    pub(super) fn take(&mut self, key: SaKey, generation: u64) {
        let mut known = self.standby.get(key.0, key.1).map_or(0, |s| s.value);
        if self.adds.unheard.contains(&key) {
            known = self.step_past(key.0, key.1, known);
        }
        self.take_from(key, generation, known);
    }

    /// Starts running an SA this node handed to the peer and the peer
    /// never confirmed, the peer being silent (dead, or cut off): left
    /// blind, it would run nowhere until the peer came back. Whatever the
    /// peer's life did with it started from values this node told it (the
    /// hand-over's bound, or a takeover of its own from a reported value)
    /// and stayed below this node's high-water mark of the SA plus
    /// [`LOST_LIFE_STEPS`] steps, as any lost life does (see
    /// [`peer_lost`](Self::peer_lost)): the SA starts past that, and the
    /// peer, should it be alive, loses it to this change's higher
    /// generation once heard.
    pub(super) fn take_blind(&mut self, key: SaKey, generation: u64) {
        let (spi, dir) = key;
        let mark = self.standby.get(spi, dir).map_or(0, |s| s.value);
        let past = self.restarted_past(spi, dir, mark, LOST_LIFE_STEPS - 1);
        if let Some(p) = self.pair.get_mut(&key) {
            p.blind = false;
        }
        self.take_from(key, generation, past);
    }

    /// Starts running an SA here as a takeover from `value` does (the
    /// stored window, where one is kept, moved up to it).
    pub(super) fn take_from(&mut self, (spi, dir): SaKey, generation: u64, value: u64) {
        let mut stored = self.standby.get(spi, dir).cloned().unwrap_or_default();
        if value > stored.value {
            stored.bitmap = raised(&stored.bitmap, value - stored.value);
            stored.value = value;
        }
        let start = self.restart_point(spi, dir, stored.value);
        let (window, kept) = self.restart_window((spi, dir), &stored, start);
        // The ownership record carries how far the SA may run unheard; the
        // peer stores it before it can act on this SA again, so it counts
        // as acknowledged.
        let reach = self.taken_reach(spi, dir, start);
        let record = OwnerRecord {
            owner: self.cfg.node,
            generation,
            bound: reach,
            kind: OwnershipKind::Change,
        };
        self.set_owner((spi, dir), record);
        // Until the peer confirms a record of it, this run may be news to
        // the peer for good: no goodbye meanwhile. A final of an earlier
        // run here is superseded (its `Past`, late, would say nothing of
        // this run).
        self.leave.unheard_runs.insert((spi, dir));
        self.changes.finals.remove(&(spi, dir));
        let acked = self.acknowledged(spi, dir, reach);
        self.own(spi, dir, start, acked, kept);
        self.activated(spi, dir, start, window);
    }

    /// Makes a change of this node's view of who runs an SA, and sends it
    /// until the peer confirms it.
    pub(super) fn set_owner(&mut self, key: SaKey, record: OwnerRecord) {
        if let Some(p) = self.pair.get_mut(&key) {
            p.owner = record.owner;
            p.generation = record.generation;
            self.changes.max_generation = self.changes.max_generation.max(record.generation);
            self.outbox.ownership.insert(key, record);
            self.changes.unconfirmed.insert(key, record);
        }
    }

    /// What an ownership record of this SA carries: for an SA owned here,
    /// what it reported (its states' value), as an answer to a query
    /// carries ([`history_of`](Self::history_of)); else the stored value.
    /// Not how far it may go: the peer stores the record's value and
    /// acknowledges the next state with it, and a value above any state
    /// sent reads as an earlier use this node forgot, which it moves past
    /// (a jump at every bulk sent, and at every hand-back). The peer's
    /// acknowledged lease bounds the owner whatever the record says.
    pub(super) fn bound(&self, spi: u32, dir: Direction) -> u64 {
        match (dir, self.outbound.get(&spi), self.inbound.get(&spi)) {
            (Direction::Outbound, Some(o), _) => o.sent_lease(),
            (Direction::Inbound, _, Some(i)) => i.sent_top(),
            _ => self.standby.get(spi, dir).map_or(0, |s| s.value),
        }
    }

    /// An ownership record from the peer: a change (or hand-over) to take
    /// in and confirm (or decline, for an SA this node does not have), or
    /// the peer's confirmation or refusal of one of this node's.
    pub(super) fn ownership(&mut self, key: SaKey, record: OwnerRecord) {
        let OwnerRecord {
            owner,
            generation,
            bound: start,
            kind,
        } = record;
        if owner != self.cfg.node {
            // Whoever owns it may use numbers up to `start` plus slack
            // without further word: store it before anything else.
            self.store(key.0, key.1, start);
        }
        let matches = |p: &PairSa| p.owner == owner && p.generation == generation;
        if !self.pair.contains_key(&key) {
            self.stats.records_ignored += 1;
            if matches!(
                kind,
                OwnershipKind::Change | OwnershipKind::Handover | OwnershipKind::Exact
            ) {
                // Handed (or said to run) an SA this node was never given,
                // or deleted: left unanswered, the sender would wait on it
                // for good, a hand-over run by nobody.
                self.decline(key, owner, generation);
            }
            return;
        }
        if kind == OwnershipKind::Declined {
            self.declined(key, owner, generation);
            return;
        }
        if owner == self.cfg.node && kind != OwnershipKind::Confirm && self.gone() {
            // This life said goodbye and runs nothing more: the SA is not
            // its to run (a hand-over that crossed the goodbye).
            self.decline(key, owner, generation);
            return;
        }
        if kind == OwnershipKind::Confirm {
            if self
                .changes
                .unconfirmed
                .get(&key)
                .is_some_and(|r| r.owner == owner && r.generation == generation)
            {
                // The peer stored the record's bound: how far this node's
                // run went, or may go without its acknowledgement.
                self.changes.unconfirmed.remove(&key);
                self.leave.unheard_runs.remove(&key);
            }
            // The peer has spoken of the SA (its bound is stored above).
            match self.pair.get_mut(&key) {
                Some(p) if matches(p) => {
                    p.blind = false;
                    p.declined = false;
                    self.adds.unheard.remove(&key);
                }
                // A view this node's earlier add of the SA gave the peer
                // (before a delete and this add): the peer's view now, as
                // a change would carry it.
                Some(p) if generation > p.generation => {
                    self.change(key, owner, generation, start, OwnershipKind::Change)
                }
                _ => {}
            }
            return;
        }
        self.change(key, owner, generation, start, kind);
        // Tell the sender its view is taken in, so it stops sending the
        // record again.
        if self.pair.get(&key).is_some_and(matches) {
            let confirm = OwnerRecord {
                owner,
                generation,
                bound: self.bound(key.0, key.1),
                kind: OwnershipKind::Confirm,
            };
            self.outbox.ownership.insert(key, confirm);
        }
    }

    /// Answers the peer's record of `key` (`owner`, `generation`) with a
    /// refusal: this node will not run it, and stores what it knows.
    fn decline(&mut self, key: SaKey, owner: u32, generation: u64) {
        let declined = OwnerRecord {
            owner,
            generation,
            bound: self.standby.get(key.0, key.1).map_or(0, |s| s.value),
            kind: OwnershipKind::Declined,
        };
        self.outbox.ownership.insert(key, declined);
    }

    /// The peer's life does not have an SA this node sent it a record of.
    /// An SA this node handed over to it (still blind: unconfirmed) runs
    /// nowhere: it runs here again, as a takeover from all this node
    /// stored (the peer's earlier lives are bounded there as for any
    /// takeover), marked `declined`: a hand-back would give it to a node
    /// that declines it, and counted as held for the peer it would have
    /// this node answer for the live peer's addresses. Any other record
    /// stays unconfirmed and goes again at each refresh: a view that names
    /// the peer (a bulk's, to a life started from a file without the SA)
    /// is usually followed by the host adding the SA there, and taken
    /// here it would run away from its flows.
    fn declined(&mut self, key: SaKey, owner: u32, generation: u64) {
        let handed = self.pair.get(&key).is_some_and(|p| {
            p.blind && p.owner == owner && p.generation == generation && owner == self.cfg.peer
        });
        if handed && self.synced() {
            if let Some(p) = self.pair.get_mut(&key) {
                p.blind = false;
                p.declined = true;
            }
            self.take(key, generation + 1);
        }
    }

    /// Takes in an ownership change if it wins over this node's view.
    pub(super) fn change(
        &mut self,
        (spi, dir): SaKey,
        owner: u32,
        generation: u64,
        start: u64,
        kind: OwnershipKind,
    ) {
        let me = self.cfg.node;
        let Some(p) = self.pair.get(&(spi, dir)).copied() else {
            self.stats.records_ignored += 1;
            return;
        };
        // A higher generation wins; equal generations with different owners
        // (both sides changed at once) go to the lower node id.
        let wins = generation > p.generation
            || (generation == p.generation && owner != p.owner && owner < p.owner);
        if !wins {
            return;
        }
        if let Some(e) = self.pair.get_mut(&(spi, dir)) {
            e.owner = owner;
            e.generation = generation;
            e.blind = false;
            self.changes.max_generation = self.changes.max_generation.max(generation);
        }
        self.adds.unheard.remove(&(spi, dir));
        // What this node sent about the SA before is superseded.
        self.changes.unconfirmed.remove(&(spi, dir));
        let handover = matches!(kind, OwnershipKind::Handover | OwnershipKind::Exact);
        if p.owner == me && owner != me {
            // The peer took it over while this node ran it (a split
            // brain). It started past what it knew of this node's run,
            // which that run may have passed if the two views of who ran
            // it differed (both took it over): it gets this node's final
            // state as a copy, and moves past it. (Before its bulk sync
            // this node ran nothing: its final is only where it would
            // have started.)
            let fin = self.release(spi, dir);
            if let Some(mut fin) = fin.filter(|_| self.synced()) {
                fin.copy = true;
                self.changes.finals.insert((spi, dir), fin.clone());
                self.outbox.due.push_back(Due::Record(Box::new(fin)));
            }
        } else if p.owner == me && owner == me && handover {
            // Handed an SA this node thinks it runs already (it restarted
            // while the peer held it): it moves past all the peer used.
            self.handed(spi, dir, start);
        } else if p.owner != me && owner == me {
            let stored = self.standby.get(spi, dir).cloned().unwrap_or_default();
            if kind == OwnershipKind::Exact {
                // Nothing at or past `start` was used or accepted by the
                // sender (see `leave`), nor by this node unless a run of its
                // own that the sender did not know of reached further (its
                // floor): the SA goes on from there, the sender having
                // stored `start`.
                let floor = self.floor(spi, dir);
                let (begin, window) = match dir {
                    Direction::Outbound => (start.max(floor).max(1), Vec::new()),
                    Direction::Inbound => {
                        (start.max(floor), vec![u64::MAX; mirror::MAX_BITMAP_WORDS])
                    }
                };
                let kept = match dir {
                    Direction::Outbound => Vec::new(),
                    Direction::Inbound => vec![u64::MAX; stored.bitmap.len()],
                };
                self.own(spi, dir, begin, start, kept);
                if let Some(i) = self.inbound.get_mut(&spi) {
                    i.set_exact(true);
                }
                self.activated(spi, dir, begin, window);
                return;
            }
            let (begin, acked) = if handover && dir == Direction::Outbound {
                // Handed over: everything either node used lies below
                // `start`, and the sender stored it, so it counts as
                // acknowledged and the SA runs at once.
                (
                    start.max(stored.value).max(self.floor(spi, dir)).max(1),
                    start,
                )
            } else {
                (
                    self.restart_point(spi, dir, stored.value.max(start)),
                    self.acknowledged(spi, dir, stored.value),
                )
            };
            let start = begin;
            let (window, kept) = self.restart_window((spi, dir), &stored, start);
            self.own(spi, dir, start, acked, kept);
            self.activated(spi, dir, start, window);
        }
    }

    /// A hand-over of an SA this node owns already: outbound, it goes on
    /// at `start` at least, with that much acknowledged; inbound, as a
    /// recovery from the stored window.
    pub(super) fn handed(&mut self, spi: u32, dir: Direction, start: u64) {
        match dir {
            Direction::Outbound => {
                let begin = start.max(self.floor(spi, dir)).max(1);
                let moved = self.outbound.get_mut(&spi).map(|o| o.recover(begin, start));
                match moved {
                    Some(true) => self.activated(spi, dir, begin, Vec::new()),
                    Some(false) if self.synced() => self.limit_changed(spi, dir),
                    _ => {}
                }
            }
            Direction::Inbound => {
                // The stored window counts from the stored top: raised to
                // the start when that is higher.
                let stored = self.standby.get(spi, dir).cloned().unwrap_or_default();
                let top = stored.value.max(start);
                let bitmap = raised(&stored.bitmap, top - stored.value);
                self.recover(spi, dir, top, &bitmap);
            }
        }
    }

    /// Final states the peer has not moved past go again while it runs
    /// the SA (one it no longer runs, or this node took back, needs them
    /// no more).
    pub(super) fn resend_finals(&mut self) {
        let peer = self.cfg.peer;
        let pair = &self.pair;
        self.changes
            .finals
            .retain(|k, _| pair.get(k).is_some_and(|p| p.owner == peer));
        for fin in self.changes.finals.values().take(RESEND_PER_REFRESH) {
            self.outbox
                .due
                .push_back(Due::Record(Box::new(fin.clone())));
        }
    }

    /// Changes the peer has not confirmed go again while they are still
    /// this node's view; a slice per refresh, the next going on from where
    /// this one stopped.
    pub(super) fn resend_unconfirmed(&mut self) {
        let from = match self.changes.resend_from.take() {
            Some(k) => self
                .changes
                .unconfirmed
                .range((Bound::Excluded(k), Bound::Unbounded)),
            None => self.changes.unconfirmed.range(..),
        };
        let slice: Vec<(SaKey, OwnerRecord)> = from
            .take(RESEND_PER_REFRESH)
            .map(|(k, r)| (*k, *r))
            .collect();
        if slice.len() == RESEND_PER_REFRESH {
            self.changes.resend_from = slice.last().map(|(k, _)| *k);
        }
        for (k, r) in slice {
            if self.pair.get(&k).is_some_and(|p| p.holds(&r)) {
                self.outbox.ownership.entry(k).or_insert(r);
            } else {
                self.changes.unconfirmed.remove(&k);
            }
        }
    }
}
