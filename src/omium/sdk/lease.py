"""One executor per run: taking a run's lease, keeping it renewed, and noticing its loss.

Starting or resuming a run takes its lease through the store's compare-and-set
(:meth:`~omium.sdk.store.CheckpointStore.acquire_lease`); a second execution gets
:class:`~omium.errors.RunBusy`. The lease carries a fencing token that every write of the
execution presents, so a process that lost its lease (paused past it, cut off from the store)
cannot record anything: the store refuses the write with :class:`~omium.errors.FencedOut`. One
daemon thread per process renews the leases of the runs executing in it; when a renewal is
refused, the run's next recorded call raises the loss and the execution stops.

The lease lasts ``OMIUM_RUN_LEASE_SECONDS`` (30 s) unless ``omium.run(..., lease_seconds=...)``
says otherwise and is renewed every third of that.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from omium.config import run_lease_seconds
from omium.errors import ConfigError, ConflictError, FencedOut, NotFoundError, RunBusy
from omium.sdk.context import RunContext
from omium.sdk.stop import notice
from omium.sdk.store import CheckpointStore, RunLease, now_us

logger = logging.getLogger(__name__)


def lease_seconds(explicit: float | None = None) -> float:
    """The lease duration: ``explicit``, else ``OMIUM_RUN_LEASE_SECONDS``, else 30 s."""
    value = run_lease_seconds() if explicit is None else explicit
    if not value > 0:
        raise ConfigError(f"a run lease must last a positive number of seconds, not {value!r}")
    return value


def new_holder() -> str:
    """A name for one execution: host, process and a random part (two runs in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(
    store: CheckpointStore, run_id: str, holder: str, seconds: float, *, wait: bool | float = False
) -> RunLease:
    """Take the run's lease; with ``wait`` (True, or a number of seconds) wait for a busy run.

    Raises:
        RunBusy: another execution holds it (and ``wait`` is False or ran out).
    """
    deadline = None if wait is True else time.monotonic() + (0.0 if wait is False else float(wait))
    pause = 0.02
    while True:
        try:
            return store.acquire_lease(run_id, holder, seconds)
        except RunBusy as busy:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            left = max(busy.lease_until - now_us(), 0) / 1e6
            time.sleep(min(pause, left + 0.005) if left else pause)
            pause = min(pause * 2, 0.5)


class _Keeper:
    """Renews the leases of the runs executing in this process."""

    def __init__(self) -> None:
        self._runs: dict[int, tuple[RunContext, str, float, int]] = {}  # id -> (run, holder, s, until)
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def keep(self, context: RunContext, holder: str, seconds: float, lease_until: int) -> None:
        with self._wake:
            self._runs[id(context)] = (context, holder, seconds, lease_until)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="omium-leases", daemon=True)
                self._thread.start()
            self._wake.notify()

    def drop(self, context: RunContext) -> None:
        with self._wake:
            self._runs.pop(id(context), None)

    def abandon(self, run_id: str, reason: str) -> None:
        """Stop this process's execution of ``run_id`` at its next call (its work was taken away)."""
        with self._wake:
            for context, *_ in self._runs.values():
                if context.run_id == run_id:
                    context.lost = FencedOut(f"run {run_id!r} stops: {reason}")

    def _loop(self) -> None:
        while True:
            with self._wake:
                if not self._runs:
                    self._wake.wait(5.0)
                    if not self._runs:
                        self._thread = None
                        return
                    continue
                now = now_us()
                due = min(until - int(seconds * 1e6 * 2 / 3) for _, _, seconds, until in self._runs.values())
                if due > now:
                    self._wake.wait((due - now) / 1e6)
                    continue
                work = [
                    entry for entry in self._runs.values() if entry[3] - int(entry[2] * 1e6 * 2 / 3) <= now
                ]
            for context, holder, seconds, until in work:
                self._renew(context, holder, seconds, until)

    def _renew(self, context: RunContext, holder: str, seconds: float, until: int) -> None:
        try:
            lease = context.store.renew_lease(context.run_id, holder, context.fence, seconds)
        except (FencedOut, ConflictError, NotFoundError) as error:
            context.lost = error if isinstance(error, FencedOut) else FencedOut(str(error))
            logger.warning("run %s lost its lease: %s; it stops at its next call", context.run_id, error)
            self.drop(context)
            return
        except Exception as error:  # the store is unreachable for now: retry until the lease ends
            if now_us() >= until:
                context.lost = FencedOut(
                    f"run {context.run_id!r}: its lease could not be renewed before it expired ({error}); "
                    "another execution may have taken the run over"
                )
                self.drop(context)
            else:
                logger.warning("renewing the lease of run %s failed: %s; retrying", context.run_id, error)
                with self._wake:
                    if id(context) in self._runs:
                        self._runs[id(context)] = (context, holder, seconds, until)
                time.sleep(min(0.5, seconds / 10))
            return
        if lease.stop:  # an operator asked the run to stop: its next call does
            notice(context, lease.stop, lease.stop_by)
        with self._wake:
            if id(context) in self._runs:
                self._runs[id(context)] = (context, holder, seconds, lease.lease_until)


keeper = _Keeper()


__all__ = ["acquire", "keeper", "lease_seconds", "new_holder"]
