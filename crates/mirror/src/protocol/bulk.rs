//! Bulk sync in numbered parts: the bulk this node builds for the peer's
//! life and sends, whole at a request and again only the parts the peer
//! lists as missing at a resend request; and the parts of the peer's bulk
//! this node gathers until it holds every one, asking for those it lacks.
//!
//! A bulk is complete when each of its parts arrived once, in any sending:
//! a part lost in one sending comes in the next, and the next carries only
//! the parts lost (re-sent whole, a bulk of 98 000 parts cost about three
//! whole sendings at 1 % frame loss). A bulk that had to be
//! received in one unbroken run of frames almost never completed over a
//! lossy link once it took more than a few frames (a pair with many
//! histories, or large replay windows, at 50 % loss).

use std::hash::{DefaultHasher, Hash, Hasher};

use espgate_wire::Direction;
use espgate_wire::mirror::{self, MirrorRecord, SaState};

use super::*;

/// The part record beside a part's records.
const PART_LEN: usize = mirror::RECORD_HEADER_LEN + 16;
/// A heartbeat record.
const HEARTBEAT_LEN: usize = mirror::RECORD_HEADER_LEN + 24;
/// What a frame may carry before a part: a whole bulk request and a
/// heartbeat. (A frame with a resend request beside the heartbeat may be
/// too full for a part: the part goes in the next frame.)
const BEFORE_PART: usize = mirror::RECORD_HEADER_LEN + HEARTBEAT_LEN;
/// The frame (header to MAC) that carries one SA state with `words`
/// bitmap words in a bulk part of its own, the largest a state needs: a
/// node's windows must fit its `max_frame` by it (the dataplane checks
/// them at start), and what arrives longer is cut to it.
pub fn state_frame_len(words: usize) -> usize {
    mirror::HEADER_LEN
        + mirror::MAC_LEN
        + PART_LEN
        + mirror::RECORD_HEADER_LEN
        + mirror::SA_STATE_BODY_LEN
        + 8 * words
}

/// The most parts a bulk this node gathers may have (about 100 million
/// records: far past the million SAs a pair is built for); a part record
/// beyond it is ignored.
const MAX_PARTS: u32 = 1 << 22;

/// One record of a bulk, named by what it says of which SA: built when
/// its part goes (so a bulk sent again says what holds then), with the
/// record built with the bulk kept for when the SA's record no longer has
/// the size its part was packed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Entry {
    /// This node's view of who runs the SA.
    Owner(SaKey),
    /// The state of an SA that runs here.
    State(SaKey),
    /// The standby copy of an SA the peer runs.
    Copy(SaKey),
    /// What this node knows of an SA no longer configured (or added again
    /// and asking).
    History(SaKey),
}

/// A bulk built for the peer's current life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BulkOut {
    /// Its number in this node's life.
    number: u64,
    /// Its entries and their sizes, as a hash ([`Mirror::bulk_print`]):
    /// while they hold, a request is answered with this bulk again, under
    /// its number, each entry with what holds then.
    print: u64,
    /// Its entries, a frame's worth each, with the records built with it.
    parts: Vec<Vec<(Entry, MirrorRecord)>>,
    /// The sending under way, if any.
    sending: Option<Sending>,
}

impl BulkOut {
    /// The sending of the parts of bulk `number` the peer asked for again
    /// (those this bulk has, in order, each once), if `number` is this
    /// bulk's and it has any of them; and how many part numbers it lists
    /// that this bulk does not have (no joiner asks for those).
    fn listed(&self, number: u64, asked: &[u32]) -> (Option<Sending>, usize) {
        if number != self.number {
            return (None, 0);
        }
        let mut parts: Vec<usize> = asked
            .iter()
            .map(|&p| p as usize)
            .filter(|&p| p < self.parts.len())
            .collect();
        let past = asked.len() - parts.len();
        parts.sort_unstable();
        parts.dedup();
        (
            (!parts.is_empty()).then(|| Sending::Listed(parts.into())),
            past,
        )
    }
}

/// A sending of a bulk under way: which parts go, the next first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sending {
    /// The whole bulk, from this part to its last: its end lets the
    /// peer's life run SAs (see [`Mirror::bulk_sent`]).
    Whole(usize),
    /// The parts the peer listed as missing (never empty).
    Listed(VecDeque<usize>),
}

