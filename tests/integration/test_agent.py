#!/usr/bin/python3
"""The node agent end to end: real `hypercore cluster` processes on loopback,
driven by the real CLI, curl-like HTTP requests, raw sockets and an independent
gRPC client (Debian's grpcio with stubs generated from proto/cluster.proto)."""

import json
import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpcstubs  # noqa: E402
import hctest  # noqa: E402

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class AgentCli(hctest.TestCase):
    def node_id(self, agent):
        with open(os.path.join(agent.state_dir, "node-id")) as f:
            return f.read().strip()

    def test_list_table_shows_this_node(self):
        a = self.agent()
        r = a.cli("cluster", "list", "--grpc-bind-addr", a.grpc_addr)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["NODE", "ADDRESS", "WORKLOADS", "TRUST"])
        self.assertEqual(lines[1].split()[0], self.node_id(a))
        self.assertEqual(lines[1].split()[-2:], ["0", "verified"])
        self.assertCleanExit(a)

    def test_list_json(self):
        a = self.agent()
        r = a.cli("cluster", "list", "--json", "--grpc-bind-addr", a.grpc_addr)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        # upstream's fields (the beacon: its own test is test_ibrl.py), plus
        # where the node is reached and its trust (new field numbers)
        beacon = doc["states"][0].pop("beacon")
        self.assertEqual(len(beacon["beacon_node_id"]), 16)
        self.assertEqual(doc, {"states": [{"node": {"id": self.node_id(a), "ip": "127.0.0.1"},
                                           "node_addr": "127.0.0.1",
                                           "http_port": a.http_port,
                                           "trust": "verified"}]})
        self.assertCleanExit(a)

    def test_node_id_is_a_uuid_and_stable_across_restarts(self):
        a = self.agent()
        first = self.node_id(a)
        self.assertRegex(first, UUID)
        self.assertCleanExit(a)
        a.start()
        r = a.cli("cluster", "list", "--json", "--grpc-bind-addr", a.grpc_addr)
        self.assertEqual(json.loads(r.stdout)["states"][0]["node"]["id"], first)
        self.assertCleanExit(a)

    def test_unreachable_agent_is_one_line_naming_the_address(self):
        port = hctest.free_port()
        r = hctest.run_cli("cluster", "list", "--grpc-bind-addr", "127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("127.0.0.1:%d" % port, lines[0])
        self.assertIn("connection refused", lines[0])

    def test_default_address_is_dialled_on_loopback(self):
        # 0.0.0.0:PORT, the bind form, must work as a client address too.
        a = self.agent()
        r = a.cli("cluster", "list", "--grpc-bind-addr", "0.0.0.0:%d" % a.grpc_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertCleanExit(a)

    def test_usage_errors_exit_2(self):
        cases = [
            ["frobnicate"],
            ["cluster", "list", "--no-such-flag"],
            ["cluster", "list", "--grpc-bind-addr"],
            ["cluster", "list", "stray"],
            ["cluster", "list", "--timeout", "soon"],
            ["cluster", "list", "--grpc-bind-addr", "nowhere"],
            ["cluster", "--log-level", "loud"],
            ["cluster", "--bogus"],
            [],
        ]
        for args in cases:
            with self.subTest(args=args):
                r = hctest.run_cli(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertIn("Usage: hypercore", r.stderr)

    def test_help_and_version(self):
        for args in (["--help"], ["cluster", "--help"], ["cluster", "list", "--help"],
                     ["cluster", "list", "-h"], ["help"]):
            with self.subTest(args=args):
                r = hctest.run_cli(*args)
                self.assertEqual(r.returncode, 0)
                self.assertIn("Usage: hypercore", r.stdout)
        r = hctest.run_cli("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^hypercore \d+\.\d+\.\d+ ")


class AgentStartup(hctest.TestCase):
    def expect_startup_error(self, agent, *fragments):
        r = subprocess.run(agent.args(), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, "want one error line, got:\n" + r.stderr)
        for f in fragments:
            self.assertIn(f, lines[0])
        return lines[0]

    def test_invalid_bind_addresses(self):
        for flag, value in (("--grpc-bind-addr", "1.2.3:80"), ("--grpc-bind-addr", "127.0.0.1"),
                            ("--http-bind-addr", "127.0.0.1:99999"),
                            ("--http-bind-addr", "::1:80")):
            with self.subTest(flag=flag, value=value):
                a = self.agent(start=False, extra_args=[flag, value])
                self.expect_startup_error(a, "invalid " + flag, value)

    def test_port_in_use(self):
        for which in ("grpc", "http"):
            with self.subTest(which=which), socket.socket() as busy:
                busy.bind(("127.0.0.1", 0))
                busy.listen()
                a = self.agent(start=False)
                port = busy.getsockname()[1]
                if which == "grpc":
                    a.grpc_port = port
                else:
                    a.http_port = port
                self.expect_startup_error(a, "127.0.0.1:%d" % port, "Address already in use",
                                          "--%s-bind-addr" % which)

    def test_second_agent_on_same_ports_fails(self):
        a = self.agent()
        b = self.agent("other", start=False)
        b.grpc_port = a.grpc_port
        self.expect_startup_error(b, "Address already in use")
        self.assertCleanExit(a)

    def test_gossip_option_errors(self):
        cases = [
            (["--cluster-encrypt", "not-base64!"], "invalid encryption key"),
            (["--cluster-encrypt", "c2hvcnQ="], "invalid encryption key"),
            (["--cluster-bind-addr", "1.2.3.4.5:7946"], "invalid --cluster-bind-addr"),
            (["--cluster-advertise-addr", "0.0.0.0:7946"], "invalid --cluster-advertise-addr"),
            (["not-an-address"], "invalid join address"),
        ]
        for extra, fragment in cases:
            with self.subTest(extra=extra):
                a = self.agent(start=False, extra_args=extra)
                self.expect_startup_error(a, fragment)

    def test_gossip_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind(("127.0.0.1", 0))
            a = self.agent(start=False)
            a.gossip_port = busy.getsockname()[1]
            self.expect_startup_error(a, "--cluster-bind-addr", "Address already in use")

    def test_state_dir_unusable(self):
        a = self.agent(start=False)
        os.makedirs(os.path.dirname(a.state_dir), exist_ok=True)
        with open(a.state_dir, "w") as f:
            f.write("not a directory")
        self.expect_startup_error(a, a.state_dir, "not a directory")

        b = self.agent("b", start=False)
        os.makedirs(os.path.join(b.state_dir, "node-id"))
        self.expect_startup_error(b, "node-id")

    def test_corrupt_node_id_is_not_replaced(self):
        a = self.agent(start=False)
        os.makedirs(a.state_dir)
        path = os.path.join(a.state_dir, "node-id")
        with open(path, "w") as f:
            f.write("garbage\n")
        self.expect_startup_error(a, path, "node id")
        with open(path) as f:
            self.assertEqual(f.read(), "garbage\n")


class AgentGossip(hctest.TestCase):
    def members(self, agent):
        status, doc = agent.http_json("/members")
        self.assertEqual(status, 200)
        return {m["name"]: m for m in doc["response"]}

    def test_two_agents_form_a_cluster(self):
        a = self.agent("a", extra_args=["--cluster-tag", "zone=x"])
        b = self.agent("b", start=False)
        b.extra_args = a.join_args()
        b.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(self.members(a)) < 2:
            time.sleep(0.1)
        ms = self.members(a)
        self.assertEqual(len(ms), 2)
        self.assertTrue(all(m["status"] == "alive" for m in ms.values()))
        ids = {self.node_id(a), self.node_id(b)}
        self.assertEqual(set(ms), ids)  # gossip names are the node ids
        self.assertEqual(ms[self.node_id(a)]["tags"], {"zone": "x"})
        _, _, body = a.http("/metrics")
        self.assertIn('hypercore_gossip_members{status="alive"} 2', body.decode())
        r = b.cli("cluster", "members", "--json", "--http-bind-addr",
                  "127.0.0.1:%d" % b.http_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual({m["name"] for m in json.loads(r.stdout)}, ids)
        # b leaves on SIGTERM: a sees it left, not failed.
        self.assertCleanExit(b)
        self.assertEqual(self.members(a)[self.node_id(b)]["status"], "left")
        self.assertCleanExit(a)

    def node_id(self, agent):
        with open(os.path.join(agent.state_dir, "node-id")) as f:
            return f.read().strip()

    def test_event_and_query_api_errors(self):
        a = self.agent()
        # _serf_* (serf's own queries) are refused: 403
        for path, want in (("/event", 400), ("/query", 400), ("/query?name=_serf_ping", 403),
                           ("/query?name=x&timeout=0", 400), ("/query?name=x&relay=999", 400),
                           ("/query?name=x&tag=novalue", 400), ("/event?name=x", 200)):
            with self.subTest(path=path):
                self.assertEqual(a.http(path, method="POST", body=b"p")[0], want)
        status, _, body = a.http("/event?name=big", method="POST", body=b"x" * 4096)
        self.assertEqual(status, 413, body)
        r = a.cli("cluster", "query", "--json", "--timeout", "1", "--http-bind-addr",
                  "127.0.0.1:%d" % a.http_port, "hypercore-info")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(len(got["acks"]), 1)
        self.assertEqual(json.loads(got["responses"][0]["payload"])["node_id"], self.node_id(a))
        self.assertCleanExit(a)


class AgentHttp(hctest.TestCase):
    def setUp(self):
        super().setUp()
        self.a = self.agent()

    def test_list_has_upstream_shape(self):
        status, headers, body = self.a.http("/list")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertTrue(body.endswith(b"\n"))
        doc = json.loads(body)
        self.assertEqual(list(doc), ["response"])
        self.assertRegex(doc["response"]["states"][0]["node"]["id"], UUID)
        self.assertCleanExit(self.a)

    def test_healthz(self):
        status, _, body = self.a.http("/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))
        self.assertCleanExit(self.a)

    def test_metrics_is_prometheus_text(self):
        self.a.cli("cluster", "list", "--grpc-bind-addr", self.a.grpc_addr)
        self.a.http("/nope")
        status, headers, body = self.a.http("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                            r'(-?[0-9.e+]+|NaN|[+-]Inf)$')
        types = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                self.assertNotIn(name, types, "family %s declared twice" % name)
                types[name] = kind
            elif not line.startswith("# HELP "):
                self.assertRegex(line, sample)
        self.assertEqual(types["hypercore_grpc_requests_total"], "counter")
        self.assertIn('hypercore_grpc_requests_total{method="/cluster.services.api.ClusterService/List",'
                      'code="OK"} 1', text)
        self.assertIn('hypercore_http_requests_total{path="other",code="404"} 1', text)
        self.assertRegex(text, r"\nprocess_resident_memory_bytes [1-9]")
        # malloc's figures (near 0 under ASan, whose allocator is not malloc's)
        self.assertEqual(types["hypercore_heap_bytes"], "gauge")
        self.assertRegex(text, r"\nhypercore_heap_bytes [0-9]")
        self.assertRegex(text, r"\nhypercore_heap_free_bytes [0-9]")
        self.assertIn("hypercore_workload_count 0", text)
        self.assertCleanExit(self.a)

    def test_bad_requests_get_json_errors_and_agent_keeps_serving(self):
        cases = [
            ("/nope", "GET", None, 404),
            ("/list", "POST", b"", 405),
            ("/spawn", "GET", None, 405),
            ("/stop", "GET", None, 405),  # POST only: a link or <img> cannot stop
            ("/stop", "POST", None, 400),
            ("/stop?id=", "POST", None, 400),
            ("/stop?id=../../etc/passwd", "POST", None, 400),
            ("/stop", "POST", b'{"id": "../../etc/passwd"}', 400),
            ("/logs?id=%2e%2e%2fetc", "GET", None, 400),
            ("/stop?id=5b0c3c52-6a11-4c39-9a57-1f0a6b6a2f10", "POST", None, 404),
            ("/stop", "POST", b'{"id": "5b0c3c52-6a11-4c39-9a57-1f0a6b6a2f10"}', 404),
            ("/logs?id=5b0c3c52-6a11-4c39-9a57-1f0a6b6a2f10", "GET", None, 404),
            ("/spawn", "POST", b"{not json", 400),
            ("/spawn", "POST", b"[1,2]", 400),
            ("/spawn", "POST", b"x" * (2 << 20), 413),
        ]
        for path, method, body, want in cases:
            with self.subTest(path=path[:40], method=method):
                status, headers, raw = self.a.http(path, method=method, body=body)
                self.assertEqual(status, want, raw[:200])
                doc = json.loads(raw)
                self.assertEqual(list(doc), ["error"])
                self.assertTrue(doc["error"])
        self.assertEqual(self.a.http("/healthz")[0], 200)
        self.assertCleanExit(self.a)

    def test_garbage_on_the_socket(self):
        # Each junk request gets an HTTP error or no answer at all (an
        # unfinished head waits for the 30 s connection timeout); either way
        # the agent keeps serving others while those connections stay open.
        junks = (b"\x00\x01\x02garbage\r\n\r\n", b"garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"GET /list HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
                 b"GET /li")
        conns = []
        try:
            for junk in junks:
                s = socket.create_connection(("127.0.0.1", self.a.http_port), timeout=1)
                conns.append(s)
                try:
                    s.sendall(junk)
                    reply = s.recv(65536)
                except (socket.timeout, ConnectionError):
                    reply = b""
                if reply:
                    self.assertRegex(reply, rb"^HTTP/1\.[01] (4\d\d|505) ")
                self.assertEqual(self.a.http("/healthz")[0], 200)
        finally:
            for s in conns:
                s.close()
        self.assertCleanExit(self.a)


class AgentGrpc(hctest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.grpc, cls.pb, cls.pb_grpc = grpcstubs.load()

    def setUp(self):
        super().setUp()
        self.a = self.agent()
        self.channel = grpcstubs.channel_with(self.grpc, self.a.grpc_addr,
                                              grpcstubs.bearer(self.a.token()))
        self.stub = self.pb_grpc.ClusterServiceStub(self.channel)

    def tearDown(self):
        self.channel.close()
        super().tearDown()

    def code_of(self, fn, *args):
        with self.assertRaises(self.grpc.RpcError) as cm:
            fn(*args, timeout=10)
        return cm.exception.code(), cm.exception.details()

    def test_list(self):
        resp = self.stub.List(self.pb.VmQueryRequest(), timeout=10)
        self.assertEqual(len(resp.states), 1)
        self.assertRegex(resp.states[0].node.id, UUID)
        self.assertCleanExit(self.a)

    def test_errors_map_to_status_codes(self):
        sc = self.grpc.StatusCode
        code, details = self.code_of(self.stub.Stop, self.pb.VmStopRequest(id="../x"))
        self.assertEqual(code, sc.INVALID_ARGUMENT)
        code, details = self.code_of(self.stub.Stop, self.pb.VmStopRequest())
        self.assertEqual(code, sc.INVALID_ARGUMENT)
        uid = "5b0c3c52-6a11-4c39-9a57-1f0a6b6a2f10"
        code, details = self.code_of(self.stub.Stop, self.pb.VmStopRequest(id=uid))
        self.assertEqual(code, sc.NOT_FOUND)
        self.assertIn(uid, details)
        code, _ = self.code_of(self.stub.Logs, self.pb.VmLogsRequest(id=uid))
        self.assertEqual(code, sc.NOT_FOUND)
        # the only node runs no workloads: its dry-run answer says so
        code, details = self.code_of(self.stub.Spawn, self.pb.VmSpawnRequest(image_ref="x"))
        self.assertEqual(code, sc.RESOURCE_EXHAUSTED)
        self.assertIn("runs no workloads", details)
        code, details = self.code_of(self.stub.Spawn, self.pb.VmSpawnRequest(
            image_ref="x", ports={0: 80}))
        self.assertEqual(code, sc.INVALID_ARGUMENT)
        self.assertIn("1..65535", details)
        self.assertCleanExit(self.a)

    def test_malformed_and_unknown_calls(self):
        sc = self.grpc.StatusCode
        raw = lambda path: self.channel.unary_unary(path, request_serializer=None,
                                                    response_deserializer=None)
        # Field 1 of VmLogsRequest is a string; a varint there does not decode.
        code, details = self.code_of(raw("/cluster.services.api.ClusterService/Logs"), b"\x08\x05")
        self.assertEqual(code, sc.INVALID_ARGUMENT)
        code, _ = self.code_of(raw("/cluster.services.api.ClusterService/List"), b"\xff\xff\xff")
        self.assertEqual(code, sc.INVALID_ARGUMENT)
        code, details = self.code_of(raw("/cluster.services.api.ClusterService/Nope"), b"")
        self.assertEqual(code, sc.UNIMPLEMENTED)
        code, _ = self.code_of(raw("/other.Service/List"), b"")
        self.assertEqual(code, sc.UNIMPLEMENTED)
        code, _ = self.code_of(raw("/cluster.services.api.ClusterService/List"), b"\x00" * (5 << 20))
        self.assertEqual(code, sc.RESOURCE_EXHAUSTED)
        # Still serving, and many calls in a row do not wear the request pool out.
        for _ in range(50):
            self.stub.List(self.pb.VmQueryRequest(), timeout=10)
        futures = [self.stub.List.future(self.pb.VmQueryRequest(), timeout=10) for _ in range(32)]
        for f in futures:
            self.assertEqual(len(f.result().states), 1)
        self.assertCleanExit(self.a)


class AgentSignals(hctest.TestCase):
    def test_sigint_and_sigterm_shut_down_cleanly(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(sig=sig):
                a = self.agent("n%d" % sig)
                self.assertCleanExit(a, sig)
                self.assertIn("shutting down", a.log())
                # The ports are free again at once.
                b = self.agent("m%d" % sig, start=False)
                b.grpc_port, b.http_port = a.grpc_port, a.http_port
                b.start()
                self.assertCleanExit(b)

    def test_sighup_keeps_serving(self):
        a = self.agent()
        a.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)
        self.assertIsNone(a.proc.poll())
        self.assertIn("SIGHUP", a.log())
        self.assertEqual(a.http("/healthz")[0], 200)
        self.assertCleanExit(a)

    def test_shutdown_with_a_client_mid_request(self):
        a = self.agent()
        s = socket.create_connection(("127.0.0.1", a.http_port))
        s.sendall(b"GET /list HTTP/1.1\r\nHost: x\r\n")  # head never finished
        g = socket.create_connection(("127.0.0.1", a.grpc_port))
        g.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")     # half an HTTP/2 preface
        try:
            self.assertCleanExit(a)
        finally:
            s.close()
            g.close()

    def test_log_lines_are_logfmt(self):
        a = self.agent()
        self.assertCleanExit(a)
        line_re = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error) '
                             r'module=[a-z]+ msg="([^"\\]|\\.)*"$')
        lines = [l for l in a.log().splitlines() if l]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, line_re)
        self.assertTrue(any("ready" in l for l in lines))


if __name__ == "__main__":
    hctest.main()
