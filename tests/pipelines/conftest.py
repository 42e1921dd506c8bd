"""Demo and imported runs in the test's own database, for the pipelines to build on.

Live runs are Company X executions recorded in the embedded warehouse with their spans (one of
each failure the demo shows); imported runs are a slice of the public Who&When and tau-bench
data, enough for both outcomes and several tasks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from omium import importers
from omium.warehouse import ClickHouseWarehouse

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LIVE = {
    "live-ok-1": "ok",
    "live-ok-2": "ok",
    "live-transient": "transient",
    "live-halluc": "hallucination",
    "live-stale": "stale",
    "live-flaky": "flaky_hallucination",
    "live-big": "high_value",
}


@dataclass
class Seeded:
    """What a seeded warehouse holds."""

    warehouse: ClickHouseWarehouse
    live: dict[str, str]
    imported: list[importers.ImportedRun]


def record_live_runs(warehouse: ClickHouseWarehouse, runs: dict[str, str]) -> None:
    """Run Company X scenarios under supervision, spans and all, into ``warehouse``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from omium.examples.company_x import workflow as company_x
    from omium.recovery import supervise
    from omium.sdk import runs as sdk_runs
    from omium.sdk import tracing
    from omium.warehouse.span_exporter import WarehouseSpanExporter
    from omium.warehouse.store import EmbeddedStore

    previous_store, previous_provider = sdk_runs._default_store, tracing._provider
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(WarehouseSpanExporter(warehouse)))
    # A control database of its own, shipping into ``warehouse`` (shipped in full at close).
    store = EmbeddedStore(f"sqlite:///{tempfile.mkdtemp()}/control.db", warehouse, owns_warehouse=False)
    sdk_runs.init(store=store, tracer_provider=provider)
    try:
        for run_id, scenario in runs.items():
            company_x.seed_customer(store, f"cust-{run_id}")
            supervise(
                company_x.onboard_customer,
                f"cust-{run_id}",
                scenario,
                run_id=run_id,
                store=store,
                sleep=lambda s: None,
            )
    finally:
        provider.force_flush()
        store.close()
        sdk_runs._default_store = previous_store
        tracing.configure(previous_provider)
        provider.shutdown()


@pytest.fixture
def seeded(warehouse: ClickHouseWarehouse) -> Iterator[Seeded]:
    """Live Company X runs plus 40 Who&When and 80 tau-bench runs (20 tasks), in this test's database."""
    record_live_runs(warehouse, LIVE)
    who = importers.read_who_and_when(DATA / "who_and_when" / "algorithm_generated")[:40]
    tau = importers.read_tau_bench(DATA / "tau_bench" / "gpt-4o-airline.json")[:80]
    importers.write(warehouse, [*who, *tau])
    yield Seeded(warehouse, LIVE, [*who, *tau])
