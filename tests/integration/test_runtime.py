#!/usr/bin/python3
"""The workload runtime against real components: an agent with its embedded
containerd (runc, CNI ptp + host-local + firewall), test images built from
busybox-static by tools/mkimage.py and pushed with skopeo to Debian's
docker-registry on loopback, and the local CLI verbs (spawn, list, logs,
stop, attach). Everything a test creates is removed again, also on failure:
workloads, the agent and its containerd, their shims, mounts and cgroups.

The hardening tests run tests/integration/probe/hcprobe.c (built static here,
packed as the "probe" image) inside real workloads: a raw socket, a fork
bomb, a setuid escalation, a write to a read-only root, and a connection to
the node from the entrypoint's first instruction."""

import collections
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpcstubs  # noqa: E402
import hctest  # noqa: E402
from hctest import descendants, wait_for  # noqa: E402
import netns  # noqa: E402
from rthost import CGROUP_ROOT, HostNet, cmdline, http_get, veth_netns  # noqa: E402
import rthost  # noqa: E402
from registry import Registry, build_test_images  # noqa: E402

# Everything this run makes outside its temporary directory is named after
# its pid, so runs side by side (and a killed run's leftovers) never meet.
PREFIX = "hcrt%d" % (os.getpid() % 100000)  # + 2 characters: <= 15 for a link
RUN_INDEX = os.getpid() % 16384  # which /30 of a /16 this run's veths take
# Workload logs: rotated at 4 MiB, 3 rotated files kept: at most 16 MiB each
LOG_MAX_SIZE = 4 << 20
LOG_MAX_FILES = 3
LOG_FLOOD_MIB = 200
# The flood test's bound on the agent's threads, above what it runs idle:
# the job pool's 32 workers and room for gRPC's own (its executor and
# timer threads come and go with the load).
THREADS_OVER_IDLE_MAX = 32 + 16
# ... and /healthz answers within this during the flood (seen: 0.13-1.2 s)
HEALTHZ_SLOWEST_S = 5


def net30(second):
    """(host side, namespace side) addresses of this run's /30 in 10.second/16."""
    a, b = RUN_INDEX // 64, RUN_INDEX % 64 * 4
    return "10.%d.%d.%d" % (second, a, b + 1), "10.%d.%d.%d" % (second, a, b + 2)


# A registry on a non-loopback address, in a network namespace of our own:
# containerd speaks plain HTTP to it only because of --insecure-registry.
REMOTE_NS = PREFIX + "-reg"
REMOTE_VETH = (PREFIX + "r0", PREFIX + "r1")
REMOTE_HOST, REMOTE_NS_ADDR = net30(251)
# The agent's data plane uplink: a veth of the test's own (XDP never goes on
# the machine's real interface), with a client namespace on the other end.
UPLINK, CLIENT_NS, CLIENT_VETH = PREFIX + "u0", PREFIX + "-cl", PREFIX + "u1"
UPLINK_ADDR, CLIENT_ADDR = net30(252)
PIN_DIR = "/sys/fs/bpf/" + PREFIX
BAD_PIN_DIR = PIN_DIR + "-bad"  # a data plane whose TC programs cannot attach
PROBE_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe", "hcprobe.c")
DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                "NET_BIND_SERVICE"]
# linux/capability.h numbers of the default set, for CapBnd in /proc/PID/status
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
            "SETUID": 7, "NET_BIND_SERVICE": 10, "NET_RAW": 13}
