//! Inbound processing: the SAD (SAs by SPI) and tunnel-mode decapsulation.
//!
//! Order of checks, as RFC 4303 3.4 wants it: outer headers, SA by SPI,
//! lengths, the replay window (before any crypto), the ICV, and only then
//! the window update, the trailer and the inner packet.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::limit::SeqLimit;
use rustc_hash::FxHashMap;

use espgate_wire::PacketBuf;
use espgate_wire::esp::{self, EspPacket, EspTrailer};
use espgate_wire::ip::{self, protocol};
use espgate_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use espgate_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use espgate_wire::udp::{self, UdpPacket};

use crate::aead::{Backend, TAG_LEN};
use crate::cipher::{EspCipher, IV_LEN};
use crate::counters::{DropCounters, DropReason, SaCounters};
use crate::error::EspError;
use crate::inner;
use crate::lifetime::{Lifetime, LifetimeState, SaEvent};
use crate::replay::{ReplayError, ReplayWindow};
use crate::sa::{Direction, SaConfig, SaError, UdpEncap};

/// What inbound processing made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// ESP, authenticated and stripped: the buffer now holds the inner packet.
    Decapsulated {
        /// SPI of the SA.
        spi: u32,
        /// Full (ESN-inferred) sequence number.
        seq: u64,
        /// Next header: 4 (IPv4) or 41 (IPv6).
        next_header: u8,
    },
    /// UDP to an ESP-in-UDP port whose payload starts with the non-ESP
    /// marker (four zero bytes): IKE. The buffer is untouched.
    Ike,
    /// A NAT-keepalive (one 0xff byte, RFC 3948 2.3). The buffer is untouched.
    NatKeepalive,
}

/// What [`Sad::decapsulate_holding`] and [`Sad::admit`] made of a packet
/// they did not drop.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Accepted, as [`Sad::decapsulate`] answers.
    Inbound(Inbound),
    /// Authentic, but at or past its SA's limit: decrypted in place and
    /// not accepted yet. The caller holds the buffer as it is and gives it
    /// to [`Sad::admit`] once the limit has risen, or gives it up with
    /// [`Sad::drop_at_limit`].
    AtLimit(AtLimit),
}

/// An authentic packet its SA refused at its limit, held by the caller
/// (decrypted in place, its window not moved). Only the SAD makes one,
/// from a packet it authenticated: [`Sad::admit`] takes it instead of the
/// key's word, so none can be made for a forged packet.
#[derive(Debug, PartialEq, Eq)]
pub struct AtLimit {
    spi: u32,
    /// Which SA under that SPI authenticated it (a later one may reuse
    /// the SPI, with another key).
    serial: u64,
    seq: u64,
    loc: Located,
}

impl AtLimit {
    /// The SA's SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The packet's full sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// An inbound SA: key, replay window, lifetimes and counters.
#[derive(Debug)]
pub struct InboundSa {
    spi: u32,
    /// Set by the SAD that holds it, unique there.
    serial: u64,
    cipher: EspCipher,
    esn: bool,
    window: ReplayWindow,
    encap: Option<UdpEncap>,
    reported: u64,
    report_every: u64,
    /// The top half way from where the window was to the limit when the
    /// limit last moved: reported once reached.
    report_at: u64,
    /// The lower of the mirror's lease and the node's persisted mark.
    limit: SeqLimit,
    wanted: u64,
    lifetime: LifetimeState,
    counters: SaCounters,
}

impl InboundSa {
    /// Builds the SA from its definition with the given crypto backend.
    pub fn new(cfg: &SaConfig, backend: Backend) -> Result<Self, SaError> {
        let cipher = cfg.cipher(backend)?;
        Ok(InboundSa {
            spi: cfg.spi,
            serial: 0,
            cipher,
            esn: cfg.esn,
            window: ReplayWindow::new(cfg.replay_window, cfg.initial_seq),
            encap: cfg.udp_encap,
            reported: cfg.initial_seq,
            report_every: 0,
            report_at: u64::MAX,
            limit: SeqLimit::default(),
            wanted: 0,
            lifetime: LifetimeState::new(cfg.lifetime),
            counters: SaCounters::default(),
        })
    }

    /// The SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Its lifetime limits.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime.limits()
    }

