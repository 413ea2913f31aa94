//! The breadth-first search over the world's states, and how a violation
//! is shown (the trace that reaches it, step by step).

use super::*;

/// A frame's header and records, for traces.
pub(crate) fn describe(frame: &[u8]) -> String {
    let Ok((h, records)) = parse_records(frame) else {
        return "unparseable".into();
    };
    let records: Vec<String> = records.iter().map(describe_record).collect();
    format!(
        "{}{}#{} to {}{} [{}]",
        NAMES[h.node as usize - 1],
        h.epoch,
        h.counter,
        NAMES[2 - h.node as usize],
        h.peer_epoch,
        records.join(", ")
    )
}

pub(crate) fn describe_record(r: &MirrorRecord) -> String {
    match r {
        MirrorRecord::SaState(s) => format!(
            "{} {}={}",
            if s.copy { "copy" } else { "state" },
            sa_named(s.spi, s.dir),
            s.value
        ),
        MirrorRecord::Heartbeat { .. } => "hb".into(),
        MirrorRecord::LeaseAck { spi, dir, lease } => {
            format!("ack {}={lease}", sa_named(*spi, *dir))
        }
        MirrorRecord::BulkRequest => "bulk?".into(),
        MirrorRecord::BulkResend { bulk, parts } => format!("bulk {bulk} parts {parts:?}?"),
        MirrorRecord::BulkPart {
            bulk, part, parts, ..
        } => format!("bulk {bulk} part {part}/{parts}"),
        MirrorRecord::Ownership {
            spi,
            dir,
            owner,
            generation,
            bound,
            kind,
        } => {
            let kind = match kind {
                OwnershipKind::Change => "change",
                OwnershipKind::Handover => "handover",
                OwnershipKind::Confirm => "confirm",
                OwnershipKind::Declined => "declined",
                OwnershipKind::Exact => "exact handover",
            };
            format!(
                "{kind} {}→{} g{generation} from {bound}",
                sa_named(*spi, *dir),
                NAMES[*owner as usize - 1]
            )
        }
        MirrorRecord::Query { spi, dir } => format!("query {}", sa_named(*spi, *dir)),
        MirrorRecord::History { spi, dir, value } => {
            format!("history {}={value:?}", sa_named(*spi, *dir))
        }
        MirrorRecord::Past { spi, dir, value } => {
            format!("past {}={value}", sa_named(*spi, *dir))
        }
        MirrorRecord::Goodbye { kind } => format!("goodbye {kind:?}"),
        MirrorRecord::Unknown(t) => format!("unknown {t}"),
    }
}

/// Where an exploration starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Root {
    /// [`World::warm`].
    Warm,
    /// [`World::busy`].
    Busy,
    /// [`World::rekeying`].
    Rekeying,
    /// [`World::holding`].
    Holding,
    /// [`World::leaving`].
    Leaving,
    /// [`World::failing_back`].
    FailingBack,
    /// [`World::holding_inbound`].
    HoldingInbound,
    /// [`World::stopped`].
    Stopped,
    /// [`World::split`].
    Split,
    /// [`World::streaming`].
    Streaming,
    /// [`World::half_healed`].
    HalfHealed,
}

impl Root {
    pub(crate) fn world(self) -> World {
        match self {
            Root::Warm => World::warm(),
            Root::Busy => World::busy(),
            Root::Rekeying => World::rekeying(),
            Root::Holding => World::holding(),
            Root::Leaving => World::leaving(),
            Root::FailingBack => World::failing_back(),
            Root::HoldingInbound => World::holding_inbound(),
            Root::Stopped => World::stopped(),
            Root::Split => World::split(),
            Root::Streaming => World::streaming(),
            Root::HalfHealed => World::half_healed(),
        }
    }
}

/// What to explore, from where and how far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Explore {
    pub(crate) root: Root,
    pub(crate) alphabet: Alphabet,
    pub(crate) depth: usize,
    pub(crate) max_states: usize,
    /// Property 7's bound, if checked: the fresh packets a takeover of an
    /// inbound SA from a dead peer may refuse (an alphabet with restarts,
    /// partitions or fences moves starts past lost lives on purpose).
    pub(crate) refusal_cap: Option<u64>,
    /// Both nodes' `inbound_grace`.
    pub(crate) grace: u64,
}

