//! The node's control socket: a Unix stream socket (mode 0600: root, or
//! whoever runs the node, only) carrying one JSON object per line each way.
//! The host processor uses it to push the configuration (with the SA keys:
//! they never cross the mirror link), to watch health and to order
//! takeover, hand-back and fencing. The requests are
//! `espgate_control::request::Request`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{Sender, channel};

use anyhow::Context;
use espgate_control::request::Request;
use serde_json::{Value, json};

/// A request with the way back to its connection.
pub type Call = (Request, Sender<Value>);

/// An answer refusing a request.
pub fn refuse(why: impl std::fmt::Display) -> Value {
    json!({ "ok": false, "error": why.to_string() })
}

/// Listens on `path` (replacing a stale socket); requests go to `tx`, to
/// be answered by the node's main loop.
pub fn listen(path: &Path, tx: Sender<Call>) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
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
    Ok(())
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
