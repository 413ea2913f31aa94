//! reader23: attacks on commit 2d8a049 (`take_over` begins the SAs added
//! at run time whose question a silent peer has not answered,
//! `begin_unanswered`).

mod pair;

use espgate_mirror::{InboundTakeover, Mirror, MirrorEvent};
use espgate_wire::Direction;
use pair::*;

/// An outbound SA of home A added at run time (a rekey's new SA).
const OUT_R: u32 = 0x1e23;
/// An inbound SA of home A added at run time.
const IN_R: u32 = 0x2e23;

/// The last start of outbound `spi` among `evs`.
fn started(evs: &[MirrorEvent], spi: u32) -> Option<u64> {
    starts_in(evs, spi, Direction::Outbound).last().copied()
}

/// A and B synchronised; `spi` (home A; outbound ones ESN) added on both
/// just as the mirror link is cut, so neither question nor answer gets
/// through; each declares the other dead. Returns A, B and the time;
/// nothing is taken over yet.
fn cut_after_adding(spi: u32, dir: Direction, mode: InboundTakeover) -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (node_with(A, 1, 0, mode), node_with(B, 2, 0, mode));
    let mut t = settle(&mut a, &mut b, 0);
    let esn = dir == Direction::Outbound;
    a.add_sa(spi, dir, esn, A);
    b.add_sa(spi, dir, esn, A);
    mute(&mut a, t);
    mute(&mut b, t);
    t += 1000;
    declare_dead(&mut a, t);
    declare_dead(&mut b, t);
    events(&mut a);
    events(&mut b);
    (a, b, t)
}

/// Find 1 (liveness; fixed: an add while the peer is silent begins
/// without the answer): a rekey *after* the failover. B is dead for good;
/// the host ordered A's takeover and B's fence once, when B failed (that
/// is all `espgate host` orders). An hour later IKE rekeys A's tunnel: the
/// host adds the new SA to A (B is down). A is synchronised, so the add
/// asked B and waited at limit 0; `begin_unanswered` ran only inside
/// `take_over`, which nobody calls again, and the fence came before the
/// add. The new SA never ran while A was alive and alone: the tunnel was
/// down after the rekey deleted the old SA. (The explorer's property 5
/// calls `take_over` again on its clone, which hid this.)
#[test]
fn a_rekey_after_the_takeover_and_fence_runs() {
    let (mut a, mut t) = a_alone_taken_over_and_fenced();
    a.add_sa(OUT_R, Direction::Outbound, true, A);
    a.remove_sa(OUT_A, Direction::Outbound);
    // A long time alone: timers, refreshes, alarms.
    let evs = alone(&mut a, t, t + 5_000);
    t += 5_000;
    let start = started(&evs, OUT_R).unwrap_or(1);
    assert!(
        !a.asking(OUT_R, Direction::Outbound) && !usable(&a, OUT_R, start).is_empty(),
        "at {t} ms, B dead and fenced, A alone: the rekeyed SA still asks B \
         (asking {}) with limit {:?}: nobody runs it",
        a.asking(OUT_R, Direction::Outbound),
        a.limit(OUT_R)
    );
}

/// Find 1, inbound: the same for an inbound SA added after the takeover
/// and the fence: A accepted nothing on it for as long as B was gone.
#[test]
fn an_inbound_sa_added_after_the_takeover_and_fence_accepts() {
    let (mut a, t) = a_alone_taken_over_and_fenced();
    a.add_sa(IN_R, Direction::Inbound, false, A);
    alone(&mut a, t, t + 5_000);
    assert!(
        !a.asking(IN_R, Direction::Inbound) && a.inbound_limit(IN_R).unwrap_or(0) > 0,
        "B dead and fenced, A alone: the inbound SA added since still asks B \
         (asking {}) with limit {:?}",
        a.asking(IN_R, Direction::Inbound),
        a.inbound_limit(IN_R)
    );
}

/// The window tests give an inbound worker.
const WINDOW: u64 = 64;

