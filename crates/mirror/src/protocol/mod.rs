//! The mirror protocol of one node, sans-IO: feed it the workers' SA
//! progress, received frames and the time; take from it frames to send,
//! the sequence limit of each owned SA, and events.
//!
//! **Owning.** SA state goes out when due (interval crossed) and at each
//! periodic refresh if changed or not yet acknowledged; only the newest
//! state of each SA waits, so a slow or dead link never grows memory. An
//! owned outbound SA may use sequence numbers only below its limit: the
//! lease the peer acknowledged, plus the slack its takeover jump allows.
//!
//! **Standing by.** Every SA state of the peer is merged into the standby
//! table by maximum, and an outbound one is acknowledged with the lease now
//! stored, which is what lets the owner go on.
//!
//! **Liveness.** Heartbeats every `heartbeat_ms`; a peer silent for
//! `dead_after` of them is declared dead (an event: the node, or the host
//! processor, decides to take over).
//!
//! **Ownership.** Every SA of the pair has a home node (from the
//! configuration) and a current owner with a generation number; an
//! ownership record with a higher generation wins. A takeover starts each
//! of the peer's outbound SAs at the stored lease plus the takeover jump,
//! and each inbound SA at the stored bound (its owner's window top plus
//! what its traffic brings in `inbound_ahead_ms`: the owner accepts
//! nothing past the bound its peer acknowledged). A node that loses an SA records how far it could have
//! gone in its standby table, so a later takeover starts beyond that.
//! Hand-back (failback) is a *hand-over* record carrying how far this node
//! could have gone: the receiver begins exactly there and counts it as
//! acknowledged (the sender stored it), so the SA runs at once, with no
//! extra jump and no wait for a first acknowledgement.
//!
//! **Confirmation.** Every ownership change is sent again at each refresh
//! until the peer confirms it (a record echoing the change once its view
//! holds it), so a lost record cannot leave an SA with no owner or two.
//!
//! **Joining.** A node starts unsynchronised: its SAs may send nothing (it
//! does not know how far they went before it restarted) until the peer's
//! bulk sync tells it: the peer's view of ownership, its own SA states, and
//! copies of this node's SAs from the peer's standby table. Every SA then
//! restarts as a takeover would, at the stored value plus the jump (0 plus
//! the jump if nothing was stored): an earlier life may have used its slack
//! past the last stored lease.
//!
//! **A peer that restarts** forgot what it did in its lost life, which may
//! include taking over SAs without this node hearing of it, or adding one
//! at run time while it held this node's SAs; but it started every such
//! tenure from values this node told it, so it stayed below this node's
//! high-water mark of the SA plus three jumps. On the first frame of a new
//! peer epoch, every SA owned here moves past that and waits for a fresh
//! acknowledgement, and the standby value of every other SA rises to the
//! mark plus two jumps (whoever runs it next starts a jump further).
//!
//! **Hand-back** makes the peer the owner while the peer may have taken
//! the SA over itself meanwhile, from a value this node knows nothing of:
//! until the peer confirms the hand-over (with its own bound, stored
//! first), this node does not take the SA over again while the peer is
//! heard. Without that, a peer could take one SA over twice in a life
//! this node never heard of, and a restart would no longer bound that life
//! by three jumps. A peer that goes silent before it confirms releases the
//! SA: a takeover starts it past three steps beyond this node's mark, as
//! after a life that ended unheard.
//!
//! **The rule behind all of it.** An owner uses sequence numbers below its
//! acknowledged lease plus `jump - quantity`; every acknowledged lease is
//! stored by the peer; every (re)start of an SA is at a stored lease plus
//! `jump` or beyond. So no two owners, nor two lives of one node, ever use
//! the same number.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use espgate_wire::Direction;
use espgate_wire::mirror::{self, MirrorHeader, MirrorRecord, OwnershipKind, SaState};

use crate::frame::{MirrorKey, seal};
use crate::policy::{InboundPolicy, OutboundPolicy, OwnedInbound, OwnedOutbound};
use crate::receive::{PeerFilter, Reject};
use crate::standby::{Standby, StandbyTable};

