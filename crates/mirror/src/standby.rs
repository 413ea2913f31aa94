//! The standby table: the peer's SA state as its frames tell it, merged
//! field by field by maximum. Merging is commutative, associative and
//! idempotent, so lost, repeated and reordered frames all converge to the
//! same table once the newest state of each SA has arrived.
//!
//! Replay bitmaps merge as the union of the sequence numbers they mark,
//! relative to the highest top. That union is order-independent because an
//! SA's window size is fixed by its configuration, so every record of one
//! SA carries the same number of bitmap words: a bit that falls out of the
//! window under one top falls out under every higher one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use espgate_wire::Direction;
use espgate_wire::mirror::SaState;

/// What the table holds for one SA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Standby {
    /// Outbound: the highest lease heard. Inbound: the highest window top.
    pub value: u64,
    /// Bytes processed.
    pub bytes: u64,
    /// Packets processed.
    pub packets: u64,
    /// Outbound: the first sequence number past every one known to have
    /// gone out (0: not known); see [`SaState::sent_to`].
    pub sent_to: u64,
    /// Inbound: replay bitmap relative to `value` (bit `i` of word `w` is
    /// sequence number `value - (64 w + i)`).
    pub bitmap: Vec<u64>,
}

/// The peer's SAs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandbyTable {
    sas: HashMap<(u32, Direction), Standby>,
}

/// `bits` moved `by` positions away from the top (towards older sequence
/// numbers), keeping `words` words. The positions past what `bits`
/// covered are seen, as a window restored from a shorter bitmap holds
/// them (`ReplayWindow::restore`): left unseen, a longer bitmap merged
/// with it would reopen numbers the shorter one's sender accepted.
fn shifted(bits: &[u64], by: u64, words: usize) -> Vec<u64> {
    let mut out = vec![0u64; words];
    let covered = (bits.len() as u64 * 64).saturating_add(by);
    for k in covered..words as u64 * 64 {
        out[(k / 64) as usize] |= 1 << (k % 64);
    }
    let (wshift, bshift) = ((by / 64) as usize, (by % 64) as u32);
    for (w, &word) in bits.iter().enumerate() {
        let to = w + wshift;
        if to < words {
            out[to] |= word << bshift;
        }
        if bshift != 0 && to + 1 < words {
            out[to + 1] |= word >> (64 - bshift);
        }
    }
    out
}

/// Hashes the entries in key order: equal tables hash alike, whatever
/// order their maps hold them in.
impl Hash for StandbyTable {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut entries: Vec<_> = self.sas.iter().collect();
        entries.sort_unstable_by_key(|(k, _)| **k);
        entries.hash(state);
    }
}

impl StandbyTable {
    /// An empty table.
    pub fn new() -> Self {
        StandbyTable::default()
    }

    /// Merges one record; returns whether anything grew.
    pub fn merge(&mut self, s: &SaState) -> bool {
        let e = self.sas.entry((s.spi, s.dir)).or_default();
        let before = e.clone();
        let words = e.bitmap.len().max(s.bitmap.len());
        if s.dir == Direction::Inbound && (words > 0) {
            let (mine, theirs) = if s.value >= e.value {
                (
                    shifted(&e.bitmap, s.value - e.value, words),
                    shifted(&s.bitmap, 0, words),
                )
            } else {
                (
                    shifted(&e.bitmap, 0, words),
                    shifted(&s.bitmap, e.value - s.value, words),
                )
            };
            e.bitmap = mine.iter().zip(&theirs).map(|(a, b)| a | b).collect();
        }
        e.value = e.value.max(s.value);
        e.bytes = e.bytes.max(s.bytes);
        e.packets = e.packets.max(s.packets);
        e.sent_to = e.sent_to.max(s.sent_to);
        *e != before
    }

    /// Forgets an SA (deleted from the pair).
    pub fn remove(&mut self, spi: u32, dir: Direction) -> Option<Standby> {
        self.sas.remove(&(spi, dir))
    }

    /// What the table holds for an SA.
    pub fn get(&self, spi: u32, dir: Direction) -> Option<&Standby> {
        self.sas.get(&(spi, dir))
    }

    /// Every SA held, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ((u32, Direction), &Standby)> {
        self.sas.iter().map(|(k, v)| (*k, v))
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inbound(spi: u32, top: u64, bitmap: Vec<u64>, packets: u64) -> SaState {
        SaState {
            spi,
            dir: Direction::Inbound,
            value: top,
            bytes: packets * 100,
            packets,
            sent_to: 0,
            bitmap,
            copy: false,
        }
    }

    #[test]
    fn windows_merge_relative_to_the_newest_top() {
        let mut t = StandbyTable::new();
        t.merge(&inbound(1, 100, vec![0b1011], 3));
        t.merge(&inbound(1, 102, vec![0b1], 4));
        let s = t.get(1, Direction::Inbound).unwrap();
        assert_eq!(s.value, 102);
        // 102 seen; 100, 98, 97 seen (the old bits moved up by two).
        assert_eq!(s.bitmap[0], 0b1 | (0b1011 << 2));
        // An older record changes nothing.
        assert!(!t.merge(&inbound(1, 100, vec![0b1], 3)));
    }

    #[test]
    fn outbound_keeps_the_highest_lease() {
        let mut t = StandbyTable::new();
        let out = |lease, sent_to| SaState {
            spi: 9,
            dir: Direction::Outbound,
            value: lease,
            bytes: 0,
            packets: 0,
            sent_to,
            bitmap: vec![],
            copy: false,
        };
        assert!(t.merge(&out(2048, 1700)));
        assert!(!t.merge(&out(1024, 700)));
        assert!(t.merge(&out(3072, 0)));
        let s = t.get(9, Direction::Outbound).unwrap();
        assert_eq!((s.value, s.sent_to), (3072, 1700));
    }

    /// Records of SAs 1..=3; an inbound SA's bitmap has `spi` words, as
    /// its fixed window size gives it.
    fn record() -> impl Strategy<Value = SaState> {
        (
            1u32..4,
            prop_oneof![Just(Direction::Outbound), Just(Direction::Inbound)],
            0u64..300,
            0u64..10_000,
            proptest::collection::vec(any::<u64>(), 3),
        )
            .prop_map(|(spi, dir, value, n, bits)| SaState {
                spi,
                dir,
                value,
                bytes: n * 3,
                packets: n,
                sent_to: if dir == Direction::Outbound { n } else { 0 },
                bitmap: if dir == Direction::Inbound {
                    bits[..spi as usize].to_vec()
                } else {
                    vec![]
                },
                copy: false,
            })
    }

    proptest! {
        /// Loss aside, any order and any repetition of the same records
        /// gives the same table.
        #[test]
        fn merge_is_order_and_repeat_independent(records in proptest::collection::vec(record(), 1..30), seed: u64) {
            let mut a = StandbyTable::new();
            for r in &records {
                a.merge(r);
            }
            let mut shuffled = records.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            shuffled.extend(records.iter().take(5).cloned());
            let mut b = StandbyTable::new();
            for r in &shuffled {
                b.merge(r);
            }
            prop_assert_eq!(a, b);
        }
    }
}
