//! SAs deleted and added again, and what their histories keep.

use super::*;

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
    t = accepts_up_to(&mut b, &mut a, IN_B, t, (0, 3 * INTERVAL), &[u64::MAX]);
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
    t = accepts_up_to(&mut b, &mut a, IN_B, t, (0, 3 * INTERVAL), &[u64::MAX]);
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
/// inbound SA stood at window top 1, not 0. Its lease reaches its top and
/// no further (no rate measured yet), so packet 1 is first reported as a
/// stall, and accepted once the peer acknowledged that.
#[test]
fn a_fresh_inbound_sa_added_at_run_time_accepts_its_first_packet() {
    const NEW: u32 = 0x2200;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    for m in [&mut a, &mut b] {
        m.add_sa(NEW, Direction::Inbound, false, A);
    }
    let t = settle(&mut a, &mut b, t);
    assert!(!a.asking(NEW, Direction::Inbound));
    let (top, bitmap) =
        last_start(&events(&mut a), NEW, Direction::Inbound).expect("the new SA begins");
    let k = top.wrapping_sub(1);
    let seen = top >= 1
        && bitmap
            .get((k / 64) as usize)
            .is_some_and(|w| w >> (k % 64) & 1 == 1);
    assert!(
        !seen && top == 0,
        "the new SA begins at top {top} ({} bitmap words): packet 1 is refused",
        bitmap.len(),
    );
    assert_eq!(
        a.inbound_limit(NEW),
        Some(1),
        "nothing acknowledged past the top: packet 1 waits"
    );
    a.inbound_stalled(NEW, 1);
    settle(&mut a, &mut b, t);
    assert!(
        a.inbound_limit(NEW).unwrap() > 1,
        "packet 1 stalled and acknowledged, limit {:?}: packet 1 is refused",
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
