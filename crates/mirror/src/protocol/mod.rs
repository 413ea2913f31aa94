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
//! and each inbound SA at the stored window top (plus `inbound_interval`
//! in strict mode). A node that loses an SA records how far it could have
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
//! first), this node does not take the SA over again. Without that, a
//! peer could take one SA over twice in a life this node never heard of,
//! and a restart would no longer bound that life by three jumps.
//!
//! **The rule behind all of it.** An owner uses sequence numbers below its
//! acknowledged lease plus `jump - quantity`; every acknowledged lease is
//! stored by the peer; every (re)start of an SA is at a stored lease plus
//! `jump` or beyond. So no two owners, nor two lives of one node, ever use
//! the same number.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use espgate_wire::mirror::{self, MirrorHeader, MirrorRecord, OwnershipKind, SaDir, SaState};

use crate::frame::{MirrorKey, seal};
use crate::policy::{OutboundPolicy, OwnedInbound, OwnedOutbound};
use crate::receive::{PeerFilter, Reject};
use crate::standby::{Standby, StandbyTable};

mod bulk;
mod config;
mod fingerprint;
mod owned;
mod ownership;
mod peer;
mod query;
mod report;
mod send;
mod window;

use bulk::{BulkIn, BulkOut};
pub use config::{
    InboundTakeover, MAX_TAKEOVER_JUMP, MirrorConfig, MirrorConfigError, SaOverrides,
};
use ownership::{OWNERSHIP_LEN, OwnerRecord, PairSa, ownership_record};
pub use report::{FenceRefused, MirrorEvent, MirrorStats, PairSaView};
use send::Due;
use window::{raised, rebase, union};

/// An SA of the pair.
type SaKey = (u32, SaDir);

