//! DPDK ports (feature `dpdk`): the EAL, a mempool of mbufs, and one
//! rx/tx queue pair per worker on any ethdev — a physical NIC by PCI
//! address, or a vdev (net_af_packet, net_pcap, net_ring, net_null,
//! net_tap, net_virtio_user, net_memif) created by the EAL arguments.
//!
//! The C shim (`shim.c`) wraps DPDK's static inline functions and sets a
//! port up in one call; bindgen generates the Rust declarations of the
//! shim and of the few DPDK functions called directly. Workers get the
//! PMD's mbufs themselves ([`Mbuf`], a [`Packet`]) and send them back as
//! they are: no copy; only a frame the node made itself (an ARP reply) or
//! one from another kind of port is copied into a fresh mbuf. Workers
//! are ordinary threads, not EAL lcores: each registers itself with
//! DPDK on its first burst so the mempool's per-lcore cache serves it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use espgate_wire::ethernet::MacAddr;
use espgate_wire::{Layer, PacketBuf, WireError};

use crate::packet::Packet;
use crate::pool::BufPool;
use crate::port::{PortInfo, PortQueue, QueueStats};

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_docs,
    unsafe_code,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}

/// Mbufs in the pool.
const POOL_MBUFS: u32 = 16 * 1024 - 1;
/// Most frames one burst call takes or gives.
const MAX_BURST: usize = 512;
/// Descriptors per rx and tx ring.
const DESCRIPTORS: u16 = 1024;
/// Data room of an mbuf: DPDK's default (2048 bytes and 128 of headroom).
const MBUF_DATA_ROOM: u16 = 2048 + 128;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

fn dpdk_error(what: &str) -> io::Error {
    // SAFETY: rte_errno is a per-thread integer; reading it has no effect.
    let e = unsafe { ffi::espgate_errno() };
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string for any error number.
    let msg = unsafe { CStr::from_ptr(ffi::rte_strerror(e)) }
        .to_string_lossy()
        .into_owned();
    io::Error::other(format!("{what}: {msg} ({e})"))
}

/// The initialised EAL and its mbuf pool.
pub struct Eal {
    pool: NonNull<ffi::rte_mempool>,
}

// SAFETY: the mempool is a thread-safe DPDK object (lock-free rings
// underneath); the handle is only a pointer to it.
unsafe impl Send for Eal {}
// SAFETY: as above: sharing the pointer between threads is what DPDK's
// mempool is made for.
unsafe impl Sync for Eal {}

