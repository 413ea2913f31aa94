//! What an eighth fresh reader found against 38035e3 (every SA added at
//! run time asks; the answer carries the answerer's view as a
//! confirmation, taken in as a change when its generation is higher).

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use espgate_wire::mirror::{MirrorRecord, OwnershipKind};
use pair::*;

/// Extra outbound SAs, home B, added at run time on both nodes: they give
/// B a backlog of states so that an answer's records span frames.
const EXTRA: u32 = 0x5000;
const EXTRAS: u32 = 40;

fn carries_confirm(f: &[u8], spi: u32) -> bool {
    records(f).iter().any(|r| {
        matches!(r, MirrorRecord::Ownership { spi: s, kind: OwnershipKind::Confirm, .. } if *s == spi)
    })
}

fn carries_history(f: &[u8], spi: u32) -> bool {
    records(f)
        .iter()
        .any(|r| matches!(r, MirrorRecord::History { spi: s, .. } if *s == spi))
}

/// Ten seconds over a perfect link; then both views of `OUT_B` (owner,
/// generation) and whether each node runs it.
type Outcome = ((Option<(u32, u64)>, Option<(u32, u64)>), [bool; 2]);

fn ten_seconds_whole(a: &mut Mirror, b: &mut Mirror, mut t: u64) -> Outcome {
    for _ in 0..200 {
        t += 50;
        exchange(a, b, t);
        a.handle_timeout(t);
        b.handle_timeout(t);
    }
    assert!(a.peer_alive() && b.peer_alive() && a.synced() && b.synced());
    let owns = [
        a.owns(OUT_B, Direction::Outbound),
        b.owns(OUT_B, Direction::Outbound),
    ];
    ((owner(a, OUT_B), owner(b, OUT_B)), owns)
}

fn owner(m: &Mirror, spi: u32) -> Option<(u32, u64)> {
    m.views()
        .into_iter()
        .find(|v| v.spi == spi && v.dir == Direction::Outbound)
        .map(|v| (v.owner, v.generation))
}

/// Reader8 find 1 (38035e3, promise 3: one owner once the link is whole):
/// the confirmation that carries the answerer's view is sent once, in
/// whatever frame its `ownership_out` entry goes; the history record that
/// answers the same query goes behind the answerer's queued states, and
/// may go in a later frame. Lose only the frame with the confirmation and
/// the history still clears the asker's `questions`: nothing asks again,
/// nothing sends the view again, and the pair is left as in explore find
/// 1: neither node runs the SA, forever, over a whole link.
///
/// Sequence (pair harness): A and B synchronised. A takes `OUT_B` over
/// (generation 1); B takes the change in and confirms (B's view: A runs
/// it, generation 1). 40 SAs of B's are added at run time on both nodes
/// and run on B. The host deletes `OUT_B` on A and adds it again (A's
/// view: B runs it, generation 0; A asks). B's workers report progress
/// on its 40 SAs (their states are queued) just as A's query reaches B.
/// B's answer: frame 1 = the confirmation (A, 1) and the first states,
/// frame 2 = the rest of the states and the history. Frame 1 is lost;
/// frame 2 arrives. Then the link is perfect for 10 s.
///
/// Now the view and the history of an answer go in one frame: the frame
/// lost takes both, and A asks again at its next refresh.
#[test]
fn a_lost_confirmation_in_the_answer_to_a_query_leaves_the_sa_with_no_owner() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert_eq!(a.take_over(), 1, "OUT_B");
    t = settle(&mut a, &mut b, t);
    assert!(!b.owns(OUT_B, Direction::Outbound), "B took A's change in");
    for i in 0..EXTRAS {
        a.add_sa(EXTRA + i, Direction::Outbound, false, B);
        b.add_sa(EXTRA + i, Direction::Outbound, false, B);
    }
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(EXTRA, Direction::Outbound) && b.limit(EXTRA).unwrap() > 1);
    // The host deletes OUT_B on A and adds it again: A asks.
    assert!(a.remove_sa(OUT_B, Direction::Outbound));
    a.add_sa(OUT_B, Direction::Outbound, false, B);
    t += 1;
    // B's workers report; then A's query arrives.
    for i in 0..EXTRAS {
        b.outbound_progress(EXTRA + i, 150, 150, 150);
    }
    let mut asked = false;
    while let Some(f) = a.poll_transmit(t) {
        asked |= records(&f)
            .iter()
            .any(|r| matches!(r, MirrorRecord::Query { spi, .. } if *spi == OUT_B));
        let _ = b.handle_frame(t, &f);
    }
    assert!(asked, "A asked about OUT_B");
    let mut lost = 0;
    let mut together = false;
    while let Some(f) = b.poll_transmit(t) {
        if carries_confirm(&f, OUT_B) {
            together = carries_history(&f, OUT_B);
            lost += 1;
            continue;
        }
        let _ = a.handle_frame(t, &f);
    }
    assert_eq!(lost, 1, "B's confirmation went in one frame");
    assert!(together, "the history went in the same frame");
    // The link is whole from now on.
    let ((in_a, in_b), owns) = ten_seconds_whole(&mut a, &mut b, t);
    assert!(
        in_a.map(|v| v.0) == in_b.map(|v| v.0) && owns[0] != owns[1],
        "10 s after one lost frame on a whole link: (owner, generation) of OUT_B in A's view \
         {in_a:?}, in B's {in_b:?}; owns (A, B) {owns:?}"
    );
}

