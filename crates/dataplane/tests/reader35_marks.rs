//! A thirty-fifth fresh reader's attempt on f3affa3 / 45b2e05 (an inbound
//! mark's reach counts packets; `moved` with a grown packet count sets
//! `heard`; the last write lowers the marks of SAs that left exactly).
//!
//! Each test drives the public `Ledger` in the order the node calls it:
//! `restore` (`Ledger::new`, `track` at the mark, the first batch), the
//! mirror task's `Activate` (`moved` with the standby record's packet
//! count), the workers' progress, `left` from `finish_hand_overs`, and
//! `last_batch` from `RunningNode::stop`.

use espgate_dataplane::marks::{KeyDigest, Ledger, MIN_INBOUND_REACH, Saved, key_digest};
use espgate_esp::Direction;

const IN: Direction = Direction::Inbound;
const OUT: Direction = Direction::Outbound;
const AHEAD: u64 = 1 << 20;

fn key(n: u8) -> KeyDigest {
    key_digest(&[n; 20])
}

/// Writes every batch due at `now` (the keeper's loop, writes succeeding).
fn settle(l: &mut Ledger, now: u64) {
    while l.batch(now).is_some() {
        l.written();
    }
}

/// The ratchet the `heard` rule exists to prevent, back through `moved`.
///
/// A restarted node's ledger tracks every SA with a packet count of 0
/// (`track`), while the `Activate` that places its home SA after the bulk
/// sync carries the standby record's count: the SA's whole history (the
/// records merge packets by maximum). So `packets > l.packets` holds at
/// every restart of an SA that ever received anything, `moved` sets
/// `heard`, and the life writes a mark a reach (at least
/// `MIN_INBOUND_REACH` + 1) past where it resumed, with no packet from
/// the far end. The next life resumes there (window top = mark, all
/// below seen), and so on: after N idle restarts the far end's next
/// packets are refused for N * 257 numbers. Before f3affa3 a move
/// without traffic wrote nothing and the mark stayed put.
///
/// The sequence (lenient inbound takeover, or any restart whose start
/// is the node's own floor): the far end sends 500 packets in life 1;
/// then a restarts 5 times with the far end silent; each time
/// `bulk_complete` recovers the home SA at `restart_point(max(floor,
/// stored)) = floor` = a's mark, with the standby's 500 packets.
#[test]
fn idle_restarts_leave_an_inbound_mark_where_it_was() {
    let k = key(2);
    // Life 1: the far end sends 500 packets.
    let mut l = Ledger::new(Saved::default(), AHEAD);
    l.set_epoch(1);
    l.track(2, IN, k, 0);
    settle(&mut l, 0);
    l.progress(2, IN, 500, Some(500));
    settle(&mut l, 50);
    let first = l.mark_of(&k).unwrap();
    assert!(first > 500);
    let mut marks = vec![first];
    // Five idle lives: no packet anywhere.
    for life in 2..=6u64 {
        let saved = l.durable().clone();
        l = Ledger::new(saved, AHEAD);
        l.set_epoch(life);
        let m = l.mark_of(&k).unwrap();
        // restore(): placed at the mark; the first batch (the epoch).
        l.track(2, IN, k, m);
        settle(&mut l, 0);
        // The bulk sync: Activate at the floor with the peer's record's
        // packet count (500, the SA's history, nothing new).
        l.moved(2, IN, m, 500);
        for now in [1, 10, 50, 100, 200, 1000] {
            settle(&mut l, now);
        }
        marks.push(l.mark_of(&k).unwrap());
    }
    assert!(
        marks.iter().all(|&m| m == first),
        "idle lives moved the inbound mark (and so the window a restart \
         begins at) away from a silent far end at 500: {marks:?} \
         (each step is MIN_INBOUND_REACH {MIN_INBOUND_REACH} + 1)"
    );
}

/// Two SAs of the node share key material (the ledger's marks are per
/// key, "past every live SA with it"; since this find a configuration
/// with two SAs of one key is refused as well, `sas[i].key`).
/// SA 2 sends up to 5000 and is deleted at run time (`forget`: its key's
/// record stays, with a mark past 5000). SA 1 is then handed to the peer
/// exactly at 100 (`left`). As the node stops, `last_batch` sees only SA
/// 1 among the live SAs with the key and lowers its mark to 101: the
/// next life resumes the key at 101, and numbers 101..=5000 of that key
/// material (AES-GCM nonces: the salt is part of the key material) go
/// out again.
#[test]
fn the_last_write_keeps_a_key_past_what_a_deleted_sa_with_it_used() {
    let k = key(1);
    let mut l = Ledger::new(Saved::default(), 4096);
    l.track(1, OUT, k, 0);
    l.track(2, OUT, k, 0);
    settle(&mut l, 0);
    // SA 2 runs (its worker's limit is the key's durable mark).
    let mut used2 = 0;
    while used2 < 5000 {
        let limit = l.limit(2, OUT);
        used2 = (used2 + 1000).min(limit - 1);
        l.progress(2, OUT, used2, None);
        settle(&mut l, 0);
    }
    l.progress(1, OUT, 100, None);
    // SA 2 deleted; SA 1 handed over exactly at 100.
    l.forget(2, OUT);
    l.left(1, OUT, l.serial(1, OUT).unwrap(), 100);
    if let Some(last) = l.last_batch() {
        let mark = last.keys[&k].mark;
        assert!(
            mark > used2,
            "the last write lowers key 1's mark to {mark}: SA 2 used it up to {used2} in this life"
        );
    }
}
