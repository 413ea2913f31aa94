//! A node's packet flow: its data ports' links, watched so that a node
//! whose flow failed hands the SAs it runs to its peer and takes them
//! back once it works again (interface tracking, as VRRP and FortiGate's
//! link monitor do it), with hysteresis both ways: a link down for
//! `down_ms` fails the flow, every link up for `up_ms` restores it.

use espgate_io::link::LinkProbe;

/// How often the links are read.
pub const POLL_MS: u64 = 20;

/// When a link's state counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkWatch {
    /// A link down this long fails the flow (0: links are not watched).
    pub down_ms: u64,
    /// Every link up this long after a failure restores it.
    pub up_ms: u64,
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
    /// The flow failed: `port`'s link has been down for `down_ms`.
    Failed {
        /// The port whose link is down.
        port: String,
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

    /// Reads the links (every [`POLL_MS`]) at `now` (ms); the change it
    /// makes to the flow's state, if any.
    pub fn poll(&mut self, now: u64) -> Option<FlowChange> {
        if self.watch.down_ms == 0 || self.probes.is_empty() || now < self.next_poll {
            return None;
        }
        self.next_poll = now + POLL_MS;
        let down = self
            .probes
            .iter_mut()
            .find_map(|p| (!p.up()).then(|| p.name().to_string()));
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
            Some(port) => {
                self.failed = Some(port.clone());
                Some(FlowChange::Failed { port })
            }
            None => {
                self.failed = None;
                Some(FlowChange::Works)
            }
        }
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

    /// Polls every 20 ms from `from` to `to`; the changes with their time.
    fn run(w: &mut FlowWatch, from: u64, to: u64) -> Vec<(u64, FlowChange)> {
        (from..=to)
            .step_by(POLL_MS as usize)
            .filter_map(|t| w.poll(t).map(|c| (t, c)))
            .collect()
    }

    #[test]
    fn a_link_down_fails_the_flow_after_down_ms_and_up_restores_it_after_up_ms() {
        let (mut w, lan) = watch();
        assert!(run(&mut w, 0, 500).is_empty());
        lan.store(false, Ordering::Release);
        let c = run(&mut w, 520, 1000);
        assert_eq!(c, vec![(620, FlowChange::Failed { port: "lan".into() })]);
        assert_eq!(w.failed(), Some("lan"));
        lan.store(true, Ordering::Release);
        let c = run(&mut w, 1020, 3000);
        assert_eq!(c, vec![(2020, FlowChange::Works)]);
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
}
