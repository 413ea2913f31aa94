//! espgate's benchmarks: shared fixtures (SAs and inner packets of a
//! given size, built the same way for every backend), the crypto ceiling,
//! the node's paths under load, and the reporting (tables, CSV, JSON,
//! plots). `cargo run --release -p espgate-bench -- --help`.

pub mod bulk;
pub mod crypto;
pub mod feeder;
pub mod node_path;
pub mod ops;
pub mod report;

use espgate_esp::{AeadAlgorithm, Direction, SaConfig, Tunnel};
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Repr;
use espgate_wire::udp::UdpRepr;

/// Packet sizes the benchmarks report (bytes of the inner IPv4 packet).
pub const SIZES: [usize; 3] = [64, 512, 1420];

/// An outbound and an inbound definition of the same AES-GCM SA (ESN on,
/// IPv4 tunnel), so what one seals the other opens.
pub fn sa_pair(algorithm: AeadAlgorithm) -> (SaConfig, SaConfig) {
    let key: Vec<u8> = (0..algorithm.key_len() as u8 + 4).collect();
    let tunnel = Tunnel {
        src: "172.16.1.5".parse().expect("address"),
        dst: "172.16.2.5".parse().expect("address"),
    };
    let mut out = SaConfig::new(0x1000, Direction::Outbound, tunnel, algorithm, key);
    out.esn = true;
    let mut inb = out.clone();
    inb.direction = Direction::Inbound;
    inb.replay_window = 4096;
    (out, inb)
}

/// Packet sizes of the harness's tables (inner IPv4 bytes).
pub const TABLE_SIZES: [usize; 4] = [64, 128, 512, 1420];

/// IMIX: 7 : 4 : 1 packets of 64, 570 and 1500 inner bytes (the classic
/// 64/570/1518-byte frame mix, as IP packets; the unprotected link of the
/// benchmarks has room for 1500 after ESP).
pub const IMIX: [usize; 12] = [64, 64, 64, 64, 64, 64, 64, 570, 570, 570, 570, 1500];

/// An IPv4/UDP packet of exactly `size` bytes (at least 28).
pub fn inner_packet(size: usize) -> Vec<u8> {
    inner_between(size, "10.1.0.1", "10.2.0.1")
}

/// An IPv4/UDP packet of exactly `size` bytes (at least 28) from `src` to
/// `dst`.
pub fn inner_between(size: usize, src: &str, dst: &str) -> Vec<u8> {
    let size = size.max(28);
    let mut p = vec![0xa5u8; size];
    Ipv4Repr {
        src: src.parse().expect("address"),
        dst: dst.parse().expect("address"),
        protocol: protocol::UDP,
        payload_len: size - 20,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut p)
    .expect("20 bytes");
    UdpRepr {
        src_port: 5000,
        dst_port: 6000,
        payload_len: size - 28,
    }
    .emit(&mut p[20..])
    .expect("8 bytes");
    p
}
