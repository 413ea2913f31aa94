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

/// `espgate demo --help` tells the story the demo runs (it described an
/// older demo: two nodes back to back, traffic both ways).
#[test]
fn the_demo_help_tells_its_story() {
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args(["demo", "--help"])
        .output()
        .expect("run espgate demo --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for words in [
        "a is killed",
        "b takes its SAs over",
        "sequence number",
        "wan.pcap",
    ] {
        assert!(text.contains(words), "missing {words:?} in:\n{text}");
    }
}

/// `espgate esp demo` (README: the ESP core alone on a bundled capture):
/// every IP frame of the sample sealed and opened back to its bytes, a
/// replay and a flipped bit refused without moving the window, and both
/// captures written. Its throughput figures are printed, not asserted.
#[test]
fn the_esp_demo_round_trips_the_sample_and_refuses_replay_and_forgery() {
    let tmp = tempfile::Builder::new()
        .prefix("espgate-esp-demo-")
        .tempdir()
        .unwrap();
    let out_dir = tmp.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_espgate"))
        .args(["esp", "demo", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run espgate esp demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "esp demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "1  ethertype 0x0806: not IP, not for ESP",
        "decrypted 7 of 7 ESP packets back to the exact original bytes",
        "the first ESP packet again (a replay):        dropped (replayed)",
        "seq 8 with one ciphertext bit flipped:        dropped (auth_failed)",
        "seq 8 as sent (the forgery moved nothing):    accepted",
        "counters: outbound 8 packets 1756 bytes; inbound 8 packets 1756 bytes, drops: replayed 1, auth_failed 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for pcap in ["plain.pcap", "esp.pcap"] {
        let len = std::fs::metadata(out_dir.join(pcap))
            .unwrap_or_else(|e| panic!("{pcap}: {e}"))
            .len();
        // A pcap file header is 24 bytes: more means frames were written.
        assert!(len > 24, "{pcap} holds no frame");
    }
}
