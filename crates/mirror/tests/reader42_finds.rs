//! Reader42's finds and probes of `UnheardRuns` as 4d5530c left it: the set of runs
//! taken over and not confirmed by the peer, cleared by a Confirm of this
//! node's unconfirmed ownership record, a `Past` answering its final, or
//! the peer's restart.

mod pair;

use espgate_mirror::{LeaveRefused, Mirror};
use espgate_wire::Direction;
use pair::*;

const IN: Direction = Direction::Inbound;

/// The split brain that leaves B with a final of IN_A and A's frames
/// answering it (`Past`) not yet delivered: A runs IN_A to 230; cut, B
/// takes it over; healed, A confirms (B owns IN_A); cut, A takes it back;
/// healed one frame at a time: B takes A's change in (its final of IN_A
/// goes to A as a copy), A answers `Past`, and those frames of A's are
/// returned, undelivered. Returns A, B, A's held frames, the time.
fn b_has_a_final_of_in_a() -> (Mirror, Mirror, Vec<Vec<u8>>, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    t = cut(&mut a, &mut b, t);
    assert!(b.take_over() >= 1);
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN) && !a.owns(IN_A, IN));
    t = cut(&mut a, &mut b, t);
    assert!(a.take_over() >= 1);
    assert!(a.owns(IN_A, IN));
    // Healed, one hop at a time: A's change to B, B's final to A, A's
    // answer held.
    t += 10;
    deliver(&mut a, &mut b, t);
    assert!(!b.owns(IN_A, IN), "A's change won at B");
    deliver(&mut b, &mut a, t);
    let held = sent(&mut a, t);
    assert!(
        held.iter().any(|f| has_past(f, IN_A, IN)),
        "A answers B's final of IN_A with Past"
    );
    events(&mut b);
    (a, b, held, t)
}

/// B, with A's `Past` frames held (delivered after B's takeover if
/// `late`, before it if not), takes IN_A over from a silent A and accepts
/// its grace R; deletes IN_A (its one history record lost in the cut);
/// the link heals, B hands everything over and leaves. Returns B's leave,
/// R and what A's worker accepts of IN_A after it.
fn late_past_then_delete(late: bool) -> (Result<(), LeaveRefused>, Vec<u64>, Vec<u64>) {
    let (mut a, mut b, held, mut t) = b_has_a_final_of_in_a();
    let deliver_held = |b: &mut Mirror, t: u64| {
        for f in &held {
            b.handle_frame(t, f).expect("A's held frame is fresh at B");
        }
    };
    if !late {
        deliver_held(&mut b, t);
    }
    // The link is cut again (A's frames after the held ones lost): both
    // declare the other dead; B's host takes everything over.
    t = cut(&mut a, &mut b, t);
    assert!(!b.peer_alive());
    assert!(b.take_over() >= 1);
    if late {
        // A's frame of before the cut, delayed, arrives now.
        deliver_held(&mut b, t);
    }
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    let (run, _) = alone_takes(&mut b, s, s + 200, t, 20);
    assert!(!run.is_empty(), "B's takeover accepts its grace");
    // The host deletes IN_A on B; its history goes into the cut.
    assert!(b.remove_sa(IN_A, IN));
    t = cut(&mut a, &mut b, t + 10);
    t = settle(&mut a, &mut b, t);
    assert!(a.peer_alive() && b.peer_alive());
    assert!(a.owns(IN_A, IN), "A never heard of B's second takeover");
    let top_a = last_start(&events(&mut a), IN_A, IN).map_or(0, |x| x.0);
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let left = b.leave();
    t = settle(&mut a, &mut b, t);
    let top_b = *run.last().unwrap();
    let (took, _, _) = worker_takes(&mut a, &mut b, top_a, top_b + 40, t, 20);
    (left, run, took)
}

