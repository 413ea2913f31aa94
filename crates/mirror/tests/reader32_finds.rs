//! What a thirty-second fresh reader found against the planned drain with
//! reader31's finds fixed (1c3d59c).

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use pair::*;

const OUT: Direction = Direction::Outbound;

/// Hands `frames` to `to` at `now`, in order.
fn hand(to: &mut Mirror, frames: &[Vec<u8>], now: u64) {
    for f in frames {
        let _ = to.handle_frame(now, f);
    }
}

/// Find 1 (an SA run by nobody, for good; found by the explorer family
/// `reader32_changes_between_stop_and_hand_over_break_nothing`, depth 6).
///
/// 1. The host deletes OUT_B on A and adds it again (home B): A's view
///    is the configured one (B runs it, generation 0) and A asks B what
///    it knows of it. The question (frame 1) is slow.
/// 2. B, draining, stops OUT_B and hands it to A exactly (owner A,
///    generation 1); A takes it in, runs it and confirms (frame 2, slow
///    as well). B's view: A runs it, generation 1, blind until A's word.
/// 3. The host deletes OUT_B on A and adds it again once more: A's view
///    is the configured one again, and it asks again (frame 3).
/// 4. B takes in frames 1 to 3 before it sends anything: frame 1's
///    question, the SA still blind, gets an answer with no view (history
///    only); frame 2 confirms A's run (not blind any more); frame 3's
///    question "asked again before the answer went" keeps the first
///    answer: no view, though B now has one to give.
///
/// A takes the viewless answer: B runs OUT_B (generation 0), as far as A
/// knows, and it asks no more. B's view, confirmed, says A runs it. Left
/// alone with both alive, nobody runs OUT_B, configured on both (promise
/// 3), for good.
///
/// Suggested fix: an answer waiting to go is rebuilt when the question
/// comes again (keep its `known` from the first, take the view of now),
/// or a confirmation that clears `blind` drops the viewless answers
/// waiting for that SA so that the next question gets a whole one.
#[test]
fn an_sa_asked_about_twice_across_an_exact_hand_over_runs_somewhere() {
    let (mut a, mut b, mut t) = synced_pair();
    // 1. Deleted on A and added again: A asks (frame 1, held).
    assert!(a.remove_sa(OUT_B, OUT));
    a.add_sa(OUT_B, OUT, false, B);
    t += 1;
    let first = sent(&mut a, t);
    assert!(!first.is_empty(), "A's question went");
    // 2. B stops OUT_B and hands it to A exactly; A runs it and confirms
    //    (frame 2, held).
    b.stop(OUT_B, OUT)
        .expect("B runs OUT_B, A is heard and synced");
    b.hand_over_exact(OUT_B, OUT, 0).expect("stopped");
    t += 1;
    deliver(&mut b, &mut a, t);
    assert!(a.owns(OUT_B, OUT), "A took the exact hand-over in");
    let second = sent(&mut a, t);
    // 3. Deleted on A and added again (frame 3, held).
    assert!(a.remove_sa(OUT_B, OUT));
    a.add_sa(OUT_B, OUT, false, B);
    t += 1;
    let third = sent(&mut a, t);
    // 4. B takes in all three, then the pair is left alone.
    hand(&mut b, &first, t);
    hand(&mut b, &second, t);
    hand(&mut b, &third, t);
    for _ in 0..4 {
        t = settle(&mut a, &mut b, t);
    }
    let view = |m: &Mirror| {
        m.views()
            .into_iter()
            .find(|v| v.spi == OUT_B && v.dir == OUT)
            .map(|v| (v.owner, v.generation))
    };
    assert!(
        a.owns(OUT_B, OUT) || b.owns(OUT_B, OUT),
        "OUT_B runs nowhere: A's view {:?}, B's view {:?}",
        view(&a),
        view(&b)
    );
}
