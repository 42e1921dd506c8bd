"""A bounded fuzz pass over every door of a real ``omium serve`` (issue 13).

Random mutations of valid OTLP protobuf and JSON requests (HTTP and gRPC), of SQL strings and of
control-API bodies. Whatever arrives, the answer is never a 5xx (gRPC: never INTERNAL or
UNKNOWN), and afterwards the server still answers health, stores valid spans and runs valid
calls. Seeds are fixed, so a failure replays.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.collector import sample
from tests.conftest import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = 120  # per door; the whole module stays within about a minute
JUNK = [
    "\ud800",
    "\\ud800",  # the escape itself, as JSON text spells a lone surrogate
    "[" * 5000,
    "\x00",
    "\ufffd",
    "'",
    '"',
    "\\",
    "{",
    "[",
    "]]]]",
    "9" * 40,
    "-1",
    "1e309",
    "NaN",
    "null",
    "true",
    "é" * 5,
    "[" * 200,
    "{}",
    "😀",
]
SQL_PIECES = [
    " INTO OUTFILE '/tmp/omium-fuzz' TRUNCATE",
    " SETTINGS max_execution_time = 0",
    " FORMAT JSON",
    "; DROP TABLE otel_traces",
    " UNION ALL SELECT * FROM file('api-token')",
    " FROM url('http://127.0.0.1:9/x', CSV)",
    "KILL QUERY WHERE 1",
    "SYSTEM FLUSH LOGS",
    "SET readonly = 0",
    " WHERE sleepEachRow(1)",
    "(SELECT 1",
    " JOIN system.users",
    "{x:String}",
    "ARRAY JOIN",
    "numbers(1e12)",
    "INSERT INTO omium_runs VALUES",
    " FROM remote('127.0.0.1', system.one)",
]
VALID_SQL = [
    "SELECT count() FROM otel_traces FINAL",
    "SELECT ServiceName, count() AS n FROM otel_traces GROUP BY ServiceName ORDER BY n DESC LIMIT 5",
    "SELECT run_id, status FROM omium_runs WHERE run_id = {r:String}",
    "WITH 1 AS x SELECT x + 1",
    "SELECT toDate(now()), toDecimal64(1.5, 2), generateUUIDv4(), nan, inf",
    "SHOW TABLES",
]


def _mutate_text(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(text) + 1)
        action = rng.randrange(4)
        if action == 0:
            text = text[:i] + rng.choice(JUNK) + text[i:]
        elif action == 1:
            text = text[:i] + text[i + rng.randint(1, 8) :]
        elif action == 2:
            text = text[:i]
        else:
            j = rng.randrange(len(text) + 1)
            text = text[:i] + text[j : j + 20] + text[i:]
    return text


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        action = rng.randrange(4)
        i = rng.randrange(len(out) + 1)
        if action == 0 and out:
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif action == 1:
            out[i:i] = rng.randbytes(rng.randint(1, 16))
        elif action == 2:
            del out[i : i + rng.randint(1, 32)]
        else:
            out = out[:i]
    return bytes(out)


def _mutate_value(value: object, rng: random.Random, depth: int = 0) -> object:
    """A JSON value with one of its leaves replaced, wrongly typed, or junk added."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.8:
        key = rng.choice(list(value))
        out = dict(value)
        roll = rng.random()
        if roll < 0.15:
            del out[key]
        elif roll < 0.3:
            out[rng.choice(JUNK)] = rng.choice(JUNK)
        else:
            out[key] = _mutate_value(value[key], rng, depth + 1)
        return out
    return rng.choice([None, True, -1, 2**70, 1e308, "x", rng.choice(JUNK), [], {}, [[[]]], {"a": [1]}, 0.5])


def _no_5xx(send: Callable[[], httpx.Response], what: str) -> None:
    try:
        answer = send()
    except httpx.TimeoutException:
        pytest.fail(f"{what}: no answer")
    except httpx.HTTPError:  # a connection the server closed on a malformed request is fine
        return
    assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("fuzz")).start()
    yield server
    server.stop()


