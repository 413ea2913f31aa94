//! Bulk sync in numbered parts: the bulk this node builds for the peer's
//! life and sends again whole at each of its requests, and the parts of the
//! peer's bulk this node gathers until it holds every one.
//!
//! A bulk is complete when each of its parts arrived once, in any sending:
//! a part lost in one sending comes in the next. A bulk that had to be
//! received in one unbroken run of frames almost never completed over a
//! lossy link once it took more than a few frames (a pair with many
//! histories, or large replay windows, at 50 % loss).

use std::hash::{DefaultHasher, Hash, Hasher};

use espgate_wire::mirror::{self, MirrorRecord, SaState};

use super::{Mirror, MirrorEvent, OwnerRecord, OwnershipKind, SaKey, ownership_record};

/// The bulk record beside a part's records.
const PART_LEN: usize = mirror::RECORD_HEADER_LEN + 16;
/// What a frame may carry before a part: a bulk request and a heartbeat.
const BEFORE_PART: usize = 2 * mirror::RECORD_HEADER_LEN + 24;
/// The most parts a bulk this node gathers may have (about 100 million
/// records: far past the million SAs a pair is built for); a part record
/// beyond it is ignored.
const MAX_PARTS: u32 = 1 << 22;

/// A bulk built for the peer's current life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BulkOut {
    /// Its number in this node's life.
    number: u64,
    /// What it says of the pair ([`Mirror::bulk_print`]): while that holds,
    /// a request is answered with this bulk again, under its number.
    print: u64,
    /// Its records, a frame's worth each.
    parts: Vec<Vec<MirrorRecord>>,
    /// The next part to send, while a sending is under way.
    next: Option<usize>,
}

/// The parts of one of the peer's bulks that arrived.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BulkIn {
    number: u64,
    /// One bit per part.
    got: Vec<u64>,
    missing: u32,
    /// SA states the parts that arrived carried.
    states: u64,
}

impl BulkIn {
    fn new(number: u64, parts: u32) -> Self {
        BulkIn {
            number,
            got: vec![0; parts.div_ceil(64) as usize],
            missing: parts,
            states: 0,
        }
    }

    fn parts(&self) -> u32 {
        self.missing + self.got.iter().map(|w| w.count_ones()).sum::<u32>()
    }

    /// Takes part `part` in; returns whether it is new.
    fn take(&mut self, part: u32, states: u64) -> bool {
        let (w, bit) = ((part / 64) as usize, 1u64 << (part % 64));
        if self.got[w] & bit != 0 {
            return false;
        }
        self.got[w] |= bit;
        self.missing -= 1;
        self.states += states;
        true
    }
}

impl Mirror {
    /// The peer asks for a bulk sync. Unless a sending is under way, the
    /// bulk built for its life goes again if the pair is as it was then,
    /// else a new one is built and sent.
    pub(super) fn bulk_requested(&mut self) {
        if self.bulk_out.as_ref().is_some_and(|b| b.next.is_some()) {
            return;
        }
        let print = self.bulk_print();
        match self.bulk_out.as_mut() {
            Some(b) if b.print == print => b.next = Some(0),
            _ => self.build_bulk(print),
        }
    }

    /// What a bulk says of the pair, as a hash: every SA's owner and
    /// generation, which SAs run here, and the copies and histories the
    /// standby table holds for the peer. Not the states of the SAs that
    /// run here: they grow with traffic, and an earlier one only understates
    /// what the peer hears anyway (states, unlike the rest, go on after the
    /// bulk too).
    fn bulk_print(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for (k, p) in &self.pair {
            (k, p.owner, p.generation).hash(&mut h);
        }
        self.owned_keys().hash(&mut h);
        for (k, s) in self.bulk_copies() {
            (k, s).hash(&mut h);
        }
        self.bulk_histories().hash(&mut h);
        h.finish()
    }

    /// The copies a bulk carries: the standby state of each SA the peer
    /// owns, in key order.
    fn bulk_copies(&self) -> Vec<(SaKey, SaState)> {
        let peer = self.cfg.peer;
        self.pair
            .iter()
            .filter(|(_, p)| p.owner == peer)
            .filter_map(|(&(spi, dir), _)| {
                self.standby.get(spi, dir).map(|s| {
                    let copy = SaState {
                        spi,
                        dir,
                        value: s.value,
                        bytes: s.bytes,
                        packets: s.packets,
                        bitmap: s.bitmap.clone(),
                        copy: true,
                    };
                    ((spi, dir), copy)
                })
            })
            .collect()
    }

    /// The histories a bulk carries, in key order: SAs no longer
    /// configured keep their history on both nodes (a restarted peer that
    /// gets one of them again starts past it), and so do SAs added again
    /// here that wait for the peer's word (their state goes once it is in:
    /// this node may die before then).
    fn bulk_histories(&self) -> Vec<(SaKey, u64)> {
        let mut retired: Vec<(SaKey, u64)> = self
            .standby
            .iter()
            .filter(|(k, _)| !self.pair.contains_key(k) || self.asking.contains(k))
            .map(|(k, s)| (k, s.value))
            .collect();
        retired.sort_unstable();
        retired
    }

