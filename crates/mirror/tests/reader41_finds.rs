//! Reader41's probes of the newest mirror changes: `UnheardRuns`
//! (5b435bf), the graceless move past a lost life and the automatic
//! re-fence (e8fc087), and `inbound_grace` (70d83e9, b2626a2).

mod pair;

use espgate_mirror::{LeaveRefused, Mirror};
use espgate_wire::Direction;
use pair::*;

const IN: Direction = Direction::Inbound;

/// `n` refresh periods from `t` in which `a`'s frames reach `b` and
/// `b`'s are lost (a link healed one way); returns the time.
fn one_way(a: &mut Mirror, b: &mut Mirror, mut t: u64, n: usize) -> u64 {
    for _ in 0..n {
        for _ in 0..6 {
            t += 10;
            a.handle_timeout(t);
            b.handle_timeout(t);
            deliver(a, b, t);
            mute(b, t);
        }
    }
    t
}

/// A and B settled, A's worker at 230 on IN_A; the link cut both ways
/// until both declare the other dead; B takes IN_A over from the silent
/// A and its worker accepts a run R (its grace). Returns A, B, R, the
/// time.
fn split_brain_run() -> (Mirror, Mirror, Vec<u64>, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!a.peer_alive() && !b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    t += 110;
    let (run, _) = alone_takes(&mut b, s, s + 200, t, 20);
    assert!(
        !run.is_empty(),
        "B's takeover from a silent A accepts its grace"
    );
    (a, b, run, t)
}

/// Find 1 (promise 2, replay accepted; the hole of reader40's find 3
/// reached past 5b435bf's first fix). A runs IN_A to 230; the link is cut both
/// ways; B takes IN_A over from the silent A and accepts a run R (its
/// grace). The link heals one way first (B hears A, A does not hear B)
/// and B's host, seeing A alive, fails IN_A back: its view now names A the owner, and its unconfirmed change
/// is the hand-back (owner A), no longer the takeover. The host then
/// deletes IN_A on B: `remove_sa` sees no unconfirmed change naming B (and
/// B owns nothing, so no final and no history goes out at all), so
/// `unheard_runs` stays empty; the delete also drops the unconfirmed
/// hand-back. The hand-back record and its final went into the cut (the
/// way still broken), once.
/// The link heals; B drains and leaves: nothing refuses the goodbye. A
/// (which never heard the takeover, nor the hand-back) takes it in, is
/// fenced from B's life and runs IN_A without a lease: its worker accepts
/// R again.
///
/// "In `changes.unconfirmed` with owner == self" at the delete missed a
/// takeover superseded by this node's own later change (a hand-back, or
/// an exact hand-over) that the peer never heard either. Fixed: the run
/// is recorded at the takeover and cleared only when the peer confirms a
/// record of this node's about the SA (the takeover, or the later change
/// whose bound covers the run), answers that it runs past this node's
/// final, or a new life of it synchronises; B's leave is refused.
#[test]
fn a_takers_failback_over_a_one_way_link_then_delete_lets_its_run_be_accepted_again() {
    let (mut a, mut b, run, mut t) = split_brain_run();
    // The link heals one way first: B hears A, A does not hear B. B's
    // host fails IN_A back (its record lost), and then deletes IN_A on B
    // (nothing of it reaches A either).
    t = one_way(&mut a, &mut b, t, 3);
    assert!(b.peer_alive() && !a.peer_alive());
    assert!(b.hand_back() >= 1);
    t = one_way(&mut a, &mut b, t, 1);
    assert!(b.remove_sa(IN_A, IN));
    t = one_way(&mut a, &mut b, t, 3);
    t = settle(&mut a, &mut b, t);
    assert!(a.peer_alive() && b.peer_alive());
    assert!(a.owns(IN_A, IN), "A never heard of B's takeover");
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let left = b.leave();
    t = settle(&mut a, &mut b, t);
    let top_b = *run.last().unwrap();
    let (took, _, _) = worker_takes(&mut a, &mut b, 230, top_b + 40, t, 20);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "B's leave: {left:?}; B accepted {}..={} in its takeover; A accepted {} of them again: {:?}..",
        run[0],
        top_b,
        twice.len(),
        twice.first()
    );
}

