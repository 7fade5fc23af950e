#!/usr/bin/python3
"""Builds small OCI images without a network or a container engine.

The same input always gives the same digests: files have fixed owners, modes
and mtimes, and layers are uncompressed tars in a fixed order.

Images:
  pause   --binary PATH  the pod sandbox process alone, Entrypoint ["/pause"]
  web     busybox httpd on :8080; GET / answers
          "hypercore-web id=<HC_WORKLOAD_ID> hostname=<hostname>"
  logger  numbered lines on stdout ("out N") and stderr ("err N") every
          LOG_INTERVAL seconds (default 0.2), after one 20000-byte line of "x"
          (longer than containerd's 16 KiB log record)
  exiter  prints "exiting with $EXIT_CODE" and exits with EXIT_CODE (default 3)
          after EXIT_AFTER seconds (default 0.5)
  flooder after LOG_DELAY seconds (default 3) writes LOG_MIB MiB (default 200)
          of 1 KiB lines to stdout, one MiB every LOG_PAUSE seconds (default
          0: as fast as it can), then "flood done", then sleeps
  probe   --binary PATH  a static tests/integration/probe/hcprobe.c as the
          entrypoint /hcprobe, its setuid-root copy /hcprobe-suid, busybox
          for attach, and a user 1000
  grpc    tests/lib/grpcecho.py serving h2c on :8080: this machine's python3,
          its standard library (without tests, IDLE, Tk), python3-grpcio and
          every shared library they load (what ldd names), for the proxy's
          HTTP/2 to workload ports spawned H:8080/h2c

The busybox images carry Debian's busybox-static (/bin/busybox) with the
applets they use linked to it.

Output (one or both):
  --oci-dir DIR [--tag TAG]   an OCI image layout, for
                              `skopeo copy oci:DIR:TAG docker://...`
  --archive FILE --name NAME  an OCI archive tar for `ctr images import`; the
                              image is imported as exactly NAME

Examples:
  tools/mkimage.py web --oci-dir /tmp/web --tag 1
  tools/mkimage.py pause --binary build/pause --archive build/pause-image.tar \\
      --name hypercore.local/pause:0.1.0
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "httpd", "hostname", "echo", "cat", "sleep", "printf", "head", "tr", "ls",
           "ps", "tty", "env", "id", "true", "false", "seq", "dd", "nc", "yes", "uname")

WEB_INIT = """#!/bin/sh
mkdir -p /www
printf 'hypercore-web id=%s hostname=%s\\n' "${HC_WORKLOAD_ID:-unknown}" "$(hostname)" > /www/index.html
echo "web starting as $(id -u) in $(hostname)"
# -v logs each request to stderr
exec httpd -f -v -p 8080 -h /www
"""

LOGGER_INIT = """#!/bin/sh
head -c 20000 /dev/zero | tr '\\0' x
echo
n=1
while :; do
    echo "out $n"
    echo "err $n" >&2
    n=$((n + 1))
    sleep "${LOG_INTERVAL:-0.2}"
done
"""

FLOODER_INIT = """#!/bin/sh
sleep "${LOG_DELAY:-3}"
line=$(head -c 1023 /dev/zero | tr '\\0' x)
i=0
while [ "$i" -lt "${LOG_MIB:-200}" ]; do
    yes "$line" | head -n 1024
    i=$((i + 1))
    sleep "${LOG_PAUSE:-0}"
done
echo "flood done"
exec sleep 86400
"""

EXITER_INIT = """#!/bin/sh
sleep "${EXIT_AFTER:-0.5}"
echo "exiting with ${EXIT_CODE:-3}"
exit "${EXIT_CODE:-3}"
"""


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layer:
    """An uncompressed, reproducible layer tar."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.USTAR_FORMAT)
        self.dirs = set()

    def _info(self, name, kind, mode):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = 0
        return ti

    def dir(self, name, mode=0o755):
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name, data, mode=0o644):
        parent = os.path.dirname(name)
        if parent:
            self.dir(parent)
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def busybox_layer(init, extra=(), users=b""):
    layer = Layer()
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "www"):
        layer.dir(d, 0o1777 if d == "tmp" else 0o755)
    with open(BUSYBOX, "rb") as f:
        layer.file("bin/busybox", f.read(), 0o755)
    for applet in APPLETS:
        layer.symlink("bin/" + applet, "busybox")
    layer.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n" + users)
    layer.file("etc/group", b"root:x:0:\n")
    layer.file("init", init.encode(), 0o755)
    for name, data, mode in extra:
        layer.file(name, data, mode)
    return layer.bytes()


PY_SKIP = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
           "site-packages", "dist-packages", "__pycache__", "config-", "unittest", "distutils")