mod alarm;
mod bulk;
mod config;
mod fingerprint;
mod leave;
mod owned;
mod ownership;
mod peer;
mod query;
mod reach;
mod records;
mod report;
mod send;
mod timer;
mod window;

pub use alarm::ALARM_AFTER_MS;
use alarm::Alarms;
pub use bulk::state_frame_len;
use bulk::{BulkOut, Join};
pub use config::{
    InboundTakeover, MAX_TAKEOVER_JUMP, MirrorConfig, MirrorConfigError, SaOverrides,
};
use leave::Leave;
pub use leave::{HandOverRefused, LeaveRefused};
use ownership::{Changes, OWNERSHIP_LEN, OwnerRecord, PairSa};
use peer::{Liveness, Peer};
use query::Adds;
pub use reach::ESN_REACH;
pub use report::{FenceRefused, MirrorEvent, MirrorStats, PairSaView};
use send::{Due, Outbox};
use timer::{Timer, Timers};
use window::{raised, rebase, union};

/// An SA of the pair.
type SaKey = (u32, Direction);

/// One node's mirror protocol state. A clone is an independent node in
/// the same state (tests explore a pair's state space by cloning it; see
/// [`fingerprint`](Self::fingerprint)).
#[derive(Clone)]
pub struct Mirror {
    cfg: MirrorConfig,
    key: MirrorKey,
    /// This node's life.
    epoch: u64,
    /// Accepts the peer's frames (authentic, in order, of its newest life).
    filter: PeerFilter,
    /// Every SA of the pair: its settings and who runs it.
    pair: BTreeMap<SaKey, PairSa>,
    /// The outbound SAs this node runs now.
    outbound: BTreeMap<u32, OwnedOutbound>,
    /// The inbound SAs this node runs now.
    inbound: BTreeMap<u32, OwnedInbound>,
    /// No restart point of an SA goes below its floor: what this node's
    /// persisted state says of its earlier lives (none used a number at or
    /// above it), and where this life's own runs of it that it gave up
    /// may have reached.
    floors: BTreeMap<SaKey, u64>,
    /// The peer's SAs as last reported, this node's own final states, and
    /// the history of SAs no longer configured.
    standby: StandbyTable,
    /// Whether this node has the peer's bulk sync, and how far it got.
    join: Join,
    /// The bulk sync built for the peer's current life (see `bulk`).
    bulk_out: Option<BulkOut>,
    /// Bulks built in this life (the last one's number).
    bulks_built: u64,
    /// Whether the peer is heard, and what its current life knows.
    peer: Peer,
    /// Ownership changes the peer has yet to take in.
    changes: Changes,
    /// SAs added at run time, and what the peer said of them.
    adds: Adds,
    /// What waits to be sent.
    outbox: Outbox,
    timers: Timers,
    /// The latest time this mirror was given (the rate of its inbound SAs
    /// is measured against it).
    clock: u64,
    /// What a person must be told of.
    alarms: Alarms,
    /// Exact hand-overs under way, and this node's goodbye.
    leave: Leave,
    events: VecDeque<MirrorEvent>,
    stats: MirrorStats,
}

/// Starting, and the SAs of the pair (from the node's configuration and the
/// host's requests).
impl Mirror {
    /// A node's mirror, started at `now_ms` in epoch `epoch` (new at every
    /// start, larger than any before: a clock reading will do). It asks the
    /// peer for a bulk sync and sends nothing on its SAs until it has it.
    pub fn new(cfg: MirrorConfig, key: MirrorKey, epoch: u64, now_ms: u64) -> Self {
        Mirror {
            filter: PeerFilter::new(cfg.node, epoch, cfg.peer),
            cfg,
            key,
            epoch,
            pair: BTreeMap::new(),
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
            floors: BTreeMap::new(),
            standby: StandbyTable::new(),
            join: Join::new(),
            bulk_out: None,
            bulks_built: 0,
            peer: Peer::new(),
            changes: Changes::default(),
            adds: Adds::default(),
            outbox: Outbox::default(),
            timers: Timers::new(now_ms, cfg.refresh_ms),
            clock: now_ms,
            alarms: Alarms::default(),
            leave: Leave::default(),
            events: VecDeque::new(),
            stats: MirrorStats::default(),
        }
    }

