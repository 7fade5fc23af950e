"""Network namespaces for the data-plane and proxy tests: creating them and
their veths, sockets opened inside them from this process, this process's
threads moved into them, commands run in them.

Commands run through `nsenter --net=/run/netns/NAME`, never `ip netns exec`:
the latter gives the command a private mount namespace with a fresh /sys, so
bpffs pins made there would be invisible here (datapath-facts.md, trap 5).
Sockets are made inside a namespace by a short-lived thread that setns()es
itself: setns changes only the calling thread, and a socket keeps the
namespace it was created in.
"""

import ctypes
import http.client
import os
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def nsenter(ns, *argv, **kw):
    """argv run in namespace ns (None: here), as a list for subprocess."""
    return (["nsenter", "--net=/run/netns/%s" % ns] if ns else []) + list(argv)


def run_in(ns, *argv, check=True, timeout=30):
    return subprocess.run(nsenter(ns, *argv), capture_output=True, text=True, check=check,
                          timeout=timeout)


def setns(fd, what):
    """Moves the calling thread (only it) into the network namespace open
    at fd; what names it in the error."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns %s" % what)


def enter(ns):
    """Moves the calling thread (only it) into namespace ns."""
    fd = os.open("/run/netns/%s" % ns, os.O_RDONLY)
    try:
        setns(fd, ns)
    finally:
        os.close(fd)


def socket_in(ns, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """A socket that lives in namespace ns."""
    result = {}

    def make():
        try:
            enter(ns)
            result["sock"] = socket.socket(family, type)
        except Exception as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


class HTTPConnectionIn(http.client.HTTPConnection):
    """http.client.HTTPConnection whose socket lives in namespace ns."""

    def __init__(self, ns, host, port, timeout=5):
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self):
        self.sock = socket_in(self.ns)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


def http_get(ns, host, port, path, timeout=5):
    """(status, body bytes) of GET path from inside namespace ns."""
    c = HTTPConnectionIn(ns, host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Topology:
    """Named namespaces joined by veth pairs; everything it made is removed
    by destroy(), also after a failure half-way."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.namespaces = []

    def ns(self, name):
        full = "%s-%s" % (self.prefix, name)
        ip("netns", "add", full)
        self.namespaces.append(full)
        run_in(full, "ip", "link", "set", "lo", "up")
        # No IPv6 autoconfiguration chatter in the counters.
        run_in(full, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        run_in(full, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        return full

    def link(self, ns_a, name_a, addr_a, ns_b, name_b, addr_b):
        """A veth pair name_a (in ns_a, with addr_a "IP/LEN") <-> name_b."""
        ip("link", "add", name_a, "type", "veth", "peer", "name", name_b)
        ip("link", "set", name_a, "netns", ns_a)
        ip("link", "set", name_b, "netns", ns_b)
        for ns, name, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
            run_in(ns, "ip", "addr", "add", addr, "dev", name)
            run_in(ns, "ip", "link", "set", name, "up")

    def destroy(self):
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)  # its veths go with it
        self.namespaces = []
