"""Fault scenarios on a hypercore cluster in network namespaces, and the checks
that follow each: shared by `make chaos` (tests/chaos/chaos.py), its bounded
subset in `make check` (tests/integration/test_chaos.py), the soak benchmark
(tools/bench/bench_soak) and the rolling upgrade (tests/chaos/upgrade.py).

    from chaoslib import Chaos, SCENARIOS
    with Chaos(workdir, nodes=5, prefix="hch", subnet=232) as ch:
        ch.spread(6)                        # web workloads over the cluster
        for s in SCENARIOS: ch.run(s)       # each prints its time to recover

After every scenario (Chaos.verify): every workload that should run runs
exactly once (one owner in every live node's list, no id twice), answers at
its URL through every live node's proxy, no route on a live node points at a
dead node, and nothing leaked on the live nodes (agent fds and threads,
BPF map entries, veths, CNI network namespaces and IP leases, containerd
containers and sandboxes, workload cgroups). Then the failed nodes are
brought back (Chaos.heal) and everything is checked again on all nodes.
"""

import glob
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import hctest  # noqa: E402
from netcluster import NetCluster  # noqa: E402

BASE = "example.test"
PROXY_PORT = 80
# Failure detection with the agents' settings below: gossip marks a killed
# node failed within seconds; respawn, routes and the proxies follow. Every
# wait is generous: the machine is shared.
# 240 s: a spawn query lost on the way (gossip delivers it by UDP, and a
# loaded machine drops some) is given up only at its 90 s timeout, and a
# respawn may meet that once (docs/operations.md).
RECOVER_TIMEOUT = 240
CGROUP_PIDS = "/sys/fs/cgroup/pids/hypercore"
# the embedded containerd's state, under the node's run dir (docs/runtime.md);
# a node first started by a release before 963bd09 keeps upstream's layout
# (containerd/), so an upgraded node's netns are there
CRI_NETNS = ("embedded-containerd/io.containerd.grpc.v1.cri/netns",
             "containerd/io.containerd.grpc.v1.cri/netns")
# Gossip timing as memberlist's LAN defaults (probe every 1 s, suspicion
# multiplier 4): the agent's own defaults are upstream hypercore's (5 s, 6),
# which take up to minutes to find a node failed; a shorter probe (500 ms)
# finds failures sooner but, with five agents and their containerds on two
# loaded cores, also finds live nodes failed.
AGENT_ARGS = ["--respawn-on-node-failure", "--probe-interval-ms", "1000",
              "--suspicion-mult", "4", "--state-period-ms", "1000"]
# Fault points in the order a spawn and a stop pass them (base.h, docs/operations.md)
SPAWN_POINTS = ["spawn:before_pull", "spawn:after_pull", "spawn:after_sandbox",
                "spawn:after_create", "spawn:after_start", "spawn:before_announce"]
STOP_POINTS = ["stop:before", "stop:after_containers", "stop:after_sandbox",
               "stop:before_announce"]
# An agent's fds and threads may vary with what it is doing (connections,
# job workers) but not grow with every scenario: allowed above the first
# figure a process showed when the cluster was healthy.
FD_SLACK, THREAD_SLACK = 24, 8


def curl(*args, timeout=3):
    """(HTTP status or 0, body) of curl ARGS."""
    r = subprocess.run(["curl", "-s", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}",
                        *args], capture_output=True, text=True, timeout=timeout + 5)
    body, _, code = r.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


def answers(node, wid, port=PROXY_PORT, timeout=3):
    """Whether wid answers as itself through node's proxy."""
    code, body = curl("-H", "Host: %s.%s" % (wid, BASE), "http://%s:%d/" % (node.addr, port),
                      timeout=timeout)
    return code == 200 and ("id=" + wid) in body


