//! A node's packet flow: its data ports' links and its tracked next hops,
//! watched so that a node whose flow failed hands the SAs it runs to its
//! peer and takes them back once it works again (interface tracking, as
//! VRRP and FortiGate's link monitor do it), with hysteresis both ways: a
//! link down for `down_ms` fails the flow, every link up for `up_ms`
//! restores it. A tracked next hop is a link that is down while it
//! answers none of the ARP probes worker 0 sends it (see [`NextHop`]).

use std::net::IpAddr;
use std::sync::Arc;

use espgate_io::link::LinkProbe;

use crate::worker::Shared;

/// When a link's state counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkWatch {
    /// A link down this long fails the flow (0: links are not watched).
    pub down_ms: u64,
    /// Every link up this long after a failure restores it.
    pub up_ms: u64,
}

impl LinkWatch {
    /// How often a tracked next hop is probed, and the links are read:
    /// four times in `down_ms` (every 5 ms at most), so a failure is told
    /// at most a quarter of `down_ms` late.
    pub fn probe_ms(&self) -> u64 {
        (self.down_ms / 4).max(5)
    }

    /// How long a tracked next hop may stay unheard and count as up: two
    /// probes (half of `down_ms`), so one lost answer changes nothing.
    pub fn silent_ms(&self) -> u64 {
        2 * self.probe_ms()
    }
}

impl Default for LinkWatch {
    fn default() -> Self {
        LinkWatch {
            down_ms: 300,
            up_ms: 3000,
        }
    }
}

/// A change of the flow's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowChange {
    /// The flow failed: `port`'s link, or its tracked `next_hop`, has
    /// been down for `down_ms`.
    Failed {
        /// The port whose link is down, or where the silent next hop is.
        port: String,
        /// The silent next hop (none: the port's own link is down).
        next_hop: Option<IpAddr>,
    },
    /// Every link has been up for `up_ms`: the flow works again.
    Works,
}

/// The data ports' links and the flow's state.
pub struct FlowWatch {
    probes: Vec<Box<dyn LinkProbe>>,
    watch: LinkWatch,
    /// The port whose link failed the flow, while it is failed.
    failed: Option<String>,
    /// Since when the links disagree with the state (a link down while
    /// the flow works, all up while it is failed), and the port down.
    since: Option<u64>,
    next_poll: u64,
}

impl FlowWatch {
    /// Watches `probes` as `watch` says.
    pub fn new(probes: Vec<Box<dyn LinkProbe>>, watch: LinkWatch) -> Self {
        FlowWatch {
            probes,
            watch,
            failed: None,
            since: None,
            next_poll: 0,
        }
    }

    /// Whether the flow has failed, and on which port's link.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Reads the links (every [`LinkWatch::probe_ms`]) at `now` (ms); the
    /// change it makes to the flow's state, if any.
    pub fn poll(&mut self, now: u64) -> Option<FlowChange> {
        if self.watch.down_ms == 0 || self.probes.is_empty() || now < self.next_poll {
            return None;
        }
        self.next_poll = now + self.watch.probe_ms();
        let down = self
            .probes
            .iter_mut()
            .find_map(|p| (!p.up()).then(|| (p.name().to_string(), p.next_hop())));
        let (disagrees, after) = match &self.failed {
            None => (down.is_some(), self.watch.down_ms),
            Some(_) => (down.is_none(), self.watch.up_ms),
        };
        if !disagrees {
            self.since = None;
            return None;
        }
        let since = *self.since.get_or_insert(now);
        if now < since + after {
            return None;
        }
        self.since = None;
        match down {
            Some((port, next_hop)) => {
                self.failed = Some(port.clone());
                Some(FlowChange::Failed { port, next_hop })
            }
            None => {
                self.failed = None;
                Some(FlowChange::Works)
            }
        }
    }
}

