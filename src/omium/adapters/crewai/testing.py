"""A scripted CrewAI model for offline tests and examples: answers from a script, counts its calls.

:class:`ScriptedLLM` is a ``crewai.llms.base_llm.BaseLLM`` subclass, the way CrewAI documents
custom models. Like CrewAI's own providers it emits ``LLMCallStartedEvent`` /
``LLMCallCompletedEvent`` / ``LLMCallFailedEvent`` with token usage, so it is traced exactly as a
real model would be. It answers in CrewAI's text (ReAct) format: ``Final Answer: ...`` ends a task,
``Action: TOOL`` / ``Action Input: {...}`` calls a tool.

Example:
    >>> from omium.adapters.crewai.testing import ScriptedLLM, final
    >>> model = ScriptedLLM(model="kyc-model", script=[final("KYC passed for Ada")])
    >>> model.call([{"role": "user", "content": "verify Ada"}])
    'Thought: I have the answer.\\nFinal Answer: KYC passed for Ada'
    >>> model.calls
    1
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from crewai.events.types.llm_events import LLMCallType
from crewai.llms.base_llm import BaseLLM, llm_call_context
from pydantic import PrivateAttr

# One scripted answer: the reply text, a function of the messages, or an exception to raise.
Answer = str | Callable[[list[dict[str, Any]]], str] | BaseException


def final(answer: str) -> str:
    """A reply that finishes the task with ``answer``."""
    return f"Thought: I have the answer.\nFinal Answer: {answer}"


def action(tool: str, arguments: dict[str, Any]) -> str:
    """A reply that calls ``tool`` with ``arguments``."""
    return f"Thought: I should use {tool}.\nAction: {tool}\nAction Input: {json.dumps(arguments)}"


class ScriptedLLM(BaseLLM):
    """A CrewAI model that answers from ``script`` in order (no network).

    Attributes:
        script: the answers, in order; running out is an error that names the model.
        calls: how many times the model was called.
        requests: the messages it was shown, one list per call.
    """

    __test__ = False  # not a pytest test class

    model: str  # required by CrewAI: the model name on `chat {model}` spans
    llm_type: str = "scripted"
    provider: str = "omium.testing"
    script: list[Any] = []
    _calls: int = PrivateAttr(default=0)
    _requests: list[list[dict[str, Any]]] = PrivateAttr(default_factory=list)

    @property
    def calls(self) -> int:
        """How many times the model was called."""
        return self._calls

    @property
    def requests(self) -> list[list[dict[str, Any]]]:
        """The messages of each call."""
        return self._requests

    def get_input_tokens_count(
        self, messages: str | list[Any], tools: Any = None, response_model: Any = None
    ) -> int:
        """The scripted model's own count (the one its usage reports): a token per four characters."""
        shown = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        return _prompt_tokens(shown)

    def supports_function_calling(self) -> bool:
        """No native tool calls: CrewAI drives tools through the text format."""
        return False

    def call(
        self,
        messages: str | list[Any],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> str:
        """The next scripted answer (see the class docstring)."""
        with llm_call_context():  # one call id for the call's events, as CrewAI's providers do
            return self._call(messages, tools, callbacks, available_functions, from_task, from_agent)

    def _call(
        self,
        messages: str | list[Any],
        tools: list[dict[str, Any]] | None,
        callbacks: list[Any] | None,
        available_functions: dict[str, Any] | None,
        from_task: Any,
        from_agent: Any,
    ) -> str:
        shown = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        self._emit_call_started_event(
            messages=shown,
            tools=tools,
            callbacks=callbacks,
            available_functions=available_functions,
            from_task=from_task,
            from_agent=from_agent,
        )
        self._requests.append(shown)
        index = self._calls
        self._calls += 1
        try:
            answer = self._answer(index, shown)
        except Exception as error:
            self._emit_call_failed_event(error=str(error), from_task=from_task, from_agent=from_agent)
            raise
        usage = {
            "prompt_tokens": _prompt_tokens(shown),
            "completion_tokens": len(answer) // 4 + 1,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._track_token_usage_internal(usage)
        self._emit_call_completed_event(
            response=answer,
            call_type=LLMCallType.LLM_CALL,
            from_task=from_task,
            from_agent=from_agent,
            messages=shown,
            usage=usage,
        )
        return answer

    def _answer(self, index: int, shown: list[dict[str, Any]]) -> str:
        script: Sequence[Any] = self.script
        if index >= len(script):
            raise RuntimeError(f"ScriptedLLM {self.model!r} has no answer for call {index + 1}")
        answer = script[index]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer(shown)
        return str(answer)


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1


__all__ = ["Answer", "ScriptedLLM", "action", "final"]
