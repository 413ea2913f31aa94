//! The holes found in the zero-reuse promise (operator actions, restart
//! patterns and an attacker on the mirror link that the chaos runs never
//! tried), and those a fresh reader found in their fixes (a peer's SA
//! deleted and added again on the node holding it during a split brain, an
//! inbound stall report taken for the worker's window), one test each,
//! named after what it proves. Each failed on the code before its fix.

mod pair;

use espgate_mirror::{FenceRefused, Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

#[test]
fn a_fence_on_an_unsynchronised_node_is_refused_and_runs_nothing() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let used = a.limit(OUT_A).unwrap() - 1;
    a.outbound_progress(OUT_A, used, 0, used);
    exchange(&mut a, &mut b, 1);
    // A restarts with its memory lost and B dies before A syncs; the host
    // sees A as the survivor and orders a takeover and a fence.
    let mut a2 = node(A, 5, 10);
    while a2.poll_transmit(10).is_some() {}
    assert_eq!(a2.take_over(), 0, "nothing known to take over");
    assert_eq!(a2.force_unleased(), Err(FenceRefused::NotSynced));
    assert!(!a2.synced());
    assert_eq!(
        a2.limit(OUT_A),
        Some(0),
        "A's first life used up to {used}: its next may send nothing it cannot place past that"
    );
    assert_eq!(a2.inbound_limit(IN_A), Some(0));
}

/// H1: the host fenced the survivor when it merely could not reach the
/// other node's control socket.
#[test]
fn a_fence_is_refused_while_the_peer_is_heard() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    assert_eq!(a.force_unleased(), Err(FenceRefused::PeerHeard));
    assert!(a.limit(OUT_A).unwrap() < u64::MAX, "the leases stay");
    declare_dead(&mut a, 100);
    assert_eq!(a.force_unleased(), Ok(()));
    assert_eq!(a.limit(OUT_A), Some(u64::MAX));
}

#[test]
fn a_restarted_nodes_own_inbound_sa_accepts_nothing_before_the_bulk_sync() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    a.inbound_progress(IN_A, 950, &[u64::MAX; 2], 0, 950);
    exchange(&mut a, &mut b, 1);
    let mut a2 = node(A, 5, 10);
    assert_eq!(
        a2.inbound_limit(IN_A),
        Some(0),
        "an empty window would take every recorded packet again"
    );
    assert!(starts_in(&events(&mut a2), IN_A, Direction::Inbound).is_empty());
    exchange(&mut a2, &mut b, 10);
    let evs = events(&mut a2);
    let top = *starts_in(&evs, IN_A, Direction::Inbound).last().unwrap();
    assert!(top >= 950 + 100, "runs from {top}, past its earlier life");
    assert!(a2.inbound_limit(IN_A).unwrap() > top);
}

#[test]
fn recorded_mirror_frames_replayed_into_a_fresh_node_change_nothing() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let (_, mut from_b) = exchange(&mut a, &mut b, 0);
    for t in 1..30 {
        let used = a.limit(OUT_A).unwrap() - 1;
        a.outbound_progress(OUT_A, used, 0, used);
        from_b.extend(exchange(&mut a, &mut b, t).1);
    }
    let used = a.limit(OUT_A).unwrap() - 1;
    // A restarts; before B hears it, an attacker replays every frame B
    // ever sent to A's first life (bulk end, acks, ownership) to A's new
    // life.
    let mut a2 = node(A, 5, 100);
    while a2.poll_transmit(100).is_some() {}
    for f in &from_b {
        let _ = a2.handle_frame(100, f);
    }
    assert!(!a2.synced(), "a bulk end of another life syncs nothing");
    assert_eq!(a2.limit(OUT_A), Some(0));
    // The real B then syncs it, past all the first life used.
    let evs_b = settle(&mut a2, &mut b, 100);
    let _ = evs_b;
    let start = *starts_in(&events(&mut a2), OUT_A, Direction::Outbound)
        .last()
        .unwrap();
    assert!(start > used, "restarts at {start}, first life used {used}");
}

#[test]
fn an_sa_added_on_both_nodes_during_a_partition_never_runs_the_same_numbers() {
    const NEW: u32 = 0x3000;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    // The mirror link is cut; each declares the other dead and takes over.
    declare_dead(&mut a, 100);
    declare_dead(&mut b, 100);
    a.take_over();
    b.take_over();
    events(&mut a);
    events(&mut b);
    // The host rekeys: the new SA (home A) is pushed to both.
    a.add_sa(NEW, Direction::Outbound, false, A);
    b.add_sa(NEW, Direction::Outbound, false, A);
    let a_start = starts_in(&events(&mut a), NEW, Direction::Outbound)
        .last()
        .copied()
        .unwrap_or(1);
    let b_start = *starts_in(&events(&mut b), NEW, Direction::Outbound)
        .last()
        .expect("B runs A's new SA while A is dead to it");
    let ra = usable(&a, NEW, a_start);
    let rb = usable(&b, NEW, b_start);
    assert!(
        ra.end <= rb.start || rb.end <= ra.start,
        "A may use {ra:?}, B {rb:?}"
    );
}

