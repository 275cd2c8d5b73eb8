"""A grpcio client of grpc_echo.py's sextant.test.Echo, for the proxy tests: calls TARGET (a proxy's
listener, plain text) with AUTHORITY as :authority (the proxy picks its virtual host by it) and prints one
JSON line of what it saw, case by case. Metadata is reported as [key, value] pairs in order, only the keys
the test sets (x-test-*: a proxy may add its own); binary values in hex.

usage: grpc_calls.py TARGET AUTHORITY probe   one unary call (5 s deadline); exit status 0 when it answers
       grpc_calls.py TARGET AUTHORITY all     every case
"""
import hashlib
import json
import os
import queue
import sys
import time
import uuid

import grpc

MAX_MESSAGE = 16 * 1024 * 1024
SERVICE = "/sextant.test.Echo/"


def metadata(pairs):
    out = []
    for k, v in pairs or ():
        if k.startswith("x-test-"):
            out.append([k, v.hex() if isinstance(v, bytes) else v])
    return out


def failure(e):
    """What a failed call tells its caller."""
    return {
        "code": e.code().name,
        "details": e.details(),
        "initial": metadata(e.initial_metadata()),
        "trailing": metadata(e.trailing_metadata()),
    }


class Client:
    def __init__(self, channel):
        self.channel = channel

    def unary(self, method):
        return self.channel.unary_unary(SERVICE + method)

    def wait_seen(self, key, done):
        """What Slow saw for key, once done(seen) holds (10 s at most)."""
        seen_call = self.unary("Seen")
        end = time.monotonic() + 10
        while True:
            seen = json.loads(seen_call(key.encode(), timeout=5))
            if done(seen) or time.monotonic() > end:
                return seen
            time.sleep(0.02)

    def case_unary(self):
        reply, call = self.unary("Unary").with_call(
            b"hello", metadata=(("x-test-client", "c1"),), timeout=10
        )
        return {
            "code": call.code().name,
            "reply": reply.decode(),
            "initial": metadata(call.initial_metadata()),
            "trailing": metadata(call.trailing_metadata()),
        }

    def case_server_stream(self):
        call = self.channel.unary_stream(SERVICE + "Count")(json.dumps({"n": 100}).encode(), timeout=30)
        items = [m.decode() for m in call]
        return {
            "code": call.code().name,
            "count": len(items),
            "in_order": items == [f"item-{i}" for i in range(100)],
            "trailing": metadata(call.trailing_metadata()),
        }

    def case_server_stream_fails(self):
        call = self.channel.unary_stream(SERVICE + "Count")(
            json.dumps({"n": 10, "fail_after": 3, "code": "RESOURCE_EXHAUSTED", "details": "quota spent"}).encode(),
            timeout=30,
        )
        items = []
        try:
            for m in call:
                items.append(m.decode())
            return {"code": "OK", "items": items}
        except grpc.RpcError as e:
            return dict(failure(e), items=items)

    def case_client_stream(self):
        reply, call = self.channel.stream_unary(SERVICE + "Sum").with_call(
            (b"x" * 1000 for _ in range(100)), timeout=30
        )
        return dict(json.loads(reply), code=call.code().name)

    def case_bidi(self):
        # Ping-pong: ping I+1 is sent only once pong I came back, so a proxy that held the request stream
        # (or the responses) until it ended would stall this call until its deadline.
        pings = queue.Queue()

        def requests():
            while (ping := pings.get()) is not None:
                yield ping

        pings.put(b"ping-0")
        call = self.channel.stream_stream(SERVICE + "Chat")(requests(), timeout=30)
        pongs = []
        try:
            for pong in call:
                pongs.append(pong.decode())
                pings.put(f"ping-{len(pongs)}".encode() if len(pongs) < 50 else None)
            code = call.code().name
        except grpc.RpcError as e:
            code = e.code().name
        return {"code": code, "pongs": len(pongs), "in_order": pongs == [f"pong-{i}" for i in range(len(pongs))]}

    def case_large(self):
        payload = os.urandom(4 * 1024 * 1024)
        reply, call = self.unary("Unary").with_call(payload, timeout=60)
        return {
            "code": call.code().name,
            "sent": len(payload),
            "received": len(reply),
            "same": hashlib.sha256(reply).digest() == hashlib.sha256(payload).digest(),
        }

    def case_concurrent(self):
        # Many small responses at once on one connection: each is a small DATA frame (the status follows
        # in a trailers frame), which a proxy must forward however many are in flight.
        calls = [self.unary("Unary").future(f"call-{i}".encode(), timeout=30) for i in range(500)]
        answered = 0
        failures = {}
        for i, c in enumerate(calls):
            try:
                answered += c.result() == f"call-{i}".encode()
            except grpc.RpcError as e:
                what = f"{e.code().name}: {e.details()}"
                failures[what] = failures.get(what, 0) + 1
        return {"answered": answered, "failures": failures}

    def case_deadline(self):
        key = f"deadline-{uuid.uuid4()}"
        start = time.monotonic()
        try:
            self.unary("Slow")(key.encode(), timeout=0.5)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        took = round((time.monotonic() - start) * 1000)
        seen = self.wait_seen(key, lambda s: s.get("ended"))
        return {"code": code, "took_ms": took, "server": seen}

    def case_cancel(self):
        key = f"cancel-{uuid.uuid4()}"
        call = self.unary("Slow").future(key.encode())
        self.wait_seen(key, lambda s: s.get("started"))
        call.cancel()
        try:
            call.result()
            code = "OK"
        except grpc.FutureCancelledError:
            code = "CANCELLED"
        except grpc.RpcError as e:
            code = e.code().name
        seen = self.wait_seen(key, lambda s: s.get("ended"))
        return {"code": code, "server": seen}

    def case_status(self):
        out = {}
        for code, details, headers_first in [
            ("NOT_FOUND", "no such thing", False),
            ("INVALID_ARGUMENT", "r\u00e9sum\u00e9 100% wrong: a/b?c=d", False),
            ("PERMISSION_DENIED", "not yours", True),
            ("INTERNAL", "it broke", True),
        ]:
            ask = {"code": code, "details": details, "headers_first": headers_first}
            try:
                self.unary("Fail")(json.dumps(ask).encode(), timeout=10)
                out[code] = {"code": "OK"}
            except grpc.RpcError as e:
                out[code] = failure(e)
        return out

    def case_unimplemented(self):
        try:
            self.unary("NoSuchMethod")(b"", timeout=10)
            return {"code": "OK"}
        except grpc.RpcError as e:
            return {"code": e.code().name}

    def flaky(self, fail_times):
        key = f"flaky-{uuid.uuid4()}"
        try:
            self.unary("Flaky")(json.dumps({"key": key, "fail_times": fail_times}).encode(), timeout=10)
            out = {"code": "OK"}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details()}
        out["attempts"] = int(self.unary("Attempts")(key.encode(), timeout=10))
        return out

    def case_unavailable_once(self):
        return self.flaky(1)

    def case_unavailable_always(self):
        return self.flaky(100)


def main():
    target, authority, mode = sys.argv[1:4]
    options = [
        ("grpc.default_authority", authority),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    with grpc.insecure_channel(target, options=options) as channel:
        client = Client(channel)
        if mode == "probe":
            client.unary("Unary")(b"probe", timeout=5)
            return
        results = {}
        for name in sorted(n for n in dir(client) if n.startswith("case_")):
            case = name.removeprefix("case_")
            try:
                results[case] = getattr(client, name)()
            except grpc.RpcError as e:
                results[case] = {"unexpected": failure(e)}
            except Exception as e:  # the case's own code failed: say so in its row
                results[case] = {"unexpected": repr(e)}
        print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
