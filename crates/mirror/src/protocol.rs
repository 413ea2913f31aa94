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
mod fingerprint;

use bulk::{BulkIn, BulkOut};

/// How an inbound SA's replay window is set on takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundTakeover {
    /// Move the top forward by `inbound_interval` and mark everything up to
    /// it seen: no replay can pass; a few fresh packets may be dropped.
    Strict,
    /// Keep the mirrored window: packets since the last inbound record
    /// (fewer than `inbound_interval`) could be replayed once.
    Lenient,
}

/// How the mirror behaves; defaults in the node configuration's `mirror:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MirrorConfig {
    /// This node's id.
    pub node: u32,
    /// The peer's id.
    pub peer: u32,
    /// Outbound state is due when the sequence number crosses a multiple.
    pub interval: u64,
    /// Added to the sequence number to make the lease.
    pub quantity: u64,
    /// Stall at the acknowledged lease (on), or run unlimited (off).
    pub lease: bool,
    /// How far a takeover jumps past the stored lease, ESN SAs. A receiver
    /// infers the high half of an ESN from the low 32 bits (RFC 4303 A2.2)
    /// and follows a forward step only if it is below 2^32 minus its window.
    /// An idle SA (no packet between the steps) moves about eight jumps in
    /// a failover cycle of its home node (takeover: one jump past the
    /// lease; the home node's restart: three more past the holder's reach,
    /// itself a jump past its start; hand-back: the holder's reach), so the
    /// jump is at most 2^28, and 2^25 by default: eight idle cycles in a
    /// row stay within the receiver's reach.
    pub takeover_jump: u64,
    /// How far a takeover jumps past the stored lease, 32-bit SAs.
    pub takeover_jump_32: u64,
    /// Inbound state is due when the window top crosses a multiple.
    pub inbound_interval: u64,
    /// Inbound window on takeover.
    pub inbound_takeover: InboundTakeover,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Missed heartbeats before the peer is declared dead.
    pub dead_after: u32,
    /// Period of the refresh of every changed or unacknowledged SA.
    pub refresh_ms: u64,
    /// Largest frame (mirror header to MAC) to build.
    pub max_frame: usize,
}

/// The largest takeover jump: six jumps (an idle SA's failover cycle:
/// takeover, restart of its home node, hand-back) plus the lease must stay
/// below 2^32 minus the largest replay window, or receivers would place the
/// new numbers in the wrong ESN half and every ICV would fail.
pub const MAX_TAKEOVER_JUMP: u64 = 1 << 28;

/// How many steps (takeover jumps, inbound intervals) past this node's
/// high-water mark a peer life that ended unheard may have run an SA: a
/// run-time add while it held this node's SAs starts two steps past what
/// it knew and runs one more (see `Mirror::peer_lost`).
const LOST_LIFE_STEPS: u64 = 3;

/// Unconfirmed ownership changes a refresh sends again, at most.
const RESEND_PER_REFRESH: usize = 4096;
/// Records queued beyond which the link is far behind: a refresh then
/// adds nothing, what is queued goes anyway.
const FAR_BEHIND: usize = 4096;

/// An ownership record on the wire, its record header included.
const OWNERSHIP_LEN: usize = mirror::RECORD_HEADER_LEN + 32;

/// The wire record of an ownership record to send.
fn ownership_record(
    (spi, dir): SaKey,
    (owner, generation, start, kind): OwnerRecord,
) -> MirrorRecord {
    MirrorRecord::Ownership {
        spi,
        dir,
        owner,
        generation,
        start,
        kind,
    }
}

/// A mirror setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorConfigError {
    /// A period or count that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A takeover jump a receiver could not follow.
    #[error(
        "{name} is {value}: at most 2^28 ({MAX_TAKEOVER_JUMP}), or receivers lose the ESN high half after a failover cycle"
    )]
    JumpTooLarge {
        /// Which jump.
        name: &'static str,
        /// Its value.
        value: u64,
    },
    /// The peer has this node's id.
    #[error("node and peer are both {0}")]
    SameNode(u32),
    /// Frames too small to carry a record.
    #[error("max_frame {0} is below 128 bytes")]
    FrameTooSmall(usize),
}

impl MirrorConfigError {
    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            MirrorConfigError::Zero(k) => k,
            MirrorConfigError::JumpTooLarge { name, .. } => name,
            MirrorConfigError::SameNode(_) => "peer",
            MirrorConfigError::FrameTooSmall(_) => "max_frame",
        }
    }
}

