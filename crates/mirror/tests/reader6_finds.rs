//! What a sixth fresh reader found against a73574b, e77b97b, 39df1ae and
//! 4ad2473: two takeovers after the peer's death that wait for the dead
//! peer. Both are the price of the cap on what a takeover's start counts
//! as acknowledged (the peer may be alive behind a cut, and its bound for
//! a lost life of this node is what it stores plus three steps), so they
//! run once the host (or the operator) fences the peer; each test shows
//! that they do.

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use pair::*;

/// Delivers what `from` sends to `to`; `to`'s frames are dropped.
fn one_way(from: &mut Mirror, to: &mut Mirror, now: u64) {
    while let Some(f) = from.poll_transmit(now) {
        let _ = to.handle_frame(now, &f);
    }
    mute(to, now);
}

/// Reader6 find 1 (a73574b, liveness): a node that let its inbound SA go
/// while its worker stalled at the limit keeps the stall number (never
/// heard by the peer) as the SA's stored value; once the peer is dead, its
/// takeover starts past that number while only two intervals past `told`
/// count as acknowledged, and waits for the dead peer or a fence.
///
/// Sequence (strict, inbound interval 100): the pair is synchronised and
/// A's worker takes `IN_A` up to 397, each step past its limit first
/// refused and reported, then accepted and reported, each acknowledged (B
/// stores 397). A's side of the link is cut (B's frames still reach A).
/// The far end runs on: A's worker refuses packet 5000 at its limit and A
/// records it as the value to report (`inbound_stalled`); the report is
/// lost in the cut. B declares A dead and takes `IN_A` over at 397 (its
/// stored bound; its change carries its reach, an interval on: 497); the
/// change reaches A, which releases `IN_A`: its final value is
/// `max(value, sent_top)` = 5000, the unheard stall number, kept in its
/// standby table (and sent to B as the split-brain copy of 39df1ae, lost
/// in the cut). B dies. A declares it dead and takes its SAs over: `IN_A`
/// starts at top 5000 (the stored value, all at and below seen; its reach
/// 5100), but `acknowledged` caps that at `told` (497, B's change) plus
/// two intervals, so the limit is 698: below the top, and it never rises:
/// only B could acknowledge. Measured as found (when a start stepped an
/// interval past the stored value): B stored 397; A's takeover top 5100,
/// limit 797, 10 s later the same; now top 5000, limit 698. Before
/// a73574b the start counted as acknowledged and the SA ran at once
/// (limit 5200). Nothing but a fence or B's return unblocks A's own home
/// SA.
///
/// Why it waits: the stall report may have reached B all the same (only
/// B's change tells A it did not, and a report heard after the change
/// moves B's run past it unheard), and the far end stands at 5000, past
/// anything B stores plus the two intervals a lost life of A may run
/// unseen by B. Only a fence (the peer is powered off or isolated) makes
/// running there safe: the test fences B and checks that `IN_A` runs (its
/// worker, refused a packet far past the top, reports it, and without a
/// lease the limit follows A's own bound at once).
#[test]
fn a_takeover_past_an_unheard_stall_number_of_this_node_runs_once_the_dead_peer_is_fenced() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    t = accepts_up_to(&mut a, &mut b, IN_A, t, (0, 397), &[u64::MAX]);
    let reported = b.standby().get(IN_A, Direction::Inbound).unwrap().value;
    assert_eq!(reported, 397);
    // A's side of the link is cut: B hears nothing, A hears B. A's worker
    // refuses a packet far ahead at its limit; the report is lost.
    let far = 5000;
    assert!(far >= a.inbound_limit(IN_A).unwrap());
    a.inbound_stalled(IN_A, far);
    mute(&mut a, t + 10);
    for now in (t + 10..t + 60).step_by(10) {
        one_way(&mut b, &mut a, now);
        b.handle_timeout(now);
    }
    t += 60;
    assert!(!b.peer_alive());
    events(&mut b);
    // B takes A's SAs over; its change reaches A, which lets IN_A go.
    assert_eq!(b.take_over(), 2, "OUT_A and IN_A");
    one_way(&mut b, &mut a, t);
    assert!(!a.owns(IN_A, Direction::Inbound), "A let IN_A go");
    // B dies; A declares it dead and takes its SAs over.
    drop(b);
    t += 10;
    mute(&mut a, t);
    declare_dead(&mut a, t + 100);
    events(&mut a);
    a.take_over();
    let evs = events(&mut a);
    let top = last_start(&evs, IN_A, Direction::Inbound).unwrap().0;
    for now in (t + 100..t + 10_000).step_by(50) {
        a.handle_timeout(now);
        mute(&mut a, now);
    }
    let waiting = a.inbound_limit(IN_A);
    a.force_unleased().expect("the dead peer is fenced");
    // The far end ran on: A's worker refuses a packet far past the top and
    // reports it; with B fenced the limit follows A's own bound at once.
    a.inbound_stalled(IN_A, top + 10 * far);
    let accepts = acceptable(&a, IN_A, top);
    assert!(
        accepts.contains(&(top + 1)) && accepts.contains(&(top + 10 * far)),
        "A reported top {reported} and stalled at {far} unheard; B took IN_A over and died; \
         A's takeover of IN_A has top {top}, limit {waiting:?} 10 s later, and {:?} once B \
         is fenced",
        a.inbound_limit(IN_A)
    );
}

