//! The Prometheus text exposition of a running node (format 0.0.4), and
//! the optional HTTP listener that serves it at `/metrics` (tiny_http: no
//! HTTP parsing of our own). A scrape asks the workers for a snapshot
//! through the node's main loop, like a control request.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{Sender, channel};

use anyhow::Context;
use espgate_control::answer::{BurstQuantiles, MetricsText, read};
use espgate_control::request::Request;
use espgate_dataplane::snapshot::WorkerSnapshot;
use espgate_dataplane::{NodeDrop, RunningNode};
use espgate_esp::{DropReason, SaEvent};
use espgate_mirror::Reject;

use crate::control_socket::Call;

/// A counter family read from a `T`: name, help, value.
type Family<T> = (&'static str, &'static str, fn(&T) -> u64);

/// A text exposition being written: one `# HELP`/`# TYPE` header per
/// family, then its samples.
struct Exposition(String);

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one sample per worker.
    fn per_worker(
        &mut self,
        name: &str,
        help: &str,
        workers: &[WorkerSnapshot],
        f: impl Fn(&WorkerSnapshot) -> u64,
    ) {
        self.family(name, "counter", help);
        for w in workers {
            self.sample(name, &[("worker", &w.id.to_string())], f(w));
        }
    }
}

/// The node's metrics now.
pub fn render(node: &RunningNode, workers: &[WorkerSnapshot]) -> String {
    let mut e = Exposition(String::new());
    let counters: [Family<WorkerSnapshot>; 11] = [
        (
            "espgate_rx_packets_total",
            "Frames received from the ports.",
            |w| w.counters.rx,
        ),
        (
            "espgate_tx_packets_total",
            "Frames sent to the ports.",
            |w| w.counters.tx,
        ),
        (
            "espgate_encrypted_packets_total",
            "Packets encrypted.",
            |w| w.counters.encrypted,
        ),
        (
            "espgate_decrypted_packets_total",
            "Packets decrypted and let in.",
            |w| w.counters.decrypted,
        ),
        (
            "espgate_bypassed_packets_total",
            "Packets passed as plaintext by a bypass rule.",
            |w| w.counters.bypassed,
        ),
        (
            "espgate_handoff_packets_total",
            "Frames handed to the worker owning their SA.",
            |w| w.counters.handoff_out,
        ),
        ("espgate_commands_total", "SA commands carried out.", |w| {
            w.counters.commands
        }),
        (
            "espgate_punted_packets_total",
            "Packets for the node itself handed to the kernel through the punt device.",
            |w| w.counters.punted,
        ),
        (
            "espgate_punt_sent_packets_total",
            "Packets the kernel sent through the punt device that went out of a port.",
            |w| w.counters.punt_sent,
        ),
        (
            "espgate_redirected_packets_total",
            "Frames for an SA parked here sent on to the peer, which runs it.",
            |w| w.counters.redirected,
        ),
        (
            "espgate_held_packets_total",
            "Frames the peer sent on, held until their SA started here.",
            |w| w.counters.held,
        ),
    ];
    for (name, help, f) in counters {
        e.per_worker(name, help, workers, f);
    }
    e.family(
        "espgate_drops_total",
        "counter",
        "Frames dropped by the node, by reason.",
    );
    for w in workers {
        let id = w.id.to_string();
        for r in NodeDrop::ALL {
            e.sample(
                "espgate_drops_total",
                &[("worker", &id), ("reason", r.name())],
                w.counters.drops(r),
            );
        }
    }
    e.family(
        "espgate_sa_events_total",
        "counter",
        "SA lifetimes crossed and sequence spaces running low or out (a rekey is due), by kind.",
    );
    for w in workers {
        let id = w.id.to_string();
        for k in SaEvent::ALL {
            e.sample(
                "espgate_sa_events_total",
                &[("worker", &id), ("event", k.name())],
                w.counters.sa_events(k),
            );
        }
    }
    e.family(
        "espgate_esp_drops_no_sa_total",
        "counter",
        "ESP frames dropped before reaching an SA (bad outer headers, unknown SPI), by reason.",
    );
    for w in workers {
        let id = w.id.to_string();
        for r in DropReason::ALL {
            e.sample(
                "espgate_esp_drops_no_sa_total",
                &[("worker", &id), ("reason", r.name())],
                w.sad_drops.get(r),
            );
        }
    }
    let port_counters: [Family<espgate_io::QueueStats>; 7] = [
        (
            "espgate_port_rx_packets_total",
            "Frames received, by worker and port.",
            |q| q.rx_packets,
        ),
        (
            "espgate_port_rx_bytes_total",
            "Bytes received, by worker and port.",
            |q| q.rx_bytes,
        ),
        (
            "espgate_port_tx_packets_total",
            "Frames sent, by worker and port.",
            |q| q.tx_packets,
        ),
        (
            "espgate_port_tx_bytes_total",
            "Bytes sent, by worker and port.",
            |q| q.tx_bytes,
        ),
        (
            "espgate_port_tx_full_total",
            "Frames the port's transmit ring refused.",
            |q| q.tx_full,
        ),
        (
            "espgate_port_rx_too_long_total",
            "Frames received too long for a buffer (segments the kernel merged), dropped.",
            |q| q.rx_too_long,
        ),
        (
            "espgate_port_rx_csum_completed_total",
            "Frames whose TCP or UDP checksum the kernel left for a device to fill in, completed by the port.",
            |q| q.rx_csum_completed,
        ),
    ];
    for (name, help, f) in port_counters {
        e.family(name, "counter", help);
        for w in workers {
            let id = w.id.to_string();
            for (port, q) in &w.queues {
                e.sample(name, &[("worker", &id), ("port", port)], f(q));
            }
        }
    }
    e.family(
        "espgate_burst_seconds",
        "summary",
        "Time to process one received burst (one burst in eight is timed).",
    );
    for w in workers {
        let id = w.id.to_string();
        let h = &w.burst_ns;
        for q in BurstQuantiles::AT {
            let v = h.value_at_quantile(q) as f64 / 1e9;
            e.sample(
                "espgate_burst_seconds",
                &[("worker", &id), ("quantile", &q.to_string())],
                v,
            );
        }
        e.sample(
            "espgate_burst_seconds_sum",
            &[("worker", &id)],
            h.mean() * h.len() as f64 / 1e9,
        );
        e.sample("espgate_burst_seconds_count", &[("worker", &id)], h.len());
    }
    sas(&mut e, workers);
    mirror(&mut e, node);
    e.0
}

