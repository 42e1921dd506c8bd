"""Per-trace facts kept at write time (omium_trace_summaries) and the console's reads of them: the
facts of a trace written in several inserts, a re-sent span counted once, the backfill of spans
written before the view existed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.collector import sample
from omium.collector.server import RunningServer
from omium.pipelines import prices
from omium.warehouse import ClickHouseWarehouse, trace_summaries
from omium.warehouse import console_queries as queries

COLUMNS = (
    "Timestamp, TraceId, SpanId, ParentSpanId, SpanName, ServiceName, ScopeName, SpanAttributes, Duration, "
    "StatusCode, StatusMessage"
)
FACTS = """
SELECT TraceId, min(Start) AS start, max(End) AS end, max(RunId) AS run, max(Session) AS session,
       max(User) AS user, arraySort(groupUniqArrayArray(Agents)) AS agents,
       arraySort(groupUniqArrayArray(Models)) AS models, max(HasError) AS has_error,
       min(FirstError).2 AS first_error, max(HasRoot) AS has_root, max(RootFailed) AS root_failed,
       min(Root).2 AS root, max(SourceRank) AS source_rank
FROM omium_trace_summaries GROUP BY TraceId ORDER BY TraceId
"""
PB = {"content-type": "application/x-protobuf"}
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def _at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert(warehouse: ClickHouseWarehouse, *spans: tuple[object, ...]) -> None:
    """One INSERT (one block, as one OTLP request is) of spans given as
    (seconds, trace, span, parent, name, attributes, duration_ns, status, message)."""
    values = ", ".join(
        f"('{_at(float(str(s)))}', '{t}', '{i}', '{p}', '{n}', 'agents', '{scope}', {a}, {d}, '{c}', '{m}')"
        for s, t, i, p, n, a, d, c, m, scope in spans
    )
    warehouse.command(f"INSERT INTO otel_traces ({COLUMNS}) VALUES {values}")


LLM = (
    "map('gen_ai.agent.name', 'writer', 'gen_ai.provider.name', 'openai', 'gen_ai.request.model', 'gpt-4o', "
    "'gen_ai.usage.input_tokens', '100', 'gen_ai.usage.output_tokens', '20', 'session.id', 's1')"
)
ROOT = (
    "0",
    "t1",
    "r1",
    "",
    "invoke_agent planner",
    "map('gen_ai.agent.name', 'planner', 'session.id', 's1')",
    3_000_000_000,
    "Ok",
    "",
    "openinference",
)
CALL = ("1", "t1", "c1", "r1", "chat gpt-4o", LLM, 1_000_000_000, "Unset", "", "openinference")
TOOL = (
    "2",
    "t1",
    "x1",
    "r1",
    "execute_tool search",
    "map('gen_ai.agent.name', 'writer')",
    500_000_000,
    "Error",
    "search timed out",
    "openinference",
)


def test_a_trace_written_in_several_inserts_has_one_set_of_facts(warehouse: ClickHouseWarehouse) -> None:
    insert(warehouse, CALL, TOOL)  # the children arrive first, as a batch processor may send them
    insert(warehouse, ROOT)
    (facts,) = warehouse.query_rows(FACTS)
    assert facts["TraceId"] == "t1" and facts["session"] == "s1" and facts["run"] == ""
    assert facts["agents"] == ["planner", "writer"] and facts["models"] == ["openai|gpt-4o"]
    assert (facts["has_error"], facts["first_error"]) == (1, "search timed out")
    assert (facts["has_root"], facts["root_failed"], facts["root"]) == (1, 0, "invoke_agent planner")
    assert facts["source_rank"] == 0  # an OTLP client's spans
    assert facts["start"].second == NOW.second and (facts["end"] - facts["start"]).total_seconds() == 3


def test_a_re_sent_span_changes_no_fact_and_counts_once_in_the_lists(warehouse: ClickHouseWarehouse) -> None:
    insert(warehouse, ROOT, CALL, TOOL)
    before = warehouse.query_rows(FACTS)
    insert(warehouse, CALL)  # at-least-once delivery: the same span in another request
    assert warehouse.query_rows(FACTS) == before
    window = {"since": NOW - timedelta(hours=1), "until": NOW + timedelta(hours=1)}
    table = prices.table(queries.trace_models(warehouse, **window))
    assert table.keys == ["openai|gpt-4o"]
    runs, total = queries.run_list(warehouse, price_table=table, **window)
    assert total == 1
    (run,) = runs.to_dicts()
    assert (run["run_id"], run["grouped_by"], run["status"]) == ("s1", "session", "completed")
    assert (run["input_tokens"], run["output_tokens"], run["spans"], run["error_spans"]) == (100, 20, 3, 1)
    assert run["cost_usd"] > 0 and run["error"] == "search timed out"
    (trace,) = queries.session_traces(warehouse, "s1", price_table=table, **window).to_dicts()
    assert (trace["trace_id"], trace["input_tokens"], trace["spans"]) == ("t1", 100, 3)
    assert trace["cost_usd"] == run["cost_usd"]


def test_filters_read_the_facts(warehouse: ClickHouseWarehouse) -> None:
    insert(warehouse, CALL, TOOL)
    insert(warehouse, ROOT)  # a trace of two inserts, its facts in two rows until they merge
    other = (
        "5",
        "t2",
        "r2",
        "",
        "invoke_agent billing",
        "map('gen_ai.agent.name', 'billing')",
        1_000,
        "Error",
        "card declined",
        "openllmetry",
    )
    insert(warehouse, other)
    window = {"since": NOW - timedelta(hours=1), "until": NOW + timedelta(hours=1)}
    table = prices.table([])

    def ids(**filters: object) -> list[str]:
        runs, total = queries.run_list(warehouse, price_table=table, **window, **filters)  # type: ignore[arg-type]
        assert total == runs.height
        return runs["run_id"].to_list()

    assert ids() == ["t2", "s1"]  # newest first; t2 has no session: a run of its own trace
    assert ids(status="failed") == ["t2"] and ids(agent="writer") == ["s1"]
    assert ids(text="declined") == ["t2"] and ids(text="planner") == ["s1"]
    assert ids(errors_only=True) == ["t2", "s1"] and ids(name="invoke_agent billing") == ["t2"]
    # Read the same once the background merge has folded each trace's rows into one.
    before = queries.run_list(warehouse, price_table=table, **window)[0]
    warehouse.command("OPTIMIZE TABLE omium_trace_summaries FINAL")
    assert warehouse.scalar("SELECT count() FROM omium_trace_summaries") == 2
    assert queries.run_list(warehouse, price_table=table, **window)[0].equals(before)
    later = {"since": NOW + timedelta(seconds=4), "until": NOW + timedelta(hours=1)}
    assert queries.run_list(warehouse, price_table=table, **later)[0]["run_id"].to_list() == ["t2"]


def test_spans_written_before_the_view_are_backfilled_idempotently(warehouse: ClickHouseWarehouse) -> None:
    warehouse.command("DROP VIEW omium_trace_summaries_mv")
    insert(warehouse, ROOT, CALL, TOOL)
    assert warehouse.scalar("SELECT count() FROM omium_trace_summaries") == 0
    warehouse.command(trace_summaries.VIEW)
    warehouse.command(trace_summaries.BACKFILL)
    once = warehouse.query_rows(FACTS)
    warehouse.command(trace_summaries.BACKFILL)  # a migration run again after an interruption
    insert(warehouse, TOOL)  # and the view feeds what comes next
    assert warehouse.query_rows(FACTS) == once
    assert once[0]["agents"] == ["planner", "writer"]


def test_concurrent_overlapping_requests_through_the_server_give_the_facts_of_the_stored_spans(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    """Open world: four clients at once send slices of the same traces through the real OTLP/HTTP
    server, every span in two different requests (at-least-once delivery, a batch split between
    exports). The facts kept at write time equal the facts of the spans as stored (FINAL), and the
    run list counts each span once."""
    whole = ExportTraceServiceRequest.FromString(sample.requests(1, 400, seed=91)[0])
    spans = list(whole.resource_spans[0].scope_spans[0].spans)
    bodies = []
    for lo, hi in ((0, 150), (100, 250), (200, 400), (0, 50), (300, 400), (50, 120), (240, 320)):
        part = ExportTraceServiceRequest()
        part.CopyFrom(whole)
        del part.resource_spans[0].scope_spans[0].spans[:]
        part.resource_spans[0].scope_spans[0].spans.extend(spans[lo:hi])
        bodies.append(part.SerializeToString())
    with ThreadPoolExecutor(4) as pool:
        codes = list(
            pool.map(
                lambda b: httpx.post(f"{server.url}/v1/traces", content=b, headers=PB).status_code, bodies
            )
        )
    assert codes == [200] * len(bodies)
    assert warehouse.scalar("SELECT count() FROM otel_traces FINAL") == 400
    columns = (
        "TraceId, Start, End, RunId, Session, User, arraySort(Agents) AS agents, arraySort(Models) AS models, "
        "HasError, FirstError, HasRoot, RootFailed, Root, SourceRank"
    )
    stored = trace_summaries.BACKFILL.removeprefix("INSERT INTO omium_trace_summaries").replace(
        "FROM otel_traces", "FROM otel_traces FINAL"
    )
    expected = warehouse.query_rows(f"SELECT {columns} FROM ({stored}) ORDER BY TraceId")
    kept = warehouse.query_rows(
        f"SELECT {columns} FROM (SELECT TraceId, min(Start) AS Start, max(End) AS End, max(RunId) AS RunId, "
        "max(Session) AS Session, max(User) AS User, groupUniqArrayArray(Agents) AS Agents, "
        "groupUniqArrayArray(Models) AS Models, max(HasError) AS HasError, min(FirstError) AS FirstError, "
        "max(HasRoot) AS HasRoot, max(RootFailed) AS RootFailed, min(Root) AS Root, max(SourceRank) AS SourceRank "
        "FROM omium_trace_summaries GROUP BY TraceId) ORDER BY TraceId"
    )
    assert len(expected) > 5 and kept == expected
    now = datetime.now(UTC)
    window = {"since": now - timedelta(days=1), "until": now + timedelta(hours=1)}
    table = prices.table(queries.trace_models(warehouse, **window))
    runs, total = queries.run_list(warehouse, price_table=table, limit=1000, **window)
    assert total == runs.height and int(runs["spans"].sum()) == 400
