"""An attacker on the mirror link. The pair of test_failover runs with an
extra host plugged into the mirror bridge; after recording the link (and a
restart of b, for frames of an old epoch) the attacker sends a's mirror
port: frames with wrong MACs, frames whose SA states claim huge sequence
numbers (their MACs no longer match), b's valid frames replayed, b's
frames from before its restart, a's own frames looped back, frames too
short to hold a header, and authenticated frames with malformed records
(sealed with the key: what only a key holder could send). Every one must
be refused and counted under its reason, and no table of either node may
change; one authentic frame at the end shows the comparison would see a
change."""

import hashlib
import hmac
import json
import struct
import subprocess

from scapy.all import Ether, Raw, rdpcap, wrpcap
from test_failover import MAC, Pair
from topology import wait_file_settles, wait_for

MIRROR_KEY = bytes.fromhex("6d6972726f72206c696e6b206b6579206f6620746865206e65746e73207061")
ETHERTYPE = 0x88B5
MAC_LEN = 16


def seal(body):
    return body + hmac.new(MIRROR_KEY, body, hashlib.sha256).digest()[:MAC_LEN]


HEADER = ">BBHHHIQQQ"
HEADER_LEN = struct.calcsize(HEADER)


def header(frame):
    """(node, epoch, counter) of a mirror frame."""
    _, _, _, _, _, node, epoch, counter, _ = struct.unpack(HEADER, frame[:HEADER_LEN])
    return node, epoch, counter


def frame_body(records, count, node, epoch, counter, peer_epoch=0):
    """A mirror header (version 5, its length field set) and `records`."""
    return struct.pack(HEADER, 5, 0, count, HEADER_LEN + len(records), 0, node, epoch, counter,
                       peer_epoch) + records


def mirror_frames(pcap, src_mac):
    out = []
    for f in rdpcap(str(pcap)):
        if Ether in f and f[Ether].type == ETHERTYPE and f[Ether].src == src_mac:
            out.append(bytes(f[Ether].payload))
    return out


def with_sa_state(frame):
    """The offset of the first SA-state record's value, if the frame has one."""
    at, end = HEADER_LEN, struct.unpack(">H", frame[4:6])[0]
    while at + 3 <= end:
        kind, length = frame[at], struct.unpack(">H", frame[at + 1:at + 3])[0]
        if kind == 1:
            return at + 3 + 8
        at += 3 + length
    return None


def snapshot(espgate, sock):
    """What the attack must not change: every SA's state and the mirror's
    view of it, and the pair's state."""
    sas = json.loads(subprocess.run([espgate, "sa", "list", "--json", "--control", str(sock)],
                                    capture_output=True, text=True, check=True).stdout)["sas"]
    peer = json.loads(subprocess.run([espgate, "peer", "--json", "--control", str(sock)],
                                     capture_output=True, text=True, check=True).stdout)["mirror"]
    table = {(s["spi"], s["direction"]): (s["state"], s["owner"], s["seq"], s["lease_end"], s["packets"], s["mirror"])
             for s in sas}
    return table, peer


