"""IKEv2 through strongSwan: espgate as the ESP data plane of charon.

    host L (10.1.0.1) -- node A (espgate) ==== ESP-in-UDP ==== R -- host R (10.2.0.1)
                            | espgate0 (punt)               charon (kernel-libipsec)
                          IKE host: charon (kernel-espgate)

Node A's charon negotiates with R's and installs the CHILD_SAs and
policies in espgate through the kernel-espgate plugin. It runs on a host
of its own, as a pair's charon does: IKE reaches it through espgate's
punt device, moved into that host's namespace (A's address is espgate's,
not a kernel's; the node's namespace holds none). This kernel has no ESP, so R runs charon with kernel-libipsec
(userspace ESP through a TUN device), which does ESP-in-UDP only: R forces
UDP encapsulation. Traffic between the hosts is checked byte for byte,
and swanctl on A shows espgate's counters."""

import json
import pathlib
import re
import shutil
import signal
import time

import pytest
from ike import PLUGIN, REPO, Charon, connection, pki_certs
from test_gateway import exchange
from topology import control_request, wait_file_settles, wait_for, wait_udp_listening

HERE = pathlib.Path(__file__).parent

NODE = """node: {{ name: {name} }}
workers: {{ count: 1, idle_sleep_us: 200 }}
ports:
  - {{ name: lan, role: protected, backend: af_packet, interface: lan, address: {lan} }}
  - {{ name: wan, role: unprotected, backend: af_packet, interface: wan, address: {wan}/24 }}
punt: {{ interface: espgate0 }}
"""


@pytest.fixture
def plugin():
    if not PLUGIN.exists():
        pytest.fail(f"{PLUGIN} is missing: run scripts/build-kernel-espgate (scripts/test does)")


def build(t):
    hl, a, r, hr = t.ns("hl"), t.ns("a"), t.ns("r"), t.ns("hr")
    t.ns("ike")
    t.veth(hl, "eth0", "02:00:00:00:01:10", a, "lan", "02:00:00:00:01:01")
    t.veth(a, "wan", "02:00:00:00:01:02", r, "wan", "02:00:00:00:02:02")
    t.veth(r, "lan", "02:00:00:00:02:01", hr, "eth0", "02:00:00:00:02:10")
    t.host(hl, "eth0", "10.1.0.1/24", "10.1.0.254")
    t.host(hr, "eth0", "10.2.0.1/24", "10.2.0.254")
    # kernel-libipsec reads at most 1400 bytes from its TUN device (the
    # MTU it gave it, whatever the device's MTU becomes): host R sends
    # into the tunnel in fragments of that size from the start.
    t.run(hr, "ip", "route", "add", "10.1.0.0/24", "via", "10.2.0.254", "mtu", "1400")
    t.run(r, "ip", "addr", "add", "172.16.0.2/24", "dev", "wan")
    t.run(r, "ip", "addr", "add", "10.2.0.254/24", "dev", "lan")
    t.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return hl, a, r, hr


