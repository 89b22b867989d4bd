#!/usr/bin/env python3
"""The web UI, docker search and the name index with 10,000 repositories (issue 12):
Dockyard vs distribution 2.8.2 on the same data directory, side by side in the same run.

    DOCKYARD_BIN=target/release/dockyard python3 bench/ui.py [scenario ...]
    BENCH_ROUNDS=5 python3 bench/ui.py catalog
    python3 bench/ui.py > results.txt          # progress on stderr, the tables on stdout

The data: BENCH_UI_REPOS repositories (10,000) with BENCH_UI_TAGS tags each (10, so 100,000
tags), written straight to disk in distribution's layout (blob data under blobs/, and per
repository the _layers links, one _manifests revision link and each tag's current and index
links), sharing a few blobs and manifests. Generated once into $BENCH_DIR/cache/ui-R-T/ and
reused (a stamp file marks it complete). Names are 2 or 3 components deep, from word lists,
so that searches match a few to a few hundred names.

Scenarios (default: all, in this order):

  catalog   GET /v2/_catalog?n=100, then every `Link: <...>; rel="next"` until there is none,
            on one keep-alive connection; the time for all pages, per server, BENCH_ROUNDS
            rounds, order flipped every round. Target: <= 0.1x distribution. The same with
            n=1000 (information). Both must list the same names.
  ui        Dockyard only: time to first byte of `GET /` (200 requests, a new connection each;
            target p50 <= 50 ms), `GET /-/search?q=TERM` (500 varied terms, the HTML
            fragment instant search fetches; target p99 <= 20 ms), `GET /v1/search?q=TERM`
            (the same terms; target p99 <= 20 ms), and a repository page `GET /r/NAME`.
  startup   Process start to the first 200 on /v2/ (both) and, for Dockyard, to the first
            200 on /v2/_catalog?n=1 (the name index loaded): with no name markers (a full
            walk of the tree: the first start on data another registry wrote) and with them
            (later starts). Median of BENCH_ROUNDS.
  memory    Dockyard's RSS (VmRSS) at rest on an empty data dir and on the 10,000
            repositories with the index loaded, the difference, and the
            dockyard_catalog_index_bytes gauge from the debug listener's /metrics.

Each server is started alone (never both at once) on the shared data dir with a config like
bench/run.sh's: log level warn, no access log, delete off; Dockyard also gets
http.debug with prometheus on for the gauge. Needs docker-registry and python3 (stdlib only).
Every process is stopped by PID. The rules of bench/run.sh apply: a private copy of the
binary, rounds dropped and measured again while a cargo build runs (BENCH_BUILD_WAIT,
BENCH_RETRIES, BENCH_IGNORE_BUILDS), BENCH_KEEP=1 keeps the run dir (server logs, configs).
"""

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import harness
from harness import (BENCH_DIR, CACHE, RESULTS, ROOT, ROUNDS, SELF_TEST, Rounds, die, fmt, free_port, log,
                     order, pct, row, say, spawn, stop, stop_all, table_head)

REPOS = int(os.environ.get("BENCH_UI_REPOS", "10000"))
TAGS = int(os.environ.get("BENCH_UI_TAGS", "10"))
TTFB_REQUESTS = int(os.environ.get("BENCH_UI_TTFB", "200"))
SEARCHES = int(os.environ.get("BENCH_UI_SEARCHES", "500"))
ALL = ("catalog", "ui", "startup", "memory")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

harness.LABEL_WIDTH = 40
harness.RATIO_DIGITS = 3


# --- the data: distribution's layout, written directly --------------------------------------------

ORGS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne",
        "soylent", "aperture", "blackmesa", "oscorp", "massive", "vandelay", "dunder", "pied-piper", "prestige",
        "gringotts", "monarch", "nakatomi", "octan", "rekall", "sirius", "veidt", "weyland", "yoyodyne", "zorg",
        "platform", "data", "infra", "ml", "web", "mobile", "payments", "search", "identity", "edge", "core"]
