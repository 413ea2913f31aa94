//! DPDK ports (feature `dpdk`): the EAL, a mempool of mbufs, and one
//! rx/tx queue pair per worker on any ethdev — a physical NIC by PCI
//! address, or a vdev (net_af_packet, net_pcap, net_ring, net_null,
//! net_tap, net_virtio_user, net_memif) created by the EAL arguments.
//!
//! The C shim (`shim.c`) wraps DPDK's static inline functions and sets a
//! port up in one call; bindgen generates the Rust declarations of the
//! shim and of the few DPDK functions called directly. Frames are copied
//! between mbufs and the node's buffers at the port (one copy each way);
//! workers are ordinary threads, not EAL lcores: each registers itself with
//! DPDK on its first burst so the mempool's per-lcore cache serves it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use espgate_wire::ethernet::MacAddr;
use espgate_wire::{HeapBuf, PacketBuf};

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
                mbufs: Vec::new(),
                stats: QueueStats::default(),
            })
            .collect())
    }
}

/// One rx/tx queue pair of a DPDK port.
pub struct DpdkQueue {
    info: PortInfo,
    port: u16,
    queue: u16,
    pool: NonNull<ffi::rte_mempool>,
    mbufs: Vec<*mut ffi::rte_mbuf>,
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

impl PortQueue for DpdkQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn rx_burst(&mut self, pool: &mut BufPool, out: &mut Vec<HeapBuf>, max: usize) -> usize {
        register_thread();
        self.mbufs.clear();
        self.mbufs.resize(max.min(512), std::ptr::null_mut());
        // SAFETY: `mbufs` has room for the requested count; the port and
        // queue were set up and this thread alone polls this queue.
        let n = usize::from(unsafe {
            ffi::espgate_rx_burst(
                self.port,
                self.queue,
                self.mbufs.as_mut_ptr(),
                self.mbufs.len() as u16,
            )
        });
        let mut taken = 0;
        for &m in &self.mbufs[..n] {
            let mut len = 0u32;
            // SAFETY: `m` is an mbuf the PMD just handed over; its first
            // segment holds `len` bytes at the returned pointer.
            let data = unsafe {
                std::slice::from_raw_parts(ffi::espgate_mbuf_data(m, &mut len), len as usize)
            };
            taken += usize::from(self.stats.receive_copy(data, pool, out));
        }
        // SAFETY: the bytes were copied out; the `n` mbufs are ours to free.
        unsafe { ffi::espgate_mbuf_free_bulk(self.mbufs.as_mut_ptr(), n as u32) };
        taken
    }

    fn tx_burst(&mut self, pkts: &mut Vec<HeapBuf>, pool: &mut BufPool) -> usize {
        register_thread();
        self.mbufs.clear();
        self.mbufs.resize(pkts.len().min(512), std::ptr::null_mut());
        // SAFETY: `mbufs` has room for that many pointers; the pool is
        // valid for the life of the process. All or none are allocated.
        let r = unsafe {
            ffi::espgate_mbuf_alloc_bulk(
                self.pool.as_ptr(),
                self.mbufs.as_mut_ptr(),
                self.mbufs.len() as u32,
            )
        };
        if r != 0 {
            self.mbufs.clear();
        }
        let mut filled = 0;
        for (b, &m) in pkts.iter().zip(&self.mbufs) {
            // SAFETY: `m` is a fresh mbuf; append returns room for `len`
            // bytes or null if the data room is too small.
            let dst = unsafe { ffi::espgate_mbuf_append(m, b.len() as u16) };
            if dst.is_null() {
                break;
            }
            // SAFETY: `dst` points to `len` writable bytes inside `m`.
            unsafe { std::ptr::copy_nonoverlapping(b.data().as_ptr(), dst, b.len()) };
            filled += 1;
        }
        // SAFETY: the first `filled` pointers are filled mbufs owned by us;
        // the PMD takes ownership of the first `sent`.
        let sent = usize::from(unsafe {
            ffi::espgate_tx_burst(
                self.port,
                self.queue,
                self.mbufs.as_mut_ptr(),
                filled as u16,
            )
        });
        let left = &mut self.mbufs[sent..];
        // SAFETY: the PMD did not take these mbufs (filled or not): ours
        // to free.
        unsafe { ffi::espgate_mbuf_free_bulk(left.as_mut_ptr(), left.len() as u32) };
        self.stats.settle_tx(pkts, sent, pool);
        sent
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}
