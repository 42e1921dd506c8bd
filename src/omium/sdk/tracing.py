"""OpenTelemetry spans for runs, agents, recorded calls, checkpoints, transactions and hand-offs.

Names and attributes follow the GenAI semantic conventions (``invoke_workflow {name}``,
``invoke_agent {name}``, ``execute_tool {name}``) with Omium's facts under ``omium.*``. Where spans
go is decided by :func:`configure` (``omium.init`` calls it): a given provider, else the embedded
warehouse when runs are stored there, else the application's global provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    Status,
    StatusCode,
    Tracer,
)

from omium._version import __version__
from omium.errors import ControlSignal

_provider: trace.TracerProvider | None = None
_tracer: Tracer | None = None


def configure(provider: trace.TracerProvider | None) -> None:
    """Send Omium's spans to ``provider`` (None: the global provider)."""
    global _provider, _tracer
    _provider = provider
    _tracer = None


def flush(timeout_millis: int = 10_000) -> None:
    """Export the spans Omium's provider still buffers (before the warehouse they go to closes)."""
    force = getattr(_provider, "force_flush", None)
    if callable(force):
        force(timeout_millis)


def tracer() -> Tracer:
    """Omium's tracer."""
    global _tracer
    if _tracer is None:
        provider = _provider or trace.get_tracer_provider()
        _tracer = provider.get_tracer("omium", __version__)
    return _tracer


# Nothing records spans: no provider was given and the application set none globally.
_SILENT = (ProxyTracerProvider, NoOpTracerProvider)
_NOTHING: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Span]:
    """A current span; an exception escaping it marks it as an error (``error.type`` set).

    Where nothing records spans (no provider given, none set globally) this is a no-op: a
    recorded call is the hot path, and a non-recording span would carry the parent's context
    unchanged anyway. Checked on each call, since an application may set its provider later.
    """
    if _provider is None and isinstance(trace.get_tracer_provider(), _SILENT):
        return _NOTHING
    return _span(name, attributes)


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Span]:
    clean = {k: v for k, v in attributes.items() if v is not None and v != ""}
    with tracer().start_as_current_span(
        name, attributes=clean, record_exception=True, set_status_on_exception=True
    ) as current:
        try:
            yield current
        except BaseException as error:
            current.set_attribute("error.type", type(error).__qualname__)
            if isinstance(error, ControlSignal):  # OTel marks only Exceptions; a rejection is an error too
                current.set_status(Status(StatusCode.ERROR, str(error)))
            raise


def annotate(attributes: dict[str, Any]) -> None:
    """Set attributes on the current span."""
    current = trace.get_current_span()
    for key, value in attributes.items():
        current.set_attribute(key, value)


SPAN_NAMES = {
    "tool": "execute_tool",
    "step": "step",
    "llm": "chat",
    "handoff_send": "handoff_send",
    "handoff_receive": "handoff_receive",
}

__all__ = ["SPAN_NAMES", "annotate", "configure", "flush", "span", "tracer"]
