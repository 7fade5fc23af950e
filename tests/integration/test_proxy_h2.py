#!/usr/bin/python3
"""HTTP/2 and gRPC through the agent's proxy (agent/proxy/h2.c, h2_up.c),
in the proxy tests' namespace (tests/lib/proxytest.py), one agent for
every case:

    curl, grpcio, raw frames (this process) --> agent's proxy --> backends

Cases: curl --http2 through TLS termination (ALPN h2, 200, the body whole,
64 MiB under flow control with the agent's memory bounded, 421 for a name
other than the SNI), --http2-prior-knowledge on a plain port (a chunked
upload too), two hosts on one HTTP/2 connection routed to two backends,
four 1 MiB uploads at once on one connection (h2c and TLS) to a backend
that reads them whole (each checked byte-exact by its sha256) and to one
that answers before reading (the response whole, then RST_STREAM NO_ERROR,
and the connection's window still moving for the next upload), streams
retried on a new backend connection when the backend closed the reused
one under them (GET, PUT; never a POST: 502); a
python3-grpcio server behind a static route with --backend-protocol h2c,
called by a grpcio client through the proxy (plain and terminated): unary,
server streaming of 10,000 messages, a bidirectional stream, an error status
in trailers, a
deadline that passes through (grpc-timeout) and one that expires, a
cancelled stream (the server sees it), a call the server ends while the
client still streams, a 16 MiB message each way; and the
attacks, each from a small client of raw frames, answered by GOAWAY or
RST_STREAM and counted by kind, with the agent's memory and CPU bounded and
another client served right after: rapid reset, CONTINUATION flood, an
HPACK bomb, a PING flood, a stream stalled on a zero window; and h2 and h2c
with --proxy-forwarding sockmap (a second agent).
"""

import hashlib
import json
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import hctest  # noqa: E402
from proxytest import BASE, MiB, metric, pattern_sha, rss_kib  # noqa: E402
from test_proxy import ProxyCase  # noqa: E402

try:
    import grpc
    import grpcecho
except ImportError:  # reported by the gRPC cases as a skip
    grpc = None

IDLE_S = 3  # --proxy-idle-timeout: the stalled stream's reset comes after it
CURL = ("curl", "-sS", "--max-time", "60")

# HTTP/2 frame types and error codes (RFC 9113)
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4
CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xb


# ---- a client of raw frames ---------------------------------------------------

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_int(v, bits, first=0):
    top = (1 << bits) - 1
    if v < top:
        return bytes([first | v])
    out, v = bytearray([first | top]), v - top
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def hpack_lit(name, value, indexed=False):
    """A literal field with a new name, no Huffman: without indexing, or
    added to the dynamic table."""
    n, v = name.encode(), value.encode()
    return (b"\x40" if indexed else b"\x00") + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def request_block(host, path="/hello", method="GET"):
    return b"".join(hpack_lit(k, v) for k, v in ((":method", method), (":scheme", "http"),
                                                  (":path", path), (":authority", host)))


