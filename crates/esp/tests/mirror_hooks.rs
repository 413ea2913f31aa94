//! What the mirror needs from an SA: an outbound sequence limit (the lease)
//! with its own drop reason, a restart at a given sequence number, and the
//! replay window exported and restored in the mirror's layout.

mod common;

use common::*;
use espgate_esp::replay::ReplayWindow;
use espgate_esp::{AeadAlgorithm, Backend, DropReason, Inbound, OutboundSa, Sad};
use espgate_wire::PacketBuf;

#[test]
fn the_lease_limit_stalls_and_resumes() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    out.set_limit(5);
    let mut sent = Vec::new();
    for _ in 0..8 {
        let mut b = buf(&inner_udp(false, b"x"));
        match out.encapsulate(&mut b) {
            Ok(seq) => {
                sent.push(seq);
                assert!(matches!(
                    sad.decapsulate(&mut b),
                    Ok(Inbound::Decapsulated { .. })
                ));
            }
            Err(e) => assert_eq!(e.reason, DropReason::LeaseStall),
        }
    }
    assert_eq!(sent, vec![1, 2, 3, 4], "never the limit itself");
    assert_eq!(out.counters().drops.get(DropReason::LeaseStall), 4);
    out.set_limit(7);
    assert_eq!(
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap(),
        5
    );
}

#[test]
fn an_inbound_limit_keeps_the_highest_authentic_number_it_refused() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    sad.get_mut(0x1000).unwrap().set_limit(3);
    let mut sealed = Vec::new();
    for _ in 0..9 {
        let mut b = buf(&inner_udp(false, b"x"));
        out.encapsulate(&mut b).unwrap();
        sealed.push(b);
    }
    // The far end ran on to 9 while the SA waited: 1 and 2 pass, the rest
    // are refused, and the SA knows how far the far end went.
    let verdicts: Vec<_> = sealed
        .iter_mut()
        .map(|b| sad.decapsulate(b).map(|_| ()).map_err(|e| e.reason))
        .collect();
    assert_eq!(verdicts[..2], [Ok(()), Ok(())]);
    assert!(
        verdicts[2..]
            .iter()
            .all(|v| *v == Err(DropReason::LeaseStall))
    );
    let sa = sad.get(0x1000).unwrap();
    assert_eq!(sa.wanted(), 9);
    assert_eq!(sa.window().top(), 2, "nothing past the limit was accepted");
    // A forged packet far past the limit is not taken for the far end's.
    let mut forged = buf(&inner_udp(false, b"x"));
    out.restart_at(1000);
    out.encapsulate(&mut forged).unwrap();
    let n = forged.len();
    forged.data_mut()[n - 1] ^= 1;
    assert_eq!(
        sad.decapsulate(&mut forged).unwrap_err().reason,
        DropReason::AuthFailed
    );
    assert_eq!(sad.get(0x1000).unwrap().wanted(), 9);
}

#[test]
fn the_lower_of_lease_and_mark_stalls() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    let send = |out: &mut OutboundSa| out.encapsulate(&mut buf(&inner_udp(false, b"x")));
    out.set_mark(3);
    out.set_limit(100);
    assert_eq!(out.limit(), 3);
    assert_eq!(send(&mut out).unwrap(), 1);
    assert_eq!(send(&mut out).unwrap(), 2);
    assert_eq!(send(&mut out).unwrap_err().reason, DropReason::LeaseStall);
    out.set_mark(50);
    assert_eq!(out.limit(), 50, "the mark rose: the lease is the lower");
    out.set_limit(4);
    assert_eq!(send(&mut out).unwrap(), 3);
    assert_eq!(send(&mut out).unwrap_err().reason, DropReason::LeaseStall);
    let inbound = sad.get_mut(0x1000).unwrap();
    inbound.set_mark(7);
    inbound.set_limit(u64::MAX);
    assert_eq!(inbound.limit(), 7);
}

#[test]
fn a_restart_moves_forward_only() {
    let (o, _) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    out.restart_at(1 << 32);
    assert_eq!(
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap(),
        1 << 32
    );
    out.restart_at(10);
    assert_eq!(
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap(),
        (1 << 32) + 1
    );
}

#[test]
fn a_restored_window_refuses_what_the_old_one_had_seen() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut first = Sad::new();
    first.insert(&i, Backend::DEFAULT).unwrap();
    let pkts: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            let mut b = buf(&inner_udp(false, b"x"));
            out.encapsulate(&mut b).unwrap();
            b.data().to_vec()
        })
        .collect();
    // The first node receives every other packet, then dies.
    for p in pkts.iter().step_by(2) {
        first.decapsulate(&mut buf(p)).unwrap();
    }
    let w = first.get(0x1000).unwrap().window();
    let (top, bits) = (w.top(), w.export());
    // The survivor restores the mirrored window.
    let mut second = Sad::new();
    second.insert(&i, Backend::DEFAULT).unwrap();
    second.get_mut(0x1000).unwrap().restore_window(top, &bits);
    for (k, p) in pkts.iter().enumerate() {
        let r = second.decapsulate(&mut buf(p));
        if k % 2 == 0 {
            assert_eq!(
                r.unwrap_err().reason,
                DropReason::Replayed,
                "packet {k} was seen before"
            );
        } else if (k as u64 + 1) < top {
            assert!(r.is_ok(), "packet {k} is fresh and inside the window");
        }
    }
    assert_eq!(ReplayWindow::restore(1024, top, &bits).export(), bits);
}

