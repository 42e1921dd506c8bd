"""The control store on SQLite and PostgreSQL: the conformance suite, several processes on one
database, and the schema's migrations."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from omium.errors import MigrationError
from omium.sdk.sql import SqlStore
from omium.sdk.sql.engine import HEAD, MIGRATIONS, VERSION_TABLE, current_revision, migrate
from omium.sdk.sql.tables import metadata
from omium.sdk.store import CheckpointStore, CommandRecord, RunRecord
from tests.sdk.store_conformance import StoreConformance

WORKER = Path(__file__).with_name("sql_worker.py")
PROCESSES = 4


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[CheckpointStore]:
        sql = SqlStore(f"sqlite:///{tmp_path}/control.db")
        yield sql
        sql.close()


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[CheckpointStore]:
        sql = SqlStore(postgres_url)
        yield sql
        sql.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh control database of each dialect (nothing created in it yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/control.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    sql = SqlStore(url)
    yield sql
    sql.close()


def in_processes(
    url: str, scenario: str, tmp_path: Path, processes: int = PROCESSES, timeout: float = 240
) -> list[dict[str, Any]]:
    """Run ``scenario`` of sql_worker.py in ``processes`` processes at once; what each was granted."""
    outs = [tmp_path / f"{scenario}-{n}.json" for n in range(processes)]
    logs = [tmp_path / f"{scenario}-{n}.log" for n in range(processes)]
    procs = []
    for n in range(processes):
        with open(logs[n], "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), url, scenario, f"w{n}", str(outs[n])],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            )
    try:
        for proc in procs:  # every process is up before any starts
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
        for n, proc in enumerate(procs):
            assert proc.wait(timeout) == 0, logs[n].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    return [json.loads(out.read_text()) for out in outs]


def test_processes_never_grant_a_version_twice(store: SqlStore, url: str, tmp_path: Path) -> None:
    store.create_run(RunRecord("cas", "wf"))
    results = in_processes(url, "cas", tmp_path)
    runs = [v for r in results for v in r["run"]]
    states = [v for r in results for v in r["state"]]
    # Every acknowledged write is a version of its own, and none is lost: the final version
    # counts them all.
    final_run = store.get_run("cas").version
    assert sorted(runs) == list(range(2, final_run + 1))
    latest = store.read_state("counters", "c")
    assert latest is not None and sorted(states) == list(range(1, latest.version + 1))
    attempts = 2 * PROCESSES * 250
    assert len(runs) + len(states) + sum(r["conflicts"] for r in results) == attempts


def test_processes_racing_for_leases_get_one_holder_per_run(
    store: SqlStore, url: str, tmp_path: Path
) -> None:
    for i in range(50):
        store.create_run(RunRecord(f"lease-{i}", "wf"))
    results = in_processes(url, "lease", tmp_path)
    winners: dict[str, list[str]] = defaultdict(list)
    for n, result in enumerate(results):
        for run_id, fence in result["won"].items():
            assert fence == 1
            winners[run_id].append(f"w{n}")
    assert sorted(winners) == sorted(f"lease-{i}" for i in range(50))
    for run_id, holders in winners.items():
        lease = store.lease(run_id)
        assert len(holders) == 1 and lease is not None and (lease.holder, lease.fence) == (holders[0], 1)


def test_processes_claim_each_command_once_and_a_run_at_a_time(
    store: SqlStore, url: str, tmp_path: Path
) -> None:
    for i in range(100):  # fewer runs than workers: they contend for each run's next command
        store.enqueue_command(CommandRecord(f"c{i:03}", f"run-{i % 3}", "resume", created_at=1_000 + i))
    results = in_processes(url, "claim", tmp_path)
    claims = [c for r in results for c in r["claims"]]
    assert sorted(c["command"] for c in claims) == [f"c{i:03}" for i in range(100)]
    assert {(c.status, c.attempts) for c in store.commands()} == {("done", 1)}
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for claim in claims:
        by_run[claim["run"]].append(claim)
    for run_claims in by_run.values():
        run_claims.sort(key=lambda c: c["from"])
        # In the run's order, and the next claimed only after the previous was finished.
        assert [c["command"] for c in run_claims] == sorted(c["command"] for c in run_claims)
        for before, after in itertools.pairwise(run_claims):
            assert before["until"] < after["from"]


def test_a_fenced_out_process_writes_nothing_after_the_take_over(
    store: SqlStore, url: str, tmp_path: Path
) -> None:
    for i in range(20):
        store.create_run(RunRecord(f"fenced-{i}", "wf"))
    writer, taker = in_processes(url, "fence", tmp_path, processes=2)
    for run_id, seen in taker["seen"].items():
        # What the new holder saw right after its lease committed is all the old fence ever wrote:
        # no write of the old fence was in flight past the take-over.
        old = [s for s in store.steps(run_id) if s.fence == 1]
        assert len(old) == seen == writer["refused"][run_id]
        assert store.lease(run_id).fence == 2  # type: ignore[union-attr]


def test_processes_opening_a_fresh_database_migrate_it_once(url: str, tmp_path: Path) -> None:
    results = in_processes(url, "open", tmp_path)
    assert [r["revision"] for r in results] == [HEAD] * PROCESSES


def test_opening_migrates_a_fresh_database_to_head_and_again_is_a_no_op(url: str) -> None:
    first = SqlStore(url)
    try:
        assert current_revision(first.engine) == HEAD
        assert set(metadata.tables) <= set(inspect(first.engine).get_table_names())
        with first.engine.connect() as connection:
            # The migrations made exactly the tables the store's statements are built from.
            assert (
                compare_metadata(
                    MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}), metadata
                )
                == []
            )
        first.create_run(RunRecord("kept", "wf"))
        assert migrate(first.engine) is False
    finally:
        first.close()
    again = SqlStore(url)
    try:
        assert again.get_run("kept").workflow == "wf"
        assert current_revision(again.engine) == HEAD
    finally:
        again.close()


def test_head_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_a_database_newer_than_this_omium_is_refused(store: SqlStore, url: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(MigrationError, match="9999"):
        SqlStore(url)


def test_public_names_and_a_light_import() -> None:
    import omium.sdk.sql

    assert sorted(omium.sdk.sql.__all__) == ["SqlStore", "open_control_store"]
    code = (
        "import sys, omium; light = 'sqlalchemy' not in sys.modules; import omium.sdk.sql; "
        "print(light, 'alembic' not in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]  # Alembic loads only to migrate
