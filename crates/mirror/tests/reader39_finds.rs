//! Reader39's probes of the inbound bound and of the exact hand-over's
//! acknowledgement cap (commit 0893571).

mod pair;

use espgate_wire::Direction;
use pair::*;

const IN: Direction = Direction::Inbound;

/// Find 1 (promise 2, replay accepted; new with 0893571). A runs IN_A up
/// to 230. The link is cut both ways (both alive): B takes IN_A over at
/// the stored bound S (its worker accepts nothing); A's host fences B,
/// so A moves IN_A past what B's life may have done (three intervals past
/// its mark) and its worker, unleased, accepts a run R there. The link
/// heals: B's frames reach A first (B's takeover, a higher generation:
/// A releases IN_A and queues its final state F >= max R for B as a
/// copy), and A's frames of the moment before (A heard, synchronised)
/// reach B, which at once fails IN_A back to A exactly at its worker's
/// top S (a failback: B's run accepted nothing), before A's copy reaches
/// it. A goes on from S, `exact`. B then stores F (A's copy, A's
/// states) and acknowledges A's states with it, above all A's new run
/// sent: before 0893571 A read that as a use it forgot and moved past F;
/// now the cap takes it as an acknowledgement of what A sent, and A's
/// worker accepts R a second time.
///
/// (B is the fenced life, alive behind the cut, that answers again: the
/// docs say it "must restart before it rejoins" and `espgate host` gives
/// it nothing and has it take nothing over, but its own automatic
/// failback is a hand-over it makes, after `failback_delay_ms`, once it
/// hears A synchronised; A's copy must then be late or lost that long.
/// The code before 0893571 passes this test: the acknowledgement above
/// all A sent moved A past F.)
#[test]
fn an_exact_failback_racing_the_fenced_owners_final_accepts_its_run_again() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    // The cut: each declares the other dead.
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!a.peer_alive() && !b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    // A's host fences B: A moves IN_A past B's possible run, unleased.
    a.force_unleased().expect("fenced");
    let (start_a, _) = last_start(&events(&mut a), IN_A, IN).expect("A moved IN_A");
    assert!(start_a > s);
    t += 110;
    let (run, top_a) = alone_takes(&mut a, start_a, start_a + 120, t, 40);
    assert!(!run.is_empty(), "A's fenced worker accepts a run");
    t += 20;
    // The heal: A's frames of this moment held; B's delivered to A first.
    a.handle_timeout(t);
    b.handle_timeout(t);
    let fa = sent(&mut a, t);
    deliver(&mut b, &mut a, t);
    assert!(!a.owns(IN_A, IN), "B's takeover wins");
    for f in &fa {
        let _ = b.handle_frame(t, f);
    }
    assert!(b.peer_alive() && b.peer_synced());
    // B fails IN_A back exactly, its worker at S.
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, s).expect("hand over");
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    let (back, _) = last_start(&events(&mut a), IN_A, IN).expect("A runs IN_A");
    assert!(back >= s);
    // A's worker goes on from there as far as A's fenced run went.
    let (took, _, _) = worker_takes(&mut a, &mut b, back, top_a, t, 40);
    let twice = common(&run, &took);
    assert!(
        twice.is_empty(),
        "A accepted {}..={} fenced; {} of them again: {:?}..",
        run[0],
        run[run.len() - 1],
        twice.len(),
        twice.first()
    );
}

/// Find 2 (promise 3, fresh packets refused after a crash; not new with
/// the bound, but it undoes its must-show wherever `espgate host` runs).
/// A runs IN_A at a low rate (its bound is its top, 230) and is killed.
/// B takes IN_A over at the stored bound S = 230, refusing nothing, and
/// `espgate host` fences A, as it does after every takeover (README:
/// "until the peer is fenced (`espgate host` does it after a takeover)").
/// The fence moves every SA B owns past what A's life may have done
/// unheard: IN_A, taken over a moment ago, restarts at its reach (S +
/// INTERVAL) plus three intervals with everything below seen, so the next
/// 4 x INTERVAL fresh packets (4096 at the default interval: at 10
/// packets a second, close to seven minutes of the tunnel) are refused,
/// though A accepted nothing past S and nothing arrived in
/// `inbound_ahead_ms`.
///
/// Fixed for a pair under a host, which sets `inbound_grace: 0`: a lost
/// life of the peer accepted nothing unacknowledged, so the fence moves
/// nothing. (With a grace the fence still moves four graces: the price
/// `protocol/grace.rs` shows.)
#[test]
fn with_no_grace_the_hosts_fence_after_a_crash_takeover_refuses_nothing() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    drop(a);
    alone(&mut b, t, t + 100);
    assert!(!b.peer_alive());
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    assert!(s <= 231, "the takeover refuses nothing at this rate: {s}");
    b.force_unleased().expect("the host fences A");
    let start = last_start(&events(&mut b), IN_A, IN).map_or(s, |x| x.0);
    assert!(
        start <= s + 1,
        "A accepted up to 230; after the fence B's IN_A starts at {start}: {} fresh packets refused",
        start - 230
    );
}