    /// Tells the mirror what this node's persisted state says of an SA:
    /// no earlier life of this node used (outbound) or accepted (inbound)
    /// a number at or above `floor`. No restart point of the SA goes below
    /// it (an inbound SA restarted at its floor has everything below seen,
    /// lenient or strict), which holds even when the peer's memory is
    /// gone too (both nodes restarted at once). The floor is also stored
    /// as the SA's history, so a peer restarted with its memory lost is
    /// sent it in the bulk sync and places the SA past it as well. Call it
    /// for the SAs of the configuration before the first frame.
    pub fn restore(&mut self, spi: u32, dir: Direction, floor: u64) {
        let f = self.floors.entry((spi, dir)).or_insert(0);
        *f = (*f).max(floor);
        self.store(spi, dir, floor);
        if let (Direction::Outbound, Some(o)) = (dir, self.outbound.get_mut(&spi)) {
            // Its worker resumes there: a stall it reports below it is of
            // no packet sent.
            o.resumed_at(floor);
        }
    }

    /// Registers an SA of the pair with its home node; if that is this
    /// node, it owns it from the start (sequence numbers from 1, window top
    /// 0, until a bulk sync says otherwise).
    pub fn add_sa(&mut self, spi: u32, dir: Direction, esn: bool, home: u32) {
        self.add_sa_with(spi, dir, esn, home, SaOverrides::default());
    }

    /// [`add_sa`](Self::add_sa) with the SA's own interval or quantity.
    /// An SA whose home is the peer, added while the peer is dead and this
    /// node runs its SAs (or took them over and has not handed them back
    /// since), runs here at once (and is handed back with them).
    /// One whose home is this node, added after the bulk sync, asks the
    /// peer what it knows of it first, or begins without the answer if the
    /// peer is silent ([`begin_unanswered`](Self::begin_unanswered)).
    pub fn add_sa_with(&mut self, spi: u32, dir: Direction, esn: bool, home: u32, o: SaOverrides) {
        let interval = o.interval.unwrap_or(match dir {
            Direction::Outbound => self.cfg.interval,
            Direction::Inbound => self.cfg.inbound_interval,
        });
        self.pair.insert(
            (spi, dir),
            PairSa {
                esn,
                interval: interval.max(1),
                quantity: o.quantity.unwrap_or(self.cfg.quantity),
                home,
                owner: home,
                generation: 0,
                blind: false,
                declined: false,
            },
        );
        if self.synced() {
            self.adds.unheard.insert((spi, dir));
            self.adds.unanswered.insert((spi, dir));
            self.outbox.queries.insert((spi, dir));
        } else {
            self.adds.unheard.remove(&(spi, dir));
            self.adds.unanswered.remove(&(spi, dir));
        }
        if home == self.cfg.node {
            // Outbound from its first number; inbound with nothing
            // accepted (window top 0).
            let first = match dir {
                Direction::Outbound => 1,
                Direction::Inbound => 0,
            };
            self.own(spi, dir, first, 0, Vec::new());
            if self.synced() {
                // Added at run time: the peer may know of an earlier use
                // of this SA (this node's earlier life ran it, or ran one
                // with its SPI and key) that this node forgot. It runs
                // once the peer has said; with the peer silent (a rekey
                // during a failover) it cannot wait for that.
                self.adds.asking.insert((spi, dir));
                if !self.peer.alive() {
                    self.begin_unanswered((spi, dir));
                }
            }
        } else if self.synced()
            && !self.peer.alive()
            && (self.holding() > 0 || self.peer.taken_over)
        {
            // Added while the peer is down to this node and this node runs
            // its SAs, or took them over and has not handed them back (a
            // rekey during a failover, the old SA deleted first): the new
            // SA runs here too, and goes home at failback like the others
            // (see `take`).
            self.take((spi, dir), 1);
        }
    }

