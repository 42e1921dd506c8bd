"""Durable runs: memoised calls, resume without repeating work, checkpoints, transactions, retries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

import omium
from omium import Checkpoint, RetryPolicy, Transaction, agent, step, tool, workflow
from omium.errors import NonDeterminismError, OutsideRunError
from omium.sdk import serde
from omium.sdk.store import MemoryStore

VALID_CURRENCIES = {"EUR", "USD"}


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    omium.init(store=store)
    return store


@dataclass
class Payment:
    amount: float
    currency: str


@dataclass
class Tx:
    id: str
    status: str


calls: list[str] = []


@tool
async def get_payment_details() -> Payment:
    calls.append("details")
    return Payment(120.0, "EUR")


@tool
async def create_transaction(payment: Payment) -> Tx:
    calls.append("create")
    return Tx(f"tx-{omium.idempotency_key()}", "pending")


@tool
async def execute_payment(tx: Tx) -> Tx:
    calls.append("execute")
    return Tx(tx.id, "completed")


# The snippet from the issue, as written.
@agent
async def payment_processor():  # type: ignore[no-untyped-def]
    with Checkpoint("payment_initiated"):
        payment = await get_payment_details()
    with Checkpoint("payment_validated"):
        assert payment.amount > 0
        assert payment.currency in VALID_CURRENCIES
    with Checkpoint("payment_prepared"):
        tx = await create_transaction(payment)
        assert tx.status == "pending"
    with Transaction("payment_committed"):  # all or nothing
        result = await execute_payment(tx)
        assert result.status == "completed"
    return result


def test_payment_snippet_runs_and_records_checkpoints(store: MemoryStore) -> None:
    calls.clear()
    result = asyncio.run(payment_processor())
    assert result.status == "completed" and result.id.startswith("tx-")
    assert calls == ["details", "create", "execute"]
    (run,) = store.list_runs()
    assert (run.workflow, run.status) == ("payment_processor", "completed")
    names = [c.name for c in store.checkpoints(run.run_id)]
    assert names == ["payment_initiated", "payment_validated", "payment_prepared", "payment_committed"]
    state = serde.loads(store.get_blob(store.checkpoint(run.run_id, "payment_initiated").state_hash))
    assert serde.loads(store.get_blob(state["outputs"]["0"])) == Payment(120.0, "EUR")
    assert [s.agent for s in store.steps(run.run_id)] == ["payment_processor"] * 3


effects: list[str] = []


@tool
def charge(customer: str) -> str:
    effects.append(f"charge {customer} {omium.idempotency_key()}")
    return "charged"


@step
def score(customer: str) -> int:
    effects.append(f"score {customer}")
    return 700


class Boom(Exception):
    pass


fail_send = {"on": True}


@tool
def send_email(customer: str, score_value: int) -> str:
    if fail_send["on"]:
        raise Boom("SMTP down")
    effects.append(f"email {customer} {score_value}")
    return "sent"


@workflow(name="runtime_onboarding")
def onboarding(customer: str) -> dict[str, object]:
    charged = charge(customer)
    value = score(customer)
    sent = send_email(customer, value)
    return {"charged": charged, "score": value, "sent": sent}


def test_resume_repeats_no_completed_call(store: MemoryStore) -> None:
    effects.clear()
    fail_send["on"] = True
    with pytest.raises(Boom):
        omium.run(onboarding, "jane", run_id="run-1")
    assert store.get_run("run-1").status == "failed"
    assert effects == ["charge jane run-1:0", "score jane"]
    fail_send["on"] = False
    result = omium.run(onboarding, "jane", run_id="run-1")
    assert result == {"charged": "charged", "score": 700, "sent": "sent"}
    assert effects == ["charge jane run-1:0", "score jane", "email jane 700"]
    assert store.get_run("run-1").status == "completed"
    # A completed run answers from the record.
    assert omium.run(onboarding, "jane", run_id="run-1") == result
    assert len(effects) == 3


@workflow
def reordered(customer: str) -> int:
    return score(customer) + len(charge(customer))


def test_a_changed_call_order_is_a_clear_non_determinism_error(store: MemoryStore) -> None:
    fail_send["on"] = True
    with pytest.raises(Boom):
        omium.run(onboarding, "ann", run_id="run-2")
    with pytest.raises(NonDeterminismError, match=r"position 0.*tool 'charge'.*step 'score'"):
        omium.run(reordered, "ann", run_id="run-2")


attempts: list[int] = []


@tool(retry=RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=0))
def flaky() -> str:
    attempts.append(1)
    if len(attempts) < 3:
        raise ConnectionError("transient")
    return "ok"


@tool(retry=RetryPolicy(max_attempts=5, initial_interval=0.001, non_retryable=(ValueError,)))
def invalid() -> str:
    attempts.append(1)
    raise ValueError("bad input")


def test_retries_with_backoff_and_non_retryable_errors(store: MemoryStore) -> None:
    attempts.clear()
    assert omium.run(lambda: flaky(), run_id="r") == "ok"
    (recorded,) = store.steps("r")
    assert (recorded.attempt, recorded.status) == (3, "completed")
    attempts.clear()
    with pytest.raises(ValueError):
        omium.run(lambda: invalid(), run_id="r2")
    assert len(attempts) == 1


def test_backoff_grows_and_caps() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_interval=1, backoff_coefficient=2, maximum_interval=10, jitter=0
    )
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 10]


undo: list[str] = []


def refund(result: str, amount: int) -> None:
    undo.append(f"refund {amount}")


@tool(compensation=refund)
def pay(amount: int) -> str:
    return f"paid {amount}"


@tool
def reserve(item: str) -> str:
    return f"reserved {item}"


@workflow
def checkout(fail: bool) -> str:
    with Transaction("order") as tx:
        reserved = reserve("book")
        tx.on_rollback(undo.append, "release book")
        paid = pay(30)
        assert not fail, "fraud check failed"
    return f"{reserved}, {paid}"


def test_failed_transaction_compensates_in_reverse_and_commits_nothing(store: MemoryStore) -> None:
    undo.clear()
    with pytest.raises(AssertionError, match="fraud"):
        omium.run(checkout, True, run_id="t1")
    assert undo == ["refund 30", "release book"]
    assert store.steps("t1") == []  # nothing inside the failed transaction is visible
    assert [c.name for c in store.checkpoints("t1")] == []


def test_committed_transaction_is_visible_and_checkpointed(store: MemoryStore) -> None:
    undo.clear()
    assert omium.run(checkout, False, run_id="t2") == "reserved book, paid 30"
    assert [s.name for s in store.steps("t2")] == ["reserve", "pay"]
    assert [c.name for c in store.checkpoints("t2")] == ["order"]
    assert undo == []


def test_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(OutsideRunError, match="no Omium run"):
        with Checkpoint("x"):
            pass
    with pytest.raises(OutsideRunError):
        omium.idempotency_key()


async_undo: list[str] = []


async def async_refund(result: str, amount: int) -> None:
    await asyncio.sleep(0)
    async_undo.append(f"refund {amount}")


@tool(compensation=async_refund)
async def apay(amount: int) -> str:
    return f"paid {amount}"


@workflow
async def async_checkout() -> str:
    async with Transaction("order"):
        await apay(10)
        await apay(20)
        raise RuntimeError("declined")


def test_async_transaction_awaits_compensations_in_reverse(store: MemoryStore) -> None:
    async_undo.clear()
    with pytest.raises(RuntimeError, match="declined"):
        asyncio.run(async_checkout())
    assert async_undo == ["refund 20", "refund 10"]


@workflow
def two_checkpoints(fail: bool) -> str:
    with Checkpoint("a"):
        charge("x")
    with Checkpoint("b"):
        if fail:
            raise Boom("crash in b")
    return "done"


def test_resume_does_not_duplicate_checkpoints(store: MemoryStore) -> None:
    with pytest.raises(Boom):
        omium.run(two_checkpoints, True, run_id="cp")
    omium.run(two_checkpoints, False, run_id="cp")
    assert [(c.seq, c.name) for c in store.checkpoints("cp")] == [(0, "a"), (1, "b")]


def test_two_different_workflows_under_one_name_are_refused() -> None:
    import types

    from omium.errors import ConfigError
    from omium.sdk.runs import registered_workflows

    @workflow(name="runtime_dup")
    def first() -> int:
        return 1

    with pytest.raises(ConfigError, match="two workflows are named 'runtime_dup'"):

        @workflow(name="runtime_dup")
        def second() -> int:
            return 2

    # The same code imported again under another module name (a copy in examples/) is the same workflow.
    source = "from omium import workflow\n@workflow(name='runtime_copy')\ndef copy() -> int:\n    return 3\n"
    for module_name in ("copy_a", "copy_b"):
        module = types.ModuleType(module_name)
        exec(compile(source, f"{module_name}.py", "exec"), module.__dict__)
    assert registered_workflows()["runtime_dup"].__omium_run__.fn is first.__omium_run__.fn  # type: ignore[attr-defined]
    assert "runtime_copy" in registered_workflows()
