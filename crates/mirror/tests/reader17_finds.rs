//! What a seventeenth fresh reader found comparing the mirror core before
//! its refactor (crates/mirror/src/protocol.rs at 365a803) with the
//! modules it became (crates/mirror/src/protocol/, 3df1c38 and 58837c6),
//! which were meant to change no behaviour. The two finds come from one
//! change: the refresh and heartbeat timers are now served by
//! `handle_timeout` too (timer.rs, `Timer::ALL`), where before only
//! `poll_transmit` served them (old `poll_transmit`: `if now_ms >=
//! self.next_refresh { .. self.refresh() }`; old `build_frame`: `if now_ms
//! >= self.next_heartbeat { .. }`), and `handle_timeout` only declared
//! the peer dead. Both finds' tests failed on the refactor and passed
//! against 365a803 (this file with `SaDir` for `Direction`, run in a
//! scratch copy of that commit); the other two tests pass on both. Fixed:
//! `handle_timeout` serves only the peer's death again (`Timer::WATCHING`),
//! and `poll_transmit` the two timers whose work is frames.

mod pair;

use espgate_wire::Direction;
use espgate_wire::mirror::MirrorRecord;
use pair::*;

/// Reader17 find 1 (the module doc: "only the newest state of each SA
/// waits, so a slow or dead link never grows memory"): a node that calls
/// `handle_timeout` but not `poll_transmit` now queues the final states it
/// keeps for a split brain (`Changes::finals`) again at every refresh,
/// and nothing takes them off the queue.
///
/// The dataplane's mirror task is such a driver whenever it does not
/// send: each `turn()` calls `handle_timeout(now)` and calls
/// `port.send` (`poll_transmit`) only `if !self.parking && !self.silent`.
/// `silent` (workers lost, a panicked worker) is for good; `parking`
/// lasts while a worker has not taken its commands. A silent node is
/// exactly the one whose peer takes its SAs over (that is why it goes
/// silent), and it still receives: the peer's ownership changes arrive,
/// `change()` releases each SA it ran and keeps its final state in
/// `finals` (until the peer answers `Past`, which needs the copy to be
/// sent). From then on `refresh()` (`resend_finals`, not held back by
/// `FAR_BEHIND`) pushes up to 4096 boxed `SaState`s per refresh period
/// (100 ms by default) onto `outbox.due`, forever: megabytes a second on a
/// gateway with thousands of SAs, until the node is restarted or runs out
/// of memory. Before the refactor `handle_timeout` touched no queue, and
/// the refresh ran only where the queue was also drained.
///
/// No (SPI, sequence number) or packet is used twice through this; what
/// breaks is the bounded-memory promise (and a parking that lasts several
/// refresh periods sends the same final states that many times over once
/// it ends).
///
/// Fix: serve only `Timer::PeerDeath` in `handle_timeout` (as before), or
/// make the refresh idempotent on the queue (a final state queued at most
/// once, as `enqueue` does for owned SAs with `queued`).
#[test]
fn a_node_that_sends_nothing_does_not_grow_its_queue_at_every_timeout() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.owns(OUT_A, Direction::Outbound) && a.owns(IN_A, Direction::Inbound));
    // A goes silent (its workers are lost: the mirror task stops calling
    // poll_transmit). B declares it dead and takes its SAs over.
    t += 100;
    declare_dead(&mut b, t);
    assert_eq!(b.take_over(), 2);
    // B's frames still reach A: A learns it lost both SAs while it ran
    // them, and keeps their final states for B.
    while let Some(f) = b.poll_transmit(t) {
        a.handle_frame(t, &f).unwrap();
    }
    assert!(!a.owns(OUT_A, Direction::Outbound) && !a.owns(IN_A, Direction::Inbound));
    let before = a.queued();
    // The mirror task's turns go on: handle_timeout, never poll_transmit.
    for k in 1..=200u64 {
        a.handle_timeout(t + k * 50);
    }
    assert!(
        a.queued() <= before,
        "{} records queued before ten seconds of timeouts without sending, {} after",
        before,
        a.queued()
    );
}

