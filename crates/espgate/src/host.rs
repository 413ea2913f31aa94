//! `espgate host --config host.yaml`: the host processor of a pair. It
//! pushes each node its configuration (SA keys included: keys reach the
//! nodes only this way, never over the mirror link), polls both nodes'
//! health on their control sockets (each from its own thread, so a node
//! that hangs delays nothing about the other), and when one fails (it
//! stops answering, and its peer no longer hears it on the mirror link:
//! a hung control socket on a node that still runs is told, not failed
//! over) it reroutes that
//! node's flows (its `on_failure` commands), orders the survivor to take
//! the failed node's SAs over, and fences the failed node so the survivor
//! runs without leases. When the failed node is back and synchronised, the
//! host hands the SAs back and runs `on_return`. It keeps no state of its
//! own: started while a node holds its peer's SAs (a failure it did not
//! see, or one from before it restarted), it does the same once the peer
//! is up and synchronised.
//!
//! In the test topology rerouting is a route change on the plaintext
//! side. A real deployment moves the flows the way its network does:
//! VRRP/keepalived moving a virtual address, an ECMP next hop removed, a
//! BGP route withdrawn, or a switch port shut; the host's commands call
//! whatever does that.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use espgate_control::answer::{AnswerError, Done, SaExport, Status, read};
use espgate_control::{HostConfig, ManagedNode};
use espgate_dataplane::config::Takeover;
use espgate_dataplane::mirror_task::unix_ms;
use serde_json::json;

use crate::control_socket::{self, Call, ask};
use crate::fanout::Fanout;

/// What the host knows of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Not heard yet.
    Unknown,
    /// Answering.
    Up,
    /// Declared failed; flows rerouted.
    Failed,
    /// Failed, and answering again in a new life that has not synchronised
    /// yet.
    Returning,
    /// Failed, its peer had it fenced, and it answers again in that same
    /// life: it waits for a restart.
    Unrestarted,
}

/// The host's view of one node, apart from how to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeState {
    health: Health,
    /// Polls unanswered in a row.
    missed: u32,
    /// Its life as it last answered: its mirror epoch, new and larger at
    /// every start (a clock that cannot stand still while the node is
    /// frozen, as its uptime would across a suspended or paused machine).
    life: Option<u64>,
    /// The life the host had the peer fence, while it may still run. The
    /// peer runs without leases once it fenced, and should the peer die
    /// before this life heard how far it went, this life could not bound
    /// that run: a fenced node must restart before it rejoins. Until then
    /// it neither takes the peer's SAs over nor gets its own handed back.
    fenced_life: Option<u64>,
    /// Back and synchronised, and the peer has not handed its SAs back
    /// yet (it refused: its view of the node lags the node's own, or it
    /// did not answer): ordered again at the next poll that finds the
    /// node synchronised.
    hand_back_owed: bool,
    /// Whether it heard its peer on the mirror link, as it last answered.
    hears_peer: bool,
    /// Whether its packet flow had failed, as the host last acted on it:
    /// set while its SAs run on the peer for that reason, until the peer
    /// handed them back.
    flow_failed: bool,
}

/// What the host does after one poll of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing.
    Nothing,
    /// The node is up for the first time.
    Up,
    /// The node failed: run its `on_failure` commands, and have the peer
    /// take its SAs over and fence it.
    Failed,
    /// The node failed, and the peer may not take its SAs over (it is not
    /// up, or is a fenced life that did not restart): run its
    /// `on_failure` commands only.
    FailedAlone,
    /// The node is back in a new life and synchronised: the peer hands
    /// its SAs back; run its `on_return` commands.
    Back,
    /// The node answers in the life its peer fenced.
    BackUnrestarted,
    /// The node stopped answering, but its peer still hears it on the
    /// mirror link: its control socket hangs, not the node. Told once; it
    /// fails once the peer no longer hears it either.
    Unreachable,
    /// The node's packet flow failed: it handed its SAs to the peer
    /// itself; told.
    FlowFailed,
    /// The node's packet flow works again (or works still, its SAs not
    /// back yet): the peer hands them back.
    FlowWorks,
}

impl NodeState {
    fn new() -> Self {
        NodeState {
            health: Health::Unknown,
            missed: 0,
            life: None,
            fenced_life: None,
            hand_back_owed: false,
            hears_peer: false,
            flow_failed: false,
        }
    }
}

/// The peer did not hand the SAs back at a `FlowWorks` step (it still sees
/// the node's flow failed, its mirror frames not there yet, or did not
/// answer): ordered again at the next poll.
fn flow_back_not_done(w: &mut NodeState) {
    w.flow_failed = true;
}

/// The peer did not carry out the fence ordered at a `Failed` step (it was
/// unreachable, or refused): the node's life is fenced only as far as it
/// was before (`before`), or it would wait for a restart for good.
fn fence_not_done(w: &mut NodeState, before: Option<u64>) {
    w.fenced_life = before;
}

/// The peer did not hand node `w`'s SAs back at a `Back` step (it refused:
/// its view of the node lags the node's own, or it did not answer): the
/// next poll that finds the node synchronised orders it again. The node
/// stays up meanwhile, so a failure of the peer is still taken over.
fn hand_back_not_done(w: &mut NodeState) {
    w.hand_back_owed = true;
}

/// What a node's status says, as far as the host goes by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    /// Its life (none: it waits for its configuration).
    life: Option<u64>,
    /// Whether it has synchronised with its peer.
    synced: bool,
    /// SAs it runs whose home is its peer.
    holding: usize,
    /// Whether it hears its peer on the mirror link.
    peer_alive: bool,
    /// Whether its packet flow has failed.
    flow_failed: bool,
}

impl From<&Status> for Answer {
    fn from(s: &Status) -> Self {
        match s {
            Status::Running { pair: Some(p), .. } => Answer {
                life: Some(p.epoch),
                synced: p.synced,
                holding: p.holding,
                peer_alive: p.peer_alive,
                flow_failed: p.flow_failed,
            },
            Status::Running { pair: None, .. } | Status::WaitingConfig => Answer {
                life: None,
                synced: false,
                holding: 0,
                peer_alive: false,
                flow_failed: false,
            },
        }
    }
}

/// One poll of node `i`, its answer (`None`: no answer): what the host
/// does. A node that answered since it was last declared failed is
/// declared failed again after `dead_after` unanswered polls (a fence
/// ends when the fenced node is heard, so one that answered and went
/// silent is fenced anew), unless its peer, up and answering, says it
/// still hears it on the mirror link: then it runs, and only its control
/// socket is lost (told once, at the `dead_after`-th poll). A node first
/// heard holding its peer's SAs (the host restarted, or started after a
/// failure it did not see) owes them back: the peer, once up and
/// synchronised, gets them with its `on_return`, as after a failure the
/// host saw.
fn step(nodes: &mut [NodeState; 2], i: usize, answer: Option<Answer>, dead_after: u32) -> Step {
    let other = nodes[1 - i];
    let w = &mut nodes[i];
    let Some(Answer {
        life,
        synced,
        holding,
        peer_alive,
        flow_failed,
    }) = answer
    else {
        w.missed += 1;
        let answering = matches!(
            w.health,
            Health::Up | Health::Returning | Health::Unrestarted
        );
        if !answering || w.missed < dead_after {
            return Step::Nothing;
        }
        if other.health == Health::Up && other.missed == 0 && other.hears_peer {
            return if w.missed == dead_after {
                Step::Unreachable
            } else {
                Step::Nothing
            };
        }
        w.health = Health::Failed;
        w.hand_back_owed = false;
        // A fence needs the life it fences: a node whose life the host
        // never learned (it failed right after its configuration) is not
        // fenced, and its SAs wait for it.
        if other.health == Health::Up && other.fenced_life.is_none() && w.life.is_some() {
            w.fenced_life = w.fenced_life.or(w.life);
            return Step::Failed;
        }
        return Step::FailedAlone;
    };
    w.missed = 0;
    w.hears_peer = peer_alive;
    if w.health == Health::Unknown {
        w.health = Health::Up;
        w.life = life;
        if holding > 0 {
            nodes[1 - i].hand_back_owed = true;
        }
        return Step::Up;
    }
    let Some(life) = life else {
        // A life the host does not know yet (waiting for its
        // configuration): not the one it knew.
        w.life = None;
        return Step::Nothing;
    };
    w.life = Some(life);
    if w.fenced_life.is_some_and(|f| f != life) {
        // Started since its fence: a new life.
        w.fenced_life = None;
    }
    match w.health {
        Health::Failed | Health::Returning if w.fenced_life.is_some() => {
            w.health = Health::Unrestarted;
            Step::BackUnrestarted
        }
        Health::Failed | Health::Returning | Health::Unrestarted
            if w.fenced_life.is_none() && synced =>
        {
            w.health = Health::Up;
            Step::Back
        }
        Health::Failed | Health::Unrestarted if w.fenced_life.is_none() => {
            w.health = Health::Returning;
            Step::Nothing
        }
        Health::Up if w.hand_back_owed && synced => {
            w.hand_back_owed = false;
            Step::Back
        }
        Health::Up if flow_failed != w.flow_failed => {
            w.flow_failed = flow_failed;
            if flow_failed {
                Step::FlowFailed
            } else {
                Step::FlowWorks
            }
        }
        _ => Step::Nothing,
    }
}

