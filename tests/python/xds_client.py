"""A proxyless gRPC client resolving through xDS: calls /sextant.test.Who/Name N times on TARGET (an
xds:/// URI) and prints {"backend name": count, ...} as JSON. GRPC_XDS_BOOTSTRAP names the bootstrap file.

usage: xds_client.py TARGET N
"""
import json
import sys
from collections import Counter

import grpc


def main():
    target, n = sys.argv[1], int(sys.argv[2])
    counts = Counter()
    with grpc.insecure_channel(target) as channel:
        who = channel.unary_unary("/sextant.test.Who/Name")
        for _ in range(n):
            counts[who(b"", timeout=10, wait_for_ready=True).decode()] += 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