/// Reader17 find 2 (`poll_timeout`'s contract: "When to call
/// handle_timeout and poll_transmit next"): `handle_timeout` now fires
/// the heartbeat timer (`Timer::Heartbeat`: the next one is rescheduled a
/// period on and `heartbeat_owed` is set), so right after it
/// `poll_timeout()` names the next period although a frame (the owed
/// heartbeat, and whatever the refresh queued) is due now. Before, the
/// heartbeat and refresh deadlines stayed where they were until
/// `poll_transmit` served them, so `poll_timeout()` stayed at or below
/// now while a frame was due.
///
/// A driver that sleeps until `poll_timeout()` and builds frames then
/// (handling timeouts first) now sends each heartbeat a period late, or
/// not at all until some input wakes it; with `dead_after` periods of
/// silence the peer's liveness check has one period less of margin. No
/// driver in this repository schedules by `poll_timeout` (the dataplane
/// polls in a loop; tests call both at the same time), so nothing breaks
/// here today; the difference matters for the sans-IO API as documented.
///
/// Fix: `deadline(Timer::Heartbeat)` is `now`-ish (0) while
/// `heartbeat_owed`, or serve the sending timers only in `poll_transmit`.
#[test]
fn poll_timeout_stays_due_while_a_heartbeat_waits() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    // The watching timers served too (settle serves only frames): A's
    // next deadline is its heartbeat (t + 10: death is t + 31, refresh
    // and the alarms later).
    a.handle_timeout(t);
    let d = a.poll_timeout();
    assert_eq!(d, t + 10);
    a.handle_timeout(d);
    let mut probe = a.clone();
    let f = probe.poll_transmit(d).expect("a frame is due at d");
    assert!(
        records(&f)
            .iter()
            .any(|r| matches!(r, MirrorRecord::Heartbeat { .. })),
        "the frame due is the heartbeat"
    );
    assert!(
        a.poll_timeout() <= d,
        "a heartbeat is due at {d}, but poll_timeout says {}",
        a.poll_timeout()
    );
}

/// The intended difference the brief names, checked and harmless: a bulk
/// request flagged while unsynchronised is dropped once the bulk
/// completes (`Join::Synced` has no `ask`). Before, `bulk_request`
/// outlived the sync, and a synchronised node that asked again got the
/// peer's whole bulk once more; its copies, arriving at a synchronised
/// node, went through `recover` and `Past`, and a copy raised by this
/// node's own reports since could move an owned SA a jump for nothing.
/// Dropping the request loses nothing (a synchronised node needs no
/// bulk). In the old code the flag could hardly outlive the sync (its
/// refresh ran inside `poll_transmit`, which sent it at once); with the
/// refresh now served by `handle_timeout` (find 1) it is set between
/// frames, and `Join` is what keeps it from going out after the sync.
/// Passes here, and against 365a803 (checked with this file adapted to
/// `SaDir`).
#[test]
fn a_request_flagged_before_the_sync_is_not_sent_after_it() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    drop(a);
    t += 100;
    let mut a2 = node(A, 5, t);
    // A2 asks, B answers with its bulk; A2 does not take it in yet.
    let asks = a2.poll_transmit(t).expect("A2 asks for a bulk");
    b.handle_frame(t, &asks).unwrap();
    let bulk: Vec<Vec<u8>> = std::iter::from_fn(|| b.poll_transmit(t)).collect();
    // A refresh is served before the bulk is taken in: a request is due.
    a2.handle_timeout(t + 50);
    for f in &bulk {
        a2.handle_frame(t + 50, f).unwrap();
    }
    assert!(a2.synced());
    let after: Vec<MirrorRecord> = std::iter::from_fn(|| a2.poll_transmit(t + 50))
        .flat_map(|f| records(&f))
        .collect();
    assert!(
        !after.iter().any(|r| matches!(r, MirrorRecord::BulkRequest)),
        "a synchronised node asks for no bulk"
    );
}

/// Checked and equal: a fence, then a new life of the fenced peer. As
/// before, `peer_restarted` runs while the fence still holds (the lease
/// rule is read from `Liveness::Fenced`, which `heard` replaces only
/// after it), so the new life does not move the SAs a second time
/// (`peer_lost` ran at the fence), and leases return once it is heard.
/// An SA added while fenced runs unleased and takes the lease back with
/// the others. Passes.
#[test]
fn a_fence_then_a_new_life_moves_nothing_twice_and_leases_return() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    drop(b);
    t += 100;
    declare_dead(&mut a, t);
    events(&mut a);
    a.force_unleased().expect("fenced");
    let fenced = events(&mut a);
    let moved_at_fence = starts_in(&fenced, OUT_A, Direction::Outbound);
    assert_eq!(moved_at_fence.len(), 1, "the fence moves OUT_A once");
    assert_eq!(a.limit(OUT_A), Some(u64::MAX), "unleased while fenced");
    const ADDED: u32 = 0x1100;
    a.add_sa(ADDED, Direction::Outbound, false, A);
    // The peer is silent: it begins without the answer, unleased.
    assert!(!a.asking(ADDED, Direction::Outbound));
    assert_eq!(a.limit(ADDED), Some(u64::MAX), "unleased while fenced");
    t += 100;
    let mut b2 = node(B, 9, t);
    let f = b2.poll_transmit(t).expect("B2 asks");
    a.handle_frame(t, &f).unwrap();
    let heard = events(&mut a);
    assert!(
        starts_in(&heard, OUT_A, Direction::Outbound).is_empty(),
        "a new life after a fence moves nothing again: {heard:?}"
    );
    assert_ne!(a.limit(OUT_A), Some(u64::MAX), "leases again once heard");
    assert_ne!(a.limit(ADDED), Some(u64::MAX), "the added SA's too");
}
