//! The host processor's configuration (`espgate host --config host.yaml`):
//! the nodes it manages, the configuration it pushes to each (with the SA
//! keys), how often it checks them, and how it reroutes a failed node's
//! flows.
//!
//! ```yaml
//! host:
//!   poll_ms: 50          # status request to every node this often
//!   dead_after: 4        # unanswered polls before a node counts as failed
//! nodes:
//!   - name: a
//!     control: /run/espgate/a.sock     # the node's control socket
//!     config: a.yaml                   # pushed when the node waits for it
//!     on_failure:                      # commands that move its flows to the survivor
//!       - [ip, route, replace, 10.1.0.0/24, via, 192.0.2.2]
//!     on_return:                       # commands that move them back
//!       - [ip, route, replace, 10.1.0.0/24, via, 192.0.2.1]
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use espgate_dataplane::config::{Role, Takeover};
use serde::Deserialize;

use crate::error::{
    ConfigError, ConfigText, MAX_CONFIG_BYTES, from_yaml, read_bounded, read_config,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSpec {
    #[serde(default)]
    host: Option<TimingSpec>,
    nodes: Vec<NodeSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimingSpec {
    poll_ms: Option<u64>,
    dead_after: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    name: String,
    control: PathBuf,
    config: PathBuf,
    #[serde(default)]
    on_failure: Vec<Vec<String>>,
    #[serde(default)]
    on_return: Vec<Vec<String>>,
}

/// A node the host manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNode {
    /// Its name.
    pub name: String,
    /// Its control socket.
    pub control: PathBuf,
    /// The node configuration text to push (read when loaded).
    pub config: String,
    /// That configuration's `mirror.takeover`: with `Auto` the node takes
    /// its peer's SAs over by itself, before the host orders it.
    pub takeover: Takeover,
    /// Commands (program and arguments) run when it fails.
    pub on_failure: Vec<Vec<String>>,
    /// Commands run when it is back.
    pub on_return: Vec<Vec<String>>,
}

/// The host processor's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Poll period in milliseconds.
    pub poll_ms: u64,
    /// Unanswered polls before a node counts as failed.
    pub dead_after: u32,
    /// The nodes (a pair).
    pub nodes: Vec<ManagedNode>,
}

/// Reads and checks a host configuration; node configurations are read
/// relative to its folder and must parse.
pub fn load_host_file(path: &Path) -> Result<HostConfig, ConfigError> {
    let ConfigText { text, file, base } = read_config(path)?;
    let spec: HostSpec = from_yaml(&text, &file)?;
    resolve_host(spec, &file, base).map_err(|e| e.placed_in(&text, &file))
}

