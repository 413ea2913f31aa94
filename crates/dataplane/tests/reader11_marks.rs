//! An eleventh fresh reader's attempt on 9e1df1f (an inbound SA that
//! resumed at its mark writes none further until its worker reports it):
//! the marks' proptest, which covers outbound SAs only, extended to inbound
//! SAs with idle lives, moves (takeovers, restarts past an earlier life),
//! stall reports at the mark, failed writes and two SAs sharing a key.
//! It held: no restart places an inbound window at or below a number an
//! earlier life accepted, and a stall reported and written lets the far
//! end's packets through. Since extended with exact exits (an SA handed to
//! the peer at its worker's top, parked until moved again) and the last
//! write a stopping life makes, which lowers the marks of keys whose SAs
//! all left that way.

use espgate_dataplane::marks::{KeyDigest, Ledger, Saved, key_digest};
use espgate_esp::Direction;
use proptest::prelude::*;

const IN: Direction = Direction::Inbound;

/// SAs 0 and 1 share a key (a file at start may carry keys used before),
/// SA 2 has its own.
fn key_of(s: usize) -> KeyDigest {
    key_digest(&[if s == 2 { 2 } else { 0 }; 20])
}

#[derive(Debug, Clone)]
enum Step {
    /// The far end of SA `s` sends `n` more packets.
    Receive(usize, u64),
    /// The mirror moves SA `s` `d` ahead (a takeover, a recovery): its
    /// window top, all below seen.
    Move(usize, u64),
    Write {
        fail: bool,
    },
    /// SA `s` is handed to the peer exactly at its worker's top and parks.
    Leave(usize),
    /// The node's life ends, with its last write (a stop) or without (a
    /// crash).
    Restart {
        stopped: bool,
    },
    /// Time passes.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..3, 1u64..800).prop_map(|(s, n)| Step::Receive(s, n)),
        1 => (0usize..3, 1u64..600).prop_map(|(s, d)| Step::Move(s, d)),
        3 => any::<bool>().prop_map(|fail| Step::Write { fail }),
        1 => (0usize..3).prop_map(Step::Leave),
        1 => any::<bool>().prop_map(|stopped| Step::Restart { stopped }),
        1 => (1u64..300).prop_map(Step::Wait),
    ]
}

/// A worker of an inbound SA as `worker.rs` and `esp::inbound` run it:
/// limit its key's durable mark (no mirror lease: a node alone), window
/// top with everything below seen.
#[derive(Debug, Clone, Copy, Default)]
struct Worker {
    top: u64,
    far: u64,
    mark: u64,
    /// Packets accepted.
    packets: u64,
    /// Parked (handed to the peer): it accepts nothing until moved.
    parked: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn no_inbound_window_restarts_below_what_an_earlier_life_accepted(
        steps in prop::collection::vec(step(), 1..250)
    ) {
        const AHEAD: u64 = 1 << 20;
        let mut l = Ledger::new(Saved::default(), AHEAD);
        let mut w = [Worker::default(); 3];
        // Every number accepted so far, per SA.
        let mut accepted: Vec<Vec<u64>> = vec![Vec::new(); 3];
        for s in 0..3 {
            l.track(s as u32, IN, key_of(s), 0);
        }
        let mut now = 0u64;
        // The highest stall reported since the last write, per SA.
        let mut stalled = [0u64; 3];
        let write = |l: &mut Ledger, w: &mut [Worker; 3], now: u64, fail: bool| -> bool {
            if l.batch(now).is_none() {
                return false;
            }
            if fail {
                l.failed();
                return false;
            }
            for (spi, _, mark) in l.written() {
                w[spi as usize].mark = mark;
            }
            true
        };
        write(&mut l, &mut w, now, false);
        for (s, wk) in w.iter_mut().enumerate() {
            wk.mark = l.limit(s as u32, IN);
        }
        for st in steps {
            now += 1;
            match st {
                Step::Receive(s, n) => {
                    let wk = &mut w[s];
                    let from = wk.far + 1;
                    wk.far += n;
                    let mut refused = 0;
                    for seq in from..=wk.far {
                        if wk.parked {
                            continue; // the peer's now
                        }
                        if seq <= wk.top {
                            continue; // seen (a replay, or below a move)
                        }
                        if seq >= wk.mark {
                            refused = seq;
                            continue;
                        }
                        prop_assert!(
                            l.mark_of(&key_of(s)).is_some_and(|m| seq < m),
                            "SA {s} accepts {seq} at or past its durable mark"
                        );
                        accepted[s].push(seq);
                        wk.top = seq;
                        wk.packets += 1;
                    }
                    l.progress(s as u32, IN, wk.top, Some(wk.packets));
                    if refused > 0 {
                        // InboundStall: the highest refused, as reached().
                        l.progress(s as u32, IN, refused, None);
                        stalled[s] = stalled[s].max(refused);
                    }
                }
                Step::Move(s, d) => {
                    let wk = &mut w[s];
                    wk.top += d;
                    wk.parked = false;
                    l.moved(s as u32, IN, wk.top, wk.packets);
                }
                Step::Write { fail } => {
                    if write(&mut l, &mut w, now, fail) {
                        for (s, at) in stalled.iter_mut().enumerate() {
                            if *at > 0 {
                                prop_assert!(
                                    l.limit(s as u32, IN) > *at,
                                    "SA {s}: a stall at {} reported and a write done, \
                                     its limit still {}",
                                    *at,
                                    l.limit(s as u32, IN)
                                );
                                *at = 0;
                            }
                        }
                    }
                }
                Step::Wait(ms) => now += ms,
                Step::Leave(s) => {
                    // Parked, it needs no mark past a stall: the peer runs
                    // it (moved back, its mark follows its position).
                    w[s].parked = true;
                    stalled[s] = 0;
                    let serial = l.serial(s as u32, IN).expect("followed");
                    l.left(s as u32, IN, serial, w[s].top);
                }
                Step::Restart { stopped } => {
                    let last = if stopped { l.last_batch() } else { None };
                    let saved = last.unwrap_or_else(|| l.durable().clone());
                    l = Ledger::new(saved, AHEAD);
                    stalled = [0; 3];
                    for (s, wk) in w.iter_mut().enumerate() {
                        let mark = l.mark_of(&key_of(s)).expect("written at the first start");
                        prop_assert!(
                            accepted[s].iter().all(|&a| a < mark),
                            "SA {s} resumes at {mark}, an earlier life accepted up to {:?}",
                            accepted[s].last()
                        );
                        // Placed at its mark, everything below seen.
                        wk.top = mark;
                        wk.mark = mark;
                        wk.parked = false;
                        l.track(s as u32, IN, key_of(s), mark);
                    }
                    // The node's first write at start (nothing due for an
                    // idle inbound SA with a mark).
                    write(&mut l, &mut w, now, false);
                }
            }
        }
    }
}
