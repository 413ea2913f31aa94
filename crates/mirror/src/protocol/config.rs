//! The settings of a node's mirror, checked against each other.

/// How an inbound SA's replay window is set on takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundTakeover {
    /// Start the window at the stored lease (its top plus what arrives in
    /// `inbound_ahead_ms`) with everything up to it seen: no replay can
    /// pass; what the far end sent in the last `inbound_ahead_ms` before
    /// the owner's death is refused.
    Strict,
    /// Keep the mirrored window: packets the owner accepted within its
    /// last lease (`inbound_ahead_ms` of traffic) could be replayed once.
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
    /// The most an inbound SA's lease reaches past its window top, and
    /// the step its worker reports at while it runs without a lease.
    pub inbound_interval: u64,
    /// How far an inbound SA's lease reaches past its window top, in
    /// milliseconds of its traffic: after a takeover, what the far end
    /// sent in the last this many milliseconds before the owner's death
    /// is refused (strict); at rates under one packet in that time each
    /// packet waits a mirror round trip for its acknowledgement.
    pub inbound_ahead_ms: u64,
    /// How far past its start an inbound SA may accept when nothing can
    /// acknowledge its bounds: taken over from a silent peer, or added at
    /// run time while the peer is silent. Whatever a lost life of the peer
    /// (restarted, or fenced) accepted unheard lies within a few of these
    /// past what this node told it, so a restart or fence of the peer
    /// moves each inbound SA that far: fresh packets refused. 0: nothing is
    /// accepted unacknowledged (such an SA waits for the peer, or for a
    /// fence: `espgate host` fences right after a takeover), and a restart
    /// or fence of the peer refuses nothing fresh.
    pub inbound_grace: u64,
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
            inbound_ahead_ms: 10,
            inbound_grace: 1024,
            inbound_takeover: InboundTakeover::Strict,
            heartbeat_ms: 10,
            dead_after: 3,
            refresh_ms: 100,
            max_frame: 1400,
        }
    }
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
