//! What a tenth fresh reader found against d573c36 (a question leaves a
//! mark, folded as 0 only when the asking life is lost), 294ffce and
//! 38035e3.

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use espgate_wire::mirror::MirrorRecord;
use pair::*;

/// A fresh outbound SA, home B, added at run time (a rekey's new SA).
const NEW_OUT: u32 = 0x7300;

fn carries_history(f: &[u8], spi: u32) -> bool {
    records(f)
        .iter()
        .any(|r| matches!(r, MirrorRecord::History { spi: s, .. } if *s == spi))
}

/// B adds `NEW_OUT` (home B) at run time, A (which lacks it) answers its
/// query, B begins it at 1 and uses 1..=`used` while every frame it sends
/// from then on is lost. Returns the time.
fn b_runs_new_unheard(a: &mut Mirror, b: &mut Mirror, mut t: u64, used: u64) -> u64 {
    b.add_sa(NEW_OUT, Direction::Outbound, false, B);
    assert!(b.asking(NEW_OUT, Direction::Outbound));
    t += 1;
    while let Some(f) = b.poll_transmit(t) {
        let _ = a.handle_frame(t, &f);
    }
    let mut answered = false;
    while let Some(f) = a.poll_transmit(t) {
        answered |= carries_history(&f, NEW_OUT);
        let _ = b.handle_frame(t, &f);
    }
    assert!(answered, "A answered B's query");
    assert!(!b.asking(NEW_OUT, Direction::Outbound), "B took the answer");
    let evs = events(b);
    assert_eq!(
        last_start(&evs, NEW_OUT, Direction::Outbound).map(|s| s.0),
        Some(1),
        "a fresh SA begins at its first number"
    );
    let room = usable(b, NEW_OUT, 1);
    assert!(room.end > used, "B may use 1..{} unheard", room.end);
    b.outbound_progress(NEW_OUT, used, used, used);
    // From here on nothing of B's reaches A: its states of NEW_OUT are lost.
    mute(b, t);
    t
}

/// Reader10 find 1 (d573c36, promise P1): a fence forgets the marks.
///
/// The mark a query leaves stands for "the asking life may run this SA
/// from its first number once answered, unheard"; `peer_restarted` folds
/// it into the table as 0 before `peer_lost` moves every SA past the lost
/// life. But the other way a peer life ends unheard, the fence
/// (`force_unleased`), calls `peer_lost` without folding the marks, and
/// sets `fenced`; when the peer's next life is heard, `peer_restarted`
/// sees `fenced` and drops the marks. An SA the answerer lacks (added on
/// the peer first, not here yet) is in neither `pair` nor `standby`, so
/// `peer_lost` never moved it: nothing on either node remembers that the
/// fenced life ran it.
///
/// Sequence (pair harness, synchronised): the host adds `NEW_OUT` (home B)
/// to B (not yet to A). B asks, A answers "nothing", B begins it at 1 and
/// seals 1..=300; B's frames are lost from then on (its states never
/// reach A). B dies; A declares it dead and the host fences it
/// (`force_unleased`). B restarts (memory lost, its configuration file
/// predating the add), synchronises with A. The host adds `NEW_OUT` to
/// both nodes. B's new life asks, A knows nothing, and B begins at 1
/// again: 1..=300 sealed twice under one key.
///
/// Before d573c36 the query stored 0 for the SA, which the fence's
/// `peer_lost` moved two jumps (as an SA this node lacks). The fix:
/// `peer_lost` itself folds the marks as 0 before it moves anything, so
/// a restart and a fence both count them.
#[test]
fn a_fence_counts_the_sa_a_question_marked_as_used_and_the_next_life_starts_past_it() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut b);
    let used = 300;
    t = b_runs_new_unheard(&mut a, &mut b, t, used);
    drop(b);
    t += 100;
    declare_dead(&mut a, t);
    a.force_unleased().expect("A fences the dead B");
    // B's next life, from a file that predates the add.
    t += 100;
    let mut b2 = node(B, 3, t);
    t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    events(&mut b2);
    a.add_sa(NEW_OUT, Direction::Outbound, false, B);
    b2.add_sa(NEW_OUT, Direction::Outbound, false, B);
    settle(&mut a, &mut b2, t);
    assert!(!b2.asking(NEW_OUT, Direction::Outbound));
    let evs = events(&mut b2);
    let start = last_start(&evs, NEW_OUT, Direction::Outbound).map(|s| s.0);
    let first = start.expect("B's new life runs NEW_OUT");
    assert!(
        first > used,
        "P1 broken: B's fenced life sealed NEW_OUT 1..={used} (A had marked it when it \
         answered B's query); after the fence and B's restart, B's new life begins it at \
         {first}: {first}..={used} sealed twice under one key"
    );
}

