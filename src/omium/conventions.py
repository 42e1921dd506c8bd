"""Attribute conventions as data: which span attribute gives which normalised field.

Instrumentations name the same fact differently (``gen_ai.usage.input_tokens``,
``gen_ai.usage.prompt_tokens``, ``llm.token_count.prompt``, ``ai.usage.promptTokens``). Each
row of :data:`CONVENTIONS` says where one convention keeps one field, and how to read it; rows
of a field are tried in order and the first non-empty value wins. :func:`field_sql` turns a
field's rows into the ClickHouse expression that :mod:`omium.pipelines.spans` selects, so
supporting another instrumentation is adding rows here, not code there.

A row reads a span attribute (or a resource attribute, or the span name), optionally only when
another attribute matches a pattern (:class:`When`), then applies its transforms in order:
:class:`Lower`, :class:`Values` (a value map onto one vocabulary), :class:`JsonPath` (a key inside
a JSON attribute), :class:`Pattern` (a regular expression's first group) and :class:`Indexed`
(flattened message lists such as ``gen_ai.prompt.0.content``, ``gen_ai.prompt.1.content``...).

Operations use one vocabulary, the GenAI semantic conventions' (``chat``, ``text_completion``,
``generate_content``, ``embeddings``, ``retrieval``, ``execute_tool``, ``invoke_agent``,
``create_agent``, ``invoke_workflow``), plus a few values the conventions have no name for
(``rerank``, ``guardrail``, ``evaluate``, ``handoff``) and Omium's own step kinds
(``checkpoint``, ``transaction``, ``step``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["attribute", "resource", "span_name"]

# The fields a row may feed; the numeric ones are token counts.
TEXT_FIELDS: tuple[str, ...] = (
    "agent",
    "operation",
    "tool",
    "provider",
    "model",
    "session",
    "user",
    "input_content",
    "output_content",
    "tool_calls",
    "graph_node",
    "handoff_from",
    "handoff_to",
)
TOKEN_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def _literal(text: str) -> str:
    """A ClickHouse string literal (constants of this module only, never user input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Lower:
    """Lower-case the value."""

    def sql(self, value: str) -> str:
        """``value`` (a ClickHouse expression) transformed."""
        return f"lower({value})"


@dataclass(frozen=True)
class Values:
    """Map values onto one vocabulary; a value not in the map is kept (``keep``) or dropped."""

    mapping: tuple[tuple[str, str], ...]
    keep: bool = True

    def sql(self, value: str) -> str:
        """``value`` (a ClickHouse expression) transformed."""
        froms = ", ".join(_literal(a) for a, _ in self.mapping)
        tos = ", ".join(_literal(b) for _, b in self.mapping)
        default = value if self.keep else "''"
        return f"transform({value}, [{froms}], [{tos}], {default})"


@dataclass(frozen=True)
class JsonPath:
    """A string at a key path inside a JSON object attribute (LangChain's ``metadata``)."""

    path: tuple[str, ...]

    def sql(self, value: str) -> str:
        """``value`` (a ClickHouse expression) transformed."""
        keys = ", ".join(_literal(k) for k in self.path)
        # JSONExtractRaw keeps numbers (a thread id may be one); strings lose their quotes.
        raw = f"JSONExtractRaw({value}, {keys})"
        text = f"JSONExtractString({value}, {keys})"
        return f"multiIf(startsWith({raw}, '\"'), {text}, {raw} = 'null', '', {raw})"


@dataclass(frozen=True)
class Pattern:
    """The first group of a regular expression (RE2), '' when it does not match."""

    regex: str

    def sql(self, value: str) -> str:
        """``value`` (a ClickHouse expression) transformed."""
        return f"extract({value}, {_literal(self.regex)})"


@dataclass(frozen=True)
class Indexed:
    """Join flattened list items (``{n}`` in the key stands for 0, 1, ...) in index order, one line
    each, prefixed by ``role: `` when the item's role key (same ``{n}``) has a value."""

    role: str = ""

    def read(self, column: str, template: str) -> str:
        """The joined items of ``column`` whose keys fit ``template``."""
        head, tail = template.split("{n}")
        key_regex = "^" + re.escape(head) + r"(\d+)" + re.escape(tail) + "$"
        item = f"{column}[k]"
        if self.role:
            r_head, r_tail = self.role.split("{n}")
            role_key = f"concat({_literal(r_head)}, extract(k, {_literal(key_regex)}), {_literal(r_tail)})"
            role_value = f"{column}[{role_key}]"
            item = f"if({role_value} != '', concat({role_value}, ': ', {column}[k]), {column}[k])"
        keys = (
            f"arraySort(k -> toUInt32OrZero(extract(k, {_literal(key_regex)})), "
            f"arrayFilter(k -> match(k, {_literal(key_regex)}), mapKeys({column})))"
        )
        return f"arrayStringConcat(arrayMap(k -> {item}, {keys}), '\\n')"


Transform = Lower | Values | JsonPath | Pattern | Indexed


@dataclass(frozen=True)
class When:
    """A row applies only when attribute ``key`` (or the span's scope name, for ``source="scope"``)
    matches ``regex`` (or does not, with ``negate``)."""

    key: str
    regex: str
    negate: bool = False
    source: Literal["attribute", "scope"] = "attribute"

    def sql(self) -> str:
        """The condition as a ClickHouse boolean expression."""
        value = "ScopeName" if self.source == "scope" else f"SpanAttributes[{_literal(self.key)}]"
        test = f"match({value}, {_literal(self.regex)})"
        return f"NOT {test}" if self.negate else test


@dataclass(frozen=True)
class Mapping:
    """One convention's place for one field: read ``key`` from ``source``, transform, first wins."""

    field: str
    key: str
    convention: str
    transforms: tuple[Transform, ...] = ()
    source: Source = "attribute"
    when: When | tuple[When, ...] = ()

    def sql(self) -> str:
        """The ClickHouse expression of this row's value ('' when absent)."""
        column = "ResourceAttributes" if self.source == "resource" else "SpanAttributes"
        first = self.transforms[0] if self.transforms else None
        if isinstance(first, Indexed):
            value, rest = first.read(column, self.key), self.transforms[1:]
        else:
            value = "SpanName" if self.source == "span_name" else f"{column}[{_literal(self.key)}]"
            rest = self.transforms
        for transform in rest:
            assert not isinstance(transform, Indexed), "Indexed reads the map: only as the first transform"
            value = transform.sql(value)
        conditions = (self.when,) if isinstance(self.when, When) else self.when
        if conditions:
            value = f"if({' AND '.join(c.sql() for c in conditions)}, {value}, '')"
        return value


# --- The vocabularies.

GENAI_OPERATIONS: tuple[str, ...] = (
    "chat",
    "text_completion",
    "generate_content",
    "embeddings",
    "retrieval",
    "execute_tool",
    "invoke_agent",
    "create_agent",
    "invoke_workflow",
)

# Span kinds of other conventions onto GenAI operation names (after lower-casing).
KIND_TO_OPERATION: tuple[tuple[str, str], ...] = (
    ("llm", "chat"),
    ("chat", "chat"),
    ("completion", "text_completion"),
    ("embedding", "embeddings"),
    ("tool", "execute_tool"),
    ("agent", "invoke_agent"),
    ("chain", "invoke_workflow"),
    ("workflow", "invoke_workflow"),
    ("task", "invoke_workflow"),
    ("retriever", "retrieval"),
    ("reranker", "rerank"),
    ("evaluator", "evaluate"),
)
# The Vercel AI SDK's ``ai.operationId``: the provider call spans are the model calls; the outer
# ``ai.generateText`` etc. span orchestrates its steps and tool calls.
VERCEL_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("ai.generatetext.dogenerate", "chat"),
    ("ai.streamtext.dostream", "chat"),
    ("ai.generateobject.dogenerate", "chat"),
    ("ai.streamobject.dostream", "chat"),
    ("ai.embed.doembed", "embeddings"),
    ("ai.embedmany.doembed", "embeddings"),
    ("ai.toolcall", "execute_tool"),
    ("ai.generatetext", "invoke_workflow"),
    ("ai.streamtext", "invoke_workflow"),
    ("ai.generateobject", "invoke_workflow"),
    ("ai.streamobject", "invoke_workflow"),
    ("ai.embed", "embeddings"),
    ("ai.embedmany", "embeddings"),
)
# Provider spellings onto the GenAI ``gen_ai.provider.name`` well-known values.
PROVIDERS: tuple[tuple[str, str], ...] = (
    ("az.ai.openai", "azure.ai.openai"),
    ("azure", "azure.ai.openai"),
    ("azure-openai", "azure.ai.openai"),
    ("mistralai", "mistral_ai"),
    ("mistral", "mistral_ai"),
    ("amazon-bedrock", "aws.bedrock"),
    ("bedrock", "aws.bedrock"),
    ("google", "gcp.gemini"),
    ("google.generative-ai", "gcp.gemini"),
    ("google.vertex", "gcp.vertex_ai"),
    ("vertexai", "gcp.vertex_ai"),
    ("xai", "x_ai"),
    ("together_ai", "together_ai"),
)

