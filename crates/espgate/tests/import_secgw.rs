//! `espgate import-secgw` on a file in the ipsec-secgw guide's syntax:
//! the node file it writes (mode 0600: keys) loads as a node
//! configuration, and every line it could not carry is listed on
//! standard error with its line number.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn the_cli_writes_a_loadable_node_file_and_lists_what_it_left_out() {
    // Removed when `tmp` drops, also when an assertion fails.
    let tmp = tempfile::Builder::new()
        .prefix("espgate-import-")
        .tempdir()
        .unwrap();
    let out_file = tmp.path().join("imported.yaml");
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/secgw/gateway.cfg"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args([
            "import-secgw",
            input,
            "--spi-offset",
            "0x1000",
            "--name",
            "gw1",
            "--out",
        ])
        .arg(&out_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("imported 5 SAs and 8 policy rules"),
        "{stderr}"
    );
    assert!(stderr.contains("11 lines left out"), "{stderr}");
    assert!(stderr.contains("line 45: transport mode"), "{stderr}");
    assert!(stderr.contains("SPI 105 renumbered 0x1069"), "{stderr}");
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let node = espgate_control::load_node_file(&out_file).unwrap();
    assert_eq!(
        (node.name.as_str(), node.sas.len(), node.spd.len()),
        ("gw1", 5, 8)
    );
    // Without an offset the reserved SPIs' SAs are left out, and it says so.
    let bare = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args(["import-secgw", input])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(bare.status.success(), "{stderr}");
    assert!(
        stderr.contains("imported 0 SAs and 3 policy rules"),
        "{stderr}"
    );
    assert!(stderr.contains("SPI 105 is reserved"), "{stderr}");
}

/// DPDK's own sample, `examples/ipsec-secgw/ep0.cfg` of DPDK 22.11 (Debian's
/// dpdk-doc, BSD-3-Clause, copied unchanged into tests/vectors/secgw/): it
/// has no AES-GCM SA, so it imports as its 4 bypass rules, and each of its
/// other 76 rule lines is listed with its number (the README says so).
#[test]
fn dpdk_ep0_cfg_imports_as_four_bypass_rules_and_76_lines_left_out() {
    let tmp = tempfile::Builder::new()
        .prefix("espgate-import-")
        .tempdir()
        .unwrap();
    let out_file = tmp.path().join("ep0.yaml");
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/secgw/ep0.cfg"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args(["import-secgw", input, "--spi-offset", "0x1000", "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("imported 0 SAs and 4 policy rules from ")
            && stderr.contains("ep0.cfg; 76 lines left out:"),
        "{stderr}"
    );
    let listed = stderr.lines().filter(|l| l.starts_with("line ")).count();
    assert_eq!(listed, 76, "{stderr}");
    let node = espgate_control::load_node_file(&out_file).unwrap();
    assert_eq!((node.sas.len(), node.spd.len()), (0, 4));
}
