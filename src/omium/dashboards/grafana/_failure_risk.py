"""The failure risk dashboard: predicted failure risk of runs, failure classes and root causes."""

from __future__ import annotations

from ._panels import barchart, dashboard, field, link, stat, table, timeseries
from ._plugin import Json
from ._trace_explorer import RUN_LINK
from ._variables import custom_variable

_IN_FLIGHT_RUN = "('queued', 'running', 'paused')"

# The latest prediction per run (predictions are re-made as a run advances).
_LATEST_RISK = """(
    SELECT run_id,
           argMax(risk, predicted_at) AS latest_risk,
           argMax(steps_seen, predicted_at) AS latest_steps_seen,
           argMax(model_version, predicted_at) AS latest_model,
           max(predicted_at) AS last_predicted_at
    FROM omium_predictions FINAL
    WHERE $__timeFilter(predicted_at)
    GROUP BY run_id
)"""

RISK_SUMMARY = f"""
SELECT count() AS scored_runs,
       round(avgOrDefault(p.latest_risk), 3) AS mean_risk,
       countIf(p.latest_risk >= $risk_threshold) AS high_risk,
       countIf(p.latest_risk >= $risk_threshold AND r.status IN {_IN_FLIGHT_RUN}) AS high_risk_in_flight
FROM {_LATEST_RISK} AS p
LEFT JOIN (SELECT run_id, status FROM omium_runs FINAL) AS r ON r.run_id = p.run_id
"""  # noqa: S608

RISK_DISTRIBUTION = f"""
SELECT concat(toString(bucket * 10), '-', toString(bucket * 10 + 10), '%') AS risk, runs
FROM (SELECT arrayJoin(range(10)) AS bucket) AS b
LEFT JOIN (
    SELECT least(toUInt8(floor(latest_risk * 10)), 9) AS bucket, count() AS runs
    FROM {_LATEST_RISK}
    GROUP BY bucket
) AS c USING bucket
ORDER BY bucket
"""  # noqa: S608

RISK_OVER_TIME = """
SELECT $__timeInterval(predicted_at) AS time, avg(risk) AS mean_risk, quantile(0.9)(risk) AS p90_risk
FROM omium_predictions FINAL
WHERE $__timeFilter(predicted_at)
GROUP BY time
ORDER BY time
"""

AT_RISK_RUNS = f"""
SELECT p.run_id AS run_id, r.workflow AS workflow, r.status AS status, r.started_at AS started_at,
       round(p.latest_risk, 3) AS risk, p.latest_steps_seen AS steps_seen, p.latest_model AS model_version,
       p.last_predicted_at AS predicted_at
FROM {_LATEST_RISK} AS p
INNER JOIN (SELECT run_id, workflow, status, started_at FROM omium_runs FINAL) AS r ON r.run_id = p.run_id
WHERE r.status IN {_IN_FLIGHT_RUN}
ORDER BY risk DESC, started_at
LIMIT 25
"""  # noqa: S608

# What the classifier derived (a labelled run's class out of fold, from a model fitted without it)
# beside the labels as annotations, never counted as results. A row written as the label itself
# (model_version 'label', by builds before issue 18) is not a result either: left out.
FAILURE_CLASSES = """
SELECT failure_class, sum(classifier) AS classifier, sum(annotation) AS annotation
FROM (
    SELECT failure_class, count() AS classifier, 0 AS annotation
    FROM omium_failure_classes FINAL
    WHERE $__timeFilter(classified_at) AND model_version != 'label'
    GROUP BY failure_class
    UNION ALL
    SELECT failure_class, 0 AS classifier, count() AS annotation
    FROM omium_failure_labels FINAL
    WHERE $__dateFilter(day) AND failed
    GROUP BY failure_class
)
WHERE failure_class NOT IN ('', 'none')
GROUP BY failure_class
ORDER BY classifier + annotation DESC
"""

FAILURE_LABELS = """
SELECT failure_class, mast_code, label_source, count() AS runs
FROM omium_failure_labels FINAL
WHERE $__dateFilter(day) AND failed
GROUP BY failure_class, mast_code, label_source
ORDER BY runs DESC
"""

# One row per run and method (runtime_chain, attribution_model or first_error, judge_<method>,
# counterfactual): each says its verdict; an unknown one names no agent (its guess is in the evidence).
ROOT_CAUSES = """
SELECT run_id, method, verdict, agent, step_index, round(confidence, 3) AS confidence, failure_class,
       evidence, model_version, created_at
FROM omium_root_causes FINAL
WHERE $__timeFilter(created_at)
ORDER BY created_at DESC, run_id, confidence DESC
LIMIT 100
"""

# A run counts once per agent however many methods named it; unknown results name none.
ROOT_CAUSE_AGENTS = """
SELECT agent, uniqExact(run_id) AS runs
FROM omium_root_causes FINAL
WHERE $__timeFilter(created_at) AND verdict != 'unknown' AND agent != ''
GROUP BY agent
ORDER BY runs DESC
LIMIT 15
"""