/// Reader6 find 2 (a73574b's cap with 4ad2473's extra step, liveness):
/// the peer's SA that this node ran, deleted and added again here while
/// the peer is dead, is taken over two jumps past this node's own final
/// state, a jump further than `acknowledged` lets count: it waits
/// for the dead peer.
///
/// Sequence (jump 1000, quantity 400): the pair is synchronised; A stores
/// B's lease of `OUT_B`, 2599 (also `told`). B dies (or the link is cut
/// for good); A declares it dead and takes `OUT_B` over at 3599, limit
/// 4199. The host deletes `OUT_B` on A and adds it again (same SPI: B is
/// unreachable, the add reaches A only): the delete keeps A's final,
/// `used_bound` = its reach 4199, as the SA's history (the history record
/// for B is lost), and the add marks the SA `unheard` (4ad2473). A takes
/// B's SAs over again: `take` moves the known value a step (5199) and
/// `take_from` another: `OUT_B` starts at 6199; `acknowledged` allows
/// `told` plus two jumps, 4599, so the limit is 5199: a jump below the
/// start. Nothing B could send arrives: 10 s later `OUT_B` may still send
/// nothing. The same start comes from the add itself when A holds other
/// SAs of B's, or took them over since it last heard B (the
/// add-while-holding path of `add_sa_with`, which this sequence now
/// takes). Before a73574b the start counted as acknowledged (limit 6799).
///
/// Why it waits: A sent B its leases up to 4199; B, alive behind a cut,
/// may have heard them and, having lost its view of the SA with the
/// delete, taken it over from 4199 plus a jump and run a quantity on: A's
/// start must pass that, and a run there is more than two jumps past
/// what B's life is known to store, the most a lost life of A may run
/// unseen by B. Only a fence makes it safe: the test fences B and checks
/// that `OUT_B` sends.
#[test]
fn a_takeover_of_the_peers_sa_added_again_after_this_node_ran_it_runs_once_the_peer_is_fenced() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    let lease = a.standby().get(OUT_B, Direction::Outbound).unwrap().value;
    // B dies; A takes OUT_B over.
    drop(b);
    mute(&mut a, t);
    declare_dead(&mut a, t + 100);
    events(&mut a);
    assert_eq!(a.take_over(), 1);
    let first = last_start(&events(&mut a), OUT_B, Direction::Outbound)
        .unwrap()
        .0;
    let first_limit = a.limit(OUT_B);
    // The host deletes OUT_B and adds it again (it reaches A only).
    assert!(a.remove_sa(OUT_B, Direction::Outbound));
    a.add_sa(OUT_B, Direction::Outbound, false, B);
    mute(&mut a, t + 110);
    // A took B's SAs over in this failure: the add takes OUT_B at once
    // (the add-while-holding path), and a takeover ordered again finds
    // nothing more.
    assert_eq!(a.take_over(), 0, "OUT_B runs here already");
    let evs = events(&mut a);
    let out = last_start(&evs, OUT_B, Direction::Outbound).unwrap().0;
    for now in (t + 100..t + 10_000).step_by(50) {
        a.handle_timeout(now);
        mute(&mut a, now);
    }
    let waiting = a.limit(OUT_B);
    a.force_unleased().expect("the dead peer is fenced");
    let sends = usable(&a, OUT_B, out);
    assert!(
        sends.contains(&out) && sends.contains(&(out + 1_000_000)),
        "B's lease {lease}; A's first takeover at {first} (limit {first_limit:?}); after the \
         delete and add, at {out} with limit {waiting:?} 10 s after B's death, and {:?} once B \
         is fenced",
        a.limit(OUT_B)
    );
}
