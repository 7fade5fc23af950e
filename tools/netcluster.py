#!/usr/bin/python3
"""An N-node hypercore cluster in network namespaces on this one machine, for
integration tests, benchmarks and demos; torn down cleanly, also on failure.

Topology (PREFIX default "hcc", X = the subnet byte, default 253):

    root netns  PREFIX-host 10.X.0.254/24 --.
                                            |  br0 in netns PREFIX-sw
    netns PREFIX-n1  eth0 10.X.0.1/24 ------+
    netns PREFIX-n2  eth0 10.X.0.2/24 ------+
    ...                                     '

Node i runs `build/hypercore cluster` in netns PREFIX-n<i> (entered with
`nsenter --net`, so /sys/fs/bpf stays the host's): gRPC on 10.X.0.i:8000, HTTP
on 10.X.0.i:8001, gossip on 10.X.0.i:7946 (nodes 2..N join node 1 with the
join token `hypercore cluster join-token` prints from node 1's state dir, so
gossip is encrypted with the key node 1 made and every node accepts node 1's
API token; a restarted node finds both in its state dir), state and
run dirs under WORKDIR/n<i>/, its log in WORKDIR/n<i>/agent.log, node ports on
its eth0 (TC ingress: what --dataplane-mode auto picks for a veth, whose
offloads stay as Linux sets them), pins in /sys/fs/bpf/PREFIX-n<i>, and by
default the embedded containerd.
Everything is reachable from the root netns, and nodes reach a registry served
in the root netns at 10.X.0.254. The root netns's sysctls are never changed.

As a module (tests/benchmarks: `sys.path.insert(0, "<repo>/tools")`):

    from netcluster import NetCluster
    with NetCluster(3, "/tmp/c", prefix="hct", registry=True) as c:
        n1 = c.node(1)
        n1.http_json("/members")                 # parsed JSON (raises unless 200)
        n1.http("/list")                         # (status, headers, body bytes)
        n1.cli("cluster", "list", "--grpc-bind-addr", n1.grpc_addr)
        n1.local_cli("spawn", "--image-ref", c.images["web"], "--ports", "8080:8080")
        n1.ns_run("curl", "-s", "http://10.88.0.2:8080/")  # from inside n1's netns
        c.node(2).kill()                         # SIGKILL, as a crashed node
        c.node(2).restart()                      # same arguments, waits for /healthz

  NetCluster(n, workdir, prefix="hcc", subnet=253, registry=False, runtime=True,
             base_url="example.test", extra_args=(), node_args=None)
      workdir: created (must be absent or empty); removed by stop().
      registry: docker-registry at 10.X.0.254:PORT with web, logger, exiter
          pushed as hypercore/<name>:1; c.images maps name -> reference.
      runtime=False: --no-runtime --no-dataplane (fast gossip-only clusters).
      extra_args: agent arguments for every node; node_args: {i: [args]}.
    .start(timeout=180)  topology, registry, agents; waits until every /healthz
                         is 200 and every node lists all N as alive. On any
                         failure (or ^C) it tears down and re-raises.
    .stop()              idempotent, never raises; every step runs on its own.
    .node(i)             1-based; .nodes is the list
    .wait_members(timeout=60)  until every running node lists all N alive
    .host_addr, .registry, .images, .workdir, .prefix

  A node: .index .name .netns .addr .grpc_addr .http_addr .http_url
    .gossip_addr .state_dir .run_dir .pin_dir .socket .log_path .proc
    .log() .http(path, method="GET", body=None, headers=None, timeout=10, token=...)
    .http_json(path) .members() .cli(*args, timeout=60, input=None, token=...)
    .token() (the admin token: http() and cli() send it unless token= says
    otherwise) .read_only_token() .join_token()
    .local_cli(verb, *args, timeout=120, input=None) .ns_run(*argv, timeout=30)
    .kill(sig=SIGKILL) .stop(timeout=20) -> exit status .start() .restart()
    .running()  .bin (the executable its next start() runs) .env (more
    environment for its next start(), e.g. HYPERCORE_FAULT)

Command line:
  tools/netcluster.py up --nodes 3 --workdir DIR [--prefix P] [--subnet X]
      [--registry] [--no-runtime] [--base-url DOM] [--arg=--flag ...]
      Starts the cluster, prints where everything is, and waits for ^C or
      SIGTERM; then tears everything down.
  tools/netcluster.py down --prefix P [--workdir DIR]
      Removes what a crashed run left: its processes (found by the workdir in
      their argv), mounts, cgroups, pins, namespaces, veths and the workdir.
      The workdir comes from --workdir, the run's record in /run/netcluster/,
      or the arguments of an agent still running in the namespaces.

Only processes started here (by PID) or belonging to this cluster (their argv
names the workdir) are ever signalled.
"""

