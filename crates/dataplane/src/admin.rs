//! Changing a running node's SAs and rules (the control socket's
//! `sa_add`, `sa_del`, `sa_rekey`, `spi_alloc`, `spd_put`, `spd_del`) and
//! reading its counters (`stats`, `sa_list`, `sa_query`).
//!
//! A change never stops the workers. An SA is built off the packet path
//! and handed to its worker through the command ring; the shared tables
//! (policy, owners) are then replaced whole, so each burst sees the old
//! tables or the new ones, never a mix. The order makes every step safe
//! under traffic:
//!
//! - add: the worker takes the SA; the owner maps name it; the mirror task
//!   registers it and, if it runs here, gives it its lease limit; only then
//!   do the new rules send packets to it.
//! - rekey (make-before-break): the new SA is added as above; one table
//!   change moves every rule that named the old SA to the new one. An
//!   inbound old SA keeps decrypting what is still in flight (its packets
//!   pass the rules that named it, and only those, though they now name
//!   its successor) until its grace period ends; then it is deleted, like
//!   the old outbound one, which no rule names any more.
//! - delete: the tables forget the SA and its rules first, then its worker
//!   and the mirror do.
//!
//! An SA whose key material an SA of the node runs, or ran (its state
//! directory remembers every key it used), is refused: that key's
//! sequence numbers would start again. With a state directory a new SA
//! runs only once its first mark is durable.

use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use espgate_esp::{Direction, SaConfig};
use espgate_mirror::PairSaView;

use crate::command::SaCommand;
use crate::config::SaEntry;
use crate::mirror_task::Order;
use crate::node::{BuiltSa, NodeError, Placement, Refusal, RunningNode, build_sa, check_sas};
use crate::snapshot::WorkerSnapshot;
use crate::spd::{Action, SpdRule};
use crate::spi_pool::Unreserved;
use crate::tables::Tables;

/// How long a change waits for the workers and the mirror task.
const SETTLE: Duration = Duration::from_secs(2);

/// Whether rule `r` protects with SA (`spi`, `direction`).
fn names(r: &SpdRule, spi: u32, direction: Direction) -> bool {
    r.direction == direction && r.action == Action::Protect(spi)
}