impl Sending {
    /// The part that goes next.
    fn next(&self) -> Option<usize> {
        match self {
            Sending::Whole(at) => Some(*at),
            Sending::Listed(parts) => parts.front().copied(),
        }
    }

    /// Moves past the next part of a bulk of `parts` parts; whether it was
    /// the sending's last.
    fn advance(&mut self, parts: usize) -> bool {
        match self {
            Sending::Whole(at) => {
                *at += 1;
                *at >= parts
            }
            Sending::Listed(listed) => {
                listed.pop_front();
                listed.is_empty()
            }
        }
    }
}

/// The parts of one of the peer's bulks that arrived.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BulkIn {
    number: u64,
    parts: u32,
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
            parts,
            got: vec![0; parts.div_ceil(64) as usize],
            missing: parts,
            states: 0,
        }
    }

    /// Takes part `part` in (once).
    fn take(&mut self, part: u32, states: u64) {
        if !self.has(part) {
            self.got[(part / 64) as usize] |= 1 << (part % 64);
            self.missing -= 1;
            self.states += states;
        }
    }

    /// Whether part `part` arrived.
    fn has(&self, part: u32) -> bool {
        self.got[(part / 64) as usize] & 1 << (part % 64) != 0
    }

    /// Its first `most` parts that have not arrived, in order.
    fn lacking(&self, most: usize) -> Vec<u32> {
        (0..self.parts)
            .filter(|&p| !self.has(p))
            .take(most)
            .collect()
    }
}

/// Where this node stands in joining the pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Join {
    /// Not synchronised since it started: its SAs may send nothing.
    Unsynced {
        /// A bulk request goes in the next frame (at start, at every
        /// refresh, and at once when a sending ends with parts missing):
        /// for the parts lacking of the bulk gathered, if any, else for a
        /// whole bulk.
        ask: bool,
        /// The parts of the peer's bulk that arrived so far.
        gathered: Option<BulkIn>,
    },
    /// The peer's bulk sync is complete: this node knows its SAs' history.
    Synced,
}

impl Join {
    /// A node's standing at its start: it asks at once.
    pub(super) fn new() -> Self {
        Join::Unsynced {
            ask: true,
            gathered: None,
        }
    }

    /// Asks for a bulk in the next frame, unless synchronised.
    pub(super) fn ask(&mut self) {
        if let Join::Unsynced { ask, .. } = self {
            *ask = true;
        }
    }

    /// The bulk request that goes in this frame, if one does (once per
    /// asking): for the first `most` parts lacking of the bulk gathered,
    /// or, with none gathered (or no room for a part number), for a whole
    /// bulk.
    pub(super) fn take_ask(&mut self, most: usize) -> Option<MirrorRecord> {
        let Join::Unsynced { ask, gathered } = self else {
            return None;
        };
        if !std::mem::take(ask) {
            return None;
        }
        Some(match gathered {
            Some(b) if most > 0 => MirrorRecord::BulkResend {
                bulk: b.number,
                parts: b.lacking(most),
            },
            _ => MirrorRecord::BulkRequest,
        })
    }

    /// The parts gathered so far are dropped: the peer restarted, and its
    /// new life builds a bulk of its own.
    pub(super) fn drop_gathered(&mut self) {
        if let Join::Unsynced { gathered, .. } = self {
            *gathered = None;
        }
    }
}

impl Mirror {
    /// The peer asks for a bulk sync: a whole bulk, or (`again`) the
    /// parts it lists of its bulk number. Unless a sending is under way,
    /// the bulk built for its life goes again if its entries are the same:
    /// only the parts listed if it is the bulk they are of, else whole.
    /// With other entries a new bulk is built and sent whole. A node that
    /// said goodbye sends none (see `leave`).
    pub(super) fn bulk_requested(&mut self, again: Option<(u64, &[u32])>) {
        if self.part_pending() || self.gone() {
            return;
        }
        let entries = self.bulk_entries();
        let print = self.bulk_print(&entries);
        match self.bulk_out.as_mut() {
            Some(b) if b.print == print => {
                let (listed, past) =
                    again.map_or((None, 0), |(number, asked)| b.listed(number, asked));
                b.sending = Some(listed.unwrap_or(Sending::Whole(0)));
                self.stats.records_ignored += past as u64;
            }
            _ => self.build_bulk(entries, print),
        }
    }