/// Holds: a split brain with an inbound SA added at run time on both
/// nodes just as the link is cut (neither question nor answer gets
/// through). B takes A's SAs over, IN_R among them (one interval past the
/// nothing it knows, the add being unheard, and one more of takeover
/// reach); A takes B's over and begins IN_R without the answer, two
/// intervals past, at its limit. The far end's packets, copied to both by
/// the attacker, pass at most once; the link heals, B's takeover wins, B
/// hands IN_R back, and A's window after that passes nothing B took.
#[test]
fn an_inbound_add_begun_in_a_split_brain_accepts_nothing_twice() {
    let (mut a, mut b, mut t) = cut_after_adding(IN_R, Direction::Inbound, InboundTakeover::Strict);
    b.take_over();
    assert!(a.asking(IN_R, Direction::Inbound));
    a.take_over();
    assert!(!a.asking(IN_R, Direction::Inbound));
    let b_run = last_start(&events(&mut b), IN_R, Direction::Inbound).expect("B runs IN_R");
    let a_run = last_start(&events(&mut a), IN_R, Direction::Inbound).expect("A begins IN_R");
    let far = 10 * INTERVAL;
    let b_took = takes(&b, IN_R, WINDOW, &b_run, far);
    let a_took = takes(&a, IN_R, WINDOW, &a_run, far);
    accepted_once("A and B in the split brain", &b_took, &a_took);
    assert!(!b_took.is_empty(), "B accepts on IN_R");
    // B's worker reports what it took; A's took nothing to report.
    let top = *b_took.last().unwrap();
    b.inbound_progress(IN_R, top, &[u64::MAX], 0, b_took.len() as u64);
    // The link heals.
    t = settle(&mut a, &mut b, t + 10);
    t = settle(&mut a, &mut b, t);
    events(&mut a);
    assert!(b.owns(IN_R, Direction::Inbound) != a.owns(IN_R, Direction::Inbound));
    if a.owns(IN_R, Direction::Inbound) {
        let now = takes(&a, IN_R, WINDOW, &(a_run.0, a_run.1.clone()), far * 3);
        accepted_once("A after the heal", &b_took, &now);
        return;
    }
    assert_eq!(b.hand_back(), 3, "OUT_A, IN_A and IN_R back home");
    settle(&mut a, &mut b, t);
    let back = last_start(&events(&mut a), IN_R, Direction::Inbound).expect("A runs IN_R again");
    let now = takes(&a, IN_R, WINDOW, &back, far * 3);
    accepted_once("A after B's hand-back", &b_took, &now);
    assert!(back.0 >= top, "A starts at {} below B's top {top}", back.0);
}

/// Holds: the outbound twin. A rekey's new SA is added on both nodes as
/// the link is cut; B takes it over with A's SAs and sends up to its
/// limit, A begins it without the answer and may not send before a fence
/// or an acknowledgement. The link heals; B's takeover wins, A's final
/// goes to B as a copy, B moves past it; B hands everything back and A's
/// run starts past all B used.
#[test]
fn an_outbound_add_begun_in_a_split_brain_uses_no_number_twice() {
    let (mut a, mut b, mut t) =
        cut_after_adding(OUT_R, Direction::Outbound, InboundTakeover::Strict);
    b.take_over();
    a.take_over();
    let b_start = started(&events(&mut b), OUT_R).expect("B runs OUT_R");
    let a_start = started(&events(&mut a), OUT_R).expect("A begins OUT_R");
    let b_used = usable(&b, OUT_R, b_start);
    let a_used = usable(&a, OUT_R, a_start);
    assert!(
        overlap(&b_used, &a_used).is_empty(),
        "B may use {b_used:?}, A {a_used:?}"
    );
    assert!(!b_used.is_empty());
    b.outbound_progress(OUT_R, b_used.end - 1, 0, b_used.end - b_start);
    t = settle(&mut a, &mut b, t + 10);
    t = settle(&mut a, &mut b, t);
    events(&mut a);
    assert!(b.owns(OUT_R, Direction::Outbound) != a.owns(OUT_R, Direction::Outbound));
    b.hand_back();
    settle(&mut a, &mut b, t);
    let back = started(&events(&mut a), OUT_R).expect("A runs OUT_R again");
    assert!(
        back >= b_used.end,
        "A starts OUT_R at {back}; B used up to {}",
        b_used.end - 1
    );
}

/// Doc (not a break of the promise): `begin_unanswered`'s doc comment
/// ("it sends once the peer acknowledges a lease (heard again) or is
/// fenced") and docs/mirror-protocol.md ("three steps past what the node
/// stores of it") were not true of a *lenient* inbound SA: a lenient
/// restart point does not step, so the SA begins at what A stores (0
/// here), and with a limit one interval past it it accepted at once, the
/// peer neither heard nor fenced; B, cut off and alive, took the same SA
/// over from 0 too, and both accepted packets 1..interval (the kind of
/// overlap a lenient split brain allows: the protocol doc promises
/// disjoint windows only for strict).
///
/// With inbound leases reaching only as far past the top as the peer
/// acknowledged, the doc comment holds for lenient too: A's begun SA
/// starts at 0 with limit 1, and its worker, stalled by the far end's
/// packets, reports them and waits -- the silent peer acknowledges
/// nothing -- until the fence, which lets the limit follow A's own
/// bound. Only B (its takeover reaching an interval past 0) accepts
/// meanwhile. (The test keeps its name.)
#[test]
fn doc_a_lenient_inbound_add_begun_unanswered_accepts_before_any_fence() {
    let mode = InboundTakeover::Lenient;
    let (mut a, mut b, t) = cut_after_adding(IN_R, Direction::Inbound, mode);
    b.take_over();
    a.take_over();
    let b_run = last_start(&events(&mut b), IN_R, Direction::Inbound).expect("B runs IN_R");
    let a_run = last_start(&events(&mut a), IN_R, Direction::Inbound).expect("A begins IN_R");
    assert_eq!(a_run.0, 0, "begun at what A stores, no step");
    // The far end's packets stall A's worker; its report reaches nobody.
    a.inbound_stalled(IN_R, 10);
    alone(&mut a, t, t + 500);
    assert!(!a.peer_alive() && a.inbound_limit(IN_R) == Some(a_run.0 + 1));
    let a_took = takes(&a, IN_R, WINDOW, &a_run, 10 * INTERVAL);
    let b_took = takes(&b, IN_R, WINDOW, &b_run, 10 * INTERVAL);
    assert!(
        a_took.is_empty(),
        "A accepts {a_took:?}, unfenced, the peer silent"
    );
    assert!(!b_took.is_empty(), "B accepts on its takeover");
    // Fenced, A's limit follows its own bound: the stalled packet passes.
    assert!(a.force_unleased().is_ok());
    assert!(a.inbound_limit(IN_R).unwrap() > 10, "A accepts once fenced");
}

