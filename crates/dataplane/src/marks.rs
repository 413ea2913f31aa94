//! A node's own memory of its numbers, sans-IO: the decisions of its
//! state directory (`state_dir` does the file IO).
//!
//! Per key (the SHA-256 of an SA's key material, never the key) the node
//! keeps a *mark*: the first sequence number (outbound) or window top
//! (inbound) no SA with that key may reach. A mark is durable before any
//! worker may use a number up to it: a worker's limit is the lower of its
//! mirror lease and the durable mark of its key. On start every SA is
//! placed at its key's mark (outbound: the next number; inbound: the top,
//! with everything below it seen), so no life of the node uses a number an
//! earlier one may have used, whatever the peer remembers.
//!
//! Marks are written ahead and in batches: an SA whose room (its mark less
//! its position) falls below half its reach asks for a write, and that
//! write moves *every* SA that moved since its mark was set to its
//! position plus its reach. One write is in flight at a time; what falls
//! due meanwhile goes in the next.
//!
//! An outbound SA's reach is `ahead`: a restart skips at most that many of
//! its numbers, which the far end follows (a forward step), so it can be
//! large and writes rare: about (fastest SA's rate) / (`ahead` / 2) a
//! second. An inbound SA cannot skip that way: a restart marks everything
//! up to its mark seen, and the far end's next packets, just above the
//! real top, are refused until it passes the mark. Its reach follows its
//! rate instead: the packets it accepted in the last [`INBOUND_REACH_MS`]
//! (at least [`MIN_INBOUND_REACH`], at most `ahead`), so a restart refuses
//! about that long of fresh packets and its writes come about every half
//! of it. The rate counts packets, not how far the top moved: the top
//! leaps over whatever the far end sent while the SA ran elsewhere (its
//! first packet back lands past them), and a leap read as traffic of the
//! last few milliseconds once wrote a mark tens of thousands ahead. One
//! that resumed at its mark writes none until its worker reports it (its
//! first packet refused at the mark), so lives and moves without traffic
//! leave the mark where it was.
//!
//! The record of keys is also what refuses key material used before (a
//! rekey, or a delete and add, with the same key would restart that key's
//! numbers), and it carries the mirror's epoch, so that a new epoch is
//! always above the last one whatever the wall clock says.

use std::collections::{BTreeMap, BTreeSet};

use espgate_esp::Direction;

/// The SHA-256 of an SA's key material.
pub type KeyDigest = [u8; 32];

/// How far ahead of an SA's position its mark is written by default: a
/// restart skips at most this many numbers of each SA; at 10 Mpps on one
/// SA the node writes about 20 times a second.
pub const DEFAULT_AHEAD: u64 = 1 << 20;

/// The largest `ahead`: a restart's skip, added to a failover cycle's
/// jumps, must stay within a receiver's ESN inference (as the mirror's
/// `MAX_TAKEOVER_JUMP`).
pub const MAX_AHEAD: u64 = 1 << 28;

/// The smallest `ahead` (below it the node would write for every few
/// hundred packets).
pub const MIN_AHEAD: u64 = 1024;

/// The smallest reach of an inbound SA: what a restart refuses of a slow
/// SA's fresh packets (a fast one's reach follows its rate).
pub const MIN_INBOUND_REACH: u64 = 256;

/// An inbound SA's reach is what it accepted in this long (see above).
pub const INBOUND_REACH_MS: u64 = 100;

/// The digest recorded for an SA's key material.
pub fn key_digest(key: &[u8]) -> KeyDigest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The last SA of the node that used a key, and the key's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMark {
    /// Its SPI.
    pub spi: u32,
    /// Its direction.
    pub direction: Direction,
    /// No SA with the key uses or accepts a number at or above it.
    pub mark: u64,
}

/// What a node's state holds, written whole each time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// The last mirror epoch this node used (0: none yet).
    pub epoch: u64,
    /// Every key any SA of this node ever used, with its mark.
    pub keys: BTreeMap<KeyDigest, KeyMark>,
}

/// The epoch of a new life: the wall clock's (nanoseconds since 1970, if
/// the clock is past it), but always above the last one, so a clock
/// stepped back never repeats an epoch nor goes below one.
pub fn next_epoch(wall: Option<u64>, last: u64) -> u64 {
    wall.unwrap_or(0).max(last.saturating_add(1))
}

