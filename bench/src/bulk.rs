//! Bulk sync and memory per SA, measured on the sans-IO mirror cores of
//! two nodes passing frames to each other in memory (the protocol's own
//! cost, without a link) and over a veth pair with AF_PACKET sockets (the
//! link's cost too), and the memory of the ESP SA objects a worker holds.
//! Memory comes from the counting allocator of the harness binary.

use std::process::Command;
use std::time::{Duration, Instant};

use espgate_dataplane::mirror_port::MirrorPort;
use espgate_esp::{Backend, OutboundSa, Sad};
use espgate_io::{BufPool, Mempool, PortQueue, af_packet};
use espgate_mirror::{Mirror, MirrorConfig, MirrorKey};
use espgate_wire::Direction;

/// What one bulk sync measured.
#[derive(Debug, Clone, Copy)]
pub struct BulkOutcome {
    /// SAs in the table.
    pub sas: usize,
    /// Seconds from the joiner's first frame to its `Synced`.
    pub seconds: f64,
    /// Frames the owner sent for it.
    pub frames: u64,
    /// Mirror bookkeeping per owned SA on the owner, bytes.
    pub owner_bytes_per_sa: f64,
    /// Mirror bookkeeping per standby SA on the joiner after the sync, bytes.
    pub standby_bytes_per_sa: f64,
    /// Mirror frames the link's loss rule dropped, both ways (over veth).
    pub dropped: u64,
}

fn node(me: u32, epoch: u64) -> Mirror {
    let cfg = MirrorConfig {
        node: me,
        peer: 3 - me,
        ..MirrorConfig::default()
    };
    let key = MirrorKey::new(b"bench mirror key, 32 bytes long!").expect("key");
    Mirror::new(cfg, key, epoch, 0)
}

/// Node 1 owns `n` ESN outbound SAs; node 2 joins and bulk-syncs them.
/// `allocated` reads the allocator's live byte count.
pub fn bulk_sync(n: usize, allocated: &dyn Fn() -> usize) -> BulkOutcome {
    let before = allocated();
    let mut owner = node(1, 1);
    for spi in 0..n as u32 {
        owner.add_sa(0x10_0000 + spi, Direction::Outbound, true, 1);
    }
    let owner_bytes = allocated() - before;
    let before = allocated();
    let mut joiner = node(2, 2);
    for spi in 0..n as u32 {
        joiner.add_sa(0x10_0000 + spi, Direction::Outbound, true, 1);
    }
    let t0 = Instant::now();
    let mut now = 0;
    let mut frames = 0;
    while !(joiner.synced() && joiner.standby().len() == n) && now < 100_000 {
        while let Some(f) = joiner.poll_transmit(now) {
            let _ = owner.handle_frame(now, &f);
        }
        while let Some(f) = owner.poll_transmit(now) {
            frames += 1;
            let _ = joiner.handle_frame(now, &f);
        }
        now += 1;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let standby_bytes = allocated() - before;
    BulkOutcome {
        sas: n,
        seconds,
        frames,
        owner_bytes_per_sa: owner_bytes as f64 / n as f64,
        standby_bytes_per_sa: standby_bytes as f64 / n as f64,
        dropped: 0,
    }
}

/// The link of one measurement: veth `egbulk0` and `egbulk1` here, whose
/// peers are the ports of a bridge in namespace `egbulk`, so that a loss
/// rule on the bridge ports' ingress drops frames before the other end
/// sees them (on the receiving interface itself it could not: an
/// AF_PACKET socket takes its copy of a frame before the ingress hook
/// runs). No address is configured: only raw mirror frames cross it.
/// Made for the measurement and deleted when dropped (also when it
/// fails).
struct Link;

const LINK_NS: &str = "egbulk";

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let ok = Command::new(cmd).args(args).status()?.success();
    anyhow::ensure!(ok, "{cmd} {} failed (root is needed)", args.join(" "));
    Ok(())
}

