//! What waits to be sent and the frames it goes in: the queue of due
//! records, the periodic refresh, frame building.

use super::*;

/// Records queued beyond which the link is far behind: a refresh then
/// adds nothing, what is queued goes anyway.
pub(super) const FAR_BEHIND: usize = 4096;

/// What waits to be sent, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Due {
    /// The current state of an owned SA.
    Owned(u32, Direction),
    /// A fixed record (a copy from the standby table, a final state).
    Record(Box<SaState>),
    /// How far an SA deleted here ran here.
    History(u32, Direction, Option<u64>),
    /// This node runs an SA past a final state the peer sent as a copy.
    Past(u32, Direction, u64),
}

/// What waits to be sent, by kind; each kind goes in its place in the
/// next frame ([`build_frame`](Mirror::build_frame)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Outbox {
    /// Frames built so far in this life (the last one's counter).
    pub(super) counter: u64,
    /// SA states and fixed records, in order.
    pub(super) due: VecDeque<Due>,
    /// The owned SAs whose current state is in `due` (at most once each).
    pub(super) queued: BTreeSet<SaKey>,
    /// Lease acknowledgements: the value stored for each SA.
    pub(super) acks: BTreeMap<SaKey, u64>,
    /// Ownership records: changes, hand-overs, confirmations.
    pub(super) ownership: BTreeMap<SaKey, OwnerRecord>,
    /// Answers to the peer's queries: this node's view of the SA (if it
    /// knows anything of it) and its history, always sent in one frame
    /// (the history ends the question: without the view beside it, a lost
    /// frame could leave the asker's view apart from this node's for
    /// good).
    pub(super) answers: BTreeMap<SaKey, (Option<OwnerRecord>, Option<u64>)>,
    /// Queries about SAs added here at run time.
    pub(super) queries: BTreeSet<SaKey>,
}

impl Mirror {
    /// Queues the current state of an owned SA (once: the state sent is
    /// read when its frame is built).
    pub(super) fn enqueue(&mut self, key: (u32, Direction)) {
        if self.outbox.queued.insert(key) {
            self.outbox.due.push_back(Due::Owned(key.0, key.1));
        }
    }

    pub(super) fn state_record(&mut self, spi: u32, dir: Direction) -> Option<SaState> {
        if self.adds.asking.contains(&(spi, dir)) {
            // Its state would create the peer's entry before the peer
            // answers whether it had one: it goes once the answer is in.
            return None;
        }
        match dir {
            Direction::Outbound => {
                let s = self.outbound.get_mut(&spi)?;
                let lease = s.lease();
                s.sent(lease);
                let (_, bytes, packets) = s.counters();
                Some(SaState {
                    spi,
                    dir,
                    value: lease,
                    bytes,
                    packets,
                    sent_to: s.sent_to(),
                    bitmap: Vec::new(),
                    copy: false,
                })
            }
            Direction::Inbound => {
                let s = self.inbound.get_mut(&spi)?;
                s.sent();
                let (bytes, packets) = s.counters();
                // Its value is a bound past the window's top: the numbers
                // between are seen in the window sent, since the worker may
                // accept them before it reports again (a lenient takeover
                // or hand-back keeps this window).
                Some(SaState {
                    spi,
                    dir,
                    value: s.value(),
                    bytes,
                    packets,
                    sent_to: 0,
                    bitmap: raised(s.bitmap(), s.value() - s.top()),
                    copy: false,
                })
            }
        }
    }

    pub(super) fn record_len(&self, d: &Due) -> usize {
        let words = match d {
            Due::Owned(spi, Direction::Inbound) => {
                self.inbound.get(spi).map_or(0, |s| s.bitmap().len())
            }
            Due::Record(s) => s.bitmap.len(),
            _ => 0,
        };
        match d {
            Due::History(..) | Due::Past(..) => mirror::RECORD_HEADER_LEN + 16,
            _ => mirror::RECORD_HEADER_LEN + mirror::SA_STATE_BODY_LEN + 8 * words,
        }
    }

    /// Queues again what the peer has not acknowledged or confirmed, in
    /// measure: a bulk sync of a million SAs takes the link seconds, and
    /// walking every SA (or sending a million changes again) each refresh
    /// while it does would only slow it down.
    pub(super) fn refresh(&mut self) {
        self.join.ask();
        self.outbox
            .queries
            .extend(self.adds.unanswered.iter().copied());
        if self.outbox.due.len() < FAR_BEHIND {
            let refresh: Vec<(u32, Direction)> = self
                .outbound
                .iter()
                .filter(|(_, s)| s.needs_refresh())
                .map(|(k, _)| (*k, Direction::Outbound))
                .chain(
                    self.inbound
                        .iter()
                        .filter(|(_, s)| s.needs_refresh())
                        .map(|(k, _)| (*k, Direction::Inbound)),
                )
                .collect();
            for k in refresh {
                self.enqueue(k);
            }
        }
        self.resend_finals();
        self.resend_unconfirmed();
    }

