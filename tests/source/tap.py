"""TAP output for the checks in tests/source (imported, not run by tests/run.py)."""


def report(results):
    """Prints results, [(ok, name, [diagnostic lines])], as TAP; returns the
    exit status: 0 when all passed, else 1."""
    print("1..%d" % len(results))
    for i, (ok, name, diag) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        for line in diag:
            print("# " + line)
    return 0 if all(r[0] for r in results) else 1
