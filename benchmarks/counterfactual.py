"""Counterfactual verification of root causes: how often the injected culprit is verified, and
how often a step that is not the culprit is (a false verification).

One command from a fresh clone, no LLM, no network:

    python benchmarks/counterfactual.py            # 30 runs per seed, 3 seeds
    python benchmarks/counterfactual.py --quick    # 12 runs per seed, 2 seeds

Runs: the plain-SDK fault team of omium.models.fault_team (3-5 agents with neutral names, each
agent's scripted model reacting to what it is handed), one fault per run cycling through the six
kinds (hallucination, wrong tool arguments, dropped and stale hand-off, role violation, premature
termination), injected into one model call's recorded sample; the last agent's answer is checked
against the record, so the run fails; the ground truth is the faulty call's position. Each run is
recorded in a throwaway SQLite control database (the embedded default's code).

Verification (omium.recovery.counterfactual.verify, the budget below) is run on two candidate
orders, each stopping at the first verified step or (``earliest``) going on to the candidates before
it and naming the earliest verified:

- runtime chain: the culprit omium.models.culprit names, then earlier calls walking back;
- attribution model: the no-LLM attribution model (omium.models.attribution.Attributor) fitted on
  omium.models.fault_injection's plain-SDK scenarios (another generator: it never saw these runs),
  its steps ranked by score.

And a false-verification sweep: every call of the run that is not the culprit, verified alone.

Two settings: the team as it is, and one where a fresh sample of the last agent's call rechecks
the record with probability --repair (0.5): re-sampling that later call removes the failure too,
though it did not cause it (a repair point).

Reported: share of runs whose culprit step is named (verified); false verifications (runs whose
named root cause is another step); other steps verified on the way; inconclusive share (the
budget ran out before a verdict); how often the first candidate is the culprit (what the order
gives without verification); forks and seconds per run (median).
Written to .bench/counterfactual.json.

Caveat: apart from the repair setting, the scripted models' only randomness is the injected fault,
so a call that is not the culprit re-samples to the same words; a false verification there can only
come from the machinery (a fork losing the fault, a re-run answered from the wrong recording). With
a real LLM a re-sample of any call may differ, and ``samples`` > 1 trades forks for confidence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR


def fit_model(seed: int) -> Any:
    """The attribution model, fitted on fault_injection's plain-SDK scenarios (not these runs)."""
    from omium.models import fault_injection
    from omium.models.attribution import Attributor

    made = fault_injection.scenarios(1000 + seed, 180, "train")
    runs, mistakes = zip(*(fault_injection.plain_steps(one) for one in made), strict=True)
    return Attributor(seed=seed).fit(list(runs), list(mistakes))


def _text(value: Any) -> str:
    return str(getattr(value, "text", value))


def model_candidates(store: Any, run_id: str, model: Any) -> list[int]:
    """The run's model, tool and step calls ranked by the attribution model's score."""
    import numpy as np

    from omium.models.attribution import Step, step_features
    from omium.recovery.counterfactual import CANDIDATE_KINDS
    from omium.sdk import serde

    by_position: dict[int, list[Any]] = {}
    for record in store.steps(run_id):
        by_position.setdefault(record.position, []).append(record)
    positions = sorted(by_position)
    steps = []
    for p in positions:
        records = by_position[p]
        done = next((r for r in records if r.status == "completed"), None)
        content = _text(serde.loads(store.get_blob(done.output_hash))) if done and done.output_hash else ""
        errors = [r.error for r in records if r.status == "failed"]
        steps.append(
            Step(records[0].agent, content or "; ".join(errors), bool(errors), records[0].kind == "tool")
        )
    scores = model.model.predict_proba(np.vstack(step_features(steps)))[:, 1]
    ranked = sorted(range(len(positions)), key=lambda i: -scores[i])
    callable_ = {
        p
        for p, rs in by_position.items()
        if any(r.status == "completed" and r.kind in CANDIDATE_KINDS for r in rs)
    }
    return [positions[i] for i in ranked if positions[i] in callable_]


def judge(results: list[Any], culprit: int) -> dict[str, Any]:
    """One run's verification, scored against the ground truth: the root cause it names (the
    first verified step, or with ``earliest`` the earliest) is the culprit, or a false one."""
    from omium.recovery.counterfactual import root_cause

    cause = root_cause(results)
    return {
        "culprit_verified": cause is not None and cause.step == culprit,
        "false": cause is not None and cause.step != culprit,
        "other_steps_verified": sum(v.verified and v.step != culprit for v in results),
        "inconclusive": cause is None and any(v.outcome == "inconclusive" for v in results),
        "first_is_culprit": bool(results) and results[0].step == culprit,
        "forks": sum(v.forks for v in results),
    }


METHODS = (
    ("runtime chain", "chain", False),
    ("runtime chain, earliest verified", "chain", True),
    ("attribution model", "model", False),
    ("attribution model, earliest verified", "model", True),
)


