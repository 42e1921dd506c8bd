"""OTLP spans as ``otel_traces`` rows: one list per column, values stringified as the contrib exporter does.

Shared by the collector (which decodes requests) and the SDK's embedded span exporter (which
writes the spans of a script run with no server straight into the in-process warehouse).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.semconv import OTEL_TRACES_COLUMNS, SPAN_KIND_NAMES, STATUS_CODE_NAMES

DAY_NS = 86_400 * 10**9


@dataclass
class SpanColumns:
    """Spans of one or more requests as one list per ``otel_traces`` column."""

    columns: list[list[Any]] = field(default_factory=lambda: [[] for _ in OTEL_TRACES_COLUMNS])
    rejected: int = 0
    reject_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns[0])

    def extend(self, other: SpanColumns) -> None:
        """Append ``other``'s rows (used to group several requests into one insert)."""
        for mine, theirs in zip(self.columns, other.columns, strict=True):
            mine.extend(theirs)

    def keys(self) -> list[tuple[str, str]]:
        """(TraceId, SpanId) of each row."""
        return list(zip(self.columns[1], self.columns[2], strict=True))

    def select(self, keep: list[int]) -> SpanColumns:
        """A copy holding only the rows at positions ``keep``."""
        out = SpanColumns()
        out.columns = [[col[i] for i in keep] for col in self.columns]
        return out

    def split_by_day(self, max_days: int) -> list[SpanColumns]:
        """The rows in groups whose span starts lie within ``max_days`` consecutive UTC days.

        ``otel_traces`` is partitioned by day and ClickHouse refuses an insert that touches more
        than ``max_partitions_per_insert_block`` (100) partitions: insert each group on its own.
        Rows within the limit (nearly always) come back as ``[self]`` after two passes in C.
        """
        starts = self.columns[0]
        if not starts or max(starts) // DAY_NS - min(starts) // DAY_NS < max_days:
            return [self]
        groups: dict[int, list[int]] = {}
        first_of: dict[int, int] = {}
        group_start = -max_days
        for day in sorted({start // DAY_NS for start in starts}):
            if day - group_start >= max_days:
                group_start = day
            first_of[day] = group_start
        for index, start in enumerate(starts):
            groups.setdefault(first_of[start // DAY_NS], []).append(index)
        return [self.select(rows) for rows in groups.values()]


# --- Value.AsString, as the contrib exporter stores attribute values ------------------------------
#
# The exporter stores ``pcommon.Value.AsString()`` for every attribute value
# (open-telemetry/opentelemetry-collector pdata/pcommon/value.go):
# - Str as is; Bool ``strconv.FormatBool``; Int ``strconv.FormatInt(v, 10)``;
# - Double ``float64AsString``: ES6 number-to-string, i.e. strconv.AppendFloat(f, 'f', -1, 64), or
#   'e' when abs < 1e-6 or abs >= 1e21, with an 'e-0X' exponent cleaned to 'e-X' ("1e-7", "1e+21");
#   NaN and infinities become the text "json: unsupported value: NaN" (or +Inf / -Inf);
# - Bytes ``base64.StdEncoding``;
# - Map and Slice ``json.Marshal(v.AsRaw())`` (Go encoding/json, encode.go): map keys sorted
#   (a kvlist repeating a key keeps its last value, as Map.AsRaw assigns in order), strings escaped
#   by ``appendString`` with escapeHTML (\" \\ \b \f \n \r \t, other bytes < 0x20 as \u00xx in
#   lowercase hex, < > & as \u003c \u003e \u0026, U+2028/U+2029 as \u2028/\u2029; '/' and other
#   non-ASCII kept), floats by the same ES6 rule (floatEncoder), bytes as base64 strings except
#   an empty one, which ``ByteSlice.AsRaw`` copies to a nil slice and Marshal writes as null; an
#   empty value is null. Marshal fails on NaN or an infinity anywhere inside: AsString is then "".
# The engine path (collector/native.py) renders the same rules in SQL; tests compare both.

_HTML_AND_SEPARATORS = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class _NotFinite(ValueError):
    """A NaN or an infinity inside an array or map: Go's json.Marshal refuses the whole value."""


def go_float(number: float) -> str:
    """A finite double as Go's ``float64AsString`` (and encoding/json's floatEncoder) writes it."""
    text = repr(number)  # the shortest digits that round-trip, as strconv's -1 precision
    magnitude = abs(number)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        # repr is in exponent form in this range ("1e-07", "1.5e+300"); Go drops the exponent's
        # leading zero only after a minus sign (its 'e' format pads to two digits, as repr does).
        mantissa, _, exponent = text.partition("e")
        if exponent[0] == "-" and exponent[1] == "0":
            exponent = "-" + exponent[2:]
        return f"{mantissa}e{exponent}"
    if "e" in text:  # 1e-6 <= |x| < 1e-4 or 1e16 <= |x| < 1e21: repr uses an exponent, Go does not
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _double_str(number: float) -> str:
    if math.isfinite(number):
        return go_float(number)
    # float64AsString: fmt.Sprintf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
    return "json: unsupported value: " + ("NaN" if number != number else "+Inf" if number > 0 else "-Inf")


def _json_string(text: str) -> str:
    # encode_basestring escapes " \\ \b \f \n \r \t and other controls as lowercase \u00xx and
    # keeps non-ASCII, as Go does; Go's escapeHTML and U+2028/U+2029 are added on top.
    quoted: str = encode_basestring(text)
    if "<" in quoted or ">" in quoted or "&" in quoted or "\u2028" in quoted or "\u2029" in quoted:
        quoted = quoted.translate(_HTML_AND_SEPARATORS)
    return quoted


def _json(value: Any) -> str:
    """Go's ``json.Marshal(value.AsRaw())`` of an AnyValue nested in an array or map."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _json_string(value.string_value)
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        number = value.double_value
        if not math.isfinite(number):
            raise _NotFinite
        return go_float(number)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        raw = value.bytes_value
        return '"' + base64.b64encode(raw).decode() + '"' if raw else "null"
    if kind == "array_value":
        return "[" + ",".join([_json(item) for item in value.array_value.values]) + "]"
    if kind == "kvlist_value":
        entries = {kv.key: kv.value for kv in value.kvlist_value.values}  # the last of a repeated key
        return "{" + ",".join([f"{_json_string(key)}:{_json(entries[key])}" for key in sorted(entries)]) + "}"
    return "null"


def _any_value_str(value: Any) -> str:
    """Stringify an OTLP AnyValue as the contrib exporter's ``Value.AsString()`` does."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return _double_str(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind in ("array_value", "kvlist_value"):
        try:
            return _json(value)
        except _NotFinite:
            return ""  # json.Marshal returned an error and AsString ignores it: string(nil)
    return ""


def _attributes(kvs: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in kvs:
        value = kv.value
        # Most attributes are strings: test that first, without WhichOneof's dispatch.
        if value.HasField("string_value"):
            out[kv.key] = value.string_value
        else:
            out[kv.key] = _any_value_str(value)
    return out


def to_columns(request: ExportTraceServiceRequest) -> SpanColumns:
    """Flatten a request into ``otel_traces`` columns; invalid spans are counted as rejected."""
    out = SpanColumns()
    (
        c_ts,
        c_trace,
        c_span,
        c_parent,
        c_state,
        c_name,
        c_kind,
        c_service,
        c_res,
        c_scope,
        c_scope_v,
        c_attrs,
        c_dur,
        c_status,
        c_status_msg,
        c_ev_ts,
        c_ev_name,
        c_ev_attrs,
        c_ln_trace,
        c_ln_span,
        c_ln_state,
        c_ln_attrs,
    ) = out.columns
    kinds = SPAN_KIND_NAMES
    statuses = STATUS_CODE_NAMES
    for resource_spans in request.resource_spans:
        resource_attrs = _attributes(resource_spans.resource.attributes)
        service = resource_attrs.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            scope_version = scope_spans.scope.version
            for span in scope_spans.spans:
                trace_id = span.trace_id
                span_id = span.span_id
                parent = span.parent_span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or len(parent) not in (0, 8)
                    or trace_id == bytes(16)
                ):
                    out.rejected += 1
                    if len(out.reject_reasons) < 5:
                        out.reject_reasons.append(
                            f"span {span.name!r}: trace_id must be 16 non-zero bytes, span_id 8 bytes, "
                            f"parent_span_id 0 or 8 (got {len(trace_id)}, {len(span_id)}, {len(parent)})"
                        )
                    continue
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                c_ts.append(start)
                c_trace.append(trace_id.hex())
                c_span.append(span_id.hex())
                c_parent.append(parent.hex() if parent else "")
                c_state.append(span.trace_state)
                c_name.append(span.name)
                kind = span.kind
                c_kind.append(kinds[kind] if 0 <= kind < 6 else "Unspecified")
                c_service.append(service)
                c_res.append(resource_attrs)
                c_scope.append(scope_name)
                c_scope_v.append(scope_version)
                c_attrs.append(_attributes(span.attributes))
                c_dur.append(end - start if end > start else 0)
                code = span.status.code
                c_status.append(statuses[code] if 0 <= code < 3 else "Unset")
                c_status_msg.append(span.status.message)
                events = span.events
                if events:
                    c_ev_ts.append([e.time_unix_nano for e in events])
                    c_ev_name.append([e.name for e in events])
                    c_ev_attrs.append([_attributes(e.attributes) for e in events])
                else:
                    c_ev_ts.append([])
                    c_ev_name.append([])
                    c_ev_attrs.append([])
                links = span.links
                if links:
                    c_ln_trace.append([link.trace_id.hex() for link in links])
                    c_ln_span.append([link.span_id.hex() for link in links])
                    c_ln_state.append([link.trace_state for link in links])
                    c_ln_attrs.append([_attributes(link.attributes) for link in links])
                else:
                    c_ln_trace.append([])
                    c_ln_span.append([])
                    c_ln_state.append([])
                    c_ln_attrs.append([])
    return out


__all__ = ["DAY_NS", "SpanColumns", "to_columns"]
