"""Importing an existing workflow: inspect it and say where Omium would guard it, with no code changes.

``omium import langgraph MODULE:GRAPH`` loads a LangGraph graph (a ``StateGraph`` or its compiled
form), reports the agents (nodes) it finds, the checkpoints Omium suggests (after each node: a
super-step boundary, where LangGraph itself checkpoints), the hand-offs between them (edges, with
conditional routes marked), and writes a starter recovery policy that ``omium policy check``
accepts. The report is read from the graph's own structure (``get_graph()``), never by running it.
"""

from __future__ import annotations

import importlib
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
            "rollback_triggers:\n"
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


__all__ = ["Handoff", "WorkflowReport", "inspect_langgraph", "load_object"]
