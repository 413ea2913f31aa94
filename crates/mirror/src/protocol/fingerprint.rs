//! A fingerprint of a node's mirror: what tells two states apart when a
//! test explores a pair's state space (`tests/explore/`).

use std::hash::{DefaultHasher, Hash, Hasher};

use super::Mirror;

impl Mirror {
    /// A fingerprint of everything that decides what this node does next:
    /// two nodes with the same fingerprint (hash collisions aside) answer
    /// every input alike. It leaves out the key (one per pair) and the
    /// counters of [`stats`](Self::stats) and [`rejected`](Self::rejected),
    /// which decide nothing. For tests that explore a pair's state space
    /// and tell states apart by it; stable within one build. Every field
    /// is named here: a new one does not compile until it is hashed or
    /// said to decide nothing.
    pub fn fingerprint(&self) -> u64 {
        let Mirror {
            cfg,
            key: _,
            epoch,
            filter,
            pair,
            outbound,
            inbound,
            floors,
            standby,
            join,
            bulk_out,
            bulks_built,
            peer,
            changes,
            adds,
            outbox,
            timers,
            clock,
            alarms,
            leave,
            events,
            stats: _,
        } = self;
        let mut h = DefaultHasher::new();
        (cfg, epoch).hash(&mut h);
        filter.hash_position(&mut h);
        (pair, outbound, inbound, floors, standby).hash(&mut h);
        (join, bulk_out, bulks_built, peer, changes, adds).hash(&mut h);
        (outbox, timers, clock, alarms, leave, events).hash(&mut h);
        h.finish()
    }
}