/// The workers' loops: a worker whose loop has made no turn for
/// `stall_ms` has stalled (a bug's endless loop, a blocked call, a
/// stopped thread). It fails the node's flow; nothing can stop it and ask
/// its final state, so its SAs go to the peer past the highest limit it
/// was given (see `mirror_task`).
#[derive(Debug)]
pub struct WorkerWatch {
    stall_ms: u64,
    /// Each worker's last turn count, and when it last changed (ms).
    seen: Vec<(u64, u64)>,
    stalled: Vec<usize>,
}

impl WorkerWatch {
    /// Watches `workers` workers (0 `stall_ms`: none).
    pub fn new(workers: usize, stall_ms: u64) -> Self {
        WorkerWatch {
            stall_ms,
            seen: vec![(0, 0); if stall_ms == 0 { 0 } else { workers }],
            stalled: Vec::new(),
        }
    }

    /// The stalled workers, as of the last [`poll`](Self::poll).
    pub fn stalled(&self) -> &[usize] {
        &self.stalled
    }

    /// Reads each worker's turn count at `now` (ms; the first call's time
    /// counts as a turn); whether the set of stalled workers changed.
    pub fn poll(&mut self, now: u64, turns: impl Iterator<Item = u64>) -> bool {
        let mut stalled = Vec::new();
        for (id, (count, (last, since))) in turns.zip(self.seen.iter_mut()).enumerate() {
            if count != *last || *since == 0 {
                *last = count;
                *since = now.max(1);
            } else if now.saturating_sub(*since) >= self.stall_ms {
                stalled.push(id);
            }
        }
        let changed = stalled != self.stalled;
        self.stalled = stalled;
        changed
    }
}

/// A tracked next hop, as a link: down once it has sent no ARP reply for
/// [`LinkWatch::silent_ms`] while worker 0 probes it every
/// [`LinkWatch::probe_ms`].
pub struct NextHop {
    shared: Arc<Shared>,
    port: String,
    ip: IpAddr,
    silent_ms: u64,
}

impl NextHop {
    /// Next hop `ip` on `port`, tracked in `shared`'s neighbours.
    pub fn new(shared: Arc<Shared>, port: &str, ip: IpAddr, watch: LinkWatch) -> Self {
        NextHop {
            shared,
            port: port.to_string(),
            ip,
            silent_ms: watch.silent_ms(),
        }
    }
}

impl LinkProbe for NextHop {
    fn name(&self) -> &str {
        &self.port
    }

    fn up(&mut self) -> bool {
        self.shared
            .neighbours
            .silent_for(&self.ip)
            .is_none_or(|ms| ms < self.silent_ms)
    }

