//! What a fourteenth fresh reader found against 24cb2d7 (bulk sync in
//! numbered parts, sent again whole under one number while the sender's
//! `bulk_print` holds, gathered by the starting node across sendings), and
//! the scenarios it tried that held.

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use espgate_wire::mirror::MirrorRecord;
use pair::*;

/// A synchronised pair of small nodes where A ran every one of its
/// outbound SAs a little (so B stores a copy of each); returns them and
/// the time.
fn small_pair_that_ran() -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    for k in std::iter::once(OUT_A).chain((0..N_EXTRA).map(|k| EXTRA + k)) {
        let used = a.limit(k).unwrap() - 1;
        a.outbound_progress(k, used, used, used);
    }
    t = settle(&mut a, &mut b, t);
    events(&mut a);
    (a, b, t)
}

/// Reader14 find 1 (liveness: "a node that restarts synchronises once the
/// link delivers a fair share of frames"; and the change's own purpose:
/// a bulk gathered across sendings).
///
/// Steps: a small-frame pair (max_frame 200) where A runs 13 outbound
/// SAs, so B's bulk for A's next life carries 13 copies in ~15 parts. A
/// restarts (A2). A2's frames all reach B; of B's frames, exactly one
/// bulk part of each sending is lost, a different one each time (part
/// `s` of sending `s`), the first sending losing parts 0 and 1. Under the
/// cache the change promises, sending 1 brings part 0 and sending 2 part
/// 1: A2 is synchronised after three sendings.
///
/// Observed: 17 sendings, bulk numbers [2, 2, 3, 4, 5, ..., 16, 16]: a new
/// bulk at every sending from the third on, so A2 synchronised only when
/// the loss pattern happened to spare a whole new bulk; SA 0x3000 (idle)
/// restarted 13 times, 13 takeover jumps burned.
///
/// What happens: A2 processes each copy as it arrives, before it has the
/// whole bulk (`handle_frame`, the `SaState(s) if s.copy` arm calls
/// `recover`), so its SA restarts one jump past the copy and is
/// `activated` -> enqueued -> A2 reports the new lease in its next frame.
/// B merges that state into its standby table; `bulk_print` hashes
/// `bulk_copies()`, i.e. that very standby value, so the print changes and
/// B's next `bulk_requested` builds a *new* bulk under a new number
/// (`build_bulk`). A2's `part_received` sees another number and resets its
/// gathering. The new bulk's copies carry A2's own echoed leases, A2
/// recovers past them again (another jump, `recover` moves since
/// `v' + J > v + J`), reports, and the print changes again: no two sendings
/// are ever of one bulk as long as any copy part arrives, and A2 needs
/// every part in a single sending (the unbroken run the change meant to
/// end). Each sending also burns one more takeover jump per SA (a 32-bit
/// SA has room for ~256).
///
/// The fix: both. The print covers a bulk's entries and their sizes, not
/// their values, which are built when a part goes; and before the bulk
/// is complete a copy is only stored, recovered from once in
/// `bulk_complete`.
#[test]
fn a_bulk_with_copies_is_gathered_across_sendings() {
    let (a, mut b, mut t) = small_pair_that_ran();
    drop(a);
    t += 200;
    let mut a2 = many_parts(A, 5, t);
    let (mut sending, mut numbers) = (0u64, Vec::new());
    // A sending begins with the first part after the end of the last one
    // (whole, or only the parts A2 lists as lost).
    let (mut started, mut fresh) = (false, true);
    let begin = t;
    while !a2.synced() && t < begin + 2000 {
        t += 1;
        a2.handle_timeout(t);
        b.handle_timeout(t);
        while let Some(f) = a2.poll_transmit(t) {
            let _ = b.handle_frame(t, &f);
        }
        while let Some(f) = b.poll_transmit(t) {
            if let Some((bulk, part, parts)) = part_of(&f) {
                if std::mem::replace(&mut fresh, bulk_end(&f)) {
                    if started {
                        sending += 1;
                    }
                    started = true;
                    numbers.push(bulk);
                }
                let lost = if sending == 0 {
                    part < 2
                } else {
                    u64::from(part) == sending % u64::from(parts)
                };
                if lost {
                    continue; // lost
                }
            }
            let _ = a2.handle_frame(t, &f);
        }
    }
    let evs = events(&mut a2);
    let jumps = starts_in(&evs, EXTRA, Direction::Outbound).len();
    assert!(
        a2.synced() && sending <= 2,
        "A2 synchronised: {}, after {} sendings; bulk numbers of the sendings: {:?}; \
         SA {EXTRA:#x} restarted {jumps} times",
        a2.synced(),
        sending + 1,
        &numbers[..numbers.len().min(12)],
    );
}

