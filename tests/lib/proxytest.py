"""What the proxy's end-to-end tests (tests/integration/test_proxy.py) are
made of, apart from the tests themselves: a byte pattern for transfers
checked end to end, HTTP/1.1 and WebSocket on raw sockets (a client's and a
backend's side), backends run by threads of the test process (HTTP with
keep-alive, uploads, downloads, WebSocket echo, half-closes, resets; TLS with
its own certificate), the network namespace, test CA and certificates a run
shares (Env), Prometheus text parsing, and small probes of a process (its
log's tail, RSS, open fds).

Names made on the host carry the pid of the process that imports this
(PREFIX), so runs side by side never meet.
"""

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import hctest
import netns

PREFIX = "hcpx%d" % (os.getpid() % 100000)
NS = PREFIX
VETH = PREFIX + "a"  # the agent's XDP goes here; nothing is sent over it
BASE = "example.test"
PASS_HOST = "secure.passthrough.test"  # a TLS backend holding its own certificate
KiB, MiB = 1024, 1024 * 1024


# ---- the byte pattern the big transfers carry -------------------------------

# A random block of a size that is no power of two: a chunk delivered twice,
# dropped or out of order changes the SHA-256.
PATTERN = os.urandom(MiB + 4099)
_DOUBLE = memoryview(PATTERN + PATTERN)


def pattern_chunks(n, chunk=256 * KiB):
    off = 0
    while n > 0:
        k = min(chunk, n)
        s = off % len(PATTERN)
        yield _DOUBLE[s:s + k]
        off += k
        n -= k


@functools.lru_cache(maxsize=None)
def pattern_sha(n):
    h = hashlib.sha256()
    for c in pattern_chunks(n, MiB):
        h.update(c)
    return h.hexdigest()


# ---- HTTP on raw sockets ------------------------------------------------------

class Reader:
    """Buffered reads of a socket: whole heads, exact byte counts, to EOF."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.mv = memoryview(bytearray(MiB))

    def _fill(self):
        n = self.sock.recv_into(self.mv)
        self.buf += self.mv[:n]
        return n

    def head(self, limit=1 * MiB):
        """The next head (bytes, with its blank line), or None at EOF before
        any byte of it."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                h = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return h
            if len(self.buf) > limit:
                raise ValueError("head over %d bytes" % limit)
            if not self._fill():
                if self.buf:
                    raise ConnectionError("EOF in a head: %r" % bytes(self.buf[:200]))
                return None

    def exact(self, n, h=None):
        """n bytes: returned, or only hashed into h when h is given."""
        out = bytearray()
        while n > 0:
            if not self.buf and not self._fill():
                raise ConnectionError("EOF with %d bytes still to come" % n)
            k = min(n, len(self.buf))
            if h is not None:
                h.update(self.buf[:k])
            else:
                out += self.buf[:k]
            del self.buf[:k]
            n -= k
        return bytes(out)

    def to_eof(self, h=None, limit=None):
        """Everything up to EOF (or hashed into h); returns (bytes, count)."""
        out, count = bytearray(), 0
        while True:
            if self.buf:
                count += len(self.buf)
                if h is not None:
                    h.update(self.buf)
                else:
                    out += self.buf
                self.buf.clear()
                if limit is not None and count > limit:
                    raise AssertionError("more than %d bytes" % limit)
            if not self._fill():
                return bytes(out), count


