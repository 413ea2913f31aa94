//! The operator's commands on a running node, through its control socket:
//! `espgate sa list|add|del|rekey`, `espgate stats`, `espgate peer` and
//! `espgate top`. Each prints a table (or, with `--json`, the node's
//! answer as it is); a refused request prints the node's reason and fails,
//! and so does an answer that does not read as the request's
//! (`espgate_control::answer`), naming the request and the field.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use espgate_control::answer::{
    Body, ByReason, Done, Drained, PairView, Peer, SaAdded, SaList, SaRekeyed, Stats, WorkerStats,
    read,
};
use espgate_control::request::DirectionArg;
use espgate_esp::Direction;
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

/// Sends a request; returns its answer read as `T`, and as it came. A
/// refusal is an error carrying the node's reason; an answer that does
/// not read as `T` is an error naming the request and the field.
fn call<T: Body>(sock: &Path, request: Value) -> anyhow::Result<(T, Value)> {
    let op = request["op"].as_str().context("a request names its op")?;
    let answer = ask(sock, &request)?;
    Ok((read(op, &answer)?, answer))
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)
}

/// The sum of counts by reason.
fn total(by_reason: &ByReason) -> u64 {
    by_reason.values().sum()
}

/// A value that may be absent, `-` when it is.
fn dash(v: Option<impl Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The peer's health in words.
fn health(m: &PairView) -> (&'static str, &'static str) {
    (
        if m.peer_alive { "alive" } else { "dead" },
        if m.synced { "synced" } else { "not synced" },
    )
}

fn direction(d: DirectionArg) -> String {
    Direction::from(d).to_string()
}

/// `espgate sa list`.
pub fn sa_list(sock: &Path, json_out: bool) -> anyhow::Result<()> {
    let (list, raw) = call::<SaList>(sock, json!({ "op": "sa_list" }))?;
    if json_out {
        return print_json(&raw);
    }
    out!("{}", sa_table(&list))
}

/// The table of `espgate sa list`, one line per SA; its drops come last,
/// with their reasons.
fn sa_table(list: &SaList) -> String {
    let mut table = format!(
        "{:<10} {:<8} {:>3} {:>4} {:>5} {:<8} {:>12} {:>12} {:>12} {:>14} {:>14} {:>20} drops\n",
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
        "life_left_pkts",
        "seq_left",
    );
    for s in &list.sas {
        table.push_str(&format!(
            "{:<10} {:<8} {:>3} {:>4} {:>5} {:<8} {:>12} {:>12} {:>12} {:>14} {:>14} {:>20} {}\n",
            format!("{:#x}", s.spi),
            direction(s.direction),
            s.worker,
            dash(s.home),
            dash(s.owner),
            s.state,
            s.seq,
            dash(s.lease_end),
            s.packets,
            s.bytes,
            dash(s.lifetime_left.packets),
            dash(s.lifetime_left.sequence),
            drops_with_reasons(&s.drops),
        ));
    }
    table
}

/// A drop total and, when there are any, its reasons, most first:
/// `12 (replayed 10, auth_failed 2)`.
fn drops_with_reasons(by_reason: &ByReason) -> String {
    let mut reasons: Vec<(&String, &u64)> = by_reason.iter().filter(|(_, n)| **n > 0).collect();
    if reasons.is_empty() {
        return "0".into();
    }
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("{} ({})", total(by_reason), listed.join(", "))
}

/// `espgate sa add --file F [--position N]`.
pub fn sa_add(sock: &Path, file: &Path, position: Option<usize>) -> anyhow::Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (added, _) = call::<SaAdded>(
        sock,
        json!({ "op": "sa_add", "yaml": yaml, "position": position }),
    )?;
    outln!("added {} SAs and {} rules", added.sas, added.rules)?;
    Ok(())
}

