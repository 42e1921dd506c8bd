"""Concurrency inside a run: tasks and threads that get their own place in it.

Calls made by concurrent tasks must keep the same ids on every execution, whatever order the
tasks run in this time. Each task or thread therefore gets its own :class:`~omium.sdk.context.Scope`
when it is *created*, in its parent, in program order:

* **asyncio** needs nothing: while a run is in progress Omium's task factory is installed on the
  event loop, so ``asyncio.gather``, ``asyncio.TaskGroup``, ``asyncio.create_task`` and
  ``asyncio.wait_for`` give each new task a scope (another task factory already installed is
  kept and called).
* **threads** go through :func:`spawn`, :class:`ThreadPoolExecutor` or :func:`to_thread`.
  A bare ``threading.Thread`` does not carry the run (Omium raises ``OutsideRunError`` there);
  a thread that copies the run's context by hand (``asyncio.to_thread`` without this module)
  raises :class:`~omium.sdk.context.UnsupportedConcurrency` at its first recorded call instead of
  recording it under another task's ids.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from omium.sdk import context as run_context

T = TypeVar("T")

# loop -> the task factory installed before Omium's (None: asyncio's own)
_installed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _omium_task_factory(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
) -> Any:
    """Create a task; inside a run (outside a recorded call) it gets its own scope."""
    base: contextvars.Context | None = kwargs.pop("context", None)
    parent = base.get(run_context._scope) if base is not None else run_context._scope.get()
    if parent is not None and not parent.call_key and run_context._current.get() is not None:
        ctx = base.copy() if base is not None else contextvars.copy_context()
        ctx.run(run_context._scope.set, parent.child())
        base = ctx
    previous = _installed.get(loop)
    if previous is not None:
        return (
            previous(loop, coro, context=base, **kwargs)
            if base is not None
            else previous(loop, coro, **kwargs)
        )
    return asyncio.Task(coro, loop=loop, context=base, **kwargs)


def ensure_task_scopes(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Install Omium's task factory on ``loop`` (the running one by default); idempotent."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
    factory = loop.get_task_factory()
    if factory is _omium_task_factory:
        return
    _installed[loop] = factory
    loop.set_task_factory(_omium_task_factory)  # type: ignore[arg-type]  # it passes context= on


def carry(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` as a new task of the run in progress, runnable in any thread.

    The new task's place in the run is taken now, in the caller; ``fn`` may then run anywhere,
    once. Inside a recorded call ``fn`` runs as part of that call (its idempotency key, no calls
    of its own recorded). Outside a run ``fn`` is returned unchanged.
    """
    scope = run_context.maybe_scope()
    if scope is None:
        return fn
    ctx = contextvars.copy_context()
    if not scope.call_key:  # inside a recorded call the work is part of it: same place, same key
        ctx.run(run_context._scope.set, scope.child())

    @functools.wraps(fn)
    def carried(*args: Any, **kwargs: Any) -> T:
        return ctx.run(fn, *args, **kwargs)

    return carried


def spawn(fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
    """Run ``fn(*args, **kwargs)`` in a new thread as a task of the run in progress.

    Returns a future for its result. Calls made in the thread are recorded under the thread's
    own ids, so they replay correctly whatever order threads finish in.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    target = carry(fn)

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(target(*args, **kwargs))
        except BaseException as error:  # handed to whoever waits on the future
            future.set_exception(error)

    threading.Thread(target=work, name=f"omium-{getattr(fn, '__name__', 'task')}", daemon=True).start()
    return future


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose submitted work runs as tasks of the run in progress (see :func:`carry`)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Submit ``fn``; inside a run it gets its own place in the run, taken now."""
        return super().submit(carry(fn), *args, **kwargs)


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` for work that records calls: ``fn`` runs as a task of the run."""
    return await asyncio.to_thread(carry(fn), *args, **kwargs)


__all__ = ["ThreadPoolExecutor", "carry", "ensure_task_scopes", "spawn", "to_thread"]
