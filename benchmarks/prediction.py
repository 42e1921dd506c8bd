"""Failure prediction on tau-bench airline: AUROC of the risk that a run fails, from its first k turns.

One command, no LLM:

    python benchmarks/prediction.py [--seeds 3]

200 runs of a GPT-4o airline agent (50 tasks x 4 trials). For k = 2, 4, 8 and both definitions
of a turn (see ``omium.models.prediction``: a *message* after the system prompt, or an
*exchange* = a customer message with the agent's messages and tool results up to the next one),
each model sees only the first k turns of a run. Honest held-out evaluation: 5-fold
cross-validation grouped by task (GroupKFold on task_id: no task is scored by a model fitted on
any of its runs), repeated over ``--seeds`` shuffles; the AUROC of the pooled out-of-fold scores,
mean ± standard deviation over shuffles. Every model is fitted inside the folds, vocabularies
included. Baselines are measured in the same run: a constant score, and a logistic regression on
the prefix's length only (steps and characters).

The goal from the product issue: AUROC >= 0.75 at k = 4, for the model ``make_predictor()``
(the counted signals). The text ensemble (``make_predictor(text=True)``) is reported beside it.
Hyperparameters and the choice of model were fixed on 40 of the 50 tasks (task_id % 5 != 4) and
checked on the other 10 before this benchmark was written: they are not tuned on these folds,
but the same data informed the design, so read the figures as slightly optimistic. With 50
tasks the spread over shuffles understates the real uncertainty (roughly ±0.07 for one AUROC).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR

from omium.models.prediction import Unit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tau_bench" / "gpt-4o-airline.json"
GOAL = 0.75
GOAL_K = 4
KS = (2, 4, 8)
UNITS: tuple[Unit, ...] = ("message", "exchange")


def _constant(seed: int) -> Any:
    """The same score for every run (not the training base rate, which varies by fold)."""
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="constant", constant=1)


def _ensemble(seed: int) -> Any:
    from omium.models.prediction import make_predictor

    return make_predictor(seed, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="shuffles of the grouped 5-fold CV")
    args = parser.parse_args()
    from omium.importers import read_tau_bench
    from omium.models.prediction import MODEL_NAME, evaluate, make_length_baseline, make_predictor

    runs = read_tau_bench(DATA)
    steps = [r.steps for r in runs]
    labels = [int(r.failed) for r in runs]
    groups = [r.task_id for r in runs]
    models = {
        "constant (0.5)": _constant,
        "length only (steps, characters)": make_length_baseline,
        f"{MODEL_NAME} (counted signals)": make_predictor,
        f"{MODEL_NAME} ensemble (+ agent words, actions)": _ensemble,
    }
    main_model = f"{MODEL_NAME} (counted signals)"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "data": DATA.name,
        "runs": len(runs),
        "tasks": len(set(groups)),
        "failed": sum(labels),
        "seeds": args.seeds,
        "cv": "GroupKFold(5, shuffle) by task_id, pooled out-of-fold AUROC per shuffle",
        "goal": {"auroc": GOAL, "k": GOAL_K, "model": main_model},
        "table": [],
    }
    print(
        f"tau-bench airline (GPT-4o): {len(runs)} runs, {len(set(groups))} tasks, {sum(labels)} failed; "
        f"5-fold CV grouped by task x {args.seeds} shuffles\n"
    )
    print(
        "turn unit | k | runs already ended | model | AUROC mean ± std | mean AUROC within folds "
        "| AUROC on runs not yet ended"
    )
    for unit in UNITS:
        for k in KS:
            for name, make in models.items():
                row = evaluate(steps, labels, groups, k, unit, seeds=args.seeds, make=make)
                row["model"] = name
                results["table"].append(row)
                print(
                    f"{unit} | {k} | {row['finished']}/{row['runs']} | {name} | "
                    f"{row['auroc_mean']:.3f} ± {row['auroc_std']:.3f} | {row['fold_auroc_mean']:.3f} | "
                    f"{row['unfinished_auroc_mean']:.3f}",
                    flush=True,
                )
    verdict = {}
    for unit in UNITS:
        for row in results["table"]:
            if row["unit"] == unit and row["k"] == GOAL_K and row["model"] == main_model:
                verdict[unit] = {"auroc": row["auroc_mean"], "met": row["auroc_mean"] >= GOAL}
    results["verdict"] = verdict
    results["seconds"] = round(time.perf_counter() - started, 1)
    met = [unit for unit, v in verdict.items() if v["met"]]
    print()
    for unit, v in verdict.items():
        print(
            f"goal AUROC >= {GOAL} at k = {GOAL_K}, turn = {unit}: "
            f"{'MET' if v['met'] else 'NOT MET'} ({v['auroc']:.3f}, {main_model})"
        )
    print(
        f"the goal is met under: {', '.join(met)}"
        if met
        else "the goal is met under neither definition of a turn"
    )
    print(f"({results['seconds']:.0f} s)")
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "prediction.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
