#!/usr/bin/python3
"""The bounded subset of `make chaos` that `make check` runs: on 3 nodes in
network namespaces with respawn on, SIGKILL of a node, a partition of one
node and an agent killed at a fault point in the middle of a spawn (after
the container started, before it was announced). After each, every workload
runs exactly once, answers through every live node, no route points at a
node that is down and nothing leaked; then the failed node comes back and
all of that holds on every node. tests/lib/chaoslib.py has the scenarios;
tests/chaos/chaos.py runs all of them."""

import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import chaoslib  # noqa: E402
import hctest  # noqa: E402


class Chaos(unittest.TestCase):
    """One cluster for the module; scenarios run in name order, each from
    a healthy cluster and leaving one."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hc-chaos-")
        cls.ch = chaoslib.Chaos(cls.tmp, nodes=3, prefix="hctc", subnet=247,
                                log=lambda m: print("# " + m, flush=True))
        try:
            cls.ch.start()
            cls.nodes = cls.ch.nodes  # their logs on failure (hctest.agents_of)
            cls.ch.spread(3)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.ch.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_kill_one(self):
        chaoslib.kill_one(self.ch)
        self.assertEqual(self.ch.results[-1][0], "kill_one")
        # the victim came back with the maps its last run left: the routes
        # to the other nodes' workloads stay until their states are in
        victim = [nd for nd in self.ch.nodes if nd.log().count(" ready: node ") > 1]
        self.assertEqual(len(victim), 1)

        def since_restart():
            t = victim[0].log()
            return t[t.rfind("keeping the last run's"):]

        log = hctest.wait_for("the restarted agent's carried routes released", lambda: (
            lambda t: t if "no route of the last run carried" in t else None)(since_restart()),
            timeout=30)
        carried = re.match(r"keeping the last run's (\d+) routes to (\d+) other nodes", log)
        self.assertIsNotNone(carried, log[-3000:])
        self.assertGreater(int(carried.group(1)), 0)
        until = log[:log.index("no route of the last run carried")]
        deleted = [int(m) for m in re.findall(r"map sync: routes \+\d+ ~\d+ -(\d+)", until)]
        self.assertEqual(sum(deleted), 0, until[-3000:])

    def test_2_partition_one(self):
        chaoslib.partition_one(self.ch)
        self.assertEqual(self.ch.results[-1][0], "partition_one")

    def test_3_fault_mid_spawn(self):
        chaoslib.fault_points(self.ch, ["spawn:before_announce"])
        self.assertEqual(self.ch.results[-1][0], "spawn:before_announce")

    def test_4_clean_shutdown(self):
        for nd in self.ch.live():
            self.assertEqual(nd.stop(), 0, nd.log()[-3000:])
            for word in hctest.SANITIZER_MARKS:
                self.assertNotIn(word, nd.log())


if __name__ == "__main__":
    hctest.main()
