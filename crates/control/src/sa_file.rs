//! One SA in a YAML file.
//!
//! ```yaml
//! spi: 0x1000               # 256 and up; decimal or 0x-hex
//! direction: outbound       # optional: outbound | inbound
//! aead: aes-128-gcm         # aes-128-gcm | aes-256-gcm
//! key: 0x00112233445566778899aabbccddeeff01020304   # AES key then 4-byte salt
//! # key_file: keys/sa1000.hex                       # or: a file holding that hex
//! tunnel: { src: 172.16.1.5, dst: 172.16.2.5 }      # outer addresses on the wire
//! esn: false
//! replay_window: 1024       # inbound, 32..=65536
//! udp_encap: false          # true (4500 -> 4500) or { src_port: P, dst_port: Q }
//! lifetime: { soft_bytes: 0, hard_bytes: 0, soft_packets: 0, hard_packets: 0,
//!             soft_seconds: 0, hard_seconds: 0 }   # each optional; seconds from when the node installs it
//! initial_seq: 0            # last sequence number used / replay window top
//! outer_ttl: 64
//! pad_to: 16               # 4 or 16: whole AES blocks seal faster
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use espgate_esp::sa::NATT_PORT;
use espgate_esp::{AeadAlgorithm, Direction, Lifetime, SaConfig, SaError, Tunnel, UdpEncap};
use serde::Deserialize;

use crate::error::{ConfigError, MAX_KEY_BYTES, from_yaml, read_bounded, read_config};
use crate::hexkey::{parse_hex, parse_u32};

/// An SPI written as a number or as a `0x` string.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Spi {
    Number(u32),
    Text(#[serde(deserialize_with = "de_hex_u32")] u32),
}

fn de_hex_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    parse_u32(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a 32-bit number")))
}

