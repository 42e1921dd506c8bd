"""Labelled failures with exact ground truth: faults injected into small multi-agent workflows.

A :class:`Scenario` is a team of 3-5 agents with neutral names drawn at random (a name says
nothing about the role: the attribution model must not learn names) working on one task: a
coordinator plans, a researcher looks a figure up with a tool, an analyst derives, a writer
drafts, a reviewer signs off. One fault is injected at one turn of one agent:

- ``hallucination``: the agent states a figure no tool returned;
- ``wrong_tool_args``: the researcher calls the tool with another entity;
- ``dropped_handoff``: the agent hands on without the data the next one needs;
- ``stale_handoff``: the agent hands on the plan's old estimate instead of the fresh figure;
- ``role_violation``: an agent does another's job (the writer answers without research);
- ``premature_termination``: the agent ends the run before the work is done.

Benign noise makes the trivial answers wrong often enough: a transient tool timeout that is
retried (an error that is not the fault), a coordinator that speaks again, a reviewer that
repeats a figure.

Each scenario runs through one *framework* — Omium's plain SDK, or LangGraph, AG2, the OpenAI
Agents SDK and CrewAI (in its own venv: :mod:`omium.models.crewai_faults`) under Omium's
adapters — with that framework's scripted fake model, and its spans are
written where the framework's own tracing path writes them (the tracer provider given to
:func:`generate`). The ground truth is found on the spans, not assumed: after normalisation the
faulty turn's output is looked up among the run's step spans (:func:`locate`), and its step index
and agent become the ``omium_ground_truth`` row (``source`` = the framework).

This is a product module, not a benchmark helper: it is the training data of the shipped
attribution model (issue 18: learn from five conventions, score on one left out), and users can
generate more for their own stack. Frameworks are imported only when their runner is used.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

FAULTS = (
    "hallucination",
    "wrong_tool_args",
    "dropped_handoff",
    "stale_handoff",
    "role_violation",
    "premature_termination",
)
ROLES = ("coordinator", "researcher", "analyst", "writer", "reviewer")
# Neutral names: none says what its agent does.
NAMES = (
    "alder", "birch", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper",
    "kestrel", "lumen", "maple", "nimbus", "onyx", "pylon", "quartz", "raven", "sable", "tundra",
    "umber", "vesper", "willow", "xenon", "yarrow", "zephyr", "agent_1", "agent_2", "agent_3",
    "unit_a", "unit_b", "node_x",
)  # fmt: skip
ENTITIES = ("acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "wonka")
METRICS = ("revenue", "headcount", "churn rate", "unit cost", "net margin", "order volume")


@dataclass(frozen=True)
class Turn:
    """One turn of one agent: what its model says, and the tool call it makes first (if any)."""

    agent: str
    text: str
    tool_args: dict[str, str] | None = None  # lookup(**tool_args) before the text
    tool_fails: bool = False  # the tool raises (a transient timeout or a bad argument)


@dataclass(frozen=True)
class Scenario:
    """A scripted run with one injected fault at turn ``fault_turn``."""

    run_id: str
    roles: dict[str, str]  # role -> agent name
    turns: tuple[Turn, ...]
    fault: str
    fault_turn: int
    facts: dict[str, str] = field(default_factory=dict)  # entity -> the tool's figure

    @property
    def fault_agent(self) -> str:
        """The agent whose turn holds the fault."""
        return self.turns[self.fault_turn].agent

    @property
    def fault_text(self) -> str:
        """What the faulty turn said (unique in its run: it is how the step is found on spans)."""
        return self.turns[self.fault_turn].text


def lookup_result(facts: dict[str, str], entity: str) -> str:
    """What the scenario's tool answers for ``entity``."""
    if entity not in facts:
        raise KeyError(f"no record for {entity}")
    return f"{entity}: {facts[entity]}"


