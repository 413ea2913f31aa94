//! A fingerprint of a node's mirror: what tells two states apart when a
//! test explores a pair's state space (`tests/explore.rs`).

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
            counter,
            filter,
            pair,
            outbound,
            inbound,
            due,
            queued,
            acks,
            ownership_out,
            unconfirmed,
            resend_from,
            finals,
            max_generation,
            largest_interval,
            lost_steps,
            bulk_request,
            bulk_out,
            bulks_built,
            bulk_in,
            synced,
            standby,
            told,
            bulk_told,
            peer_alive,
            last_heard,
            next_heartbeat,
            next_refresh,
            events,
            stats: _,
            fenced,
            peer_ran,
            peer_synced,
            fenced_life,
            asking,
            unheard,
            questions,
            queries,
            marks,
            answers,
            lease_configured,
            floors,
        } = self;
        let mut h = DefaultHasher::new();
        (cfg, epoch, counter).hash(&mut h);
        filter.hash_position(&mut h);
        (pair, outbound, inbound, due, queued, acks).hash(&mut h);
        (
            ownership_out,
            unconfirmed,
            resend_from,
            finals,
            max_generation,
        )
            .hash(&mut h);
        (bulk_request, bulk_out, bulks_built, bulk_in).hash(&mut h);
        (synced, standby).hash(&mut h);
        (peer_alive, last_heard, next_heartbeat, next_refresh).hash(&mut h);
        (
            events,
            fenced,
            peer_ran,
            peer_synced,
            fenced_life,
            asking,
            unheard,
            questions,
            queries,
            marks,
            answers,
        )
            .hash(&mut h);
        (
            floors,
            told,
            bulk_told,
            largest_interval,
            lost_steps,
            lease_configured,
        )
            .hash(&mut h);
        h.finish()
    }
}
