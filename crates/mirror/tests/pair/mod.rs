//! The two-node harness the zero-reuse tests share: a pair of real
//! `Mirror`s (A and B) with three configured SAs, small jumps and
//! intervals so that runs past them are quick to make, and the helpers that
//! move frames between them and read what they tell their workers.
//! (Each test file is its own crate and uses only some of it.)
#![allow(dead_code)]

use espgate_mirror::{InboundTakeover, Mirror, MirrorConfig, MirrorEvent, MirrorKey};
use espgate_wire::Direction;
use espgate_wire::mirror::{MirrorRecord, parse_records};

pub const A: u32 = 1;
pub const B: u32 = 2;
/// Outbound, home A.
pub const OUT_A: u32 = 0x1000;
/// Outbound, home B.
pub const OUT_B: u32 = 0x1001;
/// Inbound, home A.
pub const IN_A: u32 = 0x2000;
pub const JUMP: u64 = 1000;
pub const QUANTITY: u64 = 400;
/// The outbound interval: a worker reports its sequence number when it
/// crosses a multiple of it.
pub const OUT_INTERVAL: u64 = 100;
/// The inbound interval.
pub const INTERVAL: u64 = 100;

pub fn key() -> MirrorKey {
    MirrorKey::new(b"mirror test key, 32 bytes long!!").unwrap()
}

pub fn cfg_with(node: u32, inbound_takeover: InboundTakeover) -> MirrorConfig {
    MirrorConfig {
        node,
        peer: if node == A { B } else { A },
        interval: OUT_INTERVAL,
        quantity: QUANTITY,
        lease: true,
        takeover_jump: JUMP,
        takeover_jump_32: JUMP,
        inbound_interval: INTERVAL,
        inbound_ahead_ms: 10,
        inbound_grace: INTERVAL,
        inbound_takeover,
        heartbeat_ms: 10,
        dead_after: 3,
        refresh_ms: 50,
        max_frame: 1400,
    }
}

pub fn cfg(node: u32) -> MirrorConfig {
    cfg_with(node, InboundTakeover::Strict)
}

/// A node of the pair with its configured SAs (strict inbound takeover).
pub fn node(me: u32, epoch: u64, now: u64) -> Mirror {
    node_with(me, epoch, now, InboundTakeover::Strict)
}

pub fn node_with(me: u32, epoch: u64, now: u64, mode: InboundTakeover) -> Mirror {
    node_from(cfg_with(me, mode), epoch, now)
}

/// A node of the pair with its configured SAs, on configuration `c`.
pub fn node_from(c: MirrorConfig, epoch: u64, now: u64) -> Mirror {
    let mut m = Mirror::new(c, key(), epoch, now);
    m.add_sa(OUT_A, Direction::Outbound, false, A);
    m.add_sa(OUT_B, Direction::Outbound, false, B);
    m.add_sa(IN_A, Direction::Inbound, false, A);
    m
}

