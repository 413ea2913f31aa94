//! Floors from a node's persisted state (`Mirror::restore`): a pair whose
//! memories are both lost at once (a power loss) restarts every SA past
//! what either node's state says it used.

use espgate_mirror::{InboundTakeover, Mirror, MirrorConfig, MirrorEvent, MirrorKey};
use espgate_wire::Direction;

const A: u32 = 1;
const B: u32 = 2;
const OUT: u32 = 0x1000;
const IN: u32 = 0x2000;
/// An outbound SA whose home is B.
const B_OUT: u32 = 0x3000;

fn key() -> MirrorKey {
    MirrorKey::new(b"mirror test key, 32 bytes long!!").unwrap()
}

/// A small takeover jump and inbound interval: the floors below lie past
/// them, so a restart that ignored the floors would land below.
fn node(me: u32, epoch: u64, mode: InboundTakeover) -> Mirror {
    let cfg = MirrorConfig {
        node: me,
        peer: if me == A { B } else { A },
        interval: 100,
        quantity: 400,
        takeover_jump: 1 << 12,
        takeover_jump_32: 1 << 12,
        inbound_interval: 100,
        inbound_takeover: mode,
        ..MirrorConfig::default()
    };
    let mut m = Mirror::new(cfg, key(), epoch, 0);
    m.add_sa(OUT, Direction::Outbound, true, A);
    m.add_sa(IN, Direction::Inbound, true, A);
    m.add_sa(B_OUT, Direction::Outbound, true, B);
    m
}

fn exchange(a: &mut Mirror, b: &mut Mirror, now: u64) {
    for _ in 0..20 {
        let mut any = false;
        while let Some(f) = a.poll_transmit(now) {
            b.handle_frame(now, &f).unwrap();
            any = true;
        }
        while let Some(f) = b.poll_transmit(now) {
            a.handle_frame(now, &f).unwrap();
            any = true;
        }
        if !any {
            return;
        }
    }
}

/// Where each SA was activated, and whether below its start everything
/// counts as seen (inbound), from the events `m` has.
fn activations(m: &mut Mirror) -> Vec<(u32, u64, bool)> {
    std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            MirrorEvent::Activate {
                spi, start, bitmap, ..
            } => Some((spi, start, bitmap.iter().all(|w| *w == u64::MAX))),
            _ => None,
        })
        .collect()
}

fn start_of(acts: &[(u32, u64, bool)], spi: u32) -> Option<(u64, bool)> {
    acts.iter()
        .rev()
        .find(|a| a.0 == spi)
        .map(|&(_, s, all)| (s, all))
}

#[test]
fn both_nodes_restarted_at_once_start_past_their_floors() {
    for mode in [InboundTakeover::Strict, InboundTakeover::Lenient] {
        // The earlier lives: A sent OUT up to 49 999 and accepted IN up to
        // 29 999 (its state covers 50 000 and 30 000); B sent its own
        // B_OUT up to 69 999 (covered to 70 000). Both lose their memories
        // at once; only the floors remain.
        let mut a = node(A, 10, mode);
        let mut b = node(B, 20, mode);
        a.restore(OUT, Direction::Outbound, 50_000);
        a.restore(IN, Direction::Inbound, 30_000);
        b.restore(B_OUT, Direction::Outbound, 70_000);
        exchange(&mut a, &mut b, 0);
        assert!(a.synced() && b.synced());
        let acts = activations(&mut a);
        let (out, _) = start_of(&acts, OUT).expect("OUT moved");
        assert!(out >= 50_000, "{mode:?}: OUT restarts at {out}");
        let (top, all_seen) = start_of(&acts, IN).expect("IN moved");
        assert!(top >= 30_000 && all_seen, "{mode:?}: IN top {top}");
        let acts = activations(&mut b);
        let (bo, _) = start_of(&acts, B_OUT).expect("B_OUT moved");
        assert!(bo >= 70_000, "{mode:?}: B_OUT restarts at {bo}");
        // The limits let the SAs run from there once the peer acknowledges.
        a.outbound_progress(OUT, out, 0, 1);
        exchange(&mut a, &mut b, 1);
        assert!(a.limit(OUT).unwrap() > out);
    }
}

#[test]
fn a_floor_of_the_peer_s_sa_reaches_the_peer_in_its_bulk_sync() {
    // B ran A's SA in an earlier life (a takeover) up to below 90 000;
    // both lost their memories; A's own state knows nothing of that.
    let mut a = node(A, 10, InboundTakeover::Strict);
    let mut b = node(B, 20, InboundTakeover::Strict);
    b.restore(OUT, Direction::Outbound, 90_000);
    exchange(&mut a, &mut b, 0);
    let acts = activations(&mut a);
    let (out, _) = start_of(&acts, OUT).expect("OUT moved");
    assert!(out >= 90_000, "OUT restarts at {out}, below B's floor");
    // And B's own takeover would start past it too.
    assert!(b.standby().get(OUT, Direction::Outbound).unwrap().value >= 90_000);
}
