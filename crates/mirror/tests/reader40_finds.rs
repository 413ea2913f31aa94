//! Reader40's probes of today's mirror changes: the heard takeover's
//! missing grace (b2626a2), `inbound_grace` (70d83e9), and the floor
//! raise and the exact run's acknowledgement cap kept across a silence
//! (e1d7ea9).

mod pair;

use espgate_mirror::LeaveRefused;
use espgate_wire::Direction;
use pair::*;

const IN: Direction = Direction::Inbound;

/// Find 1 (promise 2, replay accepted; new with e1d7ea9, which keeps an
/// exact run's acknowledgement cap across a silence). A runs IN_A to
/// 230, drains it exactly to B, and B fails it back exactly at 230: A
/// runs IN_A from an exact hand-over (`exact`, its acknowledgements
/// capped at all it sent). The mirror link is cut both ways (both
/// alive): each declares the other dead (A's `exact` stays: a silence no
/// longer ends it). B takes IN_A over (a silent peer: its grace) and its
/// worker accepts a run R past its start. The host deletes IN_A on B
/// (B's history of it holds R's top; the history record it sends goes
/// into the cut) and, the link healed, adds it again (same SPI and key,
/// the host's rekey or a config reload): B's view of who runs it went
/// with the delete, and the add gives it to A, its home. B never told A
/// of its takeover (that ownership record went with the delete), so A
/// still runs IN_A exactly; B now acknowledges A's states of it with
/// what it stores, R's top included. Above all A sent, that was the
/// sign of a use A forgot (A moved past it); with the cap it reads as an
/// acknowledgement of A's own bound, and A's worker accepts R again.
///
/// The claim in e1d7ea9 ("a takeover by the same life comes with a
/// higher generation, which this node hears before anything that life
/// acknowledges of the SA") fails when the taker's view is reset by a
/// delete and an add in between. Before e1d7ea9 the silence cleared
/// `exact` and the acknowledgement above all A sent moved A past R.
#[test]
fn a_takers_delete_and_add_during_an_exact_runs_silence_lets_its_run_be_accepted_again() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    // A drains IN_A exactly to B; B fails it back exactly.
    a.stop(IN_A, IN).expect("stop");
    a.hand_over_exact(IN_A, IN, 230).expect("drain");
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN));
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, 230).expect("failback");
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    events(&mut a);
    events(&mut b);
    // The cut: each declares the other dead.
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!a.peer_alive() && !b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    t += 110;
    let (run, _) = alone_takes(&mut b, s, s + 200, t, 20);
    assert!(
        !run.is_empty(),
        "B's takeover from a silent A accepts its grace"
    );
    // The host deletes IN_A on B (its history record lost in the cut).
    assert!(b.remove_sa(IN_A, IN));
    alone(&mut b, t + 10, t + 30);
    alone(&mut a, t + 10, t + 30);
    t += 40;
    // The link heals; then the host adds IN_A on B again (home A).
    t = settle(&mut a, &mut b, t);
    assert!(a.peer_alive() && b.peer_alive());
    assert!(a.owns(IN_A, IN), "A never heard of B's takeover");
    b.add_sa(IN_A, IN, false, A);
    t = settle(&mut a, &mut b, t);
    // A's worker goes on from its top, 230, as far as B's run went.
    let top_b = *run.last().unwrap();
    let (took, _, _) = worker_takes(&mut a, &mut b, 230, top_b, t, 20);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "B accepted {}..={} in its takeover; A accepted {} of them again: {:?}..",
        run[0],
        top_b,
        twice.len(),
        twice.first()
    );
}

