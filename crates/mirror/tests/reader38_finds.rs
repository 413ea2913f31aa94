//! Reader38's probes of the inbound lease as a bound (commit 9e10348).

mod pair;

use espgate_mirror::{Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

const IN: Direction = Direction::Inbound;

/// Every activation of IN_A among `evs`: (start, bitmap).
fn activations(evs: &[MirrorEvent]) -> Vec<(u64, Vec<u64>)> {
    evs.iter()
        .filter_map(|e| match e {
            MirrorEvent::Activate {
                spi,
                dir,
                start,
                bitmap,
            } if *spi == IN_A && *dir == IN => Some((*start, bitmap.clone())),
            _ => None,
        })
        .collect()
}

/// A stops IN_A and hands it exactly to B, its worker's top being `top`.
fn hand_in_a(from: &mut Mirror, top: u64) {
    from.stop(IN_A, IN).expect("stop");
    from.hand_over_exact(IN_A, IN, top).expect("hand over");
}

/// A runs IN_A up to 230. The mirror link is cut (both alive): B
/// declares A dead and takes IN_A over at the stored bound S, its
/// ownership record carrying S + INTERVAL (counted as acknowledged).
/// The link heals: A loses IN_A to the higher generation and stores the
/// record's bound, S + INTERVAL. B, having accepted nothing, hands IN_A
/// back exactly (a failback) at its top S; A goes on from S and accepts a
/// few packets (to S + 5), then drains IN_A exactly to B at its top. B
/// goes on from S + 5, as an exact hand-over promises ("the peer goes on
/// from the top so that they are not refused"), until A acknowledges
/// B's first state with the value A stores: S + INTERVAL, above anything
/// B sent. B reads that as a use it forgot and restarts past it with
/// everything below seen: S + 6 ..= S + INTERVAL, fresh packets nobody
/// ever accepted, are refused (up to an inbound_interval of them; the
/// old code's takeover record carried only its start, and its exact
/// hand-over started past every bound the giver sent).
#[test]
fn an_exact_hand_over_below_a_takeovers_record_goes_on_from_the_top() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 230), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    // The cut: each alone.
    alone(&mut a, t, t + 100);
    alone(&mut b, t, t + 100);
    assert!(!b.peer_alive());
    assert!(b.take_over() >= 1);
    let evs = events(&mut b);
    let s = activations(&evs).last().expect("B runs IN_A").0;
    assert!(s >= 230, "at the stored bound");
    // Healed.
    t = settle(&mut a, &mut b, t + 110);
    assert!(!a.owns(IN_A, IN) && b.owns(IN_A, IN));
    assert!(a.peer_alive() && b.peer_alive());
    events(&mut a);
    let evs = events(&mut b);
    assert!(
        activations(&evs).is_empty(),
        "B did not move: {:?}",
        activations(&evs)
    );
    // B hands IN_A home exactly: its worker accepted nothing.
    hand_in_a(&mut b, s);
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    let evs = events(&mut a);
    assert_eq!(activations(&evs).last().map(|x| x.0), Some(s));
    // A accepts a few packets (slow traffic), then drains IN_A to B.
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (s, s + 5), &[u64::MAX; 2]);
    events(&mut a);
    events(&mut b);
    hand_in_a(&mut a, s + 5);
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN));
    let evs = events(&mut b);
    let starts: Vec<u64> = activations(&evs).iter().map(|x| x.0).collect();
    assert_eq!(
        starts,
        vec![s + 5],
        "B goes on from A's top; a later restart refuses fresh packets {}..={}",
        s + 6,
        starts.last().copied().unwrap_or(0)
    );
    b.inbound_stalled(IN_A, s + 6);
    settle(&mut a, &mut b, t);
    let evs = events(&mut b);
    assert!(activations(&evs).is_empty(), "{:?}", activations(&evs));
    assert!(b.inbound_limit(IN_A).unwrap() > s + 6);
}

/// The same without a takeover. A's IN_A runs fast (2000 packets a
/// settle), so the bound A reports reaches some 50 numbers past its top
/// (4000): B stores 4000 + ahead. A drains IN_A exactly to B at its top,
/// 4000; B goes on from there (nothing refused) and, having accepted
/// nothing, fails it back exactly at 4000. A goes on from 4000, until B
/// acknowledges A's first state with what B stores: A's old bound, above
/// anything A's new run sent. A restarts past it with everything below
/// seen: the fresh packets 4001..=4000 + ahead, which the exact hand-over
/// was changed not to refuse, are refused one hand-over later.
#[test]
fn a_drain_and_an_exact_failback_refuse_nothing_past_the_top() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    for top in [2000u64, 4000] {
        a.inbound_stalled(IN_A, top);
        t = settle(&mut a, &mut b, t);
        assert!(a.inbound_limit(IN_A).unwrap() > top);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    let stored = b.standby().get(IN_A, IN).unwrap().value;
    assert!(stored > 4000, "A's bound reaches past its top: {stored}");
    events(&mut a);
    events(&mut b);
    hand_in_a(&mut a, 4000);
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN));
    let evs = events(&mut b);
    assert_eq!(
        activations(&evs).iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![4000]
    );
    hand_in_a(&mut b, 4000);
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(IN_A, IN));
    let evs = events(&mut a);
    let starts: Vec<u64> = activations(&evs).iter().map(|x| x.0).collect();
    assert_eq!(
        starts,
        vec![4000],
        "A goes on from the top; a restart refuses fresh 4001..={stored}"
    );
    let _ = t;
}

