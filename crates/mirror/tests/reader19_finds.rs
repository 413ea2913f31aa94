//! reader19: frames above `max_frame` (after 91bd437) and the alarms of
//! c6fc380, tried against a pair of real `Mirror`s.

mod pair;

use espgate_mirror::{ALARM_AFTER_MS, Mirror, MirrorConfig, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

/// The largest `max_frame` a node may have (`MAX_MIRROR_FRAME`).
const BIG_FRAME: usize = 2034;
/// Bitmap words of a 15360-packet window: the largest a 2034-byte frame
/// carries in a bulk part (`progress::inbound_frame_len`).
const BIG_WORDS: usize = 240;

fn with_frame(me: u32, max_frame: usize) -> MirrorConfig {
    MirrorConfig {
        max_frame,
        ..cfg(me)
    }
}

/// Every frame of `frames` no larger than `max`.
fn assert_fit(who: &str, frames: &[Vec<u8>], max: usize) {
    let biggest = frames.iter().map(Vec::len).max().unwrap_or(0);
    assert!(
        biggest <= max,
        "{who} built a {biggest}-byte frame; its max_frame is {max}"
    );
}

/// A (max_frame 2034) reports IN_A with a 15360-packet window (240
/// words, as its own configuration allows) to B (max_frame 1400, the
/// default, whose own copy of IN_A has a window its frames carry). B
/// stored the 240 words as they came; it now keeps the newest its frames
/// carry. Returns the pair and the time.
fn a_with_a_larger_window() -> (Mirror, Mirror, u64) {
    let mut a = node_from(with_frame(A, BIG_FRAME), 1, 0);
    let mut b = node_from(with_frame(B, 1400), 2, 0);
    let t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    let top = a.inbound_limit(IN_A).unwrap() - 1;
    a.inbound_progress(IN_A, top, &vec![u64::MAX; BIG_WORDS], 0, top);
    let t = settle(&mut a, &mut b, t);
    let kept = &b.standby().get(IN_A, Direction::Inbound).unwrap().bitmap;
    assert!(
        !kept.is_empty() && kept.len() < BIG_WORDS && kept.iter().all(|w| *w == u64::MAX),
        "B keeps {} of A's {BIG_WORDS} words",
        kept.len()
    );
    (a, b, t)
}

/// Find 1a, fixed (a state's bitmap is cut to what this node's frames
/// carry as it arrives). Nodes whose windows for one SA differ (each node's
/// configuration checks only its own windows against its own
/// `max_frame`: a rolling change of `replay_window` and `max_frame`, one
/// node at a time). B keeps A's 240-word bitmap as it came, and sends it
/// back as a copy in the bulk sync of A's next life: one bulk part of a
/// ~1990-byte frame from a node whose `max_frame` is 1400 (its mirror
/// port opened with MTU 1500). The port drops it at every resend, and A2
/// never synchronises: the failure 91bd437 fixed, by another path.
#[test]
fn a_peers_larger_window_goes_back_in_a_bulk_part_this_node_can_carry() {
    let (a, mut b, t) = a_with_a_larger_window();
    drop(a);
    let mut a2 = node_from(with_frame(A, BIG_FRAME), 5, t);
    let mut from_b = Vec::new();
    let mut now = t;
    for _ in 0..6 {
        now += 60;
        from_b.extend(exchange(&mut a2, &mut b, now).1);
    }
    assert!(a2.synced());
    assert_fit("B", &from_b, 1400);
}

/// Find 1b, fixed the same way. The same pair; A dies and B takes IN_A over: its strict
/// restart keeps a window as long as the stored one (`restart_window`:
/// `vec![u64::MAX; stored.bitmap.len()]`), and B's own state record of
/// IN_A is ~1990 bytes on a node whose `max_frame` is 1400. Its port
/// drops it at every refresh: A's next life hears nothing of how far B
/// ran IN_A until B's worker reports again (an idle SA never does).
#[test]
fn a_takeover_of_a_peers_larger_window_fits_this_nodes_frames() {
    let (a, mut b, t) = a_with_a_larger_window();
    drop(a);
    declare_dead(&mut b, t + 100);
    assert_eq!(b.take_over(), 2, "OUT_A and IN_A");
    let frames: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t + 200)).collect();
    assert!(b.owns(IN_A, Direction::Inbound));
    assert_fit("B", &frames, 1400);
}

