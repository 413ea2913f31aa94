//! Reader43's probes of c3412e4: a takeover drops the SA's final of an
//! earlier run here (`changes.finals`), and `leave.unheard_runs` marks it
//! until the peer confirms a record of the new run.

mod pair;

use espgate_mirror::Mirror;
use espgate_wire::Direction;
use pair::*;

const IN: Direction = Direction::Inbound;

fn node_g(me: u32, epoch: u64, grace: u64) -> Mirror {
    let mut c = cfg(me);
    c.inbound_grace = grace;
    node_from(c, epoch, 0)
}

/// A worker of IN_A: its window top and every number it accepted.
#[derive(Default)]
struct Worker {
    top: u64,
    took: Vec<u64>,
}

impl Worker {
    /// Reads `m`'s events: an activation of IN_A restarts the window there.
    fn sync(&mut self, m: &mut Mirror) {
        if let Some((s, _)) = last_start(&events(m), IN_A, IN) {
            self.top = s;
        }
    }

    /// With `peer` heard, wants every number up to `to`; returns the time.
    fn takes(&mut self, m: &mut Mirror, peer: &mut Mirror, to: u64, mut t: u64) -> u64 {
        for _ in 0..400 {
            self.sync(m);
            if self.top >= to || !m.owns(IN_A, IN) {
                break;
            }
            let step = (self.top + 20).min(to);
            if m.inbound_limit(IN_A).unwrap_or(0) <= step {
                m.inbound_stalled(IN_A, step);
                t = settle(m, peer, t);
                self.sync(m);
            }
            let limit = m.inbound_limit(IN_A).unwrap_or(0);
            if limit <= self.top + 1 {
                t = settle(m, peer, t);
                continue;
            }
            let next = step.min(limit - 1);
            self.took.extend(self.top + 1..=next);
            self.top = next;
            m.inbound_progress(IN_A, next, &[u64::MAX; 2], 0, next);
            t = settle(m, peer, t);
        }
        t
    }

    /// Alone (its frames lost) at `t`, wants every number up to `to`.
    fn alone_takes(&mut self, m: &mut Mirror, to: u64, t: u64) {
        for _ in 0..400 {
            self.sync(m);
            if self.top >= to || !m.owns(IN_A, IN) {
                break;
            }
            let step = (self.top + 20).min(to);
            m.inbound_stalled(IN_A, step);
            let limit = m.inbound_limit(IN_A).unwrap_or(0);
            if limit <= self.top + 1 {
                break;
            }
            let next = step.min(limit - 1);
            self.took.extend(self.top + 1..=next);
            self.top = next;
            m.inbound_progress(IN_A, next, &[u64::MAX; 2], 0, next);
            alone(m, t, t);
        }
    }
}

/// As reader42's setup, with `inbound_grace` `grace`: B ends with a final
/// of IN_A pending (A's change won at B) and A's `Past` answering it held.
/// Returns A, B, A's held frames, their workers, the time.
fn b_has_a_final(grace: u64) -> (Mirror, Mirror, Vec<Vec<u8>>, Worker, Worker, u64) {
    let (mut a, mut b) = (node_g(A, 1, grace), node_g(B, 2, grace));
    let (mut wa, mut wb) = (Worker::default(), Worker::default());
    let mut t = settle(&mut a, &mut b, 0);
    t = wa.takes(&mut a, &mut b, 230, t);
    wb.sync(&mut b);
    t = cut(&mut a, &mut b, t);
    assert!(b.take_over() >= 1);
    wb.alone_takes(&mut b, 2000, t);
    wa.alone_takes(&mut a, 2000, t);
    t = settle(&mut a, &mut b, t);
    assert!(b.owns(IN_A, IN) && !a.owns(IN_A, IN));
    t = wb.takes(&mut b, &mut a, wb.top + 300, t);
    wa.sync(&mut a);
    t = cut(&mut a, &mut b, t);
    assert!(a.take_over() >= 1);
    wa.alone_takes(&mut a, 4000, t);
    wb.alone_takes(&mut b, 4000, t);
    // Its ownership record went into the cut with the worker's reports:
    // the next refresh sends it again.
    t += 60;
    a.handle_timeout(t);
    deliver(&mut a, &mut b, t);
    assert!(
        !b.owns(IN_A, IN),
        "A's change won at B (a owns {})",
        a.owns(IN_A, IN)
    );
    deliver(&mut b, &mut a, t);
    let held = sent(&mut a, t);
    assert!(held.iter().any(|f| has_past(f, IN_A, IN)));
    wa.sync(&mut a);
    wb.sync(&mut b);
    (a, b, held, wa, wb, t)
}

/// B re-takes IN_A (its final of the earlier run dropped) with A's
/// `Past` never delivered, both run alone, then the link heals; the
/// owner then runs on, B drains and leaves, A runs on. Returns what each
/// accepted overall and B's leave.
fn retake_with_past_lost(grace: u64) -> (Vec<u64>, Vec<u64>, bool) {
    let (mut a, mut b, _held, mut wa, mut wb, mut t) = b_has_a_final(grace);
    t = cut(&mut a, &mut b, t);
    assert!(b.take_over() >= 1);
    wb.alone_takes(&mut b, 6000, t);
    wa.alone_takes(&mut a, 6000, t);
    t = settle(&mut a, &mut b, t + 10);
    t = wb.takes(&mut b, &mut a, wb.top + 300, t);
    t = wa.takes(&mut a, &mut b, wa.top + 300, t);
    t = settle(&mut a, &mut b, t);
    wb.sync(&mut b);
    hand_everything_over(&mut b, |_, _| 0);
    t = settle(&mut a, &mut b, t);
    let left = b.leave().is_ok();
    t = settle(&mut a, &mut b, t);
    wa.takes(&mut a, &mut b, wa.top.max(wb.top) + 300, t);
    assert!(
        wa.took.len() > 230 && wb.took.len() > 300,
        "both ran: {} {}",
        wa.took.len(),
        wb.took.len()
    );
    (wa.took, wb.took, left)
}

/// Probe (holds): B's final of its first run is dropped by its second
/// takeover and A's `Past` of it is lost; B's takeover record carries a
/// bound at or past that final (`take_final` raised the stored value and
/// the floor), so A, taking it in, stores past B's earlier run. Nothing
/// is accepted twice, and B's drain is taken (its record confirmed).
#[test]
fn probe_retake_with_the_past_lost_grace_100() {
    let (a, b, left) = retake_with_past_lost(INTERVAL);
    assert!(
        common(&a, &b).is_empty(),
        "twice: {:?}",
        common(&a, &b).first()
    );
    assert!(left, "B's drain refused");
}

/// Probe (holds): as above with `inbound_grace` 0.
#[test]
fn probe_retake_with_the_past_lost_grace_0() {
    let (a, b, left) = retake_with_past_lost(0);
    assert!(
        common(&a, &b).is_empty(),
        "twice: {:?}",
        common(&a, &b).first()
    );
    assert!(left, "B's drain refused");
}
