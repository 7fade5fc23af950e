#!/usr/bin/python3
"""Progress of long work: `cluster spawn` and `spawn` on a terminal show the
image pull (layers, bytes, from containerd's content service) and each step
with its time; off a terminal (or with --progress=false) they print exactly
what they printed before.

A 2-node cluster in network namespaces (tools/netcluster.py) with the local
registry, each node with its embedded containerd. The registry's link is
slowed down (tc tbf on the host side of the cluster's bridge link) so a
pull of the test image (about 2 MB) takes a couple of seconds and is seen
while it runs. The terminal is a pty (the python pty module); the client
runs in it as a person's shell would run it.
"""

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import hctest  # noqa: E402
from netcluster import NetCluster  # noqa: E402

PREFIX, SUBNET = "hcpg%d" % (os.getpid() % 100000), 245
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STEP = r"\s+\d+\.\d\d s\s+"


def run_pty(argv, env=None, timeout=120):
    """Runs argv with stdin, stdout and stderr on a new pty; returns (exit
    status, everything it wrote, as text)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec, or tell why not
        try:
            os.execvpe(argv[0], argv, env or os.environ)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def shown(out):
    """The terminal's output as a readable failure message."""
    return "\n" + "\n".join(repr(x) for x in out.splitlines())


class ProgressTest(unittest.TestCase):
    cluster = None

    @classmethod
    def setUpClass(cls):
        for tool in ("containerd", "docker-registry", "skopeo", "tc"):
            if shutil.which(tool) is None and not os.path.exists("/usr/bin/" + tool):
                raise unittest.SkipTest("%s is not installed (tools/deps.sh)" % tool)
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, BPF, containerd)")
        cls.tmp = tempfile.mkdtemp(prefix="hc-test-progress-")
        try:
            cls.cluster = NetCluster(2, os.path.join(cls.tmp, "cluster"), prefix=PREFIX,
                                     subnet=SUBNET, registry=True).start()
            # the registry answers from the root netns through PREFIX-host:
            # its traffic alone (by source port) at 6 Mbit/s makes a 1 MB
            # layer's pull last a second or two; the API calls go unslowed
            port = re.search(r":(\d+)/", cls.cluster.images["web"]).group(1)
            dev = PREFIX + "-host"
            for argv in (["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default",
                          "10", "r2q", "100000"],
                         ["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
                          "rate", "10gbit"],
                         ["class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
                          "rate", "6mbit"],
                         ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "u32",
                          "match", "ip", "sport", port, "0xffff", "flowid", "1:20"]):
                r = subprocess.run(["tc", *argv], capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError("tc %s: %s" % (" ".join(argv), r.stderr.strip()))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            cls.cluster.stop()  # the qdisc goes with the link
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def env(self, node):
        return dict(os.environ, HYPERCORE_TOKEN=node.token())

    def cluster_spawn_argv(self, node, image, *extra):
        return [hctest.HC_BIN, "cluster", "spawn", "--grpc-bind-addr", node.grpc_addr,
                "--image-ref", self.cluster.images[image], "--mem", "32", *extra]

    def assert_steps(self, out, where=True):
        """The lines every spawn that pulled shows, in order."""
        # what stays on the screen: of each line, what follows its last \r
        lines = [x.rstrip("\r").split("\r")[-1].replace("\x1b[K", "") for x in out.split("\n")]
        # (a status line can end up on a line of its own when something
        # else writes to stderr meanwhile, as libbpf's notes on the attach)
        pull = [x for x in lines if re.match(r"^  pull" + STEP + "(pulled|image present)", x)]
        self.assertEqual(len(pull), 1, shown(out))
        self.assertRegex(pull[0], r"pulled \d+\.\d MB in \d+ layers", shown(out))
        if where:
            self.assertRegex(pull[0], r"  on " + UUID, shown(out))
        order = [min([i for i, x in enumerate(lines)
                      if re.match(r"^  %s%s" % (step, STEP), x)] or [-1])
                 for step in ("pull", "sandbox", "container", "start")]
        self.assertNotIn(-1, order, shown(out))
        self.assertEqual(order, sorted(order), shown(out))
        # the status line while the pull ran: layers and bytes so far
        self.assertRegex(out, r"\x1b\[K  pull\s+\d+\.\d\d s  \d+ layers, \d+ done, "
                              r"\d+\.\d MB of \d+\.\d MB", shown(out))
        return lines

    def test_cluster_spawn_on_a_terminal_shows_pull_steps_and_routes(self):
        n1 = self.cluster.node(1)
        status, out = run_pty(self.cluster_spawn_argv(n1, "web", "--ports", "8090:8080"),
                              env=self.env(n1))
        self.assertEqual(status, 0, shown(out))
        lines = self.assert_steps(out)
        self.assertTrue([x for x in lines if re.match(r"^  routed" + STEP + "on 2 of 2 nodes$",
                                                      x)], shown(out))
        self.assertTrue([x for x in lines if re.match(r"^%s \S+$" % UUID, x)], shown(out))

    def fresh_node(self):
        """A node that ran nothing yet (its containerd has pulled nothing)."""
        states = self.cluster.node(1).http_json("/list")["response"]["states"]
        busy = {s["node_addr"] for s in states if s.get("workloads")}
        free = [n for n in self.cluster.nodes if n.addr not in busy]
        if not free:
            self.skipTest("no node without workloads left")
        return free[-1]

    def test_local_spawn_on_a_terminal_shows_pull_and_steps(self):
        n2 = self.fresh_node()
        # in the node's netns, as on the node: isolation finds the workload's veth there
        status, out = run_pty(["nsenter", "--net=/run/netns/" + n2.netns, hctest.HC_BIN,
                               "spawn", "--run-dir", n2.run_dir, "--state-dir",
                               n2.state_dir, "--bpf-pin-dir", n2.pin_dir, "--image-ref",
                               self.cluster.images["logger"], "--mem", "32"])
        self.assertEqual(status, 0, shown(out))
        lines = self.assert_steps(out, where=False)
        wid = [x for x in lines if re.match("^%s$" % UUID, x)]
        self.assertEqual(len(wid), 1, shown(out))
        r = n2.local_cli("stop", wid[0])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_quiet_without_a_terminal_or_when_asked(self):
        n2 = self.cluster.node(2)
        # off a terminal: stdout as before, nothing on stderr
        r = subprocess.run(self.cluster_spawn_argv(n2, "exiter", "--restart", "never"),
                           capture_output=True, text=True, env=self.env(n2), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^%s \S+\n$" % UUID)
        self.assertEqual(r.stderr, "")
        # on a terminal with --progress=false: no display either
        status, out = run_pty(self.cluster_spawn_argv(n2, "exiter", "--restart", "never",
                                                      "--progress=false"), env=self.env(n2))
        self.assertEqual(status, 0, shown(out))
        self.assertNotIn("\x1b", shown(out))
        self.assertRegex(out.strip(), r"^%s \S+$" % UUID)

    def test_progress_endpoint(self):
        n1 = self.cluster.node(1)
        doc = n1.http_json("/spawn/progress")
        resp = doc["response"] if "response" in doc else doc
        self.assertTrue(resp["runtime"])
        self.assertTrue(resp["pulls_known"])
        self.assertIsInstance(resp["spawns"], list)
        self.assertIsInstance(resp["pulls"], list)
        status, _, body = n1.http("/spawn/progress?id=not-a-uuid")
        self.assertEqual(status, 400, body)
        status, _, _ = n1.http("/spawn/progress", token=None)
        self.assertEqual(status, 401)
        status, _, body = n1.http("/spawn/progress", token=n1.read_only_token())
        self.assertEqual(status, 200, body)
        self.assertIn("spawns", json.loads(body)["response"])


if __name__ == "__main__":
    hctest.main()
