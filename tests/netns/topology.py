"""Network namespaces as real hosts: each test builds its own topology
with `ip netns` and veth pairs, and tears every namespace down afterwards,
even on failure. Needs root."""

import json
import os
import random
import signal
import socket
import subprocess
import time


def sh(*cmd, check=True, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Topology:
    """Namespaces, veth pairs and the processes started in them."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.namespaces = []
        self.procs = []

    def ns(self, name):
        full = f"{self.prefix}{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        self.run(full, "ip", "link", "set", "lo", "up")
        # No IPv6 chatter (router solicitations, DAD) on these links.
        self.run(full, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        return full

    def veth(self, ns1, if1, mac1, ns2, if2, mac2):
        """A veth pair between two namespaces, up, with fixed MACs and no
        checksum offload (a frame read by AF_PACKET must carry its real
        checksum, as on a physical wire)."""
        sh("ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)
        for ns, ifname, mac in ((ns1, if1, mac1), (ns2, if2, mac2)):
            self.run(ns, "ip", "link", "set", ifname, "address", mac)
            self.run(ns, "ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")
            self.run(ns, "ip", "link", "set", ifname, "up")

    def host(self, ns, ifname, addr, gateway):
        self.run(ns, "ip", "addr", "add", addr, "dev", ifname)
        self.run(ns, "ip", "route", "add", "default", "via", gateway)

    def run(self, ns, *cmd, check=True, timeout=60):
        return sh("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    def start(self, ns, *cmd, log=None):
        out = open(log, "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def cleanup(self):
        """Kills what is left and deletes every namespace; raises, naming
        each, if a namespace could not be deleted (a leak would otherwise
        pass unseen), after trying them all."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        failed = []
        for ns in self.namespaces:
            r = sh("ip", "netns", "del", ns, check=False)
            if r.returncode != 0:
                failed.append(f"{ns}: {r.stderr.strip()}")
        self.namespaces = []
        if failed:
            raise RuntimeError("namespaces left behind: " + "; ".join(failed))


_topologies = 0


def prefix():
    """A namespace prefix of its own for each topology: the process id and
    a count, so a namespace one test leaked never collides with a later
    test's (nor with another run's). Namespaces a dead run of this process
    id left behind are deleted first."""
    global _topologies
    _topologies += 1
    p = f"eg{os.getpid()}t{_topologies}-"
    listed = sh("ip", "netns", "list", check=False).stdout.split()
    for ns in listed:
        if ns.startswith(p):
            sh("ip", "netns", "del", ns)
    return p


def run_seed():
    """The seed of a run's random moments: $ESPGATE_TEST_SEED, else a fresh
    one. Printed by whoever uses it, so a failing run can be replayed."""
    seed = os.environ.get("ESPGATE_TEST_SEED")
    return int(seed) if seed else random.randrange(1 << 31)


def udp_listening(topo, ns, port):
    """Whether a socket in namespace `ns` is bound to UDP `port`."""
    out = topo.run(ns, "ss", "-Hlun", check=False).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3)


def wait_udp_listening(topo, ns, port, timeout=10.0):
    """Waits until a UDP server in `ns` has bound `port` (in place of a
    sleep after starting it); raises if it never does."""
    if not wait_for(lambda: udp_listening(topo, ns, port), timeout=timeout):
        raise RuntimeError(f"nothing listens on UDP {port} in {ns} after {timeout} s")


def wait_file_settles(path, quiet=0.3, timeout=10.0):
    """Waits until `path` has stopped growing for `quiet` seconds (a
    capture that has written what its ring held), at most `timeout`."""
    seen = {"size": -1, "since": time.time()}

    def settled():
        size = path.stat().st_size if path.exists() else -1
        if size != seen["size"]:
            seen.update(size=size, since=time.time())
        return time.time() - seen["since"] >= quiet

    return wait_for(settled, timeout=timeout)


def wait_for(pred, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def control_request(sock, line):
    """One raw line on a node's control socket; the parsed answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)

