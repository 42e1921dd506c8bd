"""Across processes, on the embedded warehouse: a crew killed with SIGKILL, or paused for review,
is resumed by another process without running finished tasks (or their tools) again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
PROCESS = Path(__file__).with_name("crew_process.py")


def _run(home: Path, run_id: str, mode: str, log: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMIUM_HOME": str(home), "OMIUM_SERVER_URL": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, str(PROCESS), run_id, mode, str(log)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


def _report(child: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_a_killed_crew_resumes_in_another_process(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "tools.log"
    killed = _run(home, "killed", "crash", log)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert log.read_text().splitlines() == ["lookup_customer Ada"]

    report = _report(_run(home, "killed", "resume", log))
    assert report["status"] == "completed" and report["run"] == "completed"
    assert (report["executed"], report["replayed"]) == (1, 3)
    # Nothing acknowledged was lost: the three finished tasks came back from the control database; none ran twice.
    assert report["calls"] == {"kyc": 0, "credit": 0, "terms": 0, "email": 2}
    assert log.read_text().splitlines() == ["lookup_customer Ada", "send_email Ada"]
    assert [tuple(s) for s in report["steps"]] == [
        (0, "verify identity", "completed"),
        (1, "score credit", "completed"),
        (2, "generate terms", "completed"),
        (3, "send offer", "completed"),
    ]
    # The resumed process's spans are in otel_traces, the email task under the run's span.
    spans = {row["SpanId"]: row for row in report["spans"]}
    [email] = [r for r in spans.values() if r["SpanName"] == "invoke_agent email"]
    assert (email["agent"], email["step"]) == ("email", "3")
    assert spans[email["ParentSpanId"]]["SpanName"] == "invoke_workflow onboarding"
    tools = [r for r in spans.values() if r["SpanName"] == "execute_tool send_email"]
    assert [spans[t["ParentSpanId"]]["SpanName"] for t in tools] == ["invoke_agent email"]


def test_a_crew_paused_in_one_process_is_approved_and_resumed_in_another(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "tools.log"
    paused = _report(_run(home, "gated", "pause", log))
    assert (paused["status"], paused["run"]) == ("paused", "paused")
    assert paused["calls"] == {"kyc": 2, "credit": 1, "terms": 1, "email": 0}

    report = _report(_run(home, "gated", "approve", log))
    assert report["status"] == "completed"
    assert report["calls"] == {"kyc": 0, "credit": 0, "terms": 0, "email": 2}
    assert log.read_text().splitlines() == ["lookup_customer Ada", "send_email Ada"]
