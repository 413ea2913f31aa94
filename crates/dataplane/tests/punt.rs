//! The punt port on a node with in-memory ports: what goes to the kernel
//! (IKE on 500, IKE on 4500 behind the non-ESP marker, NAT keepalives,
//! ICMP echo and anything else for the node's addresses), what does not
//! (ARP, neighbour discovery, ESP and ESP in UDP, traffic for other
//! addresses), what the kernel's packets become, and the node without a
//! punt device, which drops as it always did.
//!
//! The node runs on its own threads: a test waits until the node's
//! counters say it handled what was sent, then looks.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use espgate_dataplane::config::{Neighbour, PortBackend};
use espgate_dataplane::neigh::{request, write_arp};
use espgate_dataplane::prefix::Prefix;
use espgate_dataplane::punt::PuntDevice;
use espgate_dataplane::testbed::{self, MemPunt};
use espgate_dataplane::{
    NodeConfig, NodeDrop, NodeQueues, PortConfig, PuntSettings, Role, RunningNode, SaEntry,
    WorkerCounters, WorkersConfig, start,
};
use espgate_esp::{AeadAlgorithm, Backend, Direction, SaConfig, Tunnel, UdpEncap};
use espgate_io::mem::{self, MemQueue};
use espgate_io::{BufPool, Mempool, Packet, PortInfo, PortQueue};
use espgate_wire::PacketBuf;
use espgate_wire::arp::{ArpOp, ArpRepr};
use espgate_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Repr;
use espgate_wire::ipv6::Ipv6Repr;

/// The node's protected (IPv6) and unprotected (IPv4) addresses.
const LAN: &str = "2001:db8:1::254";
const WAN: &str = "172.16.0.1";
/// A host on each link.
const LAN_HOST: &str = "2001:db8:1::1";
const WAN_HOST: &str = "172.16.0.2";
/// The node's inbound SA, ESP in UDP on 4500.
const SPI: u32 = 0x2000;

const NODE_LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const NODE_WAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const LAN_HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0x10]);
const WAN_HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn config(punt: bool) -> NodeConfig {
    let port = |name: &str, role, addr: &str, subnet: &str, mac| PortConfig {
        name: name.into(),
        role,
        backend: PortBackend::Mem,
        mac: Some(mac),
        address: addr.parse().unwrap(),
        subnet: subnet.parse::<Prefix>().unwrap(),
        gateway: None,
        track: Vec::new(),
        mtu: 1500,
    };
    let mut sa = SaConfig::new(
        SPI,
        Direction::Inbound,
        Tunnel {
            src: WAN_HOST.parse().unwrap(),
            dst: WAN.parse().unwrap(),
        },
        AeadAlgorithm::Aes128Gcm,
        vec![7; 20],
    );
    sa.udp_encap = Some(UdpEncap::default());
    NodeConfig {
        name: "p".into(),
        ports: vec![
            port("lan", Role::Protected, LAN, "2001:db8:1::/64", NODE_LAN_MAC),
            port("wan", Role::Unprotected, WAN, "172.16.0.0/24", NODE_WAN_MAC),
        ],
        workers: WorkersConfig {
            count: 1,
            idle_sleep_us: 50,
            ..Default::default()
        },
        sas: vec![SaEntry {
            sa,
            worker: None,
            home: None,
            mirror: Default::default(),
        }],
        spd: Vec::new(),
        // No NDP, and no waiting for ARP: the hosts are known.
        neighbours: vec![
            Neighbour {
                ip: LAN_HOST.parse().unwrap(),
                mac: LAN_HOST_MAC,
            },
            Neighbour {
                ip: WAN_HOST.parse().unwrap(),
                mac: WAN_HOST_MAC,
            },
        ],
        dpdk_eal_args: None,
        mirror: None,
        state: Default::default(),
        punt: punt.then(|| PuntSettings {
            interface: "espgate0".into(),
        }),
    }
}

/// One end of a link: frames written and read whole.
struct Wire {
    queue: MemQueue,
    pool: BufPool,
    mac: MacAddr,
}