    /// Forgets an SA of the pair (deleted by the host on both nodes):
    /// nothing more is sent about it but its history, and the peer's
    /// records of it only raise that history from now on. How far it went
    /// stays in the standby table as its history, so the same SA added
    /// again starts past it. Returns whether it was known.
    pub fn remove_sa(&mut self, spi: u32, dir: Direction) -> bool {
        let key = (spi, dir);
        let known = self.pair.remove(&key).is_some();
        if let Some(fin) = self.take_final(spi, dir) {
            // Run here: the peer learns how far it went. A life of the
            // peer that started since may have been sent nothing of it
            // (a bulk listed before the delete, its state dropped by it).
            self.outbox
                .due
                .push_back(Due::History(spi, dir, Some(fin.value)));
        }
        self.forget(key);
        known
    }
}

/// Getters: what the node and its operators read.
impl Mirror {
    /// The first sequence number owned outbound SA `spi` must not use; 0
    /// before the bulk sync, while it is held beyond its far end's reach,
    /// stopped for a hand-over or after this node's goodbye; `None` if not
    /// owned.
    pub fn limit(&self, spi: u32) -> Option<u64> {
        let s = self.outbound.get(&spi)?;
        let waiting = !self.synced()
            || self.adds.asking.contains(&(spi, Direction::Outbound))
            || self.held_still(spi, Direction::Outbound);
        Some(if waiting || self.beyond_reach(spi) {
            0
        } else {
            s.limit()
        })
    }

    /// The first sequence number owned inbound SA `spi` must not accept
    /// (its window may not move to it or past it); 0 before the bulk
    /// sync, while stopped for a hand-over and after this node's goodbye,
    /// `None` if not owned. With leases on, the window stays within
    /// an interval of the top the peer acknowledged, whether the peer is
    /// heard or not: a peer that took the SA over (after this node's
    /// death, or in a split brain) starts an interval past its stored top,
    /// so no packet is accepted by both. Only a fence lifts the limit.
    pub fn inbound_limit(&self, spi: u32) -> Option<u64> {
        let s = self.inbound.get(&spi)?;
        let synced = self.synced()
            && !self.adds.asking.contains(&(spi, Direction::Inbound))
            && !self.held_still(spi, Direction::Inbound);
        Some(if synced { s.limit() } else { 0 })
    }

    /// The limit of an owned SA, as [`limit`](Self::limit) and
    /// [`inbound_limit`](Self::inbound_limit) give it.
    pub fn limit_of(&self, spi: u32, dir: Direction) -> Option<u64> {
        match dir {
            Direction::Outbound => self.limit(spi),
            Direction::Inbound => self.inbound_limit(spi),
        }
    }

    /// The reporting interval of an SA: its `interval` outbound, its
    /// `inbound_interval` inbound (the defaults, or its overrides).
    pub fn interval_of(&self, spi: u32, dir: Direction) -> u64 {
        let default = match dir {
            Direction::Outbound => self.cfg.interval,
            Direction::Inbound => self.cfg.inbound_interval,
        };
        self.pair
            .get(&(spi, dir))
            .map_or(default, |p| p.interval)
            .max(1)
    }

    /// Whether an SA added at run time waits for the peer to say what it
    /// knows of it before it may run.
    pub fn asking(&self, spi: u32, dir: Direction) -> bool {
        self.adds.asking.contains(&(spi, dir))
    }

    /// Whether this node owns an SA now.
    pub fn owns(&self, spi: u32, dir: Direction) -> bool {
        match dir {
            Direction::Outbound => self.outbound.contains_key(&spi),
            Direction::Inbound => self.inbound.contains_key(&spi),
        }
    }