impl Eal {
    /// Initialises the EAL with `args` (as on a DPDK command line, without
    /// the program name) and creates the mbuf pool. Once per process.
    pub fn init(args: &[String]) -> io::Result<Eal> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(io::Error::other(
                "the DPDK EAL is already initialised in this process",
            ));
        }
        let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("espgate").expect("no NUL"));
        for a in args {
            owned.push(
                CString::new(a.as_str())
                    .map_err(|_| io::Error::other(format!("EAL argument {a:?} has a NUL byte")))?,
            );
        }
        // The EAL may keep pointers into argv: the strings live as long as
        // the process.
        let owned: &'static [CString] = Vec::leak(owned);
        let argv: &'static mut [*mut std::ffi::c_char] =
            Vec::leak(owned.iter().map(|c| c.as_ptr().cast_mut()).collect());
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive
        // the EAL; this is the first and only rte_eal_init of the process.
        let r = unsafe { ffi::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if r < 0 {
            return Err(dpdk_error("rte_eal_init"));
        }
        let name = CString::new("espgate_mbufs").expect("no NUL");
        // SAFETY: the EAL is up; the name is a valid C string; the pool
        // lives until the process ends.
        let pool = unsafe {
            ffi::rte_pktmbuf_pool_create(name.as_ptr(), POOL_MBUFS, 256, 0, MBUF_DATA_ROOM, -1)
        };
        let pool = NonNull::new(pool).ok_or_else(|| dpdk_error("rte_pktmbuf_pool_create"))?;
        Ok(Eal { pool })
    }

    /// Starts ethdev `device` (its DPDK name: `net_af_packet0`, `0000:01:00.0`)
    /// with `queues` rx/tx queue pairs and returns them.
    pub fn port(
        &self,
        device: &str,
        queues: usize,
        name: &str,
        mac: Option<MacAddr>,
        mtu: usize,
    ) -> io::Result<Vec<DpdkQueue>> {
        let c = CString::new(device).map_err(|_| io::Error::other("device name has a NUL byte"))?;
        let mut port: u16 = 0;
        // SAFETY: `c` is a valid C string and `port` a valid out-pointer.
        let r = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut port) };
        if r != 0 {
            return Err(io::Error::other(format!(
                "no DPDK port named {device:?} (give it with --vdev or a PCI address in the EAL arguments)"
            )));
        }
        let queues =
            u16::try_from(queues.max(1)).map_err(|_| io::Error::other("too many queues"))?;
        // SAFETY: `port` exists and the pool outlives the port.
        let r = unsafe { ffi::espgate_port_setup(port, queues, DESCRIPTORS, self.pool.as_ptr()) };
        if r != 0 {
            return Err(io::Error::other(format!(
                "setting up DPDK port {device}: error {r}"
            )));
        }
        let mut hw = [0u8; 6];
        // SAFETY: `hw` is a valid 6-byte out-buffer.
        unsafe { ffi::espgate_port_mac(port, hw.as_mut_ptr()) };
        let info = PortInfo {
            name: name.to_string(),
            mac: mac.unwrap_or(MacAddr(hw)),
            mtu,
        };
        Ok((0..queues)
            .map(|q| DpdkQueue {
                info: info.clone(),
                port,
                queue: q,
                pool: self.pool,
                rx_mbufs: vec![std::ptr::null_mut(); MAX_BURST],
                rx_views: vec![NO_VIEW; MAX_BURST],
                mbufs: Vec::new(),
                views: Vec::new(),
                fresh: Vec::new(),
                fresh_views: Vec::new(),
                stats: QueueStats::default(),
            })
            .collect())
    }
}

impl Eal {
    /// The link of ethdev `device` (started by [`port`](Self::port)), for
    /// port `name`.
    pub fn link(&self, device: &str, name: &str) -> io::Result<DpdkLink> {
        let c = CString::new(device).map_err(|_| io::Error::other("device name has a NUL byte"))?;
        let mut port: u16 = 0;
        // SAFETY: `c` is a valid C string and `port` a valid out-pointer.
        let r = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut port) };
        if r != 0 {
            return Err(io::Error::other(format!("no DPDK port named {device:?}")));
        }
        Ok(DpdkLink {
            name: name.to_string(),
            port,
        })
    }
}

/// A DPDK port's link status.
pub struct DpdkLink {
    name: String,
    port: u16,
}

impl crate::link::LinkProbe for DpdkLink {
    fn name(&self) -> &str {
        &self.name
    }

    fn up(&mut self) -> bool {
        // SAFETY: the port exists (looked up by name when the probe was
        // made, and DPDK ports stay until the EAL is cleaned up); reading
        // its link without waiting has no other precondition.
        unsafe { ffi::espgate_port_link_up(self.port) == 1 }
    }
}

/// One rx/tx queue pair of a DPDK port.
pub struct DpdkQueue {
    info: PortInfo,
    port: u16,
    queue: u16,
    pool: NonNull<ffi::rte_mempool>,
    /// Receive scratch, `MAX_BURST` long for good.
    rx_mbufs: Vec<*mut ffi::rte_mbuf>,
    rx_views: Vec<ffi::espgate_view>,
    mbufs: Vec<*mut ffi::rte_mbuf>,
    views: Vec<ffi::espgate_view>,
    fresh: Vec<*mut ffi::rte_mbuf>,
    fresh_views: Vec<ffi::espgate_view>,
    stats: QueueStats,
}

// SAFETY: a queue pair is used by one thread at a time, which DPDK allows
// for any thread; the mempool pointer is thread-safe, and the mbuf scratch
// vector holds pointers only during one burst call.
unsafe impl Send for DpdkQueue {}

/// Whether this thread holds an lcore id from `rte_thread_register`; the
/// id goes back to DPDK when the thread ends.
struct LcoreRegistration(bool);

