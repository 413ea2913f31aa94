//! Takeover and failback: where a takeover starts (ESN and 32-bit),
//! idle failover cycles, strict and lenient inbound, split brain, hand-over.

use super::*;

#[test]
fn takeover_starts_past_anything_the_dead_owner_could_use() {
    let (mut a, mut b) = (node(A, 1, 1000, 0), node(B, 2, 1000, 0));
    exchange(&mut a, &mut b, 0);
    b.outbound_progress(SPI + 1, 1500, 0, 1500);
    exchange(&mut a, &mut b, 1);
    let stored = a.standby().get(SPI + 1, Direction::Outbound).unwrap().value;
    let b_limit = b.limit(SPI + 1).unwrap();
    assert!(b_limit <= stored + 1000 - 400);
    // B dies; A takes over.
    assert_eq!(a.holding(), 0);
    assert_eq!(a.take_over(), 1);
    assert_eq!(a.holding(), 1, "A now runs one SA whose home is B");
    let start = starts(&mut a, SPI + 1)[0];
    assert_eq!(start, stored + 1000);
    assert!(start >= b_limit, "B could use only numbers below {b_limit}");
    assert!(a.owns(SPI + 1, Direction::Outbound));
}

/// Where A starts SA 0x3000 (home B, ESN) after taking it over, once B has
/// used numbers up to `last`; and the value A stored for it.
fn esn_takeover_start(last: u64) -> (u64, u64) {
    let mut a = Mirror::new(cfg(A, B, 0), key(), 1, 0);
    let mut b = Mirror::new(cfg(B, A, 0), key(), 2, 0);
    for m in [&mut a, &mut b] {
        m.add_sa(0x3000, Direction::Outbound, true, B);
    }
    exchange(&mut a, &mut b, 0);
    b.outbound_progress(0x3000, last, 0, 0);
    exchange(&mut a, &mut b, 1);
    let stored = a.standby().get(0x3000, Direction::Outbound).unwrap().value;
    a.take_over();
    (starts(&mut a, 0x3000)[0], stored)
}

#[test]
fn an_esn_takeover_across_the_low_32_bit_wrap_is_followed_by_the_receiver() {
    // B's last packets are just below a wrap of the low 32 bits; the
    // receiver's window top is there. The takeover start lies past the
    // wrap, and the receiver must infer its high half from the low 32 bits.
    let last = (7 << 32) - 100;
    let (start, stored) = esn_takeover_start(last);
    assert_eq!(start, stored + (1 << 28));
    assert_eq!(start >> 32, 7, "the low 32 bits wrapped during the gap");
    for size in [64, 1024, 65536] {
        let receiver = espgate_esp::replay::ReplayWindow::new(size, last);
        assert_eq!(
            receiver.infer_esn(start as u32),
            Some(start),
            "a {size}-packet window infers the new owner's numbers"
        );
    }
    // A jump of a whole 2^32 would repeat the low bits of the receiver's
    // window: it would infer the old half and every ICV would fail.
    let receiver = espgate_esp::replay::ReplayWindow::new(64, last);
    let far = stored + (1 << 32);
    assert_ne!(receiver.infer_esn(far as u32), Some(far));
}