import argparse
import concurrent.futures
import glob
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hctest  # noqa: E402
from hctest import HC_BIN  # noqa: E402
from registry import Registry, build_test_images  # noqa: E402

log = logging.getLogger("netcluster")

GRPC_PORT, HTTP_PORT, GOSSIP_PORT = 8000, 8001, 7946
IMAGE_TAG = "1"
RECORD_DIR = "/run/netcluster"  # one JSON per prefix, so `down` finds the workdir
CGROUP_ROOT = "/sys/fs/cgroup"
BPF_ROOT = "/sys/fs/bpf"
# containerd 1.6 puts each shim's socket here whatever its own paths are;
# a SIGKILLed shim leaves its socket behind.
SHIM_SOCKET_DIR = "/run/containerd/s"
# Executables of a cluster that may be signalled when their argv names the
# workdir: never, say, a user's shell that happens to sit in it.
CLUSTER_EXES = {"hypercore", "containerd", "containerd-shim-runc-v2", "runc",
                "docker-registry", "skopeo", "nsenter"}
SHIM_EXE = "containerd-shim-runc-v2"
IFNAMSIZ = 15


# ---- small helpers ----

def _run(argv, timeout=60, check=False, input=None, env=None):
    """argv with text output. Its own session: a ^C at the terminal reaches
    only us, so teardown commands are not killed half-way by the same ^C."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                       start_new_session=True, env=env)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
                                                   (r.stderr or r.stdout).strip()))
    return r


def _gives_key(argv):
    """Whether agent arguments settle gossip encryption themselves (else a
    node joins with node 1's join token)."""
    return any(a in argv for a in ("--join-token", "--cluster-encrypt", "--cluster-keyring",
                                   "--cluster-insecure"))


def _nsenter(ns, *argv):
    # never `ip netns exec`: it remounts /sys, hiding bpffs (datapath-facts.md, trap 5)
    return ["nsenter", "--net=/run/netns/%s" % ns, *argv]


def _ip(*args, check=True):
    return _run(["ip", *args], check=check)


def _netns_list():
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="surrogateescape") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def _alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _all_pids():
    return [int(d[6:]) for d in glob.glob("/proc/[0-9]*")]


def _names_path(argv, path):
    """Whether an argument names path or something under it (also inside
    `--flag=PATH/..` or `unix://PATH/..`), not merely a sibling like PATH2."""
    return any(a == path or path + "/" in a for a in argv)


def _cluster_pids(workdir):
    """PIDs of this cluster's processes: a known executable whose argv names
    the workdir. We never match ourselves."""
    me = os.getpid()
    out = []
    for pid in _all_pids():
        argv = _cmdline(pid)
        if pid != me and argv and os.path.basename(argv[0]) in CLUSTER_EXES \
                and _names_path(argv, workdir):
            out.append(pid)
    return out


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _workload_cgroups(pid):
    """The hypercore cgroup paths (relative, "/hypercore/...") pid is in."""
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            paths = {line.rstrip("\n").split(":", 2)[2] for line in f}
    except (OSError, IndexError):
        return set()
    # with the per-workload parents (/hypercore/<id>): the processes sit in
    # the pod's and containers' cgroups below it, and the agent that would
    # remove it on a stop is gone at a teardown
    out = set()
    for p in paths:
        while p.startswith("/hypercore/"):
            out.add(p)
            p = os.path.dirname(p)
    return out


def _shim_socket(argv):
    """The socket file containerd 1.6 gives a shim: sha256 of
    address/namespace/id, under /run/containerd/s (shim.SocketAddress)."""
    opts = {}
    for flag, value in zip(argv, argv[1:]):
        if flag in ("-address", "-namespace", "-id"):
            opts[flag] = value
    if len(opts) != 3:
        return None
    key = os.path.join(opts["-address"], opts["-namespace"], opts["-id"])
    return os.path.join(SHIM_SOCKET_DIR, hashlib.sha256(key.encode()).hexdigest())


