"""Shared state between agents: versioned keys with compare-and-set.

A write names the version it expects (by default the one this run last read); if another
writer got there first the write fails with :class:`ConflictError` instead of silently losing
an update. Reads and writes are recorded calls, so a resumed run sees what it saw before and
does not write twice (a write re-executed after a crash recognises its own version).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omium.errors import ConflictError
from omium.sdk import serde
from omium.sdk.calls import CallDefinition, invoke
from omium.sdk.context import current


class SharedState:
    """Versioned keys in ``namespace``, shared by the agents (and runs) that use it.

    Example:
        >>> orders = SharedState("orders")                                # doctest: +SKIP
        >>> orders.update("o-17", lambda o: {**(o or {}), "status": "shipped"})
    """

    def __init__(self, namespace: str = "default") -> None:
        if not namespace or "/" in namespace:
            raise ValueError(f"a shared-state namespace is a non-empty name without '/', not {namespace!r}")
        self.namespace = namespace

    def _read_now(self, key: str) -> list[Any]:
        context = current()
        latest = context.store.read_state(self.namespace, key)
        if latest is None:
            return [0, None]
        return [latest.version, serde.loads(context.store.get_blob(latest.value_hash))]

    def read(self, key: str) -> tuple[int, Any]:
        """``(version, value)`` of ``key`` (``(0, None)`` if never written); remembered by the run."""
        name = f"{self.namespace}/{key}"
        version, value = invoke(CallDefinition(name, "state_read", lambda: self._read_now(key)), (), {})
        current().state_reads[name] = int(version)
        return int(version), value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``default`` if never written)."""
        version, value = self.read(key)
        return default if version == 0 else value

    def set(self, key: str, value: Any, *, expected_version: int | None = None) -> int:
        """Write ``value`` if ``key`` is still at ``expected_version`` (default: the version this run
        last read, 0 if it never read it); returns the new version.

        Raises:
            ConflictError: another writer changed the key since.
        """
        name = f"{self.namespace}/{key}"
        context = current()
        expected = context.state_reads.get(name, 0) if expected_version is None else expected_version

        def write_now() -> int:
            call_key = current().call_key
            value_hash = context.store.put_blob(serde.dumps(value))
            try:
                written = context.store.write_state(
                    self.namespace,
                    key,
                    expected,
                    value_hash,
                    writer=f"{context.agent}@{call_key}",
                    run_id=context.run_id,
                    fence=context.fence,
                )
            except ConflictError:
                latest = context.store.read_state(self.namespace, key)
                if latest is not None and latest.writer.endswith(f"@{call_key}"):
                    return latest.version  # our own write, made before a crash
                raise
            return written.version

        version = int(invoke(CallDefinition(name, "state_write", write_now), (), {}))
        context.state_reads[name] = version
        return version

    def update(self, key: str, change: Callable[[Any], Any], *, attempts: int = 20) -> Any:
        """Read-modify-write ``key`` with ``change(old) -> new``, retrying on conflicts."""
        for _ in range(attempts):
            _, old = self.read(key)
            new = change(old)
            try:
                self.set(key, new)
            except ConflictError:
                continue
            return new
        raise ConflictError(f"{self.namespace}/{key} kept changing: gave up after {attempts} attempts")


__all__ = ["SharedState"]
