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

/// How an owned inbound SA's lease reaches past its window top: the
/// traffic of `ahead_ms` at the rate last measured, at most `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboundPolicy {
    /// The most the lease reaches past the top, and the step a worker
    /// reports at while the SA runs without one.
    pub interval: u64,
    /// The traffic (in milliseconds at the SA's rate) the lease reaches
    /// past the top.
    pub ahead_ms: u64,
    /// Whether the SA stops at its acknowledged lease.
    pub lease: bool,
}

/// The mirror's view of an inbound SA this node owns: its replay window as
/// the worker last reported it, and its lease. The state it reports carries
/// a bound, not the top: the top plus what the SA receives in `ahead_ms`
/// at its measured rate (at most `interval`; 0 below one packet in that
/// time). With leases on, the worker accepts only numbers at or below the
/// bound the peer acknowledged; a node taking the SA over marks everything
/// up to its stored bound seen (strict), so no packet is accepted by both,
/// even in split brain, and after a crash only numbers the far end sent in
/// the last `ahead_ms` are refused. The state is due whenever the bound to
/// report moved past the one sent; the worker reports when its top is half
/// way to its limit, so the acknowledgement can arrive before it gets
/// there. At low rates the bound is the top itself: each packet waits for
/// its number's acknowledgement (one mirror round trip).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedInbound {
    policy: InboundPolicy,
    top: u64,
    bitmap: Vec<u64>,
    /// The highest authentic number the worker refused at the limit:
    /// reported (so the peer stores it) but never taken for the worker's
    /// window, which restarts compare against.
    wanted: u64,
    bytes: u64,
    packets: u64,
    /// How far the bound reaches past the top now.
    ahead: u64,
    /// Run from an exact hand-over, the peer heard since.
    exact: bool,
    /// The highest bound this node reported or gave its worker as a
    /// limit: a bound never falls, though the rate may.
    bound: u64,
    /// The start of the current rate sample: (ms, packets).
    sample: Option<(u64, u64)>,
    sent: u64,
    acked: u64,
    changed: bool,
}

impl OwnedInbound {
    /// An SA whose window top is `top` with `bitmap` below it, with `acked`
    /// the bound the peer is known to store for it.
    pub fn starting_at(policy: InboundPolicy, top: u64, bitmap: Vec<u64>, acked: u64) -> Self {
        let policy = InboundPolicy {
            interval: policy.interval.max(1),
            ..policy
        };
        OwnedInbound {
            policy,
            top,
            bitmap,
            wanted: 0,
            bytes: 0,
            packets: 0,
            ahead: 0,
            exact: false,
            bound: top,
            sample: None,
            sent: acked,
            acked,
            changed: true,
        }
    }

    /// The worker's window and counters at `now_ms`; returns whether the
    /// state is now due (its bound moved past the one sent). A top below
    /// the one known is stale and ignored.
    pub fn progress(
        &mut self,
        top: u64,
        bitmap: &[u64],
        bytes: u64,
        packets: u64,
        now_ms: u64,
    ) -> bool {
        if top < self.top {
            return false;
        }
        self.top = top;
        self.bitmap.clear();
        self.bitmap.extend_from_slice(bitmap);
        self.bytes = self.bytes.max(bytes);
        self.packets = self.packets.max(packets);
        self.changed = true;
        self.measure(now_ms);
        self.raise();
        self.value() > self.sent
    }

    /// Raises the bound to the top (or the highest number wanted) plus
    /// what the rate reaches.
    fn raise(&mut self) {
        let bound = self.top.max(self.wanted).saturating_add(self.ahead);
        self.bound = self.bound.max(bound);
    }

    /// Measures the rate: once a sample has lasted twice `ahead_ms`, the
    /// bound reaches as far past the top as the packets of the sample
    /// would arrive in `ahead_ms`.
    fn measure(&mut self, now_ms: u64) {
        let Some((since, packets)) = self.sample else {
            self.sample = Some((now_ms, self.packets));
            return;
        };
        let lasted = now_ms.saturating_sub(since);
        if lasted < self.policy.ahead_ms.saturating_mul(2).max(1) {
            return;
        }
        let arrived = self.packets.saturating_sub(packets);
        self.ahead =
            (arrived.saturating_mul(self.policy.ahead_ms) / lasted).min(self.policy.interval);
        self.sample = Some((now_ms, self.packets));
    }

    /// Moves the window up to `top` with `bitmap` if that is higher (a
    /// restart past an earlier life); `acked` is what the peer stores.
    /// Returns whether the top moved.
    pub fn recover(&mut self, top: u64, bitmap: Vec<u64>, acked: u64) -> bool {
        let moved = top > self.top;
        if moved {
            self.top = top;
            self.bitmap = bitmap;
            self.raise();
        }
        self.acked = self.acked.max(acked);
        self.sent = self.sent.max(self.acked);
        self.changed = true;
        moved
    }

    /// The peer's life ended unheard (see `Mirror`): the window moves up
    /// to `top` with `bitmap` if that is higher, and the limit waits for
    /// the next life to acknowledge a bound. Returns whether the top moved.
    pub fn peer_lost(&mut self, top: u64, bitmap: Vec<u64>) -> bool {
        self.exact = false;
        let moved = self.recover(top, bitmap, 0);
        self.sent = self.value();
        self.acked = 0;
        moved
    }

