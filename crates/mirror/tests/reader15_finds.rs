//! What a fifteenth fresh reader found against 638d0de (bulk sync in
//! numbered parts with records built when their part goes, lenient
//! inbound restarts, the host's fenced-life rule), and the scenarios it
//! tried that held. The host's finds are tests at the end of
//! `crates/espgate/src/host.rs` (`reader15_*`).

mod pair;

use espgate_wire::Direction;
use espgate_wire::mirror::MirrorRecord;
use pair::*;

/// Reader15 find 1 (liveness: "without moving its SAs more than once per
/// restart", and the jump budget of a 32-bit SA, ~256 jumps at
/// `takeover_jump_32` 2^24): while a restarted peer gathers a bulk, the
/// *survivor's own* SAs move a jump and a slack further at every sending.
///
/// Steps: a small-frame pair (max_frame 200, ~15 parts a bulk) in sync.
/// A dies; A2 starts and asks. Every frame of A2 reaches B; of B's
/// frames, the last part of each sending is lost for 800 ms (then all
/// arrive). One bulk number throughout (the print holds, as d48ca24
/// meant), and A2 synchronises in the end; but B's own SA OUT_B, which
/// nobody restarted, is activated 17 times: 5599 (`peer_lost`, expected),
/// then 7598, 9597, ... 37583, ~2 jumps per sending.
///
/// What happens: the bulk's `Entry::Owner` of an SA owned by B is built at
/// each sending by `entry_record` with `bound()` (bulk.rs,
/// `entry_record`, `Entry::Owner` arm), which for an owned outbound SA
/// is `reach()`: its acknowledged lease plus the slack (`jump -
/// quantity`), far above the lease B reported. A2 takes the record in
/// (`ownership()`: owner is not A2, so `store(start)`), and acknowledges
/// B's next state of OUT_B with what it stores (`acks.insert(key,
/// stored)` in the `SaState` arm of `handle_frame`): above anything B
/// sent. B reads that as a forgotten earlier use (`LeaseAck` arm,
/// `acked_beyond` -> `recover`) and restarts OUT_B a jump past it, its
/// limit (`acked + slack`) now below its start, so it stalls until A2
/// acknowledges the new lease. The acknowledgement raises the reach, the
/// next sending carries it, and so on. (An inbound SA's Owner record
/// carries `i.value()`, its worker's top, also above the last report
/// while traffic flows: one interval and a stall per sending, strict.)
/// `history_of` already avoids exactly this for query answers ("not how
/// far its workers may go: the asker would store that and acknowledge
/// the peer's next state with it, above anything sent, which reads as an
/// earlier use"); the bulk's Owner record (and the Confirm records, find
/// 2) do not.
///
/// Fix: the bound an ownership record carries for an SA owned here
/// (bulk Owner entries, Confirm records) is what this node reported of it
/// (`sent_lease()` / `sent_top()`, as `history_of` has it), not its
/// reach. The hand-over's start (a final state) and a takeover's start
/// stay as they are.
#[test]
fn the_survivor_does_not_move_its_own_sas_at_every_sending() {
    let (mut a, mut b) = (many_parts(A, 1, 0), many_parts(B, 2, 0));
    let mut t = settle(&mut a, &mut b, 0);
    assert!(a.synced() && b.synced());
    events(&mut b);
    drop(a);
    t += 200;
    let mut a2 = many_parts(A, 5, t);
    let begin = t;
    let mut numbers = std::collections::BTreeSet::new();
    while t < begin + 1000 {
        t += 1;
        a2.handle_timeout(t);
        b.handle_timeout(t);
        deliver(&mut a2, &mut b, t);
        while let Some(f) = b.poll_transmit(t) {
            if let Some((n, p, ps)) = part_of(&f) {
                numbers.insert(n);
                if p + 1 == ps && t < begin + 800 {
                    continue; // lost
                }
            }
            let _ = a2.handle_frame(t, &f);
        }
    }
    assert!(
        a2.synced(),
        "A2 synchronises once the last part gets through"
    );
    let moves = starts_in(&events(&mut b), OUT_B, Direction::Outbound);
    assert!(
        moves.len() <= 1,
        "B's own OUT_B (bulks {numbers:?}) moved {} times while A2 gathered one bulk: {moves:?}",
        moves.len()
    );
}

