"""The pair under IKE: one charon drives both nodes through `espgate host`.

    h1 10.1.0.10 -- br lan --+-- a (10.1.0.1 | 192.0.2.1) --+
                             |          | br mir |           +-- br wan -- r 192.0.2.100 -- h3 10.3.0.10
                             +-- b (10.1.0.2 | 192.0.2.2) --+            charon (kernel-libipsec)
                                   pa   pb (punt devices)
                                    \\  /
                IKE host: charon (kernel-espgate) -> espgate host --control -> a and b

The IKE host holds the pair's addresses on its loopback device, and both
nodes' punt devices; its route to the far end goes through the punt device
of the node that holds a's address: a's while a runs, b's after a failed
(the host's `on_failure`), a's again when a is back (`on_return`). charon's
plugin talks to the host's socket: every CHILD_SA goes to both nodes, its
home a (its local address is a's). A kill -9 of a under traffic: b carries
the CHILD_SA on with the same SPIs, charon's next rekey (espgate's soft
time event, from b) lands on b, and a restarted gets everything back;
no (SPI, sequence number) twice on the wire."""

import pathlib
import re
import signal
import time

from ike import Charon, connection
from test_failover import flow, flowing_at_end, resumed_after, start_capture, stop_capture
from test_ike import esp_in_udp, plugin  # noqa: F401 (plugin: a fixture)
from topology import control_request, wait_for, wait_udp_listening

HERE = pathlib.Path(__file__).parent
MAC = {
    "a-lan": "02:00:00:00:01:01", "a-wan": "02:00:00:00:01:02", "a-mir": "02:00:00:00:01:03",
    "b-lan": "02:00:00:00:02:01", "b-wan": "02:00:00:00:02:02", "b-mir": "02:00:00:00:02:03",
    "r-wan": "02:00:00:00:03:02", "r-lan": "02:00:00:00:03:01",
    "h1": "02:00:00:00:10:01", "h3": "02:00:00:00:30:01",
}


def node_yaml(name, me, peer, lan, wan, peer_lan, peer_wan, peer_mir_mac):
    """A node with no SA: they all come from charon, through the host."""
    return (f"node: {{ name: {name} }}\n"
            "workers: { count: 1, idle_sleep_us: 100 }\n"
            "ports:\n"
            f"  - {{ name: lan, role: protected, backend: af_packet, interface: lan, address: {lan}/24 }}\n"
            f"  - {{ name: wan, role: unprotected, backend: af_packet, interface: wan, address: {wan}/24 }}\n"
            f"punt: {{ interface: p{name} }}\n"
            "mirror:\n"
            f"  node: {me}\n  peer: {peer}\n"
            "  key: 0x6d6972726f72206c696e6b206b6579206f6620746865206e65746e73207061\n"
            "  port: { name: mirror, backend: af_packet, interface: mir }\n"
            f"  peer_mac: {peer_mir_mac}\n"
            f"  peer_addresses: [{peer_lan}, {peer_wan}]\n"
            "  inbound_interval: 64\n  takeover: manual\n  failback: manual\n")