def scenario(rng: random.Random, run_id: str, fault: str | None = None) -> Scenario:
    """One scripted run with one fault (``fault`` or one drawn at random)."""
    fault = fault or rng.choice(FAULTS)
    size = rng.randint(3, 5)
    # The coordinator and researcher always exist; the rest by size; names shuffled in.
    roles_used = ["coordinator", "researcher", *rng.sample(["analyst", "writer", "reviewer"], size - 2)]
    roles_used.sort(key=ROLES.index)
    names = rng.sample(NAMES, size)
    roles = dict(zip(roles_used, names, strict=True))
    entity, other = rng.sample(ENTITIES, 2)
    metric = rng.choice(METRICS)
    value = rng.randint(120, 980)
    old = value + rng.choice((-1, 1)) * rng.randint(15, 90)
    wrong = value + (rng.randint(100, 400) if value < 500 else -rng.randint(100, 400))
    facts = {entity: f"{metric} {value}", other: f"{metric} {value + rng.randint(200, 500)}"}
    factor = rng.choice((2, 3, 4))
    derived = value * factor
    says = roles.get

    turns: list[Turn] = []
    fault_turn = -1

    def add(turn: Turn, *, faulty: bool = False) -> None:
        nonlocal fault_turn
        if faulty:
            fault_turn = len(turns)
        turns.append(turn)

    order: list[str] = [r for r in ("researcher", "analyst", "writer", "reviewer") if r in roles]
    # Where the fault goes: roles it can happen to.
    at = {
        "hallucination": rng.choice([r for r in order if r != "reviewer"] or order),
        "wrong_tool_args": "researcher",
        "dropped_handoff": rng.choice(["coordinator", *[r for r in order[:-1]]]),
        "stale_handoff": rng.choice([r for r in order[:-1]] or ["coordinator"]),
        "role_violation": rng.choice([r for r in order if r != "researcher"] or ["coordinator"]),
        "premature_termination": rng.choice(["coordinator", *order[:-1]]),
    }[fault]
    nxt: dict[str, str] = {
        r: (order[i + 1] if i + 1 < len(order) else "coordinator") for i, r in enumerate(order)
    }
    nxt["coordinator"] = order[0]
    # A figure in flight: what each downstream agent believes.
    believed = str(value)

    # 1. the plan
    plan = (
        f"Task: the {metric} of {entity}, times {factor}. Plan: {says('researcher')} looks it up"
        f"{', ' + str(says('analyst')) + ' derives' if 'analyst' in roles else ''}"
        f"{', ' + str(says('writer')) + ' drafts' if 'writer' in roles else ''}"
        f"{', ' + str(says('reviewer')) + ' checks' if 'reviewer' in roles else ''}. "
        f"Last quarter's estimate was {old}."
    )
    if at == "coordinator" and fault == "dropped_handoff":
        add(Turn(roles["coordinator"], f"Handing over to {says('researcher')}. Go ahead."), faulty=True)
    elif at == "coordinator" and fault == "premature_termination":
        add(
            Turn(roles["coordinator"], f"Estimate from last quarter: {old}. Final answer: {old}. TERMINATE"),
            faulty=True,
        )
        return Scenario(run_id, roles, tuple(turns), fault, fault_turn, facts)
    else:
        add(Turn(roles["coordinator"], plan + f" Over to {says('researcher')}."))
    for role in order:
        agent = roles[role]
        here = at == role
        if role == "researcher":
            if rng.random() < 0.35:  # a transient failure, retried: an error that is not the fault
                add(
                    Turn(
                        agent,
                        f"Looking up {entity}; the lookup timed out, retrying.",
                        {"entity": entity},
                        True,
                    )
                )
            if here and fault == "wrong_tool_args":
                add(
                    Turn(agent, f"Calling lookup with entity={other} for the {metric}.", {"entity": other}),
                    faulty=True,
                )
                believed = facts[other].split()[-1]
                add(
                    Turn(
                        agent,
                        f"Lookup returned {metric} {believed}. Passing {believed} to {says(nxt[role])}.",
                    )
                )
                continue
            if here and fault == "hallucination":
                believed = str(wrong)
                add(
                    Turn(agent, f"From memory, the {metric} of {entity} is {wrong}; no need to check."),
                    faulty=True,
                )
                continue
            if here and fault == "premature_termination":
                add(
                    Turn(agent, f"Could not be sure about {entity}. Final answer: unknown. TERMINATE"),
                    faulty=True,
                )
                return Scenario(run_id, roles, tuple(turns), fault, fault_turn, facts)
            add(Turn(agent, f"Lookup returned {metric} {value} for {entity}.", {"entity": entity}))
            if here and fault == "dropped_handoff":
                believed = "?"
                add(Turn(agent, f"Done on my side, over to {says(nxt[role])}."), faulty=True)
            elif here and fault == "stale_handoff":
                believed = str(old)
                add(Turn(agent, f"Passing the figure {old} to {says(nxt[role])}."), faulty=True)
            else:
                add(Turn(agent, f"Passing the figure {value} to {says(nxt[role])}."))
        elif role == "analyst":
            if believed == "?":
                add(Turn(agent, f"I received no figure; assuming 100, the result is {100 * factor}."))
                believed = str(100 * factor)
                continue
            result = int(believed) * factor if believed.isdigit() else derived
            if here and fault == "hallucination":
                result = wrong * factor
                add(
                    Turn(agent, f"Recomputed independently, the {metric} is {wrong}, so {result}."),
                    faulty=True,
                )
            elif here and fault == "role_violation":
                result = wrong * factor
                add(
                    Turn(
                        agent,
                        f"I will skip the figure I was given and answer the task myself: {result}. "
                        f"Final answer: {result}.",
                    ),
                    faulty=True,
                )
            elif here and fault == "premature_termination":
                add(Turn(agent, f"The result is {result}. Nothing more to do. TERMINATE"), faulty=True)
                return Scenario(run_id, roles, tuple(turns), fault, fault_turn, facts)
            elif here and fault == "dropped_handoff":
                add(Turn(agent, f"Computed. Over to {says(nxt[role])}."), faulty=True)
                believed = "?"
                continue
            elif here and fault == "stale_handoff":
                result = old * factor
                add(
                    Turn(
                        agent, f"Using the estimate {old}: the result is {result}. Over to {says(nxt[role])}."
                    ),
                    faulty=True,
                )
            else:
                add(Turn(agent, f"{believed} times {factor} is {result}. Over to {says(nxt[role])}."))
            believed = str(result)
        elif role == "writer":
            if believed == "?":
                add(Turn(agent, f"Nothing was handed to me; drafting with the estimate {old}."))
                believed = str(old)
                continue
            if here and fault == "hallucination":
                believed = str(wrong * factor)
                add(Turn(agent, f"Draft: the answer is {believed}, as widely reported."), faulty=True)
            elif here and fault == "role_violation":
                believed = str(wrong)
                add(
                    Turn(
                        agent,
                        f"Rather than use the research I looked this up myself: {wrong}. "
                        f"Final answer: {wrong}.",
                    ),
                    faulty=True,
                )
            elif here and fault == "premature_termination":
                add(Turn(agent, f"Draft started: {believed}. TERMINATE"), faulty=True)
                return Scenario(run_id, roles, tuple(turns), fault, fault_turn, facts)
            elif here and fault == "dropped_handoff":
                add(Turn(agent, f"Draft done, over to {says(nxt[role])}."), faulty=True)
                believed = "?"
            elif here and fault == "stale_handoff":
                believed = str(old)
                add(Turn(agent, f"Draft: the answer is {old}, per the plan."), faulty=True)
            else:
                add(Turn(agent, f"Draft: the answer is {believed}."))
        elif role == "reviewer":
            if here and fault == "role_violation":
                add(
                    Turn(
                        agent,
                        f"I rewrote the draft with my own figure: {wrong}. Final answer: {wrong}. TERMINATE",
                    ),
                    faulty=True,
                )
                continue
            shown = believed if believed != "?" else "not provided"
            if rng.random() < 0.3:
                add(Turn(agent, f"Checking the figure {shown} once more."))
            add(Turn(agent, f"Reviewed: {shown} looks consistent. Final answer: {shown}. TERMINATE"))
    if fault_turn < 0:  # the chosen role was missing: fall back to a hallucination of the researcher
        return scenario(rng, run_id, "hallucination")
    if rng.random() < 0.3:
        add(Turn(roles["coordinator"], "Thanks all, closing the task."))
    return Scenario(run_id, roles, tuple(turns), fault, fault_turn, facts)


