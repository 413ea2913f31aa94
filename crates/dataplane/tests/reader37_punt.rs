#![allow(dead_code, unused_imports)]
//! reader37: the punt path and the `unresolved` wait (rig copied from punt.rs).

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

/// ICMP (or ICMPv6) echo request of type `t`.
fn echo(t: u8) -> Vec<u8> {
    let mut e = vec![t, 0, 0, 0, 0x12, 0x34, 0, 1];
    e.extend_from_slice(b"ping payload");
    e
}

fn ethertype(frame: &[u8]) -> EtherType {
    EthernetFrame::new_checked(frame).unwrap().ethertype()
}

/// A packet the kernel sends through the punt device to a WAN address
/// whose MAC the node does not know yet now waits for ARP's answer and
/// goes out once it comes (the change's `unresolved` wait): it went out of
/// a port, so `punt_sent` ("packets the kernel sent through the punt
/// device that went out of a port") must count it. `kernel_packet` counts
/// only a `Send` verdict; one that waited (`Verdict::Wait`) and went out
/// later from `poll_unresolved` is never counted.
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
