"""espgate as a real IPsec gateway between two networks of Linux hosts:

    host A (10.1.0.1) -- node A (espgate, AF_PACKET) == ESP == peer -- host B (10.2.0.1)

Each host is a network namespace with the kernel's own stack; ping and a
UDP stream go from host A to host B and back, every byte checked, and a
capture of the link between node A and the peer must show only ESP (and
ARP). The peer is a second espgate node, or a Scapy-based ESP gateway."""

import pathlib
import re
import signal

import pytest
from scapy.all import ARP, ESP, IP, rdpcap
from topology import wait_file_settles, wait_for, wait_udp_listening

HERE = pathlib.Path(__file__).parent
KEY_AB = "0x4c80cdefbb5d10da906ac73c3613a6342e443b68"
KEY_BA = "0xfeffe9928665731c6d6a8f9467308308cafebabe"


def node_yaml(name, lan_addr, wan_addr, peer_wan, local_net, remote_net, out_spi, out_key, in_spi, in_key, workers=1):
    return f"""node: {{ name: {name} }}
workers: {{ count: {workers}, idle_sleep_us: 200 }}
ports:
  - {{ name: lan, role: protected, backend: af_packet, interface: lan, address: {lan_addr} }}
  - {{ name: wan, role: unprotected, backend: af_packet, interface: wan, address: {wan_addr} }}
sas:
  - {{ spi: {out_spi}, direction: outbound, aead: aes-128-gcm, key: {out_key}, tunnel: {{ src: {wan_addr.split('/')[0]}, dst: {peer_wan} }} }}
  - {{ spi: {in_spi}, direction: inbound, aead: aes-128-gcm, key: {in_key}, tunnel: {{ src: {peer_wan}, dst: {wan_addr.split('/')[0]} }} }}
spd:
  - {{ direction: out, src: {local_net}, dst: {remote_net}, action: protect, sa: {out_spi} }}
  - {{ direction: in, src: {remote_net}, dst: {local_net}, action: protect, sa: {in_spi} }}
"""


def build(t):
    ha, a, b, hb = t.ns("ha"), t.ns("a"), t.ns("b"), t.ns("hb")
    t.veth(ha, "eth0", "02:00:00:00:01:10", a, "lan", "02:00:00:00:01:01")
    t.veth(a, "wan", "02:00:00:00:01:02", b, "wan", "02:00:00:00:02:02")
    t.veth(b, "lan", "02:00:00:00:02:01", hb, "eth0", "02:00:00:00:02:10")
    t.host(ha, "eth0", "10.1.0.1/24", "10.1.0.254")
    t.host(hb, "eth0", "10.2.0.1/24", "10.2.0.254")
    return ha, a, b, hb


def start_node(t, espgate, ns, tmp, name, yaml):
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml)
    return t.start(ns, espgate, "run", "--config", str(cfg), log=tmp / f"{name}.log")


def start_capture(t, ns, ifname, path):
    p = t.start(ns, "dumpcap", "-q", "-P", "-i", ifname, "-w", str(path))
    assert wait_for(lambda: path.exists() and path.stat().st_size >= 24), "capture did not start"
    return p


def exchange(t, ha, hb, count=1000):
    """Ping, then a UDP stream with echoes; returns what each printed."""
    assert wait_for(lambda: t.run(ha, "ping", "-c1", "-W1", "10.2.0.1", check=False).returncode == 0, timeout=20), "no ping reply"
    ping = t.run(ha, "ping", "-c", "20", "-i", "0.05", "-W", "1", "10.2.0.1", check=False).stdout
    assert " 0% packet loss" in ping, ping
    t.start(hb, "python3", str(HERE / "udp_echo.py"), "server", "7000")
    wait_udp_listening(t, hb, 7000)
    out = t.run(ha, "python3", str(HERE / "udp_echo.py"), "client", "10.2.0.1", "7000", str(count), timeout=120).stdout
    m = re.search(r"sent (\d+) received (\d+) intact (\d+)", out)
    assert m, out
    sent, received, intact = map(int, m.groups())
    assert sent == count and received == count and intact == count, out
    return ping, out


def check_wire(path):
    """Every frame on the link is ESP or ARP; no (SPI, seq) pair twice."""
    frames = rdpcap(str(path))
    pairs = set()
    esp = 0
    for f in frames:
        if f.haslayer(ARP):
            continue
        assert f.haslayer(IP) and f[IP].proto == 50, f"plaintext on the ESP link: {f.summary()}"
        e = f[ESP]
        key = (f[IP].src, e.spi, e.seq)
        assert key not in pairs, f"(SPI, seq) used twice: {key}"
        pairs.add(key)
        esp += 1
    return esp


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers-fanout"])
def test_two_espgate_nodes(topo, espgate, tmp_path, workers):
    ha, a, b, hb = build(topo)
    na = start_node(topo, espgate, a, tmp_path, "a", node_yaml("a", "10.1.0.254/24", "172.16.0.1/24", "172.16.0.2", "10.1.0.0/24", "10.2.0.0/24", "0x1000", KEY_AB, "0x2000", KEY_BA, workers))
    nb = start_node(topo, espgate, b, tmp_path, "b", node_yaml("b", "10.2.0.254/24", "172.16.0.2/24", "172.16.0.1", "10.2.0.0/24", "10.1.0.0/24", "0x2000", KEY_BA, "0x1000", KEY_AB, workers))
    cap = start_capture(topo, a, "wan", tmp_path / "wan.pcap")
    exchange(topo, ha, hb)
    wait_file_settles(tmp_path / "wan.pcap")  # the capture has written what its ring held
    topo.stop(cap, signal.SIGINT)
    assert topo.stop(na) == 0 and topo.stop(nb) == 0
    log_a = (tmp_path / "a.log").read_text()
    assert "node a: rx" in log_a and "out sa 0x00001000" in log_a, log_a
    # The capture may miss frames under load (it is a second socket on the
    # link); what it holds must be ESP or ARP only, and plenty of it.
    esp = check_wire(tmp_path / "wan.pcap")
    assert esp >= 1000, esp


def test_espgate_with_a_scapy_peer(topo, espgate, tmp_path):
    ha, a, b, hb = build(topo)
    na = start_node(topo, espgate, a, tmp_path, "a", node_yaml("a", "10.1.0.254/24", "172.16.0.1/24", "172.16.0.2", "10.1.0.0/24", "10.2.0.0/24", "0x1000", KEY_AB, "0x2000", KEY_BA))
    peer = topo.start(b, "python3", str(HERE / "scapy_peer.py"), "lan", "wan", "10.2.0.254", "172.16.0.2", "172.16.0.1",
                      "02:00:00:00:02:10", "02:00:00:00:01:02", "0x2000", KEY_BA, "0x1000", KEY_AB, log=tmp_path / "peer.log")
    assert wait_for(lambda: "ready" in (tmp_path / "peer.log").read_text(), timeout=30), "the Scapy peer did not start"
    cap = start_capture(topo, a, "wan", tmp_path / "wan.pcap")
    exchange(topo, ha, hb, count=200)
    wait_file_settles(tmp_path / "wan.pcap")  # the capture has written what its ring held
    topo.stop(cap, signal.SIGINT)
    assert topo.stop(na) == 0
    topo.stop(peer)
    esp = check_wire(tmp_path / "wan.pcap")
    assert esp >= 200, esp
    log_a = (tmp_path / "a.log").read_text()
    assert re.search(r"in  sa 0x00002000: (\d+) packets", log_a), log_a
