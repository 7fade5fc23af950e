"""A real Debian `serf agent` for the tests that put hypercore nodes next to
one: its own gossip and RPC ports, an event handler of the test's choosing,
optionally inside a network namespace, ended by PID."""

import json
import os
import signal
import subprocess

import hctest
import netns
import serfrpc
from hctest import wait_for

SERF = "/usr/bin/serf"


class SerfAgent:
    """`serf agent -node=NAME` bound to HOST:port. handler is the body of its
    event handler (a sh script after "#!/bin/sh"), in which {events} stands
    for a path in the agent's own directory (self.events) and {name} for its
    name; ns runs it (and the serf CLI against it) in that network namespace."""

    def __init__(self, workdir, name, extra=(), handler="cat >/dev/null\n", ns=None,
                 host="127.0.0.1"):
        self.name = name
        self.ns = ns
        self.host = host
        self.port = hctest.free_port()
        self.rpc = "127.0.0.1:%d" % hctest.free_port()
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.events = os.path.join(self.dir, "events")
        script = os.path.join(self.dir, "handler.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n" + handler.format(events=self.events, name=name))
        os.chmod(script, 0o755)
        self.args = self._in_ns(SERF, "agent", "-node=" + name,
                                "-bind=%s:%d" % (host, self.port), "-rpc-addr=" + self.rpc,
                                "-event-handler=" + script, "-log-level=debug", *extra)
        self.log_path = os.path.join(self.dir, "serf.log")
        self.proc = None
        self._log = None

    def _in_ns(self, *argv):
        return netns.nsenter(self.ns, *argv)

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def start(self, wait_rpc=True, timeout=30):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if wait_rpc:
            wait_for("serf agent %s to answer RPC" % self.name,
                     lambda: self.cli("members").returncode == 0, timeout)
        return self

    def cli(self, *args, check=False, timeout=30):
        """`serf ARGS[0] -rpc-addr=... ARGS[1:]`; text output."""
        r = subprocess.run(self._in_ns(SERF, args[0], "-rpc-addr=" + self.rpc, *args[1:]),
                           capture_output=True, encoding="utf-8", errors="replace",
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("serf %s failed: %s%s" % (args, r.stdout, r.stderr))
        return r

    def members(self):
        """{name: member as `serf members -format=json` shows it}, or None
        while its RPC does not answer."""
        r = self.cli("members", "-format=json")
        if r.returncode != 0:
            return None
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def statuses(self):
        """{name: status}, or None while its RPC does not answer."""
        members = self.members()
        return None if members is None else {n: m["status"] for n, m in members.items()}

    def send_event(self, name, payload):
        """A user event with a binary payload, through the RPC protocol (the
        CLI takes text only)."""
        c = serfrpc.SerfRPC(self.rpc)
        try:
            c.event(name, payload, coalesce=False)
        finally:
            c.close()

    def read_events(self):
        """What the handler wrote to the events file, as bytes."""
        try:
            with open(self.events, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        hctest.end_process(self.proc, sig, timeout=15)
        if self._log:
            self._log.close()
            self._log = None
