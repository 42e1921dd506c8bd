"""An operator's Pause, Resume and Cancel on live runs (issue 17, item 4).

Runs execute in another thread on a store of their own, and the operator acts through another
connection to the same control database (SQLite here; PostgreSQL in the conformance test), so the
request reaches the execution only through the database, as it would from another process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import omium
from omium.errors import ConflictError, NotFoundError
from omium.recovery import actions, supervise
from omium.recovery.policy import Policy
from omium.recovery.supervisor import Outcome
from omium.recovery.worker import Worker, enqueue, submit
from omium.sdk import runs
from omium.sdk.sql import SqlStore
from omium.sdk.sql.store import open_control_store
from omium.sdk.stop import RunStopped
from omium.sdk.store import RunRecord, StepRecord, now_us


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two stores on one control database: the executing process's and the operator's."""
    path = tmp_path / "control.db"
    executor, operator = open_control_store(path), open_control_store(path)
    yield executor, operator
    executor.close()
    operator.close()


class Gate:
    """Holds a step until the test lets it go (no timing: the test waits on events)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released the step"


def _flow(name: str, gate: Gate, ran: list[int], *, hold_at: int = 1) -> Callable[..., Any]:
    @omium.step(name=f"{name}_work")
    def work(i: int) -> int:
        ran.append(i)
        if i == hold_at:
            gate.hold()
        return i * 10

    @omium.workflow(name=name)
    def flow(n: int) -> list[int]:
        return [work(i) for i in range(n)]

    return flow


def _in_thread(fn: Callable[[], Outcome]) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []

    def target() -> None:
        try:
            got.append(fn())
        except BaseException as error:  # the test asserts on it
            got.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, got


def test_a_running_run_paused_from_another_connection_stops_at_its_next_call_and_resumes(
    two: tuple[SqlStore, SqlStore],
) -> None:
    executor, operator = two
    gate, ran = Gate(), list[int]()
    flow = _flow("act_pause_flow", gate, ran)
    thread, got = _in_thread(lambda: supervise(flow, 4, run_id="p-1", store=executor))
    assert gate.entered.wait(30)
    asked = actions.pause("p-1", store=operator, actor="alice", reason="checking the vendor")
    assert (asked.status, asked.effect) == ("running", "requested")
    assert operator.get_run("p-1").status == "running"  # it takes effect at the next call
    gate.release.set()
    thread.join(30)
    (outcome,) = got
    assert isinstance(outcome, Outcome) and outcome.status == "paused", outcome
    assert ran == [0, 1]  # the call in flight completed; the next one never executed
    run = operator.get_run("p-1")
    assert run.status == "paused" and run.attributes["paused_by"] == "alice"
    assert [(s.position, s.status) for s in operator.steps("p-1")] == [(0, "completed"), (1, "completed")]
    held = operator.lease("p-1")
    assert held is not None and held.lease_until == 0  # the run holds no process
    kinds = [(e.kind, e.actor) for e in operator.events("p-1")]
    assert kinds == [("pause_requested", "alice"), ("paused", "alice")]
    assert "paused by operator" in operator.events("p-1")[-1].reason
    # Nothing resumes it but an operator: a stale command and a direct call both refuse.
    with pytest.raises(RunStopped, match="paused by alice"):
        runs.run(flow, 4, run_id="p-1", store=executor)
    with pytest.raises(ConflictError, match="paused by alice: resume it first"):
        supervise(flow, 4, run_id="p-1", store=executor)

    resumed = actions.resume("p-1", store=operator, actor="bob")
    assert (resumed.status, resumed.effect) == ("queued", "queued")
    worker = Worker(operator, {"act_pause_flow": flow}, name="w", sleep=lambda s: None)
    assert worker.run_until_idle() == 1
    run = operator.get_run("p-1")
    assert run.status == "completed" and run.attributes["paused_by"] == ""
    assert runs.run(flow, 4, run_id="p-1", store=operator) == [0, 10, 20, 30]
    assert ran == [0, 1, 2, 3]  # calls 0 and 1 were answered from the recording
    # One resume, the operator's (the worker that resumed it does not audit it again).
    assert [e.kind for e in operator.events("p-1")] == ["pause_requested", "paused", "resumed"]
    assert operator.events("p-1")[-1].actor == "bob"


def test_a_running_run_cancelled_ends_at_its_next_call_and_is_never_resumed(
    two: tuple[SqlStore, SqlStore],
) -> None:
    executor, operator = two
    gate, ran = Gate(), list[int]()
    flow = _flow("act_cancel_flow", gate, ran, hold_at=2)
    thread, got = _in_thread(lambda: supervise(flow, 5, run_id="c-1", store=executor))
    assert gate.entered.wait(30)
    asked = actions.cancel("c-1", store=operator, actor="carol")
    assert asked.effect == "requested"
    with pytest.raises(ConflictError, match="being cancelled already"):
        actions.pause("c-1", store=operator)
    gate.release.set()
    thread.join(30)
    (outcome,) = got
    assert isinstance(outcome, Outcome) and outcome.status == "cancelled", outcome
    assert ran == [0, 1, 2]
    run = operator.get_run("c-1")
    assert (run.status, run.attributes["cancelled_by"]) == ("cancelled", "carol")
    assert [e.kind for e in operator.events("c-1")] == ["cancel_requested", "cancelled"]
    # Never resumed: not by an action, not by a command, not by calling it again.
    for act in (actions.resume, actions.cancel, actions.pause):
        with pytest.raises(ConflictError, match="is cancelled \\(it has finished\\)"):
            act("c-1", store=operator)
    with pytest.raises(ConflictError, match="was cancelled"):
        runs.run(flow, 5, run_id="c-1", store=operator)
    enqueue(operator, "c-1", "resume")
    worker = Worker(operator, {"act_cancel_flow": flow}, name="w", sleep=lambda s: None)
    command = worker.run_once()
    assert command is not None and command.status == "failed" and "was cancelled" in command.result
    assert ran == [0, 1, 2] and operator.get_run("c-1").status == "cancelled"


def test_a_run_nobody_executes_is_paused_and_cancelled_at_once(two: tuple[SqlStore, SqlStore]) -> None:
    """A queued run (its worker has not started it) is held, then cancelled while paused."""
    _, operator = two
    gate, ran = Gate(), list[int]()
    gate.release.set()
    flow = _flow("act_queued_flow", gate, ran)
    submit(operator, "act_queued_flow", 3, run_id="q-1")
    paused = actions.pause("q-1", store=operator, actor="dan")
    assert (paused.status, paused.effect) == ("paused", "done")
    worker = Worker(operator, {"act_queued_flow": flow}, name="w", sleep=lambda s: None)
    start = worker.run_once()  # the queued start is refused: the run waits for an operator
    assert start is not None and start.status == "failed" and "paused by dan" in start.result
    assert ran == [] and operator.get_run("q-1").status == "paused"
    with pytest.raises(ConflictError, match="is paused: only a running, queued or rolled-back run"):
        actions.pause("q-1", store=operator)
    cancelled = actions.cancel("q-1", store=operator, actor="dan")
    assert (cancelled.status, cancelled.effect) == ("cancelled", "done")
    run = operator.get_run("q-1")
    assert run.status == "cancelled" and run.attributes["paused_by"] == ""
    assert [e.kind for e in operator.events("q-1")] == ["paused", "cancelled"]
    assert all("no process was executing it" in e.reason for e in operator.events("q-1"))


def test_a_run_whose_executor_died_is_paused_at_once(two: tuple[SqlStore, SqlStore]) -> None:
    """A 'running' run whose lease ran out (its process is gone) has nobody to ask."""
    _, operator = two
    operator.create_run(RunRecord("dead-1", "act_dead_flow", status="running"))
    taken = operator.acquire_lease("dead-1", "elsewhere:1:gone", 0.001)
    while now_us() <= taken.lease_until:  # until it has run out
        time.sleep(0.001)
    assert actions.pause("dead-1", store=operator).effect == "done"
    assert operator.get_run("dead-1").status == "paused"


def test_unknown_runs_and_finished_runs_are_refused_with_the_reason(two: tuple[SqlStore, SqlStore]) -> None:
    executor, operator = two
    gate, ran = Gate(), list[int]()
    gate.release.set()
    flow = _flow("act_done_flow", gate, ran)
    assert runs.run(flow, 2, run_id="done-1", store=executor) == [0, 10]
    for act in (actions.pause, actions.resume, actions.cancel):
        with pytest.raises(NotFoundError, match="no run 'nope'"):
            act("nope", store=operator)
        with pytest.raises(ConflictError, match="is completed \\(it has finished\\)"):
            act("done-1", store=operator)
    with pytest.raises(ValueError, match="an action is one of pause, resume, cancel"):
        actions.act("done-1", "explode", store=operator)
    assert operator.events("done-1") == []  # a refused action changes nothing, audits nothing


def test_concurrent_agents_of_one_run_are_paused_at_their_next_calls(two: tuple[SqlStore, SqlStore]) -> None:
    executor, operator = two
    entered = {"a": threading.Event(), "b": threading.Event()}
    release = threading.Event()
    completed: list[tuple[str, int]] = []

    @omium.step(name="act_think")
    async def think(who: str, i: int) -> str:
        if i == 1:
            entered[who].set()
            await asyncio.to_thread(release.wait, 30)
        completed.append((who, i))
        return f"{who}{i}"

    @omium.agent(name="agent_a")
    async def agent_a() -> list[str]:
        return [await think("a", i) for i in range(4)]

    @omium.agent(name="agent_b")
    async def agent_b() -> list[str]:
        return [await think("b", i) for i in range(4)]

    @omium.workflow(name="act_gather_flow")
    async def flow() -> list[list[str]]:
        return list(await asyncio.gather(agent_a(), agent_b()))

    thread, got = _in_thread(lambda: supervise(flow, run_id="g-1", store=executor))
    assert entered["a"].wait(30) and entered["b"].wait(30)
    assert actions.pause("g-1", store=operator, actor="erin").effect == "requested"
    release.set()
    thread.join(30)
    (outcome,) = got
    assert isinstance(outcome, Outcome) and outcome.status == "paused", outcome
    # Neither agent went past the call it was in when the pause came.
    assert not [c for c in completed if c[1] >= 2], completed
    assert operator.get_run("g-1").status == "paused"
    actions.resume("g-1", store=operator, actor="erin")
    worker = Worker(operator, {"act_gather_flow": flow}, name="w", sleep=lambda s: None)
    assert worker.run_until_idle() == 1
    assert operator.get_run("g-1").status == "completed"
    assert runs.run(flow, run_id="g-1", store=operator) == [
        [f"a{i}" for i in range(4)],
        [f"b{i}" for i in range(4)],
    ]
    # Every call's body completed once over the pause and the resume: nothing completed ran again.
    assert Counter(completed) == Counter((w, i) for w in "ab" for i in range(4)), completed


def test_a_run_paused_after_a_failure_is_resumed_by_an_operator(two: tuple[SqlStore, SqlStore]) -> None:
    _, store = two
    ran: list[int] = []
    broken = {"yes": True}

    @omium.step(name="act_fragile")
    def fragile(i: int) -> int:
        ran.append(i)
        if i == 2 and broken["yes"]:
            raise RuntimeError("the vendor is down")
        return i

    @omium.workflow(name="act_fragile_flow")
    def flow() -> int:
        return sum(fragile(i) for i in range(4))

    policy = Policy.from_yaml(
        "rollback_triggers: {exception: [RuntimeError]}\nrecovery_actions: {await_human_review: true}\n"
        "retry_policy: {max_retries: 0}"
    )
    assert supervise(flow, run_id="f-1", store=store, policy=policy).status == "paused"
    assert store.get_run("f-1").attributes["awaiting"] == "review"
    broken["yes"] = False  # the vendor is back
    assert actions.resume("f-1", store=store, actor="frank").status == "queued"
    Worker(store, {"act_fragile_flow": flow}, name="w", sleep=lambda s: None).run_until_idle()
    run = store.get_run("f-1")
    assert run.status == "completed" and run.attributes["awaiting"] == ""
    assert ran == [0, 1, 2, 2, 3]  # the failed call again, the completed ones not
    kinds = [e.kind for e in store.events("f-1")]
    assert kinds[-2:] == ["resumed", "completed"] and kinds.count("resumed") == 1
    assert not [e for e in store.events("f-1") if e.kind == "reviewed"]  # a resume, not an approval


def test_stop_requests_are_a_compare_and_set_on_the_live_lease(postgres_url: str, tmp_path: Path) -> None:
    """On PostgreSQL and SQLite: a request reaches only the lease of the fence asked, while it is
    live; a recorded call's write answers with it; a new acquisition clears it."""
    for url in (postgres_url, str(tmp_path / "cas.db")):
        store = open_control_store(url)
        try:
            store.create_run(RunRecord("cas-1", "w"))
            first = store.acquire_lease("cas-1", "h1", 30)
            step = StepRecord("cas-1", 0, "step", "s", "completed", fence=first.fence)
            assert store.record_call(step, {}) is None
            assert store.request_stop("cas-1", first.fence + 1, "pause", "op") is None  # not its fence
            with pytest.raises(ValueError, match="a stop request is one of"):
                store.request_stop("cas-1", first.fence, "explode", "op")
            asked = store.request_stop("cas-1", first.fence, "pause", "op")
            assert asked is not None and (asked.stop, asked.stop_by) == ("pause", "op")
            later = StepRecord("cas-1", 1, "step", "s", "completed", fence=first.fence)
            assert store.record_call(later, {b"k".hex(): b"v"}) == ("pause", "op")
            assert store.renew_lease("cas-1", "h1", first.fence, 30).stop == "pause"
            store.release_lease("cas-1", "h1", first.fence)
            assert store.request_stop("cas-1", first.fence, "cancel", "op") is None  # released
            second = store.acquire_lease("cas-1", "h2", 30)
            assert (second.stop, store.lease("cas-1").stop) == ("", "")  # type: ignore[union-attr]
        finally:
            store.close()


def test_a_rollback_of_a_paused_run_is_audited_as_a_rollback_not_an_approval() -> None:
    from omium.examples.company_x import workflow as company_x
    from omium.sdk.store import MemoryStore

    store = MemoryStore()
    company_x.seed_customer(store, "rb-1")
    submit(store, "onboard_customer", "rb-1", "hallucination", run_id="rb-1")
    worker = Worker(store, {"onboard_customer": company_x.onboard_customer}, name="w", sleep=lambda s: None)
    worker.run_until_idle()
    assert store.get_run("rb-1").status == "paused"
    first = store.checkpoints("rb-1")[0].name
    fix = {"terms_generator.prompt": company_x.FIXED_PROMPT}
    enqueue(store, "rb-1", "retry", checkpoint=first, edits=fix, reviewer="dana")
    worker.run_until_idle()
    assert store.get_run("rb-1").status == "completed"
    mine = [(e.kind, e.attributes.get("decision", "")) for e in store.events("rb-1") if e.actor == "dana"]
    assert ("rolled_back", "") in mine and ("edited", "") in mine
    assert not [m for m in mine if m == ("reviewed", "approve")], mine
