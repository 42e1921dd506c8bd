"""Company X customer onboarding: KYC verification -> credit scoring -> terms -> email delivery.

Four agents hand typed data to each other through :class:`omium.Consensus`, with checkpoints
between them, a transaction around sending, and the recovery policy in ``policy.yaml``. The model
is scripted (:class:`OnboardingLLM`) with the variety of a real one; each execution's
``scenario`` chooses what goes wrong:

* ``ok`` — nothing.
* ``transient`` — the customer database fails twice; the tool's retry absorbs it.
* ``flaky_hallucination`` — the terms model offers 0% APR once; the guard catches it, the run is
  rolled back to the credit-score checkpoint and the retry passes.
* ``hallucination`` — the terms model offers 0% APR until its prompt says otherwise: caught
  twice, so the run is paused for a person to fix the prompt (the user's "Day 5").
* ``unsupported_claim`` — the model promises "guaranteed approval" once: the detector catches it.
* ``stale`` — the CRM renames the customer after KYC handed off: the hand-off is stale, the run is
  rolled back to before KYC and redone with the new name.
* ``race`` — fulfilment updates the same order while the email agent does: compare-and-set keeps
  both changes.
* ``high_value`` — the offer's credit line is above $10K: it waits for approval.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from pydantic import BaseModel

from omium import (
    Checkpoint,
    Consensus,
    SharedState,
    Transaction,
    agent,
    agent_config,
    llm_call,
    tool,
    workflow,
)
from omium.sdk.context import current, idempotency_key
from omium.sdk.guards import Detector, guard, high_value
from omium.sdk.llm import LLMResponse, Message
from omium.sdk.retry import RetryPolicy
from omium.sdk.serde import dumps

SCENARIOS = (
    "ok",
    "transient",
    "flaky_hallucination",
    "hallucination",
    "unsupported_claim",
    "stale",
    "race",
    "high_value",
)
TERMS_PROMPT = "You write credit card terms as JSON: apr (percent), credit_limit (USD), term_months, summary."
FIXED_PROMPT = TERMS_PROMPT + " APR MUST be 2.5%-8.5%."


class KYCData(BaseModel):
    """What KYC verification hands to credit scoring."""

    customer_id: str
    customer_name: str
    income: int
    verified: bool


class CreditScore(BaseModel):
    """What credit scoring hands to the terms generator."""

    customer_id: str
    customer_name: str
    score: int
    income: int


class Terms(BaseModel):
    """What the terms generator hands to email delivery."""

    customer_id: str
    customer_name: str
    apr: float
    credit_limit: int
    term_months: int
    summary: str


# --- the outside world: a customer database, a CRM and a mail server (in process, for the demo)
class World:
    """External systems. The mail server de-duplicates by idempotency key, as real ones do."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outbox: dict[str, dict[str, Any]] = {}  # idempotency key -> email
        self.send_attempts: Counter[str] = Counter()  # customer -> times send_email really ran
        self.db_failures: Counter[str] = Counter()
        self.renamed: set[str] = set()

    def emails_to(self, customer_id: str) -> list[dict[str, Any]]:
        """Emails delivered to a customer."""
        return [e for e in self.outbox.values() if e["customer_id"] == customer_id]


WORLD = World()