PROJECTS = ["api", "frontend", "backend", "worker", "scheduler", "gateway", "billing", "auth", "catalog", "cart",
            "checkout", "inventory", "ledger", "notifier", "reports", "analytics", "ingest", "etl", "feature-store",
            "model-server", "trainer", "cache", "proxy", "router", "metrics", "logging", "tracing", "vault", "dns",
            "mailer", "chat", "video", "images", "thumbnails", "pdf", "export", "import", "sync", "backup", "cron"]
PARTS = ["server", "client", "cli", "migrations", "sidecar", "init", "debug", "base", "runtime", "builder",
         "tests", "docs", "agent", "operator", "controller", "webhook", "exporter", "dashboard", "job", "daemon"]
TAG_NAMES = ["latest", "stable", "v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0", "v2.0.1", "v2.1.0", "main", "dev",
             "v3.0.0-rc1", "v3.0.0", "nightly", "canary", "lts"]


def repo_names(n):
    rnd = random.Random(12)
    names = set()
    i = 0
    while len(names) < n:
        org = ORGS[i % len(ORGS)]
        proj = rnd.choice(PROJECTS)
        if rnd.random() < 0.5:
            name = f"{org}/{proj}-{i}"
        else:
            name = f"{org}/{proj}/{rnd.choice(PARTS)}-{i}"
        names.add(name)
        i += 1
    return sorted(names)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def blob(root, data):
    h = hashlib.sha256(data).hexdigest()
    write(os.path.join(root, "docker/registry/v2/blobs/sha256", h[:2], h, "data"), data)
    return h


def dataset():
    """The shared data dir (generated once): returns (root, names)."""
    root = os.path.join(CACHE, f"ui-{REPOS}-{TAGS}")
    stamp = os.path.join(root, ".complete")
    names = repo_names(REPOS)
    if os.path.exists(stamp):
        return root, names
    if os.path.exists(root):
        shutil.rmtree(root)
    t0 = time.time()
    log(f"generating {REPOS} repositories x {TAGS} tags in {root} ...")
    # A few images: a layer each (random bytes, not a real tar: neither server reads it) and a
    # config with a creation time; five manifests shared round-robin.
    images = []
    for k in range(5):
        layer = random.Random(k).randbytes(2048 + k)
        lh = blob(root, layer)
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "created": f"2024-0{k + 1}-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/bin"], "Entrypoint": ["/app"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
            "history": [{"created_by": f"bench layer {k}"}],
        }).encode()
        ch = blob(root, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + ch,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + lh,
                        "size": len(layer)}],
        }).encode()
        mh = blob(root, manifest)
        images.append((lh, ch, mh))
    repos = os.path.join(root, "docker/registry/v2/repositories")
    for i, name in enumerate(names):
        lh, ch, mh = images[i % len(images)]
        base = os.path.join(repos, name)
        for h in (lh, ch):
            write(os.path.join(base, "_layers/sha256", h, "link"), f"sha256:{h}".encode())
        write(os.path.join(base, "_manifests/revisions/sha256", mh, "link"), f"sha256:{mh}".encode())
        for t in range(TAGS):
            tag = TAG_NAMES[t] if t < len(TAG_NAMES) else f"build-{t}"
            tdir = os.path.join(base, "_manifests/tags", tag)
            write(os.path.join(tdir, "current/link"), f"sha256:{mh}".encode())
            write(os.path.join(tdir, "index/sha256", mh, "link"), f"sha256:{mh}".encode())
        if i % 1000 == 999:
            log(f"  {i + 1} repositories ({time.time() - t0:.0f} s)")
    open(stamp, "w").close()
    log(f"generated in {time.time() - t0:.0f} s")
    return root, names


def search_terms(names, n):
    """n varied terms: org names, projects, parts, numbers, name fragments, misses."""
    rnd = random.Random(7)
    terms = []
    pools = [ORGS, PROJECTS, PARTS]
    while len(terms) < n:
        kind = len(terms) % 6
        if kind < 3:
            terms.append(rnd.choice(pools[kind]))
        elif kind == 3:
            terms.append(str(rnd.randrange(10, 9999)))
        elif kind == 4:
            name = rnd.choice(names)
            a = rnd.randrange(0, max(1, len(name) - 4))
            terms.append(name[a:a + rnd.randrange(3, 9)])
        else:
            terms.append(rnd.choice(["zzz", "nomatch", "qqq-", "xyzzy"]) + str(rnd.randrange(100)))
    return terms


