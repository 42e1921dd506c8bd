"""Pause, Resume and Cancel over the control API (issue 17, item 4): what the console and the CLI
ask, answered with the action's effect, 404 for an unknown run and 409 naming the run's state.

Two ways a run learns of a pause: a run recording through a server's control API (a remote
store) at its lease's next renewal; a worker on the control database directly, in the write of
its next recorded call. The second test asks one server while the run executes in a worker
process beside another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import omium
from omium.collector.server import RunningServer
from omium.recovery import supervise
from omium.recovery.supervisor import Outcome
from omium.recovery.worker import Worker, submit
from omium.sdk.remote_store import RemoteStore
from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_pause_resume_and_cancel_over_http(server: RunningServer) -> None:
    entered, release, ran = threading.Event(), threading.Event(), []

    @omium.step(name="http_act_work")
    def work(i: int) -> int:
        ran.append(i)
        if i == 1:
            entered.set()
            assert release.wait(30)
        return i

    @omium.workflow(name="http_act_flow")
    def flow(n: int) -> int:
        return sum(work(i) for i in range(n))

    executor = RemoteStore(server.url, token=TOKEN)
    got: list[Any] = []
    # The run records through the server's API: it learns of the pause when its lease is renewed
    # (every 0.2 s here).
    thread = threading.Thread(
        target=lambda: got.append(supervise(flow, 4, run_id="h-1", store=executor, lease_seconds=0.6)),
        daemon=True,
    )
    thread.start()
    assert entered.wait(30)
    url = f"{server.url}/v1/runs/h-1"
    assert httpx.post(f"{url}/pause", json={}).status_code == 401  # the API token, as everywhere
    bad = httpx.post(f"{url}/pause", json={"actor": 5}, headers=AUTH)
    assert bad.status_code == 400 and "actor" in bad.json()["error"]
    assert httpx.post(f"{url}/explode", json={}, headers=AUTH).status_code == 404
    asked = httpx.post(f"{url}/pause", json={"actor": "oncall", "reason": "vendor outage"}, headers=AUTH)
    assert asked.status_code == 202, asked.text
    result = asked.json()["result"]
    assert (result["status"], result["effect"]) == ("running", "requested")
    assert "at its next recorded call" in result["message"]

    # Two renewals after the request: the first one's answer (the request) reached the run.
    def lease_version() -> int:
        held = executor.lease("h-1")
        assert held is not None
        return held.version

    requested = executor.lease("h-1")
    assert requested is not None and requested.stop == "pause"
    _wait_for(lambda: lease_version() >= requested.version + 2, "two renewals")
    release.set()
    thread.join(30)
    (outcome,) = got
    assert isinstance(outcome, Outcome) and outcome.status == "paused"
    assert ran == [0, 1]
    again = httpx.post(f"{url}/pause", json={}, headers=AUTH)
    assert again.status_code == 409 and "is paused: only a running" in again.json()["error"]

    resumed = httpx.post(f"{url}/resume", json={"actor": "oncall"}, headers=AUTH)
    assert resumed.status_code == 202 and resumed.json()["result"]["effect"] == "queued"
    Worker(executor, {"http_act_flow": flow}, name="http-worker", sleep=lambda s: None).run_until_idle()
    assert executor.get_run("h-1").status == "completed" and ran == [0, 1, 2, 3]
    for action in ("pause", "resume", "cancel"):
        finished = httpx.post(f"{url}/{action}", json={}, headers=AUTH)  # the defaults
        assert finished.status_code == 409, finished.text
        assert "is completed (it has finished)" in finished.json()["error"]
        assert httpx.post(f"{server.url}/v1/runs/nope/{action}", json={}, headers=AUTH).status_code == 404
    events = httpx.post(f"{server.url}/v1/store/events", json={"args": {"run_id": "h-1"}}, headers=AUTH)
    kinds = [(e["kind"], e["actor"]) for e in events.json()["result"]]
    assert kinds == [("pause_requested", "oncall"), ("paused", "oncall"), ("resumed", "oncall")]
    executor.close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMIUM_")}
    return env | {"PYTHONPATH": str(ROOT)} | extra


@pytest.mark.integration
def test_a_pause_asked_of_one_server_stops_a_run_in_a_worker_process_beside_another(
    postgres_url: str, tmp_path: Path
) -> None:
    servers = []
    for name in ("a", "b"):
        home = tmp_path / f"server-{name}"
        home.mkdir()
        servers.append(ServerProcess(home, OMIUM_CONTROL_URL=postgres_url, OMIUM_GRPC_PORT="-1"))
    worker: subprocess.Popen[bytes] | None = None
    try:
        a, b = (s.start() for s in servers)
        store = RemoteStore(a.url, token=TOKEN)
        submit(store, "slow_order", "o-1", run_id="o-1")
        ledger = tmp_path / "ledger.jsonl"
        calls = ledger.with_suffix(".calls")
        home = tmp_path / "worker"
        home.mkdir()
        env = _env(
            OMIUM_HOME=str(home),
            OMIUM_SERVER_URL=a.url,
            OMIUM_API_TOKEN=TOKEN,
            OMIUM_CONTROL_URL=postgres_url,  # on the database directly: its calls' writes see the pause
            OMIUM_TEST_LEDGER=str(ledger),
        )
        with open(home / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "omium.cli.main", "worker", "tests.recovery.slow_workflow",
                 "--lease", "5", "--name", "wk"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip

        def executed() -> int:
            return len(calls.read_text().splitlines()) if calls.exists() else 0

        _wait_for(lambda: executed() >= 3, "the worker's first calls")
        asked = httpx.post(f"{b.url}/v1/runs/o-1/pause", json={"actor": "oncall"}, headers=AUTH)
        assert asked.status_code == 202, asked.text
        _wait_for(lambda: store.get_run("o-1").status == "paused", "the run to pause")
        recorded = store.steps("o-1")
        # Every call that started was recorded: none ran after the one the pause found in flight.
        assert executed() == len(recorded) < 10 and all(s.status == "completed" for s in recorded)

        def released() -> bool:  # just after the paused status is written
            held = store.lease("o-1")
            return held is not None and held.lease_until == 0

        _wait_for(released, "the run's lease to be released: it holds no process")
        (command,) = store.commands("o-1")
        assert command.status == "done" and json.loads(command.result)["status"] == "paused"
        assert worker.poll() is None  # the worker goes on serving other runs

        resumed = httpx.post(f"{a.url}/v1/runs/o-1/resume", json={"actor": "oncall"}, headers=AUTH)
        assert resumed.status_code == 202, resumed.text
        _wait_for(lambda: store.get_run("o-1").status == "completed", "the run to complete")
        applied = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert sorted(x["i"] for x in applied) == list(range(10))  # every effect once
        assert executed() == 10  # and no completed call executed again
        kinds = [e.kind for e in store.events("o-1")]
        assert kinds == ["pause_requested", "paused", "resumed"]
        cancelled = httpx.post(f"{b.url}/v1/runs/o-1/cancel", json={}, headers=AUTH)
        assert cancelled.status_code == 409 and "completed (it has finished)" in cancelled.json()["error"]
        store.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        for server in servers:
            server.stop()