/// One node's mirror protocol state. A clone is an independent node in
/// the same state (tests explore a pair's state space by cloning it; see
/// [`fingerprint`](Self::fingerprint)).
#[derive(Clone)]
pub struct Mirror {
    cfg: MirrorConfig,
    key: MirrorKey,
    epoch: u64,
    counter: u64,
    filter: PeerFilter,
    pair: BTreeMap<(u32, SaDir), PairSa>,
    outbound: BTreeMap<u32, OwnedOutbound>,
    inbound: BTreeMap<u32, OwnedInbound>,
    due: VecDeque<Due>,
    queued: BTreeSet<(u32, SaDir)>,
    acks: BTreeMap<SaKey, u64>,
    ownership_out: BTreeMap<SaKey, OwnerRecord>,
    /// Changes sent and not yet confirmed by the peer: sent again at every
    /// refresh, so a lost record cannot leave an SA with no owner.
    unconfirmed: BTreeMap<SaKey, OwnerRecord>,
    /// Where the next refresh goes on sending unconfirmed changes again.
    resend_from: Option<SaKey>,
    /// Final states of SAs the peer took over while this node ran them (a
    /// split brain), sent as copies again at every refresh until the peer
    /// answers that it runs the SA past one (`Past`; its states and its
    /// history answers cannot say so: their value may be a stalled
    /// number). Until then
    /// this node's stored value holds its own run, and acknowledging it
    /// would lift the peer's limit over that run.
    finals: BTreeMap<SaKey, SaState>,
    /// The highest ownership generation of the pair (for heartbeats,
    /// without a walk over every SA).
    max_generation: u64,
    /// The largest inbound interval any SA of the pair had here: the step
    /// a lost peer life may have taken with an SA deleted since (its own
    /// interval went with it).
    largest_interval: u64,
    /// Inbound SAs this node lacks whose history a lost peer life moved
    /// (`peer_lost`): the history before the first such move, and the
    /// steps taken since. The step was the largest interval known then;
    /// the SA's own may be larger (this node restarted after its delete and
    /// never heard it), so an add with its interval moves the history by
    /// as many of those.
    lost_steps: BTreeMap<SaKey, (u64, u64)>,
    bulk_request: bool,
    /// The bulk sync built for the peer's current life (see `bulk`).
    bulk_out: Option<BulkOut>,
    /// Bulks built in this life (the last one's number).
    bulks_built: u64,
    /// The parts of the peer's bulk that arrived, until this node has them
    /// all.
    bulk_in: Option<BulkIn>,
    synced: bool,
    standby: StandbyTable,
    /// The highest value of each SA the peer's current life is known to
    /// store (its states, acknowledgements, ownership bounds and history
    /// answers). The standby table also holds what only this node knows
    /// (its own final states); what a start counts as acknowledged is
    /// bounded by this ([`acknowledged`](Self::acknowledged)), so that a
    /// life of this node that dies unheard stays within what the peer can
    /// bound.
    told: BTreeMap<SaKey, u64>,
    /// The values of the first bulk sync sent to the peer's current life
    /// (copies and histories), taken into [`told`](Self::told) once its
    /// last part is sent (see [`bulk_sent`](Self::bulk_sent)); each later bulk
    /// only repeats or raises these. Empty once taken in, `None` before
    /// any bulk went to this life.
    bulk_told: Option<BTreeMap<SaKey, u64>>,
    peer_alive: bool,
    last_heard: Option<u64>,
    next_heartbeat: u64,
    next_refresh: u64,
    events: VecDeque<MirrorEvent>,
    stats: MirrorStats,
    /// Told the peer is fenced, and not heard since.
    fenced: bool,
    /// The peer's life heard last may have run SAs: it said it had
    /// synchronised, or this node sent it every part of a bulk.
    peer_ran: bool,
    /// The peer's life heard last said it had synchronised.
    peer_synced: bool,
    /// The peer's life this node fenced (its epoch), if any: it must
    /// restart before it gets anything back.
    fenced_life: Option<u64>,
    /// Owned SAs added at run time, waiting for the peer to say what it
    /// knows of them before they may run.
    asking: BTreeSet<SaKey>,
    /// SAs added at run time after this node's bulk sync, and no
    /// ownership record of the peer taken into this node's view since (a
    /// change that wins, or a confirmation of this view; not one sent
    /// before the add): this node's view of who runs it went with an
    /// earlier delete. The peer may have taken the peer's SA over (in a
    /// split brain, unheard) from a value this node reported; it may hold
    /// a view, of either node's SA, that this node's earlier add of it
    /// sent. The answer to this node's query carries the peer's view, if
    /// the peer knows anything of the SA.
    unheard: BTreeSet<SaKey>,
    /// SAs added at run time whose query the peer has not answered yet
    /// (those of `asking` among them).
    questions: BTreeSet<SaKey>,
    /// Queries to send (those of `questions`, again at each refresh).
    queries: BTreeSet<SaKey>,
    /// SAs the peer's current life asked about: it may run them from
    /// their first number once answered, unheard, so a loss of that life
    /// (its restart, or a fence) counts them as used from 0
    /// ([`peer_lost`](Self::peer_lost)).
    /// Not a stored value: a question is no use, and a later answer (to
    /// the same life asking again, or to this node's own add) must not
    /// read it as one.
    marks: BTreeSet<SaKey>,
    /// Answers to the peer's queries: this node's view of the SA (if it
    /// knows anything of it) and its history, always sent in one frame
    /// (the history ends the question: without the view beside it, a lost
    /// frame could leave the asker's view apart from this node's for
    /// good).
    answers: BTreeMap<SaKey, (Option<OwnerRecord>, Option<u64>)>,
    /// The lease rule of the configuration (a fence suspends it).
    lease_configured: bool,
    /// What this node's own persisted state says of an SA: no earlier life
    /// of it used a number at or above the floor.
    floors: BTreeMap<SaKey, u64>,
}

