//! SA lifetimes by bytes, packets and time (RFC 4301 4.4.2.1): crossing
//! a soft limit raises an event once; reaching a hard limit stops the SA.
//! The core has no clock: its owner tells it when a time limit passes
//! ([`LifetimeState::expire`], through the SAs' `expire`).

/// Soft and hard limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetime {
    /// Bytes after which a rekey is due.
    pub soft_bytes: Option<u64>,
    /// Bytes after which the SA stops.
    pub hard_bytes: Option<u64>,
    /// Packets after which a rekey is due.
    pub soft_packets: Option<u64>,
    /// Packets after which the SA stops.
    pub hard_packets: Option<u64>,
    /// Seconds after its installation at which a rekey is due (the owner
    /// keeps the time and calls `expire`).
    pub soft_seconds: Option<u64>,
    /// Seconds after its installation at which the SA stops.
    pub hard_seconds: Option<u64>,
}

espgate_counters::counter_table! {
    /// Something an SA reports to its owner, polled with `poll_event`:
    /// each at most once in the SA's life (the SA refuses every packet
    /// after a hard limit or its last number, and its worker polls after
    /// each).
    pub enum SaEvent;
    /// SA events by kind.
    pub struct SaEventCounters;
    {
        /// A soft lifetime limit was crossed: rekey soon.
        SoftLifetime => "soft_lifetime",
        /// A hard lifetime limit was reached: the SA no longer passes traffic.
        HardLifetime => "hard_lifetime",
        /// Less than a sixteenth of the outbound sequence number space is
        /// left ([`SEQ_LOW_SHIFT`]): rekey soon. (A takeover moves an SA
        /// past numbers it never sent: the space ends sooner than the
        /// traffic alone says.)
        SeqLow => "seq_low",
        /// The outbound sequence number space is used up: rekey now.
        SeqExhausted => "seq_exhausted",
    }
}

/// [`SaEvent::SeqLow`] comes when at most `seq_max >> SEQ_LOW_SHIFT`
/// numbers are left: 2^28 of a 32-bit SA's (about 27 s at 10 Mpps, or 16
/// takeover jumps of 2^24).
pub const SEQ_LOW_SHIFT: u32 = 4;

/// Lifetime limits and what has fired so far, plus pending events.
#[derive(Debug, Clone, Default)]
pub(crate) struct LifetimeState {
    limits: Lifetime,
    soft_fired: bool,
    hard_fired: bool,
    low_fired: bool,
    exhausted_fired: bool,
    /// A hard time limit passed: every packet is refused.
    expired: bool,
    pending: u8,
}

const SOFT: u8 = 1;
const HARD: u8 = 2;
const LOW: u8 = 4;
const EXHAUSTED: u8 = 8;

fn reached(limit: Option<u64>, value: u64) -> bool {
    limit.is_some_and(|l| value >= l)
}

impl LifetimeState {
    pub(crate) fn new(limits: Lifetime) -> Self {
        LifetimeState {
            limits,
            ..Default::default()
        }
    }

    /// The limits.
    pub(crate) fn limits(&self) -> Lifetime {
        self.limits
    }

    /// Whether the SA may process one more packet, given what it has already
    /// processed. A refusal raises [`SaEvent::HardLifetime`] unless it was
    /// raised already (counts resumed past the limit refuse at once).
    #[inline]
    pub(crate) fn admit(&mut self, packets: u64, bytes: u64) -> bool {
        let hard = self.expired
            || reached(self.limits.hard_packets, packets)
            || reached(self.limits.hard_bytes, bytes);
        if hard && !self.hard_fired {
            self.hard_fired = true;
            self.pending |= HARD;
        }
        !hard
    }

