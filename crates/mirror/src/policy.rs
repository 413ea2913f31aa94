//! The owner's side of one SA: when its state is due on the mirror link,
//! what lease it carries, and how far the SA may go.
//!
//! Outbound:
//! - `interval`: the state is due when the sequence number crosses a
//!   multiple of `interval` (a burst that jumps over several multiples sends
//!   once), and at every periodic refresh if it changed.
//! - `quantity`: the state carries the lease `seq + quantity`: the peer
//!   stores it as the point a takeover starts from.
//! - lease on: the SA may use sequence numbers only below the highest lease
//!   the peer has *acknowledged* (plus `slack`, see below); with the lease
//!   off it is unlimited, the bare claim behaviour.
//! - `slack`: a taking-over node starts at its stored lease plus the
//!   takeover jump (2^25 by default for ESN SAs, 2^24 for 32-bit ones),
//!   so the owner may run up to `jump - quantity` past its acknowledged
//!   lease without the two ranges ever meeting.

/// Send policy of an outbound SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutboundPolicy {
    /// Send the state when the sequence number crosses a multiple of this.
    pub interval: u64,
    /// Added to the sequence number to make the lease.
    pub quantity: u64,
    /// Whether the SA stalls at its acknowledged lease.
    pub lease: bool,
    /// How far past the acknowledged lease the SA may still go.
    pub slack: u64,
}

impl OutboundPolicy {
    /// A policy for an SA whose takeovers jump `takeover_jump` numbers (a
    /// 32-bit SA has room only for a small jump, or none).
    pub fn new(interval: u64, quantity: u64, lease: bool, takeover_jump: u64) -> Self {
        OutboundPolicy {
            interval: interval.max(1),
            quantity,
            lease,
            slack: takeover_jump.saturating_sub(quantity),
        }
    }
}

/// The mirror's view of an outbound SA this node owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedOutbound {
    policy: OutboundPolicy,
    seq: u64,
    bytes: u64,
    packets: u64,
    reported_block: u64,
    sent_lease: u64,
    acked_lease: u64,
    changed: bool,
    /// The first number of the run since the SA last started here (or
    /// where the node's persisted mark resumed it): the worker's reports
    /// below it are of no packet that went out.
    first: u64,
    /// The first number past every one known to have gone out (0: not
    /// known).
    sent_to: u64,
    /// Whether this run was told to be beyond its far end's reach.
    told_beyond: bool,
}

impl OwnedOutbound {
    /// An SA whose last used sequence number is `seq` (its lease starts
    /// there: nothing beyond it is promised yet).
    pub fn new(policy: OutboundPolicy, seq: u64) -> Self {
        OwnedOutbound {
            policy,
            seq,
            bytes: 0,
            packets: 0,
            reported_block: seq / policy.interval,
            sent_lease: seq,
            acked_lease: seq,
            changed: true,
            first: seq.saturating_add(1),
            sent_to: 0,
            told_beyond: false,
        }
    }

    /// An SA whose first usable sequence number is `start`, with `acked`
    /// the value the peer is known to store for it (numbers below `acked`
    /// plus slack may be used; below `start` belong to an earlier owner).
    pub fn starting_at(policy: OutboundPolicy, start: u64, acked: u64) -> Self {
        let mut s = OwnedOutbound::new(policy, start.saturating_sub(1));
        s.sent_lease = start.max(acked);
        s.acked_lease = acked;
        s
    }

    /// Restarts the SA at `start` if it is below (a restarted node learning
    /// how far its SA went), with `acked` what the peer stores for it;
    /// returns whether the start moved.
    pub fn recover(&mut self, start: u64, acked: u64) -> bool {
        let moved = start > self.seq.saturating_add(1);
        if moved {
            self.seq = start - 1;
            self.first = start;
            self.told_beyond = false;
            self.reported_block = self.seq / self.policy.interval;
        }
        self.acked_lease = self.acked_lease.max(acked);
        self.sent_lease = self.sent_lease.max(self.acked_lease);
        self.changed = true;
        moved
    }