/// Control for find 1: the same run with B's death noticed through its
/// restart alone (no fence). `peer_restarted` folds the mark as 0 and
/// `peer_lost` moves it two jumps: B's new life begins past its run.
#[test]
fn without_a_fence_the_mark_moves_the_sa_past_the_lost_life() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut b);
    let used = 300;
    t = b_runs_new_unheard(&mut a, &mut b, t, used);
    drop(b);
    t += 100;
    declare_dead(&mut a, t);
    t += 100;
    let mut b2 = node(B, 3, t);
    t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    events(&mut b2);
    a.add_sa(NEW_OUT, Direction::Outbound, false, B);
    b2.add_sa(NEW_OUT, Direction::Outbound, false, B);
    settle(&mut a, &mut b2, t);
    let evs = events(&mut b2);
    let first = last_start(&evs, NEW_OUT, Direction::Outbound)
        .map(|s| s.0)
        .expect("B's new life runs NEW_OUT");
    assert!(first > used, "B's new life begins NEW_OUT at {first}");
}

/// A fresh inbound SA, home B, added at run time.
const NEW_IN: u32 = 0x7400;

/// Reader10 find 1, inbound (promise P2): the same fence forgets the mark
/// of an inbound SA, and B's next life restores its window at top 0 with
/// nothing seen, below the packets its fenced life accepted.
///
/// Sequence: as find 1 with `NEW_IN` (inbound, home B, strict). B's
/// first life accepts 1..=90 (as found, below its limit, one interval past
/// the acknowledged 0) and reports it; the report is lost. B dies, A
/// fences it, B restarts from a file that predates the add, both nodes get
/// `NEW_IN` again: B's new life starts its window at 0 and takes 1..=90
/// again (an attacker replays them).
///
/// With inbound bounds and leases, B's first life would accept nothing of
/// an SA A lacks (A acknowledges none of its bounds, a stall's included:
/// the limit stays at 1), so it runs without leases (`lease: false`): its
/// worker, refused 90 at the limit, reports it and the limit follows at
/// once. With the fix, the fence folds the mark as 0 and moves it two
/// intervals as an SA A lacks: B's new life (leases on) starts at 200, all
/// at and below seen, and takes none of 1..=90 (its worker would report
/// 90 refused at its limit, had it lain there, for A to acknowledge).
#[test]
fn a_fence_counts_an_inbound_sa_a_question_marked_as_used_and_its_packets_stay_refused() {
    let mut unleased = cfg(B);
    unleased.lease = false;
    let (mut a, mut b) = (node(A, 1, 0), node_from(unleased, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut b);
    b.add_sa(NEW_IN, Direction::Inbound, false, B);
    t += 1;
    while let Some(f) = b.poll_transmit(t) {
        let _ = a.handle_frame(t, &f);
    }
    let mut answered = false;
    while let Some(f) = a.poll_transmit(t) {
        answered |= carries_history(&f, NEW_IN);
        let _ = b.handle_frame(t, &f);
    }
    assert!(answered && !b.asking(NEW_IN, Direction::Inbound));
    let evs = events(&mut b);
    let first = last_start(&evs, NEW_IN, Direction::Inbound).expect("B runs NEW_IN");
    assert_eq!(first.0, 0, "a fresh inbound SA begins at top 0");
    // The far end sends 1..=90: B's worker is refused 90 at its limit and
    // reports it; without a lease the limit follows at once.
    b.inbound_stalled(NEW_IN, 90);
    let took = takes(&b, NEW_IN, 64, &first, 90);
    assert_eq!(took, (1..=90).collect::<Vec<_>>(), "B takes 1..=90");
    b.inbound_progress(NEW_IN, 90, &[u64::MAX], 0, 90);
    mute(&mut b, t);
    drop(b);
    t += 100;
    declare_dead(&mut a, t);
    a.force_unleased().expect("A fences the dead B");
    t += 100;
    let mut b2 = node(B, 3, t);
    t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    events(&mut b2);
    a.add_sa(NEW_IN, Direction::Inbound, false, B);
    b2.add_sa(NEW_IN, Direction::Inbound, false, B);
    t = settle(&mut a, &mut b2, t);
    assert!(!b2.asking(NEW_IN, Direction::Inbound));
    let evs = events(&mut b2);
    let again = last_start(&evs, NEW_IN, Direction::Inbound).expect("B's new life runs NEW_IN");
    // The attacker replays 1..=90: B's new worker is refused 90 at its
    // limit if it lies there, and reports it; A, which has the SA now,
    // acknowledges.
    if b2.inbound_limit(NEW_IN).unwrap() <= 90 {
        b2.inbound_stalled(NEW_IN, 90);
        settle(&mut a, &mut b2, t);
        assert_eq!(b2.inbound_limit(NEW_IN), Some(91));
    }
    let later = takes(&b2, NEW_IN, 64, &again, 90);
    accepted_once(
        "P2 broken: B's fenced life accepted NEW_IN packets; after the fence and B's \
         restart its new life restores the window below them",
        &took,
        &later,
    );
}

/// Tried and safe: the same fence when A has the SA too (added on both
/// nodes before B ran it). `peer_lost` moves every SA of A's pair past
/// the fenced life, mark or none: B's next life begins past its run.
#[test]
fn a_fence_moves_an_sa_the_answerer_has_past_the_fenced_life() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut b);
    a.add_sa(NEW_OUT, Direction::Outbound, false, B);
    let used = 300;
    t = b_runs_new_unheard(&mut a, &mut b, t, used);
    drop(b);
    t += 100;
    declare_dead(&mut a, t);
    a.force_unleased().expect("A fences the dead B");
    t += 100;
    let mut b2 = node(B, 3, t);
    t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    events(&mut b2);
    b2.add_sa(NEW_OUT, Direction::Outbound, false, B);
    settle(&mut a, &mut b2, t);
    let evs = events(&mut b2);
    let first = last_start(&evs, NEW_OUT, Direction::Outbound)
        .map(|s| s.0)
        .expect("B's new life runs NEW_OUT");
    assert!(first > used, "B's new life begins NEW_OUT at {first}");
}

/// Tried and safe: both nodes add a fresh SA of B's at once, so each
/// answers the other's question while it asks itself (A asks too, since
/// every run-time add asks). B begins at 1, A runs nothing, and once the
/// link is whole both name B the owner (P3).
#[test]
fn a_question_answered_while_the_answerer_asks_gives_one_owner_and_a_fresh_start() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut b);
    a.add_sa(NEW_OUT, Direction::Outbound, false, B);
    b.add_sa(NEW_OUT, Direction::Outbound, false, B);
    settle(&mut a, &mut b, t);
    assert!(!b.asking(NEW_OUT, Direction::Outbound));
    let evs = events(&mut b);
    assert_eq!(
        last_start(&evs, NEW_OUT, Direction::Outbound).map(|s| s.0),
        Some(1)
    );
    assert!(b.owns(NEW_OUT, Direction::Outbound) && !a.owns(NEW_OUT, Direction::Outbound));
    let view = |m: &Mirror| {
        m.views()
            .into_iter()
            .find(|v| v.spi == NEW_OUT && v.dir == Direction::Outbound)
            .map(|v| (v.owner, v.generation))
    };
    assert_eq!(view(&a), view(&b));
    assert_eq!(view(&a).map(|v| v.0), Some(B));
}
