"""GenAI span attribute values every framework adapter needs, free of any framework import.

* :func:`text`: an attribute value for structured data (JSON, else its string);
* :func:`tokens`: ``gen_ai.usage.input_tokens`` / ``output_tokens`` from a usage mapping or object,
  under either naming scheme (``input_tokens`` / ``prompt_tokens``).

Example:
    >>> text({"customer": "Ada"})
    '{"customer": "Ada"}'
    >>> tokens({"prompt_tokens": 12, "completion_tokens": 3})
    {'gen_ai.usage.input_tokens': 12, 'gen_ai.usage.output_tokens': 3}
"""

from __future__ import annotations

import json
from typing import Any

from omium import semconv


def text(value: Any) -> str:
    """An attribute value for structured data: JSON, else its string."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def tokens(usage: Any) -> dict[str, int]:
    """Input/output token counts from a usage mapping or object (either naming scheme)."""
    if usage is None:
        return {}
    get = usage.get if isinstance(usage, dict) else lambda key: getattr(usage, key, None)
    found: dict[str, int] = {}
    for key, names in (
        (semconv.GEN_AI_USAGE_INPUT_TOKENS, ("input_tokens", "prompt_tokens")),
        (semconv.GEN_AI_USAGE_OUTPUT_TOKENS, ("output_tokens", "completion_tokens")),
    ):
        for name in names:
            value = get(name)
            if isinstance(value, int):
                found[key] = value
                break
    return found


__all__ = ["text", "tokens"]