    /// The replay window.
    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Traffic and drop counters.
    pub fn counters(&self) -> &SaCounters {
        &self.counters
    }

    /// Accept only sequence numbers below `limit` (the mirror's inbound
    /// lease); packets at or past it (or the mark) are dropped as
    /// `lease_stall` once they are authenticated, and the highest of them
    /// is kept as [`wanted`](Self::wanted).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit.set_lease(limit);
        self.aim_report();
    }

    /// Accept only sequence numbers below `mark` (the node's persisted
    /// high-water mark), as below the lease.
    pub fn set_mark(&mut self, mark: u64) {
        self.limit.set_mark(mark);
    }

    /// Aims the next report half way from the window's top to the
    /// mirror's lease, so the mirror can raise it before the window gets
    /// there. (The node's mark moves on reports at the interval: its
    /// keeper writes ahead by the SA's rate.)
    fn aim_report(&mut self) {
        let top = self.window.top();
        let room = self.limit.lease().saturating_sub(1).saturating_sub(top);
        self.report_at = top.saturating_add(room.div_ceil(2));
    }

    /// The first sequence number the SA may not accept now, the lower of
    /// its lease and its mark (`u64::MAX`: none).
    pub fn limit(&self) -> u64 {
        self.limit.get()
    }

    /// The highest sequence number of an authentic packet dropped at the
    /// limit (0: none). The far end's numbers run on while the SA waits,
    /// so the lease must be extended past this one, not past the window
    /// top: the window cannot move while every packet is beyond the limit.
    pub fn wanted(&self) -> u64 {
        self.wanted
    }

    /// Authentic packets refused at the limit since it last moved (1 at
    /// the first of a stall; the `lease_stall` drop counter counts the
    /// SA's whole life).
    pub fn stalls(&self) -> u64 {
        self.limit.stalls()
    }

    /// Replaces the replay window with a mirrored one (a takeover or a
    /// restart); never moves the top backwards.
    pub fn restore_window(&mut self, top: u64, bitmap: &[u64]) {
        if top >= self.window.top() {
            self.window = ReplayWindow::restore(self.window.size(), top, bitmap);
            self.reported = top;
            self.aim_report();
        }
    }

    /// Makes [`report_due`](Self::report_due) tell each time the window top
    /// crosses a multiple of `every` (half the mirror's `inbound_interval`)
    /// or reaches half way to the mirror's lease; 0, the default, reports
    /// nothing.
    pub fn set_report_every(&mut self, every: u64) {
        self.report_every = every;
    }

    /// Whether the window top crossed a multiple of the reporting
    /// interval, or reached half way to the mirror's lease, since
    /// [`mark_reported`](Self::mark_reported).
    #[inline]
    pub fn report_due(&self) -> bool {
        let every = self.report_every;
        let top = self.window.top();
        every != 0
            && (top / every > self.reported / every
                || (top >= self.report_at && self.reported < self.report_at))
    }

    /// Records that the current window went to the mirror.
    pub fn mark_reported(&mut self) {
        self.reported = self.window.top();
    }

    /// Raises the packet and byte counts to what an earlier owner reached
    /// (mirrored), so lifetimes go on counting after a takeover.
    pub fn resume_counts(&mut self, packets: u64, bytes: u64) {
        self.counters.packets = self.counters.packets.max(packets);
        self.counters.bytes = self.counters.bytes.max(bytes);
        self.lifetime
            .after(self.counters.packets, self.counters.bytes);
    }

    /// The next lifetime event, if any.
    pub fn poll_event(&mut self) -> Option<SaEvent> {
        self.lifetime.poll()
    }

    /// A time limit of the SA passed (its owner keeps the time from when
    /// it installed the SA): soft, a rekey is due; hard, the SA stops.
    /// The event is polled with `poll_event`.
    pub fn expire(&mut self, hard: bool) {
        self.lifetime.expire(hard);
    }

    /// Everything before the crypto: encapsulation, lengths, lifetime, and
    /// the replay check. Returns the full sequence number.
    fn precheck(&mut self, loc: &Located) -> Result<u64, EspError> {
        if self.encap.is_some() != loc.udp {
            return Err(DropReason::EncapMismatch.into());
        }
        let payload = loc.end - loc.esp_at - esp::HEADER_LEN;
        if payload == 0 {
            return Err(DropReason::ZeroLength.into());
        }
        if payload < IV_LEN + esp::TRAILER_LEN + TAG_LEN {
            return Err(DropReason::Truncated.into());
        }
        if (payload - IV_LEN - TAG_LEN) % esp::ALIGN != 0 {
            return Err(DropReason::BadLength.into());
        }
        if !self
            .lifetime
            .admit(self.counters.packets, self.counters.bytes)
        {
            return Err(DropReason::HardExpired.into());
        }
        let seq = if self.esn {
            self.window
                .infer_esn(loc.seq_lo)
                .ok_or(DropReason::TooOld)?
        } else {
            u64::from(loc.seq_lo)
        };
        self.window.check(seq).map_err(replay_reason)?;
        Ok(seq)
    }

    /// Decrypts, then (below the limit) accepts; at or past the limit the
    /// packet stays decrypted and comes back as [`Opened::AtLimit`] when
    /// `hold`, else it is dropped as `lease_stall`.
    fn open<B: PacketBuf>(
        &mut self,
        seq: u64,
        loc: &Located,
        pkt: &mut B,
        hold: bool,
    ) -> Result<Opened, EspError> {
        let data = pkt.data_mut();
        let iv_at = loc.esp_at + esp::HEADER_LEN;
        let body_at = iv_at + IV_LEN;
        let iv: [u8; IV_LEN] = data[iv_at..body_at].try_into().expect("length prechecked");
        let (body, icv) = data[body_at..loc.end].split_at_mut(loc.end - body_at - TAG_LEN);
        let icv: &[u8; TAG_LEN] = (&*icv).try_into().expect("16-byte ICV");
        self.cipher
            .open(self.spi, seq, &iv, body, icv)
            .map_err(|_| EspError::new(DropReason::AuthFailed))?;
        if seq >= self.limit.get() {
            self.wanted = self.wanted.max(seq);
            self.limit.stall();
            if hold {
                return Ok(Opened::AtLimit(AtLimit {
                    spi: self.spi,
                    serial: self.serial,
                    seq,
                    loc: *loc,
                }));
            }
            return Err(DropReason::LeaseStall.into());
        }
        self.accept(seq, loc, pkt).map(Opened::Inbound)
    }

    /// Updates the window for an authentic, decrypted packet below the
    /// limit, checks the trailer and inner packet, and strips the outer
    /// headers.
    fn accept<B: PacketBuf>(
        &mut self,
        seq: u64,
        loc: &Located,
        pkt: &mut B,
    ) -> Result<Inbound, EspError> {
        let body_at = loc.esp_at + esp::HEADER_LEN + IV_LEN;
        let body = &pkt.data()[body_at..loc.end - TAG_LEN];
        self.window.check_and_update(seq).map_err(replay_reason)?;
        let (trailer, inner_len) =
            EspTrailer::parse(body).map_err(|e| EspError::wire(e, DropReason::BadPadding))?;
        match trailer.next_header {
            protocol::IPV4 | protocol::IPV6 => {}
            protocol::NO_NEXT_HEADER => return Err(DropReason::Dummy.into()),
            _ => return Err(DropReason::BadNextHeader.into()),
        }
        let inner = inner::parse(&body[..inner_len])?;
        if inner.next_header != trailer.next_header {
            return Err(DropReason::BadInner.into());
        }
        self.counters.packets += 1;
        self.counters.bytes += inner.len as u64;
        self.lifetime
            .after(self.counters.packets, self.counters.bytes);
        let keep_to = body_at + inner.len;
        let len = pkt.len();
        pkt.trim(len - keep_to).expect("within the packet");
        pkt.adj(body_at).expect("within the packet");
        Ok(Inbound::Decapsulated {
            spi: self.spi,
            seq,
            next_header: trailer.next_header,
        })
    }
}

