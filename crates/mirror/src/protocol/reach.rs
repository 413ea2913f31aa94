//! How far an outbound ESN SA may start from the last number its far end
//! saw. The far end of an ESN SA infers the high 32 bits of each number
//! from its replay window (RFC 4303 appendix A); a start too far past
//! the last number it received lands where it infers the wrong high half,
//! and every packet then fails its ICV there, silently. Each takeover,
//! restart or lost peer life moves an idle SA a jump further, so enough of
//! them strand it.
//!
//! An owned SA whose current run has sent nothing and began [`ESN_REACH`]
//! or more past `sent_to` (the first number after the last one known to
//! have gone out) is held: its limit is 0, so it sends nothing. The hold
//! follows what is known, not the moment of the start: a record that
//! arrives after the start and raises `sent_to` (a hand-over's final
//! state behind its ownership record, a bulk's copy behind an early
//! acknowledgement) lifts it, and one that makes `sent_to` known at all
//! may impose it. A hold is told ([`MirrorEvent::BeyondReach`], once per
//! run) on the watching timer, when whatever was in flight has arrived;
//! only a rekey ends it. Where no number is known to have gone out (an SA
//! never used since the pair started it from its configuration, or a
//! restart from the state directory alone), nothing is held: a far end
//! that never received a packet follows any start up to 2^32 minus its
//! window.

use super::*;

/// How far past the last number sent a start may land: half the 32-bit
/// space, where the far end's inference is certain whatever its window.
pub const ESN_REACH: u64 = 1 << 31;

impl Mirror {
    /// Whether owned outbound SA `spi` is held beyond its far end's reach.
    pub(super) fn beyond_reach(&self, spi: u32) -> bool {
        let esn = self
            .pair
            .get(&(spi, Direction::Outbound))
            .is_some_and(|p| p.esn);
        self.outbound.get(&spi).is_some_and(|o| {
            esn && o.sent_to() != 0 && o.first() >= o.sent_to().saturating_add(ESN_REACH)
        })
    }

    /// Teaches owned outbound SA `spi` that the numbers below `sent_to`
    /// went out (a record of it from the peer). An SA this brings back in
    /// reach is told its limit; one whose `sent_to` was not known may now
    /// be held, and is looked at by the next check.
    pub(super) fn learn_sent(&mut self, spi: u32, sent_to: u64) {
        let before = self.beyond_reach(spi);
        if self
            .outbound
            .get_mut(&spi)
            .is_some_and(|o| o.learn_sent(sent_to))
        {
            self.alarms.reach_due.insert(spi);
            if before && !self.beyond_reach(spi) && self.synced() {
                self.limit_changed(spi, Direction::Outbound);
            }
        }
    }

    /// Outbound SA `spi` starts a run here: it knows what the standby
    /// table knows of its numbers sent, and is looked at by the next
    /// check.
    pub(super) fn run_started(&mut self, spi: u32) {
        let stored = self
            .standby
            .get(spi, Direction::Outbound)
            .map_or(0, |s| s.sent_to);
        if let Some(o) = self.outbound.get_mut(&spi) {
            o.learn_sent(stored);
            self.alarms.reach_due.insert(spi);
        }
    }

    /// Tells each SA started or taught since the last check that is held
    /// now, once per run.
    pub(super) fn check_reach(&mut self) {
        for spi in std::mem::take(&mut self.alarms.reach_due) {
            if !self.beyond_reach(spi) {
                continue;
            }
            let Some(o) = self.outbound.get_mut(&spi) else {
                continue;
            };
            if o.tell_beyond() {
                let (start, sent_to) = (o.first(), o.sent_to());
                self.stats.reach_alarms += 1;
                self.events.push_back(MirrorEvent::BeyondReach {
                    spi,
                    start,
                    sent_to,
                });
            }
        }
    }
}