impl Link {
    fn make() -> anyhow::Result<Link> {
        let _ = Command::new("ip")
            .args(["netns", "del", LINK_NS])
            .stderr(std::process::Stdio::null())
            .status();
        run("ip", &["netns", "add", LINK_NS])?;
        let link = Link;
        let inside = |args: &[&str]| -> anyhow::Result<()> {
            let mut all = vec!["netns", "exec", LINK_NS];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        inside(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        inside(&["ip", "link", "set", "br0", "up"])?;
        for end in ["egbulk0", "egbulk1"] {
            let port = format!("{end}p");
            run(
                "ip",
                &[
                    "link", "add", end, "type", "veth", "peer", "name", &port, "netns", LINK_NS,
                ],
            )?;
            run("ip", &["link", "set", end, "up"])?;
            inside(&["ip", "link", "set", &port, "master", "br0"])?;
            inside(&["ip", "link", "set", &port, "up"])?;
        }
        Ok(link)
    }

    /// Drops `percent` % of the mirror frames (EtherType 0x88B5) entering
    /// the bridge from either end, at random (nftables `numgen random`),
    /// counted.
    fn lose(&self, percent: u32) -> anyhow::Result<()> {
        let mut rules = String::from("table netdev loss {\n");
        for port in ["egbulk0p", "egbulk1p"] {
            rules += &format!(
                "  chain {port} {{ type filter hook ingress device {port} priority 0; \
                 ether type 0x88b5 numgen random mod 100 < {percent} counter drop; }}\n"
            );
        }
        rules += "}\n";
        let mut child = Command::new("ip")
            .args(["netns", "exec", LINK_NS, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(rules.as_bytes())?;
        }
        anyhow::ensure!(
            child.wait()?.success(),
            "nft refused (nftables is needed):\n{rules}"
        );
        Ok(())
    }

    /// Frames the loss rule dropped so far (0 without one).
    fn dropped(&self) -> anyhow::Result<u64> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", LINK_NS, "nft", "-j", "list", "table", "netdev", "loss",
            ])
            .stderr(std::process::Stdio::null())
            .output()?;
        if !out.status.success() {
            return Ok(0);
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let mut sum = 0;
        for item in v["nftables"].as_array().into_iter().flatten() {
            for expr in item["rule"]["expr"].as_array().into_iter().flatten() {
                sum += expr["counter"]["packets"].as_u64().unwrap_or(0);
            }
        }
        Ok(sum)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The bridge's ports go with the namespace, and their peers here
        // with them.
        let _ = Command::new("ip").args(["netns", "del", LINK_NS]).status();
    }
}

/// The same bulk sync as [`bulk_sync`], the two cores in one thread taking
/// turns, over veths and a bridge made for it (needs root): frames go
/// through the kernel and AF_PACKET rings, and what a full ring drops the
/// protocol's refresh sends again. With `loss_percent` above 0, nftables
/// drops that share of the mirror frames entering the bridge from each
/// end, at random, and counts them: the joiner asks for the parts it
/// misses until its bulk is whole.
/// Memory is not measured here.
pub fn bulk_sync_veth(n: usize, loss_percent: u32) -> anyhow::Result<BulkOutcome> {
    let link = Link::make()?;
    if loss_percent > 0 {
        link.lose(loss_percent)?;
    }
    let pool = Mempool::new(4096, 1024);
    let queue = |ifname: &str| -> anyhow::Result<af_packet::AfPacketQueue> {
        Ok(af_packet::open(ifname, 1, 0, "mirror", None, 1500)?
            .pop()
            .expect("one queue"))
    };
    let (q0, q1) = (queue("egbulk0")?, queue("egbulk1")?);
    let (mac0, mac1) = (q0.info().mac, q1.info().mac);
    let mut owner = (
        node(1, 1),
        MirrorPort::new(Box::new(q0), BufPool::new(pool.clone(), 64), mac1),
    );
    let mut joiner = (
        node(2, 2),
        MirrorPort::new(Box::new(q1), BufPool::new(pool.clone(), 64), mac0),
    );
    for spi in 0..n as u32 {
        owner
            .0
            .add_sa(0x10_0000 + spi, Direction::Outbound, true, 1);
        joiner
            .0
            .add_sa(0x10_0000 + spi, Direction::Outbound, true, 1);
    }
    let t0 = Instant::now();
    let mut frames = 0u64;
    let limit = Duration::from_secs(if loss_percent > 0 { 600 } else { 60 });
    while !(joiner.0.synced() && joiner.0.standby().len() == n) {
        anyhow::ensure!(
            t0.elapsed() < limit,
            "bulk sync of {n} SAs over veth with {loss_percent} % loss did not finish in {} s",
            limit.as_secs()
        );
        let now = t0.elapsed().as_millis() as u64;
        joiner.1.send(&mut joiner.0, now);
        while owner.1.receive(&mut owner.0, now) > 0 {}
        frames += owner.1.send(&mut owner.0, now) as u64;
        while joiner.1.receive(&mut joiner.0, now) > 0 {}
    }
    let seconds = t0.elapsed().as_secs_f64();
    let dropped = link.dropped()?;
    drop(link);
    Ok(BulkOutcome {
        sas: n,
        seconds,
        frames,
        owner_bytes_per_sa: 0.0,
        standby_bytes_per_sa: 0.0,
        dropped,
    })
}

/// Bytes per ESP SA object (key schedule included) of each direction, from
/// building `n` of them.
pub fn esp_sa_bytes(n: usize, allocated: &dyn Fn() -> usize) -> (f64, f64) {
    let (o, i) = crate::sa_pair(espgate_esp::AeadAlgorithm::Aes128Gcm);
    let before = allocated();
    let outs: Vec<OutboundSa> = (0..n)
        .map(|k| {
            let mut c = o.clone();
            c.spi = 0x1000 + k as u32;
            OutboundSa::new(&c, Backend::DEFAULT).expect("sa")
        })
        .collect();
    let out_bytes = allocated() - before;
    let before = allocated();
    let mut sad = Sad::new();
    for k in 0..n {
        let mut c = i.clone();
        c.spi = 0x1000 + k as u32;
        sad.insert(&c, Backend::DEFAULT).expect("sa");
    }
    let in_bytes = allocated() - before;
    drop(outs);
    (out_bytes as f64 / n as f64, in_bytes as f64 / n as f64)
}
