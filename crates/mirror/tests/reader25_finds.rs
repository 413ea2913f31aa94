//! What a twenty-fifth fresh reader found against 3122cc3 (a fence drops
//! the bulk built for the fenced life; `Peer::taken_over` lets a peer's SA
//! added during its failover run here though this node holds none of its
//! SAs), and the attacks it tried that held.

mod pair;

use espgate_mirror::{Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

/// An outbound SA of home B the host adds at run time (the rekey of
/// OUT_B, the old SA deleted first).
const OUT_B2: u32 = 0x2501;

/// The host deletes OUT_B on A and adds its successor OUT_B2 (home B):
/// whether A runs OUT_B2 then.
fn rekey_delete_first(a: &mut Mirror) -> bool {
    assert!(a.remove_sa(OUT_B, Direction::Outbound));
    a.add_sa(OUT_B2, Direction::Outbound, true, B);
    a.owns(OUT_B2, Direction::Outbound)
}

/// Reader25 find 1 (promise: no SA lost for good; the case 3122cc3 meant
/// to close, reopened by a peer heard for a moment).
///
/// Steps: B dies; A takes it over (the host's one order for the failure)
/// and fences it. B crash-loops: its next life B1 starts, A hears its
/// first frames (`heard`, a new life: `taken_over` is cleared, the fence
/// ends), and B1 dies before it synchronises. A declares it dead again;
/// the host orders nothing (B never came back synchronised, so for the
/// host the failure goes on: `espgate host` orders `take_over` at a
/// `Failed` step only). A still runs OUT_B. The host rekeys B's tunnel,
/// the old SA deleted first: A then holds none of B's SAs and no longer
/// took B over "since it last heard it", so OUT_B2 is not taken: it is
/// parked, run by nobody, for as long as B keeps crash-looping (the
/// tunnel down with its gateway A alive), exactly as the explorer's find
/// that 3122cc3 fixed. The same happens with a single delayed frame of
/// B's dead life arriving after the takeover (find 2).
///
/// What breaks: `heard` clears `taken_over` on any frame of a new life
/// (or after a death), though the failure the host ordered the takeover
/// for is not over; a life that never synchronised runs nothing, so it
/// takes nothing back. Fixed: the flag ends with the hand-back, not with
/// the first frame heard.
#[test]
fn a_crash_looping_peer_heard_once_leaves_its_rekeyed_sa_parked() {
    let (mut a, t) = a_alone_taken_over_and_fenced();
    let t1 = t + 100;
    let mut b1 = node(B, 5, t1);
    // B1's first frame (its bulk request) reaches A; A's answer is lost.
    let f = sent(&mut b1, t1);
    assert!(!f.is_empty());
    for f in &f {
        a.handle_frame(t1, f).expect("B1 heard");
    }
    mute(&mut a, t1);
    assert!(a.peer_alive());
    drop(b1);
    declare_dead(&mut a, t1 + 100);
    events(&mut a);
    assert_eq!(a.holding(), 1, "A still runs OUT_B");
    assert!(
        rekey_delete_first(&mut a),
        "OUT_B2 parked at A: B crash-loops, A holds none of its SAs, and \
         heard B1 once since its takeover; views: {:?}",
        a.views()
            .iter()
            .filter(|v| v.spi == OUT_B2)
            .collect::<Vec<_>>()
    );
}

/// Reader25 find 2 (promise: no SA lost for good): as find 1, with no
/// restart at all: a frame B sent just before it died is delayed on the
/// mirror link and reaches A after A declared B dead and took it over
/// (one heartbeat's delay past `dead_after`). A hears B again (its fence
/// ends, `taken_over` is cleared), then declares it dead again; the host,
/// whose B never answered again, orders nothing. A delete-first rekey of
/// B's tunnel leaves OUT_B2 parked at A for as long as B is down. Fixed
/// as find 1.
#[test]
fn a_delayed_frame_of_the_dead_peer_leaves_its_rekeyed_sa_parked() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    // B's last frames before it dies; the last one is delayed.
    let t0 = t + 10;
    let mut last = sent(&mut b, t0);
    assert!(!last.is_empty(), "B's heartbeat");
    let late = last.pop().expect("a frame");
    for f in &last {
        a.handle_frame(t0, f).expect("heard");
    }
    drop(b);
    declare_dead(&mut a, t0 + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    assert_eq!(a.force_unleased(), Ok(()));
    events(&mut a);
    a.handle_frame(t0 + 101, &late)
        .expect("the delayed frame is B's");
    assert!(a.peer_alive());
    declare_dead(&mut a, t0 + 200);
    events(&mut a);
    assert_eq!(a.holding(), 1, "A still runs OUT_B");
    assert!(
        rekey_delete_first(&mut a),
        "OUT_B2 parked at A after a delayed frame of B's dead life"
    );
}

/// Holds: the case 3122cc3 fixed, with the fence ordered after the rekey
/// rather than before; and hearing no one, A runs OUT_B2 and may send.
#[test]
fn holds_a_delete_first_rekey_before_the_fence_runs_at_the_survivor() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1);
    assert!(rekey_delete_first(&mut a));
    let (start, _) = last_start(&events(&mut a), OUT_B2, Direction::Outbound).expect("runs");
    assert!(a.force_unleased().is_ok());
    assert!(!usable(&a, OUT_B2, start).is_empty());
}

