"""Chaos rounds against the pair of test_failover's topology, with traffic
both ways throughout and every ESP frame on the remote gateway's link
captured. Each round does one random thing: kill -9 a node and restart it
at once or after a delay, stop one gracefully and restart it, cut the
mirror link for a while (split brain), drop a share of mirror frames
(nftables `numgen random`) for the following rounds, or replay recorded
ESP frames at the pair. A node is killed only while the other runs and is
synchronised: the guarantee needs one node's memory to survive each
failure (README, "The limits"). Or it reorders and delays the mirror
link's frames for a while. At the end the checker proves:

- no nonce used twice: every (SPI, 64-bit sequence number) the pair sent
  (read from the GCM IV, which is the full sequence number, RFC 4106) is
  unique across the whole run;
- no replay accepted beyond the documented bound: with strict inbound
  takeover the bound is zero, so no datagram reaches a host twice;
- no SA lost: once the pair has healed, every SA is active on exactly one
  node, both nodes agree on its owner, and traffic flows.

Reordering: this kernel has no netem, so for a reorder round the mirror
link's bridge gives way to a relay (relay.py) that delays frames and lets
some overtake others.

    python3 tests/netns/chaos.py ROUNDS [--seed N]     (root; scripts/chaos)
"""

import json
import os
import pathlib
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_failover import HERE, MAC, Pair, flow  # noqa: E402
from topology import Topology, prefix, wait_for  # noqa: E402

REPO = HERE.parents[1]
ACTIONS = ["kill", "kill_delayed", "restart", "cut", "loss", "replay", "reorder"]
RATE = 200


def pcap_frames(pcap):
    """The frames of a classic pcap file, read with a small parser (hundreds
    of thousands of frames)."""
    data = pathlib.Path(pcap).read_bytes()
    out, at = [], 24
    while at + 16 <= len(data):
        incl = struct.unpack("<I", data[at + 8:at + 12])[0]
        out.append(data[at + 16:at + 16 + incl])
        at += 16 + incl
    return out


def esp_nonces(pcap):
    """(source MAC, SPI, 64-bit sequence number) of every ESP frame in a
    classic pcap file: Ethernet, IPv4, ESP header and the 8-byte IV that
    follows it."""
    out = []
    for frame in pcap_frames(pcap):
        if len(frame) < 14 + 20 + 16 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 50:
            continue
        ihl = (frame[14] & 0x0F) * 4
        esp = frame[14 + ihl:]
        spi, seq32 = struct.unpack(">II", esp[:8])
        (iv,) = struct.unpack(">Q", esp[8:16])
        assert iv & 0xFFFFFFFF == seq32, f"SPI {spi:#x}: IV {iv:#x} does not end in the sequence number {seq32:#x}"
        out.append((frame[6:12].hex(":"), spi, iv))
    return out


