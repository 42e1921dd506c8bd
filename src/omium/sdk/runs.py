"""Runs: ``@workflow`` and ``@agent``, ``run()`` / ``arun()`` (start, or resume by run id).

Calling a ``@workflow`` or ``@agent`` function outside a run starts one; inside a run an
``@agent`` is a scope whose calls are attributed to it. Resuming a run (same run id) re-invokes
the function: calls recorded as completed return their recorded results without executing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omium import semconv
from omium.errors import ConfigError, ConflictError, FencedOut, NotFoundError, ServerUnavailable
from omium.sdk import lease, serde, tracing
from omium.sdk.concurrency import ensure_task_scopes
from omium.sdk.context import (
    RunContext,
    call_order,
    checkpoint_call_id,
    enter,
    leave,
    maybe_current,
    step_call_id,
    step_generation,
    supervision,
)
from omium.sdk.stop import PAUSE, PAUSED_BY, RunStopped, stopped_run
from omium.sdk.store import CheckpointRecord, CheckpointStore, RunRecord, StepRecord

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger(__name__)
RESULT_ATTRIBUTE = "result_hash"
INPUT_ATTRIBUTE = "input_hash"
AGENTS_ATTRIBUTE = "agents"  # the agents a run entered (JSON list), for checking a fork's overrides


def input_attributes(
    store: CheckpointStore, inputs: tuple[tuple[Any, ...], dict[str, Any]]
) -> dict[str, str]:
    """Record the run's arguments (when serializable) so replays and the console can use them."""
    try:
        data = serde.dumps([list(inputs[0]), inputs[1]])
    except serde.SerializationError:
        return {}
    return {INPUT_ATTRIBUTE: store.put_blob(data)}


def recorded_inputs(store: CheckpointStore, run: RunRecord) -> tuple[list[Any], dict[str, Any]] | None:
    """The arguments a run was started with, if they were recorded."""
    digest = run.attributes.get(INPUT_ATTRIBUTE)
    if not digest:
        return None
    args, kwargs = serde.loads(store.get_blob(digest))
    return list(args), dict(kwargs)


_default_store: CheckpointStore | None = None


def init(*, store: CheckpointStore | None = None, tracer_provider: Any = None) -> CheckpointStore:
    """Choose where runs are stored and where their spans go.

    Args:
        store: the checkpoint store (default: the embedded warehouse under ``$OMIUM_HOME``).
        tracer_provider: an OpenTelemetry ``TracerProvider`` for Omium's spans. Default: spans of
            runs stored in the embedded warehouse are written there too; otherwise the
            application's global provider is used.
    """
    global _default_store
    _default_store = store if store is not None else _embedded_store()
    if tracer_provider is None:
        tracer_provider = _warehouse_tracer_provider(_default_store)
    tracing.configure(tracer_provider)
    return _default_store


