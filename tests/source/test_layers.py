#!/usr/bin/python3
"""The layer check: every #include in agent/*/*.[ch] and cli/*.[ch] goes
down the layers of agent/README.md, never up, and never into another
module's private headers.

The layer table is the ```layers block of agent/README.md and nowhere else:
this reads it there. A module may include

  - its own headers;
  - the public header (<m>/<m>.h, or what the table says m exports) of a
    module in a lower layer, or of one in its own layer along a sideways
    line of the table;
  - shared headers (include/hypercore, protobuf-c output of the public
    proto) and generated headers that no other module owns.

It may not include another module's _int.h or other private header, a
generated header another module owns, or a header of a higher layer. Known
violations are listed in the table with their reason ("allow FILE ->
HEADER reason"); an entry that no longer matches anything fails too, so the
list only shrinks.

Prints TAP (one result per module, one for the table, one for the allow
list, and self-tests of the check on made-up trees); exits 1 on a failure.

Usage: tests/source/test_layers.py [--root DIR] [--graph]
  --graph   print each module's includes of other modules and exit
"""

import argparse
import fnmatch
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE_FILE = os.path.join("agent", "README.md")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
LAYER_LINE = re.compile(r"^([\w-]+):\s+(.*)$")
SIDEWAYS_LINE = re.compile(r"^(\w+)\s*->\s*(\w+)(?:\s+(.*))?$")
OWNS_LINE = re.compile(r"^(\w+)\s+(owns|exports)\s+(\S+)(?:\s+(.*))?$")
ALLOW_LINE = re.compile(r"^allow\s+(\S+)\s*->\s*(\S+)\s+(.+)$")


class TableError(Exception):
    pass


class Table:
    """The parsed ```layers block."""

    def __init__(self, text):
        self.layer_of = {}   # module -> index (0 lowest)
        self.layer_names = []
        self.sideways = {}   # (from, to) -> reason
        self.owns = []       # (module, glob of a generated header)
        self.exports = []    # (module, glob of a header name)
        self.allow = {}      # (file, header) -> reason
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = ALLOW_LINE.match(line)
            if m:
                self.allow[(m.group(1), m.group(2))] = m.group(3)
                continue
            m = OWNS_LINE.match(line)
            if m:
                (self.owns if m.group(2) == "owns" else self.exports).append(
                    (m.group(1), m.group(3)))
                continue
            m = SIDEWAYS_LINE.match(line)
            if m:
                self.sideways[(m.group(1), m.group(2))] = m.group(3) or ""
                continue
            m = LAYER_LINE.match(line)
            if m:
                self.layer_names.append(m.group(1))
                for mod in m.group(2).split():
                    if mod in self.layer_of:
                        raise TableError("line %d: %s is in two layers" % (n, mod))
                    self.layer_of[mod] = len(self.layer_names) - 1
                continue
            raise TableError("line %d of the block: cannot read %r" % (n, line))
        if not self.layer_of:
            raise TableError("the block names no layers")
        for a, b in self.sideways:
            if a not in self.layer_of or b not in self.layer_of:
                raise TableError("sideways %s -> %s: not a module of the table" % (a, b))
            if self.layer_of[a] != self.layer_of[b]:
                raise TableError("sideways %s -> %s: not in one layer" % (a, b))
        for mod, _ in self.owns + self.exports:
            if mod not in self.layer_of:
                raise TableError("%s: not a module of the table" % mod)

    def layer(self, mod):
        return "%s (%s)" % (self.layer_of[mod], self.layer_names[self.layer_of[mod]])

    def owner_of_generated(self, name):
        for mod, pattern in self.owns:
            if fnmatch.fnmatch(name, pattern):
                return mod
        return None

    def is_public(self, mod, name):
        """Whether header name (a file name in agent/<mod>/) is for other
        modules: <mod>.h, or what mod exports; never an _int.h."""
        if name.endswith("_int.h"):
            return False
        return name == mod + ".h" or any(m == mod and fnmatch.fnmatch(name, p)
                                         for m, p in self.exports)


def read_table(root):
    path = os.path.join(root, TABLE_FILE)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^```layers\n(.*?)^```", text, re.S | re.M)
    if not m:
        raise TableError("%s has no ```layers block" % TABLE_FILE)
    return Table(m.group(1))


def sources(root):
    """(module, path relative to root) of every C file the check reads."""
    agent = os.path.join(root, "agent")
    for mod in sorted(os.listdir(agent)):
        d = os.path.join(agent, mod)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                if name.endswith((".c", ".h")):
                    yield mod, os.path.join("agent", mod, name)
    cli = os.path.join(root, "cli")
    if os.path.isdir(cli):
        for name in sorted(os.listdir(cli)):
            if name.endswith((".c", ".h")):
                yield "cli", os.path.join("cli", name)


