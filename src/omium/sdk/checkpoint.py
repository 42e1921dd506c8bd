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
from omium.sdk.context import RunContext, current
from omium.sdk.store import CheckpointRecord, StepRecord

logger = logging.getLogger(__name__)


def record_checkpoint(
    context: RunContext, name: str, start: int, values: dict[str, Any], *, agent: str | None = None
) -> CheckpointRecord | None:
    """Record a checkpoint named ``name`` of the running run (adapters checkpoint at framework steps).

    ``start`` is the position the checkpointed stretch began at and ``values`` what to save beside
    the recorded outputs; ``agent`` is who reached it (default: the innermost agent running).
    Returns the record, or None when replaying one already recorded.
    """
    outputs = {
        str(position): record.output_hash
        for position, record in sorted(context.recorded.items())
        if start <= position < context.next_position and record.status == "completed"
    }
    for batch in context.pending:
        outputs.update({str(r.position): r.output_hash for r in batch if r.position >= start})
    if context.verify_only:
        context.next_checkpoint_seq += 1
        return None  # a verification replay writes nothing
    state = {"name": name, "position": context.next_position, "outputs": outputs, "values": values}
    record = CheckpointRecord(
        run_id=context.run_id,
        seq=context.next_checkpoint_seq,
        name=name,
        agent=context.agent if agent is None else agent,
        step_index=context.next_position,
        state_hash=context.store.put_blob(serde.dumps(state)),
    )
    context.next_checkpoint_seq += 1
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
        self._start = 0
        self._span: Any = None

    def save(self, key: str, value: Any) -> None:
        """Keep ``value`` in this checkpoint's state (readable later, e.g. after a rollback)."""
        serde.dumps(value)  # fail here, not at commit, if it cannot be stored
        self.values[key] = value

    def __enter__(self) -> Checkpoint:
        context = current()
        self._start = context.next_position
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
        self._start = 0

    def on_rollback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Register ``fn(*args, **kwargs)`` to run if this transaction fails."""
        self._frame.compensations.append((fn, args, kwargs))

    def __enter__(self) -> Transaction:
        context = current()
        self._start = context.next_position
        context.pending.append([])
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
        _transactions.reset(self._token)
        held: list[StepRecord] = context.pending.pop()
        if kind is None:
            if context.pending:
                context.pending[-1].extend(held)  # an outer transaction decides
            else:
                for record in held:
                    context.store.record_step(record)
            for record in held:
                context.recorded[record.position] = record
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
