//! No tunnel lost for good: after a failure, every SA has an owner that
//! can send, without an operator.

mod pair;

use espgate_mirror::{
    ALARM_AFTER_MS, ESN_REACH, MAX_TAKEOVER_JUMP, Mirror, MirrorConfig, MirrorEvent,
};
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

/// Found by the netns chaos (a node restarted while the host added an SA
/// again): an inbound SA added again, whose history this node holds with
/// no window (a history record carries none), began with a window of
/// every number it could ever hold seen — 1 024 words, an 8 KB state.
/// No frame can carry it: the mirror port dropped each of its states, and
/// the bulk part it went in by itself, so the peer's next life never
/// synchronised and ran nothing. Every frame fits `max_frame`.
#[test]
fn an_inbound_sa_added_again_over_a_history_without_a_window_fits_a_frame() {
    const IN_N: u32 = 0x2200;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    for m in [&mut a, &mut b] {
        m.add_sa(IN_N, Direction::Inbound, false, A);
    }
    let mut t = settle(&mut a, &mut b, 0);
    let top = a.inbound_limit(IN_N).unwrap() - 1;
    a.inbound_progress(IN_N, top, &[u64::MAX], 0, top);
    t = settle(&mut a, &mut b, t);
    for m in [&mut a, &mut b] {
        m.remove_sa(IN_N, Direction::Inbound);
    }
    t = settle(&mut a, &mut b, t);
    // A restarts: its next life learns the SA's history from B's bulk, a
    // value with no window.
    drop(a);
    let mut a2 = node(A, 3, t);
    t = settle(&mut a2, &mut b, t);
    assert!(a2.synced());
    // The host adds the SA again to both.
    for m in [&mut a2, &mut b] {
        m.add_sa(IN_N, Direction::Inbound, false, A);
    }
    let max = cfg(A).max_frame;
    for _ in 0..6 {
        t += 60;
        let (fa, fb) = exchange(&mut a2, &mut b, t);
        for f in fa.iter().chain(&fb) {
            assert!(f.len() <= max, "a {}-byte frame; max_frame {max}", f.len());
        }
    }
    assert!(a2.owns(IN_N, Direction::Inbound));
    let start = starts_in(&events(&mut a2), IN_N, Direction::Inbound);
    let stored = b.standby().get(IN_N, Direction::Inbound).unwrap();
    assert!(
        start.iter().all(|s| *s > top) && stored.value >= *start.last().unwrap(),
        "A2 starts IN_N at {start:?} (first life accepted up to {top}); B stores {}",
        stored.value
    );
}

/// The alarms a person needs: A's outbound SA waits at its limit while
/// the mirror link is down (no acknowledgement, no fence), and B's SA is
/// run by nobody while B is dead and no takeover was ordered. Each is told
/// once after a second, not before; the stall's end is told when the link
/// is back.
#[test]
fn an_sa_nobody_can_run_for_a_second_is_told() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    let limit = a.limit(OUT_A).unwrap();
    // A's worker used everything its limit allows and reports the stall;
    // from now on nothing of B's arrives.
    a.outbound_progress(OUT_A, limit - 1, 0, limit - 1);
    let early = alone(&mut a, t, t + ALARM_AFTER_MS - 100);
    let told = |evs: &[MirrorEvent], e: &MirrorEvent| evs.iter().filter(|x| *x == e).count();
    let stalled = MirrorEvent::Stalled {
        spi: OUT_A,
        dir: Direction::Outbound,
    };
    assert_eq!(told(&early, &stalled), 0, "not before a second: {early:?}");
    let later = alone(&mut a, t + ALARM_AFTER_MS, t + 3 * ALARM_AFTER_MS);
    assert_eq!(told(&later, &stalled), 1, "{later:?}");
    let orphaned = later
        .iter()
        .filter(|e| matches!(e, MirrorEvent::Orphaned { .. }))
        .collect::<Vec<_>>();
    assert_eq!(orphaned, [&MirrorEvent::Orphaned { sas: 1 }], "B's OUT_B");
    assert_eq!((a.stats().stall_alarms, a.stats().orphan_alarms), (1, 1));
    // B is back (the same life): its acknowledgement lifts A's limit.
    let t = settle(&mut a, &mut b, t + 3 * ALARM_AFTER_MS);
    assert!(a.limit(OUT_A).unwrap() > limit);
    let back = alone(&mut a, t, t + 200);
    let unstalled = MirrorEvent::Unstalled {
        spi: OUT_A,
        dir: Direction::Outbound,
    };
    assert_eq!(told(&back, &unstalled), 1, "{back:?}");
}

/// A dead peer's SAs taken over at once are nobody's orphans.
#[test]
fn a_dead_peer_whose_sas_were_taken_over_raises_no_alarm() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1);
    let evs = alone(&mut a, t + 100, t + 3 * ALARM_AFTER_MS);
    assert!(
        !evs.iter().any(|e| matches!(
            e,
            MirrorEvent::Orphaned { .. } | MirrorEvent::Stalled { .. }
        )),
        "{evs:?}"
    );
}

