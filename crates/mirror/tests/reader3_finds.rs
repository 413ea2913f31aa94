//! Holes a third fresh reader found in the zero-reuse promise, one test
//! each, written against main at 537e931, where each failed: a peer life
//! that ends unheard may have added this node's SA at run time while
//! holding its SAs, two steps past what it knew and one more, and a lost
//! life moved this node's SAs only two steps (now three). (An inbound
//! start no longer steps past the stored bound, so such a life starts one
//! step past what it knew and runs one more, its takeover's reach; the
//! workers here reach past their window tops only by stalls, as real ones
//! do.)

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use pair::*;

/// A run-time inbound SA, home B (a rekey's new SA).
const IN_X: u32 = 0x3100;
/// A run-time outbound SA, home B.
const OUT_X: u32 = 0x3000;

/// The replay window of an inbound worker (one bitmap word at least).
const WINDOW: u64 = 64;

/// The cut: A (holding B's SAs, the SA just added to it) runs `IN_X` at
/// once and accepts what the far end's `far` packets let it, its report
/// lost with everything else it sends. Returns where it began and what it
/// accepted.
fn runs_in_the_cut(
    a: &mut Mirror,
    b: &mut Mirror,
    t: u64,
    far: u64,
) -> ((u64, Vec<u64>), Vec<u64>) {
    mute(a, t + 100);
    mute(b, t + 100);
    let a_win = last_start(&events(a), IN_X, Direction::Inbound)
        .expect("A runs the peer's SA added while it holds the peer's SAs");
    let a_took = takes(a, IN_X, WINDOW, &a_win, far);
    assert!(!a_took.is_empty());
    let a_top = *a_took.last().unwrap();
    a.inbound_progress(IN_X, a_top, &[u64::MAX], 0, a_took.len() as u64);
    mute(a, t + 110);
    (a_win, a_took)
}

/// B's worker is refused packet `far` (the far end sent everything up to
/// it) at its limit and reports it; once the pair settles from `now`, A's
/// new life having acknowledged it, B's limit lies past `far`, so
/// [`takes`] shows every packet B's window lets through.
fn b_wants_all_the_far_end_sent(a2: &mut Mirror, b: &mut Mirror, now: u64, far: u64) {
    b.inbound_stalled(IN_X, far);
    let _ = settle(a2, b, now);
    assert_eq!(b.inbound_limit(IN_X), Some(far + 1));
}

/// Fails if B, begun at `b_win`, accepts any packet A's lost life (begun
/// at `a_win`) accepted.
fn a_lost_life_accepted_once(
    a_win: &(u64, Vec<u64>),
    a_took: &[u64],
    b: &Mirror,
    b_win: &(u64, Vec<u64>),
    b_took: &[u64],
) {
    let what = format!(
        "A's lost life (top {}), then B (top {}, limit {:?})",
        a_win.0,
        b_win.0,
        b.inbound_limit(IN_X)
    );
    accepted_once(&what, a_took, b_took);
}

