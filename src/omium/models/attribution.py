"""Root-cause attribution without an LLM: which step (and so which agent) caused a failed run.

Every step of a failed run is a candidate, described by signals that carry over between
frameworks and teams the model never saw. Agent names are never features: an agent is known only
by what it does and where — how much of the run it speaks, whether it opened or closed the run,
whether its steps are tool executions, how often the turn passes through it (a hub: the
orchestrator). A step is described by its place (position, first error, distance to it), its
status and error words, tool failures around it, hand-off words and a complaint of the next
speaker that nothing arrived, and what it claims: numbers no earlier step gave (a contradiction or
an invention), numbers the final answer repeats (the answer's origin), final/terminate words.

A gradient-boosted classifier scores the candidates; the best step of a run is the predicted
decisive error and its speaker the responsible agent. :class:`Attributor` adds a calibrated
confidence (isotonic regression fitted on out-of-fold predictions of the training runs) and an
explicit unknown below a threshold.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Words that mark what a step does, independent of who says it.
PATTERNS = {
    "error": re.compile(
        r"error|exception|traceback|failed|exitcode: 1|not found|cannot|timed out|no record", re.I
    ),
    "final": re.compile(r"terminate|final answer|the answer is|in conclusion", re.I),
    "handoff": re.compile(r"over to|hand(ing|ed)? (off|over|it)|passing|transfer|delegat|next,? ", re.I),
    "complaint": re.compile(
        r"no (figure|input|data)|nothing (was )?(handed|received|provided)"
        r"|did not receive|not provided|missing",
        re.I,
    ),
    "unsupported": re.compile(
        r"assum|from memory|widely|myself|independent|skip|rather than|without|estimate", re.I
    ),
    "verify": re.compile(r"verif|double-check|confirm|validate|check", re.I),
    "code": re.compile(r"```|def |import |print\("),
    "execution": re.compile(r"exitcode:|code output:|traceback", re.I),
}
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")


@dataclass(frozen=True)
class Step:
    """One step of a run as the model sees it: who (only to group steps), what, how it ended."""

    agent: str
    content: str
    error: bool = False  # the step's span ended in error
    tool: bool = False  # a tool execution (or a model turn that asked for tools)


# The columns of :func:`step_features`, in order (for storing them by name).
STEP_FEATURE_NAMES = (
    "relative_position",
    "is_first",
    "is_last",
    "steps_from_end",
    "log_run_steps",
    "status_error",
    "says_error",
    "is_first_error",
    "before_first_error",
    "after_first_error",
    "previous_error",
    "next_error",
    "is_tool",
    "after_tool",
    "after_tool_error",
    "says_final",
    "says_handoff",
    "next_complains",
    "says_unsupported",
    "says_verify",
    "says_code",
    "says_execution",
    "novel_numbers",
    "novel_share",
    "contradicts_tool",
    "answer_origin",
    "repeated_later",
    "empty",
    "relative_length",
    "agent_share",
    "agent_opened",
    "agent_closed",
    "agent_tool_share",
    "agent_hub",
    "agent_first_position",
    "agent_turn",
    "first_turn_of_agent",
    "speaker_changed",
    "agent_errors",
)


def _numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def step_features(
    run: Sequence[Step] | Sequence[str], contents: Sequence[str] | None = None
) -> list[np.ndarray]:
    """Features of every step of one run (agent names only group steps; they are never values).

    ``run`` is the run's steps, or its agents with ``contents`` beside (no status known)."""
    steps: Sequence[Step] = (
        [Step(str(a), c) for a, c in zip(run, contents, strict=True)]
        if contents is not None
        else [s for s in run if isinstance(s, Step)]
    )
    count = len(steps)
    if not count:
        return []
    # Agents are anonymous here: the index of first appearance stands in for a name.
    ids: dict[str, int] = {}
    agent = [ids.setdefault(s.agent.lower(), len(ids)) for s in steps]
    speaks = Counter(agent)
    tools = Counter(
        a for a, s in zip(agent, steps, strict=True) if s.tool or PATTERNS["execution"].search(s.content)
    )
    errors_of = Counter(a for a, s in zip(agent, steps, strict=True) if s.error)
    changes = Counter[int]()
    for i in range(1, count):
        if agent[i] != agent[i - 1]:
            changes[agent[i]] += 1
            changes[agent[i - 1]] += 1
    total_changes = max(1, sum(changes.values()))
    first_at = {a: agent.index(a) for a in speaks}
    errs = [s.error or bool(PATTERNS["error"].search(s.content)) for s in steps]
    first_error = next((i for i, e in enumerate(errs) if e), -1)
    numbers = [_numbers(s.content) for s in steps]
    final = numbers[-1] if count else set()
    lengths = [len(s.content) for s in steps]
    median = float(np.median(lengths)) or 1.0
    seen_numbers: set[str] = set()
    tool_numbers: set[str] = set()
    turn: Counter[int] = Counter()
    rows = []
    for i, step in enumerate(steps):
        a = agent[i]
        text = step.content
        is_tool = step.tool or bool(PATTERNS["execution"].search(text))
        novel = numbers[i] - seen_numbers
        later = set().union(*numbers[i + 1 :]) if i + 1 < count else set()
        turn[a] += 1
        flags = {name: bool(p.search(text)) for name, p in PATTERNS.items()}
        contradicts = bool(tool_numbers) and bool(novel) and not (numbers[i] & tool_numbers) and not is_tool
        rows.append(
            np.array(
                [
                    i / max(1, count - 1),
                    i == 0,
                    i == count - 1,
                    min(count - 1 - i, 10),
                    np.log1p(count),
                    step.error,
                    flags["error"],
                    i == first_error,
                    (first_error - i) / count if first_error >= 0 and i < first_error else 0.0,
                    (i - first_error) / count if first_error >= 0 and i > first_error else 0.0,
                    i > 0 and errs[i - 1],
                    i + 1 < count and errs[i + 1],
                    is_tool,
                    i > 0 and (steps[i - 1].tool or bool(PATTERNS["execution"].search(steps[i - 1].content))),
                    i > 0 and steps[i - 1].tool and errs[i - 1],
                    flags["final"],
                    flags["handoff"] or (i + 1 < count and agent[i + 1] != a and not text.strip()),
                    i + 1 < count and bool(PATTERNS["complaint"].search(steps[i + 1].content)),
                    flags["unsupported"],
                    flags["verify"],
                    flags["code"],
                    flags["execution"],
                    min(len(novel), 10),
                    len(novel) / max(1, len(numbers[i])),
                    contradicts,
                    bool(novel & final) and i < count - 1,
                    bool(novel & later),
                    not text.strip(),
                    np.log1p(lengths[i] / median),
                    speaks[a] / count,
                    agent[0] == a,
                    agent[-1] == a,
                    tools[a] / speaks[a],
                    changes[a] / total_changes,
                    first_at[a] / count,
                    min(turn[a], 10),
                    turn[a] == 1,
                    i > 0 and agent[i - 1] != a,
                    errors_of[a] / speaks[a],
                ],
                dtype=float,
            )
        )
        seen_numbers |= numbers[i]
        if is_tool:
            tool_numbers |= numbers[i]
    return rows


