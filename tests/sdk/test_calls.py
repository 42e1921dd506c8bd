"""record_call: a framework's call recorded as a step of the run, its inputs by content address."""

from __future__ import annotations

from omium.sdk import serde
from omium.sdk.calls import record_call
from omium.sdk.context import RunContext
from omium.sdk.store import MemoryStore, RunRecord, now_us


def test_a_framework_call_is_a_step_with_its_inputs_stored() -> None:
    store = MemoryStore()
    store.create_run(RunRecord("r", "crew"))
    context = RunContext("r", "crew", store)
    started = now_us()
    step = record_call(
        context,
        position=2,
        kind="crewai.task",
        name="score credit",
        agent="credit",
        status="failed",
        inputs={"context": "KYC ok"},
        key="r:2",
        started_at=started,
        error="RuntimeError: down",
    )
    [stored] = store.steps("r")
    assert stored == step
    assert (stored.position, stored.kind, stored.status, stored.idempotency_key) == (
        2,
        "crewai.task",
        "failed",
        "r:2",
    )
    assert serde.loads(store.get_blob(stored.input_hash)) == {"context": "KYC ok"}
    assert stored.ended_at >= stored.started_at == started