/// Delivers everything each side has to send, both ways, until quiet;
/// returns the frames each side sent (a's, then b's).
pub fn exchange(a: &mut Mirror, b: &mut Mirror, now: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
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
pub fn settle(a: &mut Mirror, b: &mut Mirror, mut t: u64) -> u64 {
    for _ in 0..6 {
        t += 60;
        exchange(a, b, t);
    }
    t
}

/// The records of a frame (none if it does not parse).
pub fn records(f: &[u8]) -> Vec<MirrorRecord> {
    parse_records(f).map(|(_, r)| r).unwrap_or_default()
}

/// Whether a frame carries the last part of a sending of a bulk sync.
pub fn bulk_end(f: &[u8]) -> bool {
    records(f)
        .iter()
        .any(|r| matches!(r, MirrorRecord::BulkPart { last: true, .. }))
}

/// Drops everything `m` has to send (a cut link).
pub fn mute(m: &mut Mirror, now: u64) {
    while m.poll_transmit(now).is_some() {}
}

pub fn events(m: &mut Mirror) -> Vec<MirrorEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// `m` alone from `from` to `to` (its frames lost), its timeouts served,
/// in steps of 10 ms; the events it raised.
pub fn alone(m: &mut Mirror, from: u64, to: u64) -> Vec<MirrorEvent> {
    let mut evs = Vec::new();
    for now in (from..=to).step_by(10) {
        m.handle_timeout(now);
        mute(m, now);
        evs.extend(events(m));
    }
    evs
}

/// Where `spi` (direction `dir`) was activated among `evs`, in order.
pub fn starts_in(evs: &[MirrorEvent], spi: u32, dir: Direction) -> Vec<u64> {
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

/// The last activation of `spi` (direction `dir`) among `evs`: its start
/// and the bitmap the worker's window gets.
pub fn last_start(evs: &[MirrorEvent], spi: u32, dir: Direction) -> Option<(u64, Vec<u64>)> {
    evs.iter().rev().find_map(|e| match e {
        MirrorEvent::Activate {
            spi: s,
            dir: d,
            start,
            bitmap,
        } if *s == spi && *d == dir => Some((*start, bitmap.clone())),
        _ => None,
    })
}

/// A reports what it accepted of inbound SA `spi` (`took`, in a cut
/// begun at `t`: B hears nothing of it) and dies; its next life
/// synchronises with B. Returns that life and the time.
pub fn a_dies_after_its_run(
    mut a: Mirror,
    b: &mut Mirror,
    t: u64,
    spi: u32,
    took: &[u64],
) -> (Mirror, u64) {
    let top = *took.last().expect("A accepted packets");
    a.inbound_progress(spi, top, &[u64::MAX], 0, took.len() as u64);
    mute(&mut a, t + 110);
    drop(a);
    let now = t + 200;
    let mut a2 = node(A, 5, now);
    let now = settle(&mut a2, b, now);
    assert!(a2.synced());
    (a2, now)
}

/// The packets a strict inbound SA owned by `m` may accept now, its
/// window top being `top` with everything at and below it seen.
pub fn acceptable(m: &Mirror, spi: u32, top: u64) -> std::ops::Range<u64> {
    top + 1..m.inbound_limit(spi).unwrap_or(0).max(top + 1)
}

/// The numbers an outbound SA owned by `m` may use now, from `next`.
pub fn usable(m: &Mirror, spi: u32, next: u64) -> std::ops::Range<u64> {
    next..m.limit(spi).unwrap_or(0).max(next)
}

/// `m` declares its peer dead at `now`.
pub fn declare_dead(m: &mut Mirror, now: u64) {
    m.handle_timeout(now);
    assert!(!m.peer_alive());
}

pub fn overlap(a: &std::ops::Range<u64>, b: &std::ops::Range<u64>) -> std::ops::Range<u64> {
    a.start.max(b.start)..a.end.min(b.end).max(a.start.max(b.start))
}

/// Whether a worker window of `window` packets restored at `top` with
/// `bitmap` (bit `k` is `top - k`; numbers inside the window the bitmap
/// does not cover are fresh, as `ReplayWindow::restore` has it) refuses
/// `seq`.
pub fn refuses(window: u64, top: u64, bitmap: &[u64], seq: u64) -> bool {
    if seq > top {
        return false;
    }
    let k = top - seq;
    k >= window.max(64 * bitmap.len() as u64)
        || bitmap
            .get((k / 64) as usize)
            .is_some_and(|w| w >> (k % 64) & 1 == 1)
}

/// Every packet an inbound worker with a window of `window` packets,
/// activated at `top` with `bitmap`, takes now, the far end having sent
/// everything up to `far`: in its window, unseen, below the mirror's
/// limit.
pub fn takes(
    m: &Mirror,
    spi: u32,
    window: u64,
    (top, bitmap): &(u64, Vec<u64>),
    far: u64,
) -> Vec<u64> {
    let limit = m.inbound_limit(spi).unwrap_or(0);
    (top.saturating_sub(window - 1).max(1)..=far)
        .filter(|&s| s < limit && !refuses(window, *top, bitmap, s))
        .collect()
}

/// Fails if `later` (what a worker takes now) holds any of `earlier`.
pub fn accepted_once(what: &str, earlier: &[u64], later: &[u64]) {
    let twice: Vec<u64> = earlier
        .iter()
        .copied()
        .filter(|x| later.contains(x))
        .collect();
    assert!(
        twice.is_empty(),
        "{what}: accepted {}..={} before; {} of them pass again: {}..={}",
        earlier[0],
        earlier[earlier.len() - 1],
        twice.len(),
        twice[0],
        twice[twice.len() - 1],
    );
}

/// Extra outbound SAs of home A (`many_parts`), so that a bulk takes many
/// parts.
pub const EXTRA: u32 = 0x3000;
pub const N_EXTRA: u32 = 12;

/// A node of the pair with small frames (a bulk of ~15 parts) and
/// `N_EXTRA` more outbound SAs of home A.
pub fn many_parts(me: u32, epoch: u64, now: u64) -> Mirror {
    let mut c = cfg(me);
    c.max_frame = 200;
    let mut m = node_from(c, epoch, now);
    for k in 0..N_EXTRA {
        m.add_sa(EXTRA + k, Direction::Outbound, false, A);
    }
    m
}

/// The bulk part a frame carries: (bulk number, part, parts).
pub fn part_of(f: &[u8]) -> Option<(u64, u32, u32)> {
    records(f).iter().find_map(|r| match r {
        MirrorRecord::BulkPart {
            bulk, part, parts, ..
        } => Some((*bulk, *part, *parts)),
        _ => None,
    })
}

/// Frames `m` sends at `now`, each handed to `to`; returns them.
pub fn deliver(m: &mut Mirror, to: &mut Mirror, now: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(f) = m.poll_transmit(now) {
        let _ = to.handle_frame(now, &f);
        out.push(f);
    }
    out
}

/// B dies, A takes OUT_B over, B's next life (B2) synchronises, and A
/// hands OUT_B back (the hand-over not yet delivered). Returns A, B2 (its
/// events drained before the hand-back) and the time.
pub fn handing_back_to_b2() -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    drop(b);
    declare_dead(&mut a, t + 100);
    assert_eq!(a.take_over(), 1);
    t += 200;
    let mut b2 = node(B, 5, t);
    t = settle(&mut a, &mut b2, t);
    assert!(b2.synced());
    events(&mut b2);
    assert_eq!(a.hand_back(), 1);
    (a, b2, t)
}

/// A and B run `spi` (outbound, ESN, home A, added at run time on both);
/// A dies and B takes everything over; A's next life (A2) starts from a
/// file without `spi` and synchronises; B hands everything back and the
/// two settle. Returns A2, B and the time.
pub fn handed_back_to_a2_lacking(spi: u32) -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    for m in [&mut a, &mut b] {
        m.add_sa(spi, Direction::Outbound, true, A);
    }
    t = settle(&mut a, &mut b, t);
    assert!(a.owns(spi, Direction::Outbound));
    drop(a);
    declare_dead(&mut b, t + 100);
    assert_eq!(b.take_over(), 3);
    let mut a2 = node(A, 3, t + 200);
    t = settle(&mut a2, &mut b, t + 200);
    assert!(a2.synced());
    assert_eq!(b.hand_back(), 3);
    t = settle(&mut a2, &mut b, t);
    t = settle(&mut a2, &mut b, t);
    (a2, b, t)
}

