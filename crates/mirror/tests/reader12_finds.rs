//! What a twelfth fresh reader found against a7522b1 (a copy of an SA this
//! node lacks is kept whole; the first complete bulk end recovers each
//! owned SA from what the standby table stores of it), and the scenarios
//! it tried that held.

mod pair;

use espgate_mirror::{InboundTakeover, Mirror};
use espgate_wire::Direction;
use espgate_wire::mirror::MirrorRecord;
use pair::*;

/// An inbound SA, home A, that A's first life added at run time before the
/// host reached B with it (B never has it in these scenarios).
const Y: u32 = 0x20;
/// B's own outbound SAs, added and deleted at run time: their histories
/// follow Y's in B's bulk syncs, so that the bulk's end comes in a later
/// frame than Y's history.
const PAD: u32 = 0x7000;
/// The workers' replay window (packets) and its bitmap words: larger than
/// the two intervals a lost life's history moves by (as in reader5's
/// find 4; `replay_window` 4096 with `inbound_interval` 1024 is the same).
const WINDOW: u64 = 256;
const WORDS: usize = (WINDOW / 64) as usize;

fn history_in(f: &[u8], spi: u32, dir: Direction) -> bool {
    records(f).iter().any(|r| {
        matches!(r, MirrorRecord::History { spi: s, dir: d, value: Some(_) } if *s == spi && *d == dir)
    })
}

/// A node of the pair whose frames are small, so a bulk sync takes
/// several of them.
fn small(me: u32, epoch: u64, now: u64, mode: InboundTakeover) -> Mirror {
    let mut c = cfg_with(me, mode);
    c.max_frame = 160;
    node_from(c, epoch, now)
}

/// A's first life (`mode`) adds Y at run time; the host has not reached B
/// with it yet. A asks, B knows nothing of it, A begins it at 0, accepts
/// 1..=99, reports that with its window, and dies. B stores the report as
/// Y's history. Returns B, the highest number A accepted of Y, and the
/// time.
///
/// A's first life runs without leases (`lease: false`): with them, its
/// limit would stay at 1, since B never acknowledges the states of an SA
/// it lacks (a stall's bound included), and A would accept nothing of Y
/// to accept twice. Without them, its worker refused 99 at the limit and
/// reporting it gets its limit past 99 at once. What follows (B's moves,
/// A's next life, leases on) is the same either way.
fn a_runs_y_alone_and_dies(mode: InboundTakeover) -> (Mirror, u64, u64) {
    let mut unleased = cfg_with(A, mode);
    unleased.max_frame = 160;
    unleased.lease = false;
    let (mut a, mut b) = (node_from(unleased, 1, 0), small(B, 2, 0, mode));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    for k in 0..8 {
        b.add_sa(PAD + k, Direction::Outbound, false, B);
    }
    t = settle(&mut a, &mut b, t);
    for k in 0..8 {
        assert!(b.remove_sa(PAD + k, Direction::Outbound));
    }
    t = settle(&mut a, &mut b, t);
    a.add_sa(Y, Direction::Inbound, false, A);
    t = settle(&mut a, &mut b, t);
    assert!(!a.asking(Y, Direction::Inbound), "B answered");
    let top = 99;
    a.inbound_stalled(Y, top);
    assert_eq!(a.inbound_limit(Y), Some(top + 1), "A may accept 1..={top}");
    a.inbound_progress(Y, top, &[u64::MAX; WORDS], top, top);
    t = settle(&mut a, &mut b, t);
    let stored = b
        .standby()
        .get(Y, Direction::Inbound)
        .expect("B stores Y's history");
    assert_eq!(stored.value, top);
    assert!(!stored.bitmap.is_empty(), "with its window");
    drop(a);
    (b, top, t + 100)
}

/// A's next life (`mode`, its configuration file without Y) asks for its
/// bulk sync; B's frames reach it one by one, and right after the frame
/// that carries Y's history (before the rest of the bulk, its end
/// included) the host adds Y to A. Returns A's new life, synchronised,
/// and the time.
fn restart_and_add_mid_bulk(b: &mut Mirror, mut t: u64, mode: InboundTakeover) -> (Mirror, u64) {
    let mut a2 = small(A, 5, t, mode);
    let end = t + 5_000;
    let (mut added, mut frames_after_add) = (false, 0);
    while !a2.synced() && t < end {
        t += 1;
        a2.handle_timeout(t);
        b.handle_timeout(t);
        while let Some(f) = a2.poll_transmit(t) {
            let _ = b.handle_frame(t, &f);
        }
        while let Some(f) = b.poll_transmit(t) {
            let _ = a2.handle_frame(t, &f);
            if added {
                frames_after_add += 1;
            }
            if !added && history_in(&f, Y, Direction::Inbound) {
                assert!(!bulk_end(&f), "the bulk goes on after Y's history");
                a2.add_sa(Y, Direction::Inbound, false, A);
                added = true;
            }
        }
    }
    assert!(added && a2.synced(), "synchronised after the add");
    assert!(frames_after_add > 0);
    assert_eq!(a2.stats().bulks_incomplete, 0, "one bulk, complete");
    (a2, t)
}

