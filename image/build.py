#!/usr/bin/env python3
"""Builds Dockyard's container image from a dockyard binary: no daemon, no base image, no network.

    python3 image/build.py [--binary target/release/dockyard] [--name dockyard.dev/dockyard:dev]
                           [--out target/image/dockyard.oci.tar]

It writes an OCI image layout in a tar (an "OCI archive"), accepted as it is by
`ctr images import`, `skopeo copy oci-archive:FILE ...` and `podman load -i FILE`. The image is
equivalent to the one the Dockerfile builds: one layer holding the stripped binary with the C runtime it links
(glibc's loader, libc, libm, libgcc_s, copied from this machine), the CA certificates, registry:2's
config at /etc/docker/registry/config.yml and an empty /var/lib/registry. It runs as 65532:65532
with any root filesystem, read-only included (it writes only to /var/lib/registry). Every role is
in it: `serve` (the default), `operator`, `crd`, `htpasswd`.

The result is reproducible: the same binary, name, commit and host libraries give the same
digest (SOURCE_DATE_EPOCH sets the creation time, default 0). It prints the image's name,
digest and compressed size.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
UID = GID = 65532
# The C runtime the binary links (`ldd` of a release build): copied into the image where the loader
# looks for it.
LIBDIR = "/lib/x86_64-linux-gnu"
LIBS = ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/release/dockyard")
    ap.add_argument("--name", default="dockyard.dev/dockyard:dev")
    ap.add_argument("--out", default="target/image/dockyard.oci.tar")
    a = ap.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    check_links(a.binary)
    with tempfile.TemporaryDirectory() as tmp:
        stripped = os.path.join(tmp, "dockyard")
        subprocess.run(["strip", "-o", stripped, a.binary], check=True)
        layer = rootfs_tar(stripped, epoch)
    blobs = {}
    compressed = gzip.compress(layer, compresslevel=9, mtime=0)
    layer_desc = put(blobs, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    created = iso(epoch)
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"SSL_CERT_FILE={CA_BUNDLE}"],
            "Entrypoint": ["/usr/local/bin/dockyard"],
            "Cmd": ["serve", "/etc/docker/registry/config.yml"],
            "ExposedPorts": {"5000/tcp": {}},
            "Volumes": {"/var/lib/registry": {}},
            "WorkingDir": "/",
            "Labels": labels(a.name),
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        "history": [{"created": created, "created_by": "image/build.py"}],
    }
    config_desc = put(blobs, canonical(config), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {"org.opencontainers.image.created": created},
    }
    manifest_desc = put(blobs, canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest_desc["annotations"] = {
        # skopeo and podman take the tag from ref.name; ctr takes the whole name from its own key.
        "org.opencontainers.image.ref.name": tag,
        "io.containerd.image.name": a.name,
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
    write_archive(a.out, blobs, index, epoch)
    print(f"{a.name} {manifest_desc['digest']} {len(compressed)} bytes compressed -> {a.out}")


def check_links(binary):
    """Refuses a binary that needs a library the image does not carry."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        lib = line.split()[0]
        if lib.startswith("linux-vdso"):
            continue
        if os.path.basename(lib) not in LIBS:
            sys.exit(f"build.py: {binary} links {lib}, which the image does not carry (add it to LIBS)")


def rootfs_tar(binary, epoch):
    """The image's only layer, as an uncompressed tar with fixed owners and times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:

        def entry(path, kind, mode, uid=0, gid=0, data=b"", link=""):
            ti = tarfile.TarInfo(path)
            ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = kind, mode, epoch, uid, gid
            ti.uname = ti.gname = ""
            if kind == tarfile.SYMTYPE:
                ti.linkname = link
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)

        def file(path, data, mode=0o644):
            entry(path, tarfile.REGTYPE, mode, data=data)

        for d in ["bin", "dev", "etc", "etc/docker", "etc/docker/registry", "etc/ssl", "etc/ssl/certs", "lib",
                  LIBDIR.strip("/"), "lib64", "proc", "sys", "usr", "usr/local", "usr/local/bin", "var", "var/lib"]:
            entry(d, tarfile.DIRTYPE, 0o755)
        entry("tmp", tarfile.DIRTYPE, 0o1777)
        entry("var/lib/registry", tarfile.DIRTYPE, 0o755, UID, GID)
        entry("home", tarfile.DIRTYPE, 0o755)
        entry("home/nonroot", tarfile.DIRTYPE, 0o700, UID, GID)
        file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
             b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
        file("etc/group", b"root:x:0:\nnonroot:x:65532:\n")
        file("etc/nsswitch.conf", b"hosts: files dns\n")
        file("etc/docker/registry/config.yml", read(os.path.join(HERE, "config.yml")))
        file(CA_BUNDLE.strip("/"), read(CA_BUNDLE))
        for lib in LIBS:
            file(f"{LIBDIR.strip('/')}/{lib}", read(os.path.realpath(os.path.join(LIBDIR, lib))), 0o755)
        entry("lib64/ld-linux-x86-64.so.2", tarfile.SYMTYPE, 0o777, link=f"{LIBDIR}/ld-linux-x86-64.so.2")
        file("usr/local/bin/dockyard", read(binary), 0o755)
    return buf.getvalue()


def labels(name):
    revision = subprocess.run(["git", "-C", HERE, "rev-parse", "HEAD"], capture_output=True, text=True)
    out = {
        "org.opencontainers.image.title": "dockyard",
        "org.opencontainers.image.description": "OCI registry, pull-through cache and Kubernetes operator",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.ref.name": name,
    }
    if revision.returncode == 0:
        out["org.opencontainers.image.revision"] = revision.stdout.strip()
    return out


def put(blobs, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def canonical(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def iso(epoch):
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_archive(out, blobs, index, epoch):
    """The OCI layout (oci-layout, index.json, blobs/) as one tar, written atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    partial = out + ".partial"
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tf:

        def add(path, data=None):
            ti = tarfile.TarInfo(path)
            ti.mtime, ti.mode = epoch, 0o644 if data is not None else 0o755
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))

        add("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        add("index.json", canonical(index))
        add("blobs")
        add("blobs/sha256")
        for digest in sorted(blobs):
            add("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
    shutil.move(partial, out)


if __name__ == "__main__":
    main()
