"""A process that runs the example conversation against a journaled store, for the cross-process tests.

    python conversation_process.py JOURNAL_DIR RUN_ID crash|pause

``crash``: the process is killed (SIGKILL) when the reviewer's model is called, after the planner's
and the coder's turns completed. ``pause``: a review gate before the reviewer pauses the run and the
process exits. Either way the store's journal is left for the next process, which recovers it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from team_example import PLAN_CHECK, crew

from omium.adapters.autogen import ReviewGate
from omium.sdk.sql import open_control_store


def kill_self(messages: Any) -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


async def main(directory: Path, run_id: str, mode: str) -> None:
    # The embedded default's control database: a kill -9 loses nothing it committed.
    store = open_control_store(directory / "control.db")
    if mode == "crash":
        team_crew = crew()
        team_crew.models["reviewer"].script = kill_self
        team = team_crew.team(handoffs=[PLAN_CHECK])
    else:
        team_crew = crew()
        team = team_crew.team(handoffs=[PLAN_CHECK], reviews=[ReviewGate("reviewer")])
    outcome = await team.run(team_crew.sequential, "Write fib", run_id=run_id, store=store)
    result = {"status": outcome.status, "calls": team_crew.calls(), "tool_runs": len(team_crew.tool_runs)}
    print(json.dumps(result), flush=True)
    os._exit(0)  # leave the database as a crashed process would


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