/// Per-SA families, labelled by SPI (hex) and direction.
fn sas(e: &mut Exposition, workers: &[WorkerSnapshot]) {
    let all: Vec<_> = workers.iter().flat_map(|w| &w.sas).collect();
    let label = |s: &espgate_dataplane::snapshot::SaSnapshot| {
        (format!("{:#x}", s.spi), s.direction.to_string())
    };
    for (name, help, bytes) in [
        (
            "espgate_sa_packets_total",
            "Packets an SA processed.",
            false,
        ),
        (
            "espgate_sa_bytes_total",
            "Inner bytes an SA processed.",
            true,
        ),
    ] {
        e.family(name, "counter", help);
        for s in &all {
            let (spi, dir) = label(s);
            let v = if bytes {
                s.counters.bytes
            } else {
                s.counters.packets
            };
            e.sample(name, &[("spi", &spi), ("direction", &dir)], v);
        }
    }
    e.family(
        "espgate_sa_drops_total",
        "counter",
        "Packets an SA dropped, by reason.",
    );
    for s in &all {
        let (spi, dir) = label(s);
        for r in DropReason::ALL {
            e.sample(
                "espgate_sa_drops_total",
                &[("spi", &spi), ("direction", &dir), ("reason", r.name())],
                s.counters.drops.get(r),
            );
        }
    }
    e.family(
        "espgate_sa_sequence",
        "gauge",
        "Outbound: the last sequence number used; inbound: the replay window's top.",
    );
    for s in &all {
        let (spi, dir) = label(s);
        e.sample(
            "espgate_sa_sequence",
            &[("spi", &spi), ("direction", &dir)],
            s.seq,
        );
    }
    e.family(
        "espgate_sa_active",
        "gauge",
        "1 if the SA runs on this node, 0 on standby.",
    );
    for s in &all {
        let (spi, dir) = label(s);
        e.sample(
            "espgate_sa_active",
            &[("spi", &spi), ("direction", &dir)],
            u8::from(s.active),
        );
    }
    let stalls: u64 = all
        .iter()
        .map(|s| s.counters.drops.get(DropReason::LeaseStall))
        .sum();
    e.family(
        "espgate_lease_stalls_total",
        "counter",
        "Outbound packets held back because the peer had not acknowledged the SA's lease.",
    );
    e.sample("espgate_lease_stalls_total", &[], stalls);
}

