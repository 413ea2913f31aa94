//! reader20: 09ea18c (a shorter bitmap's missing numbers are seen; a
//! peer's longer bitmap is cut as it arrives), tried against a pair of
//! real `Mirror`s and the worker's `ReplayWindow::restore`.

mod pair;

use espgate_esp::replay::ReplayWindow;
use espgate_mirror::{InboundTakeover, Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

fn lenient(me: u32, epoch: u64, now: u64) -> Mirror {
    node_with(me, epoch, now, InboundTakeover::Lenient)
}

/// The worker's window of `size` packets, activated as `m` last told it
/// for IN_A among `evs`.
fn worker(evs: &[MirrorEvent], size: u32) -> (u64, ReplayWindow) {
    worker_of(evs, IN_A, size)
}

/// The worker's window of `size` packets for inbound `spi`, as last
/// activated among `evs`.
fn worker_of(evs: &[MirrorEvent], spi: u32, size: u32) -> (u64, ReplayWindow) {
    let (top, bitmap) = last_start(evs, spi, Direction::Inbound).expect("activated");
    (top, ReplayWindow::restore(size, top, &bitmap))
}

/// `m` (owning IN_A, its worker activated at `from`) accepts every
/// number up to `to`, reporting it at each interval with `words` words
/// all seen (its window), the frames exchanged so the lease moves: a step
/// past the limit is first reported as a stall (the lease reaches only as
/// far past the top as the SA's rate does) and acknowledged, as the real
/// worker does it.
fn run_in_a(
    m: &mut Mirror,
    other: &mut Mirror,
    from: u64,
    to: u64,
    words: usize,
    mut t: u64,
) -> u64 {
    let mut top = from;
    while top < to {
        let next = (top + INTERVAL).min(to);
        if m.inbound_limit(IN_A).unwrap() <= next {
            m.inbound_stalled(IN_A, next);
            t = settle(m, other, t);
        }
        let limit = m.inbound_limit(IN_A).unwrap();
        let next = next.min(limit - 1);
        assert!(next > top, "stuck at {top}, limit {limit}");
        top = next;
        m.inbound_progress(IN_A, top, &vec![u64::MAX; words], 0, top);
        t = settle(m, other, t);
    }
    t
}

/// The scenario of find 1, in `mode`: A's window for IN_A is 64
/// packets (1 word), B's 512 (8 words): a rolling change of
/// `replay_window`, both within `max_frame`. B ran IN_A for a while (A
/// dead) and handed it back to A's next life, which accepts `x` and runs
/// on 300 past it, reporting to B; then A2 dies and B takes IN_A over.
/// Returns `x` and B's worker window as activated.
fn b_takes_back_what_a2_ran(mode: InboundTakeover) -> (u64, u64, ReplayWindow) {
    let (mut a, mut b) = (node_with(A, 1, 0, mode), node_with(B, 2, 0, mode));
    let t = settle(&mut a, &mut b, 0);
    let t = run_in_a(&mut a, &mut b, 0, 50, 1, t);
    // A dies; B takes IN_A over and accepts everything up to t1.
    mute(&mut a, t);
    drop(a);
    declare_dead(&mut b, t + 100);
    assert_eq!(b.take_over(), 2, "OUT_A and IN_A");
    let (s1, _) = last_start(&events(&mut b), IN_A, Direction::Inbound).unwrap();
    let mut a2 = node_with(A, 5, 0, mode);
    let mut t = t + 200;
    // B's run (A2 alive and synchronised, so B's lease moves).
    t = settle(&mut a2, &mut b, t);
    assert!(a2.synced());
    let t1 = s1 + 250;
    t = run_in_a(&mut b, &mut a2, s1, t1, 8, t);
    // Hand-back: B stores its final, 8 words at t1.
    events(&mut a2);
    assert_eq!(b.hand_back(), 2);
    t = settle(&mut a2, &mut b, t);
    assert!(a2.owns(IN_A, Direction::Inbound));
    let stored = b.standby().get(IN_A, Direction::Inbound).unwrap().clone();
    assert!(stored.value >= t1, "{stored:?}");
    if mode == InboundTakeover::Lenient {
        assert_eq!(stored.bitmap.len(), 8, "{stored:?}");
    }
    let (s2, _) = last_start(&events(&mut a2), IN_A, Direction::Inbound).unwrap();
    assert!(s2 >= stored.value);
    // A2 accepts x = s2 + 1 and runs 300 past it, reporting its 1-word
    // window; B stores the report.
    let x = s2 + 1;
    let t2 = x + 300;
    t = run_in_a(&mut a2, &mut b, s2, t2, 1, t);
    assert!(b.standby().get(IN_A, Direction::Inbound).unwrap().value >= t2);
    // A2 dies; B takes IN_A over.
    mute(&mut a2, t);
    drop(a2);
    declare_dead(&mut b, t + 100);
    events(&mut b);
    assert_eq!(b.take_over(), 2);
    let (top, w) = worker(&events(&mut b), 512);
    (x, top, w)
}

/// Find 1, fixed: the standby merge and `union` hold the positions past a
/// shorter bitmap seen. 09ea18c makes numbers past a shorter bitmap seen in
/// `ReplayWindow::restore`, but the standby table's `merge` (and the
/// owner's `union` in `recover`) still pads the shorter bitmap with
/// zeros when the entry it meets is longer: the region the short record
/// does not cover becomes explicitly *unseen*, and a longer worker window
/// restored from it accepts it. Here B's standby holds its own 8-word
/// final of IN_A (at t1); A2's 1-word report at t2 = x + 300 merges into
/// 8 words, x (accepted by A2 before that report, above t1) at bit 300 is
/// 0, and B's lenient takeover (start = the stored top, window raised by
/// nothing) activates its 512-packet worker with x fresh: x is accepted
/// a second time, though it came before the last inbound record (all that
/// `InboundTakeover::Lenient` allows to pass again).
#[test]
fn a_shorter_report_merged_into_a_longer_entry_leaves_no_hole_for_a_lenient_takeover() {
    let (x, top, w) = b_takes_back_what_a2_ran(InboundTakeover::Lenient);
    assert!(
        w.check(x).is_err(),
        "B's worker (top {top}) accepts {x} again, accepted by A2 before its report"
    );
}

/// Held: the same scenario with strict inbound takeover (the promise):
/// B's window starts at the stored bound (past all A2 accepted) with
/// everything at and below it seen.
#[test]
fn the_same_with_strict_takeover_accepts_nothing_twice() {
    let (x, top, w) = b_takes_back_what_a2_ran(InboundTakeover::Strict);
    assert!(top > x);
    for seq in 1..=top {
        assert!(w.check(seq).is_err(), "{seq} passes at top {top}");
    }
}

/// Held: an inbound SA added at run time on a synchronised pair (window
/// top 0, nothing known of it) is activated with a window that takes the
/// far end's first packets, in both modes: its restart window is all
/// seen at top 0 only (seq 0, never sent), so the change of
/// `ReplayWindow::restore` refuses nothing legitimate.
#[test]
fn an_inbound_sa_added_at_run_time_takes_its_first_packets() {
    const IN_NEW: u32 = 0x2100;
    for mode in [InboundTakeover::Strict, InboundTakeover::Lenient] {
        let (mut a, mut b) = (node_with(A, 1, 0, mode), node_with(B, 2, 0, mode));
        let t = settle(&mut a, &mut b, 0);
        events(&mut a);
        a.add_sa(IN_NEW, Direction::Inbound, false, A);
        b.add_sa(IN_NEW, Direction::Inbound, false, A);
        settle(&mut a, &mut b, t);
        let evs = events(&mut a);
        let (top, w) = worker_of(&evs, IN_NEW, 64);
        assert_eq!(top, 0, "{mode:?}");
        // The far end's first packets stall the worker (no lease past the
        // top yet); B acknowledges the bound 5.
        a.inbound_stalled(IN_NEW, 5);
        settle(&mut a, &mut b, t);
        assert!(a.inbound_limit(IN_NEW).unwrap() > 5, "{mode:?}");
        for seq in 1..=5 {
            assert!(w.check(seq).is_ok(), "{mode:?}: {seq} refused");
        }
    }
}

/// Held: the cut of 09ea18c loses no seen number for the owner's next
/// life. A (max_frame 2034) reports IN_A with a 240-word window, all
/// seen; B (1400) keeps only the newest words it carries. A dies, A2
/// (lenient, same 15360-packet window) recovers IN_A from B's shorter
/// copy: the numbers past it are seen by `ReplayWindow::restore`, so
/// nothing A accepted passes again.
#[test]
fn a_cut_copy_recovered_by_a_larger_window_refuses_all_it_cut() {
    use espgate_mirror::MirrorConfig;
    let big = |me, epoch, now| {
        node_from(
            MirrorConfig {
                max_frame: 2034,
                ..cfg_with(me, InboundTakeover::Lenient)
            },
            epoch,
            now,
        )
    };
    let mut a = big(A, 1, 0);
    let mut b = lenient(B, 2, 0);
    let t = settle(&mut a, &mut b, 0);
    // A runs IN_A past 240 words (so the cut drops numbers it accepted).
    let top = 16_000;
    let t = run_in_a(&mut a, &mut b, 0, top, 240, t);
    let kept = b
        .standby()
        .get(IN_A, Direction::Inbound)
        .unwrap()
        .bitmap
        .len();
    assert!(kept < 240 && top > 64 * 240, "{kept} words at {top}");
    mute(&mut a, t);
    drop(a);
    let mut a2 = big(A, 5, t + 200);
    settle(&mut a2, &mut b, t + 200);
    assert!(a2.synced());
    let (start, w) = worker(&events(&mut a2), 15360);
    assert!(start >= top);
    for seq in 1..=top {
        assert!(w.check(seq).is_err(), "{seq} passes again at {start}");
    }
}
