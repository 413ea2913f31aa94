//! No tunnel lost for good: after a failure, every SA has an owner that
//! can send, without an operator.

mod pair;

use espgate_mirror::MirrorEvent;
use espgate_wire::Direction;
use pair::*;

/// The last start of `spi` among `evs`.
fn started(evs: &[MirrorEvent], spi: u32) -> Option<u64> {
    starts_in(evs, spi, Direction::Outbound).last().copied()
}

/// A hands OUT_B back to B's next life, which gets the hand-over, runs
/// the SA as far as its limit lets it, and dies before its confirmation
/// reaches A. Before, A's takeover skipped OUT_B as blind (waiting for
/// B's word that never came): no node ran it until B restarted, with A
/// alive and its takeover answering 0. A peer that is not heard releases
/// it: A takes it over past anything B's life can have used.
#[test]
fn an_sa_handed_back_to_a_peer_that_dies_before_confirming_is_taken_over_again() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    // The hand-over reaches B2; nothing of B2's reaches A from now on.
    deliver(&mut a, &mut b2, t);
    let b2_start = started(&events(&mut b2), OUT_B).expect("B2 runs OUT_B");
    let used = usable(&b2, OUT_B, b2_start);
    assert!(!used.is_empty(), "B2 may send on OUT_B at once");
    b2.outbound_progress(OUT_B, used.end - 1, 0, used.end - b2_start);
    mute(&mut b2, t + 50);
    drop(b2);
    declare_dead(&mut a, t + 1000);
    events(&mut a);
    assert_eq!(
        a.take_over(),
        1,
        "the SA handed to a peer that died unconfirmed runs here again"
    );
    assert!(a.owns(OUT_B, Direction::Outbound));
    let start = started(&events(&mut a), OUT_B).expect("activated");
    assert!(
        start >= used.end,
        "A starts OUT_B at {start}; B2 may have used up to {}",
        used.end - 1
    );
}

/// While the peer is heard, an SA handed to it and not confirmed yet is
/// not taken back by an ordered takeover: the confirmation is on its way,
/// and the peer runs the SA.
#[test]
fn an_sa_handed_back_to_a_peer_that_is_heard_is_not_taken_back_before_it_confirms() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    deliver(&mut a, &mut b2, t);
    assert!(a.peer_alive());
    assert_eq!(a.take_over(), 0);
    assert!(!a.owns(OUT_B, Direction::Outbound));
}
