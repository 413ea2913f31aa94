//! What a sixteenth fresh reader tried against 7e72821 (ownership
//! records carry what the owner reported, `bound()` = `sent_lease()` /
//! `sent_top()`). The host's finds are tests at the end of
//! `crates/espgate/src/host.rs` (`reader16_*`), the failback's at the end
//! of `crates/dataplane/src/mirror_task.rs`.

mod pair;

use espgate_wire::Direction;
use pair::*;

/// Tried and held (change 1, "a hand-back's Confirm from the new home
/// before it sent any state"): B2 gets OUT_B back at the hand-over's start
/// S and confirms with its bound, now S (not S + slack); A stores S. B2
/// then runs OUT_B to its limit (S + slack) with every frame lost and
/// dies; A takes OUT_B over at S + jump, past B2's whole run: the
/// acknowledged lease (S, the hand-over's) bounds B2 whatever the record
/// said.
#[test]
fn a_handed_back_sa_run_to_its_limit_unheard_stays_below_the_next_takeover() {
    let (mut a, mut b2, mut t) = handing_back_to_b2();
    t += 60;
    exchange(&mut a, &mut b2, t);
    let (s, _) = last_start(&events(&mut b2), OUT_B, Direction::Outbound).expect("B2 runs OUT_B");
    let limit = b2.limit(OUT_B).unwrap();
    let b2_used = s..limit;
    b2.outbound_progress(OUT_B, limit - 1, 0, 0);
    mute(&mut b2, t + 1);
    drop(b2);
    declare_dead(&mut a, t + 200);
    a.take_over();
    let (s_a, _) = last_start(&events(&mut a), OUT_B, Direction::Outbound).expect("A runs OUT_B");
    let twice = overlap(&b2_used, &usable(&a, OUT_B, s_a));
    assert!(
        twice.is_empty(),
        "B2 used {b2_used:?}; A may use {:?}",
        usable(&a, OUT_B, s_a)
    );
}
