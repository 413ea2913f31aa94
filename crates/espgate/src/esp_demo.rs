//! `espgate esp demo`: the ESP core on the bundled sample traffic, with nothing
//! to configure. It encrypts every IP frame of `conf/samples/plain.pcap`
//! with the SA of `conf/sa-demo.yaml` (both compiled in), decrypts them back
//! and checks every byte, shows a replay and a forgery being refused,
//! measures ESP against the bare AEAD on this core, and writes the captures
//! with the line that lets tshark decrypt them.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use espgate_control::parse_sa;
use espgate_esp::aead::{GcmCipher, GcmKey};
use espgate_esp::{Backend, Direction, Inbound, OutboundSa, Sad};
use espgate_io::pcap::{PcapReader, PcapWriter};
use espgate_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use espgate_wire::ip::{self, protocol};
use espgate_wire::ipv4::Ipv4Packet;
use espgate_wire::ipv6::Ipv6Packet;
use espgate_wire::{HeapBuf, PacketBuf};

const SAMPLE: &[u8] = include_bytes!("../../../conf/samples/plain.pcap");
const SA_YAML: &str = include_str!("../../../conf/sa-demo.yaml");

/// One line describing an inner packet.
fn describe(packet: &[u8]) -> String {
    let name = |p: u8| match p {
        protocol::ICMP => "ICMP".to_string(),
        protocol::TCP => "TCP".to_string(),
        protocol::UDP => "UDP".to_string(),
        protocol::ICMPV6 => "ICMPv6".to_string(),
        other => format!("proto {other}"),
    };
    if let Ok(p) = Ipv4Packet::new_checked(packet) {
        format!("IPv4 {:<6} {} -> {}", name(p.protocol()), p.src(), p.dst())
    } else if let Ok(p) = Ipv6Packet::new_checked(packet) {
        format!(
            "IPv6 {:<6} {} -> {}",
            name(p.next_header()),
            p.src(),
            p.dst()
        )
    } else {
        "not IP".into()
    }
}

