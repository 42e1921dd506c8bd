"""A process that executes runs against an Omium server, for the run-lease tests.

    python lease_child.py race URL LEDGER       # reads "RUN_ID" lines; answers "done"/"busy" per line
    python lease_child.py single URL LEDGER RUN_ID LEASE_SECONDS WAIT

Every step appends ``{"key": idempotency key, "pid": pid}`` to LEDGER (the external system; it
deduplicates by key). Exit codes of ``single``: 0 completed, 3 RunBusy, 4 FencedOut.
"""

from __future__ import annotations

import json
import os
import sys
import time

import omium
from omium.errors import FencedOut, RunBusy
from omium.sdk.remote_store import RemoteStore

LEDGER = sys.argv[3]
STEPS = 12


@omium.step
def effect(index: int, delay: float) -> int:
    time.sleep(delay)
    with open(LEDGER, "a") as ledger:
        ledger.write(json.dumps({"key": omium.idempotency_key(), "i": index, "pid": os.getpid()}) + "\n")
        ledger.flush()
    return index


@omium.workflow(name="lease_child_flow")
def flow(delay: float) -> int:
    return sum(effect(i, delay) for i in range(STEPS))


def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    store = RemoteStore(url, token="test-token")
    omium.init(store=store, tracer_provider=None)
    if mode == "race":
        for line in sys.stdin:
            run_id = line.strip()
            try:
                omium.run(flow, 0.005, run_id=run_id, store=store)
                print("done", flush=True)
            except RunBusy as busy:
                print(f"busy {busy.holder}", flush=True)
        return
    run_id, lease, wait = sys.argv[4], float(sys.argv[5]), sys.argv[6] == "wait"
    print("started", flush=True)
    try:
        omium.run(flow, 0.1, run_id=run_id, store=store, lease_seconds=lease, wait=wait)
    except RunBusy:
        sys.exit(3)
    except FencedOut as lost:
        print(f"fenced out: {lost}", flush=True)
        sys.exit(4)


if __name__ == "__main__":
    main()