/// Probe (passes): reader40's find 3 up to B's refusal, then A restarts
/// instead of B. A2's first frame clears B's `unheard_runs` before A2 has
/// synchronised; B's goodbye then waits for A2's sync, whose bulk
/// carries B's history of IN_A (R's top), so A2, taking the goodbye in,
/// runs IN_A past R: the early clear opens nothing.
#[test]
fn probe_the_peers_restart_clears_unheard_runs_only_for_a_life_that_syncs_past_them() {
    let (a, mut b, run, mut t) = split_brain_run();
    assert!(b.remove_sa(IN_A, IN));
    alone(&mut b, t + 10, t + 30);
    drop(a);
    t += 40;
    let mut a2 = node(A, 5, t);
    // A2's first frame only: the flag is cleared before any bulk.
    deliver(&mut a2, &mut b, t);
    t = settle(&mut a2, &mut b, t);
    assert!(a2.synced() && a2.owns(IN_A, IN));
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a2, &mut b, t);
    assert_eq!(b.leave(), Ok(()));
    t = settle(&mut a2, &mut b, t);
    assert!(b.left());
    let top_b = *run.last().unwrap();
    let s = last_start(&events(&mut a2), IN_A, IN).map_or(0, |x| x.0);
    let (took, _) = alone_takes(&mut a2, s, top_b + 40, t, 20);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "A2 starts IN_A at {s}; B accepted {}..={}; A2 accepted {} again",
        run[0],
        top_b,
        twice.len()
    );
}

/// Probe (passes, a price): an ordinary failover with a rekey. B dies for
/// a moment (a blip: A declares it dead), A takes B's OUT_B over, and A's
/// host rekeys OUT_B meanwhile (delete, add under a new SPI). B is heard
/// again in the same life and never restarts: A's life can no longer
/// leave (`UnheardRuns`) while B lives, though B confirmed nothing of a
/// takeover only because the SA went before it could. Not a safety hole:
/// A must be stopped as a crash (B moves past it). Shown here so the
/// price is on record.
#[test]
fn probe_a_rekey_during_a_blip_takeover_makes_the_taker_undrainable_for_the_peers_life() {
    const OUT_NEW: u32 = 0x1005;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!a.peer_alive());
    assert!(a.take_over() >= 1);
    assert!(a.owns(OUT_B, Direction::Outbound));
    // The rekey: the new SA first, then the old one deleted.
    a.add_sa(OUT_NEW, Direction::Outbound, false, B);
    assert!(a.remove_sa(OUT_B, Direction::Outbound));
    b.add_sa(OUT_NEW, Direction::Outbound, false, B);
    b.remove_sa(OUT_B, Direction::Outbound);
    t = settle(&mut a, &mut b, t + 110);
    assert!(a.peer_alive() && b.peer_alive());
    a.hand_back();
    t = settle(&mut a, &mut b, t);
    hand_everything_over(&mut a, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let _ = t;
    assert_eq!(a.leave(), Err(LeaveRefused::UnheardRuns(1)));
}

/// Find 1b (promise 2, replay accepted; find 1's root, reached by a
/// drain). As find 1, but B, hearing A over the link healed one way,
/// drains IN_A to A exactly (`stop`, `hand_over_exact` at its worker's
/// top) instead of a failback: its unconfirmed change is the exact
/// hand-over (owner A), lost one way; then the host deletes IN_A on B.
/// `unheard_runs` stayed empty, B left, and A ran IN_A without a lease
/// from its own top: R was accepted again. Fixed with find 1.
#[test]
fn a_takers_exact_drain_over_a_one_way_link_then_delete_lets_its_run_be_accepted_again() {
    let (mut a, mut b, run, mut t) = split_brain_run();
    let top_b = *run.last().unwrap();
    t = one_way(&mut a, &mut b, t, 3);
    assert!(b.peer_alive() && !a.peer_alive());
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, top_b).expect("drain");
    t = one_way(&mut a, &mut b, t, 1);
    assert!(b.remove_sa(IN_A, IN));
    t = one_way(&mut a, &mut b, t, 3);
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN), "A never heard of B's takeover");
    b.hand_back();
    t = settle(&mut a, &mut b, t);
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let left = b.leave();
    t = settle(&mut a, &mut b, t);
    let (took, _, _) = worker_takes(&mut a, &mut b, 230, top_b + 40, t, 20);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "B's leave: {left:?}; B accepted {}..={}; A accepted {} of them again: {:?}..",
        run[0],
        top_b,
        twice.len(),
        twice.first()
    );
}