def _warehouse_tracer_provider(store: CheckpointStore) -> Any:
    """Spans follow the runs: to the server's OTLP endpoint, or into the embedded warehouse."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    from omium.sdk.remote_store import RemoteStore
    from omium.warehouse.store import EmbeddedStore

    exporter: SpanExporter
    server = store.url if isinstance(store, RemoteStore) else getattr(store, "server_url", "")
    if server:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{server}/v1/traces")
    elif isinstance(store, EmbeddedStore) and store.warehouse is not None:
        from omium.warehouse.span_exporter import WarehouseSpanExporter

        exporter = WarehouseSpanExporter(store.warehouse)
    else:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "omium-runs"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _embedded_store() -> CheckpointStore:
    """Where this process keeps runs (see :func:`omium.sdk.sql.connect_control`): the control
    database directly when it can reach the one the server uses, else the server's control API,
    else (no server) the embedded deployment."""
    from omium.sdk.sql.connect import connect_control

    return connect_control()


def default_store() -> CheckpointStore:
    """The store ``init()`` chose, opening the default one on first use."""
    return _default_store if _default_store is not None else init()


@dataclass(frozen=True)
class RunDefinition:
    """What ``@workflow`` / ``@agent`` attached."""

    name: str
    kind: str
    fn: Callable[..., Any]
    is_async: bool
    config: dict[str, Any] = field(default_factory=dict)
    policy: Any = None  # a recovery policy (a Policy, or the path of its YAML file)


_workflows: dict[str, Callable[..., Any]] = {}


def registered_workflows() -> dict[str, Callable[..., Any]]:
    """Workflows defined in this process, by name (what a worker can run)."""
    return dict(_workflows)


def _begin(
    fn: Callable[..., Any],
    name: str,
    run_id: str | None,
    store: CheckpointStore | None,
    inputs: tuple[tuple[Any, ...], dict[str, Any]] = ((), {}),
    *,
    seconds: float | None = None,
    wait: bool | float = False,
) -> tuple[RunContext, RunRecord, Any]:
    """Create the run or load it for resuming, under its lease; the third item is a finished
    run's result (then no lease is held).

    Raises:
        RunBusy: another execution holds the run (and ``wait`` did not outlast it).
    """
    store = store or default_store()
    run_id = run_id or uuid.uuid4().hex
    supervised = supervision.get()
    if supervised is not None:
        seconds = seconds if seconds is not None else supervised.lease_seconds
        wait = wait or supervised.wait
    holder, seconds = lease.new_holder(), lease.lease_seconds(seconds)
    created = False
    try:
        record = store.get_run(run_id)
    except NotFoundError:
        try:
            record = store.create_run(RunRecord(run_id, name, attributes=input_attributes(store, inputs)))
            created = True
        except ConflictError:  # another process created it just now
            record = store.get_run(run_id)
    if record.status == "completed":
        return RunContext(run_id, record.workflow, store), record, _result(store, record)
    _check_not_stopped(record)
    taken = lease.acquire(store, run_id, holder, seconds, wait=wait)
    context = RunContext(run_id, record.workflow, store, fence=taken.fence)
    if created and taken.fence == 1:
        # Ours from its creation to its first lease: nothing was recorded in it, nothing to load.
        context.holder = holder
        lease.keeper.keep(context, holder, seconds, taken.lease_until)
        _supervise(context)
        return context, record, _NOT_DONE
    try:
        record = store.get_run(run_id)  # as the previous holder left it
        if record.status == "completed":
            store.release_lease(run_id, holder, taken.fence)
            return context, record, _result(store, record)
        _check_not_stopped(record)  # an operator stopped it while this execution was starting
        if record.status != "running" or record.version > 1:
            record = store.update_run(run_id, record.version, status="running", fence=taken.fence)
    except BaseException:
        store.release_lease(run_id, holder, taken.fence)
        raise
    context.overrides = json.loads(record.attributes.get("overrides", "{}"))
    context.rollbacks = RollbackView.of(record).rollbacks
    context.generation = max((g for g, _ in context.rollbacks), default=0)
    _supervise(context)
    # Recorded calls answer this execution by call id; checkpoints passed again keep their numbers.
    context.load(store.steps(run_id), store.checkpoints(run_id))
    lease.keeper.keep(context, holder, seconds, taken.lease_until)
    context.holder = holder
    return context, record, _NOT_DONE


def _check_not_stopped(record: RunRecord) -> None:
    """A cancelled run is never executed again (:class:`ConflictError`); one an operator paused
    waits for an operator's resume (:class:`RunStopped`, as if it had stopped again)."""
    if record.status == "cancelled":
        raise ConflictError(f"run {record.run_id!r} was cancelled: a cancelled run is never resumed")
    if record.status == "paused" and record.attributes.get(PAUSED_BY):
        raise RunStopped(record.run_id, PAUSE, record.attributes[PAUSED_BY])


def _supervise(context: RunContext) -> None:
    """What the recovery supervisor running this run asks of it (its policy, detectors, stop)."""
    supervised = supervision.get()
    if supervised is not None:
        context.policy, context.detectors = supervised.policy, list(supervised.detectors)
        context.stop_after = supervised.stop_after


def _result(store: CheckpointStore, record: RunRecord) -> Any:
    return serde.loads(store.get_blob(record.attributes[RESULT_ATTRIBUTE]))


_NOT_DONE = object()


def _run_span(context: RunContext, record: RunRecord) -> Any:
    return tracing.span(
        f"invoke_workflow {context.workflow}",
        {
            semconv.GEN_AI_OPERATION_NAME: "invoke_workflow",
            semconv.GEN_AI_WORKFLOW_NAME: context.workflow,
            semconv.OMIUM_RUN_ID: context.run_id,
            "omium.run.resumed": record.version > 1,
        },
    )


