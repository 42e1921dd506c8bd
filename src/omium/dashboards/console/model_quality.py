"""How good the failure predictor is, as the console says it: AUROC per source held out, never pooled.

The ``failure_predictor`` asset registers each version with one row per source left out (a model
fitted on the other sources scores it; ``held_out`` in the registry's metrics). The console shows
those rows with their 95% intervals and warns where a source is scored no better than chance.
A figure over all sources together is never shown: each source's base rate alone scores there
(every imported Who&When run is a failure). An older version registered without per-source rows
shows no figure at all.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import streamlit as st

from omium.pipelines import registry

CHANCE = 0.5


def predictor(warehouse: Any, k: int = 4) -> registry.ModelVersion | None:
    """The latest registered failure predictor of prefix length ``k``, or None before the first build."""
    from omium.models.prediction import MODEL_NAME

    try:
        return registry.latest(warehouse, f"{MODEL_NAME}_k{k}")
    except registry.ModelNotFound:
        return None


@st.cache_data(ttl=30, show_spinner=False)
def latest_predictor(k: int = 4) -> registry.ModelVersion | None:
    """:func:`predictor` on the console's warehouse, cached (a build registers a version an hour)."""
    from omium.dashboards.console import data

    return predictor(data.warehouse(), k)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _fixed(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return "" if number is None else f"{number:.{digits}f}"


def caption(version: registry.ModelVersion) -> str:
    """What the figures below are, said under them: held out per source, which version, on what."""
    metrics = version.metrics
    head = (
        f"Failure predictor {version.version} (first {metrics.get('k', '?')} turns, trained on "
        f"{version.training_rows:,} runs): AUROC held out per source. Each source is scored by a "
        "model fitted on the other sources only, with its 95% interval; no figure pools the sources, "
        "where telling them apart would score."
    )
    if "held_out" not in metrics:
        return head + " This version was registered without per-source figures: rebuild the pipelines."
    lowest = _number(metrics.get("auroc_min"))
    if lowest is None:
        return head + f" Quality {metrics.get('why_not') or 'not measurable'}."
    return head + f" Lowest: {lowest:.2f} ({metrics.get('auroc_min_source')} held out)."


def table(version: registry.ModelVersion) -> pl.DataFrame:
    """One row per source held out: its AUROC and interval, or (one outcome) its mean risk and Brier."""
    rows = [
        {
            "held out": str(r["held_out"]),
            "runs": int(r["runs"]),
            "failed": int(r["failed"]),
            "AUROC": _number(r.get("auroc_mean")),
            "95% interval": (
                f"{_fixed(r.get('auroc_low'))} to {_fixed(r.get('auroc_high'))}"
                if _number(r.get("auroc_low")) is not None
                else ""
            ),
            "Brier": _number(r.get("brier")),
            "base-rate Brier": _number(r.get("base_rate_brier")),
            "mean risk": _number(r.get("mean_risk")),
            "note": str(r.get("note") or ""),
        }
        for r in version.metrics.get("held_out", [])
    ]
    schema = {
        "held out": pl.String,
        "runs": pl.Int64,
        "failed": pl.Int64,
        "AUROC": pl.Float64,
        "95% interval": pl.String,
        "Brier": pl.Float64,
        "base-rate Brier": pl.Float64,
        "mean risk": pl.Float64,
        "note": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def warnings(version: registry.ModelVersion) -> list[str]:
    """A line for each source the predictor scores no better than chance when it is held out."""
    out = []
    for r in version.metrics.get("held_out", []):
        auroc = _number(r.get("auroc_mean"))
        if auroc is not None and auroc <= CHANCE:
            out.append(
                f"No better than chance on {r['held_out']} held out: AUROC {auroc:.2f} "
                f"(95% interval {_fixed(r.get('auroc_low'))} to {_fixed(r.get('auroc_high'))}); "
                "its risks say nothing about that source's runs."
            )
    return out


__all__ = ["CHANCE", "caption", "latest_predictor", "predictor", "table", "warnings"]
