//! A running node's SAs and policy rules written back as node-file YAML
//! (`sas:` and `spd:`, as `sa_add` and a node file read them), keys
//! included: what the host gives a node that returns while its peer runs,
//! so it gets the SAs the pair runs now (rekeys and run-time adds
//! included), not the ones its file had. Workers are left out (each node
//! spreads SAs over its own workers).

use std::fmt::Write;

use espgate_dataplane::config::SaEntry;
use espgate_dataplane::spd::{Action, SpdRule};
use espgate_esp::{Direction, SaConfig};

/// `sas:` and `spd:` of these SAs and rules, one flow mapping per line;
/// an SA with no home of its own is written with `home`, the node that
/// runs them (its file's default is itself, which another node's file
/// would read as the other node).
pub fn sas_and_rules(sas: &[SaEntry], rules: &[SpdRule], home: Option<u32>) -> String {
    // An empty list is written `[]`: a key with nothing under it reads
    // as null, which a node file refuses.
    let mut out = String::from(if sas.is_empty() {
        "sas: []\n"
    } else {
        "sas:\n"
    });
    for e in sas {
        let _ = writeln!(out, "  - {}", sa_line(e, home));
    }
    out += if rules.is_empty() {
        "spd: []\n"
    } else {
        "spd:\n"
    };
    for r in rules {
        let _ = writeln!(out, "  - {}", rule_line(r));
    }
    out
}

/// Node-file YAML `file` with its `sas` and `spd` replaced by those of
/// `running` (what [`sas_and_rules`] wrote); everything else as it was.
pub fn with_running_sas(file: &str, running: &str) -> Result<String, String> {
    let mut cfg: serde_norway::Value =
        serde_norway::from_str(file).map_err(|e| format!("the node file: {e}"))?;
    let running: serde_norway::Value =
        serde_norway::from_str(running).map_err(|e| format!("the running SAs: {e}"))?;
    let (Some(cfg_map), Some(run_map)) = (cfg.as_mapping_mut(), running.as_mapping()) else {
        return Err("not a YAML mapping".into());
    };
    for k in ["sas", "spd"] {
        match run_map.get(k) {
            Some(v) => cfg_map.insert(k.into(), v.clone()),
            None => cfg_map.remove(k),
        };
    }
    serde_norway::to_string(&cfg).map_err(|e| e.to_string())
}

