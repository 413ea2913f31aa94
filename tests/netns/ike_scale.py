"""CHILD_SAs installed through charon per second: node A's charon
(kernel-espgate) and a far end's (kernel-libipsec) bring up N CHILD_SAs
under one IKE_SA, each between a /32 behind A and the far network, all
started at once by the far end; printed: the time until espgate runs all
2N SAs, the rate, and node A's memory per SA (resident set before and
after).

    python3 tests/netns/ike_scale.py N [--no-state] [--pair]   (as root; scripts/ike-scale runs it)

The node keeps its state directory unless --no-state is given. With
--pair, charon drives a pair through `espgate host --control`
(test_ike_pair.py's topology): the time until both nodes hold all 2N SAs,
and each node's memory per SA.
"""

import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from ike import Charon, connection  # noqa: E402
from test_ike import build, start_node_a  # noqa: E402
from test_ike_pair import IkePair  # noqa: E402
from topology import Topology, control_request, prefix  # noqa: E402


def children(n, local, remote, start):
    """`n` CHILD_SAs named c0.. in a connection's children section."""
    out = []
    for k in range(n):
        out.append(f"""      c{k} {{
        local_ts = {local(k)}
        remote_ts = {remote(k)}
        esp_proposals = aes128gcm16
        {"start_action = start" if start else ""}
      }}
""")
    return "".join(out)


def with_children(conf, body):
    head, tail = conf.split("    children {\n", 1)
    # drop the default `net` child: everything up to its closing brace
    tail = tail.split("      }\n", 1)[1]
    return head + "    children {\n" + body + tail


def rss_kib(pid):
    """Resident set of the process `pid` and its children (ip netns exec
    runs espgate as a child), KiB."""
    total = 0
    for p in [pid, *children_of(pid)]:
        for line in pathlib.Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def children_of(pid):
    try:
        return [int(c) for c in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def main(n, extra, pair):
    espgate = os.environ.get("ESPGATE", str(pathlib.Path(__file__).resolve().parents[2] / "target/release/espgate"))
    tmp = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"ike-scale-{os.getpid()}"
    tmp.mkdir(parents=True)
    # The nodes' state, if they keep one, in the run's own directory.
    os.environ.setdefault("ESPGATE_STATE_DIR", str(tmp / "state"))
    os.environ.setdefault("ESPGATE_LOCK_DIR", str(tmp / "locks"))
    t = Topology(prefix())
    try:
        if pair:
            p = IkePair(t, espgate, tmp, extra)
            nodes = {"a": (p.procs["a"], p.socks["a"]), "b": (p.procs["b"], p.socks["b"])}
            ca = Charon(t, p.ike, tmp, "a", "espgate", socket=p.socks["host"]).start()
            cr = Charon(t, p.r, tmp, "r", "libipsec").start()
            ours, theirs, far = "192.0.2.1", "192.0.2.100", "10.3.0.0/24"
        else:
            hl, a, r, hr = build(t)
            node, sock = start_node_a(t, espgate, a, tmp, extra)
            nodes = {"A": (node, sock)}
            ca = Charon(t, f"{t.prefix}ike", tmp, "a", "espgate", socket=sock).start()
            cr = Charon(t, r, tmp, "r", "libipsec").start()
            ours, theirs, far = "172.16.0.1", "172.16.0.2", "10.2.0.0/24"
        behind_a = lambda k: f"10.1.{k // 250}.{k % 250 + 1}/32"  # noqa: E731
        ca.load(with_children(connection(("a", ours), ("r", theirs), "x", "x"),
                              children(n, behind_a, lambda k: far, False)))
        time.sleep(1)
        before = {name: rss_kib(proc.pid) for name, (proc, _) in nodes.items()}
        t0 = time.time()
        cr.load(with_children(connection(("r", theirs), ("a", ours), "x", "x", encap=True),
                              children(n, lambda k: far, behind_a, True)))
        counts = {}
        while time.time() - t0 < 600:
            counts = {name: len(control_request(sock, '{"op":"sa_list"}')["sas"]) for name, (_, sock) in nodes.items()}
            if min(counts.values()) >= 2 * n:
                break
            time.sleep(0.2)
        took = time.time() - t0
        count = min(counts.values())
        print("| CHILD_SAs | node | SAs in espgate | time to all | SAs installed/s | CHILD_SAs/s | resident, before → after | per SA |")
        print("|---|---|---|---|---|---|---|---|")
        for name, (proc, _) in nodes.items():
            after = rss_kib(proc.pid)
            print(f"| {n} | {name} | {counts[name]} | {took:.1f} s | {count / took:.0f} | {count / 2 / took:.0f} | "
                  f"{before[name] / 1024:.1f} → {after / 1024:.1f} MiB | "
                  f"{(after - before[name]) * 1024 / max(counts[name], 1):.0f} B |")
        return 0 if count >= 2 * n else 1
    finally:
        t.cleanup()


if __name__ == "__main__":
    args = sys.argv[1:]
    flags = ("--no-state", "--pair")
    extra = tuple(a for a in args if a == "--no-state")
    counts = [int(a) for a in args if a not in flags]
    sys.exit(main(counts[0] if counts else 1000, extra, "--pair" in args))
