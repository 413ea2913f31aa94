//! Mirror frames into the receive filter and the standby table, then into
//! a whole mirror protocol node.
//!
//! First byte 0: the rest is a frame as it came off the link (almost always
//! forged). Otherwise the rest is a record area under a header that claims
//! that many records, sealed with the right key, so the record parser and
//! the merge see authentic but arbitrary content. Nothing may panic; an
//! authentic frame is accepted exactly when it parses, and a refused frame
//! changes nothing. The same frame then reaches a `Mirror` that owns and
//! stands by for SAs: what it stores for an SA never goes down, and it
//! still answers.
#![no_main]

use espgate_mirror::{InboundTakeover, Mirror, MirrorConfig, MirrorKey, PeerFilter, StandbyTable};
use espgate_wire::mirror::SaDir;
use espgate_wire::mirror::{MirrorHeader, MirrorRecord, parse_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = MirrorKey::new(b"espgate fuzz mirror key").unwrap();
    let mut filter = PeerFilter::new(1, 7, 2);
    let frame = if mode == 0 {
        rest.to_vec()
    } else {
        let mut body = Vec::new();
        MirrorHeader {
            flags: 0,
            records: u16::from(mode),
            node: 2,
            epoch: 1,
            counter: 1,
            // The node below is in its life 7: the records count there.
            peer_epoch: 7,
        }
        .emit(&mut body);
        body.extend(rest);
        key.seal_raw(&body)
    };
    let mut table = StandbyTable::new();
    match filter.accept(&key, &frame) {
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
                mode == 0 || parse_records(&frame).is_err(),
                "an authentic, well-formed frame was refused"
            );
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
        node.add_sa(spi, SaDir::Outbound, spi % 2 == 0, 1 + spi % 2);
        node.add_sa(spi, SaDir::Inbound, true, 1 + spi % 2);
    }
    let before: Vec<_> = node
        .views()
        .iter()
        .map(|v| (v.spi, v.dir, v.stored))
        .collect();
    let _ = node.handle_frame(1, &frame);
    node.handle_timeout(2);
    while node.poll_transmit(2).is_some() {}
    while node.poll_event().is_some() {}
    for (v, (spi, dir, stored)) in node.views().iter().zip(before) {
        assert_eq!((v.spi, v.dir), (spi, dir));
        assert!(v.stored >= stored, "a stored value went down");
    }
});
