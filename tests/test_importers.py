"""Importers: the public failure runs in ../shared/data become traces and ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omium.errors import DataImportError
from omium.importers import agent_of, read_tau_bench, read_who_and_when, spans, who_and_when_run, write
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
    assert counts == {"runs": 126, "spans": 126 + 1099, "labelled": 126}
    write(warehouse, runs)  # again: ids come from the source, so nothing doubles
    spans = warehouse.query_rows(
        "SELECT SpanAttributes['omium.step_index'] AS step, SpanAttributes['gen_ai.agent.name'] AS agent, "
        "SpanAttributes['omium.content'] AS content, SpanAttributes['omium.source_id'] AS source_id "
        "FROM otel_traces FINAL WHERE SpanAttributes['omium.run_id'] = {r:String} AND ParentSpanId != '' "
        "ORDER BY toUInt32(step)",
        {"r": "who_and_when:algorithm_generated:1"},
    )
    assert [s["agent"] for s in spans] == [h["name"] for h in first["history"]]
    assert spans[0]["content"] == first["history"][0]["content"] and spans[0]["source_id"] == "1.json"
    assert int(warehouse.scalar("SELECT count() FROM otel_traces FINAL")) == 126 + 1099
    truth = warehouse.query_rows(
        "SELECT mistake_agent, mistake_step, failed FROM omium_ground_truth FINAL WHERE run_id = {r:String}",
        {"r": "who_and_when:algorithm_generated:1"},
    )
    assert truth == [
        {
            "mistake_agent": first["mistake_agent"],
            "mistake_step": int(first["mistake_step"]),
            "failed": not first["is_correct"],
        }
    ]


def test_unlabelled_logs_import_as_traces_with_no_annotation(
    tmp_path: Path, warehouse: ClickHouseWarehouse
) -> None:
    """Users' own logs have no labels: the runs import, and omium_ground_truth gets no row."""
    subset = tmp_path / "our_logs"
    subset.mkdir()
    for number in (1, 2):
        record = json.loads((WHO / f"{number}.json").read_text())
        unlabelled = {"history": record["history"], "question": record.get("question", "")}
        (subset / f"{number}.json").write_text(json.dumps(unlabelled))
    runs = read_who_and_when(subset)
    assert [r.run_id for r in runs] == ["who_and_when:our_logs:1", "who_and_when:our_logs:2"]
    assert all(not r.labelled and r.failed is None and r.mistake_step == -1 for r in runs)
    assert write(warehouse, runs) == {"runs": 2, "spans": 2 + sum(len(r.steps) for r in runs), "labelled": 0}
    assert warehouse.scalar("SELECT count() FROM omium_ground_truth") == 0
    assert warehouse.scalar("SELECT countIf(StatusCode = 'Error') FROM otel_traces FINAL") == 0

    trajectories = json.loads(TAU.read_text())[:3]
    for record in trajectories:
        del record["reward"]
    path = tmp_path / "tau" / "ours.json"
    path.parent.mkdir()
    path.write_text(json.dumps(trajectories))
    tau = read_tau_bench(path)
    assert [r.failed for r in tau] == [None, None, None]
    assert tau[0].run_id == f"tau_bench:tau:ours:{trajectories[0]['task_id']}:{trajectories[0]['trial']}"


def test_two_subsets_with_the_same_file_names_stay_apart(
    tmp_path: Path, warehouse: ClickHouseWarehouse
) -> None:
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.json").write_text((WHO / "1.json").read_text())
    runs = read_who_and_when(tmp_path / "first") + read_who_and_when(tmp_path / "second")
    assert len({r.run_id for r in runs}) == 2
    write(warehouse, runs)
    assert warehouse.scalar("SELECT uniqExact(TraceId) FROM otel_traces FINAL") == 2
    assert warehouse.scalar("SELECT count() FROM omium_ground_truth FINAL") == 2
    renamed = read_who_and_when(tmp_path / "first", subset="dev set")
    assert renamed[0].run_id == "who_and_when:dev_set:1"


@pytest.mark.parametrize(
    ("speaker", "agent"),
    [
        ("Orchestrator (thought)", "Orchestrator"),
        ("Orchestrator (-> WebSurfer)", "Orchestrator"),
        ("WebSurfer", "WebSurfer"),
        ("  Computer_terminal ", "Computer_terminal"),
        ("Assistant (draft) (v2)", "Assistant"),
        ("(system)", "(system)"),
    ],
)
def test_speaker_labels_map_to_agents(speaker: str, agent: str) -> None:
    assert agent_of(speaker) == agent  # a label that is all parentheses stays as it is


def test_a_speaker_label_is_kept_beside_its_agent(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "9.json"
    path.parent.mkdir()
    history = [
        {"content": "plan", "name": "Orchestrator (thought)", "role": "assistant"},
        {"content": "go", "name": "Orchestrator (-> WebSurfer)", "role": "assistant"},
        {"content": "page", "name": "WebSurfer", "role": "assistant"},
    ]
    path.write_text(
        json.dumps({"history": history, "mistake_agent": "Orchestrator (thought)", "mistake_step": 1})
    )
    run = who_and_when_run(path)
    assert [s.agent for s in run.steps] == ["Orchestrator", "Orchestrator", "WebSurfer"]
    assert [s.speaker for s in run.steps] == ["Orchestrator (thought)", "Orchestrator (-> WebSurfer)", ""]
    assert run.mistake_agent == "Orchestrator" and run.failed is True
    attributes = [s["attributes"] for s in spans(run)][1:]
    assert attributes[0]["gen_ai.agent.name"] == "Orchestrator"
    assert attributes[0]["omium.speaker"] == "Orchestrator (thought)"
    assert "omium.speaker" not in attributes[2]


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
            '{"history": [{"content": "hi", "role": "user"}], "mistake_agent": 3}',
            "field 'mistake_agent' must be str, got int",
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
    assert "imported 126 runs (126 labelled, 126 failed) as 1,225 spans" in done.stdout
    assert server.sql("SELECT count() FROM omium_ground_truth FINAL") == [[126]]
    bad = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "import", "tau-bench", str(tmp_path / "none.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "none.json: cannot read it" in bad.stderr
