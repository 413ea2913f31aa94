//! Breadth-first exploration of the mirror protocol: two real [`Mirror`]
//! nodes, a model of their workers, the mirror link between them and the
//! far ends of their SAs, driven through every interleaving of a chosen
//! alphabet of actions up to a depth. States are told apart by a
//! fingerprint ([`Mirror::fingerprint`] and the rest of the world), so
//! each is expanded once. After every step these properties are checked:
//!
//! 1. no outbound (SPI, sequence number) is used twice, across both nodes
//!    and all their lives;
//! 2. no inbound packet is accepted twice across the pair and its lives
//!    (an attacker replays every packet the far end ever sent, to either
//!    node);
//! 3. with both nodes alive and the link whole, once the pair is left
//!    alone long enough, no SA configured on both has two owners: both
//!    views name the same one, and at most one worker runs it;
//! 4. and none is left with no owner: the one the views name owns it, its
//!    worker runs it and may use (or accept) a fresh number;
//! 5. with one node dead, once the other is left alone long enough to
//!    declare it dead and take its SAs over, the survivor owns every SA it
//!    has (if it synchronised since it started: else it cannot know where
//!    they stand; and if it did not say goodbye: it stops, and its peer's
//!    death meanwhile is a double failure), and once it is told the peer is fenced, as the host
//!    does, its worker runs every one and may use (or accept) a fresh
//!    number;
//! 6. every frame a node builds fits its `max_frame` (the mirror port
//!    drops a larger one, and what it carries never arrives).
//! 7. where an exploration asks for it (alphabets without restarts,
//!    fences or partitions, which move a start past a lost life's reach on
//!    purpose): a takeover of the inbound SA from a dead peer starts at
//!    most the bound's cap past the far end's last packet, so it refuses
//!    no more fresh packets than arrive in `inbound_ahead_ms`.
//!
//! A violation comes with the shortest trace that leads to it (the search
//! is breadth-first), replayed step by step with the frames and the state
//! of both nodes.
//!
//! **The world.** Node A (id 1) and B (id 2), each a `Mirror` and its
//! workers' SAs as the node drives them, or dead. Every mirrored SA is
//! built at limit 0 (running if at home, else parked), as `build_sa` does;
//! then, as the node's mirror task does, `LimitRaised` sets a limit,
//! `Activate` restarts an SA at its start (never backwards: an outbound
//! SA's next number, an inbound SA's window top) and sets the limit
//! `Mirror::limit_of` gives, `Deactivate` parks it. An outbound worker
//! uses numbers below its limit and reports at interval crossings and when
//! it reaches the limit; an inbound worker accepts a packet its replay
//! window lets through if it is below the limit, reports the first packet
//! refused at the limit (and every 64th), and reports at crossings of half
//! the interval. Progress reaches the mirror at once (the ring is not
//! modelled). The frames in flight each way (at most [`Caps::DEFAULT`],
//! more are lost); the newest frames each node sent, in any of its lives,
//! for replay; the clock; every outbound number used and inbound packet
//! accepted. The SAs: `outA` (home A), `outB` (home B), `inA` (inbound,
//! home A), and `newA` (home A), which only the host adds at run time,
//! alone or as the rekey of `outA`. Periods and amounts are tiny (interval
//! 2, quantity 4, jump 8, heartbeat 1 ms, death after 1 missed, refresh
//! 2 ms) so a few steps reach deaths, refreshes, stalls and jumps.
//!
//! **The roots.** A warm pair: both synchronised over a perfect link,
//! every home SA free to send, the bulk sync's frames in the archive. A
//! busy pair: the warm one after three rounds of traffic on every home SA,
//! acknowledged, so that their numbers lie past what a restart's jumps
//! alone skip. A pair halfway through a rekey: `newA` added to A and
//! running, not yet to B. A streaming pair: the warm one after the far end
//! of `inA` sent fast for a few ticks, A's bound past its top. A node
//! reacts to every input as its mirror task does: events to the workers,
//! then every frame due goes out. A node may be killed only while
//! its peer lives; killing one whose peer has not synchronised loses the
//! pair's memory of the SAs (they would need new keys, which the model
//! does not do), and nothing restarts after that. A fence is the host's:
//! once the peer is powered off (dead here), or cut off (alive behind a
//! cut link: the host cannot tell an isolated node from a dead one), it
//! calls `force_unleased`, which may refuse (the peer still heard, or the
//! node not synchronised) and then changes nothing.
//!
//! **Why not `stateright`:** its `Model` wants states with `Eq` and
//! `Debug` (a `Mirror` has neither, and its equality would have to be the
//! fingerprint's anyway), its checker runs threads on a machine whose two
//! cores are shared, and the properties here are effects of transitions (a
//! number used again) that the world records itself. A BFS of a hundred
//! lines keeps only the frontier in memory (and rebuilds states from their
//! traces past [`KEEP`]), goes on past violations (each check's shortest
//! is the first found), and prints its trace with the frames it carried.
//!
//! Every test prints the states it explored and the depth it reached
//! (`--nocapture`), and for each property broken the depth and the states
//! explored when its shortest violation was found. The bounds of the tests
//! keep the file near 70 s of CPU in a debug build. `EXPLORE_DEPTH` and
//! `EXPLORE_STATES` replace the depth and the state cap of every test; a
//! release build runs some 15 times faster: `EXPLORE_DEPTH=7
//! EXPLORE_STATES=3000000 cargo test --release -p espgate-mirror --test
//! explore -- --nocapture --include-ignored --test-threads 2`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use espgate_esp::replay::ReplayWindow;
use espgate_mirror::{FenceRefused, InboundTakeover, Mirror, MirrorConfig, MirrorEvent, MirrorKey};
use espgate_wire::Direction;
use espgate_wire::mirror::{MirrorRecord, OwnershipKind, parse_records};

