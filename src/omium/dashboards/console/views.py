"""What the pages show, computed from a run's records: tables, figures, root cause, suggested fixes.

These functions read through :mod:`omium.dashboards.console.data` and return plain values or
plotly figures, so the pages stay thin and the analysis is testable without a browser.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import plotly.graph_objects as go
import polars as pl

from omium.dashboards.console import data
from omium.dashboards.console.trace_views import local
from omium.models import culprit
from omium.sdk.context import call_order, checkpoint_call_id, step_call_id
from omium.sdk.runs import RollbackView
from omium.sdk.store import CheckpointRecord, RunRecord, StepRecord


def choose_run(label: str, key: str) -> RunRecord:
    """The run a page is about: ``?run=ID``, else the latest; the page stops if there is none."""
    import streamlit as st

    run_id = st.text_input(label, value=st.query_params.get("run", "") or data.latest_run(), key=key)
    run = data.run(run_id) if run_id else None
    if run is None:
        st.warning(f"No run {run_id!r}." if run_id else "No runs yet.")
        if run_id:  # a trace id, or a third-party run: its spans may be there
            st.page_link("app_pages/trace.py", label="Look for its spans", query_params={"trace": run_id})
        st.stop()
    return run


def _passed_checkpoint(
    step: StepRecord, marks: list[CheckpointRecord], rollbacks: list[tuple[int, str]]
) -> str:
    """The checkpoint a try falls after: the last one its own execution passed, standing at or
    before the try's call (by call id, not position: another generation may have recorded another
    checkpoint at the same place). That is one of the try's generation, or of an earlier one that
    no rollback up to the try's generation undid, or a checkpoint a later rollback went to (the
    re-execution records it again, in its own generation, where it stood before)."""
    at, generation = call_order(step_call_id(step)), step.generation

    def lived(mark: CheckpointRecord) -> bool:
        where = call_order(checkpoint_call_id(mark))
        if mark.generation > generation:
            return any(generation < g <= mark.generation and where == call_order(b) for g, b in rollbacks)
        return not any(mark.generation < g <= generation and where > call_order(b) for g, b in rollbacks)

    passed = [m for m in marks if call_order(checkpoint_call_id(m)) <= at and lived(m)]
    last = max(passed, key=lambda m: (call_order(checkpoint_call_id(m)), m.seq), default=None)
    return last.name if last is not None else ""


def steps_table(run_id: str) -> pl.DataFrame:
    """Every try of the run's calls, failed ones included (a retry, a re-execution after a rollback),
    oldest generation first, each with the checkpoint it falls after (in its own generation's
    history) and its start in local time."""
    tries = data.step_tries(run_id)
    frame = data.steps_frame(tries)
    if not frame.height:
        return frame
    marks = data.checkpoints(run_id)
    run = data.run(run_id)
    rollbacks = RollbackView.of(run).rollbacks if run is not None else []
    labels = [_passed_checkpoint(step, marks, rollbacks) for step in tries]
    started = [local(moment) for moment in frame["started"]]
    return frame.with_columns(
        pl.Series("after_checkpoint", labels), pl.Series("started", started, dtype=pl.String)
    ).select(
        [
            "position",
            "call_id",
            "agent",
            "kind",
            "name",
            "status",
            "attempt",
            "generation",
            "error",
            "ms",
            "started",
            "after_checkpoint",
        ]
    )


def handoff_verdicts(run_id: str) -> list[str]:
    """One line per hand-off: ``Consensus: ✓ Ready for Agent C`` or the rejection and why."""
    lines = []
    for row in data.handoffs(run_id).iter_rows(named=True):
        schema = f" ({row['schema_name']})" if row["schema_name"] else ""
        if row["status"] == "acked":
            lines.append(f"Consensus: ✓ {row['sender']} → {row['receiver']}{schema}: delivered and accepted")
        elif row["status"] == "sent":
            lines.append(f"Consensus: ✓ Ready for {row['receiver']} (from {row['sender']}{schema})")
        else:
            lines.append(f"Consensus: ✗ {row['sender']} → {row['receiver']}{schema}: {row['reason']}")
    return lines


def failed_at(run_id: str) -> str:
    """ "step 47/100": where the run's last failure was (its incident, else its last failed
    try), '' if nothing in it failed. Read from every try: the control store keeps a call's latest
    try only, so a failed try that a retry or a re-execution overwrote is found in the history."""
    records = data.step_tries(run_id)  # oldest generation first, a position's tries in order
    run = data.run(run_id)
    failure = json.loads(run.attributes.get("failure", "{}")) if run is not None else {}
    position = failure.get("position")
    if position is None:
        failed = [s for s in records if s.status == "failed"]
        position = failed[-1].position if failed else None
    if position is None or not records:
        return ""
    total = max(s.position for s in records) + 1
    return f"step {int(position) + 1}/{total}"


def recovered_failure(run_id: str) -> dict[str, Any]:
    """The first failure the supervisor detected in the run (from its audit events), in the shape
    of a run's ``failure`` attribute; {} if it detected none. A retry replaces the failed try's
    record, so after recovery the audit trail is where the failure is remembered."""
    detected = [e for e in data.events(run_id) if e.kind == "detected"]
    if not detected:
        return {}
    first = min(detected, key=lambda e: e.ts)
    position = first.attributes.get("position", "")
    failure: dict[str, Any] = {
        "trigger": first.attributes.get("trigger", ""),
        "agent": first.attributes.get("agent", ""),
        "message": first.reason,
        "error_type": first.attributes.get("error_type", ""),
    }
    if position.lstrip("-").isdigit():
        failure["position"] = int(position)
    return failure


def status_banner(run: RunRecord) -> tuple[str, str]:
    """What the top of a run's page says about failure, as (kind, text): ``error`` only while the
    run is failed or paused (with its own error whenever it has one, even if no step failed),
    ``info`` "Recovered from ..." for a run that completed after a failure, else ("", "")."""
    if run.status == "paused" and run.attributes.get("paused_by") and not run.attributes.get("awaiting"):
        return ("", "")  # an operator's pause: nothing failed (the page says who paused it)
    where = failed_at(run.run_id)
    if run.status in ("failed", "paused"):
        if not where and not run.error:
            return ("", "")
        head = f"Failed at {where}" if where else "Failed"
        return ("error", head + (f" — {run.error}" if run.error else ""))
    if run.status == "completed":
        failure = recovered_failure(run.run_id)
        if failure:
            total = max((s.position for s in data.steps(run.run_id)), default=-1) + 1
            at = f" at step {failure['position'] + 1}/{total}" if "position" in failure else ""
            return ("info", f"Recovered from {failure['trigger'] or 'a failure'}{at}; the run completed")
        if where:
            return ("info", f"Recovered from a failed try at {where}; the run completed")
    return ("", "")


def timeline(run_id: str) -> alt.Chart | None:
    """A waterfall of the run's calls, one row per agent (Vega-Lite: light in the browser)."""
    frame = data.steps_frame(data.steps(run_id))
    if not frame.height:
        return None
    shown = frame.select(
        pl.col("agent").replace("", "(workflow)"), "started", "ended", "status", "position", "name", "ms"
    ).to_pandas()
    return (
        alt.Chart(shown, title="Timeline")
        .mark_bar()
        .encode(
            # Wall-clock labels in the browser's local time (Vega-Lite's default zone): without a
            # format, a run of a few seconds read ".500 .950" along its axis.
            x=alt.X(
                "started:T",
                title="local time",
                axis=alt.Axis(format="%H:%M:%S", labelOverlap=True, tickCount=6),
            ),
            x2="ended:T",
            y=alt.Y("agent:N", title="", sort=None),
            color=alt.Color(
                "status:N", scale=alt.Scale(domain=["completed", "failed"], range=["#2e7d32", "#c62828"])
            ),
            tooltip=[
                "position",
                "name",
                "status",
                "ms",
                alt.Tooltip("started:T", title="started", format="%H:%M:%S.%L"),
            ],
        )
        .properties(height=alt.Step(28))
    )