/// Find 3 (promise 3, fresh packets refused after a crash; the taker's
/// reach of commit 9e10348). A runs IN_A at a low rate up to 230. The
/// mirror link is cut (both alive): B takes IN_A over at the stored bound
/// S, its ownership record carrying S + INTERVAL (the reach its start
/// counts as acknowledged). The link heals: A loses IN_A and stores the
/// reach. B's worker accepts a few packets (to S + 5, slowly: its bound is
/// its top, which A acknowledges) and B is killed before it fails IN_A
/// back. A takes IN_A over at the reach: S + 6 ..= S + INTERVAL, fresh
/// packets nobody accepted and far more than arrive in
/// `inbound_ahead_ms`, are refused (and a fence of B afterwards moves it
/// three intervals further, as find 2 shows).
///
/// Fixed for a pair under a host (`inbound_grace: 0`): a takeover's
/// record carries its start, no reach. (With a grace the reach is what
/// the taker may have accepted unheard in the split brain, and a takeover
/// after its death must skip it.)
#[test]
fn with_no_grace_a_takeover_after_the_takers_crash_refuses_no_reach() {
    let (mut a, mut b) = (graceless(A, 1, 0), graceless(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(b.take_over() >= 1);
    let (s, _) = last_start(&events(&mut b), IN_A, IN).expect("B runs IN_A");
    t = settle(&mut a, &mut b, t + 110);
    assert!(a.peer_alive() && b.peer_alive() && !a.owns(IN_A, IN));
    events(&mut a);
    // Slow traffic: B accepts a packet a settle.
    for top in s + 1..=s + 5 {
        if b.inbound_limit(IN_A).unwrap() <= top {
            b.inbound_stalled(IN_A, top);
            t = settle(&mut a, &mut b, t);
        }
        assert!(b.inbound_limit(IN_A).unwrap() > top);
        b.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top - s);
        t = settle(&mut a, &mut b, t);
    }
    assert!(
        last_start(&events(&mut b), IN_A, IN).is_none(),
        "B did not move"
    );
    drop(b);
    alone(&mut a, t, t + 100);
    assert!(a.take_over() >= 1);
    let (start, _) = last_start(&events(&mut a), IN_A, IN).expect("A runs IN_A");
    assert!(
        start <= s + 5 + 1,
        "B accepted up to {}; A starts at {start}: {} fresh packets refused",
        s + 5,
        start - (s + 5)
    );
}

/// Probe (passes): a split brain that is not a death for the exact
/// holder. A runs IN_A fast (its bound reaches past its top) and drains
/// it exactly to B at its top; B goes on (`exact`), accepting a few
/// numbers as A acknowledges them. The link then fails one way only: B
/// hears A throughout (its `exact` flag stays), A hears nothing of B,
/// declares it dead and takes IN_A over. A starts past all B accepted;
/// B, hearing A's takeover, releases IN_A; nothing is accepted twice.
#[test]
fn probe_a_one_way_cut_under_an_exact_holder_accepts_nothing_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    for top in [2000u64, 4000] {
        a.inbound_stalled(IN_A, top);
        t = settle(&mut a, &mut b, t);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    a.stop(IN_A, IN).expect("stop");
    a.hand_over_exact(IN_A, IN, 4000).expect("hand over");
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN));
    events(&mut b);
    let (took_b, top_b, t2) = worker_takes(&mut b, &mut a, 4000, 4030, t, 40);
    t = t2;
    assert!(!took_b.is_empty() && top_b > 4000);
    // One way: A's frames reach B, B's are lost.
    for now in (t..=t + 100).step_by(10) {
        a.handle_timeout(now);
        b.handle_timeout(now);
        deliver(&mut a, &mut b, now);
        mute(&mut b, now);
    }
    t += 110;
    assert!(!a.peer_alive() && b.peer_alive());
    events(&mut a);
    assert!(a.take_over() >= 1);
    let (start, _) = last_start(&events(&mut a), IN_A, IN).expect("A runs IN_A");
    deliver(&mut a, &mut b, t);
    assert!(!b.owns(IN_A, IN), "B lost IN_A to the takeover");
    assert!(
        start >= top_b,
        "B accepted up to {top_b}; A's takeover starts at {start}"
    );
}

