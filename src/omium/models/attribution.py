"""Root-cause attribution without an LLM: which step (and so which agent) caused a failed run.

Every step of a failed run is a candidate, described by features that carry over to multi-agent
systems the model never saw: where the step sits in the run, what kind of speaker it is (a tool or
terminal, a human proxy, a planner, an expert), how it relates to the steps around it (first
answer after a tool result, a repeated claim, a change of speaker), and what its content does
(code, numbers, an error, a final answer, hedging, verification words). Agent names are never
features: nothing is looked up by name. A classifier scores the candidates; the highest-scoring
step of a run is its predicted decisive error, and its speaker the responsible agent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Words that mark what a step does, independent of who says it.
PATTERNS = {
    "code": re.compile(r"```|def |import |print\("),
    "error": re.compile(r"error|exception|traceback|failed|exitcode: 1|not found|cannot", re.I),
    "success_exit": re.compile(r"exitcode: 0", re.I),
    "final": re.compile(r"terminate|final answer|the answer is|in conclusion", re.I),
    "verify": re.compile(r"verif|double-check|confirm|validate", re.I),
    "hedge": re.compile(r"assum|approximately|likely|might|probably|estimate", re.I),
    "plan": re.compile(r"plan|step \d|steps?:|first,|next,", re.I),
    "number": re.compile(r"\d"),
    "question": re.compile(r"\?"),
    "url": re.compile(r"https?://"),
}


def speaker_kind(name: str) -> tuple[int, int, int, int]:
    """(tool or terminal, human proxy, planner, expert): from the shape of a name, never its identity."""
    lowered = name.lower()
    return (
        int("terminal" in lowered or lowered.startswith("tool") or "computer" in lowered),
        int("human" in lowered or "user" in lowered or "proxy" in lowered),
        int("plan" in lowered or "orchestrat" in lowered or "assistant" in lowered or "manager" in lowered),
        int("expert" in lowered or "specialist" in lowered or "agent" in lowered),
    )


# The columns of :func:`step_features`, in order (for storing them by name).
STEP_FEATURE_NAMES = (
    "position",
    "relative_position",
    "is_first",
    "is_second",
    "is_last",
    "run_steps",
    "speaker_tool",
    "speaker_human",
    "speaker_planner",
    "speaker_expert",
    "after_tool",
    "after_error",
    "next_error",
    "first_turn_of_speaker",
    "speaker_turn",
    "speaker_share",
    "speaker_changed",
    "log_length",
    *(f"says_{name}" for name in PATTERNS),
)


@dataclass(frozen=True)
class Candidate:
    """One step of a run, described for the model."""

    run: int
    position: int
    agent: str
    features: np.ndarray


def step_features(agents: Sequence[str], contents: Sequence[str]) -> list[np.ndarray]:
    """Features of every step of one run."""
    count = len(agents)
    kinds = [speaker_kind(a) for a in agents]
    folded = [a.lower() for a in agents]
    seen: dict[str, int] = {}
    rows = []
    for i, (agent, content) in enumerate(zip(folded, contents, strict=True)):
        flags = [int(bool(p.search(content))) for p in PATTERNS.values()]
        previous = contents[i - 1] if i else ""
        after_tool = int(i > 0 and kinds[i - 1][0] == 1)
        after_error = int(bool(i and PATTERNS["error"].search(previous)))
        next_error = int(i + 1 < count and bool(PATTERNS["error"].search(contents[i + 1])))
        first_turn = int(agent not in seen)
        seen[agent] = seen.get(agent, 0) + 1
        share = folded.count(agent) / count
        rows.append(
            np.array(
                [
                    i,
                    i / max(1, count - 1),
                    int(i == 0),
                    int(i == 1),
                    int(i == count - 1),
                    count,
                    *kinds[i],
                    after_tool,
                    after_error,
                    next_error,
                    first_turn,
                    seen[agent],
                    share,
                    int(i > 0 and folded[i - 1] != agent),
                    np.log1p(len(content)),
                    *flags,
                ],
                dtype=float,
            )
        )
    return rows


def candidates(runs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[Candidate]:
    """Every step of every run as a candidate."""
    out = []
    for r, (agents, contents) in enumerate(runs):
        for position, features in enumerate(step_features(agents, contents)):
            out.append(Candidate(r, position, agents[position], features))
    return out


def make_model(seed: int = 0):  # type: ignore[no-untyped-def]
    """The scorer: gradient-boosted trees on the step features."""
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
    )


@dataclass(frozen=True)
class Attribution:
    """A predicted root cause."""

    position: int
    agent: str
    confidence: float


def attribute(model, agents: Sequence[str], contents: Sequence[str]) -> Attribution:  # type: ignore[no-untyped-def]
    """The most likely decisive step of a failed run, its agent and the model's confidence."""
    rows = np.vstack(step_features(agents, contents))
    scores = model.predict_proba(rows)[:, 1]
    best = int(np.argmax(scores))
    return Attribution(best, agents[best], float(scores[best] / max(scores.sum(), 1e-9)))


__all__ = [
    "PATTERNS",
    "STEP_FEATURE_NAMES",
    "Attribution",
    "Candidate",
    "attribute",
    "candidates",
    "make_model",
    "speaker_kind",
    "step_features",
]
