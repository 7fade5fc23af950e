#!/usr/bin/python3
"""The data plane in network namespaces, with real traffic:

    client ns --veth--> node ns (agent; XDP or TC on its uplink) --veth--> workload ns

Every test runs in both ways of serving node ports: the default (auto, which
on this veth uplink is TC ingress, with the client's checksum offloads left
on as a new user has them) and XDP (forced, with whole checksums from the
client as a NIC would deliver them). Node-port flows (TCP and UDP) reach the
workload and its replies come back from the node's address through TC; the
workload's counters match
the bytes sent; the workload cannot reach the node's own addresses; traffic
survives the agent being SIGKILLed and a new agent takes over the pinned
programs; `hypercore routes`, bpftool and `dataplane cleanup` see and remove
what was made. Static routes stand in for the cluster's (issue 7).
EgressTest shows the workload egress policy (issue 16) with a second agent
as another member of the cluster.
"""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
import netns  # noqa: E402

PREFIX = "hcdp%d" % (os.getpid() % 100000)
CLIENT_IP, NODE_UP_IP = "10.230.0.1", "10.230.0.2"
NODE_WL_IP, WL_IP = "10.231.0.1", "10.231.0.2"
TCP_PORT, UDP_PORT, SINK_PORT = 8080, 8081, 8082
TCP_NODE_PORT, UDP_NODE_PORT, SINK_NODE_PORT = 30080, 30081, 30082
ETH_IP_UDP = 14 + 20 + 8  # frame bytes around a UDP payload
ARP_FRAME = 42


# What happens here happens within milliseconds: shorter waits than hctest's.
wait_for = functools.partial(hctest.wait_for, timeout=10, interval=0.05)


class Echo:
    """An echo server (TCP, or UDP) bound at (addr, port) in namespace ns,
    run by threads of this process. peers: a list to append each client's
    address to; sink: count datagrams instead of answering them; http: answer
    what each read brought as the body of an HTTP 200 (a backend the proxy,
    which reads responses, accepts)."""

    def __init__(self, ns, addr, port, udp=False, peers=None, sink=False, http=False):
        self.http = http
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.stop = False
        self.count = 0
        self.peers = peers if peers is not None else []
        self.sink = sink
        self.sock = netns.socket_in(ns, family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind((addr, port))
        if not udp:
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._udp if udp else self._tcp, daemon=True)
        self.thread.start()

    def _tcp(self):
        while not self.stop:
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            self.peers.append(peer)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        c.settimeout(0.2)
        with c:
            while not self.stop:
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                c.settimeout(10)  # the client may be slow to read a large echo
                if self.http:
                    d = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(d), d)
                c.sendall(d)
                c.settimeout(0.2)

    def _udp(self):
        while not self.stop:
            try:
                d, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.count += 1
            if not self.sink:
                self.peers.append(peer)
                self.sock.sendto(d, peer)

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


class Servers:
    """TCP echo, UDP echo and UDP sink servers in the workload ns."""

    def __init__(self, ns):
        self.peers = []
        self.echoes = [Echo(ns, "0.0.0.0", TCP_PORT, peers=self.peers),
                       Echo(ns, "0.0.0.0", UDP_PORT, udp=True, peers=self.peers),
                       Echo(ns, "0.0.0.0", SINK_PORT, udp=True, sink=True)]

    @property
    def sink_count(self):
        return self.echoes[2].count

    def close(self):
        for e in self.echoes:
            e.close()