def _agent_span(context: RunContext, name: str) -> Any:
    return tracing.span(
        f"invoke_agent {name}",
        {
            semconv.GEN_AI_OPERATION_NAME: "invoke_agent",
            semconv.GEN_AI_AGENT_NAME: name,
            semconv.GEN_AI_WORKFLOW_NAME: context.workflow,
            semconv.OMIUM_RUN_ID: context.run_id,
        },
    )


@dataclass(frozen=True)
class RollbackView:
    """What a run's rollbacks left live, decided by generation and call id (never by clocks).

    A rollback to a checkpoint starts a new generation at the checkpoint's call id: a record made
    in an older generation at or after that id is undone; records before it, and records of the
    new generation, stay.
    """

    rollbacks: list[tuple[int, str]] = field(default_factory=list)  # (generation, call id), oldest first

    @classmethod
    def of(cls, run: RunRecord) -> RollbackView:
        a = run.attributes
        history = [(int(g), str(p)) for g, p in json.loads(a.get("rollbacks", "[]"))]
        if not history and "generation" in a:  # a run rolled back before the history was kept
            history = [(int(a["generation"]), str(a.get("rollback_position", "0")))]
        return cls(history)

    @property
    def generation(self) -> int:
        return max((g for g, _ in self.rollbacks), default=0)

    def _undone(self, call_id: str, generation: int, *, strictly: bool = False) -> bool:
        order = call_order(call_id)
        return any(
            g > generation and (order > call_order(b) if strictly else order >= call_order(b))
            for g, b in self.rollbacks
        )

    def live_step(self, step: StepRecord) -> bool:
        return not self._undone(step_call_id(step), step_generation(step))

    def live_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        # The checkpoint rolled back to stands exactly at the boundary: it stays.
        return not self._undone(checkpoint_call_id(checkpoint), checkpoint.generation, strictly=True)


def live_checkpoints(store: CheckpointStore, run: RunRecord) -> list[CheckpointRecord]:
    """The run's checkpoints that its rollbacks left in place."""
    view = RollbackView.of(run)
    return [c for c in store.checkpoints(run.run_id) if view.live_checkpoint(c)]


def rollback(run_id: str, checkpoint: str, *, store: CheckpointStore | None = None) -> RunRecord:
    """Roll run ``run_id`` back to its checkpoint ``checkpoint``.

    Calls recorded after the checkpoint are set aside: resuming the run (``omium.run`` with the
    same id) runs them again, under new idempotency keys, from the checkpoint's state. Calls
    before it are still answered from the recording. The run's status becomes ``rolled_back``.

    Raises:
        NotFoundError: unknown run, or no such checkpoint.
    """
    store = store or default_store()
    run = store.get_run(run_id)
    live = [c for c in live_checkpoints(store, run) if c.name == checkpoint]
    if not live:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint!r}")
    target = live[-1]
    generation = RollbackView.of(run).generation + 1
    boundary = checkpoint_call_id(target)
    history = [*json.loads(run.attributes.get("rollbacks", "[]")), [generation, boundary]]
    return store.update_run(
        run_id,
        run.version,
        status="rolled_back",
        error=run.error,
        attributes={
            "generation": str(generation),
            "rollback_position": str(target.step_index),
            "rollback_call_id": boundary,
            "rolled_back_to": checkpoint,
            # Every rollback, so a hand-off sent or received in a rolled-back stretch is known.
            "rollbacks": json.dumps(history),
        },
    )


def _agents(context: RunContext, record: RunRecord) -> str:
    """The agents the run has entered so far, this execution's and earlier ones' (JSON list): a
    fork's overrides are checked against them."""
    earlier = json.loads(record.attributes.get(AGENTS_ATTRIBUTE, "[]") or "[]")
    return json.dumps(sorted({*earlier, *context.agent_configs}))


def _finish(context: RunContext, record: RunRecord, result: Any) -> None:
    try:
        result_hash = context.store.put_blob(serde.dumps(result))
        context.store.update_run(
            context.run_id,
            record.version,
            status="completed",
            attributes={RESULT_ATTRIBUTE: result_hash, AGENTS_ATTRIBUTE: _agents(context, record)},
            fence=context.fence,
        )
    finally:
        _release(context)


def _stopped(context: RunContext, error: BaseException) -> BaseException:
    """What ends the execution: an operator's stop request wins over what the run raised after it
    came (a call that failed meanwhile is recorded; the run pauses or is cancelled there)."""
    if context.stop is not None and not isinstance(error, (FencedOut, ServerUnavailable)):
        return context.stop
    return error


