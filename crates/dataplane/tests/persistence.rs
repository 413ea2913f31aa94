//! A node's state directory: a node restarted without a peer uses no
//! sequence number again and accepts no replay of what it accepted before
//! (H3), a corrupt state file stops the start, key material used before is
//! refused at run time (M4), a mirrored node's epoch stays above the last
//! one however the clock reads (H4), and marks are written in few batches.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use espgate_dataplane::config::{Failback, MirrorSettings, PortBackend, Takeover};
use espgate_dataplane::marks::{DEFAULT_AHEAD, Saved};
use espgate_dataplane::prefix::Prefix;
use espgate_dataplane::spd::{Action, SpdRule};
use espgate_dataplane::state_dir::{FILE_NAME, StateDir};
use espgate_dataplane::testbed::{self, Host, host_link, node_link};
use espgate_dataplane::{
    NodeConfig, NodeError, NodeQueues, PortConfig, Role, RunningNode, SaEntry, StateSettings,
    WorkersConfig, start,
};
use espgate_esp::{AeadAlgorithm, Backend, Direction, SaConfig, Tunnel};
use espgate_io::Mempool;
use espgate_wire::ethernet::MacAddr;
use tempfile::TempDir;

const A_WAN: &str = "172.16.0.1";
const B_WAN: &str = "172.16.0.2";
const A_HOST: &str = "10.1.0.1";
const B_HOST: &str = "10.2.0.1";
/// A's SAs to B, split by destination port, and B's inbound twins.
const SPIS: [u32; 2] = [0x100, 0x101];
const AHEAD: u64 = 1024;

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

/// A new empty directory for test `test`, removed (with all in it) when
/// the guard drops, also when the test panics: hold it to the test's end.
fn fresh(test: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("espgate-persist-{test}-"))
        .tempdir()
        .unwrap()
}

fn sa(spi: u32, direction: Direction, src: &str, dst: &str) -> SaEntry {
    let tunnel = Tunnel {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
    };
    let mut sa = SaConfig::new(spi, direction, tunnel, AeadAlgorithm::Aes128Gcm, key(spi));
    sa.esn = true;
    SaEntry {
        sa,
        worker: None,
        home: None,
        mirror: Default::default(),
    }
}

/// Node `a` (outbound SAs to b) or `b` (their inbound twins), one worker,
/// with its state in `state`.
fn config(a: bool, state: Option<PathBuf>) -> NodeConfig {
    let (id, lan, lan_addr, wan_addr) = if a {
        (1, "10.1.0.0/24", "10.1.0.254", A_WAN)
    } else {
        (2, "10.2.0.0/24", "10.2.0.254", B_WAN)
    };
    let mut sas = Vec::new();
    let mut spd = Vec::new();
    for (k, spi) in SPIS.into_iter().enumerate() {
        let rule = |direction, src: &str, dst: &str| SpdRule {
            direction,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: None,
            sport: (0, u16::MAX),
            dport: if k == 0 { (0, 32767) } else { (32768, 65535) },
            action: Action::Protect(spi),
        };
        if a {
            sas.push(sa(spi, Direction::Outbound, A_WAN, B_WAN));
            spd.push(rule(Direction::Outbound, "10.1.0.0/24", "10.2.0.0/24"));
        } else {
            sas.push(sa(spi, Direction::Inbound, A_WAN, B_WAN));
            spd.push(rule(Direction::Inbound, "10.1.0.0/24", "10.2.0.0/24"));
        }
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
        name: if a { "a" } else { "b" }.into(),
        ports: vec![
            port("lan", Role::Protected, lan_addr, lan, mac(id, 1)),
            port(
                "wan",
                Role::Unprotected,
                wan_addr,
                "172.16.0.0/24",
                mac(id, 2),
            ),
        ],
        workers: WorkersConfig {
            count: 1,
            idle_sleep_us: 50,
            ..Default::default()
        },
        sas,
        spd,
        neighbours: Vec::new(),
        dpdk_eal_args: None,
        mirror: None,
        state: StateSettings {
            dir: state,
            // B's inbound SAs reach by their rate, whatever `ahead` is.
            ahead: if a { AHEAD } else { DEFAULT_AHEAD },
        },
        punt: None,
    }
}

