//! Holes a second fresh reader found in the zero-reuse promise, one test
//! each, named after what the promise says; each failed on the code it
//! was written against (main at 5cca5b0).

mod pair;

use espgate_mirror::{InboundTakeover, Mirror};
use espgate_wire::Direction;
use pair::*;

/// An outbound worker as the dataplane's: it sends `n` packets from
/// `next` below the mirror's limit and reports its sequence number only
/// when it crosses a multiple of the interval (`OutboundSa::report_due`).
/// Returns the numbers it used.
fn send(m: &mut Mirror, spi: u32, next: &mut u64, n: u64) -> std::ops::Range<u64> {
    let from = *next;
    let end = (from + n).min(m.limit(spi).unwrap_or(0)).max(from);
    for seq in from..end {
        if seq / OUT_INTERVAL > seq.saturating_sub(1) / OUT_INTERVAL || seq == from {
            m.outbound_progress(spi, seq, 0, seq);
        }
    }
    *next = end;
    from..end
}

/// Reader find 1. B is powered off; A takes B's outbound SA over and the
/// host fences A (a verified isolation), so A runs it without a lease.
/// A's worker reports its sequence number at interval crossings, as the
/// dataplane's does: the last report is below the numbers sent since.
/// B comes back in a new life; the fence ends as A hears it, and the host
/// (or an auto failback with a short delay) hands the SA back at once.
/// The Handover record carries `bound()` = `OwnedOutbound::reach()`,
/// which with the lease back on and nothing acknowledged
/// (`peer_restarted` reset it) is the last *reported* number plus one,
/// not a lease past it (`take_final` uses `reach().max(lease())`, the
/// record does not); B's new life begins exactly at that bound and sends
/// the numbers A's worker sent after its last report.
#[test]
fn a_hand_back_after_a_fence_starts_past_what_the_unleased_worker_sent() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1, "OUT_B");
    assert_eq!(a.force_unleased(), Ok(()));
    let mut next = *starts_in(&events(&mut a), OUT_B, Direction::Outbound)
        .last()
        .unwrap();
    assert_eq!(a.limit(OUT_B), Some(u64::MAX), "fenced: no lease");
    // A's worker sends 250 packets: it reported at its start and at
    // the two crossings, the last 50 are not reported yet.
    let a_used = send(&mut a, OUT_B, &mut next, 250);
    assert_eq!(a_used.end - a_used.start, 250);
    // B's next life; A hears its first frame (the fence is over) and
    // hands B's SA back before anything else.
    let now = t + 1000;
    let mut b2 = node(B, 5, now);
    while let Some(f) = b2.poll_transmit(now) {
        a.handle_frame(now, &f).unwrap();
    }
    assert!(a.peer_alive());
    assert_eq!(a.hand_back(), 1);
    // B's worker sends as soon as it may, whatever arrives after.
    let mut b_used = Vec::new();
    let mut b_next = 0;
    let mut t = now;
    for _ in 0..10 {
        t += 60;
        for _ in 0..20 {
            let mut any = false;
            while let Some(f) = a.poll_transmit(t) {
                let _ = b2.handle_frame(t, &f);
                if let Some(&s) = starts_in(&events(&mut b2), OUT_B, Direction::Outbound).last() {
                    b_next = b_next.max(s);
                }
                if b2.synced() && b2.owns(OUT_B, Direction::Outbound) {
                    let r = usable(&b2, OUT_B, b_next);
                    if !r.is_empty() {
                        b_used.push(r.clone());
                        b_next = r.end;
                        b2.outbound_progress(OUT_B, r.end - 1, 0, r.end - 1);
                    }
                }
                any = true;
            }
            while let Some(f) = b2.poll_transmit(t) {
                let _ = a.handle_frame(t, &f);
                any = true;
            }
            if !any {
                break;
            }
        }
    }
    assert!(b2.synced() && b2.owns(OUT_B, Direction::Outbound));
    for r in &b_used {
        let both = overlap(&a_used, r);
        assert!(
            both.is_empty(),
            "A's fenced worker sent {a_used:?} (reported up to {}); B's next life sent {r:?}: {} numbers twice",
            a_used.end / OUT_INTERVAL * OUT_INTERVAL,
            both.end - both.start
        );
    }
}

/// The replay window of the inbound SA's worker (one bitmap word).
const WINDOW: u64 = 64;

/// Whether a worker's replay window of `WINDOW` packets, restored from
/// `top` and `bitmap` as `ReplayWindow::restore` does (bit `k` is
/// `top - k`; numbers inside the window the bitmap does not cover are
/// fresh), refuses `seq`.
fn refuses(top: u64, bitmap: &[u64], seq: u64) -> bool {
    if seq > top {
        return false;
    }
    let k = top - seq;
    k >= WINDOW
        || bitmap
            .get((k / 64) as usize)
            .is_some_and(|w| w >> (k % 64) & 1 == 1)
}