def test_forged_replayed_and_stale_mirror_frames_are_refused_and_change_nothing(topo, espgate, tmp_path, capsys):
    p = Pair(topo, espgate, tmp_path, {"dead_after": 20})
    x = topo.ns("x")
    topo.veth(x, "eth0", "02:00:00:00:66:01", p.sw, "m-x", "02:00:00:00:66:02")
    topo.run(p.sw, "ip", "link", "set", "m-x", "master", "brmir")
    sock = {n: tmp_path / f"{n}.sock" for n in ("a", "b")}
    p.start("r", "r.log")
    p.start("a", "a.log", "--control", str(sock["a"]))
    p.start("b", "b.log", "--control", str(sock["b"]))
    assert wait_for(lambda: "synced" in p.log("a.log") and "synced" in p.log("b.log"), timeout=20)

    def record(path):
        """The mirror link's frames while traffic moves the SAs."""
        cap = topo.start(p.sw, "dumpcap", "-q", "-i", "m-a", "-i", "m-b", "-w", str(path))
        assert wait_for(lambda: path.exists() and path.stat().st_size >= 24)
        for h in (p.h1, p.h2):
            topo.run(h, "ping", "-c", "100", "-i", "0.005", "-W", "1", "10.3.0.10", check=False)
        wait_file_settles(path)
        topo.stop(cap, 2)

    # b's frames of its first life, and a's own.
    old_cap = tmp_path / "old.pcapng"
    record(old_cap)
    # b restarts: its earlier frames are now of an old epoch.
    topo.stop(p.procs["b"])
    p.start("b", "b2.log", "--control", str(sock["b"]))
    assert wait_for(lambda: "synced" in p.log("b2.log") and p.log("a.log").count("peer_alive") >= 2, timeout=20), \
        p.log("a.log") + p.log("b2.log")
    new_cap = tmp_path / "new.pcapng"
    record(new_cap)

    old_b = mirror_frames(old_cap, MAC["b-mir"])
    new_b = mirror_frames(new_cap, MAC["b-mir"])
    own_a = mirror_frames(new_cap, MAC["a-mir"])
    assert old_b and new_b and own_a, "the link carried no mirror frames to record"
    assert header(old_b[0])[1] < header(new_b[0])[1], "b's restart began a new epoch"
    stated = [f for f in new_b if with_sa_state(f) is not None]
    assert stated, "no SA state crossed the link"

    attack = {"forged": [], "malformed": [], "replayed": [], "stale_epoch": [], "wrong_node": []}
    for k in range(40):
        f = bytearray(new_b[k % len(new_b)])
        f[-1 - k % MAC_LEN] ^= 0x5A
        attack["forged"].append(bytes(f))
    for k in range(40):
        f = bytearray(stated[k % len(stated)])
        at = with_sa_state(f)
        f[at:at + 8] = struct.pack(">Q", (1 << 62) + k)
        attack["forged"].append(bytes(f))
    attack["malformed"] += [bytes(range(k % 39)) for k in range(20)]
    for k in range(20):
        node, epoch, counter = header(new_b[-1])
        body = frame_body(bytes([1, 0, 200]) + b"\x00" * 5, 3, node, epoch, counter + 1000 + k)
        attack["malformed"].append(seal(body))
    attack["replayed"] = new_b[:30]
    attack["stale_epoch"] = old_b[:30]
    attack["wrong_node"] = own_a[:20]

    before = {n: snapshot(espgate, sock[n]) for n in ("a", "b")}
    frames = [Ether(dst=MAC["a-mir"], src="02:00:00:00:66:01", type=ETHERTYPE) / Raw(f)
              for reason in attack for f in attack[reason]]
    wrpcap(str(tmp_path / "attack.pcap"), frames)
    topo.run(x, "python3", "-c", "from scapy.all import rdpcap, sendp; "
             f"sendp(rdpcap('{tmp_path / 'attack.pcap'}'), iface='eth0', verbose=0)")
    sent = {r: len(f) for r, f in attack.items()}

    def refused_by_a():
        now = snapshot(espgate, sock["a"])[1]["rejected"]
        return {r: now[r] - before["a"][1]["rejected"][r] for r in attack}

    # Every frame sent is counted once a has handled it (the assertion
    # below says which were not, if this times out).
    wait_for(lambda: refused_by_a() == sent, timeout=10, step=0.1)
    after = {n: snapshot(espgate, sock[n]) for n in ("a", "b")}

    rejected = {r: after["a"][1]["rejected"][r] - before["a"][1]["rejected"][r] for r in attack}
    with capsys.disabled():
        print(f"\nforged traffic on the mirror link: sent to a {sent}; a refused {rejected}; "
              f"a's accepted frames went on ({before['a'][1]['frames_received']} -> {after['a'][1]['frames_received']})")
    assert rejected == sent, f"sent {sent}, refused {rejected}"
    for n in ("a", "b"):
        assert after[n][0] == before[n][0], f"{n}'s tables changed:\n{before[n][0]}\n{after[n][0]}"
        assert after[n][1]["peer_alive"] and after[n][1]["synced"]
        assert after[n][1]["taken_over"] == before[n][1]["taken_over"]
    assert after["a"][1]["frames_received"] > before["a"][1]["frames_received"], "a stopped hearing b"

    # The comparison sees a change when there is one: a key holder's frame
    # (authentic, next in b's epoch) raising b's SA 0x2000 is taken in.
    node, epoch, counter = header(new_b[-1])
    state = struct.pack(">IBBHQQQQHH", 0x2000, 0, 0, 0, 1 << 40, 0, 0, 0, 0, 0)
    body = frame_body(bytes([1]) + struct.pack(">H", len(state)) + state, 1, node, epoch, counter + 100_000)
    wrpcap(str(tmp_path / "genuine.pcap"), [Ether(dst=MAC["a-mir"], src=MAC["b-mir"], type=ETHERTYPE) / Raw(seal(body))])
    topo.run(x, "python3", "-c", "from scapy.all import rdpcap, sendp; "
             f"sendp(rdpcap('{tmp_path / 'genuine.pcap'}'), iface='eth0', verbose=0)")
    assert wait_for(lambda: snapshot(espgate, sock["a"])[0] != after["a"][0], timeout=5), \
        "an authentic state changed nothing: the table comparison cannot see a change"
