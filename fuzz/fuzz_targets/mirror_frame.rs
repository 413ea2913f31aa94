//! Mirror frames into the receive filter and the standby table, then into
//! a whole mirror protocol node.
//!
//! The first byte picks the mode, the second where the rest splits into
//! two frames. Mode 0: each part is a frame as it came off the link
//! (almost always forged). Otherwise each part is a record area under a
//! header that claims `mode` records, sealed with the right key (the
//! second with the next counter), so the record parser and the merge see
//! authentic but arbitrary content. Nothing may panic; an authentic frame
//! is accepted exactly when it parses, and a refused frame changes
//! nothing. Both frames then reach one `Mirror` that owns and stands by
//! for SAs, one after the other: what it stores for an SA never goes down
//! from one frame to the next, and it still answers.
#![no_main]

use espgate_mirror::{InboundTakeover, Mirror, MirrorConfig, MirrorKey, PeerFilter, StandbyTable};
use espgate_wire::Direction;
use espgate_wire::mirror::{MirrorHeader, MirrorRecord, parse_records};
use libfuzzer_sys::fuzz_target;

/// The `counter`-th frame of the peer: `rest` as it is (mode 0), or as
/// the records of an authentic frame that claims `mode` of them.
fn frame(key: &MirrorKey, mode: u8, rest: &[u8], counter: u64) -> Vec<u8> {
    if mode == 0 {
        return rest.to_vec();
    }
    let mut body = Vec::new();
    MirrorHeader {
        flags: 0,
        records: u16::from(mode),
        node: 2,
        epoch: 1,
        counter,
        // The node below is in its life 7: the records count there.
        peer_epoch: 7,
    }
    .emit(&mut body);
    body.extend(rest);
    key.seal_raw(&body)
}

fuzz_target!(|data: &[u8]| {
    let [mode, cut, rest @ ..] = data else {
        return;
    };
    let (first, second) = rest.split_at(usize::from(*cut).min(rest.len()));
    let key = MirrorKey::new(b"espgate fuzz mirror key").unwrap();
    let frames = [frame(&key, *mode, first, 1), frame(&key, *mode, second, 2)];
    for f in &frames {
        let mut filter = PeerFilter::new(1, 7, 2);
        let mut table = StandbyTable::new();
        match filter.accept(&key, f) {
            Ok(accepted) => {
                for r in &accepted.records {
                    if let MirrorRecord::SaState(s) = r {
                        table.merge(s);
                    }
                }
            }
            Err(_) => {
                assert!(filter.epoch().is_none(), "a refused frame moved the filter");
                assert!(
                    *mode == 0 || parse_records(f).is_err(),
                    "an authentic, well-formed frame was refused"
                );
            }
        }
    }
    let mut node = Mirror::new(
        MirrorConfig {
            inbound_takeover: InboundTakeover::Strict,
            ..MirrorConfig::default()
        },
        key,
        7,
        0,
    );
    for spi in 0x1000..0x1004 {
        node.add_sa(spi, Direction::Outbound, spi % 2 == 0, 1 + spi % 2);
        node.add_sa(spi, Direction::Inbound, true, 1 + spi % 2);
    }
    let stored = |node: &Mirror| -> Vec<_> {
        node.views()
            .iter()
            .map(|v| (v.spi, v.dir, v.stored))
            .collect()
    };
    let mut before = stored(&node);
    for (t, f) in (1..).zip(&frames) {
        let _ = node.handle_frame(t, f);
        node.handle_timeout(t);
        while node.poll_transmit(t).is_some() {}
        while node.poll_event().is_some() {}
        let after = stored(&node);
        for ((spi, dir, now), (s, d, was)) in after.iter().zip(&before) {
            assert_eq!((spi, dir), (s, d));
            assert!(now >= was, "what SA {spi:#x} {dir:?} stored went down: {was:?} to {now:?}");
        }
        before = after;
    }
});