/// `espgate sa del --spi S --direction D`.
pub fn sa_del(sock: &Path, spi: &str, direction: &str) -> anyhow::Result<()> {
    call::<Done>(
        sock,
        json!({ "op": "sa_del", "spi": spi, "direction": direction }),
    )?;
    outln!("deleted {direction} SA {spi}")?;
    Ok(())
}

/// `espgate drain`.
pub fn drain(sock: &Path) -> anyhow::Result<()> {
    let (d, _) = call::<Drained>(sock, json!({ "op": "drain" }))?;
    println!(
        "drained: {} SAs run on the peer from their exact state; the node stops",
        d.sas
    );
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
    let (rekeyed, _) = call::<SaRekeyed>(
        sock,
        json!({ "op": "sa_rekey", "spi": spi, "direction": direction, "yaml": yaml, "grace_ms": grace_ms }),
    )?;
    outln!(
        "{direction} SA {spi} replaced by {:#x}; the old one goes in {} ms",
        rekeyed.new_spi,
        rekeyed.grace_ms
    )?;
    Ok(())
}

/// `espgate stats`.
pub fn stats(sock: &Path, json_out: bool) -> anyhow::Result<()> {
    let (stats, raw) = call::<Stats>(sock, json!({ "op": "stats" }))?;
    if json_out {
        return print_json(&raw);
    }
    outln!(
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
    )?;
    for w in &stats.workers {
        let q = &w.burst_ns.quantiles;
        outln!(
            "{:>6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}  {:>7}ns {:>7}ns",
            w.worker,
            w.rx,
            w.tx,
            w.encrypted,
            w.decrypted,
            w.bypassed,
            total(&w.drops),
            q.p50,
            q.p99,
        )?;
    }
    let t = &stats.total;
    let reasons: Vec<String> = t
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let events: Vec<String> = t
        .sa_events
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let listed = |v: Vec<String>| {
        if v.is_empty() {
            "none".into()
        } else {
            v.join(" ")
        }
    };
    outln!(
        "total: rx {} tx {} encrypted {} decrypted {} lease_stalls {} punted {} punt_sent {} redirected {} held {}; drops: {}; sa events: {}",
        t.rx,
        t.tx,
        t.encrypted,
        t.decrypted,
        t.lease_stalls,
        t.punted,
        t.punt_sent,
        t.redirected,
        t.held,
        listed(reasons),
        listed(events)
    )?;
    Ok(())
}