    /// What a bulk holds, in order: ownership of every SA, the state of
    /// every SA owned here, copies of the peer's SAs from the standby
    /// table, and the history of SAs no longer configured (a restarted
    /// peer that gets one of them again starts past it) or added again
    /// here and waiting for the peer's word (their state goes once it is
    /// in: this node may die before then).
    fn bulk_entries(&self) -> Vec<Entry> {
        let peer = self.cfg.peer;
        let mut entries: Vec<Entry> = self.pair.keys().map(|k| Entry::Owner(*k)).collect();
        entries.extend(self.owned_keys().into_iter().map(Entry::State));
        entries.extend(
            self.pair
                .iter()
                .filter(|(k, p)| p.owner == peer && self.standby.get(k.0, k.1).is_some())
                .map(|(k, _)| Entry::Copy(*k)),
        );
        let mut retired: Vec<SaKey> = self
            .standby
            .iter()
            .filter(|(k, _)| !self.pair.contains_key(k) || self.adds.asking.contains(k))
            .map(|(k, _)| k)
            .collect();
        retired.sort_unstable();
        entries.extend(retired.into_iter().map(Entry::History));
        entries
    }

    /// The entries of a bulk and the size of each one's record, as a hash.
    /// Not their values: those are built when a part goes, so a bulk sent
    /// again says what holds then (a state that grew, a copy raised by the
    /// peer's own reports, a run past a fence).
    fn bulk_print(&self, entries: &[Entry]) -> u64 {
        let mut h = DefaultHasher::new();
        for e in entries {
            (e, self.entry_len(*e)).hash(&mut h);
        }
        h.finish()
    }

    /// The size of an entry's record now (none if there is none to send).
    fn entry_len(&self, e: Entry) -> Option<usize> {
        let state =
            |words: usize| mirror::RECORD_HEADER_LEN + mirror::SA_STATE_BODY_LEN + 8 * words;
        match e {
            Entry::Owner(k) => self.pair.get(&k).map(|_| OWNERSHIP_LEN),
            Entry::State((spi, Direction::Outbound)) => self.outbound.get(&spi).map(|_| state(0)),
            Entry::State((spi, Direction::Inbound)) => {
                self.inbound.get(&spi).map(|i| state(i.bitmap().len()))
            }
            Entry::Copy((spi, dir)) => self.standby.get(spi, dir).map(|s| state(s.bitmap.len())),
            Entry::History(_) => Some(mirror::RECORD_HEADER_LEN + 16),
        }
    }

    /// An entry's record as it holds now, if it has one.
    fn entry_record(&mut self, e: Entry) -> Option<MirrorRecord> {
        match e {
            Entry::Owner(k) => {
                let p = self.pair.get(&k)?;
                let r = OwnerRecord {
                    owner: p.owner,
                    generation: p.generation,
                    bound: self.bound(k.0, k.1),
                    kind: OwnershipKind::Change,
                };
                Some(r.record(k))
            }
            Entry::State((spi, dir)) => {
                let s = self.state_record(spi, dir)?;
                self.stats.states_sent += 1;
                Some(MirrorRecord::SaState(s))
            }
            Entry::Copy((spi, dir)) => {
                if self.pair.get(&(spi, dir))?.owner != self.cfg.peer {
                    return None;
                }
                let s = self.standby.get(spi, dir)?;
                Some(MirrorRecord::SaState(SaState {
                    spi,
                    dir,
                    value: s.value,
                    bytes: s.bytes,
                    packets: s.packets,
                    sent_to: s.sent_to,
                    bitmap: s.bitmap.clone(),
                    copy: true,
                }))
            }
            Entry::History((spi, dir)) => {
                let retired =
                    !self.pair.contains_key(&(spi, dir)) || self.adds.asking.contains(&(spi, dir));
                let s = self.standby.get(spi, dir).filter(|_| retired)?;
                Some(MirrorRecord::History {
                    spi,
                    dir,
                    value: Some(s.value),
                })
            }
        }
    }

