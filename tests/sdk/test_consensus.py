"""Hand-offs: validated before delivery, acknowledged or rejected, exactly once and in order."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from pydantic import BaseModel

import omium
from omium import Checkpoint, agent, workflow
from omium.errors import HandoffRejected, HandoffStale, HandoffTimeout
from omium.sdk import serde
from omium.sdk.consensus import Consensus, check_constraints
from omium.sdk.state import SharedState
from omium.sdk.store import HandoffRecord, MemoryStore


class KYCData(BaseModel):
    customer_name: str
    income: int


class CreditScore(BaseModel):
    value: int


def calculate_score(kyc: KYCData) -> CreditScore:
    return CreditScore(value=min(850, 300 + kyc.income // 200))


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    omium.init(store=store)
    return store


@agent
async def kyc_verification_agent(consensus: Consensus, income: int, to: str = "credit_scorer") -> None:
    await consensus.broadcast(to, output={"customer_name": "Jane Smith", "income": income}, schema=KYCData)


from omium import Consensus as PublicConsensus  # noqa: E402  (the snippet imports it from omium)

assert PublicConsensus is Consensus


# The snippet from the issue, as written (constraints on the score's value field).
@agent
async def credit_scorer(consensus: Consensus):  # type: ignore[no-untyped-def]
    kyc_data = await consensus.receive("kyc_verification_agent", schema=KYCData)
    score = calculate_score(kyc_data)
    await consensus.broadcast(
        "credit_score_agent",
        output=score,
        schema=CreditScore,
        constraints={"value": {"min": 300, "max": 850}},
    )


@agent
async def credit_score_agent(consensus: Consensus) -> int:
    score = await consensus.receive("credit_scorer", schema=CreditScore)
    return int(score.value)


@workflow
async def scoring(income: int) -> int:
    consensus = Consensus()
    await kyc_verification_agent(consensus, income)
    await credit_scorer(consensus)
    return await credit_score_agent(consensus)


def test_snippet_hands_off_validated_messages(store: MemoryStore) -> None:
    assert asyncio.run(omium.arun(scoring, 80_000, run_id="s1")) == 700
    kyc = store.handoffs("s1", "kyc_verification_agent->credit_scorer")
    score = store.handoffs("s1", "credit_scorer->credit_score_agent")
    assert [(m.seq, m.status, m.schema_name) for m in kyc] == [(0, "acked", "KYCData")]
    assert [(m.seq, m.status, m.schema_name) for m in score] == [(0, "acked", "CreditScore")]
    assert [s.kind for s in store.steps("s1")] == ["handoff_send", "handoff_receive"] * 2


@agent
async def bad_scorer(consensus: Consensus):  # type: ignore[no-untyped-def]
    await consensus.receive("kyc_verification_agent", schema=KYCData)
    await consensus.broadcast(
        "credit_score_agent",
        output=CreditScore(value=900),
        schema=CreditScore,
        constraints={"value": {"min": 300, "max": 850}},
    )


@workflow
async def bad_scoring() -> None:
    consensus = Consensus()
    await kyc_verification_agent(consensus, 80_000, to="bad_scorer")
    await bad_scorer(consensus)


def test_a_constraint_violation_is_rejected_before_delivery(store: MemoryStore) -> None:
    with pytest.raises(HandoffRejected, match="above the maximum 850") as rejected:
        asyncio.run(omium.arun(bad_scoring, run_id="s2"))
    assert "value" in rejected.value.reason
    (message,) = store.handoffs("s2", "bad_scorer->credit_score_agent")
    assert (message.status, message.reason) == ("rejected", rejected.value.reason)
    assert store.get_run("s2").status == "failed"


@workflow
def schema_mismatch() -> None:
    consensus = Consensus()
    with_agent("kyc_verification_agent", lambda: consensus.send("credit_scorer", {"customer_name": "Jane"}))
    with_agent("credit_scorer", lambda: consensus.get("kyc_verification_agent", schema=KYCData))


def with_agent(name: str, body):  # type: ignore[no-untyped-def]
    return agent(name=name)(body)()


def test_the_receiver_rejects_what_breaks_its_schema(store: MemoryStore) -> None:
    with pytest.raises(HandoffRejected, match="income"):
        omium.run(schema_mismatch, run_id="s3")
    (message,) = store.handoffs("s3", "kyc_verification_agent->credit_scorer")
    assert message.status == "rejected" and "income" in message.reason


class FaultyTransport(MemoryStore):
    """Delivery underneath hand-offs that drops, duplicates, delays and reorders messages."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.held: HandoffRecord | None = None
        self.release_lock = threading.Lock()
        self.timers: list[threading.Timer] = []
        self.faults = {"drop": 0, "duplicate": 0, "delay": 0, "reorder": 0}

    def append_handoff(self, message: HandoffRecord) -> bool:
        fault = self.rng.choice(["none", "none", "drop", "duplicate", "delay", "reorder"])
        if fault == "drop":
            self.faults["drop"] += 1
            raise ConnectionError("dropped")  # the sender's retry delivers it again
        if fault == "duplicate":
            self.faults["duplicate"] += 1
            super().append_handoff(message)
            return super().append_handoff(message)
        if fault == "delay":
            self.faults["delay"] += 1
            timer = threading.Timer(self.rng.uniform(0.01, 0.05), super().append_handoff, args=(message,))
            self.timers.append(timer)
            timer.start()
            return True
        if fault == "reorder" and self.held is None:
            self.faults["reorder"] += 1
            self.held = message  # delivered after the next one (or soon, if none follows)
            timer = threading.Timer(0.1, self._release)
            self.timers.append(timer)
            timer.start()
            return True
        delivered = super().append_handoff(message)
        self._release()
        return delivered

    def _release(self) -> None:
        with self.release_lock:
            held, self.held = self.held, None
        if held is not None:
            super().append_handoff(held)