    /// Records the counters after a packet; the first crossing of a soft
    /// limit raises [`SaEvent::SoftLifetime`], and the packet that reaches
    /// a hard limit [`SaEvent::HardLifetime`] (the far end, limited alike,
    /// may send nothing more: a refusal would never come to tell it).
    #[inline]
    pub(crate) fn after(&mut self, packets: u64, bytes: u64) {
        if !self.soft_fired
            && (reached(self.limits.soft_packets, packets)
                || reached(self.limits.soft_bytes, bytes))
        {
            self.soft_fired = true;
            self.pending |= SOFT;
        }
        if !self.hard_fired
            && (reached(self.limits.hard_packets, packets)
                || reached(self.limits.hard_bytes, bytes))
        {
            self.hard_fired = true;
            self.pending |= HARD;
        }
    }

    /// A time limit passed (the owner keeps the time): soft raises
    /// [`SaEvent::SoftLifetime`], hard [`SaEvent::HardLifetime`] and stops
    /// the SA; each event once in the SA's life, whichever limit raised it.
    pub(crate) fn expire(&mut self, hard: bool) {
        if hard {
            self.expired = true;
            if !self.hard_fired {
                self.hard_fired = true;
                self.pending |= HARD;
            }
        } else if !self.soft_fired {
            self.soft_fired = true;
            self.pending |= SOFT;
        }
    }

    /// Raises [`SaEvent::SeqLow`] (once).
    #[inline]
    pub(crate) fn seq_low(&mut self) {
        if !self.low_fired {
            self.low_fired = true;
            self.pending |= LOW;
        }
    }

    /// Raises [`SaEvent::SeqExhausted`] (once).
    pub(crate) fn exhausted(&mut self) {
        if !self.exhausted_fired {
            self.exhausted_fired = true;
            self.pending |= EXHAUSTED;
        }
    }

    /// Whether an event waits to be polled.
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.pending != 0
    }

    /// The next pending event.
    #[inline]
    pub(crate) fn poll(&mut self) -> Option<SaEvent> {
        if self.pending == 0 {
            return None;
        }
        for (bit, ev) in [
            (SOFT, SaEvent::SoftLifetime),
            (HARD, SaEvent::HardLifetime),
            (LOW, SaEvent::SeqLow),
            (EXHAUSTED, SaEvent::SeqExhausted),
        ] {
            if self.pending & bit != 0 {
                self.pending &= !bit;
                return Some(ev);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_once_then_hard_stops() {
        let mut l = LifetimeState::new(Lifetime {
            soft_packets: Some(2),
            hard_packets: Some(3),
            ..Default::default()
        });
        let mut packets = 0;
        let mut passed = 0;
        for _ in 0..5 {
            if l.admit(packets, 0) {
                packets += 1;
                passed += 1;
                l.after(packets, 0);
            }
        }
        assert_eq!(passed, 3);
        assert_eq!(l.poll(), Some(SaEvent::SoftLifetime));
        assert_eq!(l.poll(), Some(SaEvent::HardLifetime));
        assert_eq!(l.poll(), None);
    }

    #[test]
    fn time_limits_told_by_the_owner_raise_once_and_hard_stops() {
        let mut l = LifetimeState::new(Lifetime {
            soft_packets: Some(1),
            soft_seconds: Some(10),
            hard_seconds: Some(20),
            ..Default::default()
        });
        assert!(l.admit(0, 0));
        l.after(1, 10);
        l.expire(false);
        assert_eq!(l.poll(), Some(SaEvent::SoftLifetime));
        assert_eq!(
            l.poll(),
            None,
            "the soft event comes once, by packets or by time"
        );
        assert!(l.admit(1, 10));
        l.expire(true);
        l.expire(true);
        assert_eq!(l.poll(), Some(SaEvent::HardLifetime));
        assert_eq!(l.poll(), None);
        assert!(!l.admit(1, 10), "a hard time limit stops the SA");
    }

    #[test]
    fn bytes_limits() {
        let mut l = LifetimeState::new(Lifetime {
            soft_bytes: Some(100),
            hard_bytes: Some(150),
            ..Default::default()
        });
        assert!(l.admit(1, 90));
        l.after(1, 90);
        assert_eq!(l.poll(), None);
        l.after(2, 120);
        assert_eq!(l.poll(), Some(SaEvent::SoftLifetime));
        assert!(l.admit(2, 149));
        assert!(!l.admit(3, 150));
    }
}