/// What Y's worker on `a2` takes now: its last activation's window (or
/// the one it was built with, top 0 and nothing seen), under its limit,
/// the far end having sent two intervals past the top.
fn y_takes(a2: &mut Mirror) -> Vec<u64> {
    let window = last_start(&events(a2), Y, Direction::Inbound).unwrap_or((0, Vec::new()));
    let far = window.0 + 2 * INTERVAL;
    takes(a2, Y, WINDOW, &window, far)
}

/// Reader12 find 1 (a7522b1, promise P2 in the form lenient keeps: a
/// lenient window may take again only packets accepted since the last
/// report): an inbound SA added while its bulk sync is under way restarts
/// at the bulk end from a *history* record's value with nothing below it
/// seen, and accepts again what an earlier life accepted and reported.
///
/// Steps (lenient, interval 100, workers with a 256-packet window): A's
/// first life adds Y (inbound, home A) at run time; the host has not
/// reached B with it yet ("added on the peer and not here yet"). A asks,
/// B knows nothing, A begins Y at 0 and accepts 1..=99 (as found, its
/// limit, one interval: B never acknowledges states of an SA it lacks; now
/// A's first life runs without leases, see `a_runs_y_alone_and_dies`) and
/// reports top 99 with its window; B stores that as Y's history, bitmap
/// included. A dies. On A's next life's first frame B's `peer_lost` moves
/// the history two intervals on (299; its bitmap moves down with it). A's
/// next life (its file predates the add) asks for a bulk sync; Y is not
/// in B's pair, so B's bulk carries it as a *history record* (value only,
/// no bitmap), and A, lacking Y, stores the bare 299 (`history` ->
/// `store`). The host then adds Y to A (as in reader11's scenario), and the
/// bulk ends complete. a7522b1's bulk end recovers Y from what the standby
/// table stores of it: `recover(Y, 299, &[])`; lenient, the restart point
/// is 299 and `restart_window` keeps the stored bitmap -- none -- so the
/// worker's window is top 299 with nothing seen, limit then 299 + 100
/// (now 300: the recovered value counts as acknowledged). The window
/// reaches down to 44: 44..=99, every one accepted and reported by A's
/// first life, pass again.
///
/// The same history reaching a synchronised node's run-time add goes
/// through `begin_asked`, which since 1584eea (reader5's find 4) marks
/// everything at and below a history value seen when the node lacks that
/// very value's window; the bulk end of a7522b1 has no such rule. (Before
/// a7522b1 the bulk end recovered from 0: worse, reader11's find.)
///
/// The fix: a value stored with no window (a history record, an
/// ownership record's bound, an acknowledgement beyond anything sent)
/// keeps none, and a lenient restart from it takes everything at and
/// below it as seen, as a strict one does (`restart_window`).
#[test]
fn a_lenient_inbound_sa_added_mid_bulk_after_its_history_accepts_nothing_twice() {
    let (mut b, top, t) = a_runs_y_alone_and_dies(InboundTakeover::Lenient);
    let (mut a2, _) = restart_and_add_mid_bulk(&mut b, t, InboundTakeover::Lenient);
    let earlier: Vec<u64> = (1..=top).collect();
    accepted_once("Y across A's restart", &earlier, &y_takes(&mut a2));
}

/// Reader12 find 2 (older than a7522b1, same root: promise P2 in the form
/// lenient keeps): the same history reaching a node whose configuration
/// file has the SA (its file was written after the add, B still lacks it)
/// moves the SA through `history` -> `acked_beyond` ->
/// `recover(spi, dir, v, &[])`, which for a lenient SA keeps only the
/// node's own window (top 0, nothing) moved up: top 299 with nothing seen,
/// and 44..=99 pass again. The bulk end then recovers from the standby
/// table, which holds nothing of Y (an owned SA's history is not stored),
/// and does not move it.
///
/// The fix: as find 1's (`recover` keeps a value with no window without
/// one, rather than lending it this node's own window moved up); the
/// acknowledgement beyond anything sent (`LeaseAck` -> `recover(.., &[])`)
/// takes the same path.
#[test]
fn a_lenient_inbound_sa_configured_at_restart_whose_peer_lacks_it_accepts_nothing_twice() {
    let (mut b, top, mut t) = a_runs_y_alone_and_dies(InboundTakeover::Lenient);
    let mut a2 = small(A, 5, t, InboundTakeover::Lenient);
    a2.add_sa(Y, Direction::Inbound, false, A);
    t = settle(&mut a2, &mut b, t);
    let _ = t;
    assert!(a2.synced());
    let earlier: Vec<u64> = (1..=top).collect();
    accepted_once("Y across A's restart", &earlier, &y_takes(&mut a2));
}

