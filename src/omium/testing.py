"""Test doubles shipped with Omium, so users can test their workflows offline.

* :class:`FakeLLM` — a scripted chat model: answers from a list (or a function of the
  messages), raises scripted exceptions, counts calls.
* :func:`runtime` — an in-process runtime for a test: an in-memory store and an in-memory span
  exporter, restored afterwards.

Example:
    >>> from omium.testing import FakeLLM, runtime
    >>> from omium.sdk.llm import llm_call
    >>> import omium
    >>> with runtime() as rt:
    ...     model = FakeLLM(["APR 4.9%"])
    ...     omium.run(lambda: llm_call(model, [{"role": "user", "content": "offer?"}]).text, run_id="t")
    'APR 4.9%'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from omium.sdk.llm import LLMResponse, Message
from omium.sdk.store import MemoryStore

Script = Sequence[str | LLMResponse | BaseException] | Callable[[list[Message]], str | LLMResponse]


class FakeLLM:
    """A scripted chat model (no network)."""

    def __init__(self, script: Script, *, model: str = "fake-model", provider: str = "omium.testing") -> None:
        self.model = model
        self.provider = provider
        self._script = script
        self._next = 0
        self.calls: list[list[Message]] = []

    def complete(self, messages: list[Message], **params: Any) -> LLMResponse:
        """The next scripted answer (or raise the next scripted exception)."""
        self.calls.append(messages)
        if callable(self._script):
            answer: Any = self._script(messages)
        else:
            if self._next >= len(self._script):
                raise AssertionError(f"FakeLLM ran out of scripted answers after {self._next} calls")
            answer = self._script[self._next]
            self._next += 1
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, LLMResponse):
            return answer
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
        return LLMResponse(
            text=str(answer),
            model=self.model,
            input_tokens=prompt_words,
            output_tokens=len(str(answer).split()),
        )


@dataclass
class Runtime:
    """What :func:`runtime` gives a test."""

    store: MemoryStore
    spans: Any  # InMemorySpanExporter


@contextmanager
def runtime() -> Iterator[Runtime]:
    """An in-memory store and span exporter for the duration of a test."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from omium.sdk import runs, tracing

    previous_store, previous_provider = runs._default_store, tracing._provider
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = MemoryStore()
    runs.init(store=store, tracer_provider=provider)
    try:
        yield Runtime(store=store, spans=exporter)
    finally:
        runs._default_store = previous_store
        tracing.configure(previous_provider)
        provider.shutdown()


__all__ = ["FakeLLM", "Runtime", "runtime"]
