#!/usr/bin/python3
"""MicroVM workloads (`--runtime microvm`, docs/runtime.md "MicroVMs") against
real components: an agent with its embedded containerd and data plane, the
web and exiter test images from a local registry, QEMU's microvm machine
with Debian's cloud kernel (TCG here: one VM at a time, generous timeouts,
no timing assertions). A VM answers HTTP through the proxy, a node port and
its address; its logs and exit status reach the host; attach runs commands
in its own kernel; the isolation rules hold for it; stop leaves no VMM,
tap, cgroup, lease or file behind. Everything is removed again, also on
failure."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
from hctest import wait_for  # noqa: E402
from registry import Registry, build_test_images  # noqa: E402
import rthost  # noqa: E402
from rthost import CGROUP_ROOT, HostNet, cmdline, http_get  # noqa: E402

PREFIX = "hcvm%d" % (os.getpid() % 100000)
RUN_INDEX = os.getpid() % 16384
UPLINK, CLIENT_NS, CLIENT_VETH = PREFIX + "u0", PREFIX + "-cl", PREFIX + "u1"
UPLINK_ADDR = "10.%d.%d.%d" % (250, RUN_INDEX // 64, RUN_INDEX % 64 * 4 + 1)
CLIENT_ADDR = "10.%d.%d.%d" % (250, RUN_INDEX // 64, RUN_INDEX % 64 * 4 + 2)
PIN_DIR = "/sys/fs/bpf/" + PREFIX
WORKLOAD_NET = "10.%d.%d" % (249 - RUN_INDEX % 2048 // 256 % 4, RUN_INDEX % 256)
NODE_PORT = 30000 + RUN_INDEX % 2000
VM_OVERHEAD_MB = 128  # agent/runtime/runtime_int.h: HC_VM_OVERHEAD_MB
BOOT_TIMEOUT = 180  # TCG on a loaded 2-core machine: seconds, not milliseconds
QEMU = b"qemu-system-x86_64"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def in_cgroup_of(pid, wid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return "/hypercore/%s/" % wid in f.read()
    except OSError:
        return False


def vmm_pids(wid):
    """The VMM processes of workload wid (in its cgroup)."""
    return [int(d[6:]) for d in glob.glob("/proc/[0-9]*")
            if (lambda a: bool(a) and a[0].endswith(QEMU))(cmdline(int(d[6:])))
            and in_cgroup_of(int(d[6:]), wid)]


def missing_prerequisites():
    if not os.path.exists("/usr/bin/qemu-system-x86_64"):
        return "no qemu-system-x86 (tools/deps.sh installs it)"
    if not glob.glob("/boot/vmlinuz-*-cloud-amd64"):
        return "no linux-image-cloud-amd64 (tools/deps.sh installs it)"
    return None


@unittest.skipIf(missing_prerequisites(), missing_prerequisites())
class MicroVM(unittest.TestCase):
    """One registry and one agent for the module; tests run in order."""

    spawned = set()

    @classmethod
    def setUpClass(cls):
        cls.host_net = HostNet()
        cls.workdir = tempfile.mkdtemp(prefix="hc-vm-")
        cls.registry = cls.agent = None
        try:
            cls.registry = Registry(os.path.join(cls.workdir, "registry"))
            cls.registry.start()
            images = build_test_images(os.path.join(cls.workdir, "images"))
            cls.images = {}
            for name in ("web", "exiter"):
                cls.registry.push(images[name], "1", "hypercore/" + name)
                cls.images[name] = "%s/hypercore/%s:1" % (cls.registry.addr, name)
            rthost.veth_netns(CLIENT_NS, UPLINK, CLIENT_VETH, UPLINK_ADDR, CLIENT_ADDR)
            cls.agent = hctest.Agent(cls.workdir, "node", runtime=True, dataplane=True,
                                     extra_args=["--insecure-registry", cls.registry.addr,
                                                 "--dataplane-iface", UPLINK,
                                                 "--bpf-pin-dir", PIN_DIR,
                                                 "--workload-subnet", WORKLOAD_NET + ".0/24"])
            cls.agent.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        rthost.undo_all((cls.stop_workloads, cls.stop_agent, cls.end_leftovers,
                         cls.host_net.restore, lambda: cls.registry and cls.registry.stop(),
                         lambda: shutil.rmtree(cls.workdir, ignore_errors=True)))

    @classmethod
    def stop_workloads(cls):
        if cls.agent and cls.agent.proc and cls.agent.proc.poll() is None:
            r = cls.cli("list", "--json")
            for w in json.loads(r.stdout) if r.returncode == 0 else []:
                cls.cli("stop", "--id", w["id"], "--grace", "0")

    @classmethod
    def stop_agent(cls):
        rthost.stop_agent(cls.agent)

    @classmethod
    def end_leftovers(cls):
        """Shims, VMMs, mounts, cgroups, pins and links this run made."""
        sock = os.path.join(cls.agent.run_dir, "containerd.sock").encode() if cls.agent else None
        pids = [p for w in cls.spawned for p in vmm_pids(w)]
        for d in glob.glob("/proc/[0-9]*"):
            argv = cmdline(int(d[6:]))
            if sock and argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv:
                pids.append(int(d[6:]))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rthost.unmount_under(cls.workdir)
        rthost.remove_workload_cgroups(cls.spawned)
        if os.path.exists("/sys/class/net/" + UPLINK):
            hctest.run_cli("dataplane", "cleanup", "--dataplane-iface", UPLINK,
                           "--bpf-pin-dir", PIN_DIR)
        subprocess.run(["ip", "link", "del", UPLINK], capture_output=True)
        subprocess.run(["ip", "netns", "del", CLIENT_NS], capture_output=True)

    def diagnostics(self):
        out = hctest.agent_diagnostics(hctest.agents_of(self))
        if self.agent:
            path = os.path.join(self.agent.state_dir, "containerd.log")
            out.append("containerd, last lines of %s:" % path)
            out += ["  " + x for x in hctest.log_tail(path)]
            for con in glob.glob(os.path.join(self.agent.state_dir, "vm", "run", "*",
                                              "console.log")):
                out.append("VM console %s:" % con)
                out += ["  " + x for x in hctest.log_tail(con)]
        return out

    # ---- helpers ----

    @classmethod
    def cli(cls, verb, *args, timeout=BOOT_TIMEOUT, input=None):
        pins = ("--bpf-pin-dir", PIN_DIR) if verb == "spawn" else ()
        r = hctest.run_cli(verb, "--run-dir", cls.agent.run_dir,
                           "--state-dir", cls.agent.state_dir, *pins, *args, timeout=timeout,
                           input=input)
        if verb == "spawn":
            cls.spawned.update(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", r.stdout + r.stderr))
        return r

    def spawn_vm(self, image, *args):
        r = self.cli("spawn", "--runtime", "microvm", "--image-ref", self.images[image], *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        wid = r.stdout.strip()
        self.assertRegex(wid, UUID)
        self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
        return wid

    def workload(self, wid):
        r = self.cli("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return next((w for w in json.loads(r.stdout) if w["id"] == wid), None)

    def logs(self, wid):
        r = self.cli("logs", "--id", wid)
        return r.stdout + r.stderr if r.returncode == 0 else ""

    def attach(self, wid, *cmd):
        return self.cli("attach", "--id", wid, "--", *cmd)

    def client_fetch(self, url):
        r = subprocess.run(["nsenter", "--net=/run/netns/" + CLIENT_NS, "curl", "-s", "-m", "5",
                            url], capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    # ---- tests (run in name order) ----

    def test_00_bad_requests_leave_nothing(self):
        r = self.cli("spawn", "--runtime", "microvm", "--image-ref", self.images["web"],
                     "--mem", "32")
        self.assertEqual(r.returncode, 2, r.stderr)  # checked before anything is made
        self.assertIn("memory must be at least 64 MB for a microVM", r.stderr)
        r = self.cli("spawn", "--runtime", "kvm", "--image-ref", self.images["web"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("runc, runsc or microvm", r.stderr)
        r = self.cli("list", "--json")
        self.assertEqual((r.returncode, json.loads(r.stdout)), (0, []))
        self.assertEqual(os.listdir(os.path.join(self.agent.state_dir, "vm", "run"))
                         if os.path.isdir(os.path.join(self.agent.state_dir, "vm", "run"))
                         else [], [])

    def test_01_web_vm_answers_and_stops_clean(self):
        proxy_port = hctest.free_port()
        wid = self.spawn_vm("web", "--mem", "128", "--env", "GREETING=hi",
                            "--ports", "%d:8080,%d:8080" % (NODE_PORT, proxy_port))
        w = self.workload(wid)
        self.assertEqual(w["runtime"], "microvm")
        self.assertEqual(w["state"], "running")
        ip = w["ip"]
        self.assertTrue(ip.startswith(WORKLOAD_NET + "."), ip)
        want = "hypercore-web id=%s hostname=%s" % (wid, wid)
        body = wait_for("HTTP from the VM at its address",
                        lambda: http_get("http://%s:8080/" % ip), timeout=BOOT_TIMEOUT)
        self.assertIn(want, body)
        body = wait_for("HTTP through the proxy", lambda: http_get(
            "http://127.0.0.1:%d/" % proxy_port, headers={"Host": "%s.example.com" % wid}))
        self.assertIn(want, body)
        for _ in range(3):  # the first through the stack, then the data plane's redirect
            self.assertIn(want, wait_for("HTTP via the node port", lambda: self.client_fetch(
                "http://%s:%d/" % (UPLINK_ADDR, NODE_PORT))))
        # its output reaches the host as a container's does
        self.assertIn("web starting as 0 in %s" % wid,
                      wait_for("the VM's output in its logs", lambda: self.logs(wid)))

        # attach runs in the guest, under its own kernel
        r = self.attach(wid, "uname", "-r")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip())
        self.assertNotEqual(r.stdout.strip(), os.uname().release)
        r = self.attach(wid, "sh", "-c", "echo $GREETING; exit 5")
        self.assertEqual((r.returncode, r.stdout.strip()), (5, "hi"))

        # isolation: the agent's API on the node is closed to it, its own
        # URL through the node is open
        r = self.attach(wid, "nc", "-z", "-w", "3", UPLINK_ADDR, str(self.agent.http_port))
        self.assertNotEqual(r.returncode, 0, "the VM reached the agent's API")
        r = self.attach(wid, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\nHost: %s.example.com"
                        "\\r\\n\\r\\n' | nc -w 3 %s %d" % (wid, UPLINK_ADDR, proxy_port))
        self.assertIn(want, r.stdout)

        # the data plane counts the VM's traffic on its veth, as a container's
        r = hctest.run_cli("routes", "--json", "--bpf-pin-dir", PIN_DIR)
        self.assertEqual(r.returncode, 0, r.stderr)
        row = [x for x in json.loads(r.stdout)["workloads"] if x["id"] == wid][0]
        self.assertTrue(row["isolated"])
        self.assertGreater(row["rx_packets"], 0)
        self.assertGreater(row["tx_bytes"], 0)
        # the VMM's cgroup holds the guest's RAM and the VMM's overhead
        with open(os.path.join(CGROUP_ROOT, "memory", "hypercore", wid, w["container_id"],
                               "memory.limit_in_bytes")) as f:
            self.assertEqual(int(f.read()), (128 + VM_OVERHEAD_MB) << 20)

        # the VMM survives the agent (and its containerd); the next agent adopts it
        vmm = vmm_pids(wid)
        self.assertEqual(self.agent.stop(), 0, self.agent.log()[-3000:])
        self.agent.kill()
        self.assertIn(want, http_get("http://%s:8080/" % ip) or "")
        self.agent.start()
        w = wait_for("the VM adopted", lambda: (
            lambda r: [w for w in json.loads(r.stdout) if w["id"] == wid]
            if r.returncode == 0 else None)(self.cli("list", "--json")))[0]
        self.assertEqual((w["state"], w["ip"], w["runtime"]), ("running", ip, "microvm"))
        self.assertEqual(vmm_pids(wid), vmm)
        self.assertIn(want, wait_for("HTTP through the new agent's proxy", lambda: http_get(
            "http://127.0.0.1:%d/" % proxy_port, headers={"Host": "%s.example.com" % wid})))

        # stop: no VMM, no tap (its namespace is gone), no cgroup, no lease, no files
        netns = glob.glob(os.path.join(self.agent.run_dir, "embedded-containerd", "**",
                                       "netns", "cni-*"), recursive=True)
        self.assertTrue(vmm_pids(wid))
        r = self.cli("stop", "--id", wid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(vmm_pids(wid), [])
        self.assertEqual([n for n in netns if os.path.exists(n)], [])
        self.assertEqual(glob.glob(os.path.join(CGROUP_ROOT, "*", "hypercore", wid)), [])
        self.assertEqual(glob.glob(os.path.join(self.agent.state_dir, "cni-ipam", "hypercore",
                                                ip)), [])
        self.assertFalse(os.path.exists(os.path.join(self.agent.state_dir, "vm", "run", wid)))
        self.assertIn("no workload", self.cli("logs", "--id", wid).stderr)

    def test_02_exit_status_reaches_the_host(self):
        # a read-only root: the VM's disk is read-only, no overlay
        wid = self.spawn_vm("exiter", "--mem", "96", "--env", "EXIT_CODE=7",
                            "--restart", "never", "--read-only-rootfs")
        w = wait_for("the VM's workload exited", lambda: (
            lambda w: w if w and w["state"] == "exited" else None)(self.workload(wid)),
            timeout=BOOT_TIMEOUT)
        self.assertEqual(w["exit_code"], 7)
        self.assertIn("exiting with 7", self.logs(wid))
        self.assertEqual(vmm_pids(wid), [])

    def test_03_cluster_spawn_places_on_a_vm_node(self):
        policy = os.path.join(self.workdir, "vm-policy.json")
        with open(policy, "w") as f:
            json.dump({"name": "vm-only", "mode": "enforce",
                       "rules": {"required_capabilities": ["vm"]}}, f)
        r = self.agent.cli("cluster", "policy", "explain", "--http-bind-addr",
                           "127.0.0.1:%d" % self.agent.http_port, "--image-ref", self.images["exiter"],
                           "--mem", "96", "--policy", policy, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        node = json.loads(r.stdout)["nodes"][0]
        self.assertIn("vm", node["capabilities"])
        self.assertTrue(node["eligible"], node)
        r = self.agent.cli("cluster", "spawn", "--grpc-bind-addr", self.agent.grpc_addr,
                           "--runtime", "microvm", "--image-ref", self.images["exiter"],
                           "--mem", "96", "--env", "EXIT_CODE=3", "--restart", "on-failure",
                           "--policy", policy, "--timeout", str(BOOT_TIMEOUT))
        self.assertEqual(r.returncode, 0, r.stderr)
        wid = r.stdout.split()[0]
        self.spawned.add(wid)
        self.addCleanup(self.cli, "stop", "--id", wid, "--grace", "0")
        w = wait_for("the cluster's VM ran and exited", lambda: (
            lambda w: w if w and w["state"] == "exited" else None)(self.workload(wid)),
            timeout=BOOT_TIMEOUT)
        self.assertEqual((w["runtime"], w["exit_code"]), ("microvm", 3))
        self.assertEqual(w["request"]["runtime"], "microvm")
        # its restart policy brings it back, as a VM again
        wait_for("the VM restarted", lambda: re.search(
            r"restarting workload %s" % wid, self.agent.log()), timeout=BOOT_TIMEOUT)
        again = wait_for("the VM's second run", lambda: (
            lambda x: x if x and x["container_id"] not in ("", w["container_id"]) else None)(
                self.workload(wid)), timeout=BOOT_TIMEOUT)
        self.assertEqual(again["runtime"], "microvm")


if __name__ == "__main__":
    hctest.main()