@dataclass
class Graph:
    """Agents, shared-state keys and the data between them."""

    nodes: list[str] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)


def dependency_graph(run_id: str) -> Graph:
    """Agents in the order they acted, hand-offs between them, and the state keys hand-offs relied on.

    A stale edge names what changed ("customers/c-1 changed v1 -> v2"), with the new value if it is
    readable.
    """
    graph = Graph()
    for step in data.steps(run_id):
        if step.agent and step.agent not in graph.nodes:
            graph.nodes.append(step.agent)
    for row in data.handoffs(run_id).iter_rows(named=True):
        for agent in (row["sender"], row["receiver"]):
            if agent not in graph.nodes:
                graph.nodes.append(agent)
        stale = row["status"] == "rejected" and row["reason"].startswith("stale")
        graph.edges.append(
            {
                "source": row["sender"],
                "target": row["receiver"],
                "label": row["schema_name"] or "message",
                "status": row["status"],
                "stale": stale,
                "reason": _describe_stale(row["reason"]) if stale else row["reason"],
            }
        )
        for key in json.loads(row["depends_on"] or "{}"):
            if key not in graph.nodes:
                graph.nodes.append(key)
            graph.edges.append(
                {
                    "source": key,
                    "target": row["sender"],
                    "label": "read",
                    "status": "read",
                    "stale": stale,
                    "reason": "",
                }
            )
    return graph


