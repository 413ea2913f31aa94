//! What the ESP network carried: every frame a, b and r sent, checked for
//! reused (SPI, sequence number) pairs, summarised per SA as runs of
//! sequence numbers by sender, and written as a pcap file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, ensure};
use espgate_io::pcap::PcapWriter;
use espgate_wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use espgate_wire::ip::protocol;
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::{self, Ipv6Packet};
use espgate_wire::udp::UdpPacket;

/// One ESP frame on the wire.
#[derive(Debug, Clone, Copy)]
pub struct EspFrame {
    /// When it was sent, Unix ns.
    pub ns: u64,
    /// Who sent it.
    pub sender: MacAddr,
    /// Whom it went to.
    pub receiver: MacAddr,
    /// SPI.
    pub spi: u32,
    /// The full sequence number: the GCM IV (RFC 4106), whose low 32 bits
    /// are the ESP header's sequence number. With ESN the high 32 bits
    /// are never on the wire; keyed on the low ones, two packets 2^32
    /// apart would look like a reuse, and a reuse across the high bits
    /// would pass.
    pub seq: u64,
}

/// A stretch of one SA's numbers sent by one node.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// The sender.
    pub sender: MacAddr,
    /// First and last sequence number.
    pub first: u64,
    /// Last.
    pub last: u64,
    /// Frames.
    pub frames: usize,
}

/// UDP port of ESP in UDP (RFC 3948).
const NAT_T_PORT: u16 = 4500;

/// The ESP frames of a capture, in order: ESP over IPv4 or IPv6, bare or
/// in UDP (port 4500, not the non-ESP marker). ARP frames are skipped;
/// any other frame is an error, for a checker that skips what it does not
/// understand proves nothing.
pub fn esp_frames(frames: &[(u64, Vec<u8>)]) -> anyhow::Result<Vec<EspFrame>> {
    let mut out = Vec::new();
    for (k, (ns, f)) in frames.iter().enumerate() {
        let what = || format!("frame {k} of the capture ({} bytes)", f.len());
        let eth =
            EthernetFrame::new_checked(&f[..]).map_err(|_| anyhow!("{}: not Ethernet", what()))?;
        let (proto, l4) = match eth.ethertype() {
            EtherType::ARP => continue,
            EtherType::IPV4 => {
                let ip = Ipv4Packet::new_checked(eth.payload())
                    .map_err(|_| anyhow!("{}: a bad IPv4 header", what()))?;
                (ip.protocol(), &eth.payload()[ip.header_len()..])
            }
            EtherType::IPV6 => {
                let ip = Ipv6Packet::new_checked(eth.payload())
                    .map_err(|_| anyhow!("{}: a bad IPv6 header", what()))?;
                (ip.next_header(), &eth.payload()[ipv6::HEADER_LEN..])
            }
            other => bail!("{}: neither ARP nor IP but EtherType {other:?}", what()),
        };
        let esp = match proto {
            protocol::ESP => l4,
            protocol::UDP
                if UdpPacket::new_checked(l4).is_ok_and(|u| u.dst_port() == NAT_T_PORT)
                    && l4.get(8..12).is_some_and(|m| m != [0; 4]) =>
            {
                &l4[8..]
            }
            other => bail!("{}: neither ARP nor ESP but IP protocol {other}", what()),
        };
        let header = esp
            .get(..16)
            .ok_or_else(|| anyhow!("{}: an ESP packet too short for its IV", what()))?;
        let spi = u32::from_be_bytes(header[..4].try_into()?);
        let seq32 = u32::from_be_bytes(header[4..8].try_into()?);
        let seq = u64::from_be_bytes(header[8..16].try_into()?);
        ensure!(
            seq as u32 == seq32,
            "{}: SPI {spi:#x}: IV {seq:#x} does not end in the sequence number {seq32:#x}",
            what()
        );
        out.push(EspFrame {
            ns: *ns,
            sender: eth.src(),
            receiver: eth.dst(),
            spi,
            seq,
        });
    }
    Ok(out)
}

/// The frames that used their sequence numbers: all but those one node
/// of the `pair` sent on to the other. A node sends on what reaches it for
/// an SA its peer runs, unchanged but for the Ethernet addresses: a copy
/// of the far end's frame, not a second use of its number.
pub fn uses(esp: &[EspFrame], pair: [MacAddr; 2]) -> Vec<EspFrame> {
    esp.iter()
        .filter(|e| !(pair.contains(&e.sender) && pair.contains(&e.receiver)))
        .copied()
        .collect()
}

/// (SPI, sequence number) pairs sent more than once, with their counts.
pub fn reused(esp: &[EspFrame]) -> Vec<((u32, u64), usize)> {
    let mut seen: HashMap<(u32, u64), usize> = HashMap::new();
    for e in esp {
        *seen.entry((e.spi, e.seq)).or_default() += 1;
    }
    let mut twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    twice.sort_unstable();
    twice
}

