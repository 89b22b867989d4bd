#!/usr/bin/env python3
"""mkoci.py DIR LAYER_MIBS: write an OCI image layout with tag "latest" to DIR.

LAYER_MIBS is a comma-separated list of layer sizes in MiB ("0" gives a tiny layer). Each layer is a
gzip (level 1) tar holding one file of random bytes, so it does not compress. Written to DIR.tmp and
renamed, so a half-built layout is never reused.
"""
import hashlib
import json
import os
import shutil
import sys
import tarfile
import zlib

CHUNK = 1 << 20


class BlobWriter:
    """Writes a blob into DIR/blobs/sha256 under its digest."""

    def __init__(self, root):
        self.root, self.sha, self.size = root, hashlib.sha256(), 0
        self.tmp = os.path.join(root, "blobs", "sha256", "tmp")
        self.file = open(self.tmp, "wb")

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        self.file.write(data)

    def commit(self, media_type):
        self.file.close()
        digest = self.sha.hexdigest()
        os.rename(self.tmp, os.path.join(self.root, "blobs", "sha256", digest))
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": self.size}


def write_json(root, obj, media_type):
    blob = BlobWriter(root)
    blob.write(json.dumps(obj, separators=(",", ":")).encode())
    return blob.commit(media_type)


def write_layer(root, index, mib):
    """Returns (descriptor, diff_id) of a gzip'd tar with one random file of `mib` MiB (min 1 KiB)."""
    size = mib * CHUNK or 1024
    out, diff = BlobWriter(root), hashlib.sha256()
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)

    def put(data):
        diff.update(data)
        out.write(gz.compress(data))

    info = tarfile.TarInfo(f"layer{index}.bin")
    info.size, info.mode, info.mtime = size, 0o644, 0
    put(info.tobuf(tarfile.PAX_FORMAT))
    left = size
    while left:
        n = min(left, CHUNK)
        put(os.urandom(n))
        left -= n
    put(b"\0" * (-size % 512 + 1024))  # pad the member, then the two end-of-archive blocks
    out.write(gz.flush())
    return out.commit("application/vnd.oci.image.layer.v1.tar+gzip"), f"sha256:{diff.hexdigest()}"


def main():
    dest, sizes = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "blobs", "sha256"))
    layers, diff_ids = [], []
    for i, mib in enumerate(sizes):
        desc, diff_id = write_layer(tmp, i, mib)
        layers.append(desc)
        diff_ids.append(diff_id)
    config = write_json(tmp, {
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, "application/vnd.oci.image.config.v1+json")
    manifest = write_json(tmp, {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": layers,
    }, "application/vnd.oci.image.manifest.v1+json")
    manifest["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
    with open(os.path.join(tmp, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    os.rename(tmp, dest)
    print(f"{dest}: {len(layers)} layers, {sum(d['size'] for d in layers) / CHUNK:.1f} MiB, manifest {manifest['digest']}")


if __name__ == "__main__":
    main()
