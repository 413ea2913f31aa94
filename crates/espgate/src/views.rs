//! What the control socket shows of a running node: its health
//! (`status`), its SAs (`sa_list`), its counters (`stats`) and its pair
//! (`peer`), as the bodies of `espgate_control::answer`. The CLI reads the
//! same types; the Prometheus exposition shows the same values.

use std::collections::HashMap;
use std::time::Duration;

use espgate_control::answer::{
    BurstNs, BurstQuantiles, ByReason, LifetimeLeft, PairHealth, PairView, Peer, QueueCounts,
    SaList, SaMirror, SaState, SaView, Stats, Status, Totals, TunnelAddrs, WorkerStats,
};
use espgate_dataplane::snapshot::{SaSnapshot, WorkerSnapshot};
use espgate_dataplane::{NodeDrop, PairStatus, RunningNode, WorkerCounters};
use espgate_esp::{Direction, DropCounters, DropReason, SaEvent};
use espgate_mirror::{PairSaView, Reject};

/// Drops by reason, every reason named (zeros included).
fn esp_drops(d: &DropCounters) -> ByReason {
    DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), d.get(*r)))
        .collect()
}

fn node_drops(c: &WorkerCounters) -> ByReason {
    NodeDrop::ALL
        .iter()
        .map(|r| (r.name().to_string(), c.drops(*r)))
        .collect()
}

fn worker(w: &WorkerSnapshot) -> WorkerStats {
    let c = &w.counters;
    let queues = w
        .queues
        .iter()
        .map(|(name, q)| {
            (
                name.clone(),
                QueueCounts {
                    rx_packets: q.rx_packets,
                    rx_bytes: q.rx_bytes,
                    tx_packets: q.tx_packets,
                    tx_bytes: q.tx_bytes,
                    tx_full: q.tx_full,
                    rx_too_long: q.rx_too_long,
                    rx_csum_completed: q.rx_csum_completed,
                },
            )
        })
        .collect();
    let h = &w.burst_ns;
    let [p50, p90, p99, p999] = BurstQuantiles::AT.map(|q| h.value_at_quantile(q));
    WorkerStats {
        worker: w.id,
        rx: c.rx,
        tx: c.tx,
        encrypted: c.encrypted,
        decrypted: c.decrypted,
        bypassed: c.bypassed,
        handoff_in: c.handoff_in,
        handoff_out: c.handoff_out,
        arp_replies: c.arp_replies,
        arp_requests: c.arp_requests,
        icmp_errors: c.icmp_errors,
        commands: c.commands,
        progress: c.progress,
        progress_full: c.progress_full,
        punted: c.punted,
        punt_sent: c.punt_sent,
        redirected: c.redirected,
        held: c.held,
        drops: node_drops(c),
        esp_drops_no_sa: esp_drops(&w.sad_drops),
        queues,
        burst_ns: BurstNs {
            count: h.len(),
            mean: h.mean(),
            max: h.max(),
            quantiles: BurstQuantiles {
                p50,
                p90,
                p99,
                p999,
            },
        },
    }
}

/// `stats`: per-worker counters and their totals, and the commands still
/// waiting in the workers' rings.
pub fn stats(workers: &[WorkerSnapshot], commands_pending: usize) -> Stats {
    let mut total = WorkerCounters::default();
    for w in workers {
        total.add(&w.counters);
    }
    let lease_stalls: u64 = workers
        .iter()
        .flat_map(|w| &w.sas)
        .map(|s| s.counters.drops.get(DropReason::LeaseStall))
        .sum();
    Stats {
        workers: workers.iter().map(worker).collect(),
        total: Totals {
            rx: total.rx,
            tx: total.tx,
            encrypted: total.encrypted,
            decrypted: total.decrypted,
            bypassed: total.bypassed,
            punted: total.punted,
            punt_sent: total.punt_sent,
            redirected: total.redirected,
            held: total.held,
            drops: node_drops(&total),
            lease_stalls,
            sa_events: SaEvent::ALL
                .iter()
                .map(|e| (e.name().to_string(), total.sa_events(*e)))
                .collect(),
            commands_pending,
        },
    }
}

/// What `sa_list` knows besides the workers' SAs.
struct Context<'a> {
    node: &'a RunningNode,
    retiring: HashMap<(u32, Direction), u64>,
    mirror: HashMap<(u32, Direction), PairSaView>,
}

/// One SA: where it runs, how far it went, what it carried, and (in a
/// pair) what the mirror holds for it.
fn sa(ctx: &Context, s: &SaSnapshot) -> SaView {
    let cfg = ctx.node.config();
    let entry = cfg
        .sas
        .iter()
        .find(|e| e.sa.spi == s.spi && e.sa.direction == s.direction);
    let (me, peer) = cfg.mirror.as_ref().map_or((None, None), |m| {
        (Some(m.protocol.node), Some(m.protocol.peer))
    });
    let retire_in_ms = ctx.retiring.get(&(s.spi, s.direction)).copied();
    let state = match retire_in_ms {
        Some(_) => SaState::Retiring,
        None if s.active => SaState::Active,
        None => SaState::Standby,
    };
    let mirrored = ctx.mirror.get(&(s.spi, s.direction));
    SaView {
        spi: s.spi,
        direction: s.direction.into(),
        worker: s.worker,
        home: entry.and_then(|e| e.home).or(me),
        owner: mirrored
            .map(|v| v.owner)
            .or(if s.active { me } else { peer }),
        mirror: mirrored.map(|v| SaMirror {
            generation: v.generation,
            stored: v.stored,
            acked: v.acked,
        }),
        state,
        retire_in_ms,
        aead: entry.map(|e| e.sa.algorithm.to_string()),
        tunnel: entry.map(|e| TunnelAddrs {
            src: e.sa.tunnel.src,
            dst: e.sa.tunnel.dst,
        }),
        esn: entry.map(|e| e.sa.esn),
        seq: s.seq,
        lease_end: s.limit.filter(|l| *l != u64::MAX),
        packets: s.counters.packets,
        bytes: s.counters.bytes,
        drops: s
            .counters
            .drops
            .nonzero()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect(),
        lifetime_left: LifetimeLeft {
            packets: s.packets_left(),
            bytes: s.bytes_left(),
            sequence: s.seq_left,
        },
    }
}

