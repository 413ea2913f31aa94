//! What a thirteenth fresh reader found against 86fec97 (a lenient inbound
//! SA restarted from a value that came with no window takes everything at
//! and below it as seen), and the scenarios it tried that held.

mod pair;

use espgate_mirror::{InboundTakeover, Mirror};
use espgate_wire::Direction;
use espgate_wire::mirror::MirrorRecord;
use pair::*;

/// The workers' replay window (packets) and its bitmap words.
const WINDOW: u64 = 256;
const WORDS: usize = (WINDOW / 64) as usize;
const ALL: [u64; WORDS] = [u64::MAX; WORDS];
const L: InboundTakeover = InboundTakeover::Lenient;

fn has_ownership(f: &[u8], spi: u32, dir: Direction) -> bool {
    records(f).iter().any(
        |r| matches!(r, MirrorRecord::Ownership { spi: s, dir: d, .. } if *s == spi && *d == dir),
    )
}

fn has_state(f: &[u8], spi: u32, dir: Direction) -> bool {
    records(f)
        .iter()
        .any(|r| matches!(r, MirrorRecord::SaState(s) if s.spi == spi && s.dir == dir))
}

/// A pair (`mode`), synchronised, A having accepted 40 packets of IN_A
/// past its start (1..=40) and B storing that window. A's worker first
/// stalls at 40 (a lease reaches no further than the top without a rate)
/// and the pair settles, B acknowledging 40. Returns both, the time and
/// A's top.
fn pair_at_40(mode: InboundTakeover) -> (Mirror, Mirror, u64, u64) {
    let (mut a, mut b) = (node_with(A, 1, 0, mode), node_with(B, 2, 0, mode));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    let start = last_start(&events(&mut a), IN_A, Direction::Inbound).map_or(0, |s| s.0);
    let top = start + 40;
    a.inbound_stalled(IN_A, top);
    t = settle(&mut a, &mut b, t);
    assert!(a.inbound_limit(IN_A).unwrap() > top);
    a.inbound_progress(IN_A, top, &ALL, 40, 40);
    t = settle(&mut a, &mut b, t);
    let s = b.standby().get(IN_A, Direction::Inbound).unwrap();
    assert_eq!(s.value, top);
    assert!(!s.bitmap.is_empty());
    (a, b, t, top)
}

/// Reader13 find 1 (promise P2 in the form lenient keeps: anything
/// reported in a window that reached the peer never passes again): a
/// lenient hand-back restarts the home node's window from the holder's
/// *older* window moved up to the hand-over's start, and the numbers the
/// holder accepted between that older report and the hand-back -- which
/// its final state, in the very frame of the hand-over, reports with its
/// window -- pass again at the home node.
///
/// Steps as found (lenient, interval 100, 256-packet windows): A accepts
/// 1..=40 of IN_A and reports it; A dies; B takes IN_A over (lenient, at
/// 40 with A's window) and accepts 41..=70, which it reports (crossing
/// 50). A's next life synchronises; B's bulk carries B's state of IN_A
/// (top 70, its window) and A2 stores it. B's worker accepts 71..=90 (no
/// multiple of 50 crossed: not due yet), and the host hands back at once.
/// B's frame carries the hand-over record (start 90) *before* the final
/// state (`build_frame` sends `ownership_out` before `due`; `hand_back`
/// puts the final in `due`). A2's `ownership` does not store the start
/// (the owner is A2 itself), and `change` (the `p.owner != me && owner ==
/// me` arm) restarts at `restart_point(stored.value.max(start))` = 90 with
/// `restart_window(&stored, 90)`, `stored` being the table's window of 70:
/// it is non-empty, so the lenient branch moves it up by 20 and 71..=90
/// look unseen. The worker starts at 90 with 71..=90 unseen, limit 190.
/// The final state (90, with 71..=90 seen) then arrives and is merged into
/// the table only (A2 owns the SA: nothing tells the worker). 71..=90,
/// accepted by B and reported in a window that reached A2, pass again.
///
/// With inbound leases reaching only as far as the SA's rate (none here)
/// the run goes: B takes IN_A over at 40 (it may run to 140, the takeover's
/// reach, unacknowledged) and accepts 41..=70; A2's new life moves B's
/// window to 140 (`peer_lost`: lenient steps are zero, the numbers moved
/// over seen) and A2 stores that. B's worker stalls at 160: B reports the
/// bound 160 (141..=160 unseen in the window it sends), A2 stores and
/// acknowledges it; B accepts 141..=160 and hands back at once, the final
/// state (160, all seen) again behind the hand-over record (start 160).
/// (The same shape as 86fec97's: a value with no window -- the hand-over's
/// start -- above the stored window; the change left this caller out.)
///
/// The fix: a lenient window moved up to a higher start takes the numbers
/// it moves over as seen (`raised`, used by `restart_window`, which
/// `change` calls): 71..=90 are seen from the start.
#[test]
fn a_lenient_hand_back_does_not_accept_what_the_holder_reported_in_its_final_state() {
    hand_back_after_an_unreported_run(L);
}