# The latest failure predictor's quality, one row per source held out (the failure_predictor asset
# fits a model on the other sources and scores this one; see omium.models.prediction.evaluate_held_out).
# Not bound to the time range: the latest version is the one scoring runs. No row pools the sources.
PREDICTOR_HELD_OUT = """
SELECT JSONExtractString(r, 'held_out') AS held_out,
       JSONExtractUInt(r, 'runs') AS runs,
       JSONExtractUInt(r, 'failed') AS failed,
       round(JSONExtract(r, 'auroc_mean', 'Nullable(Float64)'), 3) AS auroc,
       round(JSONExtract(r, 'auroc_low', 'Nullable(Float64)'), 3) AS auroc_low,
       round(JSONExtract(r, 'auroc_high', 'Nullable(Float64)'), 3) AS auroc_high,
       round(JSONExtract(r, 'brier', 'Nullable(Float64)'), 3) AS brier,
       round(JSONExtract(r, 'base_rate_brier', 'Nullable(Float64)'), 3) AS base_rate_brier,
       round(JSONExtract(r, 'mean_risk', 'Nullable(Float64)'), 3) AS mean_risk,
       multiIf(auroc IS NULL, concat('no AUROC: ', JSONExtractString(r, 'note')),
               auroc <= 0.5, 'no better than chance on this source', '') AS warning,
       version
FROM (
    SELECT argMax(metrics, trained_at) AS latest, argMax(model_version, trained_at) AS version
    FROM omium_models FINAL
    WHERE model_name = 'failure_predictor_k4'
)
ARRAY JOIN JSONExtractArrayRaw(latest, 'held_out') AS r
ORDER BY held_out
"""

_CHANCE_STEPS = {
    "mode": "absolute",
    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 0.5001}],
}

_RISK_STEPS = {
    "mode": "absolute",
    "steps": [
        {"color": "green", "value": None},
        {"color": "orange", "value": 0.5},
        {"color": "red", "value": 0.8},
    ],
}


def failure_risk() -> Json:
    """Predicted failure risk of runs, failure classes and root causes."""
    panels = [
        stat(
            "Risk",
            (0, 0, 24, 4),
            RISK_SUMMARY,
            "Runs scored in the time range (latest prediction each), and those at or above the threshold.",
            overrides=[
                field("mean_risk", unit="percentunit"),
                field("high_risk_in_flight", color={"mode": "fixed", "fixedColor": "red"}),
            ],
        ),
        barchart(
            "Risk distribution",
            (0, 4, 8, 9),
            RISK_DISTRIBUTION,
            "Runs by their latest predicted failure risk.",
            "risk",
        ),
        timeseries(
            "Predicted risk over time",
            (8, 4, 16, 9),
            RISK_OVER_TIME,
            "Mean and 90th percentile of the predictions made.",
            unit="percentunit",
        ),
        table(
            "Runs in flight by risk",
            (0, 13, 24, 9),
            AT_RISK_RUNS,
            "Queued, running and paused runs, riskiest first.",
            overrides=[
                field("run_id", links=link("Traces of this run", RUN_LINK)),
                field(
                    "risk",
                    unit="percentunit",
                    thresholds=_RISK_STEPS,
                    custom__cellOptions={"type": "color-background"},
                ),
            ],
        ),
        barchart(
            "Failure classes",
            (0, 22, 12, 9),
            FAILURE_CLASSES,
            "Failed runs by class: as the classifier derived them (a labelled run's by a model "
            "fitted without it) and, beside, as annotated (the runs' labels, never a result).",
            "failure_class",
        ),
        table(
            "Failure labels",
            (12, 22, 12, 9),
            FAILURE_LABELS,
            "Labelled failures by class, MAST code and where the label came from.",
        ),
        table(
            "Root causes",
            (0, 31, 16, 10),
            ROOT_CAUSES,
            "Each method's root cause of each failed run (one row per run and method): the agent and "
            "step it names, or verdict unknown when it named none at or above its threshold; with the "
            "evidence.",
            overrides=[
                field("run_id", links=link("Traces of this run", RUN_LINK)),
                field("confidence", unit="percentunit"),
            ],
        ),
        barchart(
            "Root-cause agents",
            (16, 31, 8, 10),
            ROOT_CAUSE_AGENTS,
            "The agents failed runs are most often attributed to (a run counts once per agent, whichever "
            "methods named it; unknown results are left out).",
            "agent",
        ),
        table(
            "Failure predictor, held out per source",
            (0, 41, 24, 8),
            PREDICTOR_HELD_OUT,
            "The latest failure predictor (k = 4 turns) scored on each source by a model fitted on the "
            "other sources only: AUROC with its 95% interval; a source whose runs have one outcome has "
            "no AUROC (its mean risk and Brier score instead). No figure pools the sources, where "
            "telling them apart would score. Red: no better than chance.",
            overrides=[
                field("auroc", thresholds=_CHANCE_STEPS, custom__cellOptions={"type": "color-background"}),
                field("mean_risk", unit="percentunit"),
            ],
        ),
    ]
    return dashboard(
        "omium-failure-risk",
        "Omium / Failure risk",
        "Which runs are likely to fail, how failures classify, and which agents cause them.",
        panels,
        variables=[custom_variable("risk_threshold", "High risk at", ["0.5", "0.7", "0.9"])],
        time_from="now-7d",
        tags=["failures"],
    )


__all__ = [
    "AT_RISK_RUNS",
    "FAILURE_CLASSES",
    "FAILURE_LABELS",
    "PREDICTOR_HELD_OUT",
    "RISK_DISTRIBUTION",
    "RISK_OVER_TIME",
    "RISK_SUMMARY",
    "ROOT_CAUSES",
    "ROOT_CAUSE_AGENTS",
    "failure_risk",
]
