//! Import of DPDK ipsec-secgw configuration files (`ep0.cfg` and the like,
//! the syntax of the ipsec-secgw sample application's guide) into an
//! espgate node file.
//!
//! What maps: `sa` rules with AES-GCM (`aead_algo aes-128-gcm` or
//! `aes-256-gcm`, `aead_key` with the 4-byte salt last) in `ipv4-tunnel` or
//! `ipv6-tunnel` mode, with `esn N` (ESN, starting after N), `udp-encap`
//! and `type no-offload`; `sp` rules (IPv4 and IPv6, `protect` / `bypass` /
//! `discard`, `src`, `dst`, `proto`, `sport`, `dport`) whose SA was
//! imported. secgw's SPD is an ACL where the highest `pri` wins; espgate's
//! first match wins, so rules are written in descending priority (file
//! order among equals). `proto V:M` is a value and mask: mask 0 is any
//! protocol, mask 255 one protocol.
//!
//! What does not, and is listed with the reason instead of dropped: other
//! ciphers (CBC, CTR, NULL with HMAC), AES-192-GCM, transport mode, hardware
//! offload types, protocol masks other than 0 and 255, rules naming an SA
//! that was left out, `rt` rules (espgate routes by port role: ESP leaves
//! by the unprotected port, plaintext by the protected one, next hops by
//! ARP or each port's gateway), `neigh` and `flow` rules.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::net::IpAddr;

use espgate_dataplane::prefix::Prefix;
use espgate_esp::{AeadAlgorithm, Direction, SaConfig, Tunnel};

/// A line of the input that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// 1-based number of the line the rule starts on.
    pub line: usize,
    /// The rule, continuation lines joined.
    pub text: String,
    /// Why it was left out.
    pub reason: String,
}

/// How the import is done: the node's ports (secgw takes its ports from
/// the command line, not from the file) and what becomes of reserved SPIs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Node name.
    pub name: String,
    /// Protected port: AF_PACKET interface and address/prefix.
    pub protected: (String, String),
    /// Unprotected port: AF_PACKET interface and address/prefix (by
    /// default the outer source of the first outbound SA, with a /24 or
    /// /64 around it).
    pub unprotected: (String, Option<String>),
    /// SPIs 1..=255 are reserved (RFC 4303 2.1) and espgate refuses them,
    /// while secgw's examples use them: with an offset they are renumbered
    /// to SPI + offset (the peer must be renumbered alike), without one
    /// their SAs are left out.
    pub spi_offset: Option<u32>,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// The espgate node file.
    pub yaml: String,
    /// SAs imported.
    pub sas: usize,
    /// Rules imported.
    pub rules: usize,
    /// What was left out.
    pub left_out: Vec<LeftOut>,
    /// Reserved SPIs renumbered: (secgw's, espgate's).
    pub renumbered: Vec<(u32, u32)>,
}

/// One SA as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sa {
    direction: Direction,
    spi: u32,
    aead: &'static str,
    key: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    esn: Option<u64>,
    udp_encap: bool,
}

/// One rule as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    v6: bool,
    direction: Direction,
    action: String,
    priority: i64,
    src: Option<Prefix>,
    dst: Option<Prefix>,
    protocol: Option<u8>,
    sport: (u16, u16),
    dport: (u16, u16),
}

/// The rules of a file: continuation lines (`\` at the end) joined, `#`
/// comments removed; each with the line it starts on.
fn rules(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        if current.is_empty() {
            start = i + 1;
        }
        match line.trim_end().strip_suffix('\\') {
            // Joined as written: a key split across lines has no space at
            // the break.
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    out.push((
                        start,
                        current.split_whitespace().collect::<Vec<_>>().join(" "),
                    ));
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push((
            start,
            current.split_whitespace().collect::<Vec<_>>().join(" "),
        ));
    }
    out
}