/// Tried and held: find 1 under `strict`: the hand-over restarts IN_A at
/// its start with everything at and below it seen.
#[test]
fn a_strict_hand_back_does_not_accept_what_the_holder_accepted() {
    hand_back_after_an_unreported_run(InboundTakeover::Strict);
}

fn hand_back_after_an_unreported_run(mode: InboundTakeover) {
    let (a, mut b, mut t, a_top) = pair_at_40(mode);
    drop(a);
    t += 100;
    declare_dead(&mut b, t);
    assert!(b.take_over() > 0);
    let (bstart, _) = last_start(&events(&mut b), IN_A, Direction::Inbound).unwrap();
    assert!(b.inbound_limit(IN_A).unwrap() > bstart + 30);
    let top = bstart + 30;
    b.inbound_progress(IN_A, top, &ALL, top, 30);
    mute(&mut b, t);
    t += 10;
    let mut a2 = node_with(A, 5, t, mode);
    t = settle(&mut a2, &mut b, t);
    assert!(a2.synced() && b.owns(IN_A, Direction::Inbound));
    // (A's new life moved B's window to its takeover's reach, an interval
    // past its start; strict, three intervals further on.)
    let moved = last_start(&events(&mut b), IN_A, Direction::Inbound).map_or(top, |s| s.0);
    assert_eq!(
        a2.standby().get(IN_A, Direction::Inbound).unwrap().value,
        moved
    );
    let mut b_took: Vec<u64> = (bstart + 1..=top).collect();
    let top = moved;
    let fin = top + 20;
    // B's worker stalls at `fin` (its lease reaches no further than the
    // top); B reports the bound `fin` (top+1..=fin unseen in the window it
    // sends) and A2 acknowledges it.
    b.inbound_stalled(IN_A, fin);
    t = settle(&mut a2, &mut b, t);
    assert!(
        b.inbound_limit(IN_A).unwrap() > fin,
        "B may accept to {fin}"
    );
    // B accepts top+1..=fin and hands back before its refresh reports it
    // (the bound did not move: no report due).
    b.inbound_progress(IN_A, fin, &ALL, fin, 50);
    assert!(b.clone().poll_transmit(t).is_none(), "no report due");
    assert_eq!(b.hand_back(), 2, "OUT_A and IN_A");
    let _ = events(&mut a2);
    let mut fb = Vec::new();
    while let Some(f) = b.poll_transmit(t) {
        let _ = a2.handle_frame(t, &f);
        fb.push(f);
    }
    assert!(
        fb.iter()
            .any(|f| has_ownership(f, IN_A, Direction::Inbound))
    );
    assert!(
        fb.iter().any(|f| has_state(f, IN_A, Direction::Inbound)),
        "the final state went in the hand-back's frames"
    );
    let win = last_start(&events(&mut a2), IN_A, Direction::Inbound).expect("A2 runs IN_A");
    assert!(a2.owns(IN_A, Direction::Inbound));
    let stored = a2.standby().get(IN_A, Direction::Inbound).unwrap();
    assert_eq!(stored.value, fin, "A2 stores B's final state");
    b_took.extend(top + 1..=fin);
    assert!(a_top <= bstart);
    accepted_once(
        "IN_A after the hand-back",
        &b_took,
        &takes(&a2, IN_A, WINDOW, &win, win.0 + INTERVAL),
    );
}

