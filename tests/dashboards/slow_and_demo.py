"""The workflows of one worker for the browser's pause test: the demo's (Company X onboarding)
and the slow ledger workflow, so that whichever command the worker claims, it hosts the run."""

from __future__ import annotations

from omium.examples.company_x.workflow import onboard_customer
from tests.recovery.slow_workflow import slow_order

__all__ = ["onboard_customer", "slow_order"]
