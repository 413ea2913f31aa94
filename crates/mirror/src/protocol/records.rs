//! Taking in the records of a frame from the peer, one handler per kind.

use super::*;

/// Whether a record changes the state of the life it was sent to (and so
/// is ignored when sent to another life of this node).
fn changes_this_life(r: &MirrorRecord) -> bool {
    matches!(
        r,
        MirrorRecord::SaState(SaState { copy: true, .. })
            | MirrorRecord::LeaseAck { .. }
            | MirrorRecord::Ownership { .. }
            | MirrorRecord::BulkPart { .. }
            | MirrorRecord::Past { .. }
            | MirrorRecord::Goodbye { .. }
    )
}

/// The value of an SA a record says the peer's life stores (or more).
fn stored_by(r: &MirrorRecord) -> Option<(SaKey, u64)> {
    match r {
        MirrorRecord::SaState(s) => Some(((s.spi, s.dir), s.value)),
        MirrorRecord::LeaseAck { spi, dir, lease } => Some(((*spi, *dir), *lease)),
        MirrorRecord::Ownership {
            spi, dir, bound, ..
        } => Some(((*spi, *dir), *bound)),
        MirrorRecord::History {
            spi,
            dir,
            value: Some(v),
        }
        | MirrorRecord::Past {
            spi, dir, value: v, ..
        } => Some(((*spi, *dir), *v)),
        _ => None,
    }
}

impl Mirror {
    /// Takes in the records of an accepted frame, in order; a bulk part
    /// record is taken in after the part's records (this frame's).
    pub(super) fn take_records(&mut self, records: Vec<MirrorRecord>, to_this_life: bool) {
        let states = records
            .iter()
            .filter(|r| matches!(r, MirrorRecord::SaState(_)))
            .count() as u64;
        let mut bulk_part = None;
        for r in records {
            if changes_this_life(&r) && !to_this_life {
                // Sent to another life of this node (an earlier one, or
                // recorded and replayed): what it says is not about this
                // life's SAs.
                self.stats.records_other_life += 1;
                continue;
            }
            if let Some((key, v)) = stored_by(&r) {
                self.peer.tell(key, v);
            }
            match r {
                MirrorRecord::SaState(mut s) => {
                    s.bitmap.truncate(self.carried_words());
                    if s.dir == Direction::Outbound {
                        // Numbers another owner sent (or knew of) under it:
                        // the far end saw them too.
                        self.learn_sent(s.spi, s.sent_to);
                    }
                    if s.copy {
                        self.copy_received(s);
                    } else {
                        self.state_received(s);
                    }
                }
                MirrorRecord::LeaseAck { spi, dir, lease } => self.ack_received(spi, dir, lease),
                MirrorRecord::Ownership {
                    spi,
                    dir,
                    owner,
                    generation,
                    bound,
                    kind,
                } => {
                    let record = OwnerRecord {
                        owner,
                        generation,
                        bound,
                        kind,
                    };
                    self.ownership((spi, dir), record);
                }
                MirrorRecord::Query { spi, dir } => self.query_received((spi, dir)),
                MirrorRecord::History { spi, dir, value } => self.history(spi, dir, value),
                MirrorRecord::Past { spi, dir, value } => self.past_received(spi, dir, value),
                MirrorRecord::BulkRequest => self.bulk_requested(None),
                // Parts of a bulk of this life only: another life's numbers
                // name other bulks, so that request goes as a whole one.
                MirrorRecord::BulkResend { bulk, parts } => {
                    self.bulk_requested(to_this_life.then_some((bulk, parts.as_slice())));
                }
                MirrorRecord::BulkPart {
                    bulk,
                    part,
                    parts,
                    last,
                } => {
                    bulk_part = Some((bulk, part, parts, last));
                }
                MirrorRecord::Goodbye { kind } => self.goodbye_received(kind),
                MirrorRecord::Heartbeat { .. } => {}
                _ => self.stats.records_ignored += 1,
            }
        }
        if let Some(part) = bulk_part {
            self.part_received(part, states);
        }
    }