    /// The peer restarted and forgot everything: in its lost life it may
    /// have run this SA up to `by` past what this node sent, used or
    /// otherwise knew of it (`known`: see `Mirror`). The SA moves past all
    /// of it, and waits for the new peer to acknowledge a lease. Returns
    /// the new start.
    pub fn peer_restarted(&mut self, by: u64, known: u64) -> u64 {
        // The bound is past every lease sent (the lease never falls below one).
        let base = self.used_bound().max(known);
        let start = base.saturating_add(by);
        self.seq = self.seq.max(start - 1);
        self.first = self.seq + 1;
        self.told_beyond = false;
        self.reported_block = self.seq / self.policy.interval;
        self.sent_lease = start;
        self.acked_lease = 0;
        self.changed = true;
        start
    }

    /// The first sequence number this node cannot have used: the limit
    /// (or past the last number used, if that is higher), or the lease when
    /// unlimited. A takeover starts no lower.
    pub fn reach(&self) -> u64 {
        match self.limit() {
            u64::MAX => self.lease(),
            l => l.max(self.seq.saturating_add(1)),
        }
    }

    /// The first number no worker can have used, whatever it has not
    /// reported yet: past the reach, the lease, and one interval past the
    /// last report (a worker reports each multiple of the interval it
    /// crosses). Without a lease (a fence) the workers' own position is
    /// all that bounds them, so a hand-back or a release starts past this.
    pub fn used_bound(&self) -> u64 {
        self.reach().max(self.lease()).max(
            self.seq
                .saturating_add(self.policy.interval)
                .saturating_add(1),
        )
    }

    /// Replaces the policy (the lease switched off when the peer is fenced).
    pub fn set_policy(&mut self, policy: OutboundPolicy) {
        self.policy = policy;
    }

    /// The worker's absolute counters; returns whether the state is now due
    /// (the sequence number crossed a multiple of the interval, or the
    /// run's first packet went out: the peer learns the far end saw a
    /// number of this run before a takeover measures from it).
    pub fn progress(&mut self, seq: u64, bytes: u64, packets: u64) -> bool {
        if seq <= self.seq && bytes <= self.bytes && packets <= self.packets {
            return false;
        }
        let mut first_sent = false;
        if seq >= self.first {
            first_sent = self.sent_to <= self.first;
            self.sent_to = self.sent_to.max(seq.saturating_add(1));
        }
        self.seq = self.seq.max(seq);
        self.bytes = self.bytes.max(bytes);
        self.packets = self.packets.max(packets);
        self.changed = true;
        let block = self.seq / self.policy.interval;
        if block > self.reported_block {
            self.reported_block = block;
            return true;
        }
        first_sent
    }

    /// The lease to send now: `seq + quantity`, never below one already sent.
    pub fn lease(&self) -> u64 {
        self.seq
            .saturating_add(self.policy.quantity)
            .max(self.sent_lease)
    }

    /// Records that a state with `lease` went out.
    pub fn sent(&mut self, lease: u64) {
        self.sent_lease = self.sent_lease.max(lease);
        self.changed = false;
    }

    /// Whether the refresh must send the state again: it changed since it
    /// was last sent, or the peer has not acknowledged the last lease (the
    /// frame or its acknowledgement may have been lost, and a stalled SA
    /// changes no more).
    pub fn needs_refresh(&self) -> bool {
        self.changed || self.acked_lease < self.sent_lease
    }

    /// The peer acknowledged `lease`; returns whether the limit rose. An
    /// acknowledgement of more than was ever sent is impossible from an
    /// honest peer and is ignored.
    pub fn ack(&mut self, lease: u64) -> bool {
        if lease > self.acked_lease && lease <= self.sent_lease {
            self.acked_lease = lease;
            return true;
        }
        false
    }

    /// The first sequence number past every one known to have gone out
    /// on the SA, here or under an earlier owner (0: not known).
    pub fn sent_to(&self) -> u64 {
        self.sent_to
    }

    /// Learns that numbers below `sent_to` went out (a record of the SA,
    /// or a start that shows none did); returns whether that is news.
    pub fn learn_sent(&mut self, sent_to: u64) -> bool {
        let news = sent_to > self.sent_to;
        if news {
            self.sent_to = sent_to;
            self.changed = true;
        }
        news
    }

    /// The first number of the current run.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The node's persisted mark resumed the worker at `floor`: reports
    /// below it (a stall before the first packet) are of nothing sent.
    pub fn resumed_at(&mut self, floor: u64) {
        self.first = self.first.max(floor);
    }

