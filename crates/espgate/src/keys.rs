//! `espgate keys`: SAs as Wireshark's ESP SA table (the `esp_sa` file of a
//! Wireshark profile), so that Wireshark or tshark decrypts a capture of
//! their traffic. The file holds keys: it is written readable by its owner
//! only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use espgate_esp::SaConfig;

/// Writes the SAs of node configuration `config` and of SA files `sas`
/// to `out` (mode 0600), or to standard output.
pub fn run(config: Option<&Path>, sas: &[PathBuf], out: Option<&Path>) -> anyhow::Result<()> {
    let mut all: Vec<SaConfig> = Vec::new();
    if let Some(path) = config {
        let node = espgate_control::load_node_file(path)?;
        all.extend(node.sas.into_iter().map(|e| e.sa));
    }
    for path in sas {
        all.push(espgate_control::load_sa_file(path)?.config);
    }
    anyhow::ensure!(
        !all.is_empty(),
        "no SAs given (--config NODE.yaml or --sa SA.yaml)"
    );
    let text: String = all.iter().map(esp_sa_line).collect();
    match out {
        Some(path) => {
            write_private(path, &text)?;
            eprintln!("{} SAs written to {}", all.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Writes `text` to `path`, readable and writable by its owner only (it
/// holds keys).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// One row of Wireshark's `esp_sa` table (its 4.0 columns): protocol,
/// source, destination, SPI, encryption, key with the RFC 4106 salt,
/// authentication (none: GCM's ICV is the encryption's).
pub fn esp_sa_line(sa: &SaConfig) -> String {
    let family = if sa.tunnel.src.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let key: String = sa.key.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "\"{family}\",\"{}\",\"{}\",\"{:#010x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key}\",\"NULL\",\"\"\n",
        sa.tunnel.src, sa.tunnel.dst, sa.spi
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_sa_with_family_spi_and_salted_key() {
        let yaml = "spi: 0x1234\ndirection: outbound\naead: aes-128-gcm\n\
                    key: 0x000102030405060708090a0b0c0d0e0f10111213\n\
                    tunnel: { src: \"2001:db8:1::5\", dst: \"2001:db8:2::5\" }\n";
        let sa = espgate_control::parse_sa(yaml, "sa.yaml", Path::new("."))
            .unwrap()
            .config;
        assert_eq!(
            esp_sa_line(&sa),
            "\"IPv6\",\"2001:db8:1::5\",\"2001:db8:2::5\",\"0x00001234\",\
             \"AES-GCM with 16 octet ICV [RFC4106]\",\
             \"0x000102030405060708090a0b0c0d0e0f10111213\",\"NULL\",\"\"\n"
        );
    }
}
