"""Every control-API payload is checked before it is acknowledged: a client's mistake is a 4xx
naming the field, never a 5xx, and never a record that the warehouse refuses later (which would
hold back the outbox shipper's batch)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import inspect
import json
import random
import time
from typing import Any

import httpx
import pytest

from omium.collector.control_api import READS, WRITES
from omium.collector.control_payloads import MAX_TIMESTAMP_US, arguments_model, record_model
from omium.collector.server import RunningServer
from omium.errors import NotFoundError
from omium.sdk.remote_store import RemoteStore
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunRecord,
    StateVersion,
    StepRecord,
)
from omium.warehouse import ClickHouseWarehouse

AUTH = {"authorization": "Bearer test-token"}


def post(server: RunningServer, path: str, body: Any = None, *, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    headers = AUTH | {"content-type": "application/json"}
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)


def store_call(server: RunningServer, method: str, args: Any) -> httpx.Response:
    return post(server, f"/v1/store/{method}", {"args": args})


def run(run_id: str, **changes: Any) -> dict[str, Any]:
    return RunRecord(run_id, "wf").__dict__ | changes


def step(run_id: str, **changes: Any) -> dict[str, Any]:
    return StepRecord(run_id, 0, "tool", "t", "completed").__dict__ | changes


def test_every_store_method_has_the_arguments_of_its_signature() -> None:
    for method in READS | WRITES:
        parameters = [
            p for p in inspect.signature(getattr(CheckpointStore, method)).parameters if p != "self"
        ]
        assert list(arguments_model(method).model_fields) == parameters, method
    records = (
        RunRecord,
        StepRecord,
        CheckpointRecord,
        HandoffRecord,
        EventRecord,
        CommandRecord,
        StateVersion,
    )
    for record in records:
        assert list(record_model(record).model_fields) == [f.name for f in dataclasses.fields(record)]


BAD_STORE_CALLS = [
    # (method, args, a path the message must name)
    ("create_run", {"run": run("b1", started_at="not-a-number")}, "run.started_at"),
    ("create_run", {"run": "str"}, "run"),
    ("create_run", {"run": run("b3", started_at=10**30)}, "run.started_at"),
    ("create_run", {"run": run("b4", started_at=1.5)}, "run.started_at"),
    ("create_run", {"run": run("b5", version=-1)}, "run.version"),
    ("create_run", {"run": run("b6", attributes={"k": 1})}, "run.attributes.k"),
    ("create_run", {"run": run("b7", colour="red")}, "run.colour"),
    ("create_run", {"run": {"run_id": "b8"}}, "run.workflow"),
    ("create_run", {"run": run("b9"), "force": True}, "force"),
    ("create_run", {}, "run"),
    ("create_run", {"run": run("b10", workflow=5)}, "run.workflow"),
    ("create_run", {"run": run("b11", status=None)}, "run.status"),
    ("create_run", {"run": run("b12") | {"run_id": True}}, "run.run_id"),
    ("record_step", {"step": step("b13", position=-1)}, "step.position"),
    ("record_step", {"step": step("b14", attempt=70_000)}, "step.attempt"),
    ("record_step", {"step": step("b15", position=2**40)}, "step.position"),
    ("put_blob", {"data": "not base64!"}, "data"),
    ("put_blob", {"data": 5}, "data"),
    ("list_runs", {"limit": "10"}, "limit"),
    ("list_runs", {"limit": 2**40}, "limit"),
    ("get_blobs", {"digests": "ab"}, "digests"),
    ("update_run", {"run_id": "x", "expected_version": "1", "status": "paused"}, "expected_version"),
    ("claim_command", {"worker": "w", "lease_seconds": -1}, "lease_seconds"),
    ("claim_command", {"worker": "w", "lease_seconds": 1e300}, "lease_seconds"),
    ("append_handoff", {"message": {"run_id": "x"}}, "message.channel"),
    ("record_step", {"step": step("b16", fence=-1)}, "step.fence"),
    ("record_step", {"step": step("b17", generation=2**32)}, "step.generation"),
    ("record_step", {"step": step("b18", call_id=3)}, "step.call_id"),
    ("acquire_lease", {"run_id": "x", "holder": "", "lease_seconds": 30}, "holder"),
    ("acquire_lease", {"run_id": "x", "holder": "h", "lease_seconds": 0}, "lease_seconds"),
    ("renew_lease", {"run_id": "x", "holder": "h", "fence": "1", "lease_seconds": 30}, "fence"),
    ("release_lease", {"run_id": "x", "holder": "h"}, "fence"),
    ("write_state", {"namespace": "n", "key": "k", "expected_version": 0, "value_hash": "h", "fence": 1.0},
     "fence"),
    ("set_handoff_status", {"run_id": "x", "channel": "c", "seq": 0, "status": "acked", "fence": True}, "fence"),
]  # fmt: skip


def test_a_wrongly_typed_store_call_is_a_400_naming_the_field(server: RunningServer) -> None:
    for method, args, path in BAD_STORE_CALLS:
        response = store_call(server, method, args)
        assert response.status_code == 400, (method, args, response.text)
        assert f"{path}:" in response.json()["error"], (method, args, response.text)
    for run_id in [f"b{n}" for n in range(1, 13)]:
        with pytest.raises(NotFoundError):
            server.state.store.get_run(run_id)  # nothing was kept
    for run_id in ("b13", "b14", "b15", "b16", "b17", "b18"):
        assert server.state.store.steps(run_id) == []


BAD_BODIES = [
    b"{not json",
    b'{"args": {"run_id": "\xff\xfe"}}',  # not UTF-8
    b'{"args": {"run_id": "\\ud800"}}',  # a lone surrogate
    b'{"args": ' + b"[" * 200 + b"]" * 200 + b"}",  # nesting past the limit
    b"[]",
    b'{"args": []}',
    b'{"args": {}, "more": 1}',
    b'{"args": {"worker": "w", "lease_seconds": Infinity}}',
    b'{"args": {"worker": "w", "lease_seconds": NaN}}',
]


def test_a_body_that_is_not_a_sound_object_is_a_400(server: RunningServer) -> None:
    for raw in BAD_BODIES:
        response = post(server, "/v1/store/claim_command", raw=raw)
        assert response.status_code == 400, (raw, response.text)
        assert response.json()["error"].startswith("bad request: ")
    assert server.state.store.commands() == []


def test_review_and_command_bodies_are_checked(server: RunningServer) -> None:
    store = RemoteStore(server.url, token="test-token")
    store.create_run(RunRecord("rv", "wf"))
    store.close()
    cases: list[tuple[str, Any, str]] = [
        ("review", {"decision": 5}, "decision:"),
        ("review", {"decision": "maybe"}, "a review decision is one of"),
        ("review", {"decision": "approve", "edits": ["a.prompt"]}, "edits:"),
        ("review", {"decision": "approve", "reviewer": 7}, "reviewer:"),
        ("review", {"decision": "approve", "reason": {"a": 1}}, "reason:"),
        ("review", {"decision": "approve", "approve": True}, "approve:"),
        ("review", {}, "decision:"),
        ("review", "approve", "(body)"),
        ("commands", {"kind": "explode"}, "a command is one of"),
        ("commands", {"kind": ["resume"]}, "kind:"),
        ("commands", {"kind": "retry", "payload": "x"}, "payload:"),
        ("commands", {"kind": "retry", "payload": {"checkpoint": 5}}, "payload.checkpoint:"),
        ("commands", {"kind": "retry", "payload": {"store": 1}}, "payload.store:"),
        ("commands", {"kind": "fork", "payload": {}}, "payload.checkpoint"),
        ("commands", {"kind": "test_fix", "payload": {"edits": "x"}}, "payload.edits:"),
    ]
    for action, body, expected in cases:
        response = post(server, f"/v1/runs/rv/{action}", body)
        assert response.status_code == 400, (body, response.text)
        assert expected in response.json()["error"], (body, response.text)
    assert server.state.store.commands("rv") == []
    queued = post(server, "/v1/runs/rv/commands", {"kind": "fork", "payload": {"checkpoint": "cp"}})
    assert queued.status_code == 200 and json.loads(queued.json()["result"]["payload"]) == {
        "checkpoint": "cp"
    }
    assert post(server, "/v1/runs/nope/commands", {"kind": "replay"}).status_code == 404
    assert post(server, "/v1/runs/rv/review", {"decision": "approve"}).status_code == 409  # not paused


# --- a bounded fuzz: random mutations of valid bodies, never a 5xx, and the store keeps working
JUNK: list[Any] = [
    "not-a-number",
    "",
    "x\u0000y",
    "\ud800",
    "é" * 500,
    0,
    -1,
    1,
    2**31,
    2**32,
    2**63,
    2**64,
    10**30,
    -(10**30),
    1.5,
    1e308,
    float("nan"),
    float("inf"),
    True,
    False,
    None,
    [],
    {},
    [1, "a", None],
    {"a": {"b": [None, {"c": 1.5}]}},
    {"run_id": "nested", "workflow": "wf"},
]


# Values of the right type, at the edges: the door lets most through, and the warehouse must take them.
SAME_TYPE: dict[type, list[Any]] = {
    str: ["", "x\u0000y", "é" * 500, "'; DROP TABLE omium_runs; --", "{run_id:String}", "a\nb\\"],
    int: [0, 1, 2**16 - 1, 2**32 - 1, 2**63 - 1, MAX_TIMESTAMP_US],
    float: [0.001, 1.0, 86_400.0],
    dict: [{}, {"k": "v"}, {"a.prompt": "p"}],
    list: [[], ["x"]],
}


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def valid_bodies(n: int) -> list[tuple[str, Any]]:
    """(path, body) pairs that each succeed or fail only by the store's rules (404, 409)."""
    blob = base64.b64encode(b'"hello"').decode()
    command = CommandRecord(f"c{n}", "fz-base", "replay").__dict__
    handoff = HandoffRecord("fz-base", "a->b", n, "a", "b", "ab" * 32, depends_on={"ns/k": 1}).__dict__
    event = EventRecord(f"e{n}", "fz-base", "note", attributes={"why": "fuzz"}).__dict__
    checkpoint = CheckpointRecord("fz-base", n, "cp", 1, "ab" * 32).__dict__
    return [
        ("/v1/store/put_blob", {"args": {"data": blob}}),
        ("/v1/store/get_blob", {"args": {"digest": "ab" * 32}}),
        ("/v1/store/get_blobs", {"args": {"digests": ["ab" * 32]}}),
        ("/v1/store/create_run", {"args": {"run": run(f"fz-{n}", attributes={"a": "b"})}}),
        ("/v1/store/get_run", {"args": {"run_id": "fz-base"}}),
        ("/v1/store/update_run", {"args": {"run_id": "fz-base", "expected_version": 1, "status": "running"}}),
        ("/v1/store/list_runs", {"args": {"status": None, "limit": 5}}),
        ("/v1/store/record_step", {"args": {"step": step("fz-base", position=n)}}),
        ("/v1/store/steps", {"args": {"run_id": "fz-base"}}),
        ("/v1/store/add_checkpoint", {"args": {"checkpoint": checkpoint}}),
        ("/v1/store/checkpoints", {"args": {"run_id": "fz-base"}}),
        ("/v1/store/append_handoff", {"args": {"message": handoff}}),
        ("/v1/store/handoffs", {"args": {"run_id": "fz-base", "channel": "a->b"}}),
        ("/v1/store/set_handoff_status", {"args": {"run_id": "fz-base", "channel": "a->b", "seq": 0, "status": "acked"}}),
        ("/v1/store/read_state", {"args": {"namespace": "ns", "key": "k"}}),
        ("/v1/store/write_state", {"args": {"namespace": "ns", "key": f"k{n}", "expected_version": 0, "value_hash": "h"}}),
        ("/v1/store/record_event", {"args": {"event": event}}),
        ("/v1/store/events", {"args": {"run_id": "fz-base", "limit": 10}}),
        ("/v1/store/enqueue_command", {"args": {"command": command}}),
        ("/v1/store/commands", {"args": {"run_id": "fz-base", "status": ""}}),
        ("/v1/store/claim_command", {"args": {"worker": "w", "lease_seconds": 30, "kinds": ["none"]}}),
        ("/v1/store/renew_command", {"args": {"command_id": "c0", "worker": "w", "lease_seconds": 30}}),
        ("/v1/store/finish_command", {"args": {"command_id": "c0", "worker": "w", "status": "done"}}),
        ("/v1/store/acquire_lease", {"args": {"run_id": "fz-base", "holder": f"w{n % 2}", "lease_seconds": 0.01}}),
        ("/v1/store/renew_lease", {"args": {"run_id": "fz-base", "holder": "w0", "fence": n, "lease_seconds": 30}}),
        ("/v1/store/release_lease", {"args": {"run_id": "fz-base", "holder": "w1", "fence": n}}),
        ("/v1/store/lease", {"args": {"run_id": "fz-base"}}),
        ("/v1/store/record_step", {"args": {"step": step("fz-base", position=n, call_id=f"{n}.0", fence=n % 3)}}),
        ("/v1/runs/fz-base/review", {"decision": "approve", "edits": {"a.prompt": "x"}, "reviewer": "r"}),
        ("/v1/runs/fz-base/commands", {"kind": "retry", "payload": {"checkpoint": "cp", "edits": {}}}),
    ]  # fmt: skip


