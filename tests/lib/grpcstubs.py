"""The independent gRPC client of the integration tests: Debian's grpcio with
stubs generated from proto/cluster.proto at test time, and channels that send
metadata (the bearer token) on every call."""

import collections
import os
import shutil
import subprocess
import sys
import tempfile

import hctest


def load():
    """(grpc, cluster_pb2, cluster_pb2_grpc), the stubs generated from
    proto/cluster.proto into a directory removed once they are imported."""
    import grpc_tools
    out = tempfile.mkdtemp(prefix="hc-stubs-")
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I",
                    os.path.join(hctest.ROOT, "proto"), "-I", include, "--python_out", out,
                    "--grpc_python_out", out, "cluster.proto"], check=True)
    sys.path.insert(0, out)
    try:
        import grpc
        import cluster_pb2
        import cluster_pb2_grpc
    finally:
        # imported (or failed): the generated files are no longer needed
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)
    return grpc, cluster_pb2, cluster_pb2_grpc


def bearer(token):
    """The metadata of a call carrying token (none for None)."""
    return [] if token is None else [("authorization", "Bearer " + token)]


def channel_with(grpc, target, metadata):
    """An insecure channel to target whose every unary call also sends
    metadata (a list of (key, value)); close() closes the underlying
    channel."""
    fields = ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")

    class Details(collections.namedtuple("Details", fields), grpc.ClientCallDetails):
        pass

    class AddMetadata(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            md = list(details.metadata or []) + list(metadata)
            return continuation(Details(details.method, details.timeout, md,
                                        details.credentials,
                                        getattr(details, "wait_for_ready", None),
                                        getattr(details, "compression", None)), request)

    return grpc.intercept_channel(grpc.insecure_channel(target), AddMetadata())
