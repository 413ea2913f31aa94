//! What a fresh reader found in the zero-reuse fixes, one test each (each
//! failed before its fix): a peer's SA deleted and added again on the node
//! holding it during a split brain, and an inbound stall report taken for
//! the worker's window.

use espgate_mirror::{InboundTakeover, Mirror, MirrorConfig, MirrorEvent, MirrorKey};
use espgate_wire::mirror::SaDir;

const A: u32 = 1;
const B: u32 = 2;
/// Outbound, home A.
const OUT_A: u32 = 0x1000;
/// Outbound, home B.
const OUT_B: u32 = 0x1001;
/// Inbound, home A.
const IN_A: u32 = 0x2000;
const JUMP: u64 = 1000;
const INTERVAL: u64 = 100;

fn key() -> MirrorKey {
    MirrorKey::new(b"mirror test key, 32 bytes long!!").unwrap()
}

fn cfg(node: u32) -> MirrorConfig {
    MirrorConfig {
        node,
        peer: if node == A { B } else { A },
        interval: 100,
        quantity: 400,
        lease: true,
        takeover_jump: JUMP,
        takeover_jump_32: JUMP,
        inbound_interval: INTERVAL,
        inbound_takeover: InboundTakeover::Strict,
        heartbeat_ms: 10,
        dead_after: 3,
        refresh_ms: 50,
        max_frame: 1400,
    }
}

/// A node of the pair with its configured SAs.
fn node(me: u32, epoch: u64, now: u64) -> Mirror {
    let mut m = Mirror::new(cfg(me), key(), epoch, now);
    m.add_sa(OUT_A, SaDir::Outbound, false, A);
    m.add_sa(OUT_B, SaDir::Outbound, false, B);
    m.add_sa(IN_A, SaDir::Inbound, false, A);
    m
}

/// Delivers everything each side has to send, both ways, until quiet;
/// returns the frames each side sent (a's, then b's).
fn exchange(a: &mut Mirror, b: &mut Mirror, now: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut any = false;
        while let Some(f) = a.poll_transmit(now) {
            let _ = b.handle_frame(now, &f);
            fa.push(f);
            any = true;
        }
        while let Some(f) = b.poll_transmit(now) {
            let _ = a.handle_frame(now, &f);
            fb.push(f);
            any = true;
        }
        if !any {
            break;
        }
    }
    (fa, fb)
}

/// Several refresh periods of exchange, from `t`; returns the last time.
fn settle(a: &mut Mirror, b: &mut Mirror, mut t: u64) -> u64 {
    for _ in 0..6 {
        t += 60;
        exchange(a, b, t);
    }
    t
}

fn events(m: &mut Mirror) -> Vec<MirrorEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Where `spi` (direction `dir`) was activated among `evs`, in order.
fn starts_in(evs: &[MirrorEvent], spi: u32, dir: SaDir) -> Vec<u64> {
    evs.iter()
        .filter_map(|e| match e {
            MirrorEvent::Activate {
                spi: s,
                dir: d,
                start,
                ..
            } if *s == spi && *d == dir => Some(*start),
            _ => None,
        })
        .collect()
}

/// The numbers an outbound SA owned by `m` may use now, from `next`.
fn usable(m: &Mirror, spi: u32, next: u64) -> std::ops::Range<u64> {
    next..m.limit(spi).unwrap_or(0).max(next)
}

/// The packets an inbound SA owned by `m` may accept now, its window top
/// being `top` with everything at and below it seen (strict).
fn acceptable(m: &Mirror, spi: u32, top: u64) -> std::ops::Range<u64> {
    top + 1..m.inbound_limit(spi).unwrap_or(0).max(top + 1)
}

fn overlap(a: &std::ops::Range<u64>, b: &std::ops::Range<u64>) -> std::ops::Range<u64> {
    a.start.max(b.start)..a.end.min(b.end).max(a.start.max(b.start))
}

/// `m` declares its peer dead at `now`.
fn declare_dead(m: &mut Mirror, now: u64) {
    m.handle_timeout(now);
    assert!(!m.peer_alive());
}

/// A and B synchronised; then B, not hearing A for a moment, takes A's
/// SAs over and A (hearing B's ownership records) lets them go: B holds
/// OUT_A and IN_A (no failback yet). Returns the time.
fn b_holds_a_sas(a: &mut Mirror, b: &mut Mirror) -> u64 {
    exchange(a, b, 0);
    declare_dead(b, 100);
    assert_eq!(b.take_over(), 2);
    let t = settle(a, b, 100);
    assert!(!a.owns(OUT_A, SaDir::Outbound) && !a.owns(IN_A, SaDir::Inbound));
    assert!(b.owns(OUT_A, SaDir::Outbound) && b.owns(IN_A, SaDir::Inbound));
    events(a);
    events(b);
    t
}

