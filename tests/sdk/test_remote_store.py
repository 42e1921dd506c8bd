"""The checkpoint store through the server's control API: same conformance suite, token for writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import omium
from omium import tool, workflow
from omium.collector.server import RunningServer, serving
from omium.config import Settings
from omium.errors import AuthError, FencedOut, RunBusy
from omium.sdk import runs, tracing
from omium.sdk.remote_store import RemoteStore
from omium.sdk.store import CheckpointStore, RunRecord, StepRecord
from omium.warehouse import ClickHouseWarehouse
from tests.sdk.store_conformance import StoreConformance


class TestRemoteStore(StoreConformance):
    @pytest.fixture
    def store(self, server: RunningServer) -> Iterator[CheckpointStore]:
        remote = RemoteStore(server.url, token="test-token")
        yield remote
        remote.close()


def test_reads_and_writes_need_the_token(server: RunningServer) -> None:
    anonymous = RemoteStore(server.url)
    try:
        with pytest.raises(AuthError):
            anonymous.create_run(RunRecord("x", "wf"))
        with pytest.raises(AuthError):  # runs carry prompts and customer data: reads too
            anonymous.list_runs()
    finally:
        anonymous.close()
    authorised = {"authorization": "Bearer test-token"}
    unknown = httpx.post(f"{server.url}/v1/store/drop_everything", json={"args": {}}, headers=authorised)
    assert unknown.status_code == 404


def test_lease_refusals_keep_their_kind_and_attributes_across_http(server: RunningServer) -> None:
    remote = RemoteStore(server.url, token="test-token")
    try:
        remote.create_run(RunRecord("busy", "wf"))
        old = remote.acquire_lease("busy", "host-a:1", 0.05)
        time.sleep(0.1)
        lease = remote.acquire_lease("busy", "host-b:2", 30)
        with pytest.raises(RunBusy) as busy:
            remote.acquire_lease("busy", "host-c:3", 30)
        assert (busy.value.holder, busy.value.lease_until) == ("host-b:2", lease.lease_until)
        assert "host-b:2" in str(busy.value)
        with pytest.raises(FencedOut, match="superseded by fence 2"):
            remote.record_step(StepRecord("busy", 0, "tool", "t", "completed", fence=old.fence))
        with pytest.raises(FencedOut):
            remote.renew_lease("busy", "host-a:1", old.fence, 30)
        assert remote.steps("busy") == []
        assert remote.lease("busy") == lease and remote.lease("nobody") is None
    finally:
        remote.close()

    authorised = {"authorization": "Bearer test-token"}

    def call(method: str, **args: object) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/store/{method}", json={"args": args}, headers=authorised)

    refused = call("acquire_lease", run_id="busy", holder="host-c:3", lease_seconds=30)
    assert refused.status_code == 409
    body = refused.json()
    assert (body["code"], body["holder"], body["lease_until"]) == ("run_busy", "host-b:2", lease.lease_until)
    fenced = call("update_run", run_id="busy", expected_version=1, status="paused", fence=old.fence)
    assert fenced.status_code == 409 and fenced.json()["code"] == "fenced_out"
    conflict = call("update_run", run_id="busy", expected_version=7, status="paused")
    assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"
    for bad in (
        {"run_id": "busy", "holder": "", "lease_seconds": 30},
        {"run_id": "busy", "holder": "h", "lease_seconds": 0},
        {"run_id": "busy", "holder": "h", "lease_seconds": "30"},
        {"run_id": "busy", "holder": "h"},
    ):
        assert call("acquire_lease", **bad).status_code == 400, bad
    assert call("renew_lease", run_id="busy", holder="h", fence=-1, lease_seconds=30).status_code == 400
    assert call("acquire_lease", run_id="ghost", holder="h", lease_seconds=30).status_code == 404


@tool
def greet(name: str) -> str:
    return f"hello {name}"


@workflow
def hello(name: str) -> str:
    return greet(name)


def test_scripts_beside_a_server_use_it(
    server: RunningServer, warehouse: ClickHouseWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    store = omium.init()
    try:
        assert isinstance(store, RemoteStore)
        assert omium.run(hello, "jane", run_id="via-server") == "hello jane"
        tracing._provider.force_flush()  # type: ignore[union-attr]
    finally:
        tracing._provider.shutdown()  # type: ignore[union-attr]
        tracing.configure(None)
        runs._default_store = None
        store.close()
    assert server.state.store.get_run("via-server").status == "completed"
    spans = warehouse.query_rows("SELECT SpanName FROM otel_traces FINAL WHERE RunId = 'via-server'")
    assert {r["SpanName"] for r in spans} == {"invoke_workflow hello", "execute_tool greet"}


def test_a_local_server_makes_a_token_for_local_clients(
    settings: Settings, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    local = settings.with_(api_token=None)
    with serving(local, warehouse) as running:
        token = local.token_path.read_text()
        assert len(token) > 20 and oct(local.token_path.stat().st_mode)[-3:] == "600"
        client_settings = Settings.from_env({"OMIUM_HOME": str(local.home)})
        assert client_settings.api_token == token
        remote = RemoteStore(running.url, token=client_settings.api_token)
        try:
            remote.create_run(RunRecord("tok", "wf"))
        finally:
            remote.close()
    local.token_path.unlink()