/// Reader8 find 1, second face (same cause: the answer's confirmation
/// lost, its history delivered): two owners forever over a whole link.
///
/// Sequence (pair harness): A and B synchronised. A takes `OUT_B` over
/// (generation 1) and hands it back (generation 2); both views: B runs
/// it, generation 2. 40 SAs of B's are added at run time on both nodes.
/// The host deletes `OUT_B` on A and adds it again (A's view: B,
/// generation 0; A asks). B's answer spans two frames (B's 40 states
/// queued first); the one with the confirmation (B, 2) is lost, the one
/// with the history arrives. The link is then cut for 100 ms: A declares
/// B dead and takes B's SAs over: `OUT_B` at generation 1 (its view's 0
/// plus 1). The link heals and stays perfect for 10 s: B ignores A's
/// change (1 < 2) and sends nothing back; A keeps its view; both run
/// `OUT_B`. Measured: A from 9197 (limit 9797), B below 7197: the ranges
/// are disjoint (no number twice), but neither ever stops, and each
/// stalls at its limit (neither acknowledges the other's states).
///
/// Now the frame lost takes the history with the view: A asks again, and
/// the answer after the heal (B, generation 2) wins over A's takeover.
#[test]
fn a_lost_confirmation_in_the_answer_to_a_query_leaves_the_sa_with_two_owners() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert_eq!(a.take_over(), 1, "OUT_B");
    t = settle(&mut a, &mut b, t);
    assert_eq!(a.hand_back(), 1, "OUT_B");
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(OUT_B, Direction::Outbound) && owner(&a, OUT_B) == Some((B, 2)));
    for i in 0..EXTRAS {
        a.add_sa(EXTRA + i, Direction::Outbound, false, B);
        b.add_sa(EXTRA + i, Direction::Outbound, false, B);
    }
    t = settle(&mut a, &mut b, t);
    assert!(a.remove_sa(OUT_B, Direction::Outbound));
    a.add_sa(OUT_B, Direction::Outbound, false, B);
    t += 1;
    for i in 0..EXTRAS {
        b.outbound_progress(EXTRA + i, 150, 150, 150);
    }
    while let Some(f) = a.poll_transmit(t) {
        let _ = b.handle_frame(t, &f);
    }
    let mut lost = 0;
    while let Some(f) = b.poll_transmit(t) {
        if carries_confirm(&f, OUT_B) {
            assert!(carries_history(&f, OUT_B), "the history goes with it");
            lost += 1;
            continue;
        }
        let _ = a.handle_frame(t, &f);
    }
    assert_eq!(lost, 1, "B's confirmation went in one frame, and was lost");
    assert!(!a.asking(OUT_B, Direction::Outbound));
    // A cut of 100 ms: A declares B dead and takes B's SAs over.
    t += 100;
    mute(&mut a, t);
    mute(&mut b, t);
    declare_dead(&mut a, t);
    assert!(a.take_over() >= 1);
    let a_start = last_start(&events(&mut a), OUT_B, Direction::Outbound).map(|s| s.0);
    // The link is whole from now on.
    let ((in_a, in_b), owns) = ten_seconds_whole(&mut a, &mut b, t);
    assert!(
        in_a.map(|v| v.0) == in_b.map(|v| v.0) && owns[0] != owns[1],
        "10 s after the heal on a whole link: (owner, generation) of OUT_B in A's view \
         {in_a:?}, in B's {in_b:?}; owns (A, B) {owns:?}; A's takeover start {a_start:?}; limits (A, B) {:?}",
        (a.limit(OUT_B), b.limit(OUT_B))
    );
}