/// `a:b` as two numbers.
fn range(t: &str) -> Result<(u16, u16), String> {
    let (a, b) = t
        .split_once(':')
        .ok_or_else(|| format!("{t:?} is not a range X:Y"))?;
    let (a, b): (u16, u16) = (
        a.parse().map_err(|_| format!("{t:?} is not a range X:Y"))?,
        b.parse().map_err(|_| format!("{t:?} is not a range X:Y"))?,
    );
    if a > b {
        return Err(format!("range {t:?} runs backwards"));
    }
    Ok((a, b))
}

/// Colon-separated hex bytes (`de:ad:0:be`).
fn key_bytes(t: &str) -> Result<Vec<u8>, String> {
    t.split(':')
        .map(|b| {
            u8::from_str_radix(b, 16).map_err(|_| format!("{b:?} in the key is not a hex byte"))
        })
        .collect()
}

/// The direction secgw spells `out` or `in`.
fn parse_direction(token: Option<&&str>) -> Result<Direction, String> {
    match token {
        Some(&"out") => Ok(Direction::Outbound),
        Some(&"in") => Ok(Direction::Inbound),
        other => Err(format!("direction {other:?} is neither in nor out")),
    }
}

/// A direction as secgw and espgate's `spd` rules spell it.
fn rule_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "out",
        Direction::Inbound => "in",
    }
}

fn parse_sa(tokens: &[&str]) -> Result<Sa, String> {
    let direction = parse_direction(tokens.get(1))?;
    let spi: u32 = tokens
        .get(2)
        .and_then(|s| s.parse().ok())
        .ok_or("the SPI is missing or not a number")?;
    let (mut aead, mut key, mut mode, mut src, mut dst) = (None, None, None, None, None);
    let (mut esn, mut udp_encap) = (None, false);
    let mut i = 3;
    while i < tokens.len() {
        let arg = tokens.get(i + 1).copied();
        let need = || arg.ok_or(format!("{} needs a value", tokens[i]));
        let step = match tokens[i] {
            "aead_algo" => {
                aead = Some(match need()? {
                    "aes-128-gcm" => "aes-128-gcm",
                    "aes-256-gcm" => "aes-256-gcm",
                    other => {
                        return Err(format!(
                            "aead_algo {other}: espgate runs AES-128-GCM and AES-256-GCM"
                        ));
                    }
                });
                2
            }
            "aead_key" => {
                key = Some(key_bytes(need()?)?);
                2
            }
            "cipher_algo" | "auth_algo" => {
                return Err(format!(
                    "{} {}: espgate runs AES-GCM (aead_algo) only",
                    tokens[i],
                    arg.unwrap_or("")
                ));
            }
            "mode" => {
                mode = Some(need()?);
                2
            }
            "src" => {
                src = Some(
                    need()?
                        .parse::<IpAddr>()
                        .map_err(|_| "src is not an address")?,
                );
                2
            }
            "dst" => {
                dst = Some(
                    need()?
                        .parse::<IpAddr>()
                        .map_err(|_| "dst is not an address")?,
                );
                2
            }
            "esn" => {
                esn = Some(need()?.parse::<u64>().map_err(|_| "esn needs a number")?);
                2
            }
            "udp-encap" => {
                udp_encap = true;
                1
            }
            "type" => match need()? {
                "no-offload" => 2,
                other => return Err(format!("type {other}: espgate has no hardware offload")),
            },
            "port_id" => {
                need()?;
                2
            }
            other => return Err(format!("option {other:?} has no espgate equivalent")),
        };
        i += step;
    }
    let (Some(aead), Some(key)) = (aead, key) else {
        return Err("no aead_algo with its aead_key".into());
    };
    let want_v6 = match mode {
        Some("ipv4-tunnel") => false,
        Some("ipv6-tunnel") => true,
        Some("transport") => return Err("transport mode: espgate runs tunnel mode".into()),
        other => return Err(format!("mode {other:?} is not a tunnel mode")),
    };
    let (Some(src), Some(dst)) = (src, dst) else {
        return Err("a tunnel needs src and dst".into());
    };
    if src.is_ipv6() != want_v6 || dst.is_ipv6() != want_v6 {
        return Err(format!(
            "src {src} and dst {dst} do not match mode {}",
            mode.unwrap_or("")
        ));
    }
    Ok(Sa {
        direction,
        spi,
        aead,
        key,
        src,
        dst,
        esn,
        udp_encap,
    })
}

