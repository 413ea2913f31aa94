//! The mirror protocol of one node, sans-IO: feed it the workers' SA
//! progress, received frames and the time; take from it frames to send,
//! the sequence limit of each owned SA, and events.
//!
//! Owner side: SA state goes out when due (interval crossed) and at each
//! periodic refresh if changed; only the newest state of each SA waits, so
//! a slow or dead link never grows memory. Standby side: every SA state is
//! merged into the standby table, and an outbound one is acknowledged with
//! the lease now stored, which is what lets the owner go on. An owner
//! re-sends every state whose lease is not yet acknowledged at each
//! refresh, so a lost frame or acknowledgement delays an SA by at most one
//! refresh period. Heartbeats go
//! out every `heartbeat_ms`; a peer silent for `dead_after` of them is
//! declared dead.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use espgate_wire::mirror::{self, MirrorHeader, MirrorRecord, SaDir, SaState};

use crate::frame::{MirrorKey, seal};
use crate::policy::{OutboundPolicy, OwnedOutbound};
use crate::receive::{PeerFilter, Reject};
use crate::standby::StandbyTable;

/// How the mirror behaves; defaults in the node configuration's `mirror:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorConfig {
    /// This node's id.
    pub node: u32,
    /// The peer's id.
    pub peer: u32,
    /// Outbound state is due when the sequence number crosses a multiple.
    pub interval: u64,
    /// Added to the sequence number to make the lease.
    pub quantity: u64,
    /// Stall at the acknowledged lease (on), or run unlimited (off).
    pub lease: bool,
    /// How far a takeover jumps past the stored lease (ESN SAs).
    pub takeover_jump: u64,
    /// Inbound state is due when the window top crosses a multiple.
    pub inbound_interval: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Missed heartbeats before the peer is declared dead.
    pub dead_after: u32,
    /// Period of the refresh of every changed SA.
    pub refresh_ms: u64,
    /// Largest frame (mirror header to MAC) to build.
    pub max_frame: usize,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            node: 1,
            peer: 2,
            interval: 1024,
            quantity: 4096,
            lease: true,
            takeover_jump: 1 << 32,
            inbound_interval: 1024,
            heartbeat_ms: 10,
            dead_after: 3,
            refresh_ms: 100,
            max_frame: 1400,
        }
    }
}

/// Something the node should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorEvent {
    /// The peer is heard (again), in this epoch.
    PeerAlive {
        /// Its epoch.
        epoch: u64,
    },
    /// The peer missed `dead_after` heartbeats.
    PeerDead,
    /// An owned outbound SA may now go up to (not including) `limit`.
    LimitRaised {
        /// SPI.
        spi: u32,
        /// The new limit.
        limit: u64,
    },
}

/// Counters of the mirror link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Frames built for sending.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// SA state records sent.
    pub states_sent: u64,
    /// Lease acknowledgements sent.
    pub acks_sent: u64,
    /// Frames accepted.
    pub frames_received: u64,
    /// Records of types this version does not act on yet.
    pub records_ignored: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedInbound {
    top: u64,
    bitmap: Vec<u64>,
    bytes: u64,
    packets: u64,
    reported_block: u64,
    changed: bool,
}

/// One node's mirror protocol state.
pub struct Mirror {
    cfg: MirrorConfig,
    key: MirrorKey,
    epoch: u64,
    counter: u64,
    filter: PeerFilter,
    outbound: BTreeMap<u32, OwnedOutbound>,
    inbound: BTreeMap<u32, OwnedInbound>,
    due: VecDeque<(u32, SaDir)>,
    queued: BTreeSet<(u32, SaDir)>,
    acks: BTreeMap<u32, u64>,
    standby: StandbyTable,
    peer_alive: bool,
    last_heard: Option<u64>,
    next_heartbeat: u64,
    next_refresh: u64,
    events: VecDeque<MirrorEvent>,
    stats: MirrorStats,
}

impl Mirror {
    /// A node's mirror, started at `now_ms` in epoch `epoch` (new at every
    /// start, larger than any before: a clock reading will do).
    pub fn new(cfg: MirrorConfig, key: MirrorKey, epoch: u64, now_ms: u64) -> Self {
        Mirror {
            filter: PeerFilter::new(cfg.node, cfg.peer),
            cfg,
            key,
            epoch,
            counter: 0,
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
            due: VecDeque::new(),
            queued: BTreeSet::new(),
            acks: BTreeMap::new(),
            standby: StandbyTable::new(),
            peer_alive: false,
            last_heard: None,
            next_heartbeat: now_ms,
            next_refresh: now_ms + cfg.refresh_ms,
            events: VecDeque::new(),
            stats: MirrorStats::default(),
        }
    }

