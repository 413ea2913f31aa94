//! The control socket's requests: one JSON object per line, tagged by
//! `op`. Unknown operations and unknown fields are refused by name. The
//! answers' types are in [`crate::answer`].
//!
//! | request | answer |
//! |---|---|
//! | `{"op":"status"}` | `{"ok":true,"node":..,"state":"running"\|"waiting_config","pair":{..}}` |
//! | `{"op":"configure","yaml":"<node YAML>"}` | `{"ok":true}`: the node starts |
//! | `{"op":"take_over"}`, `{"op":"hand_back"}`, `{"op":"fence"}` | `{"ok":true}` |
//! | `{"op":"drain"}` | `{"ok":true,"sas":N}` once every SA the node ran is the peer's, handed over with its exact state, and the peer heard the node's goodbye: the node then stops |
//! | `{"op":"events"}` | `{"ok":true,"events":["event t=.. ..", ..]}` (since the last call) |
//! | `{"op":"sa_list"}` | `{"ok":true,"sas":[{"spi":4096,"direction":"outbound","worker":0,"home":1,"owner":1,"state":"active"\|"standby"\|"retiring","seq":..,"lease_end":..,"packets":..,"bytes":..,"drops":{..},"lifetime_left":{..},..}]}` |
//! | `{"op":"sa_add","yaml":"sas: [..]\nspd: [..]","position":0}` | `{"ok":true,"sas":N,"rules":M}` (`position` optional: rules go last) |
//! | `{"op":"sa_export"}` | `{"ok":true,"yaml":"sas:\n  - {..}\nspd:\n  - {..}\n"}`: the SAs running (keys included, those a rekey replaced left out) and the rules, as a node file writes them |
//! | `{"op":"sa_del","spi":"0x1000","direction":"outbound"}` | `{"ok":true}`: the SA and the rules naming it are gone |
//! | `{"op":"sa_rekey","spi":"0x1000","direction":"outbound","yaml":"<SA file>","grace_ms":5000}` | `{"ok":true,"new_spi":..,"grace_ms":..}` |
//! | `{"op":"spi_alloc"}` | `{"ok":true,"spi":3221225473}`: an inbound SPI no SA has, reserved for 165 s (an IKE daemon's `get_spi`) |
//! | `{"op":"sa_query","spi":"0xc0000001","direction":"inbound"}` | `{"ok":true,"packets":..,"bytes":..}`: the SA's counters (inner bytes), from the worker that runs it |
//! | `{"op":"spd_put","yaml":"spd: [..]"}` | `{"ok":true,"rules":N}`: each rule replaces the action of the rule with its selectors, or goes before the first rule covering it |
//! | `{"op":"spd_del","yaml":"spd: [..]"}` | `{"ok":true,"rules":N}`: the rules with those selectors are gone (actions aside) |
//! | `{"op":"watch"}` | `{"ok":true}`, then one line per event as it happens: `{"event":"sa","t":..,"spi":..,"direction":..,"kind":"soft_lifetime"\|"hard_lifetime"\|"seq_low"\|"seq_exhausted"}` or `{"event":"acquire","t":..,"src":"10.1.0.1","dst":"10.2.0.1","protocol":1,"sport":0,"dport":0}` (a packet matched a trap rule) or `{"event":"node","t":..,"line":"event t=.. .."}`; the connection carries nothing else |
//! | `{"op":"stats"}` | `{"ok":true,"workers":[{..counters, drops by reason, queues, burst_ns quantiles..}],"total":{..}}` |
//! | `{"op":"peer"}` | `{"ok":true,"mirror":{"peer_alive":..,"synced":..,"frames_sent":..,"rejected":{by reason},..}}` (`null` without a pair) |
//!
//! SPIs are numbers or strings (`"0x1000"`, `"4096"`). Access: the socket
//! file is created mode 0600 and owned by whoever runs the node (root for
//! AF_PACKET and DPDK ports), so only that user can connect; put it in a
//! directory only that user can enter (`/run/espgate/`) and nobody else
//! can even see it.
//!
//! Anything else, or a request the node cannot carry out now, gets
//! `{"ok":false,"error":"<why>"}` and changes nothing.

use espgate_esp::Direction;
use serde::{Deserialize, Serialize};

use crate::hexkey::parse_u32;

