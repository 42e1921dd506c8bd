"""Retry policies, in the fields durable-execution users know (Temporal, Restate, LangGraph)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing call is retried.

    Attributes:
        max_attempts: attempts in all, the first included (1 = no retry).
        initial_interval: seconds before the second attempt.
        backoff_coefficient: each wait is this many times the previous one.
        maximum_interval: no wait is longer.
        jitter: up to this fraction of each wait is added at random (spreads retries out).
        non_retryable: exception types that fail at once.
    """

    max_attempts: int = 1
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float = 30.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_interval < 0 or self.maximum_interval < 0 or self.backoff_coefficient < 1:
            raise ValueError("intervals must be >= 0 and backoff_coefficient >= 1")

    def retries(self, error: BaseException, attempt: int) -> bool:
        """Whether to try again after ``attempt`` failed with ``error``."""
        return attempt < self.max_attempts and not isinstance(error, self.non_retryable)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.maximum_interval, self.initial_interval * self.backoff_coefficient ** (attempt - 1))
        return base + base * self.jitter * (rng or random).random()


NO_RETRY = RetryPolicy()

__all__ = ["NO_RETRY", "RetryPolicy"]