# --- servers -------------------------------------------------------------------------------------

def config_yml(slot, port, root, debug_port=None):
    lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true", "storage:",
             "  filesystem:", f"    rootdirectory: {root}", "  delete:", "    enabled: false",
             "http:", f"  addr: 127.0.0.1:{port}", "  secret: dockyard-bench"]
    if slot == "dockyard" and not SELF_TEST and debug_port:
        lines += ["  debug:", f"    addr: 127.0.0.1:{debug_port}", "    prometheus:", "      enabled: true",
                  "      path: /metrics"]
    if slot == "distribution" or SELF_TEST:
        lines[6:6] = ["  cache:", "    blobdescriptor: inmemory"]
    return "\n".join(lines) + "\n"


class Server:
    def __init__(self, bench, slot, root, ready_path="/v2/"):
        self.slot = slot
        self.port = free_port()
        self.debug_port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        name = f"{slot}-{self.port}"
        self.config = os.path.join(bench.run_dir, name + ".yml")
        self.logfile = os.path.join(bench.run_dir, name + ".log")
        with open(self.config, "w") as f:
            f.write(config_yml(slot, self.port, root, self.debug_port))
        if slot == "dockyard" and not SELF_TEST:
            argv = [bench.dockyard, "serve", self.config]
        else:
            argv = ["docker-registry", "serve", self.config]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_") and k != "RUST_LOG"}
        subprocess.run(["sync"])
        t0 = time.monotonic()
        self.proc = spawn(argv, self.logfile, env)
        self.ready_s = {}
        self.ready_s["/v2/"] = self.wait(t0, "/v2/")
        if ready_path != "/v2/":
            self.ready_s[ready_path] = self.wait(t0, ready_path)

    def wait(self, t0, path):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", path)
                status = c.getresponse().status
                c.close()
                if status == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.002)
        log(open(self.logfile, errors="replace").read()[-3000:])
        self.stop()
        die(f"{self.slot} did not answer 200 on {path} (log {self.logfile})")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        stop(self.proc)


def get(conn, path):
    conn.request("GET", path, headers={"Accept": "text/html, application/json"})
    resp = conn.getresponse()
    body = resp.read()
    return resp, body


def next_link(resp):
    link = resp.getheader("Link")
    if not link:
        return None
    m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    if not m:
        return None
    target = m.group(1)
    if target.startswith("http"):
        u = urllib.parse.urlsplit(target)
        target = u.path + ("?" + u.query if u.query else "")
    return target


def walk_catalog(base, n):
    """All pages of /v2/_catalog?n=N on one keep-alive connection: (seconds, names, pages)."""
    host, port = base.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    path = f"/v2/_catalog?n={n}"
    names, pages = [], 0
    t0 = time.perf_counter()
    while path:
        resp, body = get(conn, path)
        if resp.status != 200:
            die(f"GET {path}: {resp.status} {body[:300]!r}")
        names.extend(json.loads(body)["repositories"])
        pages += 1
        path = next_link(resp)
    took = time.perf_counter() - t0
    conn.close()
    return took, names, pages


def ttfb(base, path):
    """Seconds from connecting to the first byte of the response (a new connection), and to
    the whole response; the status."""
    host, port = base.split(":")
    t0 = time.perf_counter()
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {base}\r\nAccept: text/html\r\nConnection: close\r\n\r\n".encode())
    first = s.recv(65536)
    t1 = time.perf_counter()
    data = first
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    t2 = time.perf_counter()
    s.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return t1 - t0, t2 - t0, status, data


def timed_gets(base, paths):
    """Each path once on a keep-alive connection: per-request seconds, and the bodies' sizes."""
    host, port = base.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    times, sizes = [], []
    for path in paths:
        t0 = time.perf_counter()
        resp, body = get(conn, path)
        times.append(time.perf_counter() - t0)
        if resp.status != 200:
            die(f"GET {path}: {resp.status} {body[:300]!r}")
        sizes.append(len(body))
    conn.close()
    return times, sizes


