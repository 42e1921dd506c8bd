"""Whatever arrives at /v1/traces, the decoder never answers 5xx (and never crashes the server)."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omium.collector import sample
from omium.collector.server import RunningServer

VALID = sample.requests(1, 8, seed=3)[0]


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
