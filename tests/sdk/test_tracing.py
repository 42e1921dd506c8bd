"""Runs are traced: GenAI-convention spans with omium.* attributes, in memory and in the warehouse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import omium
from omium import Checkpoint, Transaction, agent, tool, workflow
from omium.sdk import tracing
from omium.sdk.consensus import Consensus
from omium.sdk.store import MemoryStore
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.store import EmbeddedStore


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    omium.init(store=MemoryStore(), tracer_provider=provider)
    yield exporter
    tracing.configure(None)


failing = {"on": True}


@tool
def lookup(customer: str) -> dict[str, str]:
    return {"name": customer}


@tool
def send(customer: str) -> str:
    if failing["on"]:
        raise ConnectionError("smtp down")
    return "sent"


@agent
def kyc(consensus: Consensus, customer: str) -> None:
    with Checkpoint("kyc_done"):
        consensus.send("mailer", lookup(customer))


@agent
def mailer(consensus: Consensus) -> str:
    record = consensus.get("kyc")
    with Transaction("delivery"):
        return send(record["name"])


@workflow
def onboarding(customer: str) -> str:
    consensus = Consensus()
    kyc(consensus, customer)
    return mailer(consensus)


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_run_spans_follow_the_conventions(spans: InMemorySpanExporter) -> None:
    failing["on"] = False
    omium.run(onboarding, "jane", run_id="traced")
    found = _by_name(spans)
    root = found["invoke_workflow onboarding"][0]
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"  # type: ignore[attr-defined]
    assert root.attributes["omium.run_id"] == "traced"  # type: ignore[attr-defined]
    agent_span = found["invoke_agent kyc"][0]
    assert agent_span.parent.span_id == root.context.span_id  # type: ignore[attr-defined]
    tool_span = found["execute_tool lookup"][0]
    assert tool_span.attributes["gen_ai.tool.name"] == "lookup"  # type: ignore[attr-defined]
    assert tool_span.attributes["gen_ai.agent.name"] == "kyc"  # type: ignore[attr-defined]
    assert tool_span.attributes["omium.step_index"] == 0  # type: ignore[attr-defined]
    assert found["checkpoint kyc_done"][0].attributes["omium.checkpoint"] == "kyc_done"  # type: ignore[attr-defined]
    assert found["handoff_send kyc->mailer"][0].attributes["omium.handoff.verdict"] == "sent"  # type: ignore[attr-defined]
    assert found["handoff_receive kyc->mailer"][0].attributes["omium.handoff.verdict"] == "acked"  # type: ignore[attr-defined]
    # The consumer's span links to the producer's.
    producer = found["handoff_send kyc->mailer"][0].context  # type: ignore[attr-defined]
    (link,) = found["handoff_receive kyc->mailer"][0].links  # type: ignore[attr-defined]
    assert (link.context.trace_id, link.context.span_id) == (producer.trace_id, producer.span_id)
    assert link.attributes["omium.handoff.channel"] == "kyc->mailer"
    transaction = found["transaction delivery"][0]
    assert transaction.attributes["omium.transaction.outcome"] == "committed"  # type: ignore[attr-defined]


def test_failures_and_replays_are_visible(spans: InMemorySpanExporter) -> None:
    failing["on"] = True
    with pytest.raises(ConnectionError):
        omium.run(onboarding, "ann", run_id="retry-me")
    found = _by_name(spans)
    failed = found["execute_tool send"][0]
    assert failed.status.status_code.name == "ERROR"  # type: ignore[attr-defined]
    assert failed.attributes["error.type"] == "ConnectionError"  # type: ignore[attr-defined]
    assert found["transaction delivery"][0].attributes["omium.transaction.outcome"] == "rolled_back"  # type: ignore[attr-defined]
    spans.clear()
    failing["on"] = False
    omium.run(onboarding, "ann", run_id="retry-me")
    found = _by_name(spans)
    assert found["execute_tool lookup"][0].attributes["omium.replayed"] is True  # type: ignore[attr-defined]
    assert "omium.replayed" not in found["execute_tool send"][0].attributes  # type: ignore[attr-defined]


def test_embedded_runs_write_their_spans_to_otel_traces(
    warehouse: ClickHouseWarehouse, control_store: EmbeddedStore
) -> None:
    failing["on"] = False
    omium.init(store=control_store)
    try:
        omium.run(onboarding, "zoe", run_id="in-warehouse")
        tracing._provider.force_flush()  # type: ignore[union-attr]
    finally:
        tracing._provider.shutdown()  # type: ignore[union-attr]
        tracing.configure(None)
    rows = warehouse.query_rows(
        "SELECT SpanName, SpanAttributes['gen_ai.agent.name'] AS agent FROM otel_traces FINAL "
        "WHERE RunId = {r:String} ORDER BY Timestamp",
        {"r": "in-warehouse"},
    )
    names = [r["SpanName"] for r in rows]
    assert names[0] == "invoke_workflow onboarding"
    assert {"invoke_agent kyc", "execute_tool lookup", "transaction delivery", "execute_tool send"} <= set(
        names
    )
    assert len({r["SpanName"] for r in rows}) == len(names)  # each once


def test_with_no_provider_a_span_is_a_no_op_and_a_provider_given_later_records() -> None:
    """The recorder's hot path makes no span where nothing records one (no provider given, none
    set globally); the check is made per span, so a provider configured later records at once."""
    tracing.configure(None)
    try:
        with tracing.span("step lookup", {"omium.run_id": "r"}) as current:
            assert not current.is_recording()
            current.set_attribute("omium.attempts", 1)  # callers may still annotate it
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracing.configure(provider)
        with pytest.raises(ValueError), tracing.span("step lookup", {"omium.run_id": "r", "empty": ""}):
            raise ValueError("boom")
        (span,) = exporter.get_finished_spans()
        assert span.name == "step lookup"
        assert dict(span.attributes or {}) == {"omium.run_id": "r", "error.type": "ValueError"}
    finally:
        tracing.configure(None)
