"""The circuit breaker in front of the products service: stop asking one that keeps failing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Stops calling a products service that keeps failing; one probe later finds out if it is back.

    closed: every look-up goes out; `failure_threshold` failures in a row open it.
    open: nothing goes out for `reset_seconds`.
    half_open: the first look-up goes out as the probe, the others are refused until it
    answers; its success closes the circuit, its failure opens it again.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failure_threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_out = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        return "open" if self.seconds_until_half_open() > 0 else "half_open"

    def seconds_until_half_open(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._reset_seconds - self._clock())

    def try_acquire(self) -> bool:
        """Whether a look-up may go out now; in half_open only the probe may."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probe_out:
            return False
        self._probe_out = True
        return True

    def record_success(self) -> None:
        if self._opened_at is not None:
            logger.info("products circuit closed: the service answers again")
        self._failures = 0
        self._opened_at = None
        self._probe_out = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_out = False
        if self._failures >= self._failure_threshold:
            self._opened_at = self._clock()
            logger.warning(
                "products circuit open for %ss after %d failed look-ups",
                self._reset_seconds,
                self._failures,
            )

    def release_probe(self) -> None:
        """The probe ended without a verdict on the service (cancelled, or a bug of ours)."""
        self._probe_out = False
