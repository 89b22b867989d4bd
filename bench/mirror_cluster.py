#!/usr/bin/env python3
"""RegistryMirror on a real single-node cluster: time from `kubectl apply` to every node
configured, the node agent's memory, and a cold image pulled by the kubelet through the
mirror against the same-sized image pulled directly from the upstream.

    DOCKYARD_BIN=target/release/dockyard python3 bench/mirror_cluster.py [--rounds 5] [--mib 500]

It starts the test cluster (tests/cluster/up.sh; root) unless MC_DIR names a running one,
builds and imports the image from DOCKYARD_BIN, installs the chart with the node agent aimed
at the test bed's private containerd, and runs an upstream registry (the same binary, plain
HTTP) on the host, which pods reach at the bridge address. Then:

- configure: for each round, apply a RegistryMirror of `upstream.test:5000` and poll every
  20 ms until its status says the node is configured (the agent wrote hosts.toml and
  reported), then delete it and wait for the agent to remove the file;
- pull: two images of --mib MiB of incompressible layers (distinct content, so neither is in
  containerd's store); one Pod pulls the first through the mirror (cold cache), another pulls
  the second with no mirror configured (straight from the upstream). Time from creating the
  Pod to its container running.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import (ROOT, TOOLS, Api, condition, install, kubectl, log, memory,  # noqa: E402
                     start_cluster, stop_cluster)

HOST = "upstream.test:5000"


def mirror_yaml(url):
    return f"""apiVersion: dockyard.dev/v1alpha1
kind: RegistryMirror
metadata: {{name: edge, namespace: mirrors}}
spec:
  upstreams: [{{host: "{HOST}", url: "{url}", insecure: true}}]
  cache: {{storage: {{size: 4Gi}}}}
  nodes: {{runtimes: [containerd]}}
"""


def pod_yaml(name, image):
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: mirrors}}
spec:
  containers: [{{name: app, image: "{image}", imagePullPolicy: Always}}]
  terminationGracePeriodSeconds: 1
"""


