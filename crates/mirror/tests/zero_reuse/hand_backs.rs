//! SAs handed back, taken back unheard, and stalls around them.

use super::*;

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
    // B runs IN_A (first the interval its takeover may run unheard, then
    // past it, each step stalled first); A stores its bounds and
    // acknowledges them.
    let top = b.inbound_limit(IN_A).unwrap() - 1;
    b.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
    t = settle(&mut a, &mut b, t);
    t = accepts_up_to(
        &mut b,
        &mut a,
        IN_A,
        t,
        (top, top + 4 * INTERVAL),
        &[u64::MAX; 2],
    );
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
    // A runs IN_A from where the bulk sync left it: at the stored bound
    // of nothing, its window top 0 as built (so not activated again).
    let first = restarted(&events(&mut a), IN_A, Direction::Inbound, 0);
    assert_eq!(first, 0);
    // A accepts five intervals' worth, each step past its lease stalled
    // and acknowledged first; B stores and acknowledges.
    let top = first + 5 * INTERVAL;
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (first, top), &[u64::MAX; 2]);
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
    let top = b.inbound_limit(IN_A).unwrap() - 1;
    b.inbound_progress(IN_A, top, &[u64::MAX], 0, top);
    t = settle(&mut a, &mut b, t);
    t = accepts_up_to(
        &mut b,
        &mut a,
        IN_A,
        t,
        (top, top + 2 * INTERVAL),
        &[u64::MAX],
    );
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