impl Wire {
    /// Sends an Ethernet frame.
    fn frame(&mut self, frame: &[u8]) {
        let mut b = Packet::from(self.pool.get());
        b.append(frame.len()).unwrap().copy_from_slice(frame);
        let mut v = vec![b];
        assert_eq!(self.queue.tx_burst(&mut v, &mut self.pool), 1);
    }

    /// Sends an IP packet (and `padding` bytes after it) to `to`.
    fn ip(&mut self, to: MacAddr, ip: &[u8], padding: usize) {
        let ethertype = if ip[0] >> 4 == 6 {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        };
        let mut f = vec![0u8; 14];
        EthernetRepr {
            dst: to,
            src: self.mac,
            vlan: None,
            ethertype,
        }
        .emit(&mut f)
        .unwrap();
        f.extend_from_slice(ip);
        f.resize(f.len() + padding, 0);
        self.frame(&f);
    }

    /// The frames that arrived.
    fn take(&mut self) -> Vec<Vec<u8>> {
        let mut rx = Vec::new();
        self.queue.rx_burst(&mut self.pool, &mut rx, 256);
        rx.into_iter()
            .map(|b| {
                let f = b.data().to_vec();
                self.pool.recycle(b);
                f
            })
            .collect()
    }
}

struct Rig {
    node: RunningNode,
    lan: Wire,
    wan: Wire,
}

fn rig(punt: Option<Arc<MemPunt>>) -> Rig {
    let pool = Mempool::new(1024, 256);
    let info = |name: &str, mac| PortInfo {
        name: name.into(),
        mac,
        mtu: 1500,
    };
    let (lan_host, lan_node) = mem::link(
        info("host", LAN_HOST_MAC),
        1,
        info("lan", NODE_LAN_MAC),
        1,
        256,
    );
    let (wan_host, wan_node) = mem::link(
        info("host", WAN_HOST_MAC),
        1,
        info("wan", NODE_WAN_MAC),
        1,
        256,
    );
    let node = start(
        &config(punt.is_some()),
        NodeQueues {
            protected: testbed::boxed_queues(lan_node),
            unprotected: testbed::boxed_queues(wan_node),
            mirror: None,
            punt: punt.map(|p| p as Arc<dyn PuntDevice>),
            links: Vec::new(),
        },
        Backend::DEFAULT,
        pool.clone(),
    )
    .unwrap();
    let wire = |q: Vec<MemQueue>, mac| Wire {
        queue: q.into_iter().next().unwrap(),
        pool: BufPool::new(pool.clone(), 16),
        mac,
    };
    Rig {
        node,
        lan: wire(lan_host, LAN_HOST_MAC),
        wan: wire(wan_host, WAN_HOST_MAC),
    }
}

