"""A process that runs the onboarding crew on Omium's default embedded store, for the cross-process tests.

    python crew_process.py RUN_ID crash|resume|pause|approve TOOL_LOG

``crash``: the process is killed (SIGKILL) when the email agent's model is first called, after the
KYC, credit and terms tasks finished (and KYC's tool ran). ``resume``: kicks the run off again and
prints what happened as JSON, with the run's steps and its spans as the warehouse has them.
``pause``: a review gate before the email agent pauses the run; the process exits. ``approve``:
approves the paused run (as ``omium review RUN --approve`` does), then resumes it like ``resume``.
``$OMIUM_HOME`` says where the embedded warehouse and the control database are.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

# CrewAI offline and out of the real home directory, before it is imported (as conftest.py does).
os.environ.update(CREWAI_DISABLE_TELEMETRY="true", CREWAI_TRACING_ENABLED="false", CREWAI_TESTING="true")
os.environ["HOME"] = tempfile.mkdtemp(prefix="crewai-home-")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from omium.adapters.crewai import ReviewGate, instrument
from omium.recovery import review
from omium.sdk import runs, tracing
from tests.adapters.crewai.onboarding import KYC_CHECK, onboarding


def kill_self(messages: Any) -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


def main(run_id: str, mode: str, tool_log: Path) -> None:
    store = runs.default_store()
    if mode == "crash":
        team = onboarding({"email": [kill_self]}, tool_log=tool_log)
        instrument(team.crew, handoffs=[KYC_CHECK]).kickoff({"customer": "Ada"}, run_id=run_id)
        raise SystemExit("not killed")
    gates = [ReviewGate("email")] if mode in ("pause", "approve") else []
    team = onboarding(tool_log=tool_log)
    if mode == "approve":
        review(run_id, "approve", reviewer="ops@example.com", store=store)
    outcome = instrument(team.crew, handoffs=[KYC_CHECK], reviews=gates).kickoff(
        {"customer": "Ada"}, run_id=run_id
    )
    report: dict[str, Any] = {
        "status": outcome.status,
        "executed": outcome.executed,
        "replayed": outcome.replayed,
        "calls": team.calls(),
        "run": store.get_run(run_id).status,
        "steps": [[s.position, s.name, s.status] for s in store.steps(run_id)],
    }
    if mode in ("resume", "approve"):
        tracing._provider.force_flush()  # type: ignore[union-attr]
        warehouse = store.warehouse  # type: ignore[attr-defined]
        report["spans"] = warehouse.query_rows(
            "SELECT SpanId, ParentSpanId, SpanName, SpanAttributes['gen_ai.agent.name'] AS agent, "
            "SpanAttributes['omium.step_index'] AS step FROM otel_traces "
            "WHERE SpanAttributes['omium.run_id'] = {r:String} ORDER BY Timestamp",
            {"r": run_id},
        )
    print(json.dumps(report), flush=True)
    if mode == "pause":
        os._exit(0)  # leave the control database as a crashed process would


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