/// An ESN SA whose home node fails, restarts and takes it back, `cycles`
/// times, with not one packet sent on it in between (an idle SA): where
/// the home node starts it in the end.
fn idle_failover_cycles(jump: u64, cycles: usize, last: u64) -> u64 {
    let config = |me, peer| MirrorConfig {
        takeover_jump: jump,
        ..MirrorConfig {
            node: me,
            peer,
            ..MirrorConfig::default()
        }
    };
    let mut a = Mirror::new(config(A, B), key(), 1, 0);
    let mut b = Mirror::new(config(B, A), key(), 2, 0);
    for m in [&mut a, &mut b] {
        m.add_sa(0x4000, Direction::Outbound, true, A);
    }
    exchange(&mut a, &mut b, 0);
    a.outbound_progress(0x4000, last, 0, 0);
    exchange(&mut a, &mut b, 1);
    let mut now = 10;
    let mut start = 0;
    for cycle in 0..cycles {
        // A dies; B takes its SA over (and sends nothing on it).
        b.handle_timeout(now + 1000);
        assert_eq!(b.take_over(), 1);
        // A restarts with its memory gone, syncs, and gets its SA back.
        now += 2000;
        a = Mirror::new(config(A, B), key(), 100 + cycle as u64, now);
        a.add_sa(0x4000, Direction::Outbound, true, A);
        exchange(&mut a, &mut b, now);
        assert!(a.synced());
        assert_eq!(b.hand_back(), 1);
        exchange(&mut a, &mut b, now + 1);
        start = *starts(&mut a, 0x4000).last().expect("A runs its SA again");
    }
    start
}

#[test]
fn an_idle_esn_sa_survives_failover_cycles_within_the_receivers_reach() {
    let last = (3 << 32) + 1000;
    // The receiver's window sits at the last packet A sent before the first
    // failure: every later start must be inferable from its low 32 bits.
    for (jump, cycles) in [
        (MirrorConfig::default().takeover_jump, 8),
        (MAX_TAKEOVER_JUMP, 1),
    ] {
        let start = idle_failover_cycles(jump, cycles, last);
        assert!(start > last);
        for size in [64, 1024, 65536] {
            let receiver = espgate_esp::replay::ReplayWindow::new(size, last);
            assert_eq!(
                receiver.infer_esn(start as u32),
                Some(start),
                "jump {jump}, {cycles} idle cycles: the receiver ({size}) cannot follow to {start}"
            );
        }
    }
    // At the old maximum, 2^30, one idle cycle already moves the SA past
    // what the receiver can follow: its ICVs would all fail.
    let start = idle_failover_cycles(1 << 30, 1, last);
    let receiver = espgate_esp::replay::ReplayWindow::new(64, last);
    assert_ne!(receiver.infer_esn(start as u32), Some(start));
}

#[test]
fn a_takeover_jump_receivers_cannot_follow_is_refused() {
    let mut c = cfg(A, B, 0);
    assert_eq!(c.check(), Ok(()));
    c.takeover_jump = 1 << 32;
    assert!(c.check().unwrap_err().to_string().contains("takeover_jump"));
    let mut c = cfg(A, A, 0);
    assert!(c.check().is_err());
    c.peer = B;
    c.interval = 0;
    assert!(c.check().unwrap_err().to_string().contains("interval"));
}