/// Everything `m` sends at `now`, delivered nowhere.
pub fn sent(m: &mut Mirror, now: u64) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| m.poll_transmit(now)).collect()
}

/// The parts (bulk, part) that `frames` carry.
pub fn parts_in(frames: &[Vec<u8>]) -> Vec<(u64, u32)> {
    frames
        .iter()
        .filter_map(|f| part_of(f))
        .map(|(bulk, part, _)| (bulk, part))
        .collect()
}

/// Hands `frames` to `to` at `now`, but those carrying parts in `lose`.
pub fn deliver_but(to: &mut Mirror, frames: &[Vec<u8>], lose: &[u32], now: u64) {
    for f in frames {
        if !part_of(f).is_some_and(|(_, p, _)| lose.contains(&p)) {
            let _ = to.handle_frame(now, f);
        }
    }
}

/// The resend request a frame carries, if any.
pub fn resend_of(f: &[u8]) -> Option<(u64, Vec<u32>)> {
    records(f).into_iter().find_map(|r| match r {
        MirrorRecord::BulkResend { bulk, parts } => Some((bulk, parts)),
        _ => None,
    })
}

/// A and B synchronised (bulks of many parts), then A dies and its next
/// life (A2, epoch 5) asks B for a bulk sync; returns A2, B and the time,
/// B's sending not yet polled.
pub fn a2_joining() -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(a);
    let t = t + 200;
    let mut a2 = many_parts(A, 5, t);
    deliver(&mut a2, &mut b, t);
    (a2, b, t)
}

