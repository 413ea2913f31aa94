//! A node whose packet flow failed (a data port lost its link): its
//! frames say so, it hands the SAs it runs to its peer exactly (as a
//! drain does, with no goodbye), and the peer hands it nothing until the
//! flow works again; then the peer's exact failback brings them home.

mod pair;

use espgate_mirror::{HandOverRefused, Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

const OUT: Direction = Direction::Outbound;

/// A and B synchronised, each running its own SAs; A's outbound SA sent
/// up to 1250, reported.
fn running() -> (Mirror, Mirror, u64) {
    let (mut a, mut b, t) = synced_pair();
    let t = a_sends_up_to(&mut a, &mut b, t, 1250);
    events(&mut a);
    events(&mut b);
    (a, b, t)
}

#[test]
fn a_failed_flow_moves_the_sas_exactly_and_the_failback_waits_until_it_works() {
    let (mut a, mut b, mut t) = running();
    a.set_flow_failed(true);
    t = settle(&mut a, &mut b, t);
    assert!(a.flow_failed() && b.peer_flow_failed());
    assert!(events(&mut b).contains(&MirrorEvent::PeerFlow { failed: true }));
    // B hands nothing to A meanwhile: not its own SAs in a drain, ...
    assert_eq!(b.stop(OUT_B, OUT), Err(HandOverRefused::PeerFlowFailed));
    // ... and, once A handed its SAs over, not A's in a failback.
    hand_everything_over(&mut a, |_, _| 1253);
    t = settle(&mut a, &mut b, t);
    assert!(a.drain_sas().is_empty(), "A runs nothing");
    let evs = events(&mut b);
    assert_eq!(starts_in(&evs, OUT_A, OUT), vec![1254], "no jump");
    assert!(b.owns(OUT_A, OUT) && b.owns(OUT_B, OUT));
    let back = b.failback_sas();
    assert!(back.contains(&(OUT_A, OUT)), "held for A: {back:?}");
    assert_eq!(b.stop(OUT_A, OUT), Err(HandOverRefused::PeerFlowFailed));
    // B sends OUT_A on from there.
    b.outbound_progress(OUT_A, 1300, 0, 47);
    t = settle(&mut a, &mut b, t);
    // A's flow works again: B learns it, and fails back exactly.
    a.set_flow_failed(false);
    t = settle(&mut a, &mut b, t);
    assert!(!b.peer_flow_failed());
    assert!(events(&mut b).contains(&MirrorEvent::PeerFlow { failed: false }));
    for (spi, dir) in b.failback_sas() {
        b.stop(spi, dir).expect("A works again");
        let last = if spi == OUT_A { 1305 } else { 0 };
        b.hand_over_exact(spi, dir, last).expect("stopped");
    }
    settle(&mut a, &mut b, t);
    let evs = events(&mut a);
    assert_eq!(
        starts_in(&evs, OUT_A, OUT).last(),
        Some(&1306),
        "home, no jump"
    );
    assert!(a.owns(OUT_A, OUT) && !b.owns(OUT_A, OUT));
}

#[test]
fn a_peer_life_starts_with_its_flow_working() {
    let (mut a, mut b, t) = running();
    b.set_flow_failed(true);
    let t = settle(&mut a, &mut b, t);
    assert!(a.peer_flow_failed());
    // B restarts: its new life says nothing of a failure.
    drop(b);
    let mut b2 = node(B, 3, t + 100);
    settle(&mut a, &mut b2, t + 100);
    assert!(!a.peer_flow_failed());
}