impl Rig {
    /// The node's counters once `done` holds of them, or after five
    /// seconds.
    fn counters_when(&self, done: impl Fn(&WorkerCounters) -> bool) -> WorkerCounters {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut c = WorkerCounters::default();
            for w in self.node.snapshot().unwrap() {
                c.add(&w.counters);
            }
            if done(&c) || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(self) -> WorkerCounters {
        self.node.stop().totals()
    }
}

/// What `got` gives until it has given `n`, or after five seconds.
fn collect<T>(n: usize, mut got: impl FnMut() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    while all.len() < n && Instant::now() < deadline {
        all.extend(got());
        std::thread::sleep(Duration::from_millis(1));
    }
    all
}

fn ipv4(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    Ipv4Repr {
        src: v4(src),
        dst: v4(dst),
        protocol: proto,
        payload_len: payload.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(payload);
    p
}

fn ipv6(src: &str, dst: &str, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    Ipv6Repr {
        src: v6(src),
        dst: v6(dst),
        next_header,
        payload_len: payload.len(),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(payload);
    p
}

/// A UDP header and `payload` (the checksum left zero: nobody checks it
/// on the way to the kernel here).
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An IKE_SA_INIT-like message: the header's SPIs and a payload.
fn ike() -> Vec<u8> {
    let mut m = vec![0x11; 8];
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&[0x21, 0x20, 0x22, 0x08]);
    m.resize(64, 0x33);
    m
}

/// ICMP (or ICMPv6) echo request of type `t`.
fn echo(t: u8) -> Vec<u8> {
    let mut e = vec![t, 0, 0, 0, 0x12, 0x34, 0, 1];
    e.extend_from_slice(b"ping payload");
    e
}

/// The ARP request of the host on the WAN for `target`.
fn arp_request(target: &str) -> Vec<u8> {
    let mut b = espgate_wire::HeapBuf::with_capacity(128, 0);
    write_arp(
        &mut b,
        &request(v4(WAN_HOST), WAN_HOST_MAC, v4(target)),
        WAN_HOST_MAC,
    );
    b.data().to_vec()
}

fn ethertype(frame: &[u8]) -> EtherType {
    EthernetFrame::new_checked(frame).unwrap().ethertype()
}

#[test]
fn ike_echo_and_the_rest_for_the_node_go_to_the_kernel() {
    let punt = Arc::new(MemPunt::new(64));
    let mut r = rig(Some(punt.clone()));
    let mut marked = ike();
    marked.splice(0..0, [0, 0, 0, 0]);
    // A keepalive whose UDP length says one byte in an IP packet that
    // carries four: it looks like ESP to the first look and is found a
    // keepalive by the SAD.
    let mut odd_keepalive = udp(4500, 4500, &[0xff, 1, 2, 3]);
    odd_keepalive[4..6].copy_from_slice(&9u16.to_be_bytes());
    let wan = [
        ipv4(WAN_HOST, WAN, protocol::UDP, &udp(500, 500, &ike())),
        ipv4(WAN_HOST, WAN, protocol::UDP, &udp(4500, 4500, &marked)),
        ipv4(WAN_HOST, WAN, protocol::UDP, &udp(4500, 4500, &[0xff])),
        ipv4(WAN_HOST, WAN, protocol::UDP, &odd_keepalive),
        ipv4(WAN_HOST, WAN, protocol::ICMP, &echo(8)),
        ipv4(WAN_HOST, WAN, protocol::TCP, &[0; 20]),
    ];
    for p in &wan {
        // Padded as a short frame on a wire is.
        r.wan.ip(NODE_WAN_MAC, p, 10);
    }
    let lan = ipv6(LAN_HOST, LAN, protocol::ICMPV6, &echo(128));
    r.lan.ip(NODE_LAN_MAC, &lan, 0);
    let got = collect(wan.len() + 1, || punt.punted());
    // Each IP packet whole, without the padding; each port's in order.
    let (v4, v6): (Vec<_>, Vec<_>) = got.into_iter().partition(|p| p[0] >> 4 == 4);
    assert_eq!(v4, wan);
    assert_eq!(v6, [lan]);
    let c = r.stop();
    assert_eq!(c.punted, 7);
    let drops: Vec<_> = c.nonzero_drops().collect();
    assert!(drops.is_empty(), "{drops:?}");
}

#[test]
fn arp_neighbour_discovery_esp_and_other_addresses_are_not_punted() {
    let punt = Arc::new(MemPunt::new(64));
    let mut r = rig(Some(punt.clone()));
    r.wan.frame(&arp_request(WAN));
    let mut esp_header = SPI.to_be_bytes().to_vec();
    esp_header.extend_from_slice(&[0, 0, 0, 1]);
    esp_header.resize(64, 0xaa);
    // ESP itself (this SA wants it in UDP) and ESP in UDP on 4500.
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(WAN_HOST, WAN, protocol::ESP, &esp_header),
        0,
    );
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(WAN_HOST, WAN, protocol::UDP, &udp(4500, 4500, &esp_header)),
        0,
    );
    // IKE and echo for an address that is not the node's.
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(
            WAN_HOST,
            "172.16.0.9",
            protocol::UDP,
            &udp(500, 500, &ike()),
        ),
        0,
    );
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(WAN_HOST, "172.16.0.9", protocol::ICMP, &echo(8)),
        0,
    );
    // A neighbour solicitation for the node's own address.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&v6(LAN).octets());
    r.lan
        .ip(NODE_LAN_MAC, &ipv6(LAN_HOST, LAN, protocol::ICMPV6, &ns), 0);
    r.counters_when(|c| {
        c.arp_replies
            + c.drops(NodeDrop::Esp)
            + c.drops(NodeDrop::Policy)
            + c.drops(NodeDrop::Local)
            == 6
    });
    // The worker counts the ARP reply before it flushes the frame out.
    let frames = collect(1, || r.wan.take());
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        ethertype(&frames[0]),
        EtherType::ARP,
        "the node answers ARP"
    );
    assert!(punt.punted().is_empty());
    let c = r.stop();
    assert_eq!((c.punted, c.arp_replies), (0, 1));
    assert_eq!(c.drops(NodeDrop::Esp), 2, "ESP goes to the SAD");
    assert_eq!(
        c.drops(NodeDrop::Policy),
        2,
        "other addresses go to the SPD"
    );
    assert_eq!(c.drops(NodeDrop::Local), 1, "neighbour discovery stays");
}

