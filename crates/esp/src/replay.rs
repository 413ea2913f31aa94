//! The anti-replay window of RFC 4303 section 3.4.3, with extended sequence
//! numbers inferred from their low 32 bits as in Appendix A2.
//!
//! The bitmap is kept in 64-bit buckets used as a ring (as librte_ipsec and
//! Linux do), so sliding the window clears whole buckets instead of shifting
//! bits. The window accepts exactly `size` sequence numbers below and
//! including the top.

/// Smallest window size accepted.
pub const MIN_WINDOW: u32 = 32;
/// Largest window size accepted.
pub const MAX_WINDOW: u32 = 65536;

/// Why the window refuses a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Already received.
    #[error("sequence number already received")]
    Duplicate,
    /// Below the window (or zero, which is never sent).
    #[error("sequence number below the replay window")]
    TooOld,
}

/// An anti-replay window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    size: u32,
    top: u64,
    buckets: Box<[u64]>,
}

impl ReplayWindow {
    /// An empty window of `size` sequence numbers (clamped to
    /// [`MIN_WINDOW`]..=[`MAX_WINDOW`]) whose top is `top`: every number up
    /// to `top` counts as seen, as when a window is restored without its
    /// bitmap.
    pub fn new(size: u32, top: u64) -> Self {
        let size = size.clamp(MIN_WINDOW, MAX_WINDOW);
        let n = (size as usize).div_ceil(64) + 1;
        let mut w = ReplayWindow {
            size,
            top,
            buckets: vec![0; n.next_power_of_two()].into_boxed_slice(),
        };
        w.mark_all_seen();
        w
    }

    /// Marks every number up to the top as seen, and none above it.
    fn mark_all_seen(&mut self) {
        for b in self.buckets.iter_mut() {
            *b = u64::MAX;
        }
        let (i, _) = self.slot(self.top);
        self.buckets[i] = u64::MAX >> (63 - (self.top & 63));
    }