class IkePair:
    """The topology above with both nodes up and synchronised, their
    punt devices in the IKE host, and `espgate host --control` running:
    charon's plugin is to use `self.socks["host"]`. `extra`: more
    arguments of the nodes' `espgate run`."""

    def __init__(self, topo, espgate, tmp_path, extra=("--no-state",)):
        self.espgate, self.tmp, self.extra = espgate, tmp_path, extra
        self.t = t = topo
        sw, h1, h3, a, b, r, ike = (t.ns(n) for n in ("sw", "h1", "h3", "a", "b", "r", "ike"))
        self.sw, self.h1, self.h3, self.a, self.b, self.r, self.ike = sw, h1, h3, a, b, r, ike
        for br in ("brlan", "brwan", "brmir"):
            t.run(sw, "ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            t.run(sw, "ip", "link", "set", br, "up")
        n = iter(range(1, 100))

        def port(ns, ifname, mac, swif, br):
            t.veth(ns, ifname, mac, sw, swif, f"02:00:00:00:ff:{next(n):02x}")
            t.run(sw, "ip", "link", "set", swif, "master", br)

        port(h1, "eth0", MAC["h1"], "l-h1", "brlan")
        port(a, "lan", MAC["a-lan"], "l-a", "brlan")
        port(b, "lan", MAC["b-lan"], "l-b", "brlan")
        port(a, "wan", MAC["a-wan"], "w-a", "brwan")
        port(b, "wan", MAC["b-wan"], "w-b", "brwan")
        port(r, "wan", MAC["r-wan"], "w-r", "brwan")
        port(a, "mir", MAC["a-mir"], "m-a", "brmir")
        port(b, "mir", MAC["b-mir"], "m-b", "brmir")
        t.veth(r, "lan", MAC["r-lan"], h3, "eth0", MAC["h3"])
        t.host(h1, "eth0", "10.1.0.10/24", "10.1.0.1")
        t.host(h3, "eth0", "10.3.0.10/24", "10.3.0.254")
        # kernel-libipsec reads at most 1400 bytes from its TUN device.
        t.run(h3, "ip", "route", "replace", "10.1.0.0/24", "via", "10.3.0.254", "mtu", "1400")
        t.run(r, "ip", "addr", "add", "192.0.2.100/24", "dev", "wan")
        t.run(r, "ip", "addr", "add", "10.3.0.254/24", "dev", "lan")
        t.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The IKE host: the pair's addresses on its loopback device (this
        # kernel has no dummy devices), not on a punt device, which goes with
        # its node.
        for addr in ("192.0.2.1/32", "192.0.2.2/32"):
            t.run(ike, "ip", "addr", "add", addr, "dev", "lo")

        self.socks = socks = {x: tmp_path / f"{x}.sock" for x in ("a", "b", "host")}
        (tmp_path / "a.yaml").write_text(node_yaml("a", 1, 2, "10.1.0.1", "192.0.2.1", "10.1.0.2", "192.0.2.2",
                                                   MAC["b-mir"]))
        (tmp_path / "b.yaml").write_text(node_yaml("b", 2, 1, "10.1.0.2", "192.0.2.2", "10.1.0.1", "192.0.2.1",
                                                   MAC["a-mir"]))

        def route_via(dev):
            return ["ip", "-n", ike, "route", "replace", "192.0.2.100/32", "dev", dev, "src", "192.0.2.1"]

        def adopt(name):
            """Moves node `name`'s punt device into the IKE host (a new life
            makes a new one) and routes the far end through it."""
            return ["sh", "-c", f"ip -n {t.prefix}{name} link set p{name} netns {ike}; "
                                f"ip -n {ike} link set p{name} up; " + " ".join(route_via(f"p{name}"))]

        def flow_list(cmd):
            return "[" + ", ".join(f'"{c}"' for c in cmd) + "]"

        (tmp_path / "host.yaml").write_text(
            "host: { poll_ms: 20, dead_after: 3 }\n"
            "nodes:\n"
            f"  - name: a\n    control: {socks['a']}\n    config: a.yaml\n"
            f"    on_failure: [{flow_list(route_via('pb'))}]\n"
            f"    on_return: [{flow_list(adopt('a'))}]\n"
            f"  - name: b\n    control: {socks['b']}\n    config: b.yaml\n")
        # --no-state by default: see test_ike.py (a new inbound SA under an
        # immediate burst waits for its first durable marks while the disk
        # is slow).
        self.procs = {n: self.start(n, f"{n}.log") for n in ("a", "b")}
        self.host = t.start(sw, espgate, "host", "--config", str(tmp_path / "host.yaml"),
                            "--control", str(socks["host"]), log=tmp_path / "host.log")

        log = self.log
        assert wait_for(lambda: "synced" in log("a.log") and "synced" in log("b.log"), timeout=20), log("host.log")
        for name in ("a", "b"):
            assert wait_for(lambda: t.run(f"{t.prefix}{name}", "ip", "link", "show", f"p{name}",
                                          check=False).returncode == 0, timeout=10)
            t.run(f"{t.prefix}{name}", "ip", "link", "set", f"p{name}", "netns", ike)
            t.run(ike, "ip", "link", "set", f"p{name}", "up")
        t.run(ike, "ip", *route_via("pa")[3:])

    def start(self, name, logname):
        """Starts a life of node `name`, waiting for the host to configure it."""
        ns = self.a if name == "a" else self.b
        return self.t.start(ns, self.espgate, "run", "--control", str(self.socks[name]), *self.extra,
                            log=self.tmp / logname)

    def log(self, name):
        return (self.tmp / name).read_text()


def test_a_kill_of_the_home_node_under_ike_keeps_the_child_sa_and_the_next_rekey_lands_on_the_survivor(
        topo, espgate, tmp_path, plugin, capsys):  # noqa: F811 (the fixture)
    p = IkePair(topo, espgate, tmp_path)
    t, ike, r, h1, h3, sw, socks, log = p.t, p.ike, p.r, p.h1, p.h3, p.sw, p.socks, p.log
    ca = Charon(t, ike, tmp_path, "pair", "espgate", socket=socks["host"]).start()
    cr = Charon(t, r, tmp_path, "r", "libipsec").start()
    ca.load(connection(("pair", "192.0.2.1"), ("r", "192.0.2.100"), "10.1.0.0/24", "10.3.0.0/24",
                       extra_child="rekey_time = 8s\n        life_time = 30s\n        rand_time = 0s"))
    cr.load(connection(("r", "192.0.2.100"), ("pair", "192.0.2.1"), "10.3.0.0/24", "10.1.0.0/24", encap=True,
                       extra_child="rekey_time = 1h"))
    cap_path = tmp_path / "wan.pcap"
    cap = start_capture(t, sw, "w-r", cap_path)
    out = cr.swanctl("--initiate", "--child", "net", check=False)
    assert "initiate completed successfully" in out, out + ca.text() + log("host.log")
    established = time.time()
    sas = {x: control_request(socks[x], '{"op":"sa_list"}')["sas"] for x in ("a", "b")}
    assert {(s["spi"], s["direction"]) for s in sas["a"]} == {(s["spi"], s["direction"]) for s in sas["b"]}, sas
    assert len(sas["a"]) == 2, sas

    t.start(h3, "python3", str(HERE / "flow.py"), "echo", "7000")
    wait_udp_listening(t, h3, 7000)
    stream = t.start(h1, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", "24",
                     str(tmp_path / "h1.json"))
    time.sleep(2.5)
    kill = time.time()
    t.stop(p.procs["a"], signal.SIGKILL)
    assert wait_for(lambda: "b fence: ok" in log("host.log"), timeout=10), log("host.log")
    # The rekey at 8 s comes while a is down; a comes back after it.
    time.sleep(max(0.0, established + 10.5 - time.time()))
    restart = time.time()
    p.start("a", "a2.log")
    assert wait_for(lambda: "b hand_back: ok" in log("host.log"), timeout=30), log("host.log")
    assert stream.wait(timeout=60) == 0
    time.sleep(0.5)
    stop_capture(t, cap, cap_path)
    t.stop(p.host)

    frames = esp_in_udp(cap_path, sender=lambda f: f.src)
    ours = [(mac, spi, seq) for mac, spi, seq in frames if mac in (MAC["a-wan"], MAC["b-wan"])]
    pairs = [(spi, seq) for _, spi, seq in frames]
    reused = len(pairs) - len(set(pairs))
    # SPIs by who sent them, in order of first use.
    first_by = {}
    for mac, spi, _ in ours:
        first_by.setdefault(spi, "a" if mac == MAC["a-wan"] else "b")
    spis_a1 = [spi for spi, who in first_by.items() if who == "a"]
    b_frames = [spi for mac, spi, _ in ours if mac == MAC["b-wan"]]
    s1, e1 = flow(tmp_path / "h1.json")
    back, lost = resumed_after(s1, e1, kill)
    rekeys = len(re.findall(r"generating CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\)", ca.text()))
    hostlog = log("host.log")
    with capsys.disabled():
        print(f"\npair under IKE: outbound SPIs first sent by a: {[hex(s) for s in spis_a1]}, "
              f"by b: {[hex(s) for s, w in first_by.items() if w == 'b']}; "
              f"h1's first echo {1e3 * (back - kill):.0f} ms after the kill, {lost} lost; "
              f"{len(s1) - len(e1)} of {len(s1)} lost in all; rekeys {rekeys}; "
              f"ESP frames {len(frames)}, (SPI, seq) twice: {reused}; "
              f"restart {restart - kill:.1f} s after the kill\n")
    assert reused == 0, "an (SPI, sequence number) pair was used twice"
    # The CHILD_SA of before the kill went on at b without renegotiation.
    assert spis_a1 and spis_a1[0] in b_frames, (first_by, hostlog)
    # charon's rekey while a was down: new SPIs, first sent by b.
    assert rekeys >= 1, ca.text()
    assert any(w == "b" for w in first_by.values()), first_by
    # And a got everything back: it sends again, on an SPI of the rekey.
    late_a = {spi for mac, spi, _ in ours[-200:] if mac == MAC["a-wan"]}
    assert late_a and late_a.isdisjoint({spis_a1[0]}), (late_a, first_by)
    assert back is not None, "h1's traffic never resumed"
    assert flowing_at_end(s1, e1) >= 0.99, f"h1's traffic does not flow at the end: {flowing_at_end(s1, e1):.1%}"
    for line in ("a failed", "b take_over: ok", "a gets the SAs b runs", "a back and synchronised"):
        assert line in hostlog, f"{line!r} missing from the host's log:\n{hostlog}"