/// [`a2_joining`], with B's first sending (whole, not yet delivered).
pub fn a2_asks() -> (Mirror, Mirror, u64, Vec<Vec<u8>>) {
    let (a2, mut b, t) = a2_joining();
    let first = sent(&mut b, t);
    (a2, b, t, first)
}

/// A and B settled; B dies unheard; A declares it dead, takes it over and
/// is fenced, as `espgate host` orders on a failure. Returns A and the
/// time.
pub fn a_alone_taken_over_and_fenced() -> (Mirror, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    drop(b);
    mute(&mut a, t);
    declare_dead(&mut a, t + 1000);
    assert_eq!(a.take_over(), 1, "B's OUT_B");
    assert!(a.force_unleased().is_ok());
    events(&mut a);
    (a, t + 1000)
}

/// A and B started and synchronised, each running its own SAs, their
/// events taken; and the time.
pub fn synced_pair() -> (Mirror, Mirror, u64) {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    events(&mut a);
    events(&mut b);
    (a, b, t)
}

/// A's worker sends on OUT_A up to `a_seq` from the start of its run, in
/// steps within its limit, each reported and the pair settled from `t`;
/// returns the time.
pub fn a_sends_up_to(a: &mut Mirror, b: &mut Mirror, mut t: u64, a_seq: u64) -> u64 {
    let mut seq = JUMP - 1;
    while seq < a_seq {
        seq = (seq + 90).min(a_seq).min(a.limit(OUT_A).unwrap() - 1);
        a.outbound_progress(OUT_A, seq, seq * 100, seq);
        t = settle(a, b, t);
    }
    t
}

/// `a`'s worker takes inbound `spi`'s packets from window top `from` up to
/// `to` in steps of 40, as the ESP core and the worker do it: a step past
/// the limit is first reported as a stall (an inbound lease reaches only
/// as far past the top as the SA's rate does, at low rates not at all)
/// and the pair settled; then the step is accepted and reported with
/// `bitmap`, and the pair settled again. Returns the time.
pub fn accepts_up_to(
    a: &mut Mirror,
    b: &mut Mirror,
    spi: u32,
    mut t: u64,
    (from, to): (u64, u64),
    bitmap: &[u64],
) -> u64 {
    let mut top = from;
    while top < to {
        let step = (top + 40).min(to);
        if a.inbound_limit(spi).unwrap() <= step {
            a.inbound_stalled(spi, step);
            t = settle(a, b, t);
        }
        let limit = a.inbound_limit(spi).unwrap();
        assert!(limit > top + 1, "stuck at {top}, limit {limit}");
        top = step.min(limit - 1);
        a.inbound_progress(spi, top, bitmap, 0, top);
        t = settle(a, b, t);
    }
    t
}