    fn next_hop(&self) -> Option<IpAddr> {
        Some(self.ip)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use espgate_io::link::Switch;

    use super::*;

    fn watch() -> (FlowWatch, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let (lan, lan_up) = Switch::new("lan");
        let (wan, _) = Switch::new("wan");
        let w = FlowWatch::new(
            vec![Box::new(lan), Box::new(wan)],
            LinkWatch {
                down_ms: 100,
                up_ms: 1000,
            },
        );
        (w, lan_up)
    }

    /// Polls every 5 ms from `from` to `to` (the links are read every
    /// 25 ms of it); the changes with their time.
    fn run(w: &mut FlowWatch, from: u64, to: u64) -> Vec<(u64, FlowChange)> {
        (from..=to)
            .step_by(5)
            .filter_map(|t| w.poll(t).map(|c| (t, c)))
            .collect()
    }

    #[test]
    fn a_link_down_fails_the_flow_after_down_ms_and_up_restores_it_after_up_ms() {
        let (mut w, lan) = watch();
        assert!(run(&mut w, 0, 500).is_empty());
        // Down from 520: read down at 525, failed down_ms later.
        lan.store(false, Ordering::Release);
        let c = run(&mut w, 520, 1000);
        assert_eq!(
            c,
            vec![(
                625,
                FlowChange::Failed {
                    port: "lan".into(),
                    next_hop: None
                }
            )]
        );
        assert_eq!(w.failed(), Some("lan"));
        lan.store(true, Ordering::Release);
        let c = run(&mut w, 1020, 3000);
        assert_eq!(c, vec![(2025, FlowChange::Works)]);
        assert_eq!(w.failed(), None);
    }

    #[test]
    fn flaps_shorter_than_the_hysteresis_change_nothing() {
        let (mut w, lan) = watch();
        // Down for 60 ms at a time: never the 100 ms that fail the flow.
        for k in 0..10u64 {
            lan.store(false, Ordering::Release);
            assert!(run(&mut w, k * 200, k * 200 + 60).is_empty());
            lan.store(true, Ordering::Release);
            assert!(run(&mut w, k * 200 + 80, k * 200 + 180).is_empty());
        }
        // Failed, then up for less than a second at a time: still failed.
        lan.store(false, Ordering::Release);
        assert_eq!(run(&mut w, 2000, 2200).len(), 1);
        for k in 0..3u64 {
            let t = 2300 + k * 1000;
            lan.store(true, Ordering::Release);
            assert!(run(&mut w, t, t + 800).is_empty());
            lan.store(false, Ordering::Release);
            assert!(run(&mut w, t + 820, t + 900).is_empty());
        }
        assert_eq!(w.failed(), Some("lan"));
    }

    #[test]
    fn no_watch_and_no_links_change_nothing() {
        let (lan, up) = Switch::new("lan");
        up.store(false, Ordering::Release);
        let mut off = FlowWatch::new(
            vec![Box::new(lan)],
            LinkWatch {
                down_ms: 0,
                up_ms: 0,
            },
        );
        assert!(run(&mut off, 0, 2000).is_empty());
        let mut none = FlowWatch::new(Vec::new(), LinkWatch::default());
        assert!(run(&mut none, 0, 2000).is_empty());
    }

    /// The watch of the next-hop tests: probes every 25 ms, down after
    /// 50 ms unheard, failed 100 ms later, restored after 200 ms.
    const NEXT_HOP_WATCH: LinkWatch = LinkWatch {
        down_ms: 100,
        up_ms: 200,
    };

    /// A node's shared state tracking next hop `hop`.
    fn tracking(hop: IpAddr) -> Arc<Shared> {
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

        use crate::neigh::Neighbours;
        use crate::tables::{TableCell, Tables};

        Arc::new(Shared {
            tables: TableCell::new(Tables::default()),
            neighbours: Neighbours::new([]).tracking([hop]),
            handoff: Vec::new(),
            commands: Vec::new(),
            sa_events: Vec::new(),
            peer_addresses: crate::config::PerSide::default(),
            adopted: AtomicBool::new(false),
            announce: AtomicU64::new(0),
            workers_lost: AtomicUsize::new(0),
            turns: vec![Default::default()],
        })
    }

    #[test]
    fn a_silent_next_hop_fails_the_flow_naming_it_and_its_answers_restore_it() {
        let hop: IpAddr = "192.0.2.100".parse().unwrap();
        let shared = tracking(hop);
        let watch = NEXT_HOP_WATCH;
        assert_eq!((watch.probe_ms(), watch.silent_ms()), (25, 50));
        let mut probe = NextHop::new(shared.clone(), "wan", hop, watch);
        assert_eq!((probe.name(), probe.next_hop()), ("wan", Some(hop)));
        assert!(probe.up(), "the start counts as heard");
        let answer = || shared.neighbours.replied(hop);
        let mut w = FlowWatch::new(vec![Box::new(probe)], watch);
        // Answering before each look: the flow works.
        let start = std::time::Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let mut silent = 0;
        while now() < 300 {
            answer();
            silent = now();
            assert_eq!(w.poll(silent), None);
            std::thread::sleep(std::time::Duration::from_millis(watch.probe_ms()));
        }
        // Silent: down after 50 ms unheard, failed 100 ms later.
        let change = loop {
            if let Some(c) = w.poll(now()) {
                break c;
            }
            assert!(
                now() < silent + 2000,
                "a silent next hop never failed the flow"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(
            change,
            FlowChange::Failed {
                port: "wan".into(),
                next_hop: Some(hop)
            }
        );
        assert!(now() >= silent + 150, "failed after {} ms", now() - silent);
        // Answering again for up_ms restores it.
        let back = now();
        let change = loop {
            answer();
            if let Some(c) = w.poll(now()) {
                break c;
            }
            assert!(now() < back + 2000, "the flow never came back");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(change, FlowChange::Works);
        assert!(now() >= back + 200);
    }

    /// Reader34: the node's frames no longer reach its next hop (a
    /// one-way fault: the switch drops what the node sends it), so the
    /// next hop answers none of the probes. It still needs the node's MAC
    /// (it routes to the node), cannot learn it (the node's answers do not
    /// reach it either), and so keeps broadcasting ARP requests for the
    /// node's address, which do reach the node. Counted as heard, they
    /// made the very fault look alive and the flow never failed (here
    /// requests every 25 ms against a 50 ms silence; with Linux's one
    /// request a second, any `link_down_ms` of 2000 or more): only its
    /// replies count now.
    #[test]
    fn a_next_hop_that_answers_no_probe_but_asks_for_the_node_fails_the_flow() {
        use espgate_wire::arp::ArpOp;
        use espgate_wire::ethernet::MacAddr;

        use crate::neigh::{ArpOutcome, handle_arp, request};

        let hop: IpAddr = "192.0.2.100".parse().unwrap();
        let me: std::net::Ipv4Addr = "192.0.2.1".parse().unwrap();
        let my_mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let hop_mac = MacAddr([2, 0, 0, 0, 0, 0x64]);
        let shared = tracking(hop);
        let watch = NEXT_HOP_WATCH;
        let probe = NextHop::new(shared.clone(), "wan", hop, watch);
        let mut w = FlowWatch::new(vec![Box::new(probe)], watch);
        let IpAddr::V4(hop4) = hop else {
            unreachable!()
        };
        // The next hop's own "who has 192.0.2.1?", as the node's worker
        // gets it: the node answers (an answer that never arrives).
        let mut asked = [0u8; 28];
        request(hop4, hop_mac, me).emit(&mut asked).unwrap();
        let start = std::time::Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let mut failed = None;
        while now() < 600 {
            match handle_arp(&asked, &[IpAddr::V4(me)], my_mac, &shared.neighbours) {
                Some(ArpOutcome::Reply(r)) => assert_eq!(r.op, ArpOp::Reply),
                other => panic!("{other:?}"),
            }
            if let Some(c) = w.poll(now()) {
                failed = Some(c);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert_eq!(
            failed,
            Some(FlowChange::Failed {
                port: "wan".into(),
                next_hop: Some(hop)
            }),
            "six times link_down_ms without one answer to a probe, and the flow works"
        );
    }

    #[test]
    fn a_worker_whose_loop_stands_still_for_stall_ms_is_stalled_until_it_turns() {
        let mut w = WorkerWatch::new(2, 100);
        let mut turns = [0u64, 0];
        let at = |w: &mut WorkerWatch, now, t: [u64; 2]| {
            (w.poll(now, t.into_iter()), w.stalled().to_vec())
        };
        assert_eq!(at(&mut w, 10, turns), (false, vec![]));
        // Worker 1 turns, worker 0 stands still from 10 ms on.
        for now in (20..110).step_by(10) {
            turns[1] += 1;
            assert_eq!(at(&mut w, now, turns), (false, vec![]), "{now}");
        }
        turns[1] += 1;
        assert_eq!(at(&mut w, 110, turns), (true, vec![0]));
        turns[1] += 1;
        assert_eq!(at(&mut w, 120, turns), (false, vec![0]));
        turns[0] += 1;
        assert_eq!(at(&mut w, 130, turns), (true, vec![]));
        // Off: nothing is watched.
        let mut off = WorkerWatch::new(2, 0);
        assert_eq!(at(&mut off, 10, [0, 0]), (false, vec![]));
        assert_eq!(at(&mut off, 100_000, [0, 0]), (false, vec![]));
    }
}
