//! What a fifth fresh reader found against a73574b, 4c88d39, 4ad2473 and
//! 17d0473, one test each, written against 17d0473, where each failed.

mod pair;

use espgate_mirror::{InboundTakeover, SaOverrides};
use espgate_wire::Direction;
use pair::*;

/// A run-time inbound SA, home B (a rekey's new SA).
const IN_X: u32 = 0x3100;

/// Reader5 find 1 (a73574b, liveness): a takeover of a peer whose new
/// life died before a frame saying it had synchronised reached this node
/// waits forever for an acknowledgement from the dead peer.
///
/// Sequence (jump 1000, quantity 400, inbound interval 100, strict): the
/// pair is synchronised and A runs `OUT_A` and `IN_A` a little (B stores
/// their leases and tops). A restarts: B hears the new life's first frame
/// (its bulk request; not synchronised yet), which clears B's `told` and,
/// A's lost life having run, moves A's SAs in B's standby table two steps
/// on (`peer_lost`). B sends its bulk; A's new life synchronises from it
/// and so stores every copy of it, but none of its later frames (the
/// first ones to carry `FLAG_SYNCED`) reaches B: it dies, or the link is
/// cut. B declares A dead and takes its SAs over: `OUT_A` starts at the
/// stored lease plus a jump, three jumps past A's last lease; but the
/// start counts as acknowledged only two jumps past `told`, which holds
/// no more than the new life's first fresh lease (400), because the bulk
/// (`bulk_told`) is taken in only when a synced frame arrives. B's limit
/// (acknowledged plus `jump - quantity`) is below its start: `OUT_A` can
/// send nothing until A acknowledges, and A is dead. `IN_A` likewise
/// starts three intervals past A's last top with a limit two intervals
/// past what `told` holds: it accepts nothing. Nothing but a fence (not
/// ordered with `takeover: auto` and no host) or A's return unblocks
/// them. Before a73574b the takeover counted its start as acknowledged
/// and ran at once; the cap is not needed here for safety: the new life
/// either synchronised from B's bulk (so it stores the copies B's
/// takeover starts past, and its bound for a lost life of B is past
/// them), or never synchronised (it ran nothing, and can only synchronise
/// from B). The same happens, more simply, when the new life dies before
/// B's bulk reaches it (a crash-looping peer). Measured: A's last lease
/// 4396, B's bulk carried 6396, B's takeover of `OUT_A` starts at 7396
/// with limit 3000 (400 + 2 × 1000 + 600); `IN_A` at top 697 with limit
/// 300. (With inbound bounds, A's worker driven to 300 by stalls, B's
/// bulk carries 500 for `IN_A` and B's takeover starts there, its reach
/// to 600 counted as acknowledged.) The test passes on 37ad52a (before
/// the cap), and passes here if one synced frame of A's new life reaches
/// B before it dies. (Counting the first bulk as told once its end is
/// sent to the life, or leaving a life that never said it synchronised
/// uncapped, would keep the cap's safety: a life that synchronised holds
/// that bulk, one that did not ran nothing and can only synchronise from
/// this node.)
///
/// Promise broken: (3) liveness — an SA taken over after the peer's death
/// must not wait forever for an acknowledgement from that dead peer (the
/// test a73574b added, `a_takeover_from_a_bulk_the_dead_peer_held_runs_at_once`,
/// checks the same for a peer whose synced frame did arrive).
#[test]