impl MirrorConfig {
    /// Checks the settings against each other.
    pub fn check(&self) -> Result<(), MirrorConfigError> {
        for (name, v) in [
            ("interval", self.interval),
            ("inbound_interval", self.inbound_interval),
            ("heartbeat_ms", self.heartbeat_ms),
            ("dead_after", u64::from(self.dead_after)),
            ("refresh_ms", self.refresh_ms),
        ] {
            if v == 0 {
                return Err(MirrorConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("takeover_jump", self.takeover_jump),
            ("takeover_jump_32", self.takeover_jump_32),
        ] {
            if value > MAX_TAKEOVER_JUMP {
                return Err(MirrorConfigError::JumpTooLarge { name, value });
            }
        }
        if self.node == self.peer {
            return Err(MirrorConfigError::SameNode(self.node));
        }
        if self.max_frame < 128 {
            return Err(MirrorConfigError::FrameTooSmall(self.max_frame));
        }
        Ok(())
    }
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            node: 1,
            peer: 2,
            interval: 1024,
            quantity: 4096,
            lease: true,
            takeover_jump: 1 << 25,
            takeover_jump_32: 1 << 24,
            inbound_interval: 1024,
            inbound_takeover: InboundTakeover::Strict,
            heartbeat_ms: 10,
            dead_after: 3,
            refresh_ms: 100,
            max_frame: 1400,
        }
    }
}

/// Why this node refused to run its SAs without leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefused {
    /// The peer's frames still arrive: it is not isolated, and two owners
    /// without leases would use the same numbers.
    #[error("the peer is heard: a fence must follow a verified isolation")]
    PeerHeard,
    /// No bulk sync since this node started: it does not know how far its
    /// SAs went in its earlier life, so it cannot place them past it.
    #[error("not synchronised since it started: its SAs cannot be placed past its earlier life")]
    NotSynced,
}

/// Something the node should act on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MirrorEvent {
    /// The peer is heard (again), in this epoch.
    PeerAlive {
        /// Its epoch.
        epoch: u64,
    },
    /// The peer missed `dead_after` heartbeats.
    PeerDead,
    /// An owned SA's limit changed: outbound, it may use sequence numbers
    /// below `limit`; inbound, it may accept only packets below it.
    LimitRaised {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: SaDir,
        /// The new limit (`u64::MAX`: none).
        limit: u64,
    },
    /// The peer's bulk sync is complete: this node knows its SAs' history.
    Synced {
        /// SA states the peer sent.
        records: u64,
    },
    /// This node now owns an SA (taken over, handed back, or recovered):
    /// outbound, the next packet gets sequence number `start`; inbound,
    /// the window top is `start` with `bitmap` below it.
    Activate {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: SaDir,
        /// First sequence number (outbound) or window top (inbound).
        start: u64,
        /// Inbound replay bitmap below the top.
        bitmap: Vec<u64>,
    },
    /// This node no longer owns an SA: stop using it.
    Deactivate {
        /// SPI.
        spi: u32,
        /// Direction.
        dir: SaDir,
    },
}

/// Counters of the mirror link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Frames built for sending.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// SA state records sent.
    pub states_sent: u64,
    /// Lease acknowledgements sent.
    pub acks_sent: u64,
    /// Frames accepted.
    pub frames_received: u64,
    /// Records about SAs this node does not know, or of unknown types.
    pub records_ignored: u64,
    /// Takeovers done (SAs).
    pub taken_over: u64,
    /// SAs handed back.
    pub handed_back: u64,
    /// Bulk syncs received with frames lost on the way, and so asked for
    /// again.
    pub bulks_incomplete: u64,
    /// Records that would change this node's state but were sent to another
    /// of its lives (recorded frames replayed, or frames in flight across a
    /// restart): ignored.
    pub records_other_life: u64,
}

/// Per-SA changes to the send policy of the `mirror:` defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaOverrides {
    /// Outbound: the state is due at multiples of this sequence number;
    /// inbound: of this window top (`inbound_interval`).
    pub interval: Option<u64>,
    /// Outbound: the lease `seq + quantity`.
    pub quantity: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PairSa {
    esn: bool,
    /// Reporting interval (outbound `interval`, inbound `inbound_interval`).
    interval: u64,
    /// Outbound quantity.
    quantity: u64,
    home: u32,
    owner: u32,
    generation: u64,
    /// Handed to the peer by this node and not confirmed by it since: the
    /// peer may have taken it over meanwhile from anywhere this node knows
    /// nothing of, so it is not taken over again until the peer speaks;
    /// nor are the peer's states of it acknowledged until then.
    blind: bool,
}

/// One SA of the pair as a node's mirror sees it (for operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSaView {
    /// SPI.
    pub spi: u32,
    /// Direction.
    pub dir: SaDir,
    /// The node it runs on while both live.
    pub home: u32,
    /// The node running it now, as far as this node knows.
    pub owner: u32,
    /// Ownership changes so far.
    pub generation: u64,
    /// What this node stores for it: the peer's last state or lease (the
    /// standby copy), or this node's own final state.
    pub stored: Option<u64>,
    /// An outbound SA running here: the lease the peer acknowledged.
    pub acked: Option<u64>,
}

/// An SA of the pair.
type SaKey = (u32, SaDir);
/// An ownership record to send: owner, generation, bound, kind.
type OwnerRecord = (u32, u64, u64, OwnershipKind);

