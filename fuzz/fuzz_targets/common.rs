//! What the configuration targets share: the running node an SA update or
//! a control request is checked against.

use std::path::Path;
use std::sync::OnceLock;

use espgate_control::parse_node;
use espgate_dataplane::NodeConfig;

/// A running node with two pcap ports and one outbound SA (0x1000).
pub fn running() -> &'static NodeConfig {
    static NODE: OnceLock<NodeConfig> = OnceLock::new();
    NODE.get_or_init(|| {
        parse_node(
            "node: { name: a }\n\
             ports:\n  - { name: lan, role: protected, backend: pcap, mac: 02:00:00:00:00:01, address: 10.0.0.1/24 }\n  \
             - { name: wan, role: unprotected, backend: pcap, mac: 02:00:00:00:00:02, address: 10.9.0.1/24 }\n\
             sas:\n  - { spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 10.9.0.1, dst: 10.9.0.2 } }\n",
            "running.yaml",
            Path::new("."),
        )
        .expect("the running node's configuration")
    })
}