def start_node(t, espgate, ns, ike, tmp, name, lan, wan, extra=("--no-state",)):
    """An espgate node with its punt device moved to IKE host `ike` (a
    namespace of the topology) and given the node's WAN address there;
    `extra`: more arguments of `espgate run`."""
    sock = tmp / f"{name}.sock"
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(NODE.format(name=name, lan=lan, wan=wan))
    # --no-state: with a state directory, a new inbound SA hit at once by a
    # burst stalls at its first durable marks while the disk is slow to
    # sync (seen here under load: 17 of 1000 refused); that is the state
    # directory's, not IKE's, and these tests are about IKE.
    node = t.start(ns, espgate, "run", "--config", str(cfg), "--control", str(sock), *extra,
                   log=tmp / f"{name}.log")
    assert wait_for(lambda: t.run(ns, "ip", "link", "show", "espgate0", check=False).returncode == 0,
                    timeout=20), (tmp / f"{name}.log").read_text()
    t.run(ns, "ip", "link", "set", "espgate0", "netns", ike)
    t.run(ike, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    t.run(ike, "ip", "addr", "add", f"{wan}/32", "dev", "espgate0")
    t.run(ike, "ip", "link", "set", "espgate0", "up")
    t.run(ike, "ip", "route", "add", "172.16.0.0/24", "dev", "espgate0", "src", wan)
    return node, sock


def start_node_a(t, espgate, ns, tmp, extra=("--no-state",)):
    """Node A (10.1.0.254, 172.16.0.1), its IKE host the namespace `ike`."""
    return start_node(t, espgate, ns, f"{t.prefix}ike", tmp, "a", "10.1.0.254/24", "172.16.0.1", extra)


def sa_counters(sock):
    """espgate's SAs: {(spi, direction): (packets, bytes)}."""
    sas = control_request(sock, '{"op":"sa_list"}')["sas"]
    return {(s["spi"], s["direction"]): (s["packets"], s["bytes"]) for s in sas}


def child_sa(listing):
    """The in and out SPIs and byte counts of the CHILD_SA `net` in a
    `swanctl --list-sas` listing."""
    m_in = re.search(r"in\s+([0-9a-f]{8})(?: \([^)]*\))?,\s+(\d+) bytes", listing)
    m_out = re.search(r"out\s+([0-9a-f]{8})(?: \([^)]*\))?,\s+(\d+) bytes", listing)
    assert m_in and m_out, listing
    return (int(m_in.group(1), 16), int(m_in.group(2))), (int(m_out.group(1), 16), int(m_out.group(2)))


@pytest.mark.parametrize("auth,esp", [("psk", "aes128gcm16"), ("pubkey", "aes256gcm16")],
                         ids=["psk-aes128gcm16", "certificates-aes256gcm16"])
def test_charon_drives_espgate_against_a_libipsec_peer(topo, espgate, tmp_path, plugin, auth, esp):
    hl, a, r, hr = build(topo)
    _, sock = start_node_a(topo, espgate, a, tmp_path)
    certs = pki_certs(tmp_path, ["a", "r"]) if auth == "pubkey" else {"a": None, "r": None}
    ca = Charon(topo, f"{topo.prefix}ike", tmp_path, "a", "espgate", socket=sock).start()
    cr = Charon(topo, r, tmp_path, "r", "libipsec").start()
    ca.load(connection(("a", "172.16.0.1"), ("r", "172.16.0.2"), "10.1.0.0/24", "10.2.0.0/24",
                       esp=esp, auth=auth, certs=certs["a"]), certs["a"])
    cr.load(connection(("r", "172.16.0.2"), ("a", "172.16.0.1"), "10.2.0.0/24", "10.1.0.0/24",
                       esp=esp, auth=auth, certs=certs["r"], encap=True), certs["r"])
    out = cr.swanctl("--initiate", "--child", "net", check=False)
    assert "initiate completed successfully" in out, out + ca.text()
    try:
        exchange(topo, hl, hr, count=1000)
    except AssertionError:
        print(control_request(sock, '{"op":"stats"}')["total"])
        print(control_request(sock, '{"op":"sa_list"}'))
        print(cr.swanctl("--list-sas"))
        raise
    listing = ca.swanctl("--list-sas")
    assert "ESTABLISHED" in listing and "INSTALLED" in listing, listing
    assert esp.replace("aes", "AES_GCM_16-").replace("gcm16", "") in listing, listing
    (spi_in, bytes_in), (spi_out, bytes_out) = child_sa(listing)
    ours = sa_counters(sock)
    # charon's counters are espgate's: what sa_list says of the same SAs.
    assert ours[(spi_in, "inbound")][1] == bytes_in > 0, (ours, listing)
    assert ours[(spi_out, "outbound")][1] == bytes_out > 0, (ours, listing)
    # The far end saw the same CHILD_SA, its SPIs the other way round.
    (r_in, _), (r_out, _) = child_sa(cr.swanctl("--list-sas"))
    assert (r_in, r_out) == (spi_out, spi_in)


def esp_in_udp(path, sender=lambda f: f["IP"].src):
    """(sender, SPI, sequence number) of every ESP-in-UDP packet in a
    capture (UDP 4500 without the non-ESP marker); the sender is the
    source address, or what `sender` reads from the frame."""
    from scapy.all import UDP, rdpcap
    out = []
    for f in rdpcap(str(path)):
        if f.haslayer(UDP) and f[UDP].dport == 4500:
            p = bytes(f[UDP].payload)
            if len(p) >= 8 and p[:4] != b"\0\0\0\0":
                out.append((sender(f), int.from_bytes(p[:4], "big"), int.from_bytes(p[4:8], "big")))
    return out


def test_rekeys_by_time_and_by_volume_lose_nothing_and_reuse_no_number(topo, espgate, tmp_path, plugin):
    """Node A's charon rekeys the CHILD_SA every 3 s (espgate's soft time
    limit on the inbound SA tells it: without jitter charon gives the
    outbound SA no soft time limit) and once more when a burst crosses the
    outbound SA's soft byte limit, under a steady flow of 1000 datagrams/s:
    nothing lost, and no (SPI, sequence number) twice on the wire.
    (rand_bytes = 0: charon subtracts its byte jitter, by default up to
    life_bytes - rekey_bytes, from rekey_bytes, and a jitter above it
    wraps around; espgate refuses such an SA, a soft limit above the hard
    one, naming it.)"""
    hl, a, r, hr = build(topo)
    _, sock = start_node_a(topo, espgate, a, tmp_path)
    ca = Charon(topo, f"{topo.prefix}ike", tmp_path, "a", "espgate", socket=sock).start()
    cr = Charon(topo, r, tmp_path, "r", "libipsec").start()
    ca.load(connection(("a", "172.16.0.1"), ("r", "172.16.0.2"), "10.1.0.0/24", "10.2.0.0/24",
                       extra_child="rekey_time = 3s\n        life_time = 6s\n        rand_time = 0s\n"
                                   "        rekey_bytes = 1500000\n        life_bytes = 20000000\n        rand_bytes = 0"))
    cr.load(connection(("r", "172.16.0.2"), ("a", "172.16.0.1"), "10.2.0.0/24", "10.1.0.0/24", encap=True,
                       extra_child="rekey_time = 1h"))
    assert "initiate completed successfully" in cr.swanctl("--initiate", "--child", "net")
    cap_path = tmp_path / "wan.pcap"
    cap = topo.start(a, "dumpcap", "-q", "-P", "-i", "wan", "-w", str(cap_path))
    assert wait_for(lambda: cap_path.exists() and cap_path.stat().st_size >= 24), "capture did not start"
    topo.start(hr, "python3", str(HERE / "flow.py"), "echo", "7000")
    wait_udp_listening(topo, hr, 7000)
    assert wait_for(lambda: topo.run(hl, "ping", "-c1", "-W1", "10.2.0.1", check=False).returncode == 0,
                    timeout=20), "no ping through the tunnel"
    out = tmp_path / "flow.json"
    stream = topo.start(hl, "python3", str(HERE / "flow.py"), "stream", "10.2.0.1", "7000", "22", str(out))
    time.sleep(10)
    # The burst: 1600 datagrams of 1200 bytes in about a second, past the
    # soft byte limit (1.5 MB) of whichever SA carries it.
    topo.run(hl, "python3", "-c",
             "import socket,time\n"
             "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "for k in range(1600):\n"
             "    s.sendto(bytes(1200),('10.2.0.1',9)); time.sleep(0.0006)\n")
    assert stream.wait(60) == 0
    wait_file_settles(cap_path)
    topo.stop(cap, signal.SIGINT)
    flow = json.loads(out.read_text())
    lost = len(flow["sent"]) - len(flow["echoed"])
    assert lost == 0 and flow["duplicates"] == 0, f"{lost} of {len(flow['sent'])} lost, {flow['duplicates']} duplicated"
    # Rekeys: the soft events espgate told, by what crossed the limit.
    log = (tmp_path / "a.log").read_text()
    by_time = set(re.findall(r'soft time limit passed spi="?(0x[0-9a-f]+)"? direction=inbound', log))
    by_volume = set(re.findall(r"sa_event spi=(0x[0-9a-f]+) dir=outbound event=soft_lifetime", log))
    assert len(by_time) >= 5, log
    assert len(by_volume) >= 1, log
    rekeys = len(re.findall(r"generating CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\)", ca.text()))
    assert rekeys >= 6, ca.text()
    # No (SPI, sequence number) twice from either end.
    packets = esp_in_udp(cap_path)
    assert len(packets) > 20000, len(packets)
    seen = set()
    for p in packets:
        assert p not in seen, f"(SPI, seq) used twice: {p}"
        seen.add(p)
    assert len({spi for src, spi, _ in packets if src == "172.16.0.1"}) >= 7


def two_children(local, remote, local_nets, remote_nets, encap=False):
    """A connection with CHILD_SAs `net` (AES-128-GCM-16, the first pair
    of networks) and `icv12` (AES-128-GCM with a 12-byte ICV, which espgate
    does not do, the second pair)."""
    conf = connection(local, remote, local_nets[0], remote_nets[0], encap=encap)
    icv12 = f"""      icv12 {{
        local_ts = {local_nets[1]}
        remote_ts = {remote_nets[1]}
        esp_proposals = aes128gcm12
      }}
"""
    return conf.replace("    children {\n", "    children {\n" + icv12, 1)


def test_what_espgate_refuses_fails_clearly_in_charon_and_changes_nothing(topo, espgate, tmp_path, plugin):
    hl, a, r, hr = build(topo)
    node, sock = start_node_a(topo, espgate, a, tmp_path)
    ca = Charon(topo, f"{topo.prefix}ike", tmp_path, "a", "espgate", socket=sock).start()
    cr = Charon(topo, r, tmp_path, "r", "libipsec").start()
    # R's side is the whole /24 in both (kernel-libipsec routes from an
    # address of R inside it).
    ca.load(two_children(("a", "172.16.0.1"), ("r", "172.16.0.2"),
                         ["10.1.0.0/25", "10.1.0.128/25"], ["10.2.0.0/24", "10.2.0.0/24"]))
    cr.load(two_children(("r", "172.16.0.2"), ("a", "172.16.0.1"),
                         ["10.2.0.0/24", "10.2.0.0/24"], ["10.1.0.0/25", "10.1.0.128/25"], encap=True))
    export = lambda: control_request(sock, '{"op":"sa_export"}')["yaml"]  # noqa: E731
    # An algorithm espgate lacks: the CHILD_SA fails, naming it.
    out = cr.swanctl("--initiate", "--child", "icv12", check=False)
    assert "initiate completed successfully" not in out, out
    assert wait_for(lambda: "only AES-GCM with a 16-byte ICV" in ca.text()), ca.text()
    assert sa_counters(sock) == {}, export()
    assert "direction" not in export(), export()
    # A CHILD_SA espgate takes, then its outbound SA deleted behind
    # charon's back: charon's delete of it is refused by name, and the
    # rest of the CHILD_SA goes.
    assert "initiate completed successfully" in cr.swanctl("--initiate", "--child", "net")
    (spi_in, _), (spi_out, _) = child_sa(ca.swanctl("--list-sas"))
    assert set(sa_counters(sock)) == {(spi_in, "inbound"), (spi_out, "outbound")}
    assert control_request(sock, json.dumps({"op": "sa_del", "spi": spi_out, "direction": "outbound"}))["ok"]
    ca.swanctl("--terminate", "--child", "net")
    assert wait_for(lambda: f"del_sa refused: no outbound SA {spi_out:#x}" in ca.text()), ca.text()
    assert wait_for(lambda: sa_counters(sock) == {}, timeout=10), sa_counters(sock)
    # The node gone: charon's requests fail, naming the socket. (IKE
    # went with the node's punt device: the IKE_SA is ended locally.)
    assert "initiate completed successfully" in cr.swanctl("--initiate", "--child", "net")
    topo.stop(node)
    ca.swanctl("--terminate", "--ike", "gw", "--force", "--timeout", "5", check=False)
    assert wait_for(lambda: re.search(rf"espgate: del_sa failed: control socket {re.escape(str(sock))}: ",
                                      ca.text())), ca.text()


def test_the_shipped_examples_load_into_charon(topo, tmp_path, plugin):
    """conf/ike: charon starts on strongswan.conf (every test's node A
    charon does), and takes both swanctl examples, the certificates one
    with files named as its comment makes them."""
    ca = Charon(topo, topo.ns("ike"), tmp_path, "a", "espgate", socket=tmp_path / "a.sock").start()
    ca.install(pki_certs(tmp_path, ["a"])["a"])
    for name in ("swanctl-psk.conf", "swanctl-certs.conf"):
        # swanctl reads credentials from the folders beside the file.
        shutil.copy(REPO / "conf" / "ike" / name, ca.dir / name)
        out = ca.swanctl("--load-all", "--file", str(ca.dir / name))
        assert "successfully loaded 1 connections" in out, out
    assert "loaded plugins: charon" in ca.text() and "kernel-espgate" in ca.text()


def test_two_espgate_nodes_with_esn_and_a_trap_brought_up_by_the_first_packet(topo, espgate, tmp_path, plugin):
    """espgate on both ends, each driven by its own charon: plain ESP (no
    UDP encapsulation) with extended sequence numbers, and on A a trap
    policy (start_action = trap): the first packet from host L matches
    espgate's trap rule, which asks charon for the CHILD_SA (an acquire);
    the tunnel comes up and carries the rest."""
    hl, a, b, hr = topo.ns("hl"), topo.ns("a"), topo.ns("b"), topo.ns("hr")
    ike_a, ike_b = topo.ns("ike-a"), topo.ns("ike-b")
    topo.veth(hl, "eth0", "02:00:00:00:01:10", a, "lan", "02:00:00:00:01:01")
    topo.veth(a, "wan", "02:00:00:00:01:02", b, "wan", "02:00:00:00:02:02")
    topo.veth(b, "lan", "02:00:00:00:02:01", hr, "eth0", "02:00:00:00:02:10")
    topo.host(hl, "eth0", "10.1.0.1/24", "10.1.0.254")
    topo.host(hr, "eth0", "10.2.0.1/24", "10.2.0.254")
    _, sock_a = start_node(topo, espgate, a, ike_a, tmp_path, "a", "10.1.0.254/24", "172.16.0.1")
    _, sock_b = start_node(topo, espgate, b, ike_b, tmp_path, "b", "10.2.0.254/24", "172.16.0.2")
    ca = Charon(topo, ike_a, tmp_path, "a", "espgate", socket=sock_a).start()
    cb = Charon(topo, ike_b, tmp_path, "b", "espgate", socket=sock_b).start()
    esp = "aes256gcm16-esn"
    ca.load(connection(("a", "172.16.0.1"), ("b", "172.16.0.2"), "10.1.0.0/24", "10.2.0.0/24", esp=esp,
                       extra_child="start_action = trap"))
    cb.load(connection(("b", "172.16.0.2"), ("a", "172.16.0.1"), "10.2.0.0/24", "10.1.0.0/24", esp=esp))
    assert "ESTABLISHED" not in ca.swanctl("--list-sas")
    cap_path = tmp_path / "wan.pcap"
    cap = topo.start(a, "dumpcap", "-q", "-P", "-i", "wan", "-w", str(cap_path))
    assert wait_for(lambda: cap_path.exists() and cap_path.stat().st_size >= 24), "capture did not start"
    exchange(topo, hl, hr, count=1000)
    assert wait_for(lambda: "espgate: acquire for 10.1.0.1 === 10.2.0.1" in ca.text()), ca.text()
    listing = ca.swanctl("--list-sas")
    assert "AES_GCM_16-256/ESN" in listing, listing
    (spi_in, _), (spi_out, _) = child_sa(listing)
    for sock in (sock_a, sock_b):
        sas = control_request(sock, '{"op":"sa_list"}')["sas"]
        assert sas and all(s["esn"] for s in sas), sas
    stats = control_request(sock_a, '{"op":"stats"}')["total"]
    assert stats["drops"]["trap"] >= 1, stats
    wait_file_settles(cap_path)
    topo.stop(cap, signal.SIGINT)
    # On the wire: IKE (UDP 500, then 4500 with the non-ESP marker) and
    # plain ESP, no (SPI, sequence number) twice.
    from scapy.all import ESP, IP, UDP, rdpcap
    seen, esp_frames = set(), 0
    for f in rdpcap(str(cap_path)):
        if not f.haslayer(IP):
            continue
        if f.haslayer(UDP):
            ike = {f[UDP].sport, f[UDP].dport} in ({500}, {4500}) and (
                f[UDP].dport == 500 or bytes(f[UDP].payload)[:4] == b"\0\0\0\0")
            assert ike, f"not IKE: {f.summary()}"
            continue
        assert f[IP].proto == 50, f"plaintext on the ESP link: {f.summary()}"
        key = (f[IP].src, f[ESP].spi, f[ESP].seq)
        assert key not in seen, f"(SPI, seq) used twice: {key}"
        seen.add(key)
        esp_frames += 1
    assert esp_frames >= 2000, esp_frames
    assert {spi for _, spi, _ in seen} == {spi_in, spi_out}
