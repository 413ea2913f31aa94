//! The mirror's timers: the next heartbeat, the next refresh, the next
//! look at the alarms, and the peer's death should it stay silent.

use super::*;

/// Something the mirror does at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Timer {
    /// The peer, silent for `dead_after` heartbeats, is declared dead.
    PeerDeath,
    /// Every changed or unacknowledged SA, unconfirmed change and missing
    /// bulk is queued again ([`refresh`](Mirror::refresh)).
    Refresh,
    /// A heartbeat goes in the next frame.
    Heartbeat,
    /// The alarms are looked at ([`check_alarms`](Mirror::check_alarms)),
    /// every refresh period: watched, not sent, so a mirror port that
    /// takes no frames (the case they are for) does not silence them.
    Alarms,
}

impl Timer {
    /// Every timer.
    pub(super) const ALL: [Timer; 4] = [
        Timer::PeerDeath,
        Timer::Refresh,
        Timer::Heartbeat,
        Timer::Alarms,
    ];
    /// The timers whose work is frames to send, served by
    /// [`poll_transmit`](Mirror::poll_transmit) as it builds them: served
    /// by [`handle_timeout`](Mirror::handle_timeout), a node that sends
    /// nothing for a while (a worker not yet parked, a node gone silent)
    /// would queue a refresh's worth at every period with none of it
    /// going, and a heartbeat fired there would wait unseen by
    /// [`poll_timeout`](Mirror::poll_timeout).
    pub(super) const SENDING: [Timer; 2] = [Timer::Refresh, Timer::Heartbeat];
    /// The timers [`handle_timeout`](Mirror::handle_timeout) serves.
    pub(super) const WATCHING: [Timer; 2] = [Timer::PeerDeath, Timer::Alarms];
}

/// When the periodic timers fire next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Timers {
    heartbeat: u64,
    refresh: u64,
    alarms: u64,
    /// A heartbeat fired and waits for the next frame.
    pub(super) heartbeat_owed: bool,
}

impl Timers {
    /// The timers of a mirror started at `now_ms`: a heartbeat at once, a
    /// refresh one period on.
    pub(super) fn new(now_ms: u64, refresh_ms: u64) -> Self {
        Timers {
            heartbeat: now_ms,
            refresh: now_ms.saturating_add(refresh_ms),
            alarms: now_ms.saturating_add(refresh_ms),
            heartbeat_owed: false,
        }
    }
}

impl Mirror {
    /// When `timer` fires next (`u64::MAX`: not armed).
    pub(super) fn deadline(&self, timer: Timer) -> u64 {
        match timer {
            Timer::Heartbeat => self.timers.heartbeat,
            Timer::Refresh => self.timers.refresh,
            Timer::Alarms => self.timers.alarms,
            Timer::PeerDeath => match self.peer.liveness {
                Liveness::Alive(last_heard) => {
                    last_heard.saturating_add(self.death_ms()).saturating_add(1)
                }
                _ => u64::MAX,
            },
        }
    }

    /// Serves each of `timers` that is due at `now_ms`.
    pub(super) fn run_timers(&mut self, now_ms: u64, timers: &[Timer]) {
        self.clock = self.clock.max(now_ms);
        for &t in timers {
            if now_ms >= self.deadline(t) {
                self.fire(t, now_ms);
            }
        }
    }

    fn fire(&mut self, timer: Timer, now_ms: u64) {
        match timer {
            Timer::PeerDeath => {
                for i in self.inbound.values_mut() {
                    i.set_exact(false);
                }
                if self.peer.fenced_life.is_some() && self.peer.fenced_life == self.filter.epoch() {
                    // The life this node fenced, heard again (a frame it
                    // sent before it went, held in the network) and silent
                    // again: the fence holds for that life, with nothing
                    // more to move past (reader40's find 4: else nothing
                    // fences it again, and the SAs wait for good).
                    self.peer.liveness = Liveness::Fenced;
                    self.lease_changed();
                } else {
                    self.peer.liveness = Liveness::Dead;
                }
                self.events.push_back(MirrorEvent::PeerDead);
            }
            Timer::Refresh => {
                self.timers.refresh = now_ms.saturating_add(self.cfg.refresh_ms);
                self.refresh();
            }
            Timer::Alarms => {
                self.timers.alarms = now_ms.saturating_add(self.cfg.refresh_ms);
                self.check_alarms(now_ms);
            }
            Timer::Heartbeat => {
                self.timers.heartbeat = now_ms.saturating_add(self.cfg.heartbeat_ms);
                self.timers.heartbeat_owed = true;
            }
        }
    }

    /// How long the peer may stay silent before it is declared dead.
    fn death_ms(&self) -> u64 {
        self.cfg
            .heartbeat_ms
            .saturating_mul(u64::from(self.cfg.dead_after))
    }
}
