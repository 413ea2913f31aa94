"""A UDP echo server and a client that checks every echoed byte.

    udp_echo.py server PORT
    udp_echo.py client HOST PORT COUNT   -> prints "sent N received M intact K"
"""

import random
import socket
import sys
import time


def server(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def client(host, port, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    rng = random.Random(7)
    sent = received = intact = 0
    window = 16
    pending = {}
    k = 0
    deadline = time.time() + 60
    while (k < count or pending) and time.time() < deadline:
        while k < count and len(pending) < window:
            size = rng.randint(8, 1400)
            body = k.to_bytes(4, "big") + bytes(rng.getrandbits(8) for _ in range(size - 4))
            pending[k] = body
            s.sendto(body, (host, port))
            sent += 1
            k += 1
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            # Lost ones are counted as not received.
            pending.clear()
            continue
        n = int.from_bytes(data[:4], "big")
        if n in pending:
            received += 1
            if pending.pop(n) == data:
                intact += 1
    print(f"sent {sent} received {received} intact {intact}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
