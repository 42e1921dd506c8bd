"""Across processes: a conversation killed with SIGKILL, or paused for review, is resumed by another process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omium.adapters.autogen import ReviewGate
from omium.recovery import review
from omium.sdk.sql import SqlStore, open_control_store
from omium.testing import Runtime
from tests.adapters.autogen.team_example import PLAN_CHECK, crew, drive

pytestmark = pytest.mark.integration
PROCESS = Path(__file__).with_name("conversation_process.py")


def _conversation_process(journal: Path, run_id: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROCESS), str(journal), run_id, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def recovered(journal: Path) -> Iterator[Callable[[], SqlStore]]:
    """The store as the next process opens it: what the dead process committed."""
    stores: list[SqlStore] = []

    def open_store() -> SqlStore:
        stores.append(open_control_store(journal / "control.db"))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


def test_a_killed_conversation_resumes_in_another_process(
    rt: Runtime, journal: Path, recovered: Callable[[], SqlStore]
) -> None:
    child = _conversation_process(journal, "killed", "crash")
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    store = recovered()
    assert store.get_run("killed").status == "running"  # it never got to say it failed
    assert [(s.name, s.status) for s in store.steps("killed")] == [
        ("planner", "completed"),
        ("coder", "completed"),
    ]

    # The dead process's lease is still on record; the next execution takes the run over at once
    # (its holder is a process of this host that is gone) under a new fencing token.
    held = store.lease("killed")
    assert held is not None and held.fence == 1
    fresh = crew()
    outcome = drive(
        fresh.team(handoffs=[PLAN_CHECK]).run(fresh.sequential, "Write fib", run_id="killed", store=store)
    )
    assert outcome.status == "completed"
    assert fresh.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
    assert fresh.tool_runs == []
    assert store.get_run("killed").status == "completed"
    taken = store.lease("killed")
    assert taken is not None and taken.fence == 2 and taken.holder != held.holder


def test_a_conversation_paused_in_one_process_is_approved_and_resumed_in_another(
    rt: Runtime, journal: Path, recovered: Callable[[], SqlStore]
) -> None:
    child = _conversation_process(journal, "paused", "pause")
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {
        "status": "paused",
        "calls": {"planner": 1, "coder": 2, "reviewer": 0},
        "tool_runs": 1,
    }
    store = recovered()
    assert store.get_run("paused").status == "paused"
    review("paused", "approve", store=store)
    fresh = crew()
    team = fresh.team(handoffs=[PLAN_CHECK], reviews=[ReviewGate("reviewer")])
    outcome = drive(team.run(fresh.sequential, "Write fib", run_id="paused", store=store))
    assert outcome.status == "completed"
    assert fresh.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