def big_image(work, name, mib):
    """An OCI layout of the pause binary plus `mib` MiB of random data in 50 MiB layers."""
    import hashlib
    import io
    import json
    import tarfile

    layout = os.path.join(work, name)
    blobs = os.path.join(layout, "blobs/sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return {"digest": f"sha256:{d}", "size": len(data)}

    def layer(files):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for path, data, mode in files:
                ti = tarfile.TarInfo(path)
                ti.size, ti.mode = len(data), mode
                tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    pause = open(os.path.join(TOOLS, "cluster-images/pause"), "rb").read()
    layers = [layer([("app", pause, 0o755)])]
    left = mib
    i = 0
    while left > 0:
        n = min(50, left)
        layers.append(layer([(f"data/{i}", os.urandom(n << 20), 0o644)]))
        left -= n
        i += 1
    descs = [dict(put(l), mediaType="application/vnd.oci.image.layer.v1.tar") for l in layers]
    config = {"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/app"]},
              "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}
    cdesc = dict(put(json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    mdesc = dict(put(json.dumps(manifest).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return layout


def wait(what, check, timeout=300, every=0.02):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = check()
        if v:
            return time.monotonic() - t0
        time.sleep(every)
    sys.exit(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=500)
    a = ap.parse_args()
    binary = os.environ.get("DOCKYARD_BIN", os.path.join(ROOT, "target/release/dockyard"))
    mc_dir, started = start_cluster()
    upstream = None
    work = tempfile.mkdtemp(prefix="dockyard-mirror-bench-")
    try:
        env = install(binary, mc_dir)
        api = Api(mc_dir, env["MC_SERVER"])
        port = 5600
        data = os.path.join(work, "upstream")
        upstream = subprocess.Popen([binary, "serve"], env={**os.environ, "REGISTRY_HTTP_ADDR": f"0.0.0.0:{port}",
                                                          "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": data},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{env['MC_NODE_IP']}:{port}"
        time.sleep(0.5)
        for name in ("through", "direct"):
            layout = big_image(work, name, a.mib)
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1",
                            f"docker://127.0.0.1:{port}/library/{name}:1"], check=True, stdout=subprocess.DEVNULL)
        kubectl(mc_dir, "create", "namespace", "mirrors")
        hosts = os.path.join(env["MC_CERTS_D"], HOST, "hosts.toml")
        configure = []
        for i in range(a.rounds):
            t0 = time.monotonic()
            kubectl(mc_dir, "apply", "-f", "-", stdin=mirror_yaml(url))
            def configured():
                m = api.get("/apis/dockyard.dev/v1alpha1/namespaces/mirrors/registrymirrors/edge")
                return m and (m.get("status") or {}).get("nodes", {}).get("summary") == "1/1" and condition(m, "NodesConfigured")
            wait("the node configured", configured)
            took = time.monotonic() - t0
            file_at = os.path.exists(hosts)
            configure.append(took)
            log(f"round {i + 1}/{a.rounds}: node configured {took:.2f} s after apply (hosts.toml present: {file_at})")
            if i < a.rounds - 1:
                kubectl(mc_dir, "delete", "registrymirror", "edge", "-n", "mirrors")
                wait("hosts.toml removed", lambda: not os.path.exists(hosts), every=0.1)
        wait("mirror Ready", lambda: condition(api.get("/apis/dockyard.dev/v1alpha1/namespaces/mirrors/registrymirrors/edge"), "Ready"))
        mem = memory(api, ["dockyard-system", "mirrors"])

        def pull(name):
            t0 = time.monotonic()
            kubectl(mc_dir, "apply", "-f", "-", stdin=pod_yaml(name, f"{HOST}/library/{name}:1"))
            def running():
                p = api.get(f"/api/v1/namespaces/mirrors/pods/{name}")
                st = ((p or {}).get("status") or {}).get("containerStatuses") or []
                return st and "running" in st[0].get("state", {})
            wait(f"pod {name} running", running, timeout=900, every=0.1)
            return time.monotonic() - t0

        through = pull("through")
        log(f"cold pull through the mirror: {through:.2f} s")
        kubectl(mc_dir, "delete", "registrymirror", "edge", "-n", "mirrors")
        wait("hosts.toml removed", lambda: not os.path.exists(hosts), every=0.1)
        # Without a mirror the node needs the upstream's address (image names use a host it
        # cannot resolve): the hosts.toml a user would write, with no mirror in it.
        os.makedirs(os.path.dirname(hosts), exist_ok=True)
        # (containerd 1.6 refuses a hosts.toml without a [host] table.)
        with open(hosts, "w") as f:
            f.write(f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n')
        direct = pull("direct")
        os.remove(hosts)
        log(f"pull straight from the upstream: {direct:.2f} s")
        kubectl(mc_dir, "delete", "namespace", "mirrors", "--wait=false")
        configure.sort()
        print(f"== RegistryMirror apply -> node configured (median of {a.rounds}, seconds) ==")
        print(f"{'median':<44} {configure[len(configure) // 2]:6.2f}   (min {configure[0]:.2f}, max {configure[-1]:.2f})")
        print(f"{'target':<44} {'<= 10':>6}   {'PASS' if configure[len(configure) // 2] <= 10 else 'MISS'}")
        print(f"== cold {a.mib} MiB image, pod created -> container running (seconds) ==")
        print(f"{'through the mirror (cold cache)':<44} {through:6.2f}")
        print(f"{'straight from the upstream':<44} {direct:6.2f}")
        print(f"{'ratio mirror/direct':<44} {through / direct:6.2f}x")
        print("== memory of each pod's cgroup after the runs (working set / RSS, MiB) ==")
        for name, (ws, rss) in sorted(mem.items()):
            print(f"{name:<52} {ws / 2**20:6.1f} / {rss / 2**20:6.1f}")
        agent = [v for k, v in mem.items() if "node-agent" in k]
        if agent:
            print(f"{'target: node agent RSS <= 20 MiB':<44} {agent[0][1] / 2**20:6.1f}   {'PASS' if agent[0][1] <= 20 * 2**20 else 'MISS'}")
    finally:
        if upstream:
            upstream.terminate()
            upstream.wait()
        subprocess.run(["rm", "-rf", work])
        stop_cluster(mc_dir, started)


if __name__ == "__main__":
    main()
