//! `espgate host` over node files that say `takeover: auto` warns once at
//! its start that those nodes take over without its order; over files
//! that say `manual` it does not.

use std::process::Command;

/// The host's standard error over conf/pair's node files, their
/// `takeover` set to `a` and `b`, for a short run (the nodes never answer).
fn host_stderr(a: &str, b: &str) -> String {
    let tmp = tempfile::Builder::new()
        .prefix("espgate-host-takeover-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let pair = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conf/pair");
    for (name, mode) in [("a", a), ("b", b)] {
        let text = std::fs::read_to_string(format!("{pair}/{name}.yaml")).unwrap();
        let set = text.replacen("takeover: auto ", &format!("takeover: {mode} "), 1);
        assert!(set.contains(&format!("takeover: {mode} ")), "{name}.yaml");
        std::fs::write(dir.join(format!("{name}.yaml")), set).unwrap();
    }
    std::fs::write(
        dir.join("host.yaml"),
        "nodes:\n  - { name: a, control: a.sock, config: a.yaml }\n  - { name: b, control: b.sock, config: b.yaml }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .current_dir(dir)
        .args(["host", "--config", "host.yaml", "--duration", "0.2"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn the_host_warns_once_of_nodes_that_take_over_by_themselves() {
    let err = host_stderr("auto", "auto");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("takeover: auto for a and b: "),
        "{err}"
    );
    let err = host_stderr("manual", "auto");
    assert!(err.contains("takeover: auto for b: "), "{err}");
    let err = host_stderr("manual", "manual");
    assert!(!err.contains("takeover"), "{err}");
}
