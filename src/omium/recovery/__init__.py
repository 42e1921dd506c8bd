"""Recovery orchestration: policies, supervised runs, review, audit trail and workers.

* :mod:`~omium.recovery.policy` — YAML recovery policies, validated with line-accurate errors.
* :mod:`~omium.recovery.supervisor` — run a workflow under its policy: detect, roll back, retry,
  pause and notify.
* :mod:`~omium.recovery.review` — approve, edit, reject, and test a fix without committing it.
* :mod:`~omium.recovery.audit` — every action as an event; incidents and their timelines.
* :mod:`~omium.recovery.worker` — workers that execute queued runs and commands under leases.
"""

from omium.recovery.audit import incidents, timeline
from omium.recovery.policy import Policy
from omium.recovery.review import review, test_fix
from omium.recovery.supervisor import Outcome, resume, supervise

__all__ = ["Outcome", "Policy", "incidents", "resume", "review", "supervise", "test_fix", "timeline"]
