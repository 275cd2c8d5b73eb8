"""Sends raw bytes as a unary gRPC request, to test how the hub handles malformed protobuf.

Usage: raw_call.py HOST:PORT /package.Service/Method HEXBYTES
Prints one JSON line: {"grpc_error": CODE_NAME, "details": ...} or {"response_bytes": N}.
"""
import json
import sys

import grpc


def main(argv):
    target, method, payload = argv[1], argv[2], bytes.fromhex(argv[3])
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            resp = call(payload, timeout=10)
            print(json.dumps({"response_bytes": len(resp)}))
        except grpc.RpcError as e:
            print(json.dumps({"grpc_error": e.code().name, "details": e.details()}))


if __name__ == "__main__":
    main(sys.argv)
