"""``omium rollback`` / ``omium fork`` on a LangGraph thread (``langgraph:<thread_id>``), in process
against the real server's store, with the graph loaded from a module by ``--app MODULE:GRAPH``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omium.cli.main import app
from omium.collector.server import RunningServer
from omium.sdk import runs, tracing

runner = CliRunner()
_modules = itertools.count()

GRAPH_MODULE = """
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.checkpoint.memory import InMemorySaver


class Pipeline(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]


def double(state):
    return {"x": state["x"] * 2, "log": ["double"]}


def increment(state):
    return {"x": state["x"] + 1, "log": ["increment"]}


def report(state):
    return {"log": ["report " + str(state["x"])]}


builder = StateGraph(Pipeline)
builder.add_node("double", double)
builder.add_node("increment", increment)
builder.add_node("report", report)
builder.add_edge(START, "double")
builder.add_edge("double", "increment")
builder.add_edge("increment", "report")
builder.add_edge("report", END)
graph = builder.compile(checkpointer=InMemorySaver())  # the CLI checkpoints into Omium's store
"""


@pytest.fixture
def lg_app(server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A graph module on sys.path and a thread ``langgraph:t1`` it ran, in the server's store."""
    from omium.adapters.langgraph import OmiumSaver
    from omium.sdk.remote_store import RemoteStore

    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.setattr(runs, "_default_store", runs._default_store)  # restored after the CLI's init()
    monkeypatch.setattr(tracing, "_provider", tracing._provider)
    monkeypatch.setattr(tracing, "_tracer", tracing._tracer)
    name = f"lg_pipeline_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(GRAPH_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module(name)
    store = RemoteStore(server.url, token="test-token")
    graph = module.graph.copy(update={"checkpointer": OmiumSaver(store)})
    assert graph.invoke({"x": 3}, {"configurable": {"thread_id": "t1"}})["log"][-1] == "report 7"
    yield f"{name}:graph", graph
    store.close()


def test_rollback_resumes_the_thread_from_a_past_checkpoint(lg_app: Any) -> None:
    spec, graph = lg_app
    before = len(list(graph.get_state_history({"configurable": {"thread_id": "t1"}})))
    result = runner.invoke(app, ["rollback", "langgraph:t1", "--to", "step 1", "--app", spec])
    assert result.exit_code == 0, result.output
    assert "thread t1 rolled back to checkpoint" in result.output and "ran to its end" in result.output
    assert '"log": ["double", "increment", "report 7"]' in result.output
    assert len(list(graph.get_state_history({"configurable": {"thread_id": "t1"}}))) == before + 3


def test_fork_branches_with_new_values(lg_app: Any) -> None:
    spec, graph = lg_app
    result = runner.invoke(app, ["fork", "langgraph:t1", "--from", "step 1", "--set", "x=10", "--app", spec])
    assert result.exit_code == 0, result.output
    assert "forked at checkpoint" in result.output and "report 11" in result.output
    state = graph.get_state({"configurable": {"thread_id": "t1"}})
    assert state.values["x"] == 11 and state.values["log"][-1] == "report 11"


def test_a_langgraph_thread_needs_its_graph_and_a_real_checkpoint(lg_app: Any) -> None:
    spec, _ = lg_app
    result = runner.invoke(app, ["rollback", "langgraph:t1", "--to", "step 1"])
    assert result.exit_code != 0 and "--app MODULE:GRAPH" in str(result.exception)
    result = runner.invoke(app, ["rollback", "langgraph:t1", "--to", "step 42", "--app", spec])
    assert result.exit_code != 0 and "no checkpoint at step 42" in str(result.exception)
    result = runner.invoke(app, ["fork", "langgraph:t1", "--from", "step 1", "--set", "x", "--app", spec])
    assert result.exit_code != 0 and "KEY=VALUE" in str(result.exception)


@pytest.mark.integration
def test_rollback_and_fork_as_real_processes_on_the_embedded_default(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import free_port

    (tmp_path / "lg_pipeline.py").write_text(GRAPH_MODULE)
    port = free_port()
    env = os.environ | {
        "OMIUM_HOME": str(tmp_path / "home"),
        "OMIUM_SERVER_URL": f"http://127.0.0.1:{port}",  # nobody answers: the embedded warehouse
        "PYTHONPATH": str(tmp_path),
        "COLUMNS": "300",
    }
    first = (
        "import omium\n"
        "from omium.adapters.langgraph import OmiumSaver\n"
        "from lg_pipeline import graph\n"
        "store = omium.init()\n"
        "g = graph.copy(update={'checkpointer': OmiumSaver(store)})\n"
        "print(g.invoke({'x': 3}, {'configurable': {'thread_id': 'p1'}})['log'])\n"
        "store.close()\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )

    made = run("-c", first)
    assert made.returncode == 0 and "report 7" in made.stdout, made.stderr
    rolled = run(
        "-m", "omium.cli.main", "rollback", "langgraph:p1", "--to", "step 1", "--app", "lg_pipeline:graph"
    )
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back to checkpoint" in rolled.stdout and "report 7" in rolled.stdout
    forked = run(
        "-m", "omium.cli.main", "fork", "langgraph:p1", "--from", "step 1", "--set", "x=20",
        "--app", "lg_pipeline:graph",
    )  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    assert "report 21" in forked.stdout
    missing = run(
        "-m", "omium.cli.main", "rollback", "langgraph:p1", "--to", "zzz", "--app", "lg_pipeline:graph"
    )
    assert missing.returncode == 2 and "has no checkpoint 'zzz'" in missing.stderr
