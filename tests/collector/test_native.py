"""The engine path and the Python decoder store the same spans as the same bytes.

Each test sends the same spans through the Python decoder (``to_columns`` + insert) and through
ClickHouse's own protobuf decoding (``native.INSERT_FROM_FILE``, or the writer with its engine
threshold at 0, which falls back to Python where the engine refuses), and compares every column
of every row. Values cover doubles from 1e-12 to past 1e21, int64 extremes, bools, bytes, strings
that need escaping inside JSON, arrays, maps, empty ones, and the same in resource, event and link
attributes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from omium.collector import native
from omium.collector.writer import SpanWriter
from omium.semconv import OTEL_TRACES_COLUMNS
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.otlp_rows import to_columns

FLOATS = [
    1e-12,
    1e-7,
    math.nextafter(1e-6, 0),
    1e-6,
    2.5e-6,
    1.5e-5,
    0.1,
    1 / 3,
    1.0,
    -2.5,
    123456789.123,
    1e16,
    123456789012345680.0,
    1e20,
    math.nextafter(1e21, 0),
    1e21,
    1e300,
    -0.0,
    0.0,
    5e-324,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    math.nan,
    math.inf,
    -math.inf,
]
STRINGS = [
    "plain",
    "",
    "y/z",
    'say "hi"',
    "back\\slash\\",
    "\\/",
    "<b>&amp;</b>",
    "\u2028line\u2029para",
    "é ü 中文 😀 🧑‍💻",
    "tab\tnew\nline\rcr\b\f",
    "\x00\x01\x07\x10\x19\x7f",
]
# Controls whose \u00XX escape has a hex letter: the engine path hands these to Python.
UPPER_HEX_CONTROLS = ["\x0b", "\x0e", "\x0f", "\x1a", "\x1b", "\x1f"]


def _s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _array(*values: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=list(values)))


def _map(**values: AnyValue) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in values.items()]))


def _scalars() -> list[AnyValue]:
    return (
        [AnyValue(double_value=number) for number in FLOATS if math.isfinite(number)]
        + [AnyValue(int_value=number) for number in (0, -1, 42, 2**63 - 1, -(2**63))]
        + [AnyValue(bool_value=True), AnyValue(bool_value=False)]
        + [AnyValue(bytes_value=raw) for raw in (b"", b"\x00\xff\xfe", b"hello world")]
        + [_s(text) for text in STRINGS]
        + [AnyValue()]
    )


def _attributes() -> list[KeyValue]:
    """One attribute per interesting value."""
    out = [KeyValue(key=f"double.{i}", value=AnyValue(double_value=n)) for i, n in enumerate(FLOATS)]
    out += [KeyValue(key=f"scalar.{i}", value=value) for i, value in enumerate(_scalars())]
    out += [
        KeyValue(key="array.mixed", value=_array(*_scalars())),
        KeyValue(
            key="array.ints_and_floats", value=_array(AnyValue(int_value=1), AnyValue(double_value=2.5))
        ),
        KeyValue(key="array.strings", value=_array(*[_s(text) for text in STRINGS])),
        KeyValue(key="array.empty", value=_array()),
        KeyValue(key="array.nan", value=_array(AnyValue(double_value=1.0), AnyValue(double_value=math.nan))),
        KeyValue(key="map.empty", value=_map()),
        KeyValue(key="map.nan", value=_map(x=AnyValue(double_value=-math.inf))),
        KeyValue(
            key="map.mixed",
            value=AnyValue(
                kvlist_value=KeyValueList(
                    values=[
                        KeyValue(key=text, value=value)
                        for text, value in zip(STRINGS, _scalars(), strict=False)
                    ]
                    + [
                        KeyValue(key="z", value=AnyValue()),
                        KeyValue(key="a", value=AnyValue(double_value=1e-7)),
                    ]
                )
            ),
        ),
        KeyValue(key="<key> with/slash & é", value=_s("v")),
    ]
    return out


def _request(extra: list[KeyValue] | None = None, spans: int = 3) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [KeyValue(key="service.name", value=_s("svc/é")), *_attributes()[:40]]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name, scope.scope.version = "tests", "1.0"
    for index in range(spans):
        span = scope.spans.add(
            trace_id=bytes([index + 1]) * 16,
            span_id=bytes([index + 1]) * 8,
            parent_span_id=b"" if index == 0 else b"\x01" * 8,
            name=f"span {index} é",
            kind=index % 6,
            start_time_unix_nano=1_700_000_000 * 10**9 + index,
            end_time_unix_nano=1_700_000_001 * 10**9,
        )
        span.attributes.extend(_attributes() + (extra or []))
        span.events.add(time_unix_nano=1_700_000_000 * 10**9 + 5, name="evt", attributes=_attributes())
        span.events.add(time_unix_nano=1_700_000_000 * 10**9 + 6, name="empty")
        span.links.add(
            trace_id=b"\x09" * 16, span_id=b"\x08" * 8, trace_state="a=b", attributes=_attributes()
        )
        span.status.code = index % 3
        span.status.message = "oops é"
    return request


def _rows(warehouse: ClickHouseWarehouse) -> list[dict[str, Any]]:
    """Every column of every row, strings exactly as stored."""
    return warehouse.query_rows(
        f"SELECT {', '.join(f'`{c}`' for c in OTEL_TRACES_COLUMNS)} FROM otel_traces ORDER BY SpanId"
    )


def _python_rows(warehouse: ClickHouseWarehouse, request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    warehouse.command("TRUNCATE TABLE otel_traces")
    warehouse.insert("otel_traces", to_columns(request).columns, OTEL_TRACES_COLUMNS)
    return _rows(warehouse)


def _spool(tmp_path: Path, request: ExportTraceServiceRequest) -> Path:
    body = request.SerializeToString()
    path = tmp_path / "batch.bin"
    path.write_bytes(_VarintBytes(len(body)) + body)
    return path


def _assert_same(python: list[dict[str, Any]], engine: list[dict[str, Any]]) -> None:
    assert len(python) == len(engine) > 0
    for mine, theirs in zip(python, engine, strict=True):
        for column in OTEL_TRACES_COLUMNS:
            assert mine[column] == theirs[column], column


def test_both_paths_store_the_same_bytes(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    request = _request()
    python = _python_rows(warehouse, request)
    warehouse.command("TRUNCATE TABLE otel_traces")
    warehouse.command(native.INSERT_FROM_FILE, native.insert_parameters(_spool(tmp_path, request)))
    _assert_same(python, _rows(warehouse))
    # ... and that spelling is pcommon's (spot checks; tests/warehouse/test_otlp_rows.py has the rest).
    attributes = dict(python[0]["SpanAttributes"])
    assert attributes[f"double.{FLOATS.index(1e-7)}"] == "1e-7"
    assert attributes[f"double.{FLOATS.index(2.5e-6)}"] == "0.0000025"
    assert attributes[f"double.{FLOATS.index(1e21)}"] == "1e+21"
    assert attributes[f"double.{len(FLOATS) - 3}"] == "json: unsupported value: NaN"
    assert attributes["array.ints_and_floats"] == "[1,2.5]"
    assert attributes["array.nan"] == ""
    assert attributes["array.empty"] == "[]" and attributes["map.empty"] == "{}"
    assert (
        '"y/z"' in attributes["array.strings"] and "\\u003cb\\u003e\\u0026amp;" in attributes["array.strings"]
    )
    assert dict(python[0]["ResourceAttributes"])["service.name"] == python[0]["ServiceName"] == "svc/é"
    assert dict(python[0]["Events.Attributes"][0]) == attributes
    assert dict(python[0]["Links.Attributes"][0]) == attributes


@pytest.mark.parametrize(
    "extra",
    [
        [KeyValue(key="deep", value=_array(_array(_s("a")), _s("b")))],
        [KeyValue(key="deep", value=_map(inner=_map(x=AnyValue(int_value=1))))],
        [KeyValue(key="deep", value=_array(_array()))],
        [KeyValue(key="twice", value=_s("first")), KeyValue(key="twice", value=_s("last"))],
        [
            KeyValue(
                key="map.twice",
                value=AnyValue(
                    kvlist_value=KeyValueList(
                        values=[KeyValue(key="k", value=_s("first")), KeyValue(key="k", value=_s("last"))]
                    )
                ),
            )
        ],
        [KeyValue(key="controls", value=_array(*[_s(f"ansi {c}[0m") for c in UPPER_HEX_CONTROLS]))],
        [
            KeyValue(
                key="controls",
                value=AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="\x1b", value=_s("esc"))])),
            )
        ],
    ],
    ids=[
        "array-in-array",
        "map-in-map",
        "empty-array-in-array",
        "repeated-key",
        "repeated-map-key",
        "upper-hex-controls",
        "upper-hex-control-key",
    ],
)
def test_values_the_engine_refuses_take_python_and_match(
    warehouse: ClickHouseWarehouse, tmp_path: Path, extra: list[KeyValue]
) -> None:
    request = _request(extra)
    python = _python_rows(warehouse, request)
    warehouse.command("TRUNCATE TABLE otel_traces")
    with pytest.raises(Exception, match=native.DEEP_VALUE_MARK):
        warehouse.command(native.INSERT_FROM_FILE, native.insert_parameters(_spool(tmp_path, request)))
    assert warehouse.scalar("SELECT count() FROM otel_traces") == 0
    writer = SpanWriter(warehouse, tmp_path / "spool", native_min_spans=0, writers=1)
    writer.start()
    try:
        writer.submit(request.SerializeToString(), 3).result(60)
    finally:
        writer.stop()
    assert writer.stats.fallback_batches == 1 and writer.stats.native_batches == 0
    _assert_same(python, _rows(warehouse))
    if extra[0].key == "twice":
        assert dict(python[0]["SpanAttributes"])["twice"] == "last"


def test_the_writer_takes_the_engine_path_for_these_values(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    request = _request(spans=5)
    python = _python_rows(warehouse, request)
    warehouse.command("TRUNCATE TABLE otel_traces")
    writer = SpanWriter(warehouse, tmp_path / "spool", native_min_spans=0, writers=1)
    writer.start()
    try:
        writer.submit(request.SerializeToString(), 5).result(60)
    finally:
        writer.stop()
    assert writer.stats.native_batches == 1 and writer.stats.fallback_batches == 0
    _assert_same(python, _rows(warehouse))
