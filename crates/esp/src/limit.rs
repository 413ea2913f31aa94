//! How far an SA may go: the lower of two bounds set apart, the mirror's
//! lease and the node's persisted high-water mark, kept as one number for
//! the packet path.

/// The first sequence number an SA may not use (outbound) or accept
/// (inbound). `u64::MAX` while neither bound is set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqLimit {
    lease: u64,
    mark: u64,
    limit: u64,
}

impl Default for SeqLimit {
    fn default() -> Self {
        SeqLimit {
            lease: u64::MAX,
            mark: u64::MAX,
            limit: u64::MAX,
        }
    }
}

impl SeqLimit {
    /// Sets the mirror's lease.
    pub(crate) fn set_lease(&mut self, lease: u64) {
        self.lease = lease;
        self.limit = self.lease.min(self.mark);
    }

    /// Sets the node's persisted mark.
    pub(crate) fn set_mark(&mut self, mark: u64) {
        self.mark = mark;
        self.limit = self.lease.min(self.mark);
    }

    /// The lower of the two.
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.limit
    }
}