def ldd(paths):
    """The shared libraries the ELF files in paths load, and the loader."""
    out = set()
    for p in paths:
        r = subprocess.run(["ldd", p], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = line.split()
            for part in parts:
                if part.startswith("/"):
                    out.add(part)
    return sorted(out)


def add_tree(layer, top, skip=()):
    for d, dirs, files in os.walk(top):
        dirs[:] = sorted(x for x in dirs if not any(x.startswith(s) for s in skip))
        for f in sorted(files):
            if f.endswith(".pyc"):
                continue
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                layer.file(path.lstrip("/"), fh.read(), os.stat(path).st_mode & 0o777)


def grpc_layer():
    import grpc  # noqa: F401 (the package this image carries must be here)
    layer = Layer()
    for d in ("dev", "etc", "proc", "sys", "tmp"):
        layer.dir(d, 0o1777 if d == "tmp" else 0o755)
    layer.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    layer.file("etc/group", b"root:x:0:\n")
    python = os.path.realpath(sys.executable)
    stdlib = os.path.dirname(os.__file__)
    grpc_dir = os.path.dirname(sys.modules["grpc"].__file__)
    elves = [python] + [os.path.join(d, f) for top in (os.path.join(stdlib, "lib-dynload"), grpc_dir)
                        for d, _, fs in os.walk(top) for f in fs if f.endswith(".so")]
    for lib in ldd(elves):
        with open(lib, "rb") as f:
            layer.file(lib.lstrip("/"), f.read(), 0o755)
    with open(python, "rb") as f:
        layer.file("usr/bin/python3", f.read(), 0o755)
    add_tree(layer, stdlib, PY_SKIP)
    add_tree(layer, grpc_dir)
    with open(os.path.join(ROOT, "tests", "lib", "grpcecho.py"), "rb") as f:
        layer.file("grpcecho.py", f.read())
    return layer.bytes(), os.path.dirname(grpc_dir)


def build(kind, binary=None):
    """Returns (layer bytes, image config dict)."""
    config = {"Env": ["PATH=/bin"], "WorkingDir": "/"}
    if kind == "pause":
        if not binary:
            sys.exit("mkimage: pause needs --binary")
        layer = Layer()
        with open(binary, "rb") as f:
            layer.file("pause", f.read(), 0o755)
        data = layer.bytes()
        config = {"Entrypoint": ["/pause"], "WorkingDir": "/"}
    elif kind == "web":
        data = busybox_layer(WEB_INIT)
        config.update(Entrypoint=["/init"], ExposedPorts={"8080/tcp": {}})
    elif kind == "logger":
        data = busybox_layer(LOGGER_INIT)
        config.update(Entrypoint=["/init"])
    elif kind == "exiter":
        data = busybox_layer(EXITER_INIT)
        config.update(Entrypoint=["/init"])
    elif kind == "flooder":
        data = busybox_layer(FLOODER_INIT)
        config.update(Entrypoint=["/init"])
    elif kind == "probe":
        if not binary:
            sys.exit("mkimage: probe needs --binary")
        with open(binary, "rb") as f:
            probe = f.read()
        data = busybox_layer(EXITER_INIT, extra=[("hcprobe", probe, 0o755),
                                                 ("hcprobe-suid", probe, 0o4755)],
                             users=b"probe:x:1000:1000:probe:/:/bin/sh\n")
        config.update(Entrypoint=["/hcprobe"])
    elif kind == "grpc":
        data, packages = grpc_layer()
        config = {"Entrypoint": ["/usr/bin/python3", "/grpcecho.py", "8080"], "WorkingDir": "/",
                  "Env": ["PYTHONPATH=" + packages, "PYTHONDONTWRITEBYTECODE=1"],
                  "ExposedPorts": {"8080/tcp": {}}}
    else:
        sys.exit("mkimage: unknown image %s" % kind)
    return data, config


def blobs_for(layer, config):
    """The image's blobs and its manifest descriptor: (blobs dict, manifest bytes)."""
    image_config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        "history": [{"created_by": "hypercore tools/mkimage.py"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(image_config), "size": len(image_config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    blobs = {digest(b): b for b in (layer, image_config, manifest)}
    return blobs, manifest


def index_for(manifest, annotations):
    return json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": annotations}],
    }, sort_keys=True).encode()


def write_oci_dir(path, tag, blobs, manifest):
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    for d, b in blobs.items():
        with open(os.path.join(path, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(b)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(path, "index.json"), "wb") as f:
        f.write(index_for(manifest, {"org.opencontainers.image.ref.name": tag}))


def write_archive(path, name, blobs, manifest):
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = index_for(manifest, {"io.containerd.image.name": name,
                                 "org.opencontainers.image.ref.name": tag})
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as t:
        def add(member, data):
            ti = tarfile.TarInfo(member)
            ti.size = len(data)
            ti.mtime = 0
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for d in sorted(blobs):
            add("blobs/sha256/" + d[7:], blobs[d])
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Build small reproducible OCI images.")
    ap.add_argument("kind", choices=("pause", "web", "logger", "exiter", "flooder", "probe", "grpc"))
    ap.add_argument("--binary", help="the pause or hcprobe executable (pause, probe)")
    ap.add_argument("--oci-dir", help="write an OCI image layout here")
    ap.add_argument("--tag", default="latest", help="tag inside the OCI layout")
    ap.add_argument("--archive", help="write an OCI archive tar here")
    ap.add_argument("--name", help="full image name recorded in the archive")
    args = ap.parse_args()
    if not args.oci_dir and not args.archive:
        ap.error("give --oci-dir and/or --archive")
    if args.archive and not args.name:
        ap.error("--archive needs --name")
    layer, config = build(args.kind, args.binary)
    blobs, manifest = blobs_for(layer, config)
    if args.oci_dir:
        write_oci_dir(args.oci_dir, args.tag, blobs, manifest)
    if args.archive:
        write_archive(args.archive, args.name, blobs, manifest)


if __name__ == "__main__":
    main()