#[test]

fn an_sa_added_again_after_a_restart_starts_past_the_history_the_peer_holds() {
    const NEW: u32 = 0x3000;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    a.add_sa(NEW, Direction::Outbound, false, A);
    b.add_sa(NEW, Direction::Outbound, false, A);
    let mut used = 0;
    for t in 1..40 {
        let evs = events(&mut a);
        if let Some(s) = starts_in(&evs, NEW, Direction::Outbound).last() {
            used = used.max(*s - 1);
        }
        if let Some(l) = a.limit(NEW)
            && l > used + 1
        {
            used = l - 1;
            a.outbound_progress(NEW, used, 0, used);
        }
        exchange(&mut a, &mut b, t);
    }
    assert!(used > 1000, "A used {used}");
    // A restarts from a node file that predates the add, syncs, and the
    // host adds the SA again with the same key.
    let mut a2 = node(A, 5, 100);
    let t = settle(&mut a2, &mut b, 100);
    assert!(a2.synced());
    events(&mut a2);
    a2.add_sa(NEW, Direction::Outbound, false, A);
    let mut next = None;
    let mut ranges = Vec::new();
    for k in 1..6 {
        let evs = events(&mut a2);
        if let Some(s) = starts_in(&evs, NEW, Direction::Outbound).last() {
            next = Some(*s);
        }
        ranges.push(usable(&a2, NEW, next.unwrap_or(1)));
        exchange(&mut a2, &mut b, t + 60 * k);
    }
    for r in ranges {
        assert!(
            r.is_empty() || r.start > used,
            "A's second life may use {r:?}, its first used up to {used}"
        );
    }
    assert!(next.is_some_and(|s| s > used), "it runs again: {next:?}");
}

#[test]

fn an_inbound_sa_added_again_after_a_restart_keeps_refusing_what_it_accepted() {
    const NEW: u32 = 0x3002;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    a.add_sa(NEW, Direction::Inbound, false, A);
    b.add_sa(NEW, Direction::Inbound, false, A);
    settle(&mut a, &mut b, 0);
    let mut top = 0;
    for t in 1..20 {
        if let Some(l) = a.inbound_limit(NEW)
            && l > top + 1
        {
            top = l - 1;
            a.inbound_progress(NEW, top, &[u64::MAX], 0, top);
        }
        exchange(&mut a, &mut b, 60 * t);
    }
    assert!(top > 300, "A accepted up to {top}");
    let mut a2 = node(A, 5, 2000);
    let t = settle(&mut a2, &mut b, 2000);
    events(&mut a2);
    a2.add_sa(NEW, Direction::Inbound, false, A);
    assert_eq!(
        a2.inbound_limit(NEW),
        Some(0),
        "parked until the peer answers"
    );
    let t = settle(&mut a2, &mut b, t);
    let _ = t;
    let start = *starts_in(&events(&mut a2), NEW, Direction::Inbound)
        .last()
        .expect("runs once the peer answered");
    assert!(
        start >= top,
        "window top {start}, first life accepted {top}"
    );
}

#[test]
fn in_a_split_brain_no_inbound_packet_is_accepted_by_both_nodes() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let mut top = 0;
    for t in 1..10 {
        let l = a.inbound_limit(IN_A).unwrap();
        top = (top + 150).min(l - 1);
        a.inbound_progress(IN_A, top, &[u64::MAX], 0, top);
        exchange(&mut a, &mut b, t);
    }
    // The link is cut: each declares the other dead. B takes A's inbound
    // SA over; A keeps running it as far as its limit allows, and an
    // attacker sends every packet A accepts to B too.
    declare_dead(&mut a, 100);
    declare_dead(&mut b, 100);
    b.take_over();
    let b_top = *starts_in(&events(&mut b), IN_A, Direction::Inbound)
        .last()
        .unwrap();
    let a_limit = a.inbound_limit(IN_A).unwrap();
    let b_limit = b.inbound_limit(IN_A).unwrap();
    // A accepts below its limit, B above its new top and below its limit.
    let both = (b_top + 1).max(1)..a_limit.min(b_limit);
    assert!(
        both.is_empty(),
        "{} packets accepted by both, from {}",
        both.end.saturating_sub(both.start),
        both.start
    );
}

