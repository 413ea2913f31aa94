#![allow(unused_imports, dead_code)]
//! reader36: breaking the held/redirect/unresolved change (rig copied from two_nodes.rs).

use std::net::IpAddr;
use std::time::Duration;

use espgate_dataplane::NodeEventKind;
use espgate_dataplane::config::{Neighbour, PortBackend};
use espgate_dataplane::prefix::Prefix;
use espgate_dataplane::spd::{Action, Selectors, SpdRule};
use espgate_dataplane::testbed::{self, Host, host_link, node_link};
use espgate_dataplane::{
    NodeConfig, NodeDrop, NodeQueues, NodeReport, PortConfig, Role, SaCommand, SaEntry,
    WorkersConfig, start,
};
use espgate_esp::{AeadAlgorithm, Backend, Direction, Lifetime, SaConfig, SaEvent, Tunnel};
use espgate_io::Mempool;
use espgate_wire::ethernet::MacAddr;

struct Side {
    name: &'static str,
    lan: &'static str,
    lan_addr: &'static str,
    wan_addr: &'static str,
    host: &'static str,
    id: u8,
}

const A: Side = Side {
    name: "a",
    lan: "10.1.0.0/24",
    lan_addr: "10.1.0.254",
    wan_addr: "172.16.0.1",
    host: "10.1.0.1",
    id: 1,
};
const B: Side = Side {
    name: "b",
    lan: "10.2.0.0/24",
    lan_addr: "10.2.0.254",
    wan_addr: "172.16.0.2",
    host: "10.2.0.1",
    id: 2,
};

fn mac(node: u8, port: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, node, port])
}

/// Key material of its own for each SPI (the node refuses two SAs with
/// one key: this once gave 0x100 and 0x200 the same).
fn key(spi: u32) -> Vec<u8> {
    spi.to_be_bytes()
        .into_iter()
        .chain((0..16u32).map(|i| (spi.wrapping_mul(31) + i * 7) as u8))
        .collect()
}

/// `me`'s config: SAs to and from `peer`, split by destination port when
/// `split` (two SAs each way), one worker per SA pair.
fn config(me: &Side, peer: &Side, workers: usize, split: bool) -> NodeConfig {
    let spis_out: Vec<u32> = if split {
        vec![0x100 * u32::from(me.id), 0x100 * u32::from(me.id) + 1]
    } else {
        vec![0x100 * u32::from(me.id)]
    };
    let spis_in: Vec<u32> = spis_out
        .iter()
        .map(|s| s - 0x100 * u32::from(me.id) + 0x100 * u32::from(peer.id))
        .collect();
    let mut sas = Vec::new();
    let mut spd = Vec::new();
    let ranges: Vec<(u16, u16)> = if split {
        vec![(0, 32767), (32768, 65535)]
    } else {
        vec![(0, 65535)]
    };
    for (k, (&o, &i)) in spis_out.iter().zip(&spis_in).enumerate() {
        let t_out = Tunnel {
            src: me.wan_addr.parse().unwrap(),
            dst: peer.wan_addr.parse().unwrap(),
        };
        let t_in = Tunnel {
            src: t_out.dst,
            dst: t_out.src,
        };
        sas.push(SaEntry {
            sa: SaConfig::new(
                o,
                Direction::Outbound,
                t_out,
                AeadAlgorithm::Aes128Gcm,
                key(o),
            ),
            worker: None,
            home: None,
            mirror: Default::default(),
        });
        sas.push(SaEntry {
            sa: SaConfig::new(
                i,
                Direction::Inbound,
                t_in,
                AeadAlgorithm::Aes128Gcm,
                key(i),
            ),
            worker: None,
            home: None,
            mirror: Default::default(),
        });
        let rule = |direction, src: &str, dst: &str, action| SpdRule {
            direction,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: None,
            sport: (0, u16::MAX),
            dport: ranges[k],
            action,
        };
        spd.push(rule(
            Direction::Outbound,
            me.lan,
            peer.lan,
            Action::Protect(o),
        ));
        spd.push(rule(
            Direction::Inbound,
            peer.lan,
            me.lan,
            Action::Protect(i),
        ));
    }
    let port = |name: &str, role, addr: &str, subnet: &str, m| PortConfig {
        name: name.into(),
        role,
        backend: PortBackend::Mem,
        mac: Some(m),
        address: addr.parse().unwrap(),
        subnet: subnet.parse::<Prefix>().unwrap(),
        gateway: None,
        track: Vec::new(),
        mtu: 1500,
    };
    NodeConfig {
        name: me.name.into(),
        ports: vec![
            port("lan", Role::Protected, me.lan_addr, me.lan, mac(me.id, 1)),
            port(
                "wan",
                Role::Unprotected,
                me.wan_addr,
                "172.16.0.0/24",
                mac(me.id, 2),
            ),
        ],
        workers: WorkersConfig {
            count: workers,
            idle_sleep_us: 50,
            ..Default::default()
        },
        sas,
        spd,
        neighbours: Vec::<Neighbour>::new(),
        dpdk_eal_args: None,
        mirror: None,
        state: Default::default(),
        punt: None,
    }
}