def _describe_stale(reason: str) -> str:
    """Add the key's current value to a stale reason, where it can be read."""
    described = [reason]
    for part in reason.removeprefix("stale: ").split("; "):
        name = part.split(" changed", 1)[0]
        namespace, _, key = name.partition("/")
        latest = data.store().read_state(namespace, key) if key else None
        if latest is not None:
            value = data.value(latest.value_hash)
            if isinstance(value, dict):
                for field_name, field_value in value.items():
                    described.append(f"{field_name} is now {field_value}")
    return "; ".join(described)


def graph_figure(graph: Graph) -> go.Figure:
    """The dependency graph drawn on a circle; stale edges in red with their reason."""
    count = max(len(graph.nodes), 1)
    where = {
        name: (math.cos(2 * math.pi * i / count), math.sin(2 * math.pi * i / count))
        for i, name in enumerate(graph.nodes)
    }
    figure = go.Figure()
    for edge in graph.edges:
        (x0, y0), (x1, y1) = where[edge["source"]], where[edge["target"]]
        colour = "#c62828" if edge["stale"] or edge["status"] == "rejected" else "#607d8b"
        figure.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={"color": colour, "width": 3 if edge["stale"] else 1.5},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        figure.add_annotation(
            x=(x0 + x1) / 2,
            y=(y0 + y1) / 2,
            text=edge["label"] + (" ⚠ stale" if edge["stale"] else ""),
            showarrow=False,
            font={"color": colour, "size": 10},
            hovertext=edge["reason"] or None,
        )
    figure.add_trace(
        go.Scatter(
            x=[where[n][0] for n in graph.nodes],
            y=[where[n][1] for n in graph.nodes],
            mode="markers+text",
            text=graph.nodes,
            textposition="top center",
            marker={"size": 18, "color": "#1565c0"},
            showlegend=False,
        )
    )
    figure.update_layout(
        title="Dependency graph", xaxis={"visible": False}, yaxis={"visible": False}, height=420
    )
    return figure


@dataclass(frozen=True)
class RootCause:
    """The step that produced the bad data behind a failure, and the chain that leads to it,
    traced live from the recorded calls by ``method`` (the pipelines' ``runtime_chain`` does the
    same on the warehouse's copy; other methods' results are :func:`method_result` lines)."""

    summary: str
    agent: str
    position: int
    chain: list[str]
    expected: str = ""
    actual: str = ""
    suggestions: tuple[str, ...] = ()
    method: str = "runtime_chain"


