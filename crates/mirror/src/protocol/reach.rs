//! How far an outbound ESN SA may start from the last number its far end
//! saw. The far end of an ESN SA infers the high 32 bits of each number
//! from its replay window (RFC 4303 appendix A); a start too far past
//! the last number it received lands where it infers the wrong high half,
//! and every packet then fails its ICV there, silently. Each takeover,
//! restart or lost peer life moves an idle SA a jump further, so enough of
//! them strand it. An SA that would start [`ESN_REACH`] or more past the
//! first number after the last one known to have gone out is held (it
//! sends nothing: its limit is 0) and told ([`MirrorEvent::BeyondReach`]):
//! only a rekey brings it back. Where no number is known to have gone out
//! (its first use here, or a restart from the state directory alone),
//! nothing is checked.

use super::*;

/// How far past the last number sent a start may land: half the 32-bit
/// space, where the far end's inference is certain whatever its window.
pub const ESN_REACH: u64 = 1 << 31;

impl Mirror {
    /// Checks where outbound SA `spi` starts now (`start`): an ESN SA
    /// beyond the far end's reach is held and told, once per tenure.
    pub(super) fn check_reach(&mut self, spi: u32, start: u64) {
        let esn = self
            .pair
            .get(&(spi, Direction::Outbound))
            .is_some_and(|p| p.esn);
        let stored = self
            .standby
            .get(spi, Direction::Outbound)
            .map_or(0, |s| s.sent_to);
        let Some(o) = self.outbound.get_mut(&spi) else {
            return;
        };
        o.learn_sent(stored);
        let sent_to = o.sent_to();
        if !esn || o.held() || sent_to == 0 || start < sent_to.saturating_add(ESN_REACH) {
            return;
        }
        o.hold();
        self.stats.reach_alarms += 1;
        self.events.push_back(MirrorEvent::BeyondReach {
            spi,
            start,
            sent_to,
        });
    }
}