    /// Forgets an SA deleted here: nothing more about it waits to be sent
    /// but its history, nor is it asked about or sent again.
    pub(super) fn forget(&mut self, key: SaKey) {
        self.outbox.acks.remove(&key);
        self.outbox.queries.remove(&key);
        self.outbox.ownership.remove(&key);
        self.adds.unanswered.remove(&key);
        self.adds.unheard.remove(&key);
        self.changes.unconfirmed.remove(&key);
        self.changes.finals.remove(&key);
    }

    /// One frame of what is queued, if anything.
    pub(super) fn build_frame(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let budget = self
            .cfg
            .max_frame
            .saturating_sub(mirror::HEADER_LEN + mirror::MAC_LEN);
        let mut records = Vec::new();
        let mut size = 0;
        if let Some(ask) = self.join.take_ask(self.resend_most()) {
            size += ask.buffer_len();
            records.push(ask);
        }
        let beat = std::mem::take(&mut self.timers.heartbeat_owed);
        if beat {
            records.push(MirrorRecord::Heartbeat {
                now_ms,
                owned: (self.outbound.len() + self.inbound.len()) as u32,
                peer_alive: self.peer.alive(),
                generation: self.changes.max_generation,
            });
            size += mirror::RECORD_HEADER_LEN + 24;
        }
        while let Some((&(spi, dir), &(view, value))) = self.outbox.answers.iter().next() {
            let len = mirror::RECORD_HEADER_LEN + 16 + view.map_or(0, |_| OWNERSHIP_LEN);
            if size + len > budget {
                break;
            }
            self.outbox.answers.remove(&(spi, dir));
            if let Some(view) = view {
                records.push(view.record((spi, dir)));
            }
            records.push(MirrorRecord::History { spi, dir, value });
            size += len;
        }
        while let Some((&key, &record)) = self.outbox.ownership.iter().next() {
            if size + OWNERSHIP_LEN > budget {
                break;
            }
            self.outbox.ownership.remove(&key);
            records.push(record.record(key));
            size += OWNERSHIP_LEN;
        }
        while let Some(&(spi, dir)) = self.outbox.queries.iter().next() {
            if size + mirror::RECORD_HEADER_LEN + 8 > budget {
                break;
            }
            self.outbox.queries.remove(&(spi, dir));
            records.push(MirrorRecord::Query { spi, dir });
            size += mirror::RECORD_HEADER_LEN + 8;
        }
        while let Some((&(spi, dir), &lease)) = self.outbox.acks.iter().next() {
            if size + mirror::RECORD_HEADER_LEN + 16 > budget {
                break;
            }
            self.outbox.acks.remove(&(spi, dir));
            records.push(MirrorRecord::LeaseAck { spi, dir, lease });
            size += mirror::RECORD_HEADER_LEN + 16;
            self.stats.acks_sent += 1;
        }
        // A part of a bulk goes whole, after what must not wait behind a
        // bulk of a million SAs (answers, ownership, acknowledgements); a
        // frame too full for it leaves it to the next.
        if self.part_pending() {
            let room = if records.is_empty() {
                usize::MAX
            } else {
                budget.saturating_sub(size)
            };
            if let Some(part) = self.next_part(room) {
                size += part.iter().map(MirrorRecord::buffer_len).sum::<usize>();
                records.extend(part);
            }
        }
        while let Some(d) = self.outbox.due.front() {
            let len = self.record_len(d);
            if size + len > budget && !records.is_empty() {
                break;
            }
            let d = self.outbox.due.pop_front().expect("front exists");
            let record = match d {
                Due::Owned(spi, dir) => {
                    self.outbox.queued.remove(&(spi, dir));
                    self.state_record(spi, dir).map(MirrorRecord::SaState)
                }
                Due::Record(s) => Some(MirrorRecord::SaState(*s)),
                Due::History(spi, dir, value) => Some(MirrorRecord::History { spi, dir, value }),
                Due::Past(spi, dir, value) => Some(MirrorRecord::Past { spi, dir, value }),
            };
            if let Some(r) = record {
                if matches!(r, MirrorRecord::SaState(_)) {
                    self.stats.states_sent += 1;
                }
                records.push(r);
                size += len;
            }
        }
        // A goodbye goes last, in a heartbeat's frame once nothing else
        // waits to go before it (an answer to the peer's, in any frame).
        let nothing_waits = beat
            && self.outbox.due.is_empty()
            && self.outbox.ownership.is_empty()
            && self.outbox.answers.is_empty()
            && !self.part_pending();
        let room = size + mirror::RECORD_HEADER_LEN + 4 <= budget;
        if let Some(bye) = self.goodbye(nothing_waits && room, room) {
            records.push(bye);
        }
        if records.is_empty() {
            return None;
        }
        self.outbox.counter += 1;
        let header = MirrorHeader {
            flags: if self.synced() {
                mirror::FLAG_SYNCED
            } else {
                0
            } | if self.leave.flow_failed {
                mirror::FLAG_FLOW_FAILED
            } else {
                0
            },
            records: 0,
            node: self.cfg.node,
            epoch: self.epoch,
            counter: self.outbox.counter,
            peer_epoch: self.filter.epoch().unwrap_or(0),
        };
        let frame = seal(&self.key, header, &records);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Some(frame)
    }
}
