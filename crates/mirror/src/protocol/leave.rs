//! A planned hand-over (an operator's drain, a failback): each SA is
//! stopped on its worker first, so the state the worker then reports is
//! final, and handed to the peer with that exact state, which the peer
//! continues from with no jump and no refusal. A node that has handed
//! everything over this way may then leave: its goodbye ends its life
//! with the peer having heard all of it, so the peer neither waits for
//! its leases nor moves its SAs past what that life might have done
//! unheard.
//!
//! **Why an exact start reuses nothing.** Every run of an SA starts past
//! every number any earlier run (of either node, of any life) used or
//! accepted: that is what the protocol's restart points keep. The run
//! being handed over used nothing at or past the exact value: its worker
//! stopped before reporting it (the node's part of the contract), and
//! the SA's limit is 0 from the stop to the hand-over. So everything
//! anyone used lies below the exact value, and the receiver may start
//! there, whatever its standby table says (its values are bounds, which
//! the run being handed over started past).
//!
//! **Why a goodbye may skip the lost-life steps.** A life that dies
//! unheard may have taken SAs over, or run SAs added while it held the
//! peer's, without the peer knowing ([`peer_lost`](Mirror::peer_lost)).
//! A leaving life sends its goodbye only once it runs nothing, the peer
//! has confirmed every ownership change it made (takeovers and hand-overs
//! alike) and no final state waits for the peer's word: every run it
//! made is then either handed over (its bound stored at the peer) or
//! ended under a lease the peer stored. After its goodbye it runs nothing
//! more (its limits are 0), and the peer treats it as fenced: no lease
//! waits on it, and its next life starts from a bulk sync with nothing
//! to move past. Nor does it serve a bulk sync any more: the peer may
//! have taken the goodbye in and run its SAs without leases since, so
//! what it knows is no account of them for a next life of the peer.

use espgate_wire::mirror::GoodbyeKind;

use super::*;

/// Why an SA could not be handed over exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandOverRefused {
    /// This node does not run the SA (any more).
    #[error("the SA does not run here")]
    NotRunning,
    /// The peer is not heard: nobody would run the SA.
    #[error("the peer is not heard")]
    PeerNotHeard,
    /// The peer has not synchronised (or is a fenced life): it could run
    /// nothing handed to it.
    #[error("the peer has not synchronised")]
    PeerNotSynced,
    /// This node has not synchronised since it started: where its SAs
    /// stand is a placeholder, not a state.
    #[error("this node has not synchronised since it started")]
    NotSynced,
    /// The SA was added here at run time and waits for the peer's word of
    /// it: where it stands is a placeholder.
    #[error("the SA waits for the peer's word of it")]
    Asking,
    /// The peer's packet flow has failed: it could carry nothing.
    #[error("the peer's packet flow has failed")]
    PeerFlowFailed,
    /// The peer's life declined the SA (it does not have it): handed to
    /// it again it would come back, a takeover jump further each time.
    #[error("the peer does not have the SA")]
    PeerLacks,
}

/// Why this node may not leave its peer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaveRefused {
    /// The peer is not heard: it would take nothing over.
    #[error("the peer is not heard")]
    PeerNotHeard,
    /// The peer's life has not synchronised (from this node, most
    /// likely): a goodbye would leave it with nobody to finish its bulk
    /// sync, and nothing would run.
    #[error("the peer has not synchronised")]
    PeerNotSynced,
    /// SAs still run here (or are stopped for a hand-over not finished).
    #[error("{0} SAs still run here")]
    Running(usize),
    /// Ownership changes the peer has not confirmed.
    #[error("{0} ownership changes are not confirmed by the peer")]
    Unconfirmed(usize),
    /// Final states of a split brain the peer has not moved past.
    #[error("{0} final states wait for the peer's word")]
    Finals(usize),
    /// SAs this life took over whose run the peer never confirmed (no
    /// record of this node's about them confirmed since the takeover, no
    /// final of them run past), and whose records no longer go (deleted,
    /// or superseded): the peer may never learn how far they ran (a
    /// history record goes once, and may have been lost), and a goodbye
    /// would have it run them on without a lease. Stopped as a crash,
    /// this node's next life moves the peer past them.
    #[error(
        "{0} SAs this node took over ran unconfirmed by the peer: stop the node without a drain"
    )]
    UnheardRuns(usize),
}

