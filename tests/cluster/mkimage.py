#!/usr/bin/env python3
"""Packs one static executable as a one-layer OCI image archive for `ctr images import`.

    mkimage.py BINARY DEST NAME:TAG OUT.tar

The test cluster's pod sandbox (pause) image is made this way: registry.k8s.io cannot be
reached offline. The OCI archive is written by image/build.py's helpers.
"""
import io
import os
import sys
import tarfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../image"))
from build import canonical, put, write_archive  # noqa: E402

binary, dest, ref, out = sys.argv[1:5]
blobs = {}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
    data = open(binary, "rb").read()
    ti = tarfile.TarInfo(dest.strip("/"))
    ti.size, ti.mode = len(data), 0o755
    tf.addfile(ti, io.BytesIO(data))
layer = buf.getvalue()
layer_desc = put(blobs, layer, "application/vnd.oci.image.layer.v1.tar")
config = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Entrypoint": [dest]},
    "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
}
config_desc = put(blobs, canonical(config), "application/vnd.oci.image.config.v1+json")
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc, "layers": [layer_desc]}
manifest_desc = put(blobs, canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
manifest_desc["annotations"] = {"io.containerd.image.name": ref,
                                "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
write_archive(out, blobs, {"schemaVersion": 2, "manifests": [manifest_desc]}, 0)