/// A and B back to back, every frame on the WAN copied to `tap`.
struct Pair {
    a: RunningNode,
    b: RunningNode,
    host_a: Host,
    host_b: Host,
}

fn pair(ca: &NodeConfig, cb: &NodeConfig, tap: &espgate_io::mem::Tap) -> Pair {
    let pool = Mempool::new(8192, 1024);
    let (a_lan, host_a) = host_link(
        &ca.ports[0],
        mac(1, 1),
        1,
        A_HOST.parse().unwrap(),
        mac(1, 0x10),
        pool.clone(),
    );
    let (b_lan, host_b) = host_link(
        &cb.ports[0],
        mac(2, 1),
        1,
        B_HOST.parse().unwrap(),
        mac(2, 0x10),
        pool.clone(),
    );
    let (a_wan, b_wan) = node_link(
        ("wan", mac(1, 2), 1),
        ("wan", mac(2, 2), 1),
        Some(tap.clone()),
    );
    let q = |protected, unprotected| NodeQueues {
        protected,
        unprotected,
        mirror: None,
        punt: None,
        links: Vec::new(),
    };
    Pair {
        a: start(ca, q(a_lan, a_wan), Backend::DEFAULT, pool.clone()).unwrap(),
        b: start(cb, q(b_lan, b_wan), Backend::DEFAULT, pool).unwrap(),
        host_a,
        host_b,
    }
}

/// Sends `n` datagrams from A's host to B's, alternating the two SAs, in
/// steps of 64 with a pause after each (the marks are 1024 ahead: each
/// write must land before an SA runs 512 further, and an in-memory link
/// outruns a disk's sync).
fn send(p: &mut Pair, n: u32) {
    let dst = p.host_b.ip;
    for k in 0..n {
        let dport = if k % 2 == 0 { 7 } else { 40000 };
        while !p.host_a.send_udp(dst, 9, dport, &k.to_be_bytes()) {
            std::thread::sleep(Duration::from_micros(50));
        }
        if k % 64 == 63 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The ESP frames A sent, as (SPI, low 32 bits of the sequence number).
fn esp_from_a(tap: &espgate_io::mem::Tap) -> Vec<(u32, u32, Vec<u8>)> {
    tap.lock()
        .unwrap()
        .iter()
        .filter(|f| f.len() > 42 && f[6..12] == mac(1, 2).0 && f[12..14] == [8, 0] && f[23] == 50)
        .map(|f| {
            let spi = u32::from_be_bytes(f[34..38].try_into().unwrap());
            let seq = u32::from_be_bytes(f[38..42].try_into().unwrap());
            (spi, seq, f.clone())
        })
        .collect()
}

#[test]
fn a_node_without_a_mirror_restarted_reuses_no_number_and_accepts_no_replay() {
    let tmp = fresh("h3");
    let d = tmp.path();
    let (da, db) = (d.join("a"), d.join("b"));
    let tap: espgate_io::mem::Tap = Arc::new(Mutex::new(Vec::new()));
    let mut p = pair(
        &config(true, Some(da.clone())),
        &config(false, Some(db.clone())),
        &tap,
    );
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 7));
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 40000));
    send(&mut p, 3000);
    let got = testbed::collect(&mut p.host_b, 3000, Duration::from_secs(5));
    // The first life ran both SAs (what is checked below is what B
    // accepts again, not how many crossed: a loaded machine drops some
    // at the in-memory rings).
    assert!(got.len() > 1500, "{} of 3000 crossed", got.len());
    p.a.stop();
    p.b.stop();
    let first = esp_from_a(&tap);
    let high = |spi| {
        first
            .iter()
            .filter(|f| f.0 == spi)
            .map(|f| f.1)
            .max()
            .unwrap()
    };
    let before = [high(SPIS[0]), high(SPIS[1])];

    // B again, alone with an attacker (A's MAC and address) who replays
    // every frame A sent.
    let pool = Mempool::new(8192, 256);
    let cb = config(false, Some(db));
    let (b_lan, mut host_b) = host_link(
        &cb.ports[0],
        mac(2, 1),
        1,
        B_HOST.parse().unwrap(),
        mac(2, 0x10),
        pool.clone(),
    );
    let info = |name: &str, m| espgate_io::PortInfo {
        name: name.into(),
        mac: m,
        mtu: 1500,
    };
    let (mut xq, b_wan) =
        espgate_io::mem::link(info("x", mac(1, 2)), 1, info("wan", mac(2, 2)), 1, 8192);
    let b = start(
        &cb,
        NodeQueues {
            protected: b_lan,
            unprotected: testbed::boxed_queues(b_wan),
            mirror: None,
            punt: None,
            links: Vec::new(),
        },
        Backend::DEFAULT,
        pool.clone(),
    )
    .unwrap();
    let mut attacker = Host::on_queue(
        xq.pop().unwrap(),
        A_WAN.parse::<IpAddr>().unwrap(),
        mac(1, 2),
        mac(2, 2),
        pool.clone(),
    );
    for (_, _, f) in &first {
        while !attacker.send_ip(&f[14..]) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let replayed = testbed::collect(&mut host_b, 1, Duration::from_millis(500));
    let rb = b.stop();
    assert_eq!(
        replayed.len(),
        0,
        "B restarted from its state accepted {} replayed packets",
        replayed.len()
    );
    assert_eq!(rb.totals().decrypted, 0);

    // A again, to a B that never ran (no state): it sends from past its
    // marks, above every number its first life used.
    tap.lock().unwrap().clear();
    let mut p = pair(&config(true, Some(da)), &config(false, None), &tap);
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 7));
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 40000));
    send(&mut p, 100);
    testbed::collect(&mut p.host_b, 100, Duration::from_secs(2));
    p.a.stop();
    p.b.stop();
    let second = esp_from_a(&tap);
    assert!(second.len() >= 100);
    for (spi, seq, _) in second {
        let i = SPIS.iter().position(|s| *s == spi).unwrap();
        assert!(
            seq > before[i],
            "sa {spi:#x} sent {seq} again after its restart (the first life reached {})",
            before[i]
        );
    }
}