def _fail(context: RunContext, record: RunRecord, error: BaseException) -> None:
    if isinstance(error, RunStopped):
        try:
            stopped_run(context, record, error, _agents(context, record))
        except ConflictError as lost:  # it lost its lease meanwhile: the new holder owns the status
            logger.warning("run %s: its stop was not recorded: %s", context.run_id, lost)
        finally:
            _release(context)
        return
    try:
        # FencedOut: the run belongs to another execution now. ServerUnavailable: this process lost
        # the store (a server died), the run did not fail: it is taken over once its lease ends.
        if not isinstance(error, (FencedOut, ServerUnavailable)):
            context.store.update_run(
                context.run_id,
                record.version,
                status="failed",
                error=f"{type(error).__name__}: {error}",
                attributes={AGENTS_ATTRIBUTE: _agents(context, record)},
                fence=context.fence,
            )
    except ConflictError as lost:  # it lost its lease meanwhile: the new holder owns the status
        logger.warning("run %s: its failure was not recorded: %s", context.run_id, lost)
    finally:
        _release(context)


def _release(context: RunContext) -> None:
    lease.keeper.drop(context)
    try:
        context.store.release_lease(context.run_id, context.holder, context.fence)
    except Exception as error:  # it expires on its own
        logger.warning("run %s: releasing its lease failed: %s", context.run_id, error)


def _enter_run(context: RunContext, name: str) -> Any:
    token = enter(context)
    root = context.scope
    root.agents = (name,)
    return token


def run(
    fn: Callable[..., Any],
    *args: Any,
    run_id: str | None = None,
    store: CheckpointStore | None = None,
    lease_seconds: float | None = None,
    wait: bool | float = False,
    **kwargs: Any,
) -> Any:
    """Run ``fn`` durably, or resume the run ``run_id`` if it exists; returns its result.

    One execution of a run at a time: a run another process is executing raises
    :class:`~omium.errors.RunBusy` (naming the holder and when its lease expires), unless ``wait``
    (True, or seconds) waits for it. ``lease_seconds`` overrides ``OMIUM_RUN_LEASE_SECONDS``.
    Async functions are run to completion on a new event loop (use :func:`arun` inside one).
    """
    target = getattr(fn, "__omium_run__", None)
    body = target.fn if target else fn
    name = target.name if target else getattr(fn, "__qualname__", "workflow")
    if inspect.iscoroutinefunction(body):
        return asyncio.run(
            arun(fn, *args, run_id=run_id, store=store, lease_seconds=lease_seconds, wait=wait, **kwargs)
        )
    context, record, done = _begin(
        body, name, run_id, store, (args, kwargs), seconds=lease_seconds, wait=wait
    )
    if done is not _NOT_DONE:
        return done
    token = _enter_run(context, name)
    try:
        with _run_span(context, record):
            result = body(*args, **kwargs)
    except BaseException as error:
        ended = _stopped(context, error)
        _fail(context, record, ended)
        if ended is not error:
            raise ended from error
        raise
    finally:
        leave(token)
    _finish(context, record, result)
    return result