/// Held: with one window size on both nodes (what each node's
/// configuration check ensures when both run the same SA list), the
/// largest window a node's `max_frame` allows goes through every path
/// 91bd437 asked about in frames no larger than it: the owner's record,
/// the peer's copy in a bulk, the peer's strict takeover (restart_window
/// of the stored window), the owner's next life recovering it (union of
/// its own and the copy), and an add at run time over that history.
#[test]
fn the_largest_window_fits_every_path_when_both_nodes_agree() {
    let max = 1400;
    // What `progress::inbound_frame_len` lets a 1400-byte frame carry.
    use espgate_wire::mirror::{HEADER_LEN, MAC_LEN, RECORD_HEADER_LEN, SA_STATE_BODY_LEN};
    let part = RECORD_HEADER_LEN + 16;
    let words = (max - HEADER_LEN - MAC_LEN - part - RECORD_HEADER_LEN - SA_STATE_BODY_LEN) / 8;
    assert!(words > 150, "{words}");
    let mut a = node_from(with_frame(A, max), 1, 0);
    let mut b = node_from(with_frame(B, max), 2, 0);
    let mut all = Vec::new();
    let mut run = |a: &mut Mirror, b: &mut Mirror, t: u64| {
        let mut t = t;
        for _ in 0..6 {
            t += 60;
            let (fa, fb) = exchange(a, b, t);
            all.extend(fa);
            all.extend(fb);
        }
        t
    };
    let t = run(&mut a, &mut b, 0);
    let top = a.inbound_limit(IN_A).unwrap() - 1;
    a.inbound_progress(IN_A, top, &vec![u64::MAX; words], 0, top);
    let t = run(&mut a, &mut b, t);
    // B takes IN_A over from a dead A, reports it, and A's next life
    // synchronises and gets it back.
    mute(&mut a, t);
    drop(a);
    declare_dead(&mut b, t + 100);
    assert_eq!(b.take_over(), 2, "OUT_A and IN_A");
    let top = b.inbound_limit(IN_A).unwrap() - 1;
    b.inbound_progress(IN_A, top, &vec![u64::MAX; words], 0, top);
    let mut a2 = node_from(with_frame(A, max), 5, t + 200);
    let t = run(&mut a2, &mut b, t + 200);
    assert!(a2.synced());
    assert_eq!(b.hand_back(), 2);
    let t = run(&mut a2, &mut b, t);
    assert!(a2.owns(IN_A, Direction::Inbound));
    // Deleted and added again at run time over B's history.
    assert!(a2.remove_sa(IN_A, Direction::Inbound));
    assert!(b.remove_sa(IN_A, Direction::Inbound));
    let t = run(&mut a2, &mut b, t);
    a2.add_sa(IN_A, Direction::Inbound, false, A);
    b.add_sa(IN_A, Direction::Inbound, false, A);
    run(&mut a2, &mut b, t);
    assert!(a2.owns(IN_A, Direction::Inbound));
    assert_fit("the pair", &all, max);
}

fn count(evs: &[MirrorEvent], f: impl Fn(&MirrorEvent) -> bool) -> usize {
    evs.iter().filter(|e| f(e)).count()
}

fn is_stalled(e: &MirrorEvent) -> bool {
    matches!(e, MirrorEvent::Stalled { .. })
}

fn is_unstalled(e: &MirrorEvent) -> bool {
    matches!(e, MirrorEvent::Unstalled { .. })
}

/// Held: a worker's report of the last number its limit allows (a normal
/// interval crossing at `limit - 1`, no packet refused) on a pair whose
/// link works raises no alarm: the acknowledgement moves the limit past
/// it before a second is up, and the entry goes.
#[test]
fn a_report_at_the_limit_on_a_working_link_is_no_alarm() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut a);
    let mut evs = Vec::new();
    for _ in 0..5 {
        let limit = a.limit(OUT_A).unwrap();
        a.outbound_progress(OUT_A, limit - 1, 0, limit - 1);
        for _ in 0..10 {
            t += 50;
            exchange(&mut a, &mut b, t);
            evs.extend(events(&mut a));
        }
    }
    assert!(t >= 2 * ALARM_AFTER_MS);
    assert_eq!(count(&evs, is_stalled), 0, "{evs:?}");
}

