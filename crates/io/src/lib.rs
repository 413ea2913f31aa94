//! Poll-mode packet I/O for espgate, in the DPDK model: a port has receive
//! and transmit queues, each owned by one worker; `rx_burst` fills a vector
//! with frames in pool buffers (headroom in front for the outer headers,
//! tailroom behind for the ESP trailer, so encapsulation never copies) and
//! `tx_burst` sends what it can. Buffers come from a [`BufPool`]: a shared
//! free list with a per-worker cache, so the fast path allocates nothing in
//! steady state.
//!
//! Backends: [`mem`] (in-process rings, for tests and benchmarks),
//! [`pcap_port`] (replay a capture in, record a capture out), [`af_packet`]
//! (any Linux interface, through a TPACKET_V3 ring and `sendmmsg`; its
//! receive offloads switched off by [`offload`]),
//! [`synthetic`] (frames held in memory and a counting sink, for
//! measurements) and, with the feature `dpdk`, `dpdk` (any DPDK ethdev,
//! zero-copy with mbufs). Beside the ports, [`tun`] opens the TUN device
//! the node punts its own traffic to the kernel through.

pub mod af_packet;
pub mod alloc;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[cfg(feature = "ipsec-mb")]
pub mod ipsec_mb;
pub mod link;
pub mod mem;
pub mod offload;
pub mod packet;
pub mod pcap;
pub mod pcap_port;
pub mod pool;
pub mod port;
pub mod rss;
pub mod synthetic;
pub mod tun;

pub use packet::Packet;
pub use pool::{BufPool, Mempool};
pub use port::{PortInfo, PortQueue, QueueStats};
