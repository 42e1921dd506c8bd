"""The failure-analysis notebook runs top to bottom on demo and imported data, and shows what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def omium(home: Path, *args: str) -> str:
    env = os.environ | {
        "OMIUM_HOME": str(home),
        "OMIUM_HTTP_PORT": str(free_port()),
        "OMIUM_GRPC_PORT": str(free_port()),
        "OMIUM_CONSOLE_PORT": str(free_port()),
    }
    env.pop("OMIUM_SERVER_URL", None)
    env.pop("OMIUM_CLICKHOUSE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_notebook_runs_on_demo_and_imported_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    omium(home, "demo", "--executions", "40")
    omium(home, "import", "who-and-when", str(DATA / "who_and_when" / "algorithm_generated"))
    omium(home, "import", "tau-bench", str(DATA / "tau_bench" / "gpt-4o-airline.json"))
    built = omium(home, "pipelines", "build")
    assert "models, predictions and root causes" in built

    # The kernel is a child of this process: it opens the warehouse of `home` (this process's own
    # chdb directory is another one), with no server to find.
    monkeypatch.setenv("OMIUM_HOME", str(home))
    monkeypatch.delenv("OMIUM_SERVER_URL", raising=False)
    monkeypatch.setenv("OMIUM_HTTP_PORT", str(free_port()))
    notebook = nbformat.read(ROOT / "notebooks" / "failure_analysis.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 6  # agents, edges, classes, AUROC by k, ROC, risk
    titles = " | ".join(
        f["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"] for f in figures
    )
    assert "by agent" in titles and "by edge" in titles and "ROC" in titles
    # Failure classes: the classifier's beside the labels shown as annotations, never one as the other.
    (by_class,) = [
        f["data"]["application/vnd.plotly.v1+json"]
        for f in figures
        if "Failures by class" in f["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]
    ]
    assert {trace["name"] for trace in by_class["data"]} == {"classifier", "annotation"}
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    # The classifier's evaluation is per source held out, beside each source's majority class.
    (line,) = [s for s in printed.splitlines() if s.startswith("classifier held out per source: ")]
    classifier = json.loads(line.split(": ", 1)[1])
    assert set(classifier) <= {"omium", "who_and_when", "tau_bench"}
    for name, (accuracy, majority) in classifier.items():
        if accuracy is not None and accuracy <= majority:
            assert "always naming" in printed and f"on {name} held out" in printed
    for method in ("runtime_chain", "attribution_model"):
        assert method in printed  # a root-cause example of each kind, with its evidence
    assert "ground_truth" not in printed  # an annotation is never printed as a result...
    assert "   annotation: step " in printed  # ...but beside one
    assert "   · " in printed
    # The predictor's figures are per source held out (no pooled ROC): one curve per source left
    # out, each AUROC the one the pipeline registered for that source (same runs, fit and seed).
    assert "per source held out" in titles and "grouped held-out ROC" not in titles
    (line,) = [s for s in printed.splitlines() if s.startswith("held-out AUROC at k = 4 by source: ")]
    by_source = json.loads(line.split(": ", 1)[1])
    assert set(by_source) == {"omium", "who_and_when", "tau_bench"}
    assert by_source["who_and_when"] is None  # every Who&When run failed: no curve, no AUROC
    (roc,) = [
        f
        for f in figures
        if "k = 4: ROC per source held out"
        in f["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]
    ]
    curves = {trace["name"] for trace in roc["data"]["application/vnd.plotly.v1+json"]["data"]}
    assert len(curves) == sum(a is not None for a in by_source.values()) >= 1
    (line,) = [s for s in printed.splitlines() if s.startswith("registered by the pipeline: ")]
    stored = json.loads(line.split(": ", 1)[1])
    for name, auc in by_source.items():
        assert (auc is None) == (stored[name] is None)
        if auc is not None:
            assert abs(auc - stored[name]) < 1e-6
            if auc <= 0.5:
                assert f"no better than chance on {name} held out" in printed