_OP = (Lower(), Values(KIND_TO_OPERATION))
_PROVIDER = (Lower(), Values(PROVIDERS))
_LANGGRAPH_NODE = (JsonPath(("langgraph_node",)),)
# Vercel reports usage on the outer span too (the sum of its steps): counted on the calls only.
_VERCEL_CALL = When("ai.operationId", r"\.do(Generate|Stream|Embed)$")

GENAI, GENAI_OLD = "genai", "genai-deprecated"
OI, LLMETRY, LLMETRY_OLD = "openinference", "openllmetry", "openllmetry-legacy"
TRACELOOP, VERCEL, OMIUM = "traceloop", "vercel-ai", "omium"
# OpenLLMetry's instrumentation of the OpenAI Agents SDK (opentelemetry-instrumentation-openai-agents).
AGENTS = "openai-agents"

CONVENTIONS: tuple[Mapping, ...] = (
    # Agent: the span's own; spans without one inherit the nearest ancestor's (spans.py).
    Mapping("agent", "gen_ai.agent.name", GENAI),
    Mapping("agent", "agent.name", OI),
    Mapping("agent", "graph.node.name", OI),
    Mapping("agent", "metadata", OI, _LANGGRAPH_NODE),
    # OpenInference's @tracer.agent names the AGENT span after the function; the OpenAI Agents SDK
    # instrumentor's trace root is an AGENT span named after the workflow, not an agent.
    Mapping(
        "agent",
        "",
        OI,
        source="span_name",
        when=(
            When("openinference.span.kind", "^AGENT$"),
            When("", "openai_agents", negate=True, source="scope"),
        ),
    ),
    Mapping("agent", "traceloop.entity.name", TRACELOOP, when=When("traceloop.span.kind", "^agent$")),
    Mapping("agent", "traceloop.association.properties.langgraph_node", TRACELOOP),
    Mapping("agent", "gen_ai.agent.id", GENAI),
    Mapping("agent", "ai.telemetry.functionId", VERCEL),
    # "invoke_agent {name}" is the GenAI span name when the attribute was not set.
    Mapping("agent", "", GENAI, (Pattern(r"^invoke_agent (.+)$"),), source="span_name"),
    # Operation.
    Mapping("operation", "gen_ai.operation.name", GENAI, (Lower(), Values((("embedding", "embeddings"),)))),
    Mapping("operation", "openinference.span.kind", OI, _OP),
    Mapping("operation", "traceloop.span.kind", TRACELOOP, _OP),
    Mapping("operation", "llm.request.type", LLMETRY_OLD, _OP),
    Mapping("operation", "ai.operationId", VERCEL, (Lower(), Values(VERCEL_OPERATIONS))),
    Mapping("operation", "omium.step_kind", OMIUM, _OP),
    # Tool.
    Mapping("tool", "gen_ai.tool.name", GENAI),
    Mapping("tool", "tool.name", OI),
    Mapping("tool", "ai.toolCall.name", VERCEL),
    Mapping("tool", "traceloop.entity.name", TRACELOOP, when=When("traceloop.span.kind", "^tool$")),
    # Provider.
    Mapping("provider", "gen_ai.provider.name", GENAI, _PROVIDER),
    Mapping("provider", "gen_ai.system", GENAI_OLD, _PROVIDER),
    Mapping("provider", "llm.provider", OI, _PROVIDER),
    Mapping("provider", "llm.system", OI, _PROVIDER),
    Mapping("provider", "ai.model.provider", VERCEL, (Pattern(r"^([^.]+)"), *_PROVIDER)),
    # Model: the response's (what ran) before the request's.
    Mapping("model", "gen_ai.response.model", GENAI),
    Mapping("model", "gen_ai.request.model", GENAI),
    Mapping("model", "llm.response.model_name", OI),
    Mapping("model", "llm.model_name", OI),
    Mapping("model", "llm.request.model_name", OI),
    Mapping("model", "embedding.model_name", OI),
    Mapping("model", "ai.response.model", VERCEL),
    Mapping("model", "ai.model.id", VERCEL),
    # Session (spans without one take their trace's, spans.py).
    Mapping("session", "gen_ai.conversation.id", GENAI),
    Mapping("session", "session.id", OI),
    Mapping("session", "traceloop.association.properties.session_id", TRACELOOP),
    Mapping("session", "traceloop.association.properties.thread_id", TRACELOOP),
    Mapping("session", "ai.telemetry.metadata.sessionId", VERCEL),
    Mapping("session", "metadata", OI, (JsonPath(("thread_id",)),)),
    Mapping("session", "omium.session_id", OMIUM),
    # User.
    Mapping("user", "user.id", OI),
    Mapping("user", "enduser.id", GENAI),
    Mapping("user", "traceloop.association.properties.user_id", TRACELOOP),
    Mapping("user", "ai.telemetry.metadata.userId", VERCEL),
    Mapping("user", "gen_ai.user", LLMETRY),
    Mapping("user", "llm.user", LLMETRY_OLD),
    Mapping("user", "omium.user_id", OMIUM),
    # Tokens. GenAI's input count includes cached input; so do the others listed.
    Mapping("input_tokens", "gen_ai.usage.input_tokens", GENAI),
    Mapping("input_tokens", "gen_ai.usage.prompt_tokens", GENAI_OLD),
    Mapping("input_tokens", "llm.token_count.prompt", OI),
    Mapping("input_tokens", "llm.usage.prompt_tokens", LLMETRY_OLD),
    Mapping("input_tokens", "ai.usage.inputTokens", VERCEL, when=_VERCEL_CALL),
    Mapping("input_tokens", "ai.usage.promptTokens", VERCEL, when=_VERCEL_CALL),
    Mapping("output_tokens", "gen_ai.usage.output_tokens", GENAI),
    Mapping("output_tokens", "gen_ai.usage.completion_tokens", GENAI_OLD),
    Mapping("output_tokens", "llm.token_count.completion", OI),
    Mapping("output_tokens", "llm.usage.completion_tokens", LLMETRY_OLD),
    Mapping("output_tokens", "ai.usage.outputTokens", VERCEL, when=_VERCEL_CALL),
    Mapping("output_tokens", "ai.usage.completionTokens", VERCEL, when=_VERCEL_CALL),
    Mapping("cached_tokens", "gen_ai.usage.cache_read.input_tokens", GENAI),
    Mapping("cached_tokens", "gen_ai.usage.cache_read_input_tokens", LLMETRY),
    Mapping("cached_tokens", "llm.token_count.prompt_details.cache_read", OI),
    Mapping("cached_tokens", "ai.usage.cachedInputTokens", VERCEL, when=_VERCEL_CALL),
    Mapping("cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens", GENAI),
    Mapping("cache_write_tokens", "gen_ai.usage.cache_creation_input_tokens", LLMETRY),
    Mapping("cache_write_tokens", "llm.token_count.prompt_details.cache_write", OI),
    Mapping("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens", GENAI),
    Mapping("reasoning_tokens", "gen_ai.usage.reasoning_tokens", LLMETRY),
    Mapping("reasoning_tokens", "llm.usage.reasoning_tokens", LLMETRY_OLD),
    Mapping("reasoning_tokens", "llm.token_count.completion_details.reasoning", OI),
    Mapping("reasoning_tokens", "ai.usage.reasoningTokens", VERCEL, when=_VERCEL_CALL),
    # Content: what went in (prompt, tool arguments) and what came out (completion, tool result).
    Mapping("input_content", "gen_ai.input.messages", GENAI),
    Mapping("input_content", "gen_ai.tool.call.arguments", GENAI),
    Mapping(
        "input_content",
        "llm.input_messages.{n}.message.content",
        OI,
        (Indexed("llm.input_messages.{n}.message.role"),),
    ),
    Mapping("input_content", "input.value", OI),
    Mapping("input_content", "gen_ai.prompt.{n}.content", LLMETRY_OLD, (Indexed("gen_ai.prompt.{n}.role"),)),
    Mapping("input_content", "traceloop.entity.input", TRACELOOP),
    Mapping("input_content", "ai.prompt.messages", VERCEL),
    Mapping("input_content", "ai.prompt", VERCEL),
    Mapping("input_content", "ai.toolCall.args", VERCEL),
    Mapping("input_content", "ai.toolCall.input", VERCEL),
    Mapping("output_content", "gen_ai.output.messages", GENAI),
    Mapping("output_content", "gen_ai.tool.call.result", GENAI),
    Mapping(
        "output_content",
        "llm.output_messages.{n}.message.content",
        OI,
        (Indexed("llm.output_messages.{n}.message.role"),),
    ),
    Mapping("output_content", "output.value", OI),
    Mapping(
        "output_content",
        "gen_ai.completion.{n}.content",
        LLMETRY_OLD,
        (Indexed("gen_ai.completion.{n}.role"),),
    ),
    Mapping("output_content", "traceloop.entity.output", TRACELOOP),
    Mapping("output_content", "ai.response.text", VERCEL),
    Mapping("output_content", "ai.response.object", VERCEL),
    Mapping("output_content", "ai.toolCall.result", VERCEL),
    Mapping("output_content", "ai.toolCall.output", VERCEL),
    Mapping("tool_calls", "omium.tool_calls", OMIUM),
    Mapping("tool_calls", "ai.response.toolCalls", VERCEL),
    # The tools a model asked for, by name.
    Mapping(
        "tool_calls", "llm.output_messages.0.message.tool_calls.{n}.tool_call.function.name", OI, (Indexed(),)
    ),
    Mapping("tool_calls", "gen_ai.completion.0.tool_calls.{n}.name", LLMETRY_OLD, (Indexed(),)),
    Mapping("tool_calls", "llm.tools", OI),
    # Hand-offs: the graph node a span is, and the node (or agent) that handed off to it.
    Mapping("graph_node", "graph.node.id", OI),
    Mapping("handoff_from", "graph.node.parent_id", OI),
    Mapping("handoff_from", "gen_ai.agent.handoff_parent", AGENTS),
    # A hand-off span names its target: the target agent's next span is handed off by it.
    Mapping("handoff_to", "gen_ai.handoff.to_agent", AGENTS),
    Mapping("handoff_to", "omium.handoff.to", OMIUM),
    Mapping("handoff_to", "", OI, (Pattern(r"^handoff to (.+)$"),), source="span_name"),
)