struct Rig {
    a: espgate_dataplane::RunningNode,
    b: espgate_dataplane::RunningNode,
    host_a: Host,
    host_b: Host,
}

fn rig(workers: usize, split: bool) -> Rig {
    rig_with(workers, split, |_, _| {})
}

/// A rig whose node files `change` edits first (A's, then B's).
fn rig_with(workers: usize, split: bool, change: impl Fn(&mut NodeConfig, &mut NodeConfig)) -> Rig {
    let pool = Mempool::new(8192, 1024);
    let (mut ca, mut cb) = (
        config(&A, &B, workers, split),
        config(&B, &A, workers, split),
    );
    change(&mut ca, &mut cb);
    let (a_lan, host_a) = host_link(
        &ca.ports[0],
        mac(1, 1),
        workers,
        A.host.parse().unwrap(),
        mac(1, 0x10),
        pool.clone(),
    );
    let (b_lan, host_b) = host_link(
        &cb.ports[0],
        mac(2, 1),
        workers,
        B.host.parse().unwrap(),
        mac(2, 0x10),
        pool.clone(),
    );
    let (a_wan, b_wan) = node_link(
        ("wan", mac(1, 2), workers),
        ("wan", mac(2, 2), workers),
        None,
    );
    let a = start(
        &ca,
        NodeQueues {
            protected: a_lan,
            unprotected: a_wan,
            mirror: None,
            punt: None,
            links: Vec::new(),
        },
        Backend::DEFAULT,
        pool.clone(),
    )
    .unwrap();
    let b = start(
        &cb,
        NodeQueues {
            protected: b_lan,
            unprotected: b_wan,
            mirror: None,
            punt: None,
            links: Vec::new(),
        },
        Backend::DEFAULT,
        pool,
    )
    .unwrap();
    Rig {
        a,
        b,
        host_a,
        host_b,
    }
}

fn collect(host: &mut Host, want: usize) -> Vec<Vec<u8>> {
    testbed::collect(host, want, Duration::from_secs(5))
}

fn warm_up(from: &mut Host, to: &mut Host, dport: u16) {
    assert!(
        testbed::warm_up(from, to, dport),
        "no packet crossed the tunnel"
    );
}

fn udp_payload(ip: &[u8]) -> (IpAddr, IpAddr, u16, Vec<u8>) {
    let s = Selectors::of(ip).unwrap();
    let hl = usize::from(ip[0] & 0xf) * 4;
    (s.src, s.dst, s.dport, ip[hl + 8..].to_vec())
}

/// Packets each SA of `node` carried, by (SPI, direction).
fn carried(node: &espgate_dataplane::RunningNode) -> Vec<(u32, Direction, u64)> {
    let mut v: Vec<_> = node
        .snapshot()
        .unwrap()
        .iter()
        .flat_map(|w| {
            w.sas
                .iter()
                .map(|s| (s.spi, s.direction, s.counters.packets))
        })
        .collect();
    v.sort_by_key(|(spi, d, _)| (*spi, *d == Direction::Inbound));
    v
}

