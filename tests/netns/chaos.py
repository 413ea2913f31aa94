"""Chaos rounds against the pair of test_failover's topology, with traffic
both ways throughout and every ESP frame on the remote gateway's link
captured. Each round does one random thing: kill -9 a node and restart it
at once or after a delay (replaying right after the kill the ESP r sent
in the 300 ms before it), stop one gracefully (SIGTERM: a drain) and
restart it, drain one (`espgate drain`: every SA to the peer exactly, a
goodbye) and restart it, or kill -9 it a few milliseconds into its drain
(SAs stopped, handed over or not, the goodbye said or not), cut the
mirror link for a while (split brain), drop a share of mirror frames
(nftables `numgen random`, counted) for the following rounds, replay
recorded ESP frames at the pair, reorder and delay the mirror link's
frames for a while, deliver them padded with a trailer as a NIC and switch
may, start a second instance of a running node (its lock must refuse it
before it does anything), order a fence (refused while the peer is heard;
obeyed once the peer is dead), add or delete an SA during a partition or
after a restart (the restarted node's file predates the add: the host
adds it again), replay recorded mirror frames of earlier lives into a
restarting node, crash-loop a node (killed again before or right after
it syncs), restart a node with its clock an hour behind (libfaketime),
cut the power of both at once (their state directories kept), cut the
mirror link and heal it one way first (the victim hears its peer, not
the reverse) while its failback, an SA change and its drain come, restart
both one after the other as a maintenance window does (each stopped
gracefully or killed, the second once the first has synchronised), or
have the host processor (`espgate host`) manage a node's failure and
restart the host while the node is down: its files are the nodes' first
ones (stale once SAs were added at run time), and the node's next life
waits for the host to configure it; or send an IKE daemon's requests
through the host's own socket (`espgate host --control`: an SPI drawn,
the run-time SAs added with the homes the host chooses, or deleted) with
both nodes up and again while one is killed or frozen and thawed (the
host must ask a fenced life nothing); or fail a node's packet flow for up
to 3 s, now and then both nodes' at once: its LAN or WAN switch port
down, or r (which both track on their WAN ports) silent towards it, the
switch dropping what r sends it, or one of its workers stopped (ptrace
stops that thread alone); or slow both streams to 10 datagrams/s (the
mirror's loss lifted meanwhile) and kill -9 a node there: the takeover
after a crash at a low rate must refuse none of the victim's datagrams
sent from a second after the kill on (the inbound bound: an
`inbound_interval` of refusals was many seconds of traffic at this rate);
with `inbound_grace: 0` the survivor is also fenced once it declared the
victim dead, as `espgate host` does, and must refuse none of its own
either (unfenced, a survivor's own inbound SAs wait for their peer; with
a grace, the fence moves them past what a lost life may have accepted).
A run's `inbound_grace` is 0 or the interval (its seed chooses; the
pair must agree, so it is one for the whole run). Otherwise
a node is killed only while the other runs and is synchronised: without
its state directory the guarantee needs one node's memory to survive. Every kind of round is counted as it ran
(a kill whose peer is not healthy is counted as the loss round it
becomes). At the end the checker proves:

- no nonce used twice: every (SPI, 64-bit sequence number) the pair sent
  (read from the GCM IV, which is the full sequence number, RFC 4106) is
  unique across the whole run;
- no SA jumped 2^31 or more past the last number it sent (the far end's
  ESN inference would soon lose it; the largest jump is printed);
- no replay accepted beyond the documented bound: with strict inbound
  takeover the bound is zero, so no datagram reaches a host twice;
- no SA lost: after every round, once the pair has healed, every SA is
  active on exactly one node and both nodes agree on its owner, and, the
  mirror link's loss lifted meanwhile, the traffic flows again within
  FLOW_AGAIN_S (99 % of a second's datagrams echoed, both hosts; the
  longest wait is printed by kind of round); at the end, at least 99 % of
  the traffic is echoed;
- the capture is complete: dumpcap dropped nothing, every frame on r's
  port is ARP or ESP (IPv4, IPv6, or in UDP), and r's ESP frames are
  exactly as many as r says it encrypted.


Reordering: this kernel has no netem, so for a reorder round the mirror
link's bridge gives way to a relay (relay.py) that delays frames and lets
some overtake others.

    python3 tests/netns/chaos.py ROUNDS [--seed N]     (root; scripts/chaos)
"""

import hashlib
import json
import math
import os
import pathlib
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import stall  # noqa: E402
from test_failover import (  # noqa: E402
    HERE, INBOUND_INTERVAL, MAC, PAIR_WAN, Pair, encrypted, expected_chatter, flow, start_capture, stop_capture)
from topology import Topology, control_request, prefix, wait_for  # noqa: E402

REPO = HERE.parents[1]
ACTIONS = ["kill", "kill_delayed", "restart", "cut", "loss", "replay", "reorder", "padded", "second",
           "fence_refused", "fence_isolated", "sa_change_cut", "sa_change_restart", "mirror_replay",
           "crash_loop", "clock_back", "power_loss", "rolling_restart", "host_restart", "ike_host",
           "drain", "drain_killed", "link_down", "next_hop_silent", "worker_stall", "kill_low_rate",
           "cut_one_way"]


def extra_sas(gen):
    """The SA pair the host adds at run time for the `gen`-th time (no
    rules use them): new SPIs and keys each time, as a rekey makes them (a
    node refuses key material it ran before)."""
    key = lambda k: "0x" + hashlib.sha256(f"chaos {gen} {k}".encode()).hexdigest()[:40]
    spi = 0x3000 + 2 * gen
    return ("sas:\n"
            f"  - {{ spi: {spi:#x}, direction: outbound, aead: aes-128-gcm, key: {key(0)}, "
            "tunnel: { src: 192.0.2.1, dst: 192.0.2.100 }, home: 1, esn: true }\n"
            f"  - {{ spi: {spi + 1:#x}, direction: inbound, aead: aes-128-gcm, key: {key(1)}, "
            "tunnel: { src: 192.0.2.100, dst: 192.0.2.2 }, home: 2, esn: true }\n"), spi


