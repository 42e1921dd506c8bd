"""Omium's error tree.

Every error Omium raises on purpose derives from one root, so callers can catch
``OmiumError`` and know they caught only Omium's own failures::

    OmiumError
    ├── ConfigError              a setting is missing or malformed (names the OMIUM_* variable)
    ├── WarehouseError           the warehouse refused or failed a statement
    │   ├── ReadOnlyError        a write was sent through a read-only door
    │   │   └── QueryRefused     the SQL door does not run this statement (names what and why)
    │   ├── QueryLimitExceeded   a query ran past one of the SQL door's limits (``limit`` says which)
    │   └── MigrationError       the schema could not be brought up to date
    ├── ServerError              the Omium server answered with an error
    │   ├── AuthError            a token was missing or wrong
    │   └── ServerUnavailable    nothing answered at the server URL
    ├── DecodeError              an OTLP payload could not be decoded
    ├── OverloadedError          the collector is at capacity; retry after ``retry_after`` seconds
    ├── NotFoundError            an unknown run, checkpoint or other id
    ├── ConflictError            a compare-and-set lost: someone else wrote first
    │   ├── RunBusy              another execution holds the run's lease (``holder``, ``lease_until``)
    │   └── FencedOut            a write presented a fencing token of a lease that was lost
    ├── SerializationError       a value has no JSON-compatible encoding (Omium never pickles)
    ├── OutsideRunError          a run-only API was called outside a run
    ├── NonDeterminismError      a resumed run called something other than what was recorded
    │   └── ReplayDivergence     a verification replay needed a call the recording does not have
    └── HandoffError             a hand-off between agents failed
        └── HandoffTimeout       the message did not arrive in time

Control-flow signals stop a run on purpose and must not be swallowed by a user's
``except Exception:`` around agent code, so they derive from ``BaseException`` (as
``KeyboardInterrupt`` does), under their own root::

    ControlSignal (BaseException)
    ├── ApprovalRequired         a high-value operation waits for a person's approval (a detection)
    └── HandoffRejected          a hand-off broke its schema or constraints (``reason`` says how)
        └── HandoffStale         it was built on shared state that has changed since

Catch them by name (``except HandoffRejected``) or with ``except ControlSignal``.
"""

from __future__ import annotations


class OmiumError(Exception):
    """Root of every error Omium raises deliberately."""


class ConfigError(OmiumError):
    """A setting is missing or malformed."""


class WarehouseError(OmiumError):
    """The warehouse refused or failed a statement."""


class ReadOnlyError(WarehouseError):
    """A statement that writes was sent through a read-only door."""


class QueryRefused(ReadOnlyError):
    """The SQL door does not run this statement; the message names what it refused and why."""


class QueryLimitExceeded(WarehouseError):
    """A query ran past one of the SQL door's limits.

    Attributes:
        limit: ``"time"``, ``"memory"`` or ``"result"``.
    """

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class MigrationError(WarehouseError):
    """The warehouse schema could not be brought up to date."""


class ServerError(OmiumError):
    """The Omium server answered with an error status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ServerError):
    """The request needed a token it did not carry, or carried a wrong one."""


class ServerUnavailable(ServerError):
    """Nothing answered at the configured server URL."""


class DecodeError(OmiumError):
    """An OTLP payload could not be decoded; the client should not retry it."""


class OverloadedError(OmiumError):
    """The collector is at capacity; the client should retry later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(OmiumError):
    """An id (run, checkpoint, command, ...) that does not exist."""


class ConflictError(OmiumError):
    """A compare-and-set write found another version than the one it expected."""


class RunBusy(ConflictError):
    """Another execution holds the run's lease: one process executes a run at a time.

    Attributes:
        holder: who holds the lease (``host:pid:...``).
        lease_until: when the lease expires unless renewed (microseconds since the epoch).
    """

    def __init__(self, message: str, holder: str = "", lease_until: int = 0) -> None:
        super().__init__(message)
        self.holder = holder
        self.lease_until = lease_until


class FencedOut(ConflictError):
    """A write presented the fencing token of a lease that has since passed to another execution:
    the store refused it, and the execution that sent it must stop."""


class SerializationError(OmiumError):
    """A value cannot be encoded (or decoded) by the JSON-compatible serializer."""


class OutsideRunError(OmiumError):
    """A step, checkpoint or transaction was used outside a workflow/agent run."""


class NonDeterminismError(OmiumError):
    """A resumed or replayed run made a different call than the recording at the same position."""


class ReplayDivergence(NonDeterminismError):
    """A verification replay reached a call the recording cannot answer."""


class HandoffError(OmiumError):
    """A hand-off between agents failed."""


class ControlSignal(BaseException):
    """Root of the signals that stop a run on purpose (an approval gate, a rejected hand-off).

    A ``BaseException``, so that ``except Exception:`` in agent code cannot swallow one.
    """


class HandoffRejected(ControlSignal):
    """A hand-off broke its schema or constraints; ``reason`` says how, ``send_position`` is where in
    the run the message was sent (-1 if unknown)."""

    def __init__(self, message: str, reason: str = "", send_position: int = -1) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.send_position = send_position


class HandoffStale(HandoffRejected):
    """A hand-off was built on shared state that has changed since it was sent."""


class HandoffTimeout(HandoffError):
    """An expected hand-off did not arrive in time."""


class DataImportError(OmiumError):
    """A file to import does not match its format; the message names the file and the field."""


class _Evidence:
    """What a detection carries: the policy ``trigger``, the ``check`` that caught it, ``evidence``."""

    def __init__(
        self, message: str, *, trigger: str, check: str = "", evidence: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)  # type: ignore[call-arg]  # the next class is an exception
        self.trigger = trigger
        self.check = check
        self.evidence = dict(evidence or {})


class Detected(_Evidence, OmiumError):
    """A failure Omium caught at the step where it happened: a guard, a detector or a gate.

    Attributes:
        trigger: the policy trigger it falls under (``policy_violation``, ``hallucination_detected``,
            ``high_value_operation``, ...).
        check: the guard, detector or gate that caught it.
        evidence: what it saw (JSON-compatible).
    """


class GuardViolation(Detected):
    """A guard or post-condition did not hold."""


class ApprovalRequired(_Evidence, ControlSignal):
    """A high-value operation waits for a person's approval before it runs.

    Carries what a :class:`Detected` carries (``trigger``, ``check``, ``evidence``): it is a
    detection, but one that user code must not be able to catch with ``except Exception``.
    """


DETECTIONS = (Detected, ApprovalRequired)
"""What a guard, detector or gate raises: caught at its step, never retried."""


class EditRefused(OmiumError):
    """A review edit the run's policy does not allow; the message says why."""


__all__ = [
    "DETECTIONS",
    "ApprovalRequired",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ControlSignal",
    "DataImportError",
    "DecodeError",
    "Detected",
    "EditRefused",
    "FencedOut",
    "GuardViolation",
    "HandoffError",
    "HandoffRejected",
    "HandoffStale",
    "HandoffTimeout",
    "MigrationError",
    "NonDeterminismError",
    "NotFoundError",
    "OmiumError",
    "OutsideRunError",
    "OverloadedError",
    "QueryLimitExceeded",
    "QueryRefused",
    "ReadOnlyError",
    "ReplayDivergence",
    "RunBusy",
    "SerializationError",
    "ServerError",
    "ServerUnavailable",
    "WarehouseError",
]
