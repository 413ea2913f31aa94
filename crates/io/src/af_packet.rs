//! Linux AF_PACKET ports: a TPACKET_V3 receive ring mapped into memory
//! (the kernel fills blocks of frames, the worker reads them without a
//! system call) and `sendmmsg` for a whole transmit burst at once. Several
//! queues share an interface through PACKET_FANOUT (by flow hash). Works on
//! any interface, veth and tap included, inside a network namespace.
//!
//! A frame whose TCP or UDP checksum the kernel left for a device to fill
//! in (a veth or virtio sender's checksum offload: the ring marks it
//! `TP_STATUS_CSUMNOTREADY`) has it completed here, counted; otherwise
//! espgate would encrypt a packet whose checksum the far host refuses.
//!
//! This module is where espgate's `unsafe` lives: the socket calls and the
//! shared ring. Each block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{Ordering, fence};

use espgate_wire::ethernet::MacAddr;
use espgate_wire::{PacketBuf, checksum};

use crate::packet::Packet;
use crate::pool::BufPool;
use crate::port::{PortInfo, PortQueue, QueueStats};

/// Bytes per ring block.
const BLOCK_SIZE: usize = 1 << 18;
/// Blocks per ring (4 MiB per queue).
const BLOCK_NR: usize = 16;
/// Frame size the kernel uses to size the ring (V3 packs frames tighter).
const FRAME_SIZE: usize = 2048;
/// A block is handed to user space after this many milliseconds even if
/// not full, which bounds the latency of a quiet link.
const RETIRE_MS: u32 = 1;