fn replay_reason(e: ReplayError) -> EspError {
    EspError::new(match e {
        ReplayError::Duplicate => DropReason::Replayed,
        ReplayError::TooOld => DropReason::TooOld,
    })
}

/// Where the ESP header sits in an outer packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Offset of the ESP header.
    pub esp_at: usize,
    /// End of the outer IP packet (link padding excluded).
    pub end: usize,
    /// SPI.
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq_lo: u32,
    /// Whether ESP came in UDP.
    pub udp: bool,
}

/// What a look at the outer headers found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outer {
    /// An ESP packet at this place.
    Esp(Located),
    /// Not ESP but for the caller: IKE or a keepalive on an ESP-in-UDP port.
    Passthrough(Inbound),
}

/// Why an SA could not be added to the SAD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SadError {
    /// Another inbound SA has this SPI.
    #[error("duplicate inbound spi {0:#x}")]
    DuplicateSpi(u32),
    /// The definition is not an inbound SA.
    #[error("spi {0:#x} is not an inbound SA")]
    NotInbound(u32),
    /// The definition is unusable.
    #[error("spi {spi:#x}: {source}")]
    Sa {
        /// The SPI.
        spi: u32,
        /// What is wrong.
        source: SaError,
    },
}

/// The next serial of an SA added to any SAD of the process: unique, so a
/// token held at one SA's limit is admitted by that SA only (not by one
/// that took its SPI since, nor by another SAD's).
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// The security association database for inbound traffic: SAs by SPI, and
/// the counters of drops that belong to no SA.
#[derive(Debug, Default)]
pub struct Sad {
    sas: Vec<InboundSa>,
    by_spi: FxHashMap<u32, usize>,
    encap_ports: Vec<u16>,
    drops: DropCounters,
    /// SAs (by index) that raised an event since [`poll_event`](Self::poll_event)
    /// last emptied it: the owner finds them without a lookup per packet.
    eventful: Vec<usize>,
}

