"""Root causes: for every failed run, the responsible agent and step with an evidence chain.

Two ways to a root cause, most certain first. Annotations (an imported run's labelled decisive
step, ``omium_ground_truth``) are never one: they train the attribution model and are shown beside
a result as the annotation, and a run with an annotation is attributed by a model that was not
trained on it (:class:`ModelChooser`).

- ``runtime_chain``: a live run whose supervisor recorded the incident. The failing check names a
  position; a guard judged data that came from the same agent's last model or tool call before
  it, so that call is the culprit (a stale hand-off is its own culprit: it was sent from state
  that moved on). This is the chain the console shows.
- ``attribution_model``: anything else. The attribution model of :mod:`omium.models.attribution`,
  fitted on the annotated runs, scores every step; the best one is the culprit.
  Without ground truth to fit on, the first error step (or the last step) is named, as
  ``first_error`` with a low confidence.

An LLM judge (:mod:`omium.models.judge`, when ``OMIUM_JUDGE_URL`` is set) may attribute the same
runs as well: :func:`judged` turns its result into a root cause of method ``judge_<method>``.

``omium_root_causes`` holds one row per run and method (``ORDER BY (run_id, method)``): the judge's
answer is a row of its own beside the pipeline's. Each row says its ``verdict``: ``known``, or
``unknown`` when the method named nothing or fell below its confidence threshold. An unknown row
stores no agent (``''``), step ``-1`` and no span, so nothing reading the agent column counts a
guess as an answer; the method's best guess, if it had one, is in the row's evidence, whose first
line then opens with "unknown" (:func:`rows`). In memory a :class:`RootCause` keeps the guess
(``agent``, ``step_index``) and says ``known``.

Steps are 0-based positions in the run (``omium.step_index``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from omium.models import culprit
from omium.models.attribution import UNKNOWN, Attributor, Step

if TYPE_CHECKING:
    from omium.config import Settings
    from omium.models.judge import Judge, JudgeResult

KNOWN = "known"  # a verdict: the method named a culprit (UNKNOWN: it did not)
ATTRIBUTION_MODEL = "root_cause_attribution"
# Models fitted without a fold of the annotated runs, to attribute the failed runs of that fold.
CROSS_FIT_MODEL = "root_cause_attribution_cross_fit"
CROSS_FIT_FOLDS = 5


@dataclass(frozen=True)
class RootCause:
    """The responsible agent and step of one failed run."""

    run_id: str
    agent: str
    step_index: int
    confidence: float
    evidence: list[str]
    method: str
    failure_class: str = ""
    span_id: str = ""
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """Whether the method named a culprit at or above its threshold (``extra["known"]``, true
        for methods without a threshold)."""
        return bool(self.extra.get("known", True)) and self.step_index >= 0

    @property
    def verdict(self) -> str:
        """The ``verdict`` column of ``omium_root_causes``: ``unknown`` when not :attr:`known`, else
        ``extra["verdict"]`` when the method gives one (counterfactual replay: ``verified``,
        ``not_verified``), else ``known``."""
        if not self.known:
            return UNKNOWN
        return str(self.extra.get("verdict") or KNOWN)


def runtime_chain(run_id: str, failure: dict[str, Any], steps: list[Any]) -> RootCause:
    """The culprit of a live run's incident, from its recorded steps (``StepRecord``-like)."""
    found = culprit.trace(failure, steps)
    at = found.failed
    what = f"{at.kind} {at.name}" if at is not None else "the workflow"
    chain = [f"#{found.position} {what} ({found.agent}) failed: {failure.get('message', '')}"]
    confidence = 0.9
    if found.trigger == "stale_handoff":
        reason = failure.get("evidence", {}).get("reason", "")
        chain.append(f"#{found.position} the message was sent from stale state: {reason}")
    elif found.producer is None:
        confidence = 0.6  # the failing step itself: nothing earlier of that agent made its data
    if found.producer is not None:
        producer = found.producer
        chain.append(
            f"#{producer.position} {producer.kind} {producer.name} produced the data the check judged"
        )
    if found.receive is not None:
        chain.append(f"#{found.receive.position} its input arrived by hand-off {found.receive.name}")
    evidence = failure.get("evidence", {})
    if evidence:
        chain.append("evidence: " + json.dumps(evidence, default=str, sort_keys=True))
    return RootCause(run_id, found.agent, found.culprit, confidence, chain, "runtime_chain")


