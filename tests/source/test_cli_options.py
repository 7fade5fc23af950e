#!/usr/bin/python3
"""The CLI's option tables and its help agree: every long option a table in
cli/*.c defines (struct hc_cli_opt rows, and the shared row macros of
cli/cli.h) is named in the usage texts of cli/cli.c, and every --flag those
texts name is in some table. The help is written by hand (its layout is not
one line per option), so this keeps the two from drifting apart.

Prints TAP; exits 1 on a failure.

Usage: tests/source/test_cli_options.py [--root DIR]
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TABLE = re.compile(r"static const struct hc_cli_opt (\w+)\[\] = \{(.*?)\n\};", re.S)
ROW_NAME = re.compile(r'(?:HC_CLI_\w+\(|\.name = )"([a-z0-9-]+)"')
# Rows that macros name for the tables (cli/cli.h, cli/cmd_runtime.c).
MACROS = {
    "HC_CLI_GRPC_ADDR": ["grpc-bind-addr"],
    "HC_CLI_HTTP_ADDR": ["http-bind-addr"],
    "HC_CLI_TIMEOUT": ["timeout"],
    "HC_CLI_LOG_LEVEL": ["log-level"],
    "LOCAL_ROWS": ["containerd-socket", "run-dir", "state-dir"],
}
# Flags the help names that no table holds: the parser's own.
BUILTIN = {"help"}
# Options left out of the help on purpose, with why; an entry that no
# longer matches fails, so the list only shrinks.
UNDOCUMENTED = {
    "coalesce": "cluster event's default; the flag exists for serf's -coalesce=true",
}


def table_flags(root):
    flags = {}
    for name in sorted(os.listdir(os.path.join(root, "cli"))):
        if not name.endswith(".c"):
            continue
        with open(os.path.join(root, "cli", name)) as f:
            text = f.read()
        for m in TABLE.finditer(text):
            rows = set(ROW_NAME.findall(m.group(2)))
            for macro, names in MACROS.items():
                if re.search(r"\b%s\(" % macro, m.group(2)):
                    rows.update(names)
            flags["%s:%s" % (name, m.group(1))] = rows
    return flags


def help_flags(root):
    with open(os.path.join(root, "cli", "cli.c")) as f:
        text = f.read()
    start = text.index("hc_cli_cmds[] = {")
    end = text.index("\n};", start)
    return set(re.findall(r"--([a-z][a-z0-9-]*)", text[start:end]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=ROOT)
    args = ap.parse_args()
    results = []
    tables = table_flags(args.root)
    documented = help_flags(args.root)
    results.append((len(tables) > 0, "option tables found in cli/*.c (%d)" % len(tables), []))
    defined = set()
    for where, rows in sorted(tables.items()):
        defined |= rows
        missing = sorted(rows - documented - set(UNDOCUMENTED))
        results.append((not missing, "%s: every option is in the help" % where,
                        ["--%s is not named in cli/cli.c's usage texts" % f for f in missing]))
    stale = sorted(f for f in UNDOCUMENTED if f in documented or f not in defined)
    results.append((not stale, "every option left out of the help is still left out",
                    ["--%s: remove it from UNDOCUMENTED" % f for f in stale]))
    extra = sorted(documented - defined - BUILTIN)
    results.append((not extra, "every --flag the help names is in a table",
                    ["--%s: in the help, in no table" % f for f in extra]))
    print("1..%d" % len(results))
    for i, (ok, name, diag) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        for line in diag:
            print("# " + line)
    return 0 if all(r[0] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
