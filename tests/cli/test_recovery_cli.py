"""The README's main job and the recovery commands, as real processes on the embedded default."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from omium.examples.company_x.workflow import FIXED_PROMPT
from omium.recovery.policy import SCHEMA
from tests.conftest import free_port

APP = "omium.examples.company_x.workflow"
POLICY = Path(__file__).resolve().parents[2] / "examples/company_x/policy.yaml"


def omium(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omium.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_policy_check_and_schema(tmp_path: Path) -> None:
    ok = omium(dict(os.environ), "policy", "check", str(POLICY))
    assert ok.returncode == 0 and "ok — triggers: hallucination_detected" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.read_text().replace("max_retries: 3", "max_retries: lots"))
    refused = omium(dict(os.environ), "policy", "check", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:14: retry_policy.max_retries: expected a whole number from 0 to 100" in refused.stderr
    out = tmp_path / "policy.schema.json"
    assert omium(dict(os.environ), "policy", "schema", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text()) == SCHEMA


@pytest.mark.integration
def test_demo_then_review_test_fix_approve_and_a_worker(tmp_path: Path) -> None:
    env = os.environ | {
        "OMIUM_HOME": str(tmp_path),
        "OMIUM_HTTP_PORT": str(free_port()),
        "OMIUM_GRPC_PORT": "-1",
        "COLUMNS": "200",
    }
    env["OMIUM_SERVER_URL"] = f"http://127.0.0.1:{env['OMIUM_HTTP_PORT']}"
    demo = omium(env, "demo", "--executions", "24", "--concurrency", "4")
    assert demo.returncode == 0, demo.stderr + demo.stdout
    out = demo.stdout
    assert re.search(r"executions: 24 in [\d.]+s \| success: \d+\.\d%", out), out
    assert "human interventions: " in out and "awaiting review: 1" in out
    assert re.search(r"emails delivered: (\d+) for \1 completed runs", out), out
    assert "recovery time (detected -> completed or paused): p50" in out
    run_id = re.search(r"awaiting your review: run (\S+) ", out).group(1)  # type: ignore[union-attr]

    edit = f"terms_generator.prompt={FIXED_PROMPT}"
    forbidden = omium(env, "review", run_id, "--edit", "terms_generator.core_logic=x", "--approve")
    assert (
        forbidden.returncode == 2
        and "only prompt, constraints, tool_selection (or tools) of an agent may be edited" in forbidden.stderr
    )
    failing = omium(env, "review", run_id, "--test", "--app", APP)
    assert failing.returncode == 1 and "test fix FAILED: APR 0.0% is outside 2.5%-8.5%" in failing.stdout
    tested = omium(env, "review", run_id, "--edit", edit, "--test", "--app", APP)
    assert tested.returncode == 0 and "test fix passed" in tested.stdout, tested.stderr
    approved = omium(env, "review", run_id, "--approve", "--edit", edit, "--reviewer", "erin")
    assert approved.returncode == 0 and "queued to resume" in approved.stdout, approved.stderr
    worked = omium(env, "worker", APP, "--once")
    assert worked.returncode == 0 and "executed 1 commands" in worked.stderr, worked.stderr
    listed = omium(env, "incidents", run_id, "--json")
    (incident,) = [json.loads(line) for line in listed.stdout.splitlines()]
    kinds = [e["kind"] for e in incident["events"]]
    assert kinds[0] == "detected" and kinds[-1] == "completed" and "test_fix" in kinds
    assert any(e["kind"] == "edited" and e["actor"] == "erin" for e in incident["events"])
    unknown = omium(env, "incidents", "no-such-run")
    assert unknown.returncode == 2 and "no run 'no-such-run'" in unknown.stderr
