"""A TCP echo server and a client that checks every echoed byte.

    tcp_echo.py server PORT
    tcp_echo.py client HOST PORT BYTES   -> prints "sent N echoed M intact yes|no"
"""

import random
import socket
import sys
import threading


def server(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def echo(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)


def client(host, port, count):
    rng = random.Random(11)
    body = bytes(rng.getrandbits(8) for _ in range(count))
    s = socket.create_connection((host, port), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = bytearray()

    def read():
        while len(got) < count:
            data = s.recv(65536)
            if not data:
                break
            got.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    at = 0
    while at < count:
        n = rng.randint(1, 3000)
        s.sendall(body[at:at + n])
        at += n
    reader.join(60)
    print(f"sent {count} echoed {len(got)} intact {'yes' if bytes(got) == body else 'no'}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
