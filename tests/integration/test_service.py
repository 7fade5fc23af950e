#!/usr/bin/env python3
"""The agent as a service manager and a log collector see it: stopped by
SIGINT or SIGTERM also when started from a script that ignores them (a
shell's `cmd &` leaves SIGINT ignored, and exec keeps that), logs in logfmt,
JSON or text, with journald's priority prefix only when stderr is the
journal's stream; and `hypercore doctor` on this machine."""

import json
import os
import re
import shutil
import signal
import subprocess

import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402

LOGFMT_RE = re.compile(r'^ts=\S+ level=(debug|info|warn|error) module=[a-z]+ msg="([^"\\]|\\.)*"$')


class IgnoringAgent(hctest.Agent):
    """An agent started by a shell that ignores (trap "") the given signals
    and then execs it, as a script's background job or nohup does."""

    def __init__(self, workdir, name, ignored, extra_args=()):
        super().__init__(workdir, name, extra_args)
        self.ignored = ignored

    def args(self):
        return ["sh", "-c", 'trap "" %s; exec "$@"' % self.ignored, "sh", *super().args()]


# SIGHUP, SIGINT, SIGTERM in /proc/PID/status masks (bit n-1 for signal n)
STOP_SIGNALS = (1 << (signal.SIGHUP - 1)) | (1 << (signal.SIGINT - 1)) | \
    (1 << (signal.SIGTERM - 1))


