//! The keeper of a node's marks: its own thread, so a write's `fsync`
//! (milliseconds) never delays a worker nor the mirror's heartbeats. It
//! takes the SAs' progress (from the workers' progress rings on a node
//! without a mirror; from the mirror task, which drains them, on a pair),
//! writes the batches the [`Ledger`] decides on to the state directory,
//! and once each is durable raises the workers' marks with `Mark`
//! commands. A write that fails changes no mark: the SAs stall at their
//! marks (dropping as `lease_stall`) until a later write succeeds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use espgate_esp::Direction;

use crate::command::SaCommand;
use crate::config::SaEntry;
use crate::marks::{Ledger, key_digest};
use crate::node::NodeError;
use crate::progress::{Progress, Reached};
use crate::state_dir::StateDir;
use crate::worker::Shared;

/// How long to sleep when there was nothing to do.
const IDLE: Duration = Duration::from_micros(500);
/// How long to wait after a failed write before the next.
const RETRY: Duration = Duration::from_millis(100);

/// The marks of a running node, shared by its keeper thread, its mirror
/// task and its control calls (never by a worker).
#[derive(Debug)]
pub struct Keeper {
    /// Its clock's start (the ledger reads milliseconds since).
    start: Instant,
    ledger: Mutex<Ledger>,
    writes: AtomicU64,
    failures: AtomicU64,
}

impl Keeper {
    pub(crate) fn new(ledger: Ledger) -> Self {
        Keeper {
            start: Instant::now(),
            ledger: Mutex::new(ledger),
            writes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SAs reached these positions (highest sequence number used, or
    /// window top).
    pub(crate) fn progress(&self, reached: &[Reached]) {
        if reached.is_empty() {
            return;
        }
        let mut l = self.ledger();
        for r in reached {
            l.progress(r.spi, r.direction, r.pos, r.packets);
        }
    }

    /// An SA was moved to `pos` with its packet count raised to `packets`
    /// (activated there with an earlier owner's count): not traffic.
    pub(crate) fn moved(&self, spi: u32, d: Direction, pos: u64, packets: u64) {
        self.ledger().moved(spi, d, pos, packets);
    }

    /// Which SA the keeper follows under (`spi`, `d`) now (see
    /// [`Ledger::serial`]).
    pub(crate) fn serial(&self, spi: u32, d: Direction) -> Option<u64> {
        self.ledger().serial(spi, d)
    }

    /// SA `serial` left the node exactly at `last` (see [`Ledger::left`]).
    pub(crate) fn left(&self, spi: u32, d: Direction, serial: u64, last: u64) {
        self.ledger().left(spi, d, serial, last);
    }

    /// The node's last write, once every thread stopped: the marks of
    /// SAs that left exactly fall to just past where they left (see
    /// [`Ledger::last_batch`]). One that fails leaves the marks as they
    /// were, which is safe (logged).
    pub(crate) fn last_write(&self, dir: &StateDir) {
        let Some(next) = self.ledger().last_batch() else {
            return;
        };
        match dir.write(&next) {
            Ok(()) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("{e}: the marks stay a reach ahead of where the SAs left");
            }
        }
    }

    /// The SA (SPI, direction) that used key material `key`, now or in an
    /// earlier life, if any did.
    pub(crate) fn used_by(&self, key: &[u8]) -> Option<(u32, Direction)> {
        self.ledger().used_by(&key_digest(key))
    }

    /// Follows SAs added at run time (their keys checked unused) and waits
    /// until each has a durable mark; returns the marks, in order.
    pub(crate) fn admit(&self, entries: &[SaEntry], wait: Duration) -> Result<Vec<u64>, NodeError> {
        {
            let mut l = self.ledger();
            for e in entries {
                l.track(
                    e.sa.spi,
                    e.sa.direction,
                    key_digest(&e.sa.key),
                    e.sa.initial_seq,
                );
            }
        }
        let t0 = Instant::now();
        loop {
            let marks: Vec<u64> = {
                let l = self.ledger();
                entries
                    .iter()
                    .map(|e| l.limit(e.sa.spi, e.sa.direction))
                    .collect()
            };
            if marks.iter().all(|m| *m > 0) {
                return Ok(marks);
            }
            if t0.elapsed() > wait {
                for e in entries {
                    self.forget(e.sa.spi, e.sa.direction);
                }
                return Err(NodeError::Busy("the state directory"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Stops following a deleted SA (its key stays recorded).
    pub(crate) fn forget(&self, spi: u32, direction: Direction) {
        self.ledger().forget(spi, direction);
    }

    /// Durable writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Writes that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// The keeper's thread.
pub(crate) struct KeeperTask {
    pub(crate) keeper: Arc<Keeper>,
    pub(crate) dir: StateDir,
    pub(crate) shared: Arc<Shared>,
    /// The workers' progress rings, on a node without a mirror task.
    pub(crate) rings: Vec<Arc<ArrayQueue<Progress>>>,
}

impl KeeperTask {
    /// Runs until `stop` is set; returns the state directory for the
    /// node's last write.
    pub(crate) fn run(self, stop: &AtomicBool) -> StateDir {
        let mut pending: VecDeque<SaCommand> = VecDeque::new();
        let mut reached = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for ring in &self.rings {
                while let Some(p) = ring.pop() {
                    reached.push(p.reached());
                }
            }
            self.keeper.progress(&reached);
            reached.clear();
            let now = self.keeper.start.elapsed().as_millis() as u64;
            let batch = self.keeper.ledger().batch(now);
            let mut idle = true;
            if let Some(next) = batch {
                idle = false;
                match self.dir.write(&next) {
                    Ok(()) => {
                        let raised = self.keeper.ledger().written();
                        self.keeper.writes.fetch_add(1, Ordering::Relaxed);
                        pending.extend(raised.into_iter().map(|(spi, direction, mark)| {
                            SaCommand::Mark {
                                spi,
                                direction,
                                mark,
                            }
                        }));
                    }
                    Err(e) => {
                        self.keeper.ledger().failed();
                        self.keeper.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("{e}: the SAs stall at their marks until a write succeeds");
                        std::thread::sleep(RETRY);
                    }
                }
            }
            self.push(&mut pending);
            if idle {
                std::thread::sleep(IDLE);
            }
        }
        self.dir
    }

    /// Sends the marks waiting, in order: one a worker's ring refuses (it
    /// is full, or the tables do not name its SA yet, being added) waits
    /// with every mark after it, so a mark never overtakes a higher one;
    /// one of an SA no longer followed (deleted) goes.
    fn push(&self, pending: &mut VecDeque<SaCommand>) {
        while let Some(cmd) = pending.pop_front() {
            if let Err(cmd) = self.shared.command(cmd) {
                let followed = cmd
                    .sa()
                    .is_some_and(|(spi, d)| self.keeper.ledger().limit(spi, d) > 0);
                if followed {
                    pending.push_front(cmd);
                    return;
                }
            }
        }
    }
}
