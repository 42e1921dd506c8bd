"""Decoding and checking OTLP trace payloads: protobuf or OTLP/JSON in, a checked request out.

:func:`prepare` counts a request's spans, drops the ones that cannot be stored (reported as a
partial success) and notes the days its spans start on (``otel_traces`` is partitioned by day,
and one insert may touch only so many partitions). Turning spans into ``otel_traces`` rows is
:mod:`omium.warehouse.otlp_rows`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.collector.jsonbody import load_json, printable
from omium.errors import DecodeError
from omium.warehouse.otlp_rows import DAY_NS

_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

# OTLP/JSON nests 12 levels down to a span attribute's value (events and links 15), and every
# AnyValue array or key-value list adds 3 or 4: 64 leaves room for a dozen levels of structured
# attributes, and refuses pathological nesting before anything walks it.
JSON_MAX_DEPTH = 64
# DateTime64(9) ends in 2262; a later timestamp cannot be stored.
MAX_TIME_NS = 2**63 - 1
_ZERO_TRACE_ID = bytes(16)
_M = TypeVar("_M", bound=Message)


def parse_protobuf(body: bytes, message_type: type[_M]) -> _M:
    """Parse an OTLP export request of ``message_type`` (traces, logs or metrics) from protobuf.

    Raises:
        DecodeError: for bytes that are not such a message.
    """
    request = message_type()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(
            f"body is not a valid {message_type.__name__} protobuf: {printable(str(exc))}"
        ) from None
    return request


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """Parse an ``ExportTraceServiceRequest`` from protobuf bytes."""
    return parse_protobuf(body, ExportTraceServiceRequest)


def _hex_ids_to_base64(document: Any) -> Any:
    """OTLP/JSON carries ids as hex; protobuf's JSON parser expects base64. Convert in place.

    Iterative: ``document`` is depth-checked already, but a walk should not depend on that.
    """
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _ID_FIELDS and isinstance(value, str):
                    if value == "":
                        continue
                    try:
                        node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError:
                        raise DecodeError(f"{key} {printable(value[:64])!r} is not hex") from None
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, (dict, list)))
    return document


def parse_json(body: bytes, message_type: type[_M]) -> _M:
    """Parse an OTLP/JSON export request of ``message_type`` (hex ids, integer enums, unknown
    fields ignored): traces, logs or metrics (exemplars carry ids too).

    Raises:
        DecodeError: for anything that is not such a request, including JSON nested deeper than
            :data:`JSON_MAX_DEPTH`, lone UTF-16 surrogates and invalid UTF-8.
    """
    name = message_type.__name__
    document = load_json(body, max_depth=JSON_MAX_DEPTH)
    if not isinstance(document, dict):
        raise DecodeError(f"body must be a JSON object (an {name})")
    request = message_type()
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise DecodeError(f"body is not a valid OTLP/JSON {name}: {printable(str(exc))}") from None
    return request


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest`` (see :func:`parse_json`)."""
    return parse_json(body, ExportTraceServiceRequest)


@dataclass(frozen=True)
class Prepared:
    """A request checked span by span: the bytes to store, what was rejected, and its days.

    ``first_day`` and ``last_day`` are the UTC days (since the epoch) of the earliest and latest
    span start among the stored spans; both 0 when there is none.
    """

    body: bytes
    spans: int
    rejected: int
    message: str
    first_day: int = 0
    last_day: int = 0


def _valid(span: Any) -> bool:
    trace_id = span.trace_id
    return (
        len(trace_id) == 16
        and trace_id != _ZERO_TRACE_ID
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
    first, last = MAX_TIME_NS, 0
    # The hot path of ingest: the checks of _valid inlined, and the earliest and latest start
    # kept on the way (two comparisons a span) rather than a pass of their own.
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                start = span.start_time_unix_nano
                trace_id = span.trace_id
                if (
                    len(trace_id) == 16
                    and trace_id != _ZERO_TRACE_ID
                    and len(span.span_id) == 8
                    and len(span.parent_span_id) in (0, 8)
                    and start <= MAX_TIME_NS
                ):
                    events = span.events
                    if events and max(event.time_unix_nano for event in events) > MAX_TIME_NS:
                        rejected += 1
                        continue
                    spans += 1
                    if start < first:
                        first = start
                    if start > last:
                        last = start
                else:
                    rejected += 1
    first_day, last_day = (first // DAY_NS, last // DAY_NS) if spans else (0, 0)
    if rejected == 0:
        body = body if body is not None else request.SerializeToString()
        return Prepared(body, spans, 0, "", first_day, last_day)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            keep = [span for span in scope_spans.spans if _valid(span)]
            del scope_spans.spans[:]
            scope_spans.spans.extend(keep)
    message = (
        f"{rejected} span(s) rejected: trace_id must be 16 bytes and not all zero, span_id 8 bytes, "
        "parent_span_id empty or 8 bytes, and times before the year 2262"
    )
    return Prepared(request.SerializeToString(), spans, rejected, message, first_day, last_day)


__all__ = [
    "JSON_MAX_DEPTH",
    "MAX_TIME_NS",
    "Prepared",
    "decode_json",
    "decode_protobuf",
    "parse_json",
    "parse_protobuf",
    "prepare",
]