    /// Marks this run told to be beyond its far end's reach; returns
    /// whether it was not already.
    pub fn tell_beyond(&mut self) -> bool {
        !std::mem::replace(&mut self.told_beyond, true)
    }

    /// The highest lease sent to the peer.
    pub fn sent_lease(&self) -> u64 {
        self.sent_lease
    }

    /// The highest lease the peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked_lease
    }

    /// The first sequence number the SA must not use: its acknowledged
    /// lease plus slack, or none with the lease off.
    pub fn limit(&self) -> u64 {
        if self.policy.lease {
            self.acked_lease.saturating_add(self.policy.slack)
        } else {
            u64::MAX
        }
    }

    /// Absolute counters: (seq, bytes, packets).
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.seq, self.bytes, self.packets)
    }
}

/// The mirror's view of an inbound SA this node owns: its replay window as
/// the worker last reported it, and its lease. With leases on, the worker
/// accepts only packets below the window top the peer acknowledged plus
/// `interval`; a node taking the SA over marks everything up to its stored
/// top plus `interval` seen (strict), so no packet is accepted by both,
/// even in split brain. The state is due each time the top crosses a
/// multiple of half the interval, so an acknowledgement can arrive before
/// the worker reaches its limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedInbound {
    interval: u64,
    lease: bool,
    top: u64,
    bitmap: Vec<u64>,
    /// The highest authentic number the worker refused at the limit:
    /// reported as the top (so the peer stores it) but never taken for
    /// the worker's window, which restarts compare against.
    wanted: u64,
    bytes: u64,
    packets: u64,
    reported_block: u64,
    sent: u64,
    acked: u64,
    changed: bool,
}

impl OwnedInbound {
    /// An SA whose window top is `top` with `bitmap` below it, with `acked`
    /// the top the peer is known to store for it.
    pub fn starting_at(interval: u64, lease: bool, top: u64, bitmap: Vec<u64>, acked: u64) -> Self {
        let interval = interval.max(1);
        OwnedInbound {
            interval,
            lease,
            top,
            bitmap,
            wanted: 0,
            bytes: 0,
            packets: 0,
            reported_block: top / (interval / 2).max(1),
            sent: acked,
            acked,
            changed: true,
        }
    }

    fn step(&self) -> u64 {
        (self.interval / 2).max(1)
    }

    /// The worker's window and counters; returns whether the state is now
    /// due. A top below the one known is stale and ignored.
    pub fn progress(&mut self, top: u64, bitmap: &[u64], bytes: u64, packets: u64) -> bool {
        if top < self.top {
            return false;
        }
        self.top = top;
        self.bitmap.clear();
        self.bitmap.extend_from_slice(bitmap);
        self.bytes = self.bytes.max(bytes);
        self.packets = self.packets.max(packets);
        self.changed = true;
        let block = top / self.step();
        if block > self.reported_block {
            self.reported_block = block;
            return true;
        }
        false
    }

    /// Moves the window up to `top` with `bitmap` if that is higher (a
    /// restart past an earlier life); `acked` is what the peer stores.
    /// Returns whether the top moved.
    pub fn recover(&mut self, top: u64, bitmap: Vec<u64>, acked: u64) -> bool {
        let moved = top > self.top;
        if moved {
            self.top = top;
            self.bitmap = bitmap;
            self.reported_block = top / self.step();
        }
        self.acked = self.acked.max(acked);
        self.sent = self.sent.max(self.acked);
        self.changed = true;
        moved
    }

    /// The peer's life ended unheard (see `Mirror`): the window moves up
    /// to `top` with `bitmap` if that is higher, and the limit waits for
    /// the next life to acknowledge a top. Returns whether the top moved.
    pub fn peer_lost(&mut self, top: u64, bitmap: Vec<u64>) -> bool {
        let moved = self.recover(top, bitmap, 0);
        self.sent = self.value();
        self.acked = 0;
        moved
    }

    /// The worker refused an authentic packet numbered `seq` at the
    /// limit; returns whether the value to report rose.
    pub fn want(&mut self, seq: u64) -> bool {
        if seq <= self.value() {
            return false;
        }
        self.wanted = seq;
        self.changed = true;
        true
    }

    /// The window top (of the worker's window, as last reported).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The top to report to the peer: the window's, or the highest
    /// number refused at the limit if that is higher.
    pub fn value(&self) -> u64 {
        self.top.max(self.wanted)
    }