fn parse_sp(tokens: &[&str]) -> Result<Rule, String> {
    let v6 = match tokens.get(1) {
        Some(&"ipv4") => false,
        Some(&"ipv6") => true,
        other => return Err(format!("ip version {other:?} is neither ipv4 nor ipv6")),
    };
    let direction = parse_direction(tokens.get(2))?;
    if tokens.get(3) != Some(&"esp") {
        return Err("missing \"esp\"".into());
    }
    let mut rule = Rule {
        v6,
        direction,
        action: String::new(),
        priority: 0,
        src: None,
        dst: None,
        protocol: None,
        // secgw's ranges default to 0:0 (port 0 only).
        sport: (0, 0),
        dport: (0, 0),
    };
    let mut i = 4;
    while i < tokens.len() {
        let arg = tokens.get(i + 1).copied();
        let need = || arg.ok_or(format!("{} needs a value", tokens[i]));
        let prefix = |t: &str| -> Result<Prefix, String> {
            let p: Prefix = t.parse()?;
            if p.addr.is_ipv6() != v6 {
                return Err(format!(
                    "{t} is not an {} prefix",
                    if v6 { "IPv6" } else { "IPv4" }
                ));
            }
            Ok(p)
        };
        let step = match tokens[i] {
            "protect" => {
                let spi: u32 = need()?.parse().map_err(|_| "protect needs an SA number")?;
                rule.action = format!("protect:{spi}");
                2
            }
            "bypass" | "discard" => {
                rule.action = tokens[i].to_string();
                1
            }
            "pri" => {
                rule.priority = need()?.parse().map_err(|_| "pri needs a number")?;
                2
            }
            "src" => {
                rule.src = Some(prefix(need()?)?);
                2
            }
            "dst" => {
                rule.dst = Some(prefix(need()?)?);
                2
            }
            "proto" => {
                let (value, mask) = range(need()?)?;
                rule.protocol = match mask {
                    0 => None,
                    255 => Some(u8::try_from(value).map_err(|_| "proto above 255")?),
                    m => {
                        return Err(format!(
                            "proto mask {m}: espgate matches one protocol or any"
                        ));
                    }
                };
                2
            }
            "sport" => {
                rule.sport = range(need()?)?;
                2
            }
            "dport" => {
                rule.dport = range(need()?)?;
                2
            }
            other => return Err(format!("option {other:?} has no espgate equivalent")),
        };
        i += step;
    }
    if rule.action.is_empty() {
        return Err("no protect, bypass or discard".into());
    }
    Ok(rule)
}

