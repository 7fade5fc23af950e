#!/usr/bin/python3
"""`make chaos`: fault scenarios, one after another, on a 5-node hypercore
cluster in network namespaces (tools/netcluster.py) with web workloads spread
over it and respawn on; each prints its time to recover (the checks of
tests/lib/chaoslib.py hold again among the surviving nodes) and to heal (the
failed nodes back, the checks hold on all). Five nodes: with two killed at
once, three still place and respawn (the cluster needs no quorum, but a
respawn needs a live node with room).

Usage: tests/chaos/chaos.py [--build build] [--only SUBSTRING ...] [--nodes 5]
       [--workloads 6] [--prefix hch] [--subnet 232] [--list] [--keep-going]
       [--keep-logs DIR]
Needs root; tears everything down, also on failure or ^C. Exit status 0 when
every scenario passed.
"""

import argparse
import os
import signal
import sys
import tempfile
import time
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))


def keep_logs(ch, where, scenario):
    """The whole logs of a failed scenario's nodes, for reading later (the
    run's directory is removed at the end)."""
    os.makedirs(where, exist_ok=True)
    for nd in ch.nodes:
        dest = os.path.join(where, "%s-%s.log" % (scenario, nd.name))
        with open(dest, "w") as f:
            f.write(nd.log())
    print("chaos: logs of %s kept in %s" % (scenario, where), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                   help="run the scenarios whose name contains it (repeatable)")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--workloads", type=int, default=6)
    p.add_argument("--prefix", default="hch")
    p.add_argument("--subnet", type=int, default=232)
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--keep-logs", metavar="DIR",
                   help="after a failed scenario, copy every node's whole log into DIR")
    p.add_argument("--keep-going", action="store_true",
                   help="after a failed scenario, try to heal and go on")
    args = p.parse_args()
    build = os.path.abspath(os.path.join(ROOT, args.build))
    os.environ["HC_BIN"] = os.path.join(build, "hypercore")
    import chaoslib  # after HC_BIN: hctest finds the binary by it

    shim = os.path.join(build, "tests", "chaos", "libclockshift.so")
    plan = chaoslib.scenarios(shim if os.path.exists(shim) else None)
    if args.only:
        plan = [(n, f) for n, f in plan if any(o in n for o in args.only)]
    if args.list:
        for n, _ in plan:
            print(n)
        return 0
    if not os.path.exists(shim):
        print("chaos: %s missing: clock_back skipped (make chaos builds it)" % shim)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    tmp = tempfile.mkdtemp(prefix="hc-chaos-")
    failed = []
    t0 = time.monotonic()
    ch = chaoslib.Chaos(tmp, nodes=args.nodes, prefix=args.prefix, subnet=args.subnet,
                        log=lambda m: print("chaos: " + m, flush=True))
    try:
        ch.start()
        ch.spread(args.workloads)
        for name, fn in plan:
            try:
                ch.run(name, fn)
            except (chaoslib.Failed, RuntimeError, AssertionError) as e:
                failed.append(name)
                print("chaos: FAILED %s: %s" % (name, e), flush=True)
                for nd in ch.nodes:
                    print("chaos: --- %s log tail\n%s" % (nd.name, nd.log()[-3000:]))
                if args.keep_logs:
                    keep_logs(ch, args.keep_logs, name)
                if not args.keep_going:
                    break
                for nd in ch.nodes:  # disarmed: a fault point or a clock shim
                    if nd.env and nd.running():
                        nd.stop()
                ch.heal(name + " (after failure)", [nd for nd in ch.nodes if not nd.running()])
    except KeyboardInterrupt:
        failed.append("interrupted")
    finally:
        ch.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("chaos: %-28s %10s %10s" % ("scenario", "recover s", "heal s"))
    for name, rec, heal in ch.results:
        print("chaos: %-28s %10.1f %10.1f" % (name, rec, heal))
    print("chaos: %d passed, %d failed%s in %.0f s" % (
        len(ch.results), len(failed), (" (" + ", ".join(failed) + ")") if failed else "",
        time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
