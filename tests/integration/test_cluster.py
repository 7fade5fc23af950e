#!/usr/bin/python3
"""The cluster end to end: three hypercore nodes in network namespaces
(tools/netcluster.py), each with its embedded containerd, data plane and
proxy, a registry with the test images, and real `serf agent`s joining
them with the cluster key node 1 made (the nodes join with its join token).
Spawn through one node lands on some node and answers at its URL through
every node's proxy (HTTP and TLS by SNI); every node lists the same
state; logs come from the owner through any node; stop removes the routes
everywhere; malformed queries and user events are answered with ERROR or
dropped; SIGKILL of the owner with respawn on runs the workload elsewhere,
once, at the same URL. Everything is torn down, also on failure."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import hctest  # noqa: E402
from hctest import wait_for  # noqa: E402
from netcluster import NetCluster  # noqa: E402
from chaoslib import curl  # noqa: E402

PREFIX, SUBNET = "hct", 248
BASE = "example.test"
SERF = "/usr/bin/serf"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# ---- protobuf by hand: just what the malformed-input cases need ----

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def cluster_message(event, type_name, inner):
    # an empty value is left out, as protobuf does (and a payload given to
    # `serf query` on its command line can hold no NUL)
    any_ = field(1, "type.googleapis.com/cluster.services.api." + type_name) + \
        (field(2, inner) if inner else b"")
    return (field(1, event) if event else b"") + field(2, any_)


class Cluster(unittest.TestCase):
    """One cluster for the module; tests run in name order."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hc-cl-")
        cls.serfs = []
        cls.cluster = None
        try:
            cls.make_certs()
            cls.cluster = NetCluster(
                3, os.path.join(cls.tmp, "cluster"), prefix=PREFIX, subnet=SUBNET,
                registry=True, base_url=BASE,
                extra_args=["--respawn-on-node-failure", "--probe-interval-ms", "500",
                            "--state-period-ms", "1000",
                            "--cluster-tls-cert", os.path.join(cls.tmp, "wild.pem"),
                            "--cluster-tls-key", os.path.join(cls.tmp, "wild.key")])
            cls.cluster.start()
            cls.nodes = cls.cluster.nodes
            cls.names = {n.index: cls.node_name(n) for n in cls.nodes}
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for serf in cls.serfs:
            if serf.poll() is None:
                serf.kill()
                serf.wait()
        if cls.cluster:
            cls.cluster.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def make_certs(cls):
        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=cls.tmp, check=True, capture_output=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
                "/CN=hypercore cluster test CA")
        with open(os.path.join(cls.tmp, "wild.ext"), "w") as f:
            f.write("subjectAltName=DNS:*.%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % BASE)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "wild.key", "-out", "wild.csr", "-subj", "/CN=*.%s" % BASE)
        openssl("x509", "-req", "-in", "wild.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", "0x3001", "-days", "2", "-extfile", "wild.ext", "-out",
                "wild.pem")

    @staticmethod
    def node_name(node):
        return json.loads(node.http("/list")[2])["response"]["states"][0]["node"]["id"]

    # ---- helpers ----

    def alive(self):
        return [n for n in self.nodes if n.running()]

    def cli(self, node, verb, *args, timeout=120):
        return node.cli("cluster", verb, "--grpc-bind-addr", node.grpc_addr, *args,
                        timeout=timeout)

    def spawn(self, node, image, *args):
        r = self.cli(node, "spawn", "--image-ref", self.cluster.images[image], "--mem", "32",
                     *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        wid, url = r.stdout.split()
        self.assertRegex(wid, UUID)
        self.assertEqual(url, "%s.%s" % (wid, BASE))
        return wid

    def listing(self, node):
        """{workload id: owner name} as node lists the cluster."""
        r = self.cli(node, "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for st in json.loads(r.stdout).get("states", []):
            for w in st.get("workloads", []):
                out.setdefault(w["id"], []).append(st["node"]["id"])
        return out

    def owner(self, wid, via=None):
        owners = self.listing(via or self.alive()[0]).get(wid, [])
        return owners[0] if len(owners) == 1 else None

    def node_of(self, name):
        return [n for n in self.nodes if self.names[n.index] == name][0]

    def answers_http(self, node, wid):
        code, body = curl("-H", "Host: %s.%s" % (wid, BASE), "http://%s:80/" % node.addr)
        return code == 200 and ("id=" + wid) in body

    def answers_tls(self, node, wid):
        host = "%s.%s" % (wid, BASE)
        code, body = curl("--cacert", os.path.join(self.tmp, "ca.pem"), "--resolve",
                          "%s:443:%s" % (host, node.addr), "https://%s/" % host)
        return code == 200 and ("id=" + wid) in body

    def metrics(self, node):
        r = node.cli("cluster", "metrics", "--prometheus", "--http-bind-addr", node.http_addr)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def metric(self, node, name):
        for line in self.metrics(node).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    # ---- tests ----

    def test_00_node_ports_by_tc_with_offloads_left_on(self):
        # A cluster on a veth bridge as a new user builds it: the veths keep
        # their transmit checksum offload, so frames arrive with partial
        # checksums, and auto mode serves node ports at TC ingress.
        for n in self.nodes:
            r = n.ns_run("ethtool", "-k", "eth0")
            self.assertRegex(r.stdout, r"(?m)^tx-checksumming: on$")
            r = n.cli("routes", "--json", "--bpf-pin-dir", n.pin_dir)
            self.assertEqual(r.returncode, 0, r.stderr)
            uplink = json.loads(r.stdout)["uplink"]
            self.assertEqual((uplink["iface"], uplink["mode"]), ("eth0", "tc"), uplink)
            self.assertIn('hypercore_dataplane_info{iface="eth0",mode="tc",xdp_mode="none"} 1',
                          self.metrics(n))

    def test_01_spawn_is_served_by_every_node(self):
        wid = self.spawn(self.nodes[0], "web", "--ports", "80:8080,443:8080")
        Cluster.web = wid
        for n in self.nodes:
            wait_for("HTTP to %s through %s" % (wid, n.name),
                     lambda: self.answers_http(n, wid), timeout=10)
            wait_for("TLS (SNI) to %s through %s" % (wid, n.name),
                     lambda: self.answers_tls(n, wid), timeout=10)
        # every node agrees on where it runs, within 2 s
        owner = self.owner(wid)
        self.assertIn(owner, self.names.values())
        for n in self.nodes:
            wait_for("%s's list" % n.name, lambda: self.listing(n).get(wid) == [owner], 2)
        # the owner announced a node port for each proxy port, and the other
        # nodes route to it there
        for n in self.nodes:
            r = n.cli("routes", "--json", "--bpf-pin-dir", n.pin_dir)
            self.assertEqual(r.returncode, 0, r.stderr)
            routes = [x for x in json.loads(r.stdout)["routes"] if x["host"] == wid]
            self.assertEqual(sorted(x["port"] for x in routes), [80, 443], routes)
            for x in routes:
                self.assertEqual(x["node"], owner)
                if self.names[n.index] != owner:
                    self.assertEqual(x["backend"], self.node_of(owner).addr)
                    self.assertTrue(30000 <= x["backend_port"] <= 32767, x)
        m = self.metrics(self.node_of(owner))
        for name in ("hypercore_serf_queue_depth", "hypercore_broadcast_skipped_total 0",
                     "hypercore_state_changes_total", 'hypercore_cluster_members{state="alive"} 3',
                     "hypercore_workload_count 1",
                     'hypercore_workload_network_bytes_total{workload="%s"' % wid):
            self.assertIn(name, m)
        self.assertGreaterEqual(self.metric(self.nodes[0], "hypercore_spawn_duration_seconds_count"),
                                1)
        # hypercore nodes only (the serf agent comes in test_06): states go
        # as digests, each node pulled the others' over HTTP when it joined,
        # and no chunk was sent
        for n in self.nodes:
            m = self.metrics(n)
            self.assertIn('hypercore_state_bytes_sent_total{kind="chunked"} 0\n', m)
            self.assertGreaterEqual(self.metric(n, "hypercore_state_digests_sent_total"), 1)
            self.assertGreaterEqual(self.metric(n, "hypercore_state_full_pulls_total"), 2)
            self.assertGreaterEqual(self.metric(n, "hypercore_state_pulls_served_total"), 2)
            wait_for("%s applies deltas" % n.name, lambda: self.metric(
                n, "hypercore_state_deltas_applied_total") >= 1, 10)

    def test_02_unknown_host_and_bad_requests(self):
        code, _ = curl("-H", "Host: nobody.%s" % BASE, "http://%s:80/" % self.nodes[1].addr)
        self.assertEqual(code, 404)
        r = self.cli(self.nodes[1], "spawn", "--image-ref", "", "--ports", "80:8080")
        self.assertEqual(r.returncode, 2, r.stderr)
        status, _, body = self.nodes[0].http("/spawn", "POST",
                                             b'{"image_ref": "x", "ports": {"0": 80}}')
        self.assertEqual(status, 400, body)
        self.assertIn(b"port", body)
        status, _, body = self.nodes[0].http("/spawn", "POST", b'{"cores": "many"}')
        self.assertEqual(status, 400, body)
        for method, path in (("GET", "/logs?id=../../etc/passwd"),
                             ("POST", "/stop?id=..%2F..%2Fetc"), ("GET", "/logs")):
            status, _, body = self.nodes[2].http(path, method)
            self.assertEqual(status, 400, (path, body))
            self.assertIn(b'"error"', body)
        missing = "0" * 8 + "-0000-4000-8000-" + "0" * 12
        r = self.cli(self.nodes[2], "stop", "--id", missing)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no workload", r.stderr)
        self.assertTrue(r.stderr.startswith("hypercore"), r.stderr)

    def test_03_logs_from_a_node_that_does_not_own_it(self):
        wid = self.spawn(self.nodes[1], "logger", "--env", "LOG_INTERVAL=0.1")
        Cluster.logger = wid
        owner = wait_for("an owner", lambda: self.owner(wid))
        other = [n for n in self.nodes if self.names[n.index] != owner][0]
        r = wait_for("logs through %s" % other.name,
                     lambda: (lambda r: r if "out 2" in r.stdout else None)(
                         self.cli(other, "logs", "--id", wid)))
        self.assertIn("out 1", r.stdout.splitlines())
        self.assertIn("err 1", r.stdout.splitlines())
        r = self.cli(other, "logs", "--id", wid, "--tail", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 2, r.stdout)
        # upstream's HTTP shape, served by any node
        status, headers, body = other.http("/logs?id=%s&tail=1" % wid)
        self.assertEqual(status, 200, body)
        self.assertEqual(len(json.loads(body)["response"].splitlines()), 1)
        # --follow keeps printing new lines
        p = subprocess.Popen([hctest.HC_BIN, "cluster", "logs", "--grpc-bind-addr",
                              other.grpc_addr, "--id", wid, "--follow", "--tail", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, HYPERCORE_TOKEN=other.token()))
        try:
            lines = [p.stdout.readline() for _ in range(6)]
        finally:
            p.terminate()
            p.wait(10)
        self.assertTrue(all(x.startswith(("out ", "err ")) for x in lines), lines)
        numbers = [int(x.split()[1]) for x in lines if x.startswith("out ")]
        self.assertEqual(numbers, sorted(numbers))

    def test_04_stop_removes_the_route_everywhere(self):
        wid = self.logger
        r = self.cli(self.nodes[2], "stop", "--id", wid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stopped " + wid, r.stdout)
        for n in self.nodes:
            wait_for("%s gone from %s" % (wid, n.name),
                     lambda: wid not in self.listing(n), timeout=2)
        r = self.cli(self.nodes[0], "stop", "--id", wid)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no workload %s" % wid, r.stderr)
        # a web workload's route goes within 2 s too
        wid = self.spawn(self.nodes[2], "web", "--ports", "8081:8080")
        for n in self.nodes:
            wait_for("route on %s" % n.name, lambda: (lambda c: c[0] == 200)(
                curl("-H", "Host: %s.%s" % (wid, BASE), "http://%s:8081/" % n.addr)), 10)
        status, _, body = self.nodes[0].http("/stop", "POST", json.dumps({"id": wid}).encode())
        self.assertEqual(status, 200, body)
        self.assertIn(b'"response"', body)
        for n in self.nodes:
            wait_for("no route on %s" % n.name, lambda: (lambda c: c[0] != 200)(
                curl("-H", "Host: %s.%s" % (wid, BASE), "http://%s:8081/" % n.addr)), 2)

    def serf_agent(self, name):
        """A real `serf agent` on the host side joining node 1 with the
        cluster key (the first of node 1's keyring: the key it made); its
        handler appends the user events it gets to a file. Returns (process,
        serf(*args) running `serf ARGS` against its RPC, that file)."""
        handler = os.path.join(self.tmp, name + "-handler.sh")
        events = os.path.join(self.tmp, name + "-events")
        with open(handler, "w") as f:
            f.write("#!/bin/sh\n[ \"$SERF_EVENT\" = user ] && echo \"$SERF_USER_EVENT\" >> %s\n"
                    "exit 0\n" % events)
        os.chmod(handler, 0o755)
        with open(os.path.join(self.nodes[0].state_dir, "cluster-keyring.json")) as f:
            key = json.load(f)[0]
        port, rpc = hctest.free_port(), "127.0.0.1:%d" % hctest.free_port()
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        proc = subprocess.Popen(
            [SERF, "agent", "-node=" + name, "-bind=%s:%d" % (self.cluster.host_addr, port),
             "-rpc-addr=" + rpc, "-event-handler=" + handler, "-encrypt=" + key,
             "-join=%s:7946" % self.nodes[0].addr], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        Cluster.serfs.append(proc)

        def serf(*args):
            return subprocess.run([SERF, args[0], "-rpc-addr=" + rpc, *args[1:]],
                                  capture_output=True, encoding="utf-8", errors="replace",
                                  timeout=30)
        wait_for("%s sees 4 alive members" % name,
                 lambda: serf("members").stdout.count(" alive") == 4, 20)
        return proc, serf, events

    def serf_query(self, serf, payload, name="hypercore_query"):
        """{hypercore node: response payload} of a query a serf agent sends."""
        r = serf("query", "-format=json", "-timeout=2s", "-no-ack", name, payload)
        self.assertEqual(r.returncode, 0, r.stderr)
        responses = json.loads(r.stdout).get("Responses") or {}
        return {k: v for k, v in responses.items() if k in self.names.values()}

    def test_05_malformed_queries_and_events(self):
        before = self.metric(self.nodes[1], "hypercore_state_chunks_dropped_total")
        n1 = self.nodes[0]
        # The HTTP API does not speak for the cluster, not even to the admin:
        # its own names are refused (test_trust.py covers the rest).
        for path in ("/query?name=hypercore_query", "/event?name=hypercore_state_broadcast"):
            status, _, body = n1.http(path, "POST", b"\x0a\xff")
            self.assertEqual(status, 403, body)
        status, _, _ = n1.http("/event?name=big", "POST", b"x" * 4096)
        self.assertEqual(status, 413)  # oversized is refused at the source
        # A member can still send anything: a serf agent holding the key.
        proc, serf, _ = self.serf_agent("serf-probe")
        # queries: bad protobuf, a wrong Any type, an unknown event
        for payload in (b"\xff\xff\xff\xff", cluster_message(1, "VmStopRequest", field(1, "x")),
                        cluster_message(1, "VmSpawnRequest", b"\x0a\x05"),
                        cluster_message(2, "VmSpawnRequest", b"")):
            responses = self.serf_query(serf, payload)
            self.assertEqual(len(responses), 3, responses)
            for raw in responses.values():
                # event ERROR (0) is not written: the Any (field 2) comes first
                self.assertEqual(raw[:1], "\x12", raw)
        self.assertEqual(self.serf_query(serf, cluster_message(3, "BeaconAttestation", b"")), {})
        # user events: bad protobuf, no marker, a sender that is no member,
        # a part whose beginning never came
        name = self.names[1]
        for payload in (b"\x0a\xff", field(1, field(1, name)),
                        field(1, field(1, "ghost") + field(2, "u_complete")),
                        field(1, field(1, name) + field(2, "u_part"))):
            r = serf("event", "-coalesce=false", "hypercore_state_broadcast", payload)
            self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("chunks dropped on node 2", lambda: self.metric(
            self.nodes[1], "hypercore_state_chunks_dropped_total") >= before + 3, 10)
        for n in self.nodes:
            self.assertEqual(n.http("/healthz")[0], 200)
        self.assertIn(self.web, self.listing(self.nodes[1]))
        serf("leave")
        proc.wait(20)

    def test_065_exited_workload_restarted_by_its_node(self):
        wid = self.spawn(self.nodes[0], "exiter", "--env", "EXIT_AFTER=1")
        owner = wait_for("an owner", lambda: self.owner(wid), 5)
        node = self.node_of(owner)
        wait_for("two restarts", lambda: self.metric(node, "hypercore_restarts_total") >= 2, 30)
        # still the same workload, on the same node, listed everywhere
        for n in self.nodes:
            self.assertEqual(wait_for("listed on %s" % n.name,
                                      lambda: self.listing(n).get(wid), 10), [owner])
        r = wait_for("its output", lambda: (lambda r: r if "exiting with 3" in r.stdout
                                             else None)(self.cli(self.nodes[1], "logs", "--id",
                                                                 wid)), 15)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli(self.nodes[2], "stop", "--id", wid)
        self.assertEqual(r.returncode, 0, r.stderr)
        for n in self.nodes:
            wait_for("%s gone from %s" % (wid, n.name), lambda: wid not in self.listing(n), 5)

    def test_06_serf_agent_in_the_cluster(self):
        # the cluster is encrypted (node 1 made its key): the serf agent
        # joins with that key
        proc, serf, events = self.serf_agent("serf-peer")
        for n in self.nodes:
            wait_for("%s sees the serf agent" % n.name, lambda: any(
                m["name"] == "serf-peer" and m["status"] == "alive" for m in n.members()), 10)
        before = self.metric(self.nodes[2], "hypercore_foreign_events_total")
        r = serf("event", "deploy", "v2")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("the foreign event counted", lambda: self.metric(
            self.nodes[2], "hypercore_foreign_events_total") > before, 10)
        # hypercore's own broadcasts reach the serf agent as user events
        wait_for("a state broadcast at the serf agent", lambda: os.path.exists(events) and
                 "hypercore_state_broadcast" in open(events).read(), 10)
        # a serf query to hypercore_query gets ERROR answers, never a crash
        r = serf("query", "-timeout=3s", "hypercore_query", "garbage")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(r.stdout.count("Response from"), 3, r.stdout)
        # placement skips the member that is not a hypercore node
        wid = self.spawn(self.nodes[1], "web", "--ports", "8082:8080")
        self.assertIn(wait_for("an owner", lambda: self.owner(wid), 5), self.names.values())
        r = self.cli(self.nodes[1], "stop", "--id", wid)
        self.assertEqual(r.returncode, 0, r.stderr)
        serf("leave")
        proc.wait(20)

    def test_07_owner_killed_workload_respawned_once_and_once_again_after_its_return(self):
        wid = self.web
        owner = self.owner(wid)
        victim = self.node_of(owner)
        survivors = [n for n in self.nodes if n is not victim]
        victim.kill()
        # respawned on exactly one survivor, same id, so the same URL
        new_owner = wait_for("a new owner", lambda: (lambda o: o if o and o != owner else None)(
            self.owner(wid, via=survivors[0])), timeout=40)
        self.assertIn(new_owner, [self.names[n.index] for n in survivors])
        for n in survivors:
            wait_for("%s through %s again" % (wid, n.name), lambda: self.answers_http(n, wid),
                     timeout=15)
        time.sleep(3)  # a duplicate would have shown by now
        for n in survivors:
            self.assertEqual(self.listing(n).get(wid), [new_owner])
        respawns = sum(self.metric(n, "hypercore_respawns_total") for n in survivors)
        self.assertEqual(respawns, 1)
        # The failed node comes back; its copy outlived its agent in the
        # shims and is adopted, so two nodes claim the workload: the same
        # choice on both stops one copy, and it runs once again.
        victim.restart()
        self.assertTrue(victim.running())

        def settled():
            views = [self.listing(n).get(wid) for n in self.nodes]
            return views[0] if all(v == views[0] and v and len(v) == 1 for v in views) \
                else None
        try:
            keeper = wait_for("one owner on every node", settled, timeout=40)
        except AssertionError as e:
            views = {n.name: self.listing(n).get(wid) for n in self.nodes}
            tails = "\n".join("--- %s\n%s" % (n.name, "\n".join(
                x for x in n.log().splitlines()[-400:] if "module=cluster" in x)[-4000:])
                for n in self.nodes)
            raise AssertionError("%s\nviews: %r\n%s" % (e, views, tails)) from e
        stopped = sum(self.metric(n, "hypercore_duplicates_stopped_total") for n in self.nodes)
        self.assertGreaterEqual(stopped, 1)  # a failed stop is retried and counted again
        time.sleep(3)
        self.assertEqual(settled(), keeper)
        for n in self.nodes:
            wait_for("%s through %s after the return" % (wid, n.name),
                     lambda: self.answers_http(n, wid), timeout=15)

    def test_08_clean_shutdown(self):
        """The nodes still up leave and stop cleanly: exit status 0, nothing
        from the sanitizers (leaks included) in their logs."""
        for n in self.alive():
            self.assertEqual(n.stop(), 0, n.log()[-3000:])
            for word in ("Sanitizer", "runtime error", "double free"):
                self.assertNotIn(word, n.log())


if __name__ == "__main__":
    hctest.main()