/// The hand-overs under way and this node's goodbye.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Leave {
    /// SAs stopped for an exact hand-over: their limit is 0 until it is
    /// done (or they are resumed here).
    pub(super) stopping: BTreeSet<SaKey>,
    /// This node leaves: a goodbye goes in its frames.
    pub(super) leaving: bool,
    /// A goodbye went out: this life runs nothing any more.
    pub(super) said: bool,
    /// The peer's life the goodbye was said to (the only one whose answer
    /// counts: a later life of the peer never heard it, and the one that
    /// did may have taken it in).
    pub(super) said_to: Option<u64>,
    /// The peer answered the goodbye.
    pub(super) heard: bool,
    /// The answer to the peer's goodbye, for the next frame.
    pub(super) answer: Option<GoodbyeKind>,
    /// This node's packet flow has failed: its frames say so.
    pub(super) flow_failed: bool,
    /// SAs this life took over and whose run the peer has not confirmed
    /// since ([`LeaveRefused::UnheardRuns`]): a confirmation of one of
    /// this node's records of the SA, or the peer's word that it runs
    /// past this node's final of it, clears one; a new life of the peer,
    /// synchronised from this node's histories, clears them all.
    pub(super) unheard_runs: BTreeSet<SaKey>,
}

/// Planned hand-overs and leaving.
impl Mirror {
    /// The SAs a drain hands over: every SA this node runs.
    pub fn drain_sas(&self) -> Vec<(u32, Direction)> {
        self.owned_keys()
    }