/// An SA running on the node.
#[derive(Debug, Clone, Copy)]
struct Live {
    key: KeyDigest,
    /// The highest number it used (outbound) or its window top (inbound).
    pos: u64,
    /// The packets it accepted (inbound; counts an earlier owner's too).
    packets: u64,
    /// Its packet count, and the time, as its key's mark was last set (an
    /// inbound SA's rate).
    base: (u64, u64),
    /// Whether its worker reported it since it started here: an inbound
    /// SA that received nothing needs no mark past the one it resumed at.
    heard: bool,
    /// The last number it used (outbound) or its window top (inbound) as
    /// it left the node exactly (handed to the peer from its worker's
    /// final state): nothing of this life goes past it unless it runs here
    /// again (moved), so its key's mark falls to just past it.
    left_at: Option<u64>,
    /// Which of the SAs followed so far it is (see [`Ledger::serial`]).
    serial: u64,
}

/// The marks' decisions: what is durable, what to write next, what limit
/// each SA has.
#[derive(Debug)]
pub struct Ledger {
    ahead: u64,
    durable: Saved,
    live: BTreeMap<(u32, Direction), Live>,
    /// The write in flight.
    writing: Option<Saved>,
    /// The serial of the last SA followed.
    serials: u64,
    /// Keys of SAs deleted in this life: whatever they used stays under
    /// the mark, so the last write lowers none of them.
    retired: BTreeSet<KeyDigest>,
    /// The epoch to write with the next batch.
    epoch: u64,
}

impl Ledger {
    /// A ledger over what the state held (`Saved::default()` if nothing).
    pub fn new(saved: Saved, ahead: u64) -> Self {
        Ledger {
            ahead: ahead.clamp(MIN_AHEAD, MAX_AHEAD),
            epoch: saved.epoch,
            durable: saved,
            live: BTreeMap::new(),
            writing: None,
            retired: BTreeSet::new(),
            serials: 0,
        }
    }

    /// Sets the epoch the next write carries (before the first frame).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The durable mark of a key: where an SA with it resumes; `None` if
    /// no SA of this node used it as far as the state knows.
    pub fn mark_of(&self, key: &KeyDigest) -> Option<u64> {
        self.durable.keys.get(key).map(|k| k.mark)
    }

    /// The SA that used a key, if any did: running now (its first write
    /// may be in flight) or in the durable record.
    pub fn used_by(&self, key: &KeyDigest) -> Option<(u32, Direction)> {
        self.live
            .iter()
            .find(|(_, l)| l.key == *key)
            .map(|(k, _)| *k)
            .or_else(|| self.durable.keys.get(key).map(|k| (k.spi, k.direction)))
    }

    /// Starts following an SA with key `key` standing at `pos`.
    pub fn track(&mut self, spi: u32, direction: Direction, key: KeyDigest, pos: u64) {
        self.serials += 1;
        let live = Live {
            serial: self.serials,
            key,
            pos,
            packets: 0,
            base: (0, u64::MAX),
            heard: false,
            left_at: None,
        };
        self.live.insert((spi, direction), live);
    }

    /// Stops following an SA (deleted); its key's record stays.
    pub fn forget(&mut self, spi: u32, direction: Direction) {
        if let Some(l) = self.live.remove(&(spi, direction)) {
            self.retired.insert(l.key);
        }
    }

    /// An SA reached `pos` (reported by its worker), an inbound one
    /// having accepted `packets` so far if the report says.
    pub fn progress(&mut self, spi: u32, direction: Direction, pos: u64, packets: Option<u64>) {
        if let Some(l) = self.live.get_mut(&(spi, direction)) {
            l.pos = l.pos.max(pos);
            l.packets = l.packets.max(packets.unwrap_or(0));
            l.heard = true;
        }
    }

    /// An SA was moved to `pos` (a takeover, a restart past an earlier
    /// life) with its packet count raised to `packets` (an earlier
    /// owner's): it stands there, but neither is traffic, so an inbound
    /// SA's rate leaves both out. (Counted as traffic, each jump made the
    /// next mark reach further, and the restart after it jump further.)
    pub fn moved(&mut self, spi: u32, direction: Direction, pos: u64, packets: u64) {
        if let Some(l) = self.live.get_mut(&(spi, direction)) {
            l.left_at = None;
            l.pos = l.pos.max(pos);
            if packets > l.packets {
                l.base.0 = l.base.0.saturating_add(packets - l.packets);
                l.packets = packets;
            }
        }
    }

