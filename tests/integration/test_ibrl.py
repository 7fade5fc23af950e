#!/usr/bin/python3
"""IBRL beacon (issue 17) end to end, agents and `serf agent`s on loopback:
`hypercore identity`; every state broadcast decoded by an upstream-style
decoder (Python's protobuf, which validates UTF-8 strings) with its beacon
and its state_signature checked here, independently of the agent's code,
over the canonical encoding docs/cluster.md defines; states a keyed serf
agent injects (unsigned, signed with a key of ours, signed with another
key) shown verified or unverified in `cluster list` and metrics, or
dropped and counted, by --ibrl-mode and the pinned keys."""

import base64
import hashlib
import json
import os
import struct
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import grpcstubs  # noqa: E402
import hctest  # noqa: E402
from serfagent import SERF, SerfAgent  # noqa: E402
from hctest import metric_values, wait_for  # noqa: E402

pb = None
ed25519 = serialization = None


def setUpModule():
    global pb, ed25519, serialization
    if not os.access(SERF, os.X_OK):
        raise unittest.SkipTest("%s is not installed" % SERF)
    try:
        from cryptography.hazmat.primitives import serialization as ser
        from cryptography.hazmat.primitives.asymmetric import ed25519 as ed
    except ImportError:
        raise unittest.SkipTest("python3-cryptography is not installed")
    ed25519, serialization = ed, ser
    _, pb, _ = grpcstubs.load()


def canonical_digest(node, addr, http_port, respawn, version, beacon, workloads):
    """docs/cluster.md, "Signed states": written from the document, not
    from the C code, so each checks the other."""
    h = hashlib.sha256(b"hypercore-state-v1\0")

    def field(b):
        h.update(struct.pack(">I", len(b)) + b)

    field(node.encode())
    field(addr.encode())
    h.update(struct.pack(">IBQ", http_port, 1 if respawn else 0, version))
    field(beacon.SerializeToString() if beacon is not None else b"")
    packed = sorted((w.id, w.SerializeToString()) for w in workloads)
    h.update(struct.pack(">I", len(packed)))
    for _, b in packed:
        field(b)
    return h.digest()