/// Starts `cfg` alone on links to nowhere (a mirror port too if it has a
/// mirror).
fn alone(cfg: &NodeConfig) -> Result<RunningNode, NodeError> {
    let pool = Mempool::new(1024, 64);
    let (lan, _) = node_link(("lan", mac(1, 1), 1), ("h", mac(1, 0x10), 1), None);
    let (wan, _) = node_link(("wan", mac(1, 2), 1), ("wan", mac(2, 2), 1), None);
    let (mut mirror, _) = node_link(("mirror", mac(1, 3), 1), ("mirror", mac(2, 3), 1), None);
    let queues = NodeQueues {
        protected: lan,
        unprotected: wan,
        mirror: cfg.mirror.as_ref().and(mirror.pop()),
        punt: None,
        links: Vec::new(),
    };
    start(cfg, queues, Backend::DEFAULT, pool)
}

#[test]
fn a_corrupt_state_file_stops_the_start_naming_file_and_problem() {
    let tmp = fresh("corrupt");
    let d = tmp.path().join("a");
    alone(&config(true, Some(d.clone()))).unwrap().stop();
    let file = d.join(FILE_NAME);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() - 20]).unwrap();
    let e = alone(&config(true, Some(d.clone())))
        .map(|n| n.stop())
        .err()
        .expect("refused");
    assert!(matches!(e, NodeError::State(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "state file {}: checksum mismatch: the file is corrupt or was edited",
            file.display()
        )
    );
    std::fs::write(&file, b"").unwrap();
    let e = alone(&config(true, Some(d)))
        .map(|n| n.stop())
        .err()
        .expect("refused");
    assert!(
        e.to_string().ends_with("truncated: no checksum line"),
        "{e}"
    );
}