/// Reader3 find 1 (the open-holes chaos find `packet 201 of inbound SA
/// 0x3100 accepted twice`, `PROPTEST_RNG_SEED=1`, made deterministic).
///
/// Sequence (strict inbound takeover, interval 100): the pair is
/// synchronised (both lives said so). The host adds a new inbound SA
/// `IN_X` (home B, a rekey) to B first: B asks A, A knows nothing, B runs
/// it; A does not have it yet, so it keeps B's states as history (never
/// acknowledged), and B's limit stays at 1 (nothing acknowledged): B's
/// worker is refused packet 99 at the limit and reports it, B reports the
/// bound 99, A stores 99. The mirror link is cut. A declares B dead and
/// takes B's SAs over; then the host adds `IN_X` to A: A holds B's SAs
/// and does not hear B, so `add_sa_with` runs it at once an interval past
/// the 99 it knows (top 199, all below seen), its takeover's reach one
/// interval further counted as acknowledged (limit 300): A accepts
/// 200..=299. A dies. Its next life (with `IN_X` in its file) starts; the
/// link heals. B hears the new life and `peer_lost` moves its owned SA
/// past its mark 99: at 537e931 two intervals (top 299, so that once A's
/// new life acknowledged, B accepted 300..=398 a second time); now three
/// (top 399, all below seen). A's new life acknowledges 399; B's worker is
/// refused packet 1000 and reports it, and once that is acknowledged B
/// accepts 400..=1000, none of which A's lost life accepted.
///
/// Why: `peer_lost` (protocol/peer.rs, `Direction::Inbound` arm,
/// `restart_point(restart_point(mark))`) covers a lost life that *took
/// the SA over* (one interval past a value B reported) and ran up to its
/// lease (one more): two intervals. A lost life that *added* the SA while
/// holding B's SAs starts it two intervals past what it knows
/// (`add_sa_with`: `take_from(key, 1, restart_point(known))`, and
/// `take_from` applies `restart_point` again) and runs a third. (Outbound
/// SAs owned by B are saved by the slack that `reach()` folds into the
/// base, as long as B's last lease was acknowledged: see find 3.)
#[test]
fn an_inbound_sa_added_by_a_lost_life_holding_the_peers_sas_accepts_nothing_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    // The host adds a new inbound SA (home B) to B first.
    b.add_sa(IN_X, Direction::Inbound, false, B);
    let t = settle(&mut a, &mut b, t);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).unwrap_or((1, vec![]));
    // The far end sends 1..=1000 (and an attacker replays all of it). A
    // lacks the SA and acknowledges nothing of it: B accepts nothing, its
    // worker is refused packet 99 at the limit and reports it.
    let far = 1000;
    assert!(takes(&b, IN_X, WINDOW, &b_win, far).is_empty());
    let top = 99;
    b.inbound_stalled(IN_X, top);
    let t = settle(&mut a, &mut b, t);
    assert_eq!(
        a.standby().get(IN_X, Direction::Inbound).unwrap().value,
        top
    );
    events(&mut a);
    events(&mut b);
    // The link is cut; A declares B dead and takes its SAs over; the host
    // then adds the SA to A.
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    a.add_sa(IN_X, Direction::Inbound, false, B);
    let (a_win, a_took) = runs_in_the_cut(&mut a, &mut b, t, far);
    // A dies; its next life has the SA in its file. The link heals.
    drop(a);
    let now = t + 200;
    let mut a2 = node(A, 5, now);
    a2.add_sa(IN_X, Direction::Inbound, false, B);
    let now = settle(&mut a2, &mut b, now);
    assert!(a2.synced());
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).expect("B moves its SA");
    b_wants_all_the_far_end_sent(&mut a2, &mut b, now, far);
    let b_took = takes(&b, IN_X, WINDOW, &b_win, far);
    a_lost_life_accepted_once(&a_win, &a_took, &b, &b_win, &b_took);
}

/// Reader3 find 2 (the one-step bump of an SA this node lacks).
///
/// Sequence (strict, interval 100): the pair is synchronised; the host
/// adds inbound SA `IN_X` (home B) to both nodes; B runs it and accepts
/// 1..=100 (each step past its limit first refused and reported, then
/// acknowledged), A stores and acknowledges top 100. The host deletes the
/// SA on both nodes (`remove_sa`: B sends its final value 100 as a
/// History record; both keep 100 as history). The link is cut; A declares
/// B dead and takes B's SAs over. The host adds `IN_X` again (a rekey
/// that reuses it) and reaches A first: A holds B's SAs, so it runs it at
/// once, an interval past its history (top 200, all below seen), its
/// takeover's reach an interval further (limit 301): A accepts 201..=300.
/// A dies; its next life starts; the link heals. B hears the new life and
/// `peer_lost` moves the history of the SA it lacks (at 537e931 by one
/// step, so that B restarted it at 300 with the old extra interval and
/// accepted 301..=399 again; now by two: 100 + 200 = 300) and sends it in
/// the new life's bulk sync. The host adds `IN_X` to both nodes: A's new
/// life registers it (B's home); B, synchronised, asks, A's new life
/// answers 300, and B starts it there: top 300, all below seen. B's
/// worker is refused packet 1000 and reports it; once that is
/// acknowledged B accepts 301..=1000, none of which A's lost life
/// accepted.
///
/// Why: `peer_lost` (protocol/peer.rs, the first loop over `retired`) moves
/// the history of an SA this node lacks by one step (the largest
/// interval), so whoever runs it next starts two steps past the history;
/// but a lost life holding the peer's SAs that added the SA ran it up to
/// *three* steps past (`add_sa_with`, as in find 1).
#[test]
fn an_sa_deleted_here_and_readded_by_a_lost_life_holding_the_peers_sas_accepts_nothing_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    b.add_sa(IN_X, Direction::Inbound, false, B);
    a.add_sa(IN_X, Direction::Inbound, false, B);
    let t = settle(&mut a, &mut b, t);
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).unwrap_or((1, vec![]));
    let far = 1000;
    let top = 100;
    let t = accepts_up_to(&mut b, &mut a, IN_X, t, (b_win.0, top), &[u64::MAX]);
    // Deleted on both nodes; the history stays.
    assert!(b.remove_sa(IN_X, Direction::Inbound));
    assert!(a.remove_sa(IN_X, Direction::Inbound));
    let t = settle(&mut a, &mut b, t);
    assert_eq!(
        a.standby().get(IN_X, Direction::Inbound).unwrap().value,
        top
    );
    events(&mut a);
    events(&mut b);
    // Cut; A takes B's SAs over; the host adds the SA again, to A first.
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    a.add_sa(IN_X, Direction::Inbound, false, B);
    let (a_win, a_took) = runs_in_the_cut(&mut a, &mut b, t, far);
    // A dies; its next life syncs with B; the host adds the SA to both.
    drop(a);
    let now = t + 200;
    let mut a2 = node(A, 5, now);
    let now = settle(&mut a2, &mut b, now);
    assert!(a2.synced());
    a2.add_sa(IN_X, Direction::Inbound, false, B);
    b.add_sa(IN_X, Direction::Inbound, false, B);
    let now = settle(&mut a2, &mut b, now);
    assert!(!b.asking(IN_X, Direction::Inbound));
    let b_win = last_start(&events(&mut b), IN_X, Direction::Inbound).expect("B runs it again");
    b_wants_all_the_far_end_sent(&mut a2, &mut b, now, far);
    let b_took = takes(&b, IN_X, WINDOW, &b_win, far);
    a_lost_life_accepted_once(&a_win, &a_took, &b, &b_win, &b_took);
}

