//! `espgate import-secgw`: an ipsec-secgw configuration file as an espgate
//! node file (see `espgate_control::secgw_import` for what maps), checked
//! by the node-file parser before it is written, with every line left out
//! listed on standard error.

use std::path::Path;

use anyhow::Context;
use espgate_control::secgw_import::{ImportOptions, import_secgw, report};

/// Imports `input`; writes the node file to `out` (mode 0600: it holds
/// keys) or standard output.
pub fn run(input: &Path, options: &ImportOptions, out: Option<&Path>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let import = import_secgw(&text, options);
    espgate_control::parse_node(&import.yaml, "<imported>", Path::new("."))
        .context("the imported configuration does not validate")?;
    eprintln!(
        "imported {} SAs and {} policy rules from {}; {} lines left out{}",
        import.sas,
        import.rules,
        input.display(),
        import.left_out.len(),
        if import.left_out.is_empty() { "" } else { ":" }
    );
    eprint!("{}", report(&import.left_out));
    for (from, to) in &import.renumbered {
        eprintln!(
            "SPI {from} renumbered {to:#x} (reserved below 256): renumber it on the peer too"
        );
    }
    match out {
        Some(path) => crate::keys::write_private(path, &import.yaml),
        None => out!("{}", import.yaml),
    }
}
