//! The host's control socket (`espgate host --control`): an IKE daemon's
//! plugin (charon's kernel-espgate) talks to the pair through it as to one
//! node. Every SA and rule goes to both nodes, each SA's home being the
//! node whose unprotected address is the SA's local tunnel address; an
//! inbound SPI is drawn on one node and reserved on the other; an SA's
//! counters are the larger of the two nodes'; the nodes' events are
//! merged, each SA event told once (a standby copy ages as its home's
//! does, so both tell it).
//!
//! A node that does not answer (it is down, or waits for its
//! configuration) misses the request; the request is carried out if the
//! other node carried it out. A node in a new life gets the SAs and rules
//! its peer runs with its configuration (the host pushes it, never while
//! a request is being fanned out); one that answers again in the same life
//! gets what it missed, in order, before anything new. A node that
//! refuses what its peer carried out makes the request fail: an `sa_add`
//! is then undone on the peer; a change of rules or a deletion cannot be
//! undone, and the host says so.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use espgate_control::ManagedNode;
use espgate_control::answer::{Done, Event, SaQueried, SpiAllocated, carried_out, read, refusal};
use espgate_control::request::{DirectionArg, Request};
use espgate_esp::Direction;
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

use crate::control_socket::ask;
use crate::host::say;
use crate::run::NOT_CONFIGURED;

/// Requests kept for a node that missed them, at most; past this it
/// must restart to get the pair's SAs (its new life is configured with
/// them), and the host says so.
pub const MAX_MISSED: usize = 100_000;

/// Draws of an inbound SPI before the host gives up: each drawn SPI the
/// other node has in use or handed out is drawn again.
const SPI_DRAWS: usize = 8;

/// How long a node's event stream, once lost, waits before it is opened
/// again.
const REWATCH: Duration = Duration::from_millis(200);

/// One node as the fan-out reaches it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    control: std::path::PathBuf,
}

/// How a passing refusal is told among the reasons a node did not carry a
/// request out.
const BUSY: &str = "busy: ";

/// Why a node the host does not count as up is not asked.
const NOT_UP: &str = "the host does not count it up (failed, or back and not yet synchronised)";

/// What one node made of a request.
#[derive(Debug, Clone)]
enum Reach {
    /// Carried out: its answer.
    Done(Value),
    /// Refused: why.
    Refused(String),
    /// Not answered (down, hung, or waiting for its configuration): why.
    Absent(String),
}

/// How the fan-out reaches the nodes: their control sockets, or (in
/// tests) a model of them.
pub trait Link: Send + Sync {
    /// Sends node `i` one request; its answer, or why none came.
    fn ask(&self, i: usize, request: &Value) -> Result<Value, String>;
}

/// The nodes' control sockets.
struct Sockets([std::path::PathBuf; 2]);

impl Link for Sockets {
    fn ask(&self, i: usize, request: &Value) -> Result<Value, String> {
        ask(&self.0[i], request).map_err(|e| format!("{e:#}"))
    }
}

/// What node `i` made of `request`; `heard` takes the time of its
/// answer, if one came.
fn send(link: &dyn Link, i: usize, request: &Value, heard: &Heard) -> Reach {
    let answer = match link.ask(i, request) {
        Ok(a) => a,
        Err(e) => return Reach::Absent(e),
    };
    heard.now();
    if answer["retry"] == true {
        // Refused for a reason that passes: not carried out, asked again.
        let why = answer["error"].as_str().unwrap_or("busy");
        return Reach::Absent(format!("{BUSY}{why}"));
    }
    match read::<Done>("request", &answer) {
        Ok(Done {}) => Reach::Done(answer),
        Err(espgate_control::answer::AnswerError::Refused(why)) if why == NOT_CONFIGURED => {
            Reach::Absent(why)
        }
        Err(e) => Reach::Refused(e.to_string()),
    }
}

/// What the host keeps about the requests the nodes missed.
#[derive(Debug, Default, Clone)]
pub struct Book {
    /// Per node, the requests it missed while in its present life, oldest
    /// first. (One it refuses for a reason that passes, with `"retry"`, it
    /// has not had yet.)
    missed: [VecDeque<Value>; 2],
    /// Per node, whether it missed more than [`MAX_MISSED`]: it must
    /// restart.
    overflowed: [bool; 2],
    /// Per node, the passing refusals in a row of the request at the head
    /// of what it missed (everything after it waits).
    held_back: [u64; 2],
}