    /// The replay bitmap below the top.
    pub fn bitmap(&self) -> &[u64] {
        &self.bitmap
    }

    /// Absolute counters: (bytes, packets).
    pub fn counters(&self) -> (u64, u64) {
        (self.bytes, self.packets)
    }

    /// Records that the state went out.
    pub fn sent(&mut self) {
        self.sent = self.sent.max(self.value());
        self.changed = false;
    }

    /// Whether the refresh must send the state again.
    pub fn needs_refresh(&self) -> bool {
        self.changed || self.acked < self.sent
    }

    /// The peer acknowledged storing `top`; returns whether the limit rose.
    pub fn ack(&mut self, top: u64) -> bool {
        if top > self.acked && top <= self.sent {
            self.acked = top;
            return true;
        }
        false
    }

    /// The highest top sent to the peer.
    pub fn sent_top(&self) -> u64 {
        self.sent
    }

    /// The top the peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether the lease rule holds (off while the peer is fenced).
    pub fn set_lease(&mut self, on: bool) {
        self.lease = on;
    }

    /// The first sequence number the worker must not accept.
    pub fn limit(&self) -> u64 {
        if self.lease {
            self.acked.saturating_add(self.interval)
        } else {
            u64::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(interval: u64, quantity: u64) -> OwnedOutbound {
        OwnedOutbound::new(OutboundPolicy::new(interval, quantity, true, 0), 0)
    }

    #[test]
    fn interval_crossings_even_when_a_burst_jumps_over_several() {
        let mut s = sa(100, 300);
        assert!(s.progress(1, 0, 1), "the run's first packet: due at once");
        assert!(!s.progress(99, 0, 99));
        assert!(s.progress(100, 0, 100));
        assert!(!s.progress(150, 0, 150));
        // A burst from 150 to 420 crosses 200, 300 and 400: due once.
        assert!(s.progress(420, 0, 420));
        assert!(!s.progress(499, 0, 499));
        // Going backwards (a stale report) is not progress.
        assert!(!s.progress(300, 0, 300));
        assert_eq!(s.counters().0, 499);
    }

    #[test]
    fn interval_one_is_every_packet() {
        let mut s = sa(1, 10);
        for seq in 1..50 {
            assert!(s.progress(seq, 0, seq));
        }
    }

    #[test]
    fn lease_is_seq_plus_quantity_and_the_limit_follows_acks_only() {
        let mut s = sa(100, 300);
        assert_eq!(s.limit(), 0, "nothing acknowledged: nothing may be sent");
        s.progress(0, 0, 0);
        let l = s.lease();
        assert_eq!(l, 300);
        s.sent(l);
        assert_eq!(s.limit(), 0, "sent is not acknowledged");
        assert!(s.ack(300));
        assert_eq!(s.limit(), 300);
        assert!(!s.ack(200), "an older ack changes nothing");
        assert!(!s.ack(5000), "an ack beyond what was sent is ignored");
        assert_eq!(s.limit(), 300);
    }

    #[test]
    fn lease_off_is_unlimited_and_esn_gets_slack() {
        let off = OwnedOutbound::new(OutboundPolicy::new(100, 300, false, 0), 0);
        assert_eq!(off.limit(), u64::MAX);
        let mut esn = OwnedOutbound::new(OutboundPolicy::new(100, 300, true, 1 << 30), 0);
        esn.sent(300);
        esn.ack(300);
        assert_eq!(esn.limit(), 300 + (1 << 30) - 300);
    }

    #[test]
    fn an_inbound_sa_accepts_below_its_acknowledged_top_plus_the_interval() {
        let mut s = OwnedInbound::starting_at(100, true, 0, vec![], 0);
        assert_eq!(s.limit(), 100);
        assert!(!s.progress(49, &[1], 0, 49));
        assert!(s.progress(50, &[1], 0, 50), "due at half the interval");
        s.sent();
        assert!(!s.ack(60), "more than was sent");
        assert!(s.ack(50));
        assert_eq!(s.limit(), 150);
        assert!(!s.progress(40, &[1], 0, 40), "a stale report");
        assert_eq!(s.top(), 50);
        s.set_lease(false);
        assert_eq!(s.limit(), u64::MAX);
    }
}