/// How recently a node must have answered the host for its unanswered
/// polls, while it carries out a request of the host's socket, not to
/// count (see [`Fanout::busy_answering`]): the control socket's timeout
/// (5 s, within which a node answers a request or counts as missing it)
/// and a second more. A node gives one change up to 6 s of its own (a new
/// SA's first marks made durable, the mirror task, the workers: 2 s each),
/// and two nodes slow on the same change were failed and fenced at 1 s
/// (reader29's find 1); a node that froze under a steady stream of
/// requests is failed this long after its last answer.
const BUSY_ANSWERING: Duration = Duration::from_secs(6);

/// The warning for the nodes whose files say `takeover: auto`: they do
/// not wait for the host's order (docs/configuration.md, "`takeover` and
/// `failback` under `espgate host`").
fn auto_takeover(nodes: &[ManagedNode]) -> Option<String> {
    let auto: Vec<&str> = nodes
        .iter()
        .filter(|n| n.takeover == Takeover::Auto)
        .map(|n| n.name.as_str())
        .collect();
    (!auto.is_empty()).then(|| {
        format!(
            "takeover: auto for {}: a node takes its peer's SAs over as soon as it stops \
             hearing it on the mirror link, before this host orders it and even while the \
             peer runs (a cut mirror link); takeover: manual leaves it to the host",
            auto.join(" and ")
        )
    })
}

/// A line of the host's log, on standard output. Its reader gone (`espgate
/// host | head`), the host goes on without a log: its orders keep the pair
/// running, its log does not.
pub(crate) fn say(what: &str) {
    let _ = outln!("host t={} {what}", unix_ms());
}

fn run_commands(cmds: &[Vec<String>]) {
    for c in cmds {
        let r = Command::new(&c[0]).args(&c[1..]).status();
        match r {
            Ok(s) if s.success() => say(&format!("ran {}", c.join(" "))),
            Ok(s) => say(&format!("command {} failed: {s}", c.join(" "))),
            Err(e) => say(&format!("command {} failed: {e}", c.join(" "))),
        }
    }
}

/// Orders `op` of a node; returns whether it was carried out.
fn order(node: &ManagedNode, op: &str) -> bool {
    let answer = match ask(&node.control, &json!({ "op": op })) {
        Ok(a) => a,
        Err(e) => {
            say(&format!("{} {op}: {e:#}", node.name));
            return false;
        }
    };
    match read::<Done>(op, &answer) {
        Ok(Done {}) => {
            say(&format!("{} {op}: ok", node.name));
            true
        }
        Err(AnswerError::Refused(why)) => {
            say(&format!("{} {op}: refused: {why}", node.name));
            false
        }
        Err(e) => {
            say(&format!("{} {op}: {e}", node.name));
            false
        }
    }
}

/// A node's status; `None` when it does not answer, or answers what the
/// host cannot read (said: it tells no life, so it counts as silent).
fn status(w: &ManagedNode) -> Option<Status> {
    let answer = ask(&w.control, &json!({ "op": "status" })).ok()?;
    read::<Status>("status", &answer)
        .map_err(|e| say(&format!("{}: {e}", w.name)))
        .ok()
}

/// The configuration node `w` gets: its file, with the SAs and rules its
/// peer runs now (a rekey, an SA added at run time, or one an IKE daemon
/// installed since the file was written would otherwise be missing: the
/// peer would hand it back to a node that does not know it); its file as
/// it is when no peer answers (connecting fails) or the peer waits for
/// its configuration too. `None` when the peer answers but does not give
/// its SAs (busy, its connections taken, a refusal): configured from its
/// file, the node would lack SAs the peer runs, and the SAs it missed are
/// not sent to a new life (see [`crate::fanout::Held::configured`]), so it
/// waits for the next poll.
fn config_for(w: &ManagedNode, peer: &ManagedNode) -> Option<String> {
    let answer = match ask(&peer.control, &json!({ "op": "sa_export" })) {
        Ok(a) => a,
        Err(e) if unreachable(&e) => return Some(w.config.clone()),
        Err(e) => {
            say(&format!(
                "{} waits: {} did not give its SAs: {e:#}",
                w.name, peer.name
            ));
            return None;
        }
    };
    let yaml = match read::<SaExport>("sa_export", &answer) {
        Ok(SaExport { yaml }) => yaml,
        Err(AnswerError::Refused(why)) if why == crate::run::NOT_CONFIGURED => {
            return Some(w.config.clone());
        }
        Err(e) => {
            say(&format!(
                "{} waits: {} did not give its SAs: {e}",
                w.name, peer.name
            ));
            return None;
        }
    };
    match espgate_control::export::with_running_sas(&w.config, &yaml) {
        Ok(config) => {
            say(&format!("{} gets the SAs {} runs", w.name, peer.name));
            Some(config)
        }
        Err(e) => {
            say(&format!("{}: {e}: its file's SAs go", w.name));
            Some(w.config.clone())
        }
    }
}

/// Whether a control request failed because nothing listens on the
/// socket (the node is down), not because the node was slow to answer.
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        })
}

/// One poll of node `i`: configure it if it waits (see [`config_for`]),
/// with no request of the host's socket fanned out between reading its
/// peer's SAs and configuring it; or send it the requests it missed
/// while it did not answer. Returns its status.
fn poll(w: &ManagedNode, peer: &ManagedNode, i: usize, fanout: &Fanout) -> Option<Status> {
    let status = self::status(w)?;
    fanout.heard_from(i);
    if status != Status::WaitingConfig {
        fanout.catch_up(i);
        return Some(status);
    }
    {
        let mut held = fanout.hold();
        let config = config_for(w, peer)?;
        // Settled before it is sent: a node may carry its configuration
        // out and its answer not come (reader29's find 5: the peer was
        // then sent an SA only the node's ended life ran).
        held.configured(i);
        let a = ask(&w.control, &json!({ "op": "configure", "yaml": config })).ok()?;
        match read::<Done>("configure", &a) {
            Ok(Done {}) => {}
            Err(AnswerError::Refused(why)) => {
                say(&format!("{} refused its configuration: {why}", w.name));
                return None;
            }
            Err(e) => {
                say(&format!("{}: {e}", w.name));
                return None;
            }
        }
    }
    say(&format!("{} configured", w.name));
    // Its life, known at once: a failure before the next poll is then a
    // failure of that life.
    self::status(w).or(Some(status))
}

/// Polls node `i` every `poll_ms` until `stop`, each answer (`None`: none,
/// or one the host cannot read) sent on `tx`. A node that hangs holds up
/// only its own poller, for as long as the control socket's timeout.
fn poller(
    w: &ManagedNode,
    peer: &ManagedNode,
    i: usize,
    poll_ms: u64,
    stop: &AtomicBool,
    fanout: &Fanout,
    tx: &mpsc::Sender<(usize, Option<Answer>)>,
) {
    while !stop.load(Ordering::Relaxed) {
        let answer = poll(w, peer, i, fanout).as_ref().map(Answer::from);
        if tx.send((i, answer)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(poll_ms));
    }
}