    /// Which SA the ledger follows under (`spi`, `direction`) now: a
    /// number no other SA followed in this life had, so an exit noted for
    /// an SA deleted since lands on no SA added under its SPI after it.
    pub fn serial(&self, spi: u32, direction: Direction) -> Option<u64> {
        self.live.get(&(spi, direction)).map(|l| l.serial)
    }

    /// SA `serial` left the node exactly at `last` (the last number it used, or
    /// its window top): handed to the peer from its worker's final state
    /// (or past every limit a stalled worker was given), parked here until
    /// it is moved again. It wants no mark further, and the node's last
    /// write ([`last_batch`](Self::last_batch)) lowers its key's mark to
    /// just past `last`.
    pub fn left(&mut self, spi: u32, direction: Direction, serial: u64, last: u64) {
        if let Some(l) = self.live.get_mut(&(spi, direction))
            && l.serial == serial
        {
            l.left_at = Some(last);
        }
    }

    /// The node's last write, once no worker runs any more: the durable
    /// record with the mark of every key whose SAs all left exactly (see
    /// [`left`](Self::left)) lowered to just past where they left, if that
    /// lowers any; a key an SA deleted in this life had keeps its mark. A
    /// next life then resumes just past what this one used instead of a
    /// reach ahead, so when this node comes back the peer, which ran on
    /// from there, is not sent past its own position (a failback's start,
    /// a restart's floors). Lower is safe then and only
    /// then: the mark bounds this node's own use, which is over; the
    /// peer's is bounded by what the peer stores and writes. (Lowered in
    /// a running life, a write could land after the SA ran here again.)
    pub fn last_batch(&self) -> Option<Saved> {
        // Per key, past every SA with it; none if one still runs here.
        let mut past: BTreeMap<KeyDigest, Option<u64>> =
            self.retired.iter().map(|k| (*k, None)).collect();
        for l in self.live.values() {
            let e = past.entry(l.key).or_insert(Some(0));
            *e = e
                .zip(l.left_at)
                .map(|(m, last)| m.max(last.saturating_add(1)));
        }
        let mut next = self.durable.clone();
        let mut lowered = false;
        for (key, mark) in past {
            if let (Some(mark), Some(e)) = (mark, next.keys.get_mut(&key))
                && mark < e.mark
            {
                e.mark = mark;
                lowered = true;
            }
        }
        lowered.then_some(next)
    }

    /// The limit an SA's worker may run to: its key's durable mark (0
    /// before its first write).
    pub fn limit(&self, spi: u32, direction: Direction) -> u64 {
        self.live
            .get(&(spi, direction))
            .and_then(|l| self.mark_of(&l.key))
            .unwrap_or(0)
    }

    /// How far past an SA its mark goes at `now_ms`: `ahead` outbound;
    /// inbound, the packets it accepted in the last `INBOUND_REACH_MS`
    /// (within `MIN_INBOUND_REACH..=ahead`; the least before a rate is
    /// known), from a count over at least a tenth of that (a burst in the
    /// millisecond after a write is no rate).
    fn reach(&self, d: Direction, l: &Live, now_ms: u64) -> u64 {
        match d {
            Direction::Outbound => self.ahead,
            Direction::Inbound => {
                let (packets, at) = l.base;
                let ms = now_ms.saturating_sub(at).max(INBOUND_REACH_MS / 10);
                let moved = l.packets.saturating_sub(packets);
                let r = if at > now_ms {
                    0
                } else {
                    moved.saturating_mul(INBOUND_REACH_MS) / ms
                };
                r.clamp(MIN_INBOUND_REACH, self.ahead)
            }
        }
    }

