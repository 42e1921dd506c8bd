"""Monitoring's failure-prediction quality under Streamlit's AppTest (issue 18, items 2 and 5): the
predictor's AUROC per source held out with its interval, a warning below chance, and never a
figure over the sources pooled, read from the model registry as the pipeline writes it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from omium.collector.server import RunningServer
from omium.dashboards.console import model_quality
from omium.pipelines import registry
from omium.warehouse import ClickHouseWarehouse

APP = str(Path(__file__).resolve().parents[2] / "src/omium/dashboards/console/streamlit_app.py")

HELD_OUT = [
    {
        "held_out": "omium",
        "runs": 7,
        "failed": 4,
        "auroc_mean": 0.42,
        "auroc_low": 0.1,
        "auroc_high": 0.8,
        "brier": 0.3,
        "base_rate_brier": 0.26,
        "mean_risk": 0.61,
        "note": "",
    },
    {
        "held_out": "tau_bench",
        "runs": 80,
        "failed": 30,
        "auroc_mean": 0.66,
        "auroc_low": 0.55,
        "auroc_high": 0.77,
        "brier": 0.22,
        "base_rate_brier": 0.24,
        "mean_risk": 0.4,
        "note": "",
    },
    {
        "held_out": "who_and_when",
        "runs": 40,
        "failed": 40,
        "auroc_mean": None,
        "auroc_low": None,
        "auroc_high": None,
        "brier": 0.2,
        "base_rate_brier": 0.35,
        "mean_risk": 0.58,
        "note": "held-out runs hold one outcome: no AUROC",
    },
]


@pytest.fixture
def console(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The console talks to the test's server (whose warehouse is the ``warehouse`` fixture's)."""
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.delenv("OMIUM_CLICKHOUSE_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    from omium.dashboards.console import data

    data.warehouse().close()
    data.store().close()
    st.cache_resource.clear()
    st.cache_data.clear()


def _monitoring() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/monitoring.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _register(warehouse: ClickHouseWarehouse, directory: Path, metrics: dict[str, object]) -> str:
    return registry.save(
        warehouse,
        directory,
        "failure_predictor_k4",
        {"stand-in model": json.dumps(metrics, sort_keys=True)},
        training_rows=127,
        metrics=metrics,
    ).version


def test_monitoring_shows_auroc_per_source_held_out_and_warns_below_chance(
    console: None, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    at = _monitoring()
    assert any(c.value.startswith("No failure predictor yet") for c in at.caption)

    version = _register(
        warehouse,
        tmp_path,
        {
            "k": 4,
            "runs": 127,
            "failed": 74,
            "evaluation": "held out per source",
            "held_out": HELD_OUT,
            "auroc_min": 0.42,
            "auroc_min_source": "omium",
            "measurable": True,
        },
    )
    st.cache_data.clear()
    at = _monitoring()
    (said,) = [c.value for c in at.caption if c.value.startswith("Failure predictor ")]
    assert version in said and "held out per source" in said and "127 runs" in said
    assert "no figure pools the sources" in said and "Lowest: 0.42 (omium held out)" in said
    (shown,) = [d.value for d in at.dataframe if "held out" in d.value.columns]
    rows = {r["held out"]: r for r in shown.to_dict("records")}
    assert set(rows) == {"omium", "tau_bench", "who_and_when"}
    assert rows["tau_bench"]["AUROC"] == 0.66 and rows["tau_bench"]["95% interval"] == "0.55 to 0.77"
    # One outcome held out: no AUROC, its mean risk and Brier score instead.
    assert math.isnan(rows["who_and_when"]["AUROC"]) and rows["who_and_when"]["95% interval"] == ""
    assert rows["who_and_when"]["mean risk"] == 0.58 and rows["who_and_when"]["Brier"] == 0.2
    warned = [w.value for w in at.warning]
    assert warned == [
        "No better than chance on omium held out: AUROC 0.42 (95% interval 0.10 to 0.80); its risks say "
        "nothing about that source's runs."
    ]


def test_a_pooled_or_unmeasurable_figure_is_not_shown_as_quality(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    # An older version registered with the AUROC over all sources pooled: no figure is shown.
    _register(warehouse, tmp_path, {"k": 4, "runs": 127, "auroc_mean": 0.86})
    pooled = model_quality.predictor(warehouse)
    assert pooled is not None
    assert "0.86" not in model_quality.caption(pooled) and "rebuild" in model_quality.caption(pooled)
    assert model_quality.table(pooled).height == 0 and model_quality.warnings(pooled) == []

    one_source = [HELD_OUT[1] | {"auroc_mean": 0.5, "note": "training runs hold one outcome"}, HELD_OUT[2]]
    _register(
        warehouse,
        tmp_path,
        {
            "k": 4,
            "held_out": one_source,
            "auroc_min": None,
            "why_not": "not measurable: 1 source(s) with both outcomes, two are needed",
        },
    )
    latest = model_quality.predictor(warehouse)
    assert latest is not None and "held_out" in latest.metrics
    said = model_quality.caption(latest)
    assert said.endswith("Quality not measurable: 1 source(s) with both outcomes, two are needed.")
    assert "Lowest" not in said