    /// How many SAs whose home is the peer this node runs now (taken over
    /// and not yet handed back; not those the peer declined, which it does
    /// not have): while any, it holds the peer's addresses.
    pub fn holding(&self) -> usize {
        self.pair
            .values()
            .filter(|p| p.held_for(self.cfg.peer, self.cfg.node))
            .count()
    }

    /// Every SA of the pair, by SPI and direction.
    pub fn views(&self) -> Vec<PairSaView> {
        self.pair
            .iter()
            .map(|(&(spi, dir), p)| PairSaView {
                spi,
                dir,
                home: p.home,
                owner: p.owner,
                generation: p.generation,
                stored: self.standby.get(spi, dir).map(|s| s.value),
                acked: match dir {
                    Direction::Outbound => self.outbound.get(&spi).map(|o| o.acked()),
                    Direction::Inbound => None,
                },
            })
            .collect()
    }

    /// The peer's SAs as stored here.
    pub fn standby(&self) -> &StandbyTable {
        &self.standby
    }

    /// This node's epoch: its life, new and larger at every start.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the peer is heard.
    pub fn peer_alive(&self) -> bool {
        self.peer.alive()
    }

    /// Whether the peer's bulk sync has completed.
    pub fn synced(&self) -> bool {
        self.join == Join::Synced
    }

    /// Whether the peer's current life says it has synchronised (and so
    /// can run what is handed back to it), and is not a life this node
    /// fenced: a fenced node must restart before it rejoins (it may not
    /// know how far this node ran without leases).
    pub fn peer_synced(&self) -> bool {
        let fenced = self
            .peer
            .fenced_life
            .is_some_and(|f| self.filter.epoch() == Some(f));
        self.peer.alive() && self.peer.synced && !fenced
    }

    /// Frames dropped by the receive filter, by reason.
    pub fn rejected(&self) -> &crate::receive::RejectCounters {
        self.filter.rejected()
    }

    /// Link counters.
    pub fn stats(&self) -> MirrorStats {
        self.stats
    }

    /// Items waiting to be sent (at most one current state per owned SA).
    pub fn queued(&self) -> usize {
        self.outbox.due.len()
    }
}

/// Input: frames from the peer, the time, and the workers' progress.
impl Mirror {
    /// Takes in a frame from the mirror port (mirror header to MAC).
    pub fn handle_frame(&mut self, now_ms: u64, frame: &[u8]) -> Result<(), Reject> {
        self.clock = self.clock.max(now_ms);
        let known_life = self.filter.epoch();
        let accepted = self.filter.accept(&self.key, frame)?;
        if accepted.new_epoch {
            if known_life.is_some() {
                self.peer_restarted();
            }
            self.peer.new_life();
            self.join.drop_gathered();
            // This node's own SAs the last life declined, this one may
            // have (its file, the host's adds since): a drain or a failed
            // flow may hand them over again. (The peer's own ones it
            // declined stay as they are: counted as held for it, they
            // would have this node answer for its addresses.)
            let me = self.cfg.node;
            for p in self.pair.values_mut().filter(|p| p.home == me) {
                p.declined = false;
            }
        }
        if accepted.header.flags & mirror::FLAG_SYNCED != 0 {
            self.peer_says_synced();
        }
        let flow_failed = accepted.header.flags & mirror::FLAG_FLOW_FAILED != 0;
        if flow_failed != self.peer.flow_failed {
            self.peer.flow_failed = flow_failed;
            self.events.push_back(MirrorEvent::PeerFlow {
                failed: flow_failed,
            });
        }
        self.stats.frames_received += 1;
        self.heard(now_ms, accepted.header.epoch, accepted.new_epoch);
        let mut records = accepted.records;
        if self.peer.left_life == Some(accepted.header.epoch) {
            // A life that said goodbye runs nothing and changes nothing:
            // only its goodbye, again, is answered.
            records.retain(|r| {
                matches!(
                    r,
                    MirrorRecord::Goodbye {
                        kind: mirror::GoodbyeKind::Leaving
                    }
                )
            });
        }
        self.take_records(records, accepted.to_this_life);
        Ok(())
    }

