"""When and how long to wait before trying a call again."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional

RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

WINDOW_WITHOUT_DEADLINE = 60.0
"""Seconds an uncapped policy keeps retrying a call that has no deadline (a client with ``timeout=None``)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, on UNAVAILABLE and RESOURCE_EXHAUSTED only.

    A call is retried until its deadline (the client's or the call's
    ``timeout``): a server that restarts, or a model whose queue is full
    (Triton answers UNAVAILABLE), is ridden through as long as the call has
    time left. No wait runs past the deadline: when the next one would, the
    call gives up with the last error. Other statuses (a bad input, a missing
    model, a refused credential, an internal error) are never retried.

    * ``attempts`` caps the tries, the first one included: ``attempts=1``
      never retries, ``attempts=None`` (the default) has no cap.
    * The n-th wait (0-based) is uniform in
      ``[0, min(max_backoff, initial_backoff * multiplier**n)]`` seconds, so
      with the defaults a recovered server is noticed within a second.
    * A call with neither a deadline (a client built with ``timeout=None``)
      nor a cap does not retry forever: it keeps retrying for
      ``WINDOW_WITHOUT_DEADLINE`` (60) seconds from its first try, then gives
      up. Give it a ``timeout``, or set ``attempts``, to choose otherwise.
    * ``failover`` (default on) matters to a client over several endpoints
      (``Client("h1:8001,h2:8001")``): a try that fails with a retryable status
      is sent again *at once*, with no wait, to an endpoint this call has not
      tried yet in this round; only when every endpoint has failed does the
      call wait (the backoff above) and start a new round. ``attempts``
      counts rounds, so ``attempts=1`` still tries each endpoint once; with
      one endpoint a round is one try, as before. ``failover=False`` waits
      before every retry, wherever it goes.

    Retrying, on the same server or another, is safe because every
    tritonize model is stateless: an inference sent twice gives the same
    answer twice and changes nothing on the server.
    """

    attempts: Optional[int] = None
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    multiplier: float = 2.0
    failover: bool = True

    def __post_init__(self) -> None:
        if self.attempts is not None and (
            isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1
        ):
            raise ValueError(
                f"RetryPolicy.attempts must be a positive int (1 = never retry) or None (retry until the "
                f"deadline), got {self.attempts!r}"
            )
        for name in ("initial_backoff", "max_backoff", "multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"RetryPolicy.{name} must be a finite number, got {value!r}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError(
                "RetryPolicy backoffs must be >= 0 and multiplier >= 1, got "
                f"initial_backoff={self.initial_backoff!r}, max_backoff={self.max_backoff!r}, "
                f"multiplier={self.multiplier!r}"
            )
        if not isinstance(self.failover, bool):
            raise ValueError(f"RetryPolicy.failover must be a bool, got {self.failover!r}")

    @staticmethod
    def retryable(status: Optional[str]) -> bool:
        """Whether a try that failed with ``status`` may be sent again: the one place that decides it."""
        return any(code in str(status or "") for code in RETRYABLE)

    def fails_over(self, status: Optional[str]) -> bool:
        """Whether a try that failed with ``status`` goes at once to another endpoint not yet tried."""
        return self.failover and self.retryable(status)

    def next_wait(
        self,
        status: Optional[str],
        retry: int,
        deadline: Optional[float],
        now: float,
        started: Optional[float] = None,
    ) -> Optional[float]:
        """Seconds to wait before retry number ``retry`` (0-based), or None to give up.

        ``deadline`` and ``now`` are ``time.monotonic()`` values; ``deadline``
        is None for a call without a timeout, and then ``started`` (when the
        call's first try began; ``now`` if not given) bounds an uncapped
        policy to ``WINDOW_WITHOUT_DEADLINE`` seconds.
        """
        if not self.retryable(status):
            return None
        if self.attempts is not None and retry + 1 >= self.attempts:
            return None
        if deadline is None and self.attempts is None:
            deadline = (now if started is None else started) + WINDOW_WITHOUT_DEADLINE
        wait = self.backoff(retry)
        if deadline is not None and now + wait >= deadline:
            return None
        return wait

    def backoff(self, retry: int, rng: Optional[random.Random] = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        try:
            grown = self.initial_backoff * self.multiplier ** retry
        except OverflowError:  # a call retried for a long time: the cap has long been reached
            grown = self.max_backoff if self.initial_backoff > 0 else 0.0
        cap = min(self.max_backoff, grown)
        return (rng or random).uniform(0.0, cap)


NO_RETRY = RetryPolicy(attempts=1, failover=False)
"""Never retry: every error is raised at once, even on a client over several endpoints."""