/// Find 6 (promise 3, fresh packets refused after an exact hand-over,
/// the pair healthy: reader38's find 1b back after a blip). A's IN_A runs
/// fast, so the bound B stores reaches some 50 numbers past A's top
/// (4000). A drains IN_A exactly to B at 4000 and B, having accepted
/// nothing, fails it back exactly at 4000: A goes on from there (`exact`),
/// B storing A's old bound. B's frames to A are then lost for a few
/// heartbeats (a lossy mirror link; A's reach B throughout): A declares B
/// dead, which clears the flag, though nobody takes anything over
/// (`takeover: manual`, the host seeing both nodes) and B's life goes on,
/// heard again at once. A's next state is acknowledged with the bound B
/// stores from A's earlier run, above all A's new run sent: read as a use
/// A forgot, A restarts past it and the fresh packets 4001..= that bound,
/// which nobody accepted, are refused.
///
/// Kept as the documented price: the flag must end at a silence, since a
/// peer that took the SA over meanwhile and lost its ownership record (the
/// SA deleted there and added again) acknowledges its own use
/// (reader40's find 1). What is refused is bounded by the old bound: the
/// SA's traffic of `inbound_ahead_ms` when A last ran it.
#[test]
fn a_blip_after_an_exact_failback_refuses_at_most_the_old_bound() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    for top in [2000u64, 4000] {
        a.inbound_stalled(IN_A, top);
        t = settle(&mut a, &mut b, t);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    let stored = b.standby().get(IN_A, IN).unwrap().value;
    assert!(stored > 4000, "A's bound reaches past its top: {stored}");
    a.stop(IN_A, IN).expect("stop");
    a.hand_over_exact(IN_A, IN, 4000).expect("drain");
    t = settle(&mut a, &mut b, t);
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, 4000).expect("failback");
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    assert_eq!(starts_in(&events(&mut a), IN_A, IN).last(), Some(&4000));
    // The blip: B's frames lost for 40 ms, A's delivered.
    for now in (t..=t + 40).step_by(10) {
        a.handle_timeout(now);
        b.handle_timeout(now);
        mute(&mut b, now);
        deliver(&mut a, &mut b, now);
    }
    assert!(!a.peer_alive() && b.peer_alive(), "A declared B dead");
    t = settle(&mut a, &mut b, t + 50);
    assert!(a.peer_alive() && a.owns(IN_A, IN));
    // A's worker wants the next packets: those up to the old bound are
    // refused, none past it.
    let (took, top, t) = worker_takes(&mut a, &mut b, 4000, 4020, t, 40);
    assert!(took.is_empty(), "refused up to the old bound {stored}");
    let (took, _, _) = worker_takes(&mut a, &mut b, top, stored + 20, t, 40);
    assert_eq!(
        took,
        (stored + 1..=stored + 20).collect::<Vec<_>>(),
        "fresh packets past the old bound {stored} refused"
    );
}

/// Probe (passes): an exact run handed back exactly again, and again. A's
/// IN_A runs fast to 4000 (B stores a bound past it); A drains it to B
/// exactly, B accepts to 4010 (its acknowledgements capped at what it
/// sent), fails it back exactly, A accepts to 4020 and drains it again,
/// B accepts to 4030 and dies. A's takeover starts past everything B
/// accepted, and refuses no more than B's last bound past its top.
#[test]
fn probe_exact_hand_overs_back_and_forth_then_the_holders_death() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    for top in [2000u64, 4000] {
        a.inbound_stalled(IN_A, top);
        t = settle(&mut a, &mut b, t);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    let mut all = Vec::new();
    let mut top = 4000;
    for k in 0..3 {
        let (from, to) = if k % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        from.stop(IN_A, IN).expect("stop");
        from.hand_over_exact(IN_A, IN, top).expect("hand over");
        t = settle(from, to, t);
        assert!(to.owns(IN_A, IN));
        assert_eq!(starts_in(&events(to), IN_A, IN), vec![top], "exact");
        let (took, now_top, t2) = worker_takes(to, from, top, top + 10, t, 40);
        assert_eq!(took, (top + 1..=top + 10).collect::<Vec<_>>());
        all.extend(took);
        top = now_top;
        t = t2;
    }
    assert!(b.owns(IN_A, IN));
    drop(b);
    alone(&mut a, t, t + 100);
    events(&mut a);
    assert!(a.take_over() >= 1);
    let (start, _) = last_start(&events(&mut a), IN_A, IN).expect("A runs IN_A");
    assert!(start >= top, "B accepted up to {top}; A starts at {start}");
    assert!(
        start <= top + INTERVAL,
        "A starts at {start}, {} past B's top",
        start - top
    );
}

