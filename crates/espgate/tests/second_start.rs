//! The same node started twice: the second `espgate run` is refused at
//! once, naming the node's lock and the PID holding it, before it opens a
//! port; another node asking for the control socket the first answers on
//! is refused too; the first keeps running and keeps its socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn config(name: &str) -> String {
    format!(
        r#"node: {{ name: {name} }}
ports:
  - {{ name: lan, role: protected, backend: pcap, tx_pcap: {name}-lan.pcap, mac: "02:00:00:00:01:01", address: 10.1.0.254/24 }}
  - {{ name: wan, role: unprotected, backend: pcap, mac: "02:00:00:00:01:02", address: 172.16.0.1/24 }}
"#
    )
}

fn espgate(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_espgate"));
    c.env("ESPGATE_LOCK_DIR", dir.join("locks"))
        .env("ESPGATE_STATE_DIR", dir.join("state"))
        .env("RUST_LOG", "warn");
    c
}

/// `espgate run` of `config` on `socket`, stopping by itself after `secs`.
fn run(dir: &Path, config: &Path, socket: &Path, secs: u32) -> Command {
    let mut c = espgate(dir);
    c.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--control")
        .arg(socket)
        .args(["--duration", &secs.to_string()]);
    c
}

fn status(socket: &Path) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    writeln!(s, r#"{{"op":"status"}}"#).ok()?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// Stops the first node whatever the test's outcome.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn refused_at_once(mut c: Command) -> (Output, Duration) {
    let t = Instant::now();
    let out = c.stdin(Stdio::null()).output().unwrap();
    (out, t.elapsed())
}

#[test]
fn a_second_start_of_a_node_is_refused_and_the_first_keeps_its_socket() {
    // Removed when `tmp` drops (after `first`, declared later: the node is
    // stopped before its directory goes), also when an assertion fails.
    let tmp = tempfile::Builder::new()
        .prefix("espgate-twice-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let (a, b) = (dir.join("a.yaml"), dir.join("b.yaml"));
    std::fs::write(&a, config("twice-a")).unwrap();
    std::fs::write(&b, config("twice-b")).unwrap();
    let socket = dir.join("a.sock");

    let first = Running(
        run(dir, &a, &socket, 60)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while status(&socket).is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the first node never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first holds its capture open; a start that opened the port would
    // make the file again.
    let capture = dir.join("twice-a-lan.pcap");
    std::fs::remove_file(&capture).unwrap();

    // The same node on a socket of its own.
    let other = dir.join("a2.sock");
    let (out, took) = refused_at_once(run(dir, &a, &other, 5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "the second start ran: {err}");
    let lock = dir.join("locks").join("twice-a.lock");
    assert!(
        err.contains(&lock.display().to_string()) && err.contains(&format!("PID {}", first.0.id())),
        "the refusal names neither the lock nor its holder: {err}"
    );
    assert!(took < Duration::from_secs(3), "refused only after {took:?}");
    assert!(!other.exists(), "the refused node made its socket");
    assert!(!capture.exists(), "the refused node opened a port");

    // The same node on the same socket: the lock refuses it first.
    let (out, _) = refused_at_once(run(dir, &a, &socket, 5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("twice-a.lock"), "{err}");

    // Another node on the first's socket.
    let (out, took) = refused_at_once(run(dir, &b, &socket, 5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "the other node ran: {err}");
    assert!(
        err.contains(&format!(
            "control socket {} is in use by a running espgate",
            socket.display()
        )),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "refused only after {took:?}");
    assert!(
        !dir.join("twice-b-lan.pcap").exists(),
        "the refused node opened a port"
    );

    let answer = status(&socket).expect("the first node lost its socket");
    assert_eq!(answer["node"], "twice-a", "{answer}");
    drop(first);
}
