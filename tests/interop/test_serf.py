#!/usr/bin/python3
"""hypercore nodes and real Debian `serf agent` processes in one cluster, on
loopback: membership both ways, events and queries both ways, failure and
graceful leave both ways, encryption (same key, wrong key, key rotation) and a
mixed cluster. The serf agents run without a key unless a test gives one, so
the hypercore nodes there run with --cluster-insecure. Every process is ended by PID, also when a test fails."""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
from serfagent import SerfAgent  # noqa: E402
from hctest import wait_for  # noqa: E402

KEY = "cg8StVXbQJ0gPvMd9o7yrg=="        # 16 bytes, base64, as `serf keygen` prints
KEY2 = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="  # 32 bytes
# hypercore nodes use serf's LAN timing so failures show within seconds.
FAST = ["--gossip-interval-ms", "200", "--probe-interval-ms", "1000", "--suspicion-mult", "4",
        "--gossip-nodes", "3"]


# Every user event appended to a file (one line: name and payload); queries
# answered with the agent's name.
SERF_HANDLER = ('if [ "$SERF_EVENT" = user ]; then\n'
                '  echo "$SERF_USER_EVENT $(cat)" >> {events}\n'
                'elif [ "$SERF_EVENT" = query ]; then\n'
                "  cat >/dev/null; printf 'serf-{name}-answers'\n"
                'fi\n')


def user_events(serf):
    # hypercore nodes' state broadcasts carry binary protobuf payloads
    return serf.read_events().decode(errors="replace").splitlines()