/// Reader13 find 2 (promise P2 in the form lenient keeps): a node that
/// owns an inbound SA and hears the peer's state of it (the peer took it
/// over in a split brain, and its ownership record was lost) stores that
/// window; when the peer's life then ends (`peer_lost`), the owned SA is
/// re-placed at the stored top with *only this node's own* window moved up
/// (`peer_lost`, the `Direction::Inbound` arm: `stored = Standby { value:
/// mark, bitmap: rebase(i.bitmap(), mark - i.top()) }`, `mark` including
/// the standby value). The numbers the peer accepted and reported, which
/// the standby table holds, are unseen in the new window and pass again.
///
/// Steps (lenient, interval 100, 256-packet windows): A accepts 1..=40 of
/// IN_A and reports it; the link is cut; B takes IN_A over (generation 1,
/// lenient at 40, reaching 140 unacknowledged) -- its ownership record is
/// lost in the cut -- and accepts 41..=100 (within the reach: no report
/// due); its worker then stalls at 141. The link comes back for one frame
/// of B: its state of IN_A (bound 141, 41..=100 seen), with no ownership
/// record (that one went in an earlier, lost, frame). A merges it into its
/// standby table (A owns the SA: no acknowledgement, nothing for the
/// worker). B then restarts (memory lost; its first life had
/// synchronised): A's `peer_restarted` -> `peer_lost` moves IN_A to
/// `restarted_past(141, 3)` = 141 (lenient steps are zero) with A's own
/// window (1..=40 seen) moved up: 41..=141 unseen. Once B's next life
/// acknowledges, the worker takes 41..=100 again -- every one accepted by
/// B and reported in a window A heard.
///
/// The fix: `peer_lost` raises the SA's own window to the mark with the
/// numbers it moves over seen (`raised`): 41..=100 are seen.
#[test]
fn a_lenient_owned_sa_re_placed_by_peer_lost_keeps_what_the_peer_reported() {
    peer_reported_then_lost(L);
}

/// Tried and held: find 2 under `strict`: `peer_lost` moves IN_A three
/// intervals past the stored 141 with everything below seen.
#[test]
fn a_strict_owned_sa_re_placed_by_peer_lost_keeps_what_the_peer_reported() {
    peer_reported_then_lost(InboundTakeover::Strict);
}

fn peer_reported_then_lost(mode: InboundTakeover) {
    let (mut a, mut b, mut t, a_top) = pair_at_40(mode);
    // The cut.
    t += 100;
    declare_dead(&mut a, t);
    declare_dead(&mut b, t);
    assert!(b.take_over() > 0);
    mute(&mut b, t); // the ownership record is lost
    mute(&mut a, t);
    assert!(b.owns(IN_A, Direction::Inbound));
    let (bstart, _) = last_start(&events(&mut b), IN_A, Direction::Inbound).unwrap();
    let top = bstart + 60;
    assert!(b.inbound_limit(IN_A).unwrap() > top);
    b.inbound_progress(IN_A, top, &ALL, top, 60);
    // Within the takeover's reach (an interval past its start) nothing is
    // due; the next packet past the reach stalls, and B reports it.
    let wanted = b.inbound_limit(IN_A).unwrap();
    assert_eq!(wanted, bstart + INTERVAL + 1);
    b.inbound_stalled(IN_A, wanted);
    // One frame of B gets through: its state of IN_A, no ownership record.
    let f = b.poll_transmit(t).expect("B's state is due");
    assert!(has_state(&f, IN_A, Direction::Inbound));
    assert!(!has_ownership(&f, IN_A, Direction::Inbound));
    a.handle_frame(t, &f).unwrap();
    assert!(a.owns(IN_A, Direction::Inbound));
    assert_eq!(
        a.standby().get(IN_A, Direction::Inbound).unwrap().value,
        wanted
    );
    let _ = events(&mut a);
    // B restarts.
    drop(b);
    t += 10;
    let mut b2 = node_with(B, 6, t, mode);
    settle(&mut a, &mut b2, t);
    assert!(b2.synced() && a.owns(IN_A, Direction::Inbound));
    assert!(!b2.owns(IN_A, Direction::Inbound));
    let evs = events(&mut a);
    let win = last_start(&evs, IN_A, Direction::Inbound).expect("peer_lost re-placed IN_A");
    let b_took: Vec<u64> = (a_top + 1..=top).collect();
    accepted_once(
        "IN_A after B's restart",
        &b_took,
        &takes(&a, IN_A, WINDOW, &win, win.0 + INTERVAL),
    );
}

