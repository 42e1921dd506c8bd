"""What the trace and session pages show, computed from spans: the span tree in display order, the
waterfall, a span's conversation, its tool call and its cost.

A conversation is read from whichever convention the span carries, the first that yields messages:
GenAI's JSON ``gen_ai.system_instructions`` / ``gen_ai.input.messages`` / ``gen_ai.output.messages``
(role and typed parts), OpenInference's flattened ``llm.input_messages.N.message.*`` and
``llm.output_messages.N.message.*``, the legacy ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``,
and the span's GenAI event log records (``gen_ai.user.message``, ``gen_ai.choice``... or one
``gen_ai.client.inference.operation.details`` record). The per-span fields (agent, operation,
model, tokens, tool input and output) come resolved by :mod:`omium.conventions` in the query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import altair as alt
import polars as pl

from omium.pipelines import prices


@dataclass(frozen=True)
class Message:
    """One turn of a conversation: who said it, what they said, the tools they called."""

    role: str
    text: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()  # (tool name, arguments as given)
    output: bool = False  # the span's answer, not its prompt


def local(moment: datetime) -> str:
    """A time as people read it: this machine's local time, to the millisecond."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def attributes_of(value: Any) -> dict[str, str]:
    """A span's attribute map as a dict (Arrow maps may arrive as key/value pairs)."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        pairs: dict[str, str] = {}
        for item in value:
            if isinstance(item, Mapping) and "key" in item:
                pairs[str(item["key"])] = str(item["value"])
            elif isinstance(item, tuple | list) and len(item) == 2:
                pairs[str(item[0])] = str(item[1])
        return pairs
    return {}


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content as a list of typed parts
        return "\n".join(_text(p.get("text", p.get("content")) if isinstance(p, dict) else p) for p in value)
    return json.dumps(value, ensure_ascii=False)


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _genai_message(item: Any, output: bool) -> Message | None:
    """A GenAI JSON message: ``{"role", "parts": [{"type": "text"|"tool_call"|...}]}``."""
    if not isinstance(item, dict):
        return None
    texts: list[str] = []
    calls: list[tuple[str, str]] = []
    role = str(item.get("role") or ("assistant" if output else "user"))
    for part in item.get("parts") or []:
        kind = part.get("type", "text") if isinstance(part, dict) else "text"
        if kind == "tool_call":
            calls.append((str(part.get("name", "")), _arguments(part.get("arguments", ""))))
        elif kind == "tool_call_response":
            role = "tool"
            texts.append(_text(part.get("response", part.get("result", ""))))
        else:
            texts.append(_text(part.get("content", part.get("text")) if isinstance(part, dict) else part))
    if "content" in item and not item.get("parts"):  # the older {"role", "content"} shape
        texts.append(_text(item["content"]))
    for call in item.get("tool_calls") or []:
        function = call.get("function", call) if isinstance(call, dict) else {}
        calls.append((str(function.get("name", "")), _arguments(function.get("arguments", ""))))
    return Message(role, "\n".join(t for t in texts if t), tuple(calls), output)


def _genai(attributes: Mapping[str, str]) -> list[Message]:
    messages: list[Message] = []
    system = _loads(attributes.get("gen_ai.system_instructions", ""))
    if system:
        messages.append(Message("system", _text(system)))
    for key, output in (("gen_ai.input.messages", False), ("gen_ai.output.messages", True)):
        items = _loads(attributes.get(key, ""))
        for item in items if isinstance(items, list) else []:
            found = _genai_message(item, output)
            if found is not None:
                messages.append(found)
    return messages


def _indexed(attributes: Mapping[str, str], prefix: str) -> dict[int, dict[str, str]]:
    """``prefix.N.rest`` keys grouped by N (in index order), ``rest`` keeping its own dots."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.(.+)$")
    grouped: dict[int, dict[str, str]] = {}
    for key, value in attributes.items():
        found = pattern.match(key)
        if found:
            grouped.setdefault(int(found.group(1)), {})[found.group(2)] = value
    return dict(sorted(grouped.items()))


