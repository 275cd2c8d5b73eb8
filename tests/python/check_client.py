#!/usr/bin/env python3
"""A real grpcio client of the hub's sextant.mixer.v1.Mixer/Check.

Usage: python check_client.py HOST:PORT < request.json

The request is a JSON object:
  {"attributes": {"NAME": {"string": "..."} | {"int64": 5} | {"double": 1.5} | {"bool": true}
                        | {"bytes_b64": "..."} | {"string_map": {"k": "v"}}
                        | {"timestamp": "2026-01-01T00:00:00Z"} | {"duration_s": 1.5}},
   "quotas": {"NAME": {"amount": 1, "best_effort": false}},
   "deduplication_id": "..."}

It compiles the repo's protos at run time with grpc_tools.protoc, calls Check with the plain attribute form,
and prints one JSON line:
  {"code", "message", "valid_duration_ms", "valid_use_count", "referenced": [[name, map_key, condition], ...],
   "config_revision", "direct_response": {"http_status", "body"} | null,
   "header_operations": [[target, name, value, op], ...], "quotas": {NAME: {"granted", "error"}}}
On a gRPC error it prints {"grpc_error": "<StatusCode name>", "details": "..."} and exits 0.
Optional environment: CHECK_CLIENT_TIMEOUT_S (default 10).
"""

import base64
import importlib
import json
import os
import shutil
import sys
import tempfile

import grpc
from grpc_tools import protoc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_ROOT = os.path.join(REPO, "proto")
MIXER_PROTO = "sextant/mixer/v1/mixer.proto"


def _grpc_tools_include():
    """The directory of the well-known types (google/protobuf/*.proto) bundled with grpc_tools."""
    try:
        from importlib import resources

        return str(resources.files("grpc_tools") / "_proto")
    except (ImportError, AttributeError):  # Python < 3.9
        import pkg_resources

        return pkg_resources.resource_filename("grpc_tools", "_proto")


def compile_protos(out_dir):
    """Generates Python modules for mixer.proto and its imports into out_dir and makes them importable."""
    protos = [MIXER_PROTO, "google/rpc/status.proto"]
    args = [
        "grpc_tools.protoc",
        "-I" + PROTO_ROOT,
        "-I" + _grpc_tools_include(),
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
    ] + protos
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed with exit code %d for %s" % (rc, protos))
    # The generated code imports `google.rpc.status_pb2`: make sure our out_dir wins for `google.rpc` while
    # `google.protobuf` still resolves to the installed protobuf package.
    for pkg in ("sextant", "sextant/mixer", "sextant/mixer/v1", "google/rpc"):
        init = os.path.join(out_dir, pkg, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    sys.path.insert(0, out_dir)
    import google  # a namespace package (protobuf's google.protobuf + our google.rpc)

    if os.path.join(out_dir, "google") not in list(google.__path__):
        google.__path__.append(os.path.join(out_dir, "google"))
    pb2 = importlib.import_module("sextant.mixer.v1.mixer_pb2")
    pb2_grpc = importlib.import_module("sextant.mixer.v1.mixer_pb2_grpc")
    return pb2, pb2_grpc


def set_value(av, name, spec):
    """Fills an AttributeValue from its JSON form."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError("attribute %r: expected an object with exactly one type key, got %r" % (name, spec))
    (kind, v), = spec.items()
    if kind == "string":
        av.string_value = v
    elif kind == "int64":
        av.int64_value = int(v)
    elif kind == "double":
        av.double_value = float(v)
    elif kind == "bool":
        av.bool_value = bool(v)
    elif kind == "bytes_b64":
        av.bytes_value = base64.b64decode(v)
    elif kind == "string_map":
        av.string_map_value.SetInParent()
        for k, val in v.items():
            av.string_map_value.entries[k] = val
    elif kind == "timestamp":
        av.timestamp_value.FromJsonString(v)
    elif kind == "duration_s":
        secs = float(v)
        total_nanos = int(round(secs * 1e9))
        # seconds and nanos carry the same sign, as google.protobuf.Duration requires.
        sign = -1 if total_nanos < 0 else 1
        s, n = divmod(abs(total_nanos), 1_000_000_000)
        av.duration_value.seconds = sign * s
        av.duration_value.nanos = sign * n
    else:
        raise ValueError("attribute %r: unknown type %r" % (name, kind))


def build_request(pb2, req):
    """Builds a CheckRequest (plain attribute form) from the request JSON."""
    unknown = set(req) - {"attributes", "quotas", "deduplication_id"}
    if unknown:
        raise ValueError("unknown request keys: %s" % sorted(unknown))
    msg = pb2.CheckRequest()
    msg.attributes.SetInParent()
    for name, spec in (req.get("attributes") or {}).items():
        set_value(msg.attributes.values[name], name, spec)
    for name, q in (req.get("quotas") or {}).items():
        qp = msg.quotas[name]
        qp.amount = int(q.get("amount", 0))
        qp.best_effort = bool(q.get("best_effort", False))
    if req.get("deduplication_id"):
        msg.deduplication_id = req["deduplication_id"]
    return msg


def duration_ms(d):
    return d.seconds * 1000 + d.nanos // 1_000_000


def response_json(pb2, resp):
    pre = resp.precondition
    cond = pb2.AttributeMatch.Condition
    target = pb2.HeaderOperation.Target
    op = pb2.HeaderOperation.Operation
    out = {
        "code": pre.status.code,
        "message": pre.status.message,
        "valid_duration_ms": duration_ms(pre.valid_duration),
        "valid_use_count": pre.valid_use_count,
        "referenced": sorted(
            [m.name, m.map_key, cond.Name(m.condition)] for m in pre.referenced_attributes.attribute_matches
        ),
        "config_revision": pre.config_revision,
        "direct_response": (
            {"http_status": pre.direct_response.http_status, "body": pre.direct_response.body}
            if pre.HasField("direct_response")
            else None
        ),
        "header_operations": [
            [target.Name(h.target), h.name, h.value, op.Name(h.operation)] for h in pre.header_operations
        ],
        "quotas": {
            name: {"granted": q.granted_amount, "error": q.error} for name, q in sorted(resp.quotas.items())
        },
    }
    return out


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s HOST:PORT < request.json\n" % argv[0])
        return 2
    target = argv[1]
    req = json.load(sys.stdin)
    if not isinstance(req, dict):
        raise ValueError("the request must be a JSON object")
    timeout = float(os.environ.get("CHECK_CLIENT_TIMEOUT_S", "10"))

    out_dir = tempfile.mkdtemp(prefix="sextant-check-client-")
    try:
        pb2, pb2_grpc = compile_protos(out_dir)
        request = build_request(pb2, req)
        with grpc.insecure_channel(target) as channel:
            stub = pb2_grpc.MixerStub(channel)
            try:
                resp = stub.Check(request, timeout=timeout)
            except grpc.RpcError as e:
                print(json.dumps({"grpc_error": e.code().name, "details": e.details() or ""}))
                return 0
        print(json.dumps(response_json(pb2, resp)))
        return 0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
