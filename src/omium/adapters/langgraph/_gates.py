"""Review gates and hand-off checks inside LangGraph nodes, recorded in Omium's audit trail.

:func:`review_gate` pauses a thread for a person with LangGraph's ``interrupt()``: the thread's
run becomes ``paused`` awaiting review (as ``omium review`` and the console's recovery queue show
native runs) with a ``paused`` event naming the checkpoint; :func:`approve` / :func:`reject` resume
it with ``Command(resume=...)``, recorded as ``reviewed`` then ``resumed``. A rejected gate raises
:class:`ReviewRejected` in the node, which ends the invoke; :func:`reject` marks the run rejected.

:func:`validated` wraps a node so that its state update (what the next node receives) is checked
against a pydantic model and/or Omium constraints (:func:`omium.sdk.consensus.check_constraints`)
before LangGraph applies it. A rejected update stops the run: a ``detected`` event with trigger
``handoff_rejected`` and the reason, the run marked ``failed``, and :class:`HandoffRejected` raised
(so nothing of the update is written and the thread can be resumed once the cause is fixed).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import Command, interrupt

from omium.adapters.langgraph._saver import OmiumSaver
from omium.adapters.langgraph._thread import RUN_PREFIX, run_id_of, thread_run
from omium.errors import ConflictError, HandoffRejected, NotFoundError, OmiumError
from omium.recovery import audit
from omium.sdk.consensus import check_constraints
from omium.sdk.store import CheckpointStore

AWAITING = "review"  # the run attribute ``awaiting`` of a thread paused at a review gate
GATE = "omium.review_gate"  # marks an interrupt value as a review gate's
CHECKPOINTER_KEY = "__pregel_checkpointer"  # where LangGraph puts the checkpointer in a task's config


class ReviewRejected(OmiumError):
    """A reviewer rejected what a review gate held (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"review rejected: {reason}" if reason else "review rejected")
        self.reason = reason


def review_gate(
    value: Any = None,
    *,
    reason: str = "",
    store: CheckpointStore | None = None,
    reviewer_hint: str = "",
) -> Any:
    """Pause the thread until a person approves ``value``; what they approved (maybe edited).

    Call it inside a node of a graph compiled with a checkpointer. The first time, the run is
    marked ``paused`` (awaiting review) with a ``paused`` event, and the node is interrupted; on
    ``approve()`` the node runs again from its start and this call returns the approved value
    (or the reviewer's edit). On ``reject()`` it raises :class:`ReviewRejected`.

    Args:
        value: what the reviewer decides on (JSON-friendly: it is shown to them).
        reason: why a review is needed (recorded, shown).
        store: where the run's record and events are (default: the graph's ``OmiumSaver``'s).
        reviewer_hint: who should review (recorded as the ``awaiting`` detail).
    """
    config = get_config()
    conf = config.get("configurable", {})
    thread_id = conf.get("thread_id")
    checkpoint_id = (conf.get("checkpoint_map") or {}).get("") or conf.get("checkpoint_id") or ""
    store = store or _store_of(conf)
    node = config.get("metadata", {}).get("langgraph_node", "")
    request = {GATE: True, "reason": reason, "value": value, "node": node}
    incident = f"review-{checkpoint_id}-{node}"  # the same when the node runs again on resume
    try:
        answer = interrupt(request)
    except GraphInterrupt:
        if store is not None and thread_id is not None:
            _set_status(store, run_id_of(thread_id), "paused", awaiting=reviewer_hint or AWAITING)
            audit.record(
                store,
                run_id_of(thread_id),
                "paused",
                actor="langgraph",
                reason=reason or "awaiting review",
                before=value,
                incident=incident,
                checkpoint=checkpoint_id,
                node=node,
                awaiting=reviewer_hint or AWAITING,
            )
        raise
    decision = answer if isinstance(answer, Mapping) else {"decision": "approve", "value": answer}
    verdict = str(decision.get("decision", "approve"))
    if store is not None and thread_id is not None:
        run_id = run_id_of(thread_id)
        audit.record(
            store,
            run_id,
            "reviewed",
            actor=str(decision.get("reviewer", "reviewer")),
            reason=str(decision.get("reason", "")) or verdict,
            before=value,
            after={"decision": verdict, **({"value": decision["value"]} if "value" in decision else {})},
            incident=incident,
            decision=verdict,
            checkpoint=checkpoint_id,
            node=node,
        )
        if verdict == "approve":
            _set_status(store, run_id, "running", awaiting="")
            audit.record(
                store,
                run_id,
                "resumed",
                actor="langgraph",
                incident=incident,
                checkpoint=checkpoint_id,
                node=node,
            )
    if verdict != "approve":
        raise ReviewRejected(str(decision.get("reason", "")))
    return decision.get("value", value)


def approve(
    graph: Any,
    thread_id: Any,
    *,
    value: Any = None,
    edit: bool = False,
    reviewer: str = "reviewer",
    reason: str = "",
    config: Mapping[str, Any] | None = None,
) -> Any:
    """Resume a thread paused at a review gate, approving (``edit=True``: replacing) its value.

    Returns what the invoke returns (it may stop at another gate).
    """
    answer: dict[str, Any] = {"decision": "approve", "reviewer": reviewer, "reason": reason}
    if edit:
        answer["value"] = value
    result = graph.invoke(Command(resume=answer), _config(thread_id, config))
    _settle(graph, thread_id, result)
    return result


