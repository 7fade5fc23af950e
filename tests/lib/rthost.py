"""What the runtime tests (test_runtime.py, test_microvm.py) do on the host
around their agent: plain HTTP gets, process command lines, a veth into a
namespace of their own, and putting back what CNI and the workloads leave
host-wide (iptables chains, ip_forward, mounts, cgroups)."""

import glob
import os
import subprocess
import urllib.request

CGROUP_ROOT = "/sys/fs/cgroup"


def http_get(url, timeout=2, headers=None):
    """The body of a GET, or None when it fails in any way."""
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def cmdline(pid):
    """A process's argv as bytes ([] when it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def veth_netns(ns, host_if, ns_if, host_addr, ns_addr, prefix=30):
    """A namespace ns joined to the host by a veth (host_if here, ns_if
    there), each end with its address, up."""
    for cmd in (["netns", "add", ns],
                ["link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                ["link", "set", ns_if, "netns", ns],
                ["addr", "add", "%s/%d" % (host_addr, prefix), "dev", host_if],
                ["link", "set", host_if, "up"],
                ["-n", ns, "addr", "add", "%s/%d" % (ns_addr, prefix), "dev", ns_if],
                ["-n", ns, "link", "set", ns_if, "up"],
                ["-n", ns, "link", "set", "lo", "up"]):
        subprocess.run(["ip", *cmd], check=True, capture_output=True)


class HostNet:
    """What CNI changes host-wide (its iptables chains, ip_forward), saved
    before an agent starts and put back by restore()."""

    def __init__(self):
        self.had_cni_chains = b"CNI-FORWARD" in subprocess.run(
            ["iptables", "-S"], capture_output=True).stdout
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            self.ip_forward = f.read().strip()

    def restore(self):
        if not self.had_cni_chains:
            for cmd in (["-D", "FORWARD", "-m", "comment", "--comment",
                         "CNI firewall plugin rules", "-j", "CNI-FORWARD"],
                        ["-F", "CNI-FORWARD"], ["-X", "CNI-FORWARD"],
                        ["-F", "CNI-ADMIN"], ["-X", "CNI-ADMIN"]):
                subprocess.run(["iptables", *cmd], capture_output=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(self.ip_forward)


def unmount_under(path):
    """Lazily unmounts everything mounted below path, deepest first."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for m in sorted((m for m in mounts if m.startswith(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def remove_workload_cgroups(wids):
    """The cgroups hypercore/<id> of these workloads only (other agents on
    the machine share the hypercore directory), in every hierarchy."""
    for wid in wids:
        for d in glob.glob(os.path.join(CGROUP_ROOT, "*", "hypercore", wid)):
            for sub in sorted(glob.glob(os.path.join(d, "*")), reverse=True) + [d]:
                if os.path.isdir(sub):
                    try:
                        os.rmdir(sub)
                    except OSError:
                        pass


def undo_all(steps):
    """Runs every step of a teardown, also when one before it failed, then
    raises the first error."""
    errors = []
    for step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 (raised below)
            errors.append(e)
    if errors:
        raise errors[0]


def stop_agent(agent):
    """SIGTERM and wait, and SIGKILL whatever is left (None: nothing)."""
    if agent:
        try:
            agent.stop()
        finally:
            agent.kill()