class Signals(hctest.TestCase):
    @staticmethod
    def ignored(pid):
        with open("/proc/%d/status" % pid) as f:
            return int(re.search(r"^SigIgn:\s+([0-9a-f]+)$", f.read(), re.M).group(1), 16)

    def test_stops_on_sigint_and_sigterm_ignored_by_its_parent(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(sig=sig.name):
                a = IgnoringAgent(self.workdir, "n%d" % sig, "INT TERM HUP")
                self.agents.append(a)
                a.start()
                # what the agent passes on to containerd, its shims and the
                # workloads: default dispositions, not the shell's
                self.assertEqual(self.ignored(a.proc.pid) & STOP_SIGNALS, 0)
                self.assertCleanExit(a, sig)
                self.assertIn("%s: leaving the cluster, then shutting down" %
                              ("Interrupt" if sig == signal.SIGINT else "Terminated"), a.log())
                self.assertIn('msg="stopped"', a.log())

    def test_sighup_still_reloads(self):
        a = IgnoringAgent(self.workdir, "h", "HUP")
        self.agents.append(a)
        a.start()
        a.proc.send_signal(signal.SIGHUP)
        hctest.wait_for("SIGHUP handled", lambda: "SIGHUP" in a.log(), timeout=10)
        self.assertIsNone(a.proc.poll())
        self.assertCleanExit(a)

    def test_systemctl_stop(self):
        state = subprocess.run(["systemctl", "is-system-running"], capture_output=True,
                               text=True).stdout.strip()
        if state not in ("running", "degraded"):
            self.skipTest("systemd is not PID 1 here (is-system-running: %s)" % (state or "?"))
        unit = "hc-signal-test-%d" % os.getpid()
        a = hctest.Agent(self.workdir, "sd")
        try:
            subprocess.run(["systemd-run", "--unit", unit, "--property=KillMode=process",
                            *a.args()], check=True, capture_output=True)
            a.proc = None
            hctest.wait_for("the agent ready", lambda: self._healthy(a))
            subprocess.run(["systemctl", "stop", unit], check=True, timeout=60)
            r = subprocess.run(["systemctl", "show", "-p", "ExecMainStatus", "--value", unit],
                               capture_output=True, text=True)
            self.assertEqual(r.stdout.strip(), "0")
        finally:
            subprocess.run(["systemctl", "stop", unit], capture_output=True)
            subprocess.run(["systemctl", "reset-failed", unit], capture_output=True)

    @staticmethod
    def _healthy(a):
        try:
            return a.http("/healthz")[0] == 200
        except OSError:
            return False


class LogFormats(hctest.TestCase):
    def lines(self, a):
        return [l for l in a.log().splitlines() if l]

    def test_json_records(self):
        a = self.agent("j", extra_args=["--log-format", "json"])
        self.assertCleanExit(a)
        lines = self.lines(a)
        self.assertTrue(lines)
        for line in lines:
            rec = json.loads(line)
            self.assertEqual(sorted(rec), ["level", "module", "msg", "ts"])
            self.assertRegex(rec["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertTrue(any("ready" in json.loads(l)["msg"] for l in lines))

    def test_text_records(self):
        a = self.agent("t", extra_args=["--log-format", "text"])
        self.assertCleanExit(a)
        for line in self.lines(a):
            self.assertRegex(line, r"^\d{4}-\S+Z (debug|info |warn |error) [a-z]+: ")

    def test_bad_format_is_a_usage_error(self):
        r = hctest.run_cli("cluster", "--log-format", "xml")
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid --log-format xml (logfmt, json or text)", r.stderr)

    def test_journal_priority_only_when_stderr_is_the_journal(self):
        # the agent's stderr is its log file: name that file as the journal
        # stream, and each record gets its priority; another file's dev:ino
        # (stderr redirected since the manager set it) gets none
        a = hctest.Agent(self.workdir, "sd")
        self.agents.append(a)
        open(a.log_path, "ab").close()
        st = os.stat(a.log_path)
        for stream, prefixed in (("%d:%d" % (st.st_dev, st.st_ino), True),
                                 ("%d:%d" % (st.st_dev, st.st_ino + 1), False)):
            with self.subTest(prefixed=prefixed):
                open(a.log_path, "w").close()
                os.environ["JOURNAL_STREAM"] = stream
                try:
                    a.start()
                finally:
                    del os.environ["JOURNAL_STREAM"]
                self.assertCleanExit(a)
                lines = self.lines(a)
                self.assertTrue(lines)
                for line in lines:
                    m = re.match(r"^<(\d)>(.*)$", line)
                    if prefixed:
                        self.assertIsNotNone(m, line)
                        level = re.search(r" level=(\w+)", m.group(2)).group(1)
                        self.assertEqual(m.group(1), {"debug": "7", "info": "6", "warn": "4",
                                                      "error": "3"}[level])
                        self.assertRegex(m.group(2), LOGFMT_RE)
                    else:
                        self.assertIsNone(m, line)
                        self.assertRegex(line, LOGFMT_RE)


class Doctor(hctest.TestCase):
    KNOWN = ("kernel-btf", "bpffs", "xdp", "tc-clsact", "sockmap", "uplink", "containerd",
             "runc", "cni-plugins", "microvm", "port-grpc", "port-http", "port-gossip",
             "workload-subnet", "clock", "api-token", "cluster-keyring", "node-key", "config")

    def doctor(self, *args):
        return hctest.run_cli("doctor", *args)

    def test_this_machine(self):
        r = self.doctor("--state-dir", os.path.join(self.workdir, "none"))
        self.assertIn(r.returncode, (0, 1), r.stderr)
        lines = r.stdout.splitlines()
        names = []
        for line in lines[:-2]:
            m = re.match(r"^(ok|warn|fail) +(\S+) +(.*)$", line)
            self.assertIsNotNone(m, line)
            names.append(m.group(2))
            # every line not ok says how to fix it, on that line
            self.assertEqual(m.group(1) != "ok", "; fix: " in m.group(3), line)
        self.assertEqual(names, list(self.KNOWN))
        self.assertEqual(lines[-2], "")
        self.assertRegex(lines[-1], r"^\d+ ok, \d+ warn, \d+ fail$")
        self.assertEqual(r.returncode, 1 if re.search(r" [1-9]\d* fail$", lines[-1]) else 0)
        self.assertEqual(r.stderr, "")

    def test_json_and_a_token_readable_by_others(self):
        a = self.agent()
        token = os.path.join(a.state_dir, "api-token")
        os.chmod(token, 0o644)
        r = self.doctor("--json", "--state-dir", a.state_dir, "--grpc-bind-addr", a.grpc_addr,
                        "--http-bind-addr", "127.0.0.1:%d" % a.http_port,
                        "--cluster-bind-addr", "127.0.0.1:%d" % a.gossip_port)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        doc = json.loads(r.stdout)
        checks = {c["name"]: c for c in doc["checks"]}
        self.assertEqual(sorted(checks), sorted(self.KNOWN))
        self.assertEqual(checks["api-token"]["status"], "fail")
        self.assertIn("mode 0644", checks["api-token"]["detail"])
        self.assertEqual(checks["api-token"]["fix"], "chmod 600 " + token)
        self.assertEqual(doc["fail"], sum(c["status"] == "fail" for c in doc["checks"]))
        # the running agent's ports are its own, and its /metrics counted
        for p in ("port-grpc", "port-http", "port-gossip"):
            self.assertEqual(checks[p]["status"], "ok")
            self.assertIn("held by the running agent", checks[p]["detail"])
        self.assertEqual(checks["node-key"]["status"], "ok")
        self.assertIn("mode 0600", checks["node-key"]["detail"])
        # fixed as it says: that check passes
        os.chmod(token, 0o600)
        r = self.doctor("--json", "--state-dir", a.state_dir)
        checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        self.assertEqual(checks["api-token"]["status"], "ok")
        self.assertCleanExit(a)

    def test_a_config_with_a_secret_readable_by_others(self):
        conf = os.path.join(self.workdir, "hypercore.toml")
        with open(conf, "w") as f:
            f.write('# cluster-encrypt = "commented out"\nlog-level = "info"\n')
        os.chmod(conf, 0o644)
        env = dict(os.environ, HYPERCORE_CONFIG=conf)
        run = lambda: json.loads(subprocess.run(
            [hctest.HC_BIN, "doctor", "--json", "--state-dir", self.workdir], env=env,
            capture_output=True, text=True).stdout)
        check = {c["name"]: c for c in run()["checks"]}["config"]
        self.assertEqual(check["status"], "ok")
        with open(conf, "a") as f:
            f.write(' join-token = "hcjoin1.x"\n')
        check = {c["name"]: c for c in run()["checks"]}["config"]
        self.assertEqual(check["status"], "fail")
        self.assertEqual(check["fix"], "chmod 600 " + conf)

    def test_a_port_held_by_another_program_fails(self):
        import socket
        port = hctest.free_port()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            s.listen()
            r = self.doctor("--state-dir", os.path.join(self.workdir, "none"),
                            "--grpc-bind-addr", "127.0.0.1:%d" % port,
                            "--http-bind-addr", "127.0.0.1:%d" % hctest.free_port())
        self.assertEqual(r.returncode, 1)
        line = [l for l in r.stdout.splitlines() if " port-grpc " in l][0]
        self.assertRegex(line, r"^fail +port-grpc +127\.0\.0\.1:%d: Address already in use; "
                               r"fix: stop what holds it \(ss -lntup 'sport = :%d'\) or set "
                               r"--grpc-bind-addr$" % (port, port))

    def test_an_unreadable_vm_kernel_fails_doctor_and_the_agent(self):
        missing = os.path.join(self.workdir, "vmlinuz-none")
        r = self.doctor("--state-dir", os.path.join(self.workdir, "none"),
                        "--vm-kernel", missing)
        self.assertEqual(r.returncode, 1)
        line = [l for l in r.stdout.splitlines() if " microvm " in l][0]
        self.assertRegex(line, r"^fail +microvm +--vm-kernel %s: No such file or directory; "
                               r"fix: name a readable vmlinuz-<release>$" % re.escape(missing))
        # the agent refuses to start rather than run without what it was told
        r = subprocess.run([hctest.HC_BIN, "cluster", "--state-dir",
                            os.path.join(self.workdir, "vmk"), "--vm-kernel", missing,
                            "--no-dataplane", "--cluster-insecure",
                            "--grpc-bind-addr", "127.0.0.1:%d" % hctest.free_port(),
                            "--http-bind-addr", "127.0.0.1:%d" % hctest.free_port(),
                            "--cluster-bind-addr", "127.0.0.1:%d" % hctest.free_port()],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--vm-kernel %s: No such file or directory" % missing, r.stderr)

    def test_usage(self):
        self.assertEqual(self.doctor("extra").returncode, 2)
        self.assertEqual(self.doctor("--nope").returncode, 2)


if __name__ == "__main__":
    hctest.main()
