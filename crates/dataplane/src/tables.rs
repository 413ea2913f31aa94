//! The tables every worker reads and SA changes replace: the SPD, which
//! worker owns each SPI, the UDP ports that carry ESP. They are never
//! changed in place: a change builds new tables and publishes them whole,
//! and each worker takes the new ones between two bursts (one atomic load
//! a loop when nothing changed), so a burst sees one consistent version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use espgate_esp::{Direction, SaConfig};
use rustc_hash::FxHashMap;

use crate::spd::{Action, Selectors, Spd, SpdRule};

/// One version of the shared tables.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Policy.
    pub spd: Spd,
    /// Outbound SPI → owning worker.
    pub out_owner: FxHashMap<u32, usize>,
    /// Inbound SPI → owning worker.
    pub in_owner: FxHashMap<u32, usize>,
    /// UDP ports that carry ESP to this node.
    pub encap_ports: Vec<u16>,
    /// Inbound SAs a rule named before it moved to another SA (a rekey) →
    /// those rules: until the old SA goes, what it decrypts passes them,
    /// and only them (the rules it was negotiated for), however many
    /// times they move on.
    pub moved_from: FxHashMap<u32, Vec<SpdRule>>,
}

impl Tables {
    /// The owner map of a direction.
    pub fn owners(&self, direction: Direction) -> &FxHashMap<u32, usize> {
        match direction {
            Direction::Outbound => &self.out_owner,
            Direction::Inbound => &self.in_owner,
        }
    }

    /// The owner map of a direction, to change.
    pub fn owners_mut(&mut self, direction: Direction) -> &mut FxHashMap<u32, usize> {
        match direction {
            Direction::Outbound => &mut self.out_owner,
            Direction::Inbound => &mut self.in_owner,
        }
    }

    /// Names SA `sa` as owned by worker `owner`, and an inbound SA's UDP
    /// port as one that carries ESP.
    pub fn name(&mut self, sa: &SaConfig, owner: usize) {
        self.owners_mut(sa.direction).insert(sa.spi, owner);
        if sa.direction == Direction::Inbound
            && let Some(e) = sa.udp_encap
            && !self.encap_ports.contains(&e.dst_port)
        {
            self.encap_ports.push(e.dst_port);
        }
    }

    /// Whether a packet decrypted by inbound SA `spi` is one the policy
    /// lets in through that SA: the first inbound rule it matches names
    /// the SA, or named it before a rekey moved it on.
    #[inline]
    pub fn admits(&self, spi: u32, sel: &Selectors) -> bool {
        let Some(rule) = self.spd.rule_for(Direction::Inbound, sel) else {
            return false;
        };
        rule.action == Action::Protect(spi)
            || (matches!(rule.action, Action::Protect(_))
                && !self.moved_from.is_empty()
                && self
                    .moved_from
                    .get(&spi)
                    .is_some_and(|rules| rules.iter().any(|r| r.same_selectors(rule))))
    }

    /// These rules are gone: no SA passes them for having been named by
    /// them (a later rule with the same selectors is another policy).
    pub fn rules_gone(&mut self, gone: &[SpdRule]) {
        for rules in self.moved_from.values_mut() {
            rules.retain(|r| !gone.iter().any(|g| g.same_selectors(r)));
        }
        self.moved_from.retain(|_, rules| !rules.is_empty());
    }

    /// Rule `rule` named inbound SA `old` and now names another: `old`
    /// goes on passing it while it lives.
    pub fn rule_moved(&mut self, old: u32, rule: &SpdRule) {
        let rules = self.moved_from.entry(old).or_default();
        if !rules.iter().any(|r| r.same_selectors(rule)) {
            rules.push(rule.clone());
        }
    }

    /// These tables with another rule list.
    pub fn with_rules(&self, rules: Vec<SpdRule>) -> Tables {
        Tables {
            spd: Spd::new(rules),
            ..self.clone()
        }
    }
}

/// The published tables and their version number.
#[derive(Debug, Default)]
pub struct TableCell {
    current: RwLock<Arc<Tables>>,
    generation: AtomicU64,
}

impl TableCell {
    /// A cell holding `tables` as version 0.
    pub fn new(tables: Tables) -> Self {
        TableCell {
            current: RwLock::new(Arc::new(tables)),
            generation: AtomicU64::new(0),
        }
    }

    /// The version number (bumped by every publish).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The tables now.
    pub fn load(&self) -> Arc<Tables> {
        self.with(|t| t.clone())
    }

    /// Reads the tables now without taking a reference to them (the
    /// reference count shares a cache line with what the workers read).
    pub fn with<R>(&self, f: impl FnOnce(&Arc<Tables>) -> R) -> R {
        match self.current.read() {
            Ok(t) => f(&t),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Replaces the tables; workers take them before their next burst.
    pub fn publish(&self, tables: Tables) {
        let new = Arc::new(tables);
        match self.current.write() {
            Ok(mut t) => *t = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