/// B's worker accepts up to 350 (each stall acknowledged first: B's lease
/// reaches no further than its top) with 348 still unseen, B reports its
/// window, and B dies. A takes over at the stored bound, 350 (no rate
/// measured: the top itself), in both modes: strict with everything at
/// and below it seen, lenient with the stored window kept (348 may still
/// pass).
#[test]
fn inbound_takeover_strict_and_lenient() {
    // Lenient keeps the stored window, but 348 lies between B's top (3)
    // and the bound its stall reported (350): B's worker may have accepted
    // it before its next report, so the state sent with that bound has it
    // seen, and the later window (with 348 unseen) merges into it.
    for mode in [InboundTakeover::Strict, InboundTakeover::Lenient] {
        let mut ca = cfg(A, B, 0);
        ca.inbound_takeover = mode;
        let mut a = Mirror::new(ca, key(), 1, 0);
        let mut b = Mirror::new(cfg(B, A, 0), key(), 2, 0);
        for m in [&mut a, &mut b] {
            m.add_sa(0x2000, Direction::Inbound, false, B);
        }
        exchange(&mut a, &mut b, 0);
        // B's worker accepts 1..=3, then (the far end's packets between
        // lost) 350; each past B's lease is reported as a stall first.
        b.inbound_stalled(0x2000, 3);
        exchange(&mut a, &mut b, 1);
        b.inbound_progress(0x2000, 3, &[0b111], 0, 3);
        b.inbound_stalled(0x2000, 350);
        exchange(&mut a, &mut b, 2);
        assert!(b.inbound_limit(0x2000).unwrap() > 350);
        b.inbound_progress(0x2000, 350, &[0b1011], 0, 4);
        // The bound did not move: the window goes with the next refresh.
        exchange(&mut a, &mut b, 60);
        a.take_over();
        let ev = events(&mut a);
        let window = ev.iter().find_map(|e| match e {
            MirrorEvent::Activate {
                spi: 0x2000,
                start: 350,
                bitmap,
                ..
            } => Some(bitmap),
            _ => None,
        });
        let window = window.unwrap_or_else(|| panic!("{mode:?}: no start at 350: {ev:?}"));
        // Bit k is 350 - k: 350, 349 and 347 were seen, 348 not (but
        // counted as seen, above).
        let seen = |k: usize| window.get(k / 64).is_some_and(|w| w >> (k % 64) & 1 == 1);
        assert!(
            seen(0) && seen(1) && seen(2) && seen(3),
            "{mode:?}: {:?}",
            &window[..1]
        );
        if mode == InboundTakeover::Strict {
            assert!(window.iter().all(|w| *w == u64::MAX), "{mode:?}: all seen");
        }
    }
}

#[test]
fn split_brain_heals_to_one_owner_per_sa_and_failback_brings_them_home() {
    let (mut a, mut b) = (node(A, 1, 1000, 0), node(B, 2, 1000, 0));
    exchange(&mut a, &mut b, 0);
    // The link is cut; each believes the other dead and takes over.
    assert_eq!(a.take_over(), 1);
    assert_eq!(b.take_over(), 2);
    assert!(a.owns(SPI, Direction::Outbound) && a.owns(SPI + 1, Direction::Outbound));
    assert!(b.owns(SPI, Direction::Outbound) && b.owns(SPI + 1, Direction::Outbound));
    // The link heals: higher generations win, each SA ends with one owner.
    exchange(&mut a, &mut b, 100);
    for (spi, dir) in [
        (SPI, Direction::Outbound),
        (SPI + 1, Direction::Outbound),
        (0x2000, Direction::Inbound),
    ] {
        assert!(
            a.owns(spi, dir) ^ b.owns(spi, dir),
            "{spi:#x} owned by exactly one node"
        );
    }
    // Failback: each hands home what is not its own.
    a.hand_back();
    b.hand_back();
    exchange(&mut a, &mut b, 200);
    assert!(
        a.owns(SPI, Direction::Outbound)
            && a.owns(0x2000, Direction::Inbound)
            && !a.owns(SPI + 1, Direction::Outbound)
    );
    assert!(b.owns(SPI + 1, Direction::Outbound) && !b.owns(SPI, Direction::Outbound));
}

#[test]
fn after_a_failback_the_owner_runs_at_once_and_a_second_death_is_covered() {
    let (mut a, mut b) = (node(A, 1, 1000, 0), node(B, 2, 1000, 0));
    exchange(&mut a, &mut b, 0);
    // A dies; B takes over A's SA and runs it.
    assert_eq!(b.take_over(), 2);
    let b_limit = b.limit(SPI).unwrap();
    b.outbound_progress(SPI, b_limit - 1, 0, 0);
    // A comes back with its memory gone, syncs, and B hands the SA back.
    let mut a2 = node(A, 5, 1000, 10);
    exchange(&mut a2, &mut b, 10);
    assert!(a2.synced());
    events(&mut a2);
    assert_eq!(b.hand_back(), 2);
    // Only B's frames reach A: A has no acknowledgement of anything yet.
    while let Some(f) = b.poll_transmit(20) {
        a2.handle_frame(20, &f).unwrap();
    }
    let start = *starts(&mut a2, SPI).last().unwrap();
    assert!(start >= b_limit, "A starts past all B could use");
    let limit = a2.limit(SPI).unwrap();
    assert!(
        limit > start,
        "A may send at once, before any acknowledgement: limit {limit}, start {start}"
    );
    // A confirms the change to B (nothing comes back), uses everything it
    // may, and dies again: B takes the SA over once more, past all of it.
    while let Some(f) = a2.poll_transmit(30) {
        b.handle_frame(30, &f).unwrap();
    }
    a2.outbound_progress(SPI, limit - 1, 0, 0);
    assert_eq!(b.take_over(), 2, "B covers A's second death");
    let again = *starts(&mut b, SPI).last().unwrap();
    assert!(
        again >= limit,
        "B restarts at {again}, A went up to {limit}"
    );
}