/// Probe (passes): the bounds a fenced peer's next life counts as
/// acknowledged (`count_reported`). B dies; A takes over and fences it;
/// A's IN_A, unleased, runs to bounds only A knows. B's next life is
/// heard (A's lease is back with its bound counted as acknowledged, so
/// A's worker goes on) and synchronises; A's worker runs on under the
/// lease; A dies. B2's takeover starts past everything A accepted.
#[test]
fn probe_bounds_counted_for_a_fenced_peers_next_life_bound_its_takeover() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    drop(b);
    alone(&mut a, t, t + 100);
    a.take_over();
    a.force_unleased().expect("fenced");
    t += 110;
    let (start, _) = last_start(&events(&mut a), IN_A, IN).expect("A moved IN_A");
    let (_, top) = alone_takes(&mut a, start, start + 150, t, 40);
    let mut b2 = node(B, 5, t + 10);
    // B2's first frames: A hears it before anything else.
    deliver(&mut b2, &mut a, t + 10);
    assert!(
        a.inbound_limit(IN_A).unwrap() > top,
        "counted as acknowledged"
    );
    t = settle(&mut a, &mut b2, t + 10);
    assert!(b2.synced());
    events(&mut a);
    let (_, top, t2) = worker_takes(&mut a, &mut b2, top, top + 100, t, 40);
    let held = a.inbound_limit(IN_A).unwrap() - 1;
    t = t2;
    drop(a);
    alone(&mut b2, t, t + 100);
    assert!(b2.take_over() >= 1);
    let (s2, _) = last_start(&events(&mut b2), IN_A, IN).expect("B2 runs IN_A");
    assert!(
        s2 >= held.max(top),
        "A accepted up to {top} and may have to {held}; B2 starts at {s2}"
    );
}

/// Probe (passes): a late acknowledgement from an older exchange. A's
/// IN_A runs fast; every frame B sends while acknowledging A's run is
/// kept. A drains IN_A exactly to B and B fails it back exactly (A goes on
/// `exact`, below the bound B stores). The kept frames arrive again (an
/// attacker's replay, or a late copy): the receive filter refuses them
/// (their counters are not above the last accepted), and A's run is
/// neither moved nor lifted past what B acknowledged of it.
#[test]
fn probe_a_late_acknowledgement_of_an_older_run_changes_nothing() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = 0;
    let mut kept = Vec::new();
    for _ in 0..6 {
        t += 60;
        kept.extend(exchange(&mut a, &mut b, t).1);
    }
    for top in [2000u64, 4000] {
        a.inbound_stalled(IN_A, top);
        for _ in 0..6 {
            t += 60;
            kept.extend(exchange(&mut a, &mut b, t).1);
        }
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        for _ in 0..6 {
            t += 60;
            kept.extend(exchange(&mut a, &mut b, t).1);
        }
    }
    a.stop(IN_A, IN).expect("stop");
    a.hand_over_exact(IN_A, IN, 4000).expect("drain");
    t = settle(&mut a, &mut b, t);
    b.stop(IN_A, IN).expect("stop");
    b.hand_over_exact(IN_A, IN, 4000).expect("failback");
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    events(&mut a);
    let limit = a.inbound_limit(IN_A).unwrap();
    for f in &kept {
        assert!(a.handle_frame(t, f).is_err(), "an old frame refused");
    }
    assert!(last_start(&events(&mut a), IN_A, IN).is_none(), "not moved");
    assert_eq!(a.inbound_limit(IN_A).unwrap(), limit, "not lifted");
}
