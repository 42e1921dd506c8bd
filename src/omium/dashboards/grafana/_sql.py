"""SQL fragments the dashboards share: an ``otel_traces`` row's agent, tokens and failure.

Panel SQL is composed of constants only: values only ever arrive through the plugin's macros and the
dashboard's variables, substituted at query time. Reads of versioned tables use FINAL (OTLP delivery
is at-least-once; derived tables are rebuilt).
"""

from __future__ import annotations

# REFERENCE.md section 3: the first attribute present wins.
AGENT = (
    "coalesce(nullIf(SpanAttributes['gen_ai.agent.name'], ''), nullIf(SpanAttributes['agent.name'], ''), "
    "nullIf(SpanAttributes['graph.node.name'], ''), '')"
)
INPUT_TOKENS = (
    "toUInt64OrZero(coalesce(nullIf(SpanAttributes['gen_ai.usage.input_tokens'], ''), "
    "nullIf(SpanAttributes['llm.token_count.prompt'], ''), '0'))"
)
OUTPUT_TOKENS = (
    "toUInt64OrZero(coalesce(nullIf(SpanAttributes['gen_ai.usage.output_tokens'], ''), "
    "nullIf(SpanAttributes['llm.token_count.completion'], ''), '0'))"
)
FAILED = "StatusCode IN ('Error', 'STATUS_CODE_ERROR')"

__all__ = ["AGENT", "FAILED", "INPUT_TOKENS", "OUTPUT_TOKENS"]