class OnboardingLLM:
    """A scripted model with a real one's variety, keyed by what the prompt asks."""

    model = "company-x-scripted"
    provider = "omium.examples"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def complete(self, messages: list[Message], **params: Any) -> LLMResponse:
        system = str(messages[0]["content"])
        request = json.loads(str(messages[-1]["content"]))
        with self._lock:
            key = f"{request['task']}:{request['customer_id']}"
            self.calls[key] += 1
            seen = self.calls[key]
        if request["task"] == "verify":
            text = json.dumps({"verified": True, "notes": f"documents of {request['customer_name']} match"})
        else:
            text = json.dumps(self._terms(request, system, seen))
        return LLMResponse(
            text=text, model=self.model, input_tokens=len(system.split()) + 40, output_tokens=60
        )

    @staticmethod
    def _terms(request: dict[str, Any], system: str, seen: int) -> dict[str, Any]:
        score, income, scenario = request["score"], request["income"], request["scenario"]
        apr = round(8.4 - (score - 300) / 550 * 5.5, 2)
        limit = 25_000 if scenario == "high_value" else min(9_500, max(1_000, income // 10 // 500 * 500))
        summary = f"{apr}% APR, ${limit:,} credit line"
        told = "APR MUST be 2.5%-8.5%" in system
        if (scenario == "hallucination" and not told) or (scenario == "flaky_hallucination" and seen == 1):
            apr, summary = 0.0, "0% APR forever, no fees"  # the hallucination
        if scenario == "unsupported_claim" and seen == 1:
            summary += " with guaranteed approval and no credit check"
        return {"apr": apr, "credit_limit": limit, "term_months": 36, "summary": summary}


MODEL = OnboardingLLM()

# A hallucination check: the model may not promise what Company X never offers.
UNSUPPORTED_CLAIMS = Detector(
    "unsupported_claim",
    "hallucination_detected",
    lambda call: (
        "the model promised guaranteed approval"
        if "guaranteed approval" in getattr(call.result, "text", "") and call.agent == "terms_generator"
        else None
    ),
)


# --- tools
@tool(
    retry=RetryPolicy(max_attempts=4, initial_interval=0.02, maximum_interval=0.1, non_retryable=(KeyError,))
)
def fetch_customer(customer_id: str, scenario: str) -> dict[str, Any]:
    """The customer database (fails twice for the ``transient`` scenario)."""
    with WORLD.lock:
        if scenario == "transient" and WORLD.db_failures[customer_id] < 2:
            WORLD.db_failures[customer_id] += 1
            raise ConnectionError("customer database timed out")
    number = int(customer_id.rsplit("-", 1)[-1]) if customer_id.rsplit("-", 1)[-1].isdigit() else 7
    return {"customer_id": customer_id, "income": 40_000 + number * 7_919 % 110_000}


@tool
def crm_rename(customer_id: str, new_name: str) -> bool:
    """The CRM renames a customer (once): other agents' reads of the name go stale."""
    customers = SharedState("customers")
    profile = customers.get(customer_id) or {}
    if profile.get("name") == new_name:
        return False
    customers_store = current().store
    latest = customers_store.read_state("customers", customer_id)
    value = customers_store.put_blob(dumps({**profile, "name": new_name}))
    customers_store.write_state(
        "customers", customer_id, latest.version if latest else 0, value, writer="crm"
    )
    return True


@tool
def fulfilment_touch(order_id: str) -> None:
    """Fulfilment (another service) updates the order at the same moment, several times."""
    store = current().store

    def touch() -> None:
        for i in range(5):
            while True:
                latest = store.read_state("orders", order_id)
                old = json.loads(store.get_blob(latest.value_hash)) if latest else {}
                new = {**old, "packing_slip": i + 1}
                try:
                    store.write_state(
                        "orders", order_id, latest.version if latest else 0, store.put_blob(dumps(new))
                    )
                    break
                except Exception:  # a conflict: read again
                    continue

    threading.Thread(target=touch, daemon=True).start()


@tool
def send_email(customer_id: str, to: str, body: str) -> str:
    """The mail server: delivers once per idempotency key."""
    key = idempotency_key()
    with WORLD.lock:
        WORLD.send_attempts[customer_id] += 1
        WORLD.outbox.setdefault(key, {"customer_id": customer_id, "to": to, "body": body})
    return key


@tool
def record_offer(customer_id: str, apr: float) -> str:
    """The CRM notes the offer."""
    return f"offer:{customer_id}:{apr}"


# --- agents
@agent
def kyc_verification_agent(consensus: Consensus, customer_id: str, scenario: str) -> None:
    """Checks identity documents and hands verified data to credit scoring."""
    record = fetch_customer(customer_id, scenario)
    profile = SharedState("customers").get(customer_id)
    verdict = json.loads(
        llm_call(
            MODEL,
            [
                {"role": "system", "content": "You verify identity documents."},
                {
                    "role": "user",
                    "content": json.dumps(
                        {"task": "verify", "customer_id": customer_id, "customer_name": profile["name"]}
                    ),
                },
            ],
        ).text
    )
    consensus.send(
        "credit_scorer",
        KYCData(
            customer_id=customer_id,
            customer_name=profile["name"],
            income=record["income"],
            verified=verdict["verified"],
        ),
        schema=KYCData,
    )


@agent
def crm_sync_agent(customer_id: str) -> None:
    """Upstream: the CRM corrects the customer's name."""
    crm_rename(customer_id, "Jane Doe-Smith")


@agent
def credit_scorer(consensus: Consensus) -> None:
    """Scores the verified customer."""
    kyc = consensus.get("kyc_verification_agent", schema=KYCData)
    score = max(300, min(850, 300 + kyc.income // 250))
    consensus.send(
        "terms_generator",
        CreditScore(
            customer_id=kyc.customer_id, customer_name=kyc.customer_name, score=score, income=kyc.income
        ),
        schema=CreditScore,
        constraints={"score": {"min": 300, "max": 850}},
    )


@agent(config={"prompt": TERMS_PROMPT})
def terms_generator(consensus: Consensus, scenario: str) -> None:
    """Writes the offer's terms with the model; APR must be within Company X's range."""
    score = consensus.get("credit_scorer", schema=CreditScore)
    response = llm_call(
        MODEL,
        [
            {"role": "system", "content": agent_config()["prompt"]},
            {
                "role": "user",
                "content": json.dumps(
                    {
                        "task": "terms",
                        "customer_id": score.customer_id,
                        "score": score.score,
                        "income": score.income,
                        "scenario": scenario,
                    }
                ),
            },
        ],
    )
    terms = json.loads(response.text)
    guard(
        2.5 <= terms["apr"] <= 8.5,
        f"APR {terms['apr']}% is outside 2.5%-8.5%",
        name="apr_in_range",
        evidence={"apr": terms["apr"], "summary": terms["summary"], "allowed": "2.5%-8.5%"},
    )
    high_value(terms["credit_limit"], "credit line offer")
    with Checkpoint("terms_generated"):
        pass
    consensus.send(
        "email_sender",
        Terms(customer_id=score.customer_id, customer_name=score.customer_name, **terms),
        schema=Terms,
        constraints={"apr": {"min": 2.5, "max": 8.5}},
    )


@agent
def email_sender(consensus: Consensus, order_id: str, scenario: str) -> str:
    """Sends the offer, and marks the order."""
    terms = consensus.get("terms_generator", schema=Terms)
    if scenario == "race":
        fulfilment_touch(order_id)
    SharedState("orders").update(order_id, lambda order: {**(order or {}), "status": "offer_sent"})
    with Transaction("offer_sent"):
        body = f"Dear {terms.customer_name}, your offer: {terms.summary}."
        key = send_email(terms.customer_id, f"{terms.customer_id}@example.com", body)
        record_offer(terms.customer_id, terms.apr)
    return key


@workflow(policy="policy.yaml")
def onboard_customer(customer_id: str, scenario: str = "ok") -> dict[str, Any]:
    """Onboard one customer; returns the offer sent."""
    consensus = Consensus(timeout=10)
    # An empty checkpoint marks a consistent point between agents: what ran before it is kept.
    with Checkpoint("application_received"):
        pass
    kyc_verification_agent(consensus, customer_id, scenario)
    with Checkpoint("kyc_verified"):
        pass
    if scenario == "stale":
        crm_sync_agent(customer_id)
    credit_scorer(consensus)
    with Checkpoint("credit_scored"):
        pass
    terms_generator(consensus, scenario)
    email = email_sender(consensus, f"order-{customer_id}", scenario)
    return {"customer_id": customer_id, "email": email}


def seed_customer(store: Any, customer_id: str, name: str = "Jane Smith") -> None:
    """Put the customer's profile in shared state (what the CRM holds before onboarding)."""
    if store.read_state("customers", customer_id) is None:
        store.write_state("customers", customer_id, 0, store.put_blob(dumps({"name": name})), writer="crm")


__all__ = [
    "FIXED_PROMPT",
    "MODEL",
    "SCENARIOS",
    "UNSUPPORTED_CLAIMS",
    "WORLD",
    "CreditScore",
    "KYCData",
    "OnboardingLLM",
    "Terms",
    "onboard_customer",
    "seed_customer",
]
