//! Control-socket requests on arbitrary bytes, parsed as the node parses a
//! line, then their arguments as the node would take them: SPIs, SA
//! updates against a running node's configuration, rekey SA files. Nothing
//! may panic; a request that parses names a known operation.
#![no_main]

#[path = "common.rs"]
mod common;

use std::path::Path;

use common::running;
use espgate_control::request::Request;
use espgate_control::{parse_sa, parse_sa_update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    let base = Path::new("/nonexistent/espgate-fuzz");
    match req {
        Request::SaAdd { yaml, .. } if !yaml.contains("_file") => {
            let _ = parse_sa_update(&yaml, "request", base, running());
        }
        Request::SaDel { spi, .. } => {
            let _ = spi.value();
        }
        Request::SaRekey { spi, yaml, .. } if !yaml.contains("_file") => {
            let _ = spi.value();
            let _ = parse_sa(&yaml, "request", base);
        }
        Request::Metrics => panic!("the metrics request came off the socket"),
        _ => {}
    }
});
