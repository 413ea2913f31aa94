"""Wireshark's ESP dissector (tshark), given only the SA keys, decrypts
espgate's ESP and finds the ICV good. Debian's tshark 4.0 leaves the ESN
high half out of the ICV, so these SAs use 32-bit sequence numbers (Scapy
covers ESN)."""

import os
import shutil
import subprocess

import pytest
from conftest import SPI, V4, V6, frame, inner_packets, key_for, run_espgate, write_sa
from scapy.all import IP, UDP, IPv6, wrpcap


def tshark(pcap, *, bits, v6):
    src, dst = V6 if v6 else V4
    uat = (
        f'"{"IPv6" if v6 else "IPv4"}","{src}","{dst}","{SPI:#010x}",'
        f'"AES-GCM with 16 octet ICV [RFC4106]","0x{key_for(bits).hex()}","NULL",""'
    )
    cmd = [
        "tshark", "-n", "-r", str(pcap),
        "-o", "esp.enable_encryption_decode:TRUE",
        "-o", "esp.enable_authentication_check:TRUE",
        "-o", f"uat:esp_sa:{uat}",
        "-T", "fields", "-E", "separator=|",
        "-e", "esp.sequence", "-e", "esp.icv_good", "-e", "udp.payload",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines()]


@pytest.mark.parametrize("bits", [128, 256])
@pytest.mark.parametrize("udp", [False, True], ids=["esp", "udp"])
@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_tshark_decrypts_with_icv_good(tmp_path, bits, udp, v6):
    assert shutil.which("tshark"), "tshark is not installed (.ci/run installs it)"
    inners = inner_packets()
    wrpcap(str(tmp_path / "plain.pcap"), [frame(p) for p in inners])
    sa_file = write_sa(tmp_path / "sa.yaml", bits=bits, esn=False, udp=udp, v6_outer=v6, initial_seq=41)
    run_espgate("esp", "encrypt", "--sa", str(sa_file), str(tmp_path / "plain.pcap"), str(tmp_path / "esp.pcap"))
    rows = tshark(tmp_path / "esp.pcap", bits=bits, v6=v6)
    assert len(rows) == len(inners)
    for k, (row, inner) in enumerate(zip(rows, inners)):
        seq, icv_good, payload = row
        assert int(seq) == 42 + k
        assert icv_good in ("1", "True"), f"packet {k}: ICV not good: {row}"
        want = bytes(inner[UDP].payload).hex()
        # With a UDP outer header tshark lists the outer UDP payload first,
        # then the inner one (absent when the inner payload is empty).
        fields = [f for f in payload.split(",") if f]
        if udp:
            fields = fields[1:]
        assert (fields[-1] if fields else "").replace(":", "") == want, f"packet {k}: {row}"


def test_tshark_flags_a_bad_key(tmp_path):
    inners = inner_packets()[:4]
    wrpcap(str(tmp_path / "plain.pcap"), [frame(p) for p in inners])
    sa_file = write_sa(tmp_path / "sa.yaml", bits=128, esn=False, udp=False, v6_outer=False)
    run_espgate("esp", "encrypt", "--sa", str(sa_file), str(tmp_path / "plain.pcap"), str(tmp_path / "esp.pcap"))
    # Same SA, but tshark is told the 256-bit key: every ICV must be bad.
    rows = tshark(tmp_path / "esp.pcap", bits=256, v6=False)
    assert rows and all(r[1] in ("0", "False") for r in rows), rows


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_tshark_decrypts_with_only_the_exported_key_file(tmp_path, v6):
    """`espgate keys` writes Wireshark's ESP SA table; saved as `esp_sa` in a
    profile directory it is all tshark needs (no keys on its command line)."""
    inners = inner_packets()
    wrpcap(str(tmp_path / "plain.pcap"), [frame(p) for p in inners])
    sa_file = write_sa(tmp_path / "sa.yaml", bits=256, esn=False, udp=False, v6_outer=v6, initial_seq=7)
    run_espgate("esp", "encrypt", "--sa", str(sa_file), str(tmp_path / "plain.pcap"), str(tmp_path / "esp.pcap"))
    profile = tmp_path / "wireshark"
    profile.mkdir()
    run_espgate("keys", "--sa", str(sa_file), "--out", str(profile / "esp_sa"))
    assert (profile / "esp_sa").stat().st_mode & 0o777 == 0o600, "the key file is its owner's alone"
    cmd = [
        "tshark", "-n", "-r", str(tmp_path / "esp.pcap"),
        "-o", "esp.enable_encryption_decode:TRUE",
        "-o", "esp.enable_authentication_check:TRUE",
        "-T", "fields", "-E", "separator=|",
        "-e", "esp.sequence", "-e", "esp.icv_good", "-e", "udp.payload",
    ]
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(profile))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|") for line in r.stdout.splitlines()]
    assert len(rows) == len(inners)
    for k, ((seq, icv_good, payload), inner) in enumerate(zip(rows, inners)):
        assert int(seq) == 8 + k
        assert icv_good in ("1", "True"), f"packet {k}: ICV not good"
        fields = [f for f in payload.split(",") if f]
        assert (fields[-1] if fields else "").replace(":", "") == bytes(inner[UDP].payload).hex()
