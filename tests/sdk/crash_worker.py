"""A workflow process for the kill -9 tests: runs many onboarding runs against the embedded store.

Side effects go to a ledger file standing in for an external system that honours idempotency
keys (as payment and email APIs do): a repeated key is recognised and not applied again, and
every raw call is logged so the test can see that work was really interrupted and redone.

    python crash_worker.py HOME LEDGER RUNS RESULTS [sequential|concurrent]

``concurrent`` runs KYC and credit scoring at the same time in two threads (omium's thread pool),
with random delays, so kills land while both are in flight and they finish in either order.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import omium
from omium import Checkpoint, Transaction, tool, workflow
from omium.config import Settings
from omium.warehouse.store import embedded_store

LEDGER = Path(sys.argv[2])


def apply_once(effect: str) -> str:
    """The external system: applies each idempotency key once, durably."""
    key = omium.idempotency_key()
    with open(LEDGER.with_suffix(".calls"), "a") as calls:
        calls.write(key + "\n")
    if LEDGER.exists():
        for line in LEDGER.read_text().splitlines():
            entry = json.loads(line)
            if entry["key"] == key:
                return str(entry["effect"])
    with open(LEDGER, "a") as ledger:
        ledger.write(json.dumps({"key": key, "effect": effect}) + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())
    time.sleep(0.004)  # widen the window between the effect and its record
    return effect


@tool
def verify_kyc(customer: str) -> str:
    return apply_once(f"kyc:{customer}")


@tool
def credit_score(customer: str) -> int:
    apply_once(f"score:{customer}")
    return 600 + sum(map(ord, customer)) % 250


@tool
def reserve_offer(customer: str, score: int) -> str:
    return apply_once(f"offer:{customer}:{score}")


@tool
def charge_fee(customer: str) -> str:
    return apply_once(f"fee:{customer}")


@tool
def send_email(customer: str, offer: str) -> str:
    return apply_once(f"email:{customer}:{offer}")


@workflow
def onboarding(customer: str) -> dict[str, object]:
    with Checkpoint("kyc_done"):
        kyc = verify_kyc(customer)
    with Checkpoint("scored"):
        score = credit_score(customer)
    offer = reserve_offer(customer, score)
    with Transaction("delivery"):
        fee = charge_fee(customer)
        sent = send_email(customer, offer)
    return {"kyc": kyc, "score": score, "offer": offer, "fee": fee, "sent": sent}


@workflow(name="team_onboarding")
def team_onboarding(customer: str) -> dict[str, object]:
    with omium.ThreadPoolExecutor(max_workers=2) as pool:
        kyc_done = pool.submit(_jittered, verify_kyc, customer)
        scored = pool.submit(_jittered, credit_score, customer)
        kyc, score = kyc_done.result(), scored.result()
    offer = reserve_offer(customer, score)
    with Transaction("delivery"):
        fee = charge_fee(customer)
        sent = send_email(customer, offer)
    return {"kyc": kyc, "score": score, "offer": offer, "fee": fee, "sent": sent}


def _jittered(fn: object, customer: str) -> object:
    time.sleep(random.uniform(0, 0.004))
    return fn(customer)  # type: ignore[operator]


def main() -> None:
    home, runs, results_path = Path(sys.argv[1]), int(sys.argv[3]), Path(sys.argv[4])
    flow = team_onboarding if sys.argv[5:] == ["concurrent"] else onboarding
    # The default embedded store: the warehouse behind the local journal.
    store = omium.init(store=embedded_store(Settings(home=home)))
    print("ready", flush=True)
    results = {}
    for index in range(runs):
        customer = f"customer-{index}"
        results[customer] = omium.run(flow, customer, run_id=f"run-{index}")
    results_path.write_text(json.dumps(results, sort_keys=True))
    store.close()


if __name__ == "__main__":
    main()