    fn enqueue(&mut self, key: (u32, SaDir)) {
        if self.queued.insert(key) {
            self.due.push_back(key);
        }
    }

    /// Takes ownership of outbound SA `spi`, whose last used sequence
    /// number is `seq`; its state is due at once.
    pub fn own_outbound(&mut self, spi: u32, esn: bool, seq: u64) {
        let c = self.cfg;
        let policy = OutboundPolicy::new(c.interval, c.quantity, c.lease, esn, c.takeover_jump);
        self.outbound.insert(spi, OwnedOutbound::new(policy, seq));
        self.enqueue((spi, SaDir::Outbound));
    }

    /// Takes ownership of inbound SA `spi` with window top `top`.
    pub fn own_inbound(&mut self, spi: u32, top: u64) {
        self.inbound.insert(
            spi,
            OwnedInbound {
                top,
                bitmap: Vec::new(),
                bytes: 0,
                packets: 0,
                reported_block: top / self.cfg.inbound_interval.max(1),
                changed: true,
            },
        );
        self.enqueue((spi, SaDir::Inbound));
    }

    /// A worker's absolute counters of an owned outbound SA.
    pub fn outbound_progress(&mut self, spi: u32, seq: u64, bytes: u64, packets: u64) {
        if let Some(s) = self.outbound.get_mut(&spi)
            && s.progress(seq, bytes, packets)
        {
            self.enqueue((spi, SaDir::Outbound));
        }
    }

    /// A worker's replay window and counters of an owned inbound SA.
    pub fn inbound_progress(
        &mut self,
        spi: u32,
        top: u64,
        bitmap: &[u64],
        bytes: u64,
        packets: u64,
    ) {
        let every = self.cfg.inbound_interval.max(1);
        let Some(s) = self.inbound.get_mut(&spi) else {
            return;
        };
        if top < s.top {
            return;
        }
        s.top = top;
        s.bitmap.clear();
        s.bitmap.extend_from_slice(bitmap);
        s.bytes = s.bytes.max(bytes);
        s.packets = s.packets.max(packets);
        s.changed = true;
        if top / every > s.reported_block {
            s.reported_block = top / every;
            self.enqueue((spi, SaDir::Inbound));
        }
    }

    /// The first sequence number owned outbound SA `spi` must not use.
    pub fn limit(&self, spi: u32) -> Option<u64> {
        self.outbound.get(&spi).map(OwnedOutbound::limit)
    }

    /// The peer's SAs as stored here.
    pub fn standby(&self) -> &StandbyTable {
        &self.standby
    }

    /// Whether the peer is heard.
    pub fn peer_alive(&self) -> bool {
        self.peer_alive
    }

    /// Frames dropped by the receive filter, by reason.
    pub fn rejected(&self) -> &crate::receive::RejectCounters {
        self.filter.rejected()
    }

    /// Link counters.
    pub fn stats(&self) -> MirrorStats {
        self.stats
    }