/// Review find 1 (inbound): B holds A's inbound SA; the mirror link is
/// cut and A takes it back (a takeover from B's last reported top, plus
/// one interval). The host deletes the SA and adds it again (same SPI and
/// key) on B during the partition: B, holding A's SAs, starts it "as a
/// takeover would", from its own last top plus one interval: the very
/// packets A's takeover accepts.
#[test]
fn an_inbound_sa_held_then_taken_back_and_readded_on_the_holder_is_not_accepted_twice() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = b_holds_a_sas(&mut a, &mut b);
    // B runs IN_A; A stores its tops and acknowledges them.
    let mut top = b.inbound_limit(IN_A).unwrap() - 1;
    for _ in 0..5 {
        b.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
        top = b.inbound_limit(IN_A).unwrap() - 1;
    }
    // The link is cut; each declares the other dead. A takes IN_A back.
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
    assert_eq!(a.take_over(), 3, "OUT_A, IN_A and OUT_B");
    let a_top = *starts_in(&events(&mut a), IN_A, SaDir::Inbound)
        .last()
        .expect("A runs IN_A again");
    let a_range = acceptable(&a, IN_A, a_top);
    assert!(!a_range.is_empty());
    // The host deletes IN_A and adds it again, same SPI and key, on B.
    events(&mut b);
    assert!(b.remove_sa(IN_A, SaDir::Inbound));
    b.add_sa(IN_A, SaDir::Inbound, false, A);
    let b_top = *starts_in(&events(&mut b), IN_A, SaDir::Inbound)
        .last()
        .expect("B runs the re-added SA at once: it holds A's SAs");
    let b_range = acceptable(&b, IN_A, b_top);
    let both = overlap(&a_range, &b_range);
    assert!(
        both.is_empty(),
        "A accepts {a_range:?}, B {b_range:?}: {} packets accepted by both",
        both.end - both.start
    );
}

/// Review find 1 (outbound): as above for an outbound SA, whose last
/// lease A stored but whose acknowledgement the cut lost: B's re-add
/// starts a jump past its own reach, below the top of A's takeover range.
#[test]
fn an_outbound_sa_held_then_taken_back_and_readded_on_the_holder_never_reuses_numbers() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = b_holds_a_sas(&mut a, &mut b);
    for _ in 0..5 {
        let used = b.limit(OUT_A).unwrap() - 1;
        b.outbound_progress(OUT_A, used, 0, used);
        t = settle(&mut a, &mut b, t);
    }
    // B sends one more lease; A stores it, and the cut loses A's answer.
    let used = b.limit(OUT_A).unwrap() - 1;
    b.outbound_progress(OUT_A, used, 0, used);
    t += 60;
    while let Some(f) = b.poll_transmit(t) {
        let _ = a.handle_frame(t, &f);
    }
    while a.poll_transmit(t).is_some() {}
    declare_dead(&mut a, t + 100);
    declare_dead(&mut b, t + 100);
    assert_eq!(a.take_over(), 3, "OUT_A, IN_A and OUT_B");
    let a_next = *starts_in(&events(&mut a), OUT_A, SaDir::Outbound)
        .last()
        .expect("A runs OUT_A again");
    let a_range = usable(&a, OUT_A, a_next);
    events(&mut b);
    assert!(b.remove_sa(OUT_A, SaDir::Outbound));
    b.add_sa(OUT_A, SaDir::Outbound, false, A);
    let b_next = *starts_in(&events(&mut b), OUT_A, SaDir::Outbound)
        .last()
        .expect("B runs the re-added SA at once: it holds A's SAs");
    let b_range = usable(&b, OUT_A, b_next);
    let both = overlap(&a_range, &b_range);
    assert!(
        both.is_empty(),
        "A may use {a_range:?}, B {b_range:?}: {} numbers used by both",
        both.end - both.start
    );
}

/// Review find 2: a stall report raises the mirror's top of an inbound SA
/// without moving the worker's window ("nothing new marked seen"). On a
/// restarted node the far end's packets go on arriving before the bulk
/// sync, so the worker (limit 0) reports one: the top jumps to its number.
/// The bulk's copy then restarts the SA at the stored top plus an
/// interval, but `recover` sees that below the (reported) top, does not
/// move it and sends no activation: the worker keeps its fresh window
/// (top 0, nothing seen) while its limit rises to the stored top plus an
/// interval, so every packet the earlier life accepted passes again.
#[test]
fn a_stall_reported_before_the_bulk_sync_does_not_let_the_earlier_lifes_packets_pass() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    let first = *starts_in(&events(&mut a), IN_A, SaDir::Inbound)
        .last()
        .expect("A runs IN_A from past the bulk sync");
    // A accepts as far as its lease lets it; B stores and acknowledges.
    let mut top = first;
    for _ in 0..5 {
        top = a.inbound_limit(IN_A).unwrap() - 1;
        a.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(&mut a, &mut b, t);
    }
    let accepted = first + 1..top + 1;
    // A crashes and restarts; the far end sends on while it syncs: the
    // worker, at limit 0, refuses an authentic fresh packet and reports it.
    drop(a);
    let mut a2 = node(A, 5, t);
    let fresh = top + 5 * INTERVAL;
    a2.inbound_stalled(IN_A, fresh);
    let t = settle(&mut a2, &mut b, t);
    assert!(a2.synced());
    // The worker's window: where the mirror last activated it (all seen at
    // and below), or as built (top 0, nothing seen) if it never did.
    let window_top = starts_in(&events(&mut a2), IN_A, SaDir::Inbound)
        .last()
        .copied()
        .unwrap_or(0);
    let _ = t;
    let now = acceptable(&a2, IN_A, window_top);
    let both = overlap(&accepted, &now);
    assert!(
        both.is_empty(),
        "A's first life accepted {accepted:?}; its second accepts {now:?} (window top {window_top}, no activation past {top})"
    );
}
