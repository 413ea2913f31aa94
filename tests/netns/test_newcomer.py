"""The README's newcomer path, as written: `scripts/pair-in-namespaces up`
builds the pair, the remote gateway, the host processor and the hosts in
namespaces; the commands it prints are run as printed (the ping from h1 to
h3, `sa list`, `peer`, `top`, `status`, the kill -9 of node a and its
restart, the drain of a), each checked for what it says it shows; `down`
leaves no namespace, link, process or file behind."""

import json
import os
import pathlib
import re
import shlex
import subprocess

import pytest
from topology import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "pair-in-namespaces"
PREFIX = "esg-"
DIR = pathlib.Path("/run/esg-pair")


def leftovers():
    """What the script made that still exists: its namespaces, links of its
    prefix in this namespace, its directory, espgate processes using it."""
    found = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
             if ns.startswith(PREFIX)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [m for m in re.findall(r"^\d+: ([^:@]+)", links, re.M) if m.startswith(PREFIX)]
    if DIR.exists():
        found.append(str(DIR))
    for proc in pathlib.Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "espgate" in cmdline and str(DIR) in cmdline:
            found.append(f"pid {proc.name}: {cmdline.strip()}")
    return found


def printed(out):
    """The commands `up` printed, ready to paste: the indented lines after
    "The pair runs.", comments left out."""
    tail = out.split("The pair runs.", 1)[1]
    return [line.split("  #")[0].strip() for line in tail.splitlines()
            if line.startswith("  ") and not line.strip().startswith("#")]


def one(commands, *words):
    """The printed command holding every one of `words`."""
    found = [c for c in commands if all(w in c for w in words)]
    assert len(found) == 1, f"{words} in {len(found)} printed commands: {commands}"
    return found[0]


def run(cmd, *extra, timeout=60):
    """A printed command, as a shell would run it, with `extra` arguments."""
    return subprocess.run(["bash", "-c", cmd + "".join(f" {shlex.quote(e)}" for e in extra)],
                          capture_output=True, text=True, timeout=timeout)


def ok(cmd, *extra, timeout=60):
    r = run(cmd, *extra, timeout=timeout)
    assert r.returncode == 0, f"{cmd} {' '.join(extra)}: {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def replies(ping_out):
    m = re.search(r"(\d+) received", ping_out)
    return int(m.group(1)) if m else 0


def sas(sa_list_cmd):
    """{(spi, direction): SA} from a printed `sa list`, asked for JSON."""
    return {(s["spi"], s["direction"]): s for s in json.loads(ok(sa_list_cmd, "--json"))["sas"]}


def test_the_printed_commands_work_and_down_leaves_nothing(espgate, capsys):
    if os.geteuid() != 0:
        pytest.fail("network-namespace tests need root (CI runs as root)")
    before = leftovers()
    if before:
        pytest.fail(f"a pair of scripts/pair-in-namespaces is up already (`down` it first): {before}")
    env = {**os.environ, "ESPGATE": espgate}
    down = f"{SCRIPT} down"
    try:
        up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, env=env, timeout=300)
        with capsys.disabled():
            print("\n" + up.stdout + up.stderr)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "alive and synced" in up.stdout and "3 received" in up.stdout, up.stdout
        cmds = printed(up.stdout)
        ping_h1 = one(cmds, "esg-h1 ping", "10.3.0.10")
        sa_list_a = one(cmds, "sa list", "a.sock")
        sa_list_b = one(cmds, "sa list", "b.sock")
        peer_a, peer_b = one(cmds, "peer", "a.sock"), one(cmds, "peer", "b.sock")
        down = one(cmds, "pair-in-namespaces down")

        # The ping, a node's SAs, its pair, top and status, as printed.
        assert replies(ok(ping_h1, "-c", "3", "-W", "2")) == 3
        table = ok(sa_list_a)
        assert re.search(r"^0x1000\s+outbound\s+\d+\s+1\s+1\s+active", table, re.M), table
        assert re.search(r"^0x2000\s+outbound\s+\d+\s+2\s+2\s+standby", table, re.M), table
        assert "alive and synced; holding 0" in ok(peer_a)
        assert "0x1000" in ok(one(cmds, "top", "a.sock"), "--count", "1")
        assert re.search(r"^node a: pid \d+", ok(one(cmds, "status")), re.M)

        # kill -9 of a: the host has b take its SAs over and fences a; h1's
        # traffic comes back through b (after the strict takeover's refusals).
        ok(one(cmds, "kill -9"))
        assert wait_for(lambda: "holding 2" in run(peer_b).stdout, timeout=10), run(peer_b).stdout
        assert wait_for(lambda: "b fence: ok" in (DIR / "host.log").read_text(), timeout=10), \
            (DIR / "host.log").read_text()
        assert replies(run(ping_h1, "-c", "40", "-i", "0.05", "-W", "1").stdout) > 0, \
            "h1's traffic never came back through b"
        assert replies(ok(ping_h1, "-c", "3", "-W", "2")) == 3
        assert sas(sa_list_b)[(0x1000, "outbound")]["state"] == "active"

        # a comes back (the printed start, once for the kill and once for
        # the drain: the same line), syncs, and the host has b hand back.
        start_a = [c for c in cmds if c.endswith(" start a")]
        assert len(start_a) == 2 and start_a[0] == start_a[1], cmds
        ok(start_a[0])
        assert wait_for(lambda: "b hand_back: ok" in (DIR / "host.log").read_text(), timeout=20), \
            (DIR / "host.log").read_text()
        assert wait_for(lambda: sas(sa_list_a)[(0x1000, "outbound")]["state"] == "active", timeout=5)
        run(ping_h1, "-c", "40", "-i", "0.05", "-W", "1")
        assert replies(ok(ping_h1, "-c", "3", "-W", "2")) == 3

        # The drain: a hands its SAs to b with their exact state and stops;
        # h1's traffic goes on through b with no packet refused.
        refused = sas(sa_list_b)[(0x1001, "inbound")]["drops"]
        drained = ok(one(cmds, "drain", "a.sock"))
        assert "drained: 2 SAs" in drained, drained
        pid = int((DIR / "a.pid").read_text())
        assert wait_for(lambda: not pathlib.Path(f"/proc/{pid}").exists()
                        or "State:\tZ" in pathlib.Path(f"/proc/{pid}/status").read_text(), timeout=10)
        assert "holding 2" in ok(peer_b)
        assert replies(ok(ping_h1, "-c", "5", "-i", "0.2", "-W", "2")) == 5
        after = sas(sa_list_b)[(0x1001, "inbound")]
        assert after["state"] == "active" and after["drops"] == refused, \
            f"b refused packets of a's inbound SA after the drain: {refused} then {after['drops']}"
    finally:
        r = run(down)
        left = leftovers()
        # Whatever `down` missed goes all the same (it was checked absent
        # before `up`), and then fails the test.
        for ns in left:
            if ns.startswith(PREFIX):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", str(DIR)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert not left, f"`down` left behind: {left}"
