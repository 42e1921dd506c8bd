"""Importers: the public failure runs in ../shared/data become traces and ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omium.errors import DataImportError
from omium.importers import read_tau_bench, read_who_and_when, who_and_when_run, write
from omium.warehouse import ClickHouseWarehouse

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WHO = DATA / "who_and_when" / "algorithm_generated"
TAU = DATA / "tau_bench" / "gpt-4o-airline.json"


def test_who_and_when_runs_become_traces_with_their_labels(warehouse: ClickHouseWarehouse) -> None:
    runs = read_who_and_when(WHO)
    assert len(runs) == 126 and sum(len(r.steps) for r in runs) == 1099
    first = json.loads((WHO / "1.json").read_text())
    run = next(r for r in runs if r.source_id == "1.json")
    assert run.mistake_agent == first["mistake_agent"] and run.mistake_step == int(first["mistake_step"])
    assert [s.agent for s in run.steps] == [h["name"] for h in first["history"]]
    counts = write(warehouse, runs)
    assert counts == {"runs": 126, "spans": 126 + 1099}
    write(warehouse, runs)  # again: ids come from the source, so nothing doubles
    spans = warehouse.query_rows(
        "SELECT SpanAttributes['omium.step_index'] AS step, SpanAttributes['gen_ai.agent.name'] AS agent, "
        "SpanAttributes['omium.content'] AS content, SpanAttributes['omium.source_id'] AS source_id "
        "FROM otel_traces FINAL WHERE SpanAttributes['omium.run_id'] = {r:String} AND ParentSpanId != '' "
        "ORDER BY toUInt32(step)",
        {"r": "who_and_when:1"},
    )
    assert [s["agent"] for s in spans] == [h["name"] for h in first["history"]]
    assert spans[0]["content"] == first["history"][0]["content"] and spans[0]["source_id"] == "1.json"
    assert int(warehouse.scalar("SELECT count() FROM otel_traces FINAL")) == 126 + 1099
    truth = warehouse.query_rows(
        "SELECT mistake_agent, mistake_step, failed FROM omium_ground_truth FINAL WHERE run_id = {r:String}",
        {"r": "who_and_when:1"},
    )
    assert truth == [
        {
            "mistake_agent": first["mistake_agent"],
            "mistake_step": int(first["mistake_step"]),
            "failed": not first["is_correct"],
        }
    ]


def test_tau_bench_runs_carry_their_outcome(warehouse: ClickHouseWarehouse) -> None:
    runs = read_tau_bench(TAU)
    assert len(runs) == 200 and sum(r.failed for r in runs) == 116
    tools = {s.agent for r in runs for s in r.steps if s.role == "tool"}
    assert "tool:get_user_details" in tools
    write(warehouse, runs[:20])
    rows = warehouse.query_rows(
        "SELECT failed, reward, task_id FROM omium_ground_truth FINAL WHERE source = 'tau_bench' ORDER BY run_id"
    )
    assert len(rows) == 20 and all(r["failed"] == (r["reward"] < 1) for r in rows)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"history": "x"}', "field 'history' must be list, got str"),
        (
            '{"history": [{"content": "hi", "role": "user"}], "mistake_agent": "a"}',
            "missing field 'mistake_step'",
        ),
        (
            '{"history": [{"content": "hi", "name": "a"}], "mistake_agent": "a", "mistake_step": "two"}',
            "field 'mistake_step' must be a step index, got 'two'",
        ),
        (
            '{"history": [{"content": "hi", "name": "a"}], "mistake_agent": "a", "mistake_step": "5"}',
            "'mistake_step' 5 is outside history (0-0)",
        ),
        (
            '{"history": [{"role": "user"}], "mistake_agent": "a", "mistake_step": "0"}',
            "history[0]: missing field 'content'",
        ),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "7.json"
    path.write_text(content)
    with pytest.raises(DataImportError) as error:
        who_and_when_run(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value), str(error.value)


def test_bad_tau_bench_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    path.write_text(json.dumps([{"task_id": 1, "trial": 0, "reward": "high", "traj": []}]))
    with pytest.raises(
        DataImportError, match=r"runs.json: \[0\]: field 'reward' must be int or float, got str"
    ):
        read_tau_bench(path)


@pytest.mark.integration
def test_omium_import_through_a_server(tmp_path: Path, server_process) -> None:  # type: ignore[no-untyped-def]
    server = server_process.start()
    env = os.environ | {
        "OMIUM_SERVER_URL": server.url,
        "OMIUM_API_TOKEN": "test-token",
        "OMIUM_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "import", "who-and-when", str(WHO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 126 runs (126 failed) as 1,225 spans" in done.stdout
    assert server.sql("SELECT count() FROM omium_ground_truth FINAL") == [[126]]
    bad = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "import", "tau-bench", str(tmp_path / "none.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "none.json: cannot read it" in bad.stderr