RATE = 200
# A kill_low_rate round: the streams' rate (flow.py's SLOW), and the time
# from the kill on that must be whole: from a second after it (the death
# declared, the SAs taken over, the hosts' ARP caches moved) to the end of
# the slow traffic.
SLOW_WHOLE = (1.0, 3.0)
# The host whose tunnel a node's SAs carry (the SAs whose home it is).
HOST_OF = {"a": "h1", "b": "h2"}
# How long the traffic may take to flow again once a round healed: the
# hand-back comes failback_delay_ms after the pair is whole, and a strict
# inbound SA's last start refuses the far end's packets up to its mark
# (some 700 packets, 3.5 s at RATE; see `run`).
FLOW_AGAIN_S = 30


def not_one_owner(owners):
    """The SAs of `Chaos.owners` not active on exactly one node and standby
    on the other, or whose owner the two nodes name differently."""
    return [sa for sa, v in owners.items()
            if sorted(state for state, _ in v.values()) != ["active", "standby"] or len({o for _, o in v.values()}) != 1]
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


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


def read_frames(path):
    """The frames of a file of length-prefixed frames (sniff.py's)."""
    data, out, at = pathlib.Path(path).read_bytes(), [], 0
    while at < len(data):
        (n,) = struct.unpack(">I", data[at:at + 4])
        out.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return out


def largest_jump(sent):
    """The largest distance an SA's next frame went past the highest
    number sent on it before, in capture order: (distance, SPI, from), or
    None. What the far end's ESN inference must follow (RFC 4303 A.2: up
    to 2^32 less its window; 2^31 is the line to keep far from)."""
    top, best = {}, None
    for spi, seq in sent:
        if spi in top and seq > top[spi] and (best is None or seq - top[spi] > best[0]):
            best = (seq - top[spi], spi, top[spi])
        top[spi] = max(top.get(spi, seq), seq)
    return best


def esp_nonces(pcap):
    """(source MAC, SPI, 64-bit sequence number) of every ESP frame in a
    classic pcap file: Ethernet, IPv4 or IPv6, ESP or ESP in UDP (port
    4500, non-ESP marker 0 excluded), the ESP header and the 8-byte IV that
    follows it. ARP, the switch's own IGMP reports and frames one pair node
    sent on to the other are skipped; any
    other frame fails (a checker that skips
    what it does not understand proves nothing)."""
    out = []
    for frame in pcap_frames(pcap):
        kind = frame[12:14]
        src = frame[6:12].hex(":")
        if src in PAIR_WAN and frame[0:6].hex(":") in PAIR_WAN:
            # One pair node sent it on to the other (an SA the other runs):
            # the far end's frame, not a second use of its number. A
            # bridge that has not learnt the peer's port floods it here.
            continue
        # The attacker's link is a port of the switch too (its IGMP reports).
        switch_port = src.replace("02:00:00:00:77:02", "02:00:00:00:ff:77")
        if kind == b"\x08\x06" or (kind == b"\x08\x00" and expected_chatter(switch_port, frame[23])):
            continue
        if kind == b"\x08\x00":
            proto, at = frame[14 + 9], 14 + (frame[14] & 0x0F) * 4
        elif kind == b"\x86\xdd":
            proto, at = frame[14 + 6], 14 + 40
        else:
            raise AssertionError(f"neither ARP nor IP: {frame[:64].hex()}")
        if proto == 17 and struct.unpack(">H", frame[at + 2:at + 4])[0] == 4500 and frame[at + 8:at + 12] != b"\0" * 4:
            at += 8
        elif proto != 50:
            raise AssertionError(f"neither ARP nor ESP: {frame[:64].hex()}")
        esp = frame[at:]
        spi, seq32 = struct.unpack(">II", esp[:8])
        (iv,) = struct.unpack(">Q", esp[8:16])
        assert iv & 0xFFFFFFFF == seq32, f"SPI {spi:#x}: IV {iv:#x} does not end in the sequence number {seq32:#x}"
        out.append((frame[6:12].hex(":"), spi, iv))
    return out


