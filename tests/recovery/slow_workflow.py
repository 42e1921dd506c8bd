"""A slow workflow for the worker takeover test: ten side-effecting steps, 0.25 s each.

Side effects go to a ledger (path in ``OMIUM_TEST_LEDGER``) standing in for an external system
that honours idempotency keys; every raw call is logged with the worker's pid.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import omium
from omium import tool, workflow


def _ledger() -> Path:
    return Path(os.environ["OMIUM_TEST_LEDGER"])


@tool
def charge(order: str, i: int) -> str:
    key = omium.idempotency_key()
    ledger = _ledger()
    with open(ledger.with_suffix(".calls"), "a") as calls:
        calls.write(json.dumps({"key": key, "pid": os.getpid(), "i": i}) + "\n")
    applied = ledger.read_text().splitlines() if ledger.exists() else []
    if not any(json.loads(line)["key"] == key for line in applied):
        with open(ledger, "a") as out:
            out.write(json.dumps({"key": key, "i": i, "pid": os.getpid()}) + "\n")
            out.flush()
            os.fsync(out.fileno())
    time.sleep(0.25)
    return f"{order}:{i}"


@workflow
def slow_order(order: str, steps: int = 10) -> list[str]:
    return [charge(order, i) for i in range(steps)]
