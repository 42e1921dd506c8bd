"""The adapters' GenAI attribute helpers: JSON text, and token counts under either naming."""

from __future__ import annotations

import doctest
from types import SimpleNamespace

from omium.adapters import genai


def test_tokens_read_mappings_and_objects_under_either_name() -> None:
    assert genai.tokens({"input_tokens": 7, "output_tokens": 2}) == {
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
    }
    assert genai.tokens(SimpleNamespace(prompt_tokens=5, completion_tokens=None)) == {
        "gen_ai.usage.input_tokens": 5
    }
    assert genai.tokens(None) == {}


def test_text_falls_back_to_str_for_what_json_cannot_hold() -> None:
    assert genai.text("plain") == "plain"
    assert genai.text({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
    loop: list[object] = []
    loop.append(loop)  # JSON cannot hold a cycle
    assert genai.text(loop) == "[[...]]"
    assert genai.text({1j}) == '"{1j}"'  # what JSON does not know is written as its string


def test_docstring_examples_run() -> None:
    assert doctest.testmod(genai).failed == 0