    /// Builds a bulk sync of `entries` for the peer and begins sending it,
    /// in parts that each fit a frame with a bulk request and a heartbeat
    /// beside them.
    fn build_bulk(&mut self, entries: Vec<Entry>, print: u64) {
        let mut built = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(r) = self.entry_record(e) {
                built.push((e, r));
            }
        }
        // Ownership goes again at every refresh until confirmed, like any
        // change.
        for (e, r) in &built {
            if let (
                Entry::Owner(k),
                MirrorRecord::Ownership {
                    owner,
                    generation,
                    bound,
                    kind,
                    ..
                },
            ) = (e, r)
            {
                let r = OwnerRecord {
                    owner: *owner,
                    generation: *generation,
                    bound: *bound,
                    kind: *kind,
                };
                self.changes.unconfirmed.insert(*k, r);
            }
        }
        if self.peer.bulk_told.is_none() {
            let told = built.iter().filter_map(|(e, r)| match (e, r) {
                (Entry::Copy(k), MirrorRecord::SaState(s)) => Some((*k, s.value)),
                (Entry::History(k), MirrorRecord::History { value, .. }) => value.map(|v| (*k, v)),
                _ => None,
            });
            self.peer.bulk_told = Some(told.collect());
        }
        let room = self.part_room();
        let mut parts: Vec<Vec<(Entry, MirrorRecord)>> = vec![Vec::new()];
        let mut size = 0;
        for (e, r) in built {
            let len = r.buffer_len();
            let last = parts.last_mut().expect("one part at least");
            if size + len > room && !last.is_empty() {
                parts.push(Vec::new());
                size = 0;
            }
            parts.last_mut().expect("one part at least").push((e, r));
            size += len;
        }
        self.bulks_built += 1;
        self.bulk_out = Some(BulkOut {
            number: self.bulks_built,
            print,
            parts,
            sending: Some(Sending::Whole(0)),
        });
    }

    /// The most parts a resend request this node sends may list: as many
    /// as fit a frame beside a heartbeat, at most
    /// [`MAX_RESEND_PARTS`](mirror::MAX_RESEND_PARTS).
    pub(super) fn resend_most(&self) -> usize {
        let room = self.cfg.max_frame.saturating_sub(
            mirror::HEADER_LEN + mirror::MAC_LEN + HEARTBEAT_LEN + mirror::RECORD_HEADER_LEN + 8,
        );
        (room / 4).min(mirror::MAX_RESEND_PARTS)
    }

    /// What the records of a bulk part may fill of a frame (beside the part
    /// record, a bulk request and a heartbeat).
    fn part_room(&self) -> usize {
        self.cfg
            .max_frame
            .saturating_sub(mirror::HEADER_LEN + mirror::MAC_LEN + PART_LEN + BEFORE_PART)
    }

    /// The most bitmap words an SA state this node sends may carry
    /// ([`state_frame_len`] within `max_frame`). A peer's longer window
    /// (another window size, or a larger `max_frame`) is cut to it as it
    /// arrives, keeping the newest numbers; the older ones count as seen
    /// (`ReplayWindow::restore`). Kept whole, no frame of this node could
    /// carry it, nor the bulk part it went in.
    pub(super) fn carried_words(&self) -> usize {
        self.cfg.max_frame.saturating_sub(state_frame_len(0)) / 8
    }

    /// The records of the next part to send, with its bulk record first
    /// (marked when the part is its sending's last), if a sending is under
    /// way and the part fits in `room` bytes: each entry as it holds now
    /// (as built, if its size changed since; left out if it has no record
    /// any more). The last part of a whole sending ends it: the peer's life
    /// may run SAs from then on (see [`bulk_sent`](Self::bulk_sent)). A
    /// sending of listed parts follows a whole one, which ended before the
    /// peer could ask for parts again.
    pub(super) fn next_part(&mut self, room: usize) -> Option<Vec<MirrorRecord>> {
        let b = self.bulk_out.as_mut()?;
        let at = b.sending.as_ref()?.next()?;
        let len = PART_LEN
            + b.parts[at]
                .iter()
                .map(|(_, r)| r.buffer_len())
                .sum::<usize>();
        if len > room {
            return None;
        }
        let (number, parts) = (b.number, b.parts.len());
        let sending = b.sending.as_mut()?;
        let whole = matches!(sending, Sending::Whole(_));
        let last = sending.advance(parts);
        if last {
            b.sending = None;
        }
        // Out while its entries are built (they read this node), back after.
        let part = std::mem::take(&mut b.parts[at]);
        let mut out = Vec::with_capacity(part.len() + 1);
        out.push(MirrorRecord::BulkPart {
            bulk: number,
            part: at as u32,
            parts: parts as u32,
            last,
        });
        for (e, built) in &part {
            match self.entry_record(*e) {
                Some(r) if r.buffer_len() == built.buffer_len() => out.push(r),
                Some(_) => out.push(built.clone()),
                None => {}
            }
        }
        if let Some(b) = self.bulk_out.as_mut() {
            b.parts[at] = part;
        }
        if last && whole {
            self.peer.ran = true;
            self.bulk_sent();
        }
        Some(out)
    }

    /// Whether a part waits to be sent.
    pub(super) fn part_pending(&self) -> bool {
        self.bulk_out.as_ref().is_some_and(|b| b.sending.is_some())
    }

    /// Part `part` of the peer's bulk `bulk` of `parts` parts arrived, with
    /// `states` SA states beside it, `last` of its sending. When it is the
    /// last one missing, this node has the whole bulk and synchronises;
    /// when it ends a sending and some are missing, this node asks at once
    /// for those (a lost last part leaves it to the next refresh).
    pub(super) fn part_received(
        &mut self,
        (bulk, part, parts, last): (u64, u32, u32, bool),
        states: u64,
    ) {
        if self.synced() {
            return;
        }
        if parts == 0 || parts > MAX_PARTS || part >= parts {
            self.stats.records_ignored += 1;
            return;
        }
        let Join::Unsynced { ask, gathered } = &mut self.join else {
            return;
        };
        let b = match gathered {
            Some(b) if b.number == bulk && b.parts == parts => b,
            _ => gathered.insert(BulkIn::new(bulk, parts)),
        };
        b.take(part, states);
        if b.missing == 0 {
            let states = b.states;
            *gathered = None;
            self.bulk_complete(states);
        } else if last {
            // Parts of this sending were lost: the next sends them again.
            *ask = true;
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
        self.join = Join::Synced;
        self.events
            .push_back(MirrorEvent::Synced { records: states });
        for (spi, dir) in self.owned_keys() {
            self.limit_changed(spi, dir);
        }
    }

    /// The last part of the first bulk to the peer's life is sent (or the
    /// life says it synchronised): from now on it may run SAs,
    /// and what it stores is counted with what that bulk carried. (Should
    /// the bulk not arrive, the life never synchronises and so runs
    /// nothing, and a death of this node would leave the pair with no
    /// memory of the SAs at all: nothing a start counts on.)
    pub(super) fn bulk_sent(&mut self) {
        if let Some(bulk) = self.peer.bulk_told.as_mut().map(std::mem::take) {
            for (key, v) in bulk {
                self.peer.tell(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bulk of 130 parts with all but `lost` in.
    fn holding_all_but(lost: &[u32]) -> BulkIn {
        let mut b = BulkIn::new(7, 130);
        for p in (0..130).filter(|p| !lost.contains(p)) {
            b.take(p, 0);
        }
        b
    }

    #[test]
    fn the_parts_lacking_are_listed_in_order_across_words_up_to_most() {
        let b = holding_all_but(&[3, 63, 64, 129]);
        assert_eq!(b.missing, 4);
        assert_eq!(b.lacking(2), vec![3, 63]);
        assert_eq!(b.lacking(3), vec![3, 63, 64]);
        assert_eq!(b.lacking(100), vec![3, 63, 64, 129]);
        assert!(
            holding_all_but(&[]).lacking(100).is_empty(),
            "none past the last part"
        );
    }

    #[test]
    fn a_joiner_lists_what_it_lacks_once_it_holds_parts_else_asks_whole() {
        let mut j = Join::new();
        assert_eq!(j.take_ask(10), Some(MirrorRecord::BulkRequest));
        assert_eq!(j.take_ask(10), None, "once per asking");
        if let Join::Unsynced { gathered, .. } = &mut j {
            *gathered = Some(holding_all_but(&[5, 9]));
        }
        j.ask();
        assert_eq!(
            j.take_ask(10),
            Some(MirrorRecord::BulkResend {
                bulk: 7,
                parts: vec![5, 9]
            })
        );
        j.ask();
        assert_eq!(
            j.take_ask(0),
            Some(MirrorRecord::BulkRequest),
            "no room for a part number"
        );
    }
}