#[test]
fn key_material_the_node_uses_or_used_is_refused() {
    let tmp = fresh("keys");
    let d = tmp.path().join("a");
    let cfg = config(true, Some(d.clone()));
    let mut a = alone(&cfg).unwrap();
    let with_key = |spi: u32, of: u32| {
        let mut e = sa(spi, Direction::Outbound, A_WAN, B_WAN);
        e.sa.key = key(of);
        e
    };
    // A new SA with the key of a running one.
    let e = a
        .add_sas(vec![with_key(0x1a0, 0x100)], vec![], None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "outbound sa 0x1a0: its key material is that of outbound sa 0x100, which this node runs; the key's sequence numbers would start again: give the SA a new key"
    );
    // A rekey to the same key.
    let new = with_key(0x1a1, 0x100).sa;
    assert!(matches!(
        a.rekey(0x100, Direction::Outbound, new, Duration::from_millis(10)),
        Err(NodeError::KeyUsed { .. })
    ));
    // Deleted, then added back with its key: refused, and after a restart
    // too (the state directory remembers every key).
    a.delete_sa(0x100, Direction::Outbound).unwrap();
    let e = a
        .add_sas(vec![with_key(0x100, 0x100)], vec![], None)
        .unwrap_err();
    assert!(e.to_string().contains("which this node ran"), "{e}");
    a.add_sas(vec![with_key(0x1a2, 0x1a2)], vec![], None)
        .expect("a new key is taken");
    a.stop();
    let mut a = alone(&cfg).unwrap();
    for k in [0x100, 0x1a2] {
        let e = a
            .add_sas(vec![with_key(0x1b0, k)], vec![], None)
            .unwrap_err();
        assert!(matches!(e, NodeError::KeyUsed { .. }), "{e}");
    }
    a.stop();
}

#[test]
fn a_mirrored_node_s_epoch_stays_above_the_last_whatever_the_clock() {
    let tmp = fresh("epoch");
    let d = tmp.path().join("a");
    // The last life ran with a clock an hour ahead (stepped back since).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let last = now + 3_600_000_000_000;
    let (state, _) = StateDir::open(&d).unwrap();
    state
        .write(&Saved {
            epoch: last,
            ..Saved::default()
        })
        .unwrap();
    let mut cfg = config(true, Some(d.clone()));
    cfg.mirror = Some(MirrorSettings {
        protocol: espgate_mirror::MirrorConfig::default(),
        key: vec![7; 32].into(),
        port_name: "mirror".into(),
        port_backend: PortBackend::Mem,
        port_mac: Some(mac(1, 3)),
        peer_mac: Some(mac(2, 3)),
        peer_addresses: Vec::new(),
        takeover: Takeover::Auto,
        failback: Failback::Manual,
        link_watch: Default::default(),
        worker_stall_ms: 0,
    });
    for life in 1..=2 {
        alone(&cfg).unwrap().stop();
        let (_, saved) = StateDir::open(&d).unwrap();
        assert_eq!(saved.unwrap().epoch, last + life, "life {life}");
    }
}

#[test]
fn a_long_run_writes_its_marks_in_few_batches() {
    let tmp = fresh("batches");
    let d = tmp.path();
    let tap: espgate_io::mem::Tap = Arc::new(Mutex::new(Vec::new()));
    let mut p = pair(&config(true, Some(d.join("a"))), &config(false, None), &tap);
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 7));
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 40000));
    send(&mut p, 40_000);
    let writes = p.a.keeper().unwrap().writes();
    let encrypted = p.a.stop().totals().encrypted;
    p.b.stop();
    // Each write moves every SA that moved `AHEAD` past it, and is due
    // only when one has used half of that: about one write per `AHEAD / 2`
    // numbers of the fastest SA (a write per progress report, every
    // `AHEAD / 8`, would make four times as many).
    let bound = 2 + encrypted * 3 / (2 * AHEAD);
    assert!(
        writes <= bound,
        "{writes} writes for {encrypted} packets (at most {bound})"
    );
    assert!(
        encrypted >= 20 * AHEAD,
        "{encrypted} packets: too few to count"
    );
}

