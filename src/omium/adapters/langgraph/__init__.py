"""Omium beneath LangGraph: :class:`OmiumSaver`, a checkpointer whose threads live in Omium's store.

Compile a graph with it and its threads are checkpointed into the warehouse (or whatever store
``omium.init()`` chose), each value stored once by content and message histories split into
items, so storage grows with what a turn adds rather than with the whole history::

    from omium.adapters.langgraph import OmiumSaver

    graph = builder.compile(checkpointer=OmiumSaver())
    graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})

Beside it: :class:`OmiumTracer` (GenAI spans of each invoke, from LangChain callbacks),
:func:`review_gate` / :func:`approve` / :func:`reject` (a person's review on ``interrupt()``),
:func:`validated` / :func:`check_handoff` (a node's state update checked before the next node gets
it), and :func:`rollback` / :func:`fork` (a thread resumed or branched at a past checkpoint, as
``omium rollback`` / ``omium fork`` do for ``langgraph:`` runs).

Needs the ``langgraph`` extra: ``pip install 'omium[langgraph]'``.
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    from omium.errors import ConfigError

    raise ConfigError("the LangGraph adapter needs its extra: pip install 'omium[langgraph]'") from None

from omium.adapters.langgraph._gates import (
    ReviewRejected,
    approve,
    check_handoff,
    reject,
    review_gate,
    validated,
)
from omium.adapters.langgraph._recovery import Outcome, find_checkpoint, fork, rollback
from omium.adapters.langgraph._saver import OmiumSaver
from omium.adapters.langgraph._tracing import OmiumTracer

__all__ = [
    "OmiumSaver",
    "OmiumTracer",
    "Outcome",
    "ReviewRejected",
    "approve",
    "check_handoff",
    "find_checkpoint",
    "fork",
    "reject",
    "review_gate",
    "rollback",
    "validated",
]
