"""Analysis: ask Prometheus whether the new version is healthy.

The reconciler calls `evaluate` before the state machine decides; it returns the
signal the machine acts on (Healthy: may advance; Pending: hold; Failed: roll back in
this very reconcile) and the analysis part of the status. Whatever fails inside
`evaluate` becomes a hold (reason AnalysisError), never an exception.

A run happens every `interval` (scheduled with requeue_after), or at once when what it
looks at changes; between runs the last run's verdict, kept in status, stands. All the
state is in status (consecutive failures, since when Prometheus is unreachable, the
time of the last run), so a restarted operator carries on where it was.

The parts: `evaluate` (one evaluation: the run, its guard), `scope` (what to look at,
when; pure), `templates` and `presets` (the queries; pure), `prometheus` (the client:
the only network I/O to Prometheus), `secrets` (the endpoint's credentials), `judge`
(verdicts; pure), `comparison` (the shadow comparison's counters, judged by
`shadowroute.compare.gate`). Webhook notifications are not analysis: `shadowroute.notify`.
"""

from .comparison import Comparison, compare
from .evaluate import (
    CREDENTIALS_INVALID,
    ERROR,
    ERROR_RETRY_SECONDS,
    IDLE,
    MAX_ERROR_MESSAGE,
    UNAVAILABLE,
    Evaluation,
    Planned,
    Run,
    evaluate,
)

__all__ = [
    "CREDENTIALS_INVALID",
    "ERROR",
    "ERROR_RETRY_SECONDS",
    "IDLE",
    "MAX_ERROR_MESSAGE",
    "UNAVAILABLE",
    "Comparison",
    "Evaluation",
    "Planned",
    "Run",
    "compare",
    "evaluate",
]
