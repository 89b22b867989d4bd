#!/usr/bin/env python3
"""Floods a registry with bad Basic logins from many loopback source addresses.

Usage: flood.py URL SECONDS [ADDRESSES] [CONNECTIONS]

Each of CONNECTIONS worker threads opens a new connection per request, bound to the next of
ADDRESSES source addresses in 127.0.2.0/16 (loopback routes all of 127.0.0.0/8), and sends
`GET /v2/` with a random user and password. Prints requests sent and the status counts.
Stdlib only.
"""
import base64
import collections
import http.client
import os
import sys
import threading
import time


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    addresses = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    host, port = url.split("//", 1)[1].split(":")
    stop = time.monotonic() + seconds
    counts = collections.Counter()
    lock = threading.Lock()

    def worker(index):
        n = 0
        local = collections.Counter()
        while time.monotonic() < stop:
            n += 1
            a = (index + n * workers) % addresses
            source = (f"127.0.{2 + a // 250}.{1 + a % 250}", 0)
            creds = base64.b64encode(f"user{os.urandom(4).hex()}:{os.urandom(6).hex()}".encode())
            try:
                c = http.client.HTTPConnection(host, int(port), timeout=30, source_address=source)
                c.request("GET", "/v2/", headers={"Authorization": "Basic " + creds.decode()})
                local[c.getresponse().status] += 1
                c.close()
            except OSError as e:
                local[type(e).__name__] += 1
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(counts.values()), dict(counts))


if __name__ == "__main__":
    main()