/// The value of the (non-copy) state of `spi` a frame carries.
fn state_value(f: &[u8], spi: u32, dir: Direction) -> Option<u64> {
    records(f).iter().find_map(|r| match r {
        MirrorRecord::SaState(s) if s.spi == spi && s.dir == dir && !s.copy => Some(s.value),
        _ => None,
    })
}

/// How many numbers A's unleased worker sends in the fence: more than two
/// jumps less a quantity.
const FENCE_RUN: u64 = 3 * JUMP;

/// Reader14 find 2 (promise P1): a cached bulk built *before* a fence is
/// sent again after it, with the owner's pre-fence leases, and the
/// starting node synchronises on it.
///
/// Steps: A and B synchronised; B dies; A takes OUT_B over, so A owns
/// every SA of the pair. B's next life B1 starts; its frames reach A (A
/// moves its SAs past the lost life, `peer_lost`) and its request makes A
/// build bulk N (`build_bulk`: A's state of OUT_A carries its lease L0);
/// A's frames are lost. The link is then cut: A declares B1 dead and the
/// host fences it (`force_unleased`: `peer_lost` again, OUT_A restarts at
/// L0 + 3 jumps, no lease), and A's worker sends 3000 numbers of OUT_A.
/// The link comes back: B1's request reaches A. The fence ends; A owns
/// every SA, so `bulk_copies()` is empty, and `peer_lost` moved only A's
/// own SAs (their standby entries and states are not in `bulk_print`):
/// the print is the one of N, and `bulk_requested` sends N again, its
/// state of OUT_A still L0. A's fresh state of OUT_A went out during the
/// cut (lost) and goes again only at its next refresh. B1 synchronises on
/// N, storing L0 for OUT_A. A dies before its refresh reaches B1. B1
/// takes OUT_A over at L0 + 1 jump and, A being fenced by the host,
/// moves it past its own mark plus three jumps: L0 + 5 jumps - quantity,
/// inside A's unleased run (L0 + 3 jumps .. L0 + 6 jumps). B1 sends
/// numbers A sent.
///
/// Before 24cb2d7 the request after the cut built a new bulk, whose state
/// of OUT_A carried the fence run: B1 stored it before it could run
/// anything.
///
/// The fix: a part's records are built when it goes (`next_part`), so
/// the state of OUT_A sent after the cut carries the fence run.
#[test]
fn a_bulk_built_before_a_fence_is_not_sent_again_after_it() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    events(&mut a);
    // B1 starts; A hears it and builds bulk N; A's frames are lost.
    let t1 = t + 200;
    let mut b1 = node(B, 5, t1);
    deliver(&mut b1, &mut a, t1);
    let first: Vec<Vec<u8>> = std::iter::from_fn(|| a.poll_transmit(t1)).collect();
    let (n, _, _) = first
        .iter()
        .find_map(|f| part_of(f))
        .expect("A sent bulk N");
    let l0 = first
        .iter()
        .find_map(|f| state_value(f, OUT_A, Direction::Outbound))
        .expect("N carries A's state of OUT_A");
    // The cut: A declares B1 dead, the host fences it, A runs OUT_A.
    let t2 = t1 + 100;
    declare_dead(&mut a, t2);
    assert_eq!(a.force_unleased(), Ok(()));
    let (s_f, _) = last_start(&events(&mut a), OUT_A, Direction::Outbound).expect("OUT_A moved");
    assert_eq!(a.limit(OUT_A), Some(u64::MAX));
    let a_used = s_f..s_f + FENCE_RUN;
    for seq in (s_f..a_used.end).step_by(50) {
        a.outbound_progress(OUT_A, seq, seq, seq);
    }
    a.outbound_progress(OUT_A, a_used.end - 1, 0, 0);
    mute(&mut a, t2);
    // The link is back: B1's request reaches A, A's next frame B1.
    let t3 = t2 + 1;
    let asked = deliver(&mut b1, &mut a, t3);
    assert!(
        asked
            .iter()
            .any(|f| records(f).contains(&MirrorRecord::BulkRequest))
    );
    let again = deliver(&mut a, &mut b1, t3);
    let (n2, _, _) = again.iter().find_map(|f| part_of(f)).expect("a sending");
    let sent = again
        .iter()
        .filter_map(|f| state_value(f, OUT_A, Direction::Outbound))
        .max();
    assert!(b1.synced(), "B1 synchronised on bulk {n2}");
    // A dies now; B1 takes its SAs over and the host fences A.
    drop(a);
    let t4 = t3 + 200;
    declare_dead(&mut b1, t4);
    b1.take_over();
    assert_eq!(b1.force_unleased(), Ok(()));
    let (s_b, _) = last_start(&events(&mut b1), OUT_A, Direction::Outbound).expect("B1 runs OUT_A");
    let b_usable = usable(&b1, OUT_A, s_b);
    let twice = overlap(&a_used, &b_usable);
    assert!(
        twice.is_empty(),
        "A sent OUT_A {a_used:?} in its fence; B1 (synchronised on bulk {n2}, built as {n} \
         before the fence with OUT_A's lease {l0}; A's latest state sent: {sent:?}) may send \
         {b_usable:?}: {twice:?} twice"
    );
}

