"""Leave-one-framework-out evaluation of root-cause attribution, beside trivial baselines.

For each framework (a source of runs: a framework's convention, or an imported dataset), the
:class:`~omium.models.attribution.Attributor` is fitted on every other framework's runs and scored
on that framework's runs only — :func:`splits` is the one place that decides, and its test asserts
that no held-out run is trained on. Each figure is a mean over seeds with a 95% interval from a
bootstrap over the held-out runs. The trivial baselines are measured on the same held-out runs
and need no training: the run's most frequent speaker, its most talkative agent other than the
one that opened the run (the orchestrator, by position), the last step, the first error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from omium.models.attribution import PATTERNS, Attributor, Step

METHOD = "Omium attribution model"
BASELINES = ("most frequent agent", "most talkative non-orchestrator", "last step", "first error")


@dataclass(frozen=True)
class Labelled:
    """A failed run with its decisive step (a position in ``steps``) and its framework."""

    run_id: str
    framework: str
    steps: tuple[Step, ...]
    mistake: int
    responsible: str = ""  # the labelled agent, when the label names one (else the step's speaker)

    @property
    def agent(self) -> str:
        """The responsible agent (case folded)."""
        return (self.responsible or self.steps[self.mistake].agent).lower()


@dataclass(frozen=True)
class Score:
    """An accuracy (%) with its 95% interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.1f} [{self.low:.1f}, {self.high:.1f}]"


def splits(runs: Sequence[Labelled]) -> Iterator[tuple[str, list[int], list[int]]]:
    """(held-out framework, training indices, test indices) for every framework."""
    for held in sorted({r.framework for r in runs}):
        train = [i for i, r in enumerate(runs) if r.framework != held]
        test = [i for i, r in enumerate(runs) if r.framework == held]
        yield held, train, test


def interval(hits: np.ndarray, seed: int = 0, resamples: int = 1000) -> Score:
    """Mean of per-run hit rates (%) with a percentile bootstrap interval over runs."""
    if hits.size == 0:
        return Score(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, hits.size, (resamples, hits.size))].mean(axis=1)
    return Score(
        100 * float(hits.mean()),
        100 * float(np.quantile(means, 0.025)),
        100 * float(np.quantile(means, 0.975)),
    )


def baseline_guesses(steps: Sequence[Step]) -> dict[str, tuple[str, int]]:
    """The trivial baselines' (agent, step) for one run; -1: the baseline names no step."""
    speakers = Counter(s.agent.lower() for s in steps)
    opener = steps[0].agent.lower()
    others = Counter(s.agent.lower() for s in steps if s.agent.lower() != opener and not s.tool)
    last = len(steps) - 1
    errors = [i for i, s in enumerate(steps) if s.error or PATTERNS["error"].search(s.content)]
    first_error = errors[0] if errors else last
    return {
        "most frequent agent": (speakers.most_common(1)[0][0], -1),
        "most talkative non-orchestrator": ((others or speakers).most_common(1)[0][0], -1),
        "last step": (steps[last].agent.lower(), last),
        "first error": (steps[first_error].agent.lower(), first_error),
    }


@dataclass(frozen=True)
class HeldOut:
    """One held-out framework's figures."""

    framework: str
    runs: int
    trained_on: tuple[str, ...]
    agent: dict[str, Score]
    step: dict[str, Score]
    coverage: float  # share of runs the model named an agent for (confidence >= threshold)
    selective_agent: float  # agent accuracy on those runs (%)
    brier_agent: float  # of the calibrated agent confidence


def evaluate(runs: Sequence[Labelled], seeds: int = 3, threshold: float = 0.35) -> list[HeldOut]:
    """Leave-one-framework-out figures of the attribution model and the baselines.

    Raises:
        ValueError: fewer than two frameworks (nothing to fit on when the only one is held out);
            the message names the frameworks found.
    """
    frameworks = Counter(r.framework for r in runs)
    if len(frameworks) < 2:
        named = ", ".join(f"{name} ({count} runs)" for name, count in sorted(frameworks.items()))
        raise ValueError(
            f"{len(frameworks)} framework(s) of labelled runs ({named or 'none'}): a leave-one-framework-out "
            "evaluation scores each framework by a model fitted on the others, so at least two are needed"
        )
    out = []
    for held, train, test in splits(runs):
        train_runs = [runs[i] for i in train]
        test_runs = [runs[i] for i in test]
        agent_hits = np.zeros((seeds, len(test)))
        step_hits = np.zeros((seeds, len(test)))
        covered = np.zeros((seeds, len(test)))
        confidence = np.zeros((seeds, len(test)))
        for seed in range(seeds):
            model = Attributor(threshold=threshold, seed=seed).fit(
                [r.steps for r in train_runs],
                [r.mistake for r in train_runs],
                [r.framework for r in train_runs],
            )
            for j, run in enumerate(test_runs):
                found = model.attribute(run.steps)
                agent_hits[seed, j] = found.guess.lower() == run.agent
                step_hits[seed, j] = found.position == run.mistake
                covered[seed, j] = found.known
                confidence[seed, j] = found.agent_confidence
        agent = {"Omium attribution model": interval(agent_hits.mean(axis=0))}
        step = {"Omium attribution model": interval(step_hits.mean(axis=0))}
        guesses = [baseline_guesses(r.steps) for r in test_runs]
        for name in BASELINES:
            agent[name] = interval(
                np.array([g[name][0] == r.agent for g, r in zip(guesses, test_runs, strict=True)], float)
            )
            if guesses and guesses[0][name][1] >= 0:
                step[name] = interval(
                    np.array(
                        [g[name][1] == r.mistake for g, r in zip(guesses, test_runs, strict=True)], float
                    )
                )
        mask = covered.astype(bool)
        out.append(
            HeldOut(
                held,
                len(test),
                tuple(sorted({r.framework for r in train_runs})),
                agent,
                step,
                float(mask.mean()) if mask.size else 0.0,
                100 * float(agent_hits[mask].mean()) if mask.any() else float("nan"),
                float(((confidence - agent_hits) ** 2).mean()) if confidence.size else float("nan"),
            )
        )
    return out


__all__ = [
    "BASELINES",
    "METHOD",
    "HeldOut",
    "Labelled",
    "Score",
    "baseline_guesses",
    "evaluate",
    "interval",
    "splits",
]