    /// The worker refused an authentic packet numbered `seq` at the
    /// limit; returns whether the bound to report rose.
    pub fn want(&mut self, seq: u64) -> bool {
        if seq <= self.value() {
            return false;
        }
        self.wanted = seq;
        self.changed = true;
        self.raise();
        true
    }

    /// The window top (of the worker's window, as last reported).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The bound to report to the peer: past the window's top, or the
    /// highest number refused at the limit if that is higher, by what
    /// the SA received in `ahead_ms` when it last moved; never lower than
    /// an earlier one.
    pub fn value(&self) -> u64 {
        self.bound
    }

    /// How far the bound reaches past the top now.
    pub fn ahead(&self) -> u64 {
        self.ahead
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

    /// The peer acknowledged storing `bound`; returns whether the limit
    /// rose.
    pub fn ack(&mut self, bound: u64) -> bool {
        if bound > self.acked && bound <= self.sent {
            self.acked = bound;
            return true;
        }
        false
    }

    /// Whether the SA runs from an exact hand-over, its peer heard since
    /// (see `Mirror::ack_received`).
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// Marks the SA run from an exact hand-over, or no longer (the peer
    /// went silent: it may have taken the SA over and used numbers this
    /// node does not know of; its ownership record of that can be lost
    /// for good, the SA deleted there and added again, and what it then
    /// acknowledges is its own use: reader40's find 1).
    pub fn set_exact(&mut self, exact: bool) {
        self.exact = exact;
    }

    /// Counts the bound as sent and acknowledged (see
    /// `Mirror::peer_restarted`: a fenced peer's next life).
    pub fn count_reported(&mut self) {
        self.sent = self.sent.max(self.bound);
        self.acked = self.acked.max(self.bound);
    }

    /// The highest bound sent to the peer.
    pub fn sent_top(&self) -> u64 {
        self.sent
    }

    /// The bound the peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether the lease rule holds (off while the peer is fenced).
    pub fn set_lease(&mut self, on: bool) {
        self.policy.lease = on;
    }

    /// Whether the SA waits for the peer's acknowledgements.
    pub fn leased(&self) -> bool {
        self.policy.lease
    }

    /// The first sequence number the worker must not accept: past the
    /// acknowledged bound, or without a lease past the bound itself (the
    /// worker never runs past what this node reports, so whatever the
    /// order its limits reach it in, a state sent when the lease is back
    /// covers all it accepted).
    pub fn limit(&self) -> u64 {
        if self.policy.lease {
            self.acked.saturating_add(1)
        } else {
            self.value().saturating_add(1)
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

    fn inbound(interval: u64, ahead_ms: u64) -> OwnedInbound {
        let policy = InboundPolicy {
            interval,
            ahead_ms,
            lease: true,
        };
        OwnedInbound::starting_at(policy, 0, vec![], 0)
    }

    #[test]
    fn an_inbound_sa_accepts_up_to_its_acknowledged_bound() {
        let mut s = inbound(100, 10);
        assert_eq!(s.limit(), 1, "nothing acknowledged: nothing past 0");
        assert!(s.progress(5, &[1], 0, 5, 0), "the top moved: due");
        assert_eq!(s.value(), 5, "no rate measured yet: the bound is the top");
        s.sent();
        assert!(!s.ack(6), "more than was sent");
        assert!(s.ack(5));
        assert_eq!(s.limit(), 6);
        assert!(!s.progress(4, &[1], 0, 4, 1), "a stale report");
        assert_eq!(s.top(), 5);
    }

    #[test]
    fn the_bound_reaches_as_far_as_the_rate_does_in_ahead_ms() {
        let mut s = inbound(1000, 10);
        s.progress(1, &[1], 0, 1, 0);
        // 40 packets in 20 ms: 20 in 10 ms.
        s.progress(41, &[1], 0, 41, 20);
        assert_eq!(s.ahead(), 20);
        assert_eq!(s.value(), 61);
        // 2 packets in 200 ms (10 per second): under one in 10 ms. The
        // bound does not fall; it follows the top once the top is past it.
        s.progress(43, &[1], 0, 43, 220);
        assert_eq!(s.ahead(), 0);
        assert_eq!(s.value(), 61);
        s.progress(70, &[1], 0, 70, 230);
        assert_eq!(s.value(), 70);
        // Never past the interval.
        s.progress(100_043, &[1], 0, 100_043, 240);
        assert_eq!(s.ahead(), 1000);
    }

    #[test]
    fn without_a_lease_the_limit_follows_the_bound_not_the_peer() {
        let mut s = inbound(100, 10);
        s.progress(7, &[1], 0, 7, 0);
        s.set_lease(false);
        assert_eq!(s.limit(), 8, "never past what this node reports");
        s.want(9);
        assert_eq!(s.limit(), 10);
        s.set_lease(true);
        assert_eq!(s.limit(), 1, "back to what the peer acknowledged");
    }

    #[test]
    fn a_stall_past_the_bound_raises_it() {
        let mut s = inbound(100, 10);
        s.progress(3, &[1], 0, 3, 0);
        assert!(!s.want(3), "at the bound: nothing new");
        assert!(s.want(9));
        assert_eq!(s.value(), 9);
        assert_eq!(s.top(), 3, "the window stays where the worker has it");
    }
}