/// Reader find 2 (lenient inbound takeover). A runs its inbound SA and
/// has accepted the ten packets below its limit (`L` = 100, once B
/// acknowledged the stall at 99 that gave A's worker the headroom; window
/// top `L - 1`, bitmap `0x3ff`), reported to B. The far end runs on and
/// A's worker reports a stall at `L + 5`. B restarts; A hears the new
/// life and `peer_lost` moves its owned inbound SA to the mark
/// (`value().max(sent_top())`, the stalled number) with
/// `Standby { value: mark, bitmap: i.bitmap() }`: the bitmap is relative
/// to the window top, not to the mark, and lenient `restart_window`
/// rebases it by `start - mark = 0`. The worker's window moves to `L + 5`
/// with the bits six places off: six packets A accepted (and reported)
/// are inside the window, unmarked, and accepted again once B's new life
/// acknowledges. (Strict marks everything seen and is not affected; the
/// lenient promise allows replays only of packets after the last record.)
#[test]
fn a_lenient_inbound_sa_moved_to_its_stall_on_a_peer_restart_accepts_nothing_twice() {
    let lenient = InboundTakeover::Lenient;
    let (mut a, mut b) = (node_with(A, 1, 0, lenient), node_with(B, 2, 0, lenient));
    let t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    events(&mut a);
    let t = stall_then_acked(&mut a, &mut b, INTERVAL - 1, t);
    let limit = a.inbound_limit(IN_A).unwrap();
    assert_eq!(limit, INTERVAL);
    // A accepts limit-10 ..= limit-1 and reports the window.
    let accepted = limit - 10..limit;
    let top = limit - 1;
    a.inbound_progress(IN_A, top, &[0x3ff], 0, 10);
    // The far end ran on: the worker refuses an authentic packet past
    // the limit and reports it.
    a.inbound_stalled(IN_A, limit + 5);
    let t = settle(&mut a, &mut b, t);
    events(&mut a);
    // B restarts; A hears its new life.
    drop(b);
    let mut b2 = node_with(B, 5, t, lenient);
    settle(&mut a, &mut b2, t);
    accepts_none_again(&mut a, &accepted, top);
}

/// Reader find 3 (lenient inbound takeover). A runs its inbound SA and
/// has accepted the ten packets below its limit (100, once B acknowledged
/// a stall at 99), reported and acknowledged. B restarts with its state directory, whose mark for the
/// SA's key (B's own: the SA is parked there, and its mark moves on by
/// its reach at every start) is a few packets above A's top:
/// `Mirror::restore` stores it as B's standby value. B's new life
/// acknowledges A's next state with that stored value, above anything A
/// sent: `acked_beyond` calls `recover(spi, dir, lease, &[])`, and the
/// lenient `restart_window` keeps that empty bitmap, so A's window moves
/// a few packets up with *nothing* seen: every packet A accepted inside
/// the window passes again (not only those after its last record, as the
/// lenient mode allows on a takeover).
#[test]
fn a_lenient_inbound_sa_acknowledged_beyond_what_it_sent_accepts_nothing_twice() {
    let lenient = InboundTakeover::Lenient;
    let (mut a, mut b) = (node_with(A, 1, 0, lenient), node_with(B, 2, 0, lenient));
    let t = settle(&mut a, &mut b, 0);
    events(&mut a);
    let t = stall_then_acked(&mut a, &mut b, INTERVAL - 1, t);
    let limit = a.inbound_limit(IN_A).unwrap();
    assert_eq!(limit, INTERVAL);
    let accepted = limit - 10..limit;
    let top = limit - 1;
    a.inbound_progress(IN_A, top, &[0x3ff], 0, 10);
    let t = settle(&mut a, &mut b, t);
    events(&mut a);
    // B restarts; its state holds a mark for the SA's key just above
    // A's top.
    drop(b);
    let mut b2 = node_with(B, 5, t, lenient);
    b2.restore(IN_A, Direction::Inbound, top + 6);
    settle(&mut a, &mut b2, t);
    accepts_none_again(&mut a, &accepted, top);
}

/// A's worker (IN_A, window top 0 at its start) stalls at `seq`: its
/// lease reaches no further than its top (no rate measured), so it
/// reports the number it refused; B acknowledges it and A's limit rises
/// past it. Returns the time.
fn stall_then_acked(a: &mut Mirror, b: &mut Mirror, seq: u64, t: u64) -> u64 {
    assert!(a.inbound_limit(IN_A).unwrap() <= seq);
    a.inbound_stalled(IN_A, seq);
    settle(a, b, t)
}

/// Fails if A's window, where its last activation (if any since `top`
/// with the ten packets below it seen) put it, takes any of `accepted`
/// again below its limit.
fn accepts_none_again(a: &mut Mirror, accepted: &std::ops::Range<u64>, top: u64) {
    let evs = events(a);
    let (new_top, bitmap) =
        last_start(&evs, IN_A, Direction::Inbound).unwrap_or((top, vec![0x3ff]));
    let limit = a.inbound_limit(IN_A).unwrap();
    let again: Vec<u64> = accepted
        .clone()
        .filter(|&s| s < limit && !refuses(new_top, &bitmap, s))
        .collect();
    assert!(
        again.is_empty(),
        "A accepted {accepted:?}; its window moved to {new_top} with bitmap {bitmap:x?} (limit {limit}) takes {again:?} again"
    );
}
