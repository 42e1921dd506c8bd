"""Recorded calls: ``@step`` and ``@tool``, memoised by their call id in the run.

The decorators only attach a frozen :class:`CallDefinition`; :func:`invoke` and :func:`ainvoke`
execute it through the public recording interface (:mod:`omium.sdk.recording`): a call whose id
was recorded as completed returns the recorded result without running (so a resumed run repeats
no finished work); a call that differs from the recording raises :class:`NonDeterminismError`.
A step called inside another step runs as part of it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from omium import semconv
from omium.errors import DETECTIONS, ControlSignal
from omium.sdk import tracing
from omium.sdk.context import current
from omium.sdk.recording import Call
from omium.sdk.retry import NO_RETRY, RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])
# Caught at their step and never retried: detections and control-flow signals.
_UNRETRIED = (*DETECTIONS, ControlSignal)


@dataclass(frozen=True)
class CallDefinition:
    """What a decorator attached: the call's name and kind, its retry policy and compensation."""

    name: str
    kind: str
    fn: Callable[..., Any]
    retry: RetryPolicy = NO_RETRY
    compensation: Callable[..., Any] | None = None
    is_async: bool = False


def _span(call: Call) -> Any:
    attributes: dict[str, Any] = {
        semconv.OMIUM_RUN_ID: call.context.run_id,
        semconv.OMIUM_STEP_INDEX: call.position,
        semconv.OMIUM_STEP_KIND: call.kind,
        semconv.GEN_AI_AGENT_NAME: call.agent,
        "omium.call_id": call.call_id,
        "omium.idempotency_key": call.key,
    }
    if call.kind == "tool":
        attributes[semconv.GEN_AI_OPERATION_NAME] = "execute_tool"
        attributes[semconv.GEN_AI_TOOL_NAME] = call.name
        attributes[semconv.GEN_AI_TOOL_CALL_ID] = call.key
    return tracing.span(f"{tracing.SPAN_NAMES.get(call.kind, call.kind)} {call.name}", attributes)


def _screen(call: Call, result: Any, args: tuple[Any, ...]) -> None:
    """Detectors judge a result before it is recorded: a failing verdict fails the call."""
    guards = sys.modules.get("omium.sdk.guards")  # no detector can exist before it is imported
    if guards is not None:
        guards.screen(call.kind, call.name, call.agent, result, args, call.context.detectors)


def _begin(definition: CallDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """The recorded call, or None inside another call (then it runs as part of that one)."""
    context = current()
    scope = context.scope
    if scope.call_key:
        return None
    return Call(context, scope, definition.kind, definition.name, inputs=[list(args), kwargs])


def _finish(
    call: Call,
    definition: CallDefinition,
    result: Any,
    attempt: int,
    span: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    call.complete(result, attempt=attempt)
    if definition.compensation is not None:
        from omium.sdk.checkpoint import register_compensation

        register_compensation(definition.compensation, result, *args, **kwargs)
    span.set_attribute("omium.attempts", attempt)
    return result


def invoke(definition: CallDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a recorded call synchronously (or return its recorded result)."""
    call = _begin(definition, args, kwargs)
    if call is None:  # inside another step: part of it
        return definition.fn(*args, **kwargs)
    with _span(call) as span:
        if call.replayed:
            span.set_attribute("omium.replayed", True)
            return call.result
        attempt = 1
        while True:
            try:
                with call.running():
                    result = definition.fn(*args, **kwargs)
                    _screen(call, result, args)
            except (Exception, ControlSignal) as error:
                call.fail(error, attempt=attempt)
                if isinstance(error, _UNRETRIED) or not definition.retry.retries(error, attempt):
                    raise
                time.sleep(definition.retry.delay(attempt))
                attempt += 1
                continue
            return _finish(call, definition, result, attempt, span, args, kwargs)


async def ainvoke(definition: CallDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a recorded async call (or return its recorded result)."""
    call = _begin(definition, args, kwargs)
    if call is None:
        return await definition.fn(*args, **kwargs)
    with _span(call) as span:
        if call.replayed:
            span.set_attribute("omium.replayed", True)
            return call.result
        attempt = 1
        while True:
            try:
                with call.running():
                    result = await definition.fn(*args, **kwargs)
                    _screen(call, result, args)
            except (Exception, ControlSignal) as error:
                call.fail(error, attempt=attempt)
                if isinstance(error, _UNRETRIED) or not definition.retry.retries(error, attempt):
                    raise
                await asyncio.sleep(definition.retry.delay(attempt))
                attempt += 1
                continue
            return _finish(call, definition, result, attempt, span, args, kwargs)


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