impl Mirror {
    /// A node's mirror, started at `now_ms` in epoch `epoch` (new at every
    /// start, larger than any before: a clock reading will do). It asks the
    /// peer for a bulk sync and sends nothing on its SAs until it has it.
    pub fn new(cfg: MirrorConfig, key: MirrorKey, epoch: u64, now_ms: u64) -> Self {
        let largest_interval = cfg.inbound_interval.max(1);
        Mirror {
            filter: PeerFilter::new(cfg.node, epoch, cfg.peer),
            cfg,
            key,
            epoch,
            counter: 0,
            pair: BTreeMap::new(),
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
            due: VecDeque::new(),
            queued: BTreeSet::new(),
            acks: BTreeMap::new(),
            ownership_out: BTreeMap::new(),
            unconfirmed: BTreeMap::new(),
            resend_from: None,
            finals: BTreeMap::new(),
            max_generation: 0,
            largest_interval,
            lost_steps: BTreeMap::new(),
            bulk_request: true,
            bulk_out: None,
            bulks_built: 0,
            bulk_in: None,
            synced: false,
            standby: StandbyTable::new(),
            told: BTreeMap::new(),
            bulk_told: None,
            peer_alive: false,
            last_heard: None,
            next_heartbeat: now_ms,
            next_refresh: now_ms + cfg.refresh_ms,
            events: VecDeque::new(),
            stats: MirrorStats::default(),
            fenced: false,
            peer_ran: false,
            peer_synced: false,
            fenced_life: None,
            asking: BTreeSet::new(),
            unheard: BTreeSet::new(),
            questions: BTreeSet::new(),
            queries: BTreeSet::new(),
            marks: BTreeSet::new(),
            answers: BTreeMap::new(),
            lease_configured: cfg.lease,
            floors: BTreeMap::new(),
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
    pub fn restore(&mut self, spi: u32, dir: SaDir, floor: u64) {
        let f = self.floors.entry((spi, dir)).or_insert(0);
        *f = (*f).max(floor);
        self.store(spi, dir, floor);
    }

    /// Registers an SA of the pair with its home node; if that is this
    /// node, it owns it from the start (sequence numbers from 1, window top
    /// 0, until a bulk sync says otherwise).
    pub fn add_sa(&mut self, spi: u32, dir: SaDir, esn: bool, home: u32) {
        self.add_sa_with(spi, dir, esn, home, SaOverrides::default());
    }

    /// [`add_sa`](Self::add_sa) with the SA's own interval or quantity.
    /// An SA whose home is the peer, added while the peer is dead and this
    /// node runs its SAs, runs here at once (and is handed back with them).
    pub fn add_sa_with(&mut self, spi: u32, dir: SaDir, esn: bool, home: u32, o: SaOverrides) {
        let interval = o.interval.unwrap_or(match dir {
            SaDir::Outbound => self.cfg.interval,
            SaDir::Inbound => self.cfg.inbound_interval,
        });
        if dir == SaDir::Inbound {
            self.largest_interval = self.largest_interval.max(interval);
            if let Some((mark, steps)) = self.lost_steps.remove(&(spi, dir)) {
                self.store(
                    spi,
                    dir,
                    mark.saturating_add(steps.saturating_mul(interval)),
                );
            }
        }
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
            },
        );
        if self.synced {
            self.unheard.insert((spi, dir));
            self.questions.insert((spi, dir));
            self.queries.insert((spi, dir));
        } else {
            self.unheard.remove(&(spi, dir));
            self.questions.remove(&(spi, dir));
        }
        if home == self.cfg.node {
            // Outbound from its first number; inbound with nothing
            // accepted (window top 0).
            let first = match dir {
                SaDir::Outbound => 1,
                SaDir::Inbound => 0,
            };
            self.own(spi, dir, first, 0, Vec::new());
            if self.synced {
                // Added at run time: the peer may know of an earlier use
                // of this SA (this node's earlier life ran it, or ran one
                // with its SPI and key) that this node forgot. It runs
                // once the peer has said.
                self.asking.insert((spi, dir));
            }
        } else if self.synced && !self.peer_alive && self.holding() > 0 {
            // Added while the peer is down to this node and this node runs
            // its SAs (a rekey during a failover): the new SA runs here too,
            // and goes home at failback like the others (see `take`).
            self.take((spi, dir), 1);
        }
    }

