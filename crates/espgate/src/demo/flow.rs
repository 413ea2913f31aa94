//! A failed packet flow on the demo's in-memory pair: node a's LAN link
//! goes down under traffic; a hands its SAs to b with their exact state
//! (as a drain does, and stays up); b carries them, and hands them home
//! the same way once a's link has been up for `link_up_ms`. Checked on the
//! capture of the ESP network and the nodes' events.

use std::sync::atomic::Ordering;
use std::time::Duration;

use espgate_dataplane::NodeEventKind;
use espgate_dataplane::mirror_task::unix_ms;

use super::{REPLAY, running, sa_drops, stop_a_b_a, wait_for};

/// a's outbound SA (h1 to h3) and its inbound one.
const OUT_A: u32 = 0x1000;
const IN_A: u32 = 0x1001;

#[test]
fn a_node_whose_link_fails_hands_its_sas_over_exactly_and_takes_them_back_once_it_works() {
    let (mut rig, mut la, mut lb, mut traffic) = running(false);

    // a's LAN link goes down: after link_down_ms its flow has failed.
    let t_down = unix_ms();
    rig.fabric.lan_links["a"].store(false, Ordering::Release);
    traffic.run(&mut rig, Duration::from_millis(20));
    let a = rig.a.as_ref().unwrap();
    wait_for(
        "a's flow fails",
        a,
        &mut la,
        |k| matches!(k, NodeEventKind::FlowFailed { port, next_hop: None } if port == "lan"),
        t_down,
    )
    .unwrap();
    wait_for(
        "b learns it",
        &rig.b,
        &mut lb,
        |k| *k == NodeEventKind::PeerFlow { failed: true },
        t_down,
    )
    .unwrap();
    wait_for(
        "b runs a's SA",
        &rig.b,
        &mut lb,
        |k| matches!(k, NodeEventKind::Activated { spi: OUT_A, .. }),
        t_down,
    )
    .unwrap();
    // b carries a's SAs, and does not fail back while a's link is down.
    traffic.run(&mut rig, Duration::from_millis(1500));
    let a = rig.a.as_ref().unwrap();
    la.0.extend(a.events());
    assert_eq!(
        la.first(
            |k| matches!(k, NodeEventKind::Activated { spi: OUT_A, .. }),
            t_down
        ),
        None,
        "a runs its SA again while its link is down"
    );

    // The link comes back: after link_up_ms a's flow works, b fails back.
    let t_up = unix_ms();
    rig.fabric.lan_links["a"].store(true, Ordering::Release);
    wait_for(
        "a's flow works",
        a,
        &mut la,
        |k| *k == NodeEventKind::FlowWorks,
        t_up,
    )
    .unwrap();
    wait_for(
        "a runs its SA again",
        a,
        &mut la,
        |k| matches!(k, NodeEventKind::Activated { spi: OUT_A, .. }),
        t_up,
    )
    .unwrap();
    traffic.run(&mut rig, Duration::from_millis(300));
    traffic.drain(&mut rig);

    let ([report_a, report_b, report_r], runs) = stop_a_b_a(rig, OUT_A);
    for w in runs.windows(2) {
        assert_eq!(w[1].first, w[0].last + 1, "no jump: {runs:?}");
    }
    // No fresh packet refused at b or at a's return (a's start refused
    // the first inbound_interval, as a new pair does), none at r.
    assert!(sa_drops(&report_a, IN_A, true, REPLAY) <= 64);
    assert_eq!(sa_drops(&report_b, IN_A, true, REPLAY), 0);
    assert_eq!(sa_drops(&report_r, OUT_A, true, REPLAY), 0);
}
