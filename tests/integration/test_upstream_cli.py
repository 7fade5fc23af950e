#!/usr/bin/python3
"""Upstream's users move over without surprises (issue 20, the command line):
real agents started and driven with upstream's spellings, as upstream's
docs/cluster.md writes them: flags after the seed, ids as operands, options
from a configuration file and HYPERCORE_* variables under the flags."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
from hctest import run_cli, wait_for  # noqa: E402

MISSING_ID = "3d5e6a90-c184-4d80-896d-d61f1ce935c4"


def config_rows(text):
    """config show's table: {option: (value, source)}."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^(\S+)\s+(.*?)\s+(default|config|env|flag)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


class UpstreamCli(hctest.TestCase):
    def setUp(self):
        super().setUp()
        # no machine-wide file or variable of ours may change what is tested
        self.saved_env = {k: v for k, v in os.environ.items() if k.startswith("HYPERCORE_")}
        for k in self.saved_env:
            if k != "HYPERCORE_TOKEN":
                del os.environ[k]
        os.environ["HYPERCORE_CONFIG"] = os.path.join(self.workdir, "none.toml")
        open(os.environ["HYPERCORE_CONFIG"], "w").close()

    def tearDown(self):
        for k in [k for k in os.environ if k.startswith("HYPERCORE_")]:
            del os.environ[k]
        os.environ.update(self.saved_env)
        super().tearDown()

    def members(self, agent):
        status, doc = agent.http_json("/members")
        self.assertEqual(status, 200)
        return {m["name"]: m["status"] for m in doc["response"]}

    def test_flags_after_the_seed_as_upstream_docs_write_them(self):
        a = self.agent("a")
        b = self.agent("b", start=False)
        join = a.join_args()  # --join-token TOKEN SEED
        # hypercore cluster --cluster-bind-addr ... SEED --cluster-base-url ... (the
        # Agent puts its own flags first, then these: the seed, then flags)
        b.extra_args = [join[2], "--cluster-base-url", "edge.example.com",
                        "--join-token=" + join[1]]
        b.start()
        wait_for("b a member of a's cluster",
                 lambda: sorted(self.members(a).values()) == ["alive", "alive"], 15)
        self.assertCleanExit(b)
        self.assertCleanExit(a)

    def test_unknown_flag_after_the_seed_names_flag_and_command(self):
        r = run_cli("cluster", "--cluster-bind-addr", "127.0.0.1:1", "10.0.0.1:7946",
                    "--cluster-base-urll", "edge.example.com")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.splitlines()[0],
                         "hypercore cluster: unknown option --cluster-base-urll")

    def test_stop_and_logs_take_the_id_as_an_operand(self):
        a = self.agent()
        # an id no node runs: exit 1 as upstream, one line naming it and
        # NOT_FOUND (upstream: "workload not found"; docs/migrating.md)
        for verb in ("stop", "logs"):
            for args in ([MISSING_ID], ["--id", MISSING_ID]):
                with self.subTest(verb=verb, args=args):
                    r = a.cli("cluster", verb, *args, "--grpc-bind-addr", a.grpc_addr)
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                    self.assertIn("no workload " + MISSING_ID, r.stderr)
                    self.assertIn("NOT_FOUND", r.stderr)
        r = a.cli("cluster", "stop", MISSING_ID, "--id", "0" + MISSING_ID[1:],
                  "--grpc-bind-addr", a.grpc_addr)
        self.assertEqual(r.returncode, 2)
        self.assertIn("two different ids", r.stderr)
        self.assertCleanExit(a)

    def test_local_stop_and_attach_take_the_id_as_an_operand(self):
        # upstream's `hypercore stop ID`, `hypercore attach ID`: the id is
        # taken (the failure is reaching containerd, not the arguments)
        sock = os.path.join(self.workdir, "no-containerd.sock")
        for verb in ("stop", "attach"):
            with self.subTest(verb=verb):
                r = run_cli(verb, MISSING_ID, "--containerd-socket", sock)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(sock, r.stderr)
                r = run_cli(verb, "--containerd-socket", sock)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("--id is required (or the id as the operand: ID)", r.stderr)

    def start_configured(self, name, config, env, http_port=None, flags=()):
        """An agent with config as its configuration file (%(http)d: a port),
        env in its environment and flags after its own (its other addresses
        from the test's Agent); http_port: where it serves HTTP then, if not
        the file's."""
        a = self.agent(name, start=False)
        path = os.path.join(self.workdir, name + ".toml")
        with open(path, "w") as f:
            f.write(config % {"http": a.http_port})
        a.http_port = http_port or a.http_port
        own = a.args()
        i = own.index("--http-bind-addr")
        del own[i:i + 2]
        a.args = lambda: [*own, "--config", path, *flags]
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            a.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return a, path

    def test_config_env_flag_precedence_in_config_show_and_the_agent(self):
        config = ('# as upstream\'s flags, by their long names\n'
                  'http-bind-addr = "127.0.0.1:%(http)d"\n'
                  'cluster-base-url = "edge.example.com"\n'
                  'coalesce-ms = 100\n'
                  'respawn-on-node-failure = true\n'
                  'cluster-tag = ["zone=x", "rack=7"]\n')
        # the file alone: the agent serves HTTP where it says
        a, path = self.start_configured("a", config, {})
        self.assertEqual(a.http("/healthz")[0], 200)
        self.assertCleanExit(a)

        # the environment over the file, the command line over both
        env_port, flag_port = hctest.free_port(), hctest.free_port()
        env = {"HYPERCORE_HTTP_BIND_ADDR": "127.0.0.1:%d" % env_port,
               "HYPERCORE_COALESCE_MS": "200", "HYPERCORE_CLUSTER_ENCRYPT": "c2VjcmV0LWtleS0xMjM0NQ=="}
        b, path = self.start_configured("b", config, env, http_port=env_port)
        self.assertEqual(b.http("/healthz")[0], 200)
        r = run_cli("config", "show", "--config", path, "--coalesce-ms", "300",
                    "--http-bind-addr=127.0.0.1:%d" % flag_port, "10.0.0.1:7946",
                    "--respawn-on-node-failure=false")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = config_rows(r.stdout)
        self.assertEqual(rows["cluster-base-url"], ("edge.example.com", "config"))
        self.assertEqual(rows["cluster-tag"], ("zone=x,rack=7", "config"))
        self.assertEqual(rows["coalesce-ms"], ("300", "flag"))
        self.assertEqual(rows["respawn-on-node-failure"], ("false", "flag"))
        self.assertEqual(rows["grpc-bind-addr"], ("0.0.0.0:8000", "default"))
        self.assertIn("# config file: " + path, r.stdout)
        self.assertIn("JOIN-ADDR: 10.0.0.1:7946", r.stdout)
        os.environ.update(env)
        r = run_cli("config", "show", "--config", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = config_rows(r.stdout)
        self.assertEqual(rows["http-bind-addr"], ("127.0.0.1:%d" % env_port, "env"))
        self.assertEqual(rows["coalesce-ms"], ("200", "env"))
        # a secret is never printed, whatever its source
        self.assertEqual(rows["cluster-encrypt"][1], "env")
        self.assertNotIn("c2VjcmV0", r.stdout)
        for k in env:
            del os.environ[k]
        self.assertCleanExit(b)

        # and the running agent: the flag over the environment over the file
        c, _ = self.start_configured("c", config, env, http_port=flag_port,
                                     flags=["--http-bind-addr", "127.0.0.1:%d" % flag_port])
        self.assertEqual(c.http("/healthz")[0], 200)
        self.assertCleanExit(c)

    def test_bad_config_is_one_line_naming_file_and_line(self):
        path = os.path.join(self.workdir, "bad.toml")
        with open(path, "w") as f:
            f.write("cluster-bind-addr = \"127.0.0.1:1\"\nclusterbind = 1\n")
        r = run_cli("cluster", "--config", path)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "hypercore cluster: %s:2: unknown option clusterbind\n" % path)
        r = run_cli("cluster", "--config", os.path.join(self.workdir, "missing.toml"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)


if __name__ == "__main__":
    hctest.main()