/// Reader13 find 3 (promise P2 in the form lenient keeps): `handed` (a
/// hand-over of an inbound SA this node thinks it runs already) calls
/// `recover(spi, dir, stored.value.max(start), &stored.bitmap)`: the
/// stored bitmap counts from `stored.value`, but `recover` reads it as
/// counting from `start`. With the start above the stored top the bits
/// land on the wrong numbers: numbers the peer accepted and reported in a
/// window that reached this node look unseen (and some it never accepted
/// look seen).
///
/// Steps as found (lenient, interval 100, 256-packet windows): A accepts
/// 1..=40 of IN_A and reports it; A dies; B takes IN_A over (lenient, at
/// 40) and accepts 41..=49 and 56..=70 (50..=55 lost on the way): window
/// top 70 with those bits, reported (crossing 50). A's next life starts;
/// B's frames, still addressed to A's dead life, reach it first: their
/// ownership record is ignored (another life's) but B's state of IN_A is
/// news and is stored (70, B's window). B then hears A2 and the host hands
/// back at once: the hand-over record (generation 2, start 89: B accepted
/// 71..=89 meanwhile, unreported) replaces the bulk's ownership change in
/// `ownership_out`, so A2, whose view is still "A owns it, generation 0",
/// takes it through `change` -> `handed` -> `recover(89, &window_of_70)`:
/// the worker starts at 89 with 70's bits read 19 numbers up: 69..=74
/// unseen. 69 and 70 were in the window B reported and A2 stored; 71..=74
/// are in B's final state, which comes after the bulk end (in `due`
/// behind it) and only reaches the table. They pass again.
///
/// With inbound leases reaching only as far as the SA's rate (none here),
/// B's takeover may run to 140 (an interval past its start) unacknowledged
/// and reports nothing within it: its state of 70 goes only because the
/// takeover queued it. B accepts 71..=130 before it hears A2; hearing A2's
/// new life moves its window to 140 (`peer_lost`, the numbers moved over
/// seen), and the hand-over's start is 140: read 70 numbers up, the bits
/// of 50..=55 would leave 120..=125 unseen, which B accepted.
///
/// The fix: `handed` raises the stored window to the start before it
/// recovers from it, the numbers it moves over seen (`raised`).
#[test]
fn a_lenient_hand_over_of_an_sa_thought_run_here_keeps_the_stored_window_aligned() {
    let (a, mut b, mut t, a_top) = pair_at_40(L);
    assert_eq!(a_top, 40);
    drop(a);
    t += 100;
    declare_dead(&mut b, t);
    assert!(b.take_over() > 0);
    let (bstart, _) = last_start(&events(&mut b), IN_A, Direction::Inbound).unwrap();
    assert_eq!(bstart, 40);
    // Top 70: 56..=70 (bits 0..=14) and 41..=49 (21..=29) seen, 50..=55
    // (15..=20) not; A's 1..=40 below.
    let mut bm = ALL;
    bm[0] &= !(0x3f << 15);
    b.inbound_progress(IN_A, 70, &bm, 70, 24);
    let b_took: Vec<u64> = (41..=49).chain(56..=130).collect();
    t += 5;
    let mut a2 = node_with(A, 5, t, L);
    // B's frames to A's dead life reach A2 first.
    while let Some(f) = b.poll_transmit(t) {
        let _ = a2.handle_frame(t, &f);
    }
    let s = a2
        .standby()
        .get(IN_A, Direction::Inbound)
        .expect("A2 stores B's state");
    assert_eq!((s.value, s.bitmap[0] >> 15 & 0x3f), (70, 0));
    assert!(a2.owns(IN_A, Direction::Inbound), "A2's own view");
    // B accepts 71..=130, within its takeover's reach (no report due).
    let reach = bstart + INTERVAL;
    assert!(b.inbound_limit(IN_A).unwrap() > 130, "B may accept to 130");
    b.inbound_progress(IN_A, 130, &ALL, 130, 84);
    assert!(b.clone().poll_transmit(t).is_none(), "no report due");
    // B hears A2 (its window moves to the reach, the numbers it moves
    // over seen) and hands back at once.
    while let Some(f) = a2.poll_transmit(t) {
        let _ = b.handle_frame(t, &f);
    }
    let moved = last_start(&events(&mut b), IN_A, Direction::Inbound).map(|s| s.0);
    assert_eq!(
        moved,
        Some(reach),
        "peer_lost moved B's window to the reach"
    );
    assert_eq!(b.hand_back(), 2, "OUT_A and IN_A");
    let _ = events(&mut a2);
    settle(&mut a2, &mut b, t);
    assert!(a2.synced() && a2.owns(IN_A, Direction::Inbound) && !b.owns(IN_A, Direction::Inbound));
    let win = last_start(&events(&mut a2), IN_A, Direction::Inbound).expect("A2 runs IN_A");
    accepted_once(
        "IN_A after the hand-over",
        &b_took,
        &takes(&a2, IN_A, WINDOW, &win, win.0 + INTERVAL),
    );
}

