//! `espgate demo`: the pair's whole story on in-memory ports and the
//! embedded configuration (`conf/demo/{a,b,r}.yaml`): no NIC, nothing to
//! write but each node's state directory (a new one under the system's
//! temporary directory, removed at the end). Nodes a and b each run their own SAs to the remote gateway r and
//! mirror them to each other; hosts behind a and b talk through r to h3.
//! Then a dies: b detects it, takes a's SAs and addresses over, and a's
//! traffic resumes through b. Then a comes back with its memory gone (its
//! state directory kept): bulk sync, and b hands the SAs back. The demo prints the timings, what was
//! lost in the gap, the mirror link's load, and the proof from the capture
//! of the ESP network that no (SPI, sequence number) pair — no AES-GCM
//! nonce — was ever used twice.

mod capture;
#[cfg(test)]
mod drain;
#[cfg(test)]
mod flow;
#[cfg(test)]
mod reader35;
pub(crate) mod rig;
mod traffic;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use espgate_dataplane::mirror_task::{Order, unix_ms};
use espgate_dataplane::{NodeEvent, NodeEventKind, NodeReport, Role};
use espgate_esp::{Backend, DropReason};
use espgate_wire::ethernet::MacAddr;

use rig::Rig;
use traffic::Traffic;

/// How long each phase runs.
const PHASE: Duration = Duration::from_millis(1000);
/// How long after a's death the host fences it (b has declared a dead by
/// then: its dead time is 100 ms).
const FENCE_AFTER: Duration = Duration::from_millis(300);
/// How long to wait for a node to reach a state.
const PATIENCE: Duration = Duration::from_secs(5);

/// Events of one node, kept as they are taken.
#[derive(Default)]
struct Log(Vec<NodeEvent>);

impl Log {
    fn first(&self, pick: impl Fn(&NodeEventKind) -> bool, after: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|e| e.unix_ms >= after && pick(&e.kind))
            .map(|e| e.unix_ms)
    }
}