SUGGESTIONS = {
    "policy_violation": (
        "State the constraint in the producing agent's prompt (e.g. 'APR MUST be 2.5%-8.5%'), test the fix, "
        "then retry from the checkpoint.",
        "Tighten the hand-off constraints so the value is rejected before delivery.",
    ),
    "hallucination_detected": (
        "Edit the prompt to forbid the unsupported claim, test the fix, retry from the checkpoint.",
        "Restrict tool selection to the sources the agent must cite.",
    ),
    "stale_handoff": ("Retry from before the hand-off was sent, so it is rebuilt from current state.",),
    "handoff_rejected": (
        "Fix the producer's output schema or relax the receiver's constraints, then retry.",
    ),
    "high_value_operation": ("Approve if the amount is right; otherwise reject or edit the constraints.",),
    "exception": (
        "Check the tool's error; transient errors retry by themselves if the tool has a RetryPolicy.",
    ),
}


def root_cause(run_id: str) -> RootCause | None:
    """Trace a failure back to the step that produced the bad data (None for a healthy run)."""
    run = data.run(run_id)
    records = data.steps(run_id)
    if run is None or not records:
        return None
    failure = json.loads(run.attributes.get("failure", "{}"))
    failed = [s for s in records if s.status == "failed"]
    if not failure and not failed:
        failure = recovered_failure(run_id)  # a run that completed after a rollback and retry
    if not failure and not failed:
        return None
    found = culprit.trace(failure, records, default_position=failed[-1].position if failed else -1)
    position, trigger, agent, at = found.position, found.trigger, found.agent, found.failed
    evidence = failure.get("evidence", {})
    what = f"{at.kind} {at.name}" if at is not None else "the workflow"
    message = failure.get("message") or (at.error if at is not None else "")
    chain = [f"#{position} {what} ({agent}) failed" + (f": {message}" if message else "")]
    if trigger == "stale_handoff":
        chain.append(f"#{position} the message was sent from stale state: {evidence.get('reason', '')}")
    if found.producer is not None:
        producer = found.producer
        output = data.readable(producer.output_hash)
        chain.append(f"#{producer.position} {producer.kind} {producer.name} produced: {_short(output)}")
    if found.receive is not None:
        chain.append(f"#{found.receive.position} its input arrived by hand-off {found.receive.name}")
    expected = str(evidence.get("allowed", evidence.get("threshold", "")))
    actual = ", ".join(f"{k} = {v}" for k, v in evidence.items() if k not in ("allowed", "threshold", "gate"))
    return RootCause(
        summary=f"{trigger} in {agent or 'the workflow'}",
        agent=agent,
        position=found.culprit,
        chain=chain,
        expected=expected,
        actual=actual,
        suggestions=SUGGESTIONS.get(trigger, SUGGESTIONS["exception"]),
    )


def method_result(row: dict[str, Any]) -> str:
    """One method's root cause as the pipelines stored it (a row of ``omium_root_causes``), as a
    line naming its method and confidence: the step and agent it names, or **unknown** when the
    method named none at or above its threshold (its best guess, if any, is in its evidence), and
    a counterfactual replay's verdict (verified, not verified) when it has one. The run's label
    (``annotated_class``, ``annotated_by``), when the row carries one, is shown beside the class
    as its annotation."""
    verdict = str(row.get("verdict") or "known")
    method = f"{row['method']} (confidence {float(row['confidence']):.2f})"
    if verdict == "unknown" or int(row["step_index"]) < 0:
        said = "**unknown**: no agent and step at or above its threshold"
    else:
        said = f"step #{row['step_index']} of **{row['agent'] or 'the workflow'}**"
    # The class is what the classifier derived; the run's label, when one is known, sits beside it
    # as the annotation (never in its place).
    annotated = str(row.get("annotated_class") or "")
    if annotated not in ("", "unknown", "none"):
        by = f", {row['annotated_by']}" if row.get("annotated_by") else ""
        said_class = f"{row['failure_class']} (annotation: {annotated}{by})"
    else:
        said_class = str(row["failure_class"])
    line = f"Root cause: {said} · {said_class} · {method}"
    if verdict not in ("known", "unknown"):
        line += f" · **{verdict.replace('_', ' ')}** by counterfactual replay"
    return line


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "…"