    /// The SAs a failback hands over: those this node runs for the peer
    /// (their home is the peer), but those the peer's life declined.
    pub fn failback_sas(&self) -> Vec<(u32, Direction)> {
        let (peer, me) = (self.cfg.peer, self.cfg.node);
        self.pair
            .iter()
            .filter(|(k, p)| p.held_for(peer, me) && self.owns(k.0, k.1))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Tells the mirror whether this node's packet flow has failed (a data
    /// port lost its link): while it has, every frame says so, and the
    /// peer hands it nothing (no failback, no drain). The node hands the
    /// SAs it runs over itself ([`stop`](Self::stop) and
    /// [`hand_over_exact`](Self::hand_over_exact), as a drain does); the
    /// peer's failback brings them home once the flow works again.
    pub fn set_flow_failed(&mut self, failed: bool) {
        self.leave.flow_failed = failed;
    }

    /// Whether this node's packet flow has failed, as last set.
    pub fn flow_failed(&self) -> bool {
        self.leave.flow_failed
    }

    /// Whether the peer's last frame said its packet flow has failed.
    pub fn peer_flow_failed(&self) -> bool {
        self.peer.flow_failed
    }

    /// The SAs stopped for a hand-over not yet made.
    pub fn stopped(&self) -> Vec<(u32, Direction)> {
        self.leave.stopping.iter().copied().collect()
    }

    /// Stops an SA this node runs for an exact hand-over: its limit is 0
    /// from now on, and a `Deactivate` tells the node to park it. Once the
    /// worker has parked it and reported its final state, the node calls
    /// [`hand_over_exact`](Self::hand_over_exact) (or
    /// [`resume`](Self::resume), should the hand-over be refused).
    pub fn stop(&mut self, spi: u32, dir: Direction) -> Result<(), HandOverRefused> {
        self.may_hand_over(spi, dir)?;
        self.leave.stopping.insert((spi, dir));
        self.events.push_back(MirrorEvent::Deactivate { spi, dir });
        Ok(())
    }

    /// Hands a stopped SA to the peer with its exact final state, `last`:
    /// outbound, the last sequence number its worker used; inbound, its
    /// window top (the highest number accepted), read once the worker took
    /// every command sent it since the stop. The peer continues from there
    /// (the next number, the numbers above the top); the SA is parked here
    /// again (a `Deactivate`). Refused SAs stay stopped:
    /// [`resume`](Self::resume) runs them here again.
    pub fn hand_over_exact(
        &mut self,
        spi: u32,
        dir: Direction,
        last: u64,
    ) -> Result<(), HandOverRefused> {
        let key = (spi, dir);
        if !self.leave.stopping.contains(&key) {
            return Err(HandOverRefused::NotRunning);
        }
        self.may_hand_over(spi, dir)?;
        let Some(p) = self.pair.get(&key).copied() else {
            return Err(HandOverRefused::NotRunning);
        };
        // Outbound, past everything this node reported too (a worker's
        // report never runs ahead of the worker). Inbound, the worker's
        // top: the bounds this node reported (its top plus what its rate
        // would bring, or a number it refused at the limit) name numbers
        // nobody accepted, and the peer goes on from the top so that they
        // are not refused.
        let bound = match dir {
            Direction::Outbound => {
                let o = &self.outbound[&spi];
                last.max(o.counters().0).saturating_add(1)
            }
            Direction::Inbound => last.max(self.inbound[&spi].top()),
        };
        self.leave.stopping.remove(&key);
        let Some(fin) = self.final_state(spi, dir, Some(bound)) else {
            return Err(HandOverRefused::NotRunning);
        };
        // Parked again: the SA may have been moved (and so activated)
        // since it stopped; at limit 0 it used nothing there.
        self.events.push_back(MirrorEvent::Deactivate { spi, dir });
        let record = OwnerRecord {
            owner: self.cfg.peer,
            generation: p.generation + 1,
            bound,
            kind: OwnershipKind::Exact,
        };
        self.set_owner(key, record);
        if let Some(e) = self.pair.get_mut(&key) {
            e.blind = true;
        }
        self.outbox.due.push_back(Due::Record(Box::new(fin)));
        self.stats.handed_back += 1;
        if self.failback_sas().is_empty() {
            self.peer.taken_over = false;
        }
        Ok(())
    }

    /// Runs a stopped SA here again (its hand-over was refused): it
    /// restarts past `last`, its worker's final state, with its limit
    /// back.
    pub fn resume(&mut self, spi: u32, dir: Direction, last: u64) {
        if !self.leave.stopping.remove(&(spi, dir)) {
            return;
        }
        let (start, window) = match dir {
            Direction::Outbound => match self.outbound.get(&spi) {
                Some(o) => (last.max(o.counters().0).saturating_add(1), Vec::new()),
                None => return,
            },
            Direction::Inbound => match self.inbound.get(&spi) {
                Some(i) => (last.max(i.top()), vec![u64::MAX; mirror::MAX_BITMAP_WORDS]),
                None => return,
            },
        };
        self.activated(spi, dir, start, window);
        self.limit_changed(spi, dir);
    }

    fn may_hand_over(&self, spi: u32, dir: Direction) -> Result<(), HandOverRefused> {
        if !self.owns(spi, dir) {
            return Err(HandOverRefused::NotRunning);
        }
        if !self.synced() {
            return Err(HandOverRefused::NotSynced);
        }
        if self.adds.asking.contains(&(spi, dir)) {
            return Err(HandOverRefused::Asking);
        }
        if !self.peer.alive() {
            return Err(HandOverRefused::PeerNotHeard);
        }
        if !self.peer_synced() {
            return Err(HandOverRefused::PeerNotSynced);
        }
        if self.peer.flow_failed {
            return Err(HandOverRefused::PeerFlowFailed);
        }
        if self.pair.get(&(spi, dir)).is_some_and(|p| p.declined) {
            return Err(HandOverRefused::PeerLacks);
        }
        Ok(())
    }

    /// Ends this node's part in the pair: a goodbye goes to the peer in
    /// every frame until it answers ([`left`](Self::left)); from the first
    /// one on, this life runs nothing. Refused while it runs SAs, while
    /// the peer has not confirmed an ownership change it made, while the
    /// peer's life has not synchronised, and while the peer is not heard
    /// (the node then stops as a crash would, and the peer takes over).
    /// The goodbye waits, should a new life of the peer start meanwhile,
    /// until that life has synchronised.
    pub fn leave(&mut self) -> Result<(), LeaveRefused> {
        if !self.peer.alive() {
            return Err(LeaveRefused::PeerNotHeard);
        }
        if !self.peer_synced() {
            return Err(LeaveRefused::PeerNotSynced);
        }
        let running = self.outbound.len() + self.inbound.len();
        if running > 0 {
            return Err(LeaveRefused::Running(running));
        }
        if !self.changes.unconfirmed.is_empty() {
            return Err(LeaveRefused::Unconfirmed(self.changes.unconfirmed.len()));
        }
        if !self.changes.finals.is_empty() {
            return Err(LeaveRefused::Finals(self.changes.finals.len()));
        }
        if !self.leave.unheard_runs.is_empty() {
            return Err(LeaveRefused::UnheardRuns(self.leave.unheard_runs.len()));
        }
        self.leave.leaving = true;
        Ok(())
    }

    /// The SAs whose runs here the peer has not confirmed
    /// ([`LeaveRefused::UnheardRuns`]).
    pub fn unheard_runs(&self) -> impl Iterator<Item = (u32, Direction)> + '_ {
        self.leave.unheard_runs.iter().copied()
    }

    /// Whether the peer heard this node's goodbye: it holds everything,
    /// and the node may stop.
    pub fn left(&self) -> bool {
        self.leave.heard
    }

    /// Whether a goodbye went out: from then on this life runs nothing
    /// (every limit is 0, and it takes nothing over), whatever becomes of
    /// the peer: the peer may have taken the goodbye in and run this
    /// node's SAs without leases since. The node stops; should the peer
    /// die before it does, the pair runs nothing until one of them starts
    /// again (a double failure).
    pub fn gone(&self) -> bool {
        self.leave.said
    }

