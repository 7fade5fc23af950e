#!/usr/bin/env python3
"""The package and `make install`: `make deb` builds the .deb from the binary
under test, dpkg installs it into a fresh directory tree (--root, its
maintainer scripts run chroot-free with $DPKG_ROOT), and the files are
checked where the unit and the configuration expect them: the installed
binary runs, man pages render without warnings and name every option --help
names, the unit passes `systemd-analyze verify`, the completion completes,
`make install DESTDIR` lays out the same files, lintian finds nothing.
Starting the unit needs a running systemd; PID 1 here is none, and that test
says so when it skips."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402

ROOT = hctest.ROOT
BIN = os.path.abspath(hctest.HC_BIN)


def run(*argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                      r.stderr))
    return r


def make(*targets, **variables):
    """make in the repository with the binary under test as it is (PKG_BIN:
    no rebuild), generated files under variables' DIST."""
    args = ["make", "--no-print-directory", "-C", ROOT, "PKG_BIN=" + BIN,
            "BUILD=" + os.path.dirname(BIN)]
    args += ["%s=%s" % kv for kv in variables.items()]
    return run(*args, *targets, timeout=300)


def tree(root):
    """Every file and symlink under root, as absolute paths inside it."""
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add("/" + os.path.relpath(os.path.join(d, f), root))
    return out


def dpkg_root(root, *args):
    return run("dpkg", "--root=" + root, "--force-script-chrootless", "--force-depends",
               "--log=/dev/null", *args)


class Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hc-install-")
        try:
            make("deb", DIST=os.path.join(cls.tmp, "dist"), DEBDIR=cls.tmp)
            debs = [f for f in os.listdir(cls.tmp) if f.endswith(".deb")]
            assert len(debs) == 1, debs
            cls.deb = os.path.join(cls.tmp, debs[0])
            cls.root = os.path.join(cls.tmp, "root")
            for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
                os.makedirs(os.path.join(cls.root, d))
            open(os.path.join(cls.root, "var/lib/dpkg/status"), "w").close()
            dpkg_root(cls.root, "-i", cls.deb)
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def field(self, name):
        return run("dpkg-deb", "-f", self.deb, name).stdout.strip()

    def installed(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def test_name_version_and_depends(self):
        version = open(os.path.join(ROOT, "VERSION")).read().strip()
        arch = run("dpkg", "--print-architecture").stdout.strip()
        self.assertEqual(os.path.basename(self.deb), "hypercore_%s_%s.deb" % (version, arch))
        depends = [d.strip().split()[0] for d in self.field("Depends").split(",")]
        # what the agent runs, and libraries found from the binary itself
        for want in ("containerd", "runc", "containernetworking-plugins", "iptables",
                     "libc6", "libbpf1", "libssl3", "libjansson4", "libprotobuf-c1"):
            self.assertIn(want, depends)
        self.assertTrue(any(d.startswith("libgrpc") for d in depends), depends)
        # every one a Debian package, installed on this Debian machine
        for d in depends:
            st = run("dpkg-query", "-W", "-f=${Status}", d, check=False).stdout
            self.assertEqual(st, "install ok installed", d)

    def test_files_where_unit_and_config_expect(self):
        unit = open(self.installed("/lib/systemd/system/hypercore.service")).read()
        exec_start = re.search(r"^ExecStart=(\S+) cluster$", unit, re.M).group(1)
        self.assertEqual(exec_start, "/usr/bin/hypercore")
        self.assertTrue(os.access(self.installed(exec_start), os.X_OK))
        # the file the binary reads by default, a conffile, parsing as it is
        conf = "/etc/hypercore/hypercore.toml"
        self.assertIn(conf, run("dpkg-deb", "-I", self.deb, "conffiles").stdout.split())
        r = run(self.installed(exec_start), "config", "show", "--config", self.installed(conf))
        self.assertIn("state-dir", r.stdout)
        self.assertNotIn(" config\n", r.stdout)  # all commented out: nothing set
        # enabled by postinst as deb-systemd-helper does
        link = self.installed("/etc/systemd/system/multi-user.target.wants/hypercore.service")
        self.assertEqual(os.readlink(link), "/lib/systemd/system/hypercore.service")
        self.assertTrue(os.path.isfile(self.installed("/usr/share/doc/hypercore/copyright")))
        self.assertTrue(os.path.isfile(
            self.installed("/usr/share/bash-completion/completions/hypercore")))

    def test_installed_binary_runs(self):
        b = self.installed("/usr/bin/hypercore")
        r = run(b, "--help")
        self.assertIn("cluster", r.stdout)
        self.assertIn("doctor", r.stdout)
        self.assertRegex(run(b, "version").stdout, r"^hypercore \d+\.\d+\.\d+ ")

    def pages(self):
        groups = run(BIN, "help", "--man-groups").stdout.split()
        self.assertIn("cluster", groups)
        return ["hypercore"] + ["hypercore-" + g for g in groups]

    def test_man_pages_render_without_warnings(self):
        mandir = self.installed("/usr/share/man/man8")
        self.assertEqual(sorted(os.listdir(mandir)), sorted(p + ".8.gz" for p in self.pages()))
        env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
        for page in self.pages():
            path = os.path.join(mandir, page + ".8.gz")
            with self.subTest(page=page):
                r = run("man", "-l", path, env=env)
                self.assertIn(page.upper() + "(8)", r.stdout)
                self.assertEqual(r.stderr, "")
                src = run("gzip", "-dc", path).stdout
                g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=src,
                                   capture_output=True, text=True)
                self.assertEqual((g.returncode, g.stderr), (0, ""))

    def test_man_pages_name_every_option_help_names(self):
        mandir = self.installed("/usr/share/man/man8")
        env = dict(os.environ, MANWIDTH="200")
        for path in ("cluster", "cluster spawn", "spawn", "routes add", "doctor"):
            page = "hypercore-" + path.split()[0]
            text = run("man", "-l", os.path.join(mandir, page + ".8.gz"), env=env).stdout
            text = text.replace("\u2010", "-")
            helptext = run(BIN, *path.split(), "--help").stdout
            for opt in sorted(set(re.findall(r"^  (--[a-z0-9-]+)", helptext, re.M))):
                self.assertIn(opt, text, "%s --help has %s, %s(8) not" % (path, opt, page))

    def test_unit_verifies(self):
        unit = open(self.installed("/lib/systemd/system/hypercore.service")).read()
        for line in ("Restart=on-failure", "KillMode=process", "Delegate=yes",
                     "After=network-online.target", "Wants=network-online.target",
                     "LimitNOFILE=1048576", "WantedBy=multi-user.target"):
            self.assertIn("\n" + line + "\n", unit)
        # verify checks the ExecStart binary exists: point it into the tree
        d = os.path.join(self.tmp, "verify")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "hypercore.service")
        with open(path, "w") as f:
            f.write(unit.replace("ExecStart=/usr/bin/",
                                 "ExecStart=" + self.installed("/usr/bin/")))
        r = run("systemd-analyze", "verify", "--man=no", path, check=False)
        self.assertEqual((r.returncode, r.stderr.strip()), (0, ""))

    def test_unit_starts_under_systemd(self):
        state = run("systemctl", "is-system-running", check=False).stdout.strip()
        if state not in ("running", "degraded"):
            self.skipTest("systemd is not PID 1 here (is-system-running: %s); the unit "
                          "was checked with systemd-analyze verify" % (state or "?"))
        unit = "hc-test-%d" % os.getpid()
        r = run("systemd-run", "--unit", unit, "--property=KillMode=process",
                "--property=Delegate=yes", self.installed("/usr/bin/hypercore"), "cluster",
                "--state-dir", os.path.join(self.tmp, "state"), "--no-runtime",
                "--no-dataplane", "--grpc-bind-addr", "127.0.0.1:%d" % hctest.free_port(),
                "--http-bind-addr", "127.0.0.1:%d" % hctest.free_port(),
                "--cluster-bind-addr", "127.0.0.1:%d" % hctest.free_port(), check=False)
        try:
            self.assertEqual(r.returncode, 0, r.stderr)
            hctest.wait_for("the unit active", lambda: run(
                "systemctl", "is-active", unit, check=False).stdout.strip() == "active")
            run("systemctl", "stop", unit)
            res = run("systemctl", "show", "-p", "Result", "--value", unit,
                      check=False).stdout.strip()
            self.assertIn(res, ("success", ""))
        finally:
            run("systemctl", "stop", unit, check=False)
            run("systemctl", "reset-failed", unit, check=False)

    def test_make_install_lays_out_the_same_files(self):
        dist = os.path.join(self.tmp, "dist-install")
        dest = os.path.join(self.tmp, "dest-usr")
        make("install", DIST=dist, DESTDIR=dest, PREFIX="/usr", UNITDIR="/lib/systemd/system")
        packaged = {l.split()[-1].lstrip(".") for l in
                    run("dpkg-deb", "-c", self.deb).stdout.splitlines() if l.startswith("-")}
        packaged = {p for p in packaged if not p.startswith("/usr/share/doc/")}
        self.assertEqual(tree(dest), packaged)
        # the default PREFIX: /usr/local, the unit pointing there
        dest = os.path.join(self.tmp, "dest-local")
        make("install", DIST=dist, DESTDIR=dest)
        files = tree(dest)
        for f in ("/usr/local/bin/hypercore", "/usr/local/lib/systemd/system/hypercore.service",
                  "/usr/local/share/man/man8/hypercore.8.gz",
                  "/usr/local/share/man/man8/hypercore-cluster.8.gz",
                  "/usr/local/share/bash-completion/completions/hypercore",
                  "/etc/hypercore/hypercore.toml"):
            self.assertIn(f, files)
        unit = open(dest + "/usr/local/lib/systemd/system/hypercore.service").read()
        self.assertIn("\nExecStart=/usr/local/bin/hypercore cluster\n", unit)
        # an edited configuration survives a second install
        with open(dest + "/etc/hypercore/hypercore.toml", "a") as f:
            f.write('log-level = "debug"\n')
        make("install", DIST=dist, DESTDIR=dest)
        self.assertIn('log-level = "debug"', open(dest + "/etc/hypercore/hypercore.toml").read())

    def test_bash_completion_completes_from_the_tables(self):
        comp = self.installed("/usr/share/bash-completion/completions/hypercore")
        script = ('source "$1"; c() { COMP_WORDS=("${@}"); COMP_CWORD=$((${#COMP_WORDS[@]}-1));'
                  ' COMPREPLY=(); _hypercore; echo "${COMPREPLY[*]}"; };'
                  ' c hypercore clu; c hypercore cluster sp; c hypercore cluster --log-format "";'
                  ' c hypercore cluster spawn --image; c hypercore doctor --js')
        r = run("bash", "-c", script, "bash", comp)
        self.assertEqual(r.stdout.splitlines(),
                         ["cluster", "spawn", "logfmt json text", "--image-ref", "--json"])
        self.assertEqual(r.stderr, "")

    def test_purge_removes_the_enablement(self):
        root = os.path.join(self.tmp, "root2")
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
            os.makedirs(os.path.join(root, d))
        open(os.path.join(root, "var/lib/dpkg/status"), "w").close()
        dpkg_root(root, "-i", self.deb)
        link = "etc/systemd/system/multi-user.target.wants/hypercore.service"
        self.assertTrue(os.path.islink(os.path.join(root, link)))
        dpkg_root(root, "-P", "hypercore")
        self.assertFalse(os.path.lexists(os.path.join(root, link)))
        self.assertFalse(os.path.exists(os.path.join(root, "usr/bin/hypercore")))
        self.assertFalse(os.path.exists(os.path.join(root, "etc/hypercore/hypercore.toml")))

    def test_lintian_finds_nothing(self):
        if not shutil.which("lintian"):
            self.skipTest("lintian is not installed (apt-get install lintian; `make lint-deb`)")
        r = run("lintian", "--fail-on", "error,warning", self.deb, check=False)
        tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
        self.assertEqual((r.returncode, tags), (0, []))


if __name__ == "__main__":
    hctest.main()
