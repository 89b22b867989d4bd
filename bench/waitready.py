#!/usr/bin/env python3
"""waitready.py PORT TIMEOUT_S [https]: poll GET /v2/ on 127.0.0.1:PORT every millisecond.

Prints "polling" once it is running (the caller starts the server after that line, so interpreter
start-up is not counted), then the wall-clock time (time.time()) of the first 200, or "timeout".
With "https", it polls over TLS without verifying the certificate.
"""
import http.client
import ssl
import sys
import time

port, timeout = int(sys.argv[1]), float(sys.argv[2])
https = sys.argv[3:] == ["https"]
print("polling", flush=True)
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if https:
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=1, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/v2/")
        if conn.getresponse().status == 200:
            print(f"{time.time():.6f}", flush=True)
            sys.exit(0)
    except OSError:
        pass
    finally:
        conn.close()
    time.sleep(0.001)
print("timeout", flush=True)
sys.exit(1)
