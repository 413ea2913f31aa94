//! The YAML configuration loaders on arbitrary text: a node file, an SA
//! file, an SA update for a running node, and the ipsec-secgw importer
//! (whose output must always pass the node-file parser). Nothing may panic
//! or hang; a node file that loads must hold what the parser promises.
#![no_main]

#[path = "common.rs"]
mod common;

use std::path::Path;

use common::running;
use espgate_control::secgw_import::{ImportOptions, import_secgw};
use espgate_control::{parse_node, parse_sa, parse_sa_update};
use libfuzzer_sys::fuzz_target;

/// Paths in the text (key files, pcap files) are taken relative to a
/// folder that does not exist: the target reads nothing from the disk.
const BASE: &str = "/nonexistent/espgate-fuzz";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Absolute paths would reach the disk: the target does not follow them.
    if text.contains("_file") || text.contains("_pcap") {
        return;
    }
    let base = Path::new(BASE);
    if let Ok(cfg) = parse_node(text, "fuzz.yaml", base) {
        assert!((1..=64).contains(&cfg.workers.count));
        assert_eq!(cfg.ports.len(), 2);
        for e in &cfg.sas {
            assert!(e.sa.spi >= 256, "a reserved SPI was accepted");
            assert!(cfg.owner(e) < cfg.workers.count);
        }
    }
    let _ = parse_sa(text, "fuzz-sa.yaml", base);
    if let Ok(u) = parse_sa_update(text, "fuzz-update.yaml", base, running()) {
        for e in &u.sas {
            assert!(
                !running()
                    .sas
                    .iter()
                    .any(|r| r.sa.spi == e.sa.spi && r.sa.direction == e.sa.direction),
                "an update re-used a running SA's SPI"
            );
        }
    }
    let import = import_secgw(
        text,
        &ImportOptions {
            name: "fuzz".into(),
            protected: ("lan".into(), "192.168.0.254/16".into()),
            unprotected: ("wan".into(), None),
            spi_offset: Some(0x1000),
        },
    );
    if let Err(e) = parse_node(&import.yaml, "imported.yaml", base) {
        panic!("an import does not validate: {e}\n{}", import.yaml);
    }
});
