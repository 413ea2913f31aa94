//! The holes found in the zero-reuse promise (operator actions, restart
//! patterns and an attacker on the mirror link that the chaos runs never
//! tried), and those a fresh reader found in their fixes (a peer's SA
//! deleted and added again on the node holding it during a split brain, an
//! inbound stall report taken for the worker's window), one test each,
//! named after what it proves. Each failed on the code before its fix.

#[path = "../pair/mod.rs"]
mod pair;

use espgate_mirror::{FenceRefused, Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

/// Runs A's SAs as far as their limits let them, exchanging as it goes;
/// returns the last time. The inbound worker's next packet past its lease
/// (half an interval on) is reported as a stall first, as the ESP worker
/// does, and accepted up to the limit the acknowledgement gives.
fn run_a(a: &mut Mirror, b: &mut Mirror, from: u64) -> u64 {
    let mut t = from;
    for _ in 0..6 {
        t += 1;
        let used = a.limit(OUT_A).unwrap() - 1;
        a.outbound_progress(OUT_A, used, 0, used);
        let limit = a.inbound_limit(IN_A).unwrap();
        a.inbound_stalled(IN_A, limit - 1 + INTERVAL / 2);
        exchange(a, b, t);
        let top = a.inbound_limit(IN_A).unwrap() - 1;
        a.inbound_progress(IN_A, top, &[u64::MAX], 0, top);
        exchange(a, b, t);
    }
    t
}

/// The highest place `m` restarted an SA at among `evs`, or `current` if
/// it did not move it.
fn restarted(evs: &[MirrorEvent], spi: u32, dir: Direction, current: u64) -> u64 {
    starts_in(evs, spi, dir)
        .into_iter()
        .max()
        .unwrap_or(current)
}

/// A and B synchronised; then B, not hearing A for a moment, takes A's
/// SAs over and A (hearing B's ownership records) lets them go: B holds
/// OUT_A and IN_A (no failback yet). Returns the time.
fn b_holds_a_sas(a: &mut Mirror, b: &mut Mirror) -> u64 {
    exchange(a, b, 0);
    declare_dead(b, 100);
    assert_eq!(b.take_over(), 2);
    let t = settle(a, b, 100);
    assert!(!a.owns(OUT_A, Direction::Outbound) && !a.owns(IN_A, Direction::Inbound));
    assert!(b.owns(OUT_A, Direction::Outbound) && b.owns(IN_A, Direction::Inbound));
    events(a);
    events(b);
    t
}

mod adds_and_deletes;
mod fences_and_restarts;
mod hand_backs;