def parse_head(head):
    """(first line parts, {lower-case name: value})."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].split(" ", 2), headers


def read_chunked(r, h=None):
    """A chunked body from Reader r (through its trailers): the bytes, or
    only hashed into h when h is given."""
    out = bytearray()
    while True:
        while b"\r\n" not in r.buf:
            if not r._fill():
                raise ConnectionError("EOF in a chunk size")
        i = r.buf.find(b"\r\n")
        size = int(bytes(r.buf[:i]).split(b";")[0], 16)
        del r.buf[:i + 2]
        if size == 0:
            break
        data = r.exact(size, h)
        if h is None:
            out += data
        if r.exact(2) != b"\r\n":
            raise ValueError("no CRLF after a chunk")
    while True:  # trailer fields, then the empty line
        while b"\r\n" not in r.buf:
            if not r._fill():
                raise ConnectionError("EOF in the trailers")
        i = r.buf.find(b"\r\n")
        del r.buf[:i + 2]
        if i == 0:
            return bytes(out)


def read_response(r, h=None, head=False):
    """(status, headers, body) of the next response from Reader r. A body
    without Content-Length runs to EOF. With h, the body is only hashed;
    head: the answer to a HEAD request (no body whatever it says)."""
    raw = r.head()
    if raw is None:
        raise ConnectionError("EOF before a response")
    first, headers = parse_head(raw)
    status = int(first[1])
    if head or status < 200 or status in (204, 304):
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = read_chunked(r, h)
    elif "content-length" in headers:
        body = r.exact(int(headers["content-length"]), h)
    else:
        body = r.to_eof(h)[0]
    return status, headers, body


def closing(headers):
    return headers.get("connection", "").lower() == "close"


def response(status, body, ctype="text/plain", extra="", close=False):
    reason = {200: "OK", 101: "Switching Protocols"}.get(status, "X")
    return ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n"
            % (status, reason, ctype, len(body), "Connection: close\r\n" if close else "",
               extra)).encode() + body


def ws_frame(payload, opcode=1, mask=None):
    """One final WebSocket frame (RFC 6455), masked when mask (4 bytes)."""
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([m | n])
    elif n < 65536:
        hdr += bytes([m | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        hdr += mask
    return hdr + payload


def ws_read_frame(r):
    """(opcode, payload) of one frame from Reader r, unmasking if masked."""
    b0, b1 = r.exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", r.exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", r.exact(8))[0]
    mask = r.exact(4) if b1 & 0x80 else None
    payload = r.exact(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


# ---- backends ----------------------------------------------------------------

class Backend:
    """A TCP server on 127.0.0.1 run by threads of this process: one thread
    accepts, one per connection serves. What the handlers saw goes into
    records, which tests wait for."""

    def __init__(self, name, tls=None):
        self.name = name
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.cond = threading.Condition()
        self.records = {}
        self.progress = {}
        self.accepted = 0
        self.snis = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, peer = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c, peer), daemon=True).start()

    def _serve(self, c, peer):
        try:
            with c:
                if self.tls:
                    c.settimeout(10)
                    with self.tls.wrap_socket(c, server_side=True) as t:
                        t.settimeout(None)
                        self.serve(t, peer)
                else:
                    self.serve(c, peer)
        except (OSError, ssl.SSLError, ValueError):
            pass

    def record(self, key, value):
        with self.cond:
            self.records[key] = value
            self.cond.notify_all()

    def wait_record(self, key, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.records, timeout):
                raise AssertionError("backend %s: no record %r after %ss" %
                                     (self.name, key, timeout))
            return self.records.pop(key)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.sock.close()


class HTTPBackend(Backend):
    """HTTP/1.1 with keep-alive. Paths:

      /hello               JSON: backend, method, path, host, headers, the
                           peer's address and the request's number on its
                           connection
      /bytes?n=N&t=T       N bytes of PATTERN; progress[T] counts what was sent
                           (HEAD: the head alone)
      /chunked?n=N         N bytes of PATTERN in chunks of uneven sizes, a trailer
      /upload              reads the body (Content-Length or chunked; answers
                           Expect: 100-continue first); JSON n and sha256
      /ws                  WebSocket handshake, then echoes frames
      /halfclose-client    reads to EOF, then answers n and sha256 of it
                           with ?pad=N more bytes of PATTERN, then closes
      /halfclose-backend?n=N&t=T  sends N bytes of PATTERN, shuts its write
                           side, reads to EOF: records[T] = (n, sha256)
      /reset?t=T           sends a head and 5 bytes, then resets;
                           records[T] = monotonic time of the reset
      /hold?t=T            reads until EOF or error: records[T] = (what, time)
      /close-idle?ms=M     as /hello, keeping the connection, then closes it
                           after M ms without reading what came meanwhile
                           (a request sent then meets a reset): a backend
                           closing idle keep-alive connections
      /early?close=1       answers 200 "early" before reading the body; then
                           reads the body and throws it away (nginx's way
                           with a 405), or with close=1 closes on it unread
                           (the kernel resets the connection)
    """

    def serve(self, c, peer):
        r = Reader(c)
        n = 0
        while True:
            head = r.head()
            if head is None:
                return
            n += 1
            (method, target, _), headers = parse_head(head)
            path, _, query = target.partition("?")
            q = dict(urllib.parse.parse_qsl(query))
            fn = getattr(self, "do_" + path.strip("/").replace("-", "_"), None)
            if fn is None:
                c.sendall(response(404, b"backend: no such path\n"))
                continue
            if not fn(c, r, peer, method, path, headers, q, n):
                return
            if closing(headers):
                return

    def do_hello(self, c, r, peer, method, path, headers, q, n):
        if "content-length" in headers:
            r.exact(int(headers["content-length"]))
        body = json.dumps({"backend": self.name, "method": method, "path": path,
                           "host": headers.get("host"), "headers": headers,
                           "peer": "%s:%d" % peer, "request": n}).encode()
        c.sendall(response(200, body, "application/json", close=closing(headers)))
        return True

    def do_bytes(self, c, r, peer, method, path, headers, q, n):
        total, token = int(q["n"]), q.get("t")
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\n%s\r\n"
                  % (total, b"Connection: close\r\n" if closing(headers) else b""))
        if method == "HEAD":
            return True
        sent = 0
        for chunk in pattern_chunks(total):
            c.sendall(chunk)
            sent += len(chunk)
            if token:
                self.progress[token] = sent
        return True

    def do_chunked(self, c, r, peer, method, path, headers, q, n):
        data = bytes(_DOUBLE[:int(q["n"])])
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        off, sizes = 0, (1, 1000, 8192, 70000)
        while off < len(data):
            k = min(sizes[off % len(sizes)], len(data) - off)
            c.sendall(b"%x;ext=1\r\n" % k + data[off:off + k] + b"\r\n")
            off += k
        c.sendall(b"0\r\nX-Trailer: done\r\n\r\n")
        return True

    def do_upload(self, c, r, peer, method, path, headers, q, n):
        h = hashlib.sha256()
        if headers.get("expect", "").lower() == "100-continue":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = read_chunked(r)
            size = len(body)
            h.update(body)
        else:
            size = int(headers["content-length"])
            r.exact(size, h)
        c.sendall(response(200, json.dumps({"n": size, "sha256": h.hexdigest()}).encode(),
                           "application/json", close=closing(headers)))
        return True

    def do_close_idle(self, c, r, peer, method, path, headers, q, n):
        self.do_hello(c, r, peer, method, path, headers, q, n)
        time.sleep(int(q.get("ms", "200")) / 1000)
        return False

    def do_early(self, c, r, peer, method, path, headers, q, n):
        close = q.get("close") == "1"
        c.sendall(response(200, b"early\n", close=close or closing(headers)))
        if close:
            return False
        r.exact(int(headers.get("content-length", "0")), hashlib.sha256())
        return True

    def do_ws(self, c, r, peer, method, path, headers, q, n):
        if headers.get("upgrade", "").lower() != "websocket":
            c.sendall(response(400, b"not a websocket upgrade\n"))
            return True
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                   % ws_accept(headers["sec-websocket-key"])).encode())
        while True:
            op, payload = ws_read_frame(r)
            if op == 8:  # close: answer it and end
                c.sendall(ws_frame(payload[:2], opcode=8))
                return False
            c.sendall(ws_frame(payload, opcode=op))

    def do_halfclose_client(self, c, r, peer, method, path, headers, q, n):
        h = hashlib.sha256()
        _, got = r.to_eof(h)
        body = json.dumps({"n": got, "sha256": h.hexdigest()}).encode() + b"\n"
        pad = int(q.get("pad", "0"))
        c.sendall(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                   % (len(body) + pad)).encode() + body)
        for chunk in pattern_chunks(pad):
            c.sendall(chunk)
        return False

    def do_halfclose_backend(self, c, r, peer, method, path, headers, q, n):
        size = int(q["n"])
        c.sendall(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size).encode())
        for chunk in pattern_chunks(size):
            c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        _, got = r.to_eof(h)
        self.record(q["t"], (got, h.hexdigest()))
        return False

    def do_reset(self, c, r, peer, method, path, headers, q, n):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello")
        time.sleep(0.2)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.record(q["t"], time.monotonic())
        c.close()
        return False

    def do_hold(self, c, r, peer, method, path, headers, q, n):
        self.record(q["t"] + "-started", time.monotonic())
        try:
            while c.recv(65536):
                pass
            what = "eof"
        except ConnectionResetError:
            what = "reset"
        self.record(q["t"], (what, time.monotonic()))
        return False


class TLSBackend(Backend):
    """A TLS server holding its own certificate (for PASS_HOST): answers one
    request with the SNI it was asked for."""

    def serve(self, c, peer):
        r = Reader(c)
        if r.head() is None:
            return
        body = ("tls-backend sni=%s\n" % getattr(c, "hc_sni", None)).encode()
        c.sendall(response(200, body, close=True))


# ---- the namespace, certificates and backends a run shares -----------------

class Env:
    """Made once, by the first test that runs; removed by the module cleanup."""

    ready = False
    error = None

    @classmethod
    def ensure(cls, test):
        if cls.error:
            test.skipTest(cls.error) if cls.error.startswith("skip:") else test.fail(cls.error)
        if cls.ready:
            return
        if os.geteuid() != 0:
            cls.error = "skip: needs root (network namespaces, BPF)"
        for tool in ("ip", "curl", "openssl", "bpftool"):
            if not cls.error and shutil.which(tool) is None:
                cls.error = "skip: %s is not installed (tools/deps.sh)" % tool
        if not cls.error and not os.access(hctest.HC_BIN, os.X_OK):
            cls.error = "skip: %s is not built" % hctest.HC_BIN
        if not cls.error:
            help_text = hctest.run_cli("cluster", "--help").stdout
            if "--proxy-forwarding" not in help_text:
                cls.error = "skip: %s has no proxy (--proxy-forwarding)" % hctest.HC_BIN
        if cls.error:
            test.skipTest(cls.error)
        unittest.addModuleCleanup(cls.destroy)
        try:
            cls._make()
        except Exception as e:
            cls.error = "test environment: %s" % e
            raise
        cls.ready = True

    @classmethod
    def _make(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hc-test-proxy-")
        cls.home_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True)
        cls.made_ns = True
        netns.enter(NS)
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "link", "add", VETH, "type", "veth", "peer", "name", VETH + "b"],
                     ["ip", "link", "set", VETH, "up"], ["ip", "link", "set", VETH + "b", "up"],
                     ["sysctl", "-qw", "net.ipv4.ip_local_port_range=20000 60999"],
                     # Socket buffers of a common size (this machine's
                     # receive maximum is 32 MiB): what the slow-reader test
                     # allows to pile up in the kernel follows from them.
                     ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 6291456",
                      "net.ipv4.tcp_wmem=4096 16384 4194304"]):
            subprocess.run(argv, check=True, capture_output=True)
        cls._certs()
        cls.http = HTTPBackend("b1")
        cls.http2 = HTTPBackend("b2")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cls.path("pass.pem"), cls.path("pass.key"))
        ctx.sni_callback = lambda sock, name, _ctx: setattr(sock, "hc_sni", name)
        cls.tls = TLSBackend("tls", tls=ctx)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp, name)

    @classmethod
    def _openssl(cls, *args):
        r = subprocess.run(["openssl", *args], cwd=cls.tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr.strip()))

    @classmethod
    def _certs(cls):
        """A test CA; a certificate for PASS_HOST (the passthrough backend's)
        and two wildcard ones for *.BASE, serials 0x1001 and 0x1002."""
        cls._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                     "-subj", "/CN=hypercore test CA")
        for name, cn, serial in (("pass", PASS_HOST, "0x2001"), ("wild1", "*." + BASE, "0x1001"),
                                 ("wild2", "*." + BASE, "0x1002")):
            with open(cls.path(name + ".ext"), "w") as f:
                f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n"
                        "extendedKeyUsage=serverAuth\n" % cn)
            cls._openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
                         "-out", name + ".csr", "-subj", "/CN=%s" % cn)
            cls._openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey",
                         "ca.key", "-set_serial", serial, "-days", "2", "-extfile",
                         name + ".ext", "-out", name + ".pem")

    @classmethod
    def destroy(cls):
        try:
            cls._destroy()
        except Exception as e:  # a module cleanup has no test to fail
            print("# cleanup of the test environment: %r" % e, flush=True)

    @classmethod
    def _destroy(cls):
        for b in ("http", "http2", "tls"):
            if getattr(cls, b, None):
                getattr(cls, b).close()
        if getattr(cls, "home_ns", None) is not None:
            try:
                netns.setns(cls.home_ns, "back home")
            except OSError:
                pass  # the namespace goes anyway; the rest must still be removed
            os.close(cls.home_ns)
            cls.home_ns = None
        if getattr(cls, "made_ns", False):
            # The veth pair goes with the namespace (once this process,
            # whose threads still live in it, exits).
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
            cls.made_ns = False
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)


# ---- metrics -----------------------------------------------------------------

METRIC = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    out = []
    for line in text.splitlines():
        m = METRIC.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric(ms, name, **labels):
    """The sum over the series of name whose labels include labels; None
    when there is no such series."""
    vals = [v for n, l, v in ms if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


# ---- clients and the agent process ---------------------------------------------

def log_tail(agent, n=15):
    """The agent log's last lines, without the API's request lines, and the
    head of a sanitizer's report if there is one."""
    lines = [x for x in agent.log().splitlines() if "module=http" not in x]
    out = lines[-n:]
    for i, line in enumerate(lines):
        if any(mark in line for mark in hctest.SANITIZER_MARKS):
            report = [x for x in lines[i:i + 40] if x.strip() and "Shadow" not in x
                      and not x.lstrip().startswith("0x")]
            out = lines[max(0, i - 5):i] + report[:30]
            break
    return "\n".join(out)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def connect(port, addr="127.0.0.1", timeout=10, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((addr, port))
    return s


def exchange(port, data, timeout=10, shut=False):
    """Sends data on a new connection and returns everything up to EOF (a
    reset after some bytes counts as EOF)."""
    with connect(port, timeout=timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except ConnectionResetError:
            if not out:
                raise
        return out


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None