    /// Forgets an SA of the pair (deleted by the host on both nodes):
    /// nothing more is sent about it but its history, and the peer's
    /// records of it only raise that history from now on. How far it went
    /// stays in the standby table as its history, so the same SA added
    /// again starts past it. Returns whether it was known.
    pub fn remove_sa(&mut self, spi: u32, dir: SaDir) -> bool {
        let key = (spi, dir);
        let known = self.pair.remove(&key).is_some();
        if let Some(fin) = self.take_final(spi, dir) {
            // Run here: the peer learns how far it went. A life of the
            // peer that started since may have been sent nothing of it
            // (a bulk listed before the delete, its state dropped by it).
            self.due.push_back(Due::History(spi, dir, Some(fin.value)));
        }
        self.acks.remove(&key);
        self.queries.remove(&key);
        self.questions.remove(&key);
        self.unheard.remove(&key);
        self.ownership_out.remove(&key);
        self.unconfirmed.remove(&key);
        self.finals.remove(&key);
        known
    }

    /// A worker's absolute counters of an owned outbound SA.
    pub fn outbound_progress(&mut self, spi: u32, seq: u64, bytes: u64, packets: u64) {
        if let Some(s) = self.outbound.get_mut(&spi)
            && s.progress(seq, bytes, packets)
        {
            self.enqueue((spi, SaDir::Outbound));
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
        if let Some(s) = self.inbound.get_mut(&spi)
            && s.progress(top, bitmap, bytes, packets)
        {
            self.enqueue((spi, SaDir::Inbound));
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
        if !self.synced || self.asking.contains(&(spi, SaDir::Inbound)) {
            return;
        }
        if self
            .inbound
            .get_mut(&spi)
            .is_some_and(|s| seq >= s.limit() && s.want(seq))
        {
            self.enqueue((spi, SaDir::Inbound));
        }
    }

    /// The first sequence number owned outbound SA `spi` must not use; 0
    /// before the bulk sync, `None` if not owned.
    pub fn limit(&self, spi: u32) -> Option<u64> {
        let s = self.outbound.get(&spi)?;
        let waiting = !self.synced || self.asking.contains(&(spi, SaDir::Outbound));
        Some(if waiting { 0 } else { s.limit() })
    }

    /// The first sequence number owned inbound SA `spi` must not accept
    /// (its window may not move to it or past it); 0 before the bulk
    /// sync, `None` if not owned. With leases on, the window stays within
    /// an interval of the top the peer acknowledged, whether the peer is
    /// heard or not: a peer that took the SA over (after this node's
    /// death, or in a split brain) starts an interval past its stored top,
    /// so no packet is accepted by both. Only a fence lifts the limit.
    pub fn inbound_limit(&self, spi: u32) -> Option<u64> {
        let s = self.inbound.get(&spi)?;
        let synced = self.synced && !self.asking.contains(&(spi, SaDir::Inbound));
        Some(if synced { s.limit() } else { 0 })
    }

    /// The limit of an owned SA, as [`limit`](Self::limit) and
    /// [`inbound_limit`](Self::inbound_limit) give it.
    pub fn limit_of(&self, spi: u32, dir: SaDir) -> Option<u64> {
        match dir {
            SaDir::Outbound => self.limit(spi),
            SaDir::Inbound => self.inbound_limit(spi),
        }
    }

    /// The reporting interval of an SA: its `interval` outbound, its
    /// `inbound_interval` inbound (the defaults, or its overrides).
    pub fn interval_of(&self, spi: u32, dir: SaDir) -> u64 {
        let default = match dir {
            SaDir::Outbound => self.cfg.interval,
            SaDir::Inbound => self.cfg.inbound_interval,
        };
        self.pair
            .get(&(spi, dir))
            .map_or(default, |p| p.interval)
            .max(1)
    }

    /// Whether an SA added at run time waits for the peer to say what it
    /// knows of it before it may run.
    pub fn asking(&self, spi: u32, dir: SaDir) -> bool {
        self.asking.contains(&(spi, dir))
    }

    /// Whether this node owns an SA now.
    pub fn owns(&self, spi: u32, dir: SaDir) -> bool {
        match dir {
            SaDir::Outbound => self.outbound.contains_key(&spi),
            SaDir::Inbound => self.inbound.contains_key(&spi),
        }
    }

    /// How many SAs whose home is the peer this node runs now (taken over
    /// and not yet handed back): while any, it holds the peer's addresses.
    pub fn holding(&self) -> usize {
        self.pair
            .values()
            .filter(|p| p.home == self.cfg.peer && p.owner == self.cfg.node)
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
                    SaDir::Outbound => self.outbound.get(&spi).map(|o| o.acked()),
                    SaDir::Inbound => None,
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
        self.peer_alive
    }

    /// Whether the peer's bulk sync has completed.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Whether the peer's current life says it has synchronised (and so
    /// can run what is handed back to it), and is not a life this node
    /// fenced: a fenced node must restart before it rejoins (it may not
    /// know how far this node ran without leases).
    pub fn peer_synced(&self) -> bool {
        let fenced = self
            .fenced_life
            .is_some_and(|f| self.filter.epoch() == Some(f));
        self.peer_alive && self.peer_synced && !fenced
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
        self.due.len()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MirrorEvent> {
        self.events.pop_front()
    }

    /// Takes over every SA the peer owns (it is dead, or the host says
    /// so); returns how many. Outbound SAs start at the stored lease plus
    /// the takeover jump, inbound ones per `inbound_takeover`. A node that
    /// has not synchronised since it started takes nothing over: its
    /// standby table does not know how far the peer went.
    pub fn take_over(&mut self) -> usize {
        if !self.synced {
            return 0;
        }
        let theirs: Vec<((u32, SaDir), PairSa)> = self
            .pair
            .iter()
            .filter(|(_, p)| p.owner == self.cfg.peer && !p.blind)
            .map(|(k, p)| (*k, *p))
            .collect();
        for (key, p) in &theirs {
            self.take(*key, p.generation + 1);
            self.stats.taken_over += 1;
        }
        theirs.len()
    }

    /// Hands every SA whose home is the peer back to it, with its final
    /// state; returns how many. The node must stop using them (the
    /// `Deactivate` events) before it sends the next frame.
    pub fn hand_back(&mut self) -> usize {
        let peer = self.cfg.peer;
        let back: Vec<((u32, SaDir), PairSa)> = self
            .pair
            .iter()
            .filter(|(_, p)| p.home == peer && p.owner == self.cfg.node)
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
            self.set_owner(
                (*spi, *dir),
                peer,
                p.generation + 1,
                start,
                OwnershipKind::Handover,
            );
            if let Some(e) = self.pair.get_mut(&(*spi, *dir)) {
                e.blind = true;
            }
            if let Some(fin) = fin {
                self.due.push_back(Due::Record(Box::new(fin)));
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
    pub fn force_unleased(&mut self) -> Result<(), FenceRefused> {
        if self.peer_alive {
            return Err(FenceRefused::PeerHeard);
        }
        if !self.synced {
            return Err(FenceRefused::NotSynced);
        }
        self.peer_lost();
        self.fenced = true;
        self.fenced_life = self.filter.epoch();
        self.set_lease(false);
        Ok(())
    }

    /// Takes in a frame from the mirror port (mirror header to MAC).
    pub fn handle_frame(&mut self, now_ms: u64, frame: &[u8]) -> Result<(), Reject> {
        let known_epoch = self.filter.epoch();
        let accepted = self.filter.accept(&self.key, frame)?;
        if accepted.new_epoch && known_epoch.is_some() {
            self.peer_restarted();
        }
        if accepted.new_epoch {
            self.peer_ran = false;
            self.bulk_told = None;
            self.bulk_in = None;
            self.peer_synced = false;
        }
        if accepted.header.flags & mirror::FLAG_SYNCED != 0 {
            self.peer_ran = true;
            self.peer_synced = true;
            if self.bulk_out.is_some() {
                // It holds a whole bulk: what the first one carried (or
                // more), which every later one repeats or raises.
                self.bulk_sent();
                self.bulk_out = None;
            }
        }
        self.stats.frames_received += 1;
        self.last_heard = Some(now_ms);
        if !self.peer_alive || accepted.new_epoch {
            self.peer_alive = true;
            self.events.push_back(MirrorEvent::PeerAlive {
                epoch: accepted.header.epoch,
            });
            if self.fenced {
                // The fence is over: leases again, and the peer learns
                // how far the SAs went from their states.
                self.fenced = false;
                self.set_lease(self.lease_configured);
            }
        }
        let peer = self.cfg.peer;
        let states = accepted
            .records
            .iter()
            .filter(|r| matches!(r, MirrorRecord::SaState(_)))
            .count() as u64;
        let mut bulk_part = None;
        for r in accepted.records {
            let changes_this_life = matches!(
                r,
                MirrorRecord::SaState(SaState { copy: true, .. })
                    | MirrorRecord::LeaseAck { .. }
                    | MirrorRecord::Ownership { .. }
                    | MirrorRecord::BulkPart { .. }
                    | MirrorRecord::Past { .. }
            );
            if changes_this_life && !accepted.to_this_life {
                // Sent to another life of this node (an earlier one, or
                // recorded and replayed): what it says is not about this
                // life's SAs.
                self.stats.records_other_life += 1;
                continue;
            }
            let told = match &r {
                MirrorRecord::SaState(s) => Some(((s.spi, s.dir), s.value)),
                MirrorRecord::LeaseAck { spi, dir, lease } => Some(((*spi, *dir), *lease)),
                MirrorRecord::Ownership {
                    spi, dir, start, ..
                } => Some(((*spi, *dir), *start)),
                MirrorRecord::History {
                    spi,
                    dir,
                    value: Some(v),
                }
                | MirrorRecord::Past {
                    spi, dir, value: v, ..
                } => Some(((*spi, *dir), *v)),
                _ => None,
            };
            if let Some((key, v)) = told {
                self.tell(key, v);
            }
            match r {
                MirrorRecord::SaState(s)
                    if s.copy && (!self.synced || !self.pair.contains_key(&(s.spi, s.dir))) =>
                {
                    // Kept whole, and recovered from once the bulk is
                    // complete (`bulk_complete`), with the SA added here
                    // meanwhile if it was not configured. (Recovered from
                    // as each came, a copy moved its SA on at every
                    // sending of a bulk the link kept breaking: the move
                    // was reported, and raised the copy the next sending
                    // carried.)
                    self.standby.merge(&s);
                }
                MirrorRecord::SaState(s) if s.copy => {
                    if !self.owns(s.spi, s.dir) {
                        self.standby.merge(&s);
                    }
                    self.recover(s.spi, s.dir, s.value, &s.bitmap);
                    if self.owns(s.spi, s.dir) {
                        // Past it now: the sender (the loser of a split
                        // brain) learns so and acknowledges again.
                        self.due.push_back(Due::Past(s.spi, s.dir, s.value));
                    }
                }
                MirrorRecord::Query { spi, dir } => {
                    // The answer: what this node knows of the SA, and
                    // before it in the same frame this node's view of who
                    // runs it, with that knowledge as the bound the asker
                    // stores; no view if it knows nothing of the SA (the
                    // view is then the configured one, and a bound stored
                    // would make the SA look used), nor while a hand-over
                    // of it waits for the peer's word (that goes again at
                    // each refresh).
                    let key = (spi, dir);
                    let known = self.history_of(spi, dir);
                    let view = match (self.pair.get(&key), known) {
                        (Some(p), Some(bound)) if !p.blind => {
                            Some((p.owner, p.generation, bound, OwnershipKind::Confirm))
                        }
                        _ => None,
                    };
                    // The asker may run it once answered (one this node
                    // runs, it knows of already).
                    if !self.owns(spi, dir) {
                        self.marks.insert(key);
                    }
                    // A question asked again before the answer went
                    // (the asker's refresh) keeps that answer: this one
                    // would carry the mark the first left, not news.
                    self.answers.entry(key).or_insert((view, known));
                }
                MirrorRecord::History { spi, dir, value } => self.history(spi, dir, value),
                MirrorRecord::Past { spi, dir, value } => {
                    // (A history cannot say this: the answer to a query
                    // is what the peer runs the SA to, perhaps a stalled
                    // number at this node's final, not a move past it.)
                    if self
                        .finals
                        .get(&(spi, dir))
                        .is_some_and(|f| value >= f.value)
                    {
                        self.finals.remove(&(spi, dir));
                    }
                    // Not an answer to this node's query (the SA may have
                    // been deleted and added again here since its final):
                    // only what the peer runs past, stored.
                    if !self.owns(spi, dir) {
                        self.store(spi, dir, value);
                    }
                }
                MirrorRecord::SaState(s) if !self.pair.contains_key(&(s.spi, s.dir)) => {
                    // An SA only the peer has (deleted here first, or added
                    // there and not here yet): kept as its history, so that
                    // a life of either node that gets it later starts past
                    // it; never acknowledged, so the peer's lease waits.
                    self.standby.merge(&s);
                }
                MirrorRecord::SaState(s) => {
                    let key = (s.spi, s.dir);
                    let peers = self.pair.get(&key).is_some_and(|p| {
                        p.owner == peer && !p.blind && !self.finals.contains_key(&key)
                    });
                    self.standby.merge(&s);
                    // Acknowledge only states of SAs the peer owns and
                    // knows it owns: a stale state of an SA taken over
                    // must not raise the old owner's limit, nor one sent
                    // before the peer heard of this node's hand-back (it
                    // still runs the SA under its older lease, and this
                    // node used numbers above it).
                    if peers {
                        let stored = self.standby.get(s.spi, s.dir).map_or(0, |e| e.value);
                        self.acks.insert((s.spi, s.dir), stored);
                    }
                }
                MirrorRecord::LeaseAck { spi, dir, lease }
                    if self.acked_beyond(spi, dir, lease) =>
                {
                    // The peer stores more than this node ever sent: an
                    // earlier use of the SA this node forgot. Move past it.
                    self.recover(spi, dir, lease, &[]);
                }
                MirrorRecord::LeaseAck { spi, dir, lease } => {
                    let raised = match dir {
                        SaDir::Outbound => {
                            self.outbound.get_mut(&spi).is_some_and(|s| s.ack(lease))
                        }
                        SaDir::Inbound => self.inbound.get_mut(&spi).is_some_and(|s| s.ack(lease)),
                    };
                    if raised && self.synced {
                        self.limit_changed(spi, dir);
                    }
                }
                MirrorRecord::Ownership {
                    spi,
                    dir,
                    owner,
                    generation,
                    start,
                    kind,
                } => self.ownership((spi, dir), owner, generation, start, kind),
                MirrorRecord::BulkRequest => self.bulk_requested(),
                MirrorRecord::BulkPart { bulk, part, parts } => {
                    // Taken in after the part's records (this frame's).
                    bulk_part = Some((bulk, part, parts));
                }
                MirrorRecord::Heartbeat { .. } => {}
                _ => self.stats.records_ignored += 1,
            }
        }
        if let Some((bulk, part, parts)) = bulk_part {
            self.part_received(bulk, part, parts, states);
        }
        Ok(())
    }

    /// Checks the peer's liveness at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let deadline = self.death_ms();
        if self.peer_alive
            && self
                .last_heard
                .is_some_and(|t| now_ms.saturating_sub(t) > deadline)
        {
            self.peer_alive = false;
            self.events.push_back(MirrorEvent::PeerDead);
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) and
    /// [`poll_transmit`](Self::poll_transmit) next.
    pub fn poll_timeout(&self) -> u64 {
        let death = self
            .last_heard
            .filter(|_| self.peer_alive)
            .map_or(u64::MAX, |t| {
                t.saturating_add(self.death_ms()).saturating_add(1)
            });
        self.next_heartbeat.min(self.next_refresh).min(death)
    }

    /// The next frame to send at `now_ms`, if anything is due, in this
    /// order: bulk request, heartbeat, ownership changes, lease
    /// acknowledgements, SA states.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if now_ms >= self.next_refresh {
            self.next_refresh = now_ms.saturating_add(self.cfg.refresh_ms);
            self.refresh();
        }
        self.build_frame(now_ms)
    }
}
