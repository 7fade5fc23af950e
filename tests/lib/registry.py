"""A real local image registry for tests and benchmarks: Debian's
docker-registry on 127.0.0.1, filled with skopeo from OCI layouts that
tools/mkimage.py builds. The process is ended by PID; its storage is removed."""

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

from hctest import ROOT, end_process, free_port

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO_BIN = "/usr/bin/skopeo"
TEST_IMAGES = ("web", "logger", "exiter", "flooder")


class Registry:
    def __init__(self, workdir, port=None, host="127.0.0.1", netns=None):
        """host/netns: serve on host inside network namespace netns (which
        the caller created and routes to) instead of on loopback."""
        self.workdir = workdir
        self.port = port or free_port()
        self.addr = "%s:%d" % (host, self.port)
        self.netns = netns
        self.proc = None
        self._log = None

    def start(self, timeout=20):
        os.makedirs(os.path.join(self.workdir, "storage"), exist_ok=True)
        config = os.path.join(self.workdir, "config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\n"
                    "log:\n  level: warn\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
                    "http:\n  addr: %s\n" % (os.path.join(self.workdir, "storage"), self.addr))
        self._log = open(os.path.join(self.workdir, "registry.log"), "ab")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*prefix, REGISTRY_BIN, "serve", config], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited: %s" % self.log())
            try:
                with urllib.request.urlopen("http://%s/v2/" % self.addr, timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("docker-registry not answering on %s" % self.addr)

    def log(self):
        try:
            with open(os.path.join(self.workdir, "registry.log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def push(self, oci_dir, tag, repo):
        """Copies the OCI layout's TAG to REPO:TAG in this registry."""
        r = subprocess.run([SKOPEO_BIN, "--insecure-policy", "copy", "--quiet",
                            "--dest-tls-verify=false", "oci:%s:%s" % (oci_dir, tag),
                            "docker://%s/%s:%s" % (self.addr, repo, tag)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("skopeo copy failed: %s" % r.stderr.strip())
        return "%s/%s:%s" % (self.addr, repo, tag)

    def stop(self):
        end_process(self.proc)
        if self._log:
            self._log.close()
            self._log = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def build_test_images(workdir, tag="1"):
    """Builds the busybox test images as OCI layouts; returns {name: dir}."""
    out = {}
    for name in TEST_IMAGES:
        d = os.path.join(workdir, name)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "mkimage.py"), name,
                        "--oci-dir", d, "--tag", tag], check=True)
        out[name] = d
    return out
