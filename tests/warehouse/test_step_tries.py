"""Every try of every recorded call reaches the warehouse and the console's query for it.

The control store keeps one row per (run, position): a retry, or a re-execution after a rollback,
overwrites the try before it. The overwritten try is queued as it was (control migration 0004) and
lands in ``omium_steps`` beside the later one, which is keyed by try (warehouse STEP_TRIES). Real
SQLite and PostgreSQL control databases, the real shipper, embedded ClickHouse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import omium
from omium.sdk.store import StepRecord
from omium.warehouse import ClickHouseWarehouse, console_queries
from omium.warehouse.connection import Warehouse
from omium.warehouse.migrations import migrate
from omium.warehouse.schema import MIGRATIONS, OMIUM_STEPS, RUN_LEASES, STEP_TRIES
from omium.warehouse.store import EmbeddedStore, recorded_steps

AGAIN = omium.RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=0.0)
failures: dict[str, int] = {}  # how many more times a call of this name fails


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, warehouse: ClickHouseWarehouse
) -> Iterator[EmbeddedStore]:
    """A control database of each engine, shipping into the test's warehouse."""
    url = f"sqlite:///{tmp_path / 'control.db'}"
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    shipping = EmbeddedStore(url, warehouse, owns_warehouse=False)
    failures.clear()
    yield shipping
    shipping.close()


def _fails(name: str) -> None:
    if failures.get(name, 0) > 0:
        failures[name] -= 1
        raise ValueError(f"{name} failed")


@omium.step(retry=AGAIN)
def flaky(name: str) -> str:
    _fails(name)
    return f"{name} done"


@omium.workflow(name="tries_retry")
def retried() -> str:
    return flaky("fetch")


def wh(store: EmbeddedStore) -> Warehouse:
    assert store.warehouse is not None
    return store.warehouse


def tries(store: EmbeddedStore, run_id: str) -> list[tuple[int, str, int, int]]:
    store.ship()
    found = console_queries.step_tries(wh(store), run_id)
    return [(s.position, s.status, s.attempt, s.generation) for s in found]


def test_a_failed_try_and_its_retry_are_two_tries(store: EmbeddedStore) -> None:
    failures["fetch"] = 1
    assert omium.run(retried, run_id="retried", store=store) == "fetch done"
    assert [(s.status, s.attempt) for s in store.steps("retried")] == [("completed", 2)]  # live: the latest
    assert tries(store, "retried") == [(0, "failed", 1, 0), (0, "completed", 2, 0)]
    (failed, _) = console_queries.step_tries(wh(store), "retried")
    assert failed.error == "ValueError: fetch failed" and failed.call_id
    # The readers that want each position's latest try still get exactly that one.
    assert [(s.status, s.attempt) for s in recorded_steps(wh(store), "retried")] == [("completed", 2)]


OUTCOMES: list[str] = []


@omium.step
def score() -> int:
    return 720


@omium.step
def terms() -> str:
    return OUTCOMES.pop(0)


@omium.workflow(name="tries_rollback")
def onboarding() -> str:
    with omium.Checkpoint("scored"):
        score()
    offer = terms()
    if "0.0%" in offer:
        raise RuntimeError(f"APR outside 2.5%-8.5%: {offer}")
    return offer


def test_a_rolled_back_and_re_executed_run_keeps_the_tries_of_both_generations(store: EmbeddedStore) -> None:
    OUTCOMES[:] = ["APR 0.0%", "APR 4.9%"]
    with pytest.raises(RuntimeError):
        omium.run(onboarding, run_id="rolled", store=store)
    omium.rollback("rolled", "scored", store=store)
    assert omium.run(onboarding, run_id="rolled", store=store) == "APR 4.9%"
    # score ran once (before the checkpoint); terms once in each generation.
    assert tries(store, "rolled") == [(0, "completed", 1, 0), (1, "completed", 1, 0), (1, "completed", 1, 1)]
    first, second = console_queries.step_tries(wh(store), "rolled")[1:]
    assert first.output_hash != second.output_hash  # each try's own output, not the later one's


@omium.agent
async def researcher() -> str:
    return await flaky_async("research")


@omium.agent
async def writer() -> str:
    return await flaky_async("write")


@omium.step(retry=AGAIN)
async def flaky_async(name: str) -> str:
    await asyncio.sleep(0)
    _fails(name)
    return f"{name} done"


@omium.workflow(name="tries_concurrent")
async def team() -> list[str]:
    return list(await asyncio.gather(researcher(), writer()))


def test_concurrent_agents_in_one_run_each_keep_their_tries(store: EmbeddedStore) -> None:
    failures.update(research=1, write=1)
    assert omium.run(team, run_id="team", store=store) == ["research done", "write done"]
    store.ship()
    found = console_queries.step_tries(wh(store), "team")
    by_agent: dict[str, list[StepRecord]] = {}
    for s in found:
        by_agent.setdefault(s.agent, []).append(s)
    assert sorted(by_agent) == ["researcher", "writer"]
    for agent, records in by_agent.items():
        assert [(s.status, s.attempt) for s in records] == [("failed", 1), ("completed", 2)], agent
        assert len({s.call_id for s in records}) == 1  # both tries of one call
    assert by_agent["researcher"][0].call_id != by_agent["writer"][0].call_id


def test_the_rekeying_migration_keeps_rows_and_can_run_again(warehouse: ClickHouseWarehouse) -> None:
    version = MIGRATIONS.index(STEP_TRIES) + 1
    key = "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'omium_steps'"
    assert warehouse.scalar(key) == "run_id, position, generation, attempt, started_at"
    # omium_steps as the migrations before this one left it (keyed by attempt), holding two tries.
    warehouse.command("DROP TABLE omium_steps")
    for statement in (OMIUM_STEPS, *RUN_LEASES[:3]):
        warehouse.command(statement)
    warehouse.command(
        "INSERT INTO omium_steps (run_id, position, attempt, status, started_at, ended_at, generation) VALUES "
        "('r', 0, 1, 'failed', 1, 2, 0), ('r', 0, 2, 'completed', 3, 4, 0)"
    )
    assert warehouse.scalar(key) == "run_id, position, attempt"
    # As after an interruption: this version unrecorded, a copy left half made.
    warehouse.command("TRUNCATE TABLE omium_migrations")
    for done in range(1, version):
        warehouse.command("INSERT INTO omium_migrations (version) VALUES ({v:UInt32})", {"v": done})
    for statement in STEP_TRIES[:2]:
        warehouse.command(statement)
    assert migrate(warehouse) >= 1
    assert migrate(warehouse) == 0
    assert warehouse.scalar(key) == "run_id, position, generation, attempt, started_at"
    kept = warehouse.query_rows(
        "SELECT attempt, status FROM omium_steps FINAL WHERE run_id = 'r' ORDER BY attempt"
    )
    assert kept == [{"attempt": 1, "status": "failed"}, {"attempt": 2, "status": "completed"}]
    # Run once more from the exchange on (the interrupted copy dropped, the rows copied again).
    for statement in STEP_TRIES:
        warehouse.command(statement)
    assert warehouse.scalar("SELECT count() FROM omium_steps FINAL WHERE run_id = 'r'") == 2
    assert not warehouse.scalar(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'omium_steps_rekeyed'"
    )
