#!/usr/bin/python3
"""What operators watch a cluster with: examples/monitoring (the Prometheus
scrape config, the alert rules, the Grafana dashboard) and `hypercore
cluster top`, against live agents.

Two agents in a network namespace of the run's own (tests/lib/proxytest.py's
Env): "a" with the data plane and the proxy (on a veth pair that carries no
traffic), and "b" without a data plane, joined to it. A static route on a
sends a host name to a backend of this process, so the proxy's per-route
counters move while a thread sends requests through it.

Checked: promtool accepts the rules and the scrape config; every metric the
rules and the dashboard name is one the agents really export (families that
only a node with the runtime exports are checked against agent/runtime's
source instead, and listed here); `cluster top --once` shows both nodes and
the route's rate; in tmux, the live view draws, sorts on a key, quits on q,
on ^C and on SIGTERM with the terminal's modes restored; without a terminal
it prints frames without escape codes.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
from proxytest import PREFIX, VETH, Env  # noqa: E402
from hctest import wait_for  # noqa: E402

MON = os.path.join(hctest.ROOT, "examples", "monitoring")
RULES = os.path.join(MON, "hypercore-alerts.yml")
CONFIG = os.path.join(MON, "prometheus.yml")
DASHBOARD = os.path.join(MON, "hypercore-dashboard.json")
HOST = "web.test"

# Series Prometheus makes itself, not the agent.
PROMETHEUS_OWN = {"up"}
# PromQL words that look like metric names in an expression.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "by", "without", "rate", "increase", "irate", "topk",
    "bottomk", "clamp_min", "clamp_max", "histogram_quantile", "ignoring", "on", "bool",
    "and", "or", "unless", "count", "group_left", "group_right", "label_values",
    "offset", "abs", "delta", "deriv", "le", "Inf",
}


def metric_names(expr):
    """The metric names an expression uses: identifiers that are no PromQL
    word, no label name (followed by =, =~, !=) and not inside quotes,
    braces or brackets."""
    text = re.sub(r"label_values\(([^,()]+),[^)]*\)", r"\1", expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        if word in PROMQL_WORDS or text[m.start() - 1:m.start()].isdigit():
            continue
        names.add(word)
    return names


def rule_exprs():
    """Every expr of the rules file, read with promtool's own parser when
    there is no YAML module: the file is simple enough to read by its
    indentation ("expr:" then a block or a one-line value)."""
    exprs, lines = [], open(RULES).read().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        if m.group(2) not in ("|", ">"):
            exprs.append(m.group(2))
            continue
        block = []
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > len(m.group(1))):
            block.append(lines[i].strip())
            i += 1
        exprs.append(" ".join(block))
    return exprs


def dashboard_exprs():
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets", ()))
            walk(p.get("panels", ()))
    d = json.load(open(DASHBOARD))
    walk(d["panels"])
    for v in d.get("templating", {}).get("list", ()):
        q = v.get("query")
        if isinstance(q, dict):
            out.append(q["query"])
    return out


def runtime_only_names():
    """Families only the runtime module exports (a node without containerd
    has none of them), from their hc_metrics_family calls."""
    names = set()
    d = os.path.join(hctest.ROOT, "agent", "runtime")
    for f in os.listdir(d):
        if f.endswith(".c"):
            names |= set(re.findall(r'hc_metrics_family\(\s*\w+,\s*"([a-z_]+)"',
                                    open(os.path.join(d, f)).read()))
    return names


def exported(agent):
    """Family names (# TYPE) and sample names of an agent's /metrics."""
    status, _, body = agent.http("/metrics")
    assert status == 200, body
    names = set()
    for line in body.decode().splitlines():
        m = re.match(r"^# TYPE (\S+) ", line) or re.match(r"^([A-Za-z_:][\w:]*)[{ ]", line)
        if m:
            names.add(m.group(1))
    return names


class Traffic:
    """Requests through the proxy to HOST from a thread, until stopped."""

    def __init__(self, port):
        self.port, self.sent, self.stopping = port, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/", headers={"Host": HOST})
                c.getresponse().read()
                c.close()
                self.sent += 1
            except OSError:
                pass
            self.stopping.wait(0.02)

    def stop(self):
        self.stopping.set()
        self.thread.join(10)


class Tmux:
    """A tmux server of this test's own (its socket name), so it is started
    in this namespace and never meets a user's."""

    def __init__(self):
        self.sock = "%s-top-%d" % (PREFIX, time.monotonic_ns() % 100000)

    def run(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                              timeout=10)

    def start(self, command):
        r = self.run("new-session", "-d", "-x", "160", "-y", "40", command)
        assert r.returncode == 0, r.stderr

    def screen(self):
        return self.run("capture-pane", "-p").stdout

    def keys(self, *keys):
        self.run("send-keys", *keys)

    def kill(self):
        self.run("kill-server")
        # the server leaves its socket file behind
        path = os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), "tmux-%d" % os.getuid(),
                            self.sock)
        if os.path.exists(path):
            os.unlink(path)