/// Tried and held (question 2: a bare value stored first, a window at a
/// lower top merged after it, the merge keeping a non-empty bitmap at the
/// higher top): B's next life restores a floor of 150 for IN_A (its
/// earlier life ran it to 149) -- stored bare -- and then merges A's
/// state (top 40, its window): the entry reads "top 150, A's window moved
/// down, 41..=150 unseen". Its acknowledgement (150, above anything A
/// sent) moves A to 150 with everything at and below it seen
/// (`recover(.., &[])`), and
/// B's takeover after A's death starts at the floor, where
/// `restart_window` takes everything below as seen (`start > floor`
/// fails): nothing of 1..=149 passes on either node.
#[test]
fn a_floor_stored_bare_then_a_lower_window_lets_nothing_below_the_floor_pass() {
    let (mut a, b, mut t, a_top) = pair_at_40(L);
    drop(b);
    t += 10;
    let mut b2 = node_with(B, 6, t, L);
    b2.restore(IN_A, Direction::Inbound, 150);
    t = settle(&mut a, &mut b2, t);
    let s = b2.standby().get(IN_A, Direction::Inbound).unwrap().clone();
    assert_eq!(s.value, 150);
    assert!(
        !s.bitmap.is_empty(),
        "the merge kept A's window, moved down"
    );
    let earlier: Vec<u64> = (1..150).collect();
    let win =
        last_start(&events(&mut a), IN_A, Direction::Inbound).unwrap_or((a_top, ALL.to_vec()));
    accepted_once(
        "IN_A on A",
        &earlier,
        &takes(&a, IN_A, WINDOW, &win, win.0 + INTERVAL),
    );
    drop(a);
    t += 100;
    declare_dead(&mut b2, t);
    assert!(b2.take_over() > 0);
    let win = last_start(&events(&mut b2), IN_A, Direction::Inbound).expect("B2 runs IN_A");
    assert!(win.0 >= 150);
    accepted_once(
        "IN_A on B2",
        &earlier,
        &takes(&b2, IN_A, WINDOW, &win, win.0 + INTERVAL),
    );
}
