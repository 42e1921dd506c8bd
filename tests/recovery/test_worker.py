"""Workers: queued runs and commands, leases, and a worker killed mid-run being replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omium.examples.company_x import workflow as company_x
from omium.recovery.audit import incidents
from omium.recovery.worker import Worker, enqueue, submit
from omium.sdk.store import MemoryStore
from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_runs_queued_runs_and_review_commands() -> None:
    store = MemoryStore()
    for customer, scenario in (("w-1", "ok"), ("w-2", "hallucination"), ("w-3", "flaky_hallucination")):
        company_x.seed_customer(store, customer)
        submit(store, "onboard_customer", customer, scenario, run_id=customer)
    assert store.get_run("w-1").status == "queued"
    worker = Worker(store, {"onboard_customer": company_x.onboard_customer}, name="w", sleep=lambda s: None)
    assert worker.run_until_idle() == 3
    assert [store.get_run(r).status for r in ("w-1", "w-2", "w-3")] == ["completed", "paused", "completed"]
    # The paused run holds no process: its command is done. A test fix, then a retry with the edit.
    fix = {"terms_generator.prompt": company_x.FIXED_PROMPT}
    tested = enqueue(store, "w-2", "test_fix", edits=fix, reviewer="carol")
    retried = enqueue(store, "w-2", "retry", edits=fix, reviewer="carol")
    assert worker.run_until_idle() == 2
    results = {c.command_id: json.loads(c.result) for c in store.commands("w-2")}
    assert results[tested.command_id]["passed"] is True, results[tested.command_id]
    assert results[retried.command_id]["status"] == "completed"
    assert company_x.WORLD.send_attempts["w-2"] == 1
    (incident,) = incidents(store, "w-2")
    assert incident.stages[-3:] == ["reviewed", "resumed", "completed"]
    assert next(e for e in incident.events if e.kind == "reviewed").actor == "carol"


def test_a_rollback_command_rolls_back_to_the_checkpoint_asked_for_and_is_audited_as_one() -> None:
    """On a paused run awaiting review and on a completed run: the run goes back to the chosen
    checkpoint (not where it stopped), and the audit trail says rolled_back, not only approve."""
    store = MemoryStore()
    for customer, scenario in (("rb-paused", "hallucination"), ("rb-done", "ok")):
        company_x.seed_customer(store, customer)
        submit(store, "onboard_customer", customer, scenario, run_id=customer)
    worker = Worker(store, {"onboard_customer": company_x.onboard_customer}, name="w", sleep=lambda s: None)
    worker.run_until_idle()
    assert [store.get_run(r).status for r in ("rb-paused", "rb-done")] == ["paused", "completed"]
    first = store.checkpoints("rb-done")[0].name
    fix = {"terms_generator.prompt": company_x.FIXED_PROMPT}
    enqueue(store, "rb-paused", "retry", checkpoint=first, edits=fix, reviewer="dana")
    enqueue(store, "rb-done", "retry", checkpoint=first, reviewer="dana")
    assert worker.run_until_idle() == 2
    for run_id in ("rb-paused", "rb-done"):
        run = store.get_run(run_id)
        assert run.status == "completed" and run.attributes["rolled_back_to"] == first, run
        rolled = [e for e in store.events(run_id) if e.kind == "rolled_back" and e.actor == "dana"]
        assert len(rolled) == 1 and rolled[0].attributes["checkpoint"] == first
    # The steps after the checkpoint ran again, in a new generation.
    assert max(s.generation for s in store.steps("rb-done")) == 1


def test_unknown_runs_and_kinds_are_refused() -> None:
    store = MemoryStore()
    with pytest.raises(Exception, match="no run 'nope'"):
        enqueue(store, "nope", "resume")
    submit(store, "onboard_customer", "x", run_id="x")
    with pytest.raises(ValueError, match="a command is one of"):
        enqueue(store, "x", "explode")
    worker = Worker(store, {}, name="empty")  # hosts nothing: the command fails with the reason
    worker.run_once()
    (command,) = store.commands("x")
    assert command.status == "failed" and "not defined here" in json.loads(command.result)["error"]


def _worker(server: ServerProcess, ledger: Path, name: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "OMIUM_SERVER_URL": server.url,
        "OMIUM_API_TOKEN": "test-token",
        "OMIUM_TEST_LEDGER": str(ledger),
        "OMIUM_HOME": str(ledger.parent / name),
        "PYTHONPATH": str(ROOT),
    }
    with open(ledger.parent / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "omium.cli.main", "worker", "tests.recovery.slow_workflow", "--lease", "1.5",
             "--name", name],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes_once(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    from omium.sdk.remote_store import RemoteStore

    server = server_process.start()
    ledger = tmp_path / "ledger.jsonl"
    store = RemoteStore(server.url, token="test-token")
    submit(store, "slow_order", "order-9", run_id="order-9")
    first = _worker(server, ledger, "worker-a")
    calls = ledger.with_suffix(".calls")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not calls.exists() or len(calls.read_text().splitlines()) < 4):
        time.sleep(0.05)
    second = _worker(server, ledger, "worker-b")  # waiting: the run is leased to worker-a
    time.sleep(0.6)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = len(calls.read_text().splitlines())
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and store.get_run("order-9").status != "completed":
            time.sleep(0.2)
        assert store.get_run("order-9").status == "completed"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    (command,) = store.commands("order-9")
    assert (command.status, command.worker, command.attempts) == ("done", "worker-b", 2)
    applied = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(a["i"] for a in applied) == list(range(10))  # every effect exactly once
    assert len({a["key"] for a in applied}) == 10
    raw = [json.loads(line) for line in calls.read_text().splitlines()]
    pids = [c["pid"] for c in raw]
    # Never both at once: worker-a's calls, then only worker-b's.
    switch = next(i for i, pid in enumerate(pids) if pid != pids[0])
    assert switch >= 4 and set(pids[switch:]) == {second.pid} and switch <= killed_at
    # worker-b did not redo what worker-a completed (at most the call in flight at the kill).
    assert {c["i"] for c in raw[switch:]} >= set(range(killed_at, 10))
    assert len(raw) - 10 <= 1
    store.close()


def test_a_worker_that_loses_its_command_stops_the_run_at_its_next_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another worker may take a command whose lease this one lost: its run must not go on here."""
    import threading

    import omium
    from omium.errors import ConflictError

    store = MemoryStore()
    ran: list[int] = []
    lost = threading.Event()

    @omium.step
    def work(i: int) -> int:
        ran.append(i)
        if i == 1:
            lost.wait(5)  # the command's renewal is refused meanwhile
            time.sleep(0.05)
        return i

    @omium.workflow(name="worker_lost_command")
    def flow() -> int:
        return sum(work(i) for i in range(4))

    def refused(*args: object, **kwargs: object) -> None:
        lost.set()
        raise ConflictError("command c is claimed by worker-b, not held by w")

    monkeypatch.setattr(store, "renew_command", refused)
    submit(store, "worker_lost_command", run_id="lost-cmd")
    worker = Worker(store, {"worker_lost_command": flow}, name="w", lease_seconds=0.3, sleep=lambda s: None)
    command = worker.run_once()
    assert command is not None and command.status == "failed"
    assert "FencedOut" in json.loads(command.result)["error"]
    assert ran == [0, 1]  # the run stopped at its next call after the loss
