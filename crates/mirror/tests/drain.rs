//! A planned hand-over: SAs stopped on their workers, handed to the peer
//! with their exact final state, and the goodbye that ends a life heard
//! in full (an operator's drain); and the exact failback that brings them
//! home. The peer goes on from exactly where the worker stopped: no jump
//! outbound, no refusal inbound, and no lease or lost-life step waits on
//! the life that left.

mod pair;

use espgate_mirror::{HandOverRefused, LeaveRefused, Mirror, MirrorEvent, seal};
use espgate_wire::Direction;
use espgate_wire::mirror::{GoodbyeKind, MirrorHeader, MirrorRecord};
use pair::*;

const OUT: Direction = Direction::Outbound;
const IN: Direction = Direction::Inbound;

/// Where a freshly synchronised A starts its outbound SA (a jump past
/// nothing) and its inbound one (at the stored bound: nothing, 0).
const OUT_START: u64 = JUMP;
const IN_START: u64 = 0;

/// A and B synchronised, each running its own SAs; A's outbound SA sent
/// up to `a_seq` and its inbound SA accepted up to `a_top`, reported.
fn running(a_seq: u64, a_top: u64) -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    let evs = events(&mut a);
    assert_eq!(starts_in(&evs, OUT_A, OUT), vec![OUT_START]);
    // The inbound SA starts where it was added (window top 0): it does
    // not move, so its worker is not activated again; with nothing
    // acknowledged past its top it may accept nothing before a stall.
    assert_eq!(last_start(&evs, IN_A, IN), None);
    assert_eq!(a.inbound_limit(IN_A), Some(IN_START + 1));
    t = a_sends_up_to(&mut a, &mut b, t, a_seq);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (IN_START, a_top), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    (a, b, t)
}

/// `m` stops every SA a drain hands over, and its workers report `last`
/// for each: the hand-overs go.
fn drain_exactly(m: &mut Mirror, last: impl Fn(u32, Direction) -> u64) {
    let keys = m.drain_sas();
    for &(spi, dir) in &keys {
        m.stop(spi, dir)
            .expect("the peer is heard and synchronised");
        assert_eq!(m.limit_of(spi, dir), Some(0), "stopped: its limit is 0");
    }
    for (spi, dir) in keys {
        m.hand_over_exact(spi, dir, last(spi, dir))
            .expect("stopped, the peer heard");
    }
}

#[test]
fn a_drained_sa_goes_on_at_the_peer_from_exactly_where_the_worker_stopped() {
    let (mut a, mut b, t) = running(1250, 230);
    // The worker went on past its last report (to 1257 and 233) before
    // it stopped.
    drain_exactly(&mut a, |spi, _| if spi == OUT_A { 1257 } else { 233 });
    let evs = events(&mut a);
    assert!(
        evs.contains(&MirrorEvent::Deactivate {
            spi: OUT_A,
            dir: OUT
        }) && evs.contains(&MirrorEvent::Deactivate { spi: IN_A, dir: IN })
    );
    exchange(&mut a, &mut b, t + 1);
    let evs = events(&mut b);
    assert_eq!(
        starts_in(&evs, OUT_A, OUT),
        vec![1258],
        "outbound: the next number, no jump"
    );
    let (top, bitmap) = last_start(&evs, IN_A, IN).expect("B runs A's inbound SA");
    assert_eq!(top, 233, "inbound: the worker's own top");
    assert!(!refuses(64, top, &bitmap, 234), "the next packet passes");
    assert!(
        refuses(64, top, &bitmap, 233),
        "the last one accepted does not"
    );
    assert!(b.limit(OUT_A).unwrap() > 1258);
    // Inbound, B counts the exact top as acknowledged (A stored it): its
    // lease reaches the top and no further, so the next packet waits for
    // a stall's acknowledgement like any, and then passes.
    assert_eq!(b.inbound_limit(IN_A), Some(234));
    b.inbound_stalled(IN_A, 234);
    settle(&mut a, &mut b, t + 1);
    assert!(b.inbound_limit(IN_A).unwrap() > 234);
    assert!(!a.owns(OUT_A, OUT) && !a.owns(IN_A, IN));
}