/// Find 2 (promise 3, fresh packets refused at a fence with no grace).
/// A graceless pair (`inbound_grace: 0`, as under `espgate host`). A's
/// worker runs IN_A at a high rate (some packets a millisecond), so the
/// bound A reports reaches past its top by what arrives in
/// `inbound_ahead_ms`, and B acknowledges it. B crashes; A declares it
/// dead and A's host fences B. B's lost life accepted nothing of IN_A (it
/// never took it over, and with no grace it accepts nothing A did not
/// acknowledge), yet the fence moves IN_A's window from the worker's top
/// up to the reported bound, all below seen: the packets between, which
/// nobody accepted, are refused (70d83e9: "with 0 ... a fence or the
/// peer's restart moves nothing"). reader39's find 2 checked this at a
/// low rate only, where the bound is the top.
#[test]
fn with_no_grace_the_fence_at_a_high_rate_refuses_the_bounds_reach() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    // A burst: 20 packets every 2 ms, each step acknowledged.
    let mut top = 230;
    for _ in 0..40 {
        t += 2;
        a.handle_timeout(t);
        b.handle_timeout(t);
        let step = top + 20;
        if a.inbound_limit(IN_A).unwrap() <= step {
            a.inbound_stalled(IN_A, step);
            exchange(&mut a, &mut b, t);
        }
        let limit = a.inbound_limit(IN_A).unwrap();
        top = step.min(limit - 1);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        exchange(&mut a, &mut b, t);
    }
    events(&mut a);
    let acked = a.inbound_limit(IN_A).unwrap() - 1;
    assert!(
        acked > top,
        "the bound reaches past the top: {acked} > {top}"
    );
    // B crashes; A declares it dead and is fenced from it.
    drop(b);
    alone(&mut a, t + 10, t + 100);
    assert!(!a.peer_alive());
    a.force_unleased().expect("the host fences B");
    let start = last_start(&events(&mut a), IN_A, IN).map_or(top, |x| x.0);
    assert!(
        start <= top,
        "A's worker accepted up to {top}; the fence restarts IN_A at {start}: {} fresh packets refused",
        start - top
    );
}

/// Probe (passes): a takeover ordered with the owner heard (no grace),
/// the owner crashing before it hears of it. With no grace the taker
/// accepts nothing until the host fences the dead owner; then it runs
/// from its start, refusing nothing.
#[test]
fn probe_a_heard_takeover_whose_owner_dies_at_once_runs_after_the_fence() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    assert!(b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    drop(a);
    alone(&mut b, t, t + 100);
    assert!(!b.peer_alive());
    assert!(acceptable(&b, IN_A, s).is_empty(), "nothing unacknowledged");
    b.force_unleased().expect("the host fences A");
    let start = last_start(&events(&mut b), IN_A, IN).map_or(s, |x| x.0);
    b.inbound_stalled(IN_A, start + 5);
    assert!(
        !acceptable(&b, IN_A, start).is_empty(),
        "B runs IN_A once fenced"
    );
    assert!(start <= 231, "B starts at {start}");
}

/// Probe (passes): a takeover ordered with the owner heard, the link cut
/// right after (the owner never hears of it and keeps IN_A). The owner
/// accepts only what the taker acknowledged before (the taker's start is
/// past it); once the taker's host fences the owner, the taker runs, and
/// when the link heals the owner gives IN_A up: nothing accepted twice.
#[test]
fn probe_a_heard_takeover_then_a_cut_accepts_nothing_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    alone(&mut b, t, t + 100);
    let (run_a, _) = alone_takes(&mut a, 230, 400, t, 20);
    alone(&mut a, t, t + 100);
    assert!(a.owns(IN_A, IN));
    b.force_unleased().expect("B's host fences A");
    let start = last_start(&events(&mut b), IN_A, IN).map_or(s, |x| x.0);
    let (run_b, _) = alone_takes(&mut b, start, start + 100, t + 110, 20);
    assert!(!run_b.is_empty());
    assert!(common(&run_a, &run_b).is_empty());
    let t = settle(&mut a, &mut b, t + 200);
    assert!(!a.owns(IN_A, IN), "A gives IN_A up once it hears B");
    let _ = t;
}