def _flat(attributes: Mapping[str, str], prefix: str, output: bool, *, openinference: bool) -> list[Message]:
    """Flattened messages: OpenInference (``message.role``...) or legacy GenAI (``role``...)."""
    head = "message." if openinference else ""
    messages = []
    for fields in _indexed(attributes, prefix).values():
        text = fields.get(head + "content", "")
        if not text and openinference:
            parts = _indexed(fields, "message.contents")
            text = "\n".join(p.get("message_content.text", "") for p in parts.values())
        calls = []
        call_prefix = "message.tool_calls" if openinference else "tool_calls"
        for call in _indexed(fields, call_prefix).values():
            name = call.get("tool_call.function.name", call.get("name", ""))
            arguments = call.get("tool_call.function.arguments", call.get("arguments", ""))
            calls.append((name, arguments))
        role = fields.get(head + "role", "assistant" if output else "user")
        messages.append(Message(role, text, tuple(calls), output))
    return messages


# GenAI events (semantic conventions 1.30-1.36) onto roles; the choice is the answer.
_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
    "gen_ai.choice": "assistant",
}


def _events(records: Iterable[Any]) -> list[Message]:
    messages: list[Message] = []
    rows = sorted(tuple(r.values()) if isinstance(r, Mapping) else tuple(r) for r in records or [])
    for _ts, name, body, inputs, outputs in rows:
        if inputs or outputs:  # gen_ai.client.inference.operation.details: the whole exchange
            messages += _genai({"gen_ai.input.messages": inputs, "gen_ai.output.messages": outputs})
            continue
        role = _EVENT_ROLES.get(str(name))
        if role is None:
            continue
        payload = _loads(body)
        payload = payload if isinstance(payload, dict) else {"content": body}
        if name == "gen_ai.choice":
            payload = payload.get("message") or payload
        found = _genai_message({**payload, "role": role}, name == "gen_ai.choice")
        if found is not None:
            messages.append(found)
    return messages


def conversation(attributes: Mapping[str, str], logs: Iterable[Any] = ()) -> list[Message]:
    """The span's messages, prompt then answer, from the first convention that carries any."""
    readers = (
        lambda: _genai(attributes),
        lambda: (
            _flat(attributes, "llm.input_messages", False, openinference=True)
            + _flat(attributes, "llm.output_messages", True, openinference=True)
        ),
        lambda: (
            _flat(attributes, "gen_ai.prompt", False, openinference=False)
            + _flat(attributes, "gen_ai.completion", True, openinference=False)
        ),
        lambda: _events(logs),
    )
    for read in readers:
        found = [m for m in read() if m.text or m.tool_calls]
        if found:
            return found
    return []


def span_tree(spans: pl.DataFrame) -> pl.DataFrame:
    """The spans in tree order (each parent before its children, siblings by start) with their
    ``depth``; spans whose parent is not in the frame are roots."""
    if not spans.height:
        return spans.with_columns(pl.lit(0).alias("depth"))
    ids = set(spans["span_id"].to_list())
    children: dict[str, list[int]] = {}
    roots: list[int] = []
    for index, parent in enumerate(spans["parent_span_id"].to_list()):
        (children.setdefault(parent, []) if parent in ids else roots).append(index)
    span_ids = spans["span_id"].to_list()
    order: list[int] = []
    depth: dict[int, int] = {}
    stack = [(i, 0) for i in reversed(roots)]
    while stack:  # iterative: a deep trace must not hit Python's recursion limit
        index, level = stack.pop()
        order.append(index)
        depth[index] = level
        stack += [(c, level + 1) for c in reversed(children.get(span_ids[index], []))]
    return spans[order].with_columns(pl.Series("depth", [depth[i] for i in order], dtype=pl.Int32))


# One mark per level (a dot and no-break spaces: chart labels trim plain spaces, and bare ones
# are too narrow to read as depth).
_INDENT = "\u00b7\u00a0\u00a0"


def label(row: Mapping[str, Any]) -> str:
    """A span's one-line name in the tree: indented by depth, with its duration and errors."""
    mark = " ✗" if row["error"] else ""
    indent = _INDENT * int(row["depth"])
    return f"{indent}{row['name']} · {row['duration_ms']:,.1f} ms{mark}"


_LABELS = 380  # pixels of span names beside the waterfall


