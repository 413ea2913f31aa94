"""espgate built with the `dpdk` feature, on DPDK ports (EAL with
--no-huge --no-pci and vdevs):

- pcap in, pcap out through DPDK's net_pcap, and Scapy decrypts the ESP
  written out to the exact inner packets;
- node A on net_af_packet vdevs over the veths of the namespace topology,
  node B on AF_PACKET: ping and UDP between Linux hosts, only ESP on the
  link.

ESPGATE must point to a binary built with `--features dpdk` (scripts/test
builds one)."""

import os
import shutil
import signal
import subprocess
import time

import pytest
from scapy.all import IP, UDP, Ether, Raw, rdpcap, wrpcap
from scapy.layers.ipsec import ESP, SecurityAssociation
from test_gateway import KEY_AB, KEY_BA, build, check_wire, exchange, node_yaml, start_capture, start_node


def needs_dpdk(espgate):
    r = subprocess.run([espgate, "info"], capture_output=True, text=True)
    if "dpdk" not in r.stdout:
        pytest.fail(f"{espgate} was built without the dpdk feature: {r.stdout.strip()}")


def eal(prefix, *vdevs):
    args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", prefix, "--log-level", "*:warning"]
    for v in vdevs:
        args += ["--vdev", v]
    return "[" + ", ".join(f'"{a}"' for a in args) + "]"


@pytest.fixture
def file_prefix():
    p = f"eg{os.getpid()}dp"
    yield p
    shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)


def test_net_pcap_in_and_out_scapy_decrypts(espgate, tmp_path, file_prefix):
    needs_dpdk(espgate)
    inners = [IP(src="10.1.0.1", dst="10.2.0.1", id=k, ttl=64) / UDP(sport=1000 + k, dport=2000) / Raw(bytes([k % 251]) * (1 + k * 13))
              for k in range(100)]
    wrpcap(str(tmp_path / "plain.pcap"), [Ether(src="02:00:00:00:01:10", dst="02:00:00:00:01:01") / p for p in inners])
    wrpcap(str(tmp_path / "empty.pcap"), [Ether()])
    (tmp_path / "empty.pcap").write_bytes((tmp_path / "empty.pcap").read_bytes()[:24])
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"""node: {{ name: a }}
dpdk:
  eal_args: {eal(file_prefix, f"net_pcap0,rx_pcap={tmp_path}/plain.pcap,tx_pcap={tmp_path}/lan_out.pcap", f"net_pcap1,rx_pcap={tmp_path}/empty.pcap,tx_pcap={tmp_path}/esp.pcap")}
ports:
  - {{ name: lan, role: protected, backend: dpdk, device: net_pcap0, mac: "02:00:00:00:01:01", address: 10.1.0.254/24 }}
  - {{ name: wan, role: unprotected, backend: dpdk, device: net_pcap1, mac: "02:00:00:00:01:02", address: 172.16.0.1/24 }}
sas:
  - {{ spi: 0x1000, direction: outbound, aead: aes-128-gcm, key: {KEY_AB}, tunnel: {{ src: 172.16.0.1, dst: 172.16.0.2 }} }}
spd:
  - {{ direction: out, src: 10.1.0.0/24, dst: 10.2.0.0/24, action: protect, sa: 0x1000 }}
neighbours:
  - {{ ip: 172.16.0.2, mac: "02:00:00:00:02:02" }}
""")
    r = subprocess.run([espgate, "run", "--config", str(cfg), "--duration", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "encrypted 100" in r.stdout, r.stdout
    sa = SecurityAssociation(ESP, spi=0x1000, crypt_algo="AES-GCM", crypt_key=bytes.fromhex(KEY_AB[2:]),
                             tunnel_header=IP(src="172.16.0.1", dst="172.16.0.2"))
    out = rdpcap(str(tmp_path / "esp.pcap"))
    assert len(out) == len(inners)
    for k, (f, want) in enumerate(zip(out, inners)):
        assert f[Ether].dst == "02:00:00:00:02:02" and f[IP].proto == 50
        assert f[ESP].seq == k + 1
        plain = sa.decrypt(f[IP].copy())
        want = want.copy()
        want.ttl -= 1
        del want.chksum
        assert bytes(plain) == bytes(IP(bytes(want))), f"packet {k}"


def test_dpdk_node_on_net_af_packet_between_linux_hosts(topo, espgate, tmp_path, file_prefix):
    needs_dpdk(espgate)
    ha, a, b, hb = build(topo)
    yaml_a = node_yaml("a", "10.1.0.254/24", "172.16.0.1/24", "172.16.0.2", "10.1.0.0/24", "10.2.0.0/24", "0x1000", KEY_AB, "0x2000", KEY_BA)
    yaml_a = yaml_a.replace("backend: af_packet, interface: lan", "backend: dpdk, device: net_af_packet0")
    yaml_a = yaml_a.replace("backend: af_packet, interface: wan", "backend: dpdk, device: net_af_packet1")
    yaml_a += f"dpdk:\n  eal_args: {eal(file_prefix, 'net_af_packet0,iface=lan', 'net_af_packet1,iface=wan')}\n"
    na = start_node(topo, espgate, a, tmp_path, "a", yaml_a)
    nb = start_node(topo, espgate, b, tmp_path, "b", node_yaml("b", "10.2.0.254/24", "172.16.0.2/24", "172.16.0.1", "10.2.0.0/24", "10.1.0.0/24", "0x2000", KEY_BA, "0x1000", KEY_AB))
    cap = start_capture(topo, b, "wan", tmp_path / "wan.pcap")
    exchange(topo, ha, hb, count=500)
    time.sleep(1.0)  # let the capture drain its ring before it stops
    topo.stop(cap, signal.SIGINT)
    assert topo.stop(na) == 0 and topo.stop(nb) == 0
    log_a = (tmp_path / "a.log").read_text()
    assert "node a: rx" in log_a, log_a
    assert check_wire(tmp_path / "wan.pcap") >= 500