    /// Whether an SA's limit is 0 for a hand-over or a goodbye.
    pub(super) fn held_still(&self, spi: u32, dir: Direction) -> bool {
        self.gone() || self.leave.stopping.contains(&(spi, dir))
    }

    /// The goodbye record of the next frame, if any: this node's, once
    /// nothing else waits to go before it, or the answer to the peer's
    /// (if the frame has `room` for it).
    pub(super) fn goodbye(&mut self, nothing_waits: bool, room: bool) -> Option<MirrorRecord> {
        if room && let Some(kind) = self.leave.answer.take() {
            return Some(MirrorRecord::Goodbye { kind });
        }
        if !self.leave.leaving {
            return None;
        }
        let leaving = Some(MirrorRecord::Goodbye {
            kind: GoodbyeKind::Leaving,
        });
        if self.leave.said {
            let same_life = self.filter.epoch() == self.leave.said_to;
            return if same_life && !self.leave.heard && nothing_waits {
                leaving
            } else {
                None
            };
        }
        let runs = !(self.outbound.is_empty()
            && self.inbound.is_empty()
            && self.leave.stopping.is_empty());
        if runs || !self.peer.alive() || !self.leave.unheard_runs.is_empty() {
            // The peer died before a word of it went (nobody would take
            // this node's account), this node runs SAs again (it took
            // some over, and their runs are not confirmed): it does not
            // leave, and runs on.
            self.abandon_leave();
            return None;
        }
        // A life of the peer that started since (and synchronises from
        // this node) is waited for: gone, this node serves no bulk.
        let settled = self.changes.unconfirmed.is_empty()
            && self.changes.finals.is_empty()
            && self.peer_synced();
        if settled && nothing_waits {
            self.leave.said = true;
            self.leave.said_to = self.filter.epoch();
            return leaving;
        }
        None
    }

    /// This node does not leave after all; it runs on, with its limits.
    fn abandon_leave(&mut self) {
        self.leave.leaving = false;
        self.leave.said = false;
        self.leave.said_to = None;
        self.events.push_back(MirrorEvent::LeaveAbandoned);
        for (spi, dir) in self.owned_keys() {
            self.limit_changed(spi, dir);
        }
    }

    /// A goodbye record of the peer's current life: its answer to this
    /// node's, or its own. The first goodbye of a life decides for all of
    /// them: taken in if this node has synchronised, does not leave
    /// itself, and sees that life run nothing (its view names the peer as the owner of no SA), else
    /// refused (that life
    /// ends, when it does, as a crash does, heard in part); either way
    /// answered.
    pub(super) fn goodbye_received(&mut self, kind: GoodbyeKind) {
        match kind {
            GoodbyeKind::Heard | GoodbyeKind::Refused
                if !self.leave.said
                    || self.leave.heard
                    || self.filter.epoch() != self.leave.said_to =>
            {
                return;
            }
            GoodbyeKind::Heard => {
                self.leave.heard = true;
                self.events.push_back(MirrorEvent::Left);
                return;
            }
            GoodbyeKind::Refused => {
                self.abandon_leave();
                return;
            }
            GoodbyeKind::Leaving => {}
        }
        let life = self.filter.epoch();
        if self.peer.left_life.is_some() && self.peer.left_life == life {
            self.leave.answer = Some(GoodbyeKind::Heard);
            return;
        }
        let peer = self.cfg.peer;
        let refused = self.peer.refused_goodbye.is_some() && self.peer.refused_goodbye == life;
        // Not synchronised, this node could run nothing that life leaves;
        // leaving itself, nobody would (each refuses the other's, and
        // both run on).
        let cannot = !self.synced() || self.leave.leaving;
        if refused || cannot || self.pair.values().any(|p| p.owner == peer) {
            self.peer.refused_goodbye = life;
            self.leave.answer = Some(GoodbyeKind::Refused);
            return;
        }
        self.leave.answer = Some(GoodbyeKind::Heard);
        self.peer.left_life = life;
        self.peer.fenced_life = life;
        // An SA that life asked about may have run from its first number
        // before anything of it was stored here (the answer lets it): it
        // counts as used from 0, as when a life is lost. Everything else
        // it ran is handed over or ended under a stored lease.
        for (spi, dir) in std::mem::take(&mut self.peer.marks) {
            self.store(spi, dir, 0);
        }
        self.peer.liveness = Liveness::Fenced;
        self.peer.taken_over = true;
        // SAs added here whose question that life never answered: its
        // answers count no more, so they start without one, as when a
        // silent peer is taken over.
        for key in std::mem::take(&mut self.adds.asking) {
            self.begin_unanswered(key);
        }
        self.lease_changed();
        self.events.push_back(MirrorEvent::PeerLeft);
    }
}
