//! Mirror frames into the receive filter and the standby table.
//!
//! First byte 0: the rest is a frame as it came off the link (almost always
//! forged). Otherwise the rest is a record area under a header that claims
//! that many records, sealed with the right key, so the record parser and
//! the merge see authentic but arbitrary content. Nothing may panic; an
//! authentic frame is accepted exactly when it parses, and a refused frame
//! changes nothing.
#![no_main]

use espgate_mirror::{MirrorKey, PeerFilter, StandbyTable};
use espgate_wire::mirror::{MirrorHeader, MirrorRecord, parse_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let key = MirrorKey::new(b"espgate fuzz mirror key").unwrap();
    let mut filter = PeerFilter::new(1, 2);
    let frame = if mode == 0 {
        rest.to_vec()
    } else {
        let mut body = Vec::new();
        MirrorHeader { flags: 0, records: u16::from(mode), node: 2, epoch: 1, counter: 1 }.emit(&mut body);
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
            assert!(mode == 0 || parse_records(&frame).is_err(), "an authentic, well-formed frame was refused");
        }
    }
});
