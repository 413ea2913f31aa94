//! The operator's commands on a running node, through its control socket:
//! `espgate sa list|add|del|rekey`, `espgate stats`, `espgate peer` and
//! `espgate top`. Each prints a table (or, with `--json`, the node's
//! answer as it is); a refused request prints the node's reason and fails.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::control_socket::ask;

/// The control socket a command talks to when `--control` is not given:
/// `$ESPGATE_CONTROL`, else this.
pub const DEFAULT_SOCKET: &str = "/run/espgate/control.sock";

/// The socket to use.
pub fn socket(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("ESPGATE_CONTROL").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Sends a request; a refusal becomes an error carrying the node's reason.
fn call(sock: &Path, request: Value) -> anyhow::Result<Value> {
    let v = ask(sock, &request)?;
    if v.get("ok") != Some(&Value::Bool(true)) {
        bail!(
            "{}",
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("the node refused without a reason")
        );
    }
    Ok(v)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// The sum of the numbers of an object (drops by reason).
fn total(v: &Value) -> u64 {
    v.as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// The peer's health in words.
fn health(m: &Value) -> (&'static str, &'static str) {
    (
        if m["peer_alive"] == true {
            "alive"
        } else {
            "dead"
        },
        if m["synced"] == true {
            "synced"
        } else {
            "not synced"
        },
    )
}

fn opt(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::Null) | None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

/// `espgate sa list`.
pub fn sa_list(sock: &Path, json_out: bool) -> anyhow::Result<()> {
    let v = call(sock, json!({ "op": "sa_list" }))?;
    if json_out {
        return print_json(&v);
    }
    println!(
        "{:<10} {:<8} {:>3} {:>4} {:>5} {:<8} {:>12} {:>12} {:>12} {:>14} {:>6} {:>14}",
        "spi",
        "dir",
        "wkr",
        "home",
        "owner",
        "state",
        "seq",
        "lease_end",
        "packets",
        "bytes",
        "drops",
        "life_left_pkts"
    );
    for s in v["sas"].as_array().into_iter().flatten() {
        let drops = total(&s["drops"]);
        println!(
            "{:<10} {:<8} {:>3} {:>4} {:>5} {:<8} {:>12} {:>12} {:>12} {:>14} {:>6} {:>14}",
            format!("{:#x}", u(s, "spi")),
            opt(s, "direction"),
            opt(s, "worker"),
            opt(s, "home"),
            opt(s, "owner"),
            opt(s, "state"),
            u(s, "seq"),
            opt(s, "lease_end"),
            u(s, "packets"),
            u(s, "bytes"),
            drops,
            opt(&s["lifetime_left"], "packets"),
        );
    }
    Ok(())
}

/// `espgate sa add --file F [--position N]`.
pub fn sa_add(sock: &Path, file: &Path, position: Option<usize>) -> anyhow::Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v = call(
        sock,
        json!({ "op": "sa_add", "yaml": yaml, "position": position }),
    )?;
    println!("added {} SAs and {} rules", u(&v, "sas"), u(&v, "rules"));
    Ok(())
}

/// `espgate sa del --spi S --direction D`.
pub fn sa_del(sock: &Path, spi: &str, direction: &str) -> anyhow::Result<()> {
    call(
        sock,
        json!({ "op": "sa_del", "spi": spi, "direction": direction }),
    )?;
    println!("deleted {direction} SA {spi}");
    Ok(())
}

/// `espgate sa rekey --spi S --direction D --file NEW [--grace-ms MS]`.
pub fn sa_rekey(
    sock: &Path,
    spi: &str,
    direction: &str,
    file: &Path,
    grace_ms: Option<u64>,
) -> anyhow::Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v = call(
        sock,
        json!({ "op": "sa_rekey", "spi": spi, "direction": direction, "yaml": yaml, "grace_ms": grace_ms }),
    )?;
    println!(
        "{direction} SA {spi} replaced by {:#x}; the old one goes in {} ms",
        u(&v, "new_spi"),
        u(&v, "grace_ms")
    );
    Ok(())
}

/// `espgate stats`.
pub fn stats(sock: &Path, json_out: bool) -> anyhow::Result<()> {
    let v = call(sock, json!({ "op": "stats" }))?;
    if json_out {
        return print_json(&v);
    }
    println!(
        "{:>6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}  {:>9} {:>9}",
        "worker",
        "rx",
        "tx",
        "encrypted",
        "decrypted",
        "bypassed",
        "drops",
        "burst_p50",
        "burst_p99"
    );
    for w in v["workers"].as_array().into_iter().flatten() {
        let drops = total(&w["drops"]);
        let q = &w["burst_ns"]["quantiles"];
        println!(
            "{:>6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}  {:>7}ns {:>7}ns",
            u(w, "worker"),
            u(w, "rx"),
            u(w, "tx"),
            u(w, "encrypted"),
            u(w, "decrypted"),
            u(w, "bypassed"),
            drops,
            u(q, "0.5"),
            u(q, "0.99"),
        );
    }
    let t = &v["total"];
    let reasons: Vec<String> = t["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    println!(
        "total: rx {} tx {} encrypted {} decrypted {} lease_stalls {}; drops: {}",
        u(t, "rx"),
        u(t, "tx"),
        u(t, "encrypted"),
        u(t, "decrypted"),
        u(t, "lease_stalls"),
        if reasons.is_empty() {
            "none".into()
        } else {
            reasons.join(" ")
        }
    );
    Ok(())
}

/// `espgate peer`.
pub fn peer(sock: &Path, json_out: bool) -> anyhow::Result<()> {
    let v = call(sock, json!({ "op": "peer" }))?;
    if json_out {
        return print_json(&v);
    }
    let m = &v["mirror"];
    if m.is_null() {
        println!("no pair: this node has no mirror link");
        return Ok(());
    }
    let (alive, synced) = health(m);
    println!(
        "node {} peer {}: {alive} and {synced}; holding {} of its SAs; {} standby copies; {} queued",
        opt(m, "node"),
        opt(m, "peer"),
        u(m, "holding"),
        u(m, "standby"),
        u(m, "queued"),
    );
    println!(
        "frames sent {} ({} bytes, {} states, {} acks), received {}, ignored records {}",
        u(m, "frames_sent"),
        u(m, "bytes_sent"),
        u(m, "states_sent"),
        u(m, "acks_sent"),
        u(m, "frames_received"),
        u(m, "records_ignored"),
    );
    let rejected: Vec<String> = m["rejected"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    println!("rejected: {}", rejected.join(" "));
    println!(
        "taken over {}, handed back {}, bulk syncs asked again {}",
        u(m, "taken_over"),
        u(m, "handed_back"),
        u(m, "bulks_incomplete"),
    );
    Ok(())
}

/// A progress bar `[#####     ]` for `done` of `total`.
fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64).round() as usize
    };
    format!("[{}{}]", "#".repeat(filled), " ".repeat(width - filled))
}