/// Reader14 find 3 (promise P1; before 24cb2d7 as well, found on the way
/// to find 2): a node that fenced its peer and ran unleased dies after the
/// peer is heard again but before the peer stored how far the unleased
/// run went; the peer, once it fences the dead node in turn, runs into
/// that run.
///
/// Steps: A and B synchronised (A runs OUT_A with B storing its lease
/// L). The link is cut; both declare the other dead (B does not take
/// over: `takeover: manual`, or its host waits). A's host fences B
/// (`force_unleased`: OUT_A restarts past A's mark plus three jumps, no
/// lease) and A's worker sends three jumps' worth. The link returns: B's
/// frames reach A (A's fence ends, `set_lease(true)`), A's frames are
/// lost, and A dies (its fresh state never reached B). B's host takes
/// over and fences A: B takes OUT_A over at L + 1 jump, and
/// `force_unleased` -> `peer_lost` moves it to B's mark (its reach, L + 2
/// jumps - quantity) plus three jumps: inside A's unleased run, which
/// began at A's mark plus three jumps and went three jumps further.
/// `peer_lost`'s bound ("a lost life stayed within this node's
/// high-water mark plus three steps") assumes the lost life ran under
/// leases this node acknowledged; a life that fenced ran under none.
///
/// Not fixed in the core: the fenced life cannot tell its peer's fence
/// from its death when it hears nothing more of it, and so the contract
/// is that a fenced node restarts before it rejoins (docs/mirror-protocol.md:
/// "What the protocol cannot cover on its own"). `espgate host` keeps to
/// it: a node that answers again in the life its peer fenced gets nothing
/// back and takes nothing over until it restarts. The test stays, ignored,
/// to show what breaking the contract does. (The reader's other idea,
/// lifting the lease by a fixed number of jumps instead of to unlimited,
/// would stall a fenced survivor's SAs for good in a long outage.)
#[test]
#[ignore = "the fence contract: a fenced life must restart before it rejoins; espgate host keeps to it (host::tests::a_fenced_node_back_in_the_same_life_takes_nothing_over_until_it_restarts), an operator fencing by hand restarts the fenced node"]
fn a_fencer_that_dies_after_the_peer_returns_leaves_its_unleased_run_past_the_peer() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    let next = last_start(&events(&mut a), OUT_A, Direction::Outbound).map_or(1, |s| s.0);
    let used = a.limit(OUT_A).unwrap() - 1;
    assert!(used > next);
    a.outbound_progress(OUT_A, used, used, used);
    t = settle(&mut a, &mut b, t);
    let l = b.standby().get(OUT_A, Direction::Outbound).unwrap().value;
    // The cut.
    mute(&mut a, t + 1);
    mute(&mut b, t + 1);
    let t2 = t + 100;
    declare_dead(&mut a, t2);
    declare_dead(&mut b, t2);
    assert_eq!(a.force_unleased(), Ok(()));
    let (s_f, _) = last_start(&events(&mut a), OUT_A, Direction::Outbound).expect("OUT_A moved");
    let a_used = s_f..s_f + FENCE_RUN;
    for seq in (s_f..a_used.end).step_by(50) {
        a.outbound_progress(OUT_A, seq, seq, seq);
    }
    mute(&mut a, t2);
    // The link returns one way: B is heard, A's frames are lost; A dies.
    let t3 = t2 + 60;
    deliver(&mut b, &mut a, t3);
    assert!(a.peer_alive() && b.limit(OUT_B).is_some());
    mute(&mut a, t3);
    drop(a);
    let t4 = t3 + 200;
    b.handle_timeout(t4);
    b.take_over();
    assert_eq!(b.force_unleased(), Ok(()));
    let (s_b, _) = last_start(&events(&mut b), OUT_A, Direction::Outbound).expect("B runs OUT_A");
    let b_usable = usable(&b, OUT_A, s_b);
    let twice = overlap(&a_used, &b_usable);
    assert!(
        twice.is_empty(),
        "A sent OUT_A {a_used:?} in its fence (B stores {l}); B may send {b_usable:?}: \
         {twice:?} twice"
    );
}

