//! The demo's in-memory topology: the pair (nodes a and b) and the remote
//! gateway r, three switches (plaintext LAN, ESP WAN, the pair's mirror
//! link) and three hosts, on the embedded configuration.
//!
//! ```text
//!  h1 10.1.0.10 --+                  +-- a (lan .1, wan 192.0.2.1) --+
//!                 +-- lan switch ----+        || mirror switch ||      +-- wan switch -- r 192.0.2.100 -- h3 10.3.0.10
//!  h2 10.1.0.20 --+                  +-- b (lan .2, wan 192.0.2.2) --+
//! ```

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use espgate_control::parse_node;
use espgate_dataplane::testbed::{self, Capture, Host, Switch, SwitchHandle};
use espgate_dataplane::{NodeConfig, NodeQueues, Role, RunningNode};
use espgate_esp::Backend;
use espgate_io::{Mempool, PortQueue};
use espgate_wire::ethernet::MacAddr;

const A_YAML: &str = include_str!("../../../../conf/demo/a.yaml");
const B_YAML: &str = include_str!("../../../../conf/demo/b.yaml");
const R_YAML: &str = include_str!("../../../../conf/demo/r.yaml");

/// The switches the pair's nodes plug into, and what they are built from.
pub struct Fabric {
    pool: Arc<Mempool>,
    backend: Backend,
    lan: SwitchHandle,
    wan: SwitchHandle,
    mirror: SwitchHandle,
    /// Every frame a, b and r sent on the ESP network.
    pub wan_capture: Capture,
    /// The nodes' state directories (one per node below it), removed at
    /// the end.
    state: std::path::PathBuf,
    /// Each pair node's LAN link, by node name: switched by hand (the
    /// switch ports carry frames either way), watched by the node.
    pub lan_links: std::collections::BTreeMap<String, Arc<std::sync::atomic::AtomicBool>>,
}

impl Drop for Fabric {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// The running topology.
pub struct Rig {
    pub fabric: Fabric,
    pub ca: NodeConfig,
    pub cb: NodeConfig,
    pub a: Option<RunningNode>,
    pub b: RunningNode,
    pub r: RunningNode,
    pub h1: Host,
    pub h2: Host,
    pub h3: Host,
}

fn mac(c: &NodeConfig, r: Role) -> anyhow::Result<MacAddr> {
    c.port(r)
        .and_then(|p| p.mac)
        .with_context(|| format!("{}: demo ports have MACs", c.name))
}

fn ip(c: &NodeConfig, r: Role) -> anyhow::Result<IpAddr> {
    Ok(c.port(r).context("port")?.address)
}

impl Fabric {
    /// Starts node `c` of the pair on the three switches.
    pub fn start_pair_node(&mut self, c: &NodeConfig) -> anyhow::Result<RunningNode> {
        let n = c.workers.count;
        let m = c.mirror.as_ref().context("a pair node has a mirror")?;
        let mirror_mac = m.port_mac.context("the demo's mirror ports have MACs")?;
        let queues = NodeQueues {
            protected: testbed::boxed_queues(self.lan.attach(mac(c, Role::Protected)?, n, None)),
            unprotected: testbed::boxed_queues(self.wan.attach(
                mac(c, Role::Unprotected)?,
                n,
                Some(self.wan_capture.clone()),
            )),
            mirror: self
                .mirror
                .attach(mirror_mac, 1, None)
                .pop()
                .map(|q| Box::new(q) as Box<dyn PortQueue>),
            punt: None,
            links: {
                let (link, up) = espgate_io::link::Switch::new("lan");
                self.lan_links.insert(c.name.clone(), up);
                vec![Box::new(link)]
            },
        };
        Ok(espgate_dataplane::start(
            c,
            queues,
            self.backend,
            self.pool.clone(),
        )?)
    }
}

impl Rig {
    /// Builds the topology and starts r, a and b.
    pub fn start(backend: Backend) -> anyhow::Result<Rig> {
        Rig::start_with(backend, true)
    }

