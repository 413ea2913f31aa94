"""docker-compose.yml without Docker (this machine has no engine): every
service becomes a network namespace, every compose network a Linux bridge,
each service's interfaces get the addresses compose gives them, and each
service runs its own command: the espgate nodes through scripts/entrypoint
with the service's environment, on DPDK net_tap ports, the release binary
the image ships. Then h1 and h2 reach h3 through the pair, the pair is
synchronised, and after a kill -9 of a, b carries h1's traffic too."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import yaml
from topology import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]


def load_compose():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    subnets = {n: v["ipam"]["config"][0]["subnet"] for n, v in doc["networks"].items()}
    return doc["services"], subnets


def ping(topo, ns, dst, count=3):
    r = topo.run(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", dst, check=False)
    return r.returncode == 0


def test_the_compose_pair_runs_in_namespaces(topo, tmp_path, capsys, release_espgate):
    binary = release_espgate
    services, subnets = load_compose()
    sw = topo.ns("sw")
    for net in subnets:
        topo.run(sw, "ip", "link", "add", f"br-{net}", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        topo.run(sw, "ip", "link", "set", f"br-{net}", "up")
    ns = {}
    mac = iter(range(1, 250))
    for name, svc in services.items():
        ns[name] = topo.ns(name)
        # Docker names a container's interfaces eth0, eth1, ... in the
        # order of its networks.
        for i, (net, conf) in enumerate(svc["networks"].items()):
            plen = subnets[net].split("/")[1]
            sw_if = f"{name}-{net}"[:15]
            topo.veth(ns[name], f"eth{i}", f"02:00:00:00:aa:{next(mac):02x}", sw, sw_if, f"02:00:00:00:bb:{next(mac):02x}")
            topo.run(sw, "ip", "link", "set", sw_if, "master", f"br-{net}")
            topo.run(ns[name], "ip", "addr", "add", f"{conf['ipv4_address']}/{plen}", "dev", f"eth{i}")
    # The compose files' configurations, with DPDK file prefixes of this
    # run's own (the containers' fixed espgate-NAME would meet another
    # run's, or a crashed run's, shared memory files on one host).
    conf_dir = tmp_path / "compose-conf"
    conf_dir.mkdir()
    prefixes = []
    for f in (REPO / "conf" / "compose").iterdir():
        text = f.read_text()
        for name in services:
            fixed = f"--file-prefix, espgate-{name},"
            if fixed in text:
                text = text.replace(fixed, f"--file-prefix, eg{os.getpid()}c{name},")
                prefixes.append(f"eg{os.getpid()}c{name}")
        (conf_dir / f.name).write_text(text)
    assert prefixes, "no --file-prefix espgate-NAME found in conf/compose"
    procs = {}
    for name, svc in services.items():
        if svc.get("entrypoint") == ["sh", "-c"]:
            topo.start(ns[name], "sh", "-c", svc["command"][0], log=tmp_path / f"{name}.log")
            continue
        # A node: the image's entrypoint, the service's environment and
        # command, the volume ./conf/compose mounted at /etc/espgate.
        command = [a.replace("/etc/espgate/", f"{conf_dir}/") for a in svc["command"]]
        run_dir = tmp_path / f"run-{name}"
        command = [a.replace("/run/espgate/", f"{run_dir}/") for a in command]
        env = {"PATH": os.environ["PATH"], "ESPGATE_BIN": binary, "ESPGATE_RUN_DIR": str(run_dir), **svc["environment"]}
        procs[name] = topo.start(ns[name], "env", *[f"{k}={v}" for k, v in env.items()],
                                 str(REPO / "scripts" / "entrypoint"), *command, log=tmp_path / f"{name}.log")
    sock = {n: tmp_path / f"run-{n}" / "control.sock" for n in procs}
    try:
        def peer(n):
            r = subprocess.run([binary, "peer", "--json", "--control", str(sock[n])], capture_output=True, text=True)
            return json.loads(r.stdout)["mirror"] if r.returncode == 0 else None

        def synced(n):
            p = sock[n].exists() and peer(n)
            return bool(p and p["synced"] and p["peer_alive"])

        assert wait_for(lambda: synced("a") and synced("b"), timeout=40), \
            "\n".join((tmp_path / f"{n}.log").read_text() for n in procs)
        def dump():
            """Each node's counters, SAs (drops by reason) and pair, and its log's end: what a failure needs."""
            out = []
            for n in procs:
                if sock[n].exists():
                    for what in (["stats"], ["sa", "list", "--json"], ["peer"]):
                        out.append(f"{n} {' '.join(what)}: " + subprocess.run(
                            [binary, *what, "--control", str(sock[n])], capture_output=True, text=True).stdout)
                out.append(f"{n} log:\n" + (tmp_path / f"{n}.log").read_text()[-3000:])
            return "\n".join(out)

        # Both sides' hosts reach h3 through their own node's SAs.
        assert wait_for(lambda: ping(topo, ns["h1"], "10.3.0.10", 2), timeout=20), "h1 cannot reach h3 through a\n" + dump()
        assert wait_for(lambda: ping(topo, ns["h2"], "10.3.0.10", 2), timeout=20), "h2 cannot reach h3 through b\n" + dump()
        sas = json.loads(subprocess.run([binary, "sa", "list", "--json", "--control", str(sock["a"])],
                                        capture_output=True, text=True).stdout)["sas"]
        by = {(s["spi"], s["direction"]): s for s in sas}
        assert by[(0x1000, "outbound")]["packets"] >= 2 and by[(0x1000, "outbound")]["state"] == "active"
        assert by[(0x2000, "outbound")]["state"] == "standby"
        # a dies: b takes its SAs over and answers for its addresses; h1
        # keeps its route to a's address and reaches h3 again.
        t0 = time.time()
        topo.stop(procs["a"], signal.SIGKILL)
        # b starts a's inbound SA at the bound a's peer stored (nothing
        # fresh refused) and, with no host here to fence a, may take an
        # inbound_interval (64) of r's packets past it: probe one at a time.
        assert wait_for(lambda: ping(topo, ns["h1"], "10.3.0.10", 1),
                        timeout=30), "h1 never got through b\n" + dump()
        recovered = time.time() - t0
        took = peer("b")
        with capsys.disabled():
            print(f"\ncompose pair in namespaces: synced, h1 and h2 reach h3; after kill -9 of a, h1 got through "
                  f"b {recovered:.1f} s later; b took over {took['taken_over']} SAs")
        assert took["taken_over"] >= 2 and took["holding"] >= 2
    finally:
        for name in ("b", "r"):
            if name in procs:
                topo.stop(procs[name])
        for p in prefixes:
            shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