fn wait_for(
    what: &str,
    node: &espgate_dataplane::RunningNode,
    log: &mut Log,
    pick: impl Fn(&NodeEventKind) -> bool,
    after: u64,
) -> anyhow::Result<u64> {
    let t0 = Instant::now();
    loop {
        log.0.extend(node.events());
        if let Some(t) = log.first(&pick, after) {
            return Ok(t);
        }
        if t0.elapsed() > PATIENCE {
            bail!("{what}: not within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn name_of(
    mac: MacAddr,
    a: &espgate_dataplane::NodeConfig,
    b: &espgate_dataplane::NodeConfig,
) -> &'static str {
    let is = |c: &espgate_dataplane::NodeConfig| {
        c.port(Role::Unprotected).and_then(|p| p.mac) == Some(mac)
    };
    if is(a) {
        "a"
    } else if is(b) {
        "b"
    } else {
        "r"
    }
}

/// The rig started (its nodes keeping state directories or not), both
/// pair nodes synchronised, h1 and h3 reaching each other, and 300 ms of
/// traffic sent: the rig, a's and b's event logs, and the traffic.
#[cfg(test)]
fn running(keep_state: bool) -> (Rig, Log, Log, Traffic) {
    let t_start = unix_ms();
    let mut rig = Rig::start_with(Backend::preferred(), keep_state).unwrap();
    let (mut la, mut lb) = (Log::default(), Log::default());
    let synced = |k: &NodeEventKind| matches!(k, NodeEventKind::Synced { .. });
    wait_for("a syncs", rig.a.as_ref().unwrap(), &mut la, synced, t_start).unwrap();
    wait_for("b syncs", &rig.b, &mut lb, synced, t_start).unwrap();
    assert!(espgate_dataplane::testbed::warm_up(
        &mut rig.h1,
        &mut rig.h3,
        9
    ));
    assert!(espgate_dataplane::testbed::warm_up(
        &mut rig.h3,
        &mut rig.h1,
        9
    ));
    let mut traffic = Traffic::default();
    traffic.run(&mut rig, Duration::from_millis(300));
    (rig, la, lb, traffic)
}

/// Stops a (its current life), b and r, and checks the ESP network's
/// capture: no (SPI, seq) twice anywhere, and a's SA `spi` sent by a,
/// then b, then a again. Returns the nodes' final reports (a's, b's,
/// r's) and that SA's runs.
#[cfg(test)]
fn stop_a_b_a(mut rig: Rig, spi: u32) -> ([NodeReport; 3], Vec<capture::Run>) {
    let reports = [
        rig.a.take().expect("a runs").stop(),
        rig.b.stop(),
        rig.r.stop(),
    ];
    let frames = rig.fabric.wan_capture.lock().unwrap().clone();
    let mac = |c: &espgate_dataplane::NodeConfig| c.port(Role::Unprotected).and_then(|p| p.mac);
    let pair = [mac(&rig.ca), mac(&rig.cb)].map(|m| m.expect("demo ports have MACs"));
    let esp = capture::uses(&capture::esp_frames(&frames).unwrap(), pair);
    assert!(capture::reused(&esp).is_empty(), "no (SPI, seq) twice");
    let runs = capture::runs(&esp, spi);
    let senders: Vec<_> = runs.iter().map(|r| Some(r.sender)).collect();
    assert_eq!(
        senders,
        vec![mac(&rig.ca), mac(&rig.cb), mac(&rig.ca)],
        "a, b, a: {runs:?}"
    );
    (reports, runs)
}

fn sa_drops(r: &NodeReport, spi: u32, inbound: bool, why: &[DropReason]) -> u64 {
    let m = if inbound { r.inbound() } else { r.outbound() };
    m.get(&spi)
        .map_or(0, |(c, _)| why.iter().map(|w| c.drops.get(*w)).sum())
}

/// Refused as seen before: replayed, or below the window.
const REPLAY: &[DropReason] = &[DropReason::Replayed, DropReason::TooOld];

/// Runs the demo; the capture goes to `out_dir`.
pub fn run(backend: Backend, out_dir: &Path) -> anyhow::Result<()> {
    outln!(
        "espgate demo: an active-active pair and a remote gateway, in memory, crypto backend {backend}"
    )?;
    outln!(
        "  h1 10.1.0.10 -+- lan -+- a [10.1.0.1 | 192.0.2.1] -+- wan - r 192.0.2.100 - h3 10.3.0.10"
    )?;
    outln!("  h2 10.1.0.20 -+       +- b [10.1.0.2 | 192.0.2.2] -+")?;
    outln!(
        "  a runs SAs 0x1000/0x1001 (h1's traffic), b runs 0x2000/0x2001 (h2's); each mirrors its"
    )?;
    outln!("  SAs to the other over their own link (interval 256, quantity 1024, leases on)\n")?;
    // Taken before the start: under load a pair can synchronise before
    // `Rig::start` returns, and an event before `t_start` is not looked at.
    let t_start = unix_ms();
    let mut rig = Rig::start(backend)?;
    let (mut la, mut lb) = (Log::default(), Log::default());
    let a = rig.a.as_ref().context("a runs")?;
    wait_for(
        "a's bulk sync",
        a,
        &mut la,
        |k| matches!(k, NodeEventKind::Synced { .. }),
        t_start,
    )?;
    wait_for(
        "b's bulk sync",
        &rig.b,
        &mut lb,
        |k| matches!(k, NodeEventKind::Synced { .. }),
        t_start,
    )?;
    outln!(
        "1. start: both nodes heard each other and finished the bulk sync {} ms after they started",
        unix_ms() - t_start
    )?;
    // Both ways: in strict mode a node that cannot know whether an earlier
    // life of it accepted the first inbound_interval packets refuses them.
    let warm = espgate_dataplane::testbed::warm_up(&mut rig.h1, &mut rig.h3, 9)
        && espgate_dataplane::testbed::warm_up(&mut rig.h2, &mut rig.h3, 9)
        && espgate_dataplane::testbed::warm_up(&mut rig.h3, &mut rig.h1, 9)
        && espgate_dataplane::testbed::warm_up(&mut rig.h3, &mut rig.h2, 9);
    if !warm {
        bail!("no datagram crossed the tunnels during warm-up");
    }

    let mut traffic = Traffic::default();
    let t_run = unix_ms();
    traffic.run(&mut rig, PHASE);
    let (s1, e1) = traffic.h1.count(t_run, unix_ms());
    let (s2, e2) = traffic.h2.count(t_run, unix_ms());
    outln!(
        "2. traffic, 1 datagram/ms per host, echoed by h3: h1 {e1}/{s1} echoes (through a), h2 {e2}/{s2} (through b)"
    )?;

    let t_kill = unix_ms();
    let report_a1 = rig.a.take().context("a runs")?.stop();
    outln!("3. node a killed (its threads stopped mid-traffic)")?;
    traffic.run(&mut rig, FENCE_AFTER);
    // The host's part: it finds a down (as `espgate host` does when a's
    // control socket is gone) and fences it, which lifts b's leases.
    let (tx, answer) = std::sync::mpsc::channel();
    if !rig.b.order(Order::Fence(tx)) {
        bail!("b took no fence order");
    }
    answer
        .recv_timeout(PATIENCE)
        .context("b's mirror did not answer the fence")?
        .map_err(|why| anyhow::anyhow!("b refused the fence: {why}"))?;
    let t_fenced = unix_ms();
    traffic.run(&mut rig, PHASE - FENCE_AFTER);
    let t_dead = wait_for(
        "b declares a dead",
        &rig.b,
        &mut lb,
        |k| *k == NodeEventKind::PeerDead,
        t_kill,
    )?;
    let t_took = wait_for(
        "b takes over",
        &rig.b,
        &mut lb,
        |k| matches!(k, NodeEventKind::TookOver { .. }),
        t_kill,
    )?;
    let Some((t_back, lost)) = traffic.h1.resumed_after(t_kill) else {
        bail!("h1's traffic never resumed through b");
    };
    let beat = rig
        .cb
        .mirror
        .as_ref()
        .map(|m| m.protocol)
        .context("b mirrors")?;
    outln!(
        "   b declared a dead after {} ms (heartbeat {} ms x {}), took a's SAs and addresses over at {} ms,",
        t_dead - t_kill,
        beat.heartbeat_ms,
        beat.dead_after,
        t_took - t_kill
    )?;
    outln!(
        "   announced them by gratuitous ARP; h1's first echo through b came {} ms after the kill; {lost} datagrams lost in the gap",
        t_back - t_kill
    )?;
    outln!(
        "   the host fenced a {} ms after the kill: b's SAs moved past anything a could have used unheard and run without leases",
        t_fenced - t_kill
    )?;

    let t_restart = unix_ms();
    rig.restart_a()?;
    let a = rig.a.as_ref().context("a runs")?;
    let t_sync = wait_for(
        "a's bulk sync after restart",
        a,
        &mut la,
        |k| matches!(k, NodeEventKind::Synced { .. }),
        t_restart,
    )?;
    outln!(
        "4. node a restarted with its memory gone (its marks on disk): bulk sync from b done in {} ms",
        t_sync - t_restart
    )?;
    traffic.run(&mut rig, PHASE);
    let t_handed = wait_for(
        "b hands back",
        &rig.b,
        &mut lb,
        |k| matches!(k, NodeEventKind::HandedBack { .. }),
        t_restart,
    )?;
    let t_active = wait_for(
        "a runs its SAs again",
        rig.a.as_ref().context("a runs")?,
        &mut la,
        |k| matches!(k, NodeEventKind::Activated { spi: 0x1000, .. }),
        t_handed,
    )?;
    outln!(
        "   b handed a's SAs back {} ms after the restart (failback delay 500 ms); a runs them since {} ms",
        t_handed - t_restart,
        t_active - t_restart
    )?;
    traffic.run(&mut rig, PHASE);
    traffic.drain(&mut rig);
    let t_end = unix_ms();

    let report_a2 = rig.a.take().context("a runs")?.stop();
    let report_b = rig.b.stop();
    let report_r = rig.r.stop();
    let frames = rig
        .fabric
        .wan_capture
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let wan_mac = |c: &espgate_dataplane::NodeConfig| {
        c.port(Role::Unprotected)
            .and_then(|p| p.mac)
            .context("demo ports have MACs")
    };
    let esp = capture::uses(
        &capture::esp_frames(&frames)?,
        [wan_mac(&rig.ca)?, wan_mac(&rig.cb)?],
    );
    let reuse = capture::reused(&esp);

    let b_mac = rig.cb.port(Role::Unprotected).and_then(|p| p.mac);
    let first_by_b = esp
        .iter()
        .find(|f| f.spi == 0x1000 && Some(f.sender) == b_mac)
        .map(|f| f.ns / 1_000_000);
    if let Some(t) = first_by_b {
        outln!(
            "   (the first ESP packet of a's SA 0x1000 that b sent left {} ms after the kill)",
            t.saturating_sub(t_kill)
        )?;
    }
    let (s, e) = traffic.h1.count(t_active, t_end);
    outln!("5. after failback: h1 {e}/{s} echoes (through a again)")?;
    let (hs1, he1) = traffic.h1.count(0, t_end);
    let (hs2, he2) = traffic.h2.count(0, t_end);
    outln!(
        "   whole run: h1 {he1}/{hs1} echoes, h2 {he2}/{hs2}; corrupted echoes: {}",
        traffic.h1.corrupt + traffic.h2.corrupt
    )?;

    outln!("\nsequence numbers on the ESP network, per SA, as runs by sender:")?;
    for spi in [0x1000u32, 0x1001, 0x2000, 0x2001] {
        let runs: Vec<String> = capture::runs(&esp, spi)
            .iter()
            .map(|r| {
                format!(
                    "{} {}..{} ({})",
                    name_of(r.sender, &rig.ca, &rig.cb),
                    r.first,
                    r.last,
                    r.frames
                )
            })
            .collect();
        outln!("  {spi:#06x}: {}", runs.join(", "))?;
    }
    outln!(
        "  {} ESP frames, {} distinct (SPI, sequence number) pairs, {} used twice",
        esp.len(),
        esp.len() - reuse.iter().map(|(_, n)| n - 1).sum::<usize>(),
        reuse.len()
    )?;

    let secs = (t_end - t_start) as f64 / 1e3;
    let mirror = |r: &NodeReport| r.mirror.as_ref().map(|m| m.stats).unwrap_or_default();
    let (ma1, ma2, mb) = (mirror(&report_a1), mirror(&report_a2), mirror(&report_b));
    let frames_sent = ma1.frames_sent + ma2.frames_sent + mb.frames_sent;
    let bytes_sent = ma1.bytes_sent + ma2.bytes_sent + mb.bytes_sent;
    outln!(
        "\nmirror link: {frames_sent} frames, {bytes_sent} bytes in {secs:.1} s: {:.0} frames/s, {:.0} bytes/s (heartbeats every 10 ms, states, acks, bulk sync)",
        frames_sent as f64 / secs,
        bytes_sent as f64 / secs
    )?;
    let stalls: u64 = [&report_a1, &report_a2, &report_b]
        .iter()
        .flat_map(|r| {
            [0x1000, 0x2000].map(|spi| sa_drops(r, spi, false, &[DropReason::LeaseStall]))
        })
        .sum();
    let replay_b = sa_drops(&report_b, 0x1001, true, REPLAY);
    let replay_a = sa_drops(&report_a2, 0x1001, true, REPLAY);
    let replay_r: u64 = [0x1000, 0x2000]
        .iter()
        .map(|s| sa_drops(&report_r, *s, true, REPLAY))
        .sum();
    let unfenced: u64 = [0x1001, 0x2001]
        .map(|spi| sa_drops(&report_b, spi, true, &[DropReason::LeaseStall]))
        .iter()
        .sum();
    outln!("lease stalls: {stalls}; replay drops at r: {replay_r}")?;
    outln!(
        "fresh packets refused as replays when a's inbound SA moved (strict mode: at the takeover what a could have accepted unreported, some inbound_ahead_ms of traffic; none at the fence, with inbound_grace 0; none at the exact failback): at b {replay_b}, at a after the failback {replay_a}"
    )?;
    outln!(
        "inbound packets b held and dropped between the takeover and the fence (inbound_grace 0: nothing accepted that a could not acknowledge, until the host's fence): {unfenced}"
    )?;

    outln!()?;
    for r in [&report_a1, &report_b, &report_a2, &report_r] {
        crate::report::print(r)?;
    }
    fs::create_dir_all(out_dir).with_context(|| out_dir.display().to_string())?;
    let pcap = out_dir.join("wan.pcap");
    capture::write_pcap(&frames, &pcap)?;
    outln!(
        "\ncapture of the ESP network: {} (tshark decrypts it with the keys in conf/demo/r.yaml; see README)",
        pcap.display()
    )?;

    let mut wrong = Vec::new();
    if !reuse.is_empty() {
        wrong.push(format!("{} (SPI, sequence) pairs used twice", reuse.len()));
    }
    if replay_b > 64 || replay_a > 0 || replay_r > 0 {
        wrong.push("replay drops beyond the bound".to_string());
    }
    if e == 0 {
        wrong.push("no traffic through a after failback".to_string());
    }
    if traffic.h1.corrupt + traffic.h2.corrupt > 0 {
        wrong.push("corrupted echoes".to_string());
    }
    if !wrong.is_empty() {
        bail!("the demo did not come out clean: {}", wrong.join("; "));
    }
    outln!(
        "\nzero reuse: no (SPI, sequence number) pair, so no AES-GCM nonce, appeared twice across the takeover and the failback"
    )?;
    Ok(())
}