    /// [`start`](Self::start), the nodes keeping their marks in a state
    /// directory or not.
    pub fn start_with(backend: Backend, keep_state: bool) -> anyhow::Result<Rig> {
        Rig::start_tweaked(backend, keep_state, &|_| {})
    }

    /// [`start_with`](Self::start_with), each pair node's configuration
    /// changed by `tweak` first.
    pub fn start_tweaked(
        backend: Backend,
        keep_state: bool,
        tweak: &dyn Fn(&mut NodeConfig),
    ) -> anyhow::Result<Rig> {
        let base = Path::new("conf/demo");
        let mut ca = parse_node(A_YAML, "conf/demo/a.yaml", base)?;
        let mut cb = parse_node(B_YAML, "conf/demo/b.yaml", base)?;
        let mut cr = parse_node(R_YAML, "conf/demo/r.yaml", base)?;
        // Each rig's nodes keep their marks in a new directory of their
        // own: rigs run side by side in one process (the tests), and one
        // that cleared a shared directory deleted another's marks.
        static RIGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = std::env::temp_dir().join(format!("espgate-demo-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        for c in [&mut ca, &mut cb, &mut cr] {
            c.state.dir = keep_state.then(|| state.join(&c.name));
        }
        tweak(&mut ca);
        tweak(&mut cb);
        let pool = Mempool::new(32 * 1024, 4096);
        let mut lan = Switch::new("lan", pool.clone());
        let mut wan = Switch::new("wan", pool.clone());
        let mirror = Switch::new("mirror", pool.clone());
        let wan_capture: Capture = Arc::new(Mutex::new(Vec::new()));

        let host =
            |sw: &mut Switch, ip: &str, mac: MacAddr, gw: &NodeConfig| -> anyhow::Result<Host> {
                let q = sw.attach(mac, 1, None).pop().context("one queue")?;
                let mut h = Host::on_queue(
                    q,
                    ip.parse()?,
                    mac,
                    self::mac(gw, Role::Protected)?,
                    pool.clone(),
                );
                h.gateway_ip = Some(self::ip(gw, Role::Protected)?);
                Ok(h)
            };
        let h1 = host(&mut lan, "10.1.0.10", MacAddr([2, 0, 0, 0, 0x10, 1]), &ca)?;
        let h2 = host(&mut lan, "10.1.0.20", MacAddr([2, 0, 0, 0, 0x10, 2]), &cb)?;
        let (r_lan, h3) = testbed::host_link(
            cr.port(Role::Protected).context("r lan")?,
            mac(&cr, Role::Protected)?,
            cr.workers.count,
            "10.3.0.10".parse()?,
            MacAddr([2, 0, 0, 0, 0x30, 1]),
            pool.clone(),
        );
        let r_wan = wan.attach(
            mac(&cr, Role::Unprotected)?,
            cr.workers.count,
            Some(wan_capture.clone()),
        );
        let mut fabric = Fabric {
            pool: pool.clone(),
            backend,
            lan: lan.start(),
            wan: wan.start(),
            mirror: mirror.start(),
            wan_capture,
            state,
            lan_links: Default::default(),
        };
        let r = espgate_dataplane::start(
            &cr,
            NodeQueues {
                protected: r_lan,
                unprotected: testbed::boxed_queues(r_wan),
                mirror: None,
                punt: None,
                links: Vec::new(),
            },
            backend,
            pool,
        )?;
        let a = fabric.start_pair_node(&ca)?;
        let b = fabric.start_pair_node(&cb)?;
        Ok(Rig {
            fabric,
            ca,
            cb,
            a: Some(a),
            b,
            r,
            h1,
            h2,
            h3,
        })
    }

    /// Starts node a again (a new life: its memory is gone, its state
    /// directory stays).
    pub fn restart_a(&mut self) -> anyhow::Result<()> {
        self.a = Some(self.fabric.start_pair_node(&self.ca)?);
        Ok(())
    }
}