/// One frame of `top`: rates over the last `dt` from two samples.
fn top_frame(prev: &(Value, Value), now: &(Value, Value), dt: f64, sock: &Path) -> String {
    let mut out = String::new();
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / dt;
    let (stats0, sas0) = prev;
    let (stats1, sas1) = now;
    out.push_str(&format!(
        "espgate top: {}  (every {:.1} s; Ctrl-C quits)\n\n",
        sock.display(),
        dt
    ));
    out.push_str(&format!(
        "{:>6} {:>11} {:>11} {:>11} {:>11} {:>10}\n",
        "worker", "rx/s", "tx/s", "encrypt/s", "decrypt/s", "drops/s"
    ));
    let w0 = stats0["workers"].as_array().cloned().unwrap_or_default();
    for w in stats1["workers"].as_array().into_iter().flatten() {
        let id = u(w, "worker");
        let Some(p) = w0.iter().find(|p| u(p, "worker") == id) else {
            continue;
        };
        let drops = |v: &Value| total(&v["drops"]);
        out.push_str(&format!(
            "{:>6} {:>11.0} {:>11.0} {:>11.0} {:>11.0} {:>10.0}\n",
            id,
            rate(u(p, "rx"), u(w, "rx")),
            rate(u(p, "tx"), u(w, "tx")),
            rate(u(p, "encrypted"), u(w, "encrypted")),
            rate(u(p, "decrypted"), u(w, "decrypted")),
            rate(drops(p), drops(w)),
        ));
    }
    let before: HashMap<(u64, String), (u64, u64)> = sas0["sas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                (u(s, "spi"), opt(s, "direction")),
                (u(s, "packets"), u(s, "bytes")),
            )
        })
        .collect();
    let mut rows: Vec<(f64, String)> = sas1["sas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let (p0, b0) = before
                .get(&(u(s, "spi"), opt(s, "direction")))
                .copied()
                .unwrap_or((u(s, "packets"), u(s, "bytes")));
            let pps = rate(p0, u(s, "packets"));
            let line = format!(
                "{:<10} {:<8} {:<8} {:>11.0} {:>13.0} {:>14}\n",
                format!("{:#x}", u(s, "spi")),
                opt(s, "direction"),
                opt(s, "state"),
                pps,
                rate(b0, u(s, "bytes")) * 8.0,
                u(s, "seq"),
            );
            (pps, line)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.push_str(&format!(
        "\n{:<10} {:<8} {:<8} {:>11} {:>13} {:>14}\n",
        "spi", "dir", "state", "packets/s", "bits/s", "seq"
    ));
    for (_, line) in rows.iter().take(20) {
        out.push_str(line);
    }
    if rows.len() > 20 {
        out.push_str(&format!("... and {} more SAs\n", rows.len() - 20));
    }
    out
}

