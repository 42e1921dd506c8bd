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
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omium import semconv
from omium.errors import NotFoundError
from omium.sdk import serde, tracing
from omium.sdk.context import RunContext, enter, leave, maybe_current, supervision
from omium.sdk.store import CheckpointRecord, CheckpointStore, RunRecord, StepRecord, now_us

F = TypeVar("F", bound=Callable[..., Any])
RESULT_ATTRIBUTE = "result_hash"
INPUT_ATTRIBUTE = "input_hash"


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

    from omium.sdk.journal import JournaledStore
    from omium.sdk.remote_store import RemoteStore
    from omium.warehouse.store import WarehouseStore

    exporter: SpanExporter
    if isinstance(store, RemoteStore):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{store.url}/v1/traces")
    else:
        if isinstance(store, JournaledStore):
            store = store.backing
        if not isinstance(store, WarehouseStore):
            return None
        from omium.warehouse.span_exporter import WarehouseSpanExporter

        exporter = WarehouseSpanExporter(store.warehouse)
    provider = TracerProvider(resource=Resource.create({"service.name": "omium-runs"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _embedded_store() -> CheckpointStore:
    """The server's store when one answers (so runs show in its console), else the embedded one."""
    from omium.config import Settings
    from omium.warehouse.remote import server_answers

    settings = Settings.from_env()
    if server_answers(settings.server_url):
        from omium.sdk.remote_store import RemoteStore

        return RemoteStore(settings.server_url, token=settings.api_token)
    from omium.warehouse.store import embedded_store

    return embedded_store(settings)


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
) -> tuple[RunContext, RunRecord, Any]:
    """Create the run or load it for resuming; the third item is a finished run's result."""
    store = store or default_store()
    run_id = run_id or uuid.uuid4().hex
    try:
        record = store.get_run(run_id)
    except NotFoundError:
        record = store.create_run(RunRecord(run_id, name, attributes=input_attributes(store, inputs)))
    else:
        if record.status == "completed":
            done = serde.loads(store.get_blob(record.attributes[RESULT_ATTRIBUTE]))
            return RunContext(run_id, record.workflow, store), record, done
        record = store.update_run(run_id, record.version, status="running")
    context = RunContext(run_id, record.workflow, store)
    context.overrides = json.loads(record.attributes.get("overrides", "{}"))
    view = RollbackView.of(record)
    context.generation, context.rollback_position = view.generation, view.position
    context.rollbacks = [(int(g), int(p)) for g, p in json.loads(record.attributes.get("rollbacks", "[]"))]
    supervised = supervision.get()
    if supervised is not None:
        context.policy, context.detectors = supervised.policy, list(supervised.detectors)
        context.stop_after = supervised.stop_after
    context.recorded = {step.position: step for step in store.steps(run_id) if view.live_step(step)}
    # Checkpoints are numbered by their order in the execution, so a resumed run re-records the
    # ones it passes again under the same numbers instead of adding copies.
    return context, record, _NOT_DONE


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
    """What a run's latest rollback left live: records from before the checkpoint, and those
    written after the rollback."""

    generation: int = 0
    position: int = 0
    seq: int = -1
    at: int = 0

    @classmethod
    def of(cls, run: RunRecord) -> RollbackView:
        a = run.attributes
        if "generation" not in a:
            return cls()
        return cls(
            int(a["generation"]), int(a["rollback_position"]), int(a["rollback_seq"]), int(a["rollback_at"])
        )

    def live_step(self, step: StepRecord) -> bool:
        return not self.generation or step.position < self.position or step.ended_at > self.at

    def live_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        return not self.generation or checkpoint.seq <= self.seq or checkpoint.created_at > self.at


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
    generation = int(run.attributes.get("generation", "0")) + 1
    history = [*json.loads(run.attributes.get("rollbacks", "[]")), [generation, target.step_index]]
    return store.update_run(
        run_id,
        run.version,
        status="rolled_back",
        error=run.error,
        attributes={
            "generation": str(generation),
            "rollback_position": str(target.step_index),
            "rollback_seq": str(target.seq),
            "rollback_at": str(now_us()),
            "rolled_back_to": checkpoint,
            # Every rollback, so a hand-off sent or received in a rolled-back stretch is known.
            "rollbacks": json.dumps(history),
        },
    )


def _finish(context: RunContext, record: RunRecord, result: Any) -> None:
    result_hash = context.store.put_blob(serde.dumps(result))
    context.store.update_run(
        context.run_id, record.version, status="completed", attributes={RESULT_ATTRIBUTE: result_hash}
    )


def _fail(context: RunContext, record: RunRecord, error: BaseException) -> None:
    context.store.update_run(
        context.run_id, record.version, status="failed", error=f"{type(error).__name__}: {error}"
    )


def run(
    fn: Callable[..., Any],
    *args: Any,
    run_id: str | None = None,
    store: CheckpointStore | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``fn`` durably, or resume the run ``run_id`` if it exists; returns its result.

    Async functions are run to completion on a new event loop (use :func:`arun` inside one).
    """
    target = getattr(fn, "__omium_run__", None)
    body = target.fn if target else fn
    name = target.name if target else getattr(fn, "__qualname__", "workflow")
    if inspect.iscoroutinefunction(body):
        return asyncio.run(arun(fn, *args, run_id=run_id, store=store, **kwargs))
    context, record, done = _begin(body, name, run_id, store, (args, kwargs))
    if done is not _NOT_DONE:
        return done
    token = enter(context)
    context.agents.append(name)
    try:
        with _run_span(context, record):
            result = body(*args, **kwargs)
    except BaseException as error:
        _fail(context, record, error)
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
    **kwargs: Any,
) -> Any:
    """The async form of :func:`run`."""
    target = getattr(fn, "__omium_run__", None)
    body = target.fn if target else fn
    name = target.name if target else getattr(fn, "__qualname__", "workflow")
    context, record, done = _begin(body, name, run_id, store, (args, kwargs))
    if done is not _NOT_DONE:
        return done
    token = enter(context)
    context.agents.append(name)
    try:
        with _run_span(context, record):
            result = body(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
    except BaseException as error:
        _fail(context, record, error)
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
        except AttributeError:  # exceptions with __slots__
            pass


def _scoped(definition: RunDefinition) -> Callable[..., Any]:
    """The wrapper: start a run outside one; inside one, an agent scope."""
    fn = definition.fn
    if definition.is_async:

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            context = maybe_current()
            if context is None:
                return await arun(async_wrapper, *args, **kwargs)
            context.agents.append(definition.name)
            context.agent_configs.setdefault(definition.name, definition.config)
            try:
                with _agent_span(context, definition.name):
                    return await fn(*args, **kwargs)
            except Exception as error:
                _locate(error, context)
                raise
            finally:
                context.agents.pop()

        wrapper: Any = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            context = maybe_current()
            if context is None:
                return run(sync_wrapper, *args, **kwargs)
            context.agents.append(definition.name)
            context.agent_configs.setdefault(definition.name, definition.config)
            try:
                with _agent_span(context, definition.name):
                    return fn(*args, **kwargs)
            except Exception as error:
                _locate(error, context)
                raise
            finally:
                context.agents.pop()

        wrapper = sync_wrapper
    wrapper.__omium_run__ = definition
    return wrapper


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
        _workflows[definition.name] = wrapped
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
