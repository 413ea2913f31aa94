//! The demo's traffic: hosts h1 (behind a) and h2 (behind b) each send a
//! datagram to h3 every millisecond; h3 echoes every one. Each datagram
//! carries its flow and number, so every loss is seen and placed in time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use espgate_dataplane::mirror_task::unix_ms;
use espgate_dataplane::testbed::Host;
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;

use super::rig::Rig;

/// UDP port h3 echoes on.
const ECHO_PORT: u16 = 7;

/// One flow: what was sent when, and which echoes came back intact.
#[derive(Debug, Default)]
pub struct Flow {
    /// Send time of datagram `k`, Unix ms.
    pub sent: Vec<u64>,
    /// Arrival time of its echo, Unix ms.
    pub echoed: Vec<Option<u64>>,
    /// Echoes whose bytes differed from what was sent.
    pub corrupt: usize,
}

/// The payload of datagram `k` of flow `f`: flow, number, then a pattern.
fn payload(f: u8, k: u32) -> Vec<u8> {
    let len = 64 + (k as usize * 37) % 700;
    let mut p = vec![f];
    p.extend(k.to_be_bytes());
    p.extend((0..len - 5).map(|i| (i as u32).wrapping_mul(7).wrapping_add(k) as u8));
    p
}

/// Source address and UDP payload of an IPv4 datagram.
fn udp(ip: &[u8]) -> Option<(IpAddr, u16, &[u8])> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    if p.protocol() != protocol::UDP {
        return None;
    }
    let l4 = &ip[p.header_len()..usize::from(p.total_len())];
    let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    Some((IpAddr::V4(p.src()), sport, l4.get(8..)?))
}

impl Flow {
    fn take_echoes(&mut self, host: &mut Host, f: u8) {
        for ip in host.poll() {
            let Some((_, _, p)) = udp(&ip) else { continue };
            if p.len() < 5 || p[0] != f {
                continue;
            }
            let k = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
            let Some(slot) = self.echoed.get_mut(k as usize) else {
                continue;
            };
            if p != payload(f, k) {
                self.corrupt += 1;
            } else if slot.is_none() {
                *slot = Some(unix_ms());
            }
        }
    }

    /// Datagrams sent in `[from, to)` (Unix ms) and how many came back.
    pub fn count(&self, from: u64, to: u64) -> (usize, usize) {
        let mut sent = 0;
        let mut back = 0;
        for (t, e) in self.sent.iter().zip(&self.echoed) {
            if (from..to).contains(t) {
                sent += 1;
                back += usize::from(e.is_some());
            }
        }
        (sent, back)
    }

    /// The first datagram sent at or after `t` whose echo came back: its
    /// echo time, and how many sent from `t` until it were lost.
    pub fn resumed_after(&self, t: u64) -> Option<(u64, usize)> {
        let mut lost = 0;
        for (s, e) in self.sent.iter().zip(&self.echoed) {
            if *s < t {
                continue;
            }
            match e {
                Some(at) => return Some((*at, lost)),
                None => lost += 1,
            }
        }
        None
    }
}

/// The two flows of the demo.
#[derive(Debug, Default)]
pub struct Traffic {
    /// h1 -> h3 and back: through a, or whoever holds a's SAs.
    pub h1: Flow,
    /// h2 -> h3 and back: through b.
    pub h2: Flow,
}

impl Traffic {
    /// Runs the flows for `d`.
    pub fn run(&mut self, rig: &mut Rig, d: Duration) {
        let end = Instant::now() + d;
        let h3 = rig.h3.ip;
        while Instant::now() < end {
            for (f, flow, host) in [
                (1u8, &mut self.h1, &mut rig.h1),
                (2, &mut self.h2, &mut rig.h2),
            ] {
                let k = flow.sent.len() as u32;
                flow.sent.push(unix_ms());
                flow.echoed.push(None);
                host.send_udp(h3, 40000 + u16::from(f), ECHO_PORT, &payload(f, k));
            }
            self.turn(rig);
        }
    }

    /// h3 echoes what arrived; a millisecond later the hosts take their
    /// echoes.
    fn turn(&mut self, rig: &mut Rig) {
        for ip in rig.h3.poll() {
            if let Some((src, sport, p)) = udp(&ip) {
                let p = p.to_vec();
                rig.h3.send_udp(src, ECHO_PORT, sport, &p);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
        self.h1.take_echoes(&mut rig.h1, 1);
        self.h2.take_echoes(&mut rig.h2, 2);
    }

    /// Lets the last echoes arrive.
    pub fn drain(&mut self, rig: &mut Rig) {
        let end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < end {
            self.turn(rig);
        }
    }
}
