//! Time lifetimes. The ESP core has no clock: the node keeps when it
//! installed each SA that has a time limit and, when a limit passes, tells
//! the SA's worker ([`SaCommand::Expire`](crate::SaCommand::Expire)),
//! which raises the SA's lifetime event as a byte or packet limit would.
//! Each limit is told once. A standby copy ages alike, from when this node
//! installed it: after a takeover the limits stand where they would have.

use std::time::{Duration, Instant};

use espgate_esp::{Direction, Lifetime};

/// One SA with a time limit still to pass.
#[derive(Debug, Clone, Copy)]
struct Aged {
    spi: u32,
    direction: Direction,
    soft: Option<Instant>,
    hard: Option<Instant>,
}

/// The SAs with a time limit still to pass.
#[derive(Debug, Default)]
pub struct Aging {
    sas: Vec<Aged>,
}

impl Aging {
    /// Starts the clock of SA (`spi`, `direction`), installed at `now`,
    /// if its lifetime has a time limit.
    pub fn add(&mut self, spi: u32, direction: Direction, lifetime: &Lifetime, now: Instant) {
        let at = |s: Option<u64>| s.map(|s| now + Duration::from_secs(s));
        let (soft, hard) = (at(lifetime.soft_seconds), at(lifetime.hard_seconds));
        if soft.is_some() || hard.is_some() {
            self.remove(spi, direction);
            self.sas.push(Aged {
                spi,
                direction,
                soft,
                hard,
            });
        }
    }

    /// Forgets SA (`spi`, `direction`).
    pub fn remove(&mut self, spi: u32, direction: Direction) {
        self.sas
            .retain(|a| !(a.spi == spi && a.direction == direction));
    }

    /// The limits passed by `now` and not told yet: (SPI, direction,
    /// hard). A hard limit passed tells the soft one no more.
    pub fn due(&mut self, now: Instant) -> Vec<(u32, Direction, bool)> {
        let mut out = Vec::new();
        for a in &mut self.sas {
            if a.hard.is_some_and(|t| t <= now) {
                out.push((a.spi, a.direction, true));
                a.hard = None;
                a.soft = None;
            } else if a.soft.is_some_and(|t| t <= now) {
                out.push((a.spi, a.direction, false));
                a.soft = None;
            }
        }
        self.sas.retain(|a| a.soft.is_some() || a.hard.is_some());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_told_once_and_only_sas_with_one_are_kept() {
        let t0 = Instant::now();
        let mut a = Aging::default();
        let life = Lifetime {
            soft_seconds: Some(10),
            hard_seconds: Some(20),
            ..Default::default()
        };
        a.add(0x100, Direction::Outbound, &life, t0);
        a.add(0x200, Direction::Inbound, &Lifetime::default(), t0);
        a.add(0x300, Direction::Inbound, &life, t0);
        assert_eq!(a.sas.len(), 2, "an SA without a time limit is not kept");
        let s = Duration::from_secs(1);
        assert!(a.due(t0 + 9 * s).is_empty());
        assert_eq!(
            a.due(t0 + 10 * s),
            vec![
                (0x100, Direction::Outbound, false),
                (0x300, Direction::Inbound, false)
            ]
        );
        assert!(a.due(t0 + 11 * s).is_empty(), "told once");
        a.remove(0x300, Direction::Inbound);
        assert_eq!(a.due(t0 + 20 * s), vec![(0x100, Direction::Outbound, true)]);
        assert!(a.due(t0 + 100 * s).is_empty());
        assert!(a.sas.is_empty());
    }

    #[test]
    fn a_hard_limit_passed_first_tells_only_hard() {
        let t0 = Instant::now();
        let mut a = Aging::default();
        let life = Lifetime {
            soft_seconds: Some(10),
            hard_seconds: Some(10),
            ..Default::default()
        };
        a.add(0x100, Direction::Outbound, &life, t0);
        assert_eq!(
            a.due(t0 + Duration::from_secs(30)),
            vec![(0x100, Direction::Outbound, true)]
        );
    }
}