def node_topology(topo, outer, outer_ip, node_up_ip, node_wl_ip, wl_ip):
    """outer ns --veth-- node ns --veth-- workload ns, /24s, made in topo
    (netns.Topology): the workload routes through the node, the outer side
    reaches the workload subnet through it, the node forwards. Returns the
    namespaces (outer, node, workload) and the node's uplink name; the veths
    are PREFIX + outer + "u" / "up" and "wh" / "we"."""
    p = topo.prefix
    outer_ns, node, wl = topo.ns(outer), topo.ns("n"), topo.ns("w")
    topo.link(outer_ns, p + outer + "u", outer_ip + "/24",
              node, p + "up", node_up_ip + "/24")
    topo.link(node, p + "wh", node_wl_ip + "/24", wl, p + "we", wl_ip + "/24")
    netns.run_in(wl, "ip", "route", "add", "default", "via", node_wl_ip)
    netns.run_in(outer_ns, "ip", "route", "add", wl_ip.rsplit(".", 1)[0] + ".0/24", "via",
                 node_up_ip)
    netns.run_in(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return outer_ns, node, wl, p + "up"


class DataplaneTest(hctest.TestCase):
    """Default flags: --dataplane-mode auto, which picks TC on a veth."""
    topo = None
    MODE = None  # --dataplane-mode; None: the default
    UPLINK_MODE = "tc"  # what auto chooses for a veth uplink

    @classmethod
    def setUpClass(cls):
        cls.topo = netns.Topology(PREFIX)
        try:
            cls.client, cls.node, cls.wl, cls.uplink = node_topology(
                cls.topo, "c", CLIENT_IP, NODE_UP_IP, NODE_WL_IP, WL_IP)
            if cls.MODE == "xdp":
                # A NIC hands XDP frames with whole checksums; a veth's
                # transmit offload would leave them partial
                # (datapath-facts.md, trap 2). Auto mode needs no such help.
                netns.run_in(cls.client, "ethtool", "-K", PREFIX + "cu", "tx", "off")
            cls.servers = Servers(cls.wl)
        except Exception:
            cls.topo.destroy()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.servers.close()
        cls.topo.destroy()

    def setUp(self):
        super().setUp()
        self.pin_dir = "/sys/fs/bpf/%s-%s" % (PREFIX, self._testMethodName[-20:])
        self.dp_agent = None

    def tearDown(self):
        try:
            for a in self.agents:
                a.kill()
            r = self.cli("dataplane", "cleanup", "--dataplane-iface", self.uplink, check=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertFalse(os.path.exists(self.pin_dir))
        finally:
            super().tearDown()

    # ---- helpers ----

    def cli(self, *args, check=True):
        """`hypercore ARGS --bpf-pin-dir DIR` in the node namespace."""
        r = netns.run_in(self.node, hctest.HC_BIN, *args, "--bpf-pin-dir", self.pin_dir,
                         check=False)
        if check:
            self.assertEqual(r.returncode, 0, "hypercore %s: %s" % (" ".join(args), r.stderr))
        return r

    def start_agent(self, mode=None):
        mode = mode or self.MODE
        a = hctest.Agent(self.workdir, "node%d" % len(self.agents), dataplane=True,
                         netns=self.node,
                         extra_args=["--dataplane-iface", self.uplink, "--bpf-pin-dir",
                                     self.pin_dir,
                                     *(["--dataplane-mode", mode] if mode else [])])
        self.agents.append(a)
        a.start()
        return a

    def add_services(self):
        self.cli("routes", "add", "--node-port", str(TCP_NODE_PORT), "--backend",
                 "%s:%d" % (WL_IP, TCP_PORT))
        for port, backend in ((UDP_NODE_PORT, UDP_PORT), (SINK_NODE_PORT, SINK_PORT)):
            self.cli("routes", "add", "--node-port", str(port), "--proto", "udp", "--backend",
                     "%s:%d" % (WL_IP, backend))

    def routes(self):
        return json.loads(self.cli("routes", "--json").stdout)

    def workload_row(self):
        """The workload's row once the agent attached TC to its veth."""
        def find():
            for w in self.routes()["workloads"]:
                if w["address"] == WL_IP:
                    return w
            return None
        return wait_for("TC on the workload's veth", find)

    def client_tcp(self):
        s = netns.socket_in(self.client)
        s.settimeout(15)  # losses on a loaded machine back TCP off for seconds
        s.connect((NODE_UP_IP, TCP_NODE_PORT))
        return s

    def echo(self, s, msg):
        # Sent from another thread: a message larger than the socket
        # buffers comes back while it is still being sent.
        sender = threading.Thread(target=s.sendall, args=(msg,))
        sender.start()
        got = b""
        try:
            while len(got) < len(msg):
                d = s.recv(65536)
                self.assertTrue(d, "connection closed")
                got += d
        finally:
            sender.join()
        self.assertEqual(got, msg)

    # ---- tests ----

    def test_tcp_and_udp_node_ports_reach_the_workload(self):
        self.start_agent()
        self.add_services()
        self.workload_row()
        with self.client_tcp() as s:
            local = s.getsockname()
            self.echo(s, b"over xdp")
            # Replies bigger than the part of an skb TC can read directly
            # (GSO segments) are translated too.
            self.echo(s, os.urandom(256 * 1024))
        # The workload saw the client itself (DNAT only, no SNAT).
        self.assertIn(local, self.servers.peers)

        u = netns.socket_in(self.client, type=socket.SOCK_DGRAM)
        with u:
            u.settimeout(3)
            u.sendto(b"udp over xdp", (NODE_UP_IP, UDP_NODE_PORT))
            data, src = u.recvfrom(100)
            self.assertEqual(data, b"udp over xdp")
            # The reply comes from the node port, not the workload.
            self.assertEqual(src, (NODE_UP_IP, UDP_NODE_PORT))
            self.assertIn((CLIENT_IP, u.getsockname()[1]), self.servers.peers)

        doc = self.routes()
        self.assertGreaterEqual(doc["conntrack_entries"], 4)  # both directions of 2 flows
        # Every reply was translated and sent, GSO segments included.
        self.assertEqual(doc["drops"], {r: 0 for r in doc["drops"]})
        ports = {(s["node_port"], s["proto"]): s for s in doc["services"]}
        self.assertEqual(ports[(TCP_NODE_PORT, "tcp")]["backends"],
                         [{"address": WL_IP, "port": TCP_PORT}])
        self.assertTrue(ports[(TCP_NODE_PORT, "tcp")]["static"])

    def test_counters_match_the_bytes_sent(self):
        self.start_agent()
        self.add_services()
        self.workload_row()
        u = netns.socket_in(self.client, type=socket.SOCK_DGRAM)
        with u:
            u.sendto(b"warm-up", (NODE_UP_IP, SINK_NODE_PORT))  # neighbours resolved
            wait_for("the warm-up datagram", lambda: self.servers.sink_count >= 1)
            time.sleep(0.2)
            before = self.workload_row()
            start = self.servers.sink_count
            n, size = 50, 300
            for _ in range(n):
                u.sendto(b"x" * size, (NODE_UP_IP, SINK_NODE_PORT))
            wait_for("%d datagrams at the sink" % n,
                     lambda: self.servers.sink_count >= start + n)
            after = self.workload_row()
        packets = after["rx_packets"] - before["rx_packets"]
        nbytes = after["rx_bytes"] - before["rx_bytes"]
        # Exactly our frames, plus any ARP frame the neighbours exchanged.
        self.assertGreaterEqual(packets, n)
        self.assertEqual(nbytes - n * (ETH_IP_UDP + size), (packets - n) * ARP_FRAME,
                         (before, after))

        # Replies are counted as the workload's transmit side.
        before = self.workload_row()
        u = netns.socket_in(self.client, type=socket.SOCK_DGRAM)
        with u:
            u.settimeout(3)
            for _ in range(10):
                u.sendto(b"y" * 100, (NODE_UP_IP, UDP_NODE_PORT))
                self.assertEqual(u.recvfrom(200)[0], b"y" * 100)
        after = self.workload_row()
        tx = after["tx_packets"] - before["tx_packets"]
        self.assertGreaterEqual(tx, 10)
        self.assertEqual(after["tx_bytes"] - before["tx_bytes"] - 10 * (ETH_IP_UDP + 100),
                         (tx - 10) * ARP_FRAME)

    def test_workload_cannot_reach_the_hosts_addresses(self):
        self.start_agent()
        self.add_services()
        self.assertTrue(self.workload_row()["isolated"])
        listeners = []
        for port in (9999, 53):
            s = netns.socket_in(self.node)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(4)
            listeners.append(s)
        try:
            for addr in (NODE_UP_IP, NODE_WL_IP):
                c = netns.socket_in(self.wl)
                c.settimeout(1)
                with c, self.assertRaises(OSError, msg="workload reached %s" % addr):
                    c.connect((addr, 9999))
            # DNS on the node stays reachable.
            c = netns.socket_in(self.wl)
            c.settimeout(3)
            with c:
                c.connect((NODE_WL_IP, 53))
            # The client, not a workload, reaches the same port.
            c = netns.socket_in(self.client)
            c.settimeout(3)
            with c:
                c.connect((NODE_UP_IP, 9999))
            # Connections the host opens to the workload still get replies.
            c = netns.socket_in(self.node)
            c.settimeout(3)
            with c:
                c.connect((WL_IP, TCP_PORT))
                self.echo(c, b"host to workload")
        finally:
            for s in listeners:
                s.close()
        doc = self.routes()
        self.assertGreaterEqual(doc["drops"]["wl_member"], 2)
        self.assertGreaterEqual(self.workload_row()["dropped_packets"], 2)

    def test_traffic_survives_a_killed_agent(self):
        agent = self.start_agent()
        self.add_services()
        self.workload_row()
        s = self.client_tcp()
        with s:
            self.echo(s, b"before")
            agent.proc.send_signal(signal.SIGKILL)
            agent.proc.wait()
            # The pins are visible from the host's mount namespace.
            pins = ["hc_routes", "hc_services", "hc_conntrack"]
            if self.UPLINK_MODE == "xdp":
                pins.append("link_xdp")
            for name in pins:
                self.assertTrue(os.path.exists(os.path.join(self.pin_dir, name)), name)
            self.echo(s, b"while no agent runs")
            with self.client_tcp() as s2:
                self.echo(s2, b"a new flow without an agent")
            prog_before = self.uplink_prog_id()

            self.start_agent()
            self.echo(s, b"after the restart")
            # a new program in the same place (link or filter)
            self.assertNotEqual(self.uplink_prog_id(), prog_before)
        self.assertEqual(len([x for x in self.routes()["services"] if x["static"]]), 3)

    def uplink_progs(self):
        """bpftool's view of the uplink: (xdp, tc) program lists."""
        r = netns.run_in(self.node, "bpftool", "-j", "net", "show", "dev", self.uplink)
        doc = json.loads(r.stdout)[0]
        return doc["xdp"], doc["tc"]

    def uplink_prog_id(self, mode=None):
        """The id of the one program serving node ports on the uplink, in
        the way this class expects (or mode); nothing else is attached."""
        xdp, tc = self.uplink_progs()
        if (mode or self.UPLINK_MODE) == "xdp":
            self.assertEqual(tc, [])
            self.assertEqual(len(xdp), 1, xdp)
            self.assertEqual(xdp[0]["mode"], "driver")  # native XDP on a veth
            prog_id, name = xdp[0]["id"], "hc_xdp_ingress"
        else:
            self.assertEqual(xdp, [])
            self.assertEqual(len(tc), 1, tc)
            self.assertEqual(tc[0]["kind"], "clsact/ingress")
            prog_id, name = tc[0]["id"], "hc_tc_uplink"
        r = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog_id)],
                           capture_output=True, text=True, check=True)
        self.assertEqual(json.loads(r.stdout)["name"], name)
        return prog_id

    def test_mode_switch_leaves_one_program(self):
        other = "xdp" if self.UPLINK_MODE == "tc" else "tc"
        agent = self.start_agent(mode=other)
        self.uplink_prog_id(mode=other)
        self.assertCleanExit(agent)
        agent = self.start_agent()
        self.add_services()
        self.workload_row()
        self.uplink_prog_id()
        self.assertEqual(self.routes()["uplink"]["mode"], self.UPLINK_MODE)
        with self.client_tcp() as s:
            self.echo(s, b"after the switch")

    def test_routes_verbs_and_bpftool(self):
        self.start_agent()
        self.cli("routes", "add", "--host", "Shop.Example.com", "--port", "443", "--backend",
                 "10.9.9.9:8443")
        doc = self.routes()
        self.assertEqual(doc["routes"], [{"host": "shop.example.com", "port": 443,
                                          "backend": "10.9.9.9", "backend_port": 8443,
                                          "node": "", "static": True,
                                          "backend_protocol": "h1"}])
        self.cli("routes", "add", "--host", "grpc.example.com", "--port", "443", "--backend",
                 "10.9.9.9:9443", "--backend-protocol", "h2c")
        table = self.cli("routes").stdout
        self.assertIn("10.9.9.9:8443", table)
        # the table has the backend protocol --json has (columns by the header's positions)
        lines = table.splitlines()
        head = next(line for line in lines if line.startswith("HOST"))
        self.assertEqual(head.split(), ["HOST", "PORT", "BACKEND", "PROTOCOL", "NODE", "STATIC"])
        col = head.index("PROTOCOL")
        protocols = {line.split()[0]: line[col:].split()[0] for line in lines
                     if line.startswith(("shop.", "grpc."))}
        self.assertEqual(protocols, {"shop.example.com": "h1", "grpc.example.com": "h2c"})
        self.cli("routes", "del", "--host", "grpc.example.com", "--port", "443")
        # bpftool prints the map with field names, from BTF.
        r = subprocess.run(["bpftool", "map", "dump", "pinned",
                            os.path.join(self.pin_dir, "hc_routes")],
                           capture_output=True, text=True, check=True)
        self.assertIn('"host": "shop.example.com"', r.stdout)
        self.assertIn('"flags": 1', r.stdout)

        bad = [
            (["routes", "add", "--host", "x", "--port", "80", "--backend", "nope"], 2, "--backend"),
            (["routes", "add", "--host", "a b", "--port", "80", "--backend", "10.0.0.1:80"], 2,
             "--host"),
            (["routes", "add", "--node-port", "0", "--backend", "10.0.0.1:80"], 2, "--node-port"),
            (["routes", "add", "--node-port", "30000", "--proto", "sctp", "--backend",
              "10.0.0.1:80"], 2, "--proto"),
            (["routes", "add", "--backend", "10.0.0.1:80"], 2, "required"),
            (["routes", "del", "--host", "missing.example", "--port", "80"], 1, "no route"),
        ]
        for args, code, word in bad:
            r = self.cli(*args, check=False)
            self.assertEqual(r.returncode, code, (args, r.stderr))
            self.assertIn(word, r.stderr)
            self.assertLessEqual(len(r.stderr.strip().splitlines()[0]), 200)
        self.cli("routes", "del", "--host", "shop.example.com", "--port", "443")
        self.assertEqual(self.routes()["routes"], [])

        r = netns.run_in(self.node, hctest.HC_BIN, "routes", "--bpf-pin-dir",
                         "/sys/fs/bpf/%s-none" % PREFIX, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no data plane pinned", r.stderr)

        doc = self.routes()["uplink"]
        self.assertEqual(doc["iface"], self.uplink)
        self.assertEqual(doc["mode"], self.UPLINK_MODE)
        self.assertEqual(doc["xdp_mode"], "native" if self.UPLINK_MODE == "xdp" else "none")
        self.assertIn("Uplink: %s, node ports by %s" % (
            self.uplink, "XDP (native mode)" if self.UPLINK_MODE == "xdp" else "TC ingress"),
            table)

    def test_an_agent_that_cannot_start_attaches_nothing(self):
        busy = netns.socket_in(self.node)
        with busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            a = hctest.Agent(self.workdir, "busy", dataplane=True, netns=self.node,
                             extra_args=["--dataplane-iface", self.uplink, "--bpf-pin-dir",
                                         self.pin_dir])
            a.http_port = busy.getsockname()[1]
            self.agents.append(a)
            a.start(wait=False)
            self.assertEqual(a.proc.wait(20), 1)
        self.assertIn("http", a.log().lower())
        self.assertFalse(os.path.exists(self.pin_dir))
        self.assertEqual(self.uplink_progs(), ([], []))

    def test_pins_of_another_layout_are_refused_clearly(self):
        # A map pinned under a data plane name with another shape (an older
        # build's, or someone else's): the agent says which and why, and
        # leaves it alone.
        os.makedirs(self.pin_dir)
        pin = os.path.join(self.pin_dir, "hc_drops")
        subprocess.run(["bpftool", "map", "create", pin, "type", "array", "key", "4", "value",
                        "8", "entries", "3", "name", "hc_drops"], check=True)
        a = hctest.Agent(self.workdir, "old", dataplane=True, netns=self.node,
                         extra_args=["--dataplane-iface", self.uplink, "--bpf-pin-dir",
                                     self.pin_dir])
        self.agents.append(a)
        a.start(wait=False)
        self.assertEqual(a.proc.wait(20), 1)
        last = a.log().strip().splitlines()[-1]
        self.assertIn("cannot load", last)
        self.assertIn("hc_drops", last)
        self.assertTrue(os.path.exists(pin))
        self.assertEqual(self.uplink_progs(), ([], []))

    def test_cleanup_detaches_everything(self):
        agent = self.start_agent()
        self.add_services()
        self.workload_row()
        status, _, body = agent.http("/metrics")
        self.assertEqual(status, 200)
        self.assertIn(('hypercore_dataplane_info{iface="%s",mode="%s",xdp_mode="%s"} 1'
                       % (self.uplink, self.UPLINK_MODE,
                          "native" if self.UPLINK_MODE == "xdp" else "none")).encode(), body)
        self.assertIn(("node ports on %s by %s" % (
            self.uplink, "XDP in native mode" if self.UPLINK_MODE == "xdp"
            else "TC ingress: veth hands on its peer's partial checksums")), agent.log())
        self.assertCleanExit(agent)
        # A stopped agent leaves the data plane in place ...
        self.assertGreater(self.uplink_prog_id(), 0)
        # ... and cleanup, told nothing but the pin directory, finds the
        # uplink the agent recorded ...
        self.cli("dataplane", "cleanup")
        # ... and cleanup takes all of it away.
        self.assertFalse(os.path.exists(self.pin_dir))
        r = netns.run_in(self.node, "bpftool", "-j", "net", "show")
        doc = json.loads(r.stdout)[0]
        self.assertEqual(doc["xdp"], [])
        self.assertEqual(doc["tc"], [])


class XdpModeTest(DataplaneTest):
    """--dataplane-mode xdp: the same tests with XDP on the uplink."""
    MODE = "xdp"
    UPLINK_MODE = "xdp"


EG_PREFIX = "hceg%d" % (os.getpid() % 100000)
EG_MEMBER_IP, EG_NET_IP, EG_NODE_UP_IP = "10.232.0.3", "10.232.0.9", "10.232.0.2"
EG_NODE_WL_IP, EG_WL_IP = "10.233.0.1", "10.233.0.2"
EG_NODE_LL6, EG_WL_LL6 = "fe80::1", "fe80::2"
METADATA_IP = "169.254.169.254"
PROXY_PORT, NODE_PORT, WL_PORT, WL_HTTP_PORT = 8443, 30090, 8080, 8081


class EgressTest(hctest.TestCase):
    """The workload egress policy (bpf/lib/egress.h) with real traffic and
    the veths' offloads left on:

        member ns (another agent at .3; "the internet" at .9)
          --veth-- node ns (agent; its gossip at .2) --veth-- workload ns

    The workload cannot reach a member's :8000/:8001/:7946, this node's,
    169.254.169.254 or an IPv6 link-local address, and a connection it
    opened before TC came keeps nothing; it reaches the same ports on an
    internet address, the proxy's port and a node port on a member, DNS on
    the node, and another workload's URL through the node's proxy."""

    @classmethod
    def setUpClass(cls):
        cls.topo = netns.Topology(EG_PREFIX)
        cls.echoes = []
        try:
            cls.member, cls.node, cls.wl, cls.uplink = node_topology(
                cls.topo, "m", EG_MEMBER_IP, EG_NODE_UP_IP, EG_NODE_WL_IP, EG_WL_IP)
            netns.run_in(cls.member, "ip", "addr", "add", EG_NET_IP + "/24", "dev",
                         EG_PREFIX + "mu")
            # IPv6 on the workload's veth pair only, link-local addresses.
            for ns, dev, ll in ((cls.node, EG_PREFIX + "wh", EG_NODE_LL6),
                                (cls.wl, EG_PREFIX + "we", EG_WL_LL6)):
                netns.run_in(ns, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=0" % dev)
                netns.run_in(ns, "ip", "addr", "add", ll + "/64", "dev", dev, "nodad")
            netns.run_in(cls.node, "ip", "addr", "add", METADATA_IP + "/32", "dev", "lo")
            for port in (8000, 8001, PROXY_PORT, NODE_PORT):
                cls.echoes.append(Echo(cls.member, "0.0.0.0", port))
            cls.echoes.append(Echo(cls.member, EG_NET_IP, 7946))
            for port in (8000, 8001):
                cls.echoes.append(Echo(cls.node, "0.0.0.0", port))
            cls.echoes.append(Echo(cls.node, "::", 8000))
            cls.echoes.append(Echo(cls.node, METADATA_IP, 80))
            cls.echoes.append(Echo(cls.node, EG_NODE_WL_IP, 53, udp=True))
            cls.echoes.append(Echo(cls.wl, "0.0.0.0", WL_PORT))
            cls.echoes.append(Echo(cls.wl, "0.0.0.0", WL_HTTP_PORT, http=True))
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for e in cls.echoes:
            e.close()
        cls.topo.destroy()

    def setUp(self):
        super().setUp()
        self.pin_dir = "/sys/fs/bpf/%s" % EG_PREFIX

    def tearDown(self):
        try:
            for a in self.agents:
                a.kill()
            r = netns.run_in(self.node, hctest.HC_BIN, "dataplane", "cleanup",
                             "--dataplane-iface", self.uplink, "--bpf-pin-dir", self.pin_dir,
                             check=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertFalse(os.path.exists(self.pin_dir))
        finally:
            super().tearDown()

    def cli(self, *args):
        r = netns.run_in(self.node, hctest.HC_BIN, *args, "--bpf-pin-dir", self.pin_dir,
                         check=False)
        self.assertEqual(r.returncode, 0, "hypercore %s: %s" % (" ".join(args), r.stderr))
        return r

    def routes(self):
        return json.loads(self.cli("routes", "--json").stdout)

    def connect(self, addr, port, timeout=1.0):
        """A TCP connection from the workload, or OSError."""
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = netns.socket_in(self.wl, family)
        s.settimeout(timeout)
        try:
            # IPv6 here is link-local: scoped to the workload's veth.
            s.connect((addr, port) if family == socket.AF_INET else
                      (addr, port, 0, self.wl_ifindex))
        except OSError:
            s.close()
            raise
        return s

    def echo(self, s, msg=b"ping"):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(65536)
            if not d:
                break
            got += d
        return got

    def assertReaches(self, addr, port):
        with self.connect(addr, port, timeout=5) as s:
            self.assertEqual(self.echo(s, b"hello %d" % port), b"hello %d" % port,
                             "%s:%d" % (addr, port))

    def assertRefused(self, addr, port):
        with self.assertRaises(OSError, msg="the workload reached %s:%d" % (addr, port)):
            self.connect(addr, port).close()

    def test_deny_by_default_with_real_traffic(self):
        self.wl_ifindex = json.loads(netns.run_in(self.wl, "ip", "-j", "link", "show", "dev",
                                                  EG_PREFIX + "we").stdout)[0]["ifindex"]
        # Before the data plane, everything is in reach (so what fails
        # below fails by the policy), and a connection is opened early.
        early = self.connect(EG_MEMBER_IP, 8000, timeout=5)
        for addr, port in ((EG_MEMBER_IP, 8001), (METADATA_IP, 80), (EG_NODE_LL6, 8000)):
            self.assertReaches(addr, port)

        node = hctest.Agent(self.workdir, "node", dataplane=True, netns=self.node,
                            extra_args=["--dataplane-iface", self.uplink, "--bpf-pin-dir",
                                        self.pin_dir, "--cluster-bind-addr",
                                        EG_NODE_UP_IP + ":7946"])
        self.agents.append(node)
        node.start()
        token = hctest.run_cli("cluster", "join-token", "--state-dir", node.state_dir)
        self.assertEqual(token.returncode, 0, token.stderr)
        member = hctest.Agent(self.workdir, "member", netns=self.member,
                              extra_args=["--cluster-bind-addr", EG_MEMBER_IP + ":7946",
                                          "--join-token", token.stdout.strip(),
                                          EG_NODE_UP_IP + ":7946"])
        self.agents.append(member)
        member.start()
        # A node port to the workload attaches TC to its veth; a route makes
        # the proxy serve PROXY_PORT.
        self.cli("routes", "add", "--node-port", str(NODE_PORT), "--backend",
                 "%s:%d" % (EG_WL_IP, WL_PORT))
        self.cli("routes", "add", "--host", "app.test", "--port", str(PROXY_PORT), "--backend",
                 "%s:%d" % (EG_WL_IP, WL_HTTP_PORT))
        wait_for("TC on the workload's veth", lambda: any(
            w["address"] == EG_WL_IP and w["isolated"] for w in self.routes()["workloads"]))
        wait_for("both members' addresses in hc_members",
                 lambda: self.routes()["egress"]["member_addresses"] >= 2)
        self.assertIn(PROXY_PORT, self.routes()["egress"]["proxy_ports"])
        before = self.routes()["drops"]

        # The connection opened before TC carries nothing any more.
        with early:
            early.settimeout(2)
            early.sendall(b"still there?")
            with self.assertRaises(socket.timeout):
                early.recv(100)

        for addr, port in ((EG_MEMBER_IP, 8000), (EG_MEMBER_IP, 8001), (EG_MEMBER_IP, 7946),
                           (EG_NODE_UP_IP, 8000), (EG_NODE_UP_IP, 7946),
                           (EG_NODE_WL_IP, 8001)):
            self.assertRefused(addr, port)
        self.assertRefused(METADATA_IP, 80)
        self.assertRefused(EG_NODE_LL6, 8000)

        # The same ports on an internet address; the proxy's port and a node
        # port on a member; DNS on the node.
        for port in (8000, 8001, 7946):
            self.assertReaches(EG_NET_IP, port)
        self.assertReaches(EG_MEMBER_IP, PROXY_PORT)
        self.assertReaches(EG_MEMBER_IP, NODE_PORT)
        u = netns.socket_in(self.wl, type=socket.SOCK_DGRAM)
        with u:
            u.settimeout(5)
            u.sendto(b"dns?", (EG_NODE_WL_IP, 53))
            self.assertEqual(u.recvfrom(100)[0], b"dns?")

        # Hairpin: a workload's URL through this node's proxy. The proxy
        # opens the connection to the workload, which answers with the
        # request it got: ours, as the proxy passed it on.
        request = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"
        with self.connect(EG_NODE_UP_IP, PROXY_PORT, timeout=5) as s:
            s.sendall(request)
            answer = b""
            while b"Host: app.test" not in answer:
                d = s.recv(65536)
                self.assertTrue(d, "closed after %r" % answer)
                answer += d
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
            self.assertIn(b"\r\n\r\nGET / HTTP/1.1\r\n", answer)

        after = self.routes()
        drops = {r: after["drops"][r] - before[r] for r in before}
        self.assertGreaterEqual(drops["wl_member"], 7, drops)  # 6 refused + the early one
        self.assertGreaterEqual(drops["wl_metadata"], 1, drops)
        # The workload's IPv6 source is link-local, which is not an address it
        # may send from: refused as spoofed before its destination is looked at.
        self.assertGreaterEqual(drops["wl_spoofed"] + drops["wl_link_local"], 1, drops)
        for r in ("wl_malformed", "wl_not_ip", "wl_workload"):
            self.assertEqual(drops[r], 0, drops)
        row = [w for w in after["workloads"] if w["address"] == EG_WL_IP][0]
        self.assertGreater(row["dropped_packets"], 0)
        # The counters as bpftool shows them (one value per CPU).
        r = subprocess.run(["bpftool", "-j", "map", "dump", "pinned",
                            os.path.join(self.pin_dir, "hc_drops")], capture_output=True,
                           text=True, check=True)
        def number(v):  # BTF-formatted, or raw little-endian bytes
            return v if isinstance(v, int) else int.from_bytes(bytes(int(b, 16) for b in v),
                                                                "little")
        per_reason = {number(e["key"]): sum(number(v["value"]) for v in e["values"])
                      for e in (x.get("formatted", x) for x in json.loads(r.stdout))}
        self.assertEqual(per_reason[11], after["drops"]["wl_member"])

    def test_workloads_of_an_older_layout_are_carried_over(self):
        # An agent from before the egress policy pinned hc_workloads with
        # 104-byte values; a new agent replaces the map and keeps its
        # entries, so the veth moves to the new programs at once.
        os.makedirs(self.pin_dir)
        pin = os.path.join(self.pin_dir, "hc_workloads")
        subprocess.run(["bpftool", "map", "create", pin, "type", "hash", "key", "4", "value",
                        "104", "entries", "4096", "name", "hc_workloads"], check=True)
        ifindex = json.loads(netns.run_in(self.node, "ip", "-j", "link", "show", "dev",
                                          EG_PREFIX + "wh").stdout)[0]["ifindex"]
        value = (b"old-wl".ljust(64, b"\0") + socket.inet_aton(EG_WL_IP) + bytes(12) +
                 bytes([socket.AF_INET, 0, 0, 0]) + (1).to_bytes(4, "little") + bytes(16))
        self.assertEqual(len(value), 104)
        subprocess.run(["bpftool", "map", "update", "pinned", pin, "key", *map(str, ifindex
                        .to_bytes(4, "little")), "value", *map(str, value)], check=True)
        node = hctest.Agent(self.workdir, "node", dataplane=True, netns=self.node,
                            extra_args=["--dataplane-iface", self.uplink, "--bpf-pin-dir",
                                        self.pin_dir])
        self.agents.append(node)
        node.start()
        rows = [w for w in self.routes()["workloads"] if w["id"] == "old-wl"]
        self.assertEqual(len(rows), 1, self.routes()["workloads"])
        self.assertTrue(rows[0]["isolated"])
        self.assertEqual(rows[0]["address"], EG_WL_IP)
        self.assertIn("replacing %s of an older layout" % pin, node.log())
        # The veth runs the new programs: the metadata address is refused.
        self.wl_ifindex = 0
        self.assertRefused(METADATA_IP, 80)


if __name__ == "__main__":
    hctest.main()
