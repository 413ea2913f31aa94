//! Tunnel-mode round trips through OutboundSa and Sad, every combination
//! of backend, key size, ESN, outer and inner IP version and NAT-T.

mod common;

use common::*;
use espgate_esp::{AeadAlgorithm, Backend, Inbound, OutboundSa, Sad};
use espgate_wire::PacketBuf;
use espgate_wire::ip::{IpAddr, protocol};
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::Ipv6Packet;
use espgate_wire::udp::UdpPacket;

/// The backends under test. Here, built as espgate-esp's own test, those
/// compiled into it (ring, RustCrypto); espgate-io's tests/esp_backends.rs
/// builds this file again as a module, where `crate::backends` is its own
/// and adds intel-ipsec-mb, which espgate-esp cannot link.
#[allow(dead_code)]
fn backends() -> Vec<Backend> {
    Backend::compiled().to_vec()
}

#[test]
fn round_trip_every_combination() {
    let mut combos = 0;
    for backend in crate::backends() {
        for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm] {
            for esn in [false, true] {
                for v6_outer in [false, true] {
                    for udp in [false, true] {
                        for v6_inner in [false, true] {
                            let (o, i) = pair(0x1234, alg, v6_outer, esn, udp);
                            let mut out = OutboundSa::new(&o, backend).unwrap();
                            let mut sad = Sad::new();
                            sad.insert(&i, backend).unwrap();
                            for len in [0usize, 1, 2, 3, 4, 100, 1400] {
                                let payload: Vec<u8> = (0..len).map(|x| x as u8).collect();
                                let inner = inner_udp(v6_inner, &payload);
                                let mut b = buf(&inner);
                                let seq = out.encapsulate(&mut b).unwrap();
                                check_outer(b.data(), v6_outer, udp);
                                let v = sad.decapsulate(&mut b).unwrap();
                                let nh = if v6_inner {
                                    protocol::IPV6
                                } else {
                                    protocol::IPV4
                                };
                                assert_eq!(
                                    v,
                                    Inbound::Decapsulated {
                                        spi: 0x1234,
                                        seq,
                                        next_header: nh
                                    }
                                );
                                assert_eq!(b.data(), &inner[..]);
                            }
                            assert_eq!(out.counters().packets, 7);
                            assert_eq!(sad.get(0x1234).unwrap().counters().packets, 7);
                            combos += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(combos, 32 * crate::backends().len());
}

/// Outer header shape: protocol, addresses, NAT-T port and checksum rule.
fn check_outer(p: &[u8], v6: bool, udp: bool) {
    let (proto, l4, src, dst): (u8, &[u8], IpAddr, IpAddr) = if v6 {
        let ip = Ipv6Packet::new_checked(p).unwrap();
        assert_eq!(ip.payload().len() + 40, p.len());
        (ip.next_header(), &p[40..], ip.src().into(), ip.dst().into())
    } else {
        let ip = Ipv4Packet::new_checked(p).unwrap();
        assert!(ip.checksum_valid());
        assert_eq!(usize::from(ip.total_len()), p.len());
        (ip.protocol(), &p[20..], ip.src().into(), ip.dst().into())
    };
    assert_eq!(src.to_string(), if v6 { V6_LOCAL } else { V4_LOCAL });
    assert_eq!(dst.to_string(), if v6 { V6_PEER } else { V4_PEER });
    if udp {
        assert_eq!(proto, protocol::UDP);
        let u = UdpPacket::new_checked(l4).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (4500, 4500));
        if v6 {
            assert!(u.checksum() != 0 && u.checksum_valid(&src, &dst));
        } else {
            assert_eq!(u.checksum(), 0, "RFC 3948: zero UDP checksum over IPv4");
        }
    } else {
        assert_eq!(proto, protocol::ESP);
    }
}

#[test]
fn iv_is_the_sequence_number_and_padding_aligns() {
    for pad_to in [4u8, 16] {
        let (mut o, _) = pair(0x1234, AeadAlgorithm::Aes128Gcm, false, false, false);
        o.pad_to = pad_to;
        let mut out = OutboundSa::new(&o, Backend::DEFAULT).unwrap();
        for n in 0..20 {
            let inner = inner_udp(false, &vec![0u8; n]);
            let mut b = buf(&inner);
            let seq = out.encapsulate(&mut b).unwrap();
            let esp = &b.data()[20..];
            assert_eq!(&esp[4..8], &(seq as u32).to_be_bytes());
            assert_eq!(&esp[8..16], &seq.to_be_bytes());
            let sealed = esp.len() - 8 - 8 - 16;
            assert_eq!(sealed % usize::from(pad_to), 0);
            assert!(
                sealed - inner.len() - 2 < usize::from(pad_to),
                "the fewest padding bytes"
            );
        }
    }
}

#[test]
fn ike_and_keepalive_pass_through_untouched() {
    let (_, i) = pair(0x1234, AeadAlgorithm::Aes128Gcm, false, false, true);
    let mut sad = Sad::new();
    sad.insert(&i, Backend::DEFAULT).unwrap();
    let (s, d) = (i.tunnel.src, i.tunnel.dst);
    let mut ike_payload = vec![0, 0, 0, 0];
    ike_payload.extend(b"IKE_SA_INIT...");
    for (payload, want) in [
        (ike_payload, Inbound::Ike),
        (vec![0xff], Inbound::NatKeepalive),
    ] {
        let pkt = ip_packet(
            s,
            d,
            protocol::UDP,
            &udp_datagram(&s, &d, 4500, 4500, &payload),
        );
        let mut b = buf(&pkt);
        assert_eq!(sad.decapsulate(&mut b), Ok(want));
        assert_eq!(b.data(), &pkt[..]);
    }
    assert_eq!(sad.drops().total(), 0);
}

#[test]
fn esn_low_half_wraps_without_loss() {
    for backend in crate::backends() {
        let (mut o, mut i) = pair(0x5000, AeadAlgorithm::Aes256Gcm, false, true, false);
        o.initial_seq = (1 << 32) - 6;
        i.initial_seq = (1 << 32) - 6;
        let mut out = OutboundSa::new(&o, backend).unwrap();
        let mut sad = Sad::new();
        sad.insert(&i, backend).unwrap();
        let mut pkts = Vec::new();
        for k in 0..12u8 {
            let mut b = buf(&inner_udp(false, &[k]));
            let seq = out.encapsulate(&mut b).unwrap();
            pkts.push((seq, b));
        }
        assert_eq!(pkts.last().unwrap().0, (1 << 32) + 6);
        // Deliver out of order across the wrap.
        pkts.swap(3, 8);
        pkts.swap(0, 11);
        for (seq, mut b) in pkts {
            match sad.decapsulate(&mut b) {
                Ok(Inbound::Decapsulated { seq: s, .. }) => assert_eq!(s, seq),
                other => panic!("seq {seq:#x}: {other:?}"),
            }
        }
        assert_eq!(sad.get(0x5000).unwrap().window().top(), (1 << 32) + 6);
    }
}