/// A pair (a runs SAs 0x100 out and 0x200 in with r, b keeps them
/// parked) with small jumps, so that a restart placed only by the
/// mirror's rules (a jump past what the peer stores, nothing if it stores
/// nothing) lands below what a long first life used.
fn pair_node(me: u32, state: Option<PathBuf>) -> NodeConfig {
    let (lan_addr, wan_addr) = if me == 1 {
        ("10.1.0.254", A_WAN)
    } else {
        ("10.1.0.253", "172.16.0.3")
    };
    let mut cfg = config(true, state);
    cfg.name = if me == 1 { "a" } else { "b" }.into();
    cfg.ports[0].address = lan_addr.parse().unwrap();
    cfg.ports[0].mac = Some(mac(me as u8, 1));
    cfg.ports[1].address = wan_addr.parse().unwrap();
    cfg.ports[1].mac = Some(mac(me as u8, 2));
    let mut out = sa(0x100, Direction::Outbound, A_WAN, R_WAN);
    let mut inb = sa(0x200, Direction::Inbound, R_WAN, A_WAN);
    out.home = Some(1);
    inb.home = Some(1);
    cfg.sas = vec![out, inb];
    cfg.spd = vec![
        protect(Direction::Outbound, "10.1.0.0/24", "10.2.0.0/24", 0x100),
        protect(Direction::Inbound, "10.2.0.0/24", "10.1.0.0/24", 0x200),
    ];
    cfg.mirror = Some(MirrorSettings {
        protocol: espgate_mirror::MirrorConfig {
            node: me,
            peer: 3 - me,
            interval: 16,
            quantity: 64,
            takeover_jump: 1024,
            takeover_jump_32: 1024,
            inbound_interval: 64,
            ..Default::default()
        },
        key: vec![7; 32].into(),
        port_name: "mirror".into(),
        port_backend: PortBackend::Mem,
        port_mac: Some(mac(me as u8, 3)),
        peer_mac: Some(mac(3 - me as u8, 3)),
        peer_addresses: Vec::new(),
        takeover: Takeover::Manual,
        failback: Failback::Manual,
        link_watch: Default::default(),
        worker_stall_ms: 0,
    });
    cfg
}

const R_WAN: &str = "172.16.0.2";

/// A rule protecting all traffic from `src` to `dst` with SA `spi`.
fn protect(direction: Direction, src: &str, dst: &str, spi: u32) -> SpdRule {
    SpdRule {
        direction,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol: None,
        sport: (0, u16::MAX),
        dport: (0, u16::MAX),
        action: Action::Protect(spi),
    }
}

/// r: the far end of a's SAs, with no state (it never restarts here).
fn far_end() -> NodeConfig {
    let mut cfg = config(false, None);
    cfg.name = "r".into();
    cfg.ports[1].address = R_WAN.parse().unwrap();
    cfg.ports[1].mac = Some(mac(9, 2));
    cfg.ports[0].mac = Some(mac(9, 1));
    let mut inb = sa(0x100, Direction::Inbound, A_WAN, R_WAN);
    let mut out = sa(0x200, Direction::Outbound, R_WAN, A_WAN);
    inb.home = None;
    out.home = None;
    cfg.sas = vec![inb, out];
    cfg.spd = vec![
        protect(Direction::Outbound, "10.2.0.0/24", "10.1.0.0/24", 0x200),
        protect(Direction::Inbound, "10.1.0.0/24", "10.2.0.0/24", 0x100),
    ];
    cfg
}

/// Starts node `cfg` of the pair on the WAN switch and a mirror link end.
fn start_pair_node(
    cfg: &NodeConfig,
    wan: &mut testbed::SwitchHandle,
    capture: &testbed::Capture,
    mirror: Box<dyn espgate_io::PortQueue>,
    pool: &Arc<Mempool>,
) -> (RunningNode, Host) {
    let (lan, host) = host_link(
        &cfg.ports[0],
        cfg.ports[0].mac.unwrap(),
        1,
        A_HOST.parse().unwrap(),
        mac(1, 0x10),
        pool.clone(),
    );
    let q = NodeQueues {
        protected: lan,
        unprotected: testbed::boxed_queues(wan.attach(
            cfg.ports[1].mac.unwrap(),
            1,
            Some(capture.clone()),
        )),
        mirror: Some(mirror),
        punt: None,
        links: Vec::new(),
    };
    (start(cfg, q, Backend::DEFAULT, pool.clone()).unwrap(), host)
}