def test_otlp_http_protobuf_and_json(fuzzed: ServerProcess) -> None:
    rng = random.Random(1301)
    valid = sample.requests(2, 10, seed=5)
    message = ExportTraceServiceRequest()
    message.ParseFromString(valid[0])
    valid_json = json_format.MessageToJson(message)
    url = f"{fuzzed.url}/v1/traces"
    name = message.resource_spans[0].scope_spans[0].spans[0].name
    known = [  # cases that once answered 500, then each mutation
        valid_json.replace(json.dumps(name), '"\\ud800"', 1),
        '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ]
    with httpx.Client(timeout=30) as client:
        for text in known:
            _no_5xx(
                lambda text=text: client.post(
                    url, content=text.encode(), headers={"content-type": "application/json"}
                ),
                f"known case {text[:40]!r}",
            )
        for case in range(CASES):
            body = _mutate_bytes(rng.choice(valid), rng)
            _no_5xx(
                lambda body=body: client.post(
                    url, content=body, headers={"content-type": "application/x-protobuf"}
                ),
                f"protobuf case {case}",
            )
            text = _mutate_text(valid_json, rng)
            _no_5xx(
                lambda text=text: client.post(
                    url,
                    content=text.encode("utf-8", "surrogatepass"),
                    headers={"content-type": "application/json"},
                ),
                f"json case {case}",
            )


def test_otlp_grpc(fuzzed: ServerProcess) -> None:
    rng = random.Random(1302)
    valid = sample.requests(2, 10, seed=6)
    with grpc.insecure_channel(f"127.0.0.1:{fuzzed.grpc_port}") as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        refused = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
        for case in range(CASES):
            body = _mutate_bytes(rng.choice(valid), rng)
            try:
                export(body, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() not in refused, f"gRPC case {case}: {exc.code()} {exc.details()}"


def test_sql_strings(fuzzed: ServerProcess) -> None:
    rng = random.Random(1303)
    headers = {"authorization": f"Bearer {fuzzed.token}"}
    with httpx.Client(timeout=60, headers=headers) as client:
        for case in range(CASES + len(VALID_SQL)):
            query = VALID_SQL[case] if case < len(VALID_SQL) else rng.choice(VALID_SQL)
            if case < len(VALID_SQL):
                pass  # each valid query once as it is, answered as JSON
            elif rng.random() < 0.6:
                i = rng.randrange(len(query) + 1)
                query = query[:i] + rng.choice(SQL_PIECES) + query[i:]
            else:
                query = _mutate_text(query, rng)
            accept = (
                "application/json"
                if case < len(VALID_SQL)
                else rng.choice(["application/json", "application/vnd.apache.arrow.stream"])
            )
            body = {"query": query, "parameters": {"r": rng.choice(["x", 1, None, ["a"], "\ud800"])}}
            _no_5xx(
                lambda body=body, accept=accept: client.post(
                    f"{fuzzed.url}/v1/sql",
                    content=json.dumps(body).encode(),
                    headers={"content-type": "application/json", "accept": accept},
                ),
                f"sql case {case}: {query!r}",
            )


def test_control_api_bodies(fuzzed: ServerProcess) -> None:
    rng = random.Random(1304)
    now = int(time.time() * 1e6)
    valid: list[tuple[str, dict[str, object]]] = [
        ("/v1/store/create_run", {"args": {"run": {"run_id": "f-1", "workflow": "wf", "started_at": now}}}),
        ("/v1/store/get_run", {"args": {"run_id": "f-1"}}),
        ("/v1/store/list_runs", {"args": {"status": "running", "limit": 10}}),
        (
            "/v1/store/record_step",
            {
                "args": {
                    "step": {
                        "run_id": "f-1",
                        "position": 0,
                        "kind": "step",
                        "name": "s",
                        "status": "completed",
                    }
                }
            },
        ),
        ("/v1/store/put_blob", {"args": {"data": "aGVsbG8="}}),
        (
            "/v1/store/write_state",
            {"args": {"namespace": "n", "key": "k", "value_hash": "h", "expected_version": 0}},
        ),
        ("/v1/runs/f-1/review", {"decision": "reject", "reason": "fuzz"}),
        ("/v1/runs/f-1/commands", {"kind": "resume", "payload": {}}),
    ]
    headers = {"authorization": f"Bearer {fuzzed.token}", "content-type": "application/json"}
    with httpx.Client(timeout=30, headers=headers) as client:
        for path, body in valid[:2]:
            client.post(f"{fuzzed.url}{path}", json=body)
        for case in range(CASES * 2):
            path, body = rng.choice(valid)
            mutated = _mutate_value(body, rng)
            raw = json.dumps(mutated).encode()
            if rng.random() < 0.2:
                raw = _mutate_text(raw.decode(), rng).encode("utf-8", "surrogatepass")
            _no_5xx(
                lambda path=path, raw=raw: client.post(f"{fuzzed.url}{path}", content=raw),
                f"control case {case}",
            )


def test_the_server_still_works_afterwards(fuzzed: ServerProcess) -> None:
    # Runs last in this module: everything above must have left a working server behind.
    assert httpx.get(f"{fuzzed.url}/v1/health", timeout=5).status_code == 200
    body = sample.requests(1, 7, seed=99)[0]
    answer = httpx.post(
        f"{fuzzed.url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
    )
    assert answer.status_code == 200
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    trace_id = message.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    rows = fuzzed.sql("SELECT count() FROM otel_traces FINAL WHERE TraceId = {t:String}", t=trace_id)
    assert rows[0][0] >= 1
    headers = {"authorization": f"Bearer {fuzzed.token}"}
    created = httpx.post(
        f"{fuzzed.url}/v1/store/create_run",
        json={"args": {"run": {"run_id": "after-fuzz", "workflow": "wf"}}},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    got = httpx.post(
        f"{fuzzed.url}/v1/store/get_run", json={"args": {"run_id": "after-fuzz"}}, headers=headers
    )
    assert got.json()["result"]["run_id"] == "after-fuzz"