def current_prompt(run_id: str, agent: str) -> str:
    """The system prompt the agent's last recorded model call used (to start an edit from)."""
    run = data.run(run_id)
    overrides = json.loads(run.attributes.get("overrides", "{}")) if run is not None else {}
    if f"{agent}.prompt" in overrides:
        return str(overrides[f"{agent}.prompt"])
    for step in reversed(data.steps(run_id)):
        if step.agent == agent and step.kind == "llm" and step.input_hash:
            arguments = data.value(step.input_hash)
            try:
                messages = arguments[0][0]
                return str(next(m["content"] for m in messages if m.get("role") == "system"))
            except (IndexError, KeyError, TypeError, StopIteration):
                continue
    return ""


def checkpoint_state(run_id: str, seq: int) -> dict[str, Any]:
    """The run's state as it stood at checkpoint ``seq``: what a rollback there keeps.

    A checkpoint records only the outputs of the calls inside its own block (an empty marker
    block, as between two agents, records none), so the state is rebuilt from the run's history:
    every call completed before the checkpoint's place, in the checkpoint's generation or an
    earlier one (a rollback's later tries are not part of it), and the values saved by it and the
    checkpoints before it. Outputs are keyed ``#position agent kind name``."""
    marks = {c.seq: c for c in data.checkpoints(run_id)}
    mark = marks[seq]
    at, generation = call_order(checkpoint_call_id(mark)), mark.generation
    latest: dict[str, StepRecord] = {}
    for step in data.steps(run_id):
        call = step_call_id(step)
        if step.status != "completed" or step.generation > generation or call_order(call) >= at:
            continue
        if call not in latest or step.generation >= latest[call].generation:
            latest[call] = step
    ordered = sorted(latest.values(), key=lambda s: call_order(step_call_id(s)))
    found = data.values(tuple(s.output_hash for s in ordered if s.output_hash))
    values: dict[str, Any] = {}
    for earlier in sorted(marks.values(), key=lambda c: c.seq):
        if earlier.seq <= seq and earlier.generation <= generation:
            values.update(data.value(earlier.state_hash).get("values", {}))
    return {
        "name": mark.name,
        "position": mark.step_index,
        "generation": generation,
        "outputs": {
            f"#{s.position} {s.agent or '-'} {s.kind} {s.name}": found.get(s.output_hash) for s in ordered
        },
        "values": values,
    }


def checkpoint_diff(run_id: str, first: int, second: int) -> pl.DataFrame:
    """What changed between two checkpoints' states (:func:`checkpoint_state`): outputs of the
    calls completed in between, and saved values added, changed or removed."""
    a, b = checkpoint_state(run_id, first), checkpoint_state(run_id, second)
    rows = []
    for section in ("outputs", "values"):
        before, after = a[section], b[section]
        for key in [*before, *(k for k in after if k not in before)]:
            if key not in after or key not in before or before[key] != after[key]:
                change = "added" if key not in before else "removed" if key not in after else "changed"
                value = after[key] if key in after else before[key]
                rows.append({"section": section, "key": key, "change": change, "value": _short(value)})
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"section": pl.String, "key": pl.String})


__all__ = [
    "Graph",
    "RootCause",
    "checkpoint_diff",
    "checkpoint_state",
    "choose_run",
    "current_prompt",
    "dependency_graph",
    "failed_at",
    "graph_figure",
    "handoff_verdicts",
    "root_cause",
    "steps_table",
    "timeline",
]
