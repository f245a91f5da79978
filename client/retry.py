"""When and how long to wait before trying a call again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, on UNAVAILABLE and RESOURCE_EXHAUSTED only.

    ``attempts`` counts the first try: ``attempts=1`` never retries. The n-th
    wait is uniform in ``[0, min(max_backoff, initial_backoff * multiplier**n)]``
    seconds, and no wait runs past the call's deadline.
    """

    attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy backoffs must be >= 0 and multiplier >= 1")

    @staticmethod
    def retryable(status: Optional[str]) -> bool:
        return any(code in str(status or "") for code in RETRYABLE)

    def next_wait(self, status: Optional[str], retry: int, deadline: Optional[float], now: float) -> Optional[float]:
        """Seconds to wait before retry number ``retry`` (0-based), or None to give up."""
        if not self.retryable(status) or retry + 1 >= self.attempts:
            return None
        wait = self.backoff(retry)
        if deadline is not None and now + wait >= deadline:
            return None
        return wait

    def backoff(self, retry: int, rng: Optional[random.Random] = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return (rng or random).uniform(0.0, cap)


NO_RETRY = RetryPolicy(attempts=1)