#[test]
fn without_a_punt_device_the_node_drops_as_before() {
    let mut r = rig(None);
    let mut marked = ike();
    marked.splice(0..0, [0, 0, 0, 0]);
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(WAN_HOST, WAN, protocol::UDP, &udp(500, 500, &ike())),
        0,
    );
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(WAN_HOST, WAN, protocol::UDP, &udp(4500, 4500, &marked)),
        0,
    );
    r.wan.ip(
        NODE_WAN_MAC,
        &ipv4(WAN_HOST, WAN, protocol::ICMP, &echo(8)),
        0,
    );
    r.lan.ip(
        NODE_LAN_MAC,
        &ipv6(LAN_HOST, LAN, protocol::ICMPV6, &echo(128)),
        0,
    );
    r.counters_when(|c| c.drops(NodeDrop::Ike) + c.drops(NodeDrop::Local) == 4);
    let c = r.stop();
    assert_eq!(c.punted, 0);
    assert_eq!(c.drops(NodeDrop::Ike), 2);
    assert_eq!(c.drops(NodeDrop::Local), 2);
}

#[test]
fn a_full_punt_device_drops_and_counts() {
    let punt = Arc::new(MemPunt::new(2));
    let mut r = rig(Some(punt.clone()));
    for _ in 0..3 {
        r.wan.ip(
            NODE_WAN_MAC,
            &ipv4(WAN_HOST, WAN, protocol::ICMP, &echo(8)),
            0,
        );
    }
    r.counters_when(|c| c.punted + c.drops(NodeDrop::PuntFull) == 3);
    let c = r.stop();
    assert_eq!(punt.punted().len(), 2);
    assert_eq!((c.punted, c.drops(NodeDrop::PuntFull)), (2, 1));
}

#[test]
fn the_kernel_s_packets_leave_by_the_port_of_their_source_and_only_from_the_node() {
    let punt = Arc::new(MemPunt::new(64));
    let mut r = rig(Some(punt.clone()));
    let reply = ipv4(WAN, WAN_HOST, protocol::ICMP, &echo(0));
    let ike_reply = ipv4(WAN, WAN_HOST, protocol::UDP, &udp(500, 500, &ike()));
    let lan_reply = ipv6(LAN, LAN_HOST, protocol::ICMPV6, &echo(129));
    let mut trailing = reply.clone();
    trailing.extend_from_slice(&[0xee; 5]);
    let spoofed = ipv4(
        "172.16.0.3",
        WAN_HOST,
        protocol::UDP,
        &udp(500, 500, &ike()),
    );
    let spoofed_inside = ipv4("10.1.0.7", WAN_HOST, protocol::ICMP, &echo(0));
    let cut_short = &ike_reply[..ike_reply.len() - 1];
    let too_long = ipv4(WAN, WAN_HOST, protocol::UDP, &vec![0; 3000]);
    for p in [
        &reply[..],
        &ike_reply,
        &lan_reply,
        &trailing,
        &spoofed,
        &spoofed_inside,
        cut_short,
        &[0x45, 0, 0],
        &[],
        &too_long,
    ] {
        assert!(punt.send_as_kernel(p));
    }
    r.counters_when(|c| {
        c.punt_sent + c.drops(NodeDrop::PuntForeign) + c.drops(NodeDrop::PuntBad) == 10
    });
    // Counted before the worker flushes them out.
    let (wan, lan) = (collect(3, || r.wan.take()), collect(1, || r.lan.take()));
    let ip_of = |f: &Vec<u8>, mac: MacAddr, ethertype: EtherType| {
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (e.dst(), e.src(), e.ethertype()),
            (
                mac,
                if mac == WAN_HOST_MAC {
                    NODE_WAN_MAC
                } else {
                    NODE_LAN_MAC
                },
                ethertype
            )
        );
        f[14..].to_vec()
    };
    let wan: Vec<_> = wan
        .iter()
        .map(|f| ip_of(f, WAN_HOST_MAC, EtherType::IPV4))
        .collect();
    // Unchanged: the TTL too (they start at the node).
    assert_eq!(wan, [reply.clone(), ike_reply, reply]);
    let lan: Vec<_> = lan
        .iter()
        .map(|f| ip_of(f, LAN_HOST_MAC, EtherType::IPV6))
        .collect();
    assert_eq!(lan, [lan_reply]);
    let c = r.stop();
    assert_eq!(c.punt_sent, 4);
    assert_eq!(c.drops(NodeDrop::PuntForeign), 2);
    assert_eq!(
        c.drops(NodeDrop::PuntBad),
        4,
        "cut short, too short, empty, longer than a buffer"
    );
    assert_eq!(c.punted, 0);
}

