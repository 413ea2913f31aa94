//! ipsec-secgw configuration import: a file in the guide's syntax (the
//! shape of DPDK's ep0.cfg, with the guide's AES-GCM SA examples) becomes a
//! node file that passes validation and carries the same SAs and rules,
//! with every line it cannot carry listed; and generated secgw files
//! survive the trip field for field.

use std::net::IpAddr;
use std::path::Path;

use espgate_control::parse_node;
use espgate_control::secgw_import::{ImportOptions, import_secgw, report};
use espgate_dataplane::spd::Action;
use espgate_esp::{AeadAlgorithm, Direction};
use proptest::prelude::*;

/// The guide's SPIs (5, 105, ...) are reserved in RFC 4303: renumbered
/// by 0x1000.
const OFFSET: u32 = 0x1000;

fn options(spi_offset: Option<u32>) -> ImportOptions {
    ImportOptions {
        name: "imported".into(),
        protected: ("lan".into(), "192.168.0.254/16".into()),
        unprotected: ("wan".into(), None),
        spi_offset,
    }
}

fn ports() -> ImportOptions {
    options(Some(OFFSET))
}

fn fixture() -> String {
    let path = format!(
        "{}/../../tests/vectors/secgw/gateway.cfg",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_guide_style_file_imports_into_a_valid_node_with_the_same_sas_and_rules() {
    let import = import_secgw(&fixture(), &ports());
    let cfg = parse_node(&import.yaml, "imported.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("{e}\n{}", import.yaml));
    assert_eq!((import.sas, import.rules), (5, 8));
    let sa = |spi: u32, d: Direction| {
        cfg.sas
            .iter()
            .find(|e| e.sa.spi == spi && e.sa.direction == d)
            .unwrap_or_else(|| panic!("sa {spi} {d} missing"))
            .sa
            .clone()
    };
    let s105 = sa(105 + OFFSET, Direction::Outbound);
    assert_eq!(s105.algorithm, AeadAlgorithm::Aes128Gcm);
    assert_eq!(s105.key, [0xde, 0xad, 0xbe, 0xef].repeat(5));
    assert_eq!(
        (s105.tunnel.src, s105.tunnel.dst),
        ("172.16.1.5".parse().unwrap(), "172.16.2.5".parse().unwrap())
    );
    assert!(!s105.esn && s105.udp_encap.is_none());
    let s106 = sa(106 + OFFSET, Direction::Outbound);
    assert_eq!(s106.algorithm, AeadAlgorithm::Aes256Gcm);
    let mut k: Vec<u8> = (0..32).collect();
    k.extend([0xca, 0xfe, 0xba, 0xbe]);
    assert_eq!(
        s106.key, k,
        "a key split over two lines joins without a gap"
    );
    assert!(s106.esn && s106.initial_seq == 1000);
    assert_eq!(
        sa(5 + OFFSET, Direction::Inbound).tunnel.dst,
        "172.16.1.5".parse::<IpAddr>().unwrap()
    );
    let s107 = sa(107 + OFFSET, Direction::Outbound);
    assert_eq!(
        s107.tunnel.src,
        "1111:1111:1111:1111:1111:1111:1111:5555"
            .parse::<IpAddr>()
            .unwrap()
    );
    let s7 = sa(7 + OFFSET, Direction::Inbound);
    assert!(
        s7.udp_encap
            .is_some_and(|u| u.src_port == 4500 && u.dst_port == 4500)
    );
    // The unprotected port takes the outbound tunnels' source.
    assert_eq!(
        cfg.ports[1].address,
        "172.16.1.5".parse::<IpAddr>().unwrap()
    );

    // Highest priority first, file order among equals; discard (pri 0) last.
    let summary: Vec<(Direction, Action)> =
        cfg.spd.iter().map(|r| (r.direction, r.action)).collect();
    assert_eq!(
        summary,
        vec![
            (Direction::Outbound, Action::Protect(106 + OFFSET)),
            (Direction::Outbound, Action::Protect(105 + OFFSET)),
            (Direction::Outbound, Action::Bypass),
            (Direction::Inbound, Action::Protect(5 + OFFSET)),
            (Direction::Inbound, Action::Bypass),
            (Direction::Outbound, Action::Protect(107 + OFFSET)),
            (Direction::Inbound, Action::Protect(7 + OFFSET)),
            (Direction::Outbound, Action::Discard),
        ]
    );
    let first = &cfg.spd[0];
    assert_eq!(first.src, "192.168.10.0/24".parse().unwrap());
    assert_eq!(first.dst, "192.168.116.0/24".parse().unwrap());
    assert_eq!(
        (first.protocol, first.sport, first.dport),
        (Some(17), (0, 65535), (53, 53))
    );
    assert_eq!(cfg.spd[4].sport, (1024, 65535));
    assert_eq!(cfg.spd[5].dst, "::5555:5555:0:0/96".parse().unwrap());
    assert_eq!(cfg.spd[5].src, "::/0".parse().unwrap());

    // Every other rule is listed with its line and why.
    let left: Vec<(usize, &str)> = import
        .left_out
        .iter()
        .map(|l| (l.line, l.reason.as_str()))
        .collect();
    let expect = [
        (11, "SA 25 (out) was not imported"),
        (12, "proto mask 15"),
        (40, "espgate runs AES-GCM (aead_algo) only"),
        (43, "espgate runs AES-GCM (aead_algo) only"),
        (45, "transport mode"),
        (47, "type inline-crypto-offload"),
        (51, "aead_algo aes-192-gcm"),
        (56, "routing is implied by the port roles"),
        (57, "routing is implied by the port roles"),
        (58, "routing is implied by the port roles"),
        (61, "next hops are found by ARP"),
    ];
    assert_eq!(left.len(), expect.len(), "{}", report(&import.left_out));
    for ((line, reason), (want_line, want)) in left.iter().zip(expect) {
        assert_eq!(*line, want_line);
        assert!(reason.contains(want), "line {line}: {reason}");
    }
    assert!(report(&import.left_out).contains("line 45: transport mode"));
    assert_eq!(
        import.renumbered,
        vec![
            (105, 0x1069),
            (106, 0x106a),
            (5, 0x1005),
            (107, 0x106b),
            (7, 0x1007)
        ]
    );
}

#[test]
fn without_an_offset_reserved_spis_are_left_out_with_their_rules() {
    let import = import_secgw(&fixture(), &options(None));
    assert_eq!((import.sas, import.rules), (0, 3), "{}", import.yaml);
    let reserved = import
        .left_out
        .iter()
        .filter(|l| l.reason.contains("reserved (RFC 4303"))
        .count();
    assert_eq!(reserved, 5);
    // Bypass and discard rules stand on their own.
    let cfg = parse_node(&import.yaml, "imported.yaml", Path::new(".")).unwrap();
    assert!(
        cfg.spd
            .iter()
            .all(|r| !matches!(r.action, Action::Protect(_)))
    );
}

#[test]
fn malformed_lines_are_listed_not_fatal() {
    let text = "sa out x aead_algo aes-128-gcm\n\
                sa out 9 aead_algo aes-128-gcm aead_key zz mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n\
                sa out 9 aead_algo aes-128-gcm aead_key 1:2 mode ipv4-tunnel src 1::1 dst 2.2.2.2\n\
                sp ipv4 out esp pri 1\n\
                sp ipv4 out esp protect 9 dst 10.0.0.0/33\n\
                sp ipv5 out esp bypass\n\
                bogus line\n\
                sa out 1 aead_algo aes-128-gcm aead_key 1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20 mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n\
                sa out 1 aead_algo aes-128-gcm aead_key 1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20 mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n";
    let import = import_secgw(text, &ports());
    assert_eq!(import.sas, 1);
    let reasons: Vec<&str> = import.left_out.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(reasons.len(), 8, "{reasons:?}");
    assert!(reasons[0].contains("SPI"));
    assert!(reasons[1].contains("\"zz\""));
    assert!(reasons[2].contains("do not match mode"));
    assert!(reasons[3].contains("no protect"));
    assert!(reasons[4].contains("10.0.0.0/33"));
    assert!(reasons[5].contains("ipv5"));
    assert!(reasons[6].contains("\"bogus\""));
    assert!(reasons[7].contains("defined twice"));
    parse_node(&import.yaml, "x.yaml", Path::new(".")).unwrap();
}

/// secgw's samples give several SAs one key (`gateway.cfg`'s 105 and
/// 35); a node refuses that (they would seal with the same nonces), so
/// the import keeps the first and leaves each later one out, naming it.
#[test]
fn an_sa_with_the_key_of_one_imported_is_left_out() {
    let key = "1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20";
    let text = format!(
        "sa out 300 aead_algo aes-128-gcm aead_key {key} mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n\
         sa in 301 aead_algo aes-128-gcm aead_key {key} mode ipv4-tunnel src 2.2.2.2 dst 1.1.1.1\n"
    );
    let import = import_secgw(&text, &ports());
    assert_eq!(import.sas, 1);
    assert_eq!(import.left_out.len(), 1);
    assert_eq!(import.left_out[0].line, 2);
    assert!(
        import.left_out[0]
            .reason
            .contains("the key material of SA 300"),
        "{}",
        import.left_out[0].reason
    );
    parse_node(&import.yaml, "x.yaml", Path::new(".")).unwrap();
}

/// A generated GCM tunnel SA: (out, spi, aes256, key, v6, esn).
fn sa_strategy() -> impl Strategy<Value = (bool, u32, bool, Vec<u8>, bool, Option<u64>)> {
    (
        any::<bool>(),
        256u32..100_000,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0u64..1 << 40),
    )
        .prop_flat_map(|(out, spi, big, v6, esn)| {
            let len = if big { 36 } else { 20 };
            (
                Just(out),
                Just(spi),
                Just(big),
                proptest::collection::vec(any::<u8>(), len),
                Just(v6),
                Just(esn),
            )
        })
}

/// Writes a key as secgw does, breaking it across lines at `breaks`.
fn secgw_key(key: &[u8], breaks: &[usize]) -> String {
    let mut s = String::new();
    for (i, b) in key.iter().enumerate() {
        if i > 0 {
            s.push(':');
            if breaks.contains(&i) {
                s.push_str("\\\n");
            }
        }
        s.push_str(&format!("{b:x}"));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_secgw_files_import_field_for_field(
        sas in proptest::collection::vec(sa_strategy(), 1..8),
        breaks in proptest::collection::vec(1usize..20, 0..3),
        pris in proptest::collection::vec(0i64..4, 8),
        dports in proptest::collection::vec((0u16..1000, 0u16..1000), 8),
    ) {
        let mut text = String::new();
        let mut want = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (out, spi, big, key, v6, esn)) in sas.iter().enumerate() {
            if !seen.insert((*spi, *out)) {
                continue;
            }
            let (src, dst) = if *v6 { ("2001:db8::1", "2001:db8::2") } else { ("10.0.0.1", "10.0.0.2") };
            text.push_str(&format!(
                "sa {} {spi} aead_algo {} aead_key {} mode {} src {src} dst {dst}{}\n",
                if *out { "out" } else { "in" },
                if *big { "aes-256-gcm" } else { "aes-128-gcm" },
                secgw_key(key, &breaks),
                if *v6 { "ipv6-tunnel" } else { "ipv4-tunnel" },
                esn.map(|n| format!(" esn {n}")).unwrap_or_default(),
            ));
            let (lo, hi) = (dports[i].0.min(dports[i].1), dports[i].0.max(dports[i].1));
            let net = if *v6 { format!("2001:db8:{i:x}::/48") } else { format!("192.168.{i}.0/24") };
            text.push_str(&format!(
                "sp {} {} esp protect {spi} pri {} dst {net} sport 0:65535 dport {lo}:{hi}\n",
                if *v6 { "ipv6" } else { "ipv4" },
                if *out { "out" } else { "in" },
                pris[i],
            ));
            want.push((*out, *spi, *big, key.clone(), *esn, pris[i], net, (lo, hi)));
        }
        let import = import_secgw(&text, &ports());
        prop_assert!(import.left_out.is_empty(), "{}", report(&import.left_out));
        let cfg = parse_node(&import.yaml, "gen.yaml", Path::new("."))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", import.yaml)))?;
        prop_assert_eq!(cfg.sas.len(), want.len());
        for (out, spi, big, key, esn, _, _, _) in &want {
            let d = if *out { Direction::Outbound } else { Direction::Inbound };
            let e = cfg.sas.iter().find(|e| e.sa.spi == *spi && e.sa.direction == d).unwrap();
            prop_assert_eq!(&e.sa.key, key);
            prop_assert_eq!(e.sa.algorithm == AeadAlgorithm::Aes256Gcm, *big);
            prop_assert_eq!(e.sa.esn, esn.is_some());
            prop_assert_eq!(e.sa.initial_seq, esn.unwrap_or(0));
        }
        // Rules: highest priority first, stable among equals.
        let mut order: Vec<usize> = (0..want.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(want[i].5));
        prop_assert_eq!(cfg.spd.len(), want.len());
        for (rule, &i) in cfg.spd.iter().zip(&order) {
            let (out, spi, _, _, _, _, net, dport) = &want[i];
            prop_assert_eq!(rule.action, Action::Protect(*spi));
            prop_assert_eq!(rule.direction == Direction::Outbound, *out);
            prop_assert_eq!(rule.dst, net.parse().unwrap());
            prop_assert_eq!(rule.dport, *dport);
            prop_assert_eq!(rule.sport, (0, 65535));
        }
    }
}

#[test]
fn sas_espgate_would_refuse_are_listed_instead_of_written() {
    let key20 = "1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20";
    let text = format!(
        "sa out 300 aead_algo aes-256-gcm aead_key {key20} mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n\
         sa out 4101 aead_algo aes-128-gcm aead_key {key20} mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n\
         sa out 5 aead_algo aes-128-gcm aead_key {key20} mode ipv4-tunnel src 1.1.1.1 dst 2.2.2.2\n"
    );
    let import = import_secgw(&text, &ports());
    assert_eq!(import.sas, 1, "{}", report(&import.left_out));
    let reasons: Vec<&str> = import.left_out.iter().map(|l| l.reason.as_str()).collect();
    assert!(reasons[0].contains("36-byte key"), "{reasons:?}");
    assert!(
        reasons[1].contains("0x1005, which another SA has"),
        "{reasons:?}"
    );
    parse_node(&import.yaml, "x.yaml", Path::new(".")).unwrap();
}
