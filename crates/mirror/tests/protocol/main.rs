//! Deterministic tests of the mirror protocol between two nodes: leases
//! and their acknowledgements, stalls and resumption, loss, duplication and
//! reordering of every frame, forged and replayed frames, coalescing, peer
//! liveness, takeover, split brain, failback, restart and bulk sync; and a
//! chaos proptest (outbound and inbound SAs, a receiver model with an
//! attacker replaying every inbound packet to both nodes, run-time adds
//! and deletes, fences, replayed mirror frames, crash loops) that no (SPI,
//! sequence number) is ever used twice, no replay is accepted and no SA is
//! lost; with the holes it found, each kept as an ignored test.

use std::collections::{BTreeMap, BTreeSet};

use espgate_mirror::{
    FenceRefused, InboundTakeover, MAX_TAKEOVER_JUMP, Mirror, MirrorConfig, MirrorEvent, MirrorKey,
    Reject, SaOverrides,
};
use espgate_wire::Direction;
use espgate_wire::mirror::{MirrorRecord, parse_records};
use proptest::prelude::*;

const A: u32 = 1;
const B: u32 = 2;
const SPI: u32 = 0x1000;

fn key() -> MirrorKey {
    MirrorKey::new(b"mirror test key, 32 bytes long!!").unwrap()
}

fn cfg(node: u32, peer: u32, jump32: u64) -> MirrorConfig {
    MirrorConfig {
        node,
        peer,
        interval: 100,
        quantity: 400,
        lease: true,
        takeover_jump: 1 << 28,
        takeover_jump_32: jump32,
        inbound_interval: 100,
        inbound_ahead_ms: 10,
        inbound_grace: 100,
        inbound_takeover: InboundTakeover::Strict,
        heartbeat_ms: 10,
        dead_after: 3,
        refresh_ms: 50,
        max_frame: 1400,
    }
}

/// A node with the pair's SAs: `SPI` (home A) and `SPI + 1` (home B),
/// outbound, plus inbound 0x2000 (home A).
fn node(me: u32, epoch: u64, jump32: u64, now: u64) -> Mirror {
    let mut m = Mirror::new(
        cfg(me, if me == A { B } else { A }, jump32),
        key(),
        epoch,
        now,
    );
    m.add_sa(SPI, Direction::Outbound, false, A);
    m.add_sa(SPI + 1, Direction::Outbound, false, B);
    m.add_sa(0x2000, Direction::Inbound, false, A);
    m
}

fn pair() -> (Mirror, Mirror) {
    (node(A, 1000, 0, 0), node(B, 2000, 0, 0))
}

/// Delivers everything each side has to send, both ways, until quiet.
fn exchange(a: &mut Mirror, b: &mut Mirror, now: u64) {
    for _ in 0..20 {
        let mut any = false;
        while let Some(f) = a.poll_transmit(now) {
            b.handle_frame(now, &f).unwrap();
            any = true;
        }
        while let Some(f) = b.poll_transmit(now) {
            a.handle_frame(now, &f).unwrap();
            any = true;
        }
        if !any {
            return;
        }
    }
}

fn events(m: &mut Mirror) -> Vec<MirrorEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Where SA `spi` was activated, in order, among the events `m` has.
fn starts(m: &mut Mirror, spi: u32) -> Vec<u64> {
    events(m)
        .into_iter()
        .filter_map(|e| match e {
            MirrorEvent::Activate { spi: s, start, .. } if s == spi => Some(start),
            _ => None,
        })
        .collect()
}

mod chaos;
mod chaos_finds;
mod grace;
mod leases;
mod restart;
mod run_time;
mod sim;
mod takeover;

use chaos::*;
use sim::*;
