//! reader18: SAs handed back to a peer and taken over again while the
//! peer is silent ("blind" takeovers, `take_blind`), and what held.

mod pair;

use espgate_mirror::MirrorEvent;
use espgate_wire::Direction;
use pair::*;

/// The last start of outbound `spi` among `evs`.
fn started(evs: &[MirrorEvent], spi: u32) -> Option<u64> {
    starts_in(evs, spi, Direction::Outbound).last().copied()
}

/// Find 1 (liveness). A hands OUT_B back to B2, B2 runs it and dies
/// before its confirmation reaches A; A (takeover: auto, no host) takes
/// the blind SA over at the stored mark plus three jumps, but a start
/// counts as acknowledged only up to two jumps past what B2's life is
/// known to store (`acknowledged`), which is about the same mark: A's
/// limit lies a jump *below* its start. A owns OUT_B and may send
/// nothing on it until B's next life acknowledges a lease or the host
/// fences B; without a host (or with the fence refused or lost) the SA
/// runs nowhere, as it did before 5e1e7be. The takeover answers 1 and
/// `no_tunnel_lost` passes because it looks at the start only.
#[test]
#[ignore = "reader18, open (issue 15): a blind takeover starts past what a lost life of this node could be bounded by, so it sends only after a fence (the host orders one) or the peer's next life; a start two steps past the mark would leave slack but needs its own proof"]
fn a_blind_sa_taken_over_from_a_silent_peer_can_send() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    deliver(&mut a, &mut b2, t);
    let b2_start = started(&events(&mut b2), OUT_B).expect("B2 runs OUT_B");
    assert!(!usable(&b2, OUT_B, b2_start).is_empty());
    mute(&mut b2, t + 50);
    drop(b2);
    declare_dead(&mut a, t + 1000);
    events(&mut a);
    assert_eq!(a.take_over(), 1);
    let start = started(&events(&mut a), OUT_B).expect("activated");
    let limit = a.limit(OUT_B).unwrap();
    assert!(
        limit > start,
        "A runs OUT_B from {start} with limit {limit}: it can use nothing \
         (views {:?})",
        a.views()
    );
}

/// Find 1, the same with the hand-over itself lost (B2 never got it,
/// and died): A's blind takeover cannot send either.
#[test]
#[ignore = "reader18, open (issue 15): a blind takeover starts past what a lost life of this node could be bounded by, so it sends only after a fence (the host orders one) or the peer's next life; a start two steps past the mark would leave slack but needs its own proof"]
fn a_blind_sa_whose_hand_over_was_lost_can_send_once_taken_over() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    mute(&mut a, t);
    mute(&mut b2, t);
    drop(b2);
    declare_dead(&mut a, t + 1000);
    events(&mut a);
    assert_eq!(a.take_over(), 1);
    let start = started(&events(&mut a), OUT_B).expect("activated");
    let limit = a.limit(OUT_B).unwrap();
    assert!(
        limit > start,
        "A runs OUT_B from {start} with limit {limit}"
    );
}

/// Holds: a fence after the blind takeover (what `espgate host` orders)
/// lifts the limit, and the SA runs past all B2 could have used.
#[test]
fn a_blind_sa_taken_over_runs_once_the_peer_is_fenced() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    deliver(&mut a, &mut b2, t);
    let b2_start = started(&events(&mut b2), OUT_B).expect("B2 runs OUT_B");
    let used = usable(&b2, OUT_B, b2_start);
    mute(&mut b2, t + 50);
    drop(b2);
    declare_dead(&mut a, t + 1000);
    assert_eq!(a.take_over(), 1);
    events(&mut a);
    assert!(a.force_unleased().is_ok());
    let start = started(&events(&mut a), OUT_B).expect("moved by the fence");
    assert!(start >= used.end);
    assert_eq!(a.limit(OUT_B), Some(u64::MAX));
}

/// Holds: B2 is alive behind a cut link and runs OUT_B from the
/// hand-over's bound as far as its slack lets it; A takes it over blind
/// (B2 unheard) and starts past all of it; once the link heals, A's
/// higher generation wins, B2 stops and only A runs OUT_B, past B2's
/// final copy.
#[test]
fn a_split_brain_over_a_blind_sa_uses_no_number_twice() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    deliver(&mut a, &mut b2, t);
    let b2_start = started(&events(&mut b2), OUT_B).expect("B2 runs OUT_B");
    let used = usable(&b2, OUT_B, b2_start);
    b2.outbound_progress(OUT_B, used.end - 1, 0, used.end - b2_start);
    // The link is cut: neither hears the other.
    mute(&mut b2, t + 50);
    mute(&mut a, t + 50);
    declare_dead(&mut a, t + 1000);
    declare_dead(&mut b2, t + 1000);
    events(&mut a);
    events(&mut b2);
    assert_eq!(a.take_over(), 1);
    assert!(b2.take_over() > 0, "B2 takes A's SAs over too");
    let a_start = started(&events(&mut a), OUT_B).expect("activated");
    assert!(a_start >= used.end);
    // Healed.
    let t2 = settle(&mut a, &mut b2, t + 2000);
    let _ = t2;
    assert!(a.owns(OUT_B, Direction::Outbound));
    assert!(!b2.owns(OUT_B, Direction::Outbound));
    let a_next = started(&events(&mut a), OUT_B).unwrap_or(a_start);
    assert!(a_next >= used.end);
}
