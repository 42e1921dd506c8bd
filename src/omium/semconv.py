"""Span names, attribute keys and column names shared by the SDK, collector and pipelines.

Omium's own facts ride in ``SpanAttributes`` under ``omium.*`` keys beside the OpenTelemetry
GenAI semantic conventions (``gen_ai.*``) and OpenInference keys, so spans written by any of
them are read alike (:mod:`omium.conventions` holds the read side: which convention keeps which
fact where).
"""

from __future__ import annotations

# --- otel_traces: the exact columns the OpenTelemetry Collector contrib ClickHouse exporter writes.
OTEL_TRACES_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)

# OTLP Span.SpanKind / Status.StatusCode enum values -> the strings the contrib exporter writes.
SPAN_KIND_NAMES: tuple[str, ...] = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODE_NAMES: tuple[str, ...] = ("Unset", "Ok", "Error")
# Older exporters wrote STATUS_CODE_ERROR; readers accept both spellings.
ERROR_STATUS_VALUES: tuple[str, ...] = ("Error", "STATUS_CODE_ERROR")

# --- GenAI semantic conventions (development stability).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"

# --- Omium's own attributes.
OMIUM_RUN_ID = "omium.run_id"
OMIUM_STEP_INDEX = "omium.step_index"
OMIUM_STEP_KIND = "omium.step_kind"
OMIUM_CHECKPOINT = "omium.checkpoint"
OMIUM_TRANSACTION_OUTCOME = "omium.transaction.outcome"
OMIUM_HANDOFF_VERDICT = "omium.handoff.verdict"
OMIUM_SOURCE_ID = "omium.source_id"
