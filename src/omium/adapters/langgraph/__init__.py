"""Omium beneath LangGraph: :class:`OmiumSaver`, a checkpointer whose threads live in Omium's store.

Compile a graph with it and its threads are checkpointed into the warehouse (or whatever store
``omium.init()`` chose), each value stored once by content and message histories split into
items, so storage grows with what a turn adds rather than with the whole history::

    from omium.adapters.langgraph import OmiumSaver

    graph = builder.compile(checkpointer=OmiumSaver())
    graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})

Needs the ``langgraph`` extra: ``pip install 'omium[langgraph]'``.
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    from omium.errors import ConfigError

    raise ConfigError("the LangGraph adapter needs its extra: pip install 'omium[langgraph]'") from None

from omium.adapters.langgraph._saver import OmiumSaver

__all__ = ["OmiumSaver"]
