"""Recorded calls: ``@step`` and ``@tool``, memoised by their position in the run.

The decorators only attach a frozen :class:`CallDefinition`; :func:`invoke` and :func:`ainvoke`
execute. A call whose position was recorded as completed returns the recorded result without
running (so a resumed run repeats no finished work); a call that differs from the recording
raises :class:`NonDeterminismError`. A step called inside another step runs as part of it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from omium import semconv
from omium.errors import Detected, NonDeterminismError, ReplayDivergence, SerializationError
from omium.sdk import serde, tracing
from omium.sdk.context import RunContext, current
from omium.sdk.retry import NO_RETRY, RetryPolicy
from omium.sdk.store import StepRecord, now_us

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def record_call(
    context: RunContext,
    *,
    position: int,
    kind: str,
    name: str,
    agent: str,
    status: str,
    inputs: Any,
    key: str,
    started_at: int,
    output_hash: str = "",
    error: str = "",
) -> StepRecord:
    """Record a call a framework made (an AG2 turn, a CrewAI task) as the run's step at ``position``.

    Adapters use it where the framework, not :func:`invoke`, runs the call; ``inputs`` is stored
    by content address as the step's input.
    """
    store = context.store
    record = StepRecord(
        run_id=context.run_id,
        position=position,
        kind=kind,
        name=name,
        status=status,
        agent=agent,
        input_hash=store.put_blob(serde.dumps(inputs)),
        output_hash=output_hash,
        error=error,
        idempotency_key=key,
        started_at=started_at,
        ended_at=now_us(),
    )
    store.record_step(record)
    return record


@dataclass(frozen=True)
class CallDefinition:
    """What a decorator attached: the call's name and kind, its retry policy and compensation."""

    name: str
    kind: str
    fn: Callable[..., Any]
    retry: RetryPolicy = NO_RETRY
    compensation: Callable[..., Any] | None = None
    is_async: bool = False