/// Checks a parsed host file and the node files it names.
fn resolve_host(spec: HostSpec, file: &str, base: &Path) -> Result<HostConfig, ConfigError> {
    let err = |p: String, m: String| ConfigError::invalid(file, &p, m);
    let timing = spec.host.unwrap_or(TimingSpec {
        poll_ms: None,
        dead_after: None,
    });
    let poll_ms = timing.poll_ms.unwrap_or(50);
    let dead_after = timing.dead_after.unwrap_or(4);
    if poll_ms == 0 || dead_after == 0 {
        return Err(err(
            "host".into(),
            "poll_ms and dead_after must be at least 1".into(),
        ));
    }
    if spec.nodes.len() != 2 {
        return Err(err(
            "nodes".into(),
            format!("a pair has two nodes, found {}", spec.nodes.len()),
        ));
    }
    let mut nodes = Vec::new();
    let mut pair: Vec<(u32, u32, IpAddr, Vec<IpAddr>)> = Vec::new();
    let mut reaches = Vec::new();
    for (i, n) in spec.nodes.into_iter().enumerate() {
        let at = |k: &str| format!("nodes[{i}].{k}");
        let cfg_path = base.join(&n.config);
        let config = read_bounded(&cfg_path, MAX_CONFIG_BYTES).map_err(|e| {
            err(
                at("config"),
                format!("cannot read {}: {e}", cfg_path.display()),
            )
        })?;
        let node = crate::parse_node(&config, &cfg_path.display().to_string(), base)?;
        let Some(mirror) = &node.mirror else {
            return Err(err(
                at("config"),
                format!(
                    "{} has no mirror: section: not a node of a pair",
                    cfg_path.display()
                ),
            ));
        };
        let Some(wan) = node.port(Role::Unprotected) else {
            return Err(err(
                at("config"),
                format!("{} has no unprotected port", cfg_path.display()),
            ));
        };
        pair.push((
            mirror.protocol.node,
            mirror.protocol.peer,
            wan.address,
            mirror.peer_addresses.clone(),
        ));
        let p = mirror.protocol;
        reaches.push([
            ("takeover_jump", p.takeover_jump),
            ("takeover_jump_32", p.takeover_jump_32),
            ("inbound_grace", p.inbound_grace),
        ]);
        for (k, cmds) in [("on_failure", &n.on_failure), ("on_return", &n.on_return)] {
            if cmds.iter().any(|c| c.is_empty()) {
                return Err(err(at(k), "an empty command".into()));
            }
        }
        nodes.push(ManagedNode {
            name: n.name,
            control: n.control,
            takeover: mirror.takeover,
            config,
            on_failure: n.on_failure,
            on_return: n.on_return,
        });
    }
    // Each node is the other's peer, and each holds an address of its
    // own: SAs without a home go to the node holding their local address.
    let [
        (id_a, peer_a, addr_a, peers_a),
        (id_b, peer_b, addr_b, peers_b),
    ] = [pair[0].clone(), pair[1].clone()];
    if id_a != peer_b || id_b != peer_a {
        return Err(err(
            "nodes".into(),
            format!(
                "the nodes are not each other's peer: mirror node {id_a} (peer {peer_a}) and node {id_b} (peer {peer_b})"
            ),
        ));
    }
    // How far a lost life of either may have gone unheard is counted with
    // the survivor's own settings: they must be the peer's too.
    for ((key, a), (_, b)) in reaches[0].iter().zip(&reaches[1]) {
        if a != b {
            return Err(err(
                "nodes".into(),
                format!(
                    "the nodes' mirror.{key} differ ({a} and {b}): each moves past a lost life of the other by its own, so they must be the same"
                ),
            ));
        }
    }
    if addr_a == addr_b {
        return Err(err(
            "nodes".into(),
            format!("both nodes' unprotected ports have address {addr_a}"),
        ));
    }
    // Each node takes an SA's home from these lists (`home_by_address`):
    // an address in both would make each give the SA to the other.
    if let Some(both) = peers_a.iter().find(|a| peers_b.contains(a)) {
        return Err(err(
            "nodes".into(),
            format!(
                "{both} is in both nodes' mirror.peer_addresses: each would hold it for the other"
            ),
        ));
    }
    for (addr, peers, name) in [(addr_a, &peers_b, 1), (addr_b, &peers_a, 0)] {
        if !peers.contains(&addr) {
            return Err(err(
                format!("nodes[{name}].config"),
                format!(
                    "mirror.peer_addresses lacks {addr}, its peer's unprotected address (held while it runs the peer's SAs)"
                ),
            ));
        }
    }
    Ok(HostConfig {
        poll_ms,
        dead_after,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_host_and_pair_configurations_load() {
        let path = format!("{}/../../conf/host.yaml", env!("CARGO_MANIFEST_DIR"));
        let cfg = load_host_file(Path::new(&path)).unwrap();
        assert_eq!((cfg.poll_ms, cfg.dead_after), (50, 4));
        assert_eq!(cfg.nodes.len(), 2);
        assert_eq!(cfg.nodes[0].on_failure[0][0], "ip");
        for (n, id) in cfg.nodes.iter().zip([1, 2]) {
            let node = crate::parse_node(&n.config, &n.name, Path::new(".")).unwrap();
            let m = node.mirror.as_ref().unwrap();
            assert_eq!(m.protocol.node, id);
            assert_eq!(
                m.protocol,
                espgate_mirror::MirrorConfig {
                    node: id,
                    peer: 3 - id,
                    ..Default::default()
                }
            );
            assert_eq!(node.sas[1].mirror.interval, Some(256));
            assert_eq!(node.sas.iter().filter(|e| node.is_home(e)).count(), 2);
        }
    }

    /// conf/ike/pair loads; two nodes that are not each other's peer, or
    /// hold the same unprotected address, are refused, naming it (an SA
    /// without a home goes to the node holding its local address).
    #[test]
    fn the_ike_pair_loads_and_a_pair_must_be_one() {
        let path = format!(
            "{}/../../conf/ike/pair/host.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let cfg = load_host_file(Path::new(&path)).unwrap();
        assert_eq!(cfg.nodes[1].on_return[0][0], "sh");
        let tmp = tempfile::Builder::new()
            .prefix("espgate-hostfile-")
            .tempdir()
            .unwrap();
        let node = |name: &str, id: u32, peer: u32, wan: &str| {
            format!(
                "node: {{ name: {name} }}\nworkers: {{ count: 1 }}\nports:\n  - {{ name: lan, role: protected, backend: mem, mac: 02:00:00:00:00:01, address: 10.1.0.{id}/24 }}\n  - {{ name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:00:02, address: {wan}/24 }}\nmirror:\n  node: {id}\n  peer: {peer}\n  key: 0x000102030405060708090a0b0c0d0e0f\n  port: {{ name: mirror, backend: mem, mac: 02:00:00:00:00:03 }}\n"
            )
        };
        let host = "nodes:\n  - { name: a, control: a.sock, config: a.yaml }\n  - { name: b, control: b.sock, config: b.yaml }\n";
        std::fs::write(tmp.path().join("host.yaml"), host).unwrap();
        for ((a, b), why) in [
            (
                (node("a", 1, 2, "192.0.2.1"), node("b", 3, 1, "192.0.2.2")),
                "the nodes are not each other's peer: mirror node 1 (peer 2) and node 3 (peer 1)",
            ),
            (
                (node("a", 1, 2, "192.0.2.1"), node("b", 2, 1, "192.0.2.1")),
                "both nodes' unprotected ports have address 192.0.2.1",
            ),
            (
                (
                    node("a", 1, 2, "192.0.2.1"),
                    node("b", 2, 1, "192.0.2.2") + "  inbound_grace: 0\n",
                ),
                "the nodes' mirror.inbound_grace differ (1024 and 0)",
            ),
        ] {
            std::fs::write(tmp.path().join("a.yaml"), a).unwrap();
            std::fs::write(tmp.path().join("b.yaml"), b).unwrap();
            let e = load_host_file(&tmp.path().join("host.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    /// The host file's checks name the line of the value at fault, as its
    /// reader's errors do; a node file's, the line in that file.
    #[test]
    fn a_check_after_reading_names_the_line() {
        let tmp = tempfile::Builder::new()
            .prefix("espgate-hostfile-lines-")
            .tempdir()
            .unwrap();
        let node = |name: &str, id: u32, peer: u32, wan: &str, peers: &str| {
            format!(
                "node: {{ name: {name} }}\nports:\n  - {{ name: lan, role: protected, backend: mem, mac: 02:00:00:00:00:01, address: 10.1.0.{id}/24 }}\n  - {{ name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:00:02, address: {wan}/24 }}\nmirror:\n  node: {id}\n  peer: {peer}\n  key: 0x000102030405060708090a0b0c0d0e0f\n  port: {{ name: mirror, backend: mem, mac: 02:00:00:00:00:03 }}\n  peer_addresses: [{peers}]\n"
            )
        };
        let write = |f: &str, text: &str| std::fs::write(tmp.path().join(f), text).unwrap();
        write("a.yaml", &node("a", 1, 2, "192.0.2.1", "192.0.2.2"));
        let b = node("b", 2, 1, "192.0.2.2", "192.0.2.1");
        write("b.yaml", &b);
        let good = "\
host: { poll_ms: 50 }
nodes:
  - name: a
    control: a.sock
    config: a.yaml
  - name: b
    control: b.sock
    config: b.yaml
    on_failure: [[true]]
";
        let load = |host: &str| {
            write("host.yaml", host);
            load_host_file(&tmp.path().join("host.yaml"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        load(good).unwrap();
        let host = tmp.path().join("host.yaml").display().to_string();
        for (from, to, at) in [
            ("poll_ms: 50", "poll_ms: 0", ":1:7: host: "),
            ("[[true]]", "[[true], []]", ":9:17: nodes[1].on_failure: "),
            (
                "nodes:\n",
                "nodes:\n  - { name: c, control: c, config: c }\n",
                ":3:3: nodes: ",
            ),
        ] {
            let e = load(&good.replacen(from, to, 1)).unwrap_err();
            assert!(e.starts_with(&format!("{host}{at}")), "{to}: {e}");
        }
        write("b.yaml", &b.replace("peer: 1", "peer: 2"));
        let e = load(good).unwrap_err();
        let b_file = tmp.path().join("b.yaml").display().to_string();
        assert!(
            e.starts_with(&format!("{b_file}:7:9: mirror.peer: ")),
            "{e}"
        );
    }

    /// Reader28 find 3 (failed before; promise broken for a host file the host accepted:
    /// "no tunnel lost"). `home_by_address` makes a node its own SA's home
    /// when the SA's local address is its unprotected port's, and its
    /// peer the home when the address is in its `peer_addresses`; nothing
    /// keeps an address out of both nodes' `peer_addresses` (a service
    /// address both are told to hold "while running the peer's SAs", a
    /// copy-paste of one list into the other file). An SA charon installs
    /// with that local address is then given home b by a and home a by b:
    /// both carry out the `sa_add`, the host tells charon it is installed,
    /// and neither node runs it (each keeps a standby copy of a home that
    /// is not running it): the tunnel is dead from its first packet, and a
    /// failover changes nothing (the survivor takes over the SAs whose
    /// home is the failed node, and the peer's view says that home never
    /// ran it either). The host file's new check ("each holds an address
    /// of its own") looks at the unprotected ports only.
    ///
    /// Steps: a pair a (192.0.2.1, peer_addresses [192.0.2.2, 192.0.2.10])
    /// and b (192.0.2.2, peer_addresses [192.0.2.1, 192.0.2.10]); the host
    /// file loads; an outbound SA from 192.0.2.10 is read by each node.
    /// Either the file is refused or the nodes agree on a home (or one
    /// refuses the SA).
    #[test]
    fn reader28_an_address_both_nodes_give_their_peer_leaves_an_sa_without_home() {
        let tmp = tempfile::Builder::new()
            .prefix("espgate-hostfile-r28-")
            .tempdir()
            .unwrap();
        let node = |name: &str, id: u32, peer: u32, wan: &str, peers: &str| {
            format!(
                "node: {{ name: {name} }}\nworkers: {{ count: 1 }}\nports:\n  - {{ name: lan, role: protected, backend: mem, mac: 02:00:00:00:00:01, address: 10.1.0.{id}/24 }}\n  - {{ name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:00:02, address: {wan}/24 }}\nmirror:\n  node: {id}\n  peer: {peer}\n  key: 0x000102030405060708090a0b0c0d0e0f\n  port: {{ name: mirror, backend: mem, mac: 02:00:00:00:00:03 }}\n  peer_addresses: [{peers}]\n"
            )
        };
        let host = "nodes:\n  - { name: a, control: a.sock, config: a.yaml }\n  - { name: b, control: b.sock, config: b.yaml }\n";
        std::fs::write(tmp.path().join("host.yaml"), host).unwrap();
        std::fs::write(
            tmp.path().join("a.yaml"),
            node("a", 1, 2, "192.0.2.1", "192.0.2.2, 192.0.2.10"),
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("b.yaml"),
            node("b", 2, 1, "192.0.2.2", "192.0.2.1, 192.0.2.10"),
        )
        .unwrap();
        let e = load_host_file(&tmp.path().join("host.yaml")).expect_err("loaded");
        assert!(
            e.to_string()
                .contains("192.0.2.10 is in both nodes' mirror.peer_addresses"),
            "{e}"
        );
        // Each with its own: the nodes agree on every SA's home.
        std::fs::write(
            tmp.path().join("b.yaml"),
            node("b", 2, 1, "192.0.2.2", "192.0.2.1"),
        )
        .unwrap();
        let cfg = load_host_file(&tmp.path().join("host.yaml")).unwrap();
        let sa = "sas: [{spi: 0xc0000001, direction: outbound, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: {src: 192.0.2.10, dst: 198.51.100.1}}]";
        let homes: Vec<Result<Option<u32>, String>> = cfg
            .nodes
            .iter()
            .map(|n| {
                let node = crate::parse_node(&n.config, &n.name, Path::new(".")).unwrap();
                let mut update = crate::parse_sa_update(sa, "sent", Path::new("."), &node).unwrap();
                update.home_by_address(&node).map(|()| update.sas[0].home)
            })
            .collect();
        if let [Ok(a), Ok(b)] = &homes[..] {
            assert_eq!(
                a, b,
                "the host file loads, and a gives the SA home {a:?} while b gives it home {b:?}: neither node runs it"
            );
        }
    }
}
