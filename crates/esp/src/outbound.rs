//! Outbound processing: tunnel-mode encapsulation in place.
//!
//! [`OutboundSa::encapsulate`] first checks a packet and gives it the next
//! sequence number (the step that moves the sequence number, traffic
//! counts and lifetime), then builds the headers around it and seals it.

use crate::limit::SeqLimit;
use espgate_wire::PacketBuf;
use espgate_wire::esp::{self, EspRepr, EspTrailer};
use espgate_wire::ip::{IpAddr, protocol};
use espgate_wire::ipv4::{self, Ipv4Template};
use espgate_wire::ipv6::{self, Ipv6Repr};
use espgate_wire::udp::{self, UdpPacket, UdpRepr};

use crate::aead::{Backend, TAG_LEN};
use crate::cipher::{EspCipher, IV_LEN};
use crate::counters::{DropReason, SaCounters};
use crate::error::EspError;
use crate::inner::{self, Inner};
use crate::lifetime::{Lifetime, LifetimeState, SEQ_LOW_SHIFT, SaEvent};
use crate::sa::{Direction, SaConfig, SaError, Tunnel, UdpEncap};

/// An outbound SA: its key, its sequence counter, lifetimes and counters.
#[derive(Debug)]
pub struct OutboundSa {
    spi: u32,
    cipher: EspCipher,
    tunnel: Tunnel,
    encap: Option<UdpEncap>,
    ttl: u8,
    /// The outer IPv4 header, made once (IPv4 tunnels).
    outer_v4: Option<Ipv4Template>,
    pad_to: usize,
    seq: u64,
    seq_max: u64,
    /// From here on, [`SaEvent::SeqLow`].
    seq_low: u64,
    /// The lower of the mirror's lease and the node's persisted mark.
    limit: SeqLimit,
    reported: u64,
    report_every: u64,
    /// Restarted since the last report: the next packet is reported.
    restarted: bool,
    lifetime: LifetimeState,
    counters: SaCounters,
}

