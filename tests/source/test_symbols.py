#!/usr/bin/python3
"""Every global symbol libhypercore.a defines is named hc_...: a name shared
between a module's files (or offered to other modules) carries the prefix,
and everything else is static, so no bare name (`state_changed`, `fail`)
can clash with another module's or a library's. The protobuf-c output
(gen/*.pb-c.o) is exempt: its names are the proto package's.

It reads the built library (`nm -g --defined-only`): $HC_BUILD/libhypercore.a,
build/ by default. Without one it reports a skip with the reason.

Prints TAP; exits 1 on a failure.

Usage: tests/source/test_symbols.py [--lib PATH]
"""

import argparse
import os
import subprocess
import sys

import tap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# nm's letters for defined symbols with external linkage: text, data, bss,
# read-only data, common, small data/bss, weak.
KINDS = set("TDBRCGSVW")
EXEMPT_OBJECTS = (".pb-c.o",)
PREFIX = "hc_"


def global_symbols(lib):
    """[(object, kind, name)] for every defined global symbol."""
    out = subprocess.run(["nm", "-g", "--defined-only", "-A", lib], capture_output=True,
                         text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        # "LIB:OBJECT:ADDRESS KIND NAME"
        parts = line.split()
        if len(parts) != 3:
            continue
        obj = parts[0].split(":")[-2]
        syms.append((obj, parts[1], parts[2]))
    return syms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=os.path.join(
        os.environ.get("HC_BUILD", os.path.join(ROOT, "build")), "libhypercore.a"))
    args = ap.parse_args()
    if not os.path.exists(args.lib):
        print("1..1")
        print("ok 1 - global symbols are hc_ # SKIP no %s (build it first: make)" % args.lib)
        return 0
    syms = global_symbols(args.lib)
    results = []
    checked = [s for s in syms if s[1] in KINDS and not s[0].endswith(EXEMPT_OBJECTS)]
    results.append((len(checked) > 0, "%s defines global symbols (%d checked)"
                    % (os.path.relpath(args.lib, ROOT), len(checked)), []))
    for kinds, what in (("T", "functions"), ("DBCGSV", "variables"), ("R", "constants"),
                        ("W", "weak symbols")):
        bare = sorted("%s: %s (%s)" % (obj, name, kind) for obj, kind, name in checked
                      if kind in kinds and not name.startswith(PREFIX))
        results.append((not bare, "global %s are named hc_... (else static)" % what,
                        ["%s is global without the prefix" % b for b in bare]))
    return tap.report(results)


if __name__ == "__main__":
    sys.exit(main())
