"""The deployment parts on their own: the container entrypoint in a network
namespace shaped like a container (dry run and refusals), the Dockerfile's
steps and runtime packages against the binary scripts/build makes, the
hugepage and NIC-binding scripts, and the systemd unit checked by
systemd-analyze."""

import json
import os
import pathlib
import time
import re
import shutil
import subprocess

import pytest
from topology import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "scripts" / "entrypoint"


@pytest.fixture
def container(topo):
    """A namespace with two interfaces addressed as Docker would."""
    c = topo.ns("c")
    peer = topo.ns("p")
    topo.veth(c, "eth0", "02:00:00:00:0c:01", peer, "p0", "02:00:00:00:0c:02")
    topo.veth(c, "eth1", "02:00:00:00:0c:03", peer, "p1", "02:00:00:00:0c:04")
    topo.run(c, "ip", "addr", "add", "10.1.0.11/24", "dev", "eth0")
    topo.run(c, "ip", "addr", "add", "192.0.2.11/24", "dev", "eth1")
    return c


def entry(topo, ns, env, *args):
    full = {"PATH": os.environ["PATH"], **env}
    return topo.run(ns, "env", *[f"{k}={v}" for k, v in full.items()], str(ENTRYPOINT), *args, check=False)


def test_entrypoint_finds_the_interfaces_by_subnet_and_execs_the_node(topo, container, tmp_path):
    r = entry(topo, container, {"ESPGATE_DRY_RUN": "1", "ESPGATE_BIN": "espgate", "ESPGATE_RUN_DIR": str(tmp_path / "run"),
                                "ESPGATE_TAPS": "dtwan:192.0.2.0/24 dtlan:10.1.0.0/24"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "eth1 (192.0.2.0/24) <-> tap dtwan" in out
    assert "eth0 (10.1.0.0/24) <-> tap dtlan" in out
    for step in ("+ ip addr flush dev eth0", "+ ip tuntap add dev dtlan mode tap multi_queue", "+ ip link set dtlan up",
                 "+ tc filter add dev eth0 ingress protocol all u32 match u32 0 0 action mirred egress redirect dev dtlan",
                 "+ tc filter add dev dtlan ingress protocol all u32 match u32 0 0 action mirred egress redirect dev eth0",
                 f"+ chmod 0700 {tmp_path}/run",
                 f"+ exec espgate run --config /etc/espgate/node.yaml --control {tmp_path}/run/control.sock"):
        assert step in out, f"{step!r} not in:\n{out}"
    # Dry run: nothing changed.
    links = topo.run(container, "ip", "-o", "link").stdout
    assert "dtlan" not in links
    # Arguments given: they are the node's command line.
    r = entry(topo, container, {"ESPGATE_DRY_RUN": "1", "ESPGATE_BIN": "/x/espgate"}, "info")
    assert r.stdout.strip().endswith("+ exec /x/espgate info"), r.stdout


def test_entrypoint_refuses_what_it_cannot_do_and_names_it(topo, container):
    cases = {
        "dtlan:10.9.0.0/24": "no interface has an address in 10.9.0.0/24",
        "dtlan": "'dtlan' is not TAP:SUBNET",
        "dtlan:10.1.0.0/33": "10.1.0.0/33 is not an IPv4 subnet",
        "dtlan:10.1.0/24": "10.1.0/24 is not an IPv4 subnet",
        "averyveryverylongtap:10.1.0.0/24": "must have 1 to 12 characters",
    }
    for taps, why in cases.items():
        r = entry(topo, container, {"ESPGATE_DRY_RUN": "1", "ESPGATE_TAPS": taps})
        assert r.returncode == 2, (taps, r.stdout, r.stderr)
        assert why in r.stderr, (taps, r.stderr)
    r = entry(topo, container, {"ESPGATE_DRY_RUN": "1", "ESPGATE_HUGEPAGES": "lots"})
    assert r.returncode == 2 and "is not a page count" in r.stderr


def test_entrypoint_bridges_taps_and_runs_the_release_binary(topo, container, tmp_path, release_espgate):
    """For real: the taps and bridges are made, the node (the binary the
    image ships) opens the taps as DPDK ports, answers ARP for its address
    through them, and its control socket sits in a 0700 directory."""
    binary = release_espgate
    peer = topo.namespaces[-1]
    topo.run(peer, "ip", "addr", "add", "10.1.0.10/24", "dev", "p0")
    prefix = f"egep{os.getpid()}"
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"""node: {{ name: c }}
workers: {{ count: 1, idle_sleep_us: 100 }}
dpdk:
  eal_args: [--no-huge, -m, "256", --no-pci, --file-prefix, {prefix}, --log-level, "*:warning", --vdev, "net_tap0,iface=dtlan", --vdev, "net_tap1,iface=dtwan"]
ports:
  - {{ name: lan, role: protected, backend: dpdk, device: net_tap0, mac: "02:00:00:00:0c:11", address: 10.1.0.11/24 }}
  - {{ name: wan, role: unprotected, backend: dpdk, device: net_tap1, mac: "02:00:00:00:0c:12", address: 192.0.2.11/24 }}
""")
    run_dir = tmp_path / "run"
    env = {"PATH": os.environ["PATH"], "ESPGATE_BIN": str(binary), "ESPGATE_RUN_DIR": str(run_dir),
           "ESPGATE_TAPS": "dtlan:10.1.0.0/24 dtwan:192.0.2.0/24"}
    node = topo.start(container, "env", *[f"{k}={v}" for k, v in env.items()], str(ENTRYPOINT),
                      "run", "--config", str(cfg), "--control", str(run_dir / "control.sock"),
                      log=tmp_path / "node.log")
    try:
        assert wait_for(lambda: (run_dir / "control.sock").exists(), timeout=20), (tmp_path / "node.log").read_text()
        assert oct((run_dir).stat().st_mode & 0o777) == "0o700"
        # ARP (broadcast) and then unicast frames to the port's MAC reach
        # the node: a UDP datagram to a network with no policy is dropped
        # as `policy`, counted.
        # The socket is there before the DPDK ports are open, so the
        # datagrams go until the node's ARP answer comes, and three more.
        topo.run(peer, "ip", "route", "add", "10.7.0.0/24", "via", "10.1.0.11")

        def send():
            topo.run(peer, "python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                     ".sendto(b'x', ('10.7.0.1', 9))")
            return "02:00:00:00:0c:11" in topo.run(peer, "ip", "neigh", "show", "10.1.0.11").stdout

        assert wait_for(send, timeout=20, step=0.2), topo.run(peer, "ip", "neigh", "show", "10.1.0.11").stdout
        for _ in range(3):
            send()
            time.sleep(0.2)
        stats = subprocess.run([str(binary), "stats", "--json", "--control", str(run_dir / "control.sock")],
                               capture_output=True, text=True, timeout=10)
        assert stats.returncode == 0, stats.stderr
        total = json.loads(stats.stdout)["total"]
        assert total["drops"]["policy"] >= 3, total
    finally:
        # No assert in here: it would replace the error that got us here.
        code = topo.stop(node)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    assert code == 0, (tmp_path / "node.log").read_text()


def test_the_dockerfile_builds_with_scripts_build_and_ships_what_the_binary_needs(release_espgate):
    docker = (REPO / "Dockerfile").read_text()
    assert "RUN scripts/build --release" in docker
    assert "COPY --from=build /src/target/release/espgate /usr/local/bin/espgate" in docker
    copied = re.search(r"^COPY (scripts/entrypoint scripts/hugepages) (\S+)/$", docker, re.M)
    assert copied, "the entrypoint and the hugepage script are copied together"
    for f in copied.group(1).split():
        assert os.access(REPO / f, os.X_OK), f
    assert f'ENTRYPOINT ["{copied.group(2)}/entrypoint"]' in docker
    packages = [line.strip() for line in (REPO / "scripts" / "runtime-packages").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    # Every library the binary links comes from a listed package (or from
    # libc6 / libgcc-s1, which every Debian image has).
    binary = release_espgate
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True).stdout)
    assert any(n.startswith("librte_eal") for n in needed), "scripts/build must build with DPDK"
    for lib in needed:
        owner = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True).stdout
        pkg = owner.split(":")[0].strip()
        assert pkg in packages or pkg in ("libc6", "libgcc-s1"), f"{lib} comes from {pkg!r}, not in scripts/runtime-packages"
    # The drivers the compose pair and the docs use are there, and every
    # listed package exists in Debian 12.
    for driver in ("librte-net-tap23", "librte-mempool-ring23"):
        assert driver in packages
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert len(re.findall(r"^Package: ", shown.stdout, re.M)) == len(packages)