def measure(
    seeds: int, count: int, repair: float, args: argparse.Namespace, models: list[Any]
) -> dict[str, Any]:
    """Every method and the sweep over ``seeds`` x ``count`` runs whose last agent repairs with
    probability ``repair`` when re-sampled; prints and returns the table's figures."""
    from omium.models import fault_team
    from omium.recovery.counterfactual import Budget, chain_candidates, verify
    from omium.sdk.store import MemoryStore

    budget = Budget(args.max_forks, args.max_calls)
    workflows = {fault_team.WORKFLOW: fault_team.team}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in METHODS}
    seconds: dict[str, list[float]] = {name: [] for name in [*rows, "sweep"]}
    sweep: list[tuple[int, int]] = []  # (non-culprit steps tried, verified) per run
    by_fault: dict[str, Counter[str]] = {}
    for seed in range(seeds):
        store = MemoryStore()
        for one in fault_team.scenarios(seed, count, prefix=f"bench-{repair}", repair=repair):
            assert not fault_team.run(one, store), f"{one.run_id} did not fail"
            culprit = fault_team.fault_position(store.steps(one.run_id), one)
            orders = {
                "chain": chain_candidates(store, one.run_id),
                "model": model_candidates(store, one.run_id, models[seed]),
            }
            for name, order, earliest in METHODS:
                t0 = time.perf_counter()
                results = verify(
                    one.run_id,
                    orders[order],
                    store=store,
                    workflows=workflows,
                    budget=budget,
                    samples=args.samples,
                    earliest=earliest,
                )
                seconds[name].append(time.perf_counter() - t0)
                judged = judge(results, culprit)
                rows[name].append(judged)
                if name == "runtime chain":
                    tally = by_fault.setdefault(one.fault, Counter())
                    tally["runs"] += 1
                    tally["verified"] += judged["culprit_verified"]
            # The sweep: each call that is not the culprit, verified alone (one fork each).
            others = [p for p in orders["chain"] if p != culprit]
            t0 = time.perf_counter()
            verified = sum(
                verify(one.run_id, [p], store=store, workflows=workflows, samples=args.samples)[0].verified
                for p in others
            )
            seconds["sweep"].append(time.perf_counter() - t0)
            sweep.append((len(others), verified))
        store.close()

    def share(items: list[dict[str, Any]], key: str) -> float:
        return 100.0 * sum(bool(r[key]) for r in items) / max(len(items), 1)

    print(
        f"\nlast agent's re-sample repairs the run with probability {repair:g}: {seeds} seeds x {count} runs, "
        f"{budget}\n"
    )
    print(
        "candidates | runs | culprit verified % | false verifications (runs) | other steps verified "
        "| inconclusive % | first candidate is culprit % | forks/run (median) | s/run (median)"
    )
    print("---|---|---|---|---|---|---|---|---")
    summary: dict[str, Any] = {}
    for name, _, _ in METHODS:
        items = rows[name]
        summary[name] = f = {
            "runs": len(items),
            "culprit_verified_pct": share(items, "culprit_verified"),
            "false_verifications": sum(bool(r["false"]) for r in items),
            "other_steps_verified": sum(r["other_steps_verified"] for r in items),
            "inconclusive_pct": share(items, "inconclusive"),
            "first_candidate_is_culprit_pct": share(items, "first_is_culprit"),
            "forks_per_run_median": statistics.median(r["forks"] for r in items),
            "seconds_per_run_median": statistics.median(seconds[name]),
        }
        print(
            f"{name} | {f['runs']} | {f['culprit_verified_pct']:.1f} | {f['false_verifications']} | "
            f"{f['other_steps_verified']} | {f['inconclusive_pct']:.1f} | {f['first_candidate_is_culprit_pct']:.1f} | "
            f"{f['forks_per_run_median']:g} | {f['seconds_per_run_median']:.3f}"
        )
    tried, verified = sum(t for t, _ in sweep), sum(v for _, v in sweep)
    summary["every non-culprit call alone"] = {
        "runs": len(sweep),
        "steps_tried": tried,
        "false_verifications": verified,
        "forks_per_run_median": statistics.median(t for t, _ in sweep),
        "seconds_per_run_median": statistics.median(seconds["sweep"]),
    }
    print(
        f"every non-culprit call alone | {len(sweep)} | - | {verified} of {tried} steps | - | - | - | "
        f"{statistics.median(t for t, _ in sweep):g} | {statistics.median(seconds['sweep']):.3f}"
    )
    print("\nfault (runtime chain, first verified) | runs | culprit verified %")
    print("---|---|---")
    for fault, tally in sorted(by_fault.items()):
        print(f"{fault} | {tally['runs']} | {100.0 * tally['verified'] / tally['runs']:.1f}")
    summary["by_fault_runtime_chain"] = {f: dict(t) for f, t in by_fault.items()}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="12 runs per seed, 2 seeds")
    parser.add_argument("--runs", type=int, default=None, help="runs per seed (default 30)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3)")
    parser.add_argument("--max-forks", type=int, default=8, help="forks per verification (default 8)")
    parser.add_argument("--max-calls", type=int, default=400, help="re-executed calls per verification")
    parser.add_argument("--samples", type=int, default=1, help="fresh samples per candidate (default 1)")
    parser.add_argument(
        "--repair",
        type=float,
        default=0.5,
        help="second setting: the last agent's re-sample repairs (default 0.5)",
    )
    args = parser.parse_args()
    count = args.runs or (12 if args.quick else 30)
    seeds = args.seeds or (2 if args.quick else 3)
    started = time.perf_counter()
    models = [fit_model(seed) for seed in range(seeds)]
    settings = {
        f"repair {r:g}": measure(seeds, count, r, args, models) for r in dict.fromkeys((0.0, args.repair))
    }
    total = time.perf_counter() - started
    print(f"\n{total:.1f}s in all")
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "counterfactual.json").write_text(
        json.dumps(
            {
                "seeds": seeds,
                "runs_per_seed": count,
                "budget": {"max_forks": args.max_forks, "max_calls": args.max_calls},
                "samples": args.samples,
                "seconds": total,
                "settings": settings,
            },
            indent=2,
        )
    )
    print(f"written: {BENCH_DIR / 'counterfactual.json'}")


if __name__ == "__main__":
    main()
