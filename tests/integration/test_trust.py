#!/usr/bin/python3
"""Trust (issue 15) end to end: agents in one network namespace, callers in
another (curl, the CLI, and the independent Python gRPC client) reaching
them over a veth pair. Every gRPC method and HTTP endpoint without a token,
with a wrong one, with the read-only one and with the admin one; the token
sources of the CLI; env values redacted in lists; a second node joining with
`cluster join-token`'s string and none without a key; a wrong key and a
plaintext `serf agent` kept out of the cluster; reserved event and query
names refused with nothing sent; a browser-style form POST to /stop refused;
refusals counted; --api-auth none; token rotation by SIGHUP. Namespaces,
veths and processes are removed also on failure."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import grpcstubs  # noqa: E402
import hctest  # noqa: E402
import netns  # noqa: E402
import serfagent  # noqa: E402
from serfagent import SerfAgent  # noqa: E402
from hctest import metric_values, wait_for  # noqa: E402

PREFIX = "hctr%d" % (os.getpid() % 100000)      # + "-srv": a namespace name
SRV_NS, CLI_NS = PREFIX + "-srv", PREFIX + "-cli"
SRV_VETH, CLI_VETH = PREFIX + "s", PREFIX + "c"  # <= 15 characters
SRV_IP, CLI_IP = "10.226.0.1", "10.226.0.2"      # a /30 that exists only in them
GRPCCALL = os.path.join(HERE, "..", "lib", "grpccall.py")
MISSING = "5b0c3c52-6a11-4c39-9a57-1f0a6b6a2f10"  # a workload id nobody has
WRONG = "0123456789abcdef" * 4                   # well-formed, accepted nowhere
# inject_workload's serf agent sends unsigned states, which an encrypted
# cluster refuses by default (IBRL enforce mode): agents it feeds take them
UNSIGNED_OK = ("--ibrl-mode", "permissive")
# The serf agents' handler: every user event and query (name, payload), one line each.
SERF_HANDLER = 'echo "$SERF_EVENT $SERF_USER_EVENT$SERF_QUERY_NAME $(cat)" >> {events}\nexit 0\n'
REFUSED_FLAGS = ("--join-token", "--cluster-encrypt", "--cluster-keyring", "--cluster-insecure")

pb = None  # cluster_pb2, loaded once (setUpModule)


def setUpModule():
    global pb
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (network namespaces)")
    for tool in ("ip", "nsenter", "curl", serfagent.SERF):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in ["/"] + os.environ.get("PATH", "").split(":")):
            raise unittest.SkipTest("%s is not installed" % tool)
    _, pb, _ = grpcstubs.load()
    topo = Topo.get()
    try:
        topo.ns("srv")
        topo.ns("cli")
        topo.link(SRV_NS, SRV_VETH, SRV_IP + "/30", CLI_NS, CLI_VETH, CLI_IP + "/30")
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    Topo.get().destroy()
    # a veth made but never moved into a namespace stays here
    for name in (SRV_VETH, CLI_VETH):
        netns.ip("link", "del", name, check=False)


class Topo:
    _it = None

    @classmethod
    def get(cls):
        if cls._it is None:
            cls._it = netns.Topology(PREFIX)
        return cls._it


# ---- callers in the client namespace ----

def curl(method, path, agent, token=None, ctype=None, data=None, headers=()):
    """(status, response headers {lower name: value}, body text) of one
    request from the client namespace to agent's HTTP API."""
    argv = ["curl", "-s", "-m", "20", "-o", "-", "-D", "/dev/stderr", "-w", "\n%{http_code}",
            "-X", method]
    if token is not None:
        argv += ["-H", "Authorization: Bearer " + token]
    if ctype is not None:
        argv += ["-H", "Content-Type: " + ctype]
    for h in headers:
        argv += ["-H", h]
    if data is not None:
        argv += ["--data-binary", data]
    argv.append("http://%s:%d%s" % (SRV_IP, agent.http_port, path))
    r = netns.run_in(CLI_NS, *argv, check=False, timeout=40)
    body, _, code = r.stdout.rpartition("\n")
    hdrs = {}
    for line in r.stderr.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            hdrs[name.strip().lower()] = value.strip()
    return (int(code) if code.isdigit() else 0), hdrs, body


