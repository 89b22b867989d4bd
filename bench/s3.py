#!/usr/bin/env python3
"""Dockyard vs distribution 2.8.2 on S3 (one MinIO), side by side in the same run.

    DOCKYARD_BIN=target/release/dockyard python3 bench/s3.py [scenario ...]
    BENCH_ROUNDS=5 python3 bench/s3.py push pull
    python3 bench/s3.py > results.txt          # progress on stderr, the tables on stdout

Scenarios (default: all, in this order):

  push        512 MiB blob (BENCH_BLOB_MIB): POST + one streamed `curl -T` PUT, through one
              replica, redirect disabled. Target: <= 0.7x distribution.
  pull        GET of that blob to /dev/null with redirect disabled (the bytes come through
              the registry; target <= 1.0x), then with redirect on (registry:2's default,
              curl -L to MinIO's presigned URL; information).
  concurrent  20 pushes of distinct 100 MiB blobs at once over two replicas of one bucket
              (10 each): wall time and aggregate MiB/s (information).
  gc          3 tagged images pushed through the server under test into a fresh bucket, plus
              10,000 unreferenced 1 KiB blobs written straight into it (blob data and the
              repository's layer link, as a push leaves them: identical objects for both);
              then `dockyard garbage-collect --grace 0s CONFIG` vs `docker-registry
              garbage-collect CONFIG`, timed, and both must leave exactly the referenced blobs
              (information: times and ratio).
  online-gc   Dockyard only: wrk -t2 -c16 -d10s --latency on a manifest GET, idle (GC off),
              then while the replica's own GC runs (interval 100ms) over a few thousand
              unreferenced blobs, once sweeping them (grace 0s) and once only walking them
              (grace 1h, nothing deleted). Target: p99 during GC <= 2x idle p99 (paired per round).

One MinIO (single drive, data dir under BENCH_DIR, on disk) serves every server; each server
start gets a fresh bucket (force-deleted after). The server order flips every round, medians
and dockyard/distribution ratios are printed. Needs curl, wrk, docker-registry, python3 (stdlib
only) and .tools/bin/minio (tests/setup.sh builds it). Every process is stopped by PID.
See bench/README.md ("S3: bench/s3.py") for the knobs and the figures measured.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from harness import (BENCH_DIR, CACHE, RESULTS, ROOT, ROUNDS, SELF_TEST, SLOTS, Rounds, die, free_port, log,
                     order, row, say, spawn, stop, stop_all, table_head)

ACCESS, SECRET, REGION = "dockyard-bench", "dockyard-bench-secret", "us-east-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ALL = ("push", "pull", "concurrent", "gc", "online-gc")
# BENCH_SELF_TEST=1: distribution in both columns (checks the script; ratios near 1 show the noise).
# BENCH_S3_TRACE=1: after push's and pull's rounds, one more of each per server with MinIO's
# trace of S3 calls on, printed as a breakdown (not part of the medians).
TRACE = os.environ.get("BENCH_S3_TRACE", "0") == "1"

def cpu_s(pid):
    """User + system CPU seconds of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- S3 (SigV4, stdlib only) ------------------------------------------------------------------------

def _q(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


class S3:
    def __init__(self, addr):
        self.host, port = addr.split(":")
        self.port = int(port)
        self.addr = addr
        self.local = threading.local()

    def request(self, method, path, query=None, body=b"", headers=None, timeout=120):
        """path: '/bucket/key' (unencoded). Returns (status, headers dict, body bytes)."""
        target, headers = self.sign(method, path, query, body, headers)
        for attempt in range(2):  # one keep-alive connection per thread
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            conn.timeout = timeout
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise

    def sign(self, method, path, query=None, body=b"", headers=None):
        """SigV4: returns (request target, headers with Authorization)."""
        query = query or {}
        headers = dict(headers or {})
        now = datetime.datetime.now(datetime.timezone.utc)
        amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        headers.update({"host": self.addr, "x-amz-date": amzdate, "x-amz-content-sha256": payload})
        cpath = _q(path, safe="/-_.~")
        cquery = "&".join(f"{_q(k)}={_q(str(v))}" for k, v in sorted(query.items()))
        names = sorted(h.lower() for h in headers)
        lower = {k.lower(): str(v).strip() for k, v in headers.items()}
        canonical = "\n".join([method, cpath, cquery, "".join(f"{n}:{lower[n]}\n" for n in names),
                               ";".join(names), payload])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + SECRET).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={sig}")
        return cpath + ("?" + cquery if cquery else ""), headers

    def create_bucket(self, name):
        st, _, body = self.request("PUT", f"/{name}")
        if st != 200:
            die(f"create bucket {name}: {st} {body[:300]!r}")

    def delete_bucket(self, name):
        """MinIO's force delete (`mc rb --force`): the bucket and everything in it."""
        st, _, body = self.request("DELETE", f"/{name}", headers={"x-minio-force-delete": "true"}, timeout=600)
        if st not in (200, 204, 404):
            log(f"  warning: delete bucket {name}: {st} {body[:300]!r}")

    def delete_object(self, bucket, key):
        self.request("DELETE", f"/{bucket}/{key}")

    def list_keys(self, bucket, prefix=""):
        keys, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            st, _, body = self.request("GET", f"/{bucket}", query=q)
            if st != 200:
                die(f"list {bucket}/{prefix}: {st} {body[:300]!r}")
            text = body.decode()
            keys += [k for k in re.findall(r"<Key>([^<]*)</Key>", text)]
            if "<IsTruncated>true</IsTruncated>" not in text:
                return keys
            token = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", text)[1]