def test_hugepages_reserve_mount_and_show(tmp_path):
    sysfs = pathlib.Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    before = int(sysfs.read_text())
    mnt = tmp_path / "huge"
    try:
        r = subprocess.run([REPO / "scripts" / "hugepages", str(before + 8), str(mnt)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert int(sysfs.read_text()) >= before + 8
        assert f"hugetlbfs mounted at {mnt}" in r.stdout, r.stdout
        again = subprocess.run([REPO / "scripts" / "hugepages", str(before + 8), str(mnt)], capture_output=True, text=True)
        assert again.returncode == 0, "a second run changes nothing and succeeds"
        bad = subprocess.run([REPO / "scripts" / "hugepages", "many"], capture_output=True, text=True)
        assert bad.returncode == 2 and "not a page count" in bad.stderr
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        sysfs.write_text(str(before))


def test_devbind_lists_network_devices_and_refuses_nothing_given():
    r = subprocess.run([REPO / "scripts" / "devbind", "--status"], capture_output=True, text=True)
    assert r.returncode == 0 and "Network devices" in r.stdout, r.stderr
    r = subprocess.run([REPO / "scripts" / "devbind", "--driver", "vfio-pci"], capture_output=True, text=True)
    assert r.returncode == 2 and "no PCI address" in r.stderr


def test_the_systemd_unit_verifies_and_runs_a_command_line_espgate_accepts(tmp_path, release_espgate):
    unit = (REPO / "scripts" / "systemd" / "espgate@.service").read_text()
    binary = release_espgate
    local = (unit.replace("/usr/local/bin/espgate", str(binary))
             .replace("/usr/local/lib/espgate/hugepages", str(REPO / "scripts" / "hugepages")))
    (tmp_path / "espgate@.service").write_text(local)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "espgate@a.service")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M).group(2).split()
    help_text = subprocess.run([binary, "run", "--help"], capture_output=True, text=True).stdout
    assert exec_start[0] == "run"
    for flag in (a for a in exec_start if a.startswith("--")):
        assert flag in help_text, f"espgate run has no {flag}"
