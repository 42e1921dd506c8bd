"""``Checkpoint`` and ``Transaction``: consistent points and all-or-nothing blocks of a run.

``Checkpoint(name)`` records, when its block completes, the run's position and the results
produced in the block (by content address), so a rollback can return there and the state can be
read back later. ``Transaction(name)`` holds back the records of the calls inside it: if the
block fails, registered compensations run in reverse order and nothing inside is committed; if
it completes, everything is committed at once (and a checkpoint of the same name marks it).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from omium import semconv
from omium.sdk import serde, tracing
from omium.sdk.context import RunContext, call_order, current
from omium.sdk.store import CheckpointRecord, StepRecord

logger = logging.getLogger(__name__)


def record_checkpoint(
    context: RunContext, name: str, start: str | int, values: dict[str, Any], *, agent: str | None = None
) -> CheckpointRecord | None:
    """Record a checkpoint named ``name`` of the running run where the calling task stands
    (adapters checkpoint at framework steps).

    ``start`` is the call id the checkpointed stretch began at (what
    :meth:`~omium.sdk.context.Scope.boundary` said then) and ``values`` what to save beside the
    outputs recorded in the stretch (tasks spawned in it included); ``agent`` is who reached it
    (default: the innermost agent running). Returns the record, or None in a verification replay.
    """
    scope = context.scope
    end = scope.boundary()
    low, high = call_order(str(start)), call_order(end)
    completed = {
        call_id: record.output_hash
        for call_id, record in dict(context.recorded).items()  # a copy: other tasks record meanwhile
        if low <= call_order(call_id) < high and record.status == "completed"
    }
    for batch in scope.pending:
        completed.update({r.call_id: r.output_hash for r in batch if call_order(r.call_id) >= low})
    if context.verify_only:
        return None  # a verification replay writes nothing
    outputs = dict(sorted(completed.items(), key=lambda item: call_order(item[0])))
    position = context.position_at(end)
    state = {
        "name": name,
        "position": position,
        "call_id": end,
        "outputs": outputs,
        "values": values,
    }
    record = CheckpointRecord(
        run_id=context.run_id,
        seq=context.checkpoint_seq(end, name),
        name=name,
        agent=scope.agent if agent is None else agent,
        step_index=position,
        state_hash=context.store.put_blob(serde.dumps(state)),
        call_id=end,
        generation=context.generation_of(end),
        fence=context.fence,
    )
    context.check_lease()
    context.store.add_checkpoint(record)
    return record


class Checkpoint:
    """A named consistent point, recorded when the block completes without error.

    Example:
        >>> with Checkpoint("payment_validated") as cp:     # doctest: +SKIP
        ...     cp.save("amount", payment.amount)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, Any] = {}
        self.record: CheckpointRecord | None = None
        self._start = "0"
        self._span: Any = None

    def save(self, key: str, value: Any) -> None:
        """Keep ``value`` in this checkpoint's state (readable later, e.g. after a rollback)."""
        serde.dumps(value)  # fail here, not at commit, if it cannot be stored
        self.values[key] = value

    def __enter__(self) -> Checkpoint:
        context = current()
        self._start = context.scope.boundary()
        self._span = tracing.span(
            f"checkpoint {self.name}",
            {
                semconv.OMIUM_RUN_ID: context.run_id,
                semconv.OMIUM_CHECKPOINT: self.name,
                semconv.OMIUM_STEP_KIND: "checkpoint",
                semconv.GEN_AI_AGENT_NAME: context.agent,
            },
        )
        self._span.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.record = record_checkpoint(current(), self.name, self._start, self.values)
            if self.record is not None:
                tracing.annotate(
                    {
                        "omium.checkpoint.seq": self.record.seq,
                        semconv.OMIUM_STEP_INDEX: self.record.step_index,
                    }
                )
        self._span.__exit__(kind, error, tb)

    async def __aenter__(self) -> Checkpoint:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)


@dataclass
class _Frame:
    name: str
    compensations: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = field(
        default_factory=list
    )


_transactions: ContextVar[tuple[_Frame, ...]] = ContextVar("omium_transactions", default=())


def register_compensation(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Undo work if the innermost open Transaction fails (no-op outside a transaction)."""
    frames = _transactions.get()
    if frames:
        frames[-1].compensations.append((fn, args, kwargs))


class Transaction:
    """All or nothing: the calls inside commit together, or compensations undo them.

    Example:
        >>> with Transaction("payment_committed") as tx:      # doctest: +SKIP
        ...     result = execute_payment(tx_details)            # a @tool with compensation=refund
        ...     assert result.status == "completed"
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcome = "open"
        self._frame = _Frame(name)
        self._span: Any = None
        self._awaiting: list[Any] = []
        self._token: Any = None
        self._start = "0"

    def on_rollback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Register ``fn(*args, **kwargs)`` to run if this transaction fails."""
        self._frame.compensations.append((fn, args, kwargs))

    def __enter__(self) -> Transaction:
        context = current()
        scope = context.scope
        self._start = scope.boundary()
        scope.pending = (*scope.pending, [])
        self._token = _transactions.set((*_transactions.get(), self._frame))
        self._span = tracing.span(
            f"transaction {self.name}",
            {
                semconv.OMIUM_RUN_ID: context.run_id,
                semconv.OMIUM_STEP_KIND: "transaction",
                "omium.transaction.name": self.name,
                semconv.GEN_AI_AGENT_NAME: context.agent,
            },
        )
        self._span.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        context = current()
        scope = context.scope
        _transactions.reset(self._token)
        held: list[StepRecord] = scope.pending[-1]
        scope.pending = scope.pending[:-1]
        if kind is None:
            if scope.pending:
                scope.pending[-1].extend(held)  # an outer transaction decides
            elif not context.verify_only:
                context.check_lease()
                for record in held:
                    context.store.record_step(record)
            for record in held:
                context.recorded[record.call_id] = record
            record_checkpoint(context, self.name, self._start, {})
            self.outcome = "committed"
            tracing.annotate({semconv.OMIUM_TRANSACTION_OUTCOME: self.outcome})
            self._span.__exit__(None, None, None)
            return
        self.outcome = "rolled_back"
        for fn, args, kwargs in reversed(self._frame.compensations):
            try:
                outcome = fn(*args, **kwargs)
                if inspect.isawaitable(outcome):
                    self._awaiting.append(outcome)
            except Exception:  # one failed undo must not stop the others
                logger.exception("compensation %r of transaction %r failed", fn, self.name)
        tracing.annotate(
            {
                semconv.OMIUM_TRANSACTION_OUTCOME: self.outcome,
                "omium.transaction.compensations": len(self._frame.compensations),
            }
        )
        self._span.__exit__(kind, error, tb)

    async def __aenter__(self) -> Transaction:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)
        # Async compensations run in reverse order too, one after the other.
        while self._awaiting:
            try:
                await self._awaiting.pop(0)
            except Exception:
                logger.exception("compensation of transaction %r failed", self.name)


__all__ = ["Checkpoint", "Transaction", "record_checkpoint", "register_compensation"]