class _Recording:
    """A call about to run: its position, key and whether a recording answers it."""

    def __init__(self, context: RunContext, definition: CallDefinition) -> None:
        self.context = context
        self.definition = definition
        self.position = context.take_position()
        self.key = context.call_key_for(self.position)
        self.started = now_us()
        recorded = context.recorded.get(self.position)
        if recorded is not None and (recorded.name, recorded.kind) != (definition.name, definition.kind):
            raise NonDeterminismError(
                f"run {context.run_id!r} position {self.position}: the recording has {recorded.kind} "
                f"{recorded.name!r} but this execution called {definition.kind} {definition.name!r}; "
                "workflow code must make the same calls in the same order when resumed"
            )
        self.recorded = recorded if recorded is not None and recorded.status == "completed" else None
        if self.recorded is None and context.verify_only:
            state = "no recorded call" if recorded is None else f"a {recorded.status} recorded call"
            raise ReplayDivergence(
                f"run {context.run_id!r} position {self.position}: replay called {definition.kind} "
                f"{definition.name!r} but the recording has {state} there"
            )

    def replay(self) -> Any:
        assert self.recorded is not None
        self.context.replayed += 1
        return serde.loads(self.context.store.get_blob(self.recorded.output_hash))

    def _input_hash(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        # Inputs are kept (content-addressed, so a repeated input costs nothing) for the console's
        # step inspector and for root-cause analysis.
        try:
            return self.context.store.put_blob(serde.dumps([list(args), kwargs]))
        except SerializationError:
            return ""  # inputs such as clients or handles are not part of the recording

    def complete(self, result: Any, attempt: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        output_hash = self.context.store.put_blob(serde.dumps(result))
        self._record("completed", attempt, args, kwargs, output_hash=output_hash)
        self.context.executed += 1

    def fail(self, error: BaseException, attempt: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._record("failed", attempt, args, kwargs, error=f"{type(error).__name__}: {error}")

    def _record(
        self,
        status: str,
        attempt: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        output_hash: str = "",
        error: str = "",
    ) -> None:
        record = StepRecord(
            run_id=self.context.run_id,
            position=self.position,
            kind=self.definition.kind,
            name=self.definition.name,
            status=status,
            agent=self.context.agent,
            attempt=attempt,
            input_hash=self._input_hash(args, kwargs),
            output_hash=output_hash,
            error=error,
            idempotency_key=self.key,
            started_at=self.started,
            ended_at=now_us(),
        )
        if self.context.pending and status == "completed":
            self.context.pending[-1].append(record)  # committed with the transaction, or never
            return
        self.context.store.record_step(record)
        if status == "completed":
            self.context.recorded[self.position] = record

    def compensation_registered(self, result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        from omium.sdk.checkpoint import register_compensation

        if self.definition.compensation is not None:
            register_compensation(self.definition.compensation, result, *args, **kwargs)


def _span(call: _Recording) -> Any:
    definition, context = call.definition, call.context
    attributes: dict[str, Any] = {
        semconv.OMIUM_RUN_ID: context.run_id,
        semconv.OMIUM_STEP_INDEX: call.position,
        semconv.OMIUM_STEP_KIND: definition.kind,
        semconv.GEN_AI_AGENT_NAME: context.agent,
        "omium.idempotency_key": call.key,
    }
    if definition.kind == "tool":
        attributes[semconv.GEN_AI_OPERATION_NAME] = "execute_tool"
        attributes[semconv.GEN_AI_TOOL_NAME] = definition.name
        attributes[semconv.GEN_AI_TOOL_CALL_ID] = call.key
    return tracing.span(
        f"{tracing.SPAN_NAMES.get(definition.kind, definition.kind)} {definition.name}", attributes
    )


def _screen(context: RunContext, definition: CallDefinition, result: Any, args: tuple[Any, ...]) -> None:
    """Detectors judge a result before it is recorded: a failing verdict fails the call."""
    guards = sys.modules.get("omium.sdk.guards")  # no detector can exist before it is imported
    if guards is not None:
        guards.screen(definition.kind, definition.name, context.agent, result, args, context.detectors)


def invoke(definition: CallDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a recorded call synchronously (or return its recorded result)."""
    context = current()
    if context.call_key:  # inside another step: part of it
        return definition.fn(*args, **kwargs)
    call = _Recording(context, definition)
    with _span(call) as span:
        return _run_sync(call, span, args, kwargs)


def _run_sync(call: _Recording, span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    context, definition = call.context, call.definition
    if call.recorded is not None:
        span.set_attribute("omium.replayed", True)
        return call.replay()
    attempt = 1
    while True:
        context.call_key = call.key
        try:
            result = definition.fn(*args, **kwargs)
            _screen(context, definition, result, args)
        except Exception as error:
            call.fail(error, attempt, args, kwargs)
            if isinstance(error, Detected) or not definition.retry.retries(error, attempt):
                raise
            time.sleep(definition.retry.delay(attempt))
            attempt += 1
            continue
        finally:
            context.call_key = ""
        call.complete(result, attempt, args, kwargs)
        call.compensation_registered(result, args, kwargs)
        span.set_attribute("omium.attempts", attempt)
        return result


async def ainvoke(definition: CallDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a recorded async call (or return its recorded result)."""
    context = current()
    if context.call_key:
        return await definition.fn(*args, **kwargs)
    call = _Recording(context, definition)
    with _span(call) as span:
        return await _run_async(call, span, args, kwargs)


async def _run_async(call: _Recording, span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    context, definition = call.context, call.definition
    if call.recorded is not None:
        span.set_attribute("omium.replayed", True)
        return call.replay()
    attempt = 1
    while True:
        context.call_key = call.key
        try:
            result = await definition.fn(*args, **kwargs)
            _screen(context, definition, result, args)
        except Exception as error:
            call.fail(error, attempt, args, kwargs)
            if isinstance(error, Detected) or not definition.retry.retries(error, attempt):
                raise
            await asyncio.sleep(definition.retry.delay(attempt))
            attempt += 1
            continue
        finally:
            context.call_key = ""
        call.complete(result, attempt, args, kwargs)
        call.compensation_registered(result, args, kwargs)
        span.set_attribute("omium.attempts", attempt)
        return result


def _decorate(
    kind: str,
    fn: F | None,
    name: str | None,
    retry: RetryPolicy | None,
    compensation: Callable[..., Any] | None,
) -> Any:
    def wrap(target: F) -> F:
        definition = CallDefinition(
            name=name or target.__qualname__,
            kind=kind,
            fn=target,
            retry=retry or NO_RETRY,
            compensation=compensation,
            is_async=inspect.iscoroutinefunction(target),
        )
        if definition.is_async:

            @functools.wraps(target)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await ainvoke(definition, args, kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(target)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return invoke(definition, args, kwargs)

            wrapper = sync_wrapper
        wrapper.__omium__ = definition
        return wrapper

    return wrap(fn) if fn is not None else wrap


@overload
def step(fn: F) -> F: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    compensation: Callable[..., Any] | None = None,
) -> Callable[[F], F]: ...
def step(
    fn: F | None = None,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    compensation: Callable[..., Any] | None = None,
) -> Any:
    """Make ``fn`` a recorded, memoised step of the run that calls it.

    Example:
        >>> @step(retry=RetryPolicy(max_attempts=3))   # doctest: +SKIP
        ... def score(kyc: dict) -> int: ...
    """
    return _decorate("step", fn, name, retry, compensation)


@overload
def tool(fn: F) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    compensation: Callable[..., Any] | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    compensation: Callable[..., Any] | None = None,
) -> Any:
    """Make ``fn`` a recorded tool call; side effects should use :func:`omium.sdk.context.idempotency_key`.

    ``compensation(result, *args, **kwargs)`` undoes the call if an enclosing Transaction fails.
    """
    return _decorate("tool", fn, name, retry, compensation)


__all__ = ["CallDefinition", "ainvoke", "invoke", "step", "tool"]
