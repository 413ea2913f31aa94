//! The node's control socket: a Unix stream socket (mode 0600: root, or
//! whoever runs the node, only) carrying one JSON object per line each way.
//! The host processor uses it to push the configuration (with the SA keys:
//! they never cross the mirror link), to watch health and to order
//! takeover, hand-back and fencing. The requests are
//! `espgate_control::request::Request`.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};

use anyhow::{Context, bail};
use espgate_control::request::Request;
use serde_json::{Value, json};

/// A request with the way back to its connection.
pub type Call = (Request, Sender<Value>);

/// An answer refusing a request.
pub fn refuse(why: impl std::fmt::Display) -> Value {
    json!({ "ok": false, "error": why.to_string() })
}

/// A control socket being listened on; its file goes when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `path`; requests go to `tx`, to be answered by the node's
/// main loop. A socket nobody answers on (left by a node that died) is
/// replaced; a socket a live process answers on, or a file that is not a
/// socket, is refused and left as it is.
pub fn listen(path: &Path, tx: Sender<Call>) -> anyhow::Result<ControlSocket> {
    clear_stale(path)?;
    let listener =
        UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
    let socket = ControlSocket {
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let tx = tx.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || serve(conn, &tx));
            }
        })
        .context("control thread")?;
    Ok(socket)
}

/// Makes way for a control socket at `path`: removes a stale socket, one
/// that refuses connections; refuses a live one or anything else.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("control socket {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "control socket {}: the path exists and is not a socket (left as it is)",
            path.display()
        );
    }
    match UnixStream::connect(path) {
        Ok(_) => bail!(
            "control socket {} is in use by a running espgate (stop it, or give this node another --control)",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "control socket {}: cannot tell whether a node answers on it",
                path.display()
            )
        }),
    }
}

fn serve(conn: UnixStream, calls: &Sender<Call>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Err(e) => refuse(format!("bad request: {e}")),
            Ok(req) => {
                let (back, answer) = channel();
                if calls.send((req, back)).is_err() {
                    return;
                }
                answer
                    .recv()
                    .unwrap_or_else(|_| refuse("the node is stopping"))
            }
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

/// Sends one request to a control socket and reads the answer.
pub fn ask(path: &Path, request: &Value) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(path).with_context(|| format!("connect {}", path.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    writeln!(s, "{request}")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    serde_json::from_str(&line).with_context(|| format!("answer {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test's socket.
    fn dir(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("espgate-ctl-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Answers every call on `calls` with `{"ok":true,"who":who}`.
    fn answer_as(calls: std::sync::mpsc::Receiver<Call>, who: &'static str) {
        std::thread::spawn(move || {
            for (_, back) in calls {
                let _ = back.send(json!({ "ok": true, "who": who }));
            }
        });
    }

    #[test]
    fn a_socket_a_live_node_answers_on_is_never_taken() {
        let path = dir("live").join("c.sock");
        let (tx, calls) = channel();
        let _first = listen(&path, tx).unwrap();
        answer_as(calls, "first");
        let (tx2, calls2) = channel();
        let refused = listen(&path, tx2);
        answer_as(calls2, "second");
        let e = format!("{:#}", refused.expect_err("a live socket was taken"));
        assert!(
            e.contains(&format!(
                "control socket {} is in use by a running espgate",
                path.display()
            )),
            "{e}"
        );
        let a = ask(&path, &json!({ "op": "status" })).unwrap();
        assert_eq!(a["who"], "first", "{a}");
    }

    #[test]
    fn a_socket_nobody_answers_on_is_stale_and_replaced() {
        let path = dir("stale").join("c.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        answer_as(calls, "new");
        let a = ask(&path, &json!({ "op": "status" })).unwrap();
        assert_eq!(a["who"], "new", "{a}");
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let path = dir("file").join("c.sock");
        std::fs::write(&path, "not a socket").unwrap();
        let (tx, _calls) = channel();
        let e = format!("{:#}", listen(&path, tx).expect_err("a file was replaced"));
        assert!(e.contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
