"""DBOS in benchmarks/checkpoint.py: a workflow of N ``@DBOS.step`` calls, each returning its message.

``BENCH_MODE``: ``sqlite`` (a system database file) or ``postgres`` (a fresh database of the
benchmark's server). DBOS resumes the way it is built to: the process exits at step CRASH_AT and
a new process's ``DBOS.launch()`` recovers the workflow (its resume time includes that launch).
The crash gets a database of its own. Bytes: what the TURNS-turn workflow added to the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _common import (
    CRASH_AT,
    MESSAGES,
    MODE,
    PHASE,
    STEPS,
    TURNS,
    WORK,
    overhead,
    pg_bytes,
    pg_database,
    report,
    sqlite_bytes,
    unique,
)
from dbos import DBOS, SetWorkflowID


def database(name: str) -> str:
    """The URL of the system database ``name`` (created by the main phase on PostgreSQL)."""
    variable = f"BENCH_DBOS_{name.upper()}"
    if variable not in os.environ:
        if MODE == "postgres":
            os.environ[variable] = pg_database(unique(f"dbos_{name}"))
        else:
            os.environ[variable] = f"sqlite:///{os.path.join(WORK, f'{name}.sqlite')}"
    return os.environ[variable]


def size(url: str) -> int:
    return pg_bytes(url) if MODE == "postgres" else sqlite_bytes(url.removeprefix("sqlite:///"))


main_db, crash_db = database("main"), database("crash")
DBOS(config={"name": "bench", "system_database_url": crash_db if PHASE != "main" else main_db})
executed: list[int] = []


@DBOS.step()
def turn(i: int) -> str:
    executed.append(i)
    if PHASE == "crash" and i == CRASH_AT:
        os._exit(9)
    return MESSAGES[i]


@DBOS.workflow()
def conversation(n: int) -> int:
    history = []
    for i in range(n):
        history.append(turn(i))
    return len(history)


def run(n: int, workflow_id: str) -> int:
    with SetWorkflowID(workflow_id):
        return conversation(n)


def main() -> None:
    if PHASE == "crash":
        DBOS.launch()
        run(STEPS, "crash")
        sys.exit(0)  # not reached
    if PHASE == "resume":
        started = time.perf_counter()
        DBOS.launch()  # recovers the workflow the crash left pending
        DBOS.retrieve_workflow("crash").get_result()
        resume = time.perf_counter() - started
        print(json.dumps({"resume_s": resume, "reexecuted": len([i for i in executed if i < CRASH_AT])}))
        DBOS.destroy()
        return
    DBOS.launch()
    per_step = overhead(lambda r: run(STEPS, f"o{r}"))
    before = size(main_db)
    run(TURNS, "bytes")
    stored = size(main_db) - before
    DBOS.destroy()
    child = [sys.executable, *sys.argv]
    crashed = subprocess.run(child, env=os.environ | {"BENCH_PHASE": "crash"})
    assert crashed.returncode == 9, crashed.returncode
    resumed = subprocess.run(
        child, env=os.environ | {"BENCH_PHASE": "resume"}, capture_output=True, text=True, check=True
    )
    recovery = json.loads(resumed.stdout.strip().splitlines()[-1])
    postgres = MODE == "postgres"
    report(
        {
            "key": "dbos-postgres" if postgres else "dbos-sqlite",
            "system": f"DBOS ({'PostgreSQL' if postgres else 'SQLite'})",
            "note": "crash: the process exits; a new one's DBOS.launch() recovers the workflow",
            "per_step_ms": per_step * 1e3,
            "bytes": stored,
            **recovery,
        }
    )


if __name__ == "__main__":
    main()