fn settle(r: &Rig) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (r.a.commands_pending() + r.b.commands_pending()) > 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An inbound packet held at its SA's limit is admitted straight from the
/// `limited` queue when a Limit (or a keeper's Mark) command raises the
/// limit: nothing checks that the SA is still run here. An SA parked (or
/// stopped, its exit reported to the peer which starts from there) in the
/// meantime accepts the held packet anyway, after its hand-over: the
/// taker's window does not have it, so the same packet is accepted again
/// there (a replay across the pair). A parked SA must accept nothing.
#[test]
fn inbound_packet_held_at_limit_is_not_accepted_once_its_sa_is_parked() {
    let mut r = rig(1, false);
    warm_up(&mut r.host_a, &mut r.host_b, 7);
    let used = carried(&r.a)
        .iter()
        .find(|(spi, d, _)| *spi == 0x100 && *d == Direction::Outbound)
        .unwrap()
        .2;
    // B's inbound SA may accept nothing past what A sent so far.
    r.b.command(SaCommand::Limit {
        spi: 0x100,
        direction: Direction::Inbound,
        limit: used + 1,
    })
    .unwrap();
    settle(&r);
    for k in 0..3u32 {
        assert!(r.host_a.send_udp(r.host_b.ip, 7, 9, &k.to_be_bytes()));
    }
    // Held at B (not delivered; 20 ms at most).
    let early = testbed::collect(&mut r.host_b, 1, Duration::from_millis(4));
    assert!(early.is_empty(), "a packet passed the limit");
    // The SA moves away from B (parked: its peer runs it now), then a
    // raise that was on its way (a lease's ack, a mark's write) lands.
    r.b.command(SaCommand::Park {
        spi: 0x100,
        direction: Direction::Inbound,
    })
    .unwrap();
    r.b.command(SaCommand::Limit {
        spi: 0x100,
        direction: Direction::Inbound,
        limit: u64::MAX,
    })
    .unwrap();
    settle(&r);
    // (On a machine too slow to land the commands within the 20 ms the
    // packets expire and this passes without having tested anything.)
    let late = testbed::collect(&mut r.host_b, 3, Duration::from_millis(200));
    let _ = (r.a.stop(), r.b.stop());
    assert!(
        late.is_empty(),
        "B's inbound SA 0x100 is parked, yet it accepted {} packet(s) held at its limit",
        late.len()
    );
}

/// One unresolvable next hop holds up every routed packet of the worker:
/// while anything waits for ARP, every packet routed waits behind it in
/// the one `unresolved` queue (128 frames, all next hops and both ports),
/// and one that finds it full is dropped as `arp_miss`. A host behind the
/// far end sending through the tunnel to an address on A's LAN that
/// nobody holds (or a LAN host to a dead WAN address) fills it, and A then
/// drops the traffic to live, resolved hosts: before the change only the
/// packets to the dead address were dropped.
#[test]
fn packets_to_a_dead_address_do_not_starve_those_to_a_live_host() {
    let mut r = rig(1, false);
    warm_up(&mut r.host_a, &mut r.host_b, 7);
    warm_up(&mut r.host_b, &mut r.host_a, 7);
    let dead: IpAddr = "10.1.0.77".parse().unwrap();
    let live = r.host_a.ip;
    let rounds = 20u32;
    let per = 40u32;
    let mut sent_live = 0u32;
    let mut got = Vec::new();
    for round in 0..rounds {
        for k in 0..per {
            let n = round * per + k;
            if r.host_b.send_udp(dead, 5000, 6000, &n.to_be_bytes()) {
                // nothing: nobody answers for it
            }
            if r.host_b.send_udp(live, 5000, 6001, &n.to_be_bytes()) {
                sent_live += 1;
            }
        }
        got.extend(r.host_a.poll());
        std::thread::sleep(Duration::from_millis(2));
        got.extend(r.host_a.poll());
    }
    got.extend(testbed::collect(
        &mut r.host_a,
        (sent_live as usize).saturating_sub(got.len()),
        Duration::from_secs(2),
    ));
    let (ra, rb) = (r.a.stop(), r.b.stop());
    let arp_miss = ra.totals().drops(NodeDrop::ArpMiss);
    let esp_drops = ra.totals().drops(NodeDrop::Esp) + rb.totals().drops(NodeDrop::Esp);
    assert_eq!(
        got.len() as u32,
        sent_live,
        "host A got {} of {} packets sent to it; A dropped {} as arp_miss (esp drops {})",
        got.len(),
        sent_live,
        arp_miss,
        esp_drops
    );
}
