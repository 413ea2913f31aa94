//! How far an SA may go: the lower of two bounds set apart, the mirror's
//! lease and the node's persisted high-water mark, kept as one number for
//! the packet path, with the packets refused at it since it last moved.

/// The first sequence number an SA may not use (outbound) or accept
/// (inbound). `u64::MAX` while neither bound is set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqLimit {
    lease: u64,
    mark: u64,
    limit: u64,
    /// Packets refused at `limit` since it last moved.
    stalls: u64,
}

impl Default for SeqLimit {
    fn default() -> Self {
        SeqLimit {
            lease: u64::MAX,
            mark: u64::MAX,
            limit: u64::MAX,
            stalls: 0,
        }
    }
}

impl SeqLimit {
    /// Sets the mirror's lease.
    pub(crate) fn set_lease(&mut self, lease: u64) {
        self.lease = lease;
        self.update();
    }

    /// Sets the node's persisted mark.
    pub(crate) fn set_mark(&mut self, mark: u64) {
        self.mark = mark;
        self.update();
    }

    /// A limit that moved starts a new stall: its first refused packet
    /// is the first again.
    fn update(&mut self) {
        let limit = self.lease.min(self.mark);
        if limit != self.limit {
            self.stalls = 0;
        }
        self.limit = limit;
    }

    /// The lower of the two.
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.limit
    }

    /// The mirror's lease alone.
    pub(crate) fn lease(&self) -> u64 {
        self.lease
    }

    /// Counts a packet refused at the limit; returns how many were since
    /// it last moved (1: the first).
    pub(crate) fn stall(&mut self) -> u64 {
        self.stalls += 1;
        self.stalls
    }

    /// Packets refused at the limit since it last moved.
    pub(crate) fn stalls(&self) -> u64 {
        self.stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_that_moves_starts_its_stall_count_again() {
        let mut l = SeqLimit::default();
        l.set_mark(10);
        assert_eq!(l.stall(), 1);
        assert_eq!(l.stall(), 2);
        l.set_mark(10);
        assert_eq!(l.stalls(), 2, "the same mark again: the same stall");
        l.set_lease(20);
        assert_eq!(l.stalls(), 2, "the mark still bounds it");
        l.set_mark(30);
        assert_eq!(l.stalls(), 0, "it moved: a new stall");
        assert_eq!(l.stall(), 1);
    }
}
