"""The guard rails a node keeps at start, on real interfaces:

- its AF_PACKET ports' receive offloads (GRO, receive checksum) are
  switched off, or the node refuses to start with the ethtool command to
  run; frames whose checksum a veth sender left unfilled are completed,
  so UDP and TCP reach the far host with right checksums;

    host A -- node a == ESP == node b -- host B     (test_gateway's topology)

- a peer not heard within a few seconds is logged once with what to
  check, and the first mirror frame refused for each reason is logged:

    node a (lan, wan, mir) == veths == node b (lan, wan, mir, spare -- x)
"""

import pathlib
import re
import signal
import struct
import time

from scapy.all import IP, IPv6, TCP, UDP, rdpcap
from test_failover import MAC, pair_yaml
from test_gateway import KEY_AB, KEY_BA, build, exchange, node_yaml, start_capture, start_node
from topology import wait_file_settles, wait_for

HERE = pathlib.Path(__file__).parent
OFFLOADS = ("generic-receive-offload", "rx-checksumming")


def yaml_of(name):
    if name == "a":
        return node_yaml("a", "10.1.0.254/24", "172.16.0.1/24", "172.16.0.2", "10.1.0.0/24", "10.2.0.0/24",
                         "0x1000", KEY_AB, "0x2000", KEY_BA)
    return node_yaml("b", "10.2.0.254/24", "172.16.0.2/24", "172.16.0.1", "10.2.0.0/24", "10.1.0.0/24",
                     "0x2000", KEY_BA, "0x1000", KEY_AB)


def features(t, ns, ifname):
    """`ethtool -k` of an interface: {feature: on?}."""
    out = t.run(ns, "ethtool", "-k", ifname).stdout
    return {m.group(1): m.group(2) == "on" for m in re.finditer(r"^([\w-]+): (on|off)", out, re.M)}


def offloads_on(t, ha, a, b, hb):
    """What test_gateway's veths switched off, on again: the nodes' ports
    with GRO and receive checksum offload (a node must switch those off),
    the hosts' with transmit checksum offload (their TCP and UDP leave
    with the checksum unfilled, for a device that a veth does not have)."""
    for ns, ifname in ((a, "lan"), (a, "wan"), (b, "lan"), (b, "wan")):
        t.run(ns, "ethtool", "-K", ifname, "gro", "on", "rx", "on", "tx", "on", "gso", "on", "tso", "on")
        assert all(features(t, ns, ifname)[f] for f in OFFLOADS), t.run(ns, "ethtool", "-k", ifname).stdout
    for ns in (ha, hb):
        t.run(ns, "ethtool", "-K", "eth0", "tx", "on", "gso", "on", "tso", "off")


def ones_sum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum_right(pkt):
    """Whether an IPv4 packet's TCP or UDP checksum is right (over its
    pseudo-header, as the receiving host checks it)."""
    ip = pkt[IP]
    raw = bytes(ip)
    segment = raw[ip.ihl * 4:ip.len]
    pseudo = raw[12:20] + struct.pack("!BBH", 0, ip.proto, len(segment))
    return ones_sum(pseudo + segment) == 0xFFFF


def wait_tcp_listening(t, ns, port):
    def listening():
        out = t.run(ns, "ss", "-Hltn", check=False).stdout
        return any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3)

    assert wait_for(listening), f"nothing listens on TCP {port} in {ns}"