    /// Window size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Highest sequence number accepted so far (0: none).
    pub fn top(&self) -> u64 {
        self.top
    }

    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        let mask = self.buckets.len() - 1;
        (((seq >> 6) as usize) & mask, 1u64 << (seq & 63))
    }

    /// Infers the full 64-bit sequence number of a packet from its low 32
    /// bits (RFC 4303 Appendix A2.2): the one candidate that lies in the
    /// window or ahead of it by less than 2^32 - `size`. `None` when that
    /// would be below zero.
    pub fn infer_esn(&self, seq_lo: u32) -> Option<u64> {
        let w = self.size;
        let tl = self.top as u32;
        let th = self.top >> 32;
        let bottom_lo = tl.wrapping_sub(w - 1);
        let hi = if tl >= w - 1 {
            if seq_lo >= bottom_lo {
                th
            } else {
                th.checked_add(1)?
            }
        } else if seq_lo >= bottom_lo {
            th.checked_sub(1)?
        } else {
            th
        };
        if hi > u64::from(u32::MAX) {
            return None;
        }
        Some((hi << 32) | u64::from(seq_lo))
    }

    /// Whether `seq` is marked seen (it is within the window and was
    /// accepted, or lies at or below a restored top).
    fn seen(&self, seq: u64) -> bool {
        if seq > self.top || self.top - seq >= u64::from(self.size) {
            return false;
        }
        let (i, bit) = self.slot(seq);
        self.buckets[i] & bit != 0
    }

    /// The window as the mirror carries it: bit `i` of word `w` is set when
    /// sequence number `top - (64 w + i)` was received; `size / 64` words
    /// (rounded up), so every record of one SA has the same length.
    pub fn export(&self) -> Vec<u64> {
        let words = (self.size as usize).div_ceil(64);
        let mut out = vec![0u64; words];
        for k in 0..u64::from(self.size).min(self.top + 1) {
            if self.seen(self.top - k) {
                out[(k / 64) as usize] |= 1 << (k % 64);
            }
        }
        out
    }

    /// A window of `size` restored from a mirrored `top` and bitmap (as
    /// [`export`](Self::export) makes it). Numbers the bitmap does not
    /// cover are seen: below the window, and inside it past a shorter
    /// bitmap (a peer's smaller window, or one cut to fit its frames):
    /// nothing tells whether they came.
    pub fn restore(size: u32, top: u64, bitmap: &[u64]) -> Self {
        let mut w = ReplayWindow::new(size, top);
        let size = u64::from(w.size);
        for k in 0..size.min(top + 1) {
            let marked = bitmap
                .get((k / 64) as usize)
                .is_none_or(|word| word >> (k % 64) & 1 == 1);
            let (i, bit) = w.slot(top - k);
            if marked {
                w.buckets[i] |= bit;
            } else {
                w.buckets[i] &= !bit;
            }
        }
        w
    }

    /// Checks `seq` before decryption, changing nothing.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= u64::from(self.size) {
            return Err(ReplayError::TooOld);
        }
        let (i, bit) = self.slot(seq);
        if self.buckets[i] & bit != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Checks `seq` again and records it; call only once the packet is
    /// authenticated.
    #[inline]
    pub fn check_and_update(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.top {
            let old = self.top >> 6;
            let new = seq >> 6;
            let clear = (new - old).min(self.buckets.len() as u64);
            let mask = self.buckets.len() - 1;
            for k in 1..=clear {
                self.buckets[((old + k) as usize) & mask] = 0;
            }
            self.top = seq;
        }
        let (i, bit) = self.slot(seq);
        self.buckets[i] |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The obvious model: a set of everything accepted and its maximum;
    /// everything up to the starting top counts as seen.
    struct Model {
        size: u64,
        seen: BTreeSet<u64>,
        start: u64,
        top: u64,
    }

    impl Model {
        fn accept(&mut self, seq: u64) -> bool {
            let fresh = seq > self.start
                && !self.seen.contains(&seq)
                && (seq > self.top || self.top - seq < self.size);
            if fresh {
                self.seen.insert(seq);
                self.top = self.top.max(seq);
            }
            fresh
        }
    }

    /// What the receiver does with one packet: infer (ESN), check, then
    /// "authenticate" (the ICV verifies only if the inferred number is the
    /// one the sender used, since the high half is in the AAD), update.
    fn receive(w: &mut ReplayWindow, esn: bool, seq: u64) -> bool {
        let guess = if esn {
            match w.infer_esn(seq as u32) {
                Some(g) => g,
                None => return false,
            }
        } else {
            seq
        };
        if w.check(guess).is_err() || guess != seq {
            return false;
        }
        w.check_and_update(guess).is_ok()
    }

    #[test]
    fn basic_sliding() {
        let mut w = ReplayWindow::new(64, 0);
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert!(w.check_and_update(1).is_ok());
        assert_eq!(w.check(1), Err(ReplayError::Duplicate));
        assert!(w.check_and_update(100).is_ok());
        assert_eq!(w.check(36), Err(ReplayError::TooOld));
        assert!(w.check_and_update(37).is_ok());
        assert!(w.check_and_update(1000).is_ok());
        assert_eq!(w.check(936), Err(ReplayError::TooOld));
        assert!(w.check(937).is_ok());
    }

    #[test]
    fn restored_window_treats_everything_up_to_top_as_seen() {
        let w = ReplayWindow::new(128, 5000);
        assert_eq!(w.check(4990), Err(ReplayError::Duplicate));
        assert!(w.check(5001).is_ok());
        let mut w = w;
        assert!(w.check_and_update(5003).is_ok());
        assert!(w.check_and_update(5001).is_ok());
        assert_eq!(w.check(5001), Err(ReplayError::Duplicate));
        assert!(w.check_and_update(5002).is_ok());
    }

    #[test]
    fn export_and_restore_round_trip() {
        let mut w = ReplayWindow::new(128, 0);
        for seq in [1u64, 2, 5, 100, 130, 131, 140] {
            w.check_and_update(seq).unwrap();
        }
        let bits = w.export();
        assert_eq!(bits.len(), 2);
        assert_eq!(bits[0] & 1, 1, "the top itself");
        let r = ReplayWindow::restore(128, w.top(), &bits);
        for seq in 0..=200u64 {
            assert_eq!(r.check(seq), w.check(seq), "seq {seq}");
        }
        assert_eq!(r.export(), bits);
    }

    /// A bitmap shorter than the window (a peer's smaller window, or one
    /// cut to fit a mirror frame) leaves the numbers past it seen: nothing
    /// tells whether they came, and accepting them could accept a replay.
    #[test]
    fn numbers_past_a_shorter_bitmap_are_seen() {
        let top = 1000;
        let r = ReplayWindow::restore(256, top, &[0]);
        for seq in top - 63..top {
            assert!(r.check(seq).is_ok(), "{seq} is in the bitmap, unset");
        }
        for seq in top - 255..top - 63 {
            assert!(r.check(seq).is_err(), "{seq} lies past the bitmap");
        }
        assert!(r.check(top + 1).is_ok());
    }

    #[test]
    fn esn_inference_cases_of_appendix_a2() {
        let w = ReplayWindow::new(64, (3 << 32) | 1000);
        assert_eq!(w.infer_esn(990), Some((3 << 32) | 990));
        assert_eq!(w.infer_esn(5), Some((4 << 32) | 5));
        let w = ReplayWindow::new(64, (3 << 32) | 10);
        assert_eq!(
            w.infer_esn(u32::MAX - 5),
            Some((2 << 32) | u64::from(u32::MAX - 5))
        );
        assert_eq!(w.infer_esn(20), Some((3 << 32) | 20));
        let w = ReplayWindow::new(64, 10);
        assert_eq!(w.infer_esn(u32::MAX - 5), None);
    }

    fn arrivals() -> impl Strategy<Value = (u64, bool, u32, Vec<(i64, bool)>)> {
        (
            prop_oneof![
                Just(1u64),
                Just(u64::from(u32::MAX) - 300),
                Just((7u64 << 32) - 100),
                1u64..1 << 40
            ],
            any::<bool>(),
            prop_oneof![Just(64u32), Just(128), Just(1024), Just(4096), 32u32..5000],
            proptest::collection::vec((-6000i64..6000, any::<bool>()), 1..400),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Random arrival orders: forward runs, jumps within and beyond the
        /// window, duplicates, late packets, and the ESN wrap of the low 32
        /// bits. The window must agree with the model on every packet.
        #[test]
        fn window_matches_model((start, esn, size, steps) in arrivals()) {
            // Without ESN a sender cannot start beyond 32 bits.
            let start = if !esn && start > u64::from(u32::MAX) { (start & 0x7fff_ffff) | 1 } else { start };
            // The receiver's window starts where the SA starts (its
            // initial sequence number), as configuration sets it.
            let mut w = ReplayWindow::new(size, start - 1);
            let mut m = Model { size: u64::from(w.size()), seen: BTreeSet::new(), start: start - 1, top: start - 1 };
            let mut next = start;
            let mut sent: Vec<u64> = Vec::new();
            for (delta, replay) in steps {
                let seq = if replay && !sent.is_empty() {
                    sent[(delta.unsigned_abs() as usize) % sent.len()]
                } else {
                    let s = next.saturating_add_signed(delta).max(1);
                    next = next.max(s);
                    s
                };
                if !esn && seq > u64::from(u32::MAX) {
                    continue;
                }
                sent.push(seq);
                let expect = m.accept(seq);
                let got = receive(&mut w, esn, seq);
                prop_assert_eq!(got, expect, "seq {} top {} size {}", seq, m.top, size);
                if got {
                    // A replay of anything accepted is always refused.
                    prop_assert!(!receive(&mut w, esn, seq));
                }
            }
            prop_assert_eq!(w.top(), m.top);
        }
    }
}