/// What waits to be sent, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Due {
    /// The current state of an owned SA.
    Owned(u32, SaDir),
    /// A fixed record (a copy from the standby table, a final state).
    Record(Box<SaState>),
    /// How far an SA deleted here ran here.
    History(u32, SaDir, Option<u64>),
    /// This node runs an SA past a final state the peer sent as a copy.
    Past(u32, SaDir, u64),
}

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

    /// The floor of an SA's restart points (0 without one).
    fn floor(&self, spi: u32, dir: SaDir) -> u64 {
        self.floors.get(&(spi, dir)).copied().unwrap_or(0)
    }

    fn enqueue(&mut self, key: (u32, SaDir)) {
        if self.queued.insert(key) {
            self.due.push_back(Due::Owned(key.0, key.1));
        }
    }

    /// The takeover jump of an outbound SA.
    fn jump(&self, spi: u32) -> u64 {
        let esn = self
            .pair
            .get(&(spi, SaDir::Outbound))
            .is_some_and(|p| p.esn);
        if esn {
            self.cfg.takeover_jump
        } else {
            self.cfg.takeover_jump_32
        }
    }

    /// Where an SA whose stored state is `value` may start again without
    /// reusing anything an earlier owner (or an earlier life of this node)
    /// could have used: owners stay below their acknowledged lease plus
    /// `jump - quantity`, and every acknowledged lease is stored.
    fn restart_point(&self, spi: u32, dir: SaDir, value: u64) -> u64 {
        let point = match dir {
            SaDir::Outbound => value.saturating_add(self.jump(spi)).max(1),
            SaDir::Inbound => match self.cfg.inbound_takeover {
                InboundTakeover::Strict => value.saturating_add(self.interval_of(spi, dir)),
                InboundTakeover::Lenient => value,
            },
        };
        point.max(self.floor(spi, dir))
    }

    /// The last part of the first bulk to the peer's life is sent (or the
    /// life says it synchronised): from now on it may run SAs,
    /// and what it stores is counted with what that bulk carried. (Should
    /// the bulk not arrive, the life never synchronises and so runs
    /// nothing, and a death of this node would leave the pair with no
    /// memory of the SAs at all: nothing a start counts on.)
    fn bulk_sent(&mut self) {
        if let Some(bulk) = self.bulk_told.as_mut().map(std::mem::take) {
            for (key, v) in bulk {
                self.tell(key, v);
            }
        }
    }

    /// The peer's current life stores `v` (or more) of SA `key`.
    fn tell(&mut self, key: SaKey, v: u64) {
        let e = self.told.entry(key).or_insert(0);
        *e = (*e).max(v);
    }

    /// How much of `value` a start may count as acknowledged: at most
    /// [`LOST_LIFE_STEPS`] less one steps (jumps, intervals) past what the
    /// peer is known to store ([`told`](Self::told)), so that, with the
    /// step it may run past that, a life of this node that dies unheard
    /// stays within the peer's bound for it (see `peer_lost`), whatever
    /// this node alone knew (its own stalled numbers, say).
    fn acknowledged(&self, spi: u32, dir: SaDir, value: u64) -> u64 {
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
    fn restart_window(
        &self,
        (spi, dir): SaKey,
        stored: &Standby,
        start: u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let lenient = self.cfg.inbound_takeover == InboundTakeover::Lenient
            && start > self.floor(spi, dir)
            && !stored.bitmap.is_empty();
        match dir {
            SaDir::Outbound => (Vec::new(), Vec::new()),
            SaDir::Inbound if lenient => {
                let b = raised(&stored.bitmap, start.saturating_sub(stored.value));
                (b.clone(), b)
            }
            SaDir::Inbound => (
                vec![u64::MAX; mirror::MAX_BITMAP_WORDS],
                vec![u64::MAX; stored.bitmap.len()],
            ),
        }
    }

    /// Stores `value` for an SA in the standby table (merged by maximum).
    fn store(&mut self, spi: u32, dir: SaDir, value: u64) {
        self.standby.merge(&SaState {
            spi,
            dir,
            value,
            bytes: 0,
            packets: 0,
            bitmap: Vec::new(),
            copy: false,
        });
    }

    /// The send policy of outbound SA `spi`.
    fn policy(&self, spi: u32) -> OutboundPolicy {
        let c = self.cfg;
        let (interval, quantity) = self
            .pair
            .get(&(spi, SaDir::Outbound))
            .map_or((c.interval, c.quantity), |p| (p.interval, p.quantity));
        OutboundPolicy::new(interval, quantity, c.lease, self.jump(spi))
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

    /// Starts owning an SA at `start` (outbound: next sequence number, with
    /// `acked` the value the peer stores for it; inbound: window top).
    fn own(&mut self, spi: u32, dir: SaDir, start: u64, acked: u64, bitmap: Vec<u64>) {
        match dir {
            SaDir::Outbound => {
                let policy = self.policy(spi);
                self.outbound
                    .insert(spi, OwnedOutbound::starting_at(policy, start, acked));
            }
            SaDir::Inbound => {
                let every = self.interval_of(spi, dir);
                self.inbound.insert(
                    spi,
                    OwnedInbound::starting_at(every, self.cfg.lease, start, bitmap, acked),
                );
            }
        }
        self.enqueue((spi, dir));
    }

    /// Tells the node an SA is to run from `start` here, and queues its
    /// state for the peer.
    fn activated(&mut self, spi: u32, dir: SaDir, start: u64, bitmap: Vec<u64>) {
        self.events.push_back(MirrorEvent::Activate {
            spi,
            dir,
            start,
            bitmap,
        });
        self.enqueue((spi, dir));
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

    /// Tells the node an owned SA's limit now.
    fn limit_changed(&mut self, spi: u32, dir: SaDir) {
        if let Some(limit) = self.limit_of(spi, dir) {
            self.events
                .push_back(MirrorEvent::LimitRaised { spi, dir, limit });
        }
    }

    /// Every SA this node owns now.
    fn owned_keys(&self) -> Vec<SaKey> {
        self.outbound
            .keys()
            .map(|s| (*s, SaDir::Outbound))
            .chain(self.inbound.keys().map(|s| (*s, SaDir::Inbound)))
            .collect()
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

    /// Starts running an SA here as a takeover does: past its stored value
    /// (0 if none) by the jump, under ownership `generation`. The peer's SA
    /// added here at run time and not spoken of since starts a step
    /// further: the peer may be alive behind a cut link and run it from its
    /// first number, as far as its slack allows, or (if this node ran it
    /// before it was deleted) have taken it over from a value this node
    /// reported and run it as far as its own lease.
    fn take(&mut self, key: SaKey, generation: u64) {
        let mut known = self.standby.get(key.0, key.1).map_or(0, |s| s.value);
        if self.unheard.contains(&key) {
            known = self.restart_point(key.0, key.1, known);
        }
        self.take_from(key, generation, known);
    }

    /// Starts running an SA here as a takeover from `value` does (the
    /// stored window, where one is kept, moved up to it).
    fn take_from(&mut self, (spi, dir): SaKey, generation: u64, value: u64) {
        let mut stored = self.standby.get(spi, dir).cloned().unwrap_or_default();
        if value > stored.value {
            stored.bitmap = raised(&stored.bitmap, value - stored.value);
            stored.value = value;
        }
        let start = self.restart_point(spi, dir, stored.value);
        let (window, kept) = self.restart_window((spi, dir), &stored, start);
        // The ownership record carries `start`; the peer stores it before
        // it can act on this SA again, so it counts as acknowledged.
        self.set_owner(
            (spi, dir),
            self.cfg.node,
            generation,
            start,
            OwnershipKind::Change,
        );
        let acked = self.acknowledged(spi, dir, start);
        self.own(spi, dir, start, acked, kept);
        self.events.push_back(MirrorEvent::Activate {
            spi,
            dir,
            start,
            bitmap: window,
        });
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

    fn set_owner(
        &mut self,
        key: SaKey,
        owner: u32,
        generation: u64,
        start: u64,
        kind: OwnershipKind,
    ) {
        if let Some(p) = self.pair.get_mut(&key) {
            p.owner = owner;
            p.generation = generation;
            self.max_generation = self.max_generation.max(generation);
            let record = (owner, generation, start, kind);
            self.ownership_out.insert(key, record);
            self.unconfirmed.insert(key, record);
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
    fn bound(&self, spi: u32, dir: SaDir) -> u64 {
        match (dir, self.outbound.get(&spi), self.inbound.get(&spi)) {
            (SaDir::Outbound, Some(o), _) => o.sent_lease(),
            (SaDir::Inbound, _, Some(i)) => i.sent_top(),
            _ => self.standby.get(spi, dir).map_or(0, |s| s.value),
        }
    }

    /// Stops owning an SA: records in the standby table how far this node
    /// could have gone, emits `Deactivate`, and returns that final state.
    fn release(&mut self, spi: u32, dir: SaDir) -> Option<SaState> {
        let fin = self.take_final(spi, dir)?;
        self.events.push_back(MirrorEvent::Deactivate { spi, dir });
        Some(fin)
    }

    /// Stops owning an SA without a word to the workers (it is released,
    /// or deleted): its final state, kept in the standby table.
    fn take_final(&mut self, spi: u32, dir: SaDir) -> Option<SaState> {
        self.asking.remove(&(spi, dir));
        let fin = match dir {
            SaDir::Outbound => {
                let s = self.outbound.remove(&spi)?;
                let (_, bytes, packets) = s.counters();
                SaState {
                    spi,
                    dir,
                    value: s.used_bound(),
                    bytes,
                    packets,
                    bitmap: Vec::new(),
                    copy: false,
                }
            }
            SaDir::Inbound => {
                // What it reported, a stall past the window included:
                // the peer may have taken it over from there.
                let s = self.inbound.remove(&spi)?;
                let (bytes, packets) = s.counters();
                let value = s.value().max(s.sent_top());
                SaState {
                    spi,
                    dir,
                    value,
                    bytes,
                    packets,
                    bitmap: rebase(s.bitmap(), value - s.top()),
                    copy: false,
                }
            }
        };
        if self.queued.remove(&(spi, dir)) {
            self.due.retain(|d| *d != Due::Owned(spi, dir));
        }
        self.standby.merge(&fin);
        Some(fin)
    }

    /// A copy of one of this node's SAs from the peer's standby table (bulk
    /// sync, hand-back): the SA restarts beyond anything used before.
    /// Returns whether it moved (and so was activated again).
    fn recover(&mut self, spi: u32, dir: SaDir, value: u64, bitmap: &[u64]) -> bool {
        let start = self.restart_point(spi, dir, value);
        let window = match dir {
            SaDir::Outbound => {
                let moved = self
                    .outbound
                    .get_mut(&spi)
                    .is_some_and(|o| o.recover(start, value));
                moved.then(Vec::new)
            }
            SaDir::Inbound => {
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

    /// An ownership record from the peer: a change (or hand-over) to take
    /// in and confirm, or the peer's confirmation of one of this node's.
    fn ownership(
        &mut self,
        key: SaKey,
        owner: u32,
        generation: u64,
        start: u64,
        kind: OwnershipKind,
    ) {
        if owner != self.cfg.node {
            // Whoever owns it may use numbers up to `start` plus slack
            // without further word: store it before anything else.
            self.store(key.0, key.1, start);
        }
        let matches = |p: &PairSa| p.owner == owner && p.generation == generation;
        if kind == OwnershipKind::Confirm {
            if self
                .unconfirmed
                .get(&key)
                .is_some_and(|r| r.0 == owner && r.1 == generation)
            {
                self.unconfirmed.remove(&key);
            }
            // The peer has spoken of the SA (its bound is stored above).
            match self.pair.get_mut(&key) {
                Some(p) if matches(p) => {
                    p.blind = false;
                    self.unheard.remove(&key);
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
            let bound = self.bound(key.0, key.1);
            self.ownership_out
                .insert(key, (owner, generation, bound, OwnershipKind::Confirm));
        }
    }

    /// Takes in an ownership change if it wins over this node's view.
    fn change(
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
            self.max_generation = self.max_generation.max(generation);
        }
        self.unheard.remove(&(spi, dir));
        // What this node sent about the SA before is superseded.
        self.unconfirmed.remove(&(spi, dir));
        let handover = kind == OwnershipKind::Handover;
        if p.owner == me && owner != me {
            // The peer took it over while this node ran it (a split
            // brain). It started past what it knew of this node's run,
            // which that run may have passed if the two views of who ran
            // it differed (both took it over): it gets this node's final
            // state as a copy, and moves past it. (Before its bulk sync
            // this node ran nothing: its final is only where it would
            // have started.)
            let fin = self.release(spi, dir);
            if let Some(mut fin) = fin.filter(|_| self.synced) {
                fin.copy = true;
                self.finals.insert((spi, dir), fin.clone());
                self.due.push_back(Due::Record(Box::new(fin)));
            }
        } else if p.owner == me && owner == me && handover {
            // Handed an SA this node thinks it runs already (it restarted
            // while the peer held it): it moves past all the peer used.
            self.handed(spi, dir, start);
        } else if p.owner != me && owner == me {
            let stored = self.standby.get(spi, dir).cloned().unwrap_or_default();
            let (begin, acked) = if handover && dir == SaDir::Outbound {
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
            self.events.push_back(MirrorEvent::Activate {
                spi,
                dir,
                start,
                bitmap: window,
            });
        }
    }

    /// What this node knows of an SA: what it stores (a standby copy, the
    /// history of an SA no longer configured, its own final state) and,
    /// if it runs here, what it reported of it (its states' value: the
    /// peer stores no more than that from them, and a history up to it
    /// coming back is this life's own news, not an earlier use); nothing
    /// if it never heard of it. (An SA added here and still asking runs
    /// nothing yet: where it would start is not news.)
    fn history_of(&self, spi: u32, dir: SaDir) -> Option<u64> {
        let stored = self.standby.get(spi, dir).map(|s| s.value);
        if self.asking.contains(&(spi, dir)) {
            return stored;
        }
        let reported = match dir {
            SaDir::Outbound => self.outbound.get(&spi).map(|o| o.sent_lease()),
            SaDir::Inbound => self.inbound.get(&spi).map(|i| i.sent_top()),
        };
        match (reported, stored) {
            (Some(r), s) => Some(r.max(s.unwrap_or(0))),
            (None, s) => s,
        }
    }

    /// Starts an SA added at run time once the peer answered: from its
    /// first number if neither node ever heard of it, else past the
    /// highest value known, as a restart would.
    fn begin_asked(&mut self, spi: u32, dir: SaDir, known: Option<u64>) {
        if let Some(v) = known {
            // The window this node keeps of its history (what it, or the
            // peer's states, reported before the delete) stays seen. Of a
            // history whose window it lacks (a history record carries
            // none: this node restarted since the delete; or the answer is
            // past what it stores) everything at and below is seen.
            let bitmap = self
                .standby
                .get(spi, dir)
                .filter(|s| s.value == v && !s.bitmap.is_empty())
                .map_or_else(
                    || vec![u64::MAX; mirror::MAX_BITMAP_WORDS],
                    |s| s.bitmap.clone(),
                );
            if self.recover(spi, dir, v, &bitmap) {
                return;
            }
        }
        // Where it stands already (its first number if nobody knew it, or
        // where a lost peer life moved it meanwhile: strict, everything at
        // and below seen).
        let (start, window) = match (dir, self.outbound.get(&spi), self.inbound.get(&spi)) {
            (SaDir::Outbound, Some(o), _) => (o.counters().0 + 1, Vec::new()),
            (SaDir::Inbound, _, Some(i)) => {
                let here = Standby {
                    value: i.top(),
                    bitmap: i.bitmap().to_vec(),
                    ..Standby::default()
                };
                (i.top(), self.restart_window((spi, dir), &here, i.top()).0)
            }
            _ => return,
        };
        self.activated(spi, dir, start, window);
    }

    /// Whether an acknowledgement for an owned SA is above anything this
    /// node sent for it.
    fn acked_beyond(&self, spi: u32, dir: SaDir, lease: u64) -> bool {
        match dir {
            SaDir::Outbound => self
                .outbound
                .get(&spi)
                .is_some_and(|o| lease > o.sent_lease()),
            SaDir::Inbound => self.inbound.get(&spi).is_some_and(|i| lease > i.sent_top()),
        }
    }

    /// What the peer knows of an SA: the answer to this node's query, or
    /// the history of an SA it no longer runs: stored, and an owned SA
    /// moves past it if it is above anything this life sent of it.
    fn history(&mut self, spi: u32, dir: SaDir, value: Option<u64>) {
        let key = (spi, dir);
        self.questions.remove(&key);
        if self.asking.remove(&key) {
            // Both nodes' knowledge: nothing on either means never used.
            let known = match (value, self.standby.get(spi, dir).map(|s| s.value)) {
                (None, None) => None,
                (a, b) => a.max(b),
            };
            self.begin_asked(spi, dir, known);
        } else if let Some(v) = value {
            if !self.owns(spi, dir) {
                self.store(spi, dir, v);
            } else if self.acked_beyond(spi, dir, v) {
                // Above anything this life sent of it: an earlier use it
                // forgot. (Not higher, it is this life's own news, or the
                // 0 a repeated question left.)
                self.recover(spi, dir, v, &[]);
            }
        }
    }

    /// A hand-over of an SA this node owns already: outbound, it goes on
    /// at `start` at least, with that much acknowledged; inbound, as a
    /// recovery from the stored window.
    fn handed(&mut self, spi: u32, dir: SaDir, start: u64) {
        match dir {
            SaDir::Outbound => {
                let begin = start.max(self.floor(spi, dir)).max(1);
                let moved = self.outbound.get_mut(&spi).map(|o| o.recover(begin, start));
                match moved {
                    Some(true) => self.activated(spi, dir, begin, Vec::new()),
                    Some(false) if self.synced => self.limit_changed(spi, dir),
                    _ => {}
                }
            }
            SaDir::Inbound => {
                // The stored window counts from the stored top: raised to
                // the start when that is higher.
                let stored = self.standby.get(spi, dir).cloned().unwrap_or_default();
                let top = stored.value.max(start);
                let bitmap = raised(&stored.bitmap, top - stored.value);
                self.recover(spi, dir, top, &bitmap);
            }
        }
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
    fn peer_restarted(&mut self) {
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
    fn peer_lost(&mut self) {
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
    fn restarted_past(&self, spi: u32, dir: SaDir, value: u64, steps: u64) -> u64 {
        (0..steps).fold(value, |v, _| self.restart_point(spi, dir, v))
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

    /// Switches the lease rule of every owned SA, and tells the workers
    /// their new limits.
    fn set_lease(&mut self, on: bool) {
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
    fn death_ms(&self) -> u64 {
        self.cfg
            .heartbeat_ms
            .saturating_mul(u64::from(self.cfg.dead_after))
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

    fn state_record(&mut self, spi: u32, dir: SaDir) -> Option<SaState> {
        if self.asking.contains(&(spi, dir)) {
            // Its state would create the peer's entry before the peer
            // answers whether it had one: it goes once the answer is in.
            return None;
        }
        match dir {
            SaDir::Outbound => {
                let s = self.outbound.get_mut(&spi)?;
                let lease = s.lease();
                s.sent(lease);
                let (_, bytes, packets) = s.counters();
                Some(SaState {
                    spi,
                    dir,
                    value: lease,
                    bytes,
                    packets,
                    bitmap: Vec::new(),
                    copy: false,
                })
            }
            SaDir::Inbound => {
                let s = self.inbound.get_mut(&spi)?;
                s.sent();
                let (bytes, packets) = s.counters();
                // Reported past the window (a stall report): nothing past
                // the window's top is marked seen.
                Some(SaState {
                    spi,
                    dir,
                    value: s.value(),
                    bytes,
                    packets,
                    bitmap: rebase(s.bitmap(), s.value() - s.top()),
                    copy: false,
                })
            }
        }
    }

    fn record_len(&self, d: &Due) -> usize {
        let words = match d {
            Due::Owned(spi, SaDir::Inbound) => {
                self.inbound.get(spi).map_or(0, |s| s.bitmap().len())
            }
            Due::Record(s) => s.bitmap.len(),
            _ => 0,
        };
        match d {
            Due::History(..) | Due::Past(..) => mirror::RECORD_HEADER_LEN + 16,
            _ => mirror::RECORD_HEADER_LEN + 36 + 8 * words,
        }
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

    /// Queues again what the peer has not acknowledged or confirmed, in
    /// measure: a bulk sync of a million SAs takes the link seconds, and
    /// walking every SA (or sending a million changes again) each refresh
    /// while it does would only slow it down.
    fn refresh(&mut self) {
        if !self.synced {
            self.bulk_request = true;
        }
        self.queries.extend(self.questions.iter().copied());
        if self.due.len() < FAR_BEHIND {
            let refresh: Vec<(u32, SaDir)> = self
                .outbound
                .iter()
                .filter(|(_, s)| s.needs_refresh())
                .map(|(k, _)| (*k, SaDir::Outbound))
                .chain(
                    self.inbound
                        .iter()
                        .filter(|(_, s)| s.needs_refresh())
                        .map(|(k, _)| (*k, SaDir::Inbound)),
                )
                .collect();
            for k in refresh {
                self.enqueue(k);
            }
        }
        // Final states the peer has not moved past go again while it runs
        // the SA (one it no longer runs, or this node took back, needs
        // them no more).
        let peer = self.cfg.peer;
        let pair = &self.pair;
        self.finals
            .retain(|k, _| pair.get(k).is_some_and(|p| p.owner == peer));
        for fin in self.finals.values().take(RESEND_PER_REFRESH) {
            self.due.push_back(Due::Record(Box::new(fin.clone())));
        }
        // Changes the peer has not confirmed go again while they are still
        // this node's view; a slice per refresh, the next going on from
        // where this one stopped.
        let from = match self.resend_from.take() {
            Some(k) => self
                .unconfirmed
                .range((Bound::Excluded(k), Bound::Unbounded)),
            None => self.unconfirmed.range(..),
        };
        let slice: Vec<(SaKey, OwnerRecord)> = from
            .take(RESEND_PER_REFRESH)
            .map(|(k, r)| (*k, *r))
            .collect();
        if slice.len() == RESEND_PER_REFRESH {
            self.resend_from = slice.last().map(|(k, _)| *k);
        }
        for (k, r) in slice {
            let current = self
                .pair
                .get(&k)
                .is_some_and(|p| p.owner == r.0 && p.generation == r.1);
            if current {
                self.ownership_out.entry(k).or_insert(r);
            } else {
                self.unconfirmed.remove(&k);
            }
        }
    }

    /// One frame of what is queued, if anything.
    fn build_frame(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let budget = self
            .cfg
            .max_frame
            .saturating_sub(mirror::HEADER_LEN + mirror::MAC_LEN);
        let mut records = Vec::new();
        let mut size = 0;
        if self.bulk_request {
            self.bulk_request = false;
            records.push(MirrorRecord::BulkRequest);
            size += mirror::RECORD_HEADER_LEN;
        }
        if now_ms >= self.next_heartbeat {
            records.push(MirrorRecord::Heartbeat {
                now_ms,
                owned: (self.outbound.len() + self.inbound.len()) as u32,
                peer_alive: self.peer_alive,
                generation: self.max_generation,
            });
            size += mirror::RECORD_HEADER_LEN + 24;
            self.next_heartbeat = now_ms.saturating_add(self.cfg.heartbeat_ms);
        }
        while let Some((&(spi, dir), &(view, value))) = self.answers.iter().next() {
            let len = mirror::RECORD_HEADER_LEN + 16 + view.map_or(0, |_| OWNERSHIP_LEN);
            if size + len > budget {
                break;
            }
            self.answers.remove(&(spi, dir));
            if let Some(view) = view {
                records.push(ownership_record((spi, dir), view));
            }
            records.push(MirrorRecord::History { spi, dir, value });
            size += len;
        }
        while let Some((&key, &record)) = self.ownership_out.iter().next() {
            if size + OWNERSHIP_LEN > budget {
                break;
            }
            self.ownership_out.remove(&key);
            records.push(ownership_record(key, record));
            size += OWNERSHIP_LEN;
        }
        while let Some(&(spi, dir)) = self.queries.iter().next() {
            if size + mirror::RECORD_HEADER_LEN + 8 > budget {
                break;
            }
            self.queries.remove(&(spi, dir));
            records.push(MirrorRecord::Query { spi, dir });
            size += mirror::RECORD_HEADER_LEN + 8;
        }
        while let Some((&(spi, dir), &lease)) = self.acks.iter().next() {
            if size + mirror::RECORD_HEADER_LEN + 16 > budget {
                break;
            }
            self.acks.remove(&(spi, dir));
            records.push(MirrorRecord::LeaseAck { spi, dir, lease });
            size += mirror::RECORD_HEADER_LEN + 16;
            self.stats.acks_sent += 1;
        }
        // A part of a bulk goes whole, after what must not wait behind a
        // bulk of a million SAs (answers, ownership, acknowledgements); a
        // frame too full for it leaves it to the next.
        if self.part_pending() {
            let room = if records.is_empty() {
                usize::MAX
            } else {
                budget.saturating_sub(size)
            };
            if let Some(part) = self.next_part(room) {
                size += part.iter().map(MirrorRecord::buffer_len).sum::<usize>();
                records.extend(part);
            }
        }
        while let Some(d) = self.due.front() {
            let len = self.record_len(d);
            if size + len > budget && !records.is_empty() {
                break;
            }
            let d = self.due.pop_front().expect("front exists");
            let record = match d {
                Due::Owned(spi, dir) => {
                    self.queued.remove(&(spi, dir));
                    self.state_record(spi, dir).map(MirrorRecord::SaState)
                }
                Due::Record(s) => Some(MirrorRecord::SaState(*s)),
                Due::History(spi, dir, value) => Some(MirrorRecord::History { spi, dir, value }),
                Due::Past(spi, dir, value) => Some(MirrorRecord::Past { spi, dir, value }),
            };
            if let Some(r) = record {
                if matches!(r, MirrorRecord::SaState(_)) {
                    self.stats.states_sent += 1;
                }
                records.push(r);
                size += len;
            }
        }
        if records.is_empty() {
            return None;
        }
        self.counter += 1;
        let header = MirrorHeader {
            flags: if self.synced { mirror::FLAG_SYNCED } else { 0 },
            records: 0,
            node: self.cfg.node,
            epoch: self.epoch,
            counter: self.counter,
            peer_epoch: self.filter.epoch().unwrap_or(0),
        };
        let frame = seal(&self.key, header, &records);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Some(frame)
    }
}

/// A replay bitmap (bit `k` of word `w`: top minus `64 w + k` seen) for a
/// top `d` higher: every bit moves `d` places down the window.
/// The numbers either of two bitmaps (of one top) marks seen.
fn union(a: &[u64], b: &[u64]) -> Vec<u64> {
    (0..a.len().max(b.len()))
        .map(|w| a.get(w).copied().unwrap_or(0) | b.get(w).copied().unwrap_or(0))
        .collect()
}

/// A window moved `d` numbers up, as [`rebase`] does, with the `d`
/// numbers it moved over (above its old top, up to the new one) seen:
/// nothing tells which of them were accepted.
fn raised(bitmap: &[u64], d: u64) -> Vec<u64> {
    let mut out = rebase(bitmap, d);
    let fill = d.min(out.len() as u64 * 64);
    for k in 0..fill {
        out[(k / 64) as usize] |= 1 << (k % 64);
    }
    out
}

fn rebase(bitmap: &[u64], d: u64) -> Vec<u64> {
    let bits = bitmap.len() as u64 * 64;
    let mut out = vec![0u64; bitmap.len()];
    for k in 0..bits.saturating_sub(d) {
        if bitmap[(k / 64) as usize] >> (k % 64) & 1 == 1 {
            let n = k + d;
            out[(n / 64) as usize] |= 1 << (n % 64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{raised, rebase};

    #[test]
    fn rebasing_keeps_each_number_seen() {
        // Top 100 with 100, 98 and 37 seen; the top moves to 110.
        let mut b = vec![0u64; 2];
        for k in [0u64, 2, 63] {
            b[(k / 64) as usize] |= 1 << (k % 64);
        }
        let r = rebase(&b, 10);
        let seen: Vec<u64> = (0..128)
            .filter(|k| r[(k / 64) as usize] >> (k % 64) & 1 == 1)
            .map(|k| 110 - k)
            .collect();
        assert_eq!(seen, vec![100, 98, 37]);
        assert_eq!(rebase(&b, 200), vec![0, 0], "all of it fell out");
    }

    #[test]
    fn raising_sees_what_it_moves_over() {
        // Top 100 with 100 and 37 seen; raised to 110: 101..=110 seen too.
        let mut b = vec![0u64; 2];
        for k in [0u64, 63] {
            b[(k / 64) as usize] |= 1 << (k % 64);
        }
        let r = raised(&b, 10);
        let seen: Vec<u64> = (0..128)
            .filter(|k| r[(k / 64) as usize] >> (k % 64) & 1 == 1)
            .map(|k| 110 - k)
            .collect();
        let mut want: Vec<u64> = (101..=110).rev().collect();
        want.extend([100, 37]);
        assert_eq!(seen, want);
        assert_eq!(raised(&b, 500), vec![u64::MAX; 2], "all of it moved over");
        assert_eq!(raised(&[], 5), Vec::<u64>::new(), "no window, none raised");
    }
}
