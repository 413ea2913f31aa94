//! What the exhaustive exploration (`tests/explore/`) found on the
//! protocol, each as the shortest trace it printed, replayed here on two
//! real nodes with direct calls. Each is ignored with its reason until its
//! fix lands; the exploration's test of the same family then passes too.

use espgate_mirror::{InboundTakeover, Mirror, MirrorConfig, MirrorKey};
use espgate_wire::Direction;

const A: u32 = 1;
const B: u32 = 2;
/// Outbound, home A.
const OUT_A: u32 = 0x100;
/// Outbound, home B.
const OUT_B: u32 = 0x200;
/// Inbound, home A.
const IN_A: u32 = 0x300;
const JUMP: u64 = 8;

fn key() -> MirrorKey {
    MirrorKey::new(b"explore the mirror, 32 bytes....").unwrap()
}

/// The exploration's settings: interval 2, quantity 4, jump 8, a peer
/// dead after one missed heartbeat of 1 ms.
fn cfg(node: u32) -> MirrorConfig {
    MirrorConfig {
        node,
        peer: if node == A { B } else { A },
        interval: 2,
        quantity: 4,
        lease: true,
        takeover_jump: JUMP,
        takeover_jump_32: JUMP,
        inbound_interval: 2,
        inbound_ahead_ms: 10,
        inbound_grace: 2,
        inbound_takeover: InboundTakeover::Strict,
        heartbeat_ms: 1,
        dead_after: 1,
        refresh_ms: 2,
        max_frame: 1400,
    }
}

/// A node of the pair with its configured SAs.
fn node(me: u32, epoch: u64) -> Mirror {
    let mut m = Mirror::new(cfg(me), key(), epoch, 0);
    m.add_sa(OUT_A, Direction::Outbound, false, A);
    m.add_sa(OUT_B, Direction::Outbound, false, B);
    m.add_sa(IN_A, Direction::Inbound, false, A);
    m
}

/// Delivers everything each side has to send at `now`, both ways, until
/// quiet.
fn exchange(a: &mut Mirror, b: &mut Mirror, now: u64) {
    loop {
        let mut any = false;
        while let Some(f) = a.poll_transmit(now) {
            let _ = b.handle_frame(now, &f);
            any = true;
        }
        while let Some(f) = b.poll_transmit(now) {
            let _ = a.handle_frame(now, &f);
            any = true;
        }
        if !any {
            return;
        }
    }
}

/// Both nodes synchronised over a perfect link, as the exploration's root.
fn warm() -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (node(A, 1), node(B, 1));
    for t in 0..3 {
        exchange(&mut a, &mut b, t);
        a.handle_timeout(t);
        b.handle_timeout(t);
    }
    assert!(a.synced() && b.synced());
    (a, b, 2)
}

/// Leaves the pair alone over a perfect link for five ticks, then checks
/// that both views name one owner of `OUT_B` and exactly that node runs it.
fn assert_one_owner_of_out_b(a: &mut Mirror, b: &mut Mirror, mut t: u64) {
    for _ in 0..5 {
        t += 1;
        exchange(a, b, t);
        a.handle_timeout(t);
        b.handle_timeout(t);
    }
    let owner = |m: &Mirror| {
        m.views()
            .into_iter()
            .find(|v| v.spi == OUT_B && v.dir == Direction::Outbound)
            .map(|v| v.owner)
    };
    let (in_a, in_b) = (owner(a), owner(b));
    let owns = [
        a.owns(OUT_B, Direction::Outbound),
        b.owns(OUT_B, Direction::Outbound),
    ];
    assert!(
        in_a == in_b && owns[0] != owns[1],
        "owner in A's view {in_a:?}, in B's {in_b:?}; owns (A, B) {owns:?}"
    );
}

/// The exploration's trace: `A take_over; A remove_sa outB; A add_sa
/// outB` (`adds and removes during takeovers`, depth 3). A holds B's SA at
/// generation 1 and tells B so; the host deletes the SA on A and adds it
/// again before B hears of the takeover: A takes its home, B, as the
/// owner at generation 0, while B learns that A owns it at generation 1
/// and stops it. Left alone, the pair never agrees: neither runs it.
#[test]
fn an_sa_added_again_on_one_node_ends_with_one_owner() {
    let (mut a, mut b, t) = warm();
    assert_eq!(a.take_over(), 1);
    // The takeover goes out on the link.
    let in_flight: Vec<Vec<u8>> = std::iter::from_fn(|| a.poll_transmit(t)).collect();
    a.remove_sa(OUT_B, Direction::Outbound);
    a.add_sa(OUT_B, Direction::Outbound, false, B);
    for f in &in_flight {
        let _ = b.handle_frame(t, f);
    }
    assert_one_owner_of_out_b(&mut a, &mut b, t);
}

/// Find 1's other order: B confirms A's takeover before the host deletes
/// the SA on A and adds it again, so nothing of it is in flight. A's view
/// (B runs it, generation 0) and B's (A runs it, generation 1) differ, and
/// neither sends a record that would tell the other: A asks B what it
/// knows of the SA, and B's answer carries its view, which wins.
#[test]
fn an_sa_added_again_after_its_takeover_was_confirmed_ends_with_one_owner() {
    let (mut a, mut b, t) = warm();
    assert_eq!(a.take_over(), 1);
    exchange(&mut a, &mut b, t);
    assert!(!b.owns(OUT_B, Direction::Outbound), "B took A's change in");
    a.remove_sa(OUT_B, Direction::Outbound);
    a.add_sa(OUT_B, Direction::Outbound, false, B);
    assert_one_owner_of_out_b(&mut a, &mut b, t);
}
