"""Ingest in the engine: ClickHouse parses OTLP protobuf and flattens it into ``otel_traces``.

Decoding spans attribute by attribute in Python costs ~20 us a span; ClickHouse's Protobuf
input format does it in C++ with the GIL released. Request bodies are concatenated
(length-delimited) into a spool file and one ``INSERT ... SELECT ... FROM file(...)`` flattens
them, stringifying values as the contrib exporter does (pcommon's ``Value.AsString``: the rules
and their sources are in :mod:`omium.warehouse.otlp_rows`; a test compares both paths byte for
byte). What this path does not render as Go does makes the statement fail on purpose
(``throwIf``): a value nested more than one level deep (an array inside an array), a repeated
key, or a rare control character inside an array or a map. The caller then re-inserts that
batch through the Python decoder: the table deduplicates by span, so rows the failed statement
already wrote are not counted twice.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from omium.semconv import OTEL_TRACES_COLUMNS

DEEP_VALUE_MARK = "omium-deep-otlp-value"

# ``input_format_protobuf_oneof_presence`` fills this column with the tag of the oneof case that
# was set (0 for none): an empty array, an empty map and empty bytes are told apart from an
# unset value, as pcommon does ("[]", "{}", "" and "" at the top; inside JSON, null for the last two).
_ONEOF = (
    "value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, "
    "'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7)"
)
_FIELDS = "string_value String, bool_value Bool, int_value Int64, double_value Float64"
_SCALAR = f"Tuple({_FIELDS}, array_value String, kvlist_value String, bytes_value String, {_ONEOF})"
_ANY = (
    f"Tuple({_FIELDS}, array_value Tuple(values Array({_SCALAR})), "
    f"kvlist_value Tuple(values Array(Tuple(key String, value {_SCALAR}))), bytes_value String, {_ONEOF})"
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

# The rules are pcommon's Value.AsString and Go's encoding/json, spelled out (with sources) in
# omium.warehouse.otlp_rows; here is the same in SQL, tested byte for byte against it.


def _literal(text: str) -> str:
    """A ClickHouse string literal of ``text`` (control bytes as \\xHH escapes)."""
    body = "".join(
        f"\\x{ord(c):02x}" if ord(c) < 0x20 else "\\\\" if c == "\\" else "\\'" if c == "'" else c
        for c in text
    )
    return f"'{body}'"


# Control characters whose \u00XX escape has a hex letter: ClickHouse writes it in upper case
# (\u001B), Go in lower case (\u001b). Rare in attribute values: a batch holding one in an array
# or a map takes the Python decoder (see _deep).
_UPPER_HEX_CONTROLS = _literal("[\\x0b\\x0e\\x0f\\x1a-\\x1f]")


def _json_string(s: str) -> str:
    # toJSONString escapes as Go's appendString does (\" \\ \b \f \n \r \t, \u00xx, U+2028/9,
    # '/' kept under output_format_json_escape_forward_slashes = 0, non-ASCII kept) but for
    # escapeHTML's < > &, which only ever occur unescaped: replaced after.
    return (
        f"replaceAll(replaceAll(replaceAll(toJSONString({s}), '<', '\\\\u003c'), '>', '\\\\u003e'), "
        "'&', '\\\\u0026')"
    )


def _es6(d: str) -> str:
    # ClickHouse writes a finite Float64 with the shortest digits and ES6's cut-offs (positional for
    # 1e-6 <= |x| < 1e21) like Go, but a positive exponent without its sign: "1e21" for "1e+21".
    return f"replaceOne(replaceOne(toString({d}), 'e', 'e+'), 'e+-', 'e-')"


def _double(d: str) -> str:
    return (
        f"if(isFinite({d}), {_es6(d)}, multiIf(isNaN({d}), 'json: unsupported value: NaN', "
        f"{d} > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf'))"
    )


def _json_scalar(v: str) -> str:
    """JSON text of a value inside an array or map (Go's json.Marshal of its AsRaw)."""
    return (
        f"multiIf({v}.value = 'string_value', {_json_string(f'{v}.string_value')}, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', {_es6(f'{v}.double_value')}, "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'bytes_value' AND {v}.bytes_value != '', "
        f"concat('\"', base64Encode({v}.bytes_value), '\"'), 'null')"
    )


def _not_finite(values: str, v: str) -> str:
    return f"arrayExists(x -> x{v}.value = 'double_value' AND NOT isFinite(x{v}.double_value), {values})"


def _any(v: str) -> str:
    """A value's ``AsString()``."""
    values = f"{v}.array_value.values"
    array = f"concat('[', arrayStringConcat(arrayMap(x -> {_json_scalar('x')}, {values}), ','), ']')"
    pairs = f"{v}.kvlist_value.values"
    kvlist = (
        "concat('{', arrayStringConcat(arrayMap(kv -> concat("
        f"{_json_string('kv.key')}, ':', {_json_scalar('kv.value')}), "
        f"arraySort(kv -> kv.key, {pairs})), ','), '}}')"
    )
    return (
        f"multiIf({v}.value = 'string_value', {v}.string_value, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', {_double(f'{v}.double_value')}, "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), "
        # json.Marshal fails on a NaN or an infinity inside, and AsString then returns "".
        f"{v}.value = 'array_value', if({_not_finite(values, '')}, '', {array}), "
        f"{v}.value = 'kvlist_value', if({_not_finite(pairs, '.value')}, '', {kvlist}), '')"
    )


def _attributes(expr: str) -> str:
    return f"mapFromArrays(arrayMap(kv -> kv.key, {expr}), arrayMap(kv -> {_any('kv.value')}, {expr}))"


def _deep(expr: str) -> str:
    """True when a key-value list holds what this path does not render as Go does: a value nested
    two levels deep, a key repeated (in the list or in a map value: Go keeps the last, a ClickHouse
    Map would keep both), or a control character of :data:`_UPPER_HEX_CONTROLS` in a string inside
    an array or a map. Checked on the structure, and on strings only inside arrays and maps."""
    nested = "x.value IN ('array_value', 'kvlist_value')"
    nested_kv = "x.value.value IN ('array_value', 'kvlist_value')"
    items = "kv.value.array_value.values"
    pairs = "kv.value.kvlist_value.values"
    upper_hex = f"x.value = 'string_value' AND match(x.string_value, {_UPPER_HEX_CONTROLS})"
    upper_hex_kv = (
        f"match(x.key, {_UPPER_HEX_CONTROLS}) "
        f"OR (x.value.value = 'string_value' AND match(x.value.string_value, {_UPPER_HEX_CONTROLS}))"
    )
    return (
        f"(arrayExists(kv -> kv.value.value IN ('array_value', 'kvlist_value') AND ("
        f"arrayExists(x -> {nested} OR {upper_hex}, {items}) "
        f"OR arrayExists(x -> {nested_kv} OR {upper_hex_kv}, {pairs}) "
        f"OR arrayUniq(arrayMap(x -> x.key, {pairs})) != length({pairs})), {expr}) "
        f"OR arrayUniq(arrayMap(kv -> kv.key, {expr})) != length({expr}))"
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
SETTINGS format_schema = {{schema:String}}, input_format_protobuf_oneof_presence = 1,
    output_format_json_escape_forward_slashes = 0
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
