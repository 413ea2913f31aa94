//! Each broken node configuration makes `espgate run` exit non-zero with one
//! line on standard error that names the file, where in it, and what is wrong.
//!
//! Where in it: the line, the column and the key path, whether the YAML
//! reader found the error (syntax, an unknown key, a value of the wrong
//! type or variant) or a check after reading did (docs/configuration.md
//! says the same).

use std::process::Command;

const GOOD: &str = r#"node: { name: a }
workers: { count: 1 }
ports:
  - name: lan
    role: protected
    backend: pcap
    mac: 02:00:00:00:01:01
    address: 10.1.0.254/24
  - name: wan
    role: unprotected
    backend: pcap
    mac: 02:00:00:00:01:02
    address: 172.16.0.1/24
sas:
  - spi: 0x1000
    direction: outbound
    aead: aes-128-gcm
    key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68
    tunnel: { src: 172.16.0.1, dst: 172.16.0.2 }
spd:
  - { direction: out, src: 10.1.0.0/24, dst: 10.2.0.0/24, action: protect, sa: 0x1000 }
"#;

/// `espgate run` of `config`, in a directory of its own (its file, locks
/// and state), removed when `tmp` drops at the end, also on a panic.
fn run(config: &str) -> (i32, String) {
    let tmp = tempfile::Builder::new()
        .prefix("espgate-badcfg-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let file = dir.join("node-a.yaml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args(["run", "--duration", "0.05", "--config"])
        .arg(&file)
        .env("ESPGATE_LOCK_DIR", dir.join("locks"))
        .env("ESPGATE_STATE_DIR", dir.join("state"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_good_config_runs() {
    let (code, err) = run(GOOD);
    assert_eq!(code, 0, "{err}");
}

/// Splits `espgate: DIR/node-a.yaml[:L:C]: KEY.PATH: message` into whether
/// it had a line and column, and the key path.
fn place(line: &str) -> Option<(bool, &str)> {
    let rest = line.strip_prefix("espgate: ")?;
    let rest = &rest[rest.find("/node-a.yaml")? + "/node-a.yaml".len()..];
    let (has_line, rest) = match rest.strip_prefix(": ") {
        Some(r) => (false, r),
        None => {
            let r = rest.strip_prefix(':')?;
            let (l, r) = r.split_once(':')?;
            let (c, r) = r.split_once(": ")?;
            l.parse::<u32>().ok()?;
            c.parse::<u32>().ok()?;
            (true, r)
        }
    };
    Some((has_line, rest.split_once(": ")?.0))
}

#[test]
fn each_broken_config_gets_one_line_naming_the_place() {
    // (what, text of the good file, replaced by, key path)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "unknown key",
            "workers: { count: 1 }",
            "workers: { count: 1, turbo: true }",
            "workers.turbo",
        ),
        (
            "bad prefix",
            "src: 10.1.0.0/24",
            "src: 10.1.0.0/33",
            "spd[0].src",
        ),
        (
            "duplicate spi",
            "spd:",
            "  - { spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 172.16.0.1, dst: 172.16.0.2 } }\nspd:",
            "sas[1].spi",
        ),
        (
            "two SAs with one key",
            "spd:",
            "  - { spi: 0x1001, direction: inbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 172.16.0.2, dst: 172.16.0.1 } }\nspd:",
            "sas[1].key",
        ),
        (
            "key of the wrong length",
            "key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68",
            "key: 0x4c80cdefbb5d10da906ac73c3613a634",
            "sas[0].key",
        ),
        (
            "missing port",
            "  - name: wan\n    role: unprotected",
            "  - name: wan\n    role: protected",
            "ports",
        ),
        (
            "bad mac",
            "mac: 02:00:00:00:01:01",
            "mac: 02:00:00:00:01",
            "ports[0].mac",
        ),
        (
            "address without prefix",
            "address: 10.1.0.254/24",
            "address: 10.1.0.254",
            "ports[0].address",
        ),
        (
            "unknown backend",
            "backend: pcap\n    mac: 02:00:00:00:01:01",
            "backend: netmap\n    mac: 02:00:00:00:01:01",
            "ports[0].backend",
        ),
        (
            "af_packet without interface",
            "backend: pcap\n    mac: 02:00:00:00:01:01",
            "backend: af_packet\n    mac: 02:00:00:00:01:01",
            "ports[0].interface",
        ),
        (
            "policy names a missing SA",
            "action: protect, sa: 0x1000",
            "action: protect, sa: 0x2000",
            "spd[0].sa",
        ),
        (
            "zero workers",
            "workers: { count: 1 }",
            "workers: { count: 0 }",
            "workers.count",
        ),
        (
            "SA on a missing worker",
            "direction: outbound\n",
            "direction: outbound\n    worker: 3\n",
            "sas[0].worker",
        ),
        ("reserved spi", "spi: 0x1000", "spi: 7", "sas[0].spi"),
        (
            "mixed tunnel families",
            "dst: 172.16.0.2 }",
            "dst: \"2001:db8::2\" }",
            "sas[0].tunnel",
        ),
        (
            "bad port range",
            "action: protect",
            "dport: 80-20, action: protect",
            "spd[0].dport",
        ),
        ("not YAML", "ports:", "ports: [ {", "ports[0].?"),
        (
            "home without a mirror section",
            "direction: outbound\n",
            "direction: outbound\n    home: 2\n",
            "sas[0].home",
        ),
        (
            "mirror key too short",
            "sas:",
            "mirror: { node: 1, peer: 2, key: 0x0001020304, port: { name: m, backend: af_packet, interface: m0 } }\nsas:",
            "mirror.key",
        ),
        (
            "mirror takeover jump receivers cannot follow",
            "sas:",
            "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 }, takeover_jump: 4294967296 }\nsas:",
            "mirror.takeover_jump",
        ),
        (
            "mirror node is its own peer",
            "sas:",
            "mirror: { node: 1, peer: 1, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 } }\nsas:",
            "mirror.peer",
        ),
        (
            "home is neither node",
            "sas:\n  - spi: 0x1000\n    direction: outbound\n",
            "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 } }\nsas:\n  - spi: 0x1000\n    direction: outbound\n    home: 5\n",
            "sas[0].home",
        ),
        (
            "quantity on an inbound SA",
            "sas:\n  - spi: 0x1000\n    direction: outbound\n",
            "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 } }\nsas:\n  - spi: 0x1000\n    direction: inbound\n    mirror: { quantity: 5 }\n",
            "sas[0].mirror.quantity",
        ),
        (
            "replay window too big for mirror frames",
            "sas:\n",
            "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 } }\nsas:\n  - { spi: 0x3000, direction: inbound, aead: aes-128-gcm, key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68, tunnel: { src: 172.16.0.2, dst: 172.16.0.1 }, replay_window: 65536 }\n",
            "sas[0].replay_window",
        ),
        (
            "endless key file",
            "key: 0x4c80cdefbb5d10da906ac73c3613a6342e443b68",
            "key_file: /dev/zero",
            "sas[0].key_file",
        ),
        (
            "mirror frames larger than a buffer",
            "sas:",
            "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 }, max_frame: 2035 }\nsas:",
            "mirror.max_frame",
        ),
        (
            "unknown inbound takeover mode",
            "sas:",
            "mirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: m0 }, inbound_takeover: loose }\nsas:",
            "mirror.inbound_takeover",
        ),
        (
            "mirror port on a data port's interface",
            "    backend: pcap\n    mac: 02:00:00:00:01:01\n    address: 10.1.0.254/24\n  - name: wan\n    role: unprotected\n    backend: pcap\n    mac: 02:00:00:00:01:02\n    address: 172.16.0.1/24\nsas:",
            "    backend: af_packet\n    interface: eth9\n    address: 10.1.0.254/24\n  - name: wan\n    role: unprotected\n    backend: pcap\n    mac: 02:00:00:00:01:02\n    address: 172.16.0.1/24\nmirror: { node: 1, peer: 2, key: 0x000102030405060708090a0b0c0d0e0f, port: { name: m, backend: af_packet, interface: eth9 } }\nsas:",
            "mirror.port.interface",
        ),
        (
            "punt device name the kernel refuses",
            "sas:",
            "punt: { interface: a-name-far-too-long }\nsas:",
            "punt.interface",
        ),
    ];
    for (what, from, to, key_path) in cases {
        assert!(
            GOOD.contains(from),
            "{what}: the good config lacks {from:?}"
        );
        let (code, err) = run(&GOOD.replacen(from, to, 1));
        assert_ne!(code, 0, "{what}: accepted");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: want one line, got:\n{err}");
        let Some((got_line, got_path)) = place(lines[0]) else {
            panic!("{what}: not `espgate: FILE[:LINE:COL]: KEY: ...`: {err}");
        };
        assert_eq!(got_path, *key_path, "{what}: key path in {err}");
        assert!(got_line, "{what}: no line and column in {err}");
        println!("{what:32} {}", lines[0]);
    }
}
