#!/usr/bin/python3
"""`make demo`: a 3-node hypercore cluster in network namespaces on this
machine (tools/netcluster.py), a local registry with the test images, and
the example web workload spawned on it; prints its URL and how to reach it
through each node, then runs `hypercore cluster top` until q or ^C, and
removes everything (namespaces, agents, containers, pins, the work
directory), also on ^C, SIGTERM or any error.

    tools/demo.py [--check] [--workdir DIR] [--prefix P] [--subnet X]

--check: no live view: checks that every node serves the workload, prints
one `cluster top --once` frame, tears down and exits 0 (1 on a failure).
Needs root and a build (make all).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from netcluster import HC_BIN, NetCluster  # noqa: E402

BASE = "demo.test"


def say(msg):
    try:
        print("demo: %s" % msg, flush=True)
    except OSError:
        pass  # a closed pipe (a ^C'd tee) must not stop the teardown


def curl(node_addr, host):
    """(HTTP status, body) of GET / through the node's proxy on port 80."""
    r = subprocess.run(["curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", "-H",
                        "Host: " + host, "http://%s/" % node_addr],
                       capture_output=True, text=True)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def spawn_web(cluster):
    n1 = cluster.node(1)
    r = n1.cli("cluster", "spawn", "--grpc-bind-addr", n1.grpc_addr, "--image-ref",
               cluster.images["web"], "--mem", "32", "--ports", "80:8080", timeout=180)
    if r.returncode != 0:
        raise RuntimeError("cluster spawn: %s" % r.stderr.strip())
    wid, url = r.stdout.split()
    return wid, url


def wait_served(cluster, host, timeout=60):
    """Until every node's proxy answers for host (the state broadcast has
    reached them all)."""
    deadline = time.monotonic() + timeout
    while True:
        codes = [curl(n.addr, host)[0] for n in cluster.nodes]
        if all(c == 200 for c in codes):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("not served by every node after %ds: %s" % (timeout, codes))
        time.sleep(0.5)


def show(cluster, wid, url):
    n1 = cluster.node(1)
    print()
    print("The cluster: 3 nodes at %s, each serving every workload on port 80."
          % ", ".join(n.addr for n in cluster.nodes))
    print("The web workload %s is at http://%s/ ; through each node:" % (wid, url))
    for n in cluster.nodes:
        print("    curl -H 'Host: %s' http://%s/" % (url, n.addr))
    print("The API token: export HYPERCORE_TOKEN=%s" % n1.token())
    print("and then, e.g.: %s cluster list --grpc-bind-addr %s" %
          (os.path.relpath(HC_BIN), n1.grpc_addr))
    print(flush=True)


def top(cluster, once):
    n1 = cluster.node(1)
    argv = [HC_BIN, "cluster", "top", "--http-bind-addr",
            n1.http_addr] + (["--once"] if once else [])
    env = dict(os.environ, HYPERCORE_TOKEN=n1.token())
    if once:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        print(r.stdout, end="")
        if r.returncode != 0:
            raise RuntimeError("cluster top --once: %s" % r.stderr.strip())
        return r.stdout
    # top gets the terminal; ^C reaches it and us (one process group):
    # wait for it to restore the terminal before tearing down
    p = subprocess.Popen(argv, env=env)
    while True:
        try:
            return p.wait()
        except KeyboardInterrupt:
            continue


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="no live view; check and tear down")
    ap.add_argument("--workdir", help="where the nodes keep their state (default: a new temp dir)")
    ap.add_argument("--prefix", default="hcdemo", help="names of namespaces and links")
    ap.add_argument("--subnet", type=int, default=247, help="the cluster's 10.X.0.0/24")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo: needs root (network namespaces, BPF, containerd)")
    # SIGTERM tears down like ^C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    parent = tempfile.mkdtemp(prefix="hc-demo-") if not args.workdir else None
    workdir = args.workdir or os.path.join(parent, "cluster")
    cluster = NetCluster(3, workdir, prefix=args.prefix, subnet=args.subnet, registry=True,
                         base_url=BASE)
    status = 0
    try:
        t0 = time.monotonic()
        say("starting 3 nodes, a registry and their containerds in %s (takes a while)" % workdir)
        cluster.start()
        say("cluster up in %.0fs; spawning the web workload" % (time.monotonic() - t0))
        wid, url = spawn_web(cluster)
        wait_served(cluster, url)
        show(cluster, wid, url)
        if args.check:
            frame = top(cluster, once=True)
            if wid not in frame or frame.count(" alive ") != 3:
                raise RuntimeError("cluster top does not show 3 alive nodes and %s" % wid)
            say("check passed")
        else:
            say("cluster top follows (q quits, ^C too); everything is removed after it")
            time.sleep(2)
            top(cluster, once=False)
    except KeyboardInterrupt:
        say("interrupted")
        status = 130
    except Exception as e:  # one line, then the teardown
        say("failed: %s" % e)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second ^C must not stop the cleanup
        say("removing the cluster")
        cluster.stop()
        if parent:
            subprocess.run(["rm", "-rf", parent])
        say("done")
    return status


if __name__ == "__main__":
    sys.exit(main())
