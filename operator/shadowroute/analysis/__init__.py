"""Analysis: ask Prometheus whether the new version is healthy.

The reconciler calls `evaluate` before the state machine decides; it returns the
signal the machine acts on and the analysis part of the status.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..api.models import AnalysisStatus, ShadowRouteSpec, ShadowRouteStatus
from ..rollout.observe import AnalysisSignal


@dataclass(frozen=True)
class Evaluation:
    status: AnalysisStatus
    signal: AnalysisSignal | None
    requeue_after: float | None = None


async def evaluate(
    spec: ShadowRouteSpec,
    status: ShadowRouteStatus,
    namespace: str,
    name: str,
    now: dt.datetime,
) -> Evaluation:
    """No analysis configured: readiness alone gates progress."""
    return Evaluation(status=status.analysis, signal=None)
