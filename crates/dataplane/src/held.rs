//! Frames a worker holds for a short while instead of dropping them.
//!
//! Two waits use it:
//! - **An SA about to start here.** When an SA moves between the nodes of
//!   the pair (a drain, a hand-back, a failed flow), hosts and the far end
//!   go on sending to the node that gave it up until they follow the
//!   taker's gratuitous ARP. The giver sends those frames on to its peer
//!   (the worker's redirect); one that reaches the taker before the
//!   hand-over record has started the SA there waits until it has.
//! - **A neighbour's MAC.** A packet ready to go out to a next hop whose
//!   MAC is not known yet waits for ARP's answer, as the kernel's
//!   neighbour queue does: a node that has just started, or has just
//!   taken an SA over, knows few neighbours yet.
//!
//! Each frame waits at most the queue's `wait` from when it was first
//! held ([`Held::expire`] gives back those that waited in vain, to be
//! dropped); the queue is bounded, and a frame over its bound is given
//! back at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Role;

/// Frames held, oldest first, each with when it was first held and the
/// port it belongs to.
#[derive(Debug)]
pub struct Held<F> {
    frames: VecDeque<(Instant, Role, F)>,
    wait: Duration,
    max: usize,
}

impl<F> Held<F> {
    /// A queue whose frames wait at most `wait`, `max` of them at most.
    pub fn new(wait: Duration, max: usize) -> Self {
        Held {
            frames: VecDeque::new(),
            wait,
            max,
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How many frames are held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Holds `frame` of `role`'s port, first held at `since`; gives it
    /// back when the queue is full.
    pub fn hold(&mut self, since: Instant, role: Role, frame: F) -> Result<(), F> {
        if self.frames.len() >= self.max {
            return Err(frame);
        }
        self.frames.push_back((since, role, frame));
        Ok(())
    }

    /// Every frame held, to be tried again: each comes with when it was
    /// first held, to be held again from then.
    pub fn take(&mut self) -> VecDeque<(Instant, Role, F)> {
        std::mem::take(&mut self.frames)
    }

    /// Removes and returns the frames held `wait` or longer at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<F> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.frames.len());
        for (since, role, f) in self.frames.drain(..) {
            if now.duration_since(since) >= self.wait {
                out.push(f);
            } else {
                kept.push_back((since, role, f));
            }
        }
        self.frames = kept;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(20);

    #[test]
    fn a_frame_waits_its_time_and_no_longer() {
        let t0 = Instant::now();
        let mut h = Held::new(WAIT, 8);
        h.hold(t0, Role::Protected, 1).unwrap();
        h.hold(t0 + Duration::from_millis(5), Role::Unprotected, 2)
            .unwrap();
        assert!(h.expire(t0 + Duration::from_millis(19)).is_empty());
        assert_eq!(h.expire(t0 + WAIT), vec![1]);
        assert_eq!(h.len(), 1);
        assert_eq!(h.expire(t0 + Duration::from_millis(25)), vec![2]);
        assert!(h.is_empty());
    }

    #[test]
    fn a_frame_held_again_keeps_its_first_time() {
        let t0 = Instant::now();
        let mut h = Held::new(WAIT, 8);
        h.hold(t0, Role::Protected, 7).unwrap();
        for (since, role, f) in h.take() {
            h.hold(since, role, f).unwrap();
        }
        assert_eq!(h.expire(t0 + WAIT), vec![7]);
    }

    #[test]
    fn the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut h = Held::new(WAIT, 3);
        for k in 0..3 {
            h.hold(t0, Role::Protected, k).unwrap();
        }
        assert_eq!(h.hold(t0, Role::Protected, 999), Err(999));
        assert_eq!(h.take().len(), 3);
        assert!(h.is_empty());
    }
}