/// The book held: no request is fanned out meanwhile (the host holds it
/// from reading a node's SAs to configuring its peer with them).
pub struct Held<'a> {
    book: MutexGuard<'a, Book>,
}

impl Held<'_> {
    /// Node `i` was configured in a new life: with everything its peer
    /// runs, or, its peer silent, with its file's SAs only. What it missed
    /// before is not sent to it: it is in its configuration, or it may not
    /// be given (an SA it missed may have run on the peer, and a new life
    /// given it would start it again at numbers the peer used). Both nodes
    /// down at once lose the SAs the IKE daemon installed (its next rekeys
    /// install new ones).
    ///
    /// What its peer has not had yet is its too, as the peer's SAs it got
    /// lack it: rule changes and deletions go to both. An SA the peer has
    /// not had goes to neither: a life of this node that ended ran it (the
    /// peer's export lacks it), and given now it could start again at the
    /// numbers that life used; it is lost with that life, as it would be
    /// had the peer died too.
    pub fn configured(&mut self, i: usize) {
        let pending = std::mem::take(&mut self.book.missed[1 - i]);
        let (adds, owed): (VecDeque<_>, VecDeque<_>) =
            pending.into_iter().partition(|r| r["op"] == "sa_add");
        for r in &adds {
            say(&format!(
                "an SA added while node {} did not answer is dropped, its other holder having restarted: {}",
                1 - i,
                r["yaml"]
            ));
        }
        self.book.missed[i] = owed.clone();
        self.book.missed[1 - i] = owed;
        self.book.overflowed[i] = false;
    }
}

/// The fan-out of requests to the pair.
pub struct Fanout {
    link: Box<dyn Link>,
    members: [Member; 2],
    book: Mutex<Book>,
    /// The `watch` connections open on the host's socket.
    watchers: Mutex<Vec<Sender<Value>>>,
    /// The SA events told already: (SPI, direction, kind).
    told: Mutex<HashSet<(u32, Direction, String)>>,
    /// Per node, whether the host counts it up. Only such a node is
    /// asked: one that failed gets the pair's SAs with its next life's
    /// configuration, and one fenced and back in the same life must not
    /// be given SAs to run (its peer may run them).
    up: [AtomicBool; 2],
    /// Per node, the requests being carried out on it now.
    busy: [AtomicUsize; 2],
    /// Per node, when it last answered a request of the host's socket.
    heard: [Heard; 2],
}

/// When a node last answered, in milliseconds since a start of the host's
/// own (0: never).
struct Heard {
    start: std::time::Instant,
    at_ms: std::sync::atomic::AtomicU64,
}

