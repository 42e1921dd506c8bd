"""Jobs, schedules and the sensor: daily builds, hourly predictions, weekly retraining, and root
causes for new failed runs as soon as they appear."""

import json
from typing import Any

import dagster as dg

from omium.pipelines.defs import assets
from omium.pipelines.defs.resources import WarehouseResource
from omium.pipelines.labels import INCIDENTS

DAILY = dg.AssetSelection.assets(
    assets.normalized_spans,
    assets.run_edges,
    assets.agent_graph,
    assets.step_features,
    assets.run_features,
    assets.failure_labels,
)

daily_build = dg.define_asset_job("daily_build", selection=DAILY)
predict_recent = dg.define_asset_job(
    "predict_recent_runs", selection=dg.AssetSelection.assets(assets.failure_predictions)
)
retrain = dg.define_asset_job(
    "retrain_models",
    selection=dg.AssetSelection.assets(
        assets.failure_classifier, assets.failure_predictor, assets.root_causes
    ),
)
explain_failures = dg.define_asset_job(
    "explain_failures", selection=dg.AssetSelection.assets(assets.root_causes)
)

daily_schedule = dg.build_schedule_from_partitioned_job(daily_build, hour_of_day=0, minute_of_hour=15)
hourly_predictions = dg.ScheduleDefinition(
    name="hourly_predictions", job=predict_recent, cron_schedule="5 * * * *"
)
weekly_retraining = dg.ScheduleDefinition(name="weekly_retraining", job=retrain, cron_schedule="30 2 * * 1")

# Failed live runs: an error status, or an incident the supervisor detected (even if recovered).
NEW_FAILURES = f"""
SELECT run_id, toUnixTimestamp64Micro(updated_at) AS updated
FROM omium_runs FINAL
WHERE (status = 'failed' OR run_id IN (SELECT run_id FROM ({INCIDENTS})))
  AND toUnixTimestamp64Micro(updated_at) > {{cursor:Int64}}
  AND run_id NOT IN (SELECT run_id FROM omium_root_causes)
ORDER BY updated, run_id
LIMIT {{limit:UInt32}}
"""


@dg.sensor(job=explain_failures, minimum_interval_seconds=60)
def failed_runs_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> Any:
    """Turns new failed runs into root-cause materialisations (one request per batch of runs)."""
    cursor = int(json.loads(context.cursor)["updated"]) if context.cursor else 0
    with warehouse.connect() as wh:
        rows = wh.query_rows(NEW_FAILURES, {"cursor": cursor, "limit": 200})
    if not rows:
        return dg.SkipReason("no new failed runs")
    run_ids = [r["run_id"] for r in rows]
    newest = max(int(r["updated"]) for r in rows)
    context.update_cursor(json.dumps({"updated": newest}))
    return dg.RunRequest(
        run_key=f"root-causes-{newest}-{len(run_ids)}",
        run_config={"ops": {"root_causes": {"config": {"run_ids": run_ids}}}},
        tags={"omium/failed_runs": str(len(run_ids))},
    )


JOBS = [daily_build, predict_recent, retrain, explain_failures]
SCHEDULES = [daily_schedule, hourly_predictions, weekly_retraining]
SENSORS = [failed_runs_sensor]

__all__ = ["JOBS", "SCHEDULES", "SENSORS", "failed_runs_sensor"]
