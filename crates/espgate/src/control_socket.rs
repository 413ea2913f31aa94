//! The node's control socket: a Unix stream socket (mode 0600: root, or
//! whoever runs the node, only) carrying one JSON object per line each way.
//! The host processor uses it to push the configuration (with the SA keys:
//! they never cross the mirror link), to watch health and to order
//! takeover, hand-back and fencing.
//!
//! | request | answer |
//! |---|---|
//! | `{"op":"status"}` | `{"ok":true,"node":..,"state":"running"\|"waiting_config","pair":{..}}` |
//! | `{"op":"configure","yaml":"<node YAML>"}` | `{"ok":true}`: the node starts |
//! | `{"op":"take_over"}`, `{"op":"hand_back"}`, `{"op":"fence"}` | `{"ok":true}` |
//! | `{"op":"events"}` | `{"ok":true,"events":["event t=.. ..", ..]}` (since the last call) |
//! | `{"op":"sa_list"}` | `{"ok":true,"sas":[{"spi":4096,"direction":"outbound","worker":0,"home":1,"owner":1,"state":"active"\|"standby"\|"retiring","seq":..,"lease_end":..,"packets":..,"bytes":..,"drops":{..},"lifetime_left":{..},..}]}` |
//! | `{"op":"sa_add","yaml":"sas: [..]\nspd: [..]","position":0}` | `{"ok":true,"sas":N,"rules":M}` (`position` optional: rules go last) |
//! | `{"op":"sa_del","spi":"0x1000","direction":"outbound"}` | `{"ok":true}`: the SA and the rules naming it are gone |
//! | `{"op":"sa_rekey","spi":"0x1000","direction":"outbound","yaml":"<SA file>","grace_ms":5000}` | `{"ok":true,"new_spi":..,"grace_ms":..}` |
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

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{Sender, channel};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::requests::{DirectionArg, SpiArg};

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
    },
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
    /// Per-worker counters.
    Stats {},
    /// The pair and its mirror link.
    Peer {},
    /// The Prometheus exposition (from the metrics listener, not the socket).
    #[serde(skip)]
    Metrics,
}

/// A request with the way back to its connection.
pub type Call = (Request, Sender<Value>);

/// An answer refusing a request.
pub fn refuse(why: impl std::fmt::Display) -> Value {
    json!({ "ok": false, "error": why.to_string() })
}

/// Listens on `path` (replacing a stale socket); requests go to `tx`, to
/// be answered by the node's main loop.
pub fn listen(path: &Path, tx: Sender<Call>) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let tx = tx.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || serve(conn, &tx));
            }
        })
        .context("control thread")?;
    Ok(())
}

fn serve(conn: UnixStream, calls: &Sender<Call>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Err(e) => refuse(format!("bad request: {e}")),
            Ok(req) => {
                let (back, answer) = channel();
                if calls.send((req, back)).is_err() {
                    return;
                }
                answer
                    .recv()
                    .unwrap_or_else(|_| refuse("the node is stopping"))
            }
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

/// Sends one request to a control socket and reads the answer.
pub fn ask(path: &Path, request: &Value) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(path).with_context(|| format!("connect {}", path.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    writeln!(s, "{request}")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    serde_json::from_str(&line).with_context(|| format!("answer {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    #[test]
    fn requests_parse_and_anything_else_is_refused_by_name() {
        assert!(matches!(parse(r#"{"op":"stats"}"#), Ok(Request::Stats {})));
        assert!(matches!(
            parse(r#"{"op":"sa_del","spi":"0x1000","direction":"inbound"}"#),
            Ok(Request::SaDel { spi, direction: DirectionArg::Inbound }) if spi.value() == Ok(0x1000)
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
