"""Dependency edges, step features and run features, from one day's normalised spans.

Edges of a run:
- ``parent``: the agent of a span's parent to the span's agent, when they differ (delegation);
- ``handoff``: a hand-off's producer to its consumer (the span link), with rejected or stale
  verdicts counted as errors;
- ``state``: the agent that last wrote a shared-state key to the agent that read it;
- ``sequence``: one speaker to the next in a conversation (imported histories have no spans
  other than their steps, so turn-taking is their only dependency).

Features describe retries, repeated steps (loops), tool errors, rejected or stale hand-offs,
conflicts, latency outliers, token growth and the text of what was said; a step's features add
the shape-of-the-run features of :mod:`omium.models.attribution`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import Any

import polars as pl

from omium.models.attribution import PATTERNS, STEP_FEATURE_NAMES, step_features

STATE_READ, STATE_WRITE = "state_read ", "state_write "


def steps_of(spans: pl.DataFrame) -> pl.DataFrame:
    """The step spans of one or more runs (those with a step index), in order."""
    return spans.filter(pl.col("step_index") >= 0).sort(["run_id", "ts", "span_id"])


def run_edges(spans: pl.DataFrame, state_writers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Dependency edges of every run in ``spans`` (one day's normalised spans)."""
    state_writers = state_writers or {}
    rows: list[dict[str, Any]] = []
    by_id = {r["span_id"]: r for r in spans.select("span_id", "agent").iter_rows(named=True)}
    for (run_id,), run in spans.group_by(["run_id"], maintain_order=True):
        counts: Counter[tuple[str, str, str]] = Counter()
        errors: Counter[tuple[str, str, str]] = Counter()
        details: dict[tuple[str, str, str], str] = {}
        writers: dict[str, str] = {}
        ordered = run.sort(["ts", "span_id"]).iter_rows(named=True)
        previous_speaker = ""
        for span in ordered:
            agent = span["agent"]
            parent = by_id.get(span["parent_span_id"])
            if parent and parent["agent"] and agent and parent["agent"] != agent:
                counts[(parent["agent"], agent, "parent")] += 1
                errors[(parent["agent"], agent, "parent")] += span["status"] == "error"
            if span["producer_span_id"]:
                producer = by_id.get(span["producer_span_id"])
                if producer and producer["agent"] and agent:
                    key = (producer["agent"], agent, "handoff")
                    counts[key] += 1
                    if span["handoff_verdict"] in ("rejected", "stale"):
                        errors[key] += 1
                        details[key] = span["handoff_verdict"]
            name = span["span_name"]
            if name.startswith(STATE_WRITE):
                writers[name[len(STATE_WRITE) :]] = agent
            elif name.startswith(STATE_READ):
                state_key = name[len(STATE_READ) :]
                writer = writers.get(state_key) or state_writers.get(state_key, "")
                if writer and agent and writer != agent:
                    counts[(writer, agent, "state")] += 1
                    details[(writer, agent, "state")] = state_key
            if span["step_index"] >= 0 and span["role"] not in ("system",) and agent:
                if previous_speaker and previous_speaker != agent:
                    counts[(previous_speaker, agent, "sequence")] += 1
                    errors[(previous_speaker, agent, "sequence")] += span["status"] == "error"
                previous_speaker = agent
        day = run["day"][0]
        for (source, target, kind), count in counts.items():
            rows.append(
                {
                    "day": day,
                    "run_id": run_id,
                    "source": source,
                    "target": target,
                    "kind": kind,
                    "count": count,
                    "errors": errors[(source, target, kind)],
                    "detail": details.get((source, target, kind), ""),
                }
            )
    return rows


