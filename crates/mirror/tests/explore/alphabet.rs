//! The alphabet of the exploration: families of actions, and each action.

use super::*;

/// A family of actions, switched on or off as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Family {
    /// A frame in flight arrives (any of them: reordering).
    Deliver,
    /// A frame in flight is lost.
    Drop,
    /// A frame in flight is duplicated.
    Duplicate,
    /// An attacker sends an archived frame (of any life) to its receiver
    /// again (not to its sender: a node refuses its own frames before
    /// anything else).
    Replay,
    /// One millisecond passes: timeouts, heartbeats, refreshes.
    Tick,
    /// The mirror link is cut or heals (with both nodes alive: a split
    /// brain once each declares the other dead), or heals one way first.
    Partition,
    /// A node dies.
    Kill,
    /// A dead node starts again with its memory lost.
    Restart,
    /// A node takes over the SAs its peer owns.
    TakeOver,
    /// A node hands its peer's SAs back (to a peer it hears that has
    /// synchronised: the node refuses an order otherwise, and its automatic
    /// failback waits for that).
    HandBack,
    /// The host fences a node whose peer is powered off.
    Fence,
    /// An operator drains a node, or a node fails back, exactly: its SAs
    /// stop on their workers, go to the peer with the workers' final
    /// state, and the node says goodbye; a node's packet flow fails and
    /// works again.
    Drain,
    /// The host adds an SA to one node.
    AddSa,
    /// The host removes an SA from one node.
    RemoveSa,
    /// The host replaces `OUT_A` by `NEW_A` on one node.
    Rekey,
    /// A worker sends on an outbound SA it runs, up to its limit.
    Send,
    /// The far end of an inbound SA sends fresh packets to a node.
    FarEnd,
    /// An attacker replays to a node every packet the far end ever sent.
    Attack,
    /// A node's worker stands still and runs again; the node hands the
    /// stalled worker's stopped SAs over past the highest limit it ever
    /// sent it.
    Stall,
}

impl Family {
    pub(crate) const ALL: [Family; 19] = [
        Family::Deliver,
        Family::Drop,
        Family::Duplicate,
        Family::Replay,
        Family::Tick,
        Family::Partition,
        Family::Kill,
        Family::Restart,
        Family::TakeOver,
        Family::HandBack,
        Family::Fence,
        Family::Drain,
        Family::AddSa,
        Family::RemoveSa,
        Family::Rekey,
        Family::Send,
        Family::FarEnd,
        Family::Attack,
        Family::Stall,
    ];
}

/// A set of action families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Alphabet(u32);

impl Alphabet {
    pub(crate) fn of(families: &[Family]) -> Self {
        Alphabet(families.iter().fold(0, |m, f| m | 1 << *f as u32))
    }

    pub(crate) fn has(self, f: Family) -> bool {
        self.0 & 1 << f as u32 != 0
    }
}

/// How many numbers or packets a burst sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Burst {
    /// One.
    One,
    /// Up to the limit ([`LONG_BURST`] at most), or [`FAR_BURST`] packets.
    Long,
}

/// Which SAs an exact hand-over stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handing {
    /// Every SA the node runs (a drain).
    All,
    /// Those it runs for its peer (a failback).
    Home,
}

/// One step of the world. Nodes are indices: 0 is A, 1 is B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Deliver {
        from: usize,
        index: usize,
    },
    Drop {
        from: usize,
        index: usize,
    },
    Duplicate {
        from: usize,
        index: usize,
    },
    Replay {
        from: usize,
        index: usize,
    },
    Tick,
    Cut,
    Heal,
    /// A cut link heals one way: node `i`'s frames reach its peer again,
    /// its peer's are still lost.
    HealFrom(usize),
    Kill(usize),
    Restart(usize),
    TakeOver(usize),
    HandBack(usize),
    Fence(usize),
    Stop(usize, Handing),
    HandOverStopped(usize),
    Leave(usize),
    /// The node's packet flow fails, or works again (its data ports'
    /// links): it hands nothing more to a peer whose flow failed.
    FlowFails(usize, bool),
    AddSa(usize, Sa),
    RemoveSa(usize, Sa),
    Rekey(usize),
    Send(usize, Sa, Burst),
    FarSend(usize, Sa, Burst),
    Attack(usize),
    /// The node's worker stands still (`true`: it takes no command, the
    /// node cannot read its final state) or runs again, taking the
    /// commands sent meanwhile.
    Stall(usize, bool),
    HandOverStalled(usize),
}