/// Held: a stall told, then the SA deleted (or handed back) while it
/// waits: `Unstalled` is told once, and nothing of it is told again
/// (the entry left the map).
#[test]
fn a_stalled_sa_deleted_is_unstalled_once() {
    for hand_back in [false, true] {
        let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
        let t = settle(&mut a, &mut b, 0);
        drop(b);
        declare_dead(&mut a, t + 100);
        assert_eq!(a.take_over(), 1);
        events(&mut a);
        // OUT_B, taken over, waits at its limit: B is dead, unfenced.
        let limit = a.limit(OUT_B).unwrap();
        a.outbound_progress(OUT_B, limit - 1, 0, 1);
        let evs = alone(&mut a, t + 100, t + 100 + 2 * ALARM_AFTER_MS);
        assert_eq!(count(&evs, is_stalled), 1, "{evs:?}");
        let t = t + 100 + 2 * ALARM_AFTER_MS;
        if hand_back {
            // B's next life synchronises; A hands OUT_B back.
            let mut b2 = node(B, 7, t);
            let t2 = settle(&mut a, &mut b2, t);
            a.hand_back();
            let t3 = settle(&mut a, &mut b2, t2);
            assert!(!a.owns(OUT_B, Direction::Outbound));
            // The alarms are looked at by `handle_timeout` (settle serves
            // only frames).
            let evs = alone(&mut a, t3, t3 + 200);
            assert_eq!(count(&evs, is_unstalled), 1, "{evs:?}");
        } else {
            assert!(a.remove_sa(OUT_B, Direction::Outbound));
            let evs = alone(&mut a, t + 10, t + 3 * ALARM_AFTER_MS);
            assert_eq!(count(&evs, is_unstalled), 1, "{evs:?}");
            assert_eq!(count(&evs, is_stalled), 0, "{evs:?}");
            // Added again, as the peer's: no stale stall of it is told.
            a.add_sa(OUT_B, Direction::Outbound, false, B);
            let evs = alone(&mut a, t + 4 * ALARM_AFTER_MS, t + 6 * ALARM_AFTER_MS);
            assert_eq!(count(&evs, is_stalled), 0, "{evs:?}");
        }
    }
}

/// Held: a peer fenced (`Liveness::Fenced`) whose SAs were taken over is
/// nobody's orphan; one fenced and not taken over is, once.
#[test]
fn a_fenced_peer_orphans_only_what_nobody_took() {
    for take in [true, false] {
        let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
        let t = settle(&mut a, &mut b, 0);
        drop(b);
        declare_dead(&mut a, t + 100);
        if take {
            assert_eq!(a.take_over(), 1);
        }
        let _ = a.force_unleased();
        let evs = alone(&mut a, t + 100, t + 100 + 3 * ALARM_AFTER_MS);
        let orphaned = count(&evs, |e| matches!(e, MirrorEvent::Orphaned { .. }));
        assert_eq!(orphaned, usize::from(!take), "take {take}: {evs:?}");
        assert_eq!(count(&evs, is_stalled), 0, "fenced: no lease to wait for");
    }
}

/// Held: an inbound SA whose far end ran past the limit (the worker's
/// stall report) is told once after a second while the peer is silent,
/// and `Unstalled` comes once the peer's acknowledgement of the moved
/// state lifts the limit past the number wanted.
#[test]
fn an_inbound_stall_is_told_and_ends_when_the_limit_passes_it() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    let limit = a.inbound_limit(IN_A).unwrap();
    let wanted = limit + 5000;
    a.inbound_stalled(IN_A, wanted);
    let evs = alone(&mut a, t, t + 2 * ALARM_AFTER_MS);
    assert_eq!(count(&evs, is_stalled), 1, "{evs:?}");
    let t = settle(&mut a, &mut b, t + 2 * ALARM_AFTER_MS);
    assert!(a.inbound_limit(IN_A).unwrap() > wanted);
    let evs = alone(&mut a, t, t + 300);
    assert_eq!(count(&evs, is_unstalled), 1, "{evs:?}");
}