class Minio:
    def __init__(self, run_dir):
        bin_ = os.environ.get("MINIO_BIN", os.path.join(ROOT, ".tools/bin/minio"))
        if not os.access(bin_, os.X_OK):
            die(f"no minio at {bin_} (tests/setup.sh builds it from tools/minio, or set MINIO_BIN)")
        self.dir = os.path.join(run_dir, "minio")
        os.makedirs(os.path.join(self.dir, "data"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
        env.update(MINIO_ROOT_USER=ACCESS, MINIO_ROOT_PASSWORD=SECRET, MINIO_REGION=REGION,
                   MINIO_BROWSER="off", MINIO_UPDATE="off", MINIO_CI_CD="1")
        for attempt in range(3):
            self.addr = f"127.0.0.1:{free_port()}"
            argv = [bin_, "server", "--address", self.addr, "--console-address", f"127.0.0.1:{free_port()}",
                    "--certs-dir", os.path.join(self.dir, "certs"), os.path.join(self.dir, "data")]
            self.proc = spawn(argv, os.path.join(self.dir, "minio.log"), env)
            self.s3 = S3(self.addr)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60 and self.proc.poll() is None:
                try:
                    # /minio/health/ready answers before S3 requests work: ask a signed ListBuckets.
                    if self.s3.request("GET", "/", timeout=2)[0] == 200:
                        log(f"minio ready at {self.addr} in {time.monotonic() - t0:.2f} s (pid {self.proc.pid})")
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            stop(self.proc)
        die(f"minio did not start; see {self.dir}/minio.log")

    def endpoint(self):
        return f"http://{self.addr}"


class Trace:
    """MinIO's own trace of S3 calls (what `mc admin trace` reads: GET /minio/admin/v3/trace),
    recorded in a thread: every call's function, start, duration and bytes, as MinIO saw it.
    Used only for the breakdown rounds (BENCH_S3_TRACE=1), never in a measured round."""

    def __init__(self, s3):
        self.entries = []
        target, headers = s3.sign("GET", "/minio/admin/v3/trace", {"s3": "true"})
        self.conn = http.client.HTTPConnection(s3.host, s3.port, timeout=None)
        self.conn.request("GET", target, headers=headers)
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            die(f"minio trace: HTTP {self.resp.status} {self.resp.read()[:300]!r}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf, dec = "", json.JSONDecoder()
        try:
            while True:
                chunk = self.resp.read1(65536)
                if not chunk:
                    return
                buf += chunk.decode(errors="replace")
                while True:
                    buf = buf.lstrip()
                    try:
                        obj, end = dec.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    self.entries.append(obj)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return  # closed

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()

    def calls(self, t0, t1):
        """(func, start, end, bytes in, bytes out, path) of calls that started in [t0, t1]."""
        out = []
        for e in self.entries:
            if not e.get("funcname", "").startswith("s3."):
                continue
            start = parse_time(e["time"])
            end = start + e.get("dur", 0) / 1e9
            stats = (e.get("http") or {}).get("stats") or {}
            path = ((e.get("http") or {}).get("request") or {}).get("path", e.get("path", ""))
            if t0 - 0.001 <= start <= t1:
                out.append((e["funcname"][3:], start, end, stats.get("inputbytes", 0), stats.get("outputbytes", 0), path))
        return sorted(out, key=lambda c: c[1])


def parse_time(text):
    """RFC 3339 with up to nanoseconds -> epoch seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    base = datetime.datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S")
    tz = datetime.timezone.utc if m[3] == "Z" else datetime.timezone(
        datetime.timedelta(hours=int(m[3][1:3]), minutes=int(m[3][4:])) * (1 if m[3][0] == "+" else -1))
    return base.replace(tzinfo=tz).timestamp() + (float("0." + m[2]) if m[2] else 0.0)


def breakdown(calls, t0, t1, label):
    """The S3 calls of one measured step [t0, t1] (a request, a garbage-collect run), grouped
    by function: how many, when the first started and the last ended (s after t0), the summed
    busy time and the bytes."""
    log(f"    {label}: {t1 - t0:.3f} s in all; the S3 calls started meanwhile, as MinIO timed them:")
    log(f"      {'call':<28} {'n':>4} {'first start':>11} {'last end':>9} {'sum dur':>8} {'MiB in':>7} {'MiB out':>7}")
    groups = {}
    for c in calls:
        groups.setdefault(c[0], []).append(c)
    for name, cs in sorted(groups.items(), key=lambda kv: kv[1][0][1]):
        log(f"      {name:<28} {len(cs):>4} {min(c[1] for c in cs) - t0:>11.3f} {max(c[2] for c in cs) - t0:>9.3f} "
            f"{sum(c[2] - c[1] for c in cs):>8.3f} {sum(c[3] for c in cs) / 2**20:>7.1f} {sum(c[4] for c in cs) / 2**20:>7.1f}")
    if calls:
        last = max(c[2] for c in calls)
        log(f"      after the last S3 call ended: {t1 - last:.3f} s to the response")


# --- registries ---------------------------------------------------------------------------------------

def registry_config(slot, port, minio, bucket, redirect=False, gc=None, root=None):
    """The same config for both servers: storage.s3 as registry:2 reads it (Dockyard also gets
    forcepathstyle; distribution 2.8.2 uses path style with regionendpoint anyway), delete on,
    redirect as asked, the registry:2 image's inmemory blob descriptor cache, logs at warn with
    no access log. gc: Dockyard's storage.maintenance.gc (interval, grace) or None."""
    s3 = [f"    accesskey: {ACCESS}", f"    secretkey: {SECRET}", f"    region: {REGION}",
          f"    regionendpoint: {minio.endpoint()}", f"    bucket: {bucket}", "    secure: false",
          "    v4auth: true"]
    if root:
        s3.append(f"    rootdirectory: {root}")
    if slot == "dockyard" and not SELF_TEST:
        s3.append("    forcepathstyle: true")
    maint = ["  maintenance:", "    uploadpurging:", "      enabled: false"]
    if gc:
        maint += ["    gc:", "      enabled: true", f"      interval: {gc[0]}", f"      grace: {gc[1]}"]
    lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true", "storage:", "  s3:",
             *s3, "  cache:", "    blobdescriptor: inmemory", "  delete:", "    enabled: true",
             "  redirect:", f"    disable: {'false' if redirect else 'true'}", *maint,
             "http:", f"  addr: 127.0.0.1:{port}", "  secret: dockyard-bench"]
    return "\n".join(lines) + "\n"


def server_env(slot, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REGISTRY_") and k not in ("RUST_LOG", "AWS_CA_BUNDLE")}
    # distribution 2.8.2's S3 driver panics when AWS_CA_BUNDLE is set: removed for both.
    env.update(extra or {})
    return env


class Server:
    def __init__(self, bench, slot, bucket, redirect=False, gc=None, rust_log=None, tag=""):
        self.slot = slot
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        name = f"{slot}-{bucket}{tag}-{self.port}"
        self.config = os.path.join(bench.run_dir, name + ".yml")
        self.logfile = os.path.join(bench.run_dir, name + ".log")
        with open(self.config, "w") as f:
            f.write(registry_config(slot, self.port, bench.minio, bucket, redirect, gc))
        extra = {"RUST_LOG": rust_log} if rust_log else {}
        if slot == "dockyard" and not SELF_TEST:
            argv = [bench.dockyard, "serve", self.config]
        else:
            argv = ["docker-registry", "serve", self.config]
        subprocess.run(["sync"])
        self.started = time.time()
        self.proc = spawn(argv, self.logfile, server_env(slot, extra))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/v2/")
                if c.getresponse().status == 200:
                    c.close()
                    return
                c.close()
            except OSError:
                pass
            time.sleep(0.005)
        log(open(self.logfile, errors="replace").read()[-3000:])
        self.stop()
        die(f"{slot} did not answer 200 on /v2/ (log {self.logfile})")

    def stop(self):
        stop(self.proc)

    def log_text(self):
        return open(self.logfile, errors="replace").read()


def curl(*args):
    p = subprocess.run(["curl", "-sS", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def push_blob(base, repo, path, digest):
    """POST an upload, then one streamed PUT of the whole file (bench/lib.sh's push_blob)."""
    out = curl("-o", "/dev/null", "-X", "POST", "-w", "%{http_code} %header{location}", f"{base}/v2/{repo}/blobs/uploads/")
    code, _, loc = out.partition(" ")
    if code != "202" or not loc:
        raise RuntimeError(f"POST upload: {out}")
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    code = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                "-T", path, f"{loc}{sep}digest={digest}")
    if code != "201":
        raise RuntimeError(f"PUT upload: HTTP {code}")


def head_blob(base, repo, digest):
    return curl("-o", "/dev/null", "-I", "-w", "%{http_code}", f"{base}/v2/{repo}/blobs/{digest}")


class Client:
    """A keep-alive HTTP client for many small requests (seeding)."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, resp, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def put_blob(self, repo, data):
        """Monolithic upload: POST ?digest= with the bytes; returns the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        st, resp, body = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", body=data,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(len(data))})
        if st == 202:  # a server that does not take monolithic POSTs: PUT to the session
            loc = resp.getheader("location")
            loc = urllib.parse.urlsplit(loc)
            path = loc.path + "?" + (loc.query + "&" if loc.query else "") + f"digest={digest}"
            st, resp, body = self.request("PUT", path, body=data,
                                          headers={"Content-Type": "application/octet-stream",
                                                   "Content-Length": str(len(data))})
        if st != 201:
            raise RuntimeError(f"blob upload to {repo}: HTTP {st} {body[:200]!r}")
        return digest


def push_image(client, repo, tag, layers):
    """An OCI image of the given layer bytes; returns every digest it references, its own included."""
    descs = [{"mediaType": OCI_LAYER, "digest": client.put_blob(repo, l), "size": len(l)} for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    cdesc = {"mediaType": OCI_CONFIG, "digest": client.put_blob(repo, config), "size": len(config)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": descs}).encode()
    st, _, body = client.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                 headers={"Content-Type": OCI_MANIFEST})
    if st != 201:
        raise RuntimeError(f"manifest PUT {repo}:{tag}: HTTP {st} {body[:200]!r}")
    return {d["digest"] for d in descs} | {cdesc["digest"], "sha256:" + hashlib.sha256(manifest).hexdigest()}


def seed_direct(s3, bucket, blobs, repo="gc/junk", threads=16):
    """Writes `blobs` (a list of bytes) straight into the bucket in registry:2's layout, as
    pushes to `repo` leave them: the blob's data and the repository's layer link. The same
    objects for both servers, and faster than pushing through distribution (~14 blobs/s here)."""
    root = "docker/registry/v2"

    def one(data):
        hexd = hashlib.sha256(data).hexdigest()
        for key, body in ((f"{root}/blobs/sha256/{hexd[:2]}/{hexd}/data", data),
                          (f"{root}/repositories/{repo}/_layers/sha256/{hexd}/link", f"sha256:{hexd}".encode())):
            st, _, resp = s3.request("PUT", f"/{bucket}/{key}", body=body)
            if st != 200:
                raise RuntimeError(f"PUT {key}: {st} {resp[:200]!r}")

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, blobs, chunksize=64))


def seed(base, blobs, images, threads=16):
    """Pushes `blobs` (a list of bytes) to gc/junk, unreferenced, from `threads` keep-alive
    connections, and `images` (name -> list of layer bytes) as gc/NAME:v1. Returns the set of
    referenced digests."""
    local = threading.local()

    def one(data):
        if not hasattr(local, "c"):
            local.c = Client(base)
        return local.c.put_blob("gc/junk", data)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, blobs, chunksize=64))
    c = Client(base)
    referenced = set()
    for name, layers in images.items():
        referenced |= push_image(c, f"gc/{name}", "v1", layers)
    return referenced


BLOB_KEY = re.compile(r"docker/registry/v2/blobs/sha256/[0-9a-f]{2}/([0-9a-f]{64})/data$")


def stored_blobs(s3, bucket):
    return {"sha256:" + m[1] for k in s3.list_keys(bucket, "docker/registry/v2/blobs/") if (m := BLOB_KEY.search(k))}


def random_file(name, mib):
    """A random file in the cache, generated once; returns (path, digest, size)."""
    path = os.path.join(CACHE, name)
    if not os.path.exists(path + ".sha256"):
        log(f"  generating {path} ({mib} MiB from /dev/urandom)")
        h = hashlib.sha256()
        with open(path + ".tmp", "wb") as f:
            for _ in range(mib):
                chunk = os.urandom(1 << 20)
                h.update(chunk)
                f.write(chunk)
        os.replace(path + ".tmp", path)
        with open(path + ".sha256", "w") as f:
            f.write(h.hexdigest())
    return path, "sha256:" + open(path + ".sha256").read().strip(), os.path.getsize(path)


# --- the bench ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self):
        os.makedirs(CACHE, exist_ok=True)
        self.run_dir = tempfile.mkdtemp(prefix="s3-", dir=BENCH_DIR)
        src = os.environ.get("DOCKYARD_BIN", os.path.join(ROOT, "target/release/dockyard"))
        self.dockyard = None
        self.desc = "SELF-TEST (BENCH_SELF_TEST=1): distribution 2.8.2 runs in BOTH columns"
        if not SELF_TEST:
            if not os.access(src, os.X_OK):
                die(f"no dockyard binary at {src} (cargo build --release, set DOCKYARD_BIN, or BENCH_SELF_TEST=1)")
            os.makedirs(os.path.join(self.run_dir, "bin"))
            # A private copy: a rebuild during the run must not swap the binary between rounds.
            self.dockyard = os.path.join(self.run_dir, "bin/dockyard")
            shutil.copy2(src, self.dockyard)
            git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
            mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(os.path.getmtime(src)))
            self.desc = f"{src} ({mtime} UTC, git {git or '?'})"
        self.minio = Minio(self.run_dir)
        self.s3 = self.minio.s3
        self.buckets = 0

    def bucket(self, what):
        self.buckets += 1
        name = f"{what}-{self.buckets}"
        self.s3.create_bucket(name)
        return name

    def describe(self):
        fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", BENCH_DIR], capture_output=True, text=True).stdout.split()
        dist = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True).stdout.split()
        say(f"# dockyard:     {self.desc}")
        say(f"# distribution: {dist[-1] if dist else '?'}")
        say(f"# minio:        one server, one drive: {self.minio.dir}/data ({' '.join(fs)}); a fresh bucket per server start")
        say(f"# started:      {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; rounds {ROUNDS}, order alternates; "
            f"{os.cpu_count()} cores, load {' '.join(open('/proc/loadavg').read().split()[:3])}")

    def close(self):
        stop_all()
        if os.environ.get("BENCH_KEEP", "0") == "1":
            log(f"kept {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # 1. push ---------------------------------------------------------------------------------------
    def push(self):
        mib = int(os.environ.get("BENCH_BLOB_MIB", "512"))
        blob, digest, _ = random_file(f"blob-{mib}M.bin", mib)
        R = Rounds()

        def once(slot, trace=None):
            bucket = self.bucket("push")
            srv = Server(self, slot, bucket)
            cpu0, mcpu0 = cpu_s(srv.proc.pid), cpu_s(self.minio.proc.pid)
            w0, t0 = time.time(), time.monotonic()
            push_blob(srv.base, "bench/blob", blob, digest)
            t, w1 = time.monotonic() - t0, time.time()
            cpu, mcpu = cpu_s(srv.proc.pid) - cpu0, cpu_s(self.minio.proc.pid) - mcpu0
            if head_blob(srv.base, "bench/blob", digest) != "200":
                die(f"{slot}: pushed blob not found")
            srv.stop()
            if trace:
                time.sleep(0.5)
                breakdown(trace.calls(w0, w1), w0, w1, f"{slot} push (server CPU {cpu:.2f} s, MinIO CPU {mcpu:.2f} s)")
            self.s3.delete_bucket(bucket)
            return t, cpu, mcpu

        def round_(r, record, check):
            for slot in order(r):
                t, cpu, mcpu = once(slot)
                check()
                record("push", slot, t)
                record("cpu", slot, cpu)
                record("mcpu", slot, mcpu)
                log(f"  round {r}/{R.rounds} {slot}: push {t:.3f} s ({mib / t:.0f} MiB/s; server CPU {cpu:.2f} s, "
                    f"MinIO CPU {mcpu:.2f} s)")

        R.run(round_)
        table_head(f"s3 push: {mib} MiB blob, POST + one streamed PUT, one replica, redirect off")
        row("push time (s)", R.median("push", "dockyard"), R.median("push", "distribution"), "ratio<=0.7")
        row("push MiB/s", mib / R.median("push", "dockyard"), mib / R.median("push", "distribution"))
        row("server CPU during push (s)", R.median("cpu", "dockyard"), R.median("cpu", "distribution"))
        row("MinIO CPU during push (s)", R.median("mcpu", "dockyard"), R.median("mcpu", "distribution"))
        if TRACE:
            log("  breakdown (BENCH_S3_TRACE=1): one more push per server with MinIO's trace on, not in the table")
            trace = Trace(self.s3)
            try:
                for slot in SLOTS:
                    once(slot, trace)
            finally:
                trace.close()

    # 2. pull ---------------------------------------------------------------------------------------
    def pull(self):
        mib = int(os.environ.get("BENCH_BLOB_MIB", "512"))
        blob, digest, size = random_file(f"blob-{mib}M.bin", mib)
        R = Rounds()

        def get(url, follow):
            args = ["-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total} %{num_redirects}"]
            out = curl(*args, *(["-L"] if follow else []), url)
            code, got, t, redirects = out.split()
            if code != "200" or int(got) != size:
                die(f"GET {url}: {out}")
            return float(t), int(redirects)

        def check_bytes(url, follow):
            got = subprocess.run(["sh", "-c", f"curl -sS {'-L' if follow else ''} '{url}' | sha256sum"],
                                 capture_output=True, text=True).stdout.split()[0]
            if "sha256:" + got != digest:
                die(f"GET {url} returned other bytes")

        def once(slot, verify, trace=None):
            bucket = self.bucket("pull")
            srv = Server(self, slot, bucket)
            push_blob(srv.base, "bench/blob", blob, digest)
            url = f"{srv.base}/v2/bench/blob/blobs/{digest}"
            subprocess.run(["sync"])
            cpu0 = cpu_s(srv.proc.pid)
            w0 = time.time()
            t, n = get(url, False)
            w1 = time.time()
            cpu = cpu_s(srv.proc.pid) - cpu0
            if n:
                die(f"{slot}: redirect disabled, yet it redirected")
            if verify:  # once per server: the bytes, not only their number
                check_bytes(url, False)
            srv.stop()
            if trace:
                time.sleep(0.5)
                breakdown(trace.calls(w0, w1), w0, w1, f"{slot} pull, redirect off (server CPU {cpu:.2f} s)")
            # The same bucket, a server with redirect on (registry:2's default).
            srv = Server(self, slot, bucket, redirect=True, tag="-redirect")
            url = f"{srv.base}/v2/bench/blob/blobs/{digest}"
            tr, n = get(url, True)
            if n != 1:
                die(f"{slot}: redirect enabled, but {n} redirects")
            if verify:
                check_bytes(url, True)
            srv.stop()
            self.s3.delete_bucket(bucket)
            return t, tr, cpu

        def round_(r, record, check):
            for slot in order(r):
                t, tr, cpu = once(slot, r == 1)
                check()
                record("pull", slot, t)
                record("pull_redirect", slot, tr)
                record("cpu", slot, cpu)
                log(f"  round {r}/{R.rounds} {slot}: pull {t:.3f} s through the registry (server CPU {cpu:.2f} s), "
                    f"{tr:.3f} s redirected")

        R.run(round_)
        table_head(f"s3 pull: GET {mib} MiB blob to /dev/null (curl)")
        row("pull, redirect off (s)", R.median("pull", "dockyard"), R.median("pull", "distribution"), "ratio<=1.0")
        row("pull, redirect off MiB/s", mib / R.median("pull", "dockyard"), mib / R.median("pull", "distribution"))
        row("server CPU, redirect off (s)", R.median("cpu", "dockyard"), R.median("cpu", "distribution"))
        row("pull, redirected (curl -L) (s)", R.median("pull_redirect", "dockyard"), R.median("pull_redirect", "distribution"))
        if TRACE:
            log("  breakdown (BENCH_S3_TRACE=1): one more pull per server with MinIO's trace on, not in the table")
            trace = Trace(self.s3)
            try:
                for slot in SLOTS:
                    once(slot, False, trace)
            finally:
                trace.close()

    # 3. concurrent pushes over two replicas ---------------------------------------------------------
    def concurrent(self):
        n, mib = int(os.environ.get("BENCH_S3_CONC_PUSHES", "20")), int(os.environ.get("BENCH_S3_CONC_MIB", "100"))
        files = [random_file(f"blob-{mib}M-{i}.bin", mib) for i in range(n)]
        R = Rounds()

        def round_(r, record, check):
            for slot in order(r):
                bucket = self.bucket("conc")
                reps = [Server(self, slot, bucket, tag=f"-r{i}") for i in range(2)]
                times = [None] * n
                start = threading.Barrier(n + 1)

                def one(i):
                    path, digest, _ = files[i]
                    start.wait()
                    t0 = time.monotonic()
                    push_blob(reps[i % 2].base, f"bench/conc{i}", path, digest)
                    times[i] = time.monotonic() - t0

                with ThreadPoolExecutor(n) as ex:
                    futs = [ex.submit(one, i) for i in range(n)]
                    start.wait()
                    t0 = time.monotonic()
                    for f in futs:
                        f.result()
                    wall = time.monotonic() - t0
                for i, (_, digest, _) in enumerate(files):  # each blob is there on the other replica too
                    if head_blob(reps[(i + 1) % 2].base, f"bench/conc{i}", digest) != "200":
                        die(f"{slot}: blob {i} not found on the other replica")
                check()
                for s in reps:
                    s.stop()
                self.s3.delete_bucket(bucket)
                record("wall", slot, wall)
                record("mibs", slot, n * mib / wall)
                record("each", slot, statistics.median(times))
                log(f"  round {r}/{R.rounds} {slot}: {n} x {mib} MiB in {wall:.2f} s ({n * mib / wall:.0f} MiB/s; "
                    f"each push median {statistics.median(times):.2f} s, max {max(times):.2f} s)")

        R.run(round_)
        table_head(f"s3 concurrent: {n} x {mib} MiB pushes at once over 2 replicas of one bucket")
        row("wall time (s)", R.median("wall", "dockyard"), R.median("wall", "distribution"))
        row("aggregate MiB/s", R.median("mibs", "dockyard"), R.median("mibs", "distribution"))
        row("one push, median (s)", R.median("each", "dockyard"), R.median("each", "distribution"))

    # 4. offline GC of 10,000 unreferenced blobs -------------------------------------------------------
    def gc(self):
        nblobs = int(os.environ.get("BENCH_S3_GC_BLOBS", "10000"))
        R = Rounds(int(os.environ.get("BENCH_S3_GC_ROUNDS", str(ROUNDS))))
        trace = None

        def round_(r, record, check):
            # Identical content for both servers in a round, fresh every round.
            junk = [os.urandom(1024) for _ in range(nblobs)]
            images = {f"app{i}": [os.urandom(4096), os.urandom(4096)] for i in range(3)}
            for slot in order(r):
                bucket = self.bucket("gc")
                srv = Server(self, slot, bucket)
                referenced = seed(srv.base, [], images)  # the images through the server under test
                srv.stop()
                t0 = time.monotonic()
                seed_direct(self.s3, bucket, junk)  # the junk straight into the bucket: identical objects
                seeded = time.monotonic() - t0
                before = stored_blobs(self.s3, bucket)
                if len(before) != nblobs + len(referenced):
                    die(f"{slot}: {len(before)} blobs stored after seeding, expected {nblobs + len(referenced)}")
                if slot == "dockyard" and not SELF_TEST:
                    argv = [self.dockyard, "garbage-collect", "--grace", "0s", srv.config]
                else:
                    argv = ["docker-registry", "garbage-collect", srv.config]
                out = os.path.join(self.run_dir, f"gc-{slot}-{r}.out")
                subprocess.run(["sync"])
                with open(out, "wb") as f:
                    ru0, m0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_s(self.minio.proc.pid)
                    w0, t0 = time.time(), time.monotonic()
                    p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=server_env(slot))
                    t, w1 = time.monotonic() - t0, time.time()
                    ru1, m1 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_s(self.minio.proc.pid)
                cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                if p.returncode != 0:
                    die(f"{slot}: garbage-collect exited {p.returncode}; see {out}")
                if trace:
                    time.sleep(0.5)
                    breakdown(trace.calls(w0, w1), w0, w1, f"{slot} garbage-collect (its CPU {cpu:.2f} s, MinIO CPU {m1 - m0:.2f} s)")
                check()
                after = stored_blobs(self.s3, bucket)
                if after != referenced:
                    die(f"{slot}: after GC {len(after)} blobs remain; {len(after - referenced)} unreferenced kept, "
                        f"{len(referenced - after)} referenced deleted (output {out})")
                self.s3.delete_bucket(bucket)
                record("gc", slot, t)
                record("cpu", slot, cpu)
                record("mcpu", slot, m1 - m0)
                log(f"  {f'round {r}/{R.rounds}' if r else 'traced round'} {slot}: GC {t:.2f} s (its CPU {cpu:.2f} s, MinIO CPU {m1 - m0:.2f} s), deleted "
                    f"{len(before) - len(after)} blobs, kept {len(after)} referenced (seeding {nblobs} blobs took "
                    f"{seeded:.1f} s, {nblobs / seeded:.0f}/s)")

        R.run(round_)
        table_head(f"s3 gc: garbage-collect {nblobs} unreferenced blobs (+3 tagged images), offline")
        row("garbage-collect time (s)", R.median("gc", "dockyard"), R.median("gc", "distribution"))
        row("collector CPU (s)", R.median("cpu", "dockyard"), R.median("cpu", "distribution"))
        row("MinIO CPU meanwhile (s)", R.median("mcpu", "dockyard"), R.median("mcpu", "distribution"))
        say("(both left exactly the referenced blobs: manifests, configs and layers of the 3 images)")
        if TRACE:
            log("  breakdown (BENCH_S3_TRACE=1): one more round with MinIO's trace on, not in the table")
            trace = Trace(self.s3)
            try:
                round_(0, lambda *a: None, lambda: None)
            finally:
                trace.close()

    # 5. manifest GET latency during online GC (Dockyard only) ---------------------------------------
    def online_gc(self):
        if SELF_TEST:
            log("  online-gc: Dockyard only, skipped in a self-test")
            return
        nblobs = int(os.environ.get("BENCH_S3_ONLINE_BLOBS", "3000"))
        interval = os.environ.get("BENCH_S3_ONLINE_INTERVAL", "100ms")
        duration = os.environ.get("BENCH_S3_WRK_DURATION", "10s")
        wrk_args = ["wrk", "-t2", "-c16", f"-d{duration}", "--latency", "-H", f"Accept: {OCI_MANIFEST}"]
        R = Rounds()
        rust_log = "warn,dockyard::gc=info"
        bucket = self.bucket("online")
        lock_key = "dockyard/gc.lock"

        def wrk(srv, tag, r):
            out = os.path.join(self.run_dir, f"wrk-{tag}-{r}.txt")
            c0, m0 = cpu_s(srv.proc.pid), cpu_s(self.minio.proc.pid)
            t0 = time.time()
            text = subprocess.run([*wrk_args, url(srv)], capture_output=True, text=True).stdout
            t1 = time.time()
            c1, m1 = cpu_s(srv.proc.pid), cpu_s(self.minio.proc.pid)
            open(out, "w").write(text)
            s = wrk_summary(text)
            if s["errors"]:
                log(text)
                die(f"wrk saw {s['errors']} errors or non-2xx responses ({tag})")
            s["cpu"], s["mcpu"] = c1 - c0, m1 - m0
            return s, t0, t1

        def gc_runs(srv):
            """(start, end, report fields) of every 'garbage collection done' line in the log."""
            runs = []
            for line in srv.log_text().splitlines():
                if "garbage collection done" not in line:
                    continue
                plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
                ts = datetime.datetime.strptime(plain.split()[0][:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                took = parse_duration(re.search(r"took=(\S+)", plain)[1])
                fields = dict(re.findall(r"(\w+)=(\d+)\b", plain))
                runs.append((ts - took, ts, fields))
            return runs

        def during_gc(r, grace, tag, record, check):
            self.s3.delete_object(bucket, lock_key)  # a lock an earlier server held when stopped
            srv = Server(self, "dockyard", bucket, gc=(interval, grace), rust_log=rust_log, tag=f"-{tag}{r}")
            # The first collection starts one interval (plus up to 10%) after start-up.
            s, t0, t1 = wrk(srv, tag, r)
            # Let a collection in progress finish, so its start and end are in the log.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(e >= t1 for _, e, _ in gc_runs(srv)):
                time.sleep(0.2)
            check()
            srv.stop()
            runs = gc_runs(srv)
            covered = sum(max(0.0, min(e, t1) - max(b, t0)) for b, e, _ in runs)
            deleted = sum(int(f.get("blobs_deleted", 0)) for b, e, f in runs if b < t1)
            inside = sum(1 for b, e, _ in runs if b < t1 and e > t0)
            took = [e - b for b, e, _ in runs]
            record(f"p50_{tag}", "dockyard", s["p50"])
            record(f"p99_{tag}", "dockyard", s["p99"])
            record(f"rps_{tag}", "dockyard", s["rps"])
            record(f"cover_{tag}", "dockyard", 100 * covered / (t1 - t0))
            log(f"  round {r}/{R.rounds} GC {tag} (grace {grace}): {s['rps']:.0f} req/s, p50 {s['p50']:.2f} ms, "
                f"p99 {s['p99']:.2f} ms; {inside} collections in the wrk window, GC running {100 * covered / (t1 - t0):.0f}% "
                f"of it, {deleted} blobs deleted; one collection took {min(took, default=0):.2f}-{max(took, default=0):.2f} s; "
                f"CPU in the window: Dockyard {s['cpu']:.1f} s, MinIO {s['mcpu']:.1f} s")
            record(f"cpu_{tag}", "dockyard", s["cpu"])
            record(f"mcpu_{tag}", "dockyard", s["mcpu"])
            return s

        def url(srv):
            return f"{srv.base}/v2/gc/app0/manifests/v1"

        def round_(r, record, check):
            # Fresh unreferenced blobs every round (the sweep of the round before deleted them).
            if r == 1:
                srv = Server(self, "dockyard", bucket, rust_log=rust_log, tag=f"-seed{r}")
                seed(srv.base, [], {"app0": [os.urandom(4096), os.urandom(4096)]})
                srv.stop()
            t0 = time.monotonic()
            seed_direct(self.s3, bucket, [os.urandom(1024) for _ in range(nblobs)])
            log(f"  round {r}: seeded {nblobs} unreferenced blobs in {time.monotonic() - t0:.1f} s")
            subprocess.run(["sync"])
            srv = Server(self, "dockyard", bucket, rust_log=rust_log, tag=f"-idle{r}")
            idle, _, _ = wrk(srv, "idle", r)
            check()
            srv.stop()
            record("cpu_idle", "dockyard", idle["cpu"])
            record("mcpu_idle", "dockyard", idle["mcpu"])
            record("p50_idle", "dockyard", idle["p50"])
            record("p99_idle", "dockyard", idle["p99"])
            record("rps_idle", "dockyard", idle["rps"])
            log(f"  round {r}/{R.rounds} idle (GC off): {idle['rps']:.0f} req/s, p50 {idle['p50']:.2f} ms, p99 {idle['p99']:.2f} ms; "
                f"CPU in the window: Dockyard {idle['cpu']:.1f} s, MinIO {idle['mcpu']:.1f} s")
            walk = during_gc(r, "1h", "walk", record, check)
            sweep = during_gc(r, "0s", "sweep", record, check)
            record("ratio_walk", "dockyard", walk["p99"] / idle["p99"])
            record("ratio_sweep", "dockyard", sweep["p99"] / idle["p99"])

        R.run(round_)
        self.s3.delete_bucket(bucket)
        say()
        say(f"== s3 online-gc: Dockyard only, {' '.join(wrk_args[:5])} GET manifest, {nblobs} unreferenced blobs, "
            f"GC every {interval} ==")
        say(f"{'medians over ' + str(R.rounds) + ' rounds':<34} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'GC running':>11}"
            f" {'CPU s: dockyard':>16} {'minio':>6}")
        for tag, what in (("idle", "idle (GC off)"), ("walk", "during GC, grace 1h (walk only)"),
                          ("sweep", "during GC, grace 0s (sweeping)")):
            cover = f"{R.median('cover_' + tag, 'dockyard'):.0f}%" if tag != "idle" else "-"
            say(f"{what:<34} {R.median('rps_' + tag, 'dockyard'):>9.0f} {R.median('p50_' + tag, 'dockyard'):>9.2f} "
                f"{R.median('p99_' + tag, 'dockyard'):>9.2f} {cover:>11} {R.median('cpu_' + tag, 'dockyard'):>16.1f} "
                f"{R.median('mcpu_' + tag, 'dockyard'):>6.1f}")
        for tag in ("walk", "sweep"):
            v = R.median("ratio_" + tag, "dockyard")
            say(f"{'p99 ' + tag + ' / idle, paired (x)':<34} {v:>9.2f}   target <= 2.0  {'PASS' if v <= 2.0 else 'MISS'}")
        say("('GC running' is the share of the wrk window inside a collection, from the log's "
            "'garbage collection done' lines: end time and took)")


def parse_duration(s):
    """A Rust Debug Duration: 1.234s, 845.2ms, 12.3µs, 15ns."""
    m = re.fullmatch(r"([0-9.]+)(s|ms|µs|us|ns)", s)
    return float(m[1]) * {"s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}[m[2]]


def wrk_summary(text):
    def ms(v):
        m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", v)
        return float(m[1]) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[m[2]]
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", text)[1])
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M)[1])
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M)[1])
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", text))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        bad += sum(int(x) for x in m.groups())
    return {"rps": rps, "p50": p50, "p99": p99, "errors": bad}


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return
    for a in args:
        if a not in ALL:
            die(f"unknown scenario {a!r} (known: {' '.join(ALL)})")
    for tool in ("curl", "wrk", "docker-registry", "sync"):
        if not shutil.which(tool):
            die(f"{tool} is not installed")
    selected = args or list(ALL)
    bench = Bench()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        bench.describe()
        for s in selected:
            log(f"\n--- {s} ---")
            getattr(bench, s.replace("-", "_"))()
    finally:
        bench.close()
    log("\n===== summary (stdout) =====")
    print("\n".join(RESULTS))
    with open(os.path.join(BENCH_DIR, "last-s3-results.txt"), "w") as f:
        f.write("\n".join(RESULTS) + "\n")


if __name__ == "__main__":
    main()
