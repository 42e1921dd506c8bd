"""``omium verify`` as a real process on the embedded default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

APP = "omium.models.fault_team"
MAKE_RUN = """
import random, omium
from omium.models import fault_team
store = omium.init()
one = fault_team.scenario(random.Random(0), "cli-run", "stale_handoff")
assert not fault_team.run(one, store)
steps = store.steps(one.run_id)
first = min(s.position for s in steps if s.kind == "llm")
print(fault_team.fault_position(steps, one), first)
store.close()
"""


def omium(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omium.cli.main", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_an_unknown_run_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = os.environ | {"OMIUM_HOME": str(tmp_path), "OMIUM_SERVER_URL": "http://127.0.0.1:9"}
    done = omium(env, "verify", "no-such-run", "--app", APP)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "no-such-run" in done.stderr


@pytest.mark.integration
def test_verify_prints_the_verified_root_cause(tmp_path: Path) -> None:
    env = os.environ | {
        "OMIUM_HOME": str(tmp_path),
        "OMIUM_SERVER_URL": "http://127.0.0.1:9",
        "COLUMNS": "200",
    }
    made = subprocess.run(
        [sys.executable, "-c", MAKE_RUN], env=env, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    culprit, earlier = map(int, made.stdout.split()[-2:])
    found = omium(env, "verify", "cli-run", "--app", APP, "--max-forks", "20")
    assert found.returncode == 0, found.stdout + found.stderr
    assert f"root cause verified: #{culprit} " in found.stdout
    assert re.search(rf"#{culprit}\s+\S+\s+verified\s+1\s+\d+\s+completed: the failure", found.stdout), (
        found.stdout
    )
    assert "failed at #" in found.stdout and "final_answer_check" in found.stdout
    wrong = omium(env, "verify", "cli-run", "--app", APP, "--step", str(earlier))
    assert wrong.returncode == 1 and "no candidate verified" in wrong.stdout
    assert re.search(rf"#{earlier}\s+\S+\s+not_verified", wrong.stdout), wrong.stdout
    budget = omium(
        env,
        "verify",
        "cli-run",
        "--app",
        APP,
        "--step",
        str(earlier),
        "--step",
        str(culprit),
        "--max-forks",
        "1",
    )
    assert budget.returncode == 1 and re.search(rf"#{culprit}\s+\S+\s+inconclusive\s+0", budget.stdout)