async def arun(
    fn: Callable[..., Any],
    *args: Any,
    run_id: str | None = None,
    store: CheckpointStore | None = None,
    lease_seconds: float | None = None,
    wait: bool | float = False,
    **kwargs: Any,
) -> Any:
    """The async form of :func:`run`. Tasks the run creates get their own call ids."""
    target = getattr(fn, "__omium_run__", None)
    body = target.fn if target else fn
    name = target.name if target else getattr(fn, "__qualname__", "workflow")
    if wait:  # waiting for another execution must not block the event loop
        begun = await asyncio.to_thread(
            _begin, body, name, run_id, store, (args, kwargs), seconds=lease_seconds, wait=wait
        )
    else:
        begun = _begin(body, name, run_id, store, (args, kwargs), seconds=lease_seconds)
    context, record, done = begun
    if done is not _NOT_DONE:
        return done
    ensure_task_scopes()
    token = _enter_run(context, name)
    try:
        with _run_span(context, record):
            result = body(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
    except BaseException as error:
        ended = _stopped(context, error)
        _fail(context, record, ended)
        if ended is not error:
            raise ended from error
        raise
    finally:
        leave(token)
    _finish(context, record, result)
    return result


def _locate(error: BaseException, context: RunContext) -> None:
    """Note where a failure happened (the innermost agent, the next position) on the error."""
    if not hasattr(error, "omium_agent"):
        try:
            error.omium_agent = context.agent  # type: ignore[attr-defined]
            error.omium_position = context.next_position  # type: ignore[attr-defined]
            error.omium_call_id = context.scope.boundary()  # type: ignore[attr-defined]
        except AttributeError:  # exceptions with __slots__
            pass


def _scoped(definition: RunDefinition) -> Callable[..., Any]:
    """The wrapper: start a run outside one; inside one, an agent scope of the calling task."""
    fn = definition.fn
    if definition.is_async:

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            context = maybe_current()
            if context is None:
                return await arun(async_wrapper, *args, **kwargs)
            ensure_task_scopes()
            scope = context.scope
            agents = scope.agents
            scope.agents = (*agents, definition.name)
            context.agent_configs.setdefault(definition.name, definition.config)
            try:
                with _agent_span(context, definition.name):
                    return await fn(*args, **kwargs)
            except Exception as error:
                _locate(error, context)
                raise
            finally:
                scope.agents = agents

        wrapper: Any = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            context = maybe_current()
            if context is None:
                return run(sync_wrapper, *args, **kwargs)
            scope = context.scope
            agents = scope.agents
            scope.agents = (*agents, definition.name)
            context.agent_configs.setdefault(definition.name, definition.config)
            try:
                with _agent_span(context, definition.name):
                    return fn(*args, **kwargs)
            except Exception as error:
                _locate(error, context)
                raise
            finally:
                scope.agents = agents

        wrapper = sync_wrapper
    wrapper.__omium_run__ = definition
    return wrapper


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same workflow defined again: its module reloaded, or a copy of its code imported
    under another module name (the same name and bytecode run the same steps)."""
    if (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__):
        return True
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        a.__qualname__ == b.__qualname__
        and code_a is not None
        and code_b is not None
        and (code_a.co_code, code_a.co_names) == (code_b.co_code, code_b.co_names)
    )


def _register(definition: RunDefinition, wrapped: Callable[..., Any]) -> None:
    """Register a workflow by name; a different function under a taken name is an error."""
    existing = _workflows.get(definition.name)
    if existing is not None:
        before = existing.__omium_run__.fn  # type: ignore[attr-defined]
        if not _same_function(before, definition.fn):
            raise ConfigError(
                f"two workflows are named {definition.name!r}: {before.__module__}.{before.__qualname__} "
                f"and {definition.fn.__module__}.{definition.fn.__qualname__}; give one another name "
                "(@workflow(name=...)) so that workers and resumes run the right one"
            )
    _workflows[definition.name] = wrapped


def workflow(fn: F | None = None, *, name: str | None = None, policy: Any = None) -> Any:
    """A workflow: calling it starts (or, via :func:`run` with a run id, resumes) a durable run.

    ``policy`` is its recovery policy (a :class:`omium.recovery.policy.Policy` or the path of a
    YAML file, relative to the defining module): workers and :func:`omium.recovery.supervise` apply it.
    """

    def wrap(target: F) -> F:
        chosen = policy
        if isinstance(policy, str) and not os.path.isabs(policy):
            module = sys.modules.get(target.__module__)
            base = os.path.dirname(getattr(module, "__file__", "") or ".")
            chosen = os.path.join(base, policy)
        definition = RunDefinition(
            name or target.__name__, "workflow", target, inspect.iscoroutinefunction(target), policy=chosen
        )
        wrapped = _scoped(definition)
        _register(definition, wrapped)
        return wrapped  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap


def agent(fn: F | None = None, *, name: str | None = None, config: dict[str, Any] | None = None) -> Any:
    """An agent: a scope inside a run (its calls are attributed to it), or a run of its own.

    ``config`` holds the agent's editable configuration (``prompt``, ``constraints``, ``tools``):
    read it with :func:`omium.sdk.branching.agent_config`; a fork or a review may override it.
    """

    def wrap(target: F) -> F:
        return _scoped(
            RunDefinition(
                name or target.__name__,
                "agent",
                target,
                inspect.iscoroutinefunction(target),
                dict(config or {}),
            )
        )  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap


__all__ = [
    "RollbackView",
    "RunDefinition",
    "agent",
    "arun",
    "default_store",
    "init",
    "input_attributes",
    "live_checkpoints",
    "registered_workflows",
    "rollback",
    "run",
    "workflow",
]
