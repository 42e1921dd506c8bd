"""Rollback and fork of a LangGraph thread, through LangGraph's own history and ``update_state``.

A checkpoint is named as ``omium rollback``/``omium fork`` name one: by LangGraph's checkpoint id
(a unique prefix will do) or as ``step N`` (the thread's checkpoint of superstep N; the newest,
if the thread went through step N more than once). Only the root namespace is addressed.

* :func:`rollback` resumes the thread from that past checkpoint: the nodes after it run again
  and their checkpoints become the thread's latest (the earlier ones stay in its history).
* :func:`fork` writes ``values`` onto that checkpoint with ``update_state`` (as ``as_node``, if
  given) — a new checkpoint branching off it — and runs the graph on from the branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omium.adapters.langgraph._thread import RUN_PREFIX
from omium.errors import NotFoundError


@dataclass(frozen=True)
class Outcome:
    """What a rollback or fork did: the checkpoint it started from and where the thread is now."""

    thread_id: str
    started_from: str  # checkpoint id
    checkpoint_id: str  # the thread's latest checkpoint afterwards
    values: Any
    interrupted: bool


def thread_of(run_id: str) -> str:
    """The thread id of an Omium run id (``langgraph:<thread>``; a bare thread id is kept)."""
    return run_id.removeprefix(RUN_PREFIX)


def find_checkpoint(graph: Any, thread_id: str, ref: str) -> dict[str, Any]:
    """The config of the thread's checkpoint ``ref`` names (an id, an id prefix, or ``step N``).

    Raises:
        NotFoundError: no such checkpoint, or a prefix that names several.
    """
    history = list(graph.get_state_history({"configurable": {"thread_id": thread_id}}))
    if not history:
        raise NotFoundError(f"LangGraph thread {thread_id!r} has no checkpoints")
    text = ref.strip()
    words = text.split()
    if len(words) == 2 and words[0].lower() == "step" and words[1].lstrip("-").isdigit():
        step = int(words[1])
        found = [s for s in history if (s.metadata or {}).get("step") == step]  # newest first
        if not found:
            steps = sorted(
                {int(s.metadata["step"]) for s in history if (s.metadata or {}).get("step") is not None}
            )
            raise NotFoundError(f"thread {thread_id!r} has no checkpoint at step {step} (steps: {steps})")
        return dict(found[0].config)
    matches = [s for s in history if s.config["configurable"]["checkpoint_id"].startswith(text)]
    exact = [s for s in matches if s.config["configurable"]["checkpoint_id"] == text]
    if exact or len(matches) == 1:
        return dict((exact or matches)[0].config)
    if matches:
        raise NotFoundError(f"checkpoint {ref!r} is ambiguous in thread {thread_id!r}: {len(matches)} match")
    raise NotFoundError(f"thread {thread_id!r} has no checkpoint {ref!r} (an id, or 'step N')")


def rollback(graph: Any, thread_id: str, to: str, *, config: Mapping[str, Any] | None = None) -> Outcome:
    """Resume the thread from its past checkpoint ``to``: what came after it runs again."""
    target = find_checkpoint(graph, thread_id, to)
    result = graph.invoke(None, _with(target, config))
    return _outcome(graph, thread_id, target, result)


def fork(
    graph: Any,
    thread_id: str,
    at: str,
    values: Mapping[str, Any] | None,
    *,
    as_node: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> Outcome:
    """Branch the thread at checkpoint ``at`` with ``values`` written onto it, and run on from there."""
    target = find_checkpoint(graph, thread_id, at)
    branch = graph.update_state(target, dict(values or {}), as_node=as_node)
    result = graph.invoke(None, _with(branch, config))
    return _outcome(graph, thread_id, target, result)


def _with(target: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(config or {})
    merged["configurable"] = {**dict(merged.get("configurable", {})), **target["configurable"]}
    return merged


def _outcome(graph: Any, thread_id: str, target: Mapping[str, Any], result: Any) -> Outcome:
    latest = graph.get_state({"configurable": {"thread_id": thread_id}})
    return Outcome(
        thread_id=thread_id,
        started_from=target["configurable"]["checkpoint_id"],
        checkpoint_id=latest.config["configurable"]["checkpoint_id"],
        values=latest.values,
        interrupted=isinstance(result, Mapping) and bool(result.get("__interrupt__")),
    )


__all__ = ["Outcome", "find_checkpoint", "fork", "rollback", "thread_of"]
