//! In-memory topologies for tests, benchmarks and the demo: simulated
//! hosts on a node's protected port and back-to-back links between ports.
//! A host answers ARP for its address and sends and receives IP packets
//! through its gateway, like a plain Linux host would; a [`Switch`] joins
//! many ports on one segment, as a Linux bridge does; a [`MemPunt`] stands
//! in for the kernel behind a punt device.

mod punt;
mod switch;

pub use punt::MemPunt;
pub use switch::{Capture, Switch, SwitchHandle};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use espgate_io::mem::{self, MemQueue};
use espgate_io::{BufPool, Mempool, Packet, PortInfo, PortQueue};
use espgate_wire::PacketBuf;
use espgate_wire::arp::{ArpOp, ArpPacket, ArpRepr};
use espgate_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Repr;
use espgate_wire::ipv6::Ipv6Repr;
use espgate_wire::udp::{UdpPacket, UdpRepr};

use crate::config::PortConfig;

/// A simulated host on one end of an in-memory link.
pub struct Host {
    /// Its MAC.
    pub mac: MacAddr,
    /// Its address.
    pub ip: IpAddr,
    /// The MAC of its default gateway.
    pub gateway_mac: MacAddr,
    /// The gateway's address, when the host follows ARP announcements of
    /// it (a failover moves it to another MAC).
    pub gateway_ip: Option<IpAddr>,
    queue: MemQueue,
    pool: BufPool,
}

/// Queues of a node's port, one per worker, as [`crate::NodeQueues`] takes them.
pub type Queues = Vec<Box<dyn PortQueue>>;

fn info(name: &str, mac: MacAddr) -> PortInfo {
    PortInfo {
        name: name.into(),
        mac,
        mtu: 1500,
    }
}

fn boxed(q: Vec<MemQueue>) -> Queues {
    q.into_iter()
        .map(|q| Box::new(q) as Box<dyn PortQueue>)
        .collect()
}

/// A host at `ip` with `mac` on the link of `port` (whose MAC is
/// `port_mac`), and the node's queues of that port for `workers` workers.
pub fn host_link(
    port: &PortConfig,
    port_mac: MacAddr,
    workers: usize,
    ip: IpAddr,
    mac: MacAddr,
    pool: Arc<Mempool>,
) -> (Queues, Host) {
    let (h, n) = mem::link(
        info("host", mac),
        1,
        info(&port.name, port_mac),
        workers,
        4096,
    );
    let host = Host::on_queue(
        h.into_iter().next().expect("one queue"),
        ip,
        mac,
        port_mac,
        pool,
    );
    (boxed(n), host)
}

/// Boxes queues for [`crate::NodeQueues`].
pub fn boxed_queues(q: Vec<MemQueue>) -> Queues {
    boxed(q)
}

/// A back-to-back link between two nodes' ports; with `tap`, a copy of
/// every frame either side sends lands in it.
pub fn node_link(
    a: (&str, MacAddr, usize),
    b: (&str, MacAddr, usize),
    tap: Option<mem::Tap>,
) -> (Queues, Queues) {
    let (mut qa, mut qb) = mem::link(info(a.0, a.1), a.2, info(b.0, b.1), b.2, 4096);
    if let Some(tap) = tap {
        for q in qa.iter_mut().chain(qb.iter_mut()) {
            q.set_tap(tap.clone());
        }
    }
    (boxed(qa), boxed(qb))
}

impl Host {
    /// A host at `ip` with `mac` sending through `queue` to its gateway at
    /// `gateway_mac`.
    pub fn on_queue(
        queue: MemQueue,
        ip: IpAddr,
        mac: MacAddr,
        gateway_mac: MacAddr,
        pool: Arc<Mempool>,
    ) -> Self {
        Host {
            mac,
            ip,
            gateway_mac,
            gateway_ip: None,
            queue,
            pool: BufPool::new(pool, 64),
        }
    }

