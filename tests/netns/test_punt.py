"""The punt port: the kernel behind espgate answers for the node's address.

    host (10.1.0.1) -- lan [node a: espgate, AF_PACKET, punt: espgate0] wan -- far host (172.16.0.2)

The node's namespace gives its TUN device the node's unprotected address
and a route to the far network, as an operator would for an IKE daemon. A
ping from the far host to the node's address is answered by that
namespace's kernel, and a UDP datagram to port 500 reaches a socket bound
there, whose answer comes back: in through the punt device, out through
the node's port. A packet the kernel sends from an address that is not the
node's goes nowhere. Moved to a namespace of its own (where the pair's IKE
daemon would live), the device goes on working once set up there."""

import json
import pathlib
import re
import subprocess

import pytest
from topology import wait_for, wait_udp_listening

HERE = pathlib.Path(__file__).parent
NODE_WAN = "172.16.0.1"
FAR = "172.16.0.2"


def node_yaml(workers):
    return f"""node: {{ name: a }}
workers: {{ count: {workers}, idle_sleep_us: 200 }}
ports:
  - {{ name: lan, role: protected, backend: af_packet, interface: lan, address: 10.1.0.254/24 }}
  - {{ name: wan, role: unprotected, backend: af_packet, interface: wan, address: {NODE_WAN}/24 }}
punt: {{ interface: espgate0 }}
"""


def build(t):
    h, a, f = t.ns("h"), t.ns("a"), t.ns("f")
    t.veth(h, "eth0", "02:00:00:00:01:10", a, "lan", "02:00:00:00:01:01")
    t.veth(a, "wan", "02:00:00:00:01:02", f, "eth0", "02:00:00:00:02:02")
    t.host(h, "eth0", "10.1.0.1/24", "10.1.0.254")
    t.run(f, "ip", "addr", "add", f"{FAR}/24", "dev", "eth0")
    return h, a, f


def start(t, espgate, tmp, ns, workers):
    """The node in `ns`, once its punt device is up; and its control socket."""
    cfg = tmp / "a.yaml"
    cfg.write_text(node_yaml(workers))
    sock = tmp / "a.sock"
    node = t.start(ns, espgate, "run", "--config", str(cfg), "--control", str(sock), log=tmp / "a.log")
    assert wait_for(lambda: up(t, ns), timeout=20), (tmp / "a.log").read_text()
    assert "mtu 1500" in t.run(ns, "ip", "link", "show", "espgate0").stdout
    return node, sock


def up(t, ns):
    return "UP" in t.run(ns, "ip", "link", "show", "espgate0", check=False).stdout


def address(t, ns):
    """The operator's part: the node's address and a route to the far
    network on the punt device, in namespace `ns`."""
    t.run(ns, "ip", "addr", "add", f"{NODE_WAN}/32", "dev", "espgate0")
    t.run(ns, "ip", "route", "add", "172.16.0.0/24", "dev", "espgate0")


def answered(t, far, server_ns):
    """Pings from `far` to the node's address are answered, once each, and
    UDP datagrams to its port 500 reach a socket in `server_ns` and come
    back whole."""
    ok = lambda: t.run(far, "ping", "-c1", "-W1", NODE_WAN, check=False).returncode == 0  # noqa: E731
    assert wait_for(ok, timeout=20), "no answer to ping"
    ping = t.run(far, "ping", "-c", "10", "-i", "0.05", "-W", "1", NODE_WAN).stdout
    assert " 0% packet loss" in ping and "DUP" not in ping, ping
    t.start(server_ns, "python3", str(HERE / "udp_echo.py"), "server", "500")
    wait_udp_listening(t, server_ns, 500)
    out = t.run(far, "python3", str(HERE / "udp_echo.py"), "client", NODE_WAN, "500", "50", timeout=120).stdout
    m = re.search(r"sent (\d+) received (\d+) intact (\d+)", out)
    assert m and m.groups() == ("50", "50", "50"), out


def stats(espgate, sock):
    out = subprocess.run([espgate, "stats", "--json", "--control", str(sock)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["total"]


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers-fanout"])
def test_the_kernel_answers_ping_and_ike_through_the_punt_device(topo, espgate, tmp_path, workers):
    h, a, f = build(topo)
    # The node's namespace sees the ports' frames too (AF_PACKET takes a
    # copy): once its kernel holds the node's address, it must answer
    # only what comes through the punt device.
    topo.run(a, "nft", "add table inet ports")
    topo.run(a, "nft", "add chain inet ports input { type filter hook input priority 0; policy accept; }")
    topo.run(a, "nft", 'add rule inet ports input iifname { "lan", "wan" } drop')
    for port in ("lan", "wan"):
        topo.run(a, "sysctl", "-qw", f"net.ipv4.conf.{port}.arp_ignore=1")
    node, sock = start(topo, espgate, tmp_path, a, workers)
    address(topo, a)
    answered(topo, f, a)

    # The kernel sending from an address that is not the node's (a raw
    # socket writes the source it likes): dropped, never on the wire.
    before = stats(espgate, sock)["drops"]["punt_foreign"]
    spoof = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
udp = bytes.fromhex("01f401f4000c0000") + b"spof"
ip = bytes.fromhex("45000020000040004011 0000 ac10004d ac100002".replace(" ", ""))
for _ in range(3):
    s.sendto(ip + udp, ("{FAR}", 0))
"""
    topo.run(a, "python3", "-c", spoof)
    foreign = lambda: stats(espgate, sock)["drops"]["punt_foreign"] >= before + 3  # noqa: E731
    assert wait_for(foreign, timeout=10), stats(espgate, sock)

    total = stats(espgate, sock)
    # Every ping and datagram went in and came back (and the first
    # pings); ARP was the node's.
    assert total["punted"] >= 60 and total["punt_sent"] >= 60, total
    assert total["drops"]["ike"] == total["drops"]["local"] == 0, total
    assert total["drops"]["punt_bad"] == total["drops"]["punt_full"] == total["drops"]["punt_down"] == 0, total
    assert topo.stop(node) == 0
    log = (tmp_path / "a.log").read_text()
    assert re.search(r"punted \d+ punt_sent \d+", log), log


def test_the_punt_device_works_from_the_ike_daemon_s_namespace(topo, espgate, tmp_path):
    h, a, f = build(topo)
    ike = topo.ns("ike")
    node, sock = start(topo, espgate, tmp_path, a, 1)
    # The move takes the link down: what comes for the node meanwhile is
    # refused by the device.
    topo.run(a, "ip", "link", "set", "espgate0", "netns", ike)
    assert not up(topo, ike)
    topo.run(f, "ping", "-c", "3", "-i", "0.05", "-W", "1", NODE_WAN, check=False)
    assert wait_for(lambda: stats(espgate, sock)["drops"]["punt_down"] >= 3, timeout=10), stats(espgate, sock)
    topo.run(ike, "ip", "link", "set", "espgate0", "up")
    address(topo, ike)
    # The node's own namespace holds no address of the node's: nothing
    # there to keep from answering.
    answered(topo, f, ike)
    total = stats(espgate, sock)
    assert total["punted"] >= 60 and total["punt_sent"] >= 60, total
    assert topo.stop(node) == 0