class Interop(hctest.TestCase):
    def setUp(self):
        super().setUp()
        self.serfs = []

    def tearDown(self):
        for s in self.serfs:
            s.kill()
        super().tearDown()

    def serf(self, name, *extra):
        s = SerfAgent(self.workdir, name, extra, handler=SERF_HANDLER)
        self.serfs.append(s)
        return s.start()

    def hc(self, name, join=(), extra=()):
        """A hypercore node; plaintext gossip (--cluster-insecure) like the
        serf agents here, unless extra gives it a key."""
        a = hctest.Agent(self.workdir, name)
        keyed = any(x in extra for x in ("--cluster-encrypt", "--cluster-keyring"))
        a.extra_args = ["--node-name", name, "--cluster-tag", "role=hypercore",
                        *([] if keyed else ["--cluster-insecure"]), *FAST, *extra, *join]
        self.agents.append(a)
        return a.start()

    def hc_members(self, agent):
        status, doc = agent.http_json("/members")
        self.assertEqual(status, 200)
        return {m["name"]: m for m in doc["response"]}

    def status_in_serf(self, serf, name):
        return serf.members().get(name, {}).get("status")

    def status_in_hc(self, agent, name):
        return self.hc_members(agent).get(name, {}).get("status")

    # 1 and 2
    def test_membership_both_ways(self):
        s = self.serf("serf1", "-tag", "role=web")
        h = self.hc("hc1", join=[s.addr])
        wait_for("serf to list hc1", lambda: self.status_in_serf(s, "hc1") == "alive", 15)
        self.assertEqual(s.members()["hc1"]["tags"], {"role": "hypercore"})
        self.assertEqual(self.hc_members(h)["serf1"]["tags"], {"role": "web"})
        # A serf agent joining the hypercore node.
        s2 = self.serf("serf2")
        s2.cli("join", "127.0.0.1:%d" % h.gossip_port, check=True)
        wait_for("hc1 to list serf2", lambda: self.status_in_hc(h, "serf2") == "alive", 15)
        r = h.cli("cluster", "members", "--http-bind-addr", "127.0.0.1:%d" % h.http_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"serf2\s+127\.0\.0\.1:%d\s+alive" % s2.port)
        self.assertCleanExit(h)

    # 3 and 4
    def test_user_events_both_ways_once(self):
        s = self.serf("serf1")
        h = self.hc("hc1", join=[s.addr])
        wait_for("join", lambda: self.status_in_serf(s, "hc1") == "alive", 15)
        s.cli("event", "deploy", "v42", check=True)
        wait_for("the event at hc1", lambda: "user event deploy" in h.log(), 10)
        r = h.cli("cluster", "event", "--http-bind-addr",
                  "127.0.0.1:%d" % h.http_port, "from-hc", "payload-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("the event at serf1", lambda: "from-hc payload-1" in user_events(s), 10)
        time.sleep(3)  # every retransmission has happened by now
        self.assertEqual(len(re.findall(r"user event deploy ", h.log())), 1)
        self.assertEqual(user_events(s).count("from-hc payload-1"), 1)
        self.assertCleanExit(h)

    # 5
    def test_queries_both_ways(self):
        s = self.serf("serf1")
        h = self.hc("hc1", join=[s.addr])
        wait_for("join", lambda: self.status_in_serf(s, "hc1") == "alive", 15)
        out = s.cli("query", "-format=json", "-timeout=3s", "hypercore-info", "", check=True).stdout
        doc = json.loads(out)
        self.assertIn("hc1", doc["Acks"])
        info = json.loads(doc["Responses"]["hc1"])
        self.assertEqual(info["name"], "hc1")
        self.assertRegex(info["node_id"], r"^[0-9a-f-]{36}$")
        r = h.cli("cluster", "query", "--json", "--timeout", "3", "--http-bind-addr",
                  "127.0.0.1:%d" % h.http_port, "ask-serf", "hello")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertIn("serf1", got["acks"])
        self.assertIn({"from": "serf1", "payload": "serf-serf1-answers"}, got["responses"])
        self.assertCleanExit(h)

    # 6
    def test_failure_detection_both_ways(self):
        s1 = self.serf("serf1")
        s2 = self.serf("serf2", "-join", s1.addr)
        h = self.hc("hc1", join=[s1.addr])
        wait_for("convergence", lambda: self.status_in_hc(h, "serf2") == "alive", 15)
        t0 = time.monotonic()
        s2.kill(signal.SIGKILL)
        wait_for("hc1 to see serf2 fail", lambda: self.status_in_hc(h, "serf2") == "failed", 30)
        print("# hypercore saw the SIGKILLed serf agent as failed after %.1f s" %
              (time.monotonic() - t0))
        t0 = time.monotonic()
        h.kill()
        wait_for("serf1 to see hc1 fail", lambda: self.status_in_serf(s1, "hc1") == "failed", 30)
        print("# serf saw the SIGKILLed hypercore node as failed after %.1f s" %
              (time.monotonic() - t0))

    # 7
    def test_graceful_leave_both_ways(self):
        s1 = self.serf("serf1")
        s2 = self.serf("serf2", "-join", s1.addr)
        h = self.hc("hc1", join=[s1.addr])
        h2 = self.hc("hc2", join=[s1.addr])
        wait_for("convergence", lambda: self.status_in_hc(h, "serf2") == "alive" and
                 self.status_in_serf(s1, "hc2") == "alive", 15)
        s2.cli("leave", check=True)
        wait_for("hc1 to see serf2 leave", lambda: self.status_in_hc(h, "serf2") == "left", 15)
        self.assertCleanExit(h2)  # SIGTERM: leave, then exit
        wait_for("serf1 to see hc2 leave", lambda: self.status_in_serf(s1, "hc2") == "left", 15)
        time.sleep(3)
        self.assertEqual(self.status_in_serf(s1, "hc2"), "left")
        self.assertCleanExit(h)

    # 8
    def test_encryption_same_key_wrong_key_and_rotation(self):
        s = self.serf("serf1", "-encrypt=" + KEY)
        keyring = os.path.join(self.workdir, "hc1-keyring.json")
        h = self.hc("hc1", join=[s.addr], extra=["--cluster-encrypt", KEY,
                                                "--cluster-keyring", keyring])
        wait_for("encrypted join", lambda: self.status_in_serf(s, "hc1") == "alive", 15)
        bad = self.hc("hc-bad", join=[s.addr], extra=["--cluster-encrypt", KEY2])
        time.sleep(4)
        self.assertNotIn("hc-bad", s.members())
        # It says why, in words an operator can act on.
        self.assertRegex(bad.log(), r"join with 127\.0\.0\.1:\d+ failed: .*(key|hung up)")
        # Five attempts a second apart: the verdict comes after the last.
        wait_for("the join verdict", lambda: "could not join any seed" in bad.log(), 10)
        bad.stop()
        # Rotation driven from the serf side reaches the hypercore node.
        s.cli("keys", "-install", KEY2, check=True)
        s.cli("keys", "-use", KEY2, check=True)
        s.cli("keys", "-remove", KEY, check=True)
        listed = s.cli("keys", "-list", check=True).stdout
        self.assertIn(KEY2, listed)
        self.assertNotIn(KEY, listed)
        with open(keyring) as f:
            self.assertEqual(json.load(f), [KEY2])
        time.sleep(3)
        self.assertEqual(self.status_in_serf(s, "hc1"), "alive")
        self.assertEqual(self.status_in_hc(h, "serf1"), "alive")
        self.assertCleanExit(h)

    # 9
    def test_mixed_cluster_converges(self):
        s1 = self.serf("serf1")
        s2 = self.serf("serf2", "-join", s1.addr)
        hs = [self.hc("hc%d" % i, join=[s1.addr if i % 2 else s2.addr]) for i in range(3)]
        names = {"serf1", "serf2", "hc0", "hc1", "hc2"}

        def converged():
            views = [s1.members(), s2.members()] + [self.hc_members(h) for h in hs]
            return all({n for n, m in v.items() if m["status"] == "alive"} == names
                       for v in views)
        t0 = time.monotonic()
        wait_for("5 alive members everywhere", converged, 20)
        print("# 2 serf + 3 hypercore converged in %.1f s" % (time.monotonic() - t0))
        for h in hs:
            self.assertCleanExit(h)


if __name__ == "__main__":
    hctest.main()