fn a_takeover_of_a_peer_life_that_died_before_its_synced_flag_arrived_runs_at_once() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    // A runs its SAs a little; B stores and acknowledges their states.
    // (An inbound worker gets past its top only by stalls: `IN_A` is
    // driven to 300 that way.)
    for _ in 0..3 {
        let used = a.limit(OUT_A).unwrap() - 1;
        a.outbound_progress(OUT_A, used, 0, used);
        t = settle(&mut a, &mut b, t);
    }
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 300), &[u64::MAX]);
    let lease = b.standby().get(OUT_A, Direction::Outbound).unwrap().value;
    drop(a);
    // A's new life: B hears it (its bulk request) until it holds B's
    // bulk; from then on nothing it sends reaches B.
    let mut a2 = node(A, 3, t);
    while !a2.synced() {
        t += 10;
        assert!(t < 10_000, "A's new life never synchronised");
        while let Some(f) = a2.poll_transmit(t) {
            let _ = b.handle_frame(t, &f);
        }
        while let Some(f) = b.poll_transmit(t) {
            let _ = a2.handle_frame(t, &f);
        }
    }
    // What B's bulk carried of OUT_A (A's new life restarted past it).
    let held = b.standby().get(OUT_A, Direction::Outbound).unwrap().value;
    mute(&mut a2, t);
    drop(a2);
    // B declares A dead and takes its SAs over; time goes by.
    declare_dead(&mut b, t + 100);
    events(&mut b);
    assert_eq!(b.take_over(), 2, "OUT_A and IN_A");
    let evs = events(&mut b);
    let out = last_start(&evs, OUT_A, Direction::Outbound).unwrap().0;
    let in_top = last_start(&evs, IN_A, Direction::Inbound).unwrap().0;
    for now in (t + 100..t + 10_000).step_by(50) {
        b.handle_timeout(now);
        mute(&mut b, now);
    }
    let sends = usable(&b, OUT_A, out);
    let accepts = acceptable(&b, IN_A, in_top);
    assert!(
        !sends.is_empty() && !accepts.is_empty(),
        "A dead for 10 s; A's last lease {lease}, the bulk A's new life stored carried {held}: \
         B's takeover of OUT_A starts at {out} with limit {:?}, of IN_A at top {in_top} with \
         limit {:?}: OUT_A may send {} numbers, IN_A accept {} packets, until a peer that is \
         dead acknowledges",
        b.limit(OUT_A),
        b.inbound_limit(IN_A),
        sends.end - sends.start,
        accepts.end - accepts.start,
    );
}

/// Reader5 find 2 (4ad2473, zero reuse): any ownership record of the
/// peer clears `unheard`, one the peer sent before the SA was added again
/// included, so a takeover of the SA added again starts one step past
/// this node's history, not two, and meets the peer's takeover.
///
/// Sequence (strict, inbound interval 100): the pair is synchronised; the
/// host moves A's SAs to B while both live (`take_over` on B): B's change
/// reaches A, which lets `IN_A` go and answers with a frame confirming
/// B's ownership (and its final state as a copy). That frame is held on
/// the way (delayed in the network, or recorded by an attacker) and
/// nothing more of A reaches B: A's side of the link is cut. B's worker
/// refuses packets at its limit (since the takeover's start is all A
/// acknowledged) and reports them; A stores the bound (B's side still
/// works). The host deletes `IN_A` on B and adds it again (same SPI
/// and key; the host reaches B only): B's view of who runs it went with
/// the delete, the add gives it to A (its home) at generation 0, and marks
/// it `unheard`. Now A's held frame arrives (its counter is above every A
/// frame B accepted, so it is accepted): its confirmation of B's old
/// ownership clears `unheard`, though A said nothing of the SA since the
/// add. The link is cut both ways; each node declares the other dead and
/// takes over. A (whose view says B runs `IN_A`) starts one interval past
/// B's reported top; B (whose view says A runs it) starts one interval
/// past its own final state, the same top, and both limits are the next
/// interval: both accept the same packets. Without the held frame B
/// starts two intervals past (as 4ad2473 intends) and accepts nothing A
/// does.
///
/// Promise broken: (2) in its split-brain form — no inbound packet is
/// accepted by both nodes. (An outbound SA in its place is saved by the
/// slack its final state folds in: its one step lands at the peer's
/// limit.)
#[test]