#[test]
fn a_lost_handover_is_sent_again_until_confirmed() {
    let (mut a, mut b) = (node(A, 1, 1000, 0), node(B, 2, 1000, 0));
    exchange(&mut a, &mut b, 0);
    assert_eq!(b.take_over(), 2);
    exchange(&mut a, &mut b, 1);
    assert_eq!(b.hand_back(), 2);
    // Every frame B sends now is lost.
    while b.poll_transmit(2).is_some() {}
    assert!(!a.owns(SPI, Direction::Outbound), "A heard nothing yet");
    assert_eq!(b.take_over(), 0, "B does not take back what it handed over");
    // The next refresh sends the hand-over again; A takes it and confirms.
    exchange(&mut a, &mut b, 60);
    assert!(a.owns(SPI, Direction::Outbound) && !b.owns(SPI, Direction::Outbound));
    // Confirmed: nothing more to repeat, and B may cover A again.
    exchange(&mut a, &mut b, 120);
    assert!(b.poll_transmit(121).is_none());
    assert_eq!(b.take_over(), 2);
}

/// A takeover ordered while the owner is heard (the host's order, the
/// operator's) runs the inbound SA on the owner's acknowledgements, as any
/// owner does: its ownership record carries its start, not an interval
/// past it. So when the taker dies, the owner takes the SA back where the
/// taker's reports got to, and refuses no interval of fresh packets (the
/// explorer's property 7 found the interval: the record carried a grace
/// the taker never needed while it heard the owner).
#[test]
fn a_takeover_with_the_owner_heard_costs_no_interval_when_the_taker_dies() {
    const IN: u32 = 0x2000;
    let (mut a, mut b) = pair();
    exchange(&mut a, &mut b, 0);
    a.inbound_progress(IN, 60, &[u64::MAX], 0, 60);
    exchange(&mut a, &mut b, 1);
    events(&mut a);
    assert!(b.peer_alive());
    b.take_over();
    let start = *starts(&mut b, IN).last().expect("B runs IN");
    assert_eq!(
        b.inbound_limit(IN),
        Some(start + 1),
        "B accepts nothing A has not acknowledged"
    );
    exchange(&mut a, &mut b, 2);
    assert!(!a.owns(IN, Direction::Inbound), "A let IN go");
    // B's worker meets the limit at its first packet and reports it; A
    // acknowledges, and B accepts it and reports its top.
    b.inbound_stalled(IN, start + 1);
    exchange(&mut a, &mut b, 3);
    assert!(b.inbound_limit(IN).unwrap() > start + 1, "A acknowledged");
    b.inbound_progress(IN, start + 1, &[u64::MAX], 0, start + 1);
    exchange(&mut a, &mut b, 4);
    // B dies; A declares it dead and takes IN back.
    a.handle_timeout(40);
    assert!(!a.peer_alive());
    a.take_over();
    let back = *starts(&mut a, IN).last().expect("A runs IN again");
    assert!(back > start, "A starts past all B accepted: {back}");
    assert!(
        back < start + 100,
        "A starts at {back}, an inbound interval past B's start {start}: it refuses an interval of fresh packets"
    );
}
