"""Ingest in the engine: ClickHouse parses OTLP protobuf and flattens it into ``otel_traces``.

Decoding spans attribute by attribute in Python costs ~20 us a span; ClickHouse's Protobuf
input format does it in C++ with the GIL released. Request bodies are concatenated
(length-delimited) into a spool file and one ``INSERT ... SELECT ... FROM file(...)`` flattens
them, stringifying values as the contrib exporter does. Values nested more than one level deep
(an array inside an array) make the statement fail on purpose (``throwIf``), and the caller
re-inserts that batch through the Python decoder: the table deduplicates by span, so rows the
failed statement already wrote are not counted twice.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from omium.semconv import OTEL_TRACES_COLUMNS

DEEP_VALUE_MARK = "omium-deep-otlp-value"

_SCALAR = (
    "Tuple(string_value Nullable(String), bool_value Nullable(Bool), int_value Nullable(Int64), "
    "double_value Nullable(Float64), array_value Nullable(String), kvlist_value Nullable(String), "
    "bytes_value Nullable(String))"
)
_ANY = (
    "Tuple(string_value Nullable(String), bool_value Nullable(Bool), int_value Nullable(Int64), "
    f"double_value Nullable(Float64), array_value Tuple(values Array({_SCALAR})), "
    f"kvlist_value Tuple(values Array(Tuple(key String, value {_SCALAR}))), bytes_value Nullable(String))"
)
_KVS = f"Array(Tuple(key String, value {_ANY}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_KVS}), scope_spans Array(Tuple("
    "scope Tuple(name String, version String), spans Array(Tuple(trace_id String, span_id String, "
    "trace_state String, parent_span_id String, name String, kind Int32, start_time_unix_nano UInt64, "
    f"end_time_unix_nano UInt64, attributes {_KVS}, events Array(Tuple(time_unix_nano UInt64, name String, "
    f"attributes {_KVS})), links Array(Tuple(trace_id String, span_id String, trace_state String, "
    f"attributes {_KVS})), status Tuple(message String, code Int32)))))))"
)


def _scalar(v: str) -> str:
    return (
        f"coalesce({v}.string_value, if({v}.bool_value IS NULL, NULL, if({v}.bool_value, 'true', 'false')), "
        f"toString({v}.int_value), toString({v}.double_value), base64Encode({v}.bytes_value), '')"
    )


def _json_scalar(v: str) -> str:
    # JSON text of a scalar, as pcommon's AsString renders arrays and maps of scalars.
    return (
        f"multiIf({v}.string_value IS NOT NULL, toJSONString({v}.string_value), "
        f"{v}.bool_value IS NOT NULL, if({v}.bool_value, 'true', 'false'), "
        f"{v}.int_value IS NOT NULL, toString({v}.int_value), "
        f"{v}.double_value IS NOT NULL, toString({v}.double_value), "
        f"{v}.bytes_value IS NOT NULL, toJSONString(base64Encode({v}.bytes_value)), 'null')"
    )


def _any(v: str) -> str:
    items = f"arrayMap(x -> {_json_scalar('x')}, {v}.array_value.values)"
    array = f"concat('[', arrayStringConcat({items}, ','), ']')"
    kvlist = (
        "concat('{', arrayStringConcat(arrayMap(kv -> concat(toJSONString(kv.key), ':', "
        f"{_json_scalar('kv.value')}), {v}.kvlist_value.values), ','), '}}')"
    )
    return (
        f"multiIf(notEmpty({v}.array_value.values), {array}, notEmpty({v}.kvlist_value.values), {kvlist}, "
        f"{_scalar(v)})"
    )


def _attributes(expr: str) -> str:
    return f"mapFromArrays(arrayMap(kv -> kv.key, {expr}), arrayMap(kv -> {_any('kv.value')}, {expr}))"


def _deep(expr: str) -> str:
    """True when a key-value list holds a value nested two levels deep (checked on the structure,
    not the rendered strings, which would scan every byte of message content)."""
    nested = "x.array_value IS NOT NULL OR x.kvlist_value IS NOT NULL"
    nested_kv = "x.value.array_value IS NOT NULL OR x.value.kvlist_value IS NOT NULL"
    return (
        f"arrayExists(kv -> arrayExists(x -> {nested}, kv.value.array_value.values) "
        f"OR arrayExists(x -> {nested_kv}, kv.value.kvlist_value.values), {expr})"
    )


_SPAN_ATTRS = _attributes("s.attributes")

# Built once from the constants above; every value is a bound parameter.
INSERT_FROM_FILE = f"""
INSERT INTO otel_traces ({", ".join(f"`{c}`" for c in OTEL_TRACES_COLUMNS)})
SELECT
    -- throwIf adds 0, or fails the statement when a value is nested too deep for this path.
    fromUnixTimestamp64Nano(toInt64(s.start_time_unix_nano) + throwIf(
        {_deep("s.attributes")} OR {_deep("rs.resource.attributes")}
        OR arrayExists(e -> {_deep("e.attributes")}, s.events)
        OR arrayExists(l -> {_deep("l.attributes")}, s.links),
        '{DEEP_VALUE_MARK}')),
    lower(hex(s.trace_id)),
    lower(hex(s.span_id)),
    lower(hex(s.parent_span_id)),
    s.trace_state,
    s.name,
    ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer']
        [least(greatest(s.kind, 0), 5) + 1],
    res['service.name'],
    res,
    ss.scope.name,
    ss.scope.version,
    span_attrs,
    if(s.end_time_unix_nano > s.start_time_unix_nano, s.end_time_unix_nano - s.start_time_unix_nano, 0),
    ['Unset', 'Ok', 'Error'][least(greatest(s.status.code, 0), 2) + 1],
    s.status.message,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), s.events),
    arrayMap(e -> e.name, s.events),
    event_attrs,
    arrayMap(l -> lower(hex(l.trace_id)), s.links),
    arrayMap(l -> lower(hex(l.span_id)), s.links),
    arrayMap(l -> l.trace_state, s.links),
    link_attrs
FROM file({{path:String}}, 'Protobuf', {{structure:String}})
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS s
LEFT ARRAY JOIN [{_attributes("rs.resource.attributes")}] AS res
LEFT ARRAY JOIN [{_SPAN_ATTRS}] AS span_attrs
LEFT ARRAY JOIN [arrayMap(e -> {_attributes("e.attributes")}, s.events)] AS event_attrs
LEFT ARRAY JOIN [arrayMap(l -> {_attributes("l.attributes")}, s.links)] AS link_attrs
WHERE length(s.trace_id) = 16 AND s.trace_id != repeat(char(0), 16) AND length(s.span_id) = 8
    AND length(s.parent_span_id) IN (0, 8) AND s.start_time_unix_nano <= 9223372036854775807
    AND arrayAll(e -> e.time_unix_nano <= 9223372036854775807, s.events)
SETTINGS format_schema = {{schema:String}}, input_format_protobuf_oneof_presence = 0
"""


def schema_path() -> Path:
    """Absolute path of the packaged ``otlp_trace.proto``."""
    return Path(str(resources.files("omium.collector").joinpath("otlp_trace.proto"))).resolve()


def insert_parameters(spool_file: Path) -> dict[str, str]:
    """Parameters of :data:`INSERT_FROM_FILE` for a spool file of length-delimited requests."""
    return {
        "path": str(spool_file.resolve()),
        "structure": STRUCTURE,
        "schema": f"{schema_path()}:ExportTraceServiceRequest",
    }


__all__ = ["DEEP_VALUE_MARK", "INSERT_FROM_FILE", "STRUCTURE", "insert_parameters", "schema_path"]