impl Drop for LcoreRegistration {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: this thread registered itself and is ending; nothing
            // on it uses DPDK after this.
            unsafe { ffi::espgate_thread_unregister() };
        }
    }
}

thread_local! {
    static LCORE: std::cell::RefCell<Option<LcoreRegistration>> =
        const { std::cell::RefCell::new(None) };
}

/// Gives the calling thread an lcore id once, so the mbuf pool's per-lcore
/// cache serves it (PMDs allocate and free mbufs through that cache; an
/// unregistered thread goes to the shared ring for every mbuf). Workers are
/// ordinary threads, so each registers on its first burst. If DPDK has no
/// free lcore id left the thread carries on without the cache.
fn register_thread() {
    LCORE.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_none() {
            // SAFETY: the EAL is up (a queue exists); registering the
            // calling thread has no other precondition.
            let ok = unsafe { ffi::espgate_thread_register() } == 0;
            *r = Some(LcoreRegistration(ok));
        }
    });
}

const NO_VIEW: ffi::espgate_view = ffi::espgate_view {
    base: std::ptr::null_mut(),
    room: 0,
    off: 0,
    len: 0,
};

/// A frame in a DPDK mbuf (one segment), owned by the worker until a DPDK
/// port sends it; dropping it returns the mbuf to its pool. The frame's
/// bounds live here, in full-width fields (narrow ones, written and then
/// read back whole, stall the CPU's store forwarding on every packet), and
/// go back into the mbuf when it is sent.
pub struct Mbuf {
    m: NonNull<ffi::rte_mbuf>,
    base: *mut u8,
    room: usize,
    off: usize,
    len: usize,
}

// SAFETY: the mbuf is owned by this value alone (the PMD handed it over);
// any thread may work on it and free it (mempools are thread-safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    fn new(m: NonNull<ffi::rte_mbuf>, v: &ffi::espgate_view) -> Self {
        Mbuf {
            m,
            base: v.base,
            room: usize::from(v.room),
            off: usize::from(v.off),
            len: usize::from(v.len),
        }
    }

    /// The view DPDK gets back (offsets fit: they never pass `room`, a u16).
    fn view(&self) -> ffi::espgate_view {
        ffi::espgate_view {
            base: self.base,
            room: self.room as u16,
            off: self.off as u16,
            len: self.len as u16,
        }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mbuf({} bytes at {})", self.len, self.off)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: the mbuf is ours (never given to a PMD since we got it).
        unsafe { ffi::espgate_mbuf_free(self.m.as_ptr()) };
    }
}

fn no_room(need: usize, have: usize) -> WireError {
    WireError::Truncated {
        layer: Layer::Buffer,
        need,
        have,
    }
}

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        // SAFETY: `off + len <= room` (kept by every method below and true
        // of what the PMD handed over); the buffer is owned by this mbuf,
        // which we own, so nothing else reads or writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.base.add(self.off), self.len) }
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(self.off), self.len) }
    }

    #[inline(always)]
    fn headroom(&self) -> usize {
        self.off
    }

    #[inline(always)]
    fn tailroom(&self) -> usize {
        self.room - self.off - self.len
    }

    #[inline(always)]
    fn prepend(&mut self, n: usize) -> espgate_wire::Result<&mut [u8]> {
        if n > self.off {
            return Err(no_room(n, self.off));
        }
        self.off -= n;
        self.len += n;
        Ok(self.data_mut())
    }

    #[inline(always)]
    fn append(&mut self, n: usize) -> espgate_wire::Result<&mut [u8]> {
        if n > self.tailroom() {
            return Err(no_room(n, self.tailroom()));
        }
        let old = self.len;
        self.len += n;
        Ok(&mut self.data_mut()[old..])
    }

    #[inline(always)]
    fn adj(&mut self, n: usize) -> espgate_wire::Result<()> {
        if n > self.len {
            return Err(no_room(n, self.len));
        }
        self.off += n;
        self.len -= n;
        Ok(())
    }

    #[inline(always)]
    fn trim(&mut self, n: usize) -> espgate_wire::Result<()> {
        if n > self.len {
            return Err(no_room(n, self.len));
        }
        self.len -= n;
        Ok(())
    }
}