/// Reader15 find 2 (liveness, and the documented hand-back: "the home
/// node starts exactly there", "the SA runs at once, with no extra jump
/// and no wait for a first acknowledgement"): a handed-back SA is
/// activated twice, the second time a jump and a slack past the
/// hand-over's start, and stalls until the holder acknowledges.
///
/// Steps: A and B in sync; B dies; A takes OUT_B over. B2 starts and
/// synchronises; A hands OUT_B back (`hand_back`). B2 starts OUT_B at the
/// hand-over's start S (7598 here), confirms the change with its
/// `bound()`, which for an owned outbound SA is its reach, S + slack
/// (`ownership()`: the Confirm after `change`). A stores that bound
/// (`ownership()`, Confirm: owner is B, `store(start)`) and acknowledges
/// B2's first state of OUT_B (lease S - 1 + quantity) with it, above
/// anything B2 sent: B2's `acked_beyond` -> `recover` moves OUT_B to
/// S + slack + jump (9198 here), with a limit below that start until A
/// acknowledges the new lease. Every hand-back burns a jump and a slack
/// more than the docs' idle failover cycle counts (MirrorConfig's
/// `takeover_jump` budget), and traffic queued on the handed SA stalls
/// for a round trip.
///
/// Fix: as find 1's: a Confirm's bound for an SA owned here is what this
/// node reported of it (here S, the hand-over's start it was given).
#[test]
fn a_handed_back_sa_starts_once_at_the_handover_start() {
    let (mut a, mut b2, t) = handing_back_to_b2();
    let _ = settle(&mut a, &mut b2, t);
    let moves = starts_in(&events(&mut b2), OUT_B, Direction::Outbound);
    assert_eq!(
        moves.len(),
        1,
        "B2 got OUT_B back and started it {} times: {moves:?}",
        moves.len()
    );
}

/// An extra outbound SA of home A, configured on both nodes.
const X: u32 = 0x1002;

/// Tried and held (angle: an entry skipped at send time). A History
/// entry is built for an SA B no longer has; B adds it again before the
/// part goes, so `entry_record` returns none (`retired` is false) and
/// `next_part` skips it, while the bulk (built before the add) has no
/// Owner or Copy entry of it either: A2 completes a bulk that says
/// nothing of X.
///
/// Steps: A1 runs X (home A) from 1000 to 1300, B storing its lease
/// 1700; A1 runs on to 2299 (its limit, 1700 + slack), its reports
/// lost, and dies. B deletes X (its history stays). A2 starts with X in its
/// configuration (a node file predating the delete); B builds its bulk
/// with History(X); the host adds X on B again; the parts go, without
/// X. A2 restarts X at 0 + jump = 1000, inside A1's run (1000..2300).
///
/// Held: A2's X may send nothing before an acknowledgement (its limit,
/// 0 + slack, is below its start), and B acknowledges A2's first state
/// with what it stores, at least 1700 plus the two jumps `peer_lost`
/// moved B's history of X by when A2's life began: above anything A2
/// sent, so A2 moves X past it (`acked_beyond` -> `recover`) before it
/// uses a number.
#[test]
fn a_history_skipped_at_send_time_is_made_up_by_the_acknowledgement() {
    let mk = |me, epoch, now| {
        let mut m = node(me, epoch, now);
        m.add_sa(X, Direction::Outbound, false, A);
        m
    };
    let (mut a1, mut b) = (mk(A, 1, 0), mk(B, 2, 0));
    let mut t = settle(&mut a1, &mut b, 0);
    let first = last_start(&events(&mut a1), X, Direction::Outbound)
        .unwrap()
        .0;
    a1.outbound_progress(X, first + 300, 0, 0);
    t = settle(&mut a1, &mut b, t);
    let stored = b.standby().get(X, Direction::Outbound).unwrap().value;
    assert_eq!(stored, first + 300 + QUANTITY);
    let a1_limit = a1.limit(X).unwrap();
    assert_eq!(a1_limit, stored + JUMP - QUANTITY);
    a1.outbound_progress(X, a1_limit - 1, 0, 0);
    mute(&mut a1, t + 1);
    drop(a1);
    let a1_used = first..a1_limit;
    assert!(b.remove_sa(X, Direction::Outbound));
    t += 200;
    let mut a2 = mk(A, 5, t);
    deliver(&mut a2, &mut b, t);
    // B built its bulk on A2's request; the host adds X again on B.
    b.add_sa(X, Direction::Outbound, false, A);
    let sent = deliver(&mut b, &mut a2, t);
    assert!(sent.iter().any(|f| part_of(f).is_some()));
    assert!(
        !sent.iter().flat_map(|f| records(f)).any(|r| matches!(
            r,
            MirrorRecord::History { spi, .. } | MirrorRecord::Ownership { spi, .. } if spi == X
        ) || matches!(r, MirrorRecord::SaState(s) if s.spi == X && s.copy)),
        "the sending said nothing of X"
    );
    let mut starts = Vec::new();
    let mut worst = 0..0;
    for _ in 0..8 {
        t += 60;
        exchange(&mut a2, &mut b, t);
        starts.extend(starts_in(&events(&mut a2), X, Direction::Outbound));
        if let Some(&s) = starts.last() {
            let r = overlap(&a1_used, &usable(&a2, X, s));
            if !r.is_empty() {
                worst = r;
            }
        }
    }
    assert!(a2.synced());
    assert!(
        starts.last().is_some_and(|&s| s >= a1_limit),
        "A2 moved X past A1's run: {starts:?}"
    );
    assert!(
        worst.is_empty(),
        "A1 used X {a1_used:?}; A2 (starts {starts:?}) could use {worst:?} again"
    );
}
