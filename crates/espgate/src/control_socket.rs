//! The node's control socket: a Unix stream socket (mode 0600: root, or
//! whoever runs the node, only) carrying one JSON object per line each way.
//! The host processor uses it to push the configuration (with the SA keys:
//! they never cross the mirror link), to watch health and to order
//! takeover, hand-back and fencing; an IKE daemon's plugin uses it to
//! install SAs and rules and, on a `watch` connection, to hear of their
//! lifetimes. The requests are
//! `espgate_control::request::Request`. A line is at most
//! [`MAX_REQUEST_LINE`] bytes and at most [`MAX_CONNECTIONS`] connections
//! are served at once: a client cannot make the node buffer without end or
//! start threads without end.

use std::fs::DirBuilder;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use anyhow::{Context, bail};
use espgate_control::answer::{passing_refusal, refusal};
use espgate_control::request::Request;
use serde_json::Value;

/// A request with the way back to its connection.
pub type Call = (Request, Sender<Value>);

/// The longest request line, in bytes. A `configure` carries a whole node
/// configuration in one line: this is room for some 200 000 SAs with their
/// rules. A longer line is refused and its connection closed.
pub const MAX_REQUEST_LINE: usize = 64 << 20;

/// Connections served at once; one more is refused and closed.
pub const MAX_CONNECTIONS: usize = 16;

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
    socket_dir(path)?;
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
        .spawn(move || accept(&listener, &tx))
        .context("control thread")?;
    Ok(socket)
}