    /// The mark each key needs at `now_ms`, and the room below which it
    /// is due: past every live SA with it, by its reach. An inbound SA
    /// that resumed at its key's mark and has received nothing since needs
    /// none further: its worker accepts nothing at or past the mark, and
    /// reports the first packet it refuses there (then it is heard).
    /// Written ahead regardless, each start of a node, each takeover and
    /// each move would push the mark on without a packet, and the far end,
    /// whose numbers move only with its traffic, would fall ever further
    /// below the window a restart begins at.
    fn wanted(&self, now_ms: u64) -> BTreeMap<KeyDigest, (u32, Direction, u64, u64)> {
        let mut want: BTreeMap<KeyDigest, (u32, Direction, u64, u64)> = BTreeMap::new();
        for (&(spi, d), l) in &self.live {
            if l.left_at.is_some()
                || d == Direction::Inbound && !l.heard && self.mark_of(&l.key).is_some()
            {
                continue;
            }
            let reach = self.reach(d, l, now_ms);
            let m = l.pos.saturating_add(1).saturating_add(reach);
            let e = want.entry(l.key).or_insert((spi, d, m, reach));
            if m > e.2 {
                *e = (spi, d, m, reach);
            }
        }
        want
    }

    /// Whether at `now_ms` some SA's room is below half its reach (or it
    /// has no mark yet), or the epoch is not written yet.
    pub fn due(&self, now_ms: u64) -> bool {
        self.epoch != self.durable.epoch
            || self
                .wanted(now_ms)
                .iter()
                .any(|(k, w)| self.mark_of(k).is_none_or(|m| m < w.2 - w.3 / 2))
    }

    /// The next content to write at `now_ms`, if one is due and none is in
    /// flight: the durable record with every key whose SAs moved since its
    /// mark set past them by their reach.
    pub fn batch(&mut self, now_ms: u64) -> Option<Saved> {
        if self.writing.is_some() || !self.due(now_ms) {
            return None;
        }
        let mut next = self.durable.clone();
        next.epoch = self.epoch;
        let wanted = self.wanted(now_ms);
        for l in self.live.values_mut() {
            if wanted
                .get(&l.key)
                .is_some_and(|w| w.2 > next.keys.get(&l.key).map_or(0, |k| k.mark))
            {
                l.base = (l.packets, now_ms);
            }
        }
        for (key, (spi, direction, mark, _)) in wanted {
            let e = next.keys.entry(key).or_insert(KeyMark {
                spi,
                direction,
                mark: 0,
            });
            if mark > e.mark {
                *e = KeyMark {
                    spi,
                    direction,
                    mark,
                };
            }
        }
        self.writing = Some(next.clone());
        Some(next)
    }

    /// The batch in flight is durable; returns the SAs whose limit rose,
    /// with their new limit.
    pub fn written(&mut self) -> Vec<(u32, Direction, u64)> {
        let Some(next) = self.writing.take() else {
            return Vec::new();
        };
        let before: Vec<u64> = self.live.keys().map(|&(s, d)| self.limit(s, d)).collect();
        self.durable = next;
        self.live
            .keys()
            .zip(before)
            .filter_map(|(&(spi, d), was)| {
                let now = self.limit(spi, d);
                (now > was).then_some((spi, d, now))
            })
            .collect()
    }

    /// The batch in flight failed: nothing changed; the next one retries.
    pub fn failed(&mut self) {
        self.writing = None;
    }

