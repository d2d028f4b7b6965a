"""Circuit breaker around the transformer (the challenge's milestone 3). Pure: no Flask, no torch.

closed     every call goes to the transformer; a failure is an exception or a call slower than
           the budget; `failure_threshold` failures in a row open the breaker.
open       calls go to the fallback (the TF-IDF baseline) without touching the transformer,
           until `reset_after` seconds have passed.
half_open  one caller probes the transformer; success closes the breaker, failure re-opens it
           for another `reset_after`. Other callers keep using the fallback meanwhile.
State is per process: each gunicorn worker watches its own model.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    latency_budget: float = 0.5
    reset_after: float = 30.0
    clock: Callable[[], float] = time.monotonic
    on_transition: Callable[[str, str, str], None] | None = None
    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    last_failure: str | None = None
    _probing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """True when this call should try the transformer (closed, or the one half-open probe)."""
        with self._lock:
            if self.state == CLOSED:
                return True
            if self.state == OPEN and self.clock() - self.opened_at >= self.reset_after:
                self._move(HALF_OPEN, "probe after reset interval")
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record(self, seconds: float, error: BaseException | None = None, budget_units: int = 1):
        """Report one transformer call; `budget_units` scales the budget for batched calls."""
        slow = seconds > self.latency_budget * max(1, budget_units)
        with self._lock:
            self._probing = False
            if error is None and not slow:
                self.consecutive_failures = 0
                if self.state != CLOSED:
                    self._move(CLOSED, "probe succeeded")
                return
            self.consecutive_failures += 1
            # Only the exception's type: its message may hold server paths; logs have the rest.
            self.last_failure = (f"error: {type(error).__name__}" if error is not None
                                 else f"slow: {seconds * 1000:.0f} ms over a "
                                      f"{self.latency_budget * max(1, budget_units) * 1000:.0f} ms budget")
            if self.state == HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
                self.opened_at = self.clock()
                if self.state != OPEN:
                    self._move(OPEN, self.last_failure)

    def snapshot(self) -> dict:
        with self._lock:
            return {"state": self.state, "consecutive_failures": self.consecutive_failures,
                    "last_failure": self.last_failure,
                    "failure_threshold": self.failure_threshold,
                    "latency_budget_seconds": self.latency_budget,
                    "reset_after_seconds": self.reset_after,
                    "retry_in_seconds": (max(0.0, round(self.reset_after
                                                        - (self.clock() - self.opened_at), 1))
                                         if self.state == OPEN else None)}

    def _move(self, new_state: str, reason: str) -> None:
        old, self.state = self.state, new_state
        if self.on_transition:
            self.on_transition(old, new_state, reason)