impl Explore {
    /// `families` from the warm pair to `depth` (or `EXPLORE_DEPTH`), at
    /// most `max_states` (or `EXPLORE_STATES`) states.
    pub(crate) fn new(families: &[Family], depth: usize, max_states: usize) -> Self {
        Explore {
            root: Root::Warm,
            alphabet: Alphabet::of(families),
            depth: env_or("EXPLORE_DEPTH", depth),
            max_states: env_or("EXPLORE_STATES", max_states),
            refusal_cap: None,
            grace: INTERVAL,
        }
    }
}

/// The environment's `name`, if set to a number, else `default`.
pub(crate) fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A violation, the actions from the root that lead to it, and the
/// states explored when it was found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) violation: Violation,
    pub(crate) trace: Vec<Action>,
    pub(crate) after: usize,
}

/// What an exploration saw.
#[derive(Debug)]
pub(crate) struct Report {
    /// Distinct states reached (the root included).
    pub(crate) states: usize,
    /// Transitions tried.
    pub(crate) transitions: usize,
    /// The deepest level whose states were all expanded.
    pub(crate) depth: usize,
    /// Stopped at the state cap.
    pub(crate) capped: bool,
    /// Fences tried: allowed, refused as not synchronised, refused as the
    /// peer is heard.
    pub(crate) fences: [usize; 3],
    /// States reached with a hand-over declined in flight (the receiver
    /// lacks the SA).
    pub(crate) declined: usize,
    /// Violations, the shortest of each check first.
    pub(crate) found: Vec<Found>,
    pub(crate) elapsed: Duration,
}

