"""Pause-and-notify: a Slack-compatible webhook with the run, the failure, the evidence and a link.

The body is what Slack's incoming webhooks take (``text`` plus ``blocks``), with the same facts
structured under ``omium`` for other receivers. Webhook URLs come from the policy's
``notify.webhooks`` and from ``OMIUM_WEBHOOK_URL`` (comma-separated).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    """What a person needs to act on a paused run."""

    run_id: str
    workflow: str
    trigger: str
    failure: str
    evidence: dict[str, Any]
    checkpoint: str
    console_url: str

    @property
    def link(self) -> str:
        """The run's page in the console."""
        return f"{self.console_url.rstrip('/')}/?run={self.run_id}"

    def payload(self) -> dict[str, Any]:
        """The webhook body (Slack-compatible)."""
        evidence = json.dumps(self.evidence, sort_keys=True, default=str)
        headline = f":rotating_light: Omium paused run {self.run_id} ({self.workflow}): {self.trigger}"
        body = (
            f"*Failure:* {self.failure}\n*Evidence:* `{evidence}`\n"
            f"*Rolled back to:* {self.checkpoint or '(no checkpoint)'}\n"
            f"*Review:* <{self.link}|open in the console>"
        )
        return {
            "text": f"{headline}: {self.failure}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            ],
            "omium": {
                "run_id": self.run_id,
                "workflow": self.workflow,
                "trigger": self.trigger,
                "failure": self.failure,
                "evidence": self.evidence,
                "checkpoint": self.checkpoint,
                "link": self.link,
            },
        }


def webhook_urls(configured: tuple[str, ...] = ()) -> list[str]:
    """The policy's webhooks plus ``OMIUM_WEBHOOK_URL``'s."""
    extra = [u.strip() for u in os.environ.get("OMIUM_WEBHOOK_URL", "").split(",") if u.strip()]
    return list(dict.fromkeys([*configured, *extra]))


def send(url: str, notification: Notification, *, attempts: int = 3, timeout: float = 5.0) -> bool:
    """POST the notification; retried with backoff; False (logged) if the receiver never took it."""
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, json=notification.payload(), timeout=timeout)
            if response.status_code < 300:
                return True
            logger.warning("webhook %s answered %s", url, response.status_code)
        except httpx.HTTPError as error:
            logger.warning("webhook %s failed: %s", url, error)
        if attempt < attempts:
            time.sleep(0.2 * 2 ** (attempt - 1))
    return False


__all__ = ["Notification", "send", "webhook_urls"]