fn an_ownership_record_sent_before_an_sa_was_added_again_leaves_it_unheard() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut b);
    // The host moves A's SAs to B, both alive.
    assert_eq!(b.take_over(), 2, "OUT_A and IN_A");
    let t = t + 10;
    while let Some(f) = b.poll_transmit(t) {
        a.handle_frame(t, &f).unwrap();
    }
    assert!(!a.owns(IN_A, Direction::Inbound), "A let IN_A go");
    // A's answer (its confirmation) is held on the way; A's side of the
    // link is cut from now on.
    let mut held = Vec::new();
    while let Some(f) = a.poll_transmit(t) {
        held.push(f);
    }
    assert!(!held.is_empty(), "A confirms B's change");
    // B runs IN_A from its start, where its limit holds it (a takeover
    // with A heard accepts nothing A has not acknowledged): it reports
    // the packets it refused there, and A stores the bound (A's
    // acknowledgement never arrives).
    let win = last_start(&events(&mut b), IN_A, Direction::Inbound).expect("B runs IN_A");
    assert!(acceptable(&b, IN_A, win.0).is_empty());
    b.inbound_stalled(IN_A, win.0 + 100);
    let t = t + 10;
    while let Some(f) = b.poll_transmit(t) {
        a.handle_frame(t, &f).unwrap();
    }
    mute(&mut a, t);
    let top = a.standby().get(IN_A, Direction::Inbound).unwrap().value;
    assert!(top >= win.0 + 100, "A stores B's bound");
    // The host deletes IN_A on B and adds it again (same SPI and key).
    assert!(b.remove_sa(IN_A, Direction::Inbound));
    b.add_sa(IN_A, Direction::Inbound, false, A);
    let t = t + 10;
    while let Some(f) = b.poll_transmit(t) {
        a.handle_frame(t, &f).unwrap();
    }
    mute(&mut a, t);
    // A's held frame, sent before the add, arrives now. Its confirmation
    // is A's view, a generation above the add's: B takes it in and runs
    // IN_A again (since the fix of explore find 1).
    events(&mut b);
    b.handle_frame(t, &held[0])
        .expect("its counter is above every frame of A that B accepted");
    let mut b_events = events(&mut b);
    // The link is cut both ways: each node takes the SA over (B runs it
    // already).
    let t = t + 100;
    mute(&mut a, t);
    mute(&mut b, t);
    declare_dead(&mut a, t);
    declare_dead(&mut b, t);
    events(&mut a);
    b_events.extend(events(&mut b));
    a.take_over();
    b.take_over();
    b_events.extend(events(&mut b));
    let a_top = last_start(&events(&mut a), IN_A, Direction::Inbound)
        .expect("A takes IN_A over")
        .0;
    let b_top = last_start(&b_events, IN_A, Direction::Inbound)
        .expect("B runs IN_A")
        .0;
    let a_range = acceptable(&a, IN_A, a_top);
    let b_range = acceptable(&b, IN_A, b_top);
    let both = overlap(&a_range, &b_range);
    assert!(
        both.is_empty(),
        "B's reported top {top}; A accepts {a_range:?} (top {a_top}), B {b_range:?} (top \
         {b_top}): {} packets accepted by both",
        both.end - both.start
    );
}