class H2:
    """HTTP/2 with prior knowledge on a plain socket, or over TLS with ALPN
    h2 (tls: a client context and the server name), frames in and out."""

    def __init__(self, port, settings=(), tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        if tls:
            self.sock = tls[0].wrap_socket(self.sock, server_hostname=tls[1])
            assert self.sock.selected_alpn_protocol() == "h2"
        self.buf = b""
        self.next_sid = 1
        # flow control of what we send: RFC 9113 defaults until the
        # server's SETTINGS and WINDOW_UPDATEs say more
        self.conn_win = self.init_win = 65535
        self.wins = {}
        payload = b"".join(struct.pack(">HI", k, v) for k, v in settings)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, payload))

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # cut off by our GOAWAY and close: what the reading says

    def frames(self, until, limit_s=15):
        """Frames (type, flags, stream, payload) until until(frame) is true
        or the connection ends; ends with None at EOF."""
        out, end = [], time.monotonic() + limit_s
        while time.monotonic() < end:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                out.append(f)
                if f[0] == SETTINGS and not f[1] & 1:
                    self.send(frame(SETTINGS, 1, 0))
                if until(f):
                    return out
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                data = b""
            if not data:
                out.append(None)
                return out
            self.buf += data
        raise AssertionError("no end of frames in %d s" % limit_s)

    def close(self):
        self.sock.close()

    def uploads(self, reqs, limit_s=30):
        """POSTs each (host, path, body) on a stream of its own, all at
        once, DATA as the server's windows allow. Returns per request a
        dict: head (its first header block), body (the DATA), end (True
        once END_STREAM came), rst (a RST_STREAM's code, or None), sent
        (body bytes sent) once every stream is over: the response ended
        and the body was sent whole or the server reset the stream."""
        streams, out = {}, bytearray()
        for host, path, body in reqs:
            sid, self.next_sid = self.next_sid, self.next_sid + 2
            block = request_block(host, path, "POST") + hpack_lit("content-length", str(len(body)))
            out += frame(HEADERS, END_HEADERS, sid, block)
            streams[sid] = {"body": body, "sent": 0, "head": None, "data": b"", "end": False,
                            "rst": None}
            self.wins[sid] = self.init_win

        def over(s):
            return s["rst"] is not None or (s["end"] and s["sent"] == len(s["body"]))
        self.sock.setblocking(False)
        end = time.monotonic() + limit_s
        while out or not all(over(s) for s in streams.values()):  # no frame left cut
            if time.monotonic() > end:
                raise AssertionError("streams not over in %d s: %r" % (limit_s, [
                    (k, s["end"], s["rst"], s["sent"]) for k, s in streams.items()]))
            for sid, s in streams.items():
                while s["rst"] is None and s["sent"] < len(s["body"]) and len(out) < 262144:
                    n = min(16384, self.wins[sid], self.conn_win, len(s["body"]) - s["sent"])
                    if n <= 0:
                        break
                    last = s["sent"] + n == len(s["body"])
                    out += frame(DATA, END_STREAM if last else 0, sid,
                                 s["body"][s["sent"]:s["sent"] + n])
                    s["sent"] += n
                    self.wins[sid] -= n
                    self.conn_win -= n
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            r, w, _ = select.select([self.sock], [self.sock] if out else [], [], 0.2)
            try:
                if w:
                    del out[:self.sock.send(out[:65536])]
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            if not (r or pending):
                continue
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            if not data:
                raise AssertionError("the connection ended: %r" % [
                    (k, s["end"], s["rst"], s["sent"]) for k, s in streams.items()])
            self.buf += data
            out += self._take_frames(streams)
        self.sock.setblocking(True)
        self.sock.settimeout(15)
        return [streams[k] for k in sorted(streams)]

    def _take_frames(self, streams):
        """Frames in self.buf applied to streams and the windows; what to
        send back (SETTINGS acknowledgements)."""
        reply = b""
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid, payload = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff, self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            s = streams.get(sid)
            if ftype == SETTINGS and not flags & 1:
                for i in range(0, len(payload), 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    if k == 4:  # INITIAL_WINDOW_SIZE: applies to open streams too
                        for w in self.wins:
                            self.wins[w] += v - self.init_win
                        self.init_win = v
                reply += frame(SETTINGS, 1, 0)
            elif ftype == WINDOW_UPDATE:
                inc = struct.unpack(">I", payload)[0] & 0x7fffffff
                if sid == 0:
                    self.conn_win += inc
                elif sid in self.wins:
                    self.wins[sid] += inc
            elif ftype == GOAWAY:
                raise AssertionError("GOAWAY %r" % payload)
            elif s is not None and ftype == HEADERS:
                if s["head"] is None:
                    s["head"] = payload
                s["end"] |= bool(flags & END_STREAM)
            elif s is not None and ftype == DATA:
                s["data"] += payload
                s["end"] |= bool(flags & END_STREAM)
            elif s is not None and ftype == RST_STREAM:
                s["rst"] = struct.unpack(">I", payload)[0]
        return reply


def goaway_code(frames):
    codes = [struct.unpack(">II", f[3][:8])[1] for f in frames if f and f[0] == GOAWAY]
    return codes[-1] if codes else None


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the cases -------------------------------------------------------------------

class ProxyH2Test(ProxyCase):
    """One agent with TLS termination for *.example.test and a short idle
    timeout; the HTTP backends of proxytest and a gRPC server of this
    process."""

    agent_args = ("--proxy-idle-timeout", str(IDLE_S),
                  "--cluster-tls-cert", "{tmp}/wild.pem", "--cluster-tls-key", "{tmp}/wild.key")
    grpc_server = None

    @classmethod
    def prepare(cls, workdir):
        import shutil
        from proxytest import Env
        for ext in ("pem", "key"):
            shutil.copy(Env.path("wild1." + ext), os.path.join(workdir, "wild." + ext))

    @classmethod
    def tearDownClass(cls):
        if cls.grpc_server is not None:
            cls.grpc_server[0].stop(0)
            cls.grpc_server = None
        super().tearDownClass()

    # -- helpers --

    def route_h2c(self, host, backend, port=None):
        """A static route with --backend-protocol h2c; its port."""
        pin = self.pin_of(self.node)
        port = port or hctest.free_port()
        r = hctest.run_cli("routes", "add", "--host", host, "--port", str(port), "--backend",
                           backend, "--backend-protocol", "h2c", "--bpf-pin-dir", pin)
        self.assertEqual(r.returncode, 0, "routes add %s: %s" % (host, r.stderr))
        self.added.append((host, port, pin))
        self.wait_listening(port)
        return port

    def curl_h2(self, *args):
        r = subprocess.run([*CURL, *args], capture_output=True, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout

    def tls_url(self, name, port, path):
        return ["--cacert", self.env.path("ca.pem"), "--resolve",
                "%s:%d:127.0.0.1" % (name, port), "https://%s:%d%s" % (name, port, path)]

    def served(self, port):
        """Another client gets its answer over HTTP/2 (after an attack)."""
        out = self.curl_h2("--http2-prior-knowledge", "--resolve", "ok.test:%d:127.0.0.1" % port,
                           "-w", "\n%{http_code}", "http://ok.test:%d/hello" % port)
        self.assertTrue(out.endswith(b"\n200"), out[-200:])

    def echo(self):
        if grpc is None:
            self.skipTest("python3-grpcio is not installed (tools/deps.sh)")
        cls = type(self)
        if cls.grpc_server is None:
            port = hctest.free_port()
            cls.grpc_server = grpcecho.serve("127.0.0.1:%d" % port) + (port,)
        return cls.grpc_server

    def grpc_channel(self, port, authority, tls=False):
        opts = grpcecho.OPTIONS + [("grpc.default_authority", authority)]
        if not tls:
            return grpc.insecure_channel("127.0.0.1:%d" % port, options=opts)
        with open(self.env.path("ca.pem"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel("127.0.0.1:%d" % port, creds,
                                   options=opts + [("grpc.ssl_target_name_override", authority)])

    # -- HTTP/2 to HTTP/1.1 backends --

    def test_curl_http2_through_termination(self):
        port = self.route("app", self.env.http)
        name = "app." + BASE
        out = self.curl_h2("--http2", "-w", "\n%{http_version} %{http_code}",
                           *self.tls_url(name, port, "/hello?x=1"))
        body, _, tail = out.rpartition(b"\n")
        self.assertEqual(tail, b"2 200")  # h2 negotiated by ALPN
        doc = json.loads(body)
        self.assertEqual((doc["backend"], doc["host"], doc["path"]),
                         ("b1", "%s:%d" % (name, port), "/hello"))
        self.assertEqual(doc["headers"].get("x-forwarded-proto"), "https")
        # A download far over every window: whole, memory bounded.
        rss0 = rss_kib(self.node.proc.pid)
        n = 64 * MiB
        out = subprocess.run([*CURL, "--http2", *self.tls_url(name, port, "/bytes?n=%d" % n)],
                             capture_output=True, timeout=90)
        self.assertEqual(out.returncode, 0, out.stderr)
        import hashlib
        self.assertEqual((len(out.stdout), hashlib.sha256(out.stdout).hexdigest()),
                         (n, pattern_sha(n)))
        self.assertLess(rss_kib(self.node.proc.pid) - rss0, 48 * 1024)
        # A chunked response becomes plain DATA.
        out = self.curl_h2("--http2", *self.tls_url(name, port, "/chunked?n=300000"))
        self.assertEqual(hashlib.sha256(out).hexdigest(), pattern_sha(300000))
        # :authority must be the name the handshake was for.
        out = self.curl_h2("--http2", "-H", "Host: other.%s" % BASE, "-w", "\n%{http_code}",
                           *self.tls_url(name, port, "/hello"))
        self.assertTrue(out.endswith(b"\n421"), out[-300:])
        ms = self.metrics()
        self.assertGreaterEqual(metric(ms, "hypercore_proxy_h2_connections_total"), 3)
        self.assertGreaterEqual(metric(ms, "hypercore_proxy_errors_total", kind="misdirected"), 1)

    def test_h2c_prior_knowledge_on_a_plain_port(self):
        port = self.route("shop.test", self.env.http)
        args = ("--http2-prior-knowledge", "--resolve", "shop.test:%d:127.0.0.1" % port)
        out = self.curl_h2(*args, "-w", "\n%{http_version}", "http://shop.test:%d/hello" % port)
        body, _, version = out.rpartition(b"\n")
        self.assertEqual(version, b"2")
        doc = json.loads(body)
        self.assertEqual((doc["backend"], doc["host"]), ("b1", "shop.test:%d" % port))
        self.assertEqual(doc["headers"].get("x-forwarded-for"), "127.0.0.1")
        # An upload of unknown length goes to the backend chunked.
        data = os.urandom(3 * MiB + 7)
        r = subprocess.run([*CURL, *args, "-H", "Transfer-Encoding:", "--data-binary", "@-",
                            "http://shop.test:%d/upload" % port], input=data,
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        import hashlib
        self.assertEqual(json.loads(r.stdout), {"n": len(data),
                                                "sha256": hashlib.sha256(data).hexdigest()})
        # No route for the name: 404 on that stream.
        out = self.curl_h2("--http2-prior-knowledge", "--resolve", "nobody.test:%d:127.0.0.1" % port,
                           "-w", "\n%{http_code}", "http://nobody.test:%d/hello" % port)
        self.assertTrue(out.endswith(b"\n404"), out[-200:])
        # A backend that is not there, of either protocol: 502 on the stream.
        dead = "127.0.0.1:%d" % hctest.free_port()
        self.route("gone1.test", dead, port=port)
        self.route_h2c("gone2.test", dead, port=port)
        for name in ("gone1.test", "gone2.test"):
            out = self.curl_h2("--http2-prior-knowledge", "--resolve",
                               "%s:%d:127.0.0.1" % (name, port), "-w", "\n%{http_code}",
                               "http://%s:%d/hello" % (name, port))
            self.assertTrue(out.endswith(b"\n502"), (name, out[-200:]))

    def test_two_hosts_on_one_connection(self):
        port = self.route("a.test", self.env.http)
        self.route("b.test", self.env.http2, port=port)
        c = H2(port)
        try:
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("a.test")) +
                   frame(HEADERS, END_HEADERS | END_STREAM, 3, request_block("b.test")))
            ended, bodies = set(), {1: b"", 3: b""}

            def done(f):
                if f[0] == DATA:
                    bodies[f[2]] += f[3]
                if f[0] in (DATA, HEADERS) and f[1] & END_STREAM:
                    ended.add(f[2])
                return ended == {1, 3}
            frames = c.frames(done)
        finally:
            c.close()
        self.assertNotIn(None, frames)
        # :status 200 is the static table's entry 8
        self.assertTrue(all(f[3][0] == 0x88 for f in frames if f[0] == HEADERS), frames)
        a, b = json.loads(bodies[1]), json.loads(bodies[3])
        self.assertEqual((a["backend"], a["host"], b["backend"], b["host"]),
                         ("b1", "a.test", "b2", "b.test"))

    # -- uploads: several 1 MiB bodies at once on one connection --

    def uploads_on_one_connection(self, port, host, tls=None):
        """4 uploads of 1 MiB at once to a backend reading them whole, then
        4 to one answering before it reads (and then reading the body, or
        closing on it), then one more on the same connection: every stream
        ends, and its window and the connection's keep moving."""
        bodies = [os.urandom(MiB) for _ in range(4)]
        t0 = time.monotonic()
        c = H2(port, tls=tls)
        try:
            for s, b in zip(c.uploads([(host, "/upload", b) for b in bodies]), bodies):
                self.assertEqual((s["head"][:1], s["end"], s["rst"]), (b"\x88", True, None))
                self.assertEqual(json.loads(s["data"]),
                                 {"n": MiB, "sha256": hashlib.sha256(b).hexdigest()})
            early = c.uploads([(host, "/early" + q, b)
                               for q, b in zip(("", "?close=1", "", "?close=1"), bodies)])
            for s in early:
                self.assertEqual((s["head"][:1], s["data"], s["end"]), (b"\x88", b"early\n", True))
                # the rest of the body is not wanted (RFC 9113 8.1): NO_ERROR
                self.assertEqual(s["rst"], 0, "sent %d of %d" % (s["sent"], MiB))
                self.assertLess(s["sent"], MiB)
            s = c.uploads([(host, "/upload", bodies[0])])[0]
            self.assertEqual(json.loads(s["data"])["sha256"], hashlib.sha256(bodies[0]).hexdigest())
        finally:
            c.close()
        self.assertLess(time.monotonic() - t0, 30)

    def test_uploads_h2c(self):
        port = self.route("up.test", self.env.http)
        self.uploads_on_one_connection(port, "up.test")
        out = self.curl_h2("--http2-prior-knowledge", "--resolve", "up.test:%d:127.0.0.1" % port,
                           "-w", "\n%{http_code}", "http://up.test:%d/hello" % port)
        self.assertTrue(out.endswith(b"\n200"), out[-200:])

    def test_http1_upload_answered_early(self):
        """The HTTP/1.1 path (splice), for comparison with the h2 engine's: a
        backend answering a 4 MiB upload before reading it, then reading it
        or closing on it: the client gets the whole answer either way, and
        the connection serves the next request when the backend kept it."""
        port = self.route("up1.test", self.env.http)
        data = os.urandom(4 * MiB)
        base = ["--http1.1", "--resolve", "up1.test:%d:127.0.0.1" % port, "-w", "\n%{http_code}"]
        for q in ("", "?close=1"):
            r = subprocess.run([*CURL, *base, "--data-binary", "@-",
                                "http://up1.test:%d/early%s" % (port, q),
                                "--next", *base, "http://up1.test:%d/hello" % port],
                               input=data, capture_output=True, timeout=60)
            # curl may fail its own send after the answer (the reset): the
            # answer must have come whole all the same
            self.assertTrue(r.stdout.startswith(b"early\n\n200"), (q, r.stdout[:200], r.stderr))
            if not q:
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(r.stdout.endswith(b"\n200"), r.stdout[-200:])

    def test_uploads_over_tls(self):
        port = self.route("upw", self.env.http)
        name = "upw." + BASE
        ctx = ssl.create_default_context(cafile=self.env.path("ca.pem"))
        ctx.set_alpn_protocols(["h2"])
        self.uploads_on_one_connection(port, name, tls=(ctx, name))
        out = self.curl_h2("--http2", "-w", "\n%{http_code}", *self.tls_url(name, port, "/hello"))
        self.assertTrue(out.endswith(b"\n200"), out[-200:])

    # -- a reused backend connection the backend closed --

    def test_retry_on_a_closed_reused_backend_connection(self):
        """The backend closes each keep-alive connection 1 s after its
        answer, unread: a stream sent on it 0.2 s after the answer (the
        proxy reuses it, idle) meets a reset before any byte of answer. An
        idempotent request (a GET; a PUT, its body held whole) goes again on
        a new connection; a POST is never sent twice: 502 (RFC 9110 9.2.2)."""
        port = self.route("ci.test", self.env.http)
        path = "/close-idle?ms=1000"
        c = H2(port)
        retries0 = metric(self.metrics(), "hypercore_proxy_backend_retries_total") or 0

        def one(method, body=b""):
            sid, c.next_sid = c.next_sid, c.next_sid + 2
            block = request_block("ci.test", path, method)
            if body:
                c.send(frame(HEADERS, END_HEADERS, sid,
                             block + hpack_lit("content-length", str(len(body)))) +
                       frame(DATA, END_STREAM, sid, body))
            else:
                c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
            got = [f for f in c.frames(lambda f: f[2] == sid and f[0] in (DATA, HEADERS, RST_STREAM)
                                       and (f[1] & END_STREAM or f[0] == RST_STREAM))
                   if f and f[2] == sid]
            return got[0][3][:1] == b"\x88", b"".join(f[3] for f in got if f[0] == DATA)

        try:
            self.assertTrue(one("GET")[0])  # the backend connection to reuse
            for method, body in (("GET", b""), ("PUT", b"p" * 5000)):
                time.sleep(0.2)
                ok, data = one(method, body)
                self.assertTrue(ok, (method, data))
                self.assertEqual(json.loads(data)["method"], method)
            time.sleep(0.2)
            ok, data = one("POST", b"x" * 100)
            self.assertEqual((ok, data), (False, b"The backend did not answer.\n"))
        finally:
            c.close()
        self.assertEqual(metric(self.metrics(), "hypercore_proxy_backend_retries_total") - retries0, 2)

    # -- gRPC to h2c backends --

    def cancel_seen(self, ch, echo, token):
        """Whether the server sees a held call of ch cancelled by the client."""
        call = grpcecho.stub(ch, "Hold", True)(token.encode(), timeout=30)
        self.assertEqual(next(call), b"held")
        call.cancel()
        deadline = time.monotonic() + 5
        while token not in echo.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
        return echo.cancelled.get(token, False)

    def test_grpc_through_an_h2c_route(self):
        _, echo, gport = self.echo()
        port = self.route_h2c("grpc.test", "127.0.0.1:%d" % gport)
        with self.grpc_channel(port, "grpc.test") as ch:
            unary = grpcecho.stub(ch, "Unary")
            self.assertEqual(unary(b"hello", timeout=10), b"hello")
            msgs = list(grpcecho.stub(ch, "Stream", True)(b"10000", timeout=60))
            self.assertEqual((len(msgs), msgs[0], msgs[-1]), (10000, b"msg-0", b"msg-9999"))
            # both ways at once: the client's stream of messages, each echoed
            sent = [b"m%d-" % i + b"x" * (i % 2000) for i in range(2000)]
            got = list(grpcecho.stub(ch, "Chat", bidi=True)(iter(sent), timeout=60))
            self.assertEqual(got, sent)
            big = os.urandom(16 * MiB)
            self.assertEqual(unary(big, timeout=60), big)
            # the client's deadline reaches the server (grpc-timeout)
            left = grpcecho.stub(ch, "Deadline")(b"", timeout=20)
            self.assertTrue(0 < float(left) <= 21, left)  # grpc rounds the timeout up
            with self.assertRaises(grpc.RpcError) as e:
                grpcecho.stub(ch, "Sleep")(b"10", timeout=0.5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            # a status in trailers (trailers-only: no such method)
            with self.assertRaises(grpc.RpcError) as e:
                ch.unary_unary("/hc.test.Echo/Nope")(b"", timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            # cancelled by the client: RST_STREAM reaches the server. grpcio
            # itself misses one such cancel in about ten, with no proxy
            # between (the server's handler never learns of it): three tries
            self.assertTrue(any(self.cancel_seen(ch, echo, "t%d" % k) for k in range(3)))
            self.assertEqual(unary(b"after", timeout=10), b"after")
            # the server ends the call while the client still streams: the
            # answer comes whole and the client is stopped, not left to
            # fill its windows (RFC 9113 8.1)
            pulled = [0]

            def messages():
                for i in range(4000):  # 256 MiB if nothing stopped it
                    pulled[0] += 1
                    yield b"%05d" % i + b"u" * (64 * 1024)
            t0 = time.monotonic()
            got = ch.stream_unary("/hc.test.Echo/First")(messages(), timeout=30)
            self.assertEqual(got[:5], b"00000")
            self.assertLess(time.monotonic() - t0, 20)
            self.assertLess(pulled[0], 4000)
            self.assertEqual(unary(b"after first", timeout=10), b"after first")

    def test_grpc_through_termination(self):
        _, _, gport = self.echo()
        port = self.route_h2c("grpcw", "127.0.0.1:%d" % gport)
        with self.grpc_channel(port, "grpcw." + BASE, tls=True) as ch:
            self.assertEqual(grpcecho.stub(ch, "Unary")(b"secure", timeout=10), b"secure")
            msgs = list(grpcecho.stub(ch, "Stream", True)(b"1000", timeout=60))
            self.assertEqual(len(msgs), 1000)

    # -- attacks --

    def attack(self, port, payload, until, settings=()):
        """Sends payload on a new connection; the frames until until(frame)
        or the end, and what it cost the agent (RSS KiB, CPU s)."""
        pid = self.node.proc.pid
        rss0, cpu0 = rss_kib(pid), cpu_s(pid)
        c = H2(port, settings)
        try:
            c.send(payload)
            frames = c.frames(until)
        finally:
            c.close()
        self.served(port)
        cost = rss_kib(pid) - rss0, cpu_s(pid) - cpu0
        self.assertLess(cost[0], 32 * 1024, "RSS grew by %d KiB" % cost[0])
        self.assertLess(cost[1], 10, "CPU time %.1f s" % cost[1])
        return frames

    def refused(self, kind):
        return metric(self.metrics(), "hypercore_proxy_h2_refused_total", kind=kind) or 0

    def test_rapid_reset(self):
        port = self.route("ok.test", self.env.http)
        blob = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block("ok.test")) +
                        frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
                        for sid in range(1, 4001, 2))
        frames = self.attack(port, blob, lambda f: f[0] == GOAWAY)
        self.assertEqual(goaway_code(frames), ENHANCE_YOUR_CALM)
        self.assertGreaterEqual(self.refused("rapid_reset"), 1)

    def test_continuation_flood(self):
        port = self.route("ok.test", self.env.http)
        blob = frame(HEADERS, 0, 1, request_block("ok.test")) + b"".join(
            frame(CONTINUATION, 0, 1, hpack_lit("x-c%d" % i, "v")) for i in range(50))
        frames = self.attack(port, blob, lambda f: f[0] == GOAWAY)
        self.assertIsNotNone(goaway_code(frames), frames[-3:])
        self.assertGreaterEqual(self.refused("continuation_flood"), 1)

    def test_hpack_bomb(self):
        port = self.route("ok.test", self.env.http)
        # one 4000-byte value into the dynamic table (index 62), then
        # streams naming it 20 times each: 80 KB of fields from 20 bytes
        first = hpack_lit("x-bomb", "a" * 4000, indexed=True)
        blob = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                              (first if sid == 1 else b"") + request_block("ok.test") + b"\xbe" * 20)
                        for sid in range(1, 41, 2))
        frames = self.attack(port, blob, lambda f: f[0] == GOAWAY)
        self.assertEqual(goaway_code(frames), ENHANCE_YOUR_CALM)
        self.assertGreaterEqual(self.refused("header_list_too_large"), 8)
        self.assertGreaterEqual(self.refused("hpack_bomb"), 1)

    def test_ping_flood(self):
        port = self.route("ok.test", self.env.http)
        blob = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(3000))
        frames = self.attack(port, blob, lambda f: f[0] == GOAWAY)
        self.assertEqual(goaway_code(frames), ENHANCE_YOUR_CALM)
        self.assertGreaterEqual(self.refused("control_flood") + self.refused("flood"), 1)

    def test_stop_sends_goaway_and_finishes_streams(self):
        # A stop: GOAWAY NO_ERROR naming the stream taken, that stream
        # answered whole, then the connection ends and the agent exits.
        a = self.own_agent("--proxy-drain-timeout", "30")
        port = self.route("drain.test", self.env.http, agent=a)
        size = 300000
        # a zero window holds the response in the proxy across the signal
        c = H2(port, settings=((4, 0),))
        try:
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                         request_block("drain.test", "/bytes?n=%d" % size)))
            c.frames(lambda f: f[0] == HEADERS and f[2] == 1)
            a.proc.send_signal(signal.SIGTERM)
            frames = c.frames(lambda f: f[0] == GOAWAY)
            last_sid, code = struct.unpack(">II", frames[-1][3][:8])
            self.assertEqual((last_sid, code), (1, 0))
            c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2 * size)) +
                   frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2 * size)))
            body = bytearray()

            def ended(f):
                if f[0] == DATA and f[2] == 1:
                    body.extend(f[3])
                return f[0] == DATA and f[1] & END_STREAM
            frames = c.frames(ended)
            self.assertNotIn(None, frames)
            self.assertEqual(hashlib.sha256(body).hexdigest(), pattern_sha(size))
            self.assertEqual(c.frames(lambda f: False)[-1], None)  # then EOF
        finally:
            c.close()
        self.assertEqual(a.proc.wait(timeout=15), 0)
        self.assertIn("every exchange in flight answered", a.log())

    def test_zero_window_stall(self):
        port = self.route("ok.test", self.env.http)
        # SETTINGS_INITIAL_WINDOW_SIZE 0: no DATA may come; the stream
        # holds what the backend sent until the idle timeout resets it
        frames = self.attack(port, frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                         request_block("ok.test", "/bytes?n=%d" % (4 * MiB))),
                             lambda f: f[0] == RST_STREAM, settings=((4, 0),))
        rst = [f for f in frames if f and f[0] == RST_STREAM]
        self.assertEqual(struct.unpack(">I", rst[0][3])[0], CANCEL)
        self.assertGreaterEqual(self.refused("stream_idle_timeout"), 1)

    def test_zz_agent_exits_cleanly(self):
        if type(self).grpc_server is not None:
            type(self).grpc_server[0].stop(0)
            type(self).grpc_server = None
        self.check_clean_exit()


