"""Client-side rate limits for HTTP backends: requests per minute and tokens per minute.

Two token buckets that refill continuously. Each bucket holds one second of its rate (at least one
request, and at least one request's tokens), so a run starts without a burst that the server would
answer with 429s. Tokens are estimated before a call and corrected with the usage the server reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Bucket:
    def __init__(self, per_minute: float, clock: Callable[[], float]):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.clock = clock
        self.stamp = clock()

    def refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` can be taken (0 when it can be taken now)."""
        self.refill()
        # A single request larger than the bucket may go once the bucket is full, never earlier.
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class RateLimiter:
    """Blocks callers so that at most ``rpm`` requests and ``tpm`` tokens go out per minute (either may be None).

    >>> limiter = RateLimiter(rpm=500, tpm=200_000)
    >>> limiter.acquire(tokens=350)       # before the request; returns the seconds waited
    0.0
    >>> limiter.settle(estimated=350, actual=412)   # after it, with the usage the server reported
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.requests = _Bucket(rpm, clock) if rpm else None
        self.tokens = _Bucket(tpm, clock) if tpm else None
        self.sleep = sleep
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 0) -> float:
        """Wait until one request of about ``tokens`` tokens may be sent; returns the seconds waited."""
        waited = 0.0
        with self._lock:  # one waiter at a time keeps requests in arrival order
            while True:
                delay = max(
                    self.requests.wait_for(1) if self.requests else 0.0,
                    self.tokens.wait_for(tokens) if self.tokens and tokens else 0.0,
                )
                if delay <= 0:
                    break
                self.sleep(delay)
                waited += delay
            if self.requests:
                self.requests.level -= 1
            if self.tokens:
                self.tokens.level -= tokens
        return waited

    def settle(self, estimated: int, actual: int) -> None:
        """Charge the difference between the estimate and the server's count (the bucket may go below zero)."""
        if self.tokens and actual:
            with self._lock:
                self.tokens.level -= actual - estimated
