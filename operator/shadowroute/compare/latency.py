"""Upstream latencies for the summary: the latest `CAPACITY` answers of one side, and
their percentiles. Pure; memory bounded. (The Prometheus histogram is in `metrics`.)"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

CAPACITY = 1024


class Reservoir:
    """The most recent `capacity` durations (seconds) and how many were seen in all."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity is at least 1")
        self._values: deque[float] = deque(maxlen=capacity)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._values.append(seconds)
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """The nearest-rank `q` quantile of the kept values; None when there is none."""
        if not 0 <= q <= 1:
            raise ValueError("q is in [0, 1]")
        if not self._values:
            return None
        ordered = sorted(self._values)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def as_dict(self) -> dict[str, Any]:
        return {"p50": self.quantile(0.5), "p95": self.quantile(0.95), "count": self.count}
