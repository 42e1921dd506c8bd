"""Failure labels of the runs of a day, from every place a failure is known, in the taxonomy.

Sources, strongest first: imported ground truth (the dataset's label and, for Who&When, the
annotator's reason), human reviews (a rejection), the runtime's own incident (the trigger the
supervisor recorded: guard violation, stale or rejected hand-off, tool exception), and finally
span statuses (an error span with no incident behind it). A run none of them marks is labelled
not failed. A run that failed and was then recovered is still labelled failed: the failure
happened, and that is what the models learn from.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from omium.models import taxonomy

# What an error type on a span says about the failure, when nothing better is known.
_ERROR_TYPES = (
    ("stale", taxonomy.STATE_SYNCHRONISATION),
    ("conflict", taxonomy.STATE_SYNCHRONISATION),
    ("handoffrejected", taxonomy.COMMUNICATION_PROTOCOL),
    ("validation", taxonomy.COMMUNICATION_PROTOCOL),
    ("schema", taxonomy.COMMUNICATION_PROTOCOL),
    ("guard", taxonomy.SPECIFICATION),
    ("hallucination", taxonomy.SPECIFICATION),
)

# The first incident the supervisor detected in each run (approval gates are not failures). Events
# outlive recovery: a run rolled back and retried to completion keeps its incident here.
INCIDENTS = """
SELECT run_id,
       argMin(attributes['trigger'], ts) AS trigger,
       argMin(reason, ts) AS message,
       argMin(toInt32OrDefault(attributes['position'], toInt32(-1)), ts) AS position,
       argMin(attributes['agent'], ts) AS agent
FROM omium_events
WHERE kind = 'detected' AND attributes['trigger'] != 'high_value_operation'
GROUP BY run_id
"""

LABEL_QUERY = f"""
WITH {{day:Date}} AS d,
    runs_of_day AS (SELECT DISTINCT run_id FROM omium_normalized_spans FINAL WHERE day = d)
SELECT
    r.run_id AS run_id,
    g.run_id != '' AS imported,
    g.failed AS truth_failed,
    g.source AS truth_source,
    g.mistake_reason AS mistake_reason,
    o.status AS status,
    o.attributes['failure'] AS failure,
    v.rejected AS rejected,
    v.reject_reason AS reject_reason,
    e.error_types AS error_types,
    e.tool_errors AS tool_errors,
    i.trigger AS trigger,
    i.message AS incident_message
FROM runs_of_day AS r
LEFT JOIN (SELECT * FROM omium_ground_truth FINAL) AS g ON g.run_id = r.run_id
LEFT JOIN (SELECT * FROM omium_runs FINAL) AS o ON o.run_id = r.run_id
LEFT JOIN (
    SELECT run_id, countIf(decision = 'reject') AS rejected,
           anyIf(reason, decision = 'reject') AS reject_reason
    FROM omium_reviews FINAL GROUP BY run_id
) AS v ON v.run_id = r.run_id
LEFT JOIN (
    SELECT run_id, groupUniqArrayIf(error_type, status = 'error' AND error_type != '') AS error_types,
           countIf(status = 'error' AND operation IN ('execute_tool', 'tool')) AS tool_errors
    FROM omium_normalized_spans FINAL WHERE day = d GROUP BY run_id
) AS e ON e.run_id = r.run_id
LEFT JOIN ({INCIDENTS}) AS i ON i.run_id = r.run_id
ORDER BY run_id
"""


def incident(row: dict[str, Any]) -> dict[str, Any]:
    """The run's failure as the supervisor recorded it: a detected incident, else the run's last failure."""
    if row.get("trigger"):
        return {
            "trigger": row["trigger"],
            "message": row.get("incident_message", ""),
            **({"position": row["position"], "agent": row["agent"]} if "position" in row else {}),
        }
    failure = json.loads(row["failure"]) if row.get("failure") else {}
    return failure if isinstance(failure, dict) else {}


def label(row: dict[str, Any]) -> tuple[bool, taxonomy.Label, str]:
    """(failed, label, source) of one run from the facts :data:`LABEL_QUERY` gathers."""
    if row["imported"]:
        if not row["truth_failed"]:
            return False, taxonomy.Label(taxonomy.NONE, "", "ground truth: succeeded"), "ground_truth"
        if row["mistake_reason"]:
            return True, taxonomy.from_reason(row["mistake_reason"]), "ground_truth"
        return (
            True,
            taxonomy.Label(taxonomy.UNKNOWN, "", f"{row['truth_source']}: failed, no reason given"),
            ("ground_truth"),
        )
    if row["rejected"]:
        found = taxonomy.from_reason(row["reject_reason"] or "")
        return (
            True,
            taxonomy.Label(found.failure_class, found.mast_code, "rejected in review: " + found.evidence),
            ("review"),
        )
    failure = incident(row)
    if failure:
        found = taxonomy.from_trigger(str(failure.get("trigger", "")), str(failure.get("message", "")))
        if found.failure_class != taxonomy.NONE:
            return True, found, "incident"
    error_types = [t.lower() for t in row["error_types"] or []]
    if row["status"] == "failed" or error_types or row["tool_errors"]:
        for needle, failure_class in _ERROR_TYPES:
            if any(needle in t for t in error_types):
                return (
                    True,
                    taxonomy.Label(failure_class, "", f"error type {', '.join(error_types)}"),
                    "status",
                )
        if row["tool_errors"]:
            return True, taxonomy.Label(taxonomy.TOOL_INVOCATION, "", "a tool call failed"), "status"
        if row["status"] == "failed" or error_types:
            return (
                True,
                taxonomy.Label(taxonomy.UNKNOWN, "", f"run status {row['status'] or 'error'}"),
                "status",
            )
    return False, taxonomy.Label(taxonomy.NONE, "", "no failure recorded"), "status"


def failure_labels(warehouse: Any, day: dt.date) -> list[dict[str, Any]]:
    """The label of every run of ``day`` (its normalised spans must exist)."""
    rows = []
    for row in warehouse.query_rows(LABEL_QUERY, {"day": day}):
        failed, found, source = label(row)
        rows.append(
            {
                "day": day,
                "run_id": row["run_id"],
                "failed": failed,
                "failure_class": found.failure_class,
                "mast_code": found.mast_code,
                "label_source": source,
                "evidence": found.evidence,
            }
        )
    return rows


__all__ = ["INCIDENTS", "LABEL_QUERY", "failure_labels", "incident", "label"]