/// Reader5 find 3 (4c88d39, zero reuse): `largest_interval` lives only in
/// memory: a node that restarts after an SA with its own larger interval
/// was deleted forgets that interval, and its `peer_lost` moves the SA's
/// history by the default interval again (reader4 find 1, with one
/// restart of B in between).
///
/// Sequence (strict, default `inbound_interval` 100; the host gives `IN_X`,
/// home B, its own interval 1000 on both nodes): the pair is synchronised;
/// B runs `IN_X` and accepts 1..=999 (each step past its limit first
/// refused, reported and acknowledged), reported and stored by A. The host
/// deletes `IN_X` on both nodes; both keep 999 as its history. B restarts
/// (its node file without `IN_X`): A hears the new life and moves the
/// history two of its largest intervals on (1000: 2999) and B's new life
/// synchronises from A's bulk (history 2999) — but its `largest_interval`
/// is the default, 100: nothing it holds names the interval of the SA it
/// lacks. The link is cut; A declares B dead, takes B's SAs over, and the
/// host adds `IN_X` again, reaching A first: A, holding B's SAs, runs it
/// one step past the history (top 3999, all below seen), its takeover's
/// reach one more (the bulk B's life holds counts as acknowledged, so its
/// limit is 5000), and accepts 4000..=4999. A dies; its next life starts
/// and the link heals. B hears it: `peer_lost` moves the history of the
/// SA B lacks by two of *its* largest intervals. As found (17d0473, when
/// a lost life's add started two steps past and a restart one step past
/// the stored value), these were 100 each: 3199, where the lost life ran
/// to 2999 + 3 × 1000; the host adds `IN_X` to both nodes, B asks, A's
/// new life answers 3199 (from B's bulk), B starts one interval (1000)
/// past, top 4199, and once A acknowledged, its limit reached 5199: B
/// accepted 5000..=5198 a second time.
///
/// Promise broken: (2), no inbound window is restored below what an
/// earlier life accepted. Fixed first by remembering the steps a lost
/// life's move took with the SA's own interval; since an inbound owner
/// accepts nothing past its acknowledged bound, a lost life's reach past
/// what it was told is `inbound_grace` (one setting for every SA, here
/// 100), and every move steps by it: the SA's own interval no longer
/// counts, A's lost run lies within B's move, and B starts past it. Its
/// worker is refused packet 20000 and reports it; once acknowledged, B
/// accepts up to 20000, none of which A's lost life accepted.
#[test]
fn a_deleted_sa_with_its_own_interval_is_moved_by_it_after_the_node_restarted() {
    const WINDOW: u64 = 64;
    let own = SaOverrides {
        interval: Some(1000),
        quantity: None,
    };
    let far = 20_000;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    b.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    a.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    let t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).unwrap_or((0, vec![]));
    let top = 999;
    let t = accepts_up_to(&mut b, &mut a, IN_X, t, (b_win.0, top), &[u64::MAX]);
    assert!(b.remove_sa(IN_X, Direction::Inbound));
    assert!(a.remove_sa(IN_X, Direction::Inbound));
    let t = settle(&mut a, &mut b, t);
    assert_eq!(
        a.standby().get(IN_X, Direction::Inbound).unwrap().value,
        top
    );
    // B restarts, its node file without IN_X, and synchronises from A.
    drop(b);
    let mut b = node(B, 3, t);
    let t = settle(&mut a, &mut b, t);
    assert!(b.synced());
    let history = b.standby().get(IN_X, Direction::Inbound).unwrap().value;
    events(&mut a);
    events(&mut b);
    // Cut; A takes B's SAs over; the host adds the SA again, to A first.
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    a.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    mute(&mut a, t + 100);
    mute(&mut b, t + 100);
    let a_win = last_start(&events(&mut a), IN_X, Direction::Inbound)
        .expect("A runs the peer's SA added while it holds the peer's SAs");
    let a_took = takes(&a, IN_X, WINDOW, &a_win, far);
    assert!(
        !a_took.is_empty(),
        "A's takeover at {} accepts nothing (limit {:?})",
        a_win.0,
        a.inbound_limit(IN_X)
    );
    let (mut a2, now) = a_dies_after_its_run(a, &mut b, t, IN_X, &a_took);
    // The host adds the SA to both.
    a2.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    b.add_sa_with(IN_X, Direction::Inbound, false, B, own);
    let now = settle(&mut a2, &mut b, now);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).expect("B runs it again");
    // B's worker is refused packet `far` at its limit and reports it; once
    // A's new life acknowledges, B's window alone decides what passes.
    b.inbound_stalled(IN_X, far);
    let _ = settle(&mut a2, &mut b, now);
    assert_eq!(b.inbound_limit(IN_X), Some(far + 1));
    let b_took = takes(&b, IN_X, WINDOW, &b_win, far);
    accepted_once(
        &format!(
            "history {history} on B's new life; A's lost life (top {}), then B (top {}, limit {:?})",
            a_win.0,
            b_win.0,
            b.inbound_limit(IN_X)
        ),
        &a_took,
        &b_took,
    );
}