/// An outbound ESN SA homed on A.
const OUT_E: u32 = 0x1e00;

/// A pair whose takeovers jump the most a configuration allows, with
/// OUT_E; settled, and A has sent 1 000 packets on OUT_E. Returns the
/// first number past them too.
fn esn_pair() -> (Mirror, Mirror, u64, u64) {
    let c = |n| MirrorConfig {
        takeover_jump: MAX_TAKEOVER_JUMP,
        ..cfg(n)
    };
    let (mut a, mut b) = (node_from(c(A), 1, 0), node_from(c(B), 2, 0));
    for m in [&mut a, &mut b] {
        m.add_sa(OUT_E, Direction::Outbound, true, A);
    }
    let t = settle(&mut a, &mut b, 0);
    let start = started(&events(&mut a), OUT_E).expect("A runs OUT_E");
    a.outbound_progress(OUT_E, start + 999, 0, 1000);
    let t = settle(&mut a, &mut b, t);
    (a, b, t, start + 1000)
}

/// One failover cycle of OUT_E's home, both nodes alive: B takes it over
/// (and sends one packet on it, if `sends`), then hands it back. Returns
/// the events of both nodes, the time, and the number B sent.
fn failover_cycle(
    a: &mut Mirror,
    b: &mut Mirror,
    t: u64,
    sends: bool,
) -> (Vec<MirrorEvent>, u64, Option<u64>) {
    let mut evs = events(a);
    assert!(b.take_over() > 0);
    let t = settle(a, b, t);
    let taken = events(b);
    let sent = started(&taken, OUT_E).filter(|_| sends);
    if let Some(seq) = sent {
        b.outbound_progress(OUT_E, seq, 0, 1);
    }
    evs.extend(taken);
    let t = settle(a, b, t);
    assert!(b.hand_back() > 0);
    let t = settle(a, b, t);
    // The watching timer tells what is held.
    a.handle_timeout(t);
    b.handle_timeout(t);
    evs.extend(events(a));
    evs.extend(events(b));
    (evs, t, sent)
}

/// Failover cycles until OUT_E is held; its `BeyondReach` (start and
/// `sent_to`) and every other start activated up to then.
fn cycles_until_held(a: &mut Mirror, b: &mut Mirror, mut t: u64) -> ((u64, u64), Vec<u64>) {
    let mut starts = Vec::new();
    for _ in 0..20 {
        let (evs, now, _) = failover_cycle(a, b, t, false);
        t = now;
        for e in evs {
            match e {
                MirrorEvent::BeyondReach {
                    spi,
                    start,
                    sent_to,
                } => {
                    assert_eq!(spi, OUT_E);
                    assert_eq!(starts.pop(), Some(start), "the last start is told");
                    return ((start, sent_to), starts);
                }
                MirrorEvent::Activate { spi, start, .. } if spi == OUT_E => starts.push(start),
                _ => {}
            }
        }
    }
    panic!("OUT_E never held; started at {starts:?}");
}

/// Each failover cycle moves an idle ESN SA a jump or more past the last
/// number its far end saw; after a few, the far end's ESN inference would
/// place every new number in the wrong high half and fail its ICV, while
/// the pair saw nothing wrong. The start that lands `ESN_REACH` past the
/// last number sent (mirrored as `sent_to`) is told and held instead:
/// nothing was ever activated beyond reach untold, and the SA sends
/// nothing until it is rekeyed.
#[test]
fn an_idle_esn_sa_moved_beyond_its_far_ends_reach_is_held_and_told() {
    let (mut a, mut b, t, sent) = esn_pair();
    let ((start, sent_to), before) = cycles_until_held(&mut a, &mut b, t);
    assert_eq!(sent_to, sent, "the first number past the 1 000 sent");
    assert!(start >= sent_to + ESN_REACH);
    assert!(
        before.iter().all(|s| *s < sent + ESN_REACH),
        "activated beyond reach, untold: {before:?}"
    );
    let holder = if a.owns(OUT_E, Direction::Outbound) {
        &a
    } else {
        &b
    };
    assert_eq!(holder.limit(OUT_E), Some(0), "held: it sends nothing");
    assert_eq!(holder.stats().reach_alarms, 1);
}

