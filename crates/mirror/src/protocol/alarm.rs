//! Alarms for a person: an SA this node runs that waits at its limit, and
//! the dead peer's SAs that nobody took over, each told once it has lasted
//! [`ALARM_AFTER_MS`], and an ESN SA held beyond its far end's reach (see
//! `reach`), told at the first look (looked at every refresh period, by
//! [`handle_timeout`](Mirror::handle_timeout)). The pair heals itself from every failure it can see;
//! these are the ones it cannot end alone (a mirror link down for good
//! under leases, a takeover that has to be ordered).

use super::*;

/// How long an SA may go unrun before it is told.
pub const ALARM_AFTER_MS: u64 = 1000;

/// What the alarms watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Alarms {
    /// Owned SAs whose worker reported a stall at the limit.
    stalled: BTreeMap<SaKey, Stall>,
    /// The peer's SAs nobody runs, while it is dead: since when (the first
    /// check that saw them), and whether told.
    orphans: Option<(u64, bool)>,
    /// Outbound SAs started, or taught what was sent on them, since the
    /// last check: held beyond their far end's reach, they are told.
    pub(super) reach_due: BTreeSet<u32>,
}

/// An owned SA stalled at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Stall {
    /// The number its worker wanted (and its limit did not allow).
    wanted: u64,
    /// Since when (the first check that saw it).
    since: Option<u64>,
    told: bool,
}

impl Mirror {
    /// The worker of owned SA `key` reported that its limit refused
    /// number `wanted`.
    pub(super) fn stalled(&mut self, key: SaKey, wanted: u64) {
        let s = self.alarms.stalled.entry(key).or_insert(Stall {
            wanted,
            since: None,
            told: false,
        });
        s.wanted = s.wanted.max(wanted);
    }

    /// Tells, at `now_ms`, each stall and the orphans once they lasted
    /// [`ALARM_AFTER_MS`], and each stall told that ended (the limit
    /// moved past it, or the SA no longer runs here).
    pub(super) fn check_alarms(&mut self, now_ms: u64) {
        self.check_reach();
        let keys: Vec<SaKey> = self.alarms.stalled.keys().copied().collect();
        for key in keys {
            let wanted = self.alarms.stalled[&key].wanted;
            if self.limit_of(key.0, key.1).is_none_or(|l| l > wanted) {
                if self.alarms.stalled.remove(&key).is_some_and(|s| s.told) {
                    self.events.push_back(MirrorEvent::Unstalled {
                        spi: key.0,
                        dir: key.1,
                    });
                }
                continue;
            }
            let s = self.alarms.stalled.get_mut(&key).expect("listed");
            let since = *s.since.get_or_insert(now_ms);
            if !s.told && now_ms.saturating_sub(since) >= ALARM_AFTER_MS {
                s.told = true;
                self.stats.stall_alarms += 1;
                self.events.push_back(MirrorEvent::Stalled {
                    spi: key.0,
                    dir: key.1,
                });
            }
        }
        let peer = self.cfg.peer;
        let orphans = if self.peer.alive() {
            0
        } else {
            self.pair.values().filter(|p| p.owner == peer).count()
        };
        if orphans == 0 {
            self.alarms.orphans = None;
            return;
        }
        let (since, told) = self.alarms.orphans.get_or_insert((now_ms, false));
        if !*told && now_ms.saturating_sub(*since) >= ALARM_AFTER_MS {
            *told = true;
            self.stats.orphan_alarms += 1;
            self.events
                .push_back(MirrorEvent::Orphaned { sas: orphans });
        }
    }
}
