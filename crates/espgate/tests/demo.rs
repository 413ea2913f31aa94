//! The README's main job: `espgate demo` runs the pair's whole story
//! (traffic, a failure, takeover, restart, failback) on the embedded
//! configuration and proves from its capture that no (SPI, sequence)
//! pair was used twice. Its figures are printed, not asserted.

use std::process::Command;

#[test]
fn the_demo_tells_the_failover_story_with_zero_reuse() {
    // Removed when `tmp` drops, also when an assertion fails.
    let tmp = tempfile::Builder::new()
        .prefix("espgate-demo-")
        .tempdir()
        .unwrap();
    let out_dir = tmp.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args(["demo", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run espgate demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "b declared a dead after",
        "bulk sync from b done",
        "b handed a's SAs back",
        " 0 used twice",
        "zero reuse",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // a's SA ran on a, then b, then a again, in three distinct ranges.
    let runs = text
        .lines()
        .find(|l| l.trim_start().starts_with("0x1000:"))
        .expect("runs of 0x1000");
    assert_eq!(runs.matches(", ").count(), 2, "{runs}");
    assert!(out_dir.join("wan.pcap").exists());
}