#[test]
fn reports_fall_due_on_crossing_a_multiple_and_once() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    assert!(!out.report_due(), "no interval: nothing to report");
    out.set_report_every(4);
    sad.get_mut(0x1000).unwrap().set_report_every(3);
    let mut due_out = Vec::new();
    let mut due_in = Vec::new();
    for _ in 0..10 {
        let mut b = buf(&inner_udp(false, b"x"));
        let seq = out.encapsulate(&mut b).unwrap();
        if out.report_due() {
            due_out.push(seq);
            out.mark_reported();
        }
        sad.decapsulate(&mut b).unwrap();
        let sa = sad.get_mut(0x1000).unwrap();
        if sa.report_due() {
            due_in.push(sa.window().top());
            sa.mark_reported();
        }
    }
    assert_eq!(due_out, vec![4, 8]);
    assert_eq!(due_in, vec![3, 6, 9]);
    // A restart is not due by itself (whoever moved it knows), but the
    // first packet after it is, multiple or not: the mirror learns the far
    // end saw a number of the new run.
    out.restart_at(101);
    assert!(!out.report_due());
    out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap();
    assert!(out.report_due(), "seq 101, the first of the run");
    out.mark_reported();
    out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap();
    assert!(!out.report_due(), "seq 102 is not past a new multiple");
    for _ in 0..2 {
        out.encapsulate(&mut buf(&inner_udp(false, b"x"))).unwrap();
    }
    assert!(out.report_due(), "seq 104");
}

/// An inbound SA reports half way to the mirror's lease as well as at its
/// interval, so the lease can rise before the window reaches it (an
/// inbound lease reaches only as far as the SA's rate); the node's mark
/// does not aim reports (its keeper writes ahead by the rate).
#[test]
fn an_inbound_sa_reports_half_way_to_its_lease() {
    let (o, i) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    let sa = sad.get_mut(0x1000).unwrap();
    sa.set_report_every(1000);
    sa.set_mark(100);
    sa.set_limit(11);
    let mut due = Vec::new();
    for _ in 0..10 {
        let mut b = buf(&inner_udp(false, b"x"));
        out.encapsulate(&mut b).unwrap();
        sad.decapsulate(&mut b).unwrap();
        let sa = sad.get_mut(0x1000).unwrap();
        if sa.report_due() {
            due.push(sa.window().top());
            sa.mark_reported();
        }
    }
    assert_eq!(
        due,
        vec![5],
        "half way from 0 to the last number allowed, 10"
    );
    let sa = sad.get_mut(0x1000).unwrap();
    sa.set_limit(15);
    let mut b = buf(&inner_udp(false, b"x"));
    out.encapsulate(&mut b).unwrap();
    sad.decapsulate(&mut b).unwrap();
    let sa = sad.get_mut(0x1000).unwrap();
    assert!(!sa.report_due(), "11: half way from 10 to 14 is 12");
    let mut b = buf(&inner_udp(false, b"x"));
    out.encapsulate(&mut b).unwrap();
    sad.decapsulate(&mut b).unwrap();
    let sa = sad.get_mut(0x1000).unwrap();
    assert!(sa.report_due(), "12");
    sa.mark_reported();
    // No lease (no mirror), a mark at 30: nothing due short of the interval.
    sa.set_limit(u64::MAX);
    sa.set_mark(30);
    for _ in 0..15 {
        let mut b = buf(&inner_udp(false, b"x"));
        out.encapsulate(&mut b).unwrap();
        sad.decapsulate(&mut b).unwrap();
        assert!(
            !sad.get_mut(0x1000).unwrap().report_due(),
            "the mark aims no report"
        );
    }
}

#[test]
fn resumed_counts_keep_lifetimes_going() {
    let (mut o, _) = pair(0x1000, AeadAlgorithm::Aes128Gcm, false, true, false);
    o.lifetime.soft_packets = Some(100);
    o.lifetime.hard_packets = Some(102);
    let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
    out.resume_counts(100, 5000);
    assert_eq!(out.counters().packets, 100);
    assert_eq!(out.poll_event(), Some(espgate_esp::SaEvent::SoftLifetime));
    out.resume_counts(10, 10);
    assert_eq!(out.counters().bytes, 5000, "never backwards");
    assert!(out.encapsulate(&mut buf(&inner_udp(false, b"x"))).is_ok());
    assert!(out.encapsulate(&mut buf(&inner_udp(false, b"x"))).is_ok());
    let e = out
        .encapsulate(&mut buf(&inner_udp(false, b"x")))
        .unwrap_err();
    assert_eq!(e.reason, DropReason::HardExpired);
}
