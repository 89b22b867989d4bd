#!/usr/bin/env python3
"""Packs one static executable as a one-layer OCI image archive for `ctr images import`.

    mkimage.py BINARY DEST NAME:TAG OUT.tar

The test cluster's pod sandbox (pause) image is made this way: registry.k8s.io cannot be
reached offline.
"""
import hashlib, io, json, sys, tarfile

binary, dest, ref, out = sys.argv[1:5]
blobs = {}


def put(data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def canonical(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
    data = open(binary, "rb").read()
    ti = tarfile.TarInfo(dest.strip("/"))
    ti.size, ti.mode = len(data), 0o755
    tf.addfile(ti, io.BytesIO(data))
layer = buf.getvalue()
layer_desc = put(layer, "application/vnd.oci.image.layer.v1.tar")
config = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Entrypoint": [dest]},
    "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
}
config_desc = put(canonical(config), "application/vnd.oci.image.config.v1+json")
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc, "layers": [layer_desc]}
manifest_desc = put(canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
manifest_desc["annotations"] = {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
index = {"schemaVersion": 2, "manifests": [manifest_desc]}
with tarfile.open(out, "w") as tf:
    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    add("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
    add("index.json", canonical(index))
    for digest, data in blobs.items():
        add("blobs/sha256/" + digest.split(":")[1], data)