/// Holds (split brain, no fence): B is alive behind a cut link. B added
/// OUT_B2 at run time before the cut (A answered its question; A's host
/// adds OUT_B2 later) and sends on it as far as its limit lets it. A
/// declares B dead, takes OUT_B over, and the host deletes OUT_B on A and
/// then adds OUT_B2 there: `taken_over` makes A take it (two jumps past
/// the states of B it stored, never acknowledged since A lacked the SA).
/// What B may send and what A may send do not overlap; and B's own add of
/// an SA during the cut (asking a silent A) sends nothing.
#[test]
fn holds_a_peers_sa_taken_by_the_flag_passes_the_peers_split_brain_run() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    b.add_sa(OUT_B2, Direction::Outbound, true, B);
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(OUT_B2, Direction::Outbound));
    let b_start = 1u64;
    let b_limit = b.limit(OUT_B2).unwrap_or(0);
    // B sends up to its limit and reports it; A stores it.
    for seq in (b_start..b_limit.max(2)).step_by(50) {
        b.outbound_progress(OUT_B2, seq, seq, seq);
    }
    exchange(&mut a, &mut b, t);
    let b_used = b_start..b.limit(OUT_B2).unwrap_or(0).max(b_start);
    // The cut: B runs on alone.
    mute(&mut b, t);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    assert!(rekey_delete_first(&mut a), "A runs OUT_B2");
    let (a_start, _) = last_start(&events(&mut a), OUT_B2, Direction::Outbound).expect("runs");
    let a_usable = usable(&a, OUT_B2, a_start);
    assert!(!a_usable.is_empty(), "A sends on OUT_B2 from {a_start}");
    let b_usable = b_used.start..b.limit(OUT_B2).unwrap_or(0).max(b_used.start);
    assert!(
        overlap(&a_usable, &b_usable).is_empty(),
        "A may send {a_usable:?}, B {b_usable:?}"
    );
    // B, alone, adds another SA of its own: it asks a silent A and sends
    // nothing.
    const OUT_B3: u32 = 0x2502;
    b.handle_timeout(t + 100);
    assert!(!b.peer_alive());
    b.add_sa(OUT_B3, Direction::Outbound, true, B);
    let (s3, _) = last_start(&events(&mut b), OUT_B3, Direction::Outbound).unwrap_or((0, vec![]));
    assert!(usable(&b, OUT_B3, s3.max(1)).is_empty());
}

/// Holds: `taken_over` is cleared once the peer's next life is heard and
/// synchronises; after a hand-back to it and its death with no new order,
/// a peer's SA added is not taken (the flag is not stale).
#[test]
fn holds_the_flag_is_cleared_when_the_peer_returns_synchronised() {
    let (mut a, t) = a_alone_taken_over_and_fenced();
    let t1 = t + 100;
    let mut b1 = node(B, 5, t1);
    let t2 = settle(&mut a, &mut b1, t1);
    // B1 is the life after the fenced one: it may get SAs back.
    assert!(b1.synced() && a.peer_synced(), "B1 synchronised");
    assert_eq!(a.hand_back(), 1);
    let t3 = settle(&mut a, &mut b1, t2);
    assert!(b1.owns(OUT_B, Direction::Outbound));
    assert_eq!(a.holding(), 0);
    // B1 dies; no order comes. A peer's SA added now stays home (parked
    // until B's next life), as before 3122cc3: the flag went with B1.
    drop(b1);
    declare_dead(&mut a, t3 + 100);
    assert!(!rekey_delete_first(&mut a));
}

