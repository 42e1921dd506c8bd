"""The code location loads the way Dagster loads it, with every asset, check, job, schedule and sensor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omium.cli.up import children
from omium.config import Settings
from omium.pipelines.definitions import defs


def test_definitions_hold_every_asset_check_and_automation() -> None:
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert assets == {
        "normalized_spans",
        "run_edges",
        "agent_graph",
        "step_features",
        "run_features",
        "failure_labels",
        "failure_classifier",
        "failure_predictor",
        "failure_predictions",
        "root_causes",
    }
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checked == assets  # every asset checks its output
    assert {s.name for s in defs.schedules or []} >= {"hourly_predictions", "weekly_retraining"}
    assert any(getattr(s, "cron_schedule", "") == "5 * * * *" for s in defs.schedules or [])  # hourly
    assert [s.name for s in defs.sensors or []] == ["failed_runs_sensor"]


def test_dagster_loads_the_module(tmp_path: Path) -> None:
    env = os.environ | {"DAGSTER_HOME": str(tmp_path), "OMIUM_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "omium.pipelines.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_omium_up_starts_dagster_with_a_home(tmp_path: Path) -> None:
    (dagster,) = [c for c in children(Settings(home=tmp_path)) if c.name == "dagster"]
    assert dagster.argv[-4:-2] == ["-m", "omium.pipelines.definitions"]
    assert dagster.env["DAGSTER_HOME"] == str((tmp_path / "dagster").resolve())