def listing(node, timeout=20):
    """{workload id: [owner names]} as node lists the cluster (HTTP /list);
    None when the node does not answer."""
    try:
        status, _, body = node.http("/list", timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    out = {}
    for st in json.loads(body)["response"].get("states", []):
        for w in st.get("workloads", []) or []:
            out.setdefault(w["id"], []).append(st["node"]["id"])
    return out


def metric(node, name):
    """The value of metric name (first sample) on node, None if absent."""
    try:
        status, _, body = node.http("/metrics", timeout=10)
    except (OSError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def proc_counts(pid):
    """(open fds, threads, RSS KiB) of a process."""
    fds = len(os.listdir("/proc/%d/fd" % pid))
    threads = len(os.listdir("/proc/%d/task" % pid))
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, threads, rss


class Failed(AssertionError):
    pass


class Chaos:
    """A cluster and the workloads that should run on it."""

    def __init__(self, workdir, nodes=5, prefix="hch", subnet=232, log=print, hc_bin=None,
                 extra_args=(), node_bins=None):
        self.workdir = workdir
        self.n = nodes
        self.say = log
        self.cluster = NetCluster(nodes, os.path.join(workdir, "cluster"), prefix=prefix,
                                  subnet=subnet, registry=True, base_url=BASE,
                                  extra_args=AGENT_ARGS + list(extra_args),
                                  node_args={i: ["--cluster-tag", "chaos=n%d" % i]
                                             for i in range(1, nodes + 1)})
        self.expected = set()   # workload ids that should run, once each
        self.ever = set()       # every id ever spawned (their cgroups are checked)
        self.baseline = {}      # pid -> (fds, threads) once healthy
        self.names = {}         # node index -> its gossip name
        self.policies = {}
        self.results = []       # (scenario, seconds to recover, seconds to heal)
        self.node_bins = node_bins or {}
        self.last_error = ""     # the last failed call's message (check=False)

    # ---- setup ----

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        t0 = time.monotonic()
        self.cluster.start()
        for nd in self.nodes:
            self.names[nd.index] = json.loads(nd.http("/list")[2])["response"]["states"][0][
                "node"]["id"]
            pol = os.path.join(self.workdir, "pin-n%d.json" % nd.index)
            with open(pol, "w") as f:
                json.dump({"name": "pin-n%d" % nd.index, "mode": "permissive",
                           "node_selector": {"chaos": "n%d" % nd.index}}, f)
            self.policies[nd.index] = pol
        self.say("cluster of %d nodes up in %.1f s" % (self.n, time.monotonic() - t0))
        return self

    def stop(self):
        self.cluster.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    @property
    def nodes(self):
        return self.cluster.nodes

    def live(self):
        return [nd for nd in self.nodes if nd.running()]

    def node_named(self, name):
        return [nd for nd in self.nodes if self.names[nd.index] == name][0]

    def cli(self, node, verb, *args, timeout=150):
        return node.cli("cluster", verb, "--grpc-bind-addr", node.grpc_addr, *args,
                        timeout=timeout)

    # ---- workloads ----

    def spawn(self, via=None, on=None, image="web", check=True, timeout=150, wid=None):
        """Spawns a web workload through node via (default the first live
        one), on node index `on` if given (a node_selector policy); returns
        its id, or None when check is False and the spawn failed."""
        via = via or self.live()[0]
        args = ["--image-ref", self.cluster.images[image], "--mem", "32",
                "--ports", "%d:8080" % PROXY_PORT]
        if on is not None:
            args += ["--policy", self.policies[on]]
        if wid:
            args += ["--id", wid]
            self.ever.add(wid)
        r = self.cli(via, "spawn", *args, timeout=timeout)
        if r.returncode != 0:
            self.last_error = "spawn through %s failed: %s" % (via.name, r.stderr.strip())
            if check:
                raise Failed(self.last_error)
            return None
        wid = r.stdout.split()[0]
        self.expected.add(wid)
        self.ever.add(wid)
        return wid

    def stop_workload(self, wid, via=None, check=True):
        via = via or self.live()[0]
        r = self.cli(via, "stop", "--id", wid)
        if r.returncode == 0 or "no workload" in r.stderr:
            self.expected.discard(wid)
            return True
        self.last_error = "stop of %s through %s failed: %s" % (wid, via.name, r.stderr.strip())
        if check:
            raise Failed(self.last_error)
        return False

    def spread(self, count):
        """count web workloads, placed round-robin on the nodes (by their
        tag: the default policy orders by score, not load, and may well put
        them all on one node)."""
        for k in range(count):
            # asked again when it fails: a dry run answers within 5 s,
            # which a freshly started cluster on a loaded machine may miss
            on = self.nodes[k % self.n].index
            hctest.wait_for("workload %d spawned on n%d" % (k + 1, on),
                            lambda: self.spawn(on=on, check=False), timeout=120, interval=2)
        self.settle("initial workloads")

    def owners(self, view=None):
        """{id: [owners]} as the first live node sees it."""
        return view if view is not None else (listing(self.live()[0]) or {})

    def local_ids(self, node):
        """Workload ids node's own containerd holds (any state), by the
        local CLI: what really exists there, whatever the node announces."""
        r = node.local_cli("list", "--json", timeout=60)
        if r.returncode != 0:
            raise Failed("%s: hypercore list: %s" % (node.name, r.stderr.strip()))
        return [w["id"] for w in json.loads(r.stdout)]

    # ---- the checks ----

    def _views_ok(self):
        """None when every live node lists each expected workload exactly
        once, on a live node, and nothing else; else what is wrong."""
        live = self.live()
        live_names = {self.names[nd.index] for nd in live}
        for nd in live:
            view = listing(nd)
            if view is None:
                return "%s does not answer /list" % nd.name
            for wid in self.expected:
                owners = view.get(wid, [])
                if len(owners) != 1:
                    return "%s lists %s on %d nodes %s" % (nd.name, wid, len(owners), owners)
                if owners[0] not in live_names:
                    return "%s lists %s on %s, which is down" % (nd.name, wid, owners[0])
            extra = set(view) - self.expected
            if extra & self.ever:
                return "%s still lists %s" % (nd.name, sorted(extra & self.ever))
        return None

    def _served_ok(self):
        for nd in self.live():
            for wid in sorted(self.expected):
                if not answers(nd, wid):
                    return "%s does not serve %s" % (nd.name, wid)
        return None

    def _routes_ok(self):
        """No route on a live node to a node that is down (by its name or
        its address), and every expected workload routed."""
        dead = [nd for nd in self.nodes if not nd.running()]
        dead_names = {self.names[nd.index] for nd in dead}
        dead_addrs = {nd.addr for nd in dead}
        for nd in self.live():
            r = nd.cli("routes", "--json", "--bpf-pin-dir", nd.pin_dir)
            if r.returncode != 0:
                return "%s: routes: %s" % (nd.name, r.stderr.strip())
            routes = json.loads(r.stdout)["routes"]
            for x in routes:
                if x.get("node") in dead_names or x.get("backend") in dead_addrs:
                    return "%s routes %s:%s to %s (%s), which is down" % (
                        nd.name, x["host"], x["port"], x.get("node"), x.get("backend"))
            hosts = {x["host"] for x in routes}
            if not self.expected <= hosts:
                return "%s has no route for %s" % (nd.name, sorted(self.expected - hosts))
            if (hosts - self.expected) & self.ever:
                return "%s still routes %s" % (nd.name, sorted((hosts - self.expected) & self.ever))
        return None

    def healthy(self):
        """None when the cluster is as it should be; else the first problem."""
        return self._views_ok() or self._routes_ok() or self._served_ok()

    def wait_healthy(self, what, since, timeout=RECOVER_TIMEOUT):
        """Polls healthy() until it holds; returns the seconds from since."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.healthy()
            except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
                last = "%s: %s" % (type(e).__name__, e)
            if last is None:
                return time.monotonic() - since
            time.sleep(0.25)
        raise Failed("%s: not recovered after %d s: %s" % (what, timeout, last))

    def settle(self, what):
        took = self.wait_healthy(what, time.monotonic())
        self.check_leaks(what)
        return took

    def _node_leaks(self, nd, local):
        """What node nd holds beyond its local workloads (ids), as a list."""
        problems = []
        n = len(local)
        # containerd: a sandbox and a container per workload, nothing else
        held = self.local_ids(nd)
        if sorted(held) != sorted(local):
            problems.append("containerd holds %s, the node announces %s" % (sorted(held),
                                                                           sorted(local)))
        r = subprocess.run(["ctr", "--address", nd.socket, "-n", "k8s.io", "containers", "ls",
                            "-q"], capture_output=True, text=True, timeout=60)
        ctrs = [x for x in r.stdout.split() if x]
        if r.returncode == 0 and len(ctrs) != 2 * n:
            problems.append("%d containerd containers for %d workloads" % (len(ctrs), n))
        # veths: eth0 and one per workload
        r = nd.ns_run("ip", "-o", "link", "show", "type", "veth")
        veths = [x for x in r.stdout.splitlines() if " eth0@" not in x]
        if len(veths) != n:
            problems.append("%d workload veths for %d workloads" % (len(veths), n))
        nets = [x for d in CRI_NETNS for x in glob.glob(os.path.join(nd.run_dir, d, "cni-*"))]
        if len(nets) != n:
            problems.append("%d CNI netns for %d workloads" % (len(nets), n))
        leases = [p for p in glob.glob(os.path.join(nd.state_dir, "cni-ipam", "*", "*"))
                  if os.path.basename(p)[0].isdigit() and "last_reserved" not in p]
        if len(leases) != n:
            problems.append("%d CNI IP leases for %d workloads" % (len(leases), n))
        # BPF: one entry per local workload in the per-workload maps, one
        # route per workload and port in the cluster
        for m, want in (("hc_workloads", n), ("hc_wl_stats", n), ("hc_services", n),
                        ("hc_routes", len(self.expected))):
            r = subprocess.run(["bpftool", "-j", "map", "dump", "pinned",
                                os.path.join(nd.pin_dir, m)], capture_output=True, text=True,
                               timeout=60)
            if r.returncode == 0:
                got = len(json.loads(r.stdout or "[]"))
                if got != want:
                    problems.append("%s has %d entries, want %d" % (m, got, want))
        # the agent's own fds and threads
        fds, threads, _ = proc_counts(nd.proc.pid)
        base = self.baseline.setdefault(nd.proc.pid, (fds, threads))
        if fds > base[0] + FD_SLACK or threads > base[1] + THREAD_SLACK:
            problems.append("agent holds %d fds and %d threads (first %d and %d)"
                            % (fds, threads, base[0], base[1]))
        return problems

    def leaks(self):
        """{node name: [problems]} over the live nodes, plus workload
        cgroups (shared by the nodes of this machine) of ids that no longer
        run."""
        out = {}
        view = listing(self.live()[0]) or {}
        for nd in self.live():
            local = [w for w, owners in view.items() if owners == [self.names[nd.index]]]
            p = self._node_leaks(nd, local)
            if p:
                out[nd.name] = p
        # cgroups are the machine's, shared by the nodes: a node that is down
        # keeps what it held until it is back (its shims run on)
        gone = [w for w in self.ever - self.expected if os.path.isdir(os.path.join(CGROUP_PIDS, w))]
        if gone and len(self.live()) == self.n:
            out["cgroups"] = ["cgroups of stopped workloads remain: %s" % gone]
        return out

    def check_leaks(self, what, timeout=60):
        """Waits (a stop finishes on a worker) until nothing leaks."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.leaks()
            if not got:
                return
            if time.monotonic() > deadline:
                raise Failed("%s: leaked: %s" % (what, json.dumps(got, indent=1)))
            time.sleep(1)

    # ---- faults ----

    def owner_node(self, wid):
        owners = self.owners().get(wid, [])
        return self.node_named(owners[0]) if len(owners) == 1 else None

    def busiest(self, exclude=()):
        """The live node owning most workloads (ties: lowest index), never
        node 1 unless it is the only choice."""
        view = hctest.wait_for("every workload listed", lambda: (lambda v: v if v and all(
            len(v.get(w, [])) == 1 for w in self.expected) else None)(self.owners()), 60)
        count = {nd.index: 0 for nd in self.live() if nd.index not in exclude}
        for owners in view.values():
            for o in owners:
                nd = self.node_named(o)
                if nd.index in count:
                    count[nd.index] += 1
        # node 1 last among the owners, but before a node owning nothing:
        # after respawns node 1 may hold every workload
        order = sorted(count, key=lambda i: (not count[i], i == 1, -count[i], i))
        if not count[order[0]]:
            raise Failed("no live node owns a workload: %s" % view)
        return self.cluster.node(order[0])

    def kill(self, nd, sig=signal.SIGKILL):
        mine = [w for w, o in self.owners().items() if o == [self.names[nd.index]]]
        self.say("  SIGKILL %s (pid %d), owner of %d workloads" % (nd.name, nd.proc.pid,
                                                                   len(mine)))
        nd.kill(sig)

    def restart(self, nd, env=None):
        """Starts a stopped (or killed) node again with its state dir."""
        if nd.running():
            nd.stop()
        nd.env = dict(env or {})
        nd.start(timeout=180)

    def heal(self, what, nodes=()):
        """Brings back nodes, waits until all is well on every node; returns
        the seconds it took."""
        t0 = time.monotonic()
        for nd in nodes:
            if not nd.running():
                self.restart(nd)
        self.cluster.wait_members(timeout=RECOVER_TIMEOUT)
        took = self.wait_healthy(what + " (healed)", t0)
        self.check_leaks(what + " (healed)")
        return took

    def record(self, name, recover, heal):
        self.results.append((name, recover, heal))
        self.say("%-28s recovered in %6.1f s, healed in %6.1f s" % (name, recover, heal))

    # partitions: bridge-level drops in the switch netns, so both directions
    # and every protocol between the two groups go, as a cut link would

    def partition(self, group):
        """Cuts the nodes of group (indices) off from the others."""
        a = [self.cluster.node(i).addr for i in group]
        b = [nd.addr for nd in self.nodes if nd.index not in group]
        rules = "table bridge hcchaos {\n chain cut {\n  type filter hook forward priority 0;\n"
        rules += "  ip saddr { %s } ip daddr { %s } drop\n" % (", ".join(a), ", ".join(b))
        rules += "  ip saddr { %s } ip daddr { %s } drop\n }\n}\n" % (", ".join(b), ", ".join(a))
        subprocess.run(["nsenter", "--net=/run/netns/%s" % self.cluster.switch_ns, "nft", "-f",
                        "-"], input=rules, text=True, check=True, capture_output=True)

    def unpartition(self):
        subprocess.run(["nsenter", "--net=/run/netns/%s" % self.cluster.switch_ns, "nft",
                        "delete", "table", "bridge", "hcchaos"], capture_output=True)

    def run(self, name, scenario):
        """Runs one scenario from a healthy cluster; records its times."""
        self.say("scenario %s" % name)
        try:
            scenario(self)
        finally:
            self.unpartition()


# ---- the scenarios: each starts and ends with a healthy cluster ----

def kill_one(ch):
    """SIGKILL of the node with most workloads; survivors respawn them."""
    victim = ch.busiest()
    t0 = time.monotonic()
    ch.kill(victim)
    rec = ch.wait_healthy("kill_one", t0)
    ch.check_leaks("kill_one")
    ch.record("kill_one", rec, ch.heal("kill_one", [victim]))


def kill_two(ch):
    """Two nodes SIGKILLed at once (of 5: three survive)."""
    a = ch.busiest()
    b = ch.busiest(exclude=(a.index,))
    t0 = time.monotonic()
    ch.kill(a)
    ch.kill(b)
    rec = ch.wait_healthy("kill_two", t0)
    ch.check_leaks("kill_two")
    ch.record("kill_two", rec, ch.heal("kill_two", [a, b]))


def kill_mid_spawn(ch):
    """The node a spawn is placed on is SIGKILLed while it spawns: the spawn
    fails or lands elsewhere; either way the workload runs at most once."""
    victim = ch.busiest()
    via = [nd for nd in ch.live() if nd is not victim][0]
    result = {}

    def spawn():
        result["id"] = ch.spawn(via=via, on=victim.index, check=False, wid=wid)

    wid = str(uuid.uuid4())
    for attempt in range(5):
        mark = len(victim.log())
        th = threading.Thread(target=spawn)
        th.start()
        # the owner's first line naming the id comes in the middle of the
        # spawn (the sandbox exists, the container does not run yet); a
        # spawn that never reached it (its dry run unanswered on a loaded
        # machine) is asked again
        hctest.wait_for("the spawn under way on %s, or over" % victim.name,
                        lambda: wid in victim.log()[mark:] or not th.is_alive(), timeout=200,
                        interval=0.01)
        if wid in victim.log()[mark:]:
            break
        if result.get("id"):
            raise Failed("kill_mid_spawn: the spawn on %s logged nothing there" % victim.name)
        ch.say("  the spawn did not reach %s; again" % victim.name)
    else:
        raise Failed("kill_mid_spawn: no spawn reached %s" % victim.name)
    t0 = time.monotonic()
    ch.kill(victim)
    th.join(200)
    rec = ch.wait_healthy("kill_mid_spawn", t0)
    ch.check_leaks("kill_mid_spawn")
    ch.say("  the spawn %s" % ("answered " + result["id"] if result.get("id") else "failed"))
    ch.record("kill_mid_spawn", rec, _heal_after_spawn_crash(ch, "kill_mid_spawn", victim, wid))


def _heal_after_spawn_crash(ch, what, victim, wid, adopted=None):
    """Brings victim back after it died in the middle of spawning wid;
    returns the seconds until all is well. When the spawn got no answer,
    the workload may come back with the node: adopted says whether it must
    (True: its container had started), must not (False: a half-made
    sandbox is removed) or may (None: a kill the test timed). One that came
    back runs exactly once, is served everywhere, and is then stopped; one
    that did not has left nothing (the checks of heal)."""
    if wid in ch.expected:  # the spawn was answered: an ordinary workload
        return ch.heal(what, [victim])
    t0 = time.monotonic()
    ch.restart(victim)
    ch.cluster.wait_members(timeout=RECOVER_TIMEOUT)
    mine = [ch.names[victim.index]]
    if adopted is None:
        try:  # the agent's first looks at its runtime
            hctest.wait_for("%s adopted" % wid, lambda: ch.owners().get(wid) == mine, 20)
            adopted = True
        except AssertionError:
            adopted = False
    elif adopted:
        hctest.wait_for("%s adopted by %s" % (wid, victim.name),
                        lambda: ch.owners().get(wid) == mine, timeout=RECOVER_TIMEOUT)
    if adopted:
        ch.expected.add(wid)
    took = ch.wait_healthy(what + " (healed)", t0)
    ch.check_leaks(what + " (healed)")
    if adopted:
        ch.say("  %s came back with %s (adopted); stopping it" % (wid, victim.name))
        ch.stop_workload(wid)
        ch.settle(what + ": the adopted workload stopped")
    return took


def partition_one(ch):
    """One node cut off: the others respawn its workloads, it respawns
    theirs; on heal the duplicates are stopped."""
    victim = ch.busiest()
    t0 = time.monotonic()
    ch.partition([victim.index])
    # the majority side alone must recover (the cut node cannot be reached)
    saved = victim.running
    victim.running = lambda: False
    try:
        rec = ch.wait_healthy("partition_one", t0)
    finally:
        victim.running = saved
    ch.unpartition()
    ch.record("partition_one", rec, ch.heal("partition_one"))


def partition_half(ch):
    """Nodes 1-2 against 3-5: each side respawns the other's workloads;
    on heal every workload runs once again."""
    small = [1, 2]
    t0 = time.monotonic()
    ch.partition(small)
    saved = {}
    for i in small:
        nd = ch.cluster.node(i)
        saved[i] = nd.running
        nd.running = (lambda: False)
    try:
        rec = ch.wait_healthy("partition_half", t0)
    finally:
        for i in small:
            ch.cluster.node(i).running = saved[i]
    ch.unpartition()
    ch.record("partition_half", rec, ch.heal("partition_half"))


def containerd_killed(ch):
    """The embedded containerd of a node is SIGKILLed: the agent restarts
    it; the workloads (in their shims) keep running and stay announced."""
    victim = ch.busiest()
    before = metric(victim, "hypercore_containerd_restarts_total") or 0
    cds = [p for p in hctest.descendants(victim.proc.pid)
           if os.path.basename((open("/proc/%d/cmdline" % p, "rb").read().split(b"\0")[0]
                                or b"").decode()) == "containerd"]
    if not cds:
        raise Failed("no containerd under %s" % victim.name)
    t0 = time.monotonic()
    ch.say("  SIGKILL containerd of %s (pid %d)" % (victim.name, cds[0]))
    os.kill(cds[0], signal.SIGKILL)
    hctest.wait_for("containerd restarted on %s" % victim.name,
                    lambda: (metric(victim, "hypercore_containerd_restarts_total") or 0) > before
                    and metric(victim, "hypercore_containerd_up") == 1, timeout=60)
    rec = ch.wait_healthy("containerd_killed", t0)
    # a spawn and a stop on that node work again (retried: a dry run
    # answers within 5 s, which a loaded machine may miss once)
    wid = hctest.wait_for("a spawn on %s" % victim.name,
                          lambda: ch.spawn(on=victim.index, check=False), timeout=120,
                          interval=2)
    ch.wait_healthy("containerd_killed: spawn after", time.monotonic())
    ch.stop_workload(wid)
    ch.check_leaks("containerd_killed")
    ch.record("containerd_killed", rec, ch.heal("containerd_killed"))


def _fault_spawn(ch, point):
    victim = ch.busiest()
    via = [nd for nd in ch.live() if nd is not victim][0]
    ch.restart(victim, env={"HYPERCORE_FAULT": point + ":kill"})
    ch.cluster.wait_members(timeout=RECOVER_TIMEOUT)
    ch.wait_healthy("%s armed" % point, time.monotonic())
    result = {}
    wid = str(uuid.uuid4())
    for attempt in range(5):
        # a spawn that fails before it reaches the victim (its dry run
        # unanswered on a loaded machine) is asked again
        th = threading.Thread(target=lambda: result.__setitem__(
            "id", ch.spawn(via=via, on=victim.index, check=False, wid=wid)))
        th.start()
        hctest.wait_for("%s to die at %s or the spawn to end" % (victim.name, point),
                        lambda: victim.proc.poll() is not None or not th.is_alive(),
                        timeout=200)
        if victim.proc.poll() is not None:
            break
        ch.say("  the spawn did not reach %s (%s); again" % (victim.name, result.get("id")))
        if result.get("id"):
            raise Failed("%s: the spawn on %s succeeded without passing %s"
                         % (point, victim.name, point))
        # a peer may still take the restarted victim for leaving (refuted
        # within a push/pull round, docs/operations.md): not at once again
        time.sleep(10)
    else:
        raise Failed("%s: no spawn reached %s" % (point, victim.name))
    t0 = time.monotonic()
    victim.kill()  # reaps it, closes its log
    if "fault point %s: kill" % point not in victim.log():
        raise Failed("%s died, but not at %s" % (victim.name, point))
    th.join(200)
    rec = ch.wait_healthy(point, t0)
    ch.say("  the spawn %s" % ("answered " + result["id"] if result.get("id") else "failed"))
    # a container that was started is adopted when the agent is back;
    # anything less is removed
    heal = _heal_after_spawn_crash(ch, point, victim, wid,
                                   point in ("spawn:after_start", "spawn:before_announce"))
    ch.record(point, rec, heal)


def _fault_stop(ch, point):
    victim = ch.busiest()
    via = [nd for nd in ch.live() if nd is not victim][0]
    ch.restart(victim, env={"HYPERCORE_FAULT": point + ":kill"})
    ch.cluster.wait_members(timeout=RECOVER_TIMEOUT)
    wid = hctest.wait_for("a spawn on %s" % victim.name,
                          lambda: ch.spawn(via=via, on=victim.index, check=False),
                          timeout=200, interval=2)
    ch.wait_healthy("%s armed" % point, time.monotonic())
    r = {}
    th = threading.Thread(target=lambda: r.setdefault("ok", ch.stop_workload(wid, via=via,
                                                                            check=False)))
    th.start()
    hctest.wait_for("%s to die at %s" % (victim.name, point),
                    lambda: victim.proc.poll() is not None, timeout=120)
    t0 = time.monotonic()
    victim.kill()
    if "fault point %s: kill" % point not in victim.log():
        raise Failed("%s died, but not at %s" % (victim.name, point))
    th.join(200)
    # with its node down, the workload is respawned or its stop is done;
    # either way the cluster is consistent
    if not r.get("ok"):
        ch.say("  the stop got no answer")
    rec = ch.wait_healthy(point, t0)
    heal = ch.heal(point, [victim])
    # a stop asked again (an operator whose stop failed) finishes the job
    if wid in ch.owners():
        ch.expected.add(wid)
        ch.stop_workload(wid)
        ch.settle(point + ": stopped again")
    ch.record(point, rec, heal)


def fault_points(ch, points=None):
    for p in points or SPAWN_POINTS + STOP_POINTS:
        ch.say("scenario fault %s" % p)
        (_fault_spawn if p.startswith("spawn:") else _fault_stop)(ch, p)


def node_returns(ch):
    """A node killed, its workloads respawned, then back with the same
    state dir: it adopts its old copies, the duplicates stop, once each."""
    victim = ch.busiest()
    # the victim's counter starts again from 0 with its new process
    before = sum(metric(nd, "hypercore_duplicates_stopped_total") or 0 for nd in ch.live()
                 if nd is not victim)
    t0 = time.monotonic()
    ch.kill(victim)
    rec = ch.wait_healthy("node_returns", t0)
    heal = ch.heal("node_returns", [victim])
    after = sum(metric(nd, "hypercore_duplicates_stopped_total") or 0 for nd in ch.live())
    ch.say("  duplicates stopped: %d" % (after - before))
    if after <= before:
        raise Failed("node_returns: no duplicate was stopped (was anything adopted?)")
    ch.record("node_returns", rec, heal)


def clock_back(ch, shim, step_ms=-10 * 60 * 1000):
    """A node's wall clock steps back 10 minutes, first while it runs, then
    across a restart (as a node whose RTC lost time would boot): its
    states must still be taken, so its workloads stay routed everywhere."""
    victim = ch.busiest()
    off = os.path.join(ch.workdir, "clock-offset-%s" % victim.name)
    with open(off, "w") as f:
        f.write("0\n")
    ch.restart(victim, env={"LD_PRELOAD": shim, "HC_CLOCK_OFFSET_FILE": off})
    ch.cluster.wait_members(timeout=RECOVER_TIMEOUT)
    ch.wait_healthy("clock_back armed", time.monotonic())
    t0 = time.monotonic()
    with open(off, "w") as f:
        f.write("%d\n" % step_ms)
    ch.say("  %s's clock steps %+d s" % (victim.name, step_ms // 1000))
    # a change on it must still reach everyone: spawn there and stop there
    wid = ch.spawn(on=victim.index)
    rec = ch.wait_healthy("clock_back (running)", t0)
    ch.stop_workload(wid)
    ch.wait_healthy("clock_back (stop)", time.monotonic())
    # the agent crashes and its supervisor starts it again at once, the
    # clock still behind: too fast for gossip to call the node failed, so
    # the others still hold its last state, versioned by the old clock
    t1 = time.monotonic()
    victim.kill()
    ch.restart(victim, env={"LD_PRELOAD": shim, "HC_CLOCK_OFFSET_FILE": off})
    # asked again while the others do not know it back yet (gossip may have
    # found it failed meanwhile: "no node satisfies" until its state comes)
    wid = hctest.wait_for("a spawn on %s" % victim.name,
                          lambda: ch.spawn(on=victim.index, check=False), timeout=120,
                          interval=2)
    rec2 = ch.wait_healthy("clock_back (restarted behind)", t1)
    ch.stop_workload(wid)
    ch.check_leaks("clock_back")
    with open(off, "w") as f:
        f.write("0\n")
    t2 = time.monotonic()
    ch.restart(victim)
    ch.heal("clock_back")
    ch.say("  restart with the clock behind: recovered in %.1f s" % rec2)
    ch.record("clock_back", rec, time.monotonic() - t2)


def scenarios(shim=None):
    """[(name, function)] in the order make chaos runs them."""
    out = [("kill_one", kill_one), ("kill_two", kill_two), ("kill_mid_spawn", kill_mid_spawn),
           ("partition_one", partition_one), ("partition_half", partition_half),
           ("containerd_killed", containerd_killed), ("node_returns", node_returns)]
    out += [("fault_" + p.replace(":", "_"), (lambda p: lambda ch: _fault_spawn(ch, p))(p))
            for p in SPAWN_POINTS]
    out += [("fault_" + p.replace(":", "_"), (lambda p: lambda ch: _fault_stop(ch, p))(p))
            for p in STOP_POINTS]
    if shim:
        out.append(("clock_back", lambda ch: clock_back(ch, shim)))
    return out