def test_offloads_are_switched_off_and_unfilled_checksums_completed(topo, espgate, tmp_path):
    ha, a, b, hb = build(topo)
    offloads_on(topo, ha, a, b, hb)
    na = start_node(topo, espgate, a, tmp_path, "a", yaml_of("a"))
    nb = start_node(topo, espgate, b, tmp_path, "b", yaml_of("b"))
    assert wait_for(lambda: "running" in (tmp_path / "a.log").read_text()
                    and "running" in (tmp_path / "b.log").read_text(), timeout=20), \
        (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    for ns in (a, b):
        for ifname in ("lan", "wan"):
            f = features(topo, ns, ifname)
            assert not any(f[x] for x in OFFLOADS), (ns, ifname, f)
    log_a = (tmp_path / "a.log").read_text()
    assert "switched off generic-receive-offload, rx-checksumming" in log_a, log_a
    assert "ethtool -K lan gro off rx off" in log_a, log_a
    cap = start_capture(topo, hb, "eth0", tmp_path / "hb.pcap")
    exchange(topo, ha, hb, count=200)
    topo.start(hb, "python3", str(HERE / "tcp_echo.py"), "server", "7001")
    wait_tcp_listening(topo, hb, 7001)
    out = topo.run(ha, "python3", str(HERE / "tcp_echo.py"), "client", "10.2.0.1", "7001", "300000", timeout=120).stdout
    assert "sent 300000 echoed 300000 intact yes" in out, out
    wait_file_settles(tmp_path / "hb.pcap")
    topo.stop(cap, signal.SIGINT)
    assert topo.stop(na) == 0 and topo.stop(nb) == 0
    # What reached host B from host A: every TCP and UDP checksum right.
    seen = {"TCP": 0, "UDP": 0}
    for f in rdpcap(str(tmp_path / "hb.pcap")):
        if f.haslayer(IPv6) or not f.haslayer(IP) or f[IP].src != "10.1.0.1":
            continue
        for layer in (TCP, UDP):
            if f.haslayer(layer):
                assert checksum_right(f), f"wrong checksum at the far host: {f.summary()}"
                seen[layer.__name__] += 1
    assert seen["TCP"] >= 50 and seen["UDP"] >= 200, seen
    # The nodes completed them: host A's kernel left them unfilled.
    m = re.search(r"port lan: checksums completed (\d+)", (tmp_path / "a.log").read_text())
    assert m and int(m.group(1)) >= 250, (tmp_path / "a.log").read_text()


def test_a_node_that_cannot_switch_gro_off_refuses_with_the_command(topo, espgate, tmp_path):
    ha, a, b, hb = build(topo)
    offloads_on(topo, ha, a, b, hb)
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml_of("a"))
    # Without CAP_NET_ADMIN the ethtool ioctl that sets features fails.
    r = topo.run(a, "setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin",
                 espgate, "run", "--duration", "5", "--config", str(cfg), check=False, timeout=30)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "port lan: af_packet on lan: generic-receive-offload is on and switching it off failed" in r.stderr, r.stderr
    assert "run `ethtool -K lan gro off rx off` and start again" in r.stderr, r.stderr
    assert features(topo, a, "lan")["generic-receive-offload"]


def test_a_senders_segmentation_offload_is_counted_and_named(topo, espgate, tmp_path):
    """A host whose veth has TSO on hands the node TCP frames of up to
    64 KiB that no link carries: the node cannot change the host's
    interface; it drops them, counted, and says once what to switch off."""
    ha, a, b, hb = build(topo)
    topo.run(ha, "ethtool", "-K", "eth0", "tx", "on", "tso", "on", "gso", "on")
    na = start_node(topo, espgate, a, tmp_path, "a", yaml_of("a"))
    nb = start_node(topo, espgate, b, tmp_path, "b", yaml_of("b"))
    topo.start(hb, "python3", str(HERE / "tcp_echo.py"), "server", "7001")
    wait_tcp_listening(topo, hb, 7001)
    assert wait_for(lambda: topo.run(ha, "ping", "-c1", "-W1", "10.2.0.1", check=False).returncode == 0, timeout=20)
    topo.run(ha, "timeout", "5", "python3", str(HERE / "tcp_echo.py"), "client", "10.2.0.1", "7001", "300000",
             check=False, timeout=30)
    assert topo.stop(na) == 0 and topo.stop(nb) == 0
    log_a = (tmp_path / "a.log").read_text()
    assert "a frame too long for a buffer was dropped" in log_a and "tso off gso off" in log_a, log_a
    assert log_a.count("a frame too long for a buffer was dropped") == 1, log_a
    m = re.search(r"port lan: checksums completed \d+, too long (\d+)", log_a)
    assert m and int(m.group(1)) >= 1, log_a


