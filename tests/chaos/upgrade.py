#!/usr/bin/python3
"""Rolling upgrade: a cluster of the previous release keeps serving while its
nodes are replaced one by one by this build.

The previous release is a commit (there are no release tags): --from REV,
default `git merge-base HEAD origin/main` when an origin exists, else
3b94917, the last landed release. It is built in a temporary `git worktree`
(removed at the end, also on failure) with `make all`, which takes minutes on
a small machine; --from-build DIR uses a build made earlier instead.

Then --nodes agents of that build (netcluster, respawn on) run --workloads
web workloads; a prober requests every workload through every running
node's proxy, over and over. Node by node, the old agent stops (SIGTERM, as
a package upgrade does: its workloads keep running in their shims) and this
build's agent starts with the same state dir, adopts them, and the cluster
must be healthy again (tests/lib/chaoslib.py's checks) before the next.
Failed probes are counted against nodes that were up; the run fails on any
probe failure outside a replaced node's own restart window, on a workload
lost or duplicated, or on a leak. One kind is counted apart and printed, not
failed: through an agent of the previous release, of a workload the node
being replaced owns, while it is replaced. Releases before 5cc782b forget a
leaving node's routes at once (this one keeps them 30 s), and nothing the
new build does changes what an old agent routes. A spawn and a stop
through a new node against an old one, and the reverse, check the mixed cluster; those two
workloads are probed once every node routes them and until their stop is
asked (a spawn is answered before the other nodes have the new route, and a
workload being stopped stops answering: neither is the upgrade's doing).

The first map sync of every new agent must delete no route and no node port
(nothing is stopped meanwhile: one deleted belongs to a workload that still
runs). Every
failed probe is printed with when it failed (seconds since the prober
started) and what the upgrade was doing then; --keep-logs DIR keeps every
node's agent.log (both its agents') there.

Usage: tests/chaos/upgrade.py [--from REV | --from-build DIR] [--build build]
       [--nodes 3] [--workloads 4] [--prefix hcu] [--subnet 235] [--keep-logs DIR]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
LAST_RELEASE = "3b94917"


def default_from():
    r = subprocess.run(["git", "-C", ROOT, "merge-base", "HEAD", "origin/main"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else LAST_RELEASE


def build_previous(rev, tmp):
    """Builds rev in a temporary worktree; returns (its hypercore, worktree)."""
    wt = os.path.join(tmp, "prev")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", wt, rev], check=True,
                   capture_output=True)
    print("upgrade: building %s in %s" % (rev, wt), flush=True)
    t0 = time.monotonic()
    r = subprocess.run(["make", "-C", wt, "-j2", "all"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("building %s failed:\n%s" % (rev, r.stdout[-3000:] + r.stderr[-3000:]))
    print("upgrade: built in %.0f s" % (time.monotonic() - t0), flush=True)
    return os.path.join(wt, "build", "hypercore"), wt


class Prober(threading.Thread):
    """Requests every expected workload through every running node."""

    def __init__(self, ch):
        super().__init__(daemon=True)
        self.ch = ch
        self.stopping = False
        self.ok = 0
        self.failed = []  # (time, node, workload, the node being replaced or None, phase)
        self.excused = set()  # node names being replaced: their failures are expected
        # The previous release forgets a node's routes as soon as it leaves
        # (this one keeps them LEFT_GRACE_MS): while a node is replaced, an
        # old agent does not route its workloads. Those failures (through an
        # old agent, of a workload the node being replaced owns) are
        # counted apart; with --from this same build there are none.
        self.old_bin = None
        self.replaced_owns = set()
        self.old_leave = []  # failures of that kind, as self.failed
        self.phase = "start"  # what the main thread is doing, for the report
        # The mixed phase's own workloads, from their spawn until every node
        # routes them and from their stop on: a spawn is answered before the
        # other nodes have the new workload's route (its owner's next state,
        # 0.1-0.5 s), and a workload being stopped stops answering; neither
        # is the upgrade's doing.
        self.skip = set()
        self.t0 = time.monotonic()

    def run(self):
        import chaoslib
        while not self.stopping:
            for nd in list(self.ch.live()):
                for wid in sorted(self.ch.expected - self.skip):
                    if chaoslib.answers(nd, wid, timeout=2):
                        self.ok += 1
                    elif nd.running() and nd.name not in self.excused and \
                            wid in self.ch.expected and wid not in self.skip:
                        old_leave = nd.bin == self.old_bin and wid in self.replaced_owns
                        (self.old_leave if old_leave else self.failed).append(
                            (time.monotonic(), nd.name, wid,
                             next(iter(self.excused), None), self.phase))
            time.sleep(0.1)


def first_sync_deletes(nd):
    """(routes, node ports) the first map sync of nd's newest agent deleted,
    from its log. None when there was none. Nothing is stopped during an
    upgrade: any deletion withdrew a route or node port of a workload that
    still runs (requests to it failed until the next sync)."""
    with open(nd.log_path, errors="replace") as f:
        lines = f.read().splitlines()
    ready = max((i for i, l in enumerate(lines) if " ready: node " in l), default=None)
    if ready is None:
        return None
    for l in lines[ready:]:
        m = re.search(r"map sync: routes \+\d+ ~\d+ -(\d+), node ports \+\d+ ~\d+ -(\d+)", l)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def keep_logs(ch, to):
    os.makedirs(to, exist_ok=True)
    for nd in ch.nodes:
        if os.path.exists(nd.log_path):
            shutil.copy(nd.log_path, os.path.join(to, "%s.log" % nd.name))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--from", dest="rev", help="the previous release's commit")
    g.add_argument("--from-build", help="a build dir of the previous release")
    p.add_argument("--build", default="build")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--workloads", type=int, default=4)
    p.add_argument("--prefix", default="hcu")
    p.add_argument("--subnet", type=int, default=235)
    p.add_argument("--keep-logs", metavar="DIR", help="copy every node's agent.log here")
    args = p.parse_args()
    new_bin = os.path.join(os.path.abspath(os.path.join(ROOT, args.build)), "hypercore")
    os.environ["HC_BIN"] = new_bin
    import chaoslib

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    tmp = tempfile.mkdtemp(prefix="hc-upgrade-")
    wt = None
    ch = None
    ok = True
    try:
        if args.from_build:
            old_bin = os.path.join(os.path.abspath(args.from_build), "hypercore")
            rev = "(build %s)" % args.from_build
        else:
            rev = args.rev or default_from()
            old_bin, wt = build_previous(rev, tmp)
        ch = chaoslib.Chaos(os.path.join(tmp, "chaos"), nodes=args.nodes, prefix=args.prefix,
                            subnet=args.subnet, log=lambda m: print("upgrade: " + m, flush=True))
        # every node starts as the previous release
        ch.cluster.extra_args = list(ch.cluster.extra_args)
        orig_start = ch.cluster._start_agents

        def start_old(timeout):
            for nd in ch.cluster.nodes:
                nd.bin = old_bin
            orig_start(timeout)
        ch.cluster._start_agents = start_old
        ch.start()
        print("upgrade: %d nodes of %s" % (args.nodes, rev), flush=True)
        ch.spread(args.workloads)
        prober = Prober(ch)
        prober.old_bin = old_bin if os.path.realpath(old_bin) != os.path.realpath(new_bin) \
            else None
        prober.start()
        for nd in ch.nodes:
            t0 = time.monotonic()
            prober.replaced_owns = {w for w, owners in ch.owners().items()
                                    if ch.names[nd.index] in owners}
            prober.excused.add(nd.name)
            prober.phase = "%s stopping" % nd.name
            nd.stop()
            nd.bin = new_bin
            prober.phase = "%s starting" % nd.name
            ch.restart(nd)
            prober.phase = "%s started, waiting for health" % nd.name
            ch.cluster.wait_members(timeout=chaoslib.RECOVER_TIMEOUT)
            took = ch.wait_healthy("after replacing %s" % nd.name, t0)
            prober.excused.discard(nd.name)
            prober.replaced_owns = set()
            deleted = first_sync_deletes(nd)
            if deleted and any(deleted):
                raise chaoslib.Failed("%s's new agent withdrew %d routes and %d node ports of "
                                      "running workloads in its first map sync"
                                      % (nd.name, deleted[0], deleted[1]))
            prober.phase = "after %s, checking leaks" % nd.name
            ch.check_leaks("after replacing %s" % nd.name)
            prober.phase = "after %s" % nd.name
            print("upgrade: %s replaced, healthy %.1f s after its old agent stopped"
                  % (nd.name, took), flush=True)
            if nd is ch.nodes[0]:
                # mixed cluster: a spawn through the new node onto an old one,
                # and one through an old node onto the new one, then stops
                prober.phase = "mixed spawns"
                a, b = str(uuid.uuid4()), str(uuid.uuid4())
                prober.skip |= {a, b}
                ch.spawn(via=nd, on=ch.nodes[-1].index, wid=a)
                ch.spawn(via=ch.nodes[-1], on=nd.index, wid=b)
                ch.wait_healthy("mixed spawns", time.monotonic())
                prober.skip -= {a, b}
                time.sleep(3)  # probed through every node while they run
                prober.phase = "mixed stops"
                prober.skip |= {a, b}
                ch.stop_workload(a, via=ch.nodes[-1])
                ch.stop_workload(b, via=nd)
                ch.settle("mixed stops")
                print("upgrade: spawn and stop across versions work", flush=True)
        time.sleep(2)
        prober.stopping = True
        prober.join(30)
        print("upgrade: %d probes answered, %d failed through nodes that were up"
              % (prober.ok, len(prober.failed)))
        during = {}
        for _, _, _, replacing, _ in prober.failed:
            during[replacing] = during.get(replacing, 0) + 1
        for replacing, n in sorted(during.items(), key=lambda kv: str(kv[0])):
            print("upgrade:   %d while %s" % (n, "%s was replaced" % replacing if replacing
                                              else "no node was replaced"))
        for t, name, wid, replacing, phase in prober.failed[:20]:
            print("upgrade:   %6.1f s: failed through %s: %s (%s)"
                  % (t - prober.t0, name, wid, phase))
        if prober.old_leave:
            first = {}
            for t, name, wid, replacing, phase in prober.old_leave:
                span = first.setdefault((replacing, name), [t, t, 0])
                span[1], span[2] = t, span[2] + 1
            print("upgrade: %d more failed through agents of the previous release, of the "
                  "workloads of the node being replaced (that release forgets a leaving "
                  "node's routes at once; docs/operations.md, \"Rolling upgrades\"):"
                  % len(prober.old_leave))
            for (replacing, name), (a, b, n) in sorted(first.items(), key=lambda kv: kv[1][0]):
                print("upgrade:   %d through %s while %s was replaced, %.1f-%.1f s"
                      % (n, name, replacing, a - prober.t0, b - prober.t0))
        ok = not prober.failed
    except (chaoslib.Failed, RuntimeError, AssertionError, subprocess.CalledProcessError) as e:
        print("upgrade: FAILED: %s" % e)
        ok = False
    except KeyboardInterrupt:
        print("upgrade: interrupted")
        ok = False
    finally:
        if ch:
            if args.keep_logs:  # before the teardown, which may remove them
                keep_logs(ch, args.keep_logs)
            ch.stop()
        if wt:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", wt],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print("upgrade: %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