def modules(root):
    """Modules on disk: agent/<m>/ folders, and cli."""
    agent = os.path.join(root, "agent")
    found = [m for m in sorted(os.listdir(agent)) if os.path.isdir(os.path.join(agent, m))]
    return found + (["cli"] if os.path.isdir(os.path.join(root, "cli")) else [])


def is_generated(name):
    return name.endswith((".pb-c.h", ".skel.h"))


def target_of(root, mod_dirs, src, kind, inc):
    """What an include names: ("own", None, name), ("module", m, name),
    ("generated", None, name), ("shared", None, name), ("system", ...) or
    ("unknown", None, inc)."""
    here = os.path.dirname(src)
    first, _, rest = inc.partition("/")
    if kind == '"' and os.path.exists(os.path.join(root, here, inc)):
        return ("own", None, inc)
    if rest and first in mod_dirs:
        return ("module", first, rest)
    if kind == "<":
        return ("system", None, inc)
    if first == "hypercore" and os.path.exists(os.path.join(root, "include", inc)):
        return ("shared", None, inc)
    if is_generated(os.path.basename(inc)):
        return ("generated", None, inc)
    if "/" not in inc and os.path.exists(os.path.join(root, "cli", inc)):
        return ("module", "cli", inc)  # -Icli makes cli's headers reachable by name
    return ("unknown", None, inc)


