//! espgate configuration: the YAML definition of one SA (the `espgate esp`
//! tool) and of a node (ports, workers, SAs, SPD, neighbours, the pair's
//! mirror link), and the control socket's requests and answers. Every
//! configuration error names the file, the line, the key path and what is
//! wrong.

pub mod answer;
pub mod error;
pub mod export;
pub mod hexkey;
pub mod host_file;
mod mirror_section;
pub mod node_file;
pub mod request;
pub mod sa_file;
pub mod secgw_import;

pub use error::ConfigError;
pub use host_file::{HostConfig, ManagedNode, load_host_file};
pub use node_file::{SaUpdate, load_node_file, parse_node, parse_sa_update};
pub use sa_file::{SaFile, load_sa_file, parse_sa};