# A log record's event name: the column newer exporters fill, else the attribute older SDKs set.
EVENT_NAME_SQL = "if(EventName != '', EventName, LogAttributes['event.name'])"


@dataclass(frozen=True)
class EventContent:
    """Where a GenAI event log record keeps content of its span: a key path in its JSON ``Body``,
    or one of its ``LogAttributes``; ``role`` prefixes it as flattened messages read."""

    event: str
    field: Literal["input_content", "output_content"]
    convention: str
    role: str = ""
    body: tuple[str, ...] = ()
    attribute: str = ""

    def sql(self) -> str:
        """The record's text ('' for another event), on ``otel_logs`` columns."""
        if self.attribute:
            value = f"LogAttributes[{_literal(self.attribute)}]"
        else:
            value = JsonPath(self.body).sql("Body")
        if self.role:
            value = f"if({value} != '', concat({_literal(self.role + ': ')}, {value}), '')"
        return f"if({EVENT_NAME_SQL} = {_literal(self.event)}, {value}, '')"


# GenAI events (semantic conventions 1.30-1.36, as opentelemetry-instrumentation-openai-v2 sends
# them by default and OpenLLMetry without legacy attributes), and the newer single event with
# the whole exchange. A conversation sent as events reads as one sent as span attributes.
_DETAILS = "gen_ai.client.inference.operation.details"
EVENT_CONTENT: tuple[EventContent, ...] = (
    EventContent("gen_ai.system.message", "input_content", GENAI_OLD, "system", ("content",)),
    EventContent("gen_ai.user.message", "input_content", GENAI_OLD, "user", ("content",)),
    EventContent("gen_ai.assistant.message", "input_content", GENAI_OLD, "assistant", ("content",)),
    EventContent("gen_ai.assistant.message", "input_content", GENAI_OLD, "assistant", ("tool_calls",)),
    EventContent("gen_ai.tool.message", "input_content", GENAI_OLD, "tool", ("content",)),
    EventContent("gen_ai.choice", "output_content", GENAI_OLD, "assistant", ("message", "content")),
    EventContent("gen_ai.choice", "output_content", GENAI_OLD, "assistant", ("message", "tool_calls")),
    # OpenLLMetry's events path puts a choice's tool calls beside its message.
    EventContent("gen_ai.choice", "output_content", LLMETRY, "assistant", ("tool_calls",)),
    EventContent(_DETAILS, "input_content", GENAI, attribute="gen_ai.input.messages"),
    EventContent(_DETAILS, "output_content", GENAI, attribute="gen_ai.output.messages"),
)



