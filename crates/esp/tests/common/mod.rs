//! Packet builders shared by the ESP integration tests.

#![allow(dead_code)]

use espgate_esp::cipher::EspCipher;
use espgate_esp::{AeadAlgorithm, Backend, Direction, SaConfig, Tunnel, UdpEncap};
use espgate_wire::HeapBuf;
use espgate_wire::esp::EspRepr;
use espgate_wire::ip::{IpAddr, protocol};
use espgate_wire::ipv4::Ipv4Repr;
use espgate_wire::ipv6::Ipv6Repr;
use espgate_wire::udp::{UdpPacket, UdpRepr};

pub const V4_LOCAL: &str = "172.16.1.5";
pub const V4_PEER: &str = "172.16.2.5";
pub const V6_LOCAL: &str = "2001:db8:1::5";
pub const V6_PEER: &str = "2001:db8:2::5";

/// An inner IPv4/UDP or IPv6/UDP packet with `payload` (checksummed).
pub fn inner_udp(v6: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (
            "2001:db8:a::1".parse().unwrap(),
            "2001:db8:b::1".parse().unwrap(),
        )
    } else {
        ("10.1.0.1".parse().unwrap(), "10.2.0.1".parse().unwrap())
    };
    ip_packet(
        src,
        dst,
        protocol::UDP,
        &udp_datagram(&src, &dst, 5000, 6000, payload),
    )
}

pub fn udp_datagram(src: &IpAddr, dst: &IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 8 + payload.len()];
    UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload_len: payload.len(),
    }
    .emit(&mut d)
    .unwrap();
    d[8..].copy_from_slice(payload);
    UdpPacket::new_checked(&mut d[..])
        .unwrap()
        .fill_checksum(src, dst);
    d
}

/// An IP packet around `payload`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut p = vec![0u8; 20 + payload.len()];
            Ipv4Repr {
                src,
                dst,
                protocol: proto,
                payload_len: payload.len(),
                ttl: 64,
                dscp_ecn: 0,
                ident: 1,
                dont_frag: false,
            }
            .emit(&mut p)
            .unwrap();
            p[20..].copy_from_slice(payload);
            p
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut p = vec![0u8; 40 + payload.len()];
            Ipv6Repr {
                src,
                dst,
                next_header: proto,
                payload_len: payload.len(),
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut p)
            .unwrap();
            p[40..].copy_from_slice(payload);
            p
        }
        _ => panic!("mixed families"),
    }
}

pub fn key(alg: AeadAlgorithm) -> Vec<u8> {
    (0..alg.key_len() as u8 + 4)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// A matching outbound/inbound pair of SA definitions.
pub fn pair(
    spi: u32,
    alg: AeadAlgorithm,
    v6_outer: bool,
    esn: bool,
    udp: bool,
) -> (SaConfig, SaConfig) {
    let (l, p) = if v6_outer {
        (V6_LOCAL, V6_PEER)
    } else {
        (V4_LOCAL, V4_PEER)
    };
    let tunnel = Tunnel {
        src: l.parse().unwrap(),
        dst: p.parse().unwrap(),
    };
    let mut out = SaConfig::new(spi, Direction::Outbound, tunnel, alg, key(alg));
    out.esn = esn;
    out.udp_encap = udp.then(UdpEncap::default);
    let mut inb = out.clone();
    inb.direction = Direction::Inbound;
    (out, inb)
}

pub fn buf(p: &[u8]) -> HeapBuf {
    HeapBuf::from_packet(p)
}

/// Hand-builds an outer IPv4 ESP packet whose encrypted payload is exactly
/// `plaintext` (so tests can put bad padding or next headers in it).
pub fn craft(cfg: &SaConfig, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let cipher = EspCipher::new(Backend::DEFAULT, cfg.algorithm, &cfg.key, cfg.esn).unwrap();
    let mut body = plaintext.to_vec();
    let iv = seq.to_be_bytes();
    let mut icv = [0u8; 16];
    cipher.seal(cfg.spi, seq, &iv, &mut body, &mut icv);
    let mut esp = vec![0u8; 8];
    EspRepr {
        spi: cfg.spi,
        seq: seq as u32,
    }
    .emit(&mut esp)
    .unwrap();
    esp.extend(iv);
    esp.extend(body);
    esp.extend(icv);
    ip_packet(cfg.tunnel.src, cfg.tunnel.dst, protocol::ESP, &esp)
}
