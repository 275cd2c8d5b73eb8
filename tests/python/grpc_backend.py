"""A gRPC backend for the proxyless xDS test: answers the unary method /sextant.test.Who/Name with its name.

usage: grpc_backend.py NAME   (binds a port the kernel picks on 127.0.0.1, then prints
"ready on 127.0.0.1:PORT" once serving)
No .proto is needed: the handler takes and returns raw bytes.
"""
import sys
from concurrent import futures

import grpc


def main():
    name = sys.argv[1]
    handler = grpc.method_handlers_generic_handler(
        "sextant.test.Who",
        {"Name": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode())},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.exit("cannot bind 127.0.0.1:0")
    server.start()
    print(f"ready on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