/// Find 3 (promise 2, replay accepted; not new today, found next to find
/// 1). A runs IN_A to 230. The mirror link is cut both ways (both
/// alive); B takes IN_A over from the silent A and its worker accepts a
/// run R (its grace). The host deletes IN_A on B (B's history record of
/// R goes into the cut, once), the link heals, and B, running nothing,
/// leaves (a goodbye: no unconfirmed change, no finals, the delete took
/// its takeover record with it). A takes the goodbye in (its view names
/// B the owner of nothing), is fenced from B's life and runs IN_A
/// without a lease: its worker accepts R again. Nothing told A of B's
/// takeover or of how far B's run went.
///
/// Fixed: B's life, having deleted an SA it took over unheard before A
/// confirmed the takeover, refuses to leave (`UnheardRuns`). Stopped as a
/// crash instead, its next life is heard by A, which moves IN_A past all
/// B's lost life could have accepted.
#[test]
fn a_takers_delete_and_goodbye_after_a_cut_lets_its_run_be_accepted_again() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!a.peer_alive() && !b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    t += 110;
    let (run, _) = alone_takes(&mut b, s, s + 200, t, 20);
    assert!(
        !run.is_empty(),
        "B's takeover from a silent A accepts its grace"
    );
    assert!(b.remove_sa(IN_A, IN));
    alone(&mut b, t + 10, t + 30);
    alone(&mut a, t + 10, t + 30);
    t = settle(&mut a, &mut b, t + 40);
    assert!(a.peer_alive() && b.peer_alive());
    assert!(a.owns(IN_A, IN), "A never heard of B's takeover");
    // B gives back what it took and hands its own over exactly (a drain).
    b.hand_back();
    t = settle(&mut a, &mut b, t);
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    assert_eq!(b.leave(), Err(LeaveRefused::UnheardRuns(1)));
    // Stopped as a crash would: B's next life syncs, and A hears it.
    drop(b);
    let mut b2 = node(B, 5, t + 10);
    t = settle(&mut a, &mut b2, t + 10);
    assert!(b2.synced() && a.owns(IN_A, IN));
    let top_b = *run.last().unwrap();
    let (took, _, _) = worker_takes(&mut a, &mut b2, 230, top_b + 40, t, 20);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "B accepted {}..={} in its takeover; A accepted {} of them again: {:?}..",
        run[0],
        top_b,
        twice.len(),
        twice.first()
    );
}

/// Find 1b (promise 2, replay accepted; as find 1, with no grace). A
/// graceless pair runs IN_A exactly on A (a drain to B and B's exact
/// failback). The link is cut; B takes IN_A over (accepting nothing
/// unacknowledged) and B's host fences A: B runs IN_A without a lease
/// and its worker accepts a run R. The host deletes IN_A on B (its
/// history record lost in the cut), the link heals, and the host adds
/// IN_A on B again: B acknowledges A's states with R's top, which A's
/// exact run caps at all it sent, and A's worker accepts R again. (A is
/// the fenced life here, alive behind the cut; it never hears of the
/// fence, and a restart is nowhere asked of it: B's frames reach it and
/// it runs on.)
#[test]
fn with_no_grace_a_takers_delete_and_add_after_its_fence_lets_its_run_be_accepted_again() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    a.stop(IN_A, IN).expect("stop");
    a.hand_over_exact(IN_A, IN, 230).expect("drain");
    t = settle(&mut a, &mut b, t);
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, 230).expect("failback");
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    events(&mut a);
    events(&mut b);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(b.take_over() >= 1);
    b.force_unleased().expect("B's host fences A");
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    t += 110;
    let (run, _) = alone_takes(&mut b, s, s + 200, t, 20);
    assert!(!run.is_empty(), "B, fenced from A, runs IN_A");
    assert!(b.remove_sa(IN_A, IN));
    alone(&mut b, t + 10, t + 30);
    alone(&mut a, t + 10, t + 30);
    t = settle(&mut a, &mut b, t + 40);
    assert!(a.owns(IN_A, IN), "A never heard of B's takeover");
    b.add_sa(IN_A, IN, false, A);
    t = settle(&mut a, &mut b, t);
    let top_b = *run.last().unwrap();
    let (took, _, _) = worker_takes(&mut a, &mut b, 230, top_b, t, 20);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "B accepted {}..={} fenced; A accepted {} of them again: {:?}..",
        run[0],
        top_b,
        twice.len(),
        twice.first()
    );
}

/// Find 2b (promise 3, as find 2, at the peer's restart). A graceless
/// pair, A's worker running IN_A at a high rate (its bound past its top
/// by what arrives in `inbound_ahead_ms`). B restarts (its new life
/// synchronises from A): B's lost life accepted nothing of IN_A, yet A
/// moves IN_A's window up to the reported bound, refusing the packets
/// between, which nobody accepted.
#[test]
fn with_no_grace_the_peers_restart_at_a_high_rate_refuses_the_bounds_reach() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    let mut top = 230;
    for _ in 0..40 {
        t += 2;
        a.handle_timeout(t);
        b.handle_timeout(t);
        let step = top + 20;
        if a.inbound_limit(IN_A).unwrap() <= step {
            a.inbound_stalled(IN_A, step);
            exchange(&mut a, &mut b, t);
        }
        let limit = a.inbound_limit(IN_A).unwrap();
        top = step.min(limit - 1);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        exchange(&mut a, &mut b, t);
    }
    events(&mut a);
    drop(b);
    let mut b2 = graceless(B, 7, t + 5);
    settle(&mut a, &mut b2, t + 5);
    assert!(a.peer_alive() && a.peer_synced());
    let start = last_start(&events(&mut a), IN_A, IN).map_or(top, |x| x.0);
    assert!(
        start <= top,
        "A's worker accepted up to {top}; B's restart moves IN_A to {start}: {} fresh packets refused",
        start - top
    );
}

