"""Planned maintenance figures (issue 17): the pair of test_failover.py
with h1 (through a) and h2 (through b) each sending 1000 datagrams/s to h3
and back; CYCLES times, one node (a, then b, in turn) is drained with
`espgate drain` (it hands every SA to its peer with its exact state and
stops), restarted a second later, and failed back automatically (exactly,
as the drain). Per cycle: the datagrams each host lost, the sequence
jump at each move of an SA between the nodes, and the fresh packets
refused as replays anywhere; and a check of the whole capture that no
(SPI, sequence number) pair was sent twice.

    python3 tests/netns/maintenance_bench.py [CYCLES] [ESPGATE] [--no-state]   (as root)
"""

import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_failover import (  # noqa: E402
    HERE, MAC, Pair, esp_frames, events, flow, sa_drops, start_capture, stop_capture, used_twice)
from topology import Topology, prefix, wait_for, wait_udp_listening  # noqa: E402

#: Seconds each drained node stays down, and then runs again, per cycle.
DOWN, UP = 1.0, 1.5


def gaps(frames):
    """(SPI, sender, jump) of every skip within one node's run of an SA:
    at 1000 datagrams/s each SA sends without a pause, so a number
    skipped is a jump (a start past a mark, a takeover)."""
    last = {}
    out = []
    for _, src, spi, seq in frames:
        if spi in last and last[spi][0] == src and seq > last[spi][1] + 1:
            out.append((spi, src, seq - last[spi][1] - 1))
        last[spi] = (src, seq)
    return out


def moves(frames):
    """(SPI, from, to, jump) of every change of sender of an SA in the
    capture: the jump is how many numbers the new sender skipped (0: it
    went on from the next one)."""
    names = {MAC["a-wan"]: "a", MAC["b-wan"]: "b"}
    last = {}
    out = []
    for _, src, spi, seq in frames:
        who = names.get(src)
        if who is None:
            continue
        if spi in last and last[spi][0] != who:
            out.append((spi, last[spi][0], who, seq - last[spi][1] - 1))
        last[spi] = (who, seq)
    return out