/// Holds (fix 1): a fence in the middle of the first whole sending of a
/// bulk to a joiner (`peer.ran` still false, the bulk's `bulk_told`
/// still pending). The fenced joiner's next request (a resend of parts
/// of the dropped bulk) gets a new bulk whole; the pending `bulk_told`
/// of the dropped bulk is taken in at its end, lower than the new bulk
/// carried (so `told` is too low, never too high: a start counts less as
/// acknowledged). The joiner synchronises on values past A's fence run,
/// and should A die, takes OUT_A over past it.
#[test]
fn holds_a_fence_in_the_middle_of_the_first_whole_sending() {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    events(&mut a);
    let t1 = t + 200;
    let mut b1 = many_parts(B, 5, t1);
    deliver(&mut b1, &mut a, t1);
    // A sends only the frames of its first three parts of the whole
    // sending.
    let mut first = Vec::new();
    while first
        .iter()
        .filter(|f: &&Vec<u8>| part_of(f).is_some())
        .count()
        < 3
    {
        let f = a.poll_transmit(t1).expect("A sends its bulk");
        let _ = b1.handle_frame(t1, &f);
        first.push(f);
    }
    assert!(!first.iter().any(|f| bulk_end(f)), "mid-sending");
    let (n, _, _) = first.iter().find_map(|f| part_of(f)).expect("bulk N");
    mute(&mut b1, t1);
    let t2 = t1 + 100;
    declare_dead(&mut a, t2);
    assert_eq!(a.force_unleased(), Ok(()));
    let (s_f, _) = last_start(&events(&mut a), OUT_A, Direction::Outbound).expect("OUT_A moved");
    let a_used = s_f..s_f + 3 * JUMP;
    for seq in (s_f..a_used.end).step_by(50) {
        a.outbound_progress(OUT_A, seq, seq, seq);
    }
    a.outbound_progress(OUT_A, a_used.end - 1, 0, 0);
    mute(&mut a, t2);
    // B1 asks again for the parts it lacks of N.
    let mut t3 = t2;
    let ask = loop {
        t3 += 1;
        assert!(t3 < t2 + 500, "B1 asks again");
        a.handle_timeout(t3);
        mute(&mut a, t3);
        b1.handle_timeout(t3);
        if let Some(f) = sent(&mut b1, t3)
            .into_iter()
            .find(|f| resend_of(f).is_some())
        {
            break f;
        }
    };
    assert_eq!(resend_of(&ask).map(|r| r.0), Some(n));
    a.handle_frame(t3, &ask).expect("B1 heard");
    let again = deliver(&mut a, &mut b1, t3);
    assert!(
        again
            .iter()
            .filter_map(|f| part_of(f))
            .all(|(bulk, _, _)| bulk > n),
        "a new bulk"
    );
    let t4 = settle(&mut a, &mut b1, t3);
    assert!(b1.synced(), "the fenced joiner synchronises");
    drop(a);
    declare_dead(&mut b1, t4 + 100);
    b1.take_over();
    assert_eq!(b1.force_unleased(), Ok(()));
    let (s_b, _) = last_start(&events(&mut b1), OUT_A, Direction::Outbound).expect("B1 runs");
    let b_usable = usable(&b1, OUT_A, s_b);
    assert!(
        overlap(&a_used, &b_usable).is_empty(),
        "A sent {a_used:?} in its fence; B1 may send {b_usable:?}"
    );
}

/// Holds (fix 1): a fence after the whole sending ended with parts lost
/// (`peer.ran` true, `bulk_told` taken in): the fenced joiner's resend of
/// the dropped bulk gets a new bulk whole, and it synchronises; the
/// stats count nothing ignored.
#[test]
fn holds_a_fence_after_a_lossy_whole_sending_gets_the_joiner_synced() {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1);
    let t1 = t + 200;
    let mut b1 = many_parts(B, 5, t1);
    deliver(&mut b1, &mut a, t1);
    let first = sent(&mut a, t1);
    assert!(first.iter().any(|f| bulk_end(f)));
    // Every other frame lost.
    for f in first.iter().step_by(2) {
        let _ = b1.handle_frame(t1, f);
    }
    assert!(!b1.synced());
    mute(&mut b1, t1);
    declare_dead(&mut a, t1 + 100);
    assert_eq!(a.force_unleased(), Ok(()));
    let t2 = settle(&mut a, &mut b1, t1 + 100);
    assert!(b1.synced());
    assert_eq!(a.stats().records_ignored, 0);
    assert!(
        !events(&mut a)
            .iter()
            .any(|e| matches!(e, MirrorEvent::Orphaned { .. })),
    );
    let _ = t2;
}
