"""A steady UDP flow whose every datagram is numbered and timed, and an
echo server for it: the failover tests see exactly which datagrams were
lost, and when.

    flow.py echo PORT
    flow.py stream HOST PORT SECONDS OUT.json [RATE [LIVE.json]]   (RATE datagrams/s, default 1000)

OUT.json holds {"sent": [t0, t1, ...], "echoed": {"k": t, ...},
"duplicates": N} with Unix times in seconds; N counts echoes of a datagram
already echoed (a replay that got through). SIGTERM ends a stream early
(what was sent and echoed so far is written). LIVE.json, rewritten every
0.2 s while the stream runs, holds {"at": t, "share": s}: the share of the
datagrams sent from 1.5 s to 0.5 s before `at` that were echoed (what a
harness polls to see the traffic flow again). SIGUSR1 slows a stream to
SLOW datagrams/s from then on, SIGUSR2 brings its RATE back.
"""

import json
import os
import signal
import socket
import sys
import time


def echo(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def flowing(sent, echoed, now):
    """The share of the datagrams sent from 1.5 s to 0.5 s before `now`
    that were echoed (None if none was sent then)."""
    k = len(sent)
    while k > 0 and sent[k - 1] >= now - 0.5:
        k -= 1
    late = []
    while k > 0 and sent[k - 1] > now - 1.5:
        k -= 1
        late.append(k)
    return sum(str(n) in echoed for n in late) / len(late) if late else None


SLOW = 10


def stream(host, port, seconds, out, rate, live=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent, echoed, duplicates = [], {}, 0
    start = time.time()
    period = 1.0 / rate
    due = start
    k = 0
    end = start + seconds

    def finish(*_):
        nonlocal end
        end = min(end, time.time())

    def pace(datagrams_per_s):
        nonlocal period, due
        period = 1.0 / datagrams_per_s
        due = time.time()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGUSR1, lambda *_: pace(SLOW))
    signal.signal(signal.SIGUSR2, lambda *_: pace(rate))
    told = 0.0
    while time.time() < end + 0.5:
        now = time.time()
        if live and now >= told + 0.2:
            told = now
            with open(live + ".tmp", "w") as f:
                json.dump({"at": now, "share": flowing(sent, echoed, now)}, f)
            os.replace(live + ".tmp", live)
        if now < end and now >= due:
            body = k.to_bytes(4, "big") + bytes((k + i) & 0xFF for i in range(60))
            try:
                s.sendto(body, (host, port))
            except OSError:
                pass  # no route for a moment: counted as lost
            sent.append(now)
            k += 1
            due += period
            continue
        try:
            data, _ = s.recvfrom(65535)
            n = int.from_bytes(data[:4], "big")
            if n < len(sent) and data == n.to_bytes(4, "big") + bytes((n + i) & 0xFF for i in range(60)):
                if str(n) in echoed:
                    duplicates += 1
                echoed.setdefault(str(n), time.time())
        except BlockingIOError:
            time.sleep(0.0002)
    with open(out, "w") as f:
        json.dump({"sent": sent, "echoed": echoed, "duplicates": duplicates}, f)


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(int(sys.argv[2]))
    else:
        rate = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
        live = sys.argv[7] if len(sys.argv) > 7 else None
        stream(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], rate, live)
