"""The Job of one attempt of a job check: a pure function from the owner, the check,
the revision and the attempt to a batch/v1 manifest.

Why it looks the way it does:
- one Job per attempt, named after it, so that applying it twice is a no-op and a
  restarted operator finds the attempt it recorded (`ledger.record_start`) by name;
- ``backoffLimit: 0`` and ``restartPolicy: Never``: retries are ours, counted in status
  against the check's budget; the Job controller retrying too would multiply them;
- ``activeDeadlineSeconds``: the check's timeout, enforced by Kubernetes as well, so a
  hung suite stops even while the operator is down;
- ``ttlSecondsAfterFinished``: finished Jobs go away on their own (the owner reference
  removes them with the ShadowRoute too), long enough after the end for the operator
  to read the result and the last log lines;
- our labels (role ``check``, the check's name, the revision, the attempt) on the Job
  and its pods, over any the template sets: the Services select pods by name and role
  ``primary``/``canary``/``shadow``, so a check pod is never sent live traffic.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from ..acceptance.spec import Check, JobCheck
from ..names import CHECK_ROLE, Owner, child_labels, child_metadata

CHECK_LABEL = "shadowroute.io/check"
ATTEMPT_LABEL = "shadowroute.io/check-attempt"
STEP_LABEL = "shadowroute.io/check-step"
TTL_AFTER_FINISHED_SECONDS = 3600
MAX_JOB_NAME_LENGTH = 63
"""A Job's name becomes its pods' ``job-name`` label value: at most 63 characters."""
REVISION_PREFIX = 8
HASH_LENGTH = 10


def job_name(
    route: str, check_name: str, revision: str, attempt: int, step: int | None = None
) -> str:
    """``<route>-check-<name>-<revision[:8]>-<attempt>`` (``…-<step>-<attempt>`` for a
    step's check): the same attempt always gets the same name. Past 63 characters, the
    head of it and a hash of the whole, so that two long names still differ."""
    middle = (
        f"{revision[:REVISION_PREFIX]}-{step}" if step is not None else revision[:REVISION_PREFIX]
    )
    full = f"{route}-check-{check_name}-{middle}-{attempt}"
    if len(full) <= MAX_JOB_NAME_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:HASH_LENGTH]
    head = full[: MAX_JOB_NAME_LENGTH - HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{digest}"


def job_labels(
    owner: Owner, check: Check, revision: str, attempt: int, step: int | None = None
) -> dict[str, str]:
    """Our labels of an attempt's Job and pods: how the shell finds them again."""
    labels = child_labels(owner.name, CHECK_ROLE, revision)
    labels[CHECK_LABEL] = check.name
    labels[ATTEMPT_LABEL] = str(attempt)
    if step is not None:
        labels[STEP_LABEL] = str(step)
    return labels


def render_job(
    owner: Owner,
    check: Check,
    revision: str,
    attempt: int,
    step: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The owned batch/v1 Job of attempt ``attempt`` (1-based) of a job check for
    ``revision``; the check's template is copied, never changed, but for `env` added to
    each container (a variable the container sets itself wins) and
    ``terminationMessagePolicy: FallbackToLogsOnError`` where the container sets none,
    so a failed suite's last log lines come back in its pod's status."""
    if not isinstance(check.action, JobCheck):
        raise ValueError(f"check {check.name} is not a job check")
    if not 1 <= attempt <= check.max_attempts:
        raise ValueError(f"check {check.name} allows attempts 1..{check.max_attempts}: {attempt}")
    labels = job_labels(owner, check, revision, attempt, step)
    template = copy.deepcopy(dict(check.action.template))
    metadata = dict(template.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    template["metadata"] = metadata
    containers = []
    for container in template["spec"]["containers"]:
        container = dict(container)
        own = {e.get("name") for e in container.get("env") or []}
        extra = [{"name": k, "value": v} for k, v in (env or {}).items() if k not in own]
        if extra:
            container["env"] = [*(container.get("env") or []), *extra]
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
        containers.append(container)
    template["spec"] = {**template["spec"], "containers": containers, "restartPolicy": "Never"}
    name = job_name(owner.name, check.name, revision, attempt, step)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, name, labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(check.timeout_seconds)),
            # Finished within the attempt's time, it outlives the attempt's deadline: a
            # restarted operator still finds it, never runs a passed attempt again.
            "ttlSecondsAfterFinished": max(
                TTL_AFTER_FINISHED_SECONDS, math.ceil(check.timeout_seconds) + 600
            ),
            "template": template,
        },
    }
