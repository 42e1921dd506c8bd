"""The trace view's computations on spans as the warehouse returns them: conversations of each
convention, the span tree's order, and costs priced as the pipelines price them."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from omium.dashboards.console import trace_views as tv


def test_legacy_flattened_prompt_and_completion() -> None:
    """OpenLLMetry's legacy attributes (``gen_ai.prompt.N.*``), tool calls included, in index order."""
    attributes = {
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Refund order 7?",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "You handle refunds.",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.tool_calls.0.name": "refund",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"order": 7}',
    }
    said = tv.conversation(attributes)
    assert [(m.role, m.text, m.output) for m in said] == [
        ("system", "You handle refunds.", False),
        ("user", "Refund order 7?", False),
        ("assistant", "", True),
    ]
    assert said[-1].tool_calls == (("refund", '{"order": 7}'),)


def test_openinference_messages_with_a_tool_result() -> None:
    attributes = {
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Weather in Oslo?",
        "llm.input_messages.1.message.role": "tool",
        "llm.input_messages.1.message.content": "-3C",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "It is -3C.",
    }
    assert [(m.role, m.text) for m in tv.conversation(attributes)] == [
        ("user", "Weather in Oslo?"),
        ("tool", "-3C"),
        ("assistant", "It is -3C."),
    ]


def test_genai_json_messages_first() -> None:
    """GenAI's JSON messages win over another convention's copy of the same exchange."""
    attributes = {
        "gen_ai.system_instructions": '[{"type": "text", "content": "Be brief."}]',
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]',
        "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "tool_call", "name": "greet", '
        '"arguments": {"who": "you"}}]}]',
        "llm.input_messages.0.message.content": "ignored",
    }
    said = tv.conversation(attributes)
    assert [(m.role, m.text) for m in said] == [("system", "Be brief."), ("user", "Hi"), ("assistant", "")]
    assert said[-1].tool_calls == (("greet", '{"who": "you"}'),)


def test_span_tree_orders_parents_before_children() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spans = pl.DataFrame(
        {
            "span_id": ["c", "a", "b", "orphan"],
            "parent_span_id": ["b", "", "a", "missing"],
            "name": ["child", "root", "middle", "orphan"],
            "started": [start] * 4,
            "duration_ms": [1.0, 3.0, 2.0, 1.0],
            "error": [False, False, True, False],
        }
    )
    tree = tv.span_tree(spans)
    assert tree["span_id"].to_list() == ["a", "b", "c", "orphan"]
    assert tree["depth"].to_list() == [0, 1, 2, 0]
    assert tv.label(tree.row(1, named=True)) == "\u00b7\u00a0\u00a0middle · 2.0 ms ✗"


def test_span_costs_use_genai_prices() -> None:
    spans = pl.DataFrame(
        {
            "provider": ["openai", "openai", "nobody"],
            "model": ["gpt-4o-mini", "gpt-4o-mini", "unknown-model"],
            "input_tokens": [1000, 0, 1000],
            "output_tokens": [100, 0, 100],
            "cached_tokens": [0, 0, 0],
            "cache_write_tokens": [0, 0, 0],
        }
    )
    priced, silent, unknown = tv.span_costs(spans)
    assert priced is not None and 0 < priced < 0.01  # gpt-4o-mini: $0.15 / $0.60 per million
    assert silent is None and unknown is None  # no tokens, or no price: unknown, never 0


def test_waterfall_draws_the_window_asked_for() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spans = pl.DataFrame(
        {
            "span_id": [f"s{i:03d}" for i in range(250)],
            "parent_span_id": [""] + ["s000"] * 249,
            "name": [f"step {i}" for i in range(250)],
            "started": [start] * 250,
            "duration_ms": [1.0] * 250,
            "error": [False] * 250,
            "operation": [""] * 250,
            "agent": [""] * 250,
        }
    )
    tree = tv.span_tree(spans)
    chart = tv.waterfall(tree, 100, 200)
    drawn = chart.data["span"].tolist()  # type: ignore[union-attr]
    assert (
        len(drawn) == 50
        and drawn[0].startswith("\u00b7\u00a0\u00a0step 200 ")
        and drawn[-1].endswith("[s249]")
    )