/// The runs of SA `spi`: consecutive frames by the same sender.
pub fn runs(esp: &[EspFrame], spi: u32) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for e in esp.iter().filter(|e| e.spi == spi) {
        match out.last_mut() {
            Some(r) if r.sender == e.sender => {
                r.last = e.seq;
                r.frames += 1;
            }
            _ => out.push(Run {
                sender: e.sender,
                first: e.seq,
                last: e.seq,
                frames: 1,
            }),
        }
    }
    out
}

/// Writes the capture as a pcap file.
pub fn write_pcap(frames: &[(u64, Vec<u8>)], path: &Path) -> anyhow::Result<()> {
    let mut w = PcapWriter::new(File::create(path)?)?;
    for (ns, f) in frames {
        w.write(*ns, f)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame from `src` with `ethertype` and `payload`.
    fn eth(src: u8, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, src];
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    /// An ESP header and IV: SPI, the low 32 bits of `seq`, all of `seq`.
    fn esp(spi: u32, seq: u64) -> Vec<u8> {
        let mut e = spi.to_be_bytes().to_vec();
        e.extend((seq as u32).to_be_bytes());
        e.extend(seq.to_be_bytes());
        e.extend([0xab; 24]);
        e
    }

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&(20 + l4.len() as u16).to_be_bytes());
        p.extend(l4);
        p
    }

    fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((l4.len() as u16).to_be_bytes());
        p.extend([next, 64]);
        p.extend([0; 32]);
        p.extend(l4);
        p
    }

    fn udp(dst: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = 4500u16.to_be_bytes().to_vec();
        u.extend(dst.to_be_bytes());
        u.extend((8 + payload.len() as u16).to_be_bytes());
        u.extend([0, 0]);
        u.extend(payload);
        u
    }

    fn capture(frames: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
        frames
            .into_iter()
            .enumerate()
            .map(|(k, f)| (k as u64, f))
            .collect()
    }

    #[test]
    fn every_esp_frame_is_seen_over_ipv4_ipv6_and_udp_with_its_full_sequence_number() {
        let c = capture(vec![
            eth(1, 0x0806, &[0; 28]),
            eth(1, 0x0800, &ipv4(protocol::ESP, &esp(0x1000, 7))),
            eth(2, 0x86dd, &ipv6(protocol::ESP, &esp(0x1000, 8))),
            eth(
                2,
                0x0800,
                &ipv4(protocol::UDP, &udp(NAT_T_PORT, &esp(0x1000, 9))),
            ),
            // ESN: 2^32 apart is no reuse; the same 64-bit number is.
            eth(1, 0x0800, &ipv4(protocol::ESP, &esp(0x1000, (1 << 32) + 7))),
            eth(2, 0x0800, &ipv4(protocol::ESP, &esp(0x1000, (1 << 32) + 7))),
        ]);
        let esp = esp_frames(&c).unwrap();
        let seqs: Vec<u64> = esp.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 8, 9, (1 << 32) + 7, (1 << 32) + 7]);
        assert_eq!(reused(&esp), [((0x1000, (1 << 32) + 7), 2)]);
    }

    #[test]
    fn a_frame_one_pair_node_sent_on_to_the_other_is_no_use_of_its_number() {
        let mac = |n: u8| MacAddr([0x02, 0, 0, 0, 0, n]);
        let to = |dst: u8, src: u8, seq: u64| {
            let mut f = eth(src, 0x0800, &ipv4(protocol::ESP, &esp(0x1001, seq)));
            f[5] = dst;
            f
        };
        // r (3) sends 7 to a (1), which sends it on to b (2); then b
        // sends 7 of its own to r: a reuse.
        let esp = esp_frames(&capture(vec![to(1, 3, 7), to(2, 1, 7)])).unwrap();
        assert_eq!(reused(&esp).len(), 1, "the copy shows as a second frame");
        assert!(reused(&uses(&esp, [mac(1), mac(2)])).is_empty());
        let esp = esp_frames(&capture(vec![to(1, 3, 7), to(2, 1, 7), to(3, 2, 7)])).unwrap();
        assert_eq!(reused(&uses(&esp, [mac(1), mac(2)])), [((0x1001, 7), 2)]);
    }

    #[test]
    fn a_frame_that_is_neither_arp_nor_esp_fails_the_check() {
        for f in [
            eth(1, 0x0800, &ipv4(1, &[8, 0, 0, 0, 0, 0, 0, 0])),
            eth(1, 0x0800, &ipv4(protocol::UDP, &udp(53, &[1, 2, 3, 4]))),
            eth(
                1,
                0x0800,
                &ipv4(protocol::UDP, &udp(NAT_T_PORT, &[0, 0, 0, 0, 1])),
            ),
            eth(1, 0x88b5, &[0; 60]),
        ] {
            assert!(esp_frames(&capture(vec![f.clone()])).is_err(), "{f:x?}");
        }
        let mut bad_iv = esp(0x1000, 7);
        bad_iv[15] = 8;
        assert!(
            esp_frames(&capture(vec![eth(
                1,
                0x0800,
                &ipv4(protocol::ESP, &bad_iv)
            )]))
            .is_err()
        );
    }
}
