"""A gRPC server for the proxy tests: the service sextant.test.Echo, whose methods cover what a gRPC
client expects to survive a proxy (metadata both ways, trailers, status codes and messages, streams in
each direction, large messages, deadlines and cancellation). grpc_calls.py is its client.

usage: grpc_echo.py   (binds a port the kernel picks on 127.0.0.1, then prints "ready on 127.0.0.1:PORT"
once serving)

No .proto is needed: requests and responses are raw bytes (JSON where a method takes parameters).
Methods:
  Unary(bytes) -> the same bytes; initial metadata x-test-initial and x-test-client-echo (the client's
      x-test-client), trailing metadata x-test-trailer, x-test-multi twice and the binary x-test-trace-bin.
  Fail({"code", "details", "headers_first"}) -> aborts with that status code and message, trailing
      metadata x-test-why; with headers_first it sends initial metadata before (else a trailers-only
      response).
  Count({"n", "fail_after"?, "code"?, "details"?}) -> n messages "item-I" (I from 0), or fail_after of them
      and then the status code; trailing metadata x-test-count.
  Sum(stream of bytes) -> {"count", "bytes"} of what the client streamed.
  Chat(stream of b"ping-I") -> b"pong-I" for each, as each arrives.
  Slow(key) -> waits until the call ends (deadline or cancellation; at most 60 s), recording what it saw.
  Seen(key) -> JSON of what Slow saw for key: {"started", "remaining_ms" (null without a deadline),
      "ended", "ended_ms"}, or {} before Slow started.
  Flaky({"key", "fail_times"}) -> UNAVAILABLE for the first fail_times attempts of key, then b"ok".
  Attempts(key) -> how many calls Flaky received for key, as decimal text.
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc

MAX_MESSAGE = 16 * 1024 * 1024

lock = threading.Lock()
seen = {}
attempts = {}


def unary(request, context):
    client = dict(context.invocation_metadata()).get("x-test-client", "")
    context.send_initial_metadata((("x-test-initial", "hello"), ("x-test-client-echo", client)))
    context.set_trailing_metadata(
        (
            ("x-test-trailer", "world"),
            ("x-test-multi", "a"),
            ("x-test-multi", "b"),
            ("x-test-trace-bin", b"\x00\x01\x02\xff"),
        )
    )
    return request


def fail(request, context):
    ask = json.loads(request)
    if ask.get("headers_first"):
        context.send_initial_metadata((("x-test-initial", "before-failure"),))
    context.set_trailing_metadata((("x-test-why", "asked-to-fail"),))
    context.abort(grpc.StatusCode[ask["code"]], ask["details"])


def count(request, context):
    ask = json.loads(request)
    context.set_trailing_metadata((("x-test-count", str(ask["n"])),))
    for i in range(ask["n"]):
        if ask.get("fail_after") == i:
            context.abort(grpc.StatusCode[ask["code"]], ask["details"])
        yield f"item-{i}".encode()


def sum_(requests, context):
    n = total = 0
    for r in requests:
        n += 1
        total += len(r)
    return json.dumps({"count": n, "bytes": total}).encode()


def chat(requests, context):
    for r in requests:
        yield r.replace(b"ping-", b"pong-", 1)


def slow(request, context):
    key = request.decode()
    start = time.monotonic()
    remaining = context.time_remaining()
    ended = threading.Event()
    with lock:
        seen[key] = {
            "started": True,
            # grpcio reports no deadline as a very large number.
            "remaining_ms": None if remaining is None or remaining > 1e6 else round(remaining * 1000),
            "ended": False,
        }
    if context.add_callback(ended.set):
        ended.wait(60)
    with lock:
        seen[key].update(ended=ended.is_set(), ended_ms=round((time.monotonic() - start) * 1000))
    return b"too late"


def seen_(request, context):
    with lock:
        return json.dumps(seen.get(request.decode(), {})).encode()


def flaky(request, context):
    ask = json.loads(request)
    with lock:
        attempts[ask["key"]] = attempts.get(ask["key"], 0) + 1
        n = attempts[ask["key"]]
    if n <= ask["fail_times"]:
        context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {n} fails")
    return b"ok"


def attempts_(request, context):
    with lock:
        return str(attempts.get(request.decode(), 0)).encode()


def main():
    handler = grpc.method_handlers_generic_handler(
        "sextant.test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Sum": grpc.stream_unary_rpc_method_handler(sum_),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
            "Seen": grpc.unary_unary_rpc_method_handler(seen_),
            "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
            "Attempts": grpc.unary_unary_rpc_method_handler(attempts_),
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.exit("cannot bind 127.0.0.1:0")
    server.start()
    print(f"ready on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
