"""Checks Zipkin v2 JSON spans against the official zipkin.proto (the Debian zipkin-go package's copy).

Usage: zipkin_check.py ZIPKIN_PROTO SPANS_JSON_FILE...
Compiles zipkin.proto with grpc_tools, then checks that every field of every span is a field of
zipkin.proto's Span (or Endpoint) under its JSON name, with the proto's type: ids as lower-case hex of the
proto's byte length (8 or 16), timestamps and durations as integers (microseconds), kind one of the proto's
Kind values, tags a map of strings. Prints one JSON object per span (fields converted into the proto message
and back) so the caller can assert on values; exits 1 on the first mismatch.
"""
import importlib
import json
import os
import sys
import tempfile

from grpc_tools import protoc


def load(proto):
    out = tempfile.mkdtemp()
    d, name = os.path.split(os.path.abspath(proto))
    if protoc.main(["protoc", f"-I{d}", f"--python_out={out}", name]) != 0:
        sys.exit("cannot compile " + proto)
    sys.path.insert(0, out)
    return importlib.import_module(name[:-6] + "_pb2")


def fail(msg):
    print("MISMATCH: " + msg)
    sys.exit(1)


def convert(obj, desc, what):
    """Builds the proto message for a JSON object, checking each field."""
    fields = {f.json_name: f for f in desc.fields}
    fields.update({f.name: f for f in desc.fields})
    msg = {}
    for key, value in obj.items():
        f = fields.get(key)
        if f is None:
            fail(f"{what}: {key!r} is not a field of zipkin.proto {desc.name}")
        if f.name in ("ipv4", "ipv6"):  # addresses: text in JSON, bytes in proto
            import ipaddress
            try:
                msg[f.name] = ipaddress.ip_address(value).packed
            except ValueError:
                fail(f"{what}: {key}={value!r} is not an IP address")
        elif f.type == f.TYPE_BYTES:  # ids: hex in JSON, bytes in proto
            want = 16 if f.name == "trace_id" and len(value) == 32 else 8
            if not isinstance(value, str) or len(value) != 2 * want or value != value.lower():
                fail(f"{what}: {key}={value!r} is not {2 * want} lower-case hex digits")
            msg[f.name] = bytes.fromhex(value)
        elif f.type in (f.TYPE_UINT64, f.TYPE_INT64, f.TYPE_FIXED64, f.TYPE_INT32):
            if not isinstance(value, int):
                fail(f"{what}: {key}={value!r} is not an integer")
            msg[f.name] = value
        elif f.type == f.TYPE_ENUM:
            names = [v.name for v in f.enum_type.values]
            if value not in names:
                fail(f"{what}: {key}={value!r} is not one of {names}")
            msg[f.name] = value
        elif f.type == f.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                fail(f"{what}: {key} must map strings to strings: {value!r}")
            msg[f.name] = value
        elif f.type == f.TYPE_MESSAGE:
            msg[f.name] = convert(value, f.message_type, f"{what}.{key}")
        elif f.type == f.TYPE_BOOL:
            if not isinstance(value, bool):
                fail(f"{what}: {key}={value!r} is not a boolean")
            msg[f.name] = value
        elif f.type == f.TYPE_STRING:
            if not isinstance(value, str):
                fail(f"{what}: {key}={value!r} is not a string")
            msg[f.name] = value
        else:
            msg[f.name] = value
    return msg


def main():
    pb = load(sys.argv[1])
    for path in sys.argv[2:]:
        with open(path) as f:
            spans = json.load(f)
        if not isinstance(spans, list):
            fail(f"{path}: a POST body is a JSON array of spans")
        for i, span in enumerate(spans):
            fields = convert(span, pb.Span.DESCRIPTOR, f"{os.path.basename(path)}[{i}]")
            m = pb.Span(**{k: v for k, v in fields.items() if k not in ("local_endpoint", "remote_endpoint")})
            for side in ("local_endpoint", "remote_endpoint"):
                if side in fields:
                    getattr(m, side).CopyFrom(pb.Endpoint(**fields[side]))
            print(json.dumps({
                "trace_id": m.trace_id.hex(),
                "id": m.id.hex(),
                "parent_id": m.parent_id.hex(),
                "name": m.name,
                "kind": pb.Span.Kind.Name(m.kind),
                "timestamp": m.timestamp,
                "duration": m.duration,
                "local": m.local_endpoint.service_name,
                "remote": m.remote_endpoint.service_name,
                "tags": dict(m.tags),
            }))


main()