#[test]
fn a_deleted_sa_added_again_on_a_restarted_node_starts_past_its_history() {
    const NEW: u32 = 0x3000;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    for m in [&mut a, &mut b] {
        m.add_sa(NEW, Direction::Outbound, false, A);
    }
    let t = settle(&mut a, &mut b, 0);
    let used = a.limit(NEW).unwrap() - 1;
    a.outbound_progress(NEW, used, 0, used);
    let t = settle(&mut a, &mut b, t);
    // Deleted on both; then B restarts (its memory of the SA gone), syncs
    // from A, and A restarts too, syncing from B: the history must have
    // travelled with each bulk.
    for m in [&mut a, &mut b] {
        m.remove_sa(NEW, Direction::Outbound);
    }
    let mut b2 = node(B, 5, t);
    let t = settle(&mut a, &mut b2, t);
    let mut a2 = node(A, 6, t);
    let t = settle(&mut a2, &mut b2, t);
    events(&mut a2);
    a2.add_sa(NEW, Direction::Outbound, false, A);
    b2.add_sa(NEW, Direction::Outbound, false, A);
    settle(&mut a2, &mut b2, t);
    let start = *starts_in(&events(&mut a2), NEW, Direction::Outbound)
        .last()
        .expect("it runs");
    assert!(start > used, "starts at {start}, used up to {used}");
}

/// Runs A's SAs as far as their limits let them, exchanging as it goes;
/// returns the last time.
fn run_a(a: &mut Mirror, b: &mut Mirror, from: u64) -> u64 {
    let mut t = from;
    for _ in 0..6 {
        t += 1;
        let used = a.limit(OUT_A).unwrap() - 1;
        a.outbound_progress(OUT_A, used, 0, used);
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

/// Split brain, then the host fences A (B is powered off): B took A's SAs
/// over while A heard nothing of it, so A's unleased SAs must start past
/// everything B's takeover could use.
#[test]
fn a_fence_after_a_split_brain_starts_past_what_the_peer_took_over() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let t = run_a(&mut a, &mut b, 0);
    let (a_next, a_top) = (a.limit(OUT_A).unwrap(), a.inbound_limit(IN_A).unwrap() - 1);
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
    b.take_over();
    events(&mut b);
    let b_out = b.limit(OUT_A).unwrap();
    let b_in = b.inbound_limit(IN_A).unwrap();
    events(&mut a);
    assert_eq!(a.force_unleased(), Ok(()));
    let evs = events(&mut a);
    let out_from = restarted(&evs, OUT_A, Direction::Outbound, a_next);
    let in_top = restarted(&evs, IN_A, Direction::Inbound, a_top);
    assert!(
        out_from >= b_out,
        "A sends from {out_from}, B's takeover may use below {b_out}"
    );
    assert!(
        in_top + 1 >= b_in,
        "A accepts above {in_top}, B's takeover below {b_in}"
    );
    assert_eq!(a.limit(OUT_A), Some(u64::MAX));
}

/// B, cut off from A, takes A's inbound SA over and accepts packets on
/// it, then restarts with its memory lost: A, hearing the new life, must
/// not accept what the lost one accepted.
#[test]
fn a_peer_that_took_an_inbound_sa_over_unheard_and_restarted_leaves_it_past_what_it_accepted() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let t = run_a(&mut a, &mut b, 0);
    declare_dead(&mut b, t + 100);
    b.take_over();
    let b_in = b.inbound_limit(IN_A).unwrap();
    let b_out = b.limit(OUT_A).unwrap();
    drop(b);
    events(&mut a);
    let mut b2 = node(B, 7, t + 200);
    let t = settle(&mut a, &mut b2, t + 200);
    let _ = t;
    let evs = events(&mut a);
    let in_top = restarted(&evs, IN_A, Direction::Inbound, 0);
    let out_from = restarted(&evs, OUT_A, Direction::Outbound, 0);
    assert!(
        in_top + 1 >= b_in,
        "A accepts above {in_top}, B's lost life accepted below {b_in}"
    );
    assert!(
        out_from >= b_out,
        "A sends from {out_from}, B's lost life below {b_out}"
    );
}

/// M2: a peer that crash-loops, each life dying before it synchronises,
/// used nothing: its lives must not push the survivor's SAs on by two
/// jumps each (thirty lives would carry an idle ESN SA past the far end's
/// inference, a hundred and twenty-eight exhaust a 32-bit one).
#[test]
fn a_crash_looping_peer_that_never_syncs_moves_nothing() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let t = run_a(&mut a, &mut b, 0);
    let mut out_limit = 0;
    let mut in_limit = 0;
    for life in 0..50 {
        let now = t + 10 * life;
        let mut b = node(B, 100 + life, now);
        // A hears the new life ask for its bulk; the life dies before A
        // answers. (The first new life ends B's synchronised one, which
        // moves A's SAs once.)
        while let Some(f) = b.poll_transmit(now) {
            a.handle_frame(now, &f).unwrap();
        }
        if life == 0 {
            events(&mut a);
            out_limit = a.limit(OUT_A).unwrap();
            in_limit = a.inbound_limit(IN_A).unwrap();
        }
    }
    let moved: Vec<MirrorEvent> = events(&mut a)
        .into_iter()
        .filter(|e| matches!(e, MirrorEvent::Activate { .. }))
        .collect();
    assert!(moved.is_empty(), "{} moves", moved.len());
    assert_eq!(a.limit(OUT_A), Some(out_limit));
    assert_eq!(a.inbound_limit(IN_A), Some(in_limit));
}

