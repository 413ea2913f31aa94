//! `inbound_grace`: how far an inbound SA may run when nothing can
//! acknowledge it, and what a fence of the peer then costs.

use super::*;

const IN: u32 = 0x2000;

/// The pair's nodes with `inbound_grace` set.
fn pair_with_grace(grace: u64) -> (Mirror, Mirror) {
    let node = |me, epoch| {
        let mut m = Mirror::new(
            MirrorConfig {
                inbound_grace: grace,
                ..cfg(me, if me == A { B } else { A }, 0)
            },
            key(),
            epoch,
            0,
        );
        m.add_sa(SPI, Direction::Outbound, false, A);
        m.add_sa(SPI + 1, Direction::Outbound, false, B);
        m.add_sa(IN, Direction::Inbound, false, A);
        m
    };
    (node(A, 1000), node(B, 2000))
}

/// A runs `IN` to top 60 and B stores its bound; A dies, B declares it
/// dead and takes `IN` over: where B starts it.
fn crash(grace: u64) -> (Mirror, u64, u64) {
    let (mut a, mut b) = pair_with_grace(grace);
    exchange(&mut a, &mut b, 0);
    a.inbound_progress(IN, 60, &[u64::MAX], 0, 60);
    exchange(&mut a, &mut b, 1);
    let stored = b.standby().get(IN, Direction::Inbound).unwrap().value;
    b.handle_timeout(40);
    assert!(!b.peer_alive());
    b.take_over();
    let start = *starts(&mut b, IN).last().expect("B runs IN");
    assert_eq!(start, stored, "a takeover starts at the stored bound");
    (b, start, stored)
}

/// With no grace, a takeover from a silent peer accepts nothing the peer
/// did not acknowledge: a lost life of the peer accepted nothing unheard,
/// so the host's fence that follows moves nothing, and the SA runs on
/// from its start without leases: no fresh packet refused.
#[test]
fn with_no_grace_a_fence_after_a_takeover_refuses_no_fresh_packet() {
    let (mut b, start, _) = crash(0);
    assert_eq!(
        b.inbound_limit(IN),
        Some(start + 1),
        "nothing accepted unacknowledged before the fence"
    );
    b.force_unleased().unwrap();
    assert!(
        starts(&mut b, IN).iter().all(|s| *s <= start),
        "the fence moves nothing"
    );
    b.inbound_stalled(IN, start + 1);
    assert!(
        b.inbound_limit(IN).unwrap() > start + 1,
        "unleased, the SA takes the far end's next packet"
    );
}

/// With a grace (here 100, the interval), the taker accepts that far
/// unacknowledged, and so may have any lost life of the peer: the fence
/// moves the SA past a lost life's reach, four graces past its start.
#[test]
fn with_a_grace_a_fence_moves_past_what_a_lost_life_could_accept() {
    let (mut b, start, _) = crash(100);
    assert_eq!(b.inbound_limit(IN), Some(start + 100 + 1));
    b.force_unleased().unwrap();
    let moved = *starts(&mut b, IN).last().expect("the fence moves IN");
    assert_eq!(moved, start + 4 * 100);
}

/// The host orders the fence again when its answer is lost: a life fenced
/// already and silent since moves nothing a second time.
#[test]
fn a_second_fence_of_the_same_life_moves_nothing() {
    let (mut b, _, _) = crash(100);
    b.force_unleased().unwrap();
    events(&mut b);
    let limit = b.inbound_limit(IN);
    b.force_unleased().unwrap();
    assert!(starts(&mut b, IN).is_empty(), "nothing moved");
    assert_eq!(b.inbound_limit(IN), limit);
}
