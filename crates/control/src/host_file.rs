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

use espgate_dataplane::config::Role;
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
    /// Its id in the pair (its configuration's `mirror.node`): the `home`
    /// of the SAs it runs.
    pub id: u32,
    /// Its unprotected port's address: the local tunnel address of the
    /// SAs whose home it is.
    pub address: IpAddr,
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
    let err = |p: String, m: String| ConfigError::invalid(&file, &p, m);
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
        let id = mirror.protocol.node;
        let Some(wan) = node.port(Role::Unprotected) else {
            return Err(err(
                at("config"),
                format!("{} has no unprotected port", cfg_path.display()),
            ));
        };
        for (k, cmds) in [("on_failure", &n.on_failure), ("on_return", &n.on_return)] {
            if cmds.iter().any(|c| c.is_empty()) {
                return Err(err(at(k), "an empty command".into()));
            }
        }
        nodes.push(ManagedNode {
            name: n.name,
            control: n.control,
            config,
            id,
            address: wan.address,
            on_failure: n.on_failure,
            on_return: n.on_return,
        });
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
}
