"""Realistic multi-agent OTLP traffic, for the demo, tests and the ingest benchmark.

Each trace is one run of the customer-onboarding workflow (KYC -> credit scoring -> terms ->
email): a workflow span, agent spans, LLM calls with GenAI-convention attributes and message
content, and tool calls, some of which fail.
"""

from __future__ import annotations

import json
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

AGENTS = ("kyc_verification_agent", "credit_score_agent", "terms_generator_agent", "email_sender_agent")
TOOLS = ("lookup_customer", "credit_bureau", "rate_table", "send_email")
MODELS = ("gpt-4o", "claude-sonnet-4", "llama-3.1-70b")


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(
    rng: random.Random,
    trace_id: bytes,
    parent: bytes,
    name: str,
    start: int,
    duration: int,
    attrs: dict[str, str | int | float | bool],
    error: str | None = None,
) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=rng.randbytes(8),
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL if not name.startswith("chat") else Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=[_kv(k, v) for k, v in attrs.items()],
    )
    if error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        span.events.add(
            time_unix_nano=start + duration,
            name="exception",
            attributes=[_kv("exception.type", "ToolError"), _kv("exception.message", error)],
        )
    else:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_OK))
    return span


def trace_spans(rng: random.Random, run_id: str, start: int, error_rate: float = 0.05) -> list[Span]:
    """The spans of one onboarding run: 1 workflow span and, per agent, an agent, LLM and tool span."""
    trace_id = rng.randbytes(16)
    spans: list[Span] = []
    root = _span(
        rng,
        trace_id,
        b"",
        "invoke_workflow customer_onboarding",
        start,
        4_000_000_000,
        {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": "customer_onboarding",
            "omium.run_id": run_id,
            "omium.step_kind": "workflow",
        },
    )
    spans.append(root)
    t = start
    for index, agent in enumerate(AGENTS):
        agent_span = _span(
            rng,
            trace_id,
            root.span_id,
            f"invoke_agent {agent}",
            t,
            900_000_000,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.agent.id": f"{agent}-v1",
                "omium.run_id": run_id,
                "omium.step_index": index * 3,
                "omium.step_kind": "agent",
                "omium.checkpoint": f"{agent}_done",
            },
        )
        spans.append(agent_span)
        model = rng.choice(MODELS)
        prompt = json.dumps(
            [
                {
                    "role": "user",
                    "parts": [
                        {
                            "type": "text",
                            "content": f"Customer {run_id}: evaluate step {index} "
                            + "x" * rng.randint(100, 400),
                        }
                    ],
                }
            ]
        )
        answer = json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "text", "content": "APR 4.9%, term 36 months " + "y" * rng.randint(50, 300)}
                    ],
                }
            ]
        )
        spans.append(
            _span(
                rng,
                trace_id,
                agent_span.span_id,
                f"chat {model}",
                t + 1_000_000,
                rng.randint(200, 800) * 1_000_000,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": model,
                    "gen_ai.usage.input_tokens": rng.randint(200, 3000),
                    "gen_ai.usage.output_tokens": rng.randint(20, 600),
                    "gen_ai.agent.name": agent,
                    "gen_ai.input.messages": prompt,
                    "gen_ai.output.messages": answer,
                    "omium.run_id": run_id,
                    "omium.step_index": index * 3 + 1,
                    "omium.step_kind": "llm",
                    "gen_ai.request.temperature": 0.2,
                },
            )
        )
        failed = rng.random() < error_rate
        tool = TOOLS[index]
        spans.append(
            _span(
                rng,
                trace_id,
                agent_span.span_id,
                f"execute_tool {tool}",
                t + 820_000_000,
                rng.randint(5, 60) * 1_000_000,
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": rng.randbytes(6).hex(),
                    "gen_ai.agent.name": agent,
                    "omium.run_id": run_id,
                    "omium.step_index": index * 3 + 2,
                    "omium.step_kind": "tool",
                },
                error=f"{tool} timed out" if failed else None,
            )
        )
        t += 950_000_000
    return spans


def export_request(spans: list[Span], service: str = "company-x-onboarding") -> ExportTraceServiceRequest:
    """Wrap spans in one resource / scope, as an SDK's batch exporter would."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [
            _kv("service.name", service),
            _kv("service.version", "1.4.2"),
            _kv("telemetry.sdk.language", "python"),
            _kv("deployment.environment", "production"),
        ]
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "omium"
    scope_spans.scope.version = "0.1.0"
    scope_spans.spans.extend(spans)
    return request


def requests(
    count: int, spans_per_request: int = 1000, seed: int = 7, start_ns: int | None = None
) -> list[bytes]:
    """``count`` serialized ExportTraceServiceRequests of ``spans_per_request`` agent spans each."""
    rng = random.Random(seed)
    start = start_ns if start_ns is not None else time.time_ns() - 3_600_000_000_000
    out: list[bytes] = []
    run = 0
    for _ in range(count):
        spans: list[Span] = []
        while len(spans) < spans_per_request:
            spans.extend(trace_spans(rng, f"run-{seed}-{run:07d}", start + run * 10_000_000))
            run += 1
        out.append(export_request(spans[:spans_per_request]).SerializeToString())
    return out


__all__ = ["export_request", "requests", "trace_spans"]
