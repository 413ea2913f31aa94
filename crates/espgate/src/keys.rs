//! `espgate keys`: SAs as Wireshark's ESP SA table (the `esp_sa` file of a
//! Wireshark profile), so that Wireshark or tshark decrypts a capture of
//! their traffic. The file holds keys: it is written readable by its owner
//! only.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
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
        None => out!("{text}")?,
    }
    Ok(())
}

/// Writes `text` to `path`, readable and writable by its owner only (it
/// holds keys). Anything at `path` but a regular file is refused: a
/// symbolic link would send the keys where it points, a device or a
/// directory is not where keys go. The text goes to a new file of mode
/// 0600 beside `path`, which then replaces it: a file that was there keeps
/// neither its mode nor its contents.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => bail!(
            "{} is a symbolic link: keys are not written through one",
            path.display()
        ),
        Ok(m) if !m.is_file() => bail!(
            "{} is not a regular file: keys go to a file of their own",
            path.display()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    let written = f
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
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

    /// A new empty directory for test `test`, removed when the guard drops
    /// (also when the test panics).
    fn dir(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("espgate-keys-{test}-"))
            .tempdir()
            .unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_symlink_at_the_path_is_refused_and_its_target_left_alone() {
        let tmp = dir("link");
        let d = tmp.path();
        let (victim, link) = (d.join("victim"), d.join("esp_sa"));
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = format!("{:#}", write_private(&link, "keys").unwrap_err());
        assert!(e.contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let e = format!("{:#}", write_private(d, "keys").unwrap_err());
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn an_existing_file_is_replaced_by_one_of_mode_0600() {
        let tmp = dir("mode");
        let d = tmp.path();
        let path = d.join("esp_sa");
        std::fs::write(&path, "old text that was longer").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "keys").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keys");
        assert_eq!(mode(&path), 0o600);
        write_private(&d.join("new"), "keys").unwrap();
        assert_eq!(mode(&d.join("new")), 0o600);
        let mut left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["esp_sa", "new"], "a temporary file was left");
    }

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
