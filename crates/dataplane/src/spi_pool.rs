//! Inbound SPIs handed out before their SA exists, as an IKE daemon asks
//! for them (charon's `get_spi`, the kernel's `XFRM_MSG_ALLOCSPI`): each is
//! unused by the node's inbound SAs and by every other SPI handed out and
//! not yet taken, for [`RESERVED_FOR`] (the kernel keeps its larval SA as
//! long). SPIs come from [`FIRST`]`..=`[`LAST`], Linux's default range, in
//! an order an attacker cannot guess from the ones it saw.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// The first SPI handed out.
pub const FIRST: u32 = 0xc000_0000;
/// The last SPI handed out.
pub const LAST: u32 = 0xcfff_ffff;
/// How long an SPI handed out stays reserved for its SA.
pub const RESERVED_FOR: Duration = Duration::from_secs(165);

/// The most SPIs reserved at once: a client asking without end is
/// refused, not given memory without end.
pub const MAX_RESERVED: usize = 1 << 16;

/// SPIs handed out and not yet taken by an SA.
#[derive(Debug, Default)]
pub struct SpiPool {
    reserved: HashMap<u32, Instant>,
    /// The same, oldest first (an SPI taken since stays here until it
    /// would have expired): expiry costs nothing per draw.
    order: VecDeque<(Instant, u32)>,
    keys: RandomState,
    drawn: u64,
}

impl SpiPool {
    /// A free SPI, reserved until [`take`](Self::take)n or
    /// [`RESERVED_FOR`] has passed; `used` tells an SPI an inbound SA of
    /// the node has. `None` if [`MAX_RESERVED`] are reserved, or a million
    /// draws found none free.
    pub fn allocate(&mut self, used: impl Fn(u32) -> bool, now: Instant) -> Option<u32> {
        if !self.room(now) {
            return None;
        }
        for _ in 0..1_000_000 {
            self.drawn += 1;
            let draw = self.keys.hash_one(self.drawn) as u32;
            let spi = FIRST + draw % (LAST - FIRST + 1);
            if !used(spi) && !self.reserved.contains_key(&spi) {
                self.hold(spi, now);
                return Some(spi);
            }
        }
        None
    }

    /// Reserves `spi` as [`allocate`](Self::allocate) would have handed it
    /// out (a pair's host draws an SPI on one node and reserves it on the
    /// other): `Err(Taken)` if it is reserved already or `used`,
    /// `Err(Full)` if [`MAX_RESERVED`] are reserved. Any SPI may be
    /// reserved, in the range or not.
    pub fn reserve(&mut self, spi: u32, used: bool, now: Instant) -> Result<(), Unreserved> {
        if !self.room(now) {
            return Err(Unreserved::Full);
        }
        if used || self.reserved.contains_key(&spi) {
            return Err(Unreserved::Taken);
        }
        self.hold(spi, now);
        Ok(())
    }

    /// An SA took `spi`: it is no longer reserved.
    pub fn take(&mut self, spi: u32) {
        self.reserved.remove(&spi);
    }

    /// Lets go of the reservations [`RESERVED_FOR`] old; whether another
    /// may be made.
    fn room(&mut self, now: Instant) -> bool {
        while let Some(&(at, spi)) = self.order.front()
            && now.duration_since(at) >= RESERVED_FOR
        {
            self.order.pop_front();
            if self.reserved.get(&spi) == Some(&at) {
                self.reserved.remove(&spi);
            }
        }
        self.reserved.len() < MAX_RESERVED
    }

    fn hold(&mut self, spi: u32, now: Instant) {
        self.reserved.insert(spi, now);
        self.order.push_back((now, spi));
    }
}

/// Why [`SpiPool::reserve`] reserved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreserved {
    /// The SPI is reserved already, or an SA has it.
    Taken,
    /// [`MAX_RESERVED`] SPIs are reserved.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spis_are_in_range_distinct_and_skip_those_in_use() {
        let mut p = SpiPool::default();
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let spi = p.allocate(|s| s % 2 == 0, now).unwrap();
            assert!((FIRST..=LAST).contains(&spi));
            assert_eq!(spi % 2, 1, "an SPI in use was handed out");
            assert!(seen.insert(spi), "{spi:#x} handed out twice");
        }
    }

    #[test]
    fn reservations_are_bounded() {
        let mut p = SpiPool::default();
        let now = Instant::now();
        for _ in 0..MAX_RESERVED {
            p.allocate(|_| false, now).unwrap();
        }
        assert_eq!(p.allocate(|_| false, now), None);
        assert!(p.allocate(|_| false, now + RESERVED_FOR).is_some());
    }

    #[test]
    fn a_reservation_ends_when_taken_or_after_its_time() {
        let mut p = SpiPool::default();
        let now = Instant::now();
        let a = p.allocate(|_| false, now).unwrap();
        p.take(a);
        assert!(p.reserved.is_empty());
        p.allocate(|_| false, now).unwrap();
        p.allocate(|_| false, now + RESERVED_FOR).unwrap();
        assert_eq!(p.reserved.len(), 1, "the first reservation ended");
    }

    /// An SPI drawn on one node and reserved on the other is refused to
    /// both afterwards: neither hands it out, and a second reservation of
    /// it fails, until it is taken or its time is up.
    #[test]
    fn a_reserved_spi_is_neither_drawn_nor_reserved_again() {
        let mut p = SpiPool::default();
        let now = Instant::now();
        let spi = FIRST + 7;
        assert_eq!(p.reserve(spi, false, now), Ok(()));
        assert_eq!(p.reserve(spi, false, now), Err(Unreserved::Taken));
        assert_eq!(
            p.reserve(FIRST + 8, true, now),
            Err(Unreserved::Taken),
            "in use by an SA"
        );
        for _ in 0..5_000 {
            assert_ne!(p.allocate(|_| false, now), Some(spi));
        }
        assert_eq!(
            p.reserve(spi, false, now + RESERVED_FOR),
            Ok(()),
            "its time was up"
        );
        p.take(spi);
        assert_eq!(p.reserve(spi, false, now + RESERVED_FOR), Ok(()));
        let mut full = SpiPool::default();
        for _ in 0..MAX_RESERVED {
            full.allocate(|_| false, now).unwrap();
        }
        assert_eq!(full.reserve(1, false, now), Err(Unreserved::Full));
    }
}