class Chaos:
    def __init__(self, topo, espgate, tmp, seed, grace=None):
        self.topo, self.espgate, self.tmp = topo, espgate, pathlib.Path(tmp)
        self.rng = random.Random(seed)
        self.grace = self.rng.choice([0, INBOUND_INTERVAL]) if grace is None else grace
        self.p = Pair(topo, espgate, self.tmp, {"failback": "auto", "failback_delay_ms": 300, "dead_after": 5,
                                                "inbound_grace": self.grace})
        # ESN SAs: hundreds of takeovers and restarts do not fit in 32 bits.
        for n in ("a", "b", "r"):
            self.p.yaml[n] = self.p.yaml[n].replace(" } }\n", " }, esn: true }\n").replace("}, home:", "}, esn: true, home:")
        self.p.track_r()
        self.sock = {n: self.tmp / f"{n}.sock" for n in ("a", "b")}
        self.lives = Counter()
        self.done = Counter()
        self.flow_again = Counter()
        self.streaming = False
        self.loss = 0
        self.loss_dropped = 0
        self.extra = False
        self.extra_gen = 0
        self.base_yaml = dict(self.p.yaml)
        self.mirror_recorded = []
        x = topo.ns("x")
        topo.veth(x, "eth0", "02:00:00:00:77:01", self.p.sw, "w-x", "02:00:00:00:77:02")
        topo.run(self.p.sw, "ip", "link", "set", "w-x", "master", "brwan")
        self.x = x

    def start(self, n, clock_back=False):
        """Starts a life of node `n` from its file, which holds the
        run-time SAs the host has added. (From a file that predates the
        add, the host could not add them again: the node refuses key
        material it ran, so the SA would stay on one node.) `clock_back`:
        its clock an hour behind its earlier lives' (libfaketime)."""
        self.lives[n] += 1
        base = self.base_yaml[n]
        if self.extra:
            base = base.replace("spd:\n", extra_sas(self.extra_gen)[0].removeprefix("sas:\n") + "spd:\n", 1)
        self.p.yaml[n] = base
        # libfaketime preloaded by `env`, which execs the node: the process
        # killed later is the node itself (the faketime wrapper forks, and
        # a kill of it would leave the node running).
        wrap = ("env", f"LD_PRELOAD={LIBFAKETIME}", "FAKETIME=-3600s") if clock_back else ()
        return self.p.start(n, f"{n}-{self.lives[n]}.log", "--control", str(self.sock[n]), wrap=wrap)

    def request(self, n, req):
        """One control request to node `n`; its answer ({} if none)."""
        try:
            return control_request(self.sock[n], json.dumps(req))
        except (OSError, ValueError):
            return {}

    def status(self, n):
        r = subprocess.run([self.espgate, "peer", "--json", "--control", str(self.sock[n])],
                           capture_output=True, text=True, timeout=10)
        return json.loads(r.stdout)["mirror"] if r.returncode == 0 else None

    def healthy(self, n):
        s = self.status(n)
        return bool(s and s["synced"] and s["peer_alive"])

    def settle(self, timeout=20):
        return wait_for(lambda: self.healthy("a") and self.healthy("b"), timeout=timeout, step=0.1)

    def flowing(self):
        """Each stream's share of the datagrams sent from 1.5 s to 0.5 s
        ago that were echoed (0 until its live file is fresh)."""
        out = {}
        for h in ("h1", "h2"):
            try:
                live = json.loads((self.tmp / f"{h}-live.json").read_text())
            except (OSError, ValueError):
                live = {}
            fresh = time.time() - live.get("at", 0) < 1.0
            out[h] = (live.get("share") or 0) if fresh else 0
        return out

    def set_loss(self, percent):
        if self.loss:
            self.loss_dropped += self.p.loss_dropped()
        self.topo.run(self.p.sw, "nft", "delete", "table", "netdev", "mirrorloss", check=False)
        if percent:
            self.p.loss(percent)
        self.loss = percent

    def sniff(self, ns, ifname, seconds, src=None):
        """The frames arriving on `ifname` for `seconds` (from `src` only)."""
        path = self.tmp / "sniffed.bin"
        self.topo.run(ns, "python3", str(HERE / "sniff.py"), ifname, str(seconds), str(path), *([src] if src else []))
        return read_frames(path)

    def inject(self, ns, ifname, frames, src=None):
        path = self.tmp / "inject.bin"
        path.write_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
        self.topo.run(ns, "python3", str(HERE / "inject.py"), ifname, str(path), *([src] if src else []))

    def kill(self, victim):
        """kill -9, with r's ESP of the 300 ms before it replayed at once
        (to every node): the frames the dead node may have accepted last,
        and the survivor's strict takeover must refuse."""
        last = self.sniff(self.p.sw, "w-r", 0.3, MAC["r-wan"])
        self.topo.stop(self.p.procs[victim], signal.SIGKILL)
        self.inject(self.x, "eth0", last, "02:00:00:00:77:01")
        time.sleep(0.1)
        self.inject(self.x, "eth0", last, "02:00:00:00:77:01")
        self.replayed += 2 * len(last)
        self.replayed_after_kill += 2 * len(last)

    def round(self, action=None):
        action_given = action
        action = action or self.rng.choice(ACTIONS)
        victim = self.rng.choice(["a", "b"])
        other = "b" if victim == "a" else "a"
        needs_peer = ("kill", "kill_delayed", "restart", "fence_isolated", "sa_change_restart", "mirror_replay",
                      "crash_loop", "clock_back", "rolling_restart", "host_restart", "ike_host", "drain",
                      "drain_killed", "kill_low_rate", "cut_one_way")
        if action in needs_peer and not self.healthy(other):
            action = "loss"
        if action in ("kill", "kill_delayed"):
            self.kill(victim)
            time.sleep(self.rng.uniform(0.0, 0.4) if action == "kill" else self.rng.uniform(1.0, 3.0))
            self.start(victim)
        elif action == "restart":
            self.topo.stop(self.p.procs[victim])
            self.start(victim)
        elif action == "kill_low_rate":
            self.kill_low_rate(victim)
        elif action == "drain":
            # `espgate drain` (a stop, SIGTERM, drains too: "restart"):
            # every SA to the peer exactly, a goodbye, the node stops; a
            # drain refused (the peer not synchronised in its view) leaves
            # it running.
            d = subprocess.run([self.espgate, "drain", "--control", str(self.sock[victim])],
                               capture_output=True, text=True, timeout=30)
            if d.returncode == 0:
                assert self.p.procs[victim].wait(timeout=10) == 0, f"{victim} did not stop after its drain"
                time.sleep(self.rng.uniform(0.0, 1.0))
                self.start(victim)
            else:
                self.drains_refused += 1
        elif action == "drain_killed":
            # A drain cut short by kill -9 at any moment of it: SAs
            # stopped, handed over or not, the goodbye said or not.
            d = subprocess.Popen([self.espgate, "drain", "--control", str(self.sock[victim])],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(self.rng.uniform(0.0, 0.03))
            self.topo.stop(self.p.procs[victim], signal.SIGKILL)
            d.wait(timeout=30)
            time.sleep(self.rng.uniform(0.0, 0.4))
            self.start(victim)
        elif action == "link_down":
            # A data port's link fails (its switch port down: the node's
            # carrier goes off) and comes back: the node hands its SAs to
            # the peer exactly and takes them back once the link has been
            # up for link_up_ms; now and then the peer's link fails too
            # (nothing can move then).
            port = self.rng.choice(["l", "w"])
            ports = [f"{port}-{victim}"] + ([f"{port}-{other}"] if self.rng.random() < 0.2 else [])
            for dev in ports:
                self.topo.run(self.p.sw, "ip", "link", "set", dev, "down")
            time.sleep(self.rng.uniform(0.1, 3.0))
            for dev in ports:
                self.topo.run(self.p.sw, "ip", "link", "set", dev, "up")
        elif action == "next_hop_silent":
            # r, which both nodes track on their WAN ports, goes silent
            # towards the node (a switch or path between them failed) and
            # speaks again: as a failed link, with the flow's hysteresis;
            # now and then towards both (nothing can move then).
            self.p.silence_r([victim] + ([other] if self.rng.random() < 0.2 else []))
            time.sleep(self.rng.uniform(0.1, 3.0))
            self.p.speak_r()
        elif action == "worker_stall":
            # One of the node's workers stops (ptrace stops that thread
            # alone) and runs again: the node's flow fails for as long as
            # it stands still past worker_stall_ms; its SAs go to the
            # peer past the limits it was given, and come back.
            tid = stall.thread(self.p.procs[victim].pid, f"{victim}-w{self.rng.randrange(2)}")
            stall.stop(tid)
            try:
                time.sleep(self.rng.uniform(0.1, 3.0))
            finally:
                stall.go(tid)
        elif action == "cut":
            self.p.cut(True)
            time.sleep(self.rng.uniform(0.3, 2.0))
            self.p.cut(False)
        elif action == "loss":
            self.set_loss(self.rng.choice([0, 10, 30, 50]) if action_given is None else 30)
            self.loss_rounds_with_loss += self.loss > 0
        elif action == "replay":
            self.replay()
        elif action == "reorder":
            self.relay(self.rng.uniform(1.0, 3.0), 0.33, 30, pad=False)
        elif action == "padded":
            self.relay(self.rng.uniform(1.0, 3.0), 0.0, 0, pad=True)
        elif action == "second":
            self.second(victim)
        elif action == "fence_refused":
            a = self.request(victim, {"op": "fence"})
            assert a.get("ok") is False and "fence refused" in a.get("error", ""), \
                f"a fence of {victim} while it hears its peer was not refused: {a}"
        elif action == "fence_isolated":
            self.kill(victim)
            assert wait_for(lambda: (self.status(other) or {}).get("peer_alive") is False, timeout=10), \
                f"{other} never declared {victim} dead"
            a = self.request(other, {"op": "fence"})
            assert a.get("ok") is True, f"a fence of {other} after {victim}'s death was refused: {a}"
            time.sleep(self.rng.uniform(0.2, 1.0))
            self.start(victim)
        elif action == "cut_one_way":
            self.cut_one_way(victim)
        elif action == "sa_change_cut":
            self.p.cut(True)
            time.sleep(self.rng.uniform(0.1, 0.5))
            self.sa_change()
            time.sleep(self.rng.uniform(0.1, 1.0))
            self.p.cut(False)
        elif action == "sa_change_restart":
            self.kill(victim)
            time.sleep(self.rng.uniform(0.0, 0.4))
            self.start(victim)
            self.sa_change()
        elif action == "mirror_replay":
            self.mirror_replay(victim)
        elif action == "clock_back":
            self.kill(victim)
            self.start(victim, clock_back=True)
        elif action == "power_loss":
            # Both nodes at once: both memories lost, their state
            # directories kept.
            last = self.sniff(self.p.sw, "w-r", 0.3, MAC["r-wan"])
            for n in ("a", "b"):
                self.topo.stop(self.p.procs[n], signal.SIGKILL)
            self.inject(self.x, "eth0", last, "02:00:00:00:77:01")
            self.replayed += len(last)
            time.sleep(self.rng.uniform(0.0, 1.0))
            for n in ("a", "b"):
                self.start(n)
        elif action == "rolling_restart":
            for n in (victim, other):
                if self.rng.random() < 0.5:
                    self.kill(n)
                else:
                    self.topo.stop(self.p.procs[n])
                self.start(n)
                assert self.settle(), f"the pair did not heal after {n}'s restart in a rolling restart"
        elif action == "host_restart":
            self.host_restart(victim)
        elif action == "ike_host":
            self.ike_host(victim)
        elif action == "crash_loop":
            for _ in range(self.rng.randint(2, 4)):
                self.kill(victim)
                self.start(victim)
                time.sleep(self.rng.uniform(0.0, 0.6))
            self.kill(victim)
            self.start(victim)
        self.done[action] += 1
        self.check_marks(action, victim)
        if not self.settle():
            raise AssertionError(f"the pair did not heal after {action} of {victim} "
                                 f"(mirror loss {self.loss} %; a: {self.status('a')}; b: {self.status('b')}):\n"
                                 + "".join(self.p.log(f"{n}-{self.lives[n]}.log")[-3000:] for n in ("a", "b")))
        # Healed: every SA runs on exactly one node, which both name (a
        # hand-back may be on its way for a moment).
        owners = []
        if not wait_for(lambda: owners.append(self.owners()) or not not_one_owner(owners[-1]), timeout=10, step=0.2):
            raise AssertionError(f"after {action} of {victim} the pair healed with SAs not on exactly one "
                                 f"node: {not_one_owner(owners[-1])}")
        # And once the mirror link is whole again the traffic flows, both
        # ways, for both hosts (at 50 % mirror loss the nodes declare each
        # other dead every few hundred ms: dead_after is 5 heartbeats). The
        # loss of a loss round comes back for the rounds after.
        if self.streaming:
            loss = self.loss
            if loss:
                self.set_loss(0)
            healed = time.time()
            shares = []
            if not wait_for(lambda: shares.append(self.flowing()) or all(v >= 0.99 for v in shares[-1].values()),
                            timeout=FLOW_AGAIN_S, step=0.2):
                raise AssertionError(f"after {action} of {victim} the pair healed but the traffic did not flow "
                                     f"again within {FLOW_AGAIN_S} s: {shares[-1]}\n" + self.diagnosis())
            waited = time.time() - healed
            self.flow_again[action] = max(self.flow_again[action], waited)
            if loss:
                self.set_loss(loss)

    def kill_low_rate(self, victim):
        """Both streams slowed to 10 datagrams/s (the mirror whole), kill -9
        of `victim` once the rate the nodes measure has fallen, with no
        grace the survivor fenced as the host does once it declared the
        victim dead, the slow traffic on through it, then the streams' rate
        back and the victim restarted. The datagrams of the victim's host
        (and, fenced, of the survivor's) sent in the SLOW_WHOLE window after
        the kill are checked at the end (`check`)."""
        other = "b" if victim == "a" else "a"
        loss = self.loss
        self.set_loss(0)
        for st in self.streams:
            st.send_signal(signal.SIGUSR1)
        time.sleep(2.0)
        killed = time.time()
        self.kill(victim)
        hosts = [HOST_OF[victim]]
        if self.grace == 0:
            assert wait_for(lambda: (self.status(other) or {}).get("peer_alive") is False, timeout=10), \
                f"{other} never declared {victim} dead"
            a = self.request(other, {"op": "fence"})
            assert a.get("ok") is True, f"a fence of {other} after {victim}'s death was refused: {a}"
            hosts.append(HOST_OF[other])
        time.sleep(max(0.0, killed + SLOW_WHOLE[1] - time.time()))
        self.slow_kills.append((killed, hosts))
        for st in self.streams:
            st.send_signal(signal.SIGUSR2)
        self.start(victim)
        self.set_loss(loss)

    def second(self, victim):
        """A second `espgate run` of a running node, with its own control
        socket: the node's lock refuses it before it opens a port or says a
        word on the mirror link."""
        log = self.tmp / f"{victim}-second-{self.done['second']}.log"
        proc = self.topo.start({"a": self.p.a, "b": self.p.b}[victim], self.espgate, "run", "--config",
                               str(self.tmp / f"{victim}.yaml"), "--control", str(self.tmp / f"{victim}-2.sock"),
                               log=log)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.topo.stop(proc, signal.SIGKILL)
            raise AssertionError(f"a second {victim} was not refused: it ran 20 s:\n{log.read_text()[-2000:]}")
        text = log.read_text()
        assert rc != 0 and "is running already" in text, f"a second {victim} was not refused ({rc}): {text}"
        assert "event" not in text and "synced" not in text, f"a second {victim} ran: {text}"

    def host_files(self):
        """host.yaml for `espgate host`, its node files the nodes' first
        ones (stale once SAs were added at run time)."""
        for n in ("a", "b"):
            (self.tmp / f"host-{n}.yaml").write_text(self.base_yaml[n])
        (self.tmp / "host.yaml").write_text(
            "host: { poll_ms: 20, dead_after: 5 }\nnodes:\n"
            + "".join(f"  - name: {n}\n    control: {self.sock[n]}\n    config: host-{n}.yaml\n" for n in ("a", "b")))

    def host_restart(self, victim):
        """The host processor watches the pair; `victim` is killed, the host
        declares it failed (it orders the peer's takeover and a fence) and
        is itself restarted while the victim is down. The victim's next
        life waits for its configuration: the new host pushes it its file's
        settings with the SAs its peer runs (the host's files are the
        nodes' first ones, which lack the SAs added at run time since), and
        orders the hand-back it finds owed (the peer holds the victim's
        SAs, unless its automatic failback gave them back first)."""
        other = "b" if victim == "a" else "a"
        k = self.done["host_restart"]
        self.host_files()

        def host(life):
            log = self.tmp / f"host-{k}-{life}.log"
            proc = self.topo.start(self.p.sw, self.espgate, "host", "--config", str(self.tmp / "host.yaml"), log=log)
            return proc, log

        h1, log1 = host(1)
        assert wait_for(lambda: "a up" in log1.read_text() and "b up" in log1.read_text(), timeout=10), \
            log1.read_text()
        self.kill(victim)
        assert wait_for(lambda: f"{victim} failed" in log1.read_text(), timeout=10), log1.read_text()
        self.topo.stop(h1)
        self.lives[victim] += 1
        ns = {"a": self.p.a, "b": self.p.b}[victim]
        self.p.procs[victim] = self.topo.start(ns, self.espgate, "run", "--control", str(self.sock[victim]),
                                               log=self.tmp / f"{victim}-{self.lives[victim]}.log")
        h2, log2 = host(2)
        assert wait_for(lambda: f"{victim} configured" in log2.read_text(), timeout=20), log2.read_text()
        assert f"{victim} gets the SAs {other} runs" in log2.read_text(), log2.read_text()
        assert self.settle(), f"the pair did not heal under the restarted host:\n{log2.read_text()}"
        self.topo.stop(h2)

    def ike_host(self, victim):
        """An IKE daemon's requests through the host's socket (`espgate host
        --control`, as charon's kernel-espgate plugin sends them): an SPI
        drawn (on one node, reserved on the other) and the run-time SAs
        added without a home (the host gives each the node holding its
        local tunnel address: a the outbound one, b the inbound one) or
        deleted. Once with both nodes up, once while `victim` is down:
        killed, or frozen (SIGSTOP) until the host fails and fences it,
        thawed in that same life (it must be asked nothing, its peer runs
        its SAs) and then killed, as a fenced node must restart. Its next
        life waits for the host, which configures it with what its peer
        runs. Both nodes then hold the same SAs."""
        k = self.done["ike_host"]
        self.host_files()
        sock = self.tmp / "host.sock"
        log = self.tmp / f"host-ike-{k}.log"
        host = self.topo.start(self.p.sw, self.espgate, "host", "--config", str(self.tmp / "host.yaml"),
                               "--control", str(sock), log=log)
        assert wait_for(lambda: "a up" in log.read_text() and "b up" in log.read_text(), timeout=10), log.read_text()

        def ike(req):
            answer = control_request(sock, json.dumps(req))
            assert answer.get("ok"), f"{req['op']} through the host: {answer}\n{log.read_text()}"
            return answer

        def change():
            assert 0xc000_0000 <= ike({"op": "spi_alloc"})["spi"] <= 0xcfff_ffff
            if self.extra:
                spi = extra_sas(self.extra_gen)[1]
                for s, d in ((spi, "outbound"), (spi + 1, "inbound")):
                    ike({"op": "sa_del", "spi": s, "direction": d})
            else:
                self.extra_gen += 1
                yaml = re.sub(r", home: \d", "", extra_sas(self.extra_gen)[0])
                ike({"op": "sa_add", "yaml": yaml})
            self.extra = not self.extra

        change()
        frozen = self.rng.random() < 0.5 if k else True
        if frozen:
            self.p.procs[victim].send_signal(signal.SIGSTOP)
        else:
            self.kill(victim)
        assert wait_for(lambda: f"{victim} failed" in log.read_text(), timeout=10), log.read_text()
        change()
        if frozen:
            self.p.procs[victim].send_signal(signal.SIGCONT)
            time.sleep(self.rng.uniform(0.1, 0.5))
            self.kill(victim)
        self.lives[victim] += 1
        ns = {"a": self.p.a, "b": self.p.b}[victim]
        self.p.procs[victim] = self.topo.start(ns, self.espgate, "run", "--control", str(self.sock[victim]),
                                               log=self.tmp / f"{victim}-{self.lives[victim]}.log")
        assert wait_for(lambda: f"{victim} configured" in log.read_text(), timeout=20), log.read_text()
        assert self.settle(), f"the pair did not heal under the IKE host:\n{log.read_text()}"
        held = {n: {(s["spi"], s["direction"]) for s in self.request(n, {"op": "sa_list"}).get("sas", [])}
                for n in ("a", "b")}
        assert held["a"] == held["b"], f"the nodes hold different SAs: {held}"
        spi = extra_sas(self.extra_gen)[1]
        assert ((spi, "outbound") in held["a"]) == self.extra, f"{spi:#x} extra={self.extra}: {held}"
        self.topo.stop(host)

    def cut_one_way(self, victim):
        """A split brain that heals one way first: the mirror link cut
        until each node took the other's SAs over, then only the victim's
        frames still lost (it hears its peer, which does not hear it)
        while its automatic failback, the host's SA change (now and then)
        and its drain may come, then whole. A failback or drain the peer
        never heard, of SAs taken over unheard, must not let the victim
        say goodbye: the peer would run them on past nothing it knows."""
        self.p.cut(True)
        time.sleep(self.rng.uniform(0.3, 1.5))
        self.mute(victim)
        try:
            self.p.cut(False)
            time.sleep(self.rng.uniform(0.2, 1.0))
            if self.rng.random() < 0.5:
                self.sa_change()
            time.sleep(self.rng.uniform(0.0, 0.5))
        finally:
            self.mute(None)
        time.sleep(self.rng.uniform(0.1, 0.5))
        d = subprocess.run([self.espgate, "drain", "--control", str(self.sock[victim])],
                           capture_output=True, text=True, timeout=30)
        if d.returncode == 0:
            assert self.p.procs[victim].wait(timeout=10) == 0, f"{victim} did not stop after its drain"
            self.start(victim)
        else:
            self.drains_refused += 1

    def mute(self, node):
        """The mirror switch drops every frame `node` sends (none: lifted)."""
        self.topo.run(self.p.sw, "nft", "delete", "table", "netdev", "mirrormute", check=False)
        if node:
            dev = f"m-{node}"
            self.topo.run(self.p.sw, "nft", "add", "table", "netdev", "mirrormute")
            self.topo.run(self.p.sw, "nft", "add", "chain", "netdev", "mirrormute", dev,
                          f"{{ type filter hook ingress device {dev} priority 0; }}")
            self.topo.run(self.p.sw, "nft", "add", "rule", "netdev", "mirrormute", dev, "drop")

    def sa_change(self):
        """The host adds the run-time SAs to both nodes, or deletes them
        (each request until the node answers it: one just started may not
        listen yet)."""
        def order(n, req):
            answers = []
            ok = wait_for(lambda: answers.append(self.request(n, req)) or answers[-1].get("ok"), timeout=20)
            assert ok, f"{req['op']} on {n}: {answers[-1]}"

        if self.extra:
            spi = extra_sas(self.extra_gen)[1]
            for n in ("a", "b"):
                for s, d in ((spi, "outbound"), (spi + 1, "inbound")):
                    order(n, {"op": "sa_del", "spi": s, "direction": d})
            self.extra = False
        else:
            self.extra_gen += 1
            for n in ("a", "b"):
                order(n, {"op": "sa_add", "yaml": extra_sas(self.extra_gen)[0]})
            self.extra = True

    def mirror_replay(self, victim):
        """Kills `victim`, restarts it and replays into its new life every
        mirror frame recorded from its peer (in the peer's earlier lives
        and this one, addressed to the victim's earlier lives), then
        records a little more of the link for later rounds."""
        other = "b" if victim == "a" else "a"
        self.kill(victim)
        self.start(victim)
        frames = [f for f in self.mirror_recorded if f[6:12] == bytes.fromhex(MAC[f"{other}-mir"].replace(":", ""))]
        self.inject(self.p.sw, f"m-{victim}", frames)
        self.mirror_replayed += len(frames)
        self.settle()
        self.record_mirror(0.5)

    def record_mirror(self, seconds):
        self.mirror_recorded = (self.mirror_recorded + self.sniff(self.p.sw, "m-a", seconds))[-3000:]

    def relay(self, seconds, p, delay_ms, pad):
        """For a while the mirror link is a relay instead of the bridge
        (this kernel has no netem): it delays frames up to `delay_ms` and
        lets a share `p` of them overtake the one before, or (`pad`) pads
        them to 60 bytes with a trailer after them. The loss rule does not
        apply meanwhile: the relay reads frames before nftables' ingress
        hook."""
        sw = self.p.sw
        for port in ("m-a", "m-b"):
            self.topo.run(sw, "ip", "link", "set", port, "nomaster")
        relay = self.topo.start(sw, "python3", str(HERE / "relay.py"), "m-a", "m-b", str(p), str(delay_ms),
                                *(["pad"] if pad else []), log=self.tmp / "relay.log")
        # Stopped before it is ready (a slow start on a loaded machine), it
        # would end without its report.
        assert wait_for(lambda: "relay: ready" in (self.tmp / "relay.log").read_text(), timeout=10), \
            "the relay did not start"
        time.sleep(seconds)
        self.topo.stop(relay)
        for port in ("m-a", "m-b"):
            self.topo.run(sw, "ip", "link", "set", port, "master", "brmir")
        counts = re.search(r"moved (\d+) frames, (\d+) overtook another, (\d+) padded",
                           (self.tmp / "relay.log").read_text())
        assert counts, "the relay did not report"
        self.overtaken += int(counts.group(2))
        self.padded += int(counts.group(3))

    def replay(self):
        """Sends ESP frames recorded earlier (r's, to the pair) again, to
        whoever owns the SAs now."""
        frames = self.recorded[: self.rng.randint(20, 200)]
        self.inject(self.x, "eth0", frames, "02:00:00:00:77:01")
        self.replayed += len(frames)

    def run(self, rounds, plan=None):
        """`rounds` random rounds, or the actions of `plan` in order."""
        t0 = time.time()
        cap_path = self.tmp / "wan.pcap"
        cap = start_capture(self.topo, self.p.sw, "w-r", cap_path)
        self.p.start("r", "r.log", "--control", str(self.tmp / "r.sock"))
        self.start("a")
        self.start("b")
        assert self.settle(30), "the pair did not start"
        self.topo.start(self.p.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
        time.sleep(0.3)
        self.streams = [
            self.topo.start(h, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", "100000",
                            str(self.tmp / f"{name}.json"), str(RATE), str(self.tmp / f"{name}-live.json"))
            for h, name in ((self.p.h1, "h1"), (self.p.h2, "h2"))]
        # Record some of r's ESP to the pair, and of the mirror link, to
        # replay in later rounds.
        self.recorded = self.sniff(self.p.sw, "w-r", 2.0, MAC["r-wan"])
        self.record_mirror(1.0)
        self.streaming = True
        self.replayed = self.replayed_after_kill = self.mirror_replayed = 0
        self.overtaken = self.padded = self.loss_rounds_with_loss = 0
        self.drains_refused = 0
        self.slow_kills = []
        plan = plan or [None] * rounds
        for k, action in enumerate(plan):
            self.round(action)
            if (k + 1) % 20 == 0:
                print(f"  round {k + 1}/{len(plan)}, {time.time() - t0:.0f} s", flush=True)
        # Heal everything, let the pair fail back, and check traffic flows.
        self.set_loss(0)
        assert self.settle(30)
        # The hand-back comes failback_delay_ms after the pair is whole,
        # and a strict inbound SA's last start refuses the far end's
        # packets up to its key's mark (at least 256 past the last
        # accepted, MIN_INBOUND_REACH) plus the mirror's moves (an
        # interval at a takeover, three when the peer restarted or was
        # fenced): some 700 packets, 3.5 s at RATE, after a node's last
        # life began (a 500-round run measured at 4 s, 0.4 s too early).
        # Measure the flow well after both.
        time.sleep(8.0)
        ends = time.time()
        for s in self.streams:
            self.topo.stop(s)
        time.sleep(0.5)
        owners = self.owners()
        for n in ("a", "b", "r"):
            self.topo.stop(self.p.procs[n])
        stop_capture(self.topo, cap, cap_path)
        return self.check(cap_path, owners, ends, time.time() - t0)

    def check_marks(self, action, victim):
        """No node's mark of an inbound SA is far past its far end's last
        number (a restart resumes there and refuses the far end's packets
        up to it)."""
        r = subprocess.run([self.espgate, "sa", "list", "--json", "--control", str(self.tmp / "r.sock")],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return
        far = {s["spi"]: s.get("seq", 0) for s in json.loads(r.stdout)["sas"] if s["direction"] == "outbound"}
        for n in ("a", "b"):
            try:
                lines = (self.tmp / "state" / n / "state").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                w = line.split()
                if len(w) == 5 and w[0] == "key" and w[3] == "inbound":
                    spi, mark = int(w[2], 16), int(w[4])
                    if spi in far and mark > far[spi] + 4096:
                        raise AssertionError(f"after {action} of {victim} {n}'s mark of inbound SA {spi:#x} is "
                                             f"{mark}, its far end's last number {far[spi]}\n" + self.diagnosis())

    def diagnosis(self):
        """Both nodes' SAs (state, numbers, drops) and the ends of their
        logs, for a failure's message."""
        out = []
        for n in ("a", "b"):
            r = subprocess.run([self.espgate, "sa", "list", "--json", "--control", str(self.sock[n])],
                               capture_output=True, text=True, timeout=10)
            out.append(f"{n}'s SAs: {r.stdout.strip() or r.stderr.strip()}\n")
        return "".join(out) + "".join(self.p.log(f"{n}-{self.lives[n]}.log")[-3000:] for n in ("a", "b"))

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
        """The totals of the run, and every way it broke the promise or
        proved less than it claims (empty: it passed)."""
        nonces = esp_nonces(cap_path)
        pair_macs = {MAC["a-wan"], MAC["b-wan"]}
        sent = [(spi, seq) for src, spi, seq in nonces if src in pair_macs]
        from_r = sum(src == MAC["r-wan"] for src, _, _ in nonces)
        r_encrypted = encrypted(self.p.log("r.log"))
        reused = [k for k, c in Counter(sent).items() if c > 1]
        jump = largest_jump(sent)
        flows = {h: flow(self.tmp / f"{h}.json") for h in ("h1", "h2")}
        dups = sum(json.loads((self.tmp / f"{h}.json").read_text()).get("duplicates", 0) for h in flows)
        lost_sas = not_one_owner(owners)
        windows = {h: [(t + SLOW_WHOLE[0], t + SLOW_WHOLE[1]) for t, hosts in self.slow_kills if h in hosts]
                   for h in flows}
        slow_lost = {h: sum(1 for lo, hi in windows[h] for k, at in enumerate(s) if lo <= at < hi and k not in e)
                     for h, (s, e) in flows.items()}
        slow_sent = {h: sum(1 for lo, hi in windows[h] for at in s if lo <= at < hi) for h, (s, _) in flows.items()}
        late = {h: [k for k, t in enumerate(s) if ends - 1.5 < t < ends - 0.5] for h, (s, e) in flows.items()}
        flowing = {h: sum(k in flows[h][1] for k in late[h]) / max(1, len(late[h])) for h in flows}
        last_echo = {h: round(ends - max(e.values(), default=0), 1) for h, (s, e) in flows.items()}
        r_sas = [line.strip() for line in self.p.log("r.log").splitlines() if " sa 0x" in line]
        took = sum(self.p.log(f"{n}-{i}.log").count("took_over") for n in ("a", "b") for i in range(1, self.lives[n] + 1))
        lost_loss_rounds = self.done["loss"] and self.loss_dropped == 0 and self.loss_rounds_with_loss
        totals = {
            "rounds": sum(self.done.values()),
            "inbound_grace": self.grace,
            "actions": dict(self.done),
            "seconds": round(elapsed),
            "node lives": dict(self.lives),
            "takeovers": took,
            "drains refused (the node ran on)": self.drains_refused,
            "ESP frames from the pair": len(sent),
            "ESP frames from r / r encrypted": f"{from_r} / {r_encrypted}",
            "nonces used twice": len(reused),
            "largest jump past the last number sent": None if jump is None else
            f"{jump[0]} (2^{math.log2(jump[0]):.1f}) on SPI {jump[1]:#x} after {jump[2]}",
            "ESP frames replayed (of them right after a kill)": f"{self.replayed} ({self.replayed_after_kill})",
            "mirror frames replayed into restarting nodes": self.mirror_replayed,
            "mirror frames reordered / padded": f"{self.overtaken} / {self.padded}",
            "mirror frames the loss rule dropped": self.loss_dropped,
            "replays accepted (bound 0, strict)": dups,
            "lost from 1 s to 3 s after a kill at 10 datagrams/s (of sent)":
                {h: f"{slow_lost[h]} ({slow_sent[h]})" for h in flows},
            "datagrams sent / echoed": {h: f"{len(s)} / {len(e)}" for h, (s, e) in flows.items()},
            "SAs not on exactly one node": len(lost_sas),
            "traffic flowing at the end": {h: f"{v:.1%}" for h, v in flowing.items()},
            "longest wait for the traffic to flow again after a round, by kind (s)":
                {k: round(v, 1) for k, v in self.flow_again.most_common()},
            "seconds from the last echo to the end": last_echo,
            "r's SAs at the end": r_sas,
        }
        problems = []
        if reused:
            problems.append(f"nonces used twice: {reused[:10]}")
        if dups:
            problems.append(f"{dups} replayed datagrams reached a host")
        if jump and jump[0] >= 1 << 31:
            problems.append(f"an SA jumped 2^31 or more past its last number sent: {jump}")
        if lost_sas:
            problems.append(f"SAs not on exactly one node: {lost_sas}")
        if any(slow_lost.values()):
            problems.append(f"datagrams lost from 1 s to 3 s after a kill at 10 datagrams/s: {slow_lost}")
        if not all(v >= 0.99 for v in flowing.values()):
            problems.append(f"traffic does not flow at the end: {flowing}")
        if from_r != r_encrypted:
            problems.append(f"the capture holds {from_r} ESP frames of r, which encrypted {r_encrypted}")
        if lost_loss_rounds:
            problems.append("loss rounds ran but the loss rule never dropped a frame")
        return totals, problems

    def missing(self):
        """The kinds of round that never ran (and what each needs to show)."""
        out = [k for k in ACTIONS if not self.done[k]]
        if self.done["reorder"] and not self.overtaken:
            out.append("reorder (no frame overtook another)")
        if self.done["padded"] and not self.padded:
            out.append("padded (no frame padded)")
        if self.done["mirror_replay"] and not self.mirror_replayed:
            out.append("mirror_replay (no frame replayed)")
        return out


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else random.randrange(1 << 31)
    espgate = os.environ.get("ESPGATE", str(REPO / "target" / "release" / "espgate"))
    if os.geteuid() != 0:
        sys.exit("chaos: needs root (network namespaces)")
    topo = Topology(prefix())
    tmp = tempfile.mkdtemp(prefix="espgate-chaos-")
    # This run's nodes keep their locks and state in its own directory: a
    # run never meets another's nodes (which share names) or their state.
    os.environ["ESPGATE_LOCK_DIR"] = os.path.join(tmp, "locks")
    os.environ["ESPGATE_STATE_DIR"] = os.path.join(tmp, "state")
    try:
        print(f"chaos: {rounds} rounds, seed {seed}, {espgate}", flush=True)
        chaos = Chaos(topo, espgate, tmp, seed)
        totals, problems = chaos.run(rounds)
    finally:
        topo.cleanup()
    print(json.dumps(totals, indent=2))
    # A long run must have tried every kind of round.
    if rounds >= 5 * len(ACTIONS):
        problems += [f"no {k} round ran" for k in chaos.missing()]
    for problem in problems:
        print(f"chaos: {problem}")
    ok = not problems
    if ok:
        shutil.rmtree(tmp)
    print("chaos: " + ("PASS" if ok else f"FAIL (logs and capture kept in {tmp})"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