def cycles(t, espgate, tmp, n, keep_state=True, report=print):
    """Runs `n` drain-and-return cycles; returns the figures as a dict
    (per cycle: node, h1 lost, h2 lost; moves; refused; reused)."""
    p = Pair(t, espgate, tmp, {"dead_after": 10, "failback_delay_ms": 200})
    socks = {n_: tmp / f"{n_}.sock" for n_ in ("a", "b")}
    extra = {n_: ("--control", str(socks[n_])) + (() if keep_state else ("--no-state",)) for n_ in ("a", "b")}
    cap_path = tmp / "wan.pcap"
    cap = start_capture(t, p.sw, "w-r", cap_path)
    p.start("r", "r.log")
    lives = {"a": ["a0.log"], "b": ["b0.log"]}
    p.start("a", "a0.log", *extra["a"])
    p.start("b", "b0.log", *extra["b"])
    assert wait_for(lambda: "synced" in p.log("a0.log") and "synced" in p.log("b0.log"), timeout=20), \
        p.log("a0.log") + p.log("b0.log")
    t.start(p.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
    wait_udp_listening(t, p.h3, 7000)
    seconds = n * (DOWN + UP + 1.0) + 3.0
    streams = [t.start(h, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", str(seconds),
                       str(tmp / f"{name}.json")) for h, name in ((p.h1, "h1"), (p.h2, "h2"))]
    time.sleep(1.5)
    windows = []
    for k in range(n):
        name, peer = ("a", "b") if k % 2 == 0 else ("b", "a")
        t0 = time.time()
        d = subprocess.run([espgate, "drain", "--control", str(socks[name])], capture_output=True, text=True,
                           timeout=30)
        assert d.returncode == 0, f"drain of {name}: {d.stdout}{d.stderr}"
        assert p.procs[name].wait(timeout=10) == 0, f"{name} did not stop after its drain"
        time.sleep(DOWN)
        log = f"{name}{k + 1}.log"
        lives[name].append(log)
        p.start(name, log, *extra[name])
        peer_log = lives[peer][-1]
        before = sum(1 for _, w in events(p.log(peer_log)) if w.startswith("handed_back") and _ >= t0)
        assert wait_for(lambda: sum(1 for s, w in events(p.log(peer_log)) if w.startswith("handed_back") and s >= t0)
                        > before, timeout=20), p.log(peer_log)
        time.sleep(UP)
        back = max(s for s, w in events(p.log(peer_log)) if w.startswith("handed_back"))
        windows.append((name, t0, back, time.time()))
    for s in streams:
        s.wait(timeout=seconds + 30)
    # The last lives stop without a drain, the capture first: what they
    # send while stopping is no cycle's.
    stop_capture(t, cap, cap_path)
    for name in ("a", "b", "r"):
        t.stop(p.procs[name])
    frames = esp_frames(cap_path)
    reused = used_twice(frames)
    rows = []
    flows = {h: flow(tmp / f"{h}.json") for h in ("h1", "h2")}
    for name, start, back, end in windows:
        lost = []
        for h in ("h1", "h2"):
            sent, echoed = flows[h]
            lost.append(sum(1 for k_, s in enumerate(sent) if start <= s < end and k_ not in echoed))
        # The drained node's host: lost around the drain, and around the
        # return (from the peer's hand-back on).
        sent, echoed = flows["h1" if name == "a" else "h2"]
        at_return = sum(1 for k_, s in enumerate(sent) if back <= s < end and k_ not in echoed)
        rows.append((name, *lost, at_return))
    # A freshly started pair refuses its inbound SAs' first packets
    # (strict mode: the first lives cannot know what an earlier one
    # accepted): counted apart, as no cycle's.
    home = {0x1001: "a", 0x2001: "b"}

    def replays(log, spi):
        return sum(sa_drops(p.log(log), spi, "in", r) for r in ("replayed", "too_old"))

    at_start = sum(replays(f"{home[spi]}0.log", spi) for spi in home)
    refused = sum(replays(log, spi) for spi in home for node in ("a", "b") for log in lives[node]) - at_start
    refused_r = sum(sa_drops(p.log("r.log"), spi, "in", r) for spi in (0x1000, 0x2000)
                    for r in ("replayed", "too_old"))
    mv = moves(frames)
    report(f"{n} drain-and-return cycles, 1000 datagrams/s from h1 (via a) and h2 (via b) both ways, "
           f"state directories {'on' if keep_state else 'off'}:")
    report("| cycle | drained | h1 lost | h2 lost | of the drained node's, at the return |")
    report("|---:|---|---:|---:|---:|")
    for k, (name, l1, l2, ret) in enumerate(rows):
        report(f"| {k + 1} | {name} | {l1} | {l2} | {ret} |")
    jumps = [j for _, _, _, j in mv]
    skips = gaps(frames)
    report(f"SA moves between the nodes seen on the wire: {len(mv)}; sequence jumps at them: "
           f"max {max(jumps, default=0)}, {sum(1 for j in jumps if j)} of them non-zero; "
           f"numbers skipped within a node's run: {len(skips)} times, at most {max((j for _, _, j in skips), default=0)}")
    report(f"fresh packets refused as replays in the cycles: at the pair {refused}, at r {refused_r} "
           f"(at the pair's first start, before any cycle: {at_start}); "
           f"ESP frames captured: {len(frames)}; (SPI, seq) used twice: {reused}")
    return {"rows": rows, "moves": mv, "gaps": skips, "refused": refused, "refused_r": refused_r,
            "reused": reused, "frames": len(frames)}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 20
    repo = pathlib.Path(__file__).resolve().parents[2]
    espgate = args[1] if len(args) > 1 else str(repo / "target" / "debug" / "espgate")
    keep_state = "--no-state" not in sys.argv
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="espgate-maintenance-"))
    t = Topology(prefix())
    try:
        import os
        os.environ["ESPGATE_STATE_DIR"] = str(tmp / "state")
        os.environ["ESPGATE_LOCK_DIR"] = str(tmp / "locks")
        r = cycles(t, espgate, tmp, n, keep_state)
        return 0 if r["reused"] == 0 else 1
    finally:
        t.cleanup()


if __name__ == "__main__":
    sys.exit(main())