impl Sad {
    /// An empty SAD.
    pub fn new() -> Self {
        Sad::default()
    }

    /// Adds an inbound SA.
    pub fn insert(&mut self, cfg: &SaConfig, backend: Backend) -> Result<(), SadError> {
        if cfg.direction != Direction::Inbound {
            return Err(SadError::NotInbound(cfg.spi));
        }
        if self.by_spi.contains_key(&cfg.spi) {
            return Err(SadError::DuplicateSpi(cfg.spi));
        }
        let sa = InboundSa::new(cfg, backend).map_err(|source| SadError::Sa {
            spi: cfg.spi,
            source,
        })?;
        self.add(sa)
    }

    /// Adds an inbound SA built already (off the packet path).
    pub fn add(&mut self, sa: InboundSa) -> Result<(), SadError> {
        if self.by_spi.contains_key(&sa.spi) {
            return Err(SadError::DuplicateSpi(sa.spi));
        }
        if let Some(e) = sa.encap
            && !self.encap_ports.contains(&e.dst_port)
        {
            self.encap_ports.push(e.dst_port);
        }
        let mut sa = sa;
        sa.serial = SERIALS.fetch_add(1, Ordering::Relaxed);
        self.by_spi.insert(sa.spi, self.sas.len());
        self.sas.push(sa);
        Ok(())
    }

    /// Takes the SA with this SPI out of the SAD. Its UDP port stays
    /// listed: another SA may share it, and one unused port costs nothing.
    pub fn remove(&mut self, spi: u32) -> Option<InboundSa> {
        // Indices move: a removed SA's events go with it.
        self.eventful.clear();
        let i = self.by_spi.remove(&spi)?;
        let sa = self.sas.swap_remove(i);
        if let Some(moved) = self.sas.get(i) {
            self.by_spi.insert(moved.spi, i);
        }
        Some(sa)
    }

    /// The SA with this SPI.
    pub fn get(&self, spi: u32) -> Option<&InboundSa> {
        self.by_spi.get(&spi).map(|&i| &self.sas[i])
    }

    /// The SA with this SPI, mutable (to poll its events).
    pub fn get_mut(&mut self, spi: u32) -> Option<&mut InboundSa> {
        self.by_spi.get(&spi).map(|&i| &mut self.sas[i])
    }

