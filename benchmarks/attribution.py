"""Root-cause attribution on Who&When (algorithm-generated): agent- and step-level accuracy.

One command, no LLM:

    python benchmarks/attribution.py

Honest held-out evaluation: 5-fold cross-validation grouped by question (no question is scored
by a model fitted on it), repeated over 3 shuffles; and, for generalisation to systems the model
was not fitted on, folds grouped by team (the set of agents in the run), so the scored teams were
never seen in training. Compared with the published GPT-4o baselines and with trivial baselines
measured here (fitted on the training folds where they learn anything).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BENCH_DIR

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "who_and_when" / "algorithm_generated"
PUBLISHED = {
    "random (published)": (29.1, 19.1),
    "all-at-once GPT-4o (published)": (54.3, 12.5),
    "step-by-step GPT-4o (published)": (35.2, 25.5),
    "binary search GPT-4o (published)": (44.1, 24.0),
}


def evaluate(runs, data, groups, seeds: int) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    from omium.models.attribution import attribute, candidates, make_model

    cands = candidates(data)
    features = np.vstack([c.features for c in cands])
    labels = np.array([int(c.position == runs[c.run].mistake_step) for c in cands])
    owners = np.array([c.run for c in cands])
    hits: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    scored = 0
    for seed in range(seeds):
        folds = GroupKFold(n_splits=5, shuffle=True, random_state=seed)
        for train, test in folds.split(np.arange(len(runs)), groups=groups):
            model = make_model(seed).fit(features[np.isin(owners, train)], labels[np.isin(owners, train)])
            common_agent = collections.Counter(runs[i].mistake_agent.lower() for i in train).most_common(1)[
                0
            ][0]
            common_step = collections.Counter(runs[i].mistake_step for i in train).most_common(1)[0][0]
            for i in test:
                agents, _ = data[i]
                truth_agent, truth_step = runs[i].mistake_agent.lower(), runs[i].mistake_step
                talkative = collections.Counter(a.lower() for a in agents if "terminal" not in a.lower())
                guesses = {
                    "Omium attribution model": (
                        attribute(model, *data[i]).agent.lower(),
                        attribute(model, *data[i]).position,
                    ),
                    "always the most frequent agent / step (fitted)": (common_agent, common_step),
                    "most talkative agent / first step": (
                        talkative.most_common(1)[0][0] if talkative else "",
                        0,
                    ),
                    "first speaker / last step": (agents[0].lower(), len(agents) - 1),
                }
                for name, (agent, step) in guesses.items():
                    hits[name][0] += agent == truth_agent
                    hits[name][1] += step == truth_step
                scored += 1
    return {name: (100 * a / scored, 100 * s / scored) for name, (a, s) in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    from omium.importers import read_who_and_when

    runs = read_who_and_when(DATA)
    data = [([s.agent for s in r.steps], [s.content for s in r.steps]) for r in runs]
    by_question = np.array([r.task_id for r in runs])
    by_team = np.array(["|".join(sorted({s.agent.lower() for s in r.steps})) for r in runs])
    results = {
        "grouped by question": evaluate(runs, data, by_question, args.seeds),
        "grouped by team (unseen systems)": evaluate(runs, data, by_team, args.seeds),
    }
    print(
        f"Who&When algorithm-generated: {len(runs)} failed runs, {sum(len(r.steps) for r in runs)} steps; "
        f"5-fold CV x {args.seeds}\n"
    )
    print("method | agent-level % | step-level %")
    for name, (agent, step) in PUBLISHED.items():
        print(f"{name} | {agent:.1f} | {step:.1f}")
    for split, table in results.items():
        for name, (agent, step) in table.items():
            print(f"{name} [{split}] | {agent:.1f} | {step:.1f}")
    (BENCH_DIR / "attribution.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