impl Action {
    pub(crate) fn family(self) -> Family {
        match self {
            Action::Deliver { .. } => Family::Deliver,
            Action::Drop { .. } => Family::Drop,
            Action::Duplicate { .. } => Family::Duplicate,
            Action::Replay { .. } => Family::Replay,
            Action::Tick => Family::Tick,
            Action::Cut | Action::Heal | Action::HealFrom(_) => Family::Partition,
            Action::Kill(_) => Family::Kill,
            Action::Restart(_) => Family::Restart,
            Action::TakeOver(_) => Family::TakeOver,
            Action::HandBack(_) => Family::HandBack,
            Action::Fence(_) => Family::Fence,
            Action::Stop(..)
            | Action::HandOverStopped(_)
            | Action::Leave(_)
            | Action::FlowFails(..) => Family::Drain,
            Action::AddSa(..) => Family::AddSa,
            Action::RemoveSa(..) => Family::RemoveSa,
            Action::Rekey(_) => Family::Rekey,
            Action::Send(..) => Family::Send,
            Action::FarSend(..) => Family::FarEnd,
            Action::Attack(_) => Family::Attack,
            Action::Stall(..) | Action::HandOverStalled(_) => Family::Stall,
        }
    }

    /// The in-flight or archived frame the action carries, if any.
    pub(crate) fn frame(self, w: &World) -> Option<&[u8]> {
        match self {
            Action::Deliver { from, index }
            | Action::Drop { from, index }
            | Action::Duplicate { from, index } => Some(&w.link[from][index].bytes),
            Action::Replay { from, index } => Some(&w.archive[from][index].bytes),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = |from: usize| format!("{}→{}", NAMES[from], NAMES[1 - from]);
        match *self {
            Action::Deliver { from, index } => write!(f, "deliver {} #{index}", way(from)),
            Action::Drop { from, index } => write!(f, "drop {} #{index}", way(from)),
            Action::Duplicate { from, index } => write!(f, "duplicate {} #{index}", way(from)),
            Action::Replay { from, index } => write!(f, "replay archived {} #{index}", way(from)),
            Action::Tick => f.write_str("tick"),
            Action::Cut => f.write_str("cut the link"),
            Action::Heal => f.write_str("heal the link"),
            Action::HealFrom(i) => write!(f, "heal the link {} only", way(i)),
            Action::Kill(i) => write!(f, "kill {}", NAMES[i]),
            Action::Restart(i) => write!(f, "restart {}", NAMES[i]),
            Action::TakeOver(i) => write!(f, "{} take_over", NAMES[i]),
            Action::HandBack(i) => write!(f, "{} hand_back", NAMES[i]),
            Action::Fence(i) => write!(f, "{} force_unleased", NAMES[i]),
            Action::Stop(i, h) => write!(f, "{} stops its SAs for a hand-over ({h:?})", NAMES[i]),
            Action::HandOverStopped(i) => {
                write!(f, "{} hands its stopped SAs over exactly", NAMES[i])
            }
            Action::Leave(i) => write!(f, "{} says goodbye", NAMES[i]),
            Action::FlowFails(i, true) => write!(f, "{}'s packet flow fails", NAMES[i]),
            Action::FlowFails(i, false) => write!(f, "{}'s packet flow works again", NAMES[i]),
            Action::AddSa(i, sa) => write!(f, "{} add_sa {sa}", NAMES[i]),
            Action::RemoveSa(i, sa) => write!(f, "{} remove_sa {sa}", NAMES[i]),
            Action::Rekey(i) => write!(f, "{} rekey {OUT_A} → {NEW_A}", NAMES[i]),
            Action::Send(i, sa, b) => write!(f, "{} sends on {sa} ({b:?})", NAMES[i]),
            Action::FarSend(i, sa, b) => write!(f, "far end of {sa} sends to {} ({b:?})", NAMES[i]),
            Action::Attack(i) => write!(f, "attacker replays every inbound packet to {}", NAMES[i]),
            Action::Stall(i, true) => write!(f, "{}'s worker stands still", NAMES[i]),
            Action::Stall(i, false) => write!(f, "{}'s worker runs again", NAMES[i]),
            Action::HandOverStalled(i) => write!(
                f,
                "{} hands its stalled worker's stopped SAs over past their highest limits",
                NAMES[i]
            ),
        }
    }
}
