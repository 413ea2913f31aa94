//! Holes a fourth fresh reader found in the zero-reuse promise, one test
//! each, written against main at 37ad52a, where each failed.

mod pair;

use espgate_mirror::{InboundTakeover, SaOverrides};
use espgate_wire::Direction;
use pair::*;

/// A run-time inbound SA, home B (a rekey's new SA).
const IN_X: u32 = 0x3100;

/// The replay window of an inbound worker (one bitmap word).
const WINDOW: u64 = 64;

/// Reader4 find 1: `peer_lost` moves the history of an SA this node lacks
/// by the largest inbound interval *of the SAs it still has*, not of the
/// SA itself (its interval went with it when it was deleted).
///
/// Sequence (strict, default `inbound_interval` 100; the host gives the
/// inbound SA `IN_X`, home B, its own interval 1000 on both nodes): the
/// pair is synchronised; B runs `IN_X` and accepts 1..=999 (each step
/// past its limit first refused, reported and acknowledged), reported,
/// stored by A (999). The host deletes `IN_X` on both nodes (both keep
/// 999 as its history). The link is cut; A declares B dead and takes B's
/// SAs over; the host adds `IN_X` again (same settings) and reaches A
/// first: A holds B's SAs, so `add_sa_with` runs it at once one of *its*
/// intervals past the history (top 1999, all below seen), its takeover's
/// reach one more (limit 3000): A accepts 2000..=2999. A dies; its next
/// life starts and the link heals. B hears the new life: `peer_lost`
/// moves the history of the SA B lacks by `LOST_LIFE_STEPS - 1` times the
/// largest interval. At 37ad52a that was the largest among B's configured
/// inbound SAs and the default, 100 (1199, where the lost life then ran up
/// to 999 + 3 × 1000, and B, restarting an interval past 1199 with a
/// limit an interval further, accepted 3000..=3198 a second time); now it
/// is the largest B has known, the SA's own 1000: 2999. The host adds
/// `IN_X` to both nodes: B asks, A's new life answers 2999 (from B's
/// bulk), B starts there: top 2999 all seen. B's worker is refused packet
/// 5000 and reports it; once acknowledged, B accepts 3000..=5000, none of
/// which A's lost life accepted.
///
/// Promise broken: (2), no inbound window restored below what an earlier
/// life accepted. (The same held for any retired SA whose interval
/// override was larger than every interval the node still configured.
/// Since inbound leases are bounds, a lost life's reach past what it was
/// told is `inbound_grace`, whatever the SA's interval: every move steps
/// by it.)
#[test]

fn a_deleted_sa_with_its_own_interval_readded_by_a_lost_life_accepts_nothing_twice() {
    let own = SaOverrides {
        interval: Some(1000),
        quantity: None,
    };
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    b.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    a.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    let t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).unwrap_or((0, vec![]));
    let far = 5000;
    let top = 999;
    let t = accepts_up_to(&mut b, &mut a, IN_X, t, (b_win.0, top), &[u64::MAX]);
    assert!(b.remove_sa(IN_X, Direction::Inbound));
    assert!(a.remove_sa(IN_X, Direction::Inbound));
    let t = settle(&mut a, &mut b, t);
    assert_eq!(
        a.standby().get(IN_X, Direction::Inbound).unwrap().value,
        top
    );
    events(&mut a);
    events(&mut b);
    // Cut; A takes B's SAs over; the host adds the SA again, to A first.
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    a.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    mute(&mut a, t + 100);
    mute(&mut b, t + 100);
    let a_win = last_start(&events(&mut a), IN_X, Direction::Inbound)
        .expect("A runs the peer's SA added while it holds the peer's SAs");
    let a_took = takes(&a, IN_X, WINDOW, &a_win, far);
    assert!(!a_took.is_empty());
    let (mut a2, now) = a_dies_after_its_run(a, &mut b, t, IN_X, &a_took);
    // The host adds the SA to both.
    a2.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    b.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    let now = settle(&mut a2, &mut b, now);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).expect("B runs it again");
    // B's worker is refused packet `far` at its limit and reports it; once
    // A's new life acknowledges, B's window alone decides what passes.
    b.inbound_stalled(IN_X, far);
    let _ = settle(&mut a2, &mut b, now);
    assert_eq!(b.inbound_limit(IN_X), Some(far + 1));
    let b_took = takes(&b, IN_X, WINDOW, &b_win, far);
    accepted_once(
        &format!(
            "A's lost life (top {}), then B (top {}, limit {:?})",
            a_win.0,
            b_win.0,
            b.inbound_limit(IN_X)
        ),
        &a_took,
        &b_took,
    );
}