/// Probe (passes): reader40's find 3, but B's host adds IN_A again
/// (home A) after the delete: the flag survives the add, and B's leave
/// is still refused.
#[test]
fn probe_a_flagged_delete_then_add_still_refuses_the_goodbye() {
    let (mut a, mut b, _run, mut t) = split_brain_run();
    assert!(b.remove_sa(IN_A, IN));
    alone(&mut b, t + 10, t + 30);
    alone(&mut a, t + 10, t + 30);
    t = settle(&mut a, &mut b, t + 40);
    b.add_sa(IN_A, IN, false, A);
    t = settle(&mut a, &mut b, t);
    b.hand_back();
    t = settle(&mut a, &mut b, t);
    hand_everything_over(&mut b, |_, _| 0);
    settle(&mut a, &mut b, t);
    assert_eq!(b.leave(), Err(LeaveRefused::UnheardRuns(1)));
}

/// Find 1's outbound twin, written with the fix: before it, A sent
/// numbers of R again (a GCM nonce twice). A
/// sends on OUT_A; the link is cut both ways; B takes OUT_A over from the
/// silent A and sends a run R within its slack. The link heals one way
/// (B hears A), B fails OUT_A back (the record lost), its host deletes
/// OUT_A on B; the link heals. B's goodbye would leave A sending on OUT_A
/// with no lease, into R: B, whose takeover A never confirmed, may not
/// leave.
#[test]
fn an_outbound_takers_failback_over_a_one_way_link_then_delete_sends_no_number_twice() {
    const OUT: Direction = Direction::Outbound;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = a_sends_up_to(&mut a, &mut b, t, 2000);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!a.peer_alive() && !b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), OUT_A, OUT).expect("B runs OUT_A");
    let run = usable(&b, OUT_A, s);
    assert!(!run.is_empty(), "B's takeover sends within its slack");
    b.outbound_progress(OUT_A, run.end - 1, 0, run.end - s);
    t += 110;
    t = one_way(&mut a, &mut b, t, 3);
    assert!(b.peer_alive() && !a.peer_alive());
    assert!(b.hand_back() >= 1);
    t = one_way(&mut a, &mut b, t, 1);
    assert!(b.remove_sa(OUT_A, OUT));
    t = one_way(&mut a, &mut b, t, 3);
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(OUT_A, OUT), "A never heard of B's takeover");
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let left = b.leave();
    t = settle(&mut a, &mut b, t);
    // A's worker sends on from where it stopped, as far as its limit
    // lets it, for as long as R would take.
    let mut next = 2001;
    let mut twice = Vec::new();
    for _ in 0..100 {
        let r = usable(&a, OUT_A, next);
        if !r.is_empty() {
            twice.extend(overlap(&r, &run));
            next = r.end;
            a.outbound_progress(OUT_A, next - 1, 0, next);
        }
        t = settle(&mut a, &mut b, t);
        if next >= run.end {
            break;
        }
    }
    assert!(
        twice.is_empty(),
        "B's leave: {left:?}; B sent {run:?}; A sent {} of them again from {:?}",
        twice.len(),
        twice.first()
    );
    assert_eq!(left, Err(LeaveRefused::UnheardRuns(1)));
}

/// Probe (passes): the price stays where it was. Both nodes took the
/// other's SAs over behind a cut link; it heals B's way first, B hands A's
/// SAs back (unheard), then the link heals and A fails B's back: with no
/// delete, A confirms B's resent hand-back, which clears B's unconfirmed
/// runs, and B drains.
#[test]
fn probe_a_split_brain_healed_one_way_without_a_delete_lets_the_taker_drain() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(a.take_over() >= 1);
    assert!(b.take_over() >= 1);
    t = one_way(&mut a, &mut b, t + 110, 3);
    assert!(b.peer_alive() && !a.peer_alive());
    assert!(b.hand_back() >= 1);
    t = one_way(&mut a, &mut b, t, 3);
    t = settle(&mut a, &mut b, t);
    assert!(a.hand_back() >= 1);
    t = settle(&mut a, &mut b, t);
    hand_everything_over(&mut b, |_, _| 0);
    settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    assert_eq!(b.leave(), Ok(()));
}
