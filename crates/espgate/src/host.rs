//! `espgate host --config host.yaml`: the host processor of a pair. It
//! pushes each node its configuration (SA keys included: keys reach the
//! nodes only this way, never over the mirror link), polls both nodes'
//! health on their control sockets, and when one fails it reroutes that
//! node's flows (its `on_failure` commands), orders the survivor to take
//! the failed node's SAs over, and fences the failed node so the survivor
//! runs without leases. When the failed node is back and synchronised, the
//! host hands the SAs back and runs `on_return`.
//!
//! In the test topology rerouting is a route change on the plaintext
//! side. A real deployment moves the flows the way its network does:
//! VRRP/keepalived moving a virtual address, an ECMP next hop removed, a
//! BGP route withdrawn, or a switch port shut; the host's commands call
//! whatever does that.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use espgate_control::{HostConfig, ManagedNode};
use espgate_dataplane::mirror_task::unix_ms;
use serde_json::{Value, json};

use crate::control_socket::ask;

/// What the host knows of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Not heard yet.
    Unknown,
    /// Answering.
    Up,
    /// Declared failed; flows rerouted.
    Failed,
}

struct Watched {
    node: ManagedNode,
    health: Health,
    missed: u32,
}

fn say(what: &str) {
    println!("host t={} {what}", unix_ms());
}

fn run_commands(cmds: &[Vec<String>]) {
    for c in cmds {
        let r = Command::new(&c[0]).args(&c[1..]).status();
        match r {
            Ok(s) if s.success() => say(&format!("ran {}", c.join(" "))),
            Ok(s) => say(&format!("command {} failed: {s}", c.join(" "))),
            Err(e) => say(&format!("command {} failed: {e}", c.join(" "))),
        }
    }
}

fn order(node: &ManagedNode, op: &str) {
    match ask(&node.control, &json!({ "op": op })) {
        Ok(a) if a["ok"] == Value::Bool(true) => say(&format!("{} {op}: ok", node.name)),
        Ok(a) => say(&format!("{} {op}: refused: {}", node.name, a["error"])),
        Err(e) => say(&format!("{} {op}: {e:#}", node.name)),
    }
}

/// One poll of one node: configure it if it waits; returns its status.
fn poll(w: &mut Watched) -> Option<Value> {
    let status = ask(&w.node.control, &json!({ "op": "status" })).ok()?;
    if status["state"] == "waiting_config" {
        let a = ask(
            &w.node.control,
            &json!({ "op": "configure", "yaml": w.node.config }),
        )
        .ok()?;
        if a["ok"] != Value::Bool(true) {
            say(&format!(
                "{} refused its configuration: {}",
                w.node.name, a["error"]
            ));
            return None;
        }
        say(&format!("{} configured", w.node.name));
    }
    Some(status)
}

/// Runs the host until SIGINT or SIGTERM (or `duration`).
pub fn run(path: &Path, duration: Option<Duration>) -> anyhow::Result<()> {
    let cfg: HostConfig = espgate_control::load_host_file(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let mut nodes: Vec<Watched> = cfg
        .nodes
        .iter()
        .map(|n| Watched {
            node: n.clone(),
            health: Health::Unknown,
            missed: 0,
        })
        .collect();
    say(&format!(
        "managing {} and {}, polling every {} ms",
        nodes[0].node.name, nodes[1].node.name, cfg.poll_ms
    ));
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        for i in 0..nodes.len() {
            let status = poll(&mut nodes[i]);
            let other = 1 - i;
            let w = &mut nodes[i];
            match status {
                Some(s) => {
                    w.missed = 0;
                    let synced = s["pair"]["synced"] == Value::Bool(true);
                    match w.health {
                        Health::Unknown => {
                            w.health = Health::Up;
                            say(&format!("{} up", w.node.name));
                        }
                        Health::Failed if synced => {
                            w.health = Health::Up;
                            say(&format!("{} back and synchronised", w.node.name));
                            let back = w.node.on_return.clone();
                            let survivor = nodes[other].node.clone();
                            order(&survivor, "hand_back");
                            run_commands(&back);
                        }
                        _ => {}
                    }
                }
                None => {
                    w.missed += 1;
                    if w.health == Health::Up && w.missed >= cfg.dead_after {
                        w.health = Health::Failed;
                        say(&format!(
                            "{} failed ({} polls unanswered)",
                            w.node.name, w.missed
                        ));
                        let cmds = w.node.on_failure.clone();
                        let survivor = nodes[other].node.clone();
                        run_commands(&cmds);
                        order(&survivor, "take_over");
                        order(&survivor, "fence");
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(cfg.poll_ms));
    }
    Ok(())
}