    /// Sends a UDP datagram to `dst` through the gateway; `false` if the
    /// link was full.
    pub fn send_udp(&mut self, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> bool {
        let mut udp = vec![0u8; 8 + payload.len()];
        UdpRepr {
            src_port: sport,
            dst_port: dport,
            payload_len: payload.len(),
        }
        .emit(&mut udp)
        .expect("room");
        udp[8..].copy_from_slice(payload);
        UdpPacket::new_checked(&mut udp[..])
            .expect("valid")
            .fill_checksum(&self.ip, &dst);
        let ip = match (self.ip, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let mut p = vec![0u8; 20 + udp.len()];
                Ipv4Repr {
                    src,
                    dst,
                    protocol: protocol::UDP,
                    payload_len: udp.len(),
                    ttl: 64,
                    dscp_ecn: 0,
                    ident: sport,
                    dont_frag: true,
                }
                .emit(&mut p)
                .expect("room");
                p[20..].copy_from_slice(&udp);
                p
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut p = vec![0u8; 40 + udp.len()];
                Ipv6Repr {
                    src,
                    dst,
                    next_header: protocol::UDP,
                    payload_len: udp.len(),
                    hop_limit: 64,
                    traffic_class: 0,
                    flow_label: 0,
                }
                .emit(&mut p)
                .expect("room");
                p[40..].copy_from_slice(&udp);
                p
            }
            _ => return false,
        };
        self.send_ip(&ip)
    }

    /// Sends an IP packet to the gateway's MAC.
    pub fn send_ip(&mut self, ip: &[u8]) -> bool {
        let ethertype = if ip.first().map(|b| b >> 4) == Some(6) {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        };
        let eth = EthernetRepr {
            dst: self.gateway_mac,
            src: self.mac,
            vlan: None,
            ethertype,
        };
        let mut b = self.pool.get();
        let f = b.append(14 + ip.len()).expect("room");
        eth.emit(f).expect("room");
        f[14..].copy_from_slice(ip);
        let mut v = vec![Packet::from(b)];
        self.queue.tx_burst(&mut v, &mut self.pool) == 1
    }

    /// Receives what arrived: answers ARP requests for its address and
    /// returns the IP packets addressed to its MAC.
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut rx: Vec<Packet> = Vec::new();
        self.queue.rx_burst(&mut self.pool, &mut rx, 256);
        let mut out = Vec::new();
        let mut replies = Vec::new();
        for b in rx.drain(..) {
            if let Ok(f) = EthernetFrame::new_checked(b.data())
                && let Ok(eth) = EthernetRepr::parse(&f)
            {
                match eth.ethertype {
                    EtherType::ARP => {
                        let Ok(Ok(arp)) =
                            ArpPacket::new_checked(f.payload()).map(|p| ArpRepr::parse(&p))
                        else {
                            self.pool.recycle(b);
                            continue;
                        };
                        if self.gateway_ip == Some(IpAddr::V4(arp.sender_ip)) {
                            self.gateway_mac = arp.sender_mac;
                        }
                        if arp.op == ArpOp::Request && IpAddr::V4(arp.target_ip) == self.ip {
                            let reply = ArpRepr {
                                op: ArpOp::Reply,
                                sender_mac: self.mac,
                                sender_ip: arp.target_ip,
                                target_mac: arp.sender_mac,
                                target_ip: arp.sender_ip,
                            };
                            let mut rb = self.pool.get();
                            crate::neigh::write_arp(&mut rb, &reply, self.mac);
                            replies.push(Packet::from(rb));
                        }
                    }
                    EtherType::IPV4 | EtherType::IPV6 if eth.dst == self.mac => {
                        out.push(f.payload().to_vec())
                    }
                    _ => {}
                }
            }
            self.pool.recycle(b);
        }
        if !replies.is_empty() {
            self.queue.tx_burst(&mut replies, &mut self.pool);
            self.pool.recycle_all(&mut replies);
        }
        out
    }
}

/// Polls `host` until `want` packets arrived or `wait` passed.
pub fn collect(host: &mut Host, want: usize, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        got.extend(host.poll());
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

/// Sends UDP probes from `from` to `to` until one arrives (ARP resolves
/// the hops on the way); `false` if none did within about four seconds.
/// Once one arrived, the probes still on their way are taken until none
/// came for 100 ms, so that none of them lands in what a caller counts next.
pub fn warm_up(from: &mut Host, to: &mut Host, dport: u16) -> bool {
    let dst = to.ip;
    for _ in 0..200 {
        from.send_udp(dst, 9, dport, b"warm-up");
        let _ = from.poll();
        if !collect(to, 1, Duration::from_millis(20)).is_empty() {
            while !collect(to, 1, Duration::from_millis(100)).is_empty() {}
            return true;
        }
    }
    false
}