def make_model(seed: int = 0) -> Any:
    """The scorer: gradient-boosted trees on the step features."""
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
    )


def _matrix(runs: Sequence[Sequence[Step]], mistakes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    rows: list[np.ndarray] = []
    labels: list[int] = []
    for steps, mistake in zip(runs, mistakes, strict=True):
        features = step_features(steps)
        rows.extend(features)
        labels.extend(int(i == mistake) for i in range(len(features)))
    if not rows or sum(labels) == 0:
        raise ValueError("no runs with a known decisive step")
    return np.vstack(rows), np.array(labels)


def views(steps: Sequence[Step]) -> list[list[Step]]:
    """The run as conventions record it: in full, without content (a tracer that records none,
    like LangGraph's), and without statuses or tool kinds (an imported conversation). Training on
    every view keeps the model from leaning on a signal a framework may not record."""
    return [
        list(steps),
        [Step(s.agent, "", s.error, s.tool) for s in steps],
        [Step(s.agent, s.content) for s in steps],
    ]


def _scores(model: Any, steps: Sequence[Step]) -> np.ndarray:
    scores = model.predict_proba(np.vstack(step_features(steps)))[:, 1]
    return np.asarray(scores / max(float(scores.sum()), 1e-9))


UNKNOWN = "unknown"
# How much an agent's other steps add to its best one when choosing the responsible agent: 1.0,
# the probability mass of its steps (0.5 was also measured: better on the plain SDK, worse on the
# rest; the rule is kept for its meaning, not tuned on held-out figures).
AGENT_REST = 1.0


@dataclass(frozen=True)
class Attribution:
    """A predicted root cause: the decisive step (position in the run) and its agent, each with a
    calibrated probability of being right; ``agent`` is :data:`UNKNOWN` when ``agent_confidence``
    is below the threshold it was asked with (``guess`` keeps the model's best agent)."""

    position: int
    agent: str
    confidence: float  # P(the step is the decisive one)
    agent_confidence: float  # P(the agent is the responsible one)
    guess: str
    method: str = "attribution_model"
    evidence: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """Whether the method named an agent (confidence at or above the threshold)."""
        return self.agent != UNKNOWN


# The features worth naming as evidence when they fire on the chosen step.
_TELLING = (
    "status_error",
    "says_error",
    "is_first_error",
    "after_tool_error",
    "next_error",
    "says_final",
    "says_handoff",
    "next_complains",
    "says_unsupported",
    "contradicts_tool",
    "answer_origin",
    "repeated_later",
    "empty",
)


@dataclass
class Attributor:
    """The attribution model with calibrated confidences and an unknown below ``threshold``.

    ``fit`` scores the training runs out of fold (``folds`` groups; the ``groups`` given, e.g. the
    framework, so a fold's scores come from a model that never saw its group), fits one isotonic
    regression from a run's top share to step correctness and one from its agent share to agent
    correctness, then fits the scorer on every training run.
    """

    threshold: float = 0.35
    seed: int = 0
    folds: int = 3
    augment: bool = True  # train on every recorded view of a run (:func:`views`)
    model: Any = None
    step_calibration: Any = None
    agent_calibration: Any = None
    trained_runs: int = 0
    features: tuple[str, ...] = field(default=STEP_FEATURE_NAMES)

    def fit(
        self, runs: Sequence[Sequence[Step]], mistakes: Sequence[int], groups: Sequence[str] | None = None
    ) -> Attributor:
        """Fit on runs with a known decisive step (``mistakes``: positions in each run)."""
        from sklearn.isotonic import IsotonicRegression
        from sklearn.model_selection import GroupKFold

        agents = [s[m].agent.lower() if 0 <= m < len(s) else "" for s, m in zip(runs, mistakes, strict=True)]
        keys = np.array(list(groups) if groups is not None else [str(i) for i in range(len(runs))])
        n_groups = len(set(keys.tolist()))
        if n_groups < 2:
            keys = np.array([str(i) for i in range(len(runs))])
            n_groups = len(runs)
        shares: list[tuple[float, float, int, int]] = []
        if n_groups >= 2:
            splitter = GroupKFold(n_splits=min(self.folds, n_groups))
            for train, test in splitter.split(np.zeros(len(runs)), groups=keys):
                try:
                    X, y = self._training([runs[i] for i in train], [mistakes[i] for i in train])
                except ValueError:
                    continue
                fold_model = make_model(self.seed).fit(X, y)
                for i in test:
                    if not runs[i]:
                        continue
                    step, agent, step_share, agent_share = _choose(fold_model, runs[i])
                    shares.append(
                        (step_share, agent_share, int(step == mistakes[i]), int(agent.lower() == agents[i]))
                    )
        X, y = self._training(runs, mistakes)
        self.model = make_model(self.seed).fit(X, y)
        self.trained_runs = len(runs)
        if shares:
            table = np.array(shares)
            self.step_calibration = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
                table[:, 0], table[:, 2]
            )
            self.agent_calibration = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
                table[:, 1], table[:, 3]
            )
        return self

    def _training(
        self, runs: Sequence[Sequence[Step]], mistakes: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self.augment:
            return _matrix(runs, mistakes)
        seen = [(view, m) for steps, m in zip(runs, mistakes, strict=True) for view in views(steps)]
        return _matrix([v for v, _ in seen], [m for _, m in seen])

    def attribute(self, steps: Sequence[Step]) -> Attribution:
        """The most likely decisive step of a failed run, its agent, calibrated confidences."""
        if self.model is None:
            raise ValueError("the attributor is not fitted")
        if not steps:
            return Attribution(-1, UNKNOWN, 0.0, 0.0, "", evidence=("the run recorded no steps",))
        best, agent, step_share, agent_share = _choose(self.model, steps)
        confidence = _calibrated(self.step_calibration, step_share)
        agent_confidence = _calibrated(self.agent_calibration, agent_share)
        features = step_features(steps)[best]
        fired = [n for n, v in zip(STEP_FEATURE_NAMES, features, strict=True) if n in _TELLING and v]
        snippet = steps[best].content.strip().replace("\n", " ")
        evidence = [
            f"#{best} by {steps[best].agent} scored highest of {len(steps)} steps "
            f"({step_share:.0%} of the run's score)",
            f"{agent} holds {agent_share:.0%} of the run's score",
        ]
        if fired:
            evidence.append("signals on that step: " + ", ".join(fired))
        evidence.append(f"it said: {snippet[:240]}{'…' if len(snippet) > 240 else ''}")
        if agent_confidence < self.threshold:
            evidence.append(
                f"agent confidence {agent_confidence:.2f} is below the threshold {self.threshold:.2f}"
            )
        return Attribution(
            best,
            agent if agent_confidence >= self.threshold else UNKNOWN,
            confidence,
            agent_confidence,
            agent,
            evidence=tuple(evidence),
        )


def _choose(model: Any, steps: Sequence[Step]) -> tuple[int, str, float, float]:
    """(best step, its agent, the step's share of the run's score, that agent's share).

    The agent is the one holding the most of the run's score (several middling steps of one
    agent outweigh one step of another); the step is that agent's best."""
    share = _scores(model, steps)
    totals: dict[str, float] = {}
    tops: dict[str, float] = {}
    for s, v in zip(steps, share, strict=True):
        totals[s.agent.lower()] = totals.get(s.agent.lower(), 0.0) + float(v)
        tops[s.agent.lower()] = max(tops.get(s.agent.lower(), 0.0), float(v))
    chosen = max(totals, key=lambda a: tops[a] + AGENT_REST * (totals[a] - tops[a]))
    best = max((i for i, s in enumerate(steps) if s.agent.lower() == chosen), key=lambda i: share[i])
    return best, steps[best].agent, float(share[best]), totals[chosen]


def _calibrated(calibration: Any, share: float) -> float:
    if calibration is None:  # too few runs to calibrate on: the raw share, never certainty
        return min(share, 0.99)
    return float(calibration.predict([share])[0])


__all__ = [
    "PATTERNS",
    "STEP_FEATURE_NAMES",
    "UNKNOWN",
    "Attribution",
    "Attributor",
    "Step",
    "make_model",
    "step_features",
    "views",
]
