import pytest

from omium.config import Settings
from omium.errors import ConfigError, ReadOnlyError, WarehouseError
from omium.warehouse import ClickHouseWarehouse, connect


def test_query_and_insert_round_trip(warehouse: ClickHouseWarehouse) -> None:
    warehouse.insert(
        "omium_events",
        [["e1", "e2"], ["r1", "r1"], ["detected", "resumed"], ["a", "b"], ["x", "y"], [{"k": "v"}, {}]],
        ["event_id", "run_id", "kind", "actor", "reason", "attributes"],
    )
    frame = warehouse.query_df(
        "SELECT event_id, kind, attributes FROM omium_events WHERE run_id = {r:String} ORDER BY event_id",
        {"r": "r1"},
    )
    assert frame["event_id"].to_list() == ["e1", "e2"]
    assert frame["kind"].to_list() == ["detected", "resumed"]


def test_reads_cannot_write_read_files_or_change_settings(warehouse: ClickHouseWarehouse) -> None:
    for statement in (
        "INSERT INTO omium_runs (run_id) VALUES ('x')",
        "DROP TABLE otel_traces",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        with pytest.raises(ReadOnlyError):
            warehouse.query_arrow(statement)
    assert (
        warehouse.scalar(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'otel_traces'",
            {"d": warehouse.database},
        )
        == 1
    )
    # The writer is unaffected by the read-only sessions.
    warehouse.command("INSERT INTO omium_runs (run_id) VALUES ({r:String})", {"r": "ok"})
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 1


def test_parameters_are_bound_server_side(warehouse: ClickHouseWarehouse) -> None:
    hostile = "x' OR 1=1; DROP TABLE omium_runs; --"
    warehouse.command("INSERT INTO omium_runs (run_id) VALUES ({r:String})", {"r": hostile})
    warehouse.command("INSERT INTO omium_runs (run_id) VALUES ({r:String})", {"r": "other"})
    assert warehouse.scalar("SELECT count() FROM omium_runs WHERE run_id = {r:String}", {"r": hostile}) == 1
    assert warehouse.scalar("SELECT count() FROM omium_runs WHERE run_id = {r:String}", {"r": "x"}) == 0
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 2


def test_bad_sql_is_a_warehouse_error(warehouse: ClickHouseWarehouse) -> None:
    with pytest.raises(WarehouseError, match=r"UNKNOWN_TABLE|Unknown table"):
        warehouse.query_arrow("SELECT * FROM no_such_table")


def test_databases_isolate(settings: Settings, warehouse: ClickHouseWarehouse) -> None:
    warehouse.command("INSERT INTO omium_runs (run_id) VALUES ('mine')")
    other = connect(settings.with_(database=settings.database + "_other"), mode="embedded")
    try:
        assert other.scalar("SELECT count() FROM omium_runs") == 0
    finally:
        other.command("DROP DATABASE {d:Identifier}", {"d": other.database})
        other.close()


def test_unknown_mode_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown warehouse mode"):
        connect(settings, mode="sqlite")  # type: ignore[arg-type]


def test_auto_mode_without_server_is_embedded(settings: Settings) -> None:
    wh = connect(settings.with_(server_url="http://127.0.0.1:9"), mode="auto")
    try:
        assert wh.mode == "embedded"
    finally:
        wh.command("DROP DATABASE {d:Identifier}", {"d": wh.database})
