#!/usr/bin/python3
"""The CLI's help is generated from its option tables: every table in cli/*.c
(struct hc_cli_opt rows, with the row macros that cli/*.[ch] define) is the
.opts of a command in cli/cli.c's hc_cli_cmds[], whose texts (usage lines,
what the command does, epilogue) describe no option themselves, and every
--flag those texts mention is an option of some table. Rows written out as
designated initializers carry their help (the row macros take it as an
argument). tests/unit/test_cli_help.c checks the help itself, as printed.

Prints TAP; exits 1 on a failure.

Usage: tests/source/test_cli_options.py [--root DIR]
"""

import argparse
import os
import re
import sys

import tap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TABLE = re.compile(r"^(?:static )?const struct hc_cli_opt (\w+)\[\] = \{(.*?)\n\};", re.S | re.M)
ROW_NAME = re.compile(r'(?:HC_CLI_\w+\(|\.name = )"([a-z0-9-]+)"')
DEFINE = re.compile(r"^#define (\w+)\b((?:.*\\\n)*.*)$", re.M)
# A designated row: from "{ .name =" to its closing brace.
DESIGNATED = re.compile(r'\{\s*\.name = "([a-z0-9-]+)"(.*?)\}', re.S)
# Flags the texts name that no table holds: the parser's own.
BUILTIN = {"help", "config"}


def sources(root):
    d = os.path.join(root, "cli")
    for name in sorted(os.listdir(d)):
        if name.endswith((".c", ".h")):
            with open(os.path.join(d, name)) as f:
                yield name, f.read()


def row_macros(root):
    """Macros that expand to rows with fixed names: {macro: [names]}."""
    macros = {}
    for _, text in sources(root):
        for m in DEFINE.finditer(text):
            names = ROW_NAME.findall(m.group(2))
            if names:
                macros[m.group(1)] = names
    return macros


def tables(root):
    """{table: (file, set of option names, body)}."""
    macros = row_macros(root)
    found = {}
    for name, text in sources(root):
        for m in TABLE.finditer(text):
            rows = set(ROW_NAME.findall(m.group(2)))
            for macro, names in macros.items():
                if re.search(r"\b%s\b" % macro, m.group(2)):
                    rows.update(names)
            found[m.group(1)] = (name, rows, m.group(2))
    return found


def commands(root):
    """The hc_cli_cmds[] entries: [(path, opts table or None, texts)]."""
    with open(os.path.join(root, "cli", "cli.c")) as f:
        text = f.read()
    start = text.index("hc_cli_cmds[] = {")
    end = text.index("\n};", start)
    cmds = []
    for entry in re.split(r"\n\t\},?\n", text[start:end]):
        path = re.search(r'\.path = "([^"]+)"', entry)
        if not path:
            continue
        opts = re.search(r"\.opts = (\w+)", entry)
        texts = []
        for field in ("usage", "epilogue"):
            m = re.search(r"\.%s = ((?:\s*\"(?:[^\"\\]|\\.)*\")+)" % field, entry)
            if m:
                texts.append("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))))
        cmds.append((path.group(1), opts.group(1) if opts else None, "".join(texts)))
    return cmds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=ROOT)
    args = ap.parse_args()
    results = []
    tabs = tables(args.root)
    cmds = commands(args.root)
    results.append((len(tabs) > 0, "option tables found in cli/*.c (%d)" % len(tabs), []))
    results.append((len(cmds) > 0, "commands found in cli/cli.c (%d)" % len(cmds), []))

    used = {opts for _, opts, _ in cmds if opts}
    unused = sorted(set(tabs) - used)
    results.append((not unused, "every option table is a command's .opts",
                    ["%s (%s) is no command's .opts" % (t, tabs[t][0]) for t in unused]))
    unknown = sorted(used - set(tabs))
    results.append((not unknown, "every command's .opts is a table in cli/*.c",
                    ["%s: no such table" % t for t in unknown]))

    undocumented = []
    for t, (where, _, body) in sorted(tabs.items()):
        for m in DESIGNATED.finditer(body):
            if ".help = " not in m.group(2):
                undocumented.append("%s %s: --%s has no .help" % (where, t, m.group(1)))
    results.append((not undocumented, "every designated row carries its help", undocumented))

    described = ["%s: %r" % (path, line) for path, _, text in cmds
                 for line in text.split("\\n") if line.startswith("  -") or line == "Options:"]
    results.append((not described, "the commands' texts describe no option (the tables do)",
                    described))

    defined = set()
    for _, rows, _ in tabs.values():
        defined |= rows
    mentioned = set()
    for _, _, text in cmds:
        mentioned |= set(re.findall(r"--([a-z][a-z0-9-]*)", text))
    extra = sorted(mentioned - defined - BUILTIN)
    results.append((not extra, "every --flag the texts mention is in a table",
                    ["--%s: mentioned, in no table" % f for f in extra]))

    return tap.report(results)


if __name__ == "__main__":
    sys.exit(main())