# The workloads' addresses: CNI routes each one on the host.
WORKLOAD_NET = "10.%d.%d" % (232 + RUN_INDEX % 2048 // 256, RUN_INDEX % 256)

# Leases of sandboxes that do not exist, for the collection tests (host-local
# hands out addresses round-robin from .2: a run never gets this far)
PLANTED_LEASES = (WORKLOAD_NET + ".250", WORKLOAD_NET + ".251")

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def stale_prefixes():
    """Prefixes of earlier runs of this file that were killed before they
    cleaned up: their namespaces or pins are still there, and no process
    (neither the run nor an agent it left) names them."""
    live = set()
    for d in glob.glob("/proc/[0-9]*"):
        argv = cmdline(int(d[6:]))
        if any(a.endswith(b"test_runtime.py") for a in argv):
            live.add("hcrt%d" % (int(d[6:]) % 100000))
        live.update(m.decode() for a in argv for m in re.findall(rb"/sys/fs/bpf/(hcrt\d+)", a))
    names = subprocess.run(["ip", "netns", "list"], capture_output=True,
                           text=True).stdout.split()
    names += [os.path.basename(p) for p in glob.glob("/sys/fs/bpf/hcrt*")]
    return {m.group(1) for m in map(re.compile(r"^(hcrt\d+)(-reg|-cl|-bad|-mb)?$").match, names)
            if m} - live


def remove_run_resources(prefix):
    """Removes what a run named prefix made on the host: its pins (and the
    XDP program behind them), veths and namespaces."""
    pin, uplink = "/sys/fs/bpf/" + prefix, prefix + "u0"
    bad = pin + "-bad"
    if os.path.isdir(bad):
        for f in os.listdir(bad):
            os.unlink(os.path.join(bad, f))
        os.rmdir(bad)
    if os.path.exists("/sys/class/net/" + uplink):
        hctest.run_cli("dataplane", "cleanup", "--dataplane-iface", uplink, "--bpf-pin-dir", pin)
    elif os.path.isdir(pin):  # no uplink to name: dropping the pins releases the rest
        for f in os.listdir(pin):
            os.unlink(os.path.join(pin, f))
        os.rmdir(pin)
    for link in (prefix + "r0", uplink, prefix + "m0"):
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for ns in (prefix + "-reg", prefix + "-cl", prefix + "-mb"):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Runtime(unittest.TestCase):
    """One registry and one agent for the whole module; tests run in order."""

    spawned = set()  # workload ids this run made (their cgroups go at the end)

    @classmethod
    def setUpClass(cls):
        for prefix in stale_prefixes():
            remove_run_resources(prefix)
        # what CNI changes host-wide, to put back afterwards (pitfalls 10, 11)
        cls.host_net = HostNet()
        cls.workdir = tempfile.mkdtemp(prefix="hc-rt-")
        cls.registry = cls.remote = None
        cls.agent = None
        try:
            cls.registry = Registry(os.path.join(cls.workdir, "registry"))
            cls.registry.start()
            images = build_test_images(os.path.join(cls.workdir, "images"))
            images["probe"] = cls.build_probe_image()
            images["grpc"] = os.path.join(cls.workdir, "grpc")
            subprocess.run([sys.executable, os.path.join(hctest.ROOT, "tools", "mkimage.py"),
                            "grpc", "--oci-dir", images["grpc"], "--tag", "1"], check=True)
            cls.images = {}
            for name, oci_dir in images.items():
                cls.registry.push(oci_dir, "1", "hypercore/" + name)
                cls.images[name] = "%s/hypercore/%s:1" % (cls.registry.addr, name)
            cls.make_remote_netns()
            cls.make_client_netns()
            cls.remote = Registry(os.path.join(cls.workdir, "remote"), port=5000,
                                  host=REMOTE_NS_ADDR, netns=REMOTE_NS)
            cls.remote.start()
            cls.remote.push(images["web"], "1", "edge/web")
            # a descriptor limit small enough for test_20 to fill the
            # proxy's share of it quickly (1,536 connections), plenty for the rest
            cls.agent = hctest.Agent(cls.workdir, "node", runtime=True, dataplane=True,
                                     nofile=6144, extra_args=["--insecure-registry", cls.registry.addr,
                                                 "--insecure-registry", cls.remote.addr,
                                                 "--dataplane-iface", UPLINK,
                                                 "--bpf-pin-dir", PIN_DIR,
                                                 "--workload-subnet", WORKLOAD_NET + ".0/24",
                                                 "--log-max-size", str(LOG_MAX_SIZE),
                                                 "--log-max-files", str(LOG_MAX_FILES)])
            cls.agent.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def build_probe_image(cls):
        binary, oci = os.path.join(cls.workdir, "hcprobe"), os.path.join(cls.workdir, "probe")
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", binary, PROBE_SRC],
                       check=True)
        subprocess.run([sys.executable, os.path.join(hctest.ROOT, "tools", "mkimage.py"),
                        "probe", "--binary", binary, "--oci-dir", oci, "--tag", "1"], check=True)
        return oci

    @classmethod
    def tearDownClass(cls):
        """Undoes setUpClass, also after a failure half-way: every step runs
        even if one before it failed; the first error is raised at the end."""
        shims = []
        rthost.undo_all((cls.stop_workloads, lambda: shims.extend(cls.our_shims()),
                         cls.stop_agent, lambda: cls.end_shims(shims), cls.restore_host,
                         lambda: cls.registry and cls.registry.stop(),
                         lambda: cls.remote and cls.remote.stop(),
                         lambda: remove_run_resources(PREFIX),
                         lambda: shutil.rmtree(cls.workdir, ignore_errors=True)))

    @classmethod
    def stop_workloads(cls):
        if cls.agent and cls.agent.proc and cls.agent.proc.poll() is None:
            for w in cls.list_json_or_empty():
                cls.cli("stop", "--id", w["id"], "--grace", "0")

    @classmethod
    def stop_agent(cls):
        rthost.stop_agent(cls.agent)

    @classmethod
    def end_shims(cls, shims):
        # shims outlive containerd by design; these are ours, end them
        for pid in shims + cls.our_shims():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # a workload whose shim is gone is left to init: its processes run
        # from this run's snapshots, and each holds a netns and a veth
        for pid in cls.processes_rooted_under(cls.workdir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rthost.unmount_under(cls.workdir)
        # each workload has its own parent, hypercore/<id>
        rthost.remove_workload_cgroups(cls.spawned)

    @staticmethod
    def processes_rooted_under(path):
        """PIDs whose root file system is an overlay from a snapshot under
        path (the workloads of this run's containerd)."""
        out, mark = [], ("upperdir=" + path).encode()
        for d in glob.glob("/proc/[0-9]*"):
            try:
                with open(d + "/mountinfo", "rb") as f:
                    first = f.readline()
            except OSError:
                continue
            if b" / / " in first and mark in first:
                out.append(int(d[6:]))
        return out

    @classmethod
    def restore_host(cls):
        if getattr(cls, "host_net", None):
            cls.host_net.restore()

    @classmethod
    def make_remote_netns(cls):
        veth_netns(REMOTE_NS, REMOTE_VETH[0], REMOTE_VETH[1], REMOTE_HOST, REMOTE_NS_ADDR)

    @classmethod
    def make_client_netns(cls):
        veth_netns(CLIENT_NS, UPLINK, CLIENT_VETH, UPLINK_ADDR, CLIENT_ADDR)
        # The client's veth keeps its transmit offloads: its frames reach the
        # agent's uplink with partial checksums, which the default data
        # plane mode (TC on a veth uplink) translates correctly.

    def diagnostics(self):
        """After a failure (hctest.TapResult): the agent's log and its
        containerd's, whose errors the agent's log only summarizes."""
        out = hctest.agent_diagnostics(hctest.agents_of(self))
        if self.agent:
            path = os.path.join(self.agent.state_dir, "containerd.log")
            out.append("containerd, last lines of %s:" % path)
            out += ["  " + x for x in hctest.log_tail(path)]
        return out

    # ---- helpers ----

    @classmethod
    def socket_path(cls):
        return os.path.join(cls.agent.run_dir, "containerd.sock")

    @classmethod
    def cli(cls, verb, *args, timeout=120, input=None):
        # the directories go first: attach takes a command after "--"; a
        # spawn isolates its workload with this agent's pinned data plane
        pins = ("--bpf-pin-dir", PIN_DIR) if verb == "spawn" and "--bpf-pin-dir" not in args \
            else ()
        r = hctest.run_cli(verb, "--run-dir", cls.agent.run_dir,
                           "--state-dir", cls.agent.state_dir, *pins, *args, timeout=timeout,
                           input=input)
        if verb == "spawn":
            cls.spawned.update(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", r.stdout + r.stderr))
        return r

    @classmethod
    def list_json_or_empty(cls):
        r = cls.cli("list", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else []

    @classmethod
    def our_shims(cls):
        sock = cls.socket_path().encode() if cls.agent else b"\0"
        pids = []
        for d in glob.glob("/proc/[0-9]*"):
            argv = cmdline(int(d[6:]))
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv:
                pids.append(int(d[6:]))
        return pids

    def containerd_pid(self):
        for pid in descendants(self.agent.proc.pid):
            argv = cmdline(pid)
            if argv and os.path.basename(argv[0]) == b"containerd":
                return pid
        return None

    def spawn(self, image, *args):
        r = self.cli("spawn", "--image-ref", self.images[image], *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        wid = r.stdout.strip()
        self.assertRegex(wid, UUID)
        self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
        return wid

    def node_name(self):
        """The agent's name in the cluster: its node id."""
        with open(os.path.join(self.agent.state_dir, "node-id")) as f:
            return f.read().strip()

    def workload(self, wid):
        for w in self.list_json_or_empty():
            if w["id"] == wid:
                return w
        return None

    def leases(self, planted=False):
        """The leases in the agent's IPAM directory; those plant_stale_lease
        made (for the collection tests) only when asked."""
        d = os.path.join(self.agent.state_dir, "cni-ipam", "hypercore")
        return sorted(f for f in os.listdir(d) if re.match(r"^\d+\.\d+\.\d+\.\d+$", f) and
                      (planted or f not in PLANTED_LEASES)) if os.path.isdir(d) else []

    def plant_stale_lease(self, addr):
        """A host-local lease for addr held by a sandbox that no longer
        exists, written an hour ago (younger ones may belong to a spawn in
        progress and are left alone). Returns its path."""
        d = os.path.join(self.agent.state_dir, "cni-ipam", "hypercore")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, addr)
        with open(path, "w") as f:
            f.write("0" * 64 + "\r\neth0")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        return path

    def netns_glob(self):
        """The workloads' network namespaces: under containerd's state,
        a directory of our own (not upstream's containerd's)."""
        return os.path.join(self.agent.run_dir, "embedded-containerd", "**", "netns", "cni-*")

    def assertFails(self, r, code, *words):
        self.assertEqual(r.returncode, code, "stdout=%r stderr=%r" % (r.stdout, r.stderr))
        first = r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""
        self.assertTrue(first.startswith("hypercore"), r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)

    # ---- tests (run in name order) ----

    def test_01_spawn_answers_http_with_limits(self):
        port = hctest.free_port()  # the proxy listens there: not a fixed one
        wid = self.spawn("web", "--cpu", "1", "--mem", "64", "--env", "GREETING=hi",
                         "--ports", "%d:8080" % port, "--label", "team=edge")
        w = self.workload(wid)
        self.assertEqual(w["state"], "running")
        self.assertRegex(w["ip"], r"^%s\.\d+$" % re.escape(WORKLOAD_NET))
        self.assertEqual(w["request"]["image_ref"], self.images["web"])
        self.assertEqual(w["request"]["cores"], 1)
        self.assertEqual(w["request"]["memory"], 64)
        self.assertEqual(w["request"]["ports"], {str(port): 8080})
        self.assertEqual(w["request"]["env"], ["GREETING=hi"])
        self.assertGreater(w["stats"]["cpu_ns"], 0)
        self.assertGreater(w["stats"]["memory_working_set_bytes"], 0)
        self.assertEqual(w["stats"]["memory_limit_bytes"], 64 << 20)
        body = wait_for("HTTP from the workload", lambda: http_get("http://%s:8080/" % w["ip"]))
        self.assertIn(wid, body)
        self.assertIn("hostname=" + wid, body)
        cg = os.path.join(CGROUP_ROOT, "%s", "hypercore", wid, w["container_id"], "%s")
        with open(cg % ("cpu", "cpu.cfs_quota_us")) as f:
            self.assertEqual(int(f.read()), 100000)
        with open(cg % ("cpu", "cpu.cfs_period_us")) as f:
            self.assertEqual(int(f.read()), 100000)
        with open(cg % ("memory", "memory.limit_in_bytes")) as f:
            self.assertEqual(int(f.read()), 64 << 20)
        r = self.cli("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0].split(),
                         ["ID", "STATE", "IP", "IMAGE", "CPU", "MEM", "PORTS", "RESTART",
                          "AGE"])
        row = [line.split() for line in r.stdout.splitlines() if line.startswith(wid)][0]
        self.assertEqual(row[1:7], ["running", w["ip"], self.images["web"], "1", "64MB",
                                    "%d:8080" % port])

    def test_02_logs(self):
        wid = self.spawn("logger", "--mem", "32", "--env", "LOG_INTERVAL=0.1")
        r = wait_for("err 3 in the logs",
                     lambda: (lambda r: r if "err 3" in r.stderr else None)(
                         self.cli("logs", "--id", wid)))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.splitlines()
        self.assertIn("out 1", out)
        self.assertIn("err 1", r.stderr.splitlines())
        self.assertNotIn("err 1", out)
        # a line longer than containerd's 16 KiB record limit comes back whole
        longest = max(out, key=len)
        self.assertGreater(len(longest), 16384)
        self.assertEqual(set(longest), {longest[0]})
        r = self.cli("logs", "--id", wid, "--tail", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()) + len(r.stderr.splitlines()), 2)
        # --follow prints new lines as they come and stops cleanly on ^C
        p = subprocess.Popen([hctest.HC_BIN, "logs", "--id", wid, "--follow", "--tail", "0",
                              "--run-dir", self.agent.run_dir, "--state-dir",
                              self.agent.state_dir], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertRegex(line, r"^out \d+$")
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(timeout=10), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()

    def test_03_exit_is_reported(self):
        # an exit stays only with --restart never: the default brings it back
        wid = self.spawn("exiter", "--restart", "never", "--mem", "16", "--env", "EXIT_CODE=3")
        w = wait_for("the workload to exit",
                     lambda: (lambda w: w if w and w["state"] == "exited" else None)(
                         self.workload(wid)))
        self.assertEqual(w["exit_code"], 3)
        self.assertEqual(w["reason"], "Error")
        self.assertEqual(w["restart"], "never")
        wait_for("the agent to report the exit",
                 lambda: re.search(r"workload %s exited: code 3" % wid, self.agent.log()))
        r = self.cli("list")
        self.assertRegex(r.stdout, r"%s +exited\(3\) .* never " % wid)

    def test_04_stop_removes_everything(self):
        before = self.leases()
        wid = self.spawn("web", "--mem", "32")
        w = self.workload(wid)
        self.assertEqual(len(self.leases()), len(before) + 1)
        log_dir = os.path.join(self.agent.state_dir, "logs", wid)
        self.assertTrue(os.path.isdir(log_dir))
        netns = glob.glob(self.netns_glob(), recursive=True)
        t0 = time.monotonic()
        r = self.cli("stop", "--id", wid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertIsNone(self.workload(wid))
        self.assertEqual(self.leases(), before)
        self.assertFalse(os.path.exists(log_dir))
        self.assertFalse(os.path.isdir(os.path.join(CGROUP_ROOT, "memory", "hypercore", wid,
                                                    w["container_id"])))
        # the workload's own parent (its pids limit) goes too, everywhere
        self.assertEqual(glob.glob(os.path.join(CGROUP_ROOT, "*", "hypercore", wid)), [])
        after = glob.glob(self.netns_glob(), recursive=True)
        self.assertEqual(len(after), len(netns) - 1)
        self.assertIsNone(http_get("http://%s:8080/" % w["ip"], timeout=0.5))
        # stopping again: the workload is gone, and the CLI says so
        self.assertFails(self.cli("stop", "--id", wid), 1, "no workload with id " + wid)

    def test_05_agent_restart_keeps_workloads(self):
        wid = self.spawn("web", "--mem", "32")
        ip = self.workload(wid)["ip"]
        # serving before the agent goes, so what is checked below is that it
        # keeps serving (a spawn returns before httpd listens)
        wait_for("HTTP from the workload", lambda: http_get("http://%s:8080/" % ip))
        self.assertEqual(self.agent.stop(), 0, self.agent.log()[-3000:])
        # containerd went with the agent; the workload keeps serving
        self.assertIsNotNone(http_get("http://%s:8080/" % ip))
        r = self.cli("list")
        self.assertFails(r, 1, "hypercore containerd", "hypercore cluster",
                         "--containerd-socket")
        self.agent.kill()
        # a lease whose sandbox is gone (a crash between CNI ADD and DEL)
        stale = self.plant_stale_lease(PLANTED_LEASES[0])
        self.agent.start()
        wait_for("the stale lease collected", lambda: not os.path.exists(stale), timeout=30)
        self.assertRegex(self.agent.log(), r"collected the CNI lease of %s: its sandbox "
                         r"0{64} is gone" % re.escape(PLANTED_LEASES[0]))
        self.assertGreaterEqual(self.metric("hypercore_cni_leases_collected_total"), 1)
        w = self.workload(wid)
        self.assertIsNotNone(w, self.agent.log()[-3000:])
        self.assertEqual(w["state"], "running")
        self.assertEqual(w["ip"], ip)
        self.assertIn(wid, http_get("http://%s:8080/" % ip))

    def test_06_bad_inputs_leave_nothing(self):
        before = (sorted(w["id"] for w in self.list_json_or_empty()), self.leases())
        closed = hctest.free_port()
        cases = [
            (("--image-ref", "Not/A Ref"), 2, "invalid image reference"),
            (("--image-ref", self.images["web"], "--cpu", "-1"), 2, "--cpu"),
            (("--image-ref", self.images["web"], "--cpu", "0"), 2, "--cpu"),
            (("--image-ref", self.images["web"], "--mem", "0"), 2, "--mem"),
            (("--image-ref", self.images["web"], "--mem", "99999999999"), 2, "--mem"),
            (("--image-ref", self.images["web"], "--env", "=x"), 2, "--env"),
            (("--image-ref", self.images["web"], "--ports", "0:80"), 2, "port"),
            (("--image-ref", self.images["web"], "--runtime", "kata"), 2, "--runtime"),
            (("--image-ref", "%s/hypercore/web:nosuchtag" % self.registry.addr), 1, "not found"),
            (("--image-ref", "%s/hypercore/nosuchimage:1" % self.registry.addr), 1, "not found"),
            (("--image-ref", "127.0.0.1:%d/hypercore/web:1" % closed), 1, "unreachable"),
            (("--image-ref", self.images["web"], "--cpu", "5", "--capacity-cpu", "4"), 1,
             "not enough CPU"),
            (("--image-ref", self.images["web"], "--mem", "4096", "--capacity-mem", "1024"), 1,
             "not enough memory"),
            ((), 2, "--image-ref is required"),
        ]
        if not shutil.which("containerd-shim-runsc-v1"):
            # Debian 12 ships runsc without gVisor's shim: no runsc handler
            cases.append((("--image-ref", self.images["web"], "--runtime", "runsc"), 1,
                          "runtime runsc is not available"))
        for args, code, words in cases:
            with self.subTest(args=args):
                self.assertFails(self.cli("spawn", *args), code, words)
        # refused where upstream only warned: the message says what fits
        r = self.cli("spawn", "--image-ref", self.images["web"], "--mem", "4096",
                     "--capacity-mem", "1024")
        self.assertRegex(r.stderr, r"not enough memory: 4096 MB requested, \d+ MB free "
                         r"\(\d+ of 1024 MB in use; the agent's --capacity-mem MB sets")
        # through the cluster: which node has the most free
        r = hctest.run_cli("cluster", "spawn", "--grpc-bind-addr", self.agent.grpc_addr,
                           "--state-dir", self.agent.state_dir, "--image-ref",
                           self.images["web"], "--mem", "16000000", "--timeout", "60")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"not enough memory: 16000000 MB requested, \d+ MB free")
        self.assertIn("--capacity-mem", r.stderr)
        self.assertRegex(r.stderr, r"the most memory free: \d+ MB, on %s" % self.node_name())
        unknown = "0e8c6e46-6f0b-4b0c-9d52-7b7c0e0e0e0e"
        for verb in ("stop", "logs"):
            with self.subTest(verb=verb):
                self.assertFails(self.cli(verb, "--id", unknown), 1, "no workload with id")
                self.assertFails(self.cli(verb, "--id", "../etc"), 2, "invalid --id")
                self.assertFails(self.cli(verb), 2, "--id is required")
        self.assertFails(hctest.run_cli("list", "--containerd-socket",
                                        os.path.join(self.workdir, "nothing.sock")),
                         1, "no containerd at", "hypercore containerd")
        self.assertEqual((sorted(w["id"] for w in self.list_json_or_empty()), self.leases()),
                         before)

    def test_07_containerd_crash_is_survived(self):
        wid = self.spawn("web", "--mem", "32")
        pid = self.containerd_pid()
        self.assertIsNotNone(pid)
        os.kill(pid, signal.SIGKILL)
        # right after the crash a call either fails with one clear line or
        # already reaches the restarted containerd
        r = self.cli("list")
        if r.returncode != 0:
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        wait_for("containerd to be restarted",
                 lambda: self.containerd_pid() not in (None, pid))
        w = wait_for("the workload after the restart", lambda: self.workload(wid))
        self.assertEqual(w["state"], "running")
        self.assertRegex(self.agent.log(), r"containerd exited \(killed by signal 9\)")
        r = self.agent.cli("cluster", "list", "--grpc-bind-addr", self.agent.grpc_addr)
        self.assertEqual(r.returncode, 0, r.stderr)
        status, _, body = self.agent.http("/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"hypercore_containerd_restarts_total 1", body)

    def test_08_attach_gives_a_shell(self):
        if not shutil.which("script"):
            self.skipTest("script(1) from bsdutils is not installed")
        wid = self.spawn("web", "--mem", "32")
        cmd = "%s attach --id %s --run-dir %s --state-dir %s" % (
            hctest.HC_BIN, wid, self.agent.run_dir, self.agent.state_dir)
        # script(1) gives attach a pseudo-terminal, so it runs with a TTY
        p = subprocess.run(["script", "-qefc", cmd, "/dev/null"],
                           input="echo hello-$((6*7)); hostname; tty; exit 7\n",
                           capture_output=True, text=True, timeout=60)
        self.assertIn("hello-42", p.stdout)
        self.assertIn(wid, p.stdout)
        self.assertIn("/dev/pts/", p.stdout)
        self.assertEqual(p.returncode, 7, p.stdout + p.stderr)
        # without a terminal: plain pipes, a command after --
        r = self.cli("attach", "--id", wid, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stdout, "out\n")
        self.assertEqual(r.stderr, "err\n")

    def test_09_metrics_report_capacity(self):
        wid = self.spawn("web", "--cpu", "2", "--mem", "48")
        self.assertTrue(wid)

        def used():
            _, _, body = self.agent.http("/metrics")
            m = re.search(rb'hypercore_capacity_vcpus\{kind="used"\} (\d+)', body)
            # the capacity counts it from "created" on, the state lags
            running = re.search(rb'hypercore_runtime_workloads\{state="running"\} [1-9]', body)
            return m and int(m.group(1)) >= 2 and running and body
        # the agent's next look (every 2 s) sees a spawn made without it;
        # 20 s is that with room for a loaded machine, not for a stuck watch
        body = wait_for("capacity in /metrics", used, timeout=20)
        self.assertRegex(body, rb'hypercore_capacity_vcpus\{kind="total"\} \d+')
        # the workload subnet's addresses (a /24 here: 253), less the leases
        self.assertIn(b"hypercore_workload_addresses_total 253\n", body)
        wait_for("free addresses = 253 - leases", lambda: self.metric(
            "hypercore_workload_addresses_free") == 253 - len(self.leases(planted=True)),
            timeout=20)
        self.assertRegex(body, rb'hypercore_capacity_memory_bytes\{kind="used"\} \d+')

    def test_10_insecure_registry_over_plain_http(self):
        ref = "%s/edge/web:1" % self.remote.addr
        hosts = os.path.join(self.agent.state_dir, "certs.d", self.remote.addr, "hosts.toml")
        with open(hosts) as f:
            self.assertIn('server = "http://%s"' % self.remote.addr, f.read())
        r = self.cli("spawn", "--image-ref", ref, "--mem", "32")
        self.assertEqual(r.returncode, 0, r.stderr)
        wid = r.stdout.strip()
        self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
        w = self.workload(wid)
        self.assertEqual(w["state"], "running")
        self.assertIn(wid, wait_for("HTTP", lambda: http_get("http://%s:8080/" % w["ip"])))

    def routes(self):
        r = hctest.run_cli("routes", "--json", "--bpf-pin-dir", PIN_DIR)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_12_node_port_reaches_a_workload(self):
        proxy_port = hctest.free_port()
        wid = self.spawn("web", "--mem", "32", "--ports", "30880:8080,%d:8080" % proxy_port)
        ip = self.workload(wid)["ip"]

        def published():
            doc = self.routes()
            svc = [x for x in doc["services"] if x["node_port"] == 30880 and x["proto"] == "tcp"]
            wl = [x for x in doc["workloads"] if x["id"] == wid]
            return (svc, wl, doc) if svc and wl else None
        svc, wl, doc = wait_for("node port 30880 in the data plane", published)
        self.assertEqual(svc[0]["backends"], [{"address": ip, "port": 8080}])
        self.assertFalse(svc[0]["static"])
        self.assertTrue(wl[0]["isolated"])
        # A host port outside the node-port range is the proxy's: an L7 route.
        self.assertEqual([r for r in doc["routes"] if r["host"] == wid],
                         [{"host": wid, "port": proxy_port, "backend": ip, "backend_port": 8080,
                           "node": self.node_name(), "static": False,
                           "backend_protocol": "h1"}])
        body = wait_for("HTTP through the proxy", lambda: http_get(
            "http://127.0.0.1:%d/" % proxy_port, headers={"Host": "%s.example.com" % wid}))
        self.assertIn("hypercore-web id=%s" % wid, body)

        # From another machine's point of view: the client namespace.
        def fetch():
            r = subprocess.run(["nsenter", "--net=/run/netns/" + CLIENT_NS, "curl", "-s",
                                "-m", "3", "http://%s:30880/" % UPLINK_ADDR],
                               capture_output=True, text=True)
            return r.stdout if r.returncode == 0 else None
        for _ in range(3):  # the first through the stack, then XDP's redirect
            self.assertIn("hypercore-web id=%s" % wid, wait_for("HTTP via the node port", fetch))
        wl = [x for x in self.routes()["workloads"] if x["id"] == wid][0]
        self.assertGreater(wl["rx_packets"], 0)
        self.assertGreater(wl["tx_bytes"], 0)

        r = self.cli("stop", "--id", wid, "--grace", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("the node port gone", lambda: not [
            x for x in self.routes()["services"] if x["node_port"] == 30880])
        wait_for("the workload's row gone", lambda: not [
            x for x in self.routes()["workloads"] if x["id"] == wid])

    def test_12b_grpc_workload_over_h2c(self):
        """A workload port spawned H:8080/h2c: its route says h2c, and a
        grpcio client reaches the gRPC server in it through the proxy."""
        import grpc
        import grpcecho
        port = hctest.free_port()
        wid = self.spawn("grpc", "--mem", "128", "--ports", "%d:8080/h2c" % port)
        route = wait_for("the workload's route", lambda: [
            r for r in self.routes()["routes"] if r["host"] == wid])
        self.assertEqual(route[0]["backend_protocol"], "h2c")
        opts = grpcecho.OPTIONS + [("grpc.default_authority", "%s.example.com" % wid)]
        with grpc.insecure_channel("127.0.0.1:%d" % port, options=opts) as ch:
            unary = grpcecho.stub(ch, "Unary")

            def answers():
                try:
                    return unary(b"hello", timeout=5)
                except grpc.RpcError:
                    return None  # the server is still starting
            self.assertEqual(wait_for("the gRPC server in the workload", answers, 60), b"hello")
            msgs = list(grpcecho.stub(ch, "Stream", True)(b"10000", timeout=60))
            self.assertEqual((len(msgs), msgs[-1]), (10000, b"msg-9999"))
            big = os.urandom(16 << 20)
            self.assertEqual(unary(big, timeout=60), big)
            with self.assertRaises(grpc.RpcError) as e:
                grpcecho.stub(ch, "Sleep")(b"10", timeout=0.5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            call = grpcecho.stub(ch, "Hold", True)(b"t", timeout=30)
            self.assertEqual(next(call), b"held")
            call.cancel()
            self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)
            self.assertEqual(unary(b"after", timeout=10), b"after")

    def test_13_egress_rate_limit(self):
        wid = self.spawn("web", "--mem", "32", "--egress-mbit", "8")
        row = wait_for("the workload in the data plane", lambda: [
            x for x in self.routes()["workloads"] if x["id"] == wid])[0]
        self.assertEqual(row["rate_bytes_per_sec"], 1000000)
        self.assertTrue(row["isolated"])

        # The workload sends 2.5 MiB to a sink in the client namespace.
        total = 40 * 65536
        sink = netns.socket_in(CLIENT_NS)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sink.bind((CLIENT_ADDR, 9000))
        sink.listen(1)
        sink.settimeout(60)
        got = {}

        def receive():
            c, _ = sink.accept()
            c.settimeout(60)
            n, first = 0, None
            with c:
                while n < total:
                    d = c.recv(65536)
                    if not d:
                        break
                    first = first or time.monotonic()
                    n += len(d)
            got.update(n=n, secs=time.monotonic() - first if first else 0)
        t = threading.Thread(target=receive)
        t.start()
        r = self.cli("attach", "--id", wid, "--", "sh", "-c",
                     "dd if=/dev/zero bs=65536 count=40 2>/dev/null | nc %s 9000" % CLIENT_ADDR,
                     timeout=90)
        t.join(90)
        sink.close()
        self.assertEqual(got.get("n"), total, r.stderr)
        # Policed at 1 MB/s with a 100 kB burst: the excess is dropped and
        # counted, and TCP settles near the limit.
        self.assertLess(total / got["secs"], 2 * 1000000)
        row = [x for x in self.routes()["workloads"] if x["id"] == wid][0]
        self.assertGreater(row["dropped_packets"], 0)
        self.assertGreater(self.routes()["drops"]["rate_limit"], 0)


    # ---- hardening and isolation before start (issue 16) ----

    def probe(self, wid, *args):
        """Runs hcprobe VERB in the workload; its one line of output."""
        r = self.cli("attach", "--id", wid, "--", "/hcprobe", *args, timeout=60)
        return r.stdout.strip() + r.stderr.strip()

    def workload_pid(self, wid, cid):
        with open(os.path.join(CGROUP_ROOT, "pids", "hypercore", wid, cid, "cgroup.procs")) as f:
            return int(f.read().split()[0])

    @staticmethod
    def proc_status(pid):
        with open("/proc/%d/status" % pid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

    def test_14_hardened_by_default(self):
        wid = self.spawn("probe", "--mem", "32")
        w = self.workload(wid)
        self.assertEqual(w["security"], {"seccomp": "RuntimeDefault", "no_new_privs": True,
                                         "capabilities": DEFAULT_CAPS, "pids_limit": 1024,
                                         "read_only_rootfs": False})
        self.assertEqual(w["request"]["pids_limit"], 1024)
        # what the kernel holds for the workload's process
        st = self.proc_status(self.workload_pid(wid, w["container_id"]))
        self.assertEqual(st["Seccomp"].strip(), "2")  # a filter
        self.assertEqual(st["NoNewPrivs"].strip(), "1")
        want = sum(1 << CAP_BITS[c] for c in DEFAULT_CAPS)
        self.assertEqual(int(st["CapBnd"], 16), want)
        self.assertEqual(int(st["CapEff"], 16), want)
        with open(os.path.join(CGROUP_ROOT, "pids", "hypercore", wid, "pids.max")) as f:
            self.assertEqual(f.read().strip(), "1024")
        # from inside: no raw sockets, setuid binaries grant nothing, the
        # root filesystem is writable unless asked otherwise
        self.assertEqual(self.probe(wid, "raw"), "raw: EPERM")
        self.assertEqual(self.probe(wid, "setuid"), "setuid: euid=1000 nnp=1")
        self.assertEqual(self.probe(wid, "write", "/probe-file"), "write: ok")

    def test_15_pids_limit_holds_a_fork_bomb(self):
        wid = self.spawn("probe", "--mem", "64", "--pids-limit", "64")
        self.assertEqual(self.workload(wid)["security"]["pids_limit"], 64)
        with open(os.path.join(CGROUP_ROOT, "pids", "hypercore", wid, "pids.max")) as f:
            self.assertEqual(f.read().strip(), "64")
        out = self.probe(wid, "forkbomb")
        m = re.match(r"^forkbomb: (\d+) children, then EAGAIN$", out)
        self.assertTrue(m, out)
        # pause, the entrypoint and the probe itself hold three of the 64
        self.assertLessEqual(int(m.group(1)), 61)
        self.assertGreater(int(m.group(1)), 32)
        # the node is fine: its API answers, the workload still runs and
        # takes commands, and another workload starts
        self.assertEqual(self.agent.http("/healthz")[0], 200)
        self.assertEqual(self.probe(wid, "raw"), "raw: EPERM")
        self.assertEqual(self.workload(self.spawn("probe", "--mem", "16"))["state"], "running")
        for args in (("--pids-limit", "3"), ("--pids-limit", "99999999"),
                     ("--cap-add", "NET_RAWR"), ("--cap-add", "ALL")):
            with self.subTest(args=args):
                self.assertFails(self.cli("spawn", "--image-ref", self.images["probe"], *args),
                                 2, args[0])

    def test_16_read_only_rootfs_and_cap_add(self):
        wid = self.spawn("probe", "--mem", "32", "--read-only-rootfs", "--cap-add", "net_raw",
                         "--cap-add", "CAP_NET_RAW", "--cap-add", "CHOWN")
        w = self.workload(wid)
        self.assertEqual(w["request"]["cap_add"], ["NET_RAW"])
        self.assertTrue(w["request"]["read_only_rootfs"])
        self.assertEqual(w["security"]["capabilities"], DEFAULT_CAPS + ["NET_RAW"])
        self.assertTrue(w["security"]["read_only_rootfs"])
        self.assertEqual(self.probe(wid, "write", "/probe-file"), "write: EROFS")
        self.assertEqual(self.probe(wid, "raw"), "raw: ok")
        self.assertEqual(self.probe(wid, "setuid"), "setuid: euid=1000 nnp=1")
        # the cluster's view carries the same settings in the spawn request

        def in_cluster():
            r = hctest.run_cli("cluster", "list", "--json", "--grpc-bind-addr",
                               self.agent.grpc_addr, "--state-dir", self.agent.state_dir)
            self.assertEqual(r.returncode, 0, r.stderr)
            for st in json.loads(r.stdout).get("states", []):
                for x in st.get("workloads", []):
                    if x.get("id") == wid:
                        return x["source_request"]
            return None
        req = wait_for("the workload in the cluster's state", in_cluster, timeout=20)
        self.assertEqual(req.get("cap_add"), ["NET_RAW"])
        self.assertEqual(req.get("pids_limit"), 1024)
        self.assertTrue(req.get("read_only_rootfs"))

    def first_instruction_connects(self, spawn):
        """Spawns (with spawn(env)) a probe whose entrypoint connects to the
        node's gateway address at its first instruction; returns (what the
        probe printed, connections the node accepted)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen(16)
        listener.settimeout(0.1)
        target = "%s.1:%d" % (WORKLOAD_NET, listener.getsockname()[1])
        accepted = []
        try:
            wid = spawn(["PROBE_CONNECT=" + target, "PROBE_SECONDS=3"])
            deadline = time.monotonic() + 30
            line = None
            while time.monotonic() < deadline and not line:
                try:
                    c, peer = listener.accept()
                    accepted.append(peer)
                    c.close()
                except socket.timeout:
                    pass
                r = self.cli("logs", "--id", wid)
                line = next((x for x in r.stdout.splitlines() if x.startswith("connect:")), None)
            return line, accepted
        finally:
            listener.close()

    def test_17_isolated_from_the_first_instruction(self):
        def local(env, *extra):
            args = [a for e in env for a in ("--env", e)]
            return self.spawn("probe", "--mem", "16", *args, *extra)

        def cluster(env):
            args = [a for e in env for a in ("--env", e)]
            r = hctest.run_cli("cluster", "spawn", "--grpc-bind-addr", self.agent.grpc_addr,
                               "--state-dir", self.agent.state_dir, "--image-ref", self.images["probe"], "--mem", "16", *args,
                               "--timeout", "120")
            self.assertEqual(r.returncode, 0, r.stderr)
            wid = r.stdout.split()[0]
            self.spawned.add(wid)
            self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
            return wid
        # the local verb and a spawn through the agent (its job thread)
        for name, spawn in (("local", local), ("cluster", cluster)):
            with self.subTest(path=name):
                line, accepted = self.first_instruction_connects(spawn)
                self.assertRegex(line or "", r"^connect: never in \d+ tries")
                self.assertEqual(accepted, [])
        # the control: without isolation the same probe gets through at once
        line, accepted = self.first_instruction_connects(lambda env: local(env,
                                                                           "--no-isolation"))
        self.assertRegex(line or "", r"^connect: got through")
        self.assertTrue(accepted)

    def test_18_attach_failure_tears_the_sandbox_down(self):
        # A data plane whose "TC programs" are maps: the attach fails after
        # RunPodSandbox, before CreateContainer.
        os.makedirs(BAD_PIN_DIR, exist_ok=True)
        for name in os.listdir(PIN_DIR):
            if name.startswith("hc_") and not name.startswith("hc_prog_"):
                subprocess.run(["bpftool", "map", "pin", "pinned", os.path.join(PIN_DIR, name),
                                os.path.join(BAD_PIN_DIR, name)], check=True)
        for name in ("hc_prog_tc_from_wl", "hc_prog_tc_to_wl"):
            subprocess.run(["bpftool", "map", "pin", "pinned", os.path.join(PIN_DIR, "hc_drops"),
                            os.path.join(BAD_PIN_DIR, name)], check=True)
        netns_glob = self.netns_glob()
        before = (sorted(w["id"] for w in self.list_json_or_empty()), self.leases(),
                  len(glob.glob(netns_glob, recursive=True)))
        r = self.cli("spawn", "--image-ref", self.images["probe"], "--mem", "16",
                     "--bpf-pin-dir", BAD_PIN_DIR)
        self.assertFails(r, 1, "isolating workload", "cannot attach TC")
        wid = re.search(r"isolating workload ([0-9a-f-]{36})", r.stderr).group(1)
        self.assertEqual((sorted(w["id"] for w in self.list_json_or_empty()), self.leases(),
                          len(glob.glob(netns_glob, recursive=True))), before)
        self.assertEqual(glob.glob(os.path.join(CGROUP_ROOT, "*", "hypercore", wid)), [])
        self.assertFalse(os.path.exists(os.path.join(self.agent.state_dir, "logs", wid)))
        # containerd ran the sandbox and was never asked for a container in it
        with open(os.path.join(self.agent.state_dir, "containerd.log")) as f:
            log = f.read()
        m = re.search(r'RunPodSandbox for &PodSandboxMetadata\{Name:%s,.*?returns sandbox id '
                      r'\\?"([0-9a-f]{64})' % wid, log)
        self.assertTrue(m, "no RunPodSandbox of %s in containerd's log" % wid)
        self.assertNotIn("CreateContainer within sandbox \\\"%s" % m.group(1), log)
        self.assertNotIn('CreateContainer within sandbox "%s' % m.group(1), log)

    def test_19_no_data_plane_no_local_spawn(self):
        before = (sorted(w["id"] for w in self.list_json_or_empty()), self.leases())
        r = self.cli("spawn", "--image-ref", self.images["probe"], "--mem", "16",
                     "--bpf-pin-dir", "/sys/fs/bpf/%s-none" % PREFIX)
        self.assertFails(r, 1, "no data plane pinned", "--no-isolation")
        self.assertEqual((sorted(w["id"] for w in self.list_json_or_empty()), self.leases()),
                         before)

    def test_20_proxy_at_its_limit_leaves_the_agent_working(self):
        """The proxy may hold only what the descriptor limit leaves after the
        agent's own share: held at that limit (every connection forwarding
        to a backend that never answers), it refuses one more at once, and
        the agent still answers /healthz, gossips (a second node joins) and
        spawns a workload."""
        budget = int(re.search(r"proxy: at most (\d+) connections", self.agent.log()).group(1))
        self.assertGreater(budget, 100)
        backend = socket.socket()
        backend.bind(("127.0.0.1", 0))
        backend.listen(4096)
        accepted = []
        stop = threading.Event()

        def accept_all():  # accepts and keeps, never answers
            backend.settimeout(0.2)
            while not stop.is_set():
                try:
                    accepted.append(backend.accept()[0])
                except OSError:
                    pass
        acceptor = threading.Thread(target=accept_all, daemon=True)
        acceptor.start()
        port = hctest.free_port()
        r = hctest.run_cli("routes", "add", "--bpf-pin-dir", PIN_DIR, "--host", "limit.test",
                           "--port", str(port), "--backend",
                           "127.0.0.1:%d" % backend.getsockname()[1])
        self.assertEqual(r.returncode, 0, r.stderr)
        held = []

        def cleanup():
            for c in held:
                c.close()
            stop.set()
            acceptor.join()
            for c in accepted:
                c.close()
            backend.close()
            hctest.run_cli("routes", "del", "--bpf-pin-dir", PIN_DIR, "--host", "limit.test",
                           "--port", str(port))
        self.addCleanup(cleanup)

        def proxy_metric(name, **labels):
            _, _, body = self.agent.http("/metrics")
            total = 0.0
            for line in body.decode().splitlines():
                if line.startswith(name) and all('%s="%s"' % kv in line for kv in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
            return total
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for("the proxy on port %d" % port, listening, 20)
        topped_up = [0.0]

        def at_limit():
            """Tops the proxy up to its budget. What was open when counting
            (an earlier test's idle connections) may close meanwhile, so a
            count short of the budget after a settling second is topped up
            again; a few too many are simply refused."""
            active = int(proxy_metric("hypercore_proxy_connections_active"))
            if active >= budget:
                return True
            if time.monotonic() - topped_up[0] < 1:
                return False
            for _ in range(budget - active):
                # from 8 addresses: one alone would meet --proxy-max-conns-per-ip first
                c = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=("127.0.0.%d" % (1 + len(held) % 8), 0))
                held.append(c)
                try:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: limit.test\r\n\r\n")
                except OSError:
                    pass  # one over the limit, refused already
            topped_up[0] = time.monotonic()
            return False
        wait_for("the proxy at its limit (%d connections)" % budget, at_limit, 60)
        over = proxy_metric("hypercore_proxy_errors_total", kind="over_limit")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: limit.test\r\n\r\n")
            try:
                self.assertEqual(c.recv(100), b"", "one more was served")
            except ConnectionResetError:
                pass
        wait_for("the refusal counted", lambda: proxy_metric(
            "hypercore_proxy_errors_total", kind="over_limit") > over, 10)
        # the agent's own work still has descriptors
        self.assertEqual(self.agent.http("/healthz")[0], 200)
        peer = hctest.Agent(self.workdir, "limit-peer", extra_args=self.agent.join_args())
        peer.start()
        self.addCleanup(peer.kill)
        def joined():
            members = json.loads(peer.http("/members")[2])["response"]
            return any(m["name"] == self.node_name() and m["status"] == "alive"
                       for m in members)
        wait_for("the peer joined", joined, 30)
        r = hctest.run_cli("cluster", "spawn", "--grpc-bind-addr", self.agent.grpc_addr,
                           "--state-dir", self.agent.state_dir, "--image-ref", self.images["web"],
                           "--mem", "32", "--timeout", "120")
        self.assertEqual(r.returncode, 0, r.stderr)
        wid = r.stdout.split()[0]
        self.spawned.add(wid)
        self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
        self.assertEqual(peer.stop(), 0)

    def log_files(self, wid):
        d = os.path.join(self.agent.state_dir, "logs", wid, "workload")
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return {}
        out = {}
        for n in names:
            if re.match(r"^0\.log(\.\d+)?$", n):
                try:
                    out[n] = os.stat(os.path.join(d, n)).st_size
                except FileNotFoundError:
                    pass
        return out

    def grpc_stub(self):
        grpc, pb, pb_grpc = grpcstubs.load()
        channel = grpc.insecure_channel(self.agent.grpc_addr)
        self.addCleanup(channel.close)
        return grpc, pb, pb_grpc.ClusterServiceStub(channel), grpcstubs.bearer(self.agent.token())

    def metric(self, name):
        status, _, body = self.agent.http("/metrics")
        self.assertEqual(status, 200)
        m = re.search(r"^%s (\S+)$" % re.escape(name), body.decode(), re.M)
        return float(m.group(1)) if m else 0.0

    def test_21_logs_stay_under_the_cap(self):
        """A workload writing 200 MiB of 1 KiB lines as fast as it can: its
        log files never hold more than --log-max-size x (--log-max-files + 1)
        on disk, and tails and numbered reads still work, numbered across
        every rotation."""
        bound = LOG_MAX_SIZE * (LOG_MAX_FILES + 1)
        rotated_before = self.metric('hypercore_log_rotations_total{result="ok"}')
        wid = self.spawn("flooder", "--mem", "32", "--env", "LOG_MIB=%d" % LOG_FLOOD_MIB)
        peak, nfiles, done = [0], [0], threading.Event()
        series = []

        def sample():
            while not done.is_set():
                files = self.log_files(wid)
                if sum(files.values()) > peak[0]:
                    series.append((time.monotonic(), files))
                peak[0] = max(peak[0], sum(files.values()))
                nfiles[0] = max(nfiles[0], len(files))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            wait_for("the flood to end", lambda: (lambda r: r.returncode == 0 and
                                                   r.stdout.strip() == "flood done")(
                self.cli("logs", "--id", wid, "--tail", "1")), timeout=180, interval=0.5)
        finally:
            done.set()
            sampler.join()
        total = sum(self.log_files(wid).values())
        sys.stderr.write("# log flood: peak %.1f MiB on disk (bound %.1f MiB), now %.1f MiB, "
                         "%d files at most\n" % (peak[0] / 1048576, bound / 1048576,
                                                  total / 1048576, nfiles[0]))
        if peak[0] > bound:
            for t, files in series[-5:]:
                sys.stderr.write("# %.3f %s\n" % (t, files))
            sys.stderr.write("".join("# " + line + "\n" for line in self.agent.log().splitlines()
                                     if "rotat" in line or "log" in line and "WARN" in line))
        self.assertLessEqual(peak[0], bound)
        self.assertLessEqual(nfiles[0], LOG_MAX_FILES + 1)
        self.assertGreaterEqual(
            self.metric('hypercore_log_rotations_total{result="ok"}') - rotated_before,
            LOG_FLOOD_MIB * (1 << 20) // LOG_MAX_SIZE // 2)
        self.assertEqual(self.metric('hypercore_log_rotations_total{result="error"}'), 0)
        # the local tail, reaching back into a rotated file if need be
        r = self.cli("logs", "--id", wid, "--tail", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["x" * 1023] * 4 + ["flood done"])
        # numbered reads: every line of the flood counted across rotations
        grpc, pb, stub, auth = self.grpc_stub()
        resp = stub.Logs(pb.VmLogsRequest(id=wid, tail=3), metadata=auth, timeout=30)
        self.assertEqual(resp.logs.splitlines(), ["x" * 1023] * 2 + ["flood done"])
        self.assertEqual(resp.next_line, LOG_FLOOD_MIB * 1024 + 1)
        resp = stub.Logs(pb.VmLogsRequest(id=wid, from_line=resp.next_line - 2), metadata=auth,
                         timeout=30)
        self.assertEqual(resp.logs.splitlines(), ["x" * 1023, "flood done"])
        resp = stub.Logs(pb.VmLogsRequest(id=wid, from_line=resp.next_line), metadata=auth,
                         timeout=30)
        self.assertEqual(resp.logs, "")

    def test_22_flood_of_logs_and_dry_runs(self):
        """2,000 concurrent Logs calls and 500 dry-run queries at once: the
        agent's threads stay within THREADS_OVER_IDLE_MAX of its idle count,
        /healthz answers throughout, and every call is answered, with its
        lines or a refusal (RESOURCE_EXHAUSTED, counted)."""
        wid = self.spawn("logger", "--mem", "32", "--env", "LOG_INTERVAL=0.01")
        before = sorted(w["id"] for w in self.list_json_or_empty())
        grpc, pb, stub, auth = self.grpc_stub()
        wait_for("the cluster to know the workload", lambda: (lambda r: r)(
            self._logs_ok(grpc, pb, stub, auth, wid)), timeout=30)
        pid = self.agent.proc.pid

        def threads():
            with open("/proc/%d/status" % pid) as f:
                return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))

        time.sleep(1)
        idle = threads()
        refused_before = (self.metric("hypercore_logs_refused_total") +
                          self.metric("hypercore_jobs_refused_total"))
        peak, health, done = [idle], {"ok": 0, "failed": 0, "slowest": 0.0}, threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], threads())
                t0 = time.monotonic()
                try:
                    ok = self.agent.http("/healthz")[0] == 200
                except OSError:
                    ok = False
                health["ok" if ok else "failed"] += 1
                health["slowest"] = max(health["slowest"], time.monotonic() - t0)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            calls = []
            for i in range(2500):
                if i % 5 == 4:
                    # a client's spawn is a dry-run query to every node, then
                    # a real spawn on the first that can: asking for more CPU
                    # than any node has makes it the dry run alone
                    req = pb.VmSpawnRequest(cores=1000, memory=32, image_ref=self.images["web"],
                                            dry_run=True)
                    calls.append(("spawn", stub.Spawn.future(req, metadata=auth, timeout=120)))
                else:
                    req = pb.VmLogsRequest(id=wid, tail=10)
                    calls.append(("logs", stub.Logs.future(req, metadata=auth, timeout=120)))
            codes = collections.Counter()
            for kind, f in calls:
                try:
                    f.result()
                    codes[kind, "OK"] += 1
                except grpc.RpcError as e:
                    codes[kind, e.code().name] += 1
        finally:
            done.set()
            watcher.join()
        sys.stderr.write("# flood: threads idle %d, peak %d; answers %s; /healthz %d ok, "
                         "%d failed, slowest %.3f s\n" %
                         (idle, peak[0], dict(codes), health["ok"], health["failed"],
                          health["slowest"]))
        self.assertIsNone(self.agent.proc.poll())
        self.assertLessEqual(peak[0], idle + THREADS_OVER_IDLE_MAX)
        self.assertEqual(health["failed"], 0)
        self.assertGreater(health["ok"], 0)
        self.assertLess(health["slowest"], HEALTHZ_SLOWEST_S)
        # a dry run answers RESOURCE_EXHAUSTED (no node can take 1000 vCPUs,
        # or this one was too busy to answer), or UNAVAILABLE when its
        # answer came after its 5 s ("no node answered"): answers all, neither
        # a crash nor a hang
        for (kind, code), n in codes.items():
            self.assertIn(code, ("OK", "RESOURCE_EXHAUSTED") if kind == "logs" else
                          ("RESOURCE_EXHAUSTED", "UNAVAILABLE"), (kind, code, n))
        self.assertEqual(sum(codes.values()), 2500)
        refused = sum(n for (_, code), n in codes.items() if code == "RESOURCE_EXHAUSTED")
        if refused:
            self.assertGreater(self.metric("hypercore_logs_refused_total") +
                               self.metric("hypercore_jobs_refused_total"), refused_before)
        # and afterwards it serves as before, with no workload more
        self.assertTrue(self._logs_ok(grpc, pb, stub, auth, wid))
        self.assertEqual(sorted(w["id"] for w in self.list_json_or_empty()), before)

    @staticmethod
    def _logs_ok(grpc, pb, stub, auth, wid):
        try:
            resp = stub.Logs(pb.VmLogsRequest(id=wid, tail=1), metadata=auth, timeout=10)
        except grpc.RpcError:
            return False
        return resp.next_line > 0

    def test_11_clean_shutdown(self):
        sock = self.socket_path()
        self.assertEqual(self.agent.stop(), 0)
        log = self.agent.log()
        for mark in hctest.SANITIZER_MARKS:
            self.assertNotIn(mark, log)
        self.assertIn("stopped containerd", log)
        self.assertFalse(os.path.exists(sock) and
                         subprocess.run(["ctr", "--address", sock, "version"],
                                        capture_output=True, timeout=5).returncode == 0)
        self.agent.kill()
        self.agent.start()
        # left for the periodic sweep, after the agent's first look:
        # test_23 sees it gone
        type(self).periodic_lease = self.plant_stale_lease(PLANTED_LEASES[1])

    def test_23_leases_collected_periodically(self):
        """A stale lease planted after the agent's first look (test_11) goes
        at a later sweep (every 30 s)."""
        path = getattr(type(self), "periodic_lease", None)
        self.assertIsNotNone(path, "test_11 did not run")
        wait_for("the lease collected by a periodic sweep", lambda: not os.path.exists(path),
                 timeout=60)

    def test_24_restart_policies(self):
        """Upstream brings a workload that exits back: so does the default
        here (--restart always), with the same id; on-failure keeps one that
        exited with 0 down. Both lists show the policy."""
        def cluster_spawn(exit_after, *args):
            r = hctest.run_cli("cluster", "spawn", "--grpc-bind-addr", self.agent.grpc_addr,
                               "--state-dir", self.agent.state_dir, "--image-ref",
                               self.images["exiter"], "--mem", "16", "--env", "EXIT_CODE=0",
                               "--env", "EXIT_AFTER=%d" % exit_after, *args, "--timeout", "120")
            self.assertEqual(r.returncode, 0, r.stderr)
            wid = r.stdout.split()[0]
            self.spawned.add(wid)
            self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
            return wid

        def cluster_list():
            return hctest.run_cli("cluster", "list", "--grpc-bind-addr", self.agent.grpc_addr,
                                  "--state-dir", self.agent.state_dir).stdout
        # runs 5 s each time: long enough to be seen running again
        always = cluster_spawn(5)
        on_failure = cluster_spawn(1, "--restart", "on-failure")
        wait_for("on-failure leaving %s down" % on_failure, lambda: re.search(
            r"workload %s exited with code 0: not restarted \(--restart on-failure\)"
            % on_failure, self.agent.log()), timeout=60)
        wait_for("the default policy restarting %s" % always, lambda: re.search(
            r"restarting workload %s" % always, self.agent.log()), timeout=60)
        self.assertNotRegex(self.agent.log(), r"restarting workload %s" % on_failure)
        wait_for("%s running again" % always, lambda: (
            lambda w: w and w["state"] == "running")(self.workload(always)), timeout=30)
        # the same id, listed with the policy its node applies
        wait_for("%s listed with its policy" % always, lambda: re.search(
            r"(?m)^%s .* always *$" % always, cluster_list()), timeout=30)
        self.assertIn("RESTART", cluster_list())
        self.assertEqual(self.workload(on_failure)["state"], "exited")
        self.assertEqual(self.workload(on_failure)["restart"], "on-failure")

    def test_25_subnet_and_containerd_root_checked_at_start(self):
        """The workload subnet must overlap no route of the node, and
        containerd's root is its own (not upstream's containerd's), refused
        while another containerd holds it: both say so at once."""
        # this run's uplink /30 is a route of the node
        prefix3 = UPLINK_ADDR.rsplit(".", 1)[0]
        net = prefix3 + ".0/24"
        d = tempfile.mkdtemp(prefix="hc-rt-chk-", dir=self.workdir)
        r = hctest.run_cli("containerd", "--state-dir", os.path.join(d, "state"),
                           "--run-dir", os.path.join(d, "run"), "--workload-subnet", net)
        self.assertEqual(r.returncode, 1, r.stderr)
        # (ours, or another run's /30 in the same /24: the first the table lists)
        self.assertRegex(r.stderr, r"the workload subnet %s overlaps the route %s\.\d+/30 dev "
                         r"\S+ this node already has: choose a free subnet with "
                         r"--workload-subnet CIDR" % (re.escape(net), re.escape(prefix3)))
        # the agent's own containerd root is its own directory
        self.assertTrue(os.path.isdir(os.path.join(self.agent.state_dir, "embedded-containerd",
                                                   "io.containerd.metadata.v1.bolt")))
        self.assertFalse(os.path.exists(os.path.join(self.agent.state_dir, "containerd")))
        # another containerd holding the root (its database locked)
        db = os.path.join(d, "state", "embedded-containerd", "io.containerd.metadata.v1.bolt")
        os.makedirs(db)
        with open(os.path.join(db, "meta.db"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            r = hctest.run_cli("containerd", "--state-dir", os.path.join(d, "state"),
                               "--run-dir", os.path.join(d, "run"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("another containerd holds %s/state/embedded-containerd" % d, r.stderr)
        self.assertIn("--state-dir", r.stderr)

    # ---- escapes from a real workload, and what it may still do (issue 16) ----

    @classmethod
    def escape_setup(cls):
        """Once per run: another member of the cluster in a namespace of its
        own (MEMBER_NS, gossip at MEMBER_ADDR:7946, gRPC :8000, HTTP :8001),
        an "internet" address INET_ADDR in the same namespace routed through
        the node, echo, DNS and sink servers there, and the agent's gossip on
        the uplink address so the member can reach it."""
        if getattr(cls, "escape", None):
            return cls.escape
        if getattr(cls, "escape_failed", None):
            raise AssertionError("the escape tests' setup failed earlier: %s" %
                                 cls.escape_failed)
        try:
            return cls.make_escape()
        except BaseException as e:
            cls.escape_failed = repr(e)
            raise

    @classmethod
    def make_escape(cls):
        servers = NsServers(MEMBER_NS)
        # the veth first: a namespace's own go only when the kernel frees it
        cls.addClassCleanup(lambda: subprocess.run(["ip", "netns", "del", MEMBER_NS],
                                                   capture_output=True))
        cls.addClassCleanup(lambda: subprocess.run(["ip", "link", "del", MEMBER_VETH[0]],
                                                   capture_output=True))
        cls.addClassCleanup(servers.close)
        for cmd in (["netns", "add", MEMBER_NS],
                    ["link", "add", MEMBER_VETH[0], "type", "veth", "peer", "name",
                     MEMBER_VETH[1]],
                    ["link", "set", MEMBER_VETH[1], "netns", MEMBER_NS],
                    ["addr", "add", MEMBER_HOST + "/30", "dev", MEMBER_VETH[0]],
                    ["link", "set", MEMBER_VETH[0], "up"],
                    ["-n", MEMBER_NS, "addr", "add", MEMBER_ADDR + "/30", "dev", MEMBER_VETH[1]],
                    ["-n", MEMBER_NS, "addr", "add", INET_ADDR + "/32", "dev", "lo"],
                    ["-n", MEMBER_NS, "link", "set", MEMBER_VETH[1], "up"],
                    ["-n", MEMBER_NS, "link", "set", "lo", "up"],
                    ["-n", MEMBER_NS, "route", "add", "default", "via", MEMBER_HOST],
                    # the node reaches "the internet" as it would through its
                    # default route; the route goes with the veth
                    ["route", "add", INET_ADDR + "/32", "via", MEMBER_ADDR]):
            subprocess.run(["ip", *cmd], check=True, capture_output=True)
        for port in (8000, 8001, 7946):
            servers.tcp_echo(INET_ADDR, port)
        servers.udp_echo(INET_ADDR, 7946)
        servers.dns(INET_ADDR)
        servers.dns(MEMBER_ADDR)
        servers.sink(INET_ADDR, SINK_PORT)
        # The agent gossips on loopback, which the member cannot reach:
        # restart it on the uplink's address (its workloads keep running).
        bind = "%s:%d" % (UPLINK_ADDR, cls.agent.gossip_port)
        if bind not in cls.agent.extra_args:
            cls.agent.extra_args += ["--cluster-bind-addr", bind]
            if cls.agent.stop() != 0:
                raise AssertionError("the agent did not stop cleanly: %s" %
                                     cls.agent.log()[-3000:])
            cls.agent.kill()
            cls.agent.start()
        # Its APIs on its address (the "internet" servers hold the same
        # ports on INET_ADDR), so ready when it answers there, from here.
        member = hctest.Agent(cls.workdir, "member", netns=MEMBER_NS, extra_args=[
            "--cluster-bind-addr", MEMBER_ADDR + ":7946", "--grpc-bind-addr",
            MEMBER_ADDR + ":8000", "--http-bind-addr", MEMBER_ADDR + ":8001",
            "--join-token", cls.agent.join_token(), bind])
        cls.addClassCleanup(member.kill)
        cls.addClassCleanup(member.stop)
        member.start(wait=False)

        def member_up():
            if member.proc.poll() is not None:
                raise AssertionError("the member exited: %s" % member.log())
            return http_get("http://%s:8001/healthz" % MEMBER_ADDR) is not None
        wait_for("the member's API", member_up)
        cls.escape = {"member": member, "servers": servers}
        return cls.escape

    def member_known(self):
        """MEMBER_ADDR in the agent's hc_members (key: struct hc_ipaddr)."""
        key = socket.inet_aton(MEMBER_ADDR) + bytes(12) + bytes([socket.AF_INET, 0, 0, 0])
        r = subprocess.run(["bpftool", "map", "lookup", "pinned",
                            os.path.join(PIN_DIR, "hc_members"), "key", *map(str, key)],
                           capture_output=True, text=True)
        return r.returncode == 0

    def drops(self):
        return {k: v for k, v in self.routes()["drops"].items() if k.startswith("wl_")}

    def rose(self, before):
        after = self.drops()
        return {k: after[k] - before.get(k, 0) for k in after}

    def escape_probe(self, wid, *args):
        """hcprobe VERB ARGS... in the workload: its lines of output."""
        r = self.cli("attach", "--id", wid, "--", "/hcprobe", *args, timeout=90)
        return r.stdout.splitlines() or ["(no output; exit %d) %s" % (r.returncode, r.stderr)]

    def outcomes(self, lines, verb):
        """{target: outcome} from hcprobe's "VERB TARGET: OUTCOME" lines."""
        return dict(re.match(r"^%s (\S+): (.*)$" % verb, x).groups() for x in lines
                    if x.startswith(verb + " "))

    def isolated_row(self, wid):
        return wait_for("%s isolated in the data plane" % wid, lambda: [
            x for x in self.routes()["workloads"] if x["id"] == wid and x["isolated"]])[0]

    @staticmethod
    def link_local(*ns_dev):
        """(ifindex, IPv6 link-local address) of a device once its address
        has passed duplicate address detection, else None. ns_dev: the
        device's name, after "nsenter -t PID -n" to look in a workload."""
        r = subprocess.run([*ns_dev[:-1], "ip", "-j", "-6", "addr", "show", "dev", ns_dev[-1],
                            "scope", "link"], capture_output=True, text=True, check=True)
        for link in json.loads(r.stdout):
            for a in link["addr_info"]:
                if not a.get("tentative"):
                    return link["ifindex"], a["local"]
        return None

    def host_veth(self, wid, ip):
        """The host side of a workload's veth: (ifindex, its IPv6 link-local),
        once both ends' link-local addresses are usable."""
        dev = json.loads(subprocess.run(["ip", "-j", "route", "get", ip], capture_output=True,
                                        text=True, check=True).stdout)[0]["dev"]
        inside = ["nsenter", "-t", str(self.workload_pid(wid, self.workload(wid)["container_id"])),
                  "-n"]
        wait_for("the workload's IPv6 link-local", lambda: self.link_local(*inside, "eth0"))
        return wait_for("the IPv6 link-local of %s" % dev, lambda: self.link_local(dev))

    def test_50_escapes_from_a_workload_fail_and_are_counted(self):
        """From inside a real workload (the probe image, hardened as by
        default): the node's and another member's :8000/:8001/:7946, the
        metadata address, link-local, IPv6 and another workload directly
        are out of reach, each refusal counted under its reason; raw and
        packet sockets are refused without --cap-add. The same workload
        still reaches the internet, DNS and workloads' URLs through the
        proxy. (The fork bomb: test_15.)"""
        member = self.escape_setup()["member"]
        servers = self.escape["servers"]
        own_port, web_port = hctest.free_port(), hctest.free_port()
        other = self.spawn("web", "--mem", "32", "--ports", "%d:8080" % web_port)
        wid = self.spawn("probe", "--mem", "32", "--env", "PROBE_HTTP=8080",
                         "--ports", "%d:8080" % own_port)
        ip, other_ip = self.workload(wid)["ip"], self.workload(other)["ip"]
        gw = WORKLOAD_NET + ".1"  # the node's address on the workload's veth
        row = self.isolated_row(wid)
        self.isolated_row(other)
        wait_for("the member in hc_members", self.member_known, timeout=30)
        wait_for("both proxy ports open to workloads", lambda: {own_port, web_port} <= set(
            self.routes()["egress"]["proxy_ports"]))
        # What is refused below is there: the member's agent and ours answer
        # from the host, the workload's veth has an IPv6 listener.
        for addr, port in ((MEMBER_ADDR, 8000), (MEMBER_ADDR, 8001), (MEMBER_ADDR, 7946),
                           (UPLINK_ADDR, self.agent.gossip_port)):
            socket.create_connection((addr, port), timeout=10).close()
        self.assertIsNotNone(http_get("http://%s:8001/healthz" % MEMBER_ADDR), member.log())
        ifindex, host_ll = self.host_veth(wid, ip)
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(v6.close)
        v6.bind((host_ll, 0, 0, ifindex))
        v6.listen(4)
        v6.setblocking(False)
        v6_target = "[%s%%eth0]:%d" % (host_ll, v6.getsockname()[1])

        member_targets = ["%s:%d" % (a, p) for a in (gw, UPLINK_ADDR, MEMBER_ADDR)
                          for p in (8000, 8001, 7946)] + \
            ["%s:%d" % (UPLINK_ADDR, self.agent.gossip_port)]
        others = {"169.254.169.254:80": "wl_metadata", "169.254.1.1:80": "wl_link_local",
                  v6_target: "wl_spoofed", "%s:8080" % other_ip: "wl_workload"}
        before = self.drops()
        got = self.outcomes(self.escape_probe(wid, "tcp", "4", *member_targets, *others),
                            "tcp")
        # dropped on the way: no answer, not even a reset
        self.assertEqual(got, {t: "timeout" for t in member_targets + list(others)})
        rose = self.rose(before)
        self.assertGreaterEqual(rose["wl_member"], len(member_targets), rose)
        for target, reason in others.items():
            self.assertGreaterEqual(rose[reason], 1, "%s: %s" % (target, rose))
        with self.assertRaises(BlockingIOError):
            v6.accept()
        # UDP alike: gossip's UDP on the member and here, no ICMP error back
        udp_targets = ["%s:7946" % gw, "%s:7946" % MEMBER_ADDR,
                       "%s:%d" % (UPLINK_ADDR, self.agent.gossip_port)]
        before = self.drops()
        got = self.outcomes(self.escape_probe(wid, "udp", "3", *udp_targets), "udp")
        self.assertEqual(got, {t: "no reply" for t in udp_targets})
        rose = self.rose(before)
        self.assertGreaterEqual(rose["wl_member"], len(udp_targets), rose)
        # without NET_RAW: no raw socket to spoof with, no packet socket
        self.assertEqual(self.escape_probe(wid, "spoof", "%s:%d" % (INET_ADDR, SINK_PORT),
                                           "%s=x" % ip), ["spoof: EPERM"])
        self.assertEqual(self.escape_probe(wid, "frame", "eth0", ip, "notip"), ["frame: EPERM"])
        dropped = [x for x in self.routes()["workloads"] if x["id"] == wid][0]["dropped_packets"]
        self.assertGreater(dropped, row["dropped_packets"])

        # What it may do, from the same workload, with nothing refused.
        # The proxy serves both URLs (seen from the host first).
        for w, port in ((wid, own_port), (other, web_port)):
            wait_for("%s through the proxy" % w, lambda: http_get(
                "http://127.0.0.1:%d/" % port, headers={"Host": "%s.example.com" % w}))
        self.addCleanup(servers.dns(gw, host=True))
        before = self.drops()
        inet = ["%s:%d" % (INET_ADDR, p) for p in (8000, 8001, 7946)]
        self.assertEqual(self.outcomes(self.escape_probe(wid, "tcp", "20", *inet), "tcp"),
                         {t: "echo" for t in inet})
        self.assertEqual(self.escape_probe(wid, "udp", "20", "%s:7946" % INET_ADDR),
                         ["udp %s:7946: reply" % INET_ADDR])
        self.assertEqual(self.outcomes(self.escape_probe(wid, "dns", "20", gw, MEMBER_ADDR,
                                                         INET_ADDR), "dns"),
                         {gw: DNS_ANSWER, MEMBER_ADDR: DNS_ANSWER, INET_ADDR: DNS_ANSWER})
        # hairpin: its own URL and another workload's, on two node addresses
        self.assertEqual(self.escape_probe(wid, "http", "20", "%s:%d" % (gw, own_port),
                                           "%s.example.com" % wid),
                         ["http: 200 hcprobe id=%s" % wid])
        self.assertEqual(self.escape_probe(wid, "http", "20", "%s:%d" % (UPLINK_ADDR, web_port),
                                           "%s.example.com" % other),
                         ["http: 200 hypercore-web id=%s hostname=%s" % (other, other)])
        rose = self.rose(before)
        self.assertEqual({k: v for k, v in rose.items() if v}, {}, rose)

    def test_51_spoofed_and_odd_frames_are_dropped(self):
        """With NET_RAW added, a workload can build its own packets: only
        those from its own address get out; a spoofed source, a frame that
        is not IP, a VLAN tag and an IP header that does not parse are
        dropped and counted."""
        servers = self.escape_setup()["servers"]
        wid = self.spawn("probe", "--mem", "16", "--cap-add", "NET_RAW")
        ip = self.workload(wid)["ip"]
        self.isolated_row(wid)
        sink = "%s:%d" % (INET_ADDR, SINK_PORT)
        spoofed = ["%s.250" % WORKLOAD_NET, "203.0.113.7", UPLINK_ADDR, MEMBER_ADDR]
        before = self.drops()
        # in order: the last datagram, from its own address, arrives after
        # every spoofed one would have
        out = self.escape_probe(wid, "spoof", sink, "%s=own-1" % ip,
                                *("%s=spoofed-%d" % (a, i) for i, a in enumerate(spoofed)),
                                "%s=own-2" % ip)
        self.assertEqual(out, ["spoof: sent %d" % (len(spoofed) + 2)])
        wait_for("the last datagram in the sink", lambda: b"own-2" in servers.received)
        self.assertEqual(sorted(d for d in servers.received if d.startswith(b"own-") or
                                d.startswith(b"spoofed-")), [b"own-1", b"own-2"])
        rose = self.rose(before)
        self.assertGreaterEqual(rose["wl_spoofed"], len(spoofed), rose)
        before = self.drops()
        self.assertEqual(self.escape_probe(wid, "frame", "eth0", ip, "notip", "vlan",
                                           "badip"),
                         ["frame: sent 3"])
        rose = self.rose(before)
        self.assertGreaterEqual(rose["wl_not_ip"], 2, rose)  # the EtherType and the tag
        self.assertGreaterEqual(rose["wl_malformed"], 1, rose)


# What test_50/51 use: another member and "the internet" in one namespace.
MEMBER_NS, MEMBER_VETH = PREFIX + "-mb", (PREFIX + "m0", PREFIX + "m1")
MEMBER_HOST, MEMBER_ADDR = net30(250)
# a public-looking address of this run's own (198.18.0.0/15, for benchmarks)
INET_ADDR = "198.18.%d.%d" % (RUN_INDEX // 128, RUN_INDEX % 128 * 2 + 1)
SINK_PORT = 9999
DNS_ANSWER = "192.0.2.53"


class NsServers:
    """Echo, DNS and sink servers in namespace ns (or here: host=True), run by
    threads of this process; close() ends them all."""

    def __init__(self, ns):
        self.ns = ns
        self.socks = []
        self.received = []  # what the sink got, in order
        self.stop = threading.Event()

    def _sock(self, addr, port, type, host=False):
        s = socket.socket(socket.AF_INET, type) if host else netns.socket_in(self.ns, type=type)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.settimeout(0.2)
        self.socks.append(s)
        return s

    def _loop(self, s, fn, stop=None):
        stop = stop or self.stop

        def run():
            while not stop.is_set():
                try:
                    fn(s)
                except socket.timeout:
                    continue
                except OSError:
                    if stop.is_set():
                        return
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def tcp_echo(self, addr, port):
        s = self._sock(addr, port, socket.SOCK_STREAM)
        s.listen(16)

        def serve(c):
            with c:
                c.settimeout(10)
                while d := c.recv(4096):
                    c.sendall(d)

        def accept(s):
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
        self._loop(s, accept)

    def udp_echo(self, addr, port):
        def echo(s):
            d, peer = s.recvfrom(2048)
            s.sendto(d, peer)
        self._loop(self._sock(addr, port, socket.SOCK_DGRAM), echo)

    def dns(self, addr, host=False):
        """Answers every query with one A record, DNS_ANSWER; returns a
        function that ends this one server (close() ends it too)."""
        def answer(s):
            q, peer = s.recvfrom(512)
            if len(q) < 12:
                return
            s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:] +
                     b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" +
                     socket.inet_aton(DNS_ANSWER), peer)
        s = self._sock(addr, 53, socket.SOCK_DGRAM, host=host)
        stop = threading.Event()
        t = self._loop(s, answer, stop)

        def close():
            stop.set()
            t.join()
            s.close()
        return close

    def sink(self, addr, port):
        self._loop(self._sock(addr, port, socket.SOCK_DGRAM),
                   lambda s: self.received.append(s.recvfrom(2048)[0]))

    def close(self):
        self.stop.set()
        for s in self.socks:
            s.close()  # a second close (dns()'s) is harmless


# ---- execution proofs (issue 17): self-contained, added to Runtime ----

def proof_metric(agent, name, **labels):
    _, _, body = agent.http("/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all('%s="%s"' % kv in line for kv in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def proofs_of(agent, wid):
    status, _, body = agent.http("/proofs?id=" + wid)
    return json.loads(body)["response"] if status == 200 else None


def test_45_execution_proofs(self):
    """A real workload's proofs: CPU and memory from its cgroup, rx/tx from
    the BPF counters, one signed entry per period in the state dir's log;
    `cluster proof verify` says VALID here and on a second node (which
    fetches the log from this one), INVALID on both once an entry is
    edited, and the log goes with the workload."""
    wid = self.spawn("web", "--mem", "32")
    ip = self.workload(wid)["ip"]
    wait_for("the workload serving", lambda: http_get("http://%s:8080/" % ip), 20)
    log = os.path.join(self.agent.state_dir, "proofs", wid + ".log")

    def entries(n):
        doc = proofs_of(self.agent, wid)
        lines = doc["log"].splitlines() if doc else []
        return lines if len(lines) >= n else None
    lines = wait_for("three proofs", lambda: entries(3), 40)
    self.assertTrue(os.path.exists(log))
    self.assertEqual(os.stat(log).st_mode & 0o777, 0o600)
    last = lines[-1].split()
    self.assertEqual(last[1], wid)
    self.assertEqual(last[3], "runc")
    cpu_ns, memory, rx, tx = (int(x) for x in last[4:8])
    self.assertGreater(cpu_ns, 0)     # the cgroup was read
    self.assertGreater(memory, 0)
    self.assertGreater(rx + tx, 0)    # the BPF counters were read (HTTP above)

    def verify(agent, want_rc):
        r = agent.cli("cluster", "proof", "verify", "--id", wid, "--json",
                      "--http-bind-addr", "127.0.0.1:%d" % agent.http_port)
        self.assertEqual(r.returncode, want_rc, r.stdout + r.stderr)
        return json.loads(r.stdout)
    doc = verify(self.agent, 0)
    self.assertEqual(doc["verification_result"], "VALID")
    self.assertGreaterEqual(doc["entries"], 3)
    show = self.agent.cli("cluster", "proof", "show", "--id", wid,
                          "--http-bind-addr", "127.0.0.1:%d" % self.agent.http_port)
    self.assertEqual(show.returncode, 0, show.stderr)
    self.assertIn("runc", show.stdout)

    # (before test_50, which moves the owner's gossip to the uplink's
    # address while its HTTP API stays on loopback, where peers fetch from)
    peer = hctest.Agent(self.workdir, "proof-peer", extra_args=self.agent.join_args())
    peer.start()
    self.addCleanup(peer.kill)
    wait_for("the peer knows the owner", lambda: any(
        w["id"] == wid for st in json.loads(peer.http("/list")[2])["response"].get("states", [])
        for w in st.get("workloads", [])), 30)
    doc = verify(peer, 0)
    self.assertEqual(doc["verification_result"], "VALID")
    self.assertEqual(doc["node"], self.node_name())
    self.assertEqual(len(doc["proof_hash"]), 64)
    self.assertGreaterEqual(proof_metric(peer, "hypercore_ibrl_proofs_verified_total"), 1)

    # an edited entry (its cpu_ns's last digit, in place: the agent keeps
    # appending): INVALID wherever it is checked
    with open(log, "rb") as f:
        text = f.read()
    start = text.index(b"\n") + 1
    fields = text[start:text.index(b"\n", start)].split(b" ")
    at = start + sum(len(x) + 1 for x in fields[:5]) - 2
    with open(log, "r+b") as f:
        f.seek(at)
        f.write(b"%d" % ((text[at] - 48 + 1) % 10))
    for agent in (self.agent, peer):
        doc = verify(agent, 1)
        self.assertEqual(doc["verification_result"], "INVALID")
        self.assertEqual(doc["reason"], "hash_mismatch")
        self.assertEqual(doc["line"], 2)
        self.assertGreaterEqual(proof_metric(agent, "hypercore_ibrl_proofs_invalid_total",
                                             reason="hash_mismatch"), 1)
    self.assertGreaterEqual(proof_metric(self.agent, "hypercore_ibrl_proofs_generated_total"), 3)
    self.assertEqual(peer.stop(), 0)

    r = self.cli("stop", "--id", wid, "--grace", "0")
    self.assertEqual(r.returncode, 0, r.stderr)
    wait_for("the proof log removed", lambda: not os.path.exists(log), 20)


Runtime.test_45_execution_proofs = test_45_execution_proofs
del test_45_execution_proofs


if __name__ == "__main__":
    hctest.main()
