#!/usr/bin/python3
"""Runs every hypercore test suite against one or more builds and prints one
summary line, "N passed, N failed, N skipped".

Each test program speaks TAP: the cmocka unit and BPF program tests
(CMOCKA_MESSAGE_OUTPUT=TAP), the Python integration tests
(tests/lib/hctest.py) and the checks of the source tree (tests/source,
once per run: the layer check). A program that crashes, hangs past its time limit or
prints fewer results than it planned counts as a failure of its own, so
nothing can pass by dying quietly.

The unit, BPF and fuzz programs run against every build given. The
integration and interop suites start real agents and take most of the time, so
they run once, against the last build given (make check: the clang build with
ASan and UBSan, which checks everything the plain build would and memory
errors besides); --integration-all runs them against every build. The fuzz
harnesses are single-threaded and independent: they run side by side, one
per CPU.

Usage: tests/run.py --build build [--build build/asan] [--only SUBSTRING]
                    [--integration-all]
"""

import argparse
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"  # Debian's, the one with python3-grpcio

# cmocka writes a skip as "not ok 3 # SKIP name", hctest.py as "ok 3 - name
# # SKIP reason": the directive may follow the number directly.
TAP_RESULT = re.compile(r"^(not ok|ok)\b(?:\s+(\d+))?(?:\s+-)?\s*(.*?)(?:\s*#\s*(SKIP|TODO)\b(.*))?$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)")

# Sanitizers: stop at the first error and make it visible in the output.
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=86",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    "LSAN_OPTIONS": "suppressions=" + os.path.join(ROOT, "tests/lsan.supp") + ":print_suppressions=0",
}


class Totals:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []


def suites(build, first=True, integration=True):
    """(kind, name, argv, timeout_s) for every test program of a build;
    first: the first build of the run, which also runs the checks of the
    source tree (tests/source), since they read no build; integration: whether
    the suites that start agents run against this build."""
    if first:
        d = os.path.join(ROOT, "tests", "source")
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
            if name.startswith("test_") and name.endswith(".py"):
                yield "source", name, [PYTHON, os.path.join(d, name)], 60
    # "bpf": the BPF program tests (BPF_PROG_TEST_RUN); they need root and
    # report every case as skipped, with the reason, without it.
    for kind in ("unit", "bpf"):
        d = os.path.join(build, "tests", kind)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if name.startswith("test_") and os.access(path, os.X_OK) and not name.endswith(".d"):
                yield kind, name, [path], 300
    for kind in ("integration", "interop") if integration else ():
        d = os.path.join(ROOT, "tests", kind)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.startswith("test_") and name.endswith(".py"):
                yield kind, name, [PYTHON, os.path.join(d, name)], 900
    fuzz = os.path.join(build, "fuzz")
    if os.path.isdir(fuzz):
        for name in sorted(os.listdir(fuzz)):
            path = os.path.join(fuzz, name)
            if name.startswith("fuzz_") and os.access(path, os.X_OK):
                yield "fuzz", name, [os.path.join(ROOT, "tools", "fuzz.sh"), path], 300


def run_program(argv, env, timeout):
    """Runs one test program in its own process group; returns (rc, output)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = "timeout after %ds" % timeout
    return rc, out.decode("utf-8", "replace"), time.monotonic() - start


def parse_tap(output):
    """Returns (plan or None, [(ok, name, skipped, diagnostics)]): a result's
    diagnostics are the "#" lines right after it (hctest.py prints there a
    failure's traceback, the time it took and its agents' logs)."""
    plan, results, block = None, [], None
    for line in output.splitlines():
        m = TAP_PLAN.match(line.strip())
        if m and plan is None:
            plan = int(m.group(1))
            block = None
            continue
        m = TAP_RESULT.match(line.strip())
        if m:
            ok = m.group(1) == "ok"
            # TODO: a known failure, reported but not failing the run.
            skipped = m.group(4) in ("SKIP", "TODO")
            name = m.group(3).strip() or (m.group(5) or "").strip() or "#%s" % m.group(2)
            if m.group(4) == "TODO":
                name += " [known failure: %s]" % (m.group(5) or "").strip()
            block = []
            results.append((ok or skipped, name, skipped, block))
        elif block is not None and line.lstrip().startswith("#"):
            block.append(line)
        else:
            block = None  # anything else ends the block
    return plan, results


def record(totals, label, ok, skipped, output=None, diagnostics=()):
    """Counts one result; a failure's diagnostics follow its FAIL line."""
    if skipped:
        totals.skipped += 1
        print("SKIP %s" % label, flush=True)
    elif ok:
        totals.passed += 1
        print("PASS %s" % label, flush=True)
    else:
        totals.failed += 1
        totals.failures.append((label, output, diagnostics))
        print("FAIL %s" % label, flush=True)
        for line in diagnostics:
            print("    " + line, flush=True)


def suite_env(build):
    env = dict(os.environ)
    env.update(SAN_ENV)
    env["CMOCKA_MESSAGE_OUTPUT"] = "TAP"
    env["HC_BUILD"] = os.path.join(ROOT, build)
    env["HC_BIN"] = os.path.join(ROOT, build, "hypercore")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_suite(totals, build, kind, name, argv, timeout):
    report_suite(totals, build, kind, name, *run_program(argv, suite_env(build), timeout))


def run_side_by_side(totals, build, batch):
    """Runs the suites of batch at once, one per CPU; reports them in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [pool.submit(run_program, argv, suite_env(build), timeout)
                   for _, _, argv, timeout in batch]
        for (kind, name, _, _), future in zip(batch, futures):
            report_suite(totals, build, kind, name, *future.result())


def report_suite(totals, build, kind, name, rc, out, secs):
    plan, results = parse_tap(out)
    prefix = "[%s] %s/%s" % (build, kind, name)
    for ok, case, skipped, diagnostics in results:
        record(totals, "%s: %s" % (prefix, case), ok, skipped, out if not ok else None,
               diagnostics)
    if plan is not None and plan != len(results):
        record(totals, "%s: planned %d results, got %d" % (prefix, plan, len(results)),
               False, False, out)
    elif rc != 0 and all(r[0] for r in results):
        # Crashed, leaked (sanitizers exit non-zero at exit) or timed out
        # without a failing result to show for it.
        record(totals, "%s: exited %s" % (prefix, rc), False, False, out)
    elif not results:
        record(totals, "%s: printed no results" % prefix, False, False, out)
    print("     %s took %.1fs" % (prefix, secs), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--integration-all", action="store_true",
                    help="run the integration and interop suites against every build")
    args = ap.parse_args()

    totals = Totals()
    for i, build in enumerate(args.build):
        last = i == len(args.build) - 1
        chosen = [s for s in suites(build, first=i == 0,
                                    integration=last or args.integration_all)
                  if args.only in "%s/%s" % (s[0], s[1])]
        for kind, name, argv, timeout in chosen:
            if kind != "fuzz":
                run_suite(totals, build, kind, name, argv, timeout)
        run_side_by_side(totals, build, [s for s in chosen if s[0] == "fuzz"])

    # Each failure again: its own diagnostics, or (a crash, a timeout, a
    # test program without them) the end of its program's output.
    for label, output, diagnostics in totals.failures:
        text = "\n".join(diagnostics) if diagnostics else (output or "").rstrip()[-6000:]
        print("\n==== %s ====\n%s" % (label, text))
    print()
    print("%d passed, %d failed, %d skipped" % (totals.passed, totals.failed, totals.skipped))
    return 1 if totals.failed else 0


if __name__ == "__main__":
    sys.exit(main())
