"""The checkpoint store through the server's control API: same conformance suite, token for writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import omium
from omium import tool, workflow
from omium.collector.server import RunningServer, serving
from omium.config import Settings
from omium.errors import AuthError
from omium.sdk import runs, tracing
from omium.sdk.remote_store import RemoteStore
from omium.sdk.store import CheckpointStore, RunRecord
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