class MonitoringTest(hctest.TestCase):
    a = b = workdir = pin = None
    route_port = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = tempfile.mkdtemp(prefix="hc-test-monitoring-")

    @classmethod
    def tearDownClass(cls):
        for agent in (cls.b, cls.a):
            if agent is not None:
                agent.kill()
        if cls.pin:
            hctest.run_cli("dataplane", "cleanup", "--bpf-pin-dir", cls.pin,
                           "--dataplane-iface", VETH)
        shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    def cluster(self):
        """Agents a (data plane, proxy, a static route) and b, started once."""
        Env.ensure(self)
        cls = type(self)
        if cls.a is not None:
            return cls.a, cls.b
        cls.pin = "/sys/fs/bpf/%s-mon" % PREFIX
        cls.a = hctest.Agent(cls.workdir, "a", dataplane=True, extra_args=[
            "--dataplane-iface", VETH, "--bpf-pin-dir", cls.pin,
            "--proxy-bind-addr", "127.0.0.1"]).start()
        cls.b = hctest.Agent(cls.workdir, "b", extra_args=cls.a.join_args()).start()
        cls.b.api_token = cls.a.token()  # one token for the cluster, as join-token gives
        cls.route_port = hctest.free_port()
        r = hctest.run_cli("routes", "add", "--host", HOST, "--port", str(cls.route_port),
                           "--backend", Env.http.addr, "--bpf-pin-dir", cls.pin)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("both nodes in a's list", lambda: len(
            cls.a.http_json("/list")[1]["response"].get("states", [])) == 2, timeout=30)
        return cls.a, cls.b

    def top(self, *args, **kw):
        a, _ = self.cluster()
        return a.cli("cluster", "top", "--http-bind-addr", "127.0.0.1:%d" % a.http_port,
                     *args, **kw)

    # -- examples/monitoring --

    def test_rules_and_config_pass_promtool(self):
        if shutil.which("promtool") is None:
            self.skipTest("promtool is not installed (Debian's prometheus; tools/deps.sh)")
        r = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"SUCCESS: \d+ rules found")
        # check config wants the token file to exist: a copy pointing at one
        with tempfile.TemporaryDirectory() as d:
            token = os.path.join(d, "token")
            with open(token, "w") as f:
                f.write("ro-test\n")
            text = open(CONFIG).read()
            self.assertIn("credentials_file: /etc/prometheus/hypercore-token", text)
            with open(os.path.join(d, "prometheus.yml"), "w") as f:
                f.write(text.replace("/etc/prometheus/hypercore-token", token))
            shutil.copy(RULES, d)
            r = subprocess.run(["promtool", "check", "config", os.path.join(d, "prometheus.yml")],
                               capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_every_metric_named_is_exported(self):
        a, b = self.cluster()
        traffic = Traffic(self.route_port)
        try:
            wait_for("requests through the proxy", lambda: traffic.sent >= 3)
        finally:
            traffic.stop()
        live = exported(a) | exported(b)
        runtime = runtime_only_names()
        # the note must stay true: these are not on a node without the runtime
        self.assertFalse(runtime & live, "families exported without the runtime")
        used = {}
        for where, exprs in (("rules", rule_exprs()), ("dashboard", dashboard_exprs())):
            self.assertGreater(len(exprs), 5, where)
            for e in exprs:
                for n in metric_names(e):
                    used.setdefault(n, set()).add(where)
        for family in ("hypercore_cluster_members", "hypercore_broadcast_skipped_total",
                       "hypercore_proxy_errors_total", "hypercore_containerd_up",
                       "hypercore_capacity_vcpus",
                       "hypercore_workload_network_dropped_packets_total"):
            self.assertIn(family, used, "the issue's alerts: %s" % family)
        unknown = {n: sorted(w) for n, w in used.items()
                   if n not in live and n not in runtime and n not in PROMETHEUS_OWN}
        self.assertEqual(unknown, {}, "named but not exported")

    # -- cluster top --

    def test_top_once_shows_nodes_and_route_rates(self):
        a, b = self.cluster()
        traffic = Traffic(self.route_port)
        try:
            wait_for("requests through the proxy", lambda: traffic.sent >= 3)
            r = self.top("--once")
        finally:
            traffic.stop()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\033", r.stdout)
        lines = r.stdout.splitlines()
        self.assertIn("2 nodes", lines[0])
        for agent in (a, b):
            row = [x for x in lines[1:] if ("127.0.0.1:%d" % agent.http_port) in x]
            self.assertEqual(len(row), 1, r.stdout)
            self.assertIn(" alive ", row[0])
        route = [x.split() for x in lines if x.startswith(HOST + " ")]
        self.assertEqual(len(route), 1, r.stdout)
        self.assertGreater(float(route[0][1].rstrip("k")), 0, r.stdout)

    def test_top_needs_the_token(self):
        a, _ = self.cluster()
        token = a.token()
        r = self.top("--once", token=token[:-1] + ("A" if token[-1] != "A" else "B"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 401", r.stderr)

    def test_top_without_a_terminal_prints_plain_frames(self):
        a, _ = self.cluster()
        p = subprocess.Popen([hctest.HC_BIN, "cluster", "top", "--http-bind-addr",
                              "127.0.0.1:%d" % a.http_port, "--token", a.token()],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            first = p.stdout.readline()
            self.assertIn("hypercore cluster top", first)
            self.assertNotIn("q: quit", first)
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=10)
        finally:
            hctest.end_process(p)
        self.assertEqual(p.returncode, 0)
        self.assertNotIn("\033", first + out)

    def test_top_in_tmux_sorts_quits_and_restores_the_terminal(self):
        if shutil.which("tmux") is None:
            self.skipTest("tmux is not installed (tools/deps.sh)")
        a, _ = self.cluster()
        argv = "%s cluster top --http-bind-addr 127.0.0.1:%d --token %s" % (
            hctest.HC_BIN, a.http_port, a.token())
        # How each run ends: q, ^C, SIGTERM from outside.
        for how in ("q", "C-c", "SIGTERM"):
            with self.subTest(how=how):
                tmux = Tmux()
                try:
                    # the shell writes top's pid (exec keeps it), then its
                    # exit status and the terminal's modes after it
                    pidfile = os.path.join(self.workdir, "top.pid")
                    tmux.start("sh -c 'echo $$ > %s; exec %s'; echo EXIT=$?; stty -a; "
                               "sleep 60" % (pidfile, argv))
                    screen = wait_for("top's first frame", lambda: (
                        lambda s: s if "127.0.0.1:%d" % a.http_port in s else None)(
                            tmux.screen()))
                    self.assertIn("sort: name", screen)
                    self.assertIn("q: quit", screen)
                    if how == "q":
                        tmux.keys("r")
                        wait_for("the sort to change", lambda: "sort: req/s" in tmux.screen())
                        tmux.keys("q")
                    elif how == "C-c":
                        tmux.keys("C-c")
                    else:
                        with open(pidfile) as f:
                            os.kill(int(f.read()), signal.SIGTERM)
                    after = wait_for("top to exit", lambda: (
                        lambda s: s if "EXIT=" in s and "speed" in s else None)(tmux.screen()))
                    self.assertIn("EXIT=0", after)
                    modes = after.split()
                    self.assertIn("icanon", modes, after)
                    self.assertIn("echo", modes, after)
                    self.assertNotIn("hypercore cluster top", after)  # the main screen is back
                finally:
                    tmux.kill()


if __name__ == "__main__":
    hctest.main()