    /// Builds a bulk sync for the peer and begins sending it: ownership of
    /// every SA, the state of every SA owned here, copies of the peer's SAs
    /// from the standby table and the histories, in parts that each fit a
    /// frame with a bulk request and a heartbeat beside them.
    fn build_bulk(&mut self, print: u64) {
        let owners: Vec<(SaKey, OwnerRecord)> = self
            .pair
            .iter()
            .map(|(k, p)| {
                let r = (
                    p.owner,
                    p.generation,
                    self.bound(k.0, k.1),
                    OwnershipKind::Change,
                );
                (*k, r)
            })
            .collect();
        // Sent again at every refresh until confirmed, like any change.
        self.unconfirmed.extend(owners.iter().cloned());
        let mut records: Vec<MirrorRecord> = owners
            .into_iter()
            .map(|(k, r)| ownership_record(k, r))
            .collect();
        for (spi, dir) in self.owned_keys() {
            if let Some(s) = self.state_record(spi, dir) {
                self.stats.states_sent += 1;
                records.push(MirrorRecord::SaState(s));
            }
        }
        let copies = self.bulk_copies();
        let histories = self.bulk_histories();
        if self.bulk_told.is_none() {
            let sent = copies.iter().map(|(k, c)| (*k, c.value));
            self.bulk_told = Some(sent.chain(histories.iter().copied()).collect());
        }
        records.extend(copies.into_iter().map(|(_, c)| MirrorRecord::SaState(c)));
        records.extend(
            histories
                .into_iter()
                .map(|((spi, dir), v)| MirrorRecord::History {
                    spi,
                    dir,
                    value: Some(v),
                }),
        );
        let room = self
            .cfg
            .max_frame
            .saturating_sub(mirror::HEADER_LEN + mirror::MAC_LEN + PART_LEN + BEFORE_PART);
        let mut parts: Vec<Vec<MirrorRecord>> = vec![Vec::new()];
        let mut size = 0;
        for r in records {
            let len = r.buffer_len();
            let last = parts.last_mut().expect("one part at least");
            if size + len > room && !last.is_empty() {
                parts.push(Vec::new());
                size = 0;
            }
            parts.last_mut().expect("one part at least").push(r);
            size += len;
        }
        self.bulks_built += 1;
        self.bulk_out = Some(BulkOut {
            number: self.bulks_built,
            print,
            parts,
            next: Some(0),
        });
    }

    /// The records of the next part to send, with its bulk record first,
    /// if a sending is under way and the part fits in `room` bytes. The
    /// last part of a sending ends it: the peer's life may run SAs from
    /// then on (see [`bulk_sent`](Self::bulk_sent)).
    pub(super) fn next_part(&mut self, room: usize) -> Option<Vec<MirrorRecord>> {
        let b = self.bulk_out.as_mut()?;
        let at = b.next?;
        let part = &b.parts[at];
        let len = PART_LEN + part.iter().map(MirrorRecord::buffer_len).sum::<usize>();
        if len > room {
            return None;
        }
        let parts = b.parts.len();
        let mut out = Vec::with_capacity(part.len() + 1);
        out.push(MirrorRecord::BulkPart {
            bulk: b.number,
            part: at as u32,
            parts: parts as u32,
        });
        out.extend(part.iter().cloned());
        b.next = (at + 1 < parts).then_some(at + 1);
        if at + 1 == parts {
            self.peer_ran = true;
            self.bulk_sent();
        }
        Some(out)
    }

    /// Whether a part waits to be sent.
    pub(super) fn part_pending(&self) -> bool {
        self.bulk_out.as_ref().is_some_and(|b| b.next.is_some())
    }

    /// The peer's life ended, or it has synchronised: the bulk built for it
    /// is of no more use.
    pub(super) fn drop_bulk_out(&mut self) {
        self.bulk_out = None;
    }

    /// Part `part` of the peer's bulk `bulk` of `parts` parts arrived, with
    /// `states` SA states beside it. When it is the last one missing, this
    /// node has the whole bulk and synchronises; when it is the sending's
    /// last part and some are missing, it asks again at once.
    pub(super) fn part_received(&mut self, bulk: u64, part: u32, parts: u32, states: u64) {
        if self.synced {
            return;
        }
        if parts == 0 || parts > MAX_PARTS || part >= parts {
            self.stats.records_ignored += 1;
            return;
        }
        let current = self
            .bulk_in
            .as_ref()
            .is_some_and(|b| b.number == bulk && b.parts() == parts);
        if !current {
            self.bulk_in = Some(BulkIn::new(bulk, parts));
        }
        let b = self.bulk_in.as_mut().expect("set above");
        b.take(part, states);
        if b.missing == 0 {
            let states = b.states;
            self.bulk_in = None;
            self.bulk_complete(states);
        } else if part + 1 == parts {
            // Parts of this sending were lost: the next sends them again.
            self.bulk_request = true;
            self.stats.bulks_incomplete += 1;
        }
    }

    /// Every part of the peer's bulk is in: this node synchronises. Nothing
    /// stored about an SA does not mean it was never used: an earlier life
    /// may have run within its slack while the peer heard nothing. Each
    /// restarts past what is stored of it, too: a copy of the bulk stored
    /// before the SA was added here (the host added it while the bulk was
    /// on its way) was never recovered from.
    fn bulk_complete(&mut self, states: u64) {
        for (spi, dir) in self.owned_keys() {
            let (value, bitmap) = self
                .standby
                .get(spi, dir)
                .map_or((0, Vec::new()), |s| (s.value, s.bitmap.clone()));
            self.recover(spi, dir, value, &bitmap);
        }
        self.synced = true;
        self.events
            .push_back(MirrorEvent::Synced { records: states });
        for (spi, dir) in self.owned_keys() {
            self.limit_changed(spi, dir);
        }
    }
}
