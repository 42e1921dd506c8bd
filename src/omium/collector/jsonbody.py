"""Parsing a request's JSON body so that any client mistake is a :class:`DecodeError` (a 4xx).

``json.loads`` alone lets three kinds of input through to become server errors later: nesting deep
enough to exhaust the interpreter's recursion (``RecursionError``), lone UTF-16 surrogates
(``"\\ud800"`` decodes to a ``str`` that cannot be encoded again, so storing or echoing it fails),
and bytes that are not UTF-8. All three are refused here, before anything is acknowledged.
"""

from __future__ import annotations

import json
import re
from typing import Any

from omium.errors import DecodeError

# Deeper than any payload Omium's own APIs take; bounds the work of everything that walks it.
MAX_DEPTH = 64
# Only bodies that escape a surrogate can hold a lone one: the walk below runs only for them.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` as JSON, refusing deep nesting, lone surrogates and invalid UTF-8.

    Args:
        raw: The body as received.
        max_depth: Deepest nesting of arrays and objects accepted.

    Raises:
        DecodeError: With a message fit to send back to the client.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise DecodeError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise DecodeError("body is not valid UTF-8") from None
    except ValueError as exc:
        raise DecodeError(f"body is not valid JSON: {printable(str(exc))}") from None
    check_depth_and_text(value, max_depth=max_depth, surrogates=bool(_SURROGATE_ESCAPE.search(raw)))
    return value


def check_depth_and_text(value: Any, *, max_depth: int = MAX_DEPTH, surrogates: bool = True) -> None:
    """Walk ``value`` without recursion; refuse nesting past ``max_depth`` and lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise DecodeError(f"JSON nested deeper than {max_depth} levels")
            for key, child in item.items():
                if surrogates:
                    _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                raise DecodeError(f"JSON nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in item)
        elif surrogates and isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("JSON string holds a lone UTF-16 surrogate (not valid Unicode text)") from None


def printable(message: str) -> str:
    """``message`` with anything that cannot be encoded as UTF-8 replaced (safe in an error body)."""
    return message.encode("utf-8", "replace").decode("utf-8")


__all__ = ["MAX_DEPTH", "check_depth_and_text", "load_json", "printable"]
