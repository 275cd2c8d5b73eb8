"""Decodes OTLP/HTTP protobuf request bodies with the official opentelemetry-proto types.

Usage: otlp_decode.py traces|metrics|logs FILE...
Prints each request as JSON (protobuf's canonical JSON mapping); exits 1 when a body does not parse.
"""
import sys

from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

KINDS = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}

cls = KINDS[sys.argv[1]]
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        msg = cls.FromString(f.read())
    print(MessageToJson(msg, indent=None))
