"""Root-cause attribution, leave one framework out: agent- and step-level accuracy on a framework
the model was never trained on, beside that framework's trivial baselines.

One command from a fresh clone, no LLM, no network:

    python benchmarks/attribution.py            # 75 runs per framework, 5 seeds
    python benchmarks/attribution.py --quick    # 18 runs per framework, 2 seeds

The "frameworks": failures generated with exact ground truth by injecting faults into small
multi-agent workflows (omium.models.fault_injection) run through Omium's plain SDK and its
LangGraph, AG2 and OpenAI Agents SDK adapters with scripted fake models — their spans written to
a fresh embedded warehouse by each framework's tracing path and normalised by the pipelines —
and the Who&When algorithm-generated subset (CaptainAgent on AG2, GPT-4o; ../shared/data),
imported as a user would. Who&When's hand-crafted subset, Magentic-One logs, AgentRx's data and
tau-bench retail are not read: they are kept for independent evaluation. CrewAI is not among the
frameworks: it lives in its own venv (.venv-crewai), see the closing note of issue 18.

For each framework: the model is fitted on every other framework (its confidence calibrated on
out-of-fold predictions grouped by framework) and scored on this one; figures are means over seeds
with 95% bootstrap intervals over the held-out runs. Baselines need no training and are measured
on the same runs. Published Who&When figures (GPT-4o, algorithm-generated) are printed beside.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR

ROOT = Path(__file__).resolve().parents[1]
WHO = ROOT.parent / "shared" / "data" / "who_and_when" / "algorithm_generated"
PUBLISHED = {  # Who&When algorithm-generated, GPT-4o with ground truth: agent % / step %
    "random (published)": (29.1, 19.1),
    "all-at-once GPT-4o (published)": (54.3, 12.5),
    "step-by-step GPT-4o (published)": (35.2, 25.5),
    "binary search GPT-4o (published)": (44.1, 24.0),
}


def build(count: int, seed: int, home: Path) -> tuple[Any, list[Any]]:
    """Generate, import and normalise into a fresh warehouse; the labelled runs read back."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from omium.config import Settings
    from omium.importers import read_who_and_when
    from omium.importers import write as import_runs
    from omium.models import fault_injection
    from omium.warehouse import connect
    from omium.warehouse.span_exporter import WarehouseSpanExporter

    wh = connect(Settings(home=home, database=f"bench_{uuid.uuid4().hex[:8]}"), mode="embedded")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(WarehouseSpanExporter(wh), max_export_batch_size=2048))
    started = time.perf_counter()
    generated = fault_injection.generate(provider, count=count, seed=seed)
    provider.shutdown()
    print(f"generated {count} runs x {len(generated)} frameworks in {time.perf_counter() - started:.1f}s")
    who = read_who_and_when(WHO)
    import_runs(wh, who)
    labelled = fault_injection.label(wh, generated)
    print(f"labelled on their spans: {labelled}; Who&When imported: {len(who)} runs")
    return wh, read_labelled(wh)


def read_labelled(wh: Any) -> list[Any]:
    """Every run with a decisive step in omium_ground_truth, its steps as the pipelines see them."""
    import polars as pl

    from omium.models.attribution_eval import Labelled
    from omium.pipelines.root_causes import run_steps

    truth = wh.query_df(
        "SELECT run_id, source, mistake_agent, mistake_step FROM omium_ground_truth FINAL "
        "WHERE mistake_step >= 0 ORDER BY run_id"
    )
    spans = wh.query_df(
        "SELECT run_id, step_index, span_id, agent, role, content, tool_calls, status "
        "FROM omium_normalized_spans FINAL WHERE step_index >= 0 AND run_id IN {ids:Array(String)} "
        "ORDER BY run_id, ts, span_id",
        {"ids": truth["run_id"].to_list()},
    )
    by_run = {run_id: run for (run_id,), run in spans.group_by(["run_id"], maintain_order=True)}
    out = []
    for row in truth.iter_rows(named=True):
        run = by_run.get(row["run_id"], pl.DataFrame(schema=spans.schema))
        indices, steps, _ = run_steps(run)
        if row["mistake_step"] not in indices:
            continue
        out.append(
            Labelled(
                row["run_id"],
                row["source"],
                tuple(steps),
                indices.index(row["mistake_step"]),
                row["mistake_agent"],
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="18 runs per framework, 2 seeds")
    parser.add_argument("--runs", type=int, default=None, help="generated runs per framework (default 75)")
    parser.add_argument("--seeds", type=int, default=None, help="model seeds (default 5)")
    parser.add_argument("--threshold", type=float, default=0.35, help="agent confidence below which: unknown")
    args = parser.parse_args()
    count = args.runs or (18 if args.quick else 75)
    seeds = args.seeds or (2 if args.quick else 5)
    from omium.models.attribution_eval import evaluate

    with tempfile.TemporaryDirectory(prefix="omium-attribution-") as home:
        wh, runs = build(count, 0, Path(home))
        wh.close()
    started = time.perf_counter()
    results = evaluate(runs, seeds=seeds, threshold=args.threshold)
    print(
        f"leave-one-framework-out over {len(runs)} runs, {seeds} seeds: {time.perf_counter() - started:.1f}s\n"
    )
    print("held-out framework | runs | method | agent % [95% CI] | step % [95% CI]")
    print("---|---|---|---|---")
    for r in results:
        for name, agent in r.agent.items():
            step = r.step.get(name)
            print(f"{r.framework} | {r.runs} | {name} | {agent} | {step if step is not None else '-'}")
        print(
            f"{r.framework} | {r.runs} | (model: named an agent for {r.coverage:.0%} of runs at confidence "
            f">= {args.threshold}, {r.selective_agent:.1f}% right there; Brier {r.brier_agent:.3f}) | | "
        )
    for name, (agent, step) in PUBLISHED.items():
        print(f"who_and_when | 126 | {name} | {agent:.1f} | {step:.1f}")
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "attribution.json").write_text(
        json.dumps(
            {
                "runs_per_framework": count,
                "seeds": seeds,
                "threshold": args.threshold,
                "held_out": [
                    {
                        "framework": r.framework,
                        "runs": r.runs,
                        "trained_on": r.trained_on,
                        "agent": {k: vars(v) for k, v in r.agent.items()},
                        "step": {k: vars(v) for k, v in r.step.items()},
                        "coverage": r.coverage,
                        "selective_agent": r.selective_agent,
                        "brier_agent": r.brier_agent,
                    }
                    for r in results
                ],
                "published": PUBLISHED,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
