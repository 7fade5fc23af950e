"""A small gRPC service for the proxy's HTTP/2 tests, on python3-grpcio with
raw bytes for messages (no generated code): the same file is imported by
tests/integration/test_proxy_h2.py and run as a workload's command
(`python3 grpcecho.py PORT`).

Service hc.test.Echo:
  Unary(bytes) -> the same bytes (any size up to MAX_MESSAGE)
  Deadline(_) -> the time the server has left, in seconds, as text ("none")
  Stream(n as text) -> n messages b"msg-<i>"
  Hold(token) -> one message, then waits until the call ends; records
                 whether it was cancelled under the token
  Sleep(seconds as text) -> answers after that long (or when cancelled)
  Chat(stream of bytes) -> each message back as it comes (bidirectional)
  First(stream of bytes) -> the first message back at once, the rest unread
                 (the call ends while the client still sends)
"""

import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "hc.test.Echo"
MAX_MESSAGE = 20 * 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE),
           ("grpc.max_receive_message_length", MAX_MESSAGE)]


class Echo:
    def __init__(self):
        self.cancelled = {}  # Hold's token -> True when the call was cancelled
        self.lock = threading.Lock()

    def unary(self, request, context):
        return request

    def deadline(self, request, context):
        left = context.time_remaining()
        return b"none" if left is None else ("%.3f" % left).encode()

    def stream(self, request, context):
        for i in range(int(request)):
            yield b"msg-%d" % i

    def hold(self, request, context):
        done = threading.Event()
        context.add_callback(done.set)
        yield b"held"
        done.wait(30)
        with self.lock:
            self.cancelled[request.decode()] = not context.is_active()

    def sleep(self, request, context):
        end = time.monotonic() + float(request)
        while time.monotonic() < end and context.is_active():
            time.sleep(0.02)
        return b"slept"

    def chat(self, requests, context):
        for m in requests:
            yield m

    def first(self, requests, context):
        return next(requests)

    def handler(self):
        u, s = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": u(self.unary), "Deadline": u(self.deadline), "Sleep": u(self.sleep),
            "Stream": s(self.stream), "Hold": s(self.hold),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            "First": grpc.stream_unary_rpc_method_handler(self.first)})


def serve(addr):
    """A started server on addr ("IP:PORT") and its Echo."""
    echo = Echo()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    server.add_generic_rpc_handlers((echo.handler(),))
    if not server.add_insecure_port(addr):
        raise OSError("cannot listen on %s" % addr)
    server.start()
    return server, echo


def stub(channel, method, streaming=False, bidi=False):
    """A callable for hc.test.Echo/method on channel, bytes in and out."""
    path = "/%s/%s" % (SERVICE, method)
    if bidi:
        return channel.stream_stream(path)
    return channel.unary_stream(path) if streaming else channel.unary_unary(path)


if __name__ == "__main__":
    srv, _ = serve("0.0.0.0:%s" % sys.argv[1])
    srv.wait_for_termination()
