#!/usr/bin/env python3
"""hashwrite.py SRC DST: one pass over SRC in 1 MiB reads, each hashed (hashlib's SHA-256, which is
OpenSSL's) and written to DST, then fsync. Prints the hex digest and the seconds taken, so interpreter
start-up is not counted. This is the loop a registry runs per upload: receive, hash, write, fsync.
"""
import hashlib
import os
import sys
import time

start = time.monotonic()
sha, buf = hashlib.sha256(), memoryview(bytearray(1 << 20))
with open(sys.argv[1], "rb", buffering=0) as src, open(sys.argv[2], "wb", buffering=0) as dst:
    while n := src.readinto(buf):
        sha.update(buf[:n])
        done = 0
        while done < n:
            done += dst.write(buf[done:n])
    os.fsync(dst.fileno())
print(sha.hexdigest(), f"{time.monotonic() - start:.3f}")