impl OutboundSa {
    /// Builds the SA from its definition with the given crypto backend.
    pub fn new(cfg: &SaConfig, backend: Backend) -> Result<Self, SaError> {
        let cipher = cfg.cipher(backend)?;
        debug_assert_eq!(cfg.direction, Direction::Outbound);
        Ok(OutboundSa {
            spi: cfg.spi,
            cipher,
            tunnel: cfg.tunnel,
            encap: cfg.udp_encap,
            ttl: cfg.outer_ttl,
            outer_v4: match (cfg.tunnel.src, cfg.tunnel.dst) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => {
                    let next = if cfg.udp_encap.is_some() {
                        protocol::UDP
                    } else {
                        protocol::ESP
                    };
                    Some(Ipv4Template::new(src, dst, next, cfg.outer_ttl))
                }
                _ => None,
            },
            pad_to: usize::from(cfg.pad_to),
            seq: cfg.initial_seq,
            seq_max: cfg.seq_max(),
            seq_low: cfg.seq_max() - (cfg.seq_max() >> SEQ_LOW_SHIFT),
            limit: SeqLimit::default(),
            reported: cfg.initial_seq,
            report_every: 0,
            restarted: false,
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

    /// The last sequence number used (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Sequence numbers left before the SA is exhausted.
    pub fn seq_left(&self) -> u64 {
        self.seq_max - self.seq.min(self.seq_max)
    }

    /// Sets the first sequence number the mirror's lease lets the SA use
    /// no more; packets that would reach it (or the mark) are dropped as
    /// `lease_stall` until it rises.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit.set_lease(limit);
    }

    /// Sets the first sequence number the node's persisted high-water
    /// mark does not cover: the SA stalls there as at its lease limit.
    pub fn set_mark(&mut self, mark: u64) {
        self.limit.set_mark(mark);
    }

    /// The first sequence number the SA may not use now, the lower of its
    /// lease limit and its mark (`u64::MAX`: none).
    pub fn limit(&self) -> u64 {
        self.limit.get()
    }

    /// Packets refused at the limit since it last moved (1 at the first
    /// of a stall; the `lease_stall` drop counter counts the SA's whole
    /// life).
    pub fn stalls(&self) -> u64 {
        self.limit.stalls()
    }

    /// Whether the next packet would reach the limit (its lease or mark):
    /// a caller that holds the packet until the limit rises asks this
    /// first, and the SA counts the stall ([`stalls`](Self::stalls)) but
    /// no drop. [`encapsulate`](Self::encapsulate) drops such a packet.
    /// A packet the SA would drop for another reason first (its hard
    /// lifetime passed, its numbers ran out) is not at the limit: sealing
    /// drops it under that reason.
    pub fn at_limit(&mut self) -> bool {
        let limit = self.limit.get();
        if limit != u64::MAX
            && self.seq + 1 >= limit
            && self.seq < self.seq_max
            && self
                .lifetime
                .admit(self.counters.packets, self.counters.bytes)
        {
            self.limit.stall();
            return true;
        }
        false
    }

    /// Counts a packet held at the limit and given up as dropped there
    /// (`lease_stall`).
    pub fn drop_at_limit(&mut self) {
        self.counters.drops.count(DropReason::LeaseStall);
    }

    /// Makes the next packet use sequence number `next` (a takeover or a
    /// restart); never moves backwards. The first packet after it is
    /// reported whatever the interval: the mirror learns the far end has
    /// seen a number of the new run (its ESN inference follows the
    /// numbers sent, not the starts).
    pub fn restart_at(&mut self, next: u64) {
        self.seq = self.seq.max(next.saturating_sub(1));
        self.reported = self.seq;
        self.restarted = true;
    }

    /// Makes [`report_due`](Self::report_due) tell each time the sequence number
    /// crosses a multiple of `every` (the mirror's `interval`); 0, the
    /// default, reports nothing.
    pub fn set_report_every(&mut self, every: u64) {
        self.report_every = every;
    }

    /// Whether the sequence number crossed a multiple of the reporting
    /// interval since [`mark_reported`](Self::mark_reported), or a packet
    /// went out since a [`restart_at`](Self::restart_at).
    #[inline]
    pub fn report_due(&self) -> bool {
        let every = self.report_every;
        every != 0
            && (self.seq / every > self.reported / every
                || (self.restarted && self.seq > self.reported))
    }

    /// Records that the current state went to the mirror.
    pub fn mark_reported(&mut self) {
        self.reported = self.seq;
        self.restarted = false;
    }

    /// Raises the packet and byte counts to what an earlier owner reached
    /// (mirrored), so lifetimes go on counting after a takeover.
    pub fn resume_counts(&mut self, packets: u64, bytes: u64) {
        self.counters.packets = self.counters.packets.max(packets);
        self.counters.bytes = self.counters.bytes.max(bytes);
        self.lifetime
            .after(self.counters.packets, self.counters.bytes);
    }

    /// The tunnel endpoints.
    pub fn tunnel(&self) -> &Tunnel {
        &self.tunnel
    }

    /// Traffic and drop counters.
    pub fn counters(&self) -> &SaCounters {
        &self.counters
    }

    /// The crypto backend.
    pub fn backend(&self) -> Backend {
        self.cipher.backend()
    }

    /// The next lifetime or sequence event, if any.
    pub fn poll_event(&mut self) -> Option<SaEvent> {
        self.lifetime.poll()
    }

    /// A time limit of the SA passed (its owner keeps the time from when
    /// it installed the SA): soft, a rekey is due; hard, the SA stops.
    /// The event is polled with `poll_event`.
    pub fn expire(&mut self, hard: bool) {
        self.lifetime.expire(hard);
    }

    fn outer_ip_len(&self) -> usize {
        if self.tunnel.src.is_ipv4() {
            ipv4::HEADER_LEN
        } else {
            ipv6::HEADER_LEN
        }
    }

    /// Bytes put in front of the inner packet.
    pub fn header_len(&self) -> usize {
        self.outer_ip_len() + self.encap.map_or(0, |_| udp::HEADER_LEN) + esp::HEADER_LEN + IV_LEN
    }

    /// The most bytes put behind the inner packet (padding, trailer, ICV).
    pub fn max_trailer_len(&self) -> usize {
        self.pad_to - 1 + esp::TRAILER_LEN + TAG_LEN
    }

    /// Checks one packet and assigns it the next sequence number; counts it,
    /// or counts why it is dropped. Gives the number and what it read of
    /// the inner packet.
    fn prepare<B: PacketBuf>(&mut self, pkt: &mut B) -> Result<(u64, Inner), EspError> {
        let r = self.try_prepare(pkt);
        if let Err(e) = &r {
            self.counters.drops.count(e.reason);
        }
        r
    }

    fn try_prepare<B: PacketBuf>(&mut self, pkt: &mut B) -> Result<(u64, Inner), EspError> {
        let inner = inner::parse_and_trim(pkt)?;
        let trailer = EspTrailer::for_payload(inner.len, inner.next_header, self.pad_to);
        let added_tail = trailer.len() + TAG_LEN;
        if pkt.headroom() < self.header_len() || pkt.tailroom() < added_tail {
            return Err(DropReason::NoRoom.into());
        }
        let outer_len = self.header_len() + inner.len + added_tail;
        let length_field = if self.tunnel.src.is_ipv4() {
            outer_len
        } else {
            outer_len - ipv6::HEADER_LEN
        };
        if length_field > usize::from(u16::MAX) {
            return Err(DropReason::Oversize.into());
        }
        if !self
            .lifetime
            .admit(self.counters.packets, self.counters.bytes)
        {
            return Err(DropReason::HardExpired.into());
        }
        if self.seq >= self.seq_max {
            self.lifetime.exhausted();
            return Err(DropReason::SeqExhausted.into());
        }
        let limit = self.limit.get();
        if limit != u64::MAX && self.seq + 1 >= limit {
            self.limit.stall();
            return Err(DropReason::LeaseStall.into());
        }
        self.seq += 1;
        if self.seq >= self.seq_low {
            self.lifetime.seq_low();
        }
        self.counters.packets += 1;
        self.counters.bytes += inner.len as u64;
        self.lifetime
            .after(self.counters.packets, self.counters.bytes);
        Ok((self.seq, inner))
    }

    /// Builds the outer headers and trailer around a prepared packet and
    /// encrypts it with sequence number `seq`.
    fn process<B: PacketBuf>(&self, seq: u64, inner: Inner, pkt: &mut B) -> Result<(), EspError> {
        let no_room = |e| EspError::wire(e, DropReason::NoRoom);
        let trailer = EspTrailer::for_payload(inner.len, inner.next_header, self.pad_to);
        let tail = pkt.append(trailer.len() + TAG_LEN).map_err(no_room)?;
        trailer.emit(&mut tail[..trailer.len()]).map_err(no_room)?;
        let ip_len = self.outer_ip_len();
        let udp_len = self.encap.map_or(0, |_| udp::HEADER_LEN);
        let data = pkt.prepend(self.header_len()).map_err(no_room)?;
        let total = data.len();
        let ip_payload = total - ip_len;
        let next = if udp_len > 0 {
            protocol::UDP
        } else {
            protocol::ESP
        };
        if let Some(t) = &self.outer_v4 {
            t.emit(data, ip_payload, seq as u16, inner.tos, inner.dont_frag)
        } else if let (IpAddr::V6(src), IpAddr::V6(dst)) = (self.tunnel.src, self.tunnel.dst) {
            Ipv6Repr {
                src,
                dst,
                next_header: next,
                payload_len: ip_payload,
                hop_limit: self.ttl,
                traffic_class: inner.tos,
                flow_label: 0,
            }
            .emit(data)
        } else {
            unreachable!("SaConfig::validate refuses mixed tunnel families")
        }
        .map_err(|e| EspError::wire(e, DropReason::Oversize))?;
        if let Some(encap) = self.encap {
            UdpRepr {
                src_port: encap.src_port,
                dst_port: encap.dst_port,
                payload_len: ip_payload - udp::HEADER_LEN,
            }
            .emit(&mut data[ip_len..])
            .map_err(|e| EspError::wire(e, DropReason::Oversize))?;
        }
        let esp_at = ip_len + udp_len;
        EspRepr {
            spi: self.spi,
            seq: seq as u32,
        }
        .emit(&mut data[esp_at..])
        .map_err(no_room)?;
        let iv = seq.to_be_bytes();
        let body_at = esp_at + esp::HEADER_LEN + IV_LEN;
        data[esp_at + esp::HEADER_LEN..body_at].copy_from_slice(&iv);
        let (body, icv) = data[body_at..].split_at_mut(total - body_at - TAG_LEN);
        let icv: &mut [u8; TAG_LEN] = icv.try_into().expect("TAG_LEN bytes split off");
        self.cipher.seal(self.spi, seq, &iv, body, icv);
        if self.encap.is_some() && self.tunnel.src.is_ipv6() {
            // RFC 3948 sends a zero checksum over IPv4; IPv6 forbids it for
            // UDP in general (RFC 8200 8.1), so there we compute it.
            let mut u = UdpPacket::new_checked(&mut data[ip_len..]).map_err(no_room)?;
            u.fill_checksum(&self.tunnel.src, &self.tunnel.dst);
        }
        Ok(())
    }

    /// Encapsulates one packet in place; counts it, or counts why it is
    /// dropped. Returns its sequence number.
    pub fn encapsulate<B: PacketBuf>(&mut self, pkt: &mut B) -> Result<u64, EspError> {
        let (seq, inner) = self.prepare(pkt)?;
        self.process(seq, inner, pkt)
            .inspect_err(|e| self.counters.drops.count(e.reason))?;
        Ok(seq)
    }
}
