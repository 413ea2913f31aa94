"""Records the frames arriving on an interface for a while, as an
attacker on that link would, into a file of length-prefixed frames.

    sniff.py IF SECONDS OUT [SRC_MAC]     (only frames from SRC_MAC)
"""

import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def main(ifname, seconds, out, src=None):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.settimeout(0.05)
    want = bytes.fromhex(src.replace(":", "")) if src else None
    frames = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if want is None or frame[6:12] == want:
            frames.append(frame)
    with open(out, "wb") as f:
        f.write(b"".join(struct.pack(">I", len(x)) + x for x in frames))
    print(f"sniff: {len(frames)} frames", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
