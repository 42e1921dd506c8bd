"""A scripted AG2 model for offline tests: answers from a script shared by every turn, counts calls.

AG2's own ``ag2.testing.TestConfig`` restarts its script at each ``Agent.ask`` (every turn
creates a new client from the config). :class:`ScriptedModel` keeps one script across turns and
processes, so a test can script a whole conversation per agent and count how many times the model
was really called — which is how a resumed conversation proves that finished turns were not run
again.

Example:
    >>> from ag2 import Agent
    >>> from omium.adapters.autogen.testing import ScriptedModel
    >>> model = ScriptedModel(["PLAN: 1. write fib 2. test it"])
    >>> planner = Agent("planner", config=model)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

from ag2.config import LLMClient, ModelConfig, ModelProvider
from ag2.events import BaseEvent, ModelMessage, ModelResponse, ToolCallEvent, ToolCallsEvent
from ag2.events.types import Usage

if TYPE_CHECKING:
    from ag2.files.protocol import FilesClient

# One scripted model answer: text, tool calls, a full response, or an exception to raise.
Answer = str | ModelResponse | ToolCallEvent | Sequence[ToolCallEvent] | BaseException
Script = Sequence[Answer] | Callable[[Sequence[BaseEvent]], Answer]


class ScriptedModel(ModelConfig):
    """An AG2 model config whose client answers from ``script`` (no network).

    Args:
        script: the answers in order, or a function of the messages the model is shown.
        model: the model name reported on responses (``chat {model}`` spans).
        provider: the provider name reported on responses (``gen_ai.provider.name``).

    Attributes:
        calls: how many times the model was called.
        requests: the messages it was shown, one list per call.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, script: Script, *, model: str = "scripted-model", provider: str = "omium.testing"
    ) -> None:
        self.script = script
        self.model_name = model
        self.provider_name = provider
        self.calls = 0
        self.requests: list[list[BaseEvent]] = []
        self._next = 0

    @property
    def provider(self) -> ModelProvider:
        """Not one of AG2's providers: responses carry ``provider_name`` instead."""
        raise NotImplementedError("a scripted model has no AG2 provider")

    @property
    def model(self) -> str:
        """The model name."""
        return self.model_name

    def copy(self) -> Self:
        """The same model (its script and counters are shared)."""
        return self

    def create(self) -> LLMClient:
        """A client reading this model's script."""
        return _ScriptedClient(self)

    def create_files_client(self) -> FilesClient[Any]:
        """Not supported: a scripted model has no Files API."""
        raise NotImplementedError("a scripted model has no Files API")

    def answer(self, messages: Sequence[BaseEvent]) -> ModelResponse:
        """The next scripted answer as a response (raises a scripted exception)."""
        self.calls += 1
        self.requests.append(list(messages))
        if callable(self.script):
            scripted: Answer = self.script(messages)
        else:
            if self._next >= len(self.script):
                raise AssertionError(
                    f"ScriptedModel {self.model_name!r} ran out of answers after {self._next}"
                )
            scripted = self.script[self._next]
            self._next += 1
        if isinstance(scripted, BaseException):
            raise scripted
        if isinstance(scripted, ModelResponse):
            return scripted
        words = sum(len(str(getattr(m, "content", "") or "").split()) for m in messages)
        usage = Usage(prompt_tokens=words, completion_tokens=len(str(scripted).split()))
        if isinstance(scripted, str):
            return ModelResponse(
                ModelMessage(scripted),
                usage=usage,
                model=self.model_name,
                provider=self.provider_name,
                finish_reason="stop",
            )
        calls = [scripted] if isinstance(scripted, ToolCallEvent) else list(_tool_calls(scripted))
        return ModelResponse(
            tool_calls=ToolCallsEvent(calls),
            usage=usage,
            model=self.model_name,
            provider=self.provider_name,
            finish_reason="tool_calls",
        )


def _tool_calls(items: Iterable[Any]) -> Iterable[ToolCallEvent]:
    for item in items:
        if not isinstance(item, ToolCallEvent):
            raise TypeError(f"a scripted answer holds ToolCallEvents, not {type(item).__name__}")
        yield item


class _ScriptedClient:
    """The LLM client of a :class:`ScriptedModel`."""

    def __init__(self, model: ScriptedModel) -> None:
        self._model = model

    async def __call__(self, messages: Sequence[BaseEvent], context: Any, **kwargs: Any) -> ModelResponse:
        return self._model.answer(messages)


__all__ = ["Answer", "Script", "ScriptedModel"]
