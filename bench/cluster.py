#!/usr/bin/env python3
"""Time from `kubectl apply` of a Registry to Ready on a real single-node cluster, with a
breakdown, and the memory of the operator and registry pods as the kubelet accounts them.

    DOCKYARD_BIN=target/release/dockyard python3 bench/cluster.py [--rounds 5]

It starts the test cluster (tests/cluster/up.sh; root), builds the image from DOCKYARD_BIN
(image/build.py), imports it, installs the chart, then for each round applies a Registry (one
user, self-signed TLS, a claim) in a fresh namespace and polls the API server every 20 ms for
the milestones: the operator's Deployment, the pod, its scheduling, its container running, its
readiness, and the Registry's Ready condition. Medians are printed; the cluster is stopped at
the end. MC_DIR=<dir of a running cluster> uses that one instead (and leaves it running).
"""

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.environ.get("DOCKYARD_TOOLS", os.path.join(ROOT, ".tools"))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Api:
    def __init__(self, mc_dir, server):
        self.server = server
        pki = os.path.join(mc_dir, "pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def get(self, path):
        try:
            with urllib.request.urlopen(self.server + path, context=self.ctx, timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise


def kubectl(mc_dir, *args, stdin=None):
    cmd = [os.path.join(TOOLS, "bin/kubectl"), "--kubeconfig", os.path.join(mc_dir, "kubeconfig"), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def registry_yaml(ns):
    return f"""apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: {ns}}}
stringData: {{alice: change-me-please}}
---
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {{name: main, namespace: {ns}}}
spec:
  storage:
    filesystem: {{size: 1Gi}}
  auth:
    users:
      - username: alice
        passwordSecretRef: {{name: users, key: alice}}
"""


def condition(obj, kind):
    for c in (obj or {}).get("status", {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return c.get("status") == "True"
    return False


def one_round(api, mc_dir, ns):
    # The namespace and Secret first, so the round times the Registry alone.
    kubectl(mc_dir, "apply", "-f", "-", stdin=registry_yaml(ns).split("---\napiVersion: dockyard")[0])
    rest = "apiVersion: dockyard" + registry_yaml(ns).split("---\napiVersion: dockyard")[1]
    t0 = time.monotonic()
    kubectl(mc_dir, "apply", "-f", "-", stdin=rest)
    applied = time.monotonic() - t0
    marks = {}
    deadline = t0 + 120
    while time.monotonic() < deadline:
        now = time.monotonic() - t0
        if "deployment" not in marks and api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/main"):
            marks["deployment"] = now
        pods = (api.get(f"/api/v1/namespaces/{ns}/pods") or {}).get("items", [])
        pod = pods[0] if pods else None
        if pod:
            marks.setdefault("pod", now)
            if pod["spec"].get("nodeName"):
                marks.setdefault("scheduled", now)
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if statuses and "running" in statuses[0].get("state", {}):
                marks.setdefault("running", now)
            if condition(pod, "Ready"):
                marks.setdefault("pod_ready", now)
        reg = api.get(f"/apis/dockyard.dev/v1alpha1/namespaces/{ns}/registries/main")
        if condition(reg, "Ready"):
            marks["ready"] = now
            break
        time.sleep(0.02)
    if "ready" not in marks:
        sys.exit(f"round {ns}: not Ready within 120 s: {marks}")
    marks["apply"] = applied
    return marks


def memory(api, ns_names):
    """Working set and RSS of each pod, from its memory cgroup (what the kubelet reads)."""
    out = {}
    for ns in ns_names:
        for pod in (api.get(f"/api/v1/namespaces/{ns}/pods") or {}).get("items", []):
            uid = pod["metadata"]["uid"]
            for qos in ("", "burstable/", "besteffort/"):
                base = f"/sys/fs/cgroup/memory/kubepods/{qos}pod{uid}"
                if not os.path.isdir(base):  # cgroup v2, cgroupfs driver
                    base = f"/sys/fs/cgroup/kubepods/{qos}pod{uid}"
                if os.path.isdir(base):
                    stat = dict(l.split() for l in open(os.path.join(base, "memory.stat")))
                    usage_file = "memory.usage_in_bytes" if os.path.exists(os.path.join(base, "memory.usage_in_bytes")) else "memory.current"
                    usage = int(open(os.path.join(base, usage_file)).read())
                    inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
                    rss = int(stat.get("total_rss", stat.get("anon", 0)))
                    out[f"{ns}/{pod['metadata']['name']}"] = (usage - inactive, rss)
                    break
    return out


def start_cluster():
    """The running cluster MC_DIR names, else a new one (tests/cluster/up.sh): (dir, started)."""
    mc_dir = os.environ.get("MC_DIR")
    if mc_dir:
        return mc_dir, False
    out = subprocess.run(["bash", os.path.join(ROOT, "tests/cluster/up.sh")], capture_output=True, text=True, check=True)
    return next(l.split("=", 1)[1] for l in out.stdout.splitlines() if l.startswith("MC_DIR=")), True


def stop_cluster(mc_dir, started):
    if started:
        subprocess.run(["bash", os.path.join(ROOT, "tests/cluster/down.sh"), mc_dir], stdout=subprocess.DEVNULL)


def install(binary, mc_dir):
    """Builds the image from `binary`, imports it into the node's containerd and installs the
    chart with it, the node agent aimed at the test bed's private containerd (never the
    host's /etc). Returns the cluster's env file as a dict."""
    env = dict(l.split("=", 1) for l in open(os.path.join(mc_dir, "env")).read().splitlines() if "=" in l)
    archive = os.path.join(mc_dir, "bench-image.tar")
    subprocess.run([sys.executable, os.path.join(ROOT, "image/build.py"), "--binary", binary,
                    "--name", "dockyard.dev/dockyard:bench", "--out", archive], check=True, stdout=sys.stderr)
    subprocess.run(["ctr", "--address", env["MC_CONTAINERD_SOCK"], "-n", "k8s.io", "images", "import", archive],
                   check=True, stdout=subprocess.DEVNULL)
    helm = [os.path.join(TOOLS, "bin/helm"), "--kubeconfig", os.path.join(mc_dir, "kubeconfig")]
    subprocess.run(helm + ["upgrade", "--install", "dockyard", os.path.join(ROOT, "charts/dockyard"),
                           "-n", "dockyard-system", "--create-namespace",
                           "--set", "image.repository=dockyard.dev/dockyard", "--set", "image.tag=bench",
                           "--set", "image.pullPolicy=Never",
                           "--set", f"nodeAgent.hostPaths={{{mc_dir}}}",
                           "--set", f"nodeAgent.containerdConfig={mc_dir}/containerd/config.toml",
                           "--set", f"nodeAgent.containerdSocket={env['MC_CONTAINERD_SOCK']}",
                           "--set", f"nodeAgent.stateDir={mc_dir}/node-agent",
                           "--wait", "--timeout", "120s"],
                   check=True, stdout=subprocess.DEVNULL)
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    binary = os.environ.get("DOCKYARD_BIN", os.path.join(ROOT, "target/release/dockyard"))
    mc_dir, started = start_cluster()
    try:
        env = install(binary, mc_dir)
        api = Api(mc_dir, env["MC_SERVER"])
        rounds = []
        # Names of their own, so that a reused cluster (MC_DIR) starts each round from nothing.
        run_id = time.strftime("%H%M%S")
        names = [f"bench-{run_id}-{i}" for i in range(a.rounds)]
        for i, ns in enumerate(names):
            marks = one_round(api, mc_dir, ns)
            log(f"round {i + 1}/{a.rounds}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(marks.items(), key=lambda kv: kv[1])))
            rounds.append(marks)
        mem = memory(api, ["dockyard-system", *names])
        # The Registries go; their claims (and the local volumes, Retain) stay with the cluster.
        kubectl(mc_dir, "delete", "namespace", "--wait=false", *names)
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(f"== apply to Ready on a real kubelet (median of {a.rounds}; seconds after kubectl apply started) ==")
        steps = [("kubectl apply returned", "apply"), ("operator: Deployment created", "deployment"),
                 ("controller-manager: pod created", "pod"), ("scheduler: pod bound", "scheduled"),
                 ("kubelet: container running (image local)", "running"), ("probes: pod Ready", "pod_ready"),
                 ("operator: Registry Ready", "ready")]
        for label, key in steps:
            print(f"{label:<44} {med[key]:6.2f}")
        print(f"{'target: Registry Ready':<44} {'<= 15':>6}   {'PASS' if med['ready'] <= 15 else 'MISS'}")
        print("== memory of each pod's cgroup, idle after start (working set / RSS, MiB) ==")
        for name, (ws, rss) in sorted(mem.items()):
            print(f"{name:<52} {ws / 2**20:6.1f} / {rss / 2**20:6.1f}")
    finally:
        stop_cluster(mc_dir, started)


if __name__ == "__main__":
    main()
