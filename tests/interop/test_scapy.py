"""espgate against Scapy's ESP (scapy.layers.ipsec): each decrypts what
the other encrypts, to the exact inner packets, for AES-128/256-GCM, with
and without ESN, plain ESP and ESP in UDP, IPv4 and IPv6 outer headers,
with each of espgate's crypto backends."""

import os

import pytest
from conftest import BACKENDS, COMBOS, MACS, frame, inner_packets, run_espgate, scapy_sa, write_sa
from scapy.all import IP, UDP, Ether, IPv6, rdpcap, wrpcap
from scapy.layers.ipsec import ESP

# Sequence numbers that cross the 2^32 boundary of the low half (ESN), or
# run up to the last 32-bit number (no ESN).
ESN_START = (2 << 32) + 0xFFFFFFF8
SEQ32_START = 0xFFFFFFFF - 20


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits,esn,udp,v6", COMBOS)
def test_scapy_encrypts_espgate_decrypts(tmp_path, bits, esn, udp, v6, backend):
    inners = inner_packets()
    start = ESN_START if esn else SEQ32_START
    frames = []
    seqs = []
    for k, inner in enumerate(inners):
        seq = start + 1 + k
        sa = scapy_sa(bits=bits, esn=esn, udp=udp, v6_outer=v6, esn_hi=seq >> 32)
        # Set the low half on the SA itself: Scapy ignores seq_num=0 as an argument.
        sa.seq_num = seq & 0xFFFFFFFF
        outer = sa.encrypt(inner.copy(), iv=os.urandom(8))
        frames.append(frame(outer))
        seqs.append(seq)
    # Deliver a few out of order: the replay window must take them.
    frames[2], frames[5] = frames[5], frames[2]
    wrpcap(str(tmp_path / "esp.pcap"), frames)
    sa_file = write_sa(tmp_path / "sa.yaml", bits=bits, esn=esn, udp=udp, v6_outer=v6, initial_seq=start)
    out = run_espgate(
        "esp", "decrypt", "--backend", backend, "--sa", str(sa_file), str(tmp_path / "esp.pcap"), str(tmp_path / "plain.pcap")
    )
    assert f"decrypted {len(inners)} of {len(inners)} frames" in out, out
    got = rdpcap(str(tmp_path / "plain.pcap"))
    expected = list(inners)
    expected[2], expected[5] = expected[5], expected[2]
    assert len(got) == len(expected)
    for g, want in zip(got, expected):
        assert (g[Ether].src, g[Ether].dst) == MACS
        assert bytes(g[Ether].payload) == bytes(want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits,esn,udp,v6", COMBOS)
def test_espgate_encrypts_scapy_decrypts(tmp_path, bits, esn, udp, v6, backend):
    inners = inner_packets()
    start = ESN_START if esn else SEQ32_START
    wrpcap(str(tmp_path / "plain.pcap"), [frame(p) for p in inners])
    sa_file = write_sa(tmp_path / "sa.yaml", bits=bits, esn=esn, udp=udp, v6_outer=v6, initial_seq=start)
    out = run_espgate(
        "esp", "encrypt", "--backend", backend, "--sa", str(sa_file), str(tmp_path / "plain.pcap"), str(tmp_path / "esp.pcap")
    )
    assert f"encrypted {len(inners)} of {len(inners)} frames" in out, out
    got = rdpcap(str(tmp_path / "esp.pcap"))
    assert len(got) == len(inners)
    for k, (g, want) in enumerate(zip(got, inners)):
        seq = start + 1 + k
        outer = g[IPv6] if v6 else g[IP]
        if udp:
            assert outer.haslayer(UDP) and outer[UDP].dport == 4500
            if not v6:
                assert outer[UDP].chksum == 0
        esp = ESP(bytes(outer[UDP].payload)) if udp else outer[ESP]
        assert esp.spi == 0x1000 and esp.seq == seq & 0xFFFFFFFF
        sa = scapy_sa(bits=bits, esn=esn, udp=udp, v6_outer=v6, esn_hi=seq >> 32)
        plain = sa.decrypt(outer.copy())
        assert bytes(plain) == bytes(want), f"packet {k}"


def test_espgate_refuses_what_scapy_tampered(tmp_path):
    inner = inner_packets()[6]
    sa = scapy_sa(bits=128, esn=False, udp=False, v6_outer=False)
    good = sa.encrypt(inner.copy())
    bad = good.copy()
    data = bytearray(bytes(bad[ESP].data))
    data[-1] ^= 1
    bad[ESP].data = bytes(data)
    wrong_spi = good.copy()
    wrong_spi[ESP].spi = 0x9999
    # The tampered copy comes first: a replay is refused before the ICV is
    # even checked, so after the good one it would count as a replay.
    wrpcap(str(tmp_path / "esp.pcap"), [frame(bad), frame(good), frame(good), frame(wrong_spi)])
    sa_file = write_sa(tmp_path / "sa.yaml", bits=128, esn=False, udp=False, v6_outer=False)
    out = run_espgate("esp", "decrypt", "--sa", str(sa_file), str(tmp_path / "esp.pcap"), str(tmp_path / "plain.pcap"))
    assert "decrypted 1 of 4 frames" in out, out
    assert "auth_failed" in out and "replayed" in out and "unknown_spi" in out, out