/// Find 1 (promise 2, replay accepted; `past_received` clears a run it
/// does not answer). A runs IN_A to 230. Cut: B takes IN_A over; healed,
/// A confirms it. Cut: A takes IN_A back (generation 2). Healed: B takes
/// A's change in, its final F of IN_A goes to A, A answers `Past(F)` in
/// a frame P that is delayed (the link breaks right after it). B declares
/// A dead and takes IN_A over again (generation 3): `unheard_runs` gets
/// IN_A; its worker accepts its grace R. Now P arrives (fresh: its counter
/// is above all B accepted): `past_received` finds F still in `finals`
/// (dropped only at the next refresh) and removes IN_A from
/// `unheard_runs` though `Past` says nothing of the new run. The host
/// deletes IN_A on B (its one history record lost in the cut); the link
/// heals; B hands everything over and its leave is taken: A, which never
/// heard the second takeover, runs IN_A without a lease and accepts R
/// again.
///
/// Fixed: a takeover drops the SA's final of an earlier run here (as
/// `resend_finals` would at the next refresh), so a late `Past` of it
/// finds nothing to answer and clears nothing.
#[test]
fn a_late_past_of_an_earlier_final_clears_a_new_takeovers_unheard_run() {
    let (left, run, took) = late_past_then_delete(true);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "B's leave: {left:?}; B accepted {}..={} in its second takeover; A accepted {} of them again: {:?}..",
        run[0],
        run[run.len() - 1],
        twice.len(),
        twice.first()
    );
}

/// Probe (passes): find 1 with A's `Past` delivered in time (before the
/// cut and B's second takeover): B's leave is refused (`UnheardRuns`) and
/// nothing is accepted twice.
#[test]
fn probe_a_past_in_time_leaves_the_new_takeover_unheard() {
    let (left, run, took) = late_past_then_delete(false);
    assert_eq!(left, Err(LeaveRefused::UnheardRuns(1)));
    assert!(common(&run, &took).is_empty());
}

/// Find 1's outbound twin (promise 1, a number sent twice): the same
/// sequence on OUT_A. B's second takeover of OUT_A (A silent) sends a run
/// R within its acknowledged start; A's delayed `Past` of B's earlier
/// final of OUT_A clears `unheard_runs`; B deletes OUT_A (its history
/// lost in the cut), the link heals, B hands everything over and leaves;
/// A, which never heard the second takeover, sends on OUT_A with no lease
/// into R. Fixed with find 1.
#[test]
fn a_late_past_of_an_earlier_final_lets_outbound_numbers_go_twice() {
    const OUT: Direction = Direction::Outbound;
    let (mut a, mut b, held, mut t) = b_has_a_final_of_in_a();
    assert!(held.iter().any(|f| has_past(f, OUT_A, OUT)));
    let next_a = last_start(&events(&mut a), OUT_A, OUT);
    t = cut(&mut a, &mut b, t);
    assert!(b.take_over() >= 1);
    for f in &held {
        b.handle_frame(t, f).expect("fresh");
    }
    let (s, _) = last_start(&events(&mut b), OUT_A, OUT).expect("B runs OUT_A");
    let run = usable(&b, OUT_A, s);
    assert!(!run.is_empty(), "B's takeover sends");
    b.outbound_progress(OUT_A, run.end - 1, 0, run.end - s);
    assert!(b.remove_sa(OUT_A, OUT));
    t = cut(&mut a, &mut b, t + 10);
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(OUT_A, OUT), "A never heard of B's second takeover");
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let left = b.leave();
    t = settle(&mut a, &mut b, t);
    let mut next = next_a
        .map(|x| x.0)
        .or_else(|| last_start(&events(&mut a), OUT_A, OUT).map(|x| x.0))
        .expect("A runs OUT_A");
    let mut twice = Vec::new();
    for _ in 0..200 {
        if let Some((s, _)) = last_start(&events(&mut a), OUT_A, OUT) {
            next = next.max(s);
        }
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
}

/// Probe (passes): find 1's `Past` frame delivered in time and then
/// replayed (recorded, sent again) after B's second takeover is refused
/// by the receive filter (its counter is not fresh): B's leave stays
/// refused. Only a frame delayed, never delivered before, opens find 1.
#[test]
fn probe_a_replayed_past_frame_after_the_takeover_is_refused() {
    let (mut a, mut b, held, mut t) = b_has_a_final_of_in_a();
    for f in &held {
        b.handle_frame(t, f).expect("fresh");
    }
    t = cut(&mut a, &mut b, t);
    assert!(b.take_over() >= 1);
    for f in &held {
        assert!(b.handle_frame(t, f).is_err(), "a replay is refused");
    }
    assert!(b.remove_sa(IN_A, IN));
    t = cut(&mut a, &mut b, t + 10);
    t = settle(&mut a, &mut b, t);
    hand_everything_over(&mut b, |_, _| 0);
    settle(&mut a, &mut b, t);
    assert_eq!(b.leave(), Err(LeaveRefused::UnheardRuns(1)));
}