class ProxyH2SockmapTest(ProxyCase):
    """HTTP/2 with --proxy-forwarding sockmap: the engine is the same (its
    frames are read in userspace whatever the mode), the client socket's
    interest made edge-triggered when it starts."""

    agent_args = ("--proxy-forwarding", "sockmap",
                  "--cluster-tls-cert", "{tmp}/wild.pem", "--cluster-tls-key", "{tmp}/wild.key")
    prepare = ProxyH2Test.prepare

    def test_h2_and_h2c(self):
        port = self.route("app", self.env.http)
        name = "app." + BASE
        r = subprocess.run([*CURL, "--http2", "-w", "\n%{http_version}", "--cacert",
                            self.env.path("ca.pem"), "--resolve", "%s:%d:127.0.0.1" % (name, port),
                            "https://%s:%d/hello" % (name, port)], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, version = r.stdout.rpartition(b"\n")
        self.assertEqual((version, json.loads(body)["backend"]), (b"2", "b1"))
        r = subprocess.run([*CURL, "--http2-prior-knowledge", "--resolve",
                            "%s:%d:127.0.0.1" % (name, port), "http://%s:%d/hello" % (name, port)],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["backend"], "b1")

    def test_zz_agent_exits_cleanly(self):
        self.check_clean_exit()


if __name__ == "__main__":
    hctest.main()
