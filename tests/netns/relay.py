"""A two-port relay that reorders and delays frames: what the chaos
harness puts on the mirror link instead of its bridge for a while (this
kernel has no netem). Every frame from one port leaves by the other; each
is held back by a random delay up to DELAY_MS, and with probability P two
frames in a row swap places. With `pad`, every frame leaves as a real NIC
and switch may deliver it: padded to Ethernet's 60-byte minimum and with a
4-byte trailer after it. Runs until SIGTERM; prints how many frames it
moved, reordered and padded.

    relay.py IF1 IF2 P DELAY_MS [pad]
"""

import heapq
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003


def main(if1, if2, p, delay_ms, pad):
    socks = {}
    for name in (if1, if2):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    other = {if1: socks[if2], if2: socks[if1]}
    rng = random.Random()
    pending = []  # (due, order, out socket, frame)
    order = 0
    last_due = 0.0
    moved = swapped = padded = 0
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    print("relay: ready", flush=True)
    while running:
        now = time.monotonic()
        timeout = max(0.0, pending[0][0] - now) if pending else 0.05
        ready, _, _ = select.select(list(socks.values()), [], [], min(timeout, 0.05))
        for s in ready:
            name = next(n for n, v in socks.items() if v is s)
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING:
                    continue  # what this relay sent itself
                if pad:
                    frame = frame.ljust(60, b"\0") + b"\xde\xad\xbe\xef"
                    padded += 1
                due = time.monotonic() + rng.uniform(0, delay_ms / 1000)
                if last_due > time.monotonic() and rng.random() < p:
                    # Overtake the frame queued just before, still waiting.
                    due = min(due, last_due - 1e-4)
                    swapped += 1
                last_due = due
                order += 1
                heapq.heappush(pending, (due, order, other[name], frame))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, out, frame = heapq.heappop(pending)
            try:
                out.send(frame)
                moved += 1
            except OSError:
                pass
    print(f"relay: moved {moved} frames, {swapped} overtook another, {padded} padded", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5:] == ["pad"])