def scenarios(seed: int, count: int, prefix: str) -> list[Scenario]:
    """``count`` scenarios, deterministic in ``seed``; run ids ``{prefix}:{seed}:{i}``."""
    rng = random.Random(seed)
    return [scenario(rng, f"{prefix}:{seed}:{i}", FAULTS[i % len(FAULTS)]) for i in range(count)]


Runner = Callable[[Scenario], str]


def _runner(framework: str) -> Runner:
    from omium.models import _fault_runners as runners

    return {
        "omium_sdk": runners.run_sdk,
        "langgraph": runners.run_langgraph,
        "ag2": runners.run_ag2,
        "openai_agents": runners.run_openai_agents,
        "crewai": runners.run_crewai,
    }[framework]


FRAMEWORKS = ("omium_sdk", "langgraph", "ag2", "openai_agents")
# CrewAI pins dependencies that conflict with the Agents SDK: it runs in its own environment
# (.venv-crewai), in a child process (omium.models.crewai_faults).
CREWAI = "crewai"


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` ran: the scenarios of each framework."""

    framework: str
    scenarios: tuple[Scenario, ...]
    run_ids: tuple[str, ...]  # the id each scenario's run was recorded under


def generate(
    tracer_provider: Any, frameworks: Iterable[str] = FRAMEWORKS, *, count: int = 60, seed: int = 0
) -> list[Generated]:
    """Run ``count`` scenarios through each framework, spans going to ``tracer_provider``."""
    from omium.sdk import runs, tracing
    from omium.sdk.store import MemoryStore

    previous_store, previous_provider = runs._default_store, tracing._provider
    runs.init(store=MemoryStore(), tracer_provider=tracer_provider)
    out = []
    try:
        for number, framework in enumerate(frameworks):
            run = _runner(framework)
            made = scenarios(seed * 100 + number, count, f"fault:{framework}")
            recorded = tuple(run(one) for one in made)
            out.append(Generated(framework, tuple(made), recorded))
    finally:
        tracer_provider.force_flush()
        runs._default_store = previous_store
        tracing.configure(previous_provider)
    return out


def locate(steps: Sequence[tuple[int, str, str]], one: Scenario) -> tuple[int, str] | None:
    """The (step index, agent) of the span that holds ``one``'s fault, from a run's step spans
    ``(step_index, agent, content)`` in time order; None when no span shows it.

    A span whose content holds the faulty turn's words is the fault's step. A convention that
    records no content (LangGraph's tracer) gives one step per turn (the node's
    ``langgraph_step``), so there the fault is the ``fault_turn``-th step, if its agent agrees.
    """
    text = one.fault_text
    for index, agent, content in steps:
        if text in content and agent == one.fault_agent:
            return index, agent
    if any(content for _, _, content in steps):
        return None
    order = list(dict.fromkeys(index for index, _, _ in steps))
    if len(order) != len(one.turns):
        return None
    index = order[one.fault_turn]
    agents = {agent for i, agent, _ in steps if i == index}
    return (index, one.fault_agent) if agents == {one.fault_agent} else None


# The days the generated runs' spans fall on (only those are normalised, not the whole warehouse).
DAYS_OF_RUNS = "SELECT DISTINCT toDate(Timestamp) AS day FROM otel_traces WHERE RunId IN {ids:Array(String)}"
TRUTH_COLUMNS = [
    "run_id",
    "source",
    "source_id",
    "failed",
    "mistake_agent",
    "mistake_step",
    "mistake_reason",
    "imported_at",
]


def label(warehouse: Any, generated: Sequence[Generated]) -> dict[str, int]:
    """Normalise the generated runs' spans, find each fault on them and write its
    ``omium_ground_truth`` row (source = the framework); counts of labelled runs per framework."""
    import datetime as dt

    from omium.pipelines import spans

    ids = [run_id for group in generated for run_id in group.run_ids]
    for row in warehouse.query_rows(DAYS_OF_RUNS, {"ids": ids}):
        spans.normalise_day(warehouse, row["day"])
    truth: list[list[Any]] = []
    counts: dict[str, int] = {}
    now = dt.datetime.now(dt.UTC)
    for group in generated:
        ids = list(group.run_ids)
        rows = warehouse.query_rows(
            "SELECT run_id, step_index, agent, content FROM omium_normalized_spans FINAL "
            "WHERE run_id IN {ids:Array(String)} AND step_index >= 0 ORDER BY run_id, ts, span_id",
            {"ids": ids},
        )
        by_run: dict[str, list[tuple[int, str, str]]] = {}
        for r in rows:
            by_run.setdefault(r["run_id"], []).append((r["step_index"], r["agent"], r["content"]))
        for one, run_id in zip(group.scenarios, group.run_ids, strict=True):
            found = locate(by_run.get(run_id, []), one)
            if found is None:
                continue
            step, agent = found
            reason = f"{one.fault}: {one.fault_text}"
            truth.append([run_id, group.framework, one.run_id, True, agent, step, reason, now])
            counts[group.framework] = counts.get(group.framework, 0) + 1
    if truth:
        warehouse.insert("omium_ground_truth", [list(c) for c in zip(*truth, strict=True)], TRUTH_COLUMNS)
    return counts


__all__ = [
    "CREWAI",
    "FAULTS",
    "FRAMEWORKS",
    "Generated",
    "Scenario",
    "Turn",
    "generate",
    "label",
    "locate",
    "lookup_result",
    "plain_steps",
    "scenario",
    "scenarios",
]


def plain_steps(one: Scenario) -> tuple[list[Any], int]:
    """The scenario as steps without any framework (a tool call is a step of its own before the
    turn's text): (steps, position of the faulty step). For unit tests and quick checks."""
    from omium.models.attribution import Step

    steps: list[Step] = []
    mistake = -1
    for index, turn in enumerate(one.turns):
        if turn.tool_args is not None:
            entity = turn.tool_args["entity"]
            if turn.tool_fails:
                steps.append(Step(turn.agent, f"lookup timed out for {entity}", error=True, tool=True))
            else:
                try:
                    steps.append(Step(turn.agent, lookup_result(one.facts, entity), tool=True))
                except KeyError as error:
                    steps.append(Step(turn.agent, str(error), error=True, tool=True))
        if index == one.fault_turn:
            mistake = len(steps)
        steps.append(Step(turn.agent, turn.text))
    return steps, mistake