@workflow
def chatter(count: int) -> list[int]:
    consensus = Consensus(timeout=5)
    for i in range(count):
        with_agent("producer", lambda i=i: consensus.send("consumer", {"value": i}, schema=CreditScore))
    return [
        with_agent("consumer", lambda: consensus.get("producer", schema=CreditScore).value)
        for _ in range(count)
    ]


def test_faulty_delivery_still_processes_exactly_once_in_order() -> None:
    transport = FaultyTransport(seed=5)
    assert omium.run(chatter, 40, run_id="f1", store=transport) == list(range(40))
    for timer in transport.timers:
        timer.join()
    assert all(n > 0 for n in transport.faults.values()), transport.faults
    messages = transport.handoffs("f1", "producer->consumer")
    assert [m.seq for m in messages] == list(range(40))
    assert [m.status for m in messages] == ["acked"] * 40


@workflow
def receive_then_fail(fail: bool) -> int:
    consensus = Consensus()
    with_agent("a", lambda: consensus.send("b", {"value": 1}, schema=CreditScore))
    value = with_agent("b", lambda: consensus.get("a", schema=CreditScore).value)
    if fail:
        raise RuntimeError("crash after receiving")
    return int(value)


def test_resume_neither_resends_nor_reprocesses(store: MemoryStore) -> None:
    with pytest.raises(RuntimeError):
        omium.run(receive_then_fail, True, run_id="r1")
    assert omium.run(receive_then_fail, False, run_id="r1") == 1
    (message,) = store.handoffs("r1", "a->b")
    assert (message.status, message.version) == ("acked", 2)


@workflow
def lonely() -> None:
    with_agent("b", lambda: Consensus(timeout=0.05).get("a"))


def test_a_missing_message_times_out(store: MemoryStore) -> None:
    with pytest.raises(HandoffTimeout, match="a->b"):
        omium.run(lonely, run_id="t")


def test_constraints() -> None:
    assert check_constraints(5, {"min": 1, "max": 10}) == []
    assert check_constraints({"apr": 0.0}, {"apr": {"min": 2.5, "max": 8.5}}) == [
        "apr: value 0.0 is below the minimum 2.5"
    ]
    assert check_constraints("GBP", {"allowed": ["EUR", "USD"]}) == [
        "value 'GBP' is not one of ['EUR', 'USD']"
    ]
    assert check_constraints("", {"not_empty": True}) == ["value is empty"]
    assert check_constraints(3, {"check": lambda v: v % 2 == 0 or "must be even"}) == ["must be even"]


@workflow
def stale_profile(rename: bool, accept_stale: bool) -> str:
    consensus, customers = Consensus(), SharedState("customers")

    def kyc() -> None:
        profile = customers.get("c-1")
        consensus.send("scorer", {"customer_name": profile["name"], "income": 50_000}, schema=KYCData)

    with_agent("kyc", kyc)
    if rename:  # upstream changes the customer's name after KYC handed off
        with_agent("crm", lambda: customers.update("c-1", lambda p: {**p, "name": "Jane Doe"}))
    kyc_data = with_agent("scorer", lambda: consensus.get("kyc", schema=KYCData, accept_stale=accept_stale))
    return str(kyc_data.customer_name)


def test_a_handoff_built_on_changed_state_is_stale(store: MemoryStore) -> None:
    store.write_state("customers", "c-1", 0, store.put_blob(b'{"name": "Jane Smith"}'))
    assert omium.run(stale_profile, False, False, run_id="fresh") == "Jane Smith"
    with pytest.raises(HandoffStale, match=r"customers/c-1 changed v1 -> v2") as stale:
        omium.run(stale_profile, True, False, run_id="stale")
    assert isinstance(stale.value, HandoffRejected)
    (message,) = store.handoffs("stale", "kyc->scorer")
    assert message.depends_on == {"customers/c-1": 1}
    assert message.status == "rejected" and message.reason.startswith("stale: ")
    # A receiver may choose to take it anyway.
    store.write_state("customers", "c-1", 2, store.put_blob(b'{"name": "Jane Smith"}'))
    assert omium.run(stale_profile, True, True, run_id="taken") == "Jane Smith"


sent_values: list[int] = []


@workflow
def hand_over_twice(value: int) -> int:
    consensus = Consensus(timeout=0.2)
    with_agent("a", lambda: consensus.send("b", {"value": 1}, schema=CreditScore))
    with Checkpoint("first_sent"):
        pass
    with_agent("a", lambda: consensus.send("b", {"value": value}, schema=CreditScore))
    first = with_agent("b", lambda: consensus.get("a", schema=CreditScore).value)
    second = with_agent("b", lambda: consensus.get("a", schema=CreditScore).value)
    if second < 0:
        raise ValueError("negative value")
    return int(first * 100 + second)


def test_rollback_retracts_what_the_undone_stretch_sent_and_receives_again(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="negative"):
        omium.run(hand_over_twice, -5, run_id="rb")
    omium.rollback("rb", "first_sent", store=store)
    # The first message (sent before the checkpoint) is received again; the bad one is retracted.
    assert omium.run(hand_over_twice, 7, run_id="rb") == 107
    messages = store.handoffs("rb", "a->b")
    assert [(m.seq, m.status) for m in messages] == [(0, "acked"), (1, "acked"), (2, "acked")]
    assert serde.loads(store.get_blob(messages[2].payload_hash)) == CreditScore(value=7)