def run_steps(run: pl.DataFrame) -> tuple[list[int], list[Step], list[str]]:
    """A run's step spans (``step_index, span_id, agent, content, status`` and optionally
    ``role``, ``tool_calls``, in time order) as one :class:`Step` per step index:
    (step indices, steps, the first span of each). A step's spans (an agent turn, its model and
    tool calls) share an index: their contents are joined, an error in any is the step's."""
    grouped: dict[int, dict[str, Any]] = {}
    columns = set(run.columns)
    for row in run.iter_rows(named=True):
        step = grouped.setdefault(
            row["step_index"],
            {"agent": "", "content": [], "error": False, "tool": False, "span": row["span_id"]},
        )
        step["agent"] = step["agent"] or row["agent"]
        if row["content"]:
            step["content"].append(row["content"])
        step["error"] = step["error"] or row["status"] == "error"
        step["tool"] = (
            step["tool"]
            or ("role" in columns and row["role"] == "tool")
            or bool("tool_calls" in columns and row["tool_calls"])
        )
    indices = sorted(grouped)
    steps = [
        Step(grouped[i]["agent"], "\n".join(grouped[i]["content"]), grouped[i]["error"], grouped[i]["tool"])
        for i in indices
    ]
    return indices, steps, [grouped[i]["span"] for i in indices]


def fit_attribution(truth: pl.DataFrame, steps: pl.DataFrame, seed: int = 0) -> tuple[Any, int]:
    """Fit the attribution model on runs with a known decisive step; returns (model, candidates).

    ``truth`` has ``run_id, mistake_step`` (and ``source``: calibration is then fitted on
    predictions for sources left out); ``steps`` the normalised step spans of those runs.
    """
    by_run = dict(truth.select("run_id", "mistake_step").iter_rows())
    source = dict(truth.select("run_id", "source").iter_rows()) if "source" in truth.columns else {}
    runs: list[list[Step]] = []
    mistakes: list[int] = []
    groups: list[str] = []
    for (run_id,), run in (
        steps.filter(pl.col("run_id").is_in(list(by_run)))
        .sort("run_id")
        .group_by(["run_id"], maintain_order=True)
    ):
        indices, found, _ = run_steps(run)
        if by_run[run_id] not in indices:
            continue
        runs.append(found)
        mistakes.append(indices.index(by_run[run_id]))
        groups.append(str(source.get(run_id, run_id)))
    if not runs:
        raise ValueError("no runs with a known decisive step among the normalised spans")
    model = Attributor(seed=seed).fit(runs, mistakes, groups if len(set(groups)) > 1 else None)
    return model, sum(len(r) for r in runs)


# (model name, model, the run ids it was trained on, training rows) -> the registered version
Register = Callable[[str, Any, set[str], int], str]


