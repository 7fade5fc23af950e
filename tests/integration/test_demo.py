#!/usr/bin/python3
"""`make demo` (tools/demo.py) as a person runs it: in a terminal (tmux),
until the live `cluster top` shows the three nodes and the web workload,
then ^C; everything it made must be gone afterwards (namespaces, the host
link, pins, its record and work directory). The demo itself checks that
every node's proxy serves the workload before it shows top. About 15 s.

Its own prefix and subnet (not the demo's defaults), so a demo someone
runs by hand on this machine is never touched.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
from hctest import wait_for  # noqa: E402

PREFIX = "hcdm%d" % (os.getpid() % 100000)
SUBNET = 246
DEMO = os.path.join(hctest.ROOT, "tools", "demo.py")


class DemoTest(hctest.TestCase):
    def setUp(self):
        super().setUp()
        for tool in ("tmux", "curl", "containerd", "docker-registry"):
            if shutil.which(tool) is None and not os.path.exists("/usr/bin/" + tool):
                self.skipTest("%s is not installed (tools/deps.sh)" % tool)
        if os.geteuid() != 0:
            self.skipTest("needs root (network namespaces, BPF, containerd)")
        self.sock = "%s-demo" % PREFIX
        self.tmp = tempfile.mkdtemp(prefix="hc-test-demo-")

    def tearDown(self):
        try:
            self.tmux("kill-server")
            path = os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), "tmux-%d" % os.getuid(),
                                self.sock)
            if os.path.exists(path):
                os.unlink(path)
            # should the demo have failed to clean up: the same teardown by name
            subprocess.run([sys.executable, os.path.join(hctest.ROOT, "tools", "netcluster.py"),
                            "down", "--prefix", PREFIX], capture_output=True, timeout=120)
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            super().tearDown()

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                              timeout=10)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-J").stdout

    def leftovers(self):
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        out = [x.split()[0] for x in ns.splitlines() if x.startswith(PREFIX + "-")]
        if subprocess.run(["ip", "link", "show", PREFIX + "-host"],
                          capture_output=True).returncode == 0:
            out.append(PREFIX + "-host")
        out += glob.glob("/sys/fs/bpf/%s-n*" % PREFIX)
        out += [p for p in glob.glob(os.path.join(self.tmp, "*"))]
        return out

    def test_demo_shows_top_and_cleans_up_on_ctrl_c(self):
        cmd = "%s %s --prefix %s --subnet %d --workdir %s; echo DEMO-EXIT=$?; sleep 60" % (
            sys.executable, DEMO, PREFIX, SUBNET, os.path.join(self.tmp, "cluster"))
        r = self.tmux("new-session", "-d", "-x", "200", "-y", "50", cmd)
        self.assertEqual(r.returncode, 0, r.stderr)

        def top_drawn():
            s = self.screen()
            return s if "q: quit" in s and s.count(" alive ") == 3 and \
                re.search(r"\n[0-9a-f-]{36} .*/hypercore/web:1", s) else None
        try:
            wait_for("the demo's cluster top", top_drawn, timeout=120, interval=0.5)
        except AssertionError:
            raise AssertionError("no top; the screen:\n%s" % self.screen())
        self.tmux("send-keys", "C-c")
        screen = wait_for("the demo to finish", lambda: (
            lambda s: s if "DEMO-EXIT=" in s else None)(self.screen()), timeout=120, interval=0.5)
        # back on the main screen: what it printed before top, then the teardown
        self.assertEqual(len(re.findall(r"curl -H 'Host: [0-9a-f-]{36}\.demo\.test' "
                                        r"http://10\.%d\.0\.\d/" % SUBNET, screen)), 3, screen)
        self.assertIn("demo: removing the cluster", screen)
        self.assertIn("demo: done", screen)
        self.assertIn("DEMO-EXIT=0", screen)  # top quit on ^C: the demo ends normally
        self.assertEqual(self.leftovers(), [])

if __name__ == "__main__":
    hctest.main()