UNHEARD = "has not been heard in the 3.0 s since this node started"


def pair(t):
    """Nodes a and b of a pair (test_failover's configuration), each link
    a veth between them, and b's spare interface to a namespace x."""
    a, b, x = t.ns("a"), t.ns("b"), t.ns("x")
    for ifname in ("lan", "wan", "mir"):
        t.veth(a, ifname, MAC[f"a-{ifname}"], b, ifname, MAC[f"b-{ifname}"])
    t.veth(b, "spare", "02:00:00:00:02:04", x, "eth0", "02:00:00:00:09:01")
    yaml = {
        "a": pair_yaml("a", 1, 2, "10.1.0.1", "192.0.2.1", "10.1.0.2", "192.0.2.2", MAC["b-mir"], {}),
        "b": pair_yaml("b", 2, 1, "10.1.0.2", "192.0.2.2", "10.1.0.1", "192.0.2.1", MAC["a-mir"], {}),
    }
    return a, b, yaml


def test_a_peer_whose_mirror_port_is_the_wrong_interface_is_logged_within_5_s(topo, espgate, tmp_path):
    a, b, yaml = pair(topo)
    wrong = yaml["b"].replace("interface: mir }", "interface: spare }")
    assert wrong != yaml["b"]
    nb = start_node(topo, espgate, b, tmp_path, "b", wrong)
    started = time.monotonic()
    na = start_node(topo, espgate, a, tmp_path, "a", yaml["a"])
    assert wait_for(lambda: UNHEARD in (tmp_path / "a.log").read_text(), timeout=5), (tmp_path / "a.log").read_text()
    took = time.monotonic() - started
    print(f"a told the silence {took:.2f} s after its start")
    time.sleep(1)
    assert topo.stop(na) == 0 and topo.stop(nb) == 0
    log_a = (tmp_path / "a.log").read_text()
    line = next(x for x in log_a.splitlines() if UNHEARD in x)
    assert log_a.count("has not been heard") == 1, log_a
    for part in ("WARN", "the peer (node 2)", "mirror.port mirror (af_packet on mir) must be the link",
                 f"mirror.peer_mac ({MAC['b-mir']}) must be the MAC", "mirror.key must be the same",
                 "0 frames received", "refused: none"):
        assert part in line, (part, line)
    # b hears nothing on its spare interface either, and says so.
    assert "mirror.port mirror (af_packet on spare)" in (tmp_path / "b.log").read_text()


def test_a_peer_with_another_mirror_key_is_logged_as_forged_once(topo, espgate, tmp_path):
    a, b, yaml = pair(topo)
    key = re.search(r"key: (0x[0-9a-f]+)", yaml["b"].split("mirror:")[1]).group(1)
    other = yaml["b"].replace(key, key[:-2] + ("00" if key[-2:] != "00" else "11"))
    assert other != yaml["b"]
    na = start_node(topo, espgate, a, tmp_path, "a", yaml["a"])
    nb = start_node(topo, espgate, b, tmp_path, "b", other)
    assert wait_for(lambda: UNHEARD in (tmp_path / "a.log").read_text(), timeout=5), (tmp_path / "a.log").read_text()
    assert topo.stop(na) == 0 and topo.stop(nb) == 0
    log_a = (tmp_path / "a.log").read_text()
    assert log_a.count("a mirror frame was refused as forged: its MAC does not verify") == 1, log_a
    line = next(x for x in log_a.splitlines() if UNHEARD in x)
    m = re.search(r"refused: forged (\d+)", line)
    assert m and int(m.group(1)) >= 100, line
    assert re.search(r"mirror rejected: forged \d+", log_a), log_a