    /// What the state holds now.
    pub fn durable(&self) -> &Saved {
        &self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OUT: Direction = Direction::Outbound;
    const IN: Direction = Direction::Inbound;

    fn key(n: u8) -> KeyDigest {
        key_digest(&[n; 20])
    }

    fn write(l: &mut Ledger) -> Vec<(u32, Direction, u64)> {
        assert!(l.batch(0).is_some(), "a write is due");
        l.written()
    }

    #[test]
    fn a_new_sa_runs_only_once_its_first_mark_is_durable() {
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        assert_eq!(l.limit(1, OUT), 0);
        let b = l.batch(0).unwrap();
        assert_eq!(b.keys[&key(1)].mark, 4097);
        assert_eq!(l.limit(1, OUT), 0, "not before the write is durable");
        assert!(l.batch(0).is_none(), "one write in flight");
        assert_eq!(l.written(), vec![(1, OUT, 4097)]);
        assert!(!l.due(0));
    }

    #[test]
    fn a_mark_is_renewed_half_way_and_the_batch_takes_every_sa_that_moved() {
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        l.track(2, IN, key(2), 0);
        l.track(3, OUT, key(3), 0);
        write(&mut l);
        l.progress(1, OUT, 2000, None);
        l.progress(2, IN, 1, Some(1));
        assert!(!l.due(0), "more than half the room left");
        l.progress(1, OUT, 2049, None);
        assert!(l.due(0));
        let raised = write(&mut l);
        // The inbound SA's reach is its rate's (here at least its least).
        assert_eq!(
            raised,
            vec![(1, OUT, 2050 + 4096), (2, IN, 2 + MIN_INBOUND_REACH)]
        );
        assert_eq!(l.limit(3, OUT), 4097, "SA 3 did not move: its mark stays");
    }

    #[test]
    fn an_inbound_mark_reaches_as_far_as_its_rate_carries_it_in_a_while() {
        let mut l = Ledger::new(Saved::default(), 1 << 20);
        l.track(2, IN, key(2), 0);
        assert_eq!(write_at(&mut l, 0), vec![(2, IN, 1 + MIN_INBOUND_REACH)]);
        // 50 000 packets a second: 5 000 in INBOUND_REACH_MS.
        l.progress(2, IN, 1000, Some(1000));
        assert_eq!(write_at(&mut l, 20), vec![(2, IN, 1001 + 5000)]);
        l.progress(2, IN, 3000, Some(3000));
        assert!(!l.due(60), "more than half its reach left");
        l.progress(2, IN, 3600, Some(3600));
        assert_eq!(write_at(&mut l, 72), vec![(2, IN, 3601 + 5000)]);
        // Idle: its reach falls back to its least, and nothing is due.
        assert!(!l.due(10_000));
    }

    #[test]
    fn a_jump_is_no_traffic_for_an_inbound_mark() {
        let mut l = Ledger::new(Saved::default(), 1 << 20);
        l.track(2, IN, key(2), 0);
        write_at(&mut l, 0);
        l.progress(2, IN, 1000, Some(1000));
        assert_eq!(write_at(&mut l, 20), vec![(2, IN, 1001 + 5000)]);
        // Moved a million on (a restart past an earlier life), then 50
        // packets in 10 ms: its reach is its traffic's (500 in 100 ms),
        // not the jump's.
        l.moved(2, IN, 1_001_000, 1000);
        l.progress(2, IN, 1_001_050, Some(1050));
        assert_eq!(write_at(&mut l, 30), vec![(2, IN, 1_001_051 + 500)]);
    }

    #[test]
    fn a_top_that_leaps_over_packets_sent_elsewhere_is_no_traffic() {
        // Seen in a chaos run: an SA handed back at 13 704 whose far end
        // had sent 677 packets to the node while it ran elsewhere. Its
        // first packet back put the top at 14 381 a few milliseconds after
        // a write; read as traffic, that was a rate of 11 000 per 100 ms,
        // and the next life resumed 11 000 past the far end.
        let mut l = Ledger::new(Saved::default(), 1 << 20);
        l.track(2, IN, key(2), 0);
        write_at(&mut l, 0);
        l.progress(2, IN, 13_000, Some(5_000));
        write_at(&mut l, 100_000);
        // Handed back with the peer's count (packets it accepted are no
        // traffic here), and written at once.
        l.moved(2, IN, 13_704, 5_600);
        write_at(&mut l, 100_010);
        l.progress(2, IN, 14_381, Some(5_601));
        l.progress(2, IN, 14_390, Some(5_610));
        assert!(l.due(100_020), "the leap went past the mark");
        assert_eq!(
            write_at(&mut l, 100_020),
            vec![(2, IN, 14_391 + MIN_INBOUND_REACH)],
            "10 packets in 10 ms: the least reach"
        );
        // A burst right after a write is counted over at least a tenth of
        // the reach's time: 200 packets in 1 ms reach 2 000, not 20 000.
        l.progress(2, IN, 14_590, Some(5_810));
        assert_eq!(write_at(&mut l, 100_021), vec![(2, IN, 14_591 + 2_000)]);
    }

    #[test]
    fn the_last_write_lowers_the_marks_of_sas_that_left_exactly() {
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        l.track(2, IN, key(2), 0);
        l.track(3, IN, key(3), 0);
        write(&mut l);
        l.progress(1, OUT, 100, None);
        l.progress(2, IN, 100, Some(100));
        l.progress(3, IN, 100, Some(100));
        write_at(&mut l, 10);
        assert!(l.last_batch().is_none(), "nothing left: nothing to lower");
        // Outbound SA 1 and inbound SA 2 handed over exactly; SA 3 left,
        // came back and runs.
        l.left(1, OUT, l.serial(1, OUT).unwrap(), 120);
        l.left(2, IN, l.serial(2, IN).unwrap(), 130);
        l.left(3, IN, l.serial(3, IN).unwrap(), 140);
        l.moved(3, IN, 150, 100);
        // Parked, a far end's packet refused here wants no mark.
        l.progress(2, IN, 5_000, None);
        assert!(!l.due(20), "an SA that left wants no mark further");
        let last = l.last_batch().expect("two marks fall");
        assert_eq!(last.keys[&key(1)].mark, 121);
        assert_eq!(
            last.keys[&key(2)].mark,
            131,
            "a packet refused while parked was not accepted"
        );
        assert_eq!(
            last.keys[&key(3)].mark,
            l.durable().keys[&key(3)].mark,
            "moved again: its mark stays"
        );
    }

    #[test]
    fn an_exit_noted_for_a_deleted_sa_lands_on_none_added_under_its_spi() {
        // Reader35: the mirror task hands over an SA stopped before its
        // delete reached it, while an SA with the same SPI and a new key
        // is already followed; that one runs without a move.
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        write(&mut l);
        let old = l.serial(1, OUT).unwrap();
        l.forget(1, OUT);
        l.track(1, OUT, key(2), 0);
        write(&mut l);
        l.progress(1, OUT, 3000, None);
        l.left(1, OUT, old, 10);
        let last = l.last_batch();
        assert!(
            last.is_none_or(|s| s.keys[&key(2)].mark > 3000),
            "the new SA's key keeps its mark"
        );
    }

    #[test]
    fn a_key_still_running_here_keeps_its_mark() {
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        l.track(2, OUT, key(1), 0);
        write(&mut l);
        l.left(1, OUT, l.serial(1, OUT).unwrap(), 10);
        assert!(l.last_batch().is_none(), "SA 2 shares the key and runs");
        l.left(2, OUT, l.serial(2, OUT).unwrap(), 30);
        assert_eq!(l.last_batch().unwrap().keys[&key(1)].mark, 31);
    }

    #[test]
    fn an_inbound_sa_that_receives_nothing_keeps_the_mark_it_resumed_at() {
        let mut l = Ledger::new(Saved::default(), 1 << 20);
        l.track(2, IN, key(2), 0);
        write_at(&mut l, 0);
        l.progress(2, IN, 100, Some(100));
        assert_eq!(write_at(&mut l, 10), vec![(2, IN, 101 + 1000)]);
        // Restarts, and moves (takeovers, a peer's new life) without a
        // packet: no write, the mark stays where the last traffic put it.
        for life in 0..3u64 {
            let saved = l.durable().clone();
            l = Ledger::new(saved, 1 << 20);
            l.track(2, IN, key(2), 1101);
            l.moved(2, IN, 1101 + 64 * (life + 1), 0);
            assert!(!l.due(1_000), "life {life}: nothing received, nothing due");
            assert_eq!(l.limit(2, IN), 1101);
        }
        // The first packet refused at the mark is reported: a mark past it.
        l.progress(2, IN, 1300, None);
        assert_eq!(
            write_at(&mut l, 1_000),
            vec![(2, IN, 1301 + MIN_INBOUND_REACH)]
        );
        // An outbound SA still writes ahead as it resumes (its far end
        // follows a skip).
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        write(&mut l);
        let mut l = Ledger::new(l.durable().clone(), 4096);
        l.track(1, OUT, key(1), 4096);
        assert_eq!(write(&mut l), vec![(1, OUT, 4097 + 4096)]);
    }

    fn write_at(l: &mut Ledger, now: u64) -> Vec<(u32, Direction, u64)> {
        assert!(l.batch(now).is_some(), "a write is due at {now}");
        l.written()
    }

    #[test]
    fn a_failed_write_changes_nothing_and_is_tried_again() {
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        l.batch(0).unwrap();
        l.failed();
        assert_eq!(l.limit(1, OUT), 0);
        assert_eq!(write(&mut l), vec![(1, OUT, 4097)]);
    }

    #[test]
    fn used_keys_are_known_live_or_from_an_earlier_life() {
        let mut l = Ledger::new(Saved::default(), 4096);
        l.track(1, OUT, key(1), 0);
        assert_eq!(l.used_by(&key(1)), Some((1, OUT)), "live, before its write");
        write(&mut l);
        l.forget(1, OUT);
        let saved = l.durable().clone();
        let l = Ledger::new(saved, 4096);
        assert_eq!(
            l.used_by(&key(1)),
            Some((1, OUT)),
            "deleted, still recorded"
        );
        assert_eq!(l.mark_of(&key(1)), Some(4097));
        assert_eq!(l.used_by(&key(2)), None);
    }

    #[test]
    fn an_epoch_never_repeats_nor_goes_back() {
        assert_eq!(next_epoch(Some(1_000), 0), 1_000);
        assert_eq!(next_epoch(Some(1_000), 5_000), 5_001, "clock stepped back");
        assert_eq!(next_epoch(None, 0), 1, "a clock before 1970");
        assert_eq!(next_epoch(None, 1), 2, "and again");
        let mut l = Ledger::new(Saved::default(), 4096);
        l.set_epoch(7);
        assert!(l.due(0), "a new epoch is written before the first frame");
        assert_eq!(l.batch(0).unwrap().epoch, 7);
    }

    /// What happens to a node with one SA per key: workers move, writes
    /// start and end (or fail), the node dies and restarts from what is
    /// durable.
    #[derive(Debug, Clone)]
    enum Step {
        Send(usize, u64),
        Write { fail: bool },
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0usize..3, 1u64..5000).prop_map(|(s, n)| Step::Send(s, n)),
            3 => any::<bool>().prop_map(|fail| Step::Write { fail }),
            1 => Just(Step::Restart),
        ]
    }

    proptest! {
        /// Workers never pass a durable mark, a restart places every SA
        /// past every number any earlier life used, and writes stay few.
        #[test]
        fn no_number_is_used_twice_across_restarts(steps in prop::collection::vec(step(), 1..200)) {
            const AHEAD: u64 = 4096;
            let mut l = Ledger::new(Saved::default(), AHEAD);
            // Per SA: its position now, and every number used so far.
            let mut pos = [0u64; 3];
            let mut used: Vec<Vec<(u64, u64)>> = vec![Vec::new(); 3];
            for (s, p) in pos.iter().enumerate() {
                l.track(s as u32, OUT, key(s as u8), *p);
            }
            let mut writes = 0u64;
            let mut restarts = 0u64;
            let mut sent = 0u64;
            for st in steps {
                match st {
                    Step::Send(s, n) => {
                        // A worker runs up to its limit, never past it.
                        let limit = l.limit(s as u32, OUT);
                        let to = (pos[s] + n).min(limit.saturating_sub(1)).max(pos[s]);
                        if to > pos[s] {
                            used[s].push((pos[s] + 1, to));
                            sent += to - pos[s];
                            pos[s] = to;
                            l.progress(s as u32, OUT, to, None);
                        }
                    }
                    Step::Write { fail } => {
                        if l.batch(0).is_some() {
                            if fail { l.failed() } else { l.written(); writes += 1; }
                        }
                    }
                    Step::Restart => {
                        restarts += 1;
                        let saved = l.durable().clone();
                        l = Ledger::new(saved, AHEAD);
                        for (s, p) in pos.iter_mut().enumerate() {
                            let next = l.mark_of(&key(s as u8)).unwrap_or(1);
                            prop_assert!(
                                used[s].iter().all(|&(_, hi)| hi < next),
                                "SA {s} restarts at {next} below a used number"
                            );
                            *p = next - 1;
                            l.track(s as u32, OUT, key(s as u8), *p);
                        }
                    }
                }
            }
            // Beyond the first write of each life, each write lets an SA
            // move at least half of `ahead`.
            let bound = 1 + restarts + 3 * (sent / (AHEAD / 2) + 1);
            prop_assert!(writes <= bound, "{writes} writes for {sent} numbers, {restarts} restarts");
        }
    }
}
