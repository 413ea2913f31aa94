//! Neighbours: static entries from the configuration and what ARP teaches,
//! shared by the workers; when the tracked next hops were last heard; plus
//! the ARP answers and requests a node sends for its own addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use espgate_wire::PacketBuf;
use espgate_wire::arp::{ArpOp, ArpPacket, ArpRepr};
use espgate_wire::ethernet::{EtherType, EthernetRepr, MacAddr};

/// IP-to-MAC table, shared by the workers. Each worker keeps its own
/// copy of the entries it uses and drops it when the generation moves, so
/// the shared lock is touched only on a change or a miss.
#[derive(Debug)]
pub struct Neighbours {
    table: RwLock<HashMap<IpAddr, MacAddr>>,
    generation: AtomicU64,
    /// The tracked next hops, and when each last sent an ARP reply (ms
    /// since `epoch`; the table's making counts as heard).
    tracked: Vec<(IpAddr, AtomicU64)>,
    epoch: Instant,
}

impl Default for Neighbours {
    fn default() -> Self {
        Neighbours::new([])
    }
}

impl Neighbours {
    /// A table holding the static entries.
    pub fn new(static_entries: impl IntoIterator<Item = (IpAddr, MacAddr)>) -> Self {
        Neighbours {
            table: RwLock::new(static_entries.into_iter().collect()),
            generation: AtomicU64::new(0),
            tracked: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// Tracks `next_hops`: when each was last heard (see
    /// [`silent_for`](Self::silent_for)).
    pub fn tracking(mut self, next_hops: impl IntoIterator<Item = IpAddr>) -> Self {
        self.tracked = next_hops
            .into_iter()
            .map(|ip| (ip, AtomicU64::new(0)))
            .collect();
        self
    }

    /// How long tracked next hop `ip` has sent no ARP reply (ms); `None`
    /// if it is not tracked.
    pub fn silent_for(&self, ip: &IpAddr) -> Option<u64> {
        let (_, heard) = self.tracked.iter().find(|(t, _)| t == ip)?;
        Some(self.now_ms().saturating_sub(heard.load(Ordering::Acquire)))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The MAC of `ip`, if known.
    #[inline]
    pub fn lookup(&self, ip: &IpAddr) -> Option<MacAddr> {
        self.table.read().ok()?.get(ip).copied()
    }

    /// A tracked next hop `ip` sent an ARP reply: it answered one of this
    /// node's questions, so frames get through both ways. Its requests
    /// and announcements do not count: they reach this node even when
    /// nothing of this node's reaches it.
    pub fn replied(&self, ip: IpAddr) {
        if let Some((_, heard)) = self.tracked.iter().find(|(t, _)| *t == ip) {
            heard.fetch_max(self.now_ms(), Ordering::AcqRel);
        }
    }

    /// Records what ARP said.
    pub fn learn(&self, ip: IpAddr, mac: MacAddr) {
        if mac.is_multicast() || ip.is_unspecified() {
            return;
        }
        if self.lookup(&ip) != Some(mac)
            && let Ok(mut t) = self.table.write()
        {
            t.insert(ip, mac);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped at every change: a worker's copies older than this are stale.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// What an ARP packet asks of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// A request for our address: answer with this reply.
    Reply(ArpRepr),
    /// Nothing to send (a reply, or a request for someone else).
    Nothing,
}

/// Learns from an ARP packet and says whether to answer it: a request for
/// one of `own` (the port's address, and the peer's while this node holds
/// its SAs).
pub fn handle_arp(
    payload: &[u8],
    own: &[IpAddr],
    own_mac: MacAddr,
    neighbours: &Neighbours,
) -> Option<ArpOutcome> {
    let arp = ArpRepr::parse(&ArpPacket::new_checked(payload).ok()?).ok()?;
    neighbours.learn(IpAddr::V4(arp.sender_ip), arp.sender_mac);
    if arp.op == ArpOp::Reply {
        neighbours.replied(IpAddr::V4(arp.sender_ip));
    }
    Some(match arp.op {
        ArpOp::Request if own.contains(&IpAddr::V4(arp.target_ip)) => ArpOutcome::Reply(ArpRepr {
            op: ArpOp::Reply,
            sender_mac: own_mac,
            sender_ip: arp.target_ip,
            target_mac: arp.sender_mac,
            target_ip: arp.sender_ip,
        }),
        _ => ArpOutcome::Nothing,
    })
}

/// Writes an ARP frame into `buf` (replacing its contents): a reply to
/// `arp.target_mac`, or a broadcast request.
pub fn write_arp(buf: &mut impl PacketBuf, arp: &ArpRepr, src_mac: MacAddr) {
    let dst = match arp.op {
        ArpOp::Reply => arp.target_mac,
        ArpOp::Request => MacAddr::BROADCAST,
    };
    let eth = EthernetRepr {
        dst,
        src: src_mac,
        vlan: None,
        ethertype: EtherType::ARP,
    };
    let old = buf.len();
    buf.trim(old).expect("trimming what is there");
    let frame = buf
        .append(eth.header_len() + espgate_wire::arp::PACKET_LEN)
        .expect("a pool buffer holds an ARP frame");
    eth.emit(frame).expect("room for the header");
    arp.emit(&mut frame[eth.header_len()..])
        .expect("room for ARP");
}

/// A gratuitous ARP (an RFC 5227 announcement): a broadcast request for
/// `ip` from `ip`, so every host on the link updates the entry it has.
pub fn announcement(ip: Ipv4Addr, mac: MacAddr) -> ArpRepr {
    request(ip, mac, ip)
}

/// An ARP probe (RFC 5227) asking for `target`: its sender address is
/// 0.0.0.0, so no host learns from it (this node's addresses may be held
/// by its peer), yet `target` answers it.
pub fn probe(own_mac: MacAddr, target: Ipv4Addr) -> ArpRepr {
    request(Ipv4Addr::UNSPECIFIED, own_mac, target)
}

/// The ARP request asking for `target`.
pub fn request(own: Ipv4Addr, own_mac: MacAddr, target: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        op: ArpOp::Request,
        sender_mac: own_mac,
        sender_ip: own,
        target_mac: MacAddr::default(),
        target_ip: target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_requests_for_own_address_and_learns() {
        let n = Neighbours::default();
        let me = Ipv4Addr::new(10, 1, 0, 254);
        let my_mac = MacAddr([2, 0, 0, 0, 0, 0xfe]);
        let host_mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let req = request(Ipv4Addr::new(10, 1, 0, 1), host_mac, me);
        let mut buf = [0u8; 28];
        req.emit(&mut buf).unwrap();
        let own = [IpAddr::V4(me)];
        match handle_arp(&buf, &own, my_mac, &n) {
            Some(ArpOutcome::Reply(r)) => {
                assert_eq!(
                    (r.sender_ip, r.sender_mac, r.target_mac),
                    (me, my_mac, host_mac)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            n.lookup(&IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1))),
            Some(host_mac)
        );
        let other = request(
            Ipv4Addr::new(10, 1, 0, 1),
            host_mac,
            Ipv4Addr::new(10, 1, 0, 9),
        );
        other.emit(&mut buf).unwrap();
        assert_eq!(
            handle_arp(&buf, &own, my_mac, &n),
            Some(ArpOutcome::Nothing)
        );
        assert_eq!(handle_arp(&buf[..10], &own, my_mac, &n), None);
    }

    #[test]
    fn answers_for_adopted_addresses_and_learns_announcements() {
        let n = Neighbours::default();
        let me = Ipv4Addr::new(10, 1, 0, 2);
        let peer = Ipv4Addr::new(10, 1, 0, 1);
        let my_mac = MacAddr([2, 0, 0, 0, 0, 2]);
        let host_mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let mut buf = [0u8; 28];
        request(Ipv4Addr::new(10, 1, 0, 9), host_mac, peer)
            .emit(&mut buf)
            .unwrap();
        let own = [IpAddr::V4(me), IpAddr::V4(peer)];
        match handle_arp(&buf, &own, my_mac, &n) {
            Some(ArpOutcome::Reply(r)) => assert_eq!((r.sender_ip, r.sender_mac), (peer, my_mac)),
            other => panic!("{other:?}"),
        }
        n.learn(IpAddr::V4(peer), MacAddr([2, 0, 0, 0, 0, 1]));
        announcement(peer, my_mac).emit(&mut buf).unwrap();
        assert_eq!(
            handle_arp(&buf, &[IpAddr::V4(me)], MacAddr([2, 0, 0, 0, 0, 3]), &n),
            Some(ArpOutcome::Nothing)
        );
        assert_eq!(n.lookup(&IpAddr::V4(peer)), Some(my_mac), "moved");
    }

    #[test]
    fn a_tracked_next_hop_is_heard_from_its_replies_only_and_a_probe_teaches_nobody() {
        let hop = Ipv4Addr::new(192, 0, 2, 100);
        let other = Ipv4Addr::new(192, 0, 2, 7);
        let n = Neighbours::default().tracking([IpAddr::V4(hop)]);
        assert_eq!(n.silent_for(&IpAddr::V4(other)), None, "not tracked");
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(n.silent_for(&IpAddr::V4(hop)).unwrap() >= 30);

        // The probe: a broadcast request from 0.0.0.0 for the next hop.
        let my_mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut buf = espgate_wire::HeapBuf::with_capacity(128, 0);
        write_arp(&mut buf, &probe(my_mac, hop), my_mac);
        let frame = buf.data().to_vec();
        assert_eq!(&frame[..6], &[0xff; 6], "broadcast");
        let asked = ArpRepr::parse(&ArpPacket::new_checked(&frame[14..]).unwrap()).unwrap();
        assert_eq!(
            (asked.op, asked.sender_ip, asked.target_ip),
            (ArpOp::Request, Ipv4Addr::UNSPECIFIED, hop)
        );
        // The next hop (another espgate, as Linux does) answers it, to the
        // prober's MAC, and learns nothing from it.
        let hop_mac = MacAddr([2, 0, 0, 0, 0, 0x64]);
        let at_hop = Neighbours::default();
        let answer = match handle_arp(&frame[14..], &[IpAddr::V4(hop)], hop_mac, &at_hop) {
            Some(ArpOutcome::Reply(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(at_hop.generation(), 0, "nothing learnt from 0.0.0.0");
        assert_eq!(answer.target_mac, my_mac);
        // Its answer is heard.
        let mut buf = [0u8; 28];
        answer.emit(&mut buf).unwrap();
        assert_eq!(handle_arp(&buf, &[], my_mac, &n), Some(ArpOutcome::Nothing));
        assert!(n.silent_for(&IpAddr::V4(hop)).unwrap() < 30);
        // Its own requests are not: they reach this node even when this
        // node's frames do not reach it.
        std::thread::sleep(std::time::Duration::from_millis(30));
        request(hop, hop_mac, Ipv4Addr::new(192, 0, 2, 1))
            .emit(&mut buf)
            .unwrap();
        handle_arp(&buf, &[], my_mac, &n);
        assert!(n.silent_for(&IpAddr::V4(hop)).unwrap() >= 30);
        // Every reply is, though the MAC it teaches does not change.
        answer.emit(&mut buf).unwrap();
        handle_arp(&buf, &[], my_mac, &n);
        assert!(n.silent_for(&IpAddr::V4(hop)).unwrap() < 30);
    }
}
