"""A gRPC backend for the proxyless xDS test: answers the unary method /sextant.test.Who/Name with its name.

usage: grpc_backend.py NAME PORT   (prints "ready" once serving)
No .proto is needed: the handler takes and returns raw bytes.
"""
import sys
from concurrent import futures

import grpc


def main():
    name, port = sys.argv[1], int(sys.argv[2])
    handler = grpc.method_handlers_generic_handler(
        "sextant.test.Who",
        {"Name": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode())},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