/// (Found by reader38; not new with the bound.) A frame the peer sent
/// just before it died, delayed on the link past its death, the takeover
/// and the host's fence, ends the fence when it arrives: it cannot be told
/// from that life alive behind a link that was cut, and a live peer may
/// take SAs over, so leases come back while it is heard. Once that life is
/// silent again the fence holds again by itself (reader40's find 4: the
/// host fences once per failure, and the survivor's inbound SA waited at
/// its limit for good): the survivor goes on with no second fence.
#[test]
fn a_late_frame_of_the_fenced_life_ends_the_fence_while_it_is_heard() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 100), &[u64::MAX; 2]);
    // B's last frame, delayed on the link; B dies.
    b.handle_timeout(t + 10);
    let late = sent(&mut b, t + 10);
    assert!(!late.is_empty());
    drop(b);
    alone(&mut a, t, t + 100);
    assert!(!a.peer_alive());
    a.take_over();
    a.force_unleased().expect("fenced");
    t += 110;
    alone(&mut a, t, t + 20);
    events(&mut a);
    // The fenced survivor goes on.
    let top = a.inbound_limit(IN_A).unwrap().max(1000);
    a.inbound_stalled(IN_A, top);
    assert!(
        a.inbound_limit(IN_A).unwrap() > top,
        "fenced: the limit follows"
    );
    a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
    // The late frame arrives: the fence is over while that life is heard.
    for f in &late {
        let _ = a.handle_frame(t + 30, f);
    }
    assert!(a.peer_alive());
    events(&mut a);
    let next = top + 1;
    a.inbound_stalled(IN_A, next + 5);
    assert!(
        a.inbound_limit(IN_A).unwrap() <= next + 5,
        "a lease again, nobody to acknowledge it: {:?}",
        a.inbound_limit(IN_A)
    );
    // Silent again: the fence holds again, and the survivor goes on.
    alone(&mut a, t + 30, t + 200);
    assert!(!a.peer_alive());
    a.inbound_stalled(IN_A, next + 5);
    assert!(
        a.inbound_limit(IN_A).unwrap() > next + 5,
        "the fenced survivor goes on: limit {:?}",
        a.inbound_limit(IN_A)
    );
}

/// Probe (holds): the end of a fence lowers the worker's limit from its
/// own bound + 1 to the acknowledged bound + 1, and the worker may take
/// the lower limit late. Every limit it held during the fence lies within
/// a bound the next life of the peer stores from its bulk sync, so that
/// life's takeover after the survivor dies starts past all the worker
/// could accept with the limit it still held.
#[test]
fn probe_a_worker_late_to_the_lowered_limit_stays_below_the_next_takeover() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 100), &[u64::MAX; 2]);
    drop(b);
    alone(&mut a, t, t + 100);
    a.take_over();
    a.force_unleased().expect("fenced");
    t += 110;
    // Unleased, the worker runs on: stalls raise the bound and the limit.
    let mut top = a.inbound_limit(IN_A).unwrap() - 1;
    for k in 1..=5u64 {
        let want = top + 37 * k;
        a.inbound_stalled(IN_A, want);
        a.inbound_progress(IN_A, want, &[u64::MAX; 2], 0, want);
        top = want;
        alone(&mut a, t, t + 10);
        t += 20;
    }
    // The highest limit the worker was given, and may still hold.
    let held = a.inbound_limit(IN_A).unwrap();
    let mut evs = events(&mut a);
    let given = evs
        .iter()
        .filter_map(|e| match e {
            MirrorEvent::LimitRaised { spi, dir, limit } if *spi == IN_A && *dir == IN => {
                Some(*limit)
            }
            _ => None,
        })
        .max()
        .unwrap_or(held)
        .max(held);
    // B's next life: the fence ends, the limit drops.
    let mut b2 = node(B, 7, t);
    t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    evs.extend(events(&mut a));
    assert!(a.inbound_limit(IN_A).unwrap() <= given);
    // A dies at once; B2 takes IN_A over.
    drop(a);
    alone(&mut b2, t, t + 100);
    b2.take_over();
    let evs = events(&mut b2);
    let (start, _) = activations(&evs).last().cloned().expect("B2 runs IN_A");
    assert!(
        start >= given - 1,
        "B2 starts at {start}; A's worker may have accepted up to {}",
        given - 1
    );
}

/// Probe (holds): an exact hand-over starts the peer at the worker's top,
/// below the bound the giver reported and the peer stores; the peer runs
/// on (stall, acknowledgement, accept) and dies unheard; the giver's
/// takeover starts past everything the peer accepted.
#[test]
fn probe_an_exact_hand_over_below_the_stored_bound_then_the_receivers_death() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    for top in [2000u64, 4000] {
        a.inbound_stalled(IN_A, top);
        t = settle(&mut a, &mut b, t);
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    assert!(b.standby().get(IN_A, IN).unwrap().value > 4000);
    hand_in_a(&mut a, 4000);
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN));
    // B accepts up to 4030 as its worker does, then a stall past it that
    // A acknowledges.
    t = accepts_up_to(&mut b, &mut a, IN_A, t, (4000, 4030), &[u64::MAX; 2]);
    let took = b.inbound_limit(IN_A).unwrap() - 1;
    drop(b);
    alone(&mut a, t, t + 100);
    events(&mut a);
    a.take_over();
    let evs = events(&mut a);
    let (start, _) = activations(&evs).last().cloned().expect("A runs IN_A");
    assert!(
        start >= took,
        "A starts at {start}; B may have accepted up to {took}"
    );
}