/// Tried and held: the same as find 1 with a strict inbound SA: the bulk
/// end restarts Y at the history (299) with everything at and below it
/// seen, under a limit that lets nothing past it pass before B
/// acknowledges.
#[test]
fn a_strict_inbound_sa_added_mid_bulk_after_its_history_accepts_nothing_twice() {
    let (mut b, top, t) = a_runs_y_alone_and_dies(InboundTakeover::Strict);
    let (mut a2, _) = restart_and_add_mid_bulk(&mut b, t, InboundTakeover::Strict);
    let earlier: Vec<u64> = (1..=top).collect();
    accepted_once("Y across A's restart", &earlier, &y_takes(&mut a2));
}

/// Tried and held: the same as find 1 with the host's add after the bulk
/// sync: `begin_asked` begins Y at the history with everything at and
/// below it seen.
#[test]
fn a_lenient_inbound_sa_added_after_the_bulk_accepts_nothing_twice() {
    let (mut b, top, mut t) = a_runs_y_alone_and_dies(InboundTakeover::Lenient);
    let mut a2 = small(A, 5, t, InboundTakeover::Lenient);
    t = settle(&mut a2, &mut b, t);
    assert!(a2.synced());
    a2.add_sa(Y, Direction::Inbound, false, A);
    settle(&mut a2, &mut b, t);
    assert!(!a2.asking(Y, Direction::Inbound));
    let earlier: Vec<u64> = (1..=top).collect();
    accepted_once("Y across A's restart", &earlier, &y_takes(&mut a2));
}

/// An outbound SA, home A, added at run time on both nodes.
const X: u32 = 0x10;

fn state_in(f: &[u8], spi: u32, dir: Direction) -> bool {
    records(f)
        .iter()
        .any(|r| matches!(r, MirrorRecord::SaState(s) if !s.copy && s.spi == spi && s.dir == dir))
}

/// Tried and held: B took X over after A's death and runs it; A's next
/// life (its file without X) gets B's own state of X in the bulk while it
/// lacks X (B's ownership record of X, earlier in the bulk, is ignored),
/// and the host adds X right after. Two nodes then think they own X; the
/// bulk end recovers A's X from B's state (stored whole), which leaves A
/// nothing usable (its limit is that state's lease plus the slack, below
/// its start) until B speaks again, and B's unconfirmed ownership record,
/// sent again at its refresh, takes X from A: one owner, and no number of
/// B's usable by A.
#[test]
fn an_outbound_sa_the_peer_took_over_added_mid_bulk_is_not_run_twice() {
    let mode = InboundTakeover::Strict;
    let (mut a, mut b) = (small(A, 1, 0, mode), small(B, 2, 0, mode));
    let mut t = settle(&mut a, &mut b, 0);
    for m in [&mut a, &mut b] {
        m.add_sa(X, Direction::Outbound, false, A);
    }
    t = settle(&mut a, &mut b, t);
    for _ in 0..5 {
        let used = a.limit(X).unwrap() - 1;
        a.outbound_progress(X, used, used, used);
        t += 1;
        exchange(&mut a, &mut b, t);
    }
    drop(a);
    t += 100;
    declare_dead(&mut b, t);
    assert!(b.take_over() > 0);
    let evs = events(&mut b);
    let (b_start, _) = last_start(&evs, X, Direction::Outbound).expect("B runs X");
    let b_used = b.limit(X).unwrap() - 1;
    b.outbound_progress(X, b_used, b_used, b_used);
    mute(&mut b, t);
    t += 10;
    let mut a2 = small(A, 5, t, mode);
    let end = t + 5_000;
    let mut added = false;
    while !a2.synced() && t < end {
        t += 1;
        a2.handle_timeout(t);
        b.handle_timeout(t);
        while let Some(f) = a2.poll_transmit(t) {
            let _ = b.handle_frame(t, &f);
        }
        while let Some(f) = b.poll_transmit(t) {
            let _ = a2.handle_frame(t, &f);
            if !added && state_in(&f, X, Direction::Outbound) {
                a2.add_sa(X, Direction::Outbound, false, A);
                added = true;
            }
        }
    }
    assert!(added && a2.synced());
    let evs = events(&mut a2);
    let next = last_start(&evs, X, Direction::Outbound).map_or(1, |s| s.0);
    let again = overlap(&(b_start..b_used + 1), &usable(&a2, X, next));
    assert!(again.is_empty(), "A may use {again:?}, B used them");
    settle(&mut a2, &mut b, t);
    let owners = [
        a2.owns(X, Direction::Outbound),
        b.owns(X, Direction::Outbound),
    ];
    assert_eq!(owners.iter().filter(|o| **o).count(), 1, "{owners:?}");
}
