//! A planned drain and return of node a under traffic, on the demo's
//! in-memory pair: a hands its SAs to b with their exact state and stops;
//! b continues each SA from exactly there (the next sequence number, no
//! fresh packet refused); a comes back, and b hands them home the same
//! way. Checked on the capture of the ESP network and the nodes' counters.

use std::time::Duration;

use espgate_dataplane::NodeEventKind;
use espgate_dataplane::marks::MIN_INBOUND_REACH;
use espgate_dataplane::mirror_task::{Order, unix_ms};

use super::{PATIENCE, REPLAY, running, sa_drops, stop_a_b_a, wait_for};

/// a's outbound SA (h1 to h3) and its inbound one.
const OUT_A: u32 = 0x1000;
const IN_A: u32 = 0x1001;

/// Both moves are exact, with state directories or without: each run of
/// a's outbound SA begins right after the one before. With them, a's
/// drained life lowers its marks to just past where its SAs left as it
/// stops (its last write), so its return tells b no floor past b's own
/// position: before that write a's marks, a reach ahead, moved the
/// return past them, a forward step outbound and inbound the far end's
/// packets below the mark refused.
#[test]
fn a_drained_node_and_its_return_lose_no_number_and_refuse_no_packet() {
    for keep_state in [false, true] {
        let runs = drain_and_return(keep_state);
        for w in runs.windows(2) {
            assert_eq!(
                w[1].first,
                w[0].last + 1,
                "no jump (state directories: {keep_state}): {runs:?}"
            );
        }
    }
}

/// Drains a under traffic, lets b run its SAs, restarts a and lets b's
/// automatic failback hand them home; checks no (SPI, seq) twice, no
/// fresh packet refused, little lost; returns the runs of a's outbound
/// SA on the ESP network (a's, b's, a's again).
fn drain_and_return(keep_state: bool) -> Vec<super::capture::Run> {
    let (mut rig, mut la, mut lb, mut traffic) = running(keep_state);

    // The drain, with h1's datagrams going on (a worker keeps sending
    // until its SA stops).
    let (tx, answer) = std::sync::mpsc::channel();
    assert!(rig.a.as_ref().unwrap().order(Order::Drain(tx)));
    let t_drain = unix_ms();
    traffic.run(&mut rig, Duration::from_millis(20));
    let sas = answer
        .recv_timeout(PATIENCE)
        .expect("a's mirror answers the drain")
        .expect("the drain is carried out");
    assert_eq!(sas, 2, "a ran its two SAs");
    let report_a1 = rig.a.take().unwrap().stop();
    wait_for(
        "b learns a left",
        &rig.b,
        &mut lb,
        |k| *k == NodeEventKind::PeerLeft,
        t_drain,
    )
    .unwrap();
    traffic.run(&mut rig, Duration::from_millis(300));

    // a returns; b's automatic failback hands the SAs home exactly.
    let t_restart = unix_ms();
    rig.restart_a().unwrap();
    let a2 = rig.a.as_ref().unwrap();
    let synced = |k: &NodeEventKind| matches!(k, NodeEventKind::Synced { .. });
    wait_for("a syncs again", a2, &mut la, synced, t_restart).unwrap();
    wait_for(
        "a runs its SA again",
        a2,
        &mut la,
        |k| matches!(k, NodeEventKind::Activated { spi: OUT_A, .. }),
        t_restart,
    )
    .unwrap();
    traffic.run(&mut rig, Duration::from_millis(300));
    traffic.drain(&mut rig);

    let ([report_a2, report_b, report_r], runs) = stop_a_b_a(rig, OUT_A);
    // No fresh packet refused on a's inbound SA at b or at a's return
    // (a's first life refused the first inbound_interval at its start, as
    // a new pair does), none at r either.
    assert!(sa_drops(&report_a1, IN_A, true, REPLAY) <= 64);
    let refused =
        sa_drops(&report_b, IN_A, true, REPLAY) + sa_drops(&report_a2, IN_A, true, REPLAY);
    assert_eq!(refused, 0, "fresh packets refused at b and at a's return");
    assert_eq!(sa_drops(&report_r, OUT_A, true, REPLAY), 0);
    // With a state directory a's return may also wait for its marks: the
    // hand-back starts past the mark its drained life left (just past its
    // last number), and the SA refuses at the old mark until the keeper
    // writes one past the start (milliseconds; on a loaded machine a few
    // hundred).
    let stalled = if keep_state {
        MIN_INBOUND_REACH as usize
    } else {
        0
    };
    let (sent, back) = traffic.h1.count(0, unix_ms());
    assert!(
        sent - back <= 40 + stalled,
        "h1 lost {} of {sent} across the drain and the return",
        sent - back
    );
    runs
}

/// A host that has not followed b's announcement of a's address (its ARP
/// entry still names a's MAC) goes on reaching a after the drain: a sends
/// each frame on to b, which runs the SA now, and b's reply comes back.
/// Without the redirect a drops them all as `standby`.
#[test]
fn frames_that_still_reach_a_drained_node_go_on_to_its_peer() {
    let (mut rig, _la, _lb, mut traffic) = running(false);
    rig.h1.gateway_ip = None;
    let (tx, answer) = std::sync::mpsc::channel();
    assert!(rig.a.as_ref().unwrap().order(Order::Drain(tx)));
    assert_eq!(answer.recv_timeout(PATIENCE).unwrap(), Ok(2));
    let t0 = unix_ms();
    traffic.run(&mut rig, Duration::from_millis(300));
    traffic.drain(&mut rig);
    let (sent, back) = traffic.h1.count(t0, unix_ms());
    let a = rig.a.take().unwrap().stop().totals();
    let b = rig.b.stop().totals();
    rig.r.stop();
    assert!(sent > 20, "h1 sent {sent}");
    assert!(
        back + 2 >= sent,
        "h1's datagrams through the drained a: {back} of {sent} echoed"
    );
    assert!(a.redirected >= sent as u64, "a sent on {}", a.redirected);
    assert!(b.encrypted > 0);
}

/// A frame a host sends to the broadcast MAC reaches both nodes: the one
/// that runs its SA seals it, and the drained one, which has the SA
/// parked, must not send its copy on as well (the far end would get it
/// twice, under two sequence numbers).
#[test]
fn a_frame_sent_to_all_is_not_sent_on_by_the_node_that_gave_its_sa_up() {
    let (mut rig, _la, _lb, mut traffic) = running(false);
    let (tx, answer) = std::sync::mpsc::channel();
    assert!(rig.a.as_ref().unwrap().order(Order::Drain(tx)));
    assert_eq!(answer.recv_timeout(PATIENCE).unwrap(), Ok(2));
    rig.h1.gateway_ip = None;
    rig.h1.gateway_mac = espgate_wire::ethernet::MacAddr::BROADCAST;
    traffic.run(&mut rig, Duration::from_millis(200));
    traffic.drain(&mut rig);
    let a = rig.a.take().unwrap().stop().totals();
    rig.b.stop();
    rig.r.stop();
    let (sent, back) = traffic.h1.count(0, unix_ms());
    assert!(
        back > 0,
        "b carried h1's broadcast frames ({back} of {sent})"
    );
    assert_eq!(a.redirected, 0, "a sent frames to all on to b");
}