    /// Serves the peer's death timer at `now_ms` (an event, once the peer
    /// missed `dead_after` heartbeats). The heartbeat and the refresh are
    /// served by [`poll_transmit`](Self::poll_transmit), as it builds the
    /// frames they make.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.run_timers(now_ms, &Timer::WATCHING);
    }

    /// A worker's absolute counters of an owned outbound SA.
    pub fn outbound_progress(&mut self, spi: u32, seq: u64, bytes: u64, packets: u64) {
        if let Some(s) = self.outbound.get_mut(&spi)
            && s.progress(seq, bytes, packets)
        {
            self.enqueue((spi, Direction::Outbound));
        }
        if self.limit(spi).is_some_and(|l| seq.saturating_add(1) >= l) {
            self.stalled((spi, Direction::Outbound), seq.saturating_add(1));
        }
    }

    /// A worker's replay window and counters of an owned inbound SA.
    pub fn inbound_progress(
        &mut self,
        spi: u32,
        top: u64,
        bitmap: &[u64],
        bytes: u64,
        packets: u64,
    ) {
        let now = self.clock;
        if let Some(s) = self.inbound.get_mut(&spi)
            && s.progress(top, bitmap, bytes, packets, now)
        {
            self.inbound_moved(spi);
        }
    }

    /// The bound an owned inbound SA reports rose: its state is due, and
    /// without a lease its worker's limit follows the bound at once.
    fn inbound_moved(&mut self, spi: u32) {
        self.enqueue((spi, Direction::Inbound));
        if self.inbound.get(&spi).is_some_and(|s| !s.leased()) {
            self.limit_changed(spi, Direction::Inbound);
        }
    }

    /// A worker refused an authentic packet numbered `seq` at the limit
    /// of owned inbound SA `spi`: the far end ran on while the SA waited
    /// (the window cannot move while every packet is past the limit). The
    /// state the peer is asked to store moves up to `seq` (nothing past
    /// the old top marked seen), so its acknowledgement lets the worker
    /// accept the packets after it. Stale reports (below the limit) change
    /// nothing, and so do reports before the SA may run at all (before
    /// the bulk sync, or while a run-time add waits for the peer's word):
    /// its top must then stay what the worker's window is, so the restart
    /// it waits for moves the window past its earlier lives.
    pub fn inbound_stalled(&mut self, spi: u32, seq: u64) {
        if self.inbound_limit(spi).is_some_and(|l| seq >= l) {
            self.stalled((spi, Direction::Inbound), seq);
        }
        if !self.synced() || self.adds.asking.contains(&(spi, Direction::Inbound)) {
            return;
        }
        if self
            .inbound
            .get_mut(&spi)
            .is_some_and(|s| seq >= s.limit() && s.want(seq))
        {
            self.inbound_moved(spi);
        }
    }
}

/// Orders from the node, its operator or the host.
impl Mirror {
    /// Takes over every SA the peer owns (it is dead, or the host says
    /// so); returns how many. Outbound SAs start at the stored lease plus
    /// the takeover jump, inbound ones per `inbound_takeover`. An SA this
    /// node handed to the peer and the peer has not confirmed is taken only
    /// from a peer that is not heard, past all its life may have done with
    /// it ([`take_blind`](Self::take_blind)). SAs added here at run time
    /// whose question the peer, silent now, has not answered start without
    /// the answer ([`begin_unanswered`](Self::begin_unanswered)); they are
    /// not counted. A node that has not synchronised since it started takes
    /// nothing over: its standby table does not know how far the peer
    /// went; nor does one that said goodbye.
    pub fn take_over(&mut self) -> usize {
        if !self.synced() || self.gone() {
            return 0;
        }
        let silent = !self.peer.alive();
        if silent {
            self.peer.taken_over = true;
            for key in std::mem::take(&mut self.adds.asking) {
                self.begin_unanswered(key);
            }
        }
        let theirs: Vec<((u32, Direction), PairSa)> = self
            .pair
            .iter()
            .filter(|(_, p)| p.owner == self.cfg.peer && (!p.blind || silent))
            .map(|(k, p)| (*k, *p))
            .collect();
        for (key, p) in &theirs {
            if p.blind {
                self.take_blind(*key, p.generation + 1);
            } else {
                self.take(*key, p.generation + 1);
            }
            self.stats.taken_over += 1;
        }
        theirs.len()
    }