/// Holds: the begun SA deleted and added again (same SA) while the peer
/// is still dead and fenced: the second begin, at the add (the peer is
/// silent), starts past everything the first run used unleased (its final
/// is stored as the SA's history).
#[test]
fn a_begun_sa_deleted_and_added_again_starts_past_its_unleased_run() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    a.add_sa(OUT_R, Direction::Outbound, true, A);
    mute(&mut a, t);
    drop(b);
    declare_dead(&mut a, t + 1000);
    a.take_over();
    assert!(a.force_unleased().is_ok());
    let start = started(&events(&mut a), OUT_R).expect("A runs OUT_R");
    assert_eq!(a.limit(OUT_R), Some(u64::MAX), "fenced: unleased");
    // Far past anything a lease would allow.
    let used = start + 50 * JUMP;
    a.outbound_progress(OUT_R, used, 0, used - start + 1);
    a.remove_sa(OUT_R, Direction::Outbound);
    a.add_sa(OUT_R, Direction::Outbound, true, A);
    assert!(!a.asking(OUT_R, Direction::Outbound));
    let again = started(&events(&mut a), OUT_R).expect("A begins OUT_R again");
    assert!(
        again > used,
        "begins at {again}; the first run used up to {used}"
    );
}

/// Holds: the split brain of the inbound test above, but B dies in it
/// after accepting on IN_R (unheard), and A is not fenced (`takeover:
/// auto`, no host). A's begun IN_R waits at its limit; B's next life
/// (started with IN_R in its file) synchronises, A moves IN_R past B's
/// lost life, B2 acknowledges, and the question A asks again is
/// answered; A's worker, stalled by the far end's next packets, gets
/// them acknowledged: nothing B's lost life took passes at A.
#[test]
fn an_inbound_add_begun_then_the_peer_back_in_a_new_life_accepts_nothing_twice() {
    let (mut a, mut b, mut t) = cut_after_adding(IN_R, Direction::Inbound, InboundTakeover::Strict);
    b.take_over();
    a.take_over();
    let b_run = last_start(&events(&mut b), IN_R, Direction::Inbound).expect("B runs IN_R");
    let a_run = last_start(&events(&mut a), IN_R, Direction::Inbound).expect("A begins IN_R");
    let far = 10 * INTERVAL;
    let b_took = takes(&b, IN_R, WINDOW, &b_run, far);
    assert!(!b_took.is_empty());
    let before = takes(&a, IN_R, WINDOW, &a_run, far);
    accepted_once("A before B2", &b_took, &before);
    let top = *b_took.last().unwrap();
    b.inbound_progress(IN_R, top, &[u64::MAX], 0, b_took.len() as u64);
    mute(&mut b, t + 10);
    drop(b);
    t += 100;
    let mut b2 = node(B, 7, t);
    b2.add_sa(IN_R, Direction::Inbound, false, A);
    let mut evs = Vec::new();
    for _ in 0..4 {
        t = settle(&mut a, &mut b2, t);
        evs.extend(events(&mut a));
    }
    assert!(b2.synced());
    assert!(a.owns(IN_R, Direction::Inbound));
    let now = last_start(&evs, IN_R, Direction::Inbound).unwrap_or(a_run);
    // The far end's next packets stall A's worker at its limit (the lease
    // reaches no further than the top at this rate); B2 acknowledges.
    a.inbound_stalled(IN_R, now.0 + INTERVAL);
    settle(&mut a, &mut b2, t);
    let later = takes(&a, IN_R, WINDOW, &now, far * 10);
    accepted_once("A once B2 acknowledged", &b_took, &later);
    assert!(!later.is_empty(), "A accepts on IN_R again");
}