impl PortQueue for DpdkQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    /// Hands over the PMD's mbufs themselves: no copy.
    fn rx_burst(&mut self, _pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize {
        register_thread();
        let want = max.min(MAX_BURST);
        // SAFETY: `rx_mbufs` and `rx_views` have room for `MAX_BURST`
        // entries; the port and queue were set up and this thread alone
        // polls this queue.
        let n = usize::from(unsafe {
            ffi::espgate_rx_burst_views(
                self.port,
                self.queue,
                self.rx_mbufs.as_mut_ptr(),
                self.rx_views.as_mut_ptr(),
                want as u16,
            )
        });
        for (&m, view) in self.rx_mbufs[..n].iter().zip(&self.rx_views[..n]) {
            let Some(m) = NonNull::new(m) else { continue };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += u64::from(view.len);
            out.push(Packet::Mbuf(Mbuf::new(m, view)));
        }
        n
    }

    /// Sends mbufs as they are; frames in pool buffers are copied into
    /// fresh mbufs first.
    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut BufPool) -> usize {
        register_thread();
        let want = pkts.len().min(MAX_BURST);
        let heap = pkts[..want]
            .iter()
            .filter(|p| matches!(p, Packet::Heap(_)))
            .count();
        self.fresh.clear();
        self.fresh.resize(heap, std::ptr::null_mut());
        self.fresh_views.clear();
        self.fresh_views.resize(heap, NO_VIEW);
        // SAFETY: `fresh` and `fresh_views` have room for `heap` entries;
        // the pool lives as long as the process. All or none are allocated.
        let got = heap == 0
            || unsafe {
                ffi::espgate_mbuf_alloc_views(
                    self.pool.as_ptr(),
                    self.fresh.as_mut_ptr(),
                    self.fresh_views.as_mut_ptr(),
                    heap as u32,
                )
            } == 0;
        self.mbufs.clear();
        self.views.clear();
        let mut next_fresh = 0;
        for p in &pkts[..want] {
            match p {
                Packet::Mbuf(mb) => {
                    self.mbufs.push(mb.m.as_ptr());
                    self.views.push(mb.view());
                }
                Packet::Heap(b) => {
                    let v = self.fresh_views.get(next_fresh).copied();
                    let Some(mut v) = v.filter(|_| got) else {
                        break;
                    };
                    let len = b.len();
                    if usize::from(v.off) + len > usize::from(v.room) {
                        break;
                    }
                    // SAFETY: the fresh mbuf's buffer has `len` bytes free
                    // from `off` (checked above) and nothing else uses it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            b.data().as_ptr(),
                            v.base.add(usize::from(v.off)),
                            len,
                        )
                    };
                    v.len = len as u16;
                    self.mbufs.push(self.fresh[next_fresh]);
                    self.views.push(v);
                    next_fresh += 1;
                }
            }
        }
        // SAFETY: each pointer is an mbuf we own, with a view inside its
        // buffer; the PMD takes ownership of the first `sent`.
        let sent = usize::from(unsafe {
            ffi::espgate_tx_burst_views(
                self.port,
                self.queue,
                self.mbufs.as_mut_ptr(),
                self.views.as_ptr(),
                self.mbufs.len() as u16,
            )
        });
        // Fresh mbufs not sent (filled or not) are ours to free; those of
        // the first `sent` frames now belong to the PMD.
        let fresh_sent = match heap {
            0 => 0,
            _ => pkts[..sent]
                .iter()
                .filter(|p| matches!(p, Packet::Heap(_)))
                .count(),
        };
        if got && heap > fresh_sent {
            let left = &mut self.fresh[fresh_sent..];
            // SAFETY: these mbufs were never handed to the PMD.
            unsafe { ffi::espgate_mbuf_free_bulk(left.as_mut_ptr(), left.len() as u32) };
        }
        for p in pkts.drain(..sent) {
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += p.len() as u64;
            match p {
                // The PMD owns the mbuf now: it must not be freed here.
                Packet::Mbuf(mb) => std::mem::forget(mb),
                Packet::Heap(b) => pool.put(b),
            }
        }
        if !pkts.is_empty() {
            self.stats.tx_full += 1;
        }
        sent
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}
