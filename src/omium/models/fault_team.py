"""Failing plain-SDK runs with one injected fault that a re-sample can undo: the test bed of
counterfactual verification (:mod:`omium.recovery.counterfactual`).

:mod:`omium.models.fault_injection` scripts every turn's words in advance: its runs complete, and
replaying any of their calls says the same thing again. Here the same team (a coordinator, a
researcher with a lookup tool, then some of analyst, writer, reviewer; neutral names) plays the same
six faults, but each agent's scripted model *reacts to what it is handed* (the analyst multiplies
the figure it received, a writer handed nothing guesses), and the fault is injected into one model
call's recorded sample only: :func:`omium.sdk.sampling.sample_number` is 0 on every ordinary call
and >= 1 when a verification re-samples exactly that call. The last agent states a final answer,
publishes it to shared state (a side effect a verification must keep in its scratch store) and
checks it against the record with a guard, so the run fails at that guard (or wherever an agent
ends the run early), and the ground truth is exact: the faulty call's position in the run.

A prompt that says :data:`CAREFUL` (an operator's edit of the faulty agent) also keeps the fault
out, so an edit can be verified as a fix.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import omium
from omium.models.fault_injection import ENTITIES, FAULTS, METRICS, NAMES
from omium.sdk.branching import agent_config
from omium.sdk.guards import guard
from omium.sdk.llm import LLMResponse, Message, llm_call
from omium.sdk.sampling import sample_number
from omium.sdk.store import CheckpointStore

WORKFLOW = "fault_team_live"
DEFAULT_PROMPT = "Do your part."
CAREFUL = "Do not improvise"  # a prompt saying this keeps the injected fault out
REPORTS = "fault_team_reports"  # the shared-state namespace final answers are published to
_ORDER = ("researcher", "analyst", "writer", "reviewer")
# Which of the faulty agent's model calls draws the fault: the researcher plans its lookup (0)
# and then reports (1); every other agent speaks once.
_REPORT_FAULTS = ("dropped_handoff", "stale_handoff")


def _rank(role: str) -> int:
    return -1 if role == "coordinator" else _ORDER.index(role)


@dataclass(frozen=True)
class TeamScenario:
    """One run: the team, the task's figures and the injected fault."""

    run_id: str
    roles: dict[str, str]  # role -> agent
    entity: str
    other: str
    metric: str
    value: int  # what the lookup tool returns for ``entity``
    other_value: int
    old: int  # last quarter's estimate (stale)
    wrong: int  # what a hallucinating agent says
    factor: int
    fault: str
    fault_role: str
    timeout: bool  # the lookup times out once and is retried (an error that is not the fault)
    # The chance that a fresh sample of the last agent's call rechecks the record and answers
    # right whatever it was handed: a later step that can repair the damage (not the cause).
    repair: float = 0.0

    @property
    def expected(self) -> int:
        """The right final answer."""
        return self.value * self.factor if "analyst" in self.roles else self.value

    @property
    def order(self) -> list[str]:
        """The roles in order of play (not the dict's order: recorded inputs come back with
        their keys sorted)."""
        return sorted(self.roles, key=_rank)

    @property
    def fault_agent(self) -> str:
        """The agent whose model call draws the fault."""
        return self.roles[self.fault_role]

    @property
    def fault_call(self) -> int:
        """Which of the faulty agent's model calls (0-based) draws the fault."""
        return int(self.fault_role == "researcher" and self.fault in _REPORT_FAULTS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible (the workflow's recorded input)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeamScenario:
        """The inverse of :meth:`to_dict`."""
        return cls(**data)


def scenario(rng: random.Random, run_id: str, fault: str | None = None) -> TeamScenario:
    """One team and task with ``fault`` (or one drawn) injected at a role it can happen to."""
    fault = fault or rng.choice(FAULTS)
    size = rng.randint(3, 5)
    used = ["coordinator", "researcher", *rng.sample(["analyst", "writer", "reviewer"], size - 2)]
    used.sort(key=_rank)
    roles = dict(zip(used, rng.sample(NAMES, size), strict=True))
    entity, other = rng.sample(ENTITIES, 2)
    value = rng.randint(120, 980)
    factor = rng.choice((2, 3, 4))
    old = value + rng.choice((-1, 1)) * rng.randint(15, 90)
    products = {value, value * factor}
    while True:  # a wrong figure that no path turns into the right answer
        wrong = value + (rng.randint(100, 400) if value < 500 else -rng.randint(100, 400))
        if wrong not in products and wrong * factor not in products:
            break
    order = [r for r in _ORDER if r in roles]
    at = {
        "hallucination": rng.choice([r for r in order if r != "reviewer"]),
        "wrong_tool_args": "researcher",
        "dropped_handoff": rng.choice(["coordinator", *order[:-1]]),
        "stale_handoff": rng.choice(order[:-1]),
        "role_violation": rng.choice([r for r in order if r != "researcher"]),
        "premature_termination": rng.choice(["coordinator", *order[:-1]]),
    }[fault]
    return TeamScenario(
        run_id,
        roles,
        entity,
        other,
        rng.choice(METRICS),
        value,
        value + rng.randint(200, 500),
        old,
        wrong,
        factor,
        fault,
        at,
        rng.random() < 0.35,
    )


def scenarios(seed: int, count: int, prefix: str = "cf", *, repair: float = 0.0) -> list[TeamScenario]:
    """``count`` scenarios cycling through the faults, deterministic in ``seed`` (``repair``: see
    :attr:`TeamScenario.repair`)."""
    rng = random.Random(seed)
    made = [scenario(rng, f"{prefix}:{seed}:{i}", FAULTS[i % len(FAULTS)]) for i in range(count)]
    return [replace(one, repair=repair) for one in made]


_FIGURE = re.compile(r"the figure (\d+)")


def _figure(text: str) -> int | None:
    found = _FIGURE.search(text)
    return int(found.group(1)) if found else None


def _say(one: TeamScenario, role: str, call: int, nxt: str, messages: list[Message]) -> str:
    """What ``role``'s model answers on its ``call``-th call, handed ``messages``."""
    prompt, heard = str(messages[0]["content"]), str(messages[-1]["content"])
    faulty = (
        role == one.fault_role
        and call == one.fault_call
        and sample_number() == 0  # the recorded sample: a re-sample of this call draws cleanly
        and CAREFUL.lower() not in prompt.lower()
    )
    fault, old, wrong, factor, metric = one.fault, one.old, one.wrong, one.factor, one.metric
    sample = sample_number()
    if not nxt and sample and random.Random(f"{one.run_id}:{sample}").random() < one.repair:
        return f"Rechecked against the record myself. Final answer: {one.expected}."
    ends = "" if nxt else "Final answer: "

    def passing(figure: int | str) -> str:  # hand on, or (the last agent) answer
        return f"Passing the figure {figure} to {nxt}." if nxt else f"Final answer: {figure}."

    if role == "coordinator":
        if faulty and fault == "dropped_handoff":
            return f"Handing over to {nxt}. Go ahead."
        if faulty and fault == "premature_termination":
            return f"Estimate from last quarter: {old}. Final answer: {old}. TERMINATE"
        return (
            f"Task: the {metric} of {one.entity}, times {factor}. "
            f"Last quarter's estimate was {old}. Over to {nxt}."
        )
    if role == "researcher" and call == 0:
        asked = re.search(r"the \w[\w ]* of (\w+)", heard)
        if asked is None:
            return "Nothing to look up was handed to me. Final answer: unknown. TERMINATE"
        if faulty and fault == "hallucination":
            return f"From memory, the {metric} of {one.entity} is {wrong}; no need to check. {passing(wrong)}"
        if faulty and fault == "premature_termination":
            return f"Could not be sure about {one.entity}. Final answer: unknown. TERMINATE"
        entity = one.other if faulty and fault == "wrong_tool_args" else asked.group(1)
        return f"Calling lookup with entity={entity} for the {metric}."
    figure = _figure(heard)
    if role == "researcher":
        numbers = re.findall(r"\d+", heard)
        if faulty and fault == "dropped_handoff":
            return f"Done on my side, over to {nxt}."
        if faulty and fault == "stale_handoff":
            return f"Passing the figure {old} to {nxt}."
        if not numbers:
            return f"The lookup failed: {heard}. Final answer: unknown. TERMINATE"
        return f"Lookup returned {metric} {numbers[-1]}. {passing(numbers[-1])}"
    if role == "analyst":
        if faulty and fault == "hallucination":
            return f"Recomputed independently, the {metric} is {wrong}, so {passing(wrong * factor)}"
        if faulty and fault == "role_violation":
            return f"I will skip the figure I was given and answer myself. Final answer: {wrong * factor}."
        if faulty and fault == "premature_termination":
            return f"The result is {figure}. Nothing more to do. Final answer: {figure}. TERMINATE"
        if faulty and fault == "dropped_handoff":
            return f"Computed. Over to {nxt}."
        if faulty and fault == "stale_handoff":
            return f"Using the estimate {old}: {passing(old * factor)}"
        if figure is None:
            return f"I received no figure; assuming 100. {passing(100 * factor)}"
        return f"{figure} times {factor} is {figure * factor}. {passing(figure * factor)}"
    if role == "writer":
        if faulty and fault == "hallucination":
            return f"Draft: as widely reported, {passing(wrong * factor)}"
        if faulty and fault == "role_violation":
            return f"Rather than use the research I looked this up myself. Final answer: {wrong}."
        if faulty and fault == "premature_termination":
            return f"Draft started: {figure}. Final answer: pending. TERMINATE"
        if faulty and fault == "dropped_handoff":
            return f"Draft done, over to {nxt}."
        if faulty and fault == "stale_handoff":
            return f"Draft per the plan: {passing(old)}"
        if figure is None:
            return f"Nothing was handed to me; drafting with the estimate {old}. {passing(old)}"
        return f"Draft: the answer is {figure}. {passing(figure)}"
    # the reviewer
    if faulty and fault == "role_violation":
        return f"I rewrote the draft with my own figure. Final answer: {wrong}."
    if figure is None:
        return f"Reviewed: no figure was provided. {ends}unknown."
    return f"Reviewed: {figure} looks consistent. {ends}{figure}."


class _Model:
    """A scripted chat model for one agent's calls: answers by :func:`_say` (no network)."""

    provider = "omium.testing"

    def __init__(self, one: TeamScenario, role: str, nxt: str, call: int) -> None:
        # Which call of the agent's it answers is fixed, not counted: a re-execution that starts
        # between an agent's two calls gets the first one from the recording.
        self.one, self.role, self.nxt, self.call = one, role, nxt, call
        self.model = f"{one.roles[role]}-model"

    def complete(self, messages: list[Message], **params: Any) -> LLMResponse:
        text = _say(self.one, self.role, self.call, self.nxt, messages)
        return LLMResponse(text, self.model, input_tokens=40, output_tokens=len(text.split()))


class ToolTimeout(RuntimeError):
    """The lookup's transient failure (retried)."""


def _answer(text: str) -> str:
    return text.split("Final answer:", 1)[1].split()[0].rstrip(".")


def _turn(one: TeamScenario, role: str, nxt: str, heard: str) -> str:
    """``role``'s turn, inside its agent's scope: model call(s), a tool, and if it answers, the
    published answer and the check."""
    from omium.sdk.context import idempotency_key

    timed_out: set[str] = set()

    @omium.tool(name="lookup", retry=omium.RetryPolicy(max_attempts=2, initial_interval=0, jitter=0))
    def lookup(entity: str) -> str:
        if one.timeout and idempotency_key() not in timed_out:
            timed_out.add(idempotency_key())
            raise ToolTimeout(f"lookup timed out for {entity}")
        record = {one.entity: one.value, one.other: one.other_value}
        if entity not in record:
            raise KeyError(f"no record for {entity}")
        return f"{entity}: {one.metric} {record[entity]}"

    system = {"role": "system", "content": str(agent_config().get("prompt", DEFAULT_PROMPT))}
    text = llm_call(_Model(one, role, nxt, 0), [system, {"role": "user", "content": heard}]).text
    entity = re.search(r"Calling lookup with entity=(\w+)", text)
    if role == "researcher" and entity is not None:
        try:
            found = lookup(entity.group(1))
        except KeyError as error:
            found = f"error: {error}"
        text = llm_call(_Model(one, role, nxt, 1), [system, {"role": "user", "content": found}]).text
    if "Final answer:" in text:
        answer = _answer(text)
        omium.SharedState(REPORTS).update(one.run_id, lambda _: answer)
        guard(
            answer == str(one.expected),
            f"final answer {answer} is not the record's {one.expected}",
            name="final_answer_check",
            evidence={"answer": answer, "expected": one.expected},
        )
    return text


@omium.workflow(name=WORKFLOW)
def team(scenario: dict[str, Any]) -> str:
    """Play the scenario: each agent in turn, handed the previous agent's words."""
    one = TeamScenario.from_dict(scenario)
    order = one.order
    heard = "task"
    for i, role in enumerate(order):
        nxt = one.roles[order[i + 1]] if i + 1 < len(order) else ""
        act = omium.agent(
            lambda message, role=role, nxt=nxt: _turn(one, role, nxt, message),
            name=one.roles[role],
            config={"prompt": DEFAULT_PROMPT},
        )
        heard = act(heard)
        if "Final answer:" in heard:
            break
    return heard


def run(one: TeamScenario, store: CheckpointStore | None = None) -> bool:
    """Run ``one`` (run id ``one.run_id``); whether it completed (it fails at its fault)."""
    try:
        omium.run(team, one.to_dict(), run_id=one.run_id, store=store)
    except Exception:  # the injected fault's failure: recorded on the run
        return False
    return True


def fault_position(steps: Sequence[Any], one: TeamScenario) -> int:
    """The position of the model call that drew the fault, among a run's recorded steps."""
    calls = {s.position for s in steps if s.kind == "llm" and s.agent == one.fault_agent}
    return sorted(calls)[one.fault_call]


__all__ = [
    "CAREFUL",
    "DEFAULT_PROMPT",
    "REPORTS",
    "WORKFLOW",
    "TeamScenario",
    "fault_position",
    "run",
    "scenario",
    "scenarios",
    "team",
]