impl RunningNode {
    /// Every worker's counters and SAs now.
    pub fn snapshot(&self) -> Result<Vec<WorkerSnapshot>, NodeError> {
        let workers = self.shared.commands.len();
        let (tx, rx) = channel();
        for w in 0..workers {
            self.send_to(w, SaCommand::Snapshot(tx.clone()))?;
        }
        drop(tx);
        let deadline = Instant::now() + SETTLE;
        let mut out = Vec::with_capacity(workers);
        while out.len() < workers {
            let left = deadline.saturating_duration_since(Instant::now());
            out.push(
                rx.recv_timeout(left)
                    .map_err(|_| NodeError::Busy("a worker"))?,
            );
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    /// Every SA of the pair as the mirror task sees it (empty for a node
    /// on its own).
    pub fn mirror_views(&self) -> Result<Vec<PairSaView>, NodeError> {
        if !self.mirrored() {
            return Ok(Vec::new());
        }
        let (tx, rx) = channel();
        self.push_order(Order::View(tx))?;
        rx.recv_timeout(SETTLE)
            .map_err(|_| NodeError::Busy("the mirror task"))
    }

    /// SAs replaced by a rekey and not yet gone, with the time left.
    pub fn retiring(&self) -> impl Iterator<Item = (u32, Direction, Duration)> + '_ {
        let now = Instant::now();
        self.retiring
            .iter()
            .map(move |(at, spi, d)| (*spi, *d, at.saturating_duration_since(now)))
    }

    /// Adds SAs, and policy rules for them, to the running node: the
    /// rules go after the existing ones, or from index `position` on.
    /// Nothing changes if any SA or rule is refused.
    pub fn add_sas(
        &mut self,
        entries: Vec<SaEntry>,
        rules: Vec<SpdRule>,
        position: Option<usize>,
    ) -> Result<(), NodeError> {
        let mut cfg = self.cfg.clone();
        cfg.sas.extend(entries.iter().cloned());
        let at = position.unwrap_or(cfg.spd.len()).min(cfg.spd.len());
        cfg.spd.splice(at..at, rules);
        check_sas(&cfg)?;
        self.install(&cfg, &entries)?;
        self.shared
            .tables
            .publish(self.shared.tables.load().with_rules(cfg.spd.clone()));
        self.cfg = cfg;
        Ok(())
    }

    /// An inbound SPI for an SA to come: no inbound SA of the node has
    /// it and it was not handed out before (see [`crate::spi_pool`]).
    pub fn allocate_spi(&mut self) -> Result<u32, NodeError> {
        let cfg = &self.cfg;
        let used = |spi| {
            cfg.sas
                .iter()
                .any(|e| e.sa.spi == spi && e.sa.direction == Direction::Inbound)
        };
        self.spis
            .allocate(used, Instant::now())
            .ok_or(NodeError::Refused(Refusal::NoSpi))
    }

    /// Reserves inbound SPI `spi` as [`allocate_spi`](Self::allocate_spi)
    /// would have handed it out: a pair's host draws an SPI on one node
    /// and reserves it on the other, so neither hands it out twice.
    pub fn reserve_spi(&mut self, spi: u32) -> Result<(), NodeError> {
        let used = self
            .cfg
            .sas
            .iter()
            .any(|e| e.sa.spi == spi && e.sa.direction == Direction::Inbound);
        self.spis.reserve(spi, used, Instant::now()).map_err(|why| {
            NodeError::Refused(match why {
                Unreserved::Taken => Refusal::SpiTaken(spi),
                Unreserved::Full => Refusal::NoSpi,
            })
        })
    }

    /// Puts rules into the SPD: a rule whose selectors a rule has already
    /// ([`SpdRule::same_selectors`]) replaces that rule's action where it
    /// stands; another goes before the first rule that covers it (a more
    /// specific rule before a wider one, as priorities order an IKE
    /// daemon's policies), or last; a rule naming an SA a rekey replaces
    /// is refused. An inbound rule moved from one SA to another is a
    /// rekey: what the old SA still decrypts passes the rule
    /// while the old SA lives, as after [`rekey`](Self::rekey).
    pub fn put_rules(&mut self, rules: Vec<SpdRule>) -> Result<(), NodeError> {
        // An SA a rekey replaces goes at the end of its grace, and the
        // rules naming it with it.
        for r in &rules {
            if let Action::Protect(spi) = r.action
                && self
                    .retiring
                    .iter()
                    .any(|(_, s, d)| *s == spi && *d == r.direction)
            {
                return Err(NodeError::Refused(Refusal::Replacing {
                    spi,
                    direction: r.direction,
                }));
            }
        }
        let mut cfg = self.cfg.clone();
        let mut moved = Vec::new();
        for rule in rules {
            if let Some(r) = cfg.spd.iter_mut().find(|r| r.same_selectors(&rule)) {
                if let (Direction::Inbound, Action::Protect(old), Action::Protect(new)) =
                    (r.direction, r.action, rule.action)
                    && old != new
                {
                    moved.push((old, r.clone()));
                }
                r.action = rule.action;
            } else {
                let at = cfg
                    .spd
                    .iter()
                    .position(|r| r.covers(&rule))
                    .unwrap_or(cfg.spd.len());
                cfg.spd.insert(at, rule);
            }
        }
        check_sas(&cfg)?;
        let mut tables = self.shared.tables.load().with_rules(cfg.spd.clone());
        for (old, rule) in moved {
            tables.rule_moved(old, &rule);
        }
        self.shared.tables.publish(tables);
        self.cfg = cfg;
        Ok(())
    }

    /// Removes the rules with these selectors (their actions aside);
    /// nothing changes if one has no such rule.
    pub fn delete_rules(&mut self, rules: &[SpdRule]) -> Result<(), NodeError> {
        let mut cfg = self.cfg.clone();
        for rule in rules {
            let Some(i) = cfg.spd.iter().position(|r| r.same_selectors(rule)) else {
                return Err(NodeError::Refused(Refusal::NoRule {
                    direction: rule.direction,
                    src: rule.src,
                    dst: rule.dst,
                }));
            };
            cfg.spd.remove(i);
        }
        let mut tables = self.shared.tables.load().with_rules(cfg.spd.clone());
        tables.rules_gone(rules);
        self.shared.tables.publish(tables);
        self.cfg = cfg;
        Ok(())
    }

    /// Replaces SA (`old`, `direction`) by `new` (same direction, another
    /// SPI), make-before-break: the rules that named the old SA name the
    /// new one at once; the old one goes after `grace` (see
    /// [`retire_due`](Self::retire_due)). The new SA keeps the old one's
    /// worker, home node and mirror settings.
    pub fn rekey(
        &mut self,
        old: u32,
        direction: Direction,
        new: SaConfig,
        grace: Duration,
    ) -> Result<(), NodeError> {
        let Some(prev) = self
            .cfg
            .sas
            .iter()
            .find(|e| e.sa.spi == old && e.sa.direction == direction)
        else {
            return Err(NodeError::UnknownSpi {
                spi: old,
                direction,
            });
        };
        if new.direction != direction {
            return Err(NodeError::Refused(Refusal::Successor {
                old,
                direction,
                new: new.spi,
                new_direction: new.direction,
            }));
        }
        if self
            .retiring
            .iter()
            .any(|(_, s, d)| *s == old && *d == direction)
        {
            return Err(NodeError::Refused(Refusal::Replacing {
                spi: old,
                direction,
            }));
        }
        let entry = SaEntry {
            sa: new,
            ..prev.clone()
        };
        let spi = entry.sa.spi;
        let mut cfg = self.cfg.clone();
        cfg.sas.push(entry.clone());
        let mut moved = Vec::new();
        for r in &mut cfg.spd {
            if names(r, old, direction) {
                moved.push(r.clone());
                r.action = Action::Protect(spi);
            }
        }
        check_sas(&cfg)?;
        self.install(&cfg, std::slice::from_ref(&entry))?;
        let mut tables = self.shared.tables.load().with_rules(cfg.spd.clone());
        if direction == Direction::Inbound {
            for r in &moved {
                tables.rule_moved(old, r);
            }
        }
        self.shared.tables.publish(tables);
        self.retiring.push((Instant::now() + grace, old, direction));
        self.cfg = cfg;
        Ok(())
    }

    /// Deletes SA (`spi`, `direction`) and the rules that name it.
    pub fn delete_sa(&mut self, spi: u32, direction: Direction) -> Result<(), NodeError> {
        let Some(i) = self
            .cfg
            .sas
            .iter()
            .position(|e| e.sa.spi == spi && e.sa.direction == direction)
        else {
            return Err(NodeError::UnknownSpi { spi, direction });
        };
        let owner = self.cfg.owner(&self.cfg.sas[i]);
        let mut cfg = self.cfg.clone();
        cfg.sas.remove(i);
        let gone: Vec<SpdRule> = cfg
            .spd
            .iter()
            .filter(|r| names(r, spi, direction))
            .cloned()
            .collect();
        cfg.spd.retain(|r| !names(r, spi, direction));
        let mut tables: Tables = self.shared.tables.load().with_rules(cfg.spd.clone());
        tables.owners_mut(direction).remove(&spi);
        if direction == Direction::Inbound {
            tables.moved_from.remove(&spi);
        }
        tables.rules_gone(&gone);
        self.shared.tables.publish(tables);
        self.send_to(owner, SaCommand::Remove { spi, direction })?;
        if let Some(k) = &self.keeper {
            k.forget(spi, direction);
        }
        self.aging.remove(spi, direction);
        if self.mirrored() {
            self.push_order(Order::RemoveSa { spi, direction })?;
        }
        self.retiring
            .retain(|(_, s, d)| !(*s == spi && *d == direction));
        self.cfg = cfg;
        self.settle()
    }

    /// Deletes the SAs whose grace period after a rekey has ended; returns
    /// them.
    pub fn retire_due(&mut self, now: Instant) -> Vec<(u32, Direction)> {
        let due: Vec<(u32, Direction)> = self
            .retiring
            .iter()
            .filter(|(at, _, _)| *at <= now)
            .map(|(_, spi, d)| (*spi, *d))
            .collect();
        due.into_iter()
            .filter(|(spi, d)| match self.delete_sa(*spi, *d) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(spi, %d, "retiring a rekeyed SA: {e}");
                    false
                }
            })
            .collect()
    }

    /// Tells the workers of the SAs whose time limits `now` passed, and
    /// waits until they have carried it out; returns them: (SPI,
    /// direction, hard).
    pub fn expire_due(&mut self, now: Instant) -> Vec<(u32, Direction, bool)> {
        let due = self.aging.due(now);
        for &(spi, direction, hard) in &due {
            let Some(entry) = self
                .cfg
                .sas
                .iter()
                .find(|e| e.sa.spi == spi && e.sa.direction == direction)
            else {
                continue;
            };
            let owner = self.cfg.owner(entry);
            if let Err(e) = self.send_to(
                owner,
                SaCommand::Expire {
                    spi,
                    direction,
                    hard,
                },
            ) {
                tracing::warn!(spi, %direction, "telling a time limit: {e}");
            }
        }
        if !due.is_empty()
            && let Err(e) = self.settle()
        {
            tracing::warn!("telling time limits: {e}");
        }
        due
    }

    /// Refuses `entries` if one has the key material of an SA this node
    /// runs, or (as its state directory remembers) ran: that key's
    /// sequence numbers would start again.
    fn refuse_used_keys(&self, entries: &[SaEntry]) -> Result<(), NodeError> {
        for (i, e) in entries.iter().enumerate() {
            let runs = self
                .cfg
                .sas
                .iter()
                .chain(&entries[..i])
                .find(|o| o.sa.key == e.sa.key)
                .map(|o| (o.sa.spi, o.sa.direction, "runs"));
            let ran = || {
                self.keeper
                    .as_ref()
                    .and_then(|k| k.used_by(&e.sa.key))
                    .map(|(spi, d)| (spi, d, "ran"))
            };
            if let Some((by, by_direction, when)) = runs.or_else(ran) {
                return Err(NodeError::KeyUsed {
                    spi: e.sa.spi,
                    direction: e.sa.direction,
                    by,
                    by_direction,
                    when,
                });
            }
        }
        Ok(())
    }

    /// Builds `entries` (SAs of `cfg`, their keys unused), gives each its
    /// first durable mark (with a state directory), hands them to their
    /// workers, names them in the owner maps and registers them with the
    /// mirror. The rules are the caller's to publish.
    fn install(&mut self, cfg: &crate::NodeConfig, entries: &[SaEntry]) -> Result<(), NodeError> {
        self.refuse_used_keys(entries)?;
        let marks = match &self.keeper {
            Some(k) => k.admit(entries, SETTLE)?,
            None => vec![u64::MAX; entries.len()],
        };
        let built = entries
            .iter()
            .zip(marks)
            .map(|(e, mark)| build_sa(cfg, e, self.backend, Placement { mark, resume: None }))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tables: Tables = (*self.shared.tables.load()).clone();
        for (entry, sa) in entries.iter().zip(built) {
            let owner = cfg.owner(entry);
            let parked = cfg.mirror.is_some() && !cfg.is_home(entry);
            let cmd = match sa {
                BuiltSa::Outbound(sa) => SaCommand::InstallOutbound {
                    sa: Box::new(sa),
                    parked,
                },
                BuiltSa::Inbound(sa) => SaCommand::InstallInbound {
                    sa: Box::new(sa),
                    parked,
                },
            };
            self.send_to(owner, cmd)?;
            tables.name(&entry.sa, owner);
            let (sa, now) = (&entry.sa, Instant::now());
            self.aging.add(sa.spi, sa.direction, &sa.lifetime, now);
            if sa.direction == Direction::Inbound {
                self.spis.take(sa.spi);
            }
        }
        self.settle()?;
        self.shared.tables.publish(tables);
        if let Some(m) = &cfg.mirror {
            for entry in entries {
                let (done, told) = channel();
                self.push_order(Order::AddSa {
                    spi: entry.sa.spi,
                    direction: entry.sa.direction,
                    esn: entry.sa.esn,
                    home: entry.home.unwrap_or(m.protocol.node),
                    overrides: entry.mirror,
                    done,
                })?;
                told.recv_timeout(SETTLE)
                    .map_err(|_| NodeError::Busy("the mirror task"))?;
            }
            self.settle()?;
        }
        Ok(())
    }

    /// Sends a command to worker `w`, waiting while its ring is full.
    fn send_to(&self, w: usize, cmd: SaCommand) -> Result<(), NodeError> {
        if w >= self.shared.commands.len() {
            return Err(NodeError::Refused(Refusal::NoWorker(w)));
        }
        push_waiting(cmd, "a worker's command ring", |c| {
            self.shared.command_to(w, c)
        })
    }

    /// Gives the mirror task an order, waiting while its queue is full.
    fn push_order(&self, order: Order) -> Result<(), NodeError> {
        push_waiting(order, "the mirror task's order queue", |o| {
            self.orders.push(o)
        })
    }

    /// Waits until every worker has carried out the commands sent so far.
    fn settle(&self) -> Result<(), NodeError> {
        push_waiting((), "the workers", |()| {
            match self.shared.commands_pending() {
                0 => Ok(()),
                _ => Err(()),
            }
        })
    }
}

/// Tries `push` with `item` until it takes it, for at most [`SETTLE`]
/// (a full ring gives the item back); then `what` did not answer.
fn push_waiting<T>(
    mut item: T,
    what: &'static str,
    mut push: impl FnMut(T) -> Result<(), T>,
) -> Result<(), NodeError> {
    let t0 = Instant::now();
    loop {
        match push(item) {
            Ok(()) => return Ok(()),
            Err(back) if t0.elapsed() < SETTLE => {
                item = back;
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(_) => return Err(NodeError::Busy(what)),
        }
    }
}