fn de_from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DirectionSpec {
    Outbound,
    Inbound,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelSpec {
    src: IpAddr,
    dst: IpAddr,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsSpec {
    #[serde(default = "natt_port")]
    src_port: u16,
    #[serde(default = "natt_port")]
    dst_port: u16,
}

fn natt_port() -> u16 {
    NATT_PORT
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum UdpEncapSpec {
    Enabled(bool),
    Ports(PortsSpec),
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifetimeSpec {
    soft_bytes: Option<u64>,
    hard_bytes: Option<u64>,
    soft_packets: Option<u64>,
    hard_packets: Option<u64>,
    soft_seconds: Option<u64>,
    hard_seconds: Option<u64>,
}

/// One SA as YAML writes it (an SA file, or an entry of a node's `sas`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SaSpec {
    spi: Spi,
    direction: Option<DirectionSpec>,
    #[serde(deserialize_with = "de_from_str")]
    aead: AeadAlgorithm,
    key: Option<String>,
    key_file: Option<PathBuf>,
    tunnel: TunnelSpec,
    #[serde(default)]
    esn: bool,
    #[serde(default = "default_window")]
    replay_window: u32,
    udp_encap: Option<UdpEncapSpec>,
    #[serde(default)]
    lifetime: LifetimeSpec,
    #[serde(default)]
    initial_seq: u64,
    #[serde(default = "default_ttl")]
    outer_ttl: u8,
    #[serde(default = "default_pad_to")]
    pad_to: u8,
    /// Owning worker (node configurations only).
    pub(crate) worker: Option<usize>,
    /// The node of the pair the SA runs on (node configurations only).
    pub(crate) home: Option<u32>,
    /// This SA's own mirror interval or quantity (node configurations only).
    pub(crate) mirror: Option<SaMirrorSpec>,
}

/// Per-SA changes to the `mirror:` defaults.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SaMirrorSpec {
    /// Outbound `interval`, or inbound `inbound_interval`.
    pub(crate) interval: Option<u64>,
    /// Outbound `quantity`.
    pub(crate) quantity: Option<u64>,
}

fn default_window() -> u32 {
    1024
}

fn default_ttl() -> u8 {
    64
}

fn default_pad_to() -> u8 {
    16
}

/// An SA read from a file: its definition, and the direction if the file
/// states one (the definition carries outbound when it does not).
#[derive(Debug, Clone)]
pub struct SaFile {
    /// The validated definition.
    pub config: SaConfig,
    /// The direction the file states, if any.
    pub direction: Option<Direction>,
    /// The file's name, for messages.
    pub file: String,
}

impl SaFile {
    /// The definition for use in `direction`; an error if the file states
    /// the other direction.
    pub fn for_direction(&self, direction: Direction) -> Result<SaConfig, ConfigError> {
        match self.direction {
            Some(d) if d != direction => Err(ConfigError::invalid(
                &self.file,
                "direction",
                format!("the file says {d}, but this use needs {direction}"),
            )),
            _ => {
                let mut sa = self.config.clone();
                sa.direction = direction;
                Ok(sa)
            }
        }
    }
}

/// Reads and validates an SA file. A `key_file` is read relative to the
/// SA file's folder.
pub fn load_sa_file(path: &Path) -> Result<SaFile, ConfigError> {
    let c = read_config(path)?;
    parse_sa(&c.text, &c.file, c.base)
}

/// Parses and validates SA YAML text; `file` names it in errors (with
/// the line) and `base` is where a relative `key_file` is looked up.
pub fn parse_sa(text: &str, file: &str, base: &Path) -> Result<SaFile, ConfigError> {
    let spec: SaSpec = from_yaml(text, file)?;
    resolve_sa_file(&spec, file, base).map_err(|e| e.placed_in(text, file))
}

/// Checks a parsed SA file: an SA file's SA belongs to no node.
fn resolve_sa_file(spec: &SaSpec, file: &str, base: &Path) -> Result<SaFile, ConfigError> {
    if spec.worker.is_some() {
        return Err(ConfigError::invalid(
            file,
            "worker",
            "only a node configuration assigns SAs to workers",
        ));
    }
    if spec.home.is_some() || spec.mirror.is_some() {
        return Err(ConfigError::invalid(
            file,
            if spec.home.is_some() {
                "home"
            } else {
                "mirror"
            },
            "only a node configuration of a pair has home and mirror keys",
        ));
    }
    let (config, direction) = resolve_sa(spec, file, "", base)?;
    Ok(SaFile {
        config,
        direction,
        file: file.to_string(),
    })
}

/// Turns a parsed SA into its definition; `at` prefixes key paths in
/// errors (`sas[2].` in a node configuration), and each error names the SA
/// by its SPI too.
pub(crate) fn resolve_sa(
    spec: &SaSpec,
    file: &str,
    at: &str,
    base: &Path,
) -> Result<(SaConfig, Option<Direction>), ConfigError> {
    let spi = match spec.spi {
        Spi::Number(n) | Spi::Text(n) => n,
    };
    let err = |key: &str, message: String| {
        ConfigError::invalid(
            file,
            &format!("{at}{key}"),
            format!("{message} (SA {spi:#x})"),
        )
    };
    let key_text = match (&spec.key, &spec.key_file) {
        (Some(k), None) => k.clone(),
        (None, Some(p)) => {
            let p = base.join(p);
            read_bounded(&p, MAX_KEY_BYTES)
                .map_err(|e| err("key_file", format!("cannot read {}: {e}", p.display())))?
        }
        (Some(_), Some(_)) => return Err(err("key", "give key or key_file, not both".into())),
        (None, None) => return Err(err("key", "missing: give key or key_file".into())),
    };
    let key_path = if spec.key.is_some() {
        "key"
    } else {
        "key_file"
    };
    let key = parse_hex(&key_text).map_err(|m| err(key_path, m))?;
    let direction = spec.direction.map(|d| match d {
        DirectionSpec::Outbound => Direction::Outbound,
        DirectionSpec::Inbound => Direction::Inbound,
    });
    let udp_encap = match spec.udp_encap {
        None | Some(UdpEncapSpec::Enabled(false)) => None,
        Some(UdpEncapSpec::Enabled(true)) => Some(UdpEncap::default()),
        Some(UdpEncapSpec::Ports(p)) => Some(UdpEncap {
            src_port: p.src_port,
            dst_port: p.dst_port,
        }),
    };
    let l = spec.lifetime;
    let config = SaConfig {
        spi,
        direction: direction.unwrap_or(Direction::Outbound),
        tunnel: Tunnel {
            src: spec.tunnel.src,
            dst: spec.tunnel.dst,
        },
        algorithm: spec.aead,
        key,
        esn: spec.esn,
        replay_window: spec.replay_window,
        lifetime: Lifetime {
            soft_bytes: l.soft_bytes,
            hard_bytes: l.hard_bytes,
            soft_packets: l.soft_packets,
            hard_packets: l.hard_packets,
            soft_seconds: l.soft_seconds,
            hard_seconds: l.hard_seconds,
        },
        udp_encap,
        initial_seq: spec.initial_seq,
        outer_ttl: spec.outer_ttl,
        pad_to: spec.pad_to,
    };
    config
        .validate()
        .map_err(|e| err(sa_error_path(&e, key_path), e.to_string()))?;
    Ok((config, direction))
}

/// The key an SA validation error is about.
fn sa_error_path<'a>(e: &SaError, key_path: &'a str) -> &'a str {
    match e {
        SaError::ReservedSpi(_) => "spi",
        SaError::Key(_) => key_path,
        SaError::MixedTunnel { .. } => "tunnel",
        SaError::Window(_) => "replay_window",
        SaError::InitialSeq(_) => "initial_seq",
        SaError::Lifetime { .. } => "lifetime",
        SaError::Ttl => "outer_ttl",
        SaError::PadTo(_) => "pad_to",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "spi: 0x1000\naead: aes-128-gcm\nkey: 0x000102030405060708090a0b0c0d0e0f10111213\ntunnel: { src: 172.16.1.5, dst: 172.16.2.5 }\n";

    fn parse(text: &str) -> Result<SaFile, String> {
        parse_sa(text, "sa.yaml", Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let f = parse(GOOD).unwrap();
        let c = &f.config;
        assert_eq!(c.spi, 0x1000);
        assert_eq!(c.key.len(), 20);
        assert_eq!(
            (c.esn, c.replay_window, c.outer_ttl, c.udp_encap),
            (false, 1024, 64, None)
        );
        assert_eq!(f.direction, None);
        assert!(f.for_direction(Direction::Inbound).is_ok());
    }

    #[test]
    fn full_file() {
        let text = "spi: \"0x2000\"\ndirection: inbound\naead: aes-256-gcm\nkey: \"00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:18:19:1a:1b:1c:1d:1e:1f:aa:bb:cc:dd\"\ntunnel: { src: \"2001:db8::1\", dst: \"2001:db8::2\" }\nesn: true\nreplay_window: 4096\nudp_encap: { src_port: 4501 }\nlifetime: { soft_packets: 10, hard_packets: 20 }\ninitial_seq: 5000000000\nouter_ttl: 32\n";
        let f = parse(text).unwrap();
        assert_eq!(f.config.spi, 0x2000);
        assert_eq!(
            f.config.udp_encap,
            Some(UdpEncap {
                src_port: 4501,
                dst_port: 4500
            })
        );
        assert_eq!(f.config.lifetime.hard_packets, Some(20));
        assert_eq!(f.direction, Some(Direction::Inbound));
        let e = f
            .for_direction(Direction::Outbound)
            .unwrap_err()
            .to_string();
        assert!(e.contains("direction") && e.contains("inbound"), "{e}");
    }

    /// A key that is not hex names the SA (its SPI) and its line: the
    /// message was `sa.yaml: key: not hex: ...` alone.
    #[test]
    fn a_bad_key_names_its_sa_and_line() {
        let text = GOOD.replace("key: 0x0001", "key: 0xzz01");
        let e = parse(&text).unwrap_err();
        assert!(e.starts_with("sa.yaml:3:6: key: not hex: "), "{e}");
        assert!(e.ends_with(" (SA 0x1000)"), "{e}");
        let e = parse(&GOOD.replace("0x1000", "0x1000\npad_to: 8")).unwrap_err();
        assert!(e.starts_with("sa.yaml:2:9: pad_to: "), "{e}");
        let e =
            parse(&GOOD.replace("key: 0x0001", "key_file: nowhere.hex\nkey: 0x0001")).unwrap_err();
        assert!(
            e.starts_with("sa.yaml:4:6: key: give key or key_file, not both"),
            "{e}"
        );
    }

    #[test]
    fn each_error_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("colour: red\n", "colour"),
            ("spi: 12\n", "spi"),
            ("spi: \"0xzz\"\n", "spi"),
            ("aead: aes-512-gcm\n", "aead"),
            ("key: 0x0011\n", "key"),
            ("key: nothex\n", "key"),
            (
                "tunnel: { src: 172.16.1.5, dst: \"2001:db8::2\" }\n",
                "tunnel",
            ),
            (
                "tunnel: { src: 300.1.1.1, dst: 172.16.2.5 }\n",
                "tunnel.src",
            ),
            ("replay_window: 7\n", "replay_window"),
            ("initial_seq: 5000000000\n", "initial_seq"),
            ("lifetime: { soft_bytes: 10, hard_bytes: 5 }\n", "lifetime"),
            ("lifetime: { soft_octets: 10 }\n", "lifetime"),
            ("outer_ttl: 0\n", "outer_ttl"),
            ("pad_to: 8\n", "pad_to"),
            ("udp_encap: { dst_port: 70000 }\n", "udp_encap"),
        ];
        for (change, key) in cases {
            // Replace or add the key in the good file.
            let name = change.split(':').next().unwrap();
            let mut text: String = GOOD
                .lines()
                .filter(|l| !l.starts_with(&format!("{name}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(change);
            let e = parse(&text).expect_err(change);
            assert!(e.starts_with("sa.yaml"), "{e}");
            assert!(
                e.contains(&format!(": {key}"))
                    || e.contains(&format!("{key}:"))
                    || e.contains(key),
                "{change} -> {e}"
            );
        }
        let e = parse("spi: 0x1000\naead: aes-128-gcm\ntunnel: { src: 1.1.1.1, dst: 2.2.2.2 }\n")
            .unwrap_err();
        assert!(e.contains("key: missing"), "{e}");
    }
}