def _unescape_mount(path):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts_under(path):
    with open("/proc/self/mounts") as f:
        mounts = [_unescape_mount(line.split()[1]) for line in f]
    return sorted((m for m in mounts if m == path or m.startswith(path + "/")),
                  key=len, reverse=True)


def _record_path(prefix):
    return os.path.join(RECORD_DIR, prefix + ".json")


def _read_record(prefix):
    try:
        with open(_record_path(prefix)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class _Step:
    """Runs one teardown step; a failure is logged and the next step runs."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None:
            log.warning("teardown: %s failed: %s: %s", self.what, kind.__name__, exc)
        return True  # also swallows a ^C: the remaining steps still run


# ---- a node ----

class Node(hctest.Agent):
    """One agent in its netns. hctest.Agent supplies start() (log appended,
    own session so a terminal ^C does not reach it) and log(); addressing and
    the HTTP client are ours: the agent listens on its netns address and is
    reached from the root netns through the bridge."""

    def __init__(self, cluster, i):
        self.cluster = cluster
        self.index = i
        self.netns = "%s-n%d" % (cluster.prefix, i)
        # Agent's layout (WORKDIR/NAME/{state,run,agent.log}); the loopback
        # ports it picks go unused
        super().__init__(cluster.workdir, "n%d" % i, runtime=cluster.runtime,
                         dataplane=cluster.runtime, netns=self.netns)
        self.addr = "10.%d.0.%d" % (cluster.subnet, i)
        self.http_addr = "%s:%d" % (self.addr, HTTP_PORT)
        self.gossip_addr = "%s:%d" % (self.addr, GOSSIP_PORT)
        self.pin_dir = os.path.join(BPF_ROOT, self.netns)
        self.socket = os.path.join(self.run_dir, "containerd.sock")
        self.extra_args = list(cluster.extra_args) + list(cluster.node_args.get(i, ()))
        self.bin = HC_BIN  # the agent executable: another build for a rolling upgrade
        self._log = None

    @property
    def grpc_addr(self):
        return "%s:%d" % (self.addr, GRPC_PORT)

    @property
    def http_url(self):
        return "http://%s" % self.http_addr

    def args(self):
        c = self.cluster
        argv = _nsenter(self.netns, self.bin, "cluster",
                        "--grpc-bind-addr", "0.0.0.0:%d" % GRPC_PORT,
                        "--http-bind-addr", "0.0.0.0:%d" % HTTP_PORT,
                        "--cluster-bind-addr", self.gossip_addr,
                        "--state-dir", self.state_dir, "--run-dir", self.run_dir,
                        "--cluster-base-url", c.base_url, "--log-level", "debug")
        if c.runtime:
            argv += ["--dataplane-iface", "eth0", "--bpf-pin-dir", self.pin_dir]
            if c.registry:
                argv += ["--insecure-registry", c.registry.addr]
        else:
            argv += ["--no-runtime", "--no-dataplane"]
        argv += self.extra_args
        # Seeds, positional JOIN-ADDRs: node 1 for a first start; for a
        # restart every other running node, as an operator would name them
        # (a node does not rejoin by itself, and the others' reconnect
        # attempts, serf's, come at random every 30 s).
        if self.proc is None:
            if self.index != 1:
                # node 1 made the cluster key; a join token carries it and
                # the API token (a restart finds both in the state dir)
                if not _gives_key(argv) and c.join_token:
                    argv += ["--join-token", c.join_token]
                argv.append(c.node(1).gossip_addr)
        else:
            argv += [n.gossip_addr for n in c.nodes if n is not self and n.running()]
        return argv

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True, timeout=120):
        self._close_log()
        super().start(wait=False)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=120):
        """Until /healthz answers 200 (the embedded containerd comes first,
        which takes seconds on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent %s exited with %s; its log ends:\n%s"
                                   % (self.name, self.proc.returncode, self.log()[-3000:]))
            try:
                if self.http("/healthz", timeout=2)[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise RuntimeError("agent %s not ready after %ss; its log ends:\n%s"
                           % (self.name, timeout, self.log()[-3000:]))

    def http(self, path, method="GET", body=None, headers=None, timeout=10,
             token=hctest.OWN_TOKEN):
        """(status, headers, body bytes) from the node's HTTP API, from the
        root netns; HTTP errors are returned, not raised. http.client, not
        urllib: no proxy from the environment may get in between. Sends the
        node's admin token (token=: another, None for none) and, on a POST,
        Content-Type application/json unless headers say."""
        headers = hctest.with_token(headers, self.token() if token is hctest.OWN_TOKEN
                                    else token, method)
        c = http.client.HTTPConnection(self.addr, HTTP_PORT, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def http_json(self, path, **kw):
        status, _, body = self.http(path, **kw)
        if status != 200:
            raise RuntimeError("%s %s: HTTP %d: %s" % (self.name, path, status,
                                                       body[:500].decode(errors="replace")))
        return json.loads(body)

    def members(self):
        """The node's /members list: dicts with name, addr, status, ..."""
        return self.http_json("/members")["response"]

    def cli(self, *args, timeout=60, input=None, token=hctest.OWN_TOKEN):
        """`hypercore ARGS` in the root netns (name this node's addresses),
        with the node's admin token in $HYPERCORE_TOKEN (token=: another,
        None for none)."""
        token = self.token() if token is hctest.OWN_TOKEN else token
        env = dict(os.environ)
        env.pop("HYPERCORE_TOKEN", None)
        if token is not None:
            env["HYPERCORE_TOKEN"] = token
        return _run([HC_BIN, *args], timeout=timeout, input=input, env=env)

    def local_cli(self, verb, *args, timeout=120, input=None):
        """A local runtime verb (spawn, stop, list, logs, attach) against this
        node's containerd: a unix socket, so no netns is needed. The
        directories go first: attach takes a command after "--"."""
        return _run([HC_BIN, verb, "--run-dir", self.run_dir, "--state-dir", self.state_dir,
                     *args], timeout=timeout, input=input)

    def ns_run(self, *argv, timeout=30, check=False):
        """A command inside this node's netns (e.g. to reach its workloads)."""
        return _run(_nsenter(self.netns, *argv), timeout=timeout, check=check)

    def kill(self, sig=signal.SIGKILL):
        """Signals the agent by PID. SIGKILL leaves its workloads and shims
        running and its programs attached, as a crashed node does (its
        containerd dies too: it has a parent-death signal)."""
        if self.running():
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait()
        if not self.running():
            self._close_log()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """SIGTERM, wait; returns the exit status (SIGKILL and RuntimeError
        if it ignores it for timeout seconds)."""
        if self.proc is None:
            return None
        if self.running():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                raise RuntimeError("agent %s ignored %s for %ss" % (self.name, sig, timeout))
        self._close_log()
        return self.proc.returncode

    def restart(self, wait=True, timeout=120):
        """Stops the agent if it runs, then starts it with the same arguments."""
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def __repr__(self):
        return "<Node %s %s pid=%s>" % (self.name, self.addr, self.proc.pid if self.proc else None)


# ---- the cluster ----

class NetCluster:
    def __init__(self, n, workdir, prefix="hcc", subnet=253, registry=False, runtime=True,
                 base_url="example.test", extra_args=(), node_args=None):
        if n < 1 or n > 250:
            raise ValueError("n must be 1..250")
        if not 1 <= subnet <= 254:
            raise ValueError("subnet must be 1..254")
        # the longest interface name made from it is PREFIX-host
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", prefix) or \
                len(prefix + "-host") > IFNAMSIZ:
            raise ValueError("prefix must be [a-z0-9-], at most %d characters"
                             % (IFNAMSIZ - len("-host")))
        self.n = n
        self.workdir = os.path.realpath(workdir)  # as /proc/self/mounts shows it
        self.prefix = prefix
        self.subnet = subnet
        self.want_registry = registry
        self.runtime = runtime
        self.base_url = base_url
        self.extra_args = list(extra_args)
        self.node_args = dict(node_args or {})
        self.host_addr = "10.%d.0.254" % subnet
        self.host_veth = prefix + "-host"
        self.switch_ns = prefix + "-sw"
        self.registry = None
        self.images = {}
        self.nodes = []
        self.join_token = None  # `cluster join-token` of node 1, once it runs
        self._claimed = False  # names, record and workdir are ours to remove
        self._started = False

    def node(self, i):
        return self.nodes[i - 1]

    # -- start --

    def start(self, timeout=180):
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        try:
            self._claim()
            self.nodes = [Node(self, i) for i in range(1, self.n + 1)]
            self._make_topology()
            if self.want_registry:
                self._start_registry()
            self._start_agents(timeout)
            self.wait_members(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def _claim(self):
        """Checks that nothing of ours exists, then takes the prefix: the
        record is created with O_EXCL, so two runs cannot both own it. From
        here on, everything named after the prefix is removed by stop()."""
        if os.geteuid() != 0:
            raise RuntimeError("needs root (network namespaces, BPF)")
        if not os.access(HC_BIN, os.X_OK):
            raise RuntimeError("%s missing: build it with make" % HC_BIN)
        leftovers = [ns for ns in _netns_list() if ns == self.switch_ns or
                     re.fullmatch(re.escape(self.prefix) + r"-n\d+", ns)]
        if _ip("link", "show", self.host_veth, check=False).returncode == 0:
            leftovers.append(self.host_veth)
        leftovers += glob.glob(os.path.join(BPF_ROOT, self.prefix + "-n[0-9]*"))
        if leftovers or os.path.exists(_record_path(self.prefix)):
            raise RuntimeError("prefix %s is in use or was not cleaned up (%s): run "
                               "`tools/netcluster.py down --prefix %s`"
                               % (self.prefix, ", ".join(leftovers) or _record_path(self.prefix),
                                  self.prefix))
        # another cluster (or anything else) on the subnet: any route to it
        # but the default one
        routes = _ip("-4", "route", "show", "to", "match", self.host_addr, check=False).stdout
        if any(r and not r.startswith("default") for r in routes.splitlines()):
            raise RuntimeError("10.%d.0.0/24 is already routed here (%s): choose another subnet"
                               % (self.subnet, routes.strip()))
        if os.path.isdir(self.workdir) and os.listdir(self.workdir):
            # stop() removes the workdir: never one holding someone's files
            raise RuntimeError("workdir %s is not empty" % self.workdir)
        os.makedirs(RECORD_DIR, exist_ok=True)
        fd = os.open(_record_path(self.prefix), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._claimed = True
        with os.fdopen(fd, "w") as f:
            json.dump({"prefix": self.prefix, "workdir": self.workdir, "nodes": self.n,
                       "subnet": self.subnet, "pid": os.getpid()}, f)
        os.makedirs(self.workdir, exist_ok=True)

    def _make_topology(self):
        sw = self.switch_ns
        _ip("netns", "add", sw)
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "br0", "type", "bridge"],
                    ["link", "set", "br0", "up"]):
            _ip("-n", sw, *cmd)
        # root end: created with its peer directly in the switch netns, so no
        # temporary name can clash with another cluster's
        _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", "host", "netns", sw)
        _ip("-n", sw, "link", "set", "host", "master", "br0", "up")
        _ip("addr", "add", "%s/24" % self.host_addr, "dev", self.host_veth)
        _ip("link", "set", self.host_veth, "up")
        for nd in self.nodes:
            _ip("netns", "add", nd.netns)
            _ip("link", "add", "eth0", "netns", nd.netns, "type", "veth",
                "peer", "name", nd.name, "netns", sw)
            _ip("-n", sw, "link", "set", nd.name, "master", "br0", "up")
            for cmd in (["link", "set", "lo", "up"],
                        ["addr", "add", "%s/24" % nd.addr, "dev", "eth0"],
                        ["link", "set", "eth0", "up"],
                        # like a real edge node: code that looks for "the
                        # default route's interface/address" finds eth0; the
                        # root netns does not forward, so nothing leaks out
                        ["route", "add", "default", "via", self.host_addr]):
                _ip("-n", nd.netns, *cmd)
            # in the node's netns only: workloads are routed through the node
            _run(_nsenter(nd.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"), check=True)
        for ns in [sw] + [nd.netns for nd in self.nodes]:
            # no IPv6 autoconfiguration chatter in the data plane's counters
            _run(_nsenter(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
            _run(_nsenter(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
        log.info("topology up: %s, %s, %s", self.host_veth, sw,
                 " ".join(nd.netns for nd in self.nodes))

    def _start_registry(self):
        self.registry = Registry(os.path.join(self.workdir, "registry"), host=self.host_addr)
        self.registry.start()
        images = build_test_images(os.path.join(self.workdir, "images"), tag=IMAGE_TAG)
        for name, oci_dir in images.items():
            self.images[name] = self.registry.push(oci_dir, IMAGE_TAG, "hypercore/" + name)
        log.info("registry at %s: %s", self.registry.addr, " ".join(sorted(self.images)))

    def _start_agents(self, timeout):
        deadline = time.monotonic() + timeout
        # node 1 first: the others join it, and its join port is bound once
        # it answers /healthz
        self.node(1).start(wait=True, timeout=timeout)
        if self.n > 1 and not _gives_key(self.node(1).extra_args):
            self.join_token = self.node(1).join_token()
        for nd in self.nodes[1:]:
            nd.start(wait=False)
        for nd in self.nodes[1:]:
            nd.wait_ready(max(1.0, deadline - time.monotonic()))
        log.info("%d agents answer /healthz", self.n)

    def wait_members(self, timeout=60):
        """Until every running node lists all N nodes (by address) as alive;
        members from elsewhere (a serf agent a test joined) are ignored."""
        ours = {nd.addr for nd in self.nodes}
        deadline = time.monotonic() + timeout
        last = {}
        while True:
            done = True
            for nd in self.nodes:
                if not nd.running():
                    continue
                others = []
                try:
                    members = nd.members()
                    alive = {m["addr"].rsplit(":", 1)[0].strip("[]") for m in members
                             if m.get("status") == "alive"}
                    # what it holds the missing ones as (failed, left, leaving)
                    others = ["%s %s" % (m["addr"].rsplit(":", 1)[0].strip("[]"),
                                         m.get("status")) for m in members
                              if m.get("status") != "alive"]
                except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
                    alive = {"error: %s" % e}
                last[nd.name] = (sorted(alive & ours) or sorted(alive)) + sorted(others)
                done = done and ours <= alive
            if done:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("members not converged after %ss: %s" % (timeout, last))
            time.sleep(0.2)

    # -- stop --

    def stop(self):
        """Everything down; idempotent, never raises."""
        if not self._claimed:
            return
        _teardown(self.prefix, self.workdir, self.nodes, own_registry=self.registry)
        self.registry = None
        self._claimed = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _stop_workloads(node_dirs):
    """Stops every workload of each node through its containerd while it is
    up (an agent killed by SIGKILL took its containerd along: nothing to do
    there, its shims are ended below). Nodes in parallel."""
    def one(dirs):
        run_dir, state_dir = dirs
        if not os.path.exists(os.path.join(run_dir, "containerd.sock")):
            return
        where = ["--run-dir", run_dir, "--state-dir", state_dir]
        r = _run([HC_BIN, "list", *where, "--json"], timeout=30)
        if r.returncode != 0:
            return
        for w in json.loads(r.stdout):
            s = _run([HC_BIN, "stop", *where, "--id", w["id"], "--grace", "0"], timeout=60)
            if s.returncode != 0:
                log.warning("teardown: stop %s: %s", w["id"], s.stderr.strip())

    with concurrent.futures.ThreadPoolExecutor(max(1, len(node_dirs))) as pool:
        for f in [pool.submit(one, d) for d in node_dirs]:
            with _Step("stopping workloads"):
                f.result()


def _teardown(prefix, workdir, nodes, own_registry=None, node_indices=()):
    """The whole teardown, shared by NetCluster.stop() and `down`. nodes:
    Node objects whose agents we started (by PID); node_indices: further
    nodes of a crashed run, known only by index. Each step is independent."""
    indices = sorted({nd.index for nd in nodes} | set(node_indices))
    dirs = [(os.path.join(workdir, "n%d" % i, "run"), os.path.join(workdir, "n%d" % i, "state"))
            for i in indices]

    with _Step("stopping workloads"):
        _stop_workloads(dirs)

    with _Step("stopping agents"):
        live = [nd for nd in nodes if nd.running()]
        for nd in live:
            nd.proc.send_signal(signal.SIGTERM)
            nd.proc.send_signal(signal.SIGCONT)  # one a test stopped (SIGSTOP) must see it
        deadline = time.monotonic() + 20
        for nd in live:
            try:
                nd.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("teardown: agent %s ignored SIGTERM; SIGKILL", nd.name)
                nd.proc.kill()
                nd.proc.wait()
            nd._close_log()

    if own_registry:
        with _Step("stopping the registry"):
            own_registry.stop()

    cgroups, shim_sockets = set(), set()
    with _Step("ending the cluster's processes"):
        # agents of a crashed run, containerd, shims, a registry: by the
        # workdir in their argv. A shim's children are the workloads (it is
        # their subreaper): collect them before the shim dies and they are
        # reparented out of sight.
        pids = _cluster_pids(workdir)
        hypercores = [p for p in pids if os.path.basename((_cmdline(p) or [""])[0]) == "hypercore"]
        for p in hypercores:
            _signal(p, signal.SIGTERM)  # an orderly stop, then no mercy
        _wait_gone(hypercores, 10)
        pids = _cluster_pids(workdir)
        victims = []
        for p in pids:
            argv = _cmdline(p)
            if argv and os.path.basename(argv[0]) == SHIM_EXE:
                sock = _shim_socket(argv)
                if sock:
                    shim_sockets.add(sock)
                victims += hctest.descendants(p)
        for p in victims:
            cgroups |= _workload_cgroups(p)
        victims += pids
        for p in victims:
            _signal(p, signal.SIGKILL)
        left = _wait_gone(victims, 10)
        if left:
            log.warning("teardown: still running after SIGKILL: %s", left)

    with _Step("unmounting"):
        for m in _mounts_under(workdir):
            _run(["umount", "-l", m], timeout=30)

    with _Step("removing cgroups"):
        for rel in sorted(cgroups, key=len, reverse=True):
            for d in glob.glob(os.path.join(CGROUP_ROOT, "*") + rel):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        # the shared parent, only when empty (another cluster may use it)
        for d in glob.glob(os.path.join(CGROUP_ROOT, "*", "hypercore")):
            try:
                os.rmdir(d)
            except OSError:
                pass

    with _Step("removing shim sockets"):
        for s in shim_sockets:
            try:
                os.unlink(s)
            except FileNotFoundError:
                pass

    with _Step("data plane cleanup"):
        existing = set(_netns_list())

        def cleanup(i):
            ns, pin_dir = "%s-n%d" % (prefix, i), os.path.join(BPF_ROOT, "%s-n%d" % (prefix, i))
            if ns in existing:
                # in the node's netns: "eth0" there is its uplink (in the root
                # netns it would be the machine's own NIC)
                _run(_nsenter(ns, HC_BIN, "dataplane", "cleanup", "--dataplane-iface", "eth0",
                              "--bpf-pin-dir", pin_dir), timeout=60)
            elif os.path.isdir(pin_dir):
                _run([HC_BIN, "dataplane", "cleanup", "--bpf-pin-dir", pin_dir], timeout=60)
            if os.path.isdir(pin_dir):  # what cleanup did not know about
                shutil.rmtree(pin_dir, ignore_errors=True)

        pin_indices = {int(m.group(1)) for m in
                       (re.fullmatch(re.escape(prefix) + r"-n(\d+)", os.path.basename(p))
                        for p in glob.glob(os.path.join(BPF_ROOT, prefix + "-n[0-9]*"))) if m}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(cleanup, i) for i in sorted(set(indices) | pin_indices)]:
                with _Step("data plane cleanup"):
                    f.result()

    with _Step("removing veths and namespaces"):
        # the root end first: deleting it is synchronous, while a deleted
        # netns takes its veths along only when the kernel gets to it
        _ip("link", "del", prefix + "-host", check=False)
        for ns in _netns_list():
            if ns == prefix + "-sw" or re.fullmatch(re.escape(prefix) + r"-n\d+", ns):
                _ip("netns", "del", ns, check=False)

    with _Step("removing the workdir"):
        for attempt in range(20):
            shutil.rmtree(workdir, ignore_errors=True)
            if not os.path.exists(workdir):
                break
            time.sleep(0.1)  # a lazily unmounted overlay lets go shortly after
        else:
            log.warning("teardown: %s could not be removed entirely", workdir)

    with _Step("removing the record"):
        rec = _read_record(prefix)
        if rec is None or rec.get("workdir") == workdir:
            try:
                os.unlink(_record_path(prefix))
            except FileNotFoundError:
                pass


# ---- down: what a crashed run left ----

def _workdir_from_netns(prefix):
    """The workdir of an agent still running in one of the prefix's
    namespaces, from its --state-dir (WORKDIR/n<i>/state)."""
    inodes = set()
    for ns in _netns_list():
        if re.fullmatch(re.escape(prefix) + r"-n\d+", ns):
            try:
                inodes.add(os.stat("/run/netns/" + ns).st_ino)
            except OSError:
                pass
    for pid in _all_pids():
        try:
            if os.stat("/proc/%d/ns/net" % pid).st_ino not in inodes:
                continue
        except OSError:
            continue
        argv = _cmdline(pid)
        if "--state-dir" in argv[:-1] and os.path.basename(argv[0]) == "hypercore":
            return os.path.dirname(os.path.dirname(argv[argv.index("--state-dir") + 1]))
    return None


def down(prefix, workdir=None):
    """Removes everything a run with this prefix left behind."""
    rec = _read_record(prefix)
    if rec and rec.get("pid") and rec["pid"] != os.getpid() and _alive(rec["pid"]) and \
            any(a.endswith("netcluster.py") for a in _cmdline(rec["pid"])):
        log.warning("run %d still owns prefix %s; tearing down under it", rec["pid"], prefix)
    workdir = workdir or (rec or {}).get("workdir") or _workdir_from_netns(prefix)
    indices = set()
    for ns in _netns_list():
        m = re.fullmatch(re.escape(prefix) + r"-n(\d+)", ns)
        if m:
            indices.add(int(m.group(1)))
    if rec:
        indices |= set(range(1, int(rec.get("nodes", 0)) + 1))
    if workdir:
        workdir = os.path.realpath(workdir)
        for d in glob.glob(os.path.join(workdir, "n[0-9]*")):
            if re.fullmatch(r"n\d+", os.path.basename(d)):
                indices.add(int(os.path.basename(d)[1:]))
        log.info("removing %s: workdir %s, nodes %s", prefix, workdir, sorted(indices))
        _teardown(prefix, workdir, [], node_indices=indices)
    else:
        # no processes or mounts can be told apart without a workdir
        log.warning("no workdir known for %s: removing namespaces, veths and pins only", prefix)
        with _Step("data plane, veths and namespaces"):
            _teardown(prefix, "/nonexistent/netcluster-%s" % prefix, [], node_indices=indices)


# ---- command line ----

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster and wait for ^C")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--workdir", required=True)
    up.add_argument("--prefix", default="hcc")
    up.add_argument("--subnet", type=int, default=253, help="X in 10.X.0.0/24")
    up.add_argument("--registry", action="store_true", help="serve the test images")
    up.add_argument("--no-runtime", action="store_true", help="gossip and APIs only")
    up.add_argument("--base-url", default="example.test")
    up.add_argument("--arg", action="append", default=[], metavar="ARG",
                    help="an extra agent argument for every node (repeatable; --arg=--flag)")
    up.add_argument("--timeout", type=float, default=180)
    dn = sub.add_parser("down", help="remove what a crashed run left")
    dn.add_argument("--prefix", default="hcc")
    dn.add_argument("--workdir")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="netcluster: %(message)s")

    if args.cmd == "down":
        down(args.prefix, args.workdir)
        return 0

    # ^C or SIGTERM ends the wait (or start()) once; a second one while we
    # tear down is ignored rather than leaving half a cluster behind
    fired = []

    def on_signal(signum, frame):
        if not fired:
            fired.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    c = NetCluster(args.nodes, args.workdir, prefix=args.prefix, subnet=args.subnet,
                   registry=args.registry, runtime=not args.no_runtime,
                   base_url=args.base_url, extra_args=args.arg)
    try:
        try:
            c.start(timeout=args.timeout)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # start() has torn down already
            print("netcluster: start failed: %s" % e, file=sys.stderr)
            return 1
        print("cluster %s: %d nodes, host side %s (%s)" % (c.prefix, c.n, c.host_addr,
                                                           c.host_veth))
        for nd in c.nodes:
            print("  %-4s netns %-10s http %-22s grpc %-18s pid %d  log %s"
                  % (nd.name, nd.netns, nd.http_url, nd.grpc_addr, nd.proc.pid, nd.log_path))
            print("       local verbs: %s VERB --run-dir %s --state-dir %s"
                  % (HC_BIN, nd.run_dir, nd.state_dir))
        print("  API token: %s cluster api-token --state-dir %s (the CLI takes it as "
              "$HYPERCORE_TOKEN)" % (HC_BIN, c.node(1).state_dir))
        for name, ref in sorted(c.images.items()):
            print("  image %-7s %s" % (name, ref))
        print("ready; ^C or SIGTERM tears it down", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        fired.append("done")  # ignore further signals from here on
        print("tearing down", file=sys.stderr, flush=True)
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
