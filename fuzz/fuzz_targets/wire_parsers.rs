//! Every wire parser on arbitrary bytes, as a frame off a port would reach
//! them: Ethernet (with 802.1Q), ARP, IPv4, IPv6, UDP, the ESP header and
//! trailer, the SPD's selectors and the classifier that picks ESP for the
//! node. Nothing may panic; a header that parses must emit and parse back
//! to the same value.
#![no_main]

use std::net::IpAddr;

use espgate_dataplane::classify::esp_spi;
use espgate_dataplane::spd::Selectors;
use espgate_wire::arp::{ArpPacket, ArpRepr};
use espgate_wire::esp::{EspPacket, EspRepr, EspTrailer};
use espgate_wire::ethernet::{EthernetFrame, EthernetRepr};
use espgate_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use espgate_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use espgate_wire::udp::{UdpPacket, UdpRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = EthernetFrame::new_checked(data)
        && let Ok(r) = EthernetRepr::parse(&f)
    {
        let mut out = vec![0u8; r.header_len()];
        r.emit(&mut out).expect("a parsed header emits");
        let back = EthernetRepr::parse(&EthernetFrame::new_checked(&out[..]).expect("emitted"))
            .expect("re-parses");
        assert_eq!(back, r);
        let body = &data[r.header_len().min(data.len())..];
        ip(body);
        if let Ok(p) = ArpPacket::new_checked(body)
            && let Ok(a) = ArpRepr::parse(&p)
        {
            let mut out = vec![0u8; body.len().max(28)];
            a.emit(&mut out).expect("a parsed ARP packet emits");
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_checked(&out[..]).unwrap()).unwrap(),
                a
            );
        }
    }
    ip(data);
    if let Ok((t, n)) = EspTrailer::parse(data) {
        assert!(n <= data.len());
        let _ = t.is_empty();
    }
});

/// An IP packet through every IP-level parser.
fn ip(data: &[u8]) {
    let _ = Selectors::of(data);
    let own: [IpAddr; 2] = [
        "172.16.1.5".parse().unwrap(),
        "2001:db8::5".parse().unwrap(),
    ];
    let _ = esp_spi(data, &own, &[4500]);
    if let Ok(p) = Ipv4Packet::new_checked(data)
        && let Ok(r) = Ipv4Repr::parse(&p)
    {
        let mut out = vec![0u8; r.header_len()];
        r.emit(&mut out).expect("a parsed header emits");
        let mut whole = out.clone();
        whole.resize(r.header_len() + r.payload_len, 0);
        let back = Ipv4Repr::parse(&Ipv4Packet::new_checked(&whole[..]).expect("emitted"))
            .expect("re-parses");
        assert_eq!(back, r);
        transport(&data[p.header_len().min(data.len())..]);
    }
    if let Ok(p) = Ipv6Packet::new_checked(data)
        && let Ok(r) = Ipv6Repr::parse(&p)
    {
        let mut out = vec![0u8; r.header_len() + r.payload_len];
        r.emit(&mut out).expect("a parsed header emits");
        let back = Ipv6Repr::parse(&Ipv6Packet::new_checked(&out[..]).expect("emitted"))
            .expect("re-parses");
        assert_eq!(back, r);
        transport(&data[40.min(data.len())..]);
    }
}

/// What follows an IP header: UDP, or ESP.
fn transport(data: &[u8]) {
    if let Ok(u) = UdpPacket::new_checked(data) {
        let _ = UdpRepr::parse(&u);
    }
    if let Ok(e) = EspPacket::new_checked(data)
        && let Ok(r) = EspRepr::parse(&e)
    {
        let mut out = vec![0u8; 8];
        r.emit(&mut out).expect("a parsed ESP header emits");
        assert_eq!(
            EspRepr::parse(&EspPacket::new_checked(&out[..]).unwrap()).unwrap(),
            r
        );
    }
}