@dataclass
class ModelChooser:
    """Which attribution model attributes which run: the model fitted on every annotated run for
    runs it was not trained on, and for an annotated run a model fitted on the other folds."""

    model: Any | None = None
    version: str = ""
    trained_on: set[str] = field(default_factory=set)
    held_out: dict[str, tuple[Any | None, str]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, truth: pl.DataFrame, steps: pl.DataFrame, failed: set[str], register: Register, seed: int = 0
    ) -> ModelChooser:
        """Fit on ``truth`` (``run_id, mistake_step``) and, for the failed runs among them, one
        model per fold without that fold; ``register`` stores each and returns its version."""
        model, rows = fit_attribution(truth, steps, seed)
        trained_on = set(truth["run_id"].to_list())
        chooser = cls(model, register(ATTRIBUTION_MODEL, model, trained_on, rows), trained_on)
        annotated = sorted(trained_on & failed)
        order = sorted(trained_on)
        random.Random(seed).shuffle(order)
        folds = [set(order[i::CROSS_FIT_FOLDS]) for i in range(CROSS_FIT_FOLDS)]
        for fold in folds:
            wanted = [r for r in annotated if r in fold]
            if not wanted:
                continue
            rest = truth.filter(~pl.col("run_id").is_in(list(fold)))
            try:
                held_model, held_rows = fit_attribution(rest, steps, seed)
            except ValueError:  # too few annotated runs left to fit on: no model for this fold
                held: tuple[Any | None, str] = (None, "")
            else:
                rest_ids = set(rest["run_id"].to_list())
                held = (held_model, register(CROSS_FIT_MODEL, held_model, rest_ids, held_rows))
            chooser.held_out.update(dict.fromkeys(wanted, held))
        return chooser

    def for_run(self, run_id: str) -> tuple[Any | None, str]:
        """The model (and its version) that may attribute ``run_id``: never one trained on it."""
        if run_id in self.held_out:
            return self.held_out[run_id]
        if run_id in self.trained_on:
            return None, ""
        return self.model, self.version


def attribute_run(run_id: str, run: pl.DataFrame, model: Any | None, version: str = "") -> RootCause:
    """The culprit of one failed run from its step spans, by the model (or the first error step).

    Below the model's confidence threshold the evidence opens with "unknown" and the confidence
    says how unsure it is; the agent column keeps the model's best guess on its own step."""
    indices, steps, spans = run_steps(run)
    if not steps:
        return RootCause(run_id, "", -1, 0.0, ["the run recorded no steps"], "first_error")
    if model is None:
        errors = [i for i, s in enumerate(steps) if s.error]
        best = errors[0] if errors else len(steps) - 1
        why = "the first step that ended in error" if errors else "the last step (no step ended in error)"
        return RootCause(
            run_id,
            steps[best].agent,
            indices[best],
            0.3,
            [f"#{indices[best]} {why}"],
            "first_error",
            span_id=spans[best],
        )
    found = model.attribute(steps)
    best = found.position
    evidence = [line.replace(f"#{best} ", f"#{indices[best]} ", 1) for line in found.evidence]
    if not found.known:
        evidence.insert(
            0,
            f"{UNKNOWN}: the best guess, {found.guess} at step #{indices[best]}, "
            "is below the confidence threshold",
        )
    return RootCause(
        run_id,
        steps[best].agent,
        indices[best],
        found.agent_confidence,
        evidence,
        "attribution_model",
        span_id=spans[best],
        model_version=version,
        extra={"known": found.known, "step_confidence": found.confidence},
    )


def make_judge(settings: Settings) -> Judge | None:
    """The LLM judge the settings configure (``OMIUM_JUDGE_*``), or None when there is none."""
    if not settings.judge_url:
        return None
    from omium.models.judge import Judge

    return Judge(
        settings.judge_url,
        settings.judge_model,
        settings.judge_key,
        method=settings.judge_method,
        timeout=settings.judge_timeout,
    )


def judge_run(judge: Judge, run_id: str, run: pl.DataFrame, task: str = "") -> RootCause:
    """The judge's root cause of one failed run from its step spans (as :func:`attribute_run`
    reads them). Raises :class:`~omium.models.judge.JudgeError` when the provider fails."""
    indices, steps, spans = run_steps(run)
    return judged(run_id, judge.attribute(steps, task), indices, spans)


def judged(
    run_id: str, result: JudgeResult, indices: list[int] | None = None, spans: list[str] | None = None
) -> RootCause:
    """A judge's result as a root cause: method ``judge_<method>``, model version
    ``<model>@<prompt version>``; ``indices`` and ``spans`` map the judge's positions to the run's
    step indices and span ids (default: positions are step indices). An unknown result keeps
    step -1 and confidence 0, its evidence opening with "unknown"."""
    position = result.position
    index = (indices[position] if indices is not None else position) if result.known else -1
    span = spans[position] if spans is not None and result.known else ""
    evidence = [
        line.replace(f"#{position} ", f"#{index} ", 1) if result.known else line for line in result.evidence
    ]
    return RootCause(
        run_id,
        result.agent if result.known else "",
        index,
        result.confidence,
        evidence,
        f"judge_{result.method}",
        span_id=span,
        model_version=f"{result.model}@{result.prompt_version}",
        extra={"known": result.known, "calls": result.calls, "tokens": result.tokens},
    )