def reject(
    graph: Any,
    thread_id: Any,
    *,
    reviewer: str = "reviewer",
    reason: str = "",
    config: Mapping[str, Any] | None = None,
) -> None:
    """Reject what a thread's review gate holds: the node raises :class:`ReviewRejected`, the run
    is marked ``rejected``."""
    answer = {"decision": "reject", "reviewer": reviewer, "reason": reason}
    try:
        graph.invoke(Command(resume=answer), _config(thread_id, config))
    except ReviewRejected:
        store = _store_of_graph(graph)
        if store is not None:
            _set_status(store, run_id_of(thread_id), "rejected", awaiting="", error=reason or "rejected")
        return
    raise ConflictError(f"thread {thread_id!r} was not waiting at a review gate")


def validated(
    node: Callable[..., Any],
    *,
    schema: type | None = None,
    constraints: Mapping[str, Any] | None = None,
    store: CheckpointStore | None = None,
) -> Callable[..., Any]:
    """``node`` whose state update must match ``schema`` (a pydantic model) and ``constraints``.

    Use it where the node is added: ``builder.add_node("quote", validated(quote, schema=Quote))``.
    A ``Command`` update is checked on its ``update``. A rejected update raises
    :class:`~omium.errors.HandoffRejected` (after recording it), so LangGraph writes none of it.
    """

    def check(update: Any) -> Any:
        payload = update.update if isinstance(update, Command) else update
        if payload is not None:
            check_handoff(payload, schema=schema, constraints=constraints, store=store)
        return update

    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return check(await node(*args, **kwargs))

        return async_wrapper

    @functools.wraps(node)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return check(node(*args, **kwargs))

    return wrapper


def check_handoff(
    update: Any,
    *,
    schema: type | None = None,
    constraints: Mapping[str, Any] | None = None,
    store: CheckpointStore | None = None,
) -> Any:
    """Check a node's update inside the node; it (validated by ``schema``) or :class:`HandoffRejected`."""
    value, violations = update, []
    if schema is not None and not isinstance(update, schema):
        validate = getattr(schema, "model_validate", None)
        if validate is None:
            violations = [f"expected {schema.__name__}, got {type(update).__name__}"]
        else:
            try:
                value = validate(update)
            except ValueError as error:  # pydantic's ValidationError is a ValueError
                violations = [f"does not match {schema.__name__}: {error}"]
    if not violations:
        violations = check_constraints(value, constraints)
    if not violations:
        return value
    reason = "; ".join(violations)
    config = get_config()
    conf = config.get("configurable", {})
    thread_id = conf.get("thread_id")
    node = config.get("metadata", {}).get("langgraph_node", "")
    store = store or _store_of(conf)
    if store is not None and thread_id is not None:
        run_id = run_id_of(thread_id)
        incident = uuid.uuid4().hex
        audit.record(
            store,
            run_id,
            "detected",
            actor="langgraph",
            reason=reason,
            before=_jsonable(update),
            incident=incident,
            trigger="handoff_rejected",
            node=node,
            checkpoint=(conf.get("checkpoint_map") or {}).get("", ""),
        )
        _set_status(store, run_id, "failed", error=f"hand-off from {node or 'node'} rejected: {reason}")
        audit.record(store, run_id, "failed", actor="langgraph", reason=reason, incident=incident, node=node)
    raise HandoffRejected(f"hand-off from {node or 'node'} rejected: {reason}")


# --- helpers
def _config(thread_id: Any, config: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(config or {})
    merged["configurable"] = {**dict(merged.get("configurable", {})), "thread_id": thread_id}
    return merged


def _store_of(conf: Mapping[str, Any]) -> CheckpointStore | None:
    """The store of the running graph's checkpointer, if it is an Omium saver."""
    saver = conf.get(CHECKPOINTER_KEY)
    return saver.store if isinstance(saver, OmiumSaver) else None


def _store_of_graph(graph: Any) -> CheckpointStore | None:
    found = getattr(getattr(graph, "checkpointer", None), "store", None)
    return found if isinstance(found, CheckpointStore) else None


def _settle(graph: Any, thread_id: Any, result: Any) -> None:
    """After a resume: a run that finished (not stopped at another gate) is ``completed`` again."""
    store = _store_of_graph(graph)
    if store is None or (isinstance(result, Mapping) and result.get("__interrupt__")):
        return
    run = store.get_run(run_id_of(thread_id))
    if run.status == "running":
        _set_status(store, run.run_id, "completed", awaiting="")


def _set_status(
    store: CheckpointStore, run_id: str, status: str, *, awaiting: str | None = None, error: str = ""
) -> None:
    attributes = {} if awaiting is None else {"awaiting": awaiting}
    _ensure_run(store, run_id)
    for _ in range(5):  # compare-and-set: retry if another writer moved the version on
        run = store.get_run(run_id)
        try:
            store.update_run(run_id, run.version, status=status, error=error, attributes=attributes)
            return
        except ConflictError:
            continue


def _ensure_run(store: CheckpointStore, run_id: str) -> None:
    """Make the thread's run as the saver does, if it is not there yet: checkpoints may still be
    on their way (LangGraph writes them in the background), and the saver makes the run only on a
    write to a thread this process has not read before."""
    try:
        store.get_run(run_id)
        return
    except NotFoundError:
        pass
    with contextlib.suppress(ConflictError):  # the saver made it meanwhile
        store.create_run(thread_run(run_id.removeprefix(RUN_PREFIX)))


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


__all__ = ["ReviewRejected", "approve", "check_handoff", "reject", "review_gate", "validated"]