impl Report {
    pub(crate) fn first(&self, check: Check) -> Option<&Found> {
        self.found.iter().find(|f| f.violation.check == check)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<Check> = self.found.iter().map(|x| x.violation.check).collect();
        kinds.dedup();
        write!(
            f,
            "{} states, {} transitions, depth {} fully explored{}, {} violations {kinds:?}, {:.1} s",
            self.states,
            self.transitions,
            self.depth,
            if self.capped {
                " (state cap reached)"
            } else {
                ""
            },
            self.found.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Breadth-first search from `root`.
pub(crate) fn explore(root: &World, ex: Explore) -> Report {
    let t0 = Instant::now();
    let mut seen = HashSet::from([root.fingerprint()]);
    // Properties 3 and 4's verdict by settle key: many states differ only
    // in what was used or sent before.
    let mut settled: HashMap<u64, Result<(), Violation>> = HashMap::new();
    // Every state reached: its parent, the action from it and its
    // fingerprint.
    let mut parents = vec![(usize::MAX, Action::Tick, root.fingerprint())];
    let mut frontier = vec![Pending {
        world: Some(Box::new(root.clone())),
        id: 0,
    }];
    let mut report = Report {
        states: 1,
        transitions: 0,
        depth: 0,
        capped: false,
        fences: [0; 3],
        declined: 0,
        found: Vec::new(),
        elapsed: Duration::ZERO,
    };
    'levels: while report.depth < ex.depth && !frontier.is_empty() {
        let mut next = Vec::new();
        // Each state is dropped once expanded: two levels never fill
        // memory at once.
        for Pending { world, id: at } in std::mem::take(&mut frontier) {
            let world = world.unwrap_or_else(|| Box::new(rebuild(root, &parents, at)));
            for a in world.actions(ex.alphabet) {
                report.transitions += 1;
                if let Action::Fence(i) = a {
                    let k = match world.fence_answer(i) {
                        Some(Ok(())) => 0,
                        Some(Err(FenceRefused::NotSynced)) => 1,
                        Some(Err(FenceRefused::PeerHeard)) | None => 2,
                    };
                    report.fences[k] += 1;
                }
                let mut w = world.clone();
                let mut verdict = w.apply(a);
                let fingerprint = w.fingerprint();
                let fresh = seen.insert(fingerprint);
                if verdict.is_ok() && !fresh {
                    continue;
                }
                if verdict.is_ok() {
                    verdict = settled
                        .entry(w.settle_key())
                        .or_insert_with(|| w.check_settled())
                        .clone();
                }
                parents.push((at, a, fingerprint));
                let id = parents.len() - 1;
                if let Err(violation) = verdict {
                    let trace = trace_to(&parents, id);
                    report.found.push(Found {
                        violation,
                        trace,
                        after: report.states,
                    });
                    continue;
                }
                report.states += 1;
                report.declined += usize::from(w.declining());
                let world = (next.len() < KEEP).then_some(w);
                next.push(Pending { world, id });
                if report.states >= ex.max_states {
                    report.capped = true;
                    break 'levels;
                }
            }
        }
        frontier = next;
        report.depth += 1;
    }
    report
        .found
        .sort_by_key(|f| (f.violation.check, f.trace.len()));
    report.elapsed = t0.elapsed();
    report
}

/// Worlds of a level kept in memory (some 10 kB each); the others are
/// rebuilt from their traces when their turn comes.
pub(crate) const KEEP: usize = 40_000;

/// A state waiting to be expanded: its world, or only its place in the
/// tree of states reached.
pub(crate) struct Pending {
    pub(crate) world: Option<Box<World>>,
    pub(crate) id: usize,
}

/// The world of state `id`, replayed from the root (every step on the way
/// was free of violations).
pub(crate) fn rebuild(root: &World, parents: &[(usize, Action, u64)], id: usize) -> World {
    let mut w = root.clone();
    for a in trace_to(parents, id) {
        w.apply(a).expect("a step on the way to a state reached");
    }
    assert_eq!(
        w.fingerprint(),
        parents[id].2,
        "a trace replays to its state"
    );
    w
}

pub(crate) fn trace_to(parents: &[(usize, Action, u64)], mut id: usize) -> Vec<Action> {
    let mut trace = Vec::new();
    while id != 0 {
        let (parent, a, _) = parents[id];
        trace.push(a);
        id = parent;
    }
    trace.reverse();
    trace
}

/// The trace of `found`, replayed from `root`: each action, the frame it
/// carries or the fence's answer, and the world after it.
pub(crate) fn show(root: &World, found: &Found) -> String {
    let mut w = root.clone();
    let mut out = format!(
        "{:?}: {}\n    start: {}\n",
        found.violation.check,
        found.violation.what,
        w.summary()
    );
    for (k, a) in found.trace.iter().enumerate() {
        let note = match *a {
            Action::Fence(i) => format!("  {:?}", w.fence_answer(i)),
            _ => a
                .frame(&w)
                .map(|f| format!("  {}", describe(f)))
                .unwrap_or_default(),
        };
        let r = w.apply(*a);
        out += &format!("{:>4}. {a}{note}\n      {}\n", k + 1, w.summary());
        if let Err(v) = r {
            out += &format!("      VIOLATION {:?}: {}\n", v.check, v.what);
        }
    }
    out
}

/// A trace on one line.
pub(crate) fn line(trace: &[Action]) -> String {
    let steps: Vec<String> = trace.iter().map(Action::to_string).collect();
    steps.join("; ")
}

/// Explores from the warm pair; prints the report (states explored, depth
/// reached) and the shortest trace of each property violated.
pub(crate) fn run(name: &str, ex: Explore) -> Report {
    GRACE.set(ex.grace);
    let mut root = ex.root.world();
    root.refusal_cap = ex.refusal_cap;
    let report = explore(&root, ex);
    println!("{name}: {report}");
    for check in [
        Check::OutboundReuse,
        Check::InboundReplay,
        Check::Ownership,
        Check::Liveness,
        Check::Survivor,
        Check::FrameSize,
        Check::Refusal,
    ] {
        if let Some(f) = report.first(check) {
            println!(
                "{name} shortest {check:?}, depth {}, found after {} states: {}",
                f.trace.len(),
                f.after,
                line(&f.trace)
            );
            println!("{}", show(&root, f));
        }
    }
    report
}

/// Explores as `ex` says and asserts that no property broke.
pub(crate) fn clean(name: &str, ex: Explore) -> Report {
    let report = run(name, ex);
    assert!(report.found.is_empty(), "{name}: {report}");
    report
}