def check(root):
    """Returns (table, {module: [(file:line, include, problem)]},
    {module: [allowed (file:line, include, problem, reason)]}, stale allow
    entries, [modules missing from the table], {module: {module it includes}})."""
    table = read_table(root)
    on_disk = modules(root)
    mod_dirs = set(on_disk) | set(table.layer_of)
    problems = {m: [] for m in on_disk}
    allowed = {m: [] for m in on_disk}
    used_allow = set()
    graph = {m: set() for m in on_disk}
    missing = [m for m in on_disk if m not in table.layer_of]
    for mod, src in sources(root):
        if mod not in table.layer_of:
            continue
        with open(os.path.join(root, src), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for n, line in enumerate(lines, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, inc = m.groups()
            what, other, name = target_of(root, mod_dirs, src, kind, inc)
            problem = None
            if what == "module" and other != mod:
                graph[mod].add(other)
                if other not in table.layer_of:
                    problem = "%s has no layer in %s" % (other, TABLE_FILE)
                elif not table.is_public(other, name):
                    problem = "a private header of %s" % other
                elif table.layer_of[other] > table.layer_of[mod]:
                    problem = "%s is in a higher layer, %s, than %s, %s" % (
                        other, table.layer(other), mod, table.layer(mod))
                elif table.layer_of[other] == table.layer_of[mod] and \
                        (mod, other) not in table.sideways:
                    problem = "%s is in the same layer, %s, and %s -> %s is no sideways line" % (
                        other, table.layer(other), mod, other)
            elif what == "generated":
                owner = table.owner_of_generated(name)
                if owner and owner != mod:
                    problem = "a generated header %s owns" % owner
            elif what == "unknown":
                problem = "not a header of this module, of another module or a shared one"
            if problem is None:
                continue
            where = "%s:%d" % (src, n)
            key = (src, inc)
            if key in table.allow:
                used_allow.add(key)
                allowed[mod].append((where, inc, problem, table.allow[key]))
            else:
                problems[mod].append((where, inc, problem))
    stale = sorted(set(table.allow) - used_allow)
    return table, problems, allowed, stale, missing, graph


class Tap:
    def __init__(self):
        self.results = []

    def add(self, ok, name, diagnostics=()):
        self.results.append((ok, name, list(diagnostics)))

    def emit(self):
        print("1..%d" % len(self.results), flush=True)
        for i, (ok, name, diag) in enumerate(self.results, 1):
            print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
            for line in diag:
                print("# " + line)
        sys.stdout.flush()
        return all(r[0] for r in self.results)


def check_tree(tap, root):
    try:
        table, problems, allowed, stale, missing, _ = check(root)
    except (OSError, TableError) as e:
        tap.add(False, "the layer table in %s" % TABLE_FILE, [str(e)])
        return
    tap.add(not missing, "every module has a layer in %s" % TABLE_FILE,
            ["%s: no layer" % m for m in missing])
    for mod in sorted(problems, key=lambda m: (table.layer_of.get(m, -1), m)):
        if mod in missing:
            continue
        where = "cli" if mod == "cli" else "agent/" + mod
        extra = " (%d known exception%s)" % (len(allowed[mod]), "s" * (len(allowed[mod]) > 1)) \
            if allowed[mod] else ""
        tap.add(not problems[mod],
                "%s, layer %s, includes only what it may%s" % (where, table.layer(mod), extra),
                ["%s: includes %s: %s" % p for p in problems[mod]])
    tap.add(not stale, "every allowed exception in %s is still needed" % TABLE_FILE,
            ["allow %s -> %s matches no include any more: remove it" % s for s in stale])


# ---- the check on made-up trees ------------------------------------------------

SELF_TABLE = """# A table for the self-tests.
```layers
leaves: log loop
middle: gossip rpc runtime
top: daemon
runtime -> rpc
gossip owns hc_*.skel.h
%s
```
"""


def make_tree(files, allow=""):
    """A temporary tree: agent/README.md with SELF_TABLE, plus files
    {path: text}. Returns the temporary directory object."""
    tmp = tempfile.TemporaryDirectory(prefix="hc-layers-")
    files = dict(files)
    files["agent/README.md"] = SELF_TABLE % allow
    files.setdefault("agent/log/log.h", "")
    for path, text in files.items():
        full = os.path.join(tmp.name, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    return tmp


def found(files, allow=""):
    """(problems as (module, include) pairs, stale allow entries)."""
    with make_tree(files, allow) as root:
        _, problems, _, stale, missing, _ = check(root)
    return sorted((m, p[1]) for m, ps in problems.items() for p in ps), stale, missing


def self_tests(tap):
    cases = [
        ("a module including its own _int.h and a lower layer's header passes",
         {"agent/gossip/gossip_int.h": "", "agent/gossip/net.c":
          '#include "gossip/gossip_int.h"\n#include "log/log.h"\n#include "loop/loop.h"\n'},
         "", ([], [], [])),
        ("another module's _int.h is found",
         {"agent/loop/loop_int.h": "", "agent/gossip/net.c": '#include "loop/loop_int.h"\n'},
         "", ([("gossip", "loop/loop_int.h")], [], [])),
        ("a lower layer including a higher one is found",
         {"agent/gossip/gossip.h": "", "agent/log/log.c": '#include "gossip/gossip.h"\n'},
         "", ([("log", "gossip/gossip.h")], [], [])),
        ("a sideways include off the table is found, one on it passes",
         {"agent/rpc/rpc.h": "", "agent/runtime/runtime.h": "",
          "agent/runtime/cri.c": '#include "rpc/rpc.h"\n',
          "agent/rpc/rpc.c": '#include "runtime/runtime.h"\n'},
         "", ([("rpc", "runtime/runtime.h")], [], [])),
        ("another module's generated header is found",
         {"agent/daemon/daemon.c": '#include "hc_xdp.skel.h"\n'},
         "", ([("daemon", "hc_xdp.skel.h")], [], [])),
        ("an allowed exception passes; a stale one is reported",
         {"agent/loop/loop_int.h": "", "agent/gossip/net.c": '#include "loop/loop_int.h"\n'},
         "allow agent/gossip/net.c -> loop/loop_int.h  a reason\n"
         "allow agent/gossip/old.c -> loop/loop_int.h  gone",
         ([], [("agent/gossip/old.c", "loop/loop_int.h")], [])),
        ("a module without a layer is reported",
         {"agent/newmod/newmod.c": '#include "log/log.h"\n'},
         "", ([], [], ["newmod"])),
    ]
    for name, files, allow, want in cases:
        try:
            got = found(files, allow)
            tap.add(got == (want[0], want[1], want[2]), "self-test: " + name,
                    [] if got == want else ["got %r, want %r" % (got, want)])
        except Exception as e:  # a broken check must show, not crash the TAP
            tap.add(False, "self-test: " + name, [repr(e)])


def print_graph(root):
    table, _, _, _, _, graph = check(root)
    for mod in sorted(graph, key=lambda m: (table.layer_of.get(m, -1), m)):
        print("%-10s %-14s -> %s" % (mod, table.layer_names[table.layer_of[mod]]
                                     if mod in table.layer_of else "?",
                                     " ".join(sorted(graph[mod])) or "-"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=ROOT)
    ap.add_argument("--graph", action="store_true")
    args = ap.parse_args()
    if args.graph:
        print_graph(args.root)
        return 0
    tap = Tap()
    check_tree(tap, args.root)
    self_tests(tap)
    return 0 if tap.emit() else 1


if __name__ == "__main__":
    sys.exit(main())