fn sa_line(e: &SaEntry, home: Option<u32>) -> String {
    let sa: &SaConfig = &e.sa;
    let key: String = sa.key.iter().map(|b| format!("{b:02x}")).collect();
    let mut s = format!(
        "{{ spi: {:#x}, direction: {}, aead: {}, key: \"0x{key}\", tunnel: {{ src: {}, dst: {} }}, \
         esn: {}, replay_window: {}, initial_seq: {}, outer_ttl: {}, pad_to: {}",
        sa.spi,
        sa.direction,
        sa.algorithm.name(),
        yaml_addr(sa.tunnel.src),
        yaml_addr(sa.tunnel.dst),
        sa.esn,
        sa.replay_window,
        sa.initial_seq,
        sa.outer_ttl,
        sa.pad_to,
    );
    if let Some(u) = sa.udp_encap {
        let _ = write!(
            s,
            ", udp_encap: {{ src_port: {}, dst_port: {} }}",
            u.src_port, u.dst_port
        );
    }
    let l = sa.lifetime;
    let limits: Vec<String> = [
        ("soft_bytes", l.soft_bytes),
        ("hard_bytes", l.hard_bytes),
        ("soft_packets", l.soft_packets),
        ("hard_packets", l.hard_packets),
        ("soft_seconds", l.soft_seconds),
        ("hard_seconds", l.hard_seconds),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
    .collect();
    if !limits.is_empty() {
        let _ = write!(s, ", lifetime: {{ {} }}", limits.join(", "));
    }
    if let Some(h) = e.home.or(home) {
        let _ = write!(s, ", home: {h}");
    }
    let m: Vec<String> = [
        ("interval", e.mirror.interval),
        ("quantity", e.mirror.quantity),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
    .collect();
    if !m.is_empty() {
        let _ = write!(s, ", mirror: {{ {} }}", m.join(", "));
    }
    s + " }"
}

/// An address as a YAML plain scalar (IPv6 quoted: a colon-space-free
/// `::` reads as a string anyway, but quoting keeps it one).
fn yaml_addr(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V4(v) => v.to_string(),
        std::net::IpAddr::V6(v) => format!("\"{v}\""),
    }
}

fn ports((a, b): (u16, u16)) -> String {
    match (a, b) {
        (0, u16::MAX) => "any".into(),
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("\"{a}-{b}\""),
    }
}

fn rule_line(r: &SpdRule) -> String {
    let action = match r.action {
        Action::Protect(spi) => format!("protect, sa: {spi:#x}"),
        Action::Bypass => "bypass".into(),
        Action::Discard => "discard".into(),
        Action::Trap => "trap".into(),
    };
    format!(
        "{{ direction: {}, src: \"{}\", dst: \"{}\", protocol: {}, sport: {}, dport: {}, action: {action} }}",
        match r.direction {
            Direction::Outbound => "out",
            Direction::Inbound => "in",
        },
        r.src,
        r.dst,
        r.protocol.map_or("any".into(), |p| p.to_string()),
        ports(r.sport),
        ports(r.dport),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A node file read, written back and read again as an update gives
    /// the same SAs (keys included, workers aside) and rules.
    #[test]
    fn what_is_written_reads_back_the_same() {
        let text = "node: { name: a }
workers: { count: 2 }
ports:
  - { name: lan, role: protected, backend: mem, mac: 02:00:00:00:01:01, address: 10.1.0.1/24 }
  - { name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:01:02, address: 192.0.2.1/24 }
sas:
  - { spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 192.0.2.1, dst: 192.0.2.100 }, esn: true, lifetime: { soft_packets: 1000, hard_bytes: 5000000, soft_seconds: 3000, hard_seconds: 3600 }, worker: 1 }
  - { spi: 0x1001, direction: inbound, aead: aes-256-gcm, key: 0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff01020304, tunnel: { src: \"2001:db8::1\", dst: \"2001:db8::2\" }, replay_window: 4096, udp_encap: { src_port: 4500, dst_port: 4501 }, outer_ttl: 32, pad_to: 4 }
spd:
  - { direction: out, src: 10.1.0.0/24, dst: 10.3.0.0/24, protocol: udp, sport: any, dport: 1000-2000, action: protect, sa: 0x1000 }
  - { direction: in, src: 10.3.0.0/24, dst: 10.1.0.10, protocol: 6, sport: 53, action: protect, sa: 0x1001 }
  - { direction: out, src: 0.0.0.0/0, dst: 0.0.0.0/0, action: bypass }
  - { direction: in, src: 0.0.0.0/0, dst: 0.0.0.0/0, action: discard }
";
        let node = crate::parse_node(text, "test", Path::new(".")).expect("node file");
        let written = sas_and_rules(&node.sas, &node.spd, None);
        let head = &text[..text.find("sas:").expect("sas")];
        let back = crate::parse_node(&format!("{head}{written}"), "written", Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(back.sas.len(), node.sas.len());
        for (a, b) in node.sas.iter().zip(&back.sas) {
            assert_eq!(a.sa.key, b.sa.key);
            assert_eq!(format!("{:?}", a.sa), format!("{:?}", b.sa));
            assert_eq!((a.home, a.mirror), (b.home, b.mirror));
            assert_eq!(b.worker, None, "workers are each node's own");
        }
        assert_eq!(back.spd, node.spd);
    }

    /// A node file whose SAs are stale takes the running ones, and keeps
    /// everything else.
    #[test]
    fn a_file_takes_the_running_sas_and_keeps_the_rest() {
        let file = "node: { name: a }
workers: { count: 1 }
ports:
  - { name: lan, role: protected, backend: mem, mac: 02:00:00:00:01:01, address: 10.1.0.1/24 }
  - { name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:01:02, address: 192.0.2.1/24 }
sas:
  - { spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 192.0.2.1, dst: 192.0.2.100 } }
spd:
  - { direction: out, src: 10.1.0.0/24, dst: 10.3.0.0/24, action: protect, sa: 0x1000 }
";
        let running = "sas:
  - { spi: 0x1002, direction: outbound, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: { src: 192.0.2.1, dst: 192.0.2.100 } }
spd:
  - { direction: out, src: \"10.1.0.0/24\", dst: \"10.3.0.0/24\", protocol: any, sport: any, dport: any, action: protect, sa: 0x1002 }
";
        let merged = with_running_sas(file, running).expect("merged");
        let node = crate::parse_node(&merged, "merged", Path::new(".")).expect("node file");
        let spis: Vec<u32> = node.sas.iter().map(|e| e.sa.spi).collect();
        assert_eq!(spis, [0x1002]);
        assert_eq!(node.spd[0].action, Action::Protect(0x1002));
        assert_eq!(node.name, "a");
        assert!(with_running_sas("- a list", running).is_err());
    }

    /// A key with leading zero bytes (an all-zero lab key) survives the
    /// merge: unquoted, YAML read it as the number 0 and wrote it back so,
    /// and the returning node refused its whole configuration (reader27's
    /// find 11).
    #[test]
    fn a_key_with_leading_zero_bytes_survives_the_merge() {
        let head = "node: { name: a }
workers: { count: 1 }
ports:
  - { name: lan, role: protected, backend: mem, mac: 02:00:00:00:01:01, address: 10.1.0.1/24 }
  - { name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:01:02, address: 192.0.2.1/24 }
";
        let file = format!("{head}sas:
  - {{ spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: \"0x0000000000000000000000000000000000000001\", tunnel: {{ src: 192.0.2.1, dst: 192.0.2.100 }} }}
");
        let node = crate::parse_node(&file, "file", Path::new(".")).expect("node file");
        let running = sas_and_rules(&node.sas, &node.spd, None);
        let merged = with_running_sas(head, &running).expect("merged");
        let back = crate::parse_node(&merged, "merged", Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{merged}"));
        assert_eq!(back.sas[0].sa.key, node.sas[0].sa.key);
    }

    /// A peer that runs no SA yet (a pair whose SAs all come from an IKE
    /// daemon, before the first) gives a node file with none: before, its
    /// empty `sas:` read as null and the returning node refused its
    /// configuration for good.
    #[test]
    fn no_running_sas_give_a_file_with_none() {
        let file = "node: { name: a }
workers: { count: 1 }
ports:
  - { name: lan, role: protected, backend: mem, mac: 02:00:00:00:01:01, address: 10.1.0.1/24 }
  - { name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:01:02, address: 192.0.2.1/24 }
";
        let merged = with_running_sas(file, &sas_and_rules(&[], &[], Some(1))).expect("merged");
        let node = crate::parse_node(&merged, "merged", Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{merged}"));
        assert!(node.sas.is_empty() && node.spd.is_empty());
    }
}
