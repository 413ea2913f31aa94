//! SAs added at run time: what this node asks the peer of them, and how
//! it answers the peer's questions and histories.

use super::peer::LOST_LIFE_STEPS;
use super::*;

/// SAs added at run time and what is known of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Adds {
    /// Owned SAs added at run time, waiting for the peer to say what it
    /// knows of them before they may run.
    pub(super) asking: BTreeSet<SaKey>,
    /// SAs added at run time after this node's bulk sync, and no
    /// ownership record of the peer taken into this node's view since (a
    /// change that wins, or a confirmation of this view; not one sent
    /// before the add): this node's view of who runs it went with an
    /// earlier delete. The peer may have taken the peer's SA over (in a
    /// split brain, unheard) from a value this node reported; it may hold
    /// a view, of either node's SA, that this node's earlier add of it
    /// sent. The answer to this node's query carries the peer's view, if
    /// the peer knows anything of the SA.
    pub(super) unheard: BTreeSet<SaKey>,
    /// SAs added at run time whose query the peer has not answered yet
    /// (those of `asking` among them): asked again at each refresh.
    pub(super) unanswered: BTreeSet<SaKey>,
}

impl Mirror {
    /// The peer asks what this node knows of an SA it added at run time.
    /// The answer: what this node knows of the SA, and before it in the
    /// same frame this node's view of who runs it, with that knowledge as
    /// the bound the asker stores; no view if it knows nothing of the SA
    /// (the view is then the configured one, and a bound stored would make
    /// the SA look used). A hand-over of it to the asker that waits for its
    /// word is a view too: the asker's add reset its own view, and the
    /// word it waits for may be an earlier add's confirmation (the answer
    /// then names the asker as the owner, as the hand-over does).
    pub(super) fn query_received(&mut self, key: SaKey) {
        let (spi, dir) = key;
        if let Some(p) = self.pair.get_mut(&key) {
            // The peer has it now (added at run time): the next hand-back
            // gives it home.
            p.declined = false;
        }
        let known = self.history_of(spi, dir);
        let view = match (self.pair.get(&key), known) {
            (Some(p), Some(bound)) => Some(OwnerRecord {
                owner: p.owner,
                generation: p.generation,
                bound,
                kind: OwnershipKind::Confirm,
            }),
            _ => None,
        };
        // The asker may run it once answered (one this node runs, it knows
        // of already).
        if !self.owns(spi, dir) {
            self.peer.marks.insert(key);
        }
        // A question asked again before the answer went (the asker's
        // refresh, or its add after a delete) keeps that answer's value:
        // this one would carry the mark the first left, not news. Its view
        // is the one that stands now: a hand-over the asker confirmed
        // since (the first answer had none, as it waited) is news to an
        // asker whose add reset its view.
        let answer = self.outbox.answers.entry(key).or_insert((view, known));
        if view.is_some() {
            answer.0 = view;
        }
    }

    /// What this node knows of an SA: what it stores (a standby copy, the
    /// history of an SA no longer configured, its own final state) and,
    /// if it runs here, what it reported of it (its states' value: the
    /// peer stores no more than that from them, and a history up to it
    /// coming back is this life's own news, not an earlier use); nothing
    /// if it never heard of it. (An SA added here and still asking runs
    /// nothing yet: where it would start is not news.)
    pub(super) fn history_of(&self, spi: u32, dir: Direction) -> Option<u64> {
        let stored = self.standby.get(spi, dir).map(|s| s.value);
        if self.adds.asking.contains(&(spi, dir)) {
            return stored;
        }
        let reported = match dir {
            Direction::Outbound => self.outbound.get(&spi).map(|o| o.sent_lease()),
            Direction::Inbound => self.inbound.get(&spi).map(|i| i.sent_top()),
        };
        match (reported, stored) {
            (Some(r), s) => Some(r.max(s.unwrap_or(0))),
            (None, s) => s,
        }
    }