/// Makes the directory of the socket at `path` if it is missing, mode
/// 0700 (as the lock directory is); an existing one keeps its mode, but
/// one anybody may write to without the sticky bit is refused: another
/// user could replace the socket there and be sent the node's
/// configuration, SA keys included.
fn socket_dir(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| {
                    format!(
                        "control socket {}: making {}",
                        path.display(),
                        dir.display()
                    )
                })?;
            tracing::info!(directory = %dir.display(), "made the control socket's directory, mode 0700");
            return Ok(());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("control socket {}", path.display()));
        }
    };
    if !meta.is_dir() {
        bail!(
            "control socket {}: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        bail!(
            "control socket {}: {} (mode {:04o}) is writable by anyone, without the sticky bit: another user could replace the socket and be sent the node's configuration with its SA keys; give a directory only root (or the node's user) writes to, or one that does not exist yet (made mode 0700)",
            path.display(),
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// A served connection, counted in `open` while it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves each connection on a thread of its own, up to
/// [`MAX_CONNECTIONS`] at once.
fn accept(listener: &UnixListener, tx: &Sender<Call>) {
    let open = Arc::new(AtomicUsize::new(0));
    for mut conn in listener.incoming().flatten() {
        // Only this thread adds to `open`: the count cannot pass the cap
        // between the check and the increment.
        if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let no = passing_refusal(format!(
                "{MAX_CONNECTIONS} control connections are open, the most served at once: close one and retry"
            ));
            let _ = writeln!(conn, "{no}");
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(open.clone());
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                let _slot = slot;
                serve(conn, &tx)
            });
    }
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

/// Answers the requests of one connection, a line each, until it closes
/// or sends a line longer than [`MAX_REQUEST_LINE`].
fn serve(conn: UnixStream, calls: &Sender<Call>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::new(conn);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = MAX_REQUEST_LINE as u64 + 1;
        match (&mut input).take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST_LINE && line.last() != Some(&b'\n') {
            let no = refusal(format!(
                "request line longer than {MAX_REQUEST_LINE} bytes, the limit: connection closed"
            ));
            let _ = writeln!(out, "{no}");
            return;
        }
        let request = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => serde_json::from_str::<Request>(text).map_err(|e| e.to_string()),
            Err(e) => Err(format!("not UTF-8: {e}")),
        };
        let answer = match request {
            Err(e) => refusal(format!("bad request: {e}")),
            Ok(req) => {
                let watch = matches!(req, Request::Watch {});
                let (back, answer) = channel();
                if calls.send((req, back)).is_err() {
                    return;
                }
                if watch {
                    return stream(&answer, &mut out, &mut input);
                }
                answer
                    .recv()
                    .unwrap_or_else(|_| refusal("the node is stopping"))
            }
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

/// How often a watch connection with no event to carry looks whether its
/// client is gone.
const WATCH_PROBE: Duration = Duration::from_millis(100);

/// A `watch` connection: the answer, then every event, until either end
/// goes. A client that closes is seen within [`WATCH_PROBE`] even when no
/// event comes (its connection would hold a slot for good); what it sends
/// is read and ignored.
fn stream(events: &Receiver<Value>, out: &mut UnixStream, input: &mut BufReader<UnixStream>) {
    if input
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(1)))
        .is_err()
    {
        return;
    }
    let mut scratch = [0u8; 256];
    loop {
        match events.recv_timeout(WATCH_PROBE) {
            Ok(line) => {
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => match input.read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            },
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Connects to a control socket without waiting: a process that is
/// stopped (a frozen node) keeps its socket and takes connections into its
/// backlog until it is full, and a connect then waits for good.
fn connect(path: &Path) -> anyhow::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &SocketAddrUnix::new(path)?) {
        Ok(()) => {}
        Err(rustix::io::Errno::AGAIN) => {
            bail!("its backlog is full: connections wait unanswered (is the process stopped?)")
        }
        Err(e) => return Err(std::io::Error::from(e).into()),
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// How long a control request waits to be written and answered.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one request to a control socket and reads the answer.
pub fn ask(path: &Path, request: &Value) -> anyhow::Result<Value> {
    let mut s = connect(path).with_context(|| format!("connect {}", path.display()))?;
    // Both ways bounded: a stopped node reads nothing, and a long request
    // (a configuration) would wait for good in a full socket buffer.
    s.set_read_timeout(Some(ASK_TIMEOUT))?;
    s.set_write_timeout(Some(ASK_TIMEOUT))?;
    let mut line = request.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    serde_json::from_str(&line).with_context(|| format!("answer {line:?}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A fresh directory for one test's socket, removed when the guard
    /// drops (also when the test panics).
    fn dir(test: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("espgate-ctl-{test}-"))
            .tempdir()
            .unwrap()
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
        let tmp = dir("live");
        let path = tmp.path().join("c.sock");
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
    fn a_missing_directory_is_made_mode_0700() {
        let tmp = dir("mkdir");
        let path = tmp.path().join("run").join("espgate").join("a.sock");
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        answer_as(calls, "made");
        for d in [
            path.parent().unwrap(),
            path.parent().unwrap().parent().unwrap(),
        ] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o700, "{}", d.display());
        }
        let a = ask(&path, &json!({ "op": "status" })).unwrap();
        assert_eq!(a["who"], "made", "{a}");
    }

    #[test]
    fn an_existing_directory_keeps_its_mode_unless_anybody_may_replace_the_socket() {
        let tmp = dir("mode");
        let set = |mode: u32| {
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let path = tmp.path().join("c.sock");
        for mode in [0o755, 0o770, 0o1777] {
            set(mode);
            let (tx, _calls) = channel();
            let socket = listen(&path, tx).unwrap_or_else(|e| panic!("{mode:o}: {e:#}"));
            let now = std::fs::metadata(tmp.path()).unwrap().permissions().mode();
            assert_eq!(now & 0o7777, mode, "the mode was changed");
            drop(socket);
        }
        set(0o777);
        let (tx, _calls) = channel();
        let e = format!("{:#}", listen(&path, tx).unwrap_err());
        set(0o700);
        assert!(
            e.contains(&format!(
                "control socket {}: {} (mode 0777) is writable by anyone, without the sticky bit",
                path.display(),
                tmp.path().display()
            )),
            "{e}"
        );
        assert!(!path.exists(), "a socket was made there");
    }

    #[test]
    fn a_socket_nobody_answers_on_is_stale_and_replaced() {
        let tmp = dir("stale");
        let path = tmp.path().join("c.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        answer_as(calls, "new");
        let a = ask(&path, &json!({ "op": "status" })).unwrap();
        assert_eq!(a["who"], "new", "{a}");
    }

    /// Reads one answer line from `s`.
    fn read_answer(s: &UnixStream) -> Value {
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn a_request_line_over_the_limit_is_refused_naming_it() {
        let tmp = dir("long");
        let path = tmp.path().join("c.sock");
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        answer_as(calls, "node");
        let s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let line = vec![b'x'; (64 << 20) + 1];
            let _ = w.write_all(&line).and_then(|()| w.write_all(b"\n"));
        });
        let a = read_answer(&s);
        assert_eq!(a["ok"], false, "{a}");
        let e = a["error"].as_str().unwrap();
        assert!(e.contains("longer than 67108864 bytes"), "{e}");
        writer.join().unwrap();
    }

    #[test]
    fn connections_beyond_the_cap_are_refused_until_one_closes() {
        let tmp = dir("many");
        let path = tmp.path().join("c.sock");
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        answer_as(calls, "node");
        let mut open: Vec<UnixStream> = (0..16)
            .map(|_| {
                let mut s = UnixStream::connect(&path).unwrap();
                writeln!(s, r#"{{"op":"status"}}"#).unwrap();
                assert_eq!(read_answer(&s)["who"], "node");
                s
            })
            .collect();
        let extra = UnixStream::connect(&path).unwrap();
        extra
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let a = read_answer(&extra);
        assert_eq!(a["ok"], false, "{a}");
        let e = a["error"].as_str().unwrap();
        assert!(e.contains("16 control connections"), "{e}");
        drop(open.pop());
        let t = std::time::Instant::now();
        loop {
            // Until the server sees the close, a new connection is refused
            // (and may be closed before its request is written).
            let a = ask(&path, &json!({ "op": "status" }));
            if a.as_ref().is_ok_and(|a| a["who"] == "node") {
                break;
            }
            assert!(t.elapsed().as_secs() < 5, "no connection freed: {a:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_watch_connection_carries_the_answer_then_every_event_sent_to_it() {
        let tmp = dir("watch");
        let path = tmp.path().join("c.sock");
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        std::thread::spawn(move || {
            for (req, back) in calls {
                assert!(matches!(req, Request::Watch {}));
                for n in 0..3 {
                    let _ = back.send(json!({ "n": n }));
                }
            }
        });
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        writeln!(s, r#"{{"op":"watch"}}"#).unwrap();
        let mut lines = BufReader::new(&s).lines();
        for n in 0..3 {
            let line = lines.next().unwrap().unwrap();
            assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["n"], n);
        }
        // The node dropped its end: the connection closes.
        assert!(lines.next().is_none());
    }

    /// Reader26 find 3 (failed before the fix): a closed `watch`
    /// connection frees its slot though no event comes (the node's main
    /// loop keeps a watcher's way back until a send to it fails). It kept
    /// the slot for ever, so after MAX_CONNECTIONS charon restarts (each
    /// opens a watch) the control socket refused everyone, the host's
    /// takeover, fence and sa_del orders included.
    #[test]
    fn reader26_watch_connections_closed_by_their_clients_free_their_slots() {
        let tmp = dir("watchslots");
        let path = tmp.path().join("c.sock");
        let (tx, calls) = channel();
        let _socket = listen(&path, tx).unwrap();
        // The node's main loop as run.rs has it: a watch is answered and
        // its way back kept for the events to come (none come here).
        std::thread::spawn(move || {
            let mut watchers = Vec::new();
            for (req, back) in calls {
                let _ = back.send(json!({ "ok": true }));
                if matches!(req, Request::Watch {}) {
                    watchers.push(back);
                }
            }
        });
        for _ in 0..MAX_CONNECTIONS {
            let s = UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            writeln!(&s, r#"{{"op":"watch"}}"#).unwrap();
            assert_eq!(read_answer(&s)["ok"], true);
            // The watcher goes (charon restarted, `espgate` CLI ended).
            drop(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let a = ask(&path, &json!({ "op": "status" })).unwrap();
        assert_eq!(a["ok"], true, "the node is unreachable: {a}");
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let tmp = dir("file");
        let path = tmp.path().join("c.sock");
        std::fs::write(&path, "not a socket").unwrap();
        let (tx, _calls) = channel();
        let e = format!("{:#}", listen(&path, tx).expect_err("a file was replaced"));
        assert!(e.contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