/// Reader3 find 3 (find 1 for an outbound SA: the peer never
/// acknowledges the state of an SA it lacks).
///
/// Sequence (jump 1000, quantity 400, so slack 600): the pair is
/// synchronised. The host adds outbound SA `OUT_X` (home B) to B first:
/// B asks, A knows nothing, B runs it from 1 with nothing acknowledged
/// (limit 0 + 600). A lacks the SA, so it merges B's states as history
/// and never acknowledges them (ce555e7): B sends 1..=599 and reports
/// lease 999, which A stores. The link is cut; A declares B dead, takes
/// B's SAs over; the host adds `OUT_X` to A: `add_sa_with` runs it at
/// once two jumps past the 999 A knows (start 2999, acknowledged = start,
/// limit 3599): A sends 2999..=3598. A dies; its next life (with the SA
/// in its file) starts; the link heals. B hears the new life and
/// `peer_lost` / `OwnedOutbound::peer_restarted` moves the SA to
/// `max(sent_lease 999, reach 600) + 2 * 1000 = 2999`. A's new life
/// acknowledges B's lease and B sends 2999.. again.
///
/// Why: the two jumps in `peer_restarted` cover a lost life that took the
/// SA over (one jump past a lease B sent) and ran up to its own slack
/// only when B's `reach()` (acknowledged + slack) adds the missing third
/// step; an SA whose lease the peer never acknowledged (the peer lacked
/// it) or whose last acknowledgement was lost has `reach` below
/// `sent_lease + slack`, and the lost life's `add_sa_with` start
/// (`take_from(restart_point(known))`: two jumps) plus its slack is
/// three steps.
#[test]
fn an_outbound_sa_added_by_a_lost_life_holding_the_peers_sas_uses_no_number_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    b.add_sa(OUT_X, Direction::Outbound, false, B);
    let t = settle(&mut a, &mut b, t);
    assert!(!b.asking(OUT_X, Direction::Outbound));
    let b_next = last_start(&events(&mut b), OUT_X, Direction::Outbound).map_or(1, |s| s.0);
    let b_used = usable(&b, OUT_X, b_next);
    assert!(!b_used.is_empty(), "B runs it");
    b.outbound_progress(OUT_X, b_used.end - 1, 0, b_used.end - b_used.start);
    let t = settle(&mut a, &mut b, t);
    events(&mut a);
    events(&mut b);
    // Cut; A takes over B's SAs; the host adds the SA to A.
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    a.add_sa(OUT_X, Direction::Outbound, false, B);
    mute(&mut a, t + 100);
    mute(&mut b, t + 100);
    let a_next = last_start(&events(&mut a), OUT_X, Direction::Outbound)
        .expect("A runs it at once")
        .0;
    let a_used = usable(&a, OUT_X, a_next);
    assert!(!a_used.is_empty());
    a.outbound_progress(OUT_X, a_used.end - 1, 0, a_used.end - a_used.start);
    mute(&mut a, t + 110);
    drop(a);
    let now = t + 200;
    let mut a2 = node(A, 5, now);
    a2.add_sa(OUT_X, Direction::Outbound, false, B);
    // B's worker sends as far as its limit allows, as often as it rises.
    let mut b_next = b_used.end;
    let mut b_after = Vec::new();
    let mut now = now;
    for _ in 0..10 {
        now = settle(&mut a2, &mut b, now);
        if let Some((s, _)) = last_start(&events(&mut b), OUT_X, Direction::Outbound) {
            b_next = b_next.max(s);
        }
        let r = usable(&b, OUT_X, b_next);
        if !r.is_empty() {
            b.outbound_progress(OUT_X, r.end - 1, 0, r.end - 1);
            b_next = r.end;
            b_after.push(r);
        }
    }
    assert!(a2.synced());
    for r in &b_after {
        let twice = overlap(&a_used, r);
        assert!(
            twice.is_empty(),
            "A's lost life sent {a_used:?}; B after the new life sent {r:?}: {} numbers twice",
            twice.end - twice.start
        );
    }
    assert!(!b_after.is_empty(), "B runs again");
}