/// Runs the host until SIGINT or SIGTERM (or `duration`). Every `poll_ms`
/// it takes each node's latest answer since the last time; a node whose
/// poller brought none (it hangs) missed that poll.
/// With `control`, it also listens there for an IKE daemon's requests and
/// fans them out to both nodes (see [`crate::fanout`]).
pub fn run(path: &Path, duration: Option<Duration>, control: Option<&Path>) -> anyhow::Result<()> {
    let cfg: HostConfig = espgate_control::load_host_file(path)?;
    let fanout = Fanout::new(&cfg.nodes);
    let (calls_tx, calls) = mpsc::channel::<Call>();
    let _socket = control
        .map(|c| control_socket::listen(c, calls_tx))
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let nodes = &cfg.nodes;
    let mut states = [NodeState::new(); 2];
    say(&format!(
        "managing {} and {}, polling every {} ms",
        nodes[0].name, nodes[1].name, cfg.poll_ms
    ));
    if let Some(warning) = auto_takeover(nodes) {
        tracing::warn!("{warning}");
    }
    let started = Instant::now();
    let period = Duration::from_millis(cfg.poll_ms);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let fanout = &fanout;
        for (i, w) in nodes.iter().enumerate() {
            let (stop, tx, peer) = (&*stop, tx.clone(), &nodes[1 - i]);
            s.spawn(move || poller(w, peer, i, cfg.poll_ms, stop, fanout, &tx));
        }
        if let Some(c) = control {
            say(&format!("IKE requests on {}", c.display()));
            let stop = &*stop;
            for i in 0..2 {
                s.spawn(move || fanout.poll_events(i, stop));
            }
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match calls.recv_timeout(period) {
                        Ok((req, back)) => fanout.handle_request(req, back),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        }
        let mut tick = Instant::now() + period;
        let mut latest: [Option<Option<Answer>>; 2] = [None, None];
        while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
            match rx.recv_timeout(tick.saturating_duration_since(Instant::now())) {
                Ok((i, answer)) => {
                    latest[i] = Some(answer);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            tick += period;
            for (i, answer) in latest.iter_mut().enumerate() {
                let answer = answer.take().flatten();
                if answer.is_none() && fanout.busy_answering(i, BUSY_ANSWERING) {
                    // Busy with the IKE requests of the host's, and
                    // answering them: no news.
                    continue;
                }
                act(nodes, &mut states, i, answer, cfg.dead_after);
                fanout.set_up(i, states[i].health == Health::Up);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// Steps node `i` with its answer and carries out what that decides.
fn act(
    nodes: &[ManagedNode],
    states: &mut [NodeState; 2],
    i: usize,
    answer: Option<Answer>,
    dead_after: u32,
) {
    let fenced_before = states[i].fenced_life;
    let what = step(states, i, answer, dead_after);
    let (w, peer) = (&nodes[i], &nodes[1 - i]);
    let name = &w.name;
    match what {
        Step::Nothing => {}
        Step::Up => say(&format!("{name} up")),
        Step::Failed | Step::FailedAlone => {
            say(&format!(
                "{name} failed ({} polls unanswered)",
                states[i].missed
            ));
            run_commands(&w.on_failure);
            if what == Step::Failed {
                order(peer, "take_over");
                if !order(peer, "fence") {
                    fence_not_done(&mut states[i], fenced_before);
                }
            } else {
                say(&format!(
                    "{} does not take {name}'s SAs over: it is down, or was fenced \
                     and has not restarted since",
                    peer.name
                ));
            }
        }
        Step::Back => {
            say(&format!("{name} back and synchronised"));
            if order(peer, "hand_back") {
                run_commands(&w.on_return);
            } else {
                // The peer does not see it synchronised yet, or did
                // not answer: asked again at the next poll, and the
                // flows stay where the SAs run.
                hand_back_not_done(&mut states[i]);
            }
        }
        Step::BackUnrestarted => say(&format!(
            "{name} answers in the life {} fenced: it gets nothing back until it \
             restarts (it cannot know how far {} ran without leases)",
            peer.name, peer.name
        )),
        Step::FlowFailed => say(&format!(
            "{name}'s packet flow failed: it handed its SAs to {}",
            peer.name
        )),
        Step::FlowWorks => {
            say(&format!(
                "{name}'s packet flow works again: {} hands its SAs back",
                peer.name
            ));
            if !order(peer, "hand_back") {
                flow_back_not_done(&mut states[i]);
            }
        }
        Step::Unreachable => say(&format!(
            "{name} does not answer on its control socket, but {} hears it on the mirror \
             link: not failed over (check {})",
            peer.name,
            w.control.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD_AFTER: u32 = 3;
    /// The lives (mirror epochs) of the nodes' first starts, and a's next.
    const A1: u64 = 1_000;
    const B1: u64 = 2_000;
    const A2: u64 = 3_000;

    /// Polls node `i`, silent, until the host decides something.
    fn fail(nodes: &mut [NodeState; 2], i: usize) -> Step {
        for _ in 0..100 {
            let s = step(nodes, i, None, DEAD_AFTER);
            if s != Step::Nothing {
                return s;
            }
        }
        Step::Nothing
    }

    fn answer(nodes: &mut [NodeState; 2], i: usize, life: u64, synced: bool) -> Step {
        let a = Answer {
            life: Some(life),
            synced,
            holding: 0,
            peer_alive: false,
            flow_failed: false,
        };
        step(nodes, i, Some(a), DEAD_AFTER)
    }

    /// A node's answer while it waits for its configuration.
    const WAITING: Answer = Answer {
        life: None,
        synced: false,
        holding: 0,
        peer_alive: false,
        flow_failed: false,
    };

    /// b's answer, in its first life, synchronised and hearing a.
    const B_HEARS_A: Answer = Answer {
        life: Some(B1),
        synced: true,
        holding: 0,
        peer_alive: true,
        flow_failed: false,
    };

    /// A node whose packet flow fails hands its SAs to its peer itself;
    /// once its flow works again the host has the peer hand them back
    /// (under `failback: manual` nobody else does), and orders it again
    /// at the next poll if the peer refused (it still sees the flow
    /// failed: the node's mirror frames saying otherwise not there yet).
    #[test]
    fn a_node_whose_flow_failed_gets_its_sas_back_once_it_works() {
        let mut nodes = up_pair();
        let flow = |failed| Answer {
            life: Some(A1),
            synced: true,
            holding: 0,
            peer_alive: true,
            flow_failed: failed,
        };
        assert_eq!(
            step(&mut nodes, 0, Some(flow(true)), DEAD_AFTER),
            Step::FlowFailed
        );
        assert_eq!(
            step(&mut nodes, 0, Some(flow(true)), DEAD_AFTER),
            Step::Nothing
        );
        assert_eq!(
            step(&mut nodes, 0, Some(flow(false)), DEAD_AFTER),
            Step::FlowWorks
        );
        flow_back_not_done(&mut nodes[0]);
        assert_eq!(
            step(&mut nodes, 0, Some(flow(false)), DEAD_AFTER),
            Step::FlowWorks,
            "the refused hand-back is ordered again"
        );
        assert_eq!(
            step(&mut nodes, 0, Some(flow(false)), DEAD_AFTER),
            Step::Nothing
        );
    }

    /// A node whose control socket stops answering while its peer still
    /// hears it on the mirror link runs: told once, not failed over (a
    /// takeover and a fence would move its flows for a hung socket). Once
    /// the peer no longer hears it either, it fails as any other.
    #[test]
    fn a_node_silent_to_the_host_but_heard_by_its_peer_is_not_failed_over() {
        let mut nodes = up_pair();
        let hears = B_HEARS_A;
        let mut said = Vec::new();
        for _ in 0..3 * DEAD_AFTER {
            said.push(step(&mut nodes, 0, None, DEAD_AFTER));
            assert_eq!(step(&mut nodes, 1, Some(hears), DEAD_AFTER), Step::Nothing);
        }
        let told: Vec<&Step> = said.iter().filter(|s| **s != Step::Nothing).collect();
        assert_eq!(told, [&Step::Unreachable], "told once, never failed");
        let deaf = Answer {
            peer_alive: false,
            ..hears
        };
        assert_eq!(step(&mut nodes, 1, Some(deaf), DEAD_AFTER), Step::Nothing);
        assert_eq!(step(&mut nodes, 0, None, DEAD_AFTER), Step::Failed);
    }

    /// What the peer says counts only while the host hears the peer: a
    /// node silent to the host whose peer is silent too fails (the peer's
    /// last word is old news).
    #[test]
    fn a_silent_peers_old_word_keeps_nothing_from_failing() {
        let mut nodes = up_pair();
        assert_eq!(
            step(&mut nodes, 1, Some(B_HEARS_A), DEAD_AFTER),
            Step::Nothing
        );
        assert_eq!(step(&mut nodes, 1, None, DEAD_AFTER), Step::Nothing);
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
    }

    fn up_pair() -> [NodeState; 2] {
        let mut nodes = [NodeState::new(), NodeState::new()];
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::Up);
        assert_eq!(answer(&mut nodes, 1, B1, true), Step::Up);
        nodes
    }

    #[test]
    fn a_failed_node_is_fenced_and_gets_its_sas_back_once_restarted_and_synchronised() {
        let mut nodes = up_pair();
        assert_eq!(
            fail(&mut nodes, 0),
            Step::Failed,
            "b takes a's SAs over and fences it"
        );
        // Restarted: still waiting for its configuration, then running.
        assert_eq!(
            step(&mut nodes, 0, Some(WAITING), DEAD_AFTER),
            Step::Nothing
        );
        assert_eq!(answer(&mut nodes, 0, A2, false), Step::Nothing);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        assert_eq!(nodes[0].fenced_life, None);
    }

    /// Reader14's find 3 under the host: a fenced node that comes back in
    /// the same life (it was frozen, or cut off, not dead) may hold a view
    /// of its peer's SAs older than the peer's unleased run; should the
    /// peer then die, that node must not take the SAs over and be told to
    /// fence (its fence would move them only three steps past what it
    /// knows). It gets nothing back and takes nothing over until it
    /// restarts. A life is told by its mirror epoch, not its uptime
    /// (reader15's find 3: a monotonic uptime stands still while the
    /// machine is suspended or its VM paused, so a frozen life came back
    /// looking younger than its fence).
    #[test]
    fn a_fenced_node_back_in_the_same_life_takes_nothing_over_until_it_restarts() {
        let mut nodes = up_pair();
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::BackUnrestarted);
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::Nothing);
        assert_eq!(
            fail(&mut nodes, 1),
            Step::FailedAlone,
            "a may not take b's SAs over nor fence b"
        );
        // a restarts: a new life, synchronised, gets its SAs back.
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        assert_eq!(nodes[0].fenced_life, None);
    }

    /// Reader15's find 4: a fenced node that answers again (in the same
    /// life, or a new one not yet synchronised) ends its peer's fence (the
    /// peer heard it); if it then goes silent, it is failed and fenced
    /// again, or the peer, holding every SA under leases nobody
    /// acknowledges, would stall for good.
    #[test]
    fn a_fenced_node_that_answers_and_dies_again_is_fenced_again() {
        for life in [A1, A2] {
            let mut nodes = up_pair();
            assert_eq!(fail(&mut nodes, 0), Step::Failed);
            assert_ne!(answer(&mut nodes, 0, life, false), Step::Back);
            assert_eq!(fail(&mut nodes, 0), Step::Failed, "life {life}");
            assert_eq!(nodes[0].fenced_life, Some(life));
        }
    }

    /// A node that fails while its peer is down is fenced by nobody: it
    /// gets its SAs back as soon as it is up and synchronised again.
    #[test]
    fn a_node_failing_alone_is_not_held_as_fenced() {
        let mut nodes = up_pair();
        assert_eq!(fail(&mut nodes, 1), Step::Failed);
        assert_eq!(fail(&mut nodes, 0), Step::FailedAlone);
        assert_eq!(nodes[0].fenced_life, None);
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::Back);
    }

    // ---- reader16 ----

    /// Reader16 find H1 (P1, through reader14's find 3, which the host is
    /// there to rule out): a node whose only answer before it failed was
    /// the status of a node waiting for its configuration (no `pair`, so
    /// no life) is failed and fenced with `fenced_life` None
    /// (`w.fenced_life.or(w.life)`, both None). Frozen (a paused VM, a
    /// cut control link), not dead, it answers again in that same life:
    /// nothing marks it fenced, so it is `Back`, its peer hands its SAs
    /// back, it is `Up`, and should its peer die it takes the peer's SAs
    /// over and has it fenced: the contract "a fenced node must restart
    /// before it rejoins" is broken.
    ///
    /// Steps: the host starts with the nodes; its first poll of a finds it
    /// waiting for its configuration (Up, life None), pushes it; a
    /// synchronises with b within the poll period and runs; a freezes
    /// before the next poll; dead_after polls later a is Failed (b takes
    /// over and fences: unleased); a thaws in life A1, synchronised: Back.
    ///
    /// The fix: the host asks a node's status again right after it
    /// configured it, so it knows the life at once; and a node whose life
    /// it does not know is not fenced (its SAs wait for it: a liveness
    /// cost in the one poll after a configuration, not a reuse).
    #[test]
    fn reader16_a_node_failed_before_its_life_is_known_is_not_fenced() {
        let mut nodes = [NodeState::new(), NodeState::new()];
        // First polls: a waiting for its configuration (and its status
        // after it lost: the host never learns its life).
        assert_eq!(step(&mut nodes, 0, Some(WAITING), DEAD_AFTER), Step::Up);
        assert_eq!(answer(&mut nodes, 1, B1, true), Step::Up);
        // a freezes before the next poll: not fenced (its life unknown), so
        // nothing ran unleased and its SAs wait for it.
        assert_eq!(fail(&mut nodes, 0), Step::FailedAlone);
        assert_eq!(nodes[0].fenced_life, None);
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::Back);
    }

    /// Reader16 find H2 (P1, as H1): the life the host records for a node
    /// is the last one it saw with a `pair`; a restart the host saw only
    /// while the node waited for its configuration leaves the old life
    /// recorded (`let Some(life) = life else { return Step::Nothing }`).
    /// Failed then, the node is fenced under its *previous* life, and when
    /// the life the peer actually fenced answers again, `f != life`
    /// clears the fence as if it had restarted: Back.
    ///
    /// Steps: a (A1) Up; a restarts within dead_after polls (no failure
    /// seen); the host's next poll finds A2 waiting for its configuration
    /// and pushes it; A2 syncs with b and runs, and freezes before the
    /// next poll; Failed, fenced_life A1; b fences A2 (unleased); A2 thaws
    /// and answers in A2, synchronised: Back, and it is Up.
    ///
    /// The fix: a pair-less answer is a new life the host does not know
    /// yet (`life` = None), and a failure with an unknown life is not
    /// fenced, as in H1.
    #[test]
    fn reader16_a_restart_seen_only_while_waiting_for_configuration_is_not_fenced_as_the_old_life()
    {
        let mut nodes = up_pair();
        // a restarted quickly: the host's poll finds A2 waiting for its configuration.
        assert_eq!(
            step(&mut nodes, 0, Some(WAITING), DEAD_AFTER),
            Step::Nothing
        );
        // A2 syncs and runs, then freezes before the host sees its pair:
        // its life unknown, not fenced.
        assert_eq!(fail(&mut nodes, 0), Step::FailedAlone);
        // A2 thaws: nobody ran unleased, it gets its SAs back.
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        assert_eq!(nodes[0].fenced_life, None);
    }

    /// Reader16 find H3 (liveness: "a returning node gets its SAs back",
    /// and its flows: `on_return` never runs). The host records a fence
    /// whether or not it happened (it does not look at the answers of
    /// `take_over` and `fence`). When the host loses both nodes at once (its
    /// own control network fails for dead_after polls, the nodes and
    /// their mirror link fine), the poll order makes a `Failed` (b is
    /// still Up in the host's view) with orders to an unreachable b, then
    /// b `FailedAlone`. Both answer again in their lives: b is Back (a is
    /// told to hand back: it holds nothing), a is `Unrestarted` for good.
    /// a's flows stay on b (its `on_failure` ran) while a's SAs still run
    /// on a (b never took them over): a's traffic is black-holed until
    /// someone restarts a, and b's failure from then on is FailedAlone
    /// (no failover at all). The same when b is reachable but refuses the
    /// fence (it hears a: a was cut off from the host only).
    ///
    /// The fix: a fence the peer did not carry out (`order` says so) leaves
    /// the node's life fenced only as far as it was (`fence_not_done`).
    #[test]
    fn reader16_a_host_blip_on_both_nodes_does_not_strand_a_for_good() {
        let mut nodes = up_pair();
        let mut steps = Vec::new();
        // The host hears neither node for dead_after rounds (a polled first).
        for _ in 0..DEAD_AFTER {
            for i in 0..2 {
                let s = step(&mut nodes, i, None, DEAD_AFTER);
                if s != Step::Nothing {
                    steps.push((i, s));
                }
            }
        }
        assert_eq!(steps, vec![(0, Step::Failed), (1, Step::FailedAlone)]);
        // The fence ordered of b at a's failure did not reach b.
        fence_not_done(&mut nodes[0], None);
        // The control network returns; both nodes are in their lives.
        let mut a_back = false;
        for _ in 0..10 {
            a_back |= answer(&mut nodes, 0, A1, true) == Step::Back;
            answer(&mut nodes, 1, B1, true);
        }
        assert!(
            a_back,
            "a (health {:?}) never gets its flows back, though b was never reached to fence it",
            nodes[0].health
        );
    }

    /// Tried and held: a node fenced, restarted (A2, Returning), silent
    /// again before it synchronised: Failed and fenced anew under A2; A2
    /// thawing is Unrestarted; A3 synchronised is Back. A flapping node is
    /// fenced once per life and gets its SAs back once per new life.
    #[test]
    fn reader16_a_node_fenced_in_two_lives_needs_a_third() {
        let mut nodes = up_pair();
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
        assert_eq!(answer(&mut nodes, 0, A2, false), Step::Nothing);
        assert_eq!(nodes[0].health, Health::Returning);
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
        assert_eq!(nodes[0].fenced_life, Some(A2));
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::BackUnrestarted);
        assert_eq!(fail(&mut nodes, 1), Step::FailedAlone);
        const A3: u64 = 4_000;
        assert_eq!(answer(&mut nodes, 0, A3, true), Step::Back);
    }

    /// Tried and held: both nodes fail (a first, fenced; then b, alone),
    /// both restart; each new life synchronised is Back (each orders the
    /// other's hand-back), and neither is held as fenced.
    #[test]
    fn reader16_both_nodes_failing_and_restarting_both_come_back() {
        let mut nodes = up_pair();
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
        assert_eq!(fail(&mut nodes, 1), Step::FailedAlone);
        assert_eq!(answer(&mut nodes, 0, A2, false), Step::Nothing);
        const B2: u64 = 5_000;
        assert_eq!(answer(&mut nodes, 1, B2, false), Step::Nothing);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        assert_eq!(answer(&mut nodes, 1, B2, true), Step::Back);
        assert_eq!(nodes[0].fenced_life, None);
        assert_eq!(nodes[1].fenced_life, None);
        // And a later failure of either is a takeover with a fence again.
        assert_eq!(fail(&mut nodes, 1), Step::Failed);
    }

    /// A hand-back the peer refused (it does not see the returning node
    /// synchronised yet) is ordered again at the next poll that finds the
    /// node synchronised, and the node's flows move back only then.
    #[test]
    fn a_refused_hand_back_is_ordered_again() {
        let mut nodes = [NodeState::new(), NodeState::new()];
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::Up);
        assert_eq!(answer(&mut nodes, 1, B1, true), Step::Up);
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        hand_back_not_done(&mut nodes[0]);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back, "asked again");
        assert_eq!(
            answer(&mut nodes, 0, A2, true),
            Step::Nothing,
            "done once carried out"
        );
    }

    /// While a hand-back is owed (the holder refused it), the returning
    /// node counts as up: should the holder fail then, the host has the
    /// returning node take over and fences the holder.
    #[test]
    fn a_holder_that_fails_while_it_owes_a_hand_back_is_taken_over() {
        let mut nodes = [NodeState::new(), NodeState::new()];
        assert_eq!(answer(&mut nodes, 0, A1, true), Step::Up);
        assert_eq!(answer(&mut nodes, 1, B1, true), Step::Up);
        assert_eq!(fail(&mut nodes, 0), Step::Failed);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        hand_back_not_done(&mut nodes[0]);
        assert_eq!(fail(&mut nodes, 1), Step::Failed);
    }

    /// The host restarted after a's failure (it had b take a's SAs over
    /// and fence it): it starts with no memory of that. b answers holding
    /// a's SAs, a answers back and synchronised in a new life: a gets
    /// them back with its `on_return`. Before, both were merely "up", no
    /// hand-back was ordered and a's flows stayed routed to b, which
    /// (with `failback: auto`) handed the SAs home and dropped them as
    /// standby.
    #[test]
    fn a_host_restarted_after_a_failover_hands_the_held_sas_back() {
        let mut nodes = [NodeState::new(), NodeState::new()];
        let b = Answer {
            life: Some(B1),
            synced: true,
            holding: 2,
            peer_alive: false,
            flow_failed: false,
        };
        assert_eq!(step(&mut nodes, 1, Some(b), DEAD_AFTER), Step::Up);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Up);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Back);
        assert_eq!(answer(&mut nodes, 0, A2, true), Step::Nothing);
    }

    // ---- reader27 ----

    use crate::fanout::tests::FakeNode;

    /// Reader27 find 2 (failed before, as a tunnel lost for good): a node
    /// in a new life whose peer answered but did not give its SAs (busy,
    /// its connections all taken) was configured from its file, and what
    /// it had missed was dropped: an SA charon installed then ran on the
    /// peer alone, and was gone when the peer failed. The node now waits
    /// for the peer's SAs; its file serves only when no peer answers.
    #[test]
    fn reader27_a_node_whose_peer_does_not_give_its_sas_waits_for_them() {
        let dir = tempfile::Builder::new()
            .prefix("espgate-r27-host-")
            .tempdir()
            .unwrap();
        let node = |name: &str| ManagedNode {
            name: name.into(),
            takeover: Takeover::Manual,
            control: dir.path().join(format!("{name}.sock")),
            config: format!("node: {{ name: {name} }}\n"),
            on_failure: Vec::new(),
            on_return: Vec::new(),
        };
        let nodes = [node("a"), node("b")];
        let fanout = Fanout::new(&nodes);
        let exports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = exports.clone();
        let _a = FakeNode::start(
            &nodes[0].control,
            Arc::new(move |r| {
                if r["op"] != "sa_export" {
                    json!({ "ok": true })
                } else if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    json!({ "ok": false, "error": "the workers did not answer in time" })
                } else {
                    json!({ "ok": true, "yaml": "sas: [{ spi: 0xc0000001, direction: outbound, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: { src: 192.0.2.2, dst: 198.51.100.1 }, home: 2 }]\nspd: []\n" })
                }
            }),
        );
        let configured = Arc::new(AtomicBool::new(false));
        let flag = configured.clone();
        let b = FakeNode::start(
            &nodes[1].control,
            Arc::new(move |r| match r["op"].as_str() {
                Some("status") if !flag.load(Ordering::SeqCst) => {
                    json!({ "ok": true, "state": "waiting_config" })
                }
                Some("status") => {
                    json!({ "ok": true, "state": "running", "node": "b", "uptime_ms": 5,
                    "pair": { "epoch": A2, "peer_alive": true, "synced": true, "holding": 0,
                              "standby": 0, "frames_sent": 1, "frames_received": 1, "rejected": 0,
                              "flow_failed": false } })
                }
                Some("configure") => {
                    flag.store(true, Ordering::SeqCst);
                    json!({ "ok": true })
                }
                _ => json!({ "ok": true }),
            }),
        );
        assert_eq!(poll(&nodes[1], &nodes[0], 1, &fanout), None, "waits");
        assert!(
            !configured.load(Ordering::SeqCst),
            "configured from its file"
        );
        poll(&nodes[1], &nodes[0], 1, &fanout);
        let seen = b.ops();
        let config = seen
            .iter()
            .find(|r| r["op"] == "configure")
            .expect("configured");
        assert!(
            config["yaml"].as_str().unwrap().contains("3221225473")
                || config["yaml"].as_str().unwrap().contains("0xc0000001"),
            "{config}"
        );
        // No peer at all: its file.
        std::fs::remove_file(&nodes[0].control).unwrap();
        assert_eq!(
            config_for(&nodes[1], &nodes[0]),
            Some(nodes[1].config.clone())
        );
    }

    // ---- reader28 ----

    /// A node configuration of a pair for a host file (mem ports).
    fn r28_node_yaml(name: &str, id: u32, peer: u32, wan: &str, peer_wan: &str) -> String {
        format!(
            "node: {{ name: {name} }}\nworkers: {{ count: 1 }}\nports:\n  - {{ name: lan, role: protected, backend: mem, mac: 02:00:00:00:00:01, address: 10.1.0.{id}/24 }}\n  - {{ name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:00:02, address: {wan}/24 }}\nmirror:\n  node: {id}\n  peer: {peer}\n  key: 0x000102030405060708090a0b0c0d0e0f\n  port: {{ name: mirror, backend: mem, mac: 02:00:00:00:00:03 }}\n  peer_addresses: [{peer_wan}]\n"
        )
    }

    /// A host file for nodes a and b in `dir` (sockets a.sock, b.sock).
    fn r28_host_file(dir: &Path, poll_ms: u64, dead_after: u32) -> std::path::PathBuf {
        std::fs::write(
            dir.join("a.yaml"),
            r28_node_yaml("a", 1, 2, "192.0.2.1", "192.0.2.2"),
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yaml"),
            r28_node_yaml("b", 2, 1, "192.0.2.2", "192.0.2.1"),
        )
        .unwrap();
        let host = format!(
            "host: {{ poll_ms: {poll_ms}, dead_after: {dead_after} }}\nnodes:\n  - {{ name: a, control: {}, config: a.yaml }}\n  - {{ name: b, control: {}, config: b.yaml }}\n",
            dir.join("a.sock").display(),
            dir.join("b.sock").display()
        );
        let path = dir.join("host.yaml");
        std::fs::write(&path, host).unwrap();
        path
    }

    fn r28_running(epoch: u64) -> serde_json::Value {
        json!({ "ok": true, "state": "running", "node": "x", "uptime_ms": 5,
                "pair": { "epoch": epoch, "peer_alive": false, "synced": true, "holding": 0,
                          "standby": 0, "frames_sent": 1, "frames_received": 1, "rejected": 0,
                          "flow_failed": false } })
    }

    /// Node a: answers as a running node in life A1 until `frozen`, then
    /// reads requests and answers none (a stopped process: its socket
    /// still takes connections). Once `stop_accepting` too, it accepts no
    /// more connections (they pile up in its listen queue, as they do in
    /// a stopped process's).
    fn r28_freezable_a(
        path: &Path,
        frozen: Arc<AtomicBool>,
        stop_accepting: Arc<AtomicBool>,
    ) -> Arc<std::os::unix::net::UnixListener> {
        use std::io::{BufRead, BufReader, Write};
        let listener = Arc::new(std::os::unix::net::UnixListener::bind(path).unwrap());
        let l = listener.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                if stop_accepting.load(Ordering::SeqCst) {
                    // The listener stays open, nothing is accepted, until
                    // the test lets go (then the listener can close).
                    while stop_accepting.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
                let frozen = frozen.clone();
                std::thread::spawn(move || {
                    let mut out = conn.try_clone().unwrap();
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        if frozen.load(Ordering::SeqCst) {
                            // Hold the connection, answer nothing.
                            std::thread::sleep(Duration::from_secs(60));
                            return;
                        }
                        let r: serde_json::Value = serde_json::from_str(&line).unwrap();
                        let answer = if r["op"] == "status" {
                            r28_running(A1)
                        } else {
                            json!({ "ok": true })
                        };
                        if writeln!(out, "{answer}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        listener
    }

    /// Node b: running in life B1, synchronised, not hearing a on the
    /// mirror link (a is frozen); answers every other request. Returns
    /// the requests it got.
    fn r28_b(path: &Path) -> FakeNode {
        FakeNode::start(
            path,
            Arc::new(|r| {
                if r["op"] == "status" {
                    r28_running(B1)
                } else {
                    json!({ "ok": true, "packets": 0, "bytes": 0, "rules": 0 })
                }
            }),
        )
    }

    /// An IKE daemon on the host's socket: sends `request` over and over
    /// (each waits for its answer) until `stop`.
    fn r28_daemon(
        host_sock: std::path::PathBuf,
        request: serde_json::Value,
        stop: Arc<AtomicBool>,
    ) {
        use std::io::{BufRead, BufReader, Write};
        std::thread::spawn(move || {
            let mut s = loop {
                match std::os::unix::net::UnixStream::connect(&host_sock) {
                    Ok(s) => break s,
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut input = BufReader::new(s.try_clone().unwrap());
            while !stop.load(Ordering::SeqCst) {
                if writeln!(s, "{request}").is_err() {
                    return;
                }
                let mut line = String::new();
                if input.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
            }
        });
    }

    fn r28_took_over(b: &FakeNode) -> bool {
        b.ops().iter().any(|r| r["op"] == "take_over")
    }

    /// Reader28 find 1 (failed before; liveness, close to "no tunnel lost for good";
    /// breaks docs/ike.md's "a node that freezes in the middle of a
    /// request is failed after the request's timeout, not before"). Since
    /// d5b4ff4 the host does not count a poll of node i as missed while
    /// `fanout.busy(i)`. A frozen node makes every request to it take the
    /// control socket's 5 s timeout; while an IKE daemon keeps sending
    /// requests (two CHILD_SAs' worth of `spd_put`s here; charon's
    /// `sa_query`s, its retries after the failures a frozen node causes,
    /// DPD-driven re-negotiations), one is nearly always in flight to the
    /// frozen node, so its polls are never counted and it is never failed:
    /// its peer never takes its SAs over, and its tunnels carry nothing
    /// for as long as the daemon talks.
    ///
    /// Steps: host (poll 50 ms, dead_after 4) with a and b up; a daemon
    /// sends `spd_put` requests back to back on two connections; a freezes
    /// (a stopped process: connects succeed, nothing is answered). Without
    /// the daemon, b is ordered to take over ~200 ms after; with it, it
    /// was never (12 s here). The fix: a busy node's silence is no news
    /// only while it answered a request or poll within the last second.
    #[test]
    fn reader28_a_frozen_node_under_steady_ike_requests_is_failed() {
        let dir = tempfile::Builder::new()
            .prefix("espgate-r28-host-")
            .tempdir()
            .unwrap();
        let host_file = r28_host_file(dir.path(), 50, 4);
        let (frozen, no_accept) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let _a = r28_freezable_a(&dir.path().join("a.sock"), frozen.clone(), no_accept);
        let b = r28_b(&dir.path().join("b.sock"));
        let host_sock = dir.path().join("host.sock");
        let hs = host_sock.clone();
        let host = std::thread::spawn(move || {
            run(&host_file, Some(Duration::from_secs(14)), Some(&hs)).unwrap();
        });
        // Both up.
        std::thread::sleep(Duration::from_millis(600));
        let stop = Arc::new(AtomicBool::new(false));
        let request = json!({ "op": "spd_put", "yaml": "spd: []" });
        for _ in 0..2 {
            r28_daemon(host_sock.clone(), request.clone(), stop.clone());
        }
        std::thread::sleep(Duration::from_millis(300));
        frozen.store(true, Ordering::SeqCst);
        let froze = Instant::now();
        while froze.elapsed() < Duration::from_secs(12) && !r28_took_over(&b) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let took_over = r28_took_over(&b);
        stop.store(true, Ordering::SeqCst);
        host.join().unwrap();
        assert!(
            took_over,
            "a froze 12 s ago and is still not failed: a request of the daemon's to it is always in flight (fanout.busy)"
        );
    }

    /// Reader28 find 2 (failed before; liveness made permanent: a frozen node is never
    /// failed, and the host's IKE socket answers nothing more, with no
    /// further request at all). `ask` bounds only the read (5 s), not the
    /// connect: once a stopped node's listen queue is full (every
    /// unanswered poll and request leaves a connection in it: some
    /// thousands, hours of polls), a connect to it blocks for good. The
    /// host's request thread then sits in `send_up` for good: `busy(a)`
    /// stays true, so the main loop never counts a's polls (its poller is
    /// blocked in connect too), a is never failed, b never takes a's SAs
    /// over: a's tunnels are lost for as long as a is stopped. Before
    /// d5b4ff4 the blocked poller's silence failed a.
    ///
    /// Steps: host (poll 100 ms, dead_after 10) with a and b up; a stops
    /// (answers nothing); an IKE daemon sends `spd_put` (held 5 s by a)
    /// and another behind it; a's listen queue fills meanwhile (here the
    /// test fills it). The second request's connect to a never returned;
    /// 15 s later b had not been ordered to take over. The fix: a connect
    /// does not wait (a full backlog is an error naming it), and busy
    /// counts only while the node answers.
    #[test]
    fn reader28_a_frozen_node_with_a_full_listen_queue_is_failed() {
        let dir = tempfile::Builder::new()
            .prefix("espgate-r28-host-")
            .tempdir()
            .unwrap();
        let host_file = r28_host_file(dir.path(), 100, 10);
        let (frozen, no_accept) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let a_sock = dir.path().join("a.sock");
        let a = r28_freezable_a(&a_sock, frozen.clone(), no_accept.clone());
        let b = r28_b(&dir.path().join("b.sock"));
        let host_sock = dir.path().join("host.sock");
        let hs = host_sock.clone();
        let host = std::thread::spawn(move || {
            run(&host_file, Some(Duration::from_secs(20)), Some(&hs)).unwrap();
        });
        std::thread::sleep(Duration::from_millis(800));
        // a stops: it answers nothing, then accepts nothing.
        frozen.store(true, Ordering::SeqCst);
        no_accept.store(true, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let request = json!({ "op": "spd_put", "yaml": "spd: []" });
        for _ in 0..2 {
            r28_daemon(host_sock.clone(), request.clone(), stop.clone());
        }
        // Fill a's listen queue (as hours of unanswered polls would).
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (count, path) = (pending.clone(), a_sock.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
                held.push(s);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = pending.load(Ordering::SeqCst);
            if now > 0 && now == last {
                break;
            }
            last = now;
        }
        let full = Instant::now();
        while full.elapsed() < Duration::from_secs(15) && !r28_took_over(&b) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let took_over = r28_took_over(&b);
        stop.store(true, Ordering::SeqCst);
        // Closing a's listener ends the blocked connects, and the host.
        no_accept.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        drop(a);
        let _ = std::fs::remove_file(&a_sock);
        let _ = host.join();
        assert!(
            took_over,
            "a stopped 15 s ago and was never failed: the host's request to it blocks in connect, and busy(a) hides its polls"
        );
    }

    /// Reader28 find 5, answered otherwise than it asked. The steps: a and
    /// b up; charon adds SA 0xc0000001 (home a); b's answer does not come,
    /// so it is kept for b; a restarts and is configured from b's SAs,
    /// which lack it. The reader asked that b be caught up first and a
    /// configured with the SA. But a's ended life ran it from sequence
    /// number 1 while b knew nothing of it (it missed it): neither b's
    /// mirror nor a's new life holds how far that went, and a new life
    /// given it would start it again from 1 (without a state directory).
    /// So the SA goes to neither: lost with the life that ran it, as
    /// docs/ike.md says, and charon's next rekey replaces it; the host
    /// says so.
    #[test]
    fn reader28_an_sa_only_an_ended_life_ran_goes_to_neither_node() {
        let dir = tempfile::Builder::new()
            .prefix("espgate-r28-host-")
            .tempdir()
            .unwrap();
        let node = |name: &str| ManagedNode {
            name: name.into(),
            takeover: Takeover::Manual,
            control: dir.path().join(format!("{name}.sock")),
            config: format!("node: {{ name: {name} }}\n"),
            on_failure: Vec::new(),
            on_return: Vec::new(),
        };
        let nodes = [node("a"), node("b")];
        let fanout = Fanout::new(&nodes);
        fanout.set_up(0, true);
        fanout.set_up(1, true);
        let restarted = Arc::new(AtomicBool::new(false));
        let flag = restarted.clone();
        let a = FakeNode::start(
            &nodes[0].control,
            Arc::new(move |r| match r["op"].as_str() {
                Some("status") if flag.load(Ordering::SeqCst) => {
                    json!({ "ok": true, "state": "waiting_config" })
                }
                Some("status") => r28_running(A1),
                _ => json!({ "ok": true, "sas": 1, "rules": 0 }),
            }),
        );
        // charon's SA, home a (its local address is a's); b does not answer.
        let add = json!({ "op": "sa_add", "yaml": "sas: [{spi: 0xc0000001, direction: outbound, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: {src: 192.0.2.1, dst: 198.51.100.1}}]" });
        let (back, answer) = mpsc::channel();
        fanout.handle_request(serde_json::from_value(add).unwrap(), back);
        assert_eq!(answer.recv().unwrap()["ok"], true, "carried out on a");
        // a restarts; b answers again, with the SAs it runs (not the new one).
        restarted.store(true, Ordering::SeqCst);
        let b = FakeNode::start(
            &nodes[1].control,
            Arc::new(|r| match r["op"].as_str() {
                Some("status") => r28_running(B1),
                Some("sa_export") => {
                    json!({ "ok": true, "yaml": "sas:\n  - { spi: 0xc0000002, direction: outbound, aead: aes-128-gcm, key: \"0x00112233445566778899aabbccddeeff01020304\", tunnel: { src: 192.0.2.2, dst: 198.51.100.1 }, home: 2 }\nspd: []\n" })
                }
                _ => json!({ "ok": true, "sas": 1, "rules": 0 }),
            }),
        );
        // a's poll configures it from b's SAs; then b's poll.
        poll(&nodes[0], &nodes[1], 0, &fanout);
        fanout.catch_up(1);
        assert!(
            !b.ops().iter().any(|r| r["op"] == "sa_add"),
            "b got the SA only a's ended life ran: {:?}",
            b.ops()
        );
        let seen = a.ops();
        let config = seen
            .iter()
            .find(|r| r["op"] == "configure")
            .expect("a configured");
        let yaml = config["yaml"].as_str().unwrap();
        assert!(
            !yaml.contains("0xc0000001") && !yaml.contains("3221225473"),
            "{yaml}"
        );
    }

    // ---- reader29 ----

    /// A running node's status in life `epoch`, hearing its peer on the
    /// mirror link.
    fn r29_running(epoch: u64) -> serde_json::Value {
        json!({ "ok": true, "state": "running", "node": "x", "uptime_ms": 5,
                "pair": { "epoch": epoch, "peer_alive": true, "synced": true, "holding": 0,
                          "standby": 0, "frames_sent": 1, "frames_received": 1, "rejected": 0,
                          "flow_failed": false } })
    }

    /// A node that answers its control requests in turn (as a real node
    /// does: one request at a time), taking `slow` for an `sa_add` (a new
    /// SA's first mark made durable on a slow disk), answering everything
    /// else at once.
    fn r29_slow_node(path: &Path, epoch: u64, slow: Duration) -> FakeNode {
        let turn = Arc::new(std::sync::Mutex::new(()));
        FakeNode::start(
            path,
            Arc::new(move |r| {
                let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
                match r["op"].as_str() {
                    Some("status") => r29_running(epoch),
                    Some("sa_add") => {
                        std::thread::sleep(slow);
                        json!({ "ok": true, "sas": 1, "rules": 0 })
                    }
                    _ => json!({ "ok": true, "sas": 1, "rules": 0, "packets": 0, "bytes": 0 }),
                }
            }),
        )
    }

    /// Reader29 find 1 (promise "no tunnel lost while a node that held it
    /// lives", via the failure d5b4ff4 fixed coming back; liveness). A
    /// node's own patience with a new SA's first durable mark is
    /// `SETTLE` = 2 s (`keeper.admit`, then 2 s for the mirror task and 2 s
    /// for the workers), and the host's control socket timeout is 5 s; but
    /// the host counts a busy node's unanswered polls once its last answer
    /// is older than BUSY_ANSWERING = 1 s. With the default timing (poll
    /// 50 ms, dead_after 4), an `sa_add` that takes 1.6 s on both nodes
    /// (their state directories on one disk whose fsync stalls 1.6 s, well
    /// within the node's own 2 s) gets both live nodes failed: the host
    /// orders take_over and fence of live nodes in the middle of a request
    /// they are carrying out, as in d5b4ff4 ("the host fenced and took
    /// over nodes that ran until their SAs differed").
    ///
    /// Steps: host (poll 50 ms, dead_after 4) with a and b up, each
    /// answering its requests in turn; an IKE daemon sends one `sa_add`;
    /// each node takes 1.6 s for it. Expected: no take_over or fence
    /// while both answer within the node's own limits. Got: one is ordered
    /// to take over and fence the other.
    #[test]
    fn reader29_a_live_node_slow_on_one_sa_add_within_its_own_limits_is_not_failed() {
        let dir = tempfile::Builder::new()
            .prefix("espgate-r29-host-")
            .tempdir()
            .unwrap();
        let host_file = r28_host_file(dir.path(), 50, 4);
        let slow = Duration::from_millis(1600);
        let a = r29_slow_node(&dir.path().join("a.sock"), A1, slow);
        let b = r29_slow_node(&dir.path().join("b.sock"), B1, slow);
        let host_sock = dir.path().join("host.sock");
        let hs = host_sock.clone();
        let host = std::thread::spawn(move || {
            run(&host_file, Some(Duration::from_secs(6)), Some(&hs)).unwrap();
        });
        // Both up.
        std::thread::sleep(Duration::from_millis(600));
        let stop = Arc::new(AtomicBool::new(false));
        let add = json!({ "op": "sa_add", "yaml": "sas: [{spi: 0xc0000001, direction: outbound, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: {src: 192.0.2.1, dst: 198.51.100.1}}]" });
        // One sa_add (the daemon's thread sends it again once answered;
        // stopped after the first).
        r28_daemon(host_sock, add, stop.clone());
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::SeqCst);
        host.join().unwrap();
        let orders = |n: &FakeNode| -> Vec<String> {
            n.ops()
                .iter()
                .filter(|r| matches!(r["op"].as_str(), Some("take_over" | "fence")))
                .map(|r| r["op"].to_string())
                .collect()
        };
        let (on_a, on_b) = (orders(&a), orders(&b));
        assert!(
            on_a.is_empty() && on_b.is_empty(),
            "live nodes, each 1.6 s on one sa_add (within the node's own 2 s), were failed: orders to a {on_a:?}, to b {on_b:?}"
        );
    }

    /// Reader29 find 2 (liveness made permanent; then "no tunnel lost
    /// while a node that held it lives": with no IKE request answered,
    /// charon can rekey nothing, and the SAs the peer runs reach their
    /// hard limits). `ask` bounds the connect (ea6d721) and each read
    /// (5 s), but not the write: a request the socket's send buffer
    /// (~208 KiB of kernel memory) cannot hold, to a node that stops
    /// reading, blocks in `writeln!` for good. It takes far less than
    /// 208 KiB of text: `writeln!(s, "{request}")` on the unbuffered
    /// stream makes one write(2) per piece serde_json's Display emits
    /// (each escaped `\n` of a YAML splits the string), each a ~1 KiB
    /// skb; a configuration of only 20 SAs (5 KB) blocked here as well. The host configures a node in a new life with every SA
    /// its peer runs (1000 CHILD_SAs are ~2000 SAs, some 400 KB of YAML),
    /// and does so holding the fan-out's book (`fanout.hold()` in `poll`).
    /// A node that freezes (SIGSTOP, a paused VM) between its status
    /// answer and reading its configuration holds the book for as long as
    /// it is frozen: every request of the IKE daemon waits on the book, and
    /// the host's socket answers nothing more.
    ///
    /// Steps: a waits for its configuration; b runs 2000 SAs; a's poll
    /// reads b's SAs and sends a its configuration, which a does not read
    /// (frozen); charon sends an `spd_put`. Expected: an answer (carried
    /// out on b) within the control socket's timeout and some; got: none
    /// in 12 s (none ever).
    #[test]
    fn reader29_a_node_frozen_while_its_configuration_is_written_does_not_block_the_ike_socket() {
        use std::io::{Read, Write};
        let dir = tempfile::Builder::new()
            .prefix("espgate-r29-host-")
            .tempdir()
            .unwrap();
        let node = |name: &str| ManagedNode {
            name: name.into(),
            takeover: Takeover::Manual,
            control: dir.path().join(format!("{name}.sock")),
            config: format!("node: {{ name: {name} }}\n"),
            on_failure: Vec::new(),
            on_return: Vec::new(),
        };
        let nodes = [node("a"), node("b")];
        let fanout: &'static Fanout = Box::leak(Box::new(Fanout::new(&nodes)));
        fanout.set_up(0, false);
        fanout.set_up(1, true);
        // a: waits for its configuration; reads no configuration (frozen
        // once it has answered its status).
        let listener = std::os::unix::net::UnixListener::bind(&nodes[0].control).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while head.len() < 64 && !head.ends_with(b"\n") {
                        if conn.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head);
                    if text.contains("\"configure\"") {
                        // Frozen: the rest is never read.
                        std::thread::sleep(Duration::from_secs(120));
                        return;
                    }
                    let _ = writeln!(conn, "{}", json!({ "ok": true, "state": "waiting_config" }));
                });
            }
        });
        // b: runs 2000 SAs.
        let mut export = String::from("sas:\n");
        for k in 0..2000u32 {
            export.push_str(&format!(
                "  - {{ spi: {:#x}, direction: outbound, aead: aes-128-gcm, key: \"0x{:040x}\", tunnel: {{ src: 192.0.2.2, dst: 198.51.100.1 }}, esn: false, replay_window: 64, initial_seq: 0, outer_ttl: 64, pad_to: 4, home: 2 }}\n",
                0xc000_0000u32 + k,
                k as u128 + 1
            ));
        }
        export.push_str("spd: []\n");
        let _b = FakeNode::start(
            &nodes[1].control,
            Arc::new(move |r| match r["op"].as_str() {
                Some("status") => r28_running(B1),
                Some("sa_export") => json!({ "ok": true, "yaml": export.clone() }),
                _ => json!({ "ok": true, "sas": 1, "rules": 0 }),
            }),
        );
        let (n0, n1) = (nodes[0].clone(), nodes[1].clone());
        std::thread::spawn(move || {
            let _ = poll(&n0, &n1, 0, fanout);
        });
        std::thread::sleep(Duration::from_millis(1500));
        let (back, answer) = mpsc::channel();
        std::thread::spawn(move || {
            let put = json!({ "op": "spd_put", "yaml": "spd: []" });
            fanout.handle_request(serde_json::from_value(put).unwrap(), back);
        });
        let got = answer.recv_timeout(Duration::from_secs(12));
        assert!(
            got.is_ok(),
            "charon's spd_put was not answered in 12 s: the host's poll holds the book while its write of a's configuration blocks on frozen a"
        );
    }

    /// Reader29 find 5 (promise "no (SPI, sequence number) used twice",
    /// by the very path reader28 find 5 closed: an SA only an ended life
    /// ran given to its peer). `Held::configured` drops the peer's pending
    /// `sa_add`s when a node is configured in a new life; `poll` calls it
    /// only when the `configure` answer is read. A node that carries its
    /// configuration out and whose answer does not come within the 5 s
    /// timeout (a new life with thousands of SAs and a state directory to
    /// make durable, or the answer lost) runs its new life, but the book
    /// goes on as if it had not been configured: the peer's next poll
    /// sends it the `sa_add` a's ended life alone ran (b had missed it).
    /// b now holds an SA whose home is a, whose numbers a's ended life
    /// used, of which a's new life knows nothing: should a fail (or b be
    /// asked what it knows of it), b runs it from its first numbers again.
    /// (And a's new life is sent what its ended life missed, as a new life
    /// must not be.)
    ///
    /// Steps: a and b up; charon adds SA 0xc0000001 (home a), b does not
    /// answer; a restarts; a's poll configures it from b's SAs (which lack
    /// it) and a takes 6 s to answer; a runs its new life; b's poll.
    /// Expected: b is not sent the SA (as when a's answer is prompt);
    /// got: b gets the `sa_add`.
    #[test]
    fn reader29_an_sa_only_an_ended_life_ran_goes_to_neither_node_when_the_configure_answer_is_late()
     {
        let dir = tempfile::Builder::new()
            .prefix("espgate-r29-host-")
            .tempdir()
            .unwrap();
        let node = |name: &str| ManagedNode {
            name: name.into(),
            takeover: Takeover::Manual,
            control: dir.path().join(format!("{name}.sock")),
            config: format!("node: {{ name: {name} }}\n"),
            on_failure: Vec::new(),
            on_return: Vec::new(),
        };
        let nodes = [node("a"), node("b")];
        let fanout = Fanout::new(&nodes);
        fanout.set_up(0, true);
        fanout.set_up(1, true);
        let restarted = Arc::new(AtomicBool::new(false));
        let configured = Arc::new(AtomicBool::new(false));
        let (r, c) = (restarted.clone(), configured.clone());
        let _a = FakeNode::start(
            &nodes[0].control,
            Arc::new(move |req| match req["op"].as_str() {
                Some("status") if c.load(Ordering::SeqCst) => r28_running(A2),
                Some("status") if r.load(Ordering::SeqCst) => {
                    json!({ "ok": true, "state": "waiting_config" })
                }
                Some("status") => r28_running(A1),
                Some("configure") => {
                    // Carried out; the answer comes after the host's 5 s.
                    c.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_secs(6));
                    json!({ "ok": true })
                }
                _ => json!({ "ok": true, "sas": 1, "rules": 0 }),
            }),
        );
        // charon's SA, home a; b does not answer (its socket not there yet).
        let add = json!({ "op": "sa_add", "yaml": "sas: [{spi: 0xc0000001, direction: outbound, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: {src: 192.0.2.1, dst: 198.51.100.1}}]" });
        let (back, answer) = mpsc::channel();
        fanout.handle_request(serde_json::from_value(add).unwrap(), back);
        assert_eq!(answer.recv().unwrap()["ok"], true, "carried out on a");
        restarted.store(true, Ordering::SeqCst);
        let b = FakeNode::start(
            &nodes[1].control,
            Arc::new(|r| match r["op"].as_str() {
                Some("status") => r28_running(B1),
                Some("sa_export") => {
                    json!({ "ok": true, "yaml": "sas:\n  - { spi: 0xc0000002, direction: outbound, aead: aes-128-gcm, key: \"0x00112233445566778899aabbccddeeff01020304\", tunnel: { src: 192.0.2.2, dst: 198.51.100.1 }, home: 2 }\nspd: []\n" })
                }
                _ => json!({ "ok": true, "sas": 1, "rules": 0 }),
            }),
        );
        // a's poll configures it (answer late); a runs its new life.
        let _ = poll(&nodes[0], &nodes[1], 0, &fanout);
        assert!(configured.load(Ordering::SeqCst), "a was configured");
        assert_eq!(
            poll(&nodes[0], &nodes[1], 0, &fanout).map(|s| Answer::from(&s).life),
            Some(Some(A2)),
            "a runs its new life"
        );
        // b's poll.
        poll(&nodes[1], &nodes[0], 1, &fanout);
        assert!(
            !b.ops().iter().any(|r| r["op"] == "sa_add"),
            "b was sent the SA only a's ended life ran (a's configure answer came late): {:?}",
            b.ops()
        );
    }
}
