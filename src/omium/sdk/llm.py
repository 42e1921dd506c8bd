"""Recorded LLM calls: the prompt, response, model and token counts of every call.

``llm_call(model, messages)`` works with any object that has ``complete(messages, **params)``
returning an :class:`LLMResponse` (providers plug in through a small adapter; tests use
:class:`omium.testing.FakeLLM`). A resumed or replayed run gets the recorded response back
without calling the model again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from omium import semconv
from omium.sdk import tracing
from omium.sdk.calls import CallDefinition, invoke
from omium.sdk.retry import NO_RETRY, RetryPolicy

Message = dict[str, Any]

# Prompts and responses are recorded on spans too (the GenAI conventions make that opt-in);
# set False where content must not leave the run's store.
CAPTURE_CONTENT = True


@dataclass(frozen=True)
class LLMResponse:
    """What a model answered."""

    text: str
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"
    metadata: dict[str, str] = field(default_factory=dict)


class ChatModel(Protocol):
    """The one method Omium needs from a model client."""

    model: str
    provider: str

    def complete(self, messages: list[Message], **params: Any) -> LLMResponse:
        """Answer ``messages`` (``[{"role": ..., "content": ...}]``)."""
        ...


def llm_call(
    model: ChatModel, messages: list[Message], *, retry: RetryPolicy | None = None, **params: Any
) -> LLMResponse:
    """Call ``model`` as a recorded step of the current run (span ``chat {model}``)."""

    def call(*recorded: list[Message]) -> LLMResponse:
        tracing.annotate(
            {
                semconv.GEN_AI_OPERATION_NAME: "chat",
                semconv.GEN_AI_PROVIDER_NAME: getattr(model, "provider", ""),
                semconv.GEN_AI_REQUEST_MODEL: model.model,
                **(
                    {semconv.GEN_AI_INPUT_MESSAGES: json.dumps(messages, default=str)}
                    if CAPTURE_CONTENT
                    else {}
                ),
            }
        )
        response = model.complete(messages, **params)
        tracing.annotate(
            {
                semconv.GEN_AI_RESPONSE_MODEL: response.model or model.model,
                semconv.GEN_AI_USAGE_INPUT_TOKENS: response.input_tokens,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: response.output_tokens,
                "gen_ai.response.finish_reasons": [response.finish_reason],
                **(
                    {
                        semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                            [{"role": "assistant", "content": response.text}]
                        )
                    }
                    if CAPTURE_CONTENT
                    else {}
                ),
            }
        )
        return response

    definition = CallDefinition(model.model, "llm", call, retry or NO_RETRY)
    # The messages are the call's recorded input (for the step inspector), unless content stays out.
    return invoke(definition, (messages,) if CAPTURE_CONTENT else (), {})


__all__ = ["CAPTURE_CONTENT", "ChatModel", "LLMResponse", "Message", "llm_call"]