/// `sa_list`: every SA of the node, by SPI then direction; `mirror`:
/// the pair's view of them.
pub fn sa_list(node: &RunningNode, workers: &[WorkerSnapshot], mirror: Vec<PairSaView>) -> SaList {
    let ctx = Context {
        node,
        retiring: node
            .retiring()
            .map(|(spi, d, left)| ((spi, d), left.as_millis() as u64))
            .collect(),
        mirror: mirror.into_iter().map(|v| ((v.spi, v.dir), v)).collect(),
    };
    let mut all: Vec<&SaSnapshot> = workers.iter().flat_map(|w| &w.sas).collect();
    all.sort_by_key(|s| (s.spi, s.direction == Direction::Inbound));
    SaList {
        sas: all.iter().map(|s| sa(&ctx, s)).collect(),
    }
}

/// `status` of a running node, up for `uptime`: its name, and its pair's
/// health (`pair` null for a node on its own).
pub fn status(node: &RunningNode, uptime: Duration) -> Status {
    Status::Running {
        node: node.name().to_string(),
        uptime_ms: uptime.as_millis() as u64,
        pair: node.pair_status().map(|p| PairHealth {
            epoch: p.epoch,
            peer_alive: p.peer_alive,
            synced: p.synced,
            holding: p.holding,
            standby: p.standby,
            frames_sent: p.frames_sent,
            frames_received: p.frames_received,
            rejected: p.rejected,
            flow_failed: p.flow_failed,
        }),
    }
}

/// `peer`: the pair and its mirror link (`mirror` null for a node on
/// its own).
pub fn peer(node: &RunningNode) -> Peer {
    let ids = node
        .config()
        .mirror
        .as_ref()
        .map(|m| (m.protocol.node, m.protocol.peer));
    Peer {
        mirror: node.pair_status().map(|p| pair(&p, ids)),
    }
}

fn pair(p: &PairStatus, ids: Option<(u32, u32)>) -> PairView {
    let s = &p.stats;
    PairView {
        node: ids.map(|i| i.0),
        peer: ids.map(|i| i.1),
        peer_alive: p.peer_alive,
        synced: p.synced,
        holding: p.holding,
        standby: p.standby,
        queued: p.queued,
        frames_sent: s.frames_sent,
        bytes_sent: s.bytes_sent,
        states_sent: s.states_sent,
        acks_sent: s.acks_sent,
        frames_received: s.frames_received,
        records_ignored: s.records_ignored,
        taken_over: s.taken_over,
        handed_back: s.handed_back,
        bulks_incomplete: s.bulks_incomplete,
        stall_alarms: s.stall_alarms,
        orphan_alarms: s.orphan_alarms,
        reach_alarms: s.reach_alarms,
        rejected: Reject::ALL
            .iter()
            .map(|r| (r.name().to_string(), p.rejects.get(*r)))
            .collect(),
        flow_failed: p.flow_failed,
        peer_flow_failed: p.peer_flow_failed,
        workers_stalled: p.workers_stalled,
    }
}

#[cfg(test)]
mod tests {
    use espgate_control::answer::{Body, carried_out, read};
    use espgate_esp::Backend;

    use super::*;
    use crate::demo::rig::Rig;

    /// `body`, written as the node sends it, reads back equal.
    fn reads_back<T: Body + PartialEq + std::fmt::Debug>(op: &str, body: T) {
        let answer = carried_out(&body);
        let back = read::<T>(op, &answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(back, body, "{op}");
    }

    /// The answers of the demo's nodes (a pair, synchronised, and a node
    /// on its own) write and read back whole.
    #[test]
    fn a_running_nodes_answers_read_back_whole() {
        let rig = Rig::start(Backend::preferred()).unwrap();
        let a = rig.a.as_ref().unwrap();
        let t0 = std::time::Instant::now();
        while !a.pair_status().is_some_and(|p| p.synced) {
            assert!(t0.elapsed() < Duration::from_secs(10), "a never synced");
            std::thread::sleep(Duration::from_millis(10));
        }
        for node in [a, &rig.b, &rig.r] {
            let workers = node.snapshot().unwrap();
            let mirror = node.mirror_views().unwrap();
            reads_back("status", status(node, Duration::from_millis(1234)));
            reads_back("sa_list", sa_list(node, &workers, mirror));
            reads_back("stats", stats(&workers, node.commands_pending()));
            reads_back("peer", peer(node));
        }
        let Rig { a, b, r, .. } = rig;
        for node in [a.unwrap(), b, r] {
            node.stop();
        }
    }
}