/// Reader4 find 2 (lenient inbound takeover): an inbound SA deleted and
/// added again begins at its history with an empty bitmap, so the packets
/// it accepted *and reported* before the delete pass again.
///
/// Sequence (lenient, interval 100): the pair is synchronised; B runs the
/// inbound SA `IN_X` (home B, on both nodes) and accepts 1..=99 (each
/// step past its limit first refused, reported and acknowledged),
/// reported as top 99 with the window's bitmap and acknowledged; A stores
/// top 99 and its bitmap. The host deletes `IN_X` on both nodes: B's
/// `remove_sa` sends `History(99)` (a history record carries no bitmap)
/// and keeps its final state, bitmap included, in its own standby table.
/// The host adds `IN_X` again (both nodes): B asks, A answers 99, and
/// `begin_asked` calls `recover(spi, dir, 99, &[])`: the bitmap it passes
/// is empty, the fresh worker's own window holds nothing, and the lenient
/// `restart_window` keeps that, so the SA begins at top 99 with nothing
/// seen (the bitmap both nodes store for it is not used). B's limit was
/// 99 + 100 and its worker took 36..=99 again: every packet of the window
/// below the top it reported. (Now B's worker is also refused packet 1000
/// and reports it, so once that is acknowledged only its window decides
/// what passes of everything the far end sent.)
///
/// Promise broken: (2), in the form lenient keeps: a lenient window may
/// take again only packets accepted since the last report; these were
/// reported (top and bitmap) and stored by both nodes. Strict is not
/// affected (it begins at the stored bound with everything at and below
/// it seen).
#[test]

fn a_lenient_inbound_sa_deleted_and_added_again_accepts_nothing_it_reported_twice() {
    let lenient = InboundTakeover::Lenient;
    let (mut a, mut b) = (node_with(A, 1, 0, lenient), node_with(B, 2, 0, lenient));
    let t = settle(&mut a, &mut b, 0);
    b.add_sa(IN_X, Direction::Inbound, false, B);
    a.add_sa(IN_X, Direction::Inbound, false, B);
    let t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).unwrap_or((0, vec![]));
    let far = 1000;
    let top = 99;
    // The worker's window: everything from 1 to the top seen (one word).
    let t = accepts_up_to(&mut b, &mut a, IN_X, t, (b_win.0, top), &[u64::MAX]);
    let b_took: Vec<u64> = (b_win.0 + 1..=top).collect();
    assert_eq!(
        a.standby().get(IN_X, Direction::Inbound).unwrap().value,
        top
    );
    // Deleted on both nodes, then added again on both.
    assert!(b.remove_sa(IN_X, Direction::Inbound));
    assert!(a.remove_sa(IN_X, Direction::Inbound));
    let t = settle(&mut a, &mut b, t);
    events(&mut b);
    b.add_sa(IN_X, Direction::Inbound, false, B);
    a.add_sa(IN_X, Direction::Inbound, false, B);
    let t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let again = last_start(&events(&mut b), IN_X, Direction::Inbound).expect("B runs it again");
    // B's worker is refused packet `far` at its limit and reports it; once
    // A acknowledges, B's window alone decides what passes.
    b.inbound_stalled(IN_X, far);
    settle(&mut a, &mut b, t);
    assert_eq!(b.inbound_limit(IN_X), Some(far + 1));
    let b_again = takes(&b, IN_X, WINDOW, &again, far);
    accepted_once(
        &format!(
            "B (reported top {top}), then B again at top {} with bitmap {:x?}, limit {:?}",
            again.0,
            again.1,
            b.inbound_limit(IN_X)
        ),
        &b_took,
        &b_again,
    );
}
