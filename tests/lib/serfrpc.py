"""A minimal client of a `serf agent`'s RPC (msgpack over TCP, as serf's own
client speaks it): the handshake and user events with binary payloads.

Tools use it to put messages into an encrypted cluster as a member: the
agents' HTTP API refuses to send the cluster's own event names
(hypercore_*), and `serf event` takes its payload on the command line, which
can hold no NUL byte and costs a process per event. Only what that needs is
encoded and decoded here (maps, strings, binary, unsigned integers, bools).
"""

import socket
import struct


def _pack(v):
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if not 0 <= v < 1 << 64:
            raise ValueError("only unsigned integers")
        if v < 128:
            return bytes([v])
        for code, fmt, limit in ((0xcc, ">B", 1 << 8), (0xcd, ">H", 1 << 16),
                                 (0xce, ">I", 1 << 32), (0xcf, ">Q", 1 << 64)):
            if v < limit:
                return bytes([code]) + struct.pack(fmt, v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xa0 | len(b)]) + b
        return (b"\xd9" + struct.pack(">B", len(b)) if len(b) < 256
                else b"\xda" + struct.pack(">H", len(b))) + b
    if isinstance(v, (bytes, bytearray)):
        n = len(v)
        head = (b"\xc4" + struct.pack(">B", n) if n < 256 else
                b"\xc5" + struct.pack(">H", n) if n < 65536 else b"\xc6" + struct.pack(">I", n))
        return head + bytes(v)
    if isinstance(v, dict):
        if len(v) >= 16:
            raise ValueError("only small maps")
        return bytes([0x80 | len(v)]) + b"".join(_pack(k) + _pack(x) for k, x in v.items())
    raise TypeError("cannot pack %r" % type(v))


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("serf agent closed the RPC connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def value(self):
        b = self.take(1)[0]
        if b < 0x80:
            return b
        if 0x80 <= b <= 0x8f:
            return {self.value(): self.value() for _ in range(b & 0x0f)}
        if 0x90 <= b <= 0x9f:
            return [self.value() for _ in range(b & 0x0f)]
        if 0xa0 <= b <= 0xbf:
            return self.take(b & 0x1f).decode(errors="replace")
        if b == 0xc0:
            return None
        if b in (0xc2, 0xc3):
            return b == 0xc3
        sizes = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q"}
        if b in sizes:
            fmt = sizes[b]
            return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        strs = {0xd9: ">B", 0xda: ">H", 0xdb: ">I", 0xc4: ">B", 0xc5: ">H", 0xc6: ">I"}
        if b in strs:
            fmt = strs[b]
            data = self.take(struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0])
            return data.decode(errors="replace") if b >= 0xd9 else data
        if b == 0xde:
            n = struct.unpack(">H", self.take(2))[0]
            return {self.value(): self.value() for _ in range(n)}
        raise ValueError("unexpected msgpack byte 0x%02x" % b)


class SerfRPC:
    """One RPC connection to a serf agent (addr "HOST:PORT"); the handshake
    is done on connect. Not thread-safe."""

    def __init__(self, addr, timeout=10):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.reader = _Reader(self.sock)
        self.seq = 0
        self._call("handshake", {"Version": 1})

    def _call(self, command, body):
        seq = self.seq
        self.seq += 1
        self.sock.sendall(_pack({"Command": command, "Seq": seq}) + _pack(body))
        head = self.reader.value()
        if not isinstance(head, dict) or head.get("Seq") != seq:
            raise ConnectionError("unexpected RPC answer %r" % (head,))
        if head.get("Error"):
            raise RuntimeError("serf RPC %s: %s" % (command, head["Error"]))

    def event(self, name, payload, coalesce=True):
        """Sends a user event (returns once the agent has queued it)."""
        self._call("event", {"Name": name, "Payload": bytes(payload), "Coalesce": coalesce})

    def close(self):
        self.sock.close()