/// `m` stops every SA it runs (a drain's SAs) and hands each over
/// exactly, `last` giving its worker's final state.
pub fn hand_everything_over(m: &mut Mirror, last: impl Fn(u32, Direction) -> u64) {
    let keys = m.drain_sas();
    for &(spi, dir) in &keys {
        m.stop(spi, dir)
            .expect("the peer is heard and synchronised");
    }
    for (spi, dir) in keys {
        m.hand_over_exact(spi, dir, last(spi, dir))
            .expect("stopped, the peer heard");
    }
}

/// `m`'s worker of inbound IN_A, its window top `top`, wants every number
/// up to `to` in steps of `stride` as the ESP core does (a stall past the
/// limit, the pair settled, then the step accepted as far as the limit
/// allows and reported), following any activation the mirror makes
/// meanwhile. Returns the numbers it accepted, its top and the time;
/// stops early if the SA is stuck.
pub fn worker_takes(
    m: &mut Mirror,
    peer: &mut Mirror,
    mut top: u64,
    to: u64,
    mut t: u64,
    stride: u64,
) -> (Vec<u64>, u64, u64) {
    let mut took = Vec::new();
    while top < to {
        let step = (top + stride).min(to);
        if m.inbound_limit(IN_A).unwrap_or(0) <= step {
            m.inbound_stalled(IN_A, step);
            t = settle(m, peer, t);
        }
        if let Some((start, _)) = last_start(&events(m), IN_A, Direction::Inbound) {
            // Restarted: everything at and below the start is seen.
            top = top.max(start);
            if top >= step {
                continue;
            }
        }
        let limit = m.inbound_limit(IN_A).unwrap_or(0);
        if limit <= top + 1 {
            break;
        }
        let next = step.min(limit - 1);
        took.extend(top + 1..=next);
        top = next;
        m.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        t = settle(m, peer, t);
    }
    (took, top, t)
}

/// `m`'s worker of IN_A runs with no peer heard from `top` up to `to` in
/// steps of `stride`: each a stall, then the step accepted as far as the
/// limit allows. Returns the numbers accepted and the top.
pub fn alone_takes(m: &mut Mirror, mut top: u64, to: u64, t: u64, stride: u64) -> (Vec<u64>, u64) {
    let mut took = Vec::new();
    while top < to {
        let step = (top + stride).min(to);
        m.inbound_stalled(IN_A, step);
        let limit = m.inbound_limit(IN_A).unwrap_or(0);
        if limit <= top + 1 {
            break;
        }
        let next = step.min(limit - 1);
        took.extend(top + 1..=next);
        top = next;
        m.inbound_progress(IN_A, top, &[u64::MAX; 2], 0, top);
        alone(m, t, t);
    }
    (took, top)
}

/// The numbers of `a` that are also in `b`.
pub fn common(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().copied().filter(|x| b.contains(x)).collect()
}

/// A node of a pair whose host fences after every takeover:
/// `inbound_grace: 0`.
pub fn graceless(me: u32, epoch: u64, now: u64) -> Mirror {
    node_from(
        MirrorConfig {
            inbound_grace: 0,
            ..cfg(me)
        },
        epoch,
        now,
    )
}

/// Whether frame `f` carries a `Past` record of SA `(spi, dir)`.
pub fn has_past(f: &[u8], spi: u32, dir: Direction) -> bool {
    records(f)
        .iter()
        .any(|r| matches!(r, MirrorRecord::Past { spi: s, dir: d, .. } if *s == spi && *d == dir))
}

/// Both nodes alone (the link cut both ways) for 100 ms from `t`.
pub fn cut(a: &mut Mirror, b: &mut Mirror, t: u64) -> u64 {
    alone(a, t, t + 100);
    alone(b, t, t + 100);
    t + 110
}