#[test]
fn a_node_that_left_is_fenced_at_its_peer_and_its_next_life_moves_nothing() {
    let (mut a, mut b, t) = running(1250, 230);
    // A runs OUT_A and IN_A; B runs OUT_B. A drains and leaves.
    drain_exactly(&mut a, |spi, _| if spi == OUT_A { 1260 } else { 240 });
    assert_eq!(
        a.leave(),
        Err(LeaveRefused::Unconfirmed(2)),
        "not before B confirmed the hand-overs"
    );
    let t = settle(&mut a, &mut b, t);
    a.leave().expect("runs nothing, everything confirmed");
    let t = settle(&mut a, &mut b, t);
    assert!(a.left(), "B answered the goodbye");
    assert!(events(&mut a).contains(&MirrorEvent::Left));
    let evs = events(&mut b);
    assert!(evs.contains(&MirrorEvent::PeerLeft));
    // No lease waits on A: B's outbound SAs run unlimited, and its
    // inbound one's limit follows its own bound (the exact top, 240),
    // raised by a stall at once with no peer to acknowledge it.
    assert_eq!(b.limit(OUT_A), Some(u64::MAX));
    assert_eq!(b.inbound_limit(IN_A), Some(241));
    assert_eq!(b.limit(OUT_B), Some(u64::MAX));
    b.inbound_stalled(IN_A, 250);
    assert_eq!(b.inbound_limit(IN_A), Some(251));
    // A's later frames (its life's last heartbeats) do not revive it.
    let t = t + 10;
    while let Some(f) = a.poll_transmit(t) {
        let _ = b.handle_frame(t, &f);
    }
    assert!(!b.peer_alive());
    assert_eq!(a.limit_of(OUT_A, OUT), None);
    // B runs on; A's next life joins, and nothing of B's moves: that
    // life ran nothing unheard.
    b.outbound_progress(OUT_A, 1300, 0, 300);
    b.outbound_progress(OUT_B, 1050, 0, 50);
    events(&mut b);
    let mut a2 = node(A, 3, t);
    // B hears A's next life at its first frame: the lease returns, and
    // IN_A's bound (250, a stall's, reported to nobody) counts as
    // acknowledged: that life runs nothing before it holds a bulk that
    // carries it. (Counted from A's last acknowledgement, 240, IN_A would
    // wait until A's new life synchronised.)
    let first = a2.poll_transmit(t + 100).expect("a first frame");
    b.handle_frame(t + 100, &first).unwrap();
    assert!(b.peer_alive());
    assert_eq!(b.inbound_limit(IN_A), Some(251));
    let t = settle(&mut a2, &mut b, t + 100);
    assert!(a2.synced());
    let evs = events(&mut b);
    assert!(
        starts_in(&evs, OUT_A, OUT).is_empty()
            && starts_in(&evs, OUT_B, OUT).is_empty()
            && starts_in(&evs, IN_A, IN).is_empty(),
        "no lost-life steps after a goodbye: {evs:?}"
    );
    assert!(
        !a2.owns(OUT_A, OUT),
        "A's new life runs nothing handed to B"
    );
    // The exact failback: B stops what it holds for A and hands it home.
    let keys = b.failback_sas();
    assert_eq!(keys.len(), 2);
    for &(spi, dir) in &keys {
        b.stop(spi, dir).unwrap();
    }
    b.hand_over_exact(OUT_A, OUT, 1311).unwrap();
    b.hand_over_exact(IN_A, IN, 250).unwrap();
    exchange(&mut a2, &mut b, t + 1);
    let evs = events(&mut a2);
    assert_eq!(starts_in(&evs, OUT_A, OUT), vec![1312]);
    assert_eq!(last_start(&evs, IN_A, IN).map(|s| s.0), Some(250));
}

#[test]
fn a_goodbye_is_refused_while_anything_runs_and_a_stop_needs_a_synced_peer() {
    let (mut a, mut b, t) = running(1100, 150);
    assert_eq!(a.leave(), Err(LeaveRefused::Running(2)));
    // A stopped SA runs nothing and may be resumed past its worker.
    a.stop(OUT_A, OUT).unwrap();
    assert_eq!(a.limit(OUT_A), Some(0));
    a.resume(OUT_A, OUT, 1120);
    assert_eq!(starts_in(&events(&mut a), OUT_A, OUT), vec![1121]);
    assert!(a.limit(OUT_A).unwrap() > 1121);
    // B's silence: no stop.
    declare_dead(&mut a, t + 1000);
    assert_eq!(a.stop(IN_A, IN), Err(HandOverRefused::PeerNotHeard));
    assert_eq!(a.leave(), Err(LeaveRefused::PeerNotHeard));
    // Nor to a peer that has not synchronised: a new life of B.
    let mut b2 = node(B, 5, t + 1000);
    let f = b2.poll_transmit(t + 1001).expect("its bulk request");
    a.handle_frame(t + 1001, &f).unwrap();
    assert!(a.peer_alive());
    assert_eq!(a.stop(IN_A, IN), Err(HandOverRefused::PeerNotSynced));
    let _ = &mut b;
}

#[test]
fn a_goodbye_from_a_life_that_still_runs_an_sa_in_the_peers_view_is_a_crash() {
    let (mut a, mut b, t) = running(1100, 150);
    // A hands OUT_A over but B never hears it: B's view has A running
    // OUT_A (and IN_A). A may not leave (it waits for B's confirmation),
    // and a goodbye of A's life anyway (a bug; or A's key used by
    // someone on the link) is no whole account of that life.
    a.stop(OUT_A, OUT).unwrap();
    a.hand_over_exact(OUT_A, OUT, 1120).unwrap();
    mute(&mut a, t + 1);
    assert!(matches!(a.leave(), Err(LeaveRefused::Running(1))));
    let bye = seal(
        &key(),
        MirrorHeader {
            flags: 0,
            records: 0,
            node: A,
            epoch: 1,
            counter: 1_000_000,
            peer_epoch: 2,
        },
        &[MirrorRecord::Goodbye {
            kind: GoodbyeKind::Leaving,
        }],
    );
    events(&mut b);
    b.handle_frame(t + 2, &bye).expect("authentic, in order");
    assert!(!events(&mut b).contains(&MirrorEvent::PeerLeft));
    assert!(b.peer_alive(), "nothing of it taken in");
    assert!(
        sent(&mut b, t + 3)
            .iter()
            .flat_map(|f| records(f))
            .any(|r| matches!(
                r,
                MirrorRecord::Goodbye {
                    kind: GoodbyeKind::Refused
                }
            )),
        "the goodbye is refused"
    );
}