    /// Hands every SA whose home is the peer back to it (but those its
    /// life declined, until it has them), with its final state; returns
    /// how many. The node must stop using them (the
    /// `Deactivate` events) before it sends the next frame.
    pub fn hand_back(&mut self) -> usize {
        self.peer.taken_over = false;
        let peer = self.cfg.peer;
        let back: Vec<((u32, Direction), PairSa)> = self
            .pair
            .iter()
            .filter(|(_, p)| p.held_for(peer, self.cfg.node))
            .map(|(k, p)| (*k, *p))
            .collect();
        for ((spi, dir), p) in &back {
            // The record starts the peer past all this node may have used
            // (its final state's value, at or past the bound): after a
            // fence the workers ran past the last report with no lease to
            // bound them.
            let bound = self.bound(*spi, *dir);
            let fin = self.release(*spi, *dir);
            let start = fin.as_ref().map_or(bound, |f| f.value);
            let record = OwnerRecord {
                owner: peer,
                generation: p.generation + 1,
                bound: start,
                kind: OwnershipKind::Handover,
            };
            self.set_owner((*spi, *dir), record);
            if let Some(e) = self.pair.get_mut(&(*spi, *dir)) {
                e.blind = true;
            }
            if let Some(fin) = fin {
                self.outbox.due.push_back(Due::Record(Box::new(fin)));
            }
            self.stats.handed_back += 1;
        }
        back.len()
    }

    /// The operator or the host says the peer is fenced (powered off,
    /// isolated): this node's SAs move past anything the peer's life may
    /// have done with them unheard (a takeover in a split brain), then run
    /// without leases until the peer is heard again, when the configured
    /// lease rule returns. Refused while the peer is heard (it is not
    /// isolated) and before the first bulk sync (nothing places this
    /// node's SAs past its earlier life); the SAs then stay as they are.
    /// A peer whose life said goodbye is fenced already, with nothing
    /// unheard to move past: the order changes nothing; so does a second
    /// fence of a life fenced already and silent since (the host asks
    /// again when an answer is lost): its SAs moved past that life once.
    pub fn force_unleased(&mut self) -> Result<(), FenceRefused> {
        if self.peer.alive() {
            return Err(FenceRefused::PeerHeard);
        }
        if !self.synced() {
            return Err(FenceRefused::NotSynced);
        }
        if self.peer.left_life.is_some() && self.peer.left_life == self.filter.epoch() {
            // Its life said goodbye: fenced since, with nothing unheard.
            return Ok(());
        }
        if self.peer.fenced() && self.peer.fenced_life == self.filter.epoch() {
            return Ok(());
        }
        self.peer_lost();
        self.peer.liveness = Liveness::Fenced;
        self.peer.fenced_life = self.filter.epoch();
        // The SAs run past what the bulk built for the peer's life says,
        // and a part that life gathered already is not sent again: the next
        // request gets a new bulk, under a new number, whole.
        self.bulk_out = None;
        self.lease_changed();
        Ok(())
    }
}

/// Output: events, the next timeout, frames to send.
impl Mirror {
    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MirrorEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) and
    /// [`poll_transmit`](Self::poll_transmit) next.
    pub fn poll_timeout(&self) -> u64 {
        Timer::ALL
            .iter()
            .map(|t| self.deadline(*t))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The next frame to send at `now_ms`, if anything is due, in this
    /// order: bulk request, heartbeat, answers, ownership records, queries,
    /// lease acknowledgements, a bulk part, SA states. It serves the
    /// heartbeat and refresh timers due by then first.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        self.run_timers(now_ms, &Timer::SENDING);
        self.build_frame(now_ms)
    }
}