/// A request on the control socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Health and pair state.
    Status {},
    /// Start the node from this configuration.
    Configure {
        /// Node YAML, as in a configuration file.
        yaml: String,
    },
    /// Take the peer's SAs over now.
    TakeOver {},
    /// Hand the peer's SAs back now.
    HandBack {},
    /// The peer is fenced: run without leases until it is heard again.
    Fence {},
    /// Hand every SA to the peer with its exact state, say goodbye, and
    /// stop.
    Drain {},
    /// The event lines since the last call.
    Events {},
    /// Every SA: owner, state, sequence numbers, lease end, counters,
    /// lifetime left.
    SaList {},
    /// Add SAs and rules.
    SaAdd {
        /// Node-file YAML with `sas` and `spd` (either may be absent).
        yaml: String,
        /// Where the rules go in the SPD (default: after the existing ones).
        #[serde(default)]
        position: Option<usize>,
        /// Whether SAs without a `home` get the node of the pair holding
        /// their local tunnel address (a pair's host sends an IKE daemon's
        /// SAs so), rather than this node.
        #[serde(default)]
        home_by_address: bool,
    },
    /// The SAs and rules the node runs, as node-file YAML with keys (for
    /// the host: a returning peer gets these, not its file's).
    SaExport {},
    /// Delete an SA and the rules naming it.
    SaDel {
        /// Its SPI.
        spi: SpiArg,
        /// Its direction.
        direction: DirectionArg,
    },
    /// Replace an SA by a new one, make-before-break.
    SaRekey {
        /// The old SA's SPI.
        spi: SpiArg,
        /// Its direction.
        direction: DirectionArg,
        /// The new SA, as an SA file writes it.
        yaml: String,
        /// How long the old SA lives on, in milliseconds.
        #[serde(default)]
        grace_ms: Option<u64>,
    },
    /// An inbound SPI for an SA to come: one the node draws, or `spi`
    /// reserved as if drawn (a pair's host draws on one node and reserves
    /// on the other).
    SpiAlloc {
        /// The SPI to reserve; none: the node draws one.
        #[serde(default)]
        spi: Option<SpiArg>,
    },
    /// One SA's counters.
    SaQuery {
        /// Its SPI.
        spi: SpiArg,
        /// Its direction.
        direction: DirectionArg,
    },
    /// Put rules into the SPD, replacing those with the same selectors.
    SpdPut {
        /// Node-file YAML with `spd`.
        yaml: String,
    },
    /// Delete the rules with these selectors.
    SpdDel {
        /// Node-file YAML with `spd`.
        yaml: String,
    },
    /// Turn this connection into a stream of events.
    Watch {},
    /// Per-worker counters.
    Stats {},
    /// The pair and its mirror link.
    Peer {},
    /// The Prometheus exposition (from the metrics listener, not the socket).
    #[serde(skip)]
    Metrics,
}

/// An SPI as a request writes it: a number, or a string in decimal or
/// `0x` hex.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SpiArg {
    /// `4096`.
    Number(u32),
    /// `"0x1000"` or `"4096"`.
    Text(String),
}

impl SpiArg {
    /// The SPI.
    pub fn value(&self) -> Result<u32, String> {
        match self {
            SpiArg::Number(n) => Ok(*n),
            SpiArg::Text(t) => parse_u32(t).ok_or_else(|| format!("{:?} is not an SPI", t.trim())),
        }
    }
}

/// A direction as a request or an answer writes it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DirectionArg {
    /// Outbound.
    Outbound,
    /// Inbound.
    Inbound,
}

impl From<Direction> for DirectionArg {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Outbound => DirectionArg::Outbound,
            Direction::Inbound => DirectionArg::Inbound,
        }
    }
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::Outbound => Direction::Outbound,
            DirectionArg::Inbound => Direction::Inbound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::from_str;

    fn parse(line: &str) -> Result<Request, String> {
        from_str(line).map_err(|e| e.to_string())
    }

    #[test]
    fn requests_parse_and_anything_else_is_refused_by_name() {
        assert!(matches!(parse(r#"{"op":"stats"}"#), Ok(Request::Stats {})));
        assert!(matches!(
            parse(r#"{"op":"sa_del","spi":"0x1000","direction":"inbound"}"#),
            Ok(Request::SaDel { spi, direction: DirectionArg::Inbound }) if spi.value() == Ok(0x1000)
        ));
        assert!(matches!(
            parse(r#"{"op":"spi_alloc"}"#),
            Ok(Request::SpiAlloc { spi: None })
        ));
        assert!(matches!(
            parse(r#"{"op":"spi_alloc","spi":3221225473}"#),
            Ok(Request::SpiAlloc { spi: Some(spi) }) if spi.value() == Ok(0xc000_0001)
        ));
        assert!(matches!(parse(r#"{"op":"watch"}"#), Ok(Request::Watch {})));
        assert!(matches!(
            parse(r#"{"op":"sa_query","spi":"0xc0000001","direction":"outbound"}"#),
            Ok(Request::SaQuery { spi, direction: DirectionArg::Outbound }) if spi.value() == Ok(0xc000_0001)
        ));
        assert!(matches!(
            parse(r#"{"op":"spd_del","yaml":"spd: []"}"#),
            Ok(Request::SpdDel { .. })
        ));
        assert!(matches!(
            parse(r#"{"op":"sa_rekey","spi":4096,"direction":"outbound","yaml":"x"}"#),
            Ok(Request::SaRekey { grace_ms: None, .. })
        ));
        for (line, names) in [
            (r#"{"op":"stats","now":1}"#, "now"),
            (r#"{"op":"status","x":true}"#, "x"),
            (r#"{"op":"sa_add"}"#, "yaml"),
            (r#"{"op":"metrics"}"#, "metrics"),
            (r#"{"op":"sa_del","spi":-1,"direction":"outbound"}"#, "spi"),
            (r#"[1,2]"#, "variant"),
        ] {
            let e = parse(line).map(|_| ()).expect_err(line);
            assert!(
                e.contains(names) || e.contains("did not match"),
                "{line}: {e}"
            );
        }
        assert_eq!(
            SpiArg::Text("0xzz".into()).value(),
            Err("\"0xzz\" is not an SPI".into())
        );
    }
}
