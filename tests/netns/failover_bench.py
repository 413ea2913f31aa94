"""Failover figures over many kills (issue 5, scenario 5): the pair of
test_failover.py with h1's flow running throughout; ROUNDS times, node a
is killed with SIGKILL at a random moment, restarted 1.5 s later, and
handed its SAs back. For each kill: b's detection time (its peer_dead
event), the time to h1's first echo through b, and the datagrams lost in
the gap; then the median and the maximum, and a check that no (SPI,
sequence number) pair was sent twice over the whole run.

    python3 tests/netns/failover_bench.py [ROUNDS] [ESPGATE]    (as root)
"""

import pathlib
import random
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_failover import HERE, Pair, esp_frames, events, first, flow, resumed_after, start_capture, stop_capture  # noqa: E402
from topology import Topology, prefix, run_seed, wait_for, wait_udp_listening  # noqa: E402


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    repo = pathlib.Path(__file__).resolve().parents[2]
    espgate = sys.argv[2] if len(sys.argv) > 2 else str(repo / "target" / "debug" / "espgate")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="espgate-failover-"))
    seed = run_seed()
    rng = random.Random(seed)
    print(f"failover-bench: kill moments from ESPGATE_TEST_SEED={seed}", flush=True)
    t = Topology(prefix())
    try:
        p = Pair(t, espgate, tmp, {})
        cap_path = tmp / "wan.pcap"
        cap = start_capture(t, p.sw, "w-r", cap_path)
        p.start("r", "r.log")
        p.start("a", "a0.log")
        p.start("b", "b.log")
        assert wait_for(lambda: "synced" in p.log("a0.log") and "synced" in p.log("b.log"), timeout=20)
        t.start(p.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
        wait_udp_listening(t, p.h3, 7000)
        seconds = rounds * 4.5 + 2
        stream = t.start(p.h1, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", str(seconds),
                         str(tmp / "h1.json"))
        time.sleep(1.5)
        kills = []
        for k in range(rounds):
            time.sleep(rng.uniform(0.5, 1.5))
            kills.append(time.time())
            t.stop(p.procs["a"], signal.SIGKILL)
            time.sleep(1.5)
            p.start("a", f"a{k + 1}.log")
            assert wait_for(lambda: p.log("b.log").count("handed_back") > k, timeout=20), p.log("b.log")
            time.sleep(0.5)
        stream.wait(timeout=seconds + 30)
        for name in ("a", "b", "r"):
            t.stop(p.procs[name])
        stop_capture(t, cap, cap_path)
        sent, echoed = flow(tmp / "h1.json")
        eb = events(p.log("b.log"))
        rows = []
        for kill in kills:
            dead = first(eb, "peer_dead", kill)
            back, lost = resumed_after(sent, echoed, kill)
            rows.append((1e3 * (dead - kill) if dead else float("nan"),
                         1e3 * (back - kill) if back else float("nan"), lost))
        frames = esp_frames(cap_path)
        pairs = [(spi, seq) for _, _, spi, seq in frames]
        print(f"{rounds} kills of node a, 1000 datagrams/s from h1 throughout:")
        print("| | detection ms | first echo via b ms | datagrams lost |")
        print("|---|---:|---:|---:|")
        for name, f in (("median", statistics.median), ("max", max)):
            print(f"| {name} | {f(r[0] for r in rows):.0f} | {f(r[1] for r in rows):.0f} | {f(r[2] for r in rows):.0f} |")
        print(f"ESP frames captured: {len(frames)}; (SPI, seq) used twice: {len(pairs) - len(set(pairs))}")
        return 0 if len(pairs) == len(set(pairs)) else 1
    finally:
        t.cleanup()


if __name__ == "__main__":
    sys.exit(main())
