"""Importing an existing workflow: inspect it and say where Omium would guard it, with no code changes.

``omium import langgraph MODULE:GRAPH`` loads a LangGraph graph (a ``StateGraph`` or its compiled
form), reports the agents (nodes) it finds, the checkpoints Omium suggests (after each node: a
super-step boundary, where LangGraph itself checkpoints), the hand-offs between them (edges, with
conditional routes marked), and writes a starter recovery policy that ``omium policy check``
accepts. The report is read from the graph's own structure (``get_graph()``), never by running it.

``omium import crewai MODULE:CREW`` does the same for a CrewAI crew: its agents (roles), one
checkpoint after each task, and the hand-offs a task's output makes — to the next task in a
sequential crew, to the tasks that name it in their ``context``, and from a hierarchical crew's
manager to every agent (conditional: the manager chooses). Tasks that already ask for human input
are suggested as review gates. The crew is read, never kicked off.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omium.errors import ConfigError

# LangGraph's virtual entry and exit nodes: structure, not agents.
_VIRTUAL = frozenset({"__start__", "__end__"})


@dataclass(frozen=True)
class Handoff:
    """Data passed from one node to the next."""

    source: str
    target: str
    conditional: bool = False


@dataclass(frozen=True)
class WorkflowReport:
    """What an inspection found in a workflow."""

    framework: str
    name: str
    agents: tuple[str, ...]
    entry: tuple[str, ...]
    handoffs: tuple[Handoff, ...]
    checkpoints: tuple[str, ...] = field(default=())
    # Where a checkpoint goes (its name, the agent that reaches it), in order; default: after each agent.
    steps: tuple[tuple[str, str], ...] = field(default=())
    reviews: tuple[str, ...] = field(default=())  # suggested review gates

    def step_rows(self) -> tuple[tuple[str, str], ...]:
        """(checkpoint, agent) in order: the steps found, else one after each agent."""
        return self.steps or tuple((f"after {a}", a) for a in self.agents)

    def policy_yaml(self) -> str:
        """A starter recovery policy for this workflow (the Company X defaults, commented)."""
        routes = "\n".join(
            f"#   {h.source} -> {h.target}{' (conditional)' if h.conditional else ''}" for h in self.handoffs
        )
        return (
            f"# Starter recovery policy for {self.framework} workflow {self.name!r} "
            "(written by `omium import`).\n"
            f"# Agents: {', '.join(self.agents)}\n"
            f"# Checkpoints suggested: {', '.join(self.checkpoints)}\n"
            "# Hand-offs to validate (give each a schema or constraints):\n"
            f"{routes or '#   none'}\n"
            + (
                f"# Review gates suggested (human input today): {', '.join(self.reviews)}\n"
                if self.reviews
                else ""
            )
            + "rollback_triggers:\n"
            "  - hallucination_detected: true\n"
            "  - policy_violation: true\n"
            "  - stale_handoff: true\n"
            "recovery_actions:\n"
            "  - rollback_to_last_checkpoint: true\n"
            "  - pause_and_notify: true\n"
            "  - await_human_review: true\n"
            '  - allowed_edits: ["prompt", "constraints", "tool_selection"]\n'
            '  - forbidden_edits: ["core_logic", "agent_count"]\n'
            "retry_policy:\n"
            "  max_retries: 3\n"
            "  backoff: exponential(1s, 10s)\n"
            '  condition: "same_failure_not_detected_twice"\n'
        )


def load_object(spec: str, *, search: Path | None = None) -> Any:
    """The object ``MODULE:ATTR`` names (the current directory is importable, as for ``python -m``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"expected MODULE:OBJECT, got {spec!r}")
    root = str(search or Path.cwd())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        found = module
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError as exc:
        raise ConfigError(f"{module_name!r} has no {attribute!r}") from exc
    return found


def inspect_langgraph(graph: Any, name: str = "") -> WorkflowReport:
    """Agents, entry points, suggested checkpoints and hand-offs of a LangGraph graph."""
    compiled = graph.compile() if hasattr(graph, "compile") and not hasattr(graph, "get_graph") else graph
    if not hasattr(compiled, "get_graph"):
        raise ConfigError(f"{type(graph).__name__} is not a LangGraph StateGraph or compiled graph")
    drawn = compiled.get_graph()
    agents = tuple(n for n in drawn.nodes if n not in _VIRTUAL)
    handoffs = tuple(
        Handoff(e.source, e.target, bool(e.conditional))
        for e in drawn.edges
        if e.source not in _VIRTUAL and e.target not in _VIRTUAL
    )
    entry = tuple(e.target for e in drawn.edges if e.source == "__start__" and e.target not in _VIRTUAL)
    return WorkflowReport(
        framework="langgraph",
        name=name or getattr(compiled, "name", "") or "graph",
        agents=agents,
        entry=entry,
        handoffs=handoffs,
        checkpoints=tuple(f"after {a}" for a in agents),
    )


def inspect_crewai(crew: Any, name: str = "") -> WorkflowReport:
    """Agents, entry, suggested checkpoints (after each task) and hand-offs of a CrewAI crew."""
    tasks = list(getattr(crew, "tasks", None) or [])
    if not hasattr(crew, "kickoff") or not tasks:
        raise ConfigError(f"{type(crew).__name__} is not a CrewAI Crew with tasks")
    process = str(getattr(getattr(crew, "process", None), "value", getattr(crew, "process", "sequential")))
    manager = getattr(crew, "manager_agent", None)
    manager_role = str(getattr(manager, "role", "") or ("manager" if process == "hierarchical" else ""))

    def role(task: Any) -> str:
        return str(getattr(getattr(task, "agent", None), "role", "") or manager_role or "unassigned")

    def label(task: Any) -> str:
        if getattr(task, "name", None):
            return str(task.name)
        first = str(getattr(task, "description", "") or "task").strip().splitlines()[0]
        return first if len(first) <= 60 else first[:57] + "..."

    agents: list[str] = []
    for candidate in [role(t) for t in tasks] + [str(a.role) for a in getattr(crew, "agents", [])]:
        if candidate not in agents:
            agents.append(candidate)
    found: list[Handoff] = []

    def add(source: str, target: str, conditional: bool) -> None:
        if source != target and not any((h.source, h.target) == (source, target) for h in found):
            found.append(Handoff(source, target, conditional))

    if process == "hierarchical":
        for agent in agents:
            add(manager_role, agent, True)
    else:
        for before, after in itertools.pairwise(tasks):
            add(role(before), role(after), type(after).__name__ == "ConditionalTask")
    for task in tasks:
        named = getattr(task, "context", None)
        for source in named if isinstance(named, list) else []:  # else CrewAI's NOT_SPECIFIED
            if hasattr(source, "description"):
                add(role(source), role(task), type(task).__name__ == "ConditionalTask")
    entry = (manager_role,) if process == "hierarchical" else (role(tasks[0]),)
    if process == "hierarchical" and manager_role not in agents:
        agents.insert(0, manager_role)
    steps = tuple((f"after task {label(t)!r}", role(t)) for t in tasks)
    return WorkflowReport(
        framework="crewai",
        name=name or str(getattr(crew, "name", "") or "crew"),
        agents=tuple(agents),
        entry=entry,
        handoffs=tuple(found),
        checkpoints=tuple(s for s, _ in steps),
        steps=steps,
        reviews=tuple(f"before {role(t)}" for t in tasks if getattr(t, "human_input", False)),
    )


__all__ = ["Handoff", "WorkflowReport", "inspect_crewai", "inspect_langgraph", "load_object"]