/// The other side of M2: a life that synchronised (it says so in its
/// frames) may have taken SAs over unheard, even if this node's own life
/// never sent it a bulk, so its end moves them.
#[test]
fn a_synchronised_peer_life_that_ends_moves_the_sas_past_it() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let t = run_a(&mut a, &mut b, 0);
    // A restarts and syncs from B (B never needs A's bulk: it is synced).
    let mut a2 = node(A, 3, t);
    let t = settle(&mut a2, &mut b, t);
    assert!(a2.synced());
    let limit = a2.limit(OUT_A).unwrap();
    events(&mut a2);
    let mut b2 = node(B, 4, t);
    while let Some(f) = b2.poll_transmit(t) {
        a2.handle_frame(t, &f).unwrap();
    }
    let evs = events(&mut a2);
    assert!(restarted(&evs, OUT_A, Direction::Outbound, 0) >= limit + 2 * JUMP - 400);
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

/// Review find 1 (inbound): B holds A's inbound SA; the mirror link is
/// cut and A takes it back (a takeover from B's last reported top, plus
/// one interval). The host deletes the SA and adds it again (same SPI and
/// key) on B during the partition: B, holding A's SAs, starts it "as a
/// takeover would", from its own last top plus one interval: the very
/// packets A's takeover accepts.
#[test]
fn an_inbound_sa_held_then_taken_back_and_readded_on_the_holder_is_not_accepted_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = b_holds_a_sas(&mut a, &mut b);
    // B runs IN_A; A stores its tops and acknowledges them.
    let mut top = b.inbound_limit(IN_A).unwrap() - 1;
    for _ in 0..5 {
        b.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
        top = b.inbound_limit(IN_A).unwrap() - 1;
    }
    // The link is cut; each declares the other dead. A takes IN_A back.
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
    assert_eq!(a.take_over(), 3, "OUT_A, IN_A and OUT_B");
    let a_top = *starts_in(&events(&mut a), IN_A, Direction::Inbound)
        .last()
        .expect("A runs IN_A again");
    let a_range = acceptable(&a, IN_A, a_top);
    assert!(!a_range.is_empty());
    // The host deletes IN_A and adds it again, same SPI and key, on B.
    events(&mut b);
    assert!(b.remove_sa(IN_A, Direction::Inbound));
    b.add_sa(IN_A, Direction::Inbound, false, A);
    let b_top = *starts_in(&events(&mut b), IN_A, Direction::Inbound)
        .last()
        .expect("B runs the re-added SA at once: it holds A's SAs");
    let b_range = acceptable(&b, IN_A, b_top);
    let both = overlap(&a_range, &b_range);
    assert!(
        both.is_empty(),
        "A accepts {a_range:?}, B {b_range:?}: {} packets accepted by both",
        both.end - both.start
    );
}

/// Review find 1 (outbound): as above for an outbound SA, whose last
/// lease A stored but whose acknowledgement the cut lost: B's re-add
/// starts a jump past its own reach, below the top of A's takeover range.
#[test]
fn an_outbound_sa_held_then_taken_back_and_readded_on_the_holder_never_reuses_numbers() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = b_holds_a_sas(&mut a, &mut b);
    for _ in 0..5 {
        let used = b.limit(OUT_A).unwrap() - 1;
        b.outbound_progress(OUT_A, used, 0, used);
        t = settle(&mut a, &mut b, t);
    }
    // B sends one more lease; A stores it, and the cut loses A's answer.
    let used = b.limit(OUT_A).unwrap() - 1;
    b.outbound_progress(OUT_A, used, 0, used);
    t += 60;
    while let Some(f) = b.poll_transmit(t) {
        let _ = a.handle_frame(t, &f);
    }
    while a.poll_transmit(t).is_some() {}
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
    assert_eq!(a.take_over(), 3, "OUT_A, IN_A and OUT_B");
    let a_next = *starts_in(&events(&mut a), OUT_A, Direction::Outbound)
        .last()
        .expect("A runs OUT_A again");
    let a_range = usable(&a, OUT_A, a_next);
    events(&mut b);
    assert!(b.remove_sa(OUT_A, Direction::Outbound));
    b.add_sa(OUT_A, Direction::Outbound, false, A);
    let b_next = *starts_in(&events(&mut b), OUT_A, Direction::Outbound)
        .last()
        .expect("B runs the re-added SA at once: it holds A's SAs");
    let b_range = usable(&b, OUT_A, b_next);
    let both = overlap(&a_range, &b_range);
    assert!(
        both.is_empty(),
        "A may use {a_range:?}, B {b_range:?}: {} numbers used by both",
        both.end - both.start
    );
}

