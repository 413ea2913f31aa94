//! The file IO of a node's state directory: one file, `state`, holding
//! what [`Saved`] holds, replaced whole and durably (written to
//! `state.tmp`, synced, renamed over `state`, the directory synced), so a
//! crash or a power loss leaves the old file or the new one, never a mix.
//!
//! The format is lines of text, versioned and checksummed:
//!
//! ```text
//! espgate-state 1
//! epoch 1764646572123456789
//! key 3f1c...(SHA-256 of the key material, hex) 0x1000 outbound 1048577
//! sha256 9a0b...(of every byte above)
//! ```
//!
//! A file that does not read back whole (truncated, edited, corrupt) is an
//! error naming the file and the problem: the node does not start on it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use espgate_esp::Direction;

use crate::marks::{KeyMark, Saved};

/// The state file's name in its directory.
pub const FILE_NAME: &str = "state";
/// The version this code writes and reads.
const VERSION: u32 = 1;
const MAGIC: &str = "espgate-state";

/// Why a state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or syncing failed.
    #[error("state {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file does not read back whole.
    #[error("state file {path}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// A node's state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    file: PathBuf,
}

impl StateDir {
    /// Opens `dir` (made mode 0700 if missing) and reads its state file;
    /// `None` if there is none yet (a node that never ran with this
    /// directory).
    pub fn open(dir: &Path) -> Result<(StateDir, Option<Saved>), StateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let file = dir.join(FILE_NAME);
        let saved = match std::fs::read(&file) {
            Ok(bytes) => Some(decode(&bytes).map_err(|why| StateError::Corrupt {
                path: file.clone(),
                why,
            })?),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io(&file)(e)),
        };
        Ok((
            StateDir {
                dir: dir.to_path_buf(),
                file,
            },
            saved,
        ))
    }

    /// Replaces the state file with `saved`, durably: when this returns
    /// Ok, a power loss keeps it.
    pub fn write(&self, saved: &Saved) -> Result<(), StateError> {
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(encode(saved).as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.file).map_err(io(&self.file))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// The state file's path.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file's text for `saved`.
pub fn encode(saved: &Saved) -> String {
    let mut t = format!("{MAGIC} {VERSION}\nepoch {}\n", saved.epoch);
    for (key, k) in &saved.keys {
        t.push_str(&format!(
            "key {} {:#x} {} {}\n",
            hex(key),
            k.spi,
            k.direction,
            k.mark
        ));
    }
    let sum = crate::marks::key_digest(t.as_bytes());
    t.push_str(&format!("sha256 {}\n", hex(&sum)));
    t
}

/// Reads a state file's bytes back; the error says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Saved, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text: corrupt".to_string())?;
    let Some(at) = text.rfind("sha256 ") else {
        return Err("truncated: no checksum line".into());
    };
    let (body, sum) = text.split_at(at);
    let sum = sum.trim_end_matches('\n').trim_start_matches("sha256 ");
    if !text.ends_with('\n') || sum != hex(&crate::marks::key_digest(body.as_bytes())) {
        return Err("checksum mismatch: the file is corrupt or was edited".into());
    }
    let mut lines = body.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, l)) if l == format!("{MAGIC} {VERSION}") => {}
        Some((_, l)) if l.starts_with(MAGIC) => {
            return Err(format!(
                "{l:?}: a version this espgate does not read (it reads {VERSION})"
            ));
        }
        _ => return Err(format!("not an espgate state file (no {MAGIC:?} line)")),
    }
    let mut saved = Saved::default();
    for (n, line) in lines {
        let bad = |why: &str| format!("line {n}: {why}: {line:?}");
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["epoch", e] => saved.epoch = e.parse().map_err(|_| bad("bad epoch"))?,
            ["key", digest, spi, dir, mark] => {
                let digest = unhex(digest).ok_or_else(|| bad("bad key digest"))?;
                let spi = spi
                    .strip_prefix("0x")
                    .and_then(|s| u32::from_str_radix(s, 16).ok())
                    .ok_or_else(|| bad("bad spi"))?;
                let direction = match *dir {
                    "outbound" => Direction::Outbound,
                    "inbound" => Direction::Inbound,
                    _ => return Err(bad("bad direction")),
                };
                let mark = mark.parse().map_err(|_| bad("bad mark"))?;
                saved.keys.insert(
                    digest,
                    KeyMark {
                        spi,
                        direction,
                        mark,
                    },
                );
            }
            _ => return Err(bad("unknown line")),
        }
    }
    Ok(saved)
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marks::key_digest;
    use std::os::unix::fs::PermissionsExt;

    fn saved() -> Saved {
        let mut s = Saved {
            epoch: 1_764_646_572_123_456_789,
            ..Saved::default()
        };
        s.keys.insert(
            key_digest(b"k1"),
            KeyMark {
                spi: 0x1000,
                direction: Direction::Outbound,
                mark: 1_048_577,
            },
        );
        s.keys.insert(
            key_digest(b"k2"),
            KeyMark {
                spi: 0x2000,
                direction: Direction::Inbound,
                mark: 7,
            },
        );
        s
    }

    /// A new empty directory for test `test`, removed when the guard drops
    /// (also when the test panics).
    fn dir(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("espgate-state-{test}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn what_is_written_reads_back() {
        let tmp = dir("round");
        let d = tmp.path().join("a");
        let (s, none) = StateDir::open(&d).unwrap();
        assert!(none.is_none(), "a new directory has no state");
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        s.write(&saved()).unwrap();
        let (_, back) = StateDir::open(&d).unwrap();
        assert_eq!(back, Some(saved()));
        let text = std::fs::read_to_string(d.join(FILE_NAME)).unwrap();
        assert!(text.starts_with("espgate-state 1\nepoch 1764646572123456789\nkey "));
        assert!(text.contains(" 0x1000 outbound 1048577\n"), "{text}");
        assert!(!d.join("state.tmp").exists());
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_refused_naming_file_and_problem() {
        let tmp = dir("corrupt");
        let d = tmp.path();
        let (s, _) = StateDir::open(d).unwrap();
        s.write(&saved()).unwrap();
        let path = d.join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                good[..good.len() / 2].to_vec(),
                "truncated: no checksum line",
            ),
            (good[..good.len() - 3].to_vec(), "checksum mismatch"),
            (
                String::from_utf8(good.clone())
                    .unwrap()
                    .replace("1048577", "1048578")
                    .into_bytes(),
                "checksum mismatch",
            ),
            (Vec::new(), "truncated"),
            (vec![0xff, 0xfe], "not text"),
        ];
        for (bytes, why) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let e = StateDir::open(d).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("state file {}: ", path.display())) && e.contains(why),
                "{e}"
            );
        }
        // A newer version, checksummed right, is named as such.
        let text = encode(&saved()).replace("espgate-state 1", "espgate-state 2");
        let body = &text[..text.rfind("sha256 ").unwrap()];
        let fixed = format!("{body}sha256 {}\n", hex(&key_digest(body.as_bytes())));
        std::fs::write(&path, fixed).unwrap();
        let e = StateDir::open(d).unwrap_err().to_string();
        assert!(e.contains("a version this espgate does not read"), "{e}");
    }
}