def grpc_calls(agent, calls):
    """Outcomes of gRPC calls (grpccall.py's format) made from the client
    namespace by the independent Python client."""
    job = {"target": "%s:%d" % (SRV_IP, agent.grpc_port), "calls": calls}
    r = subprocess.run(netns.nsenter(CLI_NS, "/usr/bin/python3", GRPCCALL),
                       input=json.dumps(job), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("grpccall.py failed: %s" % r.stderr[-3000:])
    return json.loads(r.stdout)


def md(token=None, *extra):
    return [list(kv) for kv in grpcstubs.bearer(token)] + [list(kv) for kv in extra]


def refusals(agent):
    got = metric_values(agent, "hypercore_api_auth_refusals_total")
    return {(re.search(r'api="(\w+)"', k).group(1), re.search(r'reason="(\w+)"', k).group(1)): v
            for k, v in got.items()}


def dropped(agent, reason):
    return metric_values(agent, "hypercore_gossip_dropped_total").get(
        '{reason="%s"}' % reason, 0)


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


# ---- processes in the server namespace ----

class TrustAgent(hctest.Agent):
    """An agent in the server namespace: its APIs on every address there
    (the client namespace reaches them at SRV_IP), gossip on its loopback."""

    def __init__(self, workdir, name, extra_args=()):
        super().__init__(workdir, name, extra_args, netns=SRV_NS)

    @property
    def grpc_addr(self):
        return "0.0.0.0:%d" % self.grpc_port

    def args(self):
        return [*netns.nsenter(SRV_NS, hctest.HC_BIN), "cluster",
                "--grpc-bind-addr", "0.0.0.0:%d" % self.grpc_port,
                "--http-bind-addr", "0.0.0.0:%d" % self.http_port,
                "--cluster-bind-addr", "127.0.0.1:%d" % self.gossip_port,
                "--node-name", self.name, "--state-dir", self.state_dir,
                "--log-level", "debug", "--no-runtime", "--no-dataplane",
                "--probe-interval-ms", "500", *self.extra_args]

    @property
    def seed(self):
        return "127.0.0.1:%d" % self.gossip_port

    def local_cli(self, *args, env=None, timeout=30):
        """The CLI on the agent's own host (its namespace)."""
        e = dict(os.environ)
        e.pop("HYPERCORE_TOKEN", None)
        e.update(env or {})
        return subprocess.run(netns.nsenter(SRV_NS, hctest.HC_BIN, *args), capture_output=True,
                              text=True, timeout=timeout, env=e)

    def members(self):
        status, _, body = self.http("/members")
        assert status == 200, body
        return {m["name"]: m["status"] for m in json.loads(body)["response"]}

    def keyring(self):
        with open(os.path.join(self.state_dir, "cluster-keyring.json")) as f:
            return json.load(f)


class Trust(hctest.TestCase):
    def setUp(self):
        super().setUp()
        self.serfs = []

    def tearDown(self):
        for s in self.serfs:
            s.kill()
        super().tearDown()

    def agent(self, name="node", extra_args=(), start=True):
        a = TrustAgent(self.workdir, name, extra_args)
        self.agents.append(a)
        return a.start() if start else a

    def serf(self, name, *extra, wait_rpc=True):
        s = SerfAgent(self.workdir, name, extra, handler=SERF_HANDLER, ns=SRV_NS)
        self.serfs.append(s)
        return s.start(wait_rpc)

    def tokens(self, a):
        """The four callers: (label, token, role)."""
        return [("none", None, None), ("wrong", WRONG, None),
                ("read-only", a.read_only_token(), "ro"), ("admin", a.token(), "admin")]

    def inject_workload(self, a, env):
        """A keyed serf agent joins a's cluster and announces, as its own
        state, one workload spawned with env; returns (serf, workload id)
        once a lists it. (No runtime needed to have env values to redact.)
        The state is unsigned: a must run with UNSIGNED_OK."""
        s = self.serf("serf-peer", "-encrypt=" + a.keyring()[0], "-join=" + a.seed)
        wait_for("the serf agent in %s's members" % a.name,
                 lambda: a.members().get("serf-peer") == "alive", 30)
        wid = str(uuid.uuid4())
        state = pb.NodeStateResponse(
            node=pb.Node(id="serf-peer", ip=str(uuid.uuid4()) + "_complete"),
            workloads=[pb.WorkloadState(id=wid, source_request=pb.VmSpawnRequest(
                cores=1, memory=64, image_ref="registry.test/app:1", env=env))],
            node_addr="127.0.0.1", http_port=1, chunk_index=0, chunk_count=1, state_version=1)
        payload = state.SerializeToString()
        self.assertNotIn(b"\0", payload)  # it goes through argv
        r = s.cli("event", "-coalesce=false", "hypercore_state_broadcast", payload)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("the announced workload in %s's list" % a.name,
                 lambda: wid in a.http("/list")[2].decode(), 30)
        return s, wid

    @staticmethod
    def envs(list_doc, wid):
        for st in list_doc.get("states", []):
            for w in st.get("workloads", []):
                if w["id"] == wid:
                    return w["source_request"]["env"]
        raise AssertionError("%s not listed: %r" % (wid, list_doc))

    # ---- every method and endpoint, every kind of caller ----

    def test_grpc_every_method_by_token(self):
        a = self.agent()
        before = refusals(a)
        want = {  # method, request -> outcome for none, wrong, read-only, admin
            ("List", "{}"): ("UNAUTHENTICATED", "UNAUTHENTICATED", "OK", "OK"),
            ("Logs", json.dumps({"id": MISSING})):
                ("UNAUTHENTICATED", "UNAUTHENTICATED", "NOT_FOUND", "NOT_FOUND"),
            ("Stop", json.dumps({"id": MISSING})):
                ("UNAUTHENTICATED", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"),
            # the only node runs no workloads: an admin's spawn gets that far
            ("Spawn", json.dumps({"image_ref": "x"})):
                ("UNAUTHENTICATED", "UNAUTHENTICATED", "PERMISSION_DENIED",
                 "RESOURCE_EXHAUSTED"),
        }
        calls, keys = [], []
        for (method, req), outcomes in want.items():
            for (label, token, _), code in zip(self.tokens(a), outcomes):
                calls.append({"method": method, "request": json.loads(req),
                              "metadata": md(token)})
                keys.append((method, label, code))
        # another scheme, and a bare token, are no bearer token
        for value in ("Basic " + base64.b64encode(b"u:p").decode(), a.token()):
            calls.append({"method": "List", "metadata": [["authorization", value]]})
            keys.append(("List", "not bearer", "UNAUTHENTICATED"))
        got = grpc_calls(a, calls)
        for (method, label, code), out in zip(keys, got):
            with self.subTest(method=method, caller=label):
                self.assertEqual(out["code"], code, out)
                if code == "UNAUTHENTICATED":
                    self.assertIn("token", out["details"])
        self.assertIn(MISSING, got[keys.index(("Stop", "admin", "NOT_FOUND"))]["details"])
        after = refusals(a)
        self.assertEqual(after[("grpc", "no_token")] - before[("grpc", "no_token")], 4)
        self.assertEqual(after[("grpc", "bad_token")] - before[("grpc", "bad_token")], 6)
        self.assertEqual(after[("grpc", "read_only")] - before[("grpc", "read_only")], 2)
        self.assertRegex(a.log(), r"refused grpc /cluster\.services\.api\.ClusterService/\w+ "
                                  r"from \S*10\.226\.0\.2\S*: no bearer token")
        self.assertCleanExit(a)

    def test_http_every_endpoint_by_token(self):
        a = self.agent()
        m = self.agent("metered", extra_args=["--metrics-auth"])
        before = refusals(a)
        J = "application/json"
        cases = [  # agent, method, path, content type, body -> none, wrong, read-only, admin
            (a, "GET", "/list", None, None, (401, 401, 200, 200)),
            (a, "POST", "/spawn", J, '{"image_ref": "x"}', (401, 401, 403, 503)),
            (a, "POST", "/stop", J, '{"id": "%s"}' % MISSING, (401, 401, 403, 404)),
            (a, "GET", "/logs?id=" + MISSING, None, None, (401, 401, 404, 404)),
            (a, "GET", "/members", None, None, (401, 401, 200, 200)),
            # a read-only token may pull a state (a bad since: 400, not 403)
            (a, "GET", "/cluster/state?since=x", None, None, (401, 401, 400, 400)),
            (a, "POST", "/event?name=trust-test", None, "p", (401, 401, 403, 200)),
            (a, "POST", "/query?name=trust-test&timeout=500", None, "p", (401, 401, 403, 200)),
            (a, "GET", "/metrics", None, None, (200, 200, 200, 200)),
            (a, "GET", "/healthz", None, None, (200, 200, 200, 200)),
            (m, "GET", "/metrics", None, None, (401, 401, 200, 200)),
            (m, "GET", "/healthz", None, None, (200, 200, 200, 200)),
        ]
        counted = {"no_token": 0, "bad_token": 0, "read_only": 0}
        for agent, method, path, ctype, body, outcomes in cases:
            for (label, token, _), want in zip(self.tokens(agent), outcomes):
                with self.subTest(agent=agent.name, path=path, caller=label):
                    code, headers, text = curl(method, path, agent, token, ctype, body)
                    self.assertEqual(code, want, text)
                    if code in (401, 403):
                        self.assertTrue(json.loads(text)["error"], text)
                    if code == 401:
                        self.assertEqual(headers.get("www-authenticate"),
                                         'Bearer realm="hypercore"')
                    if agent is a and code == 401:
                        counted["no_token" if token is None else "bad_token"] += 1
                    elif agent is a and code == 403:
                        counted["read_only"] += 1
        after = refusals(a)
        for reason, n in counted.items():
            self.assertEqual(after[("http", reason)] - before[("http", reason)], n, reason)
        self.assertRegex(a.log(), r"refused http /list from 10\.226\.0\.2: no bearer token")
        self.assertCleanExit(a)
        self.assertCleanExit(m)

    # ---- the CLI's tokens ----

    def test_cli_finds_the_token(self):
        a = self.agent()
        grpc = ["--grpc-bind-addr", a.grpc_addr]
        http = ["--http-bind-addr", "127.0.0.1:%d" % a.http_port]
        # the local CLI: the agent's state dir
        for verb, where in (("list", grpc), ("members", http),
                            ("metrics", http + ["--prometheus"]), ("metrics", http)):
            with self.subTest(verb=verb):
                r = a.local_cli("cluster", verb, *where, "--state-dir", a.state_dir)
                self.assertEqual(r.returncode, 0, r.stderr)
        # none: one line saying where a token comes from
        r = a.local_cli("cluster", "list", *grpc, "--state-dir", os.path.join(self.workdir, "x"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        for word in ("--token", "HYPERCORE_TOKEN", "--state-dir"):
            self.assertIn(word, r.stderr)
        # a remote CLI (the client namespace): $HYPERCORE_TOKEN or --token
        remote = ["--grpc-bind-addr", "%s:%d" % (SRV_IP, a.grpc_port)]
        env = dict(os.environ, HYPERCORE_TOKEN=a.token())
        r = subprocess.run(netns.nsenter(CLI_NS, hctest.HC_BIN, "cluster", "list", "--json",
                                         *remote), capture_output=True, text=True, env=env,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(json.loads(r.stdout)["states"]), 1)
        env.pop("HYPERCORE_TOKEN")
        for token, rc in ((a.token(), 0), (a.read_only_token(), 0), (WRONG, 1)):
            r = subprocess.run(netns.nsenter(CLI_NS, hctest.HC_BIN, "cluster", "list", *remote,
                                             "--token", token), capture_output=True, text=True,
                               env=env, timeout=30)
            self.assertEqual(r.returncode, rc, r.stderr)
        # a read-only token lists but does not stop
        r = a.local_cli("cluster", "stop", *grpc, "--id", MISSING,
                        env={"HYPERCORE_TOKEN": a.read_only_token()})
        self.assertEqual(r.returncode, 1)
        self.assertIn("read-only", r.stderr)
        r = a.local_cli("cluster", "stop", *grpc, "--id", MISSING, "--state-dir", a.state_dir)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no workload", r.stderr)
        self.assertCleanExit(a)

    # ---- secrets stay secret ----

    def test_env_values_redacted_unless_admin_asks(self):
        a = self.agent(extra_args=UNSIGNED_OK)
        secret = "hunter2-%s" % uuid.uuid4().hex
        _, wid = self.inject_workload(a, ["API_KEY=" + secret, "MODE=fast", "FLAG"])
        redacted = ["API_KEY=<redacted>", "MODE=<redacted>", "FLAG"]
        shown = ["API_KEY=" + secret, "MODE=fast", "FLAG"]
        ro, admin = a.read_only_token(), a.token()
        for path, token, want in (("/list", admin, redacted), ("/list?env=1", admin, shown),
                                  ("/list?env=1", ro, redacted), ("/list", ro, redacted)):
            with self.subTest(path=path, admin=token == admin):
                code, _, text = curl("GET", path, a, token)
                self.assertEqual(code, 200, text)
                self.assertEqual(self.envs(json.loads(text)["response"], wid), want)
        got = grpc_calls(a, [
            {"method": "List", "metadata": md(admin)},
            {"method": "List", "metadata": md(admin, ("hypercore-show-env", "1"))},
            {"method": "List", "metadata": md(ro, ("hypercore-show-env", "1"))},
            {"method": "List", "metadata": md(admin, ("hypercore-show-env", "0"))}])
        for out, want in zip(got, (redacted, shown, redacted, redacted)):
            self.assertEqual(out["code"], "OK", out)
            self.assertEqual(self.envs(out["response"], wid), want)
        grpc = ["--grpc-bind-addr", a.grpc_addr, "--state-dir", a.state_dir]
        r = a.local_cli("cluster", "list", "--json", *grpc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.envs(json.loads(r.stdout), wid), redacted)
        r = a.local_cli("cluster", "list", "--json", "--show-env", *grpc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.envs(json.loads(r.stdout), wid), shown)
        r = a.local_cli("cluster", "list", "--json", "--show-env", "--grpc-bind-addr",
                        a.grpc_addr, env={"HYPERCORE_TOKEN": ro})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.envs(json.loads(r.stdout), wid), redacted)
        self.assertNotIn(secret, a.log())  # logs never print env values
        self.assertCleanExit(a)

    # ---- the cluster key ----

    def test_join_token_joins_and_a_seed_without_a_key_refuses_to_start(self):
        a = self.agent("first")
        key = a.keyring()[0]
        self.assertEqual(os.stat(os.path.join(a.state_dir, "cluster-keyring.json")).st_mode
                         & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.join(a.state_dir, "api-token")).st_mode & 0o777,
                         0o600)
        join = a.join_token()
        self.assertEqual(join, "hcjoin1.%s.%s" % (key, a.token()))
        # without a key: one line naming the ways to give one; nothing written
        lone = self.agent("keyless", extra_args=[a.seed], start=False)
        r = subprocess.run(lone.args(), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        for flag in REFUSED_FLAGS:
            self.assertIn(flag, lines[0])
        self.assertFalse(os.path.exists(os.path.join(lone.state_dir, "cluster-keyring.json")))
        self.assertFalse(os.path.exists(os.path.join(lone.state_dir, "api-token")))
        # with the join token
        b = self.agent("second", extra_args=["--join-token", join, a.seed])
        for x in (a, b):
            wait_for("2 alive members on %s" % x.name,
                     lambda: x.members() == {"first": "alive", "second": "alive"}, 30)
        self.assertEqual(b.keyring(), [key])
        self.assertEqual(b.token(), a.token())  # one token for the cluster
        self.assertEqual(curl("GET", "/list", b, a.token())[0], 200)
        # a restart needs no join token: the state dir holds the key
        self.assertCleanExit(b)
        b.extra_args = [a.seed]
        b.start()
        wait_for("second back in first's members",
                 lambda: a.members().get("second") == "alive", 30)
        self.assertCleanExit(b)
        self.assertCleanExit(a)

    def test_cluster_key_rotates_on_every_member(self):
        """`cluster keys` install, use, remove: every member's keyring file
        follows, the cluster stays whole throughout, and the old key (and
        a join token carrying it) no longer gets anyone in."""
        fast = ["--gossip-interval-ms", "200"]  # queries time out in seconds
        a = self.agent("first", extra_args=fast)
        old_join = a.join_token()
        b = self.agent("second", extra_args=[*fast, *a.join_args()])
        for x in (a, b):
            wait_for("2 alive members on %s" % x.name,
                     lambda: x.members() == {"first": "alive", "second": "alive"}, 30)
        old = a.keyring()[0]
        r = a.local_cli("cluster", "keys", "generate")
        self.assertEqual(r.returncode, 0, r.stderr)
        new = r.stdout.strip()
        self.assertEqual(len(base64.b64decode(new)), 32)
        http = ["--http-bind-addr", "127.0.0.1:%d" % a.http_port, "--state-dir", a.state_dir]
        for op, key, want in (("install", new, [old, new]), ("use", new, [new, old]),
                              ("remove", old, [new])):
            r = a.local_cli("cluster", "keys", *http, op, key, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("done on 2 members", r.stdout)
            for x in (a, b):
                self.assertEqual(x.keyring(), want, "%s after %s" % (x.name, op))
                self.assertEqual(x.members(), {"first": "alive", "second": "alive"})
        # the key in use cannot be removed; a bad key is a usage error
        r = a.local_cli("cluster", "keys", *http, "remove", new, timeout=120)
        self.assertEqual(r.returncode, 1)
        self.assertIn("did not apply it", r.stderr)
        r = a.local_cli("cluster", "keys", *http, "install", "bm90IGEga2V5")
        self.assertEqual(r.returncode, 2)
        # a node holding only the old key stays out
        c = self.agent("late", extra_args=["--join-token", old_join, a.seed])
        wait_for("the join verdict", lambda: "could not join any seed" in c.log(), 60)
        self.assertNotIn("late", a.members())
        self.assertCleanExit(c)
        self.assertCleanExit(b)
        self.assertCleanExit(a)

    def test_wrong_key_never_a_member(self):
        a = self.agent("first")
        c = self.agent("intruder", extra_args=["--cluster-encrypt", new_key(), a.seed])
        # its join attempts reach the first node, which cannot decrypt them
        wait_for("the join verdict", lambda: "could not join any seed" in c.log(), 60)
        wait_for("packets dropped for their key", lambda: dropped(a, "decrypt") > 0, 30)
        self.assertNotIn("intruder", a.members())
        self.assertNotIn("first", c.members())
        self.assertNotEqual(c.token(), a.token())
        self.assertEqual(curl("GET", "/list", a, c.token())[0], 401)
        self.assertCleanExit(c)
        self.assertCleanExit(a)

    def test_plaintext_serf_agent_cannot_join(self):
        a = self.agent("first")
        s = self.serf("serf-plain", "-join=" + a.seed, wait_rpc=False)

        def verdict():  # serf gives up on its -join and exits, or says so
            return s.proc.poll() is not None or "Failed to join" in s.log() or \
                "Error joining" in s.log()
        wait_for("the serf agent's join verdict", verdict, 60)
        wait_for("plaintext packets dropped", lambda: dropped(a, "unencrypted") > 0, 30)
        self.assertNotIn("serf-plain", a.members())
        if s.proc.poll() is None:
            self.assertNotIn("first", s.members() or {})
        self.assertCleanExit(a)

    # ---- no confused deputies ----

    def test_reserved_event_and_query_names_refused_and_nothing_sent(self):
        a = self.agent()
        s = self.serf("serf-peer", "-encrypt=" + a.keyring()[0], "-join=" + a.seed)
        wait_for("the serf agent a member",
                 lambda: a.members().get("serf-peer") == "alive", 30)
        sent_queries = metric_values(a, "hypercore_gossip_queries_total")
        admin = a.token()
        for path in ("/event?name=hypercore_state_broadcast", "/event?name=HYPERCORE_x",
                     "/event?name=_serf_leave", "/query?name=hypercore_query",
                     "/query?name=_serf_ping", "/query?name=_serf_conflict"):
            with self.subTest(path=path):
                code, _, text = curl("POST", path, a, admin, data="refused-by-trust-test")
                self.assertEqual(code, 403, text)
                self.assertIn("error", json.loads(text))
        # the documented informational query stays open
        code, _, text = curl("POST", "/query?name=hypercore-info&timeout=1000", a, admin)
        self.assertEqual(code, 200, text)
        # a marker sent after them arrives; had they been sent, they would have too
        code, _, _ = curl("POST", "/event?name=trust-marker", a, admin, data="marker-payload")
        self.assertEqual(code, 200)
        wait_for("the marker at the serf agent", lambda: b"marker-payload" in s.read_events(), 30)
        self.assertNotIn(b"refused-by-trust-test", s.read_events())
        after = metric_values(a, "hypercore_gossip_queries_total")
        self.assertEqual(after['{direction="out"}'] - sent_queries['{direction="out"}'], 1,
                         "only hypercore-info went out")
        self.assertCleanExit(a)

    def test_browser_form_post_to_stop_does_nothing(self):
        a = self.agent(extra_args=UNSIGNED_OK)
        form = "application/x-www-form-urlencoded"
        # the form with the admin token is understood (a missing id: 404);
        # asked before a serf agent joins, which would not answer the
        # stop query and keep it waiting for its 30 s timeout
        self.assertEqual(curl("POST", "/stop", a, a.token(), form, "id=" + MISSING)[0], 404)
        _, wid = self.inject_workload(a, ["X=1"])
        before = refusals(a)
        code, headers, text = curl("POST", "/stop", a, None, form, "id=" + wid,
                                   headers=("Origin: http://evil.example",))
        self.assertEqual(code, 401, text)
        self.assertIn("error", json.loads(text))
        self.assertEqual(refusals(a)[("http", "no_token")] - before[("http", "no_token")], 1)
        self.assertIn(wid, a.http("/list")[2].decode())
        self.assertNotIn("stopping %s" % wid, a.log())
        # auth comes first; then the method, then the content type
        self.assertEqual(curl("GET", "/stop?id=" + wid, a, None)[0], 401)
        code, headers, _ = curl("GET", "/stop?id=" + MISSING, a, a.token())
        self.assertEqual((code, headers.get("allow")), (405, "POST"))
        self.assertEqual(curl("POST", "/stop?id=" + MISSING, a, a.token(), "text/plain",
                              "x")[0], 415)
        self.assertEqual(curl("POST", "/spawn", a, a.token(), "text/plain",
                              '{"image_ref": "x"}')[0], 415)
        self.assertIn(wid, a.http("/list")[2].decode())
        self.assertCleanExit(a)

    # ---- modes and rotation ----

    def test_api_auth_none_serves_without_tokens_and_warns(self):
        a = self.agent(extra_args=["--api-auth", "none"])
        self.assertRegex(a.log(), r"level=warn .*--api-auth none")
        self.assertFalse(os.path.exists(os.path.join(a.state_dir, "api-token")))
        self.assertEqual(curl("GET", "/list", a)[0], 200)
        self.assertEqual(curl("POST", "/stop", a, None, "application/json",
                              '{"id": "%s"}' % MISSING)[0], 404)
        got = grpc_calls(a, [{"method": "List"},
                             {"method": "Stop", "request": {"id": MISSING}},
                             {"method": "List", "metadata": md(WRONG)}])
        self.assertEqual([x["code"] for x in got], ["OK", "NOT_FOUND", "OK"])
        self.assertEqual(metric_values(a, "hypercore_api_auth_enabled"), {"": 0.0})
        self.assertCleanExit(a)

    def test_sighup_rotates_the_api_token(self):
        a = self.agent()
        old, new = a.token(), "rotated-" + uuid.uuid4().hex
        path = os.path.join(a.state_dir, "api-token")
        reloads = lambda: a.log().count("SIGHUP: API tokens reloaded")  # noqa: E731

        def hup(text):
            with open(path, "w") as f:  # the file keeps its mode 0600
                f.write(text)
            n = reloads()
            a.proc.send_signal(signal.SIGHUP)
            wait_for("the tokens reloaded", lambda: reloads() > n, 20)

        hup("%s\n%s\n" % (old, new))
        for token in (old, new):
            self.assertEqual(curl("GET", "/list", a, token)[0], 200)
            self.assertEqual(grpc_calls(a, [{"method": "List", "metadata": md(token)}])[0]
                             ["code"], "OK")
        hup("%s\n" % new)
        self.assertEqual(curl("GET", "/list", a, old)[0], 401)
        self.assertEqual(curl("GET", "/list", a, new)[0], 200)
        self.assertEqual(grpc_calls(a, [{"method": "List", "metadata": md(old)}])[0]["code"],
                         "UNAUTHENTICATED")
        # the read-only token follows its admin token
        ro = a.read_only_token()
        self.assertEqual(curl("GET", "/list", a, ro)[0], 200)
        # a file others may read is refused; the tokens stay as they were
        os.chmod(path, 0o644)
        a.proc.send_signal(signal.SIGHUP)
        wait_for("the refusal logged", lambda: "SIGHUP: keeping the API tokens" in a.log(), 20)
        self.assertEqual(curl("GET", "/list", a, new)[0], 200)
        os.chmod(path, 0o600)
        self.assertCleanExit(a)

    # ---- only plausible states ----

    def test_forged_state_changes_nothing(self):
        """A member holding the key (a serf agent) sends states in the name
        of another node: with another address (where routes would then
        lead), and with the right address but state_version 2^64-1 (which
        would silence the real node for good). Neither is used: the named
        node's entry and the lists stay as they were, nothing is stopped,
        both are counted, and the real node's later states still apply.
        The forgeries are unsigned and second signs its states, so each is
        dropped by its signature check first (IBRL, counted as unsigned); the
        address and version checks behind it are unit-tested
        (tests/unit/test_cluster_plausible.c)."""
        a = self.agent("first", extra_args=["--state-period-ms", "500"])
        b = self.agent("second", extra_args=["--state-period-ms", "500", *a.join_args()])
        wait_for("second's state at first", lambda: any(
            st["node"]["id"] == "second" for st in a.http_json("/list")[1]["response"]["states"]),
            30)
        s = self.serf("serf-forger", "-encrypt=" + a.keyring()[0], "-join=" + a.seed)
        wait_for("the forger in first's members",
                 lambda: a.members().get("serf-forger") == "alive", 30)
        rejected_before = metric_values(a, "hypercore_ibrl_states_rejected_total")
        stopped_before = metric_values(a, "hypercore_duplicates_stopped_total")[""]
        wid = str(uuid.uuid4())

        def forged(addr, version):
            st = pb.NodeStateResponse(
                node=pb.Node(id="second", ip=str(uuid.uuid4()) + "_complete"),
                workloads=[pb.WorkloadState(id=wid, source_request=pb.VmSpawnRequest(
                    cores=1, memory=64, image_ref="registry.test/evil:1"))],
                node_addr=addr, http_port=1, chunk_index=0, chunk_count=1,
                state_version=version)
            payload = st.SerializeToString()
            self.assertNotIn(b"\0", payload)  # it goes through argv
            r = s.cli("event", "-coalesce=false", "hypercore_state_broadcast", payload)
            self.assertEqual(r.returncode, 0, r.stderr)

        def rejected(reason):
            return metric_values(a, "hypercore_ibrl_states_rejected_total").get(
                '{reason="%s"}' % reason, 0) - rejected_before.get('{reason="%s"}' % reason, 0)

        forged("169.254.169.254", int(time.time() * 1000))
        wait_for("the forged address counted", lambda: rejected("unsigned") >= 1, 30)
        forged("127.0.0.1", 2 ** 64 - 1)
        wait_for("the forged version counted", lambda: rejected("unsigned") >= 2, 30)
        received = metric_values(a, "hypercore_states_received_total")[""]
        # the real node keeps being heard, and nothing of the forgeries shows
        wait_for("second's own states still applied", lambda: metric_values(
            a, "hypercore_states_received_total")[""] >= received + 3, 30)
        states = {st["node"]["id"]: st for st in a.http_json("/list")[1]["response"]["states"]}
        self.assertNotIn(wid, json.dumps(states))
        self.assertEqual(states["second"].get("node_addr"), "127.0.0.1")
        self.assertEqual(states["second"].get("http_port"), b.http_port)
        self.assertEqual(metric_values(a, "hypercore_duplicates_stopped_total")[""],
                         stopped_before)
        self.assertIn("rejected", a.log())
        self.assertCleanExit(b)
        self.assertCleanExit(a)

if __name__ == "__main__":
    hctest.main()