/// Whether an SA, as SPI `spi`, is one espgate runs (key length for the
/// algorithm, addresses).
fn check(sa: &Sa, spi: u32) -> Result<(), String> {
    let algorithm = match sa.aead {
        "aes-256-gcm" => AeadAlgorithm::Aes256Gcm,
        _ => AeadAlgorithm::Aes128Gcm,
    };
    let tunnel = Tunnel {
        src: sa.src,
        dst: sa.dst,
    };
    let mut cfg = SaConfig::new(spi, sa.direction, tunnel, algorithm, sa.key.clone());
    cfg.esn = sa.esn.is_some();
    cfg.initial_seq = sa.esn.unwrap_or(0);
    cfg.validate().map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ports(p: (u16, u16)) -> String {
    match p {
        (0, u16::MAX) => "any".into(),
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("\"{a}-{b}\""),
    }
}

/// The first SPI espgate accepts (0 is local, 1..=255 reserved).
const FIRST_SPI: u32 = 256;

/// The SPI espgate uses for secgw's `spi`, or why there is none.
fn renumber(spi: u32, offset: Option<u32>) -> Result<u32, String> {
    if spi >= FIRST_SPI {
        return Ok(spi);
    }
    match offset.and_then(|o| spi.checked_add(o)) {
        Some(n) if n >= FIRST_SPI => Ok(n),
        Some(n) => Err(format!(
            "SPI {spi} + the offset is {n}, still reserved (0..=255)"
        )),
        None => Err(format!(
            "SPI {spi} is reserved (RFC 4303: 0 local, 1..=255 IANA) and espgate refuses it; renumber with an SPI offset (the peer's too)"
        )),
    }
}

/// Imports ipsec-secgw configuration `text` into an espgate node file.
pub fn import_secgw(text: &str, node: &ImportOptions) -> Import {
    let mut left_out = Vec::new();
    let mut sas: Vec<Sa> = Vec::new();
    let mut sps: Vec<(usize, String, Rule)> = Vec::new();
    // secgw's SA numbers imported, and the SPIs they became.
    let mut seen = HashSet::new();
    let mut spis = HashSet::new();
    // The key material of each SA imported, and its secgw number: a node
    // refuses two SAs with one key (they would seal with the same nonces).
    let mut keys: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut renumbered = Vec::new();
    for (line, rule) in rules(text) {
        let tokens: Vec<&str> = rule.split(' ').collect();
        let mut leave = |reason: String| {
            left_out.push(LeftOut {
                line,
                text: rule.clone(),
                reason,
            })
        };
        match tokens[0] {
            "sa" => match parse_sa(&tokens) {
                Ok(sa) if seen.contains(&(sa.spi, sa.direction)) => {
                    leave(format!("SA {} is defined twice", sa.spi));
                }
                Ok(sa) => match renumber(sa.spi, node.spi_offset).and_then(|spi| {
                    check(&sa, spi)?;
                    if spis.contains(&(spi, sa.direction)) {
                        return Err(format!("SA {} would be SPI {spi:#x}, which another SA has", sa.spi));
                    }
                    if let Some(other) = keys.get(&sa.key) {
                        return Err(format!(
                            "SA {} has the key material of SA {other}: two SAs with one key seal \
                             with the same nonces (the sequence numbers); give each its own key",
                            sa.spi
                        ));
                    }
                    Ok(spi)
                }) {
                    Ok(spi) => {
                        if spi != sa.spi && !renumbered.contains(&(sa.spi, spi)) {
                            renumbered.push((sa.spi, spi));
                        }
                        seen.insert((sa.spi, sa.direction));
                        spis.insert((spi, sa.direction));
                        keys.insert(sa.key.clone(), sa.spi);
                        sas.push(sa);
                    }
                    Err(e) => leave(e),
                },
                Err(e) => leave(e),
            },
            "sp" => match parse_sp(&tokens) {
                Ok(r) => sps.push((line, rule.clone(), r)),
                Err(e) => leave(e),
            },
            "rt" => leave(
                "routing is implied by the port roles (ESP out of the unprotected port, plaintext out of the protected one; a port's gateway for what is off its link)"
                    .into(),
            ),
            "neigh" => leave("next hops are found by ARP, or listed under neighbours: by IP address".into()),
            "flow" => leave("no flow steering: queues are chosen by RSS".into()),
            other => leave(format!("{other:?} is not an sa, sp, rt, neigh or flow rule")),
        }
    }
    // Rules keep their order among equal priorities; highest first.
    sps.sort_by_key(|(_, _, r)| std::cmp::Reverse(r.priority));
    let mut rules_out = Vec::new();
    for (line, text, r) in sps {
        if let Some(spi) = r.action.strip_prefix("protect:") {
            let spi: u32 = spi.parse().expect("written above");
            if !seen.contains(&(spi, r.direction)) {
                left_out.push(LeftOut {
                    line,
                    text,
                    reason: format!("SA {spi} ({}) was not imported", rule_word(r.direction)),
                });
                continue;
            }
        }
        rules_out.push(r);
    }
    left_out.sort_by_key(|l| l.line);
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Imported from an ipsec-secgw configuration by `espgate import-secgw`."
    );
    let _ = writeln!(
        y,
        "# secgw takes its ports from its command line: check these two."
    );
    let _ = writeln!(y, "node: {{ name: {} }}", node.name);
    let _ = writeln!(y, "ports:");
    let wan_addr = node.unprotected.1.clone().unwrap_or_else(|| {
        match sas
            .iter()
            .find(|s| s.direction == Direction::Outbound)
            .map(|s| s.src)
        {
            Some(IpAddr::V4(a)) => format!("{a}/24"),
            Some(IpAddr::V6(a)) => format!("{a}/64"),
            None => "192.0.2.1/24".into(),
        }
    });
    let wan = (node.unprotected.0.clone(), wan_addr);
    for (name, role, (ifname, addr)) in [
        ("lan", "protected", &node.protected),
        ("wan", "unprotected", &wan),
    ] {
        let _ = writeln!(
            y,
            "  - {{ name: {name}, role: {role}, backend: af_packet, interface: {ifname}, address: {addr} }}"
        );
    }
    let _ = writeln!(y, "sas:{}", if sas.is_empty() { " []" } else { "" });
    for sa in &sas {
        let mut extra = String::new();
        if let Some(n) = sa.esn {
            let _ = write!(extra, ", esn: true, initial_seq: {n}");
        }
        if sa.udp_encap {
            extra.push_str(", udp_encap: true");
        }
        let _ = writeln!(
            y,
            "  - {{ spi: {:#x}, direction: {}, aead: {}, key: 0x{}, tunnel: {{ src: {}, dst: {} }}{extra} }}",
            renumber(sa.spi, node.spi_offset).expect("checked on the way in"),
            sa.direction,
            sa.aead,
            hex(&sa.key),
            sa.src,
            sa.dst,
        );
    }
    let _ = writeln!(y, "spd:{}", if rules_out.is_empty() { " []" } else { "" });
    for r in &rules_out {
        let mut fields = vec![format!("direction: {}", rule_word(r.direction))];
        let any = if r.v6 { "::/0" } else { "0.0.0.0/0" };
        for (k, p) in [("src", r.src), ("dst", r.dst)] {
            match p {
                Some(p) => fields.push(format!("{k}: \"{p}\"")),
                None => fields.push(format!("{k}: \"{any}\"")),
            }
        }
        if let Some(p) = r.protocol {
            fields.push(format!("protocol: {p}"));
        }
        fields.push(format!("sport: {}", ports(r.sport)));
        fields.push(format!("dport: {}", ports(r.dport)));
        match r.action.strip_prefix("protect:") {
            Some(spi) => {
                let spi: u32 = spi.parse().expect("written above");
                let spi = renumber(spi, node.spi_offset).expect("its SA was imported");
                fields.push("action: protect".into());
                fields.push(format!("sa: {spi:#x}"));
            }
            None => fields.push(format!("action: {}", r.action)),
        }
        let _ = writeln!(y, "  - {{ {} }}", fields.join(", "));
    }
    Import {
        yaml: y,
        sas: sas.len(),
        rules: rules_out.len(),
        left_out,
        renumbered,
    }
}

/// The left-out lines, one per line: `line N: reason: rule`.
pub fn report(left_out: &[LeftOut]) -> String {
    left_out
        .iter()
        .map(|l| format!("line {}: {}: {}\n", l.line, l.reason, l.text))
        .collect()
}
