//! A joiner asks again only for the bulk parts it is missing: after a
//! sending with parts lost, the next sending carries those parts alone
//! (re-sent whole, a bulk of 98 000 parts took about three whole sendings
//! at 1 % loss), unless the sender's entries changed since, when a new
//! bulk goes whole.

mod pair;

use std::collections::BTreeSet;

use espgate_wire::Direction;
use pair::*;

/// The first part `frames` carry: (bulk, part, parts).
fn first_part(frames: &[Vec<u8>]) -> (u64, u32, u32) {
    frames.iter().find_map(|f| part_of(f)).expect("a part")
}

/// The parts a resend request in `frames` lists, of which bulk.
fn resend_in(frames: &[Vec<u8>]) -> Option<(u64, Vec<u32>)> {
    frames.iter().find_map(|f| resend_of(f))
}

#[test]
fn after_parts_are_lost_only_those_are_sent_again() {
    let (mut a2, mut b, t, first) = a2_asks();
    let first_parts = parts_in(&first);
    let (bulk, _, parts) = first_part(&first);
    assert!(parts > 8, "the bulk spans {parts} frames");
    assert_eq!(
        first_parts.len(),
        parts as usize,
        "the first sending is whole"
    );
    assert!(bulk_end(first.last().expect("frames")));
    deliver_but(&mut a2, &first, &[2, 5], t);
    assert!(!a2.synced());
    assert_eq!(a2.stats().bulks_incomplete, 1);
    // The sending's last part is in: A2 asks at once, for parts 2 and 5.
    let ask = deliver(&mut a2, &mut b, t);
    assert_eq!(resend_in(&ask), Some((bulk, vec![2, 5])));
    let second: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t)).collect();
    assert_eq!(
        parts_in(&second),
        vec![(bulk, 2), (bulk, 5)],
        "B sends the lost parts alone"
    );
    assert!(bulk_end(second.last().expect("frames")), "part 5 ends it");
    assert_eq!(second.iter().filter(|f| bulk_end(f)).count(), 1);
    for f in &second {
        let _ = a2.handle_frame(t, f);
    }
    assert!(a2.synced());
    assert_eq!(a2.stats().bulks_incomplete, 1);
    // Synchronised on B's numbers: A2 runs its SAs from past B's copies.
    let t = settle(&mut a2, &mut b, t);
    assert!(a2.limit(OUT_A).is_some_and(|l| l > 0));
    assert!(a2.owns(EXTRA, Direction::Outbound), "{t}");
}

#[test]
fn a_lost_last_part_of_a_resending_is_asked_for_at_the_next_refresh() {
    let (mut a2, mut b, mut t, first) = a2_asks();
    let (bulk, _, parts) = first_part(&first);
    deliver_but(&mut a2, &first, &[1, 3, 4], t);
    deliver(&mut a2, &mut b, t);
    let second: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t)).collect();
    assert_eq!(parts_in(&second), vec![(bulk, 1), (bulk, 3), (bulk, 4)]);
    // Part 4, the sending's end, is lost: A2 cannot tell the sending is
    // over, and asks for what it lacks at its next refresh.
    deliver_but(&mut a2, &second, &[4], t);
    assert!(!a2.synced());
    assert!(resend_in(&deliver(&mut a2, &mut b, t)).is_none());
    let mut asked = None;
    while asked.is_none() && t < 1000 {
        t += 10;
        a2.handle_timeout(t);
        asked = resend_in(&deliver(&mut a2, &mut b, t));
    }
    assert_eq!(asked, Some((bulk, vec![4])));
    let third: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t)).collect();
    assert_eq!(parts_in(&third), vec![(bulk, 4)]);
    for f in &third {
        let _ = a2.handle_frame(t, f);
    }
    assert!(a2.synced(), "{parts} parts");
}

#[test]
fn entries_changed_since_the_first_sending_send_a_new_bulk_whole() {
    let (mut a2, mut b, t, first) = a2_asks();
    let (bulk, _, parts) = first_part(&first);
    deliver_but(&mut a2, &first, &[2], t);
    let ask: Vec<Vec<u8>> = std::iter::from_fn(|| a2.poll_transmit(t)).collect();
    // B gets another SA before the request comes: its bulk's entries
    // (and so its print) are no longer the ones part 2 was packed with.
    b.add_sa(EXTRA + N_EXTRA, Direction::Outbound, false, A);
    // Whatever the addition queued first goes; then the request.
    deliver(&mut b, &mut a2, t);
    assert_eq!(resend_in(&ask), Some((bulk, vec![2])));
    for f in &ask {
        let _ = b.handle_frame(t, f);
    }
    let second: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t)).collect();
    let sent = parts_in(&second);
    let numbers: BTreeSet<u64> = sent.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers.len(), 1, "one bulk: {sent:?}");
    let renumbered = *numbers.first().expect("a sending");
    assert!(renumbered > bulk, "a new bulk, not bulk {bulk}: {sent:?}");
    let (_, _, new_parts) = first_part(&second);
    assert!(new_parts >= parts);
    assert_eq!(sent.len(), new_parts as usize, "sent whole: {sent:?}");
    for f in &second {
        let _ = a2.handle_frame(t, f);
    }
    assert!(a2.synced());
}