# Provider failures (HTTP errors, timeouts) after which one build stops asking the judge: each
# can cost a timeout, and a provider that is down stays down for the rest of a build.
JUDGE_MAX_ERRORS = 3


@dataclass
class JudgePass:
    """The judge's pass over one build's failed runs: each run it is asked about gains a root
    cause of its own (method ``judge_<method>``); a provider failure gives none and is counted."""

    judge: Judge
    max_errors: int = JUDGE_MAX_ERRORS
    errors: list[str] = field(default_factory=list)
    results: list[RootCause] = field(default_factory=list)  # the judge's root causes, as asked
    skipped: int = 0  # runs not asked: the provider had failed max_errors times

    @classmethod
    def of(cls, settings: Settings) -> JudgePass | None:
        """A pass with the judge the settings configure, or None when there is none."""
        judge = make_judge(settings)
        return cls(judge) if judge is not None else None

    def attribute(self, run_id: str, run: pl.DataFrame, task: str = "") -> RootCause | None:
        """The judge's root cause of one failed run from its step spans, or None when its provider
        failed (or failed :attr:`max_errors` times already in this build: it is not asked again)."""
        from omium.models.judge import JudgeError

        if len(self.errors) >= self.max_errors:
            self.skipped += 1
            return None
        try:
            found = judge_run(self.judge, run_id, run, task)
        except JudgeError as error:
            self.errors.append(f"{run_id}: {error}")
            return None
        self.results.append(found)
        return found

    def metadata(self) -> dict[str, Any]:
        """What the judge did in this build, for the asset's metadata."""
        return {
            "judged_runs": len(self.results),
            "judge_unknown": sum(1 for j in self.results if not j.known),
            "judge_calls": sum(j.extra["calls"] for j in self.results),
            "judge_tokens": sum(j.extra["tokens"] for j in self.results),
            "judge_errors": len(self.errors),
            "judge_not_asked": self.skipped,
            **({"judge_last_error": self.errors[-1]} if self.errors else {}),
        }


def rows(causes: list[RootCause]) -> list[dict[str, Any]]:
    """``omium_root_causes`` rows (without the stamp), one per cause, with its ``verdict``.

    An unknown cause is stored without agent, step or span, and its evidence opens with a line
    starting "unknown" (added when the method's own evidence does not), which is how the table's
    default and its migration tell old rows' verdict as well."""
    out = []
    for c in causes:
        known = c.known
        evidence = list(c.evidence)
        if not known and not (evidence and evidence[0].startswith(UNKNOWN)):
            guess = f"the best guess was {c.agent} at step #{c.step_index}" if c.agent else "no culprit named"
            evidence.insert(0, f"{UNKNOWN}: {guess}")
        out.append(
            {
                "run_id": c.run_id,
                "agent": c.agent if known else "",
                "step_index": c.step_index if known else -1,
                "span_id": c.span_id if known else "",
                "confidence": c.confidence,
                "failure_class": c.failure_class,
                "evidence": json.dumps(evidence),
                "method": c.method,
                "model_version": c.model_version,
                "verdict": c.verdict,
            }
        )
    return out


__all__ = [
    "ATTRIBUTION_MODEL",
    "CROSS_FIT_MODEL",
    "JUDGE_MAX_ERRORS",
    "KNOWN",
    "JudgePass",
    "ModelChooser",
    "RootCause",
    "attribute_run",
    "fit_attribution",
    "judge_run",
    "judged",
    "make_judge",
    "rows",
    "run_steps",
    "runtime_chain",
]