@dataclass(frozen=True)
class Conventions:
    """A set of mapping rows and the SQL it generates."""

    rows: tuple[Mapping, ...] = field(default=CONVENTIONS)
    events: tuple[EventContent, ...] = field(default=EVENT_CONTENT)

    def of(self, name: str) -> tuple[Mapping, ...]:
        """The rows of field ``name``, in order."""
        return tuple(r for r in self.rows if r.field == name)

    def field_sql(self, name: str) -> str:
        """The expression of field ``name``: its rows' values, first non-empty wins ('' or 0)."""
        parts = [f"nullIf({r.sql()}, '')" for r in self.of(name)]
        text = f"coalesce({', '.join(parts)}, '')" if parts else "''"
        if name in TOKEN_FIELDS:
            return f"toUInt64OrZero({text})"
        return text

    def event_filter_sql(self) -> str:
        """A condition on ``otel_logs`` rows: the record is one of the events any row reads."""
        names = ", ".join(_literal(n) for n in sorted({e.event for e in self.events})) or "''"
        return f"{EVENT_NAME_SQL} IN ({names})"

    def event_sql(self, name: str) -> str:
        """The text an event log record gives field ``name`` (first non-empty of its rows)."""
        parts = [f"nullIf({e.sql()}, '')" for e in self.events if e.field == name]
        return f"coalesce({', '.join(parts)}, '')" if parts else "''"

    def select_sql(self, names: tuple[str, ...] = TEXT_FIELDS + TOKEN_FIELDS, *, suffix: str = "") -> str:
        """``expr AS name{suffix}`` for every field, comma-separated (a SELECT list fragment)."""
        return ",\n    ".join(f"{self.field_sql(n)} AS {n}{suffix}" for n in names)


DEFAULT = Conventions()


def field_sql(name: str) -> str:
    """The expression of field ``name`` under the default :data:`CONVENTIONS`."""
    return DEFAULT.field_sql(name)


__all__ = [
    "CONVENTIONS",
    "DEFAULT",
    "EVENT_CONTENT",
    "GENAI_OPERATIONS",
    "TEXT_FIELDS",
    "TOKEN_FIELDS",
    "Conventions",
    "EventContent",
    "Indexed",
    "JsonPath",
    "Lower",
    "Mapping",
    "Pattern",
    "Values",
    "When",
    "field_sql",
]