/// An ESN SA that sends after each takeover keeps its far end in step:
/// the first packet of each run is reported and mirrored, so no number of
/// failover cycles holds it. A 32-bit SA is never held (its far end
/// infers nothing).
#[test]
fn an_esn_sa_that_sends_after_each_failover_stays_within_reach() {
    let (mut a, mut b, mut t, _) = esn_pair();
    let mut last = 0;
    for _ in 0..40 {
        let (evs, now, sent) = failover_cycle(&mut a, &mut b, t, true);
        t = now;
        last = sent.expect("B ran OUT_E");
        assert!(
            !evs.iter()
                .any(|e| matches!(e, MirrorEvent::BeyondReach { .. })),
            "{evs:?}"
        );
    }
    assert!(a.owns(OUT_E, Direction::Outbound));
    assert!(a.limit(OUT_E).unwrap() > 0, "OUT_E runs at home");
    assert!(a.limit(OUT_A).unwrap() > 0, "OUT_A runs at home");
    // Idle from here: held once it moved out of reach of B's last packet.
    let ((_, sent_to), _) = cycles_until_held(&mut a, &mut b, t);
    assert_eq!(sent_to, last + 1, "measured from the last packet sent");
}

/// Found by driving the host: a host restarted after a rekey pushes its
/// file, which lacks the SA the rekey added at run time. B, holding that
/// SA after A's failure, hands it back to A's next life, which does not
/// know it and ignores the hand-over: B no longer runs it, A never does,
/// and it stays blind for as long as A is heard. A node handed an SA it
/// does not have declines it, and the sender runs it again (past all it
/// stored, as a takeover).
#[test]
fn an_sa_handed_back_to_a_peer_that_lacks_it_runs_on_at_its_holder() {
    const OUT_R: u32 = 0x1700;
    // A's next life is configured from a file without OUT_R.
    let (a2, mut b, t) = handed_back_to_a2_lacking(OUT_R);
    assert!(!a2.owns(OUT_R, Direction::Outbound));
    assert!(
        b.owns(OUT_R, Direction::Outbound),
        "declined by A2: B runs it again"
    );
    assert!(b.limit(OUT_R).unwrap() > 1, "and may send on it");
    for (spi, dir) in [(OUT_A, Direction::Outbound), (IN_A, Direction::Inbound)] {
        assert!(
            a2.owns(spi, dir) && !b.owns(spi, dir),
            "the others went home"
        );
    }
    let evs = alone(&mut b, t, t + 3 * ALARM_AFTER_MS);
    assert!(
        !evs.iter().any(|e| matches!(e, MirrorEvent::Stalled { .. })),
        "{evs:?}"
    );
}

/// An outbound SA A gets at run time (a rekey's new SA).
const OUT_R: u32 = 0x1e01;

/// A rekey just before the peer's death: A adds an SA at run time and asks
/// B what it knows of it; the question is lost and B dies. A takes B over
/// and starts the SA without the answer, past anything B's life can have
/// done with it (three jumps past what A stores, which is nothing), and
/// once B is fenced, as the host orders, it sends. Before, it stayed
/// asking at limit 0 for as long as B was gone: the tunnel was down with
/// its gateway alive.
#[test]
fn an_sa_added_just_before_the_peers_death_runs_once_the_peer_is_taken_over_and_fenced() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    a.add_sa(OUT_R, Direction::Outbound, true, A);
    assert!(a.asking(OUT_R, Direction::Outbound));
    mute(&mut a, t);
    drop(b);
    declare_dead(&mut a, t + 1000);
    events(&mut a);
    assert_eq!(a.take_over(), 1, "B's OUT_B");
    assert!(!a.asking(OUT_R, Direction::Outbound));
    let start = started(&events(&mut a), OUT_R).expect("A starts OUT_R");
    assert!(
        start > 2 * JUMP,
        "OUT_R starts at {start}, within B's reach"
    );
    assert!(a.force_unleased().is_ok());
    events(&mut a);
    assert!(
        !usable(&a, OUT_R, start).is_empty(),
        "A runs OUT_R from {start} with limit {:?}",
        a.limit(OUT_R)
    );
}

/// An outbound SA of home B that the host adds at run time (the rekey of
/// OUT_B).
const OUT_B2: u32 = 0x1e02;

/// A rekey of B's tunnel during B's failover, the old SA deleted first
/// (the exhaustive exploration's find, once the takeover was ordered once
/// per failure): A took B's SAs over, the host deletes OUT_B on A and
/// then adds its successor. A holds none of B's SAs between the two, yet
/// it took them over in this failure: the new SA runs on A, as it does
/// when added before the delete. Before, it was parked for good (A no
/// longer held any of B's SAs, and the host orders one takeover per
/// failure).
#[test]
fn a_peers_sa_rekeyed_delete_first_during_its_failover_runs_at_the_survivor() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 1000);
    assert_eq!(a.take_over(), 1, "B's OUT_B");
    assert!(a.remove_sa(OUT_B, Direction::Outbound));
    a.add_sa(OUT_B2, Direction::Outbound, true, B);
    let start = started(&events(&mut a), OUT_B2).expect("A runs OUT_B2");
    assert!(a.owns(OUT_B2, Direction::Outbound));
    assert!(a.force_unleased().is_ok());
    assert!(!usable(&a, OUT_B2, start).is_empty());
}