/// Find 4 (promise 3, an SA stuck for good with a dead peer after the
/// survivor was fenced; a late mirror frame). A runs IN_A to 230. B
/// sends a frame that the network holds (delayed, not lost) and crashes
/// for good. A declares B dead and A's host fences B (once per failure:
/// B never answers the host again, so the host does not fence it anew):
/// A runs IN_A without a lease. Then B's held frame arrives: it is of
/// B's fenced life and above every counter heard, so A takes it as B
/// heard again, and the fence is over: the lease is back. B is dead;
/// nothing acknowledges IN_A's bounds any more, the fence the host made
/// is spent (A's mirror no longer counts B as fenced), and IN_A refuses
/// every packet from there on.
#[test]
fn a_late_frame_of_the_fenced_life_leaves_the_survivor_stuck_for_good() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    b.handle_timeout(t + 20);
    let held: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t + 20)).collect();
    assert!(!held.is_empty(), "B sends a frame the network holds");
    drop(b);
    alone(&mut a, t, t + 100);
    assert!(!a.peer_alive());
    a.force_unleased().expect("the host fences B");
    t += 110;
    let (run, top) = alone_takes(&mut a, 230, 300, t, 20);
    assert!(!run.is_empty(), "A runs IN_A unleased");
    // B's held frame arrives.
    for f in &held {
        let _ = a.handle_frame(t + 10, f);
    }
    assert!(a.peer_alive(), "the held frame counts as B heard again");
    // B stays dead; A goes on alone for a long while.
    alone(&mut a, t + 20, t + 2000);
    assert!(!a.peer_alive());
    let (more, _) = alone_takes(&mut a, top, top + 100, t + 2010, 20);
    assert!(
        !more.is_empty(),
        "B is dead and was fenced; A's IN_A refuses every packet past {top} for good"
    );
}

/// Probe (passes): an exact failback after an exact drain of the same
/// SA. A's drain raises its floor to the drain's top (230); B accepts
/// up to 300 and fails IN_A back exactly there: A starts at 300, not
/// above, and refuses nothing fresh.
#[test]
fn probe_an_exact_failback_after_an_exact_drain_refuses_nothing() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    a.stop(IN_A, IN).expect("stop");
    a.hand_over_exact(IN_A, IN, 230).expect("drain");
    t = settle(&mut a, &mut b, t);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    assert_eq!(s, 230);
    let (_, top_b, t2) = worker_takes(&mut b, &mut a, 230, 300, t, 20);
    assert_eq!(top_b, 300);
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, 300).expect("failback");
    settle(&mut a, &mut b, t2);
    let (back, _) = last_start(&events(&mut a), IN_A, IN).expect("A runs IN_A");
    assert_eq!(back, 300, "A goes on exactly where B stopped");
}

/// Probe (passes): with no grace, an inbound SA added at run time while
/// the peer is silent accepts nothing until the peer is fenced, then
/// runs from there (its window past the packet it refused at most).
#[test]
fn probe_with_no_grace_an_unanswered_add_accepts_nothing_until_the_fence() {
    const IN_NEW: u32 = 0x2005;
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    alone(&mut a, t, t + 100);
    assert!(!a.peer_alive());
    a.add_sa(IN_NEW, IN, false, A);
    a.inbound_stalled(IN_NEW, 5);
    let start = last_start(&events(&mut a), IN_NEW, IN).map_or(0, |x| x.0);
    assert_eq!(start, 0);
    assert!(
        acceptable(&a, IN_NEW, start).is_empty(),
        "nothing unacknowledged"
    );
    a.force_unleased().expect("fenced");
    let start = last_start(&events(&mut a), IN_NEW, IN).map_or(start, |x| x.0);
    // Up to the number refused (sent already), no further.
    assert!(start <= 5, "the fence moves it to {start}");
    a.inbound_stalled(IN_NEW, start + 5);
    assert!(
        !acceptable(&a, IN_NEW, start).is_empty(),
        "runs once fenced"
    );
}