/// `espgate peer`.
pub fn peer(sock: &Path, json_out: bool) -> anyhow::Result<()> {
    let (peer, raw) = call::<Peer>(sock, json!({ "op": "peer" }))?;
    if json_out {
        return print_json(&raw);
    }
    let Some(m) = &peer.mirror else {
        outln!("no pair: this node has no mirror link")?;
        return Ok(());
    };
    let (alive, synced) = health(m);
    outln!(
        "node {} peer {}: {alive} and {synced}; holding {} of its SAs; {} standby copies; {} queued",
        dash(m.node),
        dash(m.peer),
        m.holding,
        m.standby,
        m.queued,
    )?;
    outln!(
        "frames sent {} ({} bytes, {} states, {} acks), received {}, ignored records {}",
        m.frames_sent,
        m.bytes_sent,
        m.states_sent,
        m.acks_sent,
        m.frames_received,
        m.records_ignored,
    )?;
    let rejected: Vec<String> = m.rejected.iter().map(|(k, n)| format!("{k}={n}")).collect();
    outln!("rejected: {}", rejected.join(" "))?;
    outln!(
        "taken over {}, handed back {}, bulk syncs asked again {}",
        m.taken_over,
        m.handed_back,
        m.bulks_incomplete,
    )?;
    outln!(
        "alarms: SAs stalled a second {}, dead peer's SAs run by nobody {}, \
         ESN SAs held beyond reach {}",
        m.stall_alarms,
        m.orphan_alarms,
        m.reach_alarms,
    )?;
    outln!(
        "packet flow: this node's {}{}, the peer's {}",
        if m.flow_failed { "failed" } else { "works" },
        match m.workers_stalled {
            0 => String::new(),
            n => format!(" ({n} workers stalled)"),
        },
        if m.peer_flow_failed {
            "failed"
        } else {
            "works"
        },
    )?;
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

/// One sample of `top`: the counters and the SAs.
type Sample = (Stats, SaList);

/// One frame of `top`: rates over the last `dt` from two samples.
fn top_frame(prev: &Sample, now: &Sample, dt: f64, sock: &Path) -> String {
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
    for w in &stats1.workers {
        let Some(p) = stats0.workers.iter().find(|p| p.worker == w.worker) else {
            continue;
        };
        let drops = |v: &WorkerStats| total(&v.drops);
        out.push_str(&format!(
            "{:>6} {:>11.0} {:>11.0} {:>11.0} {:>11.0} {:>10.0}\n",
            w.worker,
            rate(p.rx, w.rx),
            rate(p.tx, w.tx),
            rate(p.encrypted, w.encrypted),
            rate(p.decrypted, w.decrypted),
            rate(drops(p), drops(w)),
        ));
    }
    let before: HashMap<(u32, DirectionArg), (u64, u64)> = sas0
        .sas
        .iter()
        .map(|s| ((s.spi, s.direction), (s.packets, s.bytes)))
        .collect();
    let mut rows: Vec<(f64, String)> = sas1
        .sas
        .iter()
        .map(|s| {
            let (p0, b0) = before
                .get(&(s.spi, s.direction))
                .copied()
                .unwrap_or((s.packets, s.bytes));
            let pps = rate(p0, s.packets);
            let line = format!(
                "{:<10} {:<8} {:<8} {:>11.0} {:>13.0} {:>14}\n",
                format!("{:#x}", s.spi),
                direction(s.direction),
                s.state,
                pps,
                rate(b0, s.bytes) * 8.0,
                s.seq,
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
fn pair_line(sock: &Path, expected: u64) -> anyhow::Result<String> {
    let (peer, _) = call::<Peer>(sock, json!({ "op": "peer" }))?;
    let Some(m) = &peer.mirror else {
        return Ok("\npair: none\n".into());
    };
    let standby = m.standby as u64;
    Ok(if m.peer_alive && !m.synced {
        format!(
            "\nbulk sync from the peer {} {standby}/{expected} SA copies\n",
            bar(standby, expected, 30)
        )
    } else {
        let (alive, synced) = health(m);
        format!(
            "\npair: peer {alive}, {synced}, holding {}, standby {}, mirror frames sent {} received {}\n",
            m.holding, standby, m.frames_sent, m.frames_received,
        )
    })
}

/// `espgate top`: per-worker and per-SA rates, refreshed every `every`;
/// `count` frames then stop (forever if `None`).
pub fn top(sock: &Path, every: Duration, count: Option<u64>) -> anyhow::Result<()> {
    let sample = || -> anyhow::Result<Sample> {
        Ok((
            call::<Stats>(sock, json!({ "op": "stats" }))?.0,
            call::<SaList>(sock, json!({ "op": "sa_list" }))?.0,
        ))
    };
    // The peer's SAs: how many copies a complete bulk sync brings.
    let expected = {
        let (peer, _) = call::<Peer>(sock, json!({ "op": "peer" }))?;
        let me = peer.mirror.and_then(|m| m.node);
        let (_, sas) = sample()?;
        sas.sas
            .iter()
            .filter(|s| me.is_some_and(|me| s.home != Some(me)))
            .count() as u64
    };
    let tty = std::io::stdout().is_terminal();
    let mut prev = sample()?;
    let mut t0 = Instant::now();
    let mut frames = 0u64;
    while count.is_none_or(|c| frames < c) {
        std::thread::sleep(every);
        let now = sample()?;
        let dt = t0.elapsed().as_secs_f64();
        t0 = Instant::now();
        let mut frame = top_frame(&prev, &now, dt, sock);
        frame.push_str(&pair_line(sock, expected)?);
        if tty {
            out!("\x1b[2J\x1b[H{frame}")?;
        } else {
            outln!("{frame}")?;
        }
        prev = now;
        frames += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use espgate_control::answer::{LifetimeLeft, SaView};

    use super::*;
    use crate::control_socket::{ControlSocket, listen};

    /// A node on a socket in `dir` that answers every request with
    /// `answer`.
    fn node_answering(dir: &Path, answer: Value) -> (PathBuf, ControlSocket) {
        let path = dir.join("c.sock");
        let (tx, calls) = channel::<crate::control_socket::Call>();
        let socket = listen(&path, tx).unwrap();
        std::thread::spawn(move || {
            for (_, back) in calls {
                let _ = back.send(answer.clone());
            }
        });
        (path, socket)
    }

    /// A node whose answers renamed a field (another version) makes the
    /// command fail naming the request and the field; it used to print 0.
    #[test]
    fn an_answer_with_a_field_renamed_fails_the_command_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("add.yaml");
        std::fs::write(&file, "sas: []\n").unwrap();
        let (sock, _node) =
            node_answering(tmp.path(), json!({ "ok": true, "sas": 1, "rule_count": 2 }));
        let e = sa_add(&sock, &file, None).expect_err("read rules as 0");
        assert_eq!(
            format!("{e:#}"),
            "cannot read the node's answer to sa_add: missing field `rules`"
        );
        let tmp = tempfile::tempdir().unwrap();
        let (sock, _node) = node_answering(tmp.path(), json!({ "ok": true, "pair": null }));
        let e = peer(&sock, false).expect_err("read no mirror as no pair");
        assert_eq!(
            format!("{e:#}"),
            "cannot read the node's answer to peer: missing field `mirror`"
        );
    }

    #[test]
    fn a_refusal_fails_the_command_with_the_nodes_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let (sock, _node) = node_answering(
            tmp.path(),
            json!({ "ok": false, "error": "no outbound SA 0x9999" }),
        );
        let e = sa_del(&sock, "0x9999", "outbound").expect_err("refused");
        assert_eq!(format!("{e:#}"), "no outbound SA 0x9999");
    }

    /// The table shows why an SA dropped packets, not only how many: the
    /// reasons were in `--json` alone.
    #[test]
    fn sa_list_shows_each_sas_drops_by_reason() {
        let sa = |spi: u32, drops: &[(&str, u64)]| SaView {
            spi,
            direction: DirectionArg::Inbound,
            worker: 0,
            home: None,
            owner: None,
            mirror: None,
            state: espgate_control::answer::SaState::Active,
            retire_in_ms: None,
            aead: None,
            tunnel: None,
            esn: None,
            seq: 40,
            lease_end: None,
            packets: 30,
            bytes: 3000,
            drops: drops.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            lifetime_left: LifetimeLeft {
                packets: None,
                bytes: None,
                sequence: None,
            },
        };
        let table = sa_table(&SaList {
            sas: vec![
                sa(
                    0x1000,
                    &[("auth_failed", 2), ("replayed", 10), ("too_old", 0)],
                ),
                sa(0x1001, &[("replayed", 0)]),
            ],
        });
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].ends_with(" drops"), "{table}");
        assert!(lines[1].starts_with("0x1000 "), "{table}");
        assert!(
            lines[1].ends_with(" 12 (replayed 10, auth_failed 2)"),
            "{table}"
        );
        assert!(lines[2].ends_with(" 0"), "{table}");
    }

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(0, 10, 10), "[          ]");
        assert_eq!(bar(5, 10, 10), "[#####     ]");
        assert_eq!(bar(12, 10, 10), "[##########]");
        assert_eq!(bar(0, 0, 4), "[####]");
    }
}
