//! What a thirty-first fresh reader found against the planned drain with
//! reader30's finds fixed (191d85f in the session that made them), each
//! fixed since.

mod pair;

use espgate_mirror::{Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

const OUT: Direction = Direction::Outbound;

/// An outbound SA of home B added at run time on B only.
const ONLY_B: u32 = 0x5000;

/// B stops and hands over exactly every SA it runs (each at its first
/// number: nothing sent) and leaves; A takes the goodbye in.
fn b_drains_and_leaves(a: &mut Mirror, b: &mut Mirror, mut t: u64) -> u64 {
    hand_everything_over(b, |_, _| 0);
    t = settle(a, b, t);
    b.leave().expect("runs nothing, everything confirmed");
    t = settle(a, b, t);
    assert!(b.gone() && b.left(), "the goodbye was heard");
    assert!(events(a).contains(&MirrorEvent::PeerLeft));
    t
}

/// Find 1 (a number used twice). B adds ONLY_B at run time and asks A,
/// which knows nothing of it: A marks it (B may run it from its first
/// number once answered, before anything of it is stored here) and
/// answers. B runs it from 1, its frames lost, then the host deletes it
/// on B (its history lost as well) and B drains and leaves. A took the
/// goodbye in by clearing its marks, as if what the leaving life asked
/// about had never run: B's next life knows nothing of ONLY_B either, so
/// when the host adds it again A starts it at 1. A goodbye stores the
/// marks as used from 0, as the loss of a life does.
#[test]
fn an_sa_the_leaving_life_asked_about_and_ran_unheard_is_not_started_again_at_1() {
    let (mut a, mut b, mut t) = synced_pair();
    b.add_sa(ONLY_B, OUT, false, B);
    // The question reaches A; A's answer reaches B.
    t += 10;
    deliver(&mut b, &mut a, t);
    t += 10;
    deliver(&mut a, &mut b, t);
    assert!(!b.asking(ONLY_B, OUT), "answered");
    let evs = events(&mut b);
    assert_eq!(starts_in(&evs, ONLY_B, OUT), vec![1], "new to both");
    // B runs it, unheard; the host deletes it on B, its history lost.
    let used = 1..b.limit(ONLY_B).unwrap();
    assert!(!used.is_empty(), "B may send ONLY_B");
    b.outbound_progress(ONLY_B, used.end - 1, 0, used.end - 1);
    mute(&mut b, t);
    assert!(b.remove_sa(ONLY_B, OUT));
    mute(&mut b, t);
    t = b_drains_and_leaves(&mut a, &mut b, t);
    drop(b);
    // B's next life, synchronised from A; the host adds ONLY_B again
    // (home A, say) on both.
    t += 600;
    let mut b2 = node(B, 3, t);
    t = settle(&mut a, &mut b2, t);
    t = settle(&mut a, &mut b2, t);
    assert!(a.synced() && b2.synced());
    events(&mut a);
    a.add_sa(ONLY_B, OUT, false, A);
    b2.add_sa(ONLY_B, OUT, false, A);
    settle(&mut a, &mut b2, t);
    let evs = events(&mut a);
    let start = starts_in(&evs, ONLY_B, OUT).last().copied();
    assert!(
        start.is_none_or(|s| s >= used.end || usable(&a, ONLY_B, s).is_empty()),
        "A may send ONLY_B from {start:?}, inside {used:?} which B's life used"
    );
}

/// Find 2 (every SA left running nowhere). A drains to B, every hand-over
/// confirmed, and calls `leave`; before its goodbye goes (in a heartbeat's
/// frame), B dies and its next life B2 asks A for a bulk sync. A sends it
/// and, with no part left to send, its goodbye; the bulk's last part is
/// lost. B2, its view from the parts it got naming A owner of nothing,
/// took the goodbye in; A, gone, served no bulk after it: B2 never
/// synchronised, and nothing ran. A node says goodbye only to a peer
/// life that has synchronised (and a node not synchronised refuses one).
#[test]
fn a_node_does_not_leave_a_peer_that_is_synchronising_from_it() {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    let keys = a.drain_sas();
    for &(spi, dir) in &keys {
        a.stop(spi, dir)
            .expect("the peer is heard and synchronised");
    }
    for (spi, dir) in keys {
        a.hand_over_exact(spi, dir, 0).expect("stopped");
    }
    t = settle(&mut a, &mut b, t);
    assert!(a.drain_sas().is_empty());
    a.leave().expect("runs nothing, everything confirmed");
    events(&mut a);
    // B dies before A's next frame; its next life asks for a bulk.
    drop(b);
    t += 1;
    let mut b2 = many_parts(B, 3, t);
    deliver(&mut b2, &mut a, t);
    // The first sending's last part is lost; everything else arrives.
    let mut lost_last = false;
    for _ in 0..300 {
        t += 10;
        a.handle_timeout(t);
        let frames = sent(&mut a, t);
        let last: Vec<u32> = frames
            .iter()
            .filter_map(|f| part_of(f))
            .filter(|&(_, p, n)| !lost_last && p + 1 == n)
            .map(|(_, p, _)| p)
            .collect();
        lost_last |= !last.is_empty();
        deliver_but(&mut b2, &frames, &last, t);
        b2.handle_timeout(t);
        deliver(&mut b2, &mut a, t);
    }
    assert!(lost_last, "a bulk went");
    assert!(b2.synced(), "B2 never synchronised (A gone: {})", a.gone());
    for k in 0..N_EXTRA {
        let spi = EXTRA + k;
        assert!(
            b2.limit(spi).is_some_and(|l| l > 1) || a.limit(spi).is_some_and(|l| l > 1),
            "{spi:#x} runs nowhere (A gone: {})",
            a.gone()
        );
    }
}

/// Found while fixing reader31's explorer find (its check now counts a
/// node that said goodbye as stopped, and both having said it as nothing
/// running): two nodes that run nothing (every SA deleted by the host)
/// both drained, their goodbyes crossing. Each took the other's in, and
/// the pair had nobody for the SAs the host adds next. A node leaving
/// itself refuses a goodbye: both run on.
#[test]
fn two_nodes_leaving_at_once_do_not_both_leave() {
    let (mut a, mut b, mut t) = synced_pair();
    for (spi, dir) in [(OUT_A, OUT), (OUT_B, OUT), (IN_A, Direction::Inbound)] {
        assert!(a.remove_sa(spi, dir) && b.remove_sa(spi, dir));
    }
    t = settle(&mut a, &mut b, t);
    a.leave().expect("runs nothing");
    b.leave().expect("runs nothing");
    // Each sends its goodbye before it hears the other's.
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        t += 10;
        a.handle_timeout(t);
        b.handle_timeout(t);
        fa.extend(sent(&mut a, t));
        fb.extend(sent(&mut b, t));
    }
    assert!(a.gone() && b.gone(), "both goodbyes went");
    for f in &fa {
        let _ = b.handle_frame(t, f);
    }
    for f in &fb {
        let _ = a.handle_frame(t, f);
    }
    settle(&mut a, &mut b, t);
    assert!(!(a.gone() && b.gone()), "both took the other's goodbye in");
    for evs in [events(&mut a), events(&mut b)] {
        assert!(evs.contains(&MirrorEvent::LeaveAbandoned), "{evs:?}");
        assert!(!evs.contains(&MirrorEvent::PeerLeft), "{evs:?}");
    }
}