/// The interface facts a port needs, read from sysfs.
fn sysfs(interface: &str, what: &str) -> io::Result<String> {
    let p = format!("/sys/class/net/{interface}/{what}");
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{p}: {e}")))
}

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` for the duration of the call and
    // its size is passed alongside; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(r, what)
}

/// The mapped receive ring of one socket.
struct Ring {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the ring is memory shared with the kernel through one socket that
// the owning queue alone uses; moving the queue to another thread moves
// that exclusive use with it.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what mmap returned, and nothing
        // refers into the ring once its queue is dropped.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One queue of an AF_PACKET port: its own socket and ring.
pub struct AfPacketQueue {
    info: PortInfo,
    fd: OwnedFd,
    ring: Ring,
    block: usize,
    left: u32,
    offset: usize,
    stats: QueueStats,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: besides the ring (see `Ring`), the queue holds only scratch
// vectors whose pointers are rebuilt at every transmit burst and never used
// outside it; the queue is used by one thread at a time.
unsafe impl Send for AfPacketQueue {}

/// Opens `queues` queues on `interface`, joined in fanout group `group`
/// when there are several. The MAC is the interface's unless given.
pub fn open(
    interface: &str,
    queues: usize,
    group: u16,
    name: &str,
    mac: Option<MacAddr>,
    mtu: usize,
) -> io::Result<Vec<AfPacketQueue>> {
    let ifindex: libc::c_int = sysfs(interface, "ifindex")?
        .parse()
        .map_err(|_| io::Error::other(format!("{interface}: bad ifindex")))?;
    let mac = match mac {
        Some(m) => m,
        None => sysfs(interface, "address")?
            .parse()
            .map_err(|e| io::Error::other(format!("{interface}: {e}")))?,
    };
    let info = PortInfo {
        name: name.to_string(),
        mac,
        mtu,
    };
    (0..queues.max(1))
        .map(|_| open_one(ifindex, info.clone(), (queues > 1).then_some(group)))
        .collect()
}

fn open_one(
    ifindex: libc::c_int,
    info: PortInfo,
    fanout: Option<u16>,
) -> io::Result<AfPacketQueue> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: a plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    check(raw, "socket(AF_PACKET)")?;
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
    setsockopt(
        &fd,
        libc::SOL_PACKET,
        libc::PACKET_VERSION,
        &v3,
        "PACKET_VERSION",
    )?;
    setsockopt(
        &fd,
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        &1 as &libc::c_int,
        "PACKET_IGNORE_OUTGOING",
    )?;
    let req = libc::tpacket_req3 {
        tp_block_size: BLOCK_SIZE as u32,
        tp_block_nr: BLOCK_NR as u32,
        tp_frame_size: FRAME_SIZE as u32,
        tp_frame_nr: (BLOCK_SIZE * BLOCK_NR / FRAME_SIZE) as u32,
        tp_retire_blk_tov: RETIRE_MS,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(
        &fd,
        libc::SOL_PACKET,
        libc::PACKET_RX_RING,
        &req,
        "PACKET_RX_RING",
    )?;
    let len = BLOCK_SIZE * BLOCK_NR;
    // SAFETY: maps the ring the kernel just allocated for this socket; the
    // result is checked and owned by `Ring`, which unmaps it.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::other(format!(
            "mmap of the rx ring: {}",
            io::Error::last_os_error()
        )));
    }
    let ring = Ring {
        base: NonNull::new(base.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
        len,
    };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a live sockaddr_ll and its exact size is passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            ptr::from_ref(&sll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(r, "bind(AF_PACKET)")?;
    if let Some(group) = fanout {
        let arg: libc::c_int =
            libc::c_int::from(group) | ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16);
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            &arg,
            "PACKET_FANOUT",
        )?;
    }
    Ok(AfPacketQueue {
        info,
        fd,
        ring,
        block: 0,
        left: 0,
        offset: 0,
        stats: QueueStats::default(),
        iov: Vec::new(),
        msgs: Vec::new(),
    })
}

impl AfPacketQueue {
    /// Pointer to block `i`'s descriptor.
    fn block_desc(&self, i: usize) -> *mut libc::tpacket_block_desc {
        // SAFETY: i < BLOCK_NR, so the offset stays inside the mapping.
        unsafe { self.ring.base.as_ptr().add(i * BLOCK_SIZE).cast() }
    }

    /// The current block's status word, read as the kernel may change it.
    fn block_status(&self) -> u32 {
        let bd = self.block_desc(self.block);
        // SAFETY: the descriptor sits at the start of a mapped block; the
        // status word is read volatile because the kernel writes it.
        let s = unsafe { ptr::read_volatile(ptr::addr_of!((*bd).hdr.bh1.block_status)) };
        fence(Ordering::Acquire);
        s
    }

    fn release_block(&mut self) {
        let bd = self.block_desc(self.block);
        fence(Ordering::Release);
        // SAFETY: the block is ours (status USER) until this write hands it
        // back; nothing read from it is used afterwards.
        unsafe {
            ptr::write_volatile(
                ptr::addr_of_mut!((*bd).hdr.bh1.block_status),
                libc::TP_STATUS_KERNEL,
            )
        };
        self.block = (self.block + 1) % BLOCK_NR;
    }
}

impl PortQueue for AfPacketQueue {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn rx_burst(&mut self, pool: &mut BufPool, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            if self.left == 0 {
                if self.block_status() & libc::TP_STATUS_USER == 0 {
                    break;
                }
                let bd = self.block_desc(self.block);
                // SAFETY: the block belongs to user space (status USER), so
                // the kernel does not write its header now.
                let (num, first) =
                    unsafe { ((*bd).hdr.bh1.num_pkts, (*bd).hdr.bh1.offset_to_first_pkt) };
                if num == 0 {
                    self.release_block();
                    continue;
                }
                self.left = num;
                self.offset = first as usize;
            }
            let block = self
                .ring
                .base
                .as_ptr()
                .wrapping_add(self.block * BLOCK_SIZE);
            // SAFETY: the kernel laid out `left` frames in this user-owned
            // block starting at `offset`, each header followed by its data at
            // `tp_mac`; offsets stay inside the block.
            let (next, status, data) = unsafe {
                let h: *const libc::tpacket3_hdr = block.add(self.offset).cast();
                let mac = usize::from((*h).tp_mac);
                let len = (*h).tp_snaplen as usize;
                (
                    (*h).tp_next_offset as usize,
                    (*h).tp_status,
                    std::slice::from_raw_parts(block.add(self.offset + mac), len),
                )
            };
            if self.stats.receive_copy(data, pool, out) {
                n += 1;
                if status & libc::TP_STATUS_CSUMNOTREADY != 0
                    && let Some(p) = out.last_mut()
                    && checksum::complete_transport(p.data_mut())
                {
                    self.stats.rx_csum_completed += 1;
                }
            } else if self.stats.rx_too_long == 1 {
                tracing::warn!(
                    port = %self.info.name,
                    bytes = data.len(),
                    "a frame too long for a buffer was dropped (counted as rx_too_long): the kernel merged segments, \
                     so a sender on this link hands its segmentation to a veth or virtio link; switch it off on the sender \
                     (ethtool -K <its interface> tso off gso off)"
                );
            }
            self.left -= 1;
            self.offset += next;
            if self.left == 0 {
                self.release_block();
            }
        }
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut BufPool) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        self.iov.clear();
        self.iov.extend(pkts.iter().map(|b| libc::iovec {
            iov_base: b.data().as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
        self.msgs.clear();
        for v in &mut self.iov {
            // SAFETY: mmsghdr is plain data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            self.msgs.push(m);
        }
        // SAFETY: every mmsghdr points to one iovec of `self.iov` that points
        // into a buffer of `pkts`, all alive and unchanged until it returns.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        let sent = if sent < 0 { 0 } else { sent as usize };
        self.stats.settle_tx(pkts, sent, pool);
        sent
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}
