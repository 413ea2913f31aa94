//! What a thirtieth fresh reader found against 969b768 (the planned drain
//! and exact failback: `stop`, `hand_over_exact`, `resume`, `leave` and
//! the goodbye), each fixed since, and an attack that held until the fix
//! of its first find changed what holds.

mod pair;

use espgate_mirror::{HandOverRefused, Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

const OUT: Direction = Direction::Outbound;
const IN: Direction = Direction::Inbound;

/// A and B synchronised, each running its own SAs; A's outbound SA sent
/// up to `a_seq`, reported and acknowledged.
fn running(a_seq: u64) -> (Mirror, Mirror, u64) {
    let (mut a, mut b, t) = synced_pair();
    let t = a_sends_up_to(&mut a, &mut b, t, a_seq);
    events(&mut a);
    events(&mut b);
    (a, b, t)
}

/// Find 1 (a number used twice). A drains and says goodbye; B takes it in
/// (answers *heard*) and from then on runs A's SAs with no lease (A's
/// life is fenced); the link is cut right then, so A never gets the
/// answer: A is `gone` and stays up, B runs OUT_A far past anything A
/// heard of. B then dies (memory lost, no state directory) and its next
/// life B2 comes up while A is still there: A is B2's only memory. A
/// treats B2 as any new life (lost-life steps of a peer it never fenced:
/// two jumps), serves it a bulk of its stale values, and B2 restarts
/// OUT_A a jump past those: into the numbers B1 used without a lease
/// (1261..6262; B2 starts at 4660). Once synchronised, B2's view (A's)
/// names A owner of nothing, so B2 takes A's goodbye in too and runs
/// unleased as well. In the node, A stops once its drain's deadline
/// (3 s) passes unanswered, so B must crash and come back within that.
///
/// A life that said goodbye holds no memory the pair may build on: the
/// peer may have run everything past it unleased. It should not serve a
/// bulk (nor take a refusal from a later life of the peer as leave to run
/// on).
#[test]
fn a_gone_life_does_not_seed_the_peers_next_life_with_stale_values() {
    let (mut a, mut b, t) = running(1250);
    hand_everything_over(&mut a, |spi, _| if spi == OUT_A { 1260 } else { 240 });
    let mut t = settle(&mut a, &mut b, t);
    a.leave().expect("runs nothing, everything confirmed");
    // A's goodbye reaches B; B's answer (and all B sends after) is lost.
    t += 10;
    deliver(&mut a, &mut b, t);
    t += 10;
    deliver(&mut a, &mut b, t);
    assert!(a.gone(), "the goodbye went");
    assert!(events(&mut b).contains(&MirrorEvent::PeerLeft));
    mute(&mut b, t);
    assert!(!a.left(), "the answer was lost");
    assert_eq!(b.limit(OUT_A), Some(u64::MAX), "no lease waits on A");
    let b_start = 1261;
    // B1 runs OUT_A without a lease, its reports lost in the cut.
    let b_last = b_start + 5 * JUMP;
    for s in (b_start..=b_last).step_by(OUT_INTERVAL as usize) {
        b.outbound_progress(OUT_A, s, 0, s - b_start + 1);
        mute(&mut b, t);
    }
    let b1_used = b_start..b_last + 1;
    // A alone meanwhile (B silent), still up: gone, not heard.
    let evs = alone(&mut a, t, t + 500);
    assert!(evs.contains(&MirrorEvent::PeerDead));
    drop(b);
    // B's next life; the link is back.
    t += 600;
    let mut b2 = node(B, 7, t);
    t = settle(&mut a, &mut b2, t);
    t = settle(&mut a, &mut b2, t);
    // A said goodbye: it serves no bulk (B1 may have run its SAs
    // unleased, unheard), and no refusal of B2's brings it back.
    assert!(a.gone());
    assert!(!b2.synced(), "B2 synchronised from A, the life that left");
    let evs = events(&mut b2);
    let start = starts_in(&evs, OUT_A, OUT).last().copied();
    let _ = t;
    assert!(
        start.is_none_or(|s| s >= b1_used.end || usable(&b2, OUT_A, s).is_empty()),
        "B2 may send OUT_A from {start:?}, inside {b1_used:?} which B1 used unleased"
    );
}

/// An outbound SA of home A added at run time on A only (B's host has
/// not got it).
const ONLY_A: u32 = 0x4000;

/// Find 2 (an SA left running nowhere). An exact hand-over of an SA the
/// peer does not have is not declined: `ownership` answers a record of an
/// SA it lacks with `Declined` only for `Change` and `Handover`, not
/// `Exact`. A runs ONLY_A (added on A, not on B); A drains: ONLY_A is
/// handed over exactly, B ignores the record, and A's view has B run it,
/// blind, unconfirmed. A's goodbye is refused (unconfirmed), its drain
/// times out and the node runs on, but ONLY_A runs on neither node for as
/// long as B is heard (a blind SA is taken back only from a silent peer).
/// A `Handover` of it (the crash-style failback) is declined and taken
/// back (`declined`).
#[test]
fn an_exact_hand_over_of_an_sa_the_peer_lacks_is_declined_and_runs_again() {
    let (mut a, mut b, t) = running(1100);
    a.add_sa(ONLY_A, OUT, false, A);
    let t = settle(&mut a, &mut b, t);
    assert!(a.owns(ONLY_A, OUT) && !a.asking(ONLY_A, OUT));
    assert!(a.limit(ONLY_A).unwrap() > 1, "ONLY_A runs on A");
    events(&mut a);
    hand_everything_over(&mut a, |spi, _| match spi {
        OUT_A => 1110,
        ONLY_A => 5,
        _ => 200,
    });
    let mut t = t;
    for _ in 0..5 {
        t = settle(&mut a, &mut b, t);
    }
    assert!(a.peer_alive() && b.peer_alive());
    assert!(
        a.owns(ONLY_A, OUT) || b.owns(ONLY_A, OUT),
        "ONLY_A runs nowhere: A's views {:?}; A's leave: {:?}",
        a.views()
            .into_iter()
            .filter(|v| v.spi == ONLY_A)
            .collect::<Vec<_>>(),
        a.leave()
    );
}

/// An outbound SA of home B that B's host adds at run time (a rekey on B).
const NEW_B: u32 = 0x5000;

/// Find 3 (an SA left running nowhere). B adds an SA at run time (a
/// rekey) while A's goodbye is on its way: B asks A what it knows of it
/// and runs it at limit 0 until A answers (`asking`). The goodbye lands
/// first; from then on `handle_frame` keeps only goodbye records of A's
/// life, so A's answer (and every answer to B's questions asked again)
/// is dropped. Nothing ends the question: `goodbye_received` does not
/// start the SAs still asking (as `take_over` does for a silent peer
/// with `begin_unanswered`, and as `add_sa_with` does for an add made
/// after the goodbye), and no `PeerDead` comes for a life that left
/// (the host orders no takeover). NEW_B stays at limit 0 on B, the only
/// node that runs anything, until A's next life answers.
#[test]
fn an_sa_added_while_the_peers_goodbye_is_on_its_way_runs() {
    let (mut a, mut b, t) = running(1100);
    hand_everything_over(&mut a, |spi, _| if spi == OUT_A { 1110 } else { 200 });
    let mut t = settle(&mut a, &mut b, t);
    a.leave().expect("runs nothing, everything confirmed");
    // A's goodbye goes (with its next heartbeat), not yet delivered.
    let mut bye = Vec::new();
    while !a.gone() {
        t += 10;
        bye.extend(sent(&mut a, t));
    }
    // B's host adds NEW_B meanwhile: B asks A.
    b.add_sa(NEW_B, OUT, false, B);
    assert!(b.asking(NEW_B, OUT));
    for f in &bye {
        let _ = b.handle_frame(t, f);
    }
    assert!(events(&mut b).contains(&MirrorEvent::PeerLeft));
    for _ in 0..5 {
        t = settle(&mut a, &mut b, t);
        b.handle_timeout(t);
    }
    let evs = events(&mut b);
    assert!(!evs.contains(&MirrorEvent::PeerDead));
    assert!(a.left(), "A heard B's answer and stops");
    drop(a);
    for now in (t..t + 2000).step_by(10) {
        b.handle_timeout(now);
        mute(&mut b, now);
    }
    assert!(
        b.limit(NEW_B).unwrap_or(0) > 1,
        "NEW_B runs nowhere: B owns it (asking: {}) at limit {:?}, A left",
        b.asking(NEW_B, OUT),
        b.limit(NEW_B)
    );
}

/// An outbound SA of home A that is deleted and added again (the same
/// SPI and key: its history must keep it past its earlier numbers).
const AGAIN: u32 = 0x6000;

/// Find 4 (a number used twice). An SA added at run time runs nothing
/// until the peer says what it knows of it (`asking`): its mirror state
/// is a placeholder (next number 1), not a run past every earlier use.
/// `stop` and `hand_over_exact` accept it all the same (a drain hands
/// over every owned SA, asking ones included), and the exact bound is the
/// placeholder's: 1. The receiver starts exactly there, "whatever its
/// standby table says", which here is the SA's history: 1..=3000 were
/// used before the delete.
///
/// Sequence: A runs AGAIN to 3000; the host deletes it on both nodes
/// (its history stays on both) and adds it again on both; A asks B; an
/// operator drains A before the answer: AGAIN (asking, limit 0) stops,
/// its worker reports nothing sent, and it goes to B exactly at 1. Once
/// the frame is in, B's worker may send 1..601 (the exact start counts as
/// acknowledged); later records move AGAIN on to 5000, too late.
#[test]
fn an_sa_still_asking_is_not_handed_over_below_its_history() {
    let (mut a, mut b, mut t) = running(1100);
    for m in [&mut a, &mut b] {
        m.add_sa(AGAIN, OUT, false, A);
    }
    t = settle(&mut a, &mut b, t);
    let start = starts_in(&events(&mut a), AGAIN, OUT)
        .last()
        .copied()
        .expect("A runs AGAIN");
    let mut seq = start;
    while seq < 3000 {
        seq = (seq + 90).min(3000).min(a.limit(AGAIN).unwrap() - 1);
        a.outbound_progress(AGAIN, seq, 0, seq);
        t = settle(&mut a, &mut b, t);
    }
    for m in [&mut a, &mut b] {
        assert!(m.remove_sa(AGAIN, OUT));
    }
    t = settle(&mut a, &mut b, t);
    assert!(b.standby().get(AGAIN, OUT).unwrap().value >= 3000);
    for m in [&mut a, &mut b] {
        m.add_sa(AGAIN, OUT, false, A);
    }
    assert!(a.asking(AGAIN, OUT));
    assert_eq!(a.limit(AGAIN), Some(0), "asking: it runs nothing yet");
    events(&mut a);
    events(&mut b);
    // The drain, before B's answer: the worker used nothing (last 0).
    // AGAIN may not stop while it asks (its state is a placeholder).
    for (spi, dir) in a.drain_sas() {
        let stopped = a.stop(spi, dir);
        if spi == AGAIN {
            assert_eq!(stopped, Err(HandOverRefused::Asking));
        } else {
            stopped.expect("B heard and synchronised");
        }
    }
    for (spi, dir) in a.stopped() {
        let last = match (spi, dir) {
            (OUT_A, _) => 1110,
            (AGAIN, _) => 0,
            _ => 200,
        };
        a.hand_over_exact(spi, dir, last).expect("stopped");
    }
    // A's frames reach B one by one; after each, what B's worker may
    // send on AGAIN.
    t += 10;
    let mut ranges = Vec::new();
    let mut at = None;
    for f in sent(&mut a, t) {
        let _ = b.handle_frame(t, &f);
        if let Some(s) = starts_in(&events(&mut b), AGAIN, OUT).last() {
            at = Some(*s);
        }
        if let Some(s) = at {
            ranges.push(usable(&b, AGAIN, s));
        }
    }
    // AGAIN stays A's, asking; should it reach B it is past its history.
    assert!(a.owns(AGAIN, OUT) || !ranges.is_empty());
    let early = ranges.first().cloned().unwrap_or(0..0);
    assert!(
        early.is_empty() || early.start > 3000,
        "B's worker may send AGAIN {early:?} once the exact hand-over is in \
         (then {ranges:?}): 1..=3000 went out before the delete"
    );
}

/// Find 5 (numbers used and packets accepted twice). `stop` and
/// `hand_over_exact` (`may_hand_over`) ask that the *peer* has
/// synchronised, not this node: a node that restarted and has not had
/// its bulk sync yet owns its home SAs at their placeholders (outbound
/// next number 1, inbound top 0: it "does not know how far they went
/// before it restarted") and hands them over exactly from there. The
/// dataplane's drain (and the SIGTERM drain) checks the same two
/// things, so a node stopped right after it started hands its SAs to
/// the peer from 1.
///
/// Sequence: A runs OUT_A to 1250 and IN_A to 230, reported; A restarts
/// (memory lost) and its new life hears B, which has synchronised, before
/// B declares A dead; an operator drains A2 at once: its workers used
/// and accepted nothing (last 0). B starts OUT_A at 1 and IN_A at 0.
#[test]
fn a_node_that_has_not_synchronised_hands_nothing_over_exactly() {
    let (mut a, mut b, t) = running(1250);
    // IN_A accepted up to 230 on A (from its start at 0), reported.
    let mut t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    drop(a);
    t += 5;
    let mut a2 = node(A, 9, t);
    // A2's first frames (its bulk request) reach B; B's reach A2.
    // (The bulk's frames are lost, or not yet built: A2 hears B's
    // heartbeat only.)
    deliver(&mut a2, &mut b, t);
    for f in sent(&mut b, t) {
        if part_of(&f).is_none() {
            let _ = a2.handle_frame(t, &f);
        }
    }
    if !a2.peer_alive() {
        t += 10;
        for f in sent(&mut b, t) {
            if part_of(&f).is_none() {
                let _ = a2.handle_frame(t, &f);
            }
        }
    }
    assert!(
        a2.peer_alive() && a2.peer_synced() && !a2.synced(),
        "{} {} {}",
        a2.peer_alive(),
        a2.peer_synced(),
        a2.synced()
    );
    events(&mut b);
    for (spi, dir) in a2.drain_sas() {
        assert_eq!(
            a2.stop(spi, dir),
            Err(HandOverRefused::NotSynced),
            "a placeholder is no state to hand over"
        );
    }
    assert!(a2.stopped().is_empty());
    // A2's frames reach B (B's bulk to A2 is lost on the way back).
    t += 10;
    deliver(&mut a2, &mut b, t);
    let evs = events(&mut b);
    let out = starts_in(&evs, OUT_A, OUT);
    let inb = last_start(&evs, IN_A, IN);
    assert!(
        out.iter().all(|s| *s > 1250) && inb.as_ref().is_none_or(|(s, _)| *s >= 230),
        "B starts OUT_A at {out:?} (1..=1250 went out under A's first life) \
         and IN_A at {:?} (1..=230 accepted); B's worker may send {:?}, accept {:?}",
        inb.as_ref().map(|s| s.0),
        usable(&b, OUT_A, out.last().copied().unwrap_or(1)),
        inb.as_ref().map(|s| acceptable(&b, IN_A, s.0))
    );
}

/// A node of the pair with only OUT_B (home B) configured: A runs
/// nothing of its own.
fn b_only(me: u32, epoch: u64, now: u64) -> Mirror {
    let mut m = Mirror::new(cfg(me), key(), epoch, now);
    m.add_sa(OUT_B, OUT, false, B);
    m
}

/// Was "holds" (a new life of the peer synchronised from a node that had
/// said goodbye); the fix of find 1 changes it. A runs nothing (every
/// SA's home is B) and says goodbye; the frame is lost and B crashes.
/// A cannot know whether its goodbye was taken in (and its SAs run
/// without leases since, unheard), so it serves B's next life no bulk:
/// B2 runs nothing, waiting for a life of A that can account for the
/// SAs. (A stops once its drain is over; B2 then synchronises with A's
/// next life, or, both memories lost, the SAs need new keys: the pair's
/// documented limit.)
#[test]
fn a_new_life_of_the_peer_gets_no_bulk_from_a_node_that_said_goodbye() {
    let (mut a, mut b) = (b_only(A, 1, 0), b_only(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced() && b.owns(OUT_B, OUT));
    let start = starts_in(&events(&mut b), OUT_B, OUT)[0];
    let mut seq = start;
    while seq < start + 500 {
        seq = (seq + 90).min(b.limit(OUT_B).unwrap() - 1);
        b.outbound_progress(OUT_B, seq, 0, seq);
        t = settle(&mut a, &mut b, t);
    }
    a.leave().expect("A runs nothing");
    while !a.gone() {
        t += 10;
        mute(&mut a, t); // the goodbye is lost
    }
    drop(b);
    t += 20;
    let mut b2 = b_only(B, 7, t);
    for _ in 0..4 {
        t = settle(&mut a, &mut b2, t);
    }
    assert!(
        !b2.synced(),
        "B2 synchronised from a life that said goodbye"
    );
    assert_eq!(b2.limit(OUT_B), Some(0), "B2 runs nothing");
}
