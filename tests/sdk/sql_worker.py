"""A process of the multi-process control-store tests: its own SqlStore on a shared database.

    python sql_worker.py URL SCENARIO NAME OUT

Prints ``ready``, waits for a line on stdin (so that every process starts at once), opens the
store, runs SCENARIO and writes what it was granted to OUT as JSON:

- ``open``: nothing more (several processes migrating a fresh database at once);
- ``cas``: 250 compare-and-set attempts on the run ``cas`` and on the shared-state key
  ``counters/c``: the versions granted;
- ``lease``: an ``acquire_lease`` on each of the runs ``lease-0`` .. ``lease-49``: the ones won;
- ``claim``: claim commands until none is queued or claimed: each claim, its run and when the
  worker held it;
- ``fence``: ``w0`` leases the runs ``fenced-0`` .. ``fenced-19`` for 0.3 s and records steps in
  all of them, round and round, until each refuses it (FencedOut); ``w1`` takes each run over
  once its lease ran out and counts, right after its acquisition committed, the steps recorded
  under the old fence.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from omium.errors import ConflictError, FencedOut, RunBusy
from omium.sdk.sql import SqlStore
from omium.sdk.sql.engine import current_revision
from omium.sdk.store import StepRecord, now_us

ATTEMPTS = 250
LEASED_RUNS = 50


def cas(store: SqlStore, name: str) -> dict[str, Any]:
    runs: list[int] = []
    states: list[int] = []
    conflicts = 0
    for i in range(ATTEMPTS):
        run = store.get_run("cas")
        try:
            runs.append(store.update_run("cas", run.version, status="running", error=f"{name}-{i}").version)
        except ConflictError:
            conflicts += 1
        state = store.read_state("counters", "c")
        try:
            written = store.write_state("counters", "c", state.version if state else 0, f"{name}-{i}")
            states.append(written.version)
        except ConflictError:
            conflicts += 1
    return {"run": runs, "state": states, "conflicts": conflicts}


def lease(store: SqlStore, name: str) -> dict[str, Any]:
    won: dict[str, int] = {}
    for i in range(LEASED_RUNS):
        try:
            won[f"lease-{i}"] = store.acquire_lease(f"lease-{i}", name, 60).fence
        except RunBusy:
            pass
    return {"won": won}


def claim(store: SqlStore, name: str) -> dict[str, Any]:
    claims: list[dict[str, Any]] = []
    while True:
        command = store.claim_command(name, 60)
        if command is None:
            if not store.commands(status="queued") and not store.commands(status="claimed"):
                return {"claims": claims}
            time.sleep(0.005)
            continue
        held_from = now_us()
        time.sleep(0.002)  # the work
        held_until = now_us()
        store.finish_command(command.command_id, name, "done")
        claims.append(
            {"command": command.command_id, "run": command.run_id, "from": held_from, "until": held_until}
        )


FENCED_RUNS = 20


def fence(store: SqlStore, name: str) -> dict[str, Any]:
    runs = [f"fenced-{i}" for i in range(FENCED_RUNS)]
    if name == "w0":  # the execution that stalls past its leases and keeps writing
        fences = {run: store.acquire_lease(run, name, 0.3).fence for run in runs}
        refused: dict[str, int] = {}
        position = 0
        while len(refused) < len(runs):
            for run in runs:
                if run in refused:
                    continue
                try:
                    store.record_step(StepRecord(run, position, "tool", "t", "completed", fence=fences[run]))
                except FencedOut:
                    refused[run] = position
            position += 1
        return {"refused": refused}
    seen: dict[str, int] = {}  # the execution that takes over
    while not store.steps(runs[-1]):
        time.sleep(0.01)
    for run in runs:
        while True:
            try:
                taken = store.acquire_lease(run, name, 60)
                break
            except RunBusy:
                time.sleep(0.001)
        seen[run] = sum(1 for s in store.steps(run) if s.fence == taken.fence - 1)
    return {"seen": seen}


SCENARIOS = {"cas": cas, "lease": lease, "claim": claim, "fence": fence}


def main() -> None:
    url, scenario, name, out = sys.argv[1:5]
    print("ready", flush=True)
    sys.stdin.readline()
    store = SqlStore(url)
    try:
        result = SCENARIOS[scenario](store, name) if scenario in SCENARIOS else {}
        result["revision"] = current_revision(store.engine)
    finally:
        store.close()
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
