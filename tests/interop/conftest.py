"""Shared helpers for the interop tests: the espgate binary, SA files,
and packet builders. These tests check espgate's wire format against ESP
implementations nobody here wrote: Scapy's and Wireshark's."""

import os
import pathlib
import subprocess

import pytest
from scapy.all import IP, UDP, Ether, IPv6, Raw
from scapy.layers.ipsec import ESP, SecurityAssociation

REPO = pathlib.Path(__file__).resolve().parents[2]

V4 = ("172.16.1.5", "172.16.2.5")
V6 = ("2001:db8:1::5", "2001:db8:2::5")
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")
SPI = 0x1000
# Every AES-GCM backend: scripts/test builds the binary with all three.
BACKENDS = ("ring", "rustcrypto", "ipsec-mb")


def espgate_bin():
    """The espgate binary: $ESPGATE, else the debug build (scripts/test builds it)."""
    path = os.environ.get("ESPGATE", str(REPO / "target" / "debug" / "espgate"))
    if not os.path.exists(path):
        pytest.fail(f"espgate binary not found at {path}: run `cargo build -p espgate` first")
    return path


def run_espgate(*args):
    """Runs espgate and returns its standard output; fails the test on a non-zero exit."""
    r = subprocess.run([espgate_bin(), *args], capture_output=True, text=True)
    assert r.returncode == 0, f"espgate {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def key_for(bits):
    """Deterministic key material: AES key then 4-byte salt."""
    return bytes((i * 37 + 11) % 256 for i in range(bits // 8 + 4))


def write_sa(path, *, bits, esn, udp, v6_outer, initial_seq=0):
    """Writes an espgate SA file; the tunnel is (src, dst) as on the wire."""
    src, dst = V6 if v6_outer else V4
    path.write_text(
        f"spi: {SPI:#x}\n"
        f"aead: aes-{bits}-gcm\n"
        f"key: 0x{key_for(bits).hex()}\n"
        f'tunnel: {{ src: "{src}", dst: "{dst}" }}\n'
        f"esn: {'true' if esn else 'false'}\n"
        f"udp_encap: {'true' if udp else 'false'}\n"
        f"initial_seq: {initial_seq}\n"
    )
    return path


def scapy_sa(*, bits, esn, udp, v6_outer, esn_hi=0):
    """The same SA as Scapy sees it."""
    src, dst = V6 if v6_outer else V4
    tunnel = IPv6(src=src, dst=dst) if v6_outer else IP(src=src, dst=dst)
    return SecurityAssociation(
        ESP,
        spi=SPI,
        crypt_algo="AES-GCM",
        crypt_key=key_for(bits),
        tunnel_header=tunnel,
        nat_t_header=UDP(sport=4500, dport=4500) if udp else None,
        esn_en=esn,
        esn=esn_hi,
    )


def inner_packets():
    """IPv4/UDP and IPv6/UDP packets of several sizes (padding 0..3 all occur)."""
    pkts = []
    for n in (0, 1, 2, 3, 5, 64, 333, 1200):
        body = bytes((n + i) % 251 for i in range(n))
        pkts.append(IP(src="10.1.0.1", dst="10.2.0.1", id=n) / UDP(sport=5000, dport=6000) / Raw(body))
        pkts.append(IPv6(src="2001:db8:a::1", dst="2001:db8:b::1") / UDP(sport=5000, dport=6000) / Raw(body))
    # Build every packet once so lengths and checksums are filled in.
    return [p.__class__(bytes(p)) for p in pkts]


def frame(ip_pkt):
    return Ether(src=MACS[0], dst=MACS[1]) / ip_pkt


COMBOS = [
    pytest.param(bits, esn, udp, v6, id=f"aes{bits}-{'esn' if esn else 'seq32'}-{'udp' if udp else 'esp'}-{'v6' if v6 else 'v4'}")
    for bits in (128, 256)
    for esn in (False, True)
    for udp in (False, True)
    for v6 in (False, True)
]
