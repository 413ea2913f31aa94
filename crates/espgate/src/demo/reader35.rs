//! A thirty-fifth fresh reader's attempt on f3affa3: node a restarted
//! again and again with no traffic at all (b, with a manual takeover,
//! keeps a's SAs parked meanwhile) writes an inbound mark a reach past
//! where each life resumed, because `moved` sets `heard` whenever the
//! Activate's packet count (the SA's whole history: the copy b's bulk
//! sync carries) is above the ledger's, which a new life starts at 0.
//! Each life resumes at the mark the one before wrote, so the window
//! runs ahead of the silent far end by MIN_INBOUND_REACH + 1 a restart.

use std::time::Duration;

use espgate_dataplane::NodeEventKind;
use espgate_dataplane::marks::key_digest;
use espgate_dataplane::mirror_task::unix_ms;
use espgate_dataplane::state_dir::StateDir;
use espgate_esp::Direction;

use espgate_dataplane::Takeover;
use espgate_dataplane::testbed;
use espgate_esp::Backend;

use super::rig::Rig;
use super::traffic::Traffic;
use super::{Log, wait_for};

const IN_A: u32 = 0x1001;

#[test]
fn reader35_idle_lives_of_a_leave_its_inbound_mark_where_it_was() {
    // b takes nothing over by itself (an operator's takeover): a's SAs
    // stay parked there while a restarts.
    let t_start = unix_ms();
    let mut rig = Rig::start_tweaked(Backend::preferred(), true, &|c| {
        c.mirror.as_mut().unwrap().takeover = Takeover::Manual;
    })
    .unwrap();
    let (mut la, mut lb) = (Log::default(), Log::default());
    let synced = |k: &NodeEventKind| matches!(k, NodeEventKind::Synced { .. });
    wait_for("a syncs", rig.a.as_ref().unwrap(), &mut la, synced, t_start).unwrap();
    wait_for("b syncs", &rig.b, &mut lb, synced, t_start).unwrap();
    assert!(testbed::warm_up(&mut rig.h1, &mut rig.h3, 9));
    assert!(testbed::warm_up(&mut rig.h3, &mut rig.h1, 9));
    let mut traffic = Traffic::default();
    traffic.run(&mut rig, Duration::from_millis(300));
    traffic.drain(&mut rig);
    std::thread::sleep(Duration::from_millis(200));
    let key = key_digest(
        &rig.ca
            .sas
            .iter()
            .find(|e| e.sa.spi == IN_A && e.sa.direction == Direction::Inbound)
            .unwrap()
            .sa
            .key,
    );
    let dir = rig.ca.state.dir.clone().unwrap();
    let mark = || StateDir::open(&dir).unwrap().1.unwrap().keys[&key].mark;
    let mut seen = Vec::new();
    for _ in 0..4 {
        rig.a.take().unwrap().stop();
        let before = mark();
        // a comes back at once (b takes nothing over): no packet anywhere.
        let t = unix_ms();
        rig.restart_a().unwrap();
        let a = rig.a.as_ref().unwrap();
        let start = wait_for(
            "a runs its inbound SA again",
            a,
            &mut la,
            |k| matches!(k, NodeEventKind::Activated { spi: IN_A, .. }),
            t,
        )
        .unwrap();
        let at =
            la.0.iter()
                .filter(|e| e.unix_ms >= start)
                .find_map(|e| match e.kind {
                    NodeEventKind::Activated {
                        spi: IN_A, start, ..
                    } => Some(start),
                    _ => None,
                });
        std::thread::sleep(Duration::from_millis(400));
        seen.push((before, at, mark()));
    }
    rig.a.take().unwrap().stop();
    eprintln!("(mark before the life, Activate start, mark during it): {seen:?}");
    for (before, at, after) in &seen {
        assert_eq!(
            before, after,
            "an idle life (activated at {at:?}) moved a's inbound mark: {seen:?}"
        );
    }
}
