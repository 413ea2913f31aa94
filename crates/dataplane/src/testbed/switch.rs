//! An in-memory learning switch: ports are in-memory links, one thread
//! forwards frames by destination MAC (learned from source MACs), and
//! floods broadcasts, multicasts and unknown destinations. Ports can be
//! added while it runs (a node that restarts comes back on a new port), and
//! what a port's device sends can be captured.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use espgate_io::mem::{self, MemQueue};
use espgate_io::{BufPool, Mempool, Packet, PortInfo, PortQueue};
use espgate_wire::PacketBuf;
use espgate_wire::ethernet::MacAddr;

/// Frames a device sent, each with its time in nanoseconds since the Unix
/// epoch.
pub type Capture = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Ring depth of each switch port.
const DEPTH: usize = 4096;

struct SwitchPort {
    queue: MemQueue,
    capture: Option<Capture>,
}

/// The ports of a switch, and the ones added but not yet forwarding.
struct Ports {
    name: String,
    new_ports: Arc<Mutex<Vec<SwitchPort>>>,
    count: usize,
}

impl Ports {
    fn attach(&mut self, mac: MacAddr, queues: usize, capture: Option<Capture>) -> Vec<MemQueue> {
        self.count += 1;
        let info = |name: String| PortInfo {
            name,
            mac,
            mtu: 9000,
        };
        let (mut sw, dev) = mem::link(
            info(format!("{}-p{}", self.name, self.count)),
            1,
            info(format!("{}-dev{}", self.name, self.count)),
            queues,
            DEPTH,
        );
        if let Ok(mut p) = self.new_ports.lock() {
            p.push(SwitchPort {
                queue: sw.remove(0),
                capture,
            });
        }
        dev
    }
}

/// A switch; attach ports, then [`start`](Switch::start) it.
pub struct Switch {
    ports: Ports,
    pool: Arc<Mempool>,
}

/// A running switch: attach more ports, or drop it to stop it.
pub struct SwitchHandle {
    ports: Ports,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Switch {
    /// A switch with no ports yet.
    pub fn new(name: &str, pool: Arc<Mempool>) -> Self {
        Switch {
            ports: Ports {
                name: name.into(),
                new_ports: Arc::new(Mutex::new(Vec::new())),
                count: 0,
            },
            pool,
        }
    }

    /// Adds a port; returns the device's end with `queues` queues (one per
    /// worker of a node). With `capture`, every frame the device sends is
    /// copied into it.
    pub fn attach(
        &mut self,
        mac: MacAddr,
        queues: usize,
        capture: Option<Capture>,
    ) -> Vec<MemQueue> {
        self.ports.attach(mac, queues, capture)
    }

    /// Starts forwarding on its own thread.
    pub fn start(self) -> SwitchHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let new_ports = self.ports.new_ports.clone();
        let flag = stop.clone();
        let pool = self.pool;
        let thread = std::thread::Builder::new()
            .name(format!("switch-{}", self.ports.name))
            .spawn(move || forward(&new_ports, pool, &flag))
            .expect("spawn switch thread");
        SwitchHandle {
            ports: self.ports,
            stop,
            thread: Some(thread),
        }
    }
}

impl SwitchHandle {
    /// Adds a port while running; as [`Switch::attach`].
    pub fn attach(
        &mut self,
        mac: MacAddr,
        queues: usize,
        capture: Option<Capture>,
    ) -> Vec<MemQueue> {
        self.ports.attach(mac, queues, capture)
    }
}

impl Drop for SwitchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn macs(frame: &[u8]) -> Option<(MacAddr, MacAddr)> {
    let dst: [u8; 6] = frame.get(..6)?.try_into().ok()?;
    let src: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    Some((MacAddr(dst), MacAddr(src)))
}

fn forward(new_ports: &Mutex<Vec<SwitchPort>>, pool: Arc<Mempool>, stop: &AtomicBool) {
    let mut pool = BufPool::new(pool, 64);
    let mut ports: Vec<SwitchPort> = Vec::new();
    let mut table: HashMap<MacAddr, usize> = HashMap::new();
    let mut rx: Vec<Packet> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut p) = new_ports.lock() {
            ports.append(&mut p);
        }
        let mut out: Vec<Vec<Packet>> = ports.iter().map(|_| Vec::new()).collect();
        let mut moved = 0;
        for (i, port) in ports.iter_mut().enumerate() {
            port.queue.rx_burst(&mut pool, &mut rx, 64);
            for buf in rx.drain(..) {
                moved += 1;
                if let Some(tap) = &port.capture
                    && let Ok(mut t) = tap.lock()
                {
                    let ns = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    t.push((ns, buf.data().to_vec()));
                }
                let Some((dst, src)) = macs(buf.data()) else {
                    pool.recycle(buf);
                    continue;
                };
                if !src.is_multicast() {
                    table.insert(src, i);
                }
                match table.get(&dst) {
                    Some(&j) if !dst.is_multicast() => {
                        if j != i {
                            out[j].push(buf);
                        } else {
                            pool.recycle(buf);
                        }
                    }
                    _ => {
                        for (j, o) in out.iter_mut().enumerate() {
                            if j == i {
                                continue;
                            }
                            let mut copy = pool.get();
                            if let Ok(room) = copy.append(buf.len()) {
                                room.copy_from_slice(buf.data());
                                o.push(Packet::from(copy));
                            } else {
                                pool.put(copy);
                            }
                        }
                        pool.recycle(buf);
                    }
                }
            }
        }
        for (port, mut o) in ports.iter_mut().zip(out) {
            if !o.is_empty() {
                // A full port (a device that died) drops what it cannot take.
                port.queue.tx_burst(&mut o, &mut pool);
                pool.recycle_all(&mut o);
            }
        }
        if moved == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
