#!/usr/bin/python3
"""Runs gRPC calls with the independent client (tests/lib/grpcstubs.py) and
prints their outcomes as JSON: a subprocess a test starts inside another
network namespace (gRPC's own threads make sockets, so the test cannot
setns() them there itself).

stdin: {"target": "HOST:PORT", "calls": [{"method": "List", "request": {...},
        "metadata": [["authorization", "Bearer ..."], ...]}, ...]}
stdout: [{"code": "OK" | "UNAUTHENTICATED" | ..., "details": "...",
          "response": {...} or null}, ...], one per call, in order.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpcstubs  # noqa: E402

REQUESTS = {"List": "VmQueryRequest", "Spawn": "VmSpawnRequest", "Stop": "VmStopRequest",
            "Logs": "VmLogsRequest"}


def main():
    from google.protobuf import json_format
    grpc, pb, pb_grpc = grpcstubs.load()
    job = json.load(sys.stdin)
    out = []
    with grpc.insecure_channel(job["target"]) as channel:
        stub = pb_grpc.ClusterServiceStub(channel)
        for call in job["calls"]:
            req = json_format.ParseDict(call.get("request", {}),
                                        getattr(pb, REQUESTS[call["method"]])())
            md = [tuple(kv) for kv in call.get("metadata", [])]
            try:
                resp = getattr(stub, call["method"])(req, metadata=md, timeout=30)
                out.append({"code": "OK", "details": "", "response": json_format.MessageToDict(
                    resp, preserving_proto_field_name=True)})
            except grpc.RpcError as e:
                out.append({"code": e.code().name, "details": e.details() or "",
                            "response": None})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