def metric(base, name):
    host, port = base.split(":")
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        resp, body = get(conn, "/metrics")
        conn.close()
    except OSError:
        return float("nan")
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


# --- the scenarios -------------------------------------------------------------------------------

class Bench:
    def __init__(self):
        os.makedirs(CACHE, exist_ok=True)
        self.run_dir = tempfile.mkdtemp(prefix="run-ui-", dir=BENCH_DIR)
        if SELF_TEST:
            self.dockyard = None
            self.desc = "SELF-TEST (BENCH_SELF_TEST=1): distribution 2.8.2 in BOTH columns"
        else:
            src = os.environ.get("DOCKYARD_BIN", os.path.join(ROOT, "target/release/dockyard"))
            if not os.access(src, os.X_OK):
                die(f"no dockyard binary at {src} (build it, set DOCKYARD_BIN, or BENCH_SELF_TEST=1)")
            os.makedirs(os.path.join(self.run_dir, "bin"))
            self.dockyard = os.path.join(self.run_dir, "bin/dockyard")
            shutil.copy2(src, self.dockyard)
            git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                                 text=True).stdout.strip() or "?"
            mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(src)))
            self.desc = f"{src} ({mtime}, tree {git})"
        self.root, self.names = dataset()
        self.markers = os.path.join(self.root, "dockyard")
        self.order_noted = False

    def describe(self):
        fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", BENCH_DIR], capture_output=True,
                            text=True).stdout.split()
        say(f"# dockyard:     {self.desc}")
        say(f"# distribution: {subprocess.run(['docker-registry', '--version'], capture_output=True, text=True).stdout.split()[-1]}")
        say(f"# data:         {self.root} ({' '.join(fs)}): {REPOS} repositories x {TAGS} tags; page cache not dropped")
        say(f"# rounds:       {ROUNDS}, order alternates; {os.cpu_count()} cores, load {open('/proc/loadavg').read().split()[0:3]}")

    def start(self, slot, ready_path="/v2/"):
        return Server(self, slot, self.root, ready_path)

    def catalog(self):
        for n in (100, 1000):
            rounds = Rounds()
            want = None

            def one(r, record, _check):
                nonlocal want
                for slot in order(r):
                    srv = self.start(slot, "/v2/_catalog?n=1" if slot == "dockyard" and not SELF_TEST else "/v2/")
                    walk_catalog(srv.base, n)  # warm: page cache and whatever the server caches
                    took, names, pages = walk_catalog(srv.base, n)
                    srv.stop()
                    if len(set(names)) != REPOS or set(names) != set(self.names):
                        die(f"{slot}'s catalog is not the {REPOS} names: {len(names)} listed, "
                            f"{len(set(names))} distinct")
                    if want is None:
                        want = (slot, names)
                    elif names != want[1] and not self.order_noted:
                        self.order_noted = True
                        i = next(i for i, (a, b) in enumerate(zip(names, want[1])) if a != b)
                        log(f"  note: {slot} lists the same names in another order than {want[0]}: "
                            f"at #{i} {names[max(0, i - 1):i + 2]} vs {want[1][max(0, i - 1):i + 2]}")
                    log(f"  round {r} n={n} {slot}: {took:.3f} s, {pages} pages")
                    record("walk", slot, took)
                    record("pages", slot, pages)

            rounds.run(one)
            table_head(f"catalog: /v2/_catalog?n={n} followed through every page, {REPOS} repositories")
            a, b = rounds.median("walk", "dockyard"), rounds.median("walk", "distribution")
            row("all pages (s)", a, b, "ratio<=0.1" if n == 100 else "")
            row("pages", rounds.median("pages", "dockyard"), rounds.median("pages", "distribution"))
            row("per page (ms)", a / rounds.median("pages", "dockyard") * 1e3,
                b / rounds.median("pages", "distribution") * 1e3)

    def ui(self):
        slot = "distribution" if SELF_TEST else "dockyard"
        if SELF_TEST:
            say("\n(ui: Dockyard only; skipped in a self-test)")
            return
        terms = search_terms(self.names, SEARCHES)
        rounds = Rounds()
        repo_pages = [f"/r/{n}" for n in random.Random(3).sample(self.names, 50)]

        def one(r, record, _check):
            srv = self.start(slot, "/v2/_catalog?n=1")
            # Warm-up: the page, one search and the repository pages once each.
            ttfb(srv.base, "/")
            timed_gets(srv.base, ["/-/search?q=api", "/v1/search?q=api"] + repo_pages[:5])
            firsts, wholes = [], []
            for _ in range(TTFB_REQUESTS):
                first, whole, status, data = ttfb(srv.base, "/")
                if status != 200 or b'id="repositories"' not in data:
                    die(f"GET / answered {status}: {data[:300]!r}")
                firsts.append(first)
                wholes.append(whole)
            ui_times, ui_sizes = timed_gets(srv.base, [f"/-/search?q={urllib.parse.quote(t)}" for t in terms])
            v1_times, _ = timed_gets(srv.base, [f"/v1/search?q={urllib.parse.quote(t)}&n=25" for t in terms])
            page_times, _ = timed_gets(srv.base, repo_pages)
            srv.stop()
            for name, vals in (("ttfb", firsts), ("whole", wholes), ("ui", ui_times), ("v1", v1_times),
                               ("repo", page_times)):
                record(name + "50", slot, pct(vals, 50) * 1e3)
                record(name + "99", slot, pct(vals, 99) * 1e3)
            log(f"  round {r}: / ttfb p50 {pct(firsts, 50) * 1e3:.2f} ms p99 {pct(firsts, 99) * 1e3:.2f} ms; "
                f"search p99 {pct(ui_times, 99) * 1e3:.2f} ms; v1 p99 {pct(v1_times, 99) * 1e3:.2f} ms; "
                f"repo page p99 {pct(page_times, 99) * 1e3:.2f} ms")

        rounds.run(one)
        table_head(f"ui: Dockyard only, {REPOS} repositories (ms; medians over rounds)", ("p50", "p99"))
        m = rounds.median
        say(f"{'first byte of / (' + str(TTFB_REQUESTS) + ' new connections)':<40} {fmt(m('ttfb50', slot)):>12} "
            f"{fmt(m('ttfb99', slot)):>12} {'-':>8}  {'p50 <= 50':<17} {'PASS' if m('ttfb50', slot) <= 50 else 'MISS'}")
        say(f"{'whole / (same requests)':<40} {fmt(m('whole50', slot)):>12} {fmt(m('whole99', slot)):>12}")
        say(f"{'/-/search?q= (' + str(SEARCHES) + ' terms)':<40} {fmt(m('ui50', slot)):>12} {fmt(m('ui99', slot)):>12} "
            f"{'-':>8}  {'p99 <= 20':<17} {'PASS' if m('ui99', slot) <= 20 else 'MISS'}")
        say(f"{'/v1/search?q= (same terms)':<40} {fmt(m('v150', slot)):>12} {fmt(m('v199', slot)):>12} "
            f"{'-':>8}  {'p99 <= 20':<17} {'PASS' if m('v199', slot) <= 20 else 'MISS'}")
        say(f"{'/r/NAME (50 repositories, 10 tags)':<40} {fmt(m('repo50', slot)):>12} {fmt(m('repo99', slot)):>12}")

    def startup(self):
        rounds = Rounds()
        catalog_path = "/v2/_catalog?n=1"

        def one(r, record, _check):
            for slot in order(r):
                if slot == "dockyard" and not SELF_TEST:
                    shutil.rmtree(self.markers, ignore_errors=True)
                    srv = self.start(slot, catalog_path)
                    record("cold-v2", slot, srv.ready_s["/v2/"])
                    record("cold-index", slot, srv.ready_s[catalog_path])
                    cold = srv.ready_s[catalog_path]
                    srv.stop()
                    if not os.path.exists(os.path.join(self.markers, "names.complete")):
                        log("  note: no names.complete marker after the first start")
                    srv = self.start(slot, catalog_path)
                    record("warm-v2", slot, srv.ready_s["/v2/"])
                    record("warm-index", slot, srv.ready_s[catalog_path])
                    srv.stop()
                    log(f"  round {r} dockyard: index ready after {cold:.3f} s without markers, "
                        f"{srv.ready_s[catalog_path]:.3f} s with them")
                else:
                    srv = self.start(slot, "/v2/")
                    record("cold-v2", slot, srv.ready_s["/v2/"])
                    record("warm-v2", slot, srv.ready_s["/v2/"])
                    record("cold-index", slot, float("nan"))
                    srv.stop()

        rounds.run(one)
        table_head("startup: process start to the first 200 (s)")
        m = rounds.median
        row("/v2/, no name markers", m("cold-v2", "dockyard"), m("cold-v2", "distribution"))
        row("/v2/, markers present", m("warm-v2", "dockyard"), m("warm-v2", "distribution"))
        row("index ready, no markers (full walk)", m("cold-index", "dockyard"))
        row("index ready, markers present", m("warm-index", "dockyard"))
        say("  (index ready: the first 200 on /v2/_catalog?n=1; distribution has no index and walks")
        say("   the tree on every catalog request instead, see the catalog table)")

    def memory(self):
        if SELF_TEST:
            say("\n(memory: Dockyard only; skipped in a self-test)")
            return
        # RSS does not depend on what else runs: builds neither wait nor drop rounds here.
        rounds = Rounds(builds_matter=False)
        empty = os.path.join(self.run_dir, "empty")
        os.makedirs(empty, exist_ok=True)

        def one(r, record, _check):
            srv = Server(self, "dockyard", empty, "/v2/_catalog?n=1")
            time.sleep(0.5)
            record("rss-empty", "dockyard", srv.rss_kib() / 1024)
            srv.stop()
            srv = self.start("dockyard", "/v2/_catalog?n=1")
            time.sleep(0.5)
            record("rss-loaded", "dockyard", srv.rss_kib() / 1024)
            gauge = float("nan")
            deadline = time.time() + 30
            while time.time() < deadline:
                gauge = metric(f"127.0.0.1:{srv.debug_port}", "dockyard_catalog_index_bytes")
                if gauge == gauge and gauge > 0:
                    break
                time.sleep(0.5)
            record("gauge", "dockyard", gauge / 1024 / 1024)
            record("repos", "dockyard", metric(f"127.0.0.1:{srv.debug_port}", "dockyard_catalog_repositories"))
            # After serving the list and searches once (buffers, the UI's caches).
            timed_gets(srv.base, ["/", "/-/search?q=api", "/v1/search?q=a", "/v2/_catalog?n=1000"])
            record("rss-used", "dockyard", srv.rss_kib() / 1024)
            srv.stop()

        rounds.run(one)
        table_head(f"memory: Dockyard's RSS (MiB), {REPOS} repositories", ("dockyard", "-"))
        m = rounds.median
        row("RSS at rest, empty data dir", m("rss-empty", "dockyard"))
        row("RSS with the index loaded", m("rss-loaded", "dockyard"))
        row("difference (the index and its load)", m("rss-loaded", "dockyard") - m("rss-empty", "dockyard"))
        row("RSS after /, a search, a catalog page", m("rss-used", "dockyard"))
        row("dockyard_catalog_index_bytes (MiB)", m("gauge", "dockyard"))
        row("dockyard_catalog_repositories", m("repos", "dockyard"))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        return
    selected = args or list(ALL)
    for s in selected:
        if s not in ALL:
            die(f"unknown scenario {s!r} (known: {' '.join(ALL)})")
    os.makedirs(BENCH_DIR, exist_ok=True)
    bench = Bench()
    try:
        bench.describe()
        for s in selected:
            log(f"\n--- {s} ---")
            getattr(bench, s)()
    finally:
        stop_all()
        if os.environ.get("BENCH_KEEP", "0") == "1":
            log(f"kept {bench.run_dir}")
        else:
            shutil.rmtree(bench.run_dir, ignore_errors=True)
    print("\n".join(RESULTS))
    with open(os.path.join(BENCH_DIR, "last-ui-results.txt"), "w") as f:
        f.write("\n".join(RESULTS) + "\n")


if __name__ == "__main__":
    main()