    /// A copy of one of this node's SAs from the peer's standby table: in a
    /// bulk sync, or the final state of an SA this node took over while the
    /// peer ran it (a split brain).
    fn copy_received(&mut self, s: SaState) {
        if !self.synced() || !self.pair.contains_key(&(s.spi, s.dir)) {
            // Kept whole, and recovered from once the bulk is complete
            // (`bulk_complete`), with the SA added here meanwhile if it was
            // not configured. (Recovered from as each came, a copy moved its
            // SA on at every sending of a bulk the link kept breaking: the
            // move was reported, and raised the copy the next sending
            // carried.)
            self.standby.merge(&s);
            return;
        }
        if !self.owns(s.spi, s.dir) {
            self.standby.merge(&s);
        }
        self.recover(s.spi, s.dir, s.value, &s.bitmap);
        if self.owns(s.spi, s.dir) {
            // Past it now: the sender (the loser of a split brain) learns
            // so and acknowledges again.
            self.outbox.due.push_back(Due::Past(s.spi, s.dir, s.value));
        }
    }

    /// The state of an SA the peer runs (or ran): stored, and acknowledged
    /// when the peer owns it.
    fn state_received(&mut self, s: SaState) {
        let key = (s.spi, s.dir);
        let Some(p) = self.pair.get(&key) else {
            // An SA only the peer has (deleted here first, or added there
            // and not here yet): kept as its history, so that a life of
            // either node that gets it later starts past it; never
            // acknowledged, so the peer's lease waits.
            self.standby.merge(&s);
            return;
        };
        let peers = p.owner == self.cfg.peer && !p.blind && !self.changes.finals.contains_key(&key);
        self.standby.merge(&s);
        // Acknowledge only states of SAs the peer owns and knows it owns: a
        // stale state of an SA taken over must not raise the old owner's
        // limit, nor one sent before the peer heard of this node's
        // hand-back (it still runs the SA under its older lease, and this
        // node used numbers above it).
        if peers {
            let stored = self.standby.get(s.spi, s.dir).map_or(0, |e| e.value);
            self.outbox.acks.insert(key, stored);
        }
    }

    /// The peer stores `lease` for an SA this node runs.
    fn ack_received(&mut self, spi: u32, dir: Direction, lease: u64) {
        let lease = match (dir, self.inbound.get(&spi)) {
            // Run from an exact hand-over, the peer heard throughout: nobody
            // accepted a number past its start, so what the peer stores
            // above all this run sent is a bound an earlier owner reported
            // (its rate's reach, a takeover's), not a use this node forgot.
            (Direction::Inbound, Some(i)) if i.exact() => lease.min(i.sent_top()),
            _ => lease,
        };
        if self.acked_beyond(spi, dir, lease) {
            // The peer stores more than this node ever sent: an earlier use
            // of the SA this node forgot. Move past it.
            self.recover(spi, dir, lease, &[]);
            return;
        }
        let raised = match dir {
            Direction::Outbound => self.outbound.get_mut(&spi).is_some_and(|s| s.ack(lease)),
            Direction::Inbound => self.inbound.get_mut(&spi).is_some_and(|s| s.ack(lease)),
        };
        if raised && self.synced() {
            self.limit_changed(spi, dir);
        }
    }

    /// The peer runs an SA past `value`, a final state this node sent it
    /// as a copy. (A history cannot say this: the answer to a query is
    /// what the peer runs the SA to, perhaps a stalled number at this
    /// node's final, not a move past it.)
    fn past_received(&mut self, spi: u32, dir: Direction, value: u64) {
        if self
            .changes
            .finals
            .get(&(spi, dir))
            .is_some_and(|f| value >= f.value)
        {
            self.changes.finals.remove(&(spi, dir));
            self.leave.unheard_runs.remove(&(spi, dir));
        }
        // Not an answer to this node's query (the SA may have been deleted
        // and added again here since its final): only what the peer runs
        // past, stored.
        if !self.owns(spi, dir) {
            self.store(spi, dir, value);
        }
    }
}