/// Runs the pair for `ms` milliseconds from `t`, 1 ms a step; each frame
/// `from` sends reaches `to` if `keep` says so (and each of `to`'s frames
/// reaches `from` if `keep_back` says so). Returns the time.
fn run(
    from: &mut Mirror,
    to: &mut Mirror,
    mut t: u64,
    ms: u64,
    mut keep: impl FnMut(&[u8]) -> bool,
    mut keep_back: impl FnMut(&[u8]) -> bool,
) -> u64 {
    for _ in 0..ms {
        t += 1;
        from.handle_timeout(t);
        to.handle_timeout(t);
        while let Some(f) = from.poll_transmit(t) {
            if keep(&f) {
                let _ = to.handle_frame(t, &f);
            }
        }
        while let Some(f) = to.poll_transmit(t) {
            if keep_back(&f) {
                let _ = from.handle_frame(t, &f);
            }
        }
    }
    t
}

/// Tried and held (angle 2: bulk numbers restart at 1 in each life of
/// the sender). A fresh pair of small-frame nodes: A1 builds bulk 1 for
/// B1 and only its part 0 reaches B1. A1 dies; A2 builds its own bulk 1
/// for B1, of as many parts, and every part but part 0 reaches B1. B1
/// holds parts 0..n of "bulk 1, n parts" from two lives; it does not
/// synchronise (`handle_frame` drops `bulk_in` on the first frame of a
/// new epoch, and A1's frames are `stale_epoch` after A2's), and does
/// once A2's bulk arrives whole. (A2's later sendings are new bulks,
/// find 1's echo: here it built 145 bulks in 300 ms, B1 restarting OUT_B
/// one jump further at each; their parts are dropped.)
#[test]
fn parts_of_one_number_from_two_lives_of_the_sender_do_not_sync() {
    let (mut a1, mut b1) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let mut a1_parts = None;
    let t = run(
        &mut a1,
        &mut b1,
        0,
        40,
        |f| match part_of(f) {
            Some(p) => {
                a1_parts = Some(p);
                p.1 == 0
            }
            None => true,
        },
        |_| true,
    );
    let (n1, _, parts1) = a1_parts.expect("A1 sent a bulk");
    assert!(!b1.synced() && parts1 > 2);
    drop(a1);
    let mut a2 = many_parts(A, 3, t);
    let mut a2_parts = None;
    let t = run(
        &mut a2,
        &mut b1,
        t,
        300,
        |f| match part_of(f) {
            // Only A2's first bulk, and of it every part but part 0.
            Some(p) if p.0 == n1 => {
                a2_parts = Some(p);
                p.1 != 0
            }
            Some(_) => false,
            None => true,
        },
        |_| true,
    );
    let (n2, _, parts2) = a2_parts.expect("A2 sent a bulk");
    assert_eq!((n2, parts2), (n1, parts1), "the same number and count");
    assert!(!b1.synced(), "parts of two lives made one bulk");
    run(&mut a2, &mut b1, t, 200, |_| true, |_| true);
    assert!(b1.synced());
}

