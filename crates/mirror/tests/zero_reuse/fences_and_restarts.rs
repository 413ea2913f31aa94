//! Fences, restarts, replayed frames and partitions.

use super::*;

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
    let t = settle(&mut a, &mut b, 0);
    // A's worker accepts up to 340, each step past its lease stalled and
    // acknowledged first; B stores and acknowledges each bound.
    let top = 340;
    let t = accepts_up_to(&mut a, &mut b, NEW, t, (0, top), &[u64::MAX]);
    let stored = b
        .standby()
        .get(NEW, Direction::Inbound)
        .map_or(0, |s| s.value);
    assert!(stored >= top, "A accepted up to {top}; B stores {stored}");
    let mut a2 = node(A, 5, t + 1000);
    let t = settle(&mut a2, &mut b, t + 1000);
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
    let t = settle(&mut a, &mut b, 0);
    let t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 900), &[u64::MAX]);
    // The link is cut: each declares the other dead. B takes A's inbound
    // SA over; A keeps running it as far as its limit allows, and an
    // attacker sends every packet A accepts to B too.
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
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