    /// Starts an SA added at run time once the peer answered: from its
    /// first number if neither node ever heard of it, else past the
    /// highest value known, as a restart would.
    pub(super) fn begin_asked(&mut self, spi: u32, dir: Direction, known: Option<u64>) {
        if let Some(v) = known {
            // The window this node keeps of its history (what it, or the
            // peer's states, reported before the delete) stays seen. A
            // history whose window it lacks (a history record carries
            // none: this node restarted since the delete; or the answer is
            // past what it stores) goes in with none, and the restart
            // takes everything at and below it as seen. (A window of every
            // number a bitmap can hold seen was a state no frame can
            // carry: the peer heard nothing of the SA again, nor the bulk
            // part it went in.)
            let bitmap = self
                .standby
                .get(spi, dir)
                .filter(|s| s.value == v)
                .map_or_else(Vec::new, |s| s.bitmap.clone());
            if self.recover(spi, dir, v, &bitmap) {
                return;
            }
        }
        // Where it stands already (its first number if nobody knew it, or
        // where a lost peer life moved it meanwhile: strict, everything at
        // and below seen).
        let (start, window) = match (dir, self.outbound.get_mut(&spi), self.inbound.get(&spi)) {
            (Direction::Outbound, Some(o), _) => {
                if known.is_none() {
                    // New to both nodes: nothing of it went out yet.
                    o.learn_sent(1);
                }
                (o.counters().0 + 1, Vec::new())
            }
            (Direction::Inbound, _, Some(i)) => {
                let here = Standby {
                    value: i.top(),
                    bitmap: i.bitmap().to_vec(),
                    ..Standby::default()
                };
                (i.top(), self.restart_window((spi, dir), &here, i.top()).0)
            }
            _ => return,
        };
        self.activated(spi, dir, start, window);
    }

    /// Starts an SA added here at run time whose question the peer, silent
    /// (dead, or cut off), may never answer: added while the peer is
    /// silent (a rekey during a failover), or still asking when this node
    /// takes the peer over (a rekey just before its death). Left asking, it
    /// would run nowhere until the peer came back. Whatever the peer's life
    /// did with the SA unheard stayed below this node's high-water mark of
    /// it plus [`LOST_LIFE_STEPS`] steps, as any lost life does (see
    /// [`peer_lost`](Self::peer_lost)): the SA restarts from that as a
    /// takeover would, three steps past the mark (with lenient inbound
    /// takeover, an inbound SA's restart does not step: it begins at the
    /// mark, within that mode's documented bound). It counts a step less
    /// as acknowledged, so its limit lies at or below its start: it sends
    /// once the peer acknowledges a lease (its life heard again, with the
    /// SA) or is fenced. The question goes on, and an answer past the
    /// start still moves it (see [`history`](Self::history)).
    pub(super) fn begin_unanswered(&mut self, (spi, dir): SaKey) {
        self.adds.asking.remove(&(spi, dir));
        let mark = self.standby.get(spi, dir).map_or(0, |s| s.value);
        let past = self.restarted_past(spi, dir, mark, LOST_LIFE_STEPS - 1);
        self.begin_asked(spi, dir, Some(past));
    }

    /// Whether an acknowledgement for an owned SA is above anything this
    /// node sent for it.
    pub(super) fn acked_beyond(&self, spi: u32, dir: Direction, lease: u64) -> bool {
        match dir {
            Direction::Outbound => self
                .outbound
                .get(&spi)
                .is_some_and(|o| lease > o.sent_lease()),
            Direction::Inbound => self.inbound.get(&spi).is_some_and(|i| lease > i.sent_top()),
        }
    }

    /// What the peer knows of an SA: the answer to this node's query, or
    /// the history of an SA it no longer runs: stored, and an owned SA
    /// moves past it if it is above anything this life sent of it.
    pub(super) fn history(&mut self, spi: u32, dir: Direction, value: Option<u64>) {
        let key = (spi, dir);
        self.adds.unanswered.remove(&key);
        if self.adds.asking.remove(&key) {
            // Both nodes' knowledge: nothing on either means never used.
            let known = match (value, self.standby.get(spi, dir).map(|s| s.value)) {
                (None, None) => None,
                (a, b) => a.max(b),
            };
            self.begin_asked(spi, dir, known);
        } else if let Some(v) = value {
            if !self.owns(spi, dir) {
                self.store(spi, dir, v);
            } else if self.acked_beyond(spi, dir, v) {
                // Above anything this life sent of it: an earlier use it
                // forgot. (Not higher, it is this life's own news, or the
                // 0 a repeated question left.)
                self.recover(spi, dir, v, &[]);
            }
        }
    }
}