#[test]
fn a_punt_port_without_a_device_does_not_start() {
    let info = |name: &str| PortInfo {
        name: name.into(),
        mac: NODE_WAN_MAC,
        mtu: 1500,
    };
    let (_, lan) = mem::link(info("host"), 1, info("lan"), 1, 4);
    let (_, wan) = mem::link(info("host"), 1, info("wan"), 1, 4);
    let e = start(
        &config(true),
        NodeQueues {
            protected: testbed::boxed_queues(lan),
            unprotected: testbed::boxed_queues(wan),
            mirror: None,
            punt: None,
            links: Vec::new(),
        },
        Backend::DEFAULT,
        Mempool::new(8, 0),
    )
    .err()
    .expect("refused");
    assert!(
        matches!(e, espgate_dataplane::NodeError::MissingPunt),
        "{e}"
    );
}

/// A packet the kernel sends through the punt device to a WAN address
/// whose MAC the node does not know yet waits for ARP's answer and goes
/// out once it comes: it went out of a port, so `punt_sent` counts it.
/// (Reader37's find: only a packet sent at once was counted.)
#[test]
fn a_kernel_packet_that_waited_for_arp_is_counted_as_sent() {
    let punt = Arc::new(MemPunt::new(64));
    let mut r = rig(Some(punt.clone()));
    const OTHER: &str = "172.16.0.9";
    const OTHER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);
    let reply = ipv4(WAN, OTHER, protocol::ICMP, &echo(0));
    assert!(punt.send_as_kernel(&reply));
    // The node asks ARP for OTHER; answer for it.
    let asked = collect(1, || {
        r.wan
            .take()
            .into_iter()
            .filter(|f| ethertype(f) == EtherType::ARP)
            .collect()
    });
    assert_eq!(asked.len(), 1, "the node asked ARP for {OTHER}");
    let mut b = espgate_wire::HeapBuf::with_capacity(128, 0);
    write_arp(
        &mut b,
        &ArpRepr {
            op: ArpOp::Reply,
            sender_mac: OTHER_MAC,
            sender_ip: v4(OTHER),
            target_mac: NODE_WAN_MAC,
            target_ip: v4(WAN),
        },
        OTHER_MAC,
    );
    r.wan.frame(b.data());
    let out = collect(1, || {
        r.wan
            .take()
            .into_iter()
            .filter(|f| ethertype(f) == EtherType::IPV4)
            .collect()
    });
    assert_eq!(
        out.len(),
        1,
        "the kernel's packet went out once ARP answered"
    );
    assert_eq!(
        EthernetFrame::new_checked(&out[0][..]).unwrap().dst(),
        OTHER_MAC
    );
    assert_eq!(&out[0][14..], &reply[..]);
    let c = r.stop();
    assert_eq!(c.drops(NodeDrop::ArpMiss), 0);
    assert_eq!(
        c.punt_sent, 1,
        "the kernel's packet went out of the WAN port after waiting for ARP, yet punt_sent is {}",
        c.punt_sent
    );
}
