//! A mirror core's frames on its mirror port: each in an Ethernet frame to
//! the peer (EtherType 0x88B5), a burst at a time. What the port does not
//! take waits here, then in the core's own queue, instead of being dropped,
//! so a bulk sync of a million SAs goes out at the link's pace. The node's
//! mirror task drives one; so does the bulk-sync benchmark over veth.

use espgate_io::pool::MAX_FRAME;
use espgate_io::{BufPool, Packet, PortQueue, QueueStats};
use espgate_mirror::Mirror;
use espgate_wire::PacketBuf;
use espgate_wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr, MacAddr};

/// Mirror frames taken from the core per send.
pub const MIRROR_BURST: usize = 64;
/// Frames read from the port per receive.
const RX_BURST: usize = 32;

/// The largest `mirror.max_frame`: a mirror frame in its Ethernet frame
/// must fit one buffer of the mirror port, or the port drops it
/// (heartbeats included).
pub const MAX_MIRROR_FRAME: usize = MAX_FRAME - ethernet::HEADER_LEN;

/// Mirror frames of `max_frame` bytes would not cross the mirror port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{max_frame} is too large: with its {eth}-byte Ethernet header a mirror frame needs {needs} bytes, above the {MAX_FRAME} a buffer of the mirror port holds (at most {MAX_MIRROR_FRAME})",
    eth = ethernet::HEADER_LEN,
    needs = max_frame + ethernet::HEADER_LEN
)]
pub struct FrameTooLarge {
    /// The `mirror.max_frame` asked for.
    pub max_frame: usize,
}

/// Whether mirror frames of up to `max_frame` bytes can cross the mirror
/// port.
pub fn check_max_frame(max_frame: usize) -> Result<(), FrameTooLarge> {
    if max_frame > MAX_MIRROR_FRAME {
        return Err(FrameTooLarge { max_frame });
    }
    Ok(())
}

/// One node's end of the mirror link.
pub struct MirrorPort {
    queue: Box<dyn PortQueue>,
    pool: BufPool,
    peer_mac: MacAddr,
    /// Frames the port did not take yet, sent first next time.
    backlog: Vec<Packet>,
    rx: Vec<Packet>,
    not_mirror: u64,
    tx_full: u64,
}

impl MirrorPort {
    /// Frames go out of `queue` to `peer_mac`, in buffers of `pool`.
    pub fn new(queue: Box<dyn PortQueue>, pool: BufPool, peer_mac: MacAddr) -> Self {
        MirrorPort {
            queue,
            pool,
            peer_mac,
            backlog: Vec::with_capacity(MIRROR_BURST),
            rx: Vec::with_capacity(RX_BURST),
            not_mirror: 0,
            tx_full: 0,
        }
    }

    /// Sends what waits and up to a burst of `mirror`'s frames; returns how
    /// many the port took.
    pub fn send(&mut self, mirror: &mut Mirror, now: u64) -> usize {
        let eth = EthernetRepr {
            dst: self.peer_mac,
            src: self.queue.info().mac,
            vlan: None,
            ethertype: EtherType::MIRROR,
        };
        let mut tx = std::mem::take(&mut self.backlog);
        while tx.len() < MIRROR_BURST {
            let Some(frame) = mirror.poll_transmit(now) else {
                break;
            };
            let mut buf = self.pool.get();
            match buf.append(eth.header_len() + frame.len()) {
                Ok(room) => {
                    eth.emit(room).expect("room for the header");
                    room[eth.header_len()..].copy_from_slice(&frame);
                    tx.push(Packet::from(buf));
                }
                Err(_) => {
                    self.tx_full += 1;
                    self.pool.put(buf);
                }
            }
        }
        let n = tx.len();
        if n > 0 {
            self.queue.tx_burst(&mut tx, &mut self.pool);
            if !tx.is_empty() {
                self.tx_full += 1;
            }
        }
        self.backlog = tx;
        n - self.backlog.len()
    }

    /// Hands a burst of received mirror frames to `mirror` (it counts what
    /// it refuses; other frames are counted here); returns how many frames
    /// came.
    pub fn receive(&mut self, mirror: &mut Mirror, now: u64) -> usize {
        let n = self.queue.rx_burst(&mut self.pool, &mut self.rx, RX_BURST);
        for buf in self.rx.drain(..) {
            let body = EthernetFrame::new_checked(buf.data()).ok().and_then(|f| {
                let eth = EthernetRepr::parse(&f).ok()?;
                (eth.ethertype == EtherType::MIRROR).then_some(f.header_len())
            });
            match body {
                Some(at) => {
                    let _ = mirror.handle_frame(now, &buf.data()[at..]);
                }
                None => self.not_mirror += 1,
            }
            self.pool.recycle(buf);
        }
        n
    }

    /// Frames on the port that were not mirror frames.
    pub fn not_mirror(&self) -> u64 {
        self.not_mirror
    }

    /// Sends the port did not take whole (the rest went later), and frames
    /// too large for a buffer (dropped).
    pub fn tx_full(&self) -> u64 {
        self.tx_full
    }

    /// The port queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.queue.stats()
    }
}