/// Reader5 find 4 (4c88d39, lenient inbound takeover): the bitmap a
/// lenient SA added again keeps is the one the *asking* node holds of its
/// history; a node that restarted after the delete holds none (a history
/// record carries no bitmap), though the peer still stores it, so the
/// packets it accepted and reported before the delete pass again.
///
/// Sequence (lenient, interval 100, workers with a 256-packet replay
/// window, four bitmap words): the pair is synchronised; B runs the
/// inbound SA `IN_X` (home B, on both nodes) for a while (to 1000, each
/// step past its limit first refused and reported) and reports each top
/// with its window; A stores the last top T with its bitmap. The host
/// deletes `IN_X` on both nodes; both keep T (and its bitmap) as history.
/// B restarts (its node file without `IN_X`): A moves the history two
/// intervals on (T + 200; its bitmap moves down with it and still marks
/// T - 55..=T seen) and B's new life learns the history from A's bulk, as
/// a history record: the value only. The host adds `IN_X` again on both
/// nodes: B asks, A answers T + 200, and `begin_asked` restores the
/// lenient window at T + 200 with the bitmap B's own standby holds: none.
/// The worker's window takes T - 55..=T again, every one of them accepted
/// and reported (top and bitmap, stored by A) by B's earlier life. Had B's
/// new life been configured with `IN_X`, A's bulk would have sent it as a
/// copy, bitmap included, and the restart would have kept it.
///
/// Promise broken: (2), in the form lenient keeps: a lenient window may
/// take again only packets accepted since the last report. Fixed: a
/// history whose window the asking node lacks begins with everything at
/// and below it seen (B's worker, refused packet 5000 and reporting it,
/// takes only what lies past T + 200 once that is acknowledged).
#[test]
fn a_lenient_sa_added_again_on_a_node_restarted_after_its_delete_accepts_nothing_it_reported_twice()
{
    const WINDOW: u64 = 256;
    const WORDS: usize = 4;
    let lenient = InboundTakeover::Lenient;
    let far = 5000;
    let (mut a, mut b) = (node_with(A, 1, 0, lenient), node_with(B, 2, 0, lenient));
    let mut t = settle(&mut a, &mut b, 0);
    b.add_sa(IN_X, Direction::Inbound, false, B);
    a.add_sa(IN_X, Direction::Inbound, false, B);
    t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    // B runs IN_X for a while: up to 1000, each step past its limit first
    // refused and reported, then accepted and reported.
    let top = 1000;
    t = accepts_up_to(&mut b, &mut a, IN_X, t, (0, top), &[u64::MAX; WORDS]);
    assert!(top > WINDOW, "B ran IN_X to {top}");
    let b_took: Vec<u64> = (1..=top).collect();
    assert_eq!(
        a.standby().get(IN_X, Direction::Inbound).unwrap().value,
        top
    );
    // Deleted on both nodes.
    assert!(b.remove_sa(IN_X, Direction::Inbound));
    assert!(a.remove_sa(IN_X, Direction::Inbound));
    t = settle(&mut a, &mut b, t);
    // B restarts, its node file without IN_X, and synchronises from A.
    drop(b);
    let mut b = node_with(B, 3, t, lenient);
    t = settle(&mut a, &mut b, t);
    assert!(b.synced());
    let kept = a.standby().get(IN_X, Direction::Inbound).unwrap().clone();
    events(&mut b);
    // Added again on both nodes.
    b.add_sa(IN_X, Direction::Inbound, false, B);
    a.add_sa(IN_X, Direction::Inbound, false, B);
    t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let again = last_start(&events(&mut b), IN_X, Direction::Inbound).expect("B runs it again");
    // B's worker is refused packet `far` at its limit and reports it; once
    // A acknowledges, B's window alone decides what passes.
    b.inbound_stalled(IN_X, far);
    settle(&mut a, &mut b, t);
    assert_eq!(b.inbound_limit(IN_X), Some(far + 1));
    let b_again = takes(&b, IN_X, WINDOW, &again, far);
    accepted_once(
        &format!(
            "B's earlier life (reported top {top}); A still stores top {} with bitmap {:x?}; \
             B's new life begins at top {} with bitmap {:x?}, limit {:?}",
            kept.value,
            kept.bitmap,
            again.0,
            again.1,
            b.inbound_limit(IN_X)
        ),
        &b_took,
        &b_again,
    );
}

