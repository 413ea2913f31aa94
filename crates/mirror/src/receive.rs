//! The receive filter: which mirror frames may change anything. A frame
//! must carry the right MAC, come from the expected peer, belong to the
//! peer's current epoch (or a newer one: the peer restarted) and carry a
//! frame counter above the last accepted one. Anything else is dropped and
//! counted by reason, and changes no state.

use core::hash::{Hash, Hasher};

use espgate_wire::mirror::{self, MirrorHeader, MirrorRecord};

use crate::frame::MirrorKey;

espgate_counters::counter_table! {
    /// Why a frame was dropped.
    pub enum Reject;
    /// Dropped frames by reason.
    pub struct RejectCounters;
    {
        /// Too short to hold a header and a MAC, or authentic but unparseable.
        Malformed => "malformed",
        /// The MAC does not verify (wrong key, or altered on the way).
        Forged => "forged",
        /// Sent by this node itself (a looped link) or by an unexpected node.
        WrongNode => "wrong_node",
        /// From an epoch older than the peer's current one.
        Stale => "stale_epoch",
        /// A frame counter not above the last accepted in this epoch.
        Replayed => "replayed",
    }
}

/// A frame that passed the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its header.
    pub header: MirrorHeader,
    /// Its records.
    pub records: Vec<MirrorRecord>,
    /// The first frame of a new peer epoch: the peer (re)started.
    pub new_epoch: bool,
    /// Frames of this epoch were lost (or came out of order and so will be
    /// refused) since the last one accepted: the counter skipped.
    pub gap: bool,
    /// Sent to this life of the receiving node (the header names its
    /// epoch): only such a frame's records may change what this life does.
    pub to_this_life: bool,
}

/// What this node knows of its peer's frames.
#[derive(Debug, Clone)]
pub struct PeerFilter {
    me: u32,
    my_epoch: u64,
    peer: u32,
    epoch: Option<u64>,
    last_counter: u64,
    rejected: RejectCounters,
    accepted: u64,
}

impl PeerFilter {
    /// A filter for node `me` in its life `my_epoch`, listening to node
    /// `peer`.
    pub fn new(me: u32, my_epoch: u64, peer: u32) -> Self {
        PeerFilter {
            me,
            my_epoch,
            peer,
            epoch: None,
            last_counter: 0,
            rejected: RejectCounters::default(),
            accepted: 0,
        }
    }

    /// The peer's current epoch, once a frame was accepted.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Frames dropped, by reason.
    pub fn rejected(&self) -> &RejectCounters {
        &self.rejected
    }

    /// Frames accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Hashes what decides the filter's verdicts: whom it listens to, in
    /// which life, and the peer's epoch and last counter (not the counts,
    /// which decide nothing).
    pub(crate) fn hash_position<H: Hasher>(&self, state: &mut H) {
        let PeerFilter {
            me,
            my_epoch,
            peer,
            epoch,
            last_counter,
            rejected: _,
            accepted: _,
        } = self;
        (me, my_epoch, peer, epoch, last_counter).hash(state);
    }

    /// Checks `frame` (mirror header to MAC, no Ethernet header). Only an
    /// accepted frame moves the filter's state.
    pub fn accept(&mut self, key: &MirrorKey, frame: &[u8]) -> Result<Accepted, Reject> {
        let r = self.check(key, frame);
        match &r {
            Ok(a) => {
                self.epoch = Some(a.header.epoch);
                self.last_counter = a.header.counter;
                self.accepted += 1;
            }
            Err(why) => self.rejected.count(*why),
        }
        r
    }

    fn check(&self, key: &MirrorKey, frame: &[u8]) -> Result<Accepted, Reject> {
        if frame.len() < mirror::HEADER_LEN + mirror::MAC_LEN {
            return Err(Reject::Malformed);
        }
        if !key.verify(frame) {
            return Err(Reject::Forged);
        }
        let (header, records) = mirror::parse_records(frame).map_err(|_| Reject::Malformed)?;
        if header.node != self.peer || header.node == self.me {
            return Err(Reject::WrongNode);
        }
        let new_epoch = match self.epoch {
            None => true,
            Some(e) if header.epoch < e => return Err(Reject::Stale),
            Some(e) if header.epoch > e => true,
            Some(_) if header.counter <= self.last_counter => return Err(Reject::Replayed),
            Some(_) => false,
        };
        let gap = !new_epoch && header.counter > self.last_counter + 1;
        Ok(Accepted {
            to_this_life: header.peer_epoch == self.my_epoch,
            header,
            records,
            new_epoch,
            gap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::seal;

    fn key() -> MirrorKey {
        MirrorKey::new(b"0123456789abcdef0123").unwrap()
    }

    fn frame(node: u32, epoch: u64, counter: u64) -> Vec<u8> {
        seal(
            &key(),
            MirrorHeader {
                flags: 0,
                records: 0,
                node,
                epoch,
                counter,
                peer_epoch: 0,
            },
            &[MirrorRecord::BulkRequest],
        )
    }

    #[test]
    fn each_bad_frame_is_dropped_for_its_reason_and_moves_nothing() {
        let mut f = PeerFilter::new(1, 50, 2);
        let a = f.accept(&key(), &frame(2, 100, 1)).unwrap();
        assert!(a.new_epoch);
        assert!(!f.accept(&key(), &frame(2, 100, 2)).unwrap().new_epoch);
        let before = f.clone();
        let mut forged = frame(2, 100, 3);
        forged[30] ^= 1;
        let other_key = seal(
            &MirrorKey::new(&[9; 16]).unwrap(),
            MirrorHeader {
                flags: 0,
                records: 0,
                node: 2,
                epoch: 100,
                counter: 3,
                peer_epoch: 0,
            },
            &[],
        );
        for (bad, why) in [
            (frame(2, 100, 2), Reject::Replayed),
            (frame(2, 100, 1), Reject::Replayed),
            (frame(2, 99, 50), Reject::Stale),
            (frame(1, 100, 3), Reject::WrongNode),
            (frame(3, 100, 3), Reject::WrongNode),
            (forged, Reject::Forged),
            (other_key, Reject::Forged),
            (vec![1, 2, 3], Reject::Malformed),
        ] {
            assert_eq!(f.accept(&key(), &bad), Err(why));
            assert_eq!(
                (f.epoch, f.last_counter),
                (before.epoch, before.last_counter),
                "{why}"
            );
        }
        assert_eq!(f.rejected().total(), 8);
        assert_eq!(f.rejected().get(Reject::Forged), 2);
        // A restarted peer: a newer epoch, counters from 1 again.
        assert!(f.accept(&key(), &frame(2, 200, 1)).unwrap().new_epoch);
        assert_eq!(f.accept(&key(), &frame(2, 100, 9)), Err(Reject::Stale));
    }
}