def _slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index (0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    denominator = sum((i - mean_x) ** 2 for i in range(n))
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / denominator


def _span_seconds(times: list[dt.datetime]) -> float:
    return (max(times) - min(times)).total_seconds() if times else 0.0


def run_features(spans: pl.DataFrame) -> list[dict[str, Any]]:
    """One feature map per run in ``spans``."""
    # A latency outlier is slower than three times the day's median for the same span name.
    medians = {
        r["span_name"]: r["median"]
        for r in spans.group_by("span_name")
        .agg(pl.col("duration_ms").median().alias("median"))
        .iter_rows(named=True)
    }
    rows = []
    for (run_id,), run in spans.group_by(["run_id"], maintain_order=True):
        run = run.sort(["ts", "span_id"])
        steps = run.filter(pl.col("step_index") >= 0)
        contents = [c for c in steps["content"].to_list() if c]
        positions = steps["step_index"].to_list()
        repeats = len(positions) - len(set(positions))
        names = [
            f"{a}|{n}" for a, n in zip(steps["agent"].to_list(), steps["span_name"].to_list(), strict=True)
        ]
        name_counts = Counter(names)
        loops = sum(c - 1 for c in name_counts.values() if c > 2)
        errors = run.filter(pl.col("status") == "error")
        tool_errors = errors.filter(pl.col("operation").is_in(["execute_tool", "tool"])).height
        tool_errors += sum(
            bool(PATTERNS["error"].search(c)) for c in steps.filter(pl.col("role") == "tool")["content"]
        )
        verdicts = run["handoff_verdict"].to_list()
        error_types = " ".join(run["error_type"].to_list()).lower()
        tokens = [
            float(a + b) for a, b in zip(run["input_tokens"], run["output_tokens"], strict=True) if a + b
        ]
        slow = sum(
            1
            for name, duration in zip(run["span_name"], run["duration_ms"], strict=True)
            if medians.get(name) and duration > 3 * medians[name] and duration > 10
        )
        length = max(1, len(contents))
        text = {f"share_{k}": sum(bool(p.search(c)) for c in contents) / length for k, p in PATTERNS.items()}
        features = {
            "spans": float(run.height),
            "steps": float(steps.height),
            "agents": float(run.filter(pl.col("agent") != "")["agent"].n_unique()),
            "duration_s": _span_seconds(run["ts"].to_list()),
            "error_spans": float(errors.height),
            "tool_errors": float(tool_errors),
            "retries": float(repeats),
            "loops": float(loops),
            "handoffs": float(sum(1 for v in verdicts if v)),
            "handoffs_rejected": float(verdicts.count("rejected")),
            "handoffs_stale": float(verdicts.count("stale")),
            "conflicts": float(error_types.count("conflict")),
            "guard_errors": float(errors.filter(pl.col("role").is_in(["guard", "gate"])).height),
            "latency_outliers": float(slow),
            "tokens": float(sum(tokens)),
            "token_growth": _slope(tokens),
            "log_mean_length": math.log1p(sum(len(c) for c in contents) / length),
            "tool_calls": float(sum(1 for t in steps["tool_calls"].to_list() if t)),
            **text,
        }
        rows.append(
            {
                "day": run["day"][0],
                "run_id": run_id,
                "source": run_id.split(":", 1)[0] if ":" in run_id else "live",
                "steps": steps.height,
                "features": features,
            }
        )
    return rows


def step_feature_rows(spans: pl.DataFrame) -> list[dict[str, Any]]:
    """One feature map per step of every run in ``spans``."""
    rows = []
    for (run_id,), run in steps_of(spans).group_by(["run_id"], maintain_order=True):
        agents = run["agent"].to_list()
        contents = run["content"].to_list()
        positions = run["step_index"].to_list()
        attempts = Counter(positions)
        shape = step_features(agents, contents)
        for i, row in enumerate(run.iter_rows(named=True)):
            features = dict(zip(STEP_FEATURE_NAMES, (float(v) for v in shape[i]), strict=True))
            features |= {
                "error": float(row["status"] == "error"),
                "duration_ms": float(row["duration_ms"]),
                "tokens": float(row["input_tokens"] + row["output_tokens"]),
                "attempts": float(attempts[row["step_index"]]),
                "handoff_rejected": float(row["handoff_verdict"] in ("rejected", "stale")),
            }
            rows.append(
                {
                    "day": row["day"],
                    "run_id": run_id,
                    "step_index": row["step_index"],
                    "span_id": row["span_id"],
                    "agent": row["agent"],
                    "features": features,
                }
            )
    return rows


def insert_rows(warehouse: Any, table: str, rows: list[dict[str, Any]], *, stamp: str = "built_at") -> int:
    """Insert ``rows`` (dicts with the same keys) into ``table``, stamped now in column ``stamp``.

    The stamp is the version of a ReplacingMergeTree: a rebuild replaces what it rebuilt.
    """
    if not rows:
        return 0
    now = dt.datetime.now(dt.UTC)
    names = [*rows[0], stamp]
    columns = [[r[n] for r in rows] for n in names[:-1]] + [[now] * len(rows)]
    warehouse.insert(table, columns, names)
    return len(rows)


AGENT_EDGES = """
INSERT INTO omium_agent_edges
WITH
    {day:Date} AS d,
    e AS (
        SELECT run_id, source, target, sum(count) AS calls, sum(errors) AS errors
        FROM omium_run_edges FINAL WHERE day = d GROUP BY run_id, source, target
    ),
    s AS (
        SELECT run_id, agent, duration_ms, input_tokens + output_tokens AS tokens
        FROM omium_normalized_spans FINAL WHERE day = d AND step_index >= 0
    ),
    latency AS (
        SELECT e.source AS source, e.target AS target, quantile(0.5)(s.duration_ms) AS p50_ms,
               quantile(0.95)(s.duration_ms) AS p95_ms, sum(s.tokens) AS tokens
        FROM e INNER JOIN s ON s.run_id = e.run_id AND s.agent = e.target
        GROUP BY source, target
    )
SELECT d, e.source, e.target, uniqExact(e.run_id), sum(e.calls), sum(e.errors),
       sum(e.errors) / greatest(sum(e.calls), 1), any(latency.p50_ms), any(latency.p95_ms),
       any(latency.tokens), now64(6)
FROM e LEFT JOIN latency ON latency.source = e.source AND latency.target = e.target
GROUP BY e.source, e.target
"""


def agent_edges(warehouse: Any, day: dt.date) -> int:
    """Build the cross-run agent graph of ``day`` from its run edges; returns the edges written."""
    warehouse.command(AGENT_EDGES, {"day": day})
    return int(
        warehouse.scalar("SELECT count() FROM omium_agent_edges FINAL WHERE day = {day:Date}", {"day": day})
    )


__all__ = ["agent_edges", "insert_rows", "run_edges", "run_features", "step_feature_rows", "steps_of"]
