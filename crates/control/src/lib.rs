//! espgate configuration. For now: the YAML definition of one SA, as the
//! `espgate esp` tool reads it; the node configuration (ports, workers, SPD,
//! mirror) builds on the same pieces. Every error names the file, the key
//! path and what is wrong.

pub mod error;
pub mod hexkey;
pub mod sa_file;

pub use error::ConfigError;
pub use sa_file::{SaFile, load_sa_file, parse_sa};