/// Review find 2: a stall report raises the mirror's top of an inbound SA
/// without moving the worker's window ("nothing new marked seen"). On a
/// restarted node the far end's packets go on arriving before the bulk
/// sync, so the worker (limit 0) reports one: the top jumps to its number.
/// The bulk's copy then restarts the SA at the stored top plus an
/// interval, but `recover` sees that below the (reported) top, does not
/// move it and sends no activation: the worker keeps its fresh window
/// (top 0, nothing seen) while its limit rises to the stored top plus an
/// interval, so every packet the earlier life accepted passes again.
#[test]
fn a_stall_reported_before_the_bulk_sync_does_not_let_the_earlier_lifes_packets_pass() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    let first = *starts_in(&events(&mut a), IN_A, Direction::Inbound)
        .last()
        .expect("A runs IN_A from past the bulk sync");
    // A accepts as far as its lease lets it; B stores and acknowledges.
    let mut top = first;
    for _ in 0..5 {
        top = a.inbound_limit(IN_A).unwrap() - 1;
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    let accepted = first + 1..top + 1;
    // A crashes and restarts; the far end sends on while it syncs: the
    // worker, at limit 0, refuses an authentic fresh packet and reports it.
    drop(a);
    let mut a2 = node(A, 5, t);
    let fresh = top + 5 * INTERVAL;
    a2.inbound_stalled(IN_A, fresh);
    let t = settle(&mut a2, &mut b, t);
    assert!(a2.synced());
    // The worker's window: where the mirror last activated it (all seen at
    // and below), or as built (top 0, nothing seen) if it never did.
    let window_top = starts_in(&events(&mut a2), IN_A, Direction::Inbound)
        .last()
        .copied()
        .unwrap_or(0);
    let _ = t;
    let now = acceptable(&a2, IN_A, window_top);
    let both = overlap(&accepted, &now);
    assert!(
        both.is_empty(),
        "A's first life accepted {accepted:?}; its second accepts {now:?} (window top {window_top}, no activation past {top})"
    );
}

/// Found by the chaos proptest once its workers report stalls: in a split
/// brain B takes A's inbound SA over and accepts packets on it; the link
/// comes back and B hands the SA back, but the hand-back is lost. A,
/// never having heard of either change, still runs the SA under its old
/// lease; its worker reports a stall past it, and B (seeing A as the
/// owner again) acknowledged that: A's limit rose over the packets B had
/// accepted, which A's window had never seen.
#[test]
fn a_state_sent_before_the_owner_heard_of_a_hand_back_raises_no_limit() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let t = run_a(&mut a, &mut b, 0);
    let a_top = a.inbound_limit(IN_A).unwrap() - 1;
    events(&mut a);
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
    b.take_over();
    let b_start = *starts_in(&events(&mut b), IN_A, Direction::Inbound)
        .last()
        .unwrap();
    let b_accepted = b_start + 1..b_start + 2;
    b.inbound_progress(IN_A, b_accepted.end - 1, &[u64::MAX], 0, 1);
    // The link heals: B hears A, hands the SA back, and that is lost.
    let now = t + 200;
    while let Some(f) = a.poll_transmit(now) {
        let _ = b.handle_frame(now, &f);
    }
    assert!(b.peer_alive());
    assert_eq!(b.hand_back(), 2);
    while b.poll_transmit(now).is_some() {}
    // A's worker refused the far end's newer packets at its limit.
    a.inbound_stalled(IN_A, b_accepted.end + 5);
    exchange(&mut a, &mut b, now);
    let window_top = restarted(&events(&mut a), IN_A, Direction::Inbound, a_top);
    let now_accepts = acceptable(&a, IN_A, window_top);
    let both = overlap(&b_accepted, &now_accepts);
    assert!(
        both.is_empty(),
        "B accepted {b_accepted:?}; A now accepts {now_accepts:?}"
    );
}

/// Found by the chaos proptest once a node could die while the pair
/// disagrees on who runs an inbound SA: B holds A's inbound SA; A takes
/// it back (its own start counts as acknowledged, so it accepts up to an
/// interval past it) but B hears none of it; B hands the SA back and A
/// dies. B no longer runs the SA, so hearing A's next life did not move
/// it: that life restarted from what B stored, below what the lost life
/// accepted.
#[test]
fn an_inbound_sa_taken_back_unheard_by_a_life_that_dies_is_not_accepted_twice_by_the_next() {
    taken_back_unheard_by_a_life_that_dies(false);
}

