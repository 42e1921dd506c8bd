"""Whatever arrives at /v1/traces or over OTLP/gRPC, the server never answers 5xx or INTERNAL,
and keeps answering afterwards."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.collector import sample
from omium.collector.otlp_grpc import EXPORT_METHOD
from omium.collector.server import RunningServer

VALID = sample.requests(1, 8, seed=3)[0]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _otlp_json(body: bytes) -> dict[str, Any]:
    """The request as OTLP/JSON (hex ids, where proto3 JSON has base64)."""
    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return document


VALID_JSON = json.dumps(_otlp_json(VALID)).encode()


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out)


mutated = st.lists(
    st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
).map(lambda edits: _mutate(VALID, edits))
truncated = st.integers(1, len(VALID) - 1).map(lambda n: VALID[:n])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "scopeSpans",
                    "spans",
                    "traceId",
                    "spanId",
                    "attributes",
                    "key",
                    "value",
                    "stringValue",
                    "kind",
                    "name",
                    "startTimeUnixNano",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | mutated | truncated)
def test_protobuf_decoder_never_5xx(server: RunningServer, body: bytes) -> None:
    response = httpx.post(
        f"{server.url}/v1/traces",
        content=body,
        headers={"content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code in (200, 400), response.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=json_values)
def test_json_decoder_never_5xx(server: RunningServer, document: object) -> None:
    response = httpx.post(
        f"{server.url}/v1/traces",
        content=json.dumps(document).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code in (200, 400), response.text


def _healthy(server: RunningServer) -> bool:
    return httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200


def _positions(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON document, in a stable order."""
    out: list[tuple[Any, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item)) if isinstance(item, list) else []
        for key in keys:
            out.append((item, key))
            stack.append(item[key])
    return out


valid_json_mutated = st.lists(
    st.tuples(st.integers(0, len(VALID_JSON) - 1), st.integers(0, 255)), min_size=1, max_size=8
).map(lambda edits: _mutate(VALID_JSON, edits))


@FUZZ
@given(body=valid_json_mutated | st.integers(1, len(VALID_JSON) - 1).map(lambda n: VALID_JSON[:n]))
def test_mutated_otlp_json_text_never_5xx(server: RunningServer, body: bytes) -> None:
    response = httpx.post(
        f"{server.url}/v1/traces", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code in (200, 400), response.text
    assert _healthy(server)


@FUZZ
@given(data=st.data())
def test_mutated_otlp_json_structure_never_5xx(server: RunningServer, data: st.DataObject) -> None:
    document = _otlp_json(VALID)
    positions = _positions(document)
    for _ in range(data.draw(st.integers(1, 4))):
        container, key = positions[data.draw(st.integers(0, len(positions) - 1))]
        container[key] = data.draw(json_values | st.text() | st.integers(-(2**70), 2**70))
    response = httpx.post(
        f"{server.url}/v1/traces",
        content=json.dumps(document).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code in (200, 400), response.text
    assert _healthy(server)


@FUZZ
@given(body=mutated | truncated)
def test_mutated_gzip_never_5xx(server: RunningServer, body: bytes) -> None:
    packed = gzip.compress(body)
    half = len(packed) // 2
    for candidate in (packed, packed[:half] + bytes([packed[half] ^ 0x5A]) + packed[half + 1 :]):
        response = httpx.post(
            f"{server.url}/v1/traces",
            content=candidate,
            headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
            timeout=30,
        )
        assert response.status_code in (200, 400), response.text


@FUZZ
@given(body=st.binary(max_size=300) | mutated | truncated)
def test_mutated_protobuf_over_grpc_never_internal(server: RunningServer, body: bytes) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        export = channel.unary_unary(
            EXPORT_METHOD, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw
        )
        try:
            export(body, timeout=30)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error  # type: ignore[attr-defined]
    assert _healthy(server)