def _containers(value: Any, trail: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [trail] if isinstance(value, dict | list) and value else []
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    )
    for key, child in children:
        found += _containers(child, (*trail, key))
    return found


def mutate(body: Any, rng: random.Random) -> Any:
    body = copy.deepcopy(body)
    for _ in range(rng.choice([1, 1, 2, 3])):
        targets = _containers(body)
        if not targets or rng.random() < 0.05:
            return rng.choice([*JUNK, deep(rng.choice([10, 70]))])
        trail = rng.choice(targets)
        container = body
        for key in trail:
            container = container[key]
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        key = rng.choice(keys)
        choice = rng.random()
        if choice < 0.35 and type(container[key]) in SAME_TYPE:
            container[key] = rng.choice(SAME_TYPE[type(container[key])])
        elif choice < 0.65:
            container[key] = rng.choice([*JUNK, deep(rng.choice([3, 70]))])
        elif choice < 0.8 and isinstance(container, dict):
            del container[key]
        elif isinstance(container, dict):
            container[rng.choice(["extra", "run_id", "args", "payload", "\ud801x"])] = rng.choice(JUNK)
    return body


def test_fuzzed_control_bodies_never_5xx_and_the_shipper_keeps_shipping(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    shipper = server.state.shipper
    assert shipper is not None
    assert store_call(server, "create_run", {"run": run("fz-base")}).status_code == 200
    rng = random.Random(13)
    accepted_runs: set[str] = set()
    statuses: dict[int, int] = {}
    for n in range(400):  # enough that the 200s are many whatever the seed picks
        path, valid = rng.choice(valid_bodies(n + 1))
        body = mutate(valid, rng)
        if rng.random() < 0.03:  # bytes that are not JSON at all
            raw = json.dumps(body).encode()[: rng.randint(0, 40)] + rng.choice([b"\xff", b"{", b""])
        else:
            raw = json.dumps(body).encode()  # NaN and Infinity as JS literals; lone surrogates escaped
        response = post(server, path, raw=raw)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (path, raw[:500], response.text)
        assert "error" in response.json() or response.status_code == 200
        if response.status_code == 200 and path.endswith("/create_run"):
            accepted_runs.add(response.json()["result"]["run_id"])
    assert statuses.get(400, 0) > 100 and statuses.get(200, 0) > 20, statuses

    # Still a working store: a normal run round-trips, and what was accepted reaches the warehouse.
    remote = RemoteStore(server.url, token="test-token")
    remote.create_run(RunRecord("fz-after", "wf"))
    assert remote.get_run("fz-after").workflow == "wf"
    remote.close()
    expected = accepted_runs | {"fz-base", "fz-after"}
    deadline = time.monotonic() + 30
    while True:
        landed = {r["run_id"] for r in warehouse.query_rows("SELECT run_id FROM omium_runs FINAL")}
        if expected <= landed:
            break
        assert time.monotonic() < deadline, expected - landed
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while shipper.outbox.backlog():  # nothing accepted is held back: every fact ships
        assert time.monotonic() < deadline, shipper.outbox.pending(5)
        time.sleep(0.1)
