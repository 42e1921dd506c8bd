"""Per-trace facts kept at write time (omium_trace_summaries) and the console's reads of them: the
facts of a trace written in several inserts, a re-sent span counted once, the backfill of spans
written before the view existed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
