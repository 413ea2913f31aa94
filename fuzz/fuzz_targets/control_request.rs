//! Control-socket requests on arbitrary bytes, parsed as the node parses a
//! line, then their arguments as the node would take them: SPIs, SA
//! updates against a running node's configuration, rekey SA files. Nothing
//! may panic; a request that parses names a known operation.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use espgate_control::request::Request;
use espgate_control::{parse_node, parse_sa, parse_sa_update};
use espgate_dataplane::NodeConfig;
use libfuzzer_sys::fuzz_target;

fn running() -> &'static NodeConfig {
    static NODE: OnceLock<NodeConfig> = OnceLock::new();
    NODE.get_or_init(|| {
        parse_node(
            "node: { name: a }\n\
             ports:\n  - { name: lan, role: protected, backend: pcap, mac: 02:00:00:00:00:01, address: 10.0.0.1/24 }\n  \
             - { name: wan, role: unprotected, backend: pcap, mac: 02:00:00:00:00:02, address: 10.9.0.1/24 }\n",
            "running.yaml",
            Path::new("."),
        )
        .expect("the running node's configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else { return };
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
