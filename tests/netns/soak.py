"""A soak run: the pair of test_failover's topology (nodes a and b, the
remote gateway r, Linux hosts) under steady traffic both ways for a given
time, sampled every few seconds: each node's resident memory, its traffic
and drop counters, the mirror link's queue and frames, the commands
waiting in the workers' rings. Writes soak.csv and soak.svg (memory over
time) and prints how memory moved after the warm-up.

    python3 tests/netns/soak.py SECONDS [--every S] [--rate R] [--out DIR]   (root; scripts/soak)
"""

import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_failover import HERE, Pair  # noqa: E402
from topology import Topology, prefix, wait_for, wait_udp_listening  # noqa: E402

REPO = HERE.parents[1]
NODES = ("a", "b", "r")


def rss_kib(pid):
    """Resident memory of the espgate process under `ip netns exec` (pid is
    the exec's: it becomes espgate)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# A sample a node did not answer is written as this, never as 0: a
# refused or timed-out request must not read as "queue at 0", and the
# summary counts them (the run fails if there are any).
NO_ANSWER = ""


def ask(espgate, sock, what, failures):
    """The node's JSON answer to `espgate WHAT --json`, or None (the failure
    appended to `failures`) if it did not answer."""
    try:
        r = subprocess.run([espgate, what, "--json", "--control", str(sock)], capture_output=True, text=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        failures.append(f"{sock.name} {what}: no answer in 10 s")
        return None
    if r.returncode != 0:
        failures.append(f"{sock.name} {what}: exit {r.returncode}: {r.stderr.strip()}")
        return None
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as e:
        failures.append(f"{sock.name} {what}: not JSON ({e}): {r.stdout[:200]!r}")
        return None


def field(answer, *path):
    """answer[path[0]][path[1]]..., or NO_ANSWER when there was no answer
    (a field missing from an answer is a KeyError: the format moved)."""
    if answer is None:
        return NO_ANSWER
    for k in path:
        answer = answer[k]
    return answer


def svg(rows, path, warm):
    """Memory of each node over time, as an SVG line plot."""
    w, h, m = 720, 360, 60
    t_max = max(r["t"] for r in rows) or 1
    v_max = max(r[f"{n}_rss_kib"] for r in rows for n in NODES) * 1.1 or 1
    x = lambda t: m + (w - 2 * m) * t / t_max  # noqa: E731
    y = lambda v: h - m - (h - 2 * m) * v / v_max  # noqa: E731
    colors = {"a": "#1f77b4", "b": "#d62728", "r": "#2ca02c"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle">espgate soak: resident memory (MiB) over time (s)</text>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{x(warm)}" y1="{m}" x2="{x(warm)}" y2="{h - m}" stroke="#999" stroke-dasharray="4"/>',
           f'<text x="{x(warm) + 4}" y="{m + 12}" fill="#999">end of warm-up</text>']
    for k in range(5):
        v = v_max * k / 4
        out.append(f'<text x="{m - 6}" y="{y(v) + 4}" text-anchor="end">{v / 1024:.0f}</text>')
        t = t_max * k / 4
        out.append(f'<text x="{x(t)}" y="{h - m + 16}" text-anchor="middle">{t:.0f}</text>')
    for i, n in enumerate(NODES):
        pts = " ".join(f"{x(r['t']):.1f},{y(r[f'{n}_rss_kib']):.1f}" for r in rows)
        out.append(f'<polyline fill="none" stroke="{colors[n]}" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{w - m + 6}" y="{m + 16 * i}" fill="{colors[n]}">{n}</text>')
    out.append("</svg>")
    pathlib.Path(path).write_text("\n".join(out))


def soak(topo, espgate, tmp, seconds, every, rate, out):
    p = Pair(topo, espgate, pathlib.Path(tmp), {})
    sock = {n: pathlib.Path(tmp) / f"{n}.sock" for n in NODES}
    procs = {n: p.start(n, f"{n}.log", "--control", str(sock[n])) for n in NODES}
    assert wait_for(lambda: "synced" in p.log("a.log") and "synced" in p.log("b.log"), timeout=30), "the pair did not sync"
    topo.start(p.h3, "python3", str(HERE / "flow.py"), "echo", "7000")
    wait_udp_listening(topo, p.h3, 7000)
    streams = [topo.start(h, "python3", str(HERE / "flow.py"), "stream", "10.3.0.10", "7000", str(seconds + 5),
                          str(pathlib.Path(tmp) / f"{name}.json"), str(rate))
               for h, name in ((p.h1, "h1"), (p.h2, "h2"))]
    rows = []
    failures = []
    t0 = time.time()
    while time.time() - t0 < seconds:
        row = {"t": round(time.time() - t0, 1)}
        for n in NODES:
            row[f"{n}_rss_kib"] = rss_kib(procs[n].pid)
            stats = ask(espgate, sock[n], "stats", failures)
            row[f"{n}_rx"] = field(stats, "total", "rx")
            row[f"{n}_tx"] = field(stats, "total", "tx")
            drops = field(stats, "total", "drops")
            row[f"{n}_drops"] = NO_ANSWER if drops == NO_ANSWER else sum(drops.values())
            row[f"{n}_commands_pending"] = field(stats, "total", "commands_pending")
            peer = ask(espgate, sock[n], "peer", failures)
            # r has no mirror section (its answer says null): empty cells too.
            mirror = None if peer is None else peer["mirror"]
            row[f"{n}_mirror_queued"] = field(mirror, "queued")
            row[f"{n}_mirror_frames_sent"] = field(mirror, "frames_sent")
        rows.append(row)
        time.sleep(max(0.0, every - (time.time() - t0 - row["t"])))
    for s in streams:
        topo.stop(s)
    for n in NODES:
        topo.stop(procs[n])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "soak.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    warm = seconds / 5
    svg(rows, out / "soak.svg", warm)
    summary = {}
    for n in NODES:
        after = [r[f"{n}_rss_kib"] for r in rows if r["t"] >= warm]
        start, end, peak = after[0], after[-1], max(after)
        queued = [r[f"{n}_mirror_queued"] for r in rows if r[f"{n}_mirror_queued"] != NO_ANSWER]
        sent = [r[f"{n}_tx"] for r in rows if r[f"{n}_tx"] != NO_ANSWER]
        summary[n] = {"rss_after_warmup_kib": start, "rss_end_kib": end, "peak_kib": peak,
                      "change": f"{100 * (end - start) / start:+.1f} %",
                      "packets": sent[-1] if sent else None,
                      "max_mirror_queue": max(queued) if queued else None,
                      "samples_unanswered": sum(r[f"{n}_tx"] == NO_ANSWER for r in rows)}
    summary["failed_requests"] = failures
    return summary, rows


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1800
    opt = lambda k, d: type(d)(sys.argv[sys.argv.index(k) + 1]) if k in sys.argv else d  # noqa: E731
    every, rate = opt("--every", 5.0), opt("--rate", 1000)
    out = pathlib.Path(opt("--out", str(REPO / "target" / "soak")))
    espgate = os.environ.get("ESPGATE", str(REPO / "target" / "release" / "espgate"))
    if os.geteuid() != 0:
        sys.exit("soak: needs root (network namespaces)")
    topo = Topology(prefix())
    with tempfile.TemporaryDirectory(prefix="espgate-soak-") as tmp:
        try:
            print(f"soak: {seconds:.0f} s, {rate} datagrams/s from each of two hosts, sampled every {every} s", flush=True)
            summary, rows = soak(topo, espgate, tmp, seconds, every, rate, out)
        finally:
            topo.cleanup()
    print(json.dumps(summary, indent=2))
    print(f"soak: {len(rows)} samples in {out / 'soak.csv'}, plot {out / 'soak.svg'}")
    if summary["failed_requests"]:
        sys.exit(f"soak: FAIL: {len(summary['failed_requests'])} control requests unanswered "
                 f"(empty cells in the CSV), first: {summary['failed_requests'][0]}")


if __name__ == "__main__":
    main()
