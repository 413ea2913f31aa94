//! A bulk sync of a million SAs completes over a veth pair losing 1 % and
//! 10 % of the mirror frames each way (nftables `numgen random`, its
//! counter read): the joiner asks only for the parts it missed, until its
//! bulk is whole. Needs root (veth, nftables) and a release build (a
//! million SAs on two debug cores take minutes): `scripts/test` runs it as
//! `cargo test --release -p espgate-bench --test bulk_loss -- --ignored
//! --nocapture`.

use espgate_bench::bulk::bulk_sync_veth;

const SAS: usize = 1_000_000;

#[test]
#[ignore = "a million SAs: run in release by scripts/test (root, nftables)"]
fn a_million_sa_bulk_completes_over_a_lossy_veth() {
    let clean = bulk_sync_veth(SAS, 0).expect("bulk sync over veth");
    println!(
        "\nbulk sync of {SAS} SAs over veth: lossless {:.2} s, {} frames",
        clean.seconds, clean.frames
    );
    for loss in [1, 10] {
        let o = bulk_sync_veth(SAS, loss).expect("bulk sync over a lossy veth");
        println!(
            "  {loss:>2} % lost each way: {:.2} s, {} frames sent ({} more than lossless), \
             {} dropped by nftables",
            o.seconds,
            o.frames,
            o.frames.saturating_sub(clean.frames),
            o.dropped,
        );
        assert_eq!(o.sas, SAS);
        assert!(o.dropped > 0, "the loss rule dropped nothing at {loss} %");
    }
}
