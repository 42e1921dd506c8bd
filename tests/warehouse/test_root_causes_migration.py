"""Migration 11: ``omium_root_causes`` keyed ``(run_id, method)`` with an explicit ``verdict``,
keeping the rows of the old one-row-per-run table, safe to rerun from any point."""

from __future__ import annotations

import json
from typing import Any

from omium.warehouse import LATEST_VERSION, ClickHouseWarehouse, migrate
from omium.warehouse.schema import MIGRATIONS, PIPELINE_TABLES, ROOT_CAUSES_BY_METHOD

VERSION = MIGRATIONS.index(ROOT_CAUSES_BY_METHOD) + 1
# The table as migration 6 made it (one row per run).
OLD_TABLE = next(s for s in PIPELINE_TABLES if "omium_root_causes" in s)

OLD_ROWS = [
    ("r1", "Analyst", 4, "s4", 0.8, "specification", ["#4 by Analyst scored highest"], "attribution_model"),
    (
        "r2",
        "Planner",
        2,
        "s2",
        0.2,
        "unknown",
        ["unknown: the best guess, Planner, is below the confidence threshold", "#2 by Planner"],
        "attribution_model",
    ),
    (
        "r3",
        "Coder",
        1,
        "s1",
        0.3,
        "tool_invocation",
        ["#1 the first step that ended in error"],
        "first_error",
    ),
]


def _to_old_shape(warehouse: ClickHouseWarehouse) -> None:
    """The database as it was before migration 11, holding one root cause per run."""
    warehouse.command("DROP TABLE omium_root_causes")
    warehouse.command(OLD_TABLE)
    warehouse.command("ALTER TABLE omium_migrations DELETE WHERE version >= {v:UInt32}", {"v": VERSION})
    for run_id, agent, step, span, confidence, failure_class, evidence, method in OLD_ROWS:
        warehouse.command(
            "INSERT INTO omium_root_causes (run_id, agent, step_index, span_id, confidence, failure_class, "
            "evidence, method, model_version, created_at) VALUES ({r:String}, {a:String}, {s:Int32}, "
            "{sp:String}, {c:Float64}, {f:String}, {e:String}, {m:String}, 'v1', now64(6))",
            {
                "r": run_id,
                "a": agent,
                "s": step,
                "sp": span,
                "c": confidence,
                "f": failure_class,
                "e": json.dumps(evidence),
                "m": method,
            },
        )


def _rows(warehouse: ClickHouseWarehouse) -> dict[tuple[str, str], dict[str, Any]]:
    rows = warehouse.query_rows(
        "SELECT run_id, method, agent, step_index, span_id, confidence, evidence, verdict "
        "FROM omium_root_causes FINAL ORDER BY run_id, method"
    )
    return {(str(r["run_id"]), str(r["method"])): r for r in rows}


def _sorting_key(warehouse: ClickHouseWarehouse) -> str:
    return str(
        warehouse.scalar(
            "SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = 'omium_root_causes'",
            {"db": warehouse.database},
        )
    )


def test_a_fresh_database_keys_root_causes_by_run_and_method(warehouse: ClickHouseWarehouse) -> None:
    assert _sorting_key(warehouse) == "run_id, method"
    tables = warehouse.query_rows(
        "SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE 'omium_root_causes%'",
        {"db": warehouse.database},
    )
    assert [t["name"] for t in tables] == ["omium_root_causes"]


def test_the_old_rows_are_kept_with_their_verdict_and_the_migration_reruns(
    warehouse: ClickHouseWarehouse,
) -> None:
    _to_old_shape(warehouse)
    assert _sorting_key(warehouse) == "run_id"
    assert migrate(warehouse) == LATEST_VERSION - VERSION + 1
    assert _sorting_key(warehouse) == "run_id, method"
    rows = _rows(warehouse)
    assert set(rows) == {("r1", "attribution_model"), ("r2", "attribution_model"), ("r3", "first_error")}
    known = rows[("r1", "attribution_model")]
    assert (known["agent"], known["step_index"], known["span_id"], known["verdict"]) == (
        "Analyst",
        4,
        "s4",
        "known",
    )
    # The old table said unknown by its evidence's first line and kept the guess as the agent: the
    # guess leaves the agent column and stays in the evidence.
    unknown = rows[("r2", "attribution_model")]
    assert (unknown["agent"], unknown["step_index"], unknown["span_id"], unknown["verdict"]) == (
        "",
        -1,
        "",
        "unknown",
    )
    assert "Planner" in json.loads(str(unknown["evidence"]))[0] and unknown["confidence"] == 0.2
    assert rows[("r3", "first_error")]["verdict"] == "known"
    before = rows

    # A run stopped after any of its statements is simply run again: the rows stay, once each.
    for done in range(len(ROOT_CAUSES_BY_METHOD) + 1):
        _to_old_shape(warehouse)
        for statement in ROOT_CAUSES_BY_METHOD[:done]:
            warehouse.command(statement)
        assert migrate(warehouse) == LATEST_VERSION - VERSION + 1
        assert _rows(warehouse) == before, done
        assert _sorting_key(warehouse) == "run_id, method"
        count = warehouse.scalar("SELECT count() FROM omium_root_causes FINAL")
        assert count == len(OLD_ROWS)
    assert migrate(warehouse) == 0


def test_two_methods_of_one_run_are_two_rows(warehouse: ClickHouseWarehouse) -> None:
    for method, agent, step, evidence in (
        ("attribution_model", "Analyst", 4, ["#4 by Analyst"]),
        ("judge_all_at_once", "", -1, ["unknown: the answer named no agent of the run"]),
        ("attribution_model", "Analyst", 5, ["#5 by Analyst, later"]),  # the same method again: replaces
    ):
        warehouse.command(
            "INSERT INTO omium_root_causes (run_id, agent, step_index, span_id, confidence, failure_class, "
            "evidence, method, model_version, created_at) VALUES ('r1', {a:String}, {s:Int32}, '', 0.5, '', "
            "{e:String}, {m:String}, '', now64(6))",
            {"a": agent, "s": step, "e": json.dumps(evidence), "m": method},
        )
    rows = _rows(warehouse)
    assert set(rows) == {("r1", "attribution_model"), ("r1", "judge_all_at_once")}
    assert rows[("r1", "attribution_model")]["step_index"] == 5
    # A writer that leaves the verdict out gets it from the evidence.
    assert rows[("r1", "judge_all_at_once")]["verdict"] == "unknown"
    assert rows[("r1", "attribution_model")]["verdict"] == "known"