/// Node ids; node `i` of the world has id `i + 1`.
const IDS: [u32; 2] = [1, 2];
/// Node names in traces.
const NAMES: [&str; 2] = ["A", "B"];
/// Outbound state is due at multiples of this; inbound too.
const INTERVAL: u64 = 2;
/// An inbound worker reports at multiples of this (half the interval, as
/// `build_sa` sets it).
const INBOUND_EVERY: u64 = if INTERVAL / 2 > 0 { INTERVAL / 2 } else { 1 };
/// Lease = sequence number + this.
const QUANTITY: u64 = 4;
/// Takeover jump (ESN and 32-bit SAs alike).
const JUMP: u64 = 8;
/// Refresh period, in ticks.
const REFRESH: u64 = 2;
/// Largest frame a node may build.
const MAX_FRAME: usize = 1400;
/// Replay window of the workers' inbound SAs.
const WINDOW: u32 = 32;
/// Numbers an outbound worker sends in a long burst at most (an unleased
/// SA has no limit).
const LONG_BURST: u64 = 2 * JUMP;
/// Packets a far end sends in a long burst: past two reporting multiples.
const FAR_BURST: u64 = 2 * INTERVAL + 1;
/// A worker reports a stalled inbound SA at its first refused packet and
/// then every this many (as `espgate_dataplane`'s worker does).
const STALL_REPORT_EVERY: u64 = 64;
/// Graces past the far end's last packet a fence may move an inbound SA
/// (property 7): its mark may hold a takeover's reach (one), and a lost
/// life's moves are `LOST_LIFE_STEPS` (three) more.
const LOST_LIFE_GRACES: u64 = 4;
/// Ticks the ownership check leaves the pair alone before it looks:
/// three refreshes, the longest chain a whole link needs (an SA added
/// again asks and takes in the peer's view; the split-brain loser's final
/// goes again at a refresh; the winner's `past` lets the loser
/// acknowledge again).
const SETTLE_TICKS: u64 = 3 * REFRESH + 1;

std::thread_local! {
    /// The `inbound_grace` of the exploration under way on this thread
    /// (each test explores on its own): an interval, or none, as a pair
    /// whose host fences would have it.
    static GRACE: std::cell::Cell<u64> = const { std::cell::Cell::new(INTERVAL) };
}

/// The mirror configuration of node `i`: every period and amount tiny, so
/// that deaths, refreshes, leases and jumps happen within a few steps.
fn config(i: usize) -> MirrorConfig {
    MirrorConfig {
        node: IDS[i],
        peer: IDS[1 - i],
        interval: INTERVAL,
        quantity: QUANTITY,
        lease: true,
        takeover_jump: JUMP,
        takeover_jump_32: JUMP,
        inbound_interval: INTERVAL,
        inbound_ahead_ms: 1,
        inbound_grace: GRACE.get(),
        inbound_takeover: InboundTakeover::Strict,
        heartbeat_ms: 1,
        dead_after: 1,
        refresh_ms: REFRESH,
        max_frame: MAX_FRAME,
    }
}

fn key() -> MirrorKey {
    MirrorKey::new(b"explore the mirror, 32 bytes....").expect("long enough")
}

/// An SA the host may configure on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sa {
    name: &'static str,
    spi: u32,
    dir: Direction,
    /// Index of its home node.
    home: usize,
}

const OUT_A: Sa = Sa {
    name: "outA",
    spi: 0x100,
    dir: Direction::Outbound,
    home: 0,
};
const OUT_B: Sa = Sa {
    name: "outB",
    spi: 0x200,
    dir: Direction::Outbound,
    home: 1,
};
const IN_A: Sa = Sa {
    name: "inA",
    spi: 0x300,
    dir: Direction::Inbound,
    home: 0,
};
/// The SA a rekey of `OUT_A` brings (added at run time only).
const NEW_A: Sa = Sa {
    name: "newA",
    spi: 0x101,
    dir: Direction::Outbound,
    home: 0,
};
/// What a node is configured with when it starts.
const BOOT: [Sa; 3] = [OUT_A, OUT_B, IN_A];
/// Every SA the host may add or remove.
const CATALOGUE: [Sa; 4] = [OUT_A, OUT_B, IN_A, NEW_A];

impl fmt::Display for Sa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn sa_named(spi: u32, dir: Direction) -> String {
    CATALOGUE
        .iter()
        .find(|s| s.spi == spi && s.dir == dir)
        .map_or_else(|| format!("{spi:#x}"), |s| s.name.to_string())
}

mod alphabet;
mod families;
mod search;
mod step;
mod world;

use alphabet::*;
use search::*;
use step::*;
use world::*;