def waterfall(tree: pl.DataFrame, limit: int = 100, offset: int = 0) -> alt.Chart | alt.LayerChart:
    """Bars from each span's start to its end, one row per span in tree order (``limit`` of them
    from ``offset``), and a mark at each span event (an exception in red), in local time."""
    shown = tree.slice(offset, limit)
    rows, marks = [], []
    for r in shown.iter_rows(named=True):
        name = f"{label(r)} [{r['span_id'][:6]}]"
        end = r["started"] + timedelta(milliseconds=r["duration_ms"])
        rows.append(
            {
                "span": name,
                "start": r["started"].astimezone().replace(tzinfo=None),
                "end": end.astimezone().replace(tzinfo=None),
                "status": "error" if r["error"] else "ok",
                "operation": r["operation"] or "span",
                "agent": r["agent"],
                "ms": round(r["duration_ms"], 2),
            }
        )
        for event in r.get("events") or []:
            ts, event_name, attributes = tuple(event.values()) if isinstance(event, Mapping) else tuple(event)
            found = attributes_of(attributes)
            marks.append(
                {
                    "span": name,
                    "at": ts.astimezone().replace(tzinfo=None),
                    "event": event_name,
                    "message": found.get("exception.message", ""),
                    "status": "error" if event_name == "exception" else "ok",
                }
            )
    frame = pl.DataFrame(rows).to_pandas() if rows else pl.DataFrame({"span": []}).to_pandas()
    colour = alt.Color("status:N", scale=alt.Scale(domain=["ok", "error"], range=["#1565c0", "#c62828"]))
    # Left-aligned labels, so a child's indent shows under its parent's name.
    y = alt.Y(
        "span:N",
        title="",
        sort=None,
        axis=alt.Axis(labelAlign="left", labelPadding=_LABELS, labelLimit=_LABELS - 10),
    )
    bars = (
        alt.Chart(frame, title="Spans (local time)")
        .mark_bar()
        .encode(
            x=alt.X("start:T", title="", axis=alt.Axis(format="%H:%M:%S.%L")),
            x2="end:T",
            y=y,
            color=colour,
            tooltip=["span", "operation", "agent", "ms", "status"],
        )
        .properties(height=alt.Step(20))
    )
    if not marks:
        return bars
    points = (
        alt.Chart(pl.DataFrame(marks).to_pandas())
        .mark_point(shape="diamond", filled=True, size=70, stroke="#212121")
        .encode(x="at:T", y=alt.Y("span:N", sort=None), color=colour, tooltip=["event", "message", "at:T"])
    )
    return alt.LayerChart(layer=[bars, points])


def span_costs(spans: pl.DataFrame) -> list[float | None]:
    """Each span's cost in USD from its tokens, priced as the pipelines price it
    (:data:`omium.pipelines.prices.COST_SQL`'s rule); None where the model has no price or the
    span reports no tokens."""
    pairs = sorted({(p, m) for p, m in zip(spans["provider"], spans["model"], strict=True) if m})
    table = prices.table(pairs)
    rates = {key: i for i, key in enumerate(table.keys)}
    costs: list[float | None] = []
    for row in spans.iter_rows(named=True):
        index = rates.get(prices.price_key(row["provider"], row["model"]))
        tokens_in, tokens_out = int(row["input_tokens"]), int(row["output_tokens"])
        if index is None or tokens_in + tokens_out == 0:
            costs.append(None)
            continue
        tier = max(1, sum(1 for start in table.starts[index] if tokens_in > start)) - 1
        cached, written = int(row["cached_tokens"]), int(row["cache_write_tokens"])
        costs.append(
            max(tokens_in - cached - written, 0) * table.input[index][tier]
            + cached * table.cached[index][tier]
            + written * table.cache_write[index][tier]
            + tokens_out * table.output[index][tier]
        )
    return costs


def events_table(events: Iterable[Any]) -> list[dict[str, Any]]:
    """A span's events (exceptions, annotations) as rows with local times."""
    rows = []
    for event in events or []:
        ts, name, attributes = tuple(event.values()) if isinstance(event, Mapping) else tuple(event)
        found = attributes_of(attributes)
        rows.append(
            {
                "time": local(ts),
                "event": name,
                "message": found.get("exception.message", ""),
                "attributes": json.dumps(found, ensure_ascii=False),
            }
        )
    return rows


__all__ = [
    "Message",
    "attributes_of",
    "conversation",
    "events_table",
    "label",
    "local",
    "span_costs",
    "span_tree",
    "waterfall",
]