/// Reader5 find 5 (before these commits; the run-time add while holding
/// the peer's SAs, which 4ad2473 moved into `take`): an SA a lost peer
/// life added at run time while it held this node's SAs, and ran, when
/// the host adds it again to both nodes.
///
/// Sequence (strict, inbound interval 100): the pair is synchronised.
/// The link is cut; A declares B dead and takes B's SAs over; the host
/// adds a new inbound SA `IN_X` (home B, a rekey's new SA) and reaches A
/// only: A, holding B's SAs, runs it at once two intervals past what it
/// knows (nothing: top 200, all below seen, limit 300) and accepts
/// 201..=299; its report is lost in the cut. A dies; its next life starts
/// and the link heals: B hears it, and `peer_lost` moves every SA B owns
/// or stores, but B has no trace of `IN_X`. The host adds `IN_X` (the
/// same key) to both nodes. The far end's numbers ran on past 299 while
/// B had no SA: B's worker refuses one (350) at the limit and reports it.
///
/// As found, A's new life took `IN_X` and knew nothing of it, so B
/// started it from its first number and, once A acknowledged the refused
/// number, took 201..=299 a second time. That A is a node without memory:
/// the SA's history was then gone from both nodes (A's lost, B's never
/// held), the documented limit of the guarantee. A node with its state
/// directory refuses key material it ran before, at run time as at any
/// time (`sa_add` answers that the key's numbers would start again), so
/// here A's new life does not take `IN_X`: B alone has it, B's questions
/// and reports go unanswered (an SA one node lacks is mirrored nowhere),
/// and B's window never passes the interval it starts with, below where
/// A's lost life began. The host's way on is a rekey: a new key.
///
/// Promise: (2), no inbound window is restored below what an earlier life
/// of either node accepted (an outbound SA in its place would use numbers
/// twice).
#[test]
fn an_sa_a_lost_life_added_while_holding_accepts_nothing_twice_when_the_host_adds_it_again() {
    const WINDOW: u64 = 64;
    let far = 1000;
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    events(&mut b);
    // The cut: A takes B's SAs over; the host adds IN_X, reaching A only.
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    a.add_sa(IN_X, Direction::Inbound, false, B);
    mute(&mut a, t + 100);
    mute(&mut b, t + 100);
    let a_win = last_start(&events(&mut a), IN_X, Direction::Inbound)
        .expect("A runs the peer's SA added while it holds the peer's SAs");
    let a_took = takes(&a, IN_X, WINDOW, &a_win, far);
    assert!(!a_took.is_empty());
    let (mut a2, now) = a_dies_after_its_run(a, &mut b, t, IN_X, &a_took);
    assert!(b.standby().get(IN_X, Direction::Inbound).is_none());
    // The host adds the SA to both; A's state refuses it (its key ran).
    b.add_sa(IN_X, Direction::Inbound, false, B);
    let now = settle(&mut a2, &mut b, now);
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound);
    // The far end ran on: B's worker refuses 350 at its limit and reports it.
    let refused = a_took.last().unwrap() + 51;
    if b_win.is_some() {
        assert!(refused >= b.inbound_limit(IN_X).unwrap());
        b.inbound_stalled(IN_X, refused);
        let _ = settle(&mut a2, &mut b, now);
    }
    let b_took = b_win
        .as_ref()
        .map_or_else(Vec::new, |w| takes(&b, IN_X, WINDOW, w, far));
    accepted_once(
        &format!(
            "A's lost life (top {}), then B ({:?}, limit {:?})",
            a_win.0,
            b_win.map(|w| w.0),
            b.inbound_limit(IN_X)
        ),
        &a_took,
        &b_took,
    );
}
