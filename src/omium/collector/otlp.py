"""Decoding and checking OTLP trace payloads: protobuf or OTLP/JSON in, a checked request out.

:func:`prepare` counts a request's spans and drops the ones that cannot be stored (reported as a
partial success). Turning spans into ``otel_traces`` rows is :mod:`omium.warehouse.otlp_rows`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.errors import DecodeError

_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """Parse an ``ExportTraceServiceRequest`` from protobuf bytes."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"body is not a valid ExportTraceServiceRequest protobuf: {exc}") from None
    return request


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON carries ids as hex; protobuf's JSON parser expects base64. Convert in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                if value == "":
                    continue
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise DecodeError(f"{key} {value!r} is not hex") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    return node


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, integer enums, unknown fields ignored)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("body must be a JSON object (an ExportTraceServiceRequest)")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return request


__all__ = ["decode_json", "decode_protobuf"]


@dataclass(frozen=True)
class Prepared:
    """A request checked span by span: the bytes to store and what was rejected."""

    body: bytes
    spans: int
    rejected: int
    message: str


# DateTime64(9) ends in 2262; a later timestamp cannot be stored.
MAX_TIME_NS = 2**63 - 1


def _valid_ids(span: Any) -> bool:
    trace_id = span.trace_id
    return (
        len(trace_id) == 16
        and trace_id != b"\x00" * 16
        and len(span.span_id) == 8
        and len(span.parent_span_id) in (0, 8)
        and span.start_time_unix_nano <= MAX_TIME_NS
        and all(event.time_unix_nano <= MAX_TIME_NS for event in span.events)
    )


def prepare(request: ExportTraceServiceRequest, body: bytes | None = None) -> Prepared:
    """Count a request's spans and drop the ones with invalid ids (reported as partial success).

    ``body`` is the request's protobuf encoding when the caller already has it, so the common
    case (every span valid) re-uses it instead of serializing again.
    """
    spans = rejected = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if _valid_ids(span):
                    spans += 1
                else:
                    rejected += 1
    if rejected == 0:
        return Prepared(body if body is not None else request.SerializeToString(), spans, 0, "")
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            keep = [span for span in scope_spans.spans if _valid_ids(span)]
            del scope_spans.spans[:]
            scope_spans.spans.extend(keep)
    message = (
        f"{rejected} span(s) rejected: trace_id must be 16 bytes and not all zero, span_id 8 bytes, "
        "parent_span_id empty or 8 bytes, and times before the year 2262"
    )
    return Prepared(request.SerializeToString(), spans, rejected, message)


__all__ += ["Prepared", "prepare"]
