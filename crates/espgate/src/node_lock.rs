//! One process per node. A second process running the same node would
//! reuse every sequence number the first sends with, so a node holds an
//! exclusive `flock` on a file named after it (`<lock dir>/<name>.lock`)
//! for its whole life, taken before it opens a port. The kernel drops the
//! lock when the process ends, however it ends; the file stays behind and
//! holds the PID of the last process that held it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

/// Where lock files go unless `--lock-dir` (or `$ESPGATE_LOCK_DIR`) says.
pub const DEFAULT_DIR: &str = "/run/espgate";

/// A node's lock, held until this is dropped.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

impl NodeLock {
    /// Takes the lock of node `name` in `dir` (made mode 0700 if missing),
    /// or fails at once naming the lock file and the PID holding it.
    pub fn acquire(dir: &Path, name: &str) -> anyhow::Result<NodeLock> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("lock directory {}", dir.display()))?;
        let path = dir.join(file_name(name));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("lock file {}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::WOULDBLOCK => bail!(
                "node {name} is running already: {} is locked by {}",
                path.display(),
                holder(&path)
            ),
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing the PID to {}", path.display()))?;
        Ok(NodeLock { _file: file })
    }
}

/// Who holds the lock at `path`, as its file says.
fn holder(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) => format!("PID {pid}"),
            Err(_) => "a process that has not written its PID yet".into(),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => "a process that removed the file".into(),
        Err(e) => format!("a process whose PID cannot be read ({e})"),
    }
}

/// The lock file's name: the node's [`file_name_of`], then `.lock`.
fn file_name(name: &str) -> String {
    format!("{}.lock", file_name_of(name))
}

/// A node name as a file name: every byte outside `[A-Za-z0-9._-]`
/// written `%XX` (so `/` cannot leave the directory and two names never
/// share a file); `.` and `..` written `%2E`.
pub fn file_name_of(name: &str) -> String {
    if name == "." || name == ".." {
        return name.replace('.', "%2E");
    }
    let mut f = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            f.push(char::from(b));
        } else {
            f.push_str(&format!("%{b:02X}"));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A new empty directory for test `test`, removed when the guard drops
    /// (also when the test panics).
    fn dir(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("espgate-lock-{test}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn a_node_is_locked_once_until_its_lock_goes() {
        let tmp = dir("once");
        let d = tmp.path().join("run");
        let first = NodeLock::acquire(&d, "a").unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the lock directory is made mode 0700");
        let path = d.join("a.lock");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let e = format!("{:#}", NodeLock::acquire(&d, "a").unwrap_err());
        assert_eq!(
            e,
            format!(
                "node a is running already: {} is locked by PID {}",
                path.display(),
                std::process::id()
            )
        );
        let _b = NodeLock::acquire(&d, "b").expect("another node has its own lock");
        drop(first);
        let _again = NodeLock::acquire(&d, "a").expect("the lock went with its holder");
    }

    #[test]
    fn names_map_to_distinct_files_inside_the_directory() {
        assert_eq!(file_name("gw-1.a_b"), "gw-1.a_b.lock");
        assert_eq!(file_name("../x"), "..%2Fx.lock");
        assert_eq!(file_name("a b%"), "a%20b%25.lock");
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
        assert_eq!(
            file_name_of(".."),
            "%2E%2E",
            "a state directory stays inside"
        );
        let tmp = dir("names");
        let d = tmp.path();
        let _l = NodeLock::acquire(d, "../escape").unwrap();
        assert!(d.join("..%2Fescape.lock").exists());
    }
}
