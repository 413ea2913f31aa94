//! Every command that prints, its standard output a pipe whose reader has
//! already gone (`espgate peer | head -1` once `head` has its line): the
//! command ends quietly with success, no panic and no message. `println!`
//! panicked there ("failed printing to stdout: Broken pipe").

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = r#"node: { name: closed-stdout }
ports:
  - { name: lan, role: protected, backend: pcap, mac: "02:00:00:00:01:01", address: 10.1.0.254/24 }
  - { name: wan, role: unprotected, backend: pcap, mac: "02:00:00:00:01:02", address: 172.16.0.1/24 }
sas:
  - { spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 172.16.0.1, dst: 172.16.0.2 } }
"#;

fn espgate(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_espgate"));
    c.env("ESPGATE_LOCK_DIR", dir.join("locks"))
        .env("ESPGATE_STATE_DIR", dir.join("state"))
        .env("RUST_LOG", "warn");
    c
}

/// Stops the node whatever the test's outcome.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn answers(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    writeln!(s, r#"{{"op":"status"}}"#).is_ok()
        && BufReader::new(&s).read_line(&mut line).is_ok()
        && line.contains("\"ok\":true")
}

#[test]
fn each_printing_command_ends_quietly_when_its_reader_has_gone() {
    // Removed when `tmp` drops (after `_node`, declared later), also when
    // an assertion fails.
    let tmp = tempfile::Builder::new()
        .prefix("espgate-closed-stdout-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let config = dir.join("node.yaml");
    std::fs::write(&config, NODE).unwrap();
    let socket = dir.join("node.sock");
    let _node = Running(
        espgate(dir)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--control")
            .arg(&socket)
            .args(["--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while !answers(&socket) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the node never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conf");
    let sock = socket.to_str().unwrap();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["info"],
        &["sa", "list", "--control", sock],
        &["sa", "list", "--json", "--control", sock],
        &["stats", "--control", sock],
        &["stats", "--json", "--control", sock],
        &["peer", "--control", sock],
        &["peer", "--json", "--control", sock],
        &[
            "top",
            "--count",
            "1",
            "--interval",
            "0.1",
            "--control",
            sock,
        ],
        &["keys", "--config", &format!("{conf}/node-example.yaml")],
        &["esp", "demo", "--out", out],
        &["demo", "--out", out],
    ];
    for args in commands {
        // The reader's end closed before the command starts: its first
        // write fails.
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        drop(reader);
        let done = espgate(dir)
            .args(*args)
            .stdin(Stdio::null())
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&done.stderr);
        assert!(
            done.status.success() && err.is_empty(),
            "espgate {}: {}, standard error:\n{err}",
            args.join(" "),
            done.status
        );
    }
}

/// The host's log goes to standard output too; its reader gone, the host
/// goes on managing the pair (here two nodes that never answer) to the end
/// of its run instead of panicking at its first line.
#[test]
fn the_host_goes_on_without_its_log() {
    let tmp = tempfile::Builder::new()
        .prefix("espgate-closed-stdout-host-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let pair = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conf/pair");
    let host = dir.join("host.yaml");
    std::fs::write(
        &host,
        format!(
            "nodes:\n  - {{ name: a, control: a.sock, config: {pair}/a.yaml }}\n  - {{ name: b, control: b.sock, config: {pair}/b.yaml }}\n"
        ),
    )
    .unwrap();
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    let t = Instant::now();
    // Errors only: conf/pair's `takeover: auto` draws a warning.
    let done = espgate(dir)
        .env("RUST_LOG", "error")
        .current_dir(dir)
        .arg("host")
        .arg("--config")
        .arg(&host)
        .args(["--duration", "0.5"])
        .stdin(Stdio::null())
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        done.status.success() && err.is_empty(),
        "{}, standard error:\n{err}",
        done.status
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "the host stopped after {:?}",
        t.elapsed()
    );
}