class Chaos:
    def __init__(self, topo, espgate, tmp, seed):
        self.topo, self.espgate, self.tmp = topo, espgate, pathlib.Path(tmp)
        self.rng = random.Random(seed)
        self.p = Pair(topo, espgate, self.tmp, {"failback": "auto", "failback_delay_ms": 300, "dead_after": 5})
        # ESN SAs: hundreds of takeovers and restarts do not fit in 32 bits.
        for n in ("a", "b", "r"):
            self.p.yaml[n] = self.p.yaml[n].replace(" } }\n", " }, esn: true }\n").replace("}, home:", "}, esn: true, home:")
        self.sock = {n: self.tmp / f"{n}.sock" for n in ("a", "b")}
        self.lives = Counter()
        self.done = Counter()
        self.loss = 0
        x = topo.ns("x")
        topo.veth(x, "eth0", "02:00:00:00:77:01", self.p.sw, "w-x", "02:00:00:00:77:02")
        topo.run(self.p.sw, "ip", "link", "set", "w-x", "master", "brwan")
        self.x = x

    def start(self, n):
        self.lives[n] += 1
        return self.p.start(n, f"{n}-{self.lives[n]}.log", "--control", str(self.sock[n]))

    def status(self, n):
        r = subprocess.run([self.espgate, "peer", "--json", "--control", str(self.sock[n])],
                           capture_output=True, text=True, timeout=10)
        return json.loads(r.stdout)["mirror"] if r.returncode == 0 else None

    def healthy(self, n):
        s = self.status(n)
        return bool(s and s["synced"] and s["peer_alive"])

    def settle(self, timeout=20):
        return wait_for(lambda: self.healthy("a") and self.healthy("b"), timeout=timeout, step=0.1)

    def set_loss(self, percent):
        self.topo.run(self.p.sw, "nft", "delete", "table", "netdev", "mirrorloss", check=False)
        if percent:
            self.p.loss(percent)
        self.loss = percent

    def round(self, action=None):
        action = action or self.rng.choice(ACTIONS)
        victim = self.rng.choice(["a", "b"])
        if action in ("kill", "kill_delayed", "restart"):
            other = "b" if victim == "a" else "a"
            if not self.healthy(other):
                action = "loss"
        if action in ("kill", "kill_delayed"):
            self.topo.stop(self.p.procs[victim], signal.SIGKILL)
            time.sleep(self.rng.uniform(0.0, 0.4) if action == "kill" else self.rng.uniform(1.0, 3.0))
            self.start(victim)
        elif action == "restart":
            self.topo.stop(self.p.procs[victim])
            self.start(victim)
        elif action == "cut":
            self.p.cut(True)
            time.sleep(self.rng.uniform(0.3, 2.0))
            self.p.cut(False)
        elif action == "loss":
            self.set_loss(self.rng.choice([0, 10, 30, 50]))
        elif action == "replay":
            self.replay()
        elif action == "reorder":
            self.reorder(self.rng.uniform(1.0, 3.0))
        self.done[action] += 1
        if not self.settle():
            raise AssertionError(f"the pair did not heal after {action} of {victim}:\n"
                                 + "".join(self.p.log(f"{n}-{self.lives[n]}.log")[-3000:] for n in ("a", "b")))

    def reorder(self, seconds):
        """For a while the mirror link is a relay that delays frames up to
        30 ms and lets a third of them overtake the one before (this kernel
        has no netem), instead of the bridge. The loss rule does not apply
        meanwhile: the relay reads frames before nftables' ingress hook."""
        sw = self.p.sw
        for port in ("m-a", "m-b"):
            self.topo.run(sw, "ip", "link", "set", port, "nomaster")
        relay = self.topo.start(sw, "python3", str(HERE / "relay.py"), "m-a", "m-b", "0.33", "30",
                                log=self.tmp / "relay.log")
        time.sleep(seconds)
        self.topo.stop(relay)
        for port in ("m-a", "m-b"):
            self.topo.run(sw, "ip", "link", "set", port, "master", "brmir")
        text = (self.tmp / "relay.log").read_text()
        if "overtook" in text:
            self.overtaken += int(text.split(", ")[1].split()[0])

    def replay(self):
        """Sends ESP frames recorded earlier (r's, to the pair) again, to
        whoever owns the SAs now."""
        frames = self.recorded[: self.rng.randint(20, 200)]
        if not frames:
            return
        path = self.tmp / "replay.bin"
        path.write_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
        self.topo.run(self.x, "python3", "-c", f"""
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
d = open("{path}", "rb").read()
at = 0
while at < len(d):
    n = struct.unpack(">I", d[at:at + 4])[0]
    f = bytearray(d[at + 4:at + 4 + n])
    # To every node, from the attacker's own MAC: with r's, the switch
    # would learn r behind the attacker's port and send r's traffic there.
    f[0:6] = b"\\xff" * 6
    f[6:12] = bytes.fromhex("020000007701")
    s.send(bytes(f))
    at += 4 + n
""")
        self.replayed += len(frames)

    def run(self, rounds, plan=None):
        """`rounds` random rounds, or the actions of `plan` in order."""
        t0 = time.time()
        cap_path = self.tmp / "wan.pcap"
        cap = self.topo.start(self.p.sw, "dumpcap", "-q", "-P", "-i", "w-r", "-w", str(cap_path))
        assert wait_for(lambda: cap_path.exists() and cap_path.stat().st_size >= 24), "capture did not start"
        self.p.start("r", "r.log")
        self.start("a")
        self.start("b")
        assert self.settle(30), "the pair did not start"
        self.topo.start(self.p.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
        time.sleep(0.3)
        streams = [self.topo.start(h, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", "100000",
                                   str(self.tmp / f"{name}.json"), str(RATE))
                   for h, name in ((self.p.h1, "h1"), (self.p.h2, "h2"))]
        # Record some of r's ESP to the pair, to replay in later rounds.
        rec = self.tmp / "rec.pcap"
        rc = self.topo.start(self.p.sw, "dumpcap", "-q", "-P", "-i", "w-r", "-a", "duration:2", "-w", str(rec))
        rc.wait(timeout=20)
        self.recorded = [f for f in pcap_frames(rec) if f[6:12] == bytes.fromhex(MAC["r-wan"].replace(":", ""))]
        self.replayed = 0
        self.overtaken = 0
        plan = plan or [None] * rounds
        for k, action in enumerate(plan):
            self.round(action)
            if (k + 1) % 20 == 0:
                print(f"  round {k + 1}/{len(plan)}, {time.time() - t0:.0f} s", flush=True)
        # Heal everything, let the pair fail back, and check traffic flows.
        self.set_loss(0)
        assert self.settle(30)
        # The hand-back comes failback_delay_ms after the pair is whole,
        # and strict takeover refuses up to inbound_interval packets at
        # each start: measure the flow well after both.
        time.sleep(4.0)
        ends = time.time()
        for s in streams:
            self.topo.stop(s)
        time.sleep(0.5)
        owners = self.owners()
        for n in ("a", "b", "r"):
            self.topo.stop(self.p.procs[n])
        self.topo.stop(cap, signal.SIGINT)
        return self.check(cap_path, owners, ends, time.time() - t0)

    def owners(self):
        """Each SA's state on each node, and who each node says owns it."""
        out = {}
        for n in ("a", "b"):
            r = subprocess.run([self.espgate, "sa", "list", "--json", "--control", str(self.sock[n])],
                               capture_output=True, text=True, timeout=10, check=True)
            for s in json.loads(r.stdout)["sas"]:
                out.setdefault((s["spi"], s["direction"]), {})[n] = (s["state"], s["owner"])
        return out

    def check(self, cap_path, owners, ends, elapsed):
        nonces = esp_nonces(cap_path)
        pair_macs = {MAC["a-wan"], MAC["b-wan"]}
        sent = [(spi, seq) for src, spi, seq in nonces if src in pair_macs]
        reused = [k for k, c in Counter(sent).items() if c > 1]
        flows = {h: flow(self.tmp / f"{h}.json") for h in ("h1", "h2")}
        dups = sum(json.loads((self.tmp / f"{h}.json").read_text()).get("duplicates", 0) for h in flows)
        lost_sas = [sa for sa, v in owners.items()
                    if sorted(state for state, _ in v.values()) != ["active", "standby"] or len({o for _, o in v.values()}) != 1]
        late = {h: [k for k, t in enumerate(s) if ends - 1.5 < t < ends - 0.5] for h, (s, e) in flows.items()}
        flowing = {h: sum(k in flows[h][1] for k in late[h]) / max(1, len(late[h])) for h in flows}
        last_echo = {h: round(ends - max(e.values(), default=0), 1) for h, (s, e) in flows.items()}
        r_sas = [line.strip() for line in self.p.log("r.log").splitlines() if " sa 0x" in line]
        took = sum(self.p.log(f"{n}-{i}.log").count("took_over") for n in ("a", "b") for i in range(1, self.lives[n] + 1))
        totals = {
            "rounds": sum(self.done.values()),
            "actions": dict(self.done),
            "seconds": round(elapsed),
            "node lives": dict(self.lives),
            "takeovers": took,
            "ESP frames from the pair": len(sent),
            "ESP frames from r": len(nonces) - len(sent),
            "nonces used twice": len(reused),
            "ESP frames replayed": self.replayed,
            "mirror frames reordered": self.overtaken,
            "replays accepted (bound 0, strict)": dups,
            "datagrams sent / echoed": {h: f"{len(s)} / {len(e)}" for h, (s, e) in flows.items()},
            "SAs not on exactly one node": len(lost_sas),
            "traffic flowing at the end": {h: f"{v:.0%}" for h, v in flowing.items()},
            "seconds from the last echo to the end": last_echo,
            "r's SAs at the end": r_sas,
        }
        return totals, reused, dups, lost_sas, flowing


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else random.randrange(1 << 31)
    espgate = os.environ.get("ESPGATE", str(REPO / "target" / "release" / "espgate"))
    if os.geteuid() != 0:
        sys.exit("chaos: needs root (network namespaces)")
    topo = Topology(prefix())
    tmp = tempfile.mkdtemp(prefix="espgate-chaos-")
    try:
        print(f"chaos: {rounds} rounds, seed {seed}, {espgate}", flush=True)
        totals, reused, dups, lost, flowing = Chaos(topo, espgate, tmp, seed).run(rounds)
    finally:
        topo.cleanup()
    print(json.dumps(totals, indent=2))
    ok = not reused and dups == 0 and not lost and all(v > 0.5 for v in flowing.values())
    if ok:
        shutil.rmtree(tmp)
    print("chaos: " + ("PASS" if ok else f"FAIL (logs and capture kept in {tmp})"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
