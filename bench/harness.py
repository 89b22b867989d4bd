"""What bench/s3.py and bench/ui.py share (stdlib only), with bench/lib.sh's rules: processes
started and stopped by PID, rounds dropped and measured again while a cargo build runs, both
servers in the same run in alternating order, medians, and result tables with ratios
dockyard / distribution and PASS/MISS against a target.

A script imports this module and may set LABEL_WIDTH and RATIO_DIGITS for its tables."""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH_DIR = os.environ.get("BENCH_DIR", "/var/tmp/dockyard-bench")
CACHE = os.path.join(BENCH_DIR, "cache")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SELF_TEST = os.environ.get("BENCH_SELF_TEST", "0") == "1"
SLOTS = ("dockyard", "distribution")

PROCS = {}  # pid -> Popen, every process this script started and has not stopped yet
RESULTS = []

# The tables' metric column width and the digits of the ratio column.
LABEL_WIDTH = 34
RATIO_DIGITS = 2


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def say(line=""):
    """A line of the result tables: shown live on stderr, printed again on stdout at the end."""
    RESULTS.append(line)
    log(line)


def die(msg):
    log(f"bench/{os.path.basename(sys.argv[0])}: {msg}")
    stop_all()
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv, logfile, env, **kw):
    out = open(logfile, "ab")
    p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    out.close()
    PROCS[p.pid] = p
    return p


def stop(p, timeout=10):
    """TERM, then KILL after `timeout` s; by PID, only our own child."""
    if p is None or p.pid not in PROCS:
        return
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    del PROCS[p.pid]


def stop_all():
    for p in list(PROCS.values()):
        stop(p)


# --- builds on the machine (2 cores): the same rules as bench/lib.sh ---------------------------------

def building():
    if os.environ.get("BENCH_IGNORE_BUILDS", "0") == "1":
        return False
    for name in ("cargo", "rustc", "clippy-driver"):
        if subprocess.run(["pgrep", "-x", name], stdout=subprocess.DEVNULL).returncode == 0:
            return True
    return False


def wait_quiet():
    limit, waited = int(os.environ.get("BENCH_BUILD_WAIT", "3600")), 0
    while building():
        if waited >= limit:
            die(f"a cargo build is still running after {limit}s; giving up")
        if waited == 0:
            log("  waiting for a running cargo/rustc build to finish...")
        time.sleep(10)
        waited += 10


class Rounds:
    """ROUNDS rounds; a round during which a cargo build ran is dropped and measured again,
    at most BENCH_RETRIES times per scenario (unless builds do not matter to what is measured).
    Values are kept per (metric, slot). A round is `fn(r, record, check)`: `record(metric, slot,
    value)` keeps a value, `check()` notes a build running at that moment (for long rounds)."""

    def __init__(self, rounds=ROUNDS, builds_matter=True):
        self.rounds = rounds
        self.builds_matter = builds_matter
        self.vals = {}
        self.retries = int(os.environ.get("BENCH_RETRIES", "5"))

    def run(self, fn):
        r = 1
        while r <= self.rounds:
            if self.builds_matter:
                wait_quiet()
            got = {}
            disturbed = [False]

            def record(metric, slot, value):
                got.setdefault((metric, slot), []).append(value)

            def check():
                if building():
                    disturbed[0] = True

            fn(r, record, check)
            disturbed[0] = self.builds_matter and (disturbed[0] or building())
            if disturbed[0] and self.retries > 0:
                self.retries -= 1
                log("  a cargo build ran during this round: dropped, measuring it again")
                continue
            if disturbed[0]:
                log("  a cargo build ran during this round, and no retries are left: kept")
            for k, v in got.items():
                self.vals.setdefault(k, []).extend(v)
            r += 1

    def values(self, metric, slot):
        return self.vals.get((metric, slot), [])

    def median(self, metric, slot):
        v = self.vals.get((metric, slot))
        return statistics.median(v) if v else float("nan")


def order(r):
    return SLOTS if r % 2 else SLOTS[::-1]


def fmt(x):
    if x != x:
        return "nan"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.3f}"


def table_head(title, cols=("dockyard", "distribution")):
    say()
    say(f"== {title} ==")
    say(f"{'metric':<{LABEL_WIDTH}} {cols[0]:>12} {cols[1]:>12} {'ratio':>8}  {'target':<17} result")


def row(label, a, b=float("nan"), rule=""):
    """Medians a (dockyard) and b (distribution, or nan for none), ratio a/b, and the target:
    'ratio<=X' / 'ratio>=X' on the ratio, 'dockyard<=X' on a."""
    ratio = a / b if b and b == b and a == a else float("nan")
    verdict = ""
    m = re.fullmatch(r"(ratio|dockyard)(<=|>=)([0-9.]+)", rule)
    if m:
        x = ratio if m[1] == "ratio" else a
        lim = float(m[3])
        ok = x <= lim if m[2] == "<=" else x >= lim
        verdict = "PASS" if ok and x == x else "MISS"
        rule = f"{m[1]} {m[2]} {m[3]}"
    rs = f"{ratio:.{RATIO_DIGITS}f}x" if ratio == ratio else "-"
    bs = fmt(b) if b == b else "-"
    say(f"{label:<{LABEL_WIDTH}} {fmt(a):>12} {bs:>12} {rs:>8}  {rule:<17} {verdict}")


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]