    /// SA states waiting to be sent (at most one per SA).
    pub fn queued(&self) -> usize {
        self.due.len()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MirrorEvent> {
        self.events.pop_front()
    }

    /// Takes in a frame from the mirror port (mirror header to MAC).
    pub fn handle_frame(&mut self, now_ms: u64, frame: &[u8]) -> Result<(), Reject> {
        let accepted = self.filter.accept(&self.key, frame)?;
        self.stats.frames_received += 1;
        self.last_heard = Some(now_ms);
        if !self.peer_alive || accepted.new_epoch {
            self.peer_alive = true;
            self.events.push_back(MirrorEvent::PeerAlive {
                epoch: accepted.header.epoch,
            });
        }
        for r in accepted.records {
            match r {
                MirrorRecord::SaState(s) => {
                    self.standby.merge(&s);
                    if s.dir == SaDir::Outbound {
                        let stored = self
                            .standby
                            .get(s.spi, SaDir::Outbound)
                            .map_or(0, |e| e.value);
                        self.acks.insert(s.spi, stored);
                    }
                }
                MirrorRecord::LeaseAck {
                    spi,
                    dir: SaDir::Outbound,
                    lease,
                } => {
                    if let Some(sa) = self.outbound.get_mut(&spi)
                        && sa.ack(lease)
                    {
                        self.events.push_back(MirrorEvent::LimitRaised {
                            spi,
                            limit: sa.limit(),
                        });
                    }
                }
                MirrorRecord::Heartbeat { .. } => {}
                _ => self.stats.records_ignored += 1,
            }
        }
        Ok(())
    }

    /// Checks the peer's liveness at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let deadline = self.cfg.heartbeat_ms * u64::from(self.cfg.dead_after);
        if self.peer_alive
            && self
                .last_heard
                .is_some_and(|t| now_ms.saturating_sub(t) > deadline)
        {
            self.peer_alive = false;
            self.events.push_back(MirrorEvent::PeerDead);
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) and
    /// [`poll_transmit`](Self::poll_transmit) next.
    pub fn poll_timeout(&self) -> u64 {
        let death = self
            .last_heard
            .filter(|_| self.peer_alive)
            .map_or(u64::MAX, |t| {
                t + self.cfg.heartbeat_ms * u64::from(self.cfg.dead_after) + 1
            });
        self.next_heartbeat.min(self.next_refresh).min(death)
    }

    fn state_record(&mut self, (spi, dir): (u32, SaDir)) -> Option<MirrorRecord> {
        match dir {
            SaDir::Outbound => {
                let s = self.outbound.get_mut(&spi)?;
                let lease = s.lease();
                s.sent(lease);
                let (_, bytes, packets) = s.counters();
                Some(MirrorRecord::SaState(SaState {
                    spi,
                    dir,
                    value: lease,
                    bytes,
                    packets,
                    bitmap: Vec::new(),
                    copy: false,
                }))
            }
            SaDir::Inbound => {
                let s = self.inbound.get_mut(&spi)?;
                s.changed = false;
                Some(MirrorRecord::SaState(SaState {
                    spi,
                    dir,
                    value: s.top,
                    bytes: s.bytes,
                    packets: s.packets,
                    bitmap: s.bitmap.clone(),
                    copy: false,
                }))
            }
        }
    }

    /// The next frame to send at `now_ms`, if anything is due: lease
    /// acknowledgements first (they unblock the peer), then SA states, then
    /// the heartbeat.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if now_ms >= self.next_refresh {
            self.next_refresh = now_ms + self.cfg.refresh_ms;
            let changed: Vec<(u32, SaDir)> = self
                .outbound
                .iter()
                .filter(|(_, s)| s.needs_refresh())
                .map(|(k, _)| (*k, SaDir::Outbound))
                .chain(
                    self.inbound
                        .iter()
                        .filter(|(_, s)| s.changed)
                        .map(|(k, _)| (*k, SaDir::Inbound)),
                )
                .collect();
            for k in changed {
                self.enqueue(k);
            }
        }
        let budget = self
            .cfg
            .max_frame
            .saturating_sub(mirror::HEADER_LEN + mirror::MAC_LEN);
        let mut records = Vec::new();
        let mut size = 0;
        let heartbeat_due = now_ms >= self.next_heartbeat;
        if heartbeat_due {
            records.push(MirrorRecord::Heartbeat {
                now_ms,
                owned: (self.outbound.len() + self.inbound.len()) as u32,
                peer_alive: self.peer_alive,
                generation: 0,
            });
            size += mirror::RECORD_HEADER_LEN + 24;
            self.next_heartbeat = now_ms + self.cfg.heartbeat_ms;
        }
        while let Some((&spi, &lease)) = self.acks.iter().next() {
            if size + mirror::RECORD_HEADER_LEN + 16 > budget {
                break;
            }
            self.acks.remove(&spi);
            records.push(MirrorRecord::LeaseAck {
                spi,
                dir: SaDir::Outbound,
                lease,
            });
            size += mirror::RECORD_HEADER_LEN + 16;
            self.stats.acks_sent += 1;
        }
        while let Some(&key) = self.due.front() {
            let words = self
                .inbound
                .get(&key.0)
                .filter(|_| key.1 == SaDir::Inbound)
                .map_or(0, |s| s.bitmap.len());
            let len = mirror::RECORD_HEADER_LEN + 36 + 8 * words;
            if size + len > budget && !records.is_empty() {
                break;
            }
            self.due.pop_front();
            self.queued.remove(&key);
            if let Some(r) = self.state_record(key) {
                records.push(r);
                size += len;
                self.stats.states_sent += 1;
            }
        }
        if records.is_empty() {
            return None;
        }
        self.counter += 1;
        let header = MirrorHeader {
            flags: 0,
            records: 0,
            node: self.cfg.node,
            epoch: self.epoch,
            counter: self.counter,
        };
        let frame = seal(&self.key, header, &records);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        Some(frame)
    }
}
