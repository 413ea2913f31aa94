//! What a ninth fresh reader found against 38035e3 and 294ffce (every SA
//! added at run time asks; the answer is one unit of view and history;
//! `history_of` is what a node stores or reported; `past` records).

mod pair;

use espgate_wire::Direction;
use pair::*;

/// A fresh outbound SA, home A, added at run time (a rekey's new SA).
const NEW_OUT: u32 = 0x7100;
/// A fresh inbound SA, home A, added at run time.
const NEW_IN: u32 = 0x7200;

/// Where A began `NEW_OUT` (sequence number) and `NEW_IN` (window top),
/// once neither asks any more.
fn fresh_starts(a: &mut espgate_mirror::Mirror) -> (Option<u64>, Option<u64>) {
    assert!(!a.asking(NEW_OUT, Direction::Outbound) && !a.asking(NEW_IN, Direction::Inbound));
    let evs = events(a);
    let start_of = |spi, dir| last_start(&evs, spi, dir).map(|s| s.0);
    (
        start_of(NEW_OUT, Direction::Outbound),
        start_of(NEW_IN, Direction::Inbound),
    )
}

/// Reader9 find 1 (38035e3, promise 4: a fresh SA starts at its first
/// number when neither node ever used it), the SA added on the peer
/// first. Since 38035e3 every run-time add asks, the peer's SA too; the
/// node asked about an SA it does not run stores `known.unwrap_or(0)`
/// ("from now on this node knows the SA was (to be) used"). When the
/// asker is not the SA's home, nobody will run it from that answer, but
/// the 0 stays in the answerer's standby table; when the host then adds
/// the SA on its home node, the home node's own question is answered
/// with nothing (the peer stores nothing of it) and `history` takes the
/// maximum with what the home node stores, `Some(0)`: the SA "was used",
/// and `begin_asked` restarts it past 0 — one takeover jump out
/// (outbound) or one interval with everything below seen (inbound,
/// strict).
///
/// Sequence (pair harness, synchronised): the host adds `NEW_OUT` and
/// `NEW_IN` (home A) to B first; settle (B asks A, A lacks them, stores
/// 0, answers nothing). The host then adds them to A; settle.
/// Expected: `NEW_OUT` starts at sequence number 1, `NEW_IN` at window
/// top 0. Measured: 1000 and 100 (packets 1..=100 refused). Fixed: a
/// question leaves a mark (`marks`), not a stored value; a loss of the
/// asking life still counts it as used from 0.
#[test]
fn a_fresh_sa_added_on_the_peer_first_starts_at_its_first_number() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut a);
    b.add_sa(NEW_OUT, Direction::Outbound, false, A);
    b.add_sa(NEW_IN, Direction::Inbound, false, A);
    t = settle(&mut a, &mut b, t);
    // A, asked about SAs it does not have, stored 0 for them (as if
    // they had been used) before the fix; now it stores nothing.
    for (spi, dir) in [(NEW_OUT, Direction::Outbound), (NEW_IN, Direction::Inbound)] {
        assert_eq!(a.standby().get(spi, dir).map(|s| s.value), None);
    }
    a.add_sa(NEW_OUT, Direction::Outbound, false, A);
    a.add_sa(NEW_IN, Direction::Inbound, false, A);
    settle(&mut a, &mut b, t);
    let (out, inb) = fresh_starts(&mut a);
    assert!(
        out == Some(1) && inb == Some(0),
        "neither node ever used the SAs; added on B first, then on A (their home): \
         outbound starts at {out:?} (not 1), inbound window top {inb:?} (not 0)"
    );
}

/// Reader9 find 2 (38035e3/294ffce, promise 4), same cause: one lost
/// answer. The home node asks; the peer (which has the SA too, or not)
/// stores 0 for it and answers "nothing known". That frame is lost; the
/// home node asks again at its next refresh, and the answer now says
/// "known: 0" (the mark the first question left: 294ffce keeps a pending
/// answer for a repeated question, but not once it has gone and was
/// lost). The home node takes 0 for an earlier use and starts past it.
///
/// Sequence (pair harness, synchronised): the host adds `NEW_OUT` and
/// `NEW_IN` (home A) to both nodes at once (an ordinary rekey). A's
/// queries reach B; B's next frame (the answers) is lost; then the link
/// is perfect. Expected: starts at 1 and top 0. Measured: 1000 and 100.
/// Fixed as find 1.
#[test]
fn a_fresh_sa_whose_first_answer_is_lost_starts_at_its_first_number() {
    let (mut a, mut b) = (node(A, 1, 0), node(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    events(&mut a);
    for m in [&mut a, &mut b] {
        m.add_sa(NEW_OUT, Direction::Outbound, false, A);
        m.add_sa(NEW_IN, Direction::Inbound, false, A);
    }
    t += 1;
    while let Some(f) = a.poll_transmit(t) {
        let _ = b.handle_frame(t, &f);
    }
    // B's answers (and whatever else it has now) are lost.
    mute(&mut b, t);
    settle(&mut a, &mut b, t);
    let (out, inb) = fresh_starts(&mut a);
    assert!(
        out == Some(1) && inb == Some(0),
        "neither node ever used the SAs; one answer lost: outbound starts at {out:?} (not 1), \
         inbound window top {inb:?} (not 0)"
    );
}