/// Tried and held (angles 1 and 4: a sending under way goes on with
/// stale parts after an ownership change). B dies; A takes OUT_B over. B1
/// starts and asks; A's bulk (small frames, many parts) says A owns OUT_B
/// (generation 1). After its first part reaches B1, the host hands OUT_B
/// back: the hand-over (generation 2, start = A's final) goes before the
/// next part, and the sending goes on with the stale ownership record of
/// generation 1, which B1 takes after the hand-over. `change` ignores the
/// lower generation; B1 completes the stale bulk and restarts OUT_B past
/// the stale state (`bulk_complete` recovers from the standby value the
/// stale state raised): one owner, B1, starting past A's final.
#[test]
fn a_hand_back_during_a_sending_leaves_one_owner_past_the_holder() {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    a.take_over();
    let next = last_start(&events(&mut a), OUT_B, Direction::Outbound)
        .unwrap()
        .0;
    let used = a.limit(OUT_B).unwrap() - 1;
    assert!(used > next);
    a.outbound_progress(OUT_B, used, used, used);
    let t1 = t + 200;
    let mut b1 = many_parts(B, 5, t1);
    let mut handed = false;
    let mut t = t1;
    while !b1.synced() && t < t1 + 1000 {
        t += 1;
        a.handle_timeout(t);
        b1.handle_timeout(t);
        deliver(&mut b1, &mut a, t);
        while let Some(f) = a.poll_transmit(t) {
            let _ = b1.handle_frame(t, &f);
            if !handed && part_of(&f).is_some_and(|p| p.1 == 0 && p.2 > 3) {
                assert_eq!(a.hand_back(), 1);
                handed = true;
            }
        }
    }
    assert!(handed && b1.synced());
    let evs = events(&mut b1);
    let t = settle(&mut a, &mut b1, t);
    let _ = t;
    assert!(b1.owns(OUT_B, Direction::Outbound) && !a.owns(OUT_B, Direction::Outbound));
    let start = last_start(&evs, OUT_B, Direction::Outbound)
        .expect("B1 runs OUT_B")
        .0;
    assert!(start > used, "B1 starts OUT_B at {start}, A used {used}");
}

/// Reader14 find 1, second face (a starter's SAs burn takeover jumps
/// while it waits): the same echo as `a_bulk_with_copies_is_gathered_across_sendings`,
/// on a link that always loses part 0 of B's bulk. A2 cannot synchronise
/// (fine), but each sending is a new bulk whose copies carry A2's own last
/// report, and A2 restarts every SA one jump and a quantity further at
/// each: an idle 32-bit SA (room for about 256 jumps at
/// `takeover_jump_32` 2^24) is spent in a few hundred sendings, which a
/// lossy link makes in seconds (A2 asks at once when a sending's last
/// part arrives with others missing). Before the bulk completes the copies
/// should move A2's SAs once (past the earlier life), not once per
/// sending. The fix: as find 1's.
#[test]
fn a_starter_waiting_for_a_part_does_not_burn_jumps() {
    let (a, mut b, t) = small_pair_that_ran();
    drop(a);
    let t = t + 200;
    let mut a2 = many_parts(A, 5, t);
    let mut numbers = std::collections::BTreeSet::new();
    run(
        &mut a2,
        &mut b,
        t,
        500,
        |_| true,
        |f| match part_of(f) {
            Some(p) => {
                numbers.insert(p.0);
                p.1 != 0
            }
            None => true,
        },
    );
    assert!(!a2.synced());
    let moves = starts_in(&events(&mut a2), EXTRA, Direction::Outbound);
    assert!(
        moves.len() <= 2,
        "in 500 ms B built {} bulks; A2 moved SA {EXTRA:#x} {} times, to {:?}",
        numbers.len(),
        moves.len(),
        moves.last()
    );
}

/// Tried and held (angle 2: parts recorded and replayed). A2 restarts and
/// B's whole bulk for it is recorded on the way (A2 gets nothing). A2
/// dies; A3 starts and the recorded frames are played to it before
/// anything else (its filter knows no epoch of B yet, so it takes them):
/// their parts were sent to A2's life (`to_this_life` false), so they
/// are ignored and counted (`records_other_life`), and A3 is not
/// synchronised; played again after B's real frames, they are
/// `replayed`. A3 then synchronises on its own bulk.
#[test]
fn recorded_parts_of_an_earlier_life_do_not_sync_the_next() {
    let (a, mut b, t) = small_pair_that_ran();
    drop(a);
    let t = t + 200;
    let mut a2 = many_parts(A, 5, t);
    let mut recorded = Vec::new();
    let mut t = t;
    for _ in 0..200 {
        t += 1;
        b.handle_timeout(t);
        deliver(&mut a2, &mut b, t);
        recorded.extend(std::iter::from_fn(|| b.poll_transmit(t)));
    }
    assert!(
        recorded
            .iter()
            .any(|f| part_of(f).is_some_and(|p| p.1 + 1 == p.2))
    );
    drop(a2);
    let mut a3 = many_parts(A, 9, t);
    for f in &recorded {
        let _ = a3.handle_frame(t, f);
    }
    assert!(!a3.synced());
    assert!(a3.stats().records_other_life > 0);
    let t = run(&mut a3, &mut b, t, 300, |_| true, |_| true);
    assert!(a3.synced());
    let before = a3.rejected().total();
    for f in &recorded {
        assert!(a3.handle_frame(t, f).is_err());
    }
    assert!(a3.rejected().total() >= before + recorded.len() as u64);
}