fn frame_with(eth: EthernetRepr, buf: &mut HeapBuf) -> anyhow::Result<Vec<u8>> {
    let ethertype = if ip::version_of(buf.data()) == Some(6) {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    let hdr = EthernetRepr { ethertype, ..eth };
    hdr.emit(buf.prepend(hdr.header_len())?)?;
    Ok(buf.data().to_vec())
}

/// Runs the demo; captures go to `out_dir`.
pub fn run(backend: Backend, out_dir: &Path) -> anyhow::Result<()> {
    let sa = parse_sa(SA_YAML, "conf/sa-demo.yaml", Path::new("conf"))?;
    let out_cfg = sa.for_direction(Direction::Outbound)?;
    let in_cfg = sa.for_direction(Direction::Inbound)?;
    let mut out = OutboundSa::new(&out_cfg, backend)?;
    let mut sad = Sad::new();
    sad.insert(&in_cfg, backend)?;
    outln!(
        "espgate esp demo: one ESP SA over the bundled sample traffic (conf/samples/plain.pcap)"
    )?;
    outln!(
        "  SA {:#x}: {}, tunnel {} -> {}, crypto backend {backend}\n",
        out_cfg.spi,
        out_cfg.algorithm,
        out_cfg.tunnel.src,
        out_cfg.tunnel.dst
    )?;
    fs::create_dir_all(out_dir).with_context(|| out_dir.display().to_string())?;
    let mut plain_w = PcapWriter::new(File::create(out_dir.join("plain.pcap"))?)?;
    let mut esp_w = PcapWriter::new(File::create(out_dir.join("esp.pcap"))?)?;

    outln!(" #  inner packet                                        bytes ->  seq  ESP bytes")?;
    let mut sealed: Vec<(EthernetRepr, Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, rec) in PcapReader::new(SAMPLE)?.enumerate() {
        let rec = rec?;
        plain_w.write(rec.ts_nanos, &rec.data)?;
        let frame = EthernetFrame::new_checked(&rec.data[..])?;
        let eth = EthernetRepr::parse(&frame)?;
        if eth.ethertype != EtherType::IPV4 && eth.ethertype != EtherType::IPV6 {
            outln!(
                "{:>2}  ethertype {:#06x}: not IP, not for ESP",
                k + 1,
                eth.ethertype.0
            )?;
            continue;
        }
        let inner = frame.payload().to_vec();
        let mut buf = HeapBuf::from_packet(&inner);
        let seq = out.encapsulate(&mut buf)?;
        let esp_len = buf.len();
        let esp_frame = frame_with(eth, &mut buf)?;
        esp_w.write(rec.ts_nanos, &esp_frame)?;
        outln!(
            "{:>2}  {:<50} {:>5} -> {:>4}  {:>5}",
            k + 1,
            describe(&inner),
            inner.len(),
            seq,
            esp_len
        )?;
        sealed.push((eth, inner, esp_frame[eth.header_len()..].to_vec()));
    }
    plain_w.flush()?;
    esp_w.flush()?;

    for (eth, inner, esp) in &sealed {
        let mut buf = HeapBuf::from_packet(esp);
        match sad.decapsulate(&mut buf)? {
            Inbound::Decapsulated { .. } if buf.data() == &inner[..] => {}
            other => bail!("frame to {eth:?} did not come back intact: {other:?}"),
        }
    }
    outln!(
        "\ndecrypted {} of {} ESP packets back to the exact original bytes",
        sealed.len(),
        sealed.len()
    )?;

    let verdict = |r: Result<Inbound, espgate_esp::EspError>| match r {
        Ok(_) => "accepted".to_string(),
        Err(e) => format!("dropped ({})", e.reason),
    };
    let (_, inner, first) = &sealed[0];
    let replay = sad.decapsulate(&mut HeapBuf::from_packet(first));
    outln!(
        "{:<46}{}",
        "the first ESP packet again (a replay):",
        verdict(replay)
    )?;
    let mut fresh = HeapBuf::from_packet(inner);
    let seq = out.encapsulate(&mut fresh)?;
    let genuine = fresh.data().to_vec();
    let mut forged = genuine.clone();
    let at = forged.len() - 20;
    forged[at] ^= 0x01;
    let forgery = sad.decapsulate(&mut HeapBuf::from_packet(&forged));
    outln!(
        "{:<46}{}",
        format!("seq {seq} with one ciphertext bit flipped:"),
        verdict(forgery)
    )?;
    let genuine = sad.decapsulate(&mut HeapBuf::from_packet(&genuine));
    outln!(
        "{:<46}{}",
        format!("seq {seq} as sent (the forgery moved nothing):"),
        verdict(genuine)
    )?;
    let c_out = out.counters();
    let c_in = sad
        .get(out_cfg.spi)
        .map(|s| *s.counters())
        .unwrap_or_default();
    outln!(
        "counters: outbound {} packets {} bytes; inbound {} packets {} bytes, drops: {}",
        c_out.packets,
        c_out.bytes,
        c_in.packets,
        c_in.bytes,
        c_in.drops
            .nonzero()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;

    outln!(
        "\nthroughput on this core, ESP encrypt beside the bare AES-GCM seal of the same packet:"
    )?;
    outln!("  size    ESP Mpps   AEAD Mpps   ESP/AEAD")?;
    for size in [64usize, 512, 1420] {
        let (esp, aead) = measure(&out_cfg, backend, size)?;
        outln!(
            "  {size:>4} B   {esp:>7.2}    {aead:>7.2}      {:>5.2}",
            esp / aead
        )?;
    }

    let key_hex: String = out_cfg.key.iter().map(|b| format!("{b:02x}")).collect();
    outln!(
        "\ncaptures: {0}/plain.pcap and {0}/esp.pcap; to decrypt the ESP with tshark:",
        out_dir.display()
    )?;
    outln!(
        "  tshark -r {}/esp.pcap -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE \\\n    -o 'uat:esp_sa:\"IPv4\",\"{}\",\"{}\",\"{:#010x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key_hex}\",\"NULL\",\"\"'",
        out_dir.display(),
        out_cfg.tunnel.src,
        out_cfg.tunnel.dst,
        out_cfg.spi
    )?;
    Ok(())
}

/// Packets per second (millions) of ESP encapsulation and of the bare AEAD
/// seal for an inner IPv4/UDP packet of `size` bytes, each run for a fixed
/// time on this core.
fn measure(
    cfg: &espgate_esp::SaConfig,
    backend: Backend,
    size: usize,
) -> anyhow::Result<(f64, f64)> {
    const BUDGET: Duration = Duration::from_millis(300);
    let mut inner = vec![0u8; size];
    let n = size - 20;
    espgate_wire::ipv4::Ipv4Repr {
        src: "10.1.0.1".parse()?,
        dst: "10.2.0.1".parse()?,
        protocol: protocol::UDP,
        payload_len: n,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut inner)?;
    let mut sa = OutboundSa::new(cfg, backend)?;
    let mut buf = HeapBuf::from_packet(&inner);
    let esp = rate(BUDGET, || {
        buf.reset(HeapBuf::DEFAULT_HEADROOM, &inner).expect("fits");
        sa.encapsulate(&mut buf).expect("encapsulates");
    });
    let key = GcmKey::new(backend, cfg.algorithm, &cfg.key[..cfg.algorithm.key_len()])?;
    let mut nonce = [0u8; 12];
    let mut counter = 0u64;
    let mut tag = [0u8; 16];
    let aead = rate(BUDGET, || {
        counter += 1;
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        key.seal_in_place(&nonce, &[0u8; 8], &mut inner, &mut tag);
        std::hint::black_box(&tag);
    });
    Ok((esp, aead))
}

fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}