    /// All SAs.
    pub fn iter(&self) -> impl Iterator<Item = &InboundSa> {
        self.sas.iter()
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// Whether there are no SAs.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// Drops that belong to no SA (bad outer headers, unknown SPI).
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// Reads the outer IPv4 or IPv6 header (and UDP, for ESP in UDP) and
    /// finds the ESP header.
    pub fn locate(&self, data: &[u8]) -> Result<Outer, EspError> {
        let (proto, l4_at, end) = match ip::version_of(data) {
            Some(4) => {
                let p = Ipv4Packet::new_checked(data)
                    .map_err(|e| EspError::wire(e, DropReason::Malformed))?;
                let r = Ipv4Repr::parse(&p).map_err(|e| match e {
                    espgate_wire::WireError::Unsupported { .. } => {
                        EspError::wire(e, DropReason::Fragment)
                    }
                    _ => EspError::wire(e, DropReason::Malformed),
                })?;
                (r.protocol, p.header_len(), usize::from(p.total_len()))
            }
            Some(6) => {
                let p = Ipv6Packet::new_checked(data)
                    .map_err(|e| EspError::wire(e, DropReason::Malformed))?;
                let r =
                    Ipv6Repr::parse(&p).map_err(|e| EspError::wire(e, DropReason::Malformed))?;
                if r.next_header == protocol::IPV6_FRAGMENT {
                    return Err(DropReason::Fragment.into());
                }
                (
                    r.next_header,
                    espgate_wire::ipv6::HEADER_LEN,
                    espgate_wire::ipv6::HEADER_LEN + r.payload_len,
                )
            }
            _ => return Err(DropReason::Malformed.into()),
        };
        let (esp_at, udp) = match proto {
            protocol::ESP => (l4_at, false),
            protocol::UDP => {
                let u = UdpPacket::new_checked(&data[l4_at..end])
                    .map_err(|e| EspError::wire(e, DropReason::Malformed))?;
                if !self.encap_ports.contains(&u.dst_port()) {
                    return Err(DropReason::NotEsp.into());
                }
                match u.payload() {
                    [0xff] => return Ok(Outer::Passthrough(Inbound::NatKeepalive)),
                    [0, 0, 0, 0, ..] => return Ok(Outer::Passthrough(Inbound::Ike)),
                    _ => {}
                }
                (l4_at + udp::HEADER_LEN, true)
            }
            _ => return Err(DropReason::NotEsp.into()),
        };
        let e = EspPacket::new_checked(&data[esp_at..end])
            .map_err(|e| EspError::wire(e, DropReason::Malformed))?;
        Ok(Outer::Esp(Located {
            esp_at,
            end,
            spi: e.spi(),
            seq_lo: e.seq(),
            udp,
        }))
    }

    /// Outer headers, SA lookup and every check that needs no crypto.
    /// Counts what it drops.
    fn prepare(&mut self, data: &[u8]) -> Result<Prepared, EspError> {
        let loc = match self.locate(data) {
            Ok(Outer::Esp(loc)) => loc,
            Ok(Outer::Passthrough(what)) => return Ok(Prepared::Passthrough(what)),
            Err(e) => {
                self.drops.count(e.reason);
                return Err(e);
            }
        };
        let Some(&sa_index) = self.by_spi.get(&loc.spi) else {
            self.drops.count(DropReason::UnknownSpi);
            return Err(DropReason::UnknownSpi.into());
        };
        let sa = &mut self.sas[sa_index];
        match sa.precheck(&loc) {
            Ok(seq) => Ok(Prepared::Esp { sa_index, seq, loc }),
            Err(e) => {
                sa.counters.drops.count(e.reason);
                self.note_events(sa_index);
                Err(e)
            }
        }
    }

    /// Decrypt, window update, trailer, strip. Counts what it drops.
    fn process<B: PacketBuf>(
        &mut self,
        prepared: Prepared,
        pkt: &mut B,
        hold: bool,
    ) -> Result<Opened, EspError> {
        match prepared {
            Prepared::Passthrough(what) => Ok(Opened::Inbound(what)),
            Prepared::Esp { sa_index, seq, loc } => {
                let sa = &mut self.sas[sa_index];
                let opened = sa
                    .open(seq, &loc, pkt, hold)
                    .inspect_err(|e| sa.counters.drops.count(e.reason));
                self.note_events(sa_index);
                opened
            }
        }
    }

    /// Decapsulates one packet in place.
    pub fn decapsulate<B: PacketBuf>(&mut self, pkt: &mut B) -> Result<Inbound, EspError> {
        let prepared = self.prepare(pkt.data())?;
        match self.process(prepared, pkt, false)? {
            Opened::Inbound(what) => Ok(what),
            // Not made without `hold`; were it, it would be this drop.
            Opened::AtLimit(_) => Err(DropReason::LeaseStall.into()),
        }
    }

    /// Decapsulates one packet in place, as [`decapsulate`](Self::decapsulate)
    /// does, except that an authentic packet at or past its SA's limit is
    /// neither dropped nor counted as dropped: it comes back decrypted as
    /// [`Opened::AtLimit`] (its SA counts the stall, and
    /// [`InboundSa::wanted`] names it).
    pub fn decapsulate_holding<B: PacketBuf>(&mut self, pkt: &mut B) -> Result<Opened, EspError> {
        let prepared = self.prepare(pkt.data())?;
        self.process(prepared, pkt, true)
    }

    /// Accepts a packet held at its SA's limit (`pkt`: the buffer
    /// [`decapsulate_holding`](Self::decapsulate_holding) left, untouched)
    /// once the limit has risen past it, as if it arrived now: the replay
    /// window, the SA's lifetime, the trailer and the inner packet are
    /// checked then. Still at the limit, it comes back as it was. Gone
    /// (the SA was removed, or another took its SPI), it is dropped as
    /// `unknown_spi`. Counts what it drops.
    pub fn admit<B: PacketBuf>(&mut self, held: AtLimit, pkt: &mut B) -> Result<Opened, EspError> {
        let Some(&i) = self
            .by_spi
            .get(&held.spi)
            .filter(|&&i| self.sas[i].serial == held.serial)
        else {
            self.drops.count(DropReason::UnknownSpi);
            return Err(DropReason::UnknownSpi.into());
        };
        let sa = &mut self.sas[i];
        if held.seq >= sa.limit.get() {
            return Ok(Opened::AtLimit(held));
        }
        let admitted = if sa.lifetime.admit(sa.counters.packets, sa.counters.bytes) {
            sa.accept(held.seq, &held.loc, pkt)
        } else {
            Err(DropReason::HardExpired.into())
        };
        let admitted = admitted.inspect_err(|e| sa.counters.drops.count(e.reason));
        self.note_events(i);
        admitted.map(Opened::Inbound)
    }

    /// Gives up a packet held at its SA's limit: counted as dropped there
    /// (`lease_stall`), if the SA is still in the SAD.
    pub fn drop_at_limit(&mut self, held: AtLimit) {
        if let Some(sa) = self
            .by_spi
            .get(&held.spi)
            .map(|&i| &mut self.sas[i])
            .filter(|sa| sa.serial == held.serial)
        {
            sa.counters.drops.count(DropReason::LeaseStall);
        }
    }

    /// A time limit of SA `spi` passed ([`InboundSa::expire`]); `false`
    /// if it has no such SA.
    pub fn expire(&mut self, spi: u32, hard: bool) -> bool {
        let Some(&i) = self.by_spi.get(&spi) else {
            return false;
        };
        self.sas[i].expire(hard);
        self.note_events(i);
        true
    }

    /// The next lifetime event of any of its SAs, with the SA's SPI.
    #[inline]
    pub fn poll_event(&mut self) -> Option<(u32, SaEvent)> {
        while let Some(&i) = self.eventful.last() {
            if let Some(sa) = self.sas.get_mut(i)
                && let Some(e) = sa.poll_event()
            {
                return Some((sa.spi, e));
            }
            self.eventful.pop();
        }
        None
    }

    /// Notes SA `i` if it raised an event.
    #[inline]
    fn note_events(&mut self, i: usize) {
        if self.sas[i].lifetime.pending() && !self.eventful.contains(&i) {
            self.eventful.push(i);
        }
    }
}

/// A packet that passed [`Sad::prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prepared {
    /// ESP for the SA at `sa_index`, sequence number `seq`.
    Esp {
        /// Index of the SA in the SAD.
        sa_index: usize,
        /// Full sequence number.
        seq: u64,
        /// Where the ESP header is.
        loc: Located,
    },
    /// Not for decryption.
    Passthrough(Inbound),
}