def raw_public(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def rejected(agent, reason):
    return metric_values(agent, "hypercore_ibrl_states_rejected_total").get(
        '{reason="%s"}' % reason, 0)


def trust_of(agent, node):
    """The trust `cluster list --json` shows for node; None if not listed."""
    r = agent.cli("cluster", "list", "--json", "--grpc-bind-addr", agent.grpc_addr)
    assert r.returncode == 0, r.stderr
    for st in json.loads(r.stdout).get("states", []):
        if st["node"]["id"] == node:
            return st.get("trust")
    return None


# The serf agents keep every state broadcast they receive, one file each.
SERF_HANDLER = ('[ "$SERF_USER_EVENT" = hypercore_state_broadcast ] || '
                '{{ cat >/dev/null; exit 0; }}\n'
                'mkdir -p {events} && cat > {events}/$(date +%s%N)-$$.bin\n')


def received_states(serf):
    """Every state broadcast serf received, oldest first."""
    if not os.path.isdir(serf.events):
        return []
    out = []
    for name in sorted(os.listdir(serf.events)):
        with open(os.path.join(serf.events, name), "rb") as f:
            out.append(f.read())
    return out


class Ibrl(hctest.TestCase):
    def setUp(self):
        super().setUp()
        self.serfs = []
        self.version = int(time.time() * 1000)

    def tearDown(self):
        for s in self.serfs:
            s.kill()
        super().tearDown()

    def serf(self, a, name="serf-peer"):
        key = json.load(open(os.path.join(a.state_dir, "cluster-keyring.json")))[0]
        s = SerfAgent(self.workdir, name, ("-encrypt=" + key,
                                           "-join=127.0.0.1:%d" % a.gossip_port),
                      handler=SERF_HANDLER)
        self.serfs.append(s)
        s.start()
        wait_for("%s a member of %s" % (name, a.name),
                 lambda: any(m["name"] == name and m["status"] == "alive"
                             for m in json.loads(a.http("/members")[2])["response"]), 30)
        return s

    def identity(self, a):
        r = hctest.run_cli("identity", "--state-dir", a.state_dir, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def state(self, name, key=None, beacon_key=None, wid=None):
        """A one-chunk state of member name, as a hypercore sender makes it:
        signed with key (None: unsigned), the beacon carrying beacon_key's
        public key (None: key's)."""
        self.version += 1000
        st = pb.NodeStateResponse(
            node=pb.Node(id=name, ip=str(uuid.uuid4()) + "_complete"),
            workloads=[pb.WorkloadState(id=wid or str(uuid.uuid4()),
                                        source_request=pb.VmSpawnRequest(
                                            cores=1, memory=64, image_ref="registry.test/a:1"))],
            node_addr="127.0.0.1", http_port=1, chunk_index=0, chunk_count=1,
            state_version=self.version)
        shown = beacon_key or key
        if shown is not None:
            pub = raw_public(shown)
            st.beacon.CopyFrom(pb.BeaconMetadata(
                beacon_node_id=pub[:8].hex(), node_signature=pub,
                timestamp=int(time.time()), reputation_score="1.0",
                node_capabilities=["container"], price_per_gb=0.01))
        if key is not None:
            digest = canonical_digest(name, st.node_addr, st.http_port, st.respawn,
                                      st.state_version,
                                      st.beacon if st.HasField("beacon") else None,
                                      st.workloads)
            st.state_signature = base64.b64encode(key.sign(digest)).decode()
        return st

    # ---- this node's identity and its broadcasts ----

    def test_identity_and_signed_broadcasts_an_upstream_decoder_accepts(self):
        a = self.agent("first")
        ident = self.identity(a)
        pub = base64.b64decode(ident["public_key"])
        self.assertEqual(len(pub), 32)
        self.assertEqual(ident["beacon_node_id"], pub[:8].hex())
        with open(os.path.join(a.state_dir, "node-id")) as f:
            self.assertEqual(ident["node_name"], f.read().strip())
        r = hctest.run_cli("identity", "--state-dir", a.state_dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(ident["public_key"], r.stdout)
        self.assertIn(ident["beacon_node_id"], r.stdout)
        r = hctest.run_cli("identity", "--state-dir", os.path.join(self.workdir, "none"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("node-id", r.stderr)

        s = self.serf(a)
        wait_for("a state broadcast of first's at the serf agent", lambda: received_states(s), 30)
        for payload in received_states(s):
            # the C++ protobuf runtime refuses strings that are not UTF-8,
            # as upstream's Go decoder does
            if payload.endswith(b"\n"):  # serf's handler adds a line end to stdin
                try:
                    pb.NodeStateResponse.FromString(payload)
                except Exception:
                    payload = payload[:-1]
            st = pb.NodeStateResponse.FromString(payload)
            self.assertEqual(st.node.id, ident["node_name"])
            b = st.beacon
            self.assertEqual(b.beacon_node_id, ident["beacon_node_id"])
            self.assertEqual(b.node_signature, pub)  # the key, as upstream puts it
            self.assertAlmostEqual(b.timestamp, time.time(), delta=120)
            self.assertEqual(b.reputation_score, "1.0")
            self.assertAlmostEqual(b.price_per_gb, 0.01)
            self.assertTrue(0 <= b.packet_loss <= 100)
            self.assertGreaterEqual(b.latency_ms, 0)
            self.assertEqual(list(b.node_capabilities), [])  # no runtime, no data plane
            self.assertEqual(len(st.state_signature), 88)
            digest = canonical_digest(st.node.id, st.node_addr, st.http_port, st.respawn,
                                      st.state_version, b, st.workloads)
            ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(
                base64.b64decode(st.state_signature), digest)  # raises if not
        # its own state in its list: verified, with its beacon
        r = a.cli("cluster", "list", "--json", "--grpc-bind-addr", a.grpc_addr)
        self.assertEqual(r.returncode, 0, r.stderr)
        own = json.loads(r.stdout)["states"][0]
        self.assertEqual(own["trust"], "verified")
        self.assertEqual(own["beacon"]["beacon_node_id"], ident["beacon_node_id"])
        self.assertEqual(metric_values(a, "hypercore_ibrl_beacon_connected"), {"": 0})
        self.assertCleanExit(a)

    # ---- what a node makes of others' states ----

    def test_verified_unverified_and_rejected(self):
        a = self.agent("first", extra_args=["--node-name", "first", "--ibrl-mode", "permissive"])
        # encrypted gossip: enforce
        b = self.agent("second", extra_args=["--node-name", "second", *a.join_args()])
        wait_for("first and second verified by each other",
                 lambda: trust_of(a, "second") == "verified" and
                 trust_of(b, "first") == "verified", 30)
        s = self.serf(a)
        # unsigned, from a node without a key (upstream's): permissive shows
        # it unverified, enforce drops it
        s.send_event("hypercore_state_broadcast", self.state("serf-peer").SerializeToString())
        wait_for("serf-peer unverified on first", lambda: trust_of(a, "serf-peer") ==
                 "unverified", 30)
        wait_for("serf-peer's unsigned state rejected on second",
                 lambda: rejected(b, "unsigned") >= 1, 30)
        self.assertIsNone(trust_of(b, "serf-peer"))
        self.assertEqual(metric_values(a, "hypercore_ibrl_node_verified"),
                         {'{node="second"}': 1, '{node="serf-peer"}': 0})
        table = a.cli("cluster", "list", "--grpc-bind-addr", a.grpc_addr)
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertRegex(table.stdout, r"second\s.*\bverified\b")
        self.assertRegex(table.stdout, r"serf-peer\s.*\bunverified\b")

        # signed with a key of ours: pinned on first use on both
        k1, k2 = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
        wid = str(uuid.uuid4())
        s.send_event("hypercore_state_broadcast", self.state("serf-peer", key=k1, wid=wid).SerializeToString())
        for n in (a, b):
            wait_for("serf-peer verified on %s" % n.name,
                     lambda n=n: trust_of(n, "serf-peer") == "verified", 30)
        pins = json.load(open(os.path.join(b.state_dir, "trusted-keys.json")))
        self.assertEqual(base64.b64decode(pins["serf-peer"]), raw_public(k1))
        self.assertEqual(base64.b64decode(pins["first"]),
                         base64.b64decode(self.identity(a)["public_key"]))
        # another key under that name, then unsigned again: both refused
        # everywhere, the workload the pinned key announced still listed
        s.send_event("hypercore_state_broadcast", self.state("serf-peer", key=k2).SerializeToString())
        s.send_event("hypercore_state_broadcast", self.state("serf-peer", key=k2, beacon_key=k1).SerializeToString())
        s.send_event("hypercore_state_broadcast", self.state("serf-peer").SerializeToString())
        for n in (a, b):
            wait_for("the forgeries counted on %s" % n.name,
                     lambda n=n: (rejected(n, "key_mismatch"), rejected(n, "bad_signature"),
                                  rejected(n, "unsigned") >= 1) == (1, 1, True), 30)
            r = n.cli("cluster", "list", "--json", "--grpc-bind-addr", n.grpc_addr)
            self.assertIn(wid, r.stdout)
            self.assertEqual(trust_of(n, "serf-peer"), "verified")
        self.assertEqual(metric_values(b, "hypercore_ibrl_keys_pinned"), {"": 2})
        self.assertCleanExit(b)
        self.assertCleanExit(a)

    def test_attest_a_member(self):
        """`cluster attest`: a member proves it holds its pinned key, fresh
        for the asker's nonce; a name nobody answers for fails."""
        a = self.agent("first", extra_args=["--node-name", "first"])
        b = self.agent("second", extra_args=["--node-name", "second", *a.join_args()])
        wait_for("first and second verified by each other",
                 lambda: trust_of(a, "second") == "verified" and
                 trust_of(b, "first") == "verified", 30)
        http = ["--http-bind-addr", "127.0.0.1:%d" % a.http_port]
        r = a.cli("cluster", "attest", *http, "--node", "second")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "second: verified")
        r = a.cli("cluster", "attest", *http, "--node", "nobody", "--timeout", "60")
        self.assertEqual(r.returncode, 1)
        self.assertIn("nobody", r.stderr)
        self.assertEqual(metric_values(a, "hypercore_ibrl_attestations_total").get(
            '{result="verified"}'), 1)
        self.assertCleanExit(b)
        self.assertCleanExit(a)

    def test_beacon_endpoint_checked(self):
        import http.server
        import threading

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/beacon/health" else 404)
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            url = "http://127.0.0.1:%d" % srv.server_address[1]
            up = self.agent("up", extra_args=["--beacon-endpoint", url + "/beacon"])
            wrong = self.agent("wrong", extra_args=["--beacon-endpoint", url])  # 404
            gone = self.agent("gone", extra_args=["--beacon-endpoint",
                                                  "127.0.0.1:%d" % hctest.free_port()])
            wait_for("the endpoint's health seen", lambda: metric_values(
                up, "hypercore_ibrl_beacon_connected") == {"": 1}, 20)
            time.sleep(1)
            for a in (wrong, gone):
                self.assertEqual(metric_values(a, "hypercore_ibrl_beacon_connected"), {"": 0})
            for a in (up, wrong, gone):
                self.assertCleanExit(a)
        finally:
            srv.shutdown()

    def test_trusted_keys_file(self):
        k1 = ed25519.Ed25519PrivateKey.generate()
        keys = os.path.join(self.workdir, "keys.json")
        with open(keys, "w") as f:
            json.dump({"serf-peer": base64.b64encode(raw_public(k1)).decode()}, f)
        a = self.agent("first", extra_args=["--node-name", "first", "--trusted-keys", keys])
        s = self.serf(a)
        k2 = ed25519.Ed25519PrivateKey.generate()
        s.send_event("hypercore_state_broadcast", self.state("serf-peer", key=k2).SerializeToString())
        wait_for("a key not in the file refused",
                 lambda: rejected(a, "key_mismatch") >= 1, 30)
        s.send_event("hypercore_state_broadcast", self.state("serf-peer", key=k1).SerializeToString())
        wait_for("the file's key verified", lambda: trust_of(a, "serf-peer") == "verified", 30)
        self.assertFalse(os.path.exists(os.path.join(a.state_dir, "trusted-keys.json")))
        self.assertCleanExit(a)
        with open(keys, "w") as f:
            f.write('{"serf-peer": "short"}')
        bad = self.agent("bad", extra_args=["--trusted-keys", keys], start=False)
        bad.start(wait=False)
        bad.proc.wait(timeout=20)
        self.assertNotEqual(bad.proc.returncode, 0)
        self.assertIn("keys.json", bad.log())


if __name__ == "__main__":
    hctest.main()
