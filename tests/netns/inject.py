"""Sends recorded frames (a file of length-prefixed frames, as sniff.py
writes) out of an interface again, as an attacker replaying them.

    inject.py IF FILE [SRC_MAC]   (SRC_MAC: send each to every node, from
                                   that address, as the switch must not
                                   learn the original sender behind it)
"""

import socket
import struct
import sys


def main(ifname, path, src=None):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    data = open(path, "rb").read()
    at = sent = 0
    while at < len(data):
        (n,) = struct.unpack(">I", data[at:at + 4])
        f = bytearray(data[at + 4:at + 4 + n])
        if src:
            f[0:6] = b"\xff" * 6
            f[6:12] = bytes.fromhex(src.replace(":", ""))
        s.send(bytes(f))
        sent += 1
        at += 4 + n
    print(f"inject: {sent} frames", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