/// The pair line of `top`: a progress bar while the peer's bulk sync runs.
fn pair_line(sock: &Path, expected: u64) -> String {
    let Ok(v) = call(sock, json!({ "op": "peer" })) else {
        return String::new();
    };
    let m = &v["mirror"];
    if m.is_null() {
        return "\npair: none\n".into();
    }
    let standby = u(m, "standby");
    if m["peer_alive"] == true && m["synced"] != true {
        format!(
            "\nbulk sync from the peer {} {standby}/{expected} SA copies\n",
            bar(standby, expected, 30)
        )
    } else {
        let (alive, synced) = health(m);
        format!(
            "\npair: peer {alive}, {synced}, holding {}, standby {}, mirror frames sent {} received {}\n",
            u(m, "holding"),
            standby,
            u(m, "frames_sent"),
            u(m, "frames_received"),
        )
    }
}

/// `espgate top`: per-worker and per-SA rates, refreshed every `every`;
/// `count` frames then stop (forever if `None`).
pub fn top(sock: &Path, every: Duration, count: Option<u64>) -> anyhow::Result<()> {
    let sample = || -> anyhow::Result<(Value, Value)> {
        Ok((
            call(sock, json!({ "op": "stats" }))?,
            call(sock, json!({ "op": "sa_list" }))?,
        ))
    };
    // The peer's SAs: how many copies a complete bulk sync brings.
    let expected = {
        let me = call(sock, json!({ "op": "peer" }))?["mirror"]["node"].clone();
        let sas = sample()?.1;
        sas["sas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| !me.is_null() && s["home"] != me)
            .count() as u64
    };
    let tty = std::io::stdout().is_terminal();
    let mut prev = sample()?;
    let mut t0 = Instant::now();
    let mut frames = 0u64;
    let mut stdout = std::io::stdout();
    while count.is_none_or(|c| frames < c) {
        std::thread::sleep(every);
        let now = sample()?;
        let dt = t0.elapsed().as_secs_f64();
        t0 = Instant::now();
        let mut frame = top_frame(&prev, &now, dt, sock);
        frame.push_str(&pair_line(sock, expected));
        if tty {
            write!(stdout, "\x1b[2J\x1b[H{frame}")?;
        } else {
            writeln!(stdout, "{frame}")?;
        }
        stdout.flush()?;
        prev = now;
        frames += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(0, 10, 10), "[          ]");
        assert_eq!(bar(5, 10, 10), "[#####     ]");
        assert_eq!(bar(12, 10, 10), "[##########]");
        assert_eq!(bar(0, 0, 4), "[####]");
    }
}
