"""Attribute values are stored as the contrib exporter's ``pcommon.Value.AsString()`` spells them.

The expected strings were printed by Go itself (encoding/json and strconv, with pcommon's
``float64AsString`` logic), except ``\\b`` and ``\\f`` inside JSON strings: Go 1.22 and later write
them as ``\\b`` and ``\\f`` (encode.go ``appendString``), as the collector's current builds do.
"""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from omium.warehouse.otlp_rows import _any_value_str, go_float

GO_FLOATS = [
    (1e-12, "1e-12"),
    (1e-7, "1e-7"),
    (2.5e-6, "0.0000025"),
    (0.1, "0.1"),
    (1 / 3, "0.3333333333333333"),
    (123456789.123, "123456789.123"),
    (-0.0, "-0"),
    (0.0, "0"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (1e-6, "0.000001"),
    (math.nextafter(1e-6, 0), "9.999999999999997e-7"),
    (math.nextafter(1e21, 0), "999999999999999900000"),
    (1.5e-5, "0.000015"),
    (1e16, "10000000000000000"),
    (123456789012345680.0, "123456789012345680"),
    (1.0, "1"),
    (-2.5, "-2.5"),
    (9.223372036854776e18, "9223372036854776000"),
]

# Strings inside arrays and maps: quotes, backslashes, slashes, controls, <>&, separators, non-ASCII.
STRINGS = ["y/z", 'a"b\\c', "<>&", "\u2028\u2029", "é😀", "\x00\x01\x08\x0b\x0c\x1f\x7f\n\t\r", "plain", ""]
CONTROLS_JSON = '"\\u0000\\u0001\\b\\u000b\\f\\u001f\x7f\\n\\t\\r"'
STRINGS_JSON = [
    '"y/z"',
    '"a\\"b\\\\c"',
    '"\\u003c\\u003e\\u0026"',
    '"\\u2028\\u2029"',
    '"é😀"',
    CONTROLS_JSON,
    '"plain"',
    '""',
]


def _s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


@pytest.mark.parametrize(("number", "expected"), GO_FLOATS, ids=[g for _, g in GO_FLOATS])
def test_doubles_are_spelled_as_go_spells_them(number: float, expected: str) -> None:
    assert go_float(number) == expected
    assert _any_value_str(AnyValue(double_value=number)) == expected


def test_non_finite_doubles_are_pcommons_error_text() -> None:
    assert _any_value_str(AnyValue(double_value=math.nan)) == "json: unsupported value: NaN"
    assert _any_value_str(AnyValue(double_value=math.inf)) == "json: unsupported value: +Inf"
    assert _any_value_str(AnyValue(double_value=-math.inf)) == "json: unsupported value: -Inf"
    # Inside an array json.Marshal fails, and AsString returns the empty string.
    assert _any_value_str(AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=math.nan)]))) == ""


def test_scalars() -> None:
    assert _any_value_str(AnyValue(int_value=-(2**63))) == "-9223372036854775808"
    assert _any_value_str(AnyValue(int_value=2**63 - 1)) == "9223372036854775807"
    assert _any_value_str(AnyValue(bool_value=True)) == "true"
    assert _any_value_str(AnyValue(bool_value=False)) == "false"
    assert _any_value_str(AnyValue(bytes_value=b"hello\xff")) == "aGVsbG//"
    assert _any_value_str(AnyValue(bytes_value=b"")) == ""
    assert _any_value_str(AnyValue()) == ""
    assert _any_value_str(_s("a/b\n")) == "a/b\n"  # a top-level string is stored as is


def test_arrays_are_go_json() -> None:
    items = [
        AnyValue(int_value=1),
        AnyValue(double_value=2.5),
        AnyValue(double_value=1.0),
        AnyValue(double_value=1e21),
        AnyValue(double_value=1e-7),
        AnyValue(bool_value=False),
        AnyValue(bytes_value=b""),  # ByteSlice.AsRaw of empty bytes is nil: null
        AnyValue(bytes_value=b"\x00\xff"),
        AnyValue(),
        AnyValue(int_value=-(2**63)),
        AnyValue(array_value=ArrayValue()),
        AnyValue(kvlist_value=KeyValueList()),
    ] + [_s(text) for text in STRINGS]
    expected = (
        '[1,2.5,1,1e+21,1e-7,false,null,"AP8=",null,-9223372036854775808,[],{},'
        + ",".join(STRINGS_JSON)
        + "]"
    )
    assert _any_value_str(AnyValue(array_value=ArrayValue(values=items))) == expected
    assert _any_value_str(AnyValue(array_value=ArrayValue())) == "[]"


def test_maps_are_go_json_with_sorted_keys() -> None:
    pairs = [KeyValue(key=text, value=_s(text)) for text in STRINGS]
    pairs += [KeyValue(key="n", value=AnyValue()), KeyValue(key="b", value=AnyValue(int_value=1))]
    pairs.append(KeyValue(key="b", value=AnyValue(int_value=3)))  # a repeated key keeps its last value
    # As Go printed it: keys sorted as byte strings ("\u2028" after "é").
    expected = (
        '{"":"",' + CONTROLS_JSON + ":" + CONTROLS_JSON + ',"\\u003c\\u003e\\u0026":"\\u003c\\u003e\\u0026",'
        '"a\\"b\\\\c":"a\\"b\\\\c","b":3,"n":null,"plain":"plain","y/z":"y/z","é😀":"é😀",'
        '"\\u2028\\u2029":"\\u2028\\u2029"}'
    )
    assert _any_value_str(AnyValue(kvlist_value=KeyValueList(values=pairs))) == expected
    assert _any_value_str(AnyValue(kvlist_value=KeyValueList())) == "{}"


def test_nested_values() -> None:
    inner = AnyValue(array_value=ArrayValue(values=[_s("a"), AnyValue(double_value=0.1)]))
    value = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="z", value=inner),
                KeyValue(key="a", value=AnyValue(array_value=ArrayValue())),
            ]
        )
    )
    assert _any_value_str(value) == '{"a":[],"z":["a",0.1]}'
    nested = AnyValue(
        array_value=ArrayValue(values=[inner, AnyValue(array_value=ArrayValue(values=[inner]))])
    )
    assert _any_value_str(nested) == '[["a",0.1],[["a",0.1]]]'
