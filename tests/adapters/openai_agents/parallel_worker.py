"""A process running the parallel booking turn against the embedded store, for the kill -9 test.

    python -m tests.adapters.openai_agents.parallel_worker HOME LEDGER crash|resume

``crash``: runs the booking; once the other tool calls of the turn are recorded, the last one
(its effect applied, its result not yet recorded) prints ``mid-turn`` and waits to be killed.
``resume``: runs the same run again to its end, then replays it; prints one JSON line: the
result, the recorded calls, how many model calls were made, and the replay's verdict.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import omium
from omium.adapters.openai_agents import agent_workflow, instrument
from omium.config import Settings
from omium.warehouse.store import embedded_store
from tests.adapters.openai_agents import parallel

RUN_ID = "booking-1"


async def wait_to_be_killed() -> None:
    await parallel.others_recorded()
    print("mid-turn", flush=True)
    await asyncio.sleep(600)


def main() -> None:
    home, ledger, mode = Path(sys.argv[1]), parallel.Ledger(Path(sys.argv[2])), sys.argv[3]
    store = omium.init(store=embedded_store(Settings(home=home)))
    instrument()
    if mode == "crash":
        agent, _ = parallel.booking([parallel.TURN, parallel.ANSWER], ledger, hang=wait_to_be_killed)
        # A short lease (renewed while the process lives): the next process takes over soon after.
        omium.run(agent_workflow(agent, name="booking"), "book 1A and 1B", run_id=RUN_ID, lease_seconds=1.0)
        raise SystemExit("the run was meant to be killed mid-turn")
    agent, model = parallel.booking([parallel.ANSWER], ledger)
    # It waits for the killed process's lease to expire (nobody renews it now).
    result = omium.run(agent_workflow(agent, name="booking"), "book 1A and 1B", run_id=RUN_ID, wait=True)
    steps = [
        {"kind": s.kind, "name": s.name, "agent": s.agent, "key": s.idempotency_key, "status": s.status}
        for s in store.steps(RUN_ID)
    ]
    agent, replay_model = parallel.booking([], ledger)
    report = omium.replay(agent_workflow(agent, name="booking"), run_id=RUN_ID, store=store)
    summary = {
        "result": result,
        "status": store.get_run(RUN_ID).status,
        "steps": steps,
        "model_calls": len(model.calls) + len(replay_model.calls),
        "identical": report.identical,
        "divergence": str(report.divergence or ""),
        "replayed": report.calls_replayed,
    }
    print(json.dumps(summary), flush=True)
    store.close()


if __name__ == "__main__":
    main()