impl Heard {
    fn new() -> Self {
        Heard {
            start: std::time::Instant::now(),
            at_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now(&self) {
        let ms = self.start.elapsed().as_millis() as u64 + 1;
        self.at_ms.store(ms, Ordering::Release);
    }

    fn within(&self, d: Duration) -> bool {
        let at = self.at_ms.load(Ordering::Acquire);
        let now = self.start.elapsed().as_millis() as u64 + 1;
        at > 0 && now.saturating_sub(at) <= d.as_millis() as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fanout {
    /// The fan-out to `nodes` (a pair).
    pub fn new(nodes: &[ManagedNode]) -> Self {
        let paths = [nodes[0].control.clone(), nodes[1].control.clone()];
        Self::with_link(nodes, Box::new(Sockets(paths)))
    }

    /// The fan-out to `nodes`, reached through `link`.
    pub fn with_link(nodes: &[ManagedNode], link: Box<dyn Link>) -> Self {
        let member = |n: &ManagedNode| Member {
            name: n.name.clone(),
            control: n.control.clone(),
        };
        Fanout {
            link,
            members: [member(&nodes[0]), member(&nodes[1])],
            book: Mutex::new(Book::default()),
            watchers: Mutex::new(Vec::new()),
            told: Mutex::new(HashSet::new()),
            up: [AtomicBool::new(false), AtomicBool::new(false)],
            busy: [AtomicUsize::new(0), AtomicUsize::new(0)],
            heard: [Heard::new(), Heard::new()],
        }
    }

    /// A copy of this fan-out (what it keeps), reaching the nodes through
    /// `link`: the explorer goes on from a state in two ways.
    #[cfg(test)]
    fn fork(&self, link: Box<dyn Link>) -> Fanout {
        Fanout {
            link,
            members: self.members.clone(),
            book: Mutex::new(lock(&self.book).clone()),
            watchers: Mutex::new(Vec::new()),
            told: Mutex::new(lock(&self.told).clone()),
            up: std::array::from_fn(|i| AtomicBool::new(self.up[i].load(Ordering::Acquire))),
            busy: [AtomicUsize::new(0), AtomicUsize::new(0)],
            heard: [Heard::new(), Heard::new()],
        }
    }

    /// What the fan-out keeps, written out (the explorer tells states by it).
    #[cfg(test)]
    fn state_key(&self) -> String {
        let book = lock(&self.book);
        format!("{:?} {:?} {:?}", book.missed, book.overflowed, self.up)
    }

    /// Whether the host counts node `i` up.
    pub fn set_up(&self, i: usize, up: bool) {
        self.up[i].store(up, Ordering::Release);
    }

    /// `request` to node `i` if the host counts it up.
    fn send_up(&self, i: usize, request: &Value) -> Reach {
        if !self.up[i].load(Ordering::Acquire) {
            return Reach::Absent(NOT_UP.into());
        }
        self.busy[i].fetch_add(1, Ordering::AcqRel);
        let reach = send(&*self.link, i, request, &self.heard[i]);
        self.busy[i].fetch_sub(1, Ordering::AcqRel);
        reach
    }

    /// Node `i` answered the host (a poll).
    pub fn heard_from(&self, i: usize) {
        self.heard[i].now();
    }

    /// Whether node `i` is carrying out a request of the host's socket and
    /// answered the host within `within`: it answers its polls only after the
    /// request (its control requests are answered in turn), so a poll it
    /// leaves unanswered meanwhile is no sign of failure while it keeps
    /// answering the requests. A node that stopped answering them (frozen,
    /// with the daemon's requests waiting on it one after another) is
    /// failed as any silent node once `within` has passed.
    pub fn busy_answering(&self, i: usize, within: Duration) -> bool {
        self.busy[i].load(Ordering::Acquire) > 0 && self.heard[i].within(within)
    }

    /// Holds the book: no request is fanned out until it is dropped.
    pub fn hold(&self) -> Held<'_> {
        Held {
            book: lock(&self.book),
        }
    }

    // ---- handle_* ----

    /// Answers one request of the host's socket; a `watch` keeps `back`
    /// for the events to come.
    pub fn handle_request(&self, req: Request, back: Sender<Value>) {
        if let Request::Watch {} = req {
            if back.send(carried_out(&Done {})).is_ok() {
                lock(&self.watchers).push(back);
            }
            return;
        }
        let _ = back.send(self.answer(req).unwrap_or_else(refusal));
    }

    /// One line of node `i`'s event stream: told to every watcher, an SA
    /// event only the first time either node tells it.
    pub fn handle_event(&self, i: usize, line: &str) {
        let Ok(mut event) = serde_json::from_str::<Event>(line) else {
            return;
        };
        match &mut event {
            Event::Sa {
                spi,
                direction,
                kind,
                ..
            } => {
                let key = (*spi, Direction::from(*direction), kind.clone());
                if !lock(&self.told).insert(key) {
                    return;
                }
            }
            Event::Node { line, .. } => *line = format!("{}: {line}", self.members[i].name),
            Event::Acquire { .. } => {}
        }
        let Ok(v) = serde_json::to_value(&event) else {
            return;
        };
        lock(&self.watchers).retain(|w| w.send(v.clone()).is_ok());
    }

    // ---- mutators ----

    /// Sends node `i` what it missed, oldest first, while it answers;
    /// nothing if a request is being fanned out (it catches the node up
    /// first itself). The host's poll of a node calls this, and must not
    /// wait: a request held up by a node that hangs would make the other
    /// node miss its polls and be failed.
    pub fn catch_up(&self, i: usize) {
        let mut book = match self.book.try_lock() {
            Ok(book) => book,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        self.catch_up_held(&mut book, i);
    }

    fn catch_up_held(&self, book: &mut Book, i: usize) {
        let m = &self.members[i];
        while let Some(request) = book.missed[i].front() {
            match self.send_up(i, request) {
                Reach::Absent(why) => {
                    if why.starts_with(BUSY) {
                        book.held_back[i] += 1;
                        let n = book.held_back[i];
                        if n.is_power_of_two() && n >= 16 {
                            say(&format!(
                                "{} refused {request} {n} times in a row for a reason that passes ({why}): the {} requests it missed after it wait",
                                m.name,
                                book.missed[i].len() - 1
                            ));
                        }
                    }
                    return;
                }
                Reach::Done(_) => say(&format!("{} got a request it missed", m.name)),
                Reach::Refused(why) => say(&format!(
                    "{} refused a request it missed ({request}): {why}",
                    m.name
                )),
            }
            book.missed[i].pop_front();
            book.held_back[i] = 0;
        }
    }

    /// Fans a change out: each node gets what it missed first, then
    /// `request`; a node that does not answer keeps it for later.
    fn change(&self, book: &mut Book, request: &Value) -> [Reach; 2] {
        let held_back: [Option<Reach>; 2] = std::array::from_fn(|i| {
            self.catch_up_held(book, i);
            if book.overflowed[i] {
                Some(Reach::Absent(format!(
                    "it missed more than {MAX_MISSED} requests: it must restart"
                )))
            } else if !book.missed[i].is_empty() {
                Some(Reach::Absent("it has not had what it missed yet".into()))
            } else {
                None
            }
        });
        // Both nodes at once: a change costs the slower node's time, not
        // the sum (a new SA's first marks are made durable on each).
        let reaches = std::thread::scope(|s| {
            let [a, b] = held_back;
            let b = s.spawn(move || b.unwrap_or_else(|| self.send_up(1, request)));
            let a = a.unwrap_or_else(|| self.send_up(0, request));
            [
                a,
                b.join()
                    .unwrap_or_else(|_| Reach::Absent("panicked".into())),
            ]
        });
        for (i, r) in reaches.iter().enumerate() {
            if let Reach::Absent(_) = r {
                self.keep(book, i, request.clone());
            }
        }
        reaches
    }

    fn keep(&self, book: &mut Book, i: usize, request: Value) {
        if book.overflowed[i] {
            return;
        }
        if book.missed[i].len() >= MAX_MISSED {
            book.missed[i].clear();
            book.overflowed[i] = true;
            say(&format!(
                "{} missed more than {MAX_MISSED} requests: restart it (its next life is configured with the pair's SAs)",
                self.members[i].name
            ));
            return;
        }
        book.missed[i].push_back(request);
    }

    /// A change nobody carried out: not kept for later either.
    fn unkeep(book: &mut Book, reaches: &[Reach; 2]) {
        for (i, r) in reaches.iter().enumerate() {
            if let Reach::Absent(_) = r {
                book.missed[i].pop_back();
            }
        }
    }

    // ---- the requests ----

    fn answer(&self, req: Request) -> Result<Value, String> {
        match req {
            Request::SpiAlloc { spi: None } => self.spi_alloc(),
            Request::SpiAlloc { spi: Some(spi) } => {
                let spi = spi.value()?;
                let r = json!({ "op": "spi_alloc", "spi": spi });
                self.all_of(&self.each(&r))
            }
            Request::SaQuery { spi, direction } => {
                let r = json!({ "op": "sa_query", "spi": spi.value()?, "direction": direction });
                self.sa_query(&r)
            }
            Request::SaAdd { yaml, position, .. } => self.sa_add(&yaml, position),
            Request::SaDel { spi, direction } => {
                let spi = spi.value()?;
                // The daemon forgets the SA whatever the nodes answer: an
                // SA with its SPI and direction later is another.
                lock(&self.told).retain(|(s, d, _)| (*s, *d) != (spi, direction.into()));
                let r = json!({ "op": "sa_del", "spi": spi, "direction": direction });
                self.changed(&r, true)
            }
            Request::SpdPut { yaml } => {
                self.changed(&json!({ "op": "spd_put", "yaml": yaml }), false)
            }
            Request::SpdDel { yaml } => {
                self.changed(&json!({ "op": "spd_del", "yaml": yaml }), true)
            }
            other => Err(format!(
                "the host's socket takes the requests of an IKE daemon (spi_alloc, sa_add, sa_del, sa_query, spd_put, spd_del, watch), not {other:?}: ask a node's own socket"
            )),
        }
    }

    /// `request` to both nodes, at once.
    fn each(&self, request: &Value) -> [Reach; 2] {
        std::thread::scope(|s| {
            let b = s.spawn(|| self.send_up(1, request));
            let a = self.send_up(0, request);
            [
                a,
                b.join()
                    .unwrap_or_else(|_| Reach::Absent("panicked".into())),
            ]
        })
    }

    /// The first node's answer if neither refused and one carried it out.
    fn all_of(&self, reaches: &[Reach; 2]) -> Result<Value, String> {
        if let Some(why) = self.refused(reaches) {
            return Err(why);
        }
        Self::done(reaches).ok_or_else(|| self.neither(reaches))
    }

    /// The first answer of a node that carried the request out.
    fn done(reaches: &[Reach; 2]) -> Option<Value> {
        reaches.iter().find_map(|r| match r {
            Reach::Done(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// The first refusal, with its node's name.
    fn refused(&self, reaches: &[Reach; 2]) -> Option<String> {
        self.members.iter().zip(reaches).find_map(|(m, r)| match r {
            Reach::Refused(why) => Some(format!("{}: {why}", m.name)),
            _ => None,
        })
    }

    fn neither(&self, reaches: &[Reach; 2]) -> String {
        let why: Vec<String> = self
            .members
            .iter()
            .zip(reaches)
            .map(|(m, r)| match r {
                Reach::Absent(why) | Reach::Refused(why) => format!("{}: {why}", m.name),
                Reach::Done(_) => format!("{}: carried out", m.name),
            })
            .collect();
        format!("neither node of the pair answered ({})", why.join("; "))
    }

    /// An SPI drawn on the first node that answers and reserved on the
    /// other; drawn again if the other has it. A node that did not answer
    /// is not asked again within the request: one that hangs costs the
    /// control socket's timeout once, within the daemon's patience.
    fn spi_alloc(&self) -> Result<Value, String> {
        let mut absent = [None, None];
        let mut last = String::new();
        for _ in 0..SPI_DRAWS {
            let mut drawn = None;
            for (i, gone) in absent.iter_mut().enumerate() {
                if gone.is_some() {
                    continue;
                }
                match self.send_up(i, &json!({ "op": "spi_alloc" })) {
                    Reach::Done(a) => match read::<SpiAllocated>("spi_alloc", &a) {
                        Ok(s) => {
                            drawn = Some((i, s.spi));
                            break;
                        }
                        Err(e) => last = format!("{}: {e}", self.members[i].name),
                    },
                    Reach::Refused(why) => last = format!("{}: {why}", self.members[i].name),
                    r @ Reach::Absent(_) => *gone = Some(r),
                }
            }
            let Some((i, spi)) = drawn else {
                return Err(match absent {
                    [Some(a), Some(b)] => self.neither(&[a, b]),
                    _ => format!("no inbound SPI drawn ({last})"),
                });
            };
            let other = &self.members[1 - i];
            if absent[1 - i].is_some() {
                return Ok(carried_out(&SpiAllocated { spi }));
            }
            match self.send_up(1 - i, &json!({ "op": "spi_alloc", "spi": spi })) {
                Reach::Done(_) => return Ok(carried_out(&SpiAllocated { spi })),
                Reach::Absent(_) => return Ok(carried_out(&SpiAllocated { spi })),
                Reach::Refused(why) => last = format!("{}: {why}", other.name),
            }
        }
        Err(format!(
            "no inbound SPI free on both nodes in {SPI_DRAWS} draws (last: {last})"
        ))
    }

    /// The larger of the two nodes' counters.
    fn sa_query(&self, request: &Value) -> Result<Value, String> {
        let reaches = self.each(request);
        let counts: Vec<SaQueried> = reaches
            .iter()
            .filter_map(|r| match r {
                Reach::Done(a) => read::<SaQueried>("sa_query", a).ok(),
                _ => None,
            })
            .collect();
        if counts.is_empty() {
            return Err(self
                .refused(&reaches)
                .unwrap_or_else(|| self.neither(&reaches)));
        }
        Ok(carried_out(&SaQueried {
            packets: counts.iter().map(|c| c.packets).max().unwrap_or(0),
            bytes: counts.iter().map(|c| c.bytes).max().unwrap_or(0),
        }))
    }

    /// SAs to both nodes, each node giving an SA without a home the node
    /// holding its local tunnel address (`home_by_address`: both nodes
    /// read the same SA alike, from their own files). When one node
    /// refuses, the SAs are deleted again everywhere else: at once where
    /// the add was carried out, and where it was not answered (it may
    /// have been carried out all the same) when that node answers.
    fn sa_add(&self, yaml: &str, position: Option<usize>) -> Result<Value, String> {
        let added = sas_of(yaml)?;
        let request = json!({
            "op": "sa_add", "yaml": yaml, "position": position, "home_by_address": true
        });
        let mut book = lock(&self.book);
        let reaches = self.change(&mut book, &request);
        let refused = self.refused(&reaches);
        if refused.is_none()
            && let Some(answer) = Self::done(&reaches)
        {
            return Ok(answer);
        }
        let undo = |spi: &u32, direction: &DirectionArg| json!({ "op": "sa_del", "spi": spi, "direction": direction });
        for (i, r) in reaches.iter().enumerate() {
            match r {
                Reach::Done(_) => {
                    for (spi, direction) in &added {
                        if let Reach::Absent(_) = self.send_up(i, &undo(spi, direction)) {
                            self.keep(&mut book, i, undo(spi, direction));
                        }
                    }
                }
                Reach::Absent(_) => {
                    // It may have carried the add out all the same (its
                    // answer lost): the daemon is told the add failed
                    // and will never delete it. Unless the other node
                    // refused the SPI as one it has: then this node has
                    // that SA too, and the undo would delete it.
                    book.missed[i].pop_back();
                    if !refused
                        .as_ref()
                        .is_some_and(|why| why.contains("duplicate"))
                    {
                        for (spi, direction) in &added {
                            self.keep(&mut book, i, undo(spi, direction));
                        }
                    }
                }
                Reach::Refused(_) => {}
            }
        }
        Err(refused.unwrap_or_else(|| self.neither(&reaches)))
    }

    /// A change of SAs or rules to both nodes: carried out when one node
    /// carried it out (a node refused what its peer carried out: the host
    /// says the nodes disagree). A change neither node carried out fails;
    /// a deletion (`deletion`) is kept for the nodes that did not answer
    /// all the same (the daemon forgets what it deletes).
    fn changed(&self, request: &Value, deletion: bool) -> Result<Value, String> {
        let mut book = lock(&self.book);
        let reaches = self.change(&mut book, request);
        let Some(answer) = Self::done(&reaches) else {
            if !deletion {
                Self::unkeep(&mut book, &reaches);
            }
            return Err(self
                .refused(&reaches)
                .unwrap_or_else(|| self.neither(&reaches)));
        };
        if let Some(why) = self.refused(&reaches) {
            say(&format!(
                "the nodes disagree on {request}: one carried it out, {why}"
            ));
        }
        Ok(answer)
    }

    // ---- poll_* ----

    /// Follows node `i`'s event stream until `stop`, opening it again
    /// whenever it is lost (the node restarted, or was down).
    pub fn poll_events(&self, i: usize, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(s) = UnixStream::connect(&self.members[i].control) {
                self.follow(i, s, stop);
            }
            std::thread::sleep(REWATCH);
        }
    }

    fn follow(&self, i: usize, mut s: UnixStream, stop: &AtomicBool) {
        if s.set_read_timeout(Some(REWATCH)).is_err() || writeln!(s, r#"{{"op":"watch"}}"#).is_err()
        {
            return;
        }
        let mut input = BufReader::new(s);
        let mut line = Vec::new();
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) if line.ends_with(b"\n") => {
                    let text = String::from_utf8_lossy(&line);
                    if first {
                        // The answer to the watch.
                        let answer = serde_json::from_str(&text).unwrap_or(Value::Null);
                        if read::<Done>("watch", &answer).is_err() {
                            return;
                        }
                        first = false;
                    } else {
                        self.handle_event(i, &text);
                    }
                    line.clear();
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }
}

/// The SPIs and directions of the SAs in an `sa_add`'s YAML, to delete
/// them again should one node refuse them.
fn sas_of(yaml: &str) -> Result<Vec<(u32, DirectionArg)>, String> {
    let doc: Yaml = serde_norway::from_str(yaml).map_err(|e| format!("sa_add yaml: {e}"))?;
    let Some(sas) = doc.get("sas").and_then(Yaml::as_sequence) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, sa) in sas.iter().enumerate() {
        let direction = match sa.get("direction").and_then(Yaml::as_str) {
            Some("outbound") => DirectionArg::Outbound,
            Some("inbound") => DirectionArg::Inbound,
            other => {
                return Err(format!(
                    "sas[{k}].direction: {other:?}: outbound or inbound"
                ));
            }
        };
        let spi = match sa.get("spi") {
            Some(Yaml::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(Yaml::String(t)) => espgate_control::hexkey::parse_u32(t),
            _ => None,
        }
        .ok_or_else(|| format!("sas[{k}].spi: missing or not an SPI"))?;
        out.push((spi, direction));
    }
    Ok(out)
}

#[cfg(test)]
mod explore;
#[cfg(test)]
pub(crate) mod tests;
