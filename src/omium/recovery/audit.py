"""The audit trail: every detection, rollback, notification, review, edit and retry is an event,
and so is every operator action (pause, resume, cancel: :mod:`omium.recovery.actions`).

Events live in the store (``omium_events`` in the warehouse), so an incident's timeline is a
query: detected -> rolled back -> paused -> reviewed -> resumed -> completed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from omium.sdk.store import CheckpointStore, EventRecord, now_us

# The stages of an incident, in the order a timeline shows them.
STAGES = (
    "detected",
    "retried",
    "rolled_back",
    "pause_requested",
    "paused",
    "notified",
    "reviewed",
    "edited",
    "edit_refused",
    "test_fix",
    "resumed",
    "completed",
    "failed",
    "cancel_requested",
    "cancelled",
)


def record(
    store: CheckpointStore,
    run_id: str,
    kind: str,
    *,
    actor: str = "omium",
    reason: str = "",
    before: Any = "",
    after: Any = "",
    incident: str = "",
    **attributes: Any,
) -> EventRecord:
    """Append an audit event; ``before``/``after`` that are not strings are stored as JSON."""
    event = EventRecord(
        event_id=uuid.uuid4().hex,
        run_id=run_id,
        kind=kind,
        actor=actor,
        reason=reason,
        before=before if isinstance(before, str) else json.dumps(before, sort_keys=True, default=str),
        after=after if isinstance(after, str) else json.dumps(after, sort_keys=True, default=str),
        attributes={"incident": incident, **{k: str(v) for k, v in attributes.items()}},
        ts=now_us(),
    )
    store.record_event(event)
    return event


@dataclass(frozen=True)
class Incident:
    """One failure of a run and what followed, as a list of events."""

    incident_id: str
    run_id: str
    events: tuple[EventRecord, ...]

    @property
    def stages(self) -> list[str]:
        """The kinds of its events, in order."""
        return [e.kind for e in self.events]

    @property
    def trigger(self) -> str:
        """What was detected."""
        return self.events[0].attributes.get("trigger", "") if self.events else ""

    def seconds_between(self, first: str, last: str) -> float | None:
        """Seconds from the first ``first`` event to the first ``last`` event after it."""
        start = next((e.ts for e in self.events if e.kind == first), None)
        if start is None:
            return None
        end = next((e.ts for e in self.events if e.kind == last and e.ts >= start), None)
        return None if end is None else (end - start) / 1e6


def incidents(store: CheckpointStore, run_id: str = "") -> list[Incident]:
    """Incidents of ``run_id`` (or of every run), oldest first."""
    grouped: dict[str, list[EventRecord]] = {}
    for event in store.events(run_id):
        incident = event.attributes.get("incident", "")
        if incident:
            grouped.setdefault(incident, []).append(event)
    found = [Incident(i, events[0].run_id, tuple(events)) for i, events in grouped.items()]
    return sorted(found, key=lambda i: i.events[0].ts)


def timeline(store: CheckpointStore, run_id: str) -> list[EventRecord]:
    """Every audit event of a run, oldest first (:class:`NotFoundError` for an unknown run)."""
    store.get_run(run_id)
    return store.events(run_id)


__all__ = ["STAGES", "Incident", "incidents", "record", "timeline"]
