//! A bulk sync of a million SAs completes over a veth pair losing 1 % and
//! 10 % of the mirror frames each way (nftables `numgen random`, its
//! counter read): the joiner asks only for the parts it missed, until its
//! bulk is whole. Needs root (veth, nftables) and a release build (a
//! million SAs on two debug cores take minutes): `scripts/test` runs it as
//! `cargo test --release -p espgate-bench --test bulk_loss -- --ignored
//! --nocapture`.

use espgate_bench::bulk::{bulk_sync, bulk_sync_veth};

const SAS: usize = 1_000_000;

#[test]
#[ignore = "a million SAs: run in release by scripts/test (root, nftables)"]
fn a_million_sa_bulk_completes_over_a_lossy_veth() {
    // One sending with nothing lost, on the cores alone: the frames a
    // bulk takes.
    let clean = bulk_sync(SAS, &|| 0);
    println!(
        "\nbulk sync of {SAS} SAs: {} frames when nothing is lost (on the cores alone, {:.2} s)",
        clean.frames, clean.seconds
    );
    for loss in [1, 10] {
        let o = bulk_sync_veth(SAS, loss).expect("bulk sync over a lossy veth");
        println!(
            "  over veth, {loss:>2} % lost each way: {:.2} s, {} frames sent ({} sent again), \
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
