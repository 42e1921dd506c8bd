"""Deterministic replay of a recorded run, with a verification report.

The workflow function is invoked again with every recorded call (steps, tools, LLM calls,
hand-offs, shared-state reads and writes) answered from the recording; nothing executes and
nothing is written. The report says whether the replay made the same calls in the same order
and returned the same result, or where it first diverged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omium.errors import NonDeterminismError, NotFoundError
from omium.sdk import serde
from omium.sdk.concurrency import ensure_task_scopes
from omium.sdk.context import RunContext, call_order, enter, leave
from omium.sdk.runs import RESULT_ATTRIBUTE, RollbackView, default_store, recorded_inputs
from omium.sdk.store import CheckpointStore


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of :func:`replay`."""

    run_id: str
    identical: bool
    calls_replayed: int
    calls_recorded: int
    divergence: str = ""
    result: Any = None

    def __str__(self) -> str:
        if self.identical:
            return f"run {self.run_id}: identical ({self.calls_replayed} recorded calls replayed)"
        return f"run {self.run_id}: diverged — {self.divergence}"


def replay(
    fn: Callable[..., Any], *args: Any, run_id: str, store: CheckpointStore | None = None, **kwargs: Any
) -> ReplayReport:
    """Replay run ``run_id`` of ``fn`` from its recording and verify it.

    With no ``args``/``kwargs`` the run's recorded arguments are used.

    Raises:
        NotFoundError: no such run.
    """
    store = store or default_store()
    run = store.get_run(run_id)
    if not args and not kwargs:
        recorded = recorded_inputs(store, run)
        if recorded is not None:
            args, kwargs = tuple(recorded[0]), recorded[1]
    target = getattr(fn, "__omium_run__", None)
    body = target.fn if target else fn
    context = RunContext(run_id, run.workflow, store, verify_only=True)
    context.rollbacks = RollbackView.of(run).rollbacks
    context.generation = max((g for g, _ in context.rollbacks), default=0)
    context.load(store.steps(run_id), store.checkpoints(run_id))
    recorded_calls = len(context.recorded)
    token = enter(context)
    context.scope.agents = (run.workflow,)
    try:
        result = body(*args, **kwargs)
        if hasattr(result, "__await__"):
            import asyncio

            async def finish() -> Any:
                ensure_task_scopes()  # tasks the run creates get their own call ids
                return await result

            result = asyncio.run(finish())
    except NonDeterminismError as error:
        return ReplayReport(run_id, False, context.replayed, recorded_calls, str(error))
    finally:
        leave(token)
    missed = sorted(set(context.recorded) - context.answered, key=call_order)
    if missed:
        shown = ", ".join(
            f"{c} ({context.recorded[c].kind} {context.recorded[c].name!r})" for c in missed[:5]
        )
        return ReplayReport(
            run_id,
            False,
            context.replayed,
            recorded_calls,
            f"replay ended without making {len(missed)} recorded call(s): {shown}",
            result,
        )
    recorded_hash = run.attributes.get(RESULT_ATTRIBUTE)
    if recorded_hash is not None and serde.digest(serde.dumps(result)) != recorded_hash:
        return ReplayReport(
            run_id,
            False,
            context.replayed,
            recorded_calls,
            "same calls, but the workflow returned a different result",
            result,
        )
    return ReplayReport(run_id, True, context.replayed, recorded_calls, "", result)


__all__ = ["NotFoundError", "ReplayReport", "replay"]