fn wait_synced(n: &RunningNode) {
    for _ in 0..500 {
        if n.pair_status().is_some_and(|s| s.synced) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} did not synchronise", n.name());
}

/// ESP frames on the capture from `src` with `spi`: (sequence number low
/// 32 bits, the IP packet).
fn esp_of(capture: &testbed::Capture, src: MacAddr, spi: u32) -> Vec<(u32, Vec<u8>)> {
    capture
        .lock()
        .unwrap()
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.len() > 42 && f[6..12] == src.0 && f[12..14] == [8, 0] && f[23] == 50)
        .filter(|f| u32::from_be_bytes(f[34..38].try_into().unwrap()) == spi)
        .map(|f| {
            (
                u32::from_be_bytes(f[38..42].try_into().unwrap()),
                f[14..].to_vec(),
            )
        })
        .collect()
}

#[test]
fn a_pair_powered_off_at_once_restarts_past_both_lives_and_accepts_no_replay() {
    let tmp = fresh("power");
    let d = tmp.path();
    let pool = Mempool::new(16 * 1024, 1024);
    let capture: testbed::Capture = Arc::new(Mutex::new(Vec::new()));
    let mut wan = testbed::Switch::new("wan", pool.clone());
    let r_wan = wan.attach(mac(9, 2), 1, Some(capture.clone()));
    let attacker_q = wan.attach(mac(8, 2), 1, None).pop().unwrap();
    let mut wan = wan.start();
    let cr = far_end();
    let (r_lan, mut host_r) = host_link(
        &cr.ports[0],
        mac(9, 1),
        1,
        B_HOST.parse().unwrap(),
        mac(9, 0x10),
        pool.clone(),
    );
    let r = start(
        &cr,
        NodeQueues {
            protected: r_lan,
            unprotected: testbed::boxed_queues(r_wan),
            mirror: None,
            punt: None,
            links: Vec::new(),
        },
        Backend::DEFAULT,
        pool.clone(),
    )
    .unwrap();
    let (ca, cb) = (
        pair_node(1, Some(d.join("a"))),
        pair_node(2, Some(d.join("b"))),
    );
    let lives = |wan: &mut testbed::SwitchHandle| {
        let (mut ma, mut mb) = node_link(("mirror", mac(1, 3), 1), ("mirror", mac(2, 3), 1), None);
        let (a, host_a) = start_pair_node(&ca, wan, &capture, ma.pop().unwrap(), &pool);
        let (b, _) = start_pair_node(&cb, wan, &capture, mb.pop().unwrap(), &pool);
        wait_synced(&a);
        (a, b, host_a)
    };
    // The first life: 3000 datagrams each way between a's host and r's.
    let (a, b, mut host_a) = lives(&mut wan);
    assert!(testbed::warm_up(&mut host_a, &mut host_r, 7));
    assert!(testbed::warm_up(&mut host_r, &mut host_a, 7));
    for k in 0..3000u32 {
        host_a.send_udp(host_r.ip, 9, 7, &k.to_be_bytes());
        host_r.send_udp(host_a.ip, 9, 7, &k.to_be_bytes());
        if k % 32 == 31 {
            std::thread::sleep(Duration::from_millis(2));
            let _ = host_a.poll();
            let _ = host_r.poll();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // The power goes on both at once.
    a.stop();
    b.stop();
    let used = esp_of(&capture, mac(1, 2), 0x100);
    let high = used.iter().map(|(s, _)| *s).max().unwrap();
    let accepted = esp_of(&capture, mac(9, 2), 0x200);
    assert!(
        high > 2000 && accepted.len() > 2000,
        "{high}, {}",
        accepted.len()
    );
    let _ = host_a.poll();
    capture.lock().unwrap().clear();

    // Both back, their memories gone: a replays nothing r sent it before,
    // and sends above everything its first life sent.
    let (a, b, mut host_a) = lives(&mut wan);
    let mut attacker = Host::on_queue(
        attacker_q,
        R_WAN.parse::<IpAddr>().unwrap(),
        mac(8, 2),
        mac(1, 2),
        pool.clone(),
    );
    for (_, ip) in &accepted {
        while !attacker.send_ip(ip) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let replayed = testbed::collect(&mut host_a, 1, Duration::from_millis(500));
    assert!(
        replayed.is_empty(),
        "a accepted {} replayed packets after the power loss",
        replayed.len()
    );
    // The restarted pair runs once its marks are durable and it synced:
    // probes until one crosses, then traffic.
    assert!(testbed::warm_up(&mut host_a, &mut host_r, 7));
    for k in 0..100u32 {
        host_a.send_udp(host_r.ip, 9, 7, &k.to_be_bytes());
    }
    testbed::collect(&mut host_r, 100, Duration::from_secs(2));
    a.stop();
    b.stop();
    r.stop();
    let again = esp_of(&capture, mac(1, 2), 0x100);
    assert!(!again.is_empty(), "a sent nothing after the power loss");
    for (seq, _) in again {
        assert!(
            seq > high,
            "a sent {seq} again (its first life reached {high})"
        );
    }
}

/// Sends `n` datagrams from A's host to B's on SA `SPIS[0]`, one a
/// millisecond, and returns how many arrived.
fn trickle(p: &mut Pair, n: u32) -> usize {
    let dst = p.host_b.ip;
    let mut got = 0;
    for k in 0..n {
        while !p.host_a.send_udp(dst, 9, 7, &k.to_be_bytes()) {
            std::thread::sleep(Duration::from_micros(50));
        }
        std::thread::sleep(Duration::from_millis(1));
        got += p.host_b.poll().len();
    }
    got + testbed::collect(&mut p.host_b, 1, Duration::from_millis(100)).len()
}

/// Moves A's outbound SA `SPIS[0]` `by` numbers on (as a takeover or a
/// restart of the far end does).
fn jump(p: &Pair, from: u64, by: u64) {
    let cmd = espgate_dataplane::SaCommand::Activate {
        spi: SPIS[0],
        direction: Direction::Outbound,
        start: from + by,
        bitmap: Vec::new(),
        packets: 0,
        bytes: 0,
    };
    p.a.command(cmd).unwrap();
    while p.a.commands_pending() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A node without a mirror, with a state directory, whose far end jumps
/// past its inbound mark stalls only until its keeper has written a mark
/// past the jump: every time, not only the first (the worker reported a
/// stall when the SA's lifetime count of `lease_stall` drops was 1 modulo
/// `STALL_REPORT_EVERY`, so a second stall waited for up to 63 more
/// refused packets before the keeper heard of it).
#[test]
fn an_inbound_sa_stalled_at_its_mark_resumes_at_once_every_time() {
    let tmp = fresh("stalls");
    let d = tmp.path();
    let tap: espgate_io::mem::Tap = Arc::new(Mutex::new(Vec::new()));
    let mut p = pair(&config(true, None), &config(false, Some(d.join("b"))), &tap);
    assert!(testbed::warm_up(&mut p.host_a, &mut p.host_b, 7));
    assert_eq!(trickle(&mut p, 50), 50);
    // Far past B's mark (its reach is at most DEFAULT_AHEAD), well within
    // ESN inference.
    let by = 4 * DEFAULT_AHEAD;
    let mut from = 1_000;
    for episode in 1..=3 {
        jump(&p, from, by);
        from += by + 1_000;
        // One packet past the mark, refused: reported at once, it is all
        // the keeper needs to write a mark past it (the wait is generous,
        // not a bound: without the report the limit never moves).
        trickle(&mut p, 1);
        std::thread::sleep(Duration::from_secs(2));
        let got = trickle(&mut p, 10);
        assert!(
            got >= 9,
            "stall {episode}: {got} of 10 crossed after one packet past the mark was refused"
        );
    }
    p.a.stop();
    let rb = p.b.stop();
    let (c, _) = rb.inbound()[&SPIS[0]];
    let stalls = c.drops.get(espgate_esp::DropReason::LeaseStall);
    assert!(stalls <= 30, "{stalls} packets refused at the mark");
}
