//! Reader33's finds in the failover on a failed packet flow (see each
//! test's comment for its trace), fixed since: an SA the peer's life
//! declined is not handed to that life again (`HandOverRefused::
//! PeerLacks`), and runs on here.

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use pair::*;

const OUT: Direction = Direction::Outbound;
/// An outbound SA, home A, configured on A only (B's life was started
/// from a file without it, or the host's add has not reached B yet).
const OUT_X: u32 = 0x1077;

/// What the mirror task's `flow_on` does each turn while this node's flow
/// has failed and the peer is synchronised with a working flow: it stops
/// every SA it runs (not already stopped) and hands each over exactly,
/// with the worker's final state (here: the last number the worker used,
/// `last`).
fn flow_on_turn(m: &mut Mirror, last: impl Fn(u32) -> u64) {
    if !m.flow_failed() || !m.peer_synced() || m.peer_flow_failed() {
        return;
    }
    let keys = m.drain_sas();
    let stopped: Vec<_> = keys
        .into_iter()
        .filter(|&(spi, dir)| m.stop(spi, dir).is_ok())
        .collect();
    for (spi, dir) in stopped {
        if m.hand_over_exact(spi, dir, last(spi)).is_err() {
            m.resume(spi, dir, last(spi));
        }
    }
}

/// A failed flow burns the sequence space of an SA the peer does not
/// have, one takeover jump per mirror round trip, for as long as the flow
/// stays failed (no deadline, unlike a drain's).
///
/// 1. A runs OUT_X (home A), which B's life does not have; the pair is
///    synchronised. A's worker has sent OUT_X up to 5.
/// 2. A's flow fails. `flow_on` stops every SA A runs (`drain_sas`, with
///    no regard for whether the peer has it: `may_hand_over` does not ask)
///    and hands each over exactly, OUT_X too.
/// 3. B declines OUT_X (it has no such SA). A, still synchronised, takes
///    it back (`declined`: `take`), a takeover from what it stored, one
///    jump (`restart_point`) past it: OUT_X runs at A again, at 2399
///    (JUMP is 1000 here).
/// 4. Next turn of `flow_on`: OUT_X is in `drain_sas` again and not
///    stopped: stopped, handed over, declined, taken back one jump
///    further: 3798, 5197, ... With the real takeover_jump_32 (2^24), a
///    32-bit SA's whole space (2^32) is gone after 256 round trips,
///    well under a second on a LAN; every round is also an outage of the
///    SA (parked, handed over, refused, restarted).
///
/// The docs promise a failed flow moves SAs "with its exact state: no
/// jump"; an SA the peer cannot take should just run on here (as every
/// SA does while the peer cannot take anything). The dataplane's own
/// `flow_on` does exactly this loop (see
/// `reader33_a_failed_flow_hands_over_and_takes_back_a_declined_sa_in_a_loop`
/// in crates/dataplane/src/mirror_task.rs).
#[test]
fn reader33_a_failed_flow_jumps_an_sa_the_peer_declines_again_and_again() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    a.add_sa(OUT_X, OUT, false, A);
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced() && a.peer_synced());
    assert!(a.owns(OUT_X, OUT));
    a.outbound_progress(OUT_X, 5, 500, 5);
    t = settle(&mut a, &mut b, t);
    events(&mut a);
    let mut last_x = 5;
    a.set_flow_failed(true);
    t = settle(&mut a, &mut b, t);
    assert!(b.peer_flow_failed());
    let mut starts = Vec::new();
    for _ in 0..6 {
        flow_on_turn(&mut a, |spi| if spi == OUT_X { last_x } else { 0 });
        t = settle(&mut a, &mut b, t);
        let evs = events(&mut a);
        if let Some(&s) = starts_in(&evs, OUT_X, OUT).last() {
            starts.push(s);
            last_x = s; // the worker sent one packet at its new start
            a.outbound_progress(OUT_X, s, 0, 1);
        }
    }
    assert!(a.owns(OUT_X, OUT), "B cannot run it: A does");
    // The first hand-over cannot know B lacks it: declined, OUT_X comes
    // back once, a jump further. Not again while B's life runs.
    assert!(
        starts.len() <= 1,
        "OUT_X restarted again and again, a jump further each time: {starts:?}"
    );
}