/// The pair's families (none for a node on its own).
fn mirror(e: &mut Exposition, node: &RunningNode) {
    let Some(p) = node.pair_status() else { return };
    let s = p.stats;
    let counters = [
        (
            "espgate_mirror_frames_sent_total",
            "Mirror frames sent.",
            s.frames_sent,
        ),
        (
            "espgate_mirror_bytes_sent_total",
            "Bytes of mirror frames sent.",
            s.bytes_sent,
        ),
        (
            "espgate_mirror_frames_received_total",
            "Mirror frames accepted.",
            s.frames_received,
        ),
        (
            "espgate_mirror_states_sent_total",
            "SA state records sent.",
            s.states_sent,
        ),
        (
            "espgate_mirror_acks_sent_total",
            "Lease acknowledgements sent.",
            s.acks_sent,
        ),
        (
            "espgate_mirror_records_ignored_total",
            "Records about unknown SAs or of unknown types.",
            s.records_ignored,
        ),
        (
            "espgate_takeovers_total",
            "SAs taken over from the peer.",
            s.taken_over,
        ),
        (
            "espgate_handbacks_total",
            "SAs handed back to the peer.",
            s.handed_back,
        ),
        (
            "espgate_mirror_bulks_incomplete_total",
            "Bulk syncs received with frames lost, asked for again.",
            s.bulks_incomplete,
        ),
        (
            "espgate_mirror_stall_alarms_total",
            "SAs that waited at their limit for a second (sa_stalled events).",
            s.stall_alarms,
        ),
        (
            "espgate_mirror_orphan_alarms_total",
            "Times the dead peer's SAs were run by nobody for a second (orphaned events).",
            s.orphan_alarms,
        ),
        (
            "espgate_mirror_reach_alarms_total",
            "ESN SAs held for starting beyond their far end's reach (beyond_reach events).",
            s.reach_alarms,
        ),
    ];
    for (name, help, v) in counters {
        e.family(name, "counter", help);
        e.sample(name, &[], v);
    }
    e.family(
        "espgate_mirror_frames_rejected_total",
        "counter",
        "Mirror frames refused, by reason.",
    );
    for r in Reject::ALL {
        e.sample(
            "espgate_mirror_frames_rejected_total",
            &[("reason", r.name())],
            p.rejects.get(r),
        );
    }
    let gauges = [
        (
            "espgate_mirror_peer_alive",
            "1 while the peer is heard.",
            u64::from(p.peer_alive),
        ),
        (
            "espgate_mirror_synced",
            "1 once the peer's bulk sync completed.",
            u64::from(p.synced),
        ),
        (
            "espgate_flow_failed",
            "1 while this node's packet flow has failed (a link or tracked next hop down, a worker stalled): its SAs go to the peer.",
            u64::from(p.flow_failed),
        ),
        (
            "espgate_mirror_peer_flow_failed",
            "1 while the peer's packet flow has failed.",
            u64::from(p.peer_flow_failed),
        ),
        (
            "espgate_workers_stalled",
            "Workers whose loop has stood still for worker_stall_ms.",
            p.workers_stalled as u64,
        ),
        (
            "espgate_mirror_standby_sas",
            "Peer SAs in the standby table.",
            p.standby as u64,
        ),
        (
            "espgate_mirror_holding_sas",
            "SAs whose home is the peer that this node runs.",
            p.holding as u64,
        ),
        (
            "espgate_mirror_queued",
            "Items waiting to be sent on the mirror link.",
            p.queued as u64,
        ),
    ];
    for (name, help, v) in gauges {
        e.family(name, "gauge", help);
        e.sample(name, &[], v);
    }
}

/// Serves `/metrics` on `addr` from a thread; each scrape goes to the
/// node's main loop through `calls`.
pub fn serve(addr: SocketAddr, calls: Sender<Call>) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("metrics listener on {addr}: {e}"))?;
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let (code, body) = if req.url() == "/metrics" {
                    scrape(&calls)
                } else {
                    (404, "not found: the metrics are at /metrics\n".to_string())
                };
                let header = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4; charset=utf-8"[..],
                )
                .expect("a valid header");
                let _ = req.respond(
                    tiny_http::Response::from_string(body)
                        .with_status_code(code)
                        .with_header(header),
                );
            }
        })
        .context("metrics thread")?;
    Ok(())
}

/// One scrape through the main loop: the exposition, or 503 and why.
fn scrape(calls: &Sender<Call>) -> (u16, String) {
    let (back, answer) = channel();
    if calls.send((Request::Metrics, back)).is_err() {
        return (503, "the node is stopping\n".into());
    }
    match answer.recv() {
        Ok(v) => match read::<MetricsText>("metrics", &v) {
            Ok(m) => (200, m.text),
            Err(e) => (503, format!("{e}\n")),
        },
        Err(_) => (503, "the node is stopping\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_samples_written_whole() {
        let mut e = Exposition(String::new());
        e.family("x_total", "counter", "An x.");
        e.sample(
            "x_total",
            &[("port", "we\"ird\\na\nme"), ("worker", "0")],
            7,
        );
        e.sample("y", &[], 1.5);
        assert_eq!(
            e.0,
            "# HELP x_total An x.\n# TYPE x_total counter\n\
             x_total{port=\"we\\\"ird\\\\na\\nme\",worker=\"0\"} 7\ny 1.5\n"
        );
    }
}