/// The same, B's worker having reported a stall past its window before A
/// took the SA back (from the stalled number, which A stores): B's
/// hand-back stored only its window top, and A's next life restarted from
/// that, below what the lost life accepted.
#[test]
fn an_inbound_sa_stalled_then_taken_back_unheard_by_a_life_that_dies_is_not_accepted_twice() {
    taken_back_unheard_by_a_life_that_dies(true);
}

fn taken_back_unheard_by_a_life_that_dies(stalled: bool) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = b_holds_a_sas(&mut a, &mut b);
    for _ in 0..3 {
        let top = b.inbound_limit(IN_A).unwrap() - 1;
        b.inbound_progress(IN_A, top, &[u64::MAX], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    if stalled {
        let limit = b.inbound_limit(IN_A).unwrap();
        b.inbound_stalled(IN_A, limit + INTERVAL / 2);
        t = settle(&mut a, &mut b, t);
    }
    // A takes its SA back; nothing it sends from now on arrives.
    declare_dead(&mut a, t + 100);
    a.take_over();
    assert!(a.owns(IN_A, Direction::Inbound));
    let a_start = *starts_in(&events(&mut a), IN_A, Direction::Inbound)
        .last()
        .unwrap();
    let a_accepted = a_start + 1..a.inbound_limit(IN_A).unwrap();
    assert!(!a_accepted.is_empty());
    drop(a);
    // B hands the SA back to the life it has not yet found dead.
    assert_eq!(b.hand_back(), 2);
    events(&mut b);
    let mut a2 = node(A, 5, t + 200);
    settle(&mut a2, &mut b, t + 200);
    assert!(a2.synced() && a2.owns(IN_A, Direction::Inbound));
    let window_top = restarted(&events(&mut a2), IN_A, Direction::Inbound, 0);
    let both = overlap(&a_accepted, &acceptable(&a2, IN_A, window_top));
    assert!(
        both.is_empty(),
        "A's lost life accepted {a_accepted:?}; its next accepts above {window_top}"
    );
}

/// Found by the proptest chaos with adds and deletes at any time: B
/// restarts and asks for a bulk; A queues it, and the host deletes A's SA X
/// before it leaves. The bulk no longer carries X's state, and its history
/// was listed before the delete: B's new life never learns how far X went.
/// A dies and comes back with X in its file: nothing on either node places
/// X past its first life.
#[test]
fn an_sa_deleted_while_a_bulk_is_on_its_way_keeps_its_history_on_the_peer() {
    const X: u32 = 0x3000;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    for m in [&mut a, &mut b] {
        m.add_sa(X, Direction::Outbound, false, A);
    }
    let mut t = settle(&mut a, &mut b, 0);
    let mut used = 0;
    for _ in 0..4 {
        used = a.limit(X).unwrap() - 1;
        a.outbound_progress(X, used, 0, used);
        t = settle(&mut a, &mut b, t);
    }
    // B restarts from a file that predates X; its bulk request reaches A.
    drop(b);
    let mut b2 = node(B, 3, t);
    while let Some(f) = b2.poll_transmit(t) {
        let _ = a.handle_frame(t, &f);
    }
    a.remove_sa(X, Direction::Outbound);
    let t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    // A dies; the host adds X again to both, A's next life from its file.
    drop(a);
    let mut a2 = node(A, 4, t);
    a2.add_sa(X, Direction::Outbound, false, A);
    b2.add_sa(X, Direction::Outbound, false, A);
    settle(&mut a2, &mut b2, t);
    assert!(a2.synced());
    let from = restarted(&events(&mut a2), X, Direction::Outbound, 1);
    assert!(
        from > used,
        "A's next life sends X from {from}; its first used up to {used}"
    );
}

/// Inbound, home B, added at run time.
const IN_B: u32 = 0x2100;

/// Found by the proptest chaos with nodes killed whatever SAs each has:
/// B runs its run-time SA and dies; its next life comes from a file that
/// predates the SA, so it knows the SA only as history (A's copy). A takes
/// the SA over, accepts, and dies unheard. Hearing A's next life, B moved
/// the SAs it has past what the lost life could have done, but not this
/// history: added again, B started the SA below what A's lost life
/// accepted.
#[test]
fn an_sa_a_peer_life_took_over_unheard_moves_past_it_on_a_node_that_lacks_it() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    for m in [&mut a, &mut b] {
        m.add_sa(IN_B, Direction::Inbound, false, B);
    }
    let mut t = settle(&mut a, &mut b, 0);
    for _ in 0..3 {
        let top = b.inbound_limit(IN_B).unwrap() - 1;
        b.inbound_progress(IN_B, top, &[u64::MAX], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    drop(b);
    let mut b2 = node(B, 3, t + 100);
    let t = settle(&mut a, &mut b2, t + 100);
    assert!(b2.synced() && !b2.views().iter().any(|v| v.spi == IN_B));
    // The host orders A to take B's SAs over; nothing A sends arrives.
    a.take_over();
    let a_start = *starts_in(&events(&mut a), IN_B, Direction::Inbound)
        .last()
        .unwrap();
    // (Since a start counts as acknowledged only as far past what the
    // peer's current life stores as a lost life may run, A's takeover
    // here accepts nothing until B's new life acknowledges it; the
    // promise is what is checked.)
    let a_accepted = a_start + 1..a.inbound_limit(IN_B).unwrap().max(a_start + 1);
    drop(a);
    let mut a2 = node(A, 4, t + 100);
    a2.add_sa(IN_B, Direction::Inbound, false, B);
    let t = settle(&mut a2, &mut b2, t + 100);
    events(&mut b2);
    b2.add_sa(IN_B, Direction::Inbound, false, B);
    settle(&mut a2, &mut b2, t);
    assert!(!b2.asking(IN_B, Direction::Inbound));
    let window_top = restarted(&events(&mut b2), IN_B, Direction::Inbound, 0);
    let both = overlap(&a_accepted, &acceptable(&b2, IN_B, window_top));
    assert!(
        both.is_empty(),
        "A's lost life accepted {a_accepted:?}; B accepts above {window_top}"
    );
}

/// Found by the proptest chaos with adds and deletes at any time: B runs
/// its run-time SA, the link is cut, the SA is deleted on both and B's
/// history of it (past what A heard) stays on B alone. A dies; the host
/// adds the SA to B again, whose question goes nowhere. A's next life
/// syncs from B before B's question is answered, and B dies: B's next
/// life started the SA from what A had heard.
#[test]
fn the_history_of_an_sa_added_again_outlives_the_node_that_asks() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    for m in [&mut a, &mut b] {
        m.add_sa(IN_B, Direction::Inbound, false, B);
    }
    let mut t = settle(&mut a, &mut b, 0);
    for _ in 0..3 {
        let top = b.inbound_limit(IN_B).unwrap() - 1;
        b.inbound_progress(IN_B, top, &[u64::MAX], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    // Cut: B accepts up to its limit and nothing of it reaches A.
    let top = b.inbound_limit(IN_B).unwrap() - 1;
    b.inbound_progress(IN_B, top, &[u64::MAX], 0, top);
    for m in [&mut a, &mut b] {
        m.remove_sa(IN_B, Direction::Inbound);
    }
    drop(a);
    b.add_sa(IN_B, Direction::Inbound, false, B);
    while b.poll_transmit(t).is_some() {}
    declare_dead(&mut b, t + 100);
    // A's next life (the SA in its file) asks for a bulk and syncs from
    // B; what else it sends is lost, its answer to B's question too, and
    // B dies (the chaos kills a node only while the other is
    // synchronised).
    let mut a2 = node(A, 4, t + 200);
    a2.add_sa(IN_B, Direction::Inbound, false, B);
    let now = t + 200;
    let f = a2.poll_transmit(now).expect("A asks for a bulk");
    let _ = b.handle_frame(now, &f);
    while !a2.synced()
        && let Some(f) = b.poll_transmit(now)
    {
        let _ = a2.handle_frame(now, &f);
    }
    assert!(a2.synced());
    assert!(b.asking(IN_B, Direction::Inbound));
    drop(b);
    let mut b2 = node(B, 5, now + 100);
    b2.add_sa(IN_B, Direction::Inbound, false, B);
    settle(&mut a2, &mut b2, now + 100);
    assert!(b2.synced());
    let window_top = restarted(&events(&mut b2), IN_B, Direction::Inbound, 0);
    assert!(
        window_top >= top,
        "B's next life accepts above {window_top}; its first accepted up to {top}"
    );
}

/// A fresh inbound SA added at run time (a rekey's new SA) accepts the far
/// end's first packet. Found by the operations test (the first packet on
/// the new SA refused as replayed) once an SA that waited for the peer's
/// word began with everything at and below its window top seen: a fresh
/// inbound SA stood at window top 1, not 0.
#[test]
fn a_fresh_inbound_sa_added_at_run_time_accepts_its_first_packet() {
    const NEW: u32 = 0x2200;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    for m in [&mut a, &mut b] {
        m.add_sa(NEW, Direction::Inbound, false, A);
    }
    settle(&mut a, &mut b, t);
    assert!(!a.asking(NEW, Direction::Inbound));
    let (top, bitmap) =
        last_start(&events(&mut a), NEW, Direction::Inbound).expect("the new SA begins");
    let k = top.wrapping_sub(1);
    let seen = top >= 1
        && bitmap
            .get((k / 64) as usize)
            .is_some_and(|w| w >> (k % 64) & 1 == 1);
    assert!(
        !seen && a.inbound_limit(NEW).unwrap() > 1,
        "the new SA begins at top {top} ({} bitmap words), limit {:?}: packet 1 is refused",
        bitmap.len(),
        a.inbound_limit(NEW)
    );
}

/// A run-time SA whose question went twice (the refresh sends it again
/// until answered) gets two answers: nothing, then the 0 the peer stored
/// on the first. Found by the operations test (64 datagrams lost across a
/// rekey): the second answer, taken as the history of an SA already
/// running, moved the fresh inbound SA an interval past 0 with everything
/// below seen. A history no higher than what the SA itself sent is not
/// news.
#[test]
fn a_question_answered_twice_leaves_a_fresh_inbound_sa_where_it_began() {
    const NEW: u32 = 0x2200;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    for m in [&mut a, &mut b] {
        m.add_sa(NEW, Direction::Inbound, false, A);
    }
    // A's question leaves, and again at the next refresh, before B answers.
    let mut asked = Vec::new();
    for now in [t + 1, t + 120] {
        a.handle_timeout(now);
        while let Some(f) = a.poll_transmit(now) {
            asked.push(f);
        }
    }
    for f in &asked {
        let _ = b.handle_frame(t + 121, f);
    }
    settle(&mut a, &mut b, t + 121);
    assert!(!a.asking(NEW, Direction::Inbound));
    let (top, bitmap) = last_start(&events(&mut a), NEW, Direction::Inbound).expect("it begins");
    let k = top.wrapping_sub(1);
    let seen = top >= 1
        && bitmap
            .get((k / 64) as usize)
            .is_some_and(|w| w >> (k % 64) & 1 == 1);
    assert!(
        !seen,
        "the new SA now stands at top {top}: packet 1 is refused"
    );
}

/// A fresh outbound SA added on its home node and then, once it runs, on
/// the peer (a rekey the host sends to one node after the other) stays
/// where it began. Found by the operations test (the new SA at 2^25, three
/// datagrams lost) once every run-time add asked: the answer to the
/// peer's question carried the home node's reach (where its workers may
/// go, past anything it reported), the peer stored it and acknowledged
/// the next state with it, above anything the home node had sent, which
/// it took for an earlier use it forgot.
#[test]
fn a_fresh_outbound_sa_added_on_one_node_then_the_other_stays_where_it_began() {
    const NEW: u32 = 0x1300;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    a.add_sa(NEW, Direction::Outbound, false, A);
    let t = settle(&mut a, &mut b, t);
    assert!(!a.asking(NEW, Direction::Outbound));
    let (start, _) = last_start(&events(&mut a), NEW, Direction::Outbound).expect("it begins");
    // The host adds it on B, which asks A; A's workers go on sending (a
    // little: the lease they report stays below A's reach).
    b.add_sa(NEW, Direction::Outbound, false, A);
    let t = settle(&mut a, &mut b, t);
    a.outbound_progress(NEW, start + 10, 10, 10);
    settle(&mut a, &mut b, t);
    let moved = last_start(&events(&mut a), NEW, Direction::Outbound);
    assert!(
        moved.is_none(),
        "the new SA began at {start}, then moved to {:?}",
        moved.map(|m| m.0)
    );
}

/// A start counts as acknowledged only as far past what the peer's
/// current life stores as a lost life may run: that includes the copies
/// of this node's bulk sync, once its end is sent. A
/// restarted A synchronises from B's bulk (its SA far past its first
/// number) and dies before any state of its own reaches B; B's takeover
/// runs at once rather than wait for an acknowledgement that never comes.
#[test]
fn a_takeover_from_a_bulk_the_dead_peer_held_runs_at_once() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    exchange(&mut a, &mut b, 0);
    let t = run_a(&mut a, &mut b, 0);
    let far = b.standby().get(OUT_A, Direction::Outbound).unwrap().value;
    assert!(far > 2 * JUMP, "A ran {far}, not past two jumps");
    drop(a);
    // A's new life: its frames reach B until it holds the bulk.
    let mut a2 = node(A, 3, t);
    let mut t = t;
    while !a2.synced() {
        t += 10;
        assert!(t < 5000, "A's new life never synchronised");
        while let Some(f) = a2.poll_transmit(t) {
            let _ = b.handle_frame(t, &f);
        }
        while let Some(f) = b.poll_transmit(t) {
            let _ = a2.handle_frame(t, &f);
        }
    }
    // Its states are lost; one heartbeat (it says it synchronised) is not.
    mute(&mut a2, t);
    let heard = t + 10;
    let f = a2.poll_transmit(heard).expect("a heartbeat is due");
    b.handle_frame(heard, &f).unwrap();
    declare_dead(&mut b, heard + 100);
    events(&mut b);
    assert_eq!(b.take_over(), 2);
    let start = last_start(&events(&mut b), OUT_A, Direction::Outbound)
        .unwrap()
        .0;
    assert!(start > far, "B took over at {start}, not past {far}");
    assert!(
        !usable(&b, OUT_A, start).is_empty(),
        "B's takeover at {start} waits for an acknowledgement from a dead peer"
    );
}
